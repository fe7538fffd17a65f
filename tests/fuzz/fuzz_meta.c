/*
 * libFuzzer target for the metadata endpoint's announcements (meta.h).
 *
 * The input as a message from Redis: lfs_meta_parse() must return 0 or
 * -EBADMSG, fill at most the room given, and only with raw CIDs and
 * names of the allowed bytes; what it accepts must format back to the
 * same bytes (lfs_meta_format), so the format has one spelling.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cid.h"
#include "meta.h"

#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct lfs_meta_hint h[LFS_META_MSG_CIDS + 1];
	size_t max = size ? data[0] % (LFS_META_MSG_CIDS + 2) : 0;
	size_t n = 99;
	int rc = lfs_meta_parse(h, max, &n, (const char *)data, size);
	CHECK(rc == 0 || rc == -EBADMSG);
	CHECK(n <= max && n <= LFS_META_MSG_CIDS);
	if (rc)
		return 0;
	CHECK(n >= 1);
	struct lfs_cid cids[LFS_META_MSG_CIDS];
	for (size_t i = 0; i < n; i++) {
		CHECK(h[i].car.codec == LFS_CODEC_RAW);
		CHECK(!strcmp(h[i].enc, h[0].enc));
		CHECK(strlen(h[i].enc) <= LFS_META_ENC_MAX);
		cids[i] = h[i].car;
	}
	char buf[LFS_META_MSG_MAX + 1];
	int len = lfs_meta_format(buf, h[0].enc, cids, n);
	/* CIDs may be spelled otherwise (another base): compare parsed. */
	CHECK(len > 0);
	struct lfs_meta_hint again[LFS_META_MSG_CIDS];
	size_t m = 0;
	CHECK(!lfs_meta_parse(again, LFS_META_MSG_CIDS, &m, buf, (size_t)len));
	CHECK(m == n);
	for (size_t i = 0; i < n; i++)
		CHECK(lfs_cid_equal(&again[i].car, &cids[i]) &&
		      !strcmp(again[i].enc, h[i].enc));
	return 0;
}
