/*
 * Unit tests for envelope: round trips, the byte layout (against an
 * independent encoder written from docs/ENVELOPE.md), and every attack the
 * format claims to stop: tampering, truncation, dropping, reordering,
 * splicing and appending chunks, header edits, wrong keys and names.
 */
#include <check.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "buf.h"
#include "cid.h"
#include "envelope.h"
#include "check_util.h"

#define HDR   LFS_ENVELOPE_HEADER_BYTES
#define TAG   LFS_ENVELOPE_TAG_BYTES
#define SMALL 10 /* chunk_log2 for the byte-by-byte tests: 1 KiB chunks */

static uint8_t key[LFS_KEY_BYTES];
static uint8_t key2[LFS_KEY_BYTES];

static const char keep[] = "keep me";
#define KEEP_LEN (sizeof(keep) - 1)

static void setup(void)
{
	for (int i = 0; i < LFS_KEY_BYTES; i++) {
		key[i] = (uint8_t)(i * 7 + 1);
		key2[i] = (uint8_t)(i * 7 + 2);
	}
}

static uint8_t *pattern(size_t len, uint32_t seed)
{
	uint8_t *p = malloc(len ? len : 1);
	ck_assert_ptr_nonnull(p);
	uint32_t x = seed * 2654435761u + 1;
	for (size_t i = 0; i < len; i++) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		p[i] = (uint8_t)x;
	}
	return p;
}

/* Seal into a fresh buffer; the caller releases it. */
static void seal(struct lfs_buf *b, struct lfs_cid *cid, const uint8_t *k,
		 const uint8_t *plain, size_t len, unsigned log2)
{
	lfs_buf_init(b, 0);
	ck_assert_int_eq(lfs_envelope_seal(b, cid, k, plain, len, log2), 0);
	ck_assert_uint_eq(b->len, lfs_envelope_sealed_size(len, log2));
}

/*
 * Open into a buffer that already holds `keep`; return the error and check
 * that a failure left the buffer exactly as it was.
 */
static int open_keep(const uint8_t *k, const uint8_t *sealed, size_t len,
		     const struct lfs_cid *expect)
{
	struct lfs_buf out;
	lfs_buf_init(&out, 0);
	ck_assert_int_eq(lfs_buf_append(&out, keep, KEEP_LEN), 0);
	int rc = lfs_envelope_open(&out, k, sealed, len, expect);
	if (rc) {
		ck_assert_uint_eq(out.len, KEEP_LEN);
		ck_assert_mem_eq(out.data, keep, KEEP_LEN);
		ck_assert_int_eq(out.err, 0);
	}
	lfs_buf_release(&out);
	return rc;
}

static void check_roundtrip(size_t len, unsigned log2, uint32_t seed)
{
	uint8_t *plain = pattern(len, seed);
	struct lfs_buf s, out;
	struct lfs_cid cid, want;
	seal(&s, &cid, key, plain, len, log2);

	lfs_cid_of(&want, LFS_CODEC_RAW, s.data, s.len);
	ck_assert(lfs_cid_equal(&cid, &want));
	ck_assert_uint_eq(cid.codec, LFS_CODEC_RAW);

	lfs_buf_init(&out, 0);
	ck_assert_int_eq(lfs_buf_append(&out, keep, KEEP_LEN), 0);
	ck_assert_int_eq(lfs_envelope_open(&out, key, s.data, s.len, &cid), 0);
	ck_assert_uint_eq(out.len, KEEP_LEN + len);
	ck_assert_mem_eq(out.data, keep, KEEP_LEN);
	if (len)
		ck_assert_mem_eq(out.data + KEEP_LEN, plain, len);

	struct lfs_envelope_info info;
	ck_assert_int_eq(lfs_envelope_parse(&info, s.data, s.len), 0);
	ck_assert_uint_eq(info.plain_len, len);
	ck_assert_uint_eq(info.chunk_log2,
			  log2 ? log2 : LFS_ENVELOPE_DEFAULT_CHUNK_LOG2);
	size_t c = info.chunk_size;
	ck_assert_uint_eq(info.nchunks, len ? (len + c - 1) / c : 1);

	lfs_buf_release(&out);
	lfs_buf_release(&s);
	free(plain);
}

START_TEST(test_roundtrip)
{
	unsigned logs[] = {0, SMALL};
	for (size_t l = 0; l < 2; l++) {
		size_t c = (size_t)1
			   << (logs[l] ? logs[l]
				       : LFS_ENVELOPE_DEFAULT_CHUNK_LOG2);
		size_t lens[] = {0,       1,
				 c - 1,   c,
				 c + 1,   2 * c - 1,
				 3 * c,   3 * c + 7,
				 1 << 20, (1 << 20) + 12345};
		for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++)
			check_roundtrip(lens[i], logs[l], (uint32_t)(i + 1));
	}
	check_roundtrip(100, LFS_ENVELOPE_MIN_CHUNK_LOG2, 5);
	check_roundtrip(((size_t)1 << LFS_ENVELOPE_MAX_CHUNK_LOG2) + 1,
			LFS_ENVELOPE_MAX_CHUNK_LOG2, 6);
}
END_TEST

START_TEST(test_roundtrip_random)
{
	size_t len = (1 << 20) + randombytes_uniform(1 << 16);
	uint8_t *plain = malloc(len);
	ck_assert_ptr_nonnull(plain);
	randombytes_buf(plain, len);
	unsigned logs[] = {0, SMALL, 13};
	for (size_t l = 0; l < 3; l++) {
		struct lfs_buf s, out;
		struct lfs_cid cid;
		seal(&s, &cid, key, plain, len, logs[l]);
		lfs_buf_init(&out, 0);
		ck_assert_int_eq(
			lfs_envelope_open(&out, key, s.data, s.len, &cid), 0);
		ck_assert_uint_eq(out.len, len);
		ck_assert(memcmp(out.data, plain, len) == 0);
		lfs_buf_release(&out);
		lfs_buf_release(&s);
	}
	free(plain);
}
END_TEST

/* An encoder written from docs/ENVELOPE.md alone, with a chosen prefix. */
static uint8_t *reference_seal(size_t *out_len, const uint8_t *k,
			       const uint8_t prefix[16], const uint8_t *plain,
			       size_t len, unsigned log2)
{
	size_t c = (size_t)1 << log2;
	size_t n = len == 0 ? 1 : (len + c - 1) / c;
	size_t total = 24 + len + 16 * n;
	uint8_t *f = malloc(total);
	ck_assert_ptr_nonnull(f);
	memcpy(f, "LFSE", 4);
	f[4] = 1;
	f[5] = (uint8_t)log2;
	f[6] = f[7] = 0;
	memcpy(f + 8, prefix, 16);
	size_t pos = 24;
	for (size_t i = 0; i < n; i++) {
		size_t m = i == n - 1 ? len - i * c : c;
		uint8_t nonce[24];
		memcpy(nonce, prefix, 16);
		uint64_t ctr = i;
		if (i == n - 1)
			ctr |= (uint64_t)1 << 63;
		for (int b = 0; b < 8; b++)
			nonce[16 + b] = (uint8_t)(ctr >> (8 * (7 - b)));
		unsigned long long clen;
		crypto_aead_xchacha20poly1305_ietf_encrypt(f + pos, &clen,
							   plain + i * c, m, f,
							   24, NULL, nonce, k);
		ck_assert_uint_eq(clen, m + 16);
		pos += m + 16;
	}
	ck_assert_uint_eq(pos, total);
	*out_len = total;
	return f;
}

START_TEST(test_format_matches_spec)
{
	size_t lens[] = {0, 1, 1023, 1024, 1025, 3072, 3100};
	for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		uint8_t *plain = pattern(lens[i], 77);
		struct lfs_buf s;
		seal(&s, NULL, key, plain, lens[i], SMALL);
		ck_assert_mem_eq(s.data, "LFSE\x01\x0a\x00\x00", 8);

		size_t rlen;
		uint8_t *ref = reference_seal(&rlen, key, s.data + 8, plain,
					      lens[i], SMALL);
		ck_assert_uint_eq(rlen, s.len);
		ck_assert(memcmp(ref, s.data, rlen) == 0);

		/* The decoder accepts the independent encoder's output. */
		uint8_t prefix[16];
		randombytes_buf(prefix, sizeof(prefix));
		free(ref);
		ref = reference_seal(&rlen, key, prefix, plain, lens[i], SMALL);
		struct lfs_buf out;
		lfs_buf_init(&out, 0);
		ck_assert_int_eq(lfs_envelope_open(&out, key, ref, rlen, NULL),
				 0);
		ck_assert_uint_eq(out.len, lens[i]);
		if (lens[i])
			ck_assert_mem_eq(out.data, plain, lens[i]);
		lfs_buf_release(&out);
		free(ref);
		lfs_buf_release(&s);
		free(plain);
	}
}
END_TEST

START_TEST(test_fresh_prefix)
{
	struct lfs_buf a, b;
	struct lfs_cid ca, cb;
	seal(&a, &ca, key, (const uint8_t *)"same", 4, 0);
	seal(&b, &cb, key, (const uint8_t *)"same", 4, 0);
	ck_assert(memcmp(a.data + 8, b.data + 8, 16) != 0);
	ck_assert(!lfs_cid_equal(&ca, &cb));
	lfs_buf_release(&a);
	lfs_buf_release(&b);
}
END_TEST

START_TEST(test_appends)
{
	struct lfs_buf s;
	struct lfs_cid cid;
	lfs_buf_init(&s, 0);
	ck_assert_int_eq(lfs_buf_append(&s, keep, KEEP_LEN), 0);
	ck_assert_int_eq(
		lfs_envelope_seal(&s, &cid, key, (const uint8_t *)"x", 1, 0),
		0);
	ck_assert_uint_eq(s.len, KEEP_LEN + lfs_envelope_sealed_size(1, 0));
	ck_assert_mem_eq(s.data, keep, KEEP_LEN);
	ck_assert(lfs_cid_matches(&cid, s.data + KEEP_LEN, s.len - KEEP_LEN));
	ck_assert_int_eq(
		open_keep(key, s.data + KEEP_LEN, s.len - KEEP_LEN, &cid), 0);
	lfs_buf_release(&s);
}
END_TEST

START_TEST(test_wrong_key)
{
	size_t lens[] = {0, 5, 3000};
	for (size_t i = 0; i < 3; i++) {
		uint8_t *plain = pattern(lens[i], 3);
		struct lfs_buf s;
		struct lfs_cid cid;
		seal(&s, &cid, key, plain, lens[i], SMALL);
		ck_assert_int_eq(open_keep(key2, s.data, s.len, NULL),
				 -EBADMSG);
		/* The name checks out without the key; the key still fails. */
		ck_assert_int_eq(open_keep(key2, s.data, s.len, &cid),
				 -EBADMSG);
		lfs_buf_release(&s);
		free(plain);
	}
}
END_TEST

START_TEST(test_flip_every_byte)
{
	size_t len = 2 * 1024 + 100; /* two full chunks and a short one */
	uint8_t *plain = pattern(len, 9);
	struct lfs_buf s;
	struct lfs_cid cid;
	seal(&s, &cid, key, plain, len, SMALL);
	uint8_t *f = malloc(s.len);
	ck_assert_ptr_nonnull(f);
	uint8_t masks[] = {0x01, 0x80, 0xff};
	for (size_t pos = 0; pos < s.len; pos++) {
		for (size_t m = 0; m < sizeof(masks); m++) {
			memcpy(f, s.data, s.len);
			f[pos] ^= masks[m];
			int rc = open_keep(key, f, s.len, NULL);
			if (pos == 4)
				ck_assert_int_eq(rc, -EPROTONOSUPPORT);
			else
				ck_assert_msg(rc == -EBADMSG,
					      "flip 0x%02x at %zu: %d",
					      masks[m], pos, rc);
			ck_assert_int_eq(open_keep(key, f, s.len, &cid),
					 -EBADMSG);
		}
	}
	free(f);
	lfs_buf_release(&s);
	free(plain);
}
END_TEST

START_TEST(test_truncate_every_length)
{
	size_t lens[] = {0, 1, 1024, 3 * 1024, 3 * 1024 + 5};
	for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		uint8_t *plain = pattern(lens[i], 11);
		struct lfs_buf s;
		seal(&s, NULL, key, plain, lens[i], SMALL);
		for (size_t l = 0; l < s.len; l++) {
			/* a copy of exactly l bytes, so ASan sees overreads */
			uint8_t *t = malloc(l ? l : 1);
			ck_assert_ptr_nonnull(t);
			memcpy(t, s.data, l);
			ck_assert_msg(open_keep(key, t, l, NULL) == -EBADMSG,
				      "len %zu truncated to %zu", lens[i], l);
			free(t);
		}
		lfs_buf_release(&s);
		free(plain);
	}
}
END_TEST

/* Chunk i of a sealed file (i < nchunks). */
static const uint8_t *chunk_at(const struct lfs_buf *s, size_t i,
			       size_t *out_len)
{
	struct lfs_envelope_info info;
	size_t off;
	ck_assert_int_eq(lfs_envelope_parse(&info, s->data, s->len), 0);
	ck_assert_int_eq(lfs_envelope_chunk_span(&off, out_len, &info, i), 0);
	return s->data + off;
}

START_TEST(test_truncate_at_chunk_boundary)
{
	size_t stride = 1024 + TAG;
	/* last chunk short: cut it off, the new last chunk was not last */
	uint8_t *plain = pattern(3 * 1024 + 5, 12);
	struct lfs_buf s;
	seal(&s, NULL, key, plain, 3 * 1024 + 5, SMALL);
	ck_assert_int_eq(open_keep(key, s.data, HDR + 3 * stride, NULL),
			 -EBADMSG);
	ck_assert_int_eq(open_keep(key, s.data, HDR + stride, NULL), -EBADMSG);
	lfs_buf_release(&s);

	/* last chunk full */
	seal(&s, NULL, key, plain, 3 * 1024, SMALL);
	ck_assert_int_eq(open_keep(key, s.data, HDR + 2 * stride, NULL),
			 -EBADMSG);
	lfs_buf_release(&s);
	free(plain);
}
END_TEST

START_TEST(test_drop_and_reorder)
{
	size_t len = 4 * 1024 + 50; /* chunks 0..3 full, 4 short */
	size_t stride = 1024 + TAG;
	uint8_t *plain = pattern(len, 13);
	struct lfs_buf s;
	seal(&s, NULL, key, plain, len, SMALL);
	uint8_t *f = malloc(s.len);
	ck_assert_ptr_nonnull(f);

	/* drop chunk 1 */
	memcpy(f, s.data, HDR + stride);
	memcpy(f + HDR + stride, s.data + HDR + 2 * stride,
	       s.len - HDR - 2 * stride);
	ck_assert_int_eq(open_keep(key, f, s.len - stride, NULL), -EBADMSG);

	/* swap chunks 1 and 2 */
	memcpy(f, s.data, s.len);
	memcpy(f + HDR + stride, s.data + HDR + 2 * stride, stride);
	memcpy(f + HDR + 2 * stride, s.data + HDR + stride, stride);
	ck_assert_int_eq(open_keep(key, f, s.len, NULL), -EBADMSG);

	/* duplicate chunk 0 over chunk 1 */
	memcpy(f, s.data, s.len);
	memcpy(f + HDR + stride, s.data + HDR, stride);
	ck_assert_int_eq(open_keep(key, f, s.len, NULL), -EBADMSG);

	/* sanity: the copy itself opens */
	memcpy(f, s.data, s.len);
	ck_assert_int_eq(open_keep(key, f, s.len, NULL), 0);

	free(f);
	lfs_buf_release(&s);
	free(plain);
}
END_TEST

START_TEST(test_splice)
{
	size_t len = 3 * 1024 + 10;
	size_t stride = 1024 + TAG;
	uint8_t *pa = pattern(len, 14);
	struct lfs_buf a, b;
	seal(&a, NULL, key, pa, len, SMALL);
	/* same key, same plaintext even: only the prefix differs */
	seal(&b, NULL, key, pa, len, SMALL);
	uint8_t *f = malloc(a.len);
	ck_assert_ptr_nonnull(f);

	for (size_t i = 0; i < 4; i++) {
		size_t off = HDR + i * stride;
		size_t n = i < 3 ? stride : a.len - off;
		memcpy(f, a.data, a.len);
		memcpy(f + off, b.data + off, n);
		ck_assert_int_eq(open_keep(key, f, a.len, NULL), -EBADMSG);
	}
	/* b's chunks under a's header, and a's under b's */
	memcpy(f, a.data, HDR);
	memcpy(f + HDR, b.data + HDR, a.len - HDR);
	ck_assert_int_eq(open_keep(key, f, a.len, NULL), -EBADMSG);

	free(f);
	lfs_buf_release(&a);
	lfs_buf_release(&b);
	free(pa);
}
END_TEST

START_TEST(test_append)
{
	size_t stride = 1024 + TAG;
	uint8_t *plain = pattern(3 * 1024, 15);
	struct lfs_buf s, o;
	/* last chunk full: append a whole chunk, so the count still parses */
	seal(&s, NULL, key, plain, 3 * 1024, SMALL);
	size_t base = s.len;
	uint8_t c0[1024 + TAG]; /* a copy: appending may move s.data */
	memcpy(c0, s.data + HDR, stride);
	ck_assert_int_eq(lfs_buf_append(&s, c0, stride), 0);
	ck_assert_int_eq(open_keep(key, s.data, s.len, NULL), -EBADMSG);

	/* append another file's (genuine, last) chunk */
	seal(&o, NULL, key, plain, 5, SMALL);
	s.len = base;
	ck_assert_int_eq(lfs_buf_append(&s, o.data + HDR, o.len - HDR), 0);
	ck_assert_int_eq(open_keep(key, s.data, s.len, NULL), -EBADMSG);

	/* an empty last chunk after full ones is not a valid length */
	s.len = base;
	ck_assert_int_eq(lfs_buf_append(&s, c0, TAG), 0);
	ck_assert_int_eq(open_keep(key, s.data, s.len, NULL), -EBADMSG);

	/* one extra byte on a short last chunk */
	lfs_buf_release(&s);
	seal(&s, NULL, key, plain, 3 * 1024 - 1, SMALL);
	ck_assert_int_eq(lfs_buf_append_byte(&s, 0), 0);
	ck_assert_int_eq(open_keep(key, s.data, s.len, NULL), -EBADMSG);

	lfs_buf_release(&o);
	lfs_buf_release(&s);
	free(plain);
}
END_TEST

START_TEST(test_header_fields)
{
	uint8_t *plain = pattern(2000, 16);
	struct lfs_buf s;
	seal(&s, NULL, key, plain, 2000, SMALL);
	uint8_t *f = malloc(s.len);
	ck_assert_ptr_nonnull(f);

	const char *magics[] = {"LFSF", "lfse", "\0\0\0\0", "CAR\x01"};
	for (size_t i = 0; i < 4; i++) {
		memcpy(f, s.data, s.len);
		memcpy(f, magics[i], 4);
		ck_assert_int_eq(open_keep(key, f, s.len, NULL), -EBADMSG);
	}
	uint8_t versions[] = {0, 2, 0x81, 0xff};
	for (size_t i = 0; i < 4; i++) {
		memcpy(f, s.data, s.len);
		f[4] = versions[i];
		ck_assert_int_eq(open_keep(key, f, s.len, NULL),
				 -EPROTONOSUPPORT);
	}
	/* every other chunk size: out of range, or geometry/AD mismatch */
	for (unsigned l = 0; l < 256; l++) {
		if (l == SMALL)
			continue;
		memcpy(f, s.data, s.len);
		f[5] = (uint8_t)l;
		ck_assert_int_eq(open_keep(key, f, s.len, NULL), -EBADMSG);
	}
	/* reserved bytes and out-of-range sizes fail before decryption */
	struct lfs_envelope_info info;
	for (size_t r = 6; r < 8; r++) {
		memcpy(f, s.data, s.len);
		f[r] = 1;
		ck_assert_int_eq(open_keep(key, f, s.len, NULL), -EBADMSG);
		ck_assert_int_eq(lfs_envelope_parse(&info, f, s.len), -EBADMSG);
	}
	memcpy(f, s.data, s.len);
	f[5] = LFS_ENVELOPE_MIN_CHUNK_LOG2 - 1;
	ck_assert_int_eq(lfs_envelope_parse(&info, f, s.len), -EBADMSG);
	f[5] = LFS_ENVELOPE_MAX_CHUNK_LOG2 + 1;
	ck_assert_int_eq(lfs_envelope_parse(&info, f, s.len), -EBADMSG);

	free(f);
	lfs_buf_release(&s);
	free(plain);
}
END_TEST

START_TEST(test_expect)
{
	struct lfs_buf a, b;
	struct lfs_cid ca, cb;
	seal(&a, &ca, key, (const uint8_t *)"alpha", 5, 0);
	seal(&b, &cb, key, (const uint8_t *)"alpha", 5, 0);
	ck_assert_int_eq(open_keep(key, a.data, a.len, &ca), 0);
	ck_assert_int_eq(open_keep(key, a.data, a.len, &cb), -EBADMSG);

	/* same digest, other codec: not this file's name */
	struct lfs_cid other = ca;
	other.codec = LFS_CODEC_DAG_CBOR;
	ck_assert_int_eq(open_keep(key, a.data, a.len, &other), -EBADMSG);

	/* the name is checked even with the wrong key */
	ck_assert_int_eq(open_keep(key2, a.data, a.len, &cb), -EBADMSG);
	lfs_buf_release(&a);
	lfs_buf_release(&b);
}
END_TEST

START_TEST(test_failure_wipes_spare)
{
	size_t len = 3 * 1024 + 100;
	uint8_t *plain = pattern(len, 17);
	struct lfs_buf s, out;
	seal(&s, NULL, key, plain, len, SMALL);
	s.data[s.len - 1] ^= 1; /* only the last chunk is bad */

	lfs_buf_init(&out, 0);
	ck_assert_int_eq(lfs_buf_append(&out, keep, KEEP_LEN), 0);
	ck_assert_int_eq(lfs_envelope_open(&out, key, s.data, s.len, NULL),
			 -EBADMSG);
	ck_assert_uint_eq(out.len, KEEP_LEN);
	ck_assert_uint_ge(out.cap, KEEP_LEN + len);
	for (size_t i = 0; i < len; i++)
		ck_assert_uint_eq(out.data[KEEP_LEN + i], 0);
	ck_assert_mem_eq(out.data, keep, KEEP_LEN);
	lfs_buf_release(&out);
	lfs_buf_release(&s);
	free(plain);
}
END_TEST

START_TEST(test_open_chunk)
{
	size_t len = 3 * 1024 + 77;
	uint8_t *plain = pattern(len, 18);
	struct lfs_buf s, o, out;
	seal(&s, NULL, key, plain, len, SMALL);
	seal(&o, NULL, key, plain, len, SMALL);
	struct lfs_envelope_info info;
	ck_assert_int_eq(lfs_envelope_parse(&info, s.data, s.len), 0);
	ck_assert_uint_eq(info.nchunks, 4);
	ck_assert_uint_eq(info.chunk_size, 1024);
	ck_assert_uint_eq(info.plain_len, len);
	ck_assert_uint_eq(info.sealed_len, s.len);
	ck_assert_mem_eq(info.header, s.data, HDR);

	lfs_buf_init(&out, 0);
	for (size_t i = 4; i-- > 0;) { /* any order */
		size_t off, n;
		ck_assert_int_eq(lfs_envelope_chunk_span(&off, &n, &info, i),
				 0);
		ck_assert_uint_eq(off, HDR + i * (1024 + TAG));
		ck_assert_uint_eq(n, i < 3 ? 1024 + TAG : 77 + TAG);
		lfs_buf_reset(&out);
		ck_assert_int_eq(lfs_buf_append(&out, keep, KEEP_LEN), 0);
		ck_assert_int_eq(lfs_envelope_open_chunk(&out, key, &info, i,
							 s.data + off, n),
				 0);
		ck_assert_uint_eq(out.len, KEEP_LEN + n - TAG);
		ck_assert_mem_eq(out.data, keep, KEEP_LEN);
		ck_assert(memcmp(out.data + KEEP_LEN, plain + i * 1024,
				 n - TAG) == 0);
	}

	size_t n;
	const uint8_t *c1 = chunk_at(&s, 1, &n);
	uint8_t bad[1024 + TAG];
	lfs_buf_reset(&out);
	ck_assert_int_eq(lfs_buf_append(&out, keep, KEEP_LEN), 0);
	for (size_t pos = 0; pos < n; pos += 97) {
		memcpy(bad, c1, n);
		bad[pos] ^= 0x20;
		ck_assert_int_eq(
			lfs_envelope_open_chunk(&out, key, &info, 1, bad, n),
			-EBADMSG);
	}
	/* wrong index, wrong length, wrong key, another file's chunk */
	ck_assert_int_eq(lfs_envelope_open_chunk(&out, key, &info, 2, c1, n),
			 -EBADMSG);
	ck_assert_int_eq(
		lfs_envelope_open_chunk(&out, key, &info, 1, c1, n - 1),
		-EBADMSG);
	/* too long: into a buffer with no slack, so ASan sees overruns */
	struct lfs_buf tight;
	lfs_buf_init(&tight, 1024);
	uint8_t longer[1024 + TAG + 1];
	memcpy(longer, c1, n);
	longer[n] = 0;
	ck_assert_int_eq(
		lfs_envelope_open_chunk(&tight, key, &info, 1, longer, n + 1),
		-EBADMSG);
	ck_assert_uint_eq(tight.len, 0);
	ck_assert_int_eq(tight.err, 0);
	lfs_buf_release(&tight);
	/* the last chunk followed by a stray byte */
	const uint8_t *c3 = chunk_at(&s, 3, &n);
	memcpy(longer, c3, n);
	longer[n] = 0;
	ck_assert_int_eq(
		lfs_envelope_open_chunk(&out, key, &info, 3, longer, n + 1),
		-EBADMSG);
	c1 = chunk_at(&s, 1, &n);
	ck_assert_int_eq(lfs_envelope_open_chunk(&out, key2, &info, 1, c1, n),
			 -EBADMSG);
	const uint8_t *oc1 = chunk_at(&o, 1, &n);
	ck_assert_int_eq(lfs_envelope_open_chunk(&out, key, &info, 1, oc1, n),
			 -EBADMSG);
	ck_assert_int_eq(lfs_envelope_open_chunk(&out, key, &info, 4, c1, n),
			 -EINVAL);
	size_t off;
	ck_assert_int_eq(lfs_envelope_chunk_span(&off, &n, &info, 4), -EINVAL);
	ck_assert_uint_eq(out.len, KEEP_LEN);
	ck_assert_mem_eq(out.data, keep, KEEP_LEN);
	ck_assert_int_eq(out.err, 0);

	/*
	 * A length that lies (cut at a chunk boundary): early chunks still
	 * open alone, as documented, but the claimed last chunk does not.
	 */
	struct lfs_envelope_info cut;
	ck_assert_int_eq(
		lfs_envelope_parse(&cut, s.data, HDR + 2 * (1024 + TAG)), 0);
	ck_assert_uint_eq(cut.nchunks, 2);
	c1 = chunk_at(&s, 0, &n);
	ck_assert_int_eq(lfs_envelope_open_chunk(&out, key, &cut, 0, c1, n), 0);
	c1 = chunk_at(&s, 1, &n);
	ck_assert_int_eq(lfs_envelope_open_chunk(&out, key, &cut, 1, c1, n),
			 -EBADMSG);

	lfs_buf_release(&out);
	lfs_buf_release(&o);
	lfs_buf_release(&s);
	free(plain);
}
END_TEST

START_TEST(test_open_chunk_empty)
{
	struct lfs_buf s, out;
	seal(&s, NULL, key, NULL, 0, 0);
	ck_assert_uint_eq(s.len, HDR + TAG);
	struct lfs_envelope_info info;
	ck_assert_int_eq(lfs_envelope_parse(&info, s.data, s.len), 0);
	ck_assert_uint_eq(info.nchunks, 1);
	ck_assert_uint_eq(info.plain_len, 0);
	lfs_buf_init(&out, 0);
	ck_assert_int_eq(
		lfs_envelope_open_chunk(&out, key, &info, 0, s.data + HDR, TAG),
		0);
	ck_assert_uint_eq(out.len, 0);
	s.data[HDR] ^= 1;
	ck_assert_int_eq(
		lfs_envelope_open_chunk(&out, key, &info, 0, s.data + HDR, TAG),
		-EBADMSG);
	lfs_buf_release(&out);
	lfs_buf_release(&s);
}
END_TEST

START_TEST(test_geometry)
{
	/* A length parses exactly when some plaintext seals to it. */
	uint8_t head[HDR];
	memcpy(head, "LFSE\x01\x0a\x00\x00", 8);
	memset(head + 8, 0xaa, 16);
	size_t stride = 1024 + TAG;
	size_t good = 0;
	for (size_t l = 0; l < HDR + 4 * stride + 40; l++) {
		struct lfs_envelope_info info;
		int rc = lfs_envelope_parse(&info, head, l);
		if (rc == 0) {
			good++;
			ck_assert_uint_eq(
				lfs_envelope_sealed_size(info.plain_len, SMALL),
				l);
			ck_assert_uint_eq(
				info.nchunks,
				info.plain_len ? (info.plain_len + 1023) / 1024
					       : 1);
		} else {
			ck_assert_int_eq(rc, -EBADMSG);
		}
	}
	/* the plaintext lengths 0 .. 4 * 1024 + 23 */
	ck_assert_uint_eq(good, 4 * 1024 + 24);
	for (size_t len = 0; len < 5000; len++) {
		struct lfs_envelope_info info;
		size_t l = lfs_envelope_sealed_size(len, SMALL);
		ck_assert_int_eq(lfs_envelope_parse(&info, head, l), 0);
		ck_assert_uint_eq(info.plain_len, len);
	}
}
END_TEST

START_TEST(test_sealed_size)
{
	ck_assert_uint_eq(lfs_envelope_sealed_size(0, 0), HDR + TAG);
	ck_assert_uint_eq(lfs_envelope_sealed_size(1, 0), HDR + TAG + 1);
	ck_assert_uint_eq(lfs_envelope_sealed_size(65536, 0),
			  HDR + TAG + 65536);
	ck_assert_uint_eq(lfs_envelope_sealed_size(65537, 0),
			  HDR + 2 * TAG + 65537);
	ck_assert_uint_eq(lfs_envelope_sealed_size(1024, SMALL),
			  lfs_envelope_sealed_size(1024, 0));
	ck_assert_uint_eq(lfs_envelope_sealed_size(1025, SMALL),
			  HDR + 2 * TAG + 1025);
	ck_assert_uint_eq(lfs_envelope_sealed_size(SIZE_MAX, 0), 0);
	ck_assert_uint_eq(lfs_envelope_sealed_size(SIZE_MAX - 100, SMALL), 0);
	ck_assert_uint_eq(lfs_envelope_sealed_size(1, 9), 0);
	ck_assert_uint_eq(lfs_envelope_sealed_size(1, 23), 0);

	struct lfs_buf s;
	lfs_buf_init(&s, 0);
	ck_assert_int_eq(
		lfs_envelope_seal(&s, NULL, key, (const uint8_t *)"x", 1, 9),
		-EINVAL);
	ck_assert_int_eq(
		lfs_envelope_seal(&s, NULL, key, (const uint8_t *)"x", 1, 23),
		-EINVAL);
	/* a size that overflows is refused before anything is read */
	ck_assert_int_eq(lfs_envelope_seal(&s, NULL, key, (const uint8_t *)"x",
					   SIZE_MAX, 0),
			 -EFBIG);
	ck_assert_uint_eq(s.len, 0);
	lfs_buf_release(&s);
}
END_TEST

START_TEST(test_cap)
{
	size_t len = 5000;
	uint8_t *plain = pattern(len, 19);
	struct lfs_buf s, out;
	struct lfs_cid cid;
	size_t sealed = lfs_envelope_sealed_size(len, SMALL);

	/* seal: one byte short of the cap, then exactly the cap */
	lfs_buf_init(&s, KEEP_LEN + sealed - 1);
	ck_assert_int_eq(lfs_buf_append(&s, keep, KEEP_LEN), 0);
	ck_assert_int_eq(lfs_envelope_seal(&s, &cid, key, plain, len, SMALL),
			 -EFBIG);
	ck_assert_uint_eq(s.len, KEEP_LEN);
	ck_assert_int_eq(s.err, -EFBIG); /* sticky, as every buf append */
	lfs_buf_release(&s);
	lfs_buf_init(&s, sealed);
	ck_assert_int_eq(lfs_envelope_seal(&s, &cid, key, plain, len, SMALL),
			 0);

	/* open */
	lfs_buf_init(&out, KEEP_LEN + len - 1);
	ck_assert_int_eq(lfs_buf_append(&out, keep, KEEP_LEN), 0);
	ck_assert_int_eq(lfs_envelope_open(&out, key, s.data, s.len, &cid),
			 -EFBIG);
	ck_assert_uint_eq(out.len, KEEP_LEN);
	ck_assert_mem_eq(out.data, keep, KEEP_LEN);
	ck_assert_int_eq(out.err, -EFBIG);
	/* the sticky error stops later calls too */
	ck_assert_int_eq(lfs_envelope_open(&out, key, s.data, s.len, &cid),
			 -EFBIG);
	lfs_buf_release(&out);
	lfs_buf_init(&out, len);
	ck_assert_int_eq(lfs_envelope_open(&out, key, s.data, s.len, &cid), 0);
	ck_assert_mem_eq(out.data, plain, len);
	lfs_buf_release(&out);

	/* open_chunk */
	struct lfs_envelope_info info;
	size_t off, n;
	ck_assert_int_eq(lfs_envelope_parse(&info, s.data, s.len), 0);
	ck_assert_int_eq(lfs_envelope_chunk_span(&off, &n, &info, 0), 0);
	lfs_buf_init(&out, 1023);
	ck_assert_int_eq(
		lfs_envelope_open_chunk(&out, key, &info, 0, s.data + off, n),
		-EFBIG);
	ck_assert_uint_eq(out.len, 0);
	lfs_buf_release(&out);

	lfs_buf_release(&s);
	free(plain);
}
END_TEST

/* Feed s[0..len) to a stream check in pieces of random sizes. */
static int stream_check(const uint8_t *k, const uint8_t *s, size_t len,
			uint64_t *out_plain)
{
	struct lfs_envelope_check c;
	lfs_envelope_check_init(&c, k);
	int rc = 0;
	for (size_t off = 0; !rc && off < len;) {
		size_t n = 1 + randombytes_uniform(3000);
		if (n > len - off)
			n = len - off;
		rc = lfs_envelope_check_update(&c, s + off, n);
		off += n;
	}
	if (!rc)
		rc = lfs_envelope_check_end(&c);
	if (out_plain)
		*out_plain = c.plain;
	/* Sticky: later calls say the same. */
	if (rc)
		ck_assert_int_eq(lfs_envelope_check_end(&c), rc);
	lfs_envelope_check_release(&c);
	return rc;
}

START_TEST(test_stream_check)
{
	size_t lens[] = {0, 1, 1023, 1024, 1025, 3 * 1024, 3 * 1024 + 5};
	for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		uint8_t *plain = pattern(lens[i], 21);
		struct lfs_buf s;
		seal(&s, NULL, key, plain, lens[i], SMALL);
		uint64_t got = 0;
		ck_assert_int_eq(stream_check(key, s.data, s.len, &got), 0);
		ck_assert_uint_eq(got, lens[i]);
		ck_assert_int_eq(stream_check(key2, s.data, s.len, NULL),
				 -EBADMSG);
		/* Every truncation, and a byte more: as open() says. */
		for (size_t l = 0; l < s.len; l++)
			ck_assert_msg(stream_check(key, s.data, l, NULL) ==
					      open_keep(key, s.data, l, NULL),
				      "len %zu truncated to %zu", lens[i], l);
		uint8_t *more = malloc(s.len + 1);
		ck_assert_ptr_nonnull(more);
		memcpy(more, s.data, s.len);
		more[s.len] = 0;
		ck_assert_int_eq(stream_check(key, more, s.len + 1, NULL),
				 -EBADMSG);
		/* Flipped bytes, header included. */
		for (size_t f = 0; f < s.len; f += 1 + f / 8) {
			memcpy(more, s.data, s.len);
			more[f] ^= 0x40;
			ck_assert_msg(stream_check(key, more, s.len, NULL) ==
					      open_keep(key, more, s.len, NULL),
				      "len %zu flipped at %zu", lens[i], f);
		}
		free(more);
		lfs_buf_release(&s);
		free(plain);
	}
	/* Junk: refused at its header. */
	uint8_t *junk = pattern(1 << 20, 9);
	ck_assert_int_eq(stream_check(key, junk, 1 << 20, NULL), -EBADMSG);
	free(junk);
	/* The default chunk size, a file of several chunks. */
	uint8_t *plain = pattern(300000, 3);
	struct lfs_buf s;
	seal(&s, NULL, key, plain, 300000, 0);
	ck_assert_int_eq(stream_check(key, s.data, s.len, NULL), 0);
	lfs_buf_release(&s);
	free(plain);
}
END_TEST
static Suite *envelope_suite(void)
{
	Suite *s = suite_create("envelope");
	TCase *tc = tcase_create("core");
	tcase_add_checked_fixture(tc, setup, NULL);
	tcase_set_timeout(tc, 120); /* generous for valgrind */
	tcase_add_test(tc, test_roundtrip);
	tcase_add_test(tc, test_stream_check);
	tcase_add_test(tc, test_roundtrip_random);
	tcase_add_test(tc, test_format_matches_spec);
	tcase_add_test(tc, test_fresh_prefix);
	tcase_add_test(tc, test_appends);
	tcase_add_test(tc, test_wrong_key);
	tcase_add_test(tc, test_flip_every_byte);
	tcase_add_test(tc, test_truncate_every_length);
	tcase_add_test(tc, test_truncate_at_chunk_boundary);
	tcase_add_test(tc, test_drop_and_reorder);
	tcase_add_test(tc, test_splice);
	tcase_add_test(tc, test_append);
	tcase_add_test(tc, test_header_fields);
	tcase_add_test(tc, test_expect);
	tcase_add_test(tc, test_failure_wipes_spare);
	tcase_add_test(tc, test_open_chunk);
	tcase_add_test(tc, test_open_chunk_empty);
	tcase_add_test(tc, test_geometry);
	tcase_add_test(tc, test_sealed_size);
	tcase_add_test(tc, test_cap);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	if (sodium_init() < 0)
		return 99;
	return lfs_check_run(envelope_suite());
}
