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
 * Requests, deadlines, capped bodies, the errno of a failure or a status,
 * percent-encoding and the multistatus scanner are http.h's, shared with
 * the S3 driver; nothing is retried here but a dead keep-alive
 * connection. Credentials come from the URL's userinfo or from
 * LEDGERFS_HTTP_USER / LEDGERFS_HTTP_PASSWORD and go out as basic auth;
 * they are never logged and never part of base.url.
 */

#include "store.h"

#include "buf.h"
#include "http.h"
#include "log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <sodium.h>

#define HTTP_MAX_LISTING    ((size_t)64 << 20)
#define HTTP_MAX_DIRS_KNOWN 1024
#define HTTP_LIST_MAX_DEPTH 16
#define HTTP_LIST_MAX_COLLS 65536

struct http_store {
	struct lfs_store base;
	struct lfs_http http;
	char *root;      /* base URL, encoded, ends in '/', no credentials */
	char *root_path; /* its path, decoded, ends in '/' */
	char *user;      /* NULL: no authentication */
	char *password;
	char **dirs; /* collections known to exist: "" (root), "a/", "a/b/" */
	size_t ndirs;
};

/* root + rel with every byte but unreserved ones and '/' percent-encoded. */
static char *http_url(struct http_store *h, const char *rel)
{
	struct lfs_buf b;
	lfs_buf_init(&b, 0);
	lfs_buf_append_str(&b, h->root);
	lfs_http_pct_encode(&b, rel, strlen(rel), true);
	lfs_buf_append_byte(&b, 0);
	size_t n;
	char *u = b.err ? NULL : (char *)lfs_buf_steal(&b, &n);
	lfs_buf_release(&b);
	return u;
}

/* Send q with this store's credentials; see lfs_http_perform(). */
static int http_perform(struct http_store *h, struct lfs_http_req *q)
{
	q->no_expect = true;
	q->user = h->user;
	q->password = h->password;
	return lfs_http_perform(&h->http, q);
}

static bool ok_status(const struct lfs_http_req *q)
{
	return q->status >= 200 && q->status <= 299;
}

/* Translate a status no caller expected, saying what to do. */
static int http_status_err(struct lfs_http_req *q)
{
	long st = q->status;
	int e = lfs_http_status_errno(st);
	if (e == -EACCES)
		lfs_error("%s %s: the server refused access (HTTP %ld); check "
			  "the user and password (in the URL or "
			  "LEDGERFS_HTTP_USER/LEDGERFS_HTTP_PASSWORD) and the "
			  "server's permissions",
			  q->method, q->url, st);
	else if (e == -EAGAIN)
		lfs_info("%s %s: HTTP %ld (will retry)", q->method, q->url, st);
	else if (st == 405 || st == 501)
		lfs_error("%s %s: the server does not allow %s here (HTTP "
			  "%ld); is WebDAV enabled and writable for this "
			  "path?",
			  q->method, q->url, q->method, st);
	else
		lfs_error("%s %s: unexpected answer HTTP %ld", q->method,
			  q->url, st);
	return e == -EACCES || e == -EAGAIN ? e : -EIO;
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
	struct lfs_http_req q;
	lfs_http_req_init(&q, "MKCOL", url, dir);
	int rc = http_perform(h, &q);
	if (!rc && q.status == 409 && dir[0]) {
		/* The parent is missing: create it, then try once more. */
		size_t n = strlen(dir) - 1;
		while (n > 0 && dir[n - 1] != '/')
			n--;
		char *parent = strndup(dir, n);
		rc = parent ? http_mkcol(h, parent, depth + 1) : -ENOMEM;
		free(parent);
		if (!rc)
			rc = http_perform(h, &q);
	}
	if (!rc) {
		/* 405: something is there already (a collection, we hope). */
		if (ok_status(&q) || q.status == 405)
			dir_remember(h, dir);
		else if (q.status == 409) {
			lfs_error("MKCOL %s: the parent collection does not "
				  "exist; create it on the server",
				  url);
			rc = -EIO;
		} else
			rc = http_status_err(&q);
	}
	lfs_http_req_release(&q);
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

static int http_put_once(struct http_store *h, const char *url, const char *key,
			 const uint8_t *data, size_t len, bool if_absent,
			 long *status)
{
	struct lfs_http_req q;
	lfs_http_req_init(&q, "PUT", url, key);
	q.body = data;
	q.body_len = len;
	struct curl_slist *hd = curl_slist_append(
		NULL, "Content-Type: application/octet-stream");
	struct curl_slist *t =
		hd && if_absent ? curl_slist_append(hd, "If-None-Match: *")
				: hd;
	int rc = t ? 0 : -ENOMEM;
	if (!rc) {
		q.headers = hd = t;
		rc = http_perform(h, &q);
	}
	*status = q.status;
	if (!rc && !ok_status(&q) && q.status != 409)
		rc = q.status == 412 && if_absent ? -EEXIST
						  : http_status_err(&q);
	curl_slist_free_all(hd);
	lfs_http_req_release(&q);
	return rc;
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
		rc = http_put_once(h, url, key, data, len, if_absent, &status);
	if (!rc && status == 409) {
		/* A collection we knew vanished: create them again, once. */
		dirs_forget(h);
		rc = http_mkcol(h, parent, 0);
		if (!rc)
			rc = http_put_once(h, url, key, data, len, if_absent,
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
	struct lfs_http_req q;
	lfs_http_req_init(&q, "GET", url, key);
	q.sink = sink;
	q.max = max;
	int rc = http_perform(h, &q);
	if (!rc && q.status != 200) {
		rc = lfs_http_status_errno(q.status);
		if (rc == -ENOENT) {
		} else if (ok_status(&q)) {
			lfs_error("GET %s: unexpected answer HTTP %ld to a "
				  "plain GET",
				  url, q.status);
			rc = -EBADMSG;
		} else {
			rc = http_status_err(&q);
		}
	}
	lfs_http_req_release(&q);
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
	struct lfs_http_req q;
	lfs_http_req_init(&q, "DELETE", url, key);
	int rc = http_perform(h, &q);
	if (!rc && !ok_status(&q) && lfs_http_status_errno(q.status) != -ENOENT)
		rc = http_status_err(&q);
	lfs_http_req_release(&q);
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

struct dav_scan {
	struct http_store *h;
	const char *dir;    /* the collection asked for, relative */
	const char *prefix; /* the listing's prefix */
	struct dav_names *keys, *colls;
};

/* One <response>: sort its href into keys or sub-collections. */
static int dav_entry(void *ctx, const char *path, bool coll)
{
	struct dav_scan *sc = ctx;
	char rel[LFS_HTTP_HREF_MAX + 1];
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
	struct lfs_http_req q;
	lfs_http_req_init(&q, "PROPFIND", url, dir[0] ? dir : "(root)");
	q.body = (const uint8_t *)propfind_body;
	q.body_len = sizeof(propfind_body) - 1;
	q.sink = &sink;
	q.max = HTTP_MAX_LISTING;
	struct curl_slist *hd = curl_slist_append(NULL, "Depth: 1"), *t = NULL;
	if (hd)
		t = curl_slist_append(hd, "Content-Type: application/xml; "
					  "charset=utf-8");
	int rc = t ? 0 : -ENOMEM;
	if (!rc) {
		q.headers = hd = t;
		rc = http_perform(h, &q);
	}
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
		rc = lfs_http_dav_multistatus((const char *)xml.data, xml.len,
					      dav_entry, &sc);
		if (rc == -EBADMSG)
			lfs_error("PROPFIND %s: the answer is not a WebDAV "
				  "multistatus document",
				  url);
	} else if (!rc && lfs_http_status_errno(q.status) != -ENOENT) {
		if (ok_status(&q)) {
			lfs_error("PROPFIND %s: expected HTTP 207, got %ld; is "
				  "this a WebDAV server?",
				  url, q.status);
			rc = -EBADMSG;
		} else {
			rc = http_status_err(&q);
		}
	}
	curl_slist_free_all(hd);
	lfs_http_req_release(&q);
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
	lfs_http_release(&h->http);
	dirs_forget(h);
	free(h->dirs);
	free(h->root);
	free(h->root_path);
	lfs_http_secret_free(h->user);
	lfs_http_secret_free(h->password);
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

/*
 * Fold each run of '/' in the URL's path into one: servers answer PROPFIND
 * with hrefs so folded, which would never match a root that is not, and
 * every listing would come back empty.
 */
static int squeeze_slashes(CURLU *u)
{
	char *path = NULL;
	if (curl_url_get(u, CURLUPART_PATH, &path, 0))
		return -EINVAL;
	char *w = path;
	for (const char *r = path; *r; r++)
		if (*r != '/' || w == path || w[-1] != '/')
			*w++ = *r;
	*w = '\0';
	int rc = curl_url_set(u, CURLUPART_PATH, path, 0) ? -EINVAL : 0;
	curl_free(path);
	return rc;
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
		    squeeze_slashes(u) ||
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
		sodium_memzero(user, strlen(user));
	if (pass)
		sodium_memzero(pass, strlen(pass));
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
	if (!rc)
		rc = lfs_http_init(&h->http, &h->base);
	if (rc) {
		http_free(&h->base);
		return rc;
	}
	*out = &h->base;
	return 0;
}
