/*
 * blocks: the interface through which the clock and the index read and
 * write content-addressed blocks, without knowing where they live.
 *
 * The block store implements it over CAR files; tests implement it over a
 * hash table. A struct lfs_blocks is a small value holding the function
 * table and its object; copy it freely.
 *
 * get: copy the block named cid into out (appending; caller's buffer).
 *      Returns 0, -ENOENT when the block is not (yet) available, -EBADMSG
 *      when what was found does not hash to cid, or an I/O error.
 *      Implementations must verify the hash before returning.
 * put: remember a new block whose CID the caller computed. Returns 0 or an
 *      error. Blocks are immutable: putting a block that exists is a no-op.
 *
 * Thread rules are the implementation's; see its header.
 */
#ifndef LFS_BLOCKS_H
#define LFS_BLOCKS_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "cid.h"

struct lfs_blocks_ops {
	int (*get)(void *self, struct lfs_buf *out, const struct lfs_cid *cid);
	int (*put)(void *self, const struct lfs_cid *cid, const uint8_t *data,
		   size_t len);
};

struct lfs_blocks {
	const struct lfs_blocks_ops *ops;
	void *self;
};

static inline int lfs_blocks_get(const struct lfs_blocks *b,
				 struct lfs_buf *out, const struct lfs_cid *cid)
{
	return b->ops->get(b->self, out, cid);
}

static inline int lfs_blocks_put(const struct lfs_blocks *b,
				 const struct lfs_cid *cid, const uint8_t *data,
				 size_t len)
{
	return b->ops->put(b->self, cid, data, len);
}

#endif
