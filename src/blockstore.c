#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "blockstore.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <jansson.h>
#include <sodium.h>

#include "blockmap.h"
#include "car.h"
#include "cbor.h"
#include "cidmap.h"
#include "fileio.h"
#include "log.h"

#define MAX_ROOT_LINKS 1024

struct car_file {
	struct lfs_cid cid;
	bool loaded;
	struct lfs_envelope_info info;
	struct lfs_car_root root; /* malloc'd arrays */
	/* Large CARs keep their block index in a sorted array (IDX_ENTRY
	 * bytes an entry) instead of the hash table: mapped from the local
	 * sidecar file car/<cid>.idx, or built in memory. */
	const uint8_t *idx;
	size_t nidx;
	void *idx_map; /* munmap on free, if mapped */
	size_t idx_maplen;
	uint8_t *idx_owned; /* free on free, if built */
};

/*
 * Sidecar block index of a large CAR: a local cache (never synced) so that
 * opening a compacted ledger reads a few pages instead of decrypting and
 * parsing the whole file.
 *   "LFSIDX1\n" | u32 count | u32 rootlen | root block | entries | MAC
 * entry (48 bytes): digest[32] codec pad[3] u32 len u64 offset (little
 * endian), sorted by digest then codec; MAC: keyed BLAKE2b-256 of all
 * that precedes it, with a key derived from the ledger key, so a damaged
 * or foreign sidecar is ignored (and rebuilt).
 */
#define IDX_MIN   ((size_t)4 << 20) /* CARs this large get one */
#define IDX_ENTRY 48
#define IDX_MAGIC "LFSIDX1\n"

struct seg_ent {
	struct lfs_cid cid;
	uint64_t off; /* of the sealed bytes */
	uint32_t len;
	bool removed;
};

struct loc {
	struct lfs_cid cid;
	uint32_t car;
	uint32_t len;
	uint64_t off;
};

struct chunk {
	uint64_t key; /* car index << 32 | chunk index */
	uint8_t *data;
	size_t len;
	struct chunk *hnext, *prev, *next;
};

struct lfs_blockstore {
	char *dir;
	uint8_t key[LFS_KEY_BYTES];
	pthread_mutex_t lock;

	struct car_file *cars;
	size_t ncars, capcars;
	struct lfs_cidmap car_index; /* car cid -> index into cars */

	struct loc *locs;
	size_t nlocs, caplocs;
	/* Block CID -> location: open addressing over indexes into locs
	 * (index + 1; 0 is empty), 4 bytes a slot. */
	uint32_t *bslots;
	size_t nbslots;

	struct lfs_blockmap fresh; /* blocks not in any CAR yet */

	size_t *sidecars; /* indexes of cars with a sorted block index */
	size_t nsidecars;

	struct lfs_cid *frontier; /* CARs named by loaded ones, not loaded */
	size_t nfrontier, capfrontier;

	struct chunk **buckets;
	size_t nbuckets;
	struct chunk *lru_head, *lru_tail; /* head: most recent */
	size_t cache_bytes, cache_max;

	bool dirty;        /* written without fsync since the last sync */
	bool lazy_imports; /* imports skip their fsyncs (a batch) */

	/* The segment (DIR/segment): commits appended as records, see
	 * blockstore.h. seg_lock serialises scanning, appending and
	 * truncating it (taken before lock); the tables below are guarded by
	 * lock. */
	pthread_mutex_t seg_lock;
	int seg_fd;          /* -1 until the segment exists here */
	uint64_t seg_ino;    /* the file seg_fd is */
	uint64_t seg_end;    /* end of the last good record */
	struct seg_ent *seg; /* its commits, in order */
	size_t nseg, capseg;
	struct lfs_cidmap seg_index; /* CAR cid -> index into seg */
	struct lfs_cid *seg_heads;   /* records nothing later supersedes */
	size_t nseg_heads;
	size_t seg_live;       /* entries not removed */
	bool seg_dir_unsynced; /* made here, directory not fsynced yet */
	bool seg_appended;     /* this process appended since open */
	/* Group commit: one fdatasync covers every record before it. */
	pthread_mutex_t sync_lock;
	pthread_cond_t sync_cond;
	bool syncing;
	uint64_t seg_synced; /* offset known to be on disk */
	int *old_fds;        /* of removed segments, closed at free (readers) */
	size_t nold_fds;
};

/* ---- small helpers ---- */

static char *path_join(const char *dir, const char *sub, const char *name)
{
	size_t n = strlen(dir) + strlen(sub) + strlen(name) + 3;
	char *p = malloc(n);
	if (p)
		snprintf(p, n, "%s/%s%s%s", dir, sub, *name ? "/" : "", name);
	return p;
}

static char *car_path(struct lfs_blockstore *bs, const struct lfs_cid *cid)
{
	char s[LFS_CID_STRLEN + 1];
	lfs_cid_to_string(s, cid);
	return path_join(bs->dir, "car", s);
}

static int fsync_path(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	int rc = fsync(fd) ? -errno : 0;
	close(fd);
	return rc;
}

/*
 * Write data to dir/sub/name atomically: a temporary file, then rename. With
 * durable, fsync the file before the rename and the directory after it.
 */
static int write_atomic(struct lfs_blockstore *bs, const char *sub,
			const char *name, const void *data, size_t len,
			bool durable)
{
	char *dirpath = path_join(bs->dir, sub, "");
	char *final = path_join(bs->dir, sub, name);
	char *tmp = NULL;
	int rc = 0, fd = -1;
	if (!dirpath || !final) {
		rc = -ENOMEM;
		goto out;
	}
	size_t tl = strlen(dirpath) + 32;
	if (!(tmp = malloc(tl))) {
		rc = -ENOMEM;
		goto out;
	}
	snprintf(tmp, tl, "%s/.tmp-%08x", dirpath, randombytes_random());
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0) {
		rc = -errno;
		goto out;
	}
	if ((rc = lfs_write_all(fd, data, len)))
		goto out;
	if (durable && fsync(fd)) {
		rc = -errno;
		goto out;
	}
	if (close(fd)) {
		fd = -1;
		rc = -errno;
		goto out;
	}
	fd = -1;
	if (rename(tmp, final)) {
		rc = -errno;
		goto out;
	}
	if (durable) {
		rc = fsync_path(dirpath);
	} else {
		pthread_mutex_lock(&bs->lock);
		bs->dirty = true;
		pthread_mutex_unlock(&bs->lock);
	}
out:
	if (fd >= 0)
		close(fd);
	if (rc && tmp)
		unlink(tmp);
	free(tmp);
	free(final);
	free(dirpath);
	return rc;
}

static int read_file(uint8_t **out, size_t *out_len, const char *path,
		     size_t max)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	struct stat st;
	int rc = 0;
	uint8_t *buf = NULL;
	if (fstat(fd, &st)) {
		rc = -errno;
		goto out;
	}
	if ((uint64_t)st.st_size > max) {
		rc = -EFBIG;
		goto out;
	}
	size_t len = (size_t)st.st_size;
	if (!(buf = malloc(len ? len : 1))) {
		rc = -ENOMEM;
		goto out;
	}
	size_t got = 0;
	while (got < len) {
		ssize_t r = pread(fd, buf + got, len - got, (off_t)got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			rc = r < 0 ? -errno : -EIO;
			goto out;
		}
		got += (size_t)r;
	}
	*out = buf;
	*out_len = len;
	buf = NULL;
out:
	free(buf);
	close(fd);
	return rc;
}

/* ---- open and close ---- */

static int ensure_dir(const char *path, bool create)
{
	struct stat st;
	if (stat(path, &st) == 0)
		return S_ISDIR(st.st_mode) ? 0 : -ENOTDIR;
	if (errno != ENOENT || !create)
		return -errno;
	return mkdir(path, 0700) && errno != EEXIST ? -errno : 0;
}

int lfs_blockstore_open(struct lfs_blockstore **out, const char *dir,
			const uint8_t key[LFS_KEY_BYTES], size_t cache_bytes,
			bool create)
{
	struct lfs_blockstore *bs = calloc(1, sizeof(*bs));
	if (!bs)
		return -ENOMEM;
	int rc = -ENOMEM;
	if (!(bs->dir = strdup(dir)))
		goto fail;
	memcpy(bs->key, key, LFS_KEY_BYTES);
	pthread_mutex_init(&bs->lock, NULL);
	pthread_mutex_init(&bs->seg_lock, NULL);
	pthread_mutex_init(&bs->sync_lock, NULL);
	pthread_cond_init(&bs->sync_cond, NULL);
	bs->seg_fd = -1;
	lfs_cidmap_init(&bs->seg_index);
	lfs_cidmap_init(&bs->car_index);
	lfs_blockmap_init(&bs->fresh);
	bs->cache_max =
		cache_bytes ? cache_bytes : LFS_BLOCKSTORE_DEFAULT_CACHE;
	bs->nbuckets = 1024;
	while (bs->nbuckets < (bs->cache_max >> LFS_CAR_CHUNK_LOG2) * 2)
		bs->nbuckets *= 2;
	if (!(bs->buckets = calloc(bs->nbuckets, sizeof(*bs->buckets))))
		goto fail;
	char *car = path_join(dir, "car", ""),
	     *head = path_join(dir, "head", "");
	rc = !car || !head ? -ENOMEM : ensure_dir(dir, create);
	if (!rc)
		rc = ensure_dir(car, create);
	if (!rc)
		rc = ensure_dir(head, create);
	free(car);
	free(head);
	if (rc)
		goto fail;
	*out = bs;
	return 0;
fail:
	lfs_blockstore_free(bs);
	return rc;
}

void lfs_blockstore_free(struct lfs_blockstore *bs)
{
	if (!bs)
		return;
	for (size_t i = 0; i < bs->ncars; i++) {
		free(bs->cars[i].root.cars);
		free(bs->cars[i].root.head);
		if (bs->cars[i].idx_map)
			munmap(bs->cars[i].idx_map, bs->cars[i].idx_maplen);
		free(bs->cars[i].idx_owned);
	}
	free(bs->sidecars);
	free(bs->cars);
	free(bs->locs);
	lfs_cidmap_release(&bs->car_index);
	free(bs->bslots);
	lfs_blockmap_release(&bs->fresh);
	free(bs->frontier);
	for (struct chunk *c = bs->lru_head, *n; c; c = n) {
		n = c->next;
		free(c->data);
		free(c);
	}
	free(bs->buckets);
	if (bs->seg_fd >= 0)
		close(bs->seg_fd);
	for (size_t i = 0; i < bs->nold_fds; i++)
		close(bs->old_fds[i]);
	free(bs->old_fds);
	free(bs->seg);
	free(bs->seg_heads);
	lfs_cidmap_release(&bs->seg_index);
	sodium_memzero(bs->key, sizeof(bs->key));
	pthread_mutex_destroy(&bs->seg_lock);
	pthread_mutex_destroy(&bs->sync_lock);
	pthread_cond_destroy(&bs->sync_cond);
	pthread_mutex_destroy(&bs->lock);
	free(bs->dir);
	free(bs);
}

/* ---- chunk cache (caller holds the lock) ---- */

static struct chunk **bucket_of(struct lfs_blockstore *bs, uint64_t key)
{
	/* splitmix64's finaliser: every bit of the key (CAR and chunk)
	 * reaches the bucket bits. */
	uint64_t h = key;
	h = (h ^ (h >> 30)) * 0xbf58476d1ce4e5b9ull;
	h = (h ^ (h >> 27)) * 0x94d049bb133111ebull;
	h ^= h >> 31;
	return &bs->buckets[h & (bs->nbuckets - 1)];
}

static void lru_unlink(struct lfs_blockstore *bs, struct chunk *c)
{
	if (c->prev)
		c->prev->next = c->next;
	else
		bs->lru_head = c->next;
	if (c->next)
		c->next->prev = c->prev;
	else
		bs->lru_tail = c->prev;
	c->prev = c->next = NULL;
}

static void lru_front(struct lfs_blockstore *bs, struct chunk *c)
{
	c->next = bs->lru_head;
	c->prev = NULL;
	if (bs->lru_head)
		bs->lru_head->prev = c;
	bs->lru_head = c;
	if (!bs->lru_tail)
		bs->lru_tail = c;
}

static struct chunk *cache_find(struct lfs_blockstore *bs, uint64_t key)
{
	for (struct chunk *c = *bucket_of(bs, key); c; c = c->hnext)
		if (c->key == key) {
			lru_unlink(bs, c);
			lru_front(bs, c);
			return c;
		}
	return NULL;
}

static void cache_evict(struct lfs_blockstore *bs)
{
	while (bs->cache_bytes > bs->cache_max && bs->lru_tail) {
		struct chunk *c = bs->lru_tail;
		lru_unlink(bs, c);
		struct chunk **pp = bucket_of(bs, c->key);
		while (*pp != c)
			pp = &(*pp)->hnext;
		*pp = c->hnext;
		bs->cache_bytes -= c->len;
		free(c->data);
		free(c);
	}
}

/* Takes ownership of data. */
static void cache_insert(struct lfs_blockstore *bs, uint64_t key, uint8_t *data,
			 size_t len)
{
	if (cache_find(bs, key)) {
		free(data);
		return;
	}
	struct chunk *c = calloc(1, sizeof(*c));
	if (!c) {
		free(data);
		return;
	}
	c->key = key;
	c->data = data;
	c->len = len;
	struct chunk **b = bucket_of(bs, key);
	c->hnext = *b;
	*b = c;
	lru_front(bs, c);
	bs->cache_bytes += len;
	cache_evict(bs);
}

/* ---- CAR roots ---- */

static int encode_root(struct lfs_buf *out, const struct lfs_car_root *r)
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

/* ---- registering CARs (caller holds the lock) ---- */

static int car_slot(struct lfs_blockstore *bs, size_t *out,
		    const struct lfs_cid *cid)
{
	uint64_t idx;
	if (lfs_cidmap_get(&bs->car_index, cid, &idx)) {
		*out = (size_t)idx;
		return 0;
	}
	if (bs->ncars == bs->capcars) {
		size_t cap = bs->capcars ? bs->capcars * 2 : 16;
		void *p = realloc(bs->cars, cap * sizeof(*bs->cars));
		if (!p)
			return -ENOMEM;
		bs->cars = p;
		bs->capcars = cap;
	}
	memset(&bs->cars[bs->ncars], 0, sizeof(bs->cars[0]));
	bs->cars[bs->ncars].cid = *cid;
	if (lfs_cidmap_set(&bs->car_index, cid, bs->ncars))
		return -ENOMEM;
	*out = bs->ncars++;
	return 0;
}

static uint32_t *bslot(const struct lfs_blockstore *bs,
		       const struct lfs_cid *cid)
{
	if (!bs->nbslots)
		return NULL;
	size_t h;
	memcpy(&h, cid->digest + 8, sizeof(h));
	for (size_t i = h & (bs->nbslots - 1);;
	     i = (i + 1) & (bs->nbslots - 1)) {
		uint32_t v = bs->bslots[i];
		if (!v || lfs_cid_equal(&bs->locs[v - 1].cid, cid))
			return &bs->bslots[i];
	}
}

/* The location of a persisted block, or NULL. Caller holds the lock. */
static struct loc *loc_of(const struct lfs_blockstore *bs,
			  const struct lfs_cid *cid)
{
	uint32_t *s = bslot(bs, cid);
	return s && *s ? &bs->locs[*s - 1] : NULL;
}

static int idx_cmp(const void *key, const void *entry)
{
	const struct lfs_cid *c = key;
	const uint8_t *e = entry;
	int r = memcmp(c->digest, e, LFS_DIGEST_LEN);
	return r ? r : (int)c->codec - (int)e[LFS_DIGEST_LEN];
}

static int idx_sort(const void *a, const void *b)
{
	return memcmp(a, b, LFS_DIGEST_LEN + 1);
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

static uint64_t get64(const uint8_t *p)
{
	return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32;
}

static void put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void put64(uint8_t *p, uint64_t v)
{
	put32(p, (uint32_t)v);
	put32(p + 4, (uint32_t)(v >> 32));
}

/* ---- the segment ---- */

/*
 * DIR/segment: "LFSSEG1\n", then records, each
 *   u32 magic "LSR1" | u32 kind | u32 len | u32 nparents | u64 synced |
 *   car CID (36) | parents (36 each) | BLAKE2b-128 of all that |
 *   len bytes: the sealed CAR (kind 0), nothing (kind 1, a mark)
 * little endian. synced: the writer knew everything before that offset
 * to be on disk, so a reader re-hashes only the records after it.
 */
#define SEG_NAME       "segment"
#define SEG_FILE_MAGIC "LFSSEG1\n"
#define SEG_REC_MAGIC  0x3152534cu
#define SEG_FIXED      (24 + LFS_CID_BYTES)
#define SEG_SUM        16
#define SEG_COMMIT     0u
#define SEG_MARK       1u
#define SEG_SKIP       2u /* in a scan only: a damaged record */

struct seg_rec {
	struct lfs_cid car;
	uint64_t start, off, end, synced;
	uint32_t len, kind, np;
	struct lfs_cid *parents; /* into the scan's parents array */
};

static void seg_sum(uint8_t out[SEG_SUM], const uint8_t *p, size_t n)
{
	crypto_generichash(out, SEG_SUM, p, n, NULL, 0);
}

/* Read len bytes at off; 1 when the file ends first. */
static int pread_full(int fd, void *buf, size_t len, uint64_t off)
{
	size_t got = 0;
	while (got < len) {
		ssize_t r = pread(fd, (uint8_t *)buf + got, len - got,
				  (off_t)(off + got));
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (r == 0)
			return 1;
		got += (size_t)r;
	}
	return 0;
}

static int pwrite_full(int fd, const void *buf, size_t len, uint64_t off)
{
	size_t done = 0;
	while (done < len) {
		ssize_t r = pwrite(fd, (const uint8_t *)buf + done, len - done,
				   (off_t)(off + done));
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return r < 0 ? -errno : -EIO;
		done += (size_t)r;
	}
	return 0;
}

/* pwritev all of iov at off (iov is consumed). */
static int pwritev_full(int fd, struct iovec *iov, int n, uint64_t off)
{
	while (n > 0) {
		ssize_t r = pwritev(fd, iov, n, (off_t)off);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return r < 0 ? -errno : -EIO;
		off += (uint64_t)r;
		while (n > 0 && (size_t)r >= iov->iov_len) {
			r -= (ssize_t)iov->iov_len;
			iov++;
			n--;
		}
		if (n > 0) {
			iov->iov_base = (uint8_t *)iov->iov_base + r;
			iov->iov_len -= (size_t)r;
		}
	}
	return 0;
}

/* The segment's heads after a record: its parents go, its CAR comes.
 * Caller holds lock. */
static int seg_supersede(struct lfs_blockstore *bs, const struct lfs_cid *car,
			 const struct lfs_cid *parents, size_t np)
{
	size_t k = 0;
	for (size_t i = 0; i < bs->nseg_heads; i++) {
		bool gone = car && lfs_cid_equal(&bs->seg_heads[i], car);
		for (size_t j = 0; j < np && !gone; j++)
			gone = lfs_cid_equal(&bs->seg_heads[i], &parents[j]);
		if (!gone)
			bs->seg_heads[k++] = bs->seg_heads[i];
	}
	void *p = realloc(bs->seg_heads, (k + 1) * sizeof(*bs->seg_heads));
	if (!p)
		return -ENOMEM;
	bs->seg_heads = p;
	if (car)
		bs->seg_heads[k++] = *car;
	bs->nseg_heads = k;
	return 0;
}

/* Index one commit record. Caller holds lock. */
static int seg_add(struct lfs_blockstore *bs, const struct lfs_cid *car,
		   uint64_t off, uint32_t len)
{
	if (lfs_cidmap_get(&bs->seg_index, car, NULL))
		return 0; /* the same bytes twice: the first copy serves */
	if (bs->nseg == bs->capseg) {
		size_t cap = bs->capseg ? bs->capseg * 2 : 256;
		void *p = realloc(bs->seg, cap * sizeof(*bs->seg));
		if (!p)
			return -ENOMEM;
		bs->seg = p;
		bs->capseg = cap;
	}
	bs->seg[bs->nseg] =
		(struct seg_ent){.cid = *car, .off = off, .len = len};
	if (lfs_cidmap_set(&bs->seg_index, car, bs->nseg))
		return -ENOMEM;
	bs->nseg++;
	bs->seg_live++;
	return 0;
}

static char *seg_path(struct lfs_blockstore *bs)
{
	return path_join(bs->dir, SEG_NAME, "");
}

/*
 * Read and check the record header at pos (its parents into parents, room
 * for MAX_ROOT_LINKS): 0 when it checks out and the record fits in size,
 * 1 when not (incomplete, damaged, or no record there).
 */
static int seg_header(struct lfs_blockstore *bs, uint8_t *hdr, uint64_t pos,
		      uint64_t size, struct seg_rec *r, struct lfs_cid *parents)
{
	if (pos + SEG_FIXED + SEG_SUM > size ||
	    pread_full(bs->seg_fd, hdr, SEG_FIXED, pos))
		return 1;
	uint32_t kind = get32(hdr + 4), len = get32(hdr + 8),
		 np = get32(hdr + 12);
	if (get32(hdr) != SEG_REC_MAGIC || kind > SEG_MARK ||
	    np > MAX_ROOT_LINKS || len > LFS_CAR_MAX_FILE + (1 << 20))
		return 1;
	size_t hl = SEG_FIXED + (size_t)np * LFS_CID_BYTES + SEG_SUM;
	if (pos + hl + len > size ||
	    pread_full(bs->seg_fd, hdr + SEG_FIXED, hl - SEG_FIXED,
		       pos + SEG_FIXED))
		return 1;
	uint8_t sum[SEG_SUM];
	seg_sum(sum, hdr, hl - SEG_SUM);
	if (sodium_memcmp(sum, hdr + hl - SEG_SUM, SEG_SUM))
		return 1;
	*r = (struct seg_rec){.start = pos,
			      .off = pos + hl,
			      .end = pos + hl + len,
			      .synced = get64(hdr + 16),
			      .len = len,
			      .kind = kind,
			      .np = np};
	bool ok = kind == SEG_MARK ||
		  (lfs_cid_from_bytes(&r->car, hdr + 24, LFS_CID_BYTES) ==
			   LFS_CID_BYTES &&
		   r->car.codec == LFS_CODEC_RAW);
	for (uint32_t i = 0; ok && i < np; i++)
		ok = lfs_cid_from_bytes(&parents[i],
					hdr + SEG_FIXED +
						(size_t)i * LFS_CID_BYTES,
					LFS_CID_BYTES) == LFS_CID_BYTES;
	return ok ? 0 : 1;
}

/*
 * The offset of the first record at or after from that checks out, or
 * size when none does. Scans for the record magic; the header's checksum
 * tells a record from bytes that happen to match.
 */
static uint64_t seg_resync(struct lfs_blockstore *bs, uint8_t *hdr,
			   uint64_t from, uint64_t size)
{
	enum { WIN = 1 << 16 };
	uint8_t *w = malloc(WIN + 4);
	uint8_t magic[4];
	put32(magic, SEG_REC_MAGIC);
	struct lfs_cid *pv = malloc(MAX_ROOT_LINKS * sizeof(*pv));
	uint64_t found = size;
	for (uint64_t at = from; w && pv && at < size && found == size;
	     at += WIN) {
		size_t n = size - at < WIN + 4 ? (size_t)(size - at) : WIN + 4;
		if (pread_full(bs->seg_fd, w, n, at))
			break;
		for (size_t i = 0; i + 4 <= n && i < WIN; i++) {
			struct seg_rec r;
			if (!memcmp(w + i, magic, 4) &&
			    !seg_header(bs, hdr, at + i, size, &r, pv)) {
				found = at + i;
				break;
			}
		}
	}
	free(w);
	free(pv);
	return found;
}

/*
 * Read the records other writers (or an earlier run) appended since
 * seg_end. A record that does not check out is skipped when a good one
 * follows (damage in the middle); else it is the end (a record being
 * written, or torn by a crash), and with fix (the caller holds the
 * ledger's writer lock, so nobody is writing) that tail is cut off.
 * Caller holds seg_lock.
 */
static int seg_scan(struct lfs_blockstore *bs, bool fix)
{
	if (bs->seg_fd < 0) {
		char *p = seg_path(bs);
		if (!p)
			return -ENOMEM;
		int fd = open(p, O_RDWR | O_CLOEXEC);
		if (fd < 0 && errno == EACCES)
			fd = open(p, O_RDONLY | O_CLOEXEC);
		free(p);
		if (fd < 0)
			return errno == ENOENT ? 0 : -errno;
		bs->seg_fd = fd;
		bs->seg_end = 0;
	}
	struct stat st;
	if (fstat(bs->seg_fd, &st))
		return -errno;
	bs->seg_ino = (uint64_t)st.st_ino;
	uint64_t size = (uint64_t)st.st_size, pos = bs->seg_end;
	if (size == pos)
		return 0;
	int rc = 0;
	if (pos == 0) {
		uint8_t m[8];
		if (size < 8) {
			if (fix && ftruncate(bs->seg_fd, 0))
				return -errno;
			return 0;
		}
		if ((rc = pread_full(bs->seg_fd, m, 8, 0)))
			return rc < 0 ? rc : 0;
		if (memcmp(m, SEG_FILE_MAGIC, 8))
			return -EBADMSG;
		pos = bs->seg_end = 8;
	}
	struct seg_rec *recs = NULL;
	size_t nrecs = 0, cap = 0;
	struct lfs_cid *pv = NULL;
	size_t npv = 0, cappv = 0;
	uint8_t *hdr =
		malloc(SEG_FIXED + LFS_CID_BYTES * MAX_ROOT_LINKS + SEG_SUM);
	uint64_t synced = 0;
	if (!hdr)
		return -ENOMEM;
	/* Pass 1: the headers. A record that does not check out where
	 * more follows (damage in the middle) is skipped, not the end: the
	 * next record that checks out carries on, so damage loses what it
	 * hit and nothing after it, as a damaged CAR file would. */
	while (pos < size && !rc) {
		struct seg_rec r;
		if (npv + MAX_ROOT_LINKS > cappv) {
			cappv = npv * 2 + MAX_ROOT_LINKS;
			void *p = realloc(pv, cappv * sizeof(*pv));
			if (!p) {
				rc = -ENOMEM;
				break;
			}
			pv = p;
		}
		if (seg_header(bs, hdr, pos, size, &r, pv + npv)) {
			uint64_t next = seg_resync(bs, hdr, pos + 1, size);
			if (next >= size)
				break; /* nothing good follows: a torn tail */
			lfs_warn("%s/" SEG_NAME ": skipping %llu damaged bytes "
				 "at offset %llu",
				 bs->dir, (unsigned long long)(next - pos),
				 (unsigned long long)pos);
			pos = next;
			continue;
		}
		if (nrecs == cap) {
			cap = cap ? cap * 2 : 64;
			void *p = realloc(recs, cap * sizeof(*recs));
			if (!p) {
				rc = -ENOMEM;
				break;
			}
			recs = p;
		}
		r.parents = (struct lfs_cid *)(uintptr_t)npv; /* fixed below */
		npv += r.np;
		recs[nrecs++] = r;
		if (r.synced > synced && r.synced <= r.start)
			synced = r.synced;
		pos = r.end;
	}
	free(hdr);
	/* Pass 2: records after what a writer knew to be on disk must hash
	 * to their names (a power cut may leave garbage there). */
	uint8_t *buf = NULL;
	for (size_t i = 0; !rc && i < nrecs; i++) {
		recs[i].parents = pv + (uintptr_t)recs[i].parents;
		if (recs[i].kind != SEG_COMMIT || recs[i].end <= synced)
			continue;
		void *p = realloc(buf, recs[i].len ? recs[i].len : 1);
		if (!p) {
			rc = -ENOMEM;
			break;
		}
		buf = p;
		struct lfs_cid c;
		if (pread_full(bs->seg_fd, buf, recs[i].len, recs[i].off) ||
		    (lfs_cid_of(&c, LFS_CODEC_RAW, buf, recs[i].len),
		     !lfs_cid_equal(&c, &recs[i].car))) {
			if (i + 1 == nrecs) { /* the last: a torn tail */
				pos = recs[i].start;
				nrecs = i;
				break;
			}
			lfs_warn("%s/" SEG_NAME ": skipping the damaged "
				 "record at offset %llu",
				 bs->dir, (unsigned long long)recs[i].start);
			recs[i].kind = SEG_SKIP;
		}
	}
	free(buf);
	if (!rc) {
		pthread_mutex_lock(&bs->lock);
		for (size_t i = 0; !rc && i < nrecs; i++)
			if (recs[i].kind == SEG_SKIP)
				continue;
			else if (recs[i].kind == SEG_MARK)
				rc = seg_supersede(bs, NULL, recs[i].parents,
						   recs[i].np);
			else if (!(rc = seg_add(bs, &recs[i].car, recs[i].off,
						recs[i].len)))
				rc = seg_supersede(bs, &recs[i].car,
						   recs[i].parents, recs[i].np);
		pthread_mutex_unlock(&bs->lock);
	}
	if (!rc) {
		bs->seg_end = pos;
		if (fix && pos < size) {
			lfs_warn("%s/" SEG_NAME ": dropping %llu bytes after "
				 "offset %llu: an incomplete or damaged "
				 "record (a crash while it was written)",
				 bs->dir, (unsigned long long)(size - pos),
				 (unsigned long long)pos);
			if (ftruncate(bs->seg_fd, (off_t)pos))
				rc = -errno;
		}
	}
	free(recs);
	free(pv);
	return rc;
}

/* Where car lives in the segment (after a look at what was appended). */
static bool seg_find(struct lfs_blockstore *bs, const struct lfs_cid *car,
		     struct seg_ent *out, bool rescan)
{
	for (int pass = 0; pass < 2; pass++) {
		pthread_mutex_lock(&bs->lock);
		uint64_t i;
		bool found = lfs_cidmap_get(&bs->seg_index, car, &i) &&
			     !bs->seg[i].removed;
		if (found && out)
			*out = bs->seg[i];
		pthread_mutex_unlock(&bs->lock);
		if (found || !rescan || pass)
			return found;
		pthread_mutex_lock(&bs->seg_lock);
		seg_scan(bs, false);
		pthread_mutex_unlock(&bs->seg_lock);
	}
	return false;
}

/* Read len bytes at off of CAR car, wherever it is. */
static int pread_car(struct lfs_blockstore *bs, const struct lfs_cid *car,
		     void *buf, size_t len, uint64_t off)
{
	struct seg_ent e;
	if (seg_find(bs, car, &e, false)) {
		if (off + len > e.len)
			return -EBADMSG;
		int rc = pread_full(bs->seg_fd, buf, len, e.off + off);
		return rc > 0 ? -EBADMSG : rc;
	}
	char *path = car_path(bs, car);
	if (!path)
		return -ENOMEM;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	free(path);
	if (fd < 0)
		return -errno;
	int rc = pread_full(fd, buf, len, off);
	close(fd);
	return rc > 0 ? -EBADMSG : rc; /* the file shrank under us */
}

/* A CAR's sealed bytes, wherever it is. */
static int read_car_bytes(struct lfs_blockstore *bs, const struct lfs_cid *car,
			  uint8_t **out, size_t *out_len)
{
	struct seg_ent e;
	if (seg_find(bs, car, &e, true)) {
		uint8_t *b = malloc(e.len ? e.len : 1);
		if (!b)
			return -ENOMEM;
		int rc = pread_full(bs->seg_fd, b, e.len, e.off);
		if (rc) {
			free(b);
			return rc > 0 ? -EBADMSG : rc;
		}
		*out = b;
		*out_len = e.len;
		return 0;
	}
	char *path = car_path(bs, car);
	if (!path)
		return -ENOMEM;
	int rc = read_file(out, out_len, path, LFS_CAR_MAX_FILE + (1 << 20));
	free(path);
	return rc;
}

/*
 * Append a record. Caller holds seg_lock and the ledger's writer lock
 * (so the end of the file is ours).
 */
static int seg_append(struct lfs_blockstore *bs, uint32_t kind,
		      const struct lfs_cid *car, const uint8_t *sealed,
		      size_t len, const struct lfs_cid *parents, size_t np)
{
	int rc;
	if (bs->seg_fd < 0) {
		char *p = seg_path(bs);
		if (!p)
			return -ENOMEM;
		int fd = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
		free(p);
		if (fd < 0)
			return -errno;
		bs->seg_fd = fd;
		bs->seg_end = 0;
	}
	if ((rc = seg_scan(bs, true)))
		return rc;
	if (bs->seg_end == 0) {
		if ((rc = pwrite_full(bs->seg_fd, SEG_FILE_MAGIC, 8, 0)))
			return rc;
		bs->seg_end = 8;
		pthread_mutex_lock(&bs->sync_lock);
		bs->seg_dir_unsynced = true;
		pthread_mutex_unlock(&bs->sync_lock);
	}
	/* Supersede every record of the segment's heads, too: they are
	 * ancestors of this commit (the writer lock and a refresh came
	 * first). Capped: the clock drops ancestors anyway. */
	pthread_mutex_lock(&bs->lock);
	size_t cap = np + (kind == SEG_COMMIT ? bs->nseg_heads : 0);
	struct lfs_cid *all = malloc((cap + 1) * sizeof(*all));
	size_t n = 0;
	for (size_t i = 0; all && i < cap; i++) {
		const struct lfs_cid *c =
			i < np ? &parents[i] : &bs->seg_heads[i - np];
		bool dup = car && lfs_cid_equal(c, car);
		for (size_t k = 0; k < n && !dup; k++)
			dup = lfs_cid_equal(&all[k], c);
		if (!dup && n < MAX_ROOT_LINKS)
			all[n++] = *c;
	}
	pthread_mutex_unlock(&bs->lock);
	if (!all)
		return -ENOMEM;
	pthread_mutex_lock(&bs->sync_lock);
	uint64_t synced = bs->seg_synced;
	pthread_mutex_unlock(&bs->sync_lock);
	size_t hl = SEG_FIXED + n * LFS_CID_BYTES + SEG_SUM;
	uint8_t *rec = malloc(hl);
	if (!rec) {
		free(all);
		return -ENOMEM;
	}
	memset(rec, 0, SEG_FIXED);
	put32(rec, SEG_REC_MAGIC);
	put32(rec + 4, kind);
	put32(rec + 8, (uint32_t)len);
	put32(rec + 12, (uint32_t)n);
	put64(rec + 16, synced);
	if (car)
		lfs_cid_to_bytes(rec + 24, car);
	for (size_t i = 0; i < n; i++)
		lfs_cid_to_bytes(rec + SEG_FIXED + i * LFS_CID_BYTES, &all[i]);
	seg_sum(rec + hl - SEG_SUM, rec, hl - SEG_SUM);
	uint64_t at = bs->seg_end;
	/* The header and the CAR in one call, without copying the CAR. */
	struct iovec iov[2] = {{.iov_base = rec, .iov_len = hl},
			       {.iov_base = (void *)sealed, .iov_len = len}};
	rc = pwritev_full(bs->seg_fd, iov, len ? 2 : 1, at);
	free(rec);
	if (rc) {
		if (ftruncate(bs->seg_fd, (off_t)at))
			lfs_warn("%s/" SEG_NAME ": cannot cut off a failed "
				 "append: %s",
				 bs->dir, strerror(errno));
		free(all);
		return rc;
	}
	bs->seg_end = at + hl + len;
	bs->seg_appended = true;
	pthread_mutex_lock(&bs->lock);
	if (kind == SEG_MARK)
		rc = seg_supersede(bs, NULL, all, n);
	else if (!(rc = seg_add(bs, car, at + hl, (uint32_t)len)))
		rc = seg_supersede(bs, car, all, n);
	pthread_mutex_unlock(&bs->lock);
	free(all);
	return rc;
}

/* fdatasync the segment up to its current end, sharing one fdatasync
 * between the threads that ask at the same time (group commit). */
static int seg_sync(struct lfs_blockstore *bs)
{
	pthread_mutex_lock(&bs->seg_lock);
	uint64_t want = bs->seg_end;
	int fd = bs->seg_fd;
	pthread_mutex_unlock(&bs->seg_lock);
	int rc = 0;
	pthread_mutex_lock(&bs->sync_lock);
	while (!rc && bs->seg_synced < want && fd >= 0) {
		if (bs->syncing) {
			pthread_cond_wait(&bs->sync_cond, &bs->sync_lock);
			continue;
		}
		bs->syncing = true;
		bool dir = bs->seg_dir_unsynced;
		pthread_mutex_unlock(&bs->sync_lock);
		pthread_mutex_lock(&bs->seg_lock);
		uint64_t goal = bs->seg_end;
		pthread_mutex_unlock(&bs->seg_lock);
		rc = fdatasync(fd) ? -errno : 0;
		if (!rc && dir) {
			char *d = strdup(bs->dir);
			rc = d ? fsync_path(d) : -ENOMEM;
			free(d);
		}
		pthread_mutex_lock(&bs->sync_lock);
		bs->syncing = false;
		if (!rc) {
			if (dir)
				bs->seg_dir_unsynced = false;
			if (goal > bs->seg_synced)
				bs->seg_synced = goal;
		}
		pthread_cond_broadcast(&bs->sync_cond);
	}
	pthread_mutex_unlock(&bs->sync_lock);
	return rc;
}

/* Where a persisted block lives: the hash table, then large CARs' sorted
 * indexes. Caller holds the lock. */
static bool find_loc(const struct lfs_blockstore *bs, const struct lfs_cid *cid,
		     struct loc *out)
{
	struct loc *l = loc_of(bs, cid);
	if (l) {
		*out = *l;
		return true;
	}
	for (size_t i = 0; i < bs->nsidecars; i++) {
		const struct car_file *cf = &bs->cars[bs->sidecars[i]];
		const uint8_t *e =
			bsearch(cid, cf->idx, cf->nidx, IDX_ENTRY, idx_cmp);
		if (e) {
			*out = (struct loc){.cid = *cid,
					    .car = (uint32_t)bs->sidecars[i],
					    .len = get32(e + 36),
					    .off = get64(e + 40)};
			return true;
		}
	}
	return false;
}

/* A sorted block index of a CAR's plaintext (for large CARs). */
static int index_car(uint8_t **out, size_t *out_n, const uint8_t *plain,
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
		put32(e + 36, (uint32_t)dlen);
		put64(e + 40, (uint64_t)(data - plain));
	}
	lfs_car_reader_release(&r);
	if (rc) {
		free(v);
		return rc;
	}
	if (n)
		qsort(v, n, IDX_ENTRY, idx_sort);
	*out = v;
	*out_n = n;
	return 0;
}

static void idx_mac(uint8_t out[32], struct lfs_blockstore *bs,
		    const uint8_t *p, size_t len)
{
	static const char label[] = "ledgerfs sidecar v1";
	uint8_t sub[32];
	crypto_generichash(sub, sizeof(sub), (const uint8_t *)label,
			   sizeof(label) - 1, bs->key, LFS_KEY_BYTES);
	crypto_generichash(out, 32, p, len, sub, sizeof(sub));
	sodium_memzero(sub, sizeof(sub));
}

static int encode_root(struct lfs_buf *out, const struct lfs_car_root *r);
static int write_atomic(struct lfs_blockstore *bs, const char *sub,
			const char *name, const void *data, size_t len,
			bool durable);
static int decode_root(struct lfs_car_root *out, const uint8_t *p, size_t len);

/* Write car/<cid>.idx. Best effort: a missing sidecar only costs time. */
static void write_sidecar(struct lfs_blockstore *bs, const struct lfs_cid *car,
			  const struct lfs_car_root *root, const uint8_t *idx,
			  size_t n)
{
	struct lfs_buf rb, f;
	lfs_buf_init(&rb, 0);
	lfs_buf_init(&f, LFS_CAR_MAX_FILE);
	uint8_t hdr[16], mac[32];
	memcpy(hdr, IDX_MAGIC, 8);
	put32(hdr + 8, (uint32_t)n);
	if (!encode_root(&rb, root)) {
		put32(hdr + 12, (uint32_t)rb.len);
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
			write_atomic(bs, "car", name, f.data, f.len, false);
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
	char *cpath = car_path(bs, car);
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
	uint32_t n = get32(p + 8), rl = get32(p + 12);
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

static int bslots_grow(struct lfs_blockstore *bs)
{
	size_t n = bs->nbslots ? bs->nbslots * 2 : 1024;
	uint32_t *t = calloc(n, sizeof(*t));
	if (!t)
		return -ENOMEM;
	free(bs->bslots);
	bs->bslots = t;
	bs->nbslots = n;
	for (size_t i = 0; i < bs->nlocs; i++)
		*bslot(bs, &bs->locs[i].cid) = (uint32_t)i + 1;
	return 0;
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
	if (bs->nlocs >= UINT32_MAX - 1)
		return -EFBIG;
	/* At most half full: linear probing stays short. */
	if ((bs->nlocs + 1) * 2 > bs->nbslots && bslots_grow(bs))
		return -ENOMEM;
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
	*bslot(bs, cid) = (uint32_t)bs->nlocs + 1;
	bs->nlocs++;
	return 0;
}

static void frontier_add(struct lfs_blockstore *bs, const struct lfs_cid *car)
{
	uint64_t idx;
	if (lfs_cidmap_get(&bs->car_index, car, &idx) && bs->cars[idx].loaded)
		return;
	for (size_t i = 0; i < bs->nfrontier; i++)
		if (lfs_cid_equal(&bs->frontier[i], car))
			return;
	if (bs->nfrontier == bs->capfrontier) {
		size_t cap = bs->capfrontier ? bs->capfrontier * 2 : 16;
		void *p = realloc(bs->frontier, cap * sizeof(*bs->frontier));
		if (!p)
			return; /* only laziness is lost */
		bs->frontier = p;
		bs->capfrontier = cap;
	}
	bs->frontier[bs->nfrontier++] = *car;
}

/*
 * Index a CAR whose plaintext is known (just written, or just opened).
 * Takes ownership of root's arrays. Caller holds the lock.
 */
/* A large CAR's sorted block index: mapped from its sidecar or built. */
struct idx_src {
	const uint8_t *idx;
	size_t n;
	void *map;
	size_t maplen;
	uint8_t *owned;
};

static void idx_src_release(struct idx_src *x)
{
	if (x->map)
		munmap(x->map, x->maplen);
	free(x->owned);
	memset(x, 0, sizeof(*x));
}

/* Forget every location (a compaction CAR now holds every block). */
static void forget_locations(struct lfs_blockstore *bs, size_t keep)
{
	bs->nlocs = 0;
	if (bs->bslots)
		memset(bs->bslots, 0, bs->nbslots * sizeof(*bs->bslots));
	for (size_t i = 0; i < bs->ncars; i++) {
		struct car_file *cf = &bs->cars[i];
		if (i == keep)
			continue;
		cf->loaded = false;
		if (cf->idx_map)
			munmap(cf->idx_map, cf->idx_maplen);
		free(cf->idx_owned);
		cf->idx = NULL;
		cf->nidx = 0;
		cf->idx_map = NULL;
		cf->idx_owned = NULL;
	}
	bs->nsidecars = 0;
	bs->nfrontier = 0;
}

/*
 * Index a CAR whose plaintext is known (just written, or just opened), or
 * whose sorted index x is given (then plain may be NULL). Takes ownership
 * of root's arrays and of x. Caller holds the lock.
 */
static int register_car(struct lfs_blockstore *bs, const struct lfs_cid *cid,
			const struct lfs_envelope_info *info,
			struct lfs_car_root *root, const uint8_t *plain,
			size_t len, bool relocate, struct idx_src *x)
{
	size_t idx;
	int rc = car_slot(bs, &idx, cid);
	if (rc || bs->cars[idx].loaded) {
		free(root->cars);
		free(root->head);
		if (x)
			idx_src_release(x);
		return rc;
	}
	if (x && x->idx) {
		void *p = realloc(bs->sidecars,
				  (bs->nsidecars + 1) * sizeof(*bs->sidecars));
		if (!p) {
			rc = -ENOMEM;
			goto fail;
		}
		bs->sidecars = p;
		if (relocate)
			forget_locations(bs, idx);
		struct car_file *cf = &bs->cars[idx];
		cf->idx = x->idx;
		cf->nidx = x->n;
		cf->idx_map = x->map;
		cf->idx_maplen = x->maplen;
		cf->idx_owned = x->owned;
		memset(x, 0, sizeof(*x));
		bs->sidecars[bs->nsidecars++] = idx;
	} else {
		struct lfs_car_reader r;
		if ((rc = lfs_car_reader_init(&r, plain, len)))
			goto fail;
		r.trusted = true; /* open_car() or our own writer checked it */
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
	struct car_file *cf = &bs->cars[idx];
	cf->loaded = true;
	cf->info = *info;
	cf->root = *root;
	for (size_t i = 0; i < bs->nfrontier; i++)
		if (lfs_cid_equal(&bs->frontier[i], cid))
			bs->frontier[i--] = bs->frontier[--bs->nfrontier];
	for (size_t i = 0; i < root->ncars; i++)
		frontier_add(bs, &root->cars[i]);
	return 0;
fail:
	free(root->cars);
	free(root->head);
	if (x)
		idx_src_release(x);
	return rc;
}

/*
 * Open sealed bytes: optionally check the name, decrypt, check the CAR has
 * one root that is a valid root block inside it. Fills plain and root.
 */
static int open_car(struct lfs_blockstore *bs, struct lfs_buf *plain,
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
	uint64_t idx;
	int rc = 0;
	if (lfs_cidmap_get(&bs->car_index, car, &idx) && bs->cars[idx].loaded) {
		rc = out ? copy_root(out, a, &bs->cars[idx].root) : 0;
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
		x.idx = p + 16 + get32(p + 12);
		x.n = get32(p + 8);
		pthread_mutex_lock(&bs->lock);
		rc = register_car(bs, car, &info, &root, NULL, 0, false, &x);
		if (!rc && out) {
			lfs_cidmap_get(&bs->car_index, car, &idx);
			rc = copy_root(out, a, &bs->cars[idx].root);
		}
		pthread_mutex_unlock(&bs->lock);
		return rc;
	}

	uint8_t *sealed = NULL;
	size_t len = 0;
	struct lfs_buf plain;
	lfs_buf_init(&plain, LFS_CAR_MAX_FILE);
	rc = read_car_bytes(bs, car, &sealed, &len);
	if (!rc)
		rc = open_car(bs, &plain, &info, &root, car, sealed, len,
			      verify);
	bool big = !rc && plain.len >= IDX_MIN;
	if (big && (rc = index_car(&x.owned, &x.n, plain.data, plain.len))) {
		free(root.cars);
		free(root.head);
	}
	x.idx = x.owned;
	struct lfs_car_root copy = {0};
	if (big && !rc) {
		copy.ncars = root.ncars;
		copy.nhead = root.nhead;
		copy.cars = malloc((root.ncars + 1) * sizeof(*copy.cars));
		copy.head = malloc((root.nhead + 1) * sizeof(*copy.head));
		if (copy.cars && copy.head) {
			lfs_cid_copy_n(copy.cars, root.cars, root.ncars);
			lfs_cid_copy_n(copy.head, root.head, root.nhead);
		}
	}
	if (!rc) {
		pthread_mutex_lock(&bs->lock);
		rc = register_car(bs, car, &info, &root, plain.data, plain.len,
				  false, big ? &x : NULL);
		if (!rc && out) {
			lfs_cidmap_get(&bs->car_index, car, &idx);
			rc = copy_root(out, a, &bs->cars[idx].root);
		}
		const uint8_t *built = NULL;
		size_t nbuilt = 0;
		if (!rc && big) {
			lfs_cidmap_get(&bs->car_index, car, &idx);
			built = bs->cars[idx].idx;
			nbuilt = bs->cars[idx].nidx;
		}
		pthread_mutex_unlock(&bs->lock);
		/* The index is immutable once registered: write it out. */
		if (built && copy.cars && copy.head &&
		    !seg_find(bs, car, NULL, false))
			write_sidecar(bs, car, &copy, built, nbuilt);
	}
	free(copy.cars);
	free(copy.head);
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
	uint64_t idx;
	pthread_mutex_lock(&bs->lock);
	bool known = lfs_cidmap_get(&bs->car_index, expect, &idx) &&
		     bs->cars[idx].loaded;
	pthread_mutex_unlock(&bs->lock);
	if (known && lfs_blockstore_has_car(bs, expect)) {
		int rc = 0;
		pthread_mutex_lock(&bs->lock);
		if (out && lfs_cidmap_get(&bs->car_index, expect, &idx))
			rc = copy_root(out, a, &bs->cars[idx].root);
		pthread_mutex_unlock(&bs->lock);
		return rc;
	}
	struct lfs_buf plain;
	lfs_buf_init(&plain, LFS_CAR_MAX_FILE);
	struct lfs_envelope_info info;
	struct lfs_car_root root;
	int rc = open_car(bs, &plain, &info, &root, expect, sealed, len, true);
	if (rc)
		goto out;
	char name[LFS_CID_STRLEN + 1];
	lfs_cid_to_string(name, expect);
	pthread_mutex_lock(&bs->lock);
	bool durable = !bs->lazy_imports;
	pthread_mutex_unlock(&bs->lock);
	if (!seg_find(bs, expect, NULL, true) &&
	    (rc = write_atomic(bs, "car", name, sealed, len, durable))) {
		free(root.cars);
		free(root.head);
		goto out;
	}
	pthread_mutex_lock(&bs->lock);
	rc = register_car(bs, expect, &info, &root, plain.data, plain.len,
			  false, NULL);
	if (!rc && out) {
		lfs_cidmap_get(&bs->car_index, expect, &idx);
		rc = copy_root(out, a, &bs->cars[idx].root);
	}
	pthread_mutex_unlock(&bs->lock);
out:
	lfs_buf_release(&plain);
	return rc;
}

/* ---- reading blocks ---- */

static int read_chunk(struct lfs_blockstore *bs, struct lfs_buf *out,
		      uint32_t car, size_t index)
{
	uint64_t key = (uint64_t)car << 32 | index;
	pthread_mutex_lock(&bs->lock);
	struct chunk *c = cache_find(bs, key);
	int rc;
	if (c) {
		rc = lfs_buf_append(out, c->data, c->len);
		pthread_mutex_unlock(&bs->lock);
		return rc;
	}
	struct lfs_cid cid = bs->cars[car].cid;
	struct lfs_envelope_info info = bs->cars[car].info;
	pthread_mutex_unlock(&bs->lock);

	size_t off, len;
	/* Past the last chunk: the location came from a corrupt sidecar. */
	if ((rc = lfs_envelope_chunk_span(&off, &len, &info, index)))
		return rc == -EINVAL ? -EBADMSG : rc;
	uint8_t *sealed = malloc(len ? len : 1);
	struct lfs_buf plain;
	lfs_buf_init(&plain, info.chunk_size + 1);
	if (!sealed) {
		rc = -ENOMEM;
		goto out;
	}
	if ((rc = pread_car(bs, &cid, sealed, len, off)))
		goto out;
	if ((rc = lfs_envelope_open_chunk(&plain, bs->key, &info, index, sealed,
					  len)))
		goto out;
	if ((rc = lfs_buf_append(out, plain.data, plain.len)))
		goto out;
	size_t plen;
	uint8_t *pdata = lfs_buf_steal(&plain, &plen);
	pthread_mutex_lock(&bs->lock);
	cache_insert(bs, key, pdata, plen);
	pthread_mutex_unlock(&bs->lock);
out:
	lfs_buf_release(&plain);
	free(sealed);
	return rc;
}

/* Load one more CAR from the frontier; -ENOENT when there is none. */
static int load_more(struct lfs_blockstore *bs)
{
	for (;;) {
		pthread_mutex_lock(&bs->lock);
		if (bs->nfrontier == 0) {
			pthread_mutex_unlock(&bs->lock);
			return -ENOENT;
		}
		struct lfs_cid next = bs->frontier[0];
		bs->frontier[0] = bs->frontier[--bs->nfrontier];
		pthread_mutex_unlock(&bs->lock);
		int rc = lfs_blockstore_load(NULL, NULL, bs, &next, false);
		if (rc != -ENOENT)
			return rc;
		/* Not here (not downloaded yet): try the next one. */
	}
}

static int bs_get(void *self, struct lfs_buf *out, const struct lfs_cid *cid)
{
	struct lfs_blockstore *bs = self;
	for (;;) {
		pthread_mutex_lock(&bs->lock);
		const struct lfs_blockmap_item *it =
			lfs_blockmap_find(&bs->fresh, cid);
		if (it) {
			int rc = lfs_buf_append(out, it->data, it->len);
			pthread_mutex_unlock(&bs->lock);
			return rc;
		}
		struct loc l = {0};
		bool found = find_loc(bs, cid, &l);
		size_t clog = found ? bs->cars[l.car].info.chunk_log2 : 0;
		pthread_mutex_unlock(&bs->lock);
		if (!found) {
			int rc = load_more(bs);
			if (rc)
				return rc;
			continue;
		}
		/* Decrypt the chunks covering [off, off+len). */
		size_t first = (size_t)(l.off >> clog);
		size_t last =
			(size_t)((l.off + (l.len ? l.len - 1 : 0)) >> clog);
		struct lfs_buf span;
		lfs_buf_init(&span, 0);
		int rc = 0;
		for (size_t c = first; c <= last && !rc; c++)
			rc = read_chunk(bs, &span, l.car, c);
		size_t skip = (size_t)(l.off - ((uint64_t)first << clog));
		if (!rc && span.len < skip + l.len)
			rc = -EBADMSG;
		/* No re-hash: the chunks authenticated as this CAR's, whose
		 * blocks were checked when it was indexed. */
		if (!rc)
			rc = lfs_buf_append(out, span.data + skip, l.len);
		lfs_buf_release(&span);
		return rc;
	}
}

static int bs_put(void *self, const struct lfs_cid *cid, const uint8_t *data,
		  size_t len)
{
	struct lfs_blockstore *bs = self;
	pthread_mutex_lock(&bs->lock);
	int rc = 0;
	struct loc l;
	if (!find_loc(bs, cid, &l))
		rc = lfs_blockmap_put(&bs->fresh, cid, data, len);
	pthread_mutex_unlock(&bs->lock);
	return rc;
}

static const struct lfs_blocks_ops bs_ops = {.get = bs_get, .put = bs_put};

struct lfs_blocks lfs_blockstore_blocks(struct lfs_blockstore *bs)
{
	return (struct lfs_blocks){.ops = &bs_ops, .self = bs};
}

bool lfs_blockstore_persisted(struct lfs_blockstore *bs,
			      const struct lfs_cid *cid)
{
	pthread_mutex_lock(&bs->lock);
	struct loc l;
	bool r = find_loc(bs, cid, &l);
	pthread_mutex_unlock(&bs->lock);
	return r;
}

int lfs_blockstore_car_of(struct lfs_cid *out, struct lfs_blockstore *bs,
			  const struct lfs_cid *block)
{
	pthread_mutex_lock(&bs->lock);
	struct loc l;
	int rc = -ENOENT;
	if (find_loc(bs, block, &l)) {
		*out = bs->cars[l.car].cid;
		rc = 0;
	}
	pthread_mutex_unlock(&bs->lock);
	return rc;
}

/* ---- writing ---- */

/* Keep only the fresh blocks that are still not persisted. */
static int prune_fresh(struct lfs_blockstore *bs)
{
	struct lfs_blockmap keep;
	lfs_blockmap_init(&keep);
	for (size_t i = 0; i < bs->fresh.count; i++) {
		const struct lfs_blockmap_item *it = &bs->fresh.items[i];
		struct loc l;
		if (!find_loc(bs, &it->cid, &l) &&
		    lfs_blockmap_put(&keep, &it->cid, it->data, it->len)) {
			lfs_blockmap_release(&keep);
			return -ENOMEM;
		}
	}
	lfs_blockmap_release(&bs->fresh);
	bs->fresh = keep;
	return 0;
}

/*
 * Put the plaintext chunks of a CAR just written into the chunk cache: the
 * next commit reads the index nodes this one wrote, and should not read
 * them back from the file and decrypt them. Best effort (memory); small
 * CARs only, so a compaction does not flush the cache. Caller holds the
 * lock.
 */
static void cache_written(struct lfs_blockstore *bs, const struct lfs_cid *car,
			  const struct lfs_envelope_info *info,
			  const uint8_t *plain, size_t len)
{
	uint64_t idx;
	if (len > bs->cache_max / 4 ||
	    !lfs_cidmap_get(&bs->car_index, car, &idx))
		return;
	size_t csize = (size_t)1 << info->chunk_log2;
	for (size_t c = 0, off = 0; off < len; c++, off += csize) {
		size_t n = len - off < csize ? len - off : csize;
		uint8_t *d = malloc(n);
		if (!d)
			return;
		memcpy(d, plain + off, n);
		cache_insert(bs, idx << 32 | c, d, n);
	}
}

/*
 * Write a CAR: as car/<cid>, or (segment) as a record of the segment that
 * supersedes the records of seg_parents.
 */
static int write_car(struct lfs_cid *out, struct lfs_blockstore *bs,
		     const struct lfs_car_root *root,
		     const struct lfs_cid *blocks, size_t n, bool durable,
		     bool relocate, bool segment,
		     const struct lfs_cid *seg_parents, size_t nseg_parents)
{
	struct lfs_buf rb, plain, sealed, tmp;
	lfs_buf_init(&rb, 0);
	lfs_buf_init(&plain, LFS_CAR_MAX_FILE);
	lfs_buf_init(&sealed, LFS_CAR_MAX_FILE + (LFS_CAR_MAX_FILE >> 8));
	lfs_buf_init(&tmp, 0);
	struct lfs_cid rcid;
	struct lfs_car_root copy = {0};
	int rc = encode_root(&rb, root);
	if (rc)
		goto out;
	lfs_cid_of(&rcid, LFS_CODEC_DAG_CBOR, rb.data, rb.len);
	/* Most of a commit's blocks are fresh: room for them all at once,
	 * rather than copying a large CAR over and over as it grows. */
	pthread_mutex_lock(&bs->lock);
	size_t guess = bs->fresh.bytes + n * 48 + rb.len + 256;
	pthread_mutex_unlock(&bs->lock);
	if (guess < LFS_CAR_MAX_FILE)
		lfs_buf_reserve(&plain, guess);
	if ((rc = lfs_car_write_header(&plain, &rcid, 1)) ||
	    (rc = lfs_car_write_block(&plain, &rcid, rb.data, rb.len)))
		goto out;
	for (size_t i = 0; i < n; i++) {
		lfs_buf_reset(&tmp);
		if ((rc = bs_get(bs, &tmp, &blocks[i])) ||
		    (rc = lfs_car_write_block(&plain, &blocks[i], tmp.data,
					      tmp.len)))
			goto out;
	}
	if ((rc = lfs_envelope_seal(&sealed, out, bs->key, plain.data,
				    plain.len, LFS_CAR_CHUNK_LOG2)))
		goto out;
	char name[LFS_CID_STRLEN + 1];
	lfs_cid_to_string(name, out);
	if (segment) {
		pthread_mutex_lock(&bs->seg_lock);
		rc = seg_append(bs, SEG_COMMIT, out, sealed.data, sealed.len,
				seg_parents, nseg_parents);
		pthread_mutex_unlock(&bs->seg_lock);
		if (!rc && durable)
			rc = seg_sync(bs);
	} else {
		rc = write_atomic(bs, "car", name, sealed.data, sealed.len,
				  durable);
	}
	if (rc)
		goto out;
	struct lfs_envelope_info info;
	if ((rc = lfs_envelope_parse(&info, sealed.data, sealed.len)))
		goto out;
	copy.ncars = root->ncars;
	copy.nhead = root->nhead;
	copy.cars = calloc(root->ncars + 1, sizeof(*copy.cars));
	copy.head = calloc(root->nhead + 1, sizeof(*copy.head));
	if (!copy.cars || !copy.head) {
		free(copy.cars);
		free(copy.head);
		rc = -ENOMEM;
		goto out;
	}
	lfs_cid_copy_n(copy.cars, root->cars, root->ncars);
	lfs_cid_copy_n(copy.head, root->head, root->nhead);
	struct idx_src x = {0};
	bool big = plain.len >= IDX_MIN;
	if (big && (rc = index_car(&x.owned, &x.n, plain.data, plain.len))) {
		free(copy.cars);
		free(copy.head);
		goto out;
	}
	x.idx = x.owned;
	const uint8_t *built = x.idx;
	size_t nbuilt = x.n;
	pthread_mutex_lock(&bs->lock);
	rc = register_car(bs, out, &info, &copy, plain.data, plain.len,
			  relocate, big ? &x : NULL);
	if (!rc)
		rc = prune_fresh(bs);
	if (!rc && !big)
		cache_written(bs, out, &info, plain.data, plain.len);
	pthread_mutex_unlock(&bs->lock);
	if (!rc && big && !segment)
		write_sidecar(bs, out, root, built, nbuilt);
out:
	lfs_buf_release(&rb);
	lfs_buf_release(&plain);
	lfs_buf_release(&sealed);
	lfs_buf_release(&tmp);
	return rc;
}

int lfs_blockstore_write_car(struct lfs_cid *out, struct lfs_blockstore *bs,
			     const struct lfs_car_root *root,
			     const struct lfs_cid *blocks, size_t n,
			     bool durable)
{
	return write_car(out, bs, root, blocks, n, durable, false, false, NULL,
			 0);
}

int lfs_blockstore_append_car(struct lfs_cid *out, struct lfs_blockstore *bs,
			      const struct lfs_car_root *root,
			      const struct lfs_cid *blocks, size_t n,
			      const struct lfs_cid *parents, size_t nparents,
			      bool durable)
{
	return write_car(out, bs, root, blocks, n, durable, false, true,
			 parents, nparents);
}

int lfs_blockstore_checkpoint(struct lfs_blockstore *bs)
{
	pthread_mutex_lock(&bs->seg_lock);
	bool appended = bs->seg_appended;
	pthread_mutex_unlock(&bs->seg_lock);
	if (!appended)
		return 0;
	int rc = seg_sync(bs);
	if (rc)
		return rc;
	pthread_mutex_lock(&bs->seg_lock);
	rc = seg_append(bs, SEG_MARK, NULL, NULL, 0, NULL, 0);
	bs->seg_appended = false;
	pthread_mutex_unlock(&bs->seg_lock);
	return rc;
}

int lfs_blockstore_write_compact(struct lfs_cid *out, struct lfs_blockstore *bs,
				 const struct lfs_car_root *root,
				 const struct lfs_cid *blocks, size_t n)
{
	return write_car(out, bs, root, blocks, n, true, true, false, NULL, 0);
}

int lfs_blockstore_verify_car(struct lfs_blockstore *bs,
			      const struct lfs_cid *car)
{
	uint8_t *sealed = NULL;
	size_t len = 0;
	struct lfs_buf plain;
	lfs_buf_init(&plain, LFS_CAR_MAX_FILE);
	struct lfs_envelope_info info;
	struct lfs_car_root root;
	int rc = lfs_blockstore_read_car(&sealed, &len, bs, car);
	if (!rc)
		rc = open_car(bs, &plain, &info, &root, car, sealed, len, true);
	if (!rc) {
		free(root.cars);
		free(root.head);
	}
	lfs_buf_release(&plain);
	free(sealed);
	return rc;
}

bool lfs_blockstore_has_car(struct lfs_blockstore *bs,
			    const struct lfs_cid *car)
{
	if (seg_find(bs, car, NULL, true))
		return true;
	char *path = car_path(bs, car);
	bool r = path && access(path, F_OK) == 0;
	free(path);
	return r;
}

int lfs_blockstore_read_car(uint8_t **out, size_t *out_len,
			    struct lfs_blockstore *bs,
			    const struct lfs_cid *car)
{
	return read_car_bytes(bs, car, out, out_len);
}

static int list_dir(struct lfs_cid **out, size_t *out_n,
		    struct lfs_blockstore *bs, const char *sub, uint8_t codec)
{
	char *path = path_join(bs->dir, sub, "");
	if (!path)
		return -ENOMEM;
	DIR *d = opendir(path);
	free(path);
	if (!d)
		return -errno;
	struct lfs_cid *v = NULL;
	size_t n = 0, cap = 0;
	int rc = 0;
	struct dirent *de;
	while ((de = readdir(d))) {
		struct lfs_cid c;
		if (lfs_cid_from_string(&c, de->d_name) || c.codec != codec)
			continue; /* temporary files and strangers */
		if (n == cap) {
			cap = cap ? cap * 2 : 16;
			void *p = realloc(v, cap * sizeof(*v));
			if (!p) {
				rc = -ENOMEM;
				break;
			}
			v = p;
		}
		v[n++] = c;
	}
	closedir(d);
	if (rc) {
		free(v);
		return rc;
	}
	*out = v;
	*out_n = n;
	return 0;
}

/*
 * Append to the malloc'd *v (n entries) what the segment adds: its live
 * CARs (heads false) or its head records (heads true), skipping those
 * already in *v.
 */
static int add_segment(struct lfs_cid **v, size_t *n, struct lfs_blockstore *bs,
		       bool heads)
{
	pthread_mutex_lock(&bs->seg_lock);
	int rc = seg_scan(bs, false);
	pthread_mutex_unlock(&bs->seg_lock);
	if (rc)
		return rc;
	struct lfs_cidmap seen;
	lfs_cidmap_init(&seen);
	for (size_t i = 0; !rc && i < *n; i++)
		rc = lfs_cidmap_set(&seen, &(*v)[i], 1);
	pthread_mutex_lock(&bs->lock);
	size_t more = heads ? bs->nseg_heads : bs->nseg;
	void *p = rc ? NULL : realloc(*v, (*n + more + 1) * sizeof(**v));
	if (!rc && !p)
		rc = -ENOMEM;
	if (p)
		*v = p;
	for (size_t i = 0; !rc && i < more; i++) {
		const struct lfs_cid *c =
			heads ? &bs->seg_heads[i] : &bs->seg[i].cid;
		if ((!heads && bs->seg[i].removed) ||
		    lfs_cidmap_get(&seen, c, NULL))
			continue;
		(*v)[(*n)++] = *c;
	}
	pthread_mutex_unlock(&bs->lock);
	lfs_cidmap_release(&seen);
	return rc;
}

int lfs_blockstore_list_cars(struct lfs_cid **out, size_t *out_n,
			     struct lfs_blockstore *bs)
{
	int rc = list_dir(out, out_n, bs, "car", LFS_CODEC_RAW);
	if (!rc && (rc = add_segment(out, out_n, bs, false)))
		free(*out);
	return rc;
}

int lfs_blockstore_remove_car(struct lfs_blockstore *bs,
			      const struct lfs_cid *car)
{
	/* A CAR in the segment is dropped from the tables; the segment
	 * goes when nothing in it is left (compaction removes them all). */
	pthread_mutex_lock(&bs->seg_lock);
	pthread_mutex_lock(&bs->lock);
	uint64_t i;
	int rc = 0;
	if (lfs_cidmap_get(&bs->seg_index, car, &i) && !bs->seg[i].removed) {
		bs->seg[i].removed = true;
		if (--bs->seg_live == 0) {
			char *p = seg_path(bs);
			rc = !p                             ? -ENOMEM
			     : unlink(p) && errno != ENOENT ? -errno
							    : 0;
			free(p);
			void *q = realloc(bs->old_fds,
					  (bs->nold_fds + 1) * sizeof(int));
			if (!rc && q) {
				bs->old_fds = q;
				bs->old_fds[bs->nold_fds++] = bs->seg_fd;
				bs->seg_fd = -1;
				bs->seg_end = 0;
				bs->nseg = 0;
				bs->nseg_heads = 0;
				lfs_cidmap_release(&bs->seg_index);
				lfs_cidmap_init(&bs->seg_index);
			}
		}
	}
	pthread_mutex_unlock(&bs->lock);
	pthread_mutex_unlock(&bs->seg_lock);
	if (rc)
		return rc;
	char *path = car_path(bs, car);
	if (!path)
		return -ENOMEM;
	rc = unlink(path) && errno != ENOENT ? -errno : 0;
	free(path);
	return rc;
}

int lfs_blockstore_heads(struct lfs_cid **out, size_t *out_n,
			 struct lfs_blockstore *bs)
{
	int rc = list_dir(out, out_n, bs, "head", LFS_CODEC_RAW);
	if (!rc && (rc = add_segment(out, out_n, bs, true)))
		free(*out);
	return rc;
}

/*
 * A head record removed: when some of cars are the segment's, append a
 * mark superseding them (the caller holds the ledger's writer lock).
 */
static int seg_drop_heads(struct lfs_blockstore *bs, const struct lfs_cid *cars,
			  size_t n, const struct lfs_cid *keep)
{
	struct lfs_cid *v = malloc((n + 1) * sizeof(*v));
	if (!v)
		return -ENOMEM;
	size_t k = 0;
	pthread_mutex_lock(&bs->lock);
	for (size_t i = 0; i < n; i++) {
		bool is = !keep || !lfs_cid_equal(&cars[i], keep);
		bool found = false;
		for (size_t j = 0; is && !found && j < bs->nseg_heads; j++)
			found = lfs_cid_equal(&bs->seg_heads[j], &cars[i]);
		if (found)
			v[k++] = cars[i];
	}
	pthread_mutex_unlock(&bs->lock);
	int rc = 0;
	if (k) {
		pthread_mutex_lock(&bs->seg_lock);
		rc = seg_append(bs, SEG_MARK, NULL, NULL, 0, v, k);
		pthread_mutex_unlock(&bs->seg_lock);
	}
	free(v);
	return rc;
}

int lfs_blockstore_set_head(struct lfs_blockstore *bs,
			    const struct lfs_cid *car,
			    const struct lfs_cid *parents, size_t nparents,
			    bool durable)
{
	char name[LFS_CID_STRLEN + 1];
	lfs_cid_to_string(name, car);
	json_t *ps = json_array();
	for (size_t i = 0; ps && i < nparents; i++) {
		char p[LFS_CID_STRLEN + 1];
		lfs_cid_to_string(p, &parents[i]);
		json_array_append_new(ps, json_pack("{s:s}", "/", p));
	}
	json_t *rec =
		ps ? json_pack("{s:{s:s},s:o}", "car", "/", name, "parents", ps)
		   : NULL;
	char *text =
		rec ? json_dumps(rec, JSON_SORT_KEYS | JSON_COMPACT) : NULL;
	json_decref(rec);
	if (!text)
		return -ENOMEM;
	int rc = write_atomic(bs, "head", name, text, strlen(text), durable);
	free(text);
	/* Removing superseded records need not be durable: a record that
	 * comes back after a crash names an ancestor and is dropped again. */
	for (size_t i = 0; !rc && i < nparents; i++)
		if (!lfs_cid_equal(&parents[i], car))
			rc = lfs_blockstore_drop_head(bs, &parents[i]);
	return rc;
}

int lfs_blockstore_drop_head(struct lfs_blockstore *bs,
			     const struct lfs_cid *car)
{
	char name[LFS_CID_STRLEN + 1];
	lfs_cid_to_string(name, car);
	char *path = path_join(bs->dir, "head", name);
	if (!path)
		return -ENOMEM;
	int rc = unlink(path) && errno != ENOENT ? -errno : 0;
	free(path);
	return rc ? rc : seg_drop_heads(bs, car, 1, NULL);
}

void lfs_blockstore_set_lazy_imports(struct lfs_blockstore *bs, bool lazy)
{
	pthread_mutex_lock(&bs->lock);
	bs->lazy_imports = lazy;
	pthread_mutex_unlock(&bs->lock);
}

int lfs_blockstore_sync(struct lfs_blockstore *bs)
{
	int rc = seg_sync(bs);
	if (rc)
		return rc;
	pthread_mutex_lock(&bs->lock);
	bool dirty = bs->dirty;
	bs->dirty = false;
	pthread_mutex_unlock(&bs->lock);
	if (!dirty)
		return 0;
	/* One syncfs() makes every file and directory entry written since
	 * durable at once, instead of an fsync per file and per rename. */
	int fd = open(bs->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	rc = syncfs(fd) ? -errno : 0;
	close(fd);
	if (rc) {
		pthread_mutex_lock(&bs->lock);
		bs->dirty = true;
		pthread_mutex_unlock(&bs->lock);
	}
	return rc;
}

size_t lfs_blockstore_fresh_mark(struct lfs_blockstore *bs)
{
	pthread_mutex_lock(&bs->lock);
	size_t n = bs->fresh.count;
	pthread_mutex_unlock(&bs->lock);
	return n;
}

void lfs_blockstore_fresh_rewind(struct lfs_blockstore *bs, size_t mark)
{
	pthread_mutex_lock(&bs->lock);
	lfs_blockmap_truncate(&bs->fresh, mark);
	pthread_mutex_unlock(&bs->lock);
}

int lfs_blockstore_heads_stamp(struct lfs_blockstore *bs, int64_t *out)
{
	char *dir = path_join(bs->dir, "head", ""), *seg = seg_path(bs);
	struct stat st, ss;
	int rc = !dir || !seg ? -ENOMEM : stat(dir, &st) ? -errno : 0;
	if (!rc && stat(seg, &ss)) {
		if (errno != ENOENT)
			rc = -errno;
		memset(&ss, 0, sizeof(ss));
	}
	free(dir);
	free(seg);
	if (rc)
		return rc;
	/* The head directory's time, and the segment's identity and size
	 * (every commit appended there grows it), mixed. */
	uint64_t h = (uint64_t)st.st_mtim.tv_sec * 1000000000u +
		     (uint64_t)st.st_mtim.tv_nsec;
	uint64_t v[2] = {(uint64_t)ss.st_ino, (uint64_t)ss.st_size};
	for (int i = 0; i < 2; i++) {
		h ^= v[i] + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
		h = (h ^ (h >> 31)) * 0xbf58476d1ce4e5b9ull;
	}
	*out = (int64_t)h;
	return 0;
}
