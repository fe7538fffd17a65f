/*
 * Unit tests for cbor: exact encodings (RFC 8949 appendix A where the
 * example is valid DAG-CBOR), canonical map order, and a strict decoder that
 * refuses everything else, including hostile sizes and depths.
 */
#include <check.h>
#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "arena.h"
#include "buf.h"
#include "cbor.h"
#include "cid.h"
#include "check_util.h"

/* The CID of "hello" as dag-cbor, binary, as hex. */
#define HELLO_CID_HEX                                                          \
	"017112202cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b" \
	"9824"

/*
 * A value written by the reference implementation (@ipld/dag-cbor 9, from
 * tests/interop): a map of every kind, keys in length-first order, a link,
 * bytes, ints at both ends of the range, floats and nesting.
 */
static const char reference_hex[] =
	"ac636269671bffffffffffffffff636e65673903e7636f6e650164646f6e65f4646c"
	"696e6bd82a582500017112202cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7"
	"425e73043362938b9824647461677387616162626280a0f6f5fb3ff8000000000000"
	"65627974657344000102ff65636f756e74182a65726174696ffb3fb999999999999a"
	"65736d616c6c3bffffffffffffffff657469746c65706d696c6b20c3bc20e6b0b420"
	"f0908591666e6573746564a36069656d707479206b65796162fbbfe0000000000000"
	"626161a16162820182028103";

static struct lfs_arena arena;

static void setup(void)
{
	lfs_arena_init(&arena, 0);
}

static void teardown(void)
{
	lfs_arena_release(&arena);
}

/* Decode hex into a malloc'd byte array. */
static uint8_t *unhex(const char *h, size_t *out_len)
{
	size_t n = 0;
	uint8_t *p = malloc(strlen(h) / 2 + 1);
	ck_assert_ptr_nonnull(p);
	while (*h) {
		if (*h == ' ') {
			h++;
			continue;
		}
		unsigned byte;
		ck_assert_int_eq(sscanf(h, "%2x", &byte), 1);
		p[n++] = (uint8_t)byte;
		h += 2;
	}
	*out_len = n;
	return p;
}

static char *tohex(const uint8_t *p, size_t n)
{
	char *s = malloc(n * 2 + 1);
	ck_assert_ptr_nonnull(s);
	for (size_t i = 0; i < n; i++)
		sprintf(s + 2 * i, "%02x", p[i]);
	s[n * 2] = '\0';
	return s;
}

static int decode_hex(struct lfs_cbor **out, struct lfs_arena *a, const char *h)
{
	size_t n;
	uint8_t *p = unhex(h, &n);
	int rc = lfs_cbor_decode(out, a, p, n);
	free(p);
	return rc;
}

/* Encode v and compare with the expected hex (spaces ignored). */
static void assert_encodes(struct lfs_cbor *v, const char *want_hex)
{
	struct lfs_buf b;
	size_t n;
	uint8_t *want = unhex(want_hex, &n);
	char *want_clean = tohex(want, n);
	lfs_buf_init(&b, 0);
	ck_assert_ptr_nonnull(v);
	ck_assert_int_eq(lfs_cbor_encode(&b, v), 0);
	char *got = tohex(b.data, b.len);
	ck_assert_str_eq(got, want_clean);
	free(got);
	free(want_clean);
	free(want);
	lfs_buf_release(&b);
}

/* Decode, then encode again: the bytes must come back unchanged. */
static void assert_round_trip(const char *h)
{
	struct lfs_cbor *v = NULL;
	size_t n;
	uint8_t *p = unhex(h, &n);
	int rc = lfs_cbor_decode(&v, &arena, p, n);
	ck_assert_msg(rc == 0, "decode %s: %d", h, rc);
	struct lfs_buf b;
	lfs_buf_init(&b, 0);
	ck_assert_int_eq(lfs_cbor_encode(&b, v), 0);
	ck_assert_uint_eq(b.len, n);
	ck_assert_msg(memcmp(b.data, p, n) == 0, "re-encode differs: %s", h);
	lfs_buf_release(&b);
	free(p);
}

/* ---- encoding ---- */

/* RFC 8949 appendix A examples that are valid DAG-CBOR. */
static const char *const rfc_valid[] = {
	"00",
	"01",
	"0a",
	"17",
	"1818",
	"1819",
	"1864",
	"1903e8",
	"1a000f4240",
	"1b000000e8d4a51000",
	"1bffffffffffffffff",
	"3bffffffffffffffff",
	"20",
	"29",
	"3863",
	"3903e7",
	"fb3ff199999999999a", /* 1.1 */
	"fb7e37e43c8800759c", /* 1.0e+300 */
	"fbc010666666666666", /* -4.1 */
	"f4",
	"f5",
	"f6",
	"40",
	"4401020304",
	"60",
	"6161",
	"6449455446",
	"62225c",
	"62c3bc",
	"63e6b0b4",
	"64f0908591",
	"80",
	"83010203",
	"8301820203820405",
	"98190102030405060708090a0b0c0d0e0f101112131415161718181819",
	"a0",
	"a26161016162820203",
	"826161a161626163",
	"a56161614161626142616361436164614461656145",
};

START_TEST(test_rfc_round_trip)
{
	assert_round_trip(rfc_valid[_i]);
}
END_TEST

START_TEST(test_encode_rfc_values)
{
	struct lfs_arena *a = &arena;
	assert_encodes(lfs_cbor_int(a, 0), "00");
	assert_encodes(lfs_cbor_int(a, 10), "0a");
	assert_encodes(lfs_cbor_int(a, 100), "1864");
	assert_encodes(lfs_cbor_int(a, 1000000000000), "1b000000e8d4a51000");
	assert_encodes(lfs_cbor_uint(a, UINT64_MAX), "1bffffffffffffffff");
	assert_encodes(lfs_cbor_int(a, -1), "20");
	assert_encodes(lfs_cbor_int(a, -100), "3863");
	assert_encodes(lfs_cbor_int(a, -1000), "3903e7");
	assert_encodes(lfs_cbor_float(a, 1.1), "fb3ff199999999999a");
	assert_encodes(lfs_cbor_float(a, 1.0e300), "fb7e37e43c8800759c");
	assert_encodes(lfs_cbor_float(a, -4.1), "fbc010666666666666");
	assert_encodes(lfs_cbor_bool(a, false), "f4");
	assert_encodes(lfs_cbor_bool(a, true), "f5");
	assert_encodes(lfs_cbor_null(a), "f6");
	assert_encodes(lfs_cbor_bytes(a, "", 0), "40");
	assert_encodes(lfs_cbor_bytes(a, "\x01\x02\x03\x04", 4), "4401020304");
	assert_encodes(lfs_cbor_string(a, "", 0), "60");
	assert_encodes(lfs_cbor_string(a, "IETF", 4), "6449455446");
	assert_encodes(lfs_cbor_string(a, "\"\\", 2), "62225c");
	assert_encodes(lfs_cbor_string(a, "\xc3\xbc", 2), "62c3bc");
	assert_encodes(lfs_cbor_string(a, "\xf0\x90\x85\x91", 4), "64f0908591");
	/* A NUL inside a string is data, not an end. */
	assert_encodes(lfs_cbor_string(a, "a\0b", 3), "63610062");

	assert_encodes(lfs_cbor_array(a, 0), "80");
	struct lfs_cbor *arr = lfs_cbor_array(a, 3);
	ck_assert_int_eq(lfs_cbor_array_push(arr, lfs_cbor_int(a, 1)), 0);
	struct lfs_cbor *inner = lfs_cbor_array(a, 2);
	ck_assert_int_eq(lfs_cbor_array_push(inner, lfs_cbor_int(a, 2)), 0);
	ck_assert_int_eq(lfs_cbor_array_push(inner, lfs_cbor_int(a, 3)), 0);
	ck_assert_int_eq(lfs_cbor_array_push(arr, inner), 0);
	inner = lfs_cbor_array(a, 2);
	ck_assert_int_eq(lfs_cbor_array_push(inner, lfs_cbor_int(a, 4)), 0);
	ck_assert_int_eq(lfs_cbor_array_push(inner, lfs_cbor_int(a, 5)), 0);
	ck_assert_int_eq(lfs_cbor_array_push(arr, inner), 0);
	assert_encodes(arr, "8301820203820405");

	struct lfs_cbor *big = lfs_cbor_array(a, 25);
	for (int i = 1; i <= 25; i++)
		ck_assert_int_eq(lfs_cbor_array_push(big, lfs_cbor_int(a, i)),
				 0);
	assert_encodes(big, "98190102030405060708090a0b0c0d0e0f10111213141516"
			    "1718181819");

	assert_encodes(lfs_cbor_map(a, 0), "a0");
	/* {"a": 1, "b": [2, 3]}, inserted in reverse order. */
	struct lfs_cbor *m = lfs_cbor_map(a, 2);
	inner = lfs_cbor_array(a, 2);
	lfs_cbor_array_push(inner, lfs_cbor_int(a, 2));
	lfs_cbor_array_push(inner, lfs_cbor_int(a, 3));
	ck_assert_int_eq(lfs_cbor_map_put(a, m, "b", inner), 0);
	ck_assert_int_eq(lfs_cbor_map_put(a, m, "a", lfs_cbor_int(a, 1)), 0);
	assert_encodes(m, "a26161016162820203");

	/* {"a": "A", ..., "e": "E"} in a scrambled order. */
	m = lfs_cbor_map(a, 5);
	const char *order = "dbeac";
	for (const char *k = order; *k; k++) {
		char key[2] = {*k, 0}, val[2] = {(char)(*k - 32), 0};
		ck_assert_int_eq(
			lfs_cbor_map_put(a, m, key, lfs_cbor_string(a, val, 1)),
			0);
	}
	assert_encodes(m, "a56161614161626142616361436164614461656145");
}
END_TEST

static const struct {
	int64_t value;
	const char *hex;
} int_heads[] = {
	{0, "00"},
	{23, "17"},
	{24, "1818"},
	{255, "18ff"},
	{256, "190100"},
	{65535, "19ffff"},
	{65536, "1a00010000"},
	{4294967295, "1affffffff"},
	{4294967296, "1b0000000100000000"},
	{INT64_MAX, "1b7fffffffffffffff"},
	{-1, "20"},
	{-24, "37"},
	{-25, "3818"},
	{-256, "38ff"},
	{-257, "390100"},
	{-65536, "39ffff"},
	{-65537, "3a00010000"},
	{-4294967296, "3affffffff"},
	{-4294967297, "3b0000000100000000"},
	{INT64_MIN, "3b7fffffffffffffff"},
};

START_TEST(test_int_boundaries)
{
	int64_t v = int_heads[_i].value;
	const char *h = int_heads[_i].hex;
	assert_encodes(lfs_cbor_int(&arena, v), h);

	struct lfs_buf b;
	lfs_buf_init(&b, 0);
	ck_assert_int_eq(lfs_cbor_put_int(&b, v), 0);
	char *got = tohex(b.data, b.len);
	ck_assert_str_eq(got, h);
	free(got);
	lfs_buf_release(&b);

	struct lfs_cbor *d;
	int64_t back;
	ck_assert_int_eq(decode_hex(&d, &arena, h), 0);
	ck_assert_int_eq(lfs_cbor_get_int(&back, d), 0);
	ck_assert_int_eq(back, v);
}
END_TEST

START_TEST(test_int_extremes)
{
	struct lfs_cbor *v, *d;
	int64_t i;
	uint64_t u;

	/* 2^64 - 1 */
	v = lfs_cbor_uint(&arena, UINT64_MAX);
	assert_encodes(v, "1bffffffffffffffff");
	ck_assert_int_eq(decode_hex(&d, &arena, "1bffffffffffffffff"), 0);
	ck_assert_int_eq(lfs_cbor_get_uint(&u, d), 0);
	ck_assert_uint_eq(u, UINT64_MAX);
	ck_assert_int_eq(lfs_cbor_get_int(&i, d), -EBADMSG);

	/* 2^63: a uint, not an int64. */
	ck_assert_int_eq(decode_hex(&d, &arena, "1b8000000000000000"), 0);
	ck_assert_int_eq(lfs_cbor_get_int(&i, d), -EBADMSG);
	ck_assert_int_eq(lfs_cbor_get_uint(&u, d), 0);
	ck_assert_uint_eq(u, (uint64_t)1 << 63);

	/* -2^64, which no C integer holds. */
	v = lfs_cbor_uint(&arena, UINT64_MAX);
	v->u.integer.negative = true;
	assert_encodes(v, "3bffffffffffffffff");
	ck_assert_int_eq(decode_hex(&d, &arena, "3bffffffffffffffff"), 0);
	ck_assert(d->u.integer.negative);
	ck_assert_uint_eq(d->u.integer.magnitude, UINT64_MAX);
	ck_assert_int_eq(lfs_cbor_get_int(&i, d), -EBADMSG);
	ck_assert_int_eq(lfs_cbor_get_uint(&u, d), -EBADMSG);

	/* -2^63 - 1: just outside int64. */
	ck_assert_int_eq(decode_hex(&d, &arena, "3b8000000000000000"), 0);
	ck_assert_int_eq(lfs_cbor_get_int(&i, d), -EBADMSG);
	/* -2^63 fits. */
	ck_assert_int_eq(decode_hex(&d, &arena, "3b7fffffffffffffff"), 0);
	ck_assert_int_eq(lfs_cbor_get_int(&i, d), 0);
	ck_assert_int_eq(i, INT64_MIN);
}
END_TEST

START_TEST(test_floats)
{
	static const struct {
		double d;
		const char *hex;
	} cases[] = {
		{0.0, "fb0000000000000000"},
		{-0.0, "fb8000000000000000"},
		{1.0, "fb3ff0000000000000"},
		{1.5, "fb3ff8000000000000"},
		{100000.0, "fb40f86a0000000000"},
		{65504.0, "fb40effc0000000000"},
		{5e-324, "fb0000000000000001"},
		{DBL_MAX, "fb7fefffffffffffff"},
		{-4.1, "fbc010666666666666"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct lfs_cbor *v = lfs_cbor_float(&arena, cases[i].d), *d;
		assert_encodes(v, cases[i].hex);
		struct lfs_buf b;
		lfs_buf_init(&b, 0);
		ck_assert_int_eq(lfs_cbor_put_float(&b, cases[i].d), 0);
		ck_assert_uint_eq(b.len, 9);
		lfs_buf_release(&b);
		ck_assert_int_eq(decode_hex(&d, &arena, cases[i].hex), 0);
		ck_assert_int_eq(d->type, LFS_CBOR_FLOAT);
		ck_assert(memcmp(&d->u.real, &cases[i].d, sizeof(double)) == 0);
	}

	/* Non-finite values have no DAG-CBOR form: refused, nothing
	 * appended. */
	double bad[] = {NAN, -NAN, INFINITY, -INFINITY};
	for (size_t i = 0; i < 4; i++) {
		struct lfs_buf b;
		lfs_buf_init(&b, 0);
		lfs_buf_append_byte(&b, 0x99);
		ck_assert_int_eq(
			lfs_cbor_encode(&b, lfs_cbor_float(&arena, bad[i])),
			-EINVAL);
		ck_assert_uint_eq(b.len, 1);
		lfs_buf_release(&b);
	}
}
END_TEST

START_TEST(test_links)
{
	struct lfs_cid c, back;
	lfs_cid_of(&c, LFS_CODEC_DAG_CBOR, "hello", 5);
	const char *h = "d82a5825 00" HELLO_CID_HEX;
	assert_encodes(lfs_cbor_link(&arena, &c), h);

	struct lfs_buf b;
	lfs_buf_init(&b, 0);
	ck_assert_int_eq(lfs_cbor_put_link(&b, &c), 0);
	ck_assert_uint_eq(b.len, 2 + 2 + 1 + LFS_CID_BYTES);
	lfs_buf_release(&b);

	struct lfs_cbor *d;
	ck_assert_int_eq(decode_hex(&d, &arena, h), 0);
	ck_assert_int_eq(d->type, LFS_CBOR_LINK);
	ck_assert_int_eq(lfs_cbor_get_link(&back, d), 0);
	ck_assert(lfs_cid_equal(&c, &back));
	int64_t i;
	ck_assert_int_eq(lfs_cbor_get_int(&i, d), -EBADMSG);
	ck_assert_int_eq(lfs_cbor_get_link(&back, NULL), -EBADMSG);

	/* A link to a raw block inside an array. */
	lfs_cid_of(&c, LFS_CODEC_RAW, "", 0);
	struct lfs_cbor *arr = lfs_cbor_array(&arena, 1);
	lfs_cbor_array_push(arr, lfs_cbor_link(&arena, &c));
	assert_encodes(arr, "81d82a582500015512 20e3b0c44298fc1c149afbf4c8996f"
			    "b92427ae41e4649b934ca495991b7852b855");
}
END_TEST

START_TEST(test_link_rejects)
{
	struct lfs_cbor *d;
	/* No 0x00 multibase prefix. */
	ck_assert_int_eq(decode_hex(&d, &arena, "d82a5824" HELLO_CID_HEX),
			 -EBADMSG);
	/* A non-zero prefix. */
	ck_assert_int_eq(decode_hex(&d, &arena, "d82a5825 01" HELLO_CID_HEX),
			 -EBADMSG);
	/* A trailing byte inside the byte string. */
	ck_assert_int_eq(
		decode_hex(&d, &arena, "d82a5826 00" HELLO_CID_HEX "00"),
		-EBADMSG);
	/* The CID cut short. */
	ck_assert_int_eq(decode_hex(&d, &arena,
				    "d82a5824 00017112202cf24dba5fb0a30e26e83b"
				    "2ac5b9e29e1b161e5c1fa7425e73043362938b98"),
			 -EBADMSG);
	/* Tag 42 around other things. */
	ck_assert_int_eq(decode_hex(&d, &arena, "d82a6161"), -EBADMSG);
	ck_assert_int_eq(decode_hex(&d, &arena, "d82a40"), -EBADMSG);
	ck_assert_int_eq(decode_hex(&d, &arena, "d82a4100"), -EBADMSG);
	ck_assert_int_eq(decode_hex(&d, &arena, "d82a00"), -EBADMSG);
	ck_assert_int_eq(decode_hex(&d, &arena, "d82a80"), -EBADMSG);
	ck_assert_int_eq(decode_hex(&d, &arena, "d82a"), -EBADMSG);
	ck_assert_int_eq(
		decode_hex(&d, &arena, "d82ad82a5825 00" HELLO_CID_HEX),
		-EBADMSG);
	/* Tag 42 in a non-shortest head. */
	ck_assert_int_eq(decode_hex(&d, &arena, "d9002a5825 00" HELLO_CID_HEX),
			 -EBADMSG);
	/* The byte string's length in a non-shortest head. */
	ck_assert_int_eq(decode_hex(&d, &arena, "d82a590025 00" HELLO_CID_HEX),
			 -EBADMSG);
	/* Well-formed CIDs we do not support: dag-pb, sha2-512, CIDv0. */
	ck_assert_int_eq(decode_hex(&d, &arena,
				    "d82a5825 0001701220"
				    "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1f"
				    "a7425e73043362938b9824"),
			 -EPROTONOSUPPORT);
	ck_assert_int_eq(decode_hex(&d, &arena,
				    "d82a5845 0001551340"
				    "00000000000000000000000000000000"
				    "00000000000000000000000000000000"
				    "00000000000000000000000000000000"
				    "00000000000000000000000000000000"),
			 -EPROTONOSUPPORT);
	ck_assert_int_eq(decode_hex(&d, &arena,
				    "d82a5823 001220"
				    "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1f"
				    "a7425e73043362938b9824"),
			 -EPROTONOSUPPORT);
}
END_TEST

START_TEST(test_map_order)
{
	struct lfs_arena *a = &arena;
	/* Length first: "b" sorts before "aa". */
	struct lfs_cbor *m = lfs_cbor_map(a, 2);
	ck_assert_int_eq(lfs_cbor_map_put(a, m, "aa", lfs_cbor_int(a, 1)), 0);
	ck_assert_int_eq(lfs_cbor_map_put(a, m, "b", lfs_cbor_int(a, 2)), 0);
	assert_encodes(m, "a2 616202 62616101");

	/* Several lengths, inserted in a scrambled order. */
	static const char *const keys[] = {"aaa", "z", "ab", "",  "b",
					   "aa",  "a", "ba", "zz"};
	m = lfs_cbor_map(a, 9);
	for (size_t i = 0; i < 9; i++)
		ck_assert_int_eq(
			lfs_cbor_map_put(a, m, keys[i], lfs_cbor_null(a)), 0);
	assert_encodes(m, "a9 60f6 6161f6 6162f6 617af6 626161f6 626162f6"
			  " 626261f6 627a7af6 63616161f6");

	/* The decoder takes exactly that order, and refuses bytewise order. */
	struct lfs_cbor *d;
	ck_assert_int_eq(decode_hex(&d, a, "a2616202626161 01"), 0);
	ck_assert_ptr_nonnull(lfs_cbor_map_get(d, "aa"));
	ck_assert_int_eq(decode_hex(&d, a, "a2626161 01616202"), -EBADMSG);

	ck_assert_int_eq(lfs_cbor_key_cmp("b", 1, "aa", 2), -1);
	ck_assert_int_eq(lfs_cbor_key_cmp("aa", 2, "b", 1), 1);
	ck_assert_int_lt(lfs_cbor_key_cmp("aa", 2, "ab", 2), 0);
	ck_assert_int_eq(lfs_cbor_key_cmp("ab", 2, "ab", 2), 0);
}
END_TEST

START_TEST(test_encode_rejects)
{
	struct lfs_arena *a = &arena;
	struct lfs_buf b;
	lfs_buf_init(&b, 0);
	lfs_buf_append_str(&b, "keep");

	/* Duplicate keys. */
	struct lfs_cbor *m = lfs_cbor_map(a, 3);
	lfs_cbor_map_put(a, m, "x", lfs_cbor_int(a, 1));
	lfs_cbor_map_put(a, m, "y", lfs_cbor_int(a, 2));
	lfs_cbor_map_put(a, m, "x", lfs_cbor_int(a, 3));
	ck_assert_int_eq(lfs_cbor_encode(&b, m), -EINVAL);
	ck_assert_uint_eq(b.len, 4);

	/* Duplicates deep inside a valid container. */
	struct lfs_cbor *arr = lfs_cbor_array(a, 2);
	lfs_cbor_array_push(arr, lfs_cbor_int(a, 7));
	lfs_cbor_array_push(arr, m);
	ck_assert_int_eq(lfs_cbor_encode(&b, arr), -EINVAL);
	ck_assert_uint_eq(b.len, 4);

	/* Invalid UTF-8 in a string and in a key. */
	ck_assert_int_eq(lfs_cbor_encode(&b, lfs_cbor_string(a, "\xc0\x80", 2)),
			 -EINVAL);
	ck_assert_int_eq(
		lfs_cbor_encode(&b, lfs_cbor_string(a, "\xed\xa0\x80", 3)),
		-EINVAL);
	m = lfs_cbor_map(a, 1);
	lfs_cbor_map_put(a, m, "\xff", lfs_cbor_null(a));
	ck_assert_int_eq(lfs_cbor_encode(&b, m), -EINVAL);
	ck_assert_uint_eq(b.len, 4);
	ck_assert_mem_eq(b.data, "keep", 4);
	ck_assert_int_eq(b.err, 0);
	lfs_buf_release(&b);

	/* The buffer's own error comes back as is. */
	lfs_buf_init(&b, 8);
	ck_assert_int_eq(
		lfs_cbor_encode(&b, lfs_cbor_string(a, "0123456789", 10)),
		-EFBIG);
	lfs_buf_release(&b);
}
END_TEST

START_TEST(test_streaming)
{
	struct lfs_buf b;
	lfs_buf_init(&b, 0);
	/* {"a": h'01', "bb": "x", "ccc": 0x0100000000} by hand. */
	lfs_cbor_put_head(&b, 5, 3);
	lfs_cbor_put_string(&b, "a", 1);
	lfs_cbor_put_bytes(&b, "\x01", 1);
	lfs_cbor_put_string(&b, "bb", 2);
	lfs_cbor_put_string(&b, "x", 1);
	lfs_cbor_put_string(&b, "ccc", 3);
	ck_assert_int_eq(lfs_cbor_put_int(&b, 4294967296), 0);
	char *got = tohex(b.data, b.len);
	ck_assert_str_eq(got, "a361614101626262617863636363"
			      "1b0000000100000000");
	free(got);
	struct lfs_cbor *v;
	ck_assert_int_eq(lfs_cbor_decode(&v, &arena, b.data, b.len), 0);
	ck_assert_uint_eq(v->u.map.count, 3);
	lfs_buf_release(&b);

	/* Heads of every major type at a size boundary. */
	lfs_buf_init(&b, 0);
	for (unsigned major = 0; major < 8; major++)
		lfs_cbor_put_head(&b, major, 0x10000);
	got = tohex(b.data, b.len);
	ck_assert_str_eq(got, "1a00010000"
			      "3a00010000"
			      "5a00010000"
			      "7a00010000"
			      "9a00010000"
			      "ba00010000"
			      "da00010000"
			      "fa00010000");
	free(got);
	lfs_buf_release(&b);
}
END_TEST

START_TEST(test_constructors_accessors)
{
	struct lfs_arena *a = &arena;
	struct lfs_cbor *arr = lfs_cbor_array(a, 1);
	ck_assert_int_eq(lfs_cbor_array_push(arr, lfs_cbor_null(a)), 0);
	ck_assert_int_eq(lfs_cbor_array_push(arr, lfs_cbor_null(a)), -ENOSPC);
	ck_assert_int_eq(lfs_cbor_array_push(arr, NULL), -ENOMEM);
	ck_assert_uint_eq(arr->u.array.count, 1);

	struct lfs_cbor *m = lfs_cbor_map(a, 2);
	ck_assert_int_eq(lfs_cbor_map_put(a, m, "k", lfs_cbor_int(a, -5)), 0);
	ck_assert_int_eq(lfs_cbor_map_put(a, m, "j", NULL), -ENOMEM);
	ck_assert_int_eq(lfs_cbor_map_put(a, m, "l", lfs_cbor_int(a, 5)), 0);
	ck_assert_int_eq(lfs_cbor_map_put(a, m, "m", lfs_cbor_int(a, 6)),
			 -ENOSPC);
	int64_t i;
	uint64_t u;
	ck_assert_int_eq(lfs_cbor_get_int(&i, lfs_cbor_map_get(m, "k")), 0);
	ck_assert_int_eq(i, -5);
	ck_assert_int_eq(lfs_cbor_get_uint(&u, lfs_cbor_map_get(m, "k")),
			 -EBADMSG);
	ck_assert_int_eq(lfs_cbor_get_uint(&u, lfs_cbor_map_get(m, "l")), 0);
	ck_assert_uint_eq(u, 5);
	ck_assert_ptr_null(lfs_cbor_map_get(m, "m"));
	ck_assert_ptr_null(lfs_cbor_map_get(m, ""));
	ck_assert_ptr_null(lfs_cbor_map_get(arr, "k"));
	ck_assert_ptr_null(lfs_cbor_map_get(NULL, "k"));
	ck_assert_int_eq(lfs_cbor_get_int(&i, NULL), -EBADMSG);
	ck_assert_int_eq(lfs_cbor_get_int(&i, lfs_cbor_float(a, 1.0)),
			 -EBADMSG);

	/* Strings are copied. */
	char s[] = "abc";
	struct lfs_cbor *str = lfs_cbor_string(a, s, 3);
	s[0] = 'X';
	ck_assert_str_eq(str->u.str.data, "abc");
	ck_assert_uint_eq(str->u.str.len, 3);

	ck_assert(lfs_utf8_valid("", 0));
	ck_assert(lfs_utf8_valid("a\0b", 3));
	ck_assert(lfs_utf8_valid("\xf4\x8f\xbf\xbf", 4));
	ck_assert(!lfs_utf8_valid("\xf4\x90\x80\x80", 4));
}
END_TEST

/* The arena the decoder allocates from (no suite of its own). */
START_TEST(test_arena)
{
	struct lfs_arena a;
	lfs_arena_init(&a, 0);
	ck_assert_uint_eq(a.max, LFS_ARENA_DEFAULT_MAX);
	for (size_t n = 0; n < 5000; n += 37) {
		uint8_t *p = lfs_arena_alloc(&a, n);
		ck_assert_ptr_nonnull(p);
		ck_assert_uint_eq((uintptr_t)p % 16, 0);
		for (size_t i = 0; i < n; i++)
			ck_assert_uint_eq(p[i], 0);
		memset(p, 0xaa, n);
	}
	ck_assert_ptr_null(lfs_arena_calloc(&a, SIZE_MAX / 2, 3));
	ck_assert_ptr_null(lfs_arena_strndup(&a, "x", SIZE_MAX));
	char *s = lfs_arena_strndup(&a, "abcdef", 3);
	ck_assert_str_eq(s, "abc");
	lfs_arena_release(&a);
	ck_assert_uint_eq(a.total, 0);

	/* The cap counts everything taken from malloc. */
	lfs_arena_init(&a, 10000);
	ck_assert_ptr_nonnull(lfs_arena_alloc(&a, 4000));
	ck_assert_ptr_null(lfs_arena_alloc(&a, 10001));
	size_t got = 0;
	while (lfs_arena_alloc(&a, 100))
		got += 100;
	ck_assert_uint_le(a.total, 10000);
	ck_assert_uint_ge(got, 3000);
	lfs_arena_release(&a);

	/* A size near SIZE_MAX must fail, not wrap when rounded up. */
	lfs_arena_init(&a, SIZE_MAX);
	ck_assert_ptr_null(lfs_arena_alloc(&a, SIZE_MAX - 3));
	ck_assert_ptr_null(lfs_arena_alloc(&a, SIZE_MAX));
	ck_assert_ptr_null(lfs_arena_calloc(&a, SIZE_MAX / 16, 16));
	lfs_arena_release(&a);
}
END_TEST

/* ---- decoding: rejects ---- */

static const char *const decode_rejects[] = {
	/* empty, trailing bytes */
	"",
	"0000",
	"f6f6",
	"8000",
	"a0ff",
	"6161 00",
	/* non-shortest integers */
	"1800",
	"1817",
	"190000",
	"1900ff",
	"1a00000000",
	"1a0000ffff",
	"1b0000000000000000",
	"1b00000000ffffffff",
	"3800",
	"3817",
	"3900ff",
	"3a0000ffff",
	"3b00000000ffffffff",
	/* non-shortest lengths */
	"5800",
	"580101",
	"590001 01",
	"7800",
	"781761616161616161616161616161616161616161616161",
	"9800",
	"990000",
	"b800",
	"ba00000000",
	"c600",
	/* indefinite lengths and stray breaks (RFC 8949 appendix A) */
	"5f42010243030405ff",
	"7f657374726561646d696e67ff",
	"9fff",
	"9f018202039f0405ffff",
	"9f01820203820405ff",
	"83018202039f0405ff",
	"83019f0203ff820405",
	"9f0102030405060708090a0b0c0d0e0f101112131415161718181819ff",
	"bf61610161629f0203ffff",
	"826161bf61626163ff",
	"bf6346756ef563416d7421ff",
	"5f",
	"7f",
	"9f",
	"bf",
	"ff",
	"81ff",
	/* reserved additional information */
	"1c",
	"1d",
	"1e",
	"1f",
	"3c",
	"3f",
	"5c",
	"7e",
	"9c",
	"bc",
	"dc",
	"fc",
	"fd",
	"fe",
	/* half and single floats, even when exact */
	"f90000",
	"f98000",
	"f93c00",
	"f97bff",
	"f97c00",
	"f97e00",
	"fa47c35000",
	"fa7f7fffff",
	"fa7f800000",
	"fa00000000",
	/* NaN and infinities as doubles */
	"fb7ff8000000000000",
	"fbfff8000000000000",
	"fb7ff0000000000001",
	"fb7ff0000000000000",
	"fbfff0000000000000",
	/* undefined and other simple values */
	"f7",
	"e0",
	"f0",
	"f3",
	"f8ff",
	"f818",
	"f820",
	"f814",
	"f816",
	/* tags other than 42 (RFC examples and friends) */
	"c074323031332d30332d32315432303a30343a30305a",
	"c11a514b67b0",
	"c1fb41d452d9ec200000",
	"d74401020304",
	"d818456449455446",
	"d82076687474703a2f2f7777772e6578616d706c652e636f6d",
	"c249010000000000000000",
	"c349010000000000000000",
	"d8290a",
	"d82b0a",
	"d9d9f700",
	"c0",
	/* map keys that are not text */
	"a201020304",
	"a14000",
	"a1f600",
	"a18000",
	"a1a000",
	"a1200a",
	"a1d82a5825 00" HELLO_CID_HEX "00",
	/* unsorted and duplicate keys */
	"a2616201616102",
	"a2616101616102",
	"a3616101616202616102",
	"a2626161016162 02",
	"a26001 6000",
	/* truncated */
	"18",
	"1901",
	"1a000100",
	"1b00000001000000",
	"fb3ff0",
	"6261",
	"4201",
	"8201",
	"a16161",
	"a1",
	"d8",
};

START_TEST(test_decode_rejects)
{
	struct lfs_cbor *v = NULL;
	const char *h = decode_rejects[_i];
	int rc = decode_hex(&v, &arena, h);
	ck_assert_msg(rc == -EBADMSG, "%s: got %d, want -EBADMSG", h, rc);
}
END_TEST

static const char *const bad_utf8[] = {
	"\xc0\x80",                 /* overlong NUL */
	"\xc1\xbf",                 /* overlong */
	"\xe0\x80\x80",             /* overlong */
	"\xe0\x9f\xbf",             /* overlong U+07FF */
	"\xf0\x80\x80\x80",         /* overlong */
	"\xf0\x8f\xbf\xbf",         /* overlong U+FFFF */
	"\xed\xa0\x80",             /* surrogate U+D800 */
	"\xed\xbf\xbf",             /* surrogate U+DFFF */
	"\xed\xa0\xbd\xed\xb2\xa9", /* a CESU-8 surrogate pair */
	"\xf4\x90\x80\x80",         /* U+110000 */
	"\xf5\x80\x80\x80",
	"\xf8\x88\x80\x80\x80",
	"\xff",
	"\xfe",
	"\x80",     /* lone continuation */
	"a\xbf",    /* lone continuation after ASCII */
	"\xc3",     /* truncated */
	"\xe6\xb0", /* truncated */
	"\xf0\x90\x85",
	"\xc3\x28", /* bad continuation */
	"\xe6\x28\xb4",
};

static const char *const good_utf8[] = {
	"",
	"\x7f",
	"\xc2\x80",
	"\xc3\xbc",
	"\xdf\xbf",
	"\xe0\xa0\x80",
	"\xed\x9f\xbf", /* U+D7FF */
	"\xee\x80\x80", /* U+E000 */
	"\xef\xbf\xbf",
	"\xf0\x90\x80\x80",
	"\xf4\x8f\xbf\xbf", /* U+10FFFF */
};

/* Each sample between runs of ASCII of every length up to 17 on either
 * side: the 8-byte ASCII steps must stop exactly at it, and a byte past
 * the length given must never be read. */
START_TEST(test_utf8_in_ascii)
{
	char buf[64];
	const char *pad = "abcdefghijklmnopq";
	for (int good = 0; good < 2; good++) {
		const char *const *v = good ? good_utf8 : bad_utf8;
		size_t nv = good ? sizeof(good_utf8) / sizeof(good_utf8[0])
				 : sizeof(bad_utf8) / sizeof(bad_utf8[0]);
		for (size_t i = 0; i < nv; i++)
			for (size_t a = 0; a <= 17; a++)
				for (size_t z = 0; z <= 17; z++) {
					size_t n = strlen(v[i]);
					memcpy(buf, pad, a);
					memcpy(buf + a, v[i], n);
					memcpy(buf + a + n, pad, z);
					/* past the end: a byte that is never
					 * valid, which must not be looked at */
					buf[a + n + z] = (char)0xff;
					ck_assert_int_eq(
						lfs_utf8_valid(buf, a + n + z),
						good);
				}
	}
}
END_TEST

static void put_text_value(struct lfs_buf *b, const char *s)
{
	lfs_cbor_put_string(b, s, strlen(s));
}

START_TEST(test_decode_utf8)
{
	struct lfs_cbor *v;
	struct lfs_buf b;
	lfs_buf_init(&b, 0);
	for (size_t i = 0; i < sizeof(bad_utf8) / sizeof(bad_utf8[0]); i++) {
		const char *s = bad_utf8[i];
		ck_assert(!lfs_utf8_valid(s, strlen(s)));
		/* as a text string */
		lfs_buf_reset(&b);
		put_text_value(&b, s);
		ck_assert_int_eq(lfs_cbor_decode(&v, &arena, b.data, b.len),
				 -EBADMSG);
		/* as a map key */
		lfs_buf_reset(&b);
		lfs_cbor_put_head(&b, 5, 1);
		put_text_value(&b, s);
		lfs_buf_append_byte(&b, 0xf6);
		ck_assert_int_eq(lfs_cbor_decode(&v, &arena, b.data, b.len),
				 -EBADMSG);
		/* the same bytes as a byte string are fine */
		lfs_buf_reset(&b);
		lfs_cbor_put_bytes(&b, s, strlen(s));
		ck_assert_int_eq(lfs_cbor_decode(&v, &arena, b.data, b.len), 0);
	}
	for (size_t i = 0; i < sizeof(good_utf8) / sizeof(good_utf8[0]); i++) {
		const char *s = good_utf8[i];
		lfs_buf_reset(&b);
		put_text_value(&b, s);
		ck_assert_int_eq(lfs_cbor_decode(&v, &arena, b.data, b.len), 0);
		ck_assert_uint_eq(v->u.str.len, strlen(s));
		ck_assert_mem_eq(v->u.str.data, s, strlen(s));
	}
	lfs_buf_release(&b);
}
END_TEST

/* ---- decoding: whole values ---- */

START_TEST(test_reference_value)
{
	size_t n;
	uint8_t *p = unhex(reference_hex, &n);
	struct lfs_cbor *v;
	ck_assert_int_eq(lfs_cbor_decode(&v, &arena, p, n), 0);
	ck_assert_int_eq(v->type, LFS_CBOR_MAP);
	ck_assert_uint_eq(v->u.map.count, 12);

	const struct lfs_cbor *t = lfs_cbor_map_get(v, "title");
	ck_assert_ptr_nonnull(t);
	ck_assert_int_eq(t->type, LFS_CBOR_STRING);
	ck_assert_str_eq(t->u.str.data,
			 "milk \xc3\xbc \xe6\xb0\xb4 \xf0\x90\x85\x91");
	int64_t i;
	ck_assert_int_eq(lfs_cbor_get_int(&i, lfs_cbor_map_get(v, "count")), 0);
	ck_assert_int_eq(i, 42);
	ck_assert_int_eq(lfs_cbor_get_int(&i, lfs_cbor_map_get(v, "neg")), 0);
	ck_assert_int_eq(i, -1000);
	ck_assert(lfs_cbor_map_get(v, "ratio")->u.real == 0.1);
	struct lfs_cid c, want;
	ck_assert_int_eq(lfs_cbor_get_link(&c, lfs_cbor_map_get(v, "link")), 0);
	lfs_cid_of(&want, LFS_CODEC_DAG_CBOR, "hello", 5);
	ck_assert(lfs_cid_equal(&c, &want));
	const struct lfs_cbor *bytes = lfs_cbor_map_get(v, "bytes");
	ck_assert_int_eq(bytes->type, LFS_CBOR_BYTES);
	ck_assert_uint_eq(bytes->u.str.len, 4);
	ck_assert_mem_eq(bytes->u.str.data, "\x00\x01\x02\xff", 4);
	const struct lfs_cbor *nested = lfs_cbor_map_get(v, "nested");
	ck_assert_ptr_nonnull(lfs_cbor_map_get(nested, ""));

	struct lfs_buf b;
	lfs_buf_init(&b, 0);
	ck_assert_int_eq(lfs_cbor_encode(&b, v), 0);
	ck_assert_uint_eq(b.len, n);
	ck_assert_mem_eq(b.data, p, n);
	lfs_buf_release(&b);
	free(p);
}
END_TEST

START_TEST(test_truncation_everywhere)
{
	size_t n;
	uint8_t *p = unhex(reference_hex, &n);
	for (size_t k = 0; k < n; k++) {
		struct lfs_arena a;
		struct lfs_cbor *v;
		lfs_arena_init(&a, 0);
		/* A private copy so ASan sees any read past the end. */
		uint8_t *q = malloc(k ? k : 1);
		memcpy(q, p, k);
		int rc = lfs_cbor_decode(&v, &a, q, k);
		ck_assert_msg(rc == -EBADMSG, "prefix %zu: %d", k, rc);
		free(q);
		lfs_arena_release(&a);
	}
	free(p);
}
END_TEST

/* Flip every bit of the reference value: nothing may crash, and whatever
 * still decodes must re-encode to the same (mutated) bytes. */
START_TEST(test_bit_flips)
{
	size_t n;
	uint8_t *p = unhex(reference_hex, &n);
	struct lfs_buf b;
	lfs_buf_init(&b, 0);
	for (size_t k = 0; k < n * 8; k++) {
		struct lfs_arena a;
		struct lfs_cbor *v;
		lfs_arena_init(&a, 0);
		p[k / 8] ^= (uint8_t)(1u << (k % 8));
		int rc = lfs_cbor_decode(&v, &a, p, n);
		if (rc == 0) {
			lfs_buf_reset(&b);
			ck_assert_int_eq(lfs_cbor_encode(&b, v), 0);
			ck_assert_uint_eq(b.len, n);
			ck_assert_mem_eq(b.data, p, n);
		} else {
			ck_assert(rc == -EBADMSG || rc == -EPROTONOSUPPORT);
		}
		p[k / 8] ^= (uint8_t)(1u << (k % 8));
		lfs_arena_release(&a);
	}
	lfs_buf_release(&b);
	free(p);
}
END_TEST

static uint8_t *nested_arrays(size_t depth, size_t *out_len)
{
	uint8_t *p = malloc(depth + 1);
	memset(p, 0x81, depth);
	p[depth] = 0x80;
	*out_len = depth + 1;
	return p;
}

START_TEST(test_depth)
{
	struct lfs_cbor *v;
	size_t n;
	uint8_t *p;

	/* The innermost value at depth LFS_CBOR_MAX_DEPTH is fine... */
	p = nested_arrays(LFS_CBOR_MAX_DEPTH, &n);
	ck_assert_int_eq(lfs_cbor_decode(&v, &arena, p, n), 0);
	struct lfs_buf b;
	lfs_buf_init(&b, 0);
	ck_assert_int_eq(lfs_cbor_encode(&b, v), 0);
	ck_assert_uint_eq(b.len, n);
	lfs_buf_release(&b);
	free(p);
	/* ...one more level is not. */
	p = nested_arrays(LFS_CBOR_MAX_DEPTH + 1, &n);
	ck_assert_int_eq(lfs_cbor_decode(&v, &arena, p, n), -EBADMSG);
	free(p);
	/* Far deeper input fails without exhausting the stack. */
	p = nested_arrays(1000000, &n);
	ck_assert_int_eq(lfs_cbor_decode(&v, &arena, p, n), -EBADMSG);
	free(p);

	/* Maps nest the same way: {"a": {"a": ... null}}. */
	lfs_buf_init(&b, 0);
	for (int i = 0; i < LFS_CBOR_MAX_DEPTH + 1; i++)
		lfs_buf_append(&b, "\xa1\x61\x61", 3);
	lfs_buf_append_byte(&b, 0xf6);
	ck_assert_int_eq(lfs_cbor_decode(&v, &arena, b.data, b.len), -EBADMSG);
	ck_assert_int_eq(lfs_cbor_decode(&v, &arena, b.data + 3, b.len - 3), 0);
	lfs_buf_release(&b);

	/* The encoder draws the line at the same place. */
	struct lfs_cbor *top = lfs_cbor_array(&arena, 0);
	for (int i = 0; i < LFS_CBOR_MAX_DEPTH; i++) {
		struct lfs_cbor *outer = lfs_cbor_array(&arena, 1);
		lfs_cbor_array_push(outer, top);
		top = outer;
	}
	lfs_buf_init(&b, 0);
	ck_assert_int_eq(lfs_cbor_encode(&b, top), 0);
	struct lfs_cbor *outer = lfs_cbor_array(&arena, 1);
	lfs_cbor_array_push(outer, top);
	lfs_buf_reset(&b);
	ck_assert_int_eq(lfs_cbor_encode(&b, outer), -EINVAL);
	ck_assert_uint_eq(b.len, 0);
	lfs_buf_release(&b);
}
END_TEST

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Claimed sizes far beyond the input fail at once, before allocating. */
static const char *const huge_claims[] = {
	"9bffffffffffffffff",
	"9b7fffffffffffffff00",
	"9b0000000100000000 00",
	"9affffffff 00000000",
	"9a00100000 000000",
	"bbffffffffffffffff",
	"bb7fffffffffffffff 616100",
	"baffffffff 616100",
	"ba00010000 6161006162 00",
	"5bffffffffffffffff",
	"5b7fffffffffffffff 00",
	"5affffffff 00",
	"7bffffffffffffffff",
	"7affffffff 61",
	"d82a5bffffffffffffffff",
	"d82a5affffffff 00017112",
	"a1 7bffffffffffffffff",
	"81 9bffffffffffffffff",
	/* an array as long as the input, but each item needs 2 bytes */
	"88 1818 1818 1818 1818",
	/* a map claiming one pair per byte */
	"a4 616100 616200",
};

START_TEST(test_huge_claims)
{
	struct lfs_arena small;
	struct lfs_cbor *v;
	const char *h = huge_claims[_i];
	/* A 4 KiB arena: any allocation sized by the claim would hit it and
	 * return -ENOMEM instead of -EBADMSG. */
	lfs_arena_init(&small, 4096);
	double t0 = now();
	int rc = decode_hex(&v, &small, h);
	double t = now() - t0;
	ck_assert_msg(rc == -EBADMSG, "%s: got %d", h, rc);
	ck_assert_msg(t < 1.0, "%s: took %.3f s", h, t);
	ck_assert_uint_le(small.total, 4096);
	lfs_arena_release(&small);
}
END_TEST

START_TEST(test_arena_cap)
{
	struct lfs_arena small;
	struct lfs_cbor *v;
	struct lfs_buf b;

	/*
	 * 1000 zeros: a valid array whose tree needs more than 16 KiB. The
	 * item table fits, so the cap is hit part-way through the items.
	 */
	lfs_buf_init(&b, 0);
	lfs_cbor_put_head(&b, 4, 1000);
	for (int i = 0; i < 1000; i++)
		lfs_buf_append_byte(&b, 0);
	lfs_arena_init(&small, 16384);
	ck_assert_int_eq(lfs_cbor_decode(&v, &small, b.data, b.len), -ENOMEM);
	ck_assert_uint_le(small.total, 16384);
	lfs_arena_release(&small);
	/* With room it decodes. */
	lfs_arena_init(&small, 0);
	ck_assert_int_eq(lfs_cbor_decode(&v, &small, b.data, b.len), 0);
	ck_assert_uint_eq(v->u.array.count, 1000);
	lfs_arena_release(&small);
	lfs_buf_release(&b);

	/* A 100 KB string into a 4 KiB arena. */
	lfs_buf_init(&b, 0);
	char *s = malloc(100000);
	memset(s, 'a', 100000);
	lfs_cbor_put_string(&b, s, 100000);
	free(s);
	lfs_arena_init(&small, 4096);
	ck_assert_int_eq(lfs_cbor_decode(&v, &small, b.data, b.len), -ENOMEM);
	lfs_arena_release(&small);
	lfs_buf_release(&b);

	/* A map of many small pairs. */
	lfs_buf_init(&b, 0);
	lfs_cbor_put_head(&b, 5, 1000);
	for (int i = 0; i < 1000; i++) {
		char key[8];
		int kn = snprintf(key, sizeof(key), "%04d", i);
		lfs_cbor_put_string(&b, key, (size_t)kn);
		lfs_buf_append_byte(&b, 0xf6);
	}
	lfs_arena_init(&small, 8192);
	ck_assert_int_eq(lfs_cbor_decode(&v, &small, b.data, b.len), -ENOMEM);
	lfs_arena_release(&small);
	lfs_buf_release(&b);
}
END_TEST

/* ---- random trees: encode, decode, encode gives the same bytes ---- */

static uint32_t rnd(uint32_t n)
{
	return randombytes_uniform(n);
}

static struct lfs_cbor *random_tree(struct lfs_arena *a, int depth)
{
	uint32_t kind = rnd(depth > 4 ? 7 : 9);
	switch (kind) {
	case 0:
		return lfs_cbor_null(a);
	case 1:
		return lfs_cbor_bool(a, rnd(2));
	case 2: {
		uint64_t m;
		randombytes_buf(&m, sizeof(m));
		m >>= rnd(64);
		struct lfs_cbor *v = lfs_cbor_uint(a, m);
		v->u.integer.negative = rnd(2);
		return v;
	}
	case 3: {
		double d;
		do {
			uint64_t bits;
			randombytes_buf(&bits, sizeof(bits));
			memcpy(&d, &bits, sizeof(d));
		} while (!isfinite(d));
		return lfs_cbor_float(a, d);
	}
	case 4: {
		uint8_t buf[40];
		size_t n = rnd(sizeof(buf));
		randombytes_buf(buf, n);
		return lfs_cbor_bytes(a, buf, n);
	}
	case 5: {
		static const char *const words[] = {"",
						    "a",
						    "\xc3\xbc",
						    "hello world",
						    "\xf0\x9f\x98\x80",
						    "a\0b"};
		size_t w = rnd(6);
		return lfs_cbor_string(a, words[w],
				       w == 5 ? 3 : strlen(words[w]));
	}
	case 6: {
		struct lfs_cid c;
		c.codec = rnd(2) ? LFS_CODEC_RAW : LFS_CODEC_DAG_CBOR;
		randombytes_buf(c.digest, sizeof(c.digest));
		return lfs_cbor_link(a, &c);
	}
	case 7: {
		size_t n = rnd(6);
		struct lfs_cbor *v = lfs_cbor_array(a, n);
		for (size_t i = 0; i < n; i++)
			lfs_cbor_array_push(v, random_tree(a, depth + 1));
		return v;
	}
	default: {
		size_t n = rnd(6);
		struct lfs_cbor *v = lfs_cbor_map(a, n);
		for (size_t i = 0; i < n; i++) {
			/* unique keys of varied length */
			char key[32];
			snprintf(key, sizeof(key), "%.*s%zu", (int)rnd(4),
				 "kkkk", i);
			lfs_cbor_map_put(a, v, key, random_tree(a, depth + 1));
		}
		return v;
	}
	}
}

static bool tree_equal(const struct lfs_cbor *x, const struct lfs_cbor *y)
{
	if (x->type != y->type)
		return false;
	switch (x->type) {
	case LFS_CBOR_NULL:
		return true;
	case LFS_CBOR_BOOL:
		return x->u.boolean == y->u.boolean;
	case LFS_CBOR_INT:
		return x->u.integer.negative == y->u.integer.negative &&
		       x->u.integer.magnitude == y->u.integer.magnitude;
	case LFS_CBOR_FLOAT:
		return memcmp(&x->u.real, &y->u.real, sizeof(double)) == 0;
	case LFS_CBOR_BYTES:
	case LFS_CBOR_STRING:
		return x->u.str.len == y->u.str.len &&
		       memcmp(x->u.str.data, y->u.str.data, x->u.str.len) == 0;
	case LFS_CBOR_LINK:
		return lfs_cid_equal(&x->u.link, &y->u.link);
	case LFS_CBOR_ARRAY:
		if (x->u.array.count != y->u.array.count)
			return false;
		for (size_t i = 0; i < x->u.array.count; i++)
			if (!tree_equal(x->u.array.items[i],
					y->u.array.items[i]))
				return false;
		return true;
	case LFS_CBOR_MAP:
		/* both sorted by now: the encoder sorts in place */
		if (x->u.map.count != y->u.map.count)
			return false;
		for (size_t i = 0; i < x->u.map.count; i++) {
			const struct lfs_cbor_pair *p = &x->u.map.pairs[i];
			const struct lfs_cbor_pair *q = &y->u.map.pairs[i];
			if (lfs_cbor_key_cmp(p->key, p->key_len, q->key,
					     q->key_len) ||
			    !tree_equal(p->value, q->value))
				return false;
		}
		return true;
	}
	return false;
}

START_TEST(test_random_round_trips)
{
	for (int round = 0; round < 500; round++) {
		struct lfs_arena a;
		struct lfs_buf b1, b2;
		lfs_arena_init(&a, 0);
		lfs_buf_init(&b1, 0);
		lfs_buf_init(&b2, 0);
		struct lfs_cbor *v = random_tree(&a, 0), *d;
		ck_assert_int_eq(lfs_cbor_encode(&b1, v), 0);
		ck_assert_int_eq(lfs_cbor_decode(&d, &a, b1.data, b1.len), 0);
		ck_assert(tree_equal(v, d));
		ck_assert_int_eq(lfs_cbor_encode(&b2, d), 0);
		ck_assert_uint_eq(b1.len, b2.len);
		ck_assert_mem_eq(b1.data, b2.data, b1.len);
		lfs_buf_release(&b1);
		lfs_buf_release(&b2);
		lfs_arena_release(&a);
	}
}
END_TEST

static Suite *cbor_suite(void)
{
	Suite *s = suite_create("cbor");
	TCase *tc = tcase_create("encode");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_loop_test(tc, test_rfc_round_trip, 0,
			    sizeof(rfc_valid) / sizeof(rfc_valid[0]));
	tcase_add_test(tc, test_encode_rfc_values);
	tcase_add_loop_test(tc, test_int_boundaries, 0,
			    sizeof(int_heads) / sizeof(int_heads[0]));
	tcase_add_test(tc, test_int_extremes);
	tcase_add_test(tc, test_floats);
	tcase_add_test(tc, test_links);
	tcase_add_test(tc, test_map_order);
	tcase_add_test(tc, test_encode_rejects);
	tcase_add_test(tc, test_streaming);
	tcase_add_test(tc, test_constructors_accessors);
	tcase_add_test(tc, test_arena);
	suite_add_tcase(s, tc);

	tc = tcase_create("decode");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_loop_test(tc, test_decode_rejects, 0,
			    sizeof(decode_rejects) / sizeof(decode_rejects[0]));
	tcase_add_test(tc, test_link_rejects);
	tcase_add_test(tc, test_decode_utf8);
	tcase_add_test(tc, test_utf8_in_ascii);
	tcase_add_test(tc, test_reference_value);
	tcase_add_test(tc, test_truncation_everywhere);
	tcase_add_test(tc, test_bit_flips);
	tcase_add_test(tc, test_depth);
	tcase_add_loop_test(tc, test_huge_claims, 0,
			    sizeof(huge_claims) / sizeof(huge_claims[0]));
	tcase_add_test(tc, test_arena_cap);
	tcase_add_test(tc, test_random_round_trips);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	if (sodium_init() < 0)
		return 99;
	return lfs_check_run(cbor_suite());
}
