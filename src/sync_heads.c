#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "sync_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "log.h"

/* ---- the listing of every ledger's head records ---- */

int lfs_sync_listing_collect(void *ctx, const char *key)
{
	struct heads_listing *lst = ctx;
	size_t pl = strlen(HEADS_PREFIX);
	if (strncmp(key, HEADS_PREFIX, pl))
		return 0;
	const char *enc = key + pl, *tilde = strchr(enc, '~');
	size_t elen = tilde ? (size_t)(tilde - enc) : strlen(enc);
	struct heads_entry e = {0};
	e.marker = !tilde;
	if (!elen || elen > LFS_META_ENC_MAX || memchr(enc, '/', elen) ||
	    (tilde && (lfs_cid_from_string(&e.car, tilde + 1) ||
		       e.car.codec != LFS_CODEC_RAW)))
		return 0; /* not ours: ignore */
	uint64_t h = 1469598103934665603ULL;
	for (const char *c = key; *c; c++)
		h = (h ^ (unsigned char)*c) * 1099511628211ULL;
	lst->hash += h;
	if (lst->n == lst->cap) {
		size_t cap = lst->cap ? lst->cap * 2 : 64;
		void *p = realloc(lst->v, cap * sizeof(*lst->v));
		if (!p)
			return -ENOMEM;
		lst->v = p;
		lst->cap = cap;
	}
	if (!(e.enc = strndup(enc, elen)))
		return -ENOMEM;
	lst->v[lst->n++] = e;
	return 0;
}

int lfs_sync_listing_cmp(const void *a, const void *b)
{
	return strcmp(((const struct heads_entry *)a)->enc,
		      ((const struct heads_entry *)b)->enc);
}

void lfs_sync_listing_release(struct heads_listing *lst)
{
	for (size_t i = 0; i < lst->n; i++)
		free(lst->v[i].enc);
	free(lst->v);
	memset(lst, 0, sizeof(*lst));
}

/* The index of the first entry of ledger enc (sorted listing), or n. */
static size_t listing_find(const struct heads_listing *lst, const char *enc)
{
	size_t lo = 0, hi = lst->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (strcmp(lst->v[mid].enc, enc) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < lst->n && !strcmp(lst->v[lo].enc, enc) ? lo : lst->n;
}

/* The heads a pull starts from: sl's entries of the listing, and the
 * records of the last legacy sweep. Sets sl->fresh_heads. */
int lfs_sync_round_heads(struct keys *out, struct sync_ledger *sl,
			 const struct heads_listing *lst)
{
	struct lfs_cidmap fresh, all;
	lfs_cidmap_init(&fresh);
	lfs_cidmap_init(&all);
	int rc = 0;
	for (size_t i = listing_find(lst, sl->enc);
	     !rc && i < lst->n && !strcmp(lst->v[i].enc, sl->enc); i++)
		if (!lst->v[i].marker && !lfs_sync_has(&all, &lst->v[i].car) &&
		    !(rc = lfs_cidmap_set(&fresh, &lst->v[i].car, 1)) &&
		    !(rc = lfs_cidmap_set(&all, &lst->v[i].car, 1)))
			rc = lfs_sync_keys_add(out, &lst->v[i].car);
	for (size_t i = 0; !rc && i < sl->legacy_heads.nslots; i++) {
		struct lfs_cidmap_slot *e = &sl->legacy_heads.slots[i];
		if (e->used && e->value && !lfs_sync_has(&all, &e->cid) &&
		    !(rc = lfs_cidmap_set(&all, &e->cid, 1)))
			rc = lfs_sync_keys_add(out, &e->cid);
	}
	lfs_cidmap_release(&all);
	if (rc) {
		lfs_cidmap_release(&fresh);
		return rc;
	}
	lfs_cidmap_release(&sl->fresh_heads);
	sl->fresh_heads = fresh;
	return 0;
}

/* List sl's records in the legacy layout into sl->legacy_heads. */
int lfs_sync_sweep(struct lfs_sync *s, struct sync_ledger *sl)
{
	char prefix[300];
	snprintf(prefix, sizeof(prefix), "%s/head/", sl->enc);
	struct keys k = {0};
	int rc = lfs_store_list(s->store, prefix, lfs_sync_collect_cid, &k);
	if (rc == -ENOENT)
		rc = 0;
	struct lfs_cidmap m;
	lfs_cidmap_init(&m);
	for (size_t i = 0; !rc && i < k.n; i++)
		rc = lfs_cidmap_set(&m, &k.v[i], 1);
	free(k.v);
	if (rc) {
		lfs_cidmap_release(&m);
		return rc;
	}
	lfs_cidmap_release(&sl->legacy_heads);
	sl->legacy_heads = m;
	sl->swept = true;
	return 0;
}

/* A remote ledger's name (percent-encoded): create a local store when we
 * lack one, so it is listed (and says "no key"). */
void lfs_sync_discover_enc(struct lfs_sync *s, const char *enc)
{
	char name[LFS_LEDGER_NAME_MAX + 1];
	size_t n = 0;
	for (const char *p = enc; *p && n < sizeof(name) - 1; p++) {
		if (*p == '%' && p[1] && p[2]) {
			char hex[3] = {p[1], p[2], 0};
			name[n++] = (char)strtol(hex, NULL, 16);
			p += 2;
		} else {
			name[n++] = *p;
		}
	}
	name[n] = '\0';
	if (!lfs_home_valid_name(name))
		return;
	char *dir = lfs_home_ledger_dir(s->home, name);
	if (dir && mkdir(dir, 0700) == 0)
		lfs_info("found ledger '%s' on %s", name, s->shown);
	free(dir);
}

int lfs_sync_discover(void *ctx, const char *key)
{
	lfs_sync_discover_enc(ctx, key + strlen("ledgers/"));
	return 0;
}
