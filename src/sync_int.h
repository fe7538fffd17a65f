/*
 * sync_int: what the sync modules share. Internal: only src/sync*.c
 * include it; sync.h is the contract.
 *
 * Modules, each using only those above it in this list:
 *
 *   sync_int.h    this: struct lfs_sync, struct sync_ledger, the per-CAR
 *                 flags, the remote key layout, small helpers
 *   sync_state    what this replica knows of each CAR (applied, waiting,
 *                 bad, retry backoff) and the files that keep it:
 *                 HOME/state/<ledger>/{pushed,waiting,missing,lock}
 *   sync_pull     fetching CAR files (streamed, checked as they arrive),
 *                 catching up (many at once), applying a head's chain of
 *                 CARs parents first, and the pull half of a round
 *   sync_push     the outbox, uploads, head records and their removal
 *   sync_heads    the one listing of heads/ for every ledger, the legacy
 *                 sweep, and discovering ledgers other machines made
 *   sync_hints    applying the real-time endpoint's hints (meta.h)
 *   sync.c        rounds, the thread and its polling, waiting, status
 *
 * Locks (sync.h and docs/HACKING.md): round_lock is held for a round (and
 * while hints are applied), and everything in a struct sync_ledger not
 * marked "under s->lock" belongs to the holder of round_lock. s->lock
 * guards status, the kick and the generation; it is a leaf lock, never
 * held across I/O or a hook.
 */
#ifndef LFS_SYNC_INT_H
#define LFS_SYNC_INT_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "blockstore.h"
#include "cidmap.h"
#include "meta.h"
#include "sync.h"
#include "timefmt.h"

#define MAX_BACKOFF_MS   30000
#define IDLE_MS          30000 /* the poll interval after a quiet while */
#define ACTIVE_MS        20000 /* "recently" active: poll fast this long */
#define PREFETCH_THREADS 8     /* connections of a catch-up (sync_pull.c) */

#define HEADS_PREFIX "heads/"

/* What this process knows about a CAR file of a ledger (cars' values). */
enum {
	CAR_APPLIED = 1,   /* ingested here, or written here */
	CAR_WAITING = 2,   /* kept here (in the waiting file), not applied */
	CAR_BAD = 4,       /* proven bad: rejected until restart */
	CAR_LOGGED = 8,    /* its problem has been logged */
	CAR_RECORD_OK = 16 /* its head record was read and is well-formed */
};

/* What fetch_apply() made of a head. */
enum { HEAD_APPLIED, HEAD_DEFERRED, HEAD_BLOCKED, HEAD_REJECTED };

struct sync_ledger {
	char *name;
	char *enc;                      /* name percent-encoded for keys */
	struct lfs_cidmap pushed;       /* CAR files the remote has */
	struct lfs_cidmap cars;         /* CAR -> CAR_* */
	struct lfs_cidmap retry;        /* CAR -> next try (ms) << 8 | tries */
	struct lfs_cidmap remote_heads; /* well-formed records listed */
	struct lfs_cidmap fresh_heads;  /* of those, under heads/ (value 1) */
	struct lfs_cidmap legacy_heads; /* under <enc>/head/, last sweep */
	struct lfs_cidmap bad_records;  /* records listed that are not */
	struct lfs_cidmap unwaited; /* left waiting here since the last save */
	/* CARs missing on the store -> when first missed (unix seconds; 0:
	 * not missing); under s->lock, as status reads it. */
	struct lfs_cidmap missing;
	struct lfs_cidmap unmissed; /* arrived since the last save */
	struct lfs_cidmap needed;   /* of those, the ones this pull needed */
	size_t nwaiting, nbad;
	int pushed_fd; /* the pushed file, open for appending, or -1 */
	uint8_t key[LFS_KEY_BYTES]; /* to check fetched CARs; wiped at free */
	bool have_key;
	char *fetch_dir; /* HOME/state/<ledger>/: fetched CARs spill here */
	struct lfs_sync *owner;
	bool loaded, marker_done, waiting_dirty, missing_dirty, state_dir;
	bool swept;
	char why[300]; /* why a remote head could not be applied */
	/* Status, under s->lock. */
	int64_t last_push_us, last_poll_us;
	char last_error[400], last_rejected[300], logged_error[400];
	int last_rc;
	size_t pending, unapplied, ignored_records, rejected;
	uint64_t pushed_gen; /* round generation of the last full push */
	uint64_t round_gen;  /* ... of the last round for this ledger */
	/* Catching up, under s->lock: CAR files to fetch, fetched, applied. */
	size_t catchup_files, catchup_fetched, catchup_applied;
	int64_t catchup_start_us;
	uint64_t pulls, prefetched_pull; /* one catch-up per pull at most */
	struct sync_ledger *next;
};

struct lfs_sync {
	struct lfs_home *home;
	char *url;   /* may hold credentials: never print it */
	char *shown; /* the URL without credentials, for messages */
	struct lfs_sync_hooks hooks;
	struct lfs_store *store; /* used under round_lock only */
	/* The connections of a catch-up in flight (under lock), so that
	 * lfs_sync_stop() can cut them short too. */
	struct lfs_store *fetchers[PREFETCH_THREADS];
	pthread_mutex_t round_lock;
	pthread_mutex_t lock; /* ledgers' status, kick, generation */
	pthread_cond_t cond;
	struct sync_ledger *ledgers;
	pthread_t thread;
	bool running, kicked, stopping, hinted;
	unsigned poll_ms;
	uint64_t generation;
	/* Adaptive polling (under lock): fast until active_until (mono ms),
	 * then slower up to IDLE_MS; delay_ms is the interval now. */
	int64_t active_until;
	unsigned delay_ms, fail_ms;
	/* Under round_lock: the slow listings, the last heads listing. */
	int64_t next_discovery, next_sweep;
	size_t sweep_pos;
	uint64_t listing_hash;
	bool listed;
	/* The real-time endpoint (--meta), or NULL; hint fetch budget. */
	struct lfs_meta *meta;
	double hint_tokens;
	int64_t hint_refill_ms;
	uint64_t hints_ignored;
};

/* A growing array of CIDs. */
struct keys {
	struct lfs_cid *v;
	size_t n, cap;
};

static inline int64_t lfs_sync_now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* In a set of records (value 1; 0 is a record removed since). */
static inline bool lfs_sync_has(const struct lfs_cidmap *m,
				const struct lfs_cid *c)
{
	uint64_t v = 0;
	return lfs_cidmap_get(m, c, &v) && v;
}

/* sync.c */

/* Something moved here or on the store: poll fast for a while. */
void lfs_sync_mark_active(struct lfs_sync *s);
int lfs_sync_keys_add(struct keys *k, const struct lfs_cid *c);
/* An lfs_store_list() callback: add the raw CID after the last '/' of key
 * to the struct keys ctx; other keys are ignored. */
int lfs_sync_collect_cid(void *ctx, const char *key);
/* "<enc>/<kind>/<cid>": where the store keeps CAR c (kind "car"). */
void lfs_sync_car_key(char *out, size_t n, struct sync_ledger *sl,
		      const char *kind, const struct lfs_cid *c);
void lfs_sync_record_key(char *out, size_t n, struct sync_ledger *sl,
			 const struct lfs_cid *c, bool legacy);

/* sync_state.c: per-CAR state */

uint64_t lfs_sync_car_flags(struct sync_ledger *sl, const struct lfs_cid *c);
int lfs_sync_car_set(struct sync_ledger *sl, const struct lfs_cid *c,
		     uint64_t set, uint64_t clear);
bool lfs_sync_applied(struct sync_ledger *sl, struct lfs_ledger *l,
		      const struct lfs_cid *c);
bool lfs_sync_due(struct sync_ledger *sl, const struct lfs_cid *c);

/* sync_state.c: the state files */

/* HOME/state/<ledger>/<file>, malloc'd (NULL: out of memory), its
 * directory made the first time. */
char *lfs_sync_state_path(struct lfs_sync *s, struct sync_ledger *sl,
			  const char *file);
void lfs_sync_load_state(struct lfs_sync *s, struct sync_ledger *sl,
			 struct lfs_blockstore *bs);
void lfs_sync_note_pushed(struct lfs_sync *s, struct sync_ledger *sl,
			  const struct lfs_cid *car);
void lfs_sync_note_pushed_many(struct lfs_sync *s, struct sync_ledger *sl,
			       const struct lfs_cid *v, size_t n);
void lfs_sync_note_waiting_many(struct lfs_sync *s, struct sync_ledger *sl,
				const struct lfs_cid *v, size_t n);
void lfs_sync_note_waiting(struct lfs_sync *s, struct sync_ledger *sl,
			   const struct lfs_cid *car);
void lfs_sync_save_waiting(struct lfs_sync *s, struct sync_ledger *sl);
void lfs_sync_note_missing(struct lfs_sync *s, struct sync_ledger *sl,
			   const struct lfs_cid *car);
void lfs_sync_clear_missing(struct lfs_sync *s, struct sync_ledger *sl,
			    const struct lfs_cid *car);
void lfs_sync_save_missing(struct lfs_sync *s, struct sync_ledger *sl);

/* sync_pull.c */

void lfs_sync_reject(struct lfs_sync *s, struct sync_ledger *sl,
		     const struct lfs_cid *c, int err);
int lfs_sync_fetch_setup(struct lfs_sync *s, struct sync_ledger *sl);
int lfs_sync_fetch_car(uint8_t **out, size_t *out_len, bool *bad,
		       struct lfs_store *st, struct sync_ledger *sl,
		       const struct lfs_cid *car);
int lfs_sync_fetch_apply(struct lfs_sync *s, struct sync_ledger *sl,
			 struct lfs_ledger *l, const struct lfs_cid *c);
int lfs_sync_pull(struct lfs_sync *s, struct sync_ledger *sl,
		  struct lfs_ledger *l, const struct keys *kp,
		  size_t *out_unapplied);

/* sync_push.c */

int lfs_sync_count_outbox(size_t *out, struct sync_ledger *sl,
			  struct lfs_blockstore *bs);
void lfs_sync_set_pending(struct lfs_sync *s, struct sync_ledger *sl, size_t n);
int lfs_sync_push(struct lfs_sync *s, struct sync_ledger *sl,
		  struct lfs_ledger *l);

/* sync_heads.c */

struct heads_entry {
	char *enc;
	struct lfs_cid car;
	bool marker; /* heads/<enc>: the ledger exists */
};

/* The listing of every ledger's head records, sorted by ledger. */
struct heads_listing {
	struct heads_entry *v;
	size_t n, cap;
	uint64_t hash; /* of the keys, in any order */
};

int lfs_sync_listing_collect(void *ctx, const char *key);
int lfs_sync_listing_cmp(const void *a, const void *b);
void lfs_sync_listing_release(struct heads_listing *lst);
int lfs_sync_round_heads(struct keys *out, struct sync_ledger *sl,
			 const struct heads_listing *lst);
int lfs_sync_sweep(struct lfs_sync *s, struct sync_ledger *sl);
void lfs_sync_discover_enc(struct lfs_sync *s, const char *enc);
int lfs_sync_discover(void *ctx, const char *key);

/* sync_hints.c */

/* Apply the hints waiting; whether a listing should come soon. */
bool lfs_sync_hint_round(struct lfs_sync *s);

#endif
