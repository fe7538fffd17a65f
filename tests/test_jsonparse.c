/*
 * Unit tests for jsonparse: lfs_json_parse gives exactly what json_loadb
 * gives with the same flags (the value, keys in order, reals to the bit;
 * or NULL and jansson's own error) on fixed texts, on random documents
 * printed with random spacing and escapes, and on random damage to them,
 * under each set of flags the project reads with. Random cases print
 * their seed (replay: LFS_TEST_SEED=N).
 */
#include <check.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "buf.h"
#include "check_util.h"
#include "jsonparse.h"
#include "json_same.h"

static unsigned seed_base;

/* The flag sets the project reads with, and more. */
static const size_t flag_sets[] = {
	JSON_REJECT_DUPLICATES,
	JSON_ALLOW_NUL,
	JSON_DECODE_ANY | JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL,
	0,
	JSON_DECODE_INT_AS_REAL, /* not this reader's: all jansson's */
};
#define NSETS (sizeof(flag_sets) / sizeof(flag_sets[0]))
static size_t flags;

/* Texts this reader read itself, of those jansson accepted. */
static size_t own_read, accepted;

/* Both readers on text: the same value, or both NULL with one error. */
static void agree(const char *text, size_t len)
{
	json_t *own = lfs_json_parse_own(text, len, flags);
	own_read += own != NULL;
	json_decref(own);
	json_error_t e1, e2;
	json_t *mine = lfs_json_parse(text, len, flags, &e1);
	json_t *ref = json_loadb(text, len, flags, &e2);
	if (!ref) {
		ck_assert_msg(!mine, "accepted what jansson refuses: %.*s",
			      (int)len, text);
		ck_assert_str_eq(e1.text, e2.text);
		ck_assert_int_eq(e1.line, e2.line);
		ck_assert_int_eq(e1.column, e2.column);
		ck_assert_int_eq(e1.position, e2.position);
	} else {
		accepted++;
		ck_assert_msg(mine != NULL, "refused what jansson reads: %.*s",
			      (int)len, text);
		ck_assert_msg(lfs_json_same(mine, ref), "read otherwise: %.*s",
			      (int)len, text);
	}
	json_decref(mine);
	json_decref(ref);
}

static void agree_str(const char *text)
{
	agree(text, strlen(text));
}

START_TEST(test_fixed)
{
	flags = flag_sets[_i];
	static const char *const texts[] = {
		"{}",
		"[]",
		" \t\r\n{ } \n",
		"{\"a\":1}",
		"[1,2,3]",
		"{\"a\": {\"b\": [true, false, null, \"x\"]}, \"c\": -0}",
		"[0, -0, 1, -1, 9223372036854775807, -9223372036854775808]",
		"[9223372036854775808]",
		"[-9223372036854775809]",
		"[99999999999999999999]",
		"[0.5, -0.0, 1e5, 1E+5, 1e-5, 2.5e300]",
		"[1e400]",
		"[-1e400]",
		"[1e-400]",
		"[4.9e-324]",
		"[0.1, 0.30000000000000004, 123456789012345678901234567890.5]",
		"[1.5e]",
		"[1.]",
		"[.5]",
		"[01]",
		"[-]",
		"[-01]",
		"[+1]",
		"[1e+]",
		"[0x10]",
		"[Infinity]",
		"[NaN]",
		"[1 2]",
		"{\"a\":1,\"a\":2}",
		"{\"a\":1,\"b\":2,\"a\":3}",
		"{\"\\u0061\":1,\"a\":2}",
		"{\"a\":1,}",
		"[1,]",
		"{,}",
		"[,1]",
		"{\"a\" 1}",
		"{\"a\":}",
		"{1:2}",
		"{'a':1}",
		"[\"\\u0000\"]",
		"{\"\\u0000\":1}",
		"[\"\\ud800\"]",
		"[\"\\udc00\"]",
		"[\"\\ud800\\u0041\"]",
		"[\"\\ud83d\\ude00\"]",
		"[\"\\uD83D\\uDE00\"]",
		"[\"\\u00e9\\u20ac\\u0041\"]",
		"[\"\\x41\"]",
		"[\"\\a\"]",
		"[\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"]",
		"[\"\\u12\"]",
		"[\"\\u12g4\"]",
		"[\"a\tb\"]",
		"[\"a\nb\"]",
		"[\"caf\xc3\xa9\"]",
		"[\"\xc3\"]",
		"[\"\xc0\xaf\"]",
		"[\"\xed\xa0\x80\"]",
		"[\"\xf4\x90\x80\x80\"]",
		"[\"\xff\"]",
		"[\"abc",
		"[\"abc\\",
		"[\"abc\\u00",
		"{",
		"[",
		"",
		"   ",
		"\"x\"",
		"1",
		"true",
		"null",
		"{} {}",
		"{}x",
		"[] ",
		"\xef\xbb\xbf{}",
		"[tru]",
		"[nul]",
		"[falsey]",
		"[true false]",
		"{\"a\":[{\"b\":[{\"c\":[]}]}]}",
		"[\"\x7f\"]",
		"[\"0123456789abcdef0123456789abcdef\\n0123456789abcdef\"]",
		"{\"k\\\"ey\":\"v\\\\al\"}",
	};
	for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++)
		agree_str(texts[i]);
	/* A NUL byte in the text, inside a string and outside. */
	agree("[\"a\0b\"]", 7);
	agree("[1]\0", 4);
	agree("{\"a\":\0}", 7);
	/* What this reader takes itself (the rest, jansson reads). */
	static const char *const own[] = {
		" {\"a\": [1, -2, 0.5, -0.0, 1e5, true, false, null]} ",
		"{\"\\u00e9\\ud83d\\ude00\\n\": \"caf\xc3\xa9 \\\"q\\\"\"}",
		"[-9223372036854775808, 9223372036854775807, 4.9e-324]",
	};
	for (size_t i = 0; i < sizeof(own) / sizeof(own[0]); i++) {
		json_t *j = lfs_json_parse_own(own[i], strlen(own[i]), flags);
		ck_assert_msg((j != NULL) == !(flags & JSON_DECODE_INT_AS_REAL),
			      "left to jansson: %s", own[i]);
		json_decref(j);
	}
}
END_TEST

/* Nesting either side of this reader's own limit, and of jansson's. */
START_TEST(test_deep)
{
	flags = flag_sets[_i];
	int depths[] = {1, 100, 511, 512, 513, 600, 2047, 2048, 2049, 3000};
	for (size_t k = 0; k < sizeof(depths) / sizeof(depths[0]); k++) {
		int d = depths[k];
		struct lfs_buf b;
		lfs_buf_init(&b, 0);
		for (int i = 0; i < d; i++)
			lfs_buf_append_str(&b, i % 2 ? "{\"k\":" : "[");
		lfs_buf_append_str(&b, "1");
		for (int i = d - 1; i >= 0; i--)
			lfs_buf_append_str(&b, i % 2 ? "}" : "]");
		agree((const char *)b.data, b.len);
		lfs_buf_release(&b);
	}
}
END_TEST

/* ---- random documents ---- */

static uint32_t rnd(uint64_t *s)
{
	*s = *s * 6364136223846793005ull + 1442695040888963407ull;
	return (uint32_t)(*s >> 33);
}

static void put_char(struct lfs_buf *b, uint64_t *s, uint32_t cp)
{
	/* Sometimes escaped, sometimes raw UTF-8. */
	bool esc = cp < 0x20 || cp == '"' || cp == '\\' || rnd(s) % 4 == 0;
	char tmp[16];
	if (esc && cp >= 0x10000) {
		uint32_t v = cp - 0x10000;
		snprintf(tmp, sizeof(tmp), "\\u%04X\\u%04x", 0xd800 + (v >> 10),
			 0xdc00 + (v & 0x3ff));
		lfs_buf_append_str(b, tmp);
		return;
	}
	if (esc) {
		const char *simple = NULL;
		switch (cp) {
		case '"':
			simple = "\\\"";
			break;
		case '\\':
			simple = "\\\\";
			break;
		case '\n':
			simple = "\\n";
			break;
		case '\t':
			simple = "\\t";
			break;
		case '/':
			simple = "\\/";
			break;
		}
		if (simple && rnd(s) % 2) {
			lfs_buf_append_str(b, simple);
			return;
		}
		snprintf(tmp, sizeof(tmp), rnd(s) % 2 ? "\\u%04x" : "\\u%04X",
			 cp);
		lfs_buf_append_str(b, tmp);
		return;
	}
	uint8_t u[4];
	size_t n;
	if (cp < 0x80) {
		u[0] = (uint8_t)cp;
		n = 1;
	} else if (cp < 0x800) {
		u[0] = (uint8_t)(0xc0 | cp >> 6);
		u[1] = (uint8_t)(0x80 | (cp & 0x3f));
		n = 2;
	} else if (cp < 0x10000) {
		u[0] = (uint8_t)(0xe0 | cp >> 12);
		u[1] = (uint8_t)(0x80 | (cp >> 6 & 0x3f));
		u[2] = (uint8_t)(0x80 | (cp & 0x3f));
		n = 3;
	} else {
		u[0] = (uint8_t)(0xf0 | cp >> 18);
		u[1] = (uint8_t)(0x80 | (cp >> 12 & 0x3f));
		u[2] = (uint8_t)(0x80 | (cp >> 6 & 0x3f));
		u[3] = (uint8_t)(0x80 | (cp & 0x3f));
		n = 4;
	}
	lfs_buf_append(b, u, n);
}

static void put_string(struct lfs_buf *b, uint64_t *s, bool key)
{
	lfs_buf_append_byte(b, '"');
	/* Keys from a few letters, so duplicates come up. */
	size_t n = key ? 1 + rnd(s) % 2 : rnd(s) % 40;
	for (size_t i = 0; i < n; i++) {
		uint32_t cp, k = rnd(s) % 16;
		if (key)
			cp = 'a' + rnd(s) % 4;
		else if (k < 9)
			cp = 0x20 + rnd(s) % 0x5f;
		else if (k < 11)
			cp = rnd(s) % 0x20; /* \u0000 too */
		else if (k < 13)
			cp = 0x80 + rnd(s) % 0x780;
		else if (k < 15)
			cp = 0x800 + rnd(s) % 0xf800;
		else
			cp = 0x10000 + rnd(s) % 0x100000;
		if (cp >= 0xd800 && cp <= 0xdfff)
			cp = 0xfffd;
		put_char(b, s, cp);
	}
	lfs_buf_append_byte(b, '"');
}

static void put_space(struct lfs_buf *b, uint64_t *s)
{
	static const char sp[] = " \t\n\r";
	while (rnd(s) % 3 == 0)
		lfs_buf_append_byte(b, sp[rnd(s) % 4]);
}

static void put_value(struct lfs_buf *b, uint64_t *s, int depth)
{
	char tmp[64];
	uint32_t k = rnd(s) % (depth > 6 ? 6 : 8);
	put_space(b, s);
	switch (k) {
	case 0:
		lfs_buf_append_str(b, (const char *[]){"true", "false",
						       "null"}[rnd(s) % 3]);
		break;
	case 1: {
		int64_t v = (int64_t)((uint64_t)rnd(s) << 32 | rnd(s));
		snprintf(tmp, sizeof(tmp), "%lld",
			 (long long)(rnd(s) % 2 ? v : v % 1000));
		lfs_buf_append_str(b, tmp);
		break;
	}
	case 2: {
		static const char *const fmt[] = {"%.17g", "%g", "%.3f", "%e",
						  "%.1E"};
		double d = ldexp((double)rnd(s) - 2147483648.0,
				 (int)(rnd(s) % 200) - 100);
		snprintf(tmp, sizeof(tmp), fmt[rnd(s) % 5], d);
		lfs_buf_append_str(b, tmp);
		break;
	}
	case 3:
	case 4:
	case 5:
		put_string(b, s, false);
		break;
	case 6: {
		lfs_buf_append_byte(b, '[');
		size_t n = rnd(s) % 5;
		for (size_t i = 0; i < n; i++) {
			if (i)
				lfs_buf_append_byte(b, ',');
			put_value(b, s, depth + 1);
		}
		put_space(b, s);
		lfs_buf_append_byte(b, ']');
		break;
	}
	default: {
		lfs_buf_append_byte(b, '{');
		size_t n = rnd(s) % 6;
		for (size_t i = 0; i < n; i++) {
			if (i)
				lfs_buf_append_byte(b, ',');
			put_space(b, s);
			put_string(b, s, true);
			put_space(b, s);
			lfs_buf_append_byte(b, ':');
			put_value(b, s, depth + 1);
		}
		put_space(b, s);
		lfs_buf_append_byte(b, '}');
		break;
	}
	}
	put_space(b, s);
}

/* Random documents, then each with random damage: a byte changed,
 * dropped, doubled or cut off there. */
START_TEST(test_random)
{
	unsigned seed = seed_base + (unsigned)_i * 7919u;
	flags = flag_sets[_i % NSETS];
	printf("test_jsonparse: seed %u (replay: LFS_TEST_SEED=%u)\n", seed,
	       seed_base);
	uint64_t s = seed;
	static const char damage[] = "{}[]\",:\\ute0.-+\x80\xc3\x01";
	for (int round = 0; round < 400; round++) {
		struct lfs_buf b;
		lfs_buf_init(&b, 0);
		/* An object or an array at the top, or (when the flags let
		 * it) anything. */
		do {
			b.len = 0;
			put_value(&b, &s, 0);
			lfs_buf_append_byte(&b, 0); /* for strspn */
			b.len--;
		} while (!(flags & JSON_DECODE_ANY) &&
			 !strchr("{[",
				 b.data[strspn((char *)b.data, " \t\r\n")]));
		size_t before = own_read;
		json_t *dup =
			json_loadb((const char *)b.data, b.len, flags, NULL);
		agree((const char *)b.data, b.len);
		/* A document jansson reads, this reader reads too. */
		if (!(flags & JSON_DECODE_INT_AS_REAL))
			ck_assert_uint_eq(own_read - before, dup != NULL);
		json_decref(dup);
		for (int k = 0; k < 8 && b.len; k++) {
			struct lfs_buf d;
			lfs_buf_init(&d, 0);
			lfs_buf_append(&d, b.data, b.len);
			size_t at = rnd(&s) % d.len;
			switch (rnd(&s) % 4) {
			case 0:
				d.data[at] = (uint8_t)
					damage[rnd(&s) % (sizeof(damage) - 1)];
				break;
			case 1:
				memmove(d.data + at, d.data + at + 1,
					d.len - at - 1);
				d.len--;
				break;
			case 2:
				lfs_buf_append_byte(&d, 0);
				memmove(d.data + at + 1, d.data + at,
					d.len - at - 1);
				break;
			default:
				d.len = at;
				break;
			}
			agree((const char *)d.data, d.len);
			lfs_buf_release(&d);
		}
		lfs_buf_release(&b);
	}
}
END_TEST

static Suite *jsonparse_suite(void)
{
	Suite *s = suite_create("jsonparse");
	TCase *tc = tcase_create("parse");
	tcase_add_loop_test(tc, test_fixed, 0, NSETS);
	tcase_add_loop_test(tc, test_deep, 0, NSETS);
	tcase_add_loop_test(tc, test_random, 0, 10);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	seed_base = lfs_check_seed();
	return lfs_check_run(jsonparse_suite());
}
