/* Tests of the document index: model-checked updates, canonical form,
 * diff, and hostile nodes. */
#include <check.h>
#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blockmap.h"
#include "cbor.h"
#include "index.h"
#include "check_util.h"

static uint8_t salt[LFS_SALT_BYTES];

struct fixture {
	struct lfs_blockmap map;
	struct lfs_index ix;
	struct lfs_cid root;
};

static void fx_init(struct fixture *f)
{
	lfs_blockmap_init(&f->map);
	lfs_index_init(&f->ix, lfs_blockmap_blocks(&f->map), salt);
	ck_assert_int_eq(lfs_index_empty(&f->root, &f->ix), 0);
}

static void fx_release(struct fixture *f)
{
	lfs_blockmap_release(&f->map);
}

/* A deterministic entry for id with a given version number. */
static void make_entry(struct lfs_index_entry *e, const char *id, int v)
{
	char body[64];
	int n = snprintf(body, sizeof(body), "%s#%d", id, v);
	memset(e, 0, sizeof(*e));
	e->id = id;
	e->id_len = strlen(id);
	lfs_cid_of(&e->cur.doc, LFS_CODEC_DAG_CBOR, body, (size_t)n);
	e->cur.t = 1000 + v;
	e->cur.writer = "w1";
}

static void put(struct fixture *f, const char *id, int v)
{
	struct lfs_index_entry e;
	make_entry(&e, id, v);
	struct lfs_index_change c = {
		.id = id, .id_len = strlen(id), .entry = &e};
	ck_assert_int_eq(lfs_index_apply(&f->root, &f->ix, &f->root, &c, 1), 0);
}

static void del(struct fixture *f, const char *id)
{
	struct lfs_index_change c = {.id = id, .id_len = strlen(id)};
	ck_assert_int_eq(lfs_index_apply(&f->root, &f->ix, &f->root, &c, 1), 0);
}

static int get_version(struct fixture *f, const char *id)
{
	struct lfs_arena a;
	lfs_arena_init(&a, 0);
	struct lfs_index_entry e;
	int rc = lfs_index_get(&e, &a, &f->ix, &f->root, id, strlen(id));
	int v = -1;
	if (rc == 0)
		v = (int)(e.cur.t - 1000);
	else
		ck_assert_int_eq(rc, -ENOENT);
	lfs_arena_release(&a);
	return v;
}

START_TEST(empty_index)
{
	struct fixture f;
	fx_init(&f);
	uint64_t n = 99;
	ck_assert_int_eq(lfs_index_count(&n, &f.ix, &f.root), 0);
	ck_assert_uint_eq(n, 0);
	ck_assert_int_eq(get_version(&f, "x"), -1);
	del(&f, "absent");
	ck_assert_int_eq(lfs_index_check(&f.ix, &f.root, NULL, NULL), 0);
	fx_release(&f);
}
END_TEST

#define NKEYS 3000

/* Random puts and deletes against a model array; check after each step. */
START_TEST(model_random)
{
	struct fixture f;
	fx_init(&f);
	static int model[NKEYS];
	for (int i = 0; i < NKEYS; i++)
		model[i] = -1;
	srand(42);
	for (int step = 0; step < 6000; step++) {
		int k = rand() % NKEYS;
		char id[32];
		snprintf(id, sizeof(id), "doc-%d", k);
		if (rand() % 4 == 0) {
			del(&f, id);
			model[k] = -1;
		} else {
			put(&f, id, step);
			model[k] = step;
		}
		if (step % 997 == 0)
			ck_assert_int_eq(
				lfs_index_check(&f.ix, &f.root, NULL, NULL), 0);
	}
	uint64_t live = 0, n;
	for (int k = 0; k < NKEYS; k++) {
		char id[32];
		snprintf(id, sizeof(id), "doc-%d", k);
		ck_assert_int_eq(get_version(&f, id), model[k]);
		live += model[k] >= 0;
	}
	ck_assert_int_eq(lfs_index_count(&n, &f.ix, &f.root), 0);
	ck_assert_uint_eq(n, live);
	ck_assert_int_eq(lfs_index_check(&f.ix, &f.root, NULL, NULL), 0);
	fx_release(&f);
}
END_TEST

/* The same final set reached by different histories gives the same root. */
/*
 * Lookups through a decoded-node cache answer exactly as without one: a
 * cache far too small for the index (every lookup evicts), one that holds
 * it all, across updates (old and new roots share nodes), and for ids that
 * are absent.
 */
START_TEST(cache_matches_uncached)
{
	struct fixture f;
	fx_init(&f);
	static int model[NKEYS];
	for (int i = 0; i < NKEYS; i++)
		model[i] = -1;
	size_t sizes[] = {1, 64 << 10, 64 << 20};
	srand(7);
	for (int round = 0; round < 3; round++) {
		for (int step = 0; step < 1500; step++) {
			int k = rand() % NKEYS;
			char id[32];
			snprintf(id, sizeof(id), "doc-%d", k);
			put(&f, id, round * 10000 + step);
			model[k] = round * 10000 + step;
		}
		for (size_t z = 0; z < sizeof(sizes) / sizeof(*sizes); z++) {
			ck_assert_int_eq(
				lfs_index_cache_new(&f.ix.cache, sizes[z]), 0);
			for (int pass = 0; pass < 2; pass++)
				for (int k = 0; k < NKEYS; k++) {
					char id[32];
					snprintf(id, sizeof(id), "doc-%d", k);
					ck_assert_int_eq(get_version(&f, id),
							 model[k]);
				}
			lfs_index_cache_free(f.ix.cache);
			f.ix.cache = NULL;
		}
	}
	fx_release(&f);
}
END_TEST

START_TEST(history_independent)
{
	struct fixture a, b;
	fx_init(&a);
	fx_init(&b);
	for (int i = 0; i < 500; i++) {
		char id[32];
		snprintf(id, sizeof(id), "k%d", i);
		put(&a, id, 7);
	}
	/* b: reverse order, extra keys inserted then deleted, rewrites. */
	for (int i = 799; i >= 0; i--) {
		char id[32];
		snprintf(id, sizeof(id), "k%d", i);
		put(&b, id, i % 5);
	}
	for (int i = 500; i < 800; i++) {
		char id[32];
		snprintf(id, sizeof(id), "k%d", i);
		del(&b, id);
	}
	for (int i = 0; i < 500; i++) {
		char id[32];
		snprintf(id, sizeof(id), "k%d", i);
		put(&b, id, 7);
	}
	ck_assert(lfs_cid_equal(&a.root, &b.root));

	/* A batch apply gives the same root as one-by-one. */
	struct fixture c;
	fx_init(&c);
	static struct lfs_index_entry e[500];
	static struct lfs_index_change ch[500];
	static char ids[500][32];
	for (int i = 0; i < 500; i++) {
		snprintf(ids[i], sizeof(ids[i]), "k%d", i);
		make_entry(&e[i], ids[i], 7);
		ch[i] = (struct lfs_index_change){
			.id = ids[i], .id_len = strlen(ids[i]), .entry = &e[i]};
	}
	ck_assert_int_eq(lfs_index_apply(&c.root, &c.ix, &c.root, ch, 500), 0);
	ck_assert(lfs_cid_equal(&a.root, &c.root));

	/* Deleting everything returns to the empty root. */
	struct lfs_cid empty;
	ck_assert_int_eq(lfs_index_empty(&empty, &c.ix), 0);
	for (int i = 0; i < 500; i++)
		ch[i].entry = NULL;
	ck_assert_int_eq(lfs_index_apply(&c.root, &c.ix, &c.root, ch, 500), 0);
	ck_assert(lfs_cid_equal(&empty, &c.root));
	fx_release(&a);
	fx_release(&b);
	fx_release(&c);
}
END_TEST

struct diff_seen {
	int added, removed, changed;
};

static int count_diff(void *ctx, const struct lfs_index_entry *ea,
		      const struct lfs_index_entry *eb)
{
	struct diff_seen *s = ctx;
	if (!ea)
		s->added++;
	else if (!eb)
		s->removed++;
	else
		s->changed++;
	return 0;
}

START_TEST(diff_small)
{
	struct fixture f;
	fx_init(&f);
	for (int i = 0; i < 2000; i++) {
		char id[32];
		snprintf(id, sizeof(id), "d%d", i);
		put(&f, id, 1);
	}
	struct lfs_cid before = f.root;
	size_t blocks_before = f.map.count;
	put(&f, "d5", 2);
	put(&f, "d6", 2);
	put(&f, "new", 1);
	del(&f, "d7");
	/* Each change writes only the path to it. */
	ck_assert_uint_lt(f.map.count - blocks_before, 4 * 6);
	struct diff_seen s = {0};
	ck_assert_int_eq(
		lfs_index_diff(&f.ix, &before, &f.root, count_diff, &s), 0);
	ck_assert_int_eq(s.added, 1);
	ck_assert_int_eq(s.removed, 1);
	ck_assert_int_eq(s.changed, 2);
	memset(&s, 0, sizeof(s));
	ck_assert_int_eq(
		lfs_index_diff(&f.ix, &f.root, &f.root, count_diff, &s), 0);
	ck_assert_int_eq(s.added + s.removed + s.changed, 0);
	fx_release(&f);
}
END_TEST

START_TEST(conflicts_roundtrip)
{
	struct fixture f;
	fx_init(&f);
	struct lfs_index_entry e;
	make_entry(&e, "c", 1);
	struct lfs_version losers[2];
	lfs_cid_of(&losers[0].doc, LFS_CODEC_DAG_CBOR, "x", 1);
	losers[0].t = 5;
	losers[0].writer = "w2";
	lfs_cid_of(&losers[1].doc, LFS_CODEC_DAG_CBOR, "y", 1);
	losers[1].t = 6;
	losers[1].writer = "w3";
	e.conflicts = losers;
	e.nconflicts = 2;
	struct lfs_index_change c = {.id = "c", .id_len = 1, .entry = &e};
	ck_assert_int_eq(lfs_index_apply(&f.root, &f.ix, &f.root, &c, 1), 0);
	struct lfs_arena a;
	lfs_arena_init(&a, 0);
	struct lfs_index_entry got;
	ck_assert_int_eq(lfs_index_get(&got, &a, &f.ix, &f.root, "c", 1), 0);
	ck_assert(lfs_index_entry_equal(&got, &e));
	lfs_arena_release(&a);
	fx_release(&f);
}
END_TEST

START_TEST(bad_arguments)
{
	struct fixture f;
	fx_init(&f);
	struct lfs_index_entry e;
	make_entry(&e, "a", 1);
	struct lfs_index_change dup[2] = {
		{.id = "a", .id_len = 1, .entry = &e},
		{.id = "a", .id_len = 1, .entry = NULL}};
	struct lfs_cid out;
	ck_assert_int_eq(lfs_index_apply(&out, &f.ix, &f.root, dup, 2),
			 -EINVAL);
	struct lfs_index_change nul = {.id = "a\0b", .id_len = 3, .entry = &e};
	ck_assert_int_eq(lfs_index_apply(&out, &f.ix, &f.root, &nul, 1),
			 -EINVAL);
	struct lfs_index_change empty = {.id = "", .id_len = 0, .entry = &e};
	ck_assert_int_eq(lfs_index_apply(&out, &f.ix, &f.root, &empty, 1),
			 -EINVAL);
	fx_release(&f);
}
END_TEST

/* Store a hand-made block and return its CID. */
static struct lfs_cid raw_node(struct fixture *f, struct lfs_buf *b)
{
	struct lfs_cid cid;
	lfs_cid_of(&cid, LFS_CODEC_DAG_CBOR, b->data, b->len);
	lfs_blockmap_put(&f->map, &cid, b->data, b->len);
	return cid;
}

START_TEST(hostile_nodes)
{
	struct fixture f;
	fx_init(&f);
	struct lfs_arena a;
	lfs_arena_init(&a, 0);
	struct lfs_index_entry got;
	struct lfs_buf b;
	lfs_buf_init(&b, 0);

	/* Not a map. */
	lfs_cbor_put_int(&b, 7);
	struct lfs_cid bad = raw_node(&f, &b);
	ck_assert_int_eq(lfs_index_get(&got, &a, &f.ix, &bad, "x", 1),
			 -EBADMSG);

	/* A leaf with entries out of order. */
	struct lfs_cid doc;
	lfs_cid_of(&doc, LFS_CODEC_DAG_CBOR, "d", 1);
	lfs_buf_reset(&b);
	lfs_cbor_put_head(&b, 5, 1);
	lfs_cbor_put_string(&b, "e", 1);
	lfs_cbor_put_head(&b, 4, 2);
	const char *ids[2] = {"b", "a"};
	for (int i = 0; i < 2; i++) {
		lfs_cbor_put_head(&b, 4, 2);
		lfs_cbor_put_string(&b, ids[i], 1);
		lfs_cbor_put_head(&b, 5, 3);
		lfs_cbor_put_string(&b, "d", 1);
		lfs_cbor_put_link(&b, &doc);
		lfs_cbor_put_string(&b, "t", 1);
		lfs_cbor_put_int(&b, 1);
		lfs_cbor_put_string(&b, "w", 1);
		lfs_cbor_put_string(&b, "w", 1);
	}
	bad = raw_node(&f, &b);
	ck_assert_int_eq(lfs_index_get(&got, &a, &f.ix, &bad, "a", 1),
			 -EBADMSG);

	/* An internal node whose count says it should be a leaf. */
	lfs_buf_reset(&b);
	lfs_cbor_put_head(&b, 5, 3);
	lfs_cbor_put_string(&b, "b", 1);
	lfs_cbor_put_int(&b, 1);
	lfs_cbor_put_string(&b, "k", 1);
	lfs_cbor_put_head(&b, 4, 1);
	lfs_cbor_put_link(&b, &f.root);
	lfs_cbor_put_string(&b, "n", 1);
	lfs_cbor_put_int(&b, 3);
	bad = raw_node(&f, &b);
	ck_assert_int_eq(lfs_index_get(&got, &a, &f.ix, &bad, "a", 1),
			 -EBADMSG);

	/* A child that does not exist. */
	struct lfs_cid missing;
	lfs_cid_of(&missing, LFS_CODEC_DAG_CBOR, "nope", 4);
	ck_assert_int_eq(lfs_index_get(&got, &a, &f.ix, &missing, "a", 1),
			 -EIO);

	/* An internal node that links to itself cannot be built (CIDs), but a
	 * lying count is caught by check. */
	for (int i = 0; i < 40; i++) {
		char id[16];
		snprintf(id, sizeof(id), "z%d", i);
		put(&f, id, 1);
	}
	ck_assert_int_eq(lfs_index_check(&f.ix, &f.root, NULL, NULL), 0);
	lfs_buf_release(&b);
	lfs_arena_release(&a);
	fx_release(&f);
}
END_TEST

static int count_entries(void *ctx, const struct lfs_index_entry *e)
{
	(void)e;
	(*(uint64_t *)ctx)++;
	return 0;
}

static int count_changes(void *ctx, const struct lfs_index_entry *ea,
			 const struct lfs_index_entry *eb)
{
	(void)ea;
	(void)eb;
	(*(uint64_t *)ctx)++;
	return 0;
}

/*
 * A hostile index that links one node 16 times, level after level (real
 * hashes allow it: each level is a distinct block). Walked once per path
 * that is 16^8 leaves; every walk must refuse it instead, at once.
 */
START_TEST(shared_subtrees)
{
	struct fixture f;
	fx_init(&f);
	for (int i = 0; i < 3; i++) {
		char id[16];
		snprintf(id, sizeof(id), "s%d", i);
		put(&f, id, 1);
	}
	struct lfs_cid below = f.root; /* a leaf of 3 entries */
	uint64_t n = 3;
	struct lfs_buf b;
	lfs_buf_init(&b, 0);
	for (int level = 0; level < 8; level++) {
		n *= 16;
		lfs_buf_reset(&b);
		lfs_cbor_put_head(&b, 5, 3);
		lfs_cbor_put_string(&b, "b", 1);
		lfs_cbor_put_int(&b, 0xffff);
		lfs_cbor_put_string(&b, "k", 1);
		lfs_cbor_put_head(&b, 4, 16);
		for (int k = 0; k < 16; k++)
			lfs_cbor_put_link(&b, &below);
		lfs_cbor_put_string(&b, "n", 1);
		/* The top one claims 33 entries: a delete then collapses it. */
		lfs_cbor_put_int(&b, level == 7 ? 33 : (int64_t)n);
		below = raw_node(&f, &b);
	}
	uint64_t seen = 0;
	ck_assert_int_eq(lfs_index_each(&f.ix, &below, count_entries, &seen),
			 -EBADMSG);
	ck_assert_uint_le(seen, 16 * 3);
	ck_assert_int_eq(lfs_index_check(&f.ix, &below, NULL, NULL), -EBADMSG);
	struct lfs_cid empty;
	ck_assert_int_eq(lfs_index_empty(&empty, &f.ix), 0);
	seen = 0;
	ck_assert_int_eq(
		lfs_index_diff(&f.ix, &empty, &below, count_changes, &seen),
		-EBADMSG);
	ck_assert_int_eq(
		lfs_index_diff(&f.ix, &below, &f.root, count_changes, &seen),
		-EBADMSG);
	struct lfs_index_change del = {.id = "s1", .id_len = 2};
	struct lfs_cid out;
	ck_assert_int_eq(lfs_index_apply(&out, &f.ix, &below, &del, 1),
			 -EBADMSG);
	lfs_buf_release(&b);
	fx_release(&f);
}
END_TEST

/* ---- the node cache and walks ---- */

struct counting {
	struct lfs_blocks inner;
	size_t gets;
};

static int counting_get(void *self, struct lfs_buf *out,
			const struct lfs_cid *cid)
{
	struct counting *c = self;
	c->gets++;
	return lfs_blocks_get(&c->inner, out, cid);
}

static int counting_put(void *self, const struct lfs_cid *cid,
			const uint8_t *data, size_t len)
{
	struct counting *c = self;
	return c->inner.ops->put(c->inner.self, cid, data, len);
}

static int walked(void *ctx, const struct lfs_index_entry *e)
{
	(void)e;
	(*(size_t *)ctx)++;
	return 0;
}

/*
 * A listing, then a lookup per name (ls -l): when the index fits in half
 * of the ledger's node cache (16 MiB) at the entries' real size, the walk
 * keeps its nodes and the lookups read no block; when it does not fit
 * (a small cache), the walk keeps nothing, so lookups read blocks again.
 */
START_TEST(walk_then_lookups)
{
	enum { N = 30000 };
	static const struct lfs_blocks_ops ops = {counting_get, counting_put};
	size_t caches[] = {(size_t)16 << 20, (size_t)1 << 20};
	struct fixture f;
	fx_init(&f);
	struct counting cnt = {.inner = f.ix.blocks};
	f.ix.blocks = (struct lfs_blocks){&ops, &cnt};
	static char ids[N][24];
	struct lfs_index_entry *es = calloc(N, sizeof(*es));
	struct lfs_index_change *ch = calloc(N, sizeof(*ch));
	ck_assert(es && ch);
	for (int i = 0; i < N; i++) {
		snprintf(ids[i], sizeof(ids[i]), "docs/d%06d.json", i);
		make_entry(&es[i], ids[i], i);
		ch[i] = (struct lfs_index_change){.id = ids[i],
						  .id_len = strlen(ids[i]),
						  .entry = &es[i]};
	}
	ck_assert_int_eq(lfs_index_apply(&f.root, &f.ix, &f.root, ch, N), 0);
	for (size_t k = 0; k < 2; k++) {
		ck_assert_int_eq(lfs_index_cache_new(&f.ix.cache, caches[k]),
				 0);
		size_t n = 0;
		ck_assert_int_eq(lfs_index_each(&f.ix, &f.root, walked, &n), 0);
		ck_assert_uint_eq(n, N);
		size_t before = cnt.gets;
		for (int i = 0; i < N; i += 7)
			ck_assert_int_eq(get_version(&f, ids[i]), i);
		if (k == 0)
			ck_assert_uint_eq(cnt.gets, before);
		else
			ck_assert_uint_gt(cnt.gets, before);
		lfs_index_cache_free(f.ix.cache);
		f.ix.cache = NULL;
	}
	free(ch);
	free(es);
	fx_release(&f);
}
END_TEST

int main(void)
{
	if (sodium_init() < 0)
		return 1;
	memset(salt, 0x5a, sizeof(salt));
	Suite *s = suite_create("index");
	TCase *t = tcase_create("core");
	tcase_set_timeout(t, 120);
	tcase_add_test(t, empty_index);
	tcase_add_test(t, model_random);
	tcase_add_test(t, history_independent);
	tcase_add_test(t, diff_small);
	tcase_add_test(t, conflicts_roundtrip);
	tcase_add_test(t, bad_arguments);
	tcase_add_test(t, hostile_nodes);
	tcase_add_test(t, shared_subtrees);
	tcase_add_test(t, cache_matches_uncached);
	tcase_add_test(t, walk_then_lookups);
	suite_add_tcase(s, t);
	return lfs_check_run(s);
}
