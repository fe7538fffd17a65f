/*
 * blockstore_int: what the blockstore's modules share. Internal: only
 * src/blockstore*.c include it; blockstore.h is the contract.
 *
 * Modules, each using only those above it in this list:
 *
 *   blockstore_int.h      this: struct lfs_blockstore and its tables, the
 *                         little-endian helpers, the file helpers
 *   blockstore_resume     the segment's resume point, DIR/runs/resume:
 *                         writing and reading the file that says where a
 *                         scan of the segment may start
 *   blockstore_segment    the append-only segment, DIR/segment: scanning
 *                         (skipping damage, cutting a torn tail), appending
 *                         records, group-commit fdatasync, and reading a
 *                         CAR's bytes wherever it is (segment or car/)
 *   blockstore_import     bringing a CAR in: opening and checking sealed
 *                         bytes, its root block, the block location table
 *                         and large CARs' sorted indexes (sidecars),
 *                         finding a block through all of them and the
 *                         segment's runs, lfs_blockstore_load() and _import()
 *   blockstore_runs       the segment's block index on disk, DIR/runs:
 *                         writing a run over the records appended since
 *                         the last, merging runs, mapping them at open
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

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "blockmap.h"
#include "blockstore.h"
#include "buf.h"
#include "cidtab.h"
#include "envelope.h"
#include "membudget.h"

#define MAX_ROOT_LINKS 1024 /* CIDs in a root block, parents of a record */

/*
 * One per CAR the store knows, for its life (one per commit): kept small.
 * The envelope's header and sealed length stand for its parsed form
 * (lfs_bs_car_info).
 */
struct car_file {
	struct lfs_cid cid;
	bool loaded;
	/* A segment record whose blocks a run finds (their locations are
	 * not in the hash table); loaded tells whether its root is known. */
	bool indexed;
	uint8_t env_header[LFS_ENVELOPE_HEADER_BYTES];
	/* Its record's ordinal in bs->seg, plus one; 0: not in the
	 * segment. (In the padding before sealed_len: the segment's
	 * records name their CAR by index, not by a copy of its CID.) */
	uint32_t seg1;
	uint64_t sealed_len;
	/* Its root's lists, parents' CARs then head, in one allocation
	 * (16 bytes here where a struct lfs_car_root takes 32). */
	struct lfs_cid *links;
	uint32_t ncars, nhead;
	/* Large CARs keep their block index in a sorted array (IDX_ENTRY
	 * bytes an entry) instead of the hash table: mapped from the local
	 * sidecar file car/<cid>.idx, or built in memory. NULL otherwise. */
	struct idx_src *side;
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

/*
 * A run: a sorted block index over the segment's records [first, first +
 * nrec) (ordinals: their order in bs->seg), in DIR/runs/<name>, so that a
 * record's blocks cost page cache instead of a hash table entry and
 * opening a ledger reads its runs instead of decrypting every CAR. Format
 * in blockstore_runs.c. Entries, RUN_ENTRY bytes each, sorted by digest
 * then codec: digest[32] codec pad[3] u32 record ordinal, u32 length,
 * u32 offset in the CAR's plaintext (little endian).
 */
#define RUN_ENTRY 48

/*
 * A run's Bloom filter, so that looking for a block a run does not hold
 * (every new block, before it is put) touches one 64-byte block of it
 * instead of a binary search of its entries: about 10 bits an entry, 8 of
 * them set per block, within the 512-bit block the digest picks. Digests
 * are SHA-256: their bytes serve as the hashes.
 */
#define RUN_BLOOM_BLOCK 64

static inline size_t lfs_bs_bloom_blocks(size_t nent)
{
	size_t n = (nent * 10 + 511) / 512;
	return n ? n : 1;
}

static inline uint8_t *lfs_bs_bloom_block(const uint8_t *bloom, size_t nblocks,
					  const uint8_t *digest)
{
	uint64_t h = 0;
	for (int i = 0; i < 8; i++)
		h = h << 8 | digest[i];
	return (uint8_t *)bloom + (h % nblocks) * RUN_BLOOM_BLOCK;
}

static inline unsigned lfs_bs_bloom_bit(const uint8_t *digest, int i)
{
	return ((unsigned)digest[8 + 2 * i] << 8 | digest[9 + 2 * i]) & 511;
}

static inline bool lfs_bs_bloom_has(const uint8_t *bloom, size_t nblocks,
				    const uint8_t *digest)
{
	const uint8_t *b = lfs_bs_bloom_block(bloom, nblocks, digest);
	for (int i = 0; i < 8; i++) {
		unsigned bit = lfs_bs_bloom_bit(digest, i);
		if (!(b[bit >> 3] & (1u << (bit & 7))))
			return false;
	}
	return true;
}

/* The part of an entry it is sorted by: digest, then codec. */
#define RUN_KEY (LFS_DIGEST_LEN + 1)

/*
 * The order of a sorted block index, a run's or a sidecar's (their
 * entries begin alike): for qsort, and for bsearch with a key of RUN_KEY
 * bytes.
 */
static inline int lfs_bs_key_cmp(const void *a, const void *b)
{
	return memcmp(a, b, RUN_KEY);
}
/* Entries a lookup reads at once: the run's fences say which group. */
#define RUN_GROUP 64

/*
 * The entries are read with pread, never mapped: the pages a lookup
 * touches stay page cache, which the kernel can take back, instead of
 * counting in the daemon's resident memory. What the process keeps is the
 * Bloom filter (10 bits an entry) and a fence per RUN_GROUP entries (the
 * group's first key: 0.5 bytes an entry), so that a lookup past the
 * filter reads one group.
 */
struct seg_run {
	uint32_t first, nrec;
	size_t nent;
	int fd;
	uint64_t ent_off; /* where the entries begin in the file */
	uint8_t *fence;   /* RUN_KEY bytes per group */
	uint8_t *bloom;
	size_t nbloom;  /* blocks of RUN_BLOOM_BLOCK bytes */
	uint32_t *cars; /* each record's index into bs->cars */
	char *name;     /* the file's, under DIR/runs */
};

/*
 * Look cid up in r: true with the entry's record ordinal, length and
 * offset (as stored; the caller checks them). False when absent, or when
 * the file cannot be read (the caller falls back to loading records).
 */
bool lfs_bs_run_find(const struct seg_run *r, const struct lfs_cid *cid,
		     uint32_t *ord, uint32_t *len, uint32_t *off);
/* Release what r holds (not its cars' indexed marks). */
void lfs_bs_run_free(struct seg_run *r);

/* A segment record: 24 bytes, one per commit for the store's life. */
struct seg_ent {
	uint32_t car; /* its CAR's index in bs->cars */
	uint32_t len;
	uint64_t off; /* of the sealed bytes */
	bool removed;
	uint16_t np; /* parents in its header (where the record starts) */
};

/*
 * blockstore_resume.c: the segment as a scan left it at offset at, so that
 * the next process's scan starts there (blockstore_segment.c checks each
 * record it names). Every record before at was on disk (fdatasynced).
 */
#define SEG_RESUME_DIGEST 16
struct seg_resume {
	uint64_t at, folded_to;
	uint64_t *recs; /* the commit records' offsets, in order */
	size_t nrec;
	struct lfs_cid *heads; /* the segment's heads at at */
	size_t nheads;
	uint64_t *intents; /* the offsets of the intents no fold covers */
	size_t nintents;
	/* BLAKE2b-128 of the records' CAR CIDs (binary), in order: ties the
	 * file to the segment it was written for. */
	uint8_t digest[SEG_RESUME_DIGEST];
};
/* Replace DIR/runs/resume with r (caller holds seg_lock). */
int lfs_bs_resume_write(struct lfs_blockstore *bs, const struct seg_resume *r);
/* Read DIR/runs/resume: 0, -ENOENT, -EBADMSG (damaged, another key's). */
int lfs_bs_resume_read(struct lfs_blockstore *bs, struct seg_resume *r);
void lfs_bs_resume_free(struct seg_resume *r);
/* Remove DIR/runs/resume (the segment is gone). */
void lfs_bs_resume_remove(struct lfs_blockstore *bs);

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
	/* Frontier CARs that were not here when a miss looked for them:
	 * looked for again when a miss finds nothing else (another process
	 * may have fetched one since). */
	struct lfs_cid *absent;
	size_t nabsent, capabsent;

	struct chunk **buckets;
	size_t nbuckets;
	struct chunk *lru_head, *lru_tail; /* head: most recent */
	size_t cache_bytes, cache_max;
	/* The chunk cache's share of a shared budget (lfs_blockstore_share:
	 * charged with cache_bytes' changes, shrunk from lru_tail). */
	struct lfs_membudget_member budget;

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
	struct seg_ent *seg; /* its commits, in order (a CAR's is seg1) */
	size_t nseg, capseg;
	struct lfs_cid *seg_heads; /* records nothing later supersedes */
	size_t nseg_heads;
	size_t seg_live;       /* entries not removed */
	bool seg_dir_unsynced; /* made here, directory not fsynced yet */
	bool seg_appended;     /* this process appended since open */
	bool seg_known; /* nobody else appended since we looked (the ledger
			   says so, holding its lock): appends need not */
	bool seg_resume_wanted; /* scanned much without a resume point */
	uint64_t seg_resumed;   /* the first scan started there (or 0) */
	/* The intent records no fold record covers: saves not folded into
	 * a commit yet, and the offset folds cover up to (guarded by
	 * seg_lock). */
	struct lfs_bs_intent *intents;
	size_t nintents, capintents;
	uint64_t folded_to;
	/* The segment's runs, oldest first, covering records [0, runs_end)
	 * (blockstore_runs.c). runs_lock serialises writing them (taken
	 * before seg_lock); the array is guarded by lock. */
	pthread_mutex_t runs_lock;
	struct seg_run *runs;
	size_t nruns;
	uint32_t runs_end;
	uint64_t runs_gen; /* counts lfs_bs_runs_release() */
	/* nlocs when a run was last written (or found nothing to cover):
	 * RUN_LOCATIONS more, and the next append writes one. */
	size_t runs_locs_base;
	size_t unwalked;  /* segment records below it may not be loaded */
	size_t walk_end;  /* and from it on (appended since the walk began) */
	bool runs_opened; /* looked for runs on disk */
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
/* A save staged by lfs_ledger_stage (sealed, not a CAR), and a fold: the
 * intents up to an offset are in a commit now (blockstore.h). */
#define SEG_INTENT 3u
#define SEG_FOLD   4u

/* A large CAR's sorted block index: mapped from its sidecar or built. */
struct idx_src {
	const uint8_t *idx;
	size_t n;
	void *map;
	size_t maplen;
	uint8_t *owned;
};

/* Add c to the array *v of *n (capacity *cap) unless it is there; on
 * ENOMEM, nothing is added. */
void lfs_bs_cids_add(struct lfs_cid **v, size_t *n, size_t *cap,
		     const struct lfs_cid *c);
/* Remove c from v (order not kept): whether it was there. */
bool lfs_bs_cids_drop(struct lfs_cid *v, size_t *n, const struct lfs_cid *c);
/* Unmap or free what x holds, and zero it. */
void lfs_bs_idx_release(struct idx_src *x);
/* Release cf's sidecar index, if it has one. */
void lfs_bs_drop_side(struct car_file *cf);

/* A loaded or indexed CAR's envelope, parsed: 0 or -EBADMSG. */
static inline int lfs_bs_car_info(const struct car_file *cf,
				  struct lfs_envelope_info *out)
{
	int rc =
		lfs_envelope_parse(out, cf->env_header, (size_t)cf->sealed_len);
	return rc ? -EBADMSG : 0;
}

/* Keep info in cf (its header and sealed length). */
static inline void lfs_bs_car_set_info(struct car_file *cf,
				       const struct lfs_envelope_info *info)
{
	memcpy(cf->env_header, info->header, LFS_ENVELOPE_HEADER_BYTES);
	cf->sealed_len = info->sealed_len;
}

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
/* Read what other writers appended to the segment (best effort). */
void lfs_bs_seg_rescan(struct lfs_blockstore *bs);
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
/* Empty the segment's tables: its records, heads and intents (caller
 * holds seg_lock and the lock). */
void lfs_bs_seg_forget_locked(struct lfs_blockstore *bs);
/* When the segment is on disk up to its end: leave the next process a
 * resume point there (caller holds seg_lock and the writer lock). */
int lfs_bs_seg_save_resume(struct lfs_blockstore *bs);
/* Append to *v (n entries) the segment's live CARs or its heads. */
int lfs_bs_add_segment(struct lfs_cid **v, size_t *n, struct lfs_blockstore *bs,
		       bool heads);
/* Supersede those of cars (but keep) that are the segment's heads. */
int lfs_bs_seg_drop_heads(struct lfs_blockstore *bs, const struct lfs_cid *cars,
			  size_t n, const struct lfs_cid *keep);

/* blockstore.c: the chunk cache */

/* Keep a registered CAR's plaintext chunks in the cache (unless it is more
 * than a quarter of it). Caller holds the lock, and calls
 * lfs_bs_cache_enforce once it has let go. */
void lfs_bs_cache_enforce(struct lfs_blockstore *bs);
void lfs_bs_cache_written(struct lfs_blockstore *bs, const struct lfs_cid *car,
			  const struct lfs_envelope_info *info,
			  const uint8_t *plain, size_t len);

/* blockstore_import.c */

int lfs_bs_encode_root(struct lfs_buf *out, const struct lfs_car_root *r);
/* Where a persisted block lives: the hash table, the segment's runs, large
 * CARs' sorted indexes. Caller holds the lock. */
bool lfs_bs_find_loc(const struct lfs_blockstore *bs, const struct lfs_cid *cid,
		     struct loc *out);
/* The CAR's slot in bs->cars (added, empty, when new). Caller holds the
 * lock. */
int lfs_bs_car_slot(struct lfs_blockstore *bs, size_t *out,
		    const struct lfs_cid *cid);

/* Where CAR car's record is in the segment (*out, its ordinal), unless
 * it is not there or was removed. Caller holds the lock. */
static inline bool lfs_bs_seg_of(const struct lfs_blockstore *bs,
				 const struct lfs_cid *car, size_t *out)
{
	size_t i;
	if (!lfs_cidtab_find(&bs->car_index, bs->cars, car, &i) ||
	    !bs->cars[i].seg1 || bs->seg[bs->cars[i].seg1 - 1].removed)
		return false;
	*out = bs->cars[i].seg1 - 1;
	return true;
}

/* The CID of segment record i's CAR. Caller holds the lock. */
static inline const struct lfs_cid *
lfs_bs_seg_cid(const struct lfs_blockstore *bs, size_t i)
{
	return &bs->cars[bs->seg[i].car].cid;
}
/* Forget the runs (unmap them; the files stay). Caller holds the lock. */
void lfs_bs_runs_release(struct lfs_blockstore *bs);
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

/* blockstore_runs.c (caller holds none of the locks) */

/* Records a run covers: written every RUN_RECORDS appends, or sooner
 * when the location table grew by RUN_LOCATIONS since the last run (a
 * commit gathers many saves: 100,000 saves are ~4,000 commits of ~400,000
 * blocks, ~30 MB of locations; commits of 64 blocks or fewer reach
 * RUN_RECORDS first, as before), and at a checkpoint (close) when
 * RUN_CLOSE_RECORDS are not covered yet. */
#define RUN_RECORDS       4096
#define RUN_LOCATIONS     262144
#define RUN_CLOSE_RECORDS 64

/* Map the runs on disk that match the segment as scanned (once; best
 * effort: without them, CARs are decrypted to learn their blocks). */
void lfs_bs_runs_open(struct lfs_blockstore *bs);
/* The min for lfs_bs_runs_write after an append: RUN_RECORDS, or 1 when
 * the location table grew by RUN_LOCATIONS since the last run. */
size_t lfs_bs_runs_due(struct lfs_blockstore *bs);
/*
 * When at least min records follow the last run: write a run over them
 * (merged with the last runs while those are no more than twice its size),
 * map it, and drop their blocks from the hash table. The count
 * lfs_bs_runs_due looks at starts again from here after a run is written,
 * and after any try with min 1 (its answer once locations piled up),
 * whatever came of it. Caller holds the ledger's writer lock (or nobody
 * else writes the store).
 */
int lfs_bs_runs_write(struct lfs_blockstore *bs, size_t min);
/* Forget the runs and remove their files (the segment is gone). */
void lfs_bs_runs_remove(struct lfs_blockstore *bs);

#endif
