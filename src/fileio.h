/*
 * fileio: small file-system helpers every layer needs. Errors are 0 or a
 * negative errno. Thread-safe (no state).
 */
#ifndef LFS_FILEIO_H
#define LFS_FILEIO_H

#include <stddef.h>

/*
 * Make a directory and any missing parents (mode 0700), like `mkdir -p`.
 * Returns 0 (also when it exists), -ENOTDIR when something that is not a
 * directory is in the way, or another negative errno.
 */
int lfs_mkdirs(const char *path);

/* The same for the directory that will hold the file at path. */
int lfs_mkdirs_for(const char *path);

/* Write all len bytes to fd, retrying short writes and EINTR. */
int lfs_write_all(int fd, const void *p, size_t len);

#endif
