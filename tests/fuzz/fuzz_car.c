/*
 * libFuzzer target for the CAR reader.
 *
 * Reads the input to its end. A strict reader with a canonical writer must
 * round-trip: the reader accepts only minimal varints, a canonical
 * {"roots": [links], "version": 1} header with nothing else, 36-byte CIDv1
 * sha2-256 CIDs and sections that end exactly at the end of the input, and
 * each of those has exactly one encoding, which is what the writer emits.
 * So any input read cleanly to its end is re-written byte for byte.
 * lfs_car_verify() must agree with the reader on the result and the count.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "buf.h"
#include "car.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int ready;
	if (!ready) {
		if (sodium_init() < 0)
			abort();
		ready = 1;
	}

	struct lfs_car_reader r;
	struct lfs_buf out;
	size_t count = 0;
	int rc = lfs_car_reader_init(&r, data, size);
	lfs_buf_init(&out, 0);
	if (rc == 0 && lfs_car_write_header(&out, r.roots, r.nroots) != 0)
		abort();
	if (rc == 0) {
		struct lfs_cid cid;
		const uint8_t *block;
		size_t len;
		while ((rc = lfs_car_reader_next(&r, &cid, &block, &len)) ==
		       1) {
			if (block < data || len > size ||
			    block + len > data + size)
				abort();
			if (lfs_car_write_block(&out, &cid, block, len) != 0)
				abort();
			count++;
		}
		/* Sticky: a failed or finished reader stays so. */
		struct lfs_cid c2;
		const uint8_t *b2;
		size_t l2;
		if (lfs_car_reader_next(&r, &c2, &b2, &l2) != rc)
			abort();
		lfs_car_reader_release(&r);
	}
	if (rc > 0 || (rc < 0 && rc != -EBADMSG && rc != -EPROTONOSUPPORT &&
		       rc != -EFBIG))
		abort();

	size_t vcount;
	if (lfs_car_verify(&vcount, data, size) != rc || vcount != count)
		abort();

	if (rc == 0 && (out.len != size || memcmp(out.data, data, size) != 0))
		abort();
	lfs_buf_release(&out);
	return 0;
}
