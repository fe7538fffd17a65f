/*
 * store: where replicas meet — an object store holding ledgers' files.
 *
 * A store is a flat namespace of immutable objects named by keys made of
 * printable ASCII without spaces ("<ledger>/car/<cid>", "<ledger>/head/<cid>";
 * ledger names are checked by home.h and percent-encoded by drivers where
 * their protocol needs it). The same layout as the local blockstore, so a
 * store can be a plain directory. Drivers, chosen by URL:
 *
 *   file:///abs/path           a directory (store_file.c)
 *   memory://NAME              a process-wide in-memory store, for tests
 *   s3://bucket/prefix         any S3 service, SigV4 through libcurl
 *                              (store_s3.c; see its header comment for the
 *                              endpoint, region and credentials)
 *   http(s)://host/path        a WebDAV blob server (store_http.c)
 *
 * Objects are written whole; a reader sees the old object, the new one, or
 * none — never a part. Listing may lag writes (S3 semantics); the sync
 * protocol does not depend on it being current.
 *
 * Errors (negative errno), the same from every driver:
 *   -ENOENT   no such object
 *   -EEXIST   put with if_absent and the object exists (where the store can
 *             tell; stores that can't just overwrite, which is safe for
 *             content-addressed objects)
 *   -EACCES   credentials refused
 *   -EAGAIN   a retryable failure: connection refused/reset, timeout, 5xx,
 *             throttling. The caller retries later; nothing is half-done.
 *   -EBADMSG  the store answered something that makes no sense
 *   -EFBIG    an object larger than the caller's buffer cap
 *   -EINVAL   a bad URL or key
 *   -EIO      anything else, with the reason logged
 *
 * Threads: one struct lfs_store is used by one thread at a time (each
 * driver keeps one libcurl handle); open one per thread.
 */
#ifndef LFS_STORE_H
#define LFS_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"

struct lfs_store;

/* Called for each key found by list(); non-zero stops the listing. */
typedef int (*lfs_store_list_fn)(void *ctx, const char *key);

struct lfs_store_ops {
	int (*put)(struct lfs_store *s, const char *key, const uint8_t *data,
		   size_t len, bool if_absent);
	/* Append the object to out (respecting out's cap: -EFBIG). */
	int (*get)(struct lfs_store *s, const char *key, struct lfs_buf *out);
	/* Every key that starts with prefix, in no particular order. */
	int (*list)(struct lfs_store *s, const char *prefix,
		    lfs_store_list_fn fn, void *ctx);
	/* Deleting an absent object is not an error. */
	int (*del)(struct lfs_store *s, const char *key);
	void (*free)(struct lfs_store *s);
};

/* Every driver's object starts with this. */
struct lfs_store {
	const struct lfs_store_ops *ops;
	char *url; /* for messages; never holds credentials */
};

/* Open the store a URL names. */
int lfs_store_open(struct lfs_store **out, const char *url);
void lfs_store_free(struct lfs_store *s);

static inline int lfs_store_put(struct lfs_store *s, const char *key,
				const uint8_t *data, size_t len, bool if_absent)
{
	return s->ops->put(s, key, data, len, if_absent);
}

static inline int lfs_store_get(struct lfs_store *s, const char *key,
				struct lfs_buf *out)
{
	return s->ops->get(s, key, out);
}

static inline int lfs_store_list(struct lfs_store *s, const char *prefix,
				 lfs_store_list_fn fn, void *ctx)
{
	return s->ops->list(s, prefix, fn, ctx);
}

static inline int lfs_store_del(struct lfs_store *s, const char *key)
{
	return s->ops->del(s, key);
}

/* Driver constructors, called by lfs_store_open() (rest: after scheme). */
int lfs_store_file_open(struct lfs_store **out, const char *path);
int lfs_store_memory_open(struct lfs_store **out, const char *name);
int lfs_store_s3_open(struct lfs_store **out, const char *rest);
int lfs_store_http_open(struct lfs_store **out, const char *url);

/* Is key acceptable: non-empty, printable ASCII without spaces or '\\',
 * no empty, "." or ".." segment, no leading or trailing '/'? */
bool lfs_store_valid_key(const char *key);

#endif
