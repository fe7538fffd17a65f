/*
 * mkdirs: make a directory and any missing parents (mode 0700), like
 * `mkdir -p`. Returns 0 (also when it exists), -ENOTDIR when something
 * that is not a directory is in the way, or another negative errno.
 */
#ifndef LFS_MKDIRS_H
#define LFS_MKDIRS_H

int lfs_mkdirs(const char *path);

/* The same for the directory that will hold the file at path. */
int lfs_mkdirs_for(const char *path);

#endif
