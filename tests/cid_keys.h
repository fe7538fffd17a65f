/*
 * The keys the CID map's and the CID table's tests store: distinct CIDs
 * where every fourth shares the bytes both hash on (digest bytes 8-15)
 * with its neighbour, and every fifth differs from its neighbour only by
 * codec. Header only; each program includes it once.
 */
#ifndef LFS_CID_KEYS_H
#define LFS_CID_KEYS_H

#include <string.h>

#include "cid.h"

static inline void lfs_test_cid_keys(struct lfs_cid *keys, int n)
{
	for (int i = 0; i < n; i++) {
		lfs_cid_of(&keys[i], LFS_CODEC_RAW, &i, sizeof(i));
		if (i % 4 == 1)
			memcpy(keys[i].digest + 8, keys[i - 1].digest + 8, 8);
		if (i % 5 == 1) {
			keys[i] = keys[i - 1];
			keys[i].codec = LFS_CODEC_DAG_CBOR;
		}
	}
}

#endif
