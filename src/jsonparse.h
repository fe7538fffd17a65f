/*
 * jsonparse: JSON text to a jansson value, faster than jansson's own
 * reader for the documents a save or an import reads.
 *
 * lfs_json_parse gives what json_loadb(data, len, flags, err) gives: the
 * same value (keys in their order, a repeated key's last value in its
 * first place, integers as integers within int64, reals as strtod reads
 * them), the same acceptance, the same error. It reads well-formed text
 * itself, in one pass with no per-byte stream calls; at anything it does
 * not accept (a syntax error, invalid UTF-8, "\u0000" without
 * JSON_ALLOW_NUL or in a key, a lone surrogate, an integer or real out of
 * range, a duplicate key with JSON_REJECT_DUPLICATES, nesting past 512,
 * a flag outside LFS_JSON_FLAGS) it hands the text to jansson, which
 * accepts it or says why not. So only text jansson accepts is ever
 * accepted, and every error is jansson's.
 */
#ifndef LFS_JSONPARSE_H
#define LFS_JSONPARSE_H

#include <stddef.h>

#include <jansson.h>

/* The flags this reader follows itself. */
#define LFS_JSON_FLAGS                                                         \
	(JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL | JSON_DECODE_ANY)

/* A new reference, or NULL with err (may be NULL) saying why. */
json_t *lfs_json_parse(const void *data, size_t len, size_t flags,
		       json_error_t *err);
/* This reader alone: NULL for all it leaves to jansson (for tests). */
json_t *lfs_json_parse_own(const void *data, size_t len, size_t flags);

#endif
