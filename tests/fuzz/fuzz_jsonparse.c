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
#include "../json_same.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

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
		CHECK(lfs_json_same(mine, ref));
	} else {
		CHECK(strcmp(e1.text, e2.text) == 0);
		CHECK(e1.position == e2.position);
	}
	json_decref(mine);
	json_decref(ref);
	return 0;
}
