/*
 * blockstore: one ledger's blocks in encrypted CAR files in a directory.
 *
 * Layout (the same as a remote store's, see docs/FORMATS.md):
 *
 *   DIR/car/<cid>    sealed CAR files, named by the CID of their sealed bytes
 *   DIR/head/<cid>   head records: one small JSON file per head CAR,
 *                    {"car": {"/": "<cid>"}, "parents": [{"/": "<cid>"}...]}
 *
 * Every CAR has one root block, {"cars": [raw CID...], "head": [event...]}:
 * the events this CAR brings up to date and the CAR files that hold their
 * parent events, so a reader starting at the newest CAR finds older ones by
 * following "cars". A compaction CAR holds every block of the history and
 * names no older CAR.
 *
 * Blocks are found through an in-memory location table (block CID -> CAR,
 * plaintext offset, length) filled as CAR files are loaded; a block is read
 * by decrypting only the envelope chunks that hold it, through an LRU cache
 * of decrypted chunks whose size is set at open. CAR files are loaded
 * lazily: the head CARs at open, older ones, following "cars", only when a
 * block is missed, and then the segment's records not loaded yet, newest
 * first. A miss is final only after a last look at what other processes
 * on this home may have added since: records appended to the segment, and
 * the named CARs that were not here when looked for before. New blocks
 * are kept in memory until write_car() puts them in a CAR file.
 *
 * The segment, DIR/segment: commits appended as records (append_car), one
 * after the other in one file, instead of a CAR file and a head record
 * each. A record holds the sealed CAR, byte for byte what car/<cid> would
 * hold, and its head record (the CARs whose records it supersedes), so the
 * store still presents every CAR by its CID (list_cars, read_car, has_car,
 * load) and the head records it holds (heads()), wherever they are. Every
 * process reads the records others appended when it looks (heads(),
 * list_cars(), has_car(), heads_stamp() changes with the segment's size).
 * A record that is incomplete or does not check out with nothing good
 * after it (a crash while it was written) ends the segment, and the next
 * append cuts it off; one with good records after it (damage in the
 * middle) is skipped, losing that commit only. Format in docs/FORMATS.md.
 *
 * Runs, DIR/runs: the segment's block index on disk. Every RUN_RECORDS
 * appends, or RUN_LOCATIONS blocks (and at a checkpoint), the blocks of the
 * records since the last run go into a sorted, mapped file instead of the
 * location table, and runs are merged as they grow; opening maps them, so a
 * record's blocks are found without decrypting its CAR. A cache: checked
 * against the segment and the key, ignored (and written again) when it does not
 * match.
 *
 * Durability: write_car() and set_head() with durable=true fsync the file and
 * its directory before returning; with durable=false they leave that to the
 * next lfs_blockstore_sync(). An appended record survives the process at
 * once (it is in the page cache); append_car() with durable=true, and
 * lfs_blockstore_sync(), fdatasync the segment, one fdatasync serving every
 * thread waiting for one (group commit).
 *
 * Threads: every function may be called from any thread; one mutex guards
 * the tables, and file reads and decryption happen outside it.
 *
 * Errors: -ENOENT (no such block or CAR), -EBADMSG (a file that fails its
 * name, authentication, a block hash or the root block's shape), -EIO and
 * other errnos from the file system, -ENOMEM.
 */
#ifndef LFS_BLOCKSTORE_H
#define LFS_BLOCKSTORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "arena.h"
#include "blocks.h"
#include "cid.h"
#include "envelope.h"

#define LFS_BLOCKSTORE_DEFAULT_CACHE ((size_t)16 << 20)
#define LFS_CAR_CHUNK_LOG2           14 /* 16 KiB envelope chunks */
#define LFS_CAR_MAX_FILE             ((size_t)1 << 30)

struct lfs_blockstore;

/* The root block of a ledger CAR. */
struct lfs_car_root {
	struct lfs_cid *cars; /* raw CIDs of CAR files with parent events */
	size_t ncars;
	struct lfs_cid *head; /* events this CAR brings up to date */
	size_t nhead;
};

/*
 * Open (creating DIR/car and DIR/head when create is set) the store in dir
 * with the ledger's key (copied). cache_bytes 0 means the default.
 */
int lfs_blockstore_open(struct lfs_blockstore **out, const char *dir,
			const uint8_t key[LFS_KEY_BYTES], size_t cache_bytes,
			bool create);
void lfs_blockstore_free(struct lfs_blockstore *bs);

/* Bound the chunk cache by budget as well, shared with other caches
 * (membudget.h); budget must outlive bs. Call before other threads use
 * bs. */
struct lfs_membudget;
void lfs_blockstore_share(struct lfs_blockstore *bs,
			  struct lfs_membudget *budget);

/* The blocks interface: get reads memory, then CARs; put keeps in memory. */
struct lfs_blocks lfs_blockstore_blocks(struct lfs_blockstore *bs);

/* True when cid is in a CAR file (not only in memory). */
bool lfs_blockstore_persisted(struct lfs_blockstore *bs,
			      const struct lfs_cid *cid);

/*
 * True when cid was put and is in no CAR file yet (the blocks a new CAR
 * must carry; a block in a CAR file not loaded yet may be put again, and
 * then counts as in memory). A cheap look: a small table.
 */
bool lfs_blockstore_in_memory(struct lfs_blockstore *bs,
			      const struct lfs_cid *cid);

/* The CAR file holding a persisted block (-ENOENT if none loaded does). */
int lfs_blockstore_car_of(struct lfs_cid *out, struct lfs_blockstore *bs,
			  const struct lfs_cid *block);

/*
 * Write a CAR whose root block is {cars, head} followed by the listed blocks
 * (each must be in memory or persisted), seal it, store it as car/<cid> and
 * make its blocks persisted. Returns the CAR file's CID in *out.
 */
int lfs_blockstore_write_car(struct lfs_cid *out, struct lfs_blockstore *bs,
			     const struct lfs_car_root *root,
			     const struct lfs_cid *blocks, size_t n,
			     bool durable);

/*
 * As write_car, but append the CAR to the segment as a record that
 * supersedes the head records of parents (and every head record of the
 * segment: the caller holds the ledger's writer lock and commits on top of
 * every head). With durable, fdatasync the segment before returning.
 */
int lfs_blockstore_append_car(struct lfs_cid *out, struct lfs_blockstore *bs,
			      const struct lfs_car_root *root,
			      const struct lfs_cid *blocks, size_t n,
			      const struct lfs_cid *parents, size_t nparents,
			      bool durable);

/*
 * If this process appended to the segment: fdatasync it and append a mark
 * saying so, so the next open re-hashes only what came after. And, when it
 * appended or its open scanned much of the segment, leave a resume point
 * (DIR/runs/resume), so the next open's scan starts where this one ends.
 * Caller holds the ledger's writer lock (at close).
 */
int lfs_blockstore_checkpoint(struct lfs_blockstore *bs);
/* True when this process appended since open or its last checkpoint. */
bool lfs_blockstore_appended(struct lfs_blockstore *bs);

/*
 * Say whether the segment is as this process last saw it (nobody else
 * appended since its last append or look): the ledger knows, holding its
 * writer lock, from the count every writer bumps first. When known, the
 * next append skips its look at the file's size (an fstat); any append
 * forgets it, and so must the ledger when it lets go of its lock.
 */
void lfs_blockstore_segment_known(struct lfs_blockstore *bs, bool known);

/* The directory the store was opened on (for messages). */
const char *lfs_blockstore_dir(const struct lfs_blockstore *bs);

/*
 * Intents: saves the ledger staged (lfs_ledger_stage) and has not folded
 * into a commit yet, each appended to the segment as a record of its own,
 * sealed under a key derived from the store's. A fold record says that
 * every intent before an offset is folded into commits; the intents that
 * count are those after it, whatever else came between. A process that
 * takes the writer lock after a crash folds them first.
 */
struct lfs_bs_intent {
	uint64_t off; /* of the record's sealed bytes */
	uint32_t len;
	struct lfs_cid cid; /* of the sealed bytes (raw) */
};

/*
 * Seal plain and append it as an intent record; its place in *out (may be
 * NULL). Caller holds the ledger's writer lock (the flock), and keeps it
 * for the next append (lfs_blockstore_segment_known: the segment stays
 * known after an intent) or says otherwise when it lets go.
 */
int lfs_blockstore_append_intent(struct lfs_blockstore *bs,
				 const uint8_t *plain, size_t len,
				 struct lfs_bs_intent *out);

/*
 * The intents no fold record covers, oldest first, after a look at what
 * was appended (malloc'd; free it; NULL when none). Caller holds the
 * ledger's writer lock.
 */
int lfs_blockstore_intents(struct lfs_bs_intent **out, size_t *out_n,
			   struct lfs_blockstore *bs);

/* Read and open intent it: its plaintext appended to out. */
int lfs_blockstore_read_intent(struct lfs_buf *out, struct lfs_blockstore *bs,
			       const struct lfs_bs_intent *it);

/*
 * Append a fold record: the intents at offsets up to through are folded
 * (after the commit that holds them is written). Caller holds the writer
 * lock.
 */
int lfs_blockstore_fold_mark(struct lfs_blockstore *bs, uint64_t through);

/*
 * As write_car (always durable), for compaction: every listed block is read
 * from this CAR from now on, so the older CAR files can be removed.
 */
int lfs_blockstore_write_compact(struct lfs_cid *out, struct lfs_blockstore *bs,
				 const struct lfs_car_root *root,
				 const struct lfs_cid *blocks, size_t n);

/*
 * Load car/<cid> (if not loaded yet) and return its root block, allocated
 * from a. verify re-checks the file's name and every block hash (for files
 * that came from elsewhere); local files were checked when they arrived.
 */
int lfs_blockstore_load(struct lfs_car_root *out, struct lfs_arena *a,
			struct lfs_blockstore *bs, const struct lfs_cid *car,
			bool verify);

/*
 * Take a sealed CAR from elsewhere (a replica, a remote store): check its
 * bytes against expect, authenticate and verify every block and the root
 * block, then store it as car/<expect> and load it. Nothing is stored when
 * any check fails. The file is fsynced before import returns, unless lazy
 * imports are on (lfs_blockstore_set_lazy_imports): then the next
 * lfs_blockstore_sync() makes it durable. A CAR that is here and loaded
 * already (it was checked when it came) is not checked or written again:
 * import gives its root, whatever sealed holds.
 */
void lfs_blockstore_set_lazy_imports(struct lfs_blockstore *bs, bool lazy);
int lfs_blockstore_import(struct lfs_car_root *out, struct lfs_arena *a,
			  struct lfs_blockstore *bs,
			  const struct lfs_cid *expect, const uint8_t *sealed,
			  size_t len);

/*
 * Re-read car/<cid> and check everything about it (name, authentication,
 * every block hash, the root block) without changing any table. For fsck.
 */
int lfs_blockstore_verify_car(struct lfs_blockstore *bs,
			      const struct lfs_cid *car);

/*
 * What the store holds in memory (for tests and benchmarks): CARs known,
 * CARs whose root is loaded (decrypted at least once), block locations in
 * the hash table, the segment's records and those its runs cover (their
 * blocks cost no table entry), and the runs.
 */
struct lfs_blockstore_stats {
	size_t cars, loaded, locations;
	size_t records, indexed, runs;
	/* Where the first scan of the segment started, from a resume point
	 * (DIR/runs/resume); 0 when it read the segment from the start. */
	uint64_t resumed;
};
void lfs_blockstore_stats(struct lfs_blockstore *bs,
			  struct lfs_blockstore_stats *out);

/* True when car/<cid> exists locally. */
bool lfs_blockstore_has_car(struct lfs_blockstore *bs,
			    const struct lfs_cid *car);

/*
 * True when car is a record of the segment: a commit made on this home, by
 * this process or another (the segment is looked at again when needed).
 */
bool lfs_blockstore_in_segment(struct lfs_blockstore *bs,
			       const struct lfs_cid *car);

/* Read car/<cid>'s sealed bytes (for upload); caller frees *out. */
int lfs_blockstore_read_car(uint8_t **out, size_t *out_len,
			    struct lfs_blockstore *bs,
			    const struct lfs_cid *car);

/* List every CAR file present (malloc'd array; free it). */
int lfs_blockstore_list_cars(struct lfs_cid **out, size_t *out_n,
			     struct lfs_blockstore *bs);

/* Delete car/<cid> (compaction). Its blocks must be persisted elsewhere.
 * A CAR in the segment is forgotten; the segment file is removed when every
 * CAR in it is. */
int lfs_blockstore_remove_car(struct lfs_blockstore *bs,
			      const struct lfs_cid *car);

/*
 * Head records. heads() lists the CARs that have one (malloc'd, free it):
 * a file in head/, or a record of the segment that no later record
 * supersedes.
 * set_head() writes the record for car first, then removes the records of
 * the parents it supersedes, so a crash leaves at worst an extra record
 * (harmless: the clock drops heads that are ancestors of others).
 */
int lfs_blockstore_heads(struct lfs_cid **out, size_t *out_n,
			 struct lfs_blockstore *bs);
int lfs_blockstore_set_head(struct lfs_blockstore *bs,
			    const struct lfs_cid *car,
			    const struct lfs_cid *parents, size_t nparents,
			    bool durable);
int lfs_blockstore_drop_head(struct lfs_blockstore *bs,
			     const struct lfs_cid *car);

/* fsync everything written with durable=false since the last sync. */
int lfs_blockstore_sync(struct lfs_blockstore *bs);

/*
 * In-memory blocks are kept in the order they were put. fresh_mark() names
 * the current point; fresh_rewind() forgets every unpersisted block put
 * since (a failed transaction's). Callers serialise puts around these.
 */
size_t lfs_blockstore_fresh_mark(struct lfs_blockstore *bs);
void lfs_blockstore_fresh_rewind(struct lfs_blockstore *bs, size_t mark);

/* A stamp that changes whenever a head record is added or removed (the
 * head directory's modification time, mixed with the segment's inode and
 * size), to notice other processes. */
int lfs_blockstore_heads_stamp(struct lfs_blockstore *bs, int64_t *out);

#endif
