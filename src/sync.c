#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "sync.h"

#include "errmsg.h"
#include "fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "blockstore.h"
#include "cidmap.h"
#include "clock.h"
#include "log.h"
#include "meta.h"
#include "timefmt.h"

#define MAX_BACKOFF_MS 30000
#define IDLE_MS        30000  /* the poll interval after a quiet while */
#define ACTIVE_MS      20000  /* "recently" active: poll fast this long */
#define DISCOVERY_MS   600000 /* list ledgers/ (older writers' markers) */
#define SWEEP_MS       300000 /* one ledger's legacy head records */
#define HINTS_MAX      256    /* hints taken from the endpoint at once */
#define HINT_RATE      10     /* CAR fetches for hints per second ... */
#define HINT_BURST     20     /* ... and at once */
#define MAX_CHAIN      100000 /* CARs fetched for one head in one round */
#define RECORD_MAX     ((size_t)64 << 10) /* a head record */

/*
 * Catching up (a fresh replica, or one long offline): instead of walking a
 * chain of parent CARs one request at a time, list the ledger's CAR files
 * once and fetch every one missing here over PREFETCH_THREADS connections
 * at once; the chain is then walked locally. Done when a chain of
 * PREFETCH_DEPTH CARs is missing (not before: a compacted ledger is one
 * head CAR holding everything, and the files it replaced may still be on
 * the store), and only when at least PREFETCH_MIN files are missing.
 */
#define PREFETCH_THREADS 8
#define PREFETCH_MIN     16
#define PREFETCH_DEPTH   16
#define PROGRESS_EVERY   1000 /* log a line every so many CAR files */

#define MISSING_SHOWN 16 /* missing CAR files listed in status */

/* A CAR file larger than this is fetched to a file, not to memory. */
#define CAR_IN_MEMORY ((size_t)4 << 20)

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
	char *waiting_path;
	struct stat waiting_st; /* the waiting file when last read here */
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

static int64_t now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int64_t mono_ms(void)
{
	return lfs_store_now_us() / 1000;
}

/* Something moved here or on the store: poll fast for a while. */
static void mark_active(struct lfs_sync *s)
{
	pthread_mutex_lock(&s->lock);
	s->active_until = mono_ms() + ACTIVE_MS;
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

/* ---- per-CAR state ---- */

static uint64_t car_flags(struct sync_ledger *sl, const struct lfs_cid *c)
{
	uint64_t f = 0;
	lfs_cidmap_get(&sl->cars, c, &f);
	return f;
}

static int car_set(struct sync_ledger *sl, const struct lfs_cid *c,
		   uint64_t set, uint64_t clear)
{
	uint64_t old = car_flags(sl, c), f = (old | set) & ~clear;
	if (f == old)
		return 0;
	int rc = lfs_cidmap_set(&sl->cars, c, f);
	if (rc)
		return rc;
	if ((f ^ old) & CAR_WAITING) {
		if (f & CAR_WAITING) {
			sl->nwaiting++;
			lfs_cidmap_set(&sl->unwaited, c, 0);
		} else {
			sl->nwaiting--;
			sl->waiting_dirty = true;
			lfs_cidmap_set(&sl->unwaited, c, 1);
		}
	}
	if ((f ^ old) & CAR_BAD) {
		if (f & CAR_BAD)
			sl->nbad++;
		else
			sl->nbad--;
	}
	return 0;
}

static void refresh_waiting(struct sync_ledger *sl, struct lfs_blockstore *bs);

/*
 * Applied here: ingested in this process, or a local file not waiting.
 * Another process on this home (a mount, the command line) may have kept
 * the file unapplied since this one read the waiting file: it lists a
 * file there before the file appears, so a file not known here is looked
 * up in the waiting file once more (when it changed) before it counts as
 * applied.
 */
static bool applied(struct sync_ledger *sl, struct lfs_blockstore *bs,
		    const struct lfs_cid *c)
{
	uint64_t f = car_flags(sl, c);
	if (f & CAR_APPLIED)
		return true;
	if (f & (CAR_WAITING | CAR_BAD) || !lfs_blockstore_has_car(bs, c))
		return false;
	refresh_waiting(sl, bs);
	if (car_flags(sl, c) & CAR_WAITING)
		return false;
	car_set(sl, c, CAR_APPLIED, 0);
	return true;
}

/* May CAR c be tried now (its backoff since the last failure is over)? */
static bool due(struct sync_ledger *sl, const struct lfs_cid *c)
{
	uint64_t v;
	return !lfs_cidmap_get(&sl->retry, c, &v) || !v ||
	       (int64_t)(v >> 8) <= mono_ms();
}

/* ---- the state files: HOME/state/<ledger>/{pushed,waiting,missing} ---- */

/*
 * Every process on a home (a mount, the command line) shares these files.
 * pushed only grows: lines appended whole (O_APPEND). waiting and missing
 * also lose entries, by a rewrite renamed over the file; so that no
 * process loses another's entries, every append and rewrite of those two
 * happens under an exclusive flock on HOME/state/<ledger>/lock, and a
 * rewrite re-reads the file and takes out only the entries this process
 * took out (the unwaited and unmissed maps), keeping all else it finds.
 */

static char *state_path(struct lfs_sync *s, struct sync_ledger *sl,
			const char *file)
{
	size_t n = strlen(s->home->dir) + strlen(sl->name) + strlen(file) + 16;
	char *p = malloc(n);
	if (!p)
		return NULL;
	snprintf(p, n, "%s/state/%s/%s", s->home->dir, sl->name, file);
	int rc = sl->state_dir ? 0 : lfs_mkdirs_for(p);
	if (rc)
		lfs_warn("cannot make the directory for %s: %s", p,
			 strerror(-rc));
	sl->state_dir = !rc;
	return p;
}

/* Take the ledger's state lock: a descriptor for state_unlock(), or -errno. */
static int state_lock(struct lfs_sync *s, struct sync_ledger *sl)
{
	char *p = state_path(s, sl, "lock");
	int fd = p ? open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0600) : -1;
	int rc = fd < 0 ? (p ? -errno : -ENOMEM) : 0;
	while (!rc && flock(fd, LOCK_EX))
		if (errno != EINTR)
			rc = -errno;
	free(p);
	if (rc && fd >= 0)
		close(fd);
	return rc ? rc : fd;
}

static void state_unlock(int fd)
{
	if (fd >= 0)
		close(fd); /* releases the flock */
}

typedef void (*state_line_fn)(void *ctx, const struct lfs_cid *c, uint64_t v);

/*
 * Call fn for each well-formed line of a state file: a CID, and in the
 * missing file a number after a space (0 when none).
 */
static void read_state(struct lfs_sync *s, struct sync_ledger *sl,
		       const char *file, state_line_fn fn, void *ctx)
{
	char *p = state_path(s, sl, file);
	FILE *f = p ? fopen(p, "re") : NULL;
	char line[128];
	while (f && fgets(line, sizeof(line), f)) {
		line[strcspn(line, "\n")] = '\0';
		char *sp = strchr(line, ' ');
		uint64_t v = 0;
		if (sp) {
			*sp = '\0';
			v = strtoull(sp + 1, NULL, 10);
		}
		struct lfs_cid c;
		if (!lfs_cid_from_string(&c, line))
			fn(ctx, &c, v);
	}
	if (f)
		fclose(f);
	free(p);
}

#define LINE_MAX_LEN (LFS_CID_STRLEN + 24)

static void line_of(char out[LINE_MAX_LEN], const struct lfs_cid *c,
		    bool with_value, uint64_t v)
{
	lfs_cid_to_string(out, c);
	size_t n = strlen(out);
	if (with_value)
		snprintf(out + n, LINE_MAX_LEN - n, " %llu\n",
			 (unsigned long long)v);
	else
		snprintf(out + n, LINE_MAX_LEN - n, "\n");
}

/* Append lines to a state file under the state lock, and sync it. */
static void append_state(struct lfs_sync *s, struct sync_ledger *sl,
			 const char *file, const struct lfs_buf *lines)
{
	if (!lines->len && !lines->err)
		return;
	int lk = state_lock(s, sl), rc = lk < 0 ? lk : lines->err;
	char *p = rc ? NULL : state_path(s, sl, file);
	int fd = p ? open(p, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600)
		   : -1;
	if (!rc)
		rc = fd < 0 ? (p ? -errno : -ENOMEM)
			    : lfs_write_all(fd, lines->data, lines->len);
	if (!rc && fdatasync(fd))
		rc = -errno;
	if (rc)
		lfs_warn("cannot record CAR files in state/%s/%s: %s", sl->name,
			 file, strerror(-rc));
	if (fd >= 0)
		close(fd);
	state_unlock(lk);
	free(p);
}

struct rewrite {
	const struct lfs_cidmap *drop;
	struct lfs_cidmap seen;
	struct lfs_buf out;
	bool with_value;
};

static void rewrite_line(void *ctx, const struct lfs_cid *c, uint64_t v)
{
	struct rewrite *w = ctx;
	uint64_t d = 0;
	if ((lfs_cidmap_get(w->drop, c, &d) && d) ||
	    lfs_cidmap_get(&w->seen, c, NULL))
		return;
	lfs_cidmap_set(&w->seen, c, 1);
	char line[LINE_MAX_LEN];
	line_of(line, c, w->with_value, v);
	lfs_buf_append_str(&w->out, line);
}

/*
 * Rewrite a state file under the state lock: what it holds now, but the
 * entries in drop, plus those of mine (CID -> value) it lacks. Returns 0
 * or -errno (logged).
 */
static int rewrite_state(struct lfs_sync *s, struct sync_ledger *sl,
			 const char *file, const struct lfs_cidmap *drop,
			 const struct lfs_cidmap *mine, bool with_value)
{
	int lk = state_lock(s, sl);
	if (lk < 0) {
		lfs_warn("cannot lock state/%s: %s", sl->name, strerror(-lk));
		return lk;
	}
	struct rewrite w = {.drop = drop, .with_value = with_value};
	lfs_cidmap_init(&w.seen);
	lfs_buf_init(&w.out, 0);
	read_state(s, sl, file, rewrite_line, &w);
	for (size_t i = 0; i < mine->nslots; i++)
		if (mine->slots[i].used)
			rewrite_line(&w, &mine->slots[i].cid,
				     mine->slots[i].value);
	char *p = state_path(s, sl, file);
	char *tmp = p ? malloc(strlen(p) + 8) : NULL;
	int rc = tmp ? w.out.err : -ENOMEM, fd = -1;
	if (!rc) {
		sprintf(tmp, "%s.tmp", p);
		fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
		rc = fd < 0 ? -errno : lfs_write_all(fd, w.out.data, w.out.len);
	}
	if (!rc && fdatasync(fd))
		rc = -errno;
	if (fd >= 0)
		close(fd);
	if (!rc && rename(tmp, p))
		rc = -errno;
	if (rc) {
		if (tmp)
			unlink(tmp);
		lfs_warn("cannot rewrite state/%s/%s: %s", sl->name, file,
			 strerror(-rc));
	}
	state_unlock(lk);
	lfs_cidmap_release(&w.seen);
	lfs_buf_release(&w.out);
	free(tmp);
	free(p);
	return rc;
}

struct load_ctx {
	struct lfs_sync *s;
	struct sync_ledger *sl;
	struct lfs_blockstore *bs;
};

static void load_pushed(void *ctx, const struct lfs_cid *c, uint64_t v)
{
	(void)v;
	lfs_cidmap_set(&((struct load_ctx *)ctx)->sl->pushed, c, 1);
}

/*
 * A listed CAR that is not here is not taken out of the file: another
 * process may be about to store it (it lists a file first). It leaves the
 * file when a process applies it.
 */
static void load_waiting(void *ctx, const struct lfs_cid *c, uint64_t v)
{
	struct load_ctx *x = ctx;
	(void)v;
	uint64_t f = car_flags(x->sl, c);
	if (!(f & (CAR_APPLIED | CAR_BAD)) && lfs_blockstore_has_car(x->bs, c))
		car_set(x->sl, c, CAR_WAITING, 0);
}

static void load_missing(void *ctx, const struct lfs_cid *c, uint64_t since)
{
	struct load_ctx *x = ctx;
	uint64_t old = 0;
	if (!since ||
	    (lfs_cidmap_get(&x->sl->missing, c, &old) && old && old <= since))
		return;
	pthread_mutex_lock(&x->s->lock);
	lfs_cidmap_set(&x->sl->missing, c, since);
	pthread_mutex_unlock(&x->s->lock);
}

/* Has the waiting file changed since it was last read here? */
static bool waiting_changed(struct sync_ledger *sl)
{
	struct stat st;
	if (!sl->waiting_path || stat(sl->waiting_path, &st))
		return false;
	bool changed = st.st_ino != sl->waiting_st.st_ino ||
		       st.st_size != sl->waiting_st.st_size ||
		       st.st_mtim.tv_sec != sl->waiting_st.st_mtim.tv_sec ||
		       st.st_mtim.tv_nsec != sl->waiting_st.st_mtim.tv_nsec;
	sl->waiting_st = st;
	return changed;
}

static void refresh_waiting(struct sync_ledger *sl, struct lfs_blockstore *bs)
{
	if (!waiting_changed(sl))
		return;
	struct load_ctx x = {.s = sl->owner, .sl = sl, .bs = bs};
	read_state(sl->owner, sl, "waiting", load_waiting, &x);
}

static void load_state(struct lfs_sync *s, struct sync_ledger *sl,
		       struct lfs_blockstore *bs)
{
	struct load_ctx x = {.s = s, .sl = sl, .bs = bs};
	if (!sl->waiting_path)
		sl->waiting_path = state_path(s, sl, "waiting");
	read_state(s, sl, "pushed", load_pushed, &x);
	waiting_changed(sl);
	read_state(s, sl, "waiting", load_waiting, &x);
	read_state(s, sl, "missing", load_missing, &x);
}

/* Append car to the pushed file (whose descriptor stays open). */
static void note_pushed(struct lfs_sync *s, struct sync_ledger *sl,
			const struct lfs_cid *car)
{
	if (lfs_cidmap_get(&sl->pushed, car, NULL))
		return;
	lfs_cidmap_set(&sl->pushed, car, 1);
	int fd = sl->pushed_fd;
	char *p = NULL;
	if (fd < 0 && (p = state_path(s, sl, "pushed")))
		fd = open(p, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
	char line[LINE_MAX_LEN];
	line_of(line, car, false, 0);
	int rc = fd < 0 ? -errno : lfs_write_all(fd, line, strlen(line));
	if (rc)
		lfs_warn("cannot record CAR %.*s in state/%s/pushed: %s",
			 LFS_CID_STRLEN, line, sl->name, strerror(-rc));
	sl->pushed_fd = fd;
	free(p);
}

/*
 * Record that CARs are about to be kept here unapplied. Written (and
 * synced) before the ingest that keeps them, so that a crash leaves at
 * worst an entry too many, which the next rounds clear.
 */
static void note_waiting_many(struct lfs_sync *s, struct sync_ledger *sl,
			      const struct lfs_cid *v, size_t n)
{
	struct lfs_buf b;
	lfs_buf_init(&b, 0);
	for (size_t i = 0; i < n; i++) {
		if (car_flags(sl, &v[i]) & CAR_WAITING)
			continue;
		car_set(sl, &v[i], CAR_WAITING, 0);
		char line[LINE_MAX_LEN];
		line_of(line, &v[i], false, 0);
		lfs_buf_append_str(&b, line);
	}
	append_state(s, sl, "waiting", &b);
	lfs_buf_release(&b);
}

static void note_waiting(struct lfs_sync *s, struct sync_ledger *sl,
			 const struct lfs_cid *car)
{
	note_waiting_many(s, sl, car, 1);
}

/* Rewrite the waiting file when entries left it. */
static void save_waiting(struct lfs_sync *s, struct sync_ledger *sl)
{
	if (!sl->waiting_dirty)
		return;
	struct lfs_cidmap mine;
	lfs_cidmap_init(&mine);
	for (size_t i = 0; i < sl->cars.nslots; i++) {
		struct lfs_cidmap_slot *e = &sl->cars.slots[i];
		if (e->used && e->value & CAR_WAITING)
			lfs_cidmap_set(&mine, &e->cid, 0);
	}
	if (!rewrite_state(s, sl, "waiting", &sl->unwaited, &mine, false)) {
		sl->waiting_dirty = false;
		lfs_cidmap_release(&sl->unwaited);
		lfs_cidmap_init(&sl->unwaited);
	}
	lfs_cidmap_release(&mine);
}

/*
 * A CAR this replica needs is not on the store. Remembered with the time
 * it was first missed (in the missing file, so that the command line and
 * a remount know it too) until it arrives; status lists these.
 */
static void note_missing(struct lfs_sync *s, struct sync_ledger *sl,
			 const struct lfs_cid *car)
{
	uint64_t since = 0;
	if (lfs_cidmap_get(&sl->missing, car, &since) && since)
		return;
	since = (uint64_t)(now_us() / 1000000);
	pthread_mutex_lock(&s->lock);
	int rc = lfs_cidmap_set(&sl->missing, car, since);
	pthread_mutex_unlock(&s->lock);
	if (rc)
		return;
	lfs_cidmap_set(&sl->unmissed, car, 0);
	struct lfs_buf b;
	lfs_buf_init(&b, 0);
	char line[LINE_MAX_LEN];
	line_of(line, car, true, since);
	lfs_buf_append_str(&b, line);
	append_state(s, sl, "missing", &b);
	lfs_buf_release(&b);
}

/* car is here now: no longer missing. */
static void clear_missing(struct lfs_sync *s, struct sync_ledger *sl,
			  const struct lfs_cid *car)
{
	uint64_t since = 0;
	if (!lfs_cidmap_get(&sl->missing, car, &since) || !since)
		return;
	pthread_mutex_lock(&s->lock);
	lfs_cidmap_set(&sl->missing, car, 0);
	pthread_mutex_unlock(&s->lock);
	lfs_cidmap_set(&sl->unmissed, car, 1);
	sl->missing_dirty = true;
}

static void save_missing(struct lfs_sync *s, struct sync_ledger *sl)
{
	if (!sl->missing_dirty)
		return;
	struct lfs_cidmap mine;
	lfs_cidmap_init(&mine);
	pthread_mutex_lock(&s->lock);
	for (size_t i = 0; i < sl->missing.nslots; i++) {
		struct lfs_cidmap_slot *e = &sl->missing.slots[i];
		if (e->used && e->value)
			lfs_cidmap_set(&mine, &e->cid, e->value);
	}
	pthread_mutex_unlock(&s->lock);
	if (!rewrite_state(s, sl, "missing", &sl->unmissed, &mine, true)) {
		sl->missing_dirty = false;
		lfs_cidmap_release(&sl->unmissed);
		lfs_cidmap_init(&sl->unmissed);
	}
	lfs_cidmap_release(&mine);
}

/* ---- pull ---- */

struct keys {
	struct lfs_cid *v;
	size_t n, cap;
};

static int keys_add(struct keys *k, const struct lfs_cid *c)
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

static int collect_cid(void *ctx, const char *key)
{
	const char *slash = strrchr(key, '/');
	struct lfs_cid c;
	if (!slash || lfs_cid_from_string(&c, slash + 1) ||
	    c.codec != LFS_CODEC_RAW)
		return 0; /* not ours: ignore */
	return keys_add(ctx, &c);
}

static void key_for(char *out, size_t n, struct sync_ledger *sl,
		    const char *kind, const struct lfs_cid *c)
{
	char cs[LFS_CID_STRLEN + 1];
	lfs_cid_to_string(cs, c);
	snprintf(out, n, "%s/%s/%s", sl->enc, kind, cs);
}

#define HEADS_PREFIX "heads/"

/*
 * The key of CAR c's head record: "heads/<enc>~<cid>" (all ledgers' records
 * under one prefix, listed with one request), or in the legacy layout
 * "<enc>/head/<cid>" (one listing per ledger; still written, for older
 * versions, and read in the slow sweep).
 */
static void rec_key(char *out, size_t n, struct sync_ledger *sl,
		    const struct lfs_cid *c, bool legacy)
{
	char cs[LFS_CID_STRLEN + 1];
	lfs_cid_to_string(cs, c);
	if (legacy)
		snprintf(out, n, "%s/head/%s", sl->enc, cs);
	else
		snprintf(out, n, HEADS_PREFIX "%s~%s", sl->enc, cs);
}

/* In a set of records (value 1; 0 is a record removed since). */
static bool has(const struct lfs_cidmap *m, const struct lfs_cid *c)
{
	uint64_t v = 0;
	return lfs_cidmap_get(m, c, &v) && v;
}

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

/* Say why (sl->why), and log it once per CAR. */
static void log_car(struct sync_ledger *sl, const struct lfs_cid *c,
		    const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(sl->why, sizeof(sl->why), fmt, ap);
	va_end(ap);
	if (car_flags(sl, c) & CAR_LOGGED)
		return;
	car_set(sl, c, CAR_LOGGED, 0);
	lfs_warn("sync of ledger '%s': %s", sl->name, sl->why);
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
		       (uint64_t)(mono_ms() + wait) << 8 | tries);
}

static void reject(struct lfs_sync *s, struct sync_ledger *sl,
		   const struct lfs_cid *c, int err)
{
	char cs[LFS_CID_STRLEN + 1], msg[sizeof(sl->last_rejected)];
	lfs_cid_to_string(cs, c);
	snprintf(msg, sizeof(msg), "rejected CAR %s from the store: %s", cs,
		 lfs_errmsg(err));
	if (!(car_flags(sl, c) & CAR_LOGGED))
		lfs_warn("sync of ledger '%s': %s", sl->name, msg);
	car_set(sl, c, CAR_BAD | CAR_LOGGED, CAR_WAITING);
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
static int fetch_car(uint8_t **out, size_t *out_len, bool *bad,
		     struct lfs_store *st, struct sync_ledger *sl,
		     const struct lfs_cid *car)
{
	*bad = false;
	char key[400];
	key_for(key, sizeof(key), sl, "car", car);
	if (!sl->have_key || !sl->fetch_dir)
		return -ENOKEY; /* pull() sets them up */
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
	size_t n;
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
		lfs_store_cancel_at(st, lfs_store_now_us());
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
			    : fetch_car(&bytes, &len, &bad, st, p->sl,
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
		p->sl->catchup_fetched = done;
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

/*
 * Fetch every CAR file of the ledger that is missing here, at once (see
 * PREFETCH_*). They land here kept, unapplied (listed as waiting first),
 * for fetch_apply() to apply parents first without a request each. A file
 * that fails its checks is rejected; any other failure leaves that file to
 * the usual one-by-one path. Returns 0 or the listing's error.
 */
static int prefetch(struct lfs_sync *s, struct sync_ledger *sl,
		    struct lfs_ledger *l)
{
	if (sl->prefetched_pull == sl->pulls)
		return 0;
	sl->prefetched_pull = sl->pulls;
	char prefix[300];
	snprintf(prefix, sizeof(prefix), "%s/car/", sl->enc);
	struct keys k = {0};
	int rc = lfs_store_list(s->store, prefix, collect_cid, &k);
	struct lfs_blockstore *bs = lfs_ledger_store(l);
	size_t n = 0;
	for (size_t i = 0; !rc && i < k.n; i++)
		if (!lfs_blockstore_has_car(bs, &k.v[i]) &&
		    !(car_flags(sl, &k.v[i]) & CAR_BAD))
			k.v[n++] = k.v[i];
	if (rc || n < PREFETCH_MIN) {
		free(k.v);
		return rc == -ENOENT ? 0 : rc;
	}
	lfs_info("sync of ledger '%s': catching up: fetching %zu CAR files "
		 "from %s",
		 sl->name, n, s->shown);
	note_waiting_many(s, sl, k.v, n);
	pthread_mutex_lock(&s->lock);
	sl->catchup_files = n;
	sl->catchup_fetched = sl->catchup_applied = 0;
	sl->catchup_start_us = now_us();
	pthread_mutex_unlock(&s->lock);
	struct prefetch p = {.s = s, .sl = sl, .bs = bs, .v = k.v, .n = n};
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
			clear_missing(s, sl, &k.v[i]);
			note_pushed(s, sl, &k.v[i]); /* the remote has it */
		} else if (p.res[i] == -EBADMSG || p.res[i] == -EFBIG) {
			reject(s, sl, &k.v[i], p.res[i]);
		} else {
			car_set(sl, &k.v[i], 0, CAR_WAITING);
		}
	}
	if (!p.res)
		for (size_t i = 0; i < n; i++)
			car_set(sl, &k.v[i], 0, CAR_WAITING);
	if (failed)
		lfs_warn("sync of ledger '%s': %zu CAR files could not be "
			 "fetched "
			 "at once (%s); fetching them one by one",
			 sl->name, failed, lfs_errmsg(first_err));
	lfs_info("sync of ledger '%s': fetched %zu of %zu CAR files in %.1f s",
		 sl->name, got, n,
		 (double)(now_us() - sl->catchup_start_us) / 1e6);
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

/* The CARs one fetch_apply() is working through, newest first. */
struct chain {
	struct keys stack;
	struct lfs_cidmap on; /* CAR -> 1 while on the stack */
	/* Of those, how many are CAR_WAITING: a hint (another process's
	 * waiting entries may arrive meanwhile); an undercount only makes
	 * fetch_apply() read a root first. */
	size_t waiting_on;
};

static int chain_push(struct chain *ch, struct sync_ledger *sl,
		      const struct lfs_cid *c)
{
	int rc = keys_add(&ch->stack, c);
	if (!rc && (rc = lfs_cidmap_set(&ch->on, c, 1)))
		ch->stack.n--;
	if (!rc && car_flags(sl, c) & CAR_WAITING)
		ch->waiting_on++;
	return rc;
}

static void chain_pop(struct chain *ch, struct sync_ledger *sl)
{
	struct lfs_cid c = ch->stack.v[--ch->stack.n];
	lfs_cidmap_set(&ch->on, &c, 0);
	if (car_flags(sl, &c) & CAR_WAITING)
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
	if (car_flags(sl, c) & CAR_WAITING) {
		ch->waiting_on -= ch->waiting_on > 0;
		car_set(sl, c, 0, CAR_WAITING);
	}
}

/*
 * The first CAR named by root (those holding its events' parents) that is
 * not applied here, in *out: 0 when there is none, 1 when there is one to
 * fetch and apply first, 2 when it was rejected, -1 when it is on the chain
 * already (a cycle).
 */
static int unapplied_parent(struct lfs_cid *out, struct sync_ledger *sl,
			    struct lfs_blockstore *bs, struct chain *ch,
			    const struct lfs_car_root *root)
{
	for (size_t i = 0; i < root->ncars; i++) {
		const struct lfs_cid *p = &root->cars[i];
		if (applied(sl, bs, p))
			continue;
		*out = *p;
		if (car_flags(sl, p) & CAR_BAD)
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
static int fetch_apply(struct lfs_sync *s, struct sync_ledger *sl,
		       struct lfs_ledger *l, const struct lfs_cid *c)
{
	struct lfs_blockstore *bs = lfs_ledger_store(l);
	struct chain ch = {0};
	lfs_cidmap_init(&ch.on);
	int rc = chain_push(&ch, sl, c), out = HEAD_APPLIED;
	struct lfs_arena a;
	lfs_arena_init(&a, 0);
	while (!rc && ch.stack.n > 0) {
		struct lfs_cid top = ch.stack.v[ch.stack.n - 1], missing;
		char cs[LFS_CID_STRLEN + 1], ps[LFS_CID_STRLEN + 1];
		lfs_cid_to_string(cs, &top);
		if (lfs_cidmap_get(&sl->missing, &top, NULL))
			lfs_cidmap_set(&sl->needed, &top, 1);
		if (applied(sl, bs, &top)) {
			chain_pop(&ch, sl);
			continue;
		}
		if (car_flags(sl, &top) & CAR_BAD) {
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
		if (!due(sl, &top)) {
			out = HEAD_DEFERRED;
			break;
		}
		if (ch.stack.n == PREFETCH_DEPTH &&
		    !lfs_blockstore_has_car(bs, &top) &&
		    (rc = prefetch(s, sl, l)))
			break;
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
			r = fetch_car(&bytes, &len, &bad, s->store, sl, &top);
			if (bad) {
				reject(s, sl, &top, r);
				out = ch.stack.n == 1 ? HEAD_REJECTED
						      : HEAD_BLOCKED;
				r = 1;
				goto next;
			}
			if (r == -EPROTONOSUPPORT) {
				log_car(sl, &top,
					"CAR %s: %s (a newer ledgerfs may "
					"read it); will try again",
					cs, lfs_errmsg(r));
				defer(s, sl, &top);
				out = HEAD_DEFERRED;
				r = 1;
				goto next;
			}
			if (r == -ENOENT) {
				uint64_t since = 0;
				note_missing(s, sl, &top);
				lfs_cidmap_get(&sl->missing, &top, &since);
				char when[LFS_TIME_ISO_MAX];
				lfs_time_iso(when, (int64_t)since * 1000000);
				log_car(sl, &top,
					"CAR %s is missing on the store (since "
					"%s); will try again",
					cs, when);
				defer(s, sl, &top);
				out = HEAD_DEFERRED;
				r = 1;
				goto next;
			}
			if (r == -EBADMSG) {
				log_car(sl, &top,
					"CAR %s is not a readable file on the "
					"store; will try again",
					cs);
				defer(s, sl, &top);
				out = HEAD_DEFERRED;
				r = 1;
				goto next;
			}
			if (r)
				goto next;
			clear_missing(s, sl, &top);
			note_pushed(s, sl, &top); /* the remote has it */
			if (!(car_flags(sl, &top) & CAR_WAITING)) {
				note_waiting(s, sl, &top);
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
			int u = unapplied_parent(&p, sl, bs, &ch, &root);
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
					log_car(sl, &top,
						"CAR %s: its parent CAR %s "
						"needs it in turn; will try "
						"again",
						cs, ps);
					defer(s, sl, &top);
					out = HEAD_DEFERRED;
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
			if (car_flags(sl, &top) & CAR_LOGGED)
				lfs_info("sync of ledger '%s': CAR %s applied "
					 "after all",
					 sl->name, cs);
			chain_unwait(&ch, sl, &top);
			count_applied(s, sl);
			car_set(sl, &top, CAR_APPLIED, CAR_LOGGED);
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
			    !applied(sl, bs, &missing) &&
			    !chain_has(&ch, &missing)) {
				if (!(car_flags(sl, &missing) & CAR_BAD)) {
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
			log_car(sl, &top,
				"CAR %s cannot be applied yet (parent events "
				"missing, or a clock ahead of this machine's); "
				"will try again",
				cs);
			defer(s, sl, &top);
			out = HEAD_DEFERRED;
			r = 1;
		} else if (r == -EBADMSG) {
			chain_unwait(&ch, sl, &top);
			reject(s, sl, &top, r); /* ingest removed the file */
			out = ch.stack.n == 1 ? HEAD_REJECTED : HEAD_BLOCKED;
			r = 1;
		} else if (r == -EPROTONOSUPPORT) {
			log_car(sl, &top,
				"CAR %s: %s (a newer ledgerfs may read it); "
				"will try again",
				cs, lfs_errmsg(r));
			defer(s, sl, &top);
			out = HEAD_DEFERRED;
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

/* What fetch_car() needs: the ledger's key, the directory to spill to. */
static int fetch_setup(struct lfs_sync *s, struct sync_ledger *sl)
{
	if (!sl->fetch_dir && !(sl->fetch_dir = state_path(s, sl, "")))
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
static int pull(struct lfs_sync *s, struct sync_ledger *sl,
		struct lfs_ledger *l, const struct keys *kp,
		size_t *out_unapplied)
{
	const struct keys k = *kp;
	int rc = fetch_setup(s, sl);
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
	for (size_t i = 0; i < k.n && !rc; i++) {
		const struct lfs_cid *c = &k.v[i];
		uint64_t f = car_flags(sl, c);
		if (lfs_cidmap_get(&sl->bad_records, c, NULL)) {
			rc = lfs_cidmap_set(&bad, c, 1);
			continue;
		}
		if (applied(sl, bs, c) || f & CAR_BAD) {
			rc = lfs_cidmap_set(&heads, c, 1);
			continue;
		}
		char cs[LFS_CID_STRLEN + 1];
		lfs_cid_to_string(cs, c);
		int r = 0;
		if (!(f & CAR_RECORD_OK)) {
			char key[400];
			rec_key(key, sizeof(key), sl, c,
				!has(&sl->fresh_heads, c));
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
			car_set(sl, c, CAR_RECORD_OK, 0);
		}
		if ((rc = lfs_cidmap_set(&heads, c, 1)))
			break;
		r = fetch_apply(s, sl, l, c);
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
			rc = keys_add(&w, &e->cid);
	}
	for (size_t i = 0; !rc && i < w.n; i++) {
		int r = fetch_apply(s, sl, l, &w.v[i]);
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
			 (double)(now_us() - sl->catchup_start_us) / 1e6);
		sl->catchup_files = 0;
	}
	pthread_mutex_unlock(&s->lock);
	lfs_ledger_root(l, &after);
	if (!lfs_cid_equal(&before, &after)) {
		mark_active(s);
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
				clear_missing(s, sl, &e->cid);
		}
		lfs_cidmap_release(&sl->remote_heads);
		sl->remote_heads = heads;
		lfs_cidmap_release(&sl->bad_records);
		sl->bad_records = bad;
		*out_unapplied = unapplied;
		pthread_mutex_lock(&s->lock);
		sl->last_poll_us = now_us();
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

/* How many local CAR files the remote lacks (the outbox), or an error. */
static int count_outbox(size_t *out, struct sync_ledger *sl,
			struct lfs_blockstore *bs)
{
	struct lfs_cid *cars = NULL;
	size_t ncars = 0, n = 0;
	int rc = lfs_blockstore_list_cars(&cars, &ncars, bs);
	for (size_t i = 0; !rc && i < ncars; i++)
		n += !lfs_cidmap_get(&sl->pushed, &cars[i], NULL);
	free(cars);
	if (!rc)
		*out = n;
	return rc;
}

static void set_pending(struct lfs_sync *s, struct sync_ledger *sl, size_t n)
{
	pthread_mutex_lock(&s->lock);
	sl->pending = n;
	pthread_mutex_unlock(&s->lock);
}

static int push(struct lfs_sync *s, struct sync_ledger *sl,
		struct lfs_ledger *l)
{
	struct lfs_blockstore *bs = lfs_ledger_store(l);
	struct lfs_cid *cars = NULL, *hcars = NULL, *heads = NULL;
	size_t ncars = 0, nhcars = 0, nheads = 0, uploaded = 0;
	struct keys added = {0}, removed = {0};
	int rc = lfs_blockstore_list_cars(&cars, &ncars, bs);
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
		if (!rc) {
			note_pushed(s, sl, &cars[i]);
			uploaded++;
		}
	}
	size_t pending = 0;
	for (size_t i = 0; i < ncars; i++)
		pending += !lfs_cidmap_get(&sl->pushed, &cars[i], NULL);
	set_pending(s, sl, pending);
	if (uploaded)
		mark_active(s);
	/* The ledger's markers, in both layouts. */
	for (int legacy = 0; !rc && !sl->marker_done && legacy < 2; legacy++) {
		char key[300];
		snprintf(key, sizeof(key),
			 legacy ? "ledgers/%s" : HEADS_PREFIX "%s", sl->enc);
		rc = lfs_store_put(s->store, key, (const uint8_t *)"", 0, true);
		if (rc == -EEXIST)
			rc = 0;
		sl->marker_done = !rc && legacy;
	}
	if (!rc)
		rc = lfs_ledger_head_cars(l, &hcars, &nhcars);
	if (!rc)
		rc = lfs_ledger_heads(l, &heads, &nheads);
	/* New head records first (only for CARs the remote has: a commit
	 * may have landed after the uploads above), under heads/ and then in
	 * the legacy layout... */
	for (size_t i = 0; !rc && i < nhcars; i++) {
		bool fresh = has(&sl->fresh_heads, &hcars[i]);
		bool legacy = has(&sl->legacy_heads, &hcars[i]);
		if ((fresh && legacy) ||
		    !lfs_cidmap_get(&sl->pushed, &hcars[i], NULL))
			continue;
		char cs[LFS_CID_STRLEN + 1], key[400];
		lfs_cid_to_string(cs, &hcars[i]);
		json_t *parents = json_array();
		for (size_t k = 0; parents && k < sl->remote_heads.nslots;
		     k++) {
			struct lfs_cidmap_slot *sl2 =
				&sl->remote_heads.slots[k];
			if (!sl2->used || !sl2->value)
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
		rc = text ? 0 : -ENOMEM;
		if (!rc && !fresh) {
			rec_key(key, sizeof(key), sl, &hcars[i], false);
			rc = lfs_store_put(s->store, key, (const uint8_t *)text,
					   strlen(text), false);
			if (!rc)
				rc = lfs_cidmap_set(&sl->fresh_heads, &hcars[i],
						    1);
			if (!rc)
				rc = keys_add(&added, &hcars[i]);
		}
		if (!rc && !legacy) {
			rec_key(key, sizeof(key), sl, &hcars[i], true);
			rc = lfs_store_put(s->store, key, (const uint8_t *)text,
					   strlen(text), false);
			if (!rc)
				rc = lfs_cidmap_set(&sl->legacy_heads,
						    &hcars[i], 1);
		}
		free(text);
		if (!rc)
			rc = lfs_cidmap_set(&sl->remote_heads, &hcars[i], 1);
	}
	/* ...then drop the records they supersede, in both layouts. */
	struct lfs_arena a;
	lfs_arena_init(&a, 0);
	for (size_t k = 0; !rc && k < sl->remote_heads.nslots; k++) {
		struct lfs_cidmap_slot *slot = &sl->remote_heads.slots[k];
		if (!slot->used || !slot->value)
			continue;
		bool ours = false;
		for (size_t i = 0; i < nhcars && !ours; i++)
			ours = lfs_cid_equal(&hcars[i], &slot->cid);
		if (ours || !applied(sl, bs, &slot->cid))
			continue;
		struct lfs_car_root root;
		struct lfs_arena_mark m = lfs_arena_mark(&a);
		if (!lfs_blockstore_load(&root, &a, bs, &slot->cid, false) &&
		    superseded(l, heads, nheads, root.head, root.nhead)) {
			char key[400];
			struct lfs_cid c = slot->cid;
			if (has(&sl->fresh_heads, &c)) {
				rec_key(key, sizeof(key), sl, &c, false);
				rc = lfs_store_del(s->store, key);
			}
			if (!rc && has(&sl->legacy_heads, &c)) {
				rec_key(key, sizeof(key), sl, &c, true);
				rc = lfs_store_del(s->store, key);
			}
			if (!rc) {
				slot->value = 0;
				lfs_cidmap_set(&sl->fresh_heads, &c, 0);
				lfs_cidmap_set(&sl->legacy_heads, &c, 0);
				keys_add(&removed, &c);
			}
		}
		lfs_arena_rewind(&a, m);
	}
	lfs_arena_release(&a);
	if (added.n || removed.n) {
		mark_active(s);
		if (s->meta)
			lfs_meta_announce(s->meta, sl->enc, added.v, added.n,
					  removed.v, removed.n);
	}
	free(added.v);
	free(removed.v);
	if (!rc) {
		pthread_mutex_lock(&s->lock);
		sl->last_push_us = now_us();
		sl->pushed_gen = s->generation + 1;
		pthread_mutex_unlock(&s->lock);
	}
	free(cars);
	free(hcars);
	free(heads);
	return rc;
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

/* ---- the listing of every ledger's head records ---- */

struct entry {
	char *enc;
	struct lfs_cid car;
	bool marker; /* heads/<enc>: the ledger exists */
};

struct listing {
	struct entry *v;
	size_t n, cap;
	uint64_t hash; /* of the keys, in any order */
};

static int collect_listing(void *ctx, const char *key)
{
	struct listing *lst = ctx;
	size_t pl = strlen(HEADS_PREFIX);
	if (strncmp(key, HEADS_PREFIX, pl))
		return 0;
	const char *enc = key + pl, *tilde = strchr(enc, '~');
	size_t elen = tilde ? (size_t)(tilde - enc) : strlen(enc);
	struct entry e = {0};
	e.marker = !tilde;
	if (!elen || elen > LFS_META_ENC_MAX || memchr(enc, '/', elen) ||
	    (tilde && (lfs_cid_from_string(&e.car, tilde + 1) ||
		       e.car.codec != LFS_CODEC_RAW)))
		return 0; /* not ours: ignore */
	uint64_t h = 1469598103934665603ULL;
	for (const char *c = key; *c; c++)
		h = (h ^ (unsigned char)*c) * 1099511628211ULL;
	lst->hash += h;
	if (lst->n == lst->cap) {
		size_t cap = lst->cap ? lst->cap * 2 : 64;
		void *p = realloc(lst->v, cap * sizeof(*lst->v));
		if (!p)
			return -ENOMEM;
		lst->v = p;
		lst->cap = cap;
	}
	if (!(e.enc = strndup(enc, elen)))
		return -ENOMEM;
	lst->v[lst->n++] = e;
	return 0;
}

static int entry_cmp(const void *a, const void *b)
{
	return strcmp(((const struct entry *)a)->enc,
		      ((const struct entry *)b)->enc);
}

static void listing_release(struct listing *lst)
{
	for (size_t i = 0; i < lst->n; i++)
		free(lst->v[i].enc);
	free(lst->v);
	memset(lst, 0, sizeof(*lst));
}

/* The index of the first entry of ledger enc (sorted listing), or n. */
static size_t listing_find(const struct listing *lst, const char *enc)
{
	size_t lo = 0, hi = lst->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (strcmp(lst->v[mid].enc, enc) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < lst->n && !strcmp(lst->v[lo].enc, enc) ? lo : lst->n;
}

/* The heads a pull starts from: sl's entries of the listing, and the
 * records of the last legacy sweep. Sets sl->fresh_heads. */
static int round_heads(struct keys *out, struct sync_ledger *sl,
		       const struct listing *lst)
{
	struct lfs_cidmap fresh, all;
	lfs_cidmap_init(&fresh);
	lfs_cidmap_init(&all);
	int rc = 0;
	for (size_t i = listing_find(lst, sl->enc);
	     !rc && i < lst->n && !strcmp(lst->v[i].enc, sl->enc); i++)
		if (!lst->v[i].marker && !has(&all, &lst->v[i].car) &&
		    !(rc = lfs_cidmap_set(&fresh, &lst->v[i].car, 1)) &&
		    !(rc = lfs_cidmap_set(&all, &lst->v[i].car, 1)))
			rc = keys_add(out, &lst->v[i].car);
	for (size_t i = 0; !rc && i < sl->legacy_heads.nslots; i++) {
		struct lfs_cidmap_slot *e = &sl->legacy_heads.slots[i];
		if (e->used && e->value && !has(&all, &e->cid) &&
		    !(rc = lfs_cidmap_set(&all, &e->cid, 1)))
			rc = keys_add(out, &e->cid);
	}
	lfs_cidmap_release(&all);
	if (rc) {
		lfs_cidmap_release(&fresh);
		return rc;
	}
	lfs_cidmap_release(&sl->fresh_heads);
	sl->fresh_heads = fresh;
	return 0;
}

/* List sl's records in the legacy layout into sl->legacy_heads. */
static int sweep(struct lfs_sync *s, struct sync_ledger *sl)
{
	char prefix[300];
	snprintf(prefix, sizeof(prefix), "%s/head/", sl->enc);
	struct keys k = {0};
	int rc = lfs_store_list(s->store, prefix, collect_cid, &k);
	if (rc == -ENOENT)
		rc = 0;
	struct lfs_cidmap m;
	lfs_cidmap_init(&m);
	for (size_t i = 0; !rc && i < k.n; i++)
		rc = lfs_cidmap_set(&m, &k.v[i], 1);
	free(k.v);
	if (rc) {
		lfs_cidmap_release(&m);
		return rc;
	}
	lfs_cidmap_release(&sl->legacy_heads);
	sl->legacy_heads = m;
	sl->swept = true;
	return 0;
}

/*
 * One ledger's round, from the listing lst. store_err: the store already
 * failed this round (it is unreachable, or refuses us): only count the
 * outbox. swept: also list its records in the legacy layout (a ledger
 * never swept by this process always is).
 */
static int round_one(struct lfs_sync *s, const char *name, int store_err,
		     const struct listing *lst, bool swept)
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
		load_state(s, sl, bs);
		sl->loaded = true;
	}
	size_t pending = 0, unapplied = 0;
	/* Counted before any network, so it is right while the store is
	 * down too. */
	if (!count_outbox(&pending, sl, bs))
		set_pending(s, sl, pending);
	int rc = store_err;
	if (!rc && (swept || !sl->swept))
		rc = sweep(s, sl);
	struct keys k = {0};
	if (!rc)
		rc = round_heads(&k, sl, lst);
	if (!rc)
		rc = pull(s, sl, l, &k, &unapplied);
	free(k.v);
	if (!rc)
		rc = push(s, sl, l);
	save_waiting(s, sl);
	save_missing(s, sl);
	finish(s, sl, rc, unapplied);
	return rc;
}

/* A remote ledger's name (percent-encoded): create a local store when we
 * lack one, so it is listed (and says "no key"). */
static void discover_enc(struct lfs_sync *s, const char *enc)
{
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
		return;
	char *dir = lfs_home_ledger_dir(s->home, name);
	if (dir && mkdir(dir, 0700) == 0)
		lfs_info("found ledger '%s' on %s", name, s->shown);
	free(dir);
}

static int discover(void *ctx, const char *key)
{
	discover_enc(ctx, key + strlen("ledgers/"));
	return 0;
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
	struct listing lst = {0};
	int r = lfs_store_list(s->store, HEADS_PREFIX, collect_listing, &lst);
	int store_err = r == -ENOENT ? 0 : r;
	if (store_err && !store_wide(r))
		lfs_warn("cannot list the head records on %s: %s", s->shown,
			 lfs_errmsg(r));
	if (lst.n)
		qsort(lst.v, lst.n, sizeof(*lst.v), entry_cmp);
	if (!store_err && (!s->listed || lst.hash != s->listing_hash)) {
		if (s->listed)
			mark_active(s);
		s->listing_hash = lst.hash;
		s->listed = true;
	}
	int64_t now = mono_ms();
	if (!name) {
		for (size_t i = 0; !store_err && i < lst.n; i++)
			if (!i || strcmp(lst.v[i].enc, lst.v[i - 1].enc))
				discover_enc(s, lst.v[i].enc);
		/* ...and, slowly, the ledgers older versions announce. */
		if (!store_err && now >= s->next_discovery) {
			r = lfs_store_list(s->store, "ledgers/", discover, s);
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
	listing_release(&lst);
	pthread_mutex_lock(&s->lock);
	s->generation++;
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->lock);
	pthread_mutex_unlock(&s->round_lock);
	return rc;
}

/* ---- hints from the real-time endpoint ---- */

/* Take one token of the hint fetch budget (HINT_RATE a second). */
static bool hint_budget(struct lfs_sync *s)
{
	int64_t now = mono_ms();
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
	if (applied(sl, bs, &h->car) || car_flags(sl, &h->car) & CAR_BAD ||
	    car_flags(sl, &h->car) & CAR_WAITING)
		return false;
	if (!hint_budget(s))
		return true;
	uint8_t *bytes = NULL;
	size_t len = 0;
	bool bad = false;
	int r = fetch_setup(s, sl);
	if (!r)
		r = fetch_car(&bytes, &len, &bad, s->store, sl, &h->car);
	if (bad) {
		reject(s, sl, &h->car, r);
		return false;
	}
	if (r) {
		s->hints_ignored++;
		return r != -ENOENT; /* a lie costs one GET; else: list */
	}
	note_waiting(s, sl, &h->car);
	r = lfs_blockstore_import(NULL, NULL, bs, &h->car, bytes, len);
	free(bytes);
	if (r == -EBADMSG || r == -EFBIG) {
		reject(s, sl, &h->car, r);
		return false;
	}
	if (r) {
		car_set(sl, &h->car, 0, CAR_WAITING);
		return true;
	}
	note_pushed(s, sl, &h->car);
	struct lfs_cid before, after;
	lfs_ledger_root(l, &before);
	lfs_ledger_ingest_begin(l);
	r = fetch_apply(s, sl, l, &h->car);
	int erc = lfs_ledger_ingest_end(l);
	save_waiting(s, sl);
	lfs_ledger_root(l, &after);
	if (r == HEAD_APPLIED && !erc) {
		/* Its writer wrote the records before announcing it. */
		lfs_cidmap_set(&sl->remote_heads, &h->car, 1);
		lfs_cidmap_set(&sl->fresh_heads, &h->car, 1);
		lfs_cidmap_set(&sl->legacy_heads, &h->car, 1);
	}
	if (!lfs_cid_equal(&before, &after)) {
		mark_active(s);
		if (s->hooks.changed)
			s->hooks.changed(s->hooks.ctx, sl->name, &before,
					 &after);
	}
	return r != HEAD_APPLIED;
}

/* Apply the hints waiting; whether a listing should come soon. */
static bool hint_round(struct lfs_sync *s)
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
	if (mono_ms() < s->active_until || delay < s->poll_ms)
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
		bool full = s->kicked || mono_ms() >= next;
		bool hinted = s->hinted;
		s->kicked = s->hinted = false;
		pthread_mutex_unlock(&s->lock);
		if (hinted && s->meta && hint_round(s) && !full) {
			/* The endpoint says: look at the store soon. */
			if (last + s->poll_ms < next)
				next = last + s->poll_ms;
			full = mono_ms() >= next;
		}
		int rc = full ? lfs_sync_round(s, NULL) : 0;
		pthread_mutex_lock(&s->lock);
		if (full) {
			last = mono_ms();
			s->delay_ms = next_delay(s, rc, s->delay_ms);
			next = last + s->delay_ms;
		}
		while (!s->kicked && !s->hinted && !s->stopping) {
			int64_t left = next - mono_ms();
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
	s->active_until = mono_ms() + ACTIVE_MS;
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
		lfs_store_cancel_at(s->store, lfs_store_now_us());
	pthread_mutex_lock(&s->lock);
	for (size_t i = 0; i < PREFETCH_THREADS; i++)
		if (s->fetchers[i])
			lfs_store_cancel_at(s->fetchers[i], lfs_store_now_us());
	pthread_mutex_unlock(&s->lock);
	pthread_join(s->thread, NULL);
	s->running = false;
	if (s->store)
		lfs_store_cancel_at(s->store,
				    lfs_store_now_us() +
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
		free(sl->waiting_path);
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
