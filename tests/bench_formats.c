/*
 * bench_formats: throughput of the byte-level formats, beside the physical
 * limits measured in the same run (sha256 and the raw AEAD), and a verdict
 * on the targets:
 *
 *   - DAG-CBOR decode of typical documents >= 200 MB/s;
 *   - envelope seal and open within 1.3x the time of raw XChaCha20-Poly1305
 *     plus sha256 over the same bytes (what sealing and naming must cost).
 *
 * "Typical documents" are ~1 KiB JSON objects (strings, ints, floats, nested
 * arrays and objects), built from a fixed seed so runs are comparable. Every
 * figure is the median of 5 runs timed with CLOCK_MONOTONIC (the envelope
 * and its raw baseline alternately, so their ratio compares like with like);
 * MB is 10^6 bytes. Exits 0 when every figure was measured (targets are
 * reported, not enforced), 1 when an operation failed.
 *
 *   tests/bench_formats [-n DOCS]
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <sodium.h>

#include "arena.h"
#include "buf.h"
#include "car.h"
#include "cbor.h"
#include "cid.h"
#include "dagjson.h"
#include "envelope.h"

#include "bench_util.h"

#define RUNS            5
#define BIG_LEN         ((size_t)16 << 20) /* 16 MiB */
#define AEAD_CHUNK      ((size_t)64 << 10) /* 64 KiB */
#define CAR_BLOCK       1024
#define TARGET_DECODE   200.0 /* MB/s */
#define TARGET_ENVELOPE 1.3   /* x raw AEAD + sha256 */

static _Noreturn void die(const char *what, int rc)
{
	fprintf(stderr, "bench_formats: %s failed: %s\n", what,
		rc < 0 ? strerror(-rc) : "unexpected result");
	exit(1);
}

/* Time fn(ctx) RUNS times; return the median in seconds. */
static double timeit(void (*fn)(void *), void *ctx)
{
	double t[RUNS];
	for (int i = 0; i < RUNS; i++) {
		double t0 = lfs_bench_now();
		fn(ctx);
		t[i] = lfs_bench_now() - t0;
	}
	return lfs_bench_median(t, RUNS);
}

/*
 * Time fa and fb alternately, RUNS times each, so that both medians come
 * from the same stretch of time: a ratio of two figures is then not skewed
 * by whatever else the machine was doing during one of them.
 */
static void timeit_pair(double *out_a, double *out_b, void (*fa)(void *),
			void (*fb)(void *), void *ctx)
{
	double ta[RUNS], tb[RUNS];
	for (int i = 0; i < RUNS; i++) {
		double t0 = lfs_bench_now();
		fa(ctx);
		double t1 = lfs_bench_now();
		fb(ctx);
		ta[i] = t1 - t0;
		tb[i] = lfs_bench_now() - t1;
	}
	*out_a = lfs_bench_median(ta, RUNS);
	*out_b = lfs_bench_median(tb, RUNS);
}

static void row(const char *what, size_t bytes, double secs)
{
	printf("  %-44s %9.1f MB %10.1f MB/s\n", what, (double)bytes / 1e6,
	       (double)bytes / 1e6 / secs);
}

/* ---- typical documents ---- */

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rng(void)
{
	/* xorshift64*: deterministic across runs and machines */
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 0x2545f4914f6cdd1dull;
}

static json_t *random_text(size_t min, size_t max)
{
	static const char *const words[] = {
		"milk",         "ledger",      "invoice",
		"paid",         "shipped",     "alice",
		"bob",          "carol",       "meeting",
		"tomorrow",     "caf\xc3\xa9", "r\xc3\xa9sum\xc3\xa9",
		"\xe6\xb0\xb4", "total",       "note",
		"draft",        "reviewed",    "the",
		"and",          "of"};
	size_t want = min + rng() % (max - min + 1);
	char buf[1024];
	size_t n = 0;
	while (n < want && n < sizeof(buf) - 32) {
		const char *w = words[rng() % (sizeof(words) / sizeof(*words))];
		if (n)
			buf[n++] = ' ';
		memcpy(buf + n, w, strlen(w));
		n += strlen(w);
	}
	return json_stringn(buf, n);
}

static json_t *typical_doc(size_t i)
{
	char id[32];
	snprintf(id, sizeof(id), "doc-%06zu", i);
	json_t *tags = json_array();
	for (int k = 0; k < 5; k++)
		json_array_append_new(tags, random_text(3, 12));
	json_t *history = json_array();
	for (int k = 0; k < 4; k++)
		json_array_append_new(
			history,
			json_pack("{s:I,s:o,s:f,s:b}", "at",
				  (json_int_t)(1700000000 + rng() % 10000000),
				  "by", random_text(4, 10), "delta",
				  (double)(rng() % 100000) / 100.0, "ok",
				  (int)(rng() & 1)));
	json_t *scores = json_array();
	for (int k = 0; k < 8; k++)
		json_array_append_new(
			scores,
			k & 1 ? json_integer((json_int_t)(rng() % 1000))
			      : json_real((double)(rng() % 1000000) / 1000.0));
	return json_pack("{s:s,s:o,s:o,s:I,s:f,s:b,s:o,s:o,s:o,s:{s:I,s:{s:o,s:"
			 "s},s:[b,b,n]}"
			 "}",
			 "_id", id, "title", random_text(20, 60), "body",
			 random_text(250, 400), "count",
			 (json_int_t)(rng() % 100000), "price",
			 (double)(rng() % 100000) / 100.0, "done",
			 (int)(rng() & 1), "tags", tags, "history", history,
			 "scores", scores, "meta", "created",
			 (json_int_t)(1600000000 + rng() % 100000000), "author",
			 "name", random_text(5, 15), "email",
			 "someone@example.com", "flags", 1, 0);
}

struct docs {
	size_t n;
	struct lfs_arena arena; /* the CBOR trees */
	struct lfs_cbor **trees;
	uint8_t **blocks; /* encoded */
	size_t *lens;
	size_t json_bytes, cbor_bytes;
	struct lfs_buf scratch;
};

static void build_docs(struct docs *d, size_t n)
{
	memset(d, 0, sizeof(*d));
	d->n = n;
	lfs_arena_init(&d->arena, 0);
	lfs_buf_init(&d->scratch, 0);
	d->trees = calloc(n, sizeof(*d->trees));
	d->blocks = calloc(n, sizeof(*d->blocks));
	d->lens = calloc(n, sizeof(*d->lens));
	if (!d->trees || !d->blocks || !d->lens)
		die("allocating documents", -ENOMEM);
	for (size_t i = 0; i < n; i++) {
		json_t *j = typical_doc(i);
		if (!j)
			die("building a document", -ENOMEM);
		char *text = json_dumps(j, JSON_COMPACT);
		d->json_bytes += strlen(text);
		free(text);
		int rc = lfs_dagjson_to_cbor(&d->trees[i], &d->arena, j);
		if (rc)
			die("lfs_dagjson_to_cbor", rc);
		struct lfs_buf b;
		lfs_buf_init(&b, 0);
		if ((rc = lfs_cbor_encode(&b, d->trees[i])))
			die("lfs_cbor_encode", rc);
		d->blocks[i] = lfs_buf_steal(&b, &d->lens[i]);
		d->cbor_bytes += d->lens[i];
		json_decref(j);
	}
}

static void free_docs(struct docs *d)
{
	for (size_t i = 0; i < d->n; i++)
		free(d->blocks[i]);
	free(d->blocks);
	free(d->lens);
	free(d->trees);
	lfs_buf_release(&d->scratch);
	lfs_arena_release(&d->arena);
}

static void run_cbor_encode(void *ctx)
{
	struct docs *d = ctx;
	for (size_t i = 0; i < d->n; i++) {
		lfs_buf_reset(&d->scratch);
		int rc = lfs_cbor_encode(&d->scratch, d->trees[i]);
		if (rc || d->scratch.len != d->lens[i])
			die("lfs_cbor_encode", rc);
	}
}

static void run_cbor_decode(void *ctx)
{
	struct docs *d = ctx;
	struct lfs_arena a;
	lfs_arena_init(&a, 0);
	for (size_t i = 0; i < d->n; i++) {
		struct lfs_cbor *v;
		int rc = lfs_cbor_decode(&v, &a, d->blocks[i], d->lens[i]);
		if (rc)
			die("lfs_cbor_decode", rc);
		/* one arena per document, as a reader would use it */
		lfs_arena_release(&a);
	}
}

static void run_doc_to_json(void *ctx)
{
	struct docs *d = ctx;
	struct lfs_arena a;
	lfs_arena_init(&a, 0);
	for (size_t i = 0; i < d->n; i++) {
		struct lfs_cbor *v;
		json_t *j = NULL;
		int rc = lfs_cbor_decode(&v, &a, d->blocks[i], d->lens[i]);
		if (!rc)
			rc = lfs_dagjson_from_cbor(&j, v);
		if (rc)
			die("decode + lfs_dagjson_from_cbor", rc);
		lfs_buf_reset(&d->scratch);
		if ((rc = lfs_dagjson_dump(&d->scratch, j)))
			die("lfs_dagjson_dump", rc);
		json_decref(j);
		lfs_arena_release(&a);
	}
}

/* ---- bulk data: hash, AEAD, envelope, CAR ---- */

struct bulk {
	uint8_t key[LFS_KEY_BYTES];
	uint8_t *plain;
	size_t len;
	uint8_t *sealed; /* raw AEAD output, chunk by chunk */
	size_t sealed_len;
	uint8_t digest[crypto_hash_sha256_BYTES];
	struct lfs_buf env; /* envelope_seal output */
	struct lfs_cid env_cid;
	struct lfs_buf out; /* envelope_open output */
	struct lfs_buf car;
	size_t car_blocks;
};

static void run_sha256(void *ctx)
{
	struct bulk *b = ctx;
	crypto_hash_sha256(b->digest, b->plain, b->len);
}

static void raw_encrypt(struct bulk *b)
{
	uint8_t nonce[crypto_aead_xchacha20poly1305_ietf_NPUBBYTES] = {0};
	size_t off = 0, o = 0;
	uint64_t i = 0;
	while (off < b->len) {
		size_t n =
			b->len - off < AEAD_CHUNK ? b->len - off : AEAD_CHUNK;
		unsigned long long clen;
		memcpy(nonce, &i, sizeof(i));
		crypto_aead_xchacha20poly1305_ietf_encrypt(
			b->sealed + o, &clen, b->plain + off, n, NULL, 0, NULL,
			nonce, b->key);
		o += (size_t)clen;
		off += n;
		i++;
	}
	b->sealed_len = o;
}

static void raw_decrypt(struct bulk *b)
{
	uint8_t nonce[crypto_aead_xchacha20poly1305_ietf_NPUBBYTES] = {0};
	size_t off = 0, o = 0;
	uint64_t i = 0;
	const size_t sealed_chunk =
		AEAD_CHUNK + crypto_aead_xchacha20poly1305_ietf_ABYTES;
	while (off < b->sealed_len) {
		size_t n = b->sealed_len - off < sealed_chunk
				   ? b->sealed_len - off
				   : sealed_chunk;
		unsigned long long plen;
		memcpy(nonce, &i, sizeof(i));
		if (crypto_aead_xchacha20poly1305_ietf_decrypt(
			    b->plain + o, &plen, NULL, b->sealed + off, n, NULL,
			    0, nonce, b->key))
			die("raw AEAD decrypt", -EBADMSG);
		o += (size_t)plen;
		off += n;
		i++;
	}
}

static void run_aead_encrypt(void *ctx)
{
	raw_encrypt(ctx);
}

static void run_aead_decrypt(void *ctx)
{
	raw_decrypt(ctx);
}

/* What sealing must at least cost: encrypt, then hash the result. */
static void run_aead_hash_seal(void *ctx)
{
	struct bulk *b = ctx;
	raw_encrypt(b);
	crypto_hash_sha256(b->digest, b->sealed, b->sealed_len);
}

/* What opening a named file must at least cost: hash, then decrypt. */
static void run_aead_hash_open(void *ctx)
{
	struct bulk *b = ctx;
	crypto_hash_sha256(b->digest, b->sealed, b->sealed_len);
	raw_decrypt(b);
}

static void run_envelope_seal(void *ctx)
{
	struct bulk *b = ctx;
	lfs_buf_reset(&b->env);
	int rc = lfs_envelope_seal(&b->env, &b->env_cid, b->key, b->plain,
				   b->len, 0);
	if (rc)
		die("lfs_envelope_seal", rc);
}

static void run_envelope_open(void *ctx)
{
	struct bulk *b = ctx;
	lfs_buf_reset(&b->out);
	int rc = lfs_envelope_open(&b->out, b->key, b->env.data, b->env.len,
				   &b->env_cid);
	if (rc || b->out.len != b->len)
		die("lfs_envelope_open", rc);
}

static void run_car_write(void *ctx)
{
	struct bulk *b = ctx;
	struct lfs_cid root;
	lfs_cid_of(&root, LFS_CODEC_RAW, b->plain, CAR_BLOCK);
	lfs_buf_reset(&b->car);
	int rc = lfs_car_write_header(&b->car, &root, 1);
	for (size_t off = 0; !rc && off + CAR_BLOCK <= b->len;
	     off += CAR_BLOCK) {
		struct lfs_cid c;
		rc = lfs_car_put_block(&b->car, &c, LFS_CODEC_RAW,
				       b->plain + off, CAR_BLOCK);
	}
	if (rc)
		die("lfs_car_put_block", rc);
}

static void run_car_read(void *ctx)
{
	struct bulk *b = ctx;
	struct lfs_car_reader r;
	int rc = lfs_car_reader_init(&r, b->car.data, b->car.len);
	if (rc)
		die("lfs_car_reader_init", rc);
	size_t n = 0;
	struct lfs_cid c;
	const uint8_t *data;
	size_t len;
	while ((rc = lfs_car_reader_next(&r, &c, &data, &len)) == 1)
		n++;
	lfs_car_reader_release(&r);
	if (rc < 0 || n != b->car_blocks)
		die("lfs_car_reader_next", rc);
}

static void verdict(const char *what, bool met, const char *fmt, double x)
{
	printf("  %-52s ", what);
	printf(fmt, x);
	printf("  %s\n", met ? "met" : "NOT MET");
}

int main(int argc, char **argv)
{
	size_t ndocs = 4000;
	if (argc == 3 && strcmp(argv[1], "-n") == 0) {
		ndocs = strtoul(argv[2], NULL, 10);
	} else if (argc != 1) {
		fprintf(stderr, "usage: %s [-n DOCS]\n", argv[0]);
		return 2;
	}
	if (ndocs == 0)
		ndocs = 1;
	if (sodium_init() < 0) {
		fprintf(stderr, "bench_formats: sodium_init failed\n");
		return 1;
	}

	struct docs d;
	build_docs(&d, ndocs);
	printf("ledgerfs format benchmarks: median of %d runs, MB = 10^6 "
	       "bytes\n\n",
	       RUNS);
	printf("typical documents: %zu, %.0f bytes of JSON and %.0f of "
	       "DAG-CBOR each on average\n",
	       d.n, (double)d.json_bytes / (double)d.n,
	       (double)d.cbor_bytes / (double)d.n);
	double t_enc = timeit(run_cbor_encode, &d);
	double t_dec = timeit(run_cbor_decode, &d);
	double t_show = timeit(run_doc_to_json, &d);
	row("dag-cbor encode (tree -> bytes)", d.cbor_bytes, t_enc);
	row("dag-cbor decode (bytes -> tree)", d.cbor_bytes, t_dec);
	row("decode + to JSON + print (per CBOR byte)", d.cbor_bytes, t_show);

	struct bulk b;
	memset(&b, 0, sizeof(b));
	b.len = BIG_LEN;
	b.plain = malloc(b.len);
	b.sealed =
		malloc(b.len + (b.len / AEAD_CHUNK +
				1) * crypto_aead_xchacha20poly1305_ietf_ABYTES);
	if (!b.plain || !b.sealed)
		die("allocating 16 MiB", -ENOMEM);
	randombytes_buf(b.key, sizeof(b.key));
	/* compressible-looking but not constant: the documents, repeated */
	for (size_t off = 0, i = 0; off < b.len; i++) {
		size_t k = i % d.n;
		size_t n = d.lens[k] < b.len - off ? d.lens[k] : b.len - off;
		memcpy(b.plain + off, d.blocks[k], n);
		off += n;
	}
	lfs_buf_init(&b.env, (size_t)64 << 20);
	lfs_buf_init(&b.out, (size_t)64 << 20);
	lfs_buf_init(&b.car, (size_t)64 << 20);
	b.car_blocks = b.len / CAR_BLOCK;

	printf("\nbulk data: %zu MiB\n", b.len >> 20);
	double t_sha = timeit(run_sha256, &b);
	double t_enc_raw = timeit(run_aead_encrypt, &b);
	double t_dec_raw = timeit(run_aead_decrypt, &b);
	double t_seal_raw, t_seal, t_open_raw, t_open;
	timeit_pair(&t_seal_raw, &t_seal, run_aead_hash_seal, run_envelope_seal,
		    &b);
	timeit_pair(&t_open_raw, &t_open, run_aead_hash_open, run_envelope_open,
		    &b);
	if (memcmp(b.out.data, b.plain, b.len) != 0)
		die("envelope round trip", -EBADMSG);
	row("sha256 (libsodium)", b.len, t_sha);
	row("raw xchacha20poly1305 encrypt, 64 KiB chunks", b.len, t_enc_raw);
	row("raw xchacha20poly1305 decrypt, 64 KiB chunks", b.len, t_dec_raw);
	row("raw AEAD encrypt + sha256 of the result", b.len, t_seal_raw);
	row("raw sha256 + AEAD decrypt", b.len, t_open_raw);
	row("envelope seal (+ CID)", b.len, t_seal);
	row("envelope open (+ CID check)", b.len, t_open);

	double t_car_w = timeit(run_car_write, &b);
	double t_car_r = timeit(run_car_read, &b);
	printf("\nCAR: %zu blocks of %d bytes, %.1f MB\n", b.car_blocks,
	       CAR_BLOCK, (double)b.car.len / 1e6);
	row("CAR write (hash + sections)", b.car.len, t_car_w);
	row("CAR read + verify every block", b.car.len, t_car_r);

	double dec_mbs = (double)d.cbor_bytes / 1e6 / t_dec;
	double seal_ratio = t_seal / t_seal_raw;
	double open_ratio = t_open / t_open_raw;
	printf("\ntargets:\n");
	verdict("dag-cbor decode of typical documents >= 200 MB/s",
		dec_mbs >= TARGET_DECODE, "%7.1f MB/s", dec_mbs);
	verdict("envelope seal <= 1.3x raw AEAD + sha256",
		seal_ratio <= TARGET_ENVELOPE, "%7.2fx    ", seal_ratio);
	verdict("envelope open <= 1.3x raw sha256 + AEAD",
		open_ratio <= TARGET_ENVELOPE, "%7.2fx    ", open_ratio);

	lfs_buf_release(&b.car);
	lfs_buf_release(&b.out);
	lfs_buf_release(&b.env);
	free(b.sealed);
	free(b.plain);
	free_docs(&d);
	return 0;
}
