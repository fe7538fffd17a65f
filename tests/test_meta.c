/*
 * Unit tests for meta: the announcement format (parse, format, what is
 * refused), redis:// URLs (what is accepted, that credentials never reach
 * the shown URL), and that an endpoint nobody answers on costs bounded
 * time and says so.
 */
#include <check.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "cid.h"
#include "log.h"
#include "meta.h"
#include "check_util.h"

#define RAW  "bafkreibnoelefnzgwbcacyt4vh52ymxvzbjq7mmqhtcnwarfq4lzegsiqe"
#define RAW2 "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"
#define CBOR "bafyreibnoelefnzgwbcacyt4vh52ymxvzbjq7mmqhtcnwarfq4lzegsiqe"

static int parse(struct lfs_meta_hint *h, size_t max, size_t *n,
		 const char *msg)
{
	return lfs_meta_parse(h, max, n, msg, strlen(msg));
}

START_TEST(test_parse_ok)
{
	struct lfs_meta_hint h[LFS_META_MSG_CIDS];
	size_t n = 0;
	ck_assert_int_eq(parse(h, 16, &n, "1 shared " RAW), 0);
	ck_assert_uint_eq(n, 1);
	ck_assert_str_eq(h[0].enc, "shared");
	struct lfs_cid c;
	ck_assert_int_eq(lfs_cid_from_string(&c, RAW), 0);
	ck_assert(lfs_cid_equal(&h[0].car, &c));
	ck_assert_int_eq(parse(h, 16, &n, "1 my%20notes " RAW " " RAW2), 0);
	ck_assert_uint_eq(n, 2);
	ck_assert_str_eq(h[1].enc, "my%20notes");
}
END_TEST

static const char *refused[] = {
	"",
	"1",
	"1 ",
	"2 shared " RAW,
	"1 shared",
	"1 shared ",
	"1 shared  " RAW,
	"1 shared " RAW " ",
	"1  shared " RAW,
	"1 sha/red " RAW,
	"1 sha red",
	"1 shared " CBOR,
	"1 shared notacid",
	"1 shared " RAW "x",
	"x shared " RAW,
};

START_TEST(test_parse_refused)
{
	struct lfs_meta_hint h[LFS_META_MSG_CIDS];
	size_t n = 7;
	ck_assert_int_eq(parse(h, 16, &n, refused[_i]), -EBADMSG);
	ck_assert_uint_eq(n, 0);
}
END_TEST

START_TEST(test_parse_bounds)
{
	struct lfs_meta_hint h[LFS_META_MSG_CIDS + 1];
	char msg[LFS_META_MSG_MAX + 100];
	size_t n;
	/* 16 CIDs: fine; 17: refused; more than the room given: refused. */
	strcpy(msg, "1 l");
	for (int i = 0; i < LFS_META_MSG_CIDS; i++)
		strcat(msg, " " RAW);
	ck_assert_int_eq(parse(h, LFS_META_MSG_CIDS, &n, msg), 0);
	ck_assert_uint_eq(n, LFS_META_MSG_CIDS);
	ck_assert_int_eq(parse(h, 3, &n, msg), -EBADMSG);
	strcat(msg, " " RAW);
	ck_assert_int_eq(parse(h, LFS_META_MSG_CIDS + 1, &n, msg), -EBADMSG);
	/* A name over LFS_META_ENC_MAX, a message over LFS_META_MSG_MAX. */
	memset(msg, 'a', sizeof(msg));
	memcpy(msg, "1 ", 2);
	strcpy(msg + 2 + LFS_META_ENC_MAX + 1, " " RAW);
	ck_assert_int_eq(parse(h, 16, &n, msg), -EBADMSG);
	ck_assert_int_eq(lfs_meta_parse(h, 16, &n, msg, LFS_META_MSG_MAX + 1),
			 -EBADMSG);
}
END_TEST

START_TEST(test_format_round_trip)
{
	struct lfs_cid c[LFS_META_MSG_CIDS + 1];
	for (size_t i = 0; i <= LFS_META_MSG_CIDS; i++)
		ck_assert_int_eq(lfs_cid_from_string(&c[i], i % 2 ? RAW : RAW2),
				 0);
	char buf[LFS_META_MSG_MAX + 1];
	int len = lfs_meta_format(buf, "shared", c, 2);
	ck_assert_int_gt(len, 0);
	ck_assert_str_eq(buf, "1 shared " RAW2 " " RAW);
	struct lfs_meta_hint h[LFS_META_MSG_CIDS];
	size_t n;
	ck_assert_int_eq(lfs_meta_parse(h, 16, &n, buf, (size_t)len), 0);
	ck_assert_uint_eq(n, 2);
	ck_assert(lfs_cid_equal(&h[1].car, &c[1]));
	ck_assert_int_eq(lfs_meta_format(buf, "shared", c, 0), -EFBIG);
	ck_assert_int_eq(
		lfs_meta_format(buf, "shared", c, LFS_META_MSG_CIDS + 1),
		-EFBIG);
}
END_TEST

static const struct {
	const char *url, *shown;
} urls[] = {
	{"redis://localhost", "redis://localhost:6379/0"},
	{"redis://127.0.0.1:6390/2", "redis://127.0.0.1:6390/2"},
	{"redis://:s3cret-pw@10.0.0.1:7000/1", "redis://10.0.0.1:7000/1"},
	{"redis://alice:s3cret-pw@h/0", "redis://h:6379/0"},
	{"redis://alice:s3cret%40pw@[::1]:6380", "redis://[::1]:6380/0"},
	{"redis://h/", "redis://h:6379/0"},
};

START_TEST(test_urls)
{
	struct lfs_meta *m = NULL;
	ck_assert_int_eq(lfs_meta_open(&m, urls[_i].url, "s3://b/p"), 0);
	ck_assert_str_eq(lfs_meta_shown(m), urls[_i].shown);
	ck_assert_ptr_null(strstr(lfs_meta_shown(m), "s3cret"));
	ck_assert_str_eq(lfs_meta_state(m), "connecting");
	lfs_meta_free(m);
}
END_TEST

static const char *bad_urls[] = {
	"redis://",    "redis://h:0",  "redis://h:65536",
	"redis://h:x", "redis://h/x",  "http://h",
	"redis:/h",    "redis://[::1", "redis://h:/",
};

START_TEST(test_bad_urls)
{
	struct lfs_meta *m = NULL;
	ck_assert_int_eq(lfs_meta_open(&m, bad_urls[_i], "ns"), -EINVAL);
	ck_assert_ptr_null(m);
}
END_TEST

START_TEST(test_tls_refused)
{
	struct lfs_meta *m = NULL;
	ck_assert_int_eq(lfs_meta_open(&m, "rediss://h:6380", "ns"),
			 -EPROTONOSUPPORT);
}
END_TEST

static int64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int woken;
static void wake(void *ctx)
{
	(void)ctx;
	__atomic_add_fetch(&woken, 1, __ATOMIC_SEQ_CST);
}

/* Port 1 on loopback: nobody listens (connection refused). */
START_TEST(test_unreachable)
{
	struct lfs_meta *m = NULL;
	ck_assert_int_eq(lfs_meta_open(&m, "redis://127.0.0.1:1/0", "ns"), 0);
	struct lfs_cid c;
	ck_assert_int_eq(lfs_cid_from_string(&c, RAW), 0);
	int64_t t0 = mono_ms();
	lfs_meta_announce(m, "shared", &c, 1, NULL, 0);
	/* Within the backoff, a second announcement does not even try. */
	lfs_meta_announce(m, "shared", &c, 1, NULL, 0);
	ck_assert_int_lt(mono_ms() - t0, 60000);
	ck_assert_int_eq(lfs_meta_start(m, wake, NULL), 0);
	int64_t end = mono_ms() + 60000;
	while (strcmp(lfs_meta_state(m), "unreachable, polling the store") &&
	       mono_ms() < end)
		usleep(10000);
	ck_assert_str_eq(lfs_meta_state(m), "unreachable, polling the store");
	ck_assert_int_gt(__atomic_load_n(&woken, __ATOMIC_SEQ_CST), 0);
	struct lfs_meta_hint h[4];
	bool poll = true;
	ck_assert_uint_eq(lfs_meta_take(m, h, 4, &poll), 0);
	ck_assert(!poll);
	lfs_meta_stop(m);
	lfs_meta_free(m);
}
END_TEST

static Suite *meta_suite(void)
{
	Suite *s = suite_create("meta");
	TCase *tc = tcase_create("core");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_parse_ok);
	tcase_add_loop_test(tc, test_parse_refused, 0,
			    sizeof(refused) / sizeof(*refused));
	tcase_add_test(tc, test_parse_bounds);
	tcase_add_test(tc, test_format_round_trip);
	tcase_add_loop_test(tc, test_urls, 0, sizeof(urls) / sizeof(*urls));
	tcase_add_loop_test(tc, test_bad_urls, 0,
			    sizeof(bad_urls) / sizeof(*bad_urls));
	tcase_add_test(tc, test_tls_refused);
	tcase_add_test(tc, test_unreachable);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	if (sodium_init() < 0)
		return 99;
	lfs_log_setup(LFS_LOG_ERROR, 0);
	return lfs_check_run(meta_suite());
}
