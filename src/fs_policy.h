/*
 * fs_policy: what saving, renaming and unlinking a file in a ledger
 * directory means, as plain functions of names, bytes and what exists:
 * no I/O, no locks, no FUSE. fs_save carries the decisions out.
 *
 * The rule: the file name is the identity. <id>.json (fsname.h escapes
 * the id) holds document <id>; any other name is a scratch file. The
 * bytes of a document file are committed when they are a JSON object
 * (DAG-JSON) whose "_id", if present, is a string; that "_id" is then
 * replaced by the file's id, whatever it said: a copied document (`cp
 * a.json b.json`, which carries "_id": "a") is saved as b, exactly as
 * `mv a.json b.json` moves a to b. Anything else (not JSON, not an object,
 * a non-string "_id", a value a document cannot hold) is refused and kept
 * as a draft; blank bytes (an editor's fresh file) are a draft without an
 * error.
 *
 * Errors: 0 or a negative errno (-ENOMEM; -EINVAL for a name that is not
 * what the function expects).
 */
#ifndef LFS_FS_POLICY_H
#define LFS_FS_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "index.h"
#include "ledger.h"

/* A document renamed to a scratch name is deleted after this long (ms)
 * unless a new version is saved meanwhile (editors' backup renames). */
#define LFS_FS_GRACE_MS 2000

/* The largest document file (JSON text) a write may build: EFBIG beyond. */
#define LFS_FS_TEXT_MAX ((size_t)16 << 20)

/* ---- saving the bytes of a document file ---- */

enum lfs_save_verdict {
	LFS_SAVE_COMMIT, /* commit txn: document id is doc */
	LFS_SAVE_DRAFT,  /* keep the bytes as a draft; not an error (blank) */
	LFS_SAVE_REFUSE, /* keep the bytes as a draft; why says why (EINVAL) */
};

struct lfs_save_decision {
	enum lfs_save_verdict verdict;
	char id[LFS_INDEX_ID_MAX + 1];
	/* COMMIT: the document without "_id" (owned) and the transaction
	 * putting it (owned); NULL otherwise. */
	json_t *doc;
	struct lfs_txn *txn;
	/* COMMIT: the bytes had an "_id" naming another document, replaced. */
	bool id_replaced;
	/* REFUSE: what is wrong, for .ledgerfs/errors and the log. */
	char why[300];
};

/*
 * Decide what saving data (len bytes) under file name `name` does. The
 * decision holds what it needs; release it with lfs_save_decision_release.
 * -EINVAL when name is not a document name (a scratch file is not saved).
 */
int lfs_policy_save(struct lfs_save_decision *out, const char *name,
		    const uint8_t *data, size_t len);
void lfs_save_decision_release(struct lfs_save_decision *d);

/* ---- rename from -> to within one ledger ---- */

enum lfs_rename_action {
	/* scratch -> scratch: rename the local file. */
	LFS_RENAME_SCRATCH,
	/* scratch -> document (sed -i, `mv tmp x.json`): save the scratch
	 * file's bytes as `to` (save: commit or draft, the rename happens
	 * either way), then remove the scratch file. */
	LFS_RENAME_SAVE,
	/* document -> scratch (an editor's backup): copy the content to the
	 * scratch file, drop the source's draft, and delete the document
	 * (if committed) unless a new version is saved within the grace
	 * period. */
	LFS_RENAME_BACKUP,
	/* document -> document: commit txn (put `to`, delete `from` when it
	 * is committed) as one transaction, drop both drafts and cancel a
	 * pending delete of `to`. */
	LFS_RENAME_COMMIT,
	/* document -> document whose content is not a document, and the
	 * source only a draft: move the draft. */
	LFS_RENAME_MOVE_DRAFT,
	/* document -> document whose content is not a document while the
	 * source is committed: refused with -EINVAL, nothing changes. */
	LFS_RENAME_REFUSE,
};

struct lfs_rename_plan {
	enum lfs_rename_action action;
	bool from_doc, to_doc;
	char from_id[LFS_INDEX_ID_MAX + 1]; /* when from_doc */
	char to_id[LFS_INDEX_ID_MAX + 1];   /* when to_doc */
	/* COMMIT: the transaction (owned). BACKUP: delete_later tells
	 * whether a committed document is to be deleted after the grace. */
	struct lfs_txn *txn;
	bool delete_later;
	char why[300]; /* REFUSE */
};

/*
 * Plan renaming file `from` to `to`. content/len are the bytes `from`
 * reads as now (needed for document -> document; may be NULL otherwise),
 * from_committed whether `from` names a committed document. Release the
 * plan with lfs_rename_plan_release.
 */
int lfs_policy_rename(struct lfs_rename_plan *out, const char *from,
		      const char *to, const uint8_t *content, size_t len,
		      bool from_committed);
void lfs_rename_plan_release(struct lfs_rename_plan *p);

/* ---- unlink ---- */

enum {
	LFS_UNLINK_SCRATCH = 1, /* remove the scratch file */
	LFS_UNLINK_COMMIT = 2,  /* commit the document's deletion */
	LFS_UNLINK_DRAFT = 4,   /* remove the draft (after the commit) */
};

/*
 * What unlinking file `name` does, given whether its document is hidden
 * by a pending delete, committed, and has a draft: *out is a set of
 * LFS_UNLINK_* actions. -ENOENT when there is nothing to unlink. A pending
 * delete means the committed version is already on its way out (renamed
 * to a backup): only the new draft goes, so an editor that renames its
 * backup back leaves no commit at all.
 */
int lfs_policy_unlink(unsigned *out, const char *name, bool pending,
		      bool committed, bool draft);

#endif
