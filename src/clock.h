/*
 * clock: Merkle clock events and the questions asked of their DAG.
 *
 * An event is a DAG-CBOR block
 *
 *   {"data": {"t": time, "w": writer, "ops": [[id, doc|null], ...],
 *             "root": index-root},
 *    "parents": [event, ...]}
 *
 * (keys in DAG-CBOR order: "t", "w", "ops", "root"; parents sorted by CID
 * bytes, ops by id bytes, ids unique). "root" is the document index after
 * the event: its parents' merged state with the ops applied. "t" is a hybrid
 * logical time in microseconds: the writer's clock, but always greater than
 * every parent's t, so t strictly increases along every path of the DAG.
 * The decoder enforces every rule that can be checked on one block; the
 * rule t > parent.t is checked by lfs_clock_check_parents() once the parents
 * are known. Events that break it are refused: the merge-base search below
 * relies on it.
 *
 * The heads of a ledger are the events no other event names as a parent.
 *
 * Errors: -EBADMSG (a block that is not a valid event), -ENOENT (an event
 * not available from the blocks interface), -EINVAL (bad arguments to the
 * encoder), -ENOMEM.
 */
#ifndef LFS_CLOCK_H
#define LFS_CLOCK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "arena.h"
#include "blocks.h"
#include "cid.h"

#define LFS_EVENT_MAX_PARENTS 1024
#define LFS_EVENT_MAX_OPS     100000

/*
 * Times. An event's t must lie in [0, LFS_CLOCK_T_MAX] (2^53 µs, the year
 * 2255): the decoder refuses anything else as corrupt, on every replica
 * alike, so no t + 1 can overflow. A replica also refuses to *apply*, for
 * now, an event more than LFS_CLOCK_MAX_AHEAD ahead of its own clock (a
 * peer with a broken clock, or a hostile key holder): the event waits, and
 * is applied once this clock has caught up. Deferring instead of rejecting
 * keeps replicas convergent whatever their clocks; bounding the lead keeps
 * one bad clock from pinning every later write's t far in the future, as
 * hybrid logical clocks bound their drift.
 */
#define LFS_CLOCK_T_MAX     ((int64_t)1 << 53)
#define LFS_CLOCK_MAX_AHEAD ((int64_t)3600 * 1000000) /* one hour */

struct lfs_op {
	const char *id; /* NUL-terminated; no NUL inside */
	size_t id_len;
	bool del;           /* delete; else doc names the new version */
	struct lfs_cid doc; /* dag-cbor block of the document */
};

struct lfs_event {
	struct lfs_cid *parents;
	size_t nparents;
	int64_t t;
	const char *writer;
	struct lfs_op *ops;
	size_t nops;
	struct lfs_cid root;
};

/*
 * Encode ev canonically into out (parents and ops are sorted in place).
 * -EINVAL for duplicate parents or ops, an over-long id or writer, or too
 * many of either.
 */
int lfs_event_encode(struct lfs_buf *out, struct lfs_event *ev);

/* Decode and validate one event block; strings live in a. */
int lfs_event_decode(struct lfs_event *out, struct lfs_arena *a,
		     const uint8_t *p, size_t len);

/* Fetch, hash-check (by the blocks interface) and decode an event. */
int lfs_event_load(struct lfs_event *out, struct lfs_arena *a,
		   const struct lfs_blocks *b, const struct lfs_cid *cid);

/*
 * Check that every parent of ev is available and older (t smaller).
 * -ENOENT names a missing parent (its CID in *out_missing if not NULL);
 * -EBADMSG when a parent block is corrupt; -ETIME when a parent is not
 * older (a clock that went backwards: the event must be refused).
 */
int lfs_clock_check_parents(struct lfs_cid *out_missing,
			    const struct lfs_blocks *b,
			    const struct lfs_event *ev);

/*
 * The merge bases of a set of events: the maximal events that are
 * ancestors (inclusive) of all of them. Result sorted by CID, malloc'd into
 * *out (free() it), count in *out_n (0 when histories are disjoint). Visits
 * only the events newer than the oldest base plus their parents.
 */
int lfs_clock_merge_bases(struct lfs_cid **out, size_t *out_n,
			  const struct lfs_blocks *b,
			  const struct lfs_cid *events, size_t n);

/* A write, as an index entry records it: the time and writer of its event. */
struct lfs_clock_write {
	int64_t t;
	const char *writer;
};

/*
 * Which of events know each write: for every writes[k], the words
 * (n + 63) / 64 of out starting at out[k * words] get bit i set when an
 * event with that t and writer is an ancestor of events[i] or events[i]
 * itself. out must hold nw * words zeroed words. Walks only the events
 * newer than the oldest write (t strictly grows along edges), so asking
 * about recent writes is cheap; history this replica does not hold ends
 * the walk on that path.
 */
int lfs_clock_known(uint64_t *out, const struct lfs_blocks *b,
		    const struct lfs_cid *events, size_t n,
		    const struct lfs_clock_write *writes, size_t nw);

/*
 * Reduce a set of events to its heads: drop duplicates and every event that
 * is an ancestor of another in the set. In place; sorted by CID; returns the
 * new count or a negative error.
 */
int lfs_clock_reduce(const struct lfs_blocks *b, struct lfs_cid *events,
		     size_t n);

/*
 * Is each of events (all held here) in the history that ends in tips: one
 * of them, or an ancestor of one? 1 yes; 0 no, with *out_first (if not
 * NULL) one that is not; or a negative error. Reducing tips and events
 * together leaves an event outside tips exactly when one is not; when
 * every event is a tip, there is no walk. History this replica does not
 * hold ends the walk on that path: an event reached only across such a gap
 * counts as not there, the cautious answer.
 */
int lfs_clock_contains(const struct lfs_blocks *b, const struct lfs_cid *tips,
		       size_t ntips, const struct lfs_cid *events, size_t n,
		       struct lfs_cid *out_first);

/*
 * Walk the events reachable from heads, newest first (t descending, then
 * CID), calling fn for each until it returns non-zero (which is returned)
 * or the history ends. Visits each event once. The event passed to fn lives
 * until fn returns.
 */
typedef int (*lfs_clock_walk_fn)(void *ctx, const struct lfs_cid *cid,
				 const struct lfs_event *ev);
int lfs_clock_walk(const struct lfs_blocks *b, const struct lfs_cid *heads,
		   size_t n, lfs_clock_walk_fn fn, void *ctx);

#endif
