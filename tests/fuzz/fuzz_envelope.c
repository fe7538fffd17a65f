/*
 * libFuzzer target for the envelope.
 *
 * 1. The input as a sealed file, under a fixed key: lfs_envelope_open() and
 *    lfs_envelope_parse() + lfs_envelope_open_chunk() on every chunk must
 *    return only documented errors, agree with each other, stay inside the
 *    input and never leave partial plaintext in the output buffer.
 * 2. The input as a plaintext: seal it (chunk size from the first byte),
 *    open it whole and chunk by chunk and compare; then flip one byte and
 *    cut the file at a point both chosen by the input, and require failure.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "buf.h"
#include "cid.h"
#include "envelope.h"

#include "fuzz.h"

static const uint8_t key[LFS_KEY_BYTES] = {
	0x6c, 0x65, 0x64, 0x67, 0x65, 0x72, 0x66, 0x73, 0x2d, 0x66, 0x75,
	0x7a, 0x7a, 0x2d, 0x6b, 0x65, 0x79, 0x00, 0x01, 0x02, 0x03, 0x04,
	0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e};

static const char keep[] = "keep";
#define KEEP_LEN (sizeof(keep) - 1)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void open_hostile(const uint8_t *data, size_t size)
{
	struct lfs_buf out;
	lfs_buf_init(&out, (size_t)1 << 20);
	CHECK(lfs_buf_append(&out, keep, KEEP_LEN) == 0);
	int rc = lfs_envelope_open(&out, key, data, size, NULL);
	CHECK(rc == 0 || rc == -EBADMSG || rc == -EPROTONOSUPPORT ||
	      rc == -EFBIG);
	if (rc != 0)
		CHECK(out.len == KEEP_LEN &&
		      memcmp(out.data, keep, KEEP_LEN) == 0);

	struct lfs_envelope_info info;
	int prc = lfs_envelope_parse(&info, data, size);
	CHECK(prc == 0 || prc == -EBADMSG || prc == -EPROTONOSUPPORT);
	if (prc != 0) {
		CHECK(rc == prc);
		lfs_buf_release(&out);
		return;
	}
	CHECK(lfs_envelope_sealed_size(info.plain_len, info.chunk_log2) ==
	      size);
	CHECK(info.nchunks >= 1 && info.sealed_len == size);
	if (rc == 0)
		CHECK(out.len == KEEP_LEN + info.plain_len);

	int all = 0;
	for (size_t i = 0; i < info.nchunks; i++) {
		size_t off, len;
		CHECK(lfs_envelope_chunk_span(&off, &len, &info, i) == 0);
		CHECK(off <= size && len <= size - off);
		size_t before = out.len;
		int crc = lfs_envelope_open_chunk(&out, key, &info, i,
						  data + off, len);
		CHECK(crc == 0 || crc == -EBADMSG);
		if (crc != 0) {
			CHECK(out.len == before);
			all = crc;
		}
	}
	size_t off, len;
	CHECK(lfs_envelope_chunk_span(&off, &len, &info, info.nchunks) ==
	      -EINVAL);
	/* whole-file open succeeds exactly when every chunk does */
	CHECK((rc == 0) == (all == 0));
	lfs_buf_release(&out);
}

static void roundtrip(const uint8_t *data, size_t size)
{
	unsigned log2 = LFS_ENVELOPE_MIN_CHUNK_LOG2;
	if (size && (data[0] & 0x80))
		log2 += data[0] % (LFS_ENVELOPE_MAX_CHUNK_LOG2 -
				   LFS_ENVELOPE_MIN_CHUNK_LOG2 + 1);

	struct lfs_buf s, out;
	struct lfs_cid cid;
	lfs_buf_init(&s, 0);
	CHECK(lfs_envelope_seal(&s, &cid, key, data, size, log2) == 0);
	CHECK(s.len == lfs_envelope_sealed_size(size, log2));
	CHECK(lfs_cid_matches(&cid, s.data, s.len));

	lfs_buf_init(&out, 0);
	CHECK(lfs_envelope_open(&out, key, s.data, s.len, &cid) == 0);
	CHECK(out.len == size);
	CHECK(size == 0 || memcmp(out.data, data, size) == 0);

	struct lfs_envelope_info info;
	CHECK(lfs_envelope_parse(&info, s.data, s.len) == 0);
	CHECK(info.plain_len == size);
	lfs_buf_reset(&out);
	for (size_t i = 0; i < info.nchunks; i++) {
		size_t off, len;
		CHECK(lfs_envelope_chunk_span(&off, &len, &info, i) == 0);
		CHECK(lfs_envelope_open_chunk(&out, key, &info, i, s.data + off,
					      len) == 0);
	}
	CHECK(out.len == size);
	CHECK(size == 0 || memcmp(out.data, data, size) == 0);

	/* One flipped byte, anywhere, with a value and place from the input. */
	uint32_t h = 2166136261u;
	for (size_t i = 0; i < size; i++)
		h = (h ^ data[i]) * 16777619u;
	size_t pos = h % s.len;
	uint8_t flip = (uint8_t)((h >> 24) | 1);
	s.data[pos] ^= flip;
	lfs_buf_reset(&out);
	int rc = lfs_envelope_open(&out, key, s.data, s.len, NULL);
	CHECK(rc == (pos == 4 ? -EPROTONOSUPPORT : -EBADMSG));
	CHECK(out.len == 0);
	CHECK(lfs_envelope_open(&out, key, s.data, s.len, &cid) == -EBADMSG);
	s.data[pos] ^= flip;

	/* Any shorter prefix fails. */
	size_t cut = (h >> 8) % s.len;
	CHECK(lfs_envelope_open(&out, key, s.data, cut, NULL) == -EBADMSG);
	CHECK(out.len == 0);

	lfs_buf_release(&out);
	lfs_buf_release(&s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int ready;
	if (!ready) {
		if (sodium_init() < 0)
			abort();
		ready = 1;
	}
	open_hostile(data, size);
	roundtrip(data, size);
	return 0;
}
