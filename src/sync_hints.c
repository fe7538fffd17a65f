#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "sync_int.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define HINTS_MAX  256 /* hints taken from the endpoint at once */
#define HINT_RATE  10  /* CAR fetches for hints per second ... */
#define HINT_BURST 20  /* ... and at once */

/* ---- hints from the real-time endpoint ---- */

/* Take one token of the hint fetch budget (HINT_RATE a second). */
static bool hint_budget(struct lfs_sync *s)
{
	int64_t now = lfs_mono_ms();
	s->hint_tokens += (double)(now - s->hint_refill_ms) * HINT_RATE / 1000;
	if (s->hint_tokens > HINT_BURST)
		s->hint_tokens = HINT_BURST;
	s->hint_refill_ms = now;
	if (s->hint_tokens < 1)
		return false;
	s->hint_tokens -= 1;
	return true;
}

/*
 * Apply what a hint names: fetch the CAR straight from the store (no
 * listing, no record), then apply it as a pull would. A hint naming a
 * ledger this mount does not hold, a CAR the store lacks or anything
 * over budget costs nothing more: the next listing is the truth.
 * Returns whether a listing should come soon.
 */
static bool apply_hint(struct lfs_sync *s, const struct lfs_meta_hint *h)
{
	pthread_mutex_lock(&s->lock);
	struct sync_ledger *sl = s->ledgers;
	while (sl && strcmp(sl->enc, h->enc))
		sl = sl->next;
	pthread_mutex_unlock(&s->lock);
	if (!sl || !sl->loaded)
		return true; /* not known here yet: a listing will tell */
	struct lfs_ledger *l = s->hooks.ledger(s->hooks.ctx, sl->name);
	if (!l)
		return false;
	struct lfs_blockstore *bs = lfs_ledger_store(l);
	if (lfs_sync_applied(sl, l, &h->car) ||
	    lfs_sync_car_flags(sl, &h->car) & CAR_BAD ||
	    lfs_sync_car_flags(sl, &h->car) & CAR_WAITING)
		return false;
	if (!hint_budget(s))
		return true;
	uint8_t *bytes = NULL;
	size_t len = 0;
	bool bad = false;
	int r = lfs_sync_fetch_setup(s, sl);
	if (!r)
		r = lfs_sync_fetch_car(&bytes, &len, &bad, s->store, sl,
				       &h->car);
	if (bad) {
		lfs_sync_reject(s, sl, &h->car, r);
		return false;
	}
	if (r) {
		s->hints_ignored++;
		return r != -ENOENT; /* a lie costs one GET; else: list */
	}
	lfs_sync_note_waiting(s, sl, &h->car);
	r = lfs_blockstore_import(NULL, NULL, bs, &h->car, bytes, len);
	free(bytes);
	if (r == -EBADMSG || r == -EFBIG) {
		lfs_sync_reject(s, sl, &h->car, r);
		return false;
	}
	if (r) {
		lfs_sync_car_set(sl, &h->car, 0, CAR_WAITING);
		return true;
	}
	lfs_sync_note_pushed(s, sl, &h->car);
	struct lfs_cid before, after;
	lfs_ledger_root(l, &before);
	lfs_ledger_ingest_begin(l);
	r = lfs_sync_fetch_apply(s, sl, l, &h->car);
	int erc = lfs_ledger_ingest_end(l);
	lfs_sync_save_waiting(s, sl);
	lfs_ledger_root(l, &after);
	if (r == HEAD_APPLIED && !erc) {
		/* Its writer wrote the records before announcing it. */
		lfs_cidmap_set(&sl->remote_heads, &h->car, 1);
		lfs_cidmap_set(&sl->fresh_heads, &h->car, 1);
		lfs_cidmap_set(&sl->legacy_heads, &h->car, 1);
	}
	if (!lfs_cid_equal(&before, &after)) {
		lfs_sync_mark_active(s);
		if (s->hooks.changed)
			s->hooks.changed(s->hooks.ctx, sl->name, &before,
					 &after);
	}
	return r != HEAD_APPLIED;
}

/* Apply the hints waiting; whether a listing should come soon. */
bool lfs_sync_hint_round(struct lfs_sync *s)
{
	struct lfs_meta_hint *h = malloc(HINTS_MAX * sizeof(*h));
	bool poll = false;
	size_t n = h ? lfs_meta_take(s->meta, h, HINTS_MAX, &poll) : 0;
	if (!n) {
		free(h);
		return poll || !h;
	}
	pthread_mutex_lock(&s->round_lock);
	if (s->store)
		for (size_t i = 0; i < n; i++)
			poll |= apply_hint(s, &h[i]);
	pthread_mutex_unlock(&s->round_lock);
	free(h);
	return poll;
}
