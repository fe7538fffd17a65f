#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "sync_int.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "errmsg.h"
#include "log.h"
#include "timefmt.h"

#define DISCOVERY_MS  600000 /* list ledgers/ (older writers' markers) */
#define SWEEP_MS      300000 /* one ledger's legacy head records */
#define MISSING_SHOWN 16     /* missing CAR files listed in status */

/* Something moved here or on the store: poll fast for a while. */
void lfs_sync_mark_active(struct lfs_sync *s)
{
	pthread_mutex_lock(&s->lock);
	s->active_until = lfs_mono_ms() + ACTIVE_MS;
	pthread_mutex_unlock(&s->lock);
}

static char *encode_name(const char *name)
{
	static const char hex[] = "0123456789ABCDEF";
	char *out = malloc(strlen(name) * 3 + 1), *p = out;
	if (!out)
		return NULL;
	for (const unsigned char *s = (const unsigned char *)name; *s; s++) {
		if ((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		    (*s >= '0' && *s <= '9') || *s == '-' || *s == '_' ||
		    (*s == '.' && s != (const unsigned char *)name)) {
			*p++ = (char)*s;
		} else {
			*p++ = '%';
			*p++ = hex[*s >> 4];
			*p++ = hex[*s & 15];
		}
	}
	*p = '\0';
	return out;
}

/* Caller holds s->lock. */
static struct sync_ledger *sl_get(struct lfs_sync *s, const char *name)
{
	for (struct sync_ledger *sl = s->ledgers; sl; sl = sl->next)
		if (!strcmp(sl->name, name))
			return sl;
	struct sync_ledger *sl = calloc(1, sizeof(*sl));
	if (!sl)
		return NULL;
	sl->name = strdup(name);
	sl->enc = encode_name(name);
	if (!sl->name || !sl->enc) {
		free(sl->name);
		free(sl->enc);
		free(sl);
		return NULL;
	}
	lfs_cidmap_init(&sl->pushed);
	lfs_cidmap_init(&sl->cars);
	lfs_cidmap_init(&sl->retry);
	lfs_cidmap_init(&sl->remote_heads);
	lfs_cidmap_init(&sl->fresh_heads);
	lfs_cidmap_init(&sl->legacy_heads);
	lfs_cidmap_init(&sl->bad_records);
	lfs_cidmap_init(&sl->unwaited);
	lfs_cidmap_init(&sl->missing);
	lfs_cidmap_init(&sl->unmissed);
	lfs_cidmap_init(&sl->needed);
	sl->pushed_fd = -1;
	sl->owner = s;
	sl->next = s->ledgers;
	s->ledgers = sl;
	return sl;
}

int lfs_sync_keys_add(struct keys *k, const struct lfs_cid *c)
{
	if (k->n == k->cap) {
		size_t cap = k->cap ? k->cap * 2 : 16;
		void *p = realloc(k->v, cap * sizeof(*k->v));
		if (!p)
			return -ENOMEM;
		k->v = p;
		k->cap = cap;
	}
	k->v[k->n++] = *c;
	return 0;
}

int lfs_sync_collect_cid(void *ctx, const char *key)
{
	const char *slash = strrchr(key, '/');
	struct lfs_cid c;
	if (!slash || lfs_cid_from_string(&c, slash + 1) ||
	    c.codec != LFS_CODEC_RAW)
		return 0; /* not ours: ignore */
	return lfs_sync_keys_add(ctx, &c);
}

void lfs_sync_car_key(char *out, size_t n, struct sync_ledger *sl,
		      const char *kind, const struct lfs_cid *c)
{
	char cs[LFS_CID_STRLEN + 1];
	lfs_cid_to_string(cs, c);
	snprintf(out, n, "%s/%s/%s", sl->enc, kind, cs);
}

/*
 * The key of CAR c's head record: "heads/<enc>~<cid>" (all ledgers' records
 * under one prefix, listed with one request), or in the legacy layout
 * "<enc>/head/<cid>" (one listing per ledger; still written, for older
 * versions, and read in the slow sweep).
 */
void lfs_sync_record_key(char *out, size_t n, struct sync_ledger *sl,
			 const struct lfs_cid *c, bool legacy)
{
	char cs[LFS_CID_STRLEN + 1];
	lfs_cid_to_string(cs, c);
	if (legacy)
		snprintf(out, n, "%s/head/%s", sl->enc, cs);
	else
		snprintf(out, n, HEADS_PREFIX "%s~%s", sl->enc, cs);
}

/* ---- rounds ---- */

/* Publish how the round went for sl; log a failure when it changes. */
static void finish(struct lfs_sync *s, struct sync_ledger *sl, int rc,
		   size_t unapplied)
{
	char msg[sizeof(sl->last_error)] = "";
	if (rc == -ENOKEY)
		snprintf(msg, sizeof(msg),
			 "no key on this machine: import it with `ledgerfs "
			 "key import %s lfskey1:...`",
			 sl->name);
	else if (rc)
		snprintf(msg, sizeof(msg), "%s", lfs_errmsg(rc));
	else if (unapplied)
		snprintf(msg, sizeof(msg),
			 "incomplete: %zu remote head%s not applied yet: %s",
			 unapplied, unapplied == 1 ? "" : "s",
			 sl->why[0] ? sl->why : "will try again");
	if (!rc && !unapplied)
		sl->why[0] = '\0';
	pthread_mutex_lock(&s->lock);
	bool changed = strcmp(msg, sl->logged_error) != 0;
	snprintf(sl->last_error, sizeof(sl->last_error), "%s", msg);
	snprintf(sl->logged_error, sizeof(sl->logged_error), "%s", msg);
	sl->last_rc = rc;
	sl->unapplied = rc ? sl->unapplied : unapplied;
	sl->rejected = sl->nbad;
	sl->round_gen = s->generation + 1;
	pthread_mutex_unlock(&s->lock);
	if (changed && rc && rc != -ENOKEY)
		lfs_warn("sync of ledger '%s' with %s: %s", sl->name, s->shown,
			 msg);
	else if (changed && !msg[0])
		lfs_info("sync of ledger '%s' with %s: up to date again",
			 sl->name, s->shown);
}

/*
 * One ledger's round, from the listing lst. store_err: the store already
 * failed this round (it is unreachable, or refuses us): only count the
 * outbox. swept: also list its records in the legacy layout (a ledger
 * never swept by this process always is).
 */
static int round_one(struct lfs_sync *s, const char *name, int store_err,
		     const struct heads_listing *lst, bool swept)
{
	pthread_mutex_lock(&s->lock);
	struct sync_ledger *sl = sl_get(s, name);
	pthread_mutex_unlock(&s->lock);
	if (!sl)
		return -ENOMEM;
	struct lfs_ledger *l = s->hooks.ledger(s->hooks.ctx, name);
	if (!l) {
		finish(s, sl, -ENOKEY, 0);
		return 0;
	}
	struct lfs_blockstore *bs = lfs_ledger_store(l);
	if (!sl->loaded) {
		lfs_sync_load_state(s, sl, bs);
		sl->loaded = true;
	}
	size_t pending = 0, unapplied = 0;
	/* Counted before any network, so it is right while the store is
	 * down too. */
	if (!lfs_sync_count_outbox(&pending, sl, bs))
		lfs_sync_set_pending(s, sl, pending);
	int rc = store_err;
	if (!rc && (swept || !sl->swept))
		rc = lfs_sync_sweep(s, sl);
	struct keys k = {0};
	if (!rc)
		rc = lfs_sync_round_heads(&k, sl, lst);
	if (!rc)
		rc = lfs_sync_pull(s, sl, l, &k, &unapplied);
	free(k.v);
	if (!rc)
		rc = lfs_sync_push(s, sl, l);
	lfs_sync_save_waiting(s, sl);
	lfs_sync_save_missing(s, sl);
	finish(s, sl, rc, unapplied);
	return rc;
}

/* Unreachable, refusing us, or stopping: so it is for every ledger. */
static bool store_wide(int r)
{
	return r == -EAGAIN || r == -EACCES || r == -EPERM || r == -ECANCELED;
}

int lfs_sync_round(struct lfs_sync *s, const char *name)
{
	pthread_mutex_lock(&s->round_lock);
	int rc = 0;
	if (!s->store && (rc = lfs_store_open(&s->store, s->url))) {
		lfs_error("cannot open the remote store %s: %s", s->shown,
			  strerror(-rc));
		pthread_mutex_unlock(&s->round_lock);
		return rc;
	}
	/* One request for every ledger's head records... */
	struct heads_listing lst = {0};
	int r = lfs_store_list(s->store, HEADS_PREFIX, lfs_sync_listing_collect,
			       &lst);
	int store_err = r == -ENOENT ? 0 : r;
	if (store_err && !store_wide(r))
		lfs_warn("cannot list the head records on %s: %s", s->shown,
			 lfs_errmsg(r));
	if (lst.n)
		qsort(lst.v, lst.n, sizeof(*lst.v), lfs_sync_listing_cmp);
	if (!store_err && (!s->listed || lst.hash != s->listing_hash)) {
		if (s->listed)
			lfs_sync_mark_active(s);
		s->listing_hash = lst.hash;
		s->listed = true;
	}
	int64_t now = lfs_mono_ms();
	if (!name) {
		for (size_t i = 0; !store_err && i < lst.n; i++)
			if (!i || strcmp(lst.v[i].enc, lst.v[i - 1].enc))
				lfs_sync_discover_enc(s, lst.v[i].enc);
		/* ...and, slowly, the ledgers older versions announce. */
		if (!store_err && now >= s->next_discovery) {
			r = lfs_store_list(s->store, "ledgers/",
					   lfs_sync_discover, s);
			if (store_wide(r))
				store_err = r;
			else if (r && r != -ENOENT)
				lfs_warn("cannot list the ledgers on %s: %s",
					 s->shown, lfs_errmsg(r));
			if (!r || r == -ENOENT)
				s->next_discovery = now + DISCOVERY_MS;
		}
		rc = store_err;
		char **names;
		size_t n;
		if (!(r = lfs_home_list(&names, &n, s->home))) {
			/* One ledger's legacy records every SWEEP_MS. */
			size_t swept = n;
			if (n && !store_err && now >= s->next_sweep) {
				swept = s->sweep_pos++ % n;
				s->next_sweep = now + SWEEP_MS;
			}
			for (size_t i = 0; i < n; i++) {
				r = round_one(s, names[i], store_err, &lst,
					      i == swept);
				if (r && !rc)
					rc = r;
			}
			lfs_home_list_free(names, n);
		} else if (!rc) {
			rc = r;
		}
	} else {
		rc = round_one(s, name, store_err, &lst, true);
	}
	lfs_sync_listing_release(&lst);
	pthread_mutex_lock(&s->lock);
	s->generation++;
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->lock);
	pthread_mutex_unlock(&s->round_lock);
	return rc;
}

static void meta_wake(void *ctx)
{
	struct lfs_sync *s = ctx;
	pthread_mutex_lock(&s->lock);
	s->hinted = true;
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->lock);
}

/* The interval after a round that returned rc (under s->lock). */
static unsigned next_delay(struct lfs_sync *s, int rc, unsigned delay)
{
	unsigned idle = s->poll_ms > IDLE_MS ? s->poll_ms : IDLE_MS;
	/* A failed round (the store down, or refusing us) is retried with
	 * a backoff that doubles from poll_ms; a kick still runs one at
	 * once. */
	if (rc) {
		s->fail_ms = !s->fail_ms                       ? s->poll_ms
			     : s->fail_ms * 2 > MAX_BACKOFF_MS ? MAX_BACKOFF_MS
							       : s->fail_ms * 2;
		return s->fail_ms;
	}
	s->fail_ms = 0;
	if (lfs_mono_ms() < s->active_until || delay < s->poll_ms)
		return s->poll_ms;
	return delay * 2 > idle ? idle : delay * 2;
}

/*
 * Rounds every delay_ms: poll_ms while something moved recently (a local
 * commit, a change listed or pulled, ACTIVE_MS), then doubling up to
 * IDLE_MS; a kick (a local commit, a waiter) runs one at once and makes
 * the polling fast again. Hints from the endpoint are applied as they
 * come, between rounds.
 */
static void *sync_thread(void *arg)
{
	struct lfs_sync *s = arg;
	int64_t next = 0, last = 0;
	pthread_mutex_lock(&s->lock);
	s->delay_ms = s->poll_ms;
	while (!s->stopping) {
		bool full = s->kicked || lfs_mono_ms() >= next;
		bool hinted = s->hinted;
		s->kicked = s->hinted = false;
		pthread_mutex_unlock(&s->lock);
		if (hinted && s->meta && lfs_sync_hint_round(s) && !full) {
			/* The endpoint says: look at the store soon. */
			if (last + s->poll_ms < next)
				next = last + s->poll_ms;
			full = lfs_mono_ms() >= next;
		}
		int rc = full ? lfs_sync_round(s, NULL) : 0;
		pthread_mutex_lock(&s->lock);
		if (full) {
			last = lfs_mono_ms();
			s->delay_ms = next_delay(s, rc, s->delay_ms);
			next = last + s->delay_ms;
		}
		while (!s->kicked && !s->hinted && !s->stopping) {
			int64_t left = next - lfs_mono_ms();
			if (left <= 0)
				break;
			struct timespec ts;
			clock_gettime(CLOCK_REALTIME, &ts);
			ts.tv_sec += left / 1000;
			ts.tv_nsec += (long)(left % 1000) * 1000000;
			if (ts.tv_nsec >= 1000000000) {
				ts.tv_sec++;
				ts.tv_nsec -= 1000000000;
			}
			pthread_cond_timedwait(&s->cond, &s->lock, &ts);
		}
	}
	pthread_mutex_unlock(&s->lock);
	return NULL;
}

int lfs_sync_new(struct lfs_sync **out, struct lfs_home *home, const char *url,
		 const struct lfs_sync_hooks *hooks)
{
	struct lfs_sync *s = calloc(1, sizeof(*s));
	if (!s || !(s->url = strdup(url))) {
		free(s);
		return -ENOMEM;
	}
	s->home = home;
	s->hooks = *hooks;
	pthread_mutex_init(&s->round_lock, NULL);
	pthread_mutex_init(&s->lock, NULL);
	pthread_cond_init(&s->cond, NULL);
	/* Check the URL now, for a clear error at startup. */
	int rc = lfs_store_open(&s->store, url);
	if (!rc && !(s->shown = strdup(s->store->url)))
		rc = -ENOMEM;
	if (rc) {
		lfs_sync_free(s);
		return rc;
	}
	*out = s;
	return 0;
}

int lfs_sync_start(struct lfs_sync *s, unsigned poll_ms)
{
	s->poll_ms = poll_ms ? poll_ms : 1000;
	s->running = true;
	if (s->meta) {
		int mrc = lfs_meta_start(s->meta, meta_wake, s);
		if (mrc)
			lfs_warn("cannot start listening to %s: %s; polling "
				 "the store",
				 lfs_meta_shown(s->meta), strerror(-mrc));
	}
	int rc = pthread_create(&s->thread, NULL, sync_thread, s);
	if (rc)
		s->running = false;
	return -rc;
}

void lfs_sync_kick(struct lfs_sync *s)
{
	pthread_mutex_lock(&s->lock);
	s->kicked = true;
	s->active_until = lfs_mono_ms() + ACTIVE_MS;
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->lock);
}

void lfs_sync_stop(struct lfs_sync *s)
{
	if (!s->running)
		return;
	pthread_mutex_lock(&s->lock);
	s->stopping = true;
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->lock);
	if (s->meta)
		lfs_meta_stop(s->meta);
	/* The thread may be inside a request to a store that hangs. */
	if (s->store)
		lfs_store_cancel_at(s->store, lfs_mono_us());
	pthread_mutex_lock(&s->lock);
	for (size_t i = 0; i < PREFETCH_THREADS; i++)
		if (s->fetchers[i])
			lfs_store_cancel_at(s->fetchers[i], lfs_mono_us());
	pthread_mutex_unlock(&s->lock);
	pthread_join(s->thread, NULL);
	s->running = false;
	if (s->store)
		lfs_store_cancel_at(s->store,
				    lfs_mono_us() +
					    (int64_t)LFS_SYNC_FINAL_MS * 1000);
}

void lfs_sync_free(struct lfs_sync *s)
{
	if (!s)
		return;
	lfs_sync_stop(s);
	lfs_meta_free(s->meta);
	lfs_store_free(s->store);
	while (s->ledgers) {
		struct sync_ledger *sl = s->ledgers;
		s->ledgers = sl->next;
		lfs_cidmap_release(&sl->pushed);
		lfs_cidmap_release(&sl->cars);
		lfs_cidmap_release(&sl->retry);
		lfs_cidmap_release(&sl->remote_heads);
		lfs_cidmap_release(&sl->fresh_heads);
		lfs_cidmap_release(&sl->legacy_heads);
		lfs_cidmap_release(&sl->bad_records);
		lfs_cidmap_release(&sl->unwaited);
		lfs_cidmap_release(&sl->missing);
		lfs_cidmap_release(&sl->unmissed);
		lfs_cidmap_release(&sl->needed);
		if (sl->pushed_fd >= 0)
			close(sl->pushed_fd);
		sodium_memzero(sl->key, sizeof(sl->key));
		free(sl->fetch_dir);
		free(sl->name);
		free(sl->enc);
		free(sl);
	}
	pthread_mutex_destroy(&s->round_lock);
	pthread_mutex_destroy(&s->lock);
	pthread_cond_destroy(&s->cond);
	free(s->url);
	free(s->shown);
	free(s);
}

int lfs_sync_use_meta(struct lfs_sync *s, const char *url)
{
	if (s->meta || s->running)
		return -EINVAL;
	return lfs_meta_open(&s->meta, url, s->shown);
}

uint64_t lfs_sync_wait_target(struct lfs_sync *s)
{
	pthread_mutex_lock(&s->lock);
	/* The round running now may have started before the caller's last
	 * commit; the one after it has not: it ends at generation + 2. */
	uint64_t target = s->generation + 2;
	s->kicked = true;
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->lock);
	return target;
}

int lfs_sync_wait_until(struct lfs_sync *s, const char *name, uint64_t target,
			int timeout_ms)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += timeout_ms / 1000;
	ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000;
	if (ts.tv_nsec >= 1000000000) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000;
	}
	pthread_mutex_lock(&s->lock);
	int rc = 0;
	for (;;) {
		struct sync_ledger *sl = sl_get(s, name);
		if (sl && sl->round_gen >= target && s->generation >= target) {
			int e = sl->last_rc;
			if (!e && sl->pushed_gen >= target) {
				rc = sl->unapplied ? -EINPROGRESS : 0;
				break;
			}
			/* Down or busy: wait for a round that works. Any
			 * other failure is the answer. */
			if (e && e != -EAGAIN && e != -ECANCELED) {
				rc = e;
				break;
			}
		}
		if (s->stopping || !s->running) {
			rc = -ESHUTDOWN;
			break;
		}
		/* No kick here: a store that is down must not turn waiting
		 * into back-to-back rounds; the thread's backoff decides. */
		if (pthread_cond_timedwait(&s->cond, &s->lock, &ts) ==
		    ETIMEDOUT) {
			rc = -ETIMEDOUT;
			break;
		}
	}
	pthread_mutex_unlock(&s->lock);
	return rc;
}

int lfs_sync_wait(struct lfs_sync *s, const char *name, int timeout_ms)
{
	return lfs_sync_wait_until(s, name, lfs_sync_wait_target(s),
				   timeout_ms);
}

static json_t *time_json(int64_t t)
{
	if (!t)
		return json_null();
	char s[LFS_TIME_ISO_MAX];
	lfs_time_iso(s, t);
	return json_string(s);
}

json_t *lfs_sync_status(struct lfs_sync *s, const char *name)
{
	pthread_mutex_lock(&s->lock);
	struct sync_ledger *sl = sl_get(s, name);
	const char *state = !sl || !sl->round_gen    ? "starting"
			    : sl->last_rc == -ENOKEY ? "no key"
			    : sl->last_rc            ? "failing"
			    : sl->unapplied          ? "incomplete"
						     : "synced";
	json_t *j =
		sl ? json_pack("{s:s,s:s,s:I,s:I,s:o,s:o,s:s?,s:I,s:s?,s:I}",
			       "remote", s->shown, "state", state,
			       "pending_uploads", (json_int_t)sl->pending,
			       "unapplied_heads", (json_int_t)sl->unapplied,
			       "last_push", time_json(sl->last_push_us),
			       "last_poll", time_json(sl->last_poll_us),
			       "last_error",
			       sl->last_error[0] ? sl->last_error : NULL,
			       "rejected_files", (json_int_t)sl->rejected,
			       "last_rejected",
			       sl->last_rejected[0] ? sl->last_rejected : NULL,
			       "ignored_records",
			       (json_int_t)sl->ignored_records)
		   : NULL;
	if (j && sl->missing.count) {
		json_t *m = json_array();
		for (size_t i = 0; m && i < sl->missing.nslots; i++) {
			struct lfs_cidmap_slot *e = &sl->missing.slots[i];
			if (!e->used || !e->value ||
			    json_array_size(m) >= MISSING_SHOWN)
				continue;
			char cs[LFS_CID_STRLEN + 1], when[LFS_TIME_ISO_MAX];
			lfs_cid_to_string(cs, &e->cid);
			lfs_time_iso(when, (int64_t)e->value * 1000000);
			json_array_append_new(m, json_pack("{s:s,s:s}", "car",
							   cs, "since", when));
		}
		if (m && json_array_size(m))
			json_object_set_new(j, "missing_files", m);
		else
			json_decref(m);
	}
	if (j) {
		json_object_set_new(
			j, "meta",
			json_string(s->meta ? lfs_meta_state(s->meta)
					    : "the store"));
		if (s->poll_ms) /* a thread polls (not `ledgerfs sync`) */
			json_object_set_new(j, "poll_interval_ms",
					    json_integer(s->delay_ms
								 ? s->delay_ms
								 : s->poll_ms));
	}
	if (j && sl->catchup_files)
		json_object_set_new(
			j, "catching_up",
			json_pack("{s:I,s:I,s:I}", "files",
				  (json_int_t)sl->catchup_files, "fetched",
				  (json_int_t)sl->catchup_fetched, "applied",
				  (json_int_t)sl->catchup_applied));
	pthread_mutex_unlock(&s->lock);
	return j;
}
