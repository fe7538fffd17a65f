/*
 * Tests of the ledger engine: transactions and reads, persistence, history,
 * replicas exchanging CAR files in random orders (convergence, no lost
 * writes), crashes at random points, hostile CAR files, compaction.
 */
#define _GNU_SOURCE
#include <check.h>
#include <errno.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "blockstore.h"
#include "car.h"
#include "cbor.h"
#include "envelope.h"
#include "ledger.h"
#include "check_car.h"
#include "check_util.h"

static uint8_t key[LFS_KEY_BYTES];
static char tmpdir[256];

static void make_tmpdir(void)
{
	lfs_check_mkdtemp(tmpdir, sizeof(tmpdir), "lfs-ledger");
}

static void remove_tmpdir(void)
{
	lfs_rm_tree(tmpdir);
}

static char *replica_dir(int i)
{
	static char p[8][300];
	snprintf(p[i], sizeof(p[i]), "%s/r%d", tmpdir, i);
	return p[i];
}

struct fake_clock {
	int64_t now;
};

static int64_t fake_now(void *ctx)
{
	struct fake_clock *c = ctx;
	return c->now += 1 + rand() % 1000;
}

static struct lfs_ledger *open_replica(int i, struct fake_clock *clk)
{
	struct lfs_ledger_opts o;
	lfs_ledger_opts_init(&o);
	char w[24];
	snprintf(w, sizeof(w), "writer%d", i);
	o.writer = w;
	o.durable = false;
	if (clk) {
		o.now_us = fake_now;
		o.now_ctx = clk;
	}
	struct lfs_ledger *l;
	ck_assert_int_eq(lfs_ledger_open(&l, replica_dir(i), key, &o, true), 0);
	return l;
}

static void put_json(struct lfs_ledger *l, const char *id, const char *text)
{
	json_error_t err;
	json_t *doc = json_loads(text, 0, &err);
	ck_assert_ptr_nonnull(doc);
	struct lfs_txn *t;
	ck_assert_int_eq(lfs_txn_new(&t), 0);
	ck_assert_int_eq(lfs_txn_put(t, id, doc), 0);
	ck_assert_int_eq(lfs_ledger_commit(l, t, NULL, NULL), 0);
	lfs_txn_free(t);
	json_decref(doc);
}

/* The document's "v" field, or -1 when absent. */
static long get_v(struct lfs_ledger *l, const struct lfs_cid *root,
		  const char *id)
{
	struct lfs_arena a;
	lfs_arena_init(&a, 0);
	json_t *doc = NULL;
	int rc = lfs_ledger_get(l, root, id, NULL, &a, &doc);
	lfs_arena_release(&a);
	if (rc == -ENOENT)
		return -1;
	ck_assert_int_eq(rc, 0);
	ck_assert_str_eq(json_string_value(json_object_get(doc, "_id")), id);
	long v = (long)json_integer_value(json_object_get(doc, "v"));
	json_decref(doc);
	return v;
}

/* lfs_txn_put keeps what the document was at the put: the caller may
 * change or free it before the commit; its "_id" is dropped. */
START_TEST(txn_put_keeps_a_copy)
{
	make_tmpdir();
	struct lfs_ledger *l = open_replica(0, NULL);
	struct lfs_txn *t;
	ck_assert_int_eq(lfs_txn_new(&t), 0);
	json_t *d = json_pack("{s:i,s:s}", "v", 7, "_id", "a");
	ck_assert_int_eq(lfs_txn_put(t, "a", d), 0);
	json_object_set_new(d, "v", json_integer(8));
	ck_assert_int_eq(lfs_txn_put(t, "b", d), -EINVAL); /* its _id */
	json_object_del(d, "_id");
	ck_assert_int_eq(lfs_txn_put(t, "b", d), 0);
	json_decref(d);
	const char *id;
	json_t *got;
	ck_assert_ptr_null(lfs_txn_op(t, 0, &id)); /* only the block */
	ck_assert_int_eq(lfs_txn_op_doc(t, 0, &got), 0);
	ck_assert_int_eq(json_integer_value(json_object_get(got, "v")), 7);
	ck_assert_ptr_null(json_object_get(got, "_id"));
	json_decref(got);
	ck_assert_int_eq(lfs_ledger_commit(l, t, NULL, NULL), 0);
	lfs_txn_free(t);
	ck_assert_int_eq(get_v(l, NULL, "a"), 7);
	ck_assert_int_eq(get_v(l, NULL, "b"), 8);
	lfs_ledger_close(l);
	remove_tmpdir();
}
END_TEST

START_TEST(put_get_delete_reopen)
{
	make_tmpdir();
	struct lfs_ledger *l = open_replica(0, NULL);
	ck_assert_int_eq(get_v(l, NULL, "a"), -1);
	put_json(l, "a", "{\"v\": 1, \"f\": 1.0, \"s\": \"x\"}");
	put_json(l, "b", "{\"v\": 2, \"_id\": \"b\"}");
	ck_assert_int_eq(get_v(l, NULL, "a"), 1);
	ck_assert_int_eq(get_v(l, NULL, "b"), 2);

	/* Invalid documents are refused and change nothing. */
	struct lfs_txn *t;
	ck_assert_int_eq(lfs_txn_new(&t), 0);
	json_t *wrong = json_pack("{s:s}", "_id", "other");
	ck_assert_int_eq(lfs_txn_put(t, "a", wrong), -EINVAL);
	json_t *arr = json_array(), *obj = json_object();
	ck_assert_int_eq(lfs_txn_put(t, "a", arr), -EINVAL);
	ck_assert_int_eq(lfs_txn_put(t, "", obj), -EINVAL);
	/* lfs_txn_put encodes now: a value DAG-CBOR cannot hold is refused
	 * at the put, not at the commit. */
	json_t *bad = json_object();
	json_object_set_new(bad, "s", json_string_nocheck("\xc0\x80"));
	ck_assert_int_eq(lfs_txn_put(t, "a", bad), -EINVAL);
	json_decref(bad);
	json_decref(wrong);
	json_decref(arr);
	json_decref(obj);
	/* put_new takes its reference even when it refuses. */
	ck_assert_int_eq(
		lfs_txn_put_new(t, "a", json_pack("{s:s}", "_id", "other")),
		-EINVAL);
	ck_assert_int_eq(lfs_txn_put_new(t, "a", json_array()), -EINVAL);
	ck_assert_uint_eq(lfs_txn_count(t), 0);

	/* A put of the same content commits nothing (put_new: the txn
	 * keeps the document itself, without its "_id"). */
	struct lfs_cid head, head2;
	bool committed = true;
	json_t *same = json_pack("{s:i,s:s}", "v", 2, "_id", "b");
	ck_assert_int_eq(lfs_txn_put_new(t, "b", json_incref(same)), 0);
	const char *id;
	ck_assert_ptr_eq(lfs_txn_op(t, 0, &id), same);
	ck_assert_ptr_null(json_object_get(same, "_id"));
	json_decref(same);
	ck_assert_int_eq(lfs_ledger_commit(l, t, &head, &committed), 0);
	ck_assert(!committed);
	/* The commit hands over the CID it gave each document. */
	struct lfs_cid cid;
	ck_assert(lfs_txn_op_cid(t, 0, &cid));
	struct lfs_arena ea;
	lfs_arena_init(&ea, 0);
	struct lfs_index_entry e;
	ck_assert_int_eq(lfs_ledger_get(l, NULL, "b", &e, &ea, NULL), 0);
	ck_assert(lfs_cid_equal(&cid, &e.cur.doc));
	lfs_arena_release(&ea);
	lfs_txn_free(t);

	/* Delete, then read an old state through its event. */
	ck_assert_int_eq(lfs_txn_new(&t), 0);
	ck_assert_int_eq(lfs_txn_delete(t, "a"), 0);
	ck_assert_int_eq(lfs_ledger_commit(l, t, &head2, &committed), 0);
	ck_assert(committed);
	lfs_txn_free(t);
	ck_assert_int_eq(get_v(l, NULL, "a"), -1);
	struct lfs_cid old_root;
	ck_assert_int_eq(lfs_ledger_event_root(l, &head, &old_root), 0);
	ck_assert_int_eq(get_v(l, &old_root, "a"), 1);

	/* Floats stay floats. */
	struct lfs_arena a;
	lfs_arena_init(&a, 0);
	json_t *doc;
	ck_assert_int_eq(lfs_ledger_get(l, &old_root, "a", NULL, &a, &doc), 0);
	ck_assert(json_is_real(json_object_get(doc, "f")));
	ck_assert(json_is_integer(json_object_get(doc, "v")));
	json_decref(doc);
	lfs_arena_release(&a);

	struct lfs_cid root;
	lfs_ledger_root(l, &root);
	lfs_ledger_close(l);

	l = open_replica(0, NULL);
	struct lfs_cid root2;
	lfs_ledger_root(l, &root2);
	ck_assert(lfs_cid_equal(&root, &root2));
	ck_assert_int_eq(get_v(l, NULL, "b"), 2);
	ck_assert_int_eq(get_v(l, NULL, "a"), -1);
	ck_assert_int_eq(lfs_ledger_fsck(l, NULL, NULL), 0);
	lfs_ledger_close(l);
	remove_tmpdir();
}
END_TEST

/* ---- replicas ---- */

#define NREP 3
#define NIDS 12

static struct lfs_ledger *rep[NREP];

/* Copy CAR `car` from replica `from` into replica `to`, parents first. */
static void deliver(int from, int to, const struct lfs_cid *car, int depth)
{
	ck_assert_int_lt(depth, 10000);
	struct lfs_blockstore *src = lfs_ledger_store(rep[from]);
	if (lfs_blockstore_has_car(lfs_ledger_store(rep[to]), car))
		return;
	uint8_t *bytes;
	size_t len;
	ck_assert_int_eq(lfs_blockstore_read_car(&bytes, &len, src, car), 0);
	for (;;) {
		struct lfs_cid missing;
		int rc = lfs_ledger_ingest(rep[to], car, bytes, len, &missing);
		if (rc != -EAGAIN) {
			ck_assert_int_eq(rc, 0);
			break;
		}
		ck_assert(lfs_blockstore_has_car(src, &missing));
		deliver(from, to, &missing, depth + 1);
	}
	free(bytes);
}

/* Send every head CAR of `from` to `to`. */
static void sync_pair(int from, int to)
{
	struct lfs_cid *cars;
	size_t n;
	ck_assert_int_eq(lfs_ledger_head_cars(rep[from], &cars, &n), 0);
	for (size_t i = 0; i < n; i++)
		deliver(from, to, &cars[i], 0);
	free(cars);
}

static void sync_all(void)
{
	for (int round = 0; round < 2; round++)
		for (int a = 0; a < NREP; a++)
			for (int b = 0; b < NREP; b++)
				if (a != b)
					sync_pair(a, b);
}

static void assert_converged(void)
{
	struct lfs_cid r0, r;
	lfs_ledger_root(rep[0], &r0);
	for (int i = 1; i < NREP; i++) {
		lfs_ledger_root(rep[i], &r);
		ck_assert_msg(lfs_cid_equal(&r0, &r),
			      "replica %d differs from replica 0", i);
	}
}

static void assert_converged_pair(int a, int b)
{
	sync_pair(a, b);
	sync_pair(b, a);
	struct lfs_cid ra, rb;
	lfs_ledger_root(rep[a], &ra);
	lfs_ledger_root(rep[b], &rb);
	ck_assert(lfs_cid_equal(&ra, &rb));
	ck_assert_int_eq(get_v(rep[b], NULL, "mine"), 3);
	ck_assert_int_eq(get_v(rep[b], NULL, "late"), 2);
}

/* Is a version (value v written by writer w) current or a conflict? */
static bool version_kept(struct lfs_ledger *l, const char *id, long v)
{
	struct lfs_arena a;
	lfs_arena_init(&a, 0);
	struct lfs_index_entry e;
	json_t *doc;
	bool kept = false;
	if (lfs_ledger_get(l, NULL, id, &e, &a, &doc) == 0) {
		kept = json_integer_value(json_object_get(doc, "v")) == v;
		json_decref(doc);
		for (size_t i = 0; !kept && i < e.nconflicts; i++) {
			json_t *c;
			ck_assert_int_eq(
				lfs_ledger_load_doc(l, &e.conflicts[i].doc, id,
						    &c),
				0);
			kept = json_integer_value(json_object_get(c, "v")) == v;
			json_decref(c);
		}
	}
	lfs_arena_release(&a);
	return kept;
}

START_TEST(replicas_converge)
{
	make_tmpdir();
	struct fake_clock clk[NREP];
	for (int i = 0; i < NREP; i++) {
		clk[i].now = 1000000 * (i + 1); /* skewed clocks */
		rep[i] = open_replica(i, &clk[i]);
	}
	srand(7 + (unsigned)_i);
	long counter = 0;
	for (int round = 0; round < 6; round++) {
		/* Offline phase: every replica writes, some ids collide. The
		 * last value each replica wrote to each id must survive. */
		long last[NREP][NIDS];
		for (int r = 0; r < NREP; r++)
			for (int k = 0; k < NIDS; k++)
				last[r][k] = -1;
		for (int step = 0; step < 30; step++) {
			int r = rand() % NREP, k = rand() % NIDS;
			char id[16], body[64];
			snprintf(id, sizeof(id), "doc%d", k);
			if (rand() % 6 == 0) {
				struct lfs_txn *t;
				ck_assert_int_eq(lfs_txn_new(&t), 0);
				ck_assert_int_eq(lfs_txn_delete(t, id), 0);
				ck_assert_int_eq(lfs_ledger_commit(rep[r], t,
								   NULL, NULL),
						 0);
				lfs_txn_free(t);
				last[r][k] = -1;
			} else {
				long v = ++counter;
				snprintf(body, sizeof(body), "{\"v\": %ld}", v);
				put_json(rep[r], id, body);
				last[r][k] = v;
			}
			/* Random partial exchanges make criss-cross
			 * histories. */
			if (rand() % 5 == 0) {
				int a = rand() % NREP, b = rand() % NREP;
				if (a != b)
					sync_pair(a, b);
				for (int kk = 0; kk < NIDS; kk++)
					if (a != b)
						last[a][kk] = -1;
			}
		}
		sync_all();
		assert_converged();
		if (getenv("LFS_TEST_VERBOSE")) {
			struct lfs_cid *h;
			size_t nh;
			ck_assert_int_eq(lfs_ledger_heads(rep[0], &h, &nh), 0);
			free(h);
			int nconf = 0;
			for (int k = 0; k < NIDS; k++) {
				char id[16];
				snprintf(id, sizeof(id), "doc%d", k);
				struct lfs_arena a;
				lfs_arena_init(&a, 0);
				struct lfs_index_entry e;
				if (!lfs_ledger_get(rep[0], NULL, id, &e, &a,
						    NULL))
					nconf += (int)e.nconflicts;
				lfs_arena_release(&a);
			}
			fprintf(stderr, "round %d: %zu heads, %d conflicts\n",
				round, nh, nconf);
		}
		for (int r = 0; r < NREP; r++)
			for (int k = 0; k < NIDS; k++) {
				char id[16];
				snprintf(id, sizeof(id), "doc%d", k);
				if (last[r][k] >= 0)
					ck_assert_msg(
						version_kept(rep[0], id,
							     last[r][k]),
						"round %d: %s v%ld by replica "
						"%d was lost",
						round, id, last[r][k], r);
			}
		/* One replica merges; everyone gets one head again. */
		bool committed;
		ck_assert_int_eq(
			lfs_ledger_merge(rep[round % NREP], NULL, &committed),
			0);
		sync_all();
		assert_converged();
		for (int r = 0; r < NREP; r++) {
			struct lfs_cid *h;
			size_t n;
			ck_assert_int_eq(lfs_ledger_heads(rep[r], &h, &n), 0);
			ck_assert_uint_eq(n, 1);
			free(h);
		}
	}
	for (int i = 0; i < NREP; i++) {
		ck_assert_int_eq(lfs_ledger_fsck(rep[i], NULL, NULL), 0);
		lfs_ledger_close(rep[i]);
	}
	/* Reopened replicas still agree. */
	for (int i = 0; i < NREP; i++)
		rep[i] = open_replica(i, &clk[i]);
	assert_converged();
	for (int i = 0; i < NREP; i++)
		lfs_ledger_close(rep[i]);
	remove_tmpdir();
}
END_TEST

/*
 * Single-writer documents through random syncs, merges and deletes: every
 * replica ends with each writer's last word on its own documents, and no
 * conflicts, since nothing was concurrent. Seeded: LFS_SEED=N replays.
 */
#define SW_DOCS 4

static void delete_doc(struct lfs_ledger *l, const char *id)
{
	struct lfs_txn *t;
	ck_assert_int_eq(lfs_txn_new(&t), 0);
	ck_assert_int_eq(lfs_txn_delete(t, id), 0);
	ck_assert_int_eq(lfs_ledger_commit(l, t, NULL, NULL), 0);
	lfs_txn_free(t);
}

START_TEST(single_writer_histories)
{
	unsigned seed = getenv("LFS_SEED")
				? (unsigned)atol(getenv("LFS_SEED"))
				: (unsigned)time(NULL) + (unsigned)_i;
	fprintf(stderr,
		"single_writer_histories: seed %u (replay: LFS_SEED=%u)\n",
		seed, seed);
	srand(seed);
	make_tmpdir();
	struct fake_clock clk[NREP];
	for (int i = 0; i < NREP; i++) {
		clk[i].now = 1000000 * (rand() % 5 + 1);
		rep[i] = open_replica(i, &clk[i]);
	}
	long last[NREP][SW_DOCS]; /* -1: deleted or never written */
	for (int r = 0; r < NREP; r++)
		for (int k = 0; k < SW_DOCS; k++)
			last[r][k] = -1;
	long counter = 0;
	for (int step = 0; step < 120; step++) {
		int r = rand() % NREP, k = rand() % SW_DOCS, what = rand() % 10;
		char id[16], body[64];
		snprintf(id, sizeof(id), "w%d-%d", r, k);
		if (what < 5) {
			long v = ++counter;
			snprintf(body, sizeof(body), "{\"v\": %ld}", v);
			put_json(rep[r], id, body);
			last[r][k] = v;
		} else if (what < 6) {
			if (last[r][k] >= 0)
				delete_doc(rep[r], id);
			last[r][k] = -1;
		} else if (what < 7) {
			ck_assert_int_eq(lfs_ledger_merge(rep[r], NULL, NULL),
					 0);
		} else {
			int to = rand() % NREP;
			if (to != r)
				sync_pair(r, to);
		}
	}
	sync_all();
	assert_converged();
	for (int r = 0; r < NREP; r++)
		for (int k = 0; k < SW_DOCS; k++) {
			char id[16];
			snprintf(id, sizeof(id), "w%d-%d", r, k);
			struct lfs_arena a;
			lfs_arena_init(&a, 0);
			struct lfs_index_entry e;
			json_t *doc = NULL;
			int rc = lfs_ledger_get(rep[0], NULL, id, &e, &a, &doc);
			if (last[r][k] < 0) {
				ck_assert_msg(rc == -ENOENT,
					      "seed %u: %s was deleted last, "
					      "yet it is back",
					      seed, id);
			} else {
				ck_assert_msg(rc == 0,
					      "seed %u: %s (v%ld) is missing",
					      seed, id, last[r][k]);
				long v = (long)json_integer_value(
					json_object_get(doc, "v"));
				ck_assert_msg(v == last[r][k],
					      "seed %u: %s is v%ld, its writer "
					      "last wrote v%ld",
					      seed, id, v, last[r][k]);
				ck_assert_msg(e.nconflicts == 0,
					      "seed %u: %s has %zu conflicts, "
					      "but only one replica wrote it",
					      seed, id, e.nconflicts);
			}
			json_decref(doc);
			lfs_arena_release(&a);
		}
	for (int i = 0; i < NREP; i++) {
		ck_assert_int_eq(lfs_ledger_fsck(rep[i], NULL, NULL), 0);
		lfs_ledger_close(rep[i]);
	}
	remove_tmpdir();
}
END_TEST

static int count_files(const char *dir);

/*
 * A batch of ingests (catching up): the heads, the state and the head
 * records move once, at the end, and another handle on the directory sees
 * the result then.
 */
START_TEST(ingest_batch)
{
	make_tmpdir();
	rep[0] = open_replica(0, NULL);
	rep[1] = open_replica(1, NULL);
	for (int i = 0; i < 30; i++) {
		char id[16];
		snprintf(id, sizeof(id), "d%d", i);
		put_json(rep[0], id, "{\"v\": 1}");
	}
	char heads_dir[400];
	snprintf(heads_dir, sizeof(heads_dir), "%s/head", replica_dir(1));
	ck_assert_int_eq(count_files(heads_dir), 0);
	ck_assert_int_eq(lfs_ledger_ingest_begin(rep[1]), 0);
	sync_pair(0, 1);
	ck_assert_int_eq(get_v(rep[1], NULL, "d29"), -1); /* not yet */
	ck_assert_int_eq(count_files(heads_dir), 0);
	ck_assert_int_eq(lfs_ledger_ingest_end(rep[1]), 0);
	ck_assert_int_eq(get_v(rep[1], NULL, "d29"), 1);
	ck_assert_int_eq(count_files(heads_dir), 1);
	struct lfs_ledger *other = open_replica(1, NULL);
	ck_assert_int_eq(get_v(other, NULL, "d29"), 1);
	ck_assert_int_eq(lfs_ledger_fsck(other, NULL, NULL), 0);
	lfs_ledger_close(other);
	/* A commit inside a batch writes its record (and settles the batch's
	 * files first). */
	put_json(rep[0], "late", "{\"v\": 2}");
	ck_assert_int_eq(lfs_ledger_ingest_begin(rep[1]), 0);
	sync_pair(0, 1);
	put_json(rep[1], "mine", "{\"v\": 3}");
	ck_assert_int_eq(lfs_ledger_ingest_end(rep[1]), 0);
	assert_converged_pair(0, 1);
	lfs_ledger_close(rep[0]);
	lfs_ledger_close(rep[1]);
	remove_tmpdir();
}
END_TEST

/*
 * A catch-up applied in one pass (ingest_here): CARs here already, given
 * parents first; a CAR whose parent in the call was not ingested is not
 * either, whatever the order, so nothing is applied above a gap.
 */
START_TEST(ingest_here)
{
	enum { N = 20, GAP = 12 };
	make_tmpdir();
	rep[0] = open_replica(0, NULL);
	rep[1] = open_replica(1, NULL);
	for (int i = 0; i < N; i++) {
		char id[16];
		snprintf(id, sizeof(id), "d%d", i);
		put_json(rep[0], id, "{\"v\": 1}");
	}
	/* The chain of CARs, oldest first, imported into 1 unapplied. */
	struct lfs_blockstore *src = lfs_ledger_store(rep[0]),
			      *dst = lfs_ledger_store(rep[1]);
	struct lfs_cid *heads, chain[N];
	size_t nheads;
	ck_assert_int_eq(lfs_ledger_head_cars(rep[0], &heads, &nheads), 0);
	ck_assert_int_eq(nheads, 1);
	chain[N - 1] = heads[0];
	free(heads);
	struct lfs_arena a;
	lfs_arena_init(&a, 0);
	for (int i = N - 1; i >= 0; i--) {
		struct lfs_car_root root;
		uint8_t *bytes;
		size_t len;
		ck_assert_int_eq(
			lfs_blockstore_load(&root, &a, src, &chain[i], false),
			0);
		ck_assert_int_eq(root.ncars, i > 0);
		if (i > 0)
			chain[i - 1] = root.cars[0];
		ck_assert_int_eq(
			lfs_blockstore_read_car(&bytes, &len, src, &chain[i]),
			0);
		ck_assert_int_eq(lfs_blockstore_import(NULL, NULL, dst,
						       &chain[i], bytes, len),
				 0);
		free(bytes);
	}
	lfs_arena_release(&a);
	int res[N];
	struct lfs_cid missing[N], rev[N];
	/* Newest first: only the oldest goes in; the others wait for the
	 * parent this call had not ingested yet. */
	for (int i = 0; i < N; i++)
		rev[i] = chain[N - 1 - i];
	ck_assert_int_eq(lfs_ledger_ingest_begin(rep[1]), 0);
	ck_assert_int_eq(lfs_ledger_ingest_here(rep[1], rev, N, res, missing),
			 0);
	for (int i = 0; i < N - 1; i++) {
		ck_assert_int_eq(res[i], -EAGAIN);
		ck_assert(lfs_cid_equal(&missing[i], &rev[i + 1]));
	}
	ck_assert_int_eq(res[N - 1], 0);
	ck_assert_int_eq(lfs_ledger_ingest_end(rep[1]), 0);
	ck_assert_int_eq(get_v(rep[1], NULL, "d0"), 1);
	ck_assert_int_eq(get_v(rep[1], NULL, "d1"), -1);
	/* Oldest first, with one CAR gone from here: those above it wait. */
	ck_assert_int_eq(lfs_blockstore_remove_car(dst, &chain[GAP]), 0);
	ck_assert_int_eq(lfs_ledger_ingest_begin(rep[1]), 0);
	ck_assert_int_eq(
		lfs_ledger_ingest_here(rep[1], chain + 1, N - 1, res, missing),
		0);
	for (int i = 1; i < N; i++) {
		ck_assert_int_eq(res[i - 1], i < GAP ? 0 : -EAGAIN);
		if (i > GAP)
			ck_assert(
				lfs_cid_equal(&missing[i - 1], &chain[GAP]) ||
				lfs_cid_equal(&missing[i - 1], &chain[i - 1]));
	}
	ck_assert_int_eq(lfs_ledger_ingest_end(rep[1]), 0);
	ck_assert_int_eq(get_v(rep[1], NULL, "d11"), 1);
	ck_assert_int_eq(get_v(rep[1], NULL, "d12"), -1);
	ck_assert_int_eq(lfs_ledger_fsck(rep[1], NULL, NULL), 0);
	/* The gap filled, the rest goes in. */
	uint8_t *bytes;
	size_t len;
	ck_assert_int_eq(
		lfs_blockstore_read_car(&bytes, &len, src, &chain[GAP]), 0);
	ck_assert_int_eq(
		lfs_blockstore_import(NULL, NULL, dst, &chain[GAP], bytes, len),
		0);
	free(bytes);
	ck_assert_int_eq(lfs_ledger_ingest_begin(rep[1]), 0);
	ck_assert_int_eq(lfs_ledger_ingest_here(rep[1], chain + GAP, N - GAP,
						res, missing),
			 0);
	for (int i = 0; i < N - GAP; i++)
		ck_assert_int_eq(res[i], 0);
	ck_assert_int_eq(lfs_ledger_ingest_end(rep[1]), 0);
	struct lfs_cid r0, r1;
	lfs_ledger_root(rep[0], &r0);
	lfs_ledger_root(rep[1], &r1);
	ck_assert(lfs_cid_equal(&r0, &r1));
	ck_assert_int_eq(get_v(rep[1], NULL, "d19"), 1);
	ck_assert_int_eq(lfs_ledger_fsck(rep[1], NULL, NULL), 0);
	lfs_ledger_close(rep[0]);
	lfs_ledger_close(rep[1]);
	remove_tmpdir();
}
END_TEST

/*
 * A parent's block here is not a parent applied. Another process on the
 * same home may keep a CAR unapplied (its own parent missing): a CAR above
 * it must wait too, or its event would be applied above a gap and the
 * writes below it lost from view (the replica then counted the kept file
 * as applied). Each ledger object here stands for a process.
 */
START_TEST(ingest_above_kept)
{
	enum { N = 4 };
	make_tmpdir();
	rep[0] = open_replica(0, NULL);
	rep[1] = open_replica(1, NULL);
	struct lfs_ledger *other = open_replica(1, NULL);
	struct lfs_cid chain[N];
	uint8_t *bytes[N];
	size_t len[N];
	struct lfs_blockstore *src = lfs_ledger_store(rep[0]);
	for (int i = 0; i < N; i++) {
		char id[16];
		snprintf(id, sizeof(id), "d%d", i);
		put_json(rep[0], id, "{\"v\": 1}");
		struct lfs_cid *heads;
		size_t nheads;
		ck_assert_int_eq(lfs_ledger_head_cars(rep[0], &heads, &nheads),
				 0);
		ck_assert_int_eq(nheads, 1);
		chain[i] = heads[0];
		free(heads);
		ck_assert_int_eq(lfs_blockstore_read_car(&bytes[i], &len[i],
							 src, &chain[i]),
				 0);
	}
	struct lfs_cid missing;
	/* 1 arrives before 0: kept, unapplied. */
	ck_assert_int_eq(lfs_ledger_ingest(rep[1], &chain[1], bytes[1], len[1],
					   &missing),
			 -EAGAIN);
	ck_assert(lfs_cid_equal(&missing, &chain[0]));
	ck_assert_int_eq(lfs_ledger_car_applied(rep[1], &chain[1]), 0);
	/* 2 names 1, whose event is here but not applied: it waits, in this
	 * process and in the other, inside a batch or not. */
	memset(&missing, 0, sizeof(missing));
	ck_assert_int_eq(
		lfs_ledger_ingest(other, &chain[2], bytes[2], len[2], &missing),
		-EAGAIN);
	ck_assert(lfs_cid_equal(&missing, &chain[1]));
	ck_assert_int_eq(lfs_ledger_ingest_begin(rep[1]), 0);
	memset(&missing, 0, sizeof(missing));
	ck_assert_int_eq(
		lfs_ledger_ingest(rep[1], &chain[2], NULL, 0, &missing),
		-EAGAIN);
	ck_assert(lfs_cid_equal(&missing, &chain[1]));
	ck_assert_int_eq(lfs_ledger_ingest(rep[1], &chain[3], bytes[3], len[3],
					   &missing),
			 -EAGAIN);
	ck_assert_int_eq(lfs_ledger_ingest_end(rep[1]), 0);
	for (int i = 1; i < N; i++) {
		ck_assert_int_eq(lfs_ledger_car_applied(rep[1], &chain[i]), 0);
		ck_assert_int_eq(lfs_ledger_car_applied(other, &chain[i]), 0);
	}
	ck_assert_int_eq(get_v(rep[1], NULL, "d2"), -1);
	/* The gap closes: everything goes in, parents first. */
	for (int i = 0; i < N; i++)
		ck_assert_int_eq(lfs_ledger_ingest(rep[1], &chain[i], bytes[i],
						   len[i], &missing),
				 0);
	for (int i = 0; i < N; i++) {
		ck_assert_int_eq(lfs_ledger_car_applied(rep[1], &chain[i]), 1);
		free(bytes[i]);
	}
	ck_assert_int_eq(get_v(rep[1], NULL, "d3"), 1);
	/* The other process learns it from the heads on disk. */
	ck_assert_int_eq(lfs_ledger_ingest(other, &chain[3], NULL, 0, NULL), 0);
	ck_assert_int_eq(lfs_ledger_car_applied(other, &chain[2]), 1);
	ck_assert_int_eq(get_v(other, NULL, "d0"), 1);
	/* A commit one process makes is applied for the other at once, before
	 * the other has looked at the heads again: a sync there must never
	 * take it for a file to fetch and apply (or to remove). */
	put_json(rep[1], "local", "{\"v\": 5}");
	struct lfs_cid *mine;
	size_t nmine;
	ck_assert_int_eq(lfs_ledger_head_cars(rep[1], &mine, &nmine), 0);
	ck_assert_int_eq(nmine, 1);
	ck_assert(lfs_blockstore_in_segment(lfs_ledger_store(other), &mine[0]));
	ck_assert_int_eq(lfs_ledger_car_applied(other, &mine[0]), 1);
	free(mine);
	lfs_ledger_close(other);
	lfs_ledger_close(rep[0]);
	lfs_ledger_close(rep[1]);
	remove_tmpdir();
}
END_TEST

/* Concurrent edit vs delete: the edit wins; concurrent edits: both kept. */
START_TEST(edit_beats_delete)
{
	make_tmpdir();
	struct fake_clock clk[2] = {{1000}, {5000}};
	rep[0] = open_replica(0, &clk[0]);
	rep[1] = open_replica(1, &clk[1]);
	put_json(rep[0], "x", "{\"v\": 1}");
	put_json(rep[0], "y", "{\"v\": 1}");
	sync_pair(0, 1);
	/* 0 deletes x, 1 edits x; both edit y. */
	struct lfs_txn *t;
	ck_assert_int_eq(lfs_txn_new(&t), 0);
	ck_assert_int_eq(lfs_txn_delete(t, "x"), 0);
	ck_assert_int_eq(lfs_ledger_commit(rep[0], t, NULL, NULL), 0);
	lfs_txn_free(t);
	put_json(rep[1], "x", "{\"v\": 2}");
	put_json(rep[0], "y", "{\"v\": 10}");
	put_json(rep[1], "y", "{\"v\": 20}");
	sync_pair(0, 1);
	sync_pair(1, 0);
	struct lfs_cid r0, r1;
	lfs_ledger_root(rep[0], &r0);
	lfs_ledger_root(rep[1], &r1);
	ck_assert(lfs_cid_equal(&r0, &r1));
	ck_assert_int_eq(get_v(rep[0], NULL, "x"), 2);
	/* Writer 1's clock is ahead: its y wins, writer 0's is a conflict. */
	ck_assert_int_eq(get_v(rep[0], NULL, "y"), 20);
	ck_assert(version_kept(rep[0], "y", 10));
	/* Writing y again resolves the conflict. */
	put_json(rep[0], "y", "{\"v\": 30}");
	struct lfs_arena a;
	lfs_arena_init(&a, 0);
	struct lfs_index_entry e;
	ck_assert_int_eq(lfs_ledger_get(rep[0], NULL, "y", &e, &a, NULL), 0);
	ck_assert_uint_eq(e.nconflicts, 0);
	lfs_arena_release(&a);
	lfs_ledger_close(rep[0]);
	lfs_ledger_close(rep[1]);
	remove_tmpdir();
}
END_TEST

/* ---- hostile input ---- */

START_TEST(hostile_cars)
{
	make_tmpdir();
	rep[0] = open_replica(0, NULL);
	put_json(rep[0], "a", "{\"v\": 1}");
	struct lfs_cid root_before;
	lfs_ledger_root(rep[0], &root_before);
	struct lfs_buf s;
	lfs_buf_init(&s, 0);
	struct lfs_cid name, ev, missing;

	/* 1. Bytes that don't match their name. */
	uint8_t junk[100] = {1, 2, 3};
	lfs_cid_of(&name, LFS_CODEC_RAW, "other", 5);
	ck_assert_int_eq(
		lfs_ledger_ingest(rep[0], &name, junk, sizeof(junk), &missing),
		-EBADMSG);

	/* 2. A CAR sealed with another key. */
	uint8_t other[LFS_KEY_BYTES];
	memset(other, 7, sizeof(other));
	uint8_t evb[] = {0xa0}; /* {} : not an event */
	lfs_cid_of(&ev, LFS_CODEC_DAG_CBOR, evb, 1);
	lfs_check_seal_event_car(&s, &name, other, &ev, evb, 1);
	ck_assert_int_eq(
		lfs_ledger_ingest(rep[0], &name, s.data, s.len, &missing),
		-EBADMSG);

	/* 3. The right key, but the event is malformed. */
	lfs_buf_reset(&s);
	lfs_check_seal_event_car(&s, &name, key, &ev, evb, 1);
	ck_assert_int_eq(
		lfs_ledger_ingest(rep[0], &name, s.data, s.len, &missing),
		-EBADMSG);
	ck_assert(!lfs_blockstore_has_car(lfs_ledger_store(rep[0]), &name));

	/* 4. A CAR whose root names an event it doesn't hold. */
	lfs_buf_reset(&s);
	lfs_cid_of(&ev, LFS_CODEC_DAG_CBOR, "absent", 6);
	lfs_check_seal_event_car(&s, &name, key, &ev, NULL, 0);
	int rc = lfs_ledger_ingest(rep[0], &name, s.data, s.len, &missing);
	ck_assert(rc == -ENOENT || rc == -EBADMSG);

	/* 5. A valid event whose parent is nowhere: -EAGAIN, not applied. */
	struct lfs_cid fake_parent;
	lfs_cid_of(&fake_parent, LFS_CODEC_DAG_CBOR, "p", 1);
	struct lfs_event e = {.parents = &fake_parent,
			      .nparents = 1,
			      .t = 5,
			      .writer = "evil",
			      .root = root_before};
	struct lfs_buf eb;
	lfs_buf_init(&eb, 0);
	ck_assert_int_eq(lfs_event_encode(&eb, &e), 0);
	lfs_cid_of(&ev, LFS_CODEC_DAG_CBOR, eb.data, eb.len);
	lfs_buf_reset(&s);
	lfs_check_seal_event_car(&s, &name, key, &ev, eb.data, eb.len);
	ck_assert_int_eq(
		lfs_ledger_ingest(rep[0], &name, s.data, s.len, &missing),
		-EAGAIN);

	/* 6. An event older than its parent (clock going backwards). */
	struct lfs_cid *heads;
	size_t nh;
	ck_assert_int_eq(lfs_ledger_heads(rep[0], &heads, &nh), 0);
	e.parents = heads;
	e.t = 1; /* the real head is far in the future of 1 µs */
	lfs_buf_reset(&eb);
	ck_assert_int_eq(lfs_event_encode(&eb, &e), 0);
	lfs_cid_of(&ev, LFS_CODEC_DAG_CBOR, eb.data, eb.len);
	lfs_buf_reset(&s);
	lfs_check_seal_event_car(&s, &name, key, &ev, eb.data, eb.len);
	ck_assert_int_eq(
		lfs_ledger_ingest(rep[0], &name, s.data, s.len, &missing),
		-EBADMSG);
	free(heads);

	/* Nothing was applied; the ledger still works. */
	struct lfs_cid root_after;
	lfs_ledger_root(rep[0], &root_after);
	ck_assert(lfs_cid_equal(&root_before, &root_after));
	put_json(rep[0], "b", "{\"v\": 2}");
	ck_assert_int_eq(get_v(rep[0], NULL, "b"), 2);
	lfs_buf_release(&eb);
	lfs_buf_release(&s);
	lfs_ledger_close(rep[0]);
	remove_tmpdir();
}
END_TEST

/*
 * Times from a peer: t = INT64_MAX is corrupt everywhere (no t + 1 may
 * overflow); an event hours ahead of this clock waits until the clock
 * catches up, then applies; neither breaks a commit or fsck.
 */
START_TEST(clock_from_the_future)
{
	make_tmpdir();
	struct fake_clock clk = {.now = 1000000000};
	rep[0] = open_replica(0, &clk);
	put_json(rep[0], "a", "{\"v\": 1}");
	struct lfs_cid *heads, name, ev, missing, root_before;
	size_t nh;
	ck_assert_int_eq(lfs_ledger_heads(rep[0], &heads, &nh), 0);
	lfs_ledger_root(rep[0], &root_before);
	struct lfs_event e = {.parents = heads,
			      .nparents = nh,
			      .t = LFS_CLOCK_T_MAX,
			      .writer = "broken-clock",
			      .root = root_before};
	struct lfs_buf eb, s;
	lfs_buf_init(&eb, 0);
	lfs_buf_init(&s, 0);
	ck_assert_int_eq(lfs_event_encode(&eb, &e), 0);
	/* Patch t to INT64_MAX: the encoder refuses to write it. */
	static const uint8_t tmax[] = {0x61, 't',  0x1b, 0x00, 0x20, 0x00,
				       0x00, 0x00, 0x00, 0x00, 0x00};
	uint8_t *at = memmem(eb.data, eb.len, tmax, sizeof(tmax));
	ck_assert_ptr_nonnull(at);
	memcpy(at + 3, "\x7f\xff\xff\xff\xff\xff\xff\xff", 8);
	lfs_cid_of(&ev, LFS_CODEC_DAG_CBOR, eb.data, eb.len);
	lfs_check_seal_event_car(&s, &name, key, &ev, eb.data, eb.len);
	ck_assert_int_eq(
		lfs_ledger_ingest(rep[0], &name, s.data, s.len, &missing),
		-EBADMSG);
	e.t = INT64_MAX;
	lfs_buf_reset(&eb);
	ck_assert_int_eq(lfs_event_encode(&eb, &e), -EINVAL);

	/* Two hours ahead: kept, not applied, until this clock catches up. */
	e.t = clk.now + (int64_t)2 * 3600 * 1000000;
	lfs_buf_reset(&eb);
	ck_assert_int_eq(lfs_event_encode(&eb, &e), 0);
	lfs_cid_of(&ev, LFS_CODEC_DAG_CBOR, eb.data, eb.len);
	lfs_buf_reset(&s);
	lfs_check_seal_event_car(&s, &name, key, &ev, eb.data, eb.len);
	ck_assert_int_eq(
		lfs_ledger_ingest(rep[0], &name, s.data, s.len, &missing),
		-EAGAIN);
	struct lfs_cid root_now, *h2;
	size_t n2;
	lfs_ledger_root(rep[0], &root_now);
	ck_assert(lfs_cid_equal(&root_now, &root_before));
	ck_assert_int_eq(lfs_ledger_heads(rep[0], &h2, &n2), 0);
	ck_assert(n2 == 1 && lfs_cid_equal(&h2[0], &heads[0]));
	free(h2);
	clk.now += (int64_t)2 * 3600 * 1000000;
	ck_assert_int_eq(
		lfs_ledger_ingest(rep[0], &name, s.data, s.len, &missing), 0);
	ck_assert_int_eq(lfs_ledger_heads(rep[0], &h2, &n2), 0);
	ck_assert(n2 == 1 && lfs_cid_equal(&h2[0], &ev));
	free(h2);
	put_json(rep[0], "b", "{\"v\": 2}");
	ck_assert_int_eq(get_v(rep[0], NULL, "b"), 2);
	ck_assert_int_eq(lfs_ledger_fsck(rep[0], NULL, NULL), 0);
	free(heads);
	lfs_buf_release(&eb);
	lfs_buf_release(&s);
	lfs_ledger_close(rep[0]);
	remove_tmpdir();
}
END_TEST

/* ---- crashes ---- */

/*
 * _i: 0 durable commits, a CAR file each; 1 non-durable commits appended
 * to the segment (acknowledged = survives the process); 2 durable commits
 * appended to the segment (fdatasync each).
 */
START_TEST(crash_at_random_points)
{
	make_tmpdir();
	for (int trial = 0; trial < 12; trial++) {
		char dir[300];
		snprintf(dir, sizeof(dir), "%s/crash%d", tmpdir, trial);
		int fds[2];
		ck_assert_int_eq(pipe(fds), 0);
		pid_t pid = fork();
		ck_assert_int_ge(pid, 0);
		if (pid == 0) {
			close(fds[0]);
			struct lfs_ledger *l;
			struct lfs_ledger_opts o;
			lfs_ledger_opts_init(&o);
			o.writer = "crasher";
			o.durable = _i != 1;
			o.segment = _i == 2;
			if (lfs_ledger_open(&l, dir, key, &o, true))
				_exit(2);
			for (long i = 0;; i++) {
				char id[16], body[32];
				snprintf(id, sizeof(id), "k%ld", i % 20);
				snprintf(body, sizeof(body), "{\"v\": %ld}", i);
				json_t *doc = json_loads(body, 0, NULL);
				struct lfs_txn *t;
				lfs_txn_new(&t);
				lfs_txn_put(t, id, doc);
				json_decref(doc);
				if (lfs_ledger_commit(l, t, NULL, NULL))
					_exit(3);
				lfs_txn_free(t);
				/* Durable now: tell the parent. */
				if (write(fds[1], &i, sizeof(i)) != sizeof(i))
					_exit(4);
			}
		}
		close(fds[1]);
		/* Wait for the first acknowledged commit (however slow the
		 * machine), then kill at a random point after it. */
		long last = -1, i;
		if (read(fds[0], &i, sizeof(i)) == sizeof(i))
			last = i;
		usleep((unsigned)(rand() % 200000));
		kill(pid, SIGKILL);
		int status;
		waitpid(pid, &status, 0);
		ck_assert_msg(WIFSIGNALED(status) &&
				      WTERMSIG(status) == SIGKILL,
			      "trial %d: the writer stopped by itself (status "
			      "%d) before it was killed",
			      trial, status);
		while (read(fds[0], &i, sizeof(i)) == sizeof(i))
			last = i;
		close(fds[0]);
		ck_assert_int_ge(last, 0);

		struct lfs_ledger *l;
		ck_assert_int_eq(lfs_ledger_open(&l, dir, key, NULL, false), 0);
		ck_assert_int_eq(lfs_ledger_fsck(l, NULL, NULL), 0);
		/* Every acknowledged commit is there (or a newer one). */
		for (long k = 0; k < 20 && k <= last; k++) {
			char id[16];
			snprintf(id, sizeof(id), "k%ld", k);
			long want = last - ((last - k) % 20);
			long got = get_v(l, NULL, id);
			ck_assert_msg(got >= want, "trial %d: %s has %ld < %ld",
				      trial, id, got, want);
		}
		/* Writing goes on after whatever the crash cut off. */
		put_json(l, "after", "{\"v\": 1}");
		lfs_ledger_close(l);
		ck_assert_int_eq(lfs_ledger_open(&l, dir, key, NULL, false), 0);
		ck_assert_int_eq(lfs_ledger_fsck(l, NULL, NULL), 0);
		ck_assert_int_eq(get_v(l, NULL, "after"), 1);
		lfs_ledger_close(l);
	}
	remove_tmpdir();
}
END_TEST

/*
 * A segment whose last record a crash cut short, or followed by garbage:
 * the ledger opens with every whole record, fsck passes, the next commit
 * cuts the tail off and another process sees that commit.
 */
START_TEST(segment_torn_tail)
{
	make_tmpdir();
	rep[0] = open_replica(0, NULL);
	put_json(rep[0], "a", "{\"v\": 1}");
	put_json(rep[0], "b", "{\"v\": 2}");
	put_json(rep[0], "c", "{\"v\": 3}");
	lfs_ledger_close(rep[0]);
	char path[400];
	snprintf(path, sizeof(path), "%s/segment", replica_dir(0));
	struct stat st;
	ck_assert_int_eq(stat(path, &st), 0);
	/* The close appended a 76-byte mark; cut into the commit before. */
	ck_assert_int_eq(truncate(path, st.st_size - 76 - 100), 0);
	rep[0] = open_replica(0, NULL);
	ck_assert_int_eq(get_v(rep[0], NULL, "b"), 2);
	ck_assert_int_eq(get_v(rep[0], NULL, "c"), -1);
	ck_assert_int_eq(lfs_ledger_fsck(rep[0], NULL, NULL), 0);
	put_json(rep[0], "c", "{\"v\": 4}");
	lfs_ledger_close(rep[0]);
	FILE *f = fopen(path, "a");
	ck_assert_ptr_nonnull(f);
	fputs("LSR1 and then garbage", f);
	fclose(f);
	rep[0] = open_replica(0, NULL);
	ck_assert_int_eq(get_v(rep[0], NULL, "c"), 4);
	/* Another process (a second handle) sees what this one commits. */
	struct lfs_ledger_opts o;
	lfs_ledger_opts_init(&o);
	struct lfs_ledger *other;
	ck_assert_int_eq(
		lfs_ledger_open(&other, replica_dir(0), key, &o, false), 0);
	put_json(rep[0], "d", "{\"v\": 5}");
	bool changed;
	ck_assert_int_eq(lfs_ledger_refresh(other, NULL, NULL, &changed), 0);
	ck_assert(changed);
	ck_assert_int_eq(get_v(other, NULL, "d"), 5);
	ck_assert_int_eq(lfs_ledger_fsck(other, NULL, NULL), 0);
	lfs_ledger_close(other);
	lfs_ledger_close(rep[0]);
	remove_tmpdir();
}
END_TEST

/*
 * Two handles take turns appending to one segment (as two processes do):
 * what one knew of the file's end while it held the lock is forgotten when
 * it lets go, so its next append (here the mark its close writes, after a
 * commit that changed nothing) goes after the other's records, never over
 * them.
 */
START_TEST(segment_two_writers_take_turns)
{
	make_tmpdir();
	struct lfs_ledger *a = open_replica(0, NULL);
	put_json(a, "x", "{\"v\": 1}");
	put_json(a, "x", "{\"v\": 1}"); /* changes nothing: no append */
	struct lfs_ledger *b = open_replica(0, NULL);
	put_json(b, "y", "{\"v\": 2}");
	lfs_ledger_close(a); /* appends its mark, after y */
	put_json(b, "z", "{\"v\": 3}");
	lfs_ledger_close(b);
	a = open_replica(0, NULL);
	ck_assert_int_eq(get_v(a, NULL, "x"), 1);
	ck_assert_int_eq(get_v(a, NULL, "y"), 2);
	ck_assert_int_eq(get_v(a, NULL, "z"), 3);
	ck_assert_int_eq(lfs_ledger_fsck(a, NULL, NULL), 0);
	lfs_ledger_close(a);
	remove_tmpdir();
}
END_TEST

/*
 * Damage in the middle of the segment (a record header that no longer
 * checks out) loses that record only: the records after it still load,
 * the next commit cuts nothing off, and fsck names what is missing.
 */
/* Where the bytes of car's CID first stand in replica 0's segment (in
 * its record's header), or -1. */
static long segment_find(const struct lfs_cid *car)
{
	char path[400];
	snprintf(path, sizeof(path), "%s/segment", replica_dir(0));
	FILE *f = fopen(path, "r");
	ck_assert_ptr_nonnull(f);
	static uint8_t buf[4 << 20];
	size_t len = fread(buf, 1, sizeof(buf), f);
	fclose(f);
	uint8_t bin[LFS_CID_BYTES];
	lfs_cid_to_bytes(bin, car);
	for (size_t i = 0; i + sizeof(bin) <= len; i++)
		if (!memcmp(buf + i, bin, sizeof(bin)))
			return (long)i;
	return -1;
}

/* XOR the byte at off of replica 0's segment with mask. */
static void segment_flip(long off, int mask)
{
	char path[400];
	snprintf(path, sizeof(path), "%s/segment", replica_dir(0));
	FILE *f = fopen(path, "r+");
	ck_assert_ptr_nonnull(f);
	ck_assert_int_eq(fseek(f, off, SEEK_SET), 0);
	int c = fgetc(f);
	ck_assert_int_ne(c, EOF);
	ck_assert_int_eq(fseek(f, off, SEEK_SET), 0);
	fputc(c ^ mask, f);
	fclose(f);
}

START_TEST(segment_damage_in_the_middle)
{
	make_tmpdir();
	rep[0] = open_replica(0, NULL);
	put_json(rep[0], "a", "{\"v\": 1}");
	struct lfs_cid *cars;
	size_t n;
	ck_assert_int_eq(lfs_ledger_head_cars(rep[0], &cars, &n), 0);
	ck_assert_uint_eq(n, 1);
	struct lfs_cid first = cars[0];
	free(cars);
	put_json(rep[0], "b", "{\"v\": 2}");
	put_json(rep[0], "c", "{\"v\": 3}");
	lfs_ledger_close(rep[0]);
	char path[400];
	snprintf(path, sizeof(path), "%s/segment", replica_dir(0));
	long at = segment_find(&first); /* the first record's CAR CID */
	ck_assert_int_ge(at, 24);
	segment_flip(at - 8, 0x40); /* its "synced" field */
	struct stat before, after;
	ck_assert_int_eq(stat(path, &before), 0);
	rep[0] = open_replica(0, NULL);
	ck_assert_int_eq(get_v(rep[0], NULL, "b"), 2);
	ck_assert_int_eq(get_v(rep[0], NULL, "c"), 3);
	put_json(rep[0], "d", "{\"v\": 4}");
	ck_assert_int_eq(stat(path, &after), 0);
	ck_assert_int_gt(after.st_size, before.st_size);
	ck_assert_int_ge(lfs_ledger_fsck(rep[0], NULL, NULL), 1);
	lfs_ledger_close(rep[0]);
	rep[0] = open_replica(0, NULL);
	ck_assert_int_eq(get_v(rep[0], NULL, "c"), 3);
	ck_assert_int_eq(get_v(rep[0], NULL, "d"), 4);
	lfs_ledger_close(rep[0]);
	remove_tmpdir();
}
END_TEST

/* ---- the segment's runs (its block index on disk) ---- */

#define RUN_IDS 300

static void check_model(struct lfs_ledger *l, const long *model, int from)
{
	for (int i = from; i < RUN_IDS; i++) {
		char id[16];
		snprintf(id, sizeof(id), "d%03d", i);
		ck_assert_int_eq(get_v(l, NULL, id), model[i]);
	}
}

static struct lfs_blockstore_stats store_stats(struct lfs_ledger *l)
{
	struct lfs_blockstore_stats st;
	lfs_blockstore_stats(lfs_ledger_store(l), &st);
	return st;
}

/* Files in the replica's runs directory, temporaries too (0 when there
 * is none), but not the resume point beside them (blockstore_resume.c). */
static int count_runs(void)
{
	char dir[400];
	snprintf(dir, sizeof(dir), "%s/runs", replica_dir(0));
	DIR *d = opendir(dir);
	int n = 0;
	struct dirent *de;
	while (d && (de = readdir(d)))
		n += strcmp(de->d_name, ".") && strcmp(de->d_name, "..") &&
		     strcmp(de->d_name, "resume");
	if (d)
		closedir(d);
	return n;
}

/* Flip one byte in the middle of the first run file. */
/* Damage the first run file: flip a byte in its middle, or cut it in
 * half and leave a temporary beside it (what a power cut may leave of
 * files never fsynced). */
static void damage_a_run(bool cut)
{
	char cmd[900];
	snprintf(cmd, sizeof(cmd),
		 "f=$(ls -d '%s'/runs/* | head -1) && "
		 "python3 -c 'import sys; p=sys.argv[1]; "
		 "b=bytearray(open(p,\"rb\").read()); "
		 "b[len(b)//2]^=1; open(p,\"wb\").write(b[:len(b)//2] if "
		 "sys.argv[2]==\"cut\" else b)' \"$f\" %s && "
		 "{ [ %s = flip ] || echo junk >'%s/runs/.0-1.tmp'; }",
		 replica_dir(0), cut ? "cut" : "flip", cut ? "cut" : "flip",
		 replica_dir(0));
	ck_assert_int_eq(system(cmd), 0);
}

/* Mappings of this process that are run files. */
static int runs_mapped(void)
{
	FILE *f = fopen("/proc/self/maps", "r");
	ck_assert_ptr_nonnull(f);
	char line[1024];
	int n = 0;
	while (fgets(line, sizeof(line), f))
		n += strstr(line, "/runs/") != NULL;
	fclose(f);
	return n;
}

START_TEST(segment_runs)
{
	unsigned seed = lfs_check_seed();
	fprintf(stderr, "segment_runs: seed %u (replay: LFS_TEST_SEED=%u)\n",
		seed, seed);
	srand(seed);
	make_tmpdir();
	long model[RUN_IDS];
	for (int i = 0; i < RUN_IDS; i++)
		model[i] = -1;
	rep[0] = open_replica(0, NULL);
	for (int k = 1; k <= 5000; k++) {
		int i = 1 + rand() % (RUN_IDS - 1);
		char id[16], text[64];
		snprintf(id, sizeof(id), "d%03d", i);
		if (model[i] >= 0 && rand() % 5 == 0) {
			struct lfs_txn *t;
			ck_assert_int_eq(lfs_txn_new(&t), 0);
			ck_assert_int_eq(lfs_txn_delete(t, id), 0);
			ck_assert_int_eq(
				lfs_ledger_commit(rep[0], t, NULL, NULL), 0);
			lfs_txn_free(t);
			model[i] = -1;
		} else {
			snprintf(text, sizeof(text), "{\"v\": %d}", k);
			put_json(rep[0], id, text);
			model[i] = k;
		}
	}
	/* A run took the first records' blocks out of the table. */
	struct lfs_blockstore_stats st = store_stats(rep[0]);
	ck_assert_uint_ge(st.runs, 1);
	ck_assert_uint_gt(st.indexed, 0);
	ck_assert_uint_lt(st.locations, 5 * (st.records - st.indexed) + 64);
	/* Nor do the covered records keep their roots' lists: only those a
	 * run does not cover yet are loaded. A root asked for again is read
	 * from the segment, and is the one a fresh process reads. */
	ck_assert_uint_le(st.loaded, st.records - st.indexed + 1);
	struct lfs_cid *cars;
	size_t ncars;
	ck_assert_int_eq(lfs_blockstore_list_cars(&cars, &ncars,
						  lfs_ledger_store(rep[0])),
			 0);
	ck_assert_uint_ge(ncars, 5000);
	enum { ASKED = 8 };
	struct lfs_car_root roots[ASKED];
	struct lfs_arena a;
	lfs_arena_init(&a, 0);
	for (int i = 0; i < ASKED; i++)
		ck_assert_int_eq(lfs_blockstore_load(&roots[i], &a,
						     lfs_ledger_store(rep[0]),
						     &cars[i * 600], false),
				 0);
	check_model(rep[0], model, 0);
	lfs_ledger_close(rep[0]);

	/* Reopened: every record is covered, and no CAR but the head's is
	 * decrypted to read every document. */
	rep[0] = open_replica(0, NULL);
	for (int i = 0; i < ASKED; i++) {
		struct lfs_car_root r;
		ck_assert_int_eq(lfs_blockstore_load(&r, &a,
						     lfs_ledger_store(rep[0]),
						     &cars[i * 600], false),
				 0);
		ck_assert_uint_eq(r.ncars, roots[i].ncars);
		ck_assert_uint_eq(r.nhead, roots[i].nhead);
		ck_assert_uint_ge(r.nhead, 1);
		for (size_t k = 0; k < r.ncars; k++)
			ck_assert(lfs_cid_equal(&r.cars[k], &roots[i].cars[k]));
		for (size_t k = 0; k < r.nhead; k++)
			ck_assert(lfs_cid_equal(&r.head[k], &roots[i].head[k]));
	}
	lfs_arena_release(&a);
	free(cars);
	lfs_ledger_close(rep[0]);
	rep[0] = open_replica(0, NULL);
	check_model(rep[0], model, 0);
	st = store_stats(rep[0]);
	ck_assert_uint_eq(st.indexed, st.records);
	ck_assert_uint_le(st.loaded, 2);
	ck_assert_uint_eq(st.locations, 0);
	int files = count_runs();
	ck_assert_int_ge(files, 1);
	ck_assert_int_eq((size_t)files, st.runs);
	/* Read, never mapped: their pages are not the process's memory. */
	ck_assert_int_eq(runs_mapped(), 0);
	lfs_ledger_close(rep[0]);

	/* A damaged run is ignored; the next writer's close writes one,
	 * and removes the damaged files and temporaries. */
	for (int cut = 0; cut < 2; cut++) {
		damage_a_run(cut);
		rep[0] = open_replica(0, NULL);
		check_model(rep[0], model, 0);
		st = store_stats(rep[0]);
		ck_assert_uint_lt(st.indexed, st.records);
		ck_assert_uint_gt(st.loaded, 2);
		put_json(rep[0], "d001",
			 cut ? "{\"v\": 9002}" : "{\"v\": 9001}");
		model[1] = cut ? 9002 : 9001;
		lfs_ledger_close(rep[0]);
		rep[0] = open_replica(0, NULL);
		check_model(rep[0], model, 0);
		st = store_stats(rep[0]);
		ck_assert_uint_eq(st.indexed, st.records);
		ck_assert_int_eq(count_runs(), (int)st.runs);
		lfs_ledger_close(rep[0]);
	}

	/* Compaction removes the segment, and its runs with it. */
	rep[0] = open_replica(0, NULL);
	struct lfs_cid car;
	ck_assert_int_eq(lfs_ledger_compact(rep[0], &car), 0);
	check_model(rep[0], model, 0);
	st = store_stats(rep[0]);
	ck_assert_uint_eq(st.runs, 0);
	ck_assert_int_le(count_runs(), 0);
	lfs_ledger_close(rep[0]);
	rep[0] = open_replica(0, NULL);
	check_model(rep[0], model, 0);
	st = store_stats(rep[0]);
	ck_assert_uint_eq(st.records, 0);
	/* New commits make a new segment, covered at close again. */
	for (int k = 0; k < 100; k++) {
		char text[64];
		snprintf(text, sizeof(text), "{\"v\": %d}", 10000 + k);
		put_json(rep[0], "d002", text);
		model[2] = 10000 + k;
	}
	lfs_ledger_close(rep[0]);
	rep[0] = open_replica(0, NULL);
	check_model(rep[0], model, 0);
	st = store_stats(rep[0]);
	ck_assert_uint_eq(st.indexed, st.records);
	ck_assert_uint_eq(st.records, 100);
	lfs_ledger_close(rep[0]);
	remove_tmpdir();
}
END_TEST

/*
 * Damage to a record's header in the middle of the segment: the scan
 * skips it, the records after it move up one place, and no run matches
 * them any more. The damage costs that commit only: the ledger opens,
 * every other document reads back (the records before it are found
 * though the chain of roots to them is cut), and the lost one is an
 * error, not a document that never was.
 */
START_TEST(segment_runs_after_damage)
{
	make_tmpdir();
	rep[0] = open_replica(0, NULL);
	struct lfs_cid damaged;
	long model[RUN_IDS];
	for (int i = 0; i < RUN_IDS; i++) {
		char id[16], text[64];
		snprintf(id, sizeof(id), "d%03d", i);
		snprintf(text, sizeof(text), "{\"v\": %d, \"of\": \"%s\"}", i,
			 id);
		put_json(rep[0], id, text);
		model[i] = i;
		if (i != RUN_IDS / 2)
			continue;
		struct lfs_cid *cars;
		size_t n;
		ck_assert_int_eq(lfs_ledger_head_cars(rep[0], &cars, &n), 0);
		damaged = cars[0];
		free(cars);
	}
	lfs_ledger_close(rep[0]);
	rep[0] = open_replica(0, NULL);
	struct lfs_blockstore_stats st = store_stats(rep[0]);
	ck_assert_uint_eq(st.indexed, RUN_IDS);
	lfs_ledger_close(rep[0]);
	long at = segment_find(&damaged); /* its CAR CID, in its header */
	ck_assert_int_ge(at, 24);
	segment_flip(at - 8, 0x40); /* its "synced" field */
	for (int pass = 0; pass < 2; pass++) {
		rep[0] = open_replica(0, NULL);
		st = store_stats(rep[0]);
		ck_assert_uint_eq(st.records, RUN_IDS - 1 + pass);
		/* The stale run is refused; the next close writes another. */
		ck_assert_uint_eq(st.indexed, pass ? st.records : 0);
		for (int i = 0; i < RUN_IDS; i++) {
			char id[16];
			snprintf(id, sizeof(id), "d%03d", i);
			if (i != RUN_IDS / 2) {
				ck_assert_int_eq(get_v(rep[0], NULL, id),
						 model[i]);
				continue;
			}
			struct lfs_arena a;
			lfs_arena_init(&a, 0);
			json_t *doc = NULL;
			ck_assert_int_eq(lfs_ledger_get(rep[0], NULL, id, NULL,
							&a, &doc),
					 -EIO);
			lfs_arena_release(&a);
		}
		/* A commit on top, and the runs written again at close. */
		put_json(rep[0], "after", "{\"v\": 1}");
		lfs_ledger_close(rep[0]);
	}
	remove_tmpdir();
}
END_TEST

/* ---- compaction ---- */

static int count_files(const char *dir)
{
	char cmd[800];
	snprintf(cmd, sizeof(cmd), "ls '%s' | grep -c '^b' > %s/count", dir,
		 tmpdir);
	if (system(cmd) < 0)
		return -1;
	snprintf(cmd, sizeof(cmd), "%s/count", tmpdir);
	FILE *f = fopen(cmd, "r");
	int n = -1;
	if (f) {
		if (fscanf(f, "%d", &n) != 1)
			n = -1;
		fclose(f);
	}
	return n;
}

START_TEST(compaction)
{
	make_tmpdir();
	rep[0] = open_replica(0, NULL);
	struct lfs_cid first_event;
	for (int i = 0; i < 60; i++) {
		char id[16], body[32];
		snprintf(id, sizeof(id), "d%d", i % 25);
		snprintf(body, sizeof(body), "{\"v\": %d}", i);
		put_json(rep[0], id, body);
		if (i == 0) {
			struct lfs_cid *h;
			size_t n;
			ck_assert_int_eq(lfs_ledger_heads(rep[0], &h, &n), 0);
			first_event = h[0];
			free(h);
		}
	}
	struct lfs_cid root, car;
	lfs_ledger_root(rep[0], &root);
	ck_assert_int_eq(lfs_ledger_compact(rep[0], &car), 0);
	char cars[400];
	snprintf(cars, sizeof(cars), "%s/car", replica_dir(0));
	ck_assert_int_eq(count_files(cars), 1);
	lfs_ledger_close(rep[0]);

	rep[0] = open_replica(0, NULL);
	struct lfs_cid root2, old_root;
	lfs_ledger_root(rep[0], &root2);
	ck_assert(lfs_cid_equal(&root, &root2));
	for (int i = 0; i < 25; i++) {
		char id[16];
		snprintf(id, sizeof(id), "d%d", i);
		ck_assert_int_eq(get_v(rep[0], NULL, id),
				 i + (i < 10 ? 50 : 25));
	}
	/* History survives compaction. */
	ck_assert_int_eq(lfs_ledger_event_root(rep[0], &first_event, &old_root),
			 0);
	ck_assert_int_eq(get_v(rep[0], &old_root, "d0"), 0);
	ck_assert_int_eq(get_v(rep[0], &old_root, "d1"), -1);
	ck_assert_int_eq(lfs_ledger_fsck(rep[0], NULL, NULL), 0);
	/* And writing continues. */
	put_json(rep[0], "after", "{\"v\": 99}");
	ck_assert_int_eq(get_v(rep[0], NULL, "after"), 99);
	lfs_ledger_close(rep[0]);
	remove_tmpdir();
}
END_TEST

/*
 * A compaction by another process (the CLI while a mount has the ledger
 * open): the old files stay for the open reader, but the reader adopts the
 * compacted CAR as its head CAR, so it pushes that file's head record and
 * its next commit names it as the parent.
 */
START_TEST(compaction_by_another_process)
{
	make_tmpdir();
	rep[0] = open_replica(0, NULL);
	for (int i = 0; i < 20; i++) {
		char id[16];
		snprintf(id, sizeof(id), "d%d", i);
		put_json(rep[0], id, "{\"v\": 1}");
	}
	rep[1] = open_replica(0, NULL); /* the same directory */
	struct lfs_cid car, *hc;
	size_t n;
	ck_assert_int_eq(lfs_ledger_compact(rep[1], &car), 0);
	bool changed;
	ck_assert_int_eq(lfs_ledger_refresh(rep[0], NULL, NULL, &changed), 0);
	ck_assert(!changed); /* same heads, same documents */
	ck_assert_int_eq(lfs_ledger_head_cars(rep[0], &hc, &n), 0);
	ck_assert_uint_eq(n, 1);
	ck_assert(lfs_cid_equal(&hc[0], &car));
	free(hc);
	put_json(rep[0], "after", "{\"v\": 2}");
	ck_assert_int_eq(lfs_ledger_head_cars(rep[0], &hc, &n), 0);
	struct lfs_arena a;
	lfs_arena_init(&a, 0);
	struct lfs_car_root r;
	ck_assert_int_eq(lfs_blockstore_load(&r, &a, lfs_ledger_store(rep[0]),
					     &hc[0], false),
			 0);
	ck_assert_uint_eq(r.ncars, 1);
	ck_assert(lfs_cid_equal(&r.cars[0], &car));
	lfs_arena_release(&a);
	free(hc);
	lfs_ledger_close(rep[1]);
	ck_assert_int_eq(lfs_ledger_fsck(rep[0], NULL, NULL), 0);
	lfs_ledger_close(rep[0]);
	remove_tmpdir();
}
END_TEST

/* A head record whose CAR cannot be read fails the reload of the heads,
 * and the ledger names that CAR (for the mount's message); once the file
 * is back, the reload succeeds and names nothing. */
START_TEST(refresh_names_bad_head)
{
	make_tmpdir();
	rep[0] = open_replica(0, NULL);
	put_json(rep[0], "a", "{\"v\": 1}");
	rep[1] = open_replica(0, NULL); /* the same directory */
	struct lfs_cid car, bad;
	ck_assert_int_eq(lfs_ledger_compact(rep[1], &car), 0);
	lfs_ledger_close(rep[1]);
	char name[LFS_CID_STRLEN + 1], path[600], away[620];
	lfs_cid_to_string(name, &car);
	snprintf(path, sizeof(path), "%s/car/%s", replica_dir(0), name);
	snprintf(away, sizeof(away), "%s.away", path);
	ck_assert_int_eq(rename(path, away), 0);
	bool changed;
	ck_assert_int_eq(lfs_ledger_refresh(rep[0], NULL, NULL, &changed),
			 -ENOENT);
	ck_assert(lfs_ledger_bad_head_record(rep[0], &bad));
	ck_assert(lfs_cid_equal(&bad, &car));
	ck_assert_int_eq(rename(away, path), 0);
	ck_assert_int_eq(lfs_ledger_refresh(rep[0], NULL, NULL, &changed), 0);
	ck_assert(!lfs_ledger_bad_head_record(rep[0], &bad));
	lfs_ledger_close(rep[0]);
	remove_tmpdir();
}
END_TEST

/* A compaction larger than the sidecar threshold opens through its
 * sidecar index; a damaged or missing sidecar is only slower. */
START_TEST(compaction_sidecar)
{
	make_tmpdir();
	rep[0] = open_replica(0, NULL);
	struct lfs_txn *t;
	ck_assert_int_eq(lfs_txn_new(&t), 0);
	char pad[3200];
	memset(pad, 'x', sizeof(pad) - 1);
	pad[sizeof(pad) - 1] = '\0';
	for (int i = 0; i < 1500; i++) {
		char id[16];
		snprintf(id, sizeof(id), "big%d", i);
		json_t *doc = json_pack("{s:i,s:s}", "v", i, "pad", pad);
		ck_assert_int_eq(lfs_txn_put(t, id, doc), 0);
		json_decref(doc);
	}
	ck_assert_int_eq(lfs_ledger_commit(rep[0], t, NULL, NULL), 0);
	lfs_txn_free(t);
	struct lfs_cid car;
	ck_assert_int_eq(lfs_ledger_compact(rep[0], &car), 0);
	lfs_ledger_close(rep[0]);

	char s[LFS_CID_STRLEN + 1], idx[600];
	lfs_cid_to_string(s, &car);
	snprintf(idx, sizeof(idx), "%s/car/%s.idx", replica_dir(0), s);
	ck_assert_int_eq(access(idx, F_OK), 0);
	for (int round = 0; round < 3; round++) {
		if (round == 1) { /* damage it: ignored, rebuilt */
			FILE *f = fopen(idx, "r+");
			ck_assert_ptr_nonnull(f);
			fseek(f, 100, SEEK_SET);
			fputc('!', f);
			fclose(f);
		} else if (round == 2) {
			ck_assert_int_eq(unlink(idx), 0);
		}
		rep[0] = open_replica(0, NULL);
		for (int i = 0; i < 1500; i += 97) {
			char id[16];
			snprintf(id, sizeof(id), "big%d", i);
			ck_assert_int_eq(get_v(rep[0], NULL, id), i);
		}
		ck_assert_int_eq(lfs_ledger_fsck(rep[0], NULL, NULL), 0);
		put_json(rep[0], "after", "{\"v\": 5}");
		ck_assert_int_eq(get_v(rep[0], NULL, "after"), 5);
		lfs_ledger_close(rep[0]);
	}
	remove_tmpdir();
}
END_TEST

struct problems {
	int n;
	char first[512];
};

static void note_problem(void *ctx, const char *what)
{
	struct problems *p = ctx;
	if (!p->n++)
		snprintf(p->first, sizeof(p->first), "%s", what);
}

START_TEST(fsck_names_tampered_file)
{
	make_tmpdir();
	rep[0] = open_replica(0, NULL);
	put_json(rep[0], "a", "{\"v\": 1}");
	put_json(rep[0], "b", "{\"v\": 2}");
	struct lfs_cid *cars;
	size_t n;
	ck_assert_int_eq(lfs_ledger_head_cars(rep[0], &cars, &n), 0);
	char s[LFS_CID_STRLEN + 1];
	lfs_cid_to_string(s, &cars[0]);
	/* A non-durable ledger appends its commits to the segment: find
	 * the record (its CID, its parent, the checksum, then the CAR). */
	long at = segment_find(&cars[0]);
	ck_assert_int_ge(at, 0);
	segment_flip(at + 2 * LFS_CID_BYTES + 16 + 40, 0x20);
	struct problems p = {0};
	ck_assert_int_ge(lfs_ledger_fsck(rep[0], note_problem, &p), 1);
	ck_assert_ptr_nonnull(strstr(p.first, s));
	free(cars);
	lfs_ledger_close(rep[0]);
	remove_tmpdir();
}
END_TEST

/* ---- staged saves (lfs_ledger_stage) ---- */

/* Stage id = {"v": v}, or its delete when v < 0. */
static void stage_v(struct lfs_ledger *l, const char *id, long v)
{
	struct lfs_txn *t;
	ck_assert_int_eq(lfs_txn_new(&t), 0);
	if (v < 0) {
		ck_assert_int_eq(lfs_txn_delete(t, id), 0);
	} else {
		json_t *d = json_pack("{s:I}", "v", (json_int_t)v);
		ck_assert_int_eq(lfs_txn_put(t, id, d), 0);
		json_decref(d);
	}
	ck_assert_int_eq(lfs_ledger_stage(l, t), 0);
	lfs_txn_free(t);
}

/* A handle as the command line opens one: CAR files, not the segment. */
static struct lfs_ledger *open_cli(int i)
{
	struct lfs_ledger_opts o;
	lfs_ledger_opts_init(&o);
	struct lfs_ledger *l;
	ck_assert_int_eq(lfs_ledger_open(&l, replica_dir(i), key, &o, false),
			 0);
	return l;
}

static size_t count_heads(struct lfs_ledger *l)
{
	struct lfs_cid *h;
	size_t n;
	ck_assert_int_eq(lfs_ledger_heads(l, &h, &n), 0);
	free(h);
	return n;
}

/* The intents no fold covers, as the store on disk says. */
static size_t unfolded_intents(int i)
{
	struct lfs_blockstore *bs;
	ck_assert_int_eq(
		lfs_blockstore_open(&bs, replica_dir(i), key, 0, false), 0);
	struct lfs_bs_intent *v;
	size_t n;
	ck_assert_int_eq(lfs_blockstore_intents(&v, &n, bs), 0);
	free(v);
	lfs_blockstore_free(bs);
	return n;
}

/*
 * A staged save reads back at once, by id and in the whole state; an id's
 * last stage wins; another handle (another process) sees them all, and
 * its commits land beside them; what is staged after a fold folds on top.
 */
START_TEST(staged_saves_read_back)
{
	make_tmpdir();
	struct lfs_ledger *l = open_replica(0, NULL);
	stage_v(l, "a", 1);
	stage_v(l, "b", 2);
	stage_v(l, "a", 3);
	stage_v(l, "c", 4);
	stage_v(l, "c", -1);
	ck_assert_int_eq(get_v(l, NULL, "a"), 3);
	ck_assert_int_eq(get_v(l, NULL, "b"), 2);
	ck_assert_int_eq(get_v(l, NULL, "c"), -1);
	stage_v(l, "e", 9);
	struct lfs_cid root;
	lfs_ledger_root(l, &root); /* folds first */
	ck_assert_int_eq(get_v(l, &root, "e"), 9);
	ck_assert(!lfs_ledger_staged(l, "e"));
	stage_v(l, "f", 10);
	struct lfs_ledger *cli = open_cli(0);
	ck_assert_int_eq(get_v(cli, NULL, "a"), 3);
	ck_assert_int_eq(get_v(cli, NULL, "f"), 10);
	put_json(cli, "b", "{\"v\": 20}");
	lfs_ledger_close(cli);
	stage_v(l, "d", 5);
	bool changed;
	ck_assert_int_eq(lfs_ledger_refresh(l, NULL, NULL, &changed), 0);
	ck_assert_int_eq(get_v(l, NULL, "b"), 20);
	ck_assert_int_eq(get_v(l, NULL, "d"), 5);
	ck_assert_int_eq(count_heads(l), 1);
	ck_assert_int_eq(lfs_ledger_fsck(l, NULL, NULL), 0);
	lfs_ledger_close(l);
	ck_assert_int_eq(unfolded_intents(0), 0); /* close folded them */
	l = open_replica(0, NULL);
	ck_assert_int_eq(get_v(l, NULL, "d"), 5);
	ck_assert_int_eq(get_v(l, NULL, "a"), 3);
	lfs_ledger_close(l);
	remove_tmpdir();
}
END_TEST

static char *doc_name(int i)
{
	static char b[32];
	snprintf(b, sizeof(b), "doc%04d", i);
	return b;
}

/*
 * A process that staged saves and died (no close, no fold): whoever takes
 * the lock next, the command line or the mount, folds what it left, once.
 * Rounds with a fold in the middle; at least one round must end with
 * intents not folded, or the test tests nothing.
 */
START_TEST(staged_saves_survive_a_crash)
{
	make_tmpdir();
	long model[400];
	for (int i = 0; i < 400; i++)
		model[i] = -1;
	size_t left = 0;
	srand(_i + 1);
	for (int round = 0; round < 4; round++) {
		int base = round * 100, n = 20 + rand() % 80;
		pid_t pid = fork();
		ck_assert_int_ge(pid, 0);
		if (pid == 0) {
			struct lfs_ledger *l = open_replica(0, NULL);
			for (int i = 0; i < n; i++) {
				stage_v(l, doc_name(base + i), base + i);
				if (i == n / 2)
					lfs_ledger_settle(l);
			}
			if (base)
				stage_v(l, doc_name(base - 100), -1);
			_exit(0); /* as if killed: nothing folds or closes */
		}
		int st;
		ck_assert_int_eq(waitpid(pid, &st, 0), pid);
		ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
		for (int i = 0; i < n; i++)
			model[base + i] = base + i;
		if (base)
			model[base - 100] = -1;
		left += unfolded_intents(0);
		/* Even rounds: the command line comes first; odd: the
		 * mount. */
		struct lfs_ledger *l =
			round % 2 ? open_replica(0, NULL) : open_cli(0);
		for (int i = 0; i < 400; i++)
			ck_assert_int_eq(get_v(l, NULL, doc_name(i)), model[i]);
		ck_assert_int_eq(count_heads(l), 1);
		lfs_ledger_close(l);
		ck_assert_int_eq(unfolded_intents(0), 0);
	}
	ck_assert_uint_gt(left, 0);
	struct lfs_ledger *l = open_replica(0, NULL);
	ck_assert_int_eq(lfs_ledger_fsck(l, NULL, NULL), 0);
	lfs_ledger_close(l);
	remove_tmpdir();
}
END_TEST

/*
 * A crash between a fold's commit and its fold record: the intents fold
 * again onto a root that has them, and change nothing (no new event).
 */
START_TEST(staged_fold_record_lost)
{
	make_tmpdir();
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		struct lfs_ledger *l = open_replica(0, NULL);
		put_json(l, "z", "{\"v\": 0}");
		stage_v(l, "a", 1);
		stage_v(l, "b", 2);
		_exit(lfs_ledger_settle(l) ? 1 : 0); /* no close */
	}
	int ws;
	ck_assert_int_eq(waitpid(pid, &ws, 0), pid);
	ck_assert(WIFEXITED(ws) && WEXITSTATUS(ws) == 0);
	struct lfs_ledger *l = open_cli(0);
	ck_assert_int_eq(count_heads(l), 1);
	struct lfs_cid *h1;
	size_t n1;
	ck_assert_int_eq(lfs_ledger_heads(l, &h1, &n1), 0);
	lfs_ledger_close(l);
	/* Cut the fold record off: the segment's last (76 bytes of header
	 * and sum, 8 of offset), as a crash right before it would. */
	char path[400];
	snprintf(path, sizeof(path), "%s/segment", replica_dir(0));
	struct stat st;
	ck_assert_int_eq(stat(path, &st), 0);
	ck_assert_int_eq(truncate(path, st.st_size - 84), 0);
	/* Both saves, or b alone: the folder thread may have folded a
	 * before b was staged (a busy machine), then b in a fold of its
	 * own, the one cut off. Either way the next open folds again. */
	size_t unfolded = unfolded_intents(0);
	ck_assert(unfolded == 1 || unfolded == 2);
	l = open_cli(0);
	ck_assert_int_eq(get_v(l, NULL, "a"), 1);
	ck_assert_int_eq(get_v(l, NULL, "b"), 2);
	ck_assert_int_eq(get_v(l, NULL, "z"), 0);
	struct lfs_cid *h2;
	size_t n2;
	ck_assert_int_eq(lfs_ledger_heads(l, &h2, &n2), 0);
	ck_assert_int_eq(n2, n1);
	ck_assert(lfs_cid_equal(&h1[0], &h2[0])); /* no new event */
	free(h1);
	free(h2);
	lfs_ledger_close(l);
	ck_assert_int_eq(unfolded_intents(0), 0);
	remove_tmpdir();
}
END_TEST

int main(void)
{
	if (sodium_init() < 0)
		return 1;
	randombytes_buf(key, sizeof(key));
	Suite *s = suite_create("ledger");
	TCase *t = tcase_create("core");
	tcase_set_timeout(t, 300);
	tcase_add_test(t, txn_put_keeps_a_copy);
	tcase_add_test(t, put_get_delete_reopen);
	tcase_add_loop_test(t, replicas_converge, 0, 3);
	tcase_add_loop_test(t, single_writer_histories, 0, 20);
	tcase_add_test(t, ingest_batch);
	tcase_add_test(t, ingest_here);
	tcase_add_test(t, ingest_above_kept);
	tcase_add_test(t, edit_beats_delete);
	tcase_add_test(t, hostile_cars);
	tcase_add_test(t, clock_from_the_future);
	tcase_add_loop_test(t, crash_at_random_points, 0, 3);
	tcase_add_test(t, segment_torn_tail);
	tcase_add_test(t, segment_two_writers_take_turns);
	tcase_add_test(t, segment_damage_in_the_middle);
	tcase_add_test(t, segment_runs);
	tcase_add_test(t, segment_runs_after_damage);
	tcase_add_test(t, compaction);
	tcase_add_test(t, compaction_by_another_process);
	tcase_add_test(t, compaction_sidecar);
	tcase_add_test(t, fsck_names_tampered_file);
	tcase_add_test(t, refresh_names_bad_head);
	tcase_add_test(t, staged_saves_read_back);
	tcase_add_loop_test(t, staged_saves_survive_a_crash, 0, 2);
	tcase_add_test(t, staged_fold_record_lost);
	suite_add_tcase(s, t);
	return lfs_check_run(s);
}
