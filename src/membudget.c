#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "membudget.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>

struct lfs_membudget {
	pthread_mutex_t lock; /* the member list; one enforcer at a time */
	_Atomic size_t max;
	_Atomic size_t used;
	struct lfs_membudget_member *members;
};

/* Past the budget, members give back this much more than the excess (a
 * 64th of the budget), so that a cache filling up at the limit enforces
 * once per that many bytes, not once per entry. */
static size_t slack(size_t max)
{
	return max / 64;
}

static int64_t now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	return ts.tv_sec;
}

int lfs_membudget_new(struct lfs_membudget **out, size_t max_bytes)
{
	struct lfs_membudget *b = calloc(1, sizeof(*b));
	if (!b)
		return -ENOMEM;
	pthread_mutex_init(&b->lock, NULL);
	b->max = max_bytes;
	*out = b;
	return 0;
}

void lfs_membudget_free(struct lfs_membudget *b)
{
	if (!b)
		return;
	pthread_mutex_destroy(&b->lock);
	free(b);
}

size_t lfs_membudget_max(const struct lfs_membudget *b)
{
	return atomic_load(&b->max);
}

void lfs_membudget_set_max(struct lfs_membudget *b, size_t max_bytes)
{
	atomic_store(&b->max, max_bytes);
}

size_t lfs_membudget_used(const struct lfs_membudget *b)
{
	return atomic_load(&b->used);
}

void lfs_membudget_join(struct lfs_membudget *b, struct lfs_membudget_member *m,
			size_t (*shrink)(struct lfs_membudget_member *m,
					 size_t bytes))
{
	m->shrink = shrink;
	atomic_store(&m->used_s, now_s());
	if (!b)
		return;
	pthread_mutex_lock(&b->lock);
	m->budget = b;
	atomic_fetch_add(&b->used, atomic_load(&m->bytes));
	m->next = b->members;
	b->members = m;
	pthread_mutex_unlock(&b->lock);
}

void lfs_membudget_leave(struct lfs_membudget_member *m)
{
	struct lfs_membudget *b = m->budget;
	if (!b)
		return;
	pthread_mutex_lock(&b->lock);
	struct lfs_membudget_member **pp = &b->members;
	while (*pp && *pp != m)
		pp = &(*pp)->next;
	if (*pp)
		*pp = m->next;
	atomic_fetch_sub(&b->used, atomic_load(&m->bytes));
	m->budget = NULL;
	m->next = NULL;
	pthread_mutex_unlock(&b->lock);
}

void lfs_membudget_touch(struct lfs_membudget_member *m)
{
	int64_t s = now_s();
	if (atomic_load_explicit(&m->used_s, memory_order_relaxed) != s)
		atomic_store_explicit(&m->used_s, s, memory_order_relaxed);
}

void lfs_membudget_charge(struct lfs_membudget_member *m, ptrdiff_t delta)
{
	if (delta >= 0)
		atomic_fetch_add(&m->bytes, (size_t)delta);
	else
		atomic_fetch_sub(&m->bytes, (size_t)-delta);
	struct lfs_membudget *b = m->budget;
	if (b) {
		if (delta >= 0)
			atomic_fetch_add(&b->used, (size_t)delta);
		else
			atomic_fetch_sub(&b->used, (size_t)-delta);
	}
	if (delta > 0)
		lfs_membudget_touch(m);
}

/* The member to give back next, skipping those in `tried`: the least
 * recently used, the one holding most bytes for its worth among equals. */
static struct lfs_membudget_member *victim(struct lfs_membudget *b,
					   struct lfs_membudget_member **tried,
					   size_t ntried)
{
	struct lfs_membudget_member *best = NULL;
	int64_t best_s = 0;
	size_t best_per_worth = 0;
	for (struct lfs_membudget_member *m = b->members; m; m = m->next) {
		size_t bytes = atomic_load(&m->bytes);
		if (!bytes || !m->shrink)
			continue;
		bool skip = false;
		for (size_t i = 0; i < ntried && !skip; i++)
			skip = tried[i] == m;
		if (skip)
			continue;
		int64_t s = atomic_load(&m->used_s);
		size_t per_worth = bytes / (m->worth ? m->worth : 1);
		if (!best || s < best_s ||
		    (s == best_s && per_worth > best_per_worth)) {
			best = m;
			best_s = s;
			best_per_worth = per_worth;
		}
	}
	return best;
}

void lfs_membudget_enforce(struct lfs_membudget_member *self)
{
	struct lfs_membudget *b = self->budget;
	if (!b || atomic_load(&b->used) <= atomic_load(&b->max))
		return;
	pthread_mutex_lock(&b->lock);
	/* Members that gave back nothing this time (all of theirs is in
	 * use, or being dropped elsewhere): not asked again. */
	enum { TRIED_MAX = 64 };
	struct lfs_membudget_member *tried[TRIED_MAX];
	size_t ntried = 0;
	size_t max = atomic_load(&b->max);
	size_t target = max - slack(max);
	/* Bounded: others may be charging while this gives back. */
	for (int round = 0; ntried < TRIED_MAX && round < 4096; round++) {
		/* One reading: others may be giving back too. */
		size_t used = atomic_load(&b->used);
		if (used <= target)
			break;
		struct lfs_membudget_member *m = victim(b, tried, ntried);
		if (!m)
			break;
		if (!m->shrink(m, used - target))
			tried[ntried++] = m;
	}
	pthread_mutex_unlock(&b->lock);
}
