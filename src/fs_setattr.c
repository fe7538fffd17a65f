#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "fs_setattr.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "arena.h"
#include "buf.h"
#include "fileio.h"
#include "fs_attr.h"
#include "fs_int.h"
#include "fs_node.h"
#include "fs_policy.h"
#include "fs_save.h"
#include "fs_view.h"

/* Truncate the regular file name in dir (never through a link). */
static int truncate_at(int dir, const char *name, off_t size)
{
	int fd = openat(dir, name,
			O_WRONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	int rc = fd < 0 ? -errno : ftruncate(fd, size) ? -errno : 0;
	if (fd >= 0)
		close(fd);
	return rc;
}

static int set_scratch_attr(struct lfs_fs *fs, struct lfs_node *n,
			    const struct stat *attr, unsigned to_set)
{
	struct lfs_at at;
	int rc = lfs_node_at(&at, fs, n, false);
	if (rc)
		return rc;
	if (to_set & LFS_SET_SIZE)
		rc = truncate_at(at.dir, at.name, attr->st_size);
	if (!rc && (to_set & LFS_SET_MODE) &&
	    fchmodat(at.dir, at.name, attr->st_mode & 07777,
		     AT_SYMLINK_NOFOLLOW))
		rc = -errno;
	if (!rc && (to_set & (LFS_SET_UID | LFS_SET_GID)) &&
	    fchownat(at.dir, at.name,
		     to_set & LFS_SET_UID ? attr->st_uid : (uid_t)-1,
		     to_set & LFS_SET_GID ? attr->st_gid : (gid_t)-1,
		     AT_SYMLINK_NOFOLLOW))
		rc = -errno;
	if (!rc && (to_set & (LFS_SET_ATIME | LFS_SET_MTIME |
			      LFS_SET_ATIME_NOW | LFS_SET_MTIME_NOW))) {
		struct timespec ts[2];
		ts[0].tv_nsec = ts[1].tv_nsec = UTIME_OMIT;
		if (to_set & LFS_SET_ATIME_NOW)
			ts[0].tv_nsec = UTIME_NOW;
		else if (to_set & LFS_SET_ATIME)
			ts[0] = attr->st_atim;
		if (to_set & LFS_SET_MTIME_NOW)
			ts[1].tv_nsec = UTIME_NOW;
		else if (to_set & LFS_SET_MTIME)
			ts[1] = attr->st_mtim;
		if (utimensat(at.dir, at.name, ts, AT_SYMLINK_NOFOLLOW))
			rc = -errno;
	}
	lfs_at_close(&at);
	return rc;
}

/* A folder's mode, owner and times are its local directory's, made when
 * first set. */
static int set_folder_attr(struct lfs_fs *fs, struct lfs_node *n,
			   const struct stat *attr, unsigned to_set)
{
	struct lfs_at at;
	int rc = lfs_node_at(&at, fs, n, true);
	if (!rc && mkdirat(at.dir, at.name, 0755) && errno != EEXIST)
		rc = -errno;
	lfs_at_close(&at);
	return rc ? rc : set_scratch_attr(fs, n, attr, to_set & ~LFS_SET_SIZE);
}

static int64_t ts_us(const struct timespec *ts)
{
	return (int64_t)ts->tv_sec * 1000000 + ts->tv_nsec / 1000;
}

static int set_local_attr(struct lfs_fs *fs, struct lfs_node *n,
			  const struct stat *attr, unsigned to_set)
{
	struct lfs_attr a = {0};
	if (to_set & LFS_SET_MODE) {
		a.set |= LFS_ATTR_MODE;
		a.mode = attr->st_mode & 07777;
	}
	if (to_set & LFS_SET_UID) {
		a.set |= LFS_ATTR_UID;
		a.uid = attr->st_uid;
	}
	if (to_set & LFS_SET_GID) {
		a.set |= LFS_ATTR_GID;
		a.gid = attr->st_gid;
	}
	if (to_set & (LFS_SET_MTIME | LFS_SET_MTIME_NOW)) {
		a.set |= LFS_ATTR_MTIME;
		a.mtime_us = to_set & LFS_SET_MTIME_NOW ? lfs_fs_now_ms() * 1000
							: ts_us(&attr->st_mtim);
	}
	if (!a.set)
		return 0;
	if (n->kind == LFS_N_LEDGER)
		return lfs_attr_set(fs, n->lg, "", &a);
	if (a.set & LFS_ATTR_MTIME) {
		/* The time is the current version's; a draft has a file of
		 * its own to hold it. */
		struct lfs_buf b;
		struct lfs_docstate ds;
		struct lfs_arena ar;
		lfs_buf_init(&b, LFS_FS_TEXT_MAX * 4);
		lfs_arena_init(&ar, 0);
		int rc = lfs_view_doc(fs, n, &b, &ds, &ar);
		if (!rc && ds.has_entry)
			a.version = ds.entry.cur.doc;
		lfs_arena_release(&ar);
		lfs_buf_release(&b);
		if (rc)
			return rc;
		if (!ds.has_entry) {
			char *p = lfs_fs_path(n->lg->drafts, n->name);
			struct timespec t[2] = {{.tv_nsec = UTIME_OMIT},
						{.tv_nsec = UTIME_NOW}};
			if (to_set & LFS_SET_MTIME)
				t[1] = attr->st_mtim;
			rc = !p ? -ENOMEM
			     : utimensat(AT_FDCWD, p, t, AT_SYMLINK_NOFOLLOW)
				     ? -errno
				     : 0;
			free(p);
			/* No draft file: an open write buffer, as new as now.
			 */
			if (rc && rc != -ENOENT)
				return rc;
			a.set &= ~(unsigned)LFS_ATTR_MTIME;
		}
	}
	return a.set ? lfs_attr_set(fs, n->lg, n->name, &a) : 0;
}

int lfs_setattr(struct lfs_fs *fs, struct lfs_node *n, const struct stat *attr,
		unsigned set, bool writer)
{
	int rc = 0;
	if (lfs_node_read_only(n->kind))
		rc = -EROFS;
	else if (n->kind == LFS_N_SCRATCH)
		rc = set_scratch_attr(fs, n, attr, set);
	else if (n->kind == LFS_N_FOLDER)
		rc = set_folder_attr(fs, n, attr, set);
	else if (n->kind != LFS_N_DOC && n->kind != LFS_N_LEDGER &&
		 (set & ~(LFS_SET_ATIME | LFS_SET_ATIME_NOW)))
		rc = -EPERM; /* the root, the control files: fixed */
	if (!rc && n->kind == LFS_N_DOC && (set & LFS_SET_SIZE))
		rc = writer ? lfs_save_resize(fs, n, (size_t)attr->st_size)
			    : lfs_save_truncate(fs, n, (size_t)attr->st_size);
	/* Mode, owner, group and mtime of documents and ledgers are kept on
	 * this machine (fs_attr.h); atime is not kept (reads show mtime). */
	if (!rc && (n->kind == LFS_N_DOC || n->kind == LFS_N_LEDGER))
		rc = set_local_attr(fs, n, attr, set);
	return rc;
}
