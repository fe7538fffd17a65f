#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "blockstore_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "car.h"
#include "cbor.h"
#include "le.h"

/* ---- CAR roots ---- */

int lfs_bs_encode_root(struct lfs_buf *out, const struct lfs_car_root *r)
{
	lfs_cbor_put_head(out, 5, 2);
	lfs_cbor_put_string(out, "cars", 4);
	lfs_cbor_put_head(out, 4, r->ncars);
	for (size_t i = 0; i < r->ncars; i++)
		lfs_cbor_put_link(out, &r->cars[i]);
	lfs_cbor_put_string(out, "head", 4);
	lfs_cbor_put_head(out, 4, r->nhead);
	for (size_t i = 0; i < r->nhead; i++)
		lfs_cbor_put_link(out, &r->head[i]);
	return out->err;
}

static int parse_links(struct lfs_cid **out, size_t *out_n,
		       const struct lfs_cbor *v, uint8_t codec)
{
	if (!v || v->type != LFS_CBOR_ARRAY ||
	    v->u.array.count > MAX_ROOT_LINKS)
		return -EBADMSG;
	size_t n = v->u.array.count;
	struct lfs_cid *c = calloc(n + 1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++)
		if (lfs_cbor_get_link(&c[i], v->u.array.items[i]) ||
		    c[i].codec != codec) {
			free(c);
			return -EBADMSG;
		}
	*out = c;
	*out_n = n;
	return 0;
}

/* Parse a root block into malloc'd arrays. */
static int decode_root(struct lfs_car_root *out, const uint8_t *p, size_t len)
{
	struct lfs_arena a;
	lfs_arena_init(&a, (size_t)4 << 20);
	struct lfs_cbor *v;
	memset(out, 0, sizeof(*out));
	int rc = lfs_cbor_decode(&v, &a, p, len);
	if (rc)
		rc = rc == -ENOMEM ? rc : -EBADMSG;
	else if (v->type != LFS_CBOR_MAP || v->u.map.count != 2)
		rc = -EBADMSG;
	else if (!(rc = parse_links(&out->cars, &out->ncars,
				    lfs_cbor_map_get(v, "cars"),
				    LFS_CODEC_RAW)) &&
		 (rc = parse_links(&out->head, &out->nhead,
				   lfs_cbor_map_get(v, "head"),
				   LFS_CODEC_DAG_CBOR))) {
		free(out->cars);
		out->cars = NULL;
	}
	if (!rc && out->nhead == 0)
		rc = -EBADMSG;
	if (rc) {
		free(out->cars);
		free(out->head);
		memset(out, 0, sizeof(*out));
	}
	lfs_arena_release(&a);
	return rc;
}

static int copy_root(struct lfs_car_root *out, struct lfs_arena *a,
		     const struct lfs_car_root *r)
{
	out->ncars = r->ncars;
	out->nhead = r->nhead;
	out->cars = lfs_arena_calloc(a, r->ncars + 1, sizeof(*out->cars));
	out->head = lfs_arena_calloc(a, r->nhead + 1, sizeof(*out->head));
	if (!out->cars || !out->head)
		return -ENOMEM;
	lfs_cid_copy_n(out->cars, r->cars, r->ncars);
	lfs_cid_copy_n(out->head, r->head, r->nhead);
	return 0;
}

/* copy_root of a registered CAR's root. */
static int copy_car_root(struct lfs_car_root *out, struct lfs_arena *a,
			 const struct car_file *cf)
{
	struct lfs_car_root r = {.cars = cf->links,
				 .ncars = cf->ncars,
				 .head = cf->links ? cf->links + cf->ncars
						   : NULL,
				 .nhead = cf->nhead};
	return copy_root(out, a, &r);
}

/* ---- registering CARs (caller holds the lock) ---- */

int lfs_bs_car_slot(struct lfs_blockstore *bs, size_t *out,
		    const struct lfs_cid *cid)
{
	if (lfs_cidtab_find(&bs->car_index, bs->cars, cid, out))
		return 0;
	if (bs->ncars == bs->capcars) {
		/* 1.5x: the array stays (one entry per commit). */
		size_t cap = bs->capcars ? bs->capcars + bs->capcars / 2 : 16;
		void *p = realloc(bs->cars, cap * sizeof(*bs->cars));
		if (!p)
			return -ENOMEM;
		bs->cars = p;
		bs->capcars = cap;
	}
	memset(&bs->cars[bs->ncars], 0, sizeof(bs->cars[0]));
	bs->cars[bs->ncars].cid = *cid;
	int rc = lfs_cidtab_add(&bs->car_index, bs->cars, bs->ncars);
	if (rc)
		return rc;
	*out = bs->ncars++;
	return 0;
}

/* The location of a persisted block, or NULL. Caller holds the lock. */
static struct loc *loc_of(const struct lfs_blockstore *bs,
			  const struct lfs_cid *cid)
{
	size_t i;
	return lfs_cidtab_find(&bs->loc_index, bs->locs, cid, &i) ? &bs->locs[i]
								  : NULL;
}

static int idx_cmp(const void *key, const void *entry)
{
	const struct lfs_cid *c = key;
	const uint8_t *e = entry;
	int r = memcmp(c->digest, e, LFS_DIGEST_LEN);
	return r ? r : (int)c->codec - (int)e[LFS_DIGEST_LEN];
}

bool lfs_bs_find_loc(const struct lfs_blockstore *bs, const struct lfs_cid *cid,
		     struct loc *out)
{
	struct loc *l = loc_of(bs, cid);
	if (l) {
		*out = *l;
		return true;
	}
	/* Newest first: a record compacted away leaves a newer copy. */
	for (size_t i = bs->nruns; i-- > 0;) {
		const struct seg_run *r = &bs->runs[i];
		uint32_t ord, len, off;
		if (!lfs_bs_run_find(r, cid, &ord, &len, &off) ||
		    ord - r->first >= r->nrec || ord >= bs->nseg ||
		    bs->seg[ord].removed)
			continue;
		*out = (struct loc){.cid = *cid,
				    .car = r->cars[ord - r->first],
				    .len = len,
				    .off = off};
		return true;
	}
	for (size_t i = 0; i < bs->nsidecars; i++) {
		const struct idx_src *x = bs->cars[bs->sidecars[i]].side;
		const uint8_t *e =
			bsearch(cid, x->idx, x->n, IDX_ENTRY, idx_cmp);
		if (e) {
			*out = (struct loc){.cid = *cid,
					    .car = (uint32_t)bs->sidecars[i],
					    .len = lfs_le_get32(e + 36),
					    .off = lfs_le_get64(e + 40)};
			return true;
		}
	}
	return false;
}

void lfs_bs_runs_release(struct lfs_blockstore *bs)
{
	for (size_t i = 0; i < bs->nruns; i++) {
		struct seg_run *r = &bs->runs[i];
		for (uint32_t k = 0; k < r->nrec; k++)
			bs->cars[r->cars[k]].indexed = false;
		lfs_bs_run_free(r);
	}
	free(bs->runs);
	bs->runs = NULL;
	bs->nruns = 0;
	bs->runs_end = 0;
	bs->runs_gen++;
}

/* A sorted block index of a CAR's plaintext (for large CARs). */
int lfs_bs_index_car(uint8_t **out, size_t *out_n, const uint8_t *plain,
		     size_t len)
{
	struct lfs_car_reader r;
	int rc = lfs_car_reader_init(&r, plain, len);
	if (rc)
		return rc;
	r.trusted = true;
	uint8_t *v = NULL;
	size_t n = 0, cap = 0;
	struct lfs_cid bc;
	const uint8_t *data;
	size_t dlen;
	while ((rc = lfs_car_reader_next(&r, &bc, &data, &dlen)) == 1) {
		if (n == cap) {
			cap = cap ? cap * 2 : 1024;
			void *p = realloc(v, cap * IDX_ENTRY);
			if (!p) {
				rc = -ENOMEM;
				break;
			}
			v = p;
		}
		uint8_t *e = v + n++ * IDX_ENTRY;
		memset(e, 0, IDX_ENTRY);
		memcpy(e, bc.digest, LFS_DIGEST_LEN);
		e[LFS_DIGEST_LEN] = bc.codec;
		lfs_le_put32(e + 36, (uint32_t)dlen);
		lfs_le_put64(e + 40, (uint64_t)(data - plain));
	}
	lfs_car_reader_release(&r);
	if (rc) {
		free(v);
		return rc;
	}
	if (n)
		qsort(v, n, IDX_ENTRY, lfs_bs_key_cmp);
	*out = v;
	*out_n = n;
	return 0;
}

static void idx_mac(uint8_t out[32], struct lfs_blockstore *bs,
		    const uint8_t *p, size_t len)
{
	uint8_t sub[32];
	lfs_envelope_subkey(sub, sizeof(sub), bs->key, "ledgerfs sidecar v1");
	crypto_generichash(out, 32, p, len, sub, sizeof(sub));
	sodium_memzero(sub, sizeof(sub));
}

/* Write car/<cid>.idx. Best effort: a missing sidecar only costs time. */
void lfs_bs_write_sidecar(struct lfs_blockstore *bs, const struct lfs_cid *car,
			  const struct lfs_car_root *root, const uint8_t *idx,
			  size_t n)
{
	struct lfs_buf rb, f;
	lfs_buf_init(&rb, 0);
	lfs_buf_init(&f, LFS_CAR_MAX_FILE);
	uint8_t hdr[16], mac[32];
	memcpy(hdr, IDX_MAGIC, 8);
	lfs_le_put32(hdr + 8, (uint32_t)n);
	if (!lfs_bs_encode_root(&rb, root)) {
		lfs_le_put32(hdr + 12, (uint32_t)rb.len);
		lfs_buf_append(&f, hdr, sizeof(hdr));
		lfs_buf_append(&f, rb.data, rb.len);
		lfs_buf_append(&f, idx, n * IDX_ENTRY);
		if (!f.err) {
			idx_mac(mac, bs, f.data, f.len);
			lfs_buf_append(&f, mac, sizeof(mac));
		}
		char name[LFS_CID_STRLEN + 8];
		lfs_cid_to_string(name, car);
		strcat(name, ".idx");
		if (!f.err)
			lfs_bs_write_atomic(bs, "car", name, f.data, f.len,
					    false);
	}
	lfs_buf_release(&rb);
	lfs_buf_release(&f);
}

/*
 * Map car/<cid>.idx and check it. On success fills the root (malloc'd),
 * the envelope geometry (from the CAR file's first bytes) and the map.
 */
static int read_sidecar(struct lfs_blockstore *bs, const struct lfs_cid *car,
			struct lfs_car_root *root,
			struct lfs_envelope_info *info, void **map,
			size_t *maplen)
{
	char *cpath = lfs_bs_car_path(bs, car);
	if (!cpath)
		return -ENOMEM;
	size_t pl = strlen(cpath) + 5;
	char *ipath = malloc(pl);
	if (!ipath) {
		free(cpath);
		return -ENOMEM;
	}
	snprintf(ipath, pl, "%s.idx", cpath);
	int rc = 0, fd = open(ipath, O_RDONLY | O_CLOEXEC);
	struct stat st;
	void *m = MAP_FAILED;
	if (fd < 0 || fstat(fd, &st) || st.st_size < 16 + 32) {
		rc = -ENOENT;
		goto out;
	}
	m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
	if (m == MAP_FAILED) {
		rc = -errno;
		goto out;
	}
	const uint8_t *p = m;
	size_t len = (size_t)st.st_size;
	uint32_t n = lfs_le_get32(p + 8), rl = lfs_le_get32(p + 12);
	uint8_t mac[32];
	if (memcmp(p, IDX_MAGIC, 8) || rl > len ||
	    (uint64_t)n * IDX_ENTRY + 16 + rl + 32 != len) {
		rc = -EBADMSG;
		goto out;
	}
	idx_mac(mac, bs, p, len - 32);
	if (sodium_memcmp(mac, p + len - 32, 32)) {
		rc = -EBADMSG;
		goto out;
	}
	if ((rc = decode_root(root, p + 16, rl)))
		goto out;
	/* The envelope's geometry comes from the CAR's own header. */
	close(fd);
	uint8_t head[LFS_ENVELOPE_HEADER_BYTES];
	fd = open(cpath, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) ||
	    pread(fd, head, sizeof(head), 0) != (ssize_t)sizeof(head) ||
	    lfs_envelope_parse(info, head, (size_t)st.st_size)) {
		free(root->cars);
		free(root->head);
		rc = fd < 0 ? -ENOENT : -EBADMSG;
		goto out;
	}
	*map = m;
	*maplen = len;
	m = MAP_FAILED;
out:
	if (m != MAP_FAILED)
		munmap(m, (size_t)st.st_size);
	if (fd >= 0)
		close(fd);
	free(ipath);
	free(cpath);
	return rc;
}

static int add_loc(struct lfs_blockstore *bs, const struct lfs_cid *cid,
		   uint32_t car, uint64_t off, size_t len, bool relocate)
{
	struct loc *old = loc_of(bs, cid);
	if (old) {
		/* Known in another CAR: keep it there unless told to move. */
		if (relocate)
			*old = (struct loc){.cid = *cid,
					    .car = car,
					    .len = (uint32_t)len,
					    .off = off};
		return 0;
	}
	if (bs->nlocs == bs->caplocs) {
		size_t cap = bs->caplocs ? bs->caplocs * 2 : 256;
		void *p = realloc(bs->locs, cap * sizeof(*bs->locs));
		if (!p)
			return -ENOMEM;
		bs->locs = p;
		bs->caplocs = cap;
	}
	bs->locs[bs->nlocs] = (struct loc){
		.cid = *cid, .car = car, .len = (uint32_t)len, .off = off};
	int rc = lfs_cidtab_add(&bs->loc_index, bs->locs, bs->nlocs);
	if (rc)
		return rc;
	bs->nlocs++;
	return 0;
}

void lfs_bs_cids_add(struct lfs_cid **v, size_t *n, size_t *cap,
		     const struct lfs_cid *c)
{
	for (size_t i = 0; i < *n; i++)
		if (lfs_cid_equal(&(*v)[i], c))
			return;
	if (*n == *cap) {
		size_t more = *cap ? *cap * 2 : 16;
		void *p = realloc(*v, more * sizeof(**v));
		if (!p)
			return; /* only laziness is lost */
		*v = p;
		*cap = more;
	}
	(*v)[(*n)++] = *c;
}

bool lfs_bs_cids_drop(struct lfs_cid *v, size_t *n, const struct lfs_cid *c)
{
	for (size_t i = 0; i < *n; i++)
		if (lfs_cid_equal(&v[i], c)) {
			v[i] = v[--*n];
			return true;
		}
	return false;
}

static void frontier_add(struct lfs_blockstore *bs, const struct lfs_cid *car)
{
	size_t idx;
	if (lfs_cidtab_find(&bs->car_index, bs->cars, car, &idx) &&
	    (bs->cars[idx].loaded || bs->cars[idx].indexed))
		return;
	lfs_bs_cids_add(&bs->frontier, &bs->nfrontier, &bs->capfrontier, car);
}

void lfs_bs_idx_release(struct idx_src *x)
{
	if (x->map)
		munmap(x->map, x->maplen);
	free(x->owned);
	memset(x, 0, sizeof(*x));
}

void lfs_bs_drop_side(struct car_file *cf)
{
	if (cf->side)
		lfs_bs_idx_release(cf->side);
	free(cf->side);
	cf->side = NULL;
}

/* Forget every location (a compaction CAR now holds every block). */
static void forget_locations(struct lfs_blockstore *bs, size_t keep)
{
	bs->nlocs = 0;
	lfs_cidtab_clear(&bs->loc_index);
	for (size_t i = 0; i < bs->ncars; i++) {
		struct car_file *cf = &bs->cars[i];
		if (i == keep)
			continue;
		cf->loaded = false;
		lfs_bs_drop_side(cf);
	}
	bs->nsidecars = 0;
	bs->nfrontier = 0;
	bs->nabsent = 0;
	lfs_bs_runs_release(bs);
}

/*
 * Index a CAR whose plaintext is known (just opened), whose blocks'
 * places are known (known[0..nknown), just written: plain may be NULL), or
 * whose sorted index x is given (then plain may be NULL). Copies root's
 * lists (the caller keeps its own); takes ownership of x. Caller holds
 * the lock.
 */
int lfs_bs_register_car(struct lfs_blockstore *bs, const struct lfs_cid *cid,
			const struct lfs_envelope_info *info,
			const struct lfs_car_root *root, const uint8_t *plain,
			size_t len, bool relocate, struct idx_src *x,
			const struct loc *known, size_t nknown)
{
	size_t idx;
	int rc = lfs_bs_car_slot(bs, &idx, cid);
	if (rc || bs->cars[idx].loaded) {
		if (x)
			lfs_bs_idx_release(x);
		return rc;
	}
	if (x && x->idx) {
		void *p = realloc(bs->sidecars,
				  (bs->nsidecars + 1) * sizeof(*bs->sidecars));
		struct idx_src *side = malloc(sizeof(*side));
		if (p)
			bs->sidecars = p;
		if (!p || !side) {
			free(side);
			rc = -ENOMEM;
			goto fail;
		}
		if (relocate)
			forget_locations(bs, idx);
		*side = *x;
		memset(x, 0, sizeof(*x));
		bs->cars[idx].side = side;
		bs->sidecars[bs->nsidecars++] = idx;
	} else if (bs->cars[idx].indexed) {
		/* A run finds its blocks already: only the root is new. */
		if (x)
			lfs_bs_idx_release(x);
	} else if (known) {
		for (size_t i = 0; i < nknown && !rc; i++)
			rc = add_loc(bs, &known[i].cid, (uint32_t)idx,
				     known[i].off, known[i].len, relocate);
		if (rc)
			goto fail;
	} else {
		struct lfs_car_reader r;
		if ((rc = lfs_car_reader_init(&r, plain, len)))
			goto fail;
		r.trusted = true; /* lfs_bs_open_car() or our own writer checked
				     it */
		struct lfs_cid bc;
		const uint8_t *data;
		size_t dlen;
		while ((rc = lfs_car_reader_next(&r, &bc, &data, &dlen)) == 1)
			if ((rc = add_loc(bs, &bc, (uint32_t)idx,
					  (uint64_t)(data - plain), dlen,
					  relocate)))
				break;
		lfs_car_reader_release(&r);
		if (rc)
			goto fail;
	}
	/* Kept for the store's life, one per CAR (one per commit): both
	 * lists in one allocation, exactly sized. */
	size_t nlinks = root->ncars + root->nhead;
	struct lfs_cid *links = malloc((nlinks ? nlinks : 1) * sizeof(*links));
	if (!links) {
		rc = -ENOMEM;
		goto fail;
	}
	lfs_cid_copy_n(links, root->cars, root->ncars);
	lfs_cid_copy_n(links + root->ncars, root->head, root->nhead);
	struct car_file *cf = &bs->cars[idx];
	free(cf->links); /* loaded before a compaction forgot it */
	cf->loaded = true;
	lfs_bs_car_set_info(cf, info);
	cf->links = links;
	cf->ncars = (uint32_t)root->ncars;
	cf->nhead = (uint32_t)root->nhead;
	lfs_bs_cids_drop(bs->frontier, &bs->nfrontier, cid);
	lfs_bs_cids_drop(bs->absent, &bs->nabsent, cid);
	for (size_t i = 0; i < root->ncars; i++)
		frontier_add(bs, &root->cars[i]);
	return 0;
fail:
	if (x)
		lfs_bs_idx_release(x);
	return rc;
}

/*
 * Open sealed bytes: optionally check the name, decrypt, check the CAR has
 * one root that is a valid root block inside it. Fills plain and root.
 */
int lfs_bs_open_car(struct lfs_blockstore *bs, struct lfs_buf *plain,
		    struct lfs_envelope_info *info, struct lfs_car_root *root,
		    const struct lfs_cid *cid, const uint8_t *sealed,
		    size_t len, bool verify)
{
	int rc = lfs_envelope_parse(info, sealed, len);
	if (rc)
		return rc;
	if ((rc = lfs_envelope_open(plain, bs->key, sealed, len,
				    verify ? cid : NULL)))
		return rc;
	struct lfs_car_reader r;
	if ((rc = lfs_car_reader_init(&r, plain->data, plain->len)))
		return rc;
	/* A local file was checked when it arrived; the cipher proves it is
	 * still the same file. */
	r.trusted = !verify;
	if (r.nroots != 1) {
		lfs_car_reader_release(&r);
		return -EBADMSG;
	}
	struct lfs_cid want = r.roots[0], bc;
	const uint8_t *data;
	size_t dlen;
	bool found = false;
	/* The reader checks every block's hash as it goes. */
	while ((rc = lfs_car_reader_next(&r, &bc, &data, &dlen)) == 1)
		if (!found && lfs_cid_equal(&bc, &want)) {
			found = true;
			if ((rc = decode_root(root, data, dlen)))
				break;
		}
	lfs_car_reader_release(&r);
	if (rc == 0 && !found)
		rc = -EBADMSG;
	if (rc && found) {
		free(root->cars);
		free(root->head);
	}
	return rc;
}

int lfs_blockstore_load(struct lfs_car_root *out, struct lfs_arena *a,
			struct lfs_blockstore *bs, const struct lfs_cid *car,
			bool verify)
{
	pthread_mutex_lock(&bs->lock);
	size_t idx;
	int rc = 0;
	if (lfs_cidtab_find(&bs->car_index, bs->cars, car, &idx) &&
	    bs->cars[idx].loaded) {
		rc = out ? copy_car_root(out, a, &bs->cars[idx]) : 0;
		pthread_mutex_unlock(&bs->lock);
		return rc;
	}
	pthread_mutex_unlock(&bs->lock);

	struct lfs_envelope_info info;
	struct lfs_car_root root;
	struct idx_src x = {0};
	/* A large CAR with a good sidecar opens without reading it. */
	if (!verify &&
	    read_sidecar(bs, car, &root, &info, &x.map, &x.maplen) == 0) {
		const uint8_t *p = x.map;
		x.idx = p + 16 + lfs_le_get32(p + 12);
		x.n = lfs_le_get32(p + 8);
		pthread_mutex_lock(&bs->lock);
		rc = lfs_bs_register_car(bs, car, &info, &root, NULL, 0, false,
					 &x, NULL, 0);
		pthread_mutex_unlock(&bs->lock);
		if (!rc && out)
			rc = copy_root(out, a, &root);
		free(root.cars);
		free(root.head);
		return rc;
	}

	uint8_t *sealed = NULL;
	size_t len = 0;
	struct lfs_buf plain;
	lfs_buf_init(&plain, LFS_CAR_MAX_FILE);
	rc = lfs_bs_read_car_bytes(bs, car, &sealed, &len);
	if (!rc)
		rc = lfs_bs_open_car(bs, &plain, &info, &root, car, sealed, len,
				     verify);
	bool have_root = !rc;
	bool big = !rc && plain.len >= IDX_MIN;
	if (big)
		rc = lfs_bs_index_car(&x.owned, &x.n, plain.data, plain.len);
	x.idx = x.owned;
	if (!rc) {
		pthread_mutex_lock(&bs->lock);
		rc = lfs_bs_register_car(bs, car, &info, &root, plain.data,
					 plain.len, false, big ? &x : NULL,
					 NULL, 0);
		const uint8_t *built = NULL;
		size_t nbuilt = 0;
		if (!rc && big) {
			lfs_cidtab_find(&bs->car_index, bs->cars, car, &idx);
			built = bs->cars[idx].side->idx;
			nbuilt = bs->cars[idx].side->n;
		}
		pthread_mutex_unlock(&bs->lock);
		if (!rc && out)
			rc = copy_root(out, a, &root);
		/* The index is immutable once registered: write it out. */
		if (built && !lfs_bs_seg_find(bs, car, NULL, false))
			lfs_bs_write_sidecar(bs, car, &root, built, nbuilt);
	}
	if (have_root) {
		free(root.cars);
		free(root.head);
	}
	lfs_buf_release(&plain);
	free(sealed);
	return rc;
}

int lfs_blockstore_import(struct lfs_car_root *out, struct lfs_arena *a,
			  struct lfs_blockstore *bs,
			  const struct lfs_cid *expect, const uint8_t *sealed,
			  size_t len)
{
	if (expect->codec != LFS_CODEC_RAW || len > LFS_CAR_MAX_FILE)
		return -EBADMSG;
	/* Here and loaded already, checked when it came (an ingest after a
	 * catch-up's prefetch, a retry): nothing to check or write again. */
	size_t idx;
	pthread_mutex_lock(&bs->lock);
	bool known = lfs_cidtab_find(&bs->car_index, bs->cars, expect, &idx) &&
		     bs->cars[idx].loaded;
	pthread_mutex_unlock(&bs->lock);
	if (known && lfs_blockstore_has_car(bs, expect)) {
		int rc = 0;
		pthread_mutex_lock(&bs->lock);
		if (out &&
		    lfs_cidtab_find(&bs->car_index, bs->cars, expect, &idx))
			rc = copy_car_root(out, a, &bs->cars[idx]);
		pthread_mutex_unlock(&bs->lock);
		return rc;
	}
	struct lfs_buf plain;
	lfs_buf_init(&plain, LFS_CAR_MAX_FILE);
	struct lfs_envelope_info info;
	struct lfs_car_root root;
	int rc = lfs_bs_open_car(bs, &plain, &info, &root, expect, sealed, len,
				 true);
	if (rc)
		goto out;
	char name[LFS_CID_STRLEN + 1];
	lfs_cid_to_string(name, expect);
	pthread_mutex_lock(&bs->lock);
	bool durable = !bs->lazy_imports;
	pthread_mutex_unlock(&bs->lock);
	if (lfs_bs_seg_find(bs, expect, NULL, true) ||
	    !(rc = lfs_bs_write_atomic(bs, "car", name, sealed, len,
				       durable))) {
		pthread_mutex_lock(&bs->lock);
		rc = lfs_bs_register_car(bs, expect, &info, &root, plain.data,
					 plain.len, false, NULL, NULL, 0);
		/* Its events are read next (a catch-up applies what it
		 * fetched): from the cache, not the file again. */
		if (!rc)
			lfs_bs_cache_written(bs, expect, &info, plain.data,
					     plain.len);
		pthread_mutex_unlock(&bs->lock);
		lfs_bs_cache_enforce(bs);
		if (!rc && out)
			rc = copy_root(out, a, &root);
	}
	free(root.cars);
	free(root.head);
out:
	lfs_buf_release(&plain);
	return rc;
}
