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
 *                              (store_mem.c)
 *   s3://bucket/prefix         any S3 service, SigV4 through libcurl
 *                              (store_s3.c; see its header comment for the
 *                              endpoint, region and credentials)
 *   http(s)://host/path        a WebDAV blob server (store_http.c)
 *
 * Objects are written whole; a reader sees the old object, the new one, or
 * none — never a part. Listing may lag writes (S3 semantics); the sync
 * protocol does not depend on it being current.
 *
 * Deadlines. Every request of a network driver is one attempt, bounded in
 * time: LFS_STORE_CONNECT_MS to connect; aborted when the transfer stays
 * below LFS_STORE_LOW_SPEED bytes/s for LFS_STORE_LOW_SPEED_S seconds; and
 * a total deadline of LFS_STORE_DEADLINE_MS plus one second per
 * LFS_STORE_MIN_RATE bytes moved (sent or received), so a transfer that
 * keeps up at least that average never hits it and a trickle is cut off
 * soon after LFS_STORE_DEADLINE_MS. A request over its deadline is -EAGAIN.
 * The file:// driver resolves keys beneath its root one segment at a time
 * and follows no symlink there (a symlinked directory holds nothing; a
 * symlink, FIFO or device where an object should be is -EBADMSG), opens
 * objects O_NONBLOCK, reads only regular files, and checks the size
 * against the caller's cap before reading.
 *
 * Memory. Drivers hold no whole object: get_to() streams it to the
 * caller's sink in pieces (at most 64 KiB here, what libcurl hands over),
 * so a caller that writes to a file, or checks as bytes arrive, keeps
 * memory bounded whatever a store holds.
 *
 * Cancelling. lfs_store_cancel_at() (any thread) makes every request that
 * runs past the given time end within about a second with -ECANCELED;
 * that is how a sync thread stops while a store hangs.
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
 *   -EFBIG    an object larger than the caller's cap, refused before its
 *             bytes are read when the store tells the size first
 *   -ECANCELED cut short by lfs_store_cancel_at()
 *   -EINVAL   a bad URL or key
 *   -EIO      anything else, with the reason logged
 *
 * Threads: one struct lfs_store is used by one thread at a time (each
 * driver keeps one libcurl handle); open one per thread.
 */
#ifndef LFS_STORE_H
#define LFS_STORE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"

#define LFS_STORE_CONNECT_MS  5000
#define LFS_STORE_LOW_SPEED   1024 /* bytes/s ... */
#define LFS_STORE_LOW_SPEED_S 15   /* ... for this long: aborted */
#define LFS_STORE_DEADLINE_MS 30000
#define LFS_STORE_MIN_RATE    ((uint64_t)16 << 10) /* bytes/s */

struct lfs_store;

/* Called for each key found by list(); non-zero stops the listing. */
typedef int (*lfs_store_list_fn)(void *ctx, const char *key);

/*
 * Where get_to() delivers an object: size (may be NULL) is told the
 * object's size first when the store knows it (already checked against
 * the cap), then write gets the bytes in order, in pieces of any length.
 * A non-zero return from either ends the transfer, and get_to() returns
 * it. After any error the sink may hold part of the object: callers
 * throw it away.
 */
struct lfs_store_sink {
	int (*size)(void *ctx, uint64_t size);
	int (*write)(void *ctx, const uint8_t *data, size_t len);
	void *ctx;
};

struct lfs_store_ops {
	int (*put)(struct lfs_store *s, const char *key, const uint8_t *data,
		   size_t len, bool if_absent);
	/*
	 * Stream the object to sink. An object over max bytes is -EFBIG:
	 * before any byte is read when the store tells the size first,
	 * else as soon as more than max bytes arrive.
	 */
	int (*get_to)(struct lfs_store *s, const char *key, uint64_t max,
		      const struct lfs_store_sink *sink);
	/* Every key that starts with prefix, in no particular order. */
	int (*list)(struct lfs_store *s, const char *prefix,
		    lfs_store_list_fn fn, void *ctx);
	/* Deleting an absent object is not an error. */
	int (*del)(struct lfs_store *s, const char *key);
	void (*free)(struct lfs_store *s);
};

/* Every driver's object starts with this (zeroed, but for ops and url). */
struct lfs_store {
	const struct lfs_store_ops *ops;
	char *url; /* for messages; never holds credentials */
	/* lfs_mono_us() after which requests end; 0: never. */
	_Atomic int64_t cancel_at;
};

/* Open the store a URL names. */
int lfs_store_open(struct lfs_store **out, const char *url);
void lfs_store_free(struct lfs_store *s);

/*
 * Make requests running after when (lfs_mono_us() time; 0: never,
 * which undoes it) end with -ECANCELED. Callable from any thread, also
 * while another thread is inside a request on s.
 */
void lfs_store_cancel_at(struct lfs_store *s, int64_t when);

/*
 * For drivers, from a transfer's progress callback: 0 to go on,
 * -ECANCELED after lfs_store_cancel_at()'s time, -ETIMEDOUT when a request
 * that started at start (lfs_mono_us()) and has moved `moved` bytes is
 * past its total deadline (see above).
 */
int lfs_store_check_deadline(struct lfs_store *s, int64_t start,
			     uint64_t moved);

static inline int lfs_store_put(struct lfs_store *s, const char *key,
				const uint8_t *data, size_t len, bool if_absent)
{
	return s->ops->put(s, key, data, len, if_absent);
}

/* Stream an object to a sink (see struct lfs_store_sink, get_to). */
static inline int lfs_store_get_to(struct lfs_store *s, const char *key,
				   uint64_t max,
				   const struct lfs_store_sink *sink)
{
	return s->ops->get_to(s, key, max, sink);
}

/*
 * Append the object to out, within out's cap (-EFBIG, refused before its
 * bytes are read when the store tells the size first). On failure out is
 * as on entry. For small objects; stream large ones (lfs_store_get_fd).
 */
int lfs_store_get(struct lfs_store *s, const char *key, struct lfs_buf *out);

/*
 * Write the object to fd from its current offset, at most max bytes
 * (-EFBIG), and say how many in *out_len (may be NULL). Memory stays
 * bounded whatever the object's size. On failure fd holds part of it.
 */
int lfs_store_get_fd(struct lfs_store *s, const char *key, int fd, uint64_t max,
		     uint64_t *out_len);

/* A sink appending to b, within its cap: for drivers that read into one. */
void lfs_store_sink_buf(struct lfs_store_sink *out, struct lfs_buf *b);

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
