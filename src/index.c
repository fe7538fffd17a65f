#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "index.h"

#include <errno.h>
#include <pthread.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "cbor.h"
#include "cidmap.h"
#include "membudget.h"

#define MAX_DEPTH 64 /* 4-bit digits in a 256-bit hash */

struct node {
	bool leaf;
	uint64_t count;
	struct lfs_index_entry *e; /* leaf entries, ascending ids */
	size_t n;
	uint16_t bitmap; /* internal: which digits have a child */
	struct lfs_cid kids[16];
};

/*
 * Per-call working state: an arena for decoded nodes (its first chunk on
 * the stack: a lookup or a small update decodes a few nodes and never needs
 * malloc), a scratch buffer, and the internal nodes met so far by the walk
 * under way and by a diff's two sides. A valid index never links a node
 * twice; a hostile one that does (16 links to one node, level after level)
 * would be walked once per path, exponentially often, so meeting a node
 * again is -EBADMSG.
 */
#define OP_SPACE 32768

struct op {
	const struct lfs_index *ix;
	struct lfs_arena arena;
	struct lfs_buf tmp;
	struct lfs_cidmap walked, side[2];
	/* How a walk reads nodes: WALK_BLOCKS from the blocks only (a
	 * check), WALK_CACHED through the node cache, WALK_KEEP through it
	 * and keeping what it reads there. */
	enum { WALK_BLOCKS, WALK_CACHED, WALK_KEEP } walk_read;
	_Alignas(16) unsigned char space[OP_SPACE];
};

struct chg {
	const char *id;
	size_t id_len;
	const struct lfs_index_entry *entry;
	uint8_t hash[32];
};

/* Result of rewriting a subtree: small ones stay unwritten entry lists. */
struct result {
	uint64_t count;
	struct lfs_index_entry *e; /* when count <= LEAF_MAX */
	size_t n;
	struct lfs_cid cid; /* when count > LEAF_MAX: already written */
};

static void cache_put(struct lfs_index_cache *c, const struct lfs_cid *cid,
		      int depth, const struct node *nd);

void lfs_index_init(struct lfs_index *ix, struct lfs_blocks blocks,
		    const uint8_t salt[LFS_SALT_BYTES])
{
	ix->blocks = blocks;
	memcpy(ix->salt, salt, LFS_SALT_BYTES);
	ix->cache = NULL;
}

static void op_init(struct op *o, const struct lfs_index *ix)
{
	o->ix = ix;
	o->walk_read = WALK_BLOCKS;
	lfs_arena_init_buf(&o->arena, 0, o->space, sizeof(o->space));
	lfs_buf_init(&o->tmp, 0);
	lfs_cidmap_init(&o->walked);
	lfs_cidmap_init(&o->side[0]);
	lfs_cidmap_init(&o->side[1]);
}

static void op_release(struct op *o)
{
	lfs_arena_release(&o->arena);
	lfs_buf_release(&o->tmp);
	lfs_cidmap_release(&o->walked);
	lfs_cidmap_release(&o->side[0]);
	lfs_cidmap_release(&o->side[1]);
}

/* Note an internal node met; -EBADMSG the second time (see struct op). */
static int meet(struct lfs_cidmap *m, const struct node *nd,
		const struct lfs_cid *cid)
{
	if (nd->leaf || !cid)
		return 0;
	if (lfs_cidmap_get(m, cid, NULL))
		return -EBADMSG;
	return lfs_cidmap_set(m, cid, 1);
}

/* Start a new walk: forget the nodes the previous one met. */
static void walk_begin(struct op *o)
{
	lfs_cidmap_release(&o->walked);
	lfs_cidmap_init(&o->walked);
}

static void hash_id(const struct lfs_index *ix, uint8_t out[32], const char *id,
		    size_t len)
{
	crypto_generichash(out, 32, (const uint8_t *)id, len, ix->salt,
			   LFS_SALT_BYTES);
}

static unsigned digit(const uint8_t h[32], int depth)
{
	uint8_t b = h[depth / 2];
	return depth % 2 ? b & 15 : b >> 4;
}

static int id_cmp(const char *a, size_t al, const char *b, size_t bl)
{
	int c = memcmp(a, b, al < bl ? al : bl);
	if (c)
		return c;
	return al < bl ? -1 : al > bl;
}

static int entry_cmp(const void *x, const void *y)
{
	const struct lfs_index_entry *a = x, *b = y;
	return id_cmp(a->id, a->id_len, b->id, b->id_len);
}

static int chg_cmp(const void *x, const void *y)
{
	const struct chg *a = x, *b = y;
	return id_cmp(a->id, a->id_len, b->id, b->id_len);
}

static bool version_equal(const struct lfs_version *a,
			  const struct lfs_version *b)
{
	return lfs_cid_equal(&a->doc, &b->doc) && a->t == b->t &&
	       strcmp(a->writer, b->writer) == 0;
}

bool lfs_index_entry_equal(const struct lfs_index_entry *a,
			   const struct lfs_index_entry *b)
{
	if (a->id_len != b->id_len || memcmp(a->id, b->id, a->id_len) ||
	    !version_equal(&a->cur, &b->cur) || a->nconflicts != b->nconflicts)
		return false;
	for (size_t i = 0; i < a->nconflicts; i++)
		if (!version_equal(&a->conflicts[i], &b->conflicts[i]))
			return false;
	return true;
}

/* ---- node encoding ---- */

static void put_version_tuple(struct lfs_buf *b, const struct lfs_version *v)
{
	lfs_cbor_put_head(b, 4, 3);
	lfs_cbor_put_link(b, &v->doc);
	lfs_cbor_put_int(b, v->t);
	lfs_cbor_put_string(b, v->writer, strlen(v->writer));
}

static void put_entry(struct lfs_buf *b, const struct lfs_index_entry *e)
{
	lfs_cbor_put_head(b, 4, 2);
	lfs_cbor_put_string(b, e->id, e->id_len);
	lfs_cbor_put_head(b, 5, e->nconflicts ? 4 : 3);
	if (e->nconflicts) {
		lfs_cbor_put_string(b, "c", 1);
		lfs_cbor_put_head(b, 4, e->nconflicts);
		for (size_t i = 0; i < e->nconflicts; i++)
			put_version_tuple(b, &e->conflicts[i]);
	}
	lfs_cbor_put_string(b, "d", 1);
	lfs_cbor_put_link(b, &e->cur.doc);
	lfs_cbor_put_string(b, "t", 1);
	lfs_cbor_put_int(b, e->cur.t);
	lfs_cbor_put_string(b, "w", 1);
	lfs_cbor_put_string(b, e->cur.writer, strlen(e->cur.writer));
}

static int put_block(struct op *o, struct lfs_cid *out)
{
	if (o->tmp.err)
		return o->tmp.err;
	lfs_cid_of(out, LFS_CODEC_DAG_CBOR, o->tmp.data, o->tmp.len);
	return lfs_blocks_put(&o->ix->blocks, out, o->tmp.data, o->tmp.len);
}

/*
 * The writers keep what they write in the node cache too: the next commit
 * looks up and rewrites the same path, and should not decode the nodes
 * this one just encoded.
 */
static int write_leaf(struct op *o, struct lfs_cid *out,
		      const struct lfs_index_entry *e, size_t n, int depth)
{
	lfs_buf_reset(&o->tmp);
	lfs_cbor_put_head(&o->tmp, 5, 1);
	lfs_cbor_put_string(&o->tmp, "e", 1);
	lfs_cbor_put_head(&o->tmp, 4, n);
	for (size_t i = 0; i < n; i++)
		put_entry(&o->tmp, &e[i]);
	int rc = put_block(o, out);
	if (!rc && o->ix->cache) {
		struct node nd = {.leaf = true,
				  .count = n,
				  .e = (struct lfs_index_entry *)e,
				  .n = n};
		cache_put(o->ix->cache, out, depth, &nd);
	}
	return rc;
}

static int write_internal(struct op *o, struct lfs_cid *out, uint16_t bitmap,
			  const struct lfs_cid kids[16], uint64_t count,
			  int depth)
{
	lfs_buf_reset(&o->tmp);
	lfs_cbor_put_head(&o->tmp, 5, 3);
	lfs_cbor_put_string(&o->tmp, "b", 1);
	lfs_cbor_put_int(&o->tmp, bitmap);
	lfs_cbor_put_string(&o->tmp, "k", 1);
	lfs_cbor_put_head(&o->tmp, 4, (uint64_t)__builtin_popcount(bitmap));
	for (int d = 0; d < 16; d++)
		if (bitmap & (1u << d))
			lfs_cbor_put_link(&o->tmp, &kids[d]);
	lfs_cbor_put_string(&o->tmp, "n", 1);
	lfs_cbor_put_head(&o->tmp, 0, count);
	int rc = put_block(o, out);
	if (!rc && o->ix->cache) {
		struct node nd = {.count = count, .bitmap = bitmap};
		for (int d = 0; d < 16; d++)
			if (bitmap & (1u << d))
				nd.kids[d] = kids[d];
		cache_put(o->ix->cache, out, depth, &nd);
	}
	return rc;
}

/* ---- node decoding ---- */

static int parse_writer(const char **out, const struct lfs_cbor *v)
{
	if (!v || v->type != LFS_CBOR_STRING || v->u.str.len > LFS_WRITER_MAX ||
	    memchr(v->u.str.data, 0, v->u.str.len))
		return -EBADMSG;
	*out = v->u.str.data;
	return 0;
}

static int parse_doc(struct lfs_cid *out, const struct lfs_cbor *v)
{
	if (lfs_cbor_get_link(out, v) || out->codec != LFS_CODEC_DAG_CBOR)
		return -EBADMSG;
	return 0;
}

static int parse_entry(struct lfs_index_entry *e, struct lfs_arena *a,
		       const struct lfs_cbor *pair)
{
	if (pair->type != LFS_CBOR_ARRAY || pair->u.array.count != 2)
		return -EBADMSG;
	const struct lfs_cbor *id = pair->u.array.items[0];
	const struct lfs_cbor *m = pair->u.array.items[1];
	if (id->type != LFS_CBOR_STRING || id->u.str.len == 0 ||
	    id->u.str.len > LFS_INDEX_ID_MAX ||
	    memchr(id->u.str.data, 0, id->u.str.len) || m->type != LFS_CBOR_MAP)
		return -EBADMSG;
	e->id = id->u.str.data;
	e->id_len = id->u.str.len;
	const struct lfs_cbor *c = lfs_cbor_map_get(m, "c");
	size_t want = c ? 4 : 3;
	if (m->u.map.count != want ||
	    parse_doc(&e->cur.doc, lfs_cbor_map_get(m, "d")) ||
	    lfs_cbor_get_int(&e->cur.t, lfs_cbor_map_get(m, "t")) ||
	    parse_writer(&e->cur.writer, lfs_cbor_map_get(m, "w")))
		return -EBADMSG;
	e->conflicts = NULL;
	e->nconflicts = 0;
	if (!c)
		return 0;
	if (c->type != LFS_CBOR_ARRAY || c->u.array.count == 0)
		return -EBADMSG;
	e->nconflicts = c->u.array.count;
	e->conflicts =
		lfs_arena_calloc(a, e->nconflicts, sizeof(*e->conflicts));
	if (!e->conflicts)
		return -ENOMEM;
	for (size_t i = 0; i < e->nconflicts; i++) {
		const struct lfs_cbor *t = c->u.array.items[i];
		if (t->type != LFS_CBOR_ARRAY || t->u.array.count != 3 ||
		    parse_doc(&e->conflicts[i].doc, t->u.array.items[0]) ||
		    lfs_cbor_get_int(&e->conflicts[i].t, t->u.array.items[1]) ||
		    parse_writer(&e->conflicts[i].writer, t->u.array.items[2]))
			return -EBADMSG;
	}
	return 0;
}

static int load_node(struct op *o, struct node *nd, const struct lfs_cid *cid,
		     int depth)
{
	memset(nd, 0, sizeof(*nd));
	if (!cid) {
		nd->leaf = true;
		return 0;
	}
	if (cid->codec != LFS_CODEC_DAG_CBOR)
		return -EBADMSG;
	lfs_buf_reset(&o->tmp);
	int rc = lfs_blocks_get(&o->ix->blocks, &o->tmp, cid);
	if (rc)
		return rc == -ENOENT ? -EIO
				     : rc; /* ENOENT means "no such id" */
	struct lfs_cbor *v;
	if ((rc = lfs_cbor_decode(&v, &o->arena, o->tmp.data, o->tmp.len)))
		return rc == -ENOMEM ? rc : -EBADMSG;
	if (v->type != LFS_CBOR_MAP)
		return -EBADMSG;
	const struct lfs_cbor *e = lfs_cbor_map_get(v, "e");
	if (e) {
		if (v->u.map.count != 1 || e->type != LFS_CBOR_ARRAY)
			return -EBADMSG;
		nd->leaf = true;
		nd->n = e->u.array.count;
		nd->count = nd->n;
		if (nd->n > LFS_INDEX_LEAF_MAX && depth < MAX_DEPTH)
			return -EBADMSG;
		nd->e = lfs_arena_calloc(&o->arena, nd->n ? nd->n : 1,
					 sizeof(*nd->e));
		if (!nd->e)
			return -ENOMEM;
		for (size_t i = 0; i < nd->n; i++) {
			if ((rc = parse_entry(&nd->e[i], &o->arena,
					      e->u.array.items[i])))
				return rc;
			if (i && entry_cmp(&nd->e[i - 1], &nd->e[i]) >= 0)
				return -EBADMSG;
		}
		return 0;
	}
	const struct lfs_cbor *k = lfs_cbor_map_get(v, "k");
	uint64_t bitmap;
	if (v->u.map.count != 3 ||
	    lfs_cbor_get_uint(&bitmap, lfs_cbor_map_get(v, "b")) ||
	    lfs_cbor_get_uint(&nd->count, lfs_cbor_map_get(v, "n")) || !k ||
	    k->type != LFS_CBOR_ARRAY || bitmap == 0 || bitmap > 0xffff ||
	    nd->count <= LFS_INDEX_LEAF_MAX || depth >= MAX_DEPTH ||
	    k->u.array.count != (size_t)__builtin_popcount((unsigned)bitmap))
		return -EBADMSG;
	nd->bitmap = (uint16_t)bitmap;
	size_t j = 0;
	for (int d = 0; d < 16; d++) {
		if (!(bitmap & (1u << d)))
			continue;
		if (lfs_cbor_get_link(&nd->kids[d], k->u.array.items[j++]) ||
		    nd->kids[d].codec != LFS_CODEC_DAG_CBOR)
			return -EBADMSG;
	}
	return 0;
}

/* ---- lookups and walks ---- */

int lfs_index_empty(struct lfs_cid *out, const struct lfs_index *ix)
{
	struct op o;
	op_init(&o, ix);
	int rc = write_leaf(&o, out, NULL, 0, 0);
	op_release(&o);
	return rc;
}

int lfs_version_cmp(const struct lfs_version *a, const struct lfs_version *b)
{
	if (a->t != b->t)
		return a->t < b->t ? -1 : 1;
	int c = strcmp(a->writer, b->writer);
	if (c)
		return c;
	return lfs_cid_cmp(&a->doc, &b->doc);
}

/* lfs_index_entry_copy, with the current writer's name at `writer` (a
 * string that outlives out) when it is not NULL. */
static int entry_copy(struct lfs_index_entry *out, struct lfs_arena *a,
		      const struct lfs_index_entry *e, const char *writer)
{
	*out = *e;
	out->id = lfs_arena_strndup(a, e->id, e->id_len);
	out->cur.writer = writer ? writer
				 : lfs_arena_strndup(a, e->cur.writer,
						     strlen(e->cur.writer));
	if (!out->id || !out->cur.writer)
		return -ENOMEM;
	if (e->nconflicts) {
		out->conflicts = lfs_arena_calloc(a, e->nconflicts,
						  sizeof(*out->conflicts));
		if (!out->conflicts)
			return -ENOMEM;
		for (size_t i = 0; i < e->nconflicts; i++) {
			out->conflicts[i] = e->conflicts[i];
			out->conflicts[i].writer = lfs_arena_strndup(
				a, e->conflicts[i].writer,
				strlen(e->conflicts[i].writer));
			if (!out->conflicts[i].writer)
				return -ENOMEM;
		}
	}
	return 0;
}

int lfs_index_entry_copy(struct lfs_index_entry *out, struct lfs_arena *a,
			 const struct lfs_index_entry *e)
{
	return entry_copy(out, a, e, NULL);
}

/* ---- the decoded-node cache ---- */

/*
 * A cached node. A leaf's is allocated without nd.kids (most of a node's
 * size: 16 CIDs), so nd is last and a leaf's is read and written up to
 * LEAF_ND bytes only; its entries live in a, which starts right after.
 */
struct cnode {
	struct lfs_cid cid;
	int depth; /* a node's checks depend on its depth: part of the key */
	struct cnode *hnext, *prev, *next;
	struct lfs_arena a; /* empty for internal nodes */
	size_t bytes;
	struct node nd;
};
#define LEAF_ND    offsetof(struct node, kids)
#define LEAF_CNODE (offsetof(struct cnode, nd) + LEAF_ND)

/* Writers' names repeat across a ledger's entries (one per replica that
 * wrote): the cache keeps each once, up to INTERN_MAX of them for its
 * life; past that (a ledger of many writers), each entry keeps its own. */
#define INTERN_MAX 64

struct lfs_index_cache {
	pthread_mutex_t lock;
	struct cnode **buckets;
	size_t nbuckets;           /* power of two */
	struct cnode *head, *tail; /* head: most recently used */
	size_t bytes, max;
	struct lfs_membudget_member budget; /* shrunk from tail */
	pthread_mutex_t intern_lock;        /* a leaf lock */
	char *interned[INTERN_MAX];
	size_t ninterned;
};

/* The most entries a walk keeps in the cache: half of it, at 120 bytes
 * a decoded entry (cache_put's count for an entry of a 20-byte id, its
 * writer's name interned, with its leaf's share of the node). The walk meets
 * every node of the index, so what it keeps is what lookups need next;
 * the other half is left to the nodes of other roots (snapshots). */
static uint64_t cache_walk_max(const struct lfs_index_cache *c)
{
	return c->max / 2 / 120;
}

int lfs_index_cache_new(struct lfs_index_cache **out, size_t max_bytes)
{
	struct lfs_index_cache *c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->max = max_bytes;
	c->nbuckets = 1024;
	while (c->nbuckets * 256 < max_bytes) /* a node is ~0.5-1 KiB */
		c->nbuckets *= 2;
	if (!(c->buckets = calloc(c->nbuckets, sizeof(*c->buckets)))) {
		free(c);
		return -ENOMEM;
	}
	pthread_mutex_init(&c->lock, NULL);
	pthread_mutex_init(&c->intern_lock, NULL);
	*out = c;
	return 0;
}

static void cnode_free(struct cnode *n)
{
	lfs_arena_release(&n->a);
	free(n);
}

void lfs_index_cache_free(struct lfs_index_cache *c)
{
	if (!c)
		return;
	lfs_membudget_leave(&c->budget);
	for (struct cnode *n = c->head, *next; n; n = next) {
		next = n->next;
		cnode_free(n);
	}
	free(c->buckets);
	for (size_t i = 0; i < c->ninterned; i++)
		free(c->interned[i]);
	pthread_mutex_destroy(&c->intern_lock);
	pthread_mutex_destroy(&c->lock);
	free(c);
}

/* The cache's copy of writer name w, or NULL when it keeps INTERN_MAX
 * others. Caller holds intern_lock. */
static const char *intern_locked(struct lfs_index_cache *c, const char *w)
{
	for (size_t i = 0; i < c->ninterned; i++)
		if (!strcmp(c->interned[i], w))
			return c->interned[i];
	if (c->ninterned == INTERN_MAX ||
	    !(c->interned[c->ninterned] = strdup(w)))
		return NULL;
	return c->interned[c->ninterned++];
}

static struct cnode **cache_bucket(struct lfs_index_cache *c,
				   const struct lfs_cid *cid)
{
	uint64_t h;
	memcpy(&h, cid->digest, sizeof(h));
	return &c->buckets[h & (c->nbuckets - 1)];
}

static void cache_unlink(struct lfs_index_cache *c, struct cnode *n)
{
	if (n->prev)
		n->prev->next = n->next;
	else
		c->head = n->next;
	if (n->next)
		n->next->prev = n->prev;
	else
		c->tail = n->prev;
	n->prev = n->next = NULL;
}

static void cache_front(struct lfs_index_cache *c, struct cnode *n)
{
	n->next = c->head;
	n->prev = NULL;
	if (c->head)
		c->head->prev = n;
	c->head = n;
	if (!c->tail)
		c->tail = n;
}

/* The cached node, made most recent, or NULL. Caller holds the lock. */
static struct cnode *cache_find(struct lfs_index_cache *c,
				const struct lfs_cid *cid, int depth)
{
	for (struct cnode *n = *cache_bucket(c, cid); n; n = n->hnext)
		if (n->depth == depth && lfs_cid_equal(&n->cid, cid)) {
			cache_unlink(c, n);
			cache_front(c, n);
			lfs_membudget_touch(&c->budget);
			return n;
		}
	return NULL;
}

/* Drop the least recently used node; the bytes it held. Caller holds
 * the lock. */
static size_t cache_drop_tail(struct lfs_index_cache *c)
{
	struct cnode *old = c->tail;
	cache_unlink(c, old);
	struct cnode **pp = cache_bucket(c, &old->cid);
	while (*pp != old)
		pp = &(*pp)->hnext;
	*pp = old->hnext;
	size_t bytes = old->bytes;
	c->bytes -= bytes;
	lfs_membudget_charge(&c->budget, -(ptrdiff_t)bytes);
	cnode_free(old);
	return bytes;
}

/* The shared budget's call (lfs_membudget_member.shrink). */
static size_t cache_shrink(struct lfs_membudget_member *m, size_t bytes)
{
	struct lfs_index_cache *c =
		(struct lfs_index_cache *)((char *)m -
					   offsetof(struct lfs_index_cache,
						    budget));
	size_t freed = 0;
	pthread_mutex_lock(&c->lock);
	while (freed < bytes && c->tail)
		freed += cache_drop_tail(c);
	pthread_mutex_unlock(&c->lock);
	return freed;
}

void lfs_index_cache_share(struct lfs_index_cache *c,
			   struct lfs_membudget *budget)
{
	/* A leaf serves every lookup of its ~25 ids and every commit on its
	 * path; a miss costs a block read and a decode: kept over texts and
	 * decrypted chunks (membudget.h). */
	c->budget.worth = 4;
	lfs_membudget_join(budget, &c->budget, cache_shrink);
}

static size_t round16(size_t x)
{
	return (x + 15) & ~(size_t)15;
}

/* The arena bytes a copy of a leaf's entries takes (entry_copy of each
 * into one array, writers interned where c can), so a cached leaf is one
 * exact allocation. Caller holds intern_lock. */
static size_t leaf_bytes(struct lfs_index_cache *c, const struct node *nd)
{
	size_t b = round16((nd->n ? nd->n : 1) * sizeof(*nd->e));
	for (size_t i = 0; i < nd->n; i++) {
		const struct lfs_index_entry *e = &nd->e[i];
		b += round16(e->id_len + 1);
		if (!intern_locked(c, e->cur.writer))
			b += round16(strlen(e->cur.writer) + 1);
		if (e->nconflicts)
			b += round16(e->nconflicts * sizeof(*e->conflicts));
		for (size_t k = 0; k < e->nconflicts; k++)
			b += round16(strlen(e->conflicts[k].writer) + 1);
	}
	return b;
}

static void cache_insert(struct lfs_index_cache *c, struct cnode *n,
			 const struct lfs_cid *cid, int depth);

/* Keep a copy of a node just decoded. Best effort: memory only. */
static void cache_put(struct lfs_index_cache *c, const struct lfs_cid *cid,
		      int depth, const struct node *nd)
{
	/* The node and its entries in one block: the arena's first chunk
	 * follows the struct (a leaf's without its kids), sized exactly. */
	if (!nd->leaf) {
		struct cnode *n = calloc(1, sizeof(*n));
		if (!n)
			return;
		n->nd = *nd;
		lfs_arena_init(&n->a, 0);
		n->bytes = sizeof(*n);
		cache_insert(c, n, cid, depth);
		return;
	}
	pthread_mutex_lock(&c->intern_lock);
	size_t head = round16(LEAF_CNODE);
	size_t space = leaf_bytes(c, nd) + 64;
	struct cnode *n = calloc(1, head + space);
	bool ok = n != NULL;
	if (ok) {
		memcpy(&n->nd, nd, LEAF_ND);
		lfs_arena_init_buf(&n->a, 0, (unsigned char *)n + head, space);
		n->nd.e = lfs_arena_calloc(&n->a, nd->n ? nd->n : 1,
					   sizeof(*n->nd.e));
		ok = n->nd.e != NULL;
	}
	for (size_t i = 0; ok && i < nd->n; i++)
		ok = !entry_copy(&n->nd.e[i], &n->a, &nd->e[i],
				 intern_locked(c, nd->e[i].cur.writer));
	pthread_mutex_unlock(&c->intern_lock);
	if (!ok) {
		if (n)
			cnode_free(n);
		return;
	}
	n->bytes = head + space + n->a.total; /* total: spills, if any */
	cache_insert(c, n, cid, depth);
}

/* Put n, filled, in the cache under (cid, depth) unless it is there. */
static void cache_insert(struct lfs_index_cache *c, struct cnode *n,
			 const struct lfs_cid *cid, int depth)
{
	n->cid = *cid;
	n->depth = depth;
	pthread_mutex_lock(&c->lock);
	if (cache_find(c, cid, depth)) {
		pthread_mutex_unlock(&c->lock);
		cnode_free(n);
		return;
	}
	struct cnode **b = cache_bucket(c, cid);
	n->hnext = *b;
	*b = n;
	cache_front(c, n);
	c->bytes += n->bytes;
	lfs_membudget_charge(&c->budget, (ptrdiff_t)n->bytes);
	while (c->bytes > c->max && c->tail && c->tail != n)
		cache_drop_tail(c);
	pthread_mutex_unlock(&c->lock);
	lfs_membudget_enforce(&c->budget);
}

/*
 * One step of a lookup through the cache: 1 when cur was cached (then
 * *cur moved to the child, or *rc is the answer and *done is set), 0 when
 * the node must be read.
 */
static int cached_step(struct lfs_index_cache *c, struct lfs_cid *cur,
		       int depth, const uint8_t h[32], const char *id,
		       size_t id_len, struct lfs_index_entry *out,
		       struct lfs_arena *a, int *rc, bool *done)
{
	pthread_mutex_lock(&c->lock);
	struct cnode *n = cache_find(c, cur, depth);
	if (!n) {
		pthread_mutex_unlock(&c->lock);
		return 0;
	}
	if (!n->nd.leaf) {
		unsigned d = digit(h, depth);
		if (n->nd.bitmap & (1u << d)) {
			*cur = n->nd.kids[d];
		} else {
			*rc = -ENOENT;
			*done = true;
		}
	} else {
		struct lfs_index_entry key = {.id = id, .id_len = id_len};
		struct lfs_index_entry *e = bsearch(
			&key, n->nd.e, n->nd.n, sizeof(*n->nd.e), entry_cmp);
		*rc = e ? lfs_index_entry_copy(out, a, e) : -ENOENT;
		*done = true;
	}
	pthread_mutex_unlock(&c->lock);
	return 1;
}

/*
 * load_node through the cache: a cached node is copied into the op's
 * arena (the cache may drop it meanwhile). keep: put a node read from
 * the blocks into the cache (a commit's path; not a walk of everything).
 */
static int load_node_cached(struct op *o, struct node *nd,
			    const struct lfs_cid *cid, int depth, bool keep)
{
	struct lfs_index_cache *c = o->ix->cache;
	if (!c || !cid)
		return load_node(o, nd, cid, depth);
	pthread_mutex_lock(&c->lock);
	struct cnode *n = cache_find(c, cid, depth);
	int rc = n ? 0 : 1;
	if (n && !n->nd.leaf) {
		*nd = n->nd;
	} else if (n) {
		memcpy(nd, &n->nd, LEAF_ND);
		nd->e = lfs_arena_calloc(&o->arena, nd->n ? nd->n : 1,
					 sizeof(*nd->e));
		rc = nd->e ? 0 : -ENOMEM;
		for (size_t i = 0; !rc && i < nd->n; i++)
			rc = lfs_index_entry_copy(&nd->e[i], &o->arena,
						  &n->nd.e[i]);
	}
	pthread_mutex_unlock(&c->lock);
	if (rc <= 0)
		return rc;
	if ((rc = load_node(o, nd, cid, depth)))
		return rc;
	if (keep)
		cache_put(c, cid, depth, nd);
	return 0;
}

int lfs_index_get(struct lfs_index_entry *out, struct lfs_arena *a,
		  const struct lfs_index *ix, const struct lfs_cid *root,
		  const char *id, size_t id_len)
{
	uint8_t h[32];
	hash_id(ix, h, id, id_len);
	struct op o;
	op_init(&o, ix);
	struct lfs_cid cur = *root;
	int rc = 0;
	for (int depth = 0;; depth++) {
		bool done = false;
		if (ix->cache && cached_step(ix->cache, &cur, depth, h, id,
					     id_len, out, a, &rc, &done)) {
			if (done)
				break;
			continue;
		}
		struct node nd;
		if ((rc = load_node(&o, &nd, &cur, depth)))
			break;
		if (ix->cache)
			cache_put(ix->cache, &cur, depth, &nd);
		if (!nd.leaf) {
			unsigned d = digit(h, depth);
			if (!(nd.bitmap & (1u << d))) {
				rc = -ENOENT;
				break;
			}
			cur = nd.kids[d];
			continue;
		}
		struct lfs_index_entry key = {.id = id, .id_len = id_len};
		struct lfs_index_entry *e =
			bsearch(&key, nd.e, nd.n, sizeof(*nd.e), entry_cmp);
		rc = e ? lfs_index_entry_copy(out, a, e) : -ENOENT;
		break;
	}
	op_release(&o);
	return rc;
}

int lfs_index_count(uint64_t *out, const struct lfs_index *ix,
		    const struct lfs_cid *root)
{
	struct op o;
	op_init(&o, ix);
	struct node nd;
	int rc = load_node(&o, &nd, root, 0);
	if (!rc)
		*out = nd.count;
	op_release(&o);
	return rc;
}

/* Gather a subtree's entries into an arena array (for collapse and diff). */
struct gather {
	struct lfs_arena *a;
	struct lfs_index_entry *e;
	size_t n, cap;
};

static int gather_fn(void *ctx, const struct lfs_index_entry *e)
{
	struct gather *g = ctx;
	if (g->n == g->cap) {
		size_t cap = g->cap ? g->cap * 2 : 64;
		struct lfs_index_entry *p =
			lfs_arena_calloc(g->a, cap, sizeof(*p));
		if (!p)
			return -ENOMEM;
		if (g->n)
			memcpy(p, g->e, g->n * sizeof(*p));
		g->e = p;
		g->cap = cap;
	}
	g->e[g->n++] = *e;
	return 0;
}

/*
 * Walk a subtree calling fn on each entry. With check set, also verify that
 * every id hashes into this subtree (prefix digits) and that counts add up.
 */
static int walk(struct op *o, const struct lfs_cid *cid, int depth,
		const uint8_t *prefix, bool check, uint64_t *out_count,
		lfs_index_each_fn fn, void *ctx)
{
	struct node nd;
	int rc = o->walk_read == WALK_BLOCKS
			 ? load_node(o, &nd, cid, depth)
			 : load_node_cached(o, &nd, cid, depth,
					    o->walk_read == WALK_KEEP);
	if (!rc)
		rc = meet(&o->walked, &nd, cid);
	if (rc)
		return rc;
	if (nd.leaf) {
		for (size_t i = 0; i < nd.n; i++) {
			if (check) {
				uint8_t h[32];
				hash_id(o->ix, h, nd.e[i].id, nd.e[i].id_len);
				for (int d = 0; d < depth; d++)
					if (digit(h, d) != prefix[d])
						return -EBADMSG;
			}
			if (fn && (rc = fn(ctx, &nd.e[i])))
				return rc;
		}
		*out_count = nd.n;
		return 0;
	}
	uint64_t total = 0;
	uint8_t path[MAX_DEPTH];
	memcpy(path, prefix, (size_t)depth);
	for (int d = 0; d < 16; d++) {
		if (!(nd.bitmap & (1u << d)))
			continue;
		uint64_t sub;
		path[depth] = (uint8_t)d;
		/* Entries handed to fn live only for the call, unless the
		 * caller gathers them: then they must stay in the arena. */
		struct lfs_arena_mark mark = lfs_arena_mark(&o->arena);
		rc = walk(o, &nd.kids[d], depth + 1, path, check, &sub, fn,
			  ctx);
		if (fn != gather_fn)
			lfs_arena_rewind(&o->arena, mark);
		if (rc)
			return rc;
		if (check && sub == 0)
			return -EBADMSG; /* empty child must not be linked */
		total += sub;
	}
	if (check && total != nd.count)
		return -EBADMSG;
	*out_count = nd.count;
	return 0;
}

/* Visit every entry below root, checking the counts when check is set. */
static int walk_all(const struct lfs_index *ix, const struct lfs_cid *root,
		    bool check, lfs_index_each_fn fn, void *ctx)
{
	struct op o;
	op_init(&o, ix);
	uint64_t n;
	uint8_t prefix[MAX_DEPTH] = {0};
	walk_begin(&o);
	int rc = 0;
	if (!check && ix->cache) {
		/* Listing every entry usually comes before looking them up
		 * one by one (a directory listing, then a stat per name): keep
		 * the nodes when the whole index fits in a part of the cache,
		 * else read through it without pushing hotter nodes out. */
		struct node top; /* kept, so the walk reads it once */
		rc = load_node_cached(&o, &top, root, 0, true);
		o.walk_read = !rc && top.count <= cache_walk_max(ix->cache)
				      ? WALK_KEEP
				      : WALK_CACHED;
	}
	if (!rc)
		rc = walk(&o, root, 0, prefix, check, &n, fn, ctx);
	op_release(&o);
	return rc;
}

int lfs_index_each(const struct lfs_index *ix, const struct lfs_cid *root,
		   lfs_index_each_fn fn, void *ctx)
{
	return walk_all(ix, root, false, fn, ctx);
}

int lfs_index_check(const struct lfs_index *ix, const struct lfs_cid *root,
		    lfs_index_each_fn fn, void *ctx)
{
	return walk_all(ix, root, true, fn, ctx);
}

/* ---- apply ---- */

static int gather_subtree(struct op *o, struct gather *g,
			  const struct lfs_cid *cid, int depth)
{
	uint64_t n;
	uint8_t prefix[MAX_DEPTH] = {0};
	walk_begin(o);
	o->walk_read = WALK_CACHED; /* a commit just read its path */
	return walk(o, cid, depth, prefix, false, &n, gather_fn, g);
}

static int build(struct op *o, struct result *out, struct lfs_index_entry *e,
		 size_t n, int depth)
{
	out->count = n;
	if (n <= LFS_INDEX_LEAF_MAX) {
		out->e = e;
		out->n = n;
		return 0;
	}
	if (depth >= MAX_DEPTH)
		return write_leaf(o, &out->cid, e, n, depth);
	/* Stable partition by digit keeps each group in id order. */
	struct lfs_index_entry *sorted =
		lfs_arena_calloc(&o->arena, n, sizeof(*e));
	uint8_t *dig = lfs_arena_alloc(&o->arena, n);
	if (!sorted || !dig)
		return -ENOMEM;
	size_t start[17] = {0};
	for (size_t i = 0; i < n; i++) {
		uint8_t h[32];
		hash_id(o->ix, h, e[i].id, e[i].id_len);
		dig[i] = (uint8_t)digit(h, depth);
		start[dig[i] + 1]++;
	}
	for (int d = 0; d < 16; d++)
		start[d + 1] += start[d];
	size_t fill[16];
	memcpy(fill, start, sizeof(fill));
	for (size_t i = 0; i < n; i++)
		sorted[fill[dig[i]]++] = e[i];
	struct lfs_cid kids[16];
	uint16_t bitmap = 0;
	for (int d = 0; d < 16; d++) {
		size_t cnt = start[d + 1] - start[d];
		if (!cnt)
			continue;
		struct result r;
		int rc = build(o, &r, sorted + start[d], cnt, depth + 1);
		if (!rc && r.count <= LFS_INDEX_LEAF_MAX)
			rc = write_leaf(o, &r.cid, r.e, r.n, depth + 1);
		if (rc)
			return rc;
		kids[d] = r.cid;
		bitmap |= (uint16_t)(1u << d);
	}
	return write_internal(o, &out->cid, bitmap, kids, n, depth);
}

/* Merge sorted leaf entries with sorted changes into a new arena array. */
static int merge_leaf(struct op *o, struct lfs_index_entry **out, size_t *out_n,
		      const struct node *nd, const struct chg *ch, size_t n)
{
	struct lfs_index_entry *e =
		lfs_arena_calloc(&o->arena, nd->n + n + 1, sizeof(*e));
	if (!e)
		return -ENOMEM;
	size_t i = 0, j = 0, k = 0;
	while (i < nd->n || j < n) {
		int c = i == nd->n ? 1
			: j == n   ? -1
				   : id_cmp(nd->e[i].id, nd->e[i].id_len,
					    ch[j].id, ch[j].id_len);
		if (c < 0) {
			e[k++] = nd->e[i++];
			continue;
		}
		if (ch[j].entry) {
			e[k] = *ch[j].entry;
			e[k].id = ch[j].id;
			e[k].id_len = ch[j].id_len;
			k++;
		}
		j++;
		if (c == 0)
			i++;
	}
	*out = e;
	*out_n = k;
	return 0;
}

static int apply_at(struct op *o, struct result *out, uint64_t *old_count,
		    const struct lfs_cid *cid, int depth, struct chg *ch,
		    size_t n)
{
	struct node nd;
	int rc = load_node_cached(o, &nd, cid, depth, true);
	if (rc)
		return rc;
	*old_count = nd.count;
	if (nd.leaf) {
		struct lfs_index_entry *e;
		size_t m;
		if ((rc = merge_leaf(o, &e, &m, &nd, ch, n)))
			return rc;
		return build(o, out, e, m, depth);
	}

	/* Stable partition of the changes by digit keeps each group in id
	 * order, as the leaves below need. */
	struct chg *part = lfs_arena_calloc(&o->arena, n, sizeof(*part));
	if (!part)
		return -ENOMEM;
	size_t start[17] = {0};
	for (size_t i = 0; i < n; i++)
		start[digit(ch[i].hash, depth) + 1]++;
	for (int d = 0; d < 16; d++)
		start[d + 1] += start[d];
	size_t fill[16];
	memcpy(fill, start, sizeof(fill));
	for (size_t i = 0; i < n; i++)
		part[fill[digit(ch[i].hash, depth)]++] = ch[i];

	struct result kid[16];
	bool touched[16] = {false};
	uint64_t total = nd.count;
	for (unsigned d = 0; d < 16; d++) {
		if (start[d + 1] == start[d])
			continue;
		uint64_t before;
		const struct lfs_cid *child =
			nd.bitmap & (1u << d) ? &nd.kids[d] : NULL;
		if ((rc = apply_at(o, &kid[d], &before, child, depth + 1,
				   part + start[d], start[d + 1] - start[d])))
			return rc;
		touched[d] = true;
		total = total - before + kid[d].count;
	}

	out->count = total;
	if (total <= LFS_INDEX_LEAF_MAX) {
		struct gather g = {.a = &o->arena};
		for (int d = 0; d < 16; d++) {
			if (touched[d]) {
				for (size_t k = 0; k < kid[d].n; k++)
					if ((rc = gather_fn(&g, &kid[d].e[k])))
						return rc;
			} else if (nd.bitmap & (1u << d)) {
				if ((rc = gather_subtree(o, &g, &nd.kids[d],
							 depth + 1)))
					return rc;
			}
		}
		if (g.n != total)
			return -EBADMSG; /* a child's count lied */
		if (g.n)
			qsort(g.e, g.n, sizeof(*g.e), entry_cmp);
		out->e = g.e;
		out->n = g.n;
		return 0;
	}
	uint16_t bitmap = nd.bitmap;
	for (int d = 0; d < 16; d++) {
		if (!touched[d])
			continue;
		if (kid[d].count == 0) {
			bitmap &= (uint16_t) ~(1u << d);
			continue;
		}
		if (kid[d].count <= LFS_INDEX_LEAF_MAX &&
		    (rc = write_leaf(o, &kid[d].cid, kid[d].e, kid[d].n,
				     depth + 1)))
			return rc;
		nd.kids[d] = kid[d].cid;
		bitmap |= (uint16_t)(1u << d);
	}
	return write_internal(o, &out->cid, bitmap, nd.kids, total, depth);
}

static bool valid_text(const char *s, size_t len, size_t max)
{
	return len <= max && !memchr(s, 0, len);
}

static bool valid_entry(const struct lfs_index_entry *e)
{
	if (!valid_text(e->cur.writer, strlen(e->cur.writer), LFS_WRITER_MAX))
		return false;
	for (size_t i = 0; i < e->nconflicts; i++)
		if (strlen(e->conflicts[i].writer) > LFS_WRITER_MAX)
			return false;
	return true;
}

int lfs_index_apply(struct lfs_cid *out, const struct lfs_index *ix,
		    const struct lfs_cid *root,
		    struct lfs_index_change *changes, size_t n)
{
	struct op o;
	op_init(&o, ix);
	int rc = 0;
	struct chg *ch = calloc(n ? n : 1, sizeof(*ch));
	if (!ch) {
		rc = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		if (changes[i].id_len == 0 ||
		    !valid_text(changes[i].id, changes[i].id_len,
				LFS_INDEX_ID_MAX) ||
		    (changes[i].entry && !valid_entry(changes[i].entry))) {
			rc = -EINVAL;
			goto out;
		}
		ch[i].id = changes[i].id;
		ch[i].id_len = changes[i].id_len;
		ch[i].entry = changes[i].entry;
	}
	if (n)
		qsort(ch, n, sizeof(*ch), chg_cmp);
	for (size_t i = 1; i < n; i++)
		if (chg_cmp(&ch[i - 1], &ch[i]) == 0) {
			rc = -EINVAL;
			goto out;
		}
	for (size_t i = 0; i < n; i++)
		hash_id(ix, ch[i].hash, ch[i].id, ch[i].id_len);
	struct result r;
	uint64_t before;
	if (n == 0) {
		*out = *root;
		goto out;
	}
	rc = apply_at(&o, &r, &before, root, 0, ch, n);
	if (!rc && r.count <= LFS_INDEX_LEAF_MAX)
		rc = write_leaf(&o, &r.cid, r.e, r.n, 0);
	if (!rc)
		*out = r.cid;
out:
	free(ch);
	op_release(&o);
	return rc;
}

/* ---- diff ---- */

static int gather_node(struct op *o, struct gather *g, const struct node *nd,
		       const struct lfs_cid *cid, int depth)
{
	if (nd->leaf) {
		g->e = nd->e;
		g->n = nd->n;
		return 0;
	}
	int rc = gather_subtree(o, g, cid, depth);
	if (!rc && g->n)
		qsort(g->e, g->n, sizeof(*g->e), entry_cmp);
	return rc;
}

static int diff_at(struct op *o, const struct lfs_cid *a,
		   const struct lfs_cid *b, int depth, lfs_index_diff_fn fn,
		   void *ctx)
{
	if (a && b && lfs_cid_equal(a, b))
		return 0;
	struct node na, nb;
	int rc;
	if ((rc = load_node_cached(o, &na, a, depth, false)) ||
	    (rc = load_node_cached(o, &nb, b, depth, false)) ||
	    (rc = meet(&o->side[0], &na, a)) ||
	    (rc = meet(&o->side[1], &nb, b)))
		return rc;
	if (!na.leaf && !nb.leaf) {
		for (int d = 0; d < 16; d++) {
			const struct lfs_cid *ka =
				na.bitmap & (1u << d) ? &na.kids[d] : NULL;
			const struct lfs_cid *kb =
				nb.bitmap & (1u << d) ? &nb.kids[d] : NULL;
			if (!ka && !kb)
				continue;
			struct lfs_arena_mark mark = lfs_arena_mark(&o->arena);
			rc = diff_at(o, ka, kb, depth + 1, fn, ctx);
			lfs_arena_rewind(&o->arena, mark);
			if (rc)
				return rc;
		}
		return 0;
	}
	/* A leaf on either side: the other side holds at most LEAF_MAX more
	 * entries than the difference, so listing both costs O(difference). */
	struct gather ga = {.a = &o->arena}, gb = {.a = &o->arena};
	if ((rc = gather_node(o, &ga, &na, a, depth)) ||
	    (rc = gather_node(o, &gb, &nb, b, depth)))
		return rc;
	size_t i = 0, j = 0;
	while (i < ga.n || j < gb.n) {
		int c = i == ga.n   ? 1
			: j == gb.n ? -1
				    : entry_cmp(&ga.e[i], &gb.e[j]);
		if (c < 0)
			rc = fn(ctx, &ga.e[i++], NULL);
		else if (c > 0)
			rc = fn(ctx, NULL, &gb.e[j++]);
		else {
			if (!lfs_index_entry_equal(&ga.e[i], &gb.e[j]))
				rc = fn(ctx, &ga.e[i], &gb.e[j]);
			i++;
			j++;
		}
		if (rc)
			return rc;
	}
	return 0;
}

int lfs_index_diff(const struct lfs_index *ix, const struct lfs_cid *a,
		   const struct lfs_cid *b, lfs_index_diff_fn fn, void *ctx)
{
	struct op o;
	op_init(&o, ix);
	int rc = diff_at(&o, a, b, 0, fn, ctx);
	op_release(&o);
	return rc;
}

/* ---- node enumeration ---- */

static int nodes_at(struct op *o, const struct lfs_cid *cid, int depth,
		    lfs_index_node_fn fn, lfs_index_each_fn leaf_fn, void *ctx)
{
	int rc = fn(ctx, cid);
	if (rc)
		return rc > 0 ? 0 : rc;
	struct node nd;
	struct lfs_arena_mark mark = lfs_arena_mark(&o->arena);
	if ((rc = load_node_cached(o, &nd, cid, depth, false)))
		return rc;
	for (size_t i = 0; nd.leaf && leaf_fn && i < nd.n && !rc; i++)
		rc = leaf_fn(ctx, &nd.e[i]);
	for (int d = 0; d < 16 && !nd.leaf && !rc; d++)
		if (nd.bitmap & (1u << d))
			rc = nodes_at(o, &nd.kids[d], depth + 1, fn, leaf_fn,
				      ctx);
	lfs_arena_rewind(&o->arena, mark);
	return rc;
}

int lfs_index_nodes(const struct lfs_index *ix, const struct lfs_cid *root,
		    lfs_index_node_fn fn, lfs_index_each_fn leaf_fn, void *ctx)
{
	struct op o;
	op_init(&o, ix);
	int rc = nodes_at(&o, root, 0, fn, leaf_fn, ctx);
	op_release(&o);
	return rc;
}
