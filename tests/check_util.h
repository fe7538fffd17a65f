/*
 * What the Check suites share: a private temporary directory for a test
 * (under $TMPDIR, else /tmp), removing a tree, the seed of randomized
 * suites, and running a suite.
 * Header only; each suite includes it once.
 */
#ifndef LFS_CHECK_UTIL_H
#define LFS_CHECK_UTIL_H

#include <check.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "rm_tree.h"

/* Make a new directory "$TMPDIR/<name>.XXXXXX" into out (size n). */
static inline void lfs_check_mkdtemp(char *out, size_t n, const char *name)
{
	const char *t = getenv("TMPDIR");
	snprintf(out, n, "%s/%s.XXXXXX", t && *t ? t : "/tmp", name);
	ck_assert_ptr_nonnull(mkdtemp(out));
}

/* The base seed of a randomized suite: $LFS_TEST_SEED (a replay), else
 * the time. Suites print the seed of every random case they run. */
static inline unsigned lfs_check_seed(void)
{
	const char *env = getenv("LFS_TEST_SEED");
	return env ? (unsigned)strtoul(env, NULL, 10) : (unsigned)time(NULL);
}

/* Run suite s (and free it): EXIT_SUCCESS when every test passed. */
static inline int lfs_check_run(Suite *s)
{
	SRunner *r = srunner_create(s);
	srunner_run_all(r, CK_NORMAL);
	int failed = srunner_ntests_failed(r);
	srunner_free(r);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

#endif
