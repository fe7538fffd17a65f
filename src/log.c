#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

static enum lfs_log_level threshold = LFS_LOG_INFO;
static int to_syslog;
static FILE *to_file;  /* the fallback, when syslog is not there */
static char *fallback; /* its path */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

static const char *names[] = {"debug", "info", "warn", "error"};

/* Does anything listen on the syslog socket? */
static int syslog_listens(void)
{
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return 0;
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	strncpy(a.sun_path, "/dev/log", sizeof(a.sun_path) - 1);
	int ok = connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
	if (!ok && errno == EPROTOTYPE) { /* a stream socket (journald) */
		close(fd);
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		ok = fd >= 0 &&
		     connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
	}
	if (fd >= 0)
		close(fd);
	return ok;
}

void lfs_log_fallback(const char *path)
{
	free(fallback);
	fallback = path ? strdup(path) : NULL;
}

void lfs_log_setup(enum lfs_log_level level, int use_syslog)
{
	threshold = level;
	to_syslog = 0;
	if (!use_syslog)
		return;
	if (syslog_listens() || !fallback) {
		to_syslog = 1;
		openlog("ledgerfs", LOG_PID, LOG_DAEMON);
		return;
	}
	int fd =
		open(fallback, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
	if (fd >= 0 && !(to_file = fdopen(fd, "a"))) {
		close(fd);
		fd = -1;
	}
	if (fd < 0) { /* nowhere better: syslog, as asked */
		to_syslog = 1;
		openlog("ledgerfs", LOG_PID, LOG_DAEMON);
		return;
	}
	setvbuf(to_file, NULL, _IOLBF, 0);
}

const char *lfs_log_where(void)
{
	return to_syslog ? "syslog" : to_file ? fallback : "stderr";
}

/* The length of the valid UTF-8 sequence at p (n bytes left), 0 if none. */
static size_t utf8_len(const unsigned char *p, size_t n)
{
	unsigned char c = p[0], lo = 0x80, hi = 0xBF;
	size_t len;
	if (c < 0x80)
		return 1;
	if (c >= 0xC2 && c <= 0xDF)
		len = 2;
	else if (c >= 0xE0 && c <= 0xEF)
		len = 3;
	else if (c >= 0xF0 && c <= 0xF4)
		len = 4;
	else
		return 0;
	if (c == 0xE0)
		lo = 0xA0; /* overlong */
	else if (c == 0xED)
		hi = 0x9F; /* surrogates */
	else if (c == 0xF0)
		lo = 0x90; /* overlong */
	else if (c == 0xF4)
		hi = 0x8F; /* above U+10FFFF */
	if (n < len || p[1] < lo || p[1] > hi)
		return 0;
	for (size_t i = 2; i < len; i++)
		if (p[i] < 0x80 || p[i] > 0xBF)
			return 0;
	return len;
}

size_t lfs_log_escape(char *out, size_t size, const char *in, size_t len)
{
	const unsigned char *p = (const unsigned char *)in;
	size_t o = 0;
	for (size_t i = 0; i < len;) {
		size_t k = utf8_len(p + i, len - i);
		char esc[5];
		const char *piece = (const char *)p + i;
		size_t plen = k;
		if (k == 0 || (k == 1 && (p[i] < 0x20 || p[i] == 0x7f))) {
			const char *named = p[i] == '\n'   ? "\\n"
					    : p[i] == '\t' ? "\\t"
					    : p[i] == '\r' ? "\\r"
							   : NULL;
			if (!named)
				snprintf(esc, sizeof(esc), "\\x%02x", p[i]);
			piece = named ? named : esc;
			plen = strlen(piece);
			k = 1;
		} else if (p[i] == '\\') {
			piece = "\\\\";
			plen = 2;
		}
		if (o + plen >= size)
			break;
		memcpy(out + o, piece, plen);
		o += plen;
		i += k;
	}
	if (size)
		out[o] = '\0';
	return o;
}

int lfs_log_parse_level(enum lfs_log_level *out, const char *s)
{
	for (int i = 0; i < 4; i++)
		if (!strcmp(s, names[i])) {
			*out = (enum lfs_log_level)i;
			return 0;
		}
	return -EINVAL;
}

void lfs_log(enum lfs_log_level level, const char *fmt, ...)
{
	if (level < threshold)
		return;
	char raw[1024], msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(raw, sizeof(raw), fmt, ap);
	va_end(ap);
	lfs_log_escape(msg, sizeof(msg), raw, strlen(raw));
	if (to_syslog) {
		static const int prio[] = {LOG_DEBUG, LOG_INFO, LOG_WARNING,
					   LOG_ERR};
		syslog(prio[level], "%s", msg);
		return;
	}
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	struct tm tm;
	gmtime_r(&ts.tv_sec, &tm);
	pthread_mutex_lock(&lock);
	fprintf(to_file ? to_file : stderr,
		"%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ ledgerfs %s: %s\n",
		tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
		tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000, names[level], msg);
	pthread_mutex_unlock(&lock);
}
