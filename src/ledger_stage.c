/*
 * ledger_stage: staged saves, the mount's group commit.
 *
 * A stage seals its transaction as an intent record at the end of the
 * segment and returns: the save is then in the page cache (it survives
 * this process) and, as this process holds the writer flock until it is
 * folded, no other process sees the ledger without it. A folder thread
 * folds every staged save into one commit (lfs_ledger_commit_locked) a
 * moment later; every writer folds first (lock_writer), so nothing but an
 * intent is ever written after an intent that is not folded, and a
 * commit or mark record after intents says they are folded
 * (blockstore.h). After a crash, the next process to take the lock finds
 * the intents the segment ends with and folds them.
 *
 * Intent plaintext, little endian:
 *   "LFSINT1\n" | u32 nops | per op: u8 del | u32 idlen | id |
 *   u32 blocklen | the document's block (DAG-CBOR; none for a delete)
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "ledger.h"
#include "ledger_int.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "cbor.h"
#include "errmsg.h"
#include "le.h"
#include "log.h"

#define INTENT_MAGIC "LFSINT1\n"
#define INTENT_HDR   12
/* Staged past either, a stage folds first: what a fold holds in memory
 * and how long a reader waits for one stay bounded. */
#define STAGE_MAX_OPS   4096
#define STAGE_MAX_BYTES ((size_t)16 << 20)
/* The folder does not wait out its gathering time past this many. */
#define STAGE_FOLD_OPS (STAGE_MAX_OPS / 2)
/* How long the folder lets saves gather before it folds them (us). */
#ifndef FOLD_GATHER_US
#define FOLD_GATHER_US 5000
#endif
/* A fold that failed is tried again this often (ms). */
#define FOLD_RETRY_MS 1000

struct staged {
	struct lfs_bs_intent it;
	uint8_t *plain;
	size_t len;
	uint64_t *hashes; /* its ids' (id_hash) */
	size_t nops;
};

/*
 * The staged ids, for lfs_ledger_staged: a set of 64-bit hashes (open
 * addressing; 0 is empty), emptied when a fold takes them all. A false
 * positive costs a reader one settle, never a wrong answer.
 */
struct stage_ids {
	uint64_t *slots;
	size_t cap, n;
};

static uint64_t id_hash(const char *id, size_t len)
{
	uint64_t h = 1469598103934665603ull;
	for (size_t i = 0; i < len; i++)
		h = (h ^ (uint8_t)id[i]) * 1099511628211ull;
	return h ? h : 1;
}

static bool idset_has(const struct stage_ids *s, uint64_t h)
{
	if (!s->cap)
		return false;
	for (size_t i = h & (s->cap - 1);; i = (i + 1) & (s->cap - 1)) {
		if (s->slots[i] == h)
			return true;
		if (!s->slots[i])
			return false;
	}
}

static int idset_add(struct stage_ids *s, uint64_t h)
{
	if ((s->n + 1) * 2 > s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 64;
		uint64_t *v = calloc(cap, sizeof(*v));
		if (!v)
			return -ENOMEM;
		for (size_t i = 0; i < s->cap; i++) {
			if (!s->slots[i])
				continue;
			size_t j = s->slots[i] & (cap - 1);
			while (v[j])
				j = (j + 1) & (cap - 1);
			v[j] = s->slots[i];
		}
		free(s->slots);
		s->slots = v;
		s->cap = cap;
	}
	size_t i = h & (s->cap - 1);
	while (s->slots[i] && s->slots[i] != h)
		i = (i + 1) & (s->cap - 1);
	if (!s->slots[i]) {
		s->slots[i] = h;
		s->n++;
	}
	return 0;
}

/* ---- intents ---- */

/* t as an intent's plaintext, appended to out; each put's CID noted in t
 * (lfs_txn_op_cid). */
static int intent_encode(struct lfs_buf *out, struct lfs_txn *t)
{
	size_t n = lfs_txn_count(t);
	uint8_t hdr[INTENT_HDR];
	memcpy(hdr, INTENT_MAGIC, 8);
	lfs_le_put32(hdr + 8, (uint32_t)n);
	lfs_buf_append(out, hdr, sizeof(hdr));
	struct lfs_buf enc;
	lfs_buf_init(&enc, LFS_DOC_MAX);
	int rc = 0;
	for (size_t i = 0; i < n && !rc; i++) {
		const char *id;
		lfs_txn_op(t, i, &id);
		bool del = lfs_txn_op_del(t, i);
		const uint8_t *block = NULL;
		size_t blen = 0;
		if (!del && (rc = lfs_txn_op_block(t, i, &enc, &block, &blen)))
			break;
		if (!del) {
			struct lfs_cid c;
			lfs_cid_of(&c, LFS_CODEC_DAG_CBOR, block, blen);
			lfs_txn_op_set_cid(t, i, &c);
		}
		uint8_t f[5];
		size_t idlen = strlen(id);
		f[0] = del;
		lfs_le_put32(f + 1, (uint32_t)idlen);
		lfs_buf_append(out, f, 5);
		lfs_buf_append(out, id, idlen);
		lfs_le_put32(f, (uint32_t)blen);
		lfs_buf_append(out, f, 4);
		rc = lfs_buf_append(out, block, blen);
	}
	lfs_buf_release(&enc);
	return rc ? rc : out->err;
}

/*
 * Walk an intent's ops: with t, add them to it (later ops of an id
 * replace earlier ones); without, only check them.
 */
static int intent_walk(struct lfs_txn *t, const uint8_t *p, size_t len)
{
	if (len < INTENT_HDR || memcmp(p, INTENT_MAGIC, 8))
		return -EBADMSG;
	uint32_t n = lfs_le_get32(p + 8);
	size_t at = INTENT_HDR;
	char id[LFS_INDEX_ID_MAX + 1];
	for (uint32_t i = 0; i < n; i++) {
		if (len - at < 5)
			return -EBADMSG;
		bool del = p[at] != 0;
		uint32_t idlen = lfs_le_get32(p + at + 1);
		at += 5;
		if (p[at - 5] > 1 || idlen == 0 || idlen > LFS_INDEX_ID_MAX ||
		    len - at < (size_t)idlen + 4 || memchr(p + at, 0, idlen) ||
		    !lfs_utf8_valid((const char *)p + at, idlen))
			return -EBADMSG; /* what lfs_txn_* would refuse */
		memcpy(id, p + at, idlen);
		id[idlen] = 0;
		at += idlen;
		uint32_t blen = lfs_le_get32(p + at);
		at += 4;
		if (len - at < blen || (del && blen))
			return -EBADMSG;
		int rc = !t    ? 0
			 : del ? lfs_txn_delete(t, id)
			       : lfs_txn_put_block(t, id, p + at, blen);
		if (rc)
			return rc == -EINVAL ? -EBADMSG : rc;
		at += blen;
	}
	return at == len ? 0 : -EBADMSG;
}

/* An intent's ops into t: all of them, or none when it does not parse. */
static int intent_decode(struct lfs_txn *t, const uint8_t *p, size_t len)
{
	int rc = intent_walk(NULL, p, len);
	return rc ? rc : intent_walk(t, p, len);
}

/* ---- the staged list ---- */

void lfs_stage_init(struct lfs_ledger *l)
{
	pthread_mutex_init(&l->intent_lock, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&l->intent_cond, &ca);
	pthread_condattr_destroy(&ca);
}

/* Forget the staged saves at offsets up to through: folded. Caller
 * holds intent_lock. */
static void staged_drop(struct lfs_ledger *l, uint64_t through)
{
	size_t k = 0;
	l->staged_ops = l->staged_bytes = 0;
	for (size_t i = 0; i < l->nstaged; i++) {
		struct staged *e = &l->staged[i];
		if (e->it.off <= through) {
			free(e->plain);
			free(e->hashes);
			continue;
		}
		l->staged_ops += e->nops;
		l->staged_bytes += e->len;
		l->staged[k++] = *e;
	}
	__atomic_store_n(&l->nstaged, k, __ATOMIC_RELEASE);
	struct stage_ids *s = l->staged_ids;
	if (!s)
		return;
	if (s->n)
		memset(s->slots, 0, s->cap * sizeof(*s->slots));
	s->n = 0;
	/* What is left is a save or two staged during the fold. */
	for (size_t i = 0; i < k; i++)
		for (size_t j = 0; j < l->staged[i].nops; j++)
			idset_add(s, l->staged[i].hashes[j]);
}

void lfs_stage_release(struct lfs_ledger *l)
{
	staged_drop(l, UINT64_MAX);
	free(l->staged);
	if (l->staged_ids)
		free(l->staged_ids->slots);
	free(l->staged_ids);
	lfs_txn_free(l->folded);
	pthread_cond_destroy(&l->intent_cond);
	pthread_mutex_destroy(&l->intent_lock);
}

/* Note a staged save (its plaintext taken). Caller holds intent_lock. */
static int staged_add(struct lfs_ledger *l, const struct lfs_bs_intent *it,
		      uint8_t *plain, size_t len, const struct lfs_txn *t)
{
	if (!l->staged_ids &&
	    !(l->staged_ids = calloc(1, sizeof(*l->staged_ids))))
		return -ENOMEM;
	if (l->nstaged == l->capstaged) {
		size_t cap = l->capstaged ? l->capstaged * 2 : 16;
		void *p = realloc(l->staged, cap * sizeof(*l->staged));
		if (!p)
			return -ENOMEM;
		l->staged = p;
		l->capstaged = cap;
	}
	size_t n = lfs_txn_count(t);
	uint64_t *h = malloc((n + 1) * sizeof(*h));
	if (!h)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		const char *id;
		lfs_txn_op(t, i, &id);
		h[i] = id_hash(id, strlen(id));
		int rc = idset_add(l->staged_ids, h[i]);
		if (rc) {
			free(h);
			return rc;
		}
	}
	l->staged[l->nstaged] = (struct staged){
		.it = *it, .plain = plain, .len = len, .hashes = h, .nops = n};
	__atomic_store_n(&l->nstaged, l->nstaged + 1, __ATOMIC_RELEASE);
	l->staged_ops += n;
	l->staged_bytes += len;
	return 0;
}

bool lfs_ledger_staged(struct lfs_ledger *l, const char *id)
{
	if (!__atomic_load_n(&l->nstaged, __ATOMIC_ACQUIRE))
		return false;
	uint64_t h = id_hash(id, strlen(id));
	pthread_mutex_lock(&l->intent_lock);
	bool has = l->nstaged && idset_has(l->staged_ids, h);
	pthread_mutex_unlock(&l->intent_lock);
	return has;
}

/* ---- folding ---- */

/*
 * Fold every intent no fold record covers into one commit, and say so
 * with a fold record. Saves staged meanwhile come after the intents
 * taken, and stay. Caller holds write_lock and the flock (lock_writer).
 */
int lfs_stage_fold_locked(struct lfs_ledger *l)
{
	struct lfs_blockstore *bs = lfs_ledger_store(l);
	struct lfs_bs_intent *v = NULL;
	size_t n = 0;
	/* Under intent_lock, a stage's append and its note are one: each
	 * intent of ours taken here has its plaintext staged (kept until
	 * a fold drops it, and folds are one at a time). */
	pthread_mutex_lock(&l->intent_lock);
	int rc = lfs_blockstore_intents(&v, &n, bs);
	/* The staged array may move (stages realloc it): keep what its
	 * entries point to, which does not. NULL: not ours. */
	struct {
		const uint8_t *p;
		size_t len;
	} *plain = rc || !n ? NULL : calloc(n, sizeof(*plain));
	if (!rc && n && !plain)
		rc = -ENOMEM;
	for (size_t i = 0, j = 0; plain && i < n; i++) {
		while (j < l->nstaged && l->staged[j].it.off < v[i].off)
			j++;
		if (j < l->nstaged && l->staged[j].it.off == v[i].off &&
		    lfs_cid_equal(&l->staged[j].it.cid, &v[i].cid)) {
			plain[i].p = l->staged[j].plain;
			plain[i].len = l->staged[j].len;
		}
	}
	/* None left unfolded: whatever is staged was folded (cannot
	 * happen while we hold the lock; never spin on it). */
	if (!rc && !n && l->nstaged) {
		lfs_warn("%s: %zu staged saves were folded already",
			 lfs_blockstore_dir(bs), l->nstaged);
		staged_drop(l, UINT64_MAX);
	}
	/* Settles wait for this fold's report too (a reader of the change
	 * feed must find its lines), not only for its commit. */
	if (!rc && n)
		__atomic_store_n(&l->folding, true, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&l->intent_lock);
	if (rc || !n) {
		free(v);
		return rc;
	}
	struct lfs_txn *t;
	if ((rc = lfs_txn_new(&t))) {
		free(plain);
		free(v);
		return rc;
	}
	struct lfs_buf b;
	lfs_buf_init(&b, LFS_CAR_MAX_FILE);
	bool ours = false;
	for (size_t i = 0; i < n && !rc; i++) {
		const uint8_t *p = plain[i].p;
		size_t len = plain[i].len;
		ours |= p != NULL;
		if (!p) { /* a crashed process's: read it back */
			lfs_buf_reset(&b);
			rc = lfs_blockstore_read_intent(&b, bs, &v[i]);
			p = b.data;
			len = b.len;
		}
		if (!rc)
			rc = intent_decode(t, p, len);
		if (rc == -EBADMSG) {
			/* It checked out against its name when scanned: a
			 * key that is not this ledger's, or a writer that
			 * is not this version. Nothing can fold it. */
			lfs_warn("%s: dropping an intent at offset %llu of "
				 "the segment that does not open: %s",
				 lfs_blockstore_dir(bs),
				 (unsigned long long)v[i].off, lfs_errmsg(rc));
			rc = 0;
		}
	}
	uint64_t through = v[n - 1].off;
	lfs_buf_release(&b);
	free(plain);
	free(v);
	struct lfs_cid before, after, event;
	bool committed = false;
	lfs_ledger_current_root(l, &before);
	if (!rc)
		rc = lfs_ledger_commit_locked(l, t, &event, &committed);
	/* After the commit: a crash between the two folds the intents
	 * again, onto a root that has them (no change). */
	if (!rc)
		rc = lfs_blockstore_fold_mark(bs, through);
	pthread_mutex_lock(&l->intent_lock);
	l->fold_err = rc;
	if (!rc)
		staged_drop(l, through);
	pthread_mutex_unlock(&l->intent_lock);
	if (rc || !ours || !committed || !l->on_fold) {
		lfs_txn_free(t);
		return rc;
	}
	lfs_ledger_current_root(l, &after);
	lfs_txn_free(l->folded); /* not reported: never, in order */
	l->folded = t;
	l->folded_before = before;
	l->folded_after = after;
	l->folded_event = event;
	return 0;
}

/* Set while this thread reports a fold: a settle from the callback
 * would wait for the writer mutex its caller holds. */
static __thread bool reporting;

void lfs_stage_report(struct lfs_ledger *l)
{
	struct lfs_txn *t = l->folded;
	if (!t) {
		__atomic_store_n(&l->folding, false, __ATOMIC_RELEASE);
		return;
	}
	l->folded = NULL;
	struct lfs_ledger_fold f = {.before = &l->folded_before,
				    .after = &l->folded_after,
				    .event = &l->folded_event,
				    .txn = t};
	if (l->on_fold) {
		reporting = true;
		l->on_fold(l->fold_ctx, &f);
		reporting = false;
	}
	lfs_txn_free(t);
	__atomic_store_n(&l->folding, false, __ATOMIC_RELEASE);
}

void lfs_ledger_on_fold(struct lfs_ledger *l, lfs_ledger_fold_fn fn, void *ctx)
{
	pthread_mutex_lock(&l->write_lock);
	l->on_fold = fn;
	l->fold_ctx = ctx;
	pthread_mutex_unlock(&l->write_lock);
}

int lfs_ledger_settle(struct lfs_ledger *l)
{
	if (reporting || (!__atomic_load_n(&l->nstaged, __ATOMIC_ACQUIRE) &&
			  !__atomic_load_n(&l->folding, __ATOMIC_ACQUIRE)))
		return 0;
	pthread_mutex_lock(&l->write_lock);
	int rc = lfs_ledger_lock_writer(l);
	if (!rc)
		lfs_ledger_unlock_writer(l);
	pthread_mutex_unlock(&l->write_lock);
	return rc;
}

/* The folder: folds whatever is staged, as soon as it is. */
static void *folder_run(void *arg)
{
	struct lfs_ledger *l = arg;
	int last = 0;
	pthread_mutex_lock(&l->intent_lock);
	for (;;) {
		while (!l->nstaged && !l->folder_stop)
			pthread_cond_wait(&l->intent_cond, &l->intent_lock);
		if (!l->nstaged)
			break; /* stopped, nothing left */
		/* Let a burst of saves gather into one fold: a reader that
		 * needs them folds them itself meanwhile (settle). */
		struct timespec due;
		clock_gettime(CLOCK_MONOTONIC, &due);
		due.tv_nsec += FOLD_GATHER_US * 1000L;
		if (due.tv_nsec >= 1000000000L) {
			due.tv_sec++;
			due.tv_nsec -= 1000000000L;
		}
		while (l->nstaged && !l->folder_stop &&
		       l->staged_ops < STAGE_FOLD_OPS &&
		       pthread_cond_timedwait(&l->intent_cond, &l->intent_lock,
					      &due) == 0)
			;
		if (!l->nstaged)
			continue;
		pthread_mutex_unlock(&l->intent_lock);
		int rc = lfs_ledger_settle(l);
		if (rc && rc != last)
			lfs_error("%s: cannot commit the saves staged in the "
				  "segment (they are kept, and tried again "
				  "every second): %s",
				  lfs_blockstore_dir(lfs_ledger_store(l)),
				  lfs_errmsg(rc));
		else if (!rc && last)
			lfs_info("%s: the saves staged in the segment are "
				 "committed",
				 lfs_blockstore_dir(lfs_ledger_store(l)));
		last = rc;
		pthread_mutex_lock(&l->intent_lock);
		if (rc && l->nstaged) {
			if (l->folder_stop)
				break; /* close tries once more */
			struct timespec ts;
			clock_gettime(CLOCK_MONOTONIC, &ts);
			ts.tv_sec += FOLD_RETRY_MS / 1000;
			pthread_cond_timedwait(&l->intent_cond, &l->intent_lock,
					       &ts);
		}
	}
	pthread_mutex_unlock(&l->intent_lock);
	return NULL;
}

void lfs_stage_stop(struct lfs_ledger *l)
{
	pthread_mutex_lock(&l->intent_lock);
	bool on = l->folder_on;
	l->folder_stop = true;
	pthread_cond_broadcast(&l->intent_cond);
	pthread_mutex_unlock(&l->intent_lock);
	if (on)
		pthread_join(l->folder, NULL);
	l->folder_on = false;
}

int lfs_ledger_stage(struct lfs_ledger *l, struct lfs_txn *t)
{
	size_t n = lfs_txn_count(t);
	if (!l->segment || !n)
		return lfs_ledger_commit(l, t, NULL, NULL);
	if (n > LFS_EVENT_MAX_OPS)
		return -E2BIG;
	struct lfs_buf plain;
	lfs_buf_init(&plain, LFS_CAR_MAX_FILE);
	int rc = intent_encode(&plain, t);
	if (rc) {
		lfs_buf_release(&plain);
		return rc;
	}
	/* Too much staged already: fold it first, here. */
	pthread_mutex_lock(&l->intent_lock);
	bool full = l->staged_ops + n > STAGE_MAX_OPS ||
		    l->staged_bytes + plain.len > STAGE_MAX_BYTES;
	pthread_mutex_unlock(&l->intent_lock);
	if (full && (rc = lfs_ledger_settle(l))) {
		lfs_buf_release(&plain);
		return rc;
	}
	pthread_mutex_lock(&l->intent_lock);
	/* While folds fail (a full disk), saves fail with their error
	 * rather than pile up behind them. */
	rc = l->fold_err;
	if (!rc && !l->folder_on && !l->folder_stop) {
		rc = -pthread_create(&l->folder, NULL, folder_run, l);
		l->folder_on = !rc;
	}
	if (!rc && l->folder_stop)
		rc = -ESHUTDOWN; /* closing */
	struct lfs_bs_intent it;
	if (!rc)
		rc = lfs_ledger_hold_locked(l);
	if (!rc)
		rc = lfs_blockstore_append_intent(lfs_ledger_store(l),
						  plain.data, plain.len, &it);
	size_t len = plain.len;
	uint8_t *p = rc ? NULL : lfs_buf_steal(&plain, &len);
	if (!rc && !p)
		rc = -ENOMEM;
	size_t was = l->staged_ops;
	if (!rc && (rc = staged_add(l, &it, p, len, t)))
		free(p);
	/* The folder waits for the first save, then for its deadline or
	 * for enough of them: a wake-up per save would cost a context
	 * switch each. */
	if (!rc &&
	    (!was || (was < STAGE_FOLD_OPS && l->staged_ops >= STAGE_FOLD_OPS)))
		pthread_cond_signal(&l->intent_cond);
	/* A stage that failed holds nothing: let others write. */
	if (rc && !l->nstaged && !l->writing)
		lfs_ledger_unhold_locked(l);
	pthread_mutex_unlock(&l->intent_lock);
	lfs_buf_release(&plain);
	return rc;
}
