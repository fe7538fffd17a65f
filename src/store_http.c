#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

/*
 * http(s):// store: a WebDAV collection used as a blob store (lighttpd's
 * mod_webdav is the reference server).
 *
 * A key "a/b/c" is the resource <root>a/b/c, every byte outside
 * [A-Za-z0-9-._~/] percent-encoded; keys with a "." segment are refused
 * (-EINVAL), since servers fold "a/./b" into "a/b". WebDAV refuses a PUT whose
 * parent collection is missing (409), so put() first creates the parents with
 * MKCOL, walking up only as far as needed, and remembers the collections
 * it has seen exist; a 409 despite that memory forgets it and creates them
 * once more. if_absent sends "If-None-Match: *" (412: -EEXIST).
 *
 * list() asks PROPFIND Depth: 1 on the collection holding the prefix and
 * descends into the sub-collections the prefix can still match, breadth
 * first, bounded in depth, in the number of collections and in the size of
 * each answer. The multistatus XML is scanned, not parsed: for each
 * <response> the first <href> and whether its <resourcetype> holds a
 * <collection>, any namespace prefix. Hrefs (a path or an absolute URL) are
 * entity-decoded, percent-decoded, stripped of the root's path and checked
 * as keys; only direct members of the collection asked for count, anything
 * else is skipped. An answer without its closing </multistatus> is -EBADMSG.
 * Keys of one collection reach the callback after its answer has been read, so
 * the callback may use the store.
 *
 * Every request has store.h's deadlines (a connect timeout, a low-speed
 * limit, a total deadline that grows with the bytes moved) and ends early
 * after lfs_store_cancel_at(), checked from curl's progress callback (about
 * once a second while nothing moves); nothing is retried here. Credentials come
 * from the URL's userinfo or from LEDGERFS_HTTP_USER / LEDGERFS_HTTP_PASSWORD
 * and go out as basic auth; they are never logged and never part of base.url.
 */

#include "store.h"

#include "buf.h"
#include "log.h"
#include "hex.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#define HTTP_MAX_DISCARD    ((size_t)1 << 20)
#define HTTP_MAX_LISTING    ((size_t)64 << 20)
#define HTTP_MAX_DIRS_KNOWN 1024
#define HTTP_LIST_MAX_DEPTH 16
#define HTTP_LIST_MAX_COLLS 65536
#define HTTP_MAX_HREF       4096

#ifdef PACKAGE_VERSION
#define HTTP_USER_AGENT "ledgerfs/" PACKAGE_VERSION
#else
#define HTTP_USER_AGENT "ledgerfs"
#endif

struct http_store {
	struct lfs_store base;
	CURL *curl;
	char *root;      /* base URL, encoded, ends in '/', no credentials */
	char *root_path; /* its path, decoded, ends in '/' */
	char *user;      /* NULL: no authentication */
	char *password;
	char **dirs; /* collections known to exist: "" (root), "a/", "a/b/" */
	size_t ndirs;
	char errbuf[CURL_ERROR_SIZE];
};

/* One request: what to send, where the answer goes. */
struct http_req {
	struct http_store *h;
	const char *method;
	const char *url;
	const uint8_t *body; /* PUT, PROPFIND */
	size_t body_len;
	size_t body_off;
	struct curl_slist *headers;
	/* 2xx body goes here, up to max bytes; NULL: discarded */
	const struct lfs_store_sink *sink;
	uint64_t max, got;
	size_t discarded;
	bool checked_length;
	int sink_err;  /* why the write callback stopped the transfer */
	int abort_err; /* why the progress callback did */
	int64_t start; /* lfs_store_now_us() when sent */
	long status;
};

static void http_explicit_free(char *s)
{
	if (s) {
		explicit_bzero(s, strlen(s));
		free(s);
	}
}

static bool unreserved(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
	       (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' ||
	       c == '~';
}

/* root + rel with every byte but unreserved ones and '/' percent-encoded. */
static char *http_url(struct http_store *h, const char *rel)
{
	size_t rl = strlen(h->root), n = rl + 3 * strlen(rel) + 1;
	char *u = malloc(n), *p;
	if (!u)
		return NULL;
	memcpy(u, h->root, rl);
	p = u + rl;
	for (const unsigned char *s = (const unsigned char *)rel; *s; s++) {
		if (unreserved(*s) || *s == '/') {
			*p++ = (char)*s;
		} else {
			static const char hex[] = "0123456789ABCDEF";
			*p++ = '%';
			*p++ = hex[*s >> 4];
			*p++ = hex[*s & 15];
		}
	}
	*p = '\0';
	return u;
}

static size_t http_write_cb(char *data, size_t size, size_t nmemb, void *ctx)
{
	struct http_req *q = ctx;
	size_t n = size * nmemb;
	long status = 0;
	curl_easy_getinfo(q->h->curl, CURLINFO_RESPONSE_CODE, &status);
	if (!q->sink || status < 200 || status > 299) {
		/* Bound what a server may make us read and throw away. */
		q->discarded += n;
		if (q->discarded > HTTP_MAX_DISCARD) {
			q->sink_err = -EBADMSG;
			return 0;
		}
		return n;
	}
	if (!q->checked_length) {
		/* Refuse an object over the cap before reading any of it. */
		curl_off_t cl = -1;
		q->checked_length = true;
		curl_easy_getinfo(q->h->curl,
				  CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &cl);
		if (cl >= 0) {
			int rc = (uint64_t)cl > q->max ? -EFBIG
				 : q->sink->size ? q->sink->size(q->sink->ctx,
								 (uint64_t)cl)
						 : 0;
			if (rc) {
				q->sink_err = rc;
				return 0;
			}
		}
	}
	q->got += n;
	int rc = q->got > q->max ? -EFBIG
				 : q->sink->write(q->sink->ctx,
						  (const uint8_t *)data, n);
	if (rc) {
		q->sink_err = rc;
		return 0;
	}
	return n;
}

static size_t http_read_cb(char *dst, size_t size, size_t nmemb, void *ctx)
{
	struct http_req *q = ctx;
	size_t n = size * nmemb, left = q->body_len - q->body_off;
	if (n > left)
		n = left;
	if (n)
		memcpy(dst, q->body + q->body_off, n);
	q->body_off += n;
	return n;
}

/* The total deadline and lfs_store_cancel_at(). */
static int http_progress_cb(void *ctx, curl_off_t dltotal, curl_off_t dlnow,
			    curl_off_t ultotal, curl_off_t ulnow)
{
	struct http_req *q = ctx;
	(void)dltotal;
	(void)ultotal;
	uint64_t moved = (uint64_t)(dlnow > 0 ? dlnow : 0) +
			 (uint64_t)(ulnow > 0 ? ulnow : 0);
	q->abort_err = lfs_store_check_deadline(&q->h->base, q->start, moved);
	return q->abort_err ? 1 : 0;
}

/* curl rewinds the body when it resends a request on a new connection. */
static int http_seek_cb(void *ctx, curl_off_t offset, int origin)
{
	struct http_req *q = ctx;
	if (origin != SEEK_SET || offset < 0 || (uint64_t)offset > q->body_len)
		return CURL_SEEKFUNC_FAIL;
	q->body_off = (size_t)offset;
	return CURL_SEEKFUNC_OK;
}

static int http_curl_err(struct http_req *q, CURLcode c)
{
	struct http_store *h = q->h;
	const char *why = h->errbuf[0] ? h->errbuf : curl_easy_strerror(c);
	switch (c) {
	case CURLE_COULDNT_RESOLVE_PROXY:
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_CONNECT:
	case CURLE_OPERATION_TIMEDOUT:
	case CURLE_SEND_ERROR:
	case CURLE_RECV_ERROR:
	case CURLE_GOT_NOTHING:
	case CURLE_PARTIAL_FILE:
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_HTTP2:
	case CURLE_HTTP2_STREAM:
	case CURLE_HTTP3:
	case CURLE_QUIC_CONNECT_ERROR:
	case CURLE_AGAIN:
		lfs_debug("%s %s: %s (will retry)", q->method, q->url, why);
		return -EAGAIN;
	case CURLE_ABORTED_BY_CALLBACK:
		if (q->abort_err == -ETIMEDOUT) {
			lfs_info(
				"%s %s: no complete answer within the deadline "
				"(will retry)",
				q->method, q->url);
			return -EAGAIN;
		}
		if (q->abort_err)
			return q->abort_err;
		lfs_error("%s %s: %s", q->method, q->url, why);
		return -EIO;
	case CURLE_OUT_OF_MEMORY:
		return -ENOMEM;
	case CURLE_URL_MALFORMAT:
	case CURLE_UNSUPPORTED_PROTOCOL:
		lfs_error("%s %s: %s; check the store URL", q->method, q->url,
			  why);
		return -EINVAL;
	case CURLE_PEER_FAILED_VERIFICATION:
		lfs_error(
			"%s %s: the server's certificate is not trusted (%s); "
			"install its CA certificate or fix the host name",
			q->method, q->url, why);
		return -EIO;
	default:
		lfs_error("%s %s: %s", q->method, q->url, why);
		return -EIO;
	}
}

/*
 * Send q; 0 with q->status set when an HTTP answer came back whole,
 * otherwise a negative errno (the write callback's reason first).
 */
static int http_perform(struct http_req *q)
{
	struct http_store *h = q->h;
	CURL *c = h->curl;
	if (lfs_store_check_deadline(&h->base, lfs_store_now_us(), 0)) {
		curl_slist_free_all(q->headers);
		q->headers = NULL;
		return -ECANCELED;
	}
	curl_easy_reset(c);
	h->errbuf[0] = '\0';
	struct curl_slist *hl = curl_slist_append(q->headers, "Expect:");
	if (!hl) {
		curl_slist_free_all(q->headers);
		q->headers = NULL;
		return -ENOMEM;
	}
	q->headers = hl;
	curl_easy_setopt(c, CURLOPT_URL, q->url);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, h->errbuf);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS,
			 (long)LFS_STORE_CONNECT_MS);
	curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, (long)LFS_STORE_LOW_SPEED);
	curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME,
			 (long)LFS_STORE_LOW_SPEED_S);
	curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, http_progress_cb);
	curl_easy_setopt(c, CURLOPT_XFERINFODATA, q);
	q->abort_err = 0;
	q->start = lfs_store_now_us();
	curl_easy_setopt(c, CURLOPT_USERAGENT, HTTP_USER_AGENT);
#if LIBCURL_VERSION_NUM >= 0x075500
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
#else
	curl_easy_setopt(c, CURLOPT_PROTOCOLS,
			 (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
	if (h->user) {
		curl_easy_setopt(c, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
		curl_easy_setopt(c, CURLOPT_USERNAME, h->user);
		curl_easy_setopt(c, CURLOPT_PASSWORD,
				 h->password ? h->password : "");
	}
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, http_write_cb);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, q);
	if (!strcmp(q->method, "PUT")) {
		curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
		curl_easy_setopt(c, CURLOPT_READFUNCTION, http_read_cb);
		curl_easy_setopt(c, CURLOPT_READDATA, q);
		curl_easy_setopt(c, CURLOPT_SEEKFUNCTION, http_seek_cb);
		curl_easy_setopt(c, CURLOPT_SEEKDATA, q);
		curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE,
				 (curl_off_t)q->body_len);
	} else if (q->body) {
		curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, q->method);
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, (const char *)q->body);
		curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE,
				 (curl_off_t)q->body_len);
	} else if (strcmp(q->method, "GET")) {
		curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, q->method);
	}
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, q->headers);
	CURLcode rc = curl_easy_perform(c);
	curl_slist_free_all(q->headers);
	q->headers = NULL;
	if (q->sink_err) {
		if (q->sink_err == -EBADMSG)
			lfs_error("%s %s: the server sent more than %zu bytes "
				  "with an error status; ignoring it",
				  q->method, q->url, HTTP_MAX_DISCARD);
		return q->sink_err;
	}
	if (rc != CURLE_OK)
		return http_curl_err(q, rc);
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &q->status);
	return 0;
}

/* Translate a status no caller expected. */
static int http_status_err(struct http_req *q)
{
	long st = q->status;
	if (st == 401 || st == 403) {
		lfs_warn("%s %s: the server refused access (HTTP %ld); check "
			 "the user and password (in the URL or "
			 "LEDGERFS_HTTP_USER/LEDGERFS_HTTP_PASSWORD) and the "
			 "server's permissions",
			 q->method, q->url, st);
		return -EACCES;
	}
	if (st == 408 || st == 429 || (st >= 500 && st <= 599)) {
		lfs_debug("%s %s: HTTP %ld (will retry)", q->method, q->url,
			  st);
		return -EAGAIN;
	}
	if (st == 405 || st == 501)
		lfs_error("%s %s: the server does not allow %s here (HTTP "
			  "%ld); is WebDAV enabled and writable for this "
			  "path?",
			  q->method, q->url, q->method, st);
	else
		lfs_error("%s %s: unexpected answer HTTP %ld", q->method,
			  q->url, st);
	return -EIO;
}

/* ---- collections known to exist ---- */

static bool dir_known(struct http_store *h, const char *dir)
{
	for (size_t i = 0; i < h->ndirs; i++)
		if (!strcmp(h->dirs[i], dir))
			return true;
	return false;
}

static void dirs_forget(struct http_store *h)
{
	for (size_t i = 0; i < h->ndirs; i++)
		free(h->dirs[i]);
	h->ndirs = 0;
}

static void dir_remember(struct http_store *h, const char *dir)
{
	if (dir_known(h, dir))
		return;
	if (h->ndirs == HTTP_MAX_DIRS_KNOWN)
		dirs_forget(h);
	if (!h->dirs &&
	    !(h->dirs = calloc(HTTP_MAX_DIRS_KNOWN, sizeof(*h->dirs))))
		return; /* only a cache */
	char *d = strdup(dir);
	if (d)
		h->dirs[h->ndirs++] = d;
}

/* Make sure collection dir ("" or "a/b/") exists, creating parents. */
static int http_mkcol(struct http_store *h, const char *dir, int depth)
{
	if (dir_known(h, dir))
		return 0;
	if (depth > HTTP_LIST_MAX_DEPTH)
		return -EINVAL;
	char *url = http_url(h, dir);
	if (!url)
		return -ENOMEM;
	struct http_req q = {.h = h, .method = "MKCOL", .url = url};
	int rc = http_perform(&q);
	if (!rc && q.status == 409 && dir[0]) {
		/* The parent is missing: create it, then try once more. */
		size_t n = strlen(dir) - 1;
		while (n > 0 && dir[n - 1] != '/')
			n--;
		char *parent = strndup(dir, n);
		rc = parent ? http_mkcol(h, parent, depth + 1) : -ENOMEM;
		free(parent);
		if (!rc) {
			q = (struct http_req){
				.h = h, .method = "MKCOL", .url = url};
			rc = http_perform(&q);
		}
	}
	if (!rc) {
		/* 405: something is there already (a collection, we hope). */
		if ((q.status >= 200 && q.status <= 299) || q.status == 405)
			dir_remember(h, dir);
		else if (q.status == 409) {
			lfs_error("MKCOL %s: the parent collection does not "
				  "exist; create it on the server",
				  url);
			rc = -EIO;
		} else
			rc = http_status_err(&q);
	}
	free(url);
	return rc;
}

/* ---- operations ---- */

/*
 * A valid key that also survives the URL path: WebDAV servers (and curl)
 * fold "." segments away, so "a/./b" would alias "a/b".
 */
static bool http_key_ok(const char *key)
{
	if (!lfs_store_valid_key(key))
		return false;
	for (const char *c = key; (c = strchr(c, '.')); c++)
		if ((c == key || c[-1] == '/') && (c[1] == '/' || !c[1]))
			return false;
	return true;
}

static int http_put_once(struct http_store *h, const char *url,
			 const uint8_t *data, size_t len, bool if_absent,
			 long *status)
{
	struct http_req q = {.h = h,
			     .method = "PUT",
			     .url = url,
			     .body = data,
			     .body_len = len};
	q.headers = curl_slist_append(NULL,
				      "Content-Type: application/octet-stream");
	if (q.headers && if_absent)
		q.headers = curl_slist_append(q.headers, "If-None-Match: *");
	if (!q.headers)
		return -ENOMEM;
	int rc = http_perform(&q);
	*status = q.status;
	if (rc || (q.status >= 200 && q.status <= 299) || q.status == 409)
		return rc;
	if (q.status == 412 && if_absent)
		return -EEXIST;
	return http_status_err(&q);
}

static int http_put(struct lfs_store *s, const char *key, const uint8_t *data,
		    size_t len, bool if_absent)
{
	struct http_store *h = (struct http_store *)s;
	if (!http_key_ok(key))
		return -EINVAL;
	const char *slash = strrchr(key, '/');
	char *parent = strndup(key, slash ? (size_t)(slash - key) + 1 : 0);
	char *url = http_url(h, key);
	long status = 0;
	int rc = parent && url ? 0 : -ENOMEM;
	if (!rc)
		rc = http_mkcol(h, parent, 0);
	if (!rc)
		rc = http_put_once(h, url, data, len, if_absent, &status);
	if (!rc && status == 409) {
		/* A collection we knew vanished: create them again, once. */
		dirs_forget(h);
		rc = http_mkcol(h, parent, 0);
		if (!rc)
			rc = http_put_once(h, url, data, len, if_absent,
					   &status);
		if (!rc && status == 409) {
			lfs_error("PUT %s: the server keeps answering 409 "
				  "Conflict after creating the collection",
				  url);
			rc = -EIO;
		}
	}
	free(parent);
	free(url);
	return rc;
}

static int http_get_to(struct lfs_store *s, const char *key, uint64_t max,
		       const struct lfs_store_sink *sink)
{
	struct http_store *h = (struct http_store *)s;
	if (!http_key_ok(key))
		return -EINVAL;
	char *url = http_url(h, key);
	if (!url)
		return -ENOMEM;
	struct http_req q = {
		.h = h, .method = "GET", .url = url, .sink = sink, .max = max};
	int rc = http_perform(&q);
	if (!rc) {
		if (q.status == 200)
			rc = 0;
		else if (q.status == 404 || q.status == 410)
			rc = -ENOENT;
		else if (q.status >= 200 && q.status <= 299) {
			lfs_error("GET %s: unexpected answer HTTP %ld to a "
				  "plain GET",
				  url, q.status);
			rc = -EBADMSG;
		} else {
			rc = http_status_err(&q);
		}
	}
	free(url);
	return rc;
}

static int http_del(struct lfs_store *s, const char *key)
{
	struct http_store *h = (struct http_store *)s;
	if (!http_key_ok(key))
		return -EINVAL;
	char *url = http_url(h, key);
	if (!url)
		return -ENOMEM;
	struct http_req q = {.h = h, .method = "DELETE", .url = url};
	int rc = http_perform(&q);
	if (!rc && !(q.status >= 200 && q.status <= 299) && q.status != 404 &&
	    q.status != 410)
		rc = http_status_err(&q);
	free(url);
	return rc;
}

/* ---- listing ---- */

/* Names found in one collection: keys, and sub-collections ("a/b/"). */
struct dav_names {
	char **v;
	size_t n, cap;
};

static int names_add(struct dav_names *d, const char *s)
{
	if (d->n == d->cap) {
		size_t cap = d->cap ? 2 * d->cap : 64;
		char **v = realloc(d->v, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		d->v = v;
		d->cap = cap;
	}
	if (!(d->v[d->n] = strdup(s)))
		return -ENOMEM;
	d->n++;
	return 0;
}

static void names_release(struct dav_names *d)
{
	for (size_t i = 0; i < d->n; i++)
		free(d->v[i]);
	free(d->v);
	*d = (struct dav_names){0};
}

static int names_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorted, so that duplicates (from a confused server) sit side by side. */
static void names_sort(struct dav_names *d)
{
	if (d->n > 1)
		qsort(d->v, d->n, sizeof(*d->v), names_cmp);
}

/*
 * Decode XML character references, then percent-encoding, of the href
 * text [p, end) into out (size HTTP_MAX_HREF). Only printable ASCII may
 * come out. False for anything else.
 */
static bool href_decode(char *out, const char *p, const char *end)
{
	char tmp[HTTP_MAX_HREF];
	size_t n = 0;
	while (p < end && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n'))
		p++;
	while (end > p && (end[-1] == ' ' || end[-1] == '\t' ||
			   end[-1] == '\r' || end[-1] == '\n'))
		end--;
	while (p < end) {
		unsigned long c = (unsigned char)*p;
		if (c == '&') {
			const char *semi = memchr(p, ';', (size_t)(end - p));
			if (!semi || semi - p > 10)
				return false;
			size_t l = (size_t)(semi - p) - 1;
			const char *e = p + 1;
			if (l == 3 && !memcmp(e, "amp", 3))
				c = '&';
			else if (l == 2 && !memcmp(e, "lt", 2))
				c = '<';
			else if (l == 2 && !memcmp(e, "gt", 2))
				c = '>';
			else if (l == 4 && !memcmp(e, "quot", 4))
				c = '"';
			else if (l == 4 && !memcmp(e, "apos", 4))
				c = '\'';
			else if (l >= 2 && e[0] == '#') {
				bool hex = e[1] == 'x' || e[1] == 'X';
				c = 0;
				const char *d = e + 1 + hex;
				if (d == semi)
					return false;
				for (; d < semi; d++) {
					int v = hex ? lfs_hex_value(*d)
						    : (*d >= '0' && *d <= '9'
							       ? *d - '0'
							       : -1);
					if (v < 0 || c > 0x10ffff)
						return false;
					c = c * (hex ? 16 : 10) + (unsigned)v;
				}
			} else {
				return false;
			}
			p = semi + 1;
		} else {
			p++;
		}
		if (c <= ' ' || c >= 0x7f || n + 1 >= sizeof(tmp))
			return false;
		tmp[n++] = (char)c;
	}
	size_t o = 0;
	for (size_t i = 0; i < n; i++) {
		char c = tmp[i];
		if (c == '%') {
			int hi = i + 2 < n ? lfs_hex_value(tmp[i + 1]) : -1;
			int lo = i + 2 < n ? lfs_hex_value(tmp[i + 2]) : -1;
			if (hi < 0 || lo < 0)
				return false;
			c = (char)(hi * 16 + lo);
			i += 2;
			if (c <= ' ' || c >= 0x7f)
				return false;
		}
		out[o++] = c;
	}
	out[o] = '\0';
	return true;
}

struct dav_scan {
	struct http_store *h;
	const char *dir;    /* the collection asked for, relative */
	const char *prefix; /* the listing's prefix */
	struct dav_names *keys, *colls;
};

/* One <response>: sort its href into keys or sub-collections. */
static int dav_entry(struct dav_scan *sc, const char *p, const char *end,
		     bool coll)
{
	char path[HTTP_MAX_HREF], rel[HTTP_MAX_HREF + 1];
	if (!href_decode(path, p, end))
		return 0;
	const char *q = path;
	if (!strncmp(q, "http://", 7) || !strncmp(q, "https://", 8)) {
		q = strchr(q, ':') + 3;
		q = strchr(q, '/');
		if (!q)
			q = "/";
	}
	size_t rl = strlen(sc->h->root_path), dl = strlen(sc->dir);
	if (strncmp(q, sc->h->root_path, rl)) {
		/* The root itself, named without its trailing slash. */
		return 0;
	}
	snprintf(rel, sizeof(rel), "%s", q + rl);
	size_t n = strlen(rel);
	if (coll && n && rel[n - 1] != '/') {
		rel[n++] = '/';
		rel[n] = '\0';
	}
	/* Only the direct members of the collection asked for. */
	if (n <= dl || strncmp(rel, sc->dir, dl))
		return 0;
	const char *sl = strchr(rel + dl, '/');
	if (sl && (!coll || sl != rel + n - 1))
		return 0;
	if (coll) {
		size_t pl = strlen(sc->prefix);
		if (strncmp(rel, sc->prefix, n < pl ? n : pl))
			return 0;
		rel[n - 1] = '\0';
		if (!http_key_ok(rel))
			return 0;
		rel[n - 1] = '/';
		return names_add(sc->colls, rel);
	}
	if (strncmp(rel, sc->prefix, strlen(sc->prefix)) || !http_key_ok(rel))
		return 0;
	return names_add(sc->keys, rel);
}

static const char *find(const char *p, const char *end, const char *what)
{
	size_t n = strlen(what);
	for (; p + n <= end; p++)
		if (!memcmp(p, what, n))
			return p;
	return NULL;
}

static bool name_is(const char *s, size_t n, const char *name)
{
	return strlen(name) == n && !memcmp(s, name, n);
}

/*
 * Scan a multistatus document [p, end). -EBADMSG if it is not XML or ends
 * before its </multistatus>.
 */
static int dav_scan(struct dav_scan *sc, const char *p, const char *end)
{
	bool in_resp = false, in_rt = false, in_href = false;
	bool have_href = false, bad_href = false, coll = false, done = false;
	const char *hs = NULL, *he = NULL;
	int rc = 0;
	while (!rc && p < end) {
		if (*p != '<') {
			p++;
			continue;
		}
		const char *tag = p;
		if (in_href && (end - p < 2 || p[1] != '/'))
			bad_href = true; /* markup inside an href */
		if (end - p >= 4 && !memcmp(p, "<!--", 4)) {
			p = find(p + 4, end, "-->");
			if (!p)
				return -EBADMSG;
			p += 3;
			continue;
		}
		if (end - p >= 9 && !memcmp(p, "<![CDATA[", 9)) {
			p = find(p + 9, end, "]]>");
			if (!p)
				return -EBADMSG;
			p += 3;
			continue;
		}
		if (end - p >= 2 && p[1] == '!')
			return -EBADMSG; /* DOCTYPE and friends: not here */
		if (end - p >= 2 && p[1] == '?') {
			p = find(p + 2, end, "?>");
			if (!p)
				return -EBADMSG;
			p += 2;
			continue;
		}
		p++;
		bool closing = p < end && *p == '/';
		if (closing)
			p++;
		const char *ns = p;
		while (p < end && *p != '>' && *p != '/' && *p != ' ' &&
		       *p != '\t' && *p != '\r' && *p != '\n')
			p++;
		const char *ne = p, *local = ns;
		for (const char *c = ns; c < ne; c++)
			if (*c == ':')
				local = c + 1;
		size_t ln = (size_t)(ne - local);
		while (p < end && *p != '>') {
			if (*p == '"' || *p == '\'') {
				const char *qe = memchr(p + 1, *p,
							(size_t)(end - p - 1));
				if (!qe)
					return -EBADMSG;
				p = qe;
			}
			p++;
		}
		if (p >= end || ne == ns)
			return -EBADMSG;
		bool empty = !closing && p[-1] == '/';
		p++;
		if (in_href && closing && !name_is(local, ln, "href"))
			bad_href = true;
		if (name_is(local, ln, "multistatus")) {
			done = closing;
		} else if (name_is(local, ln, "response")) {
			if (!closing && !empty) {
				in_resp = true;
				in_rt = in_href = have_href = false;
				bad_href = coll = false;
			} else if (closing && in_resp) {
				if (have_href && !bad_href)
					rc = dav_entry(sc, hs, he, coll);
				in_resp = false;
			}
		} else if (!in_resp) {
			continue;
		} else if (name_is(local, ln, "href")) {
			if (!closing && !empty && !have_href && !in_href) {
				in_href = true;
				bad_href = false;
				hs = p;
			} else if (closing && in_href) {
				in_href = false;
				have_href = true;
				he = tag;
			}
		} else if (name_is(local, ln, "resourcetype")) {
			in_rt = !closing && !empty;
		} else if (name_is(local, ln, "collection")) {
			if (in_rt && !closing)
				coll = true;
		}
	}
	return rc ? rc : done ? 0 : -EBADMSG;
}

static const char propfind_body[] =
	"<?xml version=\"1.0\" encoding=\"utf-8\"?>\n"
	"<D:propfind xmlns:D=\"DAV:\"><D:prop><D:resourcetype/></D:prop>"
	"</D:propfind>\n";

/* PROPFIND one collection; 0 with nothing added when it doesn't exist. */
static int http_propfind(struct http_store *h, const char *dir,
			 const char *prefix, struct dav_names *keys,
			 struct dav_names *colls)
{
	char *url = http_url(h, dir);
	if (!url)
		return -ENOMEM;
	struct lfs_buf xml;
	lfs_buf_init(&xml, HTTP_MAX_LISTING);
	struct lfs_store_sink sink;
	lfs_store_sink_buf(&sink, &xml);
	struct http_req q = {.h = h,
			     .method = "PROPFIND",
			     .url = url,
			     .body = (const uint8_t *)propfind_body,
			     .body_len = sizeof(propfind_body) - 1,
			     .sink = &sink,
			     .max = HTTP_MAX_LISTING};
	q.headers = curl_slist_append(NULL, "Depth: 1");
	if (q.headers)
		q.headers = curl_slist_append(q.headers,
					      "Content-Type: application/xml; "
					      "charset=utf-8");
	int rc = q.headers ? http_perform(&q) : -ENOMEM;
	if (rc == -EFBIG) {
		lfs_error("PROPFIND %s: the listing is larger than %zu bytes; "
			  "not reading it",
			  url, HTTP_MAX_LISTING);
		rc = -EIO;
	} else if (!rc && q.status == 207) {
		struct dav_scan sc = {.h = h,
				      .dir = dir,
				      .prefix = prefix,
				      .keys = keys,
				      .colls = colls};
		const char *x = (const char *)xml.data;
		rc = dav_scan(&sc, x, x + xml.len);
		if (rc == -EBADMSG)
			lfs_error("PROPFIND %s: the answer is not a WebDAV "
				  "multistatus document",
				  url);
	} else if (!rc && q.status != 404) {
		if (q.status >= 200 && q.status <= 299) {
			lfs_error("PROPFIND %s: expected HTTP 207, got %ld; is "
				  "this a WebDAV server?",
				  url, q.status);
			rc = -EBADMSG;
		} else {
			rc = http_status_err(&q);
		}
	}
	lfs_buf_release(&xml);
	free(url);
	return rc;
}

static int http_list(struct lfs_store *s, const char *prefix,
		     lfs_store_list_fn fn, void *ctx)
{
	struct http_store *h = (struct http_store *)s;
	size_t pl = strlen(prefix);
	if (pl > 1024 || strstr(prefix, "//") || prefix[0] == '/')
		return -EINVAL;
	for (const char *c = prefix; *c; c++)
		if (*c <= ' ' || *c >= 0x7f || *c == '\\')
			return -EINVAL;
	const char *slash = strrchr(prefix, '/');
	struct dav_names todo = {0};
	int rc = 0, too_deep = 0;
	if (slash) {
		/* The collection part must be a path of whole keys' dirs. */
		char *d = strndup(prefix, (size_t)(slash - prefix));
		rc = !d ? -ENOMEM : http_key_ok(d) ? 0 : -EINVAL;
		free(d);
	}
	if (!rc) {
		char *d = strndup(prefix,
				  slash ? (size_t)(slash - prefix) + 1 : 0);
		rc = d ? names_add(&todo, d) : -ENOMEM;
		free(d);
	}
	/* Breadth first; todo grows as sub-collections turn up. */
	for (size_t i = 0; !rc && i < todo.n; i++) {
		if (i == HTTP_LIST_MAX_COLLS) {
			lfs_error("listing %s%s: more than %d collections; "
				  "giving up",
				  h->root, prefix, HTTP_LIST_MAX_COLLS);
			rc = -EIO;
			break;
		}
		struct dav_names keys = {0}, colls = {0};
		rc = http_propfind(h, todo.v[i], prefix, &keys, &colls);
		names_sort(&keys);
		names_sort(&colls);
		for (size_t j = 0; !rc && j < keys.n; j++)
			if (!j || strcmp(keys.v[j], keys.v[j - 1]))
				rc = fn(ctx, keys.v[j]);
		for (size_t j = 0; !rc && j < colls.n; j++) {
			if (j && !strcmp(colls.v[j], colls.v[j - 1]))
				continue;
			int depth = 0;
			for (const char *c = colls.v[j]; *c; c++)
				depth += *c == '/';
			if (depth <= HTTP_LIST_MAX_DEPTH)
				rc = names_add(&todo, colls.v[j]);
			else if (!too_deep++)
				lfs_warn("listing %s%s: not descending into %s "
					 "and other collections deeper than %d "
					 "levels",
					 h->root, prefix, colls.v[j],
					 HTTP_LIST_MAX_DEPTH);
		}
		names_release(&keys);
		names_release(&colls);
	}
	names_release(&todo);
	return rc;
}

static void http_free(struct lfs_store *s)
{
	struct http_store *h = (struct http_store *)s;
	if (!h)
		return;
	if (h->curl)
		curl_easy_cleanup(h->curl);
	dirs_forget(h);
	free(h->dirs);
	free(h->root);
	free(h->root_path);
	http_explicit_free(h->user);
	http_explicit_free(h->password);
	free(h->base.url);
	free(h);
}

static const struct lfs_store_ops http_ops = {
	.put = http_put,
	.get_to = http_get_to,
	.list = http_list,
	.del = http_del,
	.free = http_free,
};

/* A copy of s with a '/' at the end (unless it has one). */
static char *with_slash(const char *s)
{
	size_t n = strlen(s);
	char *r = malloc(n + 2);
	if (r) {
		memcpy(r, s, n);
		if (!n || s[n - 1] != '/')
			r[n++] = '/';
		r[n] = '\0';
	}
	return r;
}

static int http_parse_url(struct http_store *h, const char *url)
{
	CURLU *u = curl_url();
	char *scheme = NULL, *query = NULL, *frag = NULL, *user = NULL;
	char *pass = NULL, *clean = NULL, *path = NULL;
	int rc = u ? 0 : -ENOMEM;
	if (!rc && curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK) {
		lfs_error("the store URL is not a valid http(s) URL");
		rc = -EINVAL;
	}
	if (!rc && (curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) ||
		    (strcmp(scheme, "http") && strcmp(scheme, "https"))))
		rc = -EINVAL;
	if (!rc && (!curl_url_get(u, CURLUPART_QUERY, &query, 0) ||
		    !curl_url_get(u, CURLUPART_FRAGMENT, &frag, 0))) {
		lfs_error("the store URL has a query or fragment; name a "
			  "WebDAV collection (http://host/path)");
		rc = -EINVAL;
	}
	if (!rc) {
		curl_url_get(u, CURLUPART_USER, &user, CURLU_URLDECODE);
		curl_url_get(u, CURLUPART_PASSWORD, &pass, CURLU_URLDECODE);
		if (curl_url_set(u, CURLUPART_USER, NULL, 0) ||
		    curl_url_set(u, CURLUPART_PASSWORD, NULL, 0) ||
		    curl_url_set(u, CURLUPART_OPTIONS, NULL, 0) ||
		    curl_url_get(u, CURLUPART_URL, &clean, 0) ||
		    curl_url_get(u, CURLUPART_PATH, &path, CURLU_URLDECODE))
			rc = -EINVAL;
	}
	if (!rc) {
		/* The URL's user (and password, else the environment's), or
		 * the environment's user and password. */
		bool url_user = user && user[0];
		const char *u_src =
			url_user ? user : getenv("LEDGERFS_HTTP_USER");
		const char *p_src = url_user && pass
					    ? pass
					    : getenv("LEDGERFS_HTTP_PASSWORD");
		if (u_src && u_src[0]) {
			h->user = strdup(u_src);
			h->password = strdup(p_src ? p_src : "");
			if (!h->user || !h->password)
				rc = -ENOMEM;
		}
		h->root = with_slash(clean);
		h->root_path = with_slash(path);
		h->base.url = strdup(clean);
		if (!h->root || !h->root_path || !h->base.url)
			rc = -ENOMEM;
	}
	if (user)
		explicit_bzero(user, strlen(user));
	if (pass)
		explicit_bzero(pass, strlen(pass));
	curl_free(scheme);
	curl_free(query);
	curl_free(frag);
	curl_free(user);
	curl_free(pass);
	curl_free(clean);
	curl_free(path);
	curl_url_cleanup(u);
	return rc;
}

int lfs_store_http_open(struct lfs_store **out, const char *url)
{
	struct http_store *h = calloc(1, sizeof(*h));
	if (!h)
		return -ENOMEM;
	h->base.ops = &http_ops;
	int rc = http_parse_url(h, url);
	if (!rc && !(h->curl = curl_easy_init()))
		rc = -ENOMEM;
	if (rc) {
		http_free(&h->base);
		return rc;
	}
	*out = &h->base;
	return 0;
}
