/*
 * bench_floor: the least a FUSE file system can do, as a baseline for the
 * tools rows of scripts/bench-fs.
 *
 *   bench_floor DIR MOUNTPOINT
 *
 * Reads the regular files directly in DIR into memory (at most 1,000,000
 * of them, each at most 1 MiB), then serves them, read-only, as the only
 * folder at MOUNTPOINT, in the foreground, until unmounted. It answers
 * every request from memory, single-threaded, and tells the kernel to
 * keep everything it can: entries and attributes for an hour, pages kept
 * across opens, no FLUSH at close. What is left per file is what the
 * kernel asks of any FUSE daemon that must see open(2) and close(2): one
 * OPEN and one RELEASE. A real file system that must see a writer's close
 * (ledgerfs saves there) cannot do with less, so a tool's time here is the
 * floor under ledgerfs's own.
 *
 * Exit status 0 after a clean unmount, 1 when DIR cannot be read or the
 * mount fails.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <fuse_lowlevel.h>

#define FLOOR_MAX_FILES 1000000
#define FLOOR_MAX_SIZE  (1 << 20)
#define FLOOR_TTL       3600.0

struct floor_file {
	char *name;
	char *text;
	size_t size;
};

static struct floor_file *files;
static size_t nfiles;
static time_t started;

/* Inode 1 is the folder; file i is inode i + 2. */
static const struct floor_file *file_of(fuse_ino_t ino)
{
	return ino >= 2 && ino - 2 < nfiles ? &files[ino - 2] : NULL;
}

static void attr_of(fuse_ino_t ino, struct stat *out)
{
	const struct floor_file *f = file_of(ino);

	memset(out, 0, sizeof(*out));
	out->st_ino = ino;
	out->st_uid = getuid();
	out->st_gid = getgid();
	out->st_atime = out->st_mtime = out->st_ctime = started;
	if (!f) {
		out->st_mode = S_IFDIR | 0755;
		out->st_nlink = 2;
	} else {
		out->st_mode = S_IFREG | 0644;
		out->st_nlink = 1;
		out->st_size = (off_t)f->size;
		out->st_blocks = (blkcnt_t)((f->size + 511) / 512);
	}
}

static int by_name(const void *a, const void *b)
{
	return strcmp(((const struct floor_file *)a)->name,
		      ((const struct floor_file *)b)->name);
}

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct floor_file key = {.name = (char *)name};
	const struct floor_file *f =
		parent == 1
			? bsearch(&key, files, nfiles, sizeof(*files), by_name)
			: NULL;
	struct fuse_entry_param e;

	if (!f) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	memset(&e, 0, sizeof(e));
	e.ino = (fuse_ino_t)(f - files) + 2;
	e.attr_timeout = e.entry_timeout = FLOOR_TTL;
	attr_of(e.ino, &e.attr);
	fuse_reply_entry(req, &e);
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino,
		       struct fuse_file_info *fi)
{
	struct stat st;

	(void)fi;
	if (ino != 1 && !file_of(ino)) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	attr_of(ino, &st);
	fuse_reply_attr(req, &st, FLOOR_TTL);
}

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	if ((fi->flags & O_ACCMODE) != O_RDONLY) {
		fuse_reply_err(req, EROFS);
		return;
	}
	fi->keep_cache = 1;
	fi->noflush = 1;
	fuse_reply_open(req, fi);
}

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		    struct fuse_file_info *fi)
{
	const struct floor_file *f = file_of(ino);

	(void)fi;
	if (!f || off < 0 || (size_t)off >= f->size) {
		fuse_reply_buf(req, NULL, 0);
		return;
	}
	if (size > f->size - (size_t)off)
		size = f->size - (size_t)off;
	fuse_reply_buf(req, f->text + off, size);
}

static void op_release(fuse_req_t req, fuse_ino_t ino,
		       struct fuse_file_info *fi)
{
	(void)ino;
	(void)fi;
	fuse_reply_err(req, 0);
}

static void op_opendir(fuse_req_t req, fuse_ino_t ino,
		       struct fuse_file_info *fi)
{
	if (ino != 1) {
		fuse_reply_err(req, ENOTDIR);
		return;
	}
	fi->cache_readdir = 1;
	fi->keep_cache = 1;
	fuse_reply_open(req, fi);
}

/* Offsets: 0 and 1 for "." and "..", i + 2 for file i. */
static void list(fuse_req_t req, size_t size, off_t off, int plus)
{
	char *buf = malloc(size);
	size_t used = 0;

	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	for (size_t i = off < 0 ? 0 : (size_t)off; i < nfiles + 2; i++) {
		fuse_ino_t ino = i < 2 ? 1 : i;
		const char *name = i == 0   ? "."
				   : i == 1 ? ".."
					    : files[i - 2].name;
		struct fuse_entry_param e;
		size_t n;

		memset(&e, 0, sizeof(e));
		attr_of(ino, &e.attr);
		if (plus) {
			e.ino = i < 2 ? 0 : ino;
			e.attr_timeout = e.entry_timeout = FLOOR_TTL;
			n = fuse_add_direntry_plus(req, buf + used, size - used,
						   name, &e, (off_t)i + 1);
		} else {
			n = fuse_add_direntry(req, buf + used, size - used,
					      name, &e.attr, (off_t)i + 1);
		}
		if (n > size - used)
			break;
		used += n;
	}
	fuse_reply_buf(req, buf, used);
	free(buf);
}

static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi)
{
	(void)ino;
	(void)fi;
	list(req, size, off, 0);
}

static void op_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size,
			   off_t off, struct fuse_file_info *fi)
{
	(void)ino;
	(void)fi;
	list(req, size, off, 1);
}

static const struct fuse_lowlevel_ops floor_ops = {
	.lookup = op_lookup,
	.getattr = op_getattr,
	.open = op_open,
	.read = op_read,
	.release = op_release,
	.opendir = op_opendir,
	.readdir = op_readdir,
	.readdirplus = op_readdirplus,
};

static char *read_text(int dirfd, const char *name, size_t *size)
{
	int fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	struct stat st;
	char *text = NULL;
	ssize_t got = 0;

	if (fd < 0)
		return NULL;
	if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) &&
	    st.st_size <= FLOOR_MAX_SIZE &&
	    (text = malloc((size_t)st.st_size + 1)))
		got = read(fd, text, (size_t)st.st_size);
	close(fd);
	if (!text || got != st.st_size) {
		free(text);
		return NULL;
	}
	*size = (size_t)st.st_size;
	return text;
}

static int load(const char *path)
{
	DIR *d = opendir(path);
	struct dirent *de;
	size_t cap = 0;

	if (!d) {
		fprintf(stderr, "bench_floor: cannot open %s: %s\n", path,
			strerror(errno));
		return -1;
	}
	while ((de = readdir(d))) {
		struct floor_file f;

		if (de->d_name[0] == '.')
			continue;
		if (nfiles == FLOOR_MAX_FILES) {
			fprintf(stderr,
				"bench_floor: more than %d files in %s\n",
				FLOOR_MAX_FILES, path);
			break;
		}
		f.text = read_text(dirfd(d), de->d_name, &f.size);
		if (!f.text)
			continue;
		f.name = strdup(de->d_name);
		if (nfiles == cap) {
			struct floor_file *more;

			cap = cap ? 2 * cap : 1024;
			more = realloc(files, cap * sizeof(*files));
			if (!more)
				f.name = NULL;
			else
				files = more;
		}
		if (!f.name) {
			fprintf(stderr, "bench_floor: out of memory\n");
			free(f.text);
			closedir(d);
			return -1;
		}
		files[nfiles++] = f;
	}
	closedir(d);
	qsort(files, nfiles, sizeof(*files), by_name);
	return 0;
}

int main(int argc, char **argv)
{
	struct fuse_args args = FUSE_ARGS_INIT(0, NULL);
	struct fuse_session *se;
	int status = 1;

	if (argc != 3) {
		fprintf(stderr, "usage: bench_floor DIR MOUNTPOINT\n");
		return 2;
	}
	started = time(NULL);
	if (load(argv[1]) < 0)
		return 1;
	if (fuse_opt_add_arg(&args, "bench_floor") < 0 ||
	    fuse_opt_add_arg(&args, "-o") < 0 ||
	    fuse_opt_add_arg(&args, "fsname=bench_floor,default_permissions") <
		    0)
		return 1;
	se = fuse_session_new(&args, &floor_ops, sizeof(floor_ops), NULL);
	if (se && fuse_set_signal_handlers(se) == 0) {
		if (fuse_session_mount(se, argv[2]) == 0) {
			status = fuse_session_loop(se) < 0;
			fuse_session_unmount(se);
		}
		fuse_remove_signal_handlers(se);
	}
	if (se)
		fuse_session_destroy(se);
	fuse_opt_free_args(&args);
	fprintf(stderr, "bench_floor: served %zu files from %s\n", nfiles,
		argv[1]);
	return status;
}
