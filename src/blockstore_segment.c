#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "blockstore_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <sodium.h>

#include "cidmap.h"
#include "fileio.h"
#include "le.h"
#include "log.h"

/* ---- the segment ---- */

/*
 * DIR/segment: "LFSSEG1\n", then records, each
 *   u32 magic "LSR1" | u32 kind | u32 len | u32 nparents | u64 synced |
 *   car CID (36) | parents (36 each) | BLAKE2b-128 of all that |
 *   len bytes: the sealed CAR (kind 0), nothing (kind 1, a mark), a sealed
 *   intent (kind 3; the CID field names its sealed bytes, no parents), or
 *   a fold (kind 4, no CID, no parents): u64, the intents at offsets up
 *   to it are folded into commits
 * little endian. synced: the writer knew everything before that offset
 * to be on disk, so a reader re-hashes only the records after it.
 */
#define SEG_NAME       "segment"
#define SEG_FILE_MAGIC "LFSSEG1\n"
#define SEG_REC_MAGIC  0x3152534cu
#define SEG_FIXED      (24 + LFS_CID_BYTES)
#define SEG_SUM        16
#define SEG_SKIP       2u /* in a scan only: a damaged record */
/* A scan from the start reading more than this asks for a resume point. */
/* What checking a record a resume point names reads at once: its header
 * with a few parents. */
#define RESUME_HEADER_READ (SEG_FIXED + 4 * LFS_CID_BYTES + SEG_SUM)
#define SEG_RESUME_AFTER   ((uint64_t)1 << 20)

struct seg_rec {
	struct lfs_cid car;
	uint64_t start, off, end, synced;
	uint32_t len, kind, np;
	struct lfs_cid *parents; /* into the scan's parents array */
	uint64_t through;        /* a fold's */
};

static void seg_sum(uint8_t out[SEG_SUM], const uint8_t *p, size_t n)
{
	crypto_generichash(out, SEG_SUM, p, n, NULL, 0);
}

static int pwrite_full(int fd, const void *buf, size_t len, uint64_t off)
{
	size_t done = 0;
	while (done < len) {
		ssize_t r = pwrite(fd, (const uint8_t *)buf + done, len - done,
				   (off_t)(off + done));
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return r < 0 ? -errno : -EIO;
		done += (size_t)r;
	}
	return 0;
}

/* pwritev all of iov at off (iov is consumed). */
static int pwritev_full(int fd, struct iovec *iov, int n, uint64_t off)
{
	while (n > 0) {
		ssize_t r = pwritev(fd, iov, n, (off_t)off);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return r < 0 ? -errno : -EIO;
		off += (uint64_t)r;
		while (n > 0 && (size_t)r >= iov->iov_len) {
			r -= (ssize_t)iov->iov_len;
			iov++;
			n--;
		}
		if (n > 0) {
			iov->iov_base = (uint8_t *)iov->iov_base + r;
			iov->iov_len -= (size_t)r;
		}
	}
	return 0;
}

/* The segment's heads after a record: its parents go, its CAR comes.
 * Caller holds lock. */
static int seg_supersede(struct lfs_blockstore *bs, const struct lfs_cid *car,
			 const struct lfs_cid *parents, size_t np)
{
	size_t k = 0;
	for (size_t i = 0; i < bs->nseg_heads; i++) {
		bool gone = car && lfs_cid_equal(&bs->seg_heads[i], car);
		for (size_t j = 0; j < np && !gone; j++)
			gone = lfs_cid_equal(&bs->seg_heads[i], &parents[j]);
		if (!gone)
			bs->seg_heads[k++] = bs->seg_heads[i];
	}
	void *p = realloc(bs->seg_heads, (k + 1) * sizeof(*bs->seg_heads));
	if (!p)
		return -ENOMEM;
	bs->seg_heads = p;
	if (car)
		bs->seg_heads[k++] = *car;
	bs->nseg_heads = k;
	return 0;
}

/*
 * The segment's heads after a commit record: only it. Its writer held the
 * ledger's lock and committed on top of every head it knew, every record
 * before it among them (its parents list says so too, but a record
 * damaged in the middle and skipped would leave the one before it a head
 * forever: a head whose descendants cannot be walked, which no merge can
 * place). Caller holds lock.
 */
static int seg_supersede_all(struct lfs_blockstore *bs,
			     const struct lfs_cid *car)
{
	bs->nseg_heads = 0;
	return seg_supersede(bs, car, NULL, 0);
}

/* Index one commit record. Caller holds lock. */
static int seg_add(struct lfs_blockstore *bs, const struct lfs_cid *car,
		   uint64_t off, uint32_t len, uint32_t np)
{
	size_t idx;
	int rc = lfs_bs_car_slot(bs, &idx, car);
	if (rc)
		return rc;
	if (bs->cars[idx].seg1)
		return 0; /* the same bytes twice: the first copy serves */
	if (bs->nseg >= UINT32_MAX - 1)
		return -EFBIG;
	if (bs->nseg == bs->capseg) {
		size_t cap = bs->capseg ? bs->capseg + bs->capseg / 2 : 256;
		void *p = realloc(bs->seg, cap * sizeof(*bs->seg));
		if (!p)
			return -ENOMEM;
		bs->seg = p;
		bs->capseg = cap;
	}
	bs->seg[bs->nseg] = (struct seg_ent){.car = (uint32_t)idx,
					     .off = off,
					     .len = len,
					     .np = (uint16_t)np};
	bs->cars[idx].seg1 = (uint32_t)++bs->nseg;
	bs->seg_live++;
	return 0;
}

/* Note an intent record (the last of the segment so far). Caller holds
 * seg_lock. */
static int seg_intent(struct lfs_blockstore *bs, const struct lfs_cid *cid,
		      uint64_t off, uint32_t len)
{
	if (off <= bs->folded_to)
		return 0;
	if (bs->nintents == bs->capintents) {
		size_t cap = bs->capintents ? bs->capintents * 2 : 16;
		void *p = realloc(bs->intents, cap * sizeof(*bs->intents));
		if (!p)
			return -ENOMEM;
		bs->intents = p;
		bs->capintents = cap;
	}
	bs->intents[bs->nintents++] =
		(struct lfs_bs_intent){.off = off, .len = len, .cid = *cid};
	return 0;
}

/* A fold record: the intents up to through are folded. Caller holds
 * seg_lock. */
static void seg_folded(struct lfs_blockstore *bs, uint64_t through)
{
	if (through > bs->folded_to)
		bs->folded_to = through;
	size_t k = 0;
	for (size_t i = 0; i < bs->nintents; i++)
		if (bs->intents[i].off > bs->folded_to)
			bs->intents[k++] = bs->intents[i];
	bs->nintents = k;
}

char *lfs_bs_seg_path(struct lfs_blockstore *bs)
{
	return lfs_bs_path_join(bs->dir, SEG_NAME, "");
}

/*
 * A window of the file, read in large pieces: a scan reads every record's
 * header, and one pread per header cost more than the copy of the records
 * between them (a commit's record is a few KB).
 */
#define SEG_WINDOW ((size_t)256 << 10)

struct seg_win {
	uint8_t *buf; /* cap bytes, or NULL: pread each read */
	size_t cap;   /* 0: SEG_WINDOW */
	uint64_t off;
	size_t len;
};

/* Read len bytes at off through w (may be NULL); 1 when the file ends
 * first. */
static int win_read(struct lfs_blockstore *bs, struct seg_win *w, void *dst,
		    size_t len, uint64_t off)
{
	size_t cap = w && w->cap ? w->cap : SEG_WINDOW;
	if (!w || !w->buf || len > cap)
		return lfs_pread_all(bs->seg_fd, dst, len, off);
	if (off < w->off || off + len > w->off + w->len) {
		ssize_t r;
		do
			r = pread(bs->seg_fd, w->buf, cap, (off_t)off);
		while (r < 0 && errno == EINTR);
		if (r < 0)
			return -errno;
		w->off = off;
		w->len = (size_t)r;
		if (len > w->len)
			return 1;
	}
	memcpy(dst, w->buf + (off - w->off), len);
	return 0;
}

/*
 * Read and check the record header at pos (its parents into parents, room
 * for MAX_ROOT_LINKS) through w (may be NULL): 0 when it checks out and the
 * record fits in size, 1 when not (incomplete, damaged, or no record
 * there).
 */
static int seg_header(struct lfs_blockstore *bs, struct seg_win *w,
		      uint8_t *hdr, uint64_t pos, uint64_t size,
		      struct seg_rec *r, struct lfs_cid *parents)
{
	if (pos + SEG_FIXED + SEG_SUM > size ||
	    win_read(bs, w, hdr, SEG_FIXED, pos))
		return 1;
	uint32_t kind = lfs_le_get32(hdr + 4), len = lfs_le_get32(hdr + 8),
		 np = lfs_le_get32(hdr + 12);
	if (lfs_le_get32(hdr) != SEG_REC_MAGIC ||
	    (kind > SEG_MARK && kind != SEG_INTENT && kind != SEG_FOLD) ||
	    (kind == SEG_FOLD && (len != 8 || np)) || np > MAX_ROOT_LINKS ||
	    len > LFS_CAR_MAX_FILE + (1 << 20))
		return 1;
	size_t hl = SEG_FIXED + (size_t)np * LFS_CID_BYTES + SEG_SUM;
	if (pos + hl + len > size ||
	    win_read(bs, w, hdr + SEG_FIXED, hl - SEG_FIXED, pos + SEG_FIXED))
		return 1;
	uint8_t sum[SEG_SUM];
	seg_sum(sum, hdr, hl - SEG_SUM);
	if (sodium_memcmp(sum, hdr + hl - SEG_SUM, SEG_SUM))
		return 1;
	*r = (struct seg_rec){.start = pos,
			      .off = pos + hl,
			      .end = pos + hl + len,
			      .synced = lfs_le_get64(hdr + 16),
			      .len = len,
			      .kind = kind,
			      .np = np};
	bool ok = kind == SEG_MARK || kind == SEG_FOLD ||
		  (lfs_cid_from_bytes(&r->car, hdr + 24, LFS_CID_BYTES) ==
			   LFS_CID_BYTES &&
		   r->car.codec == LFS_CODEC_RAW);
	for (uint32_t i = 0; ok && i < np; i++)
		ok = lfs_cid_from_bytes(&parents[i],
					hdr + SEG_FIXED +
						(size_t)i * LFS_CID_BYTES,
					LFS_CID_BYTES) == LFS_CID_BYTES;
	return ok ? 0 : 1;
}

/*
 * The offset of the first record at or after from that checks out, or
 * size when none does. Scans for the record magic; the header's checksum
 * tells a record from bytes that happen to match.
 */
static uint64_t seg_resync(struct lfs_blockstore *bs, uint8_t *hdr,
			   uint64_t from, uint64_t size)
{
	enum { WIN = 1 << 16 };
	uint8_t *w = malloc(WIN + 4);
	uint8_t magic[4];
	lfs_le_put32(magic, SEG_REC_MAGIC);
	struct lfs_cid *pv = malloc(MAX_ROOT_LINKS * sizeof(*pv));
	uint64_t found = size;
	for (uint64_t at = from; w && pv && at < size && found == size;
	     at += WIN) {
		size_t n = size - at < WIN + 4 ? (size_t)(size - at) : WIN + 4;
		if (lfs_pread_all(bs->seg_fd, w, n, at))
			break;
		for (size_t i = 0; i + 4 <= n && i < WIN; i++) {
			struct seg_rec r;
			if (!memcmp(w + i, magic, 4) &&
			    !seg_header(bs, NULL, hdr, at + i, size, &r, pv)) {
				found = at + i;
				break;
			}
		}
	}
	free(w);
	free(pv);
	return found;
}

/* The length of a record's header with np parents. */
static uint64_t seg_hl(uint32_t np)
{
	return SEG_FIXED + (uint64_t)np * LFS_CID_BYTES + SEG_SUM;
}

static void resume_digest_init(crypto_generichash_state *st)
{
	crypto_generichash_init(st, NULL, 0, SEG_RESUME_DIGEST);
}

static void resume_digest_add(crypto_generichash_state *st,
			      const struct lfs_cid *car)
{
	uint8_t b[LFS_CID_BYTES];
	lfs_cid_to_bytes(b, car);
	crypto_generichash_update(st, b, sizeof(b));
}

void lfs_bs_seg_forget_locked(struct lfs_blockstore *bs)
{
	for (size_t k = 0; k < bs->nseg; k++)
		bs->cars[bs->seg[k].car].seg1 = 0;
	bs->nseg = 0;
	bs->seg_live = 0;
	bs->nseg_heads = 0;
	bs->nintents = 0;
	bs->folded_to = 0;
}

/*
 * Take the segment as DIR/runs/resume says a scan left it, when every
 * record it names checks out where it says and is the record it was
 * written for (the digest of their CIDs): the offset to scan on from, or
 * 0 (no such file, or not this segment's: scan it all). Records it skips
 * are intents already folded and marks (their effect is in its heads).
 * Caller holds seg_lock; the segment's tables are empty.
 */
static uint64_t seg_resume_load(struct lfs_blockstore *bs, uint64_t size)
{
	struct seg_resume res;
	if (lfs_bs_resume_read(bs, &res))
		return 0;
	uint64_t at = 0;
	struct seg_rec *recs =
		malloc((res.nrec + res.nintents + 1) * sizeof(*recs));
	uint8_t *hdr =
		malloc(SEG_FIXED + LFS_CID_BYTES * MAX_ROOT_LINKS + SEG_SUM);
	struct lfs_cid *pv = malloc(MAX_ROOT_LINKS * sizeof(*pv));
	/* Records close together (commits only): through a window; else
	 * one small read a header (with its parents, as a commit's are). */
	bool dense = res.nrec && res.at / res.nrec < SEG_WINDOW / 16;
	struct seg_win win = {.cap = dense ? SEG_WINDOW : RESUME_HEADER_READ};
	win.buf = malloc(win.cap);
	bool ok = recs && hdr && pv && win.buf && res.at <= size &&
		  res.at > 8 && res.folded_to <= res.at;
	crypto_generichash_state st;
	resume_digest_init(&st);
	size_t n = res.nrec + res.nintents;
	uint64_t prev = 0;
	for (size_t i = 0; ok && i < n; i++) {
		bool commit = i < res.nrec;
		uint64_t pos = commit ? res.recs[i] : res.intents[i - res.nrec];
		struct seg_rec *r = &recs[i];
		ok = (i == res.nrec || pos > prev) &&
		     !seg_header(bs, &win, hdr, pos, res.at, r, pv) &&
		     r->kind == (commit ? SEG_COMMIT : SEG_INTENT) &&
		     (commit || r->off > res.folded_to);
		prev = pos;
		if (ok && commit)
			resume_digest_add(&st, &r->car);
	}
	uint8_t digest[SEG_RESUME_DIGEST];
	crypto_generichash_final(&st, digest, sizeof(digest));
	ok = ok && !sodium_memcmp(digest, res.digest, sizeof(digest));
	/* Heads are commit records of this segment. */
	for (size_t h = 0; ok && h < res.nheads; h++) {
		bool found = false;
		for (size_t i = res.nrec; i-- > 0 && !found;)
			found = lfs_cid_equal(&recs[i].car, &res.heads[h]);
		ok = found;
	}
	if (ok) {
		int rc = 0;
		pthread_mutex_lock(&bs->lock);
		for (size_t i = 0; !rc && i < res.nrec; i++)
			rc = seg_add(bs, &recs[i].car, recs[i].off, recs[i].len,
				     recs[i].np);
		for (size_t h = 0; !rc && h < res.nheads; h++)
			rc = seg_supersede(bs, &res.heads[h], NULL, 0);
		pthread_mutex_unlock(&bs->lock);
		bs->folded_to = res.folded_to;
		for (size_t i = res.nrec; !rc && i < n; i++)
			rc = seg_intent(bs, &recs[i].car, recs[i].off,
					recs[i].len);
		/* Out of memory halfway: as if there were none (the scan
		 * from the start finds the tables empty). */
		if (rc) {
			pthread_mutex_lock(&bs->lock);
			lfs_bs_seg_forget_locked(bs);
			pthread_mutex_unlock(&bs->lock);
		}
		at = rc ? 0 : res.at;
	}
	free(win.buf);
	free(pv);
	free(hdr);
	free(recs);
	lfs_bs_resume_free(&res);
	return at;
}

int lfs_bs_seg_save_resume(struct lfs_blockstore *bs)
{
	pthread_mutex_lock(&bs->sync_lock);
	bool synced = bs->seg_synced >= bs->seg_end;
	pthread_mutex_unlock(&bs->sync_lock);
	if (bs->seg_fd < 0 || bs->seg_end <= 8 || !synced)
		return 0;
	struct seg_resume res = {.at = bs->seg_end,
				 .folded_to = bs->folded_to,
				 .nintents = bs->nintents};
	crypto_generichash_state st;
	resume_digest_init(&st);
	pthread_mutex_lock(&bs->lock);
	res.nrec = bs->nseg;
	res.nheads = bs->nseg_heads;
	res.recs = malloc(res.nrec * sizeof(*res.recs) + 1);
	res.heads = malloc(res.nheads * sizeof(*res.heads) + 1);
	res.intents = malloc(res.nintents * sizeof(*res.intents) + 1);
	int rc = res.recs && res.heads && res.intents ? 0 : -ENOMEM;
	for (size_t i = 0; !rc && i < res.nrec; i++) {
		const struct seg_ent *e = &bs->seg[i];
		res.recs[i] = e->off - seg_hl(e->np);
		resume_digest_add(&st, &bs->cars[e->car].cid);
	}
	if (!rc)
		memcpy(res.heads, bs->seg_heads,
		       res.nheads * sizeof(*res.heads));
	pthread_mutex_unlock(&bs->lock);
	for (size_t i = 0; !rc && i < res.nintents; i++)
		res.intents[i] = bs->intents[i].off - seg_hl(0);
	crypto_generichash_final(&st, res.digest, sizeof(res.digest));
	if (!rc)
		rc = lfs_bs_resume_write(bs, &res);
	lfs_bs_resume_free(&res);
	return rc;
}

/*
 * Read the records other writers (or an earlier run) appended since
 * seg_end. A record that does not check out is skipped when a good one
 * follows (damage in the middle); else it is the end (a record being
 * written, or torn by a crash), and with fix (the caller holds the
 * ledger's writer lock, so nobody is writing) that tail is cut off.
 * Caller holds seg_lock.
 */
static int seg_scan(struct lfs_blockstore *bs, bool fix)
{
	if (bs->seg_fd < 0) {
		char *p = lfs_bs_seg_path(bs);
		if (!p)
			return -ENOMEM;
		int fd = open(p, O_RDWR | O_CLOEXEC);
		if (fd < 0 && errno == EACCES)
			fd = open(p, O_RDONLY | O_CLOEXEC);
		free(p);
		if (fd < 0)
			return errno == ENOENT ? 0 : -errno;
		bs->seg_fd = fd;
		bs->seg_end = 0;
		bs->nintents = 0;
		bs->folded_to = 0;
	}
	struct stat st;
	if (fstat(bs->seg_fd, &st))
		return -errno;
	bs->seg_ino = (uint64_t)st.st_ino;
	uint64_t size = (uint64_t)st.st_size, pos = bs->seg_end;
	if (size == pos)
		return 0;
	int rc = 0;
	uint64_t resumed = 0; /* records before it were on disk */
	if (pos == 0) {
		uint8_t m[8];
		if (size < 8) {
			if (fix && ftruncate(bs->seg_fd, 0))
				return -errno;
			return 0;
		}
		if ((rc = lfs_pread_all(bs->seg_fd, m, 8, 0)))
			return rc < 0 ? rc : 0;
		if (memcmp(m, SEG_FILE_MAGIC, 8))
			return -EBADMSG;
		pos = bs->seg_end = 8;
		if (bs->nseg == 0 && bs->nseg_heads == 0 && bs->nintents == 0)
			pos = resumed = seg_resume_load(bs, size);
		if (!pos)
			pos = 8;
		else
			bs->seg_end = pos;
		pthread_mutex_lock(&bs->lock);
		bs->seg_resumed = resumed;
		pthread_mutex_unlock(&bs->lock);
		/* The next checkpoint spares the next process this scan. */
		bs->seg_resume_wanted = size - pos > SEG_RESUME_AFTER;
		if (pos == size)
			return 0;
	}
	struct seg_rec *recs = NULL;
	size_t nrecs = 0, cap = 0;
	struct lfs_cid *pv = NULL;
	size_t npv = 0, cappv = 0;
	uint8_t *hdr =
		malloc(SEG_FIXED + LFS_CID_BYTES * MAX_ROOT_LINKS + SEG_SUM);
	uint64_t synced = resumed;
	if (!hdr)
		return -ENOMEM;
	/* Many records to read: through a window (a few, appended since
	 * the last look: a pread each). */
	struct seg_win win = {
		.buf = size - pos > 4 * SEG_WINDOW ? malloc(SEG_WINDOW) : NULL};
	/* Pass 1: the headers. A record that does not check out where
	 * more follows (damage in the middle) is skipped, not the end: the
	 * next record that checks out carries on, so damage loses what it
	 * hit and nothing after it, as a damaged CAR file would. */
	while (pos < size && !rc) {
		struct seg_rec r;
		if (npv + MAX_ROOT_LINKS > cappv) {
			cappv = npv * 2 + MAX_ROOT_LINKS;
			void *p = realloc(pv, cappv * sizeof(*pv));
			if (!p) {
				rc = -ENOMEM;
				break;
			}
			pv = p;
		}
		if (seg_header(bs, &win, hdr, pos, size, &r, pv + npv)) {
			uint64_t next = seg_resync(bs, hdr, pos + 1, size);
			if (next >= size)
				break; /* nothing good follows: a torn tail */
			lfs_warn("%s/" SEG_NAME ": skipping %llu damaged bytes "
				 "at offset %llu",
				 bs->dir, (unsigned long long)(next - pos),
				 (unsigned long long)pos);
			pos = next;
			continue;
		}
		if (nrecs == cap) {
			cap = cap ? cap * 2 : 64;
			void *p = realloc(recs, cap * sizeof(*recs));
			if (!p) {
				rc = -ENOMEM;
				break;
			}
			recs = p;
		}
		uint8_t t8[8];
		if (r.kind == SEG_FOLD) {
			int wr = win_read(bs, &win, t8, 8, r.off);
			if (wr < 0) {
				rc = wr;
				break;
			}
			if (wr)
				break; /* cannot be: the header said it fits */
			r.through = lfs_le_get64(t8);
		}
		r.parents = (struct lfs_cid *)(uintptr_t)npv; /* fixed below */
		npv += r.np;
		recs[nrecs++] = r;
		if (r.synced > synced && r.synced <= r.start)
			synced = r.synced;
		pos = r.end;
	}
	free(win.buf);
	free(hdr);
	/* Pass 2: records after what a writer knew to be on disk must hash
	 * to their names (a power cut may leave garbage there). */
	uint8_t *buf = NULL;
	for (size_t i = 0; !rc && i < nrecs; i++) {
		recs[i].parents = pv + (uintptr_t)recs[i].parents;
		if (recs[i].kind == SEG_MARK || recs[i].kind == SEG_FOLD ||
		    recs[i].end <= synced)
			continue;
		void *p = realloc(buf, recs[i].len ? recs[i].len : 1);
		if (!p) {
			rc = -ENOMEM;
			break;
		}
		buf = p;
		struct lfs_cid c;
		if (lfs_pread_all(bs->seg_fd, buf, recs[i].len, recs[i].off) ||
		    (lfs_cid_of(&c, LFS_CODEC_RAW, buf, recs[i].len),
		     !lfs_cid_equal(&c, &recs[i].car))) {
			if (i + 1 == nrecs) { /* the last: a torn tail */
				pos = recs[i].start;
				nrecs = i;
				break;
			}
			lfs_warn("%s/" SEG_NAME ": skipping the damaged "
				 "record at offset %llu",
				 bs->dir, (unsigned long long)recs[i].start);
			recs[i].kind = SEG_SKIP;
		}
	}
	free(buf);
	if (!rc) {
		pthread_mutex_lock(&bs->lock);
		for (size_t i = 0; !rc && i < nrecs; i++) {
			const struct seg_rec *r = &recs[i];
			if (r->kind == SEG_SKIP)
				continue;
			if (r->kind == SEG_INTENT)
				rc = seg_intent(bs, &r->car, r->off, r->len);
			else if (r->kind == SEG_FOLD)
				seg_folded(bs, r->through);
			else if (r->kind == SEG_MARK)
				rc = seg_supersede(bs, NULL, r->parents, r->np);
			else if (!(rc = seg_add(bs, &r->car, r->off, r->len,
						r->np)))
				rc = seg_supersede_all(bs, &r->car);
		}
		pthread_mutex_unlock(&bs->lock);
	}
	if (!rc) {
		bs->seg_end = pos;
		if (fix && pos < size) {
			lfs_warn("%s/" SEG_NAME ": dropping %llu bytes after "
				 "offset %llu: an incomplete or damaged "
				 "record (a crash while it was written)",
				 bs->dir, (unsigned long long)(size - pos),
				 (unsigned long long)pos);
			if (ftruncate(bs->seg_fd, (off_t)pos))
				rc = -errno;
		}
	}
	free(recs);
	free(pv);
	return rc;
}

void lfs_bs_seg_rescan(struct lfs_blockstore *bs)
{
	pthread_mutex_lock(&bs->seg_lock);
	seg_scan(bs, false);
	pthread_mutex_unlock(&bs->seg_lock);
}

/* Where car lives in the segment (after a look at what was appended). */
bool lfs_bs_seg_find(struct lfs_blockstore *bs, const struct lfs_cid *car,
		     struct seg_ent *out, bool rescan)
{
	for (int pass = 0; pass < 2; pass++) {
		pthread_mutex_lock(&bs->lock);
		size_t i;
		bool found = lfs_bs_seg_of(bs, car, &i);
		if (found && out)
			*out = bs->seg[i];
		pthread_mutex_unlock(&bs->lock);
		if (found || !rescan || pass)
			return found;
		lfs_bs_seg_rescan(bs);
	}
	return false;
}

/* Read len bytes at off of CAR car, wherever it is. */
int lfs_bs_pread_car(struct lfs_blockstore *bs, const struct lfs_cid *car,
		     void *buf, size_t len, uint64_t off)
{
	struct seg_ent e;
	if (lfs_bs_seg_find(bs, car, &e, false)) {
		if (off + len > e.len)
			return -EBADMSG;
		int rc = lfs_pread_all(bs->seg_fd, buf, len, e.off + off);
		return rc > 0 ? -EBADMSG : rc;
	}
	char *path = lfs_bs_car_path(bs, car);
	if (!path)
		return -ENOMEM;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	free(path);
	if (fd < 0)
		return -errno;
	int rc = lfs_pread_all(fd, buf, len, off);
	close(fd);
	return rc > 0 ? -EBADMSG : rc; /* the file shrank under us */
}

/* A CAR's sealed bytes, wherever it is. */
int lfs_bs_read_car_bytes(struct lfs_blockstore *bs, const struct lfs_cid *car,
			  uint8_t **out, size_t *out_len)
{
	struct seg_ent e;
	if (lfs_bs_seg_find(bs, car, &e, true)) {
		uint8_t *b = malloc(e.len ? e.len : 1);
		if (!b)
			return -ENOMEM;
		int rc = lfs_pread_all(bs->seg_fd, b, e.len, e.off);
		if (rc) {
			free(b);
			return rc > 0 ? -EBADMSG : rc;
		}
		*out = b;
		*out_len = e.len;
		return 0;
	}
	char *path = lfs_bs_car_path(bs, car);
	if (!path)
		return -ENOMEM;
	int rc =
		lfs_read_file(path, LFS_CAR_MAX_FILE + (1 << 20), out, out_len);
	free(path);
	return rc;
}

/*
 * Append a record. Caller holds seg_lock and the ledger's writer lock
 * (so the end of the file is ours).
 */
int lfs_bs_seg_append(struct lfs_blockstore *bs, uint32_t kind,
		      const struct lfs_cid *car, const uint8_t *sealed,
		      size_t len, const struct lfs_cid *parents, size_t np)
{
	int rc;
	if (bs->seg_fd < 0) {
		char *p = lfs_bs_seg_path(bs);
		if (!p)
			return -ENOMEM;
		int fd = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
		free(p);
		if (fd < 0)
			return -errno;
		bs->seg_fd = fd;
		bs->seg_end = 0;
		bs->nintents = 0;
		bs->folded_to = 0;
	}
	bool known = bs->seg_known && bs->seg_end > 0;
	bs->seg_known = false;
	if (!known && (rc = seg_scan(bs, true)))
		return rc;
	if (bs->seg_end == 0) {
		if ((rc = pwrite_full(bs->seg_fd, SEG_FILE_MAGIC, 8, 0)))
			return rc;
		bs->seg_end = 8;
		pthread_mutex_lock(&bs->sync_lock);
		bs->seg_dir_unsynced = true;
		pthread_mutex_unlock(&bs->sync_lock);
	}
	/* Supersede every record of the segment's heads, too: they are
	 * ancestors of this commit (the writer lock and a refresh came
	 * first). Capped: the clock drops ancestors anyway. */
	pthread_mutex_lock(&bs->lock);
	size_t cap = np + (kind == SEG_COMMIT ? bs->nseg_heads : 0);
	struct lfs_cid *all = malloc((cap + 1) * sizeof(*all));
	size_t n = 0;
	for (size_t i = 0; all && i < cap; i++) {
		const struct lfs_cid *c =
			i < np ? &parents[i] : &bs->seg_heads[i - np];
		bool dup = car && lfs_cid_equal(c, car);
		for (size_t k = 0; k < n && !dup; k++)
			dup = lfs_cid_equal(&all[k], c);
		if (!dup && n < MAX_ROOT_LINKS)
			all[n++] = *c;
	}
	pthread_mutex_unlock(&bs->lock);
	if (!all)
		return -ENOMEM;
	pthread_mutex_lock(&bs->sync_lock);
	uint64_t synced = bs->seg_synced;
	pthread_mutex_unlock(&bs->sync_lock);
	size_t hl = SEG_FIXED + n * LFS_CID_BYTES + SEG_SUM;
	uint8_t *rec = malloc(hl);
	if (!rec) {
		free(all);
		return -ENOMEM;
	}
	memset(rec, 0, SEG_FIXED);
	lfs_le_put32(rec, SEG_REC_MAGIC);
	lfs_le_put32(rec + 4, kind);
	lfs_le_put32(rec + 8, (uint32_t)len);
	lfs_le_put32(rec + 12, (uint32_t)n);
	lfs_le_put64(rec + 16, synced);
	if (car)
		lfs_cid_to_bytes(rec + 24, car);
	for (size_t i = 0; i < n; i++)
		lfs_cid_to_bytes(rec + SEG_FIXED + i * LFS_CID_BYTES, &all[i]);
	seg_sum(rec + hl - SEG_SUM, rec, hl - SEG_SUM);
	uint64_t at = bs->seg_end;
	/* The header and the CAR in one call, without copying the CAR. */
	struct iovec iov[2] = {{.iov_base = rec, .iov_len = hl},
			       {.iov_base = (void *)sealed, .iov_len = len}};
	rc = pwritev_full(bs->seg_fd, iov, len ? 2 : 1, at);
	free(rec);
	if (rc) {
		if (ftruncate(bs->seg_fd, (off_t)at))
			lfs_warn("%s/" SEG_NAME ": cannot cut off a failed "
				 "append: %s",
				 bs->dir, strerror(errno));
		free(all);
		return rc;
	}
	bs->seg_end = at + hl + len;
	bs->seg_appended = true;
	if (kind == SEG_INTENT || kind == SEG_FOLD) {
		free(all);
		if (kind == SEG_INTENT)
			return seg_intent(bs, car, at + hl, (uint32_t)len);
		seg_folded(bs, lfs_le_get64(sealed));
		return 0;
	}
	pthread_mutex_lock(&bs->lock);
	if (kind == SEG_MARK)
		rc = seg_supersede(bs, NULL, all, n);
	else if (!(rc = seg_add(bs, car, at + hl, (uint32_t)len, (uint32_t)n)))
		rc = seg_supersede(bs, car, all, n);
	pthread_mutex_unlock(&bs->lock);
	free(all);
	return rc;
}

void lfs_blockstore_segment_known(struct lfs_blockstore *bs, bool known)
{
	pthread_mutex_lock(&bs->seg_lock);
	bs->seg_known = known;
	pthread_mutex_unlock(&bs->seg_lock);
}

/* fdatasync the segment up to its current end, sharing one fdatasync
 * between the threads that ask at the same time (group commit). */
int lfs_bs_seg_sync(struct lfs_blockstore *bs)
{
	pthread_mutex_lock(&bs->seg_lock);
	uint64_t want = bs->seg_end;
	int fd = bs->seg_fd;
	pthread_mutex_unlock(&bs->seg_lock);
	int rc = 0;
	pthread_mutex_lock(&bs->sync_lock);
	while (!rc && bs->seg_synced < want && fd >= 0) {
		if (bs->syncing) {
			pthread_cond_wait(&bs->sync_cond, &bs->sync_lock);
			continue;
		}
		bs->syncing = true;
		bool dir = bs->seg_dir_unsynced;
		pthread_mutex_unlock(&bs->sync_lock);
		pthread_mutex_lock(&bs->seg_lock);
		uint64_t goal = bs->seg_end;
		pthread_mutex_unlock(&bs->seg_lock);
		rc = fdatasync(fd) ? -errno : 0;
		if (!rc && dir) {
			char *d = strdup(bs->dir);
			rc = d ? lfs_bs_fsync_path(d) : -ENOMEM;
			free(d);
		}
		pthread_mutex_lock(&bs->sync_lock);
		bs->syncing = false;
		if (!rc) {
			if (dir)
				bs->seg_dir_unsynced = false;
			if (goal > bs->seg_synced)
				bs->seg_synced = goal;
		}
		pthread_cond_broadcast(&bs->sync_cond);
	}
	pthread_mutex_unlock(&bs->sync_lock);
	return rc;
}

/*
 * Append to the malloc'd *v (n entries) what the segment adds: its live
 * CARs (heads false) or its head records (heads true), skipping those
 * already in *v.
 */
int lfs_bs_add_segment(struct lfs_cid **v, size_t *n, struct lfs_blockstore *bs,
		       bool heads)
{
	pthread_mutex_lock(&bs->seg_lock);
	int rc = seg_scan(bs, false);
	pthread_mutex_unlock(&bs->seg_lock);
	if (rc)
		return rc;
	struct lfs_cidmap seen;
	lfs_cidmap_init(&seen);
	for (size_t i = 0; !rc && i < *n; i++)
		rc = lfs_cidmap_set(&seen, &(*v)[i], 1);
	pthread_mutex_lock(&bs->lock);
	size_t more = heads ? bs->nseg_heads : bs->nseg;
	void *p = rc ? NULL : realloc(*v, (*n + more + 1) * sizeof(**v));
	if (!rc && !p)
		rc = -ENOMEM;
	if (p)
		*v = p;
	for (size_t i = 0; !rc && i < more; i++) {
		const struct lfs_cid *c =
			heads ? &bs->seg_heads[i] : lfs_bs_seg_cid(bs, i);
		if ((!heads && bs->seg[i].removed) ||
		    lfs_cidmap_get(&seen, c, NULL))
			continue;
		(*v)[(*n)++] = *c;
	}
	pthread_mutex_unlock(&bs->lock);
	lfs_cidmap_release(&seen);
	return rc;
}

/*
 * A head record removed: when some of cars are the segment's, append a
 * mark superseding them (the caller holds the ledger's writer lock).
 */
int lfs_bs_seg_drop_heads(struct lfs_blockstore *bs, const struct lfs_cid *cars,
			  size_t n, const struct lfs_cid *keep)
{
	struct lfs_cid *v = malloc((n + 1) * sizeof(*v));
	if (!v)
		return -ENOMEM;
	size_t k = 0;
	pthread_mutex_lock(&bs->lock);
	for (size_t i = 0; i < n; i++) {
		bool is = !keep || !lfs_cid_equal(&cars[i], keep);
		bool found = false;
		for (size_t j = 0; is && !found && j < bs->nseg_heads; j++)
			found = lfs_cid_equal(&bs->seg_heads[j], &cars[i]);
		if (found)
			v[k++] = cars[i];
	}
	pthread_mutex_unlock(&bs->lock);
	int rc = 0;
	if (k) {
		pthread_mutex_lock(&bs->seg_lock);
		rc = lfs_bs_seg_append(bs, SEG_MARK, NULL, NULL, 0, v, k);
		pthread_mutex_unlock(&bs->seg_lock);
	}
	free(v);
	return rc;
}

/* ---- intents ---- */

/* The key intents are sealed under: derived, so that no intent's bytes
 * ever open as a CAR's. */
static void intent_key(uint8_t out[LFS_KEY_BYTES],
		       const struct lfs_blockstore *bs)
{
	lfs_envelope_subkey(out, LFS_KEY_BYTES, bs->key, "ledgerfs intent v1");
}

int lfs_blockstore_append_intent(struct lfs_blockstore *bs,
				 const uint8_t *plain, size_t len,
				 struct lfs_bs_intent *out)
{
	uint8_t key[LFS_KEY_BYTES];
	intent_key(key, bs);
	struct lfs_buf sealed;
	lfs_buf_init(&sealed, LFS_CAR_MAX_FILE);
	struct lfs_cid cid;
	int rc = lfs_envelope_seal(&sealed, &cid, key, plain, len, 0);
	sodium_memzero(key, sizeof(key));
	if (!rc) {
		pthread_mutex_lock(&bs->seg_lock);
		rc = lfs_bs_seg_append(bs, SEG_INTENT, &cid, sealed.data,
				       sealed.len, NULL, 0);
		if (!rc && out)
			*out = bs->intents[bs->nintents - 1];
		/* The caller holds the lock while its saves are staged:
		 * the next intent need not look at the file's size. */
		if (!rc)
			bs->seg_known = true;
		pthread_mutex_unlock(&bs->seg_lock);
	}
	lfs_buf_release(&sealed);
	return rc;
}

int lfs_blockstore_intents(struct lfs_bs_intent **out, size_t *out_n,
			   struct lfs_blockstore *bs)
{
	pthread_mutex_lock(&bs->seg_lock);
	int rc = seg_scan(bs, false);
	size_t n = bs->nintents;
	struct lfs_bs_intent *v = NULL;
	if (!rc && n && !(v = malloc(n * sizeof(*v))))
		rc = -ENOMEM;
	if (v)
		memcpy(v, bs->intents, n * sizeof(*v));
	pthread_mutex_unlock(&bs->seg_lock);
	if (rc)
		return rc;
	*out = v;
	*out_n = n;
	return 0;
}

int lfs_blockstore_read_intent(struct lfs_buf *out, struct lfs_blockstore *bs,
			       const struct lfs_bs_intent *it)
{
	uint8_t *sealed = malloc(it->len ? it->len : 1);
	if (!sealed)
		return -ENOMEM;
	pthread_mutex_lock(&bs->seg_lock);
	int rc = bs->seg_fd < 0
			 ? -ENOENT
			 : lfs_pread_all(bs->seg_fd, sealed, it->len, it->off);
	pthread_mutex_unlock(&bs->seg_lock);
	if (rc > 0)
		rc = -EBADMSG; /* the file ends first */
	if (!rc) {
		uint8_t key[LFS_KEY_BYTES];
		intent_key(key, bs);
		rc = lfs_envelope_open(out, key, sealed, it->len, &it->cid);
		sodium_memzero(key, sizeof(key));
	}
	free(sealed);
	return rc;
}

int lfs_blockstore_fold_mark(struct lfs_blockstore *bs, uint64_t through)
{
	uint8_t t8[8];
	lfs_le_put64(t8, through);
	pthread_mutex_lock(&bs->seg_lock);
	int rc = lfs_bs_seg_append(bs, SEG_FOLD, NULL, t8, 8, NULL, 0);
	pthread_mutex_unlock(&bs->seg_lock);
	return rc;
}
