#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "envelope.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#define PREFIX_OFF   8
#define PREFIX_BYTES 16
#define LAST_FLAG    ((uint64_t)1 << 63)

_Static_assert(crypto_aead_xchacha20poly1305_ietf_KEYBYTES == LFS_KEY_BYTES,
	       "key size");
_Static_assert(crypto_aead_xchacha20poly1305_ietf_NPUBBYTES == PREFIX_BYTES + 8,
	       "nonce size");
_Static_assert(crypto_aead_xchacha20poly1305_ietf_ABYTES ==
		       LFS_ENVELOPE_TAG_BYTES,
	       "tag size");
_Static_assert(PREFIX_OFF + PREFIX_BYTES == LFS_ENVELOPE_HEADER_BYTES,
	       "header size");

static const uint8_t magic[4] = {'L', 'F', 'S', 'E'};

/* Stands in for a NULL plaintext pointer when the length is zero. */
static const uint8_t nothing[1];

static bool log2_ok(unsigned chunk_log2)
{
	return chunk_log2 >= LFS_ENVELOPE_MIN_CHUNK_LOG2 &&
	       chunk_log2 <= LFS_ENVELOPE_MAX_CHUNK_LOG2;
}

static void make_nonce(uint8_t nonce[PREFIX_BYTES + 8], const uint8_t *header,
		       size_t index, bool last)
{
	uint64_t ctr = (uint64_t)index | (last ? LAST_FLAG : 0);

	memcpy(nonce, header + PREFIX_OFF, PREFIX_BYTES);
	for (int k = 0; k < 8; k++)
		nonce[PREFIX_BYTES + k] = (uint8_t)(ctr >> (56 - 8 * k));
}

size_t lfs_envelope_sealed_size(size_t len, unsigned chunk_log2)
{
	if (chunk_log2 == 0)
		chunk_log2 = LFS_ENVELOPE_DEFAULT_CHUNK_LOG2;
	if (!log2_ok(chunk_log2))
		return 0;
	size_t n = len ? ((len - 1) >> chunk_log2) + 1 : 1;
	size_t fixed = LFS_ENVELOPE_HEADER_BYTES + n * LFS_ENVELOPE_TAG_BYTES;
	if (len > SIZE_MAX - fixed)
		return 0;
	return fixed + len;
}

/*
 * Nonce prefixes: 16 bytes of randombytes_buf() each, as ever, but drawn
 * a pool at a time (one system call per 256 files, not one per file).
 * Each thread has its own pool; a child of fork() must not hand out the
 * bytes its parent will, so the forking thread's pool (the only one the
 * child can use) is emptied in the child.
 */
#define POOL_BYTES (PREFIX_BYTES * 256)

static _Thread_local uint8_t pool[POOL_BYTES];
static _Thread_local size_t pool_left;
static pthread_once_t pool_once = PTHREAD_ONCE_INIT;

static void pool_forget(void)
{
	pool_left = 0;
}

static void pool_init(void)
{
	pthread_atfork(NULL, NULL, pool_forget);
}

static void draw_prefix(uint8_t out[PREFIX_BYTES])
{
	pthread_once(&pool_once, pool_init);
	if (pool_left < PREFIX_BYTES) {
		randombytes_buf(pool, sizeof(pool));
		pool_left = sizeof(pool);
	}
	pool_left -= PREFIX_BYTES;
	memcpy(out, pool + pool_left, PREFIX_BYTES);
}

int lfs_envelope_seal(struct lfs_buf *out, struct lfs_cid *out_cid,
		      const uint8_t key[LFS_KEY_BYTES], const uint8_t *plain,
		      size_t len, unsigned chunk_log2)
{
	if (chunk_log2 == 0)
		chunk_log2 = LFS_ENVELOPE_DEFAULT_CHUNK_LOG2;
	if (!log2_ok(chunk_log2))
		return -EINVAL;
	if (out->err)
		return out->err;
	size_t total = lfs_envelope_sealed_size(len, chunk_log2);
	if (total == 0)
		return -EFBIG;
	int rc = lfs_buf_reserve(out, total);
	if (rc)
		return rc;

	uint8_t *hdr = out->data + out->len;
	memcpy(hdr, magic, sizeof(magic));
	hdr[4] = LFS_ENVELOPE_VERSION;
	hdr[5] = (uint8_t)chunk_log2;
	hdr[6] = 0;
	hdr[7] = 0;
	draw_prefix(hdr + PREFIX_OFF);

	size_t csize = (size_t)1 << chunk_log2;
	size_t n = len ? ((len - 1) >> chunk_log2) + 1 : 1;
	uint8_t *c = hdr + LFS_ENVELOPE_HEADER_BYTES;
	uint8_t nonce[PREFIX_BYTES + 8];
	for (size_t i = 0; i < n; i++) {
		size_t off = i << chunk_log2;
		size_t m = len - off < csize ? len - off : csize;
		make_nonce(nonce, hdr, i, i == n - 1);
		crypto_aead_xchacha20poly1305_ietf_encrypt(
			c, NULL, m ? plain + off : nothing, m, hdr,
			LFS_ENVELOPE_HEADER_BYTES, NULL, nonce, key);
		c += m + LFS_ENVELOPE_TAG_BYTES;
	}

	if (out_cid)
		lfs_cid_of(out_cid, LFS_CODEC_RAW, hdr, total);
	out->len += total;
	return 0;
}

int lfs_envelope_parse(struct lfs_envelope_info *out, const uint8_t *head,
		       size_t sealed_len)
{
	if (sealed_len < LFS_ENVELOPE_HEADER_BYTES)
		return -EBADMSG;
	if (memcmp(head, magic, sizeof(magic)) != 0)
		return -EBADMSG;
	if (head[4] != LFS_ENVELOPE_VERSION)
		return -EPROTONOSUPPORT;
	unsigned chunk_log2 = head[5];
	if (!log2_ok(chunk_log2) || head[6] != 0 || head[7] != 0)
		return -EBADMSG;

	size_t csize = (size_t)1 << chunk_log2;
	size_t stride = csize + LFS_ENVELOPE_TAG_BYTES;
	size_t body = sealed_len - LFS_ENVELOPE_HEADER_BYTES;
	size_t nfull = body / stride;
	size_t rem = body % stride;
	size_t n, last;
	if (rem == 0 && nfull > 0) {
		n = nfull;
		last = csize;
	} else if (rem >= LFS_ENVELOPE_TAG_BYTES &&
		   (nfull == 0 || rem > LFS_ENVELOPE_TAG_BYTES)) {
		n = nfull + 1;
		last = rem - LFS_ENVELOPE_TAG_BYTES;
	} else {
		return -EBADMSG;
	}
	if ((uint64_t)(n - 1) >= LAST_FLAG)
		return -EBADMSG;

	memcpy(out->header, head, LFS_ENVELOPE_HEADER_BYTES);
	out->chunk_log2 = chunk_log2;
	out->chunk_size = csize;
	out->nchunks = n;
	out->plain_len = (n - 1) * csize + last;
	out->sealed_len = sealed_len;
	return 0;
}

int lfs_envelope_chunk_span(size_t *out_off, size_t *out_len,
			    const struct lfs_envelope_info *info, size_t index)
{
	if (index >= info->nchunks)
		return -EINVAL;
	size_t stride = info->chunk_size + LFS_ENVELOPE_TAG_BYTES;
	size_t off = LFS_ENVELOPE_HEADER_BYTES + index * stride;
	*out_off = off;
	*out_len = index == info->nchunks - 1 ? info->sealed_len - off : stride;
	return 0;
}

/*
 * Authenticate and decrypt one chunk into m (room for chunk_len - tag; NULL
 * when that is 0). libsodium checks the tag before it writes to m.
 */
static int open_one(uint8_t *m, const uint8_t key[LFS_KEY_BYTES],
		    const struct lfs_envelope_info *info, size_t index,
		    const uint8_t *chunk, size_t chunk_len)
{
	uint8_t nonce[PREFIX_BYTES + 8];
	uint8_t none[1];
	if (!m)
		m = none;
	make_nonce(nonce, info->header, index, index == info->nchunks - 1);
	if (crypto_aead_xchacha20poly1305_ietf_decrypt(
		    m, NULL, NULL, chunk, chunk_len, info->header,
		    LFS_ENVELOPE_HEADER_BYTES, nonce, key) != 0)
		return -EBADMSG;
	return 0;
}

void lfs_envelope_subkey(uint8_t *out, size_t out_len,
			 const uint8_t key[LFS_KEY_BYTES], const char *label)
{
	crypto_generichash(out, out_len, (const uint8_t *)label, strlen(label),
			   key, LFS_KEY_BYTES);
}

int lfs_envelope_open(struct lfs_buf *out, const uint8_t key[LFS_KEY_BYTES],
		      const uint8_t *sealed, size_t len,
		      const struct lfs_cid *expect)
{
	if (out->err)
		return out->err;
	if (expect && (expect->codec != LFS_CODEC_RAW ||
		       !lfs_cid_matches(expect, sealed, len)))
		return -EBADMSG;

	struct lfs_envelope_info info;
	int rc = lfs_envelope_parse(&info, sealed, len);
	if (rc)
		return rc;
	rc = lfs_buf_reserve(out, info.plain_len);
	if (rc)
		return rc;

	uint8_t *dst = info.plain_len ? out->data + out->len : NULL;
	for (size_t i = 0; i < info.nchunks; i++) {
		size_t off, clen;
		lfs_envelope_chunk_span(&off, &clen, &info, i);
		uint8_t *m = clen > LFS_ENVELOPE_TAG_BYTES
				     ? dst + (i << info.chunk_log2)
				     : NULL;
		rc = open_one(m, key, &info, i, sealed + off, clen);
		if (rc) {
			if (dst)
				sodium_memzero(dst, info.plain_len);
			return rc;
		}
	}
	out->len += info.plain_len;
	return 0;
}

int lfs_envelope_open_chunk(struct lfs_buf *out,
			    const uint8_t key[LFS_KEY_BYTES],
			    const struct lfs_envelope_info *info, size_t index,
			    const uint8_t *chunk, size_t chunk_len)
{
	if (out->err)
		return out->err;
	size_t off, want;
	int rc = lfs_envelope_chunk_span(&off, &want, info, index);
	if (rc)
		return rc;
	if (chunk_len != want)
		return -EBADMSG;
	size_t m = want - LFS_ENVELOPE_TAG_BYTES;
	rc = lfs_buf_reserve(out, m);
	if (rc)
		return rc;
	rc = open_one(m ? out->data + out->len : NULL, key, info, index, chunk,
		      chunk_len);
	if (rc)
		return rc;
	out->len += m;
	return 0;
}

/* ---- checking a stream ---- */

void lfs_envelope_check_init(struct lfs_envelope_check *c,
			     const uint8_t key[LFS_KEY_BYTES])
{
	memset(c, 0, sizeof(*c));
	c->key = key;
}

/* Authenticate the pending chunk (have bytes), in place; then forget it. */
static int check_chunk(struct lfs_envelope_check *c, bool last)
{
	uint8_t nonce[PREFIX_BYTES + 8];
	make_nonce(nonce, c->header, (size_t)c->index, last);
	unsigned long long mlen = 0;
	if (c->index >= LAST_FLAG || c->have < LFS_ENVELOPE_TAG_BYTES ||
	    crypto_aead_xchacha20poly1305_ietf_decrypt(
		    c->chunk, &mlen, NULL, c->chunk, c->have, c->header,
		    LFS_ENVELOPE_HEADER_BYTES, nonce, c->key) != 0)
		return -EBADMSG;
	sodium_memzero(c->chunk, (size_t)mlen);
	c->plain += mlen;
	c->index++;
	c->have = 0;
	return 0;
}

static int check_header(struct lfs_envelope_check *c)
{
	const uint8_t *h = c->header;
	if (memcmp(h, magic, sizeof(magic)) != 0)
		return -EBADMSG;
	if (h[4] != LFS_ENVELOPE_VERSION)
		return -EPROTONOSUPPORT;
	if (!log2_ok(h[5]) || h[6] != 0 || h[7] != 0)
		return -EBADMSG;
	c->stride = ((size_t)1 << h[5]) + LFS_ENVELOPE_TAG_BYTES;
	c->have = 0;
	return (c->chunk = malloc(c->stride)) ? 0 : -ENOMEM;
}

int lfs_envelope_check_update(struct lfs_envelope_check *c, const uint8_t *data,
			      size_t len)
{
	while (!c->err && len) {
		if (!c->stride) {
			size_t n = LFS_ENVELOPE_HEADER_BYTES - c->have;
			n = n < len ? n : len;
			memcpy(c->header + c->have, data, n);
			c->have += n;
			data += n;
			len -= n;
			if (c->have == LFS_ENVELOPE_HEADER_BYTES)
				c->err = check_header(c);
			continue;
		}
		/* A full chunk with more bytes after it is not the last. */
		if (c->have == c->stride) {
			c->err = check_chunk(c, false);
			continue;
		}
		size_t n = c->stride - c->have;
		n = n < len ? n : len;
		memcpy(c->chunk + c->have, data, n);
		c->have += n;
		data += n;
		len -= n;
	}
	return c->err;
}

int lfs_envelope_check_end(struct lfs_envelope_check *c)
{
	if (!c->err && !c->stride)
		c->err = -EBADMSG; /* shorter than a header */
	/* The last chunk: empty only when it is the only one. */
	if (!c->err && (c->have < LFS_ENVELOPE_TAG_BYTES ||
			(c->have == LFS_ENVELOPE_TAG_BYTES && c->index > 0)))
		c->err = -EBADMSG;
	if (!c->err)
		c->err = check_chunk(c, true);
	return c->err;
}

void lfs_envelope_check_release(struct lfs_envelope_check *c)
{
	if (c->chunk) {
		sodium_memzero(c->chunk, c->stride);
		free(c->chunk);
	}
	memset(c, 0, sizeof(*c));
}
