/*
 * fs_attr: what a user set on a file that its ledger does not hold — the
 * permission bits, owner and group of a document or of a ledger directory
 * (chmod, chown) and a document's modification time (touch, utimensat,
 * `rsync -a`) — kept on this machine only, per ledger, in
 * HOME/state/<ledger>/attrs, for this home's mounts. Never committed,
 * never replicated.
 *
 * A set mtime belongs to the version it was set on (its block CID; a zero
 * CID for a draft): once the document changes, here or elsewhere, its
 * mtime is again its last commit's time. Mode, owner and group stay with
 * the name until it is removed; a rename carries them.
 *
 * Names are file names in the ledger directory; "" is the directory
 * itself.
 *
 * The file: lines "v1 MODE UID GID MTIME CID HEXNAME", each field "-"
 * when not set (MODE octal, MTIME in µs, HEXNAME the name's bytes in hex).
 * It is a journal: a save appends the lines of the names that changed
 * (all "-": none left), the last line of a name wins, and the file is
 * written whole once it holds twice as many lines as names. A line that
 * does not parse is skipped, and so is a last line without its newline
 * (cut short by a crash).
 *
 * Locks (fs_int.h): called with no fs lock held; the tables are under
 * fs->lock, the file is read and written outside it.
 */
#ifndef LFS_FS_ATTR_H
#define LFS_FS_ATTR_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "cid.h"
#include "fs_int.h"
#include "fs_ledger.h"

enum {
	LFS_ATTR_MODE = 1,
	LFS_ATTR_UID = 2,
	LFS_ATTR_GID = 4,
	LFS_ATTR_MTIME = 8,
};

struct lfs_attr {
	unsigned set; /* which fields hold a value: LFS_ATTR_* */
	mode_t mode;  /* permission bits (07777) */
	uid_t uid;
	gid_t gid;
	int64_t mtime_us;
	struct lfs_cid version; /* the version the mtime was set on */
	int64_t set_us; /* when the mtime was set by this mount (else 0) */
};

/* The attributes set on name of lg (out->set == 0: none). */
int lfs_attr_get(struct lfs_fs *fs, struct lfs_fsl *lg, const char *name,
		 struct lfs_attr *out);

/* Set the fields of a named by a->set on name, keeping the others. */
int lfs_attr_set(struct lfs_fs *fs, struct lfs_fsl *lg, const char *name,
		 const struct lfs_attr *a);

/* A rename: `to` takes from's attributes (none if from had none). */
void lfs_attr_rename(struct lfs_fs *fs, struct lfs_fsl *lg, const char *from,
		     const char *to);

/* The name is gone: forget its attributes. */
void lfs_attr_remove(struct lfs_fs *fs, struct lfs_fsl *lg, const char *name);

/* Write every changed table to its file (the housekeeper, unmount). */
void lfs_attr_save_all(struct lfs_fs *fs);

/* Free the tables (at unmount, after lfs_attr_save_all, no thread left). */
void lfs_attr_free_all(struct lfs_fs *fs);

#endif
