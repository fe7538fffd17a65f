/*
 * blockstore_int: what the blockstore's modules share. Internal: only
 * src/blockstore*.c include it; blockstore.h is the contract.
 *
 * Modules, each using only those above it in this list:
 *
 *   blockstore_int.h      this: struct lfs_blockstore and its tables, the
 *                         little-endian helpers, the file helpers
 *   blockstore_segment    the append-only segment, DIR/segment: scanning
 *                         (skipping damage, cutting a torn tail), appending
 *                         records, group-commit fdatasync, and reading a
 *                         CAR's bytes wherever it is (segment or car/)
 *   blockstore_import     bringing a CAR in: opening and checking sealed
 *                         bytes, its root block, the block location table
 *                         and large CARs' sorted indexes (sidecars),
 *                         lfs_blockstore_load() and _import()
 *   blockstore.c          open and close, the chunk cache, reading blocks
 *                         (struct lfs_blocks), writing CARs, listing,
 *                         removing, head records, sync
 *
 * Locks (blockstore.h): wbuf_lock, write_car's buffers, comes first;
 * bs->lock guards the tables and the cache;
 * seg_lock serialises scanning, appending and truncating the segment (taken
 * before lock); sync_lock the group commit. "Caller holds the lock" below
 * means bs->lock.
 */
#ifndef LFS_BLOCKSTORE_INT_H
#define LFS_BLOCKSTORE_INT_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "blockmap.h"
#include "blockstore.h"
#include "buf.h"
#include "cidtab.h"

#define MAX_ROOT_LINKS 1024 /* CIDs in a root block, parents of a record */

struct car_file {
	struct lfs_cid cid;
	bool loaded;
	struct lfs_envelope_info info;
	struct lfs_car_root root; /* head points into cars' allocation */
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
	struct lfs_cidtab car_index; /* car cid -> index into cars */

	struct loc *locs;
	size_t nlocs, caplocs;
	struct lfs_cidtab loc_index; /* block cid -> index into locs */

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
	struct lfs_cidtab seg_index; /* CAR cid -> index into seg */
	struct lfs_cid *seg_heads;   /* records nothing later supersedes */
	size_t nseg_heads;
	size_t seg_live;       /* entries not removed */
	bool seg_dir_unsynced; /* made here, directory not fsynced yet */
	bool seg_appended;     /* this process appended since open */
	bool seg_known; /* nobody else appended since we looked (the ledger
			   says so, holding its lock): appends need not */
	/* Group commit: one fdatasync covers every record before it. */
	pthread_mutex_t sync_lock;
	pthread_cond_t sync_cond;
	bool syncing;
	uint64_t seg_synced; /* offset known to be on disk */
	int *old_fds;        /* of removed segments, closed at free (readers) */
	size_t nold_fds;
	/* write_car's buffers (a CAR's plaintext, its sealed bytes), kept
	 * between commits when at most WBUF_KEEP: a malloc and page faults
	 * each, per commit, otherwise. wbuf_lock guards them, taken before
	 * the other locks. */
	pthread_mutex_t wbuf_lock;
	struct lfs_buf wplain, wsealed;
};

#define WBUF_KEEP ((size_t)1 << 20)

/* What a segment record holds (blockstore_segment.c). */
#define SEG_COMMIT 0u /* a commit: a sealed CAR */
#define SEG_MARK   1u /* a mark: records it supersedes, no CAR */

/* A large CAR's sorted block index: mapped from its sidecar or built. */
struct idx_src {
	const uint8_t *idx;
	size_t n;
	void *map;
	size_t maplen;
	uint8_t *owned;
};

/* blockstore.c: files */

/* "dir/sub/name" (without "/name" when name is ""), malloc'd. */
char *lfs_bs_path_join(const char *dir, const char *sub, const char *name);
/* DIR/car/<cid>, malloc'd. */
char *lfs_bs_car_path(struct lfs_blockstore *bs, const struct lfs_cid *cid);
int lfs_bs_fsync_path(const char *path);
/* Write DIR/sub/name atomically (lfs_write_atomic); without durable the
 * store is marked dirty for the next lfs_blockstore_sync(). */
int lfs_bs_write_atomic(struct lfs_blockstore *bs, const char *sub,
			const char *name, const void *data, size_t len,
			bool durable);

/* blockstore_segment.c (caller holds none of the locks unless said) */

char *lfs_bs_seg_path(struct lfs_blockstore *bs);
/* Where car lives in the segment; with rescan, after a look at what was
 * appended since. */
bool lfs_bs_seg_find(struct lfs_blockstore *bs, const struct lfs_cid *car,
		     struct seg_ent *out, bool rescan);
/* Read len bytes at off of CAR car, wherever it is. */
int lfs_bs_pread_car(struct lfs_blockstore *bs, const struct lfs_cid *car,
		     void *buf, size_t len, uint64_t off);
/* A CAR's sealed bytes, wherever it is. */
int lfs_bs_read_car_bytes(struct lfs_blockstore *bs, const struct lfs_cid *car,
			  uint8_t **out, size_t *out_len);
/* Append a record (caller holds seg_lock and the ledger's writer lock). */
int lfs_bs_seg_append(struct lfs_blockstore *bs, uint32_t kind,
		      const struct lfs_cid *car, const uint8_t *sealed,
		      size_t len, const struct lfs_cid *parents, size_t np);
/* fdatasync the segment up to its end (group commit). */
int lfs_bs_seg_sync(struct lfs_blockstore *bs);
/* Append to *v (n entries) the segment's live CARs or its heads. */
int lfs_bs_add_segment(struct lfs_cid **v, size_t *n, struct lfs_blockstore *bs,
		       bool heads);
/* Supersede those of cars (but keep) that are the segment's heads. */
int lfs_bs_seg_drop_heads(struct lfs_blockstore *bs, const struct lfs_cid *cars,
			  size_t n, const struct lfs_cid *keep);

/* blockstore.c: the chunk cache */

/* Keep a registered CAR's plaintext chunks in the cache (unless it is more
 * than a quarter of it). Caller holds the lock. */
void lfs_bs_cache_written(struct lfs_blockstore *bs, const struct lfs_cid *car,
			  const struct lfs_envelope_info *info,
			  const uint8_t *plain, size_t len);

/* blockstore_import.c */

int lfs_bs_encode_root(struct lfs_buf *out, const struct lfs_car_root *r);
/* Where a persisted block lives. Caller holds the lock. */
bool lfs_bs_find_loc(const struct lfs_blockstore *bs, const struct lfs_cid *cid,
		     struct loc *out);
/* A sorted block index of a CAR's plaintext (for large CARs). */
int lfs_bs_index_car(uint8_t **out, size_t *out_n, const uint8_t *plain,
		     size_t len);
void lfs_bs_write_sidecar(struct lfs_blockstore *bs, const struct lfs_cid *car,
			  const struct lfs_car_root *root, const uint8_t *idx,
			  size_t n);
int lfs_bs_register_car(struct lfs_blockstore *bs, const struct lfs_cid *cid,
			const struct lfs_envelope_info *info,
			const struct lfs_car_root *root, const uint8_t *plain,
			size_t len, bool relocate, struct idx_src *x,
			const struct loc *known, size_t nknown);
int lfs_bs_open_car(struct lfs_blockstore *bs, struct lfs_buf *plain,
		    struct lfs_envelope_info *info, struct lfs_car_root *root,
		    const struct lfs_cid *cid, const uint8_t *sealed,
		    size_t len, bool verify);

#endif
