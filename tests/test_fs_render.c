/*
 * Unit tests for fs_render's size table: lengths survive reopening, a
 * later record wins, damage (a flipped byte, a record cut short, another
 * format) is never trusted nor anything past it, another process's
 * appends and rewrites are taken in; lfs_render_fill notes exactly what
 * lfs_render_doc renders. The damage test is randomized: it prints its
 * seed (LFS_TEST_SEED replays it).
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>
#include <sodium.h>

#include "fs_render.h"
#include "ledger.h"
#include "check_util.h"

#define HEADER 16
#define RECORD 48
#define NDOCS  64

static char tmp[PATH_MAX], path[PATH_MAX + 16];

static void setup(void)
{
	ck_assert_int_ge(sodium_init(), 0);
	lfs_check_mkdtemp(tmp, sizeof(tmp), "test_fs_render");
	snprintf(path, sizeof(path), "%s/sizes", tmp);
}

static void teardown(void)
{
	char cmd[PATH_MAX + 16];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmp);
	ck_assert_int_eq(system(cmd), 0);
}

/* Version i's CID and id. */
static void version(struct lfs_cid *cid, char id[32], int i)
{
	char data[32];
	snprintf(data, sizeof(data), "block %d", i);
	lfs_cid_of(cid, LFS_CODEC_DAG_CBOR, data, strlen(data));
	snprintf(id, 32, "doc-%d", i);
}

static void put_all(struct lfs_render_sizes *t, int n)
{
	for (int i = 0; i < n; i++) {
		struct lfs_cid c;
		char id[32];
		version(&c, id, i);
		ck_assert(!lfs_render_sizes_put(t, &c, id, 1000 + (size_t)i));
	}
}

/* How many of versions 0..n-1 t knows; every one it knows is right. */
static int known(struct lfs_render_sizes *t, int n)
{
	int k = 0;
	for (int i = 0; i < n; i++) {
		struct lfs_cid c;
		char id[32];
		size_t len;
		version(&c, id, i);
		if (lfs_render_sizes_get(t, &c, id, &len)) {
			ck_assert_uint_eq(len, 1000 + (size_t)i);
			k++;
		}
	}
	return k;
}

static off_t file_size(void)
{
	struct stat st;
	ck_assert_int_eq(stat(path, &st), 0);
	return st.st_size;
}

START_TEST(test_survives_reopen)
{
	struct lfs_render_sizes *t;
	ck_assert_int_eq(lfs_render_sizes_open(&t, path), 0);
	ck_assert_int_eq(known(t, NDOCS), 0);
	put_all(t, NDOCS);
	/* Known ones are not appended again. */
	put_all(t, NDOCS);
	ck_assert_int_eq(known(t, NDOCS), NDOCS);
	lfs_render_sizes_close(t);
	ck_assert_int_eq(file_size(), HEADER + NDOCS * RECORD);
	ck_assert_int_eq(lfs_render_sizes_open(&t, path), 0);
	ck_assert_int_eq(known(t, NDOCS), NDOCS);
	/* The same CID under another id is another text. */
	struct lfs_cid c;
	char id[32];
	size_t len;
	version(&c, id, 0);
	ck_assert(!lfs_render_sizes_get(t, &c, "doc-1", &len));
	lfs_render_sizes_close(t);
}
END_TEST

START_TEST(test_later_wins)
{
	struct lfs_render_sizes *t;
	struct lfs_cid c;
	char id[32];
	size_t len;
	version(&c, id, 7);
	ck_assert_int_eq(lfs_render_sizes_open(&t, path), 0);
	ck_assert(!lfs_render_sizes_put(t, &c, id, 5));
	ck_assert(lfs_render_sizes_put(t, &c, id, 6)); /* corrected */
	ck_assert(lfs_render_sizes_get(t, &c, id, &len));
	ck_assert_uint_eq(len, 6);
	lfs_render_sizes_close(t);
	ck_assert_int_eq(lfs_render_sizes_open(&t, path), 0);
	ck_assert(lfs_render_sizes_get(t, &c, id, &len));
	ck_assert_uint_eq(len, 6);
	lfs_render_sizes_close(t);
}
END_TEST

static void flip(off_t at)
{
	int fd = open(path, O_RDWR);
	ck_assert_int_ge(fd, 0);
	uint8_t b;
	ck_assert_int_eq(pread(fd, &b, 1, at), 1);
	b ^= 0x10;
	ck_assert_int_eq(pwrite(fd, &b, 1, at), 1);
	close(fd);
}

START_TEST(test_damage)
{
	unsigned seed = lfs_check_seed();
	printf("test_fs_render damage: seed %u\n", seed);
	srand(seed);
	for (int trial = 0; trial < 20; trial++) {
		unlink(path);
		struct lfs_render_sizes *t;
		ck_assert_int_eq(lfs_render_sizes_open(&t, path), 0);
		put_all(t, NDOCS);
		lfs_render_sizes_close(t);
		/* Any byte of a record: that record and all after it are
		 * dropped, those before it kept, and the file cut there. */
		int rec = rand() % NDOCS;
		flip(HEADER + rec * RECORD + rand() % RECORD);
		ck_assert_int_eq(lfs_render_sizes_open(&t, path), 0);
		ck_assert_int_eq(known(t, NDOCS), rec);
		ck_assert_int_eq(file_size(), HEADER + rec * RECORD);
		/* Appends after the cut are read again. */
		put_all(t, NDOCS);
		lfs_render_sizes_close(t);
		ck_assert_int_eq(lfs_render_sizes_open(&t, path), 0);
		ck_assert_int_eq(known(t, NDOCS), NDOCS);
		lfs_render_sizes_close(t);
	}
}
END_TEST

START_TEST(test_cut_short_and_foreign)
{
	struct lfs_render_sizes *t;
	ck_assert_int_eq(lfs_render_sizes_open(&t, path), 0);
	put_all(t, NDOCS);
	lfs_render_sizes_close(t);
	ck_assert_int_eq(truncate(path, HEADER + 10 * RECORD + 17), 0);
	ck_assert_int_eq(lfs_render_sizes_open(&t, path), 0);
	ck_assert_int_eq(known(t, NDOCS), 10);
	lfs_render_sizes_close(t);
	/* Another render format: nothing of it is used. */
	flip(8);
	ck_assert_int_eq(lfs_render_sizes_open(&t, path), 0);
	ck_assert_int_eq(known(t, NDOCS), 0);
	lfs_render_sizes_close(t);
	ck_assert_int_eq(file_size(), HEADER);
	/* Not a file that can be read: a table in memory. */
	unlink(path);
	ck_assert_int_eq(mkdir(path, 0700), 0);
	ck_assert_int_eq(lfs_render_sizes_open(&t, path), 0);
	put_all(t, 3);
	ck_assert_int_eq(known(t, 3), 3);
	lfs_render_sizes_close(t);
}
END_TEST

START_TEST(test_catch_up)
{
	struct lfs_render_sizes *a, *b;
	ck_assert_int_eq(lfs_render_sizes_open(&a, path), 0);
	ck_assert_int_eq(lfs_render_sizes_open(&b, path), 0);
	put_all(a, NDOCS);
	ck_assert_int_eq(known(b, NDOCS), 0);
	ck_assert(lfs_render_sizes_catch_up(b));
	ck_assert_int_eq(known(b, NDOCS), NDOCS);
	ck_assert(!lfs_render_sizes_catch_up(b));
	lfs_render_sizes_close(a);
	/* Another process starts the file anew (it found damage): b takes
	 * the new file in and appends to it. */
	unlink(path);
	ck_assert_int_eq(lfs_render_sizes_open(&a, path), 0);
	struct lfs_cid c;
	char id[32];
	size_t len;
	version(&c, id, NDOCS + 1);
	lfs_render_sizes_put(a, &c, id, 42);
	ck_assert(lfs_render_sizes_catch_up(b));
	ck_assert(lfs_render_sizes_get(b, &c, id, &len));
	ck_assert_uint_eq(len, 42);
	version(&c, id, NDOCS + 2);
	lfs_render_sizes_put(b, &c, id, 43);
	ck_assert(lfs_render_sizes_catch_up(a));
	ck_assert(lfs_render_sizes_get(a, &c, id, &len));
	ck_assert_uint_eq(len, 43);
	lfs_render_sizes_close(a);
	lfs_render_sizes_close(b);
}
END_TEST

struct check_ctx {
	struct lfs_ledger *l;
	struct lfs_render_sizes *t;
	int n;
	struct lfs_render_cache *cache; /* NULL: not looked at */
	int cached; /* texts the cache held, each the render's */
};

static int check_one(void *ctx, const struct lfs_index_entry *e)
{
	struct check_ctx *c = ctx;
	struct lfs_buf b;
	lfs_buf_init(&b, 0);
	ck_assert_int_eq(lfs_render_doc(c->l, &e->cur.doc, e->id, &b), 0);
	size_t len;
	ck_assert(lfs_render_sizes_get(c->t, &e->cur.doc, e->id, &len));
	ck_assert_uint_eq(len, b.len);
	struct lfs_buf cb;
	lfs_buf_init(&cb, 0);
	if (c->cache &&
	    lfs_render_cache_get(c->cache, &e->cur.doc, e->id, &cb) == 1) {
		ck_assert_uint_eq(cb.len, b.len);
		ck_assert(!memcmp(cb.data, b.data, b.len));
		c->cached++;
	}
	lfs_buf_release(&cb);
	lfs_buf_release(&b);
	c->n++;
	return 0;
}

/* A new ledger in tmp, with a random key, not durable. */
static struct lfs_ledger *open_ledger(void)
{
	uint8_t key[LFS_KEY_BYTES];
	randombytes_buf(key, sizeof(key));
	char dir[PATH_MAX + 16];
	snprintf(dir, sizeof(dir), "%s/ledger", tmp);
	struct lfs_ledger_opts o;
	lfs_ledger_opts_init(&o);
	o.writer = "test";
	o.durable = false;
	struct lfs_ledger *l;
	ck_assert_int_eq(lfs_ledger_open(&l, dir, key, &o, true), 0);
	return l;
}

START_TEST(test_fill)
{
	struct lfs_ledger *l = open_ledger();
	struct lfs_txn *t;
	ck_assert_int_eq(lfs_txn_new(&t), 0);
	for (int i = 0; i < 20; i++) {
		char id[32];
		snprintf(id, sizeof(id), "notes/n%d", i);
		json_t *d =
			json_pack("{s:i,s:s,s:f,s:[i,i]}", "n", i, "text",
				  "héllo \"x\"\n", "r", 1.5 * i, "a", i, -i);
		ck_assert_int_eq(lfs_txn_put(t, id, d), 0);
		json_decref(d);
	}
	ck_assert_int_eq(lfs_ledger_commit(l, t, NULL, NULL), 0);
	lfs_txn_free(t);
	struct lfs_render_sizes *s;
	ck_assert_int_eq(lfs_render_sizes_open(&s, path), 0);
	size_t added;
	ck_assert_int_eq(lfs_render_fill(s, l, &added), 0);
	ck_assert_uint_eq(added, 20);
	ck_assert_int_eq(lfs_render_fill(s, l, &added), 0);
	ck_assert_uint_eq(added, 0);
	lfs_render_sizes_close(s);
	ck_assert_int_eq(lfs_render_sizes_open(&s, path), 0);
	struct check_ctx c = {.l = l, .t = s};
	struct lfs_cid root;
	lfs_ledger_root(l, &root);
	ck_assert_int_eq(
		lfs_index_each(lfs_ledger_index(l), &root, check_one, &c), 0);
	ck_assert_int_eq(c.n, 20);
	/* A commit's own documents, noted from the txn: the same CIDs and
	 * lengths as the committed blocks render to, rendered from the
	 * txn's copies: odd ones hold bytes, a link, or a "/" key that is
	 * neither, which their trip through DAG-CBOR must give back. */
	static const char *const odd[] = {
		"{\"b\": {\"/\": {\"bytes\": \"aGVsbG8=\"}}}",
		"{\"l\": [{\"/\": "
		"\"bafyreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"
		"\"}]}",
		"{\"o\": {\"/\": 1, \"x\": 2}}",
		"{\"o\": {\"/\": \"not a cid\"}}",
	};
	ck_assert_int_eq(lfs_txn_new(&t), 0);
	for (int i = 0; i < 20; i++) {
		char id[32];
		snprintf(id, sizeof(id), "more/m%d", i);
		json_t *d =
			json_pack("{s:s,s:i,s:f,s:f,s:f,s:I,s:{s:s,s:{},s:[]},"
				  "s:[s,n,b,[]],"
				  "s:s,s:{s:{s:s}}}",
				  "_id", id, "n", -i, "x", 0.1 * i, "big",
				  1e300 / (i + 1), "neg0", -0.0, "i64",
				  (json_int_t)INT64_MIN + i, "o", "k\u00e9",
				  "v\t", "e", "a", "arr", "\u00e9", 0, "q\"\\",
				  "\x01\u2028", "nested", "/x", "y", "/");
		ck_assert_ptr_nonnull(d);
		if (i % 2) {
			json_t *more = json_loads(odd[i / 2 % 4], 0, NULL);
			ck_assert_ptr_nonnull(more);
			ck_assert_int_eq(json_object_update(d, more), 0);
			json_decref(more);
		}
		ck_assert_int_eq(lfs_txn_put(t, id, d), 0);
		json_decref(d);
	}
	ck_assert_int_eq(lfs_txn_delete(t, "notes/n3"), 0);
	ck_assert_int_eq(lfs_ledger_commit(l, t, NULL, NULL), 0);
	/* ... and their texts kept in the cache, each the very render. */
	struct lfs_render_cache *cache;
	ck_assert_int_eq(lfs_render_cache_new(&cache), 0);
	ck_assert_int_eq(lfs_render_note_txn(s, cache, t), 0);
	lfs_txn_free(t);
	c.n = 0;
	c.cache = cache;
	lfs_ledger_root(l, &root);
	ck_assert_int_eq(
		lfs_index_each(lfs_ledger_index(l), &root, check_one, &c), 0);
	ck_assert_int_eq(c.n, 39);
	ck_assert_int_eq(c.cached, 20);
	lfs_render_cache_free(cache);
	lfs_render_sizes_close(s);
	lfs_ledger_close(l);
}
END_TEST

struct queue_ctx {
	struct lfs_render_sizes *t;
	int n;
};

static int queue_one(void *ctx, const struct lfs_index_entry *e)
{
	struct queue_ctx *c = ctx;
	lfs_render_sizes_queue(c->t, &e->cur.doc, e->id);
	/* Twice: a duplicate is filled once, then skipped as known. */
	if (c->n++ % 3 == 0)
		lfs_render_sizes_queue(c->t, &e->cur.doc, e->id);
	return 0;
}

/* Versions queued from elsewhere are filled a budget at a time, each
 * exactly as its render; a known one is not queued, an unreadable one is
 * dropped. */
START_TEST(test_fill_queued)
{
	struct lfs_ledger *l = open_ledger();
	struct lfs_txn *t;
	ck_assert_int_eq(lfs_txn_new(&t), 0);
	for (int i = 0; i < 300; i++) {
		char id[32];
		snprintf(id, sizeof(id), "q/%d", i);
		json_t *d = json_pack("{s:i,s:s}", "n", i, "pad", "x\u00e9y");
		ck_assert_int_eq(lfs_txn_put(t, id, d), 0);
		json_decref(d);
	}
	ck_assert_int_eq(lfs_ledger_commit(l, t, NULL, NULL), 0);
	lfs_txn_free(t);
	struct lfs_render_sizes *s;
	ck_assert_int_eq(lfs_render_sizes_open(&s, path), 0);
	struct queue_ctx q = {.t = s};
	struct lfs_cid root;
	lfs_ledger_root(l, &root);
	ck_assert_int_eq(
		lfs_index_each(lfs_ledger_index(l), &root, queue_one, &q), 0);
	ck_assert_uint_eq(lfs_render_sizes_queued(s), 400);
	/* A version no block holds: dropped, nothing noted. */
	struct lfs_cid bogus;
	lfs_cid_of(&bogus, LFS_CODEC_DAG_CBOR, "none", 4);
	lfs_render_sizes_queue(s, &bogus, "q/none");
	ck_assert_uint_eq(lfs_render_sizes_queued(s), 401);
	/* No budget: one at a time, so the queue is compacted many times. */
	size_t left = 401, rounds = 0;
	while (left) {
		size_t now = lfs_render_sizes_fill_queued(s, l, 0);
		ck_assert_uint_lt(now, left);
		left = now;
		rounds++;
	}
	ck_assert_uint_ge(rounds, 100);
	size_t len;
	ck_assert(!lfs_render_sizes_get(s, &bogus, "q/none", &len));
	struct check_ctx c = {.l = l, .t = s};
	ck_assert_int_eq(
		lfs_index_each(lfs_ledger_index(l), &root, check_one, &c), 0);
	ck_assert_int_eq(c.n, 300);
	/* Known now: queuing them again queues nothing. */
	q.n = 0;
	ck_assert_int_eq(
		lfs_index_each(lfs_ledger_index(l), &root, queue_one, &q), 0);
	ck_assert_uint_eq(lfs_render_sizes_queued(s), 0);
	lfs_render_sizes_close(s);
	lfs_ledger_close(l);
}
END_TEST

static Suite *render_suite(void)
{
	Suite *s = suite_create("fs_render");
	TCase *tc = tcase_create("sizes");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_survives_reopen);
	tcase_add_test(tc, test_later_wins);
	tcase_add_test(tc, test_damage);
	tcase_add_test(tc, test_cut_short_and_foreign);
	tcase_add_test(tc, test_catch_up);
	tcase_add_test(tc, test_fill);
	tcase_add_test(tc, test_fill_queued);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return lfs_check_run(render_suite());
}
