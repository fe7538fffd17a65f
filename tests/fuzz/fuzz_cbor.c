/*
 * libFuzzer target: the DAG-CBOR decoder, and the JSON mapping behind it.
 *
 * The decoder accepts only canonical DAG-CBOR and the encoder only writes
 * it, so any input that decodes must re-encode to exactly the same bytes.
 * Whatever has a JSON form (integers within int64) must also survive
 * CBOR -> JSON -> CBOR, and the printed document must read back to the same
 * value. The one documented exception: a map whose only key is "/" may read
 * back as a link or bytes (DAG-JSON cannot tell them apart).
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "arena.h"
#include "buf.h"
#include "cbor.h"
#include "dagjson.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A map {"/": ...}: its JSON form may read back as something else. */
static bool has_slash_map(const struct lfs_cbor *v)
{
	switch (v->type) {
	case LFS_CBOR_ARRAY:
		for (size_t i = 0; i < v->u.array.count; i++)
			if (has_slash_map(v->u.array.items[i]))
				return true;
		return false;
	case LFS_CBOR_MAP:
		if (v->u.map.count == 1 && v->u.map.pairs[0].key_len == 1 &&
		    v->u.map.pairs[0].key[0] == '/')
			return true;
		for (size_t i = 0; i < v->u.map.count; i++)
			if (has_slash_map(v->u.map.pairs[i].value))
				return true;
		return false;
	default:
		return false;
	}
}

/* jansson cannot read a key holding NUL back in. */
static bool has_nul_key(const struct lfs_cbor *v)
{
	switch (v->type) {
	case LFS_CBOR_ARRAY:
		for (size_t i = 0; i < v->u.array.count; i++)
			if (has_nul_key(v->u.array.items[i]))
				return true;
		return false;
	case LFS_CBOR_MAP:
		for (size_t i = 0; i < v->u.map.count; i++) {
			const struct lfs_cbor_pair *p = &v->u.map.pairs[i];
			if (memchr(p->key, 0, p->key_len) ||
			    has_nul_key(p->value))
				return true;
		}
		return false;
	default:
		return false;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct lfs_arena a;
	struct lfs_buf b, b2, text;
	struct lfs_cbor *v, *v2;
	json_t *j = NULL, *j2 = NULL;

	lfs_arena_init(&a, (size_t)64 << 20);
	lfs_buf_init(&b, 0);
	lfs_buf_init(&b2, 0);
	lfs_buf_init(&text, 0);

	int rc = lfs_cbor_decode(&v, &a, data, size);
	if (rc) {
		CHECK(rc == -EBADMSG || rc == -EPROTONOSUPPORT ||
		      rc == -ENOMEM);
		goto out;
	}

	/* Canonical in, canonical out: the same bytes. */
	CHECK(lfs_cbor_encode(&b, v) == 0);
	CHECK(b.len == size && memcmp(b.data, data, size) == 0);

	/* CBOR -> JSON -> CBOR. */
	rc = lfs_dagjson_from_cbor(&j, v);
	if (rc) {
		CHECK(rc == -ERANGE); /* an integer outside int64 */
		goto out;
	}
	CHECK(lfs_dagjson_to_cbor(&v2, &a, j) == 0);
	CHECK(lfs_cbor_encode(&b2, v2) == 0);
	bool ambiguous = has_slash_map(v);
	if (!ambiguous)
		CHECK(b2.len == size && memcmp(b2.data, data, size) == 0);

	/* The printed document reads back to the same value and bytes. */
	CHECK(lfs_dagjson_dump(&text, j) == 0);
	CHECK(text.len > 0 && text.data[text.len - 1] == '\n');
	json_error_t e;
	j2 = json_loadb((const char *)text.data, text.len,
			JSON_DECODE_ANY | JSON_ALLOW_NUL, &e);
	if (!j2) {
		CHECK(has_nul_key(v));
		goto out;
	}
	CHECK(json_equal(j, j2));
	CHECK(lfs_dagjson_to_cbor(&v2, &a, j2) == 0);
	lfs_buf_reset(&b);
	CHECK(lfs_cbor_encode(&b, v2) == 0);
	CHECK(b.len == b2.len && memcmp(b.data, b2.data, b.len) == 0);

out:
	json_decref(j2);
	json_decref(j);
	lfs_buf_release(&text);
	lfs_buf_release(&b2);
	lfs_buf_release(&b);
	lfs_arena_release(&a);
	return 0;
}
