#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "car.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "arena.h"
#include "cbor.h"
#include "varint.h"

#define SECTION_MAX_DATA (LFS_CAR_MAX_SECTION - LFS_CID_BYTES)
#define CBOR_MAJ_ARRAY   4
#define CBOR_MAJ_MAP     5

/*
 * Decoding a header takes under 80 bytes of arena per input byte (the worst
 * measured is ~76, arrays of one-element arrays of empty strings); this cap
 * is never reached by a header within LFS_CAR_MAX_HEADER, so -ENOMEM really
 * means memory ran out.
 */
#define HEADER_ARENA_MAX (LFS_CAR_MAX_HEADER * 128)

static bool codec_ok(uint8_t codec)
{
	return codec == LFS_CODEC_RAW || codec == LFS_CODEC_DAG_CBOR;
}

int lfs_car_write_header(struct lfs_buf *out, const struct lfs_cid *roots,
			 size_t nroots)
{
	if (nroots > LFS_CAR_MAX_ROOTS)
		return -EFBIG;
	for (size_t i = 0; i < nroots; i++)
		if (!codec_ok(roots[i].codec))
			return -EINVAL;

	struct lfs_buf h;
	lfs_buf_init(&h, LFS_CAR_MAX_HEADER);
	lfs_cbor_put_head(&h, CBOR_MAJ_MAP, 2);
	lfs_cbor_put_string(&h, "roots", 5);
	lfs_cbor_put_head(&h, CBOR_MAJ_ARRAY, nroots);
	for (size_t i = 0; i < nroots; i++)
		lfs_cbor_put_link(&h, &roots[i]);
	lfs_cbor_put_string(&h, "version", 7);
	int rc = lfs_cbor_put_int(&h, 1);
	if (!rc) {
		uint8_t v[LFS_VARINT_MAX];
		size_t n = lfs_varint_encode(v, h.len);
		rc = lfs_buf_reserve(out, n + h.len);
		if (!rc) {
			lfs_buf_append(out, v, n);
			rc = lfs_buf_append(out, h.data, h.len);
		}
	}
	lfs_buf_release(&h);
	return rc;
}

int lfs_car_write_block(struct lfs_buf *out, const struct lfs_cid *cid,
			const void *data, size_t len)
{
	if (!codec_ok(cid->codec))
		return -EINVAL;
	if (len > SECTION_MAX_DATA)
		return -EFBIG;
	uint8_t v[LFS_VARINT_MAX];
	size_t n = lfs_varint_encode(v, LFS_CID_BYTES + len);
	uint8_t c[LFS_CID_BYTES];
	lfs_cid_to_bytes(c, cid);
	int rc = lfs_buf_reserve(out, n + LFS_CID_BYTES + len);
	if (rc)
		return rc;
	lfs_buf_append(out, v, n);
	lfs_buf_append(out, c, sizeof(c));
	return lfs_buf_append(out, data, len);
}

int lfs_car_put_block(struct lfs_buf *out, struct lfs_cid *out_cid,
		      uint8_t codec, const void *data, size_t len)
{
	struct lfs_cid cid;
	if (!codec_ok(codec))
		return -EINVAL;
	if (len > SECTION_MAX_DATA)
		return -EFBIG;
	lfs_cid_of(&cid, codec, len ? data : "", len);
	int rc = lfs_car_write_block(out, &cid, data, len);
	if (!rc)
		*out_cid = cid;
	return rc;
}

static int parse_header(struct lfs_car_reader *r, const struct lfs_cbor *h)
{
	if (h->type != LFS_CBOR_MAP)
		return -EBADMSG;
	const struct lfs_cbor *version = lfs_cbor_map_get(h, "version");
	const struct lfs_cbor *roots = lfs_cbor_map_get(h, "roots");
	uint64_t v;
	/* Another version (a CARv2 pragma) may have another shape. */
	if (version && version->type == LFS_CBOR_INT &&
	    (version->u.integer.negative || version->u.integer.magnitude != 1))
		return -EPROTONOSUPPORT;
	if (h->u.map.count != 2 || !roots || lfs_cbor_get_uint(&v, version))
		return -EBADMSG;
	if (roots->type != LFS_CBOR_ARRAY)
		return -EBADMSG;
	size_t n = roots->u.array.count;
	if (n > LFS_CAR_MAX_ROOTS)
		return -EFBIG;
	for (size_t i = 0; i < n; i++)
		if (roots->u.array.items[i]->type != LFS_CBOR_LINK)
			return -EBADMSG;
	if (n) {
		r->roots = calloc(n, sizeof(*r->roots));
		if (!r->roots)
			return -ENOMEM;
	}
	for (size_t i = 0; i < n; i++)
		r->roots[i] = roots->u.array.items[i]->u.link;
	r->nroots = n;
	return 0;
}

int lfs_car_reader_init(struct lfs_car_reader *r, const uint8_t *p, size_t len)
{
	memset(r, 0, sizeof(*r));
	uint64_t hlen;
	int n = lfs_varint_decode(&hlen, p, len);
	if (n < 0)
		return n;
	if (hlen > LFS_CAR_MAX_HEADER)
		return -EFBIG;
	if (hlen == 0 || hlen > len - (size_t)n)
		return -EBADMSG;

	struct lfs_arena a;
	struct lfs_cbor *h;
	lfs_arena_init(&a, HEADER_ARENA_MAX);
	int rc = lfs_cbor_decode(&h, &a, p + n, (size_t)hlen);
	if (!rc)
		rc = parse_header(r, h);
	lfs_arena_release(&a);
	if (rc) {
		lfs_car_reader_release(r);
		return rc;
	}
	r->p = p;
	r->len = len;
	r->pos = (size_t)n + (size_t)hlen;
	return 0;
}

static int fail(struct lfs_car_reader *r, int err)
{
	return r->err = err;
}

int lfs_car_reader_next(struct lfs_car_reader *r, struct lfs_cid *out_cid,
			const uint8_t **out_data, size_t *out_len)
{
	if (r->err)
		return r->err;
	if (r->pos == r->len)
		return 0;

	const uint8_t *p = r->p + r->pos;
	size_t left = r->len - r->pos;
	uint64_t slen;
	int n = lfs_varint_decode(&slen, p, left);
	if (n < 0)
		return fail(r, n);
	if (slen == 0)
		return fail(r, -EBADMSG);
	if (slen > LFS_CAR_MAX_SECTION)
		return fail(r, -EFBIG);
	if (slen > left - (size_t)n)
		return fail(r, -EBADMSG);

	struct lfs_cid cid;
	int c = lfs_cid_from_bytes(&cid, p + n, (size_t)slen);
	if (c < 0)
		return fail(r, c);
	const uint8_t *data = p + n + c;
	size_t dlen = (size_t)slen - (size_t)c;
	if (!r->trusted && !lfs_cid_matches(&cid, data, dlen))
		return fail(r, -EBADMSG);

	r->pos += (size_t)n + (size_t)slen;
	*out_cid = cid;
	*out_data = data;
	*out_len = dlen;
	return 1;
}

void lfs_car_reader_release(struct lfs_car_reader *r)
{
	free(r->roots);
	r->roots = NULL;
	r->nroots = 0;
}

int lfs_car_verify(size_t *out_blocks, const uint8_t *p, size_t len)
{
	struct lfs_car_reader r;
	size_t count = 0;
	int rc = lfs_car_reader_init(&r, p, len);
	if (!rc) {
		struct lfs_cid cid;
		const uint8_t *data;
		size_t dlen;
		while ((rc = lfs_car_reader_next(&r, &cid, &data, &dlen)) == 1)
			count++;
		lfs_car_reader_release(&r);
	}
	if (out_blocks)
		*out_blocks = count;
	return rc;
}
