/*
 * Conformance of a store driver: the same checks against whatever store
 * LFS_TEST_STORE_URL names (default: a memory store and a file store).
 * tests/store_*.sh start real servers and run this against them.
 */
#include <check.h>
#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <curl/curl.h>

#include "store.h"

static const char *url;
static char prefix[64];

static struct lfs_store *open_store(void)
{
	struct lfs_store *s;
	int rc = lfs_store_open(&s, url);
	ck_assert_msg(rc == 0, "cannot open %s: %s", url, strerror(-rc));
	return s;
}

static void key_of(char *out, size_t n, const char *name)
{
	snprintf(out, n, "%s/%s", prefix, name);
}

START_TEST(put_get_del)
{
	struct lfs_store *s = open_store();
	char k[200];
	key_of(k, sizeof(k), "a/car/one");
	const char *data = "hello store";
	ck_assert_int_eq(
		lfs_store_put(s, k, (const uint8_t *)data, strlen(data), false),
		0);
	struct lfs_buf b;
	lfs_buf_init(&b, 0);
	ck_assert_int_eq(lfs_store_get(s, k, &b), 0);
	ck_assert_uint_eq(b.len, strlen(data));
	ck_assert(!memcmp(b.data, data, b.len));
	/* Overwrite, then if_absent refuses (or overwrites where the store
	 * cannot tell: the content is the same by construction). */
	ck_assert_int_eq(lfs_store_put(s, k, (const uint8_t *)"v2", 2, false),
			 0);
	int rc = lfs_store_put(s, k, (const uint8_t *)"v3", 2, true);
	ck_assert(rc == -EEXIST || rc == 0);
	ck_assert_int_eq(lfs_store_del(s, k), 0);
	lfs_buf_reset(&b);
	ck_assert_int_eq(lfs_store_get(s, k, &b), -ENOENT);
	ck_assert_int_eq(lfs_store_del(s, k), 0); /* absent: fine */
	/* Empty objects exist. */
	key_of(k, sizeof(k), "a/head/empty");
	ck_assert_int_eq(lfs_store_put(s, k, (const uint8_t *)"", 0, false), 0);
	lfs_buf_reset(&b);
	ck_assert_int_eq(lfs_store_get(s, k, &b), 0);
	ck_assert_uint_eq(b.len, 0);
	ck_assert_int_eq(lfs_store_del(s, k), 0);
	lfs_buf_release(&b);
	lfs_store_free(s);
}
END_TEST

START_TEST(missing_and_caps)
{
	struct lfs_store *s = open_store();
	char k[200];
	struct lfs_buf b;
	lfs_buf_init(&b, 0);
	key_of(k, sizeof(k), "nothing/here");
	ck_assert_int_eq(lfs_store_get(s, k, &b), -ENOENT);
	/* A large object, and a reader whose cap is too small. */
	size_t n = (size_t)3 << 20;
	uint8_t *big = malloc(n);
	randombytes_buf(big, n);
	key_of(k, sizeof(k), "big/car/x");
	ck_assert_int_eq(lfs_store_put(s, k, big, n, false), 0);
	ck_assert_int_eq(lfs_store_get(s, k, &b), 0);
	ck_assert_uint_eq(b.len, n);
	ck_assert(!memcmp(b.data, big, n));
	struct lfs_buf small;
	lfs_buf_init(&small, 1024);
	ck_assert_int_eq(lfs_store_get(s, k, &small), -EFBIG);
	lfs_buf_release(&small);
	ck_assert_int_eq(lfs_store_del(s, k), 0);
	free(big);
	lfs_buf_release(&b);
	lfs_store_free(s);
}
END_TEST

START_TEST(bad_keys)
{
	struct lfs_store *s = open_store();
	static const char *bad[] = {"",      "/abs", "a/../b",   "..",
				    "a b",   "a//b", "tab\tkey", "trailing/",
				    "a/./b", ".",    "x/.."};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		ck_assert_msg(lfs_store_put(s, bad[i], (const uint8_t *)"x", 1,
					    false) == -EINVAL,
			      "key '%s' accepted", bad[i]);
	lfs_store_free(s);
}
END_TEST

struct seen {
	int n;
	int other;
};

static int count_key(void *ctx, const char *key)
{
	struct seen *s = ctx;
	if (strncmp(key, prefix, strlen(prefix)))
		s->other++;
	else
		s->n++;
	return 0;
}

START_TEST(list_many)
{
	struct lfs_store *s = open_store();
	/* More than one page of S3's ListObjectsV2 (1000 keys). */
	int n = getenv("LFS_TEST_STORE_MANY")
			? atoi(getenv("LFS_TEST_STORE_MANY"))
			: 1100;
	char k[200];
	for (int i = 0; i < n; i++) {
		char name[64];
		snprintf(name, sizeof(name), "many/car/k%05d", i);
		key_of(k, sizeof(k), name);
		ck_assert_int_eq(
			lfs_store_put(s, k, (const uint8_t *)"x", 1, false), 0);
	}
	key_of(k, sizeof(k), "many/head/h1");
	ck_assert_int_eq(lfs_store_put(s, k, (const uint8_t *)"h", 1, false),
			 0);
	struct seen seen = {0};
	char p[200];
	key_of(p, sizeof(p), "many/car/");
	ck_assert_int_eq(lfs_store_list(s, p, count_key, &seen), 0);
	ck_assert_int_eq(seen.n, n);
	ck_assert_int_eq(seen.other, 0);
	memset(&seen, 0, sizeof(seen));
	key_of(p, sizeof(p), "many/head/");
	ck_assert_int_eq(lfs_store_list(s, p, count_key, &seen), 0);
	ck_assert_int_eq(seen.n, 1);
	memset(&seen, 0, sizeof(seen));
	key_of(p, sizeof(p), "nonexistent/");
	ck_assert_int_eq(lfs_store_list(s, p, count_key, &seen), 0);
	ck_assert_int_eq(seen.n, 0);
	lfs_store_free(s);
}
END_TEST

static int stop_at_first(void *ctx, const char *key)
{
	(void)key;
	(*(int *)ctx)++;
	return 42;
}

START_TEST(list_stops)
{
	struct lfs_store *s = open_store();
	char k[200], p[200];
	for (int i = 0; i < 3; i++) {
		char name[64];
		snprintf(name, sizeof(name), "stop/car/k%d", i);
		key_of(k, sizeof(k), name);
		ck_assert_int_eq(
			lfs_store_put(s, k, (const uint8_t *)"x", 1, false), 0);
	}
	int calls = 0;
	key_of(p, sizeof(p), "stop/");
	ck_assert_int_eq(lfs_store_list(s, p, stop_at_first, &calls), 42);
	ck_assert_int_eq(calls, 1);
	lfs_store_free(s);
}
END_TEST

int main(void)
{
	if (sodium_init() < 0 || curl_global_init(CURL_GLOBAL_DEFAULT))
		return 1;
	char tmpl[] = "/tmp/lfs-store-XXXXXX", fileurl[300];
	const char *urls[2];
	int nurls = 0;
	if (getenv("LFS_TEST_STORE_URL")) {
		urls[nurls++] = getenv("LFS_TEST_STORE_URL");
	} else {
		urls[nurls++] = "memory://conformance";
		if (!mkdtemp(tmpl))
			return 1;
		snprintf(fileurl, sizeof(fileurl), "file://%s", tmpl);
		urls[nurls++] = fileurl;
	}
	uint8_t r[4];
	randombytes_buf(r, sizeof(r));
	snprintf(prefix, sizeof(prefix), "t%02x%02x%02x%02x", r[0], r[1], r[2],
		 r[3]);
	int failed = 0;
	for (int i = 0; i < nurls; i++) {
		url = urls[i];
		printf("store conformance: %s\n", url);
		Suite *s = suite_create("store");
		TCase *t = tcase_create("conformance");
		tcase_set_timeout(t, 120);
		tcase_add_test(t, put_get_del);
		tcase_add_test(t, missing_and_caps);
		tcase_add_test(t, bad_keys);
		tcase_add_test(t, list_many);
		tcase_add_test(t, list_stops);
		suite_add_tcase(s, t);
		SRunner *sr = srunner_create(s);
		srunner_set_fork_status(sr, CK_NOFORK);
		srunner_run_all(sr, CK_NORMAL);
		failed += srunner_ntests_failed(sr);
		srunner_free(sr);
	}
	if (!getenv("LFS_TEST_STORE_URL")) {
		char cmd[400];
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpl);
		if (system(cmd))
			failed++;
	}
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
