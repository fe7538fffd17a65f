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
#include <sys/mman.h>
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
	static const char label[] = "ledgerfs segment run v1";
	uint8_t sub[32];
	crypto_generichash(sub, sizeof(sub), (const uint8_t *)label,
			   sizeof(label) - 1, bs->key, LFS_KEY_BYTES);
	crypto_generichash_init(st, sub, sizeof(sub), RUN_MAC);
	sodium_memzero(sub, sizeof(sub));
}

static void run_mac(uint8_t out[RUN_MAC], struct lfs_blockstore *bs,
		    const uint8_t *p, size_t len)
{
	crypto_generichash_state st;
	mac_init(&st, bs);
	crypto_generichash_update(&st, p, len);
	crypto_generichash_final(&st, out, RUN_MAC);
}

static int entry_cmp(const void *a, const void *b)
{
	return memcmp(a, b, LFS_DIGEST_LEN + 1);
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

/* Map DIR/runs/name and check its shape, and with verify its MAC. */
static int map_run(struct lfs_blockstore *bs, const char *name, bool verify,
		   struct seg_run *out)
{
	char *path = lfs_bs_path_join(bs->dir, RUN_DIR, name);
	if (!path)
		return -ENOMEM;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	free(path);
	if (fd < 0)
		return -errno;
	struct stat st;
	int rc = 0;
	void *m = MAP_FAILED;
	if (fstat(fd, &st) || st.st_size < RUN_HEADER + RUN_MAC) {
		rc = -EBADMSG;
		goto out;
	}
	size_t len = (size_t)st.st_size;
	m = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, 0);
	if (m == MAP_FAILED) {
		rc = -errno;
		goto out;
	}
	const uint8_t *p = m;
	uint32_t first = lfs_le_get32(p + 8), nrec = lfs_le_get32(p + 12),
		 nent = lfs_le_get32(p + 16), nbloom = lfs_le_get32(p + 20);
	uint8_t mac[RUN_MAC];
	if (memcmp(p, RUN_MAGIC, 8) || nrec == 0 || nbloom == 0 ||
	    RUN_HEADER + (uint64_t)nrec * RUN_REC + (uint64_t)nent * RUN_ENTRY +
			    (uint64_t)nbloom * RUN_BLOOM_BLOCK + RUN_MAC !=
		    len) {
		rc = -EBADMSG;
		goto out;
	}
	if (verify) {
		run_mac(mac, bs, p, len - RUN_MAC);
		if (sodium_memcmp(mac, p + len - RUN_MAC, RUN_MAC)) {
			rc = -EBADMSG;
			goto out;
		}
	}
	/* Looked up at random from now on: no read-ahead around a probe. */
	madvise(m, len, MADV_RANDOM);
	const uint8_t *ent = p + RUN_HEADER + (size_t)nrec * RUN_REC;
	*out = (struct seg_run){
		.first = first,
		.nrec = nrec,
		.recs = p + RUN_HEADER,
		.ent = ent,
		.nent = nent,
		.bloom = ent + (size_t)nent * RUN_ENTRY,
		.nbloom = nbloom,
		.map = m,
		.maplen = len,
	};
	m = MAP_FAILED;
out:
	if (m != MAP_FAILED)
		munmap(m, (size_t)st.st_size);
	close(fd);
	return rc;
}

/*
 * Take a mapped run into the store if its records are the segment's at
 * those places: their CARs get a slot each, marked indexed. Caller holds
 * the lock.
 */
static int adopt_run(struct lfs_blockstore *bs, struct seg_run *r)
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
		const uint8_t *rec = r->recs + (size_t)k * RUN_REC;
		struct lfs_cid c;
		if (s->removed ||
		    lfs_cid_from_bytes(&c, rec, LFS_CID_BYTES) !=
			    LFS_CID_BYTES ||
		    !lfs_cid_equal(&c, &s->cid) ||
		    lfs_envelope_parse(&info[k], rec + LFS_CID_BYTES, s->len))
			rc = -ESTALE;
	}
	for (uint32_t k = 0; k < r->nrec && !rc; k++) {
		size_t idx;
		if (!(rc = lfs_bs_car_slot(bs, &idx,
					   &bs->seg[r->first + k].cid)))
			cars[k] = (uint32_t)idx;
	}
	if (!rc) {
		for (uint32_t k = 0; k < r->nrec; k++) {
			struct car_file *cf = &bs->cars[cars[k]];
			cf->info = info[k];
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
		int one = map_run(bs, v[i].name, true, &r);
		if (!one &&
		    (r.first != v[i].first || r.first + r.nrec != v[i].end)) {
			munmap(r.map, r.maplen);
			one = -EBADMSG;
		}
		if (one) {
			if (one == -ENOMEM)
				rc = one;
			continue;
		}
		r.name = v[i].name;
		v[i].name = NULL;
		pthread_mutex_lock(&bs->lock);
		one = adopt_run(bs, &r);
		pthread_mutex_unlock(&bs->lock);
		if (one) {
			munmap(r.map, r.maplen);
			free(r.name);
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
		size_t idx;
		if (bs->seg[j].removed ||
		    !lfs_cidtab_find(&bs->car_index, bs->cars, &bs->seg[j].cid,
				     &idx) ||
		    !bs->cars[idx].loaded || bs->cars[idx].indexed)
			return -EAGAIN;
		const struct car_file *cf = &bs->cars[idx];
		cars[j - a] = (uint32_t)idx;
		ord_of[idx] = j;
		uint8_t rec[RUN_REC];
		lfs_cid_to_bytes(rec, &cf->cid);
		memcpy(rec + LFS_CID_BYTES, cf->info.header,
		       LFS_ENVELOPE_HEADER_BYTES);
		int rc = lfs_buf_append(recs, rec, sizeof(rec));
		/* A large record keeps its own sorted index: copy it. */
		for (size_t k = 0; !rc && k < cf->nidx; k++) {
			const uint8_t *e = cf->idx + k * IDX_ENTRY;
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

/* Sorted entry arrays merged into one, as it is written. */
struct source {
	const uint8_t *p;
	size_t n;
};

/*
 * Write DIR/runs/<first>-<end> (records recs, the entries of every
 * source merged) and map it into *out. Reads the sources outside every
 * lock: they are the caller's own mappings and memory.
 */
static int write_run(struct lfs_blockstore *bs, struct seg_run *out,
		     uint32_t first, uint32_t end, const struct lfs_buf *recs,
		     struct source *src, size_t nsrc)
{
	size_t nent = 0;
	for (size_t i = 0; i < nsrc; i++)
		nent += src[i].n;
	if (nent > UINT32_MAX)
		return -EFBIG;
	size_t nbloom = lfs_bs_bloom_blocks(nent);
	char name[32], tmp[40];
	snprintf(name, sizeof(name), "%" PRIu32 "-%" PRIu32, first, end);
	snprintf(tmp, sizeof(tmp), ".%s.tmp", name);
	char *dir = lfs_bs_path_join(bs->dir, RUN_DIR, "");
	char *path = lfs_bs_path_join(bs->dir, RUN_DIR, name);
	char *tpath = lfs_bs_path_join(bs->dir, RUN_DIR, tmp);
	uint8_t *bloom = calloc(nbloom, RUN_BLOOM_BLOCK);
	struct run_out *o = malloc(sizeof(*o));
	int rc = dir && path && tpath && bloom && o ? 0 : -ENOMEM;
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
		for (;;) {
			struct source *min = NULL;
			for (size_t i = 0; i < nsrc; i++)
				if (src[i].n &&
				    (!min || entry_cmp(src[i].p, min->p) < 0))
					min = &src[i];
			if (!min)
				break;
			uint8_t *b = lfs_bs_bloom_block(bloom, nbloom, min->p);
			for (int i = 0; i < 8; i++) {
				unsigned bit = lfs_bs_bloom_bit(min->p, i);
				b[bit >> 3] |= (uint8_t)(1u << (bit & 7));
			}
			out_put(o, min->p, RUN_ENTRY);
			min->p += RUN_ENTRY;
			min->n--;
		}
		out_put(o, bloom, nbloom * RUN_BLOOM_BLOCK);
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
	if (!rc && !(rc = map_run(bs, name, false, out)) &&
	    !(out->name = strdup(name))) {
		munmap(out->map, out->maplen);
		rc = -ENOMEM;
	}
	if (rc && path)
		unlink(path);
	free(o);
	free(bloom);
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
		struct lfs_cid c = bs->seg[j].cid;
		size_t idx;
		bool need =
			!bs->seg[j].removed &&
			!(lfs_cidtab_find(&bs->car_index, bs->cars, &c, &idx) &&
			  bs->cars[idx].loaded);
		pthread_mutex_unlock(&bs->lock);
		int rc = need ? lfs_blockstore_load(NULL, NULL, bs, &c, false)
			      : 0;
		if (rc)
			return rc;
	}
	return 0;
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
		memset(nr, 0, sizeof(*nr));
		bs->runs_end = b;
		for (uint32_t j = a; j < b; j++)
			bs->cars[cars[j - a]].indexed = true;
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
		munmap(old[k].map, old[k].maplen);
		free(old[k].cars);
		free(old[k].name);
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
	uint32_t *all_cars = NULL;
	struct seg_run nr = {0}, *old = NULL;
	struct source *src = NULL;
	size_t nord = 0, m = 0, nold = 0;
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
	if (!rc && m) {
		first = bs->runs[bs->nruns - m].first;
		old = calloc(m, sizeof(*old));
		rc = old ? 0 : -ENOMEM;
	}
	if (!rc && !(all_cars = malloc((b - first) * sizeof(*all_cars))))
		rc = -ENOMEM;
	/* What the merged runs were: their names (mapped again below, as
	 * the store's own mappings may go with a compaction meanwhile) and
	 * their records' CARs. */
	for (size_t k = 0; !rc && k < m; k++) {
		const struct seg_run *r = &bs->runs[bs->nruns - m + k];
		if (!(old[k].name = strdup(r->name)))
			rc = -ENOMEM;
		nold = k + 1;
		memcpy(all_cars + (r->first - first), r->cars,
		       r->nrec * sizeof(*all_cars));
	}
	pthread_mutex_unlock(&bs->lock);

	struct lfs_buf allrecs;
	lfs_buf_init(&allrecs, 0);
	if (!rc) {
		memcpy(all_cars + (a - first), cars,
		       (b - a) * sizeof(*all_cars));
		qsort(ents.data, ents.len / RUN_ENTRY, RUN_ENTRY, entry_cmp);
		src = calloc(m + 1, sizeof(*src));
		rc = src ? 0 : -ENOMEM;
	}
	for (size_t k = 0; !rc && k < m; k++) {
		char *name = old[k].name;
		if (!(rc = map_run(bs, name, false, &old[k]))) {
			rc = lfs_buf_append(&allrecs, old[k].recs,
					    (size_t)old[k].nrec * RUN_REC);
			src[k] = (struct source){old[k].ent, old[k].nent};
		}
		old[k].name = name;
	}
	if (!rc) {
		src[m] = (struct source){ents.data, ents.len / RUN_ENTRY};
		rc = lfs_buf_append(&allrecs, recs.data, recs.len);
	}
	if (!rc)
		rc = write_run(bs, &nr, first, b, &allrecs, src, m + 1);
	for (size_t k = 0; k < nold; k++) {
		if (old[k].map)
			munmap(old[k].map, old[k].maplen);
		free(old[k].name);
	}
	free(old);
	free(src);
	lfs_buf_release(&allrecs);
	if (!rc)
		rc = install(bs, &nr, &all_cars, m, a, b, cars, ord_of, nord,
			     gen);
	if (nr.map)
		munmap(nr.map, nr.maplen);
	free(nr.name);
	free(all_cars);
	free(cars);
	free(ord_of);
	lfs_buf_release(&recs);
	lfs_buf_release(&ents);
	return rc;
}

int lfs_bs_runs_write(struct lfs_blockstore *bs, size_t min)
{
	/* One writer at a time; another thread at it covers these too. */
	if (pthread_mutex_trylock(&bs->runs_lock))
		return 0;
	int rc = runs_write(bs, min);
	if (!rc)
		remove_strays(bs); /* a run was written */
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
	pthread_mutex_unlock(&bs->runs_lock);
}
