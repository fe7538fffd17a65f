/*
 * fs_int: the state the file system's modules share, their threads and
 * their lock order. Internal: only src/fs*.c include it. No FUSE types
 * here: the modules below fs.c know nothing of libfuse.
 *
 * Modules, each using only those above it in this list:
 *
 *   fs_int.h     this: struct lfs_fs, the lock order, small helpers
 *   fs_policy    what a save, a rename or an unlink means (pure functions)
 *   fs_render    a version's text, the table of their lengths, and the
 *                cache of texts rendered or committed lately
 *   fs_ledger    per-ledger mount state: opening (and key retry), the
 *                error ring, the change feed, pending deletes, commits,
 *                picking up other processes' commits, snapshot lists
 *   fs_attr      modes, owners and times users set, kept locally
 *   fs_node      the inode table and name resolution
 *   fs_view      what a node reads as: document content, attributes,
 *                control files, directory listings
 *   fs_save      carrying out the policy: drafts, saves, renames, unlinks
 *   fs.c         the FUSE handlers, the housekeeper, replication hooks
 *
 * Threads:
 *   - libfuse workers (up to 16) run every operation, any of them on any
 *     node, concurrently;
 *   - the housekeeper (fs.c) wakes every 200 ms: commits deletes whose
 *     grace period is over, frees released handles, picks up commits
 *     other processes made (lfs_fsl_refresh_all) and writes the changed
 *     attribute tables (lfs_attr_save_all);
 *   - the sync thread (sync.c), with a remote, calls the replication hooks
 *     (lfs_fs_sync_hooks): it asks for ledgers and reports their changes.
 *
 * Locks, in the order they may be taken (never the other way round):
 *
 *   0. fs->cache_lock (fs_inval.h), for reading: a lookup, getattr, setattr or
 *      create of a document, folder or ledger holds it from before it reads
 *      what it answers until it has answered (across I/O and the reply).
 *      The housekeeper takes it for writing, holding nothing else, and
 *      lets go at once: a barrier before it tells the kernel of changes
 *      from elsewhere, so no answer read before a change reaches the
 *      kernel after the kernel was told. Neither the sync thread nor a
 *      FUSE worker ever notifies the kernel of those (the queue fs->inval).
 *   1. lfs_sync's own locks (sync.c): held by the sync thread while it
 *      calls the hooks, which take fs->lock. fs code calls lfs_sync_*
 *      with none of its locks held.
 *   2. fs->lock: the inode table and every node's counts, names and write
 *      buffer; the ledger list; each ledger's pending deletes, error ring
 *      and key-retry state; handles' in-flight counts and the graveyard;
 *      the attribute tables (fs_attr.c).
 *   3. The leaf locks of fs_render: the render cache's and each size
 *      table's.
 *
 *   fs->lock and fs_render's locks are never held together, and all are
 *   leaf locks: no disk or network I/O, no lfs_ledger_*, lfs_sync_* or libfuse
 *   call (a reply or a notification may block on the kernel) is made
 *   while either is held. fs->hk_lock only guards the housekeeper's
 *   running flag and its condition variable; nothing else is taken under
 *   it. lfs_ledger serialises its own writers (ledger.h) and is called
 *   with no fs lock held.
 *
 * Lifetimes: a struct lfs_fsl lives until lfs_fs_free (the ledger list
 * only grows), so a pointer to one may be used without the lock; its `l`
 * goes from NULL to an open ledger at most once (a key imported while
 * mounted), published under fs->lock. A node lives while the kernel knows
 * it (nlookup) or an operation pins it (nopen).
 */
#ifndef LFS_FS_INT_H
#define LFS_FS_INT_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>

#include "cid.h"
#include "home.h"
#include "sync.h"

#define LFS_FS_SNAPSHOTS ".snapshots"
#define LFS_FS_CONTROL   ".ledgerfs"
#define LFS_FS_BY_TIME   "by-time"
/* How long the kernel may keep names and directory attributes (s). */
#define LFS_FS_ENTRY_TTL 1.0
/* How long it may keep a committed document's name and attributes (s),
 * by default: it is told at once when a commit from elsewhere changes
 * one (fs.c). */
#define LFS_FS_DOC_TTL 30.0
/* Documents up to this size go into the page cache with their first open
 * (fs.c's preload). */
#define LFS_FS_PRELOAD_MAX ((size_t)64 << 10)
#define LFS_FS_DOC_TTL_MAX 86400
/* The change feed's size past which it starts again (fs_ledger.c), by
 * default, and the least -o changes_max takes. */
#define LFS_FS_CHANGES_MAX     ((size_t)8 << 20)
#define LFS_FS_CHANGES_MAX_MIN ((size_t)4 << 10)
/* What the caches keep in all (membudget.h: the text cache and every open
 * ledger's block and index caches), by default, and the least -o
 * cache_max takes. */
#define LFS_FS_CACHE_MAX     ((size_t)32 << 20)
#define LFS_FS_CACHE_MAX_MIN ((size_t)1 << 20)
/* The housekeeper looks this often whether to give freed heap back, and
 * does once the daemon's resident size grew this much (fs.c). */
#define LFS_FS_TRIM_EVERY_MS 2000
#define LFS_FS_TRIM_MIN      ((size_t)16 << 20)

struct lfs_fsl;
struct lfs_node;
struct lfs_render_cache;
struct lfs_membudget;
struct lfs_attr_table;
struct lfs_handle;
struct lfs_inval;
struct fuse_session;

struct lfs_fs {
	struct lfs_home *home;
	struct fuse_session *se; /* NULL until lfs_fs_start */
	pthread_mutex_t lock;    /* see the lock order above */
	/* The inode table (fs_node.c). */
	struct lfs_node **table;  /* by inode number */
	struct lfs_node **ktable; /* by identity; nslots too */
	size_t nslots, nnodes;
	/* Every ledger seen so far (fs_ledger.c); only grows. */
	struct lfs_fsl *ledgers;
	/* Texts rendered or committed lately (fs_render.h; its own lock). */
	struct lfs_render_cache *cache;
	struct lfs_membudget *budget; /* -o cache_max: shared by all caches */
	uint8_t vtag_key[16]; /* SipHash's key (struct lfs_vtag), random */
	/* Released handles, oldest first, freed by the housekeeper later
	 * (fs.c); the tail is where the next one goes. */
	struct lfs_handle *graveyard, **graveyard_tail;
	struct lfs_handle *open_handles; /* not yet released (fs.c) */
	/* Retired handles still holding a host file, and how many may
	 * (LFS_FS_GRAVE_FDS, or a quarter of the process's descriptors);
	 * the rest close at release. */
	size_t grave_fds, grave_fds_max;
#define LFS_FS_GRAVE_FDS 256
	pthread_t housekeeper;
	int running;
	bool hk_wake; /* work waits: skip the sleep (under hk_lock) */
	/* The housekeeper's giving back of freed heap (fs.c): when it last
	 * looked, and the resident size after the last time it did. */
	int64_t trimmed_ms, trim_floor;
	pthread_mutex_t hk_lock;
	pthread_cond_t hk_cond;
	/*
	 * What the kernel is to forget, for the housekeeper to tell it
	 * (fs.c; under fs->lock), and the barrier it passes first: a request
	 * that answers with attributes the kernel may keep holds cache_lock
	 * for reading from before it reads them until it has answered.
	 */
	struct lfs_inval *inval;
	pthread_rwlock_t cache_lock;
	/* Mount options (lfs_fs_parse_opts), set before the session runs. */
	uid_t uid; /* owner and group shown for what has none set */
	gid_t gid;
	mode_t umask; /* taken off the default modes */
	bool allow_other;
	bool snapdir_visible; /* list .snapshots and .ledgerfs */
	double doc_ttl;       /* -o cache_timeout: LFS_FS_DOC_TTL */
	size_t changes_max;   /* -o changes_max: LFS_FS_CHANGES_MAX */
	/* Attributes set by users (fs_attr.c), under fs->lock. */
	struct lfs_attr_table *attrs;
	int64_t started_us;    /* directories' times: when the mount began */
	struct lfs_sync *sync; /* NULL without a remote */
	/*
	 * Called (no lock held) when a ledger moved from root before to
	 * after by a commit that did not come through this mount, so the
	 * kernel's caches of exactly the changed names can be dropped. Set
	 * by fs.c; NULL: nothing to tell.
	 */
	void (*moved)(struct lfs_fs *fs, struct lfs_fsl *lg,
		      const struct lfs_cid *before,
		      const struct lfs_cid *after);
};

/* Wall-clock time in milliseconds. */
static inline int64_t lfs_fs_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* "dir/name", malloc'd; NULL when out of memory. */
static inline char *lfs_fs_path(const char *dir, const char *name)
{
	size_t n = strlen(dir) + strlen(name) + 2;
	char *p = malloc(n);
	if (p)
		snprintf(p, n, "%s/%s", dir, name);
	return p;
}

#endif
