/* Unit tests for buf: growth, the cap, sticky errors, steal. */
#include <check.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "buf.h"
#include "check_util.h"

START_TEST(test_init_default_cap)
{
	struct lfs_buf b;
	lfs_buf_init(&b, 0);
	ck_assert_uint_eq(b.max, LFS_BUF_DEFAULT_MAX);
	ck_assert_ptr_null(b.data);
	ck_assert_uint_eq(b.len, 0);
	ck_assert_int_eq(b.err, 0);
	lfs_buf_release(&b);

	lfs_buf_init(&b, 10);
	ck_assert_uint_eq(b.max, 10);
	lfs_buf_release(&b);
}
END_TEST

START_TEST(test_append_grows)
{
	struct lfs_buf b;
	lfs_buf_init(&b, 0);
	ck_assert_int_eq(lfs_buf_append_str(&b, "hello"), 0);
	ck_assert_int_eq(lfs_buf_append_byte(&b, ' '), 0);
	ck_assert_int_eq(lfs_buf_append(&b, "world!", 5), 0);
	ck_assert_int_eq(lfs_buf_append(&b, NULL, 0), 0);
	ck_assert_uint_eq(b.len, 11);
	ck_assert_mem_eq(b.data, "hello world", 11);

	/* Grow well past the first allocation; contents survive. */
	for (int i = 0; i < 100000; i++)
		ck_assert_int_eq(lfs_buf_append_byte(&b, (uint8_t)i), 0);
	ck_assert_uint_eq(b.len, 100011);
	ck_assert_uint_ge(b.cap, b.len);
	ck_assert_mem_eq(b.data, "hello world", 11);
	for (int i = 0; i < 100000; i++)
		ck_assert_uint_eq(b.data[11 + i], (uint8_t)i);
	lfs_buf_release(&b);
	ck_assert_ptr_null(b.data);
	ck_assert_uint_eq(b.len, 0);
}
END_TEST

START_TEST(test_cap_exact)
{
	struct lfs_buf b;
	lfs_buf_init(&b, 100);
	uint8_t block[100];
	memset(block, 'x', sizeof(block));
	ck_assert_int_eq(lfs_buf_append(&b, block, 60), 0);
	ck_assert_int_eq(lfs_buf_append(&b, block, 40), 0);
	ck_assert_uint_eq(b.len, 100);
	ck_assert_uint_le(b.cap, 100);
	/* One more byte passes the cap. */
	ck_assert_int_eq(lfs_buf_append_byte(&b, 'y'), -EFBIG);
	ck_assert_uint_eq(b.len, 100);
	ck_assert_int_eq(b.err, -EFBIG);
	lfs_buf_release(&b);

	/* A single append larger than the cap fails with nothing written. */
	lfs_buf_init(&b, 16);
	ck_assert_int_eq(lfs_buf_append(&b, block, 17), -EFBIG);
	ck_assert_uint_eq(b.len, 0);
	lfs_buf_release(&b);
}
END_TEST

START_TEST(test_sticky_error)
{
	struct lfs_buf b;
	lfs_buf_init(&b, 8);
	ck_assert_int_eq(lfs_buf_append_str(&b, "abcd"), 0);
	ck_assert_int_eq(lfs_buf_append_str(&b, "efghij"), -EFBIG);
	/* Later appends are no-ops that return the first error, even ones
	 * that would fit. */
	ck_assert_int_eq(lfs_buf_append_byte(&b, 'e'), -EFBIG);
	ck_assert_int_eq(lfs_buf_append(&b, "", 0), -EFBIG);
	ck_assert_int_eq(lfs_buf_reserve(&b, 0), -EFBIG);
	ck_assert_uint_eq(b.len, 4);
	ck_assert_mem_eq(b.data, "abcd", 4);

	/* reset forgets contents and the error, keeps storage. */
	uint8_t *data = b.data;
	lfs_buf_reset(&b);
	ck_assert_int_eq(b.err, 0);
	ck_assert_uint_eq(b.len, 0);
	ck_assert_ptr_eq(b.data, data);
	ck_assert_int_eq(lfs_buf_append_str(&b, "12345678"), 0);
	ck_assert_mem_eq(b.data, "12345678", 8);
	lfs_buf_release(&b);

	/* release clears it too, and the buffer can be used again. */
	lfs_buf_init(&b, 2);
	ck_assert_int_eq(lfs_buf_append_str(&b, "abc"), -EFBIG);
	lfs_buf_release(&b);
	ck_assert_int_eq(b.err, 0);
	lfs_buf_init(&b, 4);
	ck_assert_int_eq(lfs_buf_append_str(&b, "abc"), 0);
	lfs_buf_release(&b);
}
END_TEST

START_TEST(test_reserve)
{
	struct lfs_buf b;
	lfs_buf_init(&b, 1000);
	ck_assert_int_eq(lfs_buf_reserve(&b, 0), 0);
	ck_assert_int_eq(lfs_buf_reserve(&b, 1000), 0);
	ck_assert_uint_ge(b.cap, 1000);
	ck_assert_uint_eq(b.len, 0);
	ck_assert_int_eq(lfs_buf_reserve(&b, 1001), -EFBIG);
	lfs_buf_release(&b);
}
END_TEST

START_TEST(test_reserve_overflow)
{
	struct lfs_buf b;

	/* len + extra overflows size_t: must be -EFBIG, not a wrap-around
	 * that makes a tiny allocation look big enough. */
	lfs_buf_init(&b, SIZE_MAX);
	ck_assert_int_eq(lfs_buf_append_str(&b, "0123456789"), 0);
	ck_assert_int_eq(lfs_buf_reserve(&b, SIZE_MAX), -EFBIG);
	lfs_buf_release(&b);

	lfs_buf_init(&b, SIZE_MAX);
	ck_assert_int_eq(lfs_buf_append_str(&b, "0123456789"), 0);
	ck_assert_int_eq(lfs_buf_reserve(&b, SIZE_MAX - 5), -EFBIG);
	ck_assert_int_eq(lfs_buf_append(&b, "x", 1), -EFBIG);
	ck_assert_uint_eq(b.len, 10);
	lfs_buf_release(&b);

	lfs_buf_init(&b, 0);
	ck_assert_int_eq(lfs_buf_reserve(&b, LFS_BUF_DEFAULT_MAX + 1), -EFBIG);
	ck_assert_ptr_null(b.data);
	lfs_buf_release(&b);
}
END_TEST

START_TEST(test_steal)
{
	struct lfs_buf b;
	size_t len = 99;

	lfs_buf_init(&b, 0);
	ck_assert_ptr_null(lfs_buf_steal(&b, &len));
	ck_assert_uint_eq(len, 0);

	ck_assert_int_eq(lfs_buf_append_str(&b, "payload"), 0);
	uint8_t *p = lfs_buf_steal(&b, &len);
	ck_assert_ptr_nonnull(p);
	ck_assert_uint_eq(len, 7);
	ck_assert_mem_eq(p, "payload", 7);
	ck_assert_ptr_null(b.data);
	ck_assert_uint_eq(b.len, 0);
	ck_assert_uint_eq(b.cap, 0);

	/* The buffer is usable again and does not share the stolen memory. */
	ck_assert_int_eq(lfs_buf_append_str(&b, "again"), 0);
	ck_assert_ptr_ne(b.data, p);
	ck_assert_mem_eq(p, "payload", 7);
	free(p);
	lfs_buf_release(&b);
}
END_TEST

static Suite *buf_suite(void)
{
	Suite *s = suite_create("buf");
	TCase *tc = tcase_create("core");
	tcase_add_test(tc, test_init_default_cap);
	tcase_add_test(tc, test_append_grows);
	tcase_add_test(tc, test_cap_exact);
	tcase_add_test(tc, test_sticky_error);
	tcase_add_test(tc, test_reserve);
	tcase_add_test(tc, test_reserve_overflow);
	tcase_add_test(tc, test_steal);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	if (sodium_init() < 0)
		return 99;
	return lfs_check_run(buf_suite());
}
