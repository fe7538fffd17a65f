/*
 * car: CARv1 files (Content Addressable aRchives), in memory.
 *
 * Layout: varint(len) + header, then sections varint(len) + CID + block.
 * The header is DAG-CBOR {"roots": [link...], "version": 1}. ledgerfs's CAR
 * files are small (one transaction) or one compaction; both are handled as
 * byte arrays, never streamed from an untrusted socket.
 *
 * The reader is strict and bounded: the header must be canonical DAG-CBOR of
 * exactly that shape (at most LFS_CAR_MAX_ROOTS roots, at most
 * LFS_CAR_MAX_HEADER bytes), every section at most LFS_CAR_MAX_SECTION bytes,
 * every CID a CIDv1 sha2-256 raw or dag-cbor one, and every block must hash to
 * its CID. Any violation stops the read with an error; nothing is returned
 * for the bad section or after it.
 *
 * Errors: -EBADMSG malformed, truncated or a block whose bytes do not match
 * its CID; -EPROTONOSUPPORT a CID of an unsupported kind or a CAR version
 * other than 1 (a header whose "version" is any integer but 1, whatever its
 * other keys, so a CARv2 file is reported as such); -EFBIG a header or
 * section over its limit, or more than LFS_CAR_MAX_ROOTS roots; -ENOMEM.
 *
 * Because the reader accepts only what the writer produces (minimal varints,
 * canonical header, 36-byte CIDs), a CAR that reads cleanly to its end is
 * re-written byte for byte by lfs_car_write_header() and
 * lfs_car_write_block() over its roots and sections.
 */
#ifndef LFS_CAR_H
#define LFS_CAR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "cid.h"

#define LFS_CAR_MAX_HEADER  ((size_t)1 << 16)
#define LFS_CAR_MAX_ROOTS   1024
#define LFS_CAR_MAX_SECTION (((size_t)8 << 20) + 4096) /* a document + CID */

/*
 * Append a CARv1 header naming nroots roots to out. Returns 0, -EFBIG for
 * more than LFS_CAR_MAX_ROOTS roots, -EINVAL for a root whose codec is
 * neither raw nor dag-cbor, or the buffer's error. Writers append all or
 * nothing: on failure out's length is unchanged.
 */
int lfs_car_write_header(struct lfs_buf *out, const struct lfs_cid *roots,
			 size_t nroots);

/*
 * Append one section. The caller vouches that cid is the CID of data (use
 * lfs_car_put_block() to have it computed). -EFBIG when the section (36-byte
 * CID plus len) would pass LFS_CAR_MAX_SECTION, -EINVAL for a codec other
 * than raw or dag-cbor, or the buffer's error.
 */
int lfs_car_write_block(struct lfs_buf *out, const struct lfs_cid *cid,
			const void *data, size_t len);

/*
 * Compute the CID of data under codec, append the section, return the CID in
 * *out_cid (only on success). Errors as lfs_car_write_block().
 */
int lfs_car_put_block(struct lfs_buf *out, struct lfs_cid *out_cid,
		      uint8_t codec, const void *data, size_t len);

/*
 * A reader over a CAR held in memory. The buffer must outlive the reader;
 * returned block pointers point into it. Not thread-safe.
 */
struct lfs_car_reader {
	const uint8_t *p;
	size_t len;
	size_t pos;            /* offset of the next section */
	struct lfs_cid *roots; /* owned, nroots entries */
	size_t nroots;
	int err;      /* sticky: once a section fails, next() keeps failing */
	bool trusted; /* set after init to skip hash checks (see below) */
};

/*
 * Parse the header. On failure nothing needs releasing (and releasing is
 * harmless).
 */
int lfs_car_reader_init(struct lfs_car_reader *r, const uint8_t *p, size_t len);

/*
 * Read the next section, verifying its hash — unless the caller set
 * r->trusted, for bytes it wrote itself or that a cipher already
 * authenticated as its own. Returns 1 with the block in the
 * out-parameters, 0 at a clean end of file, or a negative error; the
 * out-parameters are only written when 1 is returned. An empty block
 * (section of just a CID) is valid.
 */
int lfs_car_reader_next(struct lfs_car_reader *r, struct lfs_cid *out_cid,
			const uint8_t **out_data, size_t *out_len);

/* Free the roots. Idempotent. */
void lfs_car_reader_release(struct lfs_car_reader *r);

/*
 * Check a whole CAR: header and every block. Returns 0 or the first error;
 * *out_blocks (may be NULL) receives the number of good blocks before it.
 */
int lfs_car_verify(size_t *out_blocks, const uint8_t *p, size_t len);

#endif
