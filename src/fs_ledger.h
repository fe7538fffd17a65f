/*
 * fs_ledger: the mount's state for each ledger it has seen — the open
 * ledger (or why it could not be opened), its local directories, the ring
 * of refused saves behind .ledgerfs/errors, the change feed, the deletes
 * waiting out their grace period — and the operations on it that are not
 * about files: committing, picking up other processes' commits, listing
 * its events for .snapshots.
 *
 * Locks (fs_int.h): every function here takes fs->lock itself when it
 * needs it, and is called with no fs lock held. The ledger I/O (opening,
 * committing, refreshing, syncing) happens outside fs->lock.
 */
#ifndef LFS_FS_LEDGER_H
#define LFS_FS_LEDGER_H

#include <stdbool.h>
#include <stdint.h>

#include "buf.h"
#include "fs_int.h"
#include "fs_render.h"
#include "idtree.h"
#include "ledger.h"

/* Refused saves kept for .ledgerfs/errors. */
#define LFS_FSL_ERRORS_KEPT 100

struct lfs_fsl_pending {
	char *id;
	int64_t deadline_ms;
	bool committing; /* in a delete commit now (lfs_fsl_flush_pending) */
};

struct lfs_fsl {
	/* Set once when made, then read without a lock. */
	struct lfs_fs *fs; /* the mount it belongs to */
	char *name;
	char *scratch, *drafts, *state; /* HOME/scratch|drafts|state/<name> */
	/* scratch and drafts open (O_PATH; -1 when lfs_fsl.err says they
	 * could not be made): the roots of every walk to a local file in
	 * them (lfs_walk_at), whose paths may be as long as the mount's. */
	int scratch_fd, drafts_fd;
	/* state/changes, open for appending once a change came (-1 before),
	 * its length (only this process appends to it: no fstat a commit),
	 * and the length past which it is kept as changes.1 and starts
	 * again (-o changes_max). Under changes_lock. */
	pthread_mutex_t changes_lock;
	int changes_fd;
	uint64_t changes_len;
	size_t changes_max;
	/*
	 * The open ledger, or NULL with err saying why (-ENOKEY: no key
	 * here). Goes from NULL to open at most once, under fs->lock, when a
	 * key shows up (lfs_fsl_get retries).
	 */
	struct lfs_ledger *l;
	int err;
	/* Its documents' rendered lengths (fs_render.h; NULL when out of
	 * memory). Set once when made, then used without fs->lock. */
	struct lfs_render_sizes *sizes;
	/* Under fs->lock. */
	bool opening; /* a thread is retrying the key */
	struct lfs_fsl_pending *pending;
	size_t npending;
	/* Signalled when a delete commit of pending ids ends. */
	pthread_cond_t pending_done;
	char *errors[LFS_FSL_ERRORS_KEPT]; /* newest at (nerrors-1) % N */
	uint64_t nerrors;
	/* When a name was last added or removed (the directory's mtime;
	 * 0: not since the mount began). Atomic: lfs_fsl_dir_changed. */
	int64_t changed_us;
	/* Whether the drafts directory holds anything (lfs_fsl_no_drafts):
	 * bumped before every change that may add to it, and the count at
	 * which the housekeeper last found it empty. Atomic. */
	uint64_t drafts_gen, drafts_empty_gen;
	/* The last lfs_ledger_refresh error, logged once when it changes. */
	int refresh_err;
	/* Ids in order, for folders: of the current root, and of the last
	 * snapshot looked at (idtree.h; each has its own lock). */
	struct lfs_idtree tree, snaptree;
	/* The root whose ids STATE/ids holds (saved_ids: there is one). */
	struct lfs_cid ids_root;
	bool saved_ids;
	struct lfs_fsl *next;
};

/*
 * The state of ledger `name`, found or made (opening the ledger, or
 * noting why it can't be). must_exist: NULL when HOME has no such ledger.
 * A ledger that had no key is opened if one has been imported since.
 * NULL also when out of memory. Never freed before lfs_fsl_free_all.
 */
struct lfs_fsl *lfs_fsl_get(struct lfs_fs *fs, const char *name,
			    bool must_exist);

/* Close and free every ledger's state (at unmount, no thread left),
 * leaving its ids in STATE/ids for the next mount's first listing. */
void lfs_fsl_free_all(struct lfs_fs *fs);

/*
 * Record a refused operation the user should know about: in the error
 * ring (newest last, LFS_FSL_ERRORS_KEPT kept) and in the log.
 */
void lfs_fsl_error(struct lfs_fs *fs, struct lfs_fsl *lg, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Append the error ring, oldest first, one line each, to out. */
int lfs_fsl_errors_text(struct lfs_fs *fs, struct lfs_fsl *lg,
			struct lfs_buf *out);

/* The error count and a copy of the last error (NULL: none; free it). */
uint64_t lfs_fsl_last_error(struct lfs_fs *fs, struct lfs_fsl *lg,
			    char **out_last);

/* A name in lg's directory was added or removed (now): its mtime moves.
 * Commits and changes from elsewhere call it themselves. */
void lfs_fsl_dir_changed(struct lfs_fsl *lg);
/* When lg's directory last changed (0: not since the mount began). */
int64_t lfs_fsl_dir_time(struct lfs_fsl *lg);

/* ---- drafts ---- */

/*
 * Does lg have no drafts at all? True when the last look found its drafts
 * directory empty and nothing made or moved anything into it since, so
 * the common case (no draft anywhere) needs no system call to tell that
 * a name has none. The home's drafts are this mount's alone (one mount
 * per home: cmd_mount.c holds HOME/mount.lock).
 */
bool lfs_fsl_no_drafts(struct lfs_fsl *lg);
/* Call before anything is made or moved in lg's drafts directory. */
void lfs_fsl_drafts_coming(struct lfs_fsl *lg);
/* Look again whether the drafts directory is empty (the housekeeper,
 * while it is not known to be). */
void lfs_fsl_drafts_check(struct lfs_fsl *lg);

/* ---- deletes waiting out the grace period ---- */

/* Is id hidden by a pending delete? */
bool lfs_fsl_pending_has(struct lfs_fs *fs, struct lfs_fsl *lg, const char *id);
/* Delete id after LFS_FS_GRACE_MS (once; a second add keeps the first). */
int lfs_fsl_pending_add(struct lfs_fs *fs, struct lfs_fsl *lg, const char *id);
/*
 * A new version of id is about to be committed: id is not to be deleted.
 * Call it before that commit: a delete of id already being committed is
 * waited for, so the new version's commit comes after it, never before.
 */
void lfs_fsl_pending_cancel(struct lfs_fs *fs, struct lfs_fsl *lg,
			    const char *id);
/* The pending ids as a JSON array of strings (new reference). */
json_t *lfs_fsl_pending_json(struct lfs_fs *fs, struct lfs_fsl *lg);
/* Commit the deletes whose time has come (all of them: force), one
 * transaction per ledger. The ids stay pending (hidden) while that commit
 * runs; when it fails they wait another grace period and are tried again
 * (at unmount, force: the failure is logged and they show again). */
void lfs_fsl_flush_pending(struct lfs_fs *fs, bool force);

/* ---- commits and other processes' commits ---- */

/*
 * Commit t to lg (first picking up what others committed, so the commit
 * is never based on a stale head), append its changes to the feed and
 * kick the sync. t stays the caller's.
 */
int lfs_fsl_commit(struct lfs_fs *fs, struct lfs_fsl *lg, struct lfs_txn *t);

/*
 * lg moved from root before to after without this mount committing
 * (source says from where, for the log): feed the change log and tell
 * fs->moved.
 */
void lfs_fsl_moved(struct lfs_fs *fs, struct lfs_fsl *lg,
		   const struct lfs_cid *before, const struct lfs_cid *after,
		   const char *source);

/* Pick up commits other processes on this home made to lg (true: some),
 * or to every open ledger (kicking the sync when there were some; and
 * looking again at drafts directories not known to be empty). */
bool lfs_fsl_refresh(struct lfs_fs *fs, struct lfs_fsl *lg);
void lfs_fsl_refresh_all(struct lfs_fs *fs);

/*
 * Fill the sizes of versions committed elsewhere (queued when the mount
 * learnt of them: fs_render.h) for about budget_us microseconds, across
 * the open ledgers; returns how many are left. The housekeeper's.
 */
size_t lfs_fsl_fill_sizes(struct lfs_fs *fs, int64_t budget_us);
/* How many of lg's versions wait for their size. */
size_t lfs_fsl_sizes_to_fill(struct lfs_fsl *lg);

/* Make every open ledger's commits durable. */
void lfs_fsl_sync_all(struct lfs_fs *fs);

/* ---- events, for .snapshots ---- */

struct lfs_fsl_events {
	struct lfs_cid *cids;
	int64_t *times;
	size_t n, cap;
};

/* Every event of lg's history (clock walk order); _release frees it. */
int lfs_fsl_events(struct lfs_fsl_events *out, struct lfs_fsl *lg);
void lfs_fsl_events_release(struct lfs_fsl_events *s);

/*
 * The by-time names of the events: the ISO time, made unique by a CID
 * suffix when several events share one. A malloc'd array of s->n names
 * (free it); NULL when out of memory.
 */
#define LFS_FSL_BYTIME_LEN 80
char (*lfs_fsl_bytime_names(
	const struct lfs_fsl_events *s))[LFS_FSL_BYTIME_LEN];

#endif
