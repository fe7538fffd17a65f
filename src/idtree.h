/*
 * idtree: a ledger's ids in byte order, for folders.
 *
 * The index is a hash trie (index.h): it finds an id, not the ids under a
 * prefix. A folder's listing needs the second, so an idtree keeps the ids
 * of one root sorted; a folder is then a prefix range of them (binary
 * search). They are kept in chunks of a few hundred, so that moving to
 * another root costs a diff of the two roots (O(difference) nodes) and,
 * per id added or removed, O(log n) comparisons and a copy within one
 * chunk: a commit after which a folder is looked up costs the same in a
 * ledger of 100 documents as in one of 100,000. The first use walks the
 * whole index.
 *
 * The folder queries themselves work on any sorted list of ids
 * (lfs_idtree_list_*): the Fireproof mount's sorted documents use them.
 *
 * Folders and paths are fsname.h's: a folder `path` ("" the ledger's top)
 * stands for the ids whose path starts with "path/".
 *
 * Threads: every call takes the tree's own lock and may read index nodes
 * under it (disk I/O); callbacks run under it and may take fs->lock (a
 * leaf lock) but not another tree's lock. Errors: the index's (-EIO,
 * -EBADMSG), -ENOMEM; the tree is then rebuilt by the next call.
 */
#ifndef LFS_IDTREE_H
#define LFS_IDTREE_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>

#include "buf.h"
#include "cid.h"
#include "index.h"

struct lfs_idtree_chunk;

struct lfs_idtree {
	pthread_mutex_t lock;
	bool valid; /* ids are those of root */
	struct lfs_cid root;
	/* The ids, sorted bytewise (malloc'd), in chunks; start[c]: the
	 * index of chunk c's first id. */
	struct lfs_idtree_chunk **chunks;
	size_t *start;
	size_t nchunks, cap, n;
};

void lfs_idtree_init(struct lfs_idtree *t);
void lfs_idtree_release(struct lfs_idtree *t);

/*
 * Call fn for each child of folder `path` under root: a document (its file
 * name, "x.json", and id) or a folder (its name, id NULL), each once, in
 * no promised order. A non-zero return from fn stops and is returned.
 */
typedef int (*lfs_idtree_child_fn)(void *ctx, const char *name, const char *id);
int lfs_idtree_children(struct lfs_idtree *t, const struct lfs_index *ix,
			const struct lfs_cid *root, const char *path,
			lfs_idtree_child_fn fn, void *ctx);

/* Bring t's ids to root's (as every query does first). */
int lfs_idtree_update(struct lfs_idtree *t, const struct lfs_index *ix,
		      const struct lfs_cid *root);

/* Is there a document under folder `path` (at any depth) under root? */
int lfs_idtree_has_folder(struct lfs_idtree *t, const struct lfs_index *ix,
			  const struct lfs_cid *root, const char *path,
			  bool *out);

/*
 * Call fn with the id and path of every document under folder `path`, at
 * any depth (a folder's rename).
 */
typedef int (*lfs_idtree_doc_fn)(void *ctx, const char *id, const char *path);
int lfs_idtree_under(struct lfs_idtree *t, const struct lfs_index *ix,
		     const struct lfs_cid *root, const char *path,
		     lfs_idtree_doc_fn fn, void *ctx);

/*
 * Saving the ids for the next mount, whose first listing then takes them
 * instead of walking the whole index (a quarter of a second at 100,000
 * documents): the next query moves them to its root by a diff, as it
 * would ids of its own.
 *
 * encode appends the ids and the root they are those of (*out_root) to
 * out: "LFSIDS1\n" | root CID (36 bytes) | count (u64, little endian) |
 * the ids in order, each ended by a NUL. -ENOENT when the tree holds no
 * root's ids; buffer errors. decode replaces t's ids with such bytes:
 * -EBADMSG unless they are exactly that (ids non-empty, at most
 * LFS_INDEX_ID_MAX bytes, strictly ascending, as many as counted, nothing
 * after), and then t is as it was; -ENOMEM (t then holds no root's
 * ids). On success *out_root is the root they are those of.
 */
int lfs_idtree_encode(struct lfs_idtree *t, struct lfs_buf *out,
		      struct lfs_cid *out_root);
int lfs_idtree_decode(struct lfs_idtree *t, const uint8_t *p, size_t len,
		      struct lfs_cid *out_root);

/*
 * A list of ids sorted bytewise, read through at(ctx, i) for i < n (ids
 * without NUL). The same queries as above on it, without a lock: children
 * (-ENOENT for a path that is not a folder's spelling; fn's non-zero
 * return) and whether a document is under folder path.
 */
struct lfs_idtree_list {
	const char *(*at)(const void *ctx, size_t i);
	const void *ctx;
	size_t n;
};
int lfs_idtree_list_children(const struct lfs_idtree_list *l, const char *path,
			     lfs_idtree_child_fn fn, void *ctx);
bool lfs_idtree_list_has_folder(const struct lfs_idtree_list *l,
				const char *path);

#endif
