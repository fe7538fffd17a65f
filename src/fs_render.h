/*
 * fs_render: a committed document version as its file shows it (pretty
 * JSON with "_id", lfs_render_doc), and the table of those texts' lengths
 * that lets a stat, a lookup or a directory listing answer a document's
 * exact size without rendering it (the kernel needs the exact size: it
 * reads committed documents through its page cache, up to that size).
 *
 * The table is local, per ledger, in HOME/state/<ledger>/sizes, shared
 * by the mounts and commands of this home: never committed, never
 * replicated. A version's text is a pure function of its block CID and
 * its id, so an entry never goes stale; it is filled whenever a version
 * is rendered (the mount's renders) or committed (the mount's saves and
 * `ledgerfs import`: lfs_render_note_txn), or by lfs_render_fill.
 *
 * The file: a header ("lfs-size", then the render format, 4 bytes little
 * endian, then 4 zero bytes), then records of 48 bytes: a key of 32
 * bytes (BLAKE2b-256 of the render format, the CID's bytes and the id:
 * two versions never share a key short of breaking BLAKE2b), the length
 * (8 bytes little endian) and a check (BLAKE2b-64 of key and length).
 * Writers append whole records (O_APPEND); a later record of a key wins.
 * Nothing is trusted past damage: loading stops at the first record
 * whose check fails, whose length is out of bounds or that is cut short,
 * and rewrites the file with the records before it; a file of another
 * format or render version is started anew. A wrong length would cut
 * reads short, so every render the mount does also checks the table
 * (lfs_render_sizes_put says when it corrected an entry).
 *
 * Threads: a table has its own lock (a leaf lock, held over its own file
 * reads and appends only); any thread may call any function.
 */
#ifndef LFS_FS_RENDER_H
#define LFS_FS_RENDER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "cid.h"
#include "ledger.h"

/* Bump when lfs_render_doc's output changes: old tables are dropped. */
#define LFS_RENDER_FORMAT 1
/* The longest text a table entry may give (longer: damage). */
#define LFS_RENDER_MAX ((size_t)1 << 30)

/*
 * Append the text of version doc of id (lfs_ledger_load_doc, "_id": id,
 * lfs_dagjson_dump) to out. lfs_ledger_load_doc's errors.
 */
int lfs_render_doc(struct lfs_ledger *l, const struct lfs_cid *doc,
		   const char *id, struct lfs_buf *out);

struct lfs_render_sizes;

/*
 * Load the table kept in the file at path (made when missing). A file
 * that cannot be read or written leaves a table that keeps its entries
 * in memory only (logged); -ENOMEM only.
 */
int lfs_render_sizes_open(struct lfs_render_sizes **out, const char *path);
void lfs_render_sizes_close(struct lfs_render_sizes *t);

/* The length of version doc of id's text, when the table knows it. */
bool lfs_render_sizes_get(struct lfs_render_sizes *t, const struct lfs_cid *doc,
			  const char *id, size_t *out);

/*
 * Note that version doc of id renders to len bytes (appended to the file
 * unless known). Returns true when the table held another length for it,
 * now corrected.
 */
bool lfs_render_sizes_put(struct lfs_render_sizes *t, const struct lfs_cid *doc,
			  const char *id, size_t len);

/* Read what other processes appended to the file since (true: some). */
bool lfs_render_sizes_catch_up(struct lfs_render_sizes *t);

/*
 * Render every document of l's current root whose length t does not know
 * and note them (one append): what `ledgerfs import` does after
 * committing, so a mount's first listing renders nothing. *out_added
 * (may be NULL) counts them. The ledger's read errors.
 */
int lfs_render_fill(struct lfs_render_sizes *t, struct lfs_ledger *l,
		    size_t *out_added);

/*
 * Versions committed elsewhere (a pull, another process on this home) are
 * queued when the mount learns of them and filled in the background, so
 * the first listing after a big pull renders nothing either.
 * Queue version doc of id unless its length is known (out of memory, or
 * past 64 MiB of queue: not queued; its first stat renders it).
 */
void lfs_render_sizes_queue(struct lfs_render_sizes *t,
			    const struct lfs_cid *doc, const char *id);
/* How many versions are queued. */
size_t lfs_render_sizes_queued(struct lfs_render_sizes *t);
/*
 * Render and note queued versions of l for about budget_us microseconds
 * (at least one when any is queued); returns how many are left. A
 * version that cannot be read is dropped from the queue.
 */
size_t lfs_render_sizes_fill_queued(struct lfs_render_sizes *t,
				    struct lfs_ledger *l, int64_t budget_us);

/*
 * Texts rendered or committed lately, by version and id: a fixed table of
 * slots (a slot holds the last version hashed to it) within a budget of
 * bytes (its own, and a shared one's share), so reading a document again,
 * or just after it was saved, renders nothing. Its own lock, a leaf lock; any
 * thread.
 */
struct lfs_render_cache;
int lfs_render_cache_new(struct lfs_render_cache **out);
void lfs_render_cache_free(struct lfs_render_cache *c);
/* Bound c by budget as well, shared with other caches (membudget.h);
 * budget must outlive c. Call before other threads use c. */
struct lfs_membudget;
void lfs_render_cache_share(struct lfs_render_cache *c,
			    struct lfs_membudget *budget);
/* Append version doc of id's text to out when the cache holds it:
 * 1, else 0, or -ENOMEM. */
int lfs_render_cache_get(struct lfs_render_cache *c, const struct lfs_cid *doc,
			 const char *id, struct lfs_buf *out);
/* Keep data (malloc'd, len bytes; taken, and freed if not kept) as
 * version doc of id's text. */
void lfs_render_cache_put(struct lfs_render_cache *c, const struct lfs_cid *doc,
			  const char *id, uint8_t *data, size_t len);

/*
 * Note the length of every document committed t put, under the CID the
 * commit gave its block (lfs_txn_op_cid), printed from t's own copy: a
 * document's trip through DAG-CBOR gives back an equal value (dagjson.h),
 * so this is the text lfs_render_doc gives, with no block encoded, read
 * or decrypted. What a save and `ledgerfs import` do once t is committed,
 * so the first stat renders nothing; with cache (may be NULL), keep the
 * texts there too, so the first read renders nothing either. Ops not
 * committed are skipped. -ENOMEM, or the printer's errors.
 */
int lfs_render_note_txn(struct lfs_render_sizes *s,
			struct lfs_render_cache *cache,
			const struct lfs_txn *t);

#endif
