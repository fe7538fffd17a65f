/* Tests of document file names: escaping, the one spelling, scratch names. */
#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "fsname.h"
#include "check_util.h"

static void round_trip(const char *id, const char *want)
{
	char name[LFS_FSNAME_MAX + 1], back[1100];
	ck_assert_int_eq(lfs_fsname_from_id(name, id), (int)strlen(want));
	ck_assert_str_eq(name, want);
	ck_assert(lfs_fsname_to_id(back, sizeof(back), name));
	ck_assert_str_eq(back, id);
}

START_TEST(escapes)
{
	round_trip("milk", "milk.json");
	round_trip("a/b", "a%2Fb.json");
	round_trip(".hidden", "%2Ehidden.json");
	round_trip("50%", "50%25.json");
	round_trip("ünïcödé", "ünïcödé.json");
	round_trip(".", "%2E.json");
	round_trip("..", "%2E..json");
	round_trip("x.json", "x.json.json");
	round_trip("%41", "%2541.json");
	round_trip("a.b", "a.b.json");
}
END_TEST

START_TEST(scratch_names)
{
	static const char *names[] = {".json",       "x.swp",       "4913",
				      "x.json~",     ".x.json.swp", "#x.json#",
				      ".#x.json",    "%41.json",    "%2f.json",
				      "%2.json",     "%.json",      ".x.json",
				      "%00.json",    "x.JSON",      "sedAbC123",
				      "%2E%2E.json", "x%2Ey.json"};
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		char id[100];
		ck_assert_msg(!lfs_fsname_to_id(id, sizeof(id), names[i]),
			      "%s taken as a document", names[i]);
	}
}
END_TEST

START_TEST(too_long)
{
	char id[400], name[LFS_FSNAME_MAX + 1];
	memset(id, 'a', 250);
	id[250] = '\0';
	ck_assert_int_eq(lfs_fsname_from_id(name, id), 255);
	id[251] = '\0';
	id[250] = 'a';
	ck_assert_int_eq(lfs_fsname_from_id(name, id), -ENAMETOOLONG);
	memset(id, '/', 90);
	id[90] = '\0';
	ck_assert_int_eq(lfs_fsname_from_id(name, id), -ENAMETOOLONG);
	/* A name that decodes into a too-small buffer is refused. */
	char small[4];
	ck_assert(!lfs_fsname_to_id(small, sizeof(small), "abcd.json"));
}
END_TEST

static void path_trip(const char *id, const char *want)
{
	char path[LFS_FSPATH_MAX + 1], back[1100];
	ck_assert_int_eq(lfs_fsname_path_from_id(path, id), (int)strlen(want));
	ck_assert_str_eq(path, want);
	ck_assert_msg(lfs_fsname_path_to_id(back, sizeof(back), path),
		      "%s not taken back", path);
	ck_assert_str_eq(back, id);
}

START_TEST(paths)
{
	path_trip("milk", "milk.json");
	path_trip("notes/2026/a", "notes/2026/a.json");
	path_trip("a//b", "a%2F%2Fb.json");
	path_trip("a///b", "a%2F%2F%2Fb.json");
	path_trip("/a", "%2Fa.json");
	path_trip("a/", "a%2F.json");
	path_trip("/", "%2F.json");
	path_trip("a/./b", "a/%2E/b.json");
	path_trip("a/../b", "a/%2E./b.json");
	path_trip("a/.git/b", "a/%2Egit/b.json");
	path_trip(".x/y", "%2Ex/y.json");
	path_trip("x.json/y", "x%2Ejson/y.json");
	path_trip(".json/y", "%2Ejson/y.json");
	path_trip("x.json", "x.json.json");
	path_trip("a/x.json", "a/x.json.json");
	path_trip("50%/x", "50%25/x.json");
	path_trip("a//b/c", "a%2F%2Fb/c.json");
	path_trip("a/b//c", "a/b%2F%2Fc.json");
	path_trip("a/b/", "a/b%2F.json");
	path_trip("ünï/cödé", "ünï/cödé.json");
	path_trip("a.b/c.d", "a.b/c.d.json");
	path_trip("./x", "%2E/x.json");
	path_trip("/a/x", "%2Fa/x.json");
}
END_TEST

START_TEST(path_scratch)
{
	static const char *scratch[] = {
		".git/x.json", "a/.git/x.json", "a//b.json",     "a/.json",
		"a/%41.json",  "a%2Fb.json",    "x.json/y.json", "a/b",
		"a/%2f.json",  "a/b.json~",     "a/%.json",      "/a.json",
		"a/.x.json",   "a/%00.json"};
	for (size_t i = 0; i < sizeof(scratch) / sizeof(scratch[0]); i++) {
		char id[100];
		ck_assert_msg(
			!lfs_fsname_path_to_id(id, sizeof(id), scratch[i]),
			"%s taken as a document", scratch[i]);
	}
}
END_TEST

START_TEST(folders)
{
	char p[200];
	ck_assert(lfs_fsname_folder_to_prefix(p, sizeof(p), "notes"));
	ck_assert_str_eq(p, "notes");
	ck_assert(lfs_fsname_folder_to_prefix(p, sizeof(p), "notes/2026"));
	ck_assert_str_eq(p, "notes/2026");
	ck_assert(lfs_fsname_folder_to_prefix(p, sizeof(p), "x%2Ejson"));
	ck_assert_str_eq(p, "x.json");
	ck_assert(lfs_fsname_folder_to_prefix(p, sizeof(p), "a/%2Egit"));
	ck_assert_str_eq(p, "a/.git");
	ck_assert(lfs_fsname_folder_to_prefix(p, sizeof(p), "50%25"));
	ck_assert_str_eq(p, "50%");
	static const char * not [] = {".git", "a/.git", "x.json", "a/b.json",
				      "a%2F", "a/%2F",  "",       "a//b",
				      "%41",  "a/.",    "a/..",   ".cache/x"};
	for (size_t i = 0; i < sizeof(not ) / sizeof(not [0]); i++)
		ck_assert_msg(
			!lfs_fsname_folder_to_prefix(p, sizeof(p), not [i]),
			"%s taken as a folder", not [i]);
}
END_TEST

START_TEST(path_too_long)
{
	char id[1100], path[LFS_FSPATH_MAX + 1];
	/* Each segment has its own 255 bytes. */
	memset(id, 'a', 1000);
	for (size_t i = 200; i < 1000; i += 201)
		id[i] = '/';
	id[1000] = '\0';
	ck_assert_int_gt(lfs_fsname_path_from_id(path, id), 0);
	ck_assert(lfs_fsname_path_to_id(id, sizeof(id), path));
	memset(id, 'a', 400);
	id[100] = '/';
	id[400] = '\0';
	ck_assert_int_eq(lfs_fsname_path_from_id(path, id), -ENAMETOOLONG);
	/* The widest id: 1024 escaped bytes. */
	memset(id, '%', 1024);
	id[1024] = '\0';
	ck_assert_int_eq(lfs_fsname_path_from_id(path, id), -ENAMETOOLONG);
	for (size_t i = 50; i < 1024; i += 51)
		id[i] = '/';
	ck_assert_int_gt(lfs_fsname_path_from_id(path, id), 3000);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("fsname");
	TCase *t = tcase_create("core");
	tcase_add_test(t, escapes);
	tcase_add_test(t, scratch_names);
	tcase_add_test(t, too_long);
	tcase_add_test(t, paths);
	tcase_add_test(t, path_scratch);
	tcase_add_test(t, folders);
	tcase_add_test(t, path_too_long);
	suite_add_tcase(s, t);
	return lfs_check_run(s);
}
