#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "buf.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void lfs_buf_init(struct lfs_buf *b, size_t max)
{
	memset(b, 0, sizeof(*b));
	b->max = max ? max : LFS_BUF_DEFAULT_MAX;
}

void lfs_buf_release(struct lfs_buf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = b->cap = 0;
	b->err = 0;
}

void lfs_buf_reset(struct lfs_buf *b)
{
	b->len = 0;
	b->err = 0;
}

int lfs_buf_reserve(struct lfs_buf *b, size_t extra)
{
	if (b->err)
		return b->err;
	if (extra > b->max || b->len > b->max - extra)
		return b->err = -EFBIG;
	size_t need = b->len + extra;
	if (need <= b->cap)
		return 0;
	size_t cap = b->cap ? b->cap : 64;
	while (cap < need)
		cap = cap > SIZE_MAX / 2 ? need : cap * 2;
	if (cap > b->max)
		cap = b->max;
	uint8_t *p = realloc(b->data, cap);
	if (!p)
		return b->err = -ENOMEM;
	b->data = p;
	b->cap = cap;
	return 0;
}

int lfs_buf_append_grow(struct lfs_buf *b, const void *p, size_t n)
{
	int rc = lfs_buf_reserve(b, n);
	if (rc)
		return rc;
	if (n)
		memcpy(b->data + b->len, p, n);
	b->len += n;
	return 0;
}

uint8_t *lfs_buf_steal(struct lfs_buf *b, size_t *out_len)
{
	uint8_t *p = b->data;
	*out_len = b->len;
	b->data = NULL;
	b->len = b->cap = 0;
	return p;
}
