/*
 * membudget: one bound on the bytes several caches keep together (a
 * mount's text cache and every open ledger's block and index caches), so
 * that a daemon's memory follows what is in use, not how many ledgers it
 * has opened. Each cache keeps its own maximum as well.
 *
 * A member charges what it keeps and gives back what it drops. When the
 * sum goes over the budget, members give back in turn: the one used least
 * recently first (by the second; among those used within the same second,
 * the one holding most bytes for its worth), each from its own least
 * recently used end, through its shrink callback. So an idle ledger's
 * caches empty before an active one's, and active caches share what is
 * left in proportion to their worth: a byte of a member of worth 4 is kept
 * as long as 4 bytes of one of worth 1 (a decoded index leaf serves every
 * lookup of its ~25 documents and every commit on its path; a text serves
 * one document and is rendered again from blocks).
 *
 * Locks: a member charges under its own lock (charging takes no lock) and
 * calls lfs_membudget_enforce holding none. Enforce takes the budget's
 * lock, then a member's inside its shrink callback; join and leave take
 * the budget's lock. So no member may take the budget's lock while it
 * holds its own, and a member leaves before it is freed.
 */
#ifndef LFS_MEMBUDGET_H
#define LFS_MEMBUDGET_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct lfs_membudget;

struct lfs_membudget_member {
	struct lfs_membudget *budget; /* NULL: not a member */
	/* Drop at least `bytes` from the least recently used end if it
	 * holds that much (all of it otherwise), under the member's own
	 * lock; the bytes dropped (each also given back with charge). */
	size_t (*shrink)(struct lfs_membudget_member *m, size_t bytes);
	unsigned worth;         /* set before joining; 0 counts as 1 */
	_Atomic size_t bytes;   /* charged and not given back */
	_Atomic int64_t used_s; /* last use, seconds (a monotonic clock) */
	struct lfs_membudget_member *next; /* the budget's list */
};

/* A budget of max_bytes (at least 1 MiB is sensible). */
int lfs_membudget_new(struct lfs_membudget **out, size_t max_bytes);
/* Free b: every member must have left. */
void lfs_membudget_free(struct lfs_membudget *b);

size_t lfs_membudget_max(const struct lfs_membudget *b);
/* A new bound, enforced from the next charge on. */
void lfs_membudget_set_max(struct lfs_membudget *b, size_t max_bytes);
/* The bytes its members keep now. */
size_t lfs_membudget_used(const struct lfs_membudget *b);

/* Make m (zeroed, or left) a member of b; b NULL: m stays alone, and
 * charge, touch and enforce do nothing. */
void lfs_membudget_join(struct lfs_membudget *b, struct lfs_membudget_member *m,
			size_t (*shrink)(struct lfs_membudget_member *m,
					 size_t bytes));
/* Take m out of its budget, giving back what it holds. */
void lfs_membudget_leave(struct lfs_membudget_member *m);

/* Count delta bytes more (or fewer) as kept by m, and note it used. */
void lfs_membudget_charge(struct lfs_membudget_member *m, ptrdiff_t delta);
/* Note m used (a hit). Cheap: an atomic store once a second. */
void lfs_membudget_touch(struct lfs_membudget_member *m);

/*
 * When m's budget is over, have members give back until it is not (or
 * none can): call with no lock held after charging. Cheap when under.
 */
void lfs_membudget_enforce(struct lfs_membudget_member *m);

#endif
