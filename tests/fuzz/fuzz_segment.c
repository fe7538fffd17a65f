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
 *
 * The last input byte may also have a resume point written for the
 * segment (DIR/runs/resume, blockstore_resume.c), as a writer with the
 * key would: over a choice of the records framed, with their digest,
 * sometimes naming an offset where no record starts, a head, an intent,
 * an end short of the file. Every record it names is checked at open,
 * whatever it says.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include <dirent.h>
#include <errno.h>
#include <stdbool.h>
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
#include "envelope.h"

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

#define MAX_FRAMES 64

static void put64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

/* Frame the records of p[0..n) in place; see the top comment. Where the
 * first MAX_FRAMES start, and their kinds, in starts and kinds (*nstarts
 * of them). */
static void fix_up(uint8_t *p, size_t n, size_t damage, size_t *starts,
		   uint8_t *kinds, size_t *nstarts, bool raw_cids)
{
	size_t off = 0;
	*nstarts = 0;
	while (off + FIXED + SUM <= n) {
		size_t frame = *nstarts < MAX_FRAMES ? (*nstarts)++ : SIZE_MAX;
		if (frame != SIZE_MAX)
			starts[frame] = off;
		uint8_t *r = p + off;
		put32(r, REC_MAGIC);
		/* commit, mark, unknown, or intent */
		put32(r + 4, get32(r + 4) % 4);
		if (frame != SIZE_MAX)
			kinds[frame] = (uint8_t)get32(r + 4);
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
		/* With a resume point: commits named by CIDs that parse
		 * (raw, SHA-256), so that it can name them. */
		static const uint8_t raw[4] = {0x01, 0x55, 0x12, 0x20};
		if (raw_cids && get32(r + 4) == 0)
			memcpy(r + 24, raw, sizeof(raw));
		crypto_generichash(r + hdr, SUM, r, hdr, NULL, 0);
		off += hdr + SUM + len;
	}
	if (damage < n)
		p[damage] ^= 0x5a;
}

/*
 * Write a resume point for seg (len bytes, the file magic first) whose
 * records frame at starts (offsets after the magic, of the given kinds),
 * as plan's bits say: which commits it names (all, or every other), an
 * offset one past a record's start, an end short of the file, a head,
 * the last intent, how far folds reach.
 */
static void write_resume(const uint8_t *seg, size_t len, const size_t *starts,
			 const uint8_t *kinds, size_t nstarts, uint8_t plan)
{
	const size_t magic = sizeof(FILE_MAGIC) - 1;
	uint64_t recs[MAX_FRAMES], intents[1];
	size_t nrec = 0, nintents = 0, nheads = 0;
	/* All the frames, or those before the middle one, where it ends. */
	size_t upto = plan & 4 ? nstarts : nstarts / 2;
	uint64_t at = upto < nstarts ? magic + starts[upto] : len;
	crypto_generichash_state st;
	crypto_generichash_init(&st, NULL, 0, 16);
	for (size_t i = 0; i < upto; i++) {
		uint64_t pos = magic + starts[i];
		if (kinds[i] == 3)
			intents[0] = pos, nintents = plan & 32 ? 1 : 0;
		if (kinds[i] != 0 || (!(plan & 2) && nrec % 2))
			continue;
		recs[nrec++] = pos + (plan & 8 && nrec == 0 ? 1 : 0);
		if (pos + FIXED <= len)
			crypto_generichash_update(&st, seg + pos + 24,
						  LFS_CID_BYTES);
	}
	uint8_t head[LFS_CID_BYTES];
	if (plan & 16 && nrec && recs[nrec - 1] + FIXED <= len) {
		memcpy(head, seg + recs[nrec - 1] + 24, LFS_CID_BYTES);
		nheads = 1;
	}
	uint64_t folded = (plan >> 6) == 0 ? 0 : (plan >> 6) == 1 ? at / 2 : at;
	size_t n = 56 + nrec * 8 + nheads * LFS_CID_BYTES + nintents * 8;
	uint8_t *b = malloc(n + 32);
	CHECK(b);
	memcpy(b, "LFSRES1\n", 8);
	put64(b + 8, at);
	put64(b + 16, folded);
	put32(b + 24, (uint32_t)nrec);
	put32(b + 28, (uint32_t)nheads);
	put32(b + 32, (uint32_t)nintents);
	put32(b + 36, 0);
	crypto_generichash_final(&st, b + 40, 16);
	uint8_t *p = b + 56;
	for (size_t i = 0; i < nrec; i++, p += 8)
		put64(p, recs[i]);
	if (nheads) {
		memcpy(p, head, LFS_CID_BYTES);
		p += LFS_CID_BYTES;
	}
	for (size_t i = 0; i < nintents; i++, p += 8)
		put64(p, intents[i]);
	uint8_t sub[32];
	lfs_envelope_subkey(sub, sizeof(sub), key,
			    "ledgerfs segment resume v1");
	crypto_generichash(b + n, 32, b, n, sub, sizeof(sub));
	char path[160];
	snprintf(path, sizeof(path), "%s/runs", fuzz_dir);
	mkdir(path, 0700);
	snprintf(path, sizeof(path), "%s/runs/resume", fuzz_dir);
	FILE *f = fopen(path, "wb");
	CHECK(f);
	CHECK(fwrite(b, 1, n + 32, f) == n + 32);
	CHECK(fclose(f) == 0);
	free(b);
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
	fuzz_dir_empty("runs"); /* no resume point of another input */
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
	/* The last byte: a resume point's plan (bit 0: none). */
	uint8_t plan = data[size - 1];
	size_t starts[MAX_FRAMES], nstarts;
	uint8_t kinds[MAX_FRAMES];
	fix_up(seg + sizeof(FILE_MAGIC) - 1, n, damage, starts, kinds, &nstarts,
	       plan & 1);
	if (plan & 1)
		write_resume(seg, sizeof(FILE_MAGIC) - 1 + n, starts, kinds,
			     nstarts, plan);
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
