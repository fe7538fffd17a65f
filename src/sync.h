/*
 * sync: replicate every ledger of this machine's home with a remote store.
 *
 * Remote layout (under the store's prefix; <ledger> percent-encoded):
 *   <ledger>/car/<cid>     sealed CAR files, immutable, named by content
 *   heads/<ledger>~<cid>   one small record per head CAR:
 *                          {"car": {"/": "<cid>"}, "parents": [...]}
 *                          every ledger's records under one prefix, so one
 *                          listing (one request per 1000 records) tells a
 *                          mount about all its ledgers
 *   heads/<ledger>         an empty marker: the ledger exists (other
 *                          machines show those they have no key for)
 *   <ledger>/head/<cid>    the same records in the legacy layout, and
 *   ledgers/<ledger>       the legacy marker: still written, so older
 *                          versions sharing the store see every change;
 *                          read at a mount's first round of each ledger
 *                          (so stores written by older versions just work,
 *                          no migration) and then slowly: one ledger's
 *                          legacy records every 5 minutes, the legacy
 *                          markers every 10 minutes
 *
 * A round: one listing of heads/ (the slow ones when due), then per
 * ledger: pull, then push. Idle, a round costs one request whatever the
 * number of ledgers: pull and push make requests only for what changed.
 *   pull  from the listing, the head records; for each CAR this replica has not
 *         applied, fetch it and ingest it (which checks the bytes against
 *         the name, then authentication, then every block hash and event),
 *         applying the CARs it needs first, parents before children.
 *         Changes are reported through the changed hook.
 *   push  upload every local CAR file the remote doesn't have yet (the
 *         outbox: local CARs not in HOME/state/<ledger>/pushed, a list that
 *         survives restarts and crashes), then a head record for each local
 *         head CAR, and only then delete the remote head records whose
 *         events are ancestors of this replica's heads. A record is added
 *         before the records it supersedes are removed, so a reader never
 *         sees a ledger without heads, and concurrent writers each leave
 *         their head: nothing relies on compare-and-swap.
 *
 * What is rejected, what is retried. Only a CAR proven bad is rejected:
 * its bytes do not match its name, it fails authentication or a block or
 * event check (ingest's -EBADMSG), or it is larger than LFS_CAR_MAX_FILE
 * (refused before its bytes are read). A CAR is fetched as a stream: its
 * hash is taken and its envelope chunks are authenticated as they arrive
 * (past 4 MiB it goes to an unnamed file in HOME/state/<ledger>/, not to
 * memory), so junk of any size is refused after its first chunk and only
 * an authentic CAR is ever read whole. A rejected CAR is logged once,
 * never applied, and not fetched again until the process restarts; a
 * head that needs it stays unapplied. Everything else is retried, forever:
 *   - the store failing (-EAGAIN: down, reset, too slow; -EACCES ...):
 *     the round fails, and the next one comes after a backoff that
 *     doubles from the poll interval up to 30 s;
 *   - a CAR missing on the store (a head record naming it, or a parent
 *     named by a CAR), an object that is not a readable file, a CAR whose
 *     ingest says "later" (-EAGAIN: a parent not here, a clock ahead of
 *     ours), an unsupported format: that CAR is logged once and tried
 *     again in later rounds, with its own backoff (the same doubling up to
 *     30 s); the other heads go on.
 * A CAR that ingest kept unapplied (-EAGAIN) is listed in
 * HOME/state/<ledger>/waiting (written before the ingest, so a crash
 * leaves at worst an extra entry). Every process on the home (mounts,
 * the command line) shares that file: it is appended to and rewritten
 * under a flock on HOME/state/<ledger>/lock, a rewrite takes out only
 * what that process applied, and a CAR file not known to a process is
 * looked up there again before it counts as applied. Ingest accepts a
 * CAR whose parent events are present, and a kept CAR holds events, so a
 * CAR is ingested only once the CARs its root names are applied; kept
 * CARs are tried again every round, until applied.
 * A head record that is not one (not JSON naming its own CAR, larger than
 * 64 KiB, not a regular file) is skipped while it is listed, logged once;
 * it never fails a round.
 *
 * Status (lfs_sync_status): "state" is "synced" (the last round pushed
 * and pulled everything), "incomplete" (it worked, but some remote heads
 * could not be applied yet: "unapplied_heads", and "last_error" says why;
 * "missing_files" lists CARs a head needs that the store does not have,
 * with "since", when this home first missed each; a missing file is
 * retried forever, never rejected, and kept in HOME/state/<ledger>/missing
 * until it arrives or no head needs it),
 * "failing" (the last round failed: "last_error"), "no key" or "starting".
 * "pending_uploads" is the outbox, counted at the start of every round,
 * before any network, so it is right while the store is down too.
 *
 * Polling. The thread runs a round every poll interval (poll_ms) while
 * something moved in the last 20 s (a local commit or kick, a change
 * listed, pulled or pushed), then at an interval that doubles up to 30 s
 * (about 120 listings an hour, idle); lfs_sync_kick() runs one at once
 * and makes it fast again. Status shows the interval ("poll_interval_ms").
 *
 * Real-time endpoint (lfs_sync_use_meta(), meta.h). After writing head
 * records to the store, push announces them there; the thread applies the
 * CARs other machines announce as soon as they arrive (one GET each, no
 * listing), between rounds, and polls the store as without an endpoint,
 * so an endpoint that is down, empty or lying loses nothing. Status says
 * how the endpoint is ("meta": "live", "connecting", "unreachable,
 * polling the store"; "the store" without one).
 *
 * Deadlines. Each request to the store has store.h's
 * deadlines, so no round waits forever on a store that hangs or trickles.
 * lfs_sync_stop() cuts the request in flight short (within about a
 * second) and gives later rounds, such as the last push at unmount,
 * LFS_SYNC_FINAL_MS in all. Only this thread uses the network.
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

/* After lfs_sync_stop(), rounds have this long in all (ms). */
#define LFS_SYNC_FINAL_MS 2000

struct lfs_sync;

/*
 * The hooks run on the thread that runs the round: the sync thread, or the
 * caller of lfs_sync_round(). They run while that round holds the round
 * lock (rounds never overlap) but never under the sync's state lock, so
 * they may call lfs_sync_status() and lfs_sync_kick(), and the FUSE layer
 * may send kernel notifications from them; they must not call
 * lfs_sync_round(), lfs_sync_wait*() or lfs_sync_stop() (the round lock is
 * held), and they should return quickly: the round waits for them. The
 * catch-up fetch threads never call them.
 */
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

/*
 * Run rounds in a background thread every poll_ms milliseconds. stop ends
 * the thread, cutting a request in flight short, and returns within about
 * a second whatever the store does; rounds run after it (the caller's last
 * push) end LFS_SYNC_FINAL_MS after it.
 */
int lfs_sync_start(struct lfs_sync *s, unsigned poll_ms);
void lfs_sync_stop(struct lfs_sync *s);

/*
 * Also use the real-time metadata endpoint url (meta.h), before
 * lfs_sync_start(). -EINVAL: a bad URL; -EPROTONOSUPPORT: an endpoint
 * this build does not offer.
 */
int lfs_sync_use_meta(struct lfs_sync *s, const char *url);

/* Wake the thread now (after a local commit). */
void lfs_sync_kick(struct lfs_sync *s);

/*
 * One round for one ledger (name) or all (NULL), in the calling thread:
 * what `ledgerfs sync` runs. Returns 0 or the first error; 0 does not mean
 * every remote head was applied: see lfs_sync_status().
 */
int lfs_sync_round(struct lfs_sync *s, const char *name);

/*
 * Wait for a round of ledger name that started after the call: 0 when it
 * pushed everything the ledger had locally when called (every CAR file and
 * a head record for its heads) and applied every remote head;
 * -EINPROGRESS when it pushed, but some remote heads could not be applied
 * (status says why); the round's error when it failed other than
 * -EAGAIN (-EACCES: credentials refused, -ENOKEY: no key here ...); while
 * rounds fail with -EAGAIN (the store down) it waits on, until
 * -ETIMEDOUT after timeout_ms. -ESHUTDOWN when the sync stops.
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

/*
 * Is p[0..len) a well-formed head record for car: {"car": {"/": <car's
 * name>}, "parents": [...]} ("parents" may be absent)? Exposed for the
 * fuzz target; these bytes come from the remote store.
 */
bool lfs_sync_record_ok(const uint8_t *p, size_t len,
			const struct lfs_cid *car);

#endif
