/*
 * index: the document index, a canonical Merkle hash trie.
 *
 * Maps document ids to their current version (and the versions that lost a
 * concurrent write). The structure is a pure function of the set of entries,
 * so every replica holding the same entries computes the same root CID,
 * whatever order they were written in (history independence):
 *
 *   - each id is hashed with keyed BLAKE2b-256 (the key is a per-ledger
 *     salt, so nobody without the ledger key can craft colliding ids);
 *   - a subtree holding at most LFS_INDEX_LEAF_MAX entries is one leaf node,
 *     its entries sorted by id bytes;
 *   - a larger subtree at depth d is an internal node with up to 16 children
 *     chosen by the d-th 4-bit digit of the hash, and records its entry
 *     count (which makes the leaf/internal decision local).
 *
 * An update rewrites only the nodes on the paths to the changed ids
 * (O(log n) nodes); a diff of two roots skips every subtree whose CID is
 * the same on both sides (O(difference)).
 *
 * Why not a prolly tree or an MST: DESIGN.md asks for either, for the four
 * properties above. A hash trie gives the same properties with a simpler
 * split/merge rule; what it gives up is key-ordered iteration, which nothing
 * in ledgerfs needs (directory listings have no order). docs/FORMATS.md
 * describes the node encoding.
 *
 * Blocks (DAG-CBOR):
 *   leaf     {"e": [[id, entry], ...]}             ids ascending, bytewise
 *   internal {"b": bitmap, "k": [link, ...], "n": count}
 *   entry    {"c": [[doc, t, w], ...], "d": doc, "t": t, "w": writer}
 *            ("c", the conflict losers, is omitted when empty)
 *
 * Errors: -ENOENT (id absent), -EIO (a node the store cannot supply), -EBADMSG
 * (a node that is not a valid index node: bad shape, unsorted entries,
 * a wrong count, an entry in the wrong subtree), -EINVAL (bad arguments:
 * duplicate ids in one apply, an over-long id or writer), -ENOMEM.
 *
 * Thread rules: an lfs_index holds no mutable state of its own; concurrent
 * calls are safe when the blocks implementation is.
 */
#ifndef LFS_INDEX_H
#define LFS_INDEX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "arena.h"
#include "blocks.h"
#include "cid.h"

#define LFS_INDEX_LEAF_MAX 32
#define LFS_INDEX_ID_MAX   1024 /* bytes of a document id */
#define LFS_WRITER_MAX     64   /* bytes of a writer id */
#define LFS_SALT_BYTES     32

/* One version of a document: its block and the write that made it. */
struct lfs_version {
	struct lfs_cid doc; /* dag-cbor block of the document */
	int64_t t;          /* hybrid logical time of the write, microseconds */
	const char *writer; /* NUL-terminated, at most LFS_WRITER_MAX bytes */
};

struct lfs_index_entry {
	const char *id; /* NUL-terminated; ids hold no NUL */
	size_t id_len;
	struct lfs_version cur;
	struct lfs_version *conflicts; /* losers of concurrent writes */
	size_t nconflicts;
};

struct lfs_index_cache;

struct lfs_index {
	struct lfs_blocks blocks;
	uint8_t salt[LFS_SALT_BYTES];
	struct lfs_index_cache *cache; /* decoded nodes for lookups, or NULL */
};

/* Set up an index reading and writing through blocks (no cache). */
void lfs_index_init(struct lfs_index *ix, struct lfs_blocks blocks,
		    const uint8_t salt[LFS_SALT_BYTES]);

/*
 * A cache of decoded nodes (at most max_bytes, least recently used go
 * first) that lfs_index_get consults before it reads and decodes a node:
 * nodes are immutable, so a lookup costs a few hash probes once the upper
 * levels and the hot leaves are in it. Set ix->cache to use it; it is
 * thread-safe (one mutex). Free it after the last lookup.
 */
int lfs_index_cache_new(struct lfs_index_cache **out, size_t max_bytes);
void lfs_index_cache_free(struct lfs_index_cache *c);
/* Bound c by budget as well, shared with other caches (membudget.h);
 * budget must outlive c. Call before other threads use c. */
struct lfs_membudget;
void lfs_index_cache_share(struct lfs_index_cache *c,
			   struct lfs_membudget *budget);

/* Write the empty index's root block and return its CID. */
int lfs_index_empty(struct lfs_cid *out, const struct lfs_index *ix);

/*
 * Look up id under root. On success *out is filled with strings allocated
 * from a. Returns 0 or -ENOENT when absent, or another error.
 */
int lfs_index_get(struct lfs_index_entry *out, struct lfs_arena *a,
		  const struct lfs_index *ix, const struct lfs_cid *root,
		  const char *id, size_t id_len);

/* One change for lfs_index_apply(): entry NULL deletes id. */
struct lfs_index_change {
	const char *id;
	size_t id_len;
	const struct lfs_index_entry *entry;
};

/*
 * Apply changes (ids unique; any order; the array is reordered) to root,
 * writing new nodes through the blocks interface. Deleting an absent id is
 * not an error. *out receives the new root.
 */
int lfs_index_apply(struct lfs_cid *out, const struct lfs_index *ix,
		    const struct lfs_cid *root,
		    struct lfs_index_change *changes, size_t n);

/*
 * Call fn for every id whose entry differs between roots a and b; ea or eb
 * is NULL where the id is absent on that side. Order is unspecified. A
 * non-zero return from fn stops the walk and is returned.
 */
typedef int (*lfs_index_diff_fn)(void *ctx, const struct lfs_index_entry *ea,
				 const struct lfs_index_entry *eb);
int lfs_index_diff(const struct lfs_index *ix, const struct lfs_cid *a,
		   const struct lfs_cid *b, lfs_index_diff_fn fn, void *ctx);

/*
 * Call fn for every entry under root, in hash order (stable for a given
 * root). A non-zero return from fn stops the walk and is returned.
 */
typedef int (*lfs_index_each_fn)(void *ctx, const struct lfs_index_entry *e);
int lfs_index_each(const struct lfs_index *ix, const struct lfs_cid *root,
		   lfs_index_each_fn fn, void *ctx);

/* Number of entries under root (read from the root node alone). */
int lfs_index_count(uint64_t *out, const struct lfs_index *ix,
		    const struct lfs_cid *root);

/* Copy an entry (strings and conflicts) into arena a. */
int lfs_index_entry_copy(struct lfs_index_entry *out, struct lfs_arena *a,
			 const struct lfs_index_entry *e);

/*
 * The order in which concurrent versions win: later hybrid time first, then
 * the greater writer id, then the greater document CID. Returns <0, 0, >0.
 */
int lfs_version_cmp(const struct lfs_version *a, const struct lfs_version *b);

/* True when the two entries are the same (all fields). */
bool lfs_index_entry_equal(const struct lfs_index_entry *a,
			   const struct lfs_index_entry *b);

/*
 * Visit the CIDs of the nodes under root, parents before children. fn
 * returns 0 to descend, 1 to skip that node's subtree (without loading it),
 * or a negative error that stops the walk. leaf_fn (may be NULL) is called
 * for each entry of every leaf that is descended into. For gathering the
 * blocks a CAR must hold.
 */
typedef int (*lfs_index_node_fn)(void *ctx, const struct lfs_cid *node);
int lfs_index_nodes(const struct lfs_index *ix, const struct lfs_cid *root,
		    lfs_index_node_fn fn, lfs_index_each_fn leaf_fn, void *ctx);

/*
 * Verify every node under root (shape, order, counts, hashes in the right
 * subtree) and call fn, if not NULL, for each entry. For fsck.
 */
int lfs_index_check(const struct lfs_index *ix, const struct lfs_cid *root,
		    lfs_index_each_fn fn, void *ctx);

#endif
