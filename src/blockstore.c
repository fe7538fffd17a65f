#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "blockstore_int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>
#include <sodium.h>

#include "car.h"
#include "cbor.h"
#include "fileio.h"
#include "log.h"

/* ---- small helpers ---- */

char *lfs_bs_path_join(const char *dir, const char *sub, const char *name)
{
	size_t n = strlen(dir) + strlen(sub) + strlen(name) + 3;
	char *p = malloc(n);
	if (p)
		snprintf(p, n, "%s/%s%s%s", dir, sub, *name ? "/" : "", name);
	return p;
}

char *lfs_bs_car_path(struct lfs_blockstore *bs, const struct lfs_cid *cid)
{
	char s[LFS_CID_STRLEN + 1];
	lfs_cid_to_string(s, cid);
	return lfs_bs_path_join(bs->dir, "car", s);
}

int lfs_bs_fsync_path(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	int rc = fsync(fd) ? -errno : 0;
	close(fd);
	return rc;
}

int lfs_bs_write_atomic(struct lfs_blockstore *bs, const char *sub,
			const char *name, const void *data, size_t len,
			bool durable)
{
	char *path = lfs_bs_path_join(bs->dir, sub, name);
	int rc = path ? lfs_write_atomic(path, data, len, 0600, durable)
		      : -ENOMEM;
	free(path);
	if (!rc && !durable) {
		pthread_mutex_lock(&bs->lock);
		bs->dirty = true;
		pthread_mutex_unlock(&bs->lock);
	}
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
	pthread_mutex_init(&bs->wbuf_lock, NULL);
	pthread_mutex_init(&bs->runs_lock, NULL);
	lfs_buf_init(&bs->wplain, LFS_CAR_MAX_FILE);
	lfs_buf_init(&bs->wsealed, LFS_CAR_MAX_FILE + (LFS_CAR_MAX_FILE >> 8));
	bs->seg_fd = -1;
	bs->unwalked = SIZE_MAX; /* the whole segment, as far as it goes */
	lfs_cidtab_init(&bs->car_index, sizeof(struct car_file),
			offsetof(struct car_file, cid));
	lfs_cidtab_init(&bs->loc_index, sizeof(struct loc),
			offsetof(struct loc, cid));
	lfs_blockmap_init(&bs->fresh);
	bs->cache_max =
		cache_bytes ? cache_bytes : LFS_BLOCKSTORE_DEFAULT_CACHE;
	bs->nbuckets = 1024;
	while (bs->nbuckets < (bs->cache_max >> LFS_CAR_CHUNK_LOG2) * 2)
		bs->nbuckets *= 2;
	if (!(bs->buckets = calloc(bs->nbuckets, sizeof(*bs->buckets))))
		goto fail;
	char *car = lfs_bs_path_join(dir, "car", ""),
	     *head = lfs_bs_path_join(dir, "head", "");
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
	lfs_membudget_leave(&bs->budget);
	lfs_bs_runs_release(bs);
	for (size_t i = 0; i < bs->ncars; i++) {
		free(bs->cars[i].links);
		lfs_bs_drop_side(&bs->cars[i]);
	}
	free(bs->sidecars);
	free(bs->cars);
	free(bs->locs);
	lfs_cidtab_release(&bs->car_index);
	lfs_cidtab_release(&bs->loc_index);
	lfs_blockmap_release(&bs->fresh);
	free(bs->frontier);
	free(bs->absent);
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
	free(bs->intents);
	sodium_memzero(bs->key, sizeof(bs->key));
	pthread_mutex_destroy(&bs->seg_lock);
	pthread_mutex_destroy(&bs->sync_lock);
	pthread_mutex_destroy(&bs->wbuf_lock);
	pthread_mutex_destroy(&bs->runs_lock);
	lfs_buf_release(&bs->wplain);
	lfs_buf_release(&bs->wsealed);
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

/* Drop the least recently used chunk; the bytes it held. */
static size_t cache_drop_tail(struct lfs_blockstore *bs)
{
	struct chunk *c = bs->lru_tail;
	lru_unlink(bs, c);
	struct chunk **pp = bucket_of(bs, c->key);
	while (*pp != c)
		pp = &(*pp)->hnext;
	*pp = c->hnext;
	size_t bytes = c->len + sizeof(*c);
	bs->cache_bytes -= bytes;
	lfs_membudget_charge(&bs->budget, -(ptrdiff_t)bytes);
	free(c->data);
	free(c);
	return bytes;
}

static void cache_evict(struct lfs_blockstore *bs)
{
	while (bs->cache_bytes > bs->cache_max && bs->lru_tail)
		cache_drop_tail(bs);
}

/* The shared budget's call (lfs_membudget_member.shrink). */
static size_t cache_shrink(struct lfs_membudget_member *m, size_t bytes)
{
	struct lfs_blockstore *bs =
		(struct lfs_blockstore *)((char *)m -
					  offsetof(struct lfs_blockstore,
						   budget));
	size_t freed = 0;
	pthread_mutex_lock(&bs->lock);
	while (freed < bytes && bs->lru_tail)
		freed += cache_drop_tail(bs);
	pthread_mutex_unlock(&bs->lock);
	return freed;
}

void lfs_bs_cache_enforce(struct lfs_blockstore *bs)
{
	lfs_membudget_enforce(&bs->budget);
}

void lfs_blockstore_share(struct lfs_blockstore *bs,
			  struct lfs_membudget *budget)
{
	/* A chunk holds many blocks and a miss costs a read and a
	 * decryption: kept over texts, which are rendered from it. */
	bs->budget.worth = 2;
	lfs_membudget_join(budget, &bs->budget, cache_shrink);
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
	bs->cache_bytes += len + sizeof(*c);
	lfs_membudget_charge(&bs->budget, (ptrdiff_t)(len + sizeof(*c)));
	cache_evict(bs);
}

/* ---- reading blocks ---- */

/* Append bytes [from, from + n) of a chunk's len bytes of plaintext to
 * out; -EBADMSG when the chunk is shorter (a location past its end). */
static int append_part(struct lfs_buf *out, const uint8_t *data, size_t len,
		       size_t from, size_t n)
{
	if (len < from || len - from < n)
		return -EBADMSG;
	return lfs_buf_append(out, data + from, n);
}

/*
 * Append bytes [from, from + n) of chunk `index` of CAR car's plaintext to
 * out, decrypting the chunk (and caching it) unless the cache has it. Only
 * those bytes are copied: a block is a few hundred bytes of a chunk of up
 * to 64 KiB, and copying the whole chunk for each block read was most of
 * what reading a document of an imported ledger cost. -EBADMSG when the
 * chunk is shorter than from + n (a location past the CAR's end).
 */
static int read_chunk(struct lfs_blockstore *bs, struct lfs_buf *out,
		      uint32_t car, size_t index, size_t from, size_t n)
{
	uint64_t key = (uint64_t)car << 32 | index;
	pthread_mutex_lock(&bs->lock);
	struct chunk *c = cache_find(bs, key);
	int rc;
	if (c) {
		rc = append_part(out, c->data, c->len, from, n);
		pthread_mutex_unlock(&bs->lock);
		lfs_membudget_touch(&bs->budget);
		return rc;
	}
	struct lfs_cid cid = bs->cars[car].cid;
	struct lfs_envelope_info info;
	rc = lfs_bs_car_info(&bs->cars[car], &info);
	pthread_mutex_unlock(&bs->lock);
	if (rc)
		return rc;

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
	if ((rc = lfs_bs_pread_car(bs, &cid, sealed, len, off)))
		goto out;
	if ((rc = lfs_envelope_open_chunk(&plain, bs->key, &info, index, sealed,
					  len)))
		goto out;
	if ((rc = append_part(out, plain.data, plain.len, from, n)))
		goto out;
	size_t plen;
	uint8_t *pdata = lfs_buf_steal(&plain, &plen);
	/* The buffer may be larger than the chunk (a small CAR's only chunk
	 * is a fraction of C), and the cache counts what it keeps. */
	uint8_t *exact = realloc(pdata, plen ? plen : 1);
	if (exact)
		pdata = exact;
	pthread_mutex_lock(&bs->lock);
	cache_insert(bs, key, pdata, plen);
	pthread_mutex_unlock(&bs->lock);
	lfs_bs_cache_enforce(bs);
out:
	lfs_buf_release(&plain);
	free(sealed);
	return rc;
}

/*
 * The next CAR to load on a miss (caller holds the lock): the frontier
 * (CARs that loaded ones name), then every record of the segment not
 * loaded yet: those other writers appended since the walk began, then the
 * rest newest first. The walk back through the roots does not reach them
 * all: a record a run covers is never loaded (and a block it holds may be
 * listed under another file, which only its root names), and a damaged
 * record cuts the chain of roots to every record before it.
 */
static bool next_to_load(struct lfs_blockstore *bs, struct lfs_cid *out)
{
	if (bs->nfrontier) {
		*out = bs->frontier[0];
		bs->frontier[0] = bs->frontier[--bs->nfrontier];
		return true;
	}
	if (bs->unwalked > bs->nseg) /* the walk begins */
		bs->unwalked = bs->walk_end = bs->nseg;
	while (bs->walk_end < bs->nseg || bs->unwalked > 0) {
		const struct seg_ent *e = bs->walk_end < bs->nseg
						  ? &bs->seg[bs->walk_end++]
						  : &bs->seg[--bs->unwalked];
		if (e->removed || bs->cars[e->car].loaded)
			continue;
		*out = bs->cars[e->car].cid;
		return true;
	}
	return false;
}

/* car is a record of the segment (with rescan, after a look at what was
 * appended since) or a file here. */
static bool car_here(struct lfs_blockstore *bs, const struct lfs_cid *car,
		     bool rescan)
{
	if (lfs_bs_seg_find(bs, car, NULL, rescan))
		return true;
	char *path = lfs_bs_car_path(bs, car);
	bool r = path && access(path, F_OK) == 0;
	free(path);
	return r;
}

/*
 * Before a miss is final, look again at what other processes may have
 * added: records appended to the segment, and absent CARs that are here
 * now (put back on the frontier). Whether there is anything to load.
 */
static bool look_again(struct lfs_blockstore *bs)
{
	lfs_bs_seg_rescan(bs);
	pthread_mutex_lock(&bs->lock);
	bool appended = bs->walk_end < bs->nseg;
	size_t n = bs->nabsent;
	struct lfs_cid *v = n ? malloc(n * sizeof(*v)) : NULL;
	if (v)
		lfs_cid_copy_n(v, bs->absent, n);
	pthread_mutex_unlock(&bs->lock);
	bool any = appended;
	/* The segment was just looked at: once is enough. */
	for (size_t i = 0; v && i < n; i++) {
		if (!car_here(bs, &v[i], false))
			continue;
		pthread_mutex_lock(&bs->lock);
		if (lfs_bs_cids_drop(bs->absent, &bs->nabsent, &v[i])) {
			lfs_bs_cids_add(&bs->frontier, &bs->nfrontier,
					&bs->capfrontier, &v[i]);
			any = true;
		}
		pthread_mutex_unlock(&bs->lock);
	}
	free(v);
	return any;
}

/*
 * Load one more CAR (next_to_load); -ENOENT when there is none. A CAR that
 * is not here (not downloaded yet) is remembered as absent, and looked for
 * again before a miss is final (look_again): another process on this home
 * may fetch it or append to the segment at any time, and a block it holds
 * must be found then.
 */
static int load_more(struct lfs_blockstore *bs)
{
	bool looked = false; /* once a call: a file may come and go */
	for (;;) {
		struct lfs_cid next;
		pthread_mutex_lock(&bs->lock);
		bool any = next_to_load(bs, &next);
		pthread_mutex_unlock(&bs->lock);
		if (!any) {
			if (looked || !look_again(bs))
				return -ENOENT;
			looked = true;
			continue;
		}
		int rc = lfs_blockstore_load(NULL, NULL, bs, &next, false);
		if (rc != -ENOENT)
			return rc;
		pthread_mutex_lock(&bs->lock);
		lfs_bs_cids_add(&bs->absent, &bs->nabsent, &bs->capabsent,
				&next);
		pthread_mutex_unlock(&bs->lock);
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
		bool found = lfs_bs_find_loc(bs, cid, &l);
		struct lfs_envelope_info info = {0};
		if (found && lfs_bs_car_info(&bs->cars[l.car], &info))
			found = false; /* never: it parsed when stored */
		size_t clog = info.chunk_log2;
		pthread_mutex_unlock(&bs->lock);
		if (!found) {
			int rc = load_more(bs);
			if (rc)
				return rc;
			continue;
		}
		/* The part of each chunk covering [off, off+len), straight
		 * into out; all or nothing. No re-hash: the chunks
		 * authenticated as this CAR's, whose blocks were checked when
		 * it was indexed. */
		size_t first = (size_t)(l.off >> clog);
		size_t last =
			(size_t)((l.off + (l.len ? l.len - 1 : 0)) >> clog);
		size_t start = out->len;
		int rc = 0;
		for (size_t c = first; c <= last && !rc; c++) {
			uint64_t base = (uint64_t)c << clog;
			uint64_t from = l.off > base ? l.off - base : 0;
			uint64_t to = l.off + l.len - base;
			if (to > (uint64_t)1 << clog)
				to = (uint64_t)1 << clog;
			rc = read_chunk(bs, out, l.car, c, (size_t)from,
					(size_t)(to - from));
		}
		if (rc)
			out->len = start;
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
	if (!lfs_bs_find_loc(bs, cid, &l))
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
	bool r = lfs_bs_find_loc(bs, cid, &l);
	pthread_mutex_unlock(&bs->lock);
	return r;
}

bool lfs_blockstore_in_memory(struct lfs_blockstore *bs,
			      const struct lfs_cid *cid)
{
	pthread_mutex_lock(&bs->lock);
	bool r = lfs_blockmap_find(&bs->fresh, cid) != NULL;
	pthread_mutex_unlock(&bs->lock);
	return r;
}

int lfs_blockstore_car_of(struct lfs_cid *out, struct lfs_blockstore *bs,
			  const struct lfs_cid *block)
{
	pthread_mutex_lock(&bs->lock);
	struct loc l;
	int rc = -ENOENT;
	if (lfs_bs_find_loc(bs, block, &l)) {
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
		if (!lfs_bs_find_loc(bs, &it->cid, &l) &&
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
 * Put the plaintext chunks of a CAR just imported into the chunk cache: a
 * catch-up reads its events next. Best effort (memory); small CARs only,
 * so a large one does not flush the cache. (A CAR this store writes is
 * not: the index keeps the nodes a commit wrote, decoded, and a copy per
 * commit cost a malloc and a page fault or two.) Caller holds the lock.
 */
void lfs_bs_cache_written(struct lfs_blockstore *bs, const struct lfs_cid *car,
			  const struct lfs_envelope_info *info,
			  const uint8_t *plain, size_t len)
{
	size_t idx;
	if (len > bs->cache_max / 4 ||
	    !lfs_cidtab_find(&bs->car_index, bs->cars, car, &idx))
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
	struct lfs_buf rb, tmp;
	lfs_buf_init(&rb, 0);
	lfs_buf_init(&tmp, 0);
	/* The store's buffers for the CAR and its sealed bytes, kept from
	 * one commit to the next. */
	pthread_mutex_lock(&bs->wbuf_lock);
	struct lfs_buf *plain = &bs->wplain, *sealed = &bs->wsealed;
	lfs_buf_reset(plain);
	lfs_buf_reset(sealed);
	struct lfs_cid rcid;
	struct loc *known = NULL;
	int rc = lfs_bs_encode_root(&rb, root);
	if (rc)
		goto out;
	lfs_cid_of(&rcid, LFS_CODEC_DAG_CBOR, rb.data, rb.len);
	/* Most of a commit's blocks are fresh: room for them all at once,
	 * rather than copying a large CAR over and over as it grows. */
	pthread_mutex_lock(&bs->lock);
	size_t guess = bs->fresh.bytes + n * 48 + rb.len + 256;
	pthread_mutex_unlock(&bs->lock);
	if (guess < LFS_CAR_MAX_FILE)
		lfs_buf_reserve(plain, guess);
	/* Where each block lands, so registering the CAR need not parse
	 * what was just written. */
	if (!(known = malloc((n + 1) * sizeof(*known)))) {
		rc = -ENOMEM;
		goto out;
	}
	if ((rc = lfs_car_write_header(plain, &rcid, 1)) ||
	    (rc = lfs_car_write_block(plain, &rcid, rb.data, rb.len)))
		goto out;
	known[0] = (struct loc){.cid = rcid,
				.len = (uint32_t)rb.len,
				.off = plain->len - rb.len};
	size_t from_fresh = 0; /* blocks copied from memory */
	for (size_t i = 0; i < n; i++) {
		size_t len = 0;
		pthread_mutex_lock(&bs->lock);
		const struct lfs_blockmap_item *it =
			lfs_blockmap_find(&bs->fresh, &blocks[i]);
		if (it) {
			len = it->len;
			rc = lfs_car_write_block(plain, &blocks[i], it->data,
						 len);
			from_fresh++;
		}
		pthread_mutex_unlock(&bs->lock);
		if (!it) {
			lfs_buf_reset(&tmp);
			if (!(rc = bs_get(bs, &tmp, &blocks[i])))
				rc = lfs_car_write_block(plain, &blocks[i],
							 tmp.data, tmp.len);
			len = tmp.len;
		}
		if (rc)
			goto out;
		known[i + 1] = (struct loc){.cid = blocks[i],
					    .len = (uint32_t)len,
					    .off = plain->len - len};
	}
	if ((rc = lfs_envelope_seal(sealed, out, bs->key, plain->data,
				    plain->len, LFS_CAR_CHUNK_LOG2)))
		goto out;
	char name[LFS_CID_STRLEN + 1];
	lfs_cid_to_string(name, out);
	if (segment) {
		pthread_mutex_lock(&bs->seg_lock);
		rc = lfs_bs_seg_append(bs, SEG_COMMIT, out, sealed->data,
				       sealed->len, seg_parents, nseg_parents);
		pthread_mutex_unlock(&bs->seg_lock);
		if (!rc && durable)
			rc = lfs_bs_seg_sync(bs);
	} else {
		rc = lfs_bs_write_atomic(bs, "car", name, sealed->data,
					 sealed->len, durable);
	}
	if (rc)
		goto out;
	struct lfs_envelope_info info;
	if ((rc = lfs_envelope_parse(&info, sealed->data, sealed->len)))
		goto out;
	struct idx_src x = {0};
	bool big = plain->len >= IDX_MIN;
	if (big &&
	    (rc = lfs_bs_index_car(&x.owned, &x.n, plain->data, plain->len)))
		goto out;
	x.idx = x.owned;
	const uint8_t *built = x.idx;
	size_t nbuilt = x.n;
	pthread_mutex_lock(&bs->lock);
	rc = lfs_bs_register_car(bs, out, &info, root, plain->data, plain->len,
				 relocate, big ? &x : NULL, big ? NULL : known,
				 n + 1);
	/* Every block in memory went into this CAR (the usual commit):
	 * forget them all, keeping the table's storage. */
	if (!rc && from_fresh == bs->fresh.count)
		lfs_blockmap_truncate(&bs->fresh, 0);
	else if (!rc)
		rc = prune_fresh(bs);
	pthread_mutex_unlock(&bs->lock);
	if (!rc && big && !segment)
		lfs_bs_write_sidecar(bs, out, root, built, nbuilt);
out:
	/* Not a compaction's worth of memory, though. */
	if (plain->cap > WBUF_KEEP)
		lfs_buf_release(plain);
	if (sealed->cap > WBUF_KEEP)
		lfs_buf_release(sealed);
	pthread_mutex_unlock(&bs->wbuf_lock);
	free(known);
	lfs_buf_release(&rb);
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
	int rc = write_car(out, bs, root, blocks, n, durable, false, true,
			   parents, nparents);
	/* Every RUN_RECORDS commits (or RUN_LOCATIONS blocks), their
	 * blocks leave the hash table for a run on disk. A failure to write
	 * one costs memory, not data. */
	if (!rc)
		lfs_bs_runs_write(bs, lfs_bs_runs_due(bs));
	return rc;
}

bool lfs_blockstore_appended(struct lfs_blockstore *bs)
{
	pthread_mutex_lock(&bs->seg_lock);
	bool appended = bs->seg_appended;
	pthread_mutex_unlock(&bs->seg_lock);
	return appended;
}

int lfs_blockstore_checkpoint(struct lfs_blockstore *bs)
{
	pthread_mutex_lock(&bs->seg_lock);
	bool appended = bs->seg_appended, resume = bs->seg_resume_wanted;
	pthread_mutex_unlock(&bs->seg_lock);
	if (!appended && !resume)
		return 0;
	int rc = lfs_bs_seg_sync(bs);
	if (rc)
		return rc;
	pthread_mutex_lock(&bs->seg_lock);
	/* The next process scans on from here instead of from the start
	 * (a cache: failing to write it costs that scan). */
	int saved = lfs_bs_seg_save_resume(bs);
	if (!saved)
		bs->seg_resume_wanted = false;
	else if (saved != -EACCES && saved != -EROFS && saved != -EPERM)
		lfs_warn("%s: could not write the segment's resume point: %s",
			 bs->dir, strerror(-saved));
	if (appended)
		rc = lfs_bs_seg_append(bs, SEG_MARK, NULL, NULL, 0, NULL, 0);
	bs->seg_appended = false;
	pthread_mutex_unlock(&bs->seg_lock);
	/* The next open reads a run instead of decrypting these records. */
	if (!rc && appended)
		lfs_bs_runs_write(bs, RUN_CLOSE_RECORDS);
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
		rc = lfs_bs_open_car(bs, &plain, &info, &root, car, sealed, len,
				     true);
	if (!rc) {
		free(root.cars);
		free(root.head);
	}
	lfs_buf_release(&plain);
	free(sealed);
	return rc;
}

void lfs_blockstore_stats(struct lfs_blockstore *bs,
			  struct lfs_blockstore_stats *out)
{
	pthread_mutex_lock(&bs->lock);
	*out = (struct lfs_blockstore_stats){.cars = bs->ncars,
					     .locations = bs->nlocs,
					     .records = bs->nseg,
					     .indexed = bs->runs_end,
					     .runs = bs->nruns,
					     .resumed = bs->seg_resumed};
	for (size_t i = 0; i < bs->ncars; i++)
		out->loaded += bs->cars[i].loaded;
	pthread_mutex_unlock(&bs->lock);
}

bool lfs_blockstore_has_car(struct lfs_blockstore *bs,
			    const struct lfs_cid *car)
{
	return car_here(bs, car, true);
}

bool lfs_blockstore_in_segment(struct lfs_blockstore *bs,
			       const struct lfs_cid *car)
{
	return lfs_bs_seg_find(bs, car, NULL, true);
}

int lfs_blockstore_read_car(uint8_t **out, size_t *out_len,
			    struct lfs_blockstore *bs,
			    const struct lfs_cid *car)
{
	return lfs_bs_read_car_bytes(bs, car, out, out_len);
}

static int list_dir(struct lfs_cid **out, size_t *out_n,
		    struct lfs_blockstore *bs, const char *sub, uint8_t codec)
{
	char *path = lfs_bs_path_join(bs->dir, sub, "");
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

const char *lfs_blockstore_dir(const struct lfs_blockstore *bs)
{
	return bs->dir;
}

int lfs_blockstore_list_cars(struct lfs_cid **out, size_t *out_n,
			     struct lfs_blockstore *bs)
{
	int rc = list_dir(out, out_n, bs, "car", LFS_CODEC_RAW);
	if (!rc && (rc = lfs_bs_add_segment(out, out_n, bs, false)))
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
	size_t i;
	int rc = 0;
	bool seg_gone = false;
	if (lfs_bs_seg_of(bs, car, &i)) {
		bs->seg[i].removed = true;
		/* Never while intents follow: they are saves not folded. */
		if (--bs->seg_live == 0 && !bs->nintents) {
			char *p = lfs_bs_seg_path(bs);
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
				lfs_bs_seg_forget_locked(bs);
				bs->unwalked = SIZE_MAX;
				seg_gone = true;
			}
		}
	}
	pthread_mutex_unlock(&bs->lock);
	pthread_mutex_unlock(&bs->seg_lock);
	/* Its runs index records that are gone. */
	if (seg_gone)
		lfs_bs_runs_remove(bs);
	if (rc)
		return rc;
	char *path = lfs_bs_car_path(bs, car);
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
	if (!rc && (rc = lfs_bs_add_segment(out, out_n, bs, true)))
		free(*out);
	/* The segment is scanned: its runs can be checked against it
	 * before the caller loads a head CAR. */
	if (!rc)
		lfs_bs_runs_open(bs);
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
	int rc = lfs_bs_write_atomic(bs, "head", name, text, strlen(text),
				     durable);
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
	char *path = lfs_bs_path_join(bs->dir, "head", name);
	if (!path)
		return -ENOMEM;
	int rc = unlink(path) && errno != ENOENT ? -errno : 0;
	free(path);
	return rc ? rc : lfs_bs_seg_drop_heads(bs, car, 1, NULL);
}

void lfs_blockstore_set_lazy_imports(struct lfs_blockstore *bs, bool lazy)
{
	pthread_mutex_lock(&bs->lock);
	bs->lazy_imports = lazy;
	pthread_mutex_unlock(&bs->lock);
}

int lfs_blockstore_sync(struct lfs_blockstore *bs)
{
	int rc = lfs_bs_seg_sync(bs);
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
	char *dir = lfs_bs_path_join(bs->dir, "head", ""),
	     *seg = lfs_bs_seg_path(bs);
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
