/*
 * Tests of the block store: blocks in memory then in sealed CAR files,
 * reopening and loading CARs lazily through their "cars" links, damaged,
 * truncated and missing CAR files reported as errors, imports (checked,
 * lazy), the chunk cache (kept, bounded), head records, compaction, and
 * the sidecar index of large CARs (used, and ignored when damaged).
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "blockstore.h"
#include "car.h"
#include "cbor.h"
#include "envelope.h"
#include "fileio.h"
#include "check_util.h"

static uint8_t key[LFS_KEY_BYTES];
static char tmpdir[96];

static void setup(void)
{
	lfs_check_mkdtemp(tmpdir, sizeof(tmpdir), "lfs-bs");
}

static void teardown(void)
{
	lfs_rm_tree(tmpdir);
}

static const char *store_dir(int i)
{
	static char p[4][128];
	snprintf(p[i], sizeof(p[i]), "%s/s%d", tmpdir, i);
	return p[i];
}

static struct lfs_blockstore *open_store(int i, size_t cache, bool create)
{
	struct lfs_blockstore *bs;
	ck_assert_int_eq(
		lfs_blockstore_open(&bs, store_dir(i), key, cache, create), 0);
	return bs;
}

static char *car_file(int store, const struct lfs_cid *car, const char *ext)
{
	static char p[256];
	char name[LFS_CID_STRLEN + 1];
	lfs_cid_to_string(name, car);
	snprintf(p, sizeof(p), "%s/car/%s%s", store_dir(store), name, ext);
	return p;
}

/* Block k: len bytes derived from k, so any read can be checked. */
static void block_bytes(struct lfs_buf *b, int k, size_t len)
{
	lfs_buf_reset(b);
	for (size_t i = 0; i < len; i++)
		lfs_buf_append_byte(b, (uint8_t)(k * 31 + i * 7 + (i >> 8)));
}

static struct lfs_cid put_block(struct lfs_blockstore *bs, int k, size_t len)
{
	struct lfs_buf b;
	lfs_buf_init(&b, 0);
	block_bytes(&b, k, len);
	struct lfs_cid cid;
	lfs_cid_of(&cid, LFS_CODEC_RAW, b.data, b.len);
	struct lfs_blocks blocks = lfs_blockstore_blocks(bs);
	ck_assert_int_eq(lfs_blocks_put(&blocks, &cid, b.data, b.len), 0);
	lfs_buf_release(&b);
	return cid;
}

static int get_block(struct lfs_blockstore *bs, const struct lfs_cid *cid,
		     int k, size_t len)
{
	struct lfs_buf got, want;
	lfs_buf_init(&got, 0);
	lfs_buf_init(&want, 0);
	struct lfs_blocks blocks = lfs_blockstore_blocks(bs);
	int rc = lfs_blocks_get(&blocks, &got, cid);
	if (!rc) {
		block_bytes(&want, k, len);
		ck_assert_uint_eq(got.len, want.len);
		ck_assert_mem_eq(got.data, want.data, want.len);
	}
	lfs_buf_release(&got);
	lfs_buf_release(&want);
	return rc;
}

/* An event-like CID for a CAR's "head" (the store does not read it). */
static struct lfs_cid fake_event(int k)
{
	struct lfs_cid c;
	lfs_cid_of(&c, LFS_CODEC_DAG_CBOR, &k, sizeof(k));
	return c;
}

static struct lfs_cid write_car(struct lfs_blockstore *bs,
				const struct lfs_cid *parents, size_t np,
				const struct lfs_cid *blocks, size_t n, int ev)
{
	struct lfs_cid head = fake_event(ev), car;
	struct lfs_car_root root = {.cars = (struct lfs_cid *)parents,
				    .ncars = np,
				    .head = &head,
				    .nhead = 1};
	ck_assert_int_eq(
		lfs_blockstore_write_car(&car, bs, &root, blocks, n, false), 0);
	return car;
}

static void corrupt_byte(const char *path, long off)
{
	int fd = open(path, O_RDWR);
	ck_assert_int_ge(fd, 0);
	struct stat st;
	ck_assert_int_eq(fstat(fd, &st), 0);
	if (off < 0)
		off += st.st_size;
	uint8_t c;
	ck_assert_int_eq(pread(fd, &c, 1, off), 1);
	c ^= 0x40;
	ck_assert_int_eq(pwrite(fd, &c, 1, off), 1);
	close(fd);
}

START_TEST(put_get_write_reopen)
{
	struct lfs_blockstore *bs = open_store(0, 0, true);
	struct lfs_cid c[20];
	for (int k = 0; k < 20; k++)
		c[k] = put_block(bs, k, 100 + (size_t)k * 50);
	for (int k = 0; k < 20; k++) {
		ck_assert_int_eq(get_block(bs, &c[k], k, 100 + (size_t)k * 50),
				 0);
		ck_assert(!lfs_blockstore_persisted(bs, &c[k]));
	}
	struct lfs_cid absent;
	lfs_cid_of(&absent, LFS_CODEC_RAW, "absent", 6);
	ck_assert_int_eq(get_block(bs, &absent, 0, 0), -ENOENT);

	/* Half the blocks into a CAR. */
	struct lfs_cid car = write_car(bs, NULL, 0, c, 10, 1);
	for (int k = 0; k < 20; k++)
		ck_assert(lfs_blockstore_persisted(bs, &c[k]) == (k < 10));
	struct lfs_cid where;
	ck_assert_int_eq(lfs_blockstore_car_of(&where, bs, &c[3]), 0);
	ck_assert(lfs_cid_equal(&where, &car));
	ck_assert_int_eq(lfs_blockstore_car_of(&where, bs, &c[13]), -ENOENT);
	ck_assert(lfs_blockstore_has_car(bs, &car));
	ck_assert_int_eq(lfs_blockstore_sync(bs), 0);

	/* The file is named by the CID of its sealed bytes. */
	uint8_t *sealed;
	size_t len;
	ck_assert_int_eq(lfs_blockstore_read_car(&sealed, &len, bs, &car), 0);
	struct lfs_cid named;
	lfs_cid_of(&named, LFS_CODEC_RAW, sealed, len);
	ck_assert(lfs_cid_equal(&named, &car));
	free(sealed);
	struct lfs_cid *list;
	size_t n;
	ck_assert_int_eq(lfs_blockstore_list_cars(&list, &n, bs), 0);
	ck_assert(n == 1 && lfs_cid_equal(&list[0], &car));
	free(list);
	ck_assert_int_eq(lfs_blockstore_verify_car(bs, &car), 0);
	lfs_blockstore_free(bs);

	/* Reopened: nothing loaded, the unwritten half is gone. */
	bs = open_store(0, 0, false);
	ck_assert_int_eq(get_block(bs, &c[3], 3, 250), -ENOENT);
	struct lfs_arena a;
	lfs_arena_init(&a, 0);
	struct lfs_car_root root;
	ck_assert_int_eq(lfs_blockstore_load(&root, &a, bs, &car, true), 0);
	ck_assert_uint_eq(root.nhead, 1);
	ck_assert_uint_eq(root.ncars, 0);
	struct lfs_cid ev = fake_event(1);
	ck_assert(lfs_cid_equal(&root.head[0], &ev));
	for (int k = 0; k < 20; k++)
		ck_assert_int_eq(get_block(bs, &c[k], k, 100 + (size_t)k * 50),
				 k < 10 ? 0 : -ENOENT);
	lfs_arena_release(&a);
	lfs_blockstore_free(bs);

	/* A store that does not exist is not created unless asked. */
	struct lfs_blockstore *none;
	ck_assert_int_eq(
		lfs_blockstore_open(&none, store_dir(3), key, 0, false),
		-ENOENT);
}
END_TEST

/* In store 0: three CARs of a block each, each naming the one before. */
static void write_chain(struct lfs_cid c[3], struct lfs_cid car[3])
{
	struct lfs_blockstore *bs = open_store(0, 0, true);
	for (int i = 0; i < 3; i++) {
		c[i] = put_block(bs, i, 300);
		car[i] = write_car(bs, i ? &car[i - 1] : NULL, i ? 1 : 0, &c[i],
				   1, i);
	}
	lfs_blockstore_free(bs);
}

/* Older CARs load only when a block is missed, following "cars". */
START_TEST(lazy_chain)
{
	struct lfs_cid c[3], car[3];
	write_chain(c, car);
	struct lfs_blockstore *bs;
	bs = open_store(0, 0, false);
	ck_assert_int_eq(lfs_blockstore_load(NULL, NULL, bs, &car[2], false),
			 0);
	ck_assert(lfs_blockstore_persisted(bs, &c[2]));
	ck_assert(!lfs_blockstore_persisted(bs, &c[0]));
	ck_assert_int_eq(get_block(bs, &c[0], 0, 300), 0);
	ck_assert(lfs_blockstore_persisted(bs, &c[1]));
	lfs_blockstore_free(bs);

	/* The middle CAR missing: its blocks are not found, the others are. */
	ck_assert_int_eq(unlink(car_file(0, &car[1], "")), 0);
	bs = open_store(0, 0, false);
	ck_assert(!lfs_blockstore_has_car(bs, &car[1]));
	ck_assert_int_eq(lfs_blockstore_load(NULL, NULL, bs, &car[1], false),
			 -ENOENT);
	ck_assert_int_eq(lfs_blockstore_load(NULL, NULL, bs, &car[2], false),
			 0);
	ck_assert_int_eq(get_block(bs, &c[1], 1, 300), -ENOENT);
	ck_assert_int_eq(get_block(bs, &c[2], 2, 300), 0);
	lfs_blockstore_free(bs);
}
END_TEST

/*
 * A CAR named by a loaded one, not here when a miss looked for it, then
 * written by another process (a command-line sync beside a mount): its
 * blocks are found from then on, and those of the CARs it names.
 */
START_TEST(absent_then_here)
{
	struct lfs_cid c[3], car[3];
	write_chain(c, car);
	struct lfs_blockstore *bs;
	char hidden[300];
	snprintf(hidden, sizeof(hidden), "%s.away", car_file(0, &car[1], ""));
	ck_assert_int_eq(rename(car_file(0, &car[1], ""), hidden), 0);
	bs = open_store(0, 0, false);
	ck_assert_int_eq(lfs_blockstore_load(NULL, NULL, bs, &car[2], false),
			 0);
	ck_assert_int_eq(get_block(bs, &c[1], 1, 300), -ENOENT);
	ck_assert_int_eq(get_block(bs, &c[0], 0, 300), -ENOENT);
	ck_assert_int_eq(rename(hidden, car_file(0, &car[1], "")), 0);
	ck_assert_int_eq(get_block(bs, &c[1], 1, 300), 0);
	ck_assert_int_eq(get_block(bs, &c[0], 0, 300), 0);
	lfs_blockstore_free(bs);
}
END_TEST

/*
 * Another process appends to the segment after this one looked for a
 * block everywhere: a miss looks at the segment again before it is final.
 */
START_TEST(appended_after_walk)
{
	struct lfs_blockstore *a = open_store(0, 0, true);
	struct lfs_cid c0 = put_block(a, 0, 300), car0;
	struct lfs_cid e0 = fake_event(0), e1 = fake_event(1);
	struct lfs_car_root r0 = {.head = &e0, .nhead = 1};
	struct lfs_car_root r1 = {.head = &e1, .nhead = 1};
	ck_assert_int_eq(
		lfs_blockstore_append_car(&car0, a, &r0, &c0, 1, NULL, 0, true),
		0);
	struct lfs_blockstore *b = open_store(0, 0, false);
	struct lfs_cid c1 = put_block(b, 1, 300), car1;
	/* Nothing names it yet: a miss walks the whole segment. */
	ck_assert_int_eq(get_block(a, &c1, 1, 300), -ENOENT);
	ck_assert_int_eq(
		lfs_blockstore_append_car(&car1, b, &r1, &c1, 1, NULL, 0, true),
		0);
	ck_assert_int_eq(get_block(a, &c1, 1, 300), 0);
	ck_assert_int_eq(get_block(a, &c0, 0, 300), 0);
	lfs_blockstore_free(b);
	lfs_blockstore_free(a);
}
END_TEST

START_TEST(damaged_files)
{
	struct lfs_blockstore *bs = open_store(0, 0, true);
	struct lfs_cid c[4];
	for (int k = 0; k < 4; k++)
		c[k] = put_block(bs, k, 5000);
	struct lfs_cid car = write_car(bs, NULL, 0, c, 4, 1);
	lfs_blockstore_free(bs);
	char path[256];
	snprintf(path, sizeof(path), "%s", car_file(0, &car, ""));

	/* One flipped byte in the last chunk: authentication fails. */
	corrupt_byte(path, -5);
	bs = open_store(0, 0, false);
	ck_assert_int_eq(lfs_blockstore_verify_car(bs, &car), -EBADMSG);
	ck_assert_int_eq(lfs_blockstore_load(NULL, NULL, bs, &car, false),
			 -EBADMSG);
	ck_assert_int_eq(lfs_blockstore_load(NULL, NULL, bs, &car, true),
			 -EBADMSG);
	ck_assert_int_eq(get_block(bs, &c[0], 0, 5000), -ENOENT);
	lfs_blockstore_free(bs);
	corrupt_byte(path, -5); /* restored */

	/* Loaded, then damaged under the store: reads say so. */
	bs = open_store(0, 1, false);
	ck_assert_int_eq(lfs_blockstore_load(NULL, NULL, bs, &car, false), 0);
	corrupt_byte(path, -5);
	ck_assert_int_eq(get_block(bs, &c[3], 3, 5000), -EBADMSG);
	corrupt_byte(path, -5);
	ck_assert_int_eq(get_block(bs, &c[3], 3, 5000), 0);
	lfs_blockstore_free(bs);
	/* ... or shrunk under it (a new store: nothing cached). */
	bs = open_store(0, 1, false);
	ck_assert_int_eq(lfs_blockstore_load(NULL, NULL, bs, &car, false), 0);
	ck_assert_int_eq(truncate(path, 100), 0);
	ck_assert_int_eq(get_block(bs, &c[3], 3, 5000), -EBADMSG);
	lfs_blockstore_free(bs);

	/* Truncated, empty, or not an envelope at all. */
	bs = open_store(0, 0, false);
	ck_assert_int_eq(lfs_blockstore_load(NULL, NULL, bs, &car, false),
			 -EBADMSG);
	ck_assert_int_eq(truncate(path, 0), 0);
	ck_assert_int_eq(lfs_blockstore_load(NULL, NULL, bs, &car, false),
			 -EBADMSG);
	FILE *f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	fputs("{\"not\": \"a CAR\"}\n", f);
	fclose(f);
	ck_assert_int_eq(lfs_blockstore_load(NULL, NULL, bs, &car, false),
			 -EBADMSG);
	ck_assert_int_eq(lfs_blockstore_verify_car(bs, &car), -EBADMSG);
	lfs_blockstore_free(bs);
}
END_TEST

/* A sealed CAR made by hand: root block bytes, then the given blocks. */
static void seal(struct lfs_buf *out, struct lfs_cid *name,
		 const struct lfs_buf *rootb, bool include_root)
{
	struct lfs_buf plain;
	lfs_buf_init(&plain, 0);
	struct lfs_cid rc;
	lfs_cid_of(&rc, LFS_CODEC_DAG_CBOR, rootb->data, rootb->len);
	ck_assert_int_eq(lfs_car_write_header(&plain, &rc, 1), 0);
	if (include_root)
		ck_assert_int_eq(lfs_car_write_block(&plain, &rc, rootb->data,
						     rootb->len),
				 0);
	lfs_buf_reset(out);
	ck_assert_int_eq(
		lfs_envelope_seal(out, name, key, plain.data, plain.len, 0), 0);
	lfs_buf_release(&plain);
}

static void root_block(struct lfs_buf *b, size_t nhead, uint8_t head_codec)
{
	struct lfs_cid ev;
	lfs_cid_of(&ev, head_codec, "e", 1);
	lfs_buf_reset(b);
	lfs_cbor_put_head(b, 5, 2);
	lfs_cbor_put_string(b, "cars", 4);
	lfs_cbor_put_head(b, 4, 0);
	lfs_cbor_put_string(b, "head", 4);
	lfs_cbor_put_head(b, 4, nhead);
	for (size_t i = 0; i < nhead; i++)
		lfs_cbor_put_link(b, &ev);
}

START_TEST(imports)
{
	struct lfs_blockstore *a = open_store(0, 0, true);
	struct lfs_blockstore *b = open_store(1, 0, true);
	struct lfs_cid c = put_block(a, 7, 2000);
	struct lfs_cid car = write_car(a, NULL, 0, &c, 1, 1);
	uint8_t *sealed;
	size_t len;
	ck_assert_int_eq(lfs_blockstore_read_car(&sealed, &len, a, &car), 0);

	/* Under another name, or one byte off: refused, nothing kept. */
	struct lfs_cid wrong;
	lfs_cid_of(&wrong, LFS_CODEC_RAW, "wrong", 5);
	ck_assert_int_eq(
		lfs_blockstore_import(NULL, NULL, b, &wrong, sealed, len),
		-EBADMSG);
	ck_assert(!lfs_blockstore_has_car(b, &wrong));
	sealed[len - 1] ^= 1;
	ck_assert_int_eq(
		lfs_blockstore_import(NULL, NULL, b, &car, sealed, len),
		-EBADMSG);
	ck_assert(!lfs_blockstore_has_car(b, &car));
	sealed[len - 1] ^= 1;
	ck_assert_int_eq(
		lfs_blockstore_import(NULL, NULL, b, &car, sealed, len - 1),
		-EBADMSG);

	/* Lazy: kept and readable now, durable at the next sync. */
	lfs_blockstore_set_lazy_imports(b, true);
	struct lfs_arena ar;
	lfs_arena_init(&ar, 0);
	struct lfs_car_root root;
	ck_assert_int_eq(
		lfs_blockstore_import(&root, &ar, b, &car, sealed, len), 0);
	ck_assert_uint_eq(root.nhead, 1);
	ck_assert(lfs_blockstore_has_car(b, &car));
	ck_assert_int_eq(get_block(b, &c, 7, 2000), 0);
	ck_assert_int_eq(lfs_blockstore_sync(b), 0);
	ck_assert_int_eq(lfs_blockstore_verify_car(b, &car), 0);
	free(sealed);

	/* Root blocks that are not one: no head, a raw head, none at all. */
	struct lfs_buf rb, s;
	lfs_buf_init(&rb, 0);
	lfs_buf_init(&s, 0);
	struct lfs_cid name;
	root_block(&rb, 0, LFS_CODEC_DAG_CBOR);
	seal(&s, &name, &rb, true);
	ck_assert_int_eq(
		lfs_blockstore_import(NULL, NULL, b, &name, s.data, s.len),
		-EBADMSG);
	root_block(&rb, 1, LFS_CODEC_RAW);
	seal(&s, &name, &rb, true);
	ck_assert_int_eq(
		lfs_blockstore_import(NULL, NULL, b, &name, s.data, s.len),
		-EBADMSG);
	root_block(&rb, 1, LFS_CODEC_DAG_CBOR);
	seal(&s, &name, &rb, false);
	ck_assert_int_eq(
		lfs_blockstore_import(NULL, NULL, b, &name, s.data, s.len),
		-EBADMSG);
	seal(&s, &name, &rb, true);
	ck_assert_int_eq(
		lfs_blockstore_import(NULL, NULL, b, &name, s.data, s.len), 0);
	ck_assert_int_eq(lfs_blockstore_sync(b), 0);
	lfs_buf_release(&rb);
	lfs_buf_release(&s);
	lfs_arena_release(&ar);
	lfs_blockstore_free(a);
	lfs_blockstore_free(b);
}
END_TEST

/* The smallest cache (one chunk): every read still right, in any order. */
START_TEST(small_cache)
{
	struct lfs_blockstore *bs = open_store(0, 1, true);
	enum { N = 120 };
	struct lfs_cid c[N];
	size_t len[N];
	for (int k = 0; k < N; k++) {
		/* Some blocks span chunk boundaries; one spans several. */
		len[k] = k == 60 ? 40000 : 700 + (size_t)(k % 9) * 300;
		c[k] = put_block(bs, k, len[k]);
	}
	write_car(bs, NULL, 0, c, N, 1);
	srand(7);
	for (int i = 0; i < 3 * N; i++) {
		int k = rand() % N;
		ck_assert_int_eq(get_block(bs, &c[k], k, len[k]), 0);
	}
	lfs_blockstore_free(bs);
}
END_TEST

/*
 * The cache holds authenticated plaintext chunks: once read, a chunk is
 * served from memory (damage to the file afterwards is not seen), unless
 * the cache is too small to keep it.
 */
START_TEST(cache_keeps_chunks)
{
	struct lfs_blockstore *bs = open_store(0, 0, true);
	struct lfs_cid c = put_block(bs, 5, 3000);
	struct lfs_cid car = write_car(bs, NULL, 0, &c, 1, 1);
	lfs_blockstore_free(bs);
	char path[256];
	snprintf(path, sizeof(path), "%s", car_file(0, &car, ""));
	for (int small = 0; small < 2; small++) {
		bs = open_store(0, small ? 1 : 0, false);
		ck_assert_int_eq(
			lfs_blockstore_load(NULL, NULL, bs, &car, false), 0);
		ck_assert_int_eq(get_block(bs, &c, 5, 3000), 0);
		corrupt_byte(path, -5);
		ck_assert_int_eq(get_block(bs, &c, 5, 3000),
				 small ? -EBADMSG : 0);
		corrupt_byte(path, -5);
		lfs_blockstore_free(bs);
	}
}
END_TEST

START_TEST(fresh_rewind)
{
	struct lfs_blockstore *bs = open_store(0, 0, true);
	struct lfs_cid a = put_block(bs, 1, 10);
	size_t mark = lfs_blockstore_fresh_mark(bs);
	struct lfs_cid b = put_block(bs, 2, 10);
	ck_assert_int_eq(get_block(bs, &b, 2, 10), 0);
	lfs_blockstore_fresh_rewind(bs, mark);
	ck_assert_int_eq(get_block(bs, &b, 2, 10), -ENOENT);
	ck_assert_int_eq(get_block(bs, &a, 1, 10), 0);
	lfs_blockstore_free(bs);
}
END_TEST

START_TEST(head_records)
{
	struct lfs_blockstore *bs = open_store(0, 0, true);
	struct lfs_cid c = put_block(bs, 1, 10);
	struct lfs_cid car1 = write_car(bs, NULL, 0, &c, 1, 1);
	struct lfs_cid car2 = write_car(bs, &car1, 1, NULL, 0, 2);
	struct lfs_cid car3 = write_car(bs, &car1, 1, NULL, 0, 3);
	ck_assert_int_eq(lfs_blockstore_set_head(bs, &car1, NULL, 0, true), 0);
	struct lfs_cid *h;
	size_t n;
	ck_assert_int_eq(lfs_blockstore_heads(&h, &n, bs), 0);
	ck_assert(n == 1 && lfs_cid_equal(&h[0], &car1));
	free(h);
	/* A record replaces the ones it names as parents. */
	ck_assert_int_eq(lfs_blockstore_set_head(bs, &car2, &car1, 1, false),
			 0);
	ck_assert_int_eq(lfs_blockstore_set_head(bs, &car3, &car1, 1, false),
			 0);
	ck_assert_int_eq(lfs_blockstore_heads(&h, &n, bs), 0);
	ck_assert_uint_eq(n, 2);
	ck_assert(!lfs_cid_equal(&h[0], &car1) && !lfs_cid_equal(&h[1], &car1));
	free(h);
	ck_assert_int_eq(lfs_blockstore_drop_head(bs, &car2), 0);
	ck_assert_int_eq(lfs_blockstore_drop_head(bs, &car2), 0);
	ck_assert_int_eq(lfs_blockstore_heads(&h, &n, bs), 0);
	ck_assert(n == 1 && lfs_cid_equal(&h[0], &car3));
	free(h);
	int64_t stamp;
	ck_assert_int_eq(lfs_blockstore_heads_stamp(bs, &stamp), 0);
	ck_assert_int_eq(lfs_blockstore_sync(bs), 0);

	/* Strangers in the folders are not CARs or records. */
	char p[256];
	snprintf(p, sizeof(p), "%s/head/.tmp-junk", store_dir(0));
	FILE *f = fopen(p, "w");
	ck_assert_ptr_nonnull(f);
	fclose(f);
	snprintf(p, sizeof(p), "%s/car/README", store_dir(0));
	ck_assert_ptr_nonnull(f = fopen(p, "w"));
	fclose(f);
	ck_assert_int_eq(lfs_blockstore_heads(&h, &n, bs), 0);
	ck_assert_uint_eq(n, 1);
	free(h);
	ck_assert_int_eq(lfs_blockstore_list_cars(&h, &n, bs), 0);
	ck_assert_uint_eq(n, 3);
	free(h);
	lfs_blockstore_free(bs);
}
END_TEST

START_TEST(compaction)
{
	struct lfs_blockstore *bs = open_store(0, 0, true);
	struct lfs_cid c[6], car[3];
	for (int i = 0; i < 3; i++) {
		c[2 * i] = put_block(bs, 2 * i, 900);
		c[2 * i + 1] = put_block(bs, 2 * i + 1, 900);
		car[i] = write_car(bs, i ? &car[i - 1] : NULL, i ? 1 : 0,
				   &c[2 * i], 2, i);
	}
	struct lfs_cid head = fake_event(9), compact;
	struct lfs_car_root root = {.head = &head, .nhead = 1};
	ck_assert_int_eq(
		lfs_blockstore_write_compact(&compact, bs, &root, c, 6), 0);
	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(lfs_blockstore_remove_car(bs, &car[i]), 0);
	for (int k = 0; k < 6; k++) {
		struct lfs_cid where;
		ck_assert_int_eq(lfs_blockstore_car_of(&where, bs, &c[k]), 0);
		ck_assert(lfs_cid_equal(&where, &compact));
		ck_assert_int_eq(get_block(bs, &c[k], k, 900), 0);
	}
	lfs_blockstore_free(bs);
	bs = open_store(0, 0, false);
	ck_assert_int_eq(lfs_blockstore_load(NULL, NULL, bs, &compact, false),
			 0);
	for (int k = 0; k < 6; k++)
		ck_assert_int_eq(get_block(bs, &c[k], k, 900), 0);
	lfs_blockstore_free(bs);
}
END_TEST

/* Close bs at a checkpoint and open store 0 again, its heads read (the
 * segment scanned, its runs opened). */
static struct lfs_blockstore *checkpoint_reopen(struct lfs_blockstore *bs)
{
	ck_assert_int_eq(lfs_blockstore_checkpoint(bs), 0);
	lfs_blockstore_free(bs);
	bs = open_store(0, 0, false);
	struct lfs_cid *heads;
	size_t n;
	ck_assert_int_eq(lfs_blockstore_heads(&heads, &n, bs), 0);
	free(heads);
	return bs;
}

/* A CAR of 4 MiB or more gets a sidecar index; a damaged one is ignored. */
/*
 * Runs: a reopened store finds the blocks of covered records without
 * loading them, and still finds a block that a covered record holds but
 * that is known in another file (the run lists it there), which only the
 * records' roots name.
 */
START_TEST(runs)
{
	struct lfs_blockstore *bs = open_store(0, 0, true);
	struct lfs_cid shared = put_block(bs, 1, 100);
	struct lfs_cid prev = write_car(bs, NULL, 0, &shared, 1, 1);
	struct lfs_cid blocks[100];
	for (int r = 0; r < 100; r++) {
		blocks[r] = put_block(bs, 1000 + r, 200 + r);
		struct lfs_cid list[2] = {blocks[r], shared};
		struct lfs_cid head = fake_event(100 + r), car;
		struct lfs_car_root root = {
			.cars = &prev, .ncars = 1, .head = &head, .nhead = 1};
		ck_assert_int_eq(lfs_blockstore_append_car(
					 &car, bs, &root, list, r == 50 ? 2 : 1,
					 &prev, 1, false),
				 0);
		prev = car;
	}
	bs = checkpoint_reopen(bs);
	struct lfs_blockstore_stats st;
	lfs_blockstore_stats(bs, &st);
	ck_assert_uint_eq(st.records, 100);
	ck_assert_uint_eq(st.indexed, 100);
	ck_assert_uint_eq(st.runs, 1);
	for (int r = 0; r < 100; r++)
		ck_assert_int_eq(get_block(bs, &blocks[r], 1000 + r, 200 + r),
				 0);
	lfs_blockstore_stats(bs, &st);
	ck_assert_uint_eq(st.loaded, 0);
	ck_assert_uint_eq(st.locations, 0);
	/* Found by loading the records' roots back to the file. */
	ck_assert_int_eq(get_block(bs, &shared, 1, 100), 0);
	lfs_blockstore_free(bs);
}
END_TEST

/* Block k of many, each its own (block_bytes repeats after 256). */
static void unique_bytes(uint8_t b[16], int k)
{
	memset(b, 0x5a, 16);
	memcpy(b, &k, sizeof(k));
}

static struct lfs_cid put_unique(struct lfs_blockstore *bs, int k)
{
	uint8_t b[16];
	unique_bytes(b, k);
	struct lfs_cid cid;
	lfs_cid_of(&cid, LFS_CODEC_RAW, b, sizeof(b));
	struct lfs_blocks blocks = lfs_blockstore_blocks(bs);
	ck_assert_int_eq(lfs_blocks_put(&blocks, &cid, b, sizeof(b)), 0);
	return cid;
}

static void get_unique(struct lfs_blockstore *bs, const struct lfs_cid *cid,
		       int k)
{
	uint8_t want[16];
	unique_bytes(want, k);
	struct lfs_buf got;
	lfs_buf_init(&got, 0);
	struct lfs_blocks blocks = lfs_blockstore_blocks(bs);
	ck_assert_int_eq(lfs_blocks_get(&blocks, &got, cid), 0);
	ck_assert_uint_eq(got.len, sizeof(want));
	ck_assert_mem_eq(got.data, want, sizeof(want));
	lfs_buf_release(&got);
}

/*
 * Commits of many blocks each get runs before RUN_RECORDS of them: the
 * location table never holds much more than RUN_LOCATIONS (262,144)
 * blocks of the segment, and every block is still found, in this
 * process and the next.
 */
START_TEST(runs_by_locations)
{
	enum { PER = 4096, CARS = 72, LOCATIONS = 262144 };
	struct lfs_blockstore *bs = open_store(0, 0, true);
	struct lfs_cid *blocks = malloc(PER * CARS * sizeof(*blocks));
	ck_assert_ptr_nonnull(blocks);
	struct lfs_cid prev = {0};
	size_t most = 0;
	for (int r = 0; r < CARS; r++) {
		for (int k = 0; k < PER; k++)
			blocks[r * PER + k] = put_unique(bs, r * PER + k);
		struct lfs_cid head = fake_event(r), car;
		struct lfs_car_root root = {.cars = &prev,
					    .ncars = r ? 1 : 0,
					    .head = &head,
					    .nhead = 1};
		ck_assert_int_eq(lfs_blockstore_append_car(
					 &car, bs, &root, blocks + r * PER, PER,
					 r ? &prev : NULL, r ? 1 : 0, false),
				 0);
		prev = car;
		struct lfs_blockstore_stats st;
		lfs_blockstore_stats(bs, &st);
		if (st.locations > most)
			most = st.locations;
	}
	struct lfs_blockstore_stats st;
	lfs_blockstore_stats(bs, &st);
	ck_assert_uint_ge(st.runs, 1);
	ck_assert_uint_le(most, LOCATIONS + PER);
	for (int k = 0; k < PER * CARS; k += 97)
		get_unique(bs, &blocks[k], k);
	bs = checkpoint_reopen(bs);
	for (int k = 0; k < PER * CARS; k += 97)
		get_unique(bs, &blocks[k], k);
	lfs_blockstore_stats(bs, &st);
	ck_assert_uint_eq(st.records, CARS);
	/* The runs written on the way cover the first 64 records; the 8
	 * after them are fewer than a checkpoint covers, and load. */
	ck_assert_uint_ge(st.indexed, LOCATIONS / PER);
	ck_assert_uint_le(st.loaded, CARS - st.indexed);
	lfs_blockstore_free(bs);
	free(blocks);
}
END_TEST

START_TEST(sidecar)
{
	struct lfs_blockstore *bs = open_store(0, 0, true);
	enum { N = 80, LEN = 64 << 10 };
	struct lfs_cid c[N];
	for (int k = 0; k < N; k++)
		c[k] = put_block(bs, k, LEN);
	struct lfs_cid car = write_car(bs, NULL, 0, c, N, 1);
	lfs_blockstore_free(bs);
	char idx[256];
	snprintf(idx, sizeof(idx), "%s", car_file(0, &car, ".idx"));
	struct stat st;
	ck_assert_int_eq(stat(idx, &st), 0);

	for (int round = 0; round < 3; round++) {
		if (round == 1)
			corrupt_byte(idx, 20); /* the MAC no longer matches */
		if (round == 2) {
			ck_assert_int_eq(truncate(idx, 30), 0);
		}
		bs = open_store(0, 1, false);
		struct lfs_arena a;
		lfs_arena_init(&a, 0);
		struct lfs_car_root root;
		ck_assert_int_eq(
			lfs_blockstore_load(&root, &a, bs, &car, false), 0);
		ck_assert_uint_eq(root.nhead, 1);
		for (int k = 0; k < N; k += 7) {
			ck_assert(lfs_blockstore_persisted(bs, &c[k]));
			ck_assert_int_eq(get_block(bs, &c[k], k, LEN), 0);
		}
		lfs_arena_release(&a);
		lfs_blockstore_free(bs);
	}
}
END_TEST

/* The offset of the first copy of bytes p (n of them) in the file at path. */
static long file_find(const char *path, const void *p, size_t n)
{
	struct lfs_buf b;
	lfs_buf_init(&b, 0);
	FILE *f = fopen(path, "rb");
	ck_assert_ptr_nonnull(f);
	int c;
	while ((c = fgetc(f)) != EOF)
		lfs_buf_append_byte(&b, (uint8_t)c);
	fclose(f);
	long at = -1;
	for (size_t i = 0; at < 0 && i + n <= b.len; i++)
		if (!memcmp(b.data + i, p, n))
			at = (long)i;
	lfs_buf_release(&b);
	return at;
}

static void copy_file(const char *from, const char *to)
{
	uint8_t *data;
	size_t len;
	ck_assert_int_eq(lfs_read_file(from, 1 << 24, &data, &len), 0);
	ck_assert_int_eq(lfs_write_atomic(to, data, len, 0600, false), 0);
	free(data);
}

/* Six commits to store i's segment, an intent after the third and the
 * fifth, the first folded; a checkpoint. Their CARs in cars, the
 * intent left in *kept. */
static void resume_segment(int i, struct lfs_cid *blocks, struct lfs_cid *cars,
			   struct lfs_bs_intent *kept)
{
	struct lfs_blockstore *bs = open_store(i, 0, true);
	struct lfs_cid prev;
	struct lfs_bs_intent folded;
	for (int r = 0; r < 6; r++) {
		blocks[r] = put_block(bs, 100 * i + r, 300 + r);
		struct lfs_cid head = fake_event(100 * i + r), car;
		struct lfs_car_root root = {.cars = r ? &prev : NULL,
					    .ncars = r ? 1 : 0,
					    .head = &head,
					    .nhead = 1};
		ck_assert_int_eq(lfs_blockstore_append_car(
					 &car, bs, &root, &blocks[r], 1,
					 r ? &prev : NULL, r ? 1 : 0, false),
				 0);
		prev = cars[r] = car;
		if (r == 2 || r == 4) {
			char text[32];
			snprintf(text, sizeof(text), "intent %d", r);
			ck_assert_int_eq(lfs_blockstore_append_intent(
						 bs, (const uint8_t *)text,
						 strlen(text),
						 r == 2 ? &folded : kept),
					 0);
		}
	}
	ck_assert_int_eq(lfs_blockstore_fold_mark(bs, folded.off), 0);
	ck_assert_int_eq(lfs_blockstore_checkpoint(bs), 0);
	lfs_blockstore_free(bs);
}

/*
 * The resume point a checkpoint leaves: the next open's scan starts there
 * and finds what a scan from the start finds (the commits, the head, the
 * intent no fold covers). One that no longer matches its segment is
 * ignored and the segment read from the start: its MAC fails, it is
 * another segment's, or a record it names is damaged (skipped, as a scan
 * from the start skips it).
 */
START_TEST(resume_point)
{
	struct lfs_cid blocks[6], cars[6], other[6], other_cars[6];
	struct lfs_bs_intent kept, other_kept;
	resume_segment(0, blocks, cars, &kept);
	resume_segment(1, other, other_cars, &other_kept);
	char res[256], saved[256], seg[256];
	snprintf(res, sizeof(res), "%s/runs/resume", store_dir(0));
	snprintf(saved, sizeof(saved), "%s/resume.saved", tmpdir);
	snprintf(seg, sizeof(seg), "%s/segment", store_dir(0));
	copy_file(res, saved);
	for (int round = 0; round < 4; round++) {
		copy_file(saved, res);
		if (round == 1)
			corrupt_byte(res, 30); /* its MAC fails */
		if (round == 2) {
			char theirs[256];
			snprintf(theirs, sizeof(theirs), "%s/runs/resume",
				 store_dir(1));
			copy_file(theirs, res);
		}
		if (round == 3) {
			/* The fourth commit's header (its "synced" field,
			 * just before its CID). */
			uint8_t b[LFS_CID_BYTES];
			lfs_cid_to_bytes(b, &cars[3]);
			long at = file_find(seg, b, sizeof(b));
			ck_assert_int_gt(at, 8);
			corrupt_byte(seg, at - 8);
		}
		struct lfs_blockstore *bs = open_store(0, 0, false);
		struct lfs_cid *h;
		size_t n;
		ck_assert_int_eq(lfs_blockstore_heads(&h, &n, bs), 0);
		ck_assert_uint_eq(n, 1);
		ck_assert(lfs_cid_equal(&h[0], &cars[5]));
		free(h);
		struct lfs_blockstore_stats st;
		lfs_blockstore_stats(bs, &st);
		ck_assert_uint_eq(st.records, round == 3 ? 5 : 6);
		if (round == 0)
			ck_assert_uint_gt(st.resumed, 8);
		else
			ck_assert_uint_eq(st.resumed, 0);
		struct lfs_bs_intent *its;
		ck_assert_int_eq(lfs_blockstore_intents(&its, &n, bs), 0);
		ck_assert_uint_eq(n, 1);
		ck_assert(lfs_cid_equal(&its[0].cid, &kept.cid));
		struct lfs_buf text;
		lfs_buf_init(&text, 0);
		ck_assert_int_eq(lfs_blockstore_read_intent(&text, bs, &its[0]),
				 0);
		ck_assert_uint_eq(text.len, 8);
		ck_assert_mem_eq(text.data, "intent 4", 8);
		lfs_buf_release(&text);
		free(its);
		for (int r = 0; r < 6; r++) {
			if (round == 3 && r == 3)
				ck_assert_int_ne(
					get_block(bs, &blocks[r], r, 300 + r),
					0);
			else
				ck_assert_int_eq(
					get_block(bs, &blocks[r], r, 300 + r),
					0);
		}
		lfs_blockstore_free(bs);
	}
}
END_TEST

int main(void)
{
	if (sodium_init() < 0)
		return 1;
	memset(key, 0x42, sizeof(key));
	Suite *s = suite_create("blockstore");
	TCase *t = tcase_create("core");
	tcase_set_timeout(t, 300);
	tcase_add_checked_fixture(t, setup, teardown);
	tcase_add_test(t, put_get_write_reopen);
	tcase_add_test(t, lazy_chain);
	tcase_add_test(t, absent_then_here);
	tcase_add_test(t, appended_after_walk);
	tcase_add_test(t, damaged_files);
	tcase_add_test(t, imports);
	tcase_add_test(t, small_cache);
	tcase_add_test(t, cache_keeps_chunks);
	tcase_add_test(t, fresh_rewind);
	tcase_add_test(t, head_records);
	tcase_add_test(t, compaction);
	tcase_add_test(t, sidecar);
	tcase_add_test(t, runs);
	tcase_add_test(t, runs_by_locations);
	tcase_add_test(t, resume_point);
	suite_add_tcase(s, t);
	return lfs_check_run(s);
}
