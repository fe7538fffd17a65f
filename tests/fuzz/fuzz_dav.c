/*
 * libFuzzer target for the WebDAV PROPFIND multistatus scanner
 * (lfs_http_dav_multistatus): any bytes give 0 or -EBADMSG (or the
 * callback's error, which stops the scan), and every href handed out is
 * printable ASCII without spaces, shorter than LFS_HTTP_HREF_MAX.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"

#include "fuzz.h"

struct seen {
	size_t n, stop_at;
};

static int on_href(void *ctx, const char *href, bool collection)
{
	struct seen *s = ctx;
	size_t n = strlen(href);
	(void)collection;
	CHECK(n < LFS_HTTP_HREF_MAX);
	for (size_t i = 0; i < n; i++)
		CHECK(href[i] > ' ' && href[i] < 0x7f);
	return ++s->n == s->stop_at ? -ECANCELED : 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	for (size_t stop = 0; stop < 2; stop++) {
		struct seen s = {.stop_at = stop};
		int rc = lfs_http_dav_multistatus((const char *)data, size,
						  on_href, &s);
		CHECK(rc == 0 || rc == -EBADMSG || rc == -ECANCELED);
		CHECK(rc != -ECANCELED || (stop && s.n == stop));
	}
	return 0;
}
