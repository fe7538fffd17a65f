/*
 * merge: the one state every replica derives from a set of heads.
 *
 * With one head the state is the index root that head records. With several
 * (concurrent writers) it is a three-way merge against their merge base:
 *
 *   base  = the root of the single merge base, or, for criss-cross
 *           histories with several maximal common ancestors, the merge of
 *           those (recursively, as git's "recursive" strategy does);
 *           the empty index when the histories share nothing;
 *   then, for every document id that differs between base and some head:
 *     - heads that did not change it keep out of the decision;
 *     - if every head that changed it agrees, that is the result;
 *     - else a put beats a delete (an edit survives a concurrent delete),
 *       and among different puts the greatest version wins
 *       (lfs_version_cmp: hybrid time, then writer id, then document CID);
 *     - every other version involved, and every conflict those versions
 *       already carried, goes into the winner's conflict list (deduplicated,
 *       newest first, at most LFS_MERGE_MAX_CONFLICTS), so no write is lost.
 *
 * The result depends only on the set of events, never on the order in which
 * a replica received them, so replicas holding the same events compute the
 * same root CID. Cost: the merge-base search plus the diffs base..heads,
 * i.e. proportional to what changed since the base, not to the ledger size.
 *
 * New index nodes are written through the index's blocks interface.
 */
#ifndef LFS_MERGE_H
#define LFS_MERGE_H

#include <stddef.h>

#include "blocks.h"
#include "cid.h"
#include "index.h"

#define LFS_MERGE_MAX_CONFLICTS 64

/*
 * Compute the merged index root of heads (an antichain: no head an
 * ancestor of another; any order). events reads event blocks; ix reads and
 * writes index nodes. Errors as clock.h and index.h.
 */
int lfs_merge_root(struct lfs_cid *out, const struct lfs_index *ix,
		   const struct lfs_blocks *events, const struct lfs_cid *heads,
		   size_t n);

#endif
