/*
 * varint: unsigned LEB128 as used by multiformats (CID, multihash, CAR).
 *
 * Only minimal encodings are accepted on decode (no trailing 0x80 0x00 ...
 * padding), and values are limited to 63 bits as the multiformats spec asks.
 */
#ifndef LFS_VARINT_H
#define LFS_VARINT_H

#include <stddef.h>
#include <stdint.h>

/* Longest encoding of a 63-bit value. */
#define LFS_VARINT_MAX 9

/*
 * Encode v (must be < 2^63) into out, which has room for LFS_VARINT_MAX
 * bytes. Returns the number of bytes written.
 */
size_t lfs_varint_encode(uint8_t *out, uint64_t v);

/*
 * Decode one varint from the front of p[0..len). On success stores the value
 * in *out and returns the number of bytes consumed (> 0). Returns -EBADMSG
 * for a truncated, over-long, non-minimal or out-of-range encoding.
 */
int lfs_varint_decode(uint64_t *out, const uint8_t *p, size_t len);

#endif
