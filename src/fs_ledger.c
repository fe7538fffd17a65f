#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "fs_ledger.h"

#include <errno.h>
#include <fcntl.h>
#include <dirent.h>
#include <limits.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "errmsg.h"
#include "fileio.h"
#include "fs_policy.h"
#include "fsname.h"
#include "log.h"
#include "timefmt.h"

/* ---- finding and opening ---- */

static void fold_done(void *ctx, const struct lfs_ledger_fold *f);

/* Open ledger name of the home (creating it), with its key and writer:
 * lfs_home_open_ledger()'s result. */
static int open_ledger(struct lfs_ledger **out, struct lfs_fs *fs,
		       const char *name, bool *out_key_error)
{
	struct lfs_ledger_opts o;
	lfs_ledger_opts_init(&o);
	o.durable = false; /* fsync makes commits durable */
	o.budget = fs->budget;
	return lfs_home_open_ledger(out, fs->home, name, &o, true,
				    out_key_error);
}

/*
 * The ids a mount leaves at unmount for the next one's first listing
 * (idtree.h), in STATE/ids, sealed (envelope.h) under a key of their own
 * derived from the ledger's: what they hold is as secret as the ledger,
 * and a damaged, foreign or stale-format file fails to open and is
 * ignored (the listing walks the index, as without one).
 */
#define IDS_FILE_MAX ((size_t)1 << 30)

static int ids_key(uint8_t out[LFS_KEY_BYTES], struct lfs_fs *fs,
		   const char *name)
{
	uint8_t key[LFS_KEY_BYTES];
	int rc = lfs_home_key(key, fs->home, name);
	if (!rc)
		lfs_envelope_subkey(out, LFS_KEY_BYTES, key,
				    "ledgerfs saved ids v1");
	sodium_memzero(key, sizeof(key));
	return rc;
}

/* Take STATE/ids into lg->tree, if there is a good one. */
static void ids_take(struct lfs_fs *fs, struct lfs_fsl *lg)
{
	char *path = lfs_fs_path(lg->state, "ids");
	uint8_t *sealed = NULL, key[LFS_KEY_BYTES];
	size_t n = 0;
	struct lfs_buf plain;
	lfs_buf_init(&plain, IDS_FILE_MAX);
	int rc =
		path ? lfs_read_file(path, IDS_FILE_MAX, &sealed, &n) : -ENOMEM;
	if (!rc && !(rc = ids_key(key, fs, lg->name))) {
		rc = lfs_envelope_open(&plain, key, sealed, n, NULL);
		sodium_memzero(key, sizeof(key));
	}
	if (!rc)
		rc = lfs_idtree_decode(&lg->tree, plain.data, plain.len,
				       &lg->ids_root);
	lg->saved_ids = !rc;
	if (!rc)
		lfs_info("ledger '%s': took the %zu ids the last mount left",
			 lg->name, lg->tree.n);
	else if (rc != -ENOENT)
		lfs_warn("ledger '%s': %s: %s; its first listing reads the "
			 "whole index",
			 lg->name, path, lfs_errmsg(rc));
	lfs_buf_release(&plain);
	free(sealed);
	free(path);
}

/*
 * Leave lg->tree's ids in STATE/ids (at unmount), unless those there are
 * the same root's. A mount that never listed the ledger has none to
 * leave: when there is no file either, it walks the index now, so that
 * the next mount's first listing does not (a mount that only wrote).
 */
static void ids_save(struct lfs_fs *fs, struct lfs_fsl *lg)
{
	struct lfs_buf plain, sealed;
	lfs_buf_init(&plain, IDS_FILE_MAX);
	lfs_buf_init(&sealed, IDS_FILE_MAX + IDS_FILE_MAX / 64);
	struct lfs_cid root;
	uint8_t key[LFS_KEY_BYTES];
	char *path = NULL;
	int rc = lfs_idtree_encode(&lg->tree, &plain, &root);
	if (rc == -ENOENT && !lg->saved_ids) {
		lfs_ledger_root(lg->l, &root);
		if (!lfs_idtree_update(&lg->tree, lfs_ledger_index(lg->l),
				       &root))
			rc = lfs_idtree_encode(&lg->tree, &plain, &root);
	}
	if (rc || (lg->saved_ids && lfs_cid_equal(&root, &lg->ids_root)))
		goto out;
	if (!(rc = ids_key(key, fs, lg->name))) {
		rc = lfs_envelope_seal(&sealed, NULL, key, plain.data,
				       plain.len, 0);
		sodium_memzero(key, sizeof(key));
	}
	if (!rc && !(path = lfs_fs_path(lg->state, "ids")))
		rc = -ENOMEM;
	if (!rc)
		rc = lfs_write_atomic(path, sealed.data, sealed.len, 0600,
				      false);
	if (rc)
		lfs_warn("ledger '%s': cannot save its ids for the next "
			 "mount: %s",
			 lg->name, lfs_errmsg(rc));
out:
	free(path);
	lfs_buf_release(&plain);
	lfs_buf_release(&sealed);
}

static struct lfs_fsl *find(struct lfs_fs *fs, const char *name)
{
	for (struct lfs_fsl *lg = fs->ledgers; lg; lg = lg->next)
		if (!strcmp(lg->name, name))
			return lg;
	return NULL;
}

/* A ledger that had no key: open it if `ledgerfs key import` has given
 * it one since. One thread at a time; the others see it still closed. */
static void retry_key(struct lfs_fs *fs, struct lfs_fsl *lg)
{
	pthread_mutex_lock(&fs->lock);
	bool mine = lg->err == -ENOKEY && !lg->l && !lg->opening;
	if (mine)
		lg->opening = true;
	pthread_mutex_unlock(&fs->lock);
	if (!mine)
		return;
	struct lfs_ledger *l = NULL;
	bool key_error;
	if (open_ledger(&l, fs, lg->name, &key_error))
		l = NULL;
	if (l) {
		ids_take(fs, lg);
		lfs_ledger_on_fold(l, fold_done, lg);
	}
	pthread_mutex_lock(&fs->lock);
	lg->opening = false;
	if (l) {
		__atomic_store_n(&lg->l, l, __ATOMIC_RELEASE);
		lg->err = 0;
	}
	pthread_mutex_unlock(&fs->lock);
	if (l)
		lfs_info("ledger '%s': its key is here now; opened it",
			 lg->name);
}

static void fsl_free(struct lfs_fsl *lg)
{
	if (!lg)
		return;
	if (lg->l) {
		/* Staged saves are folded and reported while lg is whole. */
		lfs_ledger_settle(lg->l);
		lfs_ledger_on_fold(lg->l, NULL, NULL);
	}
	lfs_ledger_close(lg->l);
	lfs_render_sizes_close(lg->sizes);
	for (size_t i = 0; i < lg->npending; i++)
		free(lg->pending[i].id);
	free(lg->pending);
	pthread_cond_destroy(&lg->pending_done);
	for (int i = 0; i < LFS_FSL_ERRORS_KEPT; i++)
		free(lg->errors[i]);
	free(lg->name);
	if (lg->scratch_fd >= 0)
		close(lg->scratch_fd);
	if (lg->drafts_fd >= 0)
		close(lg->drafts_fd);
	if (lg->changes_fd >= 0)
		close(lg->changes_fd);
	pthread_mutex_destroy(&lg->changes_lock);
	free(lg->scratch);
	free(lg->drafts);
	free(lg->state);
	lfs_idtree_release(&lg->tree);
	lfs_idtree_release(&lg->snaptree);
	free(lg);
}

/*
 * Drafts kept before folders were named flat ("a%2Fb.json"): move each to
 * its document's path ("a/b.json") so it still shadows the document.
 */
static void migrate_drafts(struct lfs_fsl *lg)
{
	DIR *d = opendir(lg->drafts);
	struct dirent *de;
	while (d && (de = readdir(d))) {
		char id[LFS_INDEX_ID_MAX + 1], path[LFS_FSPATH_MAX + 1];
		if (!strstr(de->d_name, "%2F") ||
		    !lfs_fsname_to_id(id, sizeof(id), de->d_name) ||
		    lfs_fsname_path_from_id(path, id) < 0 ||
		    !strcmp(path, de->d_name))
			continue;
		char *from = lfs_fs_path(lg->drafts, de->d_name);
		char *to = lfs_fs_path(lg->drafts, path);
		if (from && to && lfs_mkdirs_for(to) == 0 &&
		    access(to, F_OK) != 0 && rename(from, to) == 0)
			lfs_info("ledger '%s': draft %s moved to %s (folders)",
				 lg->name, de->d_name, path);
		free(from);
		free(to);
	}
	if (d)
		closedir(d);
}

struct sizes_load {
	char *path;
	struct lfs_render_sizes **out;
};

static void *sizes_load_run(void *arg)
{
	struct sizes_load *load = arg;
	lfs_render_sizes_open(load->out, load->path);
	return NULL;
}

/* Make the state of ledger name, opening it (no lock held: disk reads,
 * decryption). NULL when out of memory. */
static struct lfs_fsl *fsl_new(struct lfs_fs *fs, const char *name)
{
	struct lfs_fsl *lg = calloc(1, sizeof(*lg));
	if (!lg)
		return NULL;
	lfs_idtree_init(&lg->tree);
	lfs_idtree_init(&lg->snaptree);
	pthread_cond_init(&lg->pending_done, NULL);
	lg->drafts_empty_gen = UINT64_MAX; /* not looked at yet */
	lg->scratch_fd = lg->drafts_fd = lg->changes_fd = -1;
	pthread_mutex_init(&lg->changes_lock, NULL);
	lg->changes_max = fs->changes_max;
	lg->fs = fs;
	lg->name = strdup(name);
	char sub[PATH_MAX];
	snprintf(sub, sizeof(sub), "%s/scratch/%s", fs->home->dir, name);
	lg->scratch = strdup(sub);
	snprintf(sub, sizeof(sub), "%s/drafts/%s", fs->home->dir, name);
	lg->drafts = strdup(sub);
	lg->state = lfs_home_state_path(fs->home, name, "");
	if (!lg->name || !lg->scratch || !lg->drafts || !lg->state ||
	    lfs_mkdirs(lg->scratch) || lfs_mkdirs(lg->drafts) ||
	    lfs_mkdirs(lg->state)) {
		lfs_error("ledger '%s': cannot create its local directories "
			  "under %s",
			  name, fs->home->dir);
		lg->err = -EIO;
	}
	const int dflags = O_PATH | O_DIRECTORY | O_CLOEXEC;
	if (!lg->err && ((lg->scratch_fd = open(lg->scratch, dflags)) < 0 ||
			 (lg->drafts_fd = open(lg->drafts, dflags)) < 0)) {
		lfs_error("ledger '%s': cannot open its local directories "
			  "under %s: %s",
			  name, fs->home->dir, strerror(errno));
		lg->err = -EIO;
	}
	if (!lg->name) {
		fsl_free(lg);
		return NULL;
	}
	if (!lg->err) {
		migrate_drafts(lg);
		lfs_fsl_drafts_check(lg);
	}
	/* The size table loads on another thread while the ledger opens:
	 * each reads and checks every record of its file (at 100,000
	 * commits, ~110 and ~250 ms), and neither needs the other. */
	struct sizes_load load = {
		.path = lg->err ? NULL
				: lfs_home_state_path(fs->home, name, "sizes"),
		.out = &lg->sizes};
	pthread_t loader;
	bool loading = load.path &&
		       !pthread_create(&loader, NULL, sizes_load_run, &load);
	if (load.path && !loading)
		sizes_load_run(&load);
	bool key_error = false;
	int rc = lg->err ? lg->err : open_ledger(&lg->l, fs, name, &key_error);
	if (rc)
		lg->l = NULL;
	else
		ids_take(fs, lg);
	if (loading)
		pthread_join(loader, NULL);
	free(load.path);
	if (lg->l) /* after the size table: the reports note sizes */
		lfs_ledger_on_fold(lg->l, fold_done, lg);
	if (rc && key_error && rc == -ENOENT) {
		lg->err = -ENOKEY;
		lfs_warn("ledger '%s' has no key on this machine; import it "
			 "with `ledgerfs key import %s lfskey1:...`",
			 name, name);
	} else if (rc && key_error) {
		lg->err = rc;
		lfs_error("ledger '%s': cannot read its key: %s", name,
			  strerror(-rc));
	} else if (rc && !lg->err) {
		lg->err = rc;
		lfs_error("ledger '%s': cannot open: %s (run `ledgerfs "
			  "fsck %s`)",
			  name, strerror(-rc), name);
	}
	return lg;
}

struct lfs_fsl *lfs_fsl_get(struct lfs_fs *fs, const char *name,
			    bool must_exist)
{
	pthread_mutex_lock(&fs->lock);
	struct lfs_fsl *lg = find(fs, name);
	bool nokey = lg && lg->err == -ENOKEY;
	pthread_mutex_unlock(&fs->lock);
	if (lg) {
		if (nokey)
			retry_key(fs, lg);
		return lg;
	}
	char *dir = lfs_home_ledger_dir(fs->home, name);
	struct stat st;
	if (!dir || (must_exist && (stat(dir, &st) || !S_ISDIR(st.st_mode)))) {
		free(dir);
		return NULL;
	}
	free(dir);
	/* Open outside the lock; if another thread got there first, its
	 * state wins and this one is closed again. */
	struct lfs_fsl *fresh = fsl_new(fs, name);
	if (!fresh)
		return NULL;
	pthread_mutex_lock(&fs->lock);
	lg = find(fs, name);
	if (!lg) {
		fresh->next = fs->ledgers;
		fs->ledgers = lg = fresh;
		fresh = NULL;
	}
	pthread_mutex_unlock(&fs->lock);
	fsl_free(fresh);
	return lg;
}

void lfs_fsl_free_all(struct lfs_fs *fs)
{
	while (fs->ledgers) {
		struct lfs_fsl *next = fs->ledgers->next;
		if (fs->ledgers->l)
			ids_save(fs, fs->ledgers);
		fsl_free(fs->ledgers);
		fs->ledgers = next;
	}
}

/* ---- the error ring ---- */

void lfs_fsl_error(struct lfs_fs *fs, struct lfs_fsl *lg, const char *fmt, ...)
{
	char msg[600], safe[1200], line[1300], when[64];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	/* One refusal, one line of UTF-8, whatever the names in it. */
	lfs_log_escape(safe, sizeof(safe), msg, strlen(msg));
	lfs_time_iso(when, lfs_fs_now_ms() * 1000);
	snprintf(line, sizeof(line), "%s %s\n", when, safe);
	char *copy = strdup(line);
	pthread_mutex_lock(&fs->lock);
	size_t slot = lg->nerrors % LFS_FSL_ERRORS_KEPT;
	free(lg->errors[slot]);
	lg->errors[slot] = copy;
	lg->nerrors++;
	pthread_mutex_unlock(&fs->lock);
	lfs_warn("ledger '%s': %s", lg->name, msg);
}

int lfs_fsl_errors_text(struct lfs_fs *fs, struct lfs_fsl *lg,
			struct lfs_buf *out)
{
	pthread_mutex_lock(&fs->lock);
	uint64_t first = lg->nerrors > LFS_FSL_ERRORS_KEPT
				 ? lg->nerrors - LFS_FSL_ERRORS_KEPT
				 : 0;
	int rc = 0;
	for (uint64_t i = first; i < lg->nerrors && !rc; i++) {
		const char *e = lg->errors[i % LFS_FSL_ERRORS_KEPT];
		if (e)
			rc = lfs_buf_append_str(out, e);
	}
	pthread_mutex_unlock(&fs->lock);
	return rc;
}

uint64_t lfs_fsl_last_error(struct lfs_fs *fs, struct lfs_fsl *lg,
			    char **out_last)
{
	pthread_mutex_lock(&fs->lock);
	uint64_t n = lg->nerrors;
	const char *last = n ? lg->errors[(n - 1) % LFS_FSL_ERRORS_KEPT] : NULL;
	*out_last = last ? strdup(last) : NULL;
	pthread_mutex_unlock(&fs->lock);
	return n;
}

void lfs_fsl_dir_changed(struct lfs_fsl *lg)
{
	__atomic_store_n(&lg->changed_us, lfs_fs_now_ms() * 1000,
			 __ATOMIC_RELAXED);
}

int64_t lfs_fsl_dir_time(struct lfs_fsl *lg)
{
	return __atomic_load_n(&lg->changed_us, __ATOMIC_RELAXED);
}

/* ---- drafts ---- */

bool lfs_fsl_no_drafts(struct lfs_fsl *lg)
{
	return __atomic_load_n(&lg->drafts_empty_gen, __ATOMIC_ACQUIRE) ==
	       __atomic_load_n(&lg->drafts_gen, __ATOMIC_ACQUIRE);
}

void lfs_fsl_drafts_coming(struct lfs_fsl *lg)
{
	__atomic_add_fetch(&lg->drafts_gen, 1, __ATOMIC_SEQ_CST);
}

void lfs_fsl_drafts_check(struct lfs_fsl *lg)
{
	if (lfs_fsl_no_drafts(lg) || lg->err)
		return;
	/* Read the count first: a draft begun after it bumps it, and then
	 * an empty directory seen here says nothing. */
	uint64_t gen = __atomic_load_n(&lg->drafts_gen, __ATOMIC_SEQ_CST);
	DIR *d = opendir(lg->drafts);
	if (!d)
		return;
	bool empty = true;
	struct dirent *de;
	while (empty && (de = readdir(d)))
		empty = !strcmp(de->d_name, ".") || !strcmp(de->d_name, "..");
	closedir(d);
	if (empty)
		__atomic_store_n(&lg->drafts_empty_gen, gen, __ATOMIC_RELEASE);
}

/* ---- pending deletes ---- */

static bool pending_has(struct lfs_fsl *lg, const char *id)
{
	for (size_t i = 0; i < lg->npending; i++)
		if (!strcmp(lg->pending[i].id, id))
			return true;
	return false;
}

bool lfs_fsl_pending_has(struct lfs_fs *fs, struct lfs_fsl *lg, const char *id)
{
	pthread_mutex_lock(&fs->lock);
	bool r = pending_has(lg, id);
	pthread_mutex_unlock(&fs->lock);
	return r;
}

void lfs_fsl_pending_cancel(struct lfs_fs *fs, struct lfs_fsl *lg,
			    const char *id)
{
	pthread_mutex_lock(&fs->lock);
	for (size_t i = 0; i < lg->npending;) {
		if (strcmp(lg->pending[i].id, id)) {
			i++;
		} else if (lg->pending[i].committing) {
			pthread_cond_wait(&lg->pending_done, &fs->lock);
			i = 0; /* the list changed meanwhile */
		} else {
			free(lg->pending[i].id);
			lg->pending[i] = lg->pending[--lg->npending];
			break;
		}
	}
	pthread_mutex_unlock(&fs->lock);
}

int lfs_fsl_pending_add(struct lfs_fs *fs, struct lfs_fsl *lg, const char *id)
{
	int rc = 0;
	pthread_mutex_lock(&fs->lock);
	if (pending_has(lg, id))
		goto out;
	void *p =
		realloc(lg->pending, (lg->npending + 1) * sizeof(*lg->pending));
	char *copy = p ? strdup(id) : NULL;
	if (p)
		lg->pending = p;
	if (!copy) {
		rc = -ENOMEM;
		goto out;
	}
	lg->pending[lg->npending++] = (struct lfs_fsl_pending){
		.id = copy, .deadline_ms = lfs_fs_now_ms() + LFS_FS_GRACE_MS};
out:
	pthread_mutex_unlock(&fs->lock);
	return rc;
}

json_t *lfs_fsl_pending_json(struct lfs_fs *fs, struct lfs_fsl *lg)
{
	pthread_mutex_lock(&fs->lock);
	json_t *pending = json_array();
	for (size_t i = 0; pending && i < lg->npending; i++)
		json_array_append_new(pending, json_string(lg->pending[i].id));
	pthread_mutex_unlock(&fs->lock);
	return pending;
}

/* After a delete commit of lg's ids marked committing (rc its result):
 * done with them, or back to waiting. Caller holds fs->lock. */
static void pending_committed(struct lfs_fsl *lg, int rc, bool force,
			      int64_t now)
{
	for (size_t i = 0; i < lg->npending;) {
		struct lfs_fsl_pending *p = &lg->pending[i];
		if (!p->committing) {
			i++;
		} else if (rc && !force) {
			p->committing = false;
			p->deadline_ms = now + LFS_FS_GRACE_MS;
			i++;
		} else {
			free(p->id);
			*p = lg->pending[--lg->npending];
		}
	}
	pthread_cond_broadcast(&lg->pending_done);
}

void lfs_fsl_flush_pending(struct lfs_fs *fs, bool force)
{
	int64_t now = lfs_fs_now_ms();
	pthread_mutex_lock(&fs->lock);
	for (struct lfs_fsl *lg = fs->ledgers; lg; lg = lg->next) {
		if (!lg->l || !lg->npending)
			continue;
		struct lfs_txn *t;
		if (lfs_txn_new(&t))
			continue;
		int rc = 0;
		for (size_t i = 0; !rc && i < lg->npending; i++) {
			struct lfs_fsl_pending *p = &lg->pending[i];
			if (force || p->deadline_ms <= now) {
				rc = lfs_txn_delete(t, p->id);
				p->committing = !rc;
			}
		}
		/* lg lives on, and only this thread takes ids out of the
		 * list while they are committing. */
		pthread_mutex_unlock(&fs->lock);
		if (!rc && lfs_txn_count(t))
			rc = lfs_fsl_commit(fs, lg, t);
		if (rc)
			lfs_fsl_error(fs, lg, "deleting documents failed: %s%s",
				      strerror(-rc),
				      force ? "" : "; tried again later");
		pthread_mutex_lock(&fs->lock);
		pending_committed(lg, rc, force, now);
		lfs_txn_free(t);
	}
	pthread_mutex_unlock(&fs->lock);
}

/* ---- the change feed ---- */

/*
 * The feed grew past changes_max: keep its text as changes.1 (replacing
 * the one before) and start it again empty. It is cut in place, never
 * renamed, so a reader that follows it (`tail -f` on .ledgerfs/changes,
 * which holds this very file open) is told it was truncated and goes on
 * from its start. Caller holds changes_lock.
 */
static void rotate_changes(struct lfs_fsl *lg, int fd)
{
	char *kept = lfs_fs_path(lg->state, "changes.1");
	char *tmp = lfs_fs_path(lg->state, ".changes.1.tmp");
	size_t cap = 64 << 10;
	char *buf = malloc(cap);
	int out = kept && tmp && buf
			  ? open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
				 0600)
			  : -1;
	int rc = !kept || !tmp || !buf ? -ENOMEM : out < 0 ? -errno : 0;
	for (off_t at = 0; !rc;) {
		ssize_t n = pread(fd, buf, cap, at);
		if (n <= 0) {
			rc = n < 0 ? -errno : 0;
			break;
		}
		rc = lfs_write_all(out, buf, (size_t)n);
		at += n;
	}
	if (out >= 0 && close(out) && !rc)
		rc = -errno;
	if (!rc && rename(tmp, kept))
		rc = -errno;
	/* Kept or not, the feed starts again: it must not grow forever. */
	if (ftruncate(fd, 0) && !rc)
		rc = -errno;
	if (rc) {
		if (tmp)
			unlink(tmp);
		lfs_warn("ledger '%s': could not keep its change feed as "
			 "changes.1: %s",
			 lg->name, strerror(-rc));
	}
	free(buf);
	free(tmp);
	free(kept);
}

static void append_changes(struct lfs_fsl *lg, const char *text, size_t len)
{
	pthread_mutex_lock(&lg->changes_lock);
	/* Opened once, at the first change, and kept. */
	if (lg->changes_fd < 0) {
		char *p = lfs_fs_path(lg->state, "changes");
		struct stat st;
		lg->changes_fd =
			p ? open(p, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC,
				 0600)
			  : -1;
		lg->changes_len =
			lg->changes_fd >= 0 && !fstat(lg->changes_fd, &st)
				? (uint64_t)st.st_size
				: 0;
		if (lg->changes_fd < 0)
			lfs_warn("ledger '%s': cannot open its change feed: "
				 "%s",
				 lg->name, p ? strerror(errno) : "no memory");
		free(p);
	}
	int fd = lg->changes_fd;
	int rc = fd < 0 ? -EBADF : lfs_write_all(fd, text, len);
	struct stat st;
	if (fd >= 0 && rc)
		lfs_warn("ledger '%s': cannot append to its change feed: %s",
			 lg->name, strerror(-rc));
	if (fd >= 0 && !rc)
		lg->changes_len += len;
	else if (fd >= 0) /* how much of it went in: ask */
		lg->changes_len = fstat(fd, &st) ? 0 : (uint64_t)st.st_size;
	if (fd >= 0 && lg->changes_len > lg->changes_max) {
		rotate_changes(lg, fd);
		lg->changes_len = 0;
	}
	pthread_mutex_unlock(&lg->changes_lock);
}

struct changes_ctx {
	struct lfs_buf out;
	const char *prefix;
	bool names;                    /* a document was added or removed */
	struct lfs_render_sizes *fill; /* queue new versions here, or NULL */
};

static int change_line(void *ctx, const struct lfs_index_entry *ea,
		       const struct lfs_index_entry *eb)
{
	struct changes_ctx *c = ctx;
	const struct lfs_index_entry *e = eb ? eb : ea;
	c->names |= !ea || !eb;
	if (c->fill && eb)
		lfs_render_sizes_queue(c->fill, &eb->cur.doc, eb->id);
	lfs_buf_append_str(&c->out, c->prefix);
	lfs_buf_append_str(&c->out, !ea ? " + " : !eb ? " - " : " ~ ");
	/* An id may hold any text: one change, one line. */
	char id[LFS_INDEX_ID_MAX * 4 + 1];
	size_t n = lfs_log_escape(id, sizeof(id), e->id, e->id_len);
	lfs_buf_append(&c->out, id, n);
	return lfs_buf_append_byte(&c->out, '\n');
}

/* Append the difference of two roots to the change feed; with fill, queue
 * the new versions' sizes to be filled (lfs_fsl_fill_sizes). */
static void record_changes(struct lfs_fsl *lg, const struct lfs_cid *before,
			   const struct lfs_cid *after,
			   const struct lfs_cid *event, bool fill)
{
	if (lfs_cid_equal(before, after))
		return;
	char when[64], ev[LFS_CID_STRLEN + 1], prefix[128];
	lfs_time_iso(when, lfs_fs_now_ms() * 1000);
	lfs_cid_to_string(ev, event);
	snprintf(prefix, sizeof(prefix), "%s %s", when, ev);
	struct changes_ctx c = {.prefix = prefix,
				.fill = fill ? lg->sizes : NULL};
	lfs_buf_init(&c.out, 0);
	if (lfs_index_diff(lfs_ledger_index(lg->l), before, after, change_line,
			   &c) == 0)
		append_changes(lg, (const char *)c.out.data, c.out.len);
	if (c.names)
		lfs_fsl_dir_changed(lg);
	lfs_buf_release(&c.out);
}

/* ---- commits ---- */

int lfs_fsl_commit(struct lfs_fs *fs, struct lfs_fsl *lg, struct lfs_txn *t)
{
	lfs_fsl_refresh(fs, lg);
	return lfs_ledger_stage(lg->l, t);
}

/*
 * The folder thread committed this mount's staged saves (ledger.h): what
 * a save's commit leads to. Holds the ledger's writer mutex: nothing
 * here settles.
 */
static void fold_done(void *ctx, const struct lfs_ledger_fold *f)
{
	struct lfs_fsl *lg = ctx;
	struct lfs_fs *fs = lg->fs;
	/* The new versions' lengths, so their first stat renders nothing. */
	if (lg->sizes)
		lfs_render_note_txn(lg->sizes, fs->cache, f->txn);
	record_changes(lg, f->before, f->after, f->event, false);
	if (fs->sync)
		lfs_sync_kick(fs->sync);
}

void lfs_fsl_moved(struct lfs_fs *fs, struct lfs_fsl *lg,
		   const struct lfs_cid *before, const struct lfs_cid *after,
		   const char *source)
{
	struct lfs_cid *heads;
	size_t n;
	if (lfs_ledger_heads(lg->l, &heads, &n) == 0) {
		if (n)
			record_changes(lg, before, after, &heads[0], true);
		free(heads);
	}
	lfs_info("ledger '%s': applied changes from %s", lg->name, source);
	if (fs->moved)
		fs->moved(fs, lg, before, after);
}

/*
 * Pick up commits other processes on this home made (the command line,
 * another mount): each housekeeping tick, a stat per open ledger, and
 * before every commit, so a save is never based on a stale head.
 */
bool lfs_fsl_refresh(struct lfs_fs *fs, struct lfs_fsl *lg)
{
	struct lfs_cid before, after;
	bool changed;
	int rc = lfs_ledger_refresh(lg->l, &before, &after, &changed);
	/* The housekeeper and committing workers both get here. */
	pthread_mutex_lock(&fs->lock);
	int was = lg->refresh_err;
	lg->refresh_err = rc;
	pthread_mutex_unlock(&fs->lock);
	struct lfs_cid bad;
	char car[LFS_CID_STRLEN + 1] = "";
	if (rc && rc != was && lfs_ledger_bad_head_record(lg->l, &bad))
		lfs_cid_to_string(car, &bad);
	if (rc && rc != was)
		lfs_warn("ledger '%s': cannot read its heads: %s%s%s%s",
			 lg->name, lfs_errmsg(rc),
			 *car ? " (the head record of CAR " : "", car,
			 *car ? "; `ledgerfs fsck` checks it)" : "");
	if (!rc && changed && lg->sizes)
		lfs_render_sizes_catch_up(lg->sizes); /* `ledgerfs import` */
	if (!rc && changed)
		lfs_fsl_moved(fs, lg, &before, &after,
			      "another process on this machine");
	return !rc && changed;
}

/* The open ledgers, as a NULL-terminated array (free it). */
static struct lfs_fsl **open_ledgers(struct lfs_fs *fs, size_t *out_n)
{
	pthread_mutex_lock(&fs->lock);
	size_t n = 0;
	for (struct lfs_fsl *lg = fs->ledgers; lg; lg = lg->next)
		n++;
	struct lfs_fsl **v = calloc(n + 1, sizeof(*v));
	n = 0;
	for (struct lfs_fsl *lg = fs->ledgers; v && lg; lg = lg->next)
		if (lg->l)
			v[n++] = lg;
	pthread_mutex_unlock(&fs->lock);
	*out_n = n;
	return v;
}

size_t lfs_fsl_fill_sizes(struct lfs_fs *fs, int64_t budget_us)
{
	size_t n, left = 0;
	struct lfs_fsl **v = open_ledgers(fs, &n);
	int64_t end = lfs_mono_us() + budget_us;
	for (size_t i = 0; i < n; i++) {
		if (!v[i]->sizes || !lfs_render_sizes_queued(v[i]->sizes))
			continue;
		int64_t now = lfs_mono_us();
		left += lfs_render_sizes_fill_queued(v[i]->sizes, v[i]->l,
						     now < end ? end - now : 0);
	}
	free(v);
	return left;
}

size_t lfs_fsl_sizes_to_fill(struct lfs_fsl *lg)
{
	return lg->sizes ? lfs_render_sizes_queued(lg->sizes) : 0;
}

void lfs_fsl_refresh_all(struct lfs_fs *fs)
{
	size_t n;
	struct lfs_fsl **v = open_ledgers(fs, &n);
	bool any = false;
	for (size_t i = 0; i < n; i++) {
		any |= lfs_fsl_refresh(fs, v[i]);
		lfs_fsl_drafts_check(v[i]);
	}
	free(v);
	if (any && fs->sync)
		lfs_sync_kick(fs->sync);
}

void lfs_fsl_sync_all(struct lfs_fs *fs)
{
	size_t n;
	struct lfs_fsl **v = open_ledgers(fs, &n);
	for (size_t i = 0; i < n; i++)
		lfs_ledger_sync(v[i]->l);
	free(v);
}

/* ---- events ---- */

static int event_add(void *ctx, const struct lfs_cid *cid,
		     const struct lfs_event *ev)
{
	struct lfs_fsl_events *s = ctx;
	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 64;
		void *a = realloc(s->cids, cap * sizeof(*s->cids));
		if (!a)
			return -ENOMEM;
		s->cids = a;
		void *b = realloc(s->times, cap * sizeof(*s->times));
		if (!b)
			return -ENOMEM;
		s->times = b;
		s->cap = cap;
	}
	s->cids[s->n] = *cid;
	s->times[s->n++] = ev->t;
	return 0;
}

int lfs_fsl_events(struct lfs_fsl_events *out, struct lfs_fsl *lg)
{
	memset(out, 0, sizeof(*out));
	struct lfs_cid *heads;
	size_t n;
	int rc = lfs_ledger_heads(lg->l, &heads, &n);
	if (rc)
		return rc;
	struct lfs_blocks b = lfs_ledger_blocks(lg->l);
	rc = lfs_clock_walk(&b, heads, n, event_add, out);
	free(heads);
	return rc;
}

void lfs_fsl_events_release(struct lfs_fsl_events *s)
{
	free(s->cids);
	free(s->times);
}

static int by_time(const void *x, const void *y, void *ctx)
{
	const struct lfs_fsl_events *s = ctx;
	int64_t a = s->times[*(const size_t *)x];
	int64_t b = s->times[*(const size_t *)y];
	return a < b ? -1 : a > b;
}

char (*lfs_fsl_bytime_names(const struct lfs_fsl_events *s))[LFS_FSL_BYTIME_LEN]
{
	char(*names)[LFS_FSL_BYTIME_LEN] = calloc(s->n + 1, sizeof(*names));
	size_t *order = calloc(s->n + 1, sizeof(*order));
	if (!names || !order) {
		free(names);
		free(order);
		return NULL;
	}
	for (size_t i = 0; i < s->n; i++)
		order[i] = i;
	qsort_r(order, s->n, sizeof(*order), by_time, (void *)s);
	for (size_t k = 0; k < s->n; k++) {
		size_t i = order[k];
		lfs_time_iso(names[i], s->times[i]);
		bool dup =
			(k > 0 && s->times[order[k - 1]] == s->times[i]) ||
			(k + 1 < s->n && s->times[order[k + 1]] == s->times[i]);
		if (dup) {
			char c[LFS_CID_STRLEN + 1];
			lfs_cid_to_string(c, &s->cids[i]);
			size_t len = strlen(names[i]);
			snprintf(names[i] + len, LFS_FSL_BYTIME_LEN - len,
				 "-%s", c + LFS_CID_STRLEN - 8);
		}
	}
	free(order);
	return names;
}
