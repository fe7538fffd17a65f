#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "cidmap.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void lfs_cidmap_init(struct lfs_cidmap *m)
{
	memset(m, 0, sizeof(*m));
}

void lfs_cidmap_release(struct lfs_cidmap *m)
{
	free(m->slots);
	memset(m, 0, sizeof(*m));
}

static struct lfs_cidmap_slot *find(const struct lfs_cidmap *m,
				    const struct lfs_cid *cid)
{
	size_t h;
	memcpy(&h, cid->digest + 8, sizeof(h));
	h ^= cid->codec;
	for (size_t i = h & (m->nslots - 1);; i = (i + 1) & (m->nslots - 1)) {
		struct lfs_cidmap_slot *s = &m->slots[i];
		if (!s->used || lfs_cid_equal(&s->cid, cid))
			return s;
	}
}

static int grow(struct lfs_cidmap *m)
{
	size_t n = m->nslots ? m->nslots * 2 : 32;
	struct lfs_cidmap_slot *old = m->slots;
	size_t oldn = m->nslots;
	m->slots = calloc(n, sizeof(*m->slots));
	if (!m->slots) {
		m->slots = old;
		return -ENOMEM;
	}
	m->nslots = n;
	for (size_t i = 0; i < oldn; i++)
		if (old[i].used)
			*find(m, &old[i].cid) = old[i];
	free(old);
	return 0;
}

int lfs_cidmap_set(struct lfs_cidmap *m, const struct lfs_cid *cid,
		   uint64_t value)
{
	if ((m->count + 1) * 4 > m->nslots * 3 && grow(m))
		return -ENOMEM;
	struct lfs_cidmap_slot *s = find(m, cid);
	if (!s->used) {
		s->used = true;
		s->cid = *cid;
		m->count++;
	}
	s->value = value;
	return 0;
}

bool lfs_cidmap_get(const struct lfs_cidmap *m, const struct lfs_cid *cid,
		    uint64_t *out)
{
	if (!m->nslots)
		return false;
	const struct lfs_cidmap_slot *s = find(m, cid);
	if (!s->used)
		return false;
	if (out)
		*out = s->value;
	return true;
}
