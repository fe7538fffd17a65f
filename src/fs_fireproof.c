#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#ifndef FUSE_USE_VERSION
#define FUSE_USE_VERSION 314
#endif
#include <fuse_lowlevel.h>

#include "fs_fireproof.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "buf.h"
#include "cidmap.h"
#include "dagjson.h"
#include "errmsg.h"
#include "fp_ledger.h"
#include "fsname.h"
#include "idtree.h"
#include "log.h"
#include "timefmt.h"

#define ERRORS_KEPT 100
#define CHANGES_MAX ((size_t)4 << 20) /* the feed keeps its newest part */
#define READONLY_WHY                                                           \
	"Fireproof ledgers are mounted read-only (writing back "               \
	"to Fireproof is not supported yet)"

enum kind {
	K_ROOT,
	K_LEDGER,
	K_DOC,
	K_FOLDER, /* a folder of documents: fsname.h's paths, as a mount */
	K_SNAPS,
	K_SNAP,
	K_SNAPDOC,
	K_SNAPFOLDER,
	K_BYTIME,
	K_LINK,
	K_CTLDIR,
	K_CTL,
};

struct fpl {
	char *name;
	struct lfs_fp_ledger *l; /* NULL when it could not be opened */
	pthread_mutex_t lock;    /* errors, changes, seen, last */
	char *errors[ERRORS_KEPT];
	size_t nerrors;
	struct lfs_buf changes;
	struct lfs_fp_state *seen; /* the state the feed is at */
	char last[512];            /* the last error logged, not repeated */
	int64_t incomplete_since;  /* ms; 0: meta/main.json reads whole */
};

struct node {
	enum kind k;
	fuse_ino_t ino;
	struct fpl *lg;
	struct lfs_cid ev;
	char *name; /* id, folder path, control file or by-time name */
	char *key;  /* identity */
};

struct lfs_fpfs {
	const struct lfs_fpfs_opts *o;
	pthread_mutex_t lock; /* ledgers, nodes */
	struct fpl **ledgers;
	size_t nledgers;
	struct node **nodes; /* by ino - 1 */
	size_t nnodes, cap;
	struct node **slots; /* identity hash */
	size_t nslots;
	pthread_mutex_t size_lock;
	struct lfs_cidmap sizes; /* value block -> rendered size */
	pthread_mutex_t hk_lock;
	pthread_cond_t hk_cond;
	bool stop;
	pthread_t hk;
	bool hk_running;
	struct fuse_session *se; /* for invalidations, once mounted */
	pthread_mutex_t grave_lock;
	struct handle *graves; /* released handles, newest first */
};

/*
 * The kernel may keep names and attributes this long; the poll thread
 * invalidates what a new commit changes, so no stale document outlives it.
 */
#define CACHE_S 1.0

struct handle {
	struct lfs_buf b;
	int64_t released_ms; /* when released: freed GRAVE_MS later */
	struct handle *next; /* in fs->graves */
};

/*
 * A released handle is freed only GRAVE_MS later: with several FUSE
 * threads, a read the kernel sent before the release (an interrupted
 * `cat`, say) may still be replying from its buffer.
 */
#define GRAVE_MS 60000

static const char *ctl_names[] = {"status", "errors", "heads", "changes"};

static int64_t now_ms(void)
{
	struct timespec t;
	clock_gettime(CLOCK_REALTIME, &t);
	return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* ---- ledgers ---- */

static void __attribute__((format(printf, 2, 3)))
fpl_error(struct fpl *lg, const char *fmt, ...)
{
	char msg[768], line[832], when[LFS_TIME_ISO_MAX];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	lfs_time_iso(when, now_ms() * 1000);
	snprintf(line, sizeof(line), "%s %s", when, msg);
	lfs_warn("%s", msg);
	if (!lg)
		return;
	char *copy = strdup(line);
	pthread_mutex_lock(&lg->lock);
	size_t slot = lg->nerrors % ERRORS_KEPT;
	free(lg->errors[slot]);
	lg->errors[slot] = copy;
	lg->nerrors++;
	pthread_mutex_unlock(&lg->lock);
}

/* Note the ledger's own error once (a poll repeats it every tick). */
static void fpl_note(struct fpl *lg)
{
	char msg[512] = "";
	if (lg->l)
		lfs_fp_ledger_error(lg->l, msg, sizeof(msg));
	pthread_mutex_lock(&lg->lock);
	bool fresh = msg[0] && strcmp(msg, lg->last);
	if (fresh)
		snprintf(lg->last, sizeof(lg->last), "%s", msg);
	pthread_mutex_unlock(&lg->lock);
	if (fresh)
		fpl_error(lg, "%s", msg);
}

static int doc_cmp(const struct lfs_fp_doc *a, const struct lfs_fp_doc *b)
{
	int c = memcmp(a->id, b->id,
		       a->id_len < b->id_len ? a->id_len : b->id_len);
	return c ? c : (a->id_len > b->id_len) - (a->id_len < b->id_len);
}

/* Append what changed from a to b to the feed (both sorted). */
static struct node *node_get(struct lfs_fpfs *fs, enum kind k, struct fpl *lg,
			     const struct lfs_cid *ev, const char *name);

/* Drop the kernel's cached name and attributes of a changed document,
 * and the names of its folders (one may have come or gone). */
static void invalidate(struct lfs_fpfs *fs, struct fpl *lg,
		       const struct lfs_fp_doc *d)
{
	char path[LFS_FSPATH_MAX + 1];
	struct node *n = node_get(fs, K_DOC, lg, NULL, d->id);
	if (!fs->se || lfs_fsname_path_from_id(path, d->id) <= 0)
		return;
	struct node *dir = node_get(fs, K_LEDGER, lg, NULL, NULL);
	for (char *name = path, *slash; dir; name = slash + 1) {
		slash = strchr(name, '/');
		size_t len = slash ? (size_t)(slash - name) : strlen(name);
		fuse_lowlevel_notify_inval_entry(fs->se, dir->ino, name, len);
		if (!slash)
			break;
		*slash = '\0';
		dir = node_get(fs, K_FOLDER, lg, NULL, path);
		*slash = '/';
	}
	if (n)
		fuse_lowlevel_notify_inval_inode(fs->se, n->ino, 0, 0);
}

static void record_changes(struct lfs_fpfs *fs, struct fpl *lg,
			   const struct lfs_fp_state *a,
			   const struct lfs_fp_state *b)
{
	char when[LFS_TIME_ISO_MAX], ev[LFS_CID_STRLEN + 1] = "-";
	lfs_time_iso(when, now_ms() * 1000);
	if (b->nheads)
		lfs_cid_to_string(ev, &b->heads[0]);
	struct lfs_buf out;
	lfs_buf_init(&out, 0);
	size_t i = 0, j = 0, na = a ? a->ndocs : 0;
	while (i < na || j < b->ndocs) {
		const struct lfs_fp_doc *x = i < na ? &a->docs[i] : NULL;
		const struct lfs_fp_doc *y = j < b->ndocs ? &b->docs[j] : NULL;
		int c = !x ? 1 : !y ? -1 : doc_cmp(x, y);
		const char *op = NULL;
		const struct lfs_fp_doc *d = NULL;
		if (c < 0) {
			op = "-", d = x, i++;
		} else if (c > 0) {
			op = "+", d = y, j++;
		} else {
			if (!lfs_cid_equal(&x->value, &y->value))
				op = "~", d = y;
			i++, j++;
		}
		if (!op)
			continue;
		if (fs)
			invalidate(fs, lg, d);
		lfs_buf_append_str(&out, when);
		lfs_buf_append_byte(&out, ' ');
		lfs_buf_append_str(&out, ev);
		lfs_buf_append_byte(&out, ' ');
		lfs_buf_append_str(&out, op);
		lfs_buf_append_byte(&out, ' ');
		lfs_buf_append(&out, d->id, d->id_len);
		lfs_buf_append_byte(&out, '\n');
	}
	if (!out.err && out.len) {
		pthread_mutex_lock(&lg->lock);
		if (lg->changes.len + out.len > CHANGES_MAX)
			lfs_buf_reset(&lg->changes);
		lfs_buf_append(&lg->changes, out.data, out.len);
		pthread_mutex_unlock(&lg->lock);
	}
	lfs_buf_release(&out);
}

static void fpl_refresh(struct lfs_fpfs *fs, struct fpl *lg)
{
	if (!lg->l)
		return;
	bool changed = false;
	int rc = lfs_fp_ledger_refresh(lg->l, &changed);
	pthread_mutex_lock(&lg->lock);
	if (rc == -EAGAIN) {
		if (!lg->incomplete_since)
			lg->incomplete_since = now_ms();
	} else {
		lg->incomplete_since = 0;
	}
	pthread_mutex_unlock(&lg->lock);
	if (rc && rc != -EAGAIN)
		fpl_note(lg);
	if (!changed)
		return;
	struct lfs_fp_state *s = lfs_fp_ledger_state(lg->l);
	pthread_mutex_lock(&lg->lock);
	struct lfs_fp_state *old = lg->seen;
	lg->seen = s;
	pthread_mutex_unlock(&lg->lock);
	if (s)
		record_changes(fs, lg, old, s);
	lfs_fp_state_unref(old);
	lfs_debug("fireproof ledger '%s': moved to a new commit", lg->name);
}

static bool is_ledger_dir(const char *storage, const char *name)
{
	char p[4096];
	struct stat st;
	if (!name[0] || name[0] == '.' || strchr(name, '/'))
		return false;
	snprintf(p, sizeof(p), "%s/%s/meta", storage, name);
	if (!stat(p, &st) && S_ISDIR(st.st_mode))
		return true;
	snprintf(p, sizeof(p), "%s/%s/data", storage, name);
	return !stat(p, &st) && S_ISDIR(st.st_mode);
}

/* The ledger named name, opened on first use; NULL when there is none. */
static struct fpl *fpl_get(struct lfs_fpfs *fs, const char *name)
{
	pthread_mutex_lock(&fs->lock);
	for (size_t i = 0; i < fs->nledgers; i++)
		if (!strcmp(fs->ledgers[i]->name, name)) {
			struct fpl *lg = fs->ledgers[i];
			pthread_mutex_unlock(&fs->lock);
			return lg;
		}
	pthread_mutex_unlock(&fs->lock);
	if (!is_ledger_dir(fs->o->storage, name))
		return NULL;
	struct fpl *lg = calloc(1, sizeof(*lg));
	if (!lg || !(lg->name = strdup(name))) {
		free(lg);
		return NULL;
	}
	pthread_mutex_init(&lg->lock, NULL);
	lfs_buf_init(&lg->changes, CHANGES_MAX * 2);
	/* Open outside fs->lock: it reads and decrypts every car. */
	int rc = lfs_fp_ledger_open(&lg->l, fs->o->storage, fs->o->keybag, name,
				    0);
	if (lg->l) {
		/* An incomplete meta file: the poll thread reads it again. */
		if (rc == -EAGAIN)
			lg->incomplete_since = now_ms();
		else if (rc)
			fpl_note(lg);
		lg->seen = lfs_fp_ledger_state(lg->l);
	} else {
		fpl_error(lg, "ledger '%s': cannot open: %s", name,
			  lfs_errmsg(rc));
	}
	pthread_mutex_lock(&fs->lock);
	for (size_t i = 0; i < fs->nledgers; i++)
		if (!strcmp(fs->ledgers[i]->name, name)) {
			/* Another thread won the race. */
			struct fpl *other = fs->ledgers[i];
			pthread_mutex_unlock(&fs->lock);
			lfs_fp_state_unref(lg->seen);
			lfs_fp_ledger_close(lg->l);
			lfs_buf_release(&lg->changes);
			for (size_t k = 0; k < ERRORS_KEPT; k++)
				free(lg->errors[k]);
			free(lg->name);
			free(lg);
			return other;
		}
	void *p =
		realloc(fs->ledgers, (fs->nledgers + 1) * sizeof(*fs->ledgers));
	if (p) {
		fs->ledgers = p;
		fs->ledgers[fs->nledgers++] = lg;
	}
	pthread_mutex_unlock(&fs->lock);
	return p ? lg : NULL;
}

static struct lfs_fp_state *fpl_state(struct fpl *lg)
{
	return lg && lg->l ? lfs_fp_ledger_state(lg->l) : NULL;
}

/* ---- nodes ---- */

static uint64_t khash(const char *s)
{
	uint64_t h = 1469598103934665603ull;
	for (; *s; s++)
		h = (h ^ (uint8_t)*s) * 1099511628211ull;
	return h;
}

/*
 * The node of this identity, made on first use; its inode number stays
 * the same for the life of the mount.
 */
static struct node *node_get(struct lfs_fpfs *fs, enum kind k, struct fpl *lg,
			     const struct lfs_cid *ev, const char *name)
{
	char evs[LFS_CID_STRLEN + 1] = "";
	if (ev)
		lfs_cid_to_string(evs, ev);
	size_t kl = strlen(name ? name : "") + strlen(lg ? lg->name : "") +
		    sizeof(evs) + 16;
	char *key = malloc(kl);
	if (!key)
		return NULL;
	snprintf(key, kl, "%d/%s/%s/%s", (int)k, lg ? lg->name : "", evs,
		 name ? name : "");
	pthread_mutex_lock(&fs->lock);
	if ((fs->nnodes + 1) * 2 > fs->nslots) {
		size_t ns = fs->nslots ? fs->nslots * 2 : 1024;
		struct node **s = calloc(ns, sizeof(*s));
		if (!s) {
			pthread_mutex_unlock(&fs->lock);
			free(key);
			return NULL;
		}
		for (size_t i = 0; i < fs->nnodes; i++) {
			size_t j = khash(fs->nodes[i]->key) & (ns - 1);
			while (s[j])
				j = (j + 1) & (ns - 1);
			s[j] = fs->nodes[i];
		}
		free(fs->slots);
		fs->slots = s;
		fs->nslots = ns;
	}
	size_t j = khash(key) & (fs->nslots - 1);
	while (fs->slots[j]) {
		if (!strcmp(fs->slots[j]->key, key)) {
			struct node *n = fs->slots[j];
			pthread_mutex_unlock(&fs->lock);
			free(key);
			return n;
		}
		j = (j + 1) & (fs->nslots - 1);
	}
	struct node *n = calloc(1, sizeof(*n));
	if (n && fs->nnodes == fs->cap) {
		size_t cap = fs->cap ? fs->cap * 2 : 1024;
		void *p = realloc(fs->nodes, cap * sizeof(*fs->nodes));
		if (p) {
			fs->nodes = p;
			fs->cap = cap;
		}
	}
	if (!n || fs->nnodes == fs->cap ||
	    (name && !(n->name = strdup(name)))) {
		pthread_mutex_unlock(&fs->lock);
		free(n);
		free(key);
		return NULL;
	}
	n->k = k;
	n->lg = lg;
	if (ev)
		n->ev = *ev;
	n->key = key;
	n->ino = fs->nnodes + 1;
	fs->nodes[fs->nnodes++] = n;
	fs->slots[j] = n;
	pthread_mutex_unlock(&fs->lock);
	return n;
}

static struct node *node_by_ino(struct lfs_fpfs *fs, fuse_ino_t ino)
{
	pthread_mutex_lock(&fs->lock);
	struct node *n =
		ino >= 1 && ino <= fs->nnodes ? fs->nodes[ino - 1] : NULL;
	pthread_mutex_unlock(&fs->lock);
	return n;
}

/* ---- what nodes hold ---- */

/* The documents of a node's directory (current or at its event). */
static int dir_docs(struct fpl *lg, struct lfs_fp_state *s,
		    const struct node *n, struct lfs_arena *a,
		    struct lfs_fp_doc **out, size_t *out_n, bool *owned)
{
	*owned = false;
	if (n->k == K_LEDGER || n->k == K_DOC || n->k == K_FOLDER) {
		*out = s->docs;
		*out_n = s->ndocs;
		return 0;
	}
	*owned = true;
	return lfs_fp_ledger_docs_at(lg->l, s, &n->ev, a, out, out_n);
}

/* The document id in docs (sorted), or NULL. */
static const struct lfs_fp_doc *find_doc(const struct lfs_fp_doc *docs,
					 size_t nd, const char *id)
{
	struct lfs_fp_doc key = {.id = id, .id_len = strlen(id)};
	size_t lo = 0, hi = nd;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		int c = doc_cmp(&key, &docs[mid]);
		if (!c)
			return &docs[mid];
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return NULL;
}

/* Sorted documents as idtree's sorted ids: folders are prefix ranges. */
static const char *doc_id_at(const void *ctx, size_t i)
{
	return ((const struct lfs_fp_doc *)ctx)[i].id;
}

static struct lfs_idtree_list doc_list(const struct lfs_fp_doc *docs, size_t nd)
{
	return (struct lfs_idtree_list){.at = doc_id_at, .ctx = docs, .n = nd};
}

/* A directory node's path in its ledger or snapshot ("" at the top). */
static const char *dir_path(const struct node *n)
{
	return n->k == K_FOLDER || n->k == K_SNAPFOLDER ? n->name : "";
}

/* The by-time name of every event (time, plus a CID tail when shared). */
static char (*bytime_names(const struct lfs_fp_state *s))[96]
{
	char(*names)[96] = calloc(s->nevents + 1, sizeof(*names));
	if (!names)
		return NULL;
	for (size_t i = 0; i < s->nevents; i++) {
		lfs_time_iso(names[i], s->events[i].t_ns / 1000);
		bool dup = false;
		for (size_t k = 0; k < s->nevents && !dup; k++)
			dup = k != i && s->events[k].t_ns == s->events[i].t_ns;
		if (dup) {
			char c[LFS_CID_STRLEN + 1];
			lfs_cid_to_string(c, &s->events[i].cid);
			size_t len = strlen(names[i]);
			snprintf(names[i] + len, 96 - len, "-%s",
				 c + LFS_CID_STRLEN - 8);
		}
	}
	return names;
}

static int ctl_content(struct lfs_fpfs *fs, struct fpl *lg, const char *what,
		       struct lfs_buf *out)
{
	struct lfs_fp_state *s = fpl_state(lg);
	int rc = 0;
	if (!strcmp(what, "heads")) {
		for (size_t i = 0; s && i < s->nheads; i++) {
			char c[LFS_CID_STRLEN + 1];
			lfs_cid_to_string(c, &s->heads[i]);
			lfs_buf_append_str(out, c);
			lfs_buf_append_byte(out, '\n');
		}
	} else if (!strcmp(what, "errors")) {
		pthread_mutex_lock(&lg->lock);
		size_t n = lg->nerrors,
		       from = n > ERRORS_KEPT ? n - ERRORS_KEPT : 0;
		for (size_t i = from; i < n; i++) {
			lfs_buf_append_str(out, lg->errors[i % ERRORS_KEPT]);
			lfs_buf_append_byte(out, '\n');
		}
		pthread_mutex_unlock(&lg->lock);
	} else if (!strcmp(what, "changes")) {
		pthread_mutex_lock(&lg->lock);
		lfs_buf_append(out, lg->changes.data, lg->changes.len);
		pthread_mutex_unlock(&lg->lock);
	} else {
		json_t *heads = json_array();
		for (size_t i = 0; s && i < s->nheads; i++) {
			char c[LFS_CID_STRLEN + 1];
			lfs_cid_to_string(c, &s->heads[i]);
			json_array_append_new(heads, json_string(c));
		}
		char msg[512] = "";
		pthread_mutex_lock(&lg->lock);
		size_t nerr = lg->nerrors;
		char *last = nerr ? strdup(lg->errors[(nerr - 1) % ERRORS_KEPT])
				  : NULL;
		int64_t inc = lg->incomplete_since;
		pthread_mutex_unlock(&lg->lock);
		if (lg->l && !s)
			lfs_fp_ledger_error(lg->l, msg, sizeof(msg));
		json_t *j = json_pack(
			"{s:s,s:s,s:s,s:b,s:o,s:I,s:I,s:I,s:I,s:I,s:s?,s:s?}",
			"ledger", lg->name, "format", "fireproof-0.24",
			"source", fs->o->storage, "read_only", 1, "heads",
			heads, "documents", (json_int_t)(s ? s->ndocs : 0),
			"events", (json_int_t)(s ? s->nevents : 0), "cars",
			(json_int_t)(s ? s->ncars : 0), "missing_cars",
			(json_int_t)(s ? s->missing : 0), "errors",
			(json_int_t)nerr, "last_error", last, "state_error",
			msg[0] ? msg : NULL);
		if (j && inc) {
			char when[LFS_TIME_ISO_MAX];
			lfs_time_iso(when, inc * 1000);
			json_object_set_new(j, "meta_incomplete_since",
					    json_string(when));
		}
		free(last);
		rc = j ? lfs_dagjson_dump(out, j) : -ENOMEM;
		json_decref(j);
	}
	lfs_fp_state_unref(s);
	return rc ? rc : out->err;
}

static int doc_render(struct lfs_fpfs *fs, struct fpl *lg,
		      const struct lfs_fp_doc *d, struct lfs_buf *out)
{
	int rc = lfs_fp_ledger_render(lg->l, &d->value, d->id, out);
	if (rc) {
		fpl_error(lg, "ledger '%s': cannot show document '%s': %s",
			  lg->name, d->id,
			  rc == -ERANGE ? "it holds an integer beyond 64 bits, "
					  "which JSON here cannot show"
					: lfs_errmsg(rc));
		return -EIO;
	}
	pthread_mutex_lock(&fs->size_lock);
	lfs_cidmap_set(&fs->sizes, &d->value, out->len);
	pthread_mutex_unlock(&fs->size_lock);
	return 0;
}

/* Find the document of a doc node: in the current state or its event's. */
static int node_doc(struct lfs_fpfs *fs, struct node *n, struct lfs_buf *out,
		    size_t *out_size)
{
	struct fpl *lg = n->lg;
	struct lfs_fp_state *s = fpl_state(lg);
	if (!s)
		return -ENOENT;
	struct lfs_arena a;
	lfs_arena_init(&a, 0);
	struct lfs_fp_doc *docs;
	size_t nd;
	bool owned;
	int rc = dir_docs(lg, s, n, &a, &docs, &nd, &owned);
	const struct lfs_fp_doc *d = NULL;
	if (!rc)
		rc = (d = find_doc(docs, nd, n->name)) ? 0 : -ENOENT;
	if (!rc && out_size) {
		uint64_t sz;
		pthread_mutex_lock(&fs->size_lock);
		bool have = lfs_cidmap_get(&fs->sizes, &d->value, &sz);
		pthread_mutex_unlock(&fs->size_lock);
		if (have) {
			*out_size = sz;
		} else {
			struct lfs_buf b;
			lfs_buf_init(&b, 0);
			rc = doc_render(fs, lg, d, &b);
			*out_size = b.len;
			lfs_buf_release(&b);
		}
	}
	if (!rc && out)
		rc = doc_render(fs, lg, d, out);
	if (owned)
		free(docs);
	lfs_arena_release(&a);
	lfs_fp_state_unref(s);
	return rc;
}

static int64_t node_time(struct node *n)
{
	struct lfs_fp_state *s = fpl_state(n->lg);
	int64_t t = 0;
	if (s && (n->k == K_SNAP || n->k == K_SNAPDOC || n->k == K_SNAPFOLDER ||
		  n->k == K_LINK)) {
		const struct lfs_fp_evinfo *e = lfs_fp_state_event(s, &n->ev);
		t = e ? e->t_ns : 0;
	} else if (s && s->nevents) {
		t = s->events[0].t_ns;
	}
	lfs_fp_state_unref(s);
	return t ? t : now_ms() * 1000000;
}

static int node_stat(struct lfs_fpfs *fs, struct node *n, struct stat *st)
{
	memset(st, 0, sizeof(*st));
	st->st_ino = n->ino;
	st->st_uid = getuid();
	st->st_gid = getgid();
	int64_t t = n->k == K_ROOT ? now_ms() * 1000000 : node_time(n);
	st->st_mtim.tv_sec = st->st_ctim.tv_sec = st->st_atim.tv_sec =
		t / 1000000000;
	st->st_mtim.tv_nsec = st->st_ctim.tv_nsec = st->st_atim.tv_nsec =
		t % 1000000000;
	switch (n->k) {
	case K_DOC:
	case K_SNAPDOC: {
		size_t size = 0;
		int rc = node_doc(fs, n, NULL, &size);
		if (rc)
			return rc;
		st->st_mode = S_IFREG | 0444;
		st->st_nlink = 1;
		st->st_size = (off_t)size;
		return 0;
	}
	case K_CTL: {
		struct lfs_buf b;
		lfs_buf_init(&b, 0);
		int rc = ctl_content(fs, n->lg, n->name, &b);
		st->st_size = (off_t)b.len;
		lfs_buf_release(&b);
		st->st_mode = S_IFREG | 0444;
		st->st_nlink = 1;
		return rc;
	}
	case K_FOLDER: {
		/* Gone with its last document (the kernel asks again). */
		struct lfs_fp_state *s = fpl_state(n->lg);
		struct lfs_idtree_list l =
			doc_list(s ? s->docs : NULL, s ? s->ndocs : 0);
		bool has = lfs_idtree_list_has_folder(&l, n->name);
		lfs_fp_state_unref(s);
		if (!has)
			return -ENOENT;
		st->st_mode = S_IFDIR | 0555;
		st->st_nlink = 2;
		return 0;
	}
	case K_LINK: {
		st->st_mode = S_IFLNK | 0777;
		st->st_nlink = 1;
		st->st_size = 3 + LFS_CID_STRLEN;
		return 0;
	}
	default:
		st->st_mode = S_IFDIR | 0555;
		st->st_nlink = 2;
		return 0;
	}
}

/* ---- lookups ---- */

static struct lfs_fpfs *fs_of(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

/*
 * A name in a ledger, a snapshot or a folder: a document by its path
 * (fsname.h), at the ledger's top also by its flat name from before
 * folders ("a%2Fb.json"), or a folder with documents under it.
 */
static int resolve_in(struct lfs_fpfs *fs, struct node *p, const char *name,
		      struct node **out)
{
	bool snap = p->k == K_SNAP || p->k == K_SNAPFOLDER;
	const char *dir = dir_path(p);
	char path[LFS_FSPATH_MAX + 1], id[LFS_INDEX_ID_MAX + 1];
	if (snprintf(path, sizeof(path), "%s%s%s", dir, *dir ? "/" : "",
		     name) >= (int)sizeof(path))
		return -ENAMETOOLONG;
	struct lfs_fp_state *s = fpl_state(p->lg);
	if (!s)
		return -ENOENT;
	struct lfs_arena a;
	lfs_arena_init(&a, 0);
	struct lfs_fp_doc *docs;
	size_t nd;
	bool owned;
	int rc = dir_docs(p->lg, s, p, &a, &docs, &nd, &owned);
	struct node *n = NULL;
	if (!rc) {
		struct lfs_idtree_list l = doc_list(docs, nd);
		bool doc = lfs_fsname_path_to_id(id, sizeof(id), path) &&
			   find_doc(docs, nd, id);
		if (!doc && p->k == K_LEDGER)
			doc = lfs_fsname_to_id(id, sizeof(id), name) &&
			      strchr(id, '/') && find_doc(docs, nd, id);
		if (doc)
			n = node_get(fs, snap ? K_SNAPDOC : K_DOC, p->lg,
				     snap ? &p->ev : NULL, id);
		else if (lfs_idtree_list_has_folder(&l, path))
			n = node_get(fs, snap ? K_SNAPFOLDER : K_FOLDER, p->lg,
				     snap ? &p->ev : NULL, path);
		else
			rc = -ENOENT;
		if (!rc && !n)
			rc = -ENOMEM;
		if (owned)
			free(docs);
	}
	lfs_arena_release(&a);
	lfs_fp_state_unref(s);
	if (!rc)
		*out = n;
	return rc;
}

static int resolve(struct lfs_fpfs *fs, struct node *p, const char *name,
		   struct node **out)
{
	struct lfs_fp_state *s = NULL;
	struct node *n = NULL;
	int rc = -ENOENT;
	switch (p->k) {
	case K_ROOT: {
		struct fpl *lg = fpl_get(fs, name);
		if (lg && (n = node_get(fs, K_LEDGER, lg, NULL, NULL)))
			rc = 0;
		break;
	}
	case K_LEDGER:
		if (!strcmp(name, ".snapshots"))
			n = node_get(fs, K_SNAPS, p->lg, NULL, NULL);
		else if (!strcmp(name, ".ledgerfs"))
			n = node_get(fs, K_CTLDIR, p->lg, NULL, NULL);
		else
			return resolve_in(fs, p, name, out);
		rc = n ? 0 : -ENOMEM;
		break;
	case K_FOLDER:
	case K_SNAPFOLDER:
		return resolve_in(fs, p, name, out);
	case K_SNAPS: {
		struct lfs_cid ev;
		if (!strcmp(name, "by-time"))
			n = node_get(fs, K_BYTIME, p->lg, NULL, NULL);
		else if (!lfs_cid_from_string(&ev, name) &&
			 (s = fpl_state(p->lg)) && lfs_fp_state_event(s, &ev))
			n = node_get(fs, K_SNAP, p->lg, &ev, NULL);
		else
			break;
		rc = n ? 0 : -ENOMEM;
		break;
	}
	case K_SNAP:
		return resolve_in(fs, p, name, out);
	case K_BYTIME: {
		if (!(s = fpl_state(p->lg)))
			break;
		char(*names)[96] = bytime_names(s);
		for (size_t i = 0; names && i < s->nevents && !n; i++)
			if (!strcmp(names[i], name))
				n = node_get(fs, K_LINK, p->lg,
					     &s->events[i].cid, name);
		free(names);
		rc = n ? 0 : -ENOENT;
		break;
	}
	case K_CTLDIR:
		for (size_t i = 0; i < 4; i++)
			if (!strcmp(name, ctl_names[i]))
				n = node_get(fs, K_CTL, p->lg, NULL, name);
		rc = n ? 0 : -ENOENT;
		break;
	default:
		rc = -ENOTDIR;
	}
	lfs_fp_state_unref(s);
	if (!rc)
		*out = n;
	return rc;
}

static void reply_entry(fuse_req_t req, struct lfs_fpfs *fs, struct node *n)
{
	struct fuse_entry_param e;
	memset(&e, 0, sizeof(e));
	int rc = node_stat(fs, n, &e.attr);
	if (rc) {
		fuse_reply_err(req, -rc);
		return;
	}
	e.ino = n->ino;
	e.generation = 1;
	e.attr_timeout = n->k == K_CTL ? 0 : CACHE_S;
	e.entry_timeout = n->k == K_CTL ? 0 : CACHE_S;
	fuse_reply_entry(req, &e);
}

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct lfs_fpfs *fs = fs_of(req);
	struct node *p = node_by_ino(fs, parent), *n;
	if (!p) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	int rc = resolve(fs, p, name, &n);
	if (rc)
		fuse_reply_err(req, -rc);
	else
		reply_entry(req, fs, n);
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino,
		       struct fuse_file_info *fi)
{
	(void)fi;
	struct lfs_fpfs *fs = fs_of(req);
	struct node *n = node_by_ino(fs, ino);
	struct stat st;
	int rc = n ? node_stat(fs, n, &st) : -ENOENT;
	if (rc)
		fuse_reply_err(req, -rc);
	else
		fuse_reply_attr(req, &st, n->k == K_CTL ? 0 : CACHE_S);
}

static void op_readlink(fuse_req_t req, fuse_ino_t ino)
{
	struct node *n = node_by_ino(fs_of(req), ino);
	if (!n || n->k != K_LINK) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	char target[LFS_CID_STRLEN + 4] = "../";
	lfs_cid_to_string(target + 3, &n->ev);
	fuse_reply_readlink(req, target);
}

/* ---- directories ---- */

struct listing {
	struct lfs_buf names; /* NUL-separated */
	struct lfs_buf modes; /* mode_t each */
	size_t n;
};

static void list_add(struct listing *l, const char *name, mode_t mode)
{
	lfs_buf_append(&l->names, name, strlen(name) + 1);
	lfs_buf_append(&l->modes, &mode, sizeof(mode));
	l->n++;
}

static int list_child(void *ctx, const char *name, const char *id)
{
	list_add(ctx, name, id ? S_IFREG : S_IFDIR);
	return 0;
}

static int build_listing(struct lfs_fpfs *fs, struct node *n, struct listing *l)
{
	list_add(l, ".", S_IFDIR);
	list_add(l, "..", S_IFDIR);
	if (n->k == K_ROOT) {
		char **v;
		size_t nv;
		int rc = lfs_fp_list(&v, &nv, fs->o->storage);
		if (rc)
			return rc;
		for (size_t i = 0; i < nv; i++) {
			list_add(l, v[i], S_IFDIR);
			free(v[i]);
		}
		free(v);
		return 0;
	}
	if (n->k == K_CTLDIR) {
		for (size_t i = 0; i < 4; i++)
			list_add(l, ctl_names[i], S_IFREG);
		return 0;
	}
	struct lfs_fp_state *s = fpl_state(n->lg);
	if (n->k == K_LEDGER) {
		list_add(l, ".ledgerfs", S_IFDIR);
		list_add(l, ".snapshots", S_IFDIR);
	}
	if (!s)
		return 0;
	int rc = 0;
	if (n->k == K_LEDGER || n->k == K_SNAP || n->k == K_FOLDER ||
	    n->k == K_SNAPFOLDER) {
		struct lfs_arena a;
		lfs_arena_init(&a, 0);
		struct lfs_fp_doc *d;
		size_t nd;
		bool owned;
		rc = dir_docs(n->lg, s, n, &a, &d, &nd, &owned);
		if (!rc) {
			struct lfs_idtree_list dl = doc_list(d, nd);
			rc = lfs_idtree_list_children(&dl, dir_path(n),
						      list_child, l);
			if (owned)
				free(d);
		}
		lfs_arena_release(&a);
	} else if (n->k == K_SNAPS) {
		list_add(l, "by-time", S_IFDIR);
		for (size_t i = 0; i < s->nevents; i++) {
			char c[LFS_CID_STRLEN + 1];
			lfs_cid_to_string(c, &s->events[i].cid);
			list_add(l, c, S_IFDIR);
		}
	} else if (n->k == K_BYTIME) {
		char(*names)[96] = bytime_names(s);
		for (size_t i = s->nevents; names && i-- > 0;)
			list_add(l, names[i], S_IFLNK);
		free(names);
	}
	lfs_fp_state_unref(s);
	return rc ? rc : l->names.err;
}

static void listing_free(struct listing *l)
{
	lfs_buf_release(&l->names);
	lfs_buf_release(&l->modes);
	free(l);
}

static void op_opendir(fuse_req_t req, fuse_ino_t ino,
		       struct fuse_file_info *fi)
{
	struct lfs_fpfs *fs = fs_of(req);
	struct node *n = node_by_ino(fs, ino);
	if (!n) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	struct listing *l = calloc(1, sizeof(*l));
	if (!l) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	lfs_buf_init(&l->names, 0);
	lfs_buf_init(&l->modes, 0);
	int rc = build_listing(fs, n, l);
	if (rc) {
		listing_free(l);
		fuse_reply_err(req, -rc);
		return;
	}
	fi->fh = (uint64_t)(uintptr_t)l;
	fuse_reply_open(req, fi);
}

static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi)
{
	struct listing *l = (struct listing *)(uintptr_t)fi->fh;
	char *buf = malloc(size);
	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	size_t used = 0, pos = 0;
	const char *p = (const char *)l->names.data;
	for (size_t i = 0; i < l->n; i++) {
		size_t len = strlen(p + pos);
		if ((off_t)i >= off) {
			struct stat st = {.st_ino = (ino_t)i + 2};
			memcpy(&st.st_mode,
			       l->modes.data + i * sizeof(st.st_mode),
			       sizeof(st.st_mode));
			size_t need =
				fuse_add_direntry(req, buf + used, size - used,
						  p + pos, &st, (off_t)i + 1);
			if (need > size - used)
				break;
			used += need;
		}
		pos += len + 1;
	}
	fuse_reply_buf(req, buf, used);
	free(buf);
	(void)ino;
}

static void op_releasedir(fuse_req_t req, fuse_ino_t ino,
			  struct fuse_file_info *fi)
{
	listing_free((struct listing *)(uintptr_t)fi->fh);
	fuse_reply_err(req, 0);
	(void)ino;
}

/* ---- files ---- */

static void refuse(fuse_req_t req, struct fpl *lg, const char *op,
		   const char *name)
{
	fpl_error(lg, "refused %s %s%s%s: %s", op, lg ? lg->name : "",
		  lg && name ? "/" : "", name ? name : "", READONLY_WHY);
	fuse_reply_err(req, EROFS);
}

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct lfs_fpfs *fs = fs_of(req);
	struct node *n = node_by_ino(fs, ino);
	if (!n) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	if ((fi->flags & O_ACCMODE) != O_RDONLY || (fi->flags & O_TRUNC)) {
		refuse(req, n->lg, "writing", n->name);
		return;
	}
	struct handle *h = calloc(1, sizeof(*h));
	if (!h) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	lfs_buf_init(&h->b, 0);
	int rc = n->k == K_CTL ? ctl_content(fs, n->lg, n->name, &h->b)
			       : node_doc(fs, n, &h->b, NULL);
	if (rc) {
		lfs_buf_release(&h->b);
		free(h);
		fuse_reply_err(req, -rc);
		return;
	}
	fi->fh = (uint64_t)(uintptr_t)h;
	fi->direct_io = n->k == K_CTL;
	fi->keep_cache = 0;
	fuse_reply_open(req, fi);
}

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		    struct fuse_file_info *fi)
{
	struct handle *h = (struct handle *)(uintptr_t)fi->fh;
	size_t o = (size_t)off;
	if (o >= h->b.len)
		fuse_reply_buf(req, NULL, 0);
	else
		fuse_reply_buf(req, (const char *)h->b.data + o,
			       size < h->b.len - o ? size : h->b.len - o);
	(void)ino;
}

/* Free the handles released long enough ago (all, when force). */
static void bury(struct lfs_fpfs *fs, bool force)
{
	int64_t now = now_ms();
	pthread_mutex_lock(&fs->grave_lock);
	struct handle **pp = &fs->graves, *old = NULL;
	while (*pp && !force && now - (*pp)->released_ms < GRAVE_MS)
		pp = &(*pp)->next;
	old = *pp;
	*pp = NULL;
	pthread_mutex_unlock(&fs->grave_lock);
	while (old) {
		struct handle *next = old->next;
		lfs_buf_release(&old->b);
		free(old);
		old = next;
	}
}

static void op_release(fuse_req_t req, fuse_ino_t ino,
		       struct fuse_file_info *fi)
{
	struct lfs_fpfs *fs = fs_of(req);
	struct handle *h = (struct handle *)(uintptr_t)fi->fh;
	h->released_ms = now_ms();
	pthread_mutex_lock(&fs->grave_lock);
	h->next = fs->graves;
	fs->graves = h;
	pthread_mutex_unlock(&fs->grave_lock);
	fuse_reply_err(req, 0);
	(void)ino;
}

/* ---- everything that would change something ---- */

static struct fpl *lg_of(fuse_req_t req, fuse_ino_t ino)
{
	struct node *n = node_by_ino(fs_of(req), ino);
	return n ? n->lg : NULL;
}

static void op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name,
		     mode_t mode)
{
	refuse(req, lg_of(req, parent), "mkdir", name);
	(void)mode;
}

static void op_mknod(fuse_req_t req, fuse_ino_t parent, const char *name,
		     mode_t mode, dev_t rdev)
{
	refuse(req, lg_of(req, parent), "mknod", name);
	(void)mode, (void)rdev;
}

static void op_create(fuse_req_t req, fuse_ino_t parent, const char *name,
		      mode_t mode, struct fuse_file_info *fi)
{
	refuse(req, lg_of(req, parent), "creating", name);
	(void)mode, (void)fi;
}

static void op_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	refuse(req, lg_of(req, parent), "removing", name);
}

static void op_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	refuse(req, lg_of(req, parent), "rmdir", name);
}

static void op_rename(fuse_req_t req, fuse_ino_t parent, const char *name,
		      fuse_ino_t newparent, const char *newname,
		      unsigned int flags)
{
	refuse(req, lg_of(req, parent), "renaming", name);
	(void)newparent, (void)newname, (void)flags;
}

static void op_symlink(fuse_req_t req, const char *link, fuse_ino_t parent,
		       const char *name)
{
	refuse(req, lg_of(req, parent), "symlink", name);
	(void)link;
}

static void op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent,
		    const char *newname)
{
	refuse(req, lg_of(req, newparent), "link", newname);
	(void)ino;
}

static void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr,
		       int to_set, struct fuse_file_info *fi)
{
	struct node *n = node_by_ino(fs_of(req), ino);
	refuse(req, n ? n->lg : NULL, "changing attributes of",
	       n ? n->name : NULL);
	(void)attr, (void)to_set, (void)fi;
}

static void op_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name,
			const char *value, size_t size, int flags)
{
	refuse(req, lg_of(req, ino), "setxattr", name);
	(void)value, (void)size, (void)flags;
}

static void op_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
	refuse(req, lg_of(req, ino), "removexattr", name);
}

static const struct fuse_lowlevel_ops ops = {
	.lookup = op_lookup,
	.getattr = op_getattr,
	.readlink = op_readlink,
	.opendir = op_opendir,
	.readdir = op_readdir,
	.releasedir = op_releasedir,
	.open = op_open,
	.read = op_read,
	.release = op_release,
	.mkdir = op_mkdir,
	.mknod = op_mknod,
	.create = op_create,
	.unlink = op_unlink,
	.rmdir = op_rmdir,
	.rename = op_rename,
	.symlink = op_symlink,
	.link = op_link,
	.setattr = op_setattr,
	.setxattr = op_setxattr,
	.removexattr = op_removexattr,
};

/* ---- the poll thread and the daemon ---- */

static void *poller(void *arg)
{
	struct lfs_fpfs *fs = arg;
	pthread_mutex_lock(&fs->hk_lock);
	while (!fs->stop) {
		struct timespec t;
		clock_gettime(CLOCK_REALTIME, &t);
		int64_t ns = t.tv_nsec + (int64_t)fs->o->poll_ms * 1000000;
		t.tv_sec += ns / 1000000000;
		t.tv_nsec = ns % 1000000000;
		pthread_cond_timedwait(&fs->hk_cond, &fs->hk_lock, &t);
		if (fs->stop)
			break;
		pthread_mutex_unlock(&fs->hk_lock);
		pthread_mutex_lock(&fs->lock);
		size_t n = fs->nledgers;
		struct fpl **v = malloc((n + 1) * sizeof(*v));
		if (v && n)
			memcpy(v, fs->ledgers, n * sizeof(*v));
		pthread_mutex_unlock(&fs->lock);
		for (size_t i = 0; v && i < n; i++)
			fpl_refresh(fs, v[i]);
		free(v);
		bury(fs, false);
		pthread_mutex_lock(&fs->hk_lock);
	}
	pthread_mutex_unlock(&fs->hk_lock);
	return NULL;
}

static void fs_free(struct lfs_fpfs *fs)
{
	if (fs->hk_running) {
		pthread_mutex_lock(&fs->hk_lock);
		fs->stop = true;
		pthread_cond_signal(&fs->hk_cond);
		pthread_mutex_unlock(&fs->hk_lock);
		pthread_join(fs->hk, NULL);
	}
	for (size_t i = 0; i < fs->nledgers; i++) {
		struct fpl *lg = fs->ledgers[i];
		lfs_fp_state_unref(lg->seen);
		lfs_fp_ledger_close(lg->l);
		lfs_buf_release(&lg->changes);
		for (size_t k = 0; k < ERRORS_KEPT; k++)
			free(lg->errors[k]);
		pthread_mutex_destroy(&lg->lock);
		free(lg->name);
		free(lg);
	}
	free(fs->ledgers);
	for (size_t i = 0; i < fs->nnodes; i++) {
		free(fs->nodes[i]->name);
		free(fs->nodes[i]->key);
		free(fs->nodes[i]);
	}
	free(fs->nodes);
	free(fs->slots);
	lfs_cidmap_release(&fs->sizes);
	bury(fs, true);
	pthread_mutex_destroy(&fs->grave_lock);
	pthread_mutex_destroy(&fs->lock);
	pthread_mutex_destroy(&fs->size_lock);
	pthread_mutex_destroy(&fs->hk_lock);
	pthread_cond_destroy(&fs->hk_cond);
	free(fs);
}

int lfs_fpfs_main(const struct lfs_fpfs_opts *o)
{
	struct stat st;
	if (stat(o->storage, &st) || !S_ISDIR(st.st_mode)) {
		fprintf(stderr,
			"ledgerfs mount: the Fireproof storage %s is not a "
			"directory (--fireproof DIR names the folder of "
			"FP_STORAGE_URL)\n",
			o->storage);
		return 1;
	}
	struct lfs_fpfs *fs = calloc(1, sizeof(*fs));
	if (!fs)
		return 1;
	fs->o = o;
	pthread_mutex_init(&fs->lock, NULL);
	pthread_mutex_init(&fs->grave_lock, NULL);
	pthread_mutex_init(&fs->size_lock, NULL);
	pthread_mutex_init(&fs->hk_lock, NULL);
	pthread_cond_init(&fs->hk_cond, NULL);
	lfs_cidmap_init(&fs->sizes);
	int status = 1;
	struct fuse_session *se = NULL;
	if (!node_get(fs, K_ROOT, NULL, NULL, NULL)) {
		fs_free(fs);
		return 1;
	}
	lfs_log_setup(o->level, o->use_syslog || !o->foreground);
	char optbuf[1024];
	snprintf(optbuf, sizeof(optbuf),
		 "fsname=fireproof,subtype=ledgerfs,default_permissions%s%s",
		 o->fuse_opts ? "," : "", o->fuse_opts ? o->fuse_opts : "");
	char *fargv[] = {(char *)o->argv0, "-o", optbuf, NULL};
	struct fuse_args args = FUSE_ARGS_INIT(3, fargv);
	se = fuse_session_new(&args, &ops, sizeof(ops), fs);
	if (!se) {
		fprintf(stderr, "ledgerfs mount: bad FUSE options '%s'\n",
			optbuf);
		goto out;
	}
	if (fuse_set_signal_handlers(se)) {
		fprintf(stderr, "ledgerfs mount: cannot set signal handlers\n");
		goto out;
	}
	if (fuse_session_mount(se, o->mountpoint)) {
		fprintf(stderr, "ledgerfs mount: mounting on %s failed\n",
			o->mountpoint);
		fuse_remove_signal_handlers(se);
		goto out;
	}
	if (fuse_daemonize(o->foreground)) {
		fuse_session_unmount(se);
		fuse_remove_signal_handlers(se);
		goto out;
	}
	fs->se = se;
	lfs_info("mounted the Fireproof storage %s (keybag %s) on %s, "
		 "read-only",
		 o->storage, o->keybag, o->mountpoint);
	if (pthread_create(&fs->hk, NULL, poller, fs)) {
		lfs_error("cannot start the poll thread");
	} else {
		fs->hk_running = true;
		struct fuse_loop_config *cfg = fuse_loop_cfg_create();
		fuse_loop_cfg_set_clone_fd(cfg, 0);
		fuse_loop_cfg_set_max_threads(cfg, 16);
		status = fuse_session_loop_mt(se, cfg) < 0 ? 1 : 0;
		fuse_loop_cfg_destroy(cfg);
	}
	/* No invalidation may race the unmount. */
	pthread_mutex_lock(&fs->hk_lock);
	fs->stop = true;
	pthread_cond_signal(&fs->hk_cond);
	pthread_mutex_unlock(&fs->hk_lock);
	if (fs->hk_running) {
		pthread_join(fs->hk, NULL);
		fs->hk_running = false;
	}
	fuse_session_unmount(se);
	fuse_remove_signal_handlers(se);
	lfs_info("unmounted %s", o->mountpoint);
out:
	if (se)
		fuse_session_destroy(se);
	fuse_opt_free_args(&args);
	fs_free(fs);
	return status;
}
