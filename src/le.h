/*
 * le: unsigned integers stored little-endian in byte arrays, for the
 * on-disk formats ledgerfs defines itself (segment and import tables,
 * the size table). Header only.
 */
#ifndef LFS_LE_H
#define LFS_LE_H

#include <stdint.h>

static inline uint32_t lfs_le_get32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

static inline uint64_t lfs_le_get64(const uint8_t *p)
{
	return (uint64_t)lfs_le_get32(p) | (uint64_t)lfs_le_get32(p + 4) << 32;
}

static inline void lfs_le_put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static inline void lfs_le_put64(uint8_t *p, uint64_t v)
{
	lfs_le_put32(p, (uint32_t)v);
	lfs_le_put32(p + 4, (uint32_t)(v >> 32));
}

#endif
