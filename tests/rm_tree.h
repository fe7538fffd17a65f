/*
 * Removing a directory tree, for the suites, the benchmarks and the fuzz
 * targets alike. Header only.
 */
#ifndef LFS_TESTS_RM_TREE_H
#define LFS_TESTS_RM_TREE_H

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Remove path and, for a directory, everything below it (no links
 * followed). Quiet: what cannot be removed stays. */
static inline void lfs_rm_tree(const char *path)
{
	struct stat st;
	if (lstat(path, &st) < 0)
		return;
	if (!S_ISDIR(st.st_mode)) {
		unlink(path);
		return;
	}
	DIR *d = opendir(path);
	struct dirent *e;
	while (d && (e = readdir(d))) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		size_t n = strlen(path) + strlen(e->d_name) + 2;
		char *sub = malloc(n);
		if (!sub)
			break;
		snprintf(sub, n, "%s/%s", path, e->d_name);
		lfs_rm_tree(sub);
		free(sub);
	}
	if (d)
		closedir(d);
	rmdir(path);
}

#endif
