#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "sync_int.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "errmsg.h"
#include "fileio.h"
#include "log.h"
#include "timefmt.h"

#define MAX_CHAIN  100000 /* CARs fetched for one head in one round */
#define RECORD_MAX ((size_t)64 << 10) /* a head record */

/*
 * Catching up (a fresh replica, or one long offline): instead of walking a
 * chain of parent CARs one request at a time, list the ledger's CAR files
 * once and fetch every one missing here over PREFETCH_THREADS connections
 * at once, then apply them in one pass (apply_kept()). Done when a
 * chain of PREFETCH_DEPTH CARs is missing, or 2 on a replica that has
 * nothing yet (not at once: a compacted ledger is one head CAR holding
 * everything and naming no parent, and the files it replaced may still be
 * on the store), and only when at least PREFETCH_MIN files are missing.
 */
#define PREFETCH_MIN   16
#define PREFETCH_DEPTH 16
#define PROGRESS_EVERY 1000 /* log a line every so many CAR files */

/* A CAR file larger than this is fetched to a file, not to memory. */
#define CAR_IN_MEMORY ((size_t)4 << 20)
/* Why a CAR in a format this build cannot read waits (its CID, why). */
#define NEWER_FORMAT "CAR %s: %s (a newer ledgerfs may read it); will try again"

/* ---- pull ---- */

bool lfs_sync_record_ok(const uint8_t *p, size_t len, const struct lfs_cid *car)
{
	json_error_t err;
	json_t *j = json_loadb((const char *)p, len, 0, &err);
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

static void log_car(struct sync_ledger *sl, const struct lfs_cid *c,
		    const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int defer_car(struct lfs_sync *s, struct sync_ledger *sl,
		     const struct lfs_cid *c, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static void vlog_car(struct sync_ledger *sl, const struct lfs_cid *c,
		     const char *fmt, va_list ap)
{
	vsnprintf(sl->why, sizeof(sl->why), fmt, ap);
	if (lfs_sync_car_flags(sl, c) & CAR_LOGGED)
		return;
	lfs_sync_car_set(sl, c, CAR_LOGGED, 0);
	lfs_warn("sync of ledger '%s': %s", sl->name, sl->why);
}

/* Say why (sl->why), and log it once per CAR. */
static void log_car(struct sync_ledger *sl, const struct lfs_cid *c,
		    const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vlog_car(sl, c, fmt, ap);
	va_end(ap);
}

/* Try CAR c again later, after a backoff that doubles up to 30 s. */
static void defer(struct lfs_sync *s, struct sync_ledger *sl,
		  const struct lfs_cid *c)
{
	uint64_t v = 0;
	lfs_cidmap_get(&sl->retry, c, &v);
	unsigned tries = (unsigned)(v & 0xff);
	int64_t wait = (int64_t)(s->poll_ms ? s->poll_ms : 1000)
		       << (tries < 16 ? tries : 16);
	if (wait > MAX_BACKOFF_MS)
		wait = MAX_BACKOFF_MS;
	if (tries < 0xff)
		tries++;
	lfs_cidmap_set(&sl->retry, c,
		       (uint64_t)(lfs_mono_ms() + wait) << 8 | tries);
}

/* Say why CAR c waits (as log_car), try it again later; HEAD_DEFERRED. */
static int defer_car(struct lfs_sync *s, struct sync_ledger *sl,
		     const struct lfs_cid *c, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vlog_car(sl, c, fmt, ap);
	va_end(ap);
	defer(s, sl, c);
	return HEAD_DEFERRED;
}

void lfs_sync_reject(struct lfs_sync *s, struct sync_ledger *sl,
		     const struct lfs_cid *c, int err)
{
	char cs[LFS_CID_STRLEN + 1], msg[sizeof(sl->last_rejected)];
	lfs_cid_to_string(cs, c);
	snprintf(msg, sizeof(msg), "rejected CAR %s from the store: %s", cs,
		 lfs_errmsg(err));
	if (!(lfs_sync_car_flags(sl, c) & CAR_LOGGED))
		lfs_warn("sync of ledger '%s': %s", sl->name, msg);
	lfs_sync_car_set(sl, c, CAR_BAD | CAR_LOGGED, CAR_WAITING);
	pthread_mutex_lock(&s->lock);
	snprintf(sl->last_rejected, sizeof(sl->last_rejected), "%s", msg);
	pthread_mutex_unlock(&s->lock);
}

/* ---- fetching a CAR file ---- */

/*
 * A CAR file's bytes go to memory, or once they pass CAR_IN_MEMORY to an
 * unnamed temporary file in HOME/state/<ledger>/, while their hash is
 * taken and every envelope chunk is authenticated as it arrives. So a file
 * that is not sealed under the ledger's key (junk of any size) is refused
 * after its first chunk, one not named by its hash at its end, and a large
 * file is read into memory only once it is proven authentic and whole.
 */
struct car_fetch {
	struct lfs_envelope_check check;
	crypto_hash_sha256_state hash;
	struct lfs_buf mem;
	int fd; /* the temporary file once spilled, else -1 */
	const char *dir;
	uint64_t len;
	bool bad; /* proven bad: the checks failed */
};

/* An unnamed file in dir, gone when closed (O_TMPFILE, else unlinked). */
static int open_unnamed(const char *dir)
{
	int fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (fd >= 0 ||
	    (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL))
		return fd < 0 ? -errno : fd;
	size_t n = strlen(dir) + 16;
	char *p = malloc(n);
	if (!p)
		return -ENOMEM;
	snprintf(p, n, "%s/fetch.XXXXXX", dir);
	fd = mkostemp(p, O_CLOEXEC);
	int rc = fd < 0 ? -errno : fd;
	if (fd >= 0)
		unlink(p);
	free(p);
	return rc;
}

static int fetch_spill(struct car_fetch *f)
{
	int fd = open_unnamed(f->dir);
	if (fd < 0)
		return fd;
	int rc = lfs_write_all(fd, f->mem.data, f->mem.len);
	if (rc) {
		close(fd);
		return rc;
	}
	f->fd = fd;
	lfs_buf_release(&f->mem);
	return 0;
}

static int fetch_size(void *ctx, uint64_t size)
{
	struct car_fetch *f = ctx;
	if (size > CAR_IN_MEMORY)
		return f->fd < 0 ? fetch_spill(f) : 0;
	return lfs_buf_reserve(&f->mem, (size_t)size);
}

static int fetch_write(void *ctx, const uint8_t *data, size_t len)
{
	struct car_fetch *f = ctx;
	f->len += len;
	crypto_hash_sha256_update(&f->hash, data, len);
	int rc = lfs_envelope_check_update(&f->check, data, len);
	if (rc) {
		f->bad = rc == -EBADMSG;
		return rc;
	}
	if (f->fd < 0 && f->mem.len + len > CAR_IN_MEMORY &&
	    (rc = fetch_spill(f)))
		return rc;
	return f->fd >= 0 ? lfs_write_all(f->fd, data, len)
			  : lfs_buf_append(&f->mem, data, len);
}

/* Read the first len bytes of fd into a new buffer (*out). */
static int read_back(uint8_t **out, int fd, uint64_t len)
{
	uint8_t *p = malloc(len ? (size_t)len : 1);
	if (!p)
		return -ENOMEM;
	for (uint64_t off = 0; off < len;) {
		ssize_t r = pread(fd, p + off, (size_t)(len - off), (off_t)off);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			free(p);
			return r < 0 ? -errno : -EIO;
		}
		off += (uint64_t)r;
	}
	*out = p;
	return 0;
}

/*
 * Fetch CAR car of ledger sl from st into *out (malloc'd, *out_len bytes):
 * 0 only when it is named by its bytes and authentic under the ledger's
 * key. *bad is set when it was proven otherwise (-EBADMSG, -EFBIG: reject
 * it); any other error is the store's or this machine's (retry).
 */
int lfs_sync_fetch_car(uint8_t **out, size_t *out_len, bool *bad,
		       struct lfs_store *st, struct sync_ledger *sl,
		       const struct lfs_cid *car)
{
	*bad = false;
	char key[400];
	lfs_sync_car_key(key, sizeof(key), sl, "car", car);
	if (!sl->have_key || !sl->fetch_dir)
		return -ENOKEY; /* lfs_sync_pull() sets them up */
	struct car_fetch f = {.fd = -1, .dir = sl->fetch_dir};
	lfs_envelope_check_init(&f.check, sl->key);
	crypto_hash_sha256_init(&f.hash);
	lfs_buf_init(&f.mem, CAR_IN_MEMORY);
	struct lfs_store_sink sink = {
		.size = fetch_size, .write = fetch_write, .ctx = &f};
	int rc = lfs_store_get_to(st, key, LFS_CAR_MAX_FILE, &sink);
	if (rc == -EFBIG)
		f.bad = true;
	if (!rc && (rc = lfs_envelope_check_end(&f.check)))
		f.bad = rc == -EBADMSG;
	if (!rc) {
		uint8_t d[LFS_DIGEST_LEN];
		crypto_hash_sha256_final(&f.hash, d);
		if (car->codec != LFS_CODEC_RAW ||
		    sodium_memcmp(d, car->digest, sizeof(d))) {
			rc = -EBADMSG;
			f.bad = true;
		}
	}
	if (!rc && f.fd >= 0) {
		rc = read_back(out, f.fd, f.len);
	} else if (!rc) {
		size_t n;
		*out = lfs_buf_steal(&f.mem, &n);
		if (!*out && !(*out = malloc(1)))
			rc = -ENOMEM;
	}
	if (!rc)
		*out_len = (size_t)f.len;
	*bad = f.bad;
	if (f.fd >= 0)
		close(f.fd);
	lfs_buf_release(&f.mem);
	lfs_envelope_check_release(&f.check);
	return rc;
}

/* ---- catching up ---- */

struct prefetch {
	struct lfs_sync *s;
	struct sync_ledger *sl;
	struct lfs_blockstore *bs;
	const struct lfs_cid *v;
	int *res;
	size_t n, also;
	pthread_mutex_t lock; /* next, done */
	size_t next, done;
};

static void *prefetch_worker(void *arg)
{
	struct prefetch *p = arg;
	struct lfs_sync *s = p->s;
	struct lfs_store *st = NULL;
	int orc = lfs_store_open(&st, s->url);
	size_t slot = PREFETCH_THREADS;
	pthread_mutex_lock(&s->lock);
	for (size_t i = 0; !orc && i < PREFETCH_THREADS; i++)
		if (!s->fetchers[i]) {
			s->fetchers[i] = st;
			slot = i;
			break;
		}
	bool stopping = s->stopping;
	pthread_mutex_unlock(&s->lock);
	if (stopping && st)
		lfs_store_cancel_at(st, lfs_mono_us());
	for (;;) {
		pthread_mutex_lock(&p->lock);
		size_t i = p->next++;
		pthread_mutex_unlock(&p->lock);
		if (i >= p->n)
			break;
		uint8_t *bytes = NULL;
		size_t len = 0;
		bool bad = false;
		int r = orc ? orc
			    : lfs_sync_fetch_car(&bytes, &len, &bad, st, p->sl,
						 &p->v[i]);
		if (!r)
			r = lfs_blockstore_import(NULL, NULL, p->bs, &p->v[i],
						  bytes, len);
		free(bytes);
		p->res[i] = bad ? -EBADMSG : r;
		pthread_mutex_lock(&p->lock);
		size_t done = ++p->done;
		pthread_mutex_unlock(&p->lock);
		pthread_mutex_lock(&s->lock);
		p->sl->catchup_fetched = p->also + done;
		pthread_mutex_unlock(&s->lock);
		if (done % PROGRESS_EVERY == 0)
			lfs_info("sync of ledger '%s': fetched %zu of %zu CAR "
				 "files",
				 p->sl->name, done, p->n);
	}
	pthread_mutex_lock(&s->lock);
	if (slot < PREFETCH_THREADS)
		s->fetchers[slot] = NULL;
	pthread_mutex_unlock(&s->lock);
	lfs_store_free(st);
	return NULL;
}

static void count_applied(struct lfs_sync *s, struct sync_ledger *sl);

/*
 * Apply CARs kept here unapplied (v, n: those a catch-up just fetched, or
 * left waiting by one cut short; checked when they arrived) in one pass,
 * parents first: an order from their roots (Kahn's), then
 * lfs_ledger_ingest_here(), with no request, no read-back and one hold of
 * the writer lock. A CAR takes part when each CAR its root names is
 * applied here or in v ahead of it; the others (a parent missing or
 * waiting, a cycle, a copy here that does not load), and any whose ingest
 * fails, are left waiting for lfs_sync_fetch_apply(), which applies,
 * defers, fetches again or rejects them one by one
 * and says why. A CAR proven bad here (-EBADMSG) is rejected.
 */
static void apply_kept(struct lfs_sync *s, struct sync_ledger *sl,
		       struct lfs_ledger *l, const struct lfs_cid *v, size_t n)
{
	struct lfs_blockstore *bs = lfs_ledger_store(l);
	struct lfs_cidmap at; /* CAR -> its index in v */
	lfs_cidmap_init(&at);
	struct lfs_arena a;
	lfs_arena_init(&a, 0);
	/* Per CAR: parents in v not yet ordered, its first child edge;
	 * edges: child index, next edge of the same parent. */
	size_t *waits = calloc(n + 1, sizeof(*waits));
	size_t *first = malloc((n + 1) * sizeof(*first));
	size_t *order = malloc((n + 1) * sizeof(*order));
	bool *blocked = calloc(n + 1, sizeof(*blocked));
	struct edge {
		size_t child, next;
	} *edges = NULL;
	size_t nedges = 0, capedges = 0, norder = 0;
	int rc = waits && first && order && blocked ? 0 : -ENOMEM;
	for (size_t i = 0; !rc && i < n; i++) {
		first[i] = SIZE_MAX;
		rc = lfs_cidmap_set(&at, &v[i], i);
	}
	for (size_t i = 0; !rc && i < n; i++) {
		struct lfs_arena_mark m = lfs_arena_mark(&a);
		struct lfs_car_root root;
		if (lfs_blockstore_load(&root, &a, bs, &v[i], false)) {
			blocked[i] = true;
			continue;
		}
		for (size_t k = 0; !rc && k < root.ncars; k++) {
			uint64_t p;
			if (!lfs_cidmap_get(&at, &root.cars[k], &p)) {
				if (!lfs_sync_applied(sl, l, &root.cars[k]))
					blocked[i] = true;
				continue;
			}
			if (nedges == capedges) {
				size_t cap = capedges ? capedges * 2 : 1024;
				void *e = realloc(edges, cap * sizeof(*edges));
				if (!e) {
					rc = -ENOMEM;
					break;
				}
				edges = e;
				capedges = cap;
			}
			edges[nedges] = (struct edge){i, first[p]};
			first[p] = nedges++;
			waits[i]++;
		}
		lfs_arena_rewind(&a, m);
	}
	/* Kahn's: order holds every CAR whose parents in v come before it;
	 * a blocked CAR blocks its descendants and is left out. */
	for (size_t i = 0; !rc && i < n; i++)
		if (!waits[i])
			order[norder++] = i;
	size_t nready = 0;
	for (size_t q = 0; !rc && q < norder; q++) {
		size_t i = order[q];
		if (!blocked[i])
			order[nready++] = i; /* behind q: safe to overwrite */
		for (size_t e = first[i]; e != SIZE_MAX; e = edges[e].next) {
			size_t c = edges[e].child;
			blocked[c] = blocked[c] || blocked[i];
			if (--waits[c] == 0)
				order[norder++] = c;
		}
	}
	struct lfs_cid *cars = NULL, *missing = NULL;
	int *res = NULL;
	if (!rc && nready) {
		cars = malloc(nready * sizeof(*cars));
		missing = malloc(nready * sizeof(*missing));
		res = malloc(nready * sizeof(*res));
		rc = cars && missing && res ? 0 : -ENOMEM;
	}
	for (size_t q = 0; !rc && q < nready; q++)
		cars[q] = v[order[q]];
	if (!rc && nready)
		rc = lfs_ledger_ingest_here(l, cars, nready, res, missing);
	size_t applied = 0;
	for (size_t q = 0; cars && res && q < nready; q++) {
		const struct lfs_cid *c = &cars[q];
		if (!res[q]) {
			applied++;
			lfs_sync_car_set(sl, c, CAR_APPLIED,
					 CAR_WAITING | CAR_LOGGED);
			lfs_cidmap_set(&sl->retry, c, 0);
			count_applied(s, sl);
		} else if (res[q] == -EBADMSG) {
			/* ingest removed the file */
			lfs_sync_car_set(sl, c, 0, CAR_WAITING);
			lfs_sync_reject(s, sl, c, res[q]);
		}
	}
	if (rc)
		lfs_warn("sync of ledger '%s': could not apply the CAR files "
			 "fetched in one pass (%s); applying them one by one",
			 sl->name, lfs_errmsg(rc));
	else if (applied) /* quiet when it has nothing to do, each round */
		lfs_info("sync of ledger '%s': applied %zu of %zu CAR files "
			 "in one pass",
			 sl->name, applied, n);
	free(cars);
	free(missing);
	free(res);
	free(edges);
	free(waits);
	free(first);
	free(order);
	free(blocked);
	lfs_arena_release(&a);
	lfs_cidmap_release(&at);
}

/*
 * Fetch every CAR file of the ledger that is missing here, at once (see
 * PREFETCH_*). They land here kept, unapplied (listed as waiting first),
 * and are applied in one pass (apply_kept()); what that leaves is for
 * lfs_sync_fetch_apply() to apply parents first without a request each. A
 * file that fails its checks is rejected; any other failure leaves that
 * file to the usual one-by-one path. also: CARs fetched before, waiting
 * here to be applied after these (progress counts them). Returns 0 or the
 * listing's error.
 */
static int prefetch(struct lfs_sync *s, struct sync_ledger *sl,
		    struct lfs_ledger *l, size_t also)
{
	if (sl->prefetched_pull == sl->pulls)
		return 0;
	sl->prefetched_pull = sl->pulls;
	char prefix[300];
	snprintf(prefix, sizeof(prefix), "%s/car/", sl->enc);
	struct keys k = {0};
	int rc = lfs_store_list(s->store, prefix, lfs_sync_collect_cid, &k);
	struct lfs_blockstore *bs = lfs_ledger_store(l);
	/* What is here, in one listing rather than a look per file. */
	struct lfs_cid *here = NULL;
	size_t nhere = 0, n = 0;
	struct lfs_cidmap have;
	lfs_cidmap_init(&have);
	if (!rc)
		rc = lfs_blockstore_list_cars(&here, &nhere, bs);
	for (size_t i = 0; !rc && i < nhere; i++)
		rc = lfs_cidmap_set(&have, &here[i], 1);
	free(here);
	for (size_t i = 0; !rc && i < k.n; i++)
		if (!lfs_cidmap_get(&have, &k.v[i], NULL) &&
		    !(lfs_sync_car_flags(sl, &k.v[i]) & CAR_BAD))
			k.v[n++] = k.v[i];
	lfs_cidmap_release(&have);
	if (rc || n < PREFETCH_MIN) {
		free(k.v);
		return rc == -ENOENT ? 0 : rc;
	}
	lfs_info("sync of ledger '%s': catching up: fetching %zu CAR files "
		 "from %s",
		 sl->name, n, s->shown);
	lfs_sync_note_waiting_many(s, sl, k.v, n);
	pthread_mutex_lock(&s->lock);
	sl->catchup_files = n + also;
	sl->catchup_fetched = also;
	sl->catchup_applied = 0;
	sl->catchup_start_us = lfs_sync_now_us();
	pthread_mutex_unlock(&s->lock);
	struct prefetch p = {
		.s = s, .sl = sl, .bs = bs, .v = k.v, .n = n, .also = also};
	pthread_mutex_init(&p.lock, NULL);
	p.res = calloc(n, sizeof(*p.res));
	pthread_t t[PREFETCH_THREADS];
	size_t nt = 0;
	for (; p.res && nt < PREFETCH_THREADS && nt < n; nt++)
		if (pthread_create(&t[nt], NULL, prefetch_worker, &p))
			break;
	if (nt == 0 && p.res) /* no thread: do it here */
		prefetch_worker(&p);
	for (size_t i = 0; i < nt; i++)
		pthread_join(t[i], NULL);
	size_t got = 0, failed = 0;
	int first_err = 0;
	for (size_t i = 0; p.res && i < n; i++) {
		if (p.res[i] && p.res[i] != -EBADMSG && p.res[i] != -EFBIG &&
		    !failed++)
			first_err = p.res[i];
		if (!p.res[i]) {
			got++;
			lfs_sync_clear_missing(s, sl, &k.v[i]);
		} else if (p.res[i] == -EBADMSG || p.res[i] == -EFBIG) {
			lfs_sync_reject(s, sl, &k.v[i], p.res[i]);
		} else {
			lfs_sync_car_set(sl, &k.v[i], 0, CAR_WAITING);
		}
	}
	if (!p.res)
		for (size_t i = 0; i < n; i++)
			lfs_sync_car_set(sl, &k.v[i], 0, CAR_WAITING);
	if (failed)
		lfs_warn("sync of ledger '%s': %zu CAR files could not be "
			 "fetched "
			 "at once (%s); fetching them one by one",
			 sl->name, failed, lfs_errmsg(first_err));
	lfs_info("sync of ledger '%s': fetched %zu of %zu CAR files in %.1f s",
		 sl->name, got, n,
		 (double)(lfs_sync_now_us() - sl->catchup_start_us) / 1e6);
	size_t ok = 0;
	for (size_t i = 0; p.res && i < n; i++)
		if (!p.res[i])
			k.v[ok++] = k.v[i];
	lfs_sync_note_pushed_many(s, sl, k.v, ok); /* the remote has them */
	apply_kept(s, sl, l, k.v, ok);
	pthread_mutex_destroy(&p.lock);
	free(p.res);
	free(k.v);
	return 0;
}

/* One more CAR applied; progress while catching up. */
static void count_applied(struct lfs_sync *s, struct sync_ledger *sl)
{
	pthread_mutex_lock(&s->lock);
	size_t a = sl->catchup_files ? ++sl->catchup_applied : 0;
	size_t n = sl->catchup_files;
	pthread_mutex_unlock(&s->lock);
	if (a && a % PROGRESS_EVERY == 0)
		lfs_info("sync of ledger '%s': applied %zu of %zu CAR files",
			 sl->name, a, n);
}

/* The CARs one lfs_sync_fetch_apply() is working through, newest first. */
struct chain {
	struct keys stack;
	struct lfs_cidmap on; /* CAR -> 1 while on the stack */
	/* Of those, how many are CAR_WAITING: a hint (another process's
	 * waiting entries may arrive meanwhile); an undercount only makes
	 * lfs_sync_fetch_apply() read a root first. */
	size_t waiting_on;
};

static int chain_push(struct chain *ch, struct sync_ledger *sl,
		      const struct lfs_cid *c)
{
	int rc = lfs_sync_keys_add(&ch->stack, c);
	if (!rc && (rc = lfs_cidmap_set(&ch->on, c, 1)))
		ch->stack.n--;
	if (!rc && lfs_sync_car_flags(sl, c) & CAR_WAITING)
		ch->waiting_on++;
	return rc;
}

static void chain_pop(struct chain *ch, struct sync_ledger *sl)
{
	struct lfs_cid c = ch->stack.v[--ch->stack.n];
	lfs_cidmap_set(&ch->on, &c, 0);
	if (lfs_sync_car_flags(sl, &c) & CAR_WAITING)
		ch->waiting_on -= ch->waiting_on > 0;
}

static bool chain_has(struct chain *ch, const struct lfs_cid *c)
{
	uint64_t v = 0;
	return lfs_cidmap_get(&ch->on, c, &v) && v;
}

/* c (on the chain) no longer waits here: applied, rejected or gone. */
static void chain_unwait(struct chain *ch, struct sync_ledger *sl,
			 const struct lfs_cid *c)
{
	if (lfs_sync_car_flags(sl, c) & CAR_WAITING) {
		ch->waiting_on -= ch->waiting_on > 0;
		lfs_sync_car_set(sl, c, 0, CAR_WAITING);
	}
}

/*
 * The first CAR named by root (those holding its events' parents) that is
 * not applied here, in *out: 0 when there is none, 1 when there is one to
 * fetch and apply first, 2 when it was rejected, -1 when it is on the chain
 * already (a cycle).
 */
static int unapplied_parent(struct lfs_cid *out, struct sync_ledger *sl,
			    struct lfs_ledger *l, struct chain *ch,
			    const struct lfs_car_root *root)
{
	for (size_t i = 0; i < root->ncars; i++) {
		const struct lfs_cid *p = &root->cars[i];
		if (lfs_sync_applied(sl, l, p))
			continue;
		*out = *p;
		if (lfs_sync_car_flags(sl, p) & CAR_BAD)
			return 2;
		return chain_has(ch, p) ? -1 : 1;
	}
	return 0;
}

/*
 * Apply CAR c and, first, every CAR it needs (parents before children),
 * fetching what is not here. Returns a HEAD_* outcome, or a negative errno
 * when the store or this machine failed (the round fails and is retried).
 *
 * Only a file proven bad (its bytes, authentication or blocks fail a
 * check, or it is larger than any CAR can be) is rejected. A CAR missing
 * from the store, an object that is not a file, a parent that never
 * arrives, an ingest that says "later": the CAR is deferred (tried again
 * after a backoff) and the head counts as not applied.
 *
 * lfs_ledger_ingest() accepts a CAR when its parent events are present,
 * and the CARs it keeps unapplied (CAR_WAITING) hold events too. So a CAR
 * is ingested only when the CARs its root names are applied: known before
 * ingest for files already here; for a fetched file, by importing it first
 * when other CARs wait here unapplied (when none do, ingest's own check is
 * enough).
 */
int lfs_sync_fetch_apply(struct lfs_sync *s, struct sync_ledger *sl,
			 struct lfs_ledger *l, const struct lfs_cid *c)
{
	struct lfs_blockstore *bs = lfs_ledger_store(l);
	struct chain ch = {0};
	lfs_cidmap_init(&ch.on);
	int rc = chain_push(&ch, sl, c), out = HEAD_APPLIED;
	struct lfs_arena a;
	lfs_arena_init(&a, 0);
	/* A replica with nothing yet (joining) catches up as soon as the
	 * head CAR names a parent that is not here. */
	struct lfs_cid *heads = NULL;
	size_t nheads = 1;
	if (!rc)
		rc = lfs_ledger_heads(l, &heads, &nheads);
	free(heads);
	size_t prefetch_depth = nheads ? PREFETCH_DEPTH : 2;
	while (!rc && ch.stack.n > 0) {
		struct lfs_cid top = ch.stack.v[ch.stack.n - 1], missing;
		char cs[LFS_CID_STRLEN + 1], ps[LFS_CID_STRLEN + 1];
		lfs_cid_to_string(cs, &top);
		if (lfs_cidmap_get(&sl->missing, &top, NULL))
			lfs_cidmap_set(&sl->needed, &top, 1);
		if (lfs_sync_applied(sl, l, &top)) {
			chain_pop(&ch, sl);
			continue;
		}
		if (lfs_sync_car_flags(sl, &top) & CAR_BAD) {
			out = ch.stack.n == 1 ? HEAD_REJECTED : HEAD_BLOCKED;
			if (out == HEAD_BLOCKED) {
				lfs_cid_to_string(ps, &ch.stack.v[0]);
				snprintf(sl->why, sizeof(sl->why),
					 "head CAR %s needs CAR %s, which was "
					 "rejected",
					 ps, cs);
			}
			break;
		}
		if (!lfs_sync_due(sl, &top)) {
			out = HEAD_DEFERRED;
			break;
		}
		if (ch.stack.n == prefetch_depth &&
		    !lfs_blockstore_has_car(bs, &top) &&
		    sl->prefetched_pull != sl->pulls) {
			/* The others on the chain are here, waiting. */
			if ((rc = prefetch(s, sl, l, ch.stack.n - 1)))
				break;
			continue; /* it may have applied top */
		}
		if (ch.stack.n > MAX_CHAIN) {
			log_car(sl, &top,
				"CAR %s: more than %d CAR files to fetch "
				"before it; going on in the next round",
				cs, MAX_CHAIN);
			out = HEAD_DEFERRED;
			break;
		}
		struct lfs_arena_mark m = lfs_arena_mark(&a);
		struct lfs_car_root root;
		uint8_t *bytes = NULL;
		size_t len = 0;
		bool have_root = false;
		int r = 0;
		if (lfs_blockstore_has_car(bs, &top)) {
			/* Kept here by an earlier ingest, unapplied. */
			r = lfs_blockstore_load(&root, &a, bs, &top, false);
			if ((r == -ENOENT || r == -EBADMSG) &&
			    lfs_blockstore_in_segment(bs, &top)) {
				/* A commit of this home: never removed here
				 * (the round fails; fsck names it). */
				lfs_warn("sync of ledger '%s': cannot read "
					 "this home's commit %s: %s",
					 sl->name, cs, lfs_errmsg(r));
				goto next;
			}
			if (r == -ENOENT || r == -EBADMSG) {
				/* Gone, or damaged here: fetch it again. */
				lfs_warn("sync of ledger '%s': the copy of CAR "
					 "%s here is %s; fetching it again",
					 sl->name, cs, lfs_errmsg(r));
				lfs_blockstore_remove_car(bs, &top);
				chain_unwait(&ch, sl, &top);
				r = 0;
				goto next;
			}
			if (r)
				goto next;
			have_root = true;
		} else {
			bool bad = false;
			r = lfs_sync_fetch_car(&bytes, &len, &bad, s->store, sl,
					       &top);
			if (bad) {
				lfs_sync_reject(s, sl, &top, r);
				out = ch.stack.n == 1 ? HEAD_REJECTED
						      : HEAD_BLOCKED;
				r = 1;
				goto next;
			}
			if (r == -EPROTONOSUPPORT) {
				out = defer_car(s, sl, &top, NEWER_FORMAT, cs,
						lfs_errmsg(r));
				r = 1;
				goto next;
			}
			if (r == -ENOENT) {
				uint64_t since = 0;
				lfs_sync_note_missing(s, sl, &top);
				lfs_cidmap_get(&sl->missing, &top, &since);
				char when[LFS_TIME_ISO_MAX];
				lfs_time_iso(when, (int64_t)since * 1000000);
				out = defer_car(
					s, sl, &top,
					"CAR %s is missing on the store "
					"(since %s); will try again",
					cs, when);
				r = 1;
				goto next;
			}
			if (r == -EBADMSG) {
				out = defer_car(s, sl, &top,
						"CAR %s is not a readable file "
						"on the store; will try again",
						cs);
				r = 1;
				goto next;
			}
			if (r)
				goto next;
			lfs_sync_clear_missing(s, sl, &top);
			lfs_sync_note_pushed(s, sl,
					     &top); /* the remote has it */
			if (!(lfs_sync_car_flags(sl, &top) & CAR_WAITING)) {
				lfs_sync_note_waiting(s, sl, &top);
				ch.waiting_on++;
			}
			if (sl->nwaiting > ch.waiting_on) {
				/* Others wait here: read its root first. */
				r = lfs_blockstore_import(&root, &a, bs, &top,
							  bytes, len);
				have_root = !r;
				if (r == -EBADMSG || r == -EPROTONOSUPPORT)
					r = 0; /* ingest says it again */
				else if (r)
					goto next;
			}
		}
		if (have_root) {
			struct lfs_cid p;
			int u = unapplied_parent(&p, sl, l, &ch, &root);
			if (u == 1) {
				r = chain_push(&ch, sl, &p);
				goto next;
			}
			if (u) {
				lfs_cid_to_string(ps, &p);
				if (u == 2) {
					snprintf(sl->why, sizeof(sl->why),
						 "CAR %s needs CAR %s, which "
						 "was rejected",
						 cs, ps);
					out = HEAD_BLOCKED;
				} else {
					out = defer_car(s, sl, &top,
							"CAR %s: its parent "
							"CAR %s needs it in "
							"turn; will try again",
							cs, ps);
				}
				r = 1;
				goto next;
			}
		}
		if (!bytes &&
		    (r = lfs_blockstore_read_car(&bytes, &len, bs, &top)))
			goto next;
		memset(&missing, 0, sizeof(missing));
		r = lfs_ledger_ingest(l, &top, bytes, len, &missing);
		if (!r) {
			if (lfs_sync_car_flags(sl, &top) & CAR_LOGGED)
				lfs_info("sync of ledger '%s': CAR %s applied "
					 "after all",
					 sl->name, cs);
			chain_unwait(&ch, sl, &top);
			count_applied(s, sl);
			lfs_sync_car_set(sl, &top, CAR_APPLIED, CAR_LOGGED);
			lfs_cidmap_set(&sl->retry, &top, 0);
			lfs_cidmap_set(&sl->pushed, &top, 1);
			chain_pop(&ch, sl);
			goto next;
		}
		if (r == -EAGAIN) {
			/* Not yet: its parents are missing, or it is ahead
			 * of this machine's clock. */
			r = 0;
			if (missing.codec == LFS_CODEC_RAW &&
			    !lfs_sync_applied(sl, l, &missing) &&
			    !chain_has(&ch, &missing)) {
				if (!(lfs_sync_car_flags(sl, &missing) &
				      CAR_BAD)) {
					r = chain_push(&ch, sl, &missing);
					goto next;
				}
				lfs_cid_to_string(ps, &missing);
				snprintf(sl->why, sizeof(sl->why),
					 "CAR %s needs CAR %s, which was "
					 "rejected",
					 cs, ps);
				out = HEAD_BLOCKED;
				r = 1;
				goto next;
			}
			out = defer_car(s, sl, &top,
					"CAR %s cannot be applied yet (parent "
					"events missing, or a clock ahead of "
					"this machine's); will try again",
					cs);
			r = 1;
		} else if (r == -EBADMSG) {
			chain_unwait(&ch, sl, &top);
			lfs_sync_reject(s, sl, &top,
					r); /* ingest removed the file */
			out = ch.stack.n == 1 ? HEAD_REJECTED : HEAD_BLOCKED;
			r = 1;
		} else if (r == -EPROTONOSUPPORT) {
			out = defer_car(s, sl, &top, NEWER_FORMAT, cs,
					lfs_errmsg(r));
			r = 1;
		}
	next:
		free(bytes);
		lfs_arena_rewind(&a, m);
		if (r > 0)
			break;
		rc = r;
	}
	lfs_arena_release(&a);
	lfs_cidmap_release(&ch.on);
	free(ch.stack.v);
	return rc ? rc : out;
}

/* What lfs_sync_fetch_car() needs: the ledger's key, the directory to spill to.
 */
int lfs_sync_fetch_setup(struct lfs_sync *s, struct sync_ledger *sl)
{
	if (!sl->fetch_dir && !(sl->fetch_dir = lfs_sync_state_path(s, sl, "")))
		return -ENOMEM;
	if (sl->have_key)
		return 0;
	int rc = lfs_home_key(sl->key, s->home, sl->name);
	sl->have_key = !rc;
	return rc;
}

/*
 * Pull the head records listed (k: CARs named by records in either
 * layout, sl->fresh_heads telling which are under heads/).
 */
int lfs_sync_pull(struct lfs_sync *s, struct sync_ledger *sl,
		  struct lfs_ledger *l, const struct keys *kp,
		  size_t *out_unapplied)
{
	const struct keys k = *kp;
	int rc = lfs_sync_fetch_setup(s, sl);
	if (rc)
		return rc;
	struct lfs_cidmap heads, bad;
	lfs_cidmap_init(&heads);
	lfs_cidmap_init(&bad);
	struct lfs_cid before, after;
	lfs_ledger_root(l, &before);
	struct lfs_blockstore *bs = lfs_ledger_store(l);
	size_t unapplied = 0;
	sl->pulls++;
	lfs_cidmap_release(&sl->needed);
	lfs_cidmap_init(&sl->needed);
	/* Many CARs may arrive: one file system sync for all of them. */
	lfs_ledger_ingest_begin(l);
	if (sl->nwaiting >= PREFETCH_MIN) {
		/* Many kept here unapplied (a catch-up cut short): in one
		 * pass before anything is fetched. */
		struct keys w = {0};
		for (size_t i = 0; !rc && i < sl->cars.nslots; i++) {
			struct lfs_cidmap_slot *e = &sl->cars.slots[i];
			if (e->used && e->value & CAR_WAITING)
				rc = lfs_sync_keys_add(&w, &e->cid);
		}
		if (!rc)
			apply_kept(s, sl, l, w.v, w.n);
		free(w.v);
	}
	for (size_t i = 0; i < k.n && !rc; i++) {
		const struct lfs_cid *c = &k.v[i];
		uint64_t f = lfs_sync_car_flags(sl, c);
		if (lfs_cidmap_get(&sl->bad_records, c, NULL)) {
			rc = lfs_cidmap_set(&bad, c, 1);
			continue;
		}
		if (lfs_sync_applied(sl, l, c) || f & CAR_BAD) {
			rc = lfs_cidmap_set(&heads, c, 1);
			continue;
		}
		char cs[LFS_CID_STRLEN + 1];
		lfs_cid_to_string(cs, c);
		int r = 0;
		if (!(f & CAR_RECORD_OK)) {
			char key[400];
			lfs_sync_record_key(key, sizeof(key), sl, c,
					    !lfs_sync_has(&sl->fresh_heads, c));
			struct lfs_buf b;
			lfs_buf_init(&b, RECORD_MAX);
			r = lfs_store_get(s->store, key, &b);
			const char *bad_why =
				r == -EFBIG     ? "larger than a head record"
				: r == -EBADMSG ? "not a readable file"
				: !r && !lfs_sync_record_ok(b.data, b.len, c)
					? "not a valid head record"
					: NULL;
			lfs_buf_release(&b);
			if (bad_why) {
				/* Skipped while it is listed; logged once. */
				lfs_warn("sync of ledger '%s': ignored head "
					 "record %s: %s",
					 sl->name, cs, bad_why);
				rc = lfs_cidmap_set(&bad, c, 1);
				continue;
			}
			if (r == -ENOENT)
				continue; /* superseded while we listed */
			if (r) {
				rc = r;
				break;
			}
			lfs_sync_car_set(sl, c, CAR_RECORD_OK, 0);
		}
		if ((rc = lfs_cidmap_set(&heads, c, 1)))
			break;
		r = lfs_sync_fetch_apply(s, sl, l, c);
		if (r < 0)
			rc = r;
		else if (r == HEAD_DEFERRED || r == HEAD_BLOCKED)
			unapplied++;
	}
	/* CARs kept here that no head led to this round: try them too, so
	 * they are applied, or the waiting file forgets them. */
	struct keys w = {0};
	for (size_t i = 0; !rc && i < sl->cars.nslots; i++) {
		struct lfs_cidmap_slot *e = &sl->cars.slots[i];
		if (e->used && e->value & CAR_WAITING)
			rc = lfs_sync_keys_add(&w, &e->cid);
	}
	for (size_t i = 0; !rc && i < w.n; i++) {
		int r = lfs_sync_fetch_apply(s, sl, l, &w.v[i]);
		if (r < 0)
			rc = r;
	}
	free(w.v);
	int erc = lfs_ledger_ingest_end(l);
	if (!rc)
		rc = erc;
	pthread_mutex_lock(&s->lock);
	if (sl->catchup_files) {
		lfs_info("sync of ledger '%s': caught up: applied %zu of %zu "
			 "CAR files in %.1f s",
			 sl->name, sl->catchup_applied, sl->catchup_files,
			 (double)(lfs_sync_now_us() - sl->catchup_start_us) /
				 1e6);
		sl->catchup_files = 0;
	}
	pthread_mutex_unlock(&s->lock);
	lfs_ledger_root(l, &after);
	if (!lfs_cid_equal(&before, &after)) {
		lfs_sync_mark_active(s);
		if (s->hooks.changed)
			s->hooks.changed(s->hooks.ctx, sl->name, &before,
					 &after);
	}
	if (!rc) {
		/* Missing CARs that are here now, or that no head needs any
		 * more (superseded, compacted away), are no longer missing. */
		for (size_t i = 0; i < sl->missing.nslots; i++) {
			struct lfs_cidmap_slot *e = &sl->missing.slots[i];
			if (e->used && e->value &&
			    (lfs_blockstore_has_car(bs, &e->cid) ||
			     !lfs_cidmap_get(&sl->needed, &e->cid, NULL)))
				lfs_sync_clear_missing(s, sl, &e->cid);
		}
		lfs_cidmap_release(&sl->remote_heads);
		sl->remote_heads = heads;
		lfs_cidmap_release(&sl->bad_records);
		sl->bad_records = bad;
		*out_unapplied = unapplied;
		pthread_mutex_lock(&s->lock);
		sl->last_poll_us = lfs_sync_now_us();
		sl->ignored_records = bad.count;
		pthread_mutex_unlock(&s->lock);
	} else {
		/* Keep what we know of records for the next try. */
		for (size_t i = 0; i < bad.nslots; i++)
			if (bad.slots[i].used)
				lfs_cidmap_set(&sl->bad_records,
					       &bad.slots[i].cid, 1);
		lfs_cidmap_release(&heads);
		lfs_cidmap_release(&bad);
	}
	return rc;
}
