/*
 * dagjson: documents as JSON (jansson) <-> the DAG-CBOR data model.
 *
 * Users write documents as JSON; blocks hold them as DAG-CBOR. The mapping
 * follows DAG-JSON's conventions so that any block can be shown as JSON and
 * read back to the same bytes:
 *
 *   JSON integer  <-> CBOR integer (int64 range; larger CBOR integers have no
 *                     JSON form here and give -ERANGE)
 *   JSON real     <-> CBOR 64-bit float (1.0 stays a float, 1 an integer)
 *   {"/": "<cid>"}              <-> link (only that exact shape)
 *   {"/": {"bytes": "<b64>"}}   <-> byte string (standard base64, no padding)
 *   strings, arrays, objects, true/false/null map one to one.
 *
 * JSON -> CBOR -> JSON always gives back an equal value. CBOR -> JSON -> CBOR
 * gives back the same bytes except for a CBOR map whose only key is "/" and
 * whose value has one of the two shapes above: DAG-JSON cannot tell such a
 * map from a link or bytes, and it reads back as one.
 *
 * Errors: -EINVAL for JSON DAG-CBOR cannot hold (a non-finite real, invalid
 * UTF-8, nesting deeper than LFS_CBOR_MAX_DEPTH), -ERANGE for a CBOR integer
 * outside int64, -ENOMEM.
 */
#ifndef LFS_DAGJSON_H
#define LFS_DAGJSON_H

#include <jansson.h>

#include "arena.h"
#include "cbor.h"

/*
 * Convert a JSON value into a CBOR tree allocated from a. Strings are not
 * checked for UTF-8 here: lfs_cbor_encode refuses the tree if one is not.
 */
int lfs_dagjson_to_cbor(struct lfs_cbor **out, struct lfs_arena *a,
			const json_t *json);

/* Convert a CBOR tree into a new JSON value (caller owns the reference). */
int lfs_dagjson_from_cbor(json_t **out, const struct lfs_cbor *v);

/*
 * Render JSON the way documents are shown, and append it to out:
 *
 *   - two-space indent, one member or item per line, "key": value, an empty
 *     object as {} and an empty array as [], a trailing newline;
 *   - object keys sorted bytewise (a shorter key before its extensions);
 *   - strings as given (UTF-8 kept), with \" \\ \b \f \n \r \t escaped
 *     and other control characters as \u00XX;
 *   - integers in decimal; reals in the fewest digits that read back to the
 *     same double, always with a '.' or an exponent so they read back as
 *     reals, and in exponent form only below 1e-4 or from 1e16 up ("1.0",
 *     "0.1", "100.0", "0.0001", "1e-05", "1e+16", "1e+300").
 *
 * Returns 0, -EINVAL for a non-finite real or nesting deeper than 2048
 * (which also stops a cyclic value), or the buffer's error; on error out is
 * left as it was unless the buffer's own error is set.
 */
int lfs_dagjson_dump(struct lfs_buf *out, const json_t *json);
/* The same, for object obj as if it also held key: value (in place of a
 * key it holds of that name). */
int lfs_dagjson_dump_with(struct lfs_buf *out, const json_t *obj,
			  const char *key, const json_t *value);

/* Base64 (standard alphabet, no padding) used by the bytes form. */
size_t lfs_base64_encoded_len(size_t n);
void lfs_base64_encode(char *out, const uint8_t *p, size_t n);
/* Returns the decoded length or -EINVAL; out needs room for n * 3 / 4. */
int lfs_base64_decode(uint8_t *out, const char *s, size_t n);

#endif
