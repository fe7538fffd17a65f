/*
 * libFuzzer target for the segment (DIR/segment, see blockstore.c): the
 * append-only file of local commits that a ledger reads back at open,
 * after a crash, a torn write or damage in its middle.
 *
 * Input: the bytes after the file magic. Before writing them, the target
 * makes each record it can frame well-formed enough to reach the deeper
 * code, as a writer (or bit rot that happens to keep checksums) could:
 * the record magic and the header checksum are set, the number of parents
 * and the length are bounded by what is left. Some inputs keep a byte of
 * damage after the fix-up (the first input byte chooses where), so the
 * skip-to-the-next-good-record path runs too. Then a store opens the
 * directory and lists its CARs and heads, loads and reads every one, and
 * appends nothing: each call returns 0 or a negative errno, never a
 * crash, within bounded time.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "arena.h"
#include "blockstore.h"
#include "cid.h"

#include "fuzz.h"

/* The layout blockstore.c writes (kept in step with it by hand). */
#define FILE_MAGIC "LFSSEG1\n"
#define REC_MAGIC  0x3152534cu
#define FIXED      (24 + LFS_CID_BYTES)
#define SUM        16
#define MAX_SEG    (1u << 20)

static const uint8_t key[LFS_KEY_BYTES] = {
	0x66, 0x75, 0x7a, 0x7a, 0x2d, 0x73, 0x65, 0x67, 0x6d, 0x65, 0x6e,
	0x74, 0x2d, 0x6b, 0x65, 0x79, 0x00, 0x01, 0x02, 0x03, 0x04, 0x05,
	0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f};

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

static void put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

/* Frame the records of p[0..n) in place; see the top comment. */
static void fix_up(uint8_t *p, size_t n, size_t damage)
{
	size_t off = 0;
	while (off + FIXED + SUM <= n) {
		uint8_t *r = p + off;
		put32(r, REC_MAGIC);
		put32(r + 4, get32(r + 4) % 3); /* commit, mark, or unknown */
		size_t left = n - off - FIXED - SUM;
		uint32_t np = get32(r + 12) % 4;
		if ((size_t)np * LFS_CID_BYTES > left)
			np = 0;
		put32(r + 12, np);
		size_t hdr = FIXED + (size_t)np * LFS_CID_BYTES;
		left -= (size_t)np * LFS_CID_BYTES;
		uint32_t len = get32(r + 8);
		if (len > left)
			len = (uint32_t)left;
		put32(r + 8, len);
		crypto_generichash(r + hdr, SUM, r, hdr, NULL, 0);
		off += hdr + SUM + len;
	}
	if (damage < n)
		p[damage] ^= 0x5a;
}

static void read_each(struct lfs_blockstore *bs, const struct lfs_cid *v,
		      size_t n)
{
	struct lfs_arena a;
	lfs_arena_init(&a, 0);
	for (size_t i = 0; i < n && i < 64; i++) {
		struct lfs_car_root root;
		int rc = lfs_blockstore_load(&root, &a, bs, &v[i], false);
		CHECK(rc <= 0);
		uint8_t *bytes = NULL;
		size_t len = 0;
		rc = lfs_blockstore_read_car(&bytes, &len, bs, &v[i]);
		CHECK(rc <= 0);
		free(bytes);
	}
	lfs_arena_release(&a);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!fuzz_dir[0]) {
		CHECK(sodium_init() >= 0);
		fuzz_dir_init("segment");
	}
	if (size < 1 || size > MAX_SEG)
		return 0;
	fuzz_dir_clear();
	struct lfs_blockstore *bs;
	CHECK(lfs_blockstore_open(&bs, fuzz_dir, key, 4096, true) == 0);
	lfs_blockstore_free(bs);

	/* The first byte: where to leave damage (255: nowhere). */
	size_t damage = data[0] == 255 ? SIZE_MAX : (size_t)data[0] * 16;
	size_t n = size - 1;
	uint8_t *seg = malloc(sizeof(FILE_MAGIC) - 1 + n + 1);
	CHECK(seg);
	memcpy(seg, FILE_MAGIC, sizeof(FILE_MAGIC) - 1);
	memcpy(seg + sizeof(FILE_MAGIC) - 1, data + 1, n);
	fix_up(seg + sizeof(FILE_MAGIC) - 1, n, damage);
	char path[128];
	snprintf(path, sizeof(path), "%s/segment", fuzz_dir);
	FILE *f = fopen(path, "wb");
	CHECK(f);
	CHECK(fwrite(seg, 1, sizeof(FILE_MAGIC) - 1 + n, f) ==
	      sizeof(FILE_MAGIC) - 1 + n);
	CHECK(fclose(f) == 0);
	free(seg);

	int rc = lfs_blockstore_open(&bs, fuzz_dir, key, 4096, false);
	CHECK(rc <= 0);
	if (rc)
		return 0;
	struct lfs_cid *cars = NULL, *heads = NULL;
	size_t ncars = 0, nheads = 0;
	rc = lfs_blockstore_list_cars(&cars, &ncars, bs);
	CHECK(rc <= 0);
	if (!rc)
		read_each(bs, cars, ncars);
	rc = lfs_blockstore_heads(&heads, &nheads, bs);
	CHECK(rc <= 0);
	if (!rc)
		read_each(bs, heads, nheads);
	int64_t stamp;
	CHECK(lfs_blockstore_heads_stamp(bs, &stamp) <= 0);
	free(cars);
	free(heads);
	lfs_blockstore_free(bs);
	return 0;
}
