/*
 * Tests of the Merkle clock: the event decoder's rules (times, order,
 * shapes), parent checks, and the DAG questions (merge bases, reduce to
 * heads, which events know a write, the walk) checked against a brute-force
 * ancestry computed over random DAGs. Random cases print their seed;
 * LFS_TEST_SEED=N replays one.
 */
#include <check.h>
#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "blockmap.h"
#include "car.h"
#include "cbor.h"
#include "clock.h"
#include "envelope.h"
#include "ledger.h"
#include "check_car.h"
#include "check_util.h"

static unsigned seed_base;

/* ---- building events ---- */

#define MAXEV 160
#define WORDS ((MAXEV + 63) / 64)

struct dag {
	struct lfs_blockmap map;
	struct lfs_blocks b;
	struct lfs_cid cid[MAXEV];
	int64_t t[MAXEV];
	const char *writer[MAXEV];
	uint64_t anc[MAXEV][WORDS]; /* ancestors, inclusive */
	size_t n;
};

static const char *writers[] = {"w0", "w1", "w2"};

static void dag_init(struct dag *d)
{
	memset(d, 0, sizeof(*d));
	lfs_blockmap_init(&d->map);
	d->b = lfs_blockmap_blocks(&d->map);
}

static void dag_release(struct dag *d)
{
	lfs_blockmap_release(&d->map);
}

/* Encode an event with the given parents, store it, return its CID. */
static struct lfs_cid put_event(struct lfs_blockmap *map, int64_t t,
				const char *writer,
				const struct lfs_cid *parents, size_t np,
				const char *tag)
{
	struct lfs_cid ps[16], root;
	ck_assert_uint_le(np, 16);
	if (np)
		memcpy(ps, parents, np * sizeof(*ps));
	lfs_cid_of(&root, LFS_CODEC_DAG_CBOR, tag, strlen(tag));
	struct lfs_event ev = {.parents = ps,
			       .nparents = np,
			       .t = t,
			       .writer = writer,
			       .root = root};
	struct lfs_buf buf;
	lfs_buf_init(&buf, 0);
	ck_assert_int_eq(lfs_event_encode(&buf, &ev), 0);
	struct lfs_cid cid;
	lfs_cid_of(&cid, LFS_CODEC_DAG_CBOR, buf.data, buf.len);
	ck_assert_int_eq(lfs_blockmap_put(map, &cid, buf.data, buf.len), 0);
	lfs_buf_release(&buf);
	return cid;
}

/* Add event number d->n with parents given by index; t > every parent's. */
static size_t dag_add(struct dag *d, const size_t *par, size_t np, int64_t dt,
		      const char *writer)
{
	ck_assert_uint_lt(d->n, MAXEV);
	size_t i = d->n;
	struct lfs_cid ps[16];
	int64_t t = 100;
	memset(d->anc[i], 0, sizeof(d->anc[i]));
	d->anc[i][i / 64] |= (uint64_t)1 << (i % 64);
	for (size_t k = 0; k < np; k++) {
		ps[k] = d->cid[par[k]];
		if (d->t[par[k]] >= t)
			t = d->t[par[k]] + 1;
		for (size_t w = 0; w < WORDS; w++)
			d->anc[i][w] |= d->anc[par[k]][w];
	}
	t += dt;
	char tag[32];
	snprintf(tag, sizeof(tag), "root-%zu", i);
	d->cid[i] = put_event(&d->map, t, writer, ps, np, tag);
	d->t[i] = t;
	d->writer[i] = writer;
	d->n++;
	return i;
}

static bool is_anc(const struct dag *d, size_t a, size_t of)
{
	return d->anc[of][a / 64] >> (a % 64) & 1;
}

/*
 * A random DAG: each event has 0..3 distinct earlier parents (0 only now
 * and then, making separate histories), a writer from three, and a time
 * 0..2 above its newest parent (so concurrent events often share a time).
 */
static void dag_random(struct dag *d, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		size_t par[3], np = 0;
		size_t want = i == 0 ? 0 : (size_t)(rand() % 4);
		if (i > 0 && want == 0 && rand() % 6)
			want = 1;
		for (size_t k = 0; k < want; k++) {
			size_t p = (size_t)rand() % i;
			/* Prefer recent events: deeper, more interleaved. */
			if (rand() % 2 && i > 8)
				p = i - 1 - (size_t)rand() % 8;
			bool dup = false;
			for (size_t j = 0; j < np; j++)
				dup |= par[j] == p;
			if (!dup)
				par[np++] = p;
		}
		dag_add(d, par, np, rand() % 3, writers[rand() % 3]);
	}
}

static unsigned test_seed(int salt)
{
	unsigned s = seed_base + (unsigned)salt * 7919u;
	printf("%s: seed %u (replay: LFS_TEST_SEED=%u)\n", "test_clock", s,
	       seed_base);
	srand(s);
	return s;
}

static int cid_qsort(const void *a, const void *b)
{
	return lfs_cid_cmp(a, b);
}

/* ---- the event block ---- */

/* Write an event's bytes by hand, in canonical layout, without checks. */
static void raw_event(struct lfs_buf *b, int64_t t, const char *w,
		      const struct lfs_cid *parents, size_t np,
		      const char *const *ids, size_t nops)
{
	struct lfs_cid root, doc;
	lfs_cid_of(&root, LFS_CODEC_DAG_CBOR, "r", 1);
	lfs_cid_of(&doc, LFS_CODEC_DAG_CBOR, "d", 1);
	lfs_buf_reset(b);
	lfs_cbor_put_head(b, 5, 2);
	lfs_cbor_put_string(b, "data", 4);
	lfs_cbor_put_head(b, 5, 4);
	lfs_cbor_put_string(b, "t", 1);
	lfs_cbor_put_int(b, t);
	lfs_cbor_put_string(b, "w", 1);
	lfs_cbor_put_string(b, w, strlen(w));
	lfs_cbor_put_string(b, "ops", 3);
	lfs_cbor_put_head(b, 4, nops);
	for (size_t i = 0; i < nops; i++) {
		lfs_cbor_put_head(b, 4, 2);
		lfs_cbor_put_string(b, ids[i], strlen(ids[i]));
		lfs_cbor_put_link(b, &doc);
	}
	lfs_cbor_put_string(b, "root", 4);
	lfs_cbor_put_link(b, &root);
	lfs_cbor_put_string(b, "parents", 7);
	lfs_cbor_put_head(b, 4, np);
	for (size_t i = 0; i < np; i++)
		lfs_cbor_put_link(b, &parents[i]);
	ck_assert_int_eq(b->err, 0);
}

static int decode(const struct lfs_buf *b)
{
	struct lfs_arena a;
	lfs_arena_init(&a, 0);
	struct lfs_event ev;
	int rc = lfs_event_decode(&ev, &a, b->data, b->len);
	lfs_arena_release(&a);
	return rc;
}

START_TEST(event_roundtrip)
{
	struct lfs_cid p[3], doc;
	for (int i = 0; i < 3; i++)
		lfs_cid_of(&p[i], LFS_CODEC_DAG_CBOR, &i, sizeof(i));
	lfs_cid_of(&doc, LFS_CODEC_DAG_CBOR, "doc", 3);
	struct lfs_op ops[3] = {
		{.id = "zeta", .id_len = 4, .doc = doc},
		{.id = "alpha", .id_len = 5, .del = true},
		{.id = "\xc3\xa9t\xc3\xa9", .id_len = 5, .doc = doc},
	};
	struct lfs_event ev = {.parents = p,
			       .nparents = 3,
			       .t = 123456789,
			       .writer = "writer-1",
			       .ops = ops,
			       .nops = 3,
			       .root = doc};
	struct lfs_buf b, again;
	lfs_buf_init(&b, 0);
	lfs_buf_init(&again, 0);
	ck_assert_int_eq(lfs_event_encode(&b, &ev), 0);
	struct lfs_arena a;
	lfs_arena_init(&a, 0);
	struct lfs_event got;
	ck_assert_int_eq(lfs_event_decode(&got, &a, b.data, b.len), 0);
	ck_assert_int_eq(got.t, 123456789);
	ck_assert_str_eq(got.writer, "writer-1");
	ck_assert_uint_eq(got.nparents, 3);
	ck_assert_uint_eq(got.nops, 3);
	/* Sorted on the way out: parents by CID bytes, ops by id bytes. */
	for (size_t i = 1; i < 3; i++)
		ck_assert_int_lt(
			lfs_cid_cmp(&got.parents[i - 1], &got.parents[i]), 0);
	ck_assert_str_eq(got.ops[0].id, "alpha");
	ck_assert(got.ops[0].del);
	ck_assert_str_eq(got.ops[1].id, "zeta");
	ck_assert(!got.ops[1].del && lfs_cid_equal(&got.ops[1].doc, &doc));
	/* Canonical: what decodes re-encodes to the same bytes. */
	ck_assert_int_eq(lfs_event_encode(&again, &got), 0);
	ck_assert_uint_eq(again.len, b.len);
	ck_assert_mem_eq(again.data, b.data, b.len);
	lfs_arena_release(&a);
	lfs_buf_release(&b);
	lfs_buf_release(&again);
}
END_TEST

/* Times: [0, 2^53] µs on encode and decode alike. */
START_TEST(event_time_bounds)
{
	struct lfs_buf b;
	lfs_buf_init(&b, 0);
	raw_event(&b, 0, "w", NULL, 0, NULL, 0);
	ck_assert_int_eq(decode(&b), 0);
	raw_event(&b, LFS_CLOCK_T_MAX, "w", NULL, 0, NULL, 0);
	ck_assert_int_eq(decode(&b), 0);
	raw_event(&b, LFS_CLOCK_T_MAX + 1, "w", NULL, 0, NULL, 0);
	ck_assert_int_eq(decode(&b), -EBADMSG);
	raw_event(&b, INT64_MAX, "w", NULL, 0, NULL, 0);
	ck_assert_int_eq(decode(&b), -EBADMSG);
	raw_event(&b, -1, "w", NULL, 0, NULL, 0);
	ck_assert_int_eq(decode(&b), -EBADMSG);
	raw_event(&b, INT64_MIN, "w", NULL, 0, NULL, 0);
	ck_assert_int_eq(decode(&b), -EBADMSG);

	struct lfs_cid root;
	lfs_cid_of(&root, LFS_CODEC_DAG_CBOR, "r", 1);
	struct lfs_event ev = {
		.t = LFS_CLOCK_T_MAX, .writer = "w", .root = root};
	lfs_buf_reset(&b);
	ck_assert_int_eq(lfs_event_encode(&b, &ev), 0);
	ev.t = LFS_CLOCK_T_MAX + 1;
	lfs_buf_reset(&b);
	ck_assert_int_eq(lfs_event_encode(&b, &ev), -EINVAL);
	ev.t = -1;
	lfs_buf_reset(&b);
	ck_assert_int_eq(lfs_event_encode(&b, &ev), -EINVAL);
	lfs_buf_release(&b);
}
END_TEST

/* Every rule the decoder can check on one block. */
START_TEST(event_hostile)
{
	struct lfs_buf b;
	lfs_buf_init(&b, 0);
	struct lfs_cid p[2], raw;
	lfs_cid_of(&p[0], LFS_CODEC_DAG_CBOR, "a", 1);
	lfs_cid_of(&p[1], LFS_CODEC_DAG_CBOR, "b", 1);
	if (lfs_cid_cmp(&p[0], &p[1]) > 0) {
		struct lfs_cid t = p[0];
		p[0] = p[1];
		p[1] = t;
	}
	lfs_cid_of(&raw, LFS_CODEC_RAW, "a", 1);

	raw_event(&b, 5, "w", p, 2, NULL, 0);
	ck_assert_int_eq(decode(&b), 0);
	struct lfs_cid rev[2] = {p[1], p[0]};
	raw_event(&b, 5, "w", rev, 2, NULL, 0);
	ck_assert_int_eq(decode(&b), -EBADMSG); /* parents unsorted */
	struct lfs_cid dup[2] = {p[0], p[0]};
	raw_event(&b, 5, "w", dup, 2, NULL, 0);
	ck_assert_int_eq(decode(&b), -EBADMSG); /* parents repeated */
	raw_event(&b, 5, "w", &raw, 1, NULL, 0);
	ck_assert_int_eq(decode(&b), -EBADMSG); /* a raw parent */

	const char *sorted[] = {"a", "b"}, *unsorted[] = {"b", "a"},
		   *twice[] = {"a", "a"}, *empty[] = {""};
	raw_event(&b, 5, "w", NULL, 0, sorted, 2);
	ck_assert_int_eq(decode(&b), 0);
	raw_event(&b, 5, "w", NULL, 0, unsorted, 2);
	ck_assert_int_eq(decode(&b), -EBADMSG);
	raw_event(&b, 5, "w", NULL, 0, twice, 2);
	ck_assert_int_eq(decode(&b), -EBADMSG);
	raw_event(&b, 5, "w", NULL, 0, empty, 1);
	ck_assert_int_eq(decode(&b), -EBADMSG);

	char longw[LFS_WRITER_MAX + 2];
	memset(longw, 'w', sizeof(longw) - 1);
	longw[sizeof(longw) - 1] = 0;
	raw_event(&b, 5, longw, NULL, 0, NULL, 0);
	ck_assert_int_eq(decode(&b), -EBADMSG);
	longw[LFS_WRITER_MAX] = 0;
	raw_event(&b, 5, longw, NULL, 0, NULL, 0);
	ck_assert_int_eq(decode(&b), 0);

	/* Not a map; a map with a third key; truncated. */
	lfs_buf_reset(&b);
	lfs_cbor_put_int(&b, 1);
	ck_assert_int_eq(decode(&b), -EBADMSG);
	raw_event(&b, 5, "w", p, 2, NULL, 0);
	b.data[0] = 0xa3;
	ck_assert_int_eq(decode(&b), -EBADMSG);
	raw_event(&b, 5, "w", p, 2, NULL, 0);
	for (size_t cut = 0; cut < b.len; cut++) {
		struct lfs_buf c = b;
		c.len = cut;
		ck_assert_int_eq(decode(&c), -EBADMSG);
	}

	/* The encoder refuses what the decoder would. */
	struct lfs_event ev = {.parents = dup, .nparents = 2, .writer = "w"};
	lfs_buf_reset(&b);
	ck_assert_int_eq(lfs_event_encode(&b, &ev), -EINVAL);
	struct lfs_op ops[2] = {{.id = "x", .id_len = 1, .del = true},
				{.id = "x", .id_len = 1, .del = true}};
	ev = (struct lfs_event){.ops = ops, .nops = 2, .writer = "w"};
	lfs_buf_reset(&b);
	ck_assert_int_eq(lfs_event_encode(&b, &ev), -EINVAL);
	ops[0] = (struct lfs_op){.id = "\xff", .id_len = 1, .del = true};
	ev.nops = 1;
	lfs_buf_reset(&b);
	ck_assert_int_eq(lfs_event_encode(&b, &ev), -EINVAL);
	memset(longw, 'w', sizeof(longw) - 1);
	ev = (struct lfs_event){.writer = longw};
	lfs_buf_reset(&b);
	ck_assert_int_eq(lfs_event_encode(&b, &ev), -EINVAL);
	lfs_buf_release(&b);
}
END_TEST

START_TEST(check_parents)
{
	struct lfs_blockmap m;
	lfs_blockmap_init(&m);
	struct lfs_blocks b = lfs_blockmap_blocks(&m);
	struct lfs_cid p = put_event(&m, 10, "w", NULL, 0, "p");
	struct lfs_cid ghost;
	lfs_cid_of(&ghost, LFS_CODEC_DAG_CBOR, "ghost", 5);
	struct lfs_cid both[2] = {p, ghost};
	struct lfs_event ev = {.parents = both, .nparents = 1, .t = 11};
	struct lfs_cid missing = {0};
	ck_assert_int_eq(lfs_clock_check_parents(&missing, &b, &ev), 0);
	ev.t = 10; /* not older: a clock that went backwards */
	ck_assert_int_eq(lfs_clock_check_parents(&missing, &b, &ev), -ETIME);
	ev.t = 9;
	ck_assert_int_eq(lfs_clock_check_parents(&missing, &b, &ev), -ETIME);
	ev.t = 11;
	ev.parents = both + 1;
	ck_assert_int_eq(lfs_clock_check_parents(&missing, &b, &ev), -ENOENT);
	ck_assert(lfs_cid_equal(&missing, &ghost));
	ck_assert_int_eq(lfs_clock_check_parents(NULL, &b, &ev), -ENOENT);
	/* A parent that is not an event. */
	struct lfs_cid junk;
	lfs_cid_of(&junk, LFS_CODEC_DAG_CBOR, "\x01", 1);
	lfs_blockmap_put(&m, &junk, (const uint8_t *)"\x01", 1);
	ev.parents = &junk;
	ck_assert_int_eq(lfs_clock_check_parents(NULL, &b, &ev), -EBADMSG);
	lfs_blockmap_release(&m);
}
END_TEST

/* ---- the DAG questions against brute force ---- */

/* The maximal common ancestors of set[], by brute force, sorted by CID. */
static size_t brute_bases(struct lfs_cid *out, const struct dag *d,
			  const size_t *set, size_t n)
{
	uint64_t common[WORDS];
	for (size_t w = 0; w < WORDS; w++) {
		common[w] = ~(uint64_t)0;
		for (size_t k = 0; k < n; k++)
			common[w] &= d->anc[set[k]][w];
	}
	size_t m = 0;
	for (size_t c = 0; c < d->n; c++) {
		if (!(common[c / 64] >> (c % 64) & 1))
			continue;
		bool maximal = true;
		for (size_t o = 0; o < d->n && maximal; o++)
			if (o != c && (common[o / 64] >> (o % 64) & 1) &&
			    is_anc(d, c, o))
				maximal = false;
		if (maximal)
			out[m++] = d->cid[c];
	}
	qsort(out, m, sizeof(*out), cid_qsort);
	return m;
}

START_TEST(merge_bases_shapes)
{
	struct dag d;
	dag_init(&d);
	size_t r = dag_add(&d, NULL, 0, 0, "w0");
	size_t a1 = dag_add(&d, &r, 1, 0, "wa");
	size_t b1 = dag_add(&d, &r, 1, 0, "wb"); /* same t as a1 */
	size_t ab[2] = {a1, b1};
	size_t a2 = dag_add(&d, ab, 2, 0, "wa");
	size_t b2 = dag_add(&d, ab, 2, 1, "wb");
	size_t a3 = dag_add(&d, &a2, 1, 0, "wa");
	size_t lone = dag_add(&d, NULL, 0, 50, "wz");

	struct lfs_cid *out;
	size_t n;
	/* Fork: the fork point. */
	struct lfs_cid ev[3] = {d.cid[a1], d.cid[b1]};
	ck_assert_int_eq(lfs_clock_merge_bases(&out, &n, &d.b, ev, 2), 0);
	ck_assert_uint_eq(n, 1);
	ck_assert(lfs_cid_equal(&out[0], &d.cid[r]));
	free(out);
	/* Criss-cross: two bases, sorted by CID. */
	ev[0] = d.cid[a3];
	ev[1] = d.cid[b2];
	ck_assert_int_eq(lfs_clock_merge_bases(&out, &n, &d.b, ev, 2), 0);
	ck_assert_uint_eq(n, 2);
	struct lfs_cid want[2] = {d.cid[a1], d.cid[b1]};
	qsort(want, 2, sizeof(*want), cid_qsort);
	ck_assert(lfs_cid_equal(&out[0], &want[0]));
	ck_assert(lfs_cid_equal(&out[1], &want[1]));
	free(out);
	/* One an ancestor of the other: the older one. */
	ev[0] = d.cid[a3];
	ev[1] = d.cid[a1];
	ck_assert_int_eq(lfs_clock_merge_bases(&out, &n, &d.b, ev, 2), 0);
	ck_assert(n == 1 && lfs_cid_equal(&out[0], &d.cid[a1]));
	free(out);
	/* The same event twice, and alone. */
	ev[1] = d.cid[a3];
	ck_assert_int_eq(lfs_clock_merge_bases(&out, &n, &d.b, ev, 2), 0);
	ck_assert(n == 1 && lfs_cid_equal(&out[0], &d.cid[a3]));
	free(out);
	ck_assert_int_eq(lfs_clock_merge_bases(&out, &n, &d.b, ev, 1), 0);
	ck_assert(n == 1 && lfs_cid_equal(&out[0], &d.cid[a3]));
	free(out);
	/* Disjoint histories: none. */
	ev[1] = d.cid[lone];
	ck_assert_int_eq(lfs_clock_merge_bases(&out, &n, &d.b, ev, 2), 0);
	ck_assert_uint_eq(n, 0);
	free(out);
	/* Nothing asked: nothing. */
	ck_assert_int_eq(lfs_clock_merge_bases(&out, &n, &d.b, ev, 0), 0);
	ck_assert_uint_eq(n, 0);
	/* An event this replica does not hold. */
	lfs_cid_of(&ev[1], LFS_CODEC_DAG_CBOR, "absent", 6);
	ck_assert_int_eq(lfs_clock_merge_bases(&out, &n, &d.b, ev, 2), -ENOENT);
	dag_release(&d);
}
END_TEST

/* More than 64 events at once: the colour bits span several words. */
START_TEST(merge_bases_wide)
{
	struct dag d;
	dag_init(&d);
	size_t r = dag_add(&d, NULL, 0, 0, "w0");
	size_t mid = dag_add(&d, &r, 1, 0, "w0");
	struct lfs_cid tips[100];
	for (int i = 0; i < 100; i++) {
		size_t x = dag_add(&d, &mid, 1, i % 7, writers[i % 3]);
		tips[i] = d.cid[x];
	}
	struct lfs_cid *out;
	size_t n;
	ck_assert_int_eq(lfs_clock_merge_bases(&out, &n, &d.b, tips, 100), 0);
	ck_assert(n == 1 && lfs_cid_equal(&out[0], &d.cid[mid]));
	free(out);
	dag_release(&d);
}
END_TEST

START_TEST(random_dags)
{
	test_seed(_i);
	static struct dag d;
	dag_init(&d);
	dag_random(&d, 40 + (size_t)(rand() % 100));
	for (int trial = 0; trial < 60; trial++) {
		size_t set[6], n = 1 + (size_t)(rand() % 6);
		struct lfs_cid ev[6];
		for (size_t k = 0; k < n; k++) {
			set[k] = (size_t)rand() % d.n;
			ev[k] = d.cid[set[k]];
		}

		/* merge bases */
		struct lfs_cid want[MAXEV], *out;
		size_t nw = brute_bases(want, &d, set, n), nb;
		ck_assert_int_eq(lfs_clock_merge_bases(&out, &nb, &d.b, ev, n),
				 0);
		ck_assert_uint_eq(nb, nw);
		for (size_t k = 0; k < nb; k++)
			ck_assert(lfs_cid_equal(&out[k], &want[k]));
		free(out);

		/* reduce: the members no other member descends from */
		struct lfs_cid red[6];
		memcpy(red, ev, sizeof(ev));
		int m = lfs_clock_reduce(&d.b, red, n);
		size_t nh = 0;
		for (size_t k = 0; k < n; k++) {
			bool head = true, first = true;
			for (size_t j = 0; j < n; j++) {
				if (set[j] == set[k] && j < k)
					first = false;
				if (set[j] != set[k] &&
				    is_anc(&d, set[k], set[j]))
					head = false;
			}
			if (head && first)
				want[nh++] = d.cid[set[k]];
		}
		qsort(want, nh, sizeof(*want), cid_qsort);
		ck_assert_int_eq(m, (int)nh);
		for (size_t k = 0; k < nh; k++)
			ck_assert(lfs_cid_equal(&red[k], &want[k]));

		/* known: which of ev[] have some event with (t, w) below */
		struct lfs_clock_write w[8];
		size_t nwr = 0;
		for (; nwr < 6; nwr++) {
			size_t x = (size_t)rand() % d.n;
			w[nwr] = (struct lfs_clock_write){d.t[x], d.writer[x]};
		}
		w[nwr++] = (struct lfs_clock_write){d.t[0], "nobody"};
		w[nwr++] = (struct lfs_clock_write){1 << 30, "w0"};
		uint64_t known[8] = {0};
		ck_assert_int_eq(lfs_clock_known(known, &d.b, ev, n, w, nwr),
				 0);
		for (size_t q = 0; q < nwr; q++)
			for (size_t k = 0; k < n; k++) {
				bool expect = false;
				for (size_t x = 0; x < d.n && !expect; x++)
					expect = d.t[x] == w[q].t &&
						 !strcmp(d.writer[x],
							 w[q].writer) &&
						 is_anc(&d, x, set[k]);
				ck_assert_msg(((known[q] >> k) & 1) == expect,
					      "write %zu, event %zu", q, k);
			}
	}
	dag_release(&d);
}
END_TEST

/* History this replica does not hold ends reduce's and known's walks. */
START_TEST(partial_history)
{
	struct dag d;
	dag_init(&d);
	struct lfs_cid ghost;
	lfs_cid_of(&ghost, LFS_CODEC_DAG_CBOR, "ghost", 5);
	struct lfs_cid a = put_event(&d.map, 500, "w1", &ghost, 1, "a");
	struct lfs_cid b = put_event(&d.map, 600, "w2", &a, 1, "b");
	struct lfs_cid c = put_event(&d.map, 550, "w3", &ghost, 1, "c");
	struct lfs_cid ev[3] = {a, b, c};
	ck_assert_int_eq(lfs_clock_reduce(&d.b, ev, 3), 2);
	struct lfs_cid want[2] = {b, c};
	qsort(want, 2, sizeof(*want), cid_qsort);
	ck_assert(lfs_cid_equal(&ev[0], &want[0]) &&
		  lfs_cid_equal(&ev[1], &want[1]));
	struct lfs_clock_write w[2] = {{500, "w1"}, {10, "ghost"}};
	uint64_t known[2] = {0};
	struct lfs_cid q[2] = {b, c};
	ck_assert_int_eq(lfs_clock_known(known, &d.b, q, 2, w, 2), 0);
	ck_assert_uint_eq(known[0], 1); /* b knows a's write, c does not */
	ck_assert_uint_eq(known[1], 0);
	dag_release(&d);
}
END_TEST

struct walk_seen {
	struct lfs_cid cid[MAXEV];
	int64_t t[MAXEV];
	size_t n, stop_at;
};

static int walk_fn(void *ctx, const struct lfs_cid *cid,
		   const struct lfs_event *ev)
{
	struct walk_seen *s = ctx;
	s->cid[s->n] = *cid;
	s->t[s->n++] = ev->t;
	return s->n == s->stop_at ? 42 : 0;
}

START_TEST(walk_order)
{
	test_seed(100 + _i);
	static struct dag d;
	dag_init(&d);
	dag_random(&d, 80);
	size_t heads[2] = {d.n - 1, (size_t)rand() % d.n};
	struct lfs_cid hc[2] = {d.cid[heads[0]], d.cid[heads[1]]};
	static struct walk_seen s;
	memset(&s, 0, sizeof(s));
	ck_assert_int_eq(lfs_clock_walk(&d.b, hc, 2, walk_fn, &s), 0);
	size_t expect = 0;
	for (size_t x = 0; x < d.n; x++)
		expect += is_anc(&d, x, heads[0]) || is_anc(&d, x, heads[1]);
	ck_assert_uint_eq(s.n, expect);
	for (size_t k = 1; k < s.n; k++) {
		ck_assert(s.t[k - 1] > s.t[k] ||
			  (s.t[k - 1] == s.t[k] &&
			   lfs_cid_cmp(&s.cid[k - 1], &s.cid[k]) < 0));
	}
	/* A callback's non-zero answer stops the walk there. Both heads
	 * may be roots (a random DAG has some): then there are only 2. */
	memset(&s, 0, sizeof(s));
	s.stop_at = expect < 3 ? expect : 3;
	ck_assert_int_eq(lfs_clock_walk(&d.b, hc, 2, walk_fn, &s), 42);
	ck_assert_uint_eq(s.n, s.stop_at);
	dag_release(&d);
}
END_TEST

/* ---- the one-hour bound, as a ledger applies it ---- */

static int64_t fixed_now(void *ctx)
{
	return *(int64_t *)ctx;
}

/* A sealed CAR holding one event (and its root block). */
static void seal_event(struct lfs_buf *out, struct lfs_cid *name,
		       const uint8_t *key, const struct lfs_buf *evb,
		       struct lfs_cid *ev)
{
	lfs_cid_of(ev, LFS_CODEC_DAG_CBOR, evb->data, evb->len);
	lfs_check_seal_event_car(out, name, key, ev, evb->data, evb->len);
}

START_TEST(one_hour_ahead)
{
	char dir[256];
	lfs_check_mkdtemp(dir, sizeof(dir), "lfs-clock");
	uint8_t key[LFS_KEY_BYTES];
	memset(key, 7, sizeof(key));
	int64_t now = (int64_t)1700000000 * 1000000;
	struct lfs_ledger_opts o;
	lfs_ledger_opts_init(&o);
	o.writer = "here";
	o.durable = false;
	o.now_us = fixed_now;
	o.now_ctx = &now;
	struct lfs_ledger *l;
	ck_assert_int_eq(lfs_ledger_open(&l, dir, key, &o, true), 0);
	struct lfs_cid root, ev, name, missing;
	lfs_ledger_root(l, &root);

	struct lfs_buf eb, s;
	lfs_buf_init(&eb, 0);
	lfs_buf_init(&s, 0);
	/* Exactly one hour ahead: applied. */
	struct lfs_event e = {
		.t = now + LFS_CLOCK_MAX_AHEAD, .writer = "peer", .root = root};
	ck_assert_int_eq(lfs_event_encode(&eb, &e), 0);
	seal_event(&s, &name, key, &eb, &ev);
	ck_assert_int_eq(lfs_ledger_ingest(l, &name, s.data, s.len, &missing),
			 0);
	struct lfs_cid *heads;
	size_t nh;
	ck_assert_int_eq(lfs_ledger_heads(l, &heads, &nh), 0);
	ck_assert(nh == 1 && lfs_cid_equal(&heads[0], &ev));

	/* One microsecond more, on top of it: deferred (-EAGAIN), kept. */
	e = (struct lfs_event){.parents = heads,
			       .nparents = 1,
			       .t = now + LFS_CLOCK_MAX_AHEAD + 1,
			       .writer = "peer",
			       .root = root};
	lfs_buf_reset(&eb);
	ck_assert_int_eq(lfs_event_encode(&eb, &e), 0);
	seal_event(&s, &name, key, &eb, &ev);
	ck_assert_int_eq(lfs_ledger_ingest(l, &name, s.data, s.len, &missing),
			 -EAGAIN);
	struct lfs_cid *h2;
	size_t n2;
	ck_assert_int_eq(lfs_ledger_heads(l, &h2, &n2), 0);
	ck_assert(n2 == 1 && lfs_cid_equal(&h2[0], &heads[0]));
	free(h2);
	/* The clock moves on by 1 µs: now it applies. */
	now += 1;
	ck_assert_int_eq(lfs_ledger_ingest(l, &name, s.data, s.len, &missing),
			 0);
	ck_assert_int_eq(lfs_ledger_heads(l, &h2, &n2), 0);
	ck_assert(n2 == 1 && lfs_cid_equal(&h2[0], &ev));
	free(h2);
	free(heads);
	lfs_buf_release(&eb);
	lfs_buf_release(&s);
	lfs_ledger_close(l);
	lfs_rm_tree(dir);
}
END_TEST

int main(void)
{
	if (sodium_init() < 0)
		return 1;
	seed_base = lfs_check_seed();
	Suite *s = suite_create("clock");
	TCase *t = tcase_create("core");
	tcase_set_timeout(t, 300);
	tcase_add_test(t, event_roundtrip);
	tcase_add_test(t, event_time_bounds);
	tcase_add_test(t, event_hostile);
	tcase_add_test(t, check_parents);
	tcase_add_test(t, merge_bases_shapes);
	tcase_add_test(t, merge_bases_wide);
	tcase_add_loop_test(t, random_dags, 0, 8);
	tcase_add_test(t, partial_history);
	tcase_add_loop_test(t, walk_order, 0, 4);
	tcase_add_test(t, one_hour_ahead);
	suite_add_tcase(s, t);
	return lfs_check_run(s);
}
