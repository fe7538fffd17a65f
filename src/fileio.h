/*
 * fileio: small file-system helpers every layer needs. Errors are 0 or a
 * negative errno. Thread-safe (no state).
 */
#ifndef LFS_FILEIO_H
#define LFS_FILEIO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

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
