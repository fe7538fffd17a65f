#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "fs_save.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <unistd.h>

#include <sodium.h>

#include "fileio.h"
#include "fs_attr.h"
#include "fs_view.h"
#include "fsname.h"
#include "log.h"

/* ---- drafts ---- */

static int write_draft(struct lfs_fsl *lg, const char *name,
		       const uint8_t *data, size_t len)
{
	lfs_fsl_drafts_coming(lg);
	char *final = lfs_fs_path(lg->drafts, name);
	int rc = final ? 0 : -ENOMEM;
	if (!rc && strchr(name, '/'))
		rc = lfs_mkdirs_for(final); /* a draft in a folder */
	if (!rc)
		rc = lfs_write_atomic(final, data, len, 0600, false);
	free(final);
	return rc;
}

static void remove_draft(struct lfs_fsl *lg, const char *name)
{
	if (lfs_fsl_no_drafts(lg))
		return;
	char *p = lfs_fs_path(lg->drafts, name);
	if (p)
		unlink(p);
	free(p);
}

static bool has_draft(struct lfs_fsl *lg, const char *name)
{
	if (lfs_fsl_no_drafts(lg))
		return false;
	char *p = lfs_fs_path(lg->drafts, name);
	bool r = p && access(p, F_OK) == 0;
	free(p);
	return r;
}

/* Is id a committed document of lg now? */
static int committed(struct lfs_fsl *lg, const char *id, bool *out)
{
	struct lfs_arena a;
	lfs_arena_init(&a, 0);
	struct lfs_index_entry e;
	int rc = lfs_ledger_get(lg->l, NULL, id, &e, &a, NULL);
	lfs_arena_release(&a);
	*out = rc == 0;
	return rc == -ENOENT ? 0 : rc;
}

/* ---- saving bytes ---- */

/*
 * What a failed save answers: EINVAL for bytes that are not a document
 * (EFBIG: too large a one); for a commit that failed, the system's own
 * reason when a program can act on it (a full disk, a quota, an I/O error,
 * a read-only home, out of memory, an invalid id), else EIO.
 */
static int save_errno(int rc, bool refused)
{
	if (refused || rc == -EFBIG)
		return rc == -EFBIG ? rc : -EINVAL;
	switch (-rc) {
	case ENOSPC:
	case EDQUOT:
	case EIO:
	case EROFS:
	case ENOMEM:
	case EINVAL:
		return rc;
	default:
		return -EIO;
	}
}

int lfs_save_content(struct lfs_fs *fs, struct lfs_fsl *lg, const char *name,
		     const uint8_t *data, size_t len, struct lfs_cid *out_doc)
{
	if (out_doc)
		memset(out_doc, 0, sizeof(*out_doc));
	if (!lg->l)
		return lg->err;
	struct lfs_save_decision d;
	int rc = lfs_policy_save(&d, name, data, len);
	if (rc == -EINVAL)
		return rc; /* not a document's name (renamed meanwhile) */
	if (!rc && d.verdict == LFS_SAVE_DRAFT) {
		lfs_save_decision_release(&d);
		return write_draft(lg, name, data, len);
	}
	char why[sizeof(d.why)];
	snprintf(why, sizeof(why), "%s", rc ? "" : d.why);
	bool refused = !rc && d.verdict != LFS_SAVE_COMMIT;
	if (!rc && d.verdict == LFS_SAVE_COMMIT) {
		/* A pending delete of the id is undone first (or waited
		 * for), so it can never land after this version. */
		lfs_fsl_pending_cancel(fs, lg, d.id);
		rc = lfs_fsl_commit(fs, lg, d.txn);
		if (!rc && out_doc && lfs_txn_count(d.txn) == 1)
			lfs_txn_op_cid(d.txn, 0, out_doc);
		if (!rc && d.id_replaced)
			lfs_info("ledger '%s': %s: its \"_id\" named another "
				 "document; saved as \"%s\", the file's name",
				 lg->name, name, d.id);
	} else if (!rc) {
		rc = -EINVAL;
	}
	if (rc && !why[0])
		snprintf(why, sizeof(why), "the commit failed: %s",
			 strerror(-rc));
	if (rc) {
		lfs_save_decision_release(&d);
		int drc = write_draft(lg, name, data, len);
		lfs_fsl_error(fs, lg,
			      "%s: not committed: %s; your text is kept as a "
			      "draft in that file%s",
			      name, why,
			      drc ? " (and saving the draft FAILED)" : "");
		return save_errno(rc, refused);
	}
	remove_draft(lg, name);
	lfs_save_decision_release(&d);
	return 0;
}

/* ---- write buffers ---- */

int lfs_save_writer_ref(struct lfs_fs *fs, struct lfs_node *n, bool truncate)
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
			struct lfs_docstate ds;
			struct lfs_arena a;
			lfs_arena_init(&a, 0);
			int rc = lfs_view_doc(fs, n, fresh, &ds, &a);
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

int lfs_save_write(struct lfs_fs *fs, struct lfs_node *n, const void *buf,
		   size_t size, size_t off)
{
	if (off > LFS_FS_TEXT_MAX || size > LFS_FS_TEXT_MAX - off) {
		lfs_fsl_error(fs, n->lg,
			      "%s: over the %zu MiB document size limit; "
			      "write refused",
			      n->name, LFS_FS_TEXT_MAX >> 20);
		return -EFBIG;
	}
	pthread_mutex_lock(&fs->lock);
	struct lfs_buf *b = n->wbuf;
	size_t end = off + size;
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
		n->wgen++;
	}
	b->err = 0;
	pthread_mutex_unlock(&fs->lock);
	return rc;
}

int lfs_save_read(struct lfs_fs *fs, struct lfs_node *n, size_t size,
		  size_t off, char **out, size_t *out_len)
{
	pthread_mutex_lock(&fs->lock);
	struct lfs_buf *b = n->wbuf;
	size_t len = b->len;
	size_t from = off < len ? off : len;
	size_t k = len - from < size ? len - from : size;
	char *copy = malloc(k ? k : 1);
	if (copy)
		memcpy(copy, b->data + from, k);
	pthread_mutex_unlock(&fs->lock);
	*out = copy;
	*out_len = k;
	return copy ? 0 : -ENOMEM;
}

int lfs_save_resize(struct lfs_fs *fs, struct lfs_node *n, size_t size)
{
	if (size > LFS_FS_TEXT_MAX)
		return -EFBIG;
	int rc = 0;
	pthread_mutex_lock(&fs->lock);
	struct lfs_buf *b = n->wbuf;
	if (size > b->len && !(rc = lfs_buf_reserve(b, size - b->len)))
		memset(b->data + b->len, 0, size - b->len);
	if (!rc) {
		b->len = size;
		n->wgen++;
	}
	pthread_mutex_unlock(&fs->lock);
	return rc;
}

void lfs_save_touch(struct lfs_fs *fs, struct lfs_node *n)
{
	pthread_mutex_lock(&fs->lock);
	n->wgen++;
	pthread_mutex_unlock(&fs->lock);
}

int lfs_save_flush(struct lfs_fs *fs, struct lfs_node *n)
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
	/* A rename may change the node's name: save under the one now. */
	char *name = strdup(n->name);
	pthread_mutex_unlock(&fs->lock);
	if (!rc && !name)
		rc = -ENOMEM;
	if (!rc)
		rc = lfs_save_content(fs, n->lg, name, copy.data, copy.len,
				      NULL);
	free(name);
	lfs_buf_release(&copy);
	pthread_mutex_lock(&fs->lock);
	if (n->committed_gen < gen) {
		n->committed_gen = gen;
		n->invalid = rc;
	}
	pthread_mutex_unlock(&fs->lock);
	return rc;
}

void lfs_save_writer_unref(struct lfs_fs *fs, struct lfs_node *n)
{
	lfs_save_flush(fs, n); /* normally flush did it already */
	pthread_mutex_lock(&fs->lock);
	if (--n->nwriters == 0 && n->wbuf) {
		lfs_buf_release(n->wbuf);
		free(n->wbuf);
		n->wbuf = NULL;
	}
	pthread_mutex_unlock(&fs->lock);
}

int lfs_save_truncate(struct lfs_fs *fs, struct lfs_node *n, size_t size)
{
	if (size > LFS_FS_TEXT_MAX)
		return -EFBIG;
	struct lfs_buf b;
	lfs_buf_init(&b, LFS_FS_TEXT_MAX * 4);
	bool isdoc;
	int rc = lfs_view_name(fs, n->lg, n->name, &b, &isdoc);
	if (!rc && size > b.len && !(rc = lfs_buf_reserve(&b, size - b.len)))
		memset(b.data + b.len, 0, size - b.len);
	if (!rc) {
		b.len = size;
		rc = lfs_save_content(fs, n->lg, n->name, b.data, b.len, NULL);
	}
	lfs_buf_release(&b);
	return rc;
}

/* ---- unlink ---- */

int lfs_save_unlink(struct lfs_fs *fs, struct lfs_fsl *lg, const char *name)
{
	if (!lg->l)
		return lg->err;
	char id[LFS_INDEX_ID_MAX + 1];
	bool is_doc = lfs_fsname_path_to_id(id, sizeof(id), name);
	bool draft = false, pending = false, have = false;
	int rc = 0;
	if (is_doc) {
		draft = has_draft(lg, name);
		pending = lfs_fsl_pending_has(fs, lg, id);
		if (!pending && (rc = committed(lg, id, &have)))
			return rc;
	}
	unsigned what;
	rc = lfs_policy_unlink(&what, name, pending, have, draft);
	if (rc)
		return rc;
	if (what & LFS_UNLINK_SCRATCH) {
		struct lfs_at at;
		rc = lfs_at_open(&at, lg->scratch_fd, name, false);
		if (!rc && unlinkat(at.dir, at.name, 0))
			rc = -errno;
		lfs_at_close(&at);
		return rc;
	}
	if (what & LFS_UNLINK_COMMIT) {
		struct lfs_txn *t;
		rc = lfs_txn_new(&t);
		if (!rc && !(rc = lfs_txn_delete(t, id)))
			rc = lfs_fsl_commit(fs, lg, t);
		lfs_txn_free(t);
	}
	if (!rc && (what & LFS_UNLINK_DRAFT))
		remove_draft(lg, name);
	if (!rc)
		lfs_attr_remove(fs, lg, name);
	return rc;
}

/* ---- rename ---- */

/*
 * A scratch file (st) became document `name`: like any renamed file it
 * keeps its mode and mtime (rsync and sed -i set them before renaming).
 */
static void carry_attrs(struct lfs_fs *fs, struct lfs_fsl *lg, const char *name,
			const char *id, const struct lfs_cid *doc,
			const struct stat *st)
{
	struct lfs_attr a = {.set = LFS_ATTR_MODE, .mode = st->st_mode & 07777};
	char *dpath = lfs_fs_path(lg->drafts, name);
	if (dpath && !lfs_fsl_no_drafts(lg) && access(dpath, F_OK) == 0) {
		struct timespec t[2] = {st->st_atim, st->st_mtim};
		utimensat(AT_FDCWD, dpath, t, AT_SYMLINK_NOFOLLOW);
	} else {
		/* The version just saved (staged: a lookup would wait for
		 * its fold), or, when the save committed nothing, the one
		 * there is. */
		struct lfs_arena ar;
		struct lfs_index_entry e;
		lfs_arena_init(&ar, 0);
		bool have = doc->codec ||
			    (lg->l && lfs_ledger_get(lg->l, NULL, id, &e, &ar,
						     NULL) == 0);
		if (have) {
			a.set |= LFS_ATTR_MTIME;
			a.mtime_us = (int64_t)st->st_mtim.tv_sec * 1000000 +
				     st->st_mtim.tv_nsec / 1000;
			a.version = doc->codec ? *doc : e.cur.doc;
		}
		lfs_arena_release(&ar);
	}
	free(dpath);
	lfs_attr_set(fs, lg, name, &a);
}

/* Rename local file from to `to` under root (lg's scratch or drafts
 * directory), making the directories above `to` if needed (mkdirs: at
 * once; else only when they are missing). */
static int rename_at(int root, const char *from, const char *to, bool mkdirs)
{
	struct lfs_at a, b = {.dir = -1};
	int rc = lfs_at_open(&a, root, from, false);
	if (!rc)
		rc = lfs_at_open(&b, root, to, mkdirs);
	if (!rc && renameat(a.dir, a.name, b.dir, b.name))
		rc = -errno;
	lfs_at_close(&a);
	lfs_at_close(&b);
	return rc;
}

static int rename_in(int root, const char *from, const char *to)
{
	int rc = rename_at(root, from, to, false);
	/* Into a folder that only its documents made: make it here. */
	struct stat st;
	if (rc == -ENOENT && lfs_lstat_at(root, from, &st) == 0)
		rc = rename_at(root, from, to, true);
	return rc;
}

/* Write a new scratch file `to` holding content, replacing whatever the
 * name was (a link is replaced, never followed). */
static int write_scratch(struct lfs_fsl *lg, const char *to,
			 const struct lfs_buf *content)
{
	char tmp[PATH_MAX];
	lfs_fsl_drafts_coming(lg); /* the temporary file */
	snprintf(tmp, sizeof(tmp), "%s/.tmp-%08x", lg->drafts,
		 randombytes_random());
	int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	int rc = fd < 0 ? -errno
			: lfs_write_all(fd, content->data, content->len);
	if (fd >= 0 && close(fd) && !rc)
		rc = -errno;
	struct lfs_at b = {.dir = -1};
	if (!rc)
		rc = lfs_at_open(&b, lg->scratch_fd, to, true);
	if (!rc && renameat(AT_FDCWD, tmp, b.dir, b.name))
		rc = -errno;
	if (rc)
		unlink(tmp);
	lfs_at_close(&b);
	return rc;
}

/* document -> scratch: the content becomes the scratch file. */
static int backup(struct lfs_fs *fs, struct lfs_fsl *lg,
		  const struct lfs_rename_plan *p, const char *from,
		  const char *to, const struct lfs_buf *content)
{
	int rc = write_scratch(lg, to, content);
	if (rc)
		return rc;
	remove_draft(lg, from);
	return p->delete_later ? lfs_fsl_pending_add(fs, lg, p->from_id) : 0;
}

int lfs_save_rename(struct lfs_fs *fs, struct lfs_fsl *lg, const char *from,
		    const char *to, bool noreplace)
{
	if (!lg->l)
		return lg->err;
	bool isdoc;
	if (noreplace) {
		struct lfs_buf probe;
		lfs_buf_init(&probe, LFS_FS_TEXT_MAX);
		int e = lfs_view_name(fs, lg, to, &probe, &isdoc);
		lfs_buf_release(&probe);
		if (e != -ENOENT)
			return e ? e : -EEXIST;
	}
	struct lfs_rename_plan p;
	int rc = lfs_policy_rename(&p, from, to, NULL, 0, false);
	if (rc)
		return rc;
	if (p.action == LFS_RENAME_SCRATCH) {
		rc = rename_in(lg->scratch_fd, from, to);
		if (!rc)
			lfs_node_rekey(fs, lg, from, false, to, NULL);
		return rc;
	}

	struct lfs_buf content;
	lfs_buf_init(&content, LFS_FS_TEXT_MAX * 4);
	bool have = false;
	rc = lfs_view_name(fs, lg, from, &content, &isdoc);
	if (rc == -EPERM)
		lfs_fsl_error(fs, lg,
			      "mv %s %s: refused: a document is a regular "
			      "file, and %s is not (a link, a FIFO, a "
			      "socket or a device stays a scratch file)",
			      from, to, from);
	if (!rc && p.from_doc)
		committed(lg, p.from_id, &have); /* an error: not committed */
	if (!rc && p.from_doc && p.to_doc) {
		lfs_rename_plan_release(&p);
		rc = lfs_policy_rename(&p, from, to, content.data, content.len,
				       have);
	} else if (!rc) {
		p.delete_later = have;
	}
	if (rc)
		goto out;
	switch (p.action) {
	case LFS_RENAME_SAVE: {
		/* scratch -> document: sed -i, rsync, `mv tmp x.json` */
		struct lfs_at a;
		struct stat st;
		bool have_a = !lfs_at_open(&a, lg->scratch_fd, from, false);
		bool have_st = have_a && !fstatat(a.dir, a.name, &st,
						  AT_SYMLINK_NOFOLLOW);
		struct lfs_cid doc;
		rc = lfs_save_content(fs, lg, to, content.data, content.len,
				      &doc);
		if (rc == -EINVAL)
			rc = 0; /* kept as a draft; the rename happened */
		if (!rc && have_st)
			carry_attrs(fs, lg, to, p.to_id, &doc, &st);
		if (!rc && have_a)
			unlinkat(a.dir, a.name, 0);
		lfs_at_close(&a);
		break;
	}
	case LFS_RENAME_BACKUP:
		rc = backup(fs, lg, &p, from, to, &content);
		break;
	case LFS_RENAME_COMMIT:
		lfs_fsl_pending_cancel(fs, lg, p.to_id);
		rc = lfs_fsl_commit(fs, lg, p.txn);
		if (!rc) {
			remove_draft(lg, from);
			remove_draft(lg, to);
			lfs_attr_rename(fs, lg, from, to);
		}
		break;
	case LFS_RENAME_MOVE_DRAFT:
		lfs_fsl_drafts_coming(lg);
		rc = rename_in(lg->drafts_fd, from, to);
		if (!rc)
			lfs_attr_rename(fs, lg, from, to);
		break;
	case LFS_RENAME_REFUSE:
	default:
		rc = -EINVAL;
		break;
	}
	if (!rc)
		lfs_node_rekey(fs, lg, from, p.from_doc, to,
			       p.to_doc ? p.to_id : NULL);
out:
	lfs_rename_plan_release(&p);
	lfs_buf_release(&content);
	return rc;
}

/* ---- renaming a directory ---- */

struct under_ctx {
	char **ids, **paths;
	size_t n, cap;
};

static int under_fn(void *ctx, const char *id, const char *path)
{
	struct under_ctx *c = ctx;
	if (c->n == c->cap) {
		size_t cap = c->cap ? c->cap * 2 : 64;
		char **a = realloc(c->ids, cap * sizeof(char *));
		if (!a)
			return -ENOMEM;
		c->ids = a;
		char **b = realloc(c->paths, cap * sizeof(char *));
		if (!b)
			return -ENOMEM;
		c->paths = b;
		c->cap = cap;
	}
	c->ids[c->n] = strdup(id);
	c->paths[c->n] = strdup(path);
	if (!c->ids[c->n] || !c->paths[c->n]) {
		free(c->ids[c->n]);
		free(c->paths[c->n]);
		return -ENOMEM;
	}
	c->n++;
	return 0;
}

/* The transaction that moves every document under `from` to `to`. */
static int move_txn(struct lfs_fs *fs, struct lfs_fsl *lg,
		    const struct under_ctx *c, size_t fl, const char *to,
		    struct lfs_txn *t)
{
	int rc = 0;
	for (size_t i = 0; i < c->n && !rc; i++) {
		char npath[LFS_FSPATH_MAX + 1], nid[LFS_INDEX_ID_MAX + 1];
		int len = snprintf(npath, sizeof(npath), "%s%s", to,
				   c->paths[i] + fl);
		if (len < 0 || (size_t)len >= sizeof(npath))
			return -ENAMETOOLONG;
		if (!lfs_fsname_path_to_id(nid, sizeof(nid), npath))
			return -EXDEV; /* cannot be: folders map to folders */
		rc = lfs_txn_delete(t, c->ids[i]);
		if (rc || lfs_fsl_pending_has(fs, lg, c->ids[i]))
			continue; /* on its way out: not carried over */
		struct lfs_arena a;
		struct lfs_index_entry e;
		json_t *doc = NULL;
		lfs_arena_init(&a, 0);
		rc = lfs_ledger_get(lg->l, NULL, c->ids[i], &e, &a, &doc);
		lfs_arena_release(&a);
		if (rc == -ENOENT) {
			rc = 0; /* deleted meanwhile */
			continue;
		}
		if (!rc) {
			json_object_del(doc, "_id"); /* the old id */
			rc = lfs_txn_put_new(t, nid, doc);
			doc = NULL;
		}
		json_decref(doc);
	}
	return rc;
}

/* Move from to `to` under root if it exists, making to's parents. */
static int move_local(int root, const char *from, const char *to)
{
	struct stat st;
	int rc = lfs_lstat_at(root, from, &st);
	if (rc)
		return rc == -ENOENT || rc == -ENOTDIR ? 0 : rc;
	return rename_at(root, from, to, true);
}

int lfs_save_rename_dir(struct lfs_fs *fs, struct lfs_fsl *lg, const char *from,
			const char *to, bool folder)
{
	if (!lg->l)
		return lg->err;
	char prefix[LFS_INDEX_ID_MAX + 1];
	if (folder != lfs_fsname_folder_to_prefix(prefix, sizeof(prefix), to))
		return -EXDEV;
	size_t fl = strlen(from), tl = strlen(to);
	if (tl > fl && !strncmp(to, from, fl) && to[fl] == '/')
		return -EINVAL; /* into itself */
	struct under_ctx c = {0};
	int rc = 0;
	if (folder) {
		struct lfs_cid root;
		lfs_ledger_root(lg->l, &root);
		rc = lfs_idtree_under(&lg->tree, lfs_ledger_index(lg->l), &root,
				      from, under_fn, &c);
		if (rc == -EBADMSG)
			rc = -EIO;
	}
	if (!rc && c.n) {
		struct lfs_txn *t;
		rc = lfs_txn_new(&t);
		if (!rc && !(rc = move_txn(fs, lg, &c, fl, to, t)) &&
		    lfs_txn_count(t))
			rc = lfs_fsl_commit(fs, lg, t);
		lfs_txn_free(t);
	}
	/* The folder, moved here, is a local one (even if all its documents
	 * go later); an empty one it replaces is taken over. */
	struct lfs_at b = {.dir = -1};
	if (!rc && !lfs_at_open(&b, lg->scratch_fd, to, false) &&
	    unlinkat(b.dir, b.name, AT_REMOVEDIR) && errno != ENOENT)
		rc = -errno;
	lfs_at_close(&b);
	if (!rc)
		rc = move_local(lg->scratch_fd, from, to);
	if (!rc && folder) {
		if (!lfs_at_open(&b, lg->scratch_fd, to, true))
			mkdirat(b.dir, b.name, 0755); /* EEXIST: moved */
		lfs_at_close(&b);
		/* An empty one in the way. */
		lfs_fsl_drafts_coming(lg);
		if (!lfs_at_open(&b, lg->drafts_fd, to, false))
			unlinkat(b.dir, b.name, AT_REMOVEDIR);
		lfs_at_close(&b);
		move_local(lg->drafts_fd, from, to);
	}
	for (size_t i = 0; i < c.n; i++) {
		if (!rc) {
			char npath[LFS_FSPATH_MAX + 1];
			snprintf(npath, sizeof(npath), "%s%s", to,
				 c.paths[i] + fl);
			lfs_attr_rename(fs, lg, c.paths[i], npath);
		}
		free(c.ids[i]);
		free(c.paths[i]);
	}
	free(c.ids);
	free(c.paths);
	if (!rc)
		lfs_node_rekey_tree(fs, lg, from, to);
	return rc;
}
