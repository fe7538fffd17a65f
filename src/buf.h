/*
 * buf: a growable byte buffer with a hard size cap.
 *
 * Every input-sized allocation in ledgerfs goes through a buf so that a
 * hostile length can never make the process allocate without bound.
 *
 * Errors are sticky: the first failing append records its error in ->err and
 * every later append is a no-op returning the same error, so an encoder can
 * issue a run of appends and check once at the end.
 *
 * Not thread-safe; a buf belongs to one thread at a time.
 */
#ifndef LFS_BUF_H
#define LFS_BUF_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Cap used when lfs_buf_init() is given max == 0. */
#define LFS_BUF_DEFAULT_MAX ((size_t)64 << 20)

struct lfs_buf {
	uint8_t *data; /* owned; NULL until the first append */
	size_t len;
	size_t cap;
	size_t max; /* len never exceeds this */
	int err;    /* 0, -ENOMEM or -EFBIG (cap exceeded); sticky */
};

/* Initialise an empty buffer that may grow to max bytes (0: default cap). */
void lfs_buf_init(struct lfs_buf *b, size_t max);

/* Free the storage; the buffer may be initialised again afterwards. */
void lfs_buf_release(struct lfs_buf *b);

/* Forget the contents (keeps storage and clears the sticky error). */
void lfs_buf_reset(struct lfs_buf *b);

/*
 * Make room for `extra` more bytes. Returns 0, -EFBIG when len + extra would
 * pass the cap, or -ENOMEM.
 */
int lfs_buf_reserve(struct lfs_buf *b, size_t extra);

/* lfs_buf_append when the bytes do not fit in the storage there is. */
int lfs_buf_append_grow(struct lfs_buf *b, const void *p, size_t n);

/* Append bytes; returns 0 or the (sticky) error. Inline: encoders append
 * a few bytes at a time, and a call per append was ~5% of a commit. */
static inline int lfs_buf_append(struct lfs_buf *b, const void *p, size_t n)
{
	if (b->err || n > b->cap - b->len)
		return lfs_buf_append_grow(b, p, n);
	if (n)
		memcpy(b->data + b->len, p, n);
	b->len += n;
	return 0;
}

static inline int lfs_buf_append_byte(struct lfs_buf *b, uint8_t byte)
{
	return lfs_buf_append(b, &byte, 1);
}

static inline int lfs_buf_append_str(struct lfs_buf *b, const char *s)
{
	return lfs_buf_append(b, s, strlen(s));
}

/*
 * Hand the contents to the caller (who frees them with free()) and leave the
 * buffer empty. *out_len receives the length; the returned pointer is NULL
 * for an empty buffer.
 */
uint8_t *lfs_buf_steal(struct lfs_buf *b, size_t *out_len);

#endif
