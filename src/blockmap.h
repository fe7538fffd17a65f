/*
 * blockmap: an in-memory set of blocks keyed by CID.
 *
 * Used to gather the new blocks of a transaction before they are written
 * into one CAR, and by tests as a complete block source. Blocks keep their
 * insertion order for iteration (a CAR lists them in the order they were
 * made). Implements struct lfs_blocks (lfs_blockmap_blocks()); get verifies
 * nothing since every block was hashed on put... put computes nothing either:
 * the caller's CID is trusted, as the interface says.
 *
 * Not thread-safe: one owner at a time.
 */
#ifndef LFS_BLOCKMAP_H
#define LFS_BLOCKMAP_H

#include <stddef.h>
#include <stdint.h>

#include "blocks.h"

struct lfs_blockmap_item {
	struct lfs_cid cid;
	uint8_t *data; /* owned */
	size_t len;
};

struct lfs_blockmap {
	struct lfs_blockmap_item *items; /* insertion order */
	size_t count;
	size_t cap;
	size_t *slots; /* open addressing: index + 1 into items, 0 = empty */
	size_t nslots;
	size_t bytes; /* sum of block lengths */
};

void lfs_blockmap_init(struct lfs_blockmap *m);
void lfs_blockmap_release(struct lfs_blockmap *m);

/* Add a copy of a block (no-op if present). 0 or -ENOMEM. */
int lfs_blockmap_put(struct lfs_blockmap *m, const struct lfs_cid *cid,
		     const uint8_t *data, size_t len);

/* The stored item, or NULL. The pointer is valid until the next put. */
const struct lfs_blockmap_item *lfs_blockmap_find(const struct lfs_blockmap *m,
						  const struct lfs_cid *cid);

/* Forget every block added after the first `count` (insertion order). */
void lfs_blockmap_truncate(struct lfs_blockmap *m, size_t count);

/* The struct lfs_blocks view of this map. */
struct lfs_blocks lfs_blockmap_blocks(struct lfs_blockmap *m);

#endif
