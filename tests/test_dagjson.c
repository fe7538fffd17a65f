/*
 * Unit tests for dagjson: JSON <-> DAG-CBOR mapping (integers, reals, links,
 * bytes), base64, and the document printer.
 */
#include <check.h>
#include <errno.h>
#include <float.h>
#include <locale.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <sodium.h>

#include "arena.h"
#include "buf.h"
#include "cbor.h"
#include "cid.h"
#include "dagjson.h"
#include "check_util.h"

#define HELLO_CBOR "bafyreibm6jg3ux5qumhcn2b3flc3tyu6dmlb4xa7u5bf44yegnrjhc4yeq"

static struct lfs_arena arena;

static void setup(void)
{
	lfs_arena_init(&arena, 0);
}

static void teardown(void)
{
	lfs_arena_release(&arena);
}

static json_t *parse(const char *text)
{
	json_error_t e;
	json_t *j = json_loads(text, JSON_DECODE_ANY, &e);
	ck_assert_msg(j != NULL, "parse %s: %s", text, e.text);
	return j;
}

static char *tohex(const uint8_t *p, size_t n)
{
	char *s = malloc(n * 2 + 1);
	for (size_t i = 0; i < n; i++)
		sprintf(s + 2 * i, "%02x", p[i]);
	s[n * 2] = '\0';
	return s;
}

/* JSON text -> CBOR bytes (as hex, caller frees). */
static char *json_to_cbor_hex(const char *text)
{
	json_t *j = parse(text);
	struct lfs_cbor *v;
	struct lfs_buf b;
	ck_assert_int_eq(lfs_dagjson_to_cbor(&v, &arena, j), 0);
	lfs_buf_init(&b, 0);
	ck_assert_int_eq(lfs_cbor_encode(&b, v), 0);
	char *h = tohex(b.data, b.len);
	lfs_buf_release(&b);
	json_decref(j);
	return h;
}

/* JSON -> CBOR -> bytes -> CBOR -> JSON; returns the JSON at the end. */
static json_t *through_cbor(const json_t *j)
{
	struct lfs_cbor *v, *d;
	struct lfs_buf b;
	json_t *back = NULL;
	ck_assert_int_eq(lfs_dagjson_to_cbor(&v, &arena, j), 0);
	lfs_buf_init(&b, 0);
	ck_assert_int_eq(lfs_cbor_encode(&b, v), 0);
	ck_assert_int_eq(lfs_cbor_decode(&d, &arena, b.data, b.len), 0);
	ck_assert_int_eq(lfs_dagjson_from_cbor(&back, d), 0);
	lfs_buf_release(&b);
	return back;
}

/* Same kinds all the way down (json_equal treats 1 and 1.0 as different
 * too, but say so explicitly). */
static void assert_same_types(const json_t *a, const json_t *b)
{
	ck_assert_int_eq(json_typeof(a), json_typeof(b));
	if (json_is_array(a)) {
		for (size_t i = 0; i < json_array_size(a); i++)
			assert_same_types(json_array_get(a, i),
					  json_array_get(b, i));
	} else if (json_is_object(a)) {
		const char *k;
		json_t *v;
		json_object_foreach((json_t *)a, k, v)
		{
			assert_same_types(v, json_object_get(b, k));
		}
	}
}

/* ---- base64 ---- */

START_TEST(test_base64_rfc4648)
{
	static const char *const in[] = {"",     "f",     "fo",    "foo",
					 "foob", "fooba", "foobar"};
	static const char *const out[] = {
		"", "Zg", "Zm8", "Zm9v", "Zm9vYg", "Zm9vYmE", "Zm9vYmFy"};
	for (size_t i = 0; i < 7; i++) {
		char s[16];
		uint8_t b[16];
		size_t n = strlen(in[i]);
		ck_assert_uint_eq(lfs_base64_encoded_len(n), strlen(out[i]));
		lfs_base64_encode(s, (const uint8_t *)in[i], n);
		ck_assert_str_eq(s, out[i]);
		ck_assert_int_eq(lfs_base64_decode(b, out[i], strlen(out[i])),
				 (int)n);
		ck_assert_mem_eq(b, in[i], n);
	}
}
END_TEST

START_TEST(test_base64_all_bytes)
{
	uint8_t in[256], back[256];
	char s[400];
	for (int i = 0; i < 256; i++)
		in[i] = (uint8_t)i;
	for (size_t n = 0; n <= 256; n += 1) {
		lfs_base64_encode(s, in + 256 - n, n);
		ck_assert_uint_eq(strlen(s), lfs_base64_encoded_len(n));
		ck_assert_int_eq(lfs_base64_decode(back, s, strlen(s)), (int)n);
		ck_assert_mem_eq(back, in + 256 - n, n);
	}
	lfs_base64_encode(s, in + 0xf8, 8);
	ck_assert_str_eq(s, "+Pn6+/z9/v8");
}
END_TEST

START_TEST(test_base64_rejects)
{
	uint8_t b[16];
	static const char *const bad[] = {
		"Zg==",   /* padding */
		"Zm8=",   /* padding */
		"Z",      /* a lone sextet */
		"Zm9vY",  /* a lone sextet after a group */
		"Zh",     /* non-zero trailing bits */
		"Zm9",    /* non-zero trailing bits */
		"Zm-v",   /* URL-safe alphabet */
		"Zm_v",   /* URL-safe alphabet */
		"Zm9v\n", /* whitespace */
		"Zm 9v",  /* whitespace */
		"Zm9v!",  /* not base64 at all */
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		ck_assert_msg(lfs_base64_decode(b, bad[i], strlen(bad[i])) ==
				      -EINVAL,
			      "%s accepted", bad[i]);
	/* A NUL inside the given length is not base64. */
	ck_assert_int_eq(lfs_base64_decode(b, "Zm\0v", 4), -EINVAL);
}
END_TEST

/* ---- JSON <-> CBOR ---- */

static const char *const docs[] = {
	"{}",
	"[]",
	"null",
	"\"just a string\"",
	"{\"title\": \"milk\", \"done\": false, \"n\": 3}",
	"{\"a\": {\"b\": {\"c\": [1, 2.5, -3, [true, null, \"x\"]]}}, "
	"\"aa\": [], \"b\": {}}",
	"{\"ints\": [0, 1, -1, 23, 24, -24, -25, 255, 256, 65535, 65536, "
	"4294967295, 4294967296, 9223372036854775807, -9223372036854775808]}",
	"{\"reals\": [0.0, -0.0, 1.0, 0.1, 1e300, -1e-300, 5e-324, "
	"1.7976931348623157e308, 3.0, 100.0, 0.5]}",
	"{\"unicode\": \"\\u00fc \\u6c34 \\ud800\\udd51\", \"\\u00e9\": 1, "
	"\"ctl\": \"\\n\\t\\u0001\\\"\\\\/\"}",
	"{\"link\": {\"/\": \"" HELLO_CBOR
	"\"}, \"bytes\": {\"/\": {\"bytes\": "
	"\"Zm9vYmFy\"}}, \"list\": [{\"/\": \"" HELLO_CBOR "\"}]}",
	"{\"/\": \"not a cid\"}",
	"{\"/\": {\"bytes\": \"Zg==\"}}",
	"{\"/\": {\"bytes\": \"Zm9v\", \"extra\": 1}}",
	"{\"/\": \"" HELLO_CBOR "\", \"x\": 1}",
	"{\"/\": 5}",
};

START_TEST(test_round_trip_docs)
{
	json_t *j = parse(docs[_i]);
	json_t *back = through_cbor(j);
	ck_assert_msg(json_equal(j, back), "%s changed", docs[_i]);
	assert_same_types(j, back);
	json_decref(back);
	json_decref(j);
}
END_TEST

START_TEST(test_exact_bytes)
{
	static const struct {
		const char *json, *hex;
	} cases[] = {
		{"{\"a\":1,\"b\":1.0}", "a261610161 62fb3ff0000000000000"},
		{"1", "01"},
		{"1.0", "fb3ff0000000000000"},
		{"-0.0", "fb8000000000000000"},
		{"0.1", "fb3fb999999999999a"},
		{"-9223372036854775808", "3b7fffffffffffffff"},
		{"[true,false,null]", "83f5f4f6"},
		{"{\"aa\":1,\"b\":2}", "a2616202626161 01"},
		{"{\"/\":{\"bytes\":\"Zm9v\"}}", "43666f6f"},
		{"{\"/\":{\"bytes\":\"\"}}", "40"},
		{"{\"/\":\"" HELLO_CBOR "\"}",
		 "d82a582500017112202cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1f"
		 "a7425e73043362938b9824"},
		{"{\"/\":\"nope\"}", "a1612f646e6f7065"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *h = json_to_cbor_hex(cases[i].json);
		char want[256];
		size_t n = 0;
		for (const char *p = cases[i].hex; *p; p++)
			if (*p != ' ')
				want[n++] = *p;
		want[n] = '\0';
		ck_assert_msg(strcmp(h, want) == 0, "%s: %s != %s",
			      cases[i].json, h, want);
		free(h);
	}
}
END_TEST

START_TEST(test_links_and_bytes)
{
	struct lfs_cbor *v;
	json_t *j = parse("{\"/\": \"" HELLO_CBOR "\"}");
	ck_assert_int_eq(lfs_dagjson_to_cbor(&v, &arena, j), 0);
	ck_assert_int_eq(v->type, LFS_CBOR_LINK);
	struct lfs_cid c;
	lfs_cid_of(&c, LFS_CODEC_DAG_CBOR, "hello", 5);
	ck_assert(lfs_cid_equal(&v->u.link, &c));
	json_decref(j);

	j = parse("{\"/\": {\"bytes\": \"AAEC/w\"}}");
	ck_assert_int_eq(lfs_dagjson_to_cbor(&v, &arena, j), 0);
	ck_assert_int_eq(v->type, LFS_CBOR_BYTES);
	ck_assert_uint_eq(v->u.str.len, 4);
	ck_assert_mem_eq(v->u.str.data, "\x00\x01\x02\xff", 4);
	json_decref(j);

	/* Shapes that only look similar stay maps. */
	static const char *const maps[] = {
		"{\"/\": \"not a cid\"}",
		"{\"/\": \"QmaozNR7DZHQK1ZcU9p7QdrshMvXqWK6gpu5rmrkPdT3L4\"}",
		"{\"/\": \"" HELLO_CBOR "\", \"x\": 1}",
		"{\"/\": {\"bytes\": \"Zg==\"}}",
		"{\"/\": {\"bytes\": \"!!\"}}",
		"{\"/\": {\"bytes\": 5}}",
		"{\"/\": {\"bytes\": \"Zm9v\", \"x\": 1}}",
		"{\"/\": {}}",
		"{\"/\": null}",
		"{\"x\": \"" HELLO_CBOR "\"}",
	};
	for (size_t i = 0; i < sizeof(maps) / sizeof(maps[0]); i++) {
		j = parse(maps[i]);
		ck_assert_int_eq(lfs_dagjson_to_cbor(&v, &arena, j), 0);
		ck_assert_msg(v->type == LFS_CBOR_MAP, "%s", maps[i]);
		json_decref(j);
	}

	/* A string with a valid CID before a NUL is not a link. */
	char text[LFS_CID_STRLEN + 3];
	memcpy(text, HELLO_CBOR, LFS_CID_STRLEN);
	memcpy(text + LFS_CID_STRLEN, "\0x", 2);
	j = json_pack("{s:s%}", "/", text, (size_t)LFS_CID_STRLEN + 2);
	ck_assert_ptr_nonnull(j);
	ck_assert_int_eq(lfs_dagjson_to_cbor(&v, &arena, j), 0);
	ck_assert_int_eq(v->type, LFS_CBOR_MAP);
	json_t *back = through_cbor(j);
	ck_assert(json_equal(j, back));
	json_decref(back);
	json_decref(j);
}
END_TEST

START_TEST(test_cbor_to_json)
{
	struct lfs_cbor *v;
	json_t *j;
	struct lfs_cid c;
	lfs_cid_of(&c, LFS_CODEC_RAW, "hello", 5);

	struct lfs_cbor *m = lfs_cbor_map(&arena, 4);
	lfs_cbor_map_put(&arena, m, "l", lfs_cbor_link(&arena, &c));
	lfs_cbor_map_put(&arena, m, "b", lfs_cbor_bytes(&arena, "foob", 4));
	lfs_cbor_map_put(&arena, m, "f", lfs_cbor_float(&arena, 2.0));
	lfs_cbor_map_put(&arena, m, "i", lfs_cbor_int(&arena, INT64_MIN));
	ck_assert_int_eq(lfs_dagjson_from_cbor(&j, m), 0);
	json_t *want = parse("{\"l\": {\"/\": \"bafkreibm6jg3ux5qumhcn2b3flc3"
			     "tyu6dmlb4xa7u5bf44yegnrjhc4yeq\"}, \"b\": {\"/\":"
			     " {\"bytes\": \"Zm9vYg\"}}, \"f\": 2.0, \"i\": "
			     "-9223372036854775808}");
	ck_assert(json_equal(j, want));
	ck_assert(json_is_real(json_object_get(j, "f")));
	ck_assert(json_is_integer(json_object_get(j, "i")));
	json_decref(want);
	json_decref(j);

	/* Integers outside int64 have no JSON form here. */
	v = lfs_cbor_uint(&arena, UINT64_MAX);
	ck_assert_int_eq(lfs_dagjson_from_cbor(&j, v), -ERANGE);
	v = lfs_cbor_uint(&arena, (uint64_t)INT64_MAX + 1);
	ck_assert_int_eq(lfs_dagjson_from_cbor(&j, v), -ERANGE);
	v = lfs_cbor_uint(&arena, UINT64_MAX);
	v->u.integer.negative = true;
	ck_assert_int_eq(lfs_dagjson_from_cbor(&j, v), -ERANGE);
	/* ...also deep inside, with nothing leaked. */
	struct lfs_cbor *arr = lfs_cbor_array(&arena, 3);
	lfs_cbor_array_push(arr, lfs_cbor_string(&arena, "x", 1));
	lfs_cbor_array_push(arr, lfs_cbor_map(&arena, 0));
	lfs_cbor_array_push(arr, lfs_cbor_uint(&arena, UINT64_MAX));
	ck_assert_int_eq(lfs_dagjson_from_cbor(&j, arr), -ERANGE);

	/* A decoded block: 2^64-1 refused, INT64_MAX kept. */
	static const uint8_t big[] = {0xa1, 0x61, 0x6e, 0x1b, 0xff, 0xff,
				      0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
	ck_assert_int_eq(lfs_cbor_decode(&v, &arena, big, sizeof(big)), 0);
	ck_assert_int_eq(lfs_dagjson_from_cbor(&j, v), -ERANGE);
	static const uint8_t max[] = {0x1b, 0x7f, 0xff, 0xff, 0xff,
				      0xff, 0xff, 0xff, 0xff};
	ck_assert_int_eq(lfs_cbor_decode(&v, &arena, max, sizeof(max)), 0);
	ck_assert_int_eq(lfs_dagjson_from_cbor(&j, v), 0);
	ck_assert_int_eq(json_integer_value(j), INT64_MAX);
	json_decref(j);

	/* Values DAG-CBOR cannot hold. */
	v = lfs_cbor_float(&arena, 1.0);
	v->u.real = HUGE_VAL;
	ck_assert_int_eq(lfs_dagjson_from_cbor(&j, v), -EINVAL);
	v = lfs_cbor_string(&arena, "\xff", 1);
	ck_assert_int_eq(lfs_dagjson_from_cbor(&j, v), -EINVAL);
}
END_TEST

/* A CBOR map {"/": "<cid>"} is shown as a link (documented ambiguity). */
START_TEST(test_slash_map_ambiguity)
{
	struct lfs_cbor *m = lfs_cbor_map(&arena, 1), *v;
	lfs_cbor_map_put(&arena, m, "/",
			 lfs_cbor_string(&arena, HELLO_CBOR, LFS_CID_STRLEN));
	json_t *j;
	ck_assert_int_eq(lfs_dagjson_from_cbor(&j, m), 0);
	ck_assert_int_eq(lfs_dagjson_to_cbor(&v, &arena, j), 0);
	ck_assert_int_eq(v->type, LFS_CBOR_LINK);
	json_decref(j);
}
END_TEST

START_TEST(test_json_rejects)
{
	struct lfs_cbor *v;
	json_t *j;

	/* Invalid UTF-8 (jansson's _nocheck calls skip validation): the
	 * conversion leaves the check to the encoding, which refuses. */
	struct lfs_buf out;
	lfs_buf_init(&out, 0);
	j = json_string_nocheck("\xc0\x80");
	ck_assert_int_eq(lfs_dagjson_to_cbor(&v, &arena, j), 0);
	ck_assert_int_eq(lfs_cbor_encode(&out, v), -EINVAL);
	json_decref(j);
	j = json_object();
	json_object_set_new_nocheck(j, "\xed\xa0\x80", json_null());
	ck_assert_int_eq(lfs_dagjson_to_cbor(&v, &arena, j), 0);
	lfs_buf_reset(&out);
	ck_assert_int_eq(lfs_cbor_encode(&out, v), -EINVAL);
	json_decref(j);
	lfs_buf_release(&out);

	/* Nesting: the same limit as the CBOR codec. */
	j = json_array();
	for (int i = 0; i < LFS_CBOR_MAX_DEPTH; i++) {
		json_t *outer = json_array();
		json_array_append_new(outer, j);
		j = outer;
	}
	ck_assert_int_eq(lfs_dagjson_to_cbor(&v, &arena, j), 0);
	json_t *outer = json_array();
	json_array_append_new(outer, j);
	ck_assert_int_eq(lfs_dagjson_to_cbor(&v, &arena, outer), -EINVAL);
	json_decref(outer);

	/* A capped arena gives -ENOMEM. */
	struct lfs_arena small;
	lfs_arena_init(&small, 2048);
	j = json_array();
	for (int i = 0; i < 1000; i++)
		json_array_append_new(j, json_integer(i));
	ck_assert_int_eq(lfs_dagjson_to_cbor(&v, &small, j), -ENOMEM);
	json_decref(j);
	lfs_arena_release(&small);
}
END_TEST

/* ---- the printer ---- */

static char *dump(const json_t *j)
{
	struct lfs_buf b;
	size_t n;
	lfs_buf_init(&b, 0);
	ck_assert_int_eq(lfs_dagjson_dump(&b, j), 0);
	ck_assert_int_eq(lfs_buf_append_byte(&b, 0), 0);
	char *s = (char *)lfs_buf_steal(&b, &n);
	ck_assert_uint_eq(strlen(s) + 1, n);
	return s;
}

static void assert_real_prints(double d, const char *want)
{
	json_t *j = json_real(d);
	char *s = dump(j);
	char w[64];
	snprintf(w, sizeof(w), "%s\n", want);
	ck_assert_str_eq(s, w);
	/* ...and reads back as the same real, bit for bit. */
	json_error_t e;
	json_t *back = json_loads(s, JSON_DECODE_ANY, &e);
	ck_assert_ptr_nonnull(back);
	ck_assert(json_is_real(back));
	double r = json_real_value(back);
	ck_assert(memcmp(&r, &d, sizeof(d)) == 0);
	json_decref(back);
	free(s);
	json_decref(j);
}

START_TEST(test_dump_reals)
{
	assert_real_prints(0.1, "0.1");
	assert_real_prints(1.0, "1.0");
	assert_real_prints(1.0 / 3, "0.3333333333333333");
	assert_real_prints(2.0 / 3, "0.6666666666666666");
	assert_real_prints(-0.0, "-0.0");
	assert_real_prints(0.0, "0.0");
	assert_real_prints(5e-324, "5e-324");
	assert_real_prints(1e300, "1e+300");
	assert_real_prints(-1e-300, "-1e-300");
	assert_real_prints(100.0, "100.0");
	assert_real_prints(1e16, "1e+16");
	assert_real_prints(1e15, "1000000000000000.0");
	assert_real_prints(-1234.5, "-1234.5");
	assert_real_prints(0.0001, "0.0001");
	assert_real_prints(0.00001, "1e-05");
	assert_real_prints(1.5e20, "1.5e+20");
	assert_real_prints(123456.0, "123456.0");
	assert_real_prints(0.1 + 0.2, "0.30000000000000004");
	assert_real_prints(1.5, "1.5");
	assert_real_prints(-2.5e-5, "-2.5e-05");
	assert_real_prints(DBL_MAX, "1.7976931348623157e+308");
	assert_real_prints(DBL_MIN, "2.2250738585072014e-308");
	assert_real_prints(9007199254740993.0, "9007199254740992.0");
	assert_real_prints(123456789012345678.0, "1.2345678901234568e+17");
}
END_TEST

START_TEST(test_dump_reals_random)
{
	/* Any finite double prints in at most 17 digits and reads back. */
	for (int i = 0; i < 20000; i++) {
		double d;
		do {
			uint64_t bits;
			randombytes_buf(&bits, sizeof(bits));
			memcpy(&d, &bits, sizeof(d));
		} while (!isfinite(d));
		json_t *j = json_real(d);
		char *s = dump(j);
		double back = strtod(s, NULL);
		ck_assert_msg(memcmp(&back, &d, sizeof(d)) == 0, "%s", s);
		ck_assert(strpbrk(s, ".e") != NULL);
		free(s);
		json_decref(j);
	}
}
END_TEST

START_TEST(test_dump_scalars)
{
	static const struct {
		const char *json, *want;
	} cases[] = {
		{"null", "null\n"},
		{"true", "true\n"},
		{"false", "false\n"},
		{"0", "0\n"},
		{"-1", "-1\n"},
		{"9223372036854775807", "9223372036854775807\n"},
		{"-9223372036854775808", "-9223372036854775808\n"},
		{"\"\"", "\"\"\n"},
		{"{}", "{}\n"},
		{"[]", "[]\n"},
		{"\"a/b \\u00e9 \\u6c34 \\ud83d\\ude00\"",
		 "\"a/b \xc3\xa9 \xe6\xb0\xb4 \xf0\x9f\x98\x80\"\n"},
		{"\"q\\\"b\\\\n\\nt\\tr\\rb\\bf\\f\\u0001\\u001f\\u007f\"",
		 "\"q\\\"b\\\\n\\nt\\tr\\rb\\bf\\f\\u0001\\u001F\x7f\"\n"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		json_t *j = parse(cases[i].json);
		char *s = dump(j);
		ck_assert_str_eq(s, cases[i].want);
		free(s);
		json_decref(j);
	}

	/* A NUL inside a string. */
	json_t *j = json_stringn("a\0b", 3);
	char *s = dump(j);
	ck_assert_str_eq(s, "\"a\\u0000b\"\n");
	free(s);
	json_decref(j);
}
END_TEST

START_TEST(test_dump_pretty)
{
	json_t *j = parse("{\"b\": [1, 2.5, {\"z\": null, \"a\": true}], "
			  "\"a\": {}, \"c\": [], \"d\": \"x\\\"y\\\\z\\n\", "
			  "\"aa\": false, \"B\": [[]], \"\\u00e9\": 0.1, "
			  "\"e\": {\"f\": {\"g\": [1.0]}}}");
	char *s = dump(j);
	ck_assert_str_eq(s, "{\n"
			    "  \"B\": [\n"
			    "    []\n"
			    "  ],\n"
			    "  \"a\": {},\n"
			    "  \"aa\": false,\n"
			    "  \"b\": [\n"
			    "    1,\n"
			    "    2.5,\n"
			    "    {\n"
			    "      \"a\": true,\n"
			    "      \"z\": null\n"
			    "    }\n"
			    "  ],\n"
			    "  \"c\": [],\n"
			    "  \"d\": \"x\\\"y\\\\z\\n\",\n"
			    "  \"e\": {\n"
			    "    \"f\": {\n"
			    "      \"g\": [\n"
			    "        1.0\n"
			    "      ]\n"
			    "    }\n"
			    "  },\n"
			    "  \"\xc3\xa9\": 0.1\n"
			    "}\n");
	json_error_t e;
	json_t *back = json_loads(s, 0, &e);
	ck_assert_ptr_nonnull(back);
	ck_assert(json_equal(j, back));
	json_decref(back);
	free(s);
	json_decref(j);
}
END_TEST

/* An added key takes its place in the order, or that of the key of its
 * name; the object itself is not changed. */
START_TEST(test_dump_with)
{
	json_t *id = json_string("x/1");
	struct lfs_buf b;
	lfs_buf_init(&b, 0);
	json_t *j = parse("{\"b\": 1, \"_a\": 2, \"A\": 3}");
	ck_assert_int_eq(lfs_dagjson_dump_with(&b, j, "_id", id), 0);
	lfs_buf_append_byte(&b, 0);
	ck_assert_str_eq((char *)b.data,
			 "{\n  \"A\": 3,\n  \"_a\": 2,\n"
			 "  \"_id\": \"x/1\",\n  \"b\": 1\n}\n");
	ck_assert_uint_eq(json_object_size(j), 3);
	json_decref(j);
	lfs_buf_reset(&b);
	j = parse("{\"_id\": \"other\", \"k\": [1]}");
	ck_assert_int_eq(lfs_dagjson_dump_with(&b, j, "_id", id), 0);
	lfs_buf_append_byte(&b, 0);
	ck_assert_str_eq((char *)b.data,
			 "{\n  \"_id\": \"x/1\",\n  \"k\": [\n    1\n  ]\n}\n");
	json_decref(j);
	lfs_buf_reset(&b);
	j = parse("{}");
	ck_assert_int_eq(lfs_dagjson_dump_with(&b, j, "_id", id), 0);
	lfs_buf_append_byte(&b, 0);
	ck_assert_str_eq((char *)b.data, "{\n  \"_id\": \"x/1\"\n}\n");
	json_decref(j);
	/* More keys than the printer's room on its stack. */
	j = json_object();
	for (int i = 0; i < 40; i++) {
		char k[8];
		snprintf(k, sizeof(k), "k%02d", 39 - i);
		json_object_set_new(j, k, json_integer(i));
	}
	lfs_buf_reset(&b);
	ck_assert_int_eq(lfs_dagjson_dump_with(&b, j, "k20", id), 0);
	json_object_set(j, "k20", id);
	char *want = dump(j);
	ck_assert_uint_eq(b.len, strlen(want));
	ck_assert(!memcmp(b.data, want, b.len));
	free(want);
	json_t *arr = json_array();
	ck_assert_int_eq(lfs_dagjson_dump_with(&b, arr, "_id", id), -EINVAL);
	json_decref(arr);
	json_decref(j);
	json_decref(id);
	lfs_buf_release(&b);
}
END_TEST

static int jansson_cb(const char *p, size_t n, void *data)
{
	return lfs_buf_append(data, p, n) ? -1 : 0;
}

/* Without reals the printer must agree with jansson byte for byte. */
START_TEST(test_dump_matches_jansson)
{
	static const char *const texts[] = {
		"{\"title\": \"milk\", \"done\": false, \"n\": 3, \"tags\": "
		"[\"a\", [], {}, [1, [2, [3]]]], \"_id\": \"x\"}",
		"{\"ab\": 1, \"a\": 2, \"abc\": 3, \"b\": 4, \"A\": 5, "
		"\"\\u00e9\": 6, \"\": 7, \"~\": 8}",
		"[{\"k\": \"\\u0000\\u0008\\u001b\\\"\\\\/\\u2028\"}]",
		"{\"k\\u0000a\": 1, \"k\": 2, \"k\\u0001\": 3}",
	};
	for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
		json_error_t e;
		json_t *j = json_loads(texts[i], JSON_ALLOW_NUL, &e);
		if (!j) /* NUL in keys needs a jansson that allows it */
			continue;
		struct lfs_buf b;
		lfs_buf_init(&b, 0);
		ck_assert_int_eq(
			json_dump_callback(j, jansson_cb, &b,
					   JSON_INDENT(2) | JSON_SORT_KEYS),
			0);
		lfs_buf_append(&b, "\n", 2);
		char *s = dump(j);
		ck_assert_str_eq(s, (char *)b.data);
		free(s);
		lfs_buf_release(&b);
		json_decref(j);
	}
}
END_TEST

START_TEST(test_dump_errors)
{
	struct lfs_buf b;

	/* Nesting past the printer's limit: refused, nothing appended. */
	json_t *j = json_array();
	for (int i = 0; i < 3000; i++) {
		json_t *outer = json_array();
		json_array_append_new(outer, j);
		j = outer;
	}
	lfs_buf_init(&b, 0);
	lfs_buf_append_str(&b, "keep");
	ck_assert_int_eq(lfs_dagjson_dump(&b, j), -EINVAL);
	ck_assert_uint_eq(b.len, 4);
	lfs_buf_release(&b);
	json_decref(j);

	/* The buffer's cap. */
	j = parse("{\"a\": \"0123456789abcdef\"}");
	lfs_buf_init(&b, 16);
	ck_assert_int_eq(lfs_dagjson_dump(&b, j), -EFBIG);
	lfs_buf_release(&b);
	json_decref(j);
}
END_TEST

START_TEST(test_dump_locale)
{
	/* A locale with a decimal comma must not leak into documents. */
	static const char *const names[] = {"de_DE.UTF-8", "fr_FR.UTF-8",
					    "de_DE", "fr_FR"};
	const char *set = NULL;
	for (size_t i = 0; i < 4 && !set; i++)
		set = setlocale(LC_NUMERIC, names[i]);
	if (!set) {
		/* not installed here: nothing to check */
		return;
	}
	json_t *j = json_real(0.5);
	char *s = dump(j);
	setlocale(LC_NUMERIC, "C");
	ck_assert_str_eq(s, "0.5\n");
	free(s);
	json_decref(j);
}
END_TEST

static Suite *dagjson_suite(void)
{
	Suite *s = suite_create("dagjson");
	TCase *tc = tcase_create("base64");
	tcase_add_test(tc, test_dump_with);
	tcase_add_test(tc, test_base64_rfc4648);
	tcase_add_test(tc, test_base64_all_bytes);
	tcase_add_test(tc, test_base64_rejects);
	suite_add_tcase(s, tc);

	tc = tcase_create("mapping");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_loop_test(tc, test_round_trip_docs, 0,
			    sizeof(docs) / sizeof(docs[0]));
	tcase_add_test(tc, test_exact_bytes);
	tcase_add_test(tc, test_links_and_bytes);
	tcase_add_test(tc, test_cbor_to_json);
	tcase_add_test(tc, test_slash_map_ambiguity);
	tcase_add_test(tc, test_json_rejects);
	suite_add_tcase(s, tc);

	tc = tcase_create("dump");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_dump_reals);
	tcase_add_test(tc, test_dump_reals_random);
	tcase_add_test(tc, test_dump_scalars);
	tcase_add_test(tc, test_dump_pretty);
	tcase_add_test(tc, test_dump_matches_jansson);
	tcase_add_test(tc, test_dump_errors);
	tcase_add_test(tc, test_dump_locale);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	if (sodium_init() < 0)
		return 99;
	return lfs_check_run(dagjson_suite());
}
