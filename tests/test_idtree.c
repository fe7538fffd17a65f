/* Tests of idtree: a folder's children, its existence and the documents
 * under it, checked against a brute-force model over random ids (with
 * the odd ones: empty segments, dots, ".json" folders), across roots
 * reached by diffs. Random: prints its seed; LFS_SEED=N replays. */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blockmap.h"
#include "fsname.h"
#include "idtree.h"
#include "index.h"

static uint8_t salt[LFS_SALT_BYTES];

static const char *parts[] = {"a", "b", "x.json", ".git", "", "n", "%", "."};
#define NPARTS (sizeof(parts) / sizeof(parts[0]))

/* A random id: 1 to 4 parts joined by '/', now and then a doubled one. */
static void random_id(char *out, size_t size)
{
	size_t n = 0, k = 1 + (size_t)(rand() % 4);
	out[0] = '\0';
	for (size_t i = 0; i < k; i++) {
		n += (size_t)snprintf(out + n, size - n, "%s%s%s", i ? "/" : "",
				      rand() % 8 ? "" : "/",
				      parts[rand() % NPARTS]);
	}
	if (!out[0])
		snprintf(out, size, "z");
}

/* Put id (a fixed document) under root, or delete it. */
static void apply_one(struct lfs_index *ix, struct lfs_cid *root,
		      const char *id, bool put)
{
	struct lfs_index_entry e = {0};
	e.id = id;
	e.id_len = strlen(id);
	lfs_cid_of(&e.cur.doc, LFS_CODEC_DAG_CBOR, "x", 1);
	e.cur.t = 1;
	e.cur.writer = "w";
	struct lfs_index_change c = {
		.id = e.id, .id_len = e.id_len, .entry = put ? &e : NULL};
	ck_assert_int_eq(lfs_index_apply(root, ix, root, &c, 1), 0);
}

struct model {
	char ids[200][64];
	bool live[200];
};

struct seen {
	char names[400][LFS_FSPATH_MAX + 1];
	bool folder[400];
	int n;
	bool dup;
};

static int collect(void *ctx, const char *name, const char *id)
{
	struct seen *s = ctx;
	for (int i = 0; i < s->n; i++)
		if (!strcmp(s->names[i], name) && s->folder[i] == !id)
			s->dup = true;
	ck_assert_int_lt(s->n, 400);
	snprintf(s->names[s->n], sizeof(s->names[0]), "%s", name);
	s->folder[s->n++] = !id;
	return 0;
}

/* The model's children of folder path: from each live id's path. */
static void expect_children(struct model *m, const char *path,
			    const struct seen *got)
{
	size_t pl = strlen(path);
	int want = 0;
	struct seen w = {.n = 0};
	for (int i = 0; i < 200; i++) {
		char p[LFS_FSPATH_MAX + 1];
		if (!m->live[i] || lfs_fsname_path_from_id(p, m->ids[i]) < 0)
			continue;
		if (pl && (strncmp(p, path, pl) || p[pl] != '/'))
			continue;
		const char *rest = pl ? p + pl + 1 : p;
		char *slash = strchr(rest, '/');
		char name[LFS_FSPATH_MAX + 1];
		snprintf(name, sizeof(name), "%.*s",
			 slash ? (int)(slash - rest) : (int)strlen(rest), rest);
		bool dup = false;
		for (int k = 0; k < w.n; k++)
			dup |= !strcmp(w.names[k], name) &&
			       w.folder[k] == (slash != NULL);
		if (dup)
			continue;
		snprintf(w.names[w.n], sizeof(w.names[0]), "%s", name);
		w.folder[w.n++] = slash != NULL;
		want++;
	}
	ck_assert_msg(!got->dup, "a child listed twice in '%s'", path);
	ck_assert_msg(got->n == want, "'%s': %d children, the model has %d",
		      path, got->n, want);
	for (int k = 0; k < w.n; k++) {
		bool found = false;
		for (int j = 0; j < got->n; j++)
			found |= !strcmp(got->names[j], w.names[k]) &&
				 got->folder[j] == w.folder[k];
		ck_assert_msg(found, "'%s': %s missing", path, w.names[k]);
	}
}

START_TEST(model)
{
	unsigned seed = getenv("LFS_SEED") ? (unsigned)atoi(getenv("LFS_SEED"))
					   : (unsigned)time(NULL);
	printf("test_idtree: seed %u (LFS_SEED=%u replays)\n", seed, seed);
	srand(seed);
	struct lfs_blockmap map;
	struct lfs_index ix;
	struct lfs_cid root;
	struct lfs_idtree t;
	lfs_blockmap_init(&map);
	lfs_index_init(&ix, lfs_blockmap_blocks(&map), salt);
	ck_assert_int_eq(lfs_index_empty(&root, &ix), 0);
	lfs_idtree_init(&t);
	static struct model m;
	memset(&m, 0, sizeof(m));
	for (int i = 0; i < 200; i++)
		random_id(m.ids[i], sizeof(m.ids[i]));
	for (int round = 0; round < 40; round++) {
		/* A batch of puts and deletes: one new root. */
		for (int k = 0; k < 1 + rand() % 20; k++) {
			int i = rand() % 200;
			bool put = rand() % 3 != 0;
			apply_one(&ix, &root, m.ids[i], put);
			/* Equal ids share a fate. */
			for (int j = 0; j < 200; j++)
				if (!strcmp(m.ids[j], m.ids[i]))
					m.live[j] = put;
		}
		static const char *folders[] = {
			"",    "a",        "b",   "a/b",      "n",
			"%25", "x%2Ejson", "%2E", "a/%2Egit", "a%2F"};
		for (size_t f = 0; f < sizeof(folders) / sizeof(*folders);
		     f++) {
			static struct seen got;
			memset(&got, 0, sizeof(got));
			int rc = lfs_idtree_children(&t, &ix, &root, folders[f],
						     collect, &got);
			char prefix[LFS_INDEX_ID_MAX + 1];
			if (folders[f][0] &&
			    !lfs_fsname_folder_to_prefix(prefix, sizeof(prefix),
							 folders[f])) {
				ck_assert_int_eq(rc, -ENOENT);
				continue;
			}
			ck_assert_int_eq(rc, 0);
			expect_children(&m, folders[f], &got);
			bool has;
			ck_assert_int_eq(lfs_idtree_has_folder(&t, &ix, &root,
							       folders[f],
							       &has),
					 0);
			if (folders[f][0])
				ck_assert_msg(has == (got.n > 0),
					      "'%s' exists: %d, %d children",
					      folders[f], has, got.n);
		}
	}
	lfs_idtree_release(&t);
	lfs_blockmap_release(&map);
}
END_TEST

struct all {
	char (*ids)[16];
	size_t n;
};

static int gather(void *ctx, const char *id, const char *path)
{
	struct all *a = ctx;
	(void)path;
	snprintf(a->ids[a->n++], 16, "%s", id);
	return 0;
}

/* Thousands of ids, so that chunks split, empty and go: after each batch
 * (one id, or hundreds) the tree holds exactly the live ids, in order,
 * reached from the last root by a diff. */
START_TEST(chunks)
{
	unsigned seed = getenv("LFS_SEED") ? (unsigned)atoi(getenv("LFS_SEED"))
					   : (unsigned)time(NULL);
	printf("test_idtree chunks: seed %u (LFS_SEED=%u replays)\n", seed,
	       seed);
	srand(seed);
	enum { POOL = 4000 };
	struct lfs_blockmap map;
	struct lfs_index ix;
	struct lfs_cid root;
	struct lfs_idtree t;
	lfs_blockmap_init(&map);
	lfs_index_init(&ix, lfs_blockmap_blocks(&map), salt);
	ck_assert_int_eq(lfs_index_empty(&root, &ix), 0);
	lfs_idtree_init(&t);
	static bool live[POOL];
	static char got[POOL][16];
	memset(live, 0, sizeof(live));
	/* Known empty first: then every id comes by a diff. */
	bool none;
	ck_assert_int_eq(lfs_idtree_has_folder(&t, &ix, &root, "k", &none), 0);
	for (int round = 0; round < 60; round++) {
		int k = rand() % 4 ? 1 + rand() % 8 : rand() % 1500;
		/* Early rounds mostly add; later ones remove as much. */
		int add_pct = round < 20 ? 90 : round < 40 ? 50 : 20;
		for (int j = 0; j < k; j++) {
			int i = rand() % POOL;
			char id[16];
			snprintf(id, sizeof(id), "k%05d", i);
			bool put = rand() % 100 < add_pct;
			apply_one(&ix, &root, id, put);
			live[i] = put;
		}
		struct all a = {.ids = got, .n = 0};
		ck_assert_int_eq(
			lfs_idtree_under(&t, &ix, &root, "", gather, &a), 0);
		size_t w = 0;
		for (int i = 0; i < POOL; i++) {
			if (!live[i])
				continue;
			char id[16];
			snprintf(id, sizeof(id), "k%05d", i);
			ck_assert_uint_lt(w, a.n);
			ck_assert_str_eq(got[w], id);
			w++;
		}
		ck_assert_uint_eq(w, a.n);
		bool has;
		ck_assert_int_eq(
			lfs_idtree_has_folder(&t, &ix, &root, "k", &has), 0);
		ck_assert(!has);
	}
	lfs_idtree_release(&t);
	lfs_blockmap_release(&map);
}
END_TEST

/* The ids at a root (lfs_idtree_under from "") as one string. */
static int join_fn(void *ctx, const char *id, const char *path)
{
	(void)path;
	struct lfs_buf *b = ctx;
	lfs_buf_append_str(b, id);
	return lfs_buf_append_byte(b, '\n');
}

static void ids_of(struct lfs_idtree *t, struct lfs_index *ix,
		   const struct lfs_cid *root, struct lfs_buf *out)
{
	lfs_buf_reset(out);
	ck_assert_int_eq(lfs_idtree_under(t, ix, root, "", join_fn, out), 0);
}

/* Put (or delete) k random ids of the pool "s%04d". */
static void churn(struct lfs_index *ix, struct lfs_cid *root, int k)
{
	for (int j = 0; j < k; j++) {
		char id[16];
		snprintf(id, sizeof(id), "s%04d", rand() % 3000);
		apply_one(ix, root, id, rand() % 3 != 0);
	}
}

/* Ids saved at one root and taken into a new tree answer as the tree
 * they came from, at that root and (by a diff) at later ones; damaged
 * bytes are refused and change nothing; ids of a root whose nodes are
 * gone are replaced by a walk. */
START_TEST(saved_ids)
{
	unsigned seed = getenv("LFS_SEED") ? (unsigned)atoi(getenv("LFS_SEED"))
					   : (unsigned)time(NULL);
	printf("test_idtree saved: seed %u (LFS_SEED=%u replays)\n", seed,
	       seed);
	srand(seed);
	struct lfs_blockmap map;
	struct lfs_index ix;
	struct lfs_cid root, got_root;
	struct lfs_idtree t, u;
	lfs_blockmap_init(&map);
	lfs_index_init(&ix, lfs_blockmap_blocks(&map), salt);
	ck_assert_int_eq(lfs_index_empty(&root, &ix), 0);
	lfs_idtree_init(&t);
	lfs_idtree_init(&u);
	struct lfs_buf enc, a, b;
	lfs_buf_init(&enc, 0);
	lfs_buf_init(&a, 0);
	lfs_buf_init(&b, 0);
	/* Nothing to save before a query. */
	ck_assert_int_eq(lfs_idtree_encode(&t, &enc, &got_root), -ENOENT);
	for (int round = 0; round < 12; round++) {
		churn(&ix, &root, round % 3 ? 1 + rand() % 400 : 0);
		ids_of(&t, &ix, &root, &a);
		lfs_buf_reset(&enc);
		ck_assert_int_eq(lfs_idtree_encode(&t, &enc, &got_root), 0);
		ck_assert(lfs_cid_equal(&got_root, &root));
		struct lfs_cid saved = root;
		ck_assert_int_eq(
			lfs_idtree_decode(&u, enc.data, enc.len, &got_root), 0);
		ck_assert(lfs_cid_equal(&got_root, &saved));
		ids_of(&u, &ix, &root, &b);
		ck_assert_uint_eq(a.len, b.len);
		ck_assert(!a.len || !memcmp(a.data, b.data, a.len));
		/* Damage: each refused, u unchanged (still the saved ids,
		 * so a later root is reached by the diff below). */
		uint8_t *bad = malloc(enc.len + 8);
		size_t cuts[] = {0, 10, 8 + 36 + 7, enc.len - 1};
		for (size_t k = 0; k < sizeof(cuts) / sizeof(*cuts); k++)
			if (cuts[k] < enc.len)
				ck_assert_int_eq(lfs_idtree_decode(&u, enc.data,
								   cuts[k],
								   &got_root),
						 -EBADMSG);
		memcpy(bad, enc.data, enc.len);
		memcpy(bad + enc.len, "zz", 3); /* one id more than counted */
		ck_assert_int_eq(
			lfs_idtree_decode(&u, bad, enc.len + 3, &got_root),
			-EBADMSG);
		if (enc.len > 8 + 36 + 8 + 12) { /* two ids at least */
			memcpy(bad, enc.data, enc.len);
			/* The first id made to sort after the second. */
			bad[8 + 36 + 8] = 'z';
			ck_assert_int_eq(
				lfs_idtree_decode(&u, bad, enc.len, &got_root),
				-EBADMSG);
		}
		free(bad);
		churn(&ix, &root, 1 + rand() % 50);
		ids_of(&t, &ix, &root, &a);
		ids_of(&u, &ix, &root, &b);
		ck_assert_uint_eq(a.len, b.len);
		ck_assert(!a.len || !memcmp(a.data, b.data, a.len));
	}
	/* Saved at a root another index does not have: a walk. */
	ck_assert_int_eq(lfs_idtree_encode(&t, &enc, &got_root), 0);
	lfs_buf_reset(&enc);
	ck_assert_int_eq(lfs_idtree_encode(&t, &enc, &got_root), 0);
	struct lfs_blockmap map2;
	struct lfs_index ix2;
	struct lfs_cid root2;
	lfs_blockmap_init(&map2);
	lfs_index_init(&ix2, lfs_blockmap_blocks(&map2), salt);
	ck_assert_int_eq(lfs_index_empty(&root2, &ix2), 0);
	churn(&ix2, &root2, 300);
	struct lfs_idtree w;
	lfs_idtree_init(&w);
	ids_of(&w, &ix2, &root2, &a);
	ck_assert_int_eq(lfs_idtree_decode(&u, enc.data, enc.len, &got_root),
			 0);
	ids_of(&u, &ix2, &root2, &b);
	ck_assert_uint_eq(a.len, b.len);
	ck_assert(!a.len || !memcmp(a.data, b.data, a.len));
	lfs_idtree_release(&w);
	lfs_blockmap_release(&map2);
	lfs_buf_release(&enc);
	lfs_buf_release(&a);
	lfs_buf_release(&b);
	lfs_idtree_release(&t);
	lfs_idtree_release(&u);
	lfs_blockmap_release(&map);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("idtree");
	TCase *tc = tcase_create("core");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, model);
	tcase_add_test(tc, chunks);
	tcase_add_test(tc, saved_ids);
	suite_add_tcase(s, tc);
	SRunner *r = srunner_create(s);
	srunner_run_all(r, CK_NORMAL);
	int failed = srunner_ntests_failed(r);
	srunner_free(r);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
