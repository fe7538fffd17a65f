#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "fs.h"

#include "errmsg.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <sodium.h>

#include "clock.h"
#include "dagjson.h"
#include "fsname.h"
#include "ledger.h"
#include "log.h"
#include "fileio.h"

#define SNAPSHOTS    ".snapshots"
#define CONTROL      ".ledgerfs"
#define BY_TIME      "by-time"
#define ERRORS_KEPT  100
#define ENTRY_TTL    1.0
#define RENDER_SLOTS 4096

enum kind {
	K_ROOT,
	K_LEDGER,
	K_DOC,
	K_SCRATCH,
	K_SNAPS,
	K_SNAP,
	K_SNAPDOC,
	K_BYTIME,
	K_BYTIME_LINK,
	K_CTLDIR,
	K_CTL,
};

static const char *ctl_files[] = {"status",  "errors",    "heads",
				  "changes", "conflicts", "wait"};
#define NCTL (sizeof(ctl_files) / sizeof(ctl_files[0]))

struct pending_delete {
	char *id;
	int64_t deadline_ms;
};

/* Per-ledger state of the mount. */
struct fsledger {
	char *name;
	struct lfs_ledger *l; /* NULL when it could not be opened */
	int err;              /* why not (e.g. -ENOKEY) */
	char *scratch, *drafts, *state;
	struct pending_delete *pending;
	size_t npending;
	char *errors[ERRORS_KEPT]; /* ring, newest at (nerrors-1) % N */
	uint64_t nerrors;
	int refresh_err; /* the last lfs_ledger_refresh() error, logged once */
	struct fsledger *next;
};

struct node {
	fuse_ino_t ino;
	enum kind kind;
	struct fsledger *lg;
	char *name;           /* name in its parent */
	char *id;             /* documents */
	struct lfs_cid event; /* snapshots */
	struct lfs_cid root;
	int64_t t; /* snapshots: the event's time */
	uint64_t nlookup;
	int nopen;
	/* Documents being written: one buffer shared by every open file. */
	struct lfs_buf *wbuf;
	uint64_t wgen; /* bumped by every change to wbuf */
	uint64_t committed_gen;
	int invalid; /* last flush found invalid content (errno) */
	int nwriters;
	struct node *hnext;
};

struct render {
	struct lfs_cid doc;
	char *id;
	uint8_t *data;
	size_t len;
};

struct lfs_fs {
	struct lfs_home *home;
	struct fuse_session *se;
	pthread_mutex_t lock; /* nodes, ledgers, node write state */
	struct node **table;
	size_t nslots, nnodes;
	struct fsledger *ledgers;
	struct render renders[RENDER_SLOTS];
	pthread_mutex_t render_lock;
	struct handle *graveyard; /* released handles, freed later */
	pthread_t housekeeper;
	int running;
	pthread_mutex_t hk_lock;
	pthread_cond_t hk_cond;
	uid_t uid;
	gid_t gid;
	int64_t started_us;    /* directories' times: when the mount began */
	struct lfs_sync *sync; /* NULL without a remote */
};

/* An open file or directory. */
struct handle {
	struct node *n;
	int fd;              /* scratch files */
	struct lfs_buf data; /* read snapshot / directory listing */
	bool writer;
	/* Directory listing: names and their attribute stubs. */
	char **names;
	mode_t *modes;
	fuse_ino_t *inos;
	size_t count;
	/*
	 * The kernel may send RELEASE while a READ on the same file is still
	 * being answered (when the reader was interrupted), so a released
	 * handle waits in the graveyard until no operation is using it and a
	 * few seconds have passed. Guarded by fs->lock.
	 */
	int inflight;
	int64_t released_ms;
	struct handle *gnext;
};

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static char *path_of(const char *dir, const char *name)
{
	size_t n = strlen(dir) + strlen(name) + 2;
	char *p = malloc(n);
	if (p)
		snprintf(p, n, "%s/%s", dir, name);
	return p;
}

static void iso_time(char out[64], int64_t t_us)
{
	time_t s = (time_t)(t_us / 1000000);
	struct tm tm;
	gmtime_r(&s, &tm);
	snprintf(out, 64, "%04d-%02d-%02dT%02d:%02d:%02d.%06ldZ",
		 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
		 tm.tm_min, tm.tm_sec, (long)(t_us % 1000000));
}

/* ---- ledgers ---- */

static void ledger_error(struct fsledger *lg, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Record a user-facing error: the ring behind .ledgerfs/errors and the log.
 * Caller holds fs->lock. */
static void ledger_error(struct fsledger *lg, const char *fmt, ...)
{
	char msg[600], line[700], when[64];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	iso_time(when, (int64_t)now_ms() * 1000);
	snprintf(line, sizeof(line), "%s %s\n", when, msg);
	size_t slot = lg->nerrors % ERRORS_KEPT;
	free(lg->errors[slot]);
	lg->errors[slot] = strdup(line);
	lg->nerrors++;
	lfs_warn("ledger '%s': %s", lg->name, msg);
}

static void append_changes(struct fsledger *lg, const char *text, size_t len)
{
	char *p = path_of(lg->state, "changes");
	if (!p)
		return;
	int fd = open(p, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
	free(p);
	if (fd < 0)
		return;
	int rc = lfs_write_all(fd, text, len);
	if (rc)
		lfs_warn("ledger '%s': cannot append to its change feed: %s",
			 lg->name, strerror(-rc));
	close(fd);
}

/* A ledger that had no key: open it if `ledgerfs key import` has given
 * it one since. Caller holds fs->lock. */
static void ledger_retry_key(struct lfs_fs *fs, struct fsledger *lg)
{
	uint8_t key[LFS_KEY_BYTES];
	if (lfs_home_key(key, fs->home, lg->name))
		return;
	char *dir = lfs_home_ledger_dir(fs->home, lg->name);
	struct lfs_ledger_opts o;
	lfs_ledger_opts_init(&o);
	o.durable = false;
	o.writer = fs->home->writer;
	if (dir && lfs_ledger_open(&lg->l, dir, key, &o, true) == 0) {
		lg->err = 0;
		lfs_info("ledger '%s': its key is here now; opened it",
			 lg->name);
	}
	sodium_memzero(key, sizeof(key));
	free(dir);
}

/* Find or open the state of ledger `name`. Caller holds fs->lock. */
static struct fsledger *ledger_get(struct lfs_fs *fs, const char *name,
				   bool must_exist)
{
	for (struct fsledger *lg = fs->ledgers; lg; lg = lg->next) {
		if (strcmp(lg->name, name))
			continue;
		if (lg->err == -ENOKEY)
			ledger_retry_key(fs, lg);
		return lg;
	}
	char *dir = lfs_home_ledger_dir(fs->home, name);
	struct stat st;
	if (!dir || (must_exist && (stat(dir, &st) || !S_ISDIR(st.st_mode)))) {
		free(dir);
		return NULL;
	}
	struct fsledger *lg = calloc(1, sizeof(*lg));
	if (!lg) {
		free(dir);
		return NULL;
	}
	lg->name = strdup(name);
	char sub[PATH_MAX];
	snprintf(sub, sizeof(sub), "%s/scratch/%s", fs->home->dir, name);
	lg->scratch = strdup(sub);
	snprintf(sub, sizeof(sub), "%s/drafts/%s", fs->home->dir, name);
	lg->drafts = strdup(sub);
	snprintf(sub, sizeof(sub), "%s/state/%s", fs->home->dir, name);
	lg->state = strdup(sub);
	if (!lg->name || !lg->scratch || !lg->drafts || !lg->state ||
	    lfs_mkdirs(lg->scratch) || lfs_mkdirs(lg->drafts) ||
	    lfs_mkdirs(lg->state)) {
		lfs_error("ledger '%s': cannot create its local directories "
			  "under %s",
			  name, fs->home->dir);
		lg->err = -EIO;
	}
	uint8_t key[LFS_KEY_BYTES];
	int rc = lg->err ? lg->err : lfs_home_key(key, fs->home, name);
	if (rc == -ENOENT) {
		lg->err = -ENOKEY;
		lfs_warn("ledger '%s' has no key on this machine; import it "
			 "with `ledgerfs key import %s lfskey1:...`",
			 name, name);
	} else if (rc) {
		lg->err = rc;
		lfs_error("ledger '%s': cannot read its key: %s", name,
			  strerror(-rc));
	} else {
		struct lfs_ledger_opts o;
		lfs_ledger_opts_init(&o);
		o.durable = false; /* fsync makes commits durable */
		o.writer = fs->home->writer;
		rc = lfs_ledger_open(&lg->l, dir, key, &o, true);
		sodium_memzero(key, sizeof(key));
		if (rc) {
			lg->err = rc;
			lfs_error("ledger '%s': cannot open: %s (run `ledgerfs "
				  "fsck %s`)",
				  name, strerror(-rc), name);
		}
	}
	free(dir);
	lg->next = fs->ledgers;
	fs->ledgers = lg;
	return lg;
}

static void ledger_free(struct fsledger *lg)
{
	lfs_ledger_close(lg->l);
	for (size_t i = 0; i < lg->npending; i++)
		free(lg->pending[i].id);
	free(lg->pending);
	for (int i = 0; i < ERRORS_KEPT; i++)
		free(lg->errors[i]);
	free(lg->name);
	free(lg->scratch);
	free(lg->drafts);
	free(lg->state);
	free(lg);
}

/* Is `id` hidden by a pending deletion? Caller holds fs->lock. */
static bool pending_has(struct fsledger *lg, const char *id)
{
	for (size_t i = 0; i < lg->npending; i++)
		if (!strcmp(lg->pending[i].id, id))
			return true;
	return false;
}

static void pending_cancel(struct fsledger *lg, const char *id)
{
	for (size_t i = 0; i < lg->npending; i++)
		if (!strcmp(lg->pending[i].id, id)) {
			free(lg->pending[i].id);
			lg->pending[i] = lg->pending[--lg->npending];
			return;
		}
}

static int pending_add(struct fsledger *lg, const char *id)
{
	if (pending_has(lg, id))
		return 0;
	void *p =
		realloc(lg->pending, (lg->npending + 1) * sizeof(*lg->pending));
	if (!p)
		return -ENOMEM;
	lg->pending = p;
	char *copy = strdup(id);
	if (!copy)
		return -ENOMEM;
	lg->pending[lg->npending++] = (struct pending_delete){
		.id = copy, .deadline_ms = now_ms() + LFS_FS_GRACE_MS};
	return 0;
}

/* ---- nodes ---- */

static uint64_t identity_hash(enum kind k, const char *ledger,
			      const struct lfs_cid *event, const char *name)
{
	/* SipHash (crypto_shorthash) of kind, ledger, event and name: cheap
	 * enough for a listing of 100,000 names, stable across mounts. */
	static const uint8_t hkey[crypto_shorthash_KEYBYTES] = "ledgerfs-inode";
	uint8_t buf[1 + 2 * (LFS_FSNAME_MAX + 1) + LFS_DIGEST_LEN + 8];
	size_t n = 0;
	buf[n++] = (uint8_t)k;
	size_t ll = ledger ? strnlen(ledger, LFS_FSNAME_MAX) : 0;
	memcpy(buf + n, ledger ? ledger : "", ll);
	n += ll;
	buf[n++] = 0;
	if (event) {
		memcpy(buf + n, event->digest, LFS_DIGEST_LEN);
		n += LFS_DIGEST_LEN;
	}
	size_t nl = name ? strnlen(name, LFS_FSNAME_MAX) : 0;
	memcpy(buf + n, name ? name : "", nl);
	n += nl;
	buf[n++] = 0;
	uint8_t out[crypto_shorthash_BYTES];
	crypto_shorthash(out, buf, n, hkey);
	uint64_t h;
	memcpy(&h, out, sizeof(h));
	h &= 0x7fffffffffffffffull; /* keep clear of sign trouble in tools */
	return h < 2 ? h + 2 : h;
}

static bool same_identity(const struct node *n, enum kind k,
			  const struct fsledger *lg,
			  const struct lfs_cid *event, const char *name)
{
	if (n->kind != k || n->lg != lg)
		return false;
	if (event && !lfs_cid_equal(&n->event, event))
		return false;
	if ((name == NULL) != (n->name == NULL))
		return false;
	return !name || !strcmp(n->name, name);
}

static struct node **slot_of(struct lfs_fs *fs, fuse_ino_t ino)
{
	return &fs->table[(ino * 0x9e3779b97f4a7c15ull >> 17) &
			  (fs->nslots - 1)];
}

/* Caller holds fs->lock. */
static struct node *node_by_ino(struct lfs_fs *fs, fuse_ino_t ino)
{
	for (struct node *n = *slot_of(fs, ino); n; n = n->hnext)
		if (n->ino == ino)
			return n;
	return NULL;
}

static int table_grow(struct lfs_fs *fs)
{
	size_t nslots = fs->nslots * 2;
	struct node **t = calloc(nslots, sizeof(*t));
	if (!t)
		return -ENOMEM;
	struct node **old = fs->table;
	size_t oldn = fs->nslots;
	fs->table = t;
	fs->nslots = nslots;
	for (size_t i = 0; i < oldn; i++)
		for (struct node *n = old[i], *next; n; n = next) {
			next = n->hnext;
			struct node **s = slot_of(fs, n->ino);
			n->hnext = *s;
			*s = n;
		}
	free(old);
	return 0;
}

/*
 * Find the node of an identity or make it. Its inode number is a hash of
 * the identity, so it is the same on every mount (a collision moves on to
 * the next free number). Caller holds fs->lock.
 */
static struct node *node_get(struct lfs_fs *fs, enum kind k,
			     struct fsledger *lg, const struct lfs_cid *event,
			     const char *name)
{
	fuse_ino_t ino = k == K_ROOT ? FUSE_ROOT_ID
				     : identity_hash(k, lg ? lg->name : NULL,
						     event, name);
	for (;;) {
		struct node *n = node_by_ino(fs, ino);
		if (!n)
			break;
		if (same_identity(n, k, lg, event, name))
			return n;
		ino = ino + 1 < 2 ? 2 : ino + 1;
	}
	if (fs->nnodes * 2 >= fs->nslots && table_grow(fs))
		return NULL;
	struct node *n = calloc(1, sizeof(*n));
	if (!n)
		return NULL;
	n->ino = ino;
	n->kind = k;
	n->lg = lg;
	if (event)
		n->event = *event;
	if (name && !(n->name = strdup(name))) {
		free(n);
		return NULL;
	}
	struct node **s = slot_of(fs, ino);
	n->hnext = *s;
	*s = n;
	fs->nnodes++;
	return n;
}

static void node_maybe_free(struct lfs_fs *fs, struct node *n)
{
	if (n->kind == K_ROOT || n->nlookup || n->nopen)
		return;
	struct node **pp = slot_of(fs, n->ino);
	while (*pp != n)
		pp = &(*pp)->hnext;
	*pp = n->hnext;
	fs->nnodes--;
	if (n->wbuf) {
		lfs_buf_release(n->wbuf);
		free(n->wbuf);
	}
	free(n->name);
	free(n->id);
	free(n);
}

/* ---- document content ---- */

static size_t render_slot(const struct lfs_cid *doc, const char *id)
{
	uint64_t h;
	memcpy(&h, doc->digest, sizeof(h));
	for (const char *p = id; *p; p++)
		h = (h ^ (uint8_t)*p) * 0x100000001b3ull;
	return (size_t)(h % RENDER_SLOTS);
}

/* The text of a committed document version as its file shows it. */
static int render(struct lfs_fs *fs, struct fsledger *lg,
		  const struct lfs_cid *doc, const char *id,
		  struct lfs_buf *out)
{
	size_t slot = render_slot(doc, id);
	pthread_mutex_lock(&fs->render_lock);
	struct render *r = &fs->renders[slot];
	if (r->data && lfs_cid_equal(&r->doc, doc) && !strcmp(r->id, id)) {
		int rc = lfs_buf_append(out, r->data, r->len);
		pthread_mutex_unlock(&fs->render_lock);
		return rc;
	}
	pthread_mutex_unlock(&fs->render_lock);

	json_t *j;
	int rc = lfs_ledger_load_doc(lg->l, doc, id, &j);
	if (rc)
		return rc;
	struct lfs_buf b;
	lfs_buf_init(&b, LFS_FS_TEXT_MAX * 4);
	rc = lfs_dagjson_dump(&b, j);
	json_decref(j);
	if (!rc)
		rc = lfs_buf_append(out, b.data, b.len);
	if (!rc) {
		size_t len;
		uint8_t *data = lfs_buf_steal(&b, &len);
		char *idc = strdup(id);
		pthread_mutex_lock(&fs->render_lock);
		free(r->data);
		free(r->id);
		r->doc = *doc;
		r->id = idc;
		r->data = idc ? data : NULL;
		r->len = len;
		if (!idc)
			free(data);
		pthread_mutex_unlock(&fs->render_lock);
	}
	lfs_buf_release(&b);
	return rc;
}

static int read_whole(struct lfs_buf *out, const char *path, struct stat *st)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	int rc = fstat(fd, st) ? -errno : 0;
	if (!rc && (size_t)st->st_size > LFS_FS_TEXT_MAX)
		rc = -EFBIG;
	if (!rc)
		rc = lfs_buf_reserve(out, (size_t)st->st_size);
	while (!rc) {
		uint8_t tmp[65536];
		ssize_t r = read(fd, tmp, sizeof(tmp));
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			rc = -errno;
		else if (r == 0)
			break;
		else
			rc = lfs_buf_append(out, tmp, (size_t)r);
	}
	close(fd);
	return rc;
}

struct docstate {
	bool exists;
	bool draft;
	int64_t mtime_us;
	struct lfs_index_entry entry; /* when committed */
	bool has_entry;
};

/*
 * The bytes a document file holds now: the open write buffer, else the
 * draft, else the committed version. -ENOENT when none exists.
 */
static int doc_content(struct lfs_fs *fs, struct node *n, struct lfs_buf *out,
		       struct docstate *ds, struct lfs_arena *a)
{
	struct fsledger *lg = n->lg;
	memset(ds, 0, sizeof(*ds));
	pthread_mutex_lock(&fs->lock);
	if (n->wbuf) {
		int rc = lfs_buf_append(out, n->wbuf->data, n->wbuf->len);
		pthread_mutex_unlock(&fs->lock);
		ds->exists = true;
		ds->draft = true;
		ds->mtime_us = now_ms() * 1000;
		return rc;
	}
	bool hidden = pending_has(lg, n->id);
	pthread_mutex_unlock(&fs->lock);

	char *dpath = path_of(lg->drafts, n->name);
	if (!dpath)
		return -ENOMEM;
	struct stat st;
	int rc = read_whole(out, dpath, &st);
	free(dpath);
	if (rc == 0) {
		ds->exists = ds->draft = true;
		ds->mtime_us = (int64_t)st.st_mtim.tv_sec * 1000000 +
			       st.st_mtim.tv_nsec / 1000;
		return 0;
	}
	if (rc != -ENOENT)
		return rc;
	if (hidden || !lg->l)
		return lg->l ? -ENOENT : lg->err;
	rc = lfs_ledger_get(lg->l, NULL, n->id, &ds->entry, a, NULL);
	if (rc)
		return rc;
	ds->has_entry = true;
	ds->exists = true;
	ds->mtime_us = ds->entry.cur.t;
	return render(fs, lg, &ds->entry.cur.doc, n->id, out);
}

/* ---- attributes ---- */

static void fill_time(struct stat *st, int64_t t_us)
{
	st->st_mtim.tv_sec = (time_t)(t_us / 1000000);
	st->st_mtim.tv_nsec = (long)(t_us % 1000000) * 1000;
	st->st_ctim = st->st_atim = st->st_mtim;
}

static void dir_stat(struct lfs_fs *fs, struct node *n, struct stat *st,
		     mode_t mode)
{
	memset(st, 0, sizeof(*st));
	st->st_ino = n->ino;
	st->st_mode = S_IFDIR | mode;
	st->st_nlink = 2;
	st->st_uid = fs->uid;
	st->st_gid = fs->gid;
	st->st_blksize = 4096;
	fill_time(st, fs->started_us);
}

static void file_stat(struct lfs_fs *fs, struct node *n, struct stat *st,
		      mode_t mode, size_t size)
{
	memset(st, 0, sizeof(*st));
	st->st_ino = n->ino;
	st->st_mode = S_IFREG | mode;
	st->st_nlink = 1;
	st->st_uid = fs->uid;
	st->st_gid = fs->gid;
	st->st_size = (off_t)size;
	st->st_blksize = 4096;
	st->st_blocks = (blkcnt_t)((size + 511) / 512);
}

static int ctl_content(struct lfs_fs *fs, struct node *n, struct lfs_buf *out,
		       fuse_req_t req);

/* Attributes of any node; *ttl is how long the kernel may keep them. */
static int node_stat(struct lfs_fs *fs, struct node *n, struct stat *st,
		     double *ttl)
{
	int rc = 0;
	*ttl = ENTRY_TTL;
	struct lfs_arena a;
	lfs_arena_init(&a, 0);
	struct lfs_buf b;
	lfs_buf_init(&b, LFS_FS_TEXT_MAX * 4);
	switch (n->kind) {
	case K_ROOT:
	case K_LEDGER:
	case K_CTLDIR:
		dir_stat(fs, n, st, 0755);
		break;
	case K_SNAPS:
	case K_BYTIME:
		dir_stat(fs, n, st, 0555);
		break;
	case K_SNAP:
		dir_stat(fs, n, st, 0555);
		fill_time(st, n->t);
		break;
	case K_BYTIME_LINK: {
		memset(st, 0, sizeof(*st));
		st->st_ino = n->ino;
		st->st_mode = S_IFLNK | 0777;
		st->st_nlink = 1;
		st->st_uid = fs->uid;
		st->st_gid = fs->gid;
		st->st_size = 3 + LFS_CID_STRLEN;
		fill_time(st, n->t);
		break;
	}
	case K_SNAPDOC: {
		struct lfs_index_entry e;
		rc = lfs_ledger_get(n->lg->l, &n->root, n->id, &e, &a, NULL);
		if (!rc)
			rc = render(fs, n->lg, &e.cur.doc, n->id, &b);
		if (!rc) {
			file_stat(fs, n, st, 0444, b.len);
			fill_time(st, e.cur.t);
		}
		break;
	}
	case K_DOC: {
		struct docstate ds;
		*ttl = 0;
		rc = doc_content(fs, n, &b, &ds, &a);
		if (!rc) {
			file_stat(fs, n, st, 0644, b.len);
			fill_time(st, ds.mtime_us);
		}
		break;
	}
	case K_SCRATCH: {
		char *p = path_of(n->lg->scratch, n->name);
		*ttl = 0;
		if (!p)
			rc = -ENOMEM;
		else if (lstat(p, st))
			rc = -errno;
		else
			st->st_ino = n->ino;
		free(p);
		break;
	}
	case K_CTL:
		*ttl = 0;
		/* Reading "wait" blocks: its size is not worth waiting for. */
		rc = strcmp(n->name, "wait") ? ctl_content(fs, n, &b, NULL) : 0;
		if (!rc)
			file_stat(fs, n, st, 0444, b.len);
		break;
	}
	lfs_buf_release(&b);
	lfs_arena_release(&a);
	return rc;
}

/* ---- control files ---- */

struct count_ctx {
	uint64_t n;
};

static int count_event(void *ctx, const struct lfs_cid *cid,
		       const struct lfs_event *ev)
{
	(void)cid;
	(void)ev;
	((struct count_ctx *)ctx)->n++;
	return 0;
}

struct conflicts_ctx {
	struct lfs_ledger *l;
	json_t *out;
};

static json_t *version_json(struct lfs_ledger *l, const struct lfs_version *v,
			    const char *id, bool with_doc)
{
	char cid[LFS_CID_STRLEN + 1], when[64];
	lfs_cid_to_string(cid, &v->doc);
	iso_time(when, v->t);
	json_t *j = json_pack("{s:s,s:s,s:s}", "cid", cid, "time", when,
			      "writer", v->writer);
	json_t *doc;
	if (j && with_doc && lfs_ledger_load_doc(l, &v->doc, id, &doc) == 0)
		json_object_set_new(j, "document", doc);
	return j;
}

static int conflicts_fn(void *ctx, const struct lfs_index_entry *e)
{
	struct conflicts_ctx *c = ctx;
	if (!e->nconflicts)
		return 0;
	json_t *losers = json_array();
	for (size_t i = 0; losers && i < e->nconflicts; i++)
		json_array_append_new(
			losers,
			version_json(c->l, &e->conflicts[i], e->id, true));
	json_t *item = json_pack("{s:s,s:o,s:o}", "id", e->id, "current",
				 version_json(c->l, &e->cur, e->id, false),
				 "conflicts", losers);
	return item && !json_array_append_new(c->out, item) ? 0 : -ENOMEM;
}

static int dump_json(struct lfs_buf *out, json_t *j)
{
	if (!j)
		return -ENOMEM;
	char *s = json_dumps(j, JSON_INDENT(2) | JSON_SORT_KEYS);
	json_decref(j);
	if (!s)
		return -ENOMEM;
	int rc = lfs_buf_append_str(out, s);
	free(s);
	return rc ? rc : lfs_buf_append_byte(out, '\n');
}

static int ctl_content(struct lfs_fs *fs, struct node *n, struct lfs_buf *out,
		       fuse_req_t req)
{
	struct fsledger *lg = n->lg;
	const char *what = n->name;
	if (!strcmp(what, "errors")) {
		pthread_mutex_lock(&fs->lock);
		uint64_t first = lg->nerrors > ERRORS_KEPT
					 ? lg->nerrors - ERRORS_KEPT
					 : 0;
		int rc = 0;
		for (uint64_t i = first; i < lg->nerrors && !rc; i++)
			rc = lfs_buf_append_str(out,
						lg->errors[i % ERRORS_KEPT]);
		pthread_mutex_unlock(&fs->lock);
		return rc;
	}
	if (!strcmp(what, "wait")) {
		if (!fs->sync)
			return lfs_buf_append_str(out, "no remote store\n");
		/* Wait in short slices so an interrupted reader (Ctrl-C,
		 * timeout) is let go at once. */
		uint64_t target = lfs_sync_wait_target(fs->sync);
		for (int waited = 0; waited < 60000; waited += 200) {
			int rc = lfs_sync_wait_until(fs->sync, lg->name, target,
						     200);
			if (!rc)
				return lfs_buf_append_str(out, "pushed\n");
			if (rc != -ETIMEDOUT)
				return rc;
			if (req && fuse_req_interrupted(req))
				return -EINTR;
		}
		return -ETIMEDOUT;
	}
	if (!strcmp(what, "changes")) {
		char *p = path_of(lg->state, "changes");
		struct stat st;
		int rc = p ? read_whole(out, p, &st) : -ENOMEM;
		free(p);
		return rc == -ENOENT || rc == -EFBIG ? 0 : rc;
	}
	if (!lg->l) {
		if (strcmp(what, "status"))
			return 0;
		return dump_json(out, json_pack("{s:s,s:s}", "ledger", lg->name,
						"error",
						lg->err == -ENOKEY
							? "no key on this "
							  "machine"
							: strerror(-lg->err)));
	}
	struct lfs_cid *heads;
	size_t nheads;
	int rc = lfs_ledger_heads(lg->l, &heads, &nheads);
	if (rc)
		return rc;
	if (!strcmp(what, "heads")) {
		for (size_t i = 0; i < nheads && !rc; i++) {
			char s[LFS_CID_STRLEN + 2];
			lfs_cid_to_string(s, &heads[i]);
			strcat(s, "\n");
			rc = lfs_buf_append_str(out, s);
		}
		free(heads);
		return rc;
	}
	if (!strcmp(what, "conflicts")) {
		free(heads);
		struct lfs_cid root;
		lfs_ledger_root(lg->l, &root);
		struct conflicts_ctx c = {.l = lg->l, .out = json_array()};
		if (!c.out)
			return -ENOMEM;
		rc = lfs_index_each(lfs_ledger_index(lg->l), &root,
				    conflicts_fn, &c);
		if (rc) {
			json_decref(c.out);
			return rc;
		}
		return dump_json(out, c.out);
	}
	/* status */
	struct lfs_cid root;
	lfs_ledger_root(lg->l, &root);
	uint64_t docs = 0;
	struct count_ctx events = {0};
	struct lfs_blocks blocks = lfs_ledger_blocks(lg->l);
	if (!rc)
		rc = lfs_index_count(&docs, lfs_ledger_index(lg->l), &root);
	if (!rc)
		rc = lfs_clock_walk(&blocks, heads, nheads, count_event,
				    &events);
	json_t *hj = json_array();
	for (size_t i = 0; hj && i < nheads; i++) {
		char s[LFS_CID_STRLEN + 1];
		lfs_cid_to_string(s, &heads[i]);
		json_array_append_new(hj, json_string(s));
	}
	free(heads);
	if (rc) {
		json_decref(hj);
		return rc;
	}
	char rs[LFS_CID_STRLEN + 1];
	lfs_cid_to_string(rs, &root);
	pthread_mutex_lock(&fs->lock);
	json_t *pending = json_array();
	for (size_t i = 0; pending && i < lg->npending; i++)
		json_array_append_new(pending, json_string(lg->pending[i].id));
	const char *last = lg->nerrors
				   ? lg->errors[(lg->nerrors - 1) % ERRORS_KEPT]
				   : NULL;
	json_t *j = json_pack("{s:s,s:o,s:s,s:I,s:I,s:o,s:I,s:s?}", "ledger",
			      lg->name, "heads", hj, "root", rs, "documents",
			      (json_int_t)docs, "events", (json_int_t)events.n,
			      "pending_deletes", pending, "errors",
			      (json_int_t)lg->nerrors, "last_error", last);
	pthread_mutex_unlock(&fs->lock);
	if (j && fs->sync)
		json_object_set_new(j, "sync",
				    lfs_sync_status(fs->sync, lg->name));
	return dump_json(out, j);
}

/* ---- snapshots ---- */

struct snap_list {
	struct lfs_cid *cids;
	int64_t *times;
	size_t n, cap;
};

static int snap_add(void *ctx, const struct lfs_cid *cid,
		    const struct lfs_event *ev)
{
	struct snap_list *s = ctx;
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

static int snap_list(struct snap_list *out, struct fsledger *lg)
{
	memset(out, 0, sizeof(*out));
	struct lfs_cid *heads;
	size_t n;
	int rc = lfs_ledger_heads(lg->l, &heads, &n);
	if (rc)
		return rc;
	struct lfs_blocks b = lfs_ledger_blocks(lg->l);
	rc = lfs_clock_walk(&b, heads, n, snap_add, out);
	free(heads);
	return rc;
}

static void snap_list_free(struct snap_list *s)
{
	free(s->cids);
	free(s->times);
}

static const struct snap_list *sort_list;

static int by_time(const void *x, const void *y)
{
	int64_t a = sort_list->times[*(const size_t *)x];
	int64_t b = sort_list->times[*(const size_t *)y];
	return a < b ? -1 : a > b;
}

/*
 * The by-time names of every event: its time, made unique by a CID suffix
 * when several events share a time. Returns a malloc'd array of n names.
 */
static pthread_mutex_t sort_lock = PTHREAD_MUTEX_INITIALIZER;

static char (*bytime_names(const struct snap_list *s))[80]
{
	char(*names)[80] = calloc(s->n + 1, sizeof(*names));
	size_t *order = calloc(s->n + 1, sizeof(*order));
	if (!names || !order) {
		free(names);
		free(order);
		return NULL;
	}
	for (size_t i = 0; i < s->n; i++)
		order[i] = i;
	pthread_mutex_lock(&sort_lock);
	sort_list = s;
	qsort(order, s->n, sizeof(*order), by_time);
	pthread_mutex_unlock(&sort_lock);
	for (size_t k = 0; k < s->n; k++) {
		size_t i = order[k];
		iso_time(names[i], s->times[i]);
		bool dup =
			(k > 0 && s->times[order[k - 1]] == s->times[i]) ||
			(k + 1 < s->n && s->times[order[k + 1]] == s->times[i]);
		if (dup) {
			char c[LFS_CID_STRLEN + 1];
			lfs_cid_to_string(c, &s->cids[i]);
			size_t len = strlen(names[i]);
			snprintf(names[i] + len, 80 - len, "-%s",
				 c + LFS_CID_STRLEN - 8);
		}
	}
	free(order);
	return names;
}

/* ---- saving documents ---- */

static int write_draft(struct fsledger *lg, const char *name,
		       const uint8_t *data, size_t len)
{
	char tmp[PATH_MAX], *final = path_of(lg->drafts, name);
	if (!final)
		return -ENOMEM;
	snprintf(tmp, sizeof(tmp), "%s/.tmp-%08x", lg->drafts,
		 randombytes_random());
	int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	int rc = fd < 0 ? -errno : lfs_write_all(fd, data, len);
	if (fd >= 0 && close(fd) && !rc)
		rc = -errno;
	if (!rc && rename(tmp, final))
		rc = -errno;
	if (rc)
		unlink(tmp);
	free(final);
	return rc;
}

static void remove_draft(struct fsledger *lg, const char *name)
{
	char *p = path_of(lg->drafts, name);
	if (p)
		unlink(p);
	free(p);
}

static bool has_draft(struct fsledger *lg, const char *name)
{
	char *p = path_of(lg->drafts, name);
	bool r = p && access(p, F_OK) == 0;
	free(p);
	return r;
}

struct changes_ctx {
	struct lfs_buf out;
	const char *prefix;
};

static int change_line(void *ctx, const struct lfs_index_entry *ea,
		       const struct lfs_index_entry *eb)
{
	struct changes_ctx *c = ctx;
	const struct lfs_index_entry *e = eb ? eb : ea;
	lfs_buf_append_str(&c->out, c->prefix);
	lfs_buf_append_str(&c->out, !ea ? " + " : !eb ? " - " : " ~ ");
	lfs_buf_append(&c->out, e->id, e->id_len);
	return lfs_buf_append_byte(&c->out, '\n');
}

/* Append the difference of two roots to the change feed. */
static void record_changes(struct fsledger *lg, const struct lfs_cid *before,
			   const struct lfs_cid *after,
			   const struct lfs_cid *event)
{
	if (lfs_cid_equal(before, after))
		return;
	char when[64], ev[LFS_CID_STRLEN + 1], prefix[128];
	iso_time(when, now_ms() * 1000);
	lfs_cid_to_string(ev, event);
	snprintf(prefix, sizeof(prefix), "%s %s", when, ev);
	struct changes_ctx c = {.prefix = prefix};
	lfs_buf_init(&c.out, 0);
	if (lfs_index_diff(lfs_ledger_index(lg->l), before, after, change_line,
			   &c) == 0)
		append_changes(lg, (const char *)c.out.data, c.out.len);
	lfs_buf_release(&c.out);
}

static bool refresh_ledger(struct lfs_fs *fs, struct fsledger *lg);

/* Commit a transaction and feed the change log. */
static int commit_txn(struct lfs_fs *fs, struct fsledger *lg, struct lfs_txn *t)
{
	struct lfs_cid before, after, event;
	bool committed;
	refresh_ledger(fs, lg);
	lfs_ledger_root(lg->l, &before);
	int rc = lfs_ledger_commit(lg->l, t, &event, &committed);
	if (!rc && committed) {
		lfs_ledger_root(lg->l, &after);
		record_changes(lg, &before, &after, &event);
		if (fs->sync)
			lfs_sync_kick(fs->sync);
	}
	return rc;
}

static bool blank(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] != ' ' && p[i] != '\n' && p[i] != '\t' && p[i] != '\r')
			return false;
	return true;
}

/*
 * Save the bytes of document file `name` (id `id`): commit them when they
 * are a valid document, else keep them as a draft and say why. An empty
 * (blank) file is a draft without error.
 */
static int save_content(struct lfs_fs *fs, struct fsledger *lg,
			const char *name, const char *id, const uint8_t *data,
			size_t len)
{
	if (!lg->l)
		return lg->err;
	if (blank(data, len))
		return write_draft(lg, name, data, len);
	json_error_t jerr;
	json_t *doc = json_loadb((const char *)data, len,
				 JSON_REJECT_DUPLICATES, &jerr);
	int rc = 0;
	char why[300] = "";
	if (!doc) {
		snprintf(why, sizeof(why),
			 "not valid JSON: %s (line %d, column %d)", jerr.text,
			 jerr.line, jerr.column);
		rc = -EINVAL;
	} else if (!json_is_object(doc)) {
		snprintf(why, sizeof(why),
			 "a document must be a JSON object, not %s",
			 json_is_array(doc) ? "an array" : "a single value");
		rc = -EINVAL;
	} else {
		json_t *given = json_object_get(doc, "_id");
		if (given && (!json_is_string(given) ||
			      strcmp(json_string_value(given), id))) {
			snprintf(why, sizeof(why),
				 "its \"_id\" does not match the file name "
				 "(expected \"%s\")",
				 id);
			rc = -EINVAL;
		}
	}
	if (!rc) {
		struct lfs_txn *t;
		rc = lfs_txn_new(&t);
		if (!rc && (rc = lfs_txn_put(t, id, doc)) == -EINVAL)
			snprintf(why, sizeof(why),
				 "it holds a value a document cannot (a "
				 "number out of range or invalid text)");
		if (!rc)
			rc = commit_txn(fs, lg, t);
		if (rc && !why[0])
			snprintf(why, sizeof(why), "the commit failed: %s",
				 strerror(-rc));
		lfs_txn_free(t);
	}
	json_decref(doc);
	if (rc) {
		int drc = write_draft(lg, name, data, len);
		pthread_mutex_lock(&fs->lock);
		ledger_error(lg,
			     "%s: not committed: %s; your text is kept as a "
			     "draft in that file%s",
			     name, why,
			     drc ? " (and saving the draft FAILED)" : "");
		pthread_mutex_unlock(&fs->lock);
		return rc == -EFBIG ? rc : -EINVAL;
	}
	remove_draft(lg, name);
	pthread_mutex_lock(&fs->lock);
	pending_cancel(lg, id);
	pthread_mutex_unlock(&fs->lock);
	return 0;
}

/* Save a document's write buffer if it changed since the last save. */
static int commit_doc(struct lfs_fs *fs, struct node *n)
{
	pthread_mutex_lock(&fs->lock);
	if (!n->wbuf || n->wgen == n->committed_gen) {
		int rc = n->invalid;
		pthread_mutex_unlock(&fs->lock);
		return rc;
	}
	struct lfs_buf copy;
	lfs_buf_init(&copy, LFS_FS_TEXT_MAX);
	int rc = lfs_buf_append(&copy, n->wbuf->data, n->wbuf->len);
	uint64_t gen = n->wgen;
	pthread_mutex_unlock(&fs->lock);
	if (!rc)
		rc = save_content(fs, n->lg, n->name, n->id, copy.data,
				  copy.len);
	lfs_buf_release(&copy);
	pthread_mutex_lock(&fs->lock);
	if (n->committed_gen < gen) {
		n->committed_gen = gen;
		n->invalid = rc;
	}
	pthread_mutex_unlock(&fs->lock);
	return rc;
}

/* Commit the deletions whose grace period is over (all of them: force). */
static void flush_pending(struct lfs_fs *fs, bool force)
{
	int64_t now = now_ms();
	pthread_mutex_lock(&fs->lock);
	for (struct fsledger *lg = fs->ledgers; lg; lg = lg->next) {
		if (!lg->l || !lg->npending)
			continue;
		struct lfs_txn *t;
		if (lfs_txn_new(&t))
			continue;
		for (size_t i = 0; i < lg->npending;) {
			if (force || lg->pending[i].deadline_ms <= now) {
				lfs_txn_delete(t, lg->pending[i].id);
				free(lg->pending[i].id);
				lg->pending[i] = lg->pending[--lg->npending];
			} else {
				i++;
			}
		}
		if (lfs_txn_count(t)) {
			pthread_mutex_unlock(&fs->lock);
			int rc = commit_txn(fs, lg, t);
			pthread_mutex_lock(&fs->lock);
			if (rc)
				ledger_error(lg,
					     "deleting documents failed: %s",
					     strerror(-rc));
		}
		lfs_txn_free(t);
	}
	pthread_mutex_unlock(&fs->lock);
}

static void bury(struct lfs_fs *fs, bool force);
static void refresh_ledgers(struct lfs_fs *fs);

static void *housekeeper(void *arg)
{
	struct lfs_fs *fs = arg;
	pthread_mutex_lock(&fs->hk_lock);
	while (fs->running) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 200 * 1000000;
		if (ts.tv_nsec >= 1000000000) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000;
		}
		pthread_cond_timedwait(&fs->hk_cond, &fs->hk_lock, &ts);
		pthread_mutex_unlock(&fs->hk_lock);
		flush_pending(fs, false);
		bury(fs, false);
		refresh_ledgers(fs);
		pthread_mutex_lock(&fs->hk_lock);
	}
	pthread_mutex_unlock(&fs->hk_lock);
	return NULL;
}

/* ---- operations: lookup and attributes ---- */

/* Refuse an operation with err, saying so in the log. */
static void refuse(fuse_req_t req, const char *op, const char *name, int err)
{
	lfs_info("%s %s: refused: %s", op, name ? name : "", strerror(err));
	fuse_reply_err(req, err);
}

static struct lfs_fs *fs_of(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

/* Take a kernel reference on n and answer with its entry. */
static void reply_node(fuse_req_t req, struct lfs_fs *fs, struct node *n,
		       const struct stat *st, double ttl)
{
	struct fuse_entry_param e;
	memset(&e, 0, sizeof(e));
	e.ino = n->ino;
	e.generation = 1;
	e.attr = *st;
	e.attr_timeout = ttl;
	e.entry_timeout = ENTRY_TTL;
	pthread_mutex_lock(&fs->lock);
	n->nlookup++;
	pthread_mutex_unlock(&fs->lock);
	if (fuse_reply_entry(req, &e)) {
		pthread_mutex_lock(&fs->lock);
		n->nlookup--;
		node_maybe_free(fs, n);
		pthread_mutex_unlock(&fs->lock);
	}
}

static void unpin(struct lfs_fs *fs, struct node *n)
{
	pthread_mutex_lock(&fs->lock);
	n->nopen--;
	node_maybe_free(fs, n);
	pthread_mutex_unlock(&fs->lock);
}

/*
 * Resolve name under parent to a node (made if needed, pinned: the caller
 * unpins it when done).
 * Returns 0 or a negative errno. Caller holds no lock.
 */
static int resolve(struct lfs_fs *fs, struct node *parent, const char *name,
		   struct node **out)
{
	struct node *n = NULL;
	char id[LFS_INDEX_ID_MAX + 1];
	struct fsledger *lg = parent->lg;
	int rc = 0;

	if (parent->kind == K_LEDGER && lg->l == NULL &&
	    strcmp(name, CONTROL) != 0)
		return lg->err;
	pthread_mutex_lock(&fs->lock);
	switch (parent->kind) {
	case K_ROOT:
		if (!lfs_home_valid_name(name)) {
			rc = -ENOENT;
			break;
		}
		lg = ledger_get(fs, name, true);
		n = lg ? node_get(fs, K_LEDGER, lg, NULL, name) : NULL;
		rc = lg ? 0 : -ENOENT;
		break;
	case K_LEDGER:
		if (!strcmp(name, SNAPSHOTS))
			n = node_get(fs, K_SNAPS, lg, NULL, SNAPSHOTS);
		else if (!strcmp(name, CONTROL))
			n = node_get(fs, K_CTLDIR, lg, NULL, CONTROL);
		else if (lfs_fsname_to_id(id, sizeof(id), name)) {
			n = node_get(fs, K_DOC, lg, NULL, name);
			if (n && !n->id && !(n->id = strdup(id)))
				n = NULL;
		} else
			n = node_get(fs, K_SCRATCH, lg, NULL, name);
		break;
	case K_SNAPS:
		if (!strcmp(name, BY_TIME)) {
			n = node_get(fs, K_BYTIME, lg, NULL, BY_TIME);
			break;
		}
		struct lfs_cid ev;
		if (lfs_cid_from_string(&ev, name) ||
		    ev.codec != LFS_CODEC_DAG_CBOR) {
			rc = -ENOENT;
			break;
		}
		n = node_get(fs, K_SNAP, lg, &ev, name);
		break;
	case K_SNAP:
		if (!lfs_fsname_to_id(id, sizeof(id), name)) {
			rc = -ENOENT;
			break;
		}
		n = node_get(fs, K_SNAPDOC, lg, &parent->event, name);
		if (n) {
			n->root = parent->root;
			n->t = parent->t;
			if (!n->id && !(n->id = strdup(id)))
				n = NULL;
		}
		break;
	case K_BYTIME:
		n = node_get(fs, K_BYTIME_LINK, lg, NULL, name);
		break;
	case K_CTLDIR:
		rc = -ENOENT;
		for (size_t i = 0; i < NCTL; i++)
			if (!strcmp(name, ctl_files[i])) {
				n = node_get(fs, K_CTL, lg, NULL, name);
				rc = 0;
			}
		break;
	default:
		rc = -ENOTDIR;
	}
	if (!rc && !n)
		rc = -ENOMEM;
	if (!rc)
		n->nopen++; /* pinned until the caller unpins it */
	pthread_mutex_unlock(&fs->lock);
	if (rc)
		return rc;

	/* Snapshot directories and by-time links learn their event. */
	if (n->kind == K_SNAP && !n->t) {
		struct lfs_arena a;
		lfs_arena_init(&a, 0);
		struct lfs_event ev;
		struct lfs_blocks b = lfs_ledger_blocks(lg->l);
		rc = lfs_event_load(&ev, &a, &b, &n->event);
		if (!rc) {
			n->root = ev.root;
			n->t = ev.t;
		}
		lfs_arena_release(&a);
		if (rc)
			rc = rc == -EBADMSG ? -EIO : -ENOENT;
	}
	if (n->kind == K_BYTIME_LINK && !n->t) {
		struct snap_list s;
		rc = snap_list(&s, lg);
		char(*names)[80] = rc ? NULL : bytime_names(&s);
		rc = rc ? rc : names ? -ENOENT : -ENOMEM;
		for (size_t i = 0; names && i < s.n; i++)
			if (!strcmp(names[i], name)) {
				n->event = s.cids[i];
				n->t = s.times[i];
				rc = 0;
			}
		free(names);
		snap_list_free(&s);
	}
	if (rc) {
		unpin(fs, n);
		return rc;
	}
	*out = n;
	return 0;
}

static struct node *get_node(struct lfs_fs *fs, fuse_ino_t ino)
{
	pthread_mutex_lock(&fs->lock);
	struct node *n = node_by_ino(fs, ino);
	pthread_mutex_unlock(&fs->lock);
	return n;
}

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct lfs_fs *fs = fs_of(req);
	struct node *p = get_node(fs, parent), *n;
	if (!p) {
		fuse_reply_err(req, ESTALE);
		return;
	}
	if (strlen(name) > LFS_FSNAME_MAX) {
		refuse(req, "lookup", name, ENAMETOOLONG);
		return;
	}
	int rc = resolve(fs, p, name, &n);
	struct stat st;
	double ttl;
	if (!rc && (rc = node_stat(fs, n, &st, &ttl)))
		unpin(fs, n);
	if (rc) {
		if (rc != -ENOENT && rc != -ENOKEY)
			lfs_debug("lookup %s: %s", name, strerror(-rc));
		fuse_reply_err(req, -rc);
		return;
	}
	reply_node(req, fs, n, &st, ttl);
	unpin(fs, n);
}

static void forget_one(struct lfs_fs *fs, fuse_ino_t ino, uint64_t nlookup)
{
	struct node *n = node_by_ino(fs, ino);
	if (!n)
		return;
	n->nlookup = nlookup > n->nlookup ? 0 : n->nlookup - nlookup;
	node_maybe_free(fs, n);
}

static void op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	struct lfs_fs *fs = fs_of(req);
	pthread_mutex_lock(&fs->lock);
	forget_one(fs, ino, nlookup);
	pthread_mutex_unlock(&fs->lock);
	fuse_reply_none(req);
}

static void op_forget_multi(fuse_req_t req, size_t count,
			    struct fuse_forget_data *forgets)
{
	struct lfs_fs *fs = fs_of(req);
	pthread_mutex_lock(&fs->lock);
	for (size_t i = 0; i < count; i++)
		forget_one(fs, forgets[i].ino, forgets[i].nlookup);
	pthread_mutex_unlock(&fs->lock);
	fuse_reply_none(req);
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino,
		       struct fuse_file_info *fi)
{
	(void)fi;
	struct lfs_fs *fs = fs_of(req);
	struct node *n = get_node(fs, ino);
	struct stat st;
	double ttl;
	int rc = n ? node_stat(fs, n, &st, &ttl) : -ESTALE;
	if (rc)
		fuse_reply_err(req, -rc);
	else
		fuse_reply_attr(req, &st, ttl);
}

/* ---- handles ---- */

static void handle_free(struct handle *h);

/* An operation starts or stops using a handle. */
static struct handle *handle_use(struct lfs_fs *fs, struct fuse_file_info *fi)
{
	struct handle *h = (struct handle *)(uintptr_t)fi->fh;
	pthread_mutex_lock(&fs->lock);
	h->inflight++;
	pthread_mutex_unlock(&fs->lock);
	return h;
}

static void handle_done(struct lfs_fs *fs, struct handle *h)
{
	pthread_mutex_lock(&fs->lock);
	h->inflight--;
	pthread_mutex_unlock(&fs->lock);
}

/* Retire a released handle; the housekeeper frees it later. */
static void handle_retire(struct lfs_fs *fs, struct handle *h)
{
	pthread_mutex_lock(&fs->lock);
	h->released_ms = now_ms();
	h->gnext = fs->graveyard;
	fs->graveyard = h;
	pthread_mutex_unlock(&fs->lock);
}

/* Free retired handles nobody uses any more (all of them: force). */
static void bury(struct lfs_fs *fs, bool force)
{
	int64_t now = now_ms();
	struct handle *dead = NULL;
	pthread_mutex_lock(&fs->lock);
	for (struct handle **pp = &fs->graveyard; *pp;) {
		struct handle *h = *pp;
		if (force || (!h->inflight && now - h->released_ms > 5000)) {
			*pp = h->gnext;
			h->gnext = dead;
			dead = h;
		} else {
			pp = &h->gnext;
		}
	}
	pthread_mutex_unlock(&fs->lock);
	while (dead) {
		struct handle *next = dead->gnext;
		handle_free(dead);
		dead = next;
	}
}

/* ---- directories ---- */

struct listing {
	char **names;
	mode_t *modes;
	fuse_ino_t *inos;
	size_t n, cap;
};

static int list_add(struct listing *l, const char *name, mode_t mode,
		    fuse_ino_t ino)
{
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 64;
		void *a = realloc(l->names, cap * sizeof(*l->names));
		if (!a)
			return -ENOMEM;
		l->names = a;
		void *b = realloc(l->modes, cap * sizeof(*l->modes));
		if (!b)
			return -ENOMEM;
		l->modes = b;
		void *c = realloc(l->inos, cap * sizeof(*l->inos));
		if (!c)
			return -ENOMEM;
		l->inos = c;
		l->cap = cap;
	}
	if (!(l->names[l->n] = strdup(name)))
		return -ENOMEM;
	l->modes[l->n] = mode;
	l->inos[l->n++] = ino;
	return 0;
}

static void list_free(struct listing *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->names[i]);
	free(l->names);
	free(l->modes);
	free(l->inos);
}

struct doclist_ctx {
	struct listing *l;
	struct fsledger *lg;
	const struct lfs_cid *event; /* snapshots */
	char **drafts;               /* sorted, to skip duplicates */
	size_t ndrafts;
	bool check_pending;
	struct lfs_fs *fs;
};

static int str_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int doclist_fn(void *ctx, const struct lfs_index_entry *e)
{
	struct doclist_ctx *c = ctx;
	char name[LFS_FSNAME_MAX + 1];
	if (lfs_fsname_from_id(name, e->id) < 0)
		return 0; /* no file name can hold this id */
	if (c->check_pending) {
		pthread_mutex_lock(&c->fs->lock);
		bool hidden = pending_has(c->lg, e->id);
		pthread_mutex_unlock(&c->fs->lock);
		if (hidden)
			return 0;
	}
	char *key = name;
	if (c->ndrafts &&
	    bsearch(&key, c->drafts, c->ndrafts, sizeof(char *), str_cmp))
		return 0; /* listed as a draft already */
	enum kind k = c->event ? K_SNAPDOC : K_DOC;
	return list_add(c->l, name, S_IFREG,
			identity_hash(k, c->lg->name, c->event, name));
}

static int list_dir_files(struct listing *l, struct fsledger *lg,
			  const char *dir, enum kind k, char ***collect,
			  size_t *ncollect)
{
	DIR *d = opendir(dir);
	if (!d)
		return errno == ENOENT ? 0 : -errno;
	struct dirent *de;
	int rc = 0;
	while (!rc && (de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..") ||
		    (k == K_DOC && !strncmp(de->d_name, ".tmp-", 5)))
			continue;
		mode_t m = de->d_type == DT_LNK   ? S_IFLNK
			   : de->d_type == DT_DIR ? S_IFDIR
						  : S_IFREG;
		rc = list_add(l, de->d_name, m,
			      identity_hash(k, lg->name, NULL, de->d_name));
		if (!rc && collect) {
			void *p = realloc(*collect,
					  (*ncollect + 1) * sizeof(char *));
			if (!p)
				rc = -ENOMEM;
			else {
				*collect = p;
				(*collect)[(*ncollect)++] = l->names[l->n - 1];
			}
		}
	}
	closedir(d);
	return rc;
}

static int build_listing(struct lfs_fs *fs, struct node *n, struct listing *l)
{
	int rc = list_add(l, ".", S_IFDIR, n->ino);
	if (!rc)
		rc = list_add(l, "..", S_IFDIR, FUSE_ROOT_ID);
	struct fsledger *lg = n->lg;
	if (rc)
		return rc;
	switch (n->kind) {
	case K_ROOT: {
		char **names;
		size_t count;
		if ((rc = lfs_home_list(&names, &count, fs->home)))
			return rc;
		for (size_t i = 0; i < count && !rc; i++)
			rc = list_add(l, names[i], S_IFDIR,
				      identity_hash(K_LEDGER, names[i], NULL,
						    names[i]));
		lfs_home_list_free(names, count);
		return rc;
	}
	case K_LEDGER: {
		rc = list_add(l, CONTROL, S_IFDIR,
			      identity_hash(K_CTLDIR, lg->name, NULL, CONTROL));
		if (rc || !lg->l)
			return rc;
		rc = list_add(
			l, SNAPSHOTS, S_IFDIR,
			identity_hash(K_SNAPS, lg->name, NULL, SNAPSHOTS));
		struct doclist_ctx c = {
			.l = l, .lg = lg, .fs = fs, .check_pending = true};
		if (!rc)
			rc = list_dir_files(l, lg, lg->drafts, K_DOC, &c.drafts,
					    &c.ndrafts);
		if (c.ndrafts)
			qsort(c.drafts, c.ndrafts, sizeof(char *), str_cmp);
		if (!rc)
			rc = list_dir_files(l, lg, lg->scratch, K_SCRATCH, NULL,
					    NULL);
		struct lfs_cid root;
		lfs_ledger_root(lg->l, &root);
		if (!rc)
			rc = lfs_index_each(lfs_ledger_index(lg->l), &root,
					    doclist_fn, &c);
		free(c.drafts);
		return rc;
	}
	case K_SNAPS:
	case K_BYTIME: {
		struct snap_list s;
		if ((rc = snap_list(&s, lg)))
			return rc;
		if (n->kind == K_SNAPS)
			rc = list_add(l, BY_TIME, S_IFDIR,
				      identity_hash(K_BYTIME, lg->name, NULL,
						    BY_TIME));
		char(*names)[80] =
			n->kind == K_BYTIME ? bytime_names(&s) : NULL;
		if (n->kind == K_BYTIME && !names)
			rc = -ENOMEM;
		for (size_t i = 0; i < s.n && !rc; i++) {
			char cs[LFS_CID_STRLEN + 1];
			lfs_cid_to_string(cs, &s.cids[i]);
			if (n->kind == K_SNAPS)
				rc = list_add(l, cs, S_IFDIR,
					      identity_hash(K_SNAP, lg->name,
							    &s.cids[i], cs));
			else
				rc = list_add(l, names[i], S_IFLNK,
					      identity_hash(K_BYTIME_LINK,
							    lg->name, NULL,
							    names[i]));
		}
		free(names);
		snap_list_free(&s);
		return rc;
	}
	case K_SNAP: {
		struct doclist_ctx c = {.l = l, .lg = lg, .event = &n->event};
		return lfs_index_each(lfs_ledger_index(lg->l), &n->root,
				      doclist_fn, &c);
	}
	case K_CTLDIR:
		for (size_t i = 0; i < NCTL && !rc; i++)
			rc = list_add(l, ctl_files[i], S_IFREG,
				      identity_hash(K_CTL, lg->name, NULL,
						    ctl_files[i]));
		return rc;
	default:
		return -ENOTDIR;
	}
}

static void op_opendir(fuse_req_t req, fuse_ino_t ino,
		       struct fuse_file_info *fi)
{
	struct lfs_fs *fs = fs_of(req);
	struct node *n = get_node(fs, ino);
	if (!n) {
		fuse_reply_err(req, ESTALE);
		return;
	}
	struct handle *h = calloc(1, sizeof(*h));
	struct listing l = {0};
	int rc = h ? build_listing(fs, n, &l) : -ENOMEM;
	if (rc) {
		list_free(&l);
		free(h);
		fuse_reply_err(req, -rc);
		return;
	}
	h->n = n;
	h->fd = -1;
	h->names = l.names;
	h->modes = l.modes;
	h->inos = l.inos;
	h->count = l.n;
	fi->fh = (uintptr_t)h;
	pthread_mutex_lock(&fs->lock);
	n->nopen++;
	pthread_mutex_unlock(&fs->lock);
	if (fuse_reply_open(req, fi)) {
		struct listing back = {h->names, h->modes, h->inos, h->count,
				       h->count};
		list_free(&back);
		free(h);
		unpin(fs, n);
	}
}

static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi)
{
	(void)ino;
	struct lfs_fs *fs = fs_of(req);
	struct handle *h = handle_use(fs, fi);
	char *buf = malloc(size);
	if (!buf) {
		handle_done(fs, h);
		fuse_reply_err(req, ENOMEM);
		return;
	}
	size_t used = 0;
	for (size_t i = (size_t)off; i < h->count; i++) {
		struct stat st = {.st_ino = h->inos[i], .st_mode = h->modes[i]};
		size_t need =
			fuse_add_direntry(req, buf + used, size - used,
					  h->names[i], &st, (off_t)(i + 1));
		if (need > size - used)
			break;
		used += need;
	}
	fuse_reply_buf(req, buf, used);
	free(buf);
	handle_done(fs, h);
}

static void op_releasedir(fuse_req_t req, fuse_ino_t ino,
			  struct fuse_file_info *fi)
{
	(void)ino;
	struct lfs_fs *fs = fs_of(req);
	struct handle *h = (struct handle *)(uintptr_t)fi->fh;
	unpin(fs, h->n);
	handle_retire(fs, h);
	fuse_reply_err(req, 0);
}

/* ---- files ---- */

/* Answer an operation's outcome; refusals a user may wonder about are
 * logged with the name they concern. */
static void reply_status(fuse_req_t req, const char *op, const char *name,
			 int rc)
{
	if (rc == -EROFS || rc == -EPERM || rc == -ENAMETOOLONG ||
	    rc == -EXDEV || rc == -ENOKEY)
		refuse(req, op, name, -rc);
	else
		fuse_reply_err(req, -rc);
}

static bool read_only_kind(enum kind k)
{
	return k == K_SNAPS || k == K_SNAP || k == K_SNAPDOC || k == K_BYTIME ||
	       k == K_BYTIME_LINK;
}

static void handle_free(struct handle *h)
{
	if (h->fd >= 0)
		close(h->fd);
	lfs_buf_release(&h->data);
	for (size_t i = 0; i < h->count; i++)
		free(h->names[i]);
	free(h->names);
	free(h->modes);
	free(h->inos);
	free(h);
}

/* Become a writer of document n: set up its shared buffer. */
static int doc_open_write(struct lfs_fs *fs, struct node *n, bool truncate)
{
	struct lfs_buf *fresh = NULL;
	pthread_mutex_lock(&fs->lock);
	bool have = n->wbuf != NULL;
	pthread_mutex_unlock(&fs->lock);
	if (!have) {
		fresh = calloc(1, sizeof(*fresh));
		if (!fresh)
			return -ENOMEM;
		lfs_buf_init(fresh, LFS_FS_TEXT_MAX);
		if (!truncate) {
			struct docstate ds;
			struct lfs_arena a;
			lfs_arena_init(&a, 0);
			int rc = doc_content(fs, n, fresh, &ds, &a);
			lfs_arena_release(&a);
			if (rc && rc != -ENOENT) {
				lfs_buf_release(fresh);
				free(fresh);
				return rc;
			}
		}
	}
	pthread_mutex_lock(&fs->lock);
	if (!n->wbuf && fresh) {
		n->wbuf = fresh;
		n->wgen = n->committed_gen = 0;
		n->invalid = 0;
		fresh = NULL;
	}
	if (truncate && n->wbuf->len) {
		n->wbuf->len = 0;
		n->wgen++;
	}
	n->nwriters++;
	n->nopen++;
	pthread_mutex_unlock(&fs->lock);
	if (fresh) {
		lfs_buf_release(fresh);
		free(fresh);
	}
	return 0;
}

static int open_node(struct lfs_fs *fs, struct node *n,
		     struct fuse_file_info *fi, mode_t create_mode,
		     fuse_req_t req)
{
	int acc = fi->flags & O_ACCMODE;
	bool writing = acc != O_RDONLY;
	if (writing && read_only_kind(n->kind))
		return -EROFS;
	if (n->kind == K_CTL && writing)
		return -EACCES;
	struct handle *h = calloc(1, sizeof(*h));
	if (!h)
		return -ENOMEM;
	h->n = n;
	h->fd = -1;
	lfs_buf_init(&h->data, LFS_FS_TEXT_MAX * 4);
	int rc = 0;
	switch (n->kind) {
	case K_DOC:
		if (writing) {
			rc = doc_open_write(fs, n, fi->flags & O_TRUNC);
			h->writer = !rc;
		} else {
			struct docstate ds;
			struct lfs_arena a;
			lfs_arena_init(&a, 0);
			rc = doc_content(fs, n, &h->data, &ds, &a);
			lfs_arena_release(&a);
		}
		break;
	case K_SNAPDOC: {
		struct lfs_arena a;
		lfs_arena_init(&a, 0);
		struct lfs_index_entry e;
		rc = lfs_ledger_get(n->lg->l, &n->root, n->id, &e, &a, NULL);
		if (!rc)
			rc = render(fs, n->lg, &e.cur.doc, n->id, &h->data);
		lfs_arena_release(&a);
		fi->keep_cache = 1; /* immutable */
		break;
	}
	case K_CTL:
		fi->direct_io = 1;
		if (!strcmp(n->name, "changes")) {
			/* The feed is read live, so `tail -f` sees it grow. */
			char *p = path_of(n->lg->state, "changes");
			h->fd = p ? open(p, O_RDONLY | O_CREAT | O_CLOEXEC,
					 0600)
				  : -1;
			rc = !p ? -ENOMEM : h->fd < 0 ? -errno : 0;
			free(p);
			break;
		}
		rc = ctl_content(fs, n, &h->data, req);
		break;
	case K_SCRATCH: {
		char *p = path_of(n->lg->scratch, n->name);
		int flags = (fi->flags & ~(O_NOFOLLOW)) | O_CLOEXEC;
		h->fd = p ? open(p, flags, create_mode) : -1;
		rc = !p ? -ENOMEM : h->fd < 0 ? -errno : 0;
		free(p);
		break;
	}
	default:
		rc = -EISDIR;
	}
	if (rc) {
		handle_free(h);
		return rc;
	}
	if (n->kind != K_DOC || !h->writer) {
		pthread_mutex_lock(&fs->lock);
		n->nopen++;
		pthread_mutex_unlock(&fs->lock);
	}
	/* A reader has nothing to flush: spare the round trip at close. */
	if (!writing && n->kind != K_SCRATCH)
		fi->noflush = 1;
	fi->fh = (uintptr_t)h;
	return 0;
}

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct lfs_fs *fs = fs_of(req);
	struct node *n = get_node(fs, ino);
	int rc = n ? open_node(fs, n, fi, 0, req) : -ESTALE;
	if (rc)
		reply_status(req, "open for writing", n ? n->name : NULL, rc);
	else
		fuse_reply_open(req, fi);
}

static void read_handle(fuse_req_t req, struct lfs_fs *fs, struct handle *h,
			size_t size, off_t off)
{
	if (h->fd >= 0) {
		char *buf = malloc(size ? size : 1);
		ssize_t r = buf ? pread(h->fd, buf, size, off) : -1;
		if (r < 0)
			fuse_reply_err(req, buf ? errno : ENOMEM);
		else
			fuse_reply_buf(req, buf, (size_t)r);
		free(buf);
		return;
	}
	if (h->writer) {
		pthread_mutex_lock(&fs->lock);
		struct lfs_buf *b = h->n->wbuf;
		size_t len = b->len;
		size_t from = (size_t)off < len ? (size_t)off : len;
		size_t n = len - from < size ? len - from : size;
		char *copy = malloc(n ? n : 1);
		if (copy)
			memcpy(copy, b->data + from, n);
		pthread_mutex_unlock(&fs->lock);
		if (!copy)
			fuse_reply_err(req, ENOMEM);
		else
			fuse_reply_buf(req, copy, n);
		free(copy);
		return;
	}
	size_t len = h->data.len;
	size_t from = (size_t)off < len ? (size_t)off : len;
	size_t n = len - from < size ? len - from : size;
	fuse_reply_buf(req, n ? (const char *)h->data.data + from : "", n);
}

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		    struct fuse_file_info *fi)
{
	(void)ino;
	struct lfs_fs *fs = fs_of(req);
	struct handle *h = handle_use(fs, fi);
	read_handle(req, fs, h, size, off);
	handle_done(fs, h);
}

static void op_write_inner(fuse_req_t req, fuse_ino_t ino, const char *buf,
			   size_t size, off_t off, struct fuse_file_info *fi)
{
	(void)ino;
	struct lfs_fs *fs = fs_of(req);
	struct handle *h = (struct handle *)(uintptr_t)fi->fh;
	if (h->fd >= 0) {
		ssize_t w = pwrite(h->fd, buf, size, off);
		if (w < 0)
			fuse_reply_err(req, errno);
		else
			fuse_reply_write(req, (size_t)w);
		return;
	}
	if (!h->writer) {
		fuse_reply_err(req, EBADF);
		return;
	}
	if (off < 0 || (size_t)off > LFS_FS_TEXT_MAX ||
	    size > LFS_FS_TEXT_MAX - (size_t)off) {
		pthread_mutex_lock(&fs->lock);
		ledger_error(h->n->lg,
			     "%s: over the %zu MiB document size limit; write "
			     "refused",
			     h->n->name, LFS_FS_TEXT_MAX >> 20);
		pthread_mutex_unlock(&fs->lock);
		fuse_reply_err(req, EFBIG);
		return;
	}
	pthread_mutex_lock(&fs->lock);
	struct lfs_buf *b = h->n->wbuf;
	size_t end = (size_t)off + size;
	int rc = 0;
	if (end > b->len) {
		rc = lfs_buf_reserve(b, end - b->len);
		if (!rc) {
			memset(b->data + b->len, 0, end - b->len);
			b->len = end;
		}
	}
	if (!rc) {
		memcpy(b->data + off, buf, size);
		h->n->wgen++;
	}
	b->err = 0;
	pthread_mutex_unlock(&fs->lock);
	if (rc)
		fuse_reply_err(req, -rc == EFBIG ? EFBIG : ENOMEM);
	else
		fuse_reply_write(req, size);
}

static void op_write(fuse_req_t req, fuse_ino_t ino, const char *buf,
		     size_t size, off_t off, struct fuse_file_info *fi)
{
	struct lfs_fs *fs = fs_of(req);
	struct handle *h = handle_use(fs, fi);
	op_write_inner(req, ino, buf, size, off, fi);
	handle_done(fs, h);
}

static void op_flush_inner(fuse_req_t req, fuse_ino_t ino,
			   struct fuse_file_info *fi)
{
	(void)ino;
	struct lfs_fs *fs = fs_of(req);
	struct handle *h = (struct handle *)(uintptr_t)fi->fh;
	int rc = h->writer ? commit_doc(fs, h->n) : 0;
	fuse_reply_err(req, -rc);
}

static void op_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct lfs_fs *fs = fs_of(req);
	struct handle *h = handle_use(fs, fi);
	op_flush_inner(req, ino, fi);
	handle_done(fs, h);
}

static void op_fsync_inner(fuse_req_t req, fuse_ino_t ino, int datasync,
			   struct fuse_file_info *fi)
{
	(void)ino;
	struct lfs_fs *fs = fs_of(req);
	struct handle *h = (struct handle *)(uintptr_t)fi->fh;
	int rc = 0;
	if (h->fd >= 0)
		rc = (datasync ? fdatasync(h->fd) : fsync(h->fd)) ? -errno : 0;
	else if (h->writer) {
		rc = commit_doc(fs, h->n);
		if (!rc && h->n->lg->l)
			rc = lfs_ledger_sync(h->n->lg->l);
	}
	fuse_reply_err(req, -rc);
}

static void op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync,
		     struct fuse_file_info *fi)
{
	struct lfs_fs *fs = fs_of(req);
	struct handle *h = handle_use(fs, fi);
	op_fsync_inner(req, ino, datasync, fi);
	handle_done(fs, h);
}

static void op_release(fuse_req_t req, fuse_ino_t ino,
		       struct fuse_file_info *fi)
{
	(void)ino;
	struct lfs_fs *fs = fs_of(req);
	struct handle *h = (struct handle *)(uintptr_t)fi->fh;
	struct node *n = h->n;
	if (h->writer) {
		commit_doc(fs, n); /* normally flush did it already */
		pthread_mutex_lock(&fs->lock);
		if (--n->nwriters == 0 && n->wbuf) {
			lfs_buf_release(n->wbuf);
			free(n->wbuf);
			n->wbuf = NULL;
		}
		pthread_mutex_unlock(&fs->lock);
	}
	unpin(fs, n);
	handle_retire(fs, h);
	fuse_reply_err(req, 0);
}

static void op_create(fuse_req_t req, fuse_ino_t parent, const char *name,
		      mode_t mode, struct fuse_file_info *fi)
{
	if (strlen(name) > LFS_FSNAME_MAX) {
		refuse(req, "create", name, ENAMETOOLONG);
		return;
	}
	struct lfs_fs *fs = fs_of(req);
	struct node *p = get_node(fs, parent), *n;
	if (!p) {
		fuse_reply_err(req, ESTALE);
		return;
	}
	if (p->kind != K_LEDGER) {
		refuse(req, "create", name,
		       read_only_kind(p->kind) ? EROFS : EPERM);
		return;
	}
	if (!strcmp(name, SNAPSHOTS) || !strcmp(name, CONTROL)) {
		fuse_reply_err(req, EEXIST);
		return;
	}
	int rc = resolve(fs, p, name, &n);
	if (rc) {
		fuse_reply_err(req, -rc);
		return;
	}
	if (n->kind == K_DOC) {
		struct stat st;
		double ttl;
		bool exists = node_stat(fs, n, &st, &ttl) == 0;
		if (exists && (fi->flags & O_EXCL))
			rc = -EEXIST;
		/* A pending deletion (an editor's backup rename) stays
		 * pending: a valid save cancels it. */
		if (!rc)
			rc = open_node(fs, n, fi, mode, req);
		if (!rc && !exists) {
			/* The new name exists through the open write buffer;
			 * marking it changed makes close save it: committed if
			 * valid, else (even empty) kept as a draft. */
			pthread_mutex_lock(&fs->lock);
			n->wgen++;
			pthread_mutex_unlock(&fs->lock);
		}
	} else {
		fi->flags |= O_CREAT;
		rc = open_node(fs, n, fi, mode & 07777, req);
	}
	struct stat st;
	double ttl = 0;
	if (!rc)
		rc = node_stat(fs, n, &st, &ttl);
	if (rc) {
		fuse_reply_err(req, -rc);
		unpin(fs, n);
		return;
	}
	struct fuse_entry_param e;
	memset(&e, 0, sizeof(e));
	e.ino = n->ino;
	e.generation = 1;
	e.attr = st;
	e.attr_timeout = ttl;
	e.entry_timeout = ENTRY_TTL;
	pthread_mutex_lock(&fs->lock);
	n->nlookup++;
	pthread_mutex_unlock(&fs->lock);
	fuse_reply_create(req, &e, fi);
	unpin(fs, n);
}

/* ---- the namespace ---- */

static void op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name,
		     mode_t mode)
{
	if (strlen(name) > LFS_FSNAME_MAX) {
		refuse(req, "mkdir", name, ENAMETOOLONG);
		return;
	}
	(void)mode;
	struct lfs_fs *fs = fs_of(req);
	struct node *p = get_node(fs, parent), *n;
	if (!p) {
		fuse_reply_err(req, ESTALE);
		return;
	}
	if (p->kind != K_ROOT) {
		if (p->kind == K_LEDGER) {
			pthread_mutex_lock(&fs->lock);
			ledger_error(p->lg,
				     "mkdir %s: a ledger holds documents, not "
				     "directories (make a new ledger at the "
				     "top of the mount instead)",
				     name);
			pthread_mutex_unlock(&fs->lock);
		}
		refuse(req, "mkdir", name,
		       read_only_kind(p->kind) ? EROFS : EPERM);
		return;
	}
	if (!lfs_home_valid_name(name)) {
		lfs_warn("mkdir %s: not a valid ledger name (no '/', no "
			 "leading '.', at most %d bytes)",
			 name, LFS_LEDGER_NAME_MAX);
		fuse_reply_err(req, EINVAL);
		return;
	}
	int rc = lfs_home_create(fs->home, name);
	if (rc) {
		if (rc != -EEXIST)
			lfs_error("mkdir %s: cannot create the ledger: %s",
				  name, strerror(-rc));
		fuse_reply_err(req, -rc);
		return;
	}
	lfs_info("created ledger '%s' with a new key", name);
	struct stat st;
	double ttl;
	rc = resolve(fs, p, name, &n);
	if (!rc && (rc = node_stat(fs, n, &st, &ttl)))
		unpin(fs, n);
	if (rc) {
		fuse_reply_err(req, -rc);
		return;
	}
	reply_node(req, fs, n, &st, ttl);
	unpin(fs, n);
}

static void op_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct lfs_fs *fs = fs_of(req);
	struct node *p = get_node(fs, parent);
	if (p && p->kind == K_ROOT)
		lfs_warn("rmdir %s: ledgers are not deleted through the file "
			 "system",
			 name);
	fuse_reply_err(req, !p                        ? ESTALE
			    : read_only_kind(p->kind) ? EROFS
						      : EPERM);
}

/* Delete document `id` now (one commit); also drop its draft. */
static int delete_doc(struct lfs_fs *fs, struct fsledger *lg, const char *name,
		      const char *id)
{
	bool draft = has_draft(lg, name);
	struct lfs_arena a;
	lfs_arena_init(&a, 0);
	pthread_mutex_lock(&fs->lock);
	bool hidden = pending_has(lg, id);
	pthread_mutex_unlock(&fs->lock);
	if (hidden) {
		/* The committed version is already on its way out (renamed to
		 * a backup); what is unlinked is the new draft. An editor that
		 * then renames its backup back leaves no commit at all. */
		lfs_arena_release(&a);
		if (!draft)
			return -ENOENT;
		remove_draft(lg, name);
		return 0;
	}
	struct lfs_index_entry e;
	int rc = lfs_ledger_get(lg->l, NULL, id, &e, &a, NULL);
	lfs_arena_release(&a);
	bool committed = rc == 0;
	if (rc && rc != -ENOENT)
		return rc;
	if (!committed && !draft)
		return -ENOENT;
	rc = 0;
	if (committed) {
		struct lfs_txn *t;
		rc = lfs_txn_new(&t);
		if (!rc && !(rc = lfs_txn_delete(t, id)))
			rc = commit_txn(fs, lg, t);
		lfs_txn_free(t);
	}
	if (!rc && draft)
		remove_draft(lg, name);
	return rc;
}

static void op_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct lfs_fs *fs = fs_of(req);
	struct node *p = get_node(fs, parent);
	char id[LFS_INDEX_ID_MAX + 1];
	int rc;
	if (!p)
		rc = -ESTALE;
	else if (p->kind != K_LEDGER)
		rc = read_only_kind(p->kind) ? -EROFS : -EPERM;
	else if (!p->lg->l)
		rc = p->lg->err;
	else if (lfs_fsname_to_id(id, sizeof(id), name))
		rc = delete_doc(fs, p->lg, name, id);
	else {
		char *path = path_of(p->lg->scratch, name);
		rc = !path ? -ENOMEM : unlink(path) ? -errno : 0;
		free(path);
	}
	reply_status(req, "unlink", name, rc);
}

static void op_symlink(fuse_req_t req, const char *link, fuse_ino_t parent,
		       const char *name)
{
	if (strlen(name) > LFS_FSNAME_MAX) {
		refuse(req, "symlink", name, ENAMETOOLONG);
		return;
	}
	struct lfs_fs *fs = fs_of(req);
	struct node *p = get_node(fs, parent), *n;
	char id[LFS_INDEX_ID_MAX + 1];
	int rc = 0;
	if (!p)
		rc = -ESTALE;
	else if (p->kind != K_LEDGER)
		rc = read_only_kind(p->kind) ? -EROFS : -EPERM;
	else if (!p->lg->l)
		rc = p->lg->err;
	else if (lfs_fsname_to_id(id, sizeof(id), name))
		rc = -EPERM; /* a document is a JSON file, not a link */
	if (!rc) {
		char *path = path_of(p->lg->scratch, name);
		rc = !path ? -ENOMEM : symlink(link, path) ? -errno : 0;
		free(path);
	}
	struct stat st;
	double ttl;
	if (!rc && !(rc = resolve(fs, p, name, &n)) &&
	    (rc = node_stat(fs, n, &st, &ttl)))
		unpin(fs, n);
	if (rc) {
		fuse_reply_err(req, -rc);
		return;
	}
	reply_node(req, fs, n, &st, ttl);
	unpin(fs, n);
}

static void op_readlink(fuse_req_t req, fuse_ino_t ino)
{
	struct lfs_fs *fs = fs_of(req);
	struct node *n = get_node(fs, ino);
	if (n && n->kind == K_BYTIME_LINK) {
		char target[LFS_CID_STRLEN + 4] = "../";
		lfs_cid_to_string(target + 3, &n->event);
		fuse_reply_readlink(req, target);
		return;
	}
	if (!n || n->kind != K_SCRATCH) {
		fuse_reply_err(req, n ? EINVAL : ESTALE);
		return;
	}
	char *path = path_of(n->lg->scratch, n->name), buf[PATH_MAX];
	ssize_t r = path ? readlink(path, buf, sizeof(buf) - 1) : -1;
	free(path);
	if (r < 0) {
		fuse_reply_err(req, path ? errno : ENOMEM);
		return;
	}
	buf[r] = '\0';
	fuse_reply_readlink(req, buf);
}

/* The bytes a ledger name holds: a document's text or a scratch file's. */
static int name_content(struct lfs_fs *fs, struct fsledger *lg,
			const char *name, struct lfs_buf *out, bool *is_doc)
{
	struct node *n;
	struct node tmp;
	char id[LFS_INDEX_ID_MAX + 1];
	*is_doc = lfs_fsname_to_id(id, sizeof(id), name);
	if (!*is_doc) {
		char *p = path_of(lg->scratch, name);
		struct stat st;
		int rc = p ? read_whole(out, p, &st) : -ENOMEM;
		free(p);
		return rc;
	}
	/* Use the live node if one exists (it may hold a write buffer). */
	pthread_mutex_lock(&fs->lock);
	n = node_by_ino(fs, identity_hash(K_DOC, lg->name, NULL, name));
	if (!n || n->kind != K_DOC || n->lg != lg || strcmp(n->name, name)) {
		memset(&tmp, 0, sizeof(tmp));
		tmp.kind = K_DOC;
		tmp.lg = lg;
		tmp.name = (char *)name;
		tmp.id = id;
		n = &tmp;
	}
	pthread_mutex_unlock(&fs->lock);
	struct docstate ds;
	struct lfs_arena a;
	lfs_arena_init(&a, 0);
	int rc = doc_content(fs, n, out, &ds, &a);
	lfs_arena_release(&a);
	return rc;
}

/*
 * After a rename the kernel keeps the source inode under the new name:
 * give that node the new identity (its number stays).
 */
static void rekey(struct lfs_fs *fs, struct fsledger *lg, const char *name,
		  bool was_doc, const char *newname, const char *newid)
{
	enum kind k = was_doc ? K_DOC : K_SCRATCH;
	pthread_mutex_lock(&fs->lock);
	fuse_ino_t ino = identity_hash(k, lg->name, NULL, name);
	for (struct node *n; (n = node_by_ino(fs, ino)); ino++) {
		if (!same_identity(n, k, lg, NULL, name))
			continue;
		char *nn = strdup(newname);
		char *ni = newid ? strdup(newid) : NULL;
		if (!nn || (newid && !ni)) {
			free(nn);
			free(ni);
			break;
		}
		free(n->name);
		free(n->id);
		n->name = nn;
		n->id = ni;
		n->kind = newid ? K_DOC : K_SCRATCH;
		break;
	}
	pthread_mutex_unlock(&fs->lock);
}

static void op_rename(fuse_req_t req, fuse_ino_t parent, const char *name,
		      fuse_ino_t newparent, const char *newname,
		      unsigned int flags)
{
	if (strlen(name) > LFS_FSNAME_MAX || strlen(newname) > LFS_FSNAME_MAX) {
		refuse(req, "rename", newname, ENAMETOOLONG);
		return;
	}
	struct lfs_fs *fs = fs_of(req);
	struct node *p = get_node(fs, parent), *np = get_node(fs, newparent);
	int rc = 0;
	if (!p || !np)
		rc = -ESTALE;
	else if (read_only_kind(p->kind) || read_only_kind(np->kind))
		rc = -EROFS;
	else if (p->kind != K_LEDGER || np->kind != K_LEDGER)
		rc = -EPERM;
	else if (p->lg != np->lg)
		rc = -EXDEV;
	else if (flags & RENAME_EXCHANGE)
		rc = -EINVAL;
	else if (!p->lg->l)
		rc = p->lg->err;
	if (rc) {
		reply_status(req, "rename", name, rc);
		return;
	}
	struct fsledger *lg = p->lg;
	char sid[LFS_INDEX_ID_MAX + 1], did[LFS_INDEX_ID_MAX + 1];
	bool sdoc = lfs_fsname_to_id(sid, sizeof(sid), name);
	bool ddoc = lfs_fsname_to_id(did, sizeof(did), newname);

	if (flags & RENAME_NOREPLACE) {
		struct lfs_buf probe;
		lfs_buf_init(&probe, LFS_FS_TEXT_MAX);
		bool isdoc;
		int e = name_content(fs, lg, newname, &probe, &isdoc);
		lfs_buf_release(&probe);
		if (e != -ENOENT) {
			fuse_reply_err(req, e ? -e : EEXIST);
			return;
		}
	}
	if (!sdoc && !ddoc) {
		char *a = path_of(lg->scratch, name);
		char *b = path_of(lg->scratch, newname);
		rc = !a || !b ? -ENOMEM : rename(a, b) ? -errno : 0;
		free(a);
		free(b);
		fuse_reply_err(req, -rc);
		return;
	}
	struct lfs_buf content;
	lfs_buf_init(&content, LFS_FS_TEXT_MAX * 4);
	bool isdoc;
	rc = name_content(fs, lg, name, &content, &isdoc);
	if (!rc && !sdoc && ddoc) {
		/* scratch -> document: sed -i, rsync, `mv tmp x.json` */
		char *a = path_of(lg->scratch, name);
		rc = save_content(fs, lg, newname, did, content.data,
				  content.len);
		if (rc == -EINVAL)
			rc = 0; /* kept as a draft; the rename happened */
		if (!rc && a)
			unlink(a);
		free(a);
	} else if (!rc && sdoc && !ddoc) {
		/* document -> scratch: an editor's backup. Delete the
		 * document only if no new version is saved soon. */
		char *b = path_of(lg->scratch, newname);
		int fd = b ? open(b, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
				  0644)
			   : -1;
		rc = !b ? -ENOMEM : fd < 0 ? -errno : 0;
		if (!rc)
			rc = lfs_write_all(fd, content.data, content.len);
		if (fd >= 0)
			close(fd);
		free(b);
		if (!rc) {
			struct lfs_arena ar;
			lfs_arena_init(&ar, 0);
			struct lfs_index_entry e;
			bool committed = lfs_ledger_get(lg->l, NULL, sid, &e,
							&ar, NULL) == 0;
			lfs_arena_release(&ar);
			remove_draft(lg, name);
			pthread_mutex_lock(&fs->lock);
			if (committed)
				rc = pending_add(lg, sid);
			pthread_mutex_unlock(&fs->lock);
		}
	} else if (!rc) {
		/* document -> document: one transaction. */
		json_error_t jerr;
		json_t *doc =
			json_loadb((const char *)content.data, content.len,
				   JSON_REJECT_DUPLICATES, &jerr);
		struct lfs_arena ar;
		lfs_arena_init(&ar, 0);
		struct lfs_index_entry e;
		bool committed =
			lfs_ledger_get(lg->l, NULL, sid, &e, &ar, NULL) == 0;
		lfs_arena_release(&ar);
		if (doc && json_is_object(doc)) {
			json_object_del(doc, "_id");
			struct lfs_txn *t;
			rc = lfs_txn_new(&t);
			if (!rc && committed)
				rc = lfs_txn_delete(t, sid);
			if (!rc)
				rc = lfs_txn_put(t, did, doc);
			if (!rc)
				rc = commit_txn(fs, lg, t);
			lfs_txn_free(t);
			if (!rc) {
				remove_draft(lg, name);
				remove_draft(lg, newname);
				pthread_mutex_lock(&fs->lock);
				pending_cancel(lg, did);
				pthread_mutex_unlock(&fs->lock);
			}
		} else if (!committed) {
			/* Only a draft: move it. */
			char *a = path_of(lg->drafts, name);
			char *b = path_of(lg->drafts, newname);
			rc = !a || !b ? -ENOMEM : rename(a, b) ? -errno : 0;
			free(a);
			free(b);
		} else {
			rc = -EINVAL;
		}
		json_decref(doc);
	}
	lfs_buf_release(&content);
	if (!rc)
		rekey(fs, lg, name, sdoc, newname, ddoc ? did : NULL);
	fuse_reply_err(req, -rc);
}

/* ---- attributes, xattrs, statfs ---- */

static void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr,
		       int to_set, struct fuse_file_info *fi)
{
	struct lfs_fs *fs = fs_of(req);
	struct node *n = get_node(fs, ino);
	int rc = 0;
	if (!n)
		rc = -ESTALE;
	else if (read_only_kind(n->kind))
		rc = -EROFS;
	else if (n->kind == K_SCRATCH) {
		char *p = path_of(n->lg->scratch, n->name);
		if (!p)
			rc = -ENOMEM;
		if (!rc && (to_set & FUSE_SET_ATTR_SIZE) &&
		    truncate(p, attr->st_size))
			rc = -errno;
		if (!rc && (to_set & FUSE_SET_ATTR_MODE) &&
		    chmod(p, attr->st_mode & 07777))
			rc = -errno;
		if (!rc && (to_set & (FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID)) &&
		    lchown(p,
			   to_set & FUSE_SET_ATTR_UID ? attr->st_uid
						      : (uid_t)-1,
			   to_set & FUSE_SET_ATTR_GID ? attr->st_gid
						      : (gid_t)-1))
			rc = -errno;
		if (!rc &&
		    (to_set &
		     (FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME |
		      FUSE_SET_ATTR_ATIME_NOW | FUSE_SET_ATTR_MTIME_NOW))) {
			struct timespec ts[2];
			ts[0].tv_nsec = ts[1].tv_nsec = UTIME_OMIT;
			if (to_set & FUSE_SET_ATTR_ATIME_NOW)
				ts[0].tv_nsec = UTIME_NOW;
			else if (to_set & FUSE_SET_ATTR_ATIME)
				ts[0] = attr->st_atim;
			if (to_set & FUSE_SET_ATTR_MTIME_NOW)
				ts[1].tv_nsec = UTIME_NOW;
			else if (to_set & FUSE_SET_ATTR_MTIME)
				ts[1] = attr->st_mtim;
			if (utimensat(AT_FDCWD, p, ts, AT_SYMLINK_NOFOLLOW))
				rc = -errno;
		}
		free(p);
	} else if (n->kind == K_DOC && (to_set & FUSE_SET_ATTR_SIZE)) {
		size_t size = (size_t)attr->st_size;
		struct handle *h =
			fi ? (struct handle *)(uintptr_t)fi->fh : NULL;
		if (size > LFS_FS_TEXT_MAX)
			rc = -EFBIG;
		else if (h && h->writer) {
			pthread_mutex_lock(&fs->lock);
			struct lfs_buf *b = n->wbuf;
			if (size > b->len &&
			    !(rc = lfs_buf_reserve(b, size - b->len)))
				memset(b->data + b->len, 0, size - b->len);
			if (!rc) {
				b->len = size;
				n->wgen++;
			}
			pthread_mutex_unlock(&fs->lock);
		} else {
			/* truncate(2) on a path: save the result now. */
			struct lfs_buf b;
			lfs_buf_init(&b, LFS_FS_TEXT_MAX * 4);
			bool isdoc;
			rc = name_content(fs, n->lg, n->name, &b, &isdoc);
			if (!rc && size > b.len &&
			    !(rc = lfs_buf_reserve(&b, size - b.len)))
				memset(b.data + b.len, 0, size - b.len);
			if (!rc) {
				b.len = size;
				rc = save_content(fs, n->lg, n->name, n->id,
						  b.data, b.len);
			}
			lfs_buf_release(&b);
		}
	}
	/* Mode, owner and times of documents and directories are fixed;
	 * accept the request (editors fchmod after saving) and answer with
	 * the real attributes. */
	struct stat st;
	double ttl;
	if (!rc)
		rc = node_stat(fs, n, &st, &ttl);
	if (rc)
		reply_status(req, "setattr", n ? n->name : NULL, rc);
	else
		fuse_reply_attr(req, &st, ttl);
}

#define XATTR_CID  "user.ledgerfs.cid"
#define XATTR_HEAD "user.ledgerfs.head"

static void op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name,
			size_t size)
{
	struct lfs_fs *fs = fs_of(req);
	struct node *n = get_node(fs, ino);
	if (!n || (n->kind != K_DOC && n->kind != K_SNAPDOC) ||
	    (strcmp(name, XATTR_CID) && strcmp(name, XATTR_HEAD))) {
		fuse_reply_err(req, n ? ENODATA : ESTALE);
		return;
	}
	struct lfs_arena a;
	lfs_arena_init(&a, 0);
	struct lfs_index_entry e;
	const struct lfs_cid *root = n->kind == K_SNAPDOC ? &n->root : NULL;
	int rc = n->lg->l ? lfs_ledger_get(n->lg->l, root, n->id, &e, &a, NULL)
			  : n->lg->err;
	char value[(LFS_CID_STRLEN + 1) * 16] = "";
	if (!rc && !strcmp(name, XATTR_CID)) {
		lfs_cid_to_string(value, &e.cur.doc);
	} else if (!rc && n->kind == K_SNAPDOC) {
		lfs_cid_to_string(value, &n->event);
	} else if (!rc) {
		struct lfs_cid *heads;
		size_t nh;
		rc = lfs_ledger_heads(n->lg->l, &heads, &nh);
		for (size_t i = 0; !rc && i < nh && i < 16; i++) {
			char s[LFS_CID_STRLEN + 1];
			lfs_cid_to_string(s, &heads[i]);
			if (i)
				strcat(value, ",");
			strcat(value, s);
		}
		if (!rc)
			free(heads);
	}
	lfs_arena_release(&a);
	size_t len = strlen(value);
	if (rc)
		fuse_reply_err(req, rc == -ENOENT ? ENODATA : -rc);
	else if (size == 0)
		fuse_reply_xattr(req, len);
	else if (size < len)
		fuse_reply_err(req, ERANGE);
	else
		fuse_reply_buf(req, value, len);
}

static void op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
	struct lfs_fs *fs = fs_of(req);
	struct node *n = get_node(fs, ino);
	static const char names[] = XATTR_CID "\0" XATTR_HEAD;
	size_t len = n && (n->kind == K_DOC || n->kind == K_SNAPDOC)
			     ? sizeof(names)
			     : 0;
	if (size == 0)
		fuse_reply_xattr(req, len);
	else if (size < len)
		fuse_reply_err(req, ERANGE);
	else
		fuse_reply_buf(req, names, len);
}

static void op_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name,
			const char *value, size_t size, int flags)
{
	(void)name;
	(void)value;
	(void)size;
	(void)flags;
	struct lfs_fs *fs = fs_of(req);
	struct node *n = get_node(fs, ino);
	fuse_reply_err(req, !n                        ? ESTALE
			    : read_only_kind(n->kind) ? EROFS
						      : EOPNOTSUPP);
}

static void op_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
	op_setxattr(req, ino, name, NULL, 0, 0);
}

static void op_statfs(fuse_req_t req, fuse_ino_t ino)
{
	(void)ino;
	struct lfs_fs *fs = fs_of(req);
	struct statvfs sv;
	if (statvfs(fs->home->dir, &sv)) {
		fuse_reply_err(req, errno);
		return;
	}
	sv.f_namemax = LFS_FSNAME_MAX;
	fuse_reply_statfs(req, &sv);
}

/* ---- lifecycle ---- */

static void op_init(void *userdata, struct fuse_conn_info *conn)
{
	(void)userdata;
	if (conn->capable & FUSE_CAP_ATOMIC_O_TRUNC)
		conn->want |= FUSE_CAP_ATOMIC_O_TRUNC;
	/* Listing must not render every document's size. */
	conn->want &=
		~(unsigned)(FUSE_CAP_READDIRPLUS | FUSE_CAP_READDIRPLUS_AUTO);
	conn->want &= ~(unsigned)FUSE_CAP_WRITEBACK_CACHE;
}

static void op_destroy(void *userdata)
{
	lfs_fs_flush(userdata);
}

void lfs_fs_flush(struct lfs_fs *fs)
{
	flush_pending(fs, true);
	pthread_mutex_lock(&fs->lock);
	for (struct fsledger *lg = fs->ledgers; lg; lg = lg->next)
		if (lg->l)
			lfs_ledger_sync(lg->l);
	pthread_mutex_unlock(&fs->lock);
}

static const struct fuse_lowlevel_ops ops = {
	.init = op_init,
	.destroy = op_destroy,
	.lookup = op_lookup,
	.forget = op_forget,
	.forget_multi = op_forget_multi,
	.getattr = op_getattr,
	.setattr = op_setattr,
	.readlink = op_readlink,
	.mkdir = op_mkdir,
	.unlink = op_unlink,
	.rmdir = op_rmdir,
	.symlink = op_symlink,
	.rename = op_rename,
	.open = op_open,
	.read = op_read,
	.write = op_write,
	.flush = op_flush,
	.release = op_release,
	.fsync = op_fsync,
	.opendir = op_opendir,
	.readdir = op_readdir,
	.releasedir = op_releasedir,
	.statfs = op_statfs,
	.setxattr = op_setxattr,
	.getxattr = op_getxattr,
	.listxattr = op_listxattr,
	.removexattr = op_removexattr,
	.create = op_create,
};

const struct fuse_lowlevel_ops *lfs_fs_ops(void)
{
	return &ops;
}

int lfs_fs_new(struct lfs_fs **out, struct lfs_home *home)
{
	struct lfs_fs *fs = calloc(1, sizeof(*fs));
	if (!fs)
		return -ENOMEM;
	fs->home = home;
	fs->uid = getuid();
	fs->started_us = now_ms() * 1000;
	fs->gid = getgid();
	fs->nslots = 1024;
	fs->table = calloc(fs->nslots, sizeof(*fs->table));
	pthread_mutex_init(&fs->lock, NULL);
	pthread_mutex_init(&fs->render_lock, NULL);
	pthread_mutex_init(&fs->hk_lock, NULL);
	pthread_cond_init(&fs->hk_cond, NULL);
	struct node *root =
		fs->table ? node_get(fs, K_ROOT, NULL, NULL, NULL) : NULL;
	if (!root) {
		free(fs->table);
		free(fs);
		return -ENOMEM;
	}
	root->nlookup = 1;
	*out = fs;
	return 0;
}

int lfs_fs_start(struct lfs_fs *fs, struct fuse_session *se)
{
	fs->se = se;
	fs->running = 1;
	int rc = pthread_create(&fs->housekeeper, NULL, housekeeper, fs);
	if (rc)
		fs->running = 0;
	return -rc;
}

void lfs_fs_free(struct lfs_fs *fs)
{
	if (!fs)
		return;
	if (fs->running) {
		pthread_mutex_lock(&fs->hk_lock);
		fs->running = 0;
		pthread_cond_signal(&fs->hk_cond);
		pthread_mutex_unlock(&fs->hk_lock);
		pthread_join(fs->housekeeper, NULL);
	}
	flush_pending(fs, true);
	bury(fs, true);
	for (size_t i = 0; i < fs->nslots; i++)
		for (struct node *n = fs->table[i], *next; n; n = next) {
			next = n->hnext;
			if (n->wbuf) {
				lfs_buf_release(n->wbuf);
				free(n->wbuf);
			}
			free(n->name);
			free(n->id);
			free(n);
		}
	free(fs->table);
	while (fs->ledgers) {
		struct fsledger *next = fs->ledgers->next;
		ledger_free(fs->ledgers);
		fs->ledgers = next;
	}
	for (size_t i = 0; i < RENDER_SLOTS; i++) {
		free(fs->renders[i].data);
		free(fs->renders[i].id);
	}
	pthread_mutex_destroy(&fs->lock);
	pthread_mutex_destroy(&fs->render_lock);
	pthread_mutex_destroy(&fs->hk_lock);
	pthread_cond_destroy(&fs->hk_cond);
	free(fs);
}

/* ---- replication hooks ---- */

static struct lfs_ledger *hook_ledger(void *ctx, const char *name)
{
	struct lfs_fs *fs = ctx;
	pthread_mutex_lock(&fs->lock);
	struct fsledger *lg = ledger_get(fs, name, true);
	pthread_mutex_unlock(&fs->lock);
	return lg ? lg->l : NULL;
}

struct inval_ctx {
	struct lfs_fs *fs;
	struct fsledger *lg;
	fuse_ino_t dir;
};

static int inval_fn(void *ctx, const struct lfs_index_entry *ea,
		    const struct lfs_index_entry *eb)
{
	struct inval_ctx *c = ctx;
	const struct lfs_index_entry *e = eb ? eb : ea;
	char name[LFS_FSNAME_MAX + 1];
	if (lfs_fsname_from_id(name, e->id) < 0)
		return 0;
	pthread_mutex_lock(&c->fs->lock);
	fuse_ino_t ino = identity_hash(K_DOC, c->lg->name, NULL, name);
	struct node *n = node_by_ino(c->fs, ino);
	bool known = n && same_identity(n, K_DOC, c->lg, NULL, name);
	pthread_mutex_unlock(&c->fs->lock);
	if (c->dir)
		fuse_lowlevel_notify_inval_entry(c->fs->se, c->dir, name,
						 strlen(name));
	if (known)
		fuse_lowlevel_notify_inval_inode(c->fs->se, ino, 0, 0);
	return 0;
}

/*
 * Ledger lg moved from root before to after by a commit that did not come
 * through this mount (the remote store, or another process on this home):
 * feed the change log and tell the kernel exactly which names changed.
 */
static void ledger_moved(struct lfs_fs *fs, struct fsledger *lg,
			 const struct lfs_cid *before,
			 const struct lfs_cid *after, const char *source)
{
	pthread_mutex_lock(&fs->lock);
	fuse_ino_t ino = identity_hash(K_LEDGER, lg->name, NULL, lg->name);
	struct node *dir = node_by_ino(fs, ino);
	if (dir && !same_identity(dir, K_LEDGER, lg, NULL, lg->name))
		dir = NULL;
	fuse_ino_t dir_ino = dir ? dir->ino : 0;
	pthread_mutex_unlock(&fs->lock);
	struct lfs_cid *heads;
	size_t n;
	if (lfs_ledger_heads(lg->l, &heads, &n) == 0) {
		if (n)
			record_changes(lg, before, after, &heads[0]);
		free(heads);
	}
	lfs_info("ledger '%s': applied changes from %s", lg->name, source);
	if (!fs->se)
		return;
	struct inval_ctx c = {.fs = fs, .lg = lg, .dir = dir_ino};
	lfs_index_diff(lfs_ledger_index(lg->l), before, after, inval_fn, &c);
	if (dir_ino)
		fuse_lowlevel_notify_inval_inode(fs->se, dir_ino, 0, 0);
}

static void hook_changed(void *ctx, const char *name,
			 const struct lfs_cid *before,
			 const struct lfs_cid *after)
{
	struct lfs_fs *fs = ctx;
	pthread_mutex_lock(&fs->lock);
	struct fsledger *lg = ledger_get(fs, name, true);
	pthread_mutex_unlock(&fs->lock);
	if (lg && lg->l)
		ledger_moved(fs, lg, before, after, "the remote store");
}

/*
 * Pick up commits other processes on this home made (the command line,
 * another mount): each housekeeping tick, a stat per open ledger, and
 * before every commit, so a save is never based on a stale head.
 */
static bool refresh_ledger(struct lfs_fs *fs, struct fsledger *lg)
{
	struct lfs_cid before, after;
	bool changed;
	int rc = lfs_ledger_refresh(lg->l, &before, &after, &changed);
	if (rc != lg->refresh_err && rc)
		lfs_warn("ledger '%s': cannot read its heads: %s", lg->name,
			 lfs_errmsg(rc));
	lg->refresh_err = rc;
	if (!rc && changed)
		ledger_moved(fs, lg, &before, &after,
			     "another process on this machine");
	return !rc && changed;
}

static void refresh_ledgers(struct lfs_fs *fs)
{
	pthread_mutex_lock(&fs->lock);
	size_t n = 0;
	for (struct fsledger *lg = fs->ledgers; lg; lg = lg->next)
		n++;
	struct fsledger **v = calloc(n + 1, sizeof(*v));
	n = 0;
	for (struct fsledger *lg = fs->ledgers; v && lg; lg = lg->next)
		if (lg->l)
			v[n++] = lg;
	pthread_mutex_unlock(&fs->lock);
	bool any = false;
	for (size_t i = 0; i < n; i++)
		any |= refresh_ledger(fs, v[i]);
	free(v);
	if (any && fs->sync)
		lfs_sync_kick(fs->sync);
}

struct lfs_sync_hooks lfs_fs_sync_hooks(struct lfs_fs *fs)
{
	return (struct lfs_sync_hooks){
		.ledger = hook_ledger, .changed = hook_changed, .ctx = fs};
}

void lfs_fs_set_sync(struct lfs_fs *fs, struct lfs_sync *sync)
{
	fs->sync = sync;
}
