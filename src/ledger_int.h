/*
 * ledger_int: what the ledger's modules share. Internal: only src/ledger*.c
 * include it; ledger.h is the contract.
 *
 *   ledger.c        opening, transactions, reads, commits, merges,
 *                   replication (ingest) and compaction
 *   ledger_fsck.c   checking a ledger's files and history (fsck)
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
};

#endif
