/*
 * sync: replicate every ledger of this machine's home with a remote store.
 *
 * Remote layout (the blockstore's, under the store's prefix):
 *   <ledger>/car/<cid>     sealed CAR files, immutable, named by content
 *   <ledger>/head/<cid>    one small record per head CAR:
 *                          {"car": {"/": "<cid>"}, "parents": [...]}
 *   ledgers/<ledger>       an empty marker, so other machines can list the
 *                          ledgers that exist (and show those they have no
 *                          key for)
 *
 * A round, per ledger: pull, then push.
 *   pull  list the head records; for each CAR this replica lacks, fetch it
 *         and ingest it (which checks the bytes against the name, then
 *         authentication, then every block hash and event); a CAR whose
 *         parent CAR is missing here is fetched after that parent. Files
 *         that fail a check are logged, never applied, and skipped in later
 *         rounds. Changes are reported through the changed hook.
 *   push  upload every local CAR file the remote doesn't have yet (the
 *         outbox: local CARs not in HOME/state/<ledger>/pushed, a list that
 *         survives restarts and crashes), then a head record for each local
 *         head CAR, and only then delete the remote head records whose
 *         events are ancestors of this replica's heads. A record is added
 *         before the records it supersedes are removed, so a reader never
 *         sees a ledger without heads, and concurrent writers each leave
 *         their head: nothing relies on compare-and-swap.
 *
 * The sync thread runs rounds every poll interval (and at once after
 * lfs_sync_kick()); a failed round (store down, network error) is retried
 * with exponential backoff up to 30 s. Only this thread uses the network.
 *
 * Errors: those of store.h and ledger.h.
 */
#ifndef LFS_SYNC_H
#define LFS_SYNC_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "cid.h"
#include "home.h"
#include "ledger.h"
#include "store.h"

struct lfs_sync;

struct lfs_sync_hooks {
	/*
	 * The open ledger called name (borrowed: it must stay open until
	 * lfs_sync_free()), or NULL when it cannot be opened (no key).
	 */
	struct lfs_ledger *(*ledger)(void *ctx, const char *name);
	/* Remote changes moved ledger name from root before to after. */
	void (*changed)(void *ctx, const char *name,
			const struct lfs_cid *before,
			const struct lfs_cid *after);
	void *ctx;
};

/* Replicate home's ledgers with the store at url (opened per thread). */
int lfs_sync_new(struct lfs_sync **out, struct lfs_home *home, const char *url,
		 const struct lfs_sync_hooks *hooks);
void lfs_sync_free(struct lfs_sync *s);

/* Run rounds in a background thread every poll_ms milliseconds. */
int lfs_sync_start(struct lfs_sync *s, unsigned poll_ms);
void lfs_sync_stop(struct lfs_sync *s);

/* Wake the thread now (after a local commit). */
void lfs_sync_kick(struct lfs_sync *s);

/*
 * One round for one ledger (name) or all (NULL), in the calling thread:
 * what `ledgerfs sync` runs. Returns 0 or the first error.
 */
int lfs_sync_round(struct lfs_sync *s, const char *name);

/*
 * Wait until every CAR file ledger name had locally when called, and a
 * head record for its heads, are on the remote. 0, or -ETIMEDOUT after
 * timeout_ms, or -ESHUTDOWN when the sync stops.
 */
int lfs_sync_wait(struct lfs_sync *s, const char *name, int timeout_ms);

/*
 * The same in two steps, for callers that wait in slices (to notice an
 * interrupted reader): take a target now, then wait for it.
 */
uint64_t lfs_sync_wait_target(struct lfs_sync *s);
int lfs_sync_wait_until(struct lfs_sync *s, const char *name, uint64_t target,
			int timeout_ms);

/* Status of ledger name's replication as a new JSON object. */
json_t *lfs_sync_status(struct lfs_sync *s, const char *name);

#endif
