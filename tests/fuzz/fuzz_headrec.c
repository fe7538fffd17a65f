/*
 * libFuzzer target for head records (store layout in docs/FORMATS.md),
 * the small JSON files a sync reads from the remote store's head/ folder:
 *   {"car": {"/": "<cid>"}, "parents": [{"/": "<cid>"}...]}
 *
 * lfs_sync_record_ok() is asked about the input twice: for a fixed CAR,
 * and for whatever CID string the record names. It must never crash,
 * accept a record only when the name it carries parses to that CAR and
 * prints back as the same string, and accept the record it would write
 * itself. The input is also parsed as a CID string alone, as the names in
 * a store's listing are: what parses prints back the same.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cid.h"
#include "sync.h"

#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct lfs_cid fixed;
	lfs_cid_of(&fixed, LFS_CODEC_RAW, "car", 3);
	(void)lfs_sync_record_ok(data, size, &fixed);

	json_error_t err;
	json_t *j = json_loadb((const char *)data, size, 0, &err);
	const char *named = json_string_value(
		json_object_get(json_object_get(j, "car"), "/"));
	struct lfs_cid c;
	if (named && lfs_cid_from_string(&c, named) == 0) {
		char back[LFS_CID_STRLEN + 1];
		lfs_cid_to_string(back, &c);
		/* One spelling per CID: what parses prints back the same. */
		CHECK(!strcmp(back, named));
		bool ok = lfs_sync_record_ok(data, size, &c);
		json_t *parents = json_object_get(j, "parents");
		CHECK(ok == (!parents || json_is_array(parents)));
		/* The record a writer makes for c is accepted. */
		json_t *rec = json_pack("{s:{s:s},s:[]}", "car", "/", back,
					"parents");
		char *mine =
			rec ? json_dumps(rec, JSON_COMPACT | JSON_SORT_KEYS)
			    : NULL;
		json_decref(rec);
		CHECK(mine);
		CHECK(lfs_sync_record_ok((const uint8_t *)mine, strlen(mine),
					 &c));
		free(mine);
	}
	json_decref(j);

	/* The input as the last part of an object name in a listing. */
	char *name = strndup((const char *)data, size);
	CHECK(name);
	if (lfs_cid_from_string(&c, name) == 0) {
		char back[LFS_CID_STRLEN + 1];
		lfs_cid_to_string(back, &c);
		CHECK(!strcmp(back, name));
	}
	free(name);
	return 0;
}
