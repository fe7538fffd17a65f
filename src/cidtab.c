#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "cidtab.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void lfs_cidtab_init(struct lfs_cidtab *t, size_t stride, size_t offset)
{
	*t = (struct lfs_cidtab){.stride = stride, .offset = offset};
}

void lfs_cidtab_release(struct lfs_cidtab *t)
{
	free(t->slots);
	t->slots = NULL;
	t->nslots = t->count = 0;
}

void lfs_cidtab_clear(struct lfs_cidtab *t)
{
	if (t->slots)
		memset(t->slots, 0, t->nslots * sizeof(*t->slots));
	t->count = 0;
}

static const struct lfs_cid *key_of(const struct lfs_cidtab *t,
				    const void *base, size_t idx)
{
	return (const struct lfs_cid *)((const char *)base + idx * t->stride +
					t->offset);
}

/* The digest is uniform already. (The raw and the dag-cbor block of the
 * same bytes share a home; the comparison tells them apart.) */
static size_t home_of(const struct lfs_cidtab *t, const struct lfs_cid *cid)
{
	uint64_t h;
	memcpy(&h, cid->digest + 8, sizeof(h));
	return (size_t)h & (t->nslots - 1);
}

/* The slot holding cid, or the empty slot where it would go. */
static uint32_t *probe(const struct lfs_cidtab *t, const void *base,
		       const struct lfs_cid *cid)
{
	for (size_t i = home_of(t, cid);; i = (i + 1) & (t->nslots - 1)) {
		uint32_t v = t->slots[i];
		if (!v || lfs_cid_equal(key_of(t, base, v - 1), cid))
			return &t->slots[i];
	}
}

bool lfs_cidtab_find(const struct lfs_cidtab *t, const void *base,
		     const struct lfs_cid *cid, size_t *out)
{
	if (!t->count)
		return false;
	uint32_t v = *probe(t, base, cid);
	if (!v)
		return false;
	if (out)
		*out = v - 1;
	return true;
}

static int grow(struct lfs_cidtab *t, const void *base)
{
	size_t n = t->nslots ? t->nslots * 2 : 256;
	uint32_t *old = t->slots;
	size_t oldn = t->nslots;
	if (!(t->slots = calloc(n, sizeof(*t->slots)))) {
		t->slots = old;
		return -ENOMEM;
	}
	t->nslots = n;
	for (size_t i = 0; i < oldn; i++)
		if (old[i])
			*probe(t, base, key_of(t, base, old[i] - 1)) = old[i];
	free(old);
	return 0;
}

int lfs_cidtab_add(struct lfs_cidtab *t, const void *base, size_t idx)
{
	if (idx >= UINT32_MAX - 1)
		return -EFBIG;
	if ((t->count + 1) * 2 > t->nslots && grow(t, base))
		return -ENOMEM;
	*probe(t, base, key_of(t, base, idx)) = (uint32_t)idx + 1;
	t->count++;
	return 0;
}
