/*
 * fs_setattr: what chmod, chown, touch and truncate do to each kind of
 * node. Scratch files and folders are their local files; a document's or
 * a ledger's mode, owner, group and mtime are kept on this machine
 * (fs_attr.h), and a document's size goes through its save (fs_save.h);
 * the root and the control files are fixed (EPERM); snapshots are
 * read-only (EROFS). No FUSE types: fs.c maps its flags to these.
 */
#ifndef LFS_FS_SETATTR_H
#define LFS_FS_SETATTR_H

#include <stdbool.h>
#include <sys/stat.h>

struct lfs_fs;
struct lfs_node;

enum {
	LFS_SET_SIZE = 1u << 0,
	LFS_SET_MODE = 1u << 1,
	LFS_SET_UID = 1u << 2,
	LFS_SET_GID = 1u << 3,
	LFS_SET_ATIME = 1u << 4, /* to attr->st_atim */
	LFS_SET_MTIME = 1u << 5, /* to attr->st_mtim */
	LFS_SET_ATIME_NOW = 1u << 6,
	LFS_SET_MTIME_NOW = 1u << 7,
};

/*
 * Set what `set` names of attr on n. writer: the caller holds n open for
 * writing (a truncate resizes its buffer, not the committed version).
 * 0, or a negative errno (the save's for a size).
 */
int lfs_setattr(struct lfs_fs *fs, struct lfs_node *n, const struct stat *attr,
		unsigned set, bool writer);

#endif
