/*
 * fs_inval: the kernel's caches of the mount, kept exact.
 *
 * The kernel keeps committed documents', folders' and ledgers' names and
 * attributes (for fs->doc_ttl). When one changes elsewhere (another
 * process's commit on the home, a pull, a rename's moved inodes), the
 * change is queued here and told by the housekeeper thread, never by the
 * thread that found it: a FUSE worker may hold the very directory lock
 * the kernel takes to drop a name, and the sync thread must not wait on
 * the kernel. Before telling, a barrier (fs->cache_lock, first in the
 * lock order, docs/HACKING.md) lets every reply that read the old state
 * land first, so no stale answer outlives the notification.
 *
 * Knows libfuse (the notify calls), as fs.c does.
 */
#ifndef LFS_FS_INVAL_H
#define LFS_FS_INVAL_H

#include <stdbool.h>

#include "cid.h"

struct lfs_fs;
struct lfs_fsl;
struct lfs_node;

/*
 * fs->moved: lg went from root before to after elsewhere; queue exactly
 * the names and inodes whose entries changed and wake the housekeeper.
 * Takes fs->lock; call with no lock held.
 */
void lfs_inval_moved(struct lfs_fs *fs, struct lfs_fsl *lg,
		     const struct lfs_cid *before, const struct lfs_cid *after);

/* Wake the housekeeper to tell what is queued. */
void lfs_inval_wake(struct lfs_fs *fs);

/* The housekeeper: the barrier, then tell the kernel what is queued. */
void lfs_inval_deliver(struct lfs_fs *fs);

/* Drop what is queued (the mount is going). */
void lfs_inval_free_all(struct lfs_fs *fs);

/*
 * Hold the barrier while answering with n's attributes, when the kernel
 * may keep them and they can change from elsewhere; lfs_cache_done(fs,
 * held) after the reply.
 */
bool lfs_cache_hold(struct lfs_fs *fs, const struct lfs_node *n);
void lfs_cache_done(struct lfs_fs *fs, bool held);

#endif
