/*
 * cid: content identifiers (CIDv1, multihash sha2-256).
 *
 * ledgerfs only ever makes and accepts CIDv1 with a sha2-256 multihash and
 * one of two codecs: raw (0x55) for encrypted files and opaque bytes, and
 * dag-cbor (0x71) for blocks; links may also use Fireproof's 0x18
 * (LFS_CODEC_FP_CAR) for its encrypted car files. Binary form (always 36
 * bytes):
 *
 *   0x01 <codec varint> 0x12 0x20 <32-byte digest>
 *
 * Text form: multibase base32 lower-case without padding, prefixed 'b'
 * (59 characters). CIDv0 ("Qm..."), other multibases, other hash functions
 * and other codecs are rejected with -EPROTONOSUPPORT; malformed input with
 * -EBADMSG (binary) or -EINVAL (text).
 *
 * A struct lfs_cid is a plain value: copy it, compare it with memcmp via
 * lfs_cid_cmp(). No function here allocates.
 */
#ifndef LFS_CID_H
#define LFS_CID_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define LFS_CODEC_RAW      0x55
#define LFS_CODEC_DAG_CBOR 0x71
/*
 * Fireproof's private codec for its encrypted CAR files (baembei...): in the
 * multicodec table 0x18 is shake-128, but Fireproof links its car files with
 * it. Accepted in links and names only; no ledgerfs block uses it.
 */
#define LFS_CODEC_FP_CAR 0x18
#define LFS_MH_SHA2_256  0x12
#define LFS_DIGEST_LEN   32

#define LFS_CID_BYTES  36 /* binary length */
#define LFS_CID_STRLEN 59 /* text length, without the NUL */

struct lfs_cid {
	uint8_t codec; /* LFS_CODEC_RAW or LFS_CODEC_DAG_CBOR */
	uint8_t digest[LFS_DIGEST_LEN];
};

/* The CID of data under codec (sha2-256 of the bytes). */
void lfs_cid_of(struct lfs_cid *out, uint8_t codec, const void *data,
		size_t len);

/* True when data hashes to cid's digest (codec is not checked). */
bool lfs_cid_matches(const struct lfs_cid *cid, const void *data, size_t len);

/* Write the 36-byte binary form into out. */
void lfs_cid_to_bytes(uint8_t out[LFS_CID_BYTES], const struct lfs_cid *cid);

/*
 * Parse a binary CID from the front of p[0..len). Returns the number of bytes
 * consumed (always 36), -EBADMSG when malformed or truncated, or
 * -EPROTONOSUPPORT for a well-formed CID of another version, codec or hash.
 */
int lfs_cid_from_bytes(struct lfs_cid *out, const uint8_t *p, size_t len);

/* Write the text form ("b" + base32) plus a NUL into out. */
void lfs_cid_to_string(char out[LFS_CID_STRLEN + 1], const struct lfs_cid *cid);

/*
 * Parse a text CID of exactly strlen(s) characters. Returns 0, -EINVAL when
 * it is not valid base32 text of the right length, or -EPROTONOSUPPORT for
 * CIDv0, another multibase, codec or hash.
 */
int lfs_cid_from_string(struct lfs_cid *out, const char *s);

/* Total order: codec, then digest bytes. */
int lfs_cid_cmp(const struct lfs_cid *a, const struct lfs_cid *b);

static inline bool lfs_cid_equal(const struct lfs_cid *a,
				 const struct lfs_cid *b)
{
	return a->codec == b->codec &&
	       memcmp(a->digest, b->digest, LFS_DIGEST_LEN) == 0;
}

/* Is c one of set[0..n)? */
static inline bool lfs_cid_in(const struct lfs_cid *set, size_t n,
			      const struct lfs_cid *c)
{
	for (size_t i = 0; i < n; i++)
		if (lfs_cid_equal(&set[i], c))
			return true;
	return false;
}

/* Copy n CIDs (n may be 0 with NULL pointers). */
static inline void lfs_cid_copy_n(struct lfs_cid *dst,
				  const struct lfs_cid *src, size_t n)
{
	for (size_t i = 0; i < n; i++)
		dst[i] = src[i];
}

/*
 * Lower-case base32 (RFC 4648 alphabet, no padding), shared with other
 * modules that print binary names. out must hold (len * 8 + 4) / 5 + 1 bytes.
 */
void lfs_base32_encode(char *out, const uint8_t *p, size_t len);

/*
 * Decode len characters of lower-case base32 into out (room for len * 5 / 8
 * bytes). Returns the number of bytes written, or -EINVAL on a character
 * outside the alphabet or non-zero trailing bits.
 */
int lfs_base32_decode(uint8_t *out, const char *s, size_t len);

#endif
