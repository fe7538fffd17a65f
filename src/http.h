/*
 * http: the HTTP client layer of the network store drivers (store_s3.c and
 * store_http.c), so that both send, time out, classify errors, encode and
 * read XML the same way:
 *
 *   - requests on one libcurl easy handle (struct lfs_http), with store.h's
 *     deadlines: LFS_STORE_CONNECT_MS to connect, the low-speed limit, and
 *     the total deadline that grows with the bytes moved, checked with
 *     lfs_store_cancel_at() from curl's progress callback;
 *   - answers: a 2xx body streams to the request's sink within its cap
 *     (-EFBIG, before any byte when Content-Length says so); any other
 *     status keeps the first LFS_HTTP_ERR_MAX bytes of its body in
 *     req->err for the driver to read, and the rest is not read (the
 *     status speaks); a 2xx body nobody asked for is read and dropped up
 *     to LFS_HTTP_DISCARD_MAX (-EBADMSG beyond);
 *   - one classification of failures, logged here once: connection
 *     refused, reset, timeouts, HTTP/2 stream errors ... are transient
 *     (-EAGAIN, "will retry", at info level); a request past its deadline
 *     is -EAGAIN too; lfs_store_cancel_at() is -ECANCELED; a bad URL is
 *     -EINVAL; anything else -EIO, at error level. HTTP statuses map
 *     through lfs_http_status_errno();
 *   - one rule for secrets: they live in heap strings freed with
 *     lfs_http_secret_free(), which wipes them; they never reach a log line
 *     or store->url.
 *
 * It also holds the two parsers of what the stores answer: S3's
 * ListObjectsV2 page and WebDAV's PROPFIND multistatus. Both scan, they do
 * not parse XML in general; both take untrusted bytes of any content and
 * length (tests/fuzz/fuzz_s3_list.c, fuzz_dav.c).
 *
 * Threads: an lfs_http is used by one thread at a time. main() has called
 * curl_global_init() before any thread starts.
 */
#ifndef LFS_HTTP_H
#define LFS_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <curl/curl.h>

#include "buf.h"
#include "store.h"

#define LFS_HTTP_ERR_MAX     ((size_t)64 << 10) /* a non-2xx body kept */
#define LFS_HTTP_DISCARD_MAX ((size_t)1 << 20)  /* an unwanted 2xx body */

struct lfs_http {
	CURL *curl;
	struct lfs_store *store; /* deadlines, cancelling; store->url */
	char errbuf[CURL_ERROR_SIZE];
};

/* A handle for requests on behalf of store (borrowed). -ENOMEM. */
int lfs_http_init(struct lfs_http *h, struct lfs_store *store);
void lfs_http_release(struct lfs_http *h);

struct lfs_http_req {
	/* Set by the caller (lfs_http_req_init() zeroes the rest). */
	const char *method;         /* GET, PUT, DELETE, MKCOL, PROPFIND ... */
	const char *url;            /* encoded; never holds credentials */
	const char *what;           /* for the driver's messages: a key ... */
	struct curl_slist *headers; /* borrowed */
	const uint8_t *body;        /* sent when body_len or PUT */
	size_t body_len;
	bool no_expect;   /* send "Expect:" (no 100-continue wait) */
	bool path_as_is;  /* leave "." segments in the path alone */
	const char *user; /* with password: basic auth, or SigV4 below */
	const char *password;
	const char *sigv4; /* CURLOPT_AWS_SIGV4 ("aws:amz:REGION:s3") */
	const struct lfs_store_sink *sink; /* 2xx body; NULL: discard */
	uint64_t max;                      /* sink's cap */
	/* Filled by lfs_http_perform(). */
	long status;
	struct lfs_buf err; /* first LFS_HTTP_ERR_MAX bytes of a non-2xx body */
	/* Internal. */
	struct lfs_http *h;
	uint64_t got;
	size_t discarded;
	int cb_err, abort_err;
	int64_t start;
	bool decided, is_error;
};

void lfs_http_req_init(struct lfs_http_req *r, const char *method,
		       const char *url, const char *what);
void lfs_http_req_release(struct lfs_http_req *r);

/*
 * Send r once (and once more at once when a reused keep-alive connection
 * turns out dead before any answer). 0 with r->status set when an HTTP
 * answer came back, any status: the caller maps it. Otherwise a negative
 * errno, logged here: the sink's own error, -EFBIG (over r->max),
 * -EAGAIN, -ECANCELED, -EBADMSG, -ENOMEM, -EINVAL or -EIO (see above).
 */
int lfs_http_perform(struct lfs_http *h, struct lfs_http_req *r);

/*
 * The errno of an HTTP status, the same for every driver: 2xx 0; 404 and
 * 410 -ENOENT; 412 -EEXIST; 401 and 403 -EACCES; 408, 429 and 5xx but
 * 501 -EAGAIN; anything else (3xx, other 4xx, 501) -EIO.
 */
int lfs_http_status_errno(long status);

/* Wipe and free a secret (NULL is fine). */
void lfs_http_secret_free(char *s);

/* Percent-encode s[0..n) into b: all but A-Za-z0-9-_.~ (and '/' when
 * keep_slash). Returns b's error. */
int lfs_http_pct_encode(struct lfs_buf *b, const char *s, size_t n,
			bool keep_slash);

/* Decode %XX in place (and '+' as a space when plus_space); -EINVAL on a
 * bad escape or %00. */
int lfs_http_pct_decode(char *s, bool plus_space);

/*
 * Unescape XML text p[0..n) (the five named entities, &#N; and &#xH;)
 * into a new string (*out, malloc'd). -EBADMSG on markup, a malformed or
 * NUL-producing reference; -ENOMEM.
 */
int lfs_http_xml_text(char **out, const char *p, size_t n);

/*
 * Find the next <name>...</name> in [*pos, end): the raw (still escaped)
 * text in *val, *vlen, and *pos moved past the closing tag. False when
 * there is none. For S3's flat documents.
 */
bool lfs_http_xml_next(const char **pos, const char *end, const char *name,
		       const char **val, size_t *vlen);

/*
 * One ListObjectsV2 page: every <Key>, unescaped, in order, to fn (a
 * non-zero return stops and is returned), and the continuation token in
 * *token (malloc'd; NULL when the page is the last). -EBADMSG when it is
 * not a ListBucketResult, a Key is malformed, or a truncated page has no
 * token; fn's error; -ENOMEM.
 */
int lfs_http_s3_list_page(const char *xml, size_t len,
			  int (*fn)(void *ctx, const char *key), void *ctx,
			  char **token);

/*
 * A WebDAV multistatus document: for each <response>, its first <href>
 * decoded (XML references, then percent-encoding; only printable ASCII
 * without spaces survives, else the response is skipped) and whether its
 * <resourcetype> holds a <collection>, any namespace prefix, to fn (a
 * non-zero return stops and is returned). -EBADMSG when it is not XML this
 * scanner reads or ends before its </multistatus>.
 */
#define LFS_HTTP_HREF_MAX 4096
int lfs_http_dav_multistatus(const char *xml, size_t len,
			     int (*fn)(void *ctx, const char *href,
				       bool collection),
			     void *ctx);

#endif
