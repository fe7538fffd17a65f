/*
 * fs_save: carrying out the save policy (fs_policy.h) on a mounted
 * ledger — the write buffers of open documents, drafts, commits, and what
 * unlink and rename do to documents and scratch files.
 *
 * Write buffers. Writes to a document are buffered per node (shared by
 * every open file of it, capped at LFS_FS_TEXT_MAX: -EFBIG beyond) and
 * saved on flush (close) or fsync when the buffer changed since the last
 * save. A refused save answers -EINVAL at every flush until the content
 * changes.
 *
 * Drafts. Bytes that are not committed (refused, or blank) are kept as a
 * draft: a file HOME/drafts/<ledger>/<name> that shadows the committed
 * version, so the user's bytes stay readable at their path; a commit of
 * that name removes it.
 *
 * No FUSE types: these are plain functions of the fs state, also driven
 * by tests/test_save.c without a mount. Locks (fs_int.h): called with no
 * fs lock held.
 */
#ifndef LFS_FS_SAVE_H
#define LFS_FS_SAVE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fs_int.h"
#include "fs_ledger.h"
#include "fs_node.h"
#include "fs_policy.h"

/*
 * Save the bytes of document file `name` of lg: commit them when they are
 * a document, else keep them as a draft and record why. 0 when committed
 * or blank; -EINVAL (or -EFBIG: too large a document) when refused, the
 * draft kept; the ledger's error when it is not open. *out_doc (may be
 * NULL): the version saved, or a CID of codec 0 when nothing was.
 */
int lfs_save_content(struct lfs_fs *fs, struct lfs_fsl *lg, const char *name,
		     const uint8_t *data, size_t len, struct lfs_cid *out_doc);

/* ---- the write buffer of an open document ---- */

/* Become a writer of document n: its buffer is made (from the current
 * content, or empty with truncate) by the first writer and shared. Holds n
 * (lfs_node_ref) for the writer. */
int lfs_save_writer_ref(struct lfs_fs *fs, struct lfs_node *n, bool truncate);
/* Write size bytes at off into n's buffer (-EFBIG past the limit). */
int lfs_save_write(struct lfs_fs *fs, struct lfs_node *n, const void *buf,
		   size_t size, size_t off);
/* Copy up to size bytes at off of n's buffer into a malloc'd *out. */
int lfs_save_read(struct lfs_fs *fs, struct lfs_node *n, size_t size,
		  size_t off, char **out, size_t *out_len);
/* Truncate or extend (with zeros) n's buffer to size. */
int lfs_save_resize(struct lfs_fs *fs, struct lfs_node *n, size_t size);
/* The buffer changed without a write (a new file): save it at close. */
void lfs_save_touch(struct lfs_fs *fs, struct lfs_node *n);
/* Save n's buffer if it changed since the last save (flush, fsync). */
int lfs_save_flush(struct lfs_fs *fs, struct lfs_node *n);
/* A writer closes: save, and drop the buffer with the last writer (the
 * caller then drops the writer's hold on n). */
void lfs_save_writer_unref(struct lfs_fs *fs, struct lfs_node *n);

/* truncate(2) on a document not open for writing: save the result now. */
int lfs_save_truncate(struct lfs_fs *fs, struct lfs_node *n, size_t size);

/* ---- the namespace ---- */

/* Unlink `name` of lg (lfs_policy_unlink): a document's deletion is one
 * commit, a scratch file is removed. */
int lfs_save_unlink(struct lfs_fs *fs, struct lfs_fsl *lg, const char *name);

/*
 * Rename `from` to `to` within lg (lfs_policy_rename), noreplace: fail
 * with -EEXIST when `to` exists. The node of `from` takes the new name.
 */
int lfs_save_rename(struct lfs_fs *fs, struct lfs_fsl *lg, const char *from,
		    const char *to, bool noreplace);

/*
 * Rename directory `from` (a folder when folder, else a scratch
 * directory) to `to` within lg; the caller checked that `to` is free or an
 * empty directory. Every document under a folder moves in one commit
 * (their ids follow their paths), then the local directories (scratch,
 * drafts) and the nodes. -EXDEV when `to` is not the same kind of
 * directory (a folder's name vs a scratch one's: mv copies instead).
 */
int lfs_save_rename_dir(struct lfs_fs *fs, struct lfs_fsl *lg, const char *from,
			const char *to, bool folder);

#endif
