/*
 * cidmap: a hash map from CID to a caller-chosen 64-bit value.
 *
 * Open addressing with linear probing over the CID digest (already uniform),
 * no deletion (the maps that need forgetting are rebuilt). Not thread-safe.
 */
#ifndef LFS_CIDMAP_H
#define LFS_CIDMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cid.h"

struct lfs_cidmap_slot {
	struct lfs_cid cid;
	uint64_t value;
	bool used;
};

struct lfs_cidmap {
	struct lfs_cidmap_slot *slots;
	size_t nslots; /* power of two, or 0 */
	size_t count;
};

void lfs_cidmap_init(struct lfs_cidmap *m);
void lfs_cidmap_release(struct lfs_cidmap *m);

/* Insert or overwrite. Returns 0 or -ENOMEM. */
int lfs_cidmap_set(struct lfs_cidmap *m, const struct lfs_cid *cid,
		   uint64_t value);

/* Returns true and fills *out (may be NULL) when cid is present. */
bool lfs_cidmap_get(const struct lfs_cidmap *m, const struct lfs_cid *cid,
		    uint64_t *out);

#endif
