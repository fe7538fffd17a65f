#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "log.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <syslog.h>
#include <time.h>

static enum lfs_log_level threshold = LFS_LOG_INFO;
static int to_syslog;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

static const char *names[] = {"debug", "info", "warn", "error"};

void lfs_log_setup(enum lfs_log_level level, int use_syslog)
{
	threshold = level;
	to_syslog = use_syslog;
	if (use_syslog)
		openlog("ledgerfs", LOG_PID, LOG_DAEMON);
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
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
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
	fprintf(stderr,
		"%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ ledgerfs %s: %s\n",
		tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
		tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000, names[level], msg);
	pthread_mutex_unlock(&lock);
}
