/*
 * Tests of the CID map: set, overwrite and get against a model array,
 * through several growths, with keys that collide in the probed bytes or
 * differ only by codec.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cidmap.h"
#include "check_util.h"
#include "cid_keys.h"

START_TEST(empty_map)
{
	struct lfs_cidmap m;
	lfs_cidmap_init(&m);
	struct lfs_cid c;
	lfs_cid_of(&c, LFS_CODEC_RAW, "x", 1);
	uint64_t v = 7;
	ck_assert(!lfs_cidmap_get(&m, &c, &v));
	ck_assert(!lfs_cidmap_get(&m, &c, NULL));
	ck_assert_uint_eq(v, 7);
	lfs_cidmap_release(&m);
	lfs_cidmap_release(&m); /* released twice is harmless */
}
END_TEST

START_TEST(model)
{
	enum { N = 2000 };
	static struct lfs_cid keys[N];
	static uint64_t want[N];
	static bool present[N];
	lfs_test_cid_keys(keys, N);
	struct lfs_cidmap m;
	lfs_cidmap_init(&m);
	srand(11);
	size_t count = 0;
	for (int step = 0; step < 4 * N; step++) {
		int k = step < N ? step : rand() % N;
		uint64_t v = (uint64_t)rand() << 20 | (uint64_t)step;
		ck_assert_int_eq(lfs_cidmap_set(&m, &keys[k], v), 0);
		count += !present[k];
		present[k] = true;
		want[k] = v;
		if (step % 1000 == 0 || step == 4 * N - 1) {
			ck_assert_uint_eq(m.count, count);
			for (int i = 0; i < N; i++) {
				uint64_t got = 0;
				ck_assert(lfs_cidmap_get(&m, &keys[i], &got) ==
					  present[i]);
				if (present[i])
					ck_assert_uint_eq(got, want[i]);
			}
		}
	}
	struct lfs_cid other;
	lfs_cid_of(&other, LFS_CODEC_RAW, "not a key", 9);
	ck_assert(!lfs_cidmap_get(&m, &other, NULL));
	lfs_cidmap_release(&m);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("cidmap");
	TCase *t = tcase_create("core");
	tcase_set_timeout(t, 120);
	tcase_add_test(t, empty_map);
	tcase_add_test(t, model);
	suite_add_tcase(s, t);
	return lfs_check_run(s);
}
