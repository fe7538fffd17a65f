#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "dagjson.h"

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char b64[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

size_t lfs_base64_encoded_len(size_t n)
{
	return n / 3 * 4 + (n % 3 ? n % 3 + 1 : 0);
}

void lfs_base64_encode(char *out, const uint8_t *p, size_t n)
{
	size_t o = 0, i = 0;
	for (; i + 3 <= n; i += 3) {
		uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 |
			     p[i + 2];
		out[o++] = b64[v >> 18];
		out[o++] = b64[(v >> 12) & 63];
		out[o++] = b64[(v >> 6) & 63];
		out[o++] = b64[v & 63];
	}
	if (n - i == 1) {
		uint32_t v = (uint32_t)p[i] << 16;
		out[o++] = b64[v >> 18];
		out[o++] = b64[(v >> 12) & 63];
	} else if (n - i == 2) {
		uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8;
		out[o++] = b64[v >> 18];
		out[o++] = b64[(v >> 12) & 63];
		out[o++] = b64[(v >> 6) & 63];
	}
	out[o] = '\0';
}

static int b64_value(char c)
{
	const char *p = c ? strchr(b64, c) : NULL;
	return p ? (int)(p - b64) : -1;
}

int lfs_base64_decode(uint8_t *out, const char *s, size_t n)
{
	if (n % 4 == 1)
		return -EINVAL;
	uint32_t acc = 0;
	int bits = 0;
	size_t o = 0;
	for (size_t i = 0; i < n; i++) {
		int v = b64_value(s[i]);
		if (v < 0)
			return -EINVAL;
		acc = (acc << 6) | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			out[o++] = (uint8_t)(acc >> (bits - 8));
			bits -= 8;
		}
	}
	if (acc & ((1u << bits) - 1))
		return -EINVAL; /* non-canonical trailing bits */
	return (int)o;
}

static int to_cbor(struct lfs_cbor **out, struct lfs_arena *a, const json_t *j,
		   int depth);

/* {"/": "<cid>"} or {"/": {"bytes": "..."}}: 1 if converted, 0 if not. */
static int special_object(struct lfs_cbor **out, struct lfs_arena *a,
			  const json_t *j)
{
	json_t *slash = json_object_get(j, "/");
	if (json_object_size(j) != 1 || !slash)
		return 0;
	if (json_is_string(slash)) {
		struct lfs_cid cid;
		const char *s = json_string_value(slash);
		/* a NUL inside would hide the rest of the string */
		if (strlen(s) != json_string_length(slash) ||
		    lfs_cid_from_string(&cid, s))
			return 0;
		*out = lfs_cbor_link(a, &cid);
		return *out ? 1 : -ENOMEM;
	}
	json_t *bytes = json_object_get(slash, "bytes");
	if (!json_is_object(slash) || json_object_size(slash) != 1 ||
	    !json_is_string(bytes))
		return 0;
	size_t n = json_string_length(bytes);
	uint8_t *tmp = malloc(n * 3 / 4 + 1);
	if (!tmp)
		return -ENOMEM;
	int len = lfs_base64_decode(tmp, json_string_value(bytes), n);
	if (len >= 0)
		*out = lfs_cbor_bytes(a, tmp, (size_t)len);
	free(tmp);
	if (len < 0)
		return 0;
	return *out ? 1 : -ENOMEM;
}

static int to_cbor(struct lfs_cbor **out, struct lfs_arena *a, const json_t *j,
		   int depth)
{
	if (depth > LFS_CBOR_MAX_DEPTH)
		return -EINVAL;
	struct lfs_cbor *v = NULL;
	switch (json_typeof(j)) {
	case JSON_NULL:
		v = lfs_cbor_null(a);
		break;
	case JSON_TRUE:
	case JSON_FALSE:
		v = lfs_cbor_bool(a, json_is_true(j));
		break;
	case JSON_INTEGER:
		v = lfs_cbor_int(a, json_integer_value(j));
		break;
	case JSON_REAL:
		if (!isfinite(json_real_value(j)))
			return -EINVAL;
		v = lfs_cbor_float(a, json_real_value(j));
		break;
	case JSON_STRING:
		v = lfs_cbor_string(a, json_string_value(j),
				    json_string_length(j));
		break;
	case JSON_ARRAY: {
		size_t n = json_array_size(j);
		if (!(v = lfs_cbor_array(a, n)))
			return -ENOMEM;
		for (size_t i = 0; i < n; i++) {
			struct lfs_cbor *item;
			int rc = to_cbor(&item, a, json_array_get(j, i),
					 depth + 1);
			if (rc)
				return rc;
			lfs_cbor_array_push(v, item);
		}
		break;
	}
	case JSON_OBJECT: {
		int rc = special_object(out, a, j);
		if (rc)
			return rc < 0 ? rc : 0;
		if (!(v = lfs_cbor_map(a, json_object_size(j))))
			return -ENOMEM;
		const char *key;
		size_t klen;
		json_t *val;
		struct lfs_cbor_pair *pairs = v->u.map.pairs;
		json_object_keylen_foreach((json_t *)j, key, klen, val)
		{
			struct lfs_cbor *item;
			if ((rc = to_cbor(&item, a, val, depth + 1)))
				return rc;
			struct lfs_cbor_pair *p = &pairs[v->u.map.count++];
			if (!(p->key = lfs_arena_strndup(a, key, klen)))
				return -ENOMEM;
			p->key_len = klen;
			p->value = item;
		}
		break;
	}
	}
	if (!v)
		return -ENOMEM;
	*out = v;
	return 0;
}

int lfs_dagjson_to_cbor(struct lfs_cbor **out, struct lfs_arena *a,
			const json_t *json)
{
	return to_cbor(out, a, json, 0);
}

static int from_cbor(json_t **out, const struct lfs_cbor *v, int depth)
{
	json_t *j = NULL;
	int rc;
	if (depth > LFS_CBOR_MAX_DEPTH)
		return -EINVAL;
	switch (v->type) {
	case LFS_CBOR_NULL:
		j = json_null();
		break;
	case LFS_CBOR_BOOL:
		j = json_boolean(v->u.boolean);
		break;
	case LFS_CBOR_INT: {
		int64_t i;
		if (lfs_cbor_get_int(&i, v))
			return -ERANGE;
		j = json_integer(i);
		break;
	}
	case LFS_CBOR_FLOAT:
		if (!isfinite(v->u.real))
			return -EINVAL;
		j = json_real(v->u.real);
		break;
	case LFS_CBOR_STRING:
		if (!lfs_utf8_valid(v->u.str.data, v->u.str.len))
			return -EINVAL;
		j = json_stringn(v->u.str.data, v->u.str.len);
		break;
	case LFS_CBOR_BYTES: {
		char *s = malloc(lfs_base64_encoded_len(v->u.str.len) + 1);
		if (!s)
			return -ENOMEM;
		lfs_base64_encode(s, (const uint8_t *)v->u.str.data,
				  v->u.str.len);
		j = json_pack("{s:{s:s}}", "/", "bytes", s);
		free(s);
		break;
	}
	case LFS_CBOR_LINK: {
		char s[LFS_CID_STRLEN + 1];
		lfs_cid_to_string(s, &v->u.link);
		j = json_pack("{s:s}", "/", s);
		break;
	}
	case LFS_CBOR_ARRAY:
		if (!(j = json_array()))
			return -ENOMEM;
		for (size_t i = 0; i < v->u.array.count; i++) {
			json_t *item;
			if ((rc = from_cbor(&item, v->u.array.items[i],
					    depth + 1))) {
				json_decref(j);
				return rc;
			}
			if (json_array_append_new(j, item)) {
				json_decref(j);
				return -ENOMEM;
			}
		}
		break;
	case LFS_CBOR_MAP:
		if (!(j = json_object()))
			return -ENOMEM;
		for (size_t i = 0; i < v->u.map.count; i++) {
			const struct lfs_cbor_pair *p = &v->u.map.pairs[i];
			json_t *item;
			if (!lfs_utf8_valid(p->key, p->key_len)) {
				json_decref(j);
				return -EINVAL;
			}
			if ((rc = from_cbor(&item, p->value, depth + 1))) {
				json_decref(j);
				return rc;
			}
			if (json_object_setn_new(j, p->key, p->key_len, item)) {
				json_decref(j);
				return -ENOMEM;
			}
		}
		break;
	}
	if (!j)
		return -ENOMEM;
	*out = j;
	return 0;
}

int lfs_dagjson_from_cbor(json_t **out, const struct lfs_cbor *v)
{
	return from_cbor(out, v, 0);
}

/*
 * The printer. jansson's own prints reals with a fixed precision (0.1 comes
 * out as 0.10000000000000001); documents are read by people, so reals are
 * printed in the shortest form that reads back to the same double.
 */

#define DUMP_MAX_DEPTH 2048

struct dump_key {
	const char *key;
	size_t len;
	json_t *value;
};

static int dump_key_cmp(const void *x, const void *y)
{
	const struct dump_key *a = x, *b = y;
	int c = memcmp(a->key, b->key, a->len < b->len ? a->len : b->len);
	if (c)
		return c;
	return a->len < b->len ? -1 : a->len > b->len;
}

static void dump_indent(struct lfs_buf *out, int depth)
{
	lfs_buf_append_byte(out, '\n');
	for (int i = 0; i < depth; i++)
		lfs_buf_append(out, "  ", 2);
}

static void dump_string(struct lfs_buf *out, const char *s, size_t n)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t run = 0;
	lfs_buf_append_byte(out, '"');
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		const char *esc = NULL;
		char u[7];
		if (c >= 0x20 && c != '"' && c != '\\')
			continue;
		lfs_buf_append(out, s + run, i - run);
		run = i + 1;
		switch (c) {
		case '"':
			esc = "\\\"";
			break;
		case '\\':
			esc = "\\\\";
			break;
		case '\b':
			esc = "\\b";
			break;
		case '\f':
			esc = "\\f";
			break;
		case '\n':
			esc = "\\n";
			break;
		case '\r':
			esc = "\\r";
			break;
		case '\t':
			esc = "\\t";
			break;
		default:
			memcpy(u, "\\u00", 4);
			u[4] = hex[c >> 4];
			u[5] = hex[c & 15];
			u[6] = '\0';
			esc = u;
			break;
		}
		lfs_buf_append_str(out, esc);
	}
	lfs_buf_append(out, s + run, n - run);
	lfs_buf_append_byte(out, '"');
}

/* "%.*g" into tmp[40]; true when it reads back as exactly d. */
static bool format_g(char tmp[40], int prec, double d)
{
	if (snprintf(tmp, 40, "%.*g", prec, d) >= 40)
		return false; /* cannot happen for prec <= 17 */
	double back = strtod(tmp, NULL);
	return memcmp(&back, &d, sizeof(d)) == 0;
}

/*
 * The shortest "%.Ng" that strtod() reads back to the same bits, with ".0"
 * added when it would otherwise read back as an integer. As in Python's repr(),
 * the exponent form is kept for magnitudes below 1e-4 or from 1e16 up; in
 * between, "%.Ng" would write 100.0 as 1e+02, so that is spelt out in full.
 * Whatever the locale's decimal point is, '.' is written.
 */
static void dump_real(struct lfs_buf *out, double d)
{
	char tmp[40], res[48];
	size_t n = 0;
	/*
	 * 17 digits always read back, and if N do then N + 1 do (the N-digit
	 * form is also an (N + 1)-digit candidate): search for the fewest.
	 */
	int lo = 1, prec = 17;
	while (lo < prec) {
		int mid = (lo + prec) / 2;
		if (format_g(tmp, mid, d))
			prec = mid;
		else
			lo = mid + 1;
	}
	format_g(tmp, prec, d);
	const char *e = strchr(tmp, 'e');
	int exp = e ? atoi(e + 1) : 0;
	if (e && exp >= prec && exp < 16) {
		char full[40];
		if (format_g(full, exp + 1, d))
			memcpy(tmp, full, sizeof(tmp));
	}
	bool point = false;
	for (const char *p = tmp; *p && n < sizeof(res) - 3;) {
		if ((*p >= '0' && *p <= '9') || *p == '-' || *p == '+' ||
		    *p == 'e') {
			point |= *p == 'e';
			res[n++] = *p++;
			continue;
		}
		/* the locale's decimal point, possibly several bytes */
		res[n++] = '.';
		point = true;
		while (*p && !(*p >= '0' && *p <= '9') && *p != 'e')
			p++;
	}
	if (!point) {
		res[n++] = '.';
		res[n++] = '0';
	}
	lfs_buf_append(out, res, n);
}

static int dump_object(struct lfs_buf *out, const json_t *j, int depth,
		       const char *extra_key, const json_t *extra);

static int dump_value(struct lfs_buf *out, const json_t *j, int depth)
{
	char tmp[32];
	if (depth > DUMP_MAX_DEPTH)
		return -EINVAL;
	switch (json_typeof(j)) {
	case JSON_NULL:
		return lfs_buf_append_str(out, "null");
	case JSON_TRUE:
		return lfs_buf_append_str(out, "true");
	case JSON_FALSE:
		return lfs_buf_append_str(out, "false");
	case JSON_INTEGER:
		snprintf(tmp, sizeof(tmp), "%lld",
			 (long long)json_integer_value(j));
		return lfs_buf_append_str(out, tmp);
	case JSON_REAL:
		if (!isfinite(json_real_value(j)))
			return -EINVAL;
		dump_real(out, json_real_value(j));
		return out->err;
	case JSON_STRING:
		dump_string(out, json_string_value(j), json_string_length(j));
		return out->err;
	case JSON_ARRAY: {
		size_t n = json_array_size(j);
		if (n == 0)
			return lfs_buf_append_str(out, "[]");
		lfs_buf_append_byte(out, '[');
		for (size_t i = 0; i < n; i++) {
			if (i > 0)
				lfs_buf_append_byte(out, ',');
			dump_indent(out, depth + 1);
			int rc = dump_value(out, json_array_get(j, i),
					    depth + 1);
			if (rc)
				return rc;
		}
		dump_indent(out, depth);
		return lfs_buf_append_byte(out, ']');
	}
	case JSON_OBJECT:
		return dump_object(out, j, depth, NULL, NULL);
	}
	return -EINVAL;
}

/* Object j, with extra_key: extra (when not NULL) in place of its own. */
static int dump_object(struct lfs_buf *out, const json_t *j, int depth,
		       const char *extra_key, const json_t *extra)
{
	size_t n = json_object_size(j) + (extra != NULL), k = 0;
	if (n == 0)
		return lfs_buf_append_str(out, "{}");
	struct dump_key space[16];
	struct dump_key *keys = n <= 16 ? space : malloc(n * sizeof(*keys));
	if (!keys)
		return -ENOMEM;
	size_t extra_len = extra ? strlen(extra_key) : 0;
	if (extra)
		keys[k++] = (struct dump_key){extra_key, extra_len,
					      (json_t *)extra};
	const char *key;
	size_t klen;
	json_t *val;
	json_object_keylen_foreach((json_t *)j, key, klen, val)
	{
		if (k == n)
			break;
		if (extra && klen == extra_len && !memcmp(key, extra_key, klen))
			continue;
		keys[k].key = key;
		keys[k].len = klen;
		keys[k].value = val;
		k++;
	}
	qsort(keys, k, sizeof(*keys), dump_key_cmp);
	int rc = lfs_buf_append_byte(out, '{');
	for (size_t i = 0; i < k && !rc; i++) {
		if (i > 0)
			lfs_buf_append_byte(out, ',');
		dump_indent(out, depth + 1);
		dump_string(out, keys[i].key, keys[i].len);
		lfs_buf_append(out, ": ", 2);
		rc = dump_value(out, keys[i].value, depth + 1);
	}
	if (keys != space)
		free(keys);
	if (rc)
		return rc;
	dump_indent(out, depth);
	return lfs_buf_append_byte(out, '}');
}

static int dump_top(struct lfs_buf *out, const json_t *json,
		    const char *extra_key, const json_t *extra)
{
	size_t start = out->len;
	int rc = !json   ? -EINVAL
		 : extra ? dump_object(out, json, 0, extra_key, extra)
			 : dump_value(out, json, 0);
	if (!rc)
		rc = lfs_buf_append_byte(out, '\n');
	if (rc && !out->err)
		out->len = start;
	return rc;
}

int lfs_dagjson_dump(struct lfs_buf *out, const json_t *json)
{
	return dump_top(out, json, NULL, NULL);
}

int lfs_dagjson_dump_with(struct lfs_buf *out, const json_t *obj,
			  const char *key, const json_t *value)
{
	if (!json_is_object(obj) || !key || !value)
		return -EINVAL;
	return dump_top(out, obj, key, value);
}
