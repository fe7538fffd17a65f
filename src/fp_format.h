/*
 * fp_format: decoders for Fireproof 0.24's blocks and pointer file.
 *
 * Pure functions over bytes, no I/O: what a car holds (docs/FIREPROOF.md,
 * "Blocks") and what meta/main.json says. A writer (a later step) will
 * add the matching encoders here.
 *
 *   meta/main.json   [{"cid": C, "parents": [C...], "data": "M<base64>"}]
 *                    data = DAG-CBOR {data: {dbMeta: bytes}, parents: [..]}
 *                    dbMeta = DAG-JSON {"cars": [{"/": car}...]}
 *   header           {fp: {cars: [[car...]...], compact: [[car...]...],
 *                    meta: {head: [event...]}}}
 *   clock event      {data: {type: "put", key, value, root}, parents}
 *                    or {data: {type: "batch", ops: [{type: "put", key,
 *                    value}...], root}, parents}
 *   pail v1 shard    {prefix, entries: [[suffix, value] | [suffix,
 *                    [child]] | [suffix, [child, value]]...], version: 1,
 *                    keyChars, maxKeySize}
 *   value            {doc: {...}} or {del: true}
 *
 * Decoded trees live in the caller's arena. Every decoder is strict about
 * the shape it needs and ignores keys it does not use (later versions may
 * add some). Errors: -EBADMSG for bytes that are not that kind of block;
 * -EAGAIN (meta only) for text that is not complete JSON — a file being
 * rewritten, worth reading again; -EFBIG over a limit; -ENOMEM.
 */
#ifndef LFS_FP_FORMAT_H
#define LFS_FP_FORMAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "arena.h"
#include "cbor.h"
#include "cid.h"

#define LFS_FP_META_MAX ((size_t)1 << 20) /* meta/main.json */
#define LFS_FP_GENESIS_KEY                                                     \
	"baembeiarootfireproofgenesisblockaaaafireproofgenesisblocka"

struct lfs_fp_meta {
	struct lfs_cid event; /* the meta event's CID, as the file says */
	struct lfs_cid *cars; /* the newest commit's car files, first: header */
	size_t ncars;
};

/*
 * Parse meta/main.json. Exactly one element is used (Fireproof writes one;
 * with several, the last is taken, as Fireproof applies them in order).
 * The element's "cid" must be the CID of its decoded data.
 */
int lfs_fp_meta_parse(struct lfs_fp_meta *out, struct lfs_arena *a,
		      const char *text, size_t len);

struct lfs_fp_header {
	struct lfs_cid *cars; /* every car of the log, newest group first */
	size_t ncars;
	struct lfs_cid *compact; /* cars a compaction replaced (may be gone) */
	size_t ncompact;
	struct lfs_cid *head; /* the clock head after this commit */
	size_t nhead;
};

int lfs_fp_header_decode(struct lfs_fp_header *out, struct lfs_arena *a,
			 const uint8_t *p, size_t len);

struct lfs_fp_op {
	const char *key; /* NUL-terminated (keys hold no NUL) */
	size_t key_len;
	struct lfs_cid value;
};

struct lfs_fp_event {
	struct lfs_cid *parents;
	size_t nparents;
	bool batch;          /* type "batch" (else "put") */
	struct lfs_cid root; /* the pail root after this event */
	struct lfs_fp_op *ops;
	size_t nops;
};

int lfs_fp_event_decode(struct lfs_fp_event *out, struct lfs_arena *a,
			const uint8_t *p, size_t len);

struct lfs_fp_entry {
	const char *suffix; /* full key = shard prefix + suffix */
	size_t suffix_len;
	bool has_value, has_child;
	struct lfs_cid value, child;
};

struct lfs_fp_shard {
	const char *prefix;
	size_t prefix_len;
	struct lfs_fp_entry *entries;
	size_t n;
};

int lfs_fp_shard_decode(struct lfs_fp_shard *out, struct lfs_arena *a,
			const uint8_t *p, size_t len);

/*
 * A value block: *out_doc is the document map (NULL for a delete). The
 * document is kept as Fireproof stored it, "_id" included.
 */
int lfs_fp_value_decode(const struct lfs_cbor **out_doc, struct lfs_arena *a,
			const uint8_t *p, size_t len);

#endif
