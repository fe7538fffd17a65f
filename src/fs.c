/*
 * The FUSE handlers: each decodes a request, asks the modules below
 * (fs_int.h lists them) and replies. Nothing here decides what a save, a
 * rename or an unlink means (fs_policy, fs_save) or how a file reads
 * (fs_view). Also here: open handles, the housekeeping thread and the
 * replication hooks.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "fs.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <malloc.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <sodium.h>

#include "fileio.h"
#include "fs_attr.h"
#include "fs_int.h"
#include "fs_inval.h"
#include "fs_ledger.h"
#include "fs_node.h"
#include "fs_save.h"
#include "fs_setattr.h"
#include "fs_view.h"
#include "fsname.h"
#include "log.h"
#include "membudget.h"
#include "timefmt.h"

#define UNUSED __attribute__((unused))

/* An open file or directory. */
struct lfs_handle {
	struct lfs_node *n;
	int fd;              /* scratch files, the change feed */
	struct lfs_buf data; /* read snapshot */
	bool writer;         /* a writer of a document's buffer */
	/* A document read through the page cache (fs_view.h): version doc
	 * of id, rendered into data at the first read (loaded, under
	 * fs->lock). Otherwise data is loaded at open. */
	bool cached, loaded;
	struct lfs_cid doc;
	char *id;
	struct lfs_listing list; /* directories */
	/*
	 * The kernel may send RELEASE while a READ on the same file is still
	 * being answered (when the reader was interrupted), so a released
	 * handle waits in the graveyard until no operation is using it and a
	 * few seconds have passed. Guarded by fs->lock.
	 */
	int inflight;
	bool retired;
	/* Open handles, in fs->open_handles until retired (freed at
	 * unmount when the kernel never released them). */
	struct lfs_handle *onext, **opprev;
	bool close_fd; /* retired past grave_fds_max: close when done */
	int64_t released_ms;
	struct lfs_handle *gnext;
};

/* ---- handles ---- */

static void handle_free(struct lfs_handle *h)
{
	if (h->fd >= 0)
		close(h->fd);
	lfs_buf_release(&h->data);
	lfs_listing_release(&h->list);
	free(h->id);
	free(h);
}

/* A handle goes to the kernel: it is open until handle_retire. */
static void handle_opened(struct lfs_fs *fs, struct lfs_handle *h)
{
	pthread_mutex_lock(&fs->lock);
	h->onext = fs->open_handles;
	if (h->onext)
		h->onext->opprev = &h->onext;
	h->opprev = &fs->open_handles;
	fs->open_handles = h;
	pthread_mutex_unlock(&fs->lock);
}

/* An operation starts or stops using a handle. */
static struct lfs_handle *handle_use(struct lfs_fs *fs,
				     struct fuse_file_info *fi)
{
	struct lfs_handle *h = (struct lfs_handle *)(uintptr_t)fi->fh;
	pthread_mutex_lock(&fs->lock);
	h->inflight++;
	pthread_mutex_unlock(&fs->lock);
	return h;
}

/*
 * What a retired handle gives back once no request uses it (its own
 * thread frees it): its read snapshot and listing, and past the cap its
 * host file. Under fs->lock.
 */
struct spoils {
	struct lfs_buf data;
	struct lfs_listing list;
	int fd;
};

static void strip(struct lfs_fs *fs, struct lfs_handle *h, struct spoils *out)
{
	out->data = h->data;
	out->list = h->list;
	lfs_buf_init(&h->data, h->data.max);
	memset(&h->list, 0, sizeof(h->list));
	out->fd = -1;
	if (h->fd >= 0 && h->close_fd) {
		out->fd = h->fd;
		h->fd = -1;
		fs->grave_fds--;
	}
	h->close_fd = false;
}

static void spoils_free(struct spoils *s)
{
	lfs_buf_release(&s->data);
	lfs_listing_release(&s->list);
	if (s->fd >= 0)
		close(s->fd);
}

static void handle_done(struct lfs_fs *fs, struct lfs_handle *h)
{
	struct spoils sp = {.fd = -1};
	pthread_mutex_lock(&fs->lock);
	bool last = --h->inflight == 0 && h->retired;
	if (last)
		strip(fs, h, &sp); /* retired while this request ran */
	pthread_mutex_unlock(&fs->lock);
	if (last)
		spoils_free(&sp);
}

/*
 * Retire a released handle: the housekeeper frees it a few seconds later
 * (struct lfs_handle says why). What it holds goes back at once, or when
 * the request still using it ends: a `grep -r` opens and releases
 * thousands of documents a second, and their texts must not pile up.
 * Its host file stays open meanwhile (closing the last descriptor of a
 * file renamed over or unlinked frees its inode, work the housekeeper
 * does then, not the RENAME or UNLINK that follows), but only for
 * grave_fds_max handles: past that, a copy of thousands of files would
 * hold a descriptor each against the process's limit (1,024 by default).
 */
static void handle_retire(struct lfs_fs *fs, struct lfs_handle *h)
{
	struct spoils sp = {.fd = -1};
	pthread_mutex_lock(&fs->lock);
	h->released_ms = lfs_fs_now_ms();
	h->gnext = NULL;
	*fs->graveyard_tail = h;
	fs->graveyard_tail = &h->gnext;
	h->retired = true;
	if (h->opprev) {
		*h->opprev = h->onext;
		if (h->onext)
			h->onext->opprev = h->opprev;
		h->opprev = NULL;
	}
	if (h->fd >= 0) {
		fs->grave_fds++;
		h->close_fd = fs->grave_fds > fs->grave_fds_max;
	}
	bool now = !h->inflight;
	if (now)
		strip(fs, h, &sp);
	pthread_mutex_unlock(&fs->lock);
	if (now)
		spoils_free(&sp);
}

/* Free retired handles nobody uses any more (all of them: force). Looks
 * at the old ones only: a copy of thousands of files retires thousands of
 * handles a second, and this runs under fs->lock. */
static void bury(struct lfs_fs *fs, bool force)
{
	int64_t now = lfs_fs_now_ms();
	struct lfs_handle *dead = NULL;
	pthread_mutex_lock(&fs->lock);
	struct lfs_handle **pp = &fs->graveyard;
	while (*pp) {
		struct lfs_handle *h = *pp;
		if (!force && now - h->released_ms <= 5000)
			break; /* and every later one is younger */
		if (!force && h->inflight) {
			pp = &h->gnext;
		} else {
			*pp = h->gnext;
			h->gnext = dead;
			dead = h;
			fs->grave_fds -= h->fd >= 0;
		}
	}
	if (!*pp)
		fs->graveyard_tail = pp;
	pthread_mutex_unlock(&fs->lock);
	while (dead) {
		struct lfs_handle *next = dead->gnext;
		handle_free(dead);
		dead = next;
	}
}

/* ---- the housekeeper ---- */

/* The daemon's resident bytes (/proc/self/statm), or -1. */
static int64_t resident_bytes(void)
{
	char buf[128];
	int fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = 0;
	long long size, resident;
	if (sscanf(buf, "%lld %lld", &size, &resident) != 2)
		return -1;
	return (int64_t)resident * sysconf(_SC_PAGESIZE);
}

/*
 * Give freed heap back to the system: malloc keeps what is freed below
 * the top of the heap, and a burst (a folder listing that diffs a whole
 * ledger, many files open at once) frees tens of MB that would otherwise
 * stay resident. Checked every LFS_FS_TRIM_EVERY_MS; done when the
 * resident size grew by LFS_FS_TRIM_MIN since the last time (or since its
 * lowest), so a steady mount pays one read of /proc a tick, and a
 * growing one a trim (~10 ms at 150 MB) per that much growth.
 */
static void give_back_memory(struct lfs_fs *fs)
{
#ifdef HAVE_MALLOC_TRIM
	int64_t now = lfs_fs_now_ms();
	if (now - fs->trimmed_ms < LFS_FS_TRIM_EVERY_MS)
		return;
	fs->trimmed_ms = now;
	int64_t rss = resident_bytes();
	if (rss < 0)
		return;
	if (rss < fs->trim_floor)
		fs->trim_floor = rss;
	if (rss < fs->trim_floor + (int64_t)LFS_FS_TRIM_MIN)
		return;
	int64_t start = lfs_mono_us();
	malloc_trim(0);
	int64_t after = resident_bytes();
	fs->trim_floor = after < 0 ? rss : after;
	lfs_debug("gave back %lld MB of freed heap in %lld us",
		  (long long)((rss - fs->trim_floor) >> 20),
		  (long long)(lfs_mono_us() - start));
#else
	(void)fs;
#endif
}

static void *housekeeper(void *arg)
{
	struct lfs_fs *fs = arg;
	pthread_mutex_lock(&fs->hk_lock);
	/* While sizes wait to be filled, a tick is 20 ms of filling then
	 * 20 ms of rest, so requests keep most of the time. */
	bool filling = false;
	while (fs->running) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += (filling ? 20 : 200) * 1000000;
		if (ts.tv_nsec >= 1000000000) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000;
		}
		if (!fs->hk_wake)
			pthread_cond_timedwait(&fs->hk_cond, &fs->hk_lock, &ts);
		fs->hk_wake = false;
		pthread_mutex_unlock(&fs->hk_lock);
		lfs_inval_deliver(fs);
		lfs_fsl_flush_pending(fs, false);
		bury(fs, false);
		lfs_fsl_refresh_all(fs);
		lfs_inval_deliver(fs);
		lfs_attr_save_all(fs);
		give_back_memory(fs);
		filling = lfs_fsl_fill_sizes(fs, 20000) > 0;
		pthread_mutex_lock(&fs->hk_lock);
	}
	pthread_mutex_unlock(&fs->hk_lock);
	return NULL;
}

/* ---- replies ---- */

/* Refuse an operation with err, saying so in the log. */
static void refuse(fuse_req_t req, const char *op, const char *name, int err)
{
	lfs_info("%s %s: refused: %s", op, name ? name : "", strerror(err));
	fuse_reply_err(req, err);
}

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

static struct lfs_fs *fs_of(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

static void entry_of(struct fuse_entry_param *e, struct lfs_fs *fs,
		     struct lfs_node *n, const struct stat *st, double ttl)
{
	memset(e, 0, sizeof(*e));
	e->ino = n->ino;
	e->generation = 1;
	e->attr = *st;
	e->attr_timeout = ttl;
	/* A document's name keeps its inode (a hash of the name) whatever
	 * the bytes: only this mount's requests and fs->moved end it. So
	 * does a scratch file's, which is local: nothing from elsewhere
	 * names one (a folder that a commit from elsewhere makes over one
	 * is an added name, told as a document's). Kept as long, an
	 * editor's temporary renamed over a document keeps its entry, and
	 * the next request on the name does not look it up again. */
	e->entry_timeout = (n->kind == LFS_N_DOC || n->kind == LFS_N_SCRATCH) &&
					   fs->doc_ttl > LFS_FS_ENTRY_TTL
				   ? fs->doc_ttl
				   : LFS_FS_ENTRY_TTL;
}

/* Take a kernel reference on n and answer with its entry. */
static void reply_node(fuse_req_t req, struct lfs_fs *fs, struct lfs_node *n,
		       const struct stat *st, double ttl)
{
	struct fuse_entry_param e;
	entry_of(&e, fs, n, st, ttl);
	lfs_node_lookup_ref(fs, n);
	if (fuse_reply_entry(req, &e))
		lfs_node_lookup_unref(fs, n);
}

/* Is p a directory of a ledger that names are made in (the ledger, a
 * folder, a scratch directory)? */
static bool in_ledger(const struct lfs_node *p)
{
	return p->kind == LFS_N_LEDGER || p->kind == LFS_N_FOLDER ||
	       p->kind == LFS_N_SCRATCH;
}

/* The path of name in p (lfs_node_child_path, under the lock a rename
 * takes to change p's path). */
static int path_in(struct lfs_fs *fs, struct lfs_node *p, const char *name,
		   char **out)
{
	pthread_mutex_lock(&fs->lock);
	int rc = lfs_node_child_path(out, p, name);
	pthread_mutex_unlock(&fs->lock);
	return rc;
}

/*
 * name is not in directory p of an open ledger: the kernel may keep that
 * too (an entry with no inode), so that `cp` and editors, which look a
 * name up before creating it, ask once. A document's name (and a
 * folder's) appears otherwise only by a commit from elsewhere, which
 * fs->moved tells the kernel of, added names too (fs_inval.c): it is kept
 * as long as a document's entry. Any other name for as long as a scratch
 * file's.
 */
static bool reply_absent(fuse_req_t req, struct lfs_fs *fs, struct lfs_node *p,
			 const char *name)
{
	char *path = NULL;
	char id[LFS_INDEX_ID_MAX + 1];
	if (!in_ledger(p) || !p->lg->l || path_in(fs, p, name, &path))
		return false;
	struct fuse_entry_param e = {.ino = 0};
	e.entry_timeout = LFS_FS_ENTRY_TTL;
	if (lfs_fsname_path_to_id(id, sizeof(id), path) &&
	    fs->doc_ttl > LFS_FS_ENTRY_TTL)
		e.entry_timeout = fs->doc_ttl;
	free(path);
	fuse_reply_entry(req, &e);
	return true;
}

/* Resolve name under p, stat it and answer with its entry. */
static void reply_resolved(fuse_req_t req, struct lfs_fs *fs,
			   struct lfs_node *p, const char *name)
{
	struct lfs_node *n;
	struct stat st;
	double ttl;
	/* An answer that the name is absent is kept too: the barrier is
	 * held from before the name is looked for. */
	bool held = in_ledger(p) && lfs_cache_hold(fs, p);
	int rc = lfs_node_resolve(fs, p, name, &n);
	if (!rc && lfs_view_pin_stale(fs, n)) {
		/* Open files read an older version through this inode:
		 * the name's new version gets an inode of its own, as a
		 * replaced file's name does on any file system. */
		lfs_node_unindex(fs, n);
		lfs_node_unref(fs, n);
		rc = lfs_node_resolve(fs, p, name, &n);
	}
	if (!held)
		held = !rc && lfs_cache_hold(fs, n);
	if (!rc && (rc = lfs_view_stat(fs, n, &st, &ttl)))
		lfs_node_unref(fs, n);
	if (rc == -ENOENT && reply_absent(req, fs, p, name)) {
		lfs_cache_done(fs, held);
		return;
	}
	if (rc) {
		lfs_cache_done(fs, held);
		if (rc != -ENOENT && rc != -ENOKEY)
			lfs_debug("lookup %s: %s", name, strerror(-rc));
		fuse_reply_err(req, -rc);
		return;
	}
	reply_node(req, fs, n, &st, ttl);
	lfs_cache_done(fs, held);
	lfs_node_unref(fs, n);
}

/* A scratch file made for another user (allow_other) is theirs. */
static void own_scratch(fuse_req_t req, const struct lfs_at *at)
{
	const struct fuse_ctx *c = fuse_req_ctx(req);
	if (geteuid() == 0 && c && (c->uid != 0 || c->gid != 0) &&
	    fchownat(at->dir, at->name, c->uid, c->gid, AT_SYMLINK_NOFOLLOW))
		lfs_warn("chown %s: %s", at->path, strerror(errno));
}

/* path's local name in lg's scratch directory, with the directories
 * above it made (a folder that only its documents made has no local
 * directory yet). */
static int local_at(struct lfs_at *out, struct lfs_fsl *lg, const char *path)
{
	return lfs_at_open(out, lg->scratch_fd, path, true);
}

/* ---- lookup and attributes ---- */

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct lfs_fs *fs = fs_of(req);
	struct lfs_node *p = lfs_node_by_ino(fs, parent);
	if (!p) {
		fuse_reply_err(req, ESTALE);
		return;
	}
	if (strlen(name) > LFS_FSNAME_MAX) {
		refuse(req, "lookup", name, ENAMETOOLONG);
		return;
	}
	reply_resolved(req, fs, p, name);
}

static void op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	struct lfs_fs *fs = fs_of(req);
	pthread_mutex_lock(&fs->lock);
	lfs_node_forget_locked(fs, ino, nlookup);
	pthread_mutex_unlock(&fs->lock);
	fuse_reply_none(req);
}

static void op_forget_multi(fuse_req_t req, size_t count,
			    struct fuse_forget_data *forgets)
{
	struct lfs_fs *fs = fs_of(req);
	pthread_mutex_lock(&fs->lock);
	for (size_t i = 0; i < count; i++)
		lfs_node_forget_locked(fs, forgets[i].ino, forgets[i].nlookup);
	pthread_mutex_unlock(&fs->lock);
	fuse_reply_none(req);
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino,
		       struct fuse_file_info *fi UNUSED)
{
	struct lfs_fs *fs = fs_of(req);
	struct lfs_node *n = lfs_node_by_ino(fs, ino);
	struct stat st;
	double ttl;
	bool held = n && lfs_cache_hold(fs, n);
	int rc = n ? lfs_view_stat(fs, n, &st, &ttl) : -ESTALE;
	if (rc)
		fuse_reply_err(req, -rc);
	else
		fuse_reply_attr(req, &st, ttl);
	lfs_cache_done(fs, held);
}

/* ---- directories ---- */

static void op_opendir(fuse_req_t req, fuse_ino_t ino,
		       struct fuse_file_info *fi)
{
	struct lfs_fs *fs = fs_of(req);
	struct lfs_node *n = lfs_node_by_ino(fs, ino);
	if (!n) {
		fuse_reply_err(req, ESTALE);
		return;
	}
	struct lfs_handle *h = calloc(1, sizeof(*h));
	int rc = h ? lfs_view_list(fs, n, &h->list) : -ENOMEM;
	if (rc) {
		if (h)
			lfs_listing_release(&h->list);
		free(h);
		fuse_reply_err(req, -rc);
		return;
	}
	h->n = n;
	h->fd = -1;
	fi->fh = (uintptr_t)h;
	lfs_node_ref(fs, n);
	handle_opened(fs, h);
	if (fuse_reply_open(req, fi)) {
		lfs_node_unref(fs, n);
		handle_retire(fs, h);
	}
}

static void op_readdir(fuse_req_t req, fuse_ino_t ino UNUSED, size_t size,
		       off_t off, struct fuse_file_info *fi)
{
	struct lfs_fs *fs = fs_of(req);
	struct lfs_handle *h = handle_use(fs, fi);
	char *buf = malloc(size);
	if (!buf) {
		handle_done(fs, h);
		fuse_reply_err(req, ENOMEM);
		return;
	}
	size_t used = 0;
	const struct lfs_listing *l = &h->list;
	for (size_t i = (size_t)off; i < l->n; i++) {
		struct stat st = {.st_ino = l->inos[i], .st_mode = l->modes[i]};
		size_t need =
			fuse_add_direntry(req, buf + used, size - used,
					  l->names[i], &st, (off_t)(i + 1));
		if (need > size - used)
			break;
		used += need;
	}
	fuse_reply_buf(req, buf, used);
	free(buf);
	handle_done(fs, h);
}

/*
 * The entry of name in directory p for a READDIRPLUS: what a lookup
 * would answer (made with a reference the caller drops after the reply,
 * in *out_n), or none (e->ino 0: the kernel looks the name up itself
 * when it needs it) for a name that is gone, whose inode shows a version
 * the name no longer holds (reply_resolved gives it a new node), or
 * outside a ledger's directories.
 */
static void plus_entry(struct lfs_fs *fs, struct lfs_node *p, const char *name,
		       uint64_t ino, mode_t mode, struct fuse_entry_param *e,
		       struct lfs_node **out_n)
{
	struct lfs_node *n = NULL;
	struct stat st;
	double ttl;
	memset(e, 0, sizeof(*e));
	e->attr.st_ino = ino;
	e->attr.st_mode = mode;
	*out_n = NULL;
	if (!strcmp(name, ".") || !strcmp(name, "..") ||
	    (p->kind != LFS_N_LEDGER && p->kind != LFS_N_FOLDER))
		return;
	/* Already kept by the kernel (a listing again): not sent twice. */
	char *path = NULL;
	bool kept = S_ISREG(mode) && !path_in(fs, p, name, &path) &&
		    lfs_view_attrs_kept(fs, p->lg, path);
	free(path);
	if (kept || lfs_node_resolve(fs, p, name, &n))
		return;
	if (n->kind == LFS_N_SNAPS || n->kind == LFS_N_CTLDIR ||
	    lfs_view_pin_stale(fs, n) || lfs_view_stat(fs, n, &st, &ttl)) {
		lfs_node_unref(fs, n);
		return;
	}
	entry_of(e, fs, n, &st, ttl);
	*out_n = n;
}

/*
 * A listing with each name's entry and attributes, so `ls -l` of a ledger
 * costs a request per buffer of names instead of a LOOKUP per file. The
 * barrier (fs_inval.h) is held from before the first attributes are read
 * until the reply is sent, as a lookup holds it.
 */
static void op_readdirplus(fuse_req_t req, fuse_ino_t ino UNUSED, size_t size,
			   off_t off, struct fuse_file_info *fi)
{
	struct lfs_fs *fs = fs_of(req);
	struct lfs_handle *h = handle_use(fs, fi);
	const struct lfs_listing *l = &h->list;
	/* Every entry takes at least 64 bytes of the buffer. */
	size_t max = size / 64 + 1;
	char *buf = malloc(size);
	struct lfs_node **held = calloc(max, sizeof(*held));
	if (!buf || !held) {
		free(buf);
		free(held);
		handle_done(fs, h);
		fuse_reply_err(req, ENOMEM);
		return;
	}
	bool barrier = lfs_cache_hold(fs, h->n);
	size_t used = 0, nheld = 0;
	for (size_t i = (size_t)off; i < l->n && nheld < max; i++) {
		struct fuse_entry_param e;
		size_t need = fuse_add_direntry_plus(req, NULL, 0, l->names[i],
						     NULL, 0);
		if (need > size - used)
			break;
		struct lfs_node *n;
		plus_entry(fs, h->n, l->names[i], l->inos[i], l->modes[i], &e,
			   &n);
		used += fuse_add_direntry_plus(req, buf + used, size - used,
					       l->names[i], &e, (off_t)(i + 1));
		if (n) {
			lfs_node_lookup_ref(fs, n);
			held[nheld++] = n;
		}
	}
	bool failed = fuse_reply_buf(req, buf, used) != 0;
	lfs_cache_done(fs, barrier);
	for (size_t i = 0; i < nheld; i++) {
		if (failed)
			lfs_node_lookup_unref(fs, held[i]);
		lfs_node_unref(fs, held[i]);
	}
	free(held);
	free(buf);
	handle_done(fs, h);
}

static void op_releasedir(fuse_req_t req, fuse_ino_t ino UNUSED,
			  struct fuse_file_info *fi)
{
	struct lfs_fs *fs = fs_of(req);
	struct lfs_handle *h = (struct lfs_handle *)(uintptr_t)fi->fh;
	lfs_node_unref(fs, h->n);
	handle_retire(fs, h);
	fuse_reply_err(req, 0);
}

/* ---- files ---- */

static bool req_interrupted(void *ctx)
{
	return fuse_req_interrupted(ctx);
}

/*
 * Render the version cached file h was opened on into h->data, unless a
 * reader of h did already (the version, whatever the name holds now:
 * renders of a version never change). 0 or a negative errno.
 */
static int handle_render(struct lfs_fs *fs, struct lfs_handle *h)
{
	struct lfs_buf b;
	lfs_buf_init(&b, LFS_FS_TEXT_MAX * 4);
	int rc = lfs_view_render(fs, h->n->lg, &h->doc, h->id, &b);
	if (!rc) {
		pthread_mutex_lock(&fs->lock);
		if (!h->loaded) {
			struct lfs_buf swap = h->data;
			h->data = b;
			b = swap;
			h->loaded = true;
		}
		pthread_mutex_unlock(&fs->lock);
	}
	lfs_buf_release(&b);
	return rc;
}

/*
 * A document read the first time through this inode: its text goes into
 * the page cache with the open (a store the kernel takes before the open
 * is answered), so the read that follows asks nothing: a round trip less,
 * and no atime for the next stat to ask for (the kernel forgets an
 * inode's atime when a read comes to the daemon). Small documents only:
 * a large one is read as it is asked for. The handle keeps the text for
 * reads should the kernel drop the pages. True when it dropped the
 * inode's attributes (with its pages: o->written).
 */
static bool preload(struct lfs_fs *fs, struct lfs_node *n, struct lfs_handle *h,
		    struct fuse_file_info *fi, const struct lfs_view_open *o)
{
	if (handle_render(fs, h) || h->data.len != o->size || !h->data.len)
		return false;
	/* Pages of another kind (o->written) go first, and with them the
	 * attributes (which o->attrs would have dropped anyway). */
	bool dropped = o->written && fuse_lowlevel_notify_inval_inode(
					     fs->se, n->ino, 0, 0) == 0;
	struct fuse_bufvec bv = FUSE_BUFVEC_INIT(h->data.len);
	bv.buf[0].mem = h->data.data;
	/* Stored whole, the pages are kept; else dropped at open. */
	if ((!o->written || dropped) &&
	    fuse_lowlevel_notify_store(fs->se, n->ino, 0, &bv, 0) == 0)
		fi->keep_cache = 1;
	return dropped;
}

/*
 * Open document n for reading. A committed version is read through the
 * page cache (fs_view.h): the kernel keeps the inode's pages while they
 * are of the version the name holds, and drops them when the inode is
 * bound anew, and its attributes too when the kernel may keep another
 * version's (now, before the open is answered, so the first read sees the
 * bound version's size). Anything else
 * is a snapshot read past the cache, ending where the snapshot ends
 * whatever size the kernel last saw.
 */
static int open_doc_reader(struct lfs_fs *fs, struct lfs_node *n,
			   struct fuse_file_info *fi, struct lfs_handle *h)
{
	struct lfs_view_open o;
	int rc = lfs_view_open_doc(fs, n, &h->data, &o);
	if (rc)
		return rc;
	if (!o.cached) {
		fi->direct_io = 1;
		h->loaded = true;
		return 0;
	}
	h->cached = true;
	h->doc = o.doc;
	h->id = o.id;
	fi->keep_cache = o.keep;
	/* Not when pages of another kind must go while the kernel holds
	 * this version's attributes: dropping them drops those too, and
	 * the stat they spare costs what the read does. */
	bool dropped = o.first && (!o.written || o.attrs) && fs->se &&
		       o.size <= LFS_FS_PRELOAD_MAX &&
		       preload(fs, n, h, fi, &o);
	if (o.attrs && fs->se && !dropped)
		fuse_lowlevel_notify_inval_inode(fs->se, n->ino, -1, 0);
	return 0;
}

static int open_node(struct lfs_fs *fs, struct lfs_node *n,
		     struct fuse_file_info *fi, mode_t create_mode,
		     fuse_req_t req)
{
	int acc = fi->flags & O_ACCMODE;
	bool writing = acc != O_RDONLY;
	if (writing && lfs_node_read_only(n->kind))
		return -EROFS;
	if (n->kind == LFS_N_CTL && writing)
		return -EACCES;
	struct lfs_handle *h = calloc(1, sizeof(*h));
	if (!h)
		return -ENOMEM;
	h->n = n;
	h->fd = -1;
	lfs_buf_init(&h->data, LFS_FS_TEXT_MAX * 4);
	int rc = 0;
	switch (n->kind) {
	case LFS_N_DOC:
		if (writing) {
			/* Writes go to the shared buffer, past the cache. */
			fi->direct_io = 1;
			rc = lfs_save_writer_ref(fs, n, fi->flags & O_TRUNC);
			h->writer = !rc;
			if (!rc)
				lfs_view_writer_opened(fs, n);
			break;
		}
		rc = open_doc_reader(fs, n, fi, h);
		break;
	case LFS_N_SNAPDOC: {
		struct lfs_arena a;
		lfs_arena_init(&a, 0);
		struct lfs_index_entry e;
		rc = lfs_ledger_get(n->lg->l, &n->snap->root, n->id, &e, &a,
				    NULL);
		if (!rc)
			rc = lfs_view_render(fs, n->lg, &e.cur.doc, n->id,
					     &h->data);
		lfs_arena_release(&a);
		fi->keep_cache = 1; /* immutable */
		break;
	}
	case LFS_N_CTL:
		fi->direct_io = 1;
		if (!strcmp(n->name, "changes")) {
			/* The feed is read live, so `tail -f` sees it grow;
			 * staged saves are in it once folded. */
			if (n->lg->l)
				lfs_ledger_settle(n->lg->l);
			char *p = lfs_fs_path(n->lg->state, "changes");
			h->fd = p ? open(p, O_RDONLY | O_CREAT | O_CLOEXEC,
					 0600)
				  : -1;
			rc = !p ? -ENOMEM : h->fd < 0 ? -errno : 0;
			free(p);
			break;
		}
		rc = lfs_view_ctl(fs, n, &h->data, req_interrupted, req);
		break;
	case LFS_N_SCRATCH: {
		struct lfs_at at;
		/* The kernel resolves links itself: a link here is one that
		 * replaced the file since the lookup. */
		int flags = fi->flags | O_NOFOLLOW | O_CLOEXEC;
		bool made = false;
		rc = lfs_node_at(&at, fs, n, flags & O_CREAT);
		if (!rc && (flags & O_CREAT)) {
			/* A new file gets the mode asked for (the kernel
			 * took the caller's umask off), not the daemon's
			 * umask's take on it. */
			h->fd = openat(at.dir, at.name, flags | O_EXCL,
				       create_mode);
			made = h->fd >= 0;
			if (h->fd < 0 && errno == EEXIST && !(flags & O_EXCL))
				h->fd = openat(at.dir, at.name,
					       flags & ~O_CREAT, 0);
		} else if (!rc) {
			h->fd = openat(at.dir, at.name, flags, create_mode);
		}
		if (made && fchmod(h->fd, create_mode & 07777))
			lfs_warn("chmod %s: %s", at.path, strerror(errno));
		if (made)
			own_scratch(req, &at);
		if (!rc && h->fd < 0)
			rc = -errno;
		lfs_at_close(&at);
		break;
	}
	default:
		rc = -EISDIR;
	}
	if (rc) {
		handle_free(h);
		return rc;
	}
	if (n->kind != LFS_N_DOC || !h->writer)
		lfs_node_ref(fs, n); /* a writer holds it already */
	if (n->kind == LFS_N_SCRATCH) {
		pthread_mutex_lock(&fs->lock);
		if (n->sfd < 0)
			n->sfd = fcntl(h->fd, F_DUPFD_CLOEXEC, 0);
		pthread_mutex_unlock(&fs->lock);
	}
	/* Only a document writer has anything to do at flush (its save);
	 * a scratch file's writes went to its file already and locks are
	 * the kernel's: spare the others the round trip at close. */
	if (!(n->kind == LFS_N_DOC && h->writer))
		fi->noflush = 1;
	fi->fh = (uintptr_t)h;
	handle_opened(fs, h);
	return 0;
}

/*
 * Save a writer's buffer (flush, fsync). The kernel may keep the
 * attributes the buffer had (lfs_view_stat): once saved, the name holds
 * the committed rendering or a draft, so it is told to ask again before
 * the request is answered (attributes only: no lock it holds is needed).
 */
static int save_buffer(struct lfs_fs *fs, struct lfs_node *n)
{
	pthread_mutex_lock(&fs->lock);
	bool changed = n->wbuf && n->wgen != n->committed_gen;
	pthread_mutex_unlock(&fs->lock);
	int rc = lfs_save_flush(fs, n);
	if (changed && fs->se)
		fuse_lowlevel_notify_inval_inode(fs->se, n->ino, -1, 0);
	return rc;
}

/* A file's last close (or an open the kernel never got). */
static void file_close(struct lfs_fs *fs, struct lfs_handle *h)
{
	struct lfs_node *n = h->n;
	if (h->writer) {
		save_buffer(fs, n); /* normally flush did it already */
		lfs_save_writer_unref(fs, n);
	}
	if (h->cached)
		lfs_view_close_doc(fs, n);
	lfs_node_unref(fs, n);
	handle_retire(fs, h);
}

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct lfs_fs *fs = fs_of(req);
	struct lfs_node *n = lfs_node_by_ino(fs, ino);
	int rc = n ? open_node(fs, n, fi, 0, req) : -ESTALE;
	if (rc)
		reply_status(req, "open for writing", n ? n->name : NULL, rc);
	else if (fuse_reply_open(req, fi))
		file_close(fs, (struct lfs_handle *)(uintptr_t)fi->fh);
}

static void read_handle(fuse_req_t req, struct lfs_fs *fs, struct lfs_handle *h,
			size_t size, off_t off)
{
	if (h->fd >= 0) {
		/* The change feed (a scratch file otherwise): staged saves
		 * are in it once folded. */
		if (h->n->kind == LFS_N_CTL && h->n->lg->l)
			lfs_ledger_settle(h->n->lg->l);
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
		char *copy;
		size_t n;
		if (lfs_save_read(fs, h->n, size, (size_t)off, &copy, &n))
			fuse_reply_err(req, ENOMEM);
		else
			fuse_reply_buf(req, copy, n);
		free(copy);
		return;
	}
	bool loaded = true;
	if (h->cached) {
		pthread_mutex_lock(&fs->lock);
		loaded = h->loaded;
		pthread_mutex_unlock(&fs->lock);
	}
	int rc = loaded ? 0 : handle_render(fs, h);
	if (rc) {
		fuse_reply_err(req, rc == -ENOMEM ? ENOMEM : EIO);
		return;
	}
	size_t len = h->data.len;
	size_t from = (size_t)off < len ? (size_t)off : len;
	size_t n = len - from < size ? len - from : size;
	fuse_reply_buf(req, n ? (const char *)h->data.data + from : "", n);
}

static void op_read(fuse_req_t req, fuse_ino_t ino UNUSED, size_t size,
		    off_t off, struct fuse_file_info *fi)
{
	struct lfs_fs *fs = fs_of(req);
	struct lfs_handle *h = handle_use(fs, fi);
	read_handle(req, fs, h, size, off);
	handle_done(fs, h);
}

static void write_handle(fuse_req_t req, struct lfs_fs *fs,
			 struct lfs_handle *h, const char *buf, size_t size,
			 off_t off)
{
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
	int rc = lfs_save_write(fs, h->n, buf, size,
				off < 0 ? SIZE_MAX : (size_t)off);
	if (rc)
		fuse_reply_err(req, -rc == EFBIG ? EFBIG : ENOMEM);
	else
		fuse_reply_write(req, size);
}

static void op_write(fuse_req_t req, fuse_ino_t ino UNUSED, const char *buf,
		     size_t size, off_t off, struct fuse_file_info *fi)
{
	struct lfs_fs *fs = fs_of(req);
	struct lfs_handle *h = handle_use(fs, fi);
	write_handle(req, fs, h, buf, size, off);
	handle_done(fs, h);
}

static void op_flush(fuse_req_t req, fuse_ino_t ino UNUSED,
		     struct fuse_file_info *fi)
{
	struct lfs_fs *fs = fs_of(req);
	struct lfs_handle *h = handle_use(fs, fi);
	int rc = h->writer ? save_buffer(fs, h->n) : 0;
	fuse_reply_err(req, -rc);
	handle_done(fs, h);
}

static void op_fsync(fuse_req_t req, fuse_ino_t ino UNUSED, int datasync,
		     struct fuse_file_info *fi)
{
	struct lfs_fs *fs = fs_of(req);
	struct lfs_handle *h = handle_use(fs, fi);
	int rc = 0;
	if (h->fd >= 0)
		rc = (datasync ? fdatasync(h->fd) : fsync(h->fd)) ? -errno : 0;
	else if (h->writer) {
		rc = save_buffer(fs, h->n);
		if (!rc && h->n->lg->l)
			rc = lfs_ledger_sync(h->n->lg->l);
	}
	fuse_reply_err(req, -rc);
	handle_done(fs, h);
}

static void op_release(fuse_req_t req, fuse_ino_t ino UNUSED,
		       struct fuse_file_info *fi)
{
	struct lfs_fs *fs = fs_of(req);
	file_close(fs, (struct lfs_handle *)(uintptr_t)fi->fh);
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
	struct lfs_node *p = lfs_node_by_ino(fs, parent), *n;
	if (!p) {
		fuse_reply_err(req, ESTALE);
		return;
	}
	if (!in_ledger(p)) {
		refuse(req, "create", name,
		       lfs_node_read_only(p->kind) ? EROFS : EPERM);
		return;
	}
	if (p->kind == LFS_N_LEDGER && (!strcmp(name, LFS_FS_SNAPSHOTS) ||
					!strcmp(name, LFS_FS_CONTROL))) {
		fuse_reply_err(req, EEXIST);
		return;
	}
	int rc = lfs_node_resolve(fs, p, name, &n);
	if (rc) {
		fuse_reply_err(req, -rc);
		return;
	}
	struct stat st;
	double ttl = 0;
	if (n->kind == LFS_N_DOC) {
		bool exists = lfs_view_stat_quiet(fs, n, &st) == 0;
		if (exists && (fi->flags & O_EXCL))
			rc = -EEXIST;
		/* A pending deletion (an editor's backup rename) stays
		 * pending: a valid save cancels it. */
		if (!rc)
			rc = open_node(fs, n, fi, mode, req);
		/* The new name exists through the open write buffer; marking
		 * it changed makes close save it: committed if valid, else
		 * (even empty) kept as a draft. */
		if (!rc && !exists)
			lfs_save_touch(fs, n);
	} else {
		fi->flags |= O_CREAT;
		rc = open_node(fs, n, fi, mode & 07777, req);
	}
	if (!rc)
		lfs_fsl_dir_changed(p->lg);
	bool held = lfs_cache_hold(fs, n);
	if (!rc)
		rc = lfs_view_stat(fs, n, &st, &ttl);
	if (rc) {
		lfs_cache_done(fs, held);
		fuse_reply_err(req, -rc);
		lfs_node_unref(fs, n);
		return;
	}
	struct fuse_entry_param e;
	entry_of(&e, fs, n, &st, ttl);
	lfs_node_lookup_ref(fs, n);
	fuse_reply_create(req, &e, fi);
	lfs_cache_done(fs, held);
	lfs_node_unref(fs, n);
}

/* ---- the namespace ---- */

/*
 * A folder (or a scratch directory) is a local directory under the
 * ledger's scratch directory: empty folders are not replicated; one with
 * documents in it exists wherever its documents do.
 */
static void mkdir_in(fuse_req_t req, struct lfs_fs *fs, struct lfs_node *p,
		     const char *name, mode_t mode)
{
	char *path = NULL;
	struct lfs_at local = {.dir = -1};
	struct lfs_node *n = NULL;
	struct stat st;
	int rc = 0;
	if (p->kind == LFS_N_LEDGER &&
	    (!strcmp(name, LFS_FS_SNAPSHOTS) || !strcmp(name, LFS_FS_CONTROL)))
		rc = -EEXIST;
	else if (!p->lg->l)
		rc = p->lg->err;
	if (!rc)
		rc = path_in(fs, p, name, &path);
	if (!rc)
		rc = lfs_node_resolve(fs, p, name, &n);
	if (!rc && lfs_view_stat_quiet(fs, n, &st) == 0)
		rc = -EEXIST;
	else if (!rc && n->kind == LFS_N_DOC) {
		lfs_fsl_error(fs, p->lg,
			      "mkdir %s: a name ending in .json is a "
			      "document's, not a folder's",
			      path);
		rc = -EPERM;
	}
	if (n)
		lfs_node_unref(fs, n);
	if (!rc)
		rc = local_at(&local, p->lg, path);
	if (!rc && mkdirat(local.dir, local.name, mode & 07777))
		rc = -errno;
	/* The mode asked for, not the daemon's umask's take on it. */
	if (!rc &&
	    fchmodat(local.dir, local.name, mode & 07777, AT_SYMLINK_NOFOLLOW))
		rc = -errno;
	if (!rc)
		own_scratch(req, &local);
	lfs_at_close(&local);
	free(path);
	if (rc) {
		reply_status(req, "mkdir", name, rc);
		return;
	}
	lfs_fsl_dir_changed(p->lg);
	reply_resolved(req, fs, p, name);
}

static void op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name,
		     mode_t mode)
{
	if (strlen(name) > LFS_FSNAME_MAX) {
		refuse(req, "mkdir", name, ENAMETOOLONG);
		return;
	}
	struct lfs_fs *fs = fs_of(req);
	struct lfs_node *p = lfs_node_by_ino(fs, parent);
	if (!p) {
		fuse_reply_err(req, ESTALE);
		return;
	}
	if (in_ledger(p)) {
		mkdir_in(req, fs, p, name, mode);
		return;
	}
	if (p->kind != LFS_N_ROOT) {
		refuse(req, "mkdir", name,
		       lfs_node_read_only(p->kind) ? EROFS : EPERM);
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
	reply_resolved(req, fs, p, name);
}

/* rmdir in a ledger: a folder must list nothing (its local directory
 * goes; one that only documents made is gone with them). */
static int rmdir_in(struct lfs_fs *fs, struct lfs_node *p, const char *name)
{
	struct lfs_node *n;
	if (!p->lg->l)
		return p->lg->err;
	if (p->kind == LFS_N_LEDGER &&
	    (!strcmp(name, LFS_FS_SNAPSHOTS) || !strcmp(name, LFS_FS_CONTROL)))
		return -EPERM;
	int rc = lfs_node_resolve(fs, p, name, &n);
	if (rc)
		return rc;
	if (n->kind != LFS_N_FOLDER && !lfs_node_is_subdir(fs, n)) {
		struct stat st;
		double ttl;
		rc = lfs_view_stat(fs, n, &st, &ttl);
		lfs_node_unref(fs, n);
		return rc ? rc : -ENOTDIR;
	}
	struct lfs_listing l;
	rc = lfs_view_list(fs, n, &l);
	if (!rc && l.n > 2)
		rc = -ENOTEMPTY;
	lfs_listing_release(&l);
	/* A folder that only its documents made has no local directory
	 * (ENOENT); its drafts directory is only ever empty here. */
	struct lfs_at local = {.dir = -1}, draft = {.dir = -1};
	pthread_mutex_lock(&fs->lock);
	char *path = rc ? NULL : strdup(n->name);
	pthread_mutex_unlock(&fs->lock);
	if (!rc && !path)
		rc = -ENOMEM;
	int lr = rc ? 0 : lfs_at_open(&local, p->lg->scratch_fd, path, false);
	if (!rc && !lr && unlinkat(local.dir, local.name, AT_REMOVEDIR))
		lr = -errno;
	if (lr != -ENOENT)
		rc = rc ? rc : lr;
	if (!rc && n->kind == LFS_N_FOLDER &&
	    !lfs_at_open(&draft, p->lg->drafts_fd, path, false))
		unlinkat(draft.dir, draft.name, AT_REMOVEDIR);
	lfs_at_close(&local);
	lfs_at_close(&draft);
	free(path);
	lfs_node_unref(fs, n);
	return rc;
}

static void op_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct lfs_fs *fs = fs_of(req);
	struct lfs_node *p = lfs_node_by_ino(fs, parent);
	if (p && in_ledger(p)) {
		int rc = rmdir_in(fs, p, name);
		if (!rc)
			lfs_fsl_dir_changed(p->lg);
		reply_status(req, "rmdir", name, rc);
		return;
	}
	if (p && p->kind == LFS_N_ROOT)
		lfs_warn("rmdir %s: ledgers are not deleted through the file "
			 "system",
			 name);
	fuse_reply_err(req, !p                            ? ESTALE
			    : lfs_node_read_only(p->kind) ? EROFS
							  : EPERM);
}

/* A folder keeps its local directory when its last document goes, as a
 * directory does when its last file is removed. */
static void keep_folder(struct lfs_fsl *lg, const char *path)
{
	struct lfs_at at;
	if (strchr(path, '/') && !local_at(&at, lg, path))
		lfs_at_close(&at);
}

static int unlink_in(struct lfs_fs *fs, struct lfs_node *p, const char *name)
{
	char *path;
	struct lfs_node *n;
	if (!p->lg->l)
		return p->lg->err;
	int rc = path_in(fs, p, name, &path);
	if (rc)
		return rc;
	if (p->kind != LFS_N_SCRATCH && !lfs_node_resolve(fs, p, name, &n)) {
		if (n->kind == LFS_N_FOLDER)
			rc = -EISDIR;
		lfs_node_unref(fs, n);
	}
	if (!rc)
		rc = lfs_save_unlink(fs, p->lg, path);
	if (!rc && p->kind != LFS_N_SCRATCH)
		keep_folder(p->lg, path);
	if (!rc)
		lfs_node_unname(fs, p->lg, path);
	free(path);
	return rc;
}

static void op_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct lfs_fs *fs = fs_of(req);
	struct lfs_node *p = lfs_node_by_ino(fs, parent);
	int rc;
	if (!p)
		rc = -ESTALE;
	else if (!in_ledger(p))
		rc = lfs_node_read_only(p->kind) ? -EROFS : -EPERM;
	else
		rc = unlink_in(fs, p, name);
	if (!rc)
		lfs_fsl_dir_changed(p->lg);
	reply_status(req, "unlink", name, rc);
}

/*
 * Check that a new scratch name may be made in parent: 0 and its path in
 * *path (malloc'd), or the errno (a document's name: EPERM; a read-only
 * or special directory).
 */
static int scratch_parent(struct lfs_fs *fs, struct lfs_node *p,
			  const char *name, char **path)
{
	char id[LFS_INDEX_ID_MAX + 1];
	*path = NULL;
	if (!p)
		return -ESTALE;
	if (strlen(name) > LFS_FSNAME_MAX)
		return -ENAMETOOLONG;
	if (!in_ledger(p))
		return lfs_node_read_only(p->kind) ? -EROFS : -EPERM;
	if (!p->lg->l)
		return p->lg->err;
	if (p->kind == LFS_N_LEDGER &&
	    (!strcmp(name, LFS_FS_SNAPSHOTS) || !strcmp(name, LFS_FS_CONTROL)))
		return -EEXIST;
	int rc = path_in(fs, p, name, path);
	if (!rc && p->kind != LFS_N_SCRATCH &&
	    lfs_fsname_path_to_id(id, sizeof(id), *path))
		rc = -EPERM; /* a document is a JSON file */
	if (rc) {
		free(*path);
		*path = NULL;
	}
	return rc;
}

static void op_symlink(fuse_req_t req, const char *link, fuse_ino_t parent,
		       const char *name)
{
	if (strlen(name) > LFS_FSNAME_MAX) {
		refuse(req, "symlink", name, ENAMETOOLONG);
		return;
	}
	struct lfs_fs *fs = fs_of(req);
	struct lfs_node *p = lfs_node_by_ino(fs, parent);
	char *path = NULL;
	int rc = scratch_parent(fs, p, name, &path);
	struct lfs_at local = {.dir = -1};
	if (!rc && !(rc = local_at(&local, p->lg, path)) &&
	    symlinkat(link, local.dir, local.name))
		rc = -errno;
	if (!rc)
		own_scratch(req, &local);
	lfs_at_close(&local);
	free(path);
	if (rc) {
		fuse_reply_err(req, -rc);
		return;
	}
	lfs_fsl_dir_changed(p->lg);
	reply_resolved(req, fs, p, name);
}

/* FIFOs, sockets and device nodes with scratch names are local files. */
static void op_mknod(fuse_req_t req, fuse_ino_t parent, const char *name,
		     mode_t mode, dev_t rdev)
{
	struct lfs_fs *fs = fs_of(req);
	struct lfs_node *p = lfs_node_by_ino(fs, parent);
	char *path = NULL;
	int rc = scratch_parent(fs, p, name, &path);
	struct lfs_at local = {.dir = -1};
	if (!rc && !(rc = local_at(&local, p->lg, path)) &&
	    mknodat(local.dir, local.name, mode, rdev))
		rc = -errno;
	if (!rc)
		own_scratch(req, &local);
	lfs_at_close(&local);
	free(path);
	if (rc) {
		reply_status(req, "mknod", name, rc);
		return;
	}
	lfs_fsl_dir_changed(p->lg);
	reply_resolved(req, fs, p, name);
}

/* A hard link between scratch names is a hard link of the local files. */
static void op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent,
		    const char *newname)
{
	struct lfs_fs *fs = fs_of(req);
	struct lfs_node *n = lfs_node_by_ino(fs, ino);
	struct lfs_node *p = lfs_node_by_ino(fs, newparent);
	char *path = NULL;
	int rc = scratch_parent(fs, p, newname, &path);
	if (!rc && !n)
		rc = -ESTALE;
	else if (!rc && n->kind != LFS_N_SCRATCH)
		rc = lfs_node_read_only(n->kind) ? -EROFS : -EPERM;
	else if (!rc && n->lg != p->lg)
		rc = -EXDEV;
	struct lfs_at from = {.dir = -1}, to = {.dir = -1};
	if (!rc)
		rc = lfs_node_at(&from, fs, n, false);
	if (!rc)
		rc = local_at(&to, p->lg, path);
	if (!rc && linkat(from.dir, from.name, to.dir, to.name, 0))
		rc = -errno;
	lfs_at_close(&from);
	lfs_at_close(&to);
	free(path);
	if (rc) {
		reply_status(req, "link", newname, rc);
		return;
	}
	/* The file's inode now shares it with another: the attributes the
	 * kernel keeps of it (the link count) are dropped. */
	if (fs->se)
		fuse_lowlevel_notify_inval_inode(fs->se, n->ino, -1, 0);
	lfs_fsl_dir_changed(p->lg);
	reply_resolved(req, fs, p, newname);
}

static void op_readlink(fuse_req_t req, fuse_ino_t ino)
{
	struct lfs_fs *fs = fs_of(req);
	struct lfs_node *n = lfs_node_by_ino(fs, ino);
	if (n && n->kind == LFS_N_BYTIME_LINK) {
		char target[LFS_CID_STRLEN + 4] = "../";
		lfs_cid_to_string(target + 3, &n->snap->event);
		fuse_reply_readlink(req, target);
		return;
	}
	if (!n || n->kind != LFS_N_SCRATCH) {
		fuse_reply_err(req, n ? EINVAL : ESTALE);
		return;
	}
	char buf[PATH_MAX];
	struct lfs_at at;
	int rc = lfs_node_at(&at, fs, n, false);
	ssize_t r = rc ? -1 : readlinkat(at.dir, at.name, buf, sizeof(buf) - 1);
	if (!rc && r < 0)
		rc = -errno;
	lfs_at_close(&at);
	if (rc) {
		fuse_reply_err(req, -rc);
		return;
	}
	buf[r] = '\0';
	fuse_reply_readlink(req, buf);
}

/*
 * What was renamed to `path` (with tree, a directory and all under it)
 * reads differently there (a document's text names its id; a document
 * became a scratch file or the reverse), and the kernel, which moved the
 * inodes, does not ask again by itself: tell it before the rename is
 * answered. Only the inodes' attributes: no lock the rename holds is
 * needed for that.
 */
static void forget_attrs(struct lfs_fs *fs, struct lfs_fsl *lg,
			 const char *path, bool tree)
{
	uint64_t one, *inos = &one;
	size_t n = 0;
	pthread_mutex_lock(&fs->lock);
	if (tree) {
		n = lfs_node_under_locked(fs, lg, path, &inos);
	} else {
		struct lfs_node *x =
			lfs_node_find_locked(fs, LFS_N_DOC, lg, path);
		if (!x)
			x = lfs_node_find_locked(fs, LFS_N_SCRATCH, lg, path);
		if (x) {
			one = x->ino;
			n = 1;
		}
	}
	pthread_mutex_unlock(&fs->lock);
	for (size_t i = 0; fs->se && i < n; i++)
		fuse_lowlevel_notify_inval_inode(fs->se, inos[i], -1, 0);
	if (inos != &one)
		free(inos);
}

/* rename within a ledger: of a document or scratch file (lfs_save_rename)
 * or of a directory (lfs_save_rename_dir). */
static int rename_in(struct lfs_fs *fs, struct lfs_node *p, const char *name,
		     struct lfs_node *np, const char *newname, bool noreplace)
{
	char *from = NULL, *to = NULL;
	struct lfs_node *src = NULL, *dst = NULL;
	int rc = path_in(fs, p, name, &from);
	if (!rc)
		rc = path_in(fs, np, newname, &to);
	if (!rc && p->kind == LFS_N_LEDGER &&
	    (!strcmp(name, LFS_FS_SNAPSHOTS) || !strcmp(name, LFS_FS_CONTROL)))
		rc = -EPERM;
	if (!rc && np->kind == LFS_N_LEDGER &&
	    (!strcmp(newname, LFS_FS_SNAPSHOTS) ||
	     !strcmp(newname, LFS_FS_CONTROL)))
		rc = -EPERM;
	if (!rc)
		rc = lfs_node_resolve(fs, p, name, &src);
	bool src_dir = !rc && lfs_node_is_subdir(fs, src);
	if (!rc && !lfs_node_resolve(fs, np, newname, &dst)) {
		struct stat st;
		bool dst_dir = lfs_node_is_subdir(fs, dst);
		bool exists = dst_dir || lfs_view_stat_quiet(fs, dst, &st) == 0;
		if (exists && src_dir && !dst_dir)
			rc = -ENOTDIR;
		else if (exists && !src_dir && dst_dir)
			rc = -EISDIR;
		if (exists && dst_dir && dst->kind == LFS_N_FOLDER &&
		    lfs_view_stat_quiet(fs, dst, &st) != 0)
			exists = false; /* a folder gone with its documents */
		if (!rc && exists && noreplace)
			rc = -EEXIST;
		if (!rc && exists && dst_dir && src_dir) {
			struct lfs_listing l;
			rc = lfs_view_list(fs, dst, &l);
			if (!rc && l.n > 2)
				rc = -ENOTEMPTY;
			lfs_listing_release(&l);
		}
	}
	if (!rc && src_dir)
		rc = lfs_save_rename_dir(fs, p->lg, from, to,
					 src->kind == LFS_N_FOLDER);
	else if (!rc)
		rc = lfs_save_rename(fs, p->lg, from, to, noreplace);
	if (!rc)
		forget_attrs(fs, p->lg, to, src_dir);
	if (!rc && p->kind != LFS_N_SCRATCH)
		keep_folder(p->lg, from);
	if (src)
		lfs_node_unref(fs, src);
	if (dst)
		lfs_node_unref(fs, dst);
	free(from);
	free(to);
	return rc;
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
	struct lfs_node *p = lfs_node_by_ino(fs, parent);
	struct lfs_node *np = lfs_node_by_ino(fs, newparent);
	int rc = 0;
	if (!p || !np)
		rc = -ESTALE;
	else if (lfs_node_read_only(p->kind) || lfs_node_read_only(np->kind))
		rc = -EROFS;
	else if (!in_ledger(p) || !in_ledger(np))
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
	rc = rename_in(fs, p, name, np, newname, flags & RENAME_NOREPLACE);
	if (!rc)
		lfs_fsl_dir_changed(p->lg);
	reply_status(req, "rename", name, rc);
}

/* ---- attributes, xattrs, statfs ---- */

/* FUSE's setattr flags as fs_setattr.h's. */
static unsigned setattr_flags(int to_set)
{
	static const struct {
		int fuse;
		unsigned lfs;
	} map[] = {{FUSE_SET_ATTR_SIZE, LFS_SET_SIZE},
		   {FUSE_SET_ATTR_MODE, LFS_SET_MODE},
		   {FUSE_SET_ATTR_UID, LFS_SET_UID},
		   {FUSE_SET_ATTR_GID, LFS_SET_GID},
		   {FUSE_SET_ATTR_ATIME, LFS_SET_ATIME},
		   {FUSE_SET_ATTR_MTIME, LFS_SET_MTIME},
		   {FUSE_SET_ATTR_ATIME_NOW, LFS_SET_ATIME_NOW},
		   {FUSE_SET_ATTR_MTIME_NOW, LFS_SET_MTIME_NOW}};
	unsigned set = 0;
	for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
		if (to_set & map[i].fuse)
			set |= map[i].lfs;
	return set;
}

static void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr,
		       int to_set, struct fuse_file_info *fi)
{
	struct lfs_fs *fs = fs_of(req);
	struct lfs_node *n = lfs_node_by_ino(fs, ino);
	struct lfs_handle *h =
		fi ? (struct lfs_handle *)(uintptr_t)fi->fh : NULL;
	int rc = n ? lfs_setattr(fs, n, attr, setattr_flags(to_set),
				 h && h->writer)
		   : -ESTALE;
	struct stat st;
	double ttl;
	bool held = !rc && lfs_cache_hold(fs, n);
	if (!rc)
		rc = lfs_view_stat(fs, n, &st, &ttl);
	if (rc)
		reply_status(req, "setattr", n ? n->name : NULL, rc);
	else
		fuse_reply_attr(req, &st, ttl);
	lfs_cache_done(fs, held);
}

#define XATTR_CID  "user.ledgerfs.cid"
#define XATTR_HEAD "user.ledgerfs.head"

static void op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name,
			size_t size)
{
	struct lfs_fs *fs = fs_of(req);
	struct lfs_node *n = lfs_node_by_ino(fs, ino);
	/* Only user.* names exist here: ls -l, cp -a and rsync -X learn
	 * from EOPNOTSUPP on the first file that ACLs and security labels
	 * are not kept, instead of asking for every file. */
	if (n && strncmp(name, "user.", 5)) {
		fuse_reply_err(req, EOPNOTSUPP);
		return;
	}
	if (!n || (n->kind != LFS_N_DOC && n->kind != LFS_N_SNAPDOC) ||
	    (strcmp(name, XATTR_CID) && strcmp(name, XATTR_HEAD))) {
		fuse_reply_err(req, n ? ENODATA : ESTALE);
		return;
	}
	struct lfs_arena a;
	lfs_arena_init(&a, 0);
	struct lfs_index_entry e;
	const struct lfs_cid *root =
		n->kind == LFS_N_SNAPDOC ? &n->snap->root : NULL;
	int rc = n->lg->l ? lfs_ledger_get(n->lg->l, root, n->id, &e, &a, NULL)
			  : n->lg->err;
	char value[(LFS_CID_STRLEN + 1) * 16] = "";
	if (!rc && !strcmp(name, XATTR_CID)) {
		lfs_cid_to_string(value, &e.cur.doc);
	} else if (!rc && n->kind == LFS_N_SNAPDOC) {
		lfs_cid_to_string(value, &n->snap->event);
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
	struct lfs_node *n = lfs_node_by_ino(fs, ino);
	static const char names[] = XATTR_CID "\0" XATTR_HEAD;
	size_t len = n && (n->kind == LFS_N_DOC || n->kind == LFS_N_SNAPDOC)
			     ? sizeof(names)
			     : 0;
	if (size == 0)
		fuse_reply_xattr(req, len);
	else if (size < len)
		fuse_reply_err(req, ERANGE);
	else
		fuse_reply_buf(req, names, len);
}

static void op_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name UNUSED,
			const char *value UNUSED, size_t size UNUSED,
			int flags UNUSED)
{
	struct lfs_fs *fs = fs_of(req);
	struct lfs_node *n = lfs_node_by_ino(fs, ino);
	fuse_reply_err(req, !n                            ? ESTALE
			    : lfs_node_read_only(n->kind) ? EROFS
							  : EOPNOTSUPP);
}

static void op_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
	op_setxattr(req, ino, name, NULL, 0, 0);
}

static void op_statfs(fuse_req_t req, fuse_ino_t ino UNUSED)
{
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

static void op_init(void *userdata UNUSED, struct fuse_conn_info *conn)
{
	if (conn->capable & FUSE_CAP_ATOMIC_O_TRUNC)
		conn->want |= FUSE_CAP_ATOMIC_O_TRUNC;
	/* Listings carry each name's attributes (op_readdirplus): a
	 * document's size is known without rendering it (fs_render.h).
	 * "Auto": the kernel asks for them in a listing's first buffer and
	 * in the next ones only when names were looked up in between, as
	 * `ls -l` does (it stats each buffer's names before reading on), so
	 * a plain listing (or one whose attributes the kernel holds) costs
	 * what it did without them. */
	if (conn->capable & FUSE_CAP_READDIRPLUS)
		conn->want |= FUSE_CAP_READDIRPLUS;
	if (conn->capable & FUSE_CAP_READDIRPLUS_AUTO)
		conn->want |= FUSE_CAP_READDIRPLUS_AUTO;
	conn->want &= ~(unsigned)FUSE_CAP_WRITEBACK_CACHE;
#ifdef FUSE_CAP_DIRECT_IO_ALLOW_MMAP
	/* Committed documents are read through the page cache and map
	 * like any file; drafts and writers' files are direct_io, which
	 * libfuse >= 3.16 lets be mapped shared too. */
	if (conn->capable & FUSE_CAP_DIRECT_IO_ALLOW_MMAP)
		conn->want |= FUSE_CAP_DIRECT_IO_ALLOW_MMAP;
#endif
}

static void op_destroy(void *userdata)
{
	lfs_fs_flush(userdata);
}

void lfs_fs_flush(struct lfs_fs *fs)
{
	lfs_fsl_flush_pending(fs, true);
	lfs_fsl_sync_all(fs);
	lfs_attr_save_all(fs);
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
	.mknod = op_mknod,
	.link = op_link,
	.rename = op_rename,
	.open = op_open,
	.read = op_read,
	.write = op_write,
	.flush = op_flush,
	.release = op_release,
	.fsync = op_fsync,
	.opendir = op_opendir,
	.readdir = op_readdir,
	.readdirplus = op_readdirplus,
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
	fs->graveyard_tail = &fs->graveyard;
	/* Retired handles keep a quarter of the descriptors at most. */
	struct rlimit r;
	fs->grave_fds_max = LFS_FS_GRAVE_FDS;
	if (!getrlimit(RLIMIT_NOFILE, &r) && r.rlim_cur / 4 < LFS_FS_GRAVE_FDS)
		fs->grave_fds_max = r.rlim_cur / 4;
	fs->home = home;
	fs->uid = getuid();
	fs->started_us = lfs_fs_now_ms() * 1000;
	fs->gid = getgid();
	fs->umask = 022;
	fs->doc_ttl = LFS_FS_DOC_TTL;
	fs->changes_max = LFS_FS_CHANGES_MAX;
	randombytes_buf(fs->vtag_key, sizeof(fs->vtag_key));
	fs->moved = lfs_inval_moved;
	pthread_mutex_init(&fs->lock, NULL);
	pthread_mutex_init(&fs->hk_lock, NULL);
	pthread_cond_init(&fs->hk_cond, NULL);
	/* The barrier must not wait behind a stream of lookups. */
	pthread_rwlockattr_t ra;
	pthread_rwlockattr_init(&ra);
	pthread_rwlockattr_setkind_np(
		&ra, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	pthread_rwlock_init(&fs->cache_lock, &ra);
	pthread_rwlockattr_destroy(&ra);
	if (lfs_membudget_new(&fs->budget, LFS_FS_CACHE_MAX) ||
	    lfs_render_cache_new(&fs->cache) || lfs_node_table_init(fs)) {
		lfs_fs_free(fs);
		return -ENOMEM;
	}
	lfs_render_cache_share(fs->cache, fs->budget);
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
	lfs_fsl_flush_pending(fs, true);
	bury(fs, true);
	/* Files still open when the session ended (a SIGTERM, a lazy
	 * unmount): the kernel will never release them. */
	while (fs->open_handles) {
		struct lfs_handle *h = fs->open_handles;
		fs->open_handles = h->onext;
		handle_free(h);
	}
	lfs_attr_save_all(fs);
	lfs_attr_free_all(fs);
	lfs_node_table_release(fs);
	lfs_fsl_free_all(fs);
	lfs_render_cache_free(fs->cache);
	lfs_membudget_free(fs->budget); /* every cache has left it */
	lfs_inval_free_all(fs);
	pthread_rwlock_destroy(&fs->cache_lock);
	pthread_mutex_destroy(&fs->lock);
	pthread_mutex_destroy(&fs->hk_lock);
	pthread_cond_destroy(&fs->hk_cond);
	free(fs);
}

/* ---- replication hooks ---- */

static struct lfs_ledger *hook_ledger(void *ctx, const char *name)
{
	struct lfs_fsl *lg = lfs_fsl_get(ctx, name, true);
	return lg ? lg->l : NULL;
}

static void hook_changed(void *ctx, const char *name,
			 const struct lfs_cid *before,
			 const struct lfs_cid *after)
{
	struct lfs_fs *fs = ctx;
	struct lfs_fsl *lg = lfs_fsl_get(fs, name, true);
	if (lg && lg->l)
		lfs_fsl_moved(fs, lg, before, after, "the remote store");
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
