/*
 * envelope: the encrypted file format every stored CAR file is wrapped in.
 *
 * A plaintext of any length is sealed under a 32-byte key with libsodium's
 * XChaCha20-Poly1305 (IETF) in fixed-size chunks, STREAM style, so that one
 * chunk can be decrypted without the others. docs/ENVELOPE.md has the layout
 * byte by byte and the security argument; in short:
 *
 *   header (24 bytes): "LFSE" | version 1 | chunk_log2 | 0 0 | 16-byte prefix
 *   chunk i:           ciphertext of plaintext [i*C, min((i+1)*C, len)) | tag
 *
 * with C = 1 << chunk_log2, nonce = prefix | big-endian u64 i (top bit set on
 * the last chunk) and the 24-byte header as associated data of every chunk.
 * Every file has at least one chunk; only the last may be shorter than C, and
 * a last chunk is empty only when it is the only one. So the sealed length
 * alone fixes the chunk count, and sealed_size() is exact.
 *
 * A sealed file is named by the CID (raw codec, sha2-256) of its sealed
 * bytes, so any store can check a file against its name without the key.
 *
 * Errors, everywhere in this module:
 *   -EBADMSG          malformed, truncated, extended, reordered, spliced or
 *                     tampered input, a wrong key, or a name mismatch. AEAD
 *                     cannot tell a wrong key from corrupt bytes, so neither
 *                     can we: both fail authentication.
 *   -EPROTONOSUPPORT  a well-formed header of an envelope version other
 *                     than 1 (written by a newer ledgerfs).
 *   -EINVAL           a caller error: chunk_log2 out of range for sealing,
 *                     chunk index out of range.
 *   -EFBIG            a size that overflows, or out's cap would be passed.
 *   -ENOMEM           out of memory.
 *
 * Buffers: every function that writes into a struct lfs_buf appends all or
 * nothing. On failure out->len and out's bytes are as on entry; unauthenticated
 * plaintext never becomes visible (spare capacity written during a failed
 * open is wiped). As with every buf append, a buffer error (-EFBIG, -ENOMEM)
 * is also recorded in out->err, and a buffer whose sticky out->err is already
 * set is left alone and that error returned. Input pointers must not point
 * into out's storage.
 *
 * Threads: sodium_init() must have succeeded before any call. The functions
 * keep no state and may run concurrently on different buffers.
 *
 * Keys are only read, never copied or retained.
 */
#ifndef LFS_ENVELOPE_H
#define LFS_ENVELOPE_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "cid.h"

#define LFS_KEY_BYTES                   32
#define LFS_ENVELOPE_HEADER_BYTES       24
#define LFS_ENVELOPE_TAG_BYTES          16
#define LFS_ENVELOPE_VERSION            1
#define LFS_ENVELOPE_DEFAULT_CHUNK_LOG2 16 /* 64 KiB */
#define LFS_ENVELOPE_MIN_CHUNK_LOG2     10 /* 1 KiB */
#define LFS_ENVELOPE_MAX_CHUNK_LOG2     22 /* 4 MiB */

/*
 * Seal plain[0..len) under key and append the sealed file to out. chunk_log2
 * is 0 for the default or LFS_ENVELOPE_MIN..MAX_CHUNK_LOG2. *out_cid (may be
 * NULL) receives the file's name, only on success. A fresh random nonce
 * prefix is drawn every call, so sealing the same plaintext twice gives two
 * different files with two different names.
 *
 * Returns 0, -EINVAL (chunk_log2), -EFBIG (out's cap, or a len whose
 * sealed size overflows size_t: then out is not touched at all), -ENOMEM.
 */
int lfs_envelope_seal(struct lfs_buf *out, struct lfs_cid *out_cid,
		      const uint8_t key[LFS_KEY_BYTES], const uint8_t *plain,
		      size_t len, unsigned chunk_log2);

/*
 * The exact sealed length of a len-byte plaintext with chunk_log2 (0 for the
 * default); 0 when chunk_log2 is out of range or the size overflows size_t.
 */
size_t lfs_envelope_sealed_size(size_t len, unsigned chunk_log2);

/*
 * Open a whole sealed file and append its plaintext to out. When expect is
 * not NULL the sealed bytes are first checked to be named by it (raw codec,
 * same sha2-256 digest); a mismatch is -EBADMSG before any decryption.
 * Every chunk is authenticated, so success means exactly the file that was
 * sealed under key, whole.
 *
 * Returns 0, -EBADMSG, -EPROTONOSUPPORT, -EFBIG (out's cap), -ENOMEM; out is
 * unchanged on failure (see above).
 */
/*
 * A key of its own for one use of a ledger key: BLAKE2b (out_len bytes,
 * 16 to 64) keyed with key over label, so that what one use seals or
 * MACs never checks out for another.
 */
void lfs_envelope_subkey(uint8_t *out, size_t out_len,
			 const uint8_t key[LFS_KEY_BYTES], const char *label);

int lfs_envelope_open(struct lfs_buf *out, const uint8_t key[LFS_KEY_BYTES],
		      const uint8_t *sealed, size_t len,
		      const struct lfs_cid *expect);

/*
 * The geometry of a sealed file, from its header and total length, for
 * random access. Nothing in it is authenticated until a chunk opens: in
 * particular plain_len is what the length claims, and is only proven once
 * the last chunk (index nchunks - 1) opens with lfs_envelope_open_chunk().
 */
struct lfs_envelope_info {
	uint8_t header[LFS_ENVELOPE_HEADER_BYTES]; /* copy; every chunk's AD */
	unsigned chunk_log2;
	size_t chunk_size; /* C, plaintext bytes in every chunk but the last */
	size_t nchunks;    /* >= 1 */
	size_t plain_len;  /* total plaintext bytes */
	size_t sealed_len;
};

/*
 * Parse the header and check the total length. head holds the first
 * min(sealed_len, LFS_ENVELOPE_HEADER_BYTES) bytes of the file (a reader
 * that fetches ranges needs just those and the length). Plaintext byte off
 * lives in chunk off >> chunk_log2.
 *
 * Returns 0, -EBADMSG (bad magic, reserved bytes, chunk size, or a length no
 * sealed file can have) or -EPROTONOSUPPORT (version). *out is only written
 * on success.
 */
int lfs_envelope_parse(struct lfs_envelope_info *out, const uint8_t *head,
		       size_t sealed_len);

/*
 * Where chunk index lies in the sealed file: byte offset and length
 * (ciphertext and tag). Returns 0 or -EINVAL when index >= info->nchunks.
 */
int lfs_envelope_chunk_span(size_t *out_off, size_t *out_len,
			    const struct lfs_envelope_info *info, size_t index);

/*
 * Decrypt one chunk alone and append its plaintext (plaintext bytes
 * [index * C, ...) of the file) to out. chunk/chunk_len are that chunk's
 * sealed bytes, as located by lfs_envelope_chunk_span(). Success proves the
 * chunk was sealed under key, in the file whose header is info->header, at
 * this index, and whether it is the last one; it says nothing of other
 * chunks, so a reader that needs the whole file's integrity checks its name
 * or opens the whole file.
 *
 * Returns 0, -EINVAL (index), -EBADMSG (wrong length, tampered, wrong key,
 * wrong index or file), -EFBIG, -ENOMEM; out unchanged on failure.
 */
int lfs_envelope_open_chunk(struct lfs_buf *out,
			    const uint8_t key[LFS_KEY_BYTES],
			    const struct lfs_envelope_info *info, size_t index,
			    const uint8_t *chunk, size_t chunk_len);

/*
 * Checking a sealed file as its bytes arrive, without holding it (a
 * download that streams to a file): feed the bytes in order, in pieces of
 * any size; every chunk is authenticated as soon as the bytes after it
 * show whether it is the last, the last one by lfs_envelope_check_end().
 * The first failure is sticky and returned by every later call, so a file
 * sealed under another key, or junk, is refused after its first chunk.
 * Memory: one chunk (at most 4 MiB + tag), allocated at the header. A
 * check says nothing about the file's name; hash the bytes beside it.
 *
 *   struct lfs_envelope_check c;
 *   lfs_envelope_check_init(&c, key);
 *   rc = lfs_envelope_check_update(&c, piece, n);     ... for each piece
 *   rc = lfs_envelope_check_end(&c);                  0: authentic, whole
 *   lfs_envelope_check_release(&c);                   always
 *
 * Errors: -EBADMSG, -EPROTONOSUPPORT (a newer version), -ENOMEM. The key
 * is borrowed: it must outlive the check.
 */
struct lfs_envelope_check {
	const uint8_t *key;
	uint8_t header[LFS_ENVELOPE_HEADER_BYTES];
	size_t have;    /* header bytes, then bytes of the pending chunk */
	size_t stride;  /* chunk plus tag; 0 until the header is in */
	uint8_t *chunk; /* the pending chunk's bytes (stride) */
	uint64_t index; /* the pending chunk's */
	uint64_t plain; /* plaintext bytes authenticated so far */
	int err;
};

void lfs_envelope_check_init(struct lfs_envelope_check *c,
			     const uint8_t key[LFS_KEY_BYTES]);
int lfs_envelope_check_update(struct lfs_envelope_check *c, const uint8_t *data,
			      size_t len);
int lfs_envelope_check_end(struct lfs_envelope_check *c);
void lfs_envelope_check_release(struct lfs_envelope_check *c);

#endif
