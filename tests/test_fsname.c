/* Tests of document file names: escaping, the one spelling, scratch names. */
#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "fsname.h"

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

int main(void)
{
	Suite *s = suite_create("fsname");
	TCase *t = tcase_create("core");
	tcase_add_test(t, escapes);
	tcase_add_test(t, scratch_names);
	tcase_add_test(t, too_long);
	suite_add_tcase(s, t);
	SRunner *r = srunner_create(s);
	srunner_run_all(r, CK_NORMAL);
	int failed = srunner_ntests_failed(r);
	srunner_free(r);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
