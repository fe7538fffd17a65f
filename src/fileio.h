/*
 * fileio: small file-system helpers every layer needs. Errors are 0 or a
 * negative errno. Thread-safe (no state).
 */
#ifndef LFS_FILEIO_H
#define LFS_FILEIO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

/*
 * Make a directory and any missing parents (mode 0700), like `mkdir -p`.
 * Returns 0 (also when it exists), -ENOTDIR when something that is not a
 * directory is in the way, or another negative errno.
 */
int lfs_mkdirs(const char *path);

/* The same for the directory that will hold the file at path. */
int lfs_mkdirs_for(const char *path);

/*
 * Resolve path, relative to the directory open as root, for a *at call
 * (openat, mkdirat, unlinkat, renameat, fstatat...): *out_dir gets a new
 * descriptor (O_PATH, close it) of the directory holding the last name
 * and *out_name points at that name inside path. No symbolic link is
 * followed on the way and no name may be empty, "." or "..", so what is
 * found stays under root however long path is (any path of up to
 * PATH_MAX bytes from wherever root is). path "" is root itself, with
 * *out_name ".". With mkdirs, missing directories on the way are made
 * (mode 0700). Returns 0, -ENOENT or -ENOTDIR (a directory on the way is
 * missing, or is not one: a link is not), -EINVAL (an empty, "." or ".."
 * name), -ENAMETOOLONG, or another negative errno; *out_dir is -1 then.
 */
int lfs_walk_at(int *out_dir, const char **out_name, int root, const char *path,
		bool mkdirs);

/*
 * A name ready for *at calls: lfs_walk_at's answer with its own copy of
 * the path, so the caller's may go. lfs_at_open: 0 or lfs_walk_at's
 * errors (-ENOMEM too); on failure out->dir is -1 and nothing needs
 * closing, though lfs_at_close may still be called. A path of one name
 * costs no system call: dir is root itself then.
 */
struct lfs_at {
	int dir;          /* the directory holding name (O_PATH) */
	const char *name; /* inside path */
	char *path;
	bool own; /* dir is ours to close (not root) */
};
int lfs_at_open(struct lfs_at *out, int root, const char *path, bool mkdirs);
void lfs_at_close(struct lfs_at *at);

/* lstat of path under root (lfs_walk_at): 0 or a negative errno. */
int lfs_lstat_at(int root, const char *path, struct stat *st);
/* Is path under root (lfs_walk_at) a directory itself, not a link to one? */
bool lfs_is_dir_at(int root, const char *path);

/* Write all len bytes to fd, retrying short writes and EINTR. */
int lfs_write_all(int fd, const void *p, size_t len);

/* Read len bytes of fd at off: 0, 1 when the file ends first, or a
 * negative errno. */
int lfs_pread_all(int fd, void *buf, size_t len, uint64_t off);

/*
 * Read what is left of fd into a new malloc'd buffer (*out, NUL-terminated
 * after the *out_len bytes, freed by the caller). Returns 0, -EFBIG when
 * there are more than max bytes, -EISDIR for a directory, or a negative
 * errno; *out is NULL on failure.
 */
int lfs_read_fd(int fd, size_t max, uint8_t **out, size_t *out_len);

/* The same for the file at path. */
int lfs_read_file(const char *path, size_t max, uint8_t **out, size_t *out_len);

/*
 * Replace the file at path atomically: write a temporary ".tmp-NAME-XXXXXX"
 * (NAME cut short to stay within NAME_MAX) in the same directory with the
 * given mode and rename it over path, so a reader sees the old bytes or
 * the new, never a part. With durable, the temporary is fsynced before the
 * rename and the directory after it, so after a crash path holds one or
 * the other; without, that waits for the caller's next sync (syncfs).
 * Returns 0 or a negative errno; on failure path is untouched and the
 * temporary is gone, except when only the directory's fsync failed (path
 * holds the new bytes, which a crash may undo). Listings that skip ".tmp-"
 * names never show the temporary.
 */
int lfs_write_atomic(const char *path, const void *p, size_t len, mode_t mode,
		     bool durable);

#endif
