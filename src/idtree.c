#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "idtree.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "fsname.h"
#include "le.h"

void lfs_idtree_init(struct lfs_idtree *t)
{
	memset(t, 0, sizeof(*t));
	pthread_mutex_init(&t->lock, NULL);
}

/* A chunk of the sorted ids: at most CHUNK, in order; every chunk but a
 * lone one holds at least one. */
#define CHUNK 256
struct lfs_idtree_chunk {
	size_t n;
	char *ids[CHUNK];
};

static void drop_ids(struct lfs_idtree *t)
{
	for (size_t c = 0; c < t->nchunks; c++) {
		for (size_t i = 0; i < t->chunks[c]->n; i++)
			free(t->chunks[c]->ids[i]);
		free(t->chunks[c]);
	}
	free(t->chunks);
	free(t->start);
	t->chunks = NULL;
	t->start = NULL;
	t->nchunks = t->cap = t->n = 0;
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

/* Room for one more chunk pointer (and its start) at the end. */
static int chunks_grow(struct lfs_idtree *t)
{
	if (t->nchunks < t->cap)
		return 0;
	size_t cap = t->cap ? t->cap * 2 : 16;
	struct lfs_idtree_chunk **c = realloc(t->chunks, cap * sizeof(*c));
	if (!c)
		return -ENOMEM;
	t->chunks = c;
	size_t *st = realloc(t->start, cap * sizeof(*st));
	if (!st)
		return -ENOMEM;
	t->start = st;
	t->cap = cap;
	return 0;
}

/* Recount where each chunk from c on starts. */
static void restart(struct lfs_idtree *t, size_t c)
{
	size_t at = c ? t->start[c - 1] + t->chunks[c - 1]->n : 0;
	for (; c < t->nchunks; c++) {
		t->start[c] = at;
		at += t->chunks[c]->n;
	}
	t->n = at;
}

/* The chunk holding index i (i < t->n), by its start. */
static size_t chunk_of(const struct lfs_idtree *t, size_t i)
{
	size_t lo = 0, hi = t->nchunks;
	while (hi - lo > 1) {
		size_t mid = lo + (hi - lo) / 2;
		if (t->start[mid] <= i)
			lo = mid;
		else
			hi = mid;
	}
	return lo;
}

static const char *tree_at(const void *ctx, size_t i)
{
	const struct lfs_idtree *t = ctx;
	size_t c = chunk_of(t, i);
	return t->chunks[c]->ids[i - t->start[c]];
}

static struct lfs_idtree_list tree_list(const struct lfs_idtree *t)
{
	return (struct lfs_idtree_list){.at = tree_at, .ctx = t, .n = t->n};
}

static size_t list_lower(const struct lfs_idtree_list *l, const char *key);

/* Insert id (taken) at its place. */
static int insert(struct lfs_idtree *t, char *id)
{
	if (!t->nchunks) {
		if (chunks_grow(t) ||
		    !(t->chunks[0] = calloc(1, sizeof(*t->chunks[0]))))
			return -ENOMEM;
		t->nchunks = 1;
		t->start[0] = 0;
	}
	struct lfs_idtree_list l = tree_list(t);
	size_t i = list_lower(&l, id);
	size_t c = i == t->n ? t->nchunks - 1 : chunk_of(t, i);
	struct lfs_idtree_chunk *k = t->chunks[c];
	size_t at = i - t->start[c];
	if (k->n == CHUNK) { /* split in halves */
		struct lfs_idtree_chunk *h = calloc(1, sizeof(*h));
		if (!h || chunks_grow(t)) {
			free(h);
			return -ENOMEM;
		}
		h->n = CHUNK / 2;
		memcpy(h->ids, k->ids + CHUNK / 2, h->n * sizeof(char *));
		k->n = CHUNK / 2;
		memmove(t->chunks + c + 2, t->chunks + c + 1,
			(t->nchunks - c - 1) * sizeof(*t->chunks));
		t->chunks[c + 1] = h;
		t->nchunks++;
		if (at > k->n) {
			at -= k->n;
			k = h;
			c++;
		}
	}
	memmove(k->ids + at + 1, k->ids + at, (k->n - at) * sizeof(char *));
	k->ids[at] = id;
	k->n++;
	restart(t, c);
	return 0;
}

/* Remove id if present. */
static void erase(struct lfs_idtree *t, const char *id)
{
	struct lfs_idtree_list l = tree_list(t);
	size_t i = list_lower(&l, id);
	if (i == t->n)
		return;
	size_t c = chunk_of(t, i);
	struct lfs_idtree_chunk *k = t->chunks[c];
	size_t at = i - t->start[c];
	if (strcmp(k->ids[at], id))
		return;
	free(k->ids[at]);
	memmove(k->ids + at, k->ids + at + 1, (k->n - at - 1) * sizeof(char *));
	if (--k->n == 0 && t->nchunks > 1) {
		free(k);
		memmove(t->chunks + c, t->chunks + c + 1,
			(t->nchunks - c - 1) * sizeof(*t->chunks));
		t->nchunks--;
	}
	restart(t, c < t->nchunks ? c : t->nchunks - 1);
}

/* Fill t (empty) with the ids v (taken), sorted, chunks three-quarters
 * full. */
static int fill_sorted(struct lfs_idtree *t, struct idlist *v)
{
	for (size_t i = 0; i < v->n;) {
		struct lfs_idtree_chunk *k;
		if (chunks_grow(t) || !(k = calloc(1, sizeof(*k))))
			return -ENOMEM;
		k->n = v->n - i < CHUNK * 3 / 4 ? v->n - i : CHUNK * 3 / 4;
		memcpy(k->ids, v->v + i, k->n * sizeof(char *));
		memset(v->v + i, 0, k->n * sizeof(char *));
		i += k->n;
		t->chunks[t->nchunks++] = k;
	}
	restart(t, 0);
	return 0;
}

static int fill(struct lfs_idtree *t, struct idlist *v)
{
	if (v->n > 1)
		qsort(v->v, v->n, sizeof(char *), str_cmp);
	return fill_sorted(t, v);
}

/* Bring t to root: from its own root, the diff of the two roots applied
 * id by id (O(log n + CHUNK) each); the first time, or after an error, a
 * walk of the whole index. Caller holds t->lock. */
static int update(struct lfs_idtree *t, const struct lfs_index *ix,
		  const struct lfs_cid *root)
{
	if (t->valid && lfs_cid_equal(&t->root, root))
		return 0;
	struct diff_ctx c = {{0}, {0}};
	int rc = -ENOENT;
	if (t->valid) {
		rc = lfs_index_diff(ix, &t->root, root, diff_fn, &c);
		for (size_t i = 0; !rc && i < c.removed.n; i++)
			erase(t, c.removed.v[i]);
		for (size_t i = 0; !rc && i < c.added.n; i++)
			if (!(rc = insert(t, c.added.v[i])))
				c.added.v[i] = NULL;
		idlist_free(&c.added);
		idlist_free(&c.removed);
		c = (struct diff_ctx){{0}, {0}};
	}
	/* The first time, or when the diff failed (ids a mount saved at a
	 * root whose nodes a compaction removed since), a walk. */
	if (rc) {
		drop_ids(t);
		rc = lfs_index_each(ix, root, each_fn, &c.added);
		if (!rc)
			rc = fill(t, &c.added);
	}
	idlist_free(&c.added);
	if (rc) {
		drop_ids(t);
		return rc;
	}
	t->root = *root;
	t->valid = true;
	return 0;
}

/* ---- saving and taking back ---- */

#define SAVED_MAGIC "LFSIDS1\n"
#define SAVED_HEAD  (8 + LFS_CID_BYTES + 8)

int lfs_idtree_encode(struct lfs_idtree *t, struct lfs_buf *out,
		      struct lfs_cid *out_root)
{
	pthread_mutex_lock(&t->lock);
	int rc = t->valid ? 0 : -ENOENT;
	if (!rc) {
		uint8_t head[SAVED_HEAD];
		memcpy(head, SAVED_MAGIC, 8);
		lfs_cid_to_bytes(head + 8, &t->root);
		lfs_le_put64(head + 8 + LFS_CID_BYTES, t->n);
		rc = lfs_buf_append(out, head, sizeof(head));
		for (size_t c = 0; !rc && c < t->nchunks; c++)
			for (size_t i = 0; !rc && i < t->chunks[c]->n; i++)
				rc = lfs_buf_append(
					out, t->chunks[c]->ids[i],
					strlen(t->chunks[c]->ids[i]) + 1);
		*out_root = t->root;
	}
	pthread_mutex_unlock(&t->lock);
	return rc;
}

int lfs_idtree_decode(struct lfs_idtree *t, const uint8_t *p, size_t len,
		      struct lfs_cid *out_root)
{
	struct lfs_cid root;
	if (len < SAVED_HEAD || memcmp(p, SAVED_MAGIC, 8) ||
	    lfs_cid_from_bytes(&root, p + 8, LFS_CID_BYTES) != LFS_CID_BYTES)
		return -EBADMSG;
	uint64_t count = lfs_le_get64(p + 8 + LFS_CID_BYTES);
	/* Each id takes two bytes at least. */
	if (count > (len - SAVED_HEAD) / 2)
		return -EBADMSG;
	struct idlist v = {0};
	int rc = 0;
	const char *prev = NULL;
	size_t at = SAVED_HEAD;
	while (!rc && at < len) {
		const uint8_t *end = memchr(p + at, 0, len - at);
		size_t n = end ? (size_t)(end - (p + at)) : 0;
		const char *id = (const char *)p + at;
		if (!end || !n || n > LFS_INDEX_ID_MAX || v.n == count ||
		    (prev && strcmp(prev, id) >= 0))
			rc = -EBADMSG;
		else
			rc = idlist_add(&v, id);
		prev = id;
		at += n + 1;
	}
	if (!rc && v.n != count)
		rc = -EBADMSG;
	pthread_mutex_lock(&t->lock);
	if (!rc) {
		drop_ids(t);
		if ((rc = fill_sorted(t, &v)))
			drop_ids(t);
		else {
			t->root = *out_root = root;
			t->valid = true;
		}
	}
	pthread_mutex_unlock(&t->lock);
	idlist_free(&v);
	return rc;
}

/* The first index whose id is >= key. */
static size_t list_lower(const struct lfs_idtree_list *t, const char *key)
{
	size_t lo = 0, hi = t->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (strcmp(t->at(t->ctx, mid), key) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* The first index past the ids that start with prefix. */
static size_t upper_prefix(const struct lfs_idtree_list *t, size_t from,
			   const char *prefix, size_t len)
{
	size_t lo = from, hi = t->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (strncmp(t->at(t->ctx, mid), prefix, len) <= 0)
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

int lfs_idtree_list_children(const struct lfs_idtree_list *t, const char *path,
			     lfs_idtree_child_fn fn, void *ctx)
{
	char prefix[LFS_INDEX_ID_MAX + 2], buf[LFS_FSPATH_MAX + 1];
	int rc = folder_prefix(prefix, path);
	if (rc)
		return rc;
	size_t pl = strlen(prefix), plen = strlen(path);
	struct seen seen = {0};
	size_t i = list_lower(t, prefix);
	size_t end = upper_prefix(t, i, prefix, pl);
	while (!rc && i < end) {
		const char *id = t->at(t->ctx, i);
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
		size_t odd = list_lower(t, q);
		size_t past = upper_prefix(t, i, q, s + 1);
		if (odd < past && !strncmp(t->at(t->ctx, odd), q, s + 2))
			i++;
		else
			i = past;
	}
	for (size_t k = 0; k < seen.n; k++)
		free(seen.v[k]);
	free(seen.v);
	return rc;
}

bool lfs_idtree_list_has_folder(const struct lfs_idtree_list *t,
				const char *path)
{
	char prefix[LFS_INDEX_ID_MAX + 2], buf[LFS_FSPATH_MAX + 1];
	if (folder_prefix(prefix, path))
		return false;
	size_t pl = strlen(prefix), plen = strlen(path);
	for (size_t i = list_lower(t, prefix); i < t->n; i++) {
		const char *id = t->at(t->ctx, i);
		if (strncmp(id, prefix, pl))
			break;
		if (under(buf, id, path, plen))
			return true;
	}
	return false;
}

int lfs_idtree_children(struct lfs_idtree *t, const struct lfs_index *ix,
			const struct lfs_cid *root, const char *path,
			lfs_idtree_child_fn fn, void *ctx)
{
	char prefix[LFS_INDEX_ID_MAX + 2];
	int rc = folder_prefix(prefix, path);
	if (rc)
		return rc;
	pthread_mutex_lock(&t->lock);
	rc = update(t, ix, root);
	if (!rc) {
		struct lfs_idtree_list l = tree_list(t);
		rc = lfs_idtree_list_children(&l, path, fn, ctx);
	}
	pthread_mutex_unlock(&t->lock);
	return rc;
}

int lfs_idtree_update(struct lfs_idtree *t, const struct lfs_index *ix,
		      const struct lfs_cid *root)
{
	pthread_mutex_lock(&t->lock);
	int rc = update(t, ix, root);
	pthread_mutex_unlock(&t->lock);
	return rc;
}

int lfs_idtree_has_folder(struct lfs_idtree *t, const struct lfs_index *ix,
			  const struct lfs_cid *root, const char *path,
			  bool *out)
{
	*out = false;
	pthread_mutex_lock(&t->lock);
	int rc = update(t, ix, root);
	if (!rc) {
		struct lfs_idtree_list l = tree_list(t);
		*out = lfs_idtree_list_has_folder(&l, path);
	}
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
	struct lfs_idtree_list l = tree_list(t);
	for (size_t i = rc ? l.n : list_lower(&l, prefix); !rc && i < l.n;
	     i++) {
		const char *id = tree_at(t, i);
		if (strncmp(id, prefix, pl))
			break;
		if (under(buf, id, path, plen))
			rc = fn(ctx, id, buf);
	}
	pthread_mutex_unlock(&t->lock);
	return rc;
}
