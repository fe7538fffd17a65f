#ifdef HAVE_CONFIG_H
#include "config.h"
#endif
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1 /* memmem */
#endif

#include "http.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <sodium.h>

#include "cbor.h" /* lfs_utf8_put */
#include "hex.h"
#include "log.h"
#include "timefmt.h"

#ifdef PACKAGE_VERSION
#define USER_AGENT "ledgerfs/" PACKAGE_VERSION
#else
#define USER_AGENT "ledgerfs"
#endif

int lfs_http_init(struct lfs_http *h, struct lfs_store *store)
{
	memset(h, 0, sizeof(*h));
	h->store = store;
	return (h->curl = curl_easy_init()) ? 0 : -ENOMEM;
}

void lfs_http_release(struct lfs_http *h)
{
	if (h->curl)
		curl_easy_cleanup(h->curl);
	h->curl = NULL;
}

void lfs_http_req_init(struct lfs_http_req *r, const char *method,
		       const char *url, const char *what)
{
	memset(r, 0, sizeof(*r));
	r->method = method;
	r->url = url;
	r->what = what;
	lfs_buf_init(&r->err, LFS_HTTP_ERR_MAX);
}

void lfs_http_req_release(struct lfs_http_req *r)
{
	lfs_buf_release(&r->err);
}

void lfs_http_secret_free(char *s)
{
	if (s) {
		sodium_memzero(s, strlen(s));
		free(s);
	}
}

/* ---- one request ---- */

static size_t on_write(char *data, size_t size, size_t nmemb, void *ctx)
{
	struct lfs_http_req *r = ctx;
	size_t n = size * nmemb;
	if (!r->decided) {
		r->decided = true;
		r->is_error = r->status < 200 || r->status > 299;
	}
	if (r->is_error) {
		/* Keep the start for the driver; the status speaks. */
		size_t room = LFS_HTTP_ERR_MAX - r->err.len;
		lfs_buf_append(&r->err, data, n < room ? n : room);
		return n <= room ? n : 0;
	}
	if (!r->sink) {
		r->discarded += n;
		if (r->discarded > LFS_HTTP_DISCARD_MAX) {
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

/* The status (and size) before the body arrives. */
static size_t on_header(char *data, size_t size, size_t nmemb, void *ctx)
{
	struct lfs_http_req *r = ctx;
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
		/* Refuse an object over the cap before reading any of it. */
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

static int on_progress(void *ctx, curl_off_t dltotal, curl_off_t dlnow,
		       curl_off_t ultotal, curl_off_t ulnow)
{
	struct lfs_http_req *r = ctx;
	(void)dltotal;
	(void)ultotal;
	uint64_t moved = (uint64_t)(dlnow > 0 ? dlnow : 0) +
			 (uint64_t)(ulnow > 0 ? ulnow : 0);
	r->abort_err = lfs_store_check_deadline(r->h->store, r->start, moved);
	return r->abort_err ? 1 : 0;
}

static CURLcode perform_once(struct lfs_http *h, struct lfs_http_req *r)
{
	CURL *c = h->curl;
	curl_easy_reset(c);
	r->status = 0;
	r->decided = r->is_error = false;
	r->cb_err = r->abort_err = 0;
	r->got = 0;
	r->discarded = 0;
	r->start = lfs_mono_us();
	lfs_buf_reset(&r->err);
	h->errbuf[0] = '\0';
	curl_easy_setopt(c, CURLOPT_URL, r->url);
	if (r->path_as_is)
		curl_easy_setopt(c, CURLOPT_PATH_AS_IS, 1L);
#if LIBCURL_VERSION_NUM >= 0x075500
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
#else
	curl_easy_setopt(c, CURLOPT_PROTOCOLS,
			 (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, h->errbuf);
	curl_easy_setopt(c, CURLOPT_USERAGENT, USER_AGENT);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS,
			 (long)LFS_STORE_CONNECT_MS);
	curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, (long)LFS_STORE_LOW_SPEED);
	curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME,
			 (long)LFS_STORE_LOW_SPEED_S);
	curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
	curl_easy_setopt(c, CURLOPT_XFERINFODATA, r);
	curl_easy_setopt(c, CURLOPT_TCP_KEEPALIVE, 1L);
	if (r->sigv4)
		curl_easy_setopt(c, CURLOPT_AWS_SIGV4, r->sigv4);
	else if (r->user)
		curl_easy_setopt(c, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
	if (r->user) {
		curl_easy_setopt(c, CURLOPT_USERNAME, r->user);
		curl_easy_setopt(c, CURLOPT_PASSWORD,
				 r->password ? r->password : "");
	}
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, r->headers);
	curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(c, CURLOPT_HEADERDATA, r);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_write);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
	if (r->body_len || !strcmp(r->method, "PUT")) {
		/* POSTFIELDS: curl resends them itself on a new connection. */
		curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, r->method);
		curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE,
				 (curl_off_t)r->body_len);
		curl_easy_setopt(c, CURLOPT_POSTFIELDS,
				 r->body_len ? (const char *)r->body : "");
	} else if (strcmp(r->method, "GET")) {
		curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, r->method);
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

static bool transient(CURLcode c)
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
	case CURLE_HTTP3:
	case CURLE_QUIC_CONNECT_ERROR:
	case CURLE_AGAIN:
		return true;
	default:
		return false;
	}
}

int lfs_http_perform(struct lfs_http *h, struct lfs_http_req *r)
{
	if (lfs_store_check_deadline(h->store, lfs_mono_us(), 0))
		return -ECANCELED;
	r->h = h;
	struct curl_slist *mine = NULL;
	if (r->no_expect) {
		/* Appended to a copy: the caller's list stays as it was. */
		for (struct curl_slist *l = r->headers; l; l = l->next) {
			struct curl_slist *t = curl_slist_append(mine, l->data);
			if (!t) {
				curl_slist_free_all(mine);
				return -ENOMEM;
			}
			mine = t;
		}
		struct curl_slist *t = curl_slist_append(mine, "Expect:");
		if (!t) {
			curl_slist_free_all(mine);
			return -ENOMEM;
		}
		mine = t;
	}
	struct curl_slist *theirs = r->headers;
	if (mine)
		r->headers = mine;
	CURLcode cc;
	for (int attempt = 0;; attempt++) {
		cc = perform_once(h, r);
		long fresh = 1;
		curl_easy_getinfo(h->curl, CURLINFO_NUM_CONNECTS, &fresh);
		/* No status: no byte of a body reached the sink. */
		bool dead_reuse =
			!fresh && !r->status &&
			(cc == CURLE_SEND_ERROR || cc == CURLE_RECV_ERROR ||
			 cc == CURLE_GOT_NOTHING);
		if (attempt || !dead_reuse)
			break;
		lfs_debug("%s %s: reused connection failed (%s); retrying "
			  "once",
			  r->method, r->url, curl_easy_strerror(cc));
	}
	r->headers = theirs;
	curl_slist_free_all(mine);
	if (cc == CURLE_OK)
		return 0;
	if (r->cb_err) {
		if (r->cb_err == -EBADMSG)
			lfs_error("%s %s: the server sent more than %zu bytes "
				  "nobody asked for",
				  r->method, r->url, LFS_HTTP_DISCARD_MAX);
		return r->cb_err;
	}
	if (cc == CURLE_WRITE_ERROR && r->is_error)
		return 0; /* an oversized error body: the status speaks */
	if (cc == CURLE_ABORTED_BY_CALLBACK && r->abort_err == -ETIMEDOUT) {
		lfs_info("%s %s: no complete answer within the deadline (will "
			 "retry)",
			 r->method, r->url);
		return -EAGAIN;
	}
	if (cc == CURLE_ABORTED_BY_CALLBACK && r->abort_err)
		return r->abort_err;
	const char *why = h->errbuf[0] ? h->errbuf : curl_easy_strerror(cc);
	if (transient(cc)) {
		lfs_info("%s %s: %s (will retry)", r->method, r->url, why);
		return -EAGAIN;
	}
	if (cc == CURLE_OUT_OF_MEMORY)
		return -ENOMEM;
	if (cc == CURLE_PEER_FAILED_VERIFICATION) {
		lfs_error(
			"%s %s: the server's certificate is not trusted (%s); "
			"install its CA certificate or fix the host name",
			r->method, r->url, why);
		return -EIO;
	}
	if (cc == CURLE_URL_MALFORMAT || cc == CURLE_UNSUPPORTED_PROTOCOL) {
		lfs_error("%s %s: %s; check the store URL", r->method, r->url,
			  why);
		return -EINVAL;
	}
	lfs_error("%s %s: %s", r->method, r->url, why);
	return -EIO;
}

int lfs_http_status_errno(long st)
{
	if (st >= 200 && st <= 299)
		return 0;
	if (st == 404 || st == 410)
		return -ENOENT;
	if (st == 412)
		return -EEXIST;
	if (st == 401 || st == 403)
		return -EACCES;
	if (st == 408 || st == 429 || (st >= 500 && st <= 599 && st != 501))
		return -EAGAIN;
	return -EIO;
}

/* ---- percent-encoding ---- */

static bool unreserved(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
	       (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' ||
	       c == '~';
}

int lfs_http_pct_encode(struct lfs_buf *b, const char *s, size_t n,
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

int lfs_http_pct_decode(char *s, bool plus_space)
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
			*w++ = plus_space && *r == '+' ? ' ' : *r;
		}
	}
	*w = '\0';
	return 0;
}

/* ---- XML text ---- */

/*
 * The reference at p[0..n) (after its '&', up to and without its ';'):
 * the code point, or 0 when it is not one this reads.
 */
static unsigned long xml_ref(const char *p, size_t n)
{
	static const struct {
		const char *name;
		char c;
	} named[] = {{"amp", '&'},
		     {"lt", '<'},
		     {"gt", '>'},
		     {"quot", '"'},
		     {"apos", '\''}};
	for (size_t k = 0; k < sizeof(named) / sizeof(named[0]); k++)
		if (strlen(named[k].name) == n && !memcmp(p, named[k].name, n))
			return (unsigned char)named[k].c;
	if (n < 2 || p[0] != '#')
		return 0;
	bool hex = p[1] == 'x' || p[1] == 'X';
	size_t i = hex ? 2 : 1;
	if (i == n || n - i > 8)
		return 0;
	unsigned long cp = 0;
	for (; i < n; i++) {
		int v = hex ? lfs_hex_value(p[i])
			    : (p[i] >= '0' && p[i] <= '9' ? p[i] - '0' : -1);
		if (v < 0)
			return 0;
		cp = cp * (hex ? 16 : 10) + (unsigned long)v;
	}
	return cp <= 0x10ffff ? cp : 0;
}

int lfs_http_xml_text(char **out, const char *p, size_t n)
{
	struct lfs_buf b;
	lfs_buf_init(&b, n + 1);
	int rc = 0;
	for (size_t i = 0; !rc && i < n;) {
		if (p[i] == '<') {
			rc = -EBADMSG; /* markup inside text: CDATA etc. */
		} else if (p[i] != '&') {
			lfs_buf_append_byte(&b, (uint8_t)p[i++]);
		} else {
			const char *semi = memchr(p + i, ';', n - i);
			char u[4];
			unsigned long cp =
				semi ? xml_ref(p + i + 1,
					       (size_t)(semi - p - i - 1))
				     : 0;
			if (!cp)
				rc = -EBADMSG;
			else
				lfs_buf_append(&b, u,
					       lfs_utf8_put(u, (uint32_t)cp));
			i = semi ? (size_t)(semi - p) + 1 : n;
		}
	}
	if (!rc)
		lfs_buf_append_byte(&b, 0);
	if (!rc && b.err)
		rc = -ENOMEM;
	if (!rc) {
		size_t len;
		*out = (char *)lfs_buf_steal(&b, &len);
	}
	lfs_buf_release(&b);
	return rc;
}

bool lfs_http_xml_next(const char **pos, const char *end, const char *name,
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

/* ---- S3 ListObjectsV2 ---- */

int lfs_http_s3_list_page(const char *xml, size_t len,
			  int (*fn)(void *ctx, const char *key), void *ctx,
			  char **token)
{
	const char *end = xml + len, *pos = xml, *v;
	size_t n;
	*token = NULL;
	if (!len || !memmem(xml, len, "<ListBucketResult", 17))
		return -EBADMSG;
	bool truncated = false;
	if (lfs_http_xml_next(&pos, end, "IsTruncated", &v, &n))
		truncated = n == 4 && !memcmp(v, "true", 4);
	if (truncated) {
		pos = xml;
		char *t = NULL;
		if (!lfs_http_xml_next(&pos, end, "NextContinuationToken", &v,
				       &n) ||
		    !n || lfs_http_xml_text(&t, v, n))
			return -EBADMSG;
		*token = t;
	}
	pos = xml;
	int rc = 0;
	while (!rc && lfs_http_xml_next(&pos, end, "Key", &v, &n)) {
		char *key;
		if ((rc = lfs_http_xml_text(&key, v, n)))
			break;
		rc = fn(ctx, key);
		free(key);
	}
	if (rc) {
		free(*token);
		*token = NULL;
	}
	return rc;
}

/* ---- WebDAV multistatus ---- */

/*
 * Decode XML references, then percent-encoding, of the href text [p, end)
 * into out (LFS_HTTP_HREF_MAX). Only printable ASCII may come out. False
 * for anything else.
 */
static bool href_decode(char *out, const char *p, const char *end)
{
	char tmp[LFS_HTTP_HREF_MAX];
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
			c = xml_ref(p + 1, (size_t)(semi - p) - 1);
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

static const char *find(const char *p, const char *end, const char *what)
{
	size_t n = strlen(what);
	return (size_t)(end - p) >= n ? memmem(p, (size_t)(end - p), what, n)
				      : NULL;
}

static bool name_is(const char *s, size_t n, const char *name)
{
	return strlen(name) == n && !memcmp(s, name, n);
}

int lfs_http_dav_multistatus(const char *xml, size_t len,
			     int (*fn)(void *ctx, const char *href,
				       bool collection),
			     void *ctx)
{
	const char *p = xml, *end = xml + len;
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
			if (!(p = find(p + 4, end, "-->")))
				return -EBADMSG;
			p += 3;
			continue;
		}
		if (end - p >= 9 && !memcmp(p, "<![CDATA[", 9)) {
			if (!(p = find(p + 9, end, "]]>")))
				return -EBADMSG;
			p += 3;
			continue;
		}
		if (end - p >= 2 && p[1] == '!')
			return -EBADMSG; /* DOCTYPE and friends: not here */
		if (end - p >= 2 && p[1] == '?') {
			if (!(p = find(p + 2, end, "?>")))
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
				char href[LFS_HTTP_HREF_MAX];
				if (have_href && !bad_href &&
				    href_decode(href, hs, he))
					rc = fn(ctx, href, coll);
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
