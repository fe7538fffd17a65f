/*
 * fs_fireproof: Fireproof ledgers as a read-only file system (libfuse3
 * low-level API, multi-threaded), laid out as ledgerfs shows its own:
 *
 *   /<ledger>/                       one directory per Fireproof ledger
 *   /<ledger>/<id>.json              a live document (fsname.h escaping)
 *   /<ledger>/.snapshots/<event>/    the documents after each clock event
 *   /<ledger>/.snapshots/by-time/<t> -> ../<event>, t the event's time
 *                                    (fp_ledger.h "Time": the oldest car
 *                                    file holding it)
 *   /<ledger>/.ledgerfs/             status, errors, heads, changes
 *
 * Separate from fs.c (ledgerfs's own, writable ledgers): a mount serves one
 * or the other. Every change is refused with EROFS, and the reason goes to
 * the ledger's .ledgerfs/errors and the log.
 *
 * Live. A thread reads each open ledger's meta/main.json every poll_ms and
 * moves to the commit it names; an incomplete file (the application
 * rewrites it in place) is read again at the next tick and is never an
 * error. The kernel keeps names and attributes for a second; what a new
 * commit changes is invalidated at once (control files are never cached).
 */
#ifndef LFS_FS_FIREPROOF_H
#define LFS_FS_FIREPROOF_H

#include "log.h"

struct lfs_fpfs_opts {
	const char *storage;    /* the Fireproof storage directory */
	const char *keybag;     /* its keybag directory */
	const char *mountpoint; /* absolute */
	const char *fuse_opts;  /* extra -o options, or NULL */
	const char *argv0;
	unsigned poll_ms;
	int foreground;
	enum lfs_log_level level;
	int use_syslog;
};

/*
 * Mount, serve until unmounted or signalled, unmount. Returns the process
 * exit status (0 clean stop, 1 failure, with a message on stderr).
 */
int lfs_fpfs_main(const struct lfs_fpfs_opts *o);

#endif
