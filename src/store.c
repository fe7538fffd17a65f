#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "store.h"

#include "fileio.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

bool lfs_store_valid_key(const char *key)
{
	if (!key[0] || key[0] == '/' || strlen(key) > 1024)
		return false;
	for (const char *p = key; *p; p++)
		if (*p <= ' ' || *p >= 0x7f || *p == '\\')
			return false;
	/* No "." or ".." segment: servers and paths would fold them away. */
	for (const char *seg = key; seg; seg = strchr(seg, '/')) {
		if (*seg == '/')
			seg++;
		size_t n = strcspn(seg, "/");
		if ((n == 1 && seg[0] == '.') ||
		    (n == 2 && seg[0] == '.' && seg[1] == '.'))
			return false;
	}
	return !strstr(key, "//") && key[strlen(key) - 1] != '/';
}

int lfs_store_open(struct lfs_store **out, const char *url)
{
	if (!strncmp(url, "file://", 7))
		return lfs_store_file_open(out, url + 7);
	if (!strncmp(url, "memory://", 9))
		return lfs_store_memory_open(out, url + 9);
	if (!strncmp(url, "s3://", 5))
		return lfs_store_s3_open(out, url + 5);
	if (!strncmp(url, "http://", 7) || !strncmp(url, "https://", 8))
		return lfs_store_http_open(out, url);
	return -EINVAL;
}

void lfs_store_free(struct lfs_store *s)
{
	if (s)
		s->ops->free(s);
}

int64_t lfs_store_now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

void lfs_store_cancel_at(struct lfs_store *s, int64_t when)
{
	atomic_store(&s->cancel_at, when);
}

int lfs_store_check_deadline(struct lfs_store *s, int64_t start, uint64_t moved)
{
	int64_t now = lfs_store_now_us(), at = atomic_load(&s->cancel_at);
	if (at && now >= at)
		return -ECANCELED;
	uint64_t allowed_ms =
		LFS_STORE_DEADLINE_MS + moved / LFS_STORE_MIN_RATE * 1000 +
		moved % LFS_STORE_MIN_RATE * 1000 / LFS_STORE_MIN_RATE;
	return now - start > (int64_t)allowed_ms * 1000 ? -ETIMEDOUT : 0;
}

static bool cancelled(struct lfs_store *s)
{
	int64_t at = atomic_load(&s->cancel_at);
	return at && lfs_store_now_us() >= at;
}

/* ---- file:// ---- */

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
 * -ENOENT when a directory is missing, -ELOOP when one is a symlink,
 * -ENOTDIR when one is something else.
 */
static int open_parent(struct file_store *f, const char *key, bool create,
		       const char **leaf)
{
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
	if (!lfs_store_valid_key(key))
		return -EINVAL;
	if (cancelled(s))
		return -ECANCELED;
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
 * size is checked against out's cap before anything is read, and reading
 * stops at the cap should the file grow meanwhile.
 */
static int file_get(struct lfs_store *s, const char *key, struct lfs_buf *out)
{
	struct file_store *f = (struct file_store *)s;
	if (!lfs_store_valid_key(key))
		return -EINVAL;
	if (out->err)
		return out->err;
	if (cancelled(s))
		return -ECANCELED;
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
	else if (!rc && (uint64_t)st.st_size > out->max - out->len)
		rc = -EFBIG;
	else if (!rc && st.st_size > 0)
		rc = lfs_buf_reserve(out, (size_t)st.st_size);
	size_t start = out->len;
	while (!rc) {
		uint8_t buf[65536];
		ssize_t r = read(fd, buf, sizeof(buf));
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			rc = r < 0 ? -errno : 0;
			break;
		}
		rc = lfs_buf_append(out, buf, (size_t)r);
	}
	close(fd);
	if (rc)
		out->len = start;
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
	if (!lfs_store_valid_key(key))
		return -EINVAL;
	if (cancelled(s))
		return -ECANCELED;
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
	.get = file_get,
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

/* ---- memory:// ---- */

/*
 * Named in-memory stores shared by every handle in the process, so tests
 * can run several replicas against one "remote". Objects live until exit.
 */
struct mem_object {
	char *key;
	uint8_t *data;
	size_t len;
	struct mem_object *next;
};

struct mem_space {
	char *name;
	struct mem_object *objects;
	struct mem_space *next;
};

static pthread_mutex_t mem_lock = PTHREAD_MUTEX_INITIALIZER;
static struct mem_space *mem_spaces;

struct mem_store {
	struct lfs_store base;
	struct mem_space *space;
};

static struct mem_object **mem_find(struct mem_space *sp, const char *key)
{
	struct mem_object **pp = &sp->objects;
	while (*pp && strcmp((*pp)->key, key))
		pp = &(*pp)->next;
	return pp;
}

static int mem_put(struct lfs_store *s, const char *key, const uint8_t *data,
		   size_t len, bool if_absent)
{
	struct mem_store *m = (struct mem_store *)s;
	if (!lfs_store_valid_key(key))
		return -EINVAL;
	uint8_t *copy = malloc(len ? len : 1);
	if (!copy)
		return -ENOMEM;
	memcpy(copy, data, len);
	pthread_mutex_lock(&mem_lock);
	struct mem_object **pp = mem_find(m->space, key);
	int rc = 0;
	if (*pp && if_absent) {
		rc = -EEXIST;
		free(copy);
	} else if (*pp) {
		free((*pp)->data);
		(*pp)->data = copy;
		(*pp)->len = len;
	} else {
		struct mem_object *o = calloc(1, sizeof(*o));
		if (!o || !(o->key = strdup(key))) {
			free(o);
			free(copy);
			rc = -ENOMEM;
		} else {
			o->data = copy;
			o->len = len;
			*pp = o;
		}
	}
	pthread_mutex_unlock(&mem_lock);
	return rc;
}

static int mem_get(struct lfs_store *s, const char *key, struct lfs_buf *out)
{
	struct mem_store *m = (struct mem_store *)s;
	pthread_mutex_lock(&mem_lock);
	struct mem_object *o = *mem_find(m->space, key);
	int rc = o ? lfs_buf_append(out, o->data, o->len) : -ENOENT;
	pthread_mutex_unlock(&mem_lock);
	return rc;
}

static int mem_list(struct lfs_store *s, const char *prefix,
		    lfs_store_list_fn fn, void *ctx)
{
	struct mem_store *m = (struct mem_store *)s;
	/* Copy the keys first: fn may call back into the store. */
	char **keys = NULL;
	size_t n = 0;
	int rc = 0;
	pthread_mutex_lock(&mem_lock);
	for (struct mem_object *o = m->space->objects; o && !rc; o = o->next) {
		if (strncmp(o->key, prefix, strlen(prefix)))
			continue;
		void *p = realloc(keys, (n + 1) * sizeof(*keys));
		if (!p || !(((char **)p)[n] = strdup(o->key))) {
			if (p)
				keys = p;
			rc = -ENOMEM;
			break;
		}
		keys = p;
		n++;
	}
	pthread_mutex_unlock(&mem_lock);
	for (size_t i = 0; i < n; i++) {
		if (!rc)
			rc = fn(ctx, keys[i]);
		free(keys[i]);
	}
	free(keys);
	return rc;
}

static int mem_del(struct lfs_store *s, const char *key)
{
	struct mem_store *m = (struct mem_store *)s;
	pthread_mutex_lock(&mem_lock);
	struct mem_object **pp = mem_find(m->space, key), *o = *pp;
	if (o) {
		*pp = o->next;
		free(o->key);
		free(o->data);
		free(o);
	}
	pthread_mutex_unlock(&mem_lock);
	return 0;
}

static void mem_free(struct lfs_store *s)
{
	free(s->url);
	free(s);
}

static const struct lfs_store_ops mem_ops = {
	.put = mem_put,
	.get = mem_get,
	.list = mem_list,
	.del = mem_del,
	.free = mem_free,
};

int lfs_store_memory_open(struct lfs_store **out, const char *name)
{
	struct mem_store *m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	m->base.ops = &mem_ops;
	size_t n = strlen(name) + 10;
	if (!(m->base.url = malloc(n))) {
		free(m);
		return -ENOMEM;
	}
	snprintf(m->base.url, n, "memory://%s", name);
	pthread_mutex_lock(&mem_lock);
	struct mem_space *sp = mem_spaces;
	while (sp && strcmp(sp->name, name))
		sp = sp->next;
	if (!sp) {
		sp = calloc(1, sizeof(*sp));
		if (sp && !(sp->name = strdup(name))) {
			free(sp);
			sp = NULL;
		}
		if (sp) {
			sp->next = mem_spaces;
			mem_spaces = sp;
		}
	}
	pthread_mutex_unlock(&mem_lock);
	if (!sp) {
		mem_free(&m->base);
		return -ENOMEM;
	}
	m->space = sp;
	*out = &m->base;
	return 0;
}
