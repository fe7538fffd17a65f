/*
 * What the libFuzzer targets share: CHECK (abort, so libFuzzer reports the
 * input, when a property fails) and a private scratch directory for
 * targets that drive code reading files (in /dev/shm when it is writable,
 * removed at exit).
 */
#ifndef LFS_FUZZ_H
#define LFS_FUZZ_H

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../rm_tree.h"

#define CHECK(cond)                                                            \
	do {                                                                   \
		if (!(cond)) {                                                 \
			fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, \
				__LINE__, #cond);                              \
			abort();                                               \
		}                                                              \
	} while (0)

static char fuzz_dir[64];

/* Remove the files of fuzz_dir/sub (sub "." for fuzz_dir itself). */
static inline void fuzz_dir_empty(const char *sub)
{
	char path[128];
	snprintf(path, sizeof(path), "%s/%s", fuzz_dir, sub);
	DIR *d = opendir(path);
	if (!d)
		return;
	struct dirent *de;
	while ((de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		char f[512];
		snprintf(f, sizeof(f), "%s/%s", path, de->d_name);
		unlink(f);
	}
	closedir(d);
}

/* A block store's directory: empty car/ and head/, then the rest. */
static inline void fuzz_dir_clear(void)
{
	fuzz_dir_empty("car");
	fuzz_dir_empty("head");
	fuzz_dir_empty(".");
}

static inline void fuzz_dir_remove(void)
{
	lfs_rm_tree(fuzz_dir);
}

/* Make fuzz_dir ("/dev/shm/fuzz-NAME-PID") once; removed at exit. */
static inline void fuzz_dir_init(const char *name)
{
	if (fuzz_dir[0])
		return;
	const char *base = access("/dev/shm", W_OK) ? "/tmp" : "/dev/shm";
	snprintf(fuzz_dir, sizeof(fuzz_dir), "%s/fuzz-%s-%d", base, name,
		 (int)getpid());
	mkdir(fuzz_dir, 0700);
	atexit(fuzz_dir_remove);
}

#endif
