/*
 * arena: a bump allocator for short-lived trees (decoded blocks, documents).
 *
 * Everything allocated from an arena is freed at once by lfs_arena_release().
 * An arena has a total cap so that a hostile input (a CBOR array claiming a
 * billion items) fails cleanly instead of exhausting memory. Allocations are
 * aligned for any scalar type. Not thread-safe.
 */
#ifndef LFS_ARENA_H
#define LFS_ARENA_H

#include <stddef.h>

#define LFS_ARENA_DEFAULT_MAX ((size_t)256 << 20)

struct lfs_arena_chunk;

struct lfs_arena {
	struct lfs_arena_chunk *head;
	size_t total; /* bytes obtained from malloc so far */
	size_t max;   /* cap on total */
};

/* Initialise an empty arena capped at max bytes (0: default cap). */
void lfs_arena_init(struct lfs_arena *a, size_t max);

/*
 * As lfs_arena_init, with buf[0..size) (aligned for any scalar type; the
 * caller keeps it alive) as the first chunk, so that short-lived arenas
 * that stay small never call malloc. The arena never frees buf.
 */
void lfs_arena_init_buf(struct lfs_arena *a, size_t max, void *buf,
			size_t size);

/* Free every allocation; the arena is empty and usable again. */
void lfs_arena_release(struct lfs_arena *a);

/*
 * Allocate size bytes, zero-filled. Returns NULL when the cap would be
 * passed or memory is exhausted (callers report -ENOMEM or -EFBIG).
 */
void *lfs_arena_alloc(struct lfs_arena *a, size_t size);

/* Allocate count * size bytes with overflow checking; NULL as above. */
void *lfs_arena_calloc(struct lfs_arena *a, size_t count, size_t size);

/* A position in an arena, to free everything allocated after it. */
struct lfs_arena_mark {
	struct lfs_arena_chunk *chunk;
	size_t used;
};

struct lfs_arena_mark lfs_arena_mark(const struct lfs_arena *a);

/* Free everything allocated since mark was taken. */
void lfs_arena_rewind(struct lfs_arena *a, struct lfs_arena_mark mark);

/* Copy len bytes into the arena and NUL-terminate them. */
char *lfs_arena_strndup(struct lfs_arena *a, const char *s, size_t len);

#endif
