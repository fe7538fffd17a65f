/*
 * libFuzzer target: JSON documents through DAG-CBOR and the printer.
 *
 * Any JSON that jansson reads and that DAG-CBOR can hold (nesting within
 * LFS_CBOR_MAX_DEPTH) must survive JSON -> CBOR -> bytes -> CBOR -> JSON as
 * an equal value that prints identically; the printed text must read back
 * to an equal value; and where no reals are involved our printer must agree
 * with jansson's JSON_INDENT(2) | JSON_SORT_KEYS byte for byte.
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

static bool has_real(const json_t *j)
{
	const char *k;
	json_t *v;
	size_t i;
	switch (json_typeof(j)) {
	case JSON_REAL:
		return true;
	case JSON_ARRAY:
		json_array_foreach(j, i, v)
		{
			if (has_real(v))
				return true;
		}
		return false;
	case JSON_OBJECT:
		json_object_foreach((json_t *)j, k, v)
		{
			if (has_real(v))
				return true;
		}
		return false;
	default:
		return false;
	}
}

static int buf_cb(const char *p, size_t n, void *data)
{
	return lfs_buf_append(data, p, n) ? -1 : 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct lfs_arena a;
	struct lfs_buf b, b2, text, text2, ref;
	struct lfs_cbor *v, *d;
	json_t *back = NULL, *reread = NULL;
	json_error_t e;

	json_t *j = json_loadb((const char *)data, size,
			       JSON_DECODE_ANY | JSON_ALLOW_NUL, &e);
	if (!j)
		return 0;
	lfs_arena_init(&a, (size_t)64 << 20);
	lfs_buf_init(&b, 0);
	lfs_buf_init(&b2, 0);
	lfs_buf_init(&text, 0);
	lfs_buf_init(&text2, 0);
	lfs_buf_init(&ref, 0);

	int rc = lfs_dagjson_to_cbor(&v, &a, j);
	if (rc) {
		CHECK(rc == -EINVAL); /* nested too deep */
		goto out;
	}
	CHECK(lfs_cbor_encode(&b, v) == 0);
	CHECK(lfs_cbor_decode(&d, &a, b.data, b.len) == 0);
	CHECK(lfs_cbor_encode(&b2, d) == 0);
	CHECK(b.len == b2.len && memcmp(b.data, b2.data, b.len) == 0);
	CHECK(lfs_dagjson_from_cbor(&back, d) == 0);
	CHECK(json_equal(j, back));

	/* What the user sees is the same before and after the trip. */
	CHECK(lfs_dagjson_dump(&text, j) == 0);
	CHECK(lfs_dagjson_dump(&text2, back) == 0);
	CHECK(text.len == text2.len &&
	      memcmp(text.data, text2.data, text.len) == 0);

	/* An object printed with an "_id" added (how a commit's own
	 * documents are noted, fs_render) is the same text as the object
	 * that holds it. */
	if (json_is_object(j)) {
		json_t *id = json_string("some/id");
		json_t *with = json_copy(back);
		CHECK(id && with && !json_object_set(with, "_id", id));
		lfs_buf_reset(&text2);
		CHECK(lfs_dagjson_dump(&text2, with) == 0);
		lfs_buf_reset(&ref);
		CHECK(lfs_dagjson_dump_with(&ref, j, "_id", id) == 0);
		CHECK(ref.len == text2.len &&
		      memcmp(ref.data, text2.data, ref.len) == 0);
		lfs_buf_reset(&ref);
		json_decref(with);
		json_decref(id);
	}

	/* ...and reads back as the same value. */
	reread = json_loadb((const char *)text.data, text.len,
			    JSON_DECODE_ANY | JSON_ALLOW_NUL, &e);
	CHECK(reread != NULL);
	CHECK(json_equal(j, reread));

	/* Without reals, exactly what jansson itself prints. */
	if (!has_real(j)) {
		CHECK(json_dump_callback(j, buf_cb, &ref,
					 JSON_INDENT(2) | JSON_SORT_KEYS |
						 JSON_ENCODE_ANY) == 0);
		lfs_buf_append_byte(&ref, '\n');
		CHECK(ref.len == text.len &&
		      memcmp(ref.data, text.data, ref.len) == 0);
	}

out:
	json_decref(reread);
	json_decref(back);
	json_decref(j);
	lfs_buf_release(&ref);
	lfs_buf_release(&text2);
	lfs_buf_release(&text);
	lfs_buf_release(&b2);
	lfs_buf_release(&b);
	lfs_arena_release(&a);
	return 0;
}
