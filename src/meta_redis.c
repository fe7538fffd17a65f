#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

/*
 * meta_redis: the redis:// metadata endpoint (meta.h), over hiredis.
 *
 * Two connections. The listener thread's holds a SUBSCRIBE on the
 * channel and is read only when poll() says it is readable, so the
 * thread waits on the socket and a stop pipe at once, never inside
 * hiredis; after LFS_META_IDLE_MS of silence it sends PING and wants an
 * answer (any bytes) within LFS_META_IO_MS. The sync thread's connection
 * (announce) is blocking with LFS_META_IO_MS socket timeouts; after a
 * failure it is dropped and not tried again for a backoff. Every
 * (re)subscription asks the sync thread for a listing of the store,
 * since announcements made while not subscribed are lost.
 */

#include "meta.h"

#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "log.h"
#include "timefmt.h"

enum { ST_CONNECTING, ST_LIVE, ST_UNREACHABLE };

struct lfs_meta {
	char *host, *user, *password; /* never logged */
	int port, db;
	char *shown; /* redis://host:port/db */
	char *name;  /* the set and the channel: "ledgerfs:NS:heads" */
	/* The listener. */
	pthread_t thread;
	bool running;
	int pipe[2];
	void (*wake)(void *ctx);
	void *ctx;
	pthread_mutex_t lock; /* queue, nq, poll, stopping, state */
	struct lfs_meta_hint *queue;
	size_t nq;
	bool poll, stopping;
	int state;
	/* The sync thread's. */
	redisContext *cmd;
	int64_t cmd_retry_at;
	unsigned cmd_backoff;
	bool cmd_logged;
};

static int unhex(char c)
{
	return c >= '0' && c <= '9'   ? c - '0'
	       : c >= 'a' && c <= 'f' ? c - 'a' + 10
	       : c >= 'A' && c <= 'F' ? c - 'A' + 10
				      : -1;
}

/* A percent-decoded copy of s[0..n), or NULL. */
static char *decode(const char *s, size_t n)
{
	char *out = malloc(n + 1), *o = out;
	for (size_t i = 0; out && i < n; i++) {
		if (s[i] == '%' && i + 2 < n && unhex(s[i + 1]) >= 0 &&
		    unhex(s[i + 2]) >= 0) {
			*o++ = (char)(unhex(s[i + 1]) * 16 + unhex(s[i + 2]));
			i += 2;
		} else {
			*o++ = s[i];
		}
	}
	if (out)
		*o = '\0';
	return out;
}

static int parse_url(struct lfs_meta *m, const char *url)
{
	if (!strncmp(url, "rediss://", 9)) {
		lfs_error("--meta %.9s...: TLS needs a hiredis with SSL "
			  "support; this build has none (use a tunnel, "
			  "e.g. stunnel or ssh -L)",
			  url);
		return -EPROTONOSUPPORT;
	}
	if (strncmp(url, "redis://", 8))
		return -EINVAL;
	const char *p = url + 8, *slash = strchr(p, '/');
	const char *end = slash ? slash : p + strlen(p);
	const char *at = NULL;
	for (const char *c = p; c < end; c++)
		if (*c == '@')
			at = c;
	if (at) {
		const char *colon = memchr(p, ':', (size_t)(at - p));
		if (colon) {
			m->user = colon > p ? decode(p, (size_t)(colon - p))
					    : NULL;
			m->password =
				decode(colon + 1, (size_t)(at - colon - 1));
		} else {
			m->password = decode(p, (size_t)(at - p));
		}
		p = at + 1;
	}
	const char *hend = end, *port = NULL;
	if (*p == '[') {
		const char *rb = memchr(p, ']', (size_t)(end - p));
		if (!rb)
			return -EINVAL;
		m->host = strndup(p + 1, (size_t)(rb - p - 1));
		port = rb[1] == ':' ? rb + 2 : NULL;
		if (rb + 1 != end && !port)
			return -EINVAL;
	} else {
		const char *colon = memchr(p, ':', (size_t)(end - p));
		if (colon) {
			hend = colon;
			port = colon + 1;
		}
		m->host = strndup(p, (size_t)(hend - p));
	}
	if (!m->host || !*m->host)
		return -EINVAL;
	m->port = 6379;
	if (port) {
		char *e;
		long v = strtol(port, &e, 10);
		if (e != end || v < 1 || v > 65535)
			return -EINVAL;
		m->port = (int)v;
	}
	if (slash && slash[1]) {
		char *e;
		long v = strtol(slash + 1, &e, 10);
		if (*e || v < 0 || v > 1000000)
			return -EINVAL;
		m->db = (int)v;
	}
	const char *env = getenv("LEDGERFS_REDIS_PASSWORD");
	if (!m->password && env && *env)
		m->password = strdup(env);
	env = getenv("LEDGERFS_REDIS_USER");
	if (!m->user && env && *env)
		m->user = strdup(env);
	return 0;
}

int lfs_meta_open(struct lfs_meta **out, const char *url, const char *ns)
{
	struct lfs_meta *m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	m->pipe[0] = m->pipe[1] = -1;
	pthread_mutex_init(&m->lock, NULL);
	int rc = parse_url(m, url);
	size_t n = strlen(m->host ? m->host : "") + 64;
	if (!rc && !(m->shown = malloc(n)))
		rc = -ENOMEM;
	if (!rc)
		snprintf(m->shown, n, "redis://%s%s%s:%d/%d",
			 strchr(m->host, ':') ? "[" : "", m->host,
			 strchr(m->host, ':') ? "]" : "", m->port, m->db);
	n = strlen(ns) + 32;
	if (!rc && !(m->name = malloc(n)))
		rc = -ENOMEM;
	if (!rc)
		snprintf(m->name, n, "ledgerfs:%s:heads", ns);
	if (!rc && !(m->queue = calloc(LFS_META_QUEUE, sizeof(*m->queue))))
		rc = -ENOMEM;
	if (rc) {
		lfs_meta_free(m);
		return rc;
	}
	*out = m;
	return 0;
}

void lfs_meta_free(struct lfs_meta *m)
{
	if (!m)
		return;
	lfs_meta_stop(m);
	if (m->cmd)
		redisFree(m->cmd);
	pthread_mutex_destroy(&m->lock);
	free(m->host);
	free(m->user);
	if (m->password)
		memset(m->password, 0, strlen(m->password));
	free(m->password);
	free(m->shown);
	free(m->name);
	free(m->queue);
	free(m);
}

const char *lfs_meta_shown(const struct lfs_meta *m)
{
	return m->shown;
}

const char *lfs_meta_state(struct lfs_meta *m)
{
	pthread_mutex_lock(&m->lock);
	int st = m->state;
	pthread_mutex_unlock(&m->lock);
	return st == ST_LIVE         ? "live"
	       : st == ST_CONNECTING ? "connecting"
				     : "unreachable, polling the store";
}

/*
 * A copy of a connection's error text that outlives the connection (each
 * thread has its own; the next call overwrites it).
 */
static const char *keep(const char *errstr, const char *otherwise)
{
	static _Thread_local char buf[128];
	snprintf(buf, sizeof(buf), "%s", errstr[0] ? errstr : otherwise);
	return buf;
}

/* A command's reply, or NULL (why in *why) on a failed connection. */
static redisReply *command(redisContext *c, const char **why, const char *fmt,
			   ...)
{
	va_list ap;
	va_start(ap, fmt);
	redisReply *r = redisvCommand(c, fmt, ap);
	va_end(ap);
	if (!r)
		*why = keep(c->errstr, "no answer");
	return r;
}

/* A connection with deadlines, authenticated, on the right db; or NULL. */
static redisContext *connect_to(struct lfs_meta *m, const char **why)
{
	struct timeval tv = {LFS_META_IO_MS / 1000,
			     (LFS_META_IO_MS % 1000) * 1000};
	redisContext *c = redisConnectWithTimeout(m->host, m->port, tv);
	if (!c) {
		*why = "out of memory";
		return NULL;
	}
	if (c->err || redisSetTimeout(c, tv) != REDIS_OK) {
		*why = keep(c->errstr, "cannot connect");
		redisFree(c);
		return NULL;
	}
	redisReply *r = NULL;
	if (m->password) {
		r = m->user ? command(c, why, "AUTH %s %s", m->user,
				      m->password)
			    : command(c, why, "AUTH %s", m->password);
		if (r && r->type == REDIS_REPLY_ERROR)
			*why = "AUTH refused (check LEDGERFS_REDIS_PASSWORD "
			       "or the URL's user and password)";
		if (!r || r->type == REDIS_REPLY_ERROR)
			goto fail;
		freeReplyObject(r);
		r = NULL;
	}
	if (m->db) {
		r = command(c, why, "SELECT %d", m->db);
		if (r && r->type == REDIS_REPLY_ERROR)
			*why = "SELECT refused";
		if (!r || r->type == REDIS_REPLY_ERROR)
			goto fail;
		freeReplyObject(r);
	}
	return c;
fail:
	if (r)
		freeReplyObject(r);
	redisFree(c);
	return NULL;
}

static void set_state(struct lfs_meta *m, int st, const char *why)
{
	pthread_mutex_lock(&m->lock);
	int was = m->state;
	m->state = st;
	if (st == ST_LIVE)
		m->poll = true; /* what was announced meanwhile is lost */
	pthread_mutex_unlock(&m->lock);
	if (st == was)
		return;
	if (st == ST_LIVE)
		lfs_info("metadata endpoint %s: live", m->shown);
	else
		lfs_warn("metadata endpoint %s: unreachable (%s); polling the "
			 "store",
			 m->shown, why);
	m->wake(m->ctx);
}

static bool stopping(struct lfs_meta *m)
{
	pthread_mutex_lock(&m->lock);
	bool s = m->stopping;
	pthread_mutex_unlock(&m->lock);
	return s;
}

/* One reply on the subscription: a message, or an answer to PING. */
static void on_reply(struct lfs_meta *m, redisReply *r, bool *woke)
{
	if (r->type != REDIS_REPLY_ARRAY || r->elements != 3 ||
	    r->element[0]->type != REDIS_REPLY_STRING ||
	    strcmp(r->element[0]->str, "message") ||
	    r->element[2]->type != REDIS_REPLY_STRING)
		return; /* "pong", "subscribe": alive, nothing to do */
	struct lfs_meta_hint h[LFS_META_MSG_CIDS];
	size_t n = 0;
	if (lfs_meta_parse(h, LFS_META_MSG_CIDS, &n, r->element[2]->str,
			   r->element[2]->len)) {
		static _Atomic int logged;
		if (!logged++)
			lfs_warn(
				"metadata endpoint %s: ignoring a message that "
				"is not an announcement (logged once)",
				m->shown);
		return;
	}
	pthread_mutex_lock(&m->lock);
	for (size_t i = 0; i < n; i++) {
		bool dup = false;
		for (size_t j = 0; j < m->nq && !dup; j++)
			dup = lfs_cid_equal(&m->queue[j].car, &h[i].car) &&
			      !strcmp(m->queue[j].enc, h[i].enc);
		if (dup)
			continue;
		if (m->nq == LFS_META_QUEUE)
			m->poll = true; /* dropped: list the store instead */
		else
			m->queue[m->nq++] = h[i];
	}
	pthread_mutex_unlock(&m->lock);
	*woke = true;
}

/* Wait up to ms for the stop pipe; true when stopping. */
static bool pause_ms(struct lfs_meta *m, int ms)
{
	struct pollfd p = {.fd = m->pipe[0], .events = POLLIN};
	poll(&p, 1, ms);
	return stopping(m);
}

/* Subscribed: read until the connection fails or we stop. */
static const char *listen_on(struct lfs_meta *m, redisContext *c)
{
	int64_t ping_at = 0; /* when the PING without answer was sent */
	for (;;) {
		struct pollfd p[2] = {{.fd = c->fd, .events = POLLIN},
				      {.fd = m->pipe[0], .events = POLLIN}};
		int wait = ping_at ? (int)(ping_at + LFS_META_IO_MS -
					   lfs_mono_ms())
				   : LFS_META_IDLE_MS;
		int n = poll(p, 2, wait > 0 ? wait : 0);
		if (stopping(m))
			return NULL;
		if (n < 0)
			continue; /* EINTR */
		if (!n) {
			if (ping_at)
				return "no answer to PING";
			int done = 0;
			if (redisAppendCommand(c, "PING") != REDIS_OK)
				return "cannot send PING";
			while (!done)
				if (redisBufferWrite(c, &done) != REDIS_OK)
					return keep(c->errstr, "cannot send");
			ping_at = lfs_mono_ms();
			continue;
		}
		if (!(p[0].revents & (POLLIN | POLLHUP | POLLERR)))
			continue;
		if (redisBufferRead(c) != REDIS_OK)
			return keep(c->errstr, "connection closed");
		ping_at = 0; /* it answers */
		bool woke = false;
		void *r;
		int rc;
		while ((rc = redisGetReplyFromReader(c, &r)) == REDIS_OK && r) {
			on_reply(m, r, &woke);
			freeReplyObject(r);
		}
		if (rc != REDIS_OK)
			return "a protocol error";
		if (c->reader->len - c->reader->pos > LFS_META_REPLY_MAX)
			return "a message over 1 MiB";
		if (woke)
			m->wake(m->ctx);
	}
}

static void *listen_thread(void *arg)
{
	struct lfs_meta *m = arg;
	int backoff = 250;
	while (!stopping(m)) {
		const char *why = "cannot connect";
		redisContext *c = connect_to(m, &why);
		redisReply *r =
			c ? command(c, &why, "SUBSCRIBE %s", m->name) : NULL;
		bool ok = r && r->type == REDIS_REPLY_ARRAY;
		if (r && !ok)
			why = "SUBSCRIBE refused";
		if (r)
			freeReplyObject(r);
		if (ok) {
			backoff = 250;
			set_state(m, ST_LIVE, NULL);
			why = listen_on(m, c);
		}
		if (c)
			redisFree(c);
		if (!why)
			break; /* stopping */
		set_state(m, ST_UNREACHABLE, why);
		if (pause_ms(m, backoff))
			break;
		backoff = backoff * 2 > LFS_META_RETRY_MAX_MS
				  ? LFS_META_RETRY_MAX_MS
				  : backoff * 2;
	}
	return NULL;
}

int lfs_meta_start(struct lfs_meta *m, void (*wake)(void *ctx), void *ctx)
{
	if (m->running)
		return -EINVAL;
	m->wake = wake;
	m->ctx = ctx;
	if (pipe(m->pipe))
		return -errno;
	m->stopping = false;
	int rc = pthread_create(&m->thread, NULL, listen_thread, m);
	if (rc) {
		close(m->pipe[0]);
		close(m->pipe[1]);
		m->pipe[0] = m->pipe[1] = -1;
		return -rc;
	}
	m->running = true;
	return 0;
}

void lfs_meta_stop(struct lfs_meta *m)
{
	if (!m->running)
		return;
	pthread_mutex_lock(&m->lock);
	m->stopping = true;
	pthread_mutex_unlock(&m->lock);
	if (write(m->pipe[1], "x", 1) < 0)
		lfs_debug("metadata endpoint: cannot wake the listener");
	pthread_join(m->thread, NULL);
	m->running = false;
	close(m->pipe[0]);
	close(m->pipe[1]);
	m->pipe[0] = m->pipe[1] = -1;
}

size_t lfs_meta_take(struct lfs_meta *m, struct lfs_meta_hint *out, size_t max,
		     bool *poll)
{
	pthread_mutex_lock(&m->lock);
	size_t n = m->nq < max ? m->nq : max;
	memcpy(out, m->queue, n * sizeof(*out));
	memmove(m->queue, m->queue + n, (m->nq - n) * sizeof(*out));
	m->nq -= n;
	*poll = m->poll;
	m->poll = false;
	pthread_mutex_unlock(&m->lock);
	return n;
}

static void cmd_failed(struct lfs_meta *m, const char *why)
{
	if (!m->cmd_logged)
		lfs_warn("metadata endpoint %s: cannot announce (%s); others "
			 "will see the change when they poll the store",
			 m->shown, why);
	m->cmd_logged = true;
	if (m->cmd)
		redisFree(m->cmd);
	m->cmd = NULL;
	m->cmd_backoff = m->cmd_backoff ? m->cmd_backoff * 2 : 1000;
	if (m->cmd_backoff > LFS_META_RETRY_MAX_MS)
		m->cmd_backoff = LFS_META_RETRY_MAX_MS;
	m->cmd_retry_at = lfs_mono_ms() + m->cmd_backoff;
}

void lfs_meta_announce(struct lfs_meta *m, const char *enc,
		       const struct lfs_cid *added, size_t nadded,
		       const struct lfs_cid *removed, size_t nremoved)
{
	const char *why = "cannot connect";
	if (!m->cmd) {
		if (lfs_mono_ms() < m->cmd_retry_at)
			return;
		if (!(m->cmd = connect_to(m, &why))) {
			cmd_failed(m, why);
			return;
		}
	}
	redisContext *c = m->cmd;
	size_t sent = 0;
	int rc = REDIS_OK;
	char member[LFS_META_ENC_MAX + LFS_CID_STRLEN + 2];
	for (size_t i = 0; rc == REDIS_OK && i < nadded + nremoved; i++) {
		char cs[LFS_CID_STRLEN + 1];
		lfs_cid_to_string(cs, i < nadded ? &added[i]
						 : &removed[i - nadded]);
		snprintf(member, sizeof(member), "%s %s", enc, cs);
		rc = redisAppendCommand(
			c, i < nadded ? "SADD %s %s" : "SREM %s %s", m->name,
			member);
		sent++;
	}
	char msg[LFS_META_MSG_MAX + 1];
	for (size_t i = 0; rc == REDIS_OK && i < nadded;
	     i += LFS_META_MSG_CIDS) {
		size_t k = nadded - i < LFS_META_MSG_CIDS ? nadded - i
							  : LFS_META_MSG_CIDS;
		int len = lfs_meta_format(msg, enc, added + i, k);
		if (len < 0)
			break;
		rc = redisAppendCommand(c, "PUBLISH %s %b", m->name, msg,
					(size_t)len);
		sent++;
	}
	for (size_t i = 0; rc == REDIS_OK && i < sent; i++) {
		void *r = NULL;
		rc = redisGetReply(c, &r);
		if (r)
			freeReplyObject(r);
	}
	if (rc != REDIS_OK) {
		cmd_failed(m, keep(c->errstr, "no answer"));
		return;
	}
	if (m->cmd_logged)
		lfs_info("metadata endpoint %s: announcing again", m->shown);
	m->cmd_logged = false;
	m->cmd_backoff = 0;
}
