/*
 * `ledgerfs car`: build, inspect, check, seal and open CAR files from the
 * command line. Used by people debugging a store and by the interop tests,
 * which compare what this prints and writes with the reference
 * implementations.
 *
 * Every input file is read whole into memory under a cap (INPUT_MAX); every
 * output file is written to a temporary file beside it and renamed into
 * place, so an interrupted or failed command never leaves a partial file
 * under the final name.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "cmd.h"
#include "cli.h"
#include "errmsg.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>
#include <sodium.h>

#include "arena.h"
#include "buf.h"
#include "car.h"
#include "cbor.h"
#include "cid.h"
#include "dagjson.h"
#include "envelope.h"
#include "varint.h"
#include "fileio.h"
#include "hex.h"
#include "optscan.h"

#define INPUT_MAX      ((size_t)256 << 20)
#define INPUT_MAX_TEXT "256 MiB"
/* A sealed file is its plaintext plus a small per-chunk overhead. */
#define SEALED_MAX  (INPUT_MAX + (INPUT_MAX >> 4))
#define KEYFILE_MAX 4096

enum {
	OPT_JSON = 1 << 0,
	OPT_ROOT = 1 << 1,
	OPT_KEY = 1 << 2,
	OPT_RAW = 1 << 3,
};

struct opts {
	bool help;
	bool json;
	bool raw;
	const char *key;
	const char **roots; /* --root values, as given */
	size_t nroots;
	char **pos; /* positional arguments */
	size_t npos;
};

struct sub {
	const char *name;
	int (*run)(const struct lfs_cli *s, struct opts *o);
	unsigned opts;
	size_t min_pos, max_pos; /* max_pos 0: unlimited */
	const char *args;
	const char *summary;
	const char *help;
};

static const char *codec_name(uint8_t codec)
{
	switch (codec) {
	case LFS_CODEC_RAW:
		return "raw";
	case LFS_CODEC_DAG_CBOR:
		return "dag-cbor";
	default:
		return "unknown";
	}
}

/* ---- files ---- */

/*
 * Read a whole file into out (initialised here, released by the caller).
 * Returns 0, -EFBIG over max, or a negative errno.
 */
static int read_file(struct lfs_buf *out, const char *path, size_t max)
{
	lfs_buf_init(out, max);
	uint8_t *p;
	size_t len;
	int rc = lfs_read_file(path, max, &p, &len);
	if (!rc) {
		out->data = p;
		out->len = len;
		out->cap = len + 1;
	}
	return rc;
}

static void report_read_error(const struct lfs_cli *s, const char *path,
			      int err, size_t max, const char *what)
{
	if (err == -EFBIG)
		lfs_cli_fail(s,
			     "'%s' is too large (over %zu MiB); a %s ledgerfs "
			     "handles "
			     "is smaller than that",
			     path, max >> 20, what);
	else
		lfs_cli_fail(s, "cannot read '%s': %s", path, strerror(-err));
}

static mode_t default_mode(void)
{
	mode_t mask = umask(0);
	umask(mask);
	return 0666 & ~mask;
}

static int write_output(const struct lfs_cli *s, const char *path,
			const void *p, size_t len, mode_t mode)
{
	int rc = lfs_write_atomic(path, p, len, mode, true);
	if (rc) {
		lfs_cli_fail(s, "cannot write '%s': %s (nothing was written)",
			     path, strerror(-rc));
		return LFS_EXIT_FAIL;
	}
	return LFS_EXIT_OK;
}

/* ---- keys ---- */

static bool all_hex(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (lfs_hex_value(p[i]) < 0)
			return false;
	return true;
}

/*
 * A key file holds the 32 key bytes, raw, or as 64 hex digits (optionally
 * followed by a newline, as `car keygen` writes it).
 */
static int load_key(const struct lfs_cli *s, uint8_t key[LFS_KEY_BYTES],
		    const char *path)
{
	struct lfs_buf b;
	int rc = read_file(&b, path, KEYFILE_MAX);
	int ret = LFS_EXIT_FAIL;
	if (rc == -EFBIG) {
		lfs_cli_fail(
			s,
			"key file '%s' is too large: a key file holds 32 raw "
			"bytes or 64 hex characters (make one with 'ledgerfs "
			"car "
			"keygen FILE')",
			path);
		goto out;
	}
	if (rc) {
		lfs_cli_fail(s, "cannot read key file '%s': %s", path,
			     strerror(-rc));
		goto out;
	}
	size_t n = b.len;
	if (n == LFS_KEY_BYTES && !all_hex(b.data, n)) {
		memcpy(key, b.data, LFS_KEY_BYTES);
		ret = LFS_EXIT_OK;
		goto out;
	}
	while (n && (b.data[n - 1] == '\n' || b.data[n - 1] == '\r' ||
		     b.data[n - 1] == ' ' || b.data[n - 1] == '\t'))
		n--;
	if (n == 2 * LFS_KEY_BYTES && all_hex(b.data, n)) {
		for (size_t i = 0; i < LFS_KEY_BYTES; i++)
			key[i] = (uint8_t)(lfs_hex_value(b.data[2 * i]) << 4 |
					   lfs_hex_value(b.data[2 * i + 1]));
		ret = LFS_EXIT_OK;
		goto out;
	}
	if (n == LFS_KEY_BYTES)
		lfs_cli_fail(
			s,
			"key file '%s' holds 32 hex characters (a 16-byte "
			"key); a "
			"ledgerfs key is 32 bytes: 32 raw bytes or 64 hex "
			"characters (make one with 'ledgerfs car keygen FILE')",
			path);
	else
		lfs_cli_fail(s,
			     "key file '%s' holds %zu bytes, which is neither "
			     "32 raw "
			     "bytes nor 64 hex characters (make a key with "
			     "'ledgerfs "
			     "car keygen FILE')",
			     path, b.len);
out:
	if (b.data)
		sodium_memzero(b.data, b.cap);
	lfs_buf_release(&b);
	return ret;
}

/* ---- reading CARs, with messages that say where and why ---- */

static void header_reason(char *out, size_t size, const uint8_t *p, size_t len,
			  int err)
{
	if (len == 0) {
		snprintf(out, size, "the file is empty");
		return;
	}
	switch (-err) {
	case EPROTONOSUPPORT:
		snprintf(out, size,
			 "unsupported format/CID kind: ledgerfs reads CARv1 "
			 "files whose CIDs are CIDv1 sha2-256 raw or dag-cbor "
			 "(this may be a CARv2 file, or a UnixFS/dag-pb CAR "
			 "such as 'ipfs-car pack' makes)");
		return;
	case EFBIG:
		snprintf(out, size,
			 "header too large (over %zu bytes or more than %d "
			 "roots)",
			 LFS_CAR_MAX_HEADER, LFS_CAR_MAX_ROOTS);
		return;
	case EBADMSG: {
		uint64_t hlen;
		int n = lfs_varint_decode(&hlen, p, len);
		if (n > 0 && hlen > len - (size_t)n)
			snprintf(out, size,
				 "truncated: header claims %" PRIu64
				 " bytes but only %zu follow",
				 hlen, len - (size_t)n);
		else
			snprintf(out, size,
				 "not a CARv1 header (corrupt or not a CAR "
				 "file)");
		return;
	}
	default:
		snprintf(out, size, "%s", lfs_errmsg(err));
	}
}

/*
 * Explain why the section at pos failed to read; the reader only says
 * -EBADMSG for both a hash mismatch and a truncation.
 */
static void section_reason(char *out, size_t size, const uint8_t *p, size_t len,
			   size_t pos, int err)
{
	uint64_t slen;
	size_t left = len - pos;
	int n = lfs_varint_decode(&slen, p + pos, left);
	if (n < 0) {
		snprintf(out, size,
			 left < LFS_VARINT_MAX
				 ? "truncated or corrupt section length"
				 : "corrupt section length");
		return;
	}
	if (slen == 0) {
		snprintf(out, size, "empty section (corrupt)");
		return;
	}
	if (slen > LFS_CAR_MAX_SECTION) {
		snprintf(out, size,
			 "section of %" PRIu64 " bytes is over the %zu-byte "
			 "limit (too large or corrupt)",
			 slen, LFS_CAR_MAX_SECTION);
		return;
	}
	if (slen > left - (size_t)n) {
		snprintf(out, size,
			 "truncated: section claims %" PRIu64
			 " bytes but only %zu remain",
			 slen, left - (size_t)n);
		return;
	}
	struct lfs_cid cid;
	int c = lfs_cid_from_bytes(&cid, p + pos + n, (size_t)slen);
	if (c == -EPROTONOSUPPORT) {
		snprintf(out, size,
			 "unsupported format/CID kind: the block's CID is not "
			 "a CIDv1 sha2-256 raw or dag-cbor CID (dag-pb/UnixFS "
			 "blocks are not supported)");
		return;
	}
	if (c < 0) {
		snprintf(out, size, "malformed CID (corrupt)");
		return;
	}
	if (!lfs_cid_matches(&cid, p + pos + n + c, (size_t)slen - c)) {
		char s[LFS_CID_STRLEN + 1];
		lfs_cid_to_string(s, &cid);
		snprintf(out, size,
			 "block bytes do not hash to its CID %s (corrupt or "
			 "not authentic)",
			 s);
		return;
	}
	snprintf(out, size, "%s", lfs_errmsg(err));
}

static void report_car_error(const struct lfs_cli *s, const char *path,
			     const uint8_t *p, size_t len, bool header,
			     size_t index, size_t pos, int err)
{
	char why[512];
	if (header) {
		header_reason(why, sizeof(why), p, len, err);
		lfs_cli_fail(s, "'%s': CAR header: %s", path, why);
	} else {
		section_reason(why, sizeof(why), p, len, pos, err);
		lfs_cli_fail(s,
			     "'%s': block %zu (section at byte offset %zu): %s",
			     path, index, pos, why);
	}
	if (err == -EBADMSG)
		fprintf(stderr,
			"The file is damaged or not a CAR file; fetch it "
			"again or restore it from another copy.\n");
}

/*
 * Open a CAR read into memory; on failure report it and return LFS_EXIT_FAIL.
 */
static int open_car(const struct lfs_cli *s, struct lfs_car_reader *r,
		    const char *path, const uint8_t *p, size_t len)
{
	int rc = lfs_car_reader_init(r, p, len);
	if (rc) {
		report_car_error(s, path, p, len, true, 0, 0, rc);
		return LFS_EXIT_FAIL;
	}
	return LFS_EXIT_OK;
}

/*
 * Read the next block; 1 with a block, 0 at the end, or LFS_EXIT_FAIL negated
 * (-1) after reporting an error. *index counts blocks from 1.
 */
static int next_block(const struct lfs_cli *s, struct lfs_car_reader *r,
		      const char *path, size_t *index, struct lfs_cid *cid,
		      const uint8_t **data, size_t *len)
{
	size_t pos = r->pos;
	int rc = lfs_car_reader_next(r, cid, data, len);
	if (rc < 0) {
		report_car_error(s, path, r->p, r->len, false, *index + 1, pos,
				 rc);
		return -1;
	}
	if (rc == 1)
		++*index;
	return rc;
}

static int read_car_file(const struct lfs_cli *s, struct lfs_buf *b,
			 const char *path)
{
	int rc = read_file(b, path, INPUT_MAX);
	if (rc) {
		report_read_error(s, path, rc, INPUT_MAX, "CAR file");
		return LFS_EXIT_FAIL;
	}
	return LFS_EXIT_OK;
}

/*
 * Read a whole CAR, checking every block; LFS_EXIT_OK with the block count in
 * *out_blocks, or LFS_EXIT_FAIL after reporting where and why it failed.
 */
static int check_car(const struct lfs_cli *s, const char *path,
		     const uint8_t *p, size_t len, size_t *out_blocks)
{
	struct lfs_car_reader r;
	size_t index = 0;
	struct lfs_cid cid;
	const uint8_t *data;
	size_t dlen;
	int rc;
	if (open_car(s, &r, path, p, len))
		return LFS_EXIT_FAIL;
	while ((rc = next_block(s, &r, path, &index, &cid, &data, &dlen)) == 1)
		;
	lfs_car_reader_release(&r);
	*out_blocks = index;
	return rc < 0 ? LFS_EXIT_FAIL : LFS_EXIT_OK;
}

/* ---- pack ---- */

static int pack_json_block(const struct lfs_cli *s, struct lfs_buf *out,
			   const char *path, const struct lfs_buf *in)
{
	json_error_t jerr;
	json_t *j = json_loadb(
		(const char *)(in->data ? in->data : (uint8_t *)""), in->len,
		JSON_DECODE_ANY | JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL,
		&jerr);
	if (!j) {
		lfs_cli_fail(s,
			     "'%s' is not valid JSON: line %d, column %d: %s",
			     path, jerr.line, jerr.column, jerr.text);
		return LFS_EXIT_FAIL;
	}
	struct lfs_arena a;
	struct lfs_cbor *v;
	lfs_arena_init(&a, 0);
	int rc = lfs_dagjson_to_cbor(&v, &a, j);
	if (!rc)
		rc = lfs_cbor_encode(out, v);
	lfs_arena_release(&a);
	json_decref(j);
	if (rc == -EINVAL)
		lfs_cli_fail(s,
			     "'%s' holds JSON that DAG-CBOR cannot store (a "
			     "non-finite "
			     "number, invalid UTF-8 or nesting deeper than %d)",
			     path, LFS_CBOR_MAX_DEPTH);
	else if (rc == -EFBIG)
		lfs_cli_fail(
			s,
			"'%s': the encoded block is too large (over %zu MiB)",
			path, LFS_CAR_MAX_SECTION >> 20);
	else if (rc)
		lfs_cli_fail(s, "cannot encode '%s': %s", path, lfs_errmsg(rc));
	return rc ? LFS_EXIT_FAIL : LFS_EXIT_OK;
}

static int run_pack(const struct lfs_cli *s, struct opts *o)
{
	const char *out_path = o->pos[0];
	char **files = o->pos + 1;
	size_t nfiles = o->npos - 1;
	size_t *root_idx = calloc(o->nroots ? o->nroots : 1, sizeof(size_t));
	struct lfs_buf *blocks = calloc(nfiles, sizeof(*blocks));
	struct lfs_cid *cids = calloc(nfiles, sizeof(*cids));
	struct lfs_cid *roots = calloc(nfiles, sizeof(*roots));
	struct lfs_buf car;
	int ret = LFS_EXIT_FAIL;

	lfs_buf_init(&car, INPUT_MAX);
	if (!root_idx || !blocks || !cids || !roots) {
		lfs_cli_fail(s, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < o->nroots; i++) {
		char *end;
		errno = 0;
		unsigned long long v = strtoull(o->roots[i], &end, 10);
		if (errno || end == o->roots[i] || *end || v < 1 ||
		    v > nfiles || o->roots[i][0] == '-') {
			ret = lfs_cli_usage_error(
				s,
				"--root %s: expected a file number "
				"from 1 to %zu",
				o->roots[i], nfiles);
			goto out;
		}
		root_idx[i] = (size_t)v - 1;
	}

	size_t total = 0;
	for (size_t i = 0; i < nfiles; i++) {
		struct lfs_buf in;
		int rc = read_file(&in, files[i], INPUT_MAX);
		if (rc) {
			report_read_error(s, files[i], rc, INPUT_MAX,
					  "block file");
			lfs_buf_release(&in);
			goto out;
		}
		if (o->json) {
			lfs_buf_init(&blocks[i], LFS_CAR_MAX_SECTION);
			rc = pack_json_block(s, &blocks[i], files[i], &in);
			lfs_buf_release(&in);
			if (rc)
				goto out;
		} else {
			blocks[i] = in;
		}
		if (blocks[i].len > LFS_CAR_MAX_SECTION - LFS_CID_BYTES) {
			lfs_cli_fail(s,
				     "'%s' is too large for one block (%zu "
				     "bytes; the "
				     "limit is %zu)",
				     files[i], blocks[i].len,
				     LFS_CAR_MAX_SECTION - LFS_CID_BYTES);
			goto out;
		}
		total += blocks[i].len;
		if (total > INPUT_MAX - (size_t)nfiles * 64) {
			lfs_cli_fail(s,
				     "the CAR would be too large (over %s); "
				     "pack fewer "
				     "files",
				     INPUT_MAX_TEXT);
			goto out;
		}
		lfs_cid_of(&cids[i],
			   o->json ? LFS_CODEC_DAG_CBOR : LFS_CODEC_RAW,
			   blocks[i].data ? blocks[i].data : (uint8_t *)"",
			   blocks[i].len);
	}

	/* Roots and blocks, each CID once, in the order first given. */
	size_t nr = 0;
	size_t nsel = o->nroots ? o->nroots : nfiles;
	for (size_t k = 0; k < nsel; k++) {
		const struct lfs_cid *c = &cids[o->nroots ? root_idx[k] : k];
		bool dup = false;
		for (size_t j = 0; j < nr && !dup; j++)
			dup = lfs_cid_equal(&roots[j], c);
		if (!dup)
			roots[nr++] = *c;
	}
	int rc = lfs_car_write_header(&car, roots, nr);
	for (size_t i = 0; i < nfiles && !rc; i++) {
		bool dup = false;
		for (size_t j = 0; j < i && !dup; j++)
			dup = lfs_cid_equal(&cids[j], &cids[i]);
		if (!dup)
			rc = lfs_car_write_block(&car, &cids[i], blocks[i].data,
						 blocks[i].len);
	}
	if (rc) {
		lfs_cli_fail(s, "cannot build the CAR: %s", lfs_errmsg(rc));
		goto out;
	}
	if ((ret = write_output(s, out_path, car.data, car.len,
				default_mode())))
		goto out;
	for (size_t i = 0; i < nfiles; i++) {
		char str[LFS_CID_STRLEN + 1];
		lfs_cid_to_string(str, &cids[i]);
		printf("%s\n", str);
	}
	ret = lfs_cli_finish_output(s, LFS_EXIT_OK);
out:
	for (size_t i = 0; blocks && i < nfiles; i++)
		lfs_buf_release(&blocks[i]);
	free(blocks);
	free(cids);
	free(roots);
	free(root_idx);
	lfs_buf_release(&car);
	return ret;
}

/* ---- ls ---- */

static int run_ls(const struct lfs_cli *s, struct opts *o)
{
	const char *path = o->pos[0];
	struct lfs_buf b;
	struct lfs_car_reader r = {0};
	json_t *jroots = NULL, *jblocks = NULL;
	struct lfs_buf text;
	int ret;
	char str[LFS_CID_STRLEN + 1];

	lfs_buf_init(&text, 0);
	if ((ret = read_car_file(s, &b, path)) ||
	    (ret = open_car(s, &r, path, b.data, b.len)))
		goto out;
	ret = LFS_EXIT_FAIL;
	if (o->json && (!(jroots = json_array()) || !(jblocks = json_array())))
		goto oom;
	for (size_t i = 0; i < r.nroots; i++) {
		lfs_cid_to_string(str, &r.roots[i]);
		if (!o->json)
			printf("root %s\n", str);
		else if (json_array_append_new(jroots, json_string(str)))
			goto oom;
	}
	size_t index = 0;
	struct lfs_cid cid;
	const uint8_t *data;
	size_t len;
	int rc;
	while ((rc = next_block(s, &r, path, &index, &cid, &data, &len)) == 1) {
		lfs_cid_to_string(str, &cid);
		if (!o->json) {
			printf("%s %s %zu\n", str, codec_name(cid.codec), len);
			continue;
		}
		json_t *jb = json_pack("{s:s,s:s,s:I}", "cid", str, "codec",
				       codec_name(cid.codec), "size",
				       (json_int_t)len);
		if (!jb || json_array_append_new(jblocks, jb))
			goto oom;
	}
	if (rc < 0)
		goto out;
	if (o->json) {
		json_t *top = json_pack("{s:O,s:O}", "roots", jroots, "blocks",
					jblocks);
		if (!top)
			goto oom;
		rc = lfs_dagjson_dump(&text, top);
		json_decref(top);
		if (rc)
			goto oom;
		fwrite(text.data, 1, text.len, stdout);
	}
	ret = lfs_cli_finish_output(s, LFS_EXIT_OK);
	goto out;
oom:
	lfs_cli_fail(s, "out of memory listing '%s'", path);
	ret = LFS_EXIT_FAIL;
out:
	json_decref(jroots);
	json_decref(jblocks);
	lfs_car_reader_release(&r);
	lfs_buf_release(&b);
	lfs_buf_release(&text);
	return ret;
}

/* ---- verify ---- */

static int run_verify(const struct lfs_cli *s, struct opts *o)
{
	const char *path = o->pos[0];
	struct lfs_buf b;
	size_t nblocks;
	int ret = read_car_file(s, &b, path);
	if (!ret)
		ret = check_car(s, path, b.data, b.len, &nblocks);
	if (!ret) {
		printf("ok %zu blocks\n", nblocks);
		ret = lfs_cli_finish_output(s, LFS_EXIT_OK);
	}
	lfs_buf_release(&b);
	return ret;
}

/* ---- cat ---- */

static int cat_dag_cbor(const struct lfs_cli *s, const char *cidstr,
			const uint8_t *data, size_t len)
{
	struct lfs_arena a;
	struct lfs_cbor *v;
	json_t *j = NULL;
	struct lfs_buf text;
	int ret = LFS_EXIT_FAIL;

	lfs_arena_init(&a, 0);
	lfs_buf_init(&text, 0);
	int rc = lfs_cbor_decode(&v, &a, data, len);
	if (rc) {
		lfs_cli_fail(s, "block %s is not valid DAG-CBOR: %s", cidstr,
			     lfs_errmsg(rc));
		goto out;
	}
	rc = lfs_dagjson_from_cbor(&j, v);
	if (rc == -ERANGE) {
		lfs_cli_fail(
			s,
			"block %s holds an integer outside the 64-bit signed "
			"range, which has no JSON form here; use 'ledgerfs car "
			"cat --raw' for its bytes",
			cidstr);
		goto out;
	}
	if (!rc)
		rc = lfs_dagjson_dump(&text, j);
	if (rc) {
		lfs_cli_fail(s, "cannot show block %s as JSON: %s", cidstr,
			     lfs_errmsg(rc));
		goto out;
	}
	fwrite(text.data, 1, text.len, stdout);
	ret = LFS_EXIT_OK;
out:
	json_decref(j);
	lfs_buf_release(&text);
	lfs_arena_release(&a);
	return ret;
}

static int run_cat(const struct lfs_cli *s, struct opts *o)
{
	const char *path = o->pos[0];
	const char *cidstr = o->pos[1];
	struct lfs_cid want;
	int rc = lfs_cid_from_string(&want, cidstr);
	if (rc == -EPROTONOSUPPORT) {
		lfs_cli_fail(
			s,
			"'%s' is not a CID of a kind ledgerfs stores "
			"(unsupported format/CID kind): expected a CIDv1 in "
			"base32 (\"b...\") of a raw or dag-cbor block",
			cidstr);
		return LFS_EXIT_FAIL;
	}
	if (rc)
		return lfs_cli_usage_error(
			s,
			"'%s' is not a CID (expected a CIDv1 in "
			"base32, \"b...\")",
			cidstr);

	struct lfs_buf b;
	struct lfs_car_reader r = {0};
	int ret;
	if ((ret = read_car_file(s, &b, path)) ||
	    (ret = open_car(s, &r, path, b.data, b.len)))
		goto out;
	size_t index = 0;
	struct lfs_cid cid;
	const uint8_t *data, *found = NULL;
	size_t len, found_len = 0;
	/* Read to the end: a damaged CAR is refused as a whole. */
	while ((rc = next_block(s, &r, path, &index, &cid, &data, &len)) == 1) {
		if (!found && lfs_cid_equal(&cid, &want)) {
			found = data;
			found_len = len;
		}
	}
	ret = LFS_EXIT_FAIL;
	if (rc < 0)
		goto out;
	if (!found) {
		lfs_cli_fail(s,
			     "no block %s in '%s' (list its blocks with "
			     "'ledgerfs car "
			     "ls %s')",
			     cidstr, path, path);
		goto out;
	}
	if (want.codec == LFS_CODEC_DAG_CBOR && !o->raw)
		ret = cat_dag_cbor(s, cidstr, found, found_len);
	else
		ret = fwrite(found, 1, found_len, stdout) == found_len
			      ? LFS_EXIT_OK
			      : LFS_EXIT_FAIL;
	ret = lfs_cli_finish_output(s, ret);
out:
	lfs_car_reader_release(&r);
	lfs_buf_release(&b);
	return ret;
}

/* ---- recode ---- */

static size_t first_difference(const uint8_t *a, size_t alen, const uint8_t *b,
			       size_t blen)
{
	size_t i = 0;
	while (i < alen && i < blen && a[i] == b[i])
		i++;
	return i;
}

/* Decode and re-encode one dag-cbor block; LFS_EXIT_FAIL (reported) unless the
 * bytes come back identical. */
static int recode_block(const struct lfs_cli *s, struct lfs_arena *a,
			struct lfs_buf *enc, const char *path, size_t index,
			const char *str, const uint8_t *data, size_t len)
{
	struct lfs_cbor *v;
	struct lfs_arena_mark m = lfs_arena_mark(a);
	lfs_buf_reset(enc);
	int rc = lfs_cbor_decode(&v, a, data, len);
	if (rc) {
		lfs_cli_fail(
			s, "'%s': block %zu (%s) is not canonical DAG-CBOR: %s",
			path, index, str, lfs_errmsg(rc));
		lfs_arena_rewind(a, m);
		return LFS_EXIT_FAIL;
	}
	rc = lfs_cbor_encode(enc, v);
	lfs_arena_rewind(a, m);
	if (rc) {
		lfs_cli_fail(s, "'%s': block %zu (%s): re-encoding failed: %s",
			     path, index, str, lfs_errmsg(rc));
		return LFS_EXIT_FAIL;
	}
	if (enc->len != len || memcmp(enc->data, data, len)) {
		lfs_cli_fail(
			s,
			"'%s': block %zu (%s): re-encoding gives different "
			"bytes "
			"(%zu instead of %zu, first difference at byte %zu)",
			path, index, str, enc->len, len,
			first_difference(enc->data, enc->len, data, len));
		return LFS_EXIT_FAIL;
	}
	return LFS_EXIT_OK;
}

static int run_recode(const struct lfs_cli *s, struct opts *o)
{
	const char *path = o->pos[0];
	const char *out_path = o->pos[1];
	struct lfs_buf b, car, enc;
	struct lfs_car_reader r = {0};
	struct lfs_arena a;
	int ret;

	lfs_buf_init(&car, INPUT_MAX);
	lfs_buf_init(&enc, LFS_CAR_MAX_SECTION);
	lfs_arena_init(&a, 0);
	if ((ret = read_car_file(s, &b, path)) ||
	    (ret = open_car(s, &r, path, b.data, b.len)))
		goto out;
	ret = LFS_EXIT_FAIL;
	int rc = lfs_car_write_header(&car, r.roots, r.nroots);
	if (rc) {
		lfs_cli_fail(s, "cannot re-write the CAR header: %s",
			     lfs_errmsg(rc));
		goto out;
	}
	size_t index = 0;
	struct lfs_cid cid;
	const uint8_t *data;
	size_t len;
	char str[LFS_CID_STRLEN + 1];
	while ((rc = next_block(s, &r, path, &index, &cid, &data, &len))) {
		if (rc < 0)
			goto out;
		lfs_cid_to_string(str, &cid);
		if (cid.codec == LFS_CODEC_DAG_CBOR &&
		    recode_block(s, &a, &enc, path, index, str, data, len))
			goto out;
		rc = lfs_car_write_block(&car, &cid, data, len);
		if (rc) {
			lfs_cli_fail(s, "cannot re-write block %zu (%s): %s",
				     index, str, lfs_errmsg(rc));
			goto out;
		}
	}
	if (car.len != b.len || memcmp(car.data, b.data, b.len)) {
		lfs_cli_fail(
			s,
			"'%s': re-written CAR differs from the input at byte "
			"%zu "
			"(this is a bug in ledgerfs's CAR writer)",
			path,
			first_difference(car.data, car.len, b.data, b.len));
		goto out;
	}
	ret = write_output(s, out_path, car.data, car.len, default_mode());
	if (!ret) {
		printf("ok %zu blocks re-encoded identically\n", index);
		ret = lfs_cli_finish_output(s, LFS_EXIT_OK);
	}
out:
	lfs_car_reader_release(&r);
	lfs_arena_release(&a);
	lfs_buf_release(&enc);
	lfs_buf_release(&car);
	lfs_buf_release(&b);
	return ret;
}

/* ---- seal, open, keygen ---- */

static int run_seal(const struct lfs_cli *s, struct opts *o)
{
	const char *path = o->pos[0];
	const char *dir = o->npos > 1 ? o->pos[1] : ".";
	uint8_t key[LFS_KEY_BYTES];
	struct lfs_buf b, sealed;
	struct lfs_cid cid;
	char str[LFS_CID_STRLEN + 1];
	char *out_path = NULL;
	int ret;

	lfs_buf_init(&b, INPUT_MAX);
	lfs_buf_init(&sealed, SEALED_MAX);
	if ((ret = load_key(s, key, o->key)))
		goto out;
	if ((ret = read_car_file(s, &b, path)))
		goto out;
	ret = LFS_EXIT_FAIL;
	size_t nblocks;
	if (check_car(s, path, b.data, b.len, &nblocks)) {
		fprintf(stderr,
			"Refusing to seal a CAR that does not verify.\n");
		goto out;
	}
	int rc = lfs_envelope_seal(&sealed, &cid, key, b.data, b.len, 0);
	if (rc) {
		lfs_cli_fail(s, "cannot seal '%s': %s", path, lfs_errmsg(rc));
		goto out;
	}
	lfs_cid_to_string(str, &cid);
	size_t n = strlen(dir) + 1 + LFS_CID_STRLEN + 1;
	if (!(out_path = malloc(n))) {
		lfs_cli_fail(s, "out of memory");
		goto out;
	}
	snprintf(out_path, n, "%s%s%s", dir,
		 dir[strlen(dir) - 1] == '/' ? "" : "/", str);
	if ((ret = write_output(s, out_path, sealed.data, sealed.len,
				default_mode())))
		goto out;
	printf("%s\n", str);
	ret = lfs_cli_finish_output(s, LFS_EXIT_OK);
out:
	sodium_memzero(key, sizeof(key));
	free(out_path);
	lfs_buf_release(&b);
	lfs_buf_release(&sealed);
	return ret;
}

static int run_open(const struct lfs_cli *s, struct opts *o)
{
	const char *path = o->pos[0];
	const char *out_path = o->pos[1];
	uint8_t key[LFS_KEY_BYTES];
	struct lfs_buf b, plain;
	int ret;

	lfs_buf_init(&b, SEALED_MAX);
	lfs_buf_init(&plain, INPUT_MAX);
	if ((ret = load_key(s, key, o->key)))
		goto out;
	int rc = read_file(&b, path, SEALED_MAX);
	if (rc) {
		report_read_error(s, path, rc, SEALED_MAX, "sealed file");
		ret = LFS_EXIT_FAIL;
		goto out;
	}
	ret = LFS_EXIT_FAIL;

	const char *base = strrchr(path, '/');
	base = base ? base + 1 : path;
	struct lfs_cid name;
	bool named = lfs_cid_from_string(&name, base) == 0;
	if (named &&
	    !lfs_cid_matches(&name, b.data ? b.data : (uint8_t *)"", b.len)) {
		struct lfs_cid actual;
		char str[LFS_CID_STRLEN + 1];
		lfs_cid_of(&actual, LFS_CODEC_RAW,
			   b.data ? b.data : (uint8_t *)"", b.len);
		lfs_cid_to_string(str, &actual);
		lfs_cli_fail(
			s,
			"'%s': the file's content does not match its name (its "
			"CID is %s): it was renamed, truncated or corrupted; "
			"fetch it again",
			path, str);
		goto out;
	}
	struct lfs_envelope_info info;
	rc = lfs_envelope_parse(&info, b.data ? b.data : (uint8_t *)"", b.len);
	if (rc == -EBADMSG) {
		lfs_cli_fail(s,
			     "'%s' is not a sealed ledgerfs file, or it is "
			     "truncated "
			     "(corrupt or not authentic); 'car open' takes "
			     "what 'car "
			     "seal' writes",
			     path);
		goto out;
	}
	if (!rc)
		rc = lfs_envelope_open(&plain, key,
				       b.data ? b.data : (uint8_t *)"", b.len,
				       named ? &name : NULL);
	if (rc == -EBADMSG) {
		lfs_cli_fail(
			s,
			"cannot open '%s': wrong key, or the file was "
			"truncated "
			"or tampered with (corrupt or not authentic); check "
			"that "
			"'%s' is this ledger's key, or fetch the file again",
			path, o->key);
		goto out;
	}
	if (rc == -EPROTONOSUPPORT) {
		lfs_cli_fail(
			s,
			"cannot open '%s': it was sealed in a newer envelope "
			"format (unsupported format/CID kind); upgrade "
			"ledgerfs",
			path);
		goto out;
	}
	if (rc) {
		lfs_cli_fail(s, "cannot open '%s': %s", path, lfs_errmsg(rc));
		goto out;
	}
	size_t nblocks;
	if (check_car(s, path, plain.data, plain.len, &nblocks)) {
		fprintf(stderr,
			"'%s' decrypted, but what it holds is not a valid CAR; "
			"'%s' was not written.\n",
			path, out_path);
		goto out;
	}
	/* Decrypted data is as private as the key: owner-only. */
	ret = write_output(s, out_path, plain.data, plain.len, 0600);
out:
	sodium_memzero(key, sizeof(key));
	if (plain.data)
		sodium_memzero(plain.data, plain.cap);
	lfs_buf_release(&plain);
	lfs_buf_release(&b);
	return ret;
}

static int run_keygen(const struct lfs_cli *s, struct opts *o)
{
	const char *path = o->pos[0];
	uint8_t key[LFS_KEY_BYTES];
	char hex[2 * LFS_KEY_BYTES + 2];
	int ret = LFS_EXIT_FAIL;

	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0) {
		if (errno == EEXIST)
			lfs_cli_fail(
				s,
				"'%s' already exists; not overwriting it (it "
				"may "
				"hold a key still in use): choose another name",
				path);
		else
			lfs_cli_fail(s, "cannot create '%s': %s", path,
				     strerror(errno));
		return LFS_EXIT_FAIL;
	}
	randombytes_buf(key, sizeof(key));
	sodium_bin2hex(hex, sizeof(hex), key, sizeof(key));
	hex[2 * LFS_KEY_BYTES] = '\n';
	int rc = lfs_write_all(fd, hex, 2 * LFS_KEY_BYTES + 1);
	if (!rc && fsync(fd) < 0)
		rc = -errno;
	if (close(fd) < 0 && !rc)
		rc = -errno;
	if (rc) {
		lfs_cli_fail(s, "cannot write '%s': %s (removed it)", path,
			     strerror(-rc));
		unlink(path);
	} else {
		ret = LFS_EXIT_OK;
	}
	sodium_memzero(key, sizeof(key));
	sodium_memzero(hex, sizeof(hex));
	return ret;
}

/* ---- dispatch ---- */

static const struct sub subs[] = {
	{"pack", run_pack, OPT_JSON | OPT_ROOT, 2, 0,
	 "[--json] [--root N]... OUT.car FILE...",
	 "make a CAR with one block per file",
	 "Make OUT.car with one block per FILE and print each block's CID,\n"
	 "one per line, in the order given.\n"
	 "\n"
	 "  --json     parse each FILE as JSON (DAG-JSON conventions: {\"/\": "
	 "CID}\n"
	 "             is a link, {\"/\": {\"bytes\": BASE64}} a byte string) "
	 "and\n"
	 "             store it as DAG-CBOR; without it each FILE is stored "
	 "as a\n"
	 "             raw block\n"
	 "  --root N   make the block of the Nth FILE (from 1) a root; may be\n"
	 "             repeated. Default: every block is a root.\n"
	 "\n"
	 "Identical blocks are stored once. OUT.car is replaced atomically.\n"},
	{"ls", run_ls, OPT_JSON, 1, 1, "[--json] F.car",
	 "list the roots and blocks of a CAR",
	 "Print \"root CID\" for each root, then \"CID CODEC SIZE\" for each\n"
	 "block. Every block's hash is checked as it is read.\n"
	 "\n"
	 "  --json   print {\"roots\": [CID...], \"blocks\": [{\"cid\": CID,\n"
	 "           \"codec\": \"raw\"|\"dag-cbor\", \"size\": N}...]}\n"},
	{"verify", run_verify, 0, 1, 1, "F.car", "check a CAR's every block",
	 "Check F.car's header and that every block hashes to its CID.\n"
	 "Prints \"ok N blocks\"; otherwise names the failing block (counted\n"
	 "from 1) and its byte offset, says why, and exits with status 1.\n"},
	{"cat", run_cat, OPT_RAW, 2, 2, "[--raw] F.car CID",
	 "print one block of a CAR",
	 "Print the block CID of F.car: a dag-cbor block as pretty JSON\n"
	 "(DAG-JSON conventions), a raw block as its bytes.\n"
	 "\n"
	 "  --raw   print the block's bytes whatever its codec\n"},
	{"recode", run_recode, 0, 2, 2, "F.car OUT.car",
	 "re-encode every block and check the bytes are identical",
	 "Decode every dag-cbor block of F.car and encode it again; fail\n"
	 "(naming the block) unless the bytes are identical. Then write\n"
	 "OUT.car, re-written from the decoded header and blocks, and check\n"
	 "it equals F.car byte for byte.\n"},
	{"seal", run_seal, OPT_KEY, 1, 2, "--key KEYFILE IN.car [OUTDIR]",
	 "encrypt a CAR as ledgerfs stores it",
	 "Check IN.car, encrypt it with the key in KEYFILE and write it as\n"
	 "OUTDIR/CID (default: the current directory), where CID names the\n"
	 "encrypted bytes. Prints the CID.\n"
	 "\n"
	 "KEYFILE holds 32 raw bytes or 64 hex characters ('car keygen').\n"},
	{"open", run_open, OPT_KEY, 2, 2, "--key KEYFILE SEALED OUT.car",
	 "decrypt a sealed CAR",
	 "Decrypt SEALED with the key in KEYFILE, check the result is a valid\n"
	 "CAR and write it to OUT.car (mode 0600). When SEALED's file name is\n"
	 "a CID, the file must match it. On any failure OUT.car is not\n"
	 "created.\n"},
	{"keygen", run_keygen, 0, 1, 1, "KEYFILE", "make a new random key",
	 "Write a new random 32-byte key to KEYFILE as 64 hex characters\n"
	 "(mode 0600). KEYFILE must not exist yet.\n"},
};

#define NSUBS (sizeof(subs) / sizeof(subs[0]))

static void car_usage(FILE *f)
{
	fprintf(f, "usage: ledgerfs car SUBCOMMAND [ARGS...]\n\n"
		   "subcommands:\n");
	for (size_t i = 0; i < NSUBS; i++)
		fprintf(f, "  %-7s %s\n", subs[i].name, subs[i].summary);
	fprintf(f, "\n'ledgerfs car SUBCOMMAND --help' describes each one.\n");
}

static const struct lfs_optname optnames[] = {
	{"--json", OPT_JSON, false},
	{"--raw", OPT_RAW, false},
	{"--root", OPT_ROOT, true},
	{"--key", OPT_KEY, true},
};

static int parse_opts(struct opts *o, const struct sub *sub,
		      const struct lfs_cli *s, int argc, char **argv)
{
	struct lfs_optscan sc;
	lfs_optscan_init(&sc, argc, argv);
	const char *val;
	int k;
	while ((k = lfs_optscan_next(&sc, optnames,
				     sizeof(optnames) / sizeof(optnames[0]),
				     &val)) != LFS_OPT_END) {
		if (k == LFS_OPT_POS) {
			o->pos[o->npos++] = (char *)val;
			continue;
		}
		if (k == LFS_OPT_HELP) {
			o->help = true;
			return 0;
		}
		if (k == LFS_OPT_NOVALUE)
			return lfs_cli_usage_error(s, "%s needs a value", val);
		if (k == LFS_OPT_UNKNOWN || !(sub->opts & optnames[k].flag))
			return lfs_cli_usage_error(s, "unknown option '%s'",
						   sc.arg);
		switch (optnames[k].flag) {
		case OPT_JSON:
			o->json = true;
			break;
		case OPT_RAW:
			o->raw = true;
			break;
		case OPT_ROOT:
			o->roots[o->nroots++] = val;
			break;
		case OPT_KEY:
			if (o->key)
				return lfs_cli_usage_error(s,
							   "--key given twice");
			o->key = val;
			break;
		}
	}
	if (o->npos < sub->min_pos)
		return lfs_cli_usage_error(s, "missing arguments");
	if (sub->max_pos && o->npos > sub->max_pos)
		return lfs_cli_usage_error(s, "too many arguments");
	if ((sub->opts & OPT_KEY) && !o->key)
		return lfs_cli_usage_error(s, "--key KEYFILE is required");
	return 0;
}

int lfs_cmd_car(int argc, char **argv)
{
	if (argc < 2) {
		car_usage(stderr);
		return LFS_EXIT_USAGE;
	}
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") ||
	    !strcmp(argv[1], "help")) {
		car_usage(stdout);
		return LFS_EXIT_OK;
	}
	const struct sub *s = NULL;
	for (size_t i = 0; i < NSUBS; i++)
		if (!strcmp(argv[1], subs[i].name))
			s = &subs[i];
	if (!s) {
		fprintf(stderr, "ledgerfs car: unknown subcommand '%s'\n\n",
			argv[1]);
		car_usage(stderr);
		return LFS_EXIT_USAGE;
	}

	char name[32];
	snprintf(name, sizeof(name), "car %s", s->name);
	struct lfs_cli cli = {.cmd = name, .args = s->args};
	struct opts o = {0};
	o.pos = calloc((size_t)argc, sizeof(*o.pos));
	o.roots = calloc((size_t)argc, sizeof(*o.roots));
	int rc;
	if (!o.pos || !o.roots) {
		fprintf(stderr, "ledgerfs car: out of memory\n");
		rc = LFS_EXIT_FAIL;
	} else if ((rc = parse_opts(&o, s, &cli, argc - 1, argv + 1))) {
		/* usage error already reported */
	} else if (o.help) {
		printf("usage: ledgerfs %s %s\n\n%s", name, s->args, s->help);
		rc = lfs_cli_finish_output(&cli, LFS_EXIT_OK);
	} else {
		rc = s->run(&cli, &o);
	}
	free(o.pos);
	free(o.roots);
	return rc;
}
