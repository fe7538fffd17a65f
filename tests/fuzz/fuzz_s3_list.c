/*
 * libFuzzer target for the S3 ListObjectsV2 page parser
 * (lfs_http_s3_list_page) and the XML text unescaper under it: any bytes
 * give 0 or a documented error, every key handed out is a NUL-terminated
 * string no longer than the input, a token only comes with success, and
 * stopping from the callback stops the parse with that error.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"

#include "fuzz.h"

struct seen {
	size_t len, keys, stop_at;
};

static int on_key(void *ctx, const char *key)
{
	struct seen *s = ctx;
	CHECK(strlen(key) <= s->len);
	return ++s->keys == s->stop_at ? -ECANCELED : 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	for (size_t stop = 0; stop < 2; stop++) {
		struct seen s = {.len = size, .stop_at = stop};
		char *token = NULL;
		int rc = lfs_http_s3_list_page((const char *)data, size, on_key,
					       &s, &token);
		CHECK(rc == 0 || rc == -EBADMSG || rc == -ENOMEM ||
		      rc == -ECANCELED);
		CHECK(rc == -ECANCELED ? stop && s.keys == stop : 1);
		if (rc)
			CHECK(token == NULL);
		if (token)
			CHECK(strlen(token) <= size);
		free(token);
	}
	char *text = NULL;
	int rc = lfs_http_xml_text(&text, (const char *)data, size);
	CHECK(rc == 0 || rc == -EBADMSG || rc == -ENOMEM);
	if (!rc)
		CHECK(strlen(text) <= size * 2);
	free(text);
	return 0;
}
