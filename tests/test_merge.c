/*
 * Tests of the merge (merge.h, docs/FORMATS.md "Merge"): hand-made
 * histories for each clause of the rule (greatest version wins, an edit
 * beats a concurrent delete, a version seen and moved past never competes
 * again, criss-cross histories, the conflict list and its cap), then random
 * histories of several replicas where every merge is checked against the
 * rule evaluated by brute force, and against itself with the heads given
 * in other orders. Random cases print their seed; LFS_TEST_SEED=N replays.
 *
 * Events are made as a ledger makes them: an event's root is the merge of
 * its parents with its ops applied.
 */
#include <check.h>
#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "blockmap.h"
#include "clock.h"
#include "index.h"
#include "merge.h"
#include "check_util.h"

#define MAXE  400
#define WORDS ((MAXE + 63) / 64)

static unsigned seed_base;

struct world {
	struct lfs_blockmap map;
	struct lfs_blocks b;
	struct lfs_index ix;
	struct lfs_cid cid[MAXE];
	struct lfs_cid root[MAXE];
	int64_t t[MAXE];
	char writer[MAXE][16];
	uint64_t anc[MAXE][WORDS]; /* ancestors, inclusive */
	size_t n;
};

static void world_init(struct world *w)
{
	memset(w, 0, sizeof(*w));
	uint8_t salt[LFS_SALT_BYTES];
	memset(salt, 0x33, sizeof(salt));
	lfs_blockmap_init(&w->map);
	w->b = lfs_blockmap_blocks(&w->map);
	lfs_index_init(&w->ix, w->b, salt);
}

static void world_release(struct world *w)
{
	lfs_blockmap_release(&w->map);
}

static struct lfs_cid doc_cid(const char *id, const char *value)
{
	char body[64];
	int n = snprintf(body, sizeof(body), "%s=%s", id, value);
	struct lfs_cid c;
	lfs_cid_of(&c, LFS_CODEC_DAG_CBOR, body, (size_t)n);
	return c;
}

static void shuffle(struct lfs_cid *v, size_t n)
{
	for (size_t i = n; i > 1; i--) {
		size_t j = (size_t)rand() % i;
		struct lfs_cid t = v[i - 1];
		v[i - 1] = v[j];
		v[j] = t;
	}
}

/* The merged root of heads given by index. */
static struct lfs_cid merged(struct world *w, const size_t *heads, size_t n)
{
	struct lfs_cid hc[MAXE], out;
	for (size_t i = 0; i < n; i++)
		hc[i] = w->cid[heads[i]];
	ck_assert_int_eq(lfs_merge_root(&out, &w->ix, &w->b, hc, n), 0);
	return out;
}

/*
 * Commit an event on parents (by index) as a ledger would. ops: "a=1 b=-"
 * puts a (document "a=1") and deletes b. t 0: one above the newest parent.
 */
static size_t commit(struct world *w, const size_t *par, size_t np, int64_t t,
		     const char *writer, const char *ops)
{
	ck_assert_uint_lt(w->n, MAXE);
	size_t i = w->n;
	int64_t min_t = 1;
	memset(w->anc[i], 0, sizeof(w->anc[i]));
	w->anc[i][i / 64] |= (uint64_t)1 << (i % 64);
	struct lfs_cid ps[MAXE];
	for (size_t k = 0; k < np; k++) {
		ps[k] = w->cid[par[k]];
		if (w->t[par[k]] >= min_t)
			min_t = w->t[par[k]] + 1;
		for (size_t x = 0; x < WORDS; x++)
			w->anc[i][x] |= w->anc[par[k]][x];
	}
	if (t == 0)
		t = min_t;
	ck_assert_int_ge(t, min_t);
	struct lfs_cid base = merged(w, par, np);

	char ids[8][16], vals[8][16];
	struct lfs_op o[8];
	struct lfs_index_entry e[8];
	struct lfs_index_change ch[8];
	size_t nops = 0;
	const char *p = ops;
	int used;
	while (nops < 8 && sscanf(p, " %15[^= ]=%15s%n", ids[nops], vals[nops],
				  &used) == 2) {
		p += used;
		size_t k = nops++;
		size_t len = strlen(ids[k]);
		o[k] = (struct lfs_op){.id = ids[k], .id_len = len};
		ch[k] = (struct lfs_index_change){.id = ids[k], .id_len = len};
		if (!strcmp(vals[k], "-")) {
			o[k].del = true;
			continue;
		}
		o[k].doc = doc_cid(ids[k], vals[k]);
		e[k] = (struct lfs_index_entry){
			.id = ids[k],
			.id_len = len,
			.cur = {.doc = o[k].doc, .t = t, .writer = writer}};
		ch[k].entry = &e[k];
	}
	struct lfs_event ev = {.parents = ps,
			       .nparents = np,
			       .t = t,
			       .writer = writer,
			       .ops = o,
			       .nops = nops};
	ck_assert_int_eq(lfs_index_apply(&ev.root, &w->ix, &base, ch, nops), 0);
	struct lfs_buf b;
	lfs_buf_init(&b, 0);
	ck_assert_int_eq(lfs_event_encode(&b, &ev), 0);
	lfs_cid_of(&w->cid[i], LFS_CODEC_DAG_CBOR, b.data, b.len);
	ck_assert_int_eq(lfs_blockmap_put(&w->map, &w->cid[i], b.data, b.len),
			 0);
	lfs_buf_release(&b);
	w->root[i] = ev.root;
	w->t[i] = t;
	snprintf(w->writer[i], sizeof(w->writer[i]), "%s", writer);
	w->n++;
	return i;
}

/* ---- reading a merged root ---- */

static void expect_absent(struct world *w, const struct lfs_cid *root,
			  const char *id)
{
	struct lfs_arena a;
	lfs_arena_init(&a, 0);
	struct lfs_index_entry e;
	ck_assert_int_eq(lfs_index_get(&e, &a, &w->ix, root, id, strlen(id)),
			 -ENOENT);
	lfs_arena_release(&a);
}

/* id's current value, then its conflicts' values, newest first. */
static void expect(struct world *w, const struct lfs_cid *root, const char *id,
		   const char *value, const char *conflicts)
{
	struct lfs_arena a;
	lfs_arena_init(&a, 0);
	struct lfs_index_entry e;
	ck_assert_int_eq(lfs_index_get(&e, &a, &w->ix, root, id, strlen(id)),
			 0);
	struct lfs_cid want = doc_cid(id, value);
	ck_assert_msg(lfs_cid_equal(&e.cur.doc, &want), "%s is not %s", id,
		      value);
	size_t k = 0;
	char v[16];
	const char *p = conflicts;
	int used;
	while (sscanf(p, " %15s%n", v, &used) == 1) {
		p += used;
		ck_assert_msg(k < e.nconflicts, "%s: too few conflicts", id);
		want = doc_cid(id, v);
		ck_assert_msg(lfs_cid_equal(&e.conflicts[k].doc, &want),
			      "%s: conflict %zu is not %s", id, k, v);
		k++;
	}
	ck_assert_msg(k == e.nconflicts, "%s: %zu conflicts, not %zu", id,
		      e.nconflicts, k);
	lfs_arena_release(&a);
}

/* Merging in every rotation and reversed gives the same root. */
static struct lfs_cid merged_any_order(struct world *w, const size_t *heads,
				       size_t n)
{
	struct lfs_cid first = merged(w, heads, n);
	size_t v[MAXE] = {0};
	for (size_t r = 1; r <= n; r++) { /* rotations, then reversed */
		for (size_t i = 0; i < n; i++)
			v[i] = r < n ? heads[(i + r) % n] : heads[n - 1 - i];
		struct lfs_cid again = merged(w, v, n);
		ck_assert_msg(lfs_cid_equal(&again, &first),
			      "merge depends on the order of the heads");
	}
	return first;
}

/* ---- each clause, by hand ---- */

START_TEST(greatest_version_wins)
{
	static struct world w;
	world_init(&w);
	size_t r = commit(&w, NULL, 0, 10, "w0", "a=0");
	size_t a = commit(&w, &r, 1, 20, "wA", "a=1");
	size_t b = commit(&w, &r, 1, 30, "wB", "a=2");
	size_t h[2] = {a, b};
	struct lfs_cid m = merged_any_order(&w, h, 2);
	expect(&w, &m, "a", "2", "1"); /* later t */

	/* Same time: the greater writer id. */
	a = commit(&w, &r, 1, 50, "wB", "b=x");
	b = commit(&w, &r, 1, 50, "wA", "b=y");
	h[0] = a;
	h[1] = b;
	m = merged_any_order(&w, h, 2);
	expect(&w, &m, "b", "x", "y");
	/* A later time beats a greater writer id. */
	b = commit(&w, &r, 1, 51, "wA", "b=y");
	h[1] = b;
	m = merged_any_order(&w, h, 2);
	expect(&w, &m, "b", "y", "x");
	/* Same time and writer: the greater document CID. */
	a = commit(&w, &r, 1, 60, "wC", "c=p");
	b = commit(&w, &r, 1, 60, "wC", "c=q");
	h[0] = a;
	h[1] = b;
	m = merged_any_order(&w, h, 2);
	struct lfs_cid p = doc_cid("c", "p"), q = doc_cid("c", "q");
	if (lfs_cid_cmp(&p, &q) > 0)
		expect(&w, &m, "c", "p", "q");
	else
		expect(&w, &m, "c", "q", "p");
	world_release(&w);
}
END_TEST

START_TEST(edit_beats_concurrent_delete)
{
	static struct world w;
	world_init(&w);
	size_t r = commit(&w, NULL, 0, 10, "w0", "a=0");
	/* The delete is later in time, but never saw the edit. */
	size_t del = commit(&w, &r, 1, 100, "wA", "a=-");
	size_t edit = commit(&w, &r, 1, 20, "wB", "a=1");
	size_t h[2] = {del, edit};
	struct lfs_cid m = merged_any_order(&w, h, 2);
	expect(&w, &m, "a", "1", "");
	world_release(&w);
}
END_TEST

START_TEST(delete_after_seeing_stays)
{
	static struct world w;
	world_init(&w);
	size_t r = commit(&w, NULL, 0, 10, "w0", "a=0");
	size_t edit = commit(&w, &r, 1, 20, "wB", "a=1");
	/* wA saw the edit and deleted; wC saw it and wrote something else. */
	size_t del = commit(&w, &edit, 1, 30, "wA", "a=-");
	size_t other = commit(&w, &edit, 1, 40, "wC", "b=1");
	size_t h[2] = {del, other};
	struct lfs_cid m = merged_any_order(&w, h, 2);
	expect_absent(&w, &m, "a");
	expect(&w, &m, "b", "1", "");
	/* A deletion of a version some other head then replaced. */
	size_t again = commit(&w, &other, 1, 50, "wC", "a=2");
	h[1] = again;
	m = merged_any_order(&w, h, 2);
	expect(&w, &m, "a", "2", "");
	world_release(&w);
}
END_TEST

START_TEST(own_older_version_never_conflicts)
{
	static struct world w;
	world_init(&w);
	size_t r = commit(&w, NULL, 0, 10, "w1", "a=0");
	size_t newer = commit(&w, &r, 1, 20, "w1", "a=1");
	size_t other = commit(&w, &r, 1, 30, "w2", "b=1");
	size_t h[2] = {newer, other};
	struct lfs_cid m = merged_any_order(&w, h, 2);
	expect(&w, &m, "a", "1", "");
	expect(&w, &m, "b", "1", "");
	world_release(&w);
}
END_TEST

/*
 *        r (a=0)
 *       /  \
 *     A1    B1        a=A (t 20), a=B (t 21)
 *     | \  / |
 *     |  \/  |
 *     |  /\  |
 *     A2    B2        both merge A1 and B1: a=B, conflicts [A]
 *     |      |
 *     A3    B3        then each goes on
 */
START_TEST(criss_cross)
{
	static struct world w;
	world_init(&w);
	size_t r = commit(&w, NULL, 0, 10, "w0", "a=0");
	size_t a1 = commit(&w, &r, 1, 20, "wA", "a=A");
	size_t b1 = commit(&w, &r, 1, 21, "wB", "a=B");
	size_t ab[2] = {a1, b1};
	size_t a2 = commit(&w, ab, 2, 30, "wA", "x=1");
	size_t b2 = commit(&w, ab, 2, 31, "wB", "y=1");
	size_t h[2] = {a2, b2};
	struct lfs_cid m = merged_any_order(&w, h, 2);
	expect(&w, &m, "a", "B", "A");
	expect(&w, &m, "x", "1", "");
	expect(&w, &m, "y", "1", "");
	struct lfs_cid *bases, hc[2] = {w.cid[a2], w.cid[b2]};
	size_t nb;
	ck_assert_int_eq(lfs_clock_merge_bases(&bases, &nb, &w.b, hc, 2), 0);
	ck_assert_uint_eq(nb, 2);
	free(bases);

	/* A writes a again: its version wins, the old ones do not return. */
	size_t a3 = commit(&w, &a2, 1, 40, "wA", "a=A2");
	size_t b3 = commit(&w, &b2, 1, 41, "wB", "z=1");
	h[0] = a3;
	h[1] = b3;
	m = merged_any_order(&w, h, 2);
	expect(&w, &m, "a", "A2", "");
	expect(&w, &m, "z", "1", "");

	/* A deletes after seeing both: deleted, not resurrected. */
	size_t a3d = commit(&w, &a2, 1, 42, "wA", "a=-");
	h[0] = a3d;
	m = merged_any_order(&w, h, 2);
	expect_absent(&w, &m, "a");

	/* ...unless B edits concurrently: the edit beats the delete. */
	size_t b3e = commit(&w, &b2, 1, 43, "wB", "a=B2");
	h[1] = b3e;
	m = merged_any_order(&w, h, 2);
	expect(&w, &m, "a", "B2", "");

	/* Both edit concurrently: a conflict of the two new versions only. */
	h[0] = a3;
	m = merged_any_order(&w, h, 2);
	expect(&w, &m, "a", "B2", "A2");
	world_release(&w);
}
END_TEST

START_TEST(conflicts_carried_and_cleared)
{
	static struct world w;
	world_init(&w);
	size_t r = commit(&w, NULL, 0, 10, "w0", "a=0");
	size_t a = commit(&w, &r, 1, 20, "wA", "a=1");
	size_t b = commit(&w, &r, 1, 30, "wB", "a=2");
	size_t c = commit(&w, &r, 1, 35, "wC", "b=1");
	size_t ab[2] = {a, b};
	size_t m1 = commit(&w, ab, 2, 0, "wA", "q=1"); /* a=2 c=[1] */
	expect(&w, &w.root[m1], "a", "2", "1");
	/* Merged with a head that never saw either: the loser is kept. */
	size_t h[2] = {m1, c};
	struct lfs_cid m = merged_any_order(&w, h, 2);
	expect(&w, &m, "a", "2", "1");
	/* A third concurrent version joins the list, newest first. */
	size_t d = commit(&w, &r, 1, 25, "wD", "a=3");
	h[1] = d;
	m = merged_any_order(&w, h, 2);
	expect(&w, &m, "a", "2", "3 1");
	/* Writing the document again clears the list. */
	size_t m2 = commit(&w, &m1, 1, 0, "wA", "a=4");
	expect(&w, &w.root[m2], "a", "4", "");
	h[0] = m2;
	h[1] = c;
	m = merged_any_order(&w, h, 2);
	expect(&w, &m, "a", "4", "");
	world_release(&w);
}
END_TEST

/* 70 concurrent writers: the newest wins, the next 64 are its conflicts. */
START_TEST(conflict_cap)
{
	static struct world w;
	world_init(&w);
	size_t r = commit(&w, NULL, 0, 10, "w0", "a=0");
	size_t h[70];
	for (int i = 0; i < 70; i++) {
		char wr[8], op[16];
		snprintf(wr, sizeof(wr), "w%02d", i);
		snprintf(op, sizeof(op), "a=%d", i);
		h[i] = commit(&w, &r, 1, 100 + i, wr, op);
	}
	struct lfs_cid m = merged(&w, h, 70);
	char list[512] = "";
	for (int i = 68; i >= 69 - LFS_MERGE_MAX_CONFLICTS; i--) {
		char v[8];
		snprintf(v, sizeof(v), "%d ", i);
		strcat(list, v);
	}
	expect(&w, &m, "a", "69", list);
	size_t rev[70];
	for (int i = 0; i < 70; i++)
		rev[i] = h[69 - i];
	struct lfs_cid m2 = merged(&w, rev, 70);
	ck_assert(lfs_cid_equal(&m, &m2));
	world_release(&w);
}
END_TEST

/* ---- random histories against the rule ---- */

static bool knows(const struct world *w, size_t head,
		  const struct lfs_version *v)
{
	for (size_t x = 0; x < w->n; x++)
		if ((w->anc[head][x / 64] >> (x % 64) & 1) && w->t[x] == v->t &&
		    !strcmp(w->writer[x], v->writer))
			return true;
	return false;
}

static bool lists(const struct lfs_index_entry *e, const struct lfs_version *v)
{
	if (!e)
		return false;
	if (!lfs_version_cmp(&e->cur, v))
		return true;
	for (size_t i = 0; i < e->nconflicts; i++)
		if (!lfs_version_cmp(&e->conflicts[i], v))
			return true;
	return false;
}

static int version_desc(const void *a, const void *b)
{
	return -lfs_version_cmp(a, b);
}

struct ids {
	char id[16][16];
	size_t n;
};

static int collect_id(void *ctx, const struct lfs_index_entry *e)
{
	struct ids *s = ctx;
	for (size_t i = 0; i < s->n; i++)
		if (!strcmp(s->id[i], e->id))
			return 0;
	ck_assert_uint_lt(s->n, 16);
	snprintf(s->id[s->n++], sizeof(s->id[0]), "%s", e->id);
	return 0;
}

/* docs/FORMATS.md "Merge", evaluated by brute force, against root. */
static void check_rule(struct world *w, const size_t *heads, size_t n,
		       const struct lfs_cid *root)
{
	struct ids ids = {.n = 0};
	ck_assert_uint_le(n, 16);
	for (size_t h = 0; h < n; h++)
		ck_assert_int_eq(lfs_index_each(&w->ix, &w->root[heads[h]],
						collect_id, &ids),
				 0);
	struct lfs_arena a;
	lfs_arena_init(&a, 0);
	for (size_t i = 0; i < ids.n; i++) {
		const char *id = ids.id[i];
		size_t len = strlen(id);
		struct lfs_index_entry st[16], *sp[16];
		struct lfs_version all[16 * 66], live[16 * 66];
		size_t nall = 0, nlive = 0;
		bool absent = false;
		for (size_t h = 0; h < n; h++) {
			int rc = lfs_index_get(&st[h], &a, &w->ix,
					       &w->root[heads[h]], id, len);
			ck_assert(rc == 0 || rc == -ENOENT);
			sp[h] = rc ? NULL : &st[h];
			absent |= rc != 0;
			if (rc)
				continue;
			all[nall++] = st[h].cur;
			for (size_t c = 0; c < st[h].nconflicts; c++)
				all[nall++] = st[h].conflicts[c];
		}
		qsort(all, nall, sizeof(*all), version_desc);
		for (size_t k = 0; k < nall; k++) {
			if (nlive &&
			    !lfs_version_cmp(&live[nlive - 1], &all[k]))
				continue;
			bool moved_past = false;
			for (size_t h = 0; h < n && !moved_past; h++)
				moved_past = knows(w, heads[h], &all[k]) &&
					     !lists(sp[h], &all[k]);
			if (!moved_past)
				live[nlive++] = all[k];
		}
		struct lfs_index_entry got;
		int rc = lfs_index_get(&got, &a, &w->ix, root, id, len);
		if (!nlive) {
			if (absent)
				ck_assert_msg(rc == -ENOENT,
					      "%s: every version was moved "
					      "past, yet it is present",
					      id);
			continue;
		}
		ck_assert_msg(rc == 0, "%s: a live version, yet absent", id);
		ck_assert_msg(!lfs_version_cmp(&got.cur, &live[0]),
			      "%s: not the greatest live version", id);
		size_t nc = nlive - 1;
		if (nc > LFS_MERGE_MAX_CONFLICTS)
			nc = LFS_MERGE_MAX_CONFLICTS;
		ck_assert_msg(got.nconflicts == nc,
			      "%s: %zu conflicts, not %zu", id, got.nconflicts,
			      nc);
		for (size_t c = 0; c < nc; c++)
			ck_assert_msg(!lfs_version_cmp(&got.conflicts[c],
						       &live[c + 1]),
				      "%s: conflict %zu", id, c);
	}
	lfs_arena_release(&a);
}

#define NREP 4

/* Heads of the union of two head sets (brute-force reduce). */
static size_t join(const struct world *w, size_t *out, const size_t *a,
		   size_t na, const size_t *b, size_t nb)
{
	size_t all[2 * MAXE], n = 0, m = 0;
	for (size_t i = 0; i < na; i++)
		all[n++] = a[i];
	for (size_t i = 0; i < nb; i++)
		all[n++] = b[i];
	for (size_t i = 0; i < n; i++) {
		bool keep = true;
		for (size_t j = 0; j < n && keep; j++)
			if (all[j] != all[i] &&
			    (w->anc[all[j]][all[i] / 64] >> (all[i] % 64) & 1))
				keep = false;
		for (size_t k = 0; k < m && keep; k++)
			keep = out[k] != all[i];
		if (keep)
			out[m++] = all[i];
	}
	return m;
}

START_TEST(random_histories)
{
	unsigned seed = seed_base + (unsigned)_i * 7919u;
	printf("test_merge: random_histories seed %u (replay: "
	       "LFS_TEST_SEED=%u)\n",
	       seed, seed_base);
	srand(seed);
	static struct world w;
	world_init(&w);
	static const char *idset[] = {"a", "b", "c", "d", "e"};
	size_t heads[NREP][NREP * 4], nh[NREP] = {0};
	int64_t wall[NREP];
	for (int r = 0; r < NREP; r++)
		wall[r] = 1000 + rand() % 50;
	size_t merges = 0;
	for (int step = 0; step < 250; step++) {
		int r = rand() % NREP;
		if (rand() % 3 == 0) {
			/* Sync with another replica. */
			int s = rand() % NREP;
			size_t out[2 * MAXE];
			size_t m =
				join(&w, out, heads[r], nh[r], heads[s], nh[s]);
			ck_assert_uint_le(m, NREP * 4);
			memcpy(heads[r], out, m * sizeof(*out));
			nh[r] = m;
			continue;
		}
		if (nh[r] > 1) {
			struct lfs_cid m =
				merged_any_order(&w, heads[r], nh[r]);
			check_rule(&w, heads[r], nh[r], &m);
			merges++;
		}
		char ops[64] = "";
		int nops = 1 + rand() % 2;
		for (int k = 0; k < nops; k++) {
			char op[16];
			const char *id = idset[(rand() % 5 + k) % 5];
			if (strstr(ops, id))
				continue;
			if (rand() % 4 == 0)
				snprintf(op, sizeof(op), "%s=- ", id);
			else
				snprintf(op, sizeof(op), "%s=%d ", id, step);
			strcat(ops, op);
		}
		/* Clocks drift: sometimes behind the parents (hybrid time). */
		wall[r] += rand() % 20 - 5;
		int64_t newest = 0;
		for (size_t k = 0; k < nh[r]; k++)
			if (w.t[heads[r][k]] > newest)
				newest = w.t[heads[r][k]];
		int64_t t = wall[r] > newest ? wall[r] : newest + 1;
		char wr[8];
		snprintf(wr, sizeof(wr), "w%d", r);
		size_t e = commit(&w, heads[r], nh[r], t, wr, ops);
		heads[r][0] = e;
		nh[r] = 1;
	}
	/* Everyone together. */
	size_t all[NREP * 4 * NREP], n = 0;
	for (int r = 0; r < NREP; r++) {
		size_t out[2 * MAXE];
		n = join(&w, out, all, n, heads[r], nh[r]);
		memcpy(all, out, n * sizeof(*out));
	}
	struct lfs_cid m = merged_any_order(&w, all, n);
	check_rule(&w, all, n, &m);
	ck_assert_int_eq(lfs_index_check(&w.ix, &m, NULL, NULL), 0);
	/* Many random orders of the final heads. */
	struct lfs_cid hc[NREP * 4 * NREP], again;
	for (size_t i = 0; i < n; i++)
		hc[i] = w.cid[all[i]];
	for (int k = 0; k < 10; k++) {
		shuffle(hc, n);
		ck_assert_int_eq(lfs_merge_root(&again, &w.ix, &w.b, hc, n), 0);
		ck_assert(lfs_cid_equal(&again, &m));
	}
	printf("test_merge: %zu events, %zu merges checked, %zu final heads\n",
	       w.n, merges, n);
	world_release(&w);
}
END_TEST

START_TEST(missing_events)
{
	static struct world w;
	world_init(&w);
	size_t r = commit(&w, NULL, 0, 10, "w0", "a=0");
	size_t a = commit(&w, &r, 1, 20, "wA", "a=1");
	struct lfs_cid h[2] = {w.cid[a]}, out;
	lfs_cid_of(&h[1], LFS_CODEC_DAG_CBOR, "ghost", 5);
	ck_assert_int_eq(lfs_merge_root(&out, &w.ix, &w.b, h, 2), -ENOENT);
	/* No heads: the empty index; one head: its root. */
	struct lfs_cid empty;
	ck_assert_int_eq(lfs_index_empty(&empty, &w.ix), 0);
	ck_assert_int_eq(lfs_merge_root(&out, &w.ix, &w.b, h, 0), 0);
	ck_assert(lfs_cid_equal(&out, &empty));
	ck_assert_int_eq(lfs_merge_root(&out, &w.ix, &w.b, h, 1), 0);
	ck_assert(lfs_cid_equal(&out, &w.root[a]));
	world_release(&w);
}
END_TEST

int main(void)
{
	if (sodium_init() < 0)
		return 1;
	seed_base = lfs_check_seed();
	Suite *s = suite_create("merge");
	TCase *t = tcase_create("core");
	tcase_set_timeout(t, 300);
	tcase_add_test(t, greatest_version_wins);
	tcase_add_test(t, edit_beats_concurrent_delete);
	tcase_add_test(t, delete_after_seeing_stays);
	tcase_add_test(t, own_older_version_never_conflicts);
	tcase_add_test(t, criss_cross);
	tcase_add_test(t, conflicts_carried_and_cleared);
	tcase_add_test(t, conflict_cap);
	tcase_add_loop_test(t, random_histories, 0, 6);
	tcase_add_test(t, missing_events);
	suite_add_tcase(s, t);
	return lfs_check_run(s);
}
