#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "sync_int.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"

/* ---- push ---- */

/* Are all of events ancestors of (or among) heads? */
static bool superseded(struct lfs_ledger *l, const struct lfs_cid *heads,
		       size_t nheads, const struct lfs_cid *events, size_t n)
{
	struct lfs_blocks b = lfs_ledger_blocks(l);
	return lfs_clock_contains(&b, heads, nheads, events, n, NULL) == 1;
}

/* How many local CAR files the remote lacks (the outbox), or an error. */
int lfs_sync_count_outbox(size_t *out, struct sync_ledger *sl,
			  struct lfs_blockstore *bs)
{
	struct lfs_cid *cars = NULL;
	size_t ncars = 0, n = 0;
	int rc = lfs_blockstore_list_cars(&cars, &ncars, bs);
	for (size_t i = 0; !rc && i < ncars; i++)
		n += !lfs_cidmap_get(&sl->pushed, &cars[i], NULL);
	free(cars);
	if (!rc)
		*out = n;
	return rc;
}

void lfs_sync_set_pending(struct lfs_sync *s, struct sync_ledger *sl, size_t n)
{
	pthread_mutex_lock(&s->lock);
	sl->pending = n;
	pthread_mutex_unlock(&s->lock);
}

int lfs_sync_push(struct lfs_sync *s, struct sync_ledger *sl,
		  struct lfs_ledger *l)
{
	struct lfs_blockstore *bs = lfs_ledger_store(l);
	struct lfs_cid *cars = NULL, *hcars = NULL, *heads = NULL;
	size_t ncars = 0, nhcars = 0, nheads = 0, uploaded = 0;
	struct keys added = {0}, removed = {0};
	int rc = lfs_blockstore_list_cars(&cars, &ncars, bs);
	for (size_t i = 0; !rc && i < ncars; i++) {
		if (lfs_cidmap_get(&sl->pushed, &cars[i], NULL))
			continue;
		uint8_t *bytes;
		size_t len;
		char key[400];
		lfs_sync_car_key(key, sizeof(key), sl, "car", &cars[i]);
		rc = lfs_blockstore_read_car(&bytes, &len, bs, &cars[i]);
		if (rc == -ENOENT) {
			rc = 0; /* compacted away meanwhile */
			continue;
		}
		if (!rc) {
			rc = lfs_store_put(s->store, key, bytes, len, true);
			if (rc == -EEXIST)
				rc = 0;
			free(bytes);
		}
		if (!rc) {
			lfs_sync_note_pushed(s, sl, &cars[i]);
			uploaded++;
		}
	}
	size_t pending = 0;
	for (size_t i = 0; i < ncars; i++)
		pending += !lfs_cidmap_get(&sl->pushed, &cars[i], NULL);
	lfs_sync_set_pending(s, sl, pending);
	if (uploaded)
		lfs_sync_mark_active(s);
	/* The ledger's markers, in both layouts. */
	for (int legacy = 0; !rc && !sl->marker_done && legacy < 2; legacy++) {
		char key[300];
		snprintf(key, sizeof(key),
			 legacy ? "ledgers/%s" : HEADS_PREFIX "%s", sl->enc);
		rc = lfs_store_put(s->store, key, (const uint8_t *)"", 0, true);
		if (rc == -EEXIST)
			rc = 0;
		sl->marker_done = !rc && legacy;
	}
	if (!rc)
		rc = lfs_ledger_head_cars(l, &hcars, &nhcars);
	if (!rc)
		rc = lfs_ledger_heads(l, &heads, &nheads);
	/* New head records first (only for CARs the remote has: a commit
	 * may have landed after the uploads above), under heads/ and then in
	 * the legacy layout... */
	for (size_t i = 0; !rc && i < nhcars; i++) {
		bool fresh = lfs_sync_has(&sl->fresh_heads, &hcars[i]);
		bool legacy = lfs_sync_has(&sl->legacy_heads, &hcars[i]);
		if ((fresh && legacy) ||
		    !lfs_cidmap_get(&sl->pushed, &hcars[i], NULL))
			continue;
		char cs[LFS_CID_STRLEN + 1], key[400];
		lfs_cid_to_string(cs, &hcars[i]);
		json_t *parents = json_array();
		for (size_t k = 0; parents && k < sl->remote_heads.nslots;
		     k++) {
			struct lfs_cidmap_slot *sl2 =
				&sl->remote_heads.slots[k];
			if (!sl2->used || !sl2->value)
				continue;
			char ps[LFS_CID_STRLEN + 1];
			lfs_cid_to_string(ps, &sl2->cid);
			json_array_append_new(parents,
					      json_pack("{s:s}", "/", ps));
		}
		json_t *rec = json_pack("{s:{s:s},s:o}", "car", "/", cs,
					"parents", parents);
		char *text =
			rec ? json_dumps(rec, JSON_COMPACT | JSON_SORT_KEYS)
			    : NULL;
		json_decref(rec);
		rc = text ? 0 : -ENOMEM;
		if (!rc && !fresh) {
			lfs_sync_record_key(key, sizeof(key), sl, &hcars[i],
					    false);
			rc = lfs_store_put(s->store, key, (const uint8_t *)text,
					   strlen(text), false);
			if (!rc)
				rc = lfs_cidmap_set(&sl->fresh_heads, &hcars[i],
						    1);
			if (!rc)
				rc = lfs_sync_keys_add(&added, &hcars[i]);
		}
		if (!rc && !legacy) {
			lfs_sync_record_key(key, sizeof(key), sl, &hcars[i],
					    true);
			rc = lfs_store_put(s->store, key, (const uint8_t *)text,
					   strlen(text), false);
			if (!rc)
				rc = lfs_cidmap_set(&sl->legacy_heads,
						    &hcars[i], 1);
		}
		free(text);
		if (!rc)
			rc = lfs_cidmap_set(&sl->remote_heads, &hcars[i], 1);
	}
	/* ...then drop the records they supersede, in both layouts. */
	struct lfs_arena a;
	lfs_arena_init(&a, 0);
	for (size_t k = 0; !rc && k < sl->remote_heads.nslots; k++) {
		struct lfs_cidmap_slot *slot = &sl->remote_heads.slots[k];
		if (!slot->used || !slot->value)
			continue;
		bool ours = false;
		for (size_t i = 0; i < nhcars && !ours; i++)
			ours = lfs_cid_equal(&hcars[i], &slot->cid);
		if (ours || !lfs_sync_applied(sl, l, &slot->cid))
			continue;
		struct lfs_car_root root;
		struct lfs_arena_mark m = lfs_arena_mark(&a);
		if (!lfs_blockstore_load(&root, &a, bs, &slot->cid, false) &&
		    superseded(l, heads, nheads, root.head, root.nhead)) {
			char key[400];
			struct lfs_cid c = slot->cid;
			if (lfs_sync_has(&sl->fresh_heads, &c)) {
				lfs_sync_record_key(key, sizeof(key), sl, &c,
						    false);
				rc = lfs_store_del(s->store, key);
			}
			if (!rc && lfs_sync_has(&sl->legacy_heads, &c)) {
				lfs_sync_record_key(key, sizeof(key), sl, &c,
						    true);
				rc = lfs_store_del(s->store, key);
			}
			if (!rc) {
				slot->value = 0;
				lfs_cidmap_set(&sl->fresh_heads, &c, 0);
				lfs_cidmap_set(&sl->legacy_heads, &c, 0);
				lfs_sync_keys_add(&removed, &c);
			}
		}
		lfs_arena_rewind(&a, m);
	}
	lfs_arena_release(&a);
	if (added.n || removed.n) {
		lfs_sync_mark_active(s);
		if (s->meta)
			lfs_meta_announce(s->meta, sl->enc, added.v, added.n,
					  removed.v, removed.n);
	}
	free(added.v);
	free(removed.v);
	if (!rc) {
		pthread_mutex_lock(&s->lock);
		sl->last_push_us = lfs_sync_now_us();
		sl->pushed_gen = s->generation + 1;
		pthread_mutex_unlock(&s->lock);
	}
	free(cars);
	free(hcars);
	free(heads);
	return rc;
}
