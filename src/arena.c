#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "arena.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define ARENA_ALIGN     16
#define ARENA_CHUNK_MIN 4096

struct lfs_arena_chunk {
	struct lfs_arena_chunk *next;
	size_t used;
	size_t size;
	bool borrowed; /* the caller's buffer (lfs_arena_init_buf): not freed */
	_Alignas(ARENA_ALIGN) unsigned char data[];
};

void lfs_arena_init(struct lfs_arena *a, size_t max)
{
	a->head = NULL;
	a->total = 0;
	a->max = max ? max : LFS_ARENA_DEFAULT_MAX;
}

void lfs_arena_init_buf(struct lfs_arena *a, size_t max, void *buf, size_t size)
{
	lfs_arena_init(a, max);
	struct lfs_arena_chunk *c = buf;
	if (size < sizeof(*c) + ARENA_ALIGN)
		return;
	c->next = NULL;
	c->used = 0;
	c->size = size - sizeof(*c);
	c->borrowed = true;
	a->head = c;
}

void lfs_arena_release(struct lfs_arena *a)
{
	struct lfs_arena_chunk *c = a->head;
	while (c) {
		struct lfs_arena_chunk *next = c->next;
		if (!c->borrowed)
			free(c);
		c = next;
	}
	a->head = NULL;
	a->total = 0;
}

void *lfs_arena_alloc(struct lfs_arena *a, size_t size)
{
	if (size > a->max || size > SIZE_MAX / 2)
		return NULL; /* also keeps the sums below from wrapping */
	size_t rounded = (size + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1);
	struct lfs_arena_chunk *c = a->head;
	if (!c || c->size - c->used < rounded) {
		size_t want = c ? c->size * 2 : ARENA_CHUNK_MIN;
		if (want > ((size_t)1 << 20))
			want = (size_t)1 << 20;
		if (want < rounded)
			want = rounded;
		if (a->total + want + sizeof(*c) > a->max) {
			want = rounded;
			if (a->total + want + sizeof(*c) > a->max)
				return NULL;
		}
		c = malloc(sizeof(*c) + want);
		if (!c)
			return NULL;
		c->next = a->head;
		c->used = 0;
		c->size = want;
		c->borrowed = false;
		a->head = c;
		a->total += sizeof(*c) + want;
	}
	void *p = c->data + c->used;
	c->used += rounded;
	memset(p, 0, size);
	return p;
}

void *lfs_arena_calloc(struct lfs_arena *a, size_t count, size_t size)
{
	if (size && count > SIZE_MAX / size)
		return NULL;
	return lfs_arena_alloc(a, count * size);
}

char *lfs_arena_strndup(struct lfs_arena *a, const char *s, size_t len)
{
	if (len == SIZE_MAX)
		return NULL;
	char *p = lfs_arena_alloc(a, len + 1);
	if (p) {
		memcpy(p, s, len);
		p[len] = '\0';
	}
	return p;
}

struct lfs_arena_mark lfs_arena_mark(const struct lfs_arena *a)
{
	return (struct lfs_arena_mark){.chunk = a->head,
				       .used = a->head ? a->head->used : 0};
}

void lfs_arena_rewind(struct lfs_arena *a, struct lfs_arena_mark mark)
{
	while (a->head && a->head != mark.chunk) {
		struct lfs_arena_chunk *c = a->head;
		if (c->borrowed && !mark.chunk) {
			c->used = 0; /* the bottom chunk: keep it, emptied */
			return;
		}
		a->head = c->next;
		a->total -= sizeof(*c) + c->size;
		free(c);
	}
	if (a->head)
		a->head->used = mark.used;
}
