#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "fp_ledger.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "car.h"
#include "cidmap.h"
#include "dagjson.h"
#include "errmsg.h"
#include "fileio.h"
#include "fp_crypt.h"

/* Bounds on hostile histories: shards visited, merge-walk steps. */
#define WALK_MAX  ((size_t)1 << 24)
#define HEADS_MAX 64

struct car {
	struct lfs_cid cid;
	uint8_t *plain;
	size_t len;
	int64_t t_ns;
};

struct blk {
	const uint8_t *p;
	size_t len;
	int64_t t_ns; /* the oldest car holding it */
};

struct lfs_fp_ledger {
	char *name, *dir, *keybag;
	struct lfs_fp_keyring keys;
	int key_rc; /* the keybag file could not be read: read it again */
	pthread_mutex_t refresh_lock; /* one refresh at a time */

	pthread_rwlock_t blocks_lock; /* cars, blocks, their maps */
	struct car *cars;
	size_t ncars, carcap;
	struct lfs_cidmap carmap; /* car CID -> index + 1 (0: failed) */
	struct blk *blocks;
	size_t nblocks, blkcap;
	struct lfs_cidmap blkmap; /* block CID -> index */

	pthread_mutex_t state_lock; /* state, err */
	struct lfs_fp_state *state;
	char err[512];

	uint8_t *meta; /* the meta file's bytes behind state */
	size_t meta_len;
};

static struct lfs_cid del_cid; /* {del: true}: the same in every ledger */
static pthread_once_t del_once = PTHREAD_ONCE_INIT;

static void del_init(void)
{
	static const uint8_t b[] = {0xa1, 0x63, 'd', 'e', 'l', 0xf5};
	lfs_cid_of(&del_cid, LFS_CODEC_DAG_CBOR, b, sizeof(b));
}

static void __attribute__((format(printf, 2, 3)))
set_error(struct lfs_fp_ledger *l, const char *fmt, ...)
{
	va_list ap;
	pthread_mutex_lock(&l->state_lock);
	va_start(ap, fmt);
	vsnprintf(l->err, sizeof(l->err), fmt, ap);
	va_end(ap);
	pthread_mutex_unlock(&l->state_lock);
}

void lfs_fp_ledger_error(struct lfs_fp_ledger *l, char *out, size_t size)
{
	pthread_mutex_lock(&l->state_lock);
	snprintf(out, size, "%s", l->err);
	pthread_mutex_unlock(&l->state_lock);
}

const char *lfs_fp_ledger_name(const struct lfs_fp_ledger *l)
{
	return l->name;
}

/* ---- files ---- */

static int read_file(const char *path, size_t max, uint8_t **out,
		     size_t *out_len, int64_t *out_t)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	struct stat st;
	if (fstat(fd, &st)) {
		int e = -errno;
		close(fd);
		return e;
	}
	if (out_t)
		*out_t = (int64_t)st.st_mtim.tv_sec * 1000000000 +
			 st.st_mtim.tv_nsec;
	int rc = lfs_read_fd(fd, max, out, out_len);
	close(fd);
	return rc;
}

static void cid_str(char out[LFS_CID_STRLEN + 1], const struct lfs_cid *c)
{
	lfs_cid_to_string(out, c);
}

/* ---- cars and blocks ---- */

static const char *crypt_msg(int rc)
{
	switch (rc) {
	case -ENOKEY:
		return "it is encrypted with a key the keybag does not hold "
		       "(a wrong or missing key)";
	case -EBADMSG:
		return "it fails authentication (damaged, or not written by "
		       "Fireproof with this key)";
	default:
		return lfs_errmsg(rc);
	}
}

static bool blk_find(struct lfs_fp_ledger *l, const struct lfs_cid *c,
		     struct blk *out)
{
	uint64_t i;
	pthread_rwlock_rdlock(&l->blocks_lock);
	bool ok = lfs_cidmap_get(&l->blkmap, c, &i);
	if (ok)
		*out = l->blocks[i];
	pthread_rwlock_unlock(&l->blocks_lock);
	return ok;
}

bool lfs_fp_ledger_has_block(struct lfs_fp_ledger *l, const struct lfs_cid *c)
{
	struct blk b;
	return blk_find(l, c, &b);
}

/*
 * Read, decrypt, check and parse one car file; on success the car and its
 * blocks are indexed (suffix ".car", or "" for an attachment). Only the
 * refresh path (under refresh_lock) and attachment reads call this; the
 * car map is checked again under the write lock.
 */
static int load_car(struct lfs_fp_ledger *l, const struct lfs_cid *cid,
		    const char *suffix)
{
	char s[LFS_CID_STRLEN + 1], path[PATH_MAX];
	uint64_t have;
	pthread_rwlock_rdlock(&l->blocks_lock);
	bool loaded = lfs_cidmap_get(&l->carmap, cid, &have);
	pthread_rwlock_unlock(&l->blocks_lock);
	if (loaded)
		return 0;
	cid_str(s, cid);
	if ((size_t)snprintf(path, sizeof(path), "%s/data/%s%s", l->dir, s,
			     suffix) >= sizeof(path))
		return -ENAMETOOLONG;
	uint8_t *file = NULL;
	size_t flen = 0;
	int64_t t = 0;
	int rc = read_file(path, LFS_FP_CAR_MAX, &file, &flen, &t);
	if (rc) {
		set_error(l, "ledger '%s': cannot read car file data/%s%s: %s",
			  l->name, s, suffix, lfs_errmsg(rc));
		return rc;
	}
	uint8_t *plain = file;
	size_t plen = flen;
	if (lfs_fp_is_envelope(file, flen)) {
		struct lfs_buf b;
		lfs_buf_init(&b, LFS_FP_CAR_MAX);
		rc = lfs_fp_decrypt(&b, &l->keys, file, flen);
		free(file);
		if (rc) {
			lfs_buf_release(&b);
			set_error(l,
				  "ledger '%s': cannot decrypt car file "
				  "data/%s%s: %s",
				  l->name, s, suffix, crypt_msg(rc));
			return rc;
		}
		plain = lfs_buf_steal(&b, &plen);
	}
	/* storekey=insecure files are plain CARs; named the same way. */
	struct lfs_cid check;
	lfs_cid_of(&check, LFS_CODEC_FP_CAR, plain ? plain : (uint8_t *)"",
		   plen);
	if (cid->codec != LFS_CODEC_FP_CAR || !lfs_cid_equal(&check, cid)) {
		free(plain);
		set_error(l,
			  "ledger '%s': car file data/%s%s does not hold what "
			  "its name says (renamed or damaged)",
			  l->name, s, suffix);
		return -EBADMSG;
	}
	struct lfs_car_reader r;
	rc = lfs_car_reader_init(&r, plain, plen);
	/* The name is the hash of every byte: no block needs checking. */
	r.trusted = true;
	struct lfs_cid bc;
	const uint8_t *bp;
	size_t bl, nb = 0;
	if (!rc)
		while ((rc = lfs_car_reader_next(&r, &bc, &bp, &bl)) == 1)
			nb++;
	lfs_car_reader_release(&r);
	if (rc < 0) {
		free(plain);
		set_error(l,
			  "ledger '%s': car file data/%s%s is not a valid "
			  "CAR: %s",
			  l->name, s, suffix, lfs_errmsg(rc));
		return rc == -ENOMEM ? rc : -EBADMSG;
	}
	pthread_rwlock_wrlock(&l->blocks_lock);
	if (lfs_cidmap_get(&l->carmap, cid, &have)) {
		pthread_rwlock_unlock(&l->blocks_lock);
		free(plain);
		return 0;
	}
	rc = 0;
	if (l->ncars == l->carcap) {
		size_t cap = l->carcap ? l->carcap * 2 : 16;
		void *p = realloc(l->cars, cap * sizeof(*l->cars));
		if (!p)
			rc = -ENOMEM;
		else {
			l->cars = p;
			l->carcap = cap;
		}
	}
	if (!rc && l->nblocks + nb > l->blkcap) {
		size_t cap = l->blkcap ? l->blkcap : 64;
		while (cap < l->nblocks + nb)
			cap *= 2;
		void *p = realloc(l->blocks, cap * sizeof(*l->blocks));
		if (!p)
			rc = -ENOMEM;
		else {
			l->blocks = p;
			l->blkcap = cap;
		}
	}
	if (!rc)
		rc = lfs_car_reader_init(&r, plain, plen);
	if (!rc) {
		r.trusted = true;
		while ((rc = lfs_car_reader_next(&r, &bc, &bp, &bl)) == 1) {
			uint64_t i;
			if (lfs_cidmap_get(&l->blkmap, &bc, &i)) {
				if (t < l->blocks[i].t_ns)
					l->blocks[i].t_ns = t;
				continue;
			}
			l->blocks[l->nblocks] =
				(struct blk){.p = bp, .len = bl, .t_ns = t};
			if ((rc = lfs_cidmap_set(&l->blkmap, &bc, l->nblocks)))
				break;
			l->nblocks++;
		}
		lfs_car_reader_release(&r);
	}
	if (!rc) {
		l->cars[l->ncars] = (struct car){
			.cid = *cid, .plain = plain, .len = plen, .t_ns = t};
		rc = lfs_cidmap_set(&l->carmap, cid, ++l->ncars);
		plain = NULL;
	}
	pthread_rwlock_unlock(&l->blocks_lock);
	free(plain);
	return rc < 0 ? rc : 0;
}

/* The root block of a loaded car. */
static int car_root(struct lfs_fp_ledger *l, const struct lfs_cid *car,
		    struct lfs_cid *out)
{
	uint64_t i;
	int rc = -ENOENT;
	pthread_rwlock_rdlock(&l->blocks_lock);
	if (lfs_cidmap_get(&l->carmap, car, &i) && i) {
		struct lfs_car_reader r;
		const struct car *c = &l->cars[i - 1];
		if (!(rc = lfs_car_reader_init(&r, c->plain, c->len))) {
			if (r.nroots)
				*out = r.roots[0];
			else
				rc = -EBADMSG;
			lfs_car_reader_release(&r);
		}
	}
	pthread_rwlock_unlock(&l->blocks_lock);
	return rc;
}

/* ---- key maps ---- */

struct kv {
	const char *key;
	size_t len;
	struct lfs_cid value;
	bool used;
};

struct kmap {
	struct kv *slots;
	size_t nslots, count;
};

static uint64_t khash(const char *k, size_t n)
{
	uint64_t h = 1469598103934665603ull;
	for (size_t i = 0; i < n; i++)
		h = (h ^ (uint8_t)k[i]) * 1099511628211ull;
	return h;
}

static void kmap_release(struct kmap *m)
{
	free(m->slots);
	memset(m, 0, sizeof(*m));
}

/* Set key (copied into a) to value. */
static int kmap_set(struct kmap *m, struct lfs_arena *a, const char *k,
		    size_t n, const struct lfs_cid *value)
{
	if ((m->count + 1) * 2 > m->nslots) {
		size_t ns = m->nslots ? m->nslots * 2 : 256;
		struct kv *s = calloc(ns, sizeof(*s));
		if (!s)
			return -ENOMEM;
		for (size_t i = 0; i < m->nslots; i++) {
			if (!m->slots[i].used)
				continue;
			size_t j = khash(m->slots[i].key, m->slots[i].len) &
				   (ns - 1);
			while (s[j].used)
				j = (j + 1) & (ns - 1);
			s[j] = m->slots[i];
		}
		free(m->slots);
		m->slots = s;
		m->nslots = ns;
	}
	size_t j = khash(k, n) & (m->nslots - 1);
	while (m->slots[j].used) {
		struct kv *e = &m->slots[j];
		if (e->len == n && !memcmp(e->key, k, n)) {
			e->value = *value;
			return 0;
		}
		j = (j + 1) & (m->nslots - 1);
	}
	char *copy = lfs_arena_strndup(a, k, n);
	if (!copy)
		return -ENOMEM;
	m->slots[j] = (struct kv){
		.key = copy, .len = n, .value = *value, .used = true};
	m->count++;
	return 0;
}

/* Every key under shard root into m (keys copied into a). */
static int traverse(struct lfs_fp_ledger *l, const struct lfs_cid *root,
		    struct kmap *m, struct lfs_arena *a)
{
	struct lfs_cid *stack = malloc(64 * sizeof(*stack));
	size_t n = 0, cap = 64, visits = 0;
	int rc = 0;
	char *key = NULL;
	size_t keycap = 0;
	struct lfs_arena tmp;
	lfs_arena_init(&tmp, 0);
	if (!stack)
		return -ENOMEM;
	stack[n++] = *root;
	while (n && !rc) {
		struct lfs_cid c = stack[--n];
		struct blk b;
		struct lfs_fp_shard sh;
		if (++visits > WALK_MAX) {
			rc = -E2BIG;
			break;
		}
		if (!blk_find(l, &c, &b)) {
			rc = -ENOENT;
			break;
		}
		lfs_arena_release(&tmp);
		if ((rc = lfs_fp_shard_decode(&sh, &tmp, b.p, b.len)))
			break;
		for (size_t i = 0; i < sh.n && !rc; i++) {
			const struct lfs_fp_entry *e = &sh.entries[i];
			size_t kl = sh.prefix_len + e->suffix_len;
			if (kl + 1 > keycap) {
				char *p = realloc(key, kl + 1);
				if (!p) {
					rc = -ENOMEM;
					break;
				}
				key = p;
				keycap = kl + 1;
			}
			memcpy(key, sh.prefix, sh.prefix_len);
			memcpy(key + sh.prefix_len, e->suffix, e->suffix_len);
			if (e->has_value)
				rc = kmap_set(m, a, key, kl, &e->value);
			if (!rc && e->has_child) {
				if (n == cap) {
					void *p = realloc(
						stack,
						cap * 2 * sizeof(*stack));
					if (!p) {
						rc = -ENOMEM;
						break;
					}
					stack = p;
					cap *= 2;
				}
				stack[n++] = e->child;
			}
		}
	}
	lfs_arena_release(&tmp);
	free(stack);
	free(key);
	return rc;
}

static int doc_cmp(const void *x, const void *y)
{
	const struct lfs_fp_doc *a = x, *b = y;
	int c = memcmp(a->id, b->id,
		       a->id_len < b->id_len ? a->id_len : b->id_len);
	return c ? c : (a->id_len > b->id_len) - (a->id_len < b->id_len);
}

/* The live documents of m, sorted; keep only held blocks if asked. */
static int kmap_docs(struct lfs_fp_ledger *l, const struct kmap *m,
		     struct lfs_arena *a, bool held_only,
		     struct lfs_fp_doc **out, size_t *out_n)
{
	pthread_once(&del_once, del_init);
	struct lfs_fp_doc *v = calloc(m->count + 1, sizeof(*v));
	size_t n = 0;
	if (!v)
		return -ENOMEM;
	for (size_t i = 0; i < m->nslots; i++) {
		const struct kv *e = &m->slots[i];
		if (!e->used || lfs_cid_equal(&e->value, &del_cid) ||
		    (e->len == strlen(LFS_FP_GENESIS_KEY) &&
		     !memcmp(e->key, LFS_FP_GENESIS_KEY, e->len)))
			continue;
		if (held_only && !lfs_fp_ledger_has_block(l, &e->value))
			continue;
		v[n].id = e->key;
		v[n].id_len = e->len;
		v[n].value = e->value;
		n++;
	}
	(void)a;
	qsort(v, n, sizeof(*v), doc_cmp);
	*out = v;
	*out_n = n;
	return 0;
}

/* ---- the clock ---- */

static const struct lfs_fp_evinfo *ev_of(const struct lfs_fp_state *s,
					 const struct lfs_cidmap *idx,
					 const struct lfs_cid *c, size_t *out_i)
{
	uint64_t i;
	if (!lfs_cidmap_get(idx, c, &i) || i == UINT64_MAX)
		return NULL;
	if (out_i)
		*out_i = (size_t)i;
	return &s->events[i];
}

/*
 * Every event reachable from s->heads, decoded, ordered children before
 * parents (the longest path from a head, then CID), in s->events.
 * Missing events are counted in *missing.
 */
struct evtmp {
	struct lfs_fp_evinfo e;
	size_t kids;  /* children in the set not yet placed */
	size_t depth; /* longest path from a head */
};

static int depth_cmp(const void *x, const void *y)
{
	const struct evtmp *a = x, *b = y;
	if (a->depth != b->depth)
		return a->depth < b->depth ? -1 : 1;
	char sa[LFS_CID_STRLEN + 1], sb[LFS_CID_STRLEN + 1];
	cid_str(sa, &a->e.cid);
	cid_str(sb, &b->e.cid);
	return strcmp(sa, sb);
}

static int load_events(struct lfs_fp_ledger *l, struct lfs_fp_state *s,
		       size_t *missing)
{
	struct lfs_cidmap idx;
	lfs_cidmap_init(&idx);
	struct evtmp *v = NULL;
	size_t n = 0, cap = 0;
	int rc = 0;
	/* Breadth first from the heads: decode each event once. */
	struct lfs_cid *queue = NULL;
	size_t qn = 0, qcap = 0, qi = 0;
#define PUSH(c)                                                                \
	do {                                                                   \
		if (qn == qcap) {                                              \
			size_t nc = qcap ? qcap * 2 : 64;                      \
			void *p = realloc(queue, nc * sizeof(*queue));         \
			if (!p) {                                              \
				rc = -ENOMEM;                                  \
				goto out;                                      \
			}                                                      \
			queue = p;                                             \
			qcap = nc;                                             \
		}                                                              \
		queue[qn++] = (c);                                             \
	} while (0)
	for (size_t i = 0; i < s->nheads; i++)
		PUSH(s->heads[i]);
	while (qi < qn) {
		struct lfs_cid c = queue[qi++];
		uint64_t have;
		if (lfs_cidmap_get(&idx, &c, &have))
			continue;
		struct blk b;
		if (!blk_find(l, &c, &b)) {
			(*missing)++;
			if ((rc = lfs_cidmap_set(&idx, &c, UINT64_MAX)))
				goto out;
			continue;
		}
		if (n == cap) {
			size_t nc = cap ? cap * 2 : 64;
			void *p = realloc(v, nc * sizeof(*v));
			if (!p) {
				rc = -ENOMEM;
				goto out;
			}
			v = p;
			cap = nc;
		}
		memset(&v[n], 0, sizeof(v[n]));
		v[n].e.cid = c;
		v[n].e.t_ns = b.t_ns;
		if ((rc = lfs_fp_event_decode(&v[n].e.ev, &s->a, b.p, b.len))) {
			char cs[LFS_CID_STRLEN + 1];
			cid_str(cs, &c);
			set_error(l,
				  "ledger '%s': block %s is not a clock event",
				  l->name, cs);
			goto out;
		}
		if ((rc = lfs_cidmap_set(&idx, &c, n)))
			goto out;
		for (size_t k = 0; k < v[n].e.ev.nparents; k++)
			PUSH(v[n].e.ev.parents[k]);
		n++;
	}
#undef PUSH
	/* Longest path from a head: Kahn's order over child -> parent. */
	for (size_t i = 0; i < n; i++)
		for (size_t k = 0; k < v[i].e.ev.nparents; k++) {
			uint64_t j;
			if (lfs_cidmap_get(&idx, &v[i].e.ev.parents[k], &j) &&
			    j != UINT64_MAX)
				v[j].kids++;
		}
	qn = 0;
	for (size_t i = 0; i < n; i++)
		if (!v[i].kids) {
			if (qn == qcap) {
				void *p = realloc(queue, (qcap * 2 +
							  64) * sizeof(*queue));
				if (!p) {
					rc = -ENOMEM;
					goto out;
				}
				queue = p;
				qcap = qcap * 2 + 64;
			}
			queue[qn++] = v[i].e.cid;
		}
	for (qi = 0; qi < qn; qi++) {
		uint64_t i;
		lfs_cidmap_get(&idx, &queue[qi], &i);
		for (size_t k = 0; k < v[i].e.ev.nparents; k++) {
			uint64_t j;
			if (!lfs_cidmap_get(&idx, &v[i].e.ev.parents[k], &j) ||
			    j == UINT64_MAX)
				continue;
			if (v[j].depth < v[i].depth + 1)
				v[j].depth = v[i].depth + 1;
			if (--v[j].kids == 0) {
				if (qn == qcap) {
					void *p = realloc(
						queue, (qcap * 2 + 64) *
							       sizeof(*queue));
					if (!p) {
						rc = -ENOMEM;
						goto out;
					}
					queue = p;
					qcap = qcap * 2 + 64;
				}
				queue[qn++] = v[j].e.cid;
			}
		}
	}
	if (qn != n) {
		set_error(l, "ledger '%s': the clock has a cycle", l->name);
		rc = -EBADMSG;
		goto out;
	}
	if (n)
		qsort(v, n, sizeof(*v), depth_cmp);
	s->events = n ? lfs_arena_calloc(&s->a, n, sizeof(*s->events)) : NULL;
	if (n && !s->events) {
		rc = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < n; i++)
		s->events[i] = v[i].e;
	s->nevents = n;
out:
	free(queue);
	free(v);
	lfs_cidmap_release(&idx);
	return rc;
}

static int state_index(const struct lfs_fp_state *s, struct lfs_cidmap *idx)
{
	lfs_cidmap_init(idx);
	for (size_t i = 0; i < s->nevents; i++) {
		int rc = lfs_cidmap_set(idx, &s->events[i].cid, i);
		if (rc)
			return rc;
	}
	return 0;
}

/*
 * pail's findCommonAncestor: walk each child back one step at a time (a
 * merge event steps to its parents' own common ancestor) until one event
 * is on every path. masks marks which paths hold an event; only the event
 * just added can complete a mask, so it is the answer, as in pail.
 */
static int common_ancestor(const struct lfs_fp_state *s,
			   const struct lfs_cidmap *idx,
			   const struct lfs_cid *children, size_t nchildren,
			   struct lfs_cid *out, size_t *budget, int depth)
{
	if (!nchildren || nchildren > HEADS_MAX || depth > 1000)
		return -E2BIG;
	struct lfs_cidmap masks;
	lfs_cidmap_init(&masks);
	struct lfs_cid *last = malloc(nchildren * sizeof(*last));
	int rc = last ? 0 : -ENOMEM;
	uint64_t full =
		nchildren == 64 ? UINT64_MAX : (((uint64_t)1 << nchildren) - 1);
	for (size_t i = 0; !rc && i < nchildren; i++) {
		uint64_t m = 0;
		last[i] = children[i];
		lfs_cidmap_get(&masks, &children[i], &m);
		rc = lfs_cidmap_set(&masks, &children[i],
				    m | ((uint64_t)1 << i));
	}
	while (!rc) {
		bool changed = false;
		for (size_t i = 0; !rc && i < nchildren; i++) {
			const struct lfs_fp_evinfo *e =
				ev_of(s, idx, &last[i], NULL);
			struct lfs_cid cand;
			if (!e) {
				rc = -ENOENT;
				break;
			}
			if (!(*budget)--) {
				rc = -E2BIG;
				break;
			}
			if (!e->ev.nparents)
				cand = last[i];
			else if (e->ev.nparents == 1)
				cand = e->ev.parents[0];
			else {
				rc = common_ancestor(s, idx, e->ev.parents,
						     e->ev.nparents, &cand,
						     budget, depth + 1);
				if (rc == -ESRCH) {
					rc = 0;
					continue;
				}
				if (rc)
					break;
			}
			changed = true;
			last[i] = cand;
			uint64_t m = 0;
			lfs_cidmap_get(&masks, &cand, &m);
			m |= (uint64_t)1 << i;
			if ((rc = lfs_cidmap_set(&masks, &cand, m)))
				break;
			if (m == full) {
				*out = cand;
				goto done;
			}
		}
		if (!rc && !changed)
			rc = -ESRCH;
	}
done:
	free(last);
	lfs_cidmap_release(&masks);
	return rc;
}

struct weighted {
	size_t ev; /* index in s->events */
	double weight;
	char cid[LFS_CID_STRLEN + 1];
};

static int weighted_cmp(const void *x, const void *y)
{
	const struct weighted *a = x, *b = y;
	if (a->weight != b->weight)
		return a->weight > b->weight ? -1 : 1;
	return strcmp(a->cid, b->cid);
}

/*
 * pail's findSortedEvents without enumerating paths: for each head, the
 * number of paths reaching each event and the sum of their depths (an
 * event's weight is the sum of the depths of every path to it, over all
 * heads). A walk stops below an event whose only parent is the tail.
 */
static int sorted_events(const struct lfs_fp_state *s,
			 const struct lfs_cidmap *idx,
			 const struct lfs_cid *tail, struct weighted **out,
			 size_t *out_n)
{
	size_t n = s->nevents;
	double *paths = calloc(n + 1, sizeof(double));
	double *sums = calloc(n + 1, sizeof(double));
	double *weight = calloc(n + 1, sizeof(double));
	bool *seen = calloc(n + 1, sizeof(bool));
	int rc = paths && sums && weight && seen ? 0 : -ENOMEM;
	for (size_t h = 0; !rc && h < s->nheads; h++) {
		size_t hi;
		if (!ev_of(s, idx, &s->heads[h], &hi)) {
			rc = -ENOENT;
			break;
		}
		memset(paths, 0, n * sizeof(double));
		memset(sums, 0, n * sizeof(double));
		paths[hi] = 1;
		/* s->events is ordered children before parents. */
		for (size_t i = 0; i < n; i++) {
			if (paths[i] == 0)
				continue;
			seen[i] = true;
			weight[i] += sums[i];
			const struct lfs_fp_event *e = &s->events[i].ev;
			if (e->nparents == 1 &&
			    lfs_cid_equal(&e->parents[0], tail))
				continue;
			for (size_t k = 0; k < e->nparents; k++) {
				size_t j;
				if (!ev_of(s, idx, &e->parents[k], &j)) {
					rc = -ENOENT;
					break;
				}
				paths[j] += paths[i];
				sums[j] += sums[i] + paths[i];
			}
			if (rc)
				break;
		}
	}
	struct weighted *w = NULL;
	size_t wn = 0;
	if (!rc && !(w = calloc(n + 1, sizeof(*w))))
		rc = -ENOMEM;
	for (size_t i = 0; !rc && i < n; i++) {
		if (!seen[i])
			continue;
		w[wn].ev = i;
		w[wn].weight = weight[i];
		cid_str(w[wn].cid, &s->events[i].cid);
		wn++;
	}
	if (!rc)
		qsort(w, wn, sizeof(*w), weighted_cmp);
	free(paths);
	free(sums);
	free(weight);
	free(seen);
	if (rc) {
		free(w);
		return rc;
	}
	*out = w;
	*out_n = wn;
	return 0;
}

static int replay_event(struct kmap *m, struct lfs_arena *a,
			const struct lfs_fp_event *e)
{
	for (size_t k = 0; k < e->nops; k++) {
		int rc = kmap_set(m, a, e->ops[k].key, e->ops[k].key_len,
				  &e->ops[k].value);
		if (rc)
			return rc;
	}
	return 0;
}

/* The key map the heads of s give (pail crdt root()). */
static int merged_view(struct lfs_fp_ledger *l, const struct lfs_fp_state *s,
		       struct kmap *m, struct lfs_arena *a)
{
	if (!s->nheads)
		return 0;
	struct lfs_cidmap idx;
	int rc = state_index(s, &idx);
	const struct lfs_fp_evinfo *h =
		rc ? NULL : ev_of(s, &idx, &s->heads[0], NULL);
	if (!rc && !h)
		rc = -ENOENT;
	if (!rc && s->nheads == 1) {
		rc = traverse(l, &h->ev.root, m, a);
		lfs_cidmap_release(&idx);
		return rc;
	}
	struct lfs_cid anc;
	size_t budget = WALK_MAX;
	if (!rc)
		rc = common_ancestor(s, &idx, s->heads, s->nheads, &anc,
				     &budget, 0);
	if (rc == -ESRCH) {
		set_error(l, "ledger '%s': its heads have no common ancestor",
			  l->name);
		rc = -EBADMSG;
	}
	const struct lfs_fp_evinfo *ae = rc ? NULL : ev_of(s, &idx, &anc, NULL);
	if (!rc && !ae)
		rc = -ENOENT;
	if (!rc)
		rc = traverse(l, &ae->ev.root, m, a);
	struct weighted *w = NULL;
	size_t wn = 0;
	if (!rc)
		rc = sorted_events(s, &idx, &anc, &w, &wn);
	for (size_t i = 0; !rc && i < wn; i++)
		rc = replay_event(m, a, &s->events[w[i].ev].ev);
	free(w);
	lfs_cidmap_release(&idx);
	return rc;
}

/* ---- state ---- */

static void state_free(struct lfs_fp_state *s)
{
	if (!s)
		return;
	free(s->docs);
	lfs_arena_release(&s->a);
	free(s);
}

struct lfs_fp_state *lfs_fp_ledger_state(struct lfs_fp_ledger *l)
{
	pthread_mutex_lock(&l->state_lock);
	struct lfs_fp_state *s = l->state;
	if (s)
		__atomic_add_fetch(&s->refs, 1, __ATOMIC_RELAXED);
	pthread_mutex_unlock(&l->state_lock);
	return s;
}

void lfs_fp_state_unref(struct lfs_fp_state *s)
{
	if (s && __atomic_sub_fetch(&s->refs, 1, __ATOMIC_ACQ_REL) == 0)
		state_free(s);
}

const struct lfs_fp_doc *lfs_fp_state_find(const struct lfs_fp_state *s,
					   const char *id, size_t id_len)
{
	struct lfs_fp_doc key = {.id = id, .id_len = id_len};
	return s && s->ndocs ? bsearch(&key, s->docs, s->ndocs,
				       sizeof(*s->docs), doc_cmp)
			     : NULL;
}

const struct lfs_fp_evinfo *lfs_fp_state_event(const struct lfs_fp_state *s,
					       const struct lfs_cid *ev)
{
	for (size_t i = 0; s && i < s->nevents; i++)
		if (lfs_cid_equal(&s->events[i].cid, ev))
			return &s->events[i];
	return NULL;
}

static int cid_cmp_bytes(const void *x, const void *y)
{
	uint8_t a[LFS_CID_BYTES], b[LFS_CID_BYTES];
	lfs_cid_to_bytes(a, x);
	lfs_cid_to_bytes(b, y);
	return memcmp(a, b, sizeof(a));
}

static const char *meta_msg(int rc)
{
	return rc == -EAGAIN  ? "it is not complete JSON (being written?)"
	       : rc == -EFBIG ? "it is too large"
			      : "it is not a Fireproof meta file";
}

/* Build the state meta names. Called with refresh_lock held. */
static int build_state(struct lfs_fp_ledger *l, const uint8_t *text, size_t len,
		       struct lfs_fp_state **out)
{
	struct lfs_fp_state *s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	lfs_arena_init(&s->a, 0);
	s->refs = 1;
	struct lfs_fp_meta meta;
	int rc = lfs_fp_meta_parse(&meta, &s->a, (const char *)text, len);
	if (rc) {
		if (rc != -EAGAIN)
			set_error(l, "ledger '%s': meta/main.json: %s", l->name,
				  meta_msg(rc));
		goto fail;
	}
	for (size_t i = 0; i < meta.ncars; i++)
		if ((rc = load_car(l, &meta.cars[i], ".car")))
			goto fail;
	struct lfs_cid hroot;
	struct blk hb;
	struct lfs_fp_header h;
	if ((rc = car_root(l, &meta.cars[0], &hroot)))
		goto fail;
	if (!blk_find(l, &hroot, &hb)) {
		rc = -EBADMSG;
		goto fail;
	}
	if ((rc = lfs_fp_header_decode(&h, &s->a, hb.p, hb.len))) {
		char cs[LFS_CID_STRLEN + 1];
		cid_str(cs, &meta.cars[0]);
		set_error(l,
			  "ledger '%s': the root of car %s is not a Fireproof "
			  "header",
			  l->name, cs);
		goto fail;
	}
	s->ncars = meta.ncars + h.ncars;
	for (size_t i = 0; i < h.ncars; i++) {
		int e = load_car(l, &h.cars[i], ".car");
		if (e == -ENOMEM) {
			rc = e;
			goto fail;
		}
		if (e)
			s->missing++; /* error noted; blocks may be elsewhere */
	}
	s->nheads = h.nhead;
	s->heads = h.head;
	if (s->nheads > 1)
		qsort(s->heads, s->nheads, sizeof(*s->heads), cid_cmp_bytes);
	size_t missing = 0;
	if ((rc = load_events(l, s, &missing)))
		goto fail;
	struct kmap m = {0};
	rc = merged_view(l, s, &m, &s->a);
	if (!rc)
		rc = kmap_docs(l, &m, &s->a, false, &s->docs, &s->ndocs);
	kmap_release(&m);
	if (rc) {
		if (rc == -ENOENT)
			set_error(l,
				  "ledger '%s': a block of the document index "
				  "or clock is missing (%zu car files could "
				  "not be read)",
				  l->name, s->missing);
		else if (rc != -ENOMEM)
			set_error(l,
				  "ledger '%s': cannot compute its "
				  "documents: %s",
				  l->name, lfs_errmsg(rc));
		goto fail;
	}
	*out = s;
	return 0;
fail:
	state_free(s);
	return rc;
}

int lfs_fp_ledger_refresh(struct lfs_fp_ledger *l, bool *out_changed)
{
	char path[PATH_MAX];
	uint8_t *text = NULL;
	size_t len = 0;
	int rc;
	if (out_changed)
		*out_changed = false;
	if ((size_t)snprintf(path, sizeof(path), "%s/meta/main.json", l->dir) >=
	    sizeof(path))
		return -ENAMETOOLONG;
	pthread_mutex_lock(&l->refresh_lock);
	if (l->key_rc) {
		struct lfs_fp_keyring kr;
		lfs_fp_keyring_init(&kr);
		if ((rc = lfs_fp_keybag_load(&kr, l->keybag, l->name))) {
			lfs_fp_keyring_release(&kr);
			goto out; /* its error stays as it was said */
		}
		lfs_fp_keyring_release(&l->keys);
		l->keys = kr;
		l->key_rc = 0;
	}
	rc = read_file(path, LFS_FP_META_MAX, &text, &len, NULL);
	if (rc) {
		set_error(l, "ledger '%s': cannot read %s: %s", l->name, path,
			  lfs_errmsg(rc));
		goto out;
	}
	if (l->state && len == l->meta_len && !memcmp(text, l->meta, len))
		goto out;
	struct lfs_fp_state *s = NULL;
	if ((rc = build_state(l, text, len, &s)))
		goto out;
	pthread_mutex_lock(&l->state_lock);
	struct lfs_fp_state *old = l->state;
	l->state = s;
	pthread_mutex_unlock(&l->state_lock);
	lfs_fp_state_unref(old);
	free(l->meta);
	l->meta = text;
	l->meta_len = len;
	text = NULL;
	if (out_changed)
		*out_changed = true;
out:
	pthread_mutex_unlock(&l->refresh_lock);
	free(text);
	return rc;
}

int lfs_fp_ledger_open(struct lfs_fp_ledger **out, const char *storage,
		       const char *keybag, const char *name, int wait_ms)
{
	*out = NULL;
	if (!name[0] || strchr(name, '/') || name[0] == '.')
		return -EINVAL;
	struct lfs_fp_ledger *l = calloc(1, sizeof(*l));
	if (!l)
		return -ENOMEM;
	pthread_mutex_init(&l->refresh_lock, NULL);
	pthread_rwlock_init(&l->blocks_lock, NULL);
	pthread_mutex_init(&l->state_lock, NULL);
	lfs_cidmap_init(&l->carmap);
	lfs_cidmap_init(&l->blkmap);
	lfs_fp_keyring_init(&l->keys);
	size_t dl = strlen(storage) + strlen(name) + 2;
	l->name = strdup(name);
	l->keybag = strdup(keybag);
	l->dir = malloc(dl);
	if (!l->name || !l->keybag || !l->dir) {
		lfs_fp_ledger_close(l);
		return -ENOMEM;
	}
	snprintf(l->dir, dl, "%s/%s", storage, name);
	struct stat st;
	if (stat(l->dir, &st) || !S_ISDIR(st.st_mode)) {
		lfs_fp_ledger_close(l);
		return -ENOENT;
	}
	*out = l;
	int rc = lfs_fp_keybag_load(&l->keys, keybag, name);
	if (rc == -ENOENT) {
		/* No key: a storekey=insecure ledger still reads. */
		rc = 0;
	} else if (rc) {
		set_error(l,
			  "ledger '%s': the keybag file for '@%s-data@' in %s "
			  "%s",
			  name, name, keybag,
			  rc == -EPROTO ? "has a layout this version does not "
					  "know, or an unusable key"
					: lfs_errmsg(rc));
		l->key_rc = rc;
		return rc;
	}
	struct timespec t0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		rc = lfs_fp_ledger_refresh(l, NULL);
		if (rc != -EAGAIN)
			break;
		struct timespec now;
		clock_gettime(CLOCK_MONOTONIC, &now);
		long el = (now.tv_sec - t0.tv_sec) * 1000 +
			  (now.tv_nsec - t0.tv_nsec) / 1000000;
		if (el >= wait_ms) {
			if (!wait_ms)
				break; /* -EAGAIN: the caller reads it again */
			set_error(l,
				  "ledger '%s': meta/main.json: it is not "
				  "complete JSON after %d ms (garbage, or a "
				  "writer that died mid-write)",
				  name, wait_ms);
			rc = -EBADMSG;
			break;
		}
		nanosleep(&(struct timespec){0, 50 * 1000000}, NULL);
	}
	return rc;
}

void lfs_fp_ledger_close(struct lfs_fp_ledger *l)
{
	if (!l)
		return;
	lfs_fp_state_unref(l->state);
	for (size_t i = 0; i < l->ncars; i++)
		free(l->cars[i].plain);
	free(l->cars);
	free(l->blocks);
	lfs_cidmap_release(&l->carmap);
	lfs_cidmap_release(&l->blkmap);
	lfs_fp_keyring_release(&l->keys);
	pthread_mutex_destroy(&l->refresh_lock);
	pthread_rwlock_destroy(&l->blocks_lock);
	pthread_mutex_destroy(&l->state_lock);
	free(l->meta);
	free(l->name);
	free(l->dir);
	free(l->keybag);
	free(l);
}

/* ---- reads ---- */

int lfs_fp_ledger_docs_at(struct lfs_fp_ledger *l, const struct lfs_fp_state *s,
			  const struct lfs_cid *ev, struct lfs_arena *a,
			  struct lfs_fp_doc **out, size_t *out_n)
{
	const struct lfs_fp_evinfo *e = lfs_fp_state_event(s, ev);
	if (!e)
		return -ENOENT;
	struct kmap m = {0};
	int rc = traverse(l, &e->ev.root, &m, a);
	if (rc == -ENOENT) {
		/*
		 * A compaction dropped this event's shards: replay its
		 * history instead, oldest first.
		 */
		kmap_release(&m);
		struct lfs_cidmap idx;
		bool *in = calloc(s->nevents + 1, sizeof(bool));
		rc = in ? state_index(s, &idx) : -ENOMEM;
		size_t ei = (size_t)(e - s->events);
		if (!rc) {
			in[ei] = true;
			for (size_t i = ei; i < s->nevents; i++) {
				if (!in[i])
					continue;
				const struct lfs_fp_event *x = &s->events[i].ev;
				for (size_t k = 0; k < x->nparents; k++) {
					size_t j;
					if (ev_of(s, &idx, &x->parents[k], &j))
						in[j] = true;
				}
			}
			for (size_t i = s->nevents; !rc && i-- > ei;)
				if (in[i])
					rc = replay_event(&m, a,
							  &s->events[i].ev);
			lfs_cidmap_release(&idx);
		}
		free(in);
	}
	if (!rc)
		rc = kmap_docs(l, &m, a, true, out, out_n);
	kmap_release(&m);
	return rc;
}

static int load_doc(struct lfs_fp_ledger *l, const struct lfs_cid *doc,
		    const char *id, json_t **out)
{
	struct blk b;
	if (!blk_find(l, doc, &b))
		return -ENOENT;
	struct lfs_arena a;
	lfs_arena_init(&a, 0);
	const struct lfs_cbor *d;
	int rc = lfs_fp_value_decode(&d, &a, b.p, b.len);
	if (!rc && !d)
		rc = -ENOENT; /* a delete */
	json_t *j = NULL;
	if (!rc)
		rc = lfs_dagjson_from_cbor(&j, d);
	lfs_arena_release(&a);
	if (rc)
		return rc;
	if (!json_is_object(j) ||
	    json_object_set_new(j, "_id", json_string(id))) {
		json_decref(j);
		return json_is_object(j) ? -ENOMEM : -EBADMSG;
	}
	*out = j;
	return 0;
}

int lfs_fp_ledger_doc_json(struct lfs_fp_ledger *l, const struct lfs_cid *doc,
			   const char *id, void **out_json)
{
	json_t *j;
	int rc = load_doc(l, doc, id, &j);
	if (!rc)
		*out_json = j;
	return rc;
}

int lfs_fp_ledger_render(struct lfs_fp_ledger *l, const struct lfs_cid *doc,
			 const char *id, struct lfs_buf *out)
{
	json_t *j;
	int rc = load_doc(l, doc, id, &j);
	if (rc)
		return rc;
	rc = lfs_dagjson_dump(out, j);
	json_decref(j);
	return rc;
}

int lfs_fp_ledger_file(struct lfs_fp_ledger *l, const struct lfs_cid *car,
		       const struct lfs_cid *file, struct lfs_buf *out)
{
	struct blk b;
	if (!blk_find(l, file, &b)) {
		pthread_mutex_lock(&l->refresh_lock);
		int rc = load_car(l, car, "");
		pthread_mutex_unlock(&l->refresh_lock);
		if (rc)
			return rc;
		if (!blk_find(l, file, &b))
			return -ENOENT;
	}
	return lfs_buf_append(out, b.p, b.len);
}

/* ---- where ---- */

static int name_cmp(const void *x, const void *y)
{
	return strcmp(*(char *const *)x, *(char *const *)y);
}

int lfs_fp_list(char ***out, size_t *out_n, const char *storage)
{
	DIR *d = opendir(storage);
	*out = NULL;
	*out_n = 0;
	if (!d)
		return errno == ENOENT ? 0 : -errno;
	char **v = NULL;
	size_t n = 0, cap = 0;
	int rc = 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		char p[PATH_MAX];
		struct stat st;
		if (e->d_name[0] == '.')
			continue;
		snprintf(p, sizeof(p), "%s/%s/meta", storage, e->d_name);
		if (stat(p, &st) || !S_ISDIR(st.st_mode)) {
			snprintf(p, sizeof(p), "%s/%s/data", storage,
				 e->d_name);
			if (stat(p, &st) || !S_ISDIR(st.st_mode))
				continue;
		}
		if (n == cap) {
			cap = cap ? cap * 2 : 16;
			void *q = realloc(v, cap * sizeof(*v));
			if (!q) {
				rc = -ENOMEM;
				break;
			}
			v = q;
		}
		if (!(v[n] = strdup(e->d_name))) {
			rc = -ENOMEM;
			break;
		}
		n++;
	}
	closedir(d);
	if (rc) {
		for (size_t i = 0; i < n; i++)
			free(v[i]);
		free(v);
		return rc;
	}
	if (n)
		qsort(v, n, sizeof(*v), name_cmp);
	*out = v;
	*out_n = n;
	return 0;
}

static char *dir_of(const char *arg, const char *env, const char *dflt)
{
	const char *s = arg && *arg ? arg : getenv(env);
	char *r;
	if (!s || !*s) {
		const char *home = getenv("HOME");
		if (!home || !*home)
			return NULL;
		size_t n = strlen(home) + strlen(dflt) + 2;
		if ((r = malloc(n)))
			snprintf(r, n, "%s/%s", home, dflt);
		return r;
	}
	if (!strncmp(s, "file://", 7))
		s += 7;
	r = strdup(s);
	if (r) {
		r[strcspn(r, "?#")] = '\0';
		size_t n = strlen(r);
		while (n > 1 && r[n - 1] == '/')
			r[--n] = '\0';
	}
	return r;
}

char *lfs_fp_storage_dir(const char *arg)
{
	return dir_of(arg, "FP_STORAGE_URL", ".fireproof/v0.19");
}

char *lfs_fp_keybag_dir(const char *arg)
{
	return dir_of(arg, "FP_KEYBAG_URL", ".fireproof/keybag");
}
