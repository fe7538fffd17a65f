#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "fs_render.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>
#include <sodium.h>

#include "arena.h"
#include "cbor.h"
#include "dagjson.h"
#include "fileio.h"
#include "fs_policy.h"
#include "index.h"
#include "le.h"
#include "log.h"
#include "membudget.h"
#include "timefmt.h"

#define MAGIC    "lfs-size"
#define HEADER   16
#define KEY      32
#define CHECK    8
#define RECORD   (KEY + 8 + CHECK)
#define FILE_MAX ((size_t)256 << 20)
/* Tables of this many bytes or more are mapped (slots_alloc). */
#define SLOTS_MAPPED ((size_t)1 << 20)

int lfs_render_doc(struct lfs_ledger *l, const struct lfs_cid *doc,
		   const char *id, struct lfs_buf *out)
{
	json_t *j;
	int rc = lfs_ledger_load_doc(l, doc, id, &j);
	if (rc)
		return rc;
	rc = lfs_dagjson_dump(out, j);
	json_decref(j);
	return rc;
}

/* ---- the table ---- */

/* In memory a key is SLOT_KEY bytes: 128-bit SipHash
 * (crypto_shorthash_siphashx24) of it under a secret key drawn when the
 * table is opened. 128 bits keep versions apart as well as 256 do, and
 * being keyed, no one can make two versions share a slot on purpose (as
 * with a plain prefix of the key, at 2^64 work); a slot takes 20 bytes
 * instead of 40 (one per version the table knows). The file keeps whole
 * keys. */
#define SLOT_KEY 16

struct slot {
	uint8_t key[SLOT_KEY];
	uint32_t len1; /* the length + 1 (at most LFS_RENDER_MAX); 0: empty */
};

struct lfs_render_sizes {
	pthread_mutex_t lock;
	char *path;
	int fd;       /* O_RDWR | O_APPEND; -1: in memory only */
	off_t read;   /* the file's bytes taken in */
	bool damaged; /* catching up stopped at damage */
	struct slot *slots;
	size_t nslots, n; /* nslots a power of two, or 0 */
	uint8_t secret[crypto_shorthash_siphashx24_KEYBYTES]; /* slot keys' */
	/* Versions to fill (lfs_render_sizes_queue): records of a CID's
	 * bytes and a NUL-terminated id, from byte qhead on. */
	struct lfs_buf queue;
	size_t qhead, queued;
};

static void make_key(uint8_t key[KEY], const struct lfs_cid *doc,
		     const char *id)
{
	uint8_t fmt[4] = {LFS_RENDER_FORMAT & 0xff, 0, 0, 0};
	uint8_t cid[LFS_CID_BYTES];
	lfs_cid_to_bytes(cid, doc);
	crypto_generichash_state s;
	crypto_generichash_init(&s, NULL, 0, KEY);
	crypto_generichash_update(&s, fmt, sizeof(fmt));
	crypto_generichash_update(&s, cid, sizeof(cid));
	crypto_generichash_update(&s, (const uint8_t *)id, strlen(id));
	crypto_generichash_final(&s, key, KEY);
}

static void make_record(uint8_t rec[RECORD], const uint8_t key[KEY],
			uint64_t len)
{
	memcpy(rec, key, KEY);
	lfs_le_put64(rec + KEY, len);
	crypto_generichash(rec + KEY + 8, CHECK, rec, KEY + 8, NULL, 0);
}

/* A record's length when it is whole and checks (else -1). */
static int64_t record_len(const uint8_t rec[RECORD])
{
	uint8_t check[CHECK];
	crypto_generichash(check, CHECK, rec, KEY + 8, NULL, 0);
	if (memcmp(check, rec + KEY + 8, CHECK))
		return -1;
	uint64_t len = lfs_le_get64(rec + KEY);
	return len > LFS_RENDER_MAX ? -1 : (int64_t)len;
}

static void header(uint8_t h[HEADER])
{
	memset(h, 0, HEADER);
	memcpy(h, MAGIC, 8);
	h[8] = LFS_RENDER_FORMAT & 0xff;
}

/* The slot key that stands for key in t. */
static void slot_key(const struct lfs_render_sizes *t, uint8_t out[SLOT_KEY],
		     const uint8_t key[KEY])
{
	_Static_assert(SLOT_KEY == crypto_shorthash_siphashx24_BYTES,
		       "a slot key is one 128-bit SipHash");
	crypto_shorthash_siphashx24(out, key, KEY, t->secret);
}

/* The slot of slot key `key`, or the empty slot where it would go; NULL
 * when the table has none. */
static struct slot *find_locked(struct lfs_render_sizes *t,
				const uint8_t key[SLOT_KEY])
{
	if (!t->nslots)
		return NULL;
	uint64_t h;
	memcpy(&h, key, sizeof(h));
	for (size_t i = (size_t)h & (t->nslots - 1);;
	     i = (i + 1) & (t->nslots - 1)) {
		struct slot *s = &t->slots[i];
		if (!s->len1 || !memcmp(s->key, key, SLOT_KEY))
			return s;
	}
}

/*
 * A table of n empty slots, its pages in place: filled at random, a
 * table's pages were otherwise each mapped twice (read as zeros, then
 * written: a copy-on-write fault and a TLB shootdown across the
 * process's CPUs each), most of the cost of loading a large table.
 */
static struct slot *slots_alloc(size_t n)
{
	size_t bytes = n * sizeof(struct slot);
	if (bytes < SLOTS_MAPPED)
		return calloc(n, sizeof(struct slot));
	void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return NULL;
	/* Huge pages where the kernel has them: fewer faults, and probes
	 * at random that miss the TLB less. */
	(void)madvise(p, bytes, MADV_HUGEPAGE);
#ifdef MADV_POPULATE_WRITE
	if (madvise(p, bytes, MADV_POPULATE_WRITE) == 0)
		return p;
#endif
	for (size_t at = 0; at < bytes; at += 4096)
		((volatile char *)p)[at] = 0;
	return p;
}

static void slots_free(struct slot *v, size_t n)
{
	if (v && n * sizeof(struct slot) >= SLOTS_MAPPED)
		munmap(v, n * sizeof(struct slot));
	else
		free(v);
}

/* Make room for `more` entries beyond those held, at most three-quarters
 * full (false: out of memory; the table is unchanged). */
static bool reserve_locked(struct lfs_render_sizes *t, size_t more)
{
	if ((t->n + more) * 4 <= t->nslots * 3)
		return true;
	size_t cap = t->nslots ? t->nslots * 2 : 1024;
	while ((t->n + more) * 4 > cap * 3)
		cap *= 2;
	struct slot *v = slots_alloc(cap);
	if (!v)
		return false;
	struct slot *old = t->slots;
	size_t oldn = t->nslots;
	t->slots = v;
	t->nslots = cap;
	for (size_t i = 0; i < oldn; i++)
		if (old[i].len1)
			*find_locked(t, old[i].key) = old[i];
	slots_free(old, oldn);
	return true;
}

/* Set key's length (false: out of memory, the entry is not kept). */
static bool set_locked(struct lfs_render_sizes *t, const uint8_t key[KEY],
		       uint64_t len)
{
	if (len > LFS_RENDER_MAX)
		return false; /* never rendered: see LFS_RENDER_MAX */
	if (!reserve_locked(t, 1))
		return false;
	uint8_t sk[SLOT_KEY];
	slot_key(t, sk, key);
	struct slot *s = find_locked(t, sk);
	if (!s->len1) {
		memcpy(s->key, sk, SLOT_KEY);
		t->n++;
	}
	s->len1 = (uint32_t)(len + 1);
	return true;
}

/* Take in the whole records of p; the bytes used, stopping at damage
 * (*damaged) or at a record cut short. */
static size_t take_locked(struct lfs_render_sizes *t, const uint8_t *p,
			  size_t n, bool *damaged)
{
	size_t at = 0;
	*damaged = false;
	/* One table for the lot, not one per doubling (best effort: each
	 * record makes room again if this could not). */
	(void)reserve_locked(t, n / RECORD);
	while (n - at >= RECORD) {
		int64_t len = record_len(p + at);
		if (len < 0) {
			*damaged = true;
			break;
		}
		if (!set_locked(t, p + at, (uint64_t)len))
			break;
		at += RECORD;
	}
	return at;
}

/* Start the file anew with the good bytes of what it held (its header
 * and whole records). */
static int rewrite(const char *path, const uint8_t *p, size_t n)
{
	uint8_t h[HEADER];
	header(h);
	if (n < HEADER) {
		p = h;
		n = HEADER;
	}
	return lfs_write_atomic(path, p, n, 0600, false);
}

/* Load the file: 0, or the errno that leaves the table in memory. */
static int load(struct lfs_render_sizes *t)
{
	uint8_t *data = NULL;
	size_t n = 0;
	int rc = lfs_read_file(t->path, FILE_MAX, &data, &n);
	if (rc == -ENOENT || rc == -EFBIG)
		n = 0; /* too big: start anew */
	else if (rc)
		return rc;
	uint8_t h[HEADER];
	header(h);
	size_t used = 0;
	bool damaged = false;
	if (n >= HEADER && !memcmp(data, h, HEADER))
		used = HEADER +
		       take_locked(t, data + HEADER, n - HEADER, &damaged);
	else if (n > 0)
		lfs_info("size table %s: another format or render version: "
			 "started anew",
			 t->path);
	if (damaged || (used && used < n))
		lfs_warn("size table %s: damaged at byte %zu of %zu: the "
			 "rest is ignored",
			 t->path, used, n);
	rc = used < n || used < HEADER ? rewrite(t->path, data, used) : 0;
	free(data);
	if (rc)
		return rc;
	t->fd = open(t->path, O_RDWR | O_APPEND | O_CLOEXEC);
	if (t->fd < 0)
		return -errno;
	/* Appends by others since the read are taken in by catching up. */
	t->read = used < HEADER ? HEADER : (off_t)used;
	t->damaged = false;
	return 0;
}

/* Load the file (t->fd -1); when it cannot be read or written, the
 * table keeps its entries in memory only, as logged. */
static void load_or_memory(struct lfs_render_sizes *t)
{
	int rc = load(t);
	if (rc) {
		lfs_warn("size table %s: %s: kept in memory only", t->path,
			 strerror(-rc));
		if (t->fd >= 0)
			close(t->fd);
		t->fd = -1;
	}
}

int lfs_render_sizes_open(struct lfs_render_sizes **out, const char *path)
{
	struct lfs_render_sizes *t = calloc(1, sizeof(*t));
	if (!t || !(t->path = strdup(path))) {
		free(t);
		return -ENOMEM;
	}
	pthread_mutex_init(&t->lock, NULL);
	t->fd = -1;
	randombytes_buf(t->secret, sizeof(t->secret));
	lfs_buf_init(&t->queue, 0);
	load_or_memory(t);
	*out = t;
	return 0;
}

void lfs_render_sizes_close(struct lfs_render_sizes *t)
{
	if (!t)
		return;
	if (t->fd >= 0)
		close(t->fd);
	pthread_mutex_destroy(&t->lock);
	lfs_buf_release(&t->queue);
	slots_free(t->slots, t->nslots);
	free(t->path);
	free(t);
}

bool lfs_render_sizes_get(struct lfs_render_sizes *t, const struct lfs_cid *doc,
			  const char *id, size_t *out)
{
	uint8_t key[KEY];
	make_key(key, doc, id);
	uint8_t sk[SLOT_KEY];
	slot_key(t, sk, key);
	pthread_mutex_lock(&t->lock);
	struct slot *s = find_locked(t, sk);
	bool hit = s && s->len1;
	if (hit)
		*out = (size_t)(s->len1 - 1);
	pthread_mutex_unlock(&t->lock);
	return hit;
}

/* Append records to the file (a failure costs only their persistence). */
static void append_locked(struct lfs_render_sizes *t, const uint8_t *p,
			  size_t n)
{
	if (t->fd >= 0 && n && lfs_write_all(t->fd, p, n)) {
		lfs_warn("size table %s: %s: kept in memory only", t->path,
			 strerror(errno));
		close(t->fd);
		t->fd = -1;
	}
}

bool lfs_render_sizes_put(struct lfs_render_sizes *t, const struct lfs_cid *doc,
			  const char *id, size_t len)
{
	uint8_t key[KEY], rec[RECORD];
	if (len > LFS_RENDER_MAX)
		return false;
	make_key(key, doc, id);
	uint8_t sk[SLOT_KEY];
	slot_key(t, sk, key);
	pthread_mutex_lock(&t->lock);
	struct slot *s = find_locked(t, sk);
	bool known = s && s->len1;
	bool differs = known && s->len1 - 1 != len;
	if (!known || differs) {
		set_locked(t, key, len);
		make_record(rec, key, len);
		append_locked(t, rec, RECORD);
	}
	pthread_mutex_unlock(&t->lock);
	return differs;
}

bool lfs_render_sizes_catch_up(struct lfs_render_sizes *t)
{
	pthread_mutex_lock(&t->lock);
	bool took = false;
	struct stat st, now;
	if (t->fd >= 0 && !fstat(t->fd, &st) && !stat(t->path, &now) &&
	    (now.st_ino != st.st_ino || now.st_dev != st.st_dev)) {
		/* Another process started the file anew: take it in. */
		close(t->fd);
		t->fd = -1;
		size_t before = t->n;
		load_or_memory(t);
		took = t->n != before;
	} else if (t->fd >= 0 && !t->damaged && !fstat(t->fd, &st) &&
		   st.st_size - t->read >= RECORD) {
		size_t n = (size_t)(st.st_size - t->read);
		n -= n % RECORD;
		uint8_t *p = n <= FILE_MAX ? malloc(n) : NULL;
		ssize_t r = p ? pread(t->fd, p, n, t->read) : -1;
		if (r > 0) {
			size_t used = take_locked(t, p, (size_t)r, &t->damaged);
			t->read += (off_t)used;
			took = used > 0;
			if (t->damaged)
				lfs_warn("size table %s: damaged at byte %lld:"
					 " the rest is ignored",
					 t->path, (long long)t->read);
		}
		free(p);
	}
	pthread_mutex_unlock(&t->lock);
	return took;
}

struct fill_ctx {
	struct lfs_render_sizes *t;
	struct lfs_ledger *l;
	struct lfs_buf text, records;
	size_t added;
};

static int fill_one(void *ctx, const struct lfs_index_entry *e)
{
	struct fill_ctx *c = ctx;
	size_t len;
	if (lfs_render_sizes_get(c->t, &e->cur.doc, e->id, &len))
		return 0;
	lfs_buf_reset(&c->text);
	int rc = lfs_render_doc(c->l, &e->cur.doc, e->id, &c->text);
	if (rc)
		return rc;
	uint8_t key[KEY], rec[RECORD];
	make_key(key, &e->cur.doc, e->id);
	make_record(rec, key, c->text.len);
	pthread_mutex_lock(&c->t->lock);
	set_locked(c->t, key, c->text.len);
	pthread_mutex_unlock(&c->t->lock);
	c->added++;
	return lfs_buf_append(&c->records, rec, RECORD);
}

static void fill_begin(struct fill_ctx *c, struct lfs_render_sizes *t,
		       struct lfs_ledger *l)
{
	*c = (struct fill_ctx){.t = t, .l = l};
	lfs_buf_init(&c->text, LFS_FS_TEXT_MAX * 4);
	lfs_buf_init(&c->records, FILE_MAX);
}

/* Append the records fill_one noted, in one write. */
static void fill_end(struct fill_ctx *c)
{
	pthread_mutex_lock(&c->t->lock);
	append_locked(c->t, c->records.data, c->records.len);
	pthread_mutex_unlock(&c->t->lock);
	lfs_buf_release(&c->text);
	lfs_buf_release(&c->records);
}

void lfs_render_sizes_queue(struct lfs_render_sizes *t,
			    const struct lfs_cid *doc, const char *id)
{
	size_t len;
	if (lfs_render_sizes_get(t, doc, id, &len))
		return;
	uint8_t cid[LFS_CID_BYTES];
	lfs_cid_to_bytes(cid, doc);
	pthread_mutex_lock(&t->lock);
	size_t was = t->queue.len;
	if (lfs_buf_append(&t->queue, cid, sizeof(cid)) ||
	    lfs_buf_append(&t->queue, id, strlen(id) + 1))
		t->queue.len = was; /* out of room: a stat renders it */
	else
		t->queued++;
	pthread_mutex_unlock(&t->lock);
}

size_t lfs_render_sizes_queued(struct lfs_render_sizes *t)
{
	pthread_mutex_lock(&t->lock);
	size_t n = t->queued;
	pthread_mutex_unlock(&t->lock);
	return n;
}

/* Take the queue's first version (false: none), into doc and id. */
static bool dequeue(struct lfs_render_sizes *t, struct lfs_cid *doc,
		    struct lfs_buf *id)
{
	pthread_mutex_lock(&t->lock);
	bool took = false;
	while (!took && t->qhead < t->queue.len) {
		const uint8_t *p = t->queue.data + t->qhead;
		size_t n = strlen((const char *)p + LFS_CID_BYTES) + 1;
		t->qhead += LFS_CID_BYTES + n;
		t->queued--;
		lfs_buf_reset(id);
		took = lfs_cid_from_bytes(doc, p, LFS_CID_BYTES) ==
			       LFS_CID_BYTES &&
		       !lfs_buf_append(id, p + LFS_CID_BYTES, n);
	}
	if (t->qhead == t->queue.len) {
		lfs_buf_reset(&t->queue);
		t->qhead = 0;
	} else if (t->qhead > t->queue.len / 2) {
		memmove(t->queue.data, t->queue.data + t->qhead,
			t->queue.len - t->qhead);
		t->queue.len -= t->qhead;
		t->qhead = 0;
	}
	pthread_mutex_unlock(&t->lock);
	return took;
}

size_t lfs_render_sizes_fill_queued(struct lfs_render_sizes *t,
				    struct lfs_ledger *l, int64_t budget_us)
{
	int64_t end = lfs_mono_us() + budget_us;
	struct fill_ctx c;
	fill_begin(&c, t, l);
	struct lfs_buf id;
	lfs_buf_init(&id, 0);
	struct lfs_index_entry e = {0};
	for (bool first = true;
	     (first || lfs_mono_us() < end) && dequeue(t, &e.cur.doc, &id);
	     first = false) {
		e.id = (const char *)id.data;
		/* A version that cannot be read is left to its first stat,
		 * which says why. */
		(void)fill_one(&c, &e);
	}
	lfs_buf_release(&id);
	fill_end(&c);
	return lfs_render_sizes_queued(t);
}

int lfs_render_fill(struct lfs_render_sizes *t, struct lfs_ledger *l,
		    size_t *out_added)
{
	struct fill_ctx c;
	fill_begin(&c, t, l);
	struct lfs_cid root;
	lfs_ledger_root(l, &root);
	int rc = lfs_index_each(lfs_ledger_index(l), &root, fill_one, &c);
	size_t added = c.added;
	fill_end(&c);
	if (out_added)
		*out_added = added;
	return rc;
}

/*
 * The text of doc (without "_id") committed as id: the one its block
 * renders to, as DAG-JSON's trip through DAG-CBOR gives back an equal
 * value (dagjson.h).
 */
static int txn_text(const json_t *doc, const char *id, struct lfs_buf *text)
{
	lfs_buf_reset(text);
	json_t *idj = json_string(id);
	int rc = idj ? lfs_dagjson_dump_with(text, doc, "_id", idj) : -ENOMEM;
	json_decref(idj);
	return rc;
}

int lfs_render_note_txn(struct lfs_render_sizes *s,
			struct lfs_render_cache *cache, const struct lfs_txn *t)
{
	struct lfs_buf text, records;
	lfs_buf_init(&text, LFS_FS_TEXT_MAX * 4);
	lfs_buf_init(&records, FILE_MAX);
	int rc = 0;
	size_t n = lfs_txn_count(t);
	for (size_t i = 0; i < n && !rc; i++) {
		const char *id;
		json_t *doc;
		struct lfs_cid cid;
		lfs_txn_op(t, i, &id);
		if (!lfs_txn_op_cid(t, i, &cid))
			continue; /* a delete, or not committed */
		if ((rc = lfs_txn_op_doc(t, i, &doc)) ||
		    (rc = txn_text(doc, id, &text))) {
			json_decref(doc);
			continue;
		}
		json_decref(doc);
		size_t len = text.len;
		uint8_t key[KEY], rec[RECORD];
		make_key(key, &cid, id);
		make_record(rec, key, len);
		rc = lfs_buf_append(&records, rec, RECORD);
		uint8_t *copy = cache ? malloc(len ? len : 1) : NULL;
		if (copy) {
			memcpy(copy, text.data, len);
			lfs_render_cache_put(cache, &cid, id, copy, len);
		}
	}
	/* One append for the whole transaction; known lengths again. */
	pthread_mutex_lock(&s->lock);
	for (size_t at = 0; at < records.len; at += RECORD) {
		const uint8_t *rec = records.data + at;
		set_locked(s, rec, lfs_le_get64(rec + KEY));
	}
	append_locked(s, records.data, records.len);
	pthread_mutex_unlock(&s->lock);
	lfs_buf_release(&records);
	lfs_buf_release(&text);
	return rc;
}

/* ---- the cache of texts ---- */

#define CACHE_SLOTS 32768
#define CACHE_BYTES ((size_t)48 << 20)

struct cached_text {
	struct lfs_cid doc;
	bool ref; /* read since the sweep last passed */
	char *id;
	uint8_t *data;
	size_t len;
};

struct lfs_render_cache {
	pthread_mutex_t lock;
	size_t bytes; /* held by all slots (slot_bytes) */
	size_t hand;  /* the budget's sweep: the next slot it looks at */
	struct lfs_membudget_member budget;
	struct cached_text slots[CACHE_SLOTS];
};

/* What a slot's text and id cost, with their two allocations. */
static size_t slot_bytes(size_t len, const char *id)
{
	return len + strlen(id) + 1 + 32;
}

/* Empty slot r; the bytes it held. Caller holds the lock. */
static size_t slot_drop(struct lfs_render_cache *c, struct cached_text *r)
{
	if (!r->data)
		return 0;
	size_t bytes = slot_bytes(r->len, r->id);
	c->bytes -= bytes;
	lfs_membudget_charge(&c->budget, -(ptrdiff_t)bytes);
	free(r->data);
	free(r->id);
	*r = (struct cached_text){0};
	return bytes;
}

/* A clock sweep over the slots, dropping at least `bytes` (if held) and
 * passing over (once) a text read since the sweep last came by; the
 * bytes dropped. Caller holds the lock. */
static size_t sweep_locked(struct lfs_render_cache *c, size_t bytes)
{
	size_t freed = 0;
	for (size_t seen = 0; freed < bytes && seen < 2 * CACHE_SLOTS; seen++) {
		struct cached_text *r = &c->slots[c->hand];
		c->hand = (c->hand + 1) % CACHE_SLOTS;
		if (r->ref)
			r->ref = false;
		else
			freed += slot_drop(c, r);
	}
	return freed;
}

/* The shared budget's call (lfs_membudget_member.shrink). */
static size_t cache_shrink(struct lfs_membudget_member *m, size_t bytes)
{
	struct lfs_render_cache *c =
		(struct lfs_render_cache *)((char *)m -
					    offsetof(struct lfs_render_cache,
						     budget));
	pthread_mutex_lock(&c->lock);
	size_t freed = sweep_locked(c, bytes);
	pthread_mutex_unlock(&c->lock);
	return freed;
}

int lfs_render_cache_new(struct lfs_render_cache **out)
{
	*out = calloc(1, sizeof(**out));
	if (!*out)
		return -ENOMEM;
	pthread_mutex_init(&(*out)->lock, NULL);
	return 0;
}

void lfs_render_cache_share(struct lfs_render_cache *c,
			    struct lfs_membudget *budget)
{
	lfs_membudget_join(budget, &c->budget, cache_shrink);
}

void lfs_render_cache_free(struct lfs_render_cache *c)
{
	if (!c)
		return;
	lfs_membudget_leave(&c->budget);
	for (size_t i = 0; i < CACHE_SLOTS; i++) {
		free(c->slots[i].data);
		free(c->slots[i].id);
	}
	pthread_mutex_destroy(&c->lock);
	free(c);
}

static struct cached_text *cache_slot(struct lfs_render_cache *c,
				      const struct lfs_cid *doc, const char *id)
{
	uint64_t h;
	memcpy(&h, doc->digest, sizeof(h));
	for (const char *p = id; *p; p++)
		h = (h ^ (uint8_t)*p) * 0x100000001b3ull;
	return &c->slots[h % CACHE_SLOTS];
}

int lfs_render_cache_get(struct lfs_render_cache *c, const struct lfs_cid *doc,
			 const char *id, struct lfs_buf *out)
{
	pthread_mutex_lock(&c->lock);
	struct cached_text *r = cache_slot(c, doc, id);
	int rc = 0;
	if (r->data && lfs_cid_equal(&r->doc, doc) && !strcmp(r->id, id)) {
		rc = lfs_buf_append(out, r->data, r->len) ? -ENOMEM : 1;
		r->ref = true;
	}
	pthread_mutex_unlock(&c->lock);
	if (rc == 1)
		lfs_membudget_touch(&c->budget);
	return rc;
}

void lfs_render_cache_put(struct lfs_render_cache *c, const struct lfs_cid *doc,
			  const char *id, uint8_t *data, size_t len)
{
	char *idc = strdup(id);
	size_t bytes = slot_bytes(len, id);
	pthread_mutex_lock(&c->lock);
	struct cached_text *r = cache_slot(c, doc, id);
	if (idc) {
		slot_drop(c, r);
		/* New texts get a pass of the sweep, as read ones do. */
		*r = (struct cached_text){.doc = *doc,
					  .ref = true,
					  .id = idc,
					  .data = data,
					  .len = len};
		c->bytes += bytes;
		lfs_membudget_charge(&c->budget, (ptrdiff_t)bytes);
		if (c->bytes > CACHE_BYTES)
			sweep_locked(c, c->bytes - CACHE_BYTES);
		idc = NULL;
		data = NULL;
	}
	pthread_mutex_unlock(&c->lock);
	free(idc);
	free(data);
	lfs_membudget_enforce(&c->budget);
}
