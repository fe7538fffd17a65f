#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "sync.h"

#include "errmsg.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "blockstore.h"
#include "cidmap.h"
#include "clock.h"
#include "log.h"

#define MAX_BACKOFF_MS    30000
#define MAX_CHAIN         100000 /* parent CARs fetched for one head */
#define MAX_MISSING_TRIES 10     /* rounds a named CAR may be unreadable */

struct sync_ledger {
	char *name;
	char *enc;                 /* name percent-encoded for keys */
	struct lfs_cidmap pushed;  /* CAR files the remote has */
	struct lfs_cidmap applied; /* remote CARs ingested here */
	struct lfs_cidmap bad;     /* files that failed a check */
	struct lfs_cidmap missing; /* CAR -> rounds it could not be read */
	struct lfs_cidmap remote_heads;
	bool loaded, marker_done;
	int64_t last_push_us, last_poll_us;
	char last_error[300];
	size_t pending;
	uint64_t pushed_gen; /* round generation of the last full push */
	struct sync_ledger *next;
};

struct lfs_sync {
	struct lfs_home *home;
	char *url;   /* may hold credentials: never print it */
	char *shown; /* the URL without credentials, for messages */
	struct lfs_sync_hooks hooks;
	struct lfs_store *store; /* used under round_lock only */
	pthread_mutex_t round_lock;
	pthread_mutex_t lock; /* ledgers' status, kick, generation */
	pthread_cond_t cond;
	struct sync_ledger *ledgers;
	pthread_t thread;
	bool running, kicked, stopping;
	unsigned poll_ms;
	uint64_t generation;
};

static int64_t now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
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
	lfs_cidmap_init(&sl->applied);
	lfs_cidmap_init(&sl->bad);
	lfs_cidmap_init(&sl->missing);
	lfs_cidmap_init(&sl->remote_heads);
	sl->next = s->ledgers;
	s->ledgers = sl;
	return sl;
}

static void set_error(struct lfs_sync *s, struct sync_ledger *sl,
		      const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void set_error(struct lfs_sync *s, struct sync_ledger *sl,
		      const char *fmt, ...)
{
	char msg[300];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	pthread_mutex_lock(&s->lock);
	snprintf(sl->last_error, sizeof(sl->last_error), "%s", msg);
	pthread_mutex_unlock(&s->lock);
	lfs_warn("sync of ledger '%s' with %s: %s", sl->name, s->shown, msg);
}

/* ---- the outbox: which local CARs the remote has ---- */

static char *pushed_path(struct lfs_sync *s, struct sync_ledger *sl)
{
	size_t n = strlen(s->home->dir) + strlen(sl->name) + 32;
	char *p = malloc(n);
	if (p)
		snprintf(p, n, "%s/state/%s", s->home->dir, sl->name);
	if (p)
		mkdir(p, 0700);
	if (p)
		strcat(p, "/pushed");
	return p;
}

static void load_pushed(struct lfs_sync *s, struct sync_ledger *sl)
{
	char *p = pushed_path(s, sl);
	FILE *f = p ? fopen(p, "r") : NULL;
	char line[128];
	while (f && fgets(line, sizeof(line), f)) {
		line[strcspn(line, "\n")] = '\0';
		struct lfs_cid c;
		if (!lfs_cid_from_string(&c, line))
			lfs_cidmap_set(&sl->pushed, &c, 1);
	}
	if (f)
		fclose(f);
	free(p);
	sl->loaded = true;
}

static void note_pushed(struct lfs_sync *s, struct sync_ledger *sl,
			const struct lfs_cid *car)
{
	lfs_cidmap_set(&sl->pushed, car, 1);
	char *p = pushed_path(s, sl);
	int fd = p ? open(p, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600)
		   : -1;
	if (fd >= 0) {
		char line[LFS_CID_STRLEN + 2];
		lfs_cid_to_string(line, car);
		strcat(line, "\n");
		if (write(fd, line, strlen(line)) < 0)
			lfs_warn("cannot record an upload in %s: %s", p,
				 strerror(errno));
		close(fd);
	}
	free(p);
}

/* ---- pull ---- */

struct keys {
	struct lfs_cid *v;
	size_t n, cap;
};

static int collect_cid(void *ctx, const char *key)
{
	struct keys *k = ctx;
	const char *slash = strrchr(key, '/');
	struct lfs_cid c;
	if (!slash || lfs_cid_from_string(&c, slash + 1) ||
	    c.codec != LFS_CODEC_RAW)
		return 0; /* not ours: ignore */
	if (k->n == k->cap) {
		size_t cap = k->cap ? k->cap * 2 : 16;
		void *p = realloc(k->v, cap * sizeof(*k->v));
		if (!p)
			return -ENOMEM;
		k->v = p;
		k->cap = cap;
	}
	k->v[k->n++] = c;
	return 0;
}

static void key_for(char *out, size_t n, struct sync_ledger *sl,
		    const char *kind, const struct lfs_cid *c)
{
	char cs[LFS_CID_STRLEN + 1];
	lfs_cid_to_string(cs, c);
	snprintf(out, n, "%s/%s/%s", sl->enc, kind, cs);
}

/* Is a head record what it should be: {"car": {"/": <its own name>}}? */
static bool record_ok(const struct lfs_buf *b, const struct lfs_cid *car)
{
	json_error_t err;
	json_t *j = json_loadb((const char *)b->data, b->len, 0, &err);
	const char *named = json_string_value(
		json_object_get(json_object_get(j, "car"), "/"));
	struct lfs_cid c;
	bool ok = named && !lfs_cid_from_string(&c, named) &&
		  lfs_cid_equal(&c, car) &&
		  (!json_object_get(j, "parents") ||
		   json_is_array(json_object_get(j, "parents")));
	json_decref(j);
	return ok;
}

/* Fetch and ingest CAR c and, first, whatever parent CARs it needs. */
static int fetch_apply(struct lfs_sync *s, struct sync_ledger *sl,
		       struct lfs_ledger *l, const struct lfs_cid *c)
{
	struct lfs_blockstore *bs = lfs_ledger_store(l);
	struct lfs_cid *stack = malloc(sizeof(*stack));
	size_t n = 1, cap = 1;
	int rc = stack ? 0 : -ENOMEM;
	if (stack)
		stack[0] = *c;
	while (!rc && n > 0) {
		struct lfs_cid top = stack[n - 1], missing;
		if (lfs_cidmap_get(&sl->bad, &top, NULL)) {
			rc = -EBADMSG;
			break;
		}
		uint8_t *bytes = NULL;
		size_t len = 0;
		struct lfs_buf b;
		lfs_buf_init(&b, LFS_CAR_MAX_FILE);
		if (lfs_blockstore_has_car(bs, &top)) {
			rc = lfs_blockstore_read_car(&bytes, &len, bs, &top);
		} else {
			char key[400];
			key_for(key, sizeof(key), sl, "car", &top);
			rc = lfs_store_get(s->store, key, &b);
			bytes = b.data;
			len = b.len;
		}
		if (!rc)
			rc = lfs_ledger_ingest(l, &top, bytes, len, &missing);
		if (bytes != b.data)
			free(bytes);
		lfs_buf_release(&b);
		char cs[LFS_CID_STRLEN + 1];
		lfs_cid_to_string(cs, &top);
		if (rc == -EAGAIN) {
			bool seen = false;
			for (size_t i = 0; i < n; i++)
				seen |= lfs_cid_equal(&stack[i], &missing);
			if (seen || n >= MAX_CHAIN) {
				set_error(s, sl,
					  "CAR %s: its parents never "
					  "arrive (a cycle?)",
					  cs);
				lfs_cidmap_set(&sl->bad, &top, 1);
				rc = -EBADMSG;
				break;
			}
			if (n == cap) {
				cap *= 2;
				void *p = realloc(stack, cap * sizeof(*stack));
				if (!p) {
					rc = -ENOMEM;
					break;
				}
				stack = p;
			}
			stack[n++] = missing;
			rc = 0;
			continue;
		}
		if (rc == -ENOENT) {
			/* Named by a record but not (yet) readable: try again
			 * in later rounds, then give up on it. */
			uint64_t tries = 0;
			lfs_cidmap_get(&sl->missing, &top, &tries);
			lfs_cidmap_set(&sl->missing, &top, tries + 1);
			if (tries + 1 < MAX_MISSING_TRIES) {
				rc = 0;
				break;
			}
		}
		if (rc == -EBADMSG || rc == -EPROTONOSUPPORT || rc == -ENOENT ||
		    rc == -EFBIG) {
			set_error(s, sl, "rejected CAR %s from the store: %s",
				  cs, lfs_errmsg(rc));
			lfs_cidmap_set(&sl->bad, &top, 1);
			rc = -EBADMSG;
			break;
		}
		if (rc)
			break;
		lfs_cidmap_set(&sl->applied, &top, 1);
		lfs_cidmap_set(&sl->pushed, &top, 1); /* the remote has it */
		n--;
	}
	free(stack);
	return rc;
}

static int pull(struct lfs_sync *s, struct sync_ledger *sl,
		struct lfs_ledger *l)
{
	char prefix[300];
	snprintf(prefix, sizeof(prefix), "%s/head/", sl->enc);
	struct keys k = {0};
	int rc = lfs_store_list(s->store, prefix, collect_cid, &k);
	if (rc) {
		free(k.v);
		return rc;
	}
	lfs_cidmap_release(&sl->remote_heads);
	lfs_cidmap_init(&sl->remote_heads);
	struct lfs_cid before, after;
	lfs_ledger_root(l, &before);
	struct lfs_blockstore *bs = lfs_ledger_store(l);
	for (size_t i = 0; i < k.n && !rc; i++) {
		const struct lfs_cid *c = &k.v[i];
		lfs_cidmap_set(&sl->remote_heads, c, 1);
		if (lfs_cidmap_get(&sl->bad, c, NULL) ||
		    lfs_cidmap_get(&sl->applied, c, NULL))
			continue;
		if (lfs_blockstore_has_car(bs, c) &&
		    lfs_cidmap_get(&sl->pushed, c, NULL)) {
			/* Ours, or fetched and applied before a restart. */
			lfs_cidmap_set(&sl->applied, c, 1);
			continue;
		}
		char key[400], cs[LFS_CID_STRLEN + 1];
		key_for(key, sizeof(key), sl, "head", c);
		lfs_cid_to_string(cs, c);
		struct lfs_buf b;
		lfs_buf_init(&b, 64 << 10);
		int r = lfs_store_get(s->store, key, &b);
		if (!r && !record_ok(&b, c)) {
			set_error(s, sl,
				  "ignored head record %s: not a valid "
				  "head record",
				  cs);
			lfs_cidmap_set(&sl->bad, c, 1);
		} else if (r == -ENOENT) {
			/* Superseded while we listed: fine. */
		} else if (r) {
			rc = r;
		} else if ((r = fetch_apply(s, sl, l, c)) && r != -EBADMSG) {
			rc = r;
		}
		lfs_buf_release(&b);
	}
	free(k.v);
	lfs_ledger_root(l, &after);
	if (!lfs_cid_equal(&before, &after) && s->hooks.changed)
		s->hooks.changed(s->hooks.ctx, sl->name, &before, &after);
	if (!rc) {
		pthread_mutex_lock(&s->lock);
		sl->last_poll_us = now_us();
		pthread_mutex_unlock(&s->lock);
	}
	return rc;
}

/* ---- push ---- */

/* Are all of events ancestors of (or among) heads? */
static bool superseded(struct lfs_ledger *l, const struct lfs_cid *heads,
		       size_t nheads, const struct lfs_cid *events, size_t n)
{
	struct lfs_cid *all = malloc((nheads + n + 1) * sizeof(*all));
	if (!all)
		return false;
	lfs_cid_copy_n(all, heads, nheads);
	lfs_cid_copy_n(all + nheads, events, n);
	struct lfs_blocks b = lfs_ledger_blocks(l);
	int m = lfs_clock_reduce(&b, all, nheads + n);
	bool same = m == (int)nheads;
	for (int i = 0; same && i < m; i++) {
		bool found = false;
		for (size_t j = 0; j < nheads && !found; j++)
			found = lfs_cid_equal(&all[i], &heads[j]);
		same = found;
	}
	free(all);
	return same;
}

static int push(struct lfs_sync *s, struct sync_ledger *sl,
		struct lfs_ledger *l)
{
	struct lfs_blockstore *bs = lfs_ledger_store(l);
	struct lfs_cid *cars = NULL, *hcars = NULL, *heads = NULL;
	size_t ncars = 0, nhcars = 0, nheads = 0;
	int rc = lfs_blockstore_list_cars(&cars, &ncars, bs);
	size_t pending = 0;
	for (size_t i = 0; !rc && i < ncars; i++) {
		if (lfs_cidmap_get(&sl->pushed, &cars[i], NULL))
			continue;
		uint8_t *bytes;
		size_t len;
		char key[400];
		key_for(key, sizeof(key), sl, "car", &cars[i]);
		rc = lfs_blockstore_read_car(&bytes, &len, bs, &cars[i]);
		if (rc == -ENOENT) {
			rc = 0; /* compacted away meanwhile */
			continue;
		}
		if (!rc) {
			rc = lfs_store_put(s->store, key, bytes, len, true);
			if (rc == -EEXIST)
				rc = 0;
			free(bytes);
		}
		if (!rc)
			note_pushed(s, sl, &cars[i]);
		else
			pending++;
	}
	for (size_t i = 0; rc && i < ncars; i++)
		if (!lfs_cidmap_get(&sl->pushed, &cars[i], NULL))
			pending++;
	pthread_mutex_lock(&s->lock);
	sl->pending = pending;
	pthread_mutex_unlock(&s->lock);
	if (!rc && !sl->marker_done) {
		char key[300];
		snprintf(key, sizeof(key), "ledgers/%s", sl->enc);
		rc = lfs_store_put(s->store, key, (const uint8_t *)"", 0, true);
		if (rc == -EEXIST)
			rc = 0;
		sl->marker_done = !rc;
	}
	if (!rc)
		rc = lfs_ledger_head_cars(l, &hcars, &nhcars);
	if (!rc)
		rc = lfs_ledger_heads(l, &heads, &nheads);
	/* New head records first (only for CARs the remote has: a commit
	 * may have landed after the uploads above)... */
	for (size_t i = 0; !rc && i < nhcars; i++) {
		if (lfs_cidmap_get(&sl->remote_heads, &hcars[i], NULL) ||
		    !lfs_cidmap_get(&sl->pushed, &hcars[i], NULL))
			continue;
		char cs[LFS_CID_STRLEN + 1], key[400];
		lfs_cid_to_string(cs, &hcars[i]);
		key_for(key, sizeof(key), sl, "head", &hcars[i]);
		json_t *parents = json_array();
		for (size_t k = 0; parents && k < sl->remote_heads.nslots;
		     k++) {
			struct lfs_cidmap_slot *sl2 =
				&sl->remote_heads.slots[k];
			if (!sl2->used)
				continue;
			char ps[LFS_CID_STRLEN + 1];
			lfs_cid_to_string(ps, &sl2->cid);
			json_array_append_new(parents,
					      json_pack("{s:s}", "/", ps));
		}
		json_t *rec = json_pack("{s:{s:s},s:o}", "car", "/", cs,
					"parents", parents);
		char *text =
			rec ? json_dumps(rec, JSON_COMPACT | JSON_SORT_KEYS)
			    : NULL;
		json_decref(rec);
		rc = text ? lfs_store_put(s->store, key, (const uint8_t *)text,
					  strlen(text), false)
			  : -ENOMEM;
		free(text);
		if (!rc)
			lfs_cidmap_set(&sl->remote_heads, &hcars[i], 1);
	}
	/* ...then drop the records they supersede. */
	struct lfs_arena a;
	lfs_arena_init(&a, 0);
	for (size_t k = 0; !rc && k < sl->remote_heads.nslots; k++) {
		struct lfs_cidmap_slot *slot = &sl->remote_heads.slots[k];
		if (!slot->used)
			continue;
		bool ours = false;
		for (size_t i = 0; i < nhcars && !ours; i++)
			ours = lfs_cid_equal(&hcars[i], &slot->cid);
		if (ours || !lfs_cidmap_get(&sl->applied, &slot->cid, NULL))
			continue;
		struct lfs_car_root root;
		struct lfs_arena_mark m = lfs_arena_mark(&a);
		if (!lfs_blockstore_load(&root, &a, bs, &slot->cid, false) &&
		    superseded(l, heads, nheads, root.head, root.nhead)) {
			char key[400];
			key_for(key, sizeof(key), sl, "head", &slot->cid);
			rc = lfs_store_del(s->store, key);
		}
		lfs_arena_rewind(&a, m);
	}
	lfs_arena_release(&a);
	if (!rc) {
		pthread_mutex_lock(&s->lock);
		sl->last_push_us = now_us();
		sl->pending = 0;
		sl->pushed_gen = s->generation + 1;
		pthread_mutex_unlock(&s->lock);
	}
	free(cars);
	free(hcars);
	free(heads);
	return rc;
}

/* ---- rounds ---- */

static int round_one(struct lfs_sync *s, const char *name)
{
	pthread_mutex_lock(&s->lock);
	struct sync_ledger *sl = sl_get(s, name);
	pthread_mutex_unlock(&s->lock);
	if (!sl)
		return -ENOMEM;
	struct lfs_ledger *l = s->hooks.ledger(s->hooks.ctx, name);
	if (!l) {
		pthread_mutex_lock(&s->lock);
		snprintf(sl->last_error, sizeof(sl->last_error),
			 "no key on this machine: import it with `ledgerfs "
			 "key import %s lfskey1:...`",
			 name);
		pthread_mutex_unlock(&s->lock);
		return 0;
	}
	if (!sl->loaded)
		load_pushed(s, sl);
	int rc = pull(s, sl, l);
	if (!rc)
		rc = push(s, sl, l);
	if (rc)
		set_error(s, sl, "%s", lfs_errmsg(rc));
	else {
		pthread_mutex_lock(&s->lock);
		sl->last_error[0] = '\0';
		pthread_mutex_unlock(&s->lock);
	}
	return rc;
}

/* Names of remote ledgers: create local stores for those we lack, so
 * they are listed (and say "no key"). */
static int discover(void *ctx, const char *key)
{
	struct lfs_sync *s = ctx;
	const char *enc = key + strlen("ledgers/");
	char name[LFS_LEDGER_NAME_MAX + 1];
	size_t n = 0;
	for (const char *p = enc; *p && n < sizeof(name) - 1; p++) {
		if (*p == '%' && p[1] && p[2]) {
			char hex[3] = {p[1], p[2], 0};
			name[n++] = (char)strtol(hex, NULL, 16);
			p += 2;
		} else {
			name[n++] = *p;
		}
	}
	name[n] = '\0';
	if (!lfs_home_valid_name(name))
		return 0;
	char *dir = lfs_home_ledger_dir(s->home, name);
	if (dir && mkdir(dir, 0700) == 0)
		lfs_info("found ledger '%s' on %s", name, s->shown);
	free(dir);
	return 0;
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
	if (!name) {
		int r = lfs_store_list(s->store, "ledgers/", discover, s);
		if (r && r != -ENOENT)
			rc = r;
		char **names;
		size_t n;
		if (!(r = lfs_home_list(&names, &n, s->home))) {
			for (size_t i = 0; i < n; i++) {
				r = round_one(s, names[i]);
				if (r && !rc)
					rc = r;
			}
			lfs_home_list_free(names, n);
		} else if (!rc) {
			rc = r;
		}
	} else {
		rc = round_one(s, name);
	}
	pthread_mutex_lock(&s->lock);
	s->generation++;
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->lock);
	pthread_mutex_unlock(&s->round_lock);
	return rc;
}

static void *sync_thread(void *arg)
{
	struct lfs_sync *s = arg;
	unsigned delay = s->poll_ms;
	pthread_mutex_lock(&s->lock);
	while (!s->stopping) {
		pthread_mutex_unlock(&s->lock);
		int rc = lfs_sync_round(s, NULL);
		pthread_mutex_lock(&s->lock);
		delay = rc == -EAGAIN
				? (delay * 2 > MAX_BACKOFF_MS ? MAX_BACKOFF_MS
							      : delay * 2)
				: s->poll_ms;
		if (s->stopping)
			break;
		if (!s->kicked) {
			struct timespec ts;
			clock_gettime(CLOCK_REALTIME, &ts);
			ts.tv_sec += delay / 1000;
			ts.tv_nsec += (long)(delay % 1000) * 1000000;
			if (ts.tv_nsec >= 1000000000) {
				ts.tv_sec++;
				ts.tv_nsec -= 1000000000;
			}
			while (!s->kicked && !s->stopping &&
			       pthread_cond_timedwait(&s->cond, &s->lock,
						      &ts) != ETIMEDOUT)
				;
		}
		s->kicked = false;
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
	int rc = pthread_create(&s->thread, NULL, sync_thread, s);
	if (rc)
		s->running = false;
	return -rc;
}

void lfs_sync_kick(struct lfs_sync *s)
{
	pthread_mutex_lock(&s->lock);
	s->kicked = true;
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
	pthread_join(s->thread, NULL);
	s->running = false;
}

void lfs_sync_free(struct lfs_sync *s)
{
	if (!s)
		return;
	lfs_sync_stop(s);
	lfs_store_free(s->store);
	while (s->ledgers) {
		struct sync_ledger *sl = s->ledgers;
		s->ledgers = sl->next;
		lfs_cidmap_release(&sl->pushed);
		lfs_cidmap_release(&sl->applied);
		lfs_cidmap_release(&sl->bad);
		lfs_cidmap_release(&sl->missing);
		lfs_cidmap_release(&sl->remote_heads);
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
		if (sl && sl->pushed_gen >= target && s->generation >= target)
			break;
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
	char s[64];
	time_t sec = (time_t)(t / 1000000);
	struct tm tm;
	gmtime_r(&sec, &tm);
	strftime(s, sizeof(s), "%Y-%m-%dT%H:%M:%SZ", &tm);
	return json_string(s);
}

json_t *lfs_sync_status(struct lfs_sync *s, const char *name)
{
	pthread_mutex_lock(&s->lock);
	struct sync_ledger *sl = sl_get(s, name);
	json_t *j = sl ? json_pack("{s:s,s:I,s:o,s:o,s:s?,s:I}", "remote",
				   s->shown, "pending_uploads",
				   (json_int_t)sl->pending, "last_push",
				   time_json(sl->last_push_us), "last_poll",
				   time_json(sl->last_poll_us), "last_error",
				   sl->last_error[0] ? sl->last_error : NULL,
				   "rejected_files", (json_int_t)sl->bad.count)
		       : NULL;
	pthread_mutex_unlock(&s->lock);
	return j;
}
