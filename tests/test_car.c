#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "buf.h"
#include "car.h"
#include "cbor.h"
#include "cid.h"
#include "varint.h"
#include "check_util.h"

/* sha2-256("abc") and sha2-256(""), the FIPS 180-2 / well-known vectors. */
static const uint8_t SHA_ABC[32] = {
	0xba, 0x78, 0x16, 0xbf, 0x8f, 0x01, 0xcf, 0xea, 0x41, 0x41, 0x40,
	0xde, 0x5d, 0xae, 0x22, 0x23, 0xb0, 0x03, 0x61, 0xa3, 0x96, 0x17,
	0x7a, 0x9c, 0xb4, 0x10, 0xff, 0x61, 0xf2, 0x00, 0x15, 0xad};
static const uint8_t SHA_EMPTY[32] = {
	0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4,
	0xc8, 0x99, 0x6f, 0xb9, 0x24, 0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b,
	0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55};

/* ---- helpers ---- */

enum { MAJ_ARRAY = 4, MAJ_MAP = 5, MAJ_TAG = 6 };

static void put_varint(struct lfs_buf *b, uint64_t v)
{
	uint8_t tmp[LFS_VARINT_MAX];
	lfs_buf_append(b, tmp, lfs_varint_encode(tmp, v));
}

/* Append varint(n) + bytes: a header or a section made by hand. */
static void put_framed(struct lfs_buf *b, const void *p, size_t n)
{
	put_varint(b, n);
	lfs_buf_append(b, p, n);
}

/* A raw section carrying text, CID computed. */
static void put_raw(struct lfs_buf *b, const char *text)
{
	struct lfs_cid cid;
	ck_assert_int_eq(
		lfs_car_put_block(b, &cid, LFS_CODEC_RAW, text, strlen(text)),
		0);
}

static struct lfs_cid cid_of_str(uint8_t codec, const char *s)
{
	struct lfs_cid c;
	lfs_cid_of(&c, codec, s, strlen(s));
	return c;
}

/* A valid header with one root, the CID of "root". */
static void put_good_header(struct lfs_buf *b)
{
	struct lfs_cid root = cid_of_str(LFS_CODEC_DAG_CBOR, "root");
	ck_assert_int_eq(lfs_car_write_header(b, &root, 1), 0);
}

/* Run the reader to the end; returns the final code, counts good blocks. */
static int read_all(const uint8_t *p, size_t len, size_t *out_blocks)
{
	struct lfs_car_reader r;
	size_t n = 0;
	int rc = lfs_car_reader_init(&r, p, len);
	if (rc == 0) {
		struct lfs_cid cid;
		const uint8_t *data;
		size_t dlen;
		while ((rc = lfs_car_reader_next(&r, &cid, &data, &dlen)) == 1)
			n++;
		lfs_car_reader_release(&r);
	}
	if (out_blocks)
		*out_blocks = n;
	return rc;
}

static int init_rc(const struct lfs_buf *b)
{
	struct lfs_car_reader r;
	int rc = lfs_car_reader_init(&r, b->data, b->len);
	lfs_car_reader_release(&r);
	return rc;
}

/* Header bytes built with the streaming writers, framed into b. */
static void frame_header(struct lfs_buf *b, struct lfs_buf *h)
{
	ck_assert_int_eq(h->err, 0);
	put_framed(b, h->data, h->len);
}

static void put_key(struct lfs_buf *h, const char *k)
{
	lfs_cbor_put_string(h, k, strlen(k));
}

/*
 * Read everything, re-write it from what was read, and require the same
 * bytes. Returns the number of blocks.
 */
static size_t check_rewrite(const uint8_t *p, size_t len)
{
	struct lfs_car_reader r;
	struct lfs_buf out;
	struct lfs_cid cid;
	const uint8_t *data;
	size_t dlen, n = 0;
	int rc;

	ck_assert_int_eq(lfs_car_reader_init(&r, p, len), 0);
	lfs_buf_init(&out, 0);
	ck_assert_int_eq(lfs_car_write_header(&out, r.roots, r.nroots), 0);
	while ((rc = lfs_car_reader_next(&r, &cid, &data, &dlen)) == 1) {
		ck_assert(data >= p && data + dlen <= p + len);
		ck_assert_int_eq(lfs_car_write_block(&out, &cid, data, dlen),
				 0);
		n++;
	}
	ck_assert_int_eq(rc, 0);
	ck_assert_uint_eq(out.len, len);
	ck_assert(memcmp(out.data, p, len) == 0);
	lfs_buf_release(&out);
	lfs_car_reader_release(&r);
	return n;
}

/* ---- round trips ---- */

START_TEST(test_empty_car)
{
	struct lfs_buf b;
	struct lfs_car_reader r;
	struct lfs_cid cid;
	const uint8_t *data = NULL;
	size_t len = 0;

	lfs_buf_init(&b, 0);
	ck_assert_int_eq(lfs_car_write_header(&b, NULL, 0), 0);
	ck_assert_int_eq(lfs_car_reader_init(&r, b.data, b.len), 0);
	ck_assert_uint_eq(r.nroots, 0);
	ck_assert_int_eq(lfs_car_reader_next(&r, &cid, &data, &len), 0);
	ck_assert_int_eq(lfs_car_reader_next(&r, &cid, &data, &len), 0);
	lfs_car_reader_release(&r);
	lfs_car_reader_release(&r); /* idempotent */
	ck_assert_uint_eq(check_rewrite(b.data, b.len), 0);
	lfs_buf_release(&b);
}
END_TEST

START_TEST(test_one_block)
{
	struct lfs_buf b;
	struct lfs_car_reader r;
	struct lfs_cid cid, got;
	const uint8_t *data;
	size_t len;
	static const char msg[] = "hello, ledger";

	lfs_buf_init(&b, 0);
	lfs_cid_of(&cid, LFS_CODEC_RAW, msg, sizeof(msg) - 1);
	ck_assert_int_eq(lfs_car_write_header(&b, &cid, 1), 0);
	ck_assert_int_eq(lfs_car_put_block(&b, &got, LFS_CODEC_RAW, msg,
					   sizeof(msg) - 1),
			 0);
	ck_assert(lfs_cid_equal(&got, &cid));

	ck_assert_int_eq(lfs_car_reader_init(&r, b.data, b.len), 0);
	ck_assert_uint_eq(r.nroots, 1);
	ck_assert(lfs_cid_equal(&r.roots[0], &cid));
	ck_assert_int_eq(lfs_car_reader_next(&r, &got, &data, &len), 1);
	ck_assert(lfs_cid_equal(&got, &cid));
	ck_assert_uint_eq(len, sizeof(msg) - 1);
	ck_assert(memcmp(data, msg, len) == 0);
	ck_assert_int_eq(lfs_car_reader_next(&r, &got, &data, &len), 0);
	lfs_car_reader_release(&r);
	ck_assert_uint_eq(check_rewrite(b.data, b.len), 1);
	lfs_buf_release(&b);
}
END_TEST

/* A small DAG-CBOR block {"i": i, "pad": bytes(i % 300)}. */
static void make_cbor_block(struct lfs_buf *blk, size_t i)
{
	uint8_t pad[300];
	memset(pad, (int)i, sizeof(pad));
	lfs_cbor_put_head(blk, MAJ_MAP, 2);
	put_key(blk, "i");
	lfs_cbor_put_int(blk, (int64_t)i);
	put_key(blk, "pad");
	lfs_cbor_put_bytes(blk, pad, i % 300);
	ck_assert_int_eq(blk->err, 0);
}

START_TEST(test_many_blocks)
{
	enum { N = 200 };
	struct lfs_buf b, blk[N];
	struct lfs_cid cids[N], got;
	struct lfs_car_reader r;
	const uint8_t *data;
	size_t len;

	for (size_t i = 0; i < N; i++) {
		lfs_buf_init(&blk[i], 0);
		if (i % 2) {
			make_cbor_block(&blk[i], i);
		} else {
			/* raw, sizes 0 .. ~20000: 1-, 2- and 3-byte varints */
			size_t n = (i * 101) % 20011;
			for (size_t k = 0; k < n; k++)
				lfs_buf_append_byte(&blk[i],
						    (uint8_t)(k * 7 + i));
		}
	}
	lfs_buf_init(&b, 0);
	for (size_t i = 0; i < N; i++)
		lfs_cid_of(&cids[i], i % 2 ? LFS_CODEC_DAG_CBOR : LFS_CODEC_RAW,
			   blk[i].data ? (void *)blk[i].data : (void *)"",
			   blk[i].len);
	/* Several roots, out of order, one repeated. */
	struct lfs_cid roots[4] = {cids[3], cids[0], cids[N - 1], cids[3]};
	ck_assert_int_eq(lfs_car_write_header(&b, roots, 4), 0);
	for (size_t i = 0; i < N; i++) {
		ck_assert_int_eq(lfs_car_put_block(&b, &got, cids[i].codec,
						   blk[i].data, blk[i].len),
				 0);
		ck_assert(lfs_cid_equal(&got, &cids[i]));
	}

	ck_assert_int_eq(lfs_car_reader_init(&r, b.data, b.len), 0);
	ck_assert_uint_eq(r.nroots, 4);
	for (size_t i = 0; i < 4; i++)
		ck_assert(lfs_cid_equal(&r.roots[i], &roots[i]));
	for (size_t i = 0; i < N; i++) {
		ck_assert_int_eq(lfs_car_reader_next(&r, &got, &data, &len), 1);
		ck_assert(lfs_cid_equal(&got, &cids[i]));
		ck_assert_uint_eq(len, blk[i].len);
		ck_assert(len == 0 || memcmp(data, blk[i].data, len) == 0);
	}
	ck_assert_int_eq(lfs_car_reader_next(&r, &got, &data, &len), 0);
	lfs_car_reader_release(&r);

	ck_assert_uint_eq(check_rewrite(b.data, b.len), N);
	size_t count = 0;
	ck_assert_int_eq(lfs_car_verify(&count, b.data, b.len), 0);
	ck_assert_uint_eq(count, N);

	for (size_t i = 0; i < N; i++)
		lfs_buf_release(&blk[i]);
	lfs_buf_release(&b);
}
END_TEST

START_TEST(test_zero_roots_with_blocks)
{
	struct lfs_buf b;
	size_t n;

	lfs_buf_init(&b, 0);
	ck_assert_int_eq(lfs_car_write_header(&b, NULL, 0), 0);
	put_raw(&b, "a");
	put_raw(&b, "");
	put_raw(&b, "c");
	ck_assert_int_eq(lfs_car_verify(&n, b.data, b.len), 0);
	ck_assert_uint_eq(n, 3);
	ck_assert_uint_eq(check_rewrite(b.data, b.len), 3);
	lfs_buf_release(&b);
}
END_TEST

START_TEST(test_max_roots)
{
	static struct lfs_cid roots[LFS_CAR_MAX_ROOTS + 1];
	struct lfs_buf b;
	struct lfs_car_reader r;

	for (size_t i = 0; i <= LFS_CAR_MAX_ROOTS; i++) {
		roots[i].codec = LFS_CODEC_RAW;
		memcpy(roots[i].digest, &i, sizeof(i));
	}
	lfs_buf_init(&b, 0);
	ck_assert_int_eq(lfs_car_write_header(&b, roots, LFS_CAR_MAX_ROOTS), 0);
	ck_assert_int_eq(lfs_car_reader_init(&r, b.data, b.len), 0);
	ck_assert_uint_eq(r.nroots, LFS_CAR_MAX_ROOTS);
	ck_assert(lfs_cid_equal(&r.roots[LFS_CAR_MAX_ROOTS - 1],
				&roots[LFS_CAR_MAX_ROOTS - 1]));
	lfs_car_reader_release(&r);
	ck_assert_uint_eq(check_rewrite(b.data, b.len), 0);

	/* The writer refuses one more, appending nothing. */
	size_t before = b.len;
	ck_assert_int_eq(lfs_car_write_header(&b, roots, LFS_CAR_MAX_ROOTS + 1),
			 -EFBIG);
	ck_assert_uint_eq(b.len, before);

	/* The reader refuses one more, made by hand. */
	struct lfs_buf h;
	lfs_buf_init(&h, 0);
	lfs_buf_reset(&b);
	lfs_cbor_put_head(&h, MAJ_MAP, 2);
	put_key(&h, "roots");
	lfs_cbor_put_head(&h, MAJ_ARRAY, LFS_CAR_MAX_ROOTS + 1);
	for (size_t i = 0; i <= LFS_CAR_MAX_ROOTS; i++)
		lfs_cbor_put_link(&h, &roots[i]);
	put_key(&h, "version");
	lfs_cbor_put_int(&h, 1);
	frame_header(&b, &h);
	ck_assert_int_eq(init_rc(&b), -EFBIG);
	lfs_buf_release(&h);
	lfs_buf_release(&b);
}
END_TEST

/* ---- exact bytes ---- */

/*
 * A CAR with one root, the raw CID of "abc", and that one block:
 *
 *   3a                         header length, 58
 *   a2                         map(2)
 *   65 72 6f 6f 74 73          text(5) "roots"
 *   81                         array(1)
 *   d8 2a                      tag(42)
 *   58 25                      bytes(37)
 *   00                         multibase identity prefix
 *   01 55 12 20 <32 bytes>     CIDv1, raw, sha2-256, 32-byte digest
 *   67 76 65 72 73 69 6f 6e    text(7) "version"
 *   01                         1
 *   27                         section length, 39 = 36 + 3
 *   01 55 12 20 <32 bytes>     the CID again
 *   61 62 63                   "abc"
 *
 * 58 = 1 + 6 + 1 + 2 + 2 + 37 + 8 + 1; 99 bytes in all.
 */
START_TEST(test_known_bytes)
{
	uint8_t want[99];
	size_t n = 0;
	static const uint8_t head1[] = {0x3a, 0xa2, 0x65, 'r',  'o',  'o',
					't',  's',  0x81, 0xd8, 0x2a, 0x58,
					0x25, 0x00, 0x01, 0x55, 0x12, 0x20};
	static const uint8_t head2[] = {0x67, 'v', 'e', 'r', 's',
					'i',  'o', 'n', 0x01};
	static const uint8_t sect[] = {0x27, 0x01, 0x55, 0x12, 0x20};
	memcpy(want + n, head1, sizeof(head1));
	n += sizeof(head1);
	memcpy(want + n, SHA_ABC, 32);
	n += 32;
	memcpy(want + n, head2, sizeof(head2));
	n += sizeof(head2);
	memcpy(want + n, sect, sizeof(sect));
	n += sizeof(sect);
	memcpy(want + n, SHA_ABC, 32);
	n += 32;
	memcpy(want + n, "abc", 3);
	n += 3;
	ck_assert_uint_eq(n, sizeof(want));

	struct lfs_buf b;
	struct lfs_cid cid;
	lfs_buf_init(&b, 0);
	lfs_cid_of(&cid, LFS_CODEC_RAW, "abc", 3);
	ck_assert_int_eq(lfs_car_write_header(&b, &cid, 1), 0);
	ck_assert_uint_eq(b.len, 59);
	ck_assert_int_eq(lfs_car_put_block(&b, &cid, LFS_CODEC_RAW, "abc", 3),
			 0);
	ck_assert_uint_eq(b.len, sizeof(want));
	ck_assert(memcmp(b.data, want, sizeof(want)) == 0);
	ck_assert_uint_eq(check_rewrite(want, sizeof(want)), 1);

	/*
	 * No roots: 11 a2 65 "roots" 80 67 "version" 01 (17 bytes), then the
	 * empty raw block: 24 (36) 01 55 12 20 <sha2-256 of nothing>.
	 */
	static const uint8_t empty_hdr[] = {0x11, 0xa2, 0x65, 'r',  'o', 'o',
					    't',  's',  0x80, 0x67, 'v', 'e',
					    'r',  's',  'i',  'o',  'n', 0x01};
	static const uint8_t empty_sect[] = {0x24, 0x01, 0x55, 0x12, 0x20};
	lfs_buf_reset(&b);
	ck_assert_int_eq(lfs_car_write_header(&b, NULL, 0), 0);
	ck_assert_int_eq(lfs_car_put_block(&b, &cid, LFS_CODEC_RAW, NULL, 0),
			 0);
	ck_assert_uint_eq(b.len, sizeof(empty_hdr) + sizeof(empty_sect) + 32);
	ck_assert(memcmp(b.data, empty_hdr, sizeof(empty_hdr)) == 0);
	ck_assert(memcmp(b.data + sizeof(empty_hdr), empty_sect,
			 sizeof(empty_sect)) == 0);
	ck_assert(memcmp(b.data + sizeof(empty_hdr) + sizeof(empty_sect),
			 SHA_EMPTY, 32) == 0);
	ck_assert_uint_eq(check_rewrite(b.data, b.len), 1);

	/* A 200-byte dag-cbor block: section length 236 = varint ec 01. */
	uint8_t big[200] = {0};
	lfs_buf_reset(&b);
	ck_assert_int_eq(
		lfs_car_put_block(&b, &cid, LFS_CODEC_DAG_CBOR, big, 200), 0);
	ck_assert_uint_eq(b.len, 2 + 36 + 200);
	ck_assert_uint_eq(b.data[0], 0xec);
	ck_assert_uint_eq(b.data[1], 0x01);
	ck_assert_uint_eq(b.data[2], 0x01);
	ck_assert_uint_eq(b.data[3], 0x71);
	lfs_buf_release(&b);
}
END_TEST

/* ---- truncation ---- */

START_TEST(test_truncation)
{
	struct lfs_buf b;
	size_t bound[8], nb = 0;
	size_t n;

	lfs_buf_init(&b, 0);
	put_good_header(&b);
	bound[nb++] = b.len;
	put_raw(&b, "first");
	bound[nb++] = b.len;
	put_raw(&b, "");
	bound[nb++] = b.len;
	uint8_t big[300];
	memset(big, 0x5a, sizeof(big));
	struct lfs_cid cid;
	ck_assert_int_eq(lfs_car_put_block(&b, &cid, LFS_CODEC_DAG_CBOR, big,
					   sizeof(big)),
			 0);
	bound[nb++] = b.len;

	for (size_t t = 0; t <= b.len; t++) {
		/* A fresh allocation of exactly t bytes, for ASan. */
		uint8_t *copy = malloc(t ? t : 1);
		ck_assert_ptr_nonnull(copy);
		memcpy(copy, b.data, t);
		int rc = read_all(copy, t, &n);
		size_t k;
		for (k = 0; k < nb && bound[k] != t; k++)
			;
		if (k < nb) {
			/* At a section boundary: a shorter, valid CAR. */
			ck_assert_msg(rc == 0, "offset %zu: %d", t, rc);
			ck_assert_uint_eq(n, k);
		} else {
			ck_assert_msg(rc == -EBADMSG, "offset %zu: %d", t, rc);
			/* Only the whole sections before the cut. */
			size_t whole = 0;
			for (size_t j = 1; j < nb; j++)
				if (bound[j] <= t)
					whole = j;
			ck_assert_uint_eq(n, whole);
		}
		free(copy);
	}
	lfs_buf_release(&b);
}
END_TEST

/* ---- blocks and CIDs ---- */

START_TEST(test_hash_mismatch)
{
	struct lfs_buf b;
	size_t n;

	lfs_buf_init(&b, 0);
	put_good_header(&b);
	put_raw(&b, "good");
	size_t second = b.len;
	put_raw(&b, "tampered");
	ck_assert_int_eq(lfs_car_verify(&n, b.data, b.len), 0);

	/* Flip one byte of the block. */
	b.data[b.len - 1] ^= 1;
	ck_assert_int_eq(lfs_car_verify(&n, b.data, b.len), -EBADMSG);
	ck_assert_uint_eq(n, 1);
	b.data[b.len - 1] ^= 1;

	/* Flip one byte of the digest. */
	b.data[second + 1 + 4 + 10] ^= 0x80;
	ck_assert_int_eq(lfs_car_verify(&n, b.data, b.len), -EBADMSG);
	ck_assert_uint_eq(n, 1);
	b.data[second + 1 + 4 + 10] ^= 0x80;

	/* A CID for other bytes, written by a caller who vouched wrongly. */
	struct lfs_cid wrong = cid_of_str(LFS_CODEC_RAW, "something else");
	ck_assert_int_eq(lfs_car_write_block(&b, &wrong, "data", 4), 0);
	ck_assert_int_eq(lfs_car_verify(&n, b.data, b.len), -EBADMSG);
	ck_assert_uint_eq(n, 2);
	lfs_buf_release(&b);
}
END_TEST

/* A section with a hand-made CID prefix and a correct digest of data. */
static void put_section_prefix(struct lfs_buf *b, const uint8_t *prefix,
			       size_t plen, const char *data)
{
	uint8_t d[32];
	size_t dlen = strlen(data);
	crypto_hash_sha256(d, (const uint8_t *)data, dlen);
	put_varint(b, plen + 32 + dlen);
	lfs_buf_append(b, prefix, plen);
	lfs_buf_append(b, d, 32);
	lfs_buf_append(b, data, dlen);
}

START_TEST(test_unsupported_cids)
{
	static const struct {
		uint8_t prefix[5];
		size_t len;
		int want;
	} cases[] = {
		{{0x12, 0x20}, 2, -EPROTONOSUPPORT},             /* CIDv0 */
		{{0x01, 0x70, 0x12, 0x20}, 4, -EPROTONOSUPPORT}, /* dag-pb */
		{{0x01, 0xa9, 0x02, 0x12, 0x20},
		 5,
		 -EPROTONOSUPPORT},                              /* dag-json */
		{{0x01, 0x55, 0x13, 0x20}, 4, -EPROTONOSUPPORT}, /* sha512 */
		{{0x01, 0x55, 0x12, 0x10}, 4, -EPROTONOSUPPORT}, /* 16 B */
		{{0x02, 0x55, 0x12, 0x20}, 4, -EPROTONOSUPPORT}, /* v2 */
		{{0x01, 0x55, 0x12, 0x20}, 4, 0},                /* control */
		{{0x01, 0x71, 0x12, 0x20}, 4, 0},                /* control */
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct lfs_buf b;
		size_t n;
		lfs_buf_init(&b, 0);
		put_good_header(&b);
		put_raw(&b, "before");
		put_section_prefix(&b, cases[i].prefix, cases[i].len,
				   "payload");
		ck_assert_msg(lfs_car_verify(&n, b.data, b.len) ==
				      cases[i].want,
			      "case %zu", i);
		ck_assert_uint_eq(n, cases[i].want ? 1 : 2);
		lfs_buf_release(&b);
	}
}
END_TEST

/* ---- header ---- */

/* Frame raw header bytes and return what init says. */
static int header_rc(const uint8_t *h, size_t n)
{
	struct lfs_buf b;
	lfs_buf_init(&b, 0);
	put_framed(&b, h, n);
	int rc = init_rc(&b);
	lfs_buf_release(&b);
	return rc;
}

#define HDR(...)                                                               \
	header_rc((const uint8_t[]){__VA_ARGS__},                              \
		  sizeof((const uint8_t[]){__VA_ARGS__}))

#define K_ROOTS   0x65, 'r', 'o', 'o', 't', 's'
#define K_VERSION 0x67, 'v', 'e', 'r', 's', 'i', 'o', 'n'

START_TEST(test_header_shape)
{
	/* The control: canonical, empty roots. */
	ck_assert_int_eq(HDR(0xa2, K_ROOTS, 0x80, K_VERSION, 0x01), 0);

	/* Non-canonical CBOR. */
	ck_assert_int_eq(HDR(0xa2, K_VERSION, 0x01, K_ROOTS, 0x80), -EBADMSG);
	ck_assert_int_eq(HDR(0xa2, K_ROOTS, 0x80, K_VERSION, 0x18, 0x01),
			 -EBADMSG);
	ck_assert_int_eq(HDR(0xa2, K_ROOTS, 0x98, 0x00, K_VERSION, 0x01),
			 -EBADMSG);
	ck_assert_int_eq(HDR(0xb8, 0x02, K_ROOTS, 0x80, K_VERSION, 0x01),
			 -EBADMSG);
	ck_assert_int_eq(HDR(0xbf, K_ROOTS, 0x80, K_VERSION, 0x01, 0xff),
			 -EBADMSG);
	ck_assert_int_eq(HDR(0xa2, K_ROOTS, 0x9f, 0xff, K_VERSION, 0x01),
			 -EBADMSG);
	/* Trailing byte inside the header. */
	ck_assert_int_eq(HDR(0xa2, K_ROOTS, 0x80, K_VERSION, 0x01, 0x00),
			 -EBADMSG);
	/* Duplicate key. */
	ck_assert_int_eq(HDR(0xa2, K_ROOTS, 0x80, K_ROOTS, 0x80), -EBADMSG);

	/* Extra or missing keys. */
	ck_assert_int_eq(HDR(0xa3, 0x65, 'e', 'x', 't', 'r', 'a', 0xf6, K_ROOTS,
			     0x80, K_VERSION, 0x01),
			 -EBADMSG);
	ck_assert_int_eq(HDR(0xa3, K_ROOTS, 0x80, K_VERSION, 0x01, 0x68, 'v',
			     'e', 'r', 's', 'i', 'o', 'n', '2', 0xf6),
			 -EBADMSG);
	ck_assert_int_eq(HDR(0xa1, K_VERSION, 0x01), -EBADMSG);
	ck_assert_int_eq(HDR(0xa1, K_ROOTS, 0x80), -EBADMSG);
	ck_assert_int_eq(HDR(0xa0), -EBADMSG);
	ck_assert_int_eq(
		HDR(0xa2, 0x65, 'r', 'o', 'o', 't', 'z', 0x80, K_VERSION, 0x01),
		-EBADMSG);

	/* Not a map. */
	ck_assert_int_eq(HDR(0x80), -EBADMSG);
	ck_assert_int_eq(HDR(0x01), -EBADMSG);
	ck_assert_int_eq(HDR(0xf6), -EBADMSG);

	/* Versions. */
	ck_assert_int_eq(HDR(0xa2, K_ROOTS, 0x80, K_VERSION, 0x02),
			 -EPROTONOSUPPORT);
	ck_assert_int_eq(HDR(0xa2, K_ROOTS, 0x80, K_VERSION, 0x00),
			 -EPROTONOSUPPORT);
	ck_assert_int_eq(HDR(0xa2, K_ROOTS, 0x80, K_VERSION, 0x20),
			 -EPROTONOSUPPORT);
	ck_assert_int_eq(HDR(0xa2, K_ROOTS, 0x80, K_VERSION, 0x1b, 0xff, 0xff,
			     0xff, 0xff, 0xff, 0xff, 0xff, 0xff),
			 -EPROTONOSUPPORT);
	ck_assert_int_eq(HDR(0xa2, K_ROOTS, 0x80, K_VERSION, 0x61, '1'),
			 -EBADMSG);
	ck_assert_int_eq(HDR(0xa2, K_ROOTS, 0x80, K_VERSION, 0xfb, 0x3f, 0xf0,
			     0, 0, 0, 0, 0, 0),
			 -EBADMSG);
	ck_assert_int_eq(HDR(0xa2, K_ROOTS, 0x80, K_VERSION, 0xf6), -EBADMSG);
	/* The CARv2 pragma, {"version": 2}: reported as a version. */
	ck_assert_int_eq(HDR(0xa1, K_VERSION, 0x02), -EPROTONOSUPPORT);

	/* Roots that are not an array of links. */
	ck_assert_int_eq(HDR(0xa2, K_ROOTS, 0xf6, K_VERSION, 0x01), -EBADMSG);
	ck_assert_int_eq(HDR(0xa2, K_ROOTS, 0x81, 0x01, K_VERSION, 0x01),
			 -EBADMSG);
	ck_assert_int_eq(HDR(0xa2, K_ROOTS, 0xa0, K_VERSION, 0x01), -EBADMSG);
	ck_assert_int_eq(HDR(0xa2, K_ROOTS, 0x81, 0x80, K_VERSION, 0x01),
			 -EBADMSG);
}
END_TEST

START_TEST(test_header_roots)
{
	struct lfs_cid c = cid_of_str(LFS_CODEC_RAW, "x");
	struct lfs_buf h, b;
	uint8_t raw[LFS_CID_BYTES];

	lfs_buf_init(&h, 0);
	lfs_buf_init(&b, 0);

	/* A root that is a link is fine; next to a byte string it is not. */
	lfs_cbor_put_head(&h, MAJ_MAP, 2);
	put_key(&h, "roots");
	lfs_cbor_put_head(&h, MAJ_ARRAY, 2);
	lfs_cbor_put_link(&h, &c);
	lfs_cid_to_bytes(raw, &c);
	lfs_cbor_put_bytes(&h, raw, sizeof(raw));
	put_key(&h, "version");
	lfs_cbor_put_int(&h, 1);
	frame_header(&b, &h);
	ck_assert_int_eq(init_rc(&b), -EBADMSG);

	/* "roots" is a bare link, not an array. */
	lfs_buf_reset(&h);
	lfs_buf_reset(&b);
	lfs_cbor_put_head(&h, MAJ_MAP, 2);
	put_key(&h, "roots");
	lfs_cbor_put_link(&h, &c);
	put_key(&h, "version");
	lfs_cbor_put_int(&h, 1);
	frame_header(&b, &h);
	ck_assert_int_eq(init_rc(&b), -EBADMSG);

	/* A root link to a CIDv0 / a dag-pb CID. */
	for (int v0 = 0; v0 < 2; v0++) {
		uint8_t l[1 + LFS_CID_BYTES] = {0x00, 0x01, 0x70, 0x12, 0x20};
		size_t llen = sizeof(l);
		if (v0) {
			l[1] = 0x12;
			l[2] = 0x20;
			llen = 1 + 34;
		}
		lfs_buf_reset(&h);
		lfs_buf_reset(&b);
		lfs_cbor_put_head(&h, MAJ_MAP, 2);
		put_key(&h, "roots");
		lfs_cbor_put_head(&h, MAJ_ARRAY, 1);
		lfs_cbor_put_head(&h, MAJ_TAG, 42);
		lfs_cbor_put_bytes(&h, l, llen);
		put_key(&h, "version");
		lfs_cbor_put_int(&h, 1);
		frame_header(&b, &h);
		ck_assert_int_eq(init_rc(&b), -EPROTONOSUPPORT);
	}

	lfs_buf_release(&h);
	lfs_buf_release(&b);
}
END_TEST

START_TEST(test_header_lengths)
{
	struct lfs_buf b;
	lfs_buf_init(&b, 0);

	/* Empty input, zero length, beyond the file. */
	ck_assert_int_eq(
		lfs_car_reader_init(&(struct lfs_car_reader){0}, NULL, 0),
		-EBADMSG);
	put_varint(&b, 0);
	ck_assert_int_eq(init_rc(&b), -EBADMSG);
	lfs_buf_reset(&b);
	put_good_header(&b);
	b.len--;
	ck_assert_int_eq(init_rc(&b), -EBADMSG);

	/* Over the cap: -EFBIG before looking for the bytes. */
	lfs_buf_reset(&b);
	put_varint(&b, LFS_CAR_MAX_HEADER + 1);
	ck_assert_int_eq(init_rc(&b), -EFBIG);
	lfs_buf_reset(&b);
	put_varint(&b, (uint64_t)1 << 62);
	ck_assert_int_eq(init_rc(&b), -EFBIG);
	/* At the cap but missing: truncated. */
	lfs_buf_reset(&b);
	put_varint(&b, LFS_CAR_MAX_HEADER);
	ck_assert_int_eq(init_rc(&b), -EBADMSG);

	/*
	 * Exactly at the cap, and as costly to decode as a header can be:
	 * one root, an array of 65516 empty byte strings. Must be a clean
	 * -EBADMSG (not a link), not -ENOMEM from the decoder's arena.
	 */
	struct lfs_buf h;
	size_t items = LFS_CAR_MAX_HEADER - 20;
	lfs_buf_init(&h, 0);
	lfs_cbor_put_head(&h, MAJ_MAP, 2);
	put_key(&h, "roots");
	lfs_cbor_put_head(&h, MAJ_ARRAY, 1);
	lfs_cbor_put_head(&h, MAJ_ARRAY, items);
	for (size_t i = 0; i < items; i++)
		lfs_buf_append_byte(&h, 0x40);
	put_key(&h, "version");
	lfs_cbor_put_int(&h, 1);
	ck_assert_uint_eq(h.len, LFS_CAR_MAX_HEADER);
	lfs_buf_reset(&b);
	frame_header(&b, &h);
	ck_assert_int_eq(init_rc(&b), -EBADMSG);
	/* One more byte is over the cap. */
	lfs_buf_reset(&b);
	lfs_buf_append_byte(&h, 0x00);
	frame_header(&b, &h);
	ck_assert_int_eq(init_rc(&b), -EFBIG);
	lfs_buf_release(&h);
	lfs_buf_release(&b);
}
END_TEST

/* ---- sections ---- */

START_TEST(test_section_lengths)
{
	struct lfs_buf b;
	size_t n, base;
	uint8_t cidb[LFS_CID_BYTES];
	struct lfs_cid c = cid_of_str(LFS_CODEC_RAW, "abc");
	lfs_cid_to_bytes(cidb, &c);

	lfs_buf_init(&b, 0);
	put_good_header(&b);
	put_raw(&b, "one");
	base = b.len;

	/* Length 0. */
	put_varint(&b, 0);
	ck_assert_int_eq(lfs_car_verify(&n, b.data, b.len), -EBADMSG);
	ck_assert_uint_eq(n, 1);

	/* Beyond the file, by one byte. */
	b.len = base;
	put_varint(&b, LFS_CID_BYTES + 4);
	lfs_buf_append(&b, cidb, sizeof(cidb));
	lfs_buf_append(&b, "abc", 3);
	ck_assert_int_eq(lfs_car_verify(&n, b.data, b.len), -EBADMSG);
	ck_assert_uint_eq(n, 1);

	/* Shorter than a CID. */
	b.len = base;
	put_framed(&b, cidb, 10);
	ck_assert_int_eq(lfs_car_verify(&n, b.data, b.len), -EBADMSG);
	b.len = base;
	put_framed(&b, cidb, LFS_CID_BYTES - 1);
	ck_assert_int_eq(lfs_car_verify(&n, b.data, b.len), -EBADMSG);

	/* Claimed over the cap with nothing after it: -EFBIG. */
	b.len = base;
	put_varint(&b, LFS_CAR_MAX_SECTION + 1);
	ck_assert_int_eq(lfs_car_verify(&n, b.data, b.len), -EFBIG);
	ck_assert_uint_eq(n, 1);
	b.len = base;
	put_varint(&b, ((uint64_t)1 << 63) - 1);
	ck_assert_int_eq(lfs_car_verify(&n, b.data, b.len), -EFBIG);
	lfs_buf_release(&b);
}
END_TEST

START_TEST(test_section_cap)
{
	struct lfs_buf b;
	struct lfs_cid c;
	size_t n, max = LFS_CAR_MAX_SECTION - LFS_CID_BYTES;
	uint8_t *data = calloc(1, max + 1);
	ck_assert_ptr_nonnull(data);

	/* Exactly at the cap: written and read. */
	lfs_buf_init(&b, 0);
	put_good_header(&b);
	ck_assert_int_eq(lfs_car_put_block(&b, &c, LFS_CODEC_RAW, data, max),
			 0);
	ck_assert_int_eq(lfs_car_verify(&n, b.data, b.len), 0);
	ck_assert_uint_eq(n, 1);

	/* One byte more: the writer refuses and appends nothing. */
	size_t before = b.len;
	ck_assert_int_eq(
		lfs_car_put_block(&b, &c, LFS_CODEC_RAW, data, max + 1),
		-EFBIG);
	ck_assert_int_eq(lfs_car_write_block(&b, &c, data, max + 1), -EFBIG);
	ck_assert_uint_eq(b.len, before);
	ck_assert_int_eq(b.err, 0);

	/* Made by hand, with a matching CID: the reader refuses it. */
	lfs_buf_reset(&b);
	put_good_header(&b);
	lfs_cid_of(&c, LFS_CODEC_RAW, data, max + 1);
	uint8_t cidb[LFS_CID_BYTES];
	lfs_cid_to_bytes(cidb, &c);
	put_varint(&b, LFS_CAR_MAX_SECTION + 1);
	lfs_buf_append(&b, cidb, sizeof(cidb));
	lfs_buf_append(&b, data, max + 1);
	ck_assert_int_eq(b.err, 0);
	ck_assert_int_eq(lfs_car_verify(&n, b.data, b.len), -EFBIG);
	ck_assert_uint_eq(n, 0);

	lfs_buf_release(&b);
	free(data);
}
END_TEST

START_TEST(test_varints)
{
	struct lfs_buf b, good;
	size_t n;

	lfs_buf_init(&good, 0);
	put_good_header(&good);
	put_raw(&good, "abc");
	ck_assert_uint_eq(good.data[0], 0x3a);

	/* Header length 58 padded to two bytes: ba 00. */
	lfs_buf_init(&b, 0);
	lfs_buf_append_byte(&b, 0xba);
	lfs_buf_append_byte(&b, 0x00);
	lfs_buf_append(&b, good.data + 1, good.len - 1);
	ck_assert_int_eq(lfs_car_verify(&n, b.data, b.len), -EBADMSG);

	/* Section length 39 (0x27) padded: a7 00. */
	size_t hdr = 59;
	ck_assert_uint_eq(good.data[hdr], 0x27);
	lfs_buf_reset(&b);
	lfs_buf_append(&b, good.data, hdr);
	lfs_buf_append_byte(&b, 0xa7);
	lfs_buf_append_byte(&b, 0x00);
	lfs_buf_append(&b, good.data + hdr + 1, good.len - hdr - 1);
	ck_assert_int_eq(lfs_car_verify(&n, b.data, b.len), -EBADMSG);
	ck_assert_uint_eq(n, 0);

	/* Ten-byte and 64-bit section lengths. */
	static const uint8_t ten[] = {0xff, 0xff, 0xff, 0xff, 0xff,
				      0xff, 0xff, 0xff, 0xff, 0x01};
	static const uint8_t bit63[] = {0xff, 0xff, 0xff, 0xff, 0xff,
					0xff, 0xff, 0xff, 0xff};
	lfs_buf_reset(&b);
	lfs_buf_append(&b, good.data, hdr);
	lfs_buf_append(&b, ten, sizeof(ten));
	ck_assert_int_eq(lfs_car_verify(&n, b.data, b.len), -EBADMSG);
	b.len = hdr;
	lfs_buf_append(&b, bit63, sizeof(bit63));
	ck_assert_int_eq(lfs_car_verify(&n, b.data, b.len), -EBADMSG);
	/* A continuation byte and then the end. */
	b.len = hdr;
	lfs_buf_append_byte(&b, 0x80);
	ck_assert_int_eq(lfs_car_verify(&n, b.data, b.len), -EBADMSG);

	lfs_buf_release(&b);
	lfs_buf_release(&good);
}
END_TEST

START_TEST(test_sticky_error)
{
	struct lfs_buf b;
	struct lfs_car_reader r;
	struct lfs_cid cid, sentinel;
	const uint8_t *data;
	size_t len;

	lfs_buf_init(&b, 0);
	put_good_header(&b);
	put_raw(&b, "one");
	put_raw(&b, "two");
	size_t end_two = b.len;
	put_raw(&b, "three");
	b.data[end_two - 1] ^= 0xff; /* corrupt "two" */

	ck_assert_int_eq(lfs_car_reader_init(&r, b.data, b.len), 0);
	ck_assert_int_eq(lfs_car_reader_next(&r, &cid, &data, &len), 1);
	ck_assert_uint_eq(len, 3);
	ck_assert(memcmp(data, "one", 3) == 0);

	memset(&sentinel, 0xee, sizeof(sentinel));
	cid = sentinel;
	data = NULL;
	len = 12345;
	for (int i = 0; i < 3; i++) {
		ck_assert_int_eq(lfs_car_reader_next(&r, &cid, &data, &len),
				 -EBADMSG);
		/* Nothing is returned for the bad section or after it. */
		ck_assert(memcmp(&cid, &sentinel, sizeof(cid)) == 0);
		ck_assert_ptr_null(data);
		ck_assert_uint_eq(len, 12345);
	}
	ck_assert_int_eq(r.err, -EBADMSG);
	lfs_car_reader_release(&r);
	lfs_buf_release(&b);
}
END_TEST

START_TEST(test_verify_counts)
{
	struct lfs_buf b;
	size_t n = 99, marks[6];

	lfs_buf_init(&b, 0);
	ck_assert_int_eq(lfs_car_verify(&n, NULL, 0), -EBADMSG);
	ck_assert_uint_eq(n, 0);

	put_good_header(&b);
	marks[0] = b.len;
	for (int i = 0; i < 5; i++) {
		char s[8];
		snprintf(s, sizeof(s), "blk%d", i);
		put_raw(&b, s);
		marks[i + 1] = b.len;
	}
	ck_assert_int_eq(lfs_car_verify(&n, b.data, b.len), 0);
	ck_assert_uint_eq(n, 5);
	ck_assert_int_eq(lfs_car_verify(NULL, b.data, b.len), 0);

	/* Corrupt block k: exactly k good ones before it. */
	for (size_t k = 0; k < 5; k++) {
		b.data[marks[k + 1] - 1] ^= 1;
		ck_assert_int_eq(lfs_car_verify(&n, b.data, b.len), -EBADMSG);
		ck_assert_uint_eq(n, k);
		b.data[marks[k + 1] - 1] ^= 1;
	}

	/* Header failure: no blocks. */
	b.data[2] ^= 1;
	ck_assert_int_eq(lfs_car_verify(&n, b.data, b.len), -EBADMSG);
	ck_assert_uint_eq(n, 0);
	lfs_buf_release(&b);
}
END_TEST

/* ---- writer errors ---- */

START_TEST(test_writer_errors)
{
	struct lfs_buf b;
	struct lfs_cid bad = cid_of_str(LFS_CODEC_RAW, "x"), c;
	bad.codec = 0x70;

	lfs_buf_init(&b, 0);
	ck_assert_int_eq(lfs_car_write_header(&b, &bad, 1), -EINVAL);
	ck_assert_int_eq(lfs_car_write_block(&b, &bad, "x", 1), -EINVAL);
	ck_assert_int_eq(lfs_car_put_block(&b, &c, 0x70, "x", 1), -EINVAL);
	ck_assert_uint_eq(b.len, 0);
	ck_assert_int_eq(b.err, 0);
	lfs_buf_release(&b);

	/* A capped buffer: all or nothing, with the buffer's error. */
	lfs_buf_init(&b, 60);
	put_good_header(&b);
	ck_assert_uint_eq(b.len, 59);
	memset(&c, 0xee, sizeof(c));
	struct lfs_cid keep = c;
	ck_assert_int_eq(lfs_car_put_block(&b, &c, LFS_CODEC_RAW, "abc", 3),
			 -EFBIG);
	ck_assert(memcmp(&c, &keep, sizeof(c)) == 0);
	ck_assert_uint_eq(b.len, 59);
	lfs_buf_release(&b);

	lfs_buf_init(&b, 58);
	struct lfs_cid root = cid_of_str(LFS_CODEC_RAW, "r");
	ck_assert_int_eq(lfs_car_write_header(&b, &root, 1), -EFBIG);
	ck_assert_uint_eq(b.len, 0);
	/* The error is the buffer's and sticks. */
	ck_assert_int_eq(lfs_car_write_header(&b, NULL, 0), -EFBIG);
	lfs_buf_release(&b);
}
END_TEST

static Suite *car_suite(void)
{
	Suite *s = suite_create("car");
	TCase *tc = tcase_create("car");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_empty_car);
	tcase_add_test(tc, test_one_block);
	tcase_add_test(tc, test_many_blocks);
	tcase_add_test(tc, test_zero_roots_with_blocks);
	tcase_add_test(tc, test_max_roots);
	tcase_add_test(tc, test_known_bytes);
	tcase_add_test(tc, test_truncation);
	tcase_add_test(tc, test_hash_mismatch);
	tcase_add_test(tc, test_unsupported_cids);
	tcase_add_test(tc, test_header_shape);
	tcase_add_test(tc, test_header_roots);
	tcase_add_test(tc, test_header_lengths);
	tcase_add_test(tc, test_section_lengths);
	tcase_add_test(tc, test_section_cap);
	tcase_add_test(tc, test_varints);
	tcase_add_test(tc, test_sticky_error);
	tcase_add_test(tc, test_verify_counts);
	tcase_add_test(tc, test_writer_errors);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	if (sodium_init() < 0)
		return 1;
	return lfs_check_run(car_suite());
}
