/*
 * cbor: the DAG-CBOR data model, a strict decoder and a canonical encoder.
 *
 * DAG-CBOR is the CBOR subset IPLD uses for content-addressed blocks; the
 * same data must always encode to the same bytes, so this module only ever
 * writes, and only ever accepts, the canonical form:
 *
 *   - integers (major 0/1) in the shortest head, range -2^64 .. 2^64-1;
 *   - floats always as 64-bit (0xfb), never NaN or +/-Infinity;
 *   - byte and text strings with definite length; text must be UTF-8;
 *   - arrays and maps with definite length; map keys are text strings,
 *     unique, sorted by encoded length then bytewise ("length-first");
 *   - simple values false, true and null only;
 *   - tag 42 only, around a byte string 0x00 + binary CID (a link).
 *
 * The decoder rejects anything else with -EBADMSG (including trailing bytes
 * and nesting deeper than LFS_CBOR_MAX_DEPTH) and never allocates more than
 * the input can justify: every claimed item count is checked against the
 * bytes that remain before any memory is taken.
 *
 * Values are trees allocated from a struct lfs_arena; they are freed with the
 * arena. Strings are copied into the arena (NUL-terminated for convenience,
 * but may also contain NUL: use ->len).
 */
#ifndef LFS_CBOR_H
#define LFS_CBOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "arena.h"
#include "buf.h"
#include "cid.h"

#define LFS_CBOR_MAX_DEPTH 64

enum lfs_cbor_type {
	LFS_CBOR_NULL,
	LFS_CBOR_BOOL,
	LFS_CBOR_INT,
	LFS_CBOR_FLOAT,
	LFS_CBOR_BYTES,
	LFS_CBOR_STRING,
	LFS_CBOR_ARRAY,
	LFS_CBOR_MAP,
	LFS_CBOR_LINK,
};

struct lfs_cbor_pair;

struct lfs_cbor {
	enum lfs_cbor_type type;
	union {
		bool boolean;
		/* value = negative ? -1 - magnitude : magnitude */
		struct {
			bool negative;
			uint64_t magnitude;
		} integer;
		double real;
		/* LFS_CBOR_BYTES and LFS_CBOR_STRING */
		struct {
			const char *data;
			size_t len;
		} str;
		struct {
			struct lfs_cbor **items;
			size_t count;
		} array;
		struct {
			struct lfs_cbor_pair *pairs;
			size_t count;
		} map;
		struct lfs_cid link;
	} u;
};

struct lfs_cbor_pair {
	const char *key; /* UTF-8, may hold NUL: use key_len */
	size_t key_len;
	struct lfs_cbor *value;
};

/*
 * Decode exactly one value occupying all of p[0..len). On success *out points
 * into the arena. Returns 0, -EBADMSG for input that is not canonical
 * DAG-CBOR, -EPROTONOSUPPORT for a link to an unsupported CID kind, or
 * -ENOMEM when the arena's cap is hit.
 */
int lfs_cbor_decode(struct lfs_cbor **out, struct lfs_arena *a,
		    const uint8_t *p, size_t len);

/*
 * Append the canonical encoding of v to out. Map pairs are sorted in place
 * into canonical order. Returns 0, -EINVAL for a value DAG-CBOR cannot hold
 * (duplicate map key, NaN/Infinity, invalid UTF-8, nesting deeper than
 * LFS_CBOR_MAX_DEPTH), or the buffer's error (-EFBIG, -ENOMEM).
 */
int lfs_cbor_encode(struct lfs_buf *out, struct lfs_cbor *v);

/*
 * Constructors. Each returns NULL only when the arena is exhausted. Strings
 * and keys are copied. Maps and arrays are created with a fixed capacity and
 * filled by lfs_cbor_map_put()/lfs_cbor_array_push(); pairs may be added in
 * any order.
 */
struct lfs_cbor *lfs_cbor_null(struct lfs_arena *a);
struct lfs_cbor *lfs_cbor_bool(struct lfs_arena *a, bool b);
struct lfs_cbor *lfs_cbor_int(struct lfs_arena *a, int64_t i);
struct lfs_cbor *lfs_cbor_uint(struct lfs_arena *a, uint64_t u);
struct lfs_cbor *lfs_cbor_float(struct lfs_arena *a, double d);
struct lfs_cbor *lfs_cbor_bytes(struct lfs_arena *a, const void *p, size_t n);
struct lfs_cbor *lfs_cbor_string(struct lfs_arena *a, const char *s, size_t n);
struct lfs_cbor *lfs_cbor_link(struct lfs_arena *a, const struct lfs_cid *c);
struct lfs_cbor *lfs_cbor_array(struct lfs_arena *a, size_t capacity);
struct lfs_cbor *lfs_cbor_map(struct lfs_arena *a, size_t capacity);

/* Add to a container made with capacity; -ENOSPC when it is full. */
int lfs_cbor_array_push(struct lfs_cbor *array, struct lfs_cbor *item);
int lfs_cbor_map_put(struct lfs_arena *a, struct lfs_cbor *map, const char *key,
		     struct lfs_cbor *value);

/* Look up a key (NUL-terminated) in a map; NULL when absent or not a map. */
struct lfs_cbor *lfs_cbor_map_get(const struct lfs_cbor *map, const char *key);

/*
 * Typed accessors for decoded trees. Each returns 0 or -EBADMSG when v is
 * NULL or of another type (or, for ints, out of int64/uint64 range).
 */
int lfs_cbor_get_int(int64_t *out, const struct lfs_cbor *v);
int lfs_cbor_get_uint(uint64_t *out, const struct lfs_cbor *v);
int lfs_cbor_get_link(struct lfs_cid *out, const struct lfs_cbor *v);

/*
 * Streaming writers, for hot paths that build blocks without a tree. The
 * caller is responsible for canonical order of map keys. Errors are the
 * buffer's sticky error.
 */
int lfs_cbor_put_head(struct lfs_buf *out, unsigned major, uint64_t n);
int lfs_cbor_put_int(struct lfs_buf *out, int64_t i);
int lfs_cbor_put_string(struct lfs_buf *out, const char *s, size_t n);
int lfs_cbor_put_bytes(struct lfs_buf *out, const void *p, size_t n);
int lfs_cbor_put_link(struct lfs_buf *out, const struct lfs_cid *c);
int lfs_cbor_put_float(struct lfs_buf *out, double d);

/* Compare two keys in DAG-CBOR canonical order (length, then bytes). */
int lfs_cbor_key_cmp(const char *a, size_t alen, const char *b, size_t blen);

/* True when s[0..n) is well-formed UTF-8 (no surrogates, no overlongs). */
bool lfs_utf8_valid(const char *s, size_t n);
/* Write code point cp (at most 0x10ffff) as UTF-8 at out: 1 to 4 bytes,
 * how many returned. */
size_t lfs_utf8_put(char out[4], uint32_t cp);

#endif
