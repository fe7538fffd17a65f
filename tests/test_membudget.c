/*
 * Tests of the shared cache budget: members that are small LRU caches of
 * their own give back in the documented order (least recently used
 * first, the biggest among equals), a member that cannot give back is
 * not asked forever, leaving gives back, threads charging at once keep
 * the count exact and the sum bounded; and two real ledgers sharing a
 * small budget keep their block and index caches within it while every
 * document still reads back.
 */
#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "check_util.h"
#include "ledger.h"
#include "membudget.h"

/* A member: items of given sizes, dropped oldest first. */
struct fake {
	struct lfs_membudget_member m;
	pthread_mutex_t lock;
	size_t item[4096];
	size_t first, n; /* a ring */
	bool stuck;      /* gives back nothing */
	int asked;
};

static size_t fake_shrink(struct lfs_membudget_member *m, size_t bytes)
{
	struct fake *f = (struct fake *)((char *)m - offsetof(struct fake, m));
	size_t freed = 0;
	pthread_mutex_lock(&f->lock);
	f->asked++;
	while (!f->stuck && freed < bytes && f->n) {
		size_t b = f->item[f->first];
		f->first = (f->first + 1) % 4096;
		f->n--;
		lfs_membudget_charge(m, -(ptrdiff_t)b);
		freed += b;
	}
	pthread_mutex_unlock(&f->lock);
	return freed;
}

static void fake_init(struct fake *f, struct lfs_membudget *b)
{
	memset(f, 0, sizeof(*f));
	pthread_mutex_init(&f->lock, NULL);
	lfs_membudget_join(b, &f->m, fake_shrink);
}

static void fake_add(struct fake *f, size_t bytes)
{
	pthread_mutex_lock(&f->lock);
	ck_assert_uint_lt(f->n, 4096);
	f->item[(f->first + f->n) % 4096] = bytes;
	f->n++;
	lfs_membudget_charge(&f->m, (ptrdiff_t)bytes);
	pthread_mutex_unlock(&f->lock);
	lfs_membudget_enforce(&f->m);
}

static size_t fake_bytes(struct fake *f)
{
	return atomic_load(&f->m.bytes);
}

START_TEST(bounded_and_counted)
{
	struct lfs_membudget *b;
	ck_assert_int_eq(lfs_membudget_new(&b, 64 << 10), 0);
	struct fake f;
	fake_init(&f, b);
	for (int i = 0; i < 1000; i++) {
		fake_add(&f, 1000);
		ck_assert_uint_le(lfs_membudget_used(b), 64 << 10);
		ck_assert_uint_eq(lfs_membudget_used(b), fake_bytes(&f));
	}
	/* Past the bound it gave back the excess and a 64th more. */
	ck_assert_uint_ge(lfs_membudget_used(b), (64 << 10) - 2000 - 1024);
	lfs_membudget_leave(&f.m);
	ck_assert_uint_eq(lfs_membudget_used(b), 0);
	/* A member alone (no budget) counts and is never asked. */
	struct fake g;
	fake_init(&g, NULL);
	for (int i = 0; i < 100; i++)
		fake_add(&g, 1 << 20);
	ck_assert_uint_eq(fake_bytes(&g), (size_t)100 << 20);
	ck_assert_int_eq(g.asked, 0);
	lfs_membudget_leave(&g.m); /* not a member: nothing happens */
	lfs_membudget_free(b);
}
END_TEST

/* The least recently used member gives back first, then among members
 * used in the same second the one holding most. */
START_TEST(order_of_giving_back)
{
	struct lfs_membudget *b;
	ck_assert_int_eq(lfs_membudget_new(&b, 100000), 0);
	struct fake idle, big, small;
	fake_init(&idle, b);
	fake_init(&big, b);
	fake_init(&small, b);
	for (int i = 0; i < 30; i++)
		fake_add(&idle, 1000);
	for (int i = 0; i < 40; i++)
		fake_add(&big, 1000);
	for (int i = 0; i < 20; i++)
		fake_add(&small, 1000);
	ck_assert_uint_eq(lfs_membudget_used(b), 90000);
	/* idle was last used long ago; big and small just now. */
	atomic_store(&idle.m.used_s, atomic_load(&big.m.used_s) - 100);
	atomic_store(&small.m.used_s, atomic_load(&big.m.used_s));
	/* 20,000 over (and the slack): idle gives all of that. */
	for (int i = 0; i < 30; i++)
		fake_add(&small, 1000);
	ck_assert_uint_le(lfs_membudget_used(b), 100000);
	ck_assert_uint_lt(fake_bytes(&idle), 30000);
	ck_assert_uint_eq(fake_bytes(&big), 40000);
	ck_assert_uint_eq(fake_bytes(&small), 50000);
	/* Among members used in the same second, the one holding most
	 * gives back. (A lower bound and an enforcement, so that no charge
	 * stamps anyone with a newer second.) */
	size_t idle_had = fake_bytes(&idle);
	atomic_store(&idle.m.used_s, 5);
	atomic_store(&big.m.used_s, 5);
	atomic_store(&small.m.used_s, 5);
	lfs_membudget_set_max(b, lfs_membudget_used(b) - 20000);
	lfs_membudget_enforce(&idle.m);
	ck_assert_uint_le(lfs_membudget_used(b), lfs_membudget_max(b));
	ck_assert_uint_lt(fake_bytes(&small), 50000 - 20000);
	ck_assert_uint_eq(fake_bytes(&big), 40000);
	ck_assert_uint_eq(fake_bytes(&idle), idle_had);
	ck_assert_uint_eq(lfs_membudget_used(b), fake_bytes(&idle) +
							 fake_bytes(&big) +
							 fake_bytes(&small));
	lfs_membudget_leave(&idle.m);
	lfs_membudget_leave(&big.m);
	lfs_membudget_leave(&small.m);
	ck_assert_uint_eq(lfs_membudget_used(b), 0);
	lfs_membudget_free(b);
}
END_TEST

/* Among members used in the same second, the one holding most bytes for
 * its worth gives back: two members that keep charging share the budget
 * in proportion to their worth. */
START_TEST(worth)
{
	struct lfs_membudget *b;
	ck_assert_int_eq(lfs_membudget_new(&b, 40000), 0);
	struct fake nodes, texts;
	fake_init(&texts, b);
	memset(&nodes, 0, sizeof(nodes));
	pthread_mutex_init(&nodes.lock, NULL);
	nodes.m.worth = 4; /* texts' is 0, which counts as 1 */
	lfs_membudget_join(b, &nodes.m, fake_shrink);
	for (int i = 0; i < 400; i++) {
		struct fake *f = i % 2 ? &nodes : &texts;
		pthread_mutex_lock(&f->lock);
		f->item[(f->first + f->n) % 4096] = 1000;
		f->n++;
		lfs_membudget_charge(&f->m, 1000);
		pthread_mutex_unlock(&f->lock);
		/* Both used in the same second, whatever the clock did. */
		atomic_store(&nodes.m.used_s, 5);
		atomic_store(&texts.m.used_s, 5);
		lfs_membudget_enforce(&f->m);
		ck_assert_uint_le(lfs_membudget_used(b), 40000);
	}
	/* About 32,000 and 8,000: four bytes of nodes for one of texts. */
	ck_assert_uint_ge(fake_bytes(&nodes), 28000);
	ck_assert_uint_ge(fake_bytes(&texts), 5000);
	ck_assert_uint_le(fake_bytes(&texts), 11000);
	lfs_membudget_leave(&nodes.m);
	lfs_membudget_leave(&texts.m);
	ck_assert_uint_eq(lfs_membudget_used(b), 0);
	lfs_membudget_free(b);
}
END_TEST

/* A member that gives back nothing is asked once per enforcement, and
 * the others give instead; when none can, enforcement ends. */
START_TEST(stuck_member)
{
	struct lfs_membudget *b;
	ck_assert_int_eq(lfs_membudget_new(&b, 10000), 0);
	struct fake stuck, other;
	fake_init(&stuck, b);
	fake_init(&other, b);
	stuck.stuck = true;
	for (int i = 0; i < 8; i++)
		fake_add(&stuck, 1000);
	atomic_store(&stuck.m.used_s, atomic_load(&stuck.m.used_s) - 10);
	int before = stuck.asked;
	fake_add(&other, 5000);
	ck_assert_int_eq(stuck.asked, before + 1);
	ck_assert_uint_eq(fake_bytes(&stuck), 8000);
	ck_assert_uint_eq(fake_bytes(&other), 0);
	/* Only the stuck one holds anything: over, and it ends. */
	fake_add(&stuck, 5000);
	ck_assert_uint_eq(lfs_membudget_used(b), 13000);
	lfs_membudget_set_max(b, 20000);
	ck_assert_uint_eq(lfs_membudget_max(b), 20000);
	lfs_membudget_leave(&stuck.m);
	lfs_membudget_leave(&other.m);
	lfs_membudget_free(b);
}
END_TEST

struct worker {
	struct fake *f;
	unsigned seed;
};

static void *work(void *arg)
{
	struct worker *w = arg;
	for (int i = 0; i < 20000; i++)
		fake_add(w->f, 1 + rand_r(&w->seed) % 3000);
	return NULL;
}

/* Four threads, each filling its own member at once: the count stays
 * exact and the sum ends within the budget. */
START_TEST(threads)
{
	unsigned seed = lfs_check_seed();
	printf("test_membudget threads: seed %u\n", seed);
	struct lfs_membudget *b;
	ck_assert_int_eq(lfs_membudget_new(&b, 1 << 20), 0);
	struct fake *f = calloc(4, sizeof(*f));
	ck_assert_ptr_nonnull(f);
	pthread_t t[4];
	struct worker w[4];
	for (int i = 0; i < 4; i++) {
		fake_init(&f[i], b);
		w[i] = (struct worker){&f[i], seed + (unsigned)i};
		ck_assert_int_eq(pthread_create(&t[i], NULL, work, &w[i]), 0);
	}
	for (int i = 0; i < 4; i++)
		pthread_join(t[i], NULL);
	size_t sum = 0;
	for (int i = 0; i < 4; i++)
		sum += fake_bytes(&f[i]);
	ck_assert_uint_eq(lfs_membudget_used(b), sum);
	ck_assert_uint_le(sum, 1 << 20);
	for (int i = 0; i < 4; i++)
		lfs_membudget_leave(&f[i].m);
	ck_assert_uint_eq(lfs_membudget_used(b), 0);
	free(f);
	lfs_membudget_free(b);
}
END_TEST

/* ---- two ledgers sharing a budget ---- */

static const uint8_t key[LFS_KEY_BYTES] = "0123456789abcdef0123456789abcdef";

static struct lfs_ledger *open_ledger(const char *dir, struct lfs_membudget *b)
{
	struct lfs_ledger_opts o;
	lfs_ledger_opts_init(&o);
	o.durable = false;
	o.budget = b;
	struct lfs_ledger *l;
	ck_assert_int_eq(lfs_ledger_open(&l, dir, key, &o, true), 0);
	return l;
}

static void put(struct lfs_ledger *l, int i)
{
	char id[32];
	snprintf(id, sizeof(id), "doc-%05d", i);
	json_t *doc = json_pack("{s:i, s:s}", "v", i, "pad",
				"some text to make the block bigger, some "
				"text to make the block bigger");
	struct lfs_txn *t;
	ck_assert_int_eq(lfs_txn_new(&t), 0);
	ck_assert_int_eq(lfs_txn_put(t, id, doc), 0);
	ck_assert_int_eq(lfs_ledger_commit(l, t, NULL, NULL), 0);
	lfs_txn_free(t);
	json_decref(doc);
}

static void check(struct lfs_ledger *l, int i)
{
	char id[32];
	snprintf(id, sizeof(id), "doc-%05d", i);
	struct lfs_arena a;
	lfs_arena_init(&a, 0);
	json_t *doc = NULL;
	ck_assert_int_eq(lfs_ledger_get(l, NULL, id, NULL, &a, &doc), 0);
	ck_assert_int_eq(json_integer_value(json_object_get(doc, "v")), i);
	json_decref(doc);
	lfs_arena_release(&a);
}

START_TEST(ledgers_share)
{
	char dir[256], d1[300], d2[300];
	lfs_check_mkdtemp(dir, sizeof(dir), "test_membudget");
	snprintf(d1, sizeof(d1), "%s/one", dir);
	snprintf(d2, sizeof(d2), "%s/two", dir);
	struct lfs_membudget *b;
	ck_assert_int_eq(lfs_membudget_new(&b, 256 << 10), 0);
	struct lfs_ledger *l1 = open_ledger(d1, b), *l2 = open_ledger(d2, b);
	for (int i = 0; i < 2000; i++) {
		put(i % 2 ? l2 : l1, i);
		ck_assert_uint_le(lfs_membudget_used(b), 256 << 10);
	}
	for (int i = 0; i < 2000; i++) {
		check(i % 2 ? l2 : l1, i);
		ck_assert_uint_le(lfs_membudget_used(b), 256 << 10);
	}
	/* The caches hold something: the budget is used, not bypassed. */
	ck_assert_uint_gt(lfs_membudget_used(b), 64 << 10);
	lfs_ledger_close(l1);
	/* What the closed ledger held is given back; the other's stays. */
	size_t left = lfs_membudget_used(b);
	ck_assert_uint_le(left, 256 << 10);
	for (int i = 1; i < 2000; i += 2)
		check(l2, i);
	lfs_ledger_close(l2);
	ck_assert_uint_eq(lfs_membudget_used(b), 0);
	lfs_membudget_free(b);
	lfs_rm_tree(dir);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("membudget");
	TCase *tc = tcase_create("core");
	tcase_set_timeout(tc, 600);
	tcase_add_test(tc, bounded_and_counted);
	tcase_add_test(tc, order_of_giving_back);
	tcase_add_test(tc, worth);
	tcase_add_test(tc, stuck_member);
	tcase_add_test(tc, threads);
	tcase_add_test(tc, ledgers_share);
	suite_add_tcase(s, tc);
	return lfs_check_run(s);
}
