/*
 * Unit tests for the save policy (fs_policy.h) and its execution
 * (fs_save.h) on a real ledger in a temporary home, without FUSE: what a
 * save, a rename and an unlink of a file in a ledger directory commit,
 * keep as a draft or refuse. The rule under test: the file name is the
 * identity, so `cp a.json b.json` (which carries "_id": "a") and `mv`
 * both save under the new name.
 */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "fileio.h"
#include "fs.h"
#include "fs_attr.h"
#include "fs_ledger.h"
#include "fs_policy.h"
#include "fs_save.h"
#include "fs_view.h"
#include "log.h"
#include "check_util.h"

static char tmp[256];
static struct lfs_home home;
static struct lfs_fs *fs;
static struct lfs_fsl *lg;

static void setup(void)
{
	ck_assert_int_ge(sodium_init(), 0);
	lfs_check_mkdtemp(tmp, sizeof(tmp), "test_save");
	char dir[512];
	snprintf(dir, sizeof(dir), "%s/home", tmp);
	ck_assert_int_eq(lfs_home_open(&home, dir), 0);
	ck_assert_int_eq(lfs_home_create(&home, "t"), 0);
	ck_assert_int_eq(lfs_fs_new(&fs, &home), 0);
	lg = lfs_fsl_get(fs, "t", true);
	ck_assert_ptr_nonnull(lg);
	ck_assert_ptr_nonnull(lg->l);
}

static void teardown(void)
{
	lfs_fs_free(fs);
	lfs_home_release(&home);
	lfs_rm_tree(tmp);
}

static const uint8_t *u8(const char *s)
{
	return (const uint8_t *)s;
}

/* ---- the pure policy ---- */

START_TEST(test_policy_commit)
{
	struct lfs_save_decision d;
	const char *plain = "{\"v\": 1}";
	ck_assert_int_eq(
		lfs_policy_save(&d, "a.json", u8(plain), strlen(plain)), 0);
	ck_assert_int_eq(d.verdict, LFS_SAVE_COMMIT);
	ck_assert_str_eq(d.id, "a");
	ck_assert(!d.id_replaced);
	ck_assert_ptr_nonnull(d.txn);
	ck_assert_uint_eq(lfs_txn_count(d.txn), 1);
	ck_assert_ptr_null(json_object_get(d.doc, "_id"));
	ck_assert_int_eq(json_integer_value(json_object_get(d.doc, "v")), 1);
	lfs_save_decision_release(&d);

	/* Its own "_id" is fine and not reported as replaced. */
	const char *own = "{\"_id\": \"a\", \"v\": 1}";
	ck_assert_int_eq(lfs_policy_save(&d, "a.json", u8(own), strlen(own)),
			 0);
	ck_assert_int_eq(d.verdict, LFS_SAVE_COMMIT);
	ck_assert(!d.id_replaced);
	ck_assert_ptr_null(json_object_get(d.doc, "_id"));
	lfs_save_decision_release(&d);

	/* The id comes from the path: folders, and escapes. */
	ck_assert_int_eq(
		lfs_policy_save(&d, "x/y.json", u8(plain), strlen(plain)), 0);
	ck_assert_int_eq(d.verdict, LFS_SAVE_COMMIT);
	ck_assert_str_eq(d.id, "x/y");
	lfs_save_decision_release(&d);
	ck_assert_int_eq(
		lfs_policy_save(&d, "x/%2Ey.json", u8(plain), strlen(plain)),
		0);
	ck_assert_int_eq(d.verdict, LFS_SAVE_COMMIT);
	ck_assert_str_eq(d.id, "x/.y");
	lfs_save_decision_release(&d);
	/* The spelling before folders is not a document's path. */
	ck_assert_int_eq(
		lfs_policy_save(&d, "x%2Fy.json", u8(plain), strlen(plain)),
		-EINVAL);
	lfs_save_decision_release(&d);
}
END_TEST

START_TEST(test_policy_copied_id)
{
	/* cp a.json b.json: the copy says "_id": "a"; the name says b. */
	struct lfs_save_decision d;
	const char *copy = "{\"_id\": \"a\", \"v\": 1}";
	ck_assert_int_eq(lfs_policy_save(&d, "b.json", u8(copy), strlen(copy)),
			 0);
	ck_assert_int_eq(d.verdict, LFS_SAVE_COMMIT);
	ck_assert_str_eq(d.id, "b");
	ck_assert(d.id_replaced);
	ck_assert_ptr_null(json_object_get(d.doc, "_id"));
	lfs_save_decision_release(&d);
}
END_TEST

START_TEST(test_policy_blank)
{
	const char *blanks[] = {"", " ", "\n", " \t\r\n  "};
	for (size_t i = 0; i < sizeof(blanks) / sizeof(*blanks); i++) {
		struct lfs_save_decision d;
		ck_assert_int_eq(lfs_policy_save(&d, "a.json", u8(blanks[i]),
						 strlen(blanks[i])),
				 0);
		ck_assert_int_eq(d.verdict, LFS_SAVE_DRAFT);
		ck_assert_ptr_null(d.txn);
		ck_assert_str_eq(d.why, "");
		lfs_save_decision_release(&d);
	}
}
END_TEST

START_TEST(test_policy_refusals)
{
	static const struct {
		const char *text, *why;
	} cases[] = {
		{"{\"v\": 1", "not valid JSON"},
		{"{\"v\": 1} x", "not valid JSON"},
		{"{\"a\": 1, \"a\": 2}", "not valid JSON"},
		{"[1, 2]", "an array"},
		/* jansson reads only an object or an array at the top. */
		{"\"text\"", "not valid JSON"},
		{"42", "not valid JSON"},
		{"{\"_id\": 5, \"v\": 1}", "\"_id\""},
		{"{\"_id\": null}", "\"_id\""},
		{"{\"_id\": [\"a\"]}", "\"_id\""},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
		struct lfs_save_decision d;
		ck_assert_int_eq(lfs_policy_save(&d, "a.json",
						 u8(cases[i].text),
						 strlen(cases[i].text)),
				 0);
		ck_assert_msg(d.verdict == LFS_SAVE_REFUSE, "%s: not refused",
			      cases[i].text);
		ck_assert_ptr_null(d.txn);
		ck_assert_ptr_null(d.doc);
		ck_assert_msg(strstr(d.why, cases[i].why), "%s: why is '%s'",
			      cases[i].text, d.why);
		lfs_save_decision_release(&d);
	}
}
END_TEST

START_TEST(test_policy_limits)
{
	/* Past LFS_FS_TEXT_MAX: refused before parsing. */
	size_t len = LFS_FS_TEXT_MAX + 1;
	uint8_t *big = malloc(len);
	ck_assert_ptr_nonnull(big);
	memset(big, ' ', len);
	big[0] = '{';
	big[len - 1] = '}';
	struct lfs_save_decision d;
	ck_assert_int_eq(lfs_policy_save(&d, "a.json", big, len), 0);
	ck_assert_int_eq(d.verdict, LFS_SAVE_REFUSE);
	ck_assert_ptr_nonnull(strstr(d.why, "size limit"));
	lfs_save_decision_release(&d);
	free(big);

	/* Scratch names are not saved. */
	const char *doc = "{}";
	ck_assert_int_eq(lfs_policy_save(&d, "notes.txt", u8(doc), 2), -EINVAL);
	ck_assert_int_eq(lfs_policy_save(&d, ".a.json.swp", u8(doc), 2),
			 -EINVAL);
	ck_assert_int_eq(lfs_policy_save(&d, "a.json~", u8(doc), 2), -EINVAL);
}
END_TEST

START_TEST(test_policy_rename)
{
	struct lfs_rename_plan p;
	const char *doc = "{\"_id\": \"a\", \"v\": 1}";

	ck_assert_int_eq(
		lfs_policy_rename(&p, "x.txt", "y.txt", NULL, 0, false), 0);
	ck_assert_int_eq(p.action, LFS_RENAME_SCRATCH);
	lfs_rename_plan_release(&p);

	/* sed -i: a temporary file renamed over the document. */
	ck_assert_int_eq(
		lfs_policy_rename(&p, "sedAb12Z", "a.json", NULL, 0, false), 0);
	ck_assert_int_eq(p.action, LFS_RENAME_SAVE);
	ck_assert_str_eq(p.to_id, "a");
	lfs_rename_plan_release(&p);

	/* An editor's backup: deleted later only if it was committed. */
	for (int c = 0; c < 2; c++) {
		ck_assert_int_eq(lfs_policy_rename(&p, "a.json", "a.json~",
						   u8(doc), strlen(doc), c),
				 0);
		ck_assert_int_eq(p.action, LFS_RENAME_BACKUP);
		ck_assert_str_eq(p.from_id, "a");
		ck_assert_int_eq(p.delete_later, c);
		lfs_rename_plan_release(&p);
	}

	/* mv a.json b.json: one transaction; the "_id" says a, the name b. */
	ck_assert_int_eq(lfs_policy_rename(&p, "a.json", "b.json", u8(doc),
					   strlen(doc), true),
			 0);
	ck_assert_int_eq(p.action, LFS_RENAME_COMMIT);
	ck_assert_uint_eq(lfs_txn_count(p.txn), 2); /* delete a, put b */
	lfs_rename_plan_release(&p);
	ck_assert_int_eq(lfs_policy_rename(&p, "a.json", "b.json", u8(doc),
					   strlen(doc), false),
			 0);
	ck_assert_int_eq(p.action, LFS_RENAME_COMMIT);
	ck_assert_uint_eq(lfs_txn_count(p.txn), 1); /* a was only a draft */
	lfs_rename_plan_release(&p);

	/* Content that is not a document: a draft moves, a commit stays. */
	const char *bad = "not json";
	ck_assert_int_eq(lfs_policy_rename(&p, "a.json", "b.json", u8(bad),
					   strlen(bad), false),
			 0);
	ck_assert_int_eq(p.action, LFS_RENAME_MOVE_DRAFT);
	lfs_rename_plan_release(&p);
	ck_assert_int_eq(lfs_policy_rename(&p, "a.json", "b.json", u8(bad),
					   strlen(bad), true),
			 0);
	ck_assert_int_eq(p.action, LFS_RENAME_REFUSE);
	ck_assert_ptr_nonnull(strstr(p.why, "not valid JSON"));
	lfs_rename_plan_release(&p);
	ck_assert_int_eq(
		lfs_policy_rename(&p, "a.json", "b.json", u8(""), 0, false), 0);
	ck_assert_int_eq(p.action, LFS_RENAME_MOVE_DRAFT);
	lfs_rename_plan_release(&p);
}
END_TEST

/* Saving bytes as b.json and renaming a committed a.json holding those
 * bytes to b.json follow one rule: the same verdict, the id from the name. */
START_TEST(test_policy_one_rule)
{
	static const char *texts[] = {
		"{\"_id\": \"a\", \"v\": 1}", /* cp a.json b.json */
		"{\"_id\": \"b\", \"v\": 1}",
		"{\"v\": 1}",
		"{\"_id\": \"elsewhere\"}",
		"{\"_id\": 7}",
		"[1, 2]",
		"not json",
		"",
	};
	for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
		const char *t = texts[i];
		struct lfs_save_decision d;
		struct lfs_rename_plan p;
		ck_assert_int_eq(
			lfs_policy_save(&d, "b.json", u8(t), strlen(t)), 0);
		ck_assert_int_eq(lfs_policy_rename(&p, "a.json", "b.json",
						   u8(t), strlen(t), true),
				 0);
		bool save_commits = d.verdict == LFS_SAVE_COMMIT;
		ck_assert_msg(save_commits == (p.action == LFS_RENAME_COMMIT),
			      "save and rename disagree on %s", t);
		if (save_commits) {
			ck_assert_str_eq(d.id, "b");
			ck_assert_str_eq(p.to_id, "b");
			ck_assert_ptr_null(json_object_get(d.doc, "_id"));
		}
		lfs_save_decision_release(&d);
		lfs_rename_plan_release(&p);
	}
}
END_TEST

/* Names in line-oriented output: one line of valid UTF-8, unambiguous. */
START_TEST(test_escape)
{
	static const struct {
		const char *in, *out;
	} cases[] = {
		{"plain", "plain"},
		{"two\nlines", "two\\nlines"},
		{"tab\there\r", "tab\\there\\r"},
		{"bell\a", "bell\\x07"},
		{"\xff.json", "\\xff.json"},
		{"back\\slash", "back\\\\slash"},
		{"caf\xc3\xa9", "caf\xc3\xa9"},      /* UTF-8 stays */
		{"\xc3(", "\\xc3("},                 /* cut sequence */
		{"\xed\xa0\x80", "\\xed\\xa0\\x80"}, /* a surrogate */
		{"\xe0\x80\xaf", "\\xe0\\x80\\xaf"}, /* overlong */
		{"del\x7f", "del\\x7f"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char out[64];
		size_t n = lfs_log_escape(out, sizeof(out), cases[i].in,
					  strlen(cases[i].in));
		ck_assert_str_eq(out, cases[i].out);
		ck_assert_uint_eq(n, strlen(cases[i].out));
	}
	/* Cut at an escape's boundary, always terminated. */
	char small[6];
	lfs_log_escape(small, sizeof(small), "abc\001d", 5);
	ck_assert_str_eq(small, "abc");
}
END_TEST

START_TEST(test_policy_unlink)
{
	unsigned what;
	ck_assert_int_eq(lfs_policy_unlink(&what, "x.txt", false, false, false),
			 0);
	ck_assert_uint_eq(what, LFS_UNLINK_SCRATCH);
	ck_assert_int_eq(lfs_policy_unlink(&what, "a.json", false, true, false),
			 0);
	ck_assert_uint_eq(what, LFS_UNLINK_COMMIT);
	ck_assert_int_eq(lfs_policy_unlink(&what, "a.json", false, true, true),
			 0);
	ck_assert_uint_eq(what, LFS_UNLINK_COMMIT | LFS_UNLINK_DRAFT);
	ck_assert_int_eq(lfs_policy_unlink(&what, "a.json", false, false, true),
			 0);
	ck_assert_uint_eq(what, LFS_UNLINK_DRAFT);
	ck_assert_int_eq(
		lfs_policy_unlink(&what, "a.json", false, false, false),
		-ENOENT);
	/* Renamed to a backup: the committed version is on its way out. */
	ck_assert_int_eq(lfs_policy_unlink(&what, "a.json", true, true, true),
			 0);
	ck_assert_uint_eq(what, LFS_UNLINK_DRAFT);
	ck_assert_int_eq(lfs_policy_unlink(&what, "a.json", true, true, false),
			 -ENOENT);
}
END_TEST

/* ---- carried out on a ledger ---- */

static size_t events(void)
{
	struct lfs_fsl_events s;
	ck_assert_int_eq(lfs_fsl_events(&s, lg), 0);
	size_t n = s.n;
	lfs_fsl_events_release(&s);
	return n;
}

/* Document id's "v" (-1: no such document). */
static json_int_t doc_v(const char *id)
{
	struct lfs_arena a;
	lfs_arena_init(&a, 0);
	struct lfs_index_entry e;
	json_t *doc = NULL;
	int rc = lfs_ledger_get(lg->l, NULL, id, &e, &a, &doc);
	lfs_arena_release(&a);
	if (rc == -ENOENT)
		return -1;
	ck_assert_int_eq(rc, 0);
	ck_assert_str_eq(json_string_value(json_object_get(doc, "_id")), id);
	json_int_t v = json_integer_value(json_object_get(doc, "v"));
	json_decref(doc);
	return v;
}

static int save(const char *name, const char *text)
{
	return lfs_save_content(fs, lg, name, u8(text), strlen(text), NULL);
}

/* What name reads as in the mount, as a string (malloc'd), or NULL. */
static char *reads(const char *name)
{
	struct lfs_buf b;
	lfs_buf_init(&b, 0);
	bool isdoc;
	int rc = lfs_view_name(fs, lg, name, &b, &isdoc);
	char *s = rc ? NULL : strndup((const char *)b.data, b.len);
	lfs_buf_release(&b);
	return s;
}

static bool exists_in(const char *dir, const char *name)
{
	char p[1024];
	snprintf(p, sizeof(p), "%s/%s", dir, name);
	return access(p, F_OK) == 0;
}

START_TEST(test_save_commits)
{
	ck_assert_int_eq(save("a.json", "{\"v\": 1}"), 0);
	ck_assert_int_eq(doc_v("a"), 1);
	ck_assert_uint_eq(events(), 1);
	/* The same content again commits nothing. */
	ck_assert_int_eq(save("a.json", "{\"_id\": \"a\", \"v\": 1}"), 0);
	ck_assert_uint_eq(events(), 1);
	/* Blank: a draft, no commit, no error. */
	ck_assert_int_eq(save("e.json", "  \n"), 0);
	ck_assert_uint_eq(events(), 1);
	ck_assert(exists_in(lg->drafts, "e.json"));
	ck_assert_uint_eq(lg->nerrors, 0);
}
END_TEST

START_TEST(test_save_cp_and_mv)
{
	ck_assert_int_eq(save("a.json", "{\"v\": 1}"), 0);
	/* cp a.json b.json: b's bytes are a's, "_id": "a" included. */
	char *text = reads("a.json");
	ck_assert_ptr_nonnull(text);
	ck_assert_ptr_nonnull(strstr(text, "\"_id\": \"a\""));
	ck_assert_int_eq(save("b.json", text), 0);
	free(text);
	ck_assert_int_eq(doc_v("a"), 1);
	ck_assert_int_eq(doc_v("b"), 1);
	ck_assert_uint_eq(events(), 2);
	ck_assert_uint_eq(lg->nerrors, 0);
	ck_assert(!exists_in(lg->drafts, "b.json"));

	/* mv b.json c.json: one commit, the same rule. */
	ck_assert_int_eq(lfs_save_rename(fs, lg, "b.json", "c.json", false), 0);
	ck_assert_int_eq(doc_v("b"), -1);
	ck_assert_int_eq(doc_v("c"), 1);
	ck_assert_uint_eq(events(), 3);

	/* mv over an existing document: one commit; noreplace refuses. */
	ck_assert_int_eq(save("d.json", "{\"v\": 4}"), 0);
	ck_assert_int_eq(lfs_save_rename(fs, lg, "d.json", "c.json", true),
			 -EEXIST);
	ck_assert_int_eq(lfs_save_rename(fs, lg, "d.json", "c.json", false), 0);
	ck_assert_int_eq(doc_v("c"), 4);
	ck_assert_int_eq(doc_v("d"), -1);
	ck_assert_uint_eq(events(), 5);
}
END_TEST

START_TEST(test_save_refused_keeps_draft)
{
	ck_assert_int_eq(save("a.json", "{\"v\": 1}"), 0);
	ck_assert_int_eq(save("a.json", "{\"v\": 2,"), -EINVAL);
	ck_assert_int_eq(doc_v("a"), 1);
	ck_assert_uint_eq(events(), 1);
	char *text = reads("a.json");
	ck_assert_str_eq(text, "{\"v\": 2,");
	free(text);
	ck_assert_uint_eq(lg->nerrors, 1);
	ck_assert_ptr_nonnull(strstr(lg->errors[0], "a.json: not committed"));
	ck_assert_int_eq(save("a.json", "{\"_id\": 7}"), -EINVAL);
	ck_assert_uint_eq(lg->nerrors, 2);

	/* A valid save commits and drops the draft. */
	ck_assert_int_eq(save("a.json", "{\"v\": 3}"), 0);
	ck_assert_int_eq(doc_v("a"), 3);
	ck_assert(!exists_in(lg->drafts, "a.json"));

	/* Renaming invalid content over a committed document: refused. */
	ck_assert_int_eq(save("b.json", "{\"v\": 1}"), 0);
	ck_assert_int_eq(save("b.json", "oops"), -EINVAL);
	ck_assert_int_eq(lfs_save_rename(fs, lg, "b.json", "c.json", false),
			 -EINVAL);
	ck_assert_int_eq(doc_v("b"), 1);
	/* ...but a draft alone just moves. */
	ck_assert_int_eq(save("n.json", "oops"), -EINVAL);
	ck_assert_int_eq(lfs_save_rename(fs, lg, "n.json", "m.json", false), 0);
	ck_assert(exists_in(lg->drafts, "m.json"));
	ck_assert(!exists_in(lg->drafts, "n.json"));
}
END_TEST

START_TEST(test_save_scratch_over_doc)
{
	/* sed -i: write a scratch file, rename it over the document. */
	char p[1024];
	snprintf(p, sizeof(p), "%s/sedX1", lg->scratch);
	FILE *f = fopen(p, "w");
	ck_assert_ptr_nonnull(f);
	fputs("{\"_id\": \"other\", \"v\": 9}\n", f);
	fclose(f);
	ck_assert_int_eq(lfs_save_rename(fs, lg, "sedX1", "a.json", false), 0);
	ck_assert_int_eq(doc_v("a"), 9);
	ck_assert(!exists_in(lg->scratch, "sedX1"));
	ck_assert_uint_eq(events(), 1);
}
END_TEST

START_TEST(test_save_unlink)
{
	ck_assert_int_eq(save("a.json", "{\"v\": 1}"), 0);
	ck_assert_int_eq(lfs_save_unlink(fs, lg, "a.json"), 0);
	ck_assert_int_eq(doc_v("a"), -1);
	ck_assert_uint_eq(events(), 2);
	ck_assert_int_eq(lfs_save_unlink(fs, lg, "a.json"), -ENOENT);
	ck_assert_int_eq(lfs_save_unlink(fs, lg, "x.txt"), -ENOENT);
	/* A draft only: removed, nothing committed. */
	ck_assert_int_eq(save("d.json", ""), 0);
	ck_assert_int_eq(lfs_save_unlink(fs, lg, "d.json"), 0);
	ck_assert(!exists_in(lg->drafts, "d.json"));
	ck_assert_uint_eq(events(), 2);
}
END_TEST

START_TEST(test_save_backup_rename)
{
	/* vim: rename to the backup, save a new version: one commit. */
	ck_assert_int_eq(save("a.json", "{\"v\": 1}"), 0);
	ck_assert_int_eq(lfs_save_rename(fs, lg, "a.json", "a.json~", false),
			 0);
	ck_assert(lfs_fsl_pending_has(fs, lg, "a"));
	ck_assert_ptr_null(reads("a.json"));
	char *backup = reads("a.json~");
	ck_assert_ptr_nonnull(strstr(backup, "\"v\": 1"));
	free(backup);
	ck_assert_int_eq(save("a.json", "{\"v\": 2}"), 0);
	ck_assert(!lfs_fsl_pending_has(fs, lg, "a"));
	lfs_fsl_flush_pending(fs, true);
	ck_assert_int_eq(doc_v("a"), 2);
	ck_assert_uint_eq(events(), 2);

	/* No new version: the delete is committed after the grace period. */
	ck_assert_int_eq(lfs_save_rename(fs, lg, "a.json", "a.json~", false),
			 0);
	lfs_fsl_flush_pending(fs, false); /* not yet */
	ck_assert_int_eq(doc_v("a"), 2);
	lfs_fsl_flush_pending(fs, true);
	ck_assert_int_eq(doc_v("a"), -1);
	ck_assert_uint_eq(events(), 3);
}
END_TEST

/* A link, a FIFO or a socket renamed over a document: refused, never
 * read (a FIFO would block), nothing committed, the name left as it was. */
START_TEST(test_save_special_not_saved)
{
	char p[1024];
	snprintf(p, sizeof(p), "%s/evil.tmp", lg->scratch);
	ck_assert_int_eq(symlink("/etc/passwd", p), 0);
	snprintf(p, sizeof(p), "%s/fifo", lg->scratch);
	ck_assert_int_eq(mkfifo(p, 0600), 0);
	ck_assert_int_eq(
		lfs_save_rename(fs, lg, "evil.tmp", "evil.json", false),
		-EPERM);
	ck_assert_int_eq(lfs_save_rename(fs, lg, "fifo", "fifo.json", false),
			 -EPERM);
	ck_assert_uint_eq(events(), 0);
	snprintf(p, sizeof(p), "%s/evil.tmp", lg->scratch);
	struct stat st;
	ck_assert_int_eq(lstat(p, &st), 0);
	ck_assert(S_ISLNK(st.st_mode));
	ck_assert_ptr_null(reads("evil.json"));
}
END_TEST

/* Attributes users set are kept in the home, across mounts. */
START_TEST(test_attrs_kept)
{
	struct lfs_attr a = {.set = LFS_ATTR_MODE | LFS_ATTR_MTIME,
			     .mode = 0600,
			     .mtime_us = 1580702706000000};
	ck_assert_int_eq(save("a.json", "{\"v\": 1}"), 0);
	ck_assert_int_eq(lfs_attr_set(fs, lg, "a.json", &a), 0);
	ck_assert_int_eq(lfs_attr_set(fs, lg, "",
				      &(struct lfs_attr){.set = LFS_ATTR_UID,
							 .uid = 42}),
			 0);
	lfs_attr_rename(fs, lg, "a.json", "b.json");
	struct lfs_attr got;
	ck_assert_int_eq(lfs_attr_get(fs, lg, "a.json", &got), 0);
	ck_assert_uint_eq(got.set, 0);
	/* A new mount of the same home reads them back. */
	lfs_fs_free(fs);
	ck_assert_int_eq(lfs_fs_new(&fs, &home), 0);
	lg = lfs_fsl_get(fs, "t", true);
	ck_assert_ptr_nonnull(lg);
	ck_assert_int_eq(lfs_attr_get(fs, lg, "b.json", &got), 0);
	ck_assert_uint_eq(got.set, LFS_ATTR_MODE | LFS_ATTR_MTIME);
	ck_assert_uint_eq(got.mode, 0600);
	ck_assert_int_eq(got.mtime_us, 1580702706000000);
	ck_assert_int_eq(lfs_attr_get(fs, lg, "", &got), 0);
	ck_assert_uint_eq(got.set, LFS_ATTR_UID);
	ck_assert_uint_eq(got.uid, 42);
	lfs_attr_remove(fs, lg, "b.json");
	ck_assert_int_eq(lfs_attr_get(fs, lg, "b.json", &got), 0);
	ck_assert_uint_eq(got.set, 0);
}
END_TEST

/* Attributes kept before folders named a%2Fb.json: found as a/b.json
 * (moved on load, and saved so), unless a/b.json has its own. */
START_TEST(test_attrs_flat_names)
{
	ck_assert_int_eq(save("a/b.json", "{\"v\": 1}"), 0);
	ck_assert_int_eq(save("c/d.json", "{\"v\": 2}"), 0);
	lfs_fs_free(fs);
	char p[PATH_MAX];
	snprintf(p, sizeof(p), "%s/state/t/attrs", home.dir);
	FILE *f = fopen(p, "w");
	ck_assert_ptr_nonnull(f);
	/* "a%2Fb.json", "c%2Fd.json", "c/d.json", in hex */
	fprintf(f, "v1 600 - - - - 61253246622e6a736f6e\n"
		   "v1 640 - - - - 63253246642e6a736f6e\n"
		   "v1 604 - - - - 632f642e6a736f6e\n");
	fclose(f);
	ck_assert_int_eq(lfs_fs_new(&fs, &home), 0);
	lg = lfs_fsl_get(fs, "t", true);
	ck_assert_ptr_nonnull(lg);
	struct lfs_attr got;
	ck_assert_int_eq(lfs_attr_get(fs, lg, "a/b.json", &got), 0);
	ck_assert_uint_eq(got.set, LFS_ATTR_MODE);
	ck_assert_uint_eq(got.mode, 0600);
	ck_assert_int_eq(lfs_attr_get(fs, lg, "c/d.json", &got), 0);
	ck_assert_uint_eq(got.mode, 0604);
	ck_assert_int_eq(lfs_attr_get(fs, lg, "a%2Fb.json", &got), 0);
	ck_assert_uint_eq(got.set, 0);
	/* Saved under the new names: the next mount needs no move. */
	lfs_attr_save_all(fs);
	uint8_t *text;
	size_t len;
	ck_assert_int_eq(lfs_read_file(p, 1 << 20, &text, &len), 0);
	char *s = strndup((char *)text, len);
	free(text);
	ck_assert_ptr_nonnull(strstr(s, "v1 600 - - - - 612f622e6a736f6e\n"));
	ck_assert_ptr_null(strstr(s, "2532"));
	ck_assert_ptr_null(strstr(s, " 640 "));
	free(s);
}
END_TEST

/* The lines of the attributes file of ledger t. */
static size_t attrs_lines(void)
{
	char p[PATH_MAX];
	snprintf(p, sizeof(p), "%s/state/t/attrs", home.dir);
	uint8_t *text;
	size_t len, n = 0;
	ck_assert_int_eq(lfs_read_file(p, 1 << 20, &text, &len), 0);
	for (size_t i = 0; i < len; i++)
		n += text[i] == '\n';
	free(text);
	return n;
}

static void remount(void)
{
	lfs_fs_free(fs);
	ck_assert_int_eq(lfs_fs_new(&fs, &home), 0);
	lg = lfs_fsl_get(fs, "t", true);
	ck_assert_ptr_nonnull(lg);
}

/* A save appends what changed (the last line of a name wins), a removed
 * name's line says it has none; a line cut short by a crash is not read,
 * and the next save writes the file whole. */
START_TEST(test_attrs_journal)
{
	struct lfs_attr m = {.set = LFS_ATTR_MODE, .mode = 0600}, got;
	ck_assert_int_eq(lfs_attr_set(fs, lg, "a.json", &m), 0);
	ck_assert_int_eq(lfs_attr_set(fs, lg, "b.json", &m), 0);
	lfs_attr_save_all(fs);
	ck_assert_uint_eq(attrs_lines(), 2);
	m.mode = 0640;
	ck_assert_int_eq(lfs_attr_set(fs, lg, "b.json", &m), 0);
	lfs_attr_remove(fs, lg, "a.json");
	lfs_attr_remove(fs, lg, "never-set.json"); /* nothing to say */
	lfs_attr_save_all(fs);
	ck_assert_uint_eq(attrs_lines(), 4);
	lfs_attr_save_all(fs); /* nothing changed: nothing written */
	ck_assert_uint_eq(attrs_lines(), 4);
	remount();
	ck_assert_int_eq(lfs_attr_get(fs, lg, "a.json", &got), 0);
	ck_assert_uint_eq(got.set, 0);
	ck_assert_int_eq(lfs_attr_get(fs, lg, "b.json", &got), 0);
	ck_assert_uint_eq(got.mode, 0640);

	/* A crash while appending "v1 604 - - - - b.json" left "b" */
	char p[PATH_MAX];
	snprintf(p, sizeof(p), "%s/state/t/attrs", home.dir);
	lfs_fs_free(fs);
	FILE *f = fopen(p, "a");
	ck_assert_ptr_nonnull(f);
	fprintf(f, "v1 604 - - - - 62");
	fclose(f);
	ck_assert_int_eq(lfs_fs_new(&fs, &home), 0);
	lg = lfs_fsl_get(fs, "t", true);
	ck_assert_int_eq(lfs_attr_get(fs, lg, "b", &got), 0);
	ck_assert_uint_eq(got.set, 0);
	ck_assert_int_eq(lfs_attr_get(fs, lg, "b.json", &got), 0);
	ck_assert_uint_eq(got.mode, 0640);
	lfs_attr_save_all(fs);
	ck_assert_uint_eq(attrs_lines(), 1); /* whole: b.json's line */
	remount();
	ck_assert_int_eq(lfs_attr_get(fs, lg, "b.json", &got), 0);
	ck_assert_uint_eq(got.mode, 0640);
}
END_TEST

static Suite *save_suite(void)
{
	Suite *s = suite_create("save");
	TCase *tp = tcase_create("policy");
	tcase_add_test(tp, test_policy_commit);
	tcase_add_test(tp, test_policy_copied_id);
	tcase_add_test(tp, test_policy_blank);
	tcase_add_test(tp, test_policy_refusals);
	tcase_add_test(tp, test_policy_limits);
	tcase_add_test(tp, test_policy_rename);
	tcase_add_test(tp, test_policy_unlink);
	tcase_add_test(tp, test_policy_one_rule);
	tcase_add_test(tp, test_escape);
	suite_add_tcase(s, tp);
	TCase *tc = tcase_create("ledger");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_save_commits);
	tcase_add_test(tc, test_save_cp_and_mv);
	tcase_add_test(tc, test_save_refused_keeps_draft);
	tcase_add_test(tc, test_save_scratch_over_doc);
	tcase_add_test(tc, test_save_unlink);
	tcase_add_test(tc, test_save_backup_rename);
	tcase_add_test(tc, test_save_special_not_saved);
	tcase_add_test(tc, test_attrs_kept);
	tcase_add_test(tc, test_attrs_flat_names);
	tcase_add_test(tc, test_attrs_journal);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return lfs_check_run(save_suite());
}
