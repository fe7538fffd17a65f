#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "clock.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cbor.h"
#include "cidmap.h"
#include "index.h"

static int cid_cmp_qsort(const void *a, const void *b)
{
	return lfs_cid_cmp(a, b);
}

static int op_cmp(const void *x, const void *y)
{
	const struct lfs_op *a = x, *b = y;
	int c = memcmp(a->id, b->id,
		       a->id_len < b->id_len ? a->id_len : b->id_len);
	if (c)
		return c;
	return a->id_len < b->id_len ? -1 : a->id_len > b->id_len;
}

static bool valid_id(const char *id, size_t len)
{
	return len > 0 && len <= LFS_INDEX_ID_MAX && !memchr(id, 0, len);
}

int lfs_event_encode(struct lfs_buf *out, struct lfs_event *ev)
{
	size_t wlen = strlen(ev->writer);
	if (ev->t < 0 || ev->t > LFS_CLOCK_T_MAX ||
	    ev->nparents > LFS_EVENT_MAX_PARENTS ||
	    ev->nops > LFS_EVENT_MAX_OPS || wlen > LFS_WRITER_MAX)
		return -EINVAL;
	if (ev->nparents)
		qsort(ev->parents, ev->nparents, sizeof(*ev->parents),
		      cid_cmp_qsort);
	if (ev->nops)
		qsort(ev->ops, ev->nops, sizeof(*ev->ops), op_cmp);
	for (size_t i = 0; i < ev->nparents; i++)
		if (i && lfs_cid_equal(&ev->parents[i - 1], &ev->parents[i]))
			return -EINVAL;
	for (size_t i = 0; i < ev->nops; i++)
		if (!valid_id(ev->ops[i].id, ev->ops[i].id_len) ||
		    !lfs_utf8_valid(ev->ops[i].id, ev->ops[i].id_len) ||
		    (i && op_cmp(&ev->ops[i - 1], &ev->ops[i]) == 0))
			return -EINVAL;

	lfs_cbor_put_head(out, 5, 2);
	lfs_cbor_put_string(out, "data", 4);
	lfs_cbor_put_head(out, 5, 4);
	lfs_cbor_put_string(out, "t", 1);
	lfs_cbor_put_int(out, ev->t);
	lfs_cbor_put_string(out, "w", 1);
	lfs_cbor_put_string(out, ev->writer, wlen);
	lfs_cbor_put_string(out, "ops", 3);
	lfs_cbor_put_head(out, 4, ev->nops);
	for (size_t i = 0; i < ev->nops; i++) {
		lfs_cbor_put_head(out, 4, 2);
		lfs_cbor_put_string(out, ev->ops[i].id, ev->ops[i].id_len);
		if (ev->ops[i].del)
			lfs_buf_append_byte(out, 0xf6);
		else
			lfs_cbor_put_link(out, &ev->ops[i].doc);
	}
	lfs_cbor_put_string(out, "root", 4);
	lfs_cbor_put_link(out, &ev->root);
	lfs_cbor_put_string(out, "parents", 7);
	lfs_cbor_put_head(out, 4, ev->nparents);
	for (size_t i = 0; i < ev->nparents; i++)
		lfs_cbor_put_link(out, &ev->parents[i]);
	if (out->err)
		return out->err;
	return 0;
}

static int get_event_link(struct lfs_cid *out, const struct lfs_cbor *v)
{
	if (lfs_cbor_get_link(out, v) || out->codec != LFS_CODEC_DAG_CBOR)
		return -EBADMSG;
	return 0;
}

int lfs_event_decode(struct lfs_event *out, struct lfs_arena *a,
		     const uint8_t *p, size_t len)
{
	struct lfs_cbor *v;
	int rc = lfs_cbor_decode(&v, a, p, len);
	if (rc)
		return rc == -ENOMEM ? rc : -EBADMSG;
	memset(out, 0, sizeof(*out));
	const struct lfs_cbor *data = lfs_cbor_map_get(v, "data");
	const struct lfs_cbor *parents = lfs_cbor_map_get(v, "parents");
	if (v->type != LFS_CBOR_MAP || v->u.map.count != 2 || !data ||
	    data->type != LFS_CBOR_MAP || data->u.map.count != 4 || !parents ||
	    parents->type != LFS_CBOR_ARRAY ||
	    parents->u.array.count > LFS_EVENT_MAX_PARENTS)
		return -EBADMSG;
	const struct lfs_cbor *w = lfs_cbor_map_get(data, "w");
	const struct lfs_cbor *ops = lfs_cbor_map_get(data, "ops");
	if (lfs_cbor_get_int(&out->t, lfs_cbor_map_get(data, "t")) ||
	    get_event_link(&out->root, lfs_cbor_map_get(data, "root")) || !w ||
	    w->type != LFS_CBOR_STRING || w->u.str.len > LFS_WRITER_MAX ||
	    memchr(w->u.str.data, 0, w->u.str.len) || !ops ||
	    ops->type != LFS_CBOR_ARRAY ||
	    ops->u.array.count > LFS_EVENT_MAX_OPS)
		return -EBADMSG;
	if (out->t < 0 || out->t > LFS_CLOCK_T_MAX)
		return -EBADMSG;
	out->writer = w->u.str.data;

	out->nparents = parents->u.array.count;
	out->parents =
		lfs_arena_calloc(a, out->nparents + 1, sizeof(*out->parents));
	if (!out->parents)
		return -ENOMEM;
	for (size_t i = 0; i < out->nparents; i++) {
		if (get_event_link(&out->parents[i], parents->u.array.items[i]))
			return -EBADMSG;
		if (i &&
		    lfs_cid_cmp(&out->parents[i - 1], &out->parents[i]) >= 0)
			return -EBADMSG;
	}

	out->nops = ops->u.array.count;
	out->ops = lfs_arena_calloc(a, out->nops + 1, sizeof(*out->ops));
	if (!out->ops)
		return -ENOMEM;
	for (size_t i = 0; i < out->nops; i++) {
		const struct lfs_cbor *op = ops->u.array.items[i];
		if (op->type != LFS_CBOR_ARRAY || op->u.array.count != 2)
			return -EBADMSG;
		const struct lfs_cbor *id = op->u.array.items[0];
		const struct lfs_cbor *doc = op->u.array.items[1];
		if (id->type != LFS_CBOR_STRING ||
		    !valid_id(id->u.str.data, id->u.str.len))
			return -EBADMSG;
		struct lfs_op *o = &out->ops[i];
		o->id = id->u.str.data;
		o->id_len = id->u.str.len;
		if (doc->type == LFS_CBOR_NULL)
			o->del = true;
		else if (get_event_link(&o->doc, doc))
			return -EBADMSG;
		if (i && op_cmp(&out->ops[i - 1], o) >= 0)
			return -EBADMSG;
	}
	return 0;
}

int lfs_event_load(struct lfs_event *out, struct lfs_arena *a,
		   const struct lfs_blocks *b, const struct lfs_cid *cid)
{
	if (cid->codec != LFS_CODEC_DAG_CBOR)
		return -EBADMSG;
	struct lfs_buf buf;
	lfs_buf_init(&buf, 0);
	int rc = lfs_blocks_get(b, &buf, cid);
	if (!rc)
		rc = lfs_event_decode(out, a, buf.data, buf.len);
	lfs_buf_release(&buf);
	return rc;
}

int lfs_clock_check_parents(struct lfs_cid *out_missing,
			    const struct lfs_blocks *b,
			    const struct lfs_event *ev)
{
	struct lfs_arena a;
	lfs_arena_init(&a, 0);
	int rc = 0;
	for (size_t i = 0; i < ev->nparents && !rc; i++) {
		struct lfs_event p;
		struct lfs_arena_mark m = lfs_arena_mark(&a);
		rc = lfs_event_load(&p, &a, b, &ev->parents[i]);
		if (rc == -ENOENT && out_missing)
			*out_missing = ev->parents[i];
		if (!rc && p.t >= ev->t)
			rc = -ETIME;
		lfs_arena_rewind(&a, m);
	}
	lfs_arena_release(&a);
	return rc;
}

/*
 * The DAG walks below share one structure: a table of visited events (their
 * time and parents) and a max-heap ordered by (t descending, CID ascending).
 * Because t strictly increases along every edge, popping in that order visits
 * an event only after every visited descendant, so the flags it carries when
 * popped are final.
 */
struct gnode {
	struct lfs_cid cid;
	int64_t t;
	struct lfs_cid *parents; /* malloc'd */
	size_t nparents;
	uint64_t *flags; /* merge-base colours, `words` words */
	char *writer;    /* malloc'd, when the graph keeps writers */
	bool stale, queued, popped;
};

struct graph {
	const struct lfs_blocks *b;
	struct lfs_cidmap map; /* cid -> index into nodes */
	struct gnode *nodes;
	size_t n, cap;
	size_t *heap;
	size_t hn, hcap;
	size_t words;
	bool keep_writer;
	struct lfs_arena arena;
};

static void graph_init(struct graph *g, const struct lfs_blocks *b,
		       size_t words)
{
	memset(g, 0, sizeof(*g));
	g->b = b;
	g->words = words;
	lfs_cidmap_init(&g->map);
	lfs_arena_init(&g->arena, 0);
}

static void graph_release(struct graph *g)
{
	for (size_t i = 0; i < g->n; i++) {
		free(g->nodes[i].parents);
		free(g->nodes[i].flags);
		free(g->nodes[i].writer);
	}
	free(g->nodes);
	free(g->heap);
	lfs_cidmap_release(&g->map);
	lfs_arena_release(&g->arena);
}

/* Find or load an event; *out is its index. */
static int graph_node(struct graph *g, size_t *out, const struct lfs_cid *cid)
{
	uint64_t idx;
	if (lfs_cidmap_get(&g->map, cid, &idx)) {
		*out = (size_t)idx;
		return 0;
	}
	struct lfs_event ev;
	struct lfs_arena_mark m = lfs_arena_mark(&g->arena);
	int rc = lfs_event_load(&ev, &g->arena, g->b, cid);
	if (rc)
		goto out;
	if (g->n == g->cap) {
		size_t cap = g->cap ? g->cap * 2 : 64;
		void *p = realloc(g->nodes, cap * sizeof(*g->nodes));
		if (!p) {
			rc = -ENOMEM;
			goto out;
		}
		g->nodes = p;
		g->cap = cap;
	}
	struct gnode *nd = &g->nodes[g->n];
	memset(nd, 0, sizeof(*nd));
	nd->cid = *cid;
	nd->t = ev.t;
	nd->nparents = ev.nparents;
	nd->parents = malloc((ev.nparents + 1) * sizeof(*nd->parents));
	nd->flags = calloc(g->words + 1, sizeof(uint64_t));
	if (g->keep_writer)
		nd->writer = strdup(ev.writer);
	if (!nd->parents || !nd->flags || (g->keep_writer && !nd->writer)) {
		rc = -ENOMEM;
		goto fail;
	}
	lfs_cid_copy_n(nd->parents, ev.parents, ev.nparents);
	if ((rc = lfs_cidmap_set(&g->map, cid, g->n)))
		goto fail;
	*out = g->n++;
	goto out;
fail:
	free(nd->parents);
	free(nd->flags);
	free(nd->writer);
out:
	lfs_arena_rewind(&g->arena, m);
	return rc;
}

/*
 * The node of a parent met on a walk; 1 when this replica does not hold
 * it (history beyond what we hold: the walk ends on that path).
 */
static int graph_parent(struct graph *g, size_t *out, const struct lfs_cid *cid)
{
	int rc = graph_node(g, out, cid);
	return rc == -ENOENT ? 1 : rc;
}

static bool heap_less(const struct graph *g, size_t a, size_t b)
{
	const struct gnode *x = &g->nodes[a], *y = &g->nodes[b];
	if (x->t != y->t)
		return x->t > y->t;
	return lfs_cid_cmp(&x->cid, &y->cid) < 0;
}

static int heap_push(struct graph *g, size_t idx)
{
	if (g->hn == g->hcap) {
		size_t cap = g->hcap ? g->hcap * 2 : 64;
		void *p = realloc(g->heap, cap * sizeof(*g->heap));
		if (!p)
			return -ENOMEM;
		g->heap = p;
		g->hcap = cap;
	}
	size_t i = g->hn++;
	g->heap[i] = idx;
	while (i > 0) {
		size_t up = (i - 1) / 2;
		if (!heap_less(g, g->heap[i], g->heap[up]))
			break;
		size_t t = g->heap[i];
		g->heap[i] = g->heap[up];
		g->heap[up] = t;
		i = up;
	}
	g->nodes[idx].queued = true;
	return 0;
}

static size_t heap_pop(struct graph *g)
{
	size_t top = g->heap[0];
	g->heap[0] = g->heap[--g->hn];
	size_t i = 0;
	for (;;) {
		size_t l = 2 * i + 1, r = l + 1, m = i;
		if (l < g->hn && heap_less(g, g->heap[l], g->heap[m]))
			m = l;
		if (r < g->hn && heap_less(g, g->heap[r], g->heap[m]))
			m = r;
		if (m == i)
			break;
		size_t t = g->heap[i];
		g->heap[i] = g->heap[m];
		g->heap[m] = t;
		i = m;
	}
	g->nodes[top].queued = false;
	g->nodes[top].popped = true;
	return top;
}

static bool all_flags(const struct gnode *nd, size_t nbits)
{
	for (size_t i = 0; i < nbits; i++)
		if (!(nd->flags[i / 64] & ((uint64_t)1 << (i % 64))))
			return false;
	return true;
}

int lfs_clock_merge_bases(struct lfs_cid **out, size_t *out_n,
			  const struct lfs_blocks *b,
			  const struct lfs_cid *events, size_t n)
{
	*out = NULL;
	*out_n = 0;
	if (n == 0)
		return 0;
	struct graph g;
	graph_init(&g, b, (n + 63) / 64);
	struct lfs_cid *res = NULL;
	size_t nres = 0, live = 0; /* live: queued nodes that are not stale */
	int rc = 0;
	for (size_t i = 0; i < n && !rc; i++) {
		size_t idx;
		if ((rc = graph_node(&g, &idx, &events[i])))
			break;
		g.nodes[idx].flags[i / 64] |= (uint64_t)1 << (i % 64);
		if (!g.nodes[idx].queued) {
			rc = heap_push(&g, idx);
			live++;
		}
	}
	while (!rc && live > 0 && g.hn > 0) {
		size_t x = heap_pop(&g);
		if (!g.nodes[x].stale)
			live--;
		if (all_flags(&g.nodes[x], n) && !g.nodes[x].stale) {
			void *p = realloc(res, (nres + 1) * sizeof(*res));
			if (!p) {
				rc = -ENOMEM;
				break;
			}
			res = p;
			res[nres++] = g.nodes[x].cid;
			g.nodes[x].stale = true;
		}
		for (size_t k = 0; k < g.nodes[x].nparents; k++) {
			size_t p;
			if ((rc = graph_node(&g, &p, &g.nodes[x].parents[k])))
				break;
			struct gnode *pn = &g.nodes[p], *xn = &g.nodes[x];
			if (pn->popped)
				continue; /* impossible with valid times */
			bool changed = false;
			for (size_t w = 0; w < g.words; w++) {
				uint64_t f = pn->flags[w] | xn->flags[w];
				changed |= f != pn->flags[w];
				pn->flags[w] = f;
			}
			if (xn->stale && !pn->stale) {
				pn->stale = true;
				changed = true;
				if (pn->queued)
					live--;
			}
			if (changed && !pn->queued) {
				if ((rc = heap_push(&g, p)))
					break;
				if (!pn->stale)
					live++;
			}
		}
	}
	graph_release(&g);
	if (rc) {
		free(res);
		return rc;
	}
	if (nres > 1)
		qsort(res, nres, sizeof(*res), cid_cmp_qsort);
	*out = res;
	*out_n = nres;
	return 0;
}

static int write_cmp(const struct lfs_clock_write *a,
		     const struct lfs_clock_write *b)
{
	if (a->t != b->t)
		return a->t < b->t ? -1 : 1;
	return strcmp(a->writer, b->writer);
}

static _Thread_local const struct lfs_clock_write *sort_writes;

static int write_order_cmp(const void *x, const void *y)
{
	return write_cmp(&sort_writes[*(const size_t *)x],
			 &sort_writes[*(const size_t *)y]);
}

int lfs_clock_known(uint64_t *out, const struct lfs_blocks *b,
		    const struct lfs_cid *events, size_t n,
		    const struct lfs_clock_write *writes, size_t nw)
{
	if (n == 0 || nw == 0)
		return 0;
	size_t words = (n + 63) / 64;
	int64_t min_t = INT64_MAX;
	for (size_t k = 0; k < nw; k++)
		if (writes[k].t < min_t)
			min_t = writes[k].t;
	size_t *order = malloc(nw * sizeof(*order));
	if (!order)
		return -ENOMEM;
	for (size_t k = 0; k < nw; k++)
		order[k] = k;
	sort_writes = writes;
	qsort(order, nw, sizeof(*order), write_order_cmp);
	struct graph g;
	graph_init(&g, b, words);
	g.keep_writer = true;
	int rc = 0;
	for (size_t i = 0; i < n && !rc; i++) {
		size_t idx;
		if ((rc = graph_node(&g, &idx, &events[i])))
			break;
		g.nodes[idx].flags[i / 64] |= (uint64_t)1 << (i % 64);
		if (!g.nodes[idx].queued)
			rc = heap_push(&g, idx);
	}
	while (!rc && g.hn > 0) {
		size_t x = heap_pop(&g);
		if (g.nodes[x].t < min_t)
			break;
		struct lfs_clock_write here = {g.nodes[x].t, g.nodes[x].writer};
		size_t lo = 0, hi = nw;
		while (lo < hi) {
			size_t mid = lo + (hi - lo) / 2;
			if (write_cmp(&writes[order[mid]], &here) < 0)
				lo = mid + 1;
			else
				hi = mid;
		}
		for (; lo < nw && !write_cmp(&writes[order[lo]], &here); lo++)
			for (size_t w = 0; w < words; w++)
				out[order[lo] * words + w] |=
					g.nodes[x].flags[w];
		for (size_t k = 0; k < g.nodes[x].nparents && !rc; k++) {
			size_t p;
			int r = graph_parent(&g, &p, &g.nodes[x].parents[k]);
			if (r == 1)
				continue;
			if ((rc = r))
				break;
			struct gnode *pn = &g.nodes[p], *xn = &g.nodes[x];
			if (pn->popped)
				continue; /* impossible with valid times */
			for (size_t w = 0; w < words; w++)
				pn->flags[w] |= xn->flags[w];
			if (!pn->queued)
				rc = heap_push(&g, p);
		}
	}
	graph_release(&g);
	free(order);
	return rc;
}

int lfs_clock_reduce(const struct lfs_blocks *b, struct lfs_cid *events,
		     size_t n)
{
	if (n == 0)
		return 0;
	qsort(events, n, sizeof(*events), cid_cmp_qsort);
	size_t m = 1;
	for (size_t i = 1; i < n; i++)
		if (!lfs_cid_equal(&events[m - 1], &events[i]))
			events[m++] = events[i];
	n = m;
	if (n == 1)
		return 1;

	struct graph g;
	graph_init(&g, b, 1);
	int rc = 0;
	int64_t min_t = INT64_MAX;
	for (size_t i = 0; i < n && !rc; i++) {
		size_t idx;
		if (!(rc = graph_node(&g, &idx, &events[i]))) {
			if (g.nodes[idx].t < min_t)
				min_t = g.nodes[idx].t;
			rc = heap_push(&g, idx);
		}
	}
	/* flags[0] bit 0 marks "reached from a descendant". */
	while (!rc && g.hn > 0) {
		size_t x = heap_pop(&g);
		if (g.nodes[x].t < min_t)
			break;
		for (size_t k = 0; k < g.nodes[x].nparents && !rc; k++) {
			size_t p;
			int r = graph_parent(&g, &p, &g.nodes[x].parents[k]);
			if (r == 1)
				continue;
			if ((rc = r))
				break;
			g.nodes[p].flags[0] |= 1;
			if (!g.nodes[p].queued && !g.nodes[p].popped)
				rc = heap_push(&g, p);
		}
	}
	if (!rc) {
		m = 0;
		for (size_t i = 0; i < n; i++) {
			uint64_t idx;
			lfs_cidmap_get(&g.map, &events[i], &idx);
			if (!(g.nodes[idx].flags[0] & 1))
				events[m++] = events[i];
		}
	}
	graph_release(&g);
	return rc ? rc : (int)m;
}

int lfs_clock_contains(const struct lfs_blocks *b, const struct lfs_cid *tips,
		       size_t ntips, const struct lfs_cid *events, size_t n,
		       struct lfs_cid *out_first)
{
	bool at_tips = true;
	for (size_t i = 0; i < n && at_tips; i++)
		at_tips = lfs_cid_in(tips, ntips, &events[i]);
	if (at_tips)
		return 1; /* the usual case: no walk */
	struct lfs_cid *v = malloc((ntips + n + 1) * sizeof(*v));
	if (!v)
		return -ENOMEM;
	lfs_cid_copy_n(v, tips, ntips);
	lfs_cid_copy_n(v + ntips, events, n);
	int m = lfs_clock_reduce(b, v, ntips + n), rc = m < 0 ? m : 1;
	for (int i = 0; i < m && rc == 1; i++)
		if (!lfs_cid_in(tips, ntips, &v[i])) {
			rc = 0;
			if (out_first)
				*out_first = v[i];
		}
	free(v);
	return rc;
}

int lfs_clock_walk(const struct lfs_blocks *b, const struct lfs_cid *heads,
		   size_t n, lfs_clock_walk_fn fn, void *ctx)
{
	struct graph g;
	graph_init(&g, b, 1);
	struct lfs_arena a;
	lfs_arena_init(&a, 0);
	int rc = 0;
	for (size_t i = 0; i < n && !rc; i++) {
		size_t idx;
		if (!(rc = graph_node(&g, &idx, &heads[i])) &&
		    !g.nodes[idx].queued)
			rc = heap_push(&g, idx);
	}
	while (!rc && g.hn > 0) {
		size_t x = heap_pop(&g);
		struct lfs_event ev;
		struct lfs_arena_mark m = lfs_arena_mark(&a);
		if (!(rc = lfs_event_load(&ev, &a, b, &g.nodes[x].cid)))
			rc = fn(ctx, &g.nodes[x].cid, &ev);
		lfs_arena_rewind(&a, m);
		for (size_t k = 0; !rc && k < g.nodes[x].nparents; k++) {
			size_t p;
			if (!(rc = graph_node(&g, &p,
					      &g.nodes[x].parents[k])) &&
			    !g.nodes[p].queued && !g.nodes[p].popped)
				rc = heap_push(&g, p);
		}
	}
	lfs_arena_release(&a);
	graph_release(&g);
	return rc;
}
