/*
 * log: the daemon's log lines, to stderr, syslog or a file, filtered by
 * level.
 *
 * Every message a user may read says what failed, on which object, and
 * what to do. Keys and document contents are never logged. A line holds
 * no control characters: a newline or escape in a name (a document id, a
 * ledger name) is written as \n or \xNN (lfs_log_escape), so no name can
 * forge a line.
 * Thread-safe.
 */
#ifndef LFS_LOG_H
#define LFS_LOG_H

#include <stddef.h>

enum lfs_log_level {
	LFS_LOG_DEBUG,
	LFS_LOG_INFO,
	LFS_LOG_WARN,
	LFS_LOG_ERROR,
};

/*
 * Send lines at level and above to syslog (use_syslog) or stderr. When
 * syslog is asked for but nothing listens on /dev/log (a container, a
 * machine without a syslog daemon), lines go to the fallback file set
 * with lfs_log_fallback() instead of being lost.
 */
void lfs_log_setup(enum lfs_log_level level, int use_syslog);

/*
 * The file (appended to, created 0600) for lines syslog cannot take; call
 * before lfs_log_setup(). The path is copied.
 */
void lfs_log_fallback(const char *path);

/* Where lines go: "stderr", "syslog" or the fallback file's path. */
const char *lfs_log_where(void);

/*
 * Copy len bytes of in to out (size bytes, NUL-terminated, cut at an
 * escape's boundary) so that it is one line of valid UTF-8: \n, \t, \r
 * for those, \xNN for other control bytes, DEL and bytes that are not
 * valid UTF-8, \\ for a backslash (so the escaping is unambiguous).
 * Returns the length written. lfs_log applies it to every message; the
 * mount to every name it writes in line-oriented files (the change feed,
 * the error list) and in JSON (which must be UTF-8).
 */
size_t lfs_log_escape(char *out, size_t size, const char *in, size_t len);

/* Parse "debug", "info", "warn" or "error"; -EINVAL otherwise. */
int lfs_log_parse_level(enum lfs_log_level *out, const char *s);

void lfs_log(enum lfs_log_level level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

#define lfs_debug(...) lfs_log(LFS_LOG_DEBUG, __VA_ARGS__)
#define lfs_info(...)  lfs_log(LFS_LOG_INFO, __VA_ARGS__)
#define lfs_warn(...)  lfs_log(LFS_LOG_WARN, __VA_ARGS__)
#define lfs_error(...) lfs_log(LFS_LOG_ERROR, __VA_ARGS__)

#endif
