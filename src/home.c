/*
 * home: finding and laying out this machine's ledgerfs directory.
 *
 * Every file this module writes (the writer id, keys) is written to a
 * temporary file created with O_CREAT|O_EXCL (mode 0600) beside its final
 * name, fsynced, and then published with link(2) (or renameat2 with
 * RENAME_NOREPLACE where the file system has no hard links), which fails
 * when the name exists. So a reader never sees half a file, and of two
 * processes racing to create the same name exactly one wins and the other
 * sees -EEXIST and reads the winner's file.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1 /* renameat2 */
#endif

#include "home.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "blockstore.h"
#include "cbor.h"
#include "hex.h"
#include "fileio.h"
#include "ledger.h"

#define KEY_HEX      (2 * LFS_KEY_BYTES)
#define WRITER_BYTES 8    /* 16 hex characters */
#define SMALL_FILE   4096 /* cap on the writer and key files */
#define KEY_SUFFIX   ".key"

static char *join(const char *a, const char *b, const char *c)
{
	size_t n = strlen(a) + 1 + strlen(b) + strlen(c) + 1;
	char *p = malloc(n);
	if (p)
		snprintf(p, n, "%s/%s%s", a, b, c);
	return p;
}

static void fsync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd >= 0) {
		fsync(fd); /* best effort: the file itself is synced */
		close(fd);
	}
}

/*
 * Create dir/name holding p[0..len) (mode 0600), atomically and only if the
 * name is free: -EEXIST when it exists.
 */
static int publish_file(const char *dir, const char *name, const void *p,
			size_t len)
{
	char *path = join(dir, name, "");
	char *tmp = NULL;
	int rc = -ENOMEM, fd = -1;
	if (!path)
		goto out;
	for (int tries = 0; tries < 100; tries++) {
		uint8_t r[6];
		char hex[2 * sizeof(r) + 1];
		randombytes_buf(r, sizeof(r));
		sodium_bin2hex(hex, sizeof(hex), r, sizeof(r));
		free(tmp);
		size_t n = strlen(dir) + strlen(name) + sizeof(hex) + 8;
		if (!(tmp = malloc(n))) {
			rc = -ENOMEM;
			goto out;
		}
		snprintf(tmp, n, "%s/.%s.%s", dir, name, hex);
		fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		if (fd >= 0 || errno != EEXIST)
			break;
	}
	if (fd < 0) {
		rc = -errno;
		goto out;
	}
	rc = lfs_write_all(fd, p, len);
	if (!rc && fchmod(fd, 0600) < 0)
		rc = -errno;
	if (!rc && fsync(fd) < 0)
		rc = -errno;
	if (close(fd) < 0 && !rc)
		rc = -errno;
	if (!rc && link(tmp, path) < 0) {
		rc = -errno;
#ifdef RENAME_NOREPLACE
		/* No hard links here (some FUSE and FAT file systems). */
		if (rc == -EPERM || rc == -ENOTSUP || rc == -EOPNOTSUPP ||
		    rc == -ENOSYS || rc == -EMLINK)
			rc = renameat2(AT_FDCWD, tmp, AT_FDCWD, path,
				       RENAME_NOREPLACE) < 0
				     ? -errno
				     : 0;
#endif
	}
	unlink(tmp); /* after link: the extra name; after rename: gone */
	if (!rc)
		fsync_dir(dir);
out:
	free(tmp);
	free(path);
	return rc;
}

/*
 * Read a small file whole (NUL-terminated) after checking it with fstat.
 * private: refuse a file that is not ours or that group/others may touch.
 */
static int read_small(char *out, size_t size, size_t *out_len, const char *path,
		      bool private)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	struct stat st;
	int rc = 0;
	size_t len = 0;
	if (fstat(fd, &st) < 0) {
		rc = -errno;
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		rc = -EBADMSG;
		goto out;
	}
	if (private && ((st.st_mode & 077) || st.st_uid != geteuid())) {
		rc = -EACCES;
		goto out;
	}
	for (;;) {
		if (len == size - 1) {
			rc = -EBADMSG; /* far longer than any valid content */
			goto out;
		}
		ssize_t n = read(fd, out + len, size - 1 - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rc = -errno;
			goto out;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	out[len] = '\0';
	*out_len = len;
out:
	close(fd);
	return rc;
}

static size_t trim(const char *s, size_t n)
{
	while (n && (s[n - 1] == '\n' || s[n - 1] == '\r' || s[n - 1] == ' ' ||
		     s[n - 1] == '\t'))
		n--;
	return n;
}

static int parse_key_hex(uint8_t out[LFS_KEY_BYTES], const char *s, size_t n)
{
	if (n != KEY_HEX)
		return -EINVAL;
	for (size_t i = 0; i < KEY_HEX; i++)
		if (lfs_hex_value((unsigned char)s[i]) < 0)
			return -EINVAL;
	for (size_t i = 0; i < LFS_KEY_BYTES; i++)
		out[i] = (uint8_t)(lfs_hex_value((unsigned char)s[2 * i]) << 4 |
				   lfs_hex_value((unsigned char)s[2 * i + 1]));
	return 0;
}

static bool valid_writer(const char *s, size_t n)
{
	if (n == 0 || n > LFS_WRITER_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
		      (c >= 'A' && c <= 'Z') || c == '-' || c == '_' ||
		      c == '.'))
			return false;
	}
	return true;
}

static int load_writer(struct lfs_home *h)
{
	char buf[SMALL_FILE];
	size_t len;
	char *path = join(h->dir, "writer", "");
	if (!path)
		return -ENOMEM;
	int rc = read_small(buf, sizeof(buf), &len, path, false);
	free(path);
	if (rc)
		return rc;
	len = trim(buf, len);
	if (!valid_writer(buf, len))
		return -EBADMSG;
	memcpy(h->writer, buf, len);
	h->writer[len] = '\0';
	return 0;
}

static int find_dir(char **out)
{
	const char *v = getenv("LEDGERFS_HOME");
	if (v && *v) {
		*out = strdup(v);
		return *out ? 0 : -ENOMEM;
	}
	v = getenv("XDG_DATA_HOME");
	if (v && v[0] == '/') { /* relative values are invalid: ignore */
		*out = join(v, "ledgerfs", "");
		return *out ? 0 : -ENOMEM;
	}
	v = getenv("HOME");
	if (!v || v[0] != '/') {
		struct passwd *pw = getpwuid(geteuid());
		v = pw ? pw->pw_dir : NULL;
	}
	if (!v || v[0] != '/')
		return -ENOENT;
	*out = join(v, ".local/share/ledgerfs", "");
	return *out ? 0 : -ENOMEM;
}

int lfs_home_open(struct lfs_home *out, const char *dir)
{
	memset(out, 0, sizeof(*out));
	int rc = dir ? ((out->dir = strdup(dir)) ? 0 : -ENOMEM)
		     : find_dir(&out->dir);
	if (rc)
		goto fail;
	if (!*out->dir) {
		rc = -EINVAL;
		goto fail;
	}
	/* Strip trailing slashes (but keep "/"). */
	for (size_t n = strlen(out->dir); n > 1 && out->dir[n - 1] == '/'; n--)
		out->dir[n - 1] = '\0';
	if ((rc = lfs_mkdirs(out->dir)))
		goto fail;
	char *keys = join(out->dir, "keys", "");
	char *ledgers = join(out->dir, "ledgers", "");
	rc = keys && ledgers ? 0 : -ENOMEM;
	if (!rc)
		rc = lfs_mkdirs(keys);
	if (!rc)
		rc = lfs_mkdirs(ledgers);
	free(keys);
	free(ledgers);
	if (rc)
		goto fail;
	rc = load_writer(out);
	if (rc == -ENOENT) {
		uint8_t r[WRITER_BYTES];
		char hex[2 * WRITER_BYTES + 2];
		randombytes_buf(r, sizeof(r));
		sodium_bin2hex(hex, sizeof(hex), r, sizeof(r));
		hex[2 * WRITER_BYTES] = '\n';
		rc = publish_file(out->dir, "writer", hex,
				  2 * WRITER_BYTES + 1);
		if (rc == 0 || rc == -EEXIST) /* -EEXIST: another process won */
			rc = load_writer(out);
	}
	if (rc)
		goto fail;
	return 0;
fail:
	lfs_home_release(out);
	return rc;
}

void lfs_home_release(struct lfs_home *h)
{
	free(h->dir);
	memset(h, 0, sizeof(*h));
}

bool lfs_home_valid_name(const char *name)
{
	if (!name)
		return false;
	size_t n = strlen(name);
	return n >= 1 && n <= LFS_LEDGER_NAME_MAX && name[0] != '.' &&
	       !memchr(name, '/', n) && lfs_utf8_valid(name, n);
}

char *lfs_home_ledger_dir(const struct lfs_home *h, const char *name)
{
	if (!lfs_home_valid_name(name))
		return NULL;
	char *ledgers = join(h->dir, "ledgers", "");
	char *p = ledgers ? join(ledgers, name, "") : NULL;
	free(ledgers);
	return p;
}

static char *keys_dir(const struct lfs_home *h)
{
	return join(h->dir, "keys", "");
}

char *lfs_home_log_path(const struct lfs_home *h)
{
	return join(h->dir, "ledgerfs.log", "");
}

int lfs_home_lock_mount(const struct lfs_home *h)
{
	char *path = join(h->dir, "mount.lock", "");
	if (!path)
		return -ENOMEM;
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	free(path);
	if (fd < 0)
		return -errno;
	if (flock(fd, LOCK_EX | LOCK_NB)) {
		int e = errno;
		close(fd);
		return e == EWOULDBLOCK ? -EBUSY : -e;
	}
	return fd;
}

char *lfs_home_key_path(const struct lfs_home *h, const char *name)
{
	if (!lfs_home_valid_name(name))
		return NULL;
	char *dir = keys_dir(h);
	char *path = dir ? join(dir, name, KEY_SUFFIX) : NULL;
	free(dir);
	return path;
}

char *lfs_home_state_path(const struct lfs_home *h, const char *name,
			  const char *file)
{
	if (!lfs_home_valid_name(name))
		return NULL;
	size_t n = strlen(h->dir) + strlen(name) + strlen(file) + 16;
	char *p = malloc(n);
	if (p)
		snprintf(p, n, "%s/state/%s%s%s", h->dir, name,
			 *file ? "/" : "", file);
	return p;
}

int lfs_home_open_ledger(struct lfs_ledger **out, const struct lfs_home *h,
			 const char *name, const struct lfs_ledger_opts *opts,
			 bool create, bool *out_key_error)
{
	*out = NULL;
	*out_key_error = false;
	char *dir = lfs_home_ledger_dir(h, name);
	if (!dir)
		return lfs_home_valid_name(name) ? -ENOMEM : -EINVAL;
	struct stat st;
	if (!create && stat(dir, &st) < 0) {
		int rc = -errno;
		free(dir);
		return rc;
	}
	uint8_t key[LFS_KEY_BYTES];
	int rc = lfs_home_key(key, h, name);
	if (rc) {
		*out_key_error = true;
	} else {
		struct lfs_ledger_opts o;
		if (opts)
			o = *opts;
		else
			lfs_ledger_opts_init(&o);
		o.writer = h->writer;
		rc = lfs_ledger_open(out, dir, key, &o, create);
	}
	sodium_memzero(key, sizeof(key));
	free(dir);
	return rc;
}

static int name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int lfs_home_list(char ***out, size_t *out_n, const struct lfs_home *h)
{
	*out = NULL;
	*out_n = 0;
	char *path = join(h->dir, "ledgers", "");
	if (!path)
		return -ENOMEM;
	DIR *d = opendir(path);
	if (!d) {
		int rc = -errno;
		free(path);
		return rc;
	}
	char **v = NULL;
	size_t n = 0, cap = 0;
	int rc = 0;
	struct dirent *e;
	while ((errno = 0, e = readdir(d))) {
		if (!lfs_home_valid_name(e->d_name))
			continue;
		char *full = join(path, e->d_name, "");
		struct stat st;
		if (!full) {
			rc = -ENOMEM;
			break;
		}
		bool isdir = stat(full, &st) == 0 && S_ISDIR(st.st_mode);
		free(full);
		if (!isdir)
			continue;
		if (n == cap) {
			size_t c = cap ? cap * 2 : 16;
			char **p = realloc(v, c * sizeof(*v));
			if (!p) {
				rc = -ENOMEM;
				break;
			}
			v = p;
			cap = c;
		}
		if (!(v[n] = strdup(e->d_name))) {
			rc = -ENOMEM;
			break;
		}
		n++;
	}
	if (!rc && errno)
		rc = -errno;
	closedir(d);
	free(path);
	if (rc) {
		lfs_home_list_free(v, n);
		return rc;
	}
	if (n)
		qsort(v, n, sizeof(*v), name_cmp);
	*out = v;
	*out_n = n;
	return 0;
}

void lfs_home_list_free(char **names, size_t n)
{
	for (size_t i = 0; names && i < n; i++)
		free(names[i]);
	free(names);
}

/* Write a key file for name; -EEXIST when one exists (whatever it holds). */
static int write_key(const struct lfs_home *h, const char *name,
		     const uint8_t key[LFS_KEY_BYTES])
{
	char text[KEY_HEX + 2];
	char *dir = keys_dir(h);
	size_t flen = strlen(name) + sizeof(KEY_SUFFIX);
	char *file = malloc(flen);
	if (file)
		snprintf(file, flen, "%s%s", name, KEY_SUFFIX);
	int rc = -ENOMEM;
	if (dir && file) {
		sodium_bin2hex(text, sizeof(text), key, LFS_KEY_BYTES);
		text[KEY_HEX] = '\n';
		rc = publish_file(dir, file, text, KEY_HEX + 1);
		sodium_memzero(text, sizeof(text));
	}
	free(dir);
	free(file);
	return rc;
}

int lfs_home_key(uint8_t out[LFS_KEY_BYTES], const struct lfs_home *h,
		 const char *name)
{
	if (!lfs_home_valid_name(name))
		return -EINVAL;
	char *path = lfs_home_key_path(h, name);
	if (!path)
		return -ENOMEM;
	char buf[SMALL_FILE];
	size_t len = 0;
	int rc = read_small(buf, sizeof(buf), &len, path, true);
	free(path);
	if (!rc)
		rc = parse_key_hex(out, buf, trim(buf, len)) ? -EBADMSG : 0;
	sodium_memzero(buf, sizeof(buf));
	return rc;
}

int lfs_home_set_key(const struct lfs_home *h, const char *name,
		     const uint8_t key[LFS_KEY_BYTES])
{
	if (!lfs_home_valid_name(name))
		return -EINVAL;
	uint8_t have[LFS_KEY_BYTES];
	int rc = lfs_home_key(have, h, name);
	if (rc == -ENOENT) {
		rc = write_key(h, name, key);
		if (rc == -EEXIST) /* lost a race: compare with the winner */
			rc = lfs_home_key(have, h, name);
		else
			goto out;
	}
	if (!rc && sodium_memcmp(have, key, LFS_KEY_BYTES) != 0)
		rc = -EEXIST;
out:
	sodium_memzero(have, sizeof(have));
	return rc;
}

static int remove_key(const struct lfs_home *h, const char *name)
{
	char *dir = keys_dir(h);
	char *path = dir ? join(dir, name, KEY_SUFFIX) : NULL;
	free(dir);
	if (!path)
		return -ENOMEM;
	int rc = unlink(path) < 0 ? -errno : 0;
	free(path);
	return rc;
}

int lfs_home_create(const struct lfs_home *h, const char *name)
{
	if (!lfs_home_valid_name(name))
		return -EINVAL;
	char *ldir = lfs_home_ledger_dir(h, name);
	if (!ldir)
		return -ENOMEM;
	uint8_t key[LFS_KEY_BYTES];
	int rc = lfs_home_key(key, h, name);
	if (rc != -ENOENT) {
		rc = rc == 0 || rc == -EACCES || rc == -EBADMSG ? -EEXIST : rc;
		goto out;
	}
	/* mkdir claims the name: of two concurrent creates one gets EEXIST. */
	if (mkdir(ldir, 0700) < 0) {
		rc = -errno;
		goto out;
	}
	randombytes_buf(key, sizeof(key));
	if ((rc = write_key(h, name, key))) {
		rmdir(ldir);
		goto out;
	}
	struct lfs_blockstore *bs;
	if ((rc = lfs_blockstore_open(&bs, ldir, key, 0, true))) {
		char *car = join(ldir, "car", ""),
		     *head = join(ldir, "head", "");
		if (car)
			rmdir(car);
		if (head)
			rmdir(head);
		free(car);
		free(head);
		rmdir(ldir);
		remove_key(h, name);
		goto out;
	}
	lfs_blockstore_free(bs);
out:
	sodium_memzero(key, sizeof(key));
	free(ldir);
	return rc;
}

void lfs_key_to_share(char out[73], const uint8_t key[LFS_KEY_BYTES])
{
	memcpy(out, LFS_KEY_SHARE_PREFIX, sizeof(LFS_KEY_SHARE_PREFIX) - 1);
	sodium_bin2hex(out + sizeof(LFS_KEY_SHARE_PREFIX) - 1, KEY_HEX + 1, key,
		       LFS_KEY_BYTES);
}

int lfs_key_from_share(uint8_t out[LFS_KEY_BYTES], const char *s)
{
	size_t plen = sizeof(LFS_KEY_SHARE_PREFIX) - 1;
	if (!s || strncmp(s, LFS_KEY_SHARE_PREFIX, plen))
		return -EINVAL;
	s += plen;
	size_t n = strlen(s);
	/* Tolerate the newline a copy from a terminal or a file brings. */
	n = trim(s, n);
	uint8_t tmp[LFS_KEY_BYTES];
	int rc = parse_key_hex(tmp, s, n);
	if (!rc)
		memcpy(out, tmp, LFS_KEY_BYTES);
	sodium_memzero(tmp, sizeof(tmp));
	return rc;
}
