#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "fs_policy.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "fsname.h"
#include "jsonparse.h"

static bool blank(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] != ' ' && p[i] != '\n' && p[i] != '\t' && p[i] != '\r')
			return false;
	return true;
}

int lfs_policy_save(struct lfs_save_decision *out, const char *name,
		    const uint8_t *data, size_t len)
{
	memset(out, 0, sizeof(*out));
	if (!lfs_fsname_path_to_id(out->id, sizeof(out->id), name))
		return -EINVAL;
	if (blank(data, len)) {
		out->verdict = LFS_SAVE_DRAFT;
		return 0;
	}
	out->verdict = LFS_SAVE_REFUSE;
	if (len > LFS_FS_TEXT_MAX) {
		snprintf(out->why, sizeof(out->why),
			 "over the %zu MiB document size limit",
			 LFS_FS_TEXT_MAX >> 20);
		return 0;
	}
	json_error_t jerr;
	json_t *doc = lfs_json_parse(data, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!doc) {
		snprintf(out->why, sizeof(out->why),
			 "not valid JSON: %s (line %d, column %d)", jerr.text,
			 jerr.line, jerr.column);
		return 0;
	}
	if (!json_is_object(doc)) {
		snprintf(out->why, sizeof(out->why),
			 "a document must be a JSON object, not %s",
			 json_is_array(doc) ? "an array" : "a single value");
		json_decref(doc);
		return 0;
	}
	json_t *given = json_object_get(doc, "_id");
	if (given && !json_is_string(given)) {
		snprintf(out->why, sizeof(out->why),
			 "its \"_id\" is not a string (the file name gives "
			 "the id: \"%.200s\")",
			 out->id);
		json_decref(doc);
		return 0;
	}
	out->id_replaced = given && strcmp(json_string_value(given), out->id);
	json_object_del(doc, "_id");
	int rc = lfs_txn_new(&out->txn);
	/* The txn and the decision share doc; neither changes it. */
	if (!rc && (rc = lfs_txn_put_new(out->txn, out->id,
					 json_incref(doc))) == -EINVAL)
		snprintf(out->why, sizeof(out->why),
			 "it holds a value a document cannot (a number out "
			 "of range or invalid text)");
	if (rc) {
		json_decref(doc);
		lfs_txn_free(out->txn);
		out->txn = NULL;
		return rc == -EINVAL ? 0 : rc;
	}
	out->doc = doc;
	out->verdict = LFS_SAVE_COMMIT;
	return 0;
}

void lfs_save_decision_release(struct lfs_save_decision *d)
{
	json_decref(d->doc);
	lfs_txn_free(d->txn);
	d->doc = NULL;
	d->txn = NULL;
}

int lfs_policy_rename(struct lfs_rename_plan *out, const char *from,
		      const char *to, const uint8_t *content, size_t len,
		      bool from_committed)
{
	memset(out, 0, sizeof(*out));
	out->from_doc =
		lfs_fsname_path_to_id(out->from_id, sizeof(out->from_id), from);
	out->to_doc = lfs_fsname_path_to_id(out->to_id, sizeof(out->to_id), to);
	if (!out->from_doc) {
		out->action =
			out->to_doc ? LFS_RENAME_SAVE : LFS_RENAME_SCRATCH;
		return 0;
	}
	if (!out->to_doc) {
		out->action = LFS_RENAME_BACKUP;
		out->delete_later = from_committed;
		return 0;
	}
	/* document -> document: the content saved as `to`, by the save rule. */
	struct lfs_save_decision d;
	int rc =
		lfs_policy_save(&d, to, content ? content : (const uint8_t *)"",
				content ? len : 0);
	if (rc)
		return rc;
	if (d.verdict != LFS_SAVE_COMMIT) {
		out->action = from_committed ? LFS_RENAME_REFUSE
					     : LFS_RENAME_MOVE_DRAFT;
		snprintf(out->why, sizeof(out->why), "%s",
			 d.why[0] ? d.why : "it is empty");
		lfs_save_decision_release(&d);
		return 0;
	}
	/* One transaction, the delete first (as `mv` always committed). */
	out->action = LFS_RENAME_COMMIT;
	rc = lfs_txn_new(&out->txn);
	if (!rc && from_committed)
		rc = lfs_txn_delete(out->txn, out->from_id);
	if (!rc)
		rc = lfs_txn_put_new(out->txn, out->to_id, json_incref(d.doc));
	lfs_save_decision_release(&d);
	if (rc)
		lfs_rename_plan_release(out);
	return rc;
}

void lfs_rename_plan_release(struct lfs_rename_plan *p)
{
	lfs_txn_free(p->txn);
	p->txn = NULL;
}

int lfs_policy_unlink(unsigned *out, const char *name, bool pending,
		      bool committed, bool draft)
{
	char id[LFS_INDEX_ID_MAX + 1];
	*out = 0;
	if (!lfs_fsname_path_to_id(id, sizeof(id), name)) {
		*out = LFS_UNLINK_SCRATCH;
		return 0;
	}
	if (pending) {
		if (!draft)
			return -ENOENT;
		*out = LFS_UNLINK_DRAFT;
		return 0;
	}
	if (!committed && !draft)
		return -ENOENT;
	*out = (committed ? LFS_UNLINK_COMMIT : 0) |
	       (draft ? LFS_UNLINK_DRAFT : 0);
	return 0;
}
