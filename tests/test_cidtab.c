/*
 * Tests of the CID table: records added in random order to an array that
 * moves as it grows, found again through several growths, with keys that
 * collide in the probed bytes or differ only by codec; a clear forgets
 * them all and the table fills again.
 */
#include <check.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check_util.h"
#include "cid_keys.h"
#include "cidtab.h"

struct rec {
	uint64_t pad; /* the CID is not at the start of a record */
	struct lfs_cid cid;
	int value;
};

START_TEST(empty_table)
{
	struct lfs_cidtab t;
	lfs_cidtab_init(&t, sizeof(struct rec), offsetof(struct rec, cid));
	struct lfs_cid c;
	lfs_cid_of(&c, LFS_CODEC_RAW, "x", 1);
	size_t i = 7;
	ck_assert(!lfs_cidtab_find(&t, NULL, &c, &i));
	ck_assert(!lfs_cidtab_find(&t, NULL, &c, NULL));
	ck_assert_uint_eq(i, 7);
	lfs_cidtab_clear(&t);
	lfs_cidtab_release(&t);
	lfs_cidtab_release(&t); /* released twice is harmless */
}
END_TEST

/* Add keys[order[0..n)] as records 0..n-1 of a growing array; check
 * every key, present or not, at a few points and at the end. */
static struct rec *fill(struct lfs_cidtab *t, const struct lfs_cid *keys,
			const int *order, int n, int total)
{
	struct rec *v = NULL;
	size_t cap = 0;
	for (int k = 0; k < n; k++) {
		if ((size_t)k == cap) {
			cap = cap ? cap * 2 : 4;
			v = realloc(v, cap * sizeof(*v));
			ck_assert_ptr_nonnull(v);
		}
		v[k] = (struct rec){.cid = keys[order[k]], .value = order[k]};
		ck_assert_int_eq(lfs_cidtab_add(t, v, (size_t)k), 0);
		ck_assert_uint_eq(t->count, (size_t)k + 1);
		if (k % 700 != 0 && k != n - 1)
			continue;
		for (int i = 0; i < total; i++) {
			size_t at = SIZE_MAX;
			bool in = false;
			for (int j = 0; j <= k; j++)
				in |= order[j] == i;
			ck_assert(lfs_cidtab_find(t, v, &keys[i], &at) == in);
			if (in)
				ck_assert_int_eq(v[at].value, i);
		}
	}
	return v;
}

START_TEST(model)
{
	enum { N = 3000 };
	static struct lfs_cid keys[N];
	static int order[N];
	lfs_test_cid_keys(keys, N);
	for (int i = 0; i < N; i++)
		order[i] = i;
	srand(13);
	for (int i = N - 1; i > 0; i--) {
		int j = rand() % (i + 1), x = order[i];
		order[i] = order[j];
		order[j] = x;
	}
	struct lfs_cidtab t;
	lfs_cidtab_init(&t, sizeof(struct rec), offsetof(struct rec, cid));
	/* Two thirds of the keys; the rest must stay absent. */
	struct rec *v = fill(&t, keys, order, 2 * N / 3, N);
	ck_assert_uint_le(t.count * 2, t.nslots); /* at most half full */
	struct lfs_cid other;
	lfs_cid_of(&other, LFS_CODEC_RAW, "not a key", 9);
	ck_assert(!lfs_cidtab_find(&t, v, &other, NULL));
	free(v);

	/* Cleared: nothing is found, the storage stays, all fit again. */
	size_t slots = t.nslots;
	lfs_cidtab_clear(&t);
	ck_assert_uint_eq(t.count, 0);
	ck_assert_uint_eq(t.nslots, slots);
	ck_assert(!lfs_cidtab_find(&t, NULL, &keys[0], NULL));
	v = fill(&t, keys, order + N / 3, N - N / 3, N);
	free(v);
	lfs_cidtab_release(&t);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("cidtab");
	TCase *t = tcase_create("core");
	tcase_set_timeout(t, 120);
	tcase_add_test(t, empty_table);
	tcase_add_test(t, model);
	suite_add_tcase(s, t);
	return lfs_check_run(s);
}
