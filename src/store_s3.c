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
 * continuation tokens; a page is capped (LIST_MAX). Requests, deadlines,
 * capped bodies, errors, percent-encoding and the XML of a page are
 * http.h's, shared with the WebDAV driver.
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

#include "http.h"
#include "log.h"

#define LIST_MAX       ((size_t)16 << 20) /* one ListObjectsV2 page */
#define CREDS_FILE_MAX ((size_t)64 << 10)
#define LIST_MAX_PAGES 1000000
#define EMPTY_SHA256                                                           \
	"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

struct s3_store {
	struct lfs_store base;
	struct lfs_http http;
	char *endpoint; /* scheme://host[:port][/path], no trailing '/' */
	char *bucket;
	char *prefix; /* "" or "some/prefix/" */
	char *region;
	char *sigv4; /* "aws:amz:REGION:s3" */
	char *access_key;
	char *secret_key;
	char *session_token; /* NULL when none */
};

/* One request: http's, and S3's own parts. */
struct s3_req {
	struct lfs_http_req h;
	const char *path;  /* encoded, after the bucket ("" or "/k/e/y") */
	char *owned_path;  /* path, when the request made it (object_req) */
	const char *query; /* canonical, or NULL */
	bool if_none_match;
	char code[64]; /* S3 error Code, "" when none */
};

static char *buf_to_str(struct lfs_buf *b)
{
	if (lfs_buf_append_byte(b, 0))
		return NULL;
	size_t n;
	return (char *)lfs_buf_steal(b, &n);
}

/* ---- requests ---- */

/* Fill r->code from the error document, if any. */
static void parse_error_code(struct s3_req *r)
{
	r->code[0] = '\0';
	if (!r->h.err.len)
		return;
	const char *pos = (const char *)r->h.err.data,
		   *end = pos + r->h.err.len, *v;
	size_t n;
	if (!lfs_http_xml_next(&pos, end, "Code", &v, &n))
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
	if (r->h.body_len) {
		unsigned char d[crypto_hash_sha256_BYTES];
		crypto_hash_sha256(d, r->h.body, r->h.body_len);
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
		lfs_http_secret_free(tok);
		if (!t)
			goto oom;
		h = t;
	}
	if (!strcmp(r->h.method, "PUT")) {
		/*
		 * The body goes as POSTFIELDS: curl adds no "Expect:
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

/*
 * Run one request. Returns 0 with r->h.status set (any HTTP status: the
 * caller maps it), or a negative errno for a transport failure (logged).
 */
static int perform(struct s3_store *s, struct s3_req *r)
{
	struct lfs_buf url;
	lfs_buf_init(&url, 0);
	lfs_buf_append_str(&url, s->endpoint);
	lfs_buf_append_byte(&url, '/');
	lfs_http_pct_encode(&url, s->bucket, strlen(s->bucket), false);
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
	if (!rc) {
		r->h.url = u;
		r->h.headers = hdrs;
		r->h.path_as_is = true;
		r->h.sigv4 = s->sigv4;
		r->h.user = s->access_key;
		r->h.password = s->secret_key;
		rc = lfs_http_perform(&s->http, &r->h);
		r->h.url = NULL;
	}
	curl_slist_free_all(hdrs);
	free(u);
	return rc;
}

/*
 * Map a non-2xx status (after perform) to an errno, logging what the user
 * should know. 404 and 412 are left to the caller when not NoSuchBucket.
 */
static int map_status(struct s3_store *s, struct s3_req *r)
{
	parse_error_code(r);
	const char *code = r->code[0] ? r->code : "no error code";
	const char *m = r->h.method, *what = r->h.what;
	long st = r->h.status;
	if (!strcmp(r->code, "NoSuchBucket")) {
		lfs_error("%s: bucket %s does not exist at %s; create it first",
			  s->base.url, s->bucket, s->endpoint);
		return -EIO;
	}
	int e = lfs_http_status_errno(st);
	if (!strcmp(r->code, "RequestTimeout") ||
	    !strcmp(r->code, "SlowDown") ||
	    !strcmp(r->code, "ConditionalRequestConflict"))
		e = -EAGAIN;
	else if (!strcmp(r->code, "ExpiredToken") ||
		 !strcmp(r->code, "InvalidToken"))
		e = -EACCES;
	if (e == -ENOENT || e == -EEXIST)
		return e;
	if (e == -EAGAIN) {
		lfs_info("%s: %s %s: HTTP %ld %s (will retry)", s->base.url, m,
			 what, st, code);
	} else if (e == -EACCES) {
		lfs_error("%s: %s %s: credentials refused (HTTP %ld %s); check "
			  "AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, the "
			  "region (%s) and the clock",
			  s->base.url, m, what, st, code, s->region);
	} else if (st >= 300 && st < 400) {
		lfs_error("%s: %s %s: redirected (HTTP %ld %s); check the "
			  "endpoint (%s) and region (%s)",
			  s->base.url, m, what, st, code, s->endpoint,
			  s->region);
	} else if (st == 501) {
		lfs_error("%s: %s %s: the server does not implement this (HTTP "
			  "501 %s)",
			  s->base.url, m, what, code);
	} else if (st < 100) {
		lfs_error("%s: %s %s: no HTTP status from %s", s->base.url, m,
			  what, s->endpoint);
		return -EBADMSG;
	} else {
		lfs_error("%s: %s %s: HTTP %ld %s", s->base.url, m, what, st,
			  code);
	}
	return e;
}

static void req_init(struct s3_req *r, const char *method, const char *what)
{
	memset(r, 0, sizeof(*r));
	lfs_http_req_init(&r->h, method, NULL, what);
}

static void req_release(struct s3_req *r)
{
	lfs_http_req_release(&r->h);
	free(r->owned_path);
}

static bool ok_status(const struct s3_req *r)
{
	return r->h.status >= 200 && r->h.status <= 299;
}

/*
 * Start a request for object key (checked): its path is "/" +
 * encoded(prefix + key). 0, -EINVAL or -ENOMEM; after 0, req_release(r).
 */
static int object_req(struct s3_req *r, struct s3_store *s, const char *method,
		      const char *key)
{
	if (!lfs_store_valid_key(key))
		return -EINVAL;
	req_init(r, method, key);
	struct lfs_buf b;
	lfs_buf_init(&b, 0);
	lfs_buf_append_byte(&b, '/');
	lfs_http_pct_encode(&b, s->prefix, strlen(s->prefix), true);
	lfs_http_pct_encode(&b, key, strlen(key), true);
	r->path = r->owned_path = buf_to_str(&b);
	lfs_buf_release(&b);
	if (!r->path) {
		req_release(r);
		return -ENOMEM;
	}
	return 0;
}

/* ---- operations ---- */

static int s3_put(struct lfs_store *st, const char *key, const uint8_t *data,
		  size_t len, bool if_absent)
{
	struct s3_store *s = (struct s3_store *)st;
	struct s3_req r;
	int rc = object_req(&r, s, "PUT", key);
	if (rc)
		return rc;
	r.h.body = data;
	r.h.body_len = len;
	r.if_none_match = if_absent;
	rc = perform(s, &r);
	if (!rc && !ok_status(&r)) {
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
	req_release(&r);
	return rc;
}

static int s3_get_to(struct lfs_store *st, const char *key, uint64_t max,
		     const struct lfs_store_sink *sink)
{
	struct s3_store *s = (struct s3_store *)st;
	struct s3_req r;
	int rc = object_req(&r, s, "GET", key);
	if (rc)
		return rc;
	r.h.sink = sink;
	r.h.max = max;
	rc = perform(s, &r);
	if (!rc && !ok_status(&r)) {
		rc = map_status(s, &r);
		if (rc == -EEXIST)
			rc = -EIO;
	}
	req_release(&r);
	return rc;
}

static int s3_del(struct lfs_store *st, const char *key)
{
	struct s3_store *s = (struct s3_store *)st;
	struct s3_req r;
	int rc = object_req(&r, s, "DELETE", key);
	if (rc)
		return rc;
	rc = perform(s, &r);
	if (!rc && !ok_status(&r)) {
		rc = map_status(s, &r);
		if (rc == -ENOENT)
			rc = 0;
		else if (rc == -EEXIST)
			rc = -EIO;
	}
	req_release(&r);
	return rc;
}

/* The canonical ListObjectsV2 query: names sorted, values encoded. */
static char *list_query(const char *prefix, const char *token)
{
	struct lfs_buf b;
	lfs_buf_init(&b, 0);
	if (token) {
		lfs_buf_append_str(&b, "continuation-token=");
		lfs_http_pct_encode(&b, token, strlen(token), false);
		lfs_buf_append_byte(&b, '&');
	}
	lfs_buf_append_str(&b, "list-type=2&prefix=");
	lfs_http_pct_encode(&b, prefix, strlen(prefix), false);
	char *q = buf_to_str(&b);
	lfs_buf_release(&b);
	return q;
}

struct page_ctx {
	struct s3_store *s;
	const char *prefix;
	lfs_store_list_fn fn;
	void *ctx;
	bool outside;
};

static int page_key(void *ctx, const char *key)
{
	struct page_ctx *p = ctx;
	size_t plen = strlen(p->s->prefix);
	if (strncmp(key, p->s->prefix, plen) ||
	    strncmp(key + plen, p->prefix, strlen(p->prefix))) {
		p->outside = true;
		return -EBADMSG;
	}
	if (!lfs_store_valid_key(key + plen)) {
		lfs_debug("%s: list: skipping foreign object name",
			  p->s->base.url);
		return 0;
	}
	return p->fn(p->ctx, key + plen);
}

/*
 * Parse one page: call fn for each key, set *token to the next
 * continuation token (NULL when this was the last page).
 */
static int list_page(struct s3_store *s, const struct lfs_buf *page,
		     const char *prefix, lfs_store_list_fn fn, void *ctx,
		     char **token)
{
	struct page_ctx p = {.s = s, .prefix = prefix, .fn = fn, .ctx = ctx};
	int rc = lfs_http_s3_list_page((const char *)page->data, page->len,
				       page_key, &p, token);
	if (rc == -EBADMSG)
		lfs_error("%s: list %s: %s", s->base.url, prefix,
			  p.outside ? "the answer holds a key outside the "
				      "prefix"
				    : "the answer is not a well-formed "
				      "ListBucketResult");
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
		r.h.sink = &sink;
		r.h.max = LIST_MAX;
		rc = perform(s, &r);
		if (rc == -EFBIG) {
			lfs_error("%s: list %s: a page over %zu bytes",
				  s->base.url, prefix, LIST_MAX);
			rc = -EBADMSG;
		}
		if (!rc && !ok_status(&r)) {
			rc = map_status(s, &r);
			if (rc == -ENOENT || rc == -EEXIST) {
				lfs_error("%s: list %s: HTTP %ld %s",
					  s->base.url, prefix, r.h.status,
					  r.code[0] ? r.code : "no error code");
				rc = -EIO;
			}
		}
		req_release(&r);
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
	lfs_http_release(&s->http);
	free(s->endpoint);
	free(s->bucket);
	free(s->prefix);
	free(s->region);
	free(s->sigv4);
	free(s->access_key);
	lfs_http_secret_free(s->secret_key);
	lfs_http_secret_free(s->session_token);
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
		if (lfs_http_pct_decode(val, true)) {
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
	if ((rc = lfs_http_init(&s->http, &s->base)))
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
