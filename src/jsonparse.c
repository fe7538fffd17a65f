#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "jsonparse.h"

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cbor.h" /* lfs_utf8_valid, lfs_utf8_put */
#include "hex.h"

/* Deeper text is left to jansson (its own limit is 2048). */
#define MAX_DEPTH 512
/* A real's text longer than this is left to jansson. */
#define REAL_MAX 64

struct reader {
	const unsigned char *p, *end;
	size_t flags;
	char *tmp; /* an escaped string's bytes (grown as needed) */
	size_t tmp_cap;
};

static void skip_space(struct reader *r)
{
	while (r->p < r->end && (*r->p == ' ' || *r->p == '\n' ||
				 *r->p == '\r' || *r->p == '\t'))
		r->p++;
}

/* Take c and the space after it, when c comes next. */
static bool take(struct reader *r, unsigned char c)
{
	if (r->p == r->end || *r->p != c)
		return false;
	r->p++;
	skip_space(r);
	return true;
}

#define ONES  0x0101010101010101ull
#define HIGHS 0x8080808080808080ull

/* Does any byte of w need a look: '"', '\\' or a control character? */
static bool word_special(uint64_t w)
{
	uint64_t quote = w ^ (ONES * '"'), bslash = w ^ (ONES * '\\');
	uint64_t any = ((quote - ONES) & ~quote) | ((bslash - ONES) & ~bslash) |
		       ((w - ONES * 0x20) & ~w);
	return any & HIGHS;
}

static int hex4(const unsigned char *p, uint32_t *out)
{
	uint32_t v = 0;
	for (int i = 0; i < 4; i++) {
		int d = lfs_hex_value(p[i]);
		if (d < 0)
			return -1;
		v = v << 4 | (uint32_t)d;
	}
	*out = v;
	return 0;
}

static bool tmp_room(struct reader *r, size_t need)
{
	if (need <= r->tmp_cap)
		return true;
	size_t cap = r->tmp_cap ? r->tmp_cap : 256;
	while (cap < need)
		cap *= 2;
	char *p = realloc(r->tmp, cap);
	if (!p)
		return false;
	r->tmp = p;
	r->tmp_cap = cap;
	return true;
}

/*
 * The string at r->p (its opening quote): its bytes in *out (in the text,
 * or in r->tmp when it held escapes) and *len. False: not one this reader
 * takes.
 */
static bool read_string(struct reader *r, const char **out, size_t *len)
{
	const unsigned char *s = ++r->p, *p = s, *end = r->end;
	for (;;) {
		uint64_t w;
		while (end - p >= 8 && (memcpy(&w, p, 8), !word_special(w)))
			p += 8;
		while (p < end && *p != '"' && *p != '\\' && *p >= 0x20)
			p++;
		if (p == end || *p < 0x20)
			return false;
		if (*p == '"')
			break;
		/* An escape: the rest is copied out, escapes decoded. */
		size_t n = (size_t)(p - s);
		if (!tmp_room(r, n + (size_t)(end - p)))
			return false;
		memcpy(r->tmp, s, n);
		while (p < end && *p != '"') {
			if (*p < 0x20)
				return false;
			if (*p != '\\') {
				r->tmp[n++] = (char)*p++;
				continue;
			}
			if (end - p < 2)
				return false;
			unsigned char e = p[1];
			p += 2;
			const char *simple = strchr("\"\\/bfnrt", e);
			if (e && simple) {
				static const char to[] = "\"\\/\b\f\n\r\t";
				r->tmp[n++] = to[simple - "\"\\/bfnrt"];
				continue;
			}
			uint32_t cp, lo;
			if (e != 'u' || end - p < 4 || hex4(p, &cp))
				return false;
			p += 4;
			if ((cp == 0 && !(r->flags & JSON_ALLOW_NUL)) ||
			    (cp >= 0xdc00 && cp <= 0xdfff))
				return false;
			if (cp >= 0xd800 && cp <= 0xdbff) {
				if (end - p < 6 || p[0] != '\\' ||
				    p[1] != 'u' || hex4(p + 2, &lo) ||
				    lo < 0xdc00 || lo > 0xdfff)
					return false;
				p += 6;
				cp = 0x10000 + ((cp - 0xd800) << 10) +
				     (lo - 0xdc00);
			}
			/* Six escaped bytes never become more than four. */
			n += lfs_utf8_put(r->tmp + n, cp);
		}
		if (p == end)
			return false;
		r->p = p + 1;
		/* Escapes give whole characters, each starting with a lead
		 * byte: checking the whole result checks the raw bytes. */
		if (!lfs_utf8_valid(r->tmp, n))
			return false;
		*out = r->tmp;
		*len = n;
		return true;
	}
	r->p = p + 1;
	*out = (const char *)s;
	*len = (size_t)(p - s);
	return lfs_utf8_valid(*out, *len);
}

static bool is_digit(const unsigned char *p, const unsigned char *end)
{
	return p < end && *p >= '0' && *p <= '9';
}

static json_t *read_number(struct reader *r)
{
	const unsigned char *s = r->p, *p = s, *end = r->end;
	bool neg = p < end && *p == '-';
	p += neg;
	if (!is_digit(p, end))
		return NULL;
	if (*p == '0') {
		if (is_digit(++p, end))
			return NULL; /* a leading zero */
	} else {
		while (is_digit(p, end))
			p++;
	}
	bool real = false;
	if (p < end && *p == '.') {
		if (!is_digit(++p, end))
			return NULL;
		while (is_digit(p, end))
			p++;
		real = true;
	}
	if (p < end && (*p == 'e' || *p == 'E')) {
		p++;
		if (p < end && (*p == '+' || *p == '-'))
			p++;
		if (!is_digit(p, end))
			return NULL;
		while (is_digit(p, end))
			p++;
		real = true;
	}
	r->p = p;
	if (!real) {
		/* Within int64, or left to jansson ("too big integer"). */
		uint64_t v = 0, max = neg ? (uint64_t)INT64_MAX + 1 : INT64_MAX;
		for (const unsigned char *d = s + neg; d < p; d++) {
			unsigned dig = *d - '0';
			if (v > (max - dig) / 10)
				return NULL;
			v = v * 10 + dig;
		}
		return json_integer(neg ? (int64_t)(0 - v) : (int64_t)v);
	}
	char text[REAL_MAX + 1];
	size_t n = (size_t)(p - s);
	if (n > REAL_MAX)
		return NULL;
	memcpy(text, s, n);
	text[n] = '\0';
	errno = 0;
	double d = strtod(text, NULL);
	if (errno == ERANGE && isinf(d))
		return NULL; /* jansson: "real number overflow" */
	return json_real(d);
}

static bool word(struct reader *r, const char *w, size_t n)
{
	if ((size_t)(r->end - r->p) < n || memcmp(r->p, w, n))
		return false;
	r->p += n;
	return true;
}

static json_t *read_value(struct reader *r, int depth);

static json_t *read_object(struct reader *r, int depth)
{
	json_t *o = json_object();
	take(r, '{');
	if (take(r, '}'))
		return o;
	while (o) {
		const char *key;
		size_t klen;
		if (r->p == r->end || *r->p != '"' ||
		    !read_string(r, &key, &klen))
			break;
		/* A NUL in a key, or a duplicate to refuse, is jansson's
		 * to refuse (another duplicate replaces the value, as
		 * jansson's own reader does). */
		if (memchr(key, 0, klen) ||
		    ((r->flags & JSON_REJECT_DUPLICATES) &&
		     json_object_getn(o, key, klen)))
			break;
		/* The key may sit in r->tmp, which the value reuses. */
		char small[64], *kc = klen < sizeof(small) ? small : NULL;
		if (!kc && !(kc = malloc(klen)))
			break;
		memcpy(kc, key, klen);
		skip_space(r);
		json_t *v = take(r, ':') ? read_value(r, depth + 1) : NULL;
		bool set = v && !json_object_setn_new_nocheck(o, kc, klen, v);
		if (kc != small)
			free(kc);
		if (!set)
			break;
		skip_space(r);
		if (take(r, ','))
			continue;
		if (take(r, '}'))
			return o;
		break;
	}
	json_decref(o);
	return NULL;
}

static json_t *read_array(struct reader *r, int depth)
{
	json_t *a = json_array();
	take(r, '[');
	if (take(r, ']'))
		return a;
	while (a) {
		json_t *v = read_value(r, depth + 1);
		if (!v || json_array_append_new(a, v))
			break;
		skip_space(r);
		if (take(r, ','))
			continue;
		if (take(r, ']'))
			return a;
		break;
	}
	json_decref(a);
	return NULL;
}

static json_t *read_value(struct reader *r, int depth)
{
	if (r->p == r->end || depth > MAX_DEPTH)
		return NULL;
	const char *s;
	size_t n;
	switch (*r->p) {
	case '{':
		return read_object(r, depth);
	case '[':
		return read_array(r, depth);
	case '"':
		return read_string(r, &s, &n) ? json_stringn_nocheck(s, n)
					      : NULL;
	case 't':
		return word(r, "true", 4) ? json_true() : NULL;
	case 'f':
		return word(r, "false", 5) ? json_false() : NULL;
	case 'n':
		return word(r, "null", 4) ? json_null() : NULL;
	default:
		return read_number(r);
	}
}

json_t *lfs_json_parse_own(const void *data, size_t len, size_t flags)
{
	if (flags & ~(size_t)LFS_JSON_FLAGS)
		return NULL;
	struct reader r = {.p = data,
			   .end = (const unsigned char *)data + len,
			   .flags = flags};
	skip_space(&r);
	json_t *j = NULL;
	if (r.p < r.end &&
	    (*r.p == '{' || *r.p == '[' || (flags & JSON_DECODE_ANY)))
		j = read_value(&r, 0);
	skip_space(&r);
	if (j && r.p != r.end) {
		json_decref(j);
		j = NULL;
	}
	free(r.tmp);
	return j;
}

json_t *lfs_json_parse(const void *data, size_t len, size_t flags,
		       json_error_t *err)
{
	json_t *j = lfs_json_parse_own(data, len, flags);
	if (j)
		return j;
	/* Not text this reader takes: jansson accepts it or says why. */
	json_error_t mine;
	return json_loadb(data, len, flags, err ? err : &mine);
}
