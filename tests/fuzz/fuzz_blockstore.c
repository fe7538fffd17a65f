/*
 * libFuzzer target for what the block store decodes from files: the root
 * block of a ledger CAR ({"cars": [raw CID...], "head": [event...]}) and
 * the sidecar block index of a large CAR (car/<cid>.idx, see blockstore.c).
 *
 * Input: ROOT [SEP SIDECAR]. A CAR holding ROOT as its root block and one
 * data block is sealed under a fixed key and imported into a fresh store:
 * import must take it or say -EBADMSG, and what it takes names at least
 * one head and only links of the right codecs. Then, if SIDECAR is given,
 * it becomes car/<cid>.idx with a valid MAC appended (as only a key holder
 * could write it), a second store opens the directory and loads the CAR
 * (which reads the sidecar), and reads every block the sidecar names, the
 * data block, and a block nobody has: each read returns data or an error,
 * never a crash, within bounded time.
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
#include "buf.h"
#include "car.h"
#include "envelope.h"

#include "fuzz.h"

#define SEP       "|IDX|"
#define SEP_LEN   (sizeof(SEP) - 1)
#define IDX_ENTRY 48

static const uint8_t key[LFS_KEY_BYTES] = {
	0x66, 0x75, 0x7a, 0x7a, 0x2d, 0x62, 0x6c, 0x6f, 0x63, 0x6b, 0x73,
	0x74, 0x6f, 0x72, 0x65, 0x2d, 0x6b, 0x65, 0x79, 0x00, 0x01, 0x02,
	0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c};

/* The sidecar's MAC, as blockstore.c computes it (keyed BLAKE2b-256). */
static void sidecar_mac(uint8_t out[32], const uint8_t *p, size_t len)
{
	static const char label[] = "ledgerfs sidecar v1";
	uint8_t sub[32];
	crypto_generichash(sub, sizeof(sub), (const uint8_t *)label,
			   sizeof(label) - 1, key, LFS_KEY_BYTES);
	crypto_generichash(out, 32, p, len, sub, sizeof(sub));
}

static void read_block(struct lfs_blockstore *bs, const struct lfs_cid *cid)
{
	struct lfs_blocks b = lfs_blockstore_blocks(bs);
	struct lfs_buf out;
	lfs_buf_init(&out, 0);
	int rc = lfs_blocks_get(&b, &out, cid);
	CHECK(rc == 0 || rc == -ENOENT || rc == -EBADMSG || rc == -EFBIG ||
	      rc == -EPROTONOSUPPORT);
	lfs_buf_release(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!fuzz_dir[0]) {
		CHECK(sodium_init() >= 0);
		fuzz_dir_init("blockstore");
	}
	fuzz_dir_clear();

	const uint8_t *sep = memmem(data, size, SEP, SEP_LEN);
	size_t rlen = sep ? (size_t)(sep - data) : size;
	const uint8_t *side = sep ? sep + SEP_LEN : NULL;
	size_t slen = sep ? size - rlen - SEP_LEN : 0;

	/* A CAR: ROOT as its root block, then one data block. */
	static const char payload[] = "a data block";
	struct lfs_cid rcid, dcid, car, none;
	lfs_cid_of(&rcid, LFS_CODEC_DAG_CBOR, data, rlen);
	lfs_cid_of(&dcid, LFS_CODEC_RAW, payload, sizeof(payload) - 1);
	lfs_cid_of(&none, LFS_CODEC_DAG_CBOR, "none", 4);
	struct lfs_buf plain, sealed;
	lfs_buf_init(&plain, 0);
	lfs_buf_init(&sealed, 0);
	CHECK(lfs_car_write_header(&plain, &rcid, 1) == 0);
	CHECK(lfs_car_write_block(&plain, &rcid, data, rlen) == 0);
	CHECK(lfs_car_write_block(&plain, &dcid, (const uint8_t *)payload,
				  sizeof(payload) - 1) == 0);
	CHECK(lfs_envelope_seal(&sealed, &car, key, plain.data, plain.len,
				LFS_ENVELOPE_MIN_CHUNK_LOG2) == 0);

	struct lfs_blockstore *bs;
	CHECK(lfs_blockstore_open(&bs, fuzz_dir, key, 4096, true) == 0);
	struct lfs_arena a;
	lfs_arena_init(&a, 0);
	struct lfs_car_root root;
	int rc = lfs_blockstore_import(&root, &a, bs, &car, sealed.data,
				       sealed.len);
	CHECK(rc == 0 || rc == -EBADMSG);
	if (rc == 0) {
		CHECK(root.nhead > 0);
		for (size_t i = 0; i < root.nhead; i++)
			CHECK(root.head[i].codec == LFS_CODEC_DAG_CBOR);
		for (size_t i = 0; i < root.ncars; i++)
			CHECK(root.cars[i].codec == LFS_CODEC_RAW);
		read_block(bs, &dcid);
	}
	lfs_blockstore_free(bs);

	if (rc == 0 && side) {
		char name[LFS_CID_STRLEN + 1], path[256];
		lfs_cid_to_string(name, &car);
		snprintf(path, sizeof(path), "%s/car/%s.idx", fuzz_dir, name);
		uint8_t mac[32];
		sidecar_mac(mac, side, slen);
		FILE *f = fopen(path, "wb");
		CHECK(f);
		CHECK(fwrite(side, 1, slen, f) == slen);
		CHECK(fwrite(mac, 1, 32, f) == 32);
		CHECK(fclose(f) == 0);

		CHECK(lfs_blockstore_open(&bs, fuzz_dir, key, 4096, false) ==
		      0);
		rc = lfs_blockstore_load(&root, &a, bs, &car, false);
		CHECK(rc == 0 || rc == -EBADMSG || rc == -ENOENT);
		if (slen >= 16) {
			/* Every entry the sidecar lists, as far as it goes. */
			size_t n = (slen - 16) / IDX_ENTRY;
			for (size_t i = 0; i < n && i < 64; i++) {
				const uint8_t *e =
					side + slen - (n - i) * IDX_ENTRY;
				struct lfs_cid c = {.codec = e[32]};
				memcpy(c.digest, e, sizeof(c.digest));
				read_block(bs, &c);
			}
		}
		read_block(bs, &dcid);
		read_block(bs, &rcid);
		read_block(bs, &none);
		lfs_blockstore_free(bs);
	}
	lfs_arena_release(&a);
	lfs_buf_release(&plain);
	lfs_buf_release(&sealed);
	return 0;
}
