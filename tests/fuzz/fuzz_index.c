/*
 * libFuzzer target for the document index's node decoder and every walk
 * over nodes from elsewhere (index.h: get, count, each, check, diff, nodes,
 * apply).
 *
 * The input is a set of blocks separated by SEP; the first is the root.
 * A link finds the block it names by hash, as in a real store; a link that
 * names no block here reaches block (first digest byte mod count) instead,
 * so the fuzzer can build any graph of nodes, cycles included (a cycle
 * stands for a chain of distinct nodes as deep, which real hashes allow).
 *
 * Every call must return 0 or a documented error, in bounded time. When
 * lfs_index_check() accepts the root, the other calls must agree with it:
 * each and diff against the empty index see exactly its entries, count
 * says how many, get finds every one, and an apply on top of it gives a
 * root that check accepts. Through a small node cache, get and apply give
 * what they give without one.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "arena.h"
#include "blockmap.h"
#include "cidmap.h"
#include "index.h"

#include "fuzz.h"

#define SEP     "|NODE|"
#define SEP_LEN (sizeof(SEP) - 1)
#define MAXSEG  64
#define MAXIDS  4096

struct store {
	const uint8_t *seg[MAXSEG];
	size_t len[MAXSEG];
	struct lfs_cid cid[MAXSEG];
	size_t n;
	struct lfs_blockmap written; /* what apply writes */
};

static int fz_get(void *self, struct lfs_buf *out, const struct lfs_cid *cid)
{
	struct store *s = self;
	const struct lfs_blockmap_item *it =
		lfs_blockmap_find(&s->written, cid);
	if (it)
		return lfs_buf_append(out, it->data, it->len);
	for (size_t i = 0; i < s->n; i++)
		if (lfs_cid_equal(&s->cid[i], cid))
			return lfs_buf_append(out, s->seg[i], s->len[i]);
	size_t i = cid->digest[0] % s->n;
	return lfs_buf_append(out, s->seg[i], s->len[i]);
}

static int fz_put(void *self, const struct lfs_cid *cid, const uint8_t *data,
		  size_t len)
{
	struct store *s = self;
	return lfs_blockmap_put(&s->written, cid, data, len);
}

static const struct lfs_blocks_ops fz_ops = {.get = fz_get, .put = fz_put};

static bool ok_error(int rc)
{
	return rc == -EBADMSG || rc == -EIO || rc == -ENOENT;
}

struct seen {
	struct lfs_arena *a;
	const char *id[MAXIDS];
	size_t len[MAXIDS];
	size_t n, total;
};

static int collect(void *ctx, const struct lfs_index_entry *e)
{
	struct seen *s = ctx;
	CHECK(e->id_len > 0 && e->id_len <= LFS_INDEX_ID_MAX);
	if (s->n < MAXIDS) {
		s->id[s->n] = lfs_arena_strndup(s->a, e->id, e->id_len);
		CHECK(s->id[s->n]);
		s->len[s->n++] = e->id_len;
	}
	s->total++;
	return 0;
}

static int count_diff(void *ctx, const struct lfs_index_entry *ea,
		      const struct lfs_index_entry *eb)
{
	size_t *n = ctx;
	(*n)++;
	CHECK(ea || eb);
	return 0;
}

static int node_once(void *ctx, const struct lfs_cid *node)
{
	struct lfs_cidmap *m = ctx;
	if (lfs_cidmap_get(m, node, NULL))
		return 1;
	return lfs_cidmap_set(m, node, 1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct store s;
	memset(&s, 0, sizeof(s));
	const uint8_t *p = data, *end = data + size;
	while (s.n < MAXSEG) {
		const uint8_t *q = memmem(p, (size_t)(end - p), SEP, SEP_LEN);
		s.seg[s.n] = p;
		s.len[s.n] = (size_t)((q ? q : end) - p);
		lfs_cid_of(&s.cid[s.n], LFS_CODEC_DAG_CBOR, p, s.len[s.n]);
		s.n++;
		if (!q)
			break;
		p = q + SEP_LEN;
	}
	lfs_blockmap_init(&s.written);
	struct lfs_blocks blocks = {.ops = &fz_ops, .self = &s};
	uint8_t salt[LFS_SALT_BYTES] = {0};
	struct lfs_index ix;
	lfs_index_init(&ix, blocks, salt);
	const struct lfs_cid *root = &s.cid[0];
	struct lfs_arena a;
	lfs_arena_init(&a, 0);

	uint64_t count = 0;
	int rc = lfs_index_count(&count, &ix, root);
	CHECK(rc == 0 || ok_error(rc));
	struct seen chk = {.a = &a};
	int checked = lfs_index_check(&ix, root, collect, &chk);
	CHECK(checked == 0 || ok_error(checked));
	if (checked == 0)
		CHECK(rc == 0 && chk.total == count);

	struct seen each = {.a = &a};
	rc = lfs_index_each(&ix, root, collect, &each);
	CHECK(rc == 0 || ok_error(rc));
	if (checked == 0)
		CHECK(rc == 0 && each.total == count);

	struct lfs_cid empty;
	CHECK(lfs_index_empty(&empty, &ix) == 0);
	size_t ndiff = 0;
	rc = lfs_index_diff(&ix, &empty, root, count_diff, &ndiff);
	CHECK(rc == 0 || ok_error(rc));
	if (checked == 0)
		CHECK(rc == 0 && ndiff == count);

	struct lfs_cidmap m;
	lfs_cidmap_init(&m);
	rc = lfs_index_nodes(&ix, root, node_once, NULL, &m);
	CHECK(rc == 0 || ok_error(rc));
	lfs_cidmap_release(&m);

	for (size_t i = 0; i < chk.n && i < 64; i++) {
		struct lfs_index_entry e;
		struct lfs_arena_mark mk = lfs_arena_mark(&a);
		rc = lfs_index_get(&e, &a, &ix, root, chk.id[i], chk.len[i]);
		CHECK(rc == 0 || ok_error(rc));
		if (checked == 0)
			CHECK(rc == 0 && e.id_len == chk.len[i] &&
			      !memcmp(e.id, chk.id[i], chk.len[i]));
		lfs_arena_rewind(&a, mk);
	}
	struct lfs_index_entry e;
	rc = lfs_index_get(&e, &a, &ix, root, "a", 1);
	CHECK(rc == 0 || ok_error(rc));

	/* Delete the first id seen, put a new one. */
	struct lfs_index_entry ne = {.id = "fuzz-new", .id_len = 8};
	lfs_cid_of(&ne.cur.doc, LFS_CODEC_DAG_CBOR, "doc", 3);
	ne.cur.t = 1;
	ne.cur.writer = "fuzz";
	struct lfs_index_change ch[2] = {
		{.id = "fuzz-new", .id_len = 8, .entry = &ne}};
	size_t nch = 1;
	if (chk.n && (chk.len[0] != 8 || memcmp(chk.id[0], "fuzz-new", 8)))
		ch[nch++] = (struct lfs_index_change){.id = chk.id[0],
						      .id_len = chk.len[0]};
	struct lfs_cid after;
	rc = lfs_index_apply(&after, &ix, root, ch, nch);
	CHECK(rc == 0 || ok_error(rc));
	if (checked == 0) {
		CHECK(rc == 0);
		CHECK(lfs_index_check(&ix, &after, NULL, NULL) == 0);
	}

	/* The same lookups through a node cache small enough to drop nodes,
	 * twice (the second mostly from it): the same answers as without,
	 * writers' names included; and the same apply. */
	struct lfs_index_cache *cache;
	CHECK(lfs_index_cache_new(&cache, 16 << 10) == 0);
	struct lfs_index cix = ix;
	cix.cache = cache;
	for (int pass = 0; pass < 2; pass++) {
		for (size_t i = 0; i < chk.n && i < 64; i++) {
			struct lfs_index_entry e1, e2;
			struct lfs_arena_mark mk = lfs_arena_mark(&a);
			int r1 = lfs_index_get(&e1, &a, &ix, root, chk.id[i],
					       chk.len[i]);
			int r2 = lfs_index_get(&e2, &a, &cix, root, chk.id[i],
					       chk.len[i]);
			CHECK(r1 == r2);
			if (r1 == 0)
				CHECK(lfs_index_entry_equal(&e1, &e2));
			lfs_arena_rewind(&a, mk);
		}
	}
	struct lfs_cid cafter;
	int crc = lfs_index_apply(&cafter, &cix, root, ch, nch);
	CHECK(crc == rc);
	if (rc == 0)
		CHECK(lfs_cid_equal(&cafter, &after));
	lfs_index_cache_free(cache);
	lfs_arena_release(&a);
	lfs_blockmap_release(&s.written);
	return 0;
}
