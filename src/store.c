#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

/*
 * store: what every driver shares (see store.h): opening by URL, key
 * rules, deadlines and cancelling, and reading an object into a buffer or
 * a file through a driver's get_to().
 */
#include "store.h"

#include "fileio.h"
#include "timefmt.h"

#include <errno.h>
#include <string.h>

bool lfs_store_valid_key(const char *key)
{
	if (!key[0] || key[0] == '/' || strlen(key) > 1024)
		return false;
	for (const char *p = key; *p; p++)
		if (*p <= ' ' || *p >= 0x7f || *p == '\\')
			return false;
	/* No "." or ".." segment: servers and paths would fold them away. */
	for (const char *seg = key; seg; seg = strchr(seg, '/')) {
		if (*seg == '/')
			seg++;
		size_t n = strcspn(seg, "/");
		if ((n == 1 && seg[0] == '.') ||
		    (n == 2 && seg[0] == '.' && seg[1] == '.'))
			return false;
	}
	return !strstr(key, "//") && key[strlen(key) - 1] != '/';
}

int lfs_store_open(struct lfs_store **out, const char *url)
{
	if (!strncmp(url, "file://", 7))
		return lfs_store_file_open(out, url + 7);
	if (!strncmp(url, "memory://", 9))
		return lfs_store_memory_open(out, url + 9);
	if (!strncmp(url, "s3://", 5))
		return lfs_store_s3_open(out, url + 5);
	if (!strncmp(url, "http://", 7) || !strncmp(url, "https://", 8))
		return lfs_store_http_open(out, url);
	return -EINVAL;
}

void lfs_store_free(struct lfs_store *s)
{
	if (s)
		s->ops->free(s);
}

void lfs_store_cancel_at(struct lfs_store *s, int64_t when)
{
	atomic_store(&s->cancel_at, when);
}

int lfs_store_check_deadline(struct lfs_store *s, int64_t start, uint64_t moved)
{
	int64_t now = lfs_mono_us(), at = atomic_load(&s->cancel_at);
	if (at && now >= at)
		return -ECANCELED;
	uint64_t allowed_ms =
		LFS_STORE_DEADLINE_MS + moved / LFS_STORE_MIN_RATE * 1000 +
		moved % LFS_STORE_MIN_RATE * 1000 / LFS_STORE_MIN_RATE;
	return now - start > (int64_t)allowed_ms * 1000 ? -ETIMEDOUT : 0;
}

/* ---- streaming to a buffer or a file ---- */

static int buf_size(void *ctx, uint64_t size)
{
	struct lfs_buf *b = ctx;
	if (size > b->max - b->len)
		return -EFBIG;
	return size ? lfs_buf_reserve(b, (size_t)size) : 0;
}

static int buf_write(void *ctx, const uint8_t *data, size_t len)
{
	return lfs_buf_append(ctx, data, len);
}

void lfs_store_sink_buf(struct lfs_store_sink *out, struct lfs_buf *b)
{
	*out = (struct lfs_store_sink){
		.size = buf_size, .write = buf_write, .ctx = b};
}

int lfs_store_get(struct lfs_store *s, const char *key, struct lfs_buf *out)
{
	if (out->err)
		return out->err;
	size_t start = out->len;
	struct lfs_store_sink sink;
	lfs_store_sink_buf(&sink, out);
	int rc = s->ops->get_to(s, key, out->max - out->len, &sink);
	if (rc) {
		out->len = start;
		out->err = 0;
	}
	return rc;
}

struct fd_sink {
	int fd;
	uint64_t len;
};

static int fd_write(void *ctx, const uint8_t *data, size_t len)
{
	struct fd_sink *f = ctx;
	f->len += len;
	return lfs_write_all(f->fd, data, len);
}

int lfs_store_get_fd(struct lfs_store *s, const char *key, int fd, uint64_t max,
		     uint64_t *out_len)
{
	struct fd_sink f = {.fd = fd};
	struct lfs_store_sink sink = {.write = fd_write, .ctx = &f};
	int rc = s->ops->get_to(s, key, max, &sink);
	if (out_len)
		*out_len = f.len;
	return rc;
}
