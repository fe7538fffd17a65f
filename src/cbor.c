#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "cbor.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

enum {
	MAJ_UINT,
	MAJ_NINT,
	MAJ_BYTES,
	MAJ_TEXT,
	MAJ_ARRAY,
	MAJ_MAP,
	MAJ_TAG,
	MAJ_SIMPLE
};

#define TAG_CID 42

bool lfs_utf8_valid(const char *str, size_t n)
{
	const unsigned char *s = (const unsigned char *)str;
	size_t i = 0;
	while (i < n) {
		/* Runs of ASCII, most of a document's text, 8 bytes a step. */
		uint64_t w;
		while (n - i >= 8 &&
		       (memcpy(&w, s + i, 8), !(w & 0x8080808080808080ull)))
			i += 8;
		if (i == n)
			break;
		unsigned char c = s[i];
		if (c < 0x80) {
			i++;
			continue;
		}
		size_t need;
		uint32_t cp;
		if (c >= 0xc2 && c <= 0xdf) {
			need = 1;
			cp = c & 0x1f;
		} else if (c >= 0xe0 && c <= 0xef) {
			need = 2;
			cp = c & 0x0f;
		} else if (c >= 0xf0 && c <= 0xf4) {
			need = 3;
			cp = c & 0x07;
		} else {
			return false;
		}
		if (n - i - 1 < need)
			return false;
		for (size_t k = 1; k <= need; k++) {
			if ((s[i + k] & 0xc0) != 0x80)
				return false;
			cp = (cp << 6) | (s[i + k] & 0x3f);
		}
		if ((need == 2 && cp < 0x800) || (need == 3 && cp < 0x10000) ||
		    cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return false;
		i += need + 1;
	}
	return true;
}

size_t lfs_utf8_put(char out[4], uint32_t cp)
{
	if (cp < 0x80) {
		out[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		out[0] = (char)(0xc0 | cp >> 6);
		out[1] = (char)(0x80 | (cp & 0x3f));
		return 2;
	}
	if (cp < 0x10000) {
		out[0] = (char)(0xe0 | cp >> 12);
		out[1] = (char)(0x80 | (cp >> 6 & 0x3f));
		out[2] = (char)(0x80 | (cp & 0x3f));
		return 3;
	}
	out[0] = (char)(0xf0 | cp >> 18);
	out[1] = (char)(0x80 | (cp >> 12 & 0x3f));
	out[2] = (char)(0x80 | (cp >> 6 & 0x3f));
	out[3] = (char)(0x80 | (cp & 0x3f));
	return 4;
}

int lfs_cbor_key_cmp(const char *a, size_t alen, const char *b, size_t blen)
{
	if (alen != blen)
		return alen < blen ? -1 : 1;
	return memcmp(a, b, alen);
}

/* ---- encoding ---- */

int lfs_cbor_put_head(struct lfs_buf *out, unsigned major, uint64_t n)
{
	uint8_t h[9];
	size_t len;
	uint8_t m = (uint8_t)(major << 5);
	if (n < 24) {
		h[0] = m | (uint8_t)n;
		len = 1;
	} else if (n <= 0xff) {
		h[0] = m | 24;
		h[1] = (uint8_t)n;
		len = 2;
	} else if (n <= 0xffff) {
		h[0] = m | 25;
		h[1] = (uint8_t)(n >> 8);
		h[2] = (uint8_t)n;
		len = 3;
	} else if (n <= 0xffffffffu) {
		h[0] = m | 26;
		for (int i = 0; i < 4; i++)
			h[1 + i] = (uint8_t)(n >> (24 - 8 * i));
		len = 5;
	} else {
		h[0] = m | 27;
		for (int i = 0; i < 8; i++)
			h[1 + i] = (uint8_t)(n >> (56 - 8 * i));
		len = 9;
	}
	return lfs_buf_append(out, h, len);
}

int lfs_cbor_put_int(struct lfs_buf *out, int64_t i)
{
	if (i >= 0)
		return lfs_cbor_put_head(out, MAJ_UINT, (uint64_t)i);
	return lfs_cbor_put_head(out, MAJ_NINT, (uint64_t)(-1 - i));
}

int lfs_cbor_put_string(struct lfs_buf *out, const char *s, size_t n)
{
	lfs_cbor_put_head(out, MAJ_TEXT, n);
	return lfs_buf_append(out, s, n);
}

int lfs_cbor_put_bytes(struct lfs_buf *out, const void *p, size_t n)
{
	lfs_cbor_put_head(out, MAJ_BYTES, n);
	return lfs_buf_append(out, p, n);
}

int lfs_cbor_put_link(struct lfs_buf *out, const struct lfs_cid *c)
{
	uint8_t b[1 + LFS_CID_BYTES];
	b[0] = 0x00; /* multibase identity prefix required by DAG-CBOR */
	lfs_cid_to_bytes(b + 1, c);
	lfs_cbor_put_head(out, MAJ_TAG, TAG_CID);
	return lfs_cbor_put_bytes(out, b, sizeof(b));
}

int lfs_cbor_put_float(struct lfs_buf *out, double d)
{
	uint8_t b[9];
	uint64_t bits;
	memcpy(&bits, &d, sizeof(bits));
	b[0] = (MAJ_SIMPLE << 5) | 27;
	for (int i = 0; i < 8; i++)
		b[1 + i] = (uint8_t)(bits >> (56 - 8 * i));
	return lfs_buf_append(out, b, sizeof(b));
}

static int pair_cmp(const void *x, const void *y)
{
	const struct lfs_cbor_pair *a = x, *b = y;
	return lfs_cbor_key_cmp(a->key, a->key_len, b->key, b->key_len);
}

static int encode(struct lfs_buf *out, struct lfs_cbor *v, int depth)
{
	if (depth > LFS_CBOR_MAX_DEPTH)
		return -EINVAL;
	switch (v->type) {
	case LFS_CBOR_NULL:
		return lfs_buf_append_byte(out, 0xf6);
	case LFS_CBOR_BOOL:
		return lfs_buf_append_byte(out, v->u.boolean ? 0xf5 : 0xf4);
	case LFS_CBOR_INT:
		return lfs_cbor_put_head(
			out, v->u.integer.negative ? MAJ_NINT : MAJ_UINT,
			v->u.integer.magnitude);
	case LFS_CBOR_FLOAT:
		if (!isfinite(v->u.real))
			return -EINVAL;
		return lfs_cbor_put_float(out, v->u.real);
	case LFS_CBOR_BYTES:
		return lfs_cbor_put_bytes(out, v->u.str.data, v->u.str.len);
	case LFS_CBOR_STRING:
		if (!lfs_utf8_valid(v->u.str.data, v->u.str.len))
			return -EINVAL;
		return lfs_cbor_put_string(out, v->u.str.data, v->u.str.len);
	case LFS_CBOR_LINK:
		return lfs_cbor_put_link(out, &v->u.link);
	case LFS_CBOR_ARRAY:
		lfs_cbor_put_head(out, MAJ_ARRAY, v->u.array.count);
		for (size_t i = 0; i < v->u.array.count; i++) {
			int rc = encode(out, v->u.array.items[i], depth + 1);
			if (rc)
				return rc;
		}
		return out->err;
	case LFS_CBOR_MAP: {
		struct lfs_cbor_pair *p = v->u.map.pairs;
		size_t n = v->u.map.count;
		if (n > 1)
			qsort(p, n, sizeof(*p), pair_cmp);
		lfs_cbor_put_head(out, MAJ_MAP, n);
		for (size_t i = 0; i < n; i++) {
			if (i > 0 && pair_cmp(&p[i - 1], &p[i]) == 0)
				return -EINVAL;
			if (!lfs_utf8_valid(p[i].key, p[i].key_len))
				return -EINVAL;
			lfs_cbor_put_string(out, p[i].key, p[i].key_len);
			int rc = encode(out, p[i].value, depth + 1);
			if (rc)
				return rc;
		}
		return out->err;
	}
	}
	return -EINVAL;
}

int lfs_cbor_encode(struct lfs_buf *out, struct lfs_cbor *v)
{
	size_t start = out->len;
	int rc = encode(out, v, 0);
	if (!rc)
		rc = out->err;
	if (rc && !out->err)
		out->len = start;
	return rc;
}

/* ---- decoding ---- */

struct reader {
	const uint8_t *p;
	size_t len;
	size_t pos;
	struct lfs_arena *arena;
};

/* Read a head; enforce the shortest form. Returns 0 or -EBADMSG. */
static int read_head(struct reader *r, unsigned *major, unsigned *info,
		     uint64_t *arg)
{
	if (r->pos >= r->len)
		return -EBADMSG;
	uint8_t b = r->p[r->pos++];
	*major = b >> 5;
	*info = b & 31;
	if (*info < 24) {
		*arg = *info;
		return 0;
	}
	if (*info > 27)
		return -EBADMSG; /* reserved or indefinite length */
	size_t n = (size_t)1 << (*info - 24);
	if (r->len - r->pos < n)
		return -EBADMSG;
	uint64_t v = 0;
	for (size_t i = 0; i < n; i++)
		v = (v << 8) | r->p[r->pos++];
	*arg = v;
	if (*major == MAJ_SIMPLE)
		return 0; /* floats: the width is checked by the caller */
	static const uint64_t min[] = {24, 0x100, 0x10000, 0x100000000ull};
	if (v < min[*info - 24])
		return -EBADMSG; /* not the shortest form */
	return 0;
}

static struct lfs_cbor *new_value(struct reader *r, enum lfs_cbor_type t)
{
	struct lfs_cbor *v = lfs_arena_alloc(r->arena, sizeof(*v));
	if (v)
		v->type = t;
	return v;
}

static int read_string(struct reader *r, uint64_t n, const char **out)
{
	if (n > r->len - r->pos)
		return -EBADMSG;
	char *s = lfs_arena_strndup(r->arena, (const char *)r->p + r->pos,
				    (size_t)n);
	if (!s)
		return -ENOMEM;
	r->pos += (size_t)n;
	*out = s;
	return 0;
}

static int decode(struct reader *r, struct lfs_cbor **out, int depth)
{
	unsigned major, info;
	uint64_t arg;
	int rc;
	struct lfs_cbor *v;

	if (depth > LFS_CBOR_MAX_DEPTH)
		return -EBADMSG;
	if ((rc = read_head(r, &major, &info, &arg)))
		return rc;
	switch (major) {
	case MAJ_UINT:
	case MAJ_NINT:
		if (!(v = new_value(r, LFS_CBOR_INT)))
			return -ENOMEM;
		v->u.integer.negative = major == MAJ_NINT;
		v->u.integer.magnitude = arg;
		break;
	case MAJ_BYTES:
	case MAJ_TEXT:
		if (!(v = new_value(r, major == MAJ_TEXT ? LFS_CBOR_STRING
							 : LFS_CBOR_BYTES)))
			return -ENOMEM;
		if ((rc = read_string(r, arg, &v->u.str.data)))
			return rc;
		v->u.str.len = (size_t)arg;
		if (major == MAJ_TEXT &&
		    !lfs_utf8_valid(v->u.str.data, v->u.str.len))
			return -EBADMSG;
		break;
	case MAJ_ARRAY:
		/* Every item takes at least one byte. */
		if (arg > r->len - r->pos)
			return -EBADMSG;
		if (!(v = new_value(r, LFS_CBOR_ARRAY)))
			return -ENOMEM;
		v->u.array.count = (size_t)arg;
		v->u.array.items =
			lfs_arena_calloc(r->arena, (size_t)arg, sizeof(void *));
		if (arg && !v->u.array.items)
			return -ENOMEM;
		for (size_t i = 0; i < arg; i++)
			if ((rc = decode(r, &v->u.array.items[i], depth + 1)))
				return rc;
		break;
	case MAJ_MAP:
		/* Every pair takes at least two bytes. */
		if (arg > (r->len - r->pos) / 2)
			return -EBADMSG;
		if (!(v = new_value(r, LFS_CBOR_MAP)))
			return -ENOMEM;
		v->u.map.count = (size_t)arg;
		v->u.map.pairs = lfs_arena_calloc(r->arena, (size_t)arg,
						  sizeof(struct lfs_cbor_pair));
		if (arg && !v->u.map.pairs)
			return -ENOMEM;
		for (size_t i = 0; i < arg; i++) {
			struct lfs_cbor_pair *p = &v->u.map.pairs[i];
			unsigned kmaj, kinfo;
			uint64_t klen;
			if ((rc = read_head(r, &kmaj, &kinfo, &klen)))
				return rc;
			if (kmaj != MAJ_TEXT)
				return -EBADMSG;
			if ((rc = read_string(r, klen, &p->key)))
				return rc;
			p->key_len = (size_t)klen;
			if (!lfs_utf8_valid(p->key, p->key_len))
				return -EBADMSG;
			if (i > 0 && pair_cmp(&v->u.map.pairs[i - 1], p) >= 0)
				return -EBADMSG; /* unsorted or duplicate */
			if ((rc = decode(r, &p->value, depth + 1)))
				return rc;
		}
		break;
	case MAJ_TAG: {
		if (arg != TAG_CID)
			return -EBADMSG;
		unsigned bmaj, binfo;
		uint64_t blen;
		if ((rc = read_head(r, &bmaj, &binfo, &blen)))
			return rc;
		if (bmaj != MAJ_BYTES || blen > r->len - r->pos || blen < 2)
			return -EBADMSG;
		const uint8_t *b = r->p + r->pos;
		if (b[0] != 0x00)
			return -EBADMSG;
		if (!(v = new_value(r, LFS_CBOR_LINK)))
			return -ENOMEM;
		rc = lfs_cid_from_bytes(&v->u.link, b + 1, (size_t)blen - 1);
		if (rc < 0)
			return rc;
		if ((uint64_t)rc != blen - 1)
			return -EBADMSG;
		r->pos += (size_t)blen;
		break;
	}
	case MAJ_SIMPLE:
	default:
		if (info == 27) {
			double d;
			memcpy(&d, &arg, sizeof(d));
			if (!isfinite(d))
				return -EBADMSG;
			if (!(v = new_value(r, LFS_CBOR_FLOAT)))
				return -ENOMEM;
			v->u.real = d;
		} else if (info == 20 || info == 21) {
			if (!(v = new_value(r, LFS_CBOR_BOOL)))
				return -ENOMEM;
			v->u.boolean = info == 21;
		} else if (info == 22) {
			if (!(v = new_value(r, LFS_CBOR_NULL)))
				return -ENOMEM;
		} else {
			return -EBADMSG; /* undefined, half/single floats... */
		}
		break;
	}
	*out = v;
	return 0;
}

int lfs_cbor_decode(struct lfs_cbor **out, struct lfs_arena *a,
		    const uint8_t *p, size_t len)
{
	struct reader r = {.p = p, .len = len, .pos = 0, .arena = a};
	struct lfs_cbor *v = NULL;
	int rc = decode(&r, &v, 0);
	if (rc)
		return rc;
	if (r.pos != len)
		return -EBADMSG; /* trailing bytes */
	*out = v;
	return 0;
}

/* ---- constructors and accessors ---- */

static struct lfs_cbor *make(struct lfs_arena *a, enum lfs_cbor_type t)
{
	struct lfs_cbor *v = lfs_arena_alloc(a, sizeof(*v));
	if (v)
		v->type = t;
	return v;
}

struct lfs_cbor *lfs_cbor_null(struct lfs_arena *a)
{
	return make(a, LFS_CBOR_NULL);
}

struct lfs_cbor *lfs_cbor_bool(struct lfs_arena *a, bool b)
{
	struct lfs_cbor *v = make(a, LFS_CBOR_BOOL);
	if (v)
		v->u.boolean = b;
	return v;
}

struct lfs_cbor *lfs_cbor_int(struct lfs_arena *a, int64_t i)
{
	struct lfs_cbor *v = make(a, LFS_CBOR_INT);
	if (v) {
		v->u.integer.negative = i < 0;
		v->u.integer.magnitude =
			i < 0 ? (uint64_t)(-1 - i) : (uint64_t)i;
	}
	return v;
}

struct lfs_cbor *lfs_cbor_uint(struct lfs_arena *a, uint64_t u)
{
	struct lfs_cbor *v = make(a, LFS_CBOR_INT);
	if (v)
		v->u.integer.magnitude = u;
	return v;
}

struct lfs_cbor *lfs_cbor_float(struct lfs_arena *a, double d)
{
	struct lfs_cbor *v = make(a, LFS_CBOR_FLOAT);
	if (v)
		v->u.real = d;
	return v;
}

static struct lfs_cbor *make_str(struct lfs_arena *a, enum lfs_cbor_type t,
				 const void *p, size_t n)
{
	struct lfs_cbor *v = make(a, t);
	if (!v)
		return NULL;
	v->u.str.data = lfs_arena_strndup(a, p, n);
	v->u.str.len = n;
	return v->u.str.data ? v : NULL;
}

struct lfs_cbor *lfs_cbor_bytes(struct lfs_arena *a, const void *p, size_t n)
{
	return make_str(a, LFS_CBOR_BYTES, p, n);
}

struct lfs_cbor *lfs_cbor_string(struct lfs_arena *a, const char *s, size_t n)
{
	return make_str(a, LFS_CBOR_STRING, s, n);
}

struct lfs_cbor *lfs_cbor_link(struct lfs_arena *a, const struct lfs_cid *c)
{
	struct lfs_cbor *v = make(a, LFS_CBOR_LINK);
	if (v)
		v->u.link = *c;
	return v;
}

/*
 * Containers remember their capacity in a hidden slot so that push/put can
 * refuse to overflow it: the count grows from 0 up to that capacity.
 */
struct container {
	struct lfs_cbor value;
	size_t capacity;
};

struct lfs_cbor *lfs_cbor_array(struct lfs_arena *a, size_t capacity)
{
	struct container *c = lfs_arena_alloc(a, sizeof(*c));
	if (!c)
		return NULL;
	c->value.type = LFS_CBOR_ARRAY;
	c->capacity = capacity;
	c->value.u.array.items = lfs_arena_calloc(a, capacity, sizeof(void *));
	return capacity && !c->value.u.array.items ? NULL : &c->value;
}

struct lfs_cbor *lfs_cbor_map(struct lfs_arena *a, size_t capacity)
{
	struct container *c = lfs_arena_alloc(a, sizeof(*c));
	if (!c)
		return NULL;
	c->value.type = LFS_CBOR_MAP;
	c->capacity = capacity;
	c->value.u.map.pairs =
		lfs_arena_calloc(a, capacity, sizeof(struct lfs_cbor_pair));
	return capacity && !c->value.u.map.pairs ? NULL : &c->value;
}

static size_t capacity_of(struct lfs_cbor *v)
{
	return ((struct container *)v)->capacity;
}

int lfs_cbor_array_push(struct lfs_cbor *array, struct lfs_cbor *item)
{
	if (!item)
		return -ENOMEM;
	if (array->u.array.count >= capacity_of(array))
		return -ENOSPC;
	array->u.array.items[array->u.array.count++] = item;
	return 0;
}

int lfs_cbor_map_put(struct lfs_arena *a, struct lfs_cbor *map, const char *key,
		     struct lfs_cbor *value)
{
	if (!value)
		return -ENOMEM;
	if (map->u.map.count >= capacity_of(map))
		return -ENOSPC;
	size_t n = strlen(key);
	struct lfs_cbor_pair *p = &map->u.map.pairs[map->u.map.count];
	if (!(p->key = lfs_arena_strndup(a, key, n)))
		return -ENOMEM;
	p->key_len = n;
	p->value = value;
	map->u.map.count++;
	return 0;
}

struct lfs_cbor *lfs_cbor_map_get(const struct lfs_cbor *map, const char *key)
{
	if (!map || map->type != LFS_CBOR_MAP)
		return NULL;
	size_t n = strlen(key);
	for (size_t i = 0; i < map->u.map.count; i++) {
		const struct lfs_cbor_pair *p = &map->u.map.pairs[i];
		if (p->key_len == n && memcmp(p->key, key, n) == 0)
			return p->value;
	}
	return NULL;
}

int lfs_cbor_get_int(int64_t *out, const struct lfs_cbor *v)
{
	if (!v || v->type != LFS_CBOR_INT || v->u.integer.magnitude > INT64_MAX)
		return -EBADMSG;
	int64_t m = (int64_t)v->u.integer.magnitude;
	*out = v->u.integer.negative ? -1 - m : m;
	return 0;
}

int lfs_cbor_get_uint(uint64_t *out, const struct lfs_cbor *v)
{
	if (!v || v->type != LFS_CBOR_INT || v->u.integer.negative)
		return -EBADMSG;
	*out = v->u.integer.magnitude;
	return 0;
}

int lfs_cbor_get_link(struct lfs_cid *out, const struct lfs_cbor *v)
{
	if (!v || v->type != LFS_CBOR_LINK)
		return -EBADMSG;
	*out = v->u.link;
	return 0;
}
