#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "sync_int.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fileio.h"
#include "log.h"

/* ---- per-CAR state ---- */

uint64_t lfs_sync_car_flags(struct sync_ledger *sl, const struct lfs_cid *c)
{
	uint64_t f = 0;
	lfs_cidmap_get(&sl->cars, c, &f);
	return f;
}

int lfs_sync_car_set(struct sync_ledger *sl, const struct lfs_cid *c,
		     uint64_t set, uint64_t clear)
{
	uint64_t old = lfs_sync_car_flags(sl, c), f = (old | set) & ~clear;
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

/*
 * Applied here: the ledger says so (lfs_ledger_car_applied()), and once it
 * has, this process remembers. What the waiting file lists is only a hint
 * (which kept files to try again): another process on this home may keep
 * a file unapplied that this one never heard of, so a file here says
 * nothing by itself. CAR_WAITING, set here from the waiting file or by
 * this process, answers no without a walk of the history: a catch-up
 * asks of many kept files. A file found here unapplied and not known to
 * wait is listed in the waiting file, which heals a list that lost it.
 */
bool lfs_sync_applied(struct sync_ledger *sl, struct lfs_ledger *l,
		      const struct lfs_cid *c)
{
	uint64_t f = lfs_sync_car_flags(sl, c);
	if (f & CAR_APPLIED)
		return true;
	if (f & (CAR_WAITING | CAR_BAD))
		return false;
	int r = lfs_ledger_car_applied(l, c);
	if (r == 1)
		lfs_sync_car_set(sl, c, CAR_APPLIED, 0);
	else if (r == 0) /* here, unapplied */
		lfs_sync_note_waiting(sl->owner, sl, c);
	return r == 1;
}

/* May CAR c be tried now (its backoff since the last failure is over)? */
bool lfs_sync_due(struct sync_ledger *sl, const struct lfs_cid *c)
{
	uint64_t v;
	return !lfs_cidmap_get(&sl->retry, c, &v) || !v ||
	       (int64_t)(v >> 8) <= lfs_mono_ms();
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

char *lfs_sync_state_path(struct lfs_sync *s, struct sync_ledger *sl,
			  const char *file)
{
	char *p = lfs_home_state_path(s->home, sl->name, file);
	if (!p)
		return NULL;
	int rc = sl->state_dir ? 0 : *file ? lfs_mkdirs_for(p) : lfs_mkdirs(p);
	if (rc)
		lfs_warn("cannot make the directory for %s: %s", p,
			 strerror(-rc));
	sl->state_dir = !rc;
	return p;
}

/* Take the ledger's state lock: a descriptor for state_unlock(), or -errno. */
static int state_lock(struct lfs_sync *s, struct sync_ledger *sl)
{
	char *p = lfs_sync_state_path(s, sl, "lock");
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
	char *p = lfs_sync_state_path(s, sl, file);
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
	char *p = rc ? NULL : lfs_sync_state_path(s, sl, file);
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
	char *p = lfs_sync_state_path(s, sl, file);
	int rc = p ? w.out.err : -ENOMEM;
	if (!rc)
		rc = lfs_write_atomic(p, w.out.data, w.out.len, 0600, true);
	if (rc)
		lfs_warn("cannot rewrite state/%s/%s: %s", sl->name, file,
			 strerror(-rc));
	state_unlock(lk);
	lfs_cidmap_release(&w.seen);
	lfs_buf_release(&w.out);
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
	uint64_t f = lfs_sync_car_flags(x->sl, c);
	if (!(f & (CAR_APPLIED | CAR_BAD)) && lfs_blockstore_has_car(x->bs, c))
		lfs_sync_car_set(x->sl, c, CAR_WAITING, 0);
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

void lfs_sync_load_state(struct lfs_sync *s, struct sync_ledger *sl,
			 struct lfs_blockstore *bs)
{
	struct load_ctx x = {.s = s, .sl = sl, .bs = bs};
	read_state(s, sl, "pushed", load_pushed, &x);
	read_state(s, sl, "waiting", load_waiting, &x);
	read_state(s, sl, "missing", load_missing, &x);
}

/* Append car to the pushed file (whose descriptor stays open). */
void lfs_sync_note_pushed_many(struct lfs_sync *s, struct sync_ledger *sl,
			       const struct lfs_cid *v, size_t n)
{
	struct lfs_buf b;
	lfs_buf_init(&b, 0);
	for (size_t i = 0; i < n; i++) {
		if (lfs_cidmap_get(&sl->pushed, &v[i], NULL))
			continue;
		lfs_cidmap_set(&sl->pushed, &v[i], 1);
		char line[LINE_MAX_LEN];
		line_of(line, &v[i], false, 0);
		lfs_buf_append_str(&b, line);
	}
	if (!b.len && !b.err) {
		lfs_buf_release(&b);
		return;
	}
	int fd = sl->pushed_fd;
	char *p = NULL;
	if (fd < 0 && (p = lfs_sync_state_path(s, sl, "pushed")))
		fd = open(p, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
	int rc = b.err    ? b.err
		 : fd < 0 ? -errno
			  : lfs_write_all(fd, b.data, b.len);
	if (rc)
		lfs_warn("cannot record %zu CAR files in state/%s/pushed: %s",
			 n, sl->name, strerror(-rc));
	sl->pushed_fd = fd;
	free(p);
	lfs_buf_release(&b);
}

void lfs_sync_note_pushed(struct lfs_sync *s, struct sync_ledger *sl,
			  const struct lfs_cid *car)
{
	lfs_sync_note_pushed_many(s, sl, car, 1);
}

/*
 * Record that CARs are about to be kept here unapplied. Written (and
 * synced) before the ingest that keeps them, so that a crash leaves at
 * worst an entry too many, which the next rounds clear.
 */
void lfs_sync_note_waiting_many(struct lfs_sync *s, struct sync_ledger *sl,
				const struct lfs_cid *v, size_t n)
{
	struct lfs_buf b;
	lfs_buf_init(&b, 0);
	for (size_t i = 0; i < n; i++) {
		if (lfs_sync_car_flags(sl, &v[i]) & CAR_WAITING)
			continue;
		lfs_sync_car_set(sl, &v[i], CAR_WAITING, 0);
		char line[LINE_MAX_LEN];
		line_of(line, &v[i], false, 0);
		lfs_buf_append_str(&b, line);
	}
	append_state(s, sl, "waiting", &b);
	lfs_buf_release(&b);
}

void lfs_sync_note_waiting(struct lfs_sync *s, struct sync_ledger *sl,
			   const struct lfs_cid *car)
{
	lfs_sync_note_waiting_many(s, sl, car, 1);
}

/* Rewrite the waiting file when entries left it. */
void lfs_sync_save_waiting(struct lfs_sync *s, struct sync_ledger *sl)
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
void lfs_sync_note_missing(struct lfs_sync *s, struct sync_ledger *sl,
			   const struct lfs_cid *car)
{
	uint64_t since = 0;
	if (lfs_cidmap_get(&sl->missing, car, &since) && since)
		return;
	since = (uint64_t)(lfs_sync_now_us() / 1000000);
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
void lfs_sync_clear_missing(struct lfs_sync *s, struct sync_ledger *sl,
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

void lfs_sync_save_missing(struct lfs_sync *s, struct sync_ledger *sl)
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
