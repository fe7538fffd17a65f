/*
 * ledger: one document database — transactions, reads, history, merging,
 * compaction and checking — over a blockstore directory.
 *
 * Processes. Several processes may open one ledger (a mount and the CLI):
 * writers take an exclusive flock on DIR/lock and first pick up the heads
 * others committed, so nobody's commit is lost or hidden. DIR/lock also
 * holds a count every writer bumps before it changes a head record or the
 * segment: a writer whose count is unchanged reads no file to know that.
 *
 * State. A ledger's state is its set of heads (events nothing names as a
 * parent) and the index root they imply (lfs_merge_root). Readers take a
 * copy of the root and read without locks; writers (commit, ingest,
 * compact) are serialised by a mutex and publish a new state when done.
 *
 * Commit. A transaction of puts and deletes becomes one event whose
 * parents are all current heads (so a commit also merges), one new CAR
 * holding the event, the new document blocks and the index nodes that the
 * CAR's parents don't already hold, and one head record: a file each, or,
 * with opts.segment or without opts.durable, one record appended to the
 * segment. With opts.durable (the default) they are fsynced before commit
 * returns (concurrent commits share one fdatasync of the segment);
 * otherwise lfs_ledger_sync() makes them durable. Ops that
 * change nothing are dropped; a transaction with nothing left commits
 * nothing (and says so) unless there are several heads to merge.
 *
 * Documents. A document is a JSON object; its block is the DAG-CBOR of the
 * object without "_id" (the id is the index key). Reads give it back with
 * "_id" added. Ids: 1..LFS_INDEX_ID_MAX bytes of UTF-8, no NUL.
 *
 * Contracts that hold for every function below:
 *  - Pointers. The ledger and every input pointer must not be NULL unless
 *    the function's comment says "may be NULL". Output parameters are named
 *    out_* (or out; the count beside an array output is n) and are written
 *    only on success. In this header they follow the ledger handle and the
 *    inputs (the handle comes first, as everywhere; the arena that holds
 *    an output's strings sits among the outputs): the one documented
 *    exception to STYLE.md's and HACKING.md's "out-parameters first",
 *    kept because every caller of the most used header would change.
 *  - Ownership. A json_t ** output is a new reference: json_decref() it.
 *    A malloc'd array output (heads, CAR lists) is the caller's to free().
 *    Entry strings filled into a caller's arena live as long as the arena.
 *    lfs_ledger_blocks(), _index() and _store() return borrowed views that
 *    stay valid until lfs_ledger_close(); they are safe to use from any
 *    thread, and what they read is immutable (content-addressed).
 *  - Blocking. Reads (root, heads, get, load_doc, event_root, the views)
 *    never wait for another process. commit, merge, ingest_end, compact and
 *    refresh (when something changed) take the exclusive flock on DIR/lock,
 *    so they wait while another process (the CLI, a mount) commits; no
 *    process holds it longer than one commit or one compaction. Within a
 *    process, writers are serialised by a mutex and readers never block on
 *    them.
 *  - Threads. A struct lfs_ledger may be used from several threads at
 *    once; a struct lfs_txn belongs to one thread.
 *
 * Errors: 0 or a negative errno: -EINVAL bad id or document (not an
 * object, "_id" that disagrees, a number JSON can't carry), -EFBIG document
 * over LFS_DOC_MAX, -ENOENT no such document/event/CAR, -EBADMSG corrupt or
 * unauthentic data, -EAGAIN an ingested CAR whose parents are not here yet
 * (or whose event is too far ahead of this clock): try again later,
 * -ENOMEM, -EIO and file system errors.
 */
#ifndef LFS_LEDGER_H
#define LFS_LEDGER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "arena.h"
#include "blockstore.h"
#include "cid.h"
#include "clock.h"
#include "index.h"

/* The largest document block (its DAG-CBOR); a CAR section must hold it. */
#define LFS_DOC_MAX ((size_t)8 << 20)

struct lfs_ledger;

struct lfs_ledger_opts {
	size_t cache_bytes; /* 0: LFS_BLOCKSTORE_DEFAULT_CACHE */
	/* A bound the ledger's caches share with others' (membudget.h),
	 * outliving the ledger; NULL: their own bounds only. */
	struct lfs_membudget *budget;
	bool durable; /* fsync each commit before it returns */
	/* Append commits to the segment (see blockstore.h) instead of
	 * writing a CAR file and a head record each; always so when not
	 * durable. For many commits per open: a mount, a bulk import. */
	bool segment;
	const char *writer; /* this replica's id (copied); NULL: random */
	/* Clock in microseconds since the epoch; NULL: the real clock. */
	int64_t (*now_us)(void *ctx);
	void *now_ctx;
};

/* Defaults: durable, real clock, default cache, random writer. */
void lfs_ledger_opts_init(struct lfs_ledger_opts *o);

/*
 * Open the ledger stored in dir (creating it when create is set) with its
 * 32-byte key. Loads the head CARs; older ones load when needed.
 */
int lfs_ledger_open(struct lfs_ledger **out, const char *dir,
		    const uint8_t key[LFS_KEY_BYTES],
		    const struct lfs_ledger_opts *opts, bool create);
void lfs_ledger_close(struct lfs_ledger *l);

/* ---- transactions ---- */

struct lfs_txn;

int lfs_txn_new(struct lfs_txn **out);
void lfs_txn_free(struct lfs_txn *t);

/*
 * Add a put of a JSON object or a delete. Validates the id and the
 * document, which is encoded now (-EINVAL: not storable as DAG-CBOR;
 * -EFBIG: over LFS_DOC_MAX): the txn keeps that block, not the JSON. A
 * later op on the same id replaces an earlier one.
 */
int lfs_txn_put(struct lfs_txn *t, const char *id, const json_t *doc);
/*
 * The same, taking doc itself (its reference, even on failure) instead of
 * a copy: doc loses any "_id", and nobody may change it from then on.
 */
int lfs_txn_put_new(struct lfs_txn *t, const char *id, json_t *doc);
int lfs_txn_delete(struct lfs_txn *t, const char *id);
size_t lfs_txn_count(const struct lfs_txn *t);
/*
 * Op i of t (i < lfs_txn_count): its id in *out_id, and the document a
 * lfs_txn_put_new put (without "_id"), or NULL for a delete or a
 * lfs_txn_put (which keeps only the block). Borrowed: valid until t
 * changes or is freed. In no particular order (a commit may sort them).
 */
const json_t *lfs_txn_op(const struct lfs_txn *t, size_t i,
			 const char **out_id);
/*
 * Op i's document, as it will be committed, whichever way it was put: a
 * new reference in *out (NULL for a delete); a lfs_txn_put's is decoded
 * from its block. 0 or a negative errno.
 */
int lfs_txn_op_doc(const struct lfs_txn *t, size_t i, json_t **out);
/*
 * The CID of op i's document block as a commit of t encoded it (the same
 * bytes lfs_ledger_load_doc reads back): false for a delete, or before
 * a commit of t got to the op.
 */
bool lfs_txn_op_cid(const struct lfs_txn *t, size_t i, struct lfs_cid *out);

/*
 * Commit. *out_event (may be NULL) receives the new event; *out_committed
 * (may be NULL) is false when nothing needed committing.
 */
int lfs_ledger_commit(struct lfs_ledger *l, struct lfs_txn *t,
		      struct lfs_cid *out_event, bool *out_committed);

/*
 * Stage (the mount's saves): append t as an intent record to the segment
 * (sealed; in the page cache, so it survives this process) and return;
 * a folder thread then folds what is staged into one commit, as
 * lfs_ledger_commit would make it. Until then:
 *  - this process holds the writer flock, so no other process sees the
 *    ledger without the save (they wait for the fold, a moment), and one
 *    that takes the lock after a crash folds the intents first;
 *  - lfs_ledger_root, _heads, _head_cars, _sync and every writer fold
 *    first (lfs_ledger_settle); lfs_ledger_get with a NULL root and
 *    lfs_ledger_root_for fold first only when their id is staged.
 * Ops are checked and encoded here: an invalid document or id fails the
 * stage; lfs_txn_op_cid gives each put's block after it. A fold that fails (a
 * full disk) keeps the intents, fails every later stage and settle with its
 * error, and is tried again. Without opts.segment, and for an empty t, this is
 * lfs_ledger_commit.
 */
int lfs_ledger_stage(struct lfs_ledger *l, struct lfs_txn *t);

/* Fold what is staged now; 0 when nothing is, or the fold's error. */
int lfs_ledger_settle(struct lfs_ledger *l);

/* Whether id has a staged save that is not folded yet. */
bool lfs_ledger_staged(struct lfs_ledger *l, const char *id);

/*
 * What a fold committed: the roots around it, its event, and its
 * transaction (each id's last staged op; lfs_txn_op_cid gives a put's
 * block). Reported in fold order, from the thread that folded, holding
 * the ledger's writer mutex: the callback must not call back into the
 * ledger's writers or anything that settles.
 */
struct lfs_ledger_fold {
	const struct lfs_cid *before, *after, *event;
	const struct lfs_txn *txn;
};
typedef void (*lfs_ledger_fold_fn)(void *ctx, const struct lfs_ledger_fold *f);
/* Call fn after every fold of saves this process staged (NULL: none). */
void lfs_ledger_on_fold(struct lfs_ledger *l, lfs_ledger_fold_fn fn, void *ctx);

/* Merge several heads into one with an event that changes no document. */
int lfs_ledger_merge(struct lfs_ledger *l, struct lfs_cid *out_event,
		     bool *out_committed);

/*
 * Pick up what other processes committed to this ledger since it last
 * looked: one read of a mapped count when nothing changed (no system
 * call), else the writer lock and a reload of the head records. *out_changed
 * tells whether the state moved; out_before and out_after (may be NULL) receive
 * the roots around it. Readers call it once per poll interval to see the
 * command line's writes.
 */
int lfs_ledger_refresh(struct lfs_ledger *l, struct lfs_cid *out_before,
		       struct lfs_cid *out_after, bool *out_changed);

/*
 * When the last reload of the head records failed on one (its CAR missing
 * or damaged: fsck names the file), that record's CAR, for the message.
 */
bool lfs_ledger_bad_head_record(struct lfs_ledger *l, struct lfs_cid *out);

/* fsync what non-durable commits wrote. */
int lfs_ledger_sync(struct lfs_ledger *l);

/* ---- state and reads ---- */

/* The current index root (after a settle). */
void lfs_ledger_root(struct lfs_ledger *l, struct lfs_cid *out);
/* The root to read id under: a settle only when id is staged. */
void lfs_ledger_root_for(struct lfs_ledger *l, const char *id,
			 struct lfs_cid *out);

/* The current heads (malloc'd; free it), sorted by CID. */
int lfs_ledger_heads(struct lfs_ledger *l, struct lfs_cid **out, size_t *n);

/* The blocks and index views, for walking history and diffs. */
struct lfs_blocks lfs_ledger_blocks(struct lfs_ledger *l);
const struct lfs_index *lfs_ledger_index(struct lfs_ledger *l);
struct lfs_blockstore *lfs_ledger_store(struct lfs_ledger *l);

/*
 * Look up id under root (NULL: current). *out_entry's strings are in a.
 * With out_doc not NULL, also load the document as JSON with "_id".
 */
int lfs_ledger_get(struct lfs_ledger *l, const struct lfs_cid *root,
		   const char *id, struct lfs_index_entry *out_entry,
		   struct lfs_arena *a, json_t **out_doc);

/* Load a document block as JSON, adding "_id": id when id is not NULL. */
int lfs_ledger_load_doc(struct lfs_ledger *l, const struct lfs_cid *doc,
			const char *id, json_t **out);

/* The root recorded by an event (a snapshot's root). */
int lfs_ledger_event_root(struct lfs_ledger *l, const struct lfs_cid *event,
			  struct lfs_cid *out);

/* ---- replication ---- */

/*
 * Take a sealed CAR from another replica (named car): verify it, store it,
 * and move the heads forward. -EAGAIN when its events' parents are not all
 * applied here yet (*out_missing, if not NULL, names a CAR holding one: a
 * file this replica lacks, or one kept here unapplied); the verified file
 * is kept, and ingesting it again after the parent works. A parent whose
 * block is here is not enough: another process on this home may keep a
 * CAR unapplied, and an event above a gap in the history would be applied
 * without the writes below it. A CAR that names parent CARs has each of
 * its events' parents checked against the history (the heads and what a
 * batch applied so far); a self-contained one (a compaction's) against
 * its own blocks.
 * -EAGAIN, with *out_missing untouched, when its event is more than
 * LFS_CLOCK_MAX_AHEAD ahead of this replica's clock: also kept, and applied
 * by a later ingest once the clock has caught up. Both are "retry later",
 * never a rejection; -EBADMSG is a rejection (the file is removed and must
 * never be applied). sealed NULL: car is here already, checked when it
 * arrived (imported earlier, e.g. by a catch-up's fetch): not read again;
 * -ENOENT when its file is not here.
 */
int lfs_ledger_ingest(struct lfs_ledger *l, const struct lfs_cid *car,
		      const uint8_t *sealed, size_t len,
		      struct lfs_cid *out_missing);

/*
 * Ingest n CARs that are here already (as ingest with sealed NULL), in
 * order, in one hold of the writer lock: a catch-up's apply in one pass.
 * Give parents first. A CAR whose root names a CAR of cars that this call
 * did not ingest (not yet, or it failed) is not ingested either: -EAGAIN
 * with out_missing[i] naming that CAR, never applied above a parent that
 * is not. out_rc[i] is each CAR's result as ingest's (-EAGAIN also for a
 * CAR gone from here meanwhile); out_missing[i] is set on -EAGAIN when a
 * parent CAR is known. Returns 0, or this machine's error (-EIO, -ENOMEM,
 * the lock's), which stops the call: the CARs left have -EAGAIN. Use
 * inside a batch (ingest_begin/end), or each CAR moves the heads.
 */
int lfs_ledger_ingest_here(struct lfs_ledger *l, const struct lfs_cid *cars,
			   size_t n, int *out_rc, struct lfs_cid *out_missing);

/*
 * A batch of ingests (a replica catching up on many CARs): between begin
 * and end, ingest checks and stores each CAR (without an fsync each) and
 * notes its events; end moves the heads and the state once, makes
 * everything durable with one file system sync and only then writes the
 * head records, so no record on disk ever names a file that is not.
 * Moving the heads per CAR would walk the history each time: quadratic
 * for a replica catching up. A crash inside a batch leaves the records as
 * they were (the caller ingests those CARs again). Batches nest; every
 * begin needs an end.
 */
int lfs_ledger_ingest_begin(struct lfs_ledger *l);
int lfs_ledger_ingest_end(struct lfs_ledger *l);

/*
 * Is CAR car applied here: its file here and every event its root names as
 * a head part of the history (among the heads or their ancestors, or
 * applied by the current batch)? 1 yes, 0 no (the file is here),
 * -ENOENT when the file is not here, or another negative error. The
 * answer of the ledger itself, whatever any process noted: a walk of the
 * events newer than the CAR's, cheap for recent CARs. A commit made on
 * this home (a record of the segment) is applied. A yes stays true; a no
 * may be stale when another process applied the CAR since this one last
 * took the writer lock (an ingest then finds it applied).
 */
int lfs_ledger_car_applied(struct lfs_ledger *l, const struct lfs_cid *car);

/* The CAR files holding the current heads (malloc'd; free it). */
int lfs_ledger_head_cars(struct lfs_ledger *l, struct lfs_cid **out, size_t *n);

/* ---- maintenance ---- */

/*
 * Write one CAR holding every block of the history (events, every index
 * node any event's root uses, every document version), make it the only
 * head record, and remove the CAR files it replaces — unless another
 * process has the ledger open (it still reads them); then they stay, and a
 * later compaction removes them.
 */
int lfs_ledger_compact(struct lfs_ledger *l, struct lfs_cid *out_car);

/*
 * Check everything: every CAR file (name, authentication, block hashes,
 * root block), every event (shape, parents present and older, and that its
 * root is what its parents and ops give), every index node of the current
 * root and every document it names. report is called once per problem
 * with a message naming the object; returns the number of problems (>= 0)
 * or a negative error when the check itself could not run.
 */
typedef void (*lfs_ledger_report_fn)(void *ctx, const char *what);
int lfs_ledger_fsck(struct lfs_ledger *l, lfs_ledger_report_fn report,
		    void *ctx);

#endif
