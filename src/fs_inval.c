#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

/*
 * fs_inval: what the kernel keeps (names and attributes of committed
 * documents, folders and ledgers) and how it is told when they change
 * elsewhere: another process's commit, a pull, a rename's moved inodes.
 * See fs_inval.h.
 */

#include "fs_inval.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <fuse_lowlevel.h>

#include "fs_int.h"
#include "fs_node.h"
#include "fsname.h"
#include "index.h"
#include "ledger.h"
#include "log.h"

/*
 * A name (parent, name) or an inode (ino) the kernel is to forget. They
 * are queued and told by the housekeeper, never by the thread that found
 * the change: a FUSE worker may hold the very directory lock the kernel
 * takes to drop a name (a commit in unlink picks up another process's
 * commit), and the sync thread must not wait on the kernel either.
 */
struct lfs_inval {
	uint64_t parent, ino;
	struct lfs_inval *next;
	char name[]; /* "" for an inode */
};

/* Queue a notification; caller holds fs->lock. */
static void queue_locked(struct lfs_fs *fs, uint64_t parent, const char *name,
			 uint64_t ino)
{
	size_t len = strlen(name);
	struct lfs_inval *v = malloc(sizeof(*v) + len + 1);
	if (!v) {
		lfs_warn("out of memory: the kernel may show %s for up to "
			 "%.0f s longer",
			 name, LFS_FS_DOC_TTL);
		return;
	}
	v->parent = parent;
	v->ino = ino;
	memcpy(v->name, name, len + 1);
	v->next = fs->inval;
	fs->inval = v;
}

void lfs_inval_wake(struct lfs_fs *fs)
{
	pthread_mutex_lock(&fs->hk_lock);
	fs->hk_wake = true;
	pthread_cond_signal(&fs->hk_cond);
	pthread_mutex_unlock(&fs->hk_lock);
}

/*
 * Tell the kernel what the queue holds. First the barrier: every request
 * that read attributes before the change has answered (their stale
 * answers are in the kernel and are dropped now), and every later one
 * reads the new state.
 */
void lfs_inval_deliver(struct lfs_fs *fs)
{
	pthread_mutex_lock(&fs->lock);
	struct lfs_inval *v = fs->inval, *fifo = NULL;
	fs->inval = NULL;
	pthread_mutex_unlock(&fs->lock);
	if (!v)
		return;
	while (v) {
		struct lfs_inval *next = v->next;
		v->next = fifo;
		fifo = v;
		v = next;
	}
	pthread_rwlock_wrlock(&fs->cache_lock);
	pthread_rwlock_unlock(&fs->cache_lock);
	for (v = fifo; v; v = fifo) {
		fifo = v->next;
		if (v->name[0])
			fuse_lowlevel_notify_inval_entry(
				fs->se, v->parent, v->name, strlen(v->name));
		else
			fuse_lowlevel_notify_inval_inode(fs->se, v->ino, 0, 0);
		free(v);
	}
}

void lfs_inval_free_all(struct lfs_fs *fs)
{
	while (fs->inval) {
		struct lfs_inval *next = fs->inval->next;
		free(fs->inval);
		fs->inval = next;
	}
}

/*
 * Hold the barrier while answering with n's attributes (when the kernel
 * may keep them and they can change from elsewhere); cache_done after
 * the reply.
 */
bool lfs_cache_hold(struct lfs_fs *fs, const struct lfs_node *n)
{
	if (n->kind != LFS_N_DOC && n->kind != LFS_N_FOLDER &&
	    n->kind != LFS_N_LEDGER)
		return false;
	pthread_rwlock_rdlock(&fs->cache_lock);
	return true;
}

void lfs_cache_done(struct lfs_fs *fs, bool held)
{
	if (held)
		pthread_rwlock_unlock(&fs->cache_lock);
}

struct inval_ctx {
	struct lfs_fs *fs;
	struct lfs_fsl *lg;
	fuse_ino_t dir;
};

static int inval_fn(void *ctx, const struct lfs_index_entry *ea,
		    const struct lfs_index_entry *eb)
{
	struct inval_ctx *c = ctx;
	const struct lfs_index_entry *e = eb ? eb : ea;
	char path[LFS_FSPATH_MAX + 1];
	if (lfs_fsname_path_from_id(path, e->id) < 0)
		return 0;
	char *slash = strrchr(path, '/');
	const char *base = slash ? slash + 1 : path;
	pthread_mutex_lock(&c->fs->lock);
	struct lfs_node *n =
		lfs_node_find_locked(c->fs, LFS_N_DOC, c->lg, path);
	/* Each folder's name in its parent: one may have come or gone, and
	 * the kernel may hold that name as something else (a scratch file
	 * it now moves aside, lfs_node_scratch_aside); and each folder's
	 * attributes (without a local directory, a folder has the ledger's
	 * times, and the kernel keeps them as long as a name). */
	fuse_ino_t up = c->dir;
	for (char *seg = path, *s; up && (s = strchr(seg, '/')); seg = s + 1) {
		*s = '\0';
		queue_locked(c->fs, up, seg, 0);
		struct lfs_node *f =
			lfs_node_find_locked(c->fs, LFS_N_FOLDER, c->lg, path);
		*s = '/';
		up = f ? f->ino : 0;
		if (up)
			queue_locked(c->fs, 0, "", up);
	}
	fuse_ino_t dir = c->dir;
	if (slash) {
		/* Its folder (whose attributes the loop queued). */
		*slash = '\0';
		struct lfs_node *f =
			lfs_node_find_locked(c->fs, LFS_N_FOLDER, c->lg, path);
		dir = f ? f->ino : 0;
		*slash = '/';
	}
	if (dir)
		queue_locked(c->fs, dir, base, 0);
	if (n)
		queue_locked(c->fs, 0, "", n->ino);
	pthread_mutex_unlock(&c->fs->lock);
	return 0;
}

void lfs_inval_moved(struct lfs_fs *fs, struct lfs_fsl *lg,
		     const struct lfs_cid *before, const struct lfs_cid *after)
{
	if (!fs->se)
		return;
	pthread_mutex_lock(&fs->lock);
	struct lfs_node *dir =
		lfs_node_find_locked(fs, LFS_N_LEDGER, lg, lg->name);
	fuse_ino_t dir_ino = dir ? dir->ino : 0;
	pthread_mutex_unlock(&fs->lock);
	struct inval_ctx c = {.fs = fs, .lg = lg, .dir = dir_ino};
	lfs_index_diff(lfs_ledger_index(lg->l), before, after, inval_fn, &c);
	if (dir_ino) {
		pthread_mutex_lock(&fs->lock);
		queue_locked(fs, 0, "", dir_ino);
		pthread_mutex_unlock(&fs->lock);
	}
	lfs_inval_wake(fs);
}
