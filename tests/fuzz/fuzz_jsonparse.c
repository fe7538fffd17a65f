/*
 * libFuzzer target: lfs_json_parse against jansson's own reader.
 *
 * The first byte picks the flags (from those the project reads with);
 * the rest is the text. Both readers must agree: the same value (keys in
 * order, reals to the bit) or both NULL with the same error.
 */
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include <jansson.h>

#include "fuzz.h"
#include "jsonparse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool same(const json_t *a, const json_t *b)
{
	if (json_typeof(a) != json_typeof(b))
		return false;
	if (json_is_object(a)) {
		if (json_object_size(a) != json_object_size(b))
			return false;
		void *ia = json_object_iter((json_t *)a);
		void *ib = json_object_iter((json_t *)b);
		for (; ia && ib; ia = json_object_iter_next((json_t *)a, ia),
				 ib = json_object_iter_next((json_t *)b, ib)) {
			size_t la = json_object_iter_key_len(ia);
			if (la != json_object_iter_key_len(ib) ||
			    memcmp(json_object_iter_key(ia),
				   json_object_iter_key(ib), la) ||
			    !same(json_object_iter_value(ia),
				  json_object_iter_value(ib)))
				return false;
		}
		return !ia && !ib;
	}
	if (json_is_array(a)) {
		if (json_array_size(a) != json_array_size(b))
			return false;
		for (size_t i = 0; i < json_array_size(a); i++)
			if (!same(json_array_get(a, i), json_array_get(b, i)))
				return false;
		return true;
	}
	if (json_is_real(a)) {
		double x = json_real_value(a), y = json_real_value(b);
		return memcmp(&x, &y, sizeof(x)) == 0;
	}
	return json_equal((json_t *)a, (json_t *)b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const size_t sets[] = {
		JSON_REJECT_DUPLICATES,
		JSON_ALLOW_NUL,
		JSON_DECODE_ANY | JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL,
		0,
	};
	if (size < 1)
		return 0;
	size_t flags = sets[data[0] % 4];
	const char *text = (const char *)data + 1;
	size_t len = size - 1;
	json_error_t e1, e2;
	json_t *mine = lfs_json_parse(text, len, flags, &e1);
	json_t *ref = json_loadb(text, len, flags, &e2);
	CHECK((mine == NULL) == (ref == NULL));
	if (ref) {
		CHECK(same(mine, ref));
	} else {
		CHECK(strcmp(e1.text, e2.text) == 0);
		CHECK(e1.position == e2.position);
	}
	json_decref(mine);
	json_decref(ref);
	return 0;
}
