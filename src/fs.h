/*
 * fs: the FUSE file system (libfuse3 low-level API, multi-threaded).
 *
 *   /                              one directory per ledger; mkdir creates
 *   /<ledger>/<id>.json            a document (fsname.h escapes the id)
 *   /<ledger>/<other name>         a scratch file: local only, never committed
 *   /<ledger>/.snapshots/<event>/  the ledger as of every clock event (r/o)
 *   /<ledger>/.snapshots/by-time/<ISO time> -> ../<event>
 *   /<ledger>/.ledgerfs/           status, errors, heads, changes, conflicts
 *
 * Saving. Writes to a document are buffered per inode (shared by every open
 * file of it, capped at LFS_FS_TEXT_MAX: EFBIG beyond) and committed as one
 * transaction on flush (close) or fsync when the buffer changed. fsync also
 * makes the commit durable. The file name is the identity: an "_id" in the
 * content is optional and, when it names another document (a copied
 * file), replaced (fs_policy.h). Content that is not a JSON object (or
 * whose "_id" is not a string) is kept as a draft (a local file that
 * shadows the document, so the user's bytes stay readable), nothing is
 * committed, and flush/fsync answer EINVAL until the content changes; the
 * reason goes to .ledgerfs/errors and the log. An empty file is a draft
 * without error.
 *
 * Editors. Renaming a scratch file over a document commits its content.
 * Renaming a document to a scratch name (vim's and emacs's backup) hides
 * the document and commits its deletion only if no new version is saved
 * within LFS_FS_GRACE_MS, so one save is one commit. Scratch files live as
 * real files in HOME/scratch/<ledger>/, drafts in HOME/drafts/<ledger>/.
 *
 * Caching. Document attributes are never cached by the kernel (their size
 * is the rendered JSON's, which a commit may change); directory entries
 * are, for a second, and are invalidated when a change comes from
 * elsewhere (lfs_fs_notify_changed).
 *
 * Threads: every operation may run on any libfuse worker thread; the
 * housekeeping thread commits expired deletions and picks up other
 * processes' commits. The modules behind this header, their threads and
 * their lock order: fs_int.h and docs/HACKING.md.
 *
 * FUSE_USE_VERSION comes from configure (in FUSE_CFLAGS), with the oldest
 * libfuse it accepts.
 */
#ifndef LFS_FS_H
#define LFS_FS_H

#include <fuse_lowlevel.h>

#include "fs_policy.h" /* LFS_FS_GRACE_MS, LFS_FS_TEXT_MAX */
#include "home.h"
#include "sync.h"

struct lfs_fs;

/* Create the file system over home (borrowed; must outlive the fs). */
int lfs_fs_new(struct lfs_fs **out, struct lfs_home *home);

/* Commit pending deletions, make everything durable, close the ledgers. */
void lfs_fs_free(struct lfs_fs *fs);

/* Commit pending deletions now and make every commit durable. */
void lfs_fs_flush(struct lfs_fs *fs);

/* The operation table to pass to fuse_session_new() with fs as userdata. */
const struct fuse_lowlevel_ops *lfs_fs_ops(void);

/* Tell the fs its session (for cache invalidations) and start its thread. */
int lfs_fs_start(struct lfs_fs *fs, struct fuse_session *se);

/*
 * Replication: the hooks a struct lfs_sync needs to reach this fs's ledgers
 * (remote changes then invalidate exactly the kernel's cached names and
 * files that changed, and land in .ledgerfs/changes), and the sync to kick
 * after local commits and to report in .ledgerfs/status. .ledgerfs/wait
 * blocks its reader until everything committed before is on the remote.
 */
struct lfs_sync_hooks lfs_fs_sync_hooks(struct lfs_fs *fs);
void lfs_fs_set_sync(struct lfs_fs *fs, struct lfs_sync *sync);

#endif
