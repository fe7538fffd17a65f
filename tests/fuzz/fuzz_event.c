/*
 * libFuzzer target for the clock event decoder (lfs_event_decode), which
 * reads event blocks out of CAR files from other replicas.
 *
 * Only -EBADMSG may come back. What decodes obeys every rule of clock.h
 * (t in [0, 2^53], parents dag-cbor links sorted and unique, ops sorted by
 * id and unique, ids of 1..1024 bytes with no NUL, a writer of at most 64
 * bytes) and, since the decoder accepts only the canonical form, encodes
 * back to the same bytes.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "arena.h"
#include "buf.h"
#include "clock.h"
#include "index.h"

#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int id_cmp(const struct lfs_op *a, const struct lfs_op *b)
{
	int c = memcmp(a->id, b->id,
		       a->id_len < b->id_len ? a->id_len : b->id_len);
	return c ? c : (a->id_len > b->id_len) - (a->id_len < b->id_len);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct lfs_arena a;
	lfs_arena_init(&a, 0);
	struct lfs_event ev;
	int rc = lfs_event_decode(&ev, &a, data, size);
	CHECK(rc == 0 || rc == -EBADMSG);
	if (rc == 0) {
		CHECK(ev.t >= 0 && ev.t <= LFS_CLOCK_T_MAX);
		CHECK(strlen(ev.writer) <= LFS_WRITER_MAX);
		CHECK(ev.root.codec == LFS_CODEC_DAG_CBOR);
		for (size_t i = 0; i < ev.nparents; i++) {
			CHECK(ev.parents[i].codec == LFS_CODEC_DAG_CBOR);
			CHECK(!i || lfs_cid_cmp(&ev.parents[i - 1],
						&ev.parents[i]) < 0);
		}
		for (size_t i = 0; i < ev.nops; i++) {
			const struct lfs_op *o = &ev.ops[i];
			CHECK(o->id_len > 0 && o->id_len <= LFS_INDEX_ID_MAX);
			CHECK(strlen(o->id) == o->id_len);
			CHECK(o->del || o->doc.codec == LFS_CODEC_DAG_CBOR);
			CHECK(!i || id_cmp(&ev.ops[i - 1], o) < 0);
		}
		struct lfs_buf again;
		lfs_buf_init(&again, 0);
		CHECK(lfs_event_encode(&again, &ev) == 0);
		CHECK(again.len == size && !memcmp(again.data, data, size));
		lfs_buf_release(&again);
	}
	lfs_arena_release(&a);
	return 0;
}
