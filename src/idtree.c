#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "idtree.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "fsname.h"

void lfs_idtree_init(struct lfs_idtree *t)
{
	memset(t, 0, sizeof(*t));
	pthread_mutex_init(&t->lock, NULL);
}

static void drop_ids(struct lfs_idtree *t)
{
	for (size_t i = 0; i < t->n; i++)
		free(t->ids[i]);
	free(t->ids);
	t->ids = NULL;
	t->n = 0;
	t->valid = false;
}

void lfs_idtree_release(struct lfs_idtree *t)
{
	drop_ids(t);
	pthread_mutex_destroy(&t->lock);
}

static int str_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* A list of ids being gathered (malloc'd strings). */
struct idlist {
	char **v;
	size_t n, cap;
};

static int idlist_add(struct idlist *l, const char *id)
{
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 64;
		char **v = realloc(l->v, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		l->v = v;
		l->cap = cap;
	}
	if (!(l->v[l->n] = strdup(id)))
		return -ENOMEM;
	l->n++;
	return 0;
}

static void idlist_free(struct idlist *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
}

static int each_fn(void *ctx, const struct lfs_index_entry *e)
{
	return idlist_add(ctx, e->id);
}

struct diff_ctx {
	struct idlist added, removed;
};

static int diff_fn(void *ctx, const struct lfs_index_entry *ea,
		   const struct lfs_index_entry *eb)
{
	struct diff_ctx *c = ctx;
	if (ea && !eb)
		return idlist_add(&c->removed, ea->id);
	if (eb && !ea)
		return idlist_add(&c->added, eb->id);
	return 0;
}

/* Merge the sorted added ids into t's, less the removed ones. */
static int merge(struct lfs_idtree *t, struct diff_ctx *c)
{
	if (c->added.n > 1)
		qsort(c->added.v, c->added.n, sizeof(char *), str_cmp);
	if (c->removed.n > 1)
		qsort(c->removed.v, c->removed.n, sizeof(char *), str_cmp);
	size_t cap = t->n + c->added.n;
	char **v = malloc((cap ? cap : 1) * sizeof(*v));
	if (!v)
		return -ENOMEM;
	size_t i = 0, j = 0, r = 0, n = 0;
	while (i < t->n || j < c->added.n) {
		bool take_old =
			j == c->added.n ||
			(i < t->n && strcmp(t->ids[i], c->added.v[j]) < 0);
		if (!take_old) {
			v[n++] = c->added.v[j];
			c->added.v[j++] = NULL;
			continue;
		}
		char *id = t->ids[i++];
		while (r < c->removed.n && strcmp(c->removed.v[r], id) < 0)
			r++;
		if (r < c->removed.n && !strcmp(c->removed.v[r], id))
			free(id);
		else
			v[n++] = id;
	}
	free(t->ids);
	t->ids = v;
	t->n = n;
	return 0;
}

/* Bring t to root. Caller holds t->lock. */
static int update(struct lfs_idtree *t, const struct lfs_index *ix,
		  const struct lfs_cid *root)
{
	if (t->valid && lfs_cid_equal(&t->root, root))
		return 0;
	struct diff_ctx c = {{0}, {0}};
	int rc;
	if (t->valid) {
		rc = lfs_index_diff(ix, &t->root, root, diff_fn, &c);
	} else {
		drop_ids(t);
		rc = lfs_index_each(ix, root, each_fn, &c.added);
	}
	if (!rc)
		rc = merge(t, &c);
	idlist_free(&c.added);
	idlist_free(&c.removed);
	if (rc) {
		drop_ids(t);
		return rc;
	}
	t->root = *root;
	t->valid = true;
	return 0;
}

/* The first index whose id is >= key. */
static size_t lower(const struct lfs_idtree *t, const char *key)
{
	size_t lo = 0, hi = t->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (strcmp(t->ids[mid], key) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* The first index past the ids that start with prefix. */
static size_t upper_prefix(const struct lfs_idtree *t, size_t from,
			   const char *prefix, size_t len)
{
	size_t lo = from, hi = t->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (strncmp(t->ids[mid], prefix, len) <= 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* The id prefix of folder path, with its '/' ("" for the top). */
static int folder_prefix(char out[LFS_INDEX_ID_MAX + 2], const char *path)
{
	if (!path[0]) {
		out[0] = '\0';
		return 0;
	}
	if (!lfs_fsname_folder_to_prefix(out, LFS_INDEX_ID_MAX + 1, path))
		return -ENOENT;
	strcat(out, "/");
	return 0;
}

/* The part of id's path under folder path (plen bytes), or NULL. */
static const char *under(char buf[LFS_FSPATH_MAX + 1], const char *id,
			 const char *path, size_t plen)
{
	if (lfs_fsname_path_from_id(buf, id) < 0)
		return NULL;
	if (!plen)
		return buf;
	if (strncmp(buf, path, plen) != 0 || buf[plen] != '/')
		return NULL;
	return buf + plen + 1;
}

/* Where the separator that ends id's segment starting at `from` is. */
static size_t next_sep(const char *id, size_t from)
{
	for (size_t i = from; id[i]; i++)
		if (id[i] == '/' && i > 0 && id[i - 1] != '/' && id[i + 1] &&
		    id[i + 1] != '/')
			return i;
	return 0;
}

struct seen {
	char **v;
	size_t n;
};

static bool seen_has(const struct seen *s, const char *name, size_t len)
{
	for (size_t i = 0; i < s->n; i++)
		if (!strncmp(s->v[i], name, len) && !s->v[i][len])
			return true;
	return false;
}

int lfs_idtree_children(struct lfs_idtree *t, const struct lfs_index *ix,
			const struct lfs_cid *root, const char *path,
			lfs_idtree_child_fn fn, void *ctx)
{
	char prefix[LFS_INDEX_ID_MAX + 2], buf[LFS_FSPATH_MAX + 1];
	int rc = folder_prefix(prefix, path);
	if (rc)
		return rc;
	size_t pl = strlen(prefix), plen = strlen(path);
	struct seen seen = {0};
	pthread_mutex_lock(&t->lock);
	rc = update(t, ix, root);
	size_t i = rc ? t->n : lower(t, prefix);
	size_t end = rc ? t->n : upper_prefix(t, i, prefix, pl);
	while (!rc && i < end) {
		const char *id = t->ids[i];
		const char *rest = under(buf, id, path, plen);
		char *slash = rest ? strchr(rest, '/') : NULL;
		if (!rest || (!slash && !(rc = fn(ctx, rest, id)))) {
			i++;
			continue;
		}
		if (rc)
			break;
		size_t len = (size_t)(slash - rest);
		if (seen_has(&seen, rest, len)) {
			i++;
			continue;
		}
		char **v = realloc(seen.v, (seen.n + 1) * sizeof(char *));
		if (!v || !(v[seen.n] = strndup(rest, len))) {
			if (v)
				seen.v = v;
			rc = -ENOMEM;
			break;
		}
		seen.v = v;
		rc = fn(ctx, seen.v[seen.n++], NULL);
		/* Skip the folder's ids unless some of them (an id Q, or
		 * those starting with "Q/") are names of this folder. */
		size_t s = next_sep(id, pl);
		char q[LFS_INDEX_ID_MAX + 3];
		if (!s || s + 2 > sizeof(q)) {
			i++;
			continue;
		}
		memcpy(q, id, s + 1);
		q[s + 1] = '/';
		q[s + 2] = '\0';
		size_t odd = lower(t, q);
		size_t past = upper_prefix(t, i, q, s + 1);
		if (odd < past && !strncmp(t->ids[odd], q, s + 2))
			i++;
		else
			i = past;
	}
	pthread_mutex_unlock(&t->lock);
	for (size_t k = 0; k < seen.n; k++)
		free(seen.v[k]);
	free(seen.v);
	return rc;
}

int lfs_idtree_has_folder(struct lfs_idtree *t, const struct lfs_index *ix,
			  const struct lfs_cid *root, const char *path,
			  bool *out)
{
	char prefix[LFS_INDEX_ID_MAX + 2], buf[LFS_FSPATH_MAX + 1];
	*out = false;
	if (folder_prefix(prefix, path))
		return 0;
	size_t pl = strlen(prefix), plen = strlen(path);
	pthread_mutex_lock(&t->lock);
	int rc = update(t, ix, root);
	for (size_t i = rc ? t->n : lower(t, prefix);
	     i < t->n && !strncmp(t->ids[i], prefix, pl) && !*out; i++)
		*out = under(buf, t->ids[i], path, plen) != NULL;
	pthread_mutex_unlock(&t->lock);
	return rc;
}

int lfs_idtree_under(struct lfs_idtree *t, const struct lfs_index *ix,
		     const struct lfs_cid *root, const char *path,
		     lfs_idtree_doc_fn fn, void *ctx)
{
	char prefix[LFS_INDEX_ID_MAX + 2], buf[LFS_FSPATH_MAX + 1];
	int rc = folder_prefix(prefix, path);
	if (rc)
		return rc;
	size_t pl = strlen(prefix), plen = strlen(path);
	pthread_mutex_lock(&t->lock);
	rc = update(t, ix, root);
	for (size_t i = rc ? t->n : lower(t, prefix);
	     !rc && i < t->n && !strncmp(t->ids[i], prefix, pl); i++)
		if (under(buf, t->ids[i], path, plen))
			rc = fn(ctx, t->ids[i], buf);
	pthread_mutex_unlock(&t->lock);
	return rc;
}
