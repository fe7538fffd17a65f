#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "blockstore_int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "fileio.h"
#include "le.h"
#include "log.h"

/*
 * DIR/runs/<first>-<end>: the block index of segment records [first, end).
 *   "LFSRUN1\n" | u32 first | u32 nrec | u32 nent | u32 nbloom |
 *   nrec records: CAR CID (36 bytes), the first 24 bytes of its sealed
 *                 bytes (its envelope header) |
 *   nent entries (RUN_ENTRY bytes, blockstore_int.h) |
 *   nbloom blocks of the Bloom filter (blockstore_int.h) | MAC
 * little endian; MAC: keyed BLAKE2b-256 of all that precedes it, with a key
 * derived from the ledger key. A local cache, never synced: a run is used
 * only when its MAC checks out and its records are, one by one, the
 * segment's records at those places as this process scanned it; anything
 * else is ignored and written again later.
 */
#define RUN_MAGIC  "LFSRUN1\n"
#define RUN_HEADER 24
#define RUN_REC    (LFS_CID_BYTES + LFS_ENVELOPE_HEADER_BYTES)
#define RUN_MAC    32
#define RUN_DIR    "runs"
#define NO_ORD     UINT32_MAX

static void mac_init(crypto_generichash_state *st, struct lfs_blockstore *bs)
{
	uint8_t sub[32];
	lfs_envelope_subkey(sub, sizeof(sub), bs->key,
			    "ledgerfs segment run v1");
	crypto_generichash_init(st, sub, sizeof(sub), RUN_MAC);
	sodium_memzero(sub, sizeof(sub));
}

static bool parse_name(const char *name, uint32_t *first, uint32_t *end)
{
	unsigned long long a, b;
	int used = 0;
	if (sscanf(name, "%llu-%llu%n", &a, &b, &used) != 2 ||
	    name[used] != '\0' || a >= b || b > UINT32_MAX)
		return false;
	*first = (uint32_t)a;
	*end = (uint32_t)b;
	return true;
}

/* Entries a read of a run takes at once (a multiple of RUN_GROUP). */
#define RUN_READ (16 * RUN_GROUP)

void lfs_bs_run_free(struct seg_run *r)
{
	if (r->fd >= 0)
		close(r->fd);
	free(r->fence);
	free(r->bloom);
	free(r->cars);
	free(r->name);
	memset(r, 0, sizeof(*r));
	r->fd = -1;
}

static size_t run_groups(size_t nent)
{
	return (nent + RUN_GROUP - 1) / RUN_GROUP;
}

bool lfs_bs_run_find(const struct seg_run *r, const struct lfs_cid *cid,
		     uint32_t *ord, uint32_t *len, uint32_t *off)
{
	if (!r->nent || !lfs_bs_bloom_has(r->bloom, r->nbloom, cid->digest))
		return false;
	uint8_t key[RUN_KEY];
	memcpy(key, cid->digest, LFS_DIGEST_LEN);
	key[LFS_DIGEST_LEN] = cid->codec;
	/* The last group whose first key is not above key. */
	size_t lo = 0, hi = run_groups(r->nent);
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (memcmp(r->fence + mid * RUN_KEY, key, RUN_KEY) <= 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo == 0)
		return false;
	size_t first = (lo - 1) * RUN_GROUP;
	size_t n = r->nent - first < RUN_GROUP ? r->nent - first : RUN_GROUP;
	uint8_t group[RUN_GROUP * RUN_ENTRY];
	if (lfs_pread_all(r->fd, group, n * RUN_ENTRY,
			  r->ent_off + first * RUN_ENTRY))
		return false;
	const uint8_t *e = bsearch(key, group, n, RUN_ENTRY, lfs_bs_key_cmp);
	if (!e)
		return false;
	*ord = lfs_le_get32(e + 36);
	*len = lfs_le_get32(e + 40);
	*off = lfs_le_get32(e + 44);
	return true;
}

/*
 * Sorted entries: an array in memory (fd -1), or a run's, read from its
 * descriptor RUN_READ entries at a time (source_fill when n is 0). Merges
 * read their sources this way, and opening a run reads its own.
 */
struct source {
	const uint8_t *p;
	size_t n;     /* entries at p */
	int fd;       /* a dup of the run's, or -1 */
	uint64_t off; /* of the next entry to read */
	size_t left;  /* entries not read yet */
	uint8_t *buf;
};

static int source_fill(struct source *s)
{
	if (s->n || !s->left)
		return 0;
	if (!s->buf && !(s->buf = malloc(RUN_READ * RUN_ENTRY)))
		return -ENOMEM;
	size_t n = s->left < RUN_READ ? s->left : RUN_READ;
	int rc = lfs_pread_all(s->fd, s->buf, n * RUN_ENTRY, s->off);
	if (rc)
		return rc < 0 ? rc : -EBADMSG;
	s->p = s->buf;
	s->n = n;
	s->off += n * RUN_ENTRY;
	s->left -= n;
	return 0;
}

static void source_release(struct source *s)
{
	if (s->fd >= 0)
		close(s->fd);
	free(s->buf);
}

/*
 * Read DIR/runs/name and check its shape and MAC: its Bloom filter and
 * fences into *out (its descriptor kept), its records into *recs (nrec *
 * RUN_REC bytes, the caller frees).
 */
static int read_run(struct lfs_blockstore *bs, const char *name,
		    struct seg_run *out, uint8_t **recs)
{
	*recs = NULL;
	struct seg_run r = {.fd = -1};
	char *path = lfs_bs_path_join(bs->dir, RUN_DIR, name);
	if (!path)
		return -ENOMEM;
	r.fd = open(path, O_RDONLY | O_CLOEXEC);
	free(path);
	if (r.fd < 0)
		return -errno;
	struct stat st;
	uint8_t hdr[RUN_HEADER], mac[RUN_MAC], want[RUN_MAC];
	struct source ents = {.fd = -1};
	int rc = 0;
	if (fstat(r.fd, &st) || st.st_size < RUN_HEADER + RUN_MAC ||
	    lfs_pread_all(r.fd, hdr, sizeof(hdr), 0)) {
		rc = -EBADMSG;
		goto out;
	}
	r.first = lfs_le_get32(hdr + 8);
	r.nrec = lfs_le_get32(hdr + 12);
	r.nent = lfs_le_get32(hdr + 16);
	r.nbloom = lfs_le_get32(hdr + 20);
	if (memcmp(hdr, RUN_MAGIC, 8) || r.nrec == 0 || r.nbloom == 0 ||
	    RUN_HEADER + (uint64_t)r.nrec * RUN_REC +
			    (uint64_t)r.nent * RUN_ENTRY +
			    (uint64_t)r.nbloom * RUN_BLOOM_BLOCK + RUN_MAC !=
		    (uint64_t)st.st_size) {
		rc = -EBADMSG;
		goto out;
	}
	r.ent_off = RUN_HEADER + (uint64_t)r.nrec * RUN_REC;
	*recs = malloc((size_t)r.nrec * RUN_REC);
	r.fence = malloc(run_groups(r.nent) * RUN_KEY + 1);
	r.bloom = malloc(r.nbloom * RUN_BLOOM_BLOCK);
	if (!*recs || !r.fence || !r.bloom) {
		rc = -ENOMEM;
		goto out;
	}
	crypto_generichash_state st_mac;
	mac_init(&st_mac, bs);
	crypto_generichash_update(&st_mac, hdr, sizeof(hdr));
	if (lfs_pread_all(r.fd, *recs, (size_t)r.nrec * RUN_REC, RUN_HEADER)) {
		rc = -EBADMSG;
		goto out;
	}
	crypto_generichash_update(&st_mac, *recs, (size_t)r.nrec * RUN_REC);
	/* The entries, RUN_READ at a time (a multiple of RUN_GROUP): the
	 * MAC over them, and the first key of every group. */
	ents = (struct source){.fd = r.fd, .off = r.ent_off, .left = r.nent};
	for (size_t at = 0; at < r.nent; at += ents.n, ents.n = 0) {
		if ((rc = source_fill(&ents))) {
			rc = rc == -ENOMEM ? rc : -EBADMSG;
			goto out;
		}
		crypto_generichash_update(&st_mac, ents.p, ents.n * RUN_ENTRY);
		for (size_t g = 0; g < ents.n; g += RUN_GROUP)
			memcpy(r.fence + (at + g) / RUN_GROUP * RUN_KEY,
			       ents.p + g * RUN_ENTRY, RUN_KEY);
	}
	uint64_t bloom_off = r.ent_off + (uint64_t)r.nent * RUN_ENTRY;
	if (lfs_pread_all(r.fd, r.bloom, r.nbloom * RUN_BLOOM_BLOCK,
			  bloom_off) ||
	    lfs_pread_all(r.fd, want, RUN_MAC,
			  bloom_off + r.nbloom * RUN_BLOOM_BLOCK)) {
		rc = -EBADMSG;
		goto out;
	}
	crypto_generichash_update(&st_mac, r.bloom, r.nbloom * RUN_BLOOM_BLOCK);
	crypto_generichash_final(&st_mac, mac, RUN_MAC);
	if (sodium_memcmp(mac, want, RUN_MAC))
		rc = -EBADMSG;
out:
	free(ents.buf); /* not source_release: the descriptor is r's */
	if (rc) {
		free(*recs);
		*recs = NULL;
		lfs_bs_run_free(&r);
		return rc;
	}
	*out = r;
	return 0;
}

/*
 * Take a run read from disk into the store if its records (recs) are the
 * segment's at those places: their CARs get a slot each, marked indexed.
 * Caller holds the lock.
 */
static int adopt_run(struct lfs_blockstore *bs, struct seg_run *r,
		     const uint8_t *recs)
{
	if (r->first != bs->runs_end || r->first > bs->nseg ||
	    r->nrec > bs->nseg - r->first)
		return -ESTALE;
	struct lfs_envelope_info *info = malloc(r->nrec * sizeof(*info));
	uint32_t *cars = malloc(r->nrec * sizeof(*cars));
	void *more = realloc(bs->runs, (bs->nruns + 1) * sizeof(*bs->runs));
	int rc = info && cars && more ? 0 : -ENOMEM;
	if (more)
		bs->runs = more;
	for (uint32_t k = 0; k < r->nrec && !rc; k++) {
		const struct seg_ent *s = &bs->seg[r->first + k];
		const uint8_t *rec = recs + (size_t)k * RUN_REC;
		struct lfs_cid c;
		if (s->removed ||
		    lfs_cid_from_bytes(&c, rec, LFS_CID_BYTES) !=
			    LFS_CID_BYTES ||
		    !lfs_cid_equal(&c, &bs->cars[s->car].cid) ||
		    lfs_envelope_parse(&info[k], rec + LFS_CID_BYTES, s->len))
			rc = -ESTALE;
	}
	for (uint32_t k = 0; k < r->nrec && !rc; k++)
		cars[k] = bs->seg[r->first + k].car;
	if (!rc) {
		for (uint32_t k = 0; k < r->nrec; k++) {
			struct car_file *cf = &bs->cars[cars[k]];
			lfs_bs_car_set_info(cf, &info[k]);
			cf->indexed = true;
		}
		r->cars = cars;
		cars = NULL;
		bs->runs[bs->nruns++] = *r;
		bs->runs_end = r->first + r->nrec;
	}
	free(info);
	free(cars);
	return rc;
}

struct run_file {
	uint32_t first, end;
	char *name;
};

static int run_file_cmp(const void *x, const void *y)
{
	const struct run_file *a = x, *b = y;
	if (a->first != b->first)
		return a->first < b->first ? -1 : 1;
	return a->end > b->end ? -1 : a->end < b->end;
}

/* The run files in DIR/runs, by first record, the longest first. */
static int list_runs(struct lfs_blockstore *bs, struct run_file **out,
		     size_t *out_n)
{
	*out = NULL;
	*out_n = 0;
	char *path = lfs_bs_path_join(bs->dir, RUN_DIR, "");
	if (!path)
		return -ENOMEM;
	DIR *d = opendir(path);
	free(path);
	if (!d)
		return errno == ENOENT ? 0 : -errno;
	struct run_file *v = NULL;
	size_t n = 0, cap = 0;
	int rc = 0;
	struct dirent *de;
	while (!rc && (de = readdir(d))) {
		uint32_t first, end;
		if (!parse_name(de->d_name, &first, &end))
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 8;
			void *p = realloc(v, cap * sizeof(*v));
			if (!p) {
				rc = -ENOMEM;
				break;
			}
			v = p;
		}
		v[n] = (struct run_file){first, end, strdup(de->d_name)};
		if (!v[n++].name)
			rc = -ENOMEM;
	}
	closedir(d);
	if (rc) {
		for (size_t i = 0; i < n; i++)
			free(v[i].name);
		free(v);
		return rc;
	}
	if (n)
		qsort(v, n, sizeof(*v), run_file_cmp);
	*out = v;
	*out_n = n;
	return 0;
}

static void free_run_files(struct run_file *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i].name);
	free(v);
}

/* Map the chain of runs from record 0 on. Caller holds runs_lock. */
static int open_runs(struct lfs_blockstore *bs)
{
	pthread_mutex_lock(&bs->lock);
	bool done = bs->runs_opened;
	bs->runs_opened = true;
	pthread_mutex_unlock(&bs->lock);
	if (done)
		return 0;
	struct run_file *v;
	size_t n;
	int rc = list_runs(bs, &v, &n);
	for (size_t i = 0; !rc && i < n; i++) {
		pthread_mutex_lock(&bs->lock);
		bool next = v[i].first == bs->runs_end;
		pthread_mutex_unlock(&bs->lock);
		if (!next)
			continue;
		struct seg_run r;
		uint8_t *recs;
		int one = read_run(bs, v[i].name, &r, &recs);
		if (one) {
			if (one == -ENOMEM)
				rc = one;
			continue;
		}
		if (r.first != v[i].first || r.first + r.nrec != v[i].end)
			one = -EBADMSG;
		if (!one) {
			r.name = v[i].name;
			v[i].name = NULL;
			pthread_mutex_lock(&bs->lock);
			one = adopt_run(bs, &r, recs);
			pthread_mutex_unlock(&bs->lock);
		}
		free(recs);
		if (one) {
			lfs_bs_run_free(&r);
			if (one == -ENOMEM)
				rc = one;
		}
	}
	free_run_files(v, n);
	return rc;
}

void lfs_bs_runs_open(struct lfs_blockstore *bs)
{
	pthread_mutex_lock(&bs->lock);
	bool done = bs->runs_opened;
	pthread_mutex_unlock(&bs->lock);
	if (done)
		return; /* without waiting for a run being written */
	pthread_mutex_lock(&bs->runs_lock);
	int rc = open_runs(bs);
	pthread_mutex_unlock(&bs->runs_lock);
	if (rc)
		lfs_warn("%s: could not read the segment's block index: %s",
			 bs->dir, strerror(-rc));
}

/* ---- writing a run ---- */

static int add_entry(struct lfs_buf *v, const struct lfs_cid *cid, uint32_t ord,
		     uint64_t len, uint64_t off)
{
	if (len > UINT32_MAX || off > UINT32_MAX)
		return -EFBIG;
	uint8_t e[RUN_ENTRY] = {0};
	memcpy(e, cid->digest, LFS_DIGEST_LEN);
	e[LFS_DIGEST_LEN] = cid->codec;
	lfs_le_put32(e + 36, ord);
	lfs_le_put32(e + 40, (uint32_t)len);
	lfs_le_put32(e + 44, (uint32_t)off);
	return lfs_buf_append(v, e, sizeof(e));
}

/*
 * The new records [a, b): each one's CAR slot (cars) and record bytes
 * (recs), and every block of theirs as an entry (ents, unsorted); ord_of
 * (ncars) gets each such CAR's ordinal. Every record must be loaded and
 * none removed: -EAGAIN otherwise. Caller holds the lock.
 */
static int collect(struct lfs_blockstore *bs, uint32_t a, uint32_t b,
		   uint32_t *cars, struct lfs_buf *recs, struct lfs_buf *ents,
		   uint32_t *ord_of)
{
	for (size_t i = 0; i < bs->ncars; i++)
		ord_of[i] = NO_ORD;
	for (uint32_t j = a; j < b; j++) {
		size_t idx = bs->seg[j].car;
		if (bs->seg[j].removed || !bs->cars[idx].loaded ||
		    bs->cars[idx].indexed)
			return -EAGAIN;
		const struct car_file *cf = &bs->cars[idx];
		cars[j - a] = (uint32_t)idx;
		ord_of[idx] = j;
		uint8_t rec[RUN_REC];
		lfs_cid_to_bytes(rec, &cf->cid);
		memcpy(rec + LFS_CID_BYTES, cf->env_header,
		       LFS_ENVELOPE_HEADER_BYTES);
		int rc = lfs_buf_append(recs, rec, sizeof(rec));
		/* A large record keeps its own sorted index: copy it. */
		size_t nidx = cf->side ? cf->side->n : 0;
		for (size_t k = 0; !rc && k < nidx; k++) {
			const uint8_t *e = cf->side->idx + k * IDX_ENTRY;
			struct lfs_cid c = {.codec = e[LFS_DIGEST_LEN]};
			memcpy(c.digest, e, LFS_DIGEST_LEN);
			rc = add_entry(ents, &c, j, lfs_le_get32(e + 36),
				       lfs_le_get64(e + 40));
		}
		if (rc)
			return rc;
	}
	for (size_t i = 0; i < bs->nlocs; i++) {
		const struct loc *l = &bs->locs[i];
		int rc = ord_of[l->car] == NO_ORD
				 ? 0
				 : add_entry(ents, &l->cid, ord_of[l->car],
					     l->len, l->off);
		if (rc)
			return rc;
	}
	return 0;
}

/* Drop from the hash table every location in a CAR with an ordinal.
 * Caller holds the lock. */
static int drop_locations(struct lfs_blockstore *bs, const uint32_t *ord_of,
			  size_t nord)
{
	size_t k = 0;
	for (size_t i = 0; i < bs->nlocs; i++) {
		uint32_t car = bs->locs[i].car;
		if (car < nord && ord_of[car] != NO_ORD)
			continue;
		bs->locs[k++] = bs->locs[i];
	}
	bs->nlocs = k;
	/* Give the memory back: the table is rebuilt at its new size. */
	size_t cap = k < 256 ? 256 : k;
	void *p = realloc(bs->locs, cap * sizeof(*bs->locs));
	if (p) {
		bs->locs = p;
		bs->caplocs = cap;
	}
	lfs_cidtab_release(&bs->loc_index);
	lfs_cidtab_init(&bs->loc_index, sizeof(struct loc),
			offsetof(struct loc, cid));
	for (size_t i = 0; i < k; i++) {
		int rc = lfs_cidtab_add(&bs->loc_index, bs->locs, i);
		if (rc)
			return rc;
	}
	return 0;
}

/* Remove the files under DIR/runs that no run of ours is, and
 * temporaries a crash left. Caller holds runs_lock. */
static void remove_strays(struct lfs_blockstore *bs)
{
	char *path = lfs_bs_path_join(bs->dir, RUN_DIR, "");
	DIR *d = path ? opendir(path) : NULL;
	free(path);
	struct dirent *de;
	while (d && (de = readdir(d))) {
		const char *name = de->d_name;
		size_t len = strlen(name);
		uint32_t first, end;
		bool run = parse_name(name, &first, &end);
		bool tmp = name[0] == '.' && len > 5 &&
			   !strcmp(name + len - 4, ".tmp");
		if (!run && !tmp)
			continue;
		bool ours = false;
		pthread_mutex_lock(&bs->lock);
		for (size_t k = 0; k < bs->nruns && run && !ours; k++)
			ours = !strcmp(bs->runs[k].name, name);
		pthread_mutex_unlock(&bs->lock);
		if (!ours)
			unlinkat(dirfd(d), name, 0);
	}
	if (d)
		closedir(d);
}

/* A run file being written: through a buffer, its MAC as it goes. */
struct run_out {
	int fd;
	crypto_generichash_state mac;
	uint8_t buf[64 << 10];
	size_t len;
	int err;
};

static void out_flush(struct run_out *o)
{
	if (!o->err && o->len) {
		crypto_generichash_update(&o->mac, o->buf, o->len);
		o->err = lfs_write_all(o->fd, o->buf, o->len);
	}
	o->len = 0;
}

static void out_put(struct run_out *o, const void *p, size_t len)
{
	while (len) {
		size_t n = sizeof(o->buf) - o->len;
		if (n > len)
			n = len;
		memcpy(o->buf + o->len, p, n);
		o->len += n;
		p = (const uint8_t *)p + n;
		len -= n;
		if (o->len == sizeof(o->buf))
			out_flush(o);
	}
}

/*
 * Write DIR/runs/<first>-<end> (records recs, the entries of every
 * source merged) and open it as *out. Reads the sources outside every
 * lock: they are the caller's own descriptors and memory.
 */
static int write_run(struct lfs_blockstore *bs, struct seg_run *out,
		     uint32_t first, uint32_t end, const struct lfs_buf *recs,
		     struct source *src, size_t nsrc)
{
	size_t nent = 0;
	for (size_t i = 0; i < nsrc; i++)
		nent += src[i].n + src[i].left;
	if (nent > UINT32_MAX)
		return -EFBIG;
	size_t nbloom = lfs_bs_bloom_blocks(nent);
	char name[32], tmp[40];
	snprintf(name, sizeof(name), "%" PRIu32 "-%" PRIu32, first, end);
	snprintf(tmp, sizeof(tmp), ".%s.tmp", name);
	char *dir = lfs_bs_path_join(bs->dir, RUN_DIR, "");
	char *path = lfs_bs_path_join(bs->dir, RUN_DIR, name);
	char *tpath = lfs_bs_path_join(bs->dir, RUN_DIR, tmp);
	struct seg_run r = {.fd = -1,
			    .first = first,
			    .nrec = end - first,
			    .nent = nent,
			    .ent_off = RUN_HEADER + (uint64_t)recs->len,
			    .nbloom = nbloom};
	r.bloom = calloc(nbloom, RUN_BLOOM_BLOCK);
	r.fence = malloc(run_groups(nent) * RUN_KEY + 1);
	struct run_out *o = malloc(sizeof(*o));
	int rc = dir && path && tpath && r.bloom && r.fence && o ? 0 : -ENOMEM;
	if (!rc && mkdir(dir, 0700) && errno != EEXIST)
		rc = -errno;
	if (!rc) {
		o->fd = open(tpath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
			     0600);
		if (o->fd < 0)
			rc = -errno;
	}
	if (!rc) {
		o->len = 0;
		o->err = 0;
		mac_init(&o->mac, bs);
		uint8_t hdr[RUN_HEADER] = {0};
		memcpy(hdr, RUN_MAGIC, 8);
		lfs_le_put32(hdr + 8, first);
		lfs_le_put32(hdr + 12, end - first);
		lfs_le_put32(hdr + 16, (uint32_t)nent);
		lfs_le_put32(hdr + 20, (uint32_t)nbloom);
		out_put(o, hdr, sizeof(hdr));
		out_put(o, recs->data, recs->len);
		for (size_t k = 0; !o->err; k++) {
			struct source *min = NULL;
			for (size_t i = 0; i < nsrc && !o->err; i++) {
				o->err = source_fill(&src[i]);
				if (src[i].n &&
				    (!min ||
				     lfs_bs_key_cmp(src[i].p, min->p) < 0))
					min = &src[i];
			}
			if (!min || o->err)
				break;
			uint8_t *b =
				lfs_bs_bloom_block(r.bloom, nbloom, min->p);
			for (int i = 0; i < 8; i++) {
				unsigned bit = lfs_bs_bloom_bit(min->p, i);
				b[bit >> 3] |= (uint8_t)(1u << (bit & 7));
			}
			if (k % RUN_GROUP == 0)
				memcpy(r.fence + k / RUN_GROUP * RUN_KEY,
				       min->p, RUN_KEY);
			out_put(o, min->p, RUN_ENTRY);
			min->p += RUN_ENTRY;
			min->n--;
		}
		out_put(o, r.bloom, nbloom * RUN_BLOOM_BLOCK);
		out_flush(o);
		uint8_t mac[RUN_MAC];
		crypto_generichash_final(&o->mac, mac, RUN_MAC);
		if (!o->err)
			o->err = lfs_write_all(o->fd, mac, sizeof(mac));
		/* A cache: no fsync (a crash leaves it whole, absent or
		 * failing its MAC). */
		if (close(o->fd) && !o->err)
			o->err = -errno;
		rc = o->err;
		if (!rc && rename(tpath, path))
			rc = -errno;
		if (rc)
			unlink(tpath);
	}
	if (!rc && (r.fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		rc = -errno;
	if (!rc && !(r.name = strdup(name)))
		rc = -ENOMEM;
	if (rc && path)
		unlink(path);
	if (rc)
		lfs_bs_run_free(&r);
	else
		*out = r;
	free(o);
	free(dir);
	free(path);
	free(tpath);
	return rc;
}

/* Make sure every record in [a, b) is loaded (its blocks known). */
static int load_records(struct lfs_blockstore *bs, uint32_t a, uint32_t b)
{
	for (uint32_t j = a; j < b; j++) {
		pthread_mutex_lock(&bs->lock);
		struct lfs_cid c = *lfs_bs_seg_cid(bs, j);
		bool need =
			!bs->seg[j].removed && !bs->cars[bs->seg[j].car].loaded;
		pthread_mutex_unlock(&bs->lock);
		int rc = need ? lfs_blockstore_load(NULL, NULL, bs, &c, false)
			      : 0;
		if (rc)
			return rc;
	}
	return 0;
}

/*
 * A record a run now covers: its blocks are found through the run, and
 * its root, should anything ask for it again, is read again from the
 * segment, as a reopened ledger's records are. So it keeps no root lists
 * (~80 bytes a commit, for the store's life). A large record keeps its
 * root and its sorted index (the sidecars' table points at it).
 */
static void index_record(struct car_file *cf)
{
	cf->indexed = true;
	if (cf->side)
		return;
	free(cf->links);
	cf->links = NULL;
	cf->ncars = cf->nhead = 0;
	cf->loaded = false;
}

/*
 * Put the new run nr (over the last m runs and records [a, b), whose CARs
 * are cars) in place, unless a compaction forgot every location since gen;
 * drop those records' blocks from the hash table; remove the runs it
 * replaces. Takes nr and *all_cars on success.
 */
static int install(struct lfs_blockstore *bs, struct seg_run *nr,
		   uint32_t **all_cars, size_t m, uint32_t a, uint32_t b,
		   const uint32_t *cars, const uint32_t *ord_of, size_t nord,
		   uint64_t gen)
{
	char keep[32];
	snprintf(keep, sizeof(keep), "%s", nr->name);
	struct seg_run *old = m ? malloc(m * sizeof(*old)) : NULL;
	int rc = 0;
	pthread_mutex_lock(&bs->lock);
	void *grown = realloc(bs->runs, (bs->nruns + 1) * sizeof(*bs->runs));
	if (grown)
		bs->runs = grown;
	if (bs->runs_gen != gen)
		rc = -EAGAIN; /* a compaction forgot every location */
	else if ((m && !old) || !grown)
		rc = -ENOMEM;
	if (!rc) {
		if (m)
			memcpy(old, bs->runs + bs->nruns - m, m * sizeof(*old));
		bs->nruns -= m;
		nr->cars = *all_cars;
		*all_cars = NULL;
		bs->runs[bs->nruns++] = *nr;
		*nr = (struct seg_run){.fd = -1};
		bs->runs_end = b;
		for (uint32_t j = a; j < b; j++)
			index_record(&bs->cars[cars[j - a]]);
		rc = drop_locations(bs, ord_of, nord);
	} else {
		m = 0;
	}
	pthread_mutex_unlock(&bs->lock);
	for (size_t k = 0; k < m; k++) {
		char *p = strcmp(old[k].name, keep)
				  ? lfs_bs_path_join(bs->dir, RUN_DIR,
						     old[k].name)
				  : NULL;
		if (p)
			unlink(p);
		free(p);
		lfs_bs_run_free(&old[k]);
	}
	free(old);
	return rc;
}

/* Write a run when min records wait for one: 0 when written, 1 when
 * there was nothing to do, or a negative errno. */
static int runs_write(struct lfs_blockstore *bs, size_t min)
{
	int rc = open_runs(bs);
	if (rc)
		return rc;
	pthread_mutex_lock(&bs->lock);
	uint32_t a = bs->runs_end;
	uint32_t b =
		bs->nseg > UINT32_MAX - 1 ? UINT32_MAX - 1 : (uint32_t)bs->nseg;
	uint64_t gen = bs->runs_gen;
	pthread_mutex_unlock(&bs->lock);
	if (b <= a || b - a < min)
		return 1; /* nothing to do (most appends) */
	if ((rc = load_records(bs, a, b)))
		return rc;

	struct lfs_buf recs, ents;
	lfs_buf_init(&recs, 0);
	lfs_buf_init(&ents, 0);
	uint32_t *cars = malloc((b - a) * sizeof(*cars)), *ord_of = NULL;
	uint32_t *all_cars = NULL, *old_nrec = NULL;
	struct seg_run nr = {.fd = -1};
	struct source *src = NULL;
	size_t nord = 0, m = 0;
	uint32_t first = a;
	pthread_mutex_lock(&bs->lock);
	nord = bs->ncars;
	ord_of = malloc((nord ? nord : 1) * sizeof(*ord_of));
	rc = cars && ord_of ? 0 : -ENOMEM;
	if (!rc && bs->runs_gen != gen)
		rc = -EAGAIN; /* a compaction forgot every location */
	if (!rc)
		rc = collect(bs, a, b, cars, &recs, &ents, ord_of);
	/* Merge while the last run is no more than twice what comes: runs
	 * halve in size from the oldest, so there are O(log n) of them and
	 * an entry is rewritten O(log n) times. */
	size_t total = ents.len / RUN_ENTRY;
	while (!rc && m < bs->nruns &&
	       bs->runs[bs->nruns - 1 - m].nent <= 2 * total)
		total += bs->runs[bs->nruns - 1 - m++].nent;
	if (!rc) {
		first = m ? bs->runs[bs->nruns - m].first : a;
		src = calloc(m + 1, sizeof(*src));
		old_nrec = malloc((m + 1) * sizeof(*old_nrec));
		all_cars = malloc((b - first) * sizeof(*all_cars));
		rc = src && old_nrec && all_cars ? 0 : -ENOMEM;
	}
	for (size_t k = 0; src && k <= m; k++)
		src[k].fd = -1;
	/* What the merged runs are: their records' CARs, and a descriptor
	 * of each file of theirs (a compaction may close the store's
	 * meanwhile), read below without the lock. */
	for (size_t k = 0; !rc && k < m; k++) {
		const struct seg_run *r = &bs->runs[bs->nruns - m + k];
		src[k] = (struct source){
			.fd = dup(r->fd), .off = r->ent_off, .left = r->nent};
		old_nrec[k] = r->nrec;
		if (src[k].fd < 0)
			rc = -errno;
		memcpy(all_cars + (r->first - first), r->cars,
		       r->nrec * sizeof(*all_cars));
	}
	pthread_mutex_unlock(&bs->lock);

	struct lfs_buf allrecs;
	lfs_buf_init(&allrecs, 0);
	if (!rc) {
		memcpy(all_cars + (a - first), cars,
		       (b - a) * sizeof(*all_cars));
		qsort(ents.data, ents.len / RUN_ENTRY, RUN_ENTRY,
		      lfs_bs_key_cmp);
	}
	for (size_t k = 0; !rc && k < m; k++) {
		size_t len = (size_t)old_nrec[k] * RUN_REC;
		if (!(rc = lfs_buf_reserve(&allrecs, len)) &&
		    (rc = lfs_pread_all(src[k].fd, allrecs.data + allrecs.len,
					len, RUN_HEADER)) > 0)
			rc = -EBADMSG;
		if (!rc)
			allrecs.len += len;
	}
	if (!rc) {
		src[m] = (struct source){
			.p = ents.data, .n = ents.len / RUN_ENTRY, .fd = -1};
		rc = lfs_buf_append(&allrecs, recs.data, recs.len);
	}
	if (!rc)
		rc = write_run(bs, &nr, first, b, &allrecs, src, m + 1);
	for (size_t k = 0; src && k <= m; k++)
		source_release(&src[k]);
	free(src);
	free(old_nrec);
	lfs_buf_release(&allrecs);
	if (!rc)
		rc = install(bs, &nr, &all_cars, m, a, b, cars, ord_of, nord,
			     gen);
	lfs_bs_run_free(&nr);
	free(all_cars);
	free(cars);
	free(ord_of);
	lfs_buf_release(&recs);
	lfs_buf_release(&ents);
	return rc;
}

size_t lfs_bs_runs_due(struct lfs_blockstore *bs)
{
	pthread_mutex_lock(&bs->lock);
	bool many = bs->nlocs >= bs->runs_locs_base + RUN_LOCATIONS;
	pthread_mutex_unlock(&bs->lock);
	return many ? 1 : RUN_RECORDS;
}

int lfs_bs_runs_write(struct lfs_blockstore *bs, size_t min)
{
	/* One writer at a time; another thread at it covers these too. */
	if (pthread_mutex_trylock(&bs->runs_lock))
		return 0;
	int rc = runs_write(bs, min);
	if (!rc)
		remove_strays(bs); /* a run was written */
	if (!rc || min <= 1) {
		/* Counted from here: the locations left are not the
		 * segment's to cover (other CARs'), or could not be (a run
		 * that failed is tried again as many locations later, not at
		 * every commit). */
		pthread_mutex_lock(&bs->lock);
		bs->runs_locs_base = bs->nlocs;
		pthread_mutex_unlock(&bs->lock);
	}
	pthread_mutex_unlock(&bs->runs_lock);
	if (rc < 0 && rc != -EAGAIN)
		lfs_warn("%s: could not write the segment's block index: %s",
			 bs->dir, strerror(-rc));
	return rc < 0 && rc != -EAGAIN ? rc : 0;
}

void lfs_bs_runs_remove(struct lfs_blockstore *bs)
{
	pthread_mutex_lock(&bs->runs_lock);
	pthread_mutex_lock(&bs->lock);
	lfs_bs_runs_release(bs);
	pthread_mutex_unlock(&bs->lock);
	remove_strays(bs);
	lfs_bs_resume_remove(bs);
	pthread_mutex_unlock(&bs->runs_lock);
}
