/*
 * Unit tests for cid: known vectors, binary and text round trips, and the
 * rejection of every foreign or malformed form.
 *
 * The expected strings were computed independently with Python's stdlib:
 *   "b" + base32(bytes([1, codec, 0x12, 0x20]) + sha256(data)).lower()
 * without padding.
 */
#include <check.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "cid.h"
#include "check_util.h"

#define HELLO_RAW  "bafkreibm6jg3ux5qumhcn2b3flc3tyu6dmlb4xa7u5bf44yegnrjhc4yeq"
#define HELLO_CBOR "bafyreibm6jg3ux5qumhcn2b3flc3tyu6dmlb4xa7u5bf44yegnrjhc4yeq"
#define EMPTY_RAW  "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"

/* sha256("hello") */
static const uint8_t hello_digest[32] = {
	0x2c, 0xf2, 0x4d, 0xba, 0x5f, 0xb0, 0xa3, 0x0e, 0x26, 0xe8, 0x3b,
	0x2a, 0xc5, 0xb9, 0xe2, 0x9e, 0x1b, 0x16, 0x1e, 0x5c, 0x1f, 0xa7,
	0x42, 0x5e, 0x73, 0x04, 0x33, 0x62, 0x93, 0x8b, 0x98, 0x24};

/* "b" + base32 of arbitrary bytes, for building foreign CIDs. */
static char *text_of(const uint8_t *p, size_t len)
{
	char *s = malloc((len * 8 + 4) / 5 + 2);
	ck_assert_ptr_nonnull(s);
	s[0] = 'b';
	lfs_base32_encode(s + 1, p, len);
	return s;
}

START_TEST(test_known_vectors)
{
	struct lfs_cid c;
	char s[LFS_CID_STRLEN + 1];

	lfs_cid_of(&c, LFS_CODEC_RAW, "hello", 5);
	ck_assert_uint_eq(c.codec, LFS_CODEC_RAW);
	ck_assert_mem_eq(c.digest, hello_digest, 32);
	lfs_cid_to_string(s, &c);
	ck_assert_str_eq(s, HELLO_RAW);
	ck_assert_uint_eq(strlen(s), LFS_CID_STRLEN);

	lfs_cid_of(&c, LFS_CODEC_DAG_CBOR, "hello", 5);
	lfs_cid_to_string(s, &c);
	ck_assert_str_eq(s, HELLO_CBOR);

	lfs_cid_of(&c, LFS_CODEC_RAW, "", 0);
	lfs_cid_to_string(s, &c);
	ck_assert_str_eq(s, EMPTY_RAW);
}
END_TEST

START_TEST(test_binary)
{
	struct lfs_cid c, d;
	uint8_t b[LFS_CID_BYTES + 3];
	lfs_cid_of(&c, LFS_CODEC_DAG_CBOR, "hello", 5);
	lfs_cid_to_bytes(b, &c);
	static const uint8_t prefix[] = {0x01, 0x71, 0x12, 0x20};
	ck_assert_mem_eq(b, prefix, 4);
	ck_assert_mem_eq(b + 4, hello_digest, 32);

	memset(&d, 0, sizeof(d));
	ck_assert_int_eq(lfs_cid_from_bytes(&d, b, LFS_CID_BYTES),
			 LFS_CID_BYTES);
	ck_assert(lfs_cid_equal(&c, &d));
	/* Parses from the front of a longer buffer. */
	b[36] = b[37] = b[38] = 0xff;
	ck_assert_int_eq(lfs_cid_from_bytes(&d, b, sizeof(b)), LFS_CID_BYTES);
	ck_assert(lfs_cid_equal(&c, &d));
	/* Truncated at every length. */
	for (size_t n = 0; n < LFS_CID_BYTES; n++)
		ck_assert_int_eq(lfs_cid_from_bytes(&d, b, n), -EBADMSG);
}
END_TEST

START_TEST(test_binary_foreign)
{
	struct lfs_cid d;
	uint8_t b[80];

	/* CIDv0: a bare sha2-256 multihash. */
	memset(b, 0, sizeof(b));
	b[0] = 0x12;
	b[1] = 0x20;
	memcpy(b + 2, hello_digest, 32);
	ck_assert_int_eq(lfs_cid_from_bytes(&d, b, 34), -EPROTONOSUPPORT);

	/* dag-pb codec. */
	static const uint8_t dagpb[] = {0x01, 0x70, 0x12, 0x20};
	memcpy(b, dagpb, 4);
	memcpy(b + 4, hello_digest, 32);
	ck_assert_int_eq(lfs_cid_from_bytes(&d, b, 36), -EPROTONOSUPPORT);

	/* dag-json: a two-byte codec varint (0x0129). */
	static const uint8_t dagjson[] = {0x01, 0xa9, 0x02, 0x12, 0x20};
	memcpy(b, dagjson, 5);
	memcpy(b + 5, hello_digest, 32);
	ck_assert_int_eq(lfs_cid_from_bytes(&d, b, 37), -EPROTONOSUPPORT);

	/* sha2-512. */
	static const uint8_t sha512[] = {0x01, 0x55, 0x13, 0x40};
	memset(b, 0x11, sizeof(b));
	memcpy(b, sha512, 4);
	ck_assert_int_eq(lfs_cid_from_bytes(&d, b, 68), -EPROTONOSUPPORT);

	/* sha2-256 with a digest length other than 32. */
	static const uint8_t short_digest[] = {0x01, 0x55, 0x12, 0x10};
	memcpy(b, short_digest, 4);
	ck_assert_int_eq(lfs_cid_from_bytes(&d, b, 20), -EPROTONOSUPPORT);

	/* Version 2. */
	static const uint8_t v2[] = {0x02, 0x55, 0x12, 0x20};
	memcpy(b, v2, 4);
	ck_assert_int_eq(lfs_cid_from_bytes(&d, b, 36), -EPROTONOSUPPORT);
}
END_TEST

START_TEST(test_string_round_trip)
{
	struct lfs_cid c, d;
	char s[LFS_CID_STRLEN + 1];
	ck_assert_int_eq(lfs_cid_from_string(&d, HELLO_RAW), 0);
	lfs_cid_of(&c, LFS_CODEC_RAW, "hello", 5);
	ck_assert(lfs_cid_equal(&c, &d));
	ck_assert_int_eq(lfs_cid_from_string(&d, HELLO_CBOR), 0);
	ck_assert_uint_eq(d.codec, LFS_CODEC_DAG_CBOR);
	ck_assert_mem_eq(d.digest, hello_digest, 32);

	/* Many random CIDs survive the text form. */
	for (int i = 0; i < 1000; i++) {
		c.codec = i & 1 ? LFS_CODEC_RAW : LFS_CODEC_DAG_CBOR;
		randombytes_buf(c.digest, sizeof(c.digest));
		lfs_cid_to_string(s, &c);
		ck_assert_uint_eq(strlen(s), LFS_CID_STRLEN);
		ck_assert_int_eq(lfs_cid_from_string(&d, s), 0);
		ck_assert(lfs_cid_equal(&c, &d));
	}
}
END_TEST

START_TEST(test_string_foreign)
{
	struct lfs_cid d;
	/* CIDv0 (base58btc sha2-256 multihash). */
	ck_assert_int_eq(
		lfs_cid_from_string(
			&d, "QmaozNR7DZHQK1ZcU9p7QdrshMvXqWK6gpu5rmrkPdT3L4"),
		-EPROTONOSUPPORT);
	/* Other multibases: base58btc 'z', base16 'f', base32 upper 'B'. */
	ck_assert_int_eq(
		lfs_cid_from_string(
			&d,
			"zb2rhe5P4gXftAwvA4eXQ5HJwsER2owDyS9sKaQRRVQPn93bA"),
		-EPROTONOSUPPORT);
	ck_assert_int_eq(
		lfs_cid_from_string(&d, "f01551220"
					"2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e"
					"5c1fa7425e73043362938b9824"),
		-EPROTONOSUPPORT);
	ck_assert_int_eq(
		lfs_cid_from_string(&d, "BAFKREIBM6JG3UX5QUMHCN2B3FLC3TYU6DMLB4"
					"XA7U5BF44YEGNRJHC4YEQ"),
		-EPROTONOSUPPORT);

	/* dag-pb codec in an otherwise valid base32 CIDv1. */
	uint8_t b[80];
	static const uint8_t dagpb[] = {0x01, 0x70, 0x12, 0x20};
	memcpy(b, dagpb, 4);
	memcpy(b + 4, hello_digest, 32);
	char *s = text_of(b, 36);
	ck_assert_int_eq(lfs_cid_from_string(&d, s), -EPROTONOSUPPORT);
	free(s);

	/* dag-json (two-byte codec varint). */
	static const uint8_t dagjson[] = {0x01, 0xa9, 0x02, 0x12, 0x20};
	memcpy(b, dagjson, 5);
	memcpy(b + 5, hello_digest, 32);
	s = text_of(b, 37);
	ck_assert_int_eq(lfs_cid_from_string(&d, s), -EPROTONOSUPPORT);
	free(s);

	/* sha2-512: a longer string than any CID we make. */
	static const uint8_t sha512[] = {0x01, 0x55, 0x13, 0x40};
	memset(b, 0x5a, sizeof(b));
	memcpy(b, sha512, 4);
	s = text_of(b, 68);
	ck_assert_int_eq(lfs_cid_from_string(&d, s), -EPROTONOSUPPORT);
	free(s);
}
END_TEST

START_TEST(test_string_malformed)
{
	struct lfs_cid d;
	char s[128];

	ck_assert_int_eq(lfs_cid_from_string(&d, ""), -EINVAL);
	ck_assert_int_eq(lfs_cid_from_string(&d, "b"), -EINVAL);

	/* Characters outside the lower-case base32 alphabet. */
	static const char bad[] = "018AZ=!-_ \xc3";
	for (const char *p = bad; *p; p++) {
		strcpy(s, HELLO_RAW);
		s[20] = *p;
		ck_assert_int_eq(lfs_cid_from_string(&d, s), -EINVAL);
	}
	/* Padding is not accepted. */
	snprintf(s, sizeof(s), "%s=", HELLO_RAW);
	ck_assert_int_eq(lfs_cid_from_string(&d, s), -EINVAL);

	/* Wrong lengths: one short, one long, several long. */
	strcpy(s, HELLO_RAW);
	s[LFS_CID_STRLEN - 1] = '\0';
	ck_assert_int_eq(lfs_cid_from_string(&d, s), -EINVAL);
	snprintf(s, sizeof(s), "%sa", HELLO_RAW);
	ck_assert_int_eq(lfs_cid_from_string(&d, s), -EINVAL);
	snprintf(s, sizeof(s), "%saaaaaaaa", HELLO_RAW);
	ck_assert_int_eq(lfs_cid_from_string(&d, s), -EINVAL);
	snprintf(s, sizeof(s), "%s%s", HELLO_RAW, &HELLO_RAW[1]);
	ck_assert_int_eq(lfs_cid_from_string(&d, s), -EINVAL);
	strcpy(s, "bafkrei");
	ck_assert_int_eq(lfs_cid_from_string(&d, s), -EINVAL);

	/* Non-zero trailing bits: the last character carries two unused bits
	 * ('q' = 10000); 'r' = 10001 sets one of them. */
	strcpy(s, HELLO_RAW);
	ck_assert_int_eq(s[LFS_CID_STRLEN - 1], 'q');
	s[LFS_CID_STRLEN - 1] = 'r';
	ck_assert_int_eq(lfs_cid_from_string(&d, s), -EINVAL);
	s[LFS_CID_STRLEN - 1] = 's';
	ck_assert_int_eq(lfs_cid_from_string(&d, s), -EINVAL);
}
END_TEST

START_TEST(test_base32_vectors)
{
	/* RFC 4648 section 10, lower-cased, padding removed. */
	static const char *const in[] = {"",     "f",     "fo",    "foo",
					 "foob", "fooba", "foobar"};
	static const char *const out[] = {
		"", "my", "mzxq", "mzxw6", "mzxw6yq", "mzxw6ytb", "mzxw6ytboi"};
	for (size_t i = 0; i < sizeof(in) / sizeof(in[0]); i++) {
		char s[32];
		uint8_t b[32];
		size_t n = strlen(in[i]);
		lfs_base32_encode(s, (const uint8_t *)in[i], n);
		ck_assert_str_eq(s, out[i]);
		ck_assert_int_eq(lfs_base32_decode(b, out[i], strlen(out[i])),
				 (int)n);
		ck_assert_mem_eq(b, in[i], n);
	}
	uint8_t b[8];
	/* "mz": the two unused bits of 'z' (11001) are not zero. */
	ck_assert_int_eq(lfs_base32_decode(b, "mz", 2), -EINVAL);
	/* A lone character cannot encode a byte. */
	ck_assert_int_eq(lfs_base32_decode(b, "m", 1), -EINVAL);
	ck_assert_int_eq(lfs_base32_decode(b, "MY", 2), -EINVAL);
}
END_TEST

START_TEST(test_cmp_and_matches)
{
	struct lfs_cid a, b;
	lfs_cid_of(&a, LFS_CODEC_RAW, "hello", 5);
	lfs_cid_of(&b, LFS_CODEC_DAG_CBOR, "hello", 5);
	ck_assert_int_lt(lfs_cid_cmp(&a, &b), 0); /* 0x55 < 0x71 */
	ck_assert_int_gt(lfs_cid_cmp(&b, &a), 0);
	ck_assert(!lfs_cid_equal(&a, &b));
	b = a;
	ck_assert_int_eq(lfs_cid_cmp(&a, &b), 0);
	b.digest[31] ^= 1;
	ck_assert_int_ne(lfs_cid_cmp(&a, &b), 0);

	ck_assert(lfs_cid_matches(&a, "hello", 5));
	ck_assert(!lfs_cid_matches(&a, "hellO", 5));
	ck_assert(!lfs_cid_matches(&a, "hello", 4));
	ck_assert(!lfs_cid_matches(&b, "hello", 5));
}
END_TEST

static Suite *cid_suite(void)
{
	Suite *s = suite_create("cid");
	TCase *tc = tcase_create("core");
	tcase_add_test(tc, test_known_vectors);
	tcase_add_test(tc, test_binary);
	tcase_add_test(tc, test_binary_foreign);
	tcase_add_test(tc, test_string_round_trip);
	tcase_add_test(tc, test_string_foreign);
	tcase_add_test(tc, test_string_malformed);
	tcase_add_test(tc, test_base32_vectors);
	tcase_add_test(tc, test_cmp_and_matches);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	if (sodium_init() < 0)
		return 99;
	return lfs_check_run(cid_suite());
}
