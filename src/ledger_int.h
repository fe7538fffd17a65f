/*
 * ledger_int: what the ledger's modules share. Internal: only src/ledger*.c
 * include it; ledger.h is the contract.
 *
 *   ledger.c        opening, transactions, reads, commits, merges,
 *                   replication (ingest) and compaction
 *   ledger_stage.c  staged saves: intents appended to the segment, folded
 *                   into commits in the background (lfs_ledger_stage)
 *   ledger_fsck.c   checking a ledger's files and history (fsck)
 *
 * Locks, in the order they are taken: write_lock (one writer thread),
 * intent_lock (the staged saves and whether this process holds the flock
 * on DIR/lock; held for moments only, so stages never wait for a
 * commit), state_lock (the published state), then the blockstore's.
 */
#ifndef LFS_LEDGER_INT_H
#define LFS_LEDGER_INT_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "blocks.h"
#include "buf.h"
#include "blockstore.h"
#include "cid.h"
#include "index.h"
#include "ledger.h"

struct lfs_ledger {
	struct lfs_blockstore *bs;
	struct lfs_blocks blocks;
	struct lfs_index ix;
	char writer[LFS_WRITER_MAX + 1];
	bool durable;
	bool segment; /* commits go to the segment, not a file each */
	int64_t (*now_us)(void *ctx);
	void *now_ctx;

	pthread_mutex_t write_lock; /* one writer thread at a time */
	struct lfs_buf docbuf;      /* encode_doc's, under write_lock */
	int lock_fd;                /* flock: one writer process at a time */
	int open_fd;                /* flock shared while open */
	int64_t heads_stamp;        /* head records seen at this stamp */
	uint64_t *gen_map;          /* DIR/lock's count, mapped; or NULL */
	uint64_t touched_gen;       /* the count touch_heads() set */
	bool touched_heads; /* this writer session changed head records */
	bool own_commit;    /* ... by a commit whose state is published */
	pthread_mutex_t state_lock; /* guards the fields below */
	struct lfs_cid *heads;      /* sorted by CID */
	size_t nheads;
	struct lfs_cid *head_cars; /* distinct CAR files holding the heads */
	size_t nhead_cars;
	struct lfs_cid root;
	int64_t max_t; /* greatest t among the heads */
	int batch;     /* lfs_ledger_ingest_begin() depth, under write_lock */
	bool batch_dirty; /* a batch moved the heads: records not written */
	struct lfs_cid *pending; /* events a batch applied, not yet heads */
	size_t npending, pending_cap;
	/* The head record whose CAR the last reload could not read. */
	struct lfs_cid bad_head;
	bool has_bad_head;

	/* Staged saves (ledger_stage.c), guarded by intent_lock. The flock
	 * on DIR/lock is held from the first staged save until they are
	 * all folded, so that no other process sees the ledger without
	 * them; flock_held says whether this process holds it. */
	pthread_mutex_t intent_lock;
	pthread_cond_t intent_cond; /* a save staged, or all folded */
	bool flock_held;
	bool writing; /* a writer session (lock_writer) holds it too */
	/* Held for staged saves since a time the heads were known: nobody
	 * else can have changed them (atomic; lfs_ledger_refresh). */
	bool held_current;
	struct staged *staged;        /* not folded yet, oldest first */
	struct stage_ids *staged_ids; /* their ids (hashes) */
	size_t nstaged, capstaged;
	size_t staged_ops;   /* their ops, in all */
	size_t staged_bytes; /* their plaintext, in all */
	int fold_err;        /* the last fold's failure, or 0 */
	bool folder_on, folder_stop;
	pthread_t folder;
	lfs_ledger_fold_fn on_fold; /* called after each fold (may be NULL) */
	void *fold_ctx;
	/* Set while a fold's result waits for unlock_writer to report it. */
	struct lfs_txn *folded;
	struct lfs_cid folded_before, folded_after, folded_event;
	bool folding; /* from a fold's start to its report (atomic) */
};

/* ledger.c, for ledger_stage.c. */
/*
 * Hold the flock for staged saves (caller holds intent_lock): take it if
 * this process does not hold it, and bump DIR/lock's count so that
 * others look at the segment (and find intents a crash left).
 */
int lfs_ledger_hold_locked(struct lfs_ledger *l);
/* Let the flock go when nothing holds it (caller holds intent_lock). */
void lfs_ledger_unhold_locked(struct lfs_ledger *l);
/* lock_writer and unlock_writer (caller holds write_lock). */
int lfs_ledger_lock_writer(struct lfs_ledger *l);
void lfs_ledger_unlock_writer(struct lfs_ledger *l);
/* Caller holds write_lock. */
int lfs_ledger_commit_locked(struct lfs_ledger *l, struct lfs_txn *t,
			     struct lfs_cid *out_event, bool *out_committed);
/* The state as published, without waiting for staged saves. */
void lfs_ledger_current_root(struct lfs_ledger *l, struct lfs_cid *out);
/* Put a put op whose block is encoded already (a copy is taken). */
int lfs_txn_put_block(struct lfs_txn *t, const char *id, const uint8_t *block,
		      size_t len);
/* Op i's block as a commit or stage would write it: the encoded block, or
 * the document encoded into b. */
int lfs_txn_op_block(const struct lfs_txn *t, size_t i, struct lfs_buf *b,
		     const uint8_t **out, size_t *out_len);
bool lfs_txn_op_del(const struct lfs_txn *t, size_t i);
/* Note op i's block's CID (lfs_txn_op_cid), as a stage encoded it. */
void lfs_txn_op_set_cid(struct lfs_txn *t, size_t i, const struct lfs_cid *cid);

/* ledger_stage.c. */
void lfs_stage_init(struct lfs_ledger *l);
void lfs_stage_release(struct lfs_ledger *l);
/*
 * Fold every intent no fold record covers into one commit (ours, or a
 * crashed process's). Caller holds write_lock and the flock (lock_writer).
 */
int lfs_stage_fold_locked(struct lfs_ledger *l);
/* Report a fold noted by lfs_stage_fold_locked (after unlock_writer). */
void lfs_stage_report(struct lfs_ledger *l);
/* Stop the folder thread after it folded what is staged. */
void lfs_stage_stop(struct lfs_ledger *l);

#endif
