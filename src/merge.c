#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "merge.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"

#define MAX_RECURSION 32

/* One head's change to one id: entry NULL means deleted on that head. */
struct rec {
	struct lfs_index_entry *entry;
	const char *id;
	size_t id_len;
	size_t head;
};

struct collect {
	struct lfs_arena *a;
	struct rec *r;
	size_t n, cap;
	size_t head;
};

static int collect_fn(void *ctx, const struct lfs_index_entry *base,
		      const struct lfs_index_entry *now)
{
	struct collect *c = ctx;
	if (c->n == c->cap) {
		size_t cap = c->cap ? c->cap * 2 : 64;
		void *p = realloc(c->r, cap * sizeof(*c->r));
		if (!p)
			return -ENOMEM;
		c->r = p;
		c->cap = cap;
	}
	struct rec *r = &c->r[c->n];
	memset(r, 0, sizeof(*r));
	r->head = c->head;
	const struct lfs_index_entry *src = now ? now : base;
	r->id = lfs_arena_strndup(c->a, src->id, src->id_len);
	r->id_len = src->id_len;
	if (!r->id)
		return -ENOMEM;
	if (now) {
		r->entry = lfs_arena_alloc(c->a, sizeof(*r->entry));
		if (!r->entry || lfs_index_entry_copy(r->entry, c->a, now))
			return -ENOMEM;
	}
	c->n++;
	return 0;
}

static int rec_cmp(const void *x, const void *y)
{
	const struct rec *a = x, *b = y;
	int c = memcmp(a->id, b->id,
		       a->id_len < b->id_len ? a->id_len : b->id_len);
	if (c)
		return c;
	if (a->id_len != b->id_len)
		return a->id_len < b->id_len ? -1 : 1;
	return a->head < b->head ? -1 : a->head > b->head;
}

static int version_desc(const void *x, const void *y)
{
	return -lfs_version_cmp(x, y);
}

static bool version_same(const struct lfs_version *a,
			 const struct lfs_version *b)
{
	return lfs_version_cmp(a, b) == 0;
}

/* Resolve the records of one id; *out NULL means delete. */
static int resolve(struct lfs_index_entry **out, struct lfs_arena *a,
		   struct rec *r, size_t n)
{
	bool agree = true;
	for (size_t i = 1; i < n && agree; i++) {
		if (!r[0].entry || !r[i].entry)
			agree = !r[0].entry && !r[i].entry;
		else
			agree = lfs_index_entry_equal(r[0].entry, r[i].entry);
	}
	if (agree) {
		*out = r[0].entry;
		return 0;
	}
	struct lfs_index_entry *win = NULL;
	size_t nv = 0;
	for (size_t i = 0; i < n; i++) {
		if (!r[i].entry)
			continue;
		nv += 1 + r[i].entry->nconflicts;
		if (!win || lfs_version_cmp(&r[i].entry->cur, &win->cur) > 0)
			win = r[i].entry;
	}
	if (!win) {
		*out = NULL;
		return 0;
	}
	struct lfs_version *v = lfs_arena_calloc(a, nv, sizeof(*v));
	if (!v)
		return -ENOMEM;
	size_t k = 0;
	for (size_t i = 0; i < n; i++) {
		struct lfs_index_entry *e = r[i].entry;
		if (!e)
			continue;
		v[k++] = e->cur;
		for (size_t j = 0; j < e->nconflicts; j++)
			v[k++] = e->conflicts[j];
	}
	qsort(v, k, sizeof(*v), version_desc);
	size_t m = 0;
	for (size_t i = 0; i < k && m < LFS_MERGE_MAX_CONFLICTS; i++) {
		if (version_same(&v[i], &win->cur) ||
		    (m && version_same(&v[m - 1], &v[i])))
			continue;
		v[m++] = v[i];
	}
	struct lfs_index_entry *e = lfs_arena_alloc(a, sizeof(*e));
	if (!e)
		return -ENOMEM;
	*e = *win;
	e->conflicts = m ? v : NULL;
	e->nconflicts = m;
	*out = e;
	return 0;
}

static int merge_at(struct lfs_cid *out, const struct lfs_index *ix,
		    const struct lfs_blocks *events,
		    const struct lfs_cid *heads, size_t n, int depth);

static int base_root(struct lfs_cid *out, const struct lfs_index *ix,
		     const struct lfs_blocks *events,
		     const struct lfs_cid *heads, size_t n, int depth)
{
	struct lfs_cid *bases;
	size_t nb;
	int rc = lfs_clock_merge_bases(&bases, &nb, events, heads, n);
	if (rc)
		return rc;
	if (nb == 0)
		rc = lfs_index_empty(out, ix);
	else
		rc = merge_at(out, ix, events, bases, nb, depth + 1);
	free(bases);
	return rc;
}

static int merge_at(struct lfs_cid *out, const struct lfs_index *ix,
		    const struct lfs_blocks *events,
		    const struct lfs_cid *heads, size_t n, int depth)
{
	if (depth > MAX_RECURSION)
		return -ELOOP;
	struct lfs_arena a;
	lfs_arena_init(&a, 0);
	int rc;
	if (n == 1) {
		struct lfs_event ev;
		rc = lfs_event_load(&ev, &a, events, &heads[0]);
		if (!rc)
			*out = ev.root;
		lfs_arena_release(&a);
		return rc;
	}
	struct lfs_cid base;
	struct collect c = {.a = &a};
	struct lfs_index_change *ch = NULL;
	if ((rc = base_root(&base, ix, events, heads, n, depth)))
		goto out;
	for (size_t i = 0; i < n; i++) {
		struct lfs_event ev;
		if ((rc = lfs_event_load(&ev, &a, events, &heads[i])))
			goto out;
		c.head = i;
		if ((rc = lfs_index_diff(ix, &base, &ev.root, collect_fn, &c)))
			goto out;
	}
	if (c.n)
		qsort(c.r, c.n, sizeof(*c.r), rec_cmp);
	ch = calloc(c.n + 1, sizeof(*ch));
	if (!ch) {
		rc = -ENOMEM;
		goto out;
	}
	size_t nch = 0;
	for (size_t i = 0; i < c.n;) {
		size_t j = i + 1;
		while (j < c.n && c.r[j].id_len == c.r[i].id_len &&
		       !memcmp(c.r[j].id, c.r[i].id, c.r[i].id_len))
			j++;
		struct lfs_index_entry *e;
		if ((rc = resolve(&e, &a, c.r + i, j - i)))
			goto out;
		ch[nch++] = (struct lfs_index_change){
			.id = c.r[i].id, .id_len = c.r[i].id_len, .entry = e};
		i = j;
	}
	rc = lfs_index_apply(out, ix, &base, ch, nch);
out:
	free(ch);
	free(c.r);
	lfs_arena_release(&a);
	return rc;
}

int lfs_merge_root(struct lfs_cid *out, const struct lfs_index *ix,
		   const struct lfs_blocks *events, const struct lfs_cid *heads,
		   size_t n)
{
	if (n == 0)
		return lfs_index_empty(out, ix);
	return merge_at(out, ix, events, heads, n, 0);
}
