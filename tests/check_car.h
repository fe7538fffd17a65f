/*
 * A fixture the ledger-level Check suites share: a sealed CAR as a replica
 * would send it, holding a root block {cars: [], head: [event]} and the
 * event's block (when its bytes are given). Needs car.h, cbor.h and
 * envelope.h (libledgerfs) and Check.
 */
#ifndef LFS_CHECK_CAR_H
#define LFS_CHECK_CAR_H

#include <check.h>

#include "buf.h"
#include "car.h"
#include "cbor.h"
#include "cid.h"
#include "envelope.h"

/* Seal into out (named *name) under key k a CAR for event; evbytes NULL
 * leaves the event's block out (a CAR whose event is missing). */
static inline void
lfs_check_seal_event_car(struct lfs_buf *out, struct lfs_cid *name,
			 const uint8_t *k, const struct lfs_cid *event,
			 const uint8_t *evbytes, size_t evlen)
{
	struct lfs_buf rb, plain;
	lfs_buf_init(&rb, 0);
	lfs_buf_init(&plain, 0);
	lfs_cbor_put_head(&rb, 5, 2);
	lfs_cbor_put_string(&rb, "cars", 4);
	lfs_cbor_put_head(&rb, 4, 0);
	lfs_cbor_put_string(&rb, "head", 4);
	lfs_cbor_put_head(&rb, 4, 1);
	lfs_cbor_put_link(&rb, event);
	struct lfs_cid rc;
	lfs_cid_of(&rc, LFS_CODEC_DAG_CBOR, rb.data, rb.len);
	ck_assert_int_eq(lfs_car_write_header(&plain, &rc, 1), 0);
	ck_assert_int_eq(lfs_car_write_block(&plain, &rc, rb.data, rb.len), 0);
	if (evbytes)
		ck_assert_int_eq(
			lfs_car_write_block(&plain, event, evbytes, evlen), 0);
	lfs_buf_reset(out);
	ck_assert_int_eq(
		lfs_envelope_seal(out, name, k, plain.data, plain.len, 0), 0);
	lfs_buf_release(&rb);
	lfs_buf_release(&plain);
}

#endif
