#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "merge.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"

/*
 * How the merge decides, per id, with the states s_0..s_{n-1} the heads
 * record for it (an entry, or absent):
 *
 *   A version v (the cur of some s_i) is superseded when some head h_j
 *   knows v's write (the event with v's t and writer is h_j or one of its
 *   ancestors) and yet records something else for the id: h_j saw v and
 *   moved past it (a later write, a delete, or a merge v lost). The live
 *   versions are those not superseded. With live versions the greatest
 *   wins and the other live versions, plus the losers every live state
 *   carries, become its conflicts; with none, some head deleted the id
 *   after seeing every version, and the result is absent.
 *
 * Knowing a write is answered first from the states themselves (h_j lists
 * v among its losers), then from the merge bases (a version recorded by a
 * common ancestor is known to every head), and only then by walking the
 * DAG down to the oldest version still in question (lfs_clock_known).
 */

struct rec {
	const char *id;
	size_t id_len;
	size_t head;
	struct lfs_index_entry *e0; /* head 0's entry, NULL: absent */
	struct lfs_index_entry *e;  /* this head's entry, NULL: absent */
};

struct collect {
	struct lfs_arena *a;
	struct rec *r;
	size_t n, cap;
	size_t head;
};

/* One version whose knowers are asked about. */
struct query {
	size_t group;
	const struct lfs_version *v;
	bool all;        /* known to every head */
	uint64_t *known; /* `words` words: bit j when head j knows it */
};

struct group {
	size_t first;                      /* its first record */
	const struct lfs_index_entry **st; /* n states */
	size_t qfirst, qcount;             /* the versions they name */
};

static struct lfs_index_entry *copy_entry(struct lfs_arena *a,
					  const struct lfs_index_entry *e)
{
	if (!e)
		return NULL;
	struct lfs_index_entry *c = lfs_arena_alloc(a, sizeof(*c));
	if (!c || lfs_index_entry_copy(c, a, e))
		return NULL;
	return c;
}

static int collect_fn(void *ctx, const struct lfs_index_entry *ea,
		      const struct lfs_index_entry *eb)
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
	const struct lfs_index_entry *src = eb ? eb : ea;
	r->id = lfs_arena_strndup(c->a, src->id, src->id_len);
	r->id_len = src->id_len;
	r->e0 = copy_entry(c->a, ea);
	r->e = copy_entry(c->a, eb);
	if (!r->id || (ea && !r->e0) || (eb && !r->e))
		return -ENOMEM;
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

static bool lists(const struct lfs_index_entry *e, const struct lfs_version *v)
{
	if (!e)
		return false;
	if (version_same(&e->cur, v))
		return true;
	for (size_t i = 0; i < e->nconflicts; i++)
		if (version_same(&e->conflicts[i], v))
			return true;
	return false;
}

struct merge {
	const struct lfs_index *ix;
	const struct lfs_blocks *events;
	const struct lfs_cid *heads;
	size_t n, words;
	struct lfs_arena a;
	struct collect c;
	struct group *g;
	size_t ng;
	struct query *q;
	size_t nq, qcap;
	struct lfs_cid *bases;
	size_t nbases;
	bool have_bases;
};

static int add_query(struct merge *m, size_t *out, size_t group,
		     const struct lfs_version *v)
{
	if (m->nq == m->qcap) {
		size_t cap = m->qcap ? m->qcap * 2 : 64;
		void *p = realloc(m->q, cap * sizeof(*m->q));
		if (!p)
			return -ENOMEM;
		m->q = p;
		m->qcap = cap;
	}
	struct query *q = &m->q[m->nq];
	memset(q, 0, sizeof(*q));
	q->group = group;
	q->v = v;
	q->known = lfs_arena_calloc(&m->a, m->words, sizeof(uint64_t));
	if (!q->known)
		return -ENOMEM;
	*out = m->nq++;
	return 0;
}

static int query_version(struct merge *m, size_t group,
			 const struct lfs_version *v)
{
	for (size_t k = m->g[group].qfirst; k < m->nq; k++)
		if (version_same(m->q[k].v, v))
			return 0;
	size_t idx;
	return add_query(m, &idx, group, v);
}

/* Group the records by id; every version a state names gets a query. */
static int build_groups(struct merge *m)
{
	struct rec *r = m->c.r;
	m->g = calloc(m->c.n + 1, sizeof(*m->g));
	if (!m->g)
		return -ENOMEM;
	for (size_t i = 0; i < m->c.n;) {
		size_t j = i + 1;
		while (j < m->c.n && r[j].id_len == r[i].id_len &&
		       !memcmp(r[j].id, r[i].id, r[i].id_len))
			j++;
		struct group *g = &m->g[m->ng];
		g->first = i;
		g->qfirst = m->nq;
		g->st = lfs_arena_calloc(&m->a, m->n, sizeof(*g->st));
		if (!g->st)
			return -ENOMEM;
		for (size_t h = 0; h < m->n; h++)
			g->st[h] = r[i].e0;
		for (size_t k = i; k < j; k++)
			g->st[r[k].head] = r[k].e;
		int rc = 0;
		for (size_t h = 0; h < m->n && !rc; h++) {
			const struct lfs_index_entry *e = g->st[h];
			if (!e)
				continue;
			rc = query_version(m, m->ng, &e->cur);
			for (size_t c = 0; c < e->nconflicts && !rc; c++)
				rc = query_version(m, m->ng, &e->conflicts[c]);
		}
		if (rc)
			return rc;
		g->qcount = m->nq - g->qfirst;
		m->ng++;
		i = j;
	}
	return 0;
}

/* Does some head record something other than q's version, not listing it? */
static bool in_question(const struct merge *m, const struct query *q)
{
	const struct group *g = &m->g[q->group];
	for (size_t h = 0; h < m->n; h++)
		if (!lists(g->st[h], q->v))
			return true;
	return false;
}

/* Versions a common ancestor records are known to every head. */
static int ask_bases(struct merge *m)
{
	int rc = 0;
	for (size_t k = 0; k < m->nq && !rc; k++) {
		struct query *q = &m->q[k];
		if (!in_question(m, q))
			continue;
		if (!m->have_bases) {
			rc = lfs_clock_merge_bases(&m->bases, &m->nbases,
						   m->events, m->heads, m->n);
			if (rc)
				break;
			m->have_bases = true;
		}
		const struct group *g = &m->g[q->group];
		const struct rec *r = &m->c.r[g->first];
		for (size_t b = 0; b < m->nbases && !q->all && !rc; b++) {
			struct lfs_arena_mark mk = lfs_arena_mark(&m->a);
			struct lfs_event ev;
			struct lfs_index_entry e;
			rc = lfs_event_load(&ev, &m->a, m->events,
					    &m->bases[b]);
			if (!rc)
				rc = lfs_index_get(&e, &m->a, m->ix, &ev.root,
						   r->id, r->id_len);
			if (!rc)
				q->all = lists(&e, q->v);
			if (rc == -ENOENT)
				rc = 0;
			lfs_arena_rewind(&m->a, mk);
		}
	}
	return rc;
}

/* The rest are answered by walking the DAG. */
static int ask_clock(struct merge *m)
{
	struct lfs_clock_write *w = calloc(m->nq + 1, sizeof(*w));
	size_t *which = calloc(m->nq + 1, sizeof(*which));
	uint64_t *known = NULL;
	size_t nw = 0;
	int rc = w && which ? 0 : -ENOMEM;
	for (size_t k = 0; k < m->nq && !rc; k++) {
		if (m->q[k].all || !in_question(m, &m->q[k]))
			continue;
		w[nw] = (struct lfs_clock_write){m->q[k].v->t,
						 m->q[k].v->writer};
		which[nw++] = k;
	}
	if (!rc && nw) {
		known = calloc(nw * m->words, sizeof(*known));
		rc = known ? lfs_clock_known(known, m->events, m->heads, m->n,
					     w, nw)
			   : -ENOMEM;
	}
	for (size_t k = 0; k < nw && !rc; k++)
		memcpy(m->q[which[k]].known, known + k * m->words,
		       m->words * sizeof(*known));
	free(known);
	free(w);
	free(which);
	return rc;
}

static bool knows(const struct group *g, size_t h, const struct query *q)
{
	return q->all || lists(g->st[h], q->v) ||
	       (q->known[h / 64] >> (h % 64) & 1);
}

/*
 * The merged entry of one group; *out NULL: absent. A version stays in play
 * unless a head knows it and does not list it (that head moved past it).
 */
static int resolve(struct lfs_index_entry **out, struct merge *m,
		   const struct group *g)
{
	const struct lfs_index_entry **st = g->st;
	struct lfs_version *v =
		lfs_arena_calloc(&m->a, g->qcount + m->n + 1, sizeof(*v));
	struct lfs_index_entry *e = lfs_arena_alloc(&m->a, sizeof(*e));
	if (!v || !e)
		return -ENOMEM;
	size_t nv = 0;
	bool absent = false;
	for (size_t h = 0; h < m->n; h++)
		absent |= !st[h];
	for (size_t k = g->qfirst; k < g->qfirst + g->qcount; k++) {
		const struct query *q = &m->q[k];
		bool moved_past = false;
		for (size_t h = 0; h < m->n && !moved_past; h++)
			moved_past = knows(g, h, q) && !lists(st[h], q->v);
		if (!moved_past)
			v[nv++] = *q->v;
	}
	if (!nv && absent) {
		*out = NULL;
		return 0;
	}
	if (!nv) /* states that contradict each other: keep every cur */
		for (size_t h = 0; h < m->n; h++)
			v[nv++] = st[h]->cur;
	qsort(v, nv, sizeof(*v), version_desc);
	size_t nc = 0;
	for (size_t i = 1; i < nv && nc < LFS_MERGE_MAX_CONFLICTS; i++)
		if (!version_same(&v[i], &v[0]) &&
		    !(nc && version_same(&v[nc], &v[i])))
			v[1 + nc++] = v[i];
	const struct lfs_index_entry *proto = NULL;
	for (size_t h = 0; h < m->n && !proto; h++)
		proto = st[h];
	*e = *proto;
	e->cur = v[0];
	e->conflicts = nc ? v + 1 : NULL;
	e->nconflicts = nc;
	*out = e;
	return 0;
}

static int merge_heads(struct lfs_cid *out, struct merge *m)
{
	struct lfs_cid *roots = calloc(m->n, sizeof(*roots));
	struct lfs_index_change *ch = NULL;
	int rc = roots ? 0 : -ENOMEM;
	for (size_t i = 0; i < m->n && !rc; i++) {
		struct lfs_event ev;
		struct lfs_arena_mark mk = lfs_arena_mark(&m->a);
		if (!(rc = lfs_event_load(&ev, &m->a, m->events, &m->heads[i])))
			roots[i] = ev.root;
		lfs_arena_rewind(&m->a, mk);
	}
	for (size_t i = 1; i < m->n && !rc; i++) {
		m->c.head = i;
		rc = lfs_index_diff(m->ix, &roots[0], &roots[i], collect_fn,
				    &m->c);
	}
	if (!rc && m->c.n)
		qsort(m->c.r, m->c.n, sizeof(*m->c.r), rec_cmp);
	if (!rc)
		rc = build_groups(m);
	if (!rc)
		rc = ask_bases(m);
	if (!rc)
		rc = ask_clock(m);
	if (!rc && !(ch = calloc(m->ng + 1, sizeof(*ch))))
		rc = -ENOMEM;
	for (size_t i = 0; i < m->ng && !rc; i++) {
		struct lfs_index_entry *e;
		const struct rec *r = &m->c.r[m->g[i].first];
		if (!(rc = resolve(&e, m, &m->g[i])))
			ch[i] = (struct lfs_index_change){
				.id = r->id, .id_len = r->id_len, .entry = e};
	}
	if (!rc)
		rc = lfs_index_apply(out, m->ix, &roots[0], ch, m->ng);
	free(ch);
	free(roots);
	return rc;
}

int lfs_merge_root(struct lfs_cid *out, const struct lfs_index *ix,
		   const struct lfs_blocks *events, const struct lfs_cid *heads,
		   size_t n)
{
	if (n == 0)
		return lfs_index_empty(out, ix);
	struct merge m = {.ix = ix,
			  .events = events,
			  .heads = heads,
			  .n = n,
			  .words = (n + 63) / 64};
	lfs_arena_init(&m.a, 0);
	m.c.a = &m.a;
	int rc;
	if (n == 1) {
		struct lfs_event ev;
		if (!(rc = lfs_event_load(&ev, &m.a, events, &heads[0])))
			*out = ev.root;
	} else {
		rc = merge_heads(out, &m);
	}
	free(m.c.r);
	free(m.g);
	free(m.q);
	free(m.bases);
	lfs_arena_release(&m.a);
	return rc;
}
