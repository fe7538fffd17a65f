#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "cid.h"

#include <errno.h>
#include <pthread.h>
#include <string.h>

#include <openssl/evp.h>
#include <sodium.h>

static const char b32_alphabet[] = "abcdefghijklmnopqrstuvwxyz234567";

/*
 * SHA-256 through libcrypto, which uses the CPU's SHA instructions where
 * there are some (3-4 times libsodium's portable code here: hashing was a
 * quarter of a commit's CPU time).
 */
static EVP_MD *sha256_md; /* fetched once: a fetch per hash costs more
			    than hashing a small block */
static pthread_once_t sha256_once = PTHREAD_ONCE_INIT;

static void sha256_fetch(void)
{
	sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL);
}

static void sha256(uint8_t out[LFS_DIGEST_LEN], const void *data, size_t len)
{
	pthread_once(&sha256_once, sha256_fetch);
	if (!sha256_md || !EVP_Digest(data, len, out, NULL, sha256_md, NULL))
		crypto_hash_sha256(out, data, len);
}

void lfs_cid_of(struct lfs_cid *out, uint8_t codec, const void *data,
		size_t len)
{
	out->codec = codec;
	sha256(out->digest, data, len);
}

bool lfs_cid_matches(const struct lfs_cid *cid, const void *data, size_t len)
{
	uint8_t d[LFS_DIGEST_LEN];
	sha256(d, data, len);
	return sodium_memcmp(d, cid->digest, sizeof(d)) == 0;
}

void lfs_cid_to_bytes(uint8_t out[LFS_CID_BYTES], const struct lfs_cid *cid)
{
	out[0] = 0x01;
	out[1] = cid->codec;
	out[2] = LFS_MH_SHA2_256;
	out[3] = LFS_DIGEST_LEN;
	memcpy(out + 4, cid->digest, LFS_DIGEST_LEN);
}

static bool codec_known(uint64_t codec)
{
	return codec == LFS_CODEC_RAW || codec == LFS_CODEC_DAG_CBOR ||
	       codec == LFS_CODEC_FP_CAR;
}

int lfs_cid_from_bytes(struct lfs_cid *out, const uint8_t *p, size_t len)
{
	if (len >= 2 && p[0] == 0x12 && p[1] == 0x20)
		return -EPROTONOSUPPORT; /* CIDv0: a bare multihash */
	if (len < 1)
		return -EBADMSG;
	if (p[0] != 0x01)
		return p[0] & 0x80 ? -EBADMSG : -EPROTONOSUPPORT;
	/* Our codecs fit one varint byte; anything longer is foreign. */
	if (len < 2)
		return -EBADMSG;
	if (p[1] & 0x80 || !codec_known(p[1]))
		return -EPROTONOSUPPORT;
	if (len < 4)
		return -EBADMSG;
	if (p[2] != LFS_MH_SHA2_256 || p[3] != LFS_DIGEST_LEN)
		return -EPROTONOSUPPORT;
	if (len < LFS_CID_BYTES)
		return -EBADMSG;
	out->codec = p[1];
	memcpy(out->digest, p + 4, LFS_DIGEST_LEN);
	return LFS_CID_BYTES;
}

void lfs_base32_encode(char *out, const uint8_t *p, size_t len)
{
	uint32_t acc = 0;
	int bits = 0;
	size_t n = 0;
	for (size_t i = 0; i < len; i++) {
		acc = (acc << 8) | p[i];
		bits += 8;
		while (bits >= 5) {
			out[n++] = b32_alphabet[(acc >> (bits - 5)) & 31];
			bits -= 5;
		}
	}
	if (bits > 0)
		out[n++] = b32_alphabet[(acc << (5 - bits)) & 31];
	out[n] = '\0';
}

static int b32_value(char c)
{
	if (c >= 'a' && c <= 'z')
		return c - 'a';
	if (c >= '2' && c <= '7')
		return c - '2' + 26;
	return -1;
}

int lfs_base32_decode(uint8_t *out, const char *s, size_t len)
{
	uint32_t acc = 0;
	int bits = 0;
	size_t n = 0;
	for (size_t i = 0; i < len; i++) {
		int v = b32_value(s[i]);
		if (v < 0)
			return -EINVAL;
		acc = (acc << 5) | (uint32_t)v;
		bits += 5;
		if (bits >= 8) {
			out[n++] = (uint8_t)(acc >> (bits - 8));
			bits -= 8;
		}
	}
	if (bits >= 5 || (acc & ((1u << bits) - 1)) != 0)
		return -EINVAL;
	return (int)n;
}

void lfs_cid_to_string(char out[LFS_CID_STRLEN + 1], const struct lfs_cid *cid)
{
	uint8_t bytes[LFS_CID_BYTES];
	lfs_cid_to_bytes(bytes, cid);
	out[0] = 'b';
	lfs_base32_encode(out + 1, bytes, sizeof(bytes));
}

int lfs_cid_from_string(struct lfs_cid *out, const char *s)
{
	size_t len = strlen(s);
	if (len == 46 && s[0] == 'Q' && s[1] == 'm')
		return -EPROTONOSUPPORT; /* CIDv0, base58btc */
	if (len < 2)
		return -EINVAL;
	if (s[0] != 'b')
		return -EPROTONOSUPPORT; /* another multibase */
	uint8_t bytes[LFS_CID_BYTES + 8];
	if (len - 1 > (sizeof(bytes) * 8) / 5) {
		/*
		 * Longer than ours: the first 8 characters (5 bytes) hold the
		 * header, enough to tell a foreign CID (sha2-512...) from junk.
		 */
		int n = lfs_base32_decode(bytes, s + 1, 8);
		if (n == 5 &&
		    lfs_cid_from_bytes(out, bytes, 5) == -EPROTONOSUPPORT)
			return -EPROTONOSUPPORT;
		return -EINVAL;
	}
	int n = lfs_base32_decode(bytes, s + 1, len - 1);
	if (n < 0)
		return n;
	int rc = lfs_cid_from_bytes(out, bytes, (size_t)n);
	if (rc == -EBADMSG)
		return -EINVAL;
	if (rc < 0)
		return rc;
	return rc == n ? 0 : -EINVAL;
}

int lfs_cid_cmp(const struct lfs_cid *a, const struct lfs_cid *b)
{
	if (a->codec != b->codec)
		return a->codec < b->codec ? -1 : 1;
	return memcmp(a->digest, b->digest, LFS_DIGEST_LEN);
}
