/*
 * store_s3: the s3:// store driver — any S3 service (AWS, Ceph radosgw,
 * MinIO...) over libcurl with AWS Signature Version 4.
 *
 * URL:  s3://BUCKET[/PREFIX][?endpoint=URL&region=NAME]
 *
 *   Objects are BUCKET/PREFIX/KEY, addressed path-style:
 *   ENDPOINT/BUCKET/PREFIX/KEY. The endpoint comes from the URL, else
 *   $LEDGERFS_S3_ENDPOINT, $AWS_ENDPOINT_URL_S3, $AWS_ENDPOINT_URL, else
 *   https://s3.REGION.amazonaws.com. The region from the URL, else
 *   $AWS_REGION, $AWS_DEFAULT_REGION, else us-east-1. Credentials from
 *   $AWS_ACCESS_KEY_ID and $AWS_SECRET_ACCESS_KEY (with $AWS_SESSION_TOKEN
 *   if set), else from the [$AWS_PROFILE] (default: [default]) section of
 *   $AWS_SHARED_CREDENTIALS_FILE (default: ~/.aws/credentials). They are
 *   read once, at open, and never logged. The bucket must exist: the
 *   driver never creates one.
 *
 * Signing: libcurl's CURLOPT_AWS_SIGV4 signs what it sends, but libcurl
 * 7.88 does not add x-amz-content-sha256, does not sort or encode the query
 * and does not encode the path. So every request carries
 * x-amz-content-sha256 (the hex SHA-256 of the body; curl signs it), keys
 * are percent-encoded here (all but A-Za-z0-9-_.~ and '/'), the query is
 * built canonical here (names sorted, values encoded), and curl is told to
 * leave "." path segments alone (CURLOPT_PATH_AS_IS). 7.88 also signs a
 * header it was told to remove ("Expect:"), so PUT bodies go as POSTFIELDS,
 * for which curl sends no "Expect: 100-continue" below 1 MiB.
 *
 * Each request is one attempt, bounded in time by store.h's deadlines (a
 * connect timeout, a low-speed limit, a total deadline that grows with the
 * bytes moved), so a hung or trickling server gives -EAGAIN rather than a
 * hung caller; lfs_store_cancel_at() ends it early (-ECANCELED), checked
 * from curl's progress callback. The only retry here is one immediate
 * retry when a reused keep-alive connection turns out to be dead; the sync
 * thread retries everything else with backoff. put with if_absent sends
 * If-None-Match: * (412 -> -EEXIST). list uses ListObjectsV2 and follows
 * continuation tokens; response bodies are capped (LIST_MAX, ERR_MAX).
 *
 * main() must have called curl_global_init() and sodium_init() before
 * threads start; each store object owns one curl easy handle (and so one
 * connection cache) and is used by one thread at a time.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1 /* memmem */
#endif

#include "store.h"

#include <ctype.h>
#include <errno.h>
#include <pwd.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include <curl/curl.h>
#include <sodium.h>

#include "log.h"
#include "hex.h"

#ifndef PACKAGE_VERSION
#define PACKAGE_VERSION "dev"
#endif

#define ERR_MAX        ((size_t)64 << 10) /* an error document */
#define LIST_MAX       ((size_t)16 << 20) /* one ListObjectsV2 page */
#define DISCARD_MAX    ((size_t)1 << 20)  /* an ignored 2xx body */
#define CREDS_FILE_MAX ((size_t)64 << 10)
#define LIST_MAX_PAGES 1000000
#define EMPTY_SHA256                                                           \
	"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

struct s3_store {
	struct lfs_store base;
	CURL *curl;
	char *endpoint; /* scheme://host[:port][/path], no trailing '/' */
	char *bucket;
	char *prefix; /* "" or "some/prefix/" */
	char *region;
	char *sigv4; /* "aws:amz:REGION:s3" */
	char *access_key;
	char *secret_key;
	char *session_token; /* NULL when none */
	char errbuf[CURL_ERROR_SIZE];
};

struct s3_req {
	const char *method;  /* GET, PUT or DELETE */
	const char *what;    /* for messages: the key or prefix */
	const char *path;    /* encoded, after the bucket ("" or "/k/e/y") */
	const char *query;   /* canonical, or NULL */
	const uint8_t *body; /* PUT */
	size_t body_len;
	bool if_none_match;
	/* 2xx body goes here, up to max bytes; NULL: discard */
	const struct lfs_store_sink *sink;
	uint64_t max, got;
	size_t discarded;
	struct lfs_buf err; /* non-2xx body */
	long status;
	int cb_err;    /* set by the write callback */
	int abort_err; /* set by the progress callback */
	int64_t start; /* lfs_store_now_us() when sent */
	struct lfs_store *store;
	bool decided; /* status looked at by the write callback */
	bool is_error;
	char code[64]; /* S3 error Code, "" when none */
};

/* ---- small helpers ---- */

static bool unreserved(unsigned char c)
{
	return isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~';
}

/* Percent-encode s[0..n) into b; '/' kept when keep_slash. */
static int pct_encode(struct lfs_buf *b, const char *s, size_t n,
		      bool keep_slash)
{
	static const char hex[] = "0123456789ABCDEF";
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (unreserved(c) || (keep_slash && c == '/')) {
			lfs_buf_append_byte(b, c);
		} else {
			char e[3] = {'%', hex[c >> 4], hex[c & 15]};
			lfs_buf_append(b, e, 3);
		}
	}
	return b->err;
}

/* Decode %XX (and '+' as space) in place; -EINVAL on a bad escape. */
static int pct_decode(char *s)
{
	char *w = s;
	for (const char *r = s; *r; r++) {
		if (*r == '%') {
			int hi = lfs_hex_value(r[1]),
			    lo = hi < 0 ? -1 : lfs_hex_value(r[2]);
			if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
				return -EINVAL;
			*w++ = (char)(hi << 4 | lo);
			r += 2;
		} else {
			*w++ = *r == '+' ? ' ' : *r;
		}
	}
	*w = '\0';
	return 0;
}

static char *buf_to_str(struct lfs_buf *b)
{
	if (lfs_buf_append_byte(b, 0))
		return NULL;
	size_t n;
	return (char *)lfs_buf_steal(b, &n);
}

/* ---- minimal XML: S3's documents are flat enough to scan by tag ---- */

/*
 * Find the next <name>...</name> in [*pos, end); on success set *val and
 * *vlen to the raw (still escaped) text and advance *pos past the closing
 * tag. Returns false when there is none.
 */
static bool xml_next(const char **pos, const char *end, const char *name,
		     const char **val, size_t *vlen)
{
	char open[64], close[64];
	int on = snprintf(open, sizeof(open), "<%s>", name);
	int cn = snprintf(close, sizeof(close), "</%s>", name);
	if (on <= 0 || cn <= 0 || (size_t)cn >= sizeof(close) || *pos >= end)
		return false;
	const char *o = memmem(*pos, (size_t)(end - *pos), open, (size_t)on);
	if (!o)
		return false;
	const char *v = o + on;
	const char *c = memmem(v, (size_t)(end - v), close, (size_t)cn);
	if (!c)
		return false;
	*val = v;
	*vlen = (size_t)(c - v);
	*pos = c + cn;
	return true;
}

/* Append the UTF-8 encoding of code point cp. */
static void utf8_append(struct lfs_buf *b, unsigned long cp)
{
	if (cp < 0x80) {
		lfs_buf_append_byte(b, (uint8_t)cp);
	} else if (cp < 0x800) {
		lfs_buf_append_byte(b, (uint8_t)(0xc0 | cp >> 6));
		lfs_buf_append_byte(b, (uint8_t)(0x80 | (cp & 0x3f)));
	} else if (cp < 0x10000) {
		lfs_buf_append_byte(b, (uint8_t)(0xe0 | cp >> 12));
		lfs_buf_append_byte(b, (uint8_t)(0x80 | ((cp >> 6) & 0x3f)));
		lfs_buf_append_byte(b, (uint8_t)(0x80 | (cp & 0x3f)));
	} else {
		lfs_buf_append_byte(b, (uint8_t)(0xf0 | cp >> 18));
		lfs_buf_append_byte(b, (uint8_t)(0x80 | ((cp >> 12) & 0x3f)));
		lfs_buf_append_byte(b, (uint8_t)(0x80 | ((cp >> 6) & 0x3f)));
		lfs_buf_append_byte(b, (uint8_t)(0x80 | (cp & 0x3f)));
	}
}

/*
 * Unescape XML text (the five named entities and &#N; / &#xH;) into a new
 * string. -EBADMSG on a malformed or NUL-producing reference.
 */
static int xml_text(char **out, const char *p, size_t n)
{
	struct lfs_buf b;
	lfs_buf_init(&b, n + 1);
	static const struct {
		const char *name;
		char c;
	} named[] = {{"amp;", '&'},
		     {"lt;", '<'},
		     {"gt;", '>'},
		     {"quot;", '"'},
		     {"apos;", '\''}};
	for (size_t i = 0; i < n;) {
		if (p[i] == '<') {
			lfs_buf_release(&b);
			return -EBADMSG; /* markup inside text: CDATA etc. */
		}
		if (p[i] != '&') {
			lfs_buf_append_byte(&b, (uint8_t)p[i++]);
			continue;
		}
		size_t rest = n - i - 1;
		const char *r = p + i + 1;
		bool done = false;
		for (size_t k = 0; k < sizeof(named) / sizeof(named[0]); k++) {
			size_t l = strlen(named[k].name);
			if (rest >= l && !memcmp(r, named[k].name, l)) {
				lfs_buf_append_byte(&b, (uint8_t)named[k].c);
				i += 1 + l;
				done = true;
				break;
			}
		}
		if (done)
			continue;
		/* &#N; or &#xH; */
		bool hex =
			rest > 1 && r[0] == '#' && (r[1] == 'x' || r[1] == 'X');
		unsigned long cp = 0;
		size_t j = hex ? 2 : 1, digits = 0;
		for (; r[0] == '#' && j < rest && digits < 8; j++, digits++) {
			int v = hex ? lfs_hex_value(r[j]) : r[j] - '0';
			if (v < 0 || v >= (hex ? 16 : 10))
				break;
			cp = cp * (hex ? 16 : 10) + (unsigned long)v;
		}
		if (r[0] != '#' || !digits || j >= rest || r[j] != ';' ||
		    cp == 0 || cp > 0x10ffff) {
			lfs_buf_release(&b);
			return -EBADMSG;
		}
		utf8_append(&b, cp);
		i += 1 + j + 1;
	}
	if (b.err || !(*out = buf_to_str(&b))) {
		int e = b.err ? b.err : -ENOMEM;
		lfs_buf_release(&b);
		return e == -EFBIG ? -ENOMEM : e;
	}
	lfs_buf_release(&b);
	return 0;
}

/* ---- requests ---- */

static size_t on_write(char *data, size_t size, size_t nmemb, void *ctx)
{
	struct s3_req *r = ctx;
	size_t n = size * nmemb;
	if (!r->decided) {
		r->decided = true;
		r->is_error = r->status < 200 || r->status > 299;
	}
	if (r->is_error) {
		if (r->err.len + n > ERR_MAX) {
			n = ERR_MAX - r->err.len; /* keep the start, stop */
			lfs_buf_append(&r->err, data, n);
			return 0;
		}
		return lfs_buf_append(&r->err, data, n) ? 0 : size * nmemb;
	}
	if (!r->sink) {
		r->discarded += n;
		if (r->discarded > DISCARD_MAX) {
			r->cb_err = -EBADMSG;
			return 0;
		}
		return n;
	}
	r->got += n;
	int rc = r->got > r->max ? -EFBIG
				 : r->sink->write(r->sink->ctx,
						  (const uint8_t *)data, n);
	if (rc) {
		r->cb_err = rc;
		return 0;
	}
	return n;
}

/* Header callback: learn the status (and size) before the body arrives. */
static size_t on_header(char *data, size_t size, size_t nmemb, void *ctx)
{
	struct s3_req *r = ctx;
	size_t n = size * nmemb;
	if (n > 5 && !memcmp(data, "HTTP/", 5)) {
		/* A new response (after 100 Continue, say). */
		const char *sp = memchr(data, ' ', n);
		r->status = 0;
		for (int d = 0; sp && d < 3 && ++sp < data + n &&
				isdigit((unsigned char)*sp);
		     d++)
			r->status = r->status * 10 + (*sp - '0');
		r->decided = false;
	} else if (r->sink && r->status >= 200 && r->status <= 299 && n > 15 &&
		   !strncasecmp(data, "content-length:", 15)) {
		char tmp[32];
		size_t l = n - 15 < sizeof(tmp) - 1 ? n - 15 : sizeof(tmp) - 1;
		memcpy(tmp, data + 15, l);
		tmp[l] = '\0';
		char *e;
		unsigned long long v = strtoull(tmp, &e, 10);
		/* Fail early on an object over the cap; else tell its size. */
		int rc = e == tmp        ? 0
			 : v > r->max    ? -EFBIG
			 : r->sink->size ? r->sink->size(r->sink->ctx, v)
					 : 0;
		if (rc) {
			r->cb_err = rc;
			return 0;
		}
	}
	return n;
}

/* The total deadline and lfs_store_cancel_at(). */
static int on_progress(void *ctx, curl_off_t dltotal, curl_off_t dlnow,
		       curl_off_t ultotal, curl_off_t ulnow)
{
	struct s3_req *r = ctx;
	(void)dltotal;
	(void)ultotal;
	uint64_t moved = (uint64_t)(dlnow > 0 ? dlnow : 0) +
			 (uint64_t)(ulnow > 0 ? ulnow : 0);
	r->abort_err = lfs_store_check_deadline(r->store, r->start, moved);
	return r->abort_err ? 1 : 0;
}

static bool transient_curl(CURLcode c)
{
	switch (c) {
	case CURLE_COULDNT_CONNECT:
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_RESOLVE_PROXY:
	case CURLE_OPERATION_TIMEDOUT:
	case CURLE_SEND_ERROR:
	case CURLE_RECV_ERROR:
	case CURLE_GOT_NOTHING:
	case CURLE_PARTIAL_FILE:
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_HTTP2:
	case CURLE_HTTP2_STREAM:
	case CURLE_AGAIN:
		return true;
	default:
		return false;
	}
}

/* Fill r->code from the error document, if any. */
static void parse_error_code(struct s3_req *r)
{
	r->code[0] = '\0';
	if (!r->err.len)
		return;
	const char *pos = (const char *)r->err.data, *end = pos + r->err.len,
		   *v;
	size_t n;
	if (!xml_next(&pos, end, "Code", &v, &n))
		return;
	size_t i = 0;
	for (; i < n && i < sizeof(r->code) - 1; i++)
		r->code[i] = isalnum((unsigned char)v[i]) ? v[i] : '?';
	r->code[i] = '\0';
}

static int set_headers(struct s3_store *s, struct s3_req *r,
		       struct curl_slist **out)
{
	char line[256];
	struct curl_slist *h = NULL, *t;
	char hash[crypto_hash_sha256_BYTES * 2 + 1] = EMPTY_SHA256;
	if (r->body_len) {
		unsigned char d[crypto_hash_sha256_BYTES];
		crypto_hash_sha256(d, r->body, r->body_len);
		sodium_bin2hex(hash, sizeof(hash), d, sizeof(d));
	}
	snprintf(line, sizeof(line), "x-amz-content-sha256: %s", hash);
	if (!(t = curl_slist_append(h, line)))
		goto oom;
	h = t;
	if (r->if_none_match) {
		if (!(t = curl_slist_append(h, "If-None-Match: *")))
			goto oom;
		h = t;
	}
	if (s->session_token) {
		size_t n = strlen(s->session_token) + 32;
		char *tok = malloc(n);
		if (!tok)
			goto oom;
		snprintf(tok, n, "x-amz-security-token: %s", s->session_token);
		t = curl_slist_append(h, tok);
		sodium_memzero(tok, n);
		free(tok);
		if (!t)
			goto oom;
		h = t;
	}
	if (!strcmp(r->method, "PUT")) {
		/*
		 * A body given as POSTFIELDS: curl adds no "Expect:
		 * 100-continue" (and no wait for it) below 1 MiB. Removing
		 * the header with "Expect:" would break 7.88's signature.
		 */
		t = curl_slist_append(h,
				      "Content-Type: application/octet-stream");
		if (!t)
			goto oom;
		h = t;
	}
	*out = h;
	return 0;
oom:
	curl_slist_free_all(h);
	return -ENOMEM;
}

static CURLcode perform_once(struct s3_store *s, struct s3_req *r,
			     const char *url, struct curl_slist *hdrs)
{
	CURL *c = s->curl;
	curl_easy_reset(c);
	r->status = 0;
	r->decided = false;
	r->cb_err = 0;
	r->abort_err = 0;
	r->store = &s->base;
	r->start = lfs_store_now_us();
	r->discarded = 0;
	r->got = 0;
	lfs_buf_reset(&r->err);
	s->errbuf[0] = '\0';
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_PATH_AS_IS, 1L);
#if LIBCURL_VERSION_NUM >= 0x075500
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
#else
	curl_easy_setopt(c, CURLOPT_PROTOCOLS,
			 (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, s->errbuf);
	curl_easy_setopt(c, CURLOPT_USERAGENT, "ledgerfs/" PACKAGE_VERSION);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS,
			 (long)LFS_STORE_CONNECT_MS);
	curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, (long)LFS_STORE_LOW_SPEED);
	curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME,
			 (long)LFS_STORE_LOW_SPEED_S);
	curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
	curl_easy_setopt(c, CURLOPT_XFERINFODATA, r);
	curl_easy_setopt(c, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(c, CURLOPT_AWS_SIGV4, s->sigv4);
	curl_easy_setopt(c, CURLOPT_USERNAME, s->access_key);
	curl_easy_setopt(c, CURLOPT_PASSWORD, s->secret_key);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
	curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(c, CURLOPT_HEADERDATA, r);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_write);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
	if (!strcmp(r->method, "PUT")) {
		curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, "PUT");
		curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE,
				 (curl_off_t)r->body_len);
		curl_easy_setopt(c, CURLOPT_POSTFIELDS,
				 r->body_len ? (const char *)r->body : "");
	} else if (!strcmp(r->method, "DELETE")) {
		curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, "DELETE");
	} else {
		curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
	}
	CURLcode cc = curl_easy_perform(c);
	long code = 0;
	if (curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code) == CURLE_OK &&
	    code)
		r->status = code;
	return cc;
}

/*
 * Run one request. Returns 0 with r->status set (any HTTP status: the
 * caller maps it), or a negative errno for a transport failure (logged).
 */
static int perform(struct s3_store *s, struct s3_req *r)
{
	if (lfs_store_check_deadline(&s->base, lfs_store_now_us(), 0))
		return -ECANCELED;
	struct lfs_buf url;
	lfs_buf_init(&url, 0);
	lfs_buf_append_str(&url, s->endpoint);
	lfs_buf_append_byte(&url, '/');
	pct_encode(&url, s->bucket, strlen(s->bucket), false);
	lfs_buf_append_str(&url, r->path);
	if (r->query) {
		lfs_buf_append_byte(&url, '?');
		lfs_buf_append_str(&url, r->query);
	}
	char *u = buf_to_str(&url);
	lfs_buf_release(&url);
	if (!u)
		return -ENOMEM;
	struct curl_slist *hdrs = NULL;
	int rc = set_headers(s, r, &hdrs);
	if (rc) {
		free(u);
		return rc;
	}
	CURLcode cc;
	for (int attempt = 0;; attempt++) {
		cc = perform_once(s, r, u, hdrs);
		long fresh = 1;
		curl_easy_getinfo(s->curl, CURLINFO_NUM_CONNECTS, &fresh);
		bool dead_reuse =
			!fresh && !r->status &&
			(cc == CURLE_SEND_ERROR || cc == CURLE_RECV_ERROR ||
			 cc == CURLE_GOT_NOTHING);
		/* No status: no byte of a body reached the sink. */
		if (attempt || !dead_reuse)
			break;
		lfs_debug("%s: %s %s: reused connection failed (%s); retrying "
			  "once",
			  s->base.url, r->method, r->what,
			  curl_easy_strerror(cc));
	}
	curl_slist_free_all(hdrs);
	free(u);
	if (cc == CURLE_OK)
		return 0;
	if (r->cb_err)
		return r->cb_err;
	if (cc == CURLE_WRITE_ERROR && r->is_error)
		return 0; /* an oversized error document: the status speaks */
	if (cc == CURLE_ABORTED_BY_CALLBACK && r->abort_err == -ETIMEDOUT) {
		lfs_info("%s: %s %s: no complete answer from %s within the "
			 "deadline (will retry)",
			 s->base.url, r->method, r->what, s->endpoint);
		return -EAGAIN;
	}
	if (cc == CURLE_ABORTED_BY_CALLBACK && r->abort_err)
		return r->abort_err;
	const char *why = s->errbuf[0] ? s->errbuf : curl_easy_strerror(cc);
	if (transient_curl(cc)) {
		lfs_info("%s: %s %s: cannot reach %s: %s (will retry)",
			 s->base.url, r->method, r->what, s->endpoint, why);
		return -EAGAIN;
	}
	if (cc == CURLE_OUT_OF_MEMORY)
		return -ENOMEM;
	lfs_error("%s: %s %s: request to %s failed: %s", s->base.url, r->method,
		  r->what, s->endpoint, why);
	return cc == CURLE_URL_MALFORMAT || cc == CURLE_UNSUPPORTED_PROTOCOL
		       ? -EINVAL
		       : -EIO;
}

/*
 * Map a non-2xx status (after perform) to an errno, logging what the user
 * should know. 404 and 412 are left to the caller when not NoSuchBucket.
 */
static int map_status(struct s3_store *s, struct s3_req *r)
{
	parse_error_code(r);
	const char *code = r->code[0] ? r->code : "no error code";
	long st = r->status;
	if (!strcmp(r->code, "NoSuchBucket")) {
		lfs_error("%s: bucket %s does not exist at %s; create it first",
			  s->base.url, s->bucket, s->endpoint);
		return -EIO;
	}
	if (st == 404)
		return -ENOENT;
	if (st == 412)
		return -EEXIST;
	if (st >= 500 || st == 408 || st == 429 ||
	    !strcmp(r->code, "RequestTimeout") ||
	    !strcmp(r->code, "SlowDown") ||
	    !strcmp(r->code, "ConditionalRequestConflict")) {
		if (st == 501) {
			lfs_error("%s: %s %s: the server does not implement "
				  "this (HTTP 501 %s)",
				  s->base.url, r->method, r->what, code);
			return -EIO;
		}
		lfs_info("%s: %s %s: HTTP %ld %s (will retry)", s->base.url,
			 r->method, r->what, st, code);
		return -EAGAIN;
	}
	if (st == 401 || st == 403 || !strcmp(r->code, "ExpiredToken") ||
	    !strcmp(r->code, "InvalidToken")) {
		lfs_error("%s: %s %s: credentials refused (HTTP %ld %s); check "
			  "AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, the "
			  "region (%s) and the clock",
			  s->base.url, r->method, r->what, st, code, s->region);
		return -EACCES;
	}
	if (st >= 300 && st < 400) {
		lfs_error("%s: %s %s: redirected (HTTP %ld %s); check the "
			  "endpoint (%s) and region (%s)",
			  s->base.url, r->method, r->what, st, code,
			  s->endpoint, s->region);
		return -EIO;
	}
	if (st < 100) {
		lfs_error("%s: %s %s: no HTTP status from %s", s->base.url,
			  r->method, r->what, s->endpoint);
		return -EBADMSG;
	}
	lfs_error("%s: %s %s: HTTP %ld %s", s->base.url, r->method, r->what, st,
		  code);
	return -EIO;
}

static void req_init(struct s3_req *r, const char *method, const char *what)
{
	memset(r, 0, sizeof(*r));
	r->method = method;
	r->what = what;
	lfs_buf_init(&r->err, ERR_MAX);
}

/* "/" + encoded(prefix + key) */
static char *object_path(struct s3_store *s, const char *key)
{
	struct lfs_buf b;
	lfs_buf_init(&b, 0);
	lfs_buf_append_byte(&b, '/');
	pct_encode(&b, s->prefix, strlen(s->prefix), true);
	pct_encode(&b, key, strlen(key), true);
	char *p = buf_to_str(&b);
	lfs_buf_release(&b);
	return p;
}

/* ---- operations ---- */

static int s3_put(struct lfs_store *st, const char *key, const uint8_t *data,
		  size_t len, bool if_absent)
{
	struct s3_store *s = (struct s3_store *)st;
	if (!lfs_store_valid_key(key))
		return -EINVAL;
	char *path = object_path(s, key);
	if (!path)
		return -ENOMEM;
	struct s3_req r;
	req_init(&r, "PUT", key);
	r.path = path;
	r.body = data;
	r.body_len = len;
	r.if_none_match = if_absent;
	int rc = perform(s, &r);
	if (!rc && (r.status < 200 || r.status > 299)) {
		rc = map_status(s, &r);
		if (rc == -ENOENT) {
			lfs_error("%s: PUT %s: HTTP 404 %s", s->base.url, key,
				  r.code[0] ? r.code : "no error code");
			rc = -EIO;
		}
		if (rc == -EEXIST && !if_absent) {
			lfs_error("%s: PUT %s: HTTP 412 without a condition",
				  s->base.url, key);
			rc = -EIO;
		}
	}
	lfs_buf_release(&r.err);
	free(path);
	return rc;
}

static int s3_get_to(struct lfs_store *st, const char *key, uint64_t max,
		     const struct lfs_store_sink *sink)
{
	struct s3_store *s = (struct s3_store *)st;
	if (!lfs_store_valid_key(key))
		return -EINVAL;
	char *path = object_path(s, key);
	if (!path)
		return -ENOMEM;
	struct s3_req r;
	req_init(&r, "GET", key);
	r.path = path;
	r.sink = sink;
	r.max = max;
	int rc = perform(s, &r);
	if (!rc && (r.status < 200 || r.status > 299)) {
		rc = map_status(s, &r);
		if (rc == -EEXIST)
			rc = -EIO;
	}
	lfs_buf_release(&r.err);
	free(path);
	return rc;
}

static int s3_del(struct lfs_store *st, const char *key)
{
	struct s3_store *s = (struct s3_store *)st;
	if (!lfs_store_valid_key(key))
		return -EINVAL;
	char *path = object_path(s, key);
	if (!path)
		return -ENOMEM;
	struct s3_req r;
	req_init(&r, "DELETE", key);
	r.path = path;
	int rc = perform(s, &r);
	if (!rc && (r.status < 200 || r.status > 299)) {
		rc = map_status(s, &r);
		if (rc == -ENOENT)
			rc = 0;
		else if (rc == -EEXIST)
			rc = -EIO;
	}
	lfs_buf_release(&r.err);
	free(path);
	return rc;
}

/* The canonical ListObjectsV2 query: names sorted, values encoded. */
static char *list_query(const char *prefix, const char *token)
{
	struct lfs_buf b;
	lfs_buf_init(&b, 0);
	if (token) {
		lfs_buf_append_str(&b, "continuation-token=");
		pct_encode(&b, token, strlen(token), false);
		lfs_buf_append_byte(&b, '&');
	}
	lfs_buf_append_str(&b, "list-type=2&prefix=");
	pct_encode(&b, prefix, strlen(prefix), false);
	char *q = buf_to_str(&b);
	lfs_buf_release(&b);
	return q;
}

/*
 * Parse one page: call fn for each key, set *token to the next
 * continuation token (NULL when this was the last page).
 */
static int list_page(struct s3_store *s, const struct lfs_buf *page,
		     const char *prefix, lfs_store_list_fn fn, void *ctx,
		     char **token)
{
	const char *start = (const char *)page->data, *end = start + page->len,
		   *pos = start, *v;
	size_t n, plen = strlen(s->prefix);
	*token = NULL;
	if (!page->len || !memmem(start, page->len, "<ListBucketResult", 17)) {
		lfs_error("%s: list %s: the answer is not a ListBucketResult",
			  s->base.url, prefix);
		return -EBADMSG;
	}
	bool truncated = false;
	if (xml_next(&pos, end, "IsTruncated", &v, &n))
		truncated = n == 4 && !memcmp(v, "true", 4);
	if (truncated) {
		pos = start;
		char *t = NULL;
		if (!xml_next(&pos, end, "NextContinuationToken", &v, &n) ||
		    !n || xml_text(&t, v, n)) {
			lfs_error("%s: list %s: a truncated page without a "
				  "continuation token",
				  s->base.url, prefix);
			return -EBADMSG;
		}
		*token = t;
	}
	pos = start;
	int rc = 0;
	while (!rc && xml_next(&pos, end, "Key", &v, &n)) {
		char *key;
		rc = xml_text(&key, v, n);
		if (rc) {
			lfs_error("%s: list %s: a malformed Key in the answer",
				  s->base.url, prefix);
			break;
		}
		if (strncmp(key, s->prefix, plen) ||
		    strncmp(key + plen, prefix, strlen(prefix))) {
			lfs_error("%s: list %s: the answer holds a key outside "
				  "the prefix",
				  s->base.url, prefix);
			rc = -EBADMSG;
		} else if (!lfs_store_valid_key(key + plen)) {
			lfs_debug("%s: list: skipping foreign object name",
				  s->base.url);
		} else {
			rc = fn(ctx, key + plen);
		}
		free(key);
	}
	if (rc) {
		free(*token);
		*token = NULL;
	}
	return rc;
}

static int s3_list(struct lfs_store *st, const char *prefix,
		   lfs_store_list_fn fn, void *ctx)
{
	struct s3_store *s = (struct s3_store *)st;
	for (const char *p = prefix; *p; p++)
		if (*p <= ' ' || *p >= 0x7f)
			return -EINVAL;
	size_t n = strlen(s->prefix) + strlen(prefix) + 1;
	char *full = malloc(n);
	if (!full)
		return -ENOMEM;
	snprintf(full, n, "%s%s", s->prefix, prefix);
	char *token = NULL;
	int rc = 0;
	for (long pages = 0; !rc; pages++) {
		if (pages >= LIST_MAX_PAGES) {
			lfs_error("%s: list %s: more than %d pages; giving up",
				  s->base.url, prefix, LIST_MAX_PAGES);
			rc = -EBADMSG;
			break;
		}
		char *q = list_query(full, token);
		if (!q) {
			rc = -ENOMEM;
			break;
		}
		struct lfs_buf page;
		lfs_buf_init(&page, LIST_MAX);
		struct lfs_store_sink sink;
		lfs_store_sink_buf(&sink, &page);
		struct s3_req r;
		req_init(&r, "GET", prefix[0] ? prefix : "(all)");
		r.path = "";
		r.query = q;
		r.sink = &sink;
		r.max = LIST_MAX;
		rc = perform(s, &r);
		if (rc == -EFBIG) {
			lfs_error("%s: list %s: a page over %zu bytes",
				  s->base.url, prefix, LIST_MAX);
			rc = -EBADMSG;
		}
		if (!rc && (r.status < 200 || r.status > 299)) {
			rc = map_status(s, &r);
			if (rc == -ENOENT || rc == -EEXIST) {
				lfs_error("%s: list %s: HTTP %ld %s",
					  s->base.url, prefix, r.status,
					  r.code[0] ? r.code : "no error code");
				rc = -EIO;
			}
		}
		lfs_buf_release(&r.err);
		free(q);
		char *next = NULL;
		if (!rc)
			rc = list_page(s, &page, prefix, fn, ctx, &next);
		lfs_buf_release(&page);
		if (!rc && next && token && !strcmp(next, token)) {
			lfs_error("%s: list %s: the server repeats a "
				  "continuation token",
				  s->base.url, prefix);
			rc = -EBADMSG;
		}
		free(token);
		token = next;
		if (!token)
			break;
	}
	free(token);
	free(full);
	return rc;
}

static void s3_free(struct lfs_store *st)
{
	struct s3_store *s = (struct s3_store *)st;
	if (s->curl)
		curl_easy_cleanup(s->curl);
	free(s->endpoint);
	free(s->bucket);
	free(s->prefix);
	free(s->region);
	free(s->sigv4);
	free(s->access_key);
	if (s->secret_key) {
		sodium_memzero(s->secret_key, strlen(s->secret_key));
		free(s->secret_key);
	}
	if (s->session_token) {
		sodium_memzero(s->session_token, strlen(s->session_token));
		free(s->session_token);
	}
	free(s->base.url);
	free(s);
}

static const struct lfs_store_ops s3_ops = {
	.put = s3_put,
	.get_to = s3_get_to,
	.list = s3_list,
	.del = s3_del,
	.free = s3_free,
};

/* ---- configuration ---- */

static const char *env_nonempty(const char *name)
{
	const char *v = getenv(name);
	return v && v[0] ? v : NULL;
}

static char *trim(char *s)
{
	while (isspace((unsigned char)*s))
		s++;
	size_t n = strlen(s);
	while (n && isspace((unsigned char)s[n - 1]))
		s[--n] = '\0';
	return s;
}

/*
 * Read the access key, secret and token of one profile from an AWS shared
 * credentials file. Returns 0 (fields found are set), -ENOENT when there is
 * no such file or profile, or another negative errno.
 */
static int read_credentials_file(struct s3_store *s)
{
	const char *file = env_nonempty("AWS_SHARED_CREDENTIALS_FILE");
	const char *home = env_nonempty("HOME");
	const char *profile = env_nonempty("AWS_PROFILE");
	/* mount(8) runs us without HOME: fall back to the user's entry. */
	struct passwd *pw = home ? NULL : getpwuid(geteuid());
	if (pw && pw->pw_dir && pw->pw_dir[0])
		home = pw->pw_dir;
	char path[4096];
	if (!profile)
		profile = "default";
	if (file)
		snprintf(path, sizeof(path), "%s", file);
	else if (home)
		snprintf(path, sizeof(path), "%s/.aws/credentials", home);
	else
		return -ENOENT;
	FILE *f = fopen(path, "re");
	if (!f)
		return -ENOENT;
	struct stat st;
	if (fstat(fileno(f), &st) || (size_t)st.st_size > CREDS_FILE_MAX) {
		fclose(f);
		lfs_error("s3: %s is not a credentials file (over %zu bytes)",
			  path, CREDS_FILE_MAX);
		return -EINVAL;
	}
	char line[2048];
	bool in = false, found = false;
	int rc = 0;
	while (!rc && fgets(line, sizeof(line), f)) {
		char *l = trim(line);
		if (!*l || *l == '#' || *l == ';')
			continue;
		if (*l == '[') {
			char *e = strchr(l, ']');
			if (e)
				*e = '\0';
			in = !strcmp(trim(l + 1), profile);
			found = found || in;
			continue;
		}
		char *eq = strchr(l, '=');
		if (!in || !eq)
			continue;
		*eq = '\0';
		char *name = trim(l), *val = trim(eq + 1);
		char **dst = !strcmp(name, "aws_access_key_id") ? &s->access_key
			     : !strcmp(name, "aws_secret_access_key")
				     ? &s->secret_key
			     : !strcmp(name, "aws_session_token")
				     ? &s->session_token
				     : NULL;
		if (!dst || !*val)
			continue;
		free(*dst);
		if (!(*dst = strdup(val)))
			rc = -ENOMEM;
	}
	sodium_memzero(line, sizeof(line));
	fclose(f);
	return rc ? rc : found ? 0 : -ENOENT;
}

static int load_credentials(struct s3_store *s)
{
	const char *ak = env_nonempty("AWS_ACCESS_KEY_ID");
	const char *sk = env_nonempty("AWS_SECRET_ACCESS_KEY");
	if (ak || sk) {
		if (!ak || !sk) {
			lfs_error("%s: set both AWS_ACCESS_KEY_ID and "
				  "AWS_SECRET_ACCESS_KEY, or neither",
				  s->base.url);
			return -EINVAL;
		}
		const char *tok = env_nonempty("AWS_SESSION_TOKEN");
		if (!(s->access_key = strdup(ak)) ||
		    !(s->secret_key = strdup(sk)) ||
		    (tok && !(s->session_token = strdup(tok))))
			return -ENOMEM;
		return 0;
	}
	int rc = read_credentials_file(s);
	if (rc && rc != -ENOENT)
		return rc;
	if (!s->access_key || !s->secret_key) {
		lfs_error("%s: no S3 credentials: set AWS_ACCESS_KEY_ID and "
			  "AWS_SECRET_ACCESS_KEY, or add them to "
			  "~/.aws/credentials [%s]",
			  s->base.url,
			  env_nonempty("AWS_PROFILE") ? getenv("AWS_PROFILE")
						      : "default");
		return -EACCES;
	}
	return 0;
}

static bool valid_bucket(const char *b)
{
	size_t n = strlen(b);
	if (n < 3 || n > 255)
		return false;
	for (const char *p = b; *p; p++)
		if (!isalnum((unsigned char)*p) && *p != '-' && *p != '.' &&
		    *p != '_')
			return false;
	return true;
}

static int set_endpoint(struct s3_store *s, const char *e)
{
	if (strncmp(e, "http://", 7) && strncmp(e, "https://", 8)) {
		lfs_error("s3: endpoint '%s' must start with http:// or "
			  "https://",
			  e);
		return -EINVAL;
	}
	const char *host = strstr(e, "://") + 3;
	size_t hl = strcspn(host, "/?#");
	if (!hl || memchr(host, '@', hl) || strpbrk(e, "?# \t\r\n")) {
		lfs_error("s3: endpoint must be scheme://host[:port][/path] "
			  "without credentials, query or fragment");
		return -EINVAL;
	}
	free(s->endpoint);
	if (!(s->endpoint = strdup(e)))
		return -ENOMEM;
	size_t n = strlen(s->endpoint);
	while (n && s->endpoint[n - 1] == '/')
		s->endpoint[--n] = '\0';
	return 0;
}

/* Parse "name=value&..." (values percent-decoded). */
static int parse_query(struct s3_store *s, char *q)
{
	for (char *save = NULL, *kv = strtok_r(q, "&", &save); kv;
	     kv = strtok_r(NULL, "&", &save)) {
		char *eq = strchr(kv, '=');
		if (!eq) {
			lfs_error("s3: option '%s' has no value", kv);
			return -EINVAL;
		}
		*eq = '\0';
		char *val = eq + 1;
		if (pct_decode(val)) {
			lfs_error("s3: option %s: bad %%-escape", kv);
			return -EINVAL;
		}
		int rc = 0;
		if (!strcmp(kv, "endpoint")) {
			rc = set_endpoint(s, val);
		} else if (!strcmp(kv, "region")) {
			free(s->region);
			if (!(s->region = strdup(val)))
				rc = -ENOMEM;
		} else {
			lfs_error("s3: unknown option '%s' (known: endpoint, "
				  "region)",
				  kv);
			rc = -EINVAL;
		}
		if (rc)
			return rc;
	}
	return 0;
}

int lfs_store_s3_open(struct lfs_store **out, const char *rest)
{
	struct s3_store *s = calloc(1, sizeof(*s));
	char *spec = strdup(rest);
	int rc = -ENOMEM;
	if (!s || !spec)
		goto fail;
	s->base.ops = &s3_ops;
	char *q = strchr(spec, '?');
	if (q)
		*q++ = '\0';
	char *slash = strchr(spec, '/');
	const char *pfx = "";
	if (slash) {
		*slash = '\0';
		pfx = slash + 1;
	}
	char *p = (char *)pfx;
	size_t pl = strlen(p);
	while (pl && p[pl - 1] == '/')
		p[--pl] = '\0';
	rc = -EINVAL;
	if (!valid_bucket(spec)) {
		lfs_error("s3://%s: bad bucket name '%s' (3 or more of "
			  "a-z 0-9 . - _)",
			  rest, spec);
		goto fail;
	}
	if (pl && !lfs_store_valid_key(p)) {
		lfs_error("s3://%s: bad prefix '%s'", spec, p);
		goto fail;
	}
	rc = -ENOMEM;
	if (!(s->bucket = strdup(spec)) || !(s->prefix = malloc(pl + 2)))
		goto fail;
	snprintf(s->prefix, pl + 2, "%s%s", p, pl ? "/" : "");
	size_t un = strlen(s->bucket) + pl + 8;
	if (!(s->base.url = malloc(un)))
		goto fail;
	snprintf(s->base.url, un, "s3://%s%s%s", s->bucket, pl ? "/" : "", p);
	if (q && (rc = parse_query(s, q)))
		goto fail;
	rc = -ENOMEM;
	if (!s->region) {
		const char *r = env_nonempty("AWS_REGION");
		if (!r)
			r = env_nonempty("AWS_DEFAULT_REGION");
		if (!(s->region = strdup(r ? r : "us-east-1")))
			goto fail;
	}
	for (const char *c = s->region; *c; c++)
		if (!isalnum((unsigned char)*c) && *c != '-' && *c != '_') {
			lfs_error("%s: bad region '%s'", s->base.url,
				  s->region);
			rc = -EINVAL;
			goto fail;
		}
	if (!s->endpoint) {
		const char *e = env_nonempty("LEDGERFS_S3_ENDPOINT");
		if (!e)
			e = env_nonempty("AWS_ENDPOINT_URL_S3");
		if (!e)
			e = env_nonempty("AWS_ENDPOINT_URL");
		if (e) {
			if ((rc = set_endpoint(s, e)))
				goto fail;
		} else {
			char def[300];
			snprintf(def, sizeof(def),
				 "https://s3.%s.amazonaws.com", s->region);
			if ((rc = set_endpoint(s, def)))
				goto fail;
		}
	}
	size_t sn = strlen(s->region) + 16;
	rc = -ENOMEM;
	if (!(s->sigv4 = malloc(sn)))
		goto fail;
	snprintf(s->sigv4, sn, "aws:amz:%s:s3", s->region);
	if ((rc = load_credentials(s)))
		goto fail;
	rc = -ENOMEM;
	if (!(s->curl = curl_easy_init()))
		goto fail;
	free(spec);
	*out = &s->base;
	return 0;
fail:
	free(spec);
	if (s)
		s3_free(&s->base);
	return rc;
}
