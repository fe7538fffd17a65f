#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "fs_node.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

#include <sodium.h>

#include "fsname.h"

static const char *ctl_files[] = {"status",  "errors",    "heads",
				  "changes", "conflicts", "wait"};
#define NCTL (sizeof(ctl_files) / sizeof(ctl_files[0]))

bool lfs_node_read_only(enum lfs_node_kind k)
{
	return k == LFS_N_SNAPS || k == LFS_N_SNAP || k == LFS_N_SNAPDOC ||
	       k == LFS_N_SNAPFOLDER || k == LFS_N_BYTIME ||
	       k == LFS_N_BYTIME_LINK;
}

bool lfs_node_has_snap(enum lfs_node_kind k)
{
	return k == LFS_N_SNAP || k == LFS_N_SNAPDOC || k == LFS_N_SNAPFOLDER ||
	       k == LFS_N_BYTIME_LINK;
}

/* An inode number from SipHash (crypto_shorthash) of p[0..n) under key:
 * 63 bits, never 0 or 1 (FUSE's "none" and the root). */
static uint64_t ino_of(const uint8_t *p, size_t n,
		       const uint8_t key[crypto_shorthash_KEYBYTES])
{
	uint8_t out[crypto_shorthash_BYTES];
	crypto_shorthash(out, p, n, key);
	uint64_t h;
	memcpy(&h, out, sizeof(h));
	h &= 0x7fffffffffffffffull; /* keep clear of sign trouble in tools */
	return h < 2 ? h + 2 : h;
}

uint64_t lfs_node_hash(enum lfs_node_kind k, const char *ledger,
		       const struct lfs_cid *event, const char *name)
{
	/* SipHash (crypto_shorthash) of kind, ledger, event and name: cheap
	 * enough for a listing of 100,000 names, stable across mounts. */
	static const uint8_t hkey[crypto_shorthash_KEYBYTES] = "ledgerfs-inode";
	uint8_t buf[1 + LFS_FSNAME_MAX + LFS_FSPATH_MAX + 2 + LFS_DIGEST_LEN +
		    8];
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
	size_t nl = name ? strnlen(name, LFS_FSPATH_MAX) : 0;
	memcpy(buf + n, name ? name : "", nl);
	n += nl;
	buf[n++] = 0;
	return ino_of(buf, n, hkey);
}

uint64_t lfs_node_local_ino(const struct stat *st)
{
	static const uint8_t hkey[crypto_shorthash_KEYBYTES] = "ledgerfs-local";
	uint64_t id[2] = {(uint64_t)st->st_dev, (uint64_t)st->st_ino};
	return ino_of((const uint8_t *)id, sizeof(id), hkey);
}

static bool same_identity(const struct lfs_node *n, enum lfs_node_kind k,
			  const struct lfs_fsl *lg, const struct lfs_cid *event,
			  const char *name)
{
	if (n->kind != k || n->lg != lg)
		return false;
	if (event && !(n->snap && lfs_cid_equal(&n->snap->event, event)))
		return false;
	if ((name == NULL) != (n->name == NULL))
		return false;
	return !name || !strcmp(n->name, name);
}

static struct lfs_node **slot_of(struct lfs_fs *fs, uint64_t ino)
{
	return &fs->table[(ino * 0x9e3779b97f4a7c15ull >> 17) &
			  (fs->nslots - 1)];
}

/* The identity index: chains by the identity's hash (lfs_node_hash). */
static struct lfs_node **kslot_of(struct lfs_fs *fs, uint64_t key)
{
	return &fs->ktable[(key * 0x9e3779b97f4a7c15ull >> 17) &
			   (fs->nslots - 1)];
}

static void key_insert(struct lfs_fs *fs, struct lfs_node *n)
{
	struct lfs_node **s = kslot_of(fs, n->key);
	n->knext = *s;
	*s = n;
	n->indexed = true;
}

static void key_remove(struct lfs_fs *fs, struct lfs_node *n)
{
	if (!n->indexed)
		return;
	struct lfs_node **pp = kslot_of(fs, n->key);
	while (*pp != n)
		pp = &(*pp)->knext;
	*pp = n->knext;
	n->indexed = false;
}

static struct lfs_node *by_identity(struct lfs_fs *fs, uint64_t key,
				    enum lfs_node_kind k,
				    const struct lfs_fsl *lg,
				    const struct lfs_cid *event,
				    const char *name)
{
	for (struct lfs_node *n = *kslot_of(fs, key); n; n = n->knext)
		if (n->key == key && same_identity(n, k, lg, event, name))
			return n;
	return NULL;
}

static struct lfs_node *by_ino(struct lfs_fs *fs, uint64_t ino)
{
	for (struct lfs_node *n = *slot_of(fs, ino); n; n = n->hnext)
		if (n->ino == ino)
			return n;
	return NULL;
}

struct lfs_node *lfs_node_by_ino(struct lfs_fs *fs, uint64_t ino)
{
	pthread_mutex_lock(&fs->lock);
	struct lfs_node *n = by_ino(fs, ino);
	pthread_mutex_unlock(&fs->lock);
	return n;
}

struct lfs_node *lfs_node_find_locked(struct lfs_fs *fs, enum lfs_node_kind k,
				      struct lfs_fsl *lg, const char *name)
{
	return by_identity(fs, lfs_node_hash(k, lg->name, NULL, name), k, lg,
			   NULL, name);
}

static int table_grow(struct lfs_fs *fs)
{
	size_t nslots = fs->nslots * 2;
	struct lfs_node **t = calloc(nslots, sizeof(*t));
	struct lfs_node **kt = calloc(nslots, sizeof(*kt));
	if (!t || !kt) {
		free(t);
		free(kt);
		return -ENOMEM;
	}
	struct lfs_node **old = fs->table;
	size_t oldn = fs->nslots;
	fs->table = t;
	free(fs->ktable);
	fs->ktable = kt;
	fs->nslots = nslots;
	for (size_t i = 0; i < oldn; i++)
		for (struct lfs_node *n = old[i], *next; n; n = next) {
			next = n->hnext;
			struct lfs_node **s = slot_of(fs, n->ino);
			n->hnext = *s;
			*s = n;
			if (n->indexed)
				key_insert(fs, n);
		}
	free(old);
	return 0;
}

/* Find the node of an identity or make it. Caller holds fs->lock. */
static struct lfs_node *node_get(struct lfs_fs *fs, enum lfs_node_kind k,
				 struct lfs_fsl *lg,
				 const struct lfs_cid *event, const char *name)
{
	uint64_t key = k == LFS_N_ROOT ? LFS_NODE_ROOT_INO
				       : lfs_node_hash(k, lg ? lg->name : NULL,
						       event, name);
	struct lfs_node *found = by_identity(fs, key, k, lg, event, name);
	if (found)
		return found;
	/* A number taken (a collision, or a renamed node keeping its
	 * number): the next free one. */
	uint64_t ino = key;
	while (by_ino(fs, ino))
		ino = ino + 1 < 2 ? 2 : ino + 1;
	if (fs->nnodes * 2 >= fs->nslots && table_grow(fs))
		return NULL;
	bool snap = lfs_node_has_snap(k);
	struct lfs_node *n = calloc(
		1, sizeof(*n) + (snap ? sizeof(struct lfs_node_snap) : 0));
	if (!n)
		return NULL;
	if (snap)
		n->snap = (struct lfs_node_snap *)(n + 1);
	n->ino = ino;
	n->key = key;
	n->sfd = -1;
	n->kind = k;
	n->lg = lg;
	if (event && snap)
		n->snap->event = *event;
	if (name && !(n->name = strdup(name))) {
		free(n);
		return NULL;
	}
	struct lfs_node **s = slot_of(fs, ino);
	n->hnext = *s;
	*s = n;
	key_insert(fs, n);
	fs->nnodes++;
	return n;
}

static void node_free(struct lfs_node *n)
{
	if (n->sfd >= 0)
		close(n->sfd);
	if (n->wbuf) {
		lfs_buf_release(n->wbuf);
		free(n->wbuf);
	}
	free(n->name);
	free(n->id);
	free(n);
}

void lfs_node_maybe_free(struct lfs_fs *fs, struct lfs_node *n)
{
	if (n->kind == LFS_N_ROOT || n->nlookup || n->nopen)
		return;
	struct lfs_node **pp = slot_of(fs, n->ino);
	while (*pp != n)
		pp = &(*pp)->hnext;
	*pp = n->hnext;
	key_remove(fs, n);
	fs->nnodes--;
	node_free(n);
}

int lfs_node_table_init(struct lfs_fs *fs)
{
	fs->nslots = 1024;
	fs->table = calloc(fs->nslots, sizeof(*fs->table));
	fs->ktable = calloc(fs->nslots, sizeof(*fs->ktable));
	struct lfs_node *root =
		fs->table && fs->ktable
			? node_get(fs, LFS_N_ROOT, NULL, NULL, NULL)
			: NULL;
	if (!root) {
		free(fs->table);
		free(fs->ktable);
		fs->table = fs->ktable = NULL;
		return -ENOMEM;
	}
	root->nlookup = 1;
	return 0;
}

void lfs_node_table_release(struct lfs_fs *fs)
{
	for (size_t i = 0; fs->table && i < fs->nslots; i++)
		for (struct lfs_node *n = fs->table[i], *next; n; n = next) {
			next = n->hnext;
			node_free(n);
		}
	free(fs->table);
	free(fs->ktable);
	fs->table = fs->ktable = NULL;
}

void lfs_node_lookup_ref(struct lfs_fs *fs, struct lfs_node *n)
{
	pthread_mutex_lock(&fs->lock);
	n->nlookup++;
	pthread_mutex_unlock(&fs->lock);
}

void lfs_node_lookup_unref(struct lfs_fs *fs, struct lfs_node *n)
{
	pthread_mutex_lock(&fs->lock);
	n->nlookup--;
	lfs_node_maybe_free(fs, n);
	pthread_mutex_unlock(&fs->lock);
}

void lfs_node_forget_locked(struct lfs_fs *fs, uint64_t ino, uint64_t nlookup)
{
	struct lfs_node *n = by_ino(fs, ino);
	if (!n)
		return;
	n->nlookup = nlookup > n->nlookup ? 0 : n->nlookup - nlookup;
	lfs_node_maybe_free(fs, n);
}

void lfs_node_ref(struct lfs_fs *fs, struct lfs_node *n)
{
	pthread_mutex_lock(&fs->lock);
	n->nopen++;
	pthread_mutex_unlock(&fs->lock);
}

void lfs_node_unref(struct lfs_fs *fs, struct lfs_node *n)
{
	pthread_mutex_lock(&fs->lock);
	if (!--n->nopen && n->sfd >= 0) {
		close(n->sfd);
		n->sfd = -1;
	}
	lfs_node_maybe_free(fs, n);
	pthread_mutex_unlock(&fs->lock);
}

int lfs_node_child_path(char **out, const struct lfs_node *p, const char *name)
{
	bool top = p->kind == LFS_N_LEDGER || p->kind == LFS_N_SNAP;
	size_t pl = top ? 0 : strlen(p->name) + 1, nl = strlen(name);
	*out = NULL;
	if (pl + nl > LFS_FSPATH_MAX)
		return -ENAMETOOLONG;
	char *s = malloc(pl + nl + 1);
	if (!s)
		return -ENOMEM;
	if (pl) {
		memcpy(s, p->name, pl - 1);
		s[pl - 1] = '/';
	}
	memcpy(s + pl, name, nl + 1);
	*out = s;
	return 0;
}

int lfs_node_at(struct lfs_at *out, struct lfs_fs *fs, const struct lfs_node *n,
		bool mkdirs)
{
	pthread_mutex_lock(&fs->lock);
	char *path = n->name ? strdup(n->name) : NULL;
	pthread_mutex_unlock(&fs->lock);
	out->dir = -1;
	out->name = out->path = NULL;
	int rc = path ? lfs_at_open(out, n->lg->scratch_fd, path, mkdirs)
		      : -ENOMEM;
	free(path);
	return rc;
}

bool lfs_node_is_subdir(struct lfs_fs *fs, const struct lfs_node *n)
{
	if (n->kind == LFS_N_FOLDER)
		return true;
	if (n->kind != LFS_N_SCRATCH)
		return false;
	pthread_mutex_lock(&fs->lock);
	char *p = strdup(n->name);
	pthread_mutex_unlock(&fs->lock);
	bool dir = p && lfs_is_dir_at(n->lg->scratch_fd, p);
	free(p);
	return dir;
}

int lfs_node_folder_has(bool *out, struct lfs_fsl *lg, const char *path)
{
	*out = false;
	int rc = 0;
	if (lg->l) {
		struct lfs_cid root;
		lfs_ledger_root(lg->l, &root);
		rc = lfs_idtree_has_folder(&lg->tree, lfs_ledger_index(lg->l),
					   &root, path, out);
	}
	if (!*out && !rc && !lfs_fsl_no_drafts(lg))
		*out = lfs_is_dir_at(lg->drafts_fd, path);
	return rc;
}

bool lfs_node_folder_held(struct lfs_fsl *lg, const char *path)
{
	char prefix[LFS_INDEX_ID_MAX + 1];
	bool has;
	return lg->l &&
	       lfs_fsname_folder_to_prefix(prefix, sizeof(prefix), path) &&
	       lfs_node_folder_has(&has, lg, path) == 0 && has;
}

int lfs_node_scratch_aside(char **out, struct lfs_fs *fs, struct lfs_fsl *lg,
			   const char *path)
{
	*out = NULL;
	struct lfs_at at;
	struct stat st;
	if (lfs_at_open(&at, lg->scratch_fd, path, false))
		return 0;
	if (fstatat(at.dir, at.name, &st, AT_SYMLINK_NOFOLLOW) ||
	    S_ISDIR(st.st_mode)) {
		lfs_at_close(&at);
		return 0;
	}
	int rc = -EEXIST;
	for (int k = 1; k <= 100 && rc == -EEXIST; k++) {
		char name[LFS_FSPATH_MAX + 1], suffix[16];
		snprintf(suffix, sizeof(suffix), k == 1 ? "~local" : "~local%d",
			 k);
		size_t base = strlen(at.name);
		if (base + strlen(suffix) > LFS_FSNAME_MAX ||
		    snprintf(name, sizeof(name), "%s%s", path, suffix) >=
			    (int)sizeof(name)) {
			rc = -ENAMETOOLONG;
			break;
		}
		if (lfs_node_folder_held(lg, name))
			continue;
		/* Never over a file of that name. */
		const char *to = name + strlen(name) - base - strlen(suffix);
		rc = renameat2(at.dir, at.name, at.dir, to, RENAME_NOREPLACE)
			     ? -errno
			     : 0;
		if (rc == -EINVAL) /* no RENAME_NOREPLACE here */
			rc = linkat(at.dir, at.name, at.dir, to, 0) ? -errno
			     : unlinkat(at.dir, at.name, 0)         ? -errno
								    : 0;
		if (!rc && !(*out = strdup(name)))
			rc = -ENOMEM;
	}
	lfs_at_close(&at);
	if (rc)
		lfs_fsl_error(fs, lg,
			      "scratch file %s has the name of a folder of "
			      "documents and could not be moved aside: %s; it "
			      "is in %s",
			      path, strerror(-rc), lg->scratch);
	else
		lfs_fsl_error(fs, lg,
			      "scratch file %s moved to %s: documents made %s "
			      "a folder",
			      path, *out, path);
	return rc;
}

/* What a name in a ledger or folder is: decided before taking the lock
 * (it reads the index and the disk). */
struct want {
	enum lfs_node_kind kind;
	char *path; /* malloc'd */
	char id[LFS_INDEX_ID_MAX + 1];
};

static int classify(struct lfs_fs *fs, struct want *w, struct lfs_node *p,
		    const char *name)
{
	struct lfs_fsl *lg = p->lg;
	char prefix[LFS_INDEX_ID_MAX + 1];
	int rc = lfs_node_child_path(&w->path, p, name);
	if (rc)
		return rc;
	bool snap = p->kind == LFS_N_SNAP || p->kind == LFS_N_SNAPFOLDER;
	if (p->kind == LFS_N_SCRATCH) {
		w->kind = LFS_N_SCRATCH;
		return 0;
	}
	if (lfs_fsname_path_to_id(w->id, sizeof(w->id), w->path)) {
		w->kind = snap ? LFS_N_SNAPDOC : LFS_N_DOC;
		return 0;
	}
	bool folder =
		lfs_fsname_folder_to_prefix(prefix, sizeof(prefix), w->path);
	bool has = false;
	if (folder) {
		struct lfs_cid root;
		if (!snap)
			lfs_ledger_root(lg->l, &root);
		rc = lfs_idtree_has_folder(snap ? &lg->snaptree : &lg->tree,
					   lfs_ledger_index(lg->l),
					   snap ? &p->snap->root : &root,
					   w->path, &has);
		if (rc)
			return rc == -EBADMSG ? -EIO : rc;
	}
	if (snap) {
		w->kind = LFS_N_SNAPFOLDER;
		return has ? 0 : -ENOENT;
	}
	/* A ledger written before folders: "a%2Fb.json" is "a/b.json". */
	if (p->kind == LFS_N_LEDGER && !has &&
	    lfs_fsname_to_id(w->id, sizeof(w->id), name) &&
	    strchr(w->id, '/')) {
		char path[LFS_FSPATH_MAX + 1];
		if (lfs_fsname_path_from_id(path, w->id) > 0) {
			char *np = strdup(path);
			if (!np)
				return -ENOMEM;
			free(w->path);
			w->path = np;
			w->kind = LFS_N_DOC;
			return 0;
		}
	}
	w->kind = LFS_N_SCRATCH;
	if (folder && !has) {
		has = lfs_is_dir_at(lg->scratch_fd, w->path) ||
		      (!lfs_fsl_no_drafts(lg) &&
		       lfs_is_dir_at(lg->drafts_fd, w->path));
	}
	if (has) {
		char *moved = NULL;
		w->kind = LFS_N_FOLDER;
		lfs_node_scratch_aside(&moved, fs, lg, w->path);
		free(moved);
	}
	return 0;
}

/* The node of name under parent, made if needed. Caller holds fs->lock. */
static int child(struct lfs_fs *fs, struct lfs_node *parent, const char *name,
		 struct lfs_fsl *ledger, const struct want *w,
		 struct lfs_node **out)
{
	struct lfs_fsl *lg = parent->lg;
	struct lfs_node *n = NULL;
	switch (parent->kind) {
	case LFS_N_ROOT:
		n = node_get(fs, LFS_N_LEDGER, ledger, NULL, name);
		break;
	case LFS_N_LEDGER:
		if (!strcmp(name, LFS_FS_SNAPSHOTS)) {
			n = node_get(fs, LFS_N_SNAPS, lg, NULL,
				     LFS_FS_SNAPSHOTS);
			break;
		} else if (!strcmp(name, LFS_FS_CONTROL)) {
			n = node_get(fs, LFS_N_CTLDIR, lg, NULL,
				     LFS_FS_CONTROL);
			break;
		}
		/* fall through */
	case LFS_N_FOLDER:
	case LFS_N_SCRATCH:
		n = node_get(fs, w->kind, lg, NULL, w->path);
		if (n && w->kind == LFS_N_DOC && !n->id &&
		    !(n->id = strdup(w->id)))
			n = NULL;
		break;
	case LFS_N_SNAPS: {
		if (!strcmp(name, LFS_FS_BY_TIME)) {
			n = node_get(fs, LFS_N_BYTIME, lg, NULL,
				     LFS_FS_BY_TIME);
			break;
		}
		struct lfs_cid ev;
		if (lfs_cid_from_string(&ev, name) ||
		    ev.codec != LFS_CODEC_DAG_CBOR)
			return -ENOENT;
		n = node_get(fs, LFS_N_SNAP, lg, &ev, name);
		break;
	}
	case LFS_N_SNAP:
	case LFS_N_SNAPFOLDER:
		n = node_get(fs, w->kind, lg, &parent->snap->event, w->path);
		if (n) {
			n->snap->root = parent->snap->root;
			n->snap->t = parent->snap->t;
			if (w->kind == LFS_N_SNAPDOC && !n->id &&
			    !(n->id = strdup(w->id)))
				n = NULL;
		}
		break;
	case LFS_N_BYTIME:
		n = node_get(fs, LFS_N_BYTIME_LINK, lg, NULL, name);
		break;
	case LFS_N_CTLDIR: {
		bool known = false;
		for (size_t i = 0; i < NCTL; i++)
			known |= !strcmp(name, ctl_files[i]);
		if (!known)
			return -ENOENT;
		n = node_get(fs, LFS_N_CTL, lg, NULL, name);
		break;
	}
	default:
		return -ENOTDIR;
	}
	if (!n)
		return -ENOMEM;
	*out = n;
	return 0;
}

int lfs_node_resolve(struct lfs_fs *fs, struct lfs_node *parent,
		     const char *name, struct lfs_node **out)
{
	struct lfs_fsl *lg = parent->lg, *ledger = NULL;
	if ((parent->kind == LFS_N_LEDGER || parent->kind == LFS_N_FOLDER ||
	     parent->kind == LFS_N_SCRATCH) &&
	    lg->l == NULL && strcmp(name, LFS_FS_CONTROL) != 0)
		return lg->err;
	if (parent->kind == LFS_N_ROOT) {
		/* Opening a ledger reads and decrypts: not under the lock. */
		if (!lfs_home_valid_name(name))
			return -ENOENT;
		if (!(ledger = lfs_fsl_get(fs, name, true)))
			return -ENOENT;
		lg = ledger;
	}
	struct want w = {.kind = LFS_N_SCRATCH};
	int rc = 0;
	bool special = parent->kind == LFS_N_LEDGER &&
		       (!strcmp(name, LFS_FS_SNAPSHOTS) ||
			!strcmp(name, LFS_FS_CONTROL));
	if (!special &&
	    (parent->kind == LFS_N_LEDGER || parent->kind == LFS_N_FOLDER ||
	     parent->kind == LFS_N_SCRATCH || parent->kind == LFS_N_SNAP ||
	     parent->kind == LFS_N_SNAPFOLDER)) {
		if (parent->kind == LFS_N_SNAP && !parent->snap->t)
			rc = -ENOENT;
		else
			rc = classify(fs, &w, parent, name);
	}
	struct lfs_node *n = NULL;
	if (!rc) {
		pthread_mutex_lock(&fs->lock);
		rc = child(fs, parent, name, ledger, &w, &n);
		if (!rc)
			n->nopen++; /* held until the caller lets go */
		pthread_mutex_unlock(&fs->lock);
	}
	free(w.path);
	if (rc)
		return rc;

	/* Snapshot directories and by-time links learn their event. */
	if (n->kind == LFS_N_SNAP && !n->snap->t) {
		struct lfs_arena a;
		lfs_arena_init(&a, 0);
		struct lfs_event ev;
		struct lfs_blocks b = lfs_ledger_blocks(lg->l);
		rc = lfs_event_load(&ev, &a, &b, &n->snap->event);
		if (!rc) {
			n->snap->root = ev.root;
			n->snap->t = ev.t;
		}
		lfs_arena_release(&a);
		if (rc)
			rc = rc == -EBADMSG ? -EIO : -ENOENT;
	}
	if (n->kind == LFS_N_BYTIME_LINK && !n->snap->t) {
		struct lfs_fsl_events s;
		rc = lfs_fsl_events(&s, lg);
		char(*names)[LFS_FSL_BYTIME_LEN] =
			rc ? NULL : lfs_fsl_bytime_names(&s);
		rc = rc ? rc : names ? -ENOENT : -ENOMEM;
		for (size_t i = 0; names && i < s.n; i++)
			if (!strcmp(names[i], name)) {
				n->snap->event = s.cids[i];
				n->snap->t = s.times[i];
				rc = 0;
			}
		free(names);
		lfs_fsl_events_release(&s);
	}
	if (rc) {
		lfs_node_unref(fs, n);
		return rc;
	}
	*out = n;
	return 0;
}

void lfs_node_rekey(struct lfs_fs *fs, struct lfs_fsl *lg, const char *name,
		    bool was_doc, const char *newname, const char *newid)
{
	enum lfs_node_kind k = was_doc ? LFS_N_DOC : LFS_N_SCRATCH;
	enum lfs_node_kind nk = newid ? LFS_N_DOC : LFS_N_SCRATCH;
	pthread_mutex_lock(&fs->lock);
	struct lfs_node *n = lfs_node_find_locked(fs, k, lg, name);
	char *nn = n ? strdup(newname) : NULL;
	char *ni = n && newid ? strdup(newid) : NULL;
	if (n && nn && (!newid || ni)) {
		/* The name's former node (the file the rename replaced)
		 * lives on for whoever holds it, but no lookup finds it. */
		struct lfs_node *old =
			lfs_node_find_locked(fs, nk, lg, newname);
		if (old && old != n)
			key_remove(fs, old);
		key_remove(fs, n);
		free(n->name);
		free(n->id);
		n->name = nn;
		n->id = ni;
		n->kind = nk;
		/* Its pages, if the kernel holds any, are another name's
		 * (or a scratch file's) bytes: never taken as the name's. */
		n->pc_written = true;
		n->key = lfs_node_hash(nk, lg->name, NULL, newname);
		key_insert(fs, n);
	} else {
		free(nn);
		free(ni);
		/* No node to move (never looked up, or out of memory): at
		 * least let no lookup find a stale node under the new name. */
		struct lfs_node *old =
			lfs_node_find_locked(fs, nk, lg, newname);
		if (old)
			key_remove(fs, old);
	}
	pthread_mutex_unlock(&fs->lock);
}

void lfs_node_unindex(struct lfs_fs *fs, struct lfs_node *n)
{
	pthread_mutex_lock(&fs->lock);
	key_remove(fs, n);
	pthread_mutex_unlock(&fs->lock);
}

void lfs_node_unname(struct lfs_fs *fs, struct lfs_fsl *lg, const char *name)
{
	pthread_mutex_lock(&fs->lock);
	struct lfs_node *n = lfs_node_find_locked(fs, LFS_N_SCRATCH, lg, name);
	if (n)
		key_remove(fs, n);
	pthread_mutex_unlock(&fs->lock);
}

/* Is name `path` or under it? */
static bool at_or_under(const char *name, const char *path, size_t len)
{
	return name && !strncmp(name, path, len) &&
	       (name[len] == '\0' || name[len] == '/');
}

void lfs_node_rekey_tree(struct lfs_fs *fs, struct lfs_fsl *lg,
			 const char *from, const char *to)
{
	size_t fl = strlen(from), tl = strlen(to);
	pthread_mutex_lock(&fs->lock);
	/* What the target held is no longer found by name. */
	for (size_t i = 0; i < fs->nslots; i++)
		for (struct lfs_node *n = fs->table[i]; n; n = n->hnext)
			if (n->lg == lg &&
			    (n->kind == LFS_N_DOC || n->kind == LFS_N_FOLDER ||
			     n->kind == LFS_N_SCRATCH) &&
			    at_or_under(n->name, to, tl))
				key_remove(fs, n);
	for (size_t i = 0; i < fs->nslots; i++)
		for (struct lfs_node *n = fs->table[i]; n; n = n->hnext) {
			if (n->lg != lg || !n->indexed ||
			    (n->kind != LFS_N_DOC && n->kind != LFS_N_FOLDER &&
			     n->kind != LFS_N_SCRATCH) ||
			    !at_or_under(n->name, from, fl))
				continue;
			size_t rest = strlen(n->name) - fl;
			char *nn = malloc(tl + rest + 1);
			if (!nn) {
				key_remove(fs, n); /* found by no name */
				continue;
			}
			memcpy(nn, to, tl);
			memcpy(nn + tl, n->name + fl, rest + 1);
			char id[LFS_INDEX_ID_MAX + 1];
			char *ni = NULL;
			if (n->kind == LFS_N_DOC &&
			    (!lfs_fsname_path_to_id(id, sizeof(id), nn) ||
			     !(ni = strdup(id)))) {
				free(nn);
				key_remove(fs, n);
				continue;
			}
			key_remove(fs, n);
			free(n->name);
			n->name = nn;
			if (ni) {
				free(n->id);
				n->id = ni;
			}
			n->key = lfs_node_hash(n->kind, lg->name, NULL, nn);
			key_insert(fs, n);
		}
	pthread_mutex_unlock(&fs->lock);
}

size_t lfs_node_under_locked(struct lfs_fs *fs, struct lfs_fsl *lg,
			     const char *path, uint64_t **out)
{
	size_t len = strlen(path), n = 0, cap = 0;
	*out = NULL;
	for (size_t i = 0; i < fs->nslots; i++)
		for (struct lfs_node *x = fs->table[i]; x; x = x->hnext) {
			if (x->lg != lg || !x->indexed ||
			    (x->kind != LFS_N_DOC && x->kind != LFS_N_FOLDER &&
			     x->kind != LFS_N_SCRATCH) ||
			    !at_or_under(x->name, path, len))
				continue;
			if (n == cap) {
				size_t c = cap ? cap * 2 : 16;
				uint64_t *p = realloc(*out, c * sizeof(*p));
				if (!p)
					return n;
				*out = p;
				cap = c;
			}
			(*out)[n++] = x->ino;
		}
	return n;
}
