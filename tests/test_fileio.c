/*
 * Unit tests for fileio's walk (lfs_walk_at, lfs_at_open, lfs_lstat_at):
 * paths longer than PATH_MAX below a root, made on the way or not; no
 * symbolic link followed and no "." or ".." taken, so nothing found is
 * outside the root.
 */
#define _GNU_SOURCE /* O_PATH */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fileio.h"
#include "check_util.h"

/* A component of 250 bytes; DEPTH of them are well past PATH_MAX. */
#define COMP  250
#define DEPTH 24

static char tmp[PATH_MAX];
static int root = -1;

static void setup(void)
{
	lfs_check_mkdtemp(tmp, sizeof(tmp), "test_fileio");
	root = open(tmp, O_PATH | O_DIRECTORY | O_CLOEXEC);
	ck_assert_int_ge(root, 0);
}

/* Remove what is in directory fd dir (by descriptors: paths here are
 * longer than PATH_MAX), then close it. */
static void rm_under(int dir)
{
	int fd = openat(dir, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *d = fd < 0 ? NULL : fdopendir(fd);
	struct dirent *e;
	while (d && (e = readdir(d))) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		if (unlinkat(dir, e->d_name, 0) == 0)
			continue;
		int sub = openat(dir, e->d_name,
				 O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (sub >= 0)
			rm_under(sub);
		unlinkat(dir, e->d_name, AT_REMOVEDIR);
	}
	if (d)
		closedir(d);
	close(dir);
}

static void teardown(void)
{
	rm_under(root);
	rmdir(tmp);
}

/* "ccc.../ccc.../...": depth components of COMP bytes (c varies). */
static char *deep_path(int depth)
{
	char *p = malloc((size_t)depth * (COMP + 1) + 1), *s = p;
	ck_assert_ptr_nonnull(p);
	for (int i = 0; i < depth; i++) {
		memset(s, 'a' + i % 26, COMP);
		s += COMP;
		*s++ = '/';
	}
	s[-1] = '\0';
	return p;
}

START_TEST(test_deep)
{
	char *path = deep_path(DEPTH);
	ck_assert_int_gt(strlen(tmp) + 1 + strlen(path), PATH_MAX);
	struct lfs_at at;
	/* Nothing there yet: the first missing directory says so. */
	ck_assert_int_eq(lfs_at_open(&at, root, path, false), -ENOENT);
	ck_assert_int_eq(at.dir, -1);
	lfs_at_close(&at);
	/* mkdirs makes every directory above the last name. */
	ck_assert_int_eq(lfs_at_open(&at, root, path, true), 0);
	ck_assert_str_eq(at.name, path + (DEPTH - 1) * (COMP + 1));
	int fd = openat(at.dir, at.name, O_WRONLY | O_CREAT | O_EXCL, 0600);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, "hello", 5), 5);
	close(fd);
	lfs_at_close(&at);
	struct stat st;
	ck_assert_int_eq(lfs_lstat_at(root, path, &st), 0);
	ck_assert(S_ISREG(st.st_mode));
	ck_assert_int_eq(st.st_size, 5);
	/* The directory above it, walked to again. */
	path[(DEPTH - 1) * (COMP + 1) - 1] = '\0';
	ck_assert_int_eq(lfs_lstat_at(root, path, &st), 0);
	ck_assert(S_ISDIR(st.st_mode));
	free(path);
}
END_TEST

START_TEST(test_root_itself)
{
	struct lfs_at at;
	ck_assert_int_eq(lfs_at_open(&at, root, "", false), 0);
	ck_assert_str_eq(at.name, ".");
	struct stat st, want;
	ck_assert_int_eq(fstatat(at.dir, at.name, &st, 0), 0);
	ck_assert_int_eq(stat(tmp, &want), 0);
	ck_assert(st.st_ino == want.st_ino && st.st_dev == want.st_dev);
	lfs_at_close(&at);
}
END_TEST

START_TEST(test_bad_names)
{
	static const char *bad[] = {"..",    "a/..", "../x", "a/../b", ".",
				    "a/./b", "a//b", "/a",   "a/"};
	struct lfs_at at;
	ck_assert_int_eq(mkdirat(root, "a", 0700), 0);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		ck_assert_msg(lfs_at_open(&at, root, bad[i], true) == -EINVAL,
			      "%s was taken", bad[i]);
		lfs_at_close(&at);
	}
	/* Nothing was made on the way. */
	struct stat st;
	ck_assert_int_eq(lfs_lstat_at(root, "b", &st), -ENOENT);
}
END_TEST

START_TEST(test_no_links)
{
	/* A link to the parent of the root, and to the root itself: a walk
	 * through either fails, mkdirs or not, and makes nothing there. */
	ck_assert_int_eq(symlinkat("..", root, "up"), 0);
	ck_assert_int_eq(symlinkat(tmp, root, "self"), 0);
	struct lfs_at at;
	ck_assert_int_eq(lfs_at_open(&at, root, "up/x", false), -ENOTDIR);
	ck_assert_int_eq(lfs_at_open(&at, root, "up/x/y", true), -ENOTDIR);
	ck_assert_int_eq(lfs_at_open(&at, root, "self/x", true), -ENOTDIR);
	lfs_at_close(&at);
	struct stat st;
	ck_assert_int_eq(lfs_lstat_at(root, "x", &st), -ENOENT);
	/* The link itself, as the last name, is reachable (to remove or
	 * read it) and is not followed by lstat. */
	ck_assert_int_eq(lfs_lstat_at(root, "up", &st), 0);
	ck_assert(S_ISLNK(st.st_mode));
	/* A file on the way is not a directory either. */
	int fd = openat(root, "f", O_WRONLY | O_CREAT, 0600);
	ck_assert_int_ge(fd, 0);
	close(fd);
	ck_assert_int_eq(lfs_at_open(&at, root, "f/x", true), -ENOTDIR);
	lfs_at_close(&at);
}
END_TEST

static Suite *fileio_suite(void)
{
	Suite *s = suite_create("fileio");
	TCase *tc = tcase_create("walk");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_deep);
	tcase_add_test(tc, test_root_itself);
	tcase_add_test(tc, test_bad_names);
	tcase_add_test(tc, test_no_links);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return lfs_check_run(fileio_suite());
}
