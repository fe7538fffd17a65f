#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

/*
 * store_file: the file:// store driver, a directory (see store.h).
 */
#include "store.h"

#include "fileio.h"
#include "timefmt.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#define FILE_PIECE ((size_t)64 << 10) /* read and handed on at a time */

static bool cancelled(struct lfs_store *s)
{
	return lfs_store_check_deadline(s, lfs_mono_us(), 0) == -ECANCELED;
}

struct file_store {
	struct lfs_store base;
	char *root;
};

/*
 * Keys are resolved beneath the root one segment at a time, following no
 * symlink (openat with O_NOFOLLOW), so nothing planted in the store leads
 * a read, a write or a listing outside it. The root itself may be a
 * symlink: the user chose it.
 */

/*
 * The directory holding key's last segment (an fd), creating missing
 * directories when create is set; *leaf points at the last segment.
 * Every request starts here: -EINVAL for a key that is not valid,
 * -ECANCELED once the store is cancelled, -ENOENT when a directory is
 * missing, -ELOOP when one is a symlink, -ENOTDIR when one is something
 * else.
 */
static int open_parent(struct file_store *f, const char *key, bool create,
		       const char **leaf)
{
	if (!lfs_store_valid_key(key))
		return -EINVAL;
	if (cancelled(&f->base))
		return -ECANCELED;
	int dfd = open(f->root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return -errno;
	for (const char *p = key;;) {
		const char *slash = strchr(p, '/');
		if (!slash) {
			*leaf = p;
			return dfd;
		}
		char seg[NAME_MAX + 1];
		size_t n = (size_t)(slash - p);
		if (n > NAME_MAX) {
			close(dfd);
			return -ENAMETOOLONG;
		}
		memcpy(seg, p, n);
		seg[n] = '\0';
		int flags = O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC;
		int nfd = openat(dfd, seg, flags);
		if (nfd < 0 && errno == ENOENT && create &&
		    (!mkdirat(dfd, seg, 0700) || errno == EEXIST))
			nfd = openat(dfd, seg, flags);
		int e = errno;
		close(dfd);
		if (nfd < 0)
			return -e;
		dfd = nfd;
		p = slash + 1;
	}
}

static int file_put(struct lfs_store *s, const char *key, const uint8_t *data,
		    size_t len, bool if_absent)
{
	struct file_store *f = (struct file_store *)s;
	const char *leaf;
	int dfd = open_parent(f, key, true, &leaf);
	if (dfd < 0)
		return dfd;
	char tmp[NAME_MAX + 1];
	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp-%08x", leaf,
			     randombytes_random()) >= sizeof(tmp)) {
		close(dfd);
		return -ENAMETOOLONG;
	}
	int fd =
		openat(dfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	int rc = fd < 0 ? -errno : lfs_write_all(fd, data, len);
	if (!rc && fsync(fd))
		rc = -errno;
	if (fd >= 0)
		close(fd);
	if (!rc && if_absent) {
		/* link() fails when the name exists: an atomic if-absent. */
		rc = linkat(dfd, tmp, dfd, leaf, 0)
			     ? (errno == EEXIST ? -EEXIST : -errno)
			     : 0;
		unlinkat(dfd, tmp, 0);
	} else if (!rc && renameat(dfd, tmp, dfd, leaf)) {
		rc = -errno;
	}
	if (rc && fd >= 0)
		unlinkat(dfd, tmp, 0);
	close(dfd);
	return rc;
}

/*
 * Only a regular file is an object: a FIFO would block a reader, a device
 * would never end, a symlink could lead anywhere (-EBADMSG for those). The
 * size is checked against the cap before anything is read, and reading
 * stops at the cap should the file grow meanwhile.
 */
static int file_get_to(struct lfs_store *s, const char *key, uint64_t max,
		       const struct lfs_store_sink *sink)
{
	struct file_store *f = (struct file_store *)s;
	const char *leaf;
	int dfd = open_parent(f, key, false, &leaf), fd = -1;
	if (dfd >= 0) {
		fd = openat(dfd, leaf,
			    O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0)
			fd = -errno;
		close(dfd);
	} else {
		fd = dfd;
	}
	if (fd < 0)
		return fd == -ENOENT || fd == -ENOTDIR ? -ENOENT
		       : fd == -ELOOP || fd == -ENXIO  ? -EBADMSG
						       : fd;
	struct stat st;
	int rc = fstat(fd, &st) ? -errno : 0;
	if (!rc && !S_ISREG(st.st_mode))
		rc = -EBADMSG;
	else if (!rc && (uint64_t)st.st_size > max)
		rc = -EFBIG;
	else if (!rc && sink->size)
		rc = sink->size(sink->ctx, (uint64_t)st.st_size);
	uint64_t got = 0;
	uint8_t *buf = rc ? NULL : malloc(FILE_PIECE);
	if (!rc && !buf)
		rc = -ENOMEM;
	while (!rc) {
		ssize_t r = read(fd, buf, FILE_PIECE);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			rc = r < 0 ? -errno : 0;
			break;
		}
		got += (uint64_t)r;
		if (got > max)
			rc = -EFBIG;
		else if (got % ((uint64_t)64 << 20) < (uint64_t)r &&
			 cancelled(s))
			rc = -ECANCELED; /* a long read: look now and then */
		else
			rc = sink->write(sink->ctx, buf, (size_t)r);
	}
	free(buf);
	close(fd);
	return rc;
}

/* List directory dfd (taken over), rel its key; depth-bounded. */
static int walk(int dfd, const char *rel, const char *prefix,
		lfs_store_list_fn fn, void *ctx, int depth)
{
	DIR *d = depth > 8 ? NULL : fdopendir(dfd);
	if (!d) {
		close(dfd);
		return 0;
	}
	struct dirent *de;
	int rc = 0;
	while (!rc && (de = readdir(d))) {
		if (de->d_name[0] == '.' || strstr(de->d_name, ".tmp-"))
			continue;
		char key[PATH_MAX];
		snprintf(key, sizeof(key), "%s%s%s", rel, rel[0] ? "/" : "",
			 de->d_name);
		size_t kl = strlen(key), pl = strlen(prefix);
		/* Descend only where the prefix can still match. */
		if (strncmp(key, prefix, kl < pl ? kl : pl))
			continue;
		bool isdir = de->d_type == DT_DIR;
		if (de->d_type == DT_UNKNOWN) {
			struct stat st;
			isdir = !fstatat(dirfd(d), de->d_name, &st,
					 AT_SYMLINK_NOFOLLOW) &&
				S_ISDIR(st.st_mode);
		}
		if (isdir) {
			int sub = openat(dirfd(d), de->d_name,
					 O_RDONLY | O_DIRECTORY | O_NOFOLLOW |
						 O_CLOEXEC);
			if (sub >= 0)
				rc = walk(sub, key, prefix, fn, ctx, depth + 1);
		} else if (kl >= pl) {
			rc = fn(ctx, key);
		}
	}
	closedir(d);
	return rc;
}

static int file_list(struct lfs_store *s, const char *prefix,
		     lfs_store_list_fn fn, void *ctx)
{
	if (cancelled(s))
		return -ECANCELED;
	struct file_store *f = (struct file_store *)s;
	int dfd = open(f->root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return errno == ENOENT ? 0 : -errno;
	return walk(dfd, "", prefix, fn, ctx, 0);
}

static int file_del(struct lfs_store *s, const char *key)
{
	struct file_store *f = (struct file_store *)s;
	const char *leaf;
	int dfd = open_parent(f, key, false, &leaf);
	if (dfd < 0)
		return dfd == -ENOENT ? 0 : dfd;
	int rc = unlinkat(dfd, leaf, 0) && errno != ENOENT ? -errno : 0;
	close(dfd);
	return rc;
}

static void file_free(struct lfs_store *s)
{
	struct file_store *f = (struct file_store *)s;
	free(f->root);
	free(f->base.url);
	free(f);
}

static const struct lfs_store_ops file_ops = {
	.put = file_put,
	.get_to = file_get_to,
	.list = file_list,
	.del = file_del,
	.free = file_free,
};

int lfs_store_file_open(struct lfs_store **out, const char *path)
{
	if (path[0] != '/')
		return -EINVAL; /* file:///absolute/path */
	struct file_store *f = calloc(1, sizeof(*f));
	if (!f)
		return -ENOMEM;
	f->base.ops = &file_ops;
	f->root = strdup(path);
	size_t n = strlen(path) + 8;
	f->base.url = malloc(n);
	if (!f->root || !f->base.url) {
		file_free(&f->base);
		return -ENOMEM;
	}
	snprintf(f->base.url, n, "file://%s", path);
	size_t l = strlen(f->root);
	while (l > 1 && f->root[l - 1] == '/')
		f->root[--l] = '\0';
	if (mkdir(f->root, 0700) && errno != EEXIST) {
		int e = -errno;
		file_free(&f->base);
		return e;
	}
	*out = &f->base;
	return 0;
}
