/*
 * cidtab: the records of a caller's array, found by the CID each record
 * holds. Open addressing with linear probing over 4-byte slots (record
 * index + 1; 0 is empty), kept at most half full, no deletion (clear and
 * add again). The table copies no CID: a probe compares against the
 * record itself, so an entry costs 8 bytes at most where a map holding
 * the CID and a value (cidmap.h) costs over 100 at the same load. That is
 * what a store that keeps one record per block, per CAR file and per
 * segment record for its whole life can afford.
 *
 * The array may move between calls (realloc): every call takes its
 * current base. Record i's CID is at base + i * stride + offset. Not
 * thread-safe.
 */
#ifndef LFS_CIDTAB_H
#define LFS_CIDTAB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cid.h"

struct lfs_cidtab {
	uint32_t *slots;
	size_t nslots; /* power of two, or 0 */
	size_t count;
	size_t stride, offset;
};

/* An empty table over records of stride bytes, the CID offset bytes in. */
void lfs_cidtab_init(struct lfs_cidtab *t, size_t stride, size_t offset);
void lfs_cidtab_release(struct lfs_cidtab *t);

/* Forget every entry, keeping the storage. */
void lfs_cidtab_clear(struct lfs_cidtab *t);

/* The index of the record holding cid, or false. */
bool lfs_cidtab_find(const struct lfs_cidtab *t, const void *base,
		     const struct lfs_cid *cid, size_t *out);

/* Add record idx, whose CID the table must not hold yet: 0, -ENOMEM, or
 * -EFBIG past UINT32_MAX - 1 records. */
int lfs_cidtab_add(struct lfs_cidtab *t, const void *base, size_t idx);

#endif
