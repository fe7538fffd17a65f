/* Unit tests for varint: boundaries, minimality, truncation, length. */
#include <check.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "varint.h"
#include "check_util.h"

static const struct {
	uint64_t value;
	size_t len;
} boundaries[] = {
	{0, 1},
	{1, 1},
	{127, 1},
	{128, 2},
	{255, 2},
	{300, 2},
	{(1u << 14) - 1, 2},
	{1u << 14, 3},
	{(1u << 21) - 1, 3},
	{1u << 21, 4},
	{(1u << 28) - 1, 4},
	{1u << 28, 5},
	{((uint64_t)1 << 35) - 1, 5},
	{(uint64_t)1 << 35, 6},
	{((uint64_t)1 << 56) - 1, 8},
	{(uint64_t)1 << 56, 9},
	{((uint64_t)1 << 63) - 1, 9},
};

START_TEST(test_round_trip_boundaries)
{
	uint8_t buf[LFS_VARINT_MAX + 4];
	uint64_t v = boundaries[_i].value;
	memset(buf, 0xee, sizeof(buf));
	size_t n = lfs_varint_encode(buf, v);
	ck_assert_uint_eq(n, boundaries[_i].len);
	ck_assert_uint_le(n, LFS_VARINT_MAX);
	for (size_t i = 0; i + 1 < n; i++)
		ck_assert(buf[i] & 0x80);
	ck_assert(!(buf[n - 1] & 0x80));
	ck_assert_uint_eq(buf[n], 0xee); /* nothing written past the end */

	uint64_t out = 42;
	ck_assert_int_eq(lfs_varint_decode(&out, buf, n), (int)n);
	ck_assert_uint_eq(out, v);
	/* Trailing bytes are not consumed. */
	ck_assert_int_eq(lfs_varint_decode(&out, buf, sizeof(buf)), (int)n);
	ck_assert_uint_eq(out, v);
	/* Every strict prefix is truncated. */
	for (size_t k = 0; k < n; k++)
		ck_assert_int_eq(lfs_varint_decode(&out, buf, k), -EBADMSG);
}
END_TEST

START_TEST(test_known_bytes)
{
	uint8_t buf[LFS_VARINT_MAX];
	ck_assert_uint_eq(lfs_varint_encode(buf, 300), 2);
	ck_assert_uint_eq(buf[0], 0xac);
	ck_assert_uint_eq(buf[1], 0x02);
	ck_assert_uint_eq(lfs_varint_encode(buf, 0x71), 1);
	ck_assert_uint_eq(buf[0], 0x71);

	static const uint8_t max63[] = {0xff, 0xff, 0xff, 0xff, 0xff,
					0xff, 0xff, 0xff, 0x7f};
	ck_assert_uint_eq(lfs_varint_encode(buf, INT64_MAX), 9);
	ck_assert_mem_eq(buf, max63, 9);
}
END_TEST

START_TEST(test_non_minimal)
{
	uint64_t out;
	static const uint8_t zero2[] = {0x80, 0x00};
	static const uint8_t one2[] = {0x81, 0x00};
	static const uint8_t zero3[] = {0x80, 0x80, 0x00};
	static const uint8_t v127_3[] = {0xff, 0x80, 0x00};
	ck_assert_int_eq(lfs_varint_decode(&out, zero2, 2), -EBADMSG);
	ck_assert_int_eq(lfs_varint_decode(&out, one2, 2), -EBADMSG);
	ck_assert_int_eq(lfs_varint_decode(&out, zero3, 3), -EBADMSG);
	ck_assert_int_eq(lfs_varint_decode(&out, v127_3, 3), -EBADMSG);
}
END_TEST

START_TEST(test_truncated)
{
	uint64_t out;
	static const uint8_t cont[] = {0x80};
	static const uint8_t cont3[] = {0xff, 0xff, 0xff};
	ck_assert_int_eq(lfs_varint_decode(&out, cont, 0), -EBADMSG);
	ck_assert_int_eq(lfs_varint_decode(&out, cont, 1), -EBADMSG);
	ck_assert_int_eq(lfs_varint_decode(&out, cont3, 3), -EBADMSG);
}
END_TEST

START_TEST(test_too_long)
{
	uint64_t out;
	/* 2^63 needs ten bytes: out of range. */
	static const uint8_t ten[] = {0x80, 0x80, 0x80, 0x80, 0x80,
				      0x80, 0x80, 0x80, 0x80, 0x01};
	ck_assert_int_eq(lfs_varint_decode(&out, ten, sizeof(ten)), -EBADMSG);
	static const uint8_t ten_max[] = {0xff, 0xff, 0xff, 0xff, 0xff,
					  0xff, 0xff, 0xff, 0xff, 0x01};
	ck_assert_int_eq(lfs_varint_decode(&out, ten_max, sizeof(ten_max)),
			 -EBADMSG);
	/* Nine bytes with the continuation bit on the last one. */
	static const uint8_t nine_cont[] = {0xff, 0xff, 0xff, 0xff, 0xff,
					    0xff, 0xff, 0xff, 0x80, 0x00};
	ck_assert_int_eq(lfs_varint_decode(&out, nine_cont, sizeof(nine_cont)),
			 -EBADMSG);
	/* A long run of continuation bytes is rejected, not read on. */
	uint8_t many[64];
	memset(many, 0x80, sizeof(many));
	ck_assert_int_eq(lfs_varint_decode(&out, many, sizeof(many)), -EBADMSG);
}
END_TEST

/* Every one- and two-byte input: decode agrees with encode. */
START_TEST(test_exhaustive_short)
{
	for (unsigned x = 0; x < 0x10000; x++) {
		uint8_t in[2] = {(uint8_t)(x >> 8), (uint8_t)x};
		uint64_t out;
		int n = lfs_varint_decode(&out, in, 2);
		if (n < 0)
			continue;
		uint8_t enc[LFS_VARINT_MAX];
		size_t m = lfs_varint_encode(enc, out);
		ck_assert_int_eq((int)m, n);
		ck_assert_mem_eq(enc, in, m);
	}
}
END_TEST

static Suite *varint_suite(void)
{
	Suite *s = suite_create("varint");
	TCase *tc = tcase_create("core");
	tcase_add_loop_test(tc, test_round_trip_boundaries, 0,
			    sizeof(boundaries) / sizeof(boundaries[0]));
	tcase_add_test(tc, test_known_bytes);
	tcase_add_test(tc, test_non_minimal);
	tcase_add_test(tc, test_truncated);
	tcase_add_test(tc, test_too_long);
	tcase_add_test(tc, test_exhaustive_short);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	if (sodium_init() < 0)
		return 99;
	return lfs_check_run(varint_suite());
}
