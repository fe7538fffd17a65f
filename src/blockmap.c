#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "blockmap.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void lfs_blockmap_init(struct lfs_blockmap *m)
{
	memset(m, 0, sizeof(*m));
}

void lfs_blockmap_release(struct lfs_blockmap *m)
{
	for (size_t i = 0; i < m->count; i++)
		free(m->items[i].data);
	free(m->items);
	free(m->slots);
	memset(m, 0, sizeof(*m));
}

static size_t slot_of(const struct lfs_cid *cid, size_t nslots)
{
	size_t h;
	memcpy(&h, cid->digest, sizeof(h));
	return h & (nslots - 1);
}

static size_t *lookup(const struct lfs_blockmap *m, const struct lfs_cid *cid)
{
	if (!m->nslots)
		return NULL;
	for (size_t s = slot_of(cid, m->nslots);;
	     s = (s + 1) & (m->nslots - 1)) {
		size_t v = m->slots[s];
		if (!v || lfs_cid_equal(&m->items[v - 1].cid, cid))
			return &m->slots[s];
	}
}

static int grow(struct lfs_blockmap *m)
{
	size_t n = m->nslots ? m->nslots * 2 : 64;
	size_t *slots = calloc(n, sizeof(*slots));
	if (!slots)
		return -ENOMEM;
	free(m->slots);
	m->slots = slots;
	m->nslots = n;
	for (size_t i = 0; i < m->count; i++)
		*lookup(m, &m->items[i].cid) = i + 1;
	return 0;
}

int lfs_blockmap_put(struct lfs_blockmap *m, const struct lfs_cid *cid,
		     const uint8_t *data, size_t len)
{
	if ((m->count + 1) * 2 > m->nslots && grow(m))
		return -ENOMEM;
	size_t *slot = lookup(m, cid);
	if (*slot)
		return 0;
	if (m->count == m->cap) {
		size_t cap = m->cap ? m->cap * 2 : 16;
		void *p = realloc(m->items, cap * sizeof(*m->items));
		if (!p)
			return -ENOMEM;
		m->items = p;
		m->cap = cap;
	}
	uint8_t *copy = malloc(len ? len : 1);
	if (!copy)
		return -ENOMEM;
	memcpy(copy, data, len);
	m->items[m->count] = (struct lfs_blockmap_item){
		.cid = *cid, .data = copy, .len = len};
	*slot = ++m->count;
	m->bytes += len;
	return 0;
}

const struct lfs_blockmap_item *lfs_blockmap_find(const struct lfs_blockmap *m,
						  const struct lfs_cid *cid)
{
	size_t *slot = lookup(m, cid);
	return slot && *slot ? &m->items[*slot - 1] : NULL;
}

void lfs_blockmap_truncate(struct lfs_blockmap *m, size_t count)
{
	if (count >= m->count)
		return;
	for (size_t i = count; i < m->count; i++) {
		m->bytes -= m->items[i].len;
		free(m->items[i].data);
	}
	m->count = count;
	memset(m->slots, 0, m->nslots * sizeof(*m->slots));
	for (size_t i = 0; i < m->count; i++)
		*lookup(m, &m->items[i].cid) = i + 1;
}

static int map_get(void *self, struct lfs_buf *out, const struct lfs_cid *cid)
{
	const struct lfs_blockmap_item *it = lfs_blockmap_find(self, cid);
	if (!it)
		return -ENOENT;
	return lfs_buf_append(out, it->data, it->len);
}

static int map_put(void *self, const struct lfs_cid *cid, const uint8_t *data,
		   size_t len)
{
	return lfs_blockmap_put(self, cid, data, len);
}

static const struct lfs_blocks_ops map_ops = {.get = map_get, .put = map_put};

struct lfs_blocks lfs_blockmap_blocks(struct lfs_blockmap *m)
{
	return (struct lfs_blocks){.ops = &map_ops, .self = m};
}
