#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int lfs_mkdirs(const char *path)
{
	struct stat st;
	if (stat(path, &st) == 0)
		return S_ISDIR(st.st_mode) ? 0 : -ENOTDIR;
	if (errno != ENOENT)
		return -errno;
	char *p = strdup(path);
	if (!p)
		return -ENOMEM;
	int rc = 0;
	for (char *s = p + 1; *s && !rc; s++) {
		if (*s != '/')
			continue;
		*s = '\0';
		if (mkdir(p, 0700) < 0 && errno != EEXIST)
			rc = -errno;
		*s = '/';
	}
	if (!rc && mkdir(p, 0700) < 0 && errno != EEXIST)
		rc = -errno;
	if (!rc && (stat(p, &st) < 0 || !S_ISDIR(st.st_mode)))
		rc = -ENOTDIR;
	free(p);
	return rc;
}

int lfs_mkdirs_for(const char *path)
{
	const char *slash = strrchr(path, '/');
	if (!slash || slash == path)
		return 0;
	char *dir = strndup(path, (size_t)(slash - path));
	if (!dir)
		return -ENOMEM;
	int rc = lfs_mkdirs(dir);
	free(dir);
	return rc;
}

/* Is the name s[0..len) one a walk may take? */
static bool walk_name_ok(const char *s, size_t len)
{
	return len && !(len == 1 && s[0] == '.') &&
	       !(len == 2 && s[0] == '.' && s[1] == '.');
}

int lfs_walk_at(int *out_dir, const char **out_name, int root, const char *path,
		bool mkdirs)
{
	*out_dir = -1;
	*out_name = NULL;
	int dir = fcntl(root, F_DUPFD_CLOEXEC, 0);
	if (dir < 0)
		return -errno;
	const char *s = path, *slash;
	int rc = 0;
	while (!rc && (slash = strchr(s, '/'))) {
		size_t len = (size_t)(slash - s);
		char name[NAME_MAX + 1];
		if (!walk_name_ok(s, len)) {
			rc = -EINVAL;
			break;
		}
		if (len > NAME_MAX) {
			rc = -ENAMETOOLONG;
			break;
		}
		memcpy(name, s, len);
		name[len] = '\0';
		const int flags = O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC;
		int next = openat(dir, name, flags);
		if (next < 0 && errno == ENOENT && mkdirs &&
		    (mkdirat(dir, name, 0700) == 0 || errno == EEXIST))
			next = openat(dir, name, flags);
		if (next < 0)
			rc = errno == ELOOP ? -ENOTDIR : -errno;
		close(dir);
		dir = next;
		s = slash + 1;
	}
	if (!rc && path[0] && !walk_name_ok(s, strlen(s)))
		rc = -EINVAL;
	if (rc) {
		if (dir >= 0)
			close(dir);
		return rc;
	}
	*out_dir = dir;
	*out_name = path[0] ? s : ".";
	return 0;
}

/* Is path one name right under root? 0: yes; 1: no, walk it; else the
 * walk's error for it. */
static int one_name(int root, const char *path)
{
	if (!path[0] || strchr(path, '/'))
		return 1;
	size_t len = strlen(path);
	if (root < 0)
		return -EBADF;
	if (!walk_name_ok(path, len))
		return -EINVAL;
	return len > NAME_MAX ? -ENAMETOOLONG : 0;
}

int lfs_at_open(struct lfs_at *out, int root, const char *path, bool mkdirs)
{
	out->dir = -1;
	out->name = NULL;
	out->own = false;
	if (!(out->path = strdup(path)))
		return -ENOMEM;
	int rc = one_name(root, path);
	if (rc == 0) {
		out->dir = root;
		out->name = out->path;
	} else if (rc == 1) {
		rc = lfs_walk_at(&out->dir, &out->name, root, out->path,
				 mkdirs);
		out->own = !rc;
	}
	if (rc) {
		free(out->path);
		out->path = NULL;
	}
	return rc;
}

void lfs_at_close(struct lfs_at *at)
{
	if (at->own && at->dir >= 0)
		close(at->dir);
	at->own = false;
	free(at->path);
	at->dir = -1;
	at->path = NULL;
	at->name = NULL;
}

int lfs_lstat_at(int root, const char *path, struct stat *st)
{
	int rc = one_name(root, path);
	if (rc == 0)
		return fstatat(root, path, st, AT_SYMLINK_NOFOLLOW) ? -errno
								    : 0;
	if (rc < 0)
		return rc;
	int dir;
	const char *name;
	rc = lfs_walk_at(&dir, &name, root, path, false);
	if (!rc && fstatat(dir, name, st, AT_SYMLINK_NOFOLLOW))
		rc = -errno;
	if (dir >= 0)
		close(dir);
	return rc;
}

bool lfs_is_dir_at(int root, const char *path)
{
	struct stat st;
	return lfs_lstat_at(root, path, &st) == 0 && S_ISDIR(st.st_mode);
}

int lfs_write_all(int fd, const void *p, size_t len)
{
	const char *q = p;
	while (len) {
		ssize_t n = write(fd, q, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		q += n;
		len -= (size_t)n;
	}
	return 0;
}

int lfs_pread_all(int fd, void *buf, size_t len, uint64_t off)
{
	size_t got = 0;
	while (got < len) {
		ssize_t r = pread(fd, (uint8_t *)buf + got, len - got,
				  (off_t)(off + got));
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (r == 0)
			return 1;
		got += (size_t)r;
	}
	return 0;
}

int lfs_read_fd(int fd, size_t max, uint8_t **out, size_t *out_len)
{
	*out = NULL;
	*out_len = 0;
	struct stat st;
	if (fstat(fd, &st) < 0)
		return -errno;
	if (S_ISDIR(st.st_mode))
		return -EISDIR;
	size_t cap = 4096;
	if (S_ISREG(st.st_mode) && (uintmax_t)st.st_size > max)
		return -EFBIG;
	if (S_ISREG(st.st_mode) && (size_t)st.st_size + 1 > cap)
		cap = (size_t)st.st_size + 1; /* +1: the read that sees EOF */
	uint8_t *p = malloc(cap + 1);
	if (!p)
		return -ENOMEM;
	size_t len = 0;
	int rc = 0;
	for (;;) {
		if (len == cap) {
			size_t ncap =
				cap > SIZE_MAX / 4 ? SIZE_MAX / 2 : cap * 2;
			uint8_t *q = realloc(p, ncap + 1);
			if (!q) {
				rc = -ENOMEM;
				break;
			}
			p = q;
			cap = ncap;
		}
		/* never read more than one byte past max */
		size_t room = cap - len, left = max - len;
		if (left < SIZE_MAX && room > left + 1)
			room = left + 1;
		ssize_t n = read(fd, p + len, room);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rc = -errno;
			break;
		}
		if (n == 0)
			break;
		len += (size_t)n;
		if (len > max) {
			rc = -EFBIG;
			break;
		}
	}
	if (rc) {
		free(p);
		return rc;
	}
	p[len] = '\0';
	*out = p;
	*out_len = len;
	return 0;
}

int lfs_read_file(const char *path, size_t max, uint8_t **out, size_t *out_len)
{
	*out = NULL;
	*out_len = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	int rc = lfs_read_fd(fd, max, out, out_len);
	close(fd);
	return rc;
}

int lfs_write_atomic(const char *path, const void *p, size_t len, mode_t mode,
		     bool durable)
{
	const char *slash = strrchr(path, '/');
	const char *base = slash ? slash + 1 : path;
	if (!*base || !strcmp(base, ".") || !strcmp(base, ".."))
		return -EISDIR;
	size_t dlen = slash ? (size_t)(slash - path) + 1 : 0;
	size_t tlen = dlen + 5 + strlen(base) + 8;
	char *tmp = malloc(tlen);
	char *dir = malloc(dlen + 2);
	if (!tmp || !dir) {
		free(tmp);
		free(dir);
		return -ENOMEM;
	}
	memcpy(tmp, path, dlen);
	/* At most NAME_MAX bytes: a long base is cut short in the name. */
	int keep = (int)strnlen(base, NAME_MAX - 12);
	snprintf(tmp + dlen, tlen - dlen, ".tmp-%.*s-XXXXXX", keep, base);
	if (dlen) {
		memcpy(dir, path, dlen);
		dir[dlen] = '\0';
	} else {
		strcpy(dir, ".");
	}

	int rc = 0;
	int fd = mkstemp(tmp);
	if (fd < 0) {
		rc = -errno;
		goto out;
	}
	if (!(rc = lfs_write_all(fd, p, len)) && fchmod(fd, mode) < 0)
		rc = -errno;
	if (!rc && durable && fsync(fd) < 0)
		rc = -errno;
	if (close(fd) < 0 && !rc)
		rc = -errno;
	if (!rc && rename(tmp, path) < 0)
		rc = -errno;
	if (rc) {
		unlink(tmp);
		goto out;
	}
	if (!durable)
		goto out;
	/* Without this the rename may not survive a crash: say so (path
	 * holds the new bytes already). */
	int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0 || fsync(dfd) < 0)
		rc = -errno;
	if (dfd >= 0)
		close(dfd);
out:
	free(tmp);
	free(dir);
	return rc;
}
