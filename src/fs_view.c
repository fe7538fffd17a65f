#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "fs_view.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

#include <jansson.h>
#include <sodium.h>

#include "dagjson.h"
#include "fs_render.h"
#include "fs_attr.h"
#include "fs_policy.h"
#include "log.h"
#include "fsname.h"
#include "timefmt.h"

static const char *ctl_files[] = {"status",  "errors",    "heads",
				  "changes", "conflicts", "wait"};
#define NCTL (sizeof(ctl_files) / sizeof(ctl_files[0]))

/* ---- rendering ---- */

int lfs_view_render(struct lfs_fs *fs, struct lfs_fsl *lg,
		    const struct lfs_cid *doc, const char *id,
		    struct lfs_buf *out)
{
	int rc = lfs_render_cache_get(fs->cache, doc, id, out);
	if (rc)
		return rc < 0 ? rc : 0;
	struct lfs_buf b;
	lfs_buf_init(&b, LFS_FS_TEXT_MAX * 4);
	rc = lfs_render_doc(lg->l, doc, id, &b);
	/* Every render checks the table, whose lengths the kernel trusts. */
	if (!rc && lg->sizes && lfs_render_sizes_put(lg->sizes, doc, id, b.len))
		lfs_warn("ledger '%s': the size table had a wrong length for "
			 "a version of '%s': corrected",
			 lg->name, id);
	if (!rc)
		rc = lfs_buf_append(out, b.data, b.len);
	if (!rc) {
		size_t len;
		uint8_t *data = lfs_buf_steal(&b, &len);
		if (data)
			lfs_render_cache_put(fs->cache, doc, id, data, len);
	}
	lfs_buf_release(&b);
	return rc;
}

int lfs_view_read_file(struct lfs_buf *out, const char *path, struct stat *st)
{
	return lfs_view_read_file_at(out, AT_FDCWD, path, st);
}

int lfs_view_read_file_at(struct lfs_buf *out, int dir, const char *name,
			  struct stat *st)
{
	/* Never through a link, never blocking on a FIFO: only a regular
	 * file's bytes can become a document. */
	int fd = openat(dir, name,
			O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
	if (fd < 0)
		return errno == ELOOP ? -EPERM : -errno;
	int rc = fstat(fd, st) ? -errno : 0;
	if (!rc && !S_ISREG(st->st_mode))
		rc = -EPERM;
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

/* ---- document content ---- */

/* A draft's length without reading it: lfs_view_read_file's checks. A
 * name at the top is looked at in the open drafts directory (one name
 * for the kernel to walk, not the home's whole path); one in a folder
 * through lfs_walk_at, never following a link. */
static int stat_draft(struct lfs_fsl *lg, const char *name, struct stat *st)
{
	int rc = 0;
	if (lg->drafts_fd < 0 || lfs_fsl_no_drafts(lg))
		rc = -ENOENT;
	else if (!strchr(name, '/'))
		rc = fstatat(lg->drafts_fd, name, st, AT_SYMLINK_NOFOLLOW)
			     ? -errno
			     : 0;
	else
		rc = lfs_lstat_at(lg->drafts_fd, name, st);
	if (rc)
		return rc == -ENOTDIR ? -ENOENT : rc;
	if (!S_ISREG(st->st_mode))
		return -EPERM;
	return (size_t)st->st_size > LFS_FS_TEXT_MAX ? -EFBIG : 0;
}

/* A draft's bytes, appended to out. */
static int read_draft(struct lfs_buf *out, struct lfs_fsl *lg, const char *name,
		      struct stat *st)
{
	struct lfs_at at;
	bool none = lg->drafts_fd < 0 || lfs_fsl_no_drafts(lg);
	int rc = none ? -ENOENT : lfs_at_open(&at, lg->drafts_fd, name, false);
	if (!rc)
		rc = lfs_view_read_file_at(out, at.dir, at.name, st);
	if (!none)
		lfs_at_close(&at);
	return rc == -ENOTDIR ? -ENOENT : rc;
}

/* The length of version ds->entry of id when the ledger's size table
 * knows it (every version rendered or committed on this home). */
static bool known_size(struct lfs_fsl *lg, const char *id,
		       const struct lfs_docstate *ds, size_t *size)
{
	return lg->sizes &&
	       lfs_render_sizes_get(lg->sizes, &ds->entry.cur.doc, id, size);
}

/* The tag of version doc of id (struct lfs_vtag). */
static struct lfs_vtag vtag(const struct lfs_fs *fs, const struct lfs_cid *doc,
			    const char *id)
{
	uint8_t in[LFS_CID_BYTES + LFS_INDEX_ID_MAX];
	size_t idlen = strnlen(id, LFS_INDEX_ID_MAX);
	lfs_cid_to_bytes(in, doc);
	memcpy(in + LFS_CID_BYTES, id, idlen);
	struct lfs_vtag t;
	_Static_assert(sizeof(t.b) == crypto_shorthash_siphashx24_BYTES &&
			       sizeof(fs->vtag_key) ==
				       crypto_shorthash_siphashx24_KEYBYTES,
		       "a tag is one 128-bit SipHash");
	crypto_shorthash_siphashx24(t.b, in, LFS_CID_BYTES + idlen,
				    fs->vtag_key);
	return t;
}

static bool vtag_equal(const struct lfs_vtag *a, const struct lfs_vtag *b)
{
	return !memcmp(a->b, b->b, sizeof(a->b));
}

/* Whether tag t is version doc of id's. */
static bool vtag_is(const struct lfs_fs *fs, const struct lfs_vtag *t,
		    const struct lfs_cid *doc, const char *id)
{
	struct lfs_vtag now = vtag(fs, doc, id);
	return vtag_equal(t, &now);
}

static uint64_t id_hash(const char *id)
{
	uint64_t h = 0xcbf29ce484222325ull;
	for (const char *p = id; *p; p++)
		h = (h ^ (uint8_t)*p) * 0x100000001b3ull;
	return h;
}

/*
 * The committed version of n found at ledger root `root` when the node
 * remembers it (its id unchanged since): the index is a function of the
 * root, so while the ledger has not moved a stat, a lookup or an open
 * needs no index lookup and no size lookup.
 */
static bool bound_entry(struct lfs_fs *fs, struct lfs_node *n,
			const struct lfs_cid *root, struct lfs_docstate *ds,
			size_t *size)
{
	pthread_mutex_lock(&fs->lock);
	bool hit = n->ent_bound && lfs_cid_equal(&n->ent_root, root) &&
		   n->ent_idhash == id_hash(n->id);
	if (hit) {
		ds->entry.id = "";
		ds->entry.cur.doc = n->ent_doc;
		ds->entry.cur.t = n->ent_t;
		ds->entry.cur.writer = "";
		*size = n->ent_size;
	}
	pthread_mutex_unlock(&fs->lock);
	if (hit) {
		ds->has_entry = ds->exists = true;
		ds->mtime_us = ds->entry.cur.t;
	}
	return hit;
}

static void bind_entry(struct lfs_fs *fs, struct lfs_node *n, const char *id,
		       const struct lfs_cid *root,
		       const struct lfs_docstate *ds, size_t size)
{
	pthread_mutex_lock(&fs->lock);
	if (n->id == id) { /* not renamed meanwhile */
		n->ent_bound = true;
		n->ent_root = *root;
		n->ent_idhash = id_hash(id);
		n->ent_doc = ds->entry.cur.doc;
		n->ent_t = ds->entry.cur.t;
		n->ent_size = size;
	}
	pthread_mutex_unlock(&fs->lock);
}

/*
 * What document n holds now (lfs_view_doc): its bytes appended to out
 * and their length in *size; with out NULL the length only, rendering a
 * committed version only the first time its length is asked.
 */
static int doc_state(struct lfs_fs *fs, struct lfs_node *n, struct lfs_buf *out,
		     size_t *size, struct lfs_docstate *ds, struct lfs_arena *a)
{
	struct lfs_fsl *lg = n->lg;
	memset(ds, 0, sizeof(*ds));
	pthread_mutex_lock(&fs->lock);
	/* A writer's bytes, until they are committed: once flush committed
	 * them (the handle may live on until release), readers get the
	 * document as committed, not the raw bytes that were written. */
	if (n->wbuf && (n->wgen != n->committed_gen || n->invalid)) {
		*size = n->wbuf->len;
		int rc = out ? lfs_buf_append(out, n->wbuf->data, n->wbuf->len)
			     : 0;
		pthread_mutex_unlock(&fs->lock);
		ds->exists = true;
		ds->draft = true;
		ds->writing = !n->invalid;
		ds->mtime_us = lfs_fs_now_ms() * 1000;
		return rc;
	}
	pthread_mutex_unlock(&fs->lock);
	bool hidden = lfs_fsl_pending_has(fs, lg, n->id);

	struct stat st;
	size_t before = out ? out->len : 0;
	int rc = out ? read_draft(out, lg, n->name, &st)
		     : stat_draft(lg, n->name, &st);
	if (rc == 0) {
		*size = out ? out->len - before : (size_t)st.st_size;
		ds->exists = ds->draft = true;
		ds->mtime_us = (int64_t)st.st_mtim.tv_sec * 1000000 +
			       st.st_mtim.tv_nsec / 1000;
		return 0;
	}
	if (rc != -ENOENT)
		return rc;
	if (hidden || !lg->l)
		return lg->l ? -ENOENT : lg->err;
	const char *id = n->id;
	struct lfs_cid root;
	lfs_ledger_root_for(lg->l, id, &root);
	if (!out && bound_entry(fs, n, &root, ds, size))
		return 0;
	rc = lfs_ledger_get(lg->l, &root, id, &ds->entry, a, NULL);
	if (rc)
		return rc;
	ds->has_entry = true;
	ds->exists = true;
	ds->mtime_us = ds->entry.cur.t;
	if (!out && known_size(lg, id, ds, size)) {
		bind_entry(fs, n, id, &root, ds, *size);
		return 0;
	}
	struct lfs_buf tmp;
	lfs_buf_init(&tmp, LFS_FS_TEXT_MAX * 4);
	struct lfs_buf *b = out ? out : &tmp;
	before = b->len;
	rc = lfs_view_render(fs, lg, &ds->entry.cur.doc, id, b);
	if (!rc) {
		*size = b->len - before;
		bind_entry(fs, n, id, &root, ds, *size);
	}
	lfs_buf_release(&tmp);
	return rc;
}

int lfs_view_doc(struct lfs_fs *fs, struct lfs_node *n, struct lfs_buf *out,
		 struct lfs_docstate *ds, struct lfs_arena *a)
{
	size_t size;
	return doc_state(fs, n, out, &size, ds, a);
}

int lfs_view_name(struct lfs_fs *fs, struct lfs_fsl *lg, const char *name,
		  struct lfs_buf *out, bool *is_doc)
{
	struct lfs_node *n;
	struct lfs_node tmp;
	char id[LFS_INDEX_ID_MAX + 1];
	*is_doc = lfs_fsname_path_to_id(id, sizeof(id), name);
	if (!*is_doc) {
		struct lfs_at at;
		struct stat st;
		int rc = lfs_at_open(&at, lg->scratch_fd, name, false);
		if (!rc)
			rc = lfs_view_read_file_at(out, at.dir, at.name, &st);
		lfs_at_close(&at);
		return rc;
	}
	/* Use the live node if one exists (it may hold a write buffer). */
	pthread_mutex_lock(&fs->lock);
	n = lfs_node_find_locked(fs, LFS_N_DOC, lg, name);
	if (!n) {
		memset(&tmp, 0, sizeof(tmp));
		tmp.kind = LFS_N_DOC;
		tmp.lg = lg;
		tmp.name = (char *)name;
		tmp.id = id;
		n = &tmp;
	}
	pthread_mutex_unlock(&fs->lock);
	struct lfs_docstate ds;
	struct lfs_arena a;
	lfs_arena_init(&a, 0);
	int rc = lfs_view_doc(fs, n, out, &ds, &a);
	lfs_arena_release(&a);
	return rc;
}

/* ---- reading through the page cache ---- */

/* Is n's binding to the kernel's pages held (files read it cached and no
 * writer came since)? Then its inode shows the bound version, whatever
 * the name holds now. Caller holds fs->lock. */
static bool pinned_locked(const struct lfs_node *n)
{
	return n->pc_bound && n->pc_open > 0 && !n->pc_written &&
	       n->nwriters == 0;
}

int lfs_view_open_doc(struct lfs_fs *fs, struct lfs_node *n,
		      struct lfs_buf *out, struct lfs_view_open *o)
{
	memset(o, 0, sizeof(*o));
	struct lfs_docstate ds;
	struct lfs_arena a;
	lfs_arena_init(&a, 0);
	size_t size = 0;
	int rc = doc_state(fs, n, NULL, &size, &ds, &a);
	if (!rc && ds.has_entry && !ds.draft) {
		struct lfs_cid doc = ds.entry.cur.doc;
		pthread_mutex_lock(&fs->lock);
		struct lfs_vtag tag = vtag(fs, &doc, n->id);
		bool same = n->pc_bound && vtag_equal(&n->pc_tag, &tag);
		char *id = strdup(n->id);
		if (id && n->nwriters == 0 && (same || n->pc_open == 0)) {
			if (!same || n->pc_written) {
				o->first = !n->pc_bound;
				o->written = n->pc_written;
				n->pc_bound = true;
				n->pc_tag = tag;
				n->pc_size = size;
				n->pc_mtime_us = ds.mtime_us;
				n->pc_written = false;
				o->fresh = true;
				o->attrs = !n->attr_valid ||
					   !vtag_equal(&n->attr_tag, &tag);
			}
			o->size = size;
			n->pc_open++;
			o->cached = true;
			o->keep = !o->fresh;
			o->doc = doc;
			o->id = id;
			id = NULL;
		}
		pthread_mutex_unlock(&fs->lock);
		free(id);
	}
	lfs_arena_release(&a);
	if (rc || o->cached)
		return rc;
	/* A draft, a write buffer, or a version the kernel cannot cache
	 * beside the one open files read: a snapshot read past the cache. */
	lfs_arena_init(&a, 0);
	rc = lfs_view_doc(fs, n, out, &ds, &a);
	lfs_arena_release(&a);
	return rc;
}

void lfs_view_close_doc(struct lfs_fs *fs, struct lfs_node *n)
{
	pthread_mutex_lock(&fs->lock);
	if (n->pc_open > 0)
		n->pc_open--;
	pthread_mutex_unlock(&fs->lock);
}

void lfs_view_writer_opened(struct lfs_fs *fs, struct lfs_node *n)
{
	pthread_mutex_lock(&fs->lock);
	n->pc_written = true;
	n->attr_valid = false; /* writes change the kernel's size */
	pthread_mutex_unlock(&fs->lock);
}

bool lfs_view_pin_stale(struct lfs_fs *fs, struct lfs_node *n)
{
	if (n->kind != LFS_N_DOC)
		return false;
	pthread_mutex_lock(&fs->lock);
	bool pinned = pinned_locked(n);
	struct lfs_vtag tag = n->pc_tag;
	pthread_mutex_unlock(&fs->lock);
	if (!pinned)
		return false;
	struct lfs_docstate ds;
	struct lfs_arena a;
	lfs_arena_init(&a, 0);
	size_t size;
	int rc = doc_state(fs, n, NULL, &size, &ds, &a);
	lfs_arena_release(&a);
	pthread_mutex_lock(&fs->lock);
	bool stale = pinned_locked(n) &&
		     (rc || !ds.has_entry || ds.draft ||
		      !vtag_is(fs, &tag, &ds.entry.cur.doc, n->id));
	pthread_mutex_unlock(&fs->lock);
	return stale;
}

/* ---- attributes ---- */

bool lfs_view_attrs_kept(struct lfs_fs *fs, struct lfs_fsl *lg,
			 const char *path)
{
	pthread_mutex_lock(&fs->lock);
	struct lfs_node *n = lfs_node_find_locked(fs, LFS_N_DOC, lg, path);
	/* A second's margin: the kernel's clock started a bit later. */
	bool kept = n && n->nlookup > 0 && n->attr_valid &&
		    lfs_mono_ms() + 1000 < n->attr_until_ms;
	pthread_mutex_unlock(&fs->lock);
	return kept;
}

static void fill_time(struct stat *st, int64_t t_us)
{
	st->st_mtim.tv_sec = (time_t)(t_us / 1000000);
	st->st_mtim.tv_nsec = (long)(t_us % 1000000) * 1000;
	st->st_ctim = st->st_atim = st->st_mtim;
}

static void dir_stat(struct lfs_fs *fs, struct lfs_node *n, struct stat *st,
		     mode_t mode)
{
	memset(st, 0, sizeof(*st));
	st->st_ino = n->ino;
	st->st_mode = S_IFDIR | (mode & ~fs->umask);
	st->st_nlink = 2;
	st->st_uid = fs->uid;
	st->st_gid = fs->gid;
	st->st_blksize = 4096;
	fill_time(st, fs->started_us);
}

static void file_stat(struct lfs_fs *fs, struct lfs_node *n, struct stat *st,
		      mode_t mode, size_t size)
{
	memset(st, 0, sizeof(*st));
	st->st_ino = n->ino;
	st->st_mode = S_IFREG | (mode & ~fs->umask);
	st->st_nlink = 1;
	st->st_uid = fs->uid;
	st->st_gid = fs->gid;
	st->st_size = (off_t)size;
	st->st_blksize = 4096;
	st->st_blocks = (blkcnt_t)((size + 511) / 512);
}

/* What the user set on name: mode, owner, group. */
static int apply_attr(struct lfs_fs *fs, struct lfs_fsl *lg, const char *name,
		      struct stat *st, struct lfs_attr *a)
{
	int rc = lfs_attr_get(fs, lg, name, a);
	if (rc)
		return rc;
	if (a->set & LFS_ATTR_MODE)
		st->st_mode = (st->st_mode & S_IFMT) | a->mode;
	if (a->set & LFS_ATTR_UID)
		st->st_uid = a->uid;
	if (a->set & LFS_ATTR_GID)
		st->st_gid = a->gid;
	return 0;
}

/* A ledger directory: its mtime is when a name was last added or removed,
 * unless the user set one since. */
static int ledger_stat(struct lfs_fs *fs, struct lfs_node *n, struct stat *st,
		       bool own)
{
	struct lfs_attr a = {0};
	dir_stat(fs, n, st, 0755);
	int rc = own ? apply_attr(fs, n->lg, "", st, &a) : 0;
	int64_t changed = lfs_fsl_dir_time(n->lg);
	if (!rc && (a.set & LFS_ATTR_MTIME) && a.set_us >= changed)
		fill_time(st, a.mtime_us);
	else if (!rc && changed)
		fill_time(st, changed);
	return rc;
}

/* Does folder n still exist: documents under it (or drafts), or its
 * local directory? 0 or -ENOENT. */
static int folder_exists(struct lfs_fs *fs, struct lfs_node *n)
{
	struct lfs_fsl *lg = n->lg;
	pthread_mutex_lock(&fs->lock);
	char *path = strdup(n->name);
	pthread_mutex_unlock(&fs->lock);
	if (!path)
		return -ENOMEM;
	bool has;
	int rc = lfs_node_folder_has(&has, lg, path);
	free(path);
	if (rc)
		return rc == -EBADMSG ? -EIO : rc;
	return has ? 0 : -ENOENT;
}

/*
 * A scratch file unlinked while open (its node found by no name, or its
 * name found nothing): its open descriptor answers, with 0 links. 1 when
 * its name is still its own; -ENOENT when nothing is open.
 */
static int unlinked_scratch_stat(struct lfs_fs *fs, struct lfs_node *n,
				 struct stat *st, bool name_gone)
{
	pthread_mutex_lock(&fs->lock);
	int rc = n->indexed && !name_gone ? 1
		 : n->sfd < 0             ? -ENOENT
		 : fstat(n->sfd, st)      ? -errno
					  : 0;
	pthread_mutex_unlock(&fs->lock);
	if (!rc)
		st->st_ino = lfs_node_local_ino(st);
	return rc;
}

static int view_stat(struct lfs_fs *fs, struct lfs_node *n, struct stat *st,
		     double *ttl, bool told);

int lfs_view_stat(struct lfs_fs *fs, struct lfs_node *n, struct stat *st,
		  double *ttl)
{
	return view_stat(fs, n, st, ttl, true);
}

int lfs_view_stat_quiet(struct lfs_fs *fs, struct lfs_node *n, struct stat *st)
{
	double ttl;
	return view_stat(fs, n, st, &ttl, false);
}

static int view_stat(struct lfs_fs *fs, struct lfs_node *n, struct stat *st,
		     double *ttl, bool told)
{
	int rc = 0;
	*ttl = LFS_FS_ENTRY_TTL;
	struct lfs_arena a;
	lfs_arena_init(&a, 0);
	struct lfs_buf b;
	lfs_buf_init(&b, LFS_FS_TEXT_MAX * 4);
	switch (n->kind) {
	case LFS_N_ROOT:
		/* Ledger names only: others enter the ledgers they may. */
		dir_stat(fs, n, st, 0755);
		st->st_mode = S_IFDIR | 0755;
		break;
	case LFS_N_CTLDIR:
		dir_stat(fs, n, st, 0755);
		break;
	case LFS_N_LEDGER:
		rc = ledger_stat(fs, n, st, true);
		break;
	case LFS_N_SNAPS:
	case LFS_N_BYTIME:
		dir_stat(fs, n, st, 0555);
		break;
	case LFS_N_SNAP:
		dir_stat(fs, n, st, 0555);
		fill_time(st, n->snap->t);
		break;
	case LFS_N_BYTIME_LINK: {
		memset(st, 0, sizeof(*st));
		st->st_ino = n->ino;
		st->st_mode = S_IFLNK | 0777;
		st->st_nlink = 1;
		st->st_uid = fs->uid;
		st->st_gid = fs->gid;
		st->st_size = 3 + LFS_CID_STRLEN;
		fill_time(st, n->snap->t);
		break;
	}
	case LFS_N_SNAPDOC: {
		struct lfs_index_entry e;
		size_t len = 0;
		rc = lfs_ledger_get(n->lg->l, &n->snap->root, n->id, &e, &a,
				    NULL);
		if (!rc && !(n->lg->sizes &&
			     lfs_render_sizes_get(n->lg->sizes, &e.cur.doc,
						  n->id, &len))) {
			rc = lfs_view_render(fs, n->lg, &e.cur.doc, n->id, &b);
			len = b.len;
		}
		if (!rc) {
			file_stat(fs, n, st, 0444, len);
			fill_time(st, e.cur.t);
		}
		break;
	}
	case LFS_N_DOC: {
		struct lfs_docstate ds;
		size_t size = 0;
		rc = doc_state(fs, n, NULL, &size, &ds, &a);
		/* A committed version changes only through this mount's
		 * requests on the name or by a commit from elsewhere, which
		 * fs->moved tells the kernel of: it may keep the attributes.
		 * So may it a write buffer's: it changes only by writes and
		 * truncates to the inode, after which the kernel asks again
		 * for the size and times, and by its save, which tells the
		 * kernel (fs.c's save_buffer). Drafts change without
		 * either (a save that failed). */
		*ttl = !rc && ((ds.has_entry && !ds.draft) || ds.writing)
			       ? fs->doc_ttl
			       : 0;
		/* Files reading the inode through the page cache read the
		 * version bound to it: its size stays theirs (a lookup of
		 * the name gets another node once the name moved on:
		 * lfs_view_pin_stale). */
		pthread_mutex_lock(&fs->lock);
		if (pinned_locked(n) &&
		    (rc || !ds.has_entry || ds.draft ||
		     !vtag_is(fs, &n->pc_tag, &ds.entry.cur.doc, n->id))) {
			rc = 0;
			*ttl = 0;
			size = n->pc_size;
			memset(&ds, 0, sizeof(ds));
			ds.mtime_us = n->pc_mtime_us;
		}
		/* What the kernel keeps now, when it keeps it. */
		if (told)
			n->attr_valid = !rc && *ttl > 0 && ds.has_entry &&
					!ds.draft && n->nwriters == 0;
		if (told && n->attr_valid) {
			n->attr_tag = vtag(fs, &ds.entry.cur.doc, n->id);
			n->attr_until_ms =
				lfs_mono_ms() + (int64_t)(*ttl * 1000);
		}
		pthread_mutex_unlock(&fs->lock);
		struct lfs_attr at = {0};
		if (!rc) {
			file_stat(fs, n, st, 0644, size);
			fill_time(st, ds.mtime_us);
			rc = apply_attr(fs, n->lg, n->name, st, &at);
		}
		/* A time the user set holds for the version it was set on. */
		if (!rc && (at.set & LFS_ATTR_MTIME) && ds.has_entry &&
		    lfs_cid_equal(&at.version, &ds.entry.cur.doc))
			fill_time(st, at.mtime_us);
		break;
	}
	case LFS_N_FOLDER: {
		/* A folder made here (mkdir, chmod) is a local directory;
		 * one that only its documents make has the ledger's times.
		 * The kernel keeps its attributes as long as the ledger's
		 * (LFS_FS_ENTRY_TTL): with default_permissions, every path
		 * through a folder otherwise asked for them again, a round
		 * trip per folder per operation. What changes a folder
		 * elsewhere tells the kernel (fs_inval.c). */
		struct lfs_at at;
		rc = lfs_node_at(&at, fs, n, false);
		if (rc == -ENOMEM)
			break;
		if (!rc &&
		    fstatat(at.dir, at.name, st, AT_SYMLINK_NOFOLLOW) == 0 &&
		    S_ISDIR(st->st_mode))
			st->st_ino = n->ino;
		else if ((rc = folder_exists(fs, n)) == 0)
			rc = ledger_stat(fs, n, st, false);
		lfs_at_close(&at);
		break;
	}
	case LFS_N_SNAPFOLDER:
		dir_stat(fs, n, st, 0555);
		fill_time(st, n->snap->t);
		break;
	case LFS_N_SCRATCH: {
		struct lfs_at at = {.dir = -1};
		*ttl = 0;
		rc = unlinked_scratch_stat(fs, n, st, false);
		if (rc == 1) {
			rc = lfs_node_at(&at, fs, n, false);
			if (!rc &&
			    fstatat(at.dir, at.name, st, AT_SYMLINK_NOFOLLOW))
				rc = -errno;
			if (!rc)
				st->st_ino = lfs_node_local_ino(st);
			else if (rc == -ENOENT)
				rc = unlinked_scratch_stat(fs, n, st, true);
			/* A file with one name changes only by requests on
			 * its inode, which the kernel sees: it may keep its
			 * attributes as long as the name (a link made to it
			 * tells it, fs.c's op_link). A file with more names
			 * changes through the others' inodes. */
			if (!rc && S_ISREG(st->st_mode) && st->st_nlink == 1)
				*ttl = LFS_FS_ENTRY_TTL;
		}
		lfs_at_close(&at);
		break;
	}
	case LFS_N_CTL:
		*ttl = 0;
		/* Reading "wait" blocks: its size is not worth waiting for. */
		rc = strcmp(n->name, "wait")
			     ? lfs_view_ctl(fs, n, &b, NULL, NULL)
			     : 0;
		if (!rc) {
			/* Made fresh by every read: as new as now. */
			file_stat(fs, n, st, 0444, b.len);
			fill_time(st, lfs_fs_now_ms() * 1000);
		}
		if (!rc && !strcmp(n->name, "changes")) {
			char *p = lfs_fs_path(n->lg->state, "changes");
			struct stat fst;
			if (p && !stat(p, &fst)) {
				st->st_mtim = st->st_ctim = fst.st_mtim;
				st->st_atim = fst.st_atim;
			}
			free(p);
		}
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
	lfs_time_iso(when, v->t);
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

static int ctl_wait(struct lfs_fs *fs, struct lfs_fsl *lg, struct lfs_buf *out,
		    bool (*interrupted)(void *ctx), void *ctx)
{
	if (!fs->sync)
		return lfs_buf_append_str(out, "no remote store\n");
	/* Wait in short slices so an interrupted reader (Ctrl-C, timeout)
	 * is let go at once. */
	uint64_t target = lfs_sync_wait_target(fs->sync);
	for (int waited = 0; waited < 60000; waited += 200) {
		int rc = lfs_sync_wait_until(fs->sync, lg->name, target, 200);
		if (!rc)
			return lfs_buf_append_str(out, "pushed\n");
		if (rc != -ETIMEDOUT)
			return rc;
		if (interrupted && interrupted(ctx))
			return -EINTR;
	}
	return -ETIMEDOUT;
}

static int ctl_status(struct lfs_fs *fs, struct lfs_fsl *lg,
		      struct lfs_buf *out, struct lfs_cid *heads, size_t nheads)
{
	struct lfs_cid root;
	lfs_ledger_root(lg->l, &root);
	uint64_t docs = 0;
	struct count_ctx events = {0};
	struct lfs_blocks blocks = lfs_ledger_blocks(lg->l);
	int rc = lfs_index_count(&docs, lfs_ledger_index(lg->l), &root);
	if (!rc)
		rc = lfs_clock_walk(&blocks, heads, nheads, count_event,
				    &events);
	json_t *hj = json_array();
	for (size_t i = 0; hj && i < nheads; i++) {
		char s[LFS_CID_STRLEN + 1];
		lfs_cid_to_string(s, &heads[i]);
		json_array_append_new(hj, json_string(s));
	}
	if (rc) {
		json_decref(hj);
		return rc;
	}
	char rs[LFS_CID_STRLEN + 1];
	lfs_cid_to_string(rs, &root);
	json_t *pending = lfs_fsl_pending_json(fs, lg);
	char *last;
	uint64_t nerrors = lfs_fsl_last_error(fs, lg, &last);
	char name[LFS_FSNAME_MAX * 4 + 1];
	lfs_log_escape(name, sizeof(name), lg->name, strlen(lg->name));
	json_t *j = json_pack("{s:s,s:o,s:s,s:I,s:I,s:o,s:I,s:s?}", "ledger",
			      name, "heads", hj, "root", rs, "documents",
			      (json_int_t)docs, "events", (json_int_t)events.n,
			      "pending_deletes", pending, "errors",
			      (json_int_t)nerrors, "last_error", last);
	free(last);
	if (j) {
		json_object_set_new(
			j, "sizes_to_fill",
			json_integer((json_int_t)lfs_fsl_sizes_to_fill(lg)));
		json_object_set_new(j, "log", json_string(lfs_log_where()));
	}
	if (j && fs->sync)
		json_object_set_new(j, "sync",
				    lfs_sync_status(fs->sync, lg->name));
	return dump_json(out, j);
}

int lfs_view_ctl(struct lfs_fs *fs, struct lfs_node *n, struct lfs_buf *out,
		 bool (*interrupted)(void *ctx), void *ctx)
{
	struct lfs_fsl *lg = n->lg;
	const char *what = n->name;
	if (!strcmp(what, "errors"))
		return lfs_fsl_errors_text(fs, lg, out);
	if (!strcmp(what, "wait"))
		return ctl_wait(fs, lg, out, interrupted, ctx);
	if (!strcmp(what, "changes")) {
		char *p = lfs_fs_path(lg->state, "changes");
		struct stat st;
		int rc = p ? lfs_view_read_file(out, p, &st) : -ENOMEM;
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
	if (!strcmp(what, "conflicts")) {
		struct lfs_cid root;
		lfs_ledger_root(lg->l, &root);
		struct conflicts_ctx c = {.l = lg->l, .out = json_array()};
		if (!c.out)
			return -ENOMEM;
		int rc = lfs_index_each(lfs_ledger_index(lg->l), &root,
					conflicts_fn, &c);
		if (rc) {
			json_decref(c.out);
			return rc;
		}
		return dump_json(out, c.out);
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
	} else {
		rc = ctl_status(fs, lg, out, heads, nheads);
	}
	free(heads);
	return rc;
}

/* ---- directory listings ---- */

static int list_add(struct lfs_listing *l, const char *name, mode_t mode,
		    uint64_t ino)
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

void lfs_listing_release(struct lfs_listing *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->names[i]);
	free(l->names);
	free(l->modes);
	free(l->inos);
	memset(l, 0, sizeof(*l));
}

struct doclist_ctx {
	struct lfs_listing *l;
	struct lfs_fsl *lg;
	const struct lfs_cid *event; /* snapshots */
	const char *path;            /* the folder's ("" the top) */
	char **local; /* names listed from the disk: sorted, then skipped */
	size_t nlocal, ndrafts;
	bool check_pending;
	struct lfs_fs *fs;
};

/* Is name among the n names of v (not sorted yet)? */
static bool listed(const char *name, char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!strcmp(name, v[i]))
			return true;
	return false;
}

static int str_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The path of name in folder path ("" the ledger's top), in out. */
static int join(char out[LFS_FSPATH_MAX + 1], const char *path,
		const char *name)
{
	int n = snprintf(out, LFS_FSPATH_MAX + 1, "%s%s%s", path,
			 path[0] ? "/" : "", name);
	return n < 0 || n > LFS_FSPATH_MAX ? -ENAMETOOLONG : 0;
}

static int doclist_fn(void *ctx, const char *name, const char *id)
{
	struct doclist_ctx *c = ctx;
	char path[LFS_FSPATH_MAX + 1];
	if (join(path, c->path, name))
		return 0;
	if (id && c->check_pending && lfs_fsl_pending_has(c->fs, c->lg, id))
		return 0;
	const char *key = name;
	if (c->nlocal &&
	    bsearch(&key, c->local, c->nlocal, sizeof(char *), str_cmp))
		return 0; /* listed from the disk already */
	enum lfs_node_kind k = c->event
				       ? (id ? LFS_N_SNAPDOC : LFS_N_SNAPFOLDER)
				       : (id ? LFS_N_DOC : LFS_N_FOLDER);
	return list_add(c->l, name, id ? S_IFREG : S_IFDIR,
			lfs_node_hash(k, c->lg->name, c->event, path));
}

struct names {
	char **v;
	size_t n;
};

static int names_add(struct names *s, const char *name)
{
	char **v = realloc(s->v, (s->n + 1) * sizeof(*v));
	if (!v)
		return -ENOMEM;
	s->v = v;
	return (v[s->n] = strdup(name)) ? (s->n++, 0) : -ENOMEM;
}

/*
 * List local directory dir/path: drafts (documents), scratch files and
 * directories (scratch, or folders when their name is a folder's; all
 * scratch in a scratch directory). Names go to collect too.
 */
static int list_dir_files(struct lfs_fs *fs, struct lfs_listing *l,
			  struct lfs_fsl *lg, int root, const char *path,
			  bool drafts, bool in_scratch, struct doclist_ctx *c)
{
	char full[LFS_FSPATH_MAX + 1], prefix[LFS_INDEX_ID_MAX + 1];
	struct lfs_at at;
	int rc = lfs_at_open(&at, root, path, false);
	int fd = rc ? -1
		    : openat(at.dir, at.name,
			     O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (!rc && fd < 0)
		rc = -errno;
	lfs_at_close(&at);
	struct stat dst;
	DIR *d = NULL;
	if (!rc && (fstat(fd, &dst) || !(d = fdopendir(fd)))) {
		rc = -errno;
		close(fd);
	}
	if (rc)
		return rc == -ENOENT || rc == -ENOTDIR ? 0 : rc;
	struct dirent *de;
	struct names clash = {0};
	while (!rc && (de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..") ||
		    (drafts && !strncmp(de->d_name, ".tmp-", 5)) ||
		    join(full, path, de->d_name))
			continue;
		if (!drafts && listed(de->d_name, c->local, c->ndrafts))
			continue; /* a draft's folder and a scratch one */
		mode_t m =
			de->d_type == DT_UNKNOWN ? S_IFREG : DTTOIF(de->d_type);
		enum lfs_node_kind k = drafts ? LFS_N_DOC : LFS_N_SCRATCH;
		if (S_ISDIR(m))
			k = !in_scratch && lfs_fsname_folder_to_prefix(
						   prefix, sizeof(prefix), full)
				    ? LFS_N_FOLDER
				    : LFS_N_SCRATCH;
		if (drafts && k == LFS_N_SCRATCH)
			continue; /* not a folder: nothing of the drafts' */
		if (!drafts && !in_scratch && !S_ISDIR(m) &&
		    lfs_node_folder_held(lg, full)) {
			/* A scratch file named like a folder of documents:
			 * moved aside below, the folder listed with them. */
			rc = names_add(&clash, full);
			continue;
		}
		/* A scratch name's number is its local file's, as stat
		 * shows it (lfs_node_local_ino). */
		struct stat lst = {.st_dev = dst.st_dev, .st_ino = de->d_ino};
		rc = list_add(l, de->d_name, m,
			      k == LFS_N_SCRATCH
				      ? lfs_node_local_ino(&lst)
				      : lfs_node_hash(k, lg->name, NULL, full));
		if (!rc) {
			void *p = realloc(c->local,
					  (c->nlocal + 1) * sizeof(char *));
			if (!p)
				rc = -ENOMEM;
			else {
				c->local = p;
				c->local[c->nlocal++] = l->names[l->n - 1];
			}
		}
	}
	closedir(d);
	for (size_t i = 0; i < clash.n; i++) {
		char *moved = NULL;
		if (!rc &&
		    !lfs_node_scratch_aside(&moved, fs, lg, clash.v[i]) &&
		    moved) {
			const char *base = strrchr(moved, '/');
			struct stat mst;
			if (!lfs_lstat_at(root, moved, &mst))
				rc = list_add(l, base ? base + 1 : moved,
					      mst.st_mode & S_IFMT,
					      lfs_node_local_ino(&mst));
		}
		free(moved);
		free(clash.v[i]);
	}
	free(clash.v);
	return rc;
}

/* List the ledger's top ("") or one of its folders or scratch dirs. */
static int list_folder(struct lfs_fs *fs, struct lfs_fsl *lg, const char *path,
		       bool scratch_dir, struct lfs_listing *l)
{
	int rc = 0;
	struct doclist_ctx c = {.l = l,
				.lg = lg,
				.fs = fs,
				.check_pending = true,
				.path = path};
	if (!scratch_dir && !lfs_fsl_no_drafts(lg))
		rc = list_dir_files(fs, l, lg, lg->drafts_fd, path, true, false,
				    &c);
	c.ndrafts = c.nlocal;
	if (!rc)
		rc = list_dir_files(fs, l, lg, lg->scratch_fd, path, false,
				    scratch_dir, &c);
	if (c.nlocal)
		qsort(c.local, c.nlocal, sizeof(char *), str_cmp);
	struct lfs_cid root;
	if (!rc && !scratch_dir) {
		lfs_ledger_root(lg->l, &root);
		rc = lfs_idtree_children(&lg->tree, lfs_ledger_index(lg->l),
					 &root, path, doclist_fn, &c);
	}
	free(c.local);
	return rc == -EBADMSG ? -EIO : rc;
}

static int list_ledger(struct lfs_fs *fs, struct lfs_fsl *lg,
		       struct lfs_listing *l)
{
	/* History and control are reachable by name, listed only with
	 * snapdir=visible: tools walking a ledger do not walk its history. */
	int rc = 0;
	if (fs->snapdir_visible)
		rc = list_add(l, LFS_FS_CONTROL, S_IFDIR,
			      lfs_node_hash(LFS_N_CTLDIR, lg->name, NULL,
					    LFS_FS_CONTROL));
	if (rc || !lg->l)
		return rc;
	if (fs->snapdir_visible)
		rc = list_add(l, LFS_FS_SNAPSHOTS, S_IFDIR,
			      lfs_node_hash(LFS_N_SNAPS, lg->name, NULL,
					    LFS_FS_SNAPSHOTS));
	return rc ? rc : list_folder(fs, lg, "", false, l);
}

static int list_snapshots(struct lfs_node *n, struct lfs_listing *l)
{
	struct lfs_fsl *lg = n->lg;
	struct lfs_fsl_events s;
	int rc = lfs_fsl_events(&s, lg);
	if (rc)
		return rc;
	bool bytime = n->kind == LFS_N_BYTIME;
	if (!bytime)
		rc = list_add(l, LFS_FS_BY_TIME, S_IFDIR,
			      lfs_node_hash(LFS_N_BYTIME, lg->name, NULL,
					    LFS_FS_BY_TIME));
	char(*names)[LFS_FSL_BYTIME_LEN] =
		bytime ? lfs_fsl_bytime_names(&s) : NULL;
	if (bytime && !names)
		rc = -ENOMEM;
	for (size_t i = 0; i < s.n && !rc; i++) {
		char cs[LFS_CID_STRLEN + 1];
		lfs_cid_to_string(cs, &s.cids[i]);
		if (!bytime)
			rc = list_add(l, cs, S_IFDIR,
				      lfs_node_hash(LFS_N_SNAP, lg->name,
						    &s.cids[i], cs));
		else
			rc = list_add(l, names[i], S_IFLNK,
				      lfs_node_hash(LFS_N_BYTIME_LINK, lg->name,
						    NULL, names[i]));
	}
	free(names);
	lfs_fsl_events_release(&s);
	return rc;
}

int lfs_view_list(struct lfs_fs *fs, struct lfs_node *n, struct lfs_listing *l)
{
	memset(l, 0, sizeof(*l));
	int rc = list_add(l, ".", S_IFDIR, n->ino);
	if (!rc)
		rc = list_add(l, "..", S_IFDIR, LFS_NODE_ROOT_INO);
	struct lfs_fsl *lg = n->lg;
	if (rc)
		return rc;
	switch (n->kind) {
	case LFS_N_ROOT: {
		char **names;
		size_t count;
		if ((rc = lfs_home_list(&names, &count, fs->home)))
			return rc;
		for (size_t i = 0; i < count && !rc; i++)
			rc = list_add(l, names[i], S_IFDIR,
				      lfs_node_hash(LFS_N_LEDGER, names[i],
						    NULL, names[i]));
		lfs_home_list_free(names, count);
		return rc;
	}
	case LFS_N_LEDGER:
		return list_ledger(fs, lg, l);
	case LFS_N_SNAPS:
	case LFS_N_BYTIME:
		return list_snapshots(n, l);
	case LFS_N_FOLDER:
	case LFS_N_SCRATCH: {
		pthread_mutex_lock(&fs->lock);
		char *path = strdup(n->name);
		pthread_mutex_unlock(&fs->lock);
		rc = !path    ? -ENOMEM
		     : !lg->l ? lg->err
			      : list_folder(fs, lg, path,
					    n->kind == LFS_N_SCRATCH, l);
		free(path);
		return rc;
	}
	case LFS_N_SNAP:
	case LFS_N_SNAPFOLDER: {
		struct doclist_ctx c = {
			.l = l,
			.lg = lg,
			.event = &n->snap->event,
			.path = n->kind == LFS_N_SNAP ? "" : n->name};
		rc = lfs_idtree_children(&lg->snaptree, lfs_ledger_index(lg->l),
					 &n->snap->root, c.path, doclist_fn,
					 &c);
		return rc == -EBADMSG ? -EIO : rc;
	}
	case LFS_N_CTLDIR:
		for (size_t i = 0; i < NCTL && !rc; i++)
			rc = list_add(l, ctl_files[i], S_IFREG,
				      lfs_node_hash(LFS_N_CTL, lg->name, NULL,
						    ctl_files[i]));
		return rc;
	default:
		return -ENOTDIR;
	}
}
