#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "ledger.h"
#include "ledger_int.h"

#include "errmsg.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <fcntl.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "cbor.h"
#include "cidmap.h"
#include "dagjson.h"
#include "merge.h"

/* Decoded index nodes kept for lookups (stat, read, a commit's checks):
 * room for the leaves of 100,000 documents (~110 bytes an id decoded)
 * beside the superseded paths of recent commits, so that lookups read no
 * block. A mount's budget (membudget.h) bounds it with its other caches. */
#define LEDGER_NODE_CACHE ((size_t)32 << 20)

struct txn_op {
	char *id;
	bool del;
	json_t *doc; /* a put's, taken by lfs_txn_put_new */
	/* A put's block as lfs_txn_put encoded it (doc is NULL then); its
	 * CID once a commit of t got to it (lfs_txn_op_cid). */
	uint8_t *block;
	size_t block_len;
	struct lfs_cid cid;
	bool encoded;
};

struct lfs_txn {
	struct txn_op *ops;
	size_t n, cap;
	/* id -> op: open addressing over indexes into ops (index + 1; 0 is
	 * empty), so a bulk transaction finds a repeated id in O(1). */
	size_t *slots;
	size_t nslots; /* power of two, or 0 */
};

void lfs_ledger_opts_init(struct lfs_ledger_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->durable = true;
}

static int64_t real_now(void *ctx)
{
	(void)ctx;
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* ---- transactions ---- */

static int check_id(const char *id)
{
	size_t n = strlen(id);
	if (n == 0 || n > LFS_INDEX_ID_MAX || !lfs_utf8_valid(id, n))
		return -EINVAL;
	return 0;
}

int lfs_txn_new(struct lfs_txn **out)
{
	*out = calloc(1, sizeof(**out));
	return *out ? 0 : -ENOMEM;
}

void lfs_txn_free(struct lfs_txn *t)
{
	if (!t)
		return;
	for (size_t i = 0; i < t->n; i++) {
		free(t->ops[i].id);
		json_decref(t->ops[i].doc);
		free(t->ops[i].block);
	}
	free(t->ops);
	free(t->slots);
	free(t);
}

size_t lfs_txn_count(const struct lfs_txn *t)
{
	return t->n;
}

static size_t id_hash(const char *id)
{
	uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */
	for (; *id; id++)
		h = (h ^ (uint8_t)*id) * 0x100000001b3ull;
	return (size_t)(h ^ (h >> 29));
}

/* The slot for id: its op's, or the empty one where it would go. */
static size_t *txn_slot(const struct lfs_txn *t, const char *id)
{
	size_t mask = t->nslots - 1;
	for (size_t i = id_hash(id) & mask;; i = (i + 1) & mask) {
		size_t v = t->slots[i];
		if (!v || !strcmp(t->ops[v - 1].id, id))
			return &t->slots[i];
	}
}

/* Rebuild the id table (it grew, or the ops were reordered). */
static int txn_reindex(struct lfs_txn *t, size_t nslots)
{
	size_t *s = calloc(nslots, sizeof(*s));
	if (!s)
		return -ENOMEM;
	free(t->slots);
	t->slots = s;
	t->nslots = nslots;
	for (size_t i = 0; i < t->n; i++)
		*txn_slot(t, t->ops[i].id) = i + 1;
	return 0;
}

static void op_release(struct txn_op *op)
{
	json_decref(op->doc);
	free(op->block);
}

/* Add op as id's, replacing an earlier one; op's contents are taken. */
static int txn_add(struct lfs_txn *t, const char *id, struct txn_op op)
{
	if ((t->n + 1) * 2 > t->nslots &&
	    txn_reindex(t, t->nslots ? t->nslots * 2 : 16)) {
		op_release(&op);
		return -ENOMEM;
	}
	size_t *slot = txn_slot(t, id);
	if (*slot) {
		struct txn_op *old = &t->ops[*slot - 1];
		op_release(old);
		op.id = old->id;
		*old = op;
		return 0;
	}
	if (t->n == t->cap) {
		size_t cap = t->cap ? t->cap * 2 : 8;
		void *p = realloc(t->ops, cap * sizeof(*t->ops));
		if (!p) {
			op_release(&op);
			return -ENOMEM;
		}
		t->ops = p;
		t->cap = cap;
	}
	if (!(op.id = strdup(id))) {
		op_release(&op);
		return -ENOMEM;
	}
	t->ops[t->n++] = op;
	*slot = t->n;
	return 0;
}

/* Can doc be put as id? */
static int check_put(const char *id, const json_t *doc)
{
	int rc = check_id(id);
	if (rc)
		return rc;
	if (!json_is_object(doc))
		return -EINVAL;
	json_t *given = json_object_get(doc, "_id");
	if (given &&
	    (!json_is_string(given) || strcmp(json_string_value(given), id)))
		return -EINVAL;
	return 0;
}

/*
 * Append doc's block to b, without its top-level "_id" when drop_id is
 * set. The decoded tree of a typical document fits the arena's first
 * chunk, on the stack.
 */
static int encode_json(struct lfs_buf *b, const json_t *doc, bool drop_id)
{
	_Alignas(16) unsigned char space[16384];
	struct lfs_arena a;
	lfs_arena_init_buf(&a, 0, space, sizeof(space));
	struct lfs_cbor *v;
	int rc = lfs_dagjson_to_cbor(&v, &a, doc);
	if (!rc && drop_id && v->type == LFS_CBOR_MAP) {
		struct lfs_cbor_pair *p = v->u.map.pairs;
		size_t n = v->u.map.count;
		for (size_t i = 0; i < n; i++) {
			if (p[i].key_len == 3 && !memcmp(p[i].key, "_id", 3)) {
				memmove(&p[i], &p[i + 1],
					(n - i - 1) * sizeof(*p));
				v->u.map.count--;
				break;
			}
		}
	}
	if (!rc)
		rc = lfs_cbor_encode(b, v);
	if (rc == -EFBIG || b->err == -EFBIG)
		rc = -EFBIG;
	lfs_arena_release(&a);
	return rc;
}

/*
 * The copy a put keeps is its block, encoded now: cheaper than a copy of
 * the JSON tree and its release, and the commit does not encode it again.
 */
int lfs_txn_put(struct lfs_txn *t, const char *id, const json_t *doc)
{
	int rc = check_put(id, doc);
	if (rc)
		return rc;
	struct lfs_buf b;
	lfs_buf_init(&b, LFS_DOC_MAX);
	if ((rc = encode_json(&b, doc, true))) {
		lfs_buf_release(&b);
		return rc;
	}
	struct txn_op op = {0};
	op.block = lfs_buf_steal(&b, &op.block_len);
	return op.block ? txn_add(t, id, op) : -ENOMEM;
}

int lfs_txn_put_new(struct lfs_txn *t, const char *id, json_t *doc)
{
	int rc = check_put(id, doc);
	if (rc) {
		json_decref(doc);
		return rc;
	}
	json_object_del(doc, "_id");
	return txn_add(t, id, (struct txn_op){.doc = doc});
}

int lfs_txn_put_block(struct lfs_txn *t, const char *id, const uint8_t *block,
		      size_t len)
{
	int rc = check_id(id);
	if (rc)
		return rc;
	struct txn_op op = {.block = malloc(len ? len : 1), .block_len = len};
	if (!op.block)
		return -ENOMEM;
	memcpy(op.block, block, len);
	return txn_add(t, id, op);
}

/* A put's block: the one encoded at the put, or its document encoded
 * into b. */
static int op_block(const struct txn_op *op, struct lfs_buf *b,
		    const uint8_t **out, size_t *out_len)
{
	if (op->block) {
		*out = op->block;
		*out_len = op->block_len;
		return 0;
	}
	lfs_buf_reset(b);
	int rc = encode_json(b, op->doc, false);
	if (!rc) {
		*out = b->data;
		*out_len = b->len;
	}
	return rc;
}

int lfs_txn_op_block(const struct lfs_txn *t, size_t i, struct lfs_buf *b,
		     const uint8_t **out, size_t *out_len)
{
	return op_block(&t->ops[i], b, out, out_len);
}

bool lfs_txn_op_del(const struct lfs_txn *t, size_t i)
{
	return t->ops[i].del;
}

int lfs_txn_delete(struct lfs_txn *t, const char *id)
{
	int rc = check_id(id);
	return rc ? rc : txn_add(t, id, (struct txn_op){.del = true});
}

const json_t *lfs_txn_op(const struct lfs_txn *t, size_t i, const char **out_id)
{
	*out_id = t->ops[i].id;
	return t->ops[i].doc;
}

/*
 * A document block's JSON in *out (a new reference), with "_id" set to id
 * unless id is NULL: -EBADMSG when the block is not a document.
 */
static int doc_from_block(json_t **out, const uint8_t *p, size_t len,
			  const char *id)
{
	struct lfs_arena a;
	lfs_arena_init(&a, 0);
	struct lfs_cbor *v;
	json_t *j = NULL;
	int rc = lfs_cbor_decode(&v, &a, p, len);
	if (!rc && v->type != LFS_CBOR_MAP)
		rc = -EBADMSG;
	if (rc == -EPROTONOSUPPORT)
		rc = -EBADMSG;
	if (!rc)
		rc = lfs_dagjson_from_cbor(&j, v);
	if (!rc && id && json_object_set_new(j, "_id", json_string(id)))
		rc = -ENOMEM;
	if (rc)
		json_decref(j);
	else
		*out = j;
	lfs_arena_release(&a);
	return rc;
}

int lfs_txn_op_doc(const struct lfs_txn *t, size_t i, json_t **out)
{
	const struct txn_op *op = &t->ops[i];
	*out = NULL;
	if (op->del)
		return 0;
	if (op->doc) {
		*out = json_incref(op->doc);
		return 0;
	}
	return doc_from_block(out, op->block, op->block_len, NULL);
}

void lfs_txn_op_set_cid(struct lfs_txn *t, size_t i, const struct lfs_cid *cid)
{
	t->ops[i].cid = *cid;
	t->ops[i].encoded = true;
}

bool lfs_txn_op_cid(const struct lfs_txn *t, size_t i, struct lfs_cid *out)
{
	if (!t->ops[i].encoded)
		return false;
	*out = t->ops[i].cid;
	return true;
}

/* ---- state ---- */

struct lfs_blocks lfs_ledger_blocks(struct lfs_ledger *l)
{
	return l->blocks;
}

const struct lfs_index *lfs_ledger_index(struct lfs_ledger *l)
{
	return &l->ix;
}

struct lfs_blockstore *lfs_ledger_store(struct lfs_ledger *l)
{
	return l->bs;
}

void lfs_ledger_current_root(struct lfs_ledger *l, struct lfs_cid *out)
{
	pthread_mutex_lock(&l->state_lock);
	*out = l->root;
	pthread_mutex_unlock(&l->state_lock);
}

/* A reader of the whole state folds what is staged first; if that fails
 * (logged by the folder), it reads the state as committed. */
void lfs_ledger_root(struct lfs_ledger *l, struct lfs_cid *out)
{
	lfs_ledger_settle(l);
	lfs_ledger_current_root(l, out);
}

void lfs_ledger_root_for(struct lfs_ledger *l, const char *id,
			 struct lfs_cid *out)
{
	if (lfs_ledger_staged(l, id))
		lfs_ledger_settle(l);
	lfs_ledger_current_root(l, out);
}

static int copy_cids(struct lfs_cid **out, size_t *n, const struct lfs_cid *src,
		     size_t count)
{
	*out = malloc((count + 1) * sizeof(**out));
	if (!*out)
		return -ENOMEM;
	lfs_cid_copy_n(*out, src, count);
	*n = count;
	return 0;
}

static int current_heads(struct lfs_ledger *l, struct lfs_cid **out, size_t *n)
{
	pthread_mutex_lock(&l->state_lock);
	int rc = copy_cids(out, n, l->heads, l->nheads);
	pthread_mutex_unlock(&l->state_lock);
	return rc;
}

static int current_head_cars(struct lfs_ledger *l, struct lfs_cid **out,
			     size_t *n)
{
	pthread_mutex_lock(&l->state_lock);
	int rc = copy_cids(out, n, l->head_cars, l->nhead_cars);
	pthread_mutex_unlock(&l->state_lock);
	return rc;
}

int lfs_ledger_heads(struct lfs_ledger *l, struct lfs_cid **out, size_t *n)
{
	lfs_ledger_settle(l);
	return current_heads(l, out, n);
}

int lfs_ledger_head_cars(struct lfs_ledger *l, struct lfs_cid **out, size_t *n)
{
	lfs_ledger_settle(l);
	return current_head_cars(l, out, n);
}

/* Is event one of the heads a current head CAR records? Which CAR, then. */
static bool held_by_head_car(struct lfs_ledger *l, const struct lfs_cid *event,
			     struct lfs_cid *out)
{
	struct lfs_cid *cars;
	size_t n;
	if (current_head_cars(l, &cars, &n))
		return false;
	bool found = false;
	struct lfs_arena a;
	lfs_arena_init(&a, 0);
	for (size_t i = 0; i < n && !found; i++) {
		struct lfs_car_root r;
		if (lfs_blockstore_load(&r, &a, l->bs, &cars[i], false))
			continue;
		if ((found = lfs_cid_in(r.head, r.nhead, event)))
			*out = cars[i];
	}
	lfs_arena_release(&a);
	free(cars);
	return found;
}

/*
 * Compute and publish the state for a reduced set of heads (takes ownership
 * of heads). Caller holds write_lock.
 */
static int publish(struct lfs_ledger *l, struct lfs_cid *heads, size_t n)
{
	struct lfs_cid root, *cars = calloc(n + 1, sizeof(*cars));
	size_t ncars = 0;
	int64_t max_t = 0;
	int rc = cars ? 0 : -ENOMEM;
	struct lfs_arena a;
	lfs_arena_init(&a, 0);
	for (size_t i = 0; i < n && !rc; i++) {
		struct lfs_event ev;
		struct lfs_cid car;
		if ((rc = lfs_event_load(&ev, &a, &l->blocks, &heads[i])))
			break;
		if (i == 0 || ev.t > max_t)
			max_t = ev.t;
		/* Keep naming the head CAR that holds it, if one does: a CAR
		 * fetched again later (the one a compaction replaced) must
		 * not take the compacted file's place. */
		if (!held_by_head_car(l, &heads[i], &car) &&
		    (rc = lfs_blockstore_car_of(&car, l->bs, &heads[i])))
			break;
		if (!lfs_cid_in(cars, ncars, &car))
			cars[ncars++] = car;
	}
	lfs_arena_release(&a);
	if (!rc)
		rc = lfs_merge_root(&root, &l->ix, &l->blocks, heads, n);
	if (rc) {
		free(cars);
		free(heads);
		return rc;
	}
	pthread_mutex_lock(&l->state_lock);
	free(l->heads);
	free(l->head_cars);
	l->heads = heads;
	l->nheads = n;
	l->head_cars = cars;
	l->nhead_cars = ncars;
	l->root = root;
	l->max_t = max_t;
	pthread_mutex_unlock(&l->state_lock);
	return 0;
}

static int touch_heads(struct lfs_ledger *l);

/*
 * Make the head records on disk name exactly the current head CARs: add the
 * missing ones first, then drop the rest. Caller holds write_lock.
 */
static int sync_head_records(struct lfs_ledger *l, bool durable)
{
	struct lfs_cid *recs;
	size_t nrecs;
	/* No durable record may name a CAR a batch has not fsynced yet. */
	int rc = l->batch_dirty ? lfs_blockstore_sync(l->bs) : 0;
	if (!rc)
		rc = lfs_blockstore_heads(&recs, &nrecs, l->bs);
	if (rc)
		return rc;
	if ((rc = touch_heads(l))) {
		free(recs);
		return rc;
	}
	for (size_t i = 0; i < l->nhead_cars && !rc; i++)
		if (!lfs_cid_in(recs, nrecs, &l->head_cars[i]))
			rc = lfs_blockstore_set_head(l->bs, &l->head_cars[i],
						     recs, 0, durable);
	for (size_t i = 0; i < nrecs && !rc; i++)
		if (!lfs_cid_in(l->head_cars, l->nhead_cars, &recs[i]))
			rc = lfs_blockstore_drop_head(l->bs, &recs[i]);
	free(recs);
	if (!rc)
		l->batch_dirty = false;
	return rc;
}

/*
 * Take the ledger for writing: this thread (write_lock, held by the caller)
 * and this process (an exclusive flock on DIR/lock, unless staged saves
 * hold it already), then pick up heads that other processes committed
 * since we last looked, so a commit names them as parents and the head
 * records we tidy are all known to us, and fold every intent no fold
 * record covers (ours, or a crashed process's), so what this writer
 * commits comes after them. Saves may be staged meanwhile: they wait
 * for the next fold.
 */
static int refresh_heads(struct lfs_ledger *l);
static void unlock_writer(struct lfs_ledger *l);

static int lock_writer(struct lfs_ledger *l)
{
	int rc = 0;
	pthread_mutex_lock(&l->intent_lock);
	while (!l->flock_held && flock(l->lock_fd, LOCK_EX))
		if (errno != EINTR) {
			rc = -errno;
			break;
		}
	if (!rc)
		l->flock_held = l->writing = true;
	pthread_mutex_unlock(&l->intent_lock);
	if (rc)
		return rc;
	l->touched_heads = l->own_commit = false;
	rc = refresh_heads(l);
	if (!rc)
		rc = lfs_stage_fold_locked(l);
	if (rc)
		unlock_writer(l);
	return rc;
}

/*
 * The head records' stamp: a generation count kept in the first 8 bytes
 * of DIR/lock, which every writer bumps, holding the lock, BEFORE it
 * changes a head record or the segment (touch_heads). So whatever a
 * writer leaves behind, even killed halfway, the count has moved, and a
 * process whose stamp still matches knows without a look at the files
 * that the heads on disk are those it knows. The page is mapped shared:
 * reading the stamp, and bumping it, cost no system call (flock orders
 * the accesses between processes); pread and pwrite when it cannot be
 * mapped.
 */
static int read_gen(struct lfs_ledger *l, uint64_t *out)
{
	if (l->gen_map) {
		*out = __atomic_load_n(l->gen_map, __ATOMIC_ACQUIRE);
		return 0;
	}
	uint64_t g = 0;
	ssize_t r = pread(l->lock_fd, &g, sizeof(g), 0);
	if (r < 0)
		return -errno;
	*out = r == (ssize_t)sizeof(g) ? g : 0; /* a new (empty) lock file */
	return 0;
}

/* The stamp the heads we hold are as of: read without a lock by
 * lfs_ledger_refresh's quick look, set under intent_lock. */
static int64_t get_heads_stamp(struct lfs_ledger *l)
{
	return __atomic_load_n(&l->heads_stamp, __ATOMIC_ACQUIRE);
}

static void set_heads_stamp(struct lfs_ledger *l, int64_t v)
{
	__atomic_store_n(&l->heads_stamp, v, __ATOMIC_RELEASE);
}

static int heads_stamp(struct lfs_ledger *l, int64_t *out)
{
	uint64_t g;
	int rc = read_gen(l, &g);
	if (!rc)
		*out = (int64_t)(g &
				 INT64_MAX); /* never INT64_MIN: "unknown" */
	return rc;
}

/* Map DIR/lock's count (best effort: without it, pread and pwrite). */
static void map_gen(struct lfs_ledger *l)
{
	struct stat st;
	if (fstat(l->lock_fd, &st) || (st.st_size < (off_t)sizeof(uint64_t) &&
				       ftruncate(l->lock_fd, sizeof(uint64_t))))
		return;
	void *m = mmap(NULL, sizeof(uint64_t), PROT_READ | PROT_WRITE,
		       MAP_SHARED, l->lock_fd, 0);
	if (m != MAP_FAILED)
		l->gen_map = m;
}

/*
 * About to change the head records or the segment (the caller holds the
 * writer lock): bump the count first, once per hold of the lock.
 */
/* Bump DIR/lock's count (the caller holds the flock): the new value in
 * *out. */
static int bump_gen(struct lfs_ledger *l, uint64_t *out)
{
	uint64_t g;
	int rc = read_gen(l, &g);
	if (rc)
		return rc;
	g++;
	if (l->gen_map)
		__atomic_store_n(l->gen_map, g, __ATOMIC_RELEASE);
	else if (pwrite(l->lock_fd, &g, sizeof(g), 0) != (ssize_t)sizeof(g))
		return errno ? -errno : -EIO;
	*out = g;
	return 0;
}

static int touch_heads(struct lfs_ledger *l)
{
	if (l->touched_heads)
		return 0;
	int rc = bump_gen(l, &l->touched_gen);
	if (!rc)
		l->touched_heads = true;
	return rc;
}

int lfs_ledger_hold_locked(struct lfs_ledger *l)
{
	if (l->flock_held)
		return 0;
	while (flock(l->lock_fd, LOCK_EX))
		if (errno != EINTR)
			return -errno;
	uint64_t g;
	int rc = bump_gen(l, &g);
	if (rc) {
		flock(l->lock_fd, LOCK_UN);
		return rc;
	}
	/* Intents change no head: when we knew the heads before, we still
	 * do (and our own refresh need not reload them), and nobody else
	 * changes them while we hold the lock. */
	bool current = get_heads_stamp(l) == (int64_t)((g - 1) & INT64_MAX);
	if (current)
		set_heads_stamp(l, (int64_t)(g & INT64_MAX));
	__atomic_store_n(&l->held_current, current, __ATOMIC_RELEASE);
	l->flock_held = true;
	return 0;
}

void lfs_ledger_unhold_locked(struct lfs_ledger *l)
{
	if (!l->flock_held)
		return;
	lfs_blockstore_segment_known(l->bs, false);
	flock(l->lock_fd, LOCK_UN);
	l->flock_held = false;
	__atomic_store_n(&l->held_current, false, __ATOMIC_RELEASE);
}

static void unlock_writer(struct lfs_ledger *l)
{
	/* When the change was our own commit whose state is published,
	 * note the new stamp as seen: the next commit need not list and
	 * reload the records it wrote itself. */
	if (l->touched_heads)
		set_heads_stamp(
			l, l->own_commit ? (int64_t)(l->touched_gen & INT64_MAX)
					 : INT64_MIN); /* reload */
	l->touched_heads = l->own_commit = false;
	/* What we knew of the segment holds only while we hold the lock,
	 * which staged saves keep until they are folded. */
	pthread_mutex_lock(&l->intent_lock);
	l->writing = false;
	if (!l->nstaged)
		lfs_ledger_unhold_locked(l);
	pthread_mutex_unlock(&l->intent_lock);
	lfs_stage_report(l);
}

int lfs_ledger_lock_writer(struct lfs_ledger *l)
{
	return lock_writer(l);
}

void lfs_ledger_unlock_writer(struct lfs_ledger *l)
{
	unlock_writer(l);
}

/* Events named by the head records on disk, plus the current heads. */
static int heads_on_disk(struct lfs_ledger *l, struct lfs_cid **out,
			 size_t *out_n)
{
	struct lfs_cid *recs = NULL, *events = NULL;
	size_t nrecs = 0, nev = 0, bad = SIZE_MAX;
	struct lfs_arena a;
	lfs_arena_init(&a, 0);
	int rc = lfs_blockstore_heads(&recs, &nrecs, l->bs);
	pthread_mutex_lock(&l->state_lock);
	if (!rc && !(events = malloc((l->nheads + 1) * sizeof(*events))))
		rc = -ENOMEM;
	if (!rc) {
		lfs_cid_copy_n(events, l->heads, l->nheads);
		nev = l->nheads;
	}
	pthread_mutex_unlock(&l->state_lock);
	for (size_t i = 0; i < nrecs && !rc; i++) {
		struct lfs_car_root r;
		struct lfs_arena_mark m = lfs_arena_mark(&a);
		/* A record whose CAR file is missing or damaged is an error,
		 * never a reason to drop the record: fsck names the file. */
		if ((rc = lfs_blockstore_load(&r, &a, l->bs, &recs[i], false)))
			bad = i;
		void *p = rc ? NULL
			     : realloc(events,
				       (nev + r.nhead + 1) * sizeof(*events));
		if (!rc && !p)
			rc = -ENOMEM;
		if (!rc) {
			events = p;
			lfs_cid_copy_n(events + nev, r.head, r.nhead);
			nev += r.nhead;
		}
		lfs_arena_rewind(&a, m);
	}
	pthread_mutex_lock(&l->state_lock);
	l->has_bad_head = bad != SIZE_MAX;
	if (l->has_bad_head)
		l->bad_head = recs[bad];
	pthread_mutex_unlock(&l->state_lock);
	free(recs);
	lfs_arena_release(&a);
	if (rc) {
		free(events);
		return rc;
	}
	*out = events;
	*out_n = nev;
	return 0;
}

static int publish(struct lfs_ledger *l, struct lfs_cid *heads, size_t n);

/*
 * The heads did not move, but another process may have rewritten the head
 * records (a compaction: one CAR now holds them all). Take the records
 * that hold only current heads as the head CARs, when together they hold
 * every head, so what we push and name as parents is that file.
 */
static int adopt_head_records(struct lfs_ledger *l)
{
	struct lfs_cid *recs, *heads, *cars = NULL;
	size_t nrecs, nheads, ncars = 0, covered = 0;
	int rc = lfs_blockstore_heads(&recs, &nrecs, l->bs);
	if (rc)
		return rc;
	if ((rc = current_heads(l, &heads, &nheads))) {
		free(recs);
		return rc;
	}
	bool *held = calloc(nheads + 1, sizeof(*held));
	cars = calloc(nrecs + 1, sizeof(*cars));
	if (!held || !cars)
		rc = -ENOMEM;
	struct lfs_arena a;
	lfs_arena_init(&a, 0);
	for (size_t i = 0; i < nrecs && !rc; i++) {
		struct lfs_car_root r;
		if (lfs_blockstore_load(&r, &a, l->bs, &recs[i], false))
			continue; /* fsck names it; the heads stand */
		bool only_heads = r.nhead > 0;
		for (size_t k = 0; k < r.nhead && only_heads; k++)
			only_heads = lfs_cid_in(heads, nheads, &r.head[k]);
		if (!only_heads)
			continue;
		cars[ncars++] = recs[i];
		for (size_t k = 0; k < nheads; k++)
			if (!held[k] &&
			    lfs_cid_in(r.head, r.nhead, &heads[k])) {
				held[k] = true;
				covered++;
			}
	}
	lfs_arena_release(&a);
	pthread_mutex_lock(&l->state_lock);
	bool differ = ncars != l->nhead_cars;
	for (size_t i = 0; !differ && i < ncars; i++)
		differ = !lfs_cid_in(l->head_cars, l->nhead_cars, &cars[i]);
	if (!rc && covered == nheads && nheads && differ) {
		free(l->head_cars);
		l->head_cars = cars;
		l->nhead_cars = ncars;
		cars = NULL;
	}
	pthread_mutex_unlock(&l->state_lock);
	free(cars);
	free(held);
	free(heads);
	free(recs);
	return rc;
}

static int refresh_heads(struct lfs_ledger *l)
{
	int64_t stamp;
	int rc = heads_stamp(l, &stamp);
	/* Unchanged: the segment too is as we left it. */
	lfs_blockstore_segment_known(l->bs, !rc && stamp == get_heads_stamp(l));
	if (rc || stamp == get_heads_stamp(l))
		return rc;
	struct lfs_cid *events;
	size_t nev;
	if ((rc = heads_on_disk(l, &events, &nev)))
		return rc;
	int n = lfs_clock_reduce(&l->blocks, events, nev);
	if (n < 0) {
		free(events);
		return n;
	}
	pthread_mutex_lock(&l->state_lock);
	bool same = (size_t)n == l->nheads;
	for (int i = 0; same && i < n; i++)
		same = lfs_cid_equal(&events[i], &l->heads[i]);
	pthread_mutex_unlock(&l->state_lock);
	if (same) {
		free(events);
		rc = adopt_head_records(l);
	} else {
		rc = publish(l, events, (size_t)n);
	}
	if (rc)
		return rc;
	set_heads_stamp(l, stamp);
	return 0;
}

bool lfs_ledger_bad_head_record(struct lfs_ledger *l, struct lfs_cid *out)
{
	pthread_mutex_lock(&l->state_lock);
	bool bad = l->has_bad_head;
	if (bad)
		*out = l->bad_head;
	pthread_mutex_unlock(&l->state_lock);
	return bad;
}

int lfs_ledger_refresh(struct lfs_ledger *l, struct lfs_cid *out_before,
		       struct lfs_cid *out_after, bool *out_changed)
{
	*out_changed = false;
	int64_t stamp;
	int rc = heads_stamp(l, &stamp);
	if (rc)
		return rc;
	/* Unchanged: no lock (a fold may hold write_lock a while). Nor
	 * while staged saves hold the lock since a time the heads were
	 * known: the stamp moves with our own folds only. */
	if (stamp == get_heads_stamp(l) ||
	    __atomic_load_n(&l->held_current, __ATOMIC_ACQUIRE))
		return 0;
	pthread_mutex_lock(&l->write_lock);
	if (stamp == get_heads_stamp(l)) {
		pthread_mutex_unlock(&l->write_lock);
		return 0;
	}
	struct lfs_cid before, after;
	lfs_ledger_current_root(l, &before);
	if (!(rc = lock_writer(l)))
		unlock_writer(l);
	lfs_ledger_current_root(l, &after);
	pthread_mutex_unlock(&l->write_lock);
	if (out_before)
		*out_before = before;
	if (out_after)
		*out_after = after;
	*out_changed = !lfs_cid_equal(&before, &after);
	return rc;
}

int lfs_ledger_open(struct lfs_ledger **out, const char *dir,
		    const uint8_t key[LFS_KEY_BYTES],
		    const struct lfs_ledger_opts *opts, bool create)
{
	struct lfs_ledger_opts defaults;
	if (!opts) {
		lfs_ledger_opts_init(&defaults);
		opts = &defaults;
	}
	struct lfs_ledger *l = calloc(1, sizeof(*l));
	if (!l)
		return -ENOMEM;
	pthread_mutex_init(&l->write_lock, NULL);
	pthread_mutex_init(&l->state_lock, NULL);
	lfs_stage_init(l);
	lfs_buf_init(&l->docbuf, LFS_DOC_MAX);
	l->durable = opts->durable;
	l->segment = opts->segment || !opts->durable;
	l->now_us = opts->now_us ? opts->now_us : real_now;
	l->now_ctx = opts->now_ctx;
	if (opts->writer) {
		if (strlen(opts->writer) > LFS_WRITER_MAX) {
			free(l);
			return -EINVAL;
		}
		strcpy(l->writer, opts->writer);
	} else {
		uint8_t r[8];
		randombytes_buf(r, sizeof(r));
		sodium_bin2hex(l->writer, sizeof(l->writer), r, sizeof(r));
	}
	int rc = lfs_blockstore_open(&l->bs, dir, key, opts->cache_bytes,
				     create);
	if (rc) {
		free(l);
		return rc;
	}
	l->blocks = lfs_blockstore_blocks(l->bs);
	uint8_t salt[LFS_SALT_BYTES];
	lfs_envelope_subkey(salt, sizeof(salt), key, "ledgerfs index salt v1");
	lfs_index_init(&l->ix, l->blocks, salt);
	/* Best effort: without it, lookups decode every node they pass. */
	if (lfs_index_cache_new(&l->ix.cache, LEDGER_NODE_CACHE))
		l->ix.cache = NULL;
	else
		lfs_index_cache_share(l->ix.cache, opts->budget);
	lfs_blockstore_share(l->bs, opts->budget);

	l->lock_fd = l->open_fd = -1;
	char *lp = malloc(strlen(dir) + 16), *op = malloc(strlen(dir) + 16);
	if (lp && op) {
		sprintf(lp, "%s/lock", dir);
		sprintf(op, "%s/open.lock", dir);
		l->lock_fd = open(lp, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
		l->open_fd = open(op, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	}
	rc = !lp || !op                         ? -ENOMEM
	     : l->lock_fd < 0 || l->open_fd < 0 ? -errno
						: 0;
	free(lp);
	free(op);
	if (!rc && flock(l->open_fd, LOCK_SH))
		rc = -errno;
	if (!rc)
		map_gen(l);
	struct lfs_cid *none = rc ? NULL : malloc(sizeof(*none));
	if (!rc && !none)
		rc = -ENOMEM;
	if (!rc)
		rc = publish(l, none, 0); /* empty until the heads load */
	set_heads_stamp(l, INT64_MIN);
	pthread_mutex_lock(&l->write_lock);
	if (!rc && !(rc = lock_writer(l))) {
		/* Drop records a crash left behind (superseded heads). */
		struct lfs_cid *recs;
		size_t nrecs;
		if (!(rc = lfs_blockstore_heads(&recs, &nrecs, l->bs))) {
			if (nrecs != l->nhead_cars)
				rc = sync_head_records(l, true);
			free(recs);
		}
		unlock_writer(l);
	}
	pthread_mutex_unlock(&l->write_lock);
	if (rc) {
		lfs_ledger_close(l);
		return rc;
	}
	*out = l;
	return 0;
}

void lfs_ledger_close(struct lfs_ledger *l)
{
	if (!l)
		return;
	/* Staged saves are folded (lock_writer), then a durability point:
	 * what this process appended is made durable and marked so, so the
	 * next open re-hashes none of it. A fold that fails leaves its
	 * intents to the next process that takes the lock. */
	lfs_stage_stop(l);
	pthread_mutex_lock(&l->write_lock);
	if (l->lock_fd >= 0 && lock_writer(l) == 0) {
		/* The mark moves the segment's end: others must look. A
		 * process that only read may leave a resume point. */
		bool appended = lfs_blockstore_appended(l->bs);
		if (!appended || !touch_heads(l))
			lfs_blockstore_checkpoint(l->bs);
		unlock_writer(l);
	}
	pthread_mutex_unlock(&l->write_lock);
	lfs_blockstore_sync(l->bs);
	lfs_blockstore_free(l->bs);
	lfs_index_cache_free(l->ix.cache);
	if (l->gen_map)
		munmap(l->gen_map, sizeof(*l->gen_map));
	if (l->lock_fd >= 0)
		close(l->lock_fd);
	if (l->open_fd >= 0)
		close(l->open_fd);
	free(l->heads);
	free(l->head_cars);
	free(l->pending);
	lfs_buf_release(&l->docbuf);
	lfs_stage_release(l);
	pthread_mutex_destroy(&l->write_lock);
	pthread_mutex_destroy(&l->state_lock);
	free(l);
}

/* ---- reads ---- */

int lfs_ledger_load_doc(struct lfs_ledger *l, const struct lfs_cid *doc,
			const char *id, json_t **out)
{
	struct lfs_buf b;
	lfs_buf_init(&b, LFS_DOC_MAX);
	int rc = lfs_blocks_get(&l->blocks, &b, doc);
	/* The index names it: a block that is not here is damage (a CAR
	 * lost), never "no such document". */
	if (rc == -ENOENT)
		rc = -EIO;
	if (!rc)
		rc = doc_from_block(out, b.data, b.len, id);
	lfs_buf_release(&b);
	return rc;
}

int lfs_ledger_get(struct lfs_ledger *l, const struct lfs_cid *root,
		   const char *id, struct lfs_index_entry *out_entry,
		   struct lfs_arena *a, json_t **out_doc)
{
	struct lfs_cid r;
	if (root)
		r = *root;
	else
		lfs_ledger_root_for(l, id, &r);
	struct lfs_index_entry e;
	int rc = lfs_index_get(&e, a, &l->ix, &r, id, strlen(id));
	if (rc)
		return rc;
	if (out_doc && (rc = lfs_ledger_load_doc(l, &e.cur.doc, id, out_doc)))
		return rc;
	if (out_entry)
		*out_entry = e;
	return 0;
}

int lfs_ledger_event_root(struct lfs_ledger *l, const struct lfs_cid *event,
			  struct lfs_cid *out)
{
	struct lfs_arena a;
	lfs_arena_init(&a, 0);
	struct lfs_event ev;
	int rc = lfs_event_load(&ev, &a, &l->blocks, event);
	if (!rc)
		*out = ev.root;
	lfs_arena_release(&a);
	return rc;
}

/* ---- commit ---- */

/*
 * The blocks a new CAR must carry: those only in memory. A block that is
 * not is in a CAR file of the history, which the new CAR's root reaches
 * through "cars", and so is everything under it: the walk skips it.
 */
struct gather {
	struct lfs_ledger *l;
	struct lfs_cid *v; /* inl, until it outgrows it */
	size_t n, cap;
	/* The blocks in v, once there are more than GATHER_SCAN: a commit's
	 * few are told apart by a scan, with no allocation. */
	struct lfs_cidmap seen;
	bool all; /* compaction: take persisted blocks too */
	struct lfs_cid inl[16];
};

#define GATHER_SCAN 32

static bool gather_has(struct gather *g, const struct lfs_cid *c)
{
	if (g->n > GATHER_SCAN)
		return lfs_cidmap_get(&g->seen, c, NULL);
	for (size_t i = 0; i < g->n; i++)
		if (lfs_cid_equal(&g->v[i], c))
			return true;
	return false;
}

static int gather_add(struct gather *g, const struct lfs_cid *c)
{
	if (!g->all && !lfs_blockstore_in_memory(g->l->bs, c))
		return 1;
	if (gather_has(g, c))
		return 1;
	if (g->n == g->cap) {
		size_t cap = g->cap ? g->cap * 2 : 64;
		struct lfs_cid *p = g->v == g->inl
					    ? malloc(cap * sizeof(*p))
					    : realloc(g->v, cap * sizeof(*p));
		if (!p)
			return -ENOMEM;
		if (g->v == g->inl)
			lfs_cid_copy_n(p, g->inl, g->n);
		g->v = p;
		g->cap = cap;
	}
	g->v[g->n++] = *c;
	if (g->n == GATHER_SCAN + 1) {
		for (size_t i = 0; i < g->n; i++)
			if (lfs_cidmap_set(&g->seen, &g->v[i], 0))
				return -ENOMEM;
	} else if (g->n > GATHER_SCAN + 1 && lfs_cidmap_set(&g->seen, c, 0)) {
		return -ENOMEM;
	}
	return 0;
}

static void gather_init(struct gather *g, struct lfs_ledger *l, bool all)
{
	g->l = l;
	g->v = g->inl;
	g->n = 0;
	g->cap = sizeof(g->inl) / sizeof(g->inl[0]);
	lfs_cidmap_init(&g->seen);
	g->all = all;
}

static int gather_node(void *ctx, const struct lfs_cid *node)
{
	return gather_add(ctx, node);
}

static int gather_entry(void *ctx, const struct lfs_index_entry *e)
{
	int rc = gather_add(ctx, &e->cur.doc);
	for (size_t i = 0; rc >= 0 && i < e->nconflicts; i++)
		rc = gather_add(ctx, &e->conflicts[i].doc);
	return rc < 0 ? rc : 0;
}

static void gather_release(struct gather *g)
{
	if (g->v != g->inl)
		free(g->v);
	lfs_cidmap_release(&g->seen);
}

/*
 * Op's block into the ledger's blocks: the one lfs_txn_put encoded, or
 * doc's, encoded into the ledger's buffer (kept between commits, up to
 * 1 MiB), so a commit of a few KiB calls malloc for neither. Caller holds
 * write_lock.
 */
static int put_doc_block(struct lfs_cid *out, struct lfs_ledger *l,
			 const struct txn_op *op)
{
	const uint8_t *p;
	size_t n;
	struct lfs_buf *b = &l->docbuf;
	int rc = op_block(op, b, &p, &n);
	if (!rc) {
		lfs_cid_of(out, LFS_CODEC_DAG_CBOR, p, n);
		rc = lfs_blocks_put(&l->blocks, out, p, n);
	}
	if (b->cap > ((size_t)1 << 20))
		lfs_buf_release(b);
	return rc;
}

static int txn_op_cmp(const void *x, const void *y)
{
	const struct txn_op *a = x, *b = y;
	return strcmp(a->id, b->id);
}

/*
 * Write one event with parents = current heads, the given ops applied to
 * the current root. Caller holds write_lock.
 */
static int commit_locked(struct lfs_ledger *l, struct lfs_op *ops, size_t nops,
			 struct lfs_index_change *changes,
			 struct lfs_cid *out_event)
{
	pthread_mutex_lock(&l->state_lock);
	struct lfs_cid root = l->root;
	int64_t max_t = l->max_t;
	struct lfs_cid *parents, *parent_cars;
	size_t np, npc;
	int rc = copy_cids(&parents, &np, l->heads, l->nheads);
	if (!rc &&
	    (rc = copy_cids(&parent_cars, &npc, l->head_cars, l->nhead_cars)))
		free(parents);
	pthread_mutex_unlock(&l->state_lock);
	if (rc)
		return rc;

	int64_t t = l->now_us(l->now_ctx);
	if (t < 0)
		t = 0;
	if (np && t <= max_t)
		t = max_t + 1;
	if (t > LFS_CLOCK_T_MAX) {
		rc = -EOVERFLOW; /* a local clock past the year 2255 */
		free(parents);
		free(parent_cars);
		return rc;
	}
	for (size_t i = 0; i < nops; i++) {
		if (!changes[i].entry)
			continue;
		struct lfs_index_entry *e =
			(struct lfs_index_entry *)changes[i].entry;
		e->cur.t = t;
	}
	struct lfs_event ev = {.parents = parents,
			       .nparents = np,
			       .t = t,
			       .writer = l->writer,
			       .ops = ops,
			       .nops = nops};
	struct lfs_buf eb;
	lfs_buf_init(&eb, 0);
	struct gather g;
	gather_init(&g, l, false);
	struct lfs_cid car, event;
	if ((rc = lfs_index_apply(&ev.root, &l->ix, &root, changes, nops)) ||
	    (rc = lfs_event_encode(&eb, &ev)))
		goto out;
	lfs_cid_of(&event, LFS_CODEC_DAG_CBOR, eb.data, eb.len);
	if ((rc = lfs_blocks_put(&l->blocks, &event, eb.data, eb.len)))
		goto out;
	if ((rc = gather_add(&g, &event)) < 0)
		goto out;
	for (size_t i = 0; i < nops; i++)
		if (!ops[i].del && (rc = gather_add(&g, &ops[i].doc)) < 0)
			goto out;
	if ((rc = lfs_index_nodes(&l->ix, &ev.root, gather_node, NULL, &g)))
		goto out;
	struct lfs_car_root cr = {
		.cars = parent_cars, .ncars = npc, .head = &event, .nhead = 1};
	if ((l->batch_dirty && (rc = lfs_blockstore_sync(l->bs))) ||
	    (rc = touch_heads(l)))
		goto out;
	if (l->segment) {
		/* The CAR and its head record, one record of the segment;
		 * a durable commit's fdatasync happens after the locks. */
		if ((rc = lfs_blockstore_append_car(&car, l->bs, &cr, g.v, g.n,
						    parent_cars, npc, false)))
			goto out;
	} else if ((rc = lfs_blockstore_write_car(&car, l->bs, &cr, g.v, g.n,
						  l->durable)) ||
		   (rc = lfs_blockstore_set_head(l->bs, &car, parent_cars, npc,
						 l->durable))) {
		goto out;
	}
	struct lfs_cid *h = malloc(sizeof(*h)), *hc = malloc(sizeof(*hc));
	if (!h || !hc) {
		free(h);
		free(hc);
		rc = -ENOMEM;
		goto out;
	}
	*h = event;
	*hc = car;
	pthread_mutex_lock(&l->state_lock);
	free(l->heads);
	free(l->head_cars);
	l->heads = h;
	l->nheads = 1;
	l->head_cars = hc;
	l->nhead_cars = 1;
	l->root = ev.root;
	l->max_t = t;
	pthread_mutex_unlock(&l->state_lock);
	l->own_commit = true;
	if (out_event)
		*out_event = event;
out:
	gather_release(&g);
	lfs_buf_release(&eb);
	free(parents);
	free(parent_cars);
	return rc;
}

/*
 * t's ops against the current root: the changes to commit (ops that change
 * nothing dropped) in ops, ch and ents (t->n + 1 each), their count in
 * *out_n. Caller holds write_lock.
 */
static int plan_commit(struct lfs_ledger *l, struct lfs_txn *t,
		       struct lfs_op *ops, struct lfs_index_change *ch,
		       struct lfs_index_entry *ents, struct lfs_arena *a,
		       size_t *out_n)
{
	struct lfs_cid root;
	lfs_ledger_current_root(l, &root);
	size_t n = 0;
	int rc = 0;
	for (size_t i = 0; i < t->n && !rc; i++) {
		struct lfs_op *op = &ops[n];
		op->id = t->ops[i].id;
		op->id_len = strlen(op->id);
		op->del = t->ops[i].del;
		if (!op->del && (rc = put_doc_block(&op->doc, l, &t->ops[i])))
			break;
		t->ops[i].cid = op->doc;
		t->ops[i].encoded = !op->del;
		struct lfs_index_entry cur;
		rc = lfs_index_get(&cur, a, &l->ix, &root, op->id, op->id_len);
		if (rc && rc != -ENOENT)
			break;
		bool exists = rc == 0;
		rc = 0;
		if (op->del ? !exists
			    : exists && !cur.nconflicts &&
				      lfs_cid_equal(&cur.cur.doc, &op->doc))
			continue; /* changes nothing */
		ch[n].id = op->id;
		ch[n].id_len = op->id_len;
		if (!op->del) {
			ents[n].id = op->id;
			ents[n].id_len = op->id_len;
			ents[n].cur.doc = op->doc;
			ents[n].cur.writer = l->writer;
			ch[n].entry = &ents[n];
		}
		n++;
	}
	*out_n = n;
	return rc;
}

int lfs_ledger_commit_locked(struct lfs_ledger *l, struct lfs_txn *t,
			     struct lfs_cid *out_event, bool *out_committed)
{
	*out_committed = false;
	if (t->n > LFS_EVENT_MAX_OPS)
		return -E2BIG;
	if (t->n) {
		qsort(t->ops, t->n, sizeof(*t->ops), txn_op_cmp);
		if (txn_reindex(t, t->nslots))
			return -ENOMEM;
	}
	struct lfs_op *ops = calloc(t->n + 1, sizeof(*ops));
	struct lfs_index_change *ch = calloc(t->n + 1, sizeof(*ch));
	struct lfs_index_entry *ents = calloc(t->n + 1, sizeof(*ents));
	struct lfs_arena a;
	lfs_arena_init(&a, 0);
	int rc = ops && ch && ents ? 0 : -ENOMEM;
	size_t mark = lfs_blockstore_fresh_mark(l->bs);
	size_t n = 0;
	if (!rc)
		rc = plan_commit(l, t, ops, ch, ents, &a, &n);
	if (!rc) {
		pthread_mutex_lock(&l->state_lock);
		size_t nheads = l->nheads;
		struct lfs_cid head =
			nheads ? l->heads[0] : (struct lfs_cid){0};
		pthread_mutex_unlock(&l->state_lock);
		if (n == 0 && nheads <= 1) {
			if (out_event && nheads)
				*out_event = head;
		} else if (!(rc = commit_locked(l, ops, n, ch, out_event))) {
			*out_committed = true;
		}
	}
	if (rc)
		lfs_blockstore_fresh_rewind(l->bs, mark);
	lfs_arena_release(&a);
	free(ops);
	free(ch);
	free(ents);
	return rc;
}

int lfs_ledger_commit(struct lfs_ledger *l, struct lfs_txn *t,
		      struct lfs_cid *out_event, bool *out_committed)
{
	if (out_committed)
		*out_committed = false;
	bool did = false;
	pthread_mutex_lock(&l->write_lock);
	int rc = lock_writer(l);
	if (!rc) {
		rc = lfs_ledger_commit_locked(l, t, out_event, &did);
		unlock_writer(l);
	}
	pthread_mutex_unlock(&l->write_lock);
	/* Group commit: with the locks released, other threads append
	 * while this one waits for an fdatasync that covers them too. */
	if (did && l->segment && l->durable)
		rc = lfs_blockstore_sync(l->bs);
	if (did && !rc && out_committed)
		*out_committed = true;
	return rc;
}

int lfs_ledger_merge(struct lfs_ledger *l, struct lfs_cid *out_event,
		     bool *out_committed)
{
	struct lfs_txn empty = {0};
	return lfs_ledger_commit(l, &empty, out_event, out_committed);
}

int lfs_ledger_sync(struct lfs_ledger *l)
{
	int rc = lfs_ledger_settle(l);
	return rc ? rc : lfs_blockstore_sync(l->bs);
}

/* ---- replication ---- */

/*
 * Note events a batch applied. An event that names a pending one as its
 * parent replaces it, so a chain keeps the list short. Caller holds
 * write_lock.
 */
static int add_pending(struct lfs_ledger *l, struct lfs_arena *a,
		       const struct lfs_cid *events, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		struct lfs_event ev;
		struct lfs_arena_mark m = lfs_arena_mark(a);
		int rc = lfs_event_load(&ev, a, &l->blocks, &events[i]);
		if (rc)
			return rc;
		size_t k = 0;
		for (size_t j = 0; j < l->npending; j++)
			if (!lfs_cid_in(ev.parents, ev.nparents,
					&l->pending[j]) &&
			    !lfs_cid_equal(&l->pending[j], &events[i]))
				l->pending[k++] = l->pending[j];
		l->npending = k;
		lfs_arena_rewind(a, m);
		if (l->npending == l->pending_cap) {
			size_t cap = l->pending_cap ? l->pending_cap * 2 : 16;
			void *p =
				realloc(l->pending, cap * sizeof(*l->pending));
			if (!p)
				return -ENOMEM;
			l->pending = p;
			l->pending_cap = cap;
		}
		l->pending[l->npending++] = events[i];
	}
	return 0;
}

/*
 * The events the history ends in: the heads, and those the current batch
 * applied (pending), malloc'd into *out. Caller holds write_lock.
 */
static int history_tips(struct lfs_ledger *l, struct lfs_cid **out,
			size_t *out_n)
{
	pthread_mutex_lock(&l->state_lock);
	size_t n = l->nheads + l->npending;
	struct lfs_cid *v = malloc((n + 1) * sizeof(*v));
	if (v) {
		lfs_cid_copy_n(v, l->heads, l->nheads);
		lfs_cid_copy_n(v + l->nheads, l->pending, l->npending);
	}
	pthread_mutex_unlock(&l->state_lock);
	if (!v)
		return -ENOMEM;
	*out = v;
	*out_n = n;
	return 0;
}

/* End of a batch: the heads and the state take in what it applied. */
static int apply_pending(struct lfs_ledger *l)
{
	if (!l->npending)
		return 0;
	struct lfs_cid *all = NULL;
	size_t n;
	int m = history_tips(l, &all, &n);
	if (!m)
		m = lfs_clock_reduce(&l->blocks, all, n);
	if (m < 0) {
		free(all);
		return m;
	}
	int rc = publish(l, all, (size_t)m);
	if (!rc)
		l->npending = 0;
	return rc;
}

/*
 * May a CAR naming parent CARs be applied: are its events' parents
 * (present, checked by the caller) in the history? 0, -EAGAIN with
 * *out_missing (if not NULL) naming the CAR that holds one that is not,
 * or an error. Caller holds write_lock.
 */
static int parents_applied(struct lfs_ledger *l, const struct lfs_cid *car,
			   const struct lfs_car_root *r,
			   const struct lfs_cid *parents, size_t n,
			   struct lfs_cid *out_missing)
{
	struct lfs_cid *tips, first;
	size_t ntips;
	int rc = history_tips(l, &tips, &ntips);
	if (rc)
		return rc;
	rc = lfs_clock_contains(&l->blocks, tips, ntips, parents, n, &first);
	free(tips);
	if (rc != 0)
		return rc < 0 ? rc : 0;
	if (out_missing && (lfs_blockstore_car_of(out_missing, l->bs, &first) ||
			    lfs_cid_equal(out_missing, car)))
		*out_missing = r->cars[0];
	return -EAGAIN;
}

int lfs_ledger_car_applied(struct lfs_ledger *l, const struct lfs_cid *car)
{
	/* A commit made on this home, by any process: appended on top of
	 * every head, and the segment's records count as heads on disk. This
	 * process's heads may not have it yet (another process committed
	 * since it last took the writer lock); it is applied all the same. */
	if (lfs_blockstore_in_segment(l->bs, car))
		return 1;
	if (!lfs_blockstore_has_car(l->bs, car))
		return -ENOENT;
	struct lfs_arena a;
	lfs_arena_init(&a, 0);
	struct lfs_car_root r;
	struct lfs_cid *tips = NULL;
	size_t ntips = 0;
	int rc = lfs_blockstore_load(&r, &a, l->bs, car, false);
	if (!rc) {
		/* A snapshot of the tips; the walk needs no lock. */
		pthread_mutex_lock(&l->write_lock);
		rc = history_tips(l, &tips, &ntips);
		pthread_mutex_unlock(&l->write_lock);
	}
	if (!rc)
		rc = r.nhead ? lfs_clock_contains(&l->blocks, tips, ntips,
						  r.head, r.nhead, NULL)
			     : 1;
	free(tips);
	lfs_arena_release(&a);
	return rc;
}

/*
 * Ingest one CAR: sealed bytes, or (sealed NULL) a CAR here already.
 * Caller holds write_lock and the writer lock.
 */
static int ingest_locked(struct lfs_ledger *l, struct lfs_arena *a,
			 const struct lfs_cid *car, const uint8_t *sealed,
			 size_t len, struct lfs_cid *out_missing)
{
	struct lfs_car_root r = {0};
	int rc = sealed ? lfs_blockstore_import(&r, a, l->bs, car, sealed, len)
		 /* Here: its file, not only its blocks in memory. */
		 : !lfs_blockstore_has_car(l->bs, car)
			 ? -ENOENT
			 : lfs_blockstore_load(&r, a, l->bs, car, false);
	/* Its events' parents, checked against the history at the end. */
	struct lfs_cid *parents = NULL;
	size_t nparents = 0;
	for (size_t i = 0; !rc && i < r.nhead; i++) {
		struct lfs_event ev;
		struct lfs_cid missing;
		if ((rc = lfs_event_load(&ev, a, &l->blocks, &r.head[i])))
			break;
		rc = lfs_clock_check_parents(&missing, &l->blocks, &ev);
		if (!rc && r.ncars && ev.nparents) {
			void *p = realloc(parents, (nparents + ev.nparents) *
							   sizeof(*parents));
			if (!p) {
				rc = -ENOMEM;
				break;
			}
			parents = p;
			lfs_cid_copy_n(parents + nparents, ev.parents,
				       ev.nparents);
			nparents += ev.nparents;
		}
		if (!rc && ev.t > l->now_us(l->now_ctx) + LFS_CLOCK_MAX_AHEAD)
			rc = -EAGAIN; /* from the future: apply it later */
		if (rc == -ENOENT) {
			rc = -EAGAIN;
			if (out_missing) {
				/* Name a parent CAR we lack, if we can. */
				*out_missing = r.ncars ? r.cars[0] : *car;
				for (size_t k = 0; k < r.ncars; k++)
					if (!lfs_blockstore_has_car(
						    l->bs, &r.cars[k])) {
						*out_missing = r.cars[k];
						break;
					}
			}
		}
	}
	if (!rc && nparents)
		rc = parents_applied(l, car, &r, parents, nparents,
				     out_missing);
	free(parents);
	if (rc == -ETIME)
		rc = -EBADMSG; /* an event older than its parent */
	if (rc == -EBADMSG && !lfs_blockstore_in_segment(l->bs, car))
		lfs_blockstore_remove_car(l->bs, car); /* never applied */
	if (!l->batch && !rc)
		rc = touch_heads(l); /* a new CAR file, at least */
	if (!rc && l->batch) {
		/* Heads and state move once, when the batch ends: doing it
		 * per CAR costs a walk of the history each (quadratic when
		 * catching up on many CARs). Nothing on disk says which
		 * events are heads until then, so other processes need not
		 * look again. */
		rc = add_pending(l, a, r.head, r.nhead);
		if (!rc)
			l->batch_dirty = true;
	} else if (!rc) {
		pthread_mutex_lock(&l->state_lock);
		size_t n = l->nheads + r.nhead;
		struct lfs_cid *all = malloc((n + 1) * sizeof(*all));
		if (all) {
			lfs_cid_copy_n(all, l->heads, l->nheads);
			lfs_cid_copy_n(all + l->nheads, r.head, r.nhead);
		}
		pthread_mutex_unlock(&l->state_lock);
		int m = all ? lfs_clock_reduce(&l->blocks, all, n) : -ENOMEM;
		if (m < 0) {
			free(all);
			rc = m;
		} else if (!(rc = publish(l, all, (size_t)m))) {
			rc = sync_head_records(l, l->durable);
		}
	}
	return rc;
}

int lfs_ledger_ingest(struct lfs_ledger *l, const struct lfs_cid *car,
		      const uint8_t *sealed, size_t len,
		      struct lfs_cid *out_missing)
{
	struct lfs_arena a;
	lfs_arena_init(&a, 0);
	pthread_mutex_lock(&l->write_lock);
	int rc = lock_writer(l);
	if (!rc) {
		rc = ingest_locked(l, &a, car, sealed, len, out_missing);
		unlock_writer(l);
	}
	pthread_mutex_unlock(&l->write_lock);
	lfs_arena_release(&a);
	return rc;
}

int lfs_ledger_ingest_here(struct lfs_ledger *l, const struct lfs_cid *cars,
			   size_t n, int *out_rc, struct lfs_cid *out_missing)
{
	/* CAR -> 1 once ingested by this call, 0 before. */
	struct lfs_cidmap mine;
	lfs_cidmap_init(&mine);
	int rc = 0;
	for (size_t i = 0; i < n; i++) {
		out_rc[i] = -EAGAIN;
		memset(&out_missing[i], 0, sizeof(out_missing[i]));
		if (!rc)
			rc = lfs_cidmap_set(&mine, &cars[i], 0);
	}
	struct lfs_arena a;
	lfs_arena_init(&a, 0);
	pthread_mutex_lock(&l->write_lock);
	bool locked = !rc && !(rc = lock_writer(l));
	for (size_t i = 0; locked && !rc && i < n; i++) {
		struct lfs_arena_mark m = lfs_arena_mark(&a);
		struct lfs_car_root r;
		int one = lfs_blockstore_load(&r, &a, l->bs, &cars[i], false);
		for (size_t k = 0; !one && k < r.ncars; k++) {
			uint64_t done = 1;
			if (lfs_cidmap_get(&mine, &r.cars[k], &done) && !done) {
				one = -EAGAIN; /* a parent here, not applied */
				out_missing[i] = r.cars[k];
			}
		}
		if (!one)
			one = ingest_locked(l, &a, &cars[i], NULL, 0,
					    &out_missing[i]);
		if (one == -ENOENT)
			one = -EAGAIN; /* gone meanwhile: fetch it again */
		if (one && one != -EAGAIN && one != -EBADMSG &&
		    one != -EPROTONOSUPPORT)
			rc = one; /* this machine failed: stop */
		else if (!one)
			rc = lfs_cidmap_set(&mine, &cars[i], 1);
		out_rc[i] = one;
		lfs_arena_rewind(&a, m);
	}
	if (locked)
		unlock_writer(l);
	pthread_mutex_unlock(&l->write_lock);
	lfs_arena_release(&a);
	lfs_cidmap_release(&mine);
	return rc;
}

int lfs_ledger_ingest_begin(struct lfs_ledger *l)
{
	pthread_mutex_lock(&l->write_lock);
	if (l->batch++ == 0)
		lfs_blockstore_set_lazy_imports(l->bs, true);
	pthread_mutex_unlock(&l->write_lock);
	return 0;
}

int lfs_ledger_ingest_end(struct lfs_ledger *l)
{
	pthread_mutex_lock(&l->write_lock);
	int rc = 0;
	if (l->batch > 0 && --l->batch == 0) {
		lfs_blockstore_set_lazy_imports(l->bs, false);
		if (l->batch_dirty && !(rc = lock_writer(l))) {
			if (!(rc = apply_pending(l)))
				rc = sync_head_records(l, l->durable);
			unlock_writer(l);
		}
	}
	pthread_mutex_unlock(&l->write_lock);
	return rc;
}

/* ---- compaction ---- */

static int compact_event(void *ctx, const struct lfs_cid *cid,
			 const struct lfs_event *ev)
{
	struct gather *g = ctx;
	int rc = gather_add(g, cid);
	for (size_t i = 0; rc >= 0 && i < ev->nops; i++)
		if (!ev->ops[i].del)
			rc = gather_add(g, &ev->ops[i].doc);
	if (rc < 0)
		return rc;
	return lfs_index_nodes(&g->l->ix, &ev->root, gather_node, gather_entry,
			       g);
}

int lfs_ledger_compact(struct lfs_ledger *l, struct lfs_cid *out_car)
{
	pthread_mutex_lock(&l->write_lock);
	int rc = lock_writer(l);
	if (rc) {
		pthread_mutex_unlock(&l->write_lock);
		return rc;
	}
	struct lfs_cid *heads, *old_cars = NULL;
	size_t nheads, nold = 0;
	/* The CAR files this compaction replaces: those present now. */
	if ((rc = lfs_blockstore_list_cars(&old_cars, &nold, l->bs)) ||
	    (rc = current_heads(l, &heads, &nheads))) {
		unlock_writer(l);
		pthread_mutex_unlock(&l->write_lock);
		free(old_cars);
		return rc;
	}
	struct gather g;
	gather_init(&g, l, true);
	struct lfs_cid car, root;
	lfs_ledger_current_root(l, &root);
	if (nheads == 0) {
		rc = -ENOENT; /* nothing to compact */
		goto out;
	}
	if ((rc = lfs_clock_walk(&l->blocks, heads, nheads, compact_event, &g)))
		goto out;
	/* The merged state of several heads is part of the present too. */
	if ((rc = lfs_index_nodes(&l->ix, &root, gather_node, gather_entry,
				  &g)))
		goto out;
	struct lfs_car_root cr = {.head = heads, .nhead = nheads};
	if ((rc = lfs_blockstore_write_compact(&car, l->bs, &cr, g.v, g.n)))
		goto out;
	struct lfs_cid *prev;
	size_t nprev;
	if ((rc = current_head_cars(l, &prev, &nprev)))
		goto out;
	rc = touch_heads(l);
	if (!rc)
		rc = lfs_blockstore_set_head(l->bs, &car, prev, nprev, true);
	free(prev);
	if (rc)
		goto out;
	struct lfs_cid *hc = malloc(sizeof(*hc));
	if (!hc) {
		rc = -ENOMEM;
		goto out;
	}
	*hc = car;
	pthread_mutex_lock(&l->state_lock);
	free(l->head_cars);
	l->head_cars = hc;
	l->nhead_cars = 1;
	pthread_mutex_unlock(&l->state_lock);
	if ((rc = sync_head_records(l, true)))
		goto out;
	/* Other processes that have the ledger open still read the old
	 * files: remove them only when nobody else has it open. */
	if (flock(l->open_fd, LOCK_EX | LOCK_NB) == 0) {
		for (size_t i = 0; i < nold; i++)
			if (!lfs_cid_equal(&old_cars[i], &car))
				lfs_blockstore_remove_car(l->bs, &old_cars[i]);
		flock(l->open_fd, LOCK_SH);
	}
	if (out_car)
		*out_car = car;
out:
	unlock_writer(l);
	pthread_mutex_unlock(&l->write_lock);
	gather_release(&g);
	free(old_cars);
	free(heads);
	return rc;
}
