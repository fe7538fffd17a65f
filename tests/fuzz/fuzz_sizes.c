/*
 * libFuzzer target for fs_render's size table file (HOME/state/<ledger>/
 * sizes): the input as the file. Loading never fails but on memory, keeps
 * at most one entry per whole record of the input, leaves the file a
 * header and whole records; catching up with appended input and putting
 * new entries work on whatever was loaded, and a reload agrees.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "cid.h"
#include "fileio.h"
#include "fs_render.h"
#include "log.h"

#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static off_t file_size(const char *path)
{
	struct stat st;
	CHECK(stat(path, &st) == 0);
	return st.st_size;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static bool ready;
	if (!ready) {
		CHECK(sodium_init() >= 0);
		lfs_log_setup(LFS_LOG_ERROR, 0);
		fuzz_dir_init("sizes");
		ready = true;
	}
	char path[128];
	snprintf(path, sizeof(path), "%s/sizes", fuzz_dir);
	unlink(path);
	CHECK(lfs_write_atomic(path, data, size, 0600, false) == 0);
	struct lfs_render_sizes *t;
	CHECK(lfs_render_sizes_open(&t, path) == 0);
	off_t n = file_size(path);
	CHECK(n >= 16 && (n - 16) % 48 == 0 &&
	      (size_t)n <= (size < 16 ? 16 : size));

	/* A version of our own, and the input appended again: catching up
	 * takes in whole records only, and a reload agrees on ours. */
	struct lfs_cid cid;
	lfs_cid_of(&cid, LFS_CODEC_DAG_CBOR, data, size);
	size_t len = 0;
	CHECK(!lfs_render_sizes_get(t, &cid, "fuzz", &len) ||
	      len <= LFS_RENDER_MAX);
	lfs_render_sizes_put(t, &cid, "fuzz", size);
	int fd = open(path, O_WRONLY | O_APPEND);
	CHECK(fd >= 0);
	CHECK(lfs_write_all(fd, data, size) == 0);
	close(fd);
	lfs_render_sizes_catch_up(t);
	CHECK(lfs_render_sizes_get(t, &cid, "fuzz", &len) &&
	      len <= LFS_RENDER_MAX);
	lfs_render_sizes_close(t);
	CHECK(lfs_render_sizes_open(&t, path) == 0);
	if (lfs_render_sizes_get(t, &cid, "fuzz", &len))
		CHECK(len <= LFS_RENDER_MAX);
	lfs_render_sizes_close(t);
	return 0;
}
