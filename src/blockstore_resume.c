#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "blockstore_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "fileio.h"
#include "le.h"

/*
 * DIR/runs/resume: where a scan of the segment may start (FORMATS.md).
 *   "LFSRES1\n" | u64 at | u64 folded_to | u32 nrec | u32 nheads |
 *   u32 nintents | u32 0 | digest (16) |
 *   nrec × u64: the commit records' offsets, in order |
 *   nheads × CID (36 bytes) | nintents × u64: the intents' offsets |
 *   MAC: keyed BLAKE2b-256 of all that precedes it
 * little endian; the key is derived from the ledger key. A local cache,
 * never synced and never fsynced: losing it costs a scan.
 */
#define RES_NAME   "resume"
#define RES_MAGIC  "LFSRES1\n"
#define RES_HEADER (8 + 8 + 8 + 4 * 4 + SEG_RESUME_DIGEST)
#define RES_MAC    32
/* More than any segment holds: 2^32 records. */
#define RES_MAX ((uint64_t)UINT32_MAX)

static char *res_path(struct lfs_blockstore *bs)
{
	return lfs_bs_path_join(bs->dir, "runs", RES_NAME);
}

static void res_mac(uint8_t out[RES_MAC], struct lfs_blockstore *bs,
		    const uint8_t *p, size_t len)
{
	uint8_t sub[32];
	lfs_envelope_subkey(sub, sizeof(sub), bs->key,
			    "ledgerfs segment resume v1");
	crypto_generichash(out, RES_MAC, p, len, sub, sizeof(sub));
	sodium_memzero(sub, sizeof(sub));
}

void lfs_bs_resume_free(struct seg_resume *r)
{
	free(r->recs);
	free(r->heads);
	free(r->intents);
	memset(r, 0, sizeof(*r));
}

int lfs_bs_resume_write(struct lfs_blockstore *bs, const struct seg_resume *r)
{
	if (r->nrec > RES_MAX || r->nheads > MAX_ROOT_LINKS ||
	    r->nintents > RES_MAX)
		return -EFBIG;
	size_t len = RES_HEADER + r->nrec * 8 + r->nheads * LFS_CID_BYTES +
		     r->nintents * 8;
	uint8_t *b = malloc(len + RES_MAC);
	char *dir = lfs_bs_path_join(bs->dir, "runs", "");
	char *path = res_path(bs);
	int rc = b && dir && path ? 0 : -ENOMEM;
	if (!rc && mkdir(dir, 0700) && errno != EEXIST)
		rc = -errno;
	if (!rc) {
		uint8_t *p = b;
		memcpy(p, RES_MAGIC, 8);
		lfs_le_put64(p + 8, r->at);
		lfs_le_put64(p + 16, r->folded_to);
		lfs_le_put32(p + 24, (uint32_t)r->nrec);
		lfs_le_put32(p + 28, (uint32_t)r->nheads);
		lfs_le_put32(p + 32, (uint32_t)r->nintents);
		lfs_le_put32(p + 36, 0);
		memcpy(p + 40, r->digest, SEG_RESUME_DIGEST);
		p += RES_HEADER;
		for (size_t i = 0; i < r->nrec; i++, p += 8)
			lfs_le_put64(p, r->recs[i]);
		for (size_t i = 0; i < r->nheads; i++, p += LFS_CID_BYTES)
			lfs_cid_to_bytes(p, &r->heads[i]);
		for (size_t i = 0; i < r->nintents; i++, p += 8)
			lfs_le_put64(p, r->intents[i]);
		res_mac(b + len, bs, b, len);
		rc = lfs_write_atomic(path, b, len + RES_MAC, 0600, false);
	}
	free(b);
	free(dir);
	free(path);
	return rc;
}

int lfs_bs_resume_read(struct lfs_blockstore *bs, struct seg_resume *r)
{
	memset(r, 0, sizeof(*r));
	char *path = res_path(bs);
	if (!path)
		return -ENOMEM;
	uint8_t *b = NULL;
	size_t len = 0;
	int rc = lfs_read_file(path, (size_t)1 << 31, &b, &len);
	free(path);
	if (rc)
		return rc;
	uint8_t mac[RES_MAC];
	if (len < RES_HEADER + RES_MAC || memcmp(b, RES_MAGIC, 8)) {
		rc = -EBADMSG;
		goto out;
	}
	len -= RES_MAC;
	res_mac(mac, bs, b, len);
	if (sodium_memcmp(mac, b + len, RES_MAC)) {
		rc = -EBADMSG;
		goto out;
	}
	r->at = lfs_le_get64(b + 8);
	r->folded_to = lfs_le_get64(b + 16);
	r->nrec = lfs_le_get32(b + 24);
	r->nheads = lfs_le_get32(b + 28);
	r->nintents = lfs_le_get32(b + 32);
	memcpy(r->digest, b + 40, SEG_RESUME_DIGEST);
	if (r->nheads > MAX_ROOT_LINKS ||
	    RES_HEADER + (uint64_t)r->nrec * 8 +
			    (uint64_t)r->nheads * LFS_CID_BYTES +
			    (uint64_t)r->nintents * 8 !=
		    len) {
		rc = -EBADMSG;
		goto out;
	}
	r->recs = malloc(r->nrec * 8 + 1);
	r->heads = malloc(r->nheads * sizeof(*r->heads) + 1);
	r->intents = malloc(r->nintents * 8 + 1);
	if (!r->recs || !r->heads || !r->intents) {
		rc = -ENOMEM;
		goto out;
	}
	const uint8_t *p = b + RES_HEADER;
	for (size_t i = 0; i < r->nrec; i++, p += 8)
		r->recs[i] = lfs_le_get64(p);
	for (size_t i = 0; i < r->nheads && !rc; i++, p += LFS_CID_BYTES)
		if (lfs_cid_from_bytes(&r->heads[i], p, LFS_CID_BYTES) !=
		    LFS_CID_BYTES)
			rc = -EBADMSG;
	for (size_t i = 0; i < r->nintents; i++, p += 8)
		r->intents[i] = lfs_le_get64(p);
out:
	free(b);
	if (rc)
		lfs_bs_resume_free(r);
	return rc;
}

void lfs_bs_resume_remove(struct lfs_blockstore *bs)
{
	char *path = res_path(bs);
	if (path)
		unlink(path);
	free(path);
}
