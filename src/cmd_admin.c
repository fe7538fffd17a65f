/*
 * The commands that look after a ledger: fsck (check every file, event
 * and document), key export and import (share a ledger's key), status (the
 * ledgers of this home) and conflicts (losing versions of concurrent
 * writes). They share the frame of cmd_ledger.h with the document
 * commands.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "cmd.h"
#include "cli.h"
#include "cmd_ledger.h"
#include "errmsg.h"
#include "optscan.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <sodium.h>

#include "arena.h"
#include "blockstore.h"
#include "buf.h"
#include "cbor.h"
#include "cid.h"
#include "clock.h"
#include "dagjson.h"
#include "home.h"
#include "index.h"
#include "ledger.h"
#include "timefmt.h"

#define SHARE_MAX 256 /* a key share string, with room to spare */

/* ---- fsck ---- */

struct fsckw {
	json_t *arr;
	int n;
};

static void fsck_report(void *ctx, const char *what)
{
	struct fsckw *f = ctx;
	f->n++;
	if (f->arr)
		json_array_append_new(f->arr, json_string(what));
	else
		printf("%s\n", what);
}

static bool cid_in(const struct lfs_cid *v, size_t n, const struct lfs_cid *c)
{
	for (size_t i = 0; i < n; i++)
		if (lfs_cid_equal(&v[i], c))
			return true;
	return false;
}

static void report_cid(struct fsckw *f, const char *fmt,
		       const struct lfs_cid *a, const struct lfs_cid *b)
{
	char sa[LFS_CID_STRLEN + 1], sb[LFS_CID_STRLEN + 1], msg[512];
	lfs_cid_to_string(sa, a);
	if (b)
		lfs_cid_to_string(sb, b);
	snprintf(msg, sizeof(msg), fmt, sa, b ? sb : "");
	fsck_report(f, msg);
}

/*
 * Check the CAR files of bs one by one: that every parent CAR a sound CAR
 * file names is present (lfs_ledger_fsck names the events that are then
 * missing, not the file to restore) and, when the ledger could not be
 * opened (alone), every file and every head record's CAR. Returns 0 or a
 * negative error.
 */
static int fsck_files(struct fsckw *f, struct lfs_blockstore *bs, bool alone)
{
	struct lfs_cid *cars = NULL, *recs = NULL;
	size_t n = 0, nrecs = 0;
	int rc = lfs_blockstore_list_cars(&cars, &n, bs);
	if (!rc && alone)
		rc = lfs_blockstore_heads(&recs, &nrecs, bs);
	for (size_t i = 0; !rc && i < nrecs; i++)
		if (!cid_in(cars, n, &recs[i]))
			report_cid(f,
				   "head record %s: names a CAR file that is "
				   "missing%s",
				   &recs[i], NULL);
	for (size_t i = 0; !rc && i < n; i++) {
		int r = alone ? lfs_blockstore_verify_car(bs, &cars[i]) : 0;
		if (r == -ENOMEM) {
			rc = r;
			break;
		}
		if (r) {
			char s[LFS_CID_STRLEN + 1], msg[256];
			lfs_cid_to_string(s, &cars[i]);
			snprintf(msg, sizeof(msg), "CAR file %s: %s", s,
				 lfs_errmsg(r));
			fsck_report(f, msg);
			continue;
		}
		struct lfs_arena a;
		struct lfs_car_root root;
		lfs_arena_init(&a, 0);
		/* A file that fails here was reported by the full check. */
		if (!lfs_blockstore_load(&root, &a, bs, &cars[i], false))
			for (size_t k = 0; k < root.ncars; k++)
				if (!cid_in(cars, n, &root.cars[k]))
					report_cid(f,
						   "CAR file %s: names parent "
						   "CAR file %s, which is "
						   "missing",
						   &cars[i], &root.cars[k]);
		lfs_arena_release(&a);
	}
	free(cars);
	free(recs);
	return rc;
}

static int fsck_unopened(struct lcmd_ctx *x, struct fsckw *f)
{
	uint8_t key[LFS_KEY_BYTES];
	int rc = lfs_home_key(key, &x->cli.home, x->name);
	struct lfs_blockstore *bs = NULL;
	if (!rc)
		rc = lfs_blockstore_open(&bs, x->dir, key, 0, false);
	sodium_memzero(key, sizeof(key));
	if (!rc)
		rc = fsck_files(f, bs, true);
	lfs_blockstore_free(bs);
	return rc;
}

static int run_fsck(struct lcmd_ctx *x)
{
	int rc;
	if ((rc = lcmd_need_ledger(x, x->o.pos[0])))
		return rc;
	bool key_error;
	int orc = lfs_home_open_ledger(&x->l, &x->cli.home, x->name, NULL,
				       false, &key_error);
	if (orc && key_error)
		return lfs_cli_key_error(&x->cli, x->name, orc);
	struct fsckw f = {0};
	if (x->o.json && !(f.arr = json_array()))
		return lfs_cli_oom(&x->cli);
	if (orc) {
		x->l = NULL;
		char msg[256];
		snprintf(msg, sizeof(msg), "ledger '%s': cannot be opened: %s",
			 x->name,
			 orc == -ENOENT ? "a file it needs is missing"
					: lfs_errmsg(orc));
		fsck_report(&f, msg);
		rc = fsck_unopened(x, &f);
	} else {
		/* On problems, also name the missing files to restore. (Not
		 * otherwise: a parent CAR may be gone because a compaction
		 * holds its blocks.) */
		rc = lfs_ledger_fsck(x->l, fsck_report, &f);
		if (rc > 0)
			rc = fsck_files(&f, lfs_ledger_store(x->l), false);
	}
	if (rc < 0) {
		json_decref(f.arr);
		fflush(stdout);
		lfs_cli_fail(&x->cli, "could not check ledger '%s': %s",
			     x->name, lfs_errmsg(rc));
		return LFS_EXIT_FAIL;
	}
	if (f.arr)
		lcmd_print_json(x, json_pack("{s:o,s:b}", "problems", f.arr,
					     "ok", f.n == 0));
	else if (f.n == 0)
		printf("ok\n");
	else
		printf("%d problem%s\n", f.n, f.n == 1 ? "" : "s");
	if (f.n)
		fprintf(stderr,
			"ledgerfs fsck: ledger '%s' is damaged; restore the "
			"files named above from another replica or the "
			"remote store\n",
			x->name);
	return lfs_cli_finish_output(&x->cli,
				     f.n ? LFS_EXIT_FAIL : LFS_EXIT_OK);
}

/* ---- key ---- */

static int run_key_export(struct lcmd_ctx *x)
{
	const char *name = x->o.pos[0];
	int rc;
	if ((rc = lfs_cli_need_home(&x->cli)) ||
	    (rc = lfs_cli_check_name(&x->cli, name)))
		return rc;
	uint8_t key[LFS_KEY_BYTES];
	char share[73];
	rc = lfs_home_key(key, &x->cli.home, name);
	if (rc) {
		sodium_memzero(key, sizeof(key));
		if (rc == -ENOENT) {
			lfs_cli_fail(
				&x->cli,
				"ledger '%s' has no key on this machine, so "
				"there "
				"is nothing to export ('ledgerfs status' lists "
				"the ledgers)",
				name);
			return LFS_EXIT_NOTFOUND;
		}
		return lfs_cli_key_error(&x->cli, name, rc);
	}
	lfs_key_to_share(share, key);
	printf("%s\n", share);
	sodium_memzero(key, sizeof(key));
	sodium_memzero(share, sizeof(share));
	return lfs_cli_finish_output(&x->cli, LFS_EXIT_OK);
}

static int read_share(struct lcmd_ctx *x, char *out, size_t size)
{
	size_t len = 0;
	while (len < size - 1) {
		ssize_t n = read(STDIN_FILENO, out + len, size - 1 - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			lfs_cli_fail(
				&x->cli,
				"cannot read the key from standard input: %s",
				strerror(errno));
			return LFS_EXIT_FAIL;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	out[len] = '\0';
	return LFS_EXIT_OK;
}

static int run_key_import(struct lcmd_ctx *x)
{
	const char *name = x->o.pos[0];
	const char *arg = x->o.npos > 1 ? x->o.pos[1] : "-";
	int rc;
	if ((rc = lfs_cli_need_home(&x->cli)) ||
	    (rc = lfs_cli_check_name(&x->cli, name)))
		return rc;
	char buf[SHARE_MAX];
	const char *share = arg;
	if (!strcmp(arg, "-")) {
		if ((rc = read_share(x, buf, sizeof(buf))))
			return rc;
		share = buf;
	}
	uint8_t key[LFS_KEY_BYTES];
	rc = lfs_key_from_share(key, share);
	sodium_memzero(buf, sizeof(buf));
	if (rc) {
		sodium_memzero(key, sizeof(key));
		return lfs_cli_usage_error(
			&x->cli,
			"that is not a ledgerfs key: expected '%s' "
			"followed by 64 hex digits, as 'ledgerfs "
			"key export %s' prints",
			LFS_KEY_SHARE_PREFIX, name);
	}
	rc = lfs_home_set_key(&x->cli.home, name, key);
	int ret = LFS_EXIT_OK;
	if (rc == -EEXIST) {
		char *p = lfs_home_key_path(&x->cli.home, name);
		lfs_cli_fail(&x->cli,
			     "ledger '%s' already has a different key on this "
			     "machine "
			     "('%s'); importing another would make its data "
			     "unreadable. If you are sure, move that file away "
			     "first",
			     name, p ? p : "its key file");
		free(p);
		ret = LFS_EXIT_FAIL;
	} else if (rc) {
		ret = lfs_cli_key_error(&x->cli, name, rc);
	}
	/* An empty local store, so the ledger is listed and sync fills it. */
	if (!ret && !(x->dir = lfs_home_ledger_dir(&x->cli.home, name)))
		ret = lfs_cli_oom(&x->cli);
	struct lfs_blockstore *bs;
	if (!ret && (rc = lfs_blockstore_open(&bs, x->dir, key, 0, true))) {
		lfs_cli_fail(
			&x->cli,
			"stored the key, but cannot create the directory of "
			"ledger '%s' ('%s'): %s",
			name, x->dir, lfs_errmsg(rc));
		ret = LFS_EXIT_FAIL;
	} else if (!ret) {
		lfs_blockstore_free(bs);
	}
	sodium_memzero(key, sizeof(key));
	return ret;
}

/* ---- status ---- */

/* One ledger's status into a JSON object; LFS_EXIT_OK or LFS_EXIT_FAIL. */
static int ledger_status(struct lcmd_ctx *x, const char *name, json_t **out)
{
	json_t *o = json_object();
	*out = o;
	if (!o)
		return LFS_EXIT_FAIL;
	json_object_set_new(o, "name", json_string(name));
	x->name = name;
	free(x->dir);
	if (!(x->dir = lfs_home_ledger_dir(&x->cli.home, name)))
		return LFS_EXIT_FAIL;
	uint8_t key[LFS_KEY_BYTES] = {0};
	int krc = lfs_home_key(key, &x->cli.home, name);
	json_object_set_new(o, "key", json_boolean(krc == 0));
	/* The CAR files can be counted without the key. */
	struct lfs_blockstore *bs = NULL;
	struct lfs_cid *cars = NULL;
	size_t ncars = 0;
	int rc = lfs_blockstore_open(&bs, x->dir, key, 0, false);
	if (!rc)
		rc = lfs_blockstore_list_cars(&cars, &ncars, bs);
	free(cars);
	lfs_blockstore_free(bs);
	if (!rc)
		json_object_set_new(o, "cars", json_integer((json_int_t)ncars));
	if (krc) {
		sodium_memzero(key, sizeof(key));
		json_object_set_new(
			o, "error",
			json_string(krc == -ENOENT ? "no key on this machine"
				    : krc == -EACCES
					    ? "key file may be read by others"
					    : lfs_errmsg(krc)));
		return krc == -ENOENT ? LFS_EXIT_OK : LFS_EXIT_FAIL;
	}
	struct lfs_ledger_opts lo;
	lfs_ledger_opts_init(&lo);
	lo.writer = x->cli.home.writer;
	struct lfs_ledger *l;
	rc = lfs_ledger_open(&l, x->dir, key, &lo, false);
	sodium_memzero(key, sizeof(key));
	if (rc) {
		json_object_set_new(o, "error", json_string(lfs_errmsg(rc)));
		return LFS_EXIT_FAIL;
	}
	struct lfs_cid *heads = NULL, root;
	size_t nheads = 0;
	uint64_t docs = 0;
	int ret = LFS_EXIT_OK;
	lfs_ledger_root(l, &root);
	if ((rc = lfs_ledger_heads(l, &heads, &nheads)) ||
	    (rc = lfs_index_count(&docs, lfs_ledger_index(l), &root))) {
		json_object_set_new(o, "error", json_string(lfs_errmsg(rc)));
		ret = LFS_EXIT_FAIL;
	} else {
		json_t *h = json_array();
		for (size_t i = 0; h && i < nheads; i++)
			json_array_append_new(h, lcmd_json_cid(&heads[i]));
		json_object_set_new(o, "heads", h);
		json_object_set_new(o, "nheads",
				    json_integer((json_int_t)nheads));
		json_object_set_new(o, "documents",
				    json_integer((json_int_t)docs));
	}
	free(heads);
	lfs_ledger_close(l);
	return ret;
}

static void print_status_text(const json_t *o)
{
	printf("%s\n", json_string_value(json_object_get(o, "name")));
	printf("  key: %s\n",
	       json_is_true(json_object_get(o, "key")) ? "present" : "missing");
	const json_t *heads = json_object_get(o, "heads");
	if (heads) {
		printf("  heads: %zu\n", json_array_size(heads));
		for (size_t i = 0; i < json_array_size(heads); i++)
			printf("    %s\n",
			       json_string_value(json_array_get(heads, i)));
		printf("  documents: %" JSON_INTEGER_FORMAT "\n",
		       json_integer_value(json_object_get(o, "documents")));
	}
	const json_t *cars = json_object_get(o, "cars");
	if (cars)
		printf("  car files: %" JSON_INTEGER_FORMAT "\n",
		       json_integer_value(cars));
	const json_t *err = json_object_get(o, "error");
	if (err)
		printf("  error: %s\n", json_string_value(err));
}

static int run_status(struct lcmd_ctx *x)
{
	int rc;
	char **names = NULL;
	size_t n = 0;
	const char *one = x->o.npos ? x->o.pos[0] : NULL;
	if (one) {
		if ((rc = lcmd_need_ledger(x, one)))
			return rc;
	} else {
		if ((rc = lfs_cli_need_home(&x->cli)))
			return rc;
		if ((rc = lfs_home_list(&names, &n, &x->cli.home))) {
			lfs_cli_fail(
				&x->cli,
				"cannot list the ledgers in '%s/ledgers': %s",
				x->cli.home.dir, lfs_errmsg(rc));
			return LFS_EXIT_FAIL;
		}
	}
	json_t *arr = json_array();
	int ret = arr ? LFS_EXIT_OK : LFS_EXIT_FAIL;
	for (size_t i = 0; arr && i < (one ? 1 : n); i++) {
		const char *name = one ? one : names[i];
		json_t *o;
		if (ledger_status(x, name, &o))
			ret = LFS_EXIT_FAIL;
		if (!o || json_array_append_new(arr, o)) {
			ret = lfs_cli_oom(&x->cli);
			break;
		}
		if (!x->o.json) {
			if (i)
				putchar('\n');
			print_status_text(o);
		}
	}
	lfs_home_list_free(names, n);
	if (x->o.json) {
		json_t *out = one ? json_incref(json_array_get(arr, 0)) : arr;
		if (one)
			json_decref(arr);
		if (lcmd_print_json(x, out))
			ret = LFS_EXIT_FAIL;
	} else {
		json_decref(arr);
		if (!one && n == 0)
			printf("no ledgers in '%s' (create one with 'ledgerfs "
			       "init NAME')\n",
			       x->cli.home.dir);
	}
	if (ret)
		fprintf(stderr,
			"ledgerfs status: some ledgers could not be read (see "
			"\"error\" above; 'ledgerfs fsck NAME' checks one)\n");
	return lfs_cli_finish_output(&x->cli, ret);
}

/* ---- conflicts ---- */

static int show_conflicts(struct lcmd_ctx *x, const char *id)
{
	struct lfs_arena a;
	lfs_arena_init(&a, 0);
	struct lfs_index_entry e;
	json_t *arr = x->o.json ? json_array() : NULL;
	int ret = LFS_EXIT_FAIL;
	int rc = lfs_ledger_get(x->l, NULL, id, &e, &a, NULL);
	if (rc) {
		ret = lcmd_report_doc_error(x, id, NULL, rc);
		goto out;
	}
	if (x->o.json && !arr) {
		ret = lfs_cli_oom(&x->cli);
		goto out;
	}
	for (size_t i = 0; i < e.nconflicts; i++) {
		const struct lfs_version *v = &e.conflicts[i];
		json_t *doc;
		char s[LFS_CID_STRLEN + 1], when[LFS_TIME_ISO_MAX];
		lfs_cid_to_string(s, &v->doc);
		lfs_time_iso(when, v->t);
		if ((rc = lfs_ledger_load_doc(x->l, &v->doc, id, &doc))) {
			lfs_cli_fail(
				&x->cli,
				"cannot read a losing version (%s) of document "
				"'%s': %s",
				s, id, lfs_errmsg(rc));
			goto out;
		}
		if (arr) {
			json_t *o =
				json_pack("{s:s,s:I,s:s,s:s,s:o}", "cid", s,
					  "t", (json_int_t)v->t, "time", when,
					  "writer", v->writer, "doc", doc);
			if (!o || json_array_append_new(arr, o)) {
				ret = lfs_cli_oom(&x->cli);
				goto out;
			}
			continue;
		}
		printf("%sversion %s %s writer=%s\n", i ? "\n" : "", s, when,
		       v->writer);
		if (lcmd_print_json(x, doc))
			goto out;
	}
	if (!e.nconflicts)
		fprintf(stderr,
			"ledgerfs conflicts: document '%s' has no conflicting "
			"versions\n",
			id);
	ret = LFS_EXIT_OK;
	if (arr) {
		ret = lcmd_print_json(x, arr);
		arr = NULL;
	}
	ret = lfs_cli_finish_output(&x->cli, ret);
out:
	json_decref(arr);
	lfs_arena_release(&a);
	return ret;
}

static int run_conflicts(struct lcmd_ctx *x)
{
	int rc;
	if (x->o.npos > 1 && (rc = lcmd_check_id(x, x->o.pos[1])))
		return rc;
	if ((rc = lcmd_open_ledger(x, x->o.pos[0])))
		return rc;
	if (x->o.npos > 1)
		return show_conflicts(x, x->o.pos[1]);
	struct lfs_cid root;
	lfs_ledger_root(x->l, &root);
	struct lcmd_collect c;
	if ((rc = lcmd_collect_entries(x, &c, &root, true))) {
		lcmd_collect_release(&c);
		return rc;
	}
	json_t *arr = x->o.json ? json_array() : NULL;
	for (size_t i = 0; i < c.n; i++) {
		const struct lfs_index_entry *e = &c.v[i];
		if (!x->o.json) {
			printf("%s conflicts=%zu\n", e->id, e->nconflicts);
			continue;
		}
		json_t *o = json_pack("{s:s%,s:I}", "id", e->id, e->id_len,
				      "conflicts", (json_int_t)e->nconflicts);
		if (!arr || !o || json_array_append_new(arr, o)) {
			json_decref(arr);
			lcmd_collect_release(&c);
			return lfs_cli_oom(&x->cli);
		}
	}
	lcmd_collect_release(&c);
	rc = x->o.json ? lcmd_print_json(x, arr) : LFS_EXIT_OK;
	return lfs_cli_finish_output(&x->cli, rc);
}

/* ---- the table ---- */

static const struct lcmd cmd_fsck = {
	"fsck",
	run_fsck,
	LCMD_JSON,
	1,
	1,
	"[--home DIR] [--json] NAME",
	"Check ledger NAME: every CAR file (name, authentication, block\n"
	"hashes), every event, the index and every current document. Print\n"
	"each problem, then \"ok\" or \"N problems\"; exit 1 on problems.\n"
	"\n"
	"  --json      print {\"problems\": [TEXT...], \"ok\": "
	"BOOL}\n" LCMD_HOME_HELP LCMD_EXIT_HELP};

static const struct lcmd cmd_key_export = {
	"key export",
	run_key_export,
	0,
	1,
	1,
	"[--home DIR] NAME",
	"Print the key of ledger NAME as a share string (\"lfskey1:\" and 64\n"
	"hex digits). Whoever has it can read the ledger: send it privately.\n"
	"\n" LCMD_HOME_HELP LCMD_EXIT_HELP};

static const struct lcmd cmd_key_import = {
	"key import",
	run_key_import,
	0,
	1,
	2,
	"[--home DIR] NAME [SHARE|-]",
	"Store the key SHARE (as 'ledgerfs key export' prints it; read from\n"
	"standard input when SHARE is - or absent, which keeps it out of the\n"
	"process list and shell history) for ledger NAME, and make an empty\n"
	"local store for it if there is none. Importing the same key again is\n"
	"fine; a different key for a ledger that has one is refused.\n"
	"\n" LCMD_HOME_HELP LCMD_EXIT_HELP};

static const struct lcmd cmd_status = {
	"status",
	run_status,
	LCMD_JSON,
	0,
	1,
	"[--home DIR] [--json] [NAME]",
	"Show each ledger (or NAME): whether its key is here, its heads, its\n"
	"number of documents and of CAR files.\n"
	"\n"
	"  --json      print {\"name\", \"key\": BOOL, \"heads\": [CID...], "
	"\"nheads\",\n"
	"              \"documents\", \"cars\", \"error\"} (an array of them "
	"without NAME)\n" LCMD_HOME_HELP LCMD_EXIT_HELP};

static const struct lcmd cmd_conflicts = {
	"conflicts",
	run_conflicts,
	LCMD_JSON,
	1,
	2,
	"[--home DIR] [--json] NAME [ID]",
	"Without ID: list the documents of ledger NAME that have losing\n"
	"versions from concurrent writes (\"ID conflicts=N\"). With ID: print\n"
	"each losing version of ID (\"version CID TIME writer=W\" and the\n"
	"document).\n"
	"\n"
	"  --json      print [{\"id\", \"conflicts\"}...], or with ID\n"
	"              [{\"cid\", \"t\", \"time\", \"writer\", "
	"\"doc\"}...]\n" LCMD_HOME_HELP LCMD_EXIT_HELP};

int lfs_cmd_fsck(int argc, char **argv)
{
	return lcmd_run(&cmd_fsck, argc, argv);
}

int lfs_cmd_status(int argc, char **argv)
{
	return lcmd_run(&cmd_status, argc, argv);
}

int lfs_cmd_conflicts(int argc, char **argv)
{
	return lcmd_run(&cmd_conflicts, argc, argv);
}

static void key_usage(FILE *f)
{
	fprintf(f, "usage: ledgerfs key export NAME\n"
		   "       ledgerfs key import NAME [SHARE|-]\n"
		   "\n"
		   "  export   print a ledger's key as a share string\n"
		   "  import   store a ledger's key from a share string\n"
		   "\n"
		   "'ledgerfs key SUBCOMMAND --help' describes each one.\n");
}

int lfs_cmd_key(int argc, char **argv)
{
	if (argc < 2) {
		key_usage(stderr);
		return LFS_EXIT_USAGE;
	}
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") ||
	    !strcmp(argv[1], "help")) {
		key_usage(stdout);
		return fflush(stdout) == EOF ? LFS_EXIT_FAIL : LFS_EXIT_OK;
	}
	if (!strcmp(argv[1], "export"))
		return lcmd_run(&cmd_key_export, argc - 1, argv + 1);
	if (!strcmp(argv[1], "import"))
		return lcmd_run(&cmd_key_import, argc - 1, argv + 1);
	fprintf(stderr, "ledgerfs key: unknown subcommand '%s'\n\n", argv[1]);
	key_usage(stderr);
	return LFS_EXIT_USAGE;
}
