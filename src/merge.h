/*
 * merge: the one state every replica derives from a set of heads.
 *
 * With one head the state is the index root that head records. With several
 * (concurrent writers) each document id on which the heads disagree is
 * decided by ancestry, not by comparing with a base snapshot:
 *
 *   - a version that some head has seen (its write is that head's ancestor)
 *     and moved past (that head records a later write, a delete, or a
 *     merge the version lost) is superseded: it never competes again, so
 *     a writer's own older version never conflicts with its newer one and
 *     a delete made after seeing a version is never undone by it;
 *   - the versions left are concurrent: a put beats a delete (an edit
 *     survives a concurrent delete), and among puts the greatest version
 *     wins (lfs_version_cmp: hybrid time, then writer id, then document
 *     CID);
 *   - the other concurrent versions, and the losers they already carried,
 *     go into the winner's conflict list (deduplicated, newest first, at
 *     most LFS_MERGE_MAX_CONFLICTS), so no write is lost;
 *   - when every version was seen and moved past by a head that has the id
 *     absent, the id is deleted.
 *
 * The result depends only on the set of events, never on the order in which
 * a replica received them, so replicas holding the same events compute the
 * same root CID. Cost: the diffs between the heads' roots (proportional to
 * how far they differ), plus, for the versions in question, a look at the
 * merge bases and a walk of the events newer than the oldest such version.
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
 * ancestor of another; any order; at least the heads' events readable). events
 * reads event blocks; ix reads and writes index nodes. Errors as clock.h and
 * index.h.
 */
int lfs_merge_root(struct lfs_cid *out, const struct lfs_index *ix,
		   const struct lfs_blocks *events, const struct lfs_cid *heads,
		   size_t n);

#endif
