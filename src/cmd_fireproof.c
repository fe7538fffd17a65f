/*
 * The read commands on Fireproof ledgers: `ledgerfs ls|get|cat|log|status
 * --fireproof DIR ...`. main() sends a command here when --fireproof is
 * among its arguments; the output is the same as for ledgerfs's own
 * ledgers (documents rendered alike), less what Fireproof does not have
 * (writers, event times: see fp_ledger.h). Write commands are refused.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "cmd.h"
#include "cli.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "buf.h"
#include "dagjson.h"
#include "errmsg.h"
#include "fp_ledger.h"
#include "optscan.h"
#include "timefmt.h"

/* How long an incomplete meta/main.json is read again before failing. */
#define META_WAIT_MS 3000

enum {
	O_FIREPROOF = 1,
	O_KEYBAG,
	O_AT,
	O_JSON,
	O_N,
	O_FILE,
};

static const struct lfs_optname names[] = {
	{"--fireproof", O_FIREPROOF, true},
	{"--keybag", O_KEYBAG, true},
	{"--at", O_AT, true},
	{"--json", O_JSON, false},
	{"-n", O_N, true},
	{"--file", O_FILE, true},
};

struct fctx {
	const char *cmd;
	struct lfs_cli cli; /* messages */
	const char *storage_arg, *keybag_arg, *at, *file;
	bool json, has_n;
	size_t n;
	char *pos[4];
	size_t npos;
	char *storage, *keybag;
	struct lfs_fp_ledger *l;
	struct lfs_fp_state *s;
};

static void usage(FILE *f)
{
	fprintf(f,
		"usage: ledgerfs ls     --fireproof DIR [--keybag DIR] "
		"[--at EVENT] [--json] LEDGER\n"
		"       ledgerfs get    --fireproof DIR [--keybag DIR] "
		"[--at EVENT] LEDGER ID\n"
		"       ledgerfs get    --fireproof DIR [--keybag DIR] "
		"--file NAME LEDGER ID\n"
		"       ledgerfs cat    --fireproof DIR [--keybag DIR] "
		"LEDGER --at EVENT ID\n"
		"       ledgerfs log    --fireproof DIR [--keybag DIR] "
		"[--json] [-n N] LEDGER\n"
		"       ledgerfs status --fireproof DIR [--keybag DIR] "
		"[--json] [LEDGER]\n"
		"\n"
		"Read a ledger that @fireproof/core 0.24 wrote with its file "
		"storage.\n"
		"  --fireproof DIR  its storage directory or file:// URL; "
		"empty\n"
		"                   (--fireproof=): $FP_STORAGE_URL, else\n"
		"                   ~/.fireproof/v0.19\n"
		"  --keybag DIR     its keybag (default: $FP_KEYBAG_URL, else\n"
		"                   ~/.fireproof/keybag)\n"
		"  --at EVENT       the state after a clock event ('head': "
		"now)\n"
		"  --file NAME      print attachment NAME of document ID "
		"(_files)\n"
		"  --json, -n N     as for ledgerfs's own ledgers\n"
		"\n"
		"Exit status: 0 ok, 1 failed, 2 usage error, 3 ledger, "
		"document or\n"
		"event not found.\n");
}

static json_t *json_cid(const struct lfs_cid *c)
{
	char s[LFS_CID_STRLEN + 1];
	lfs_cid_to_string(s, c);
	return json_string(s);
}

static int print_json(json_t *j)
{
	if (!j)
		return LFS_EXIT_FAIL;
	struct lfs_buf b;
	lfs_buf_init(&b, 0);
	int rc = lfs_dagjson_dump(&b, j);
	json_decref(j);
	if (!rc && b.len)
		fwrite(b.data, 1, b.len, stdout);
	lfs_buf_release(&b);
	return rc ? LFS_EXIT_FAIL : LFS_EXIT_OK;
}

static int open_ledger(struct fctx *x, const char *name)
{
	int rc = lfs_fp_ledger_open(&x->l, x->storage, x->keybag, name,
				    META_WAIT_MS);
	if (rc == -ENOENT && !x->l)
		return fprintf(stderr,
			       "ledgerfs %s: no Fireproof ledger '%s' in %s\n",
			       x->cli.cmd, name, x->storage),
		       LFS_EXIT_NOTFOUND;
	if (rc == -EINVAL)
		return lfs_cli_usage_error(&x->cli, "'%s' is not a ledger name",
					   name);
	if (rc) {
		char msg[512] = "";
		if (x->l)
			lfs_fp_ledger_error(x->l, msg, sizeof(msg));
		return lfs_cli_fail(&x->cli, "%s",
				    msg[0] ? msg : lfs_errmsg(rc));
	}
	x->s = lfs_fp_ledger_state(x->l);
	return x->s ? LFS_EXIT_OK
		    : lfs_cli_fail(&x->cli, "ledger '%s' has no state", name);
}

/* The documents now or after --at; *out_a holds their strings. */
static int docs_at(struct fctx *x, struct lfs_arena *a, struct lfs_fp_doc **out,
		   size_t *n, bool *owned)
{
	*owned = false;
	if (!x->at || !strcmp(x->at, "head")) {
		*out = x->s->docs;
		*n = x->s->ndocs;
		return LFS_EXIT_OK;
	}
	struct lfs_cid ev;
	if (lfs_cid_from_string(&ev, x->at))
		return lfs_cli_usage_error(&x->cli, "--at %s: not an event CID",
					   x->at);
	int rc = lfs_fp_ledger_docs_at(x->l, x->s, &ev, a, out, n);
	if (rc == -ENOENT && !lfs_fp_state_event(x->s, &ev)) {
		fprintf(stderr,
			"ledgerfs %s: ledger '%s' has no event %s "
			"('ledgerfs log --fireproof' lists them)\n",
			x->cli.cmd, lfs_fp_ledger_name(x->l), x->at);
		return LFS_EXIT_NOTFOUND;
	}
	if (rc)
		return lfs_cli_fail(
			&x->cli, "cannot read ledger '%s' at %s: %s",
			lfs_fp_ledger_name(x->l), x->at, lfs_errmsg(rc));
	*owned = true;
	return LFS_EXIT_OK;
}

static int run_ls(struct fctx *x)
{
	struct lfs_arena a;
	lfs_arena_init(&a, 0);
	struct lfs_fp_doc *d;
	size_t n;
	bool owned;
	int rc = docs_at(x, &a, &d, &n, &owned);
	if (rc) {
		lfs_arena_release(&a);
		return rc;
	}
	json_t *arr = x->json ? json_array() : NULL;
	for (size_t i = 0; i < n; i++) {
		if (!x->json) {
			fwrite(d[i].id, 1, d[i].id_len, stdout);
			putchar('\n');
			continue;
		}
		json_t *o = json_pack("{s:s%,s:o}", "id", d[i].id, d[i].id_len,
				      "cid", json_cid(&d[i].value));
		if (!o || json_array_append_new(arr, o))
			rc = LFS_EXIT_FAIL;
	}
	if (x->json && !rc)
		rc = print_json(arr);
	else
		json_decref(arr);
	if (owned)
		free(d);
	lfs_arena_release(&a);
	return rc;
}

static int print_file(struct fctx *x, const struct lfs_cid *doc, const char *id)
{
	json_t *j;
	int rc = lfs_fp_ledger_doc_json(x->l, doc, id, (void **)&j);
	if (rc)
		return lfs_cli_fail(&x->cli, "cannot read document '%s': %s",
				    id, lfs_errmsg(rc));
	json_t *f = json_object_get(json_object_get(j, "_files"), x->file);
	const char *car = json_string_value(json_object_get(
		json_array_get(json_object_get(f, "car"), 0), "/"));
	const char *cid = json_string_value(
		json_object_get(json_object_get(f, "cid"), "/"));
	struct lfs_cid cc, fc;
	if (!f) {
		json_decref(j);
		fprintf(stderr, "ledgerfs %s: document '%s' has no file '%s'\n",
			x->cli.cmd, id, x->file);
		return LFS_EXIT_NOTFOUND;
	}
	if (!car || !cid || lfs_cid_from_string(&cc, car) ||
	    lfs_cid_from_string(&fc, cid)) {
		json_decref(j);
		return lfs_cli_fail(
			&x->cli,
			"file '%s' of document '%s' has no car and cid",
			x->file, id);
	}
	json_decref(j);
	struct lfs_buf b;
	lfs_buf_init(&b, LFS_FP_CAR_MAX);
	rc = lfs_fp_ledger_file(x->l, &cc, &fc, &b);
	if (rc) {
		char msg[512] = "";
		lfs_fp_ledger_error(x->l, msg, sizeof(msg));
		lfs_buf_release(&b);
		return lfs_cli_fail(
			&x->cli, "cannot read file '%s' of document '%s': %s",
			x->file, id, rc == -ENOENT ? lfs_errmsg(rc) : msg);
	}
	if (b.len)
		fwrite(b.data, 1, b.len, stdout);
	lfs_buf_release(&b);
	return LFS_EXIT_OK;
}

static int run_get(struct fctx *x)
{
	const char *id = x->pos[1];
	struct lfs_arena a;
	lfs_arena_init(&a, 0);
	struct lfs_fp_doc *d;
	size_t n;
	bool owned;
	int rc = docs_at(x, &a, &d, &n, &owned);
	if (rc) {
		lfs_arena_release(&a);
		return rc;
	}
	struct lfs_fp_doc key = {.id = id, .id_len = strlen(id)};
	const struct lfs_fp_doc *f = NULL;
	for (size_t i = 0; i < n && !f; i++)
		if (d[i].id_len == key.id_len &&
		    !memcmp(d[i].id, id, key.id_len))
			f = &d[i];
	if (!f) {
		fprintf(stderr,
			"ledgerfs %s: ledger '%s' has no document '%s'%s%s\n",
			x->cli.cmd, lfs_fp_ledger_name(x->l), id,
			x->at ? " at " : "", x->at ? x->at : "");
		rc = LFS_EXIT_NOTFOUND;
	} else if (x->file) {
		rc = print_file(x, &f->value, id);
	} else {
		struct lfs_buf b;
		lfs_buf_init(&b, 0);
		int e = lfs_fp_ledger_render(x->l, &f->value, id, &b);
		if (e)
			rc = lfs_cli_fail(
				&x->cli,
				"cannot read document '%s' of ledger '%s': %s",
				id, lfs_fp_ledger_name(x->l),
				e == -ERANGE ? "it holds an integer beyond "
					       "64 bits, which JSON here "
					       "cannot show"
					     : lfs_errmsg(e));
		else
			fwrite(b.data, 1, b.len, stdout);
		lfs_buf_release(&b);
	}
	if (owned)
		free(d);
	lfs_arena_release(&a);
	return rc;
}

static bool is_del(const struct lfs_cid *c)
{
	static const uint8_t b[] = {0xa1, 0x63, 'd', 'e', 'l', 0xf5};
	struct lfs_cid d;
	lfs_cid_of(&d, LFS_CODEC_DAG_CBOR, b, sizeof(b));
	return lfs_cid_equal(&d, c);
}

static int run_log(struct fctx *x)
{
	json_t *arr = x->json ? json_array() : NULL;
	int rc = LFS_EXIT_OK;
	for (size_t i = 0; i < x->s->nevents; i++) {
		if (x->has_n && i >= x->n)
			break;
		const struct lfs_fp_evinfo *e = &x->s->events[i];
		char s[LFS_CID_STRLEN + 1], when[LFS_TIME_ISO_MAX];
		lfs_cid_to_string(s, &e->cid);
		lfs_time_iso(when, e->t_ns / 1000);
		if (!x->json) {
			printf("%s %s parents=%zu", s, when, e->ev.nparents);
			for (size_t k = 0; k < e->ev.nops; k++)
				printf(" %s%s",
				       is_del(&e->ev.ops[k].value) ? "-" : "",
				       e->ev.ops[k].key);
			putchar('\n');
			continue;
		}
		json_t *parents = json_array(), *changes = json_array();
		for (size_t k = 0; k < e->ev.nparents; k++)
			json_array_append_new(parents,
					      json_cid(&e->ev.parents[k]));
		for (size_t k = 0; k < e->ev.nops; k++) {
			const struct lfs_fp_op *op = &e->ev.ops[k];
			json_array_append_new(
				changes,
				json_pack("{s:s%,s:o}", "id", op->key,
					  op->key_len, "doc",
					  is_del(&op->value)
						  ? json_null()
						  : json_cid(&op->value)));
		}
		json_t *o = json_pack(
			"{s:o,s:I,s:s,s:o,s:o}", "event", json_cid(&e->cid),
			"t", (json_int_t)(e->t_ns / 1000), "time", when,
			"parents", parents, "changes", changes);
		if (!o || json_array_append_new(arr, o))
			rc = LFS_EXIT_FAIL;
	}
	if (x->json && !rc)
		rc = print_json(arr);
	else
		json_decref(arr);
	return rc;
}

static json_t *status_of(struct fctx *x, const char *name)
{
	struct lfs_fp_ledger *l = NULL;
	int rc = lfs_fp_ledger_open(&l, x->storage, x->keybag, name,
				    META_WAIT_MS);
	json_t *o = json_pack("{s:s,s:s}", "name", name, "format",
			      "fireproof-0.24");
	struct lfs_fp_state *s = l ? lfs_fp_ledger_state(l) : NULL;
	if (s) {
		json_t *heads = json_array();
		for (size_t i = 0; i < s->nheads; i++)
			json_array_append_new(heads, json_cid(&s->heads[i]));
		json_object_set_new(o, "heads", heads);
		json_object_set_new(o, "nheads",
				    json_integer((json_int_t)s->nheads));
		json_object_set_new(o, "documents",
				    json_integer((json_int_t)s->ndocs));
		json_object_set_new(o, "events",
				    json_integer((json_int_t)s->nevents));
		json_object_set_new(o, "cars",
				    json_integer((json_int_t)s->ncars));
		json_object_set_new(o, "missing_cars",
				    json_integer((json_int_t)s->missing));
	}
	char msg[512] = "";
	if (l)
		lfs_fp_ledger_error(l, msg, sizeof(msg));
	if (rc && !msg[0])
		snprintf(msg, sizeof(msg), "%s", lfs_errmsg(rc));
	json_object_set_new(o, "error",
			    msg[0] ? json_string(msg) : json_null());
	lfs_fp_state_unref(s);
	lfs_fp_ledger_close(l);
	return o;
}

static void print_status_text(const json_t *o)
{
	printf("%s: ", json_string_value(json_object_get(o, "name")));
	if (json_object_get(o, "documents"))
		printf("%" JSON_INTEGER_FORMAT
		       " documents, %" JSON_INTEGER_FORMAT
		       " events, %" JSON_INTEGER_FORMAT " heads",
		       json_integer_value(json_object_get(o, "documents")),
		       json_integer_value(json_object_get(o, "events")),
		       json_integer_value(json_object_get(o, "nheads")));
	const char *e = json_string_value(json_object_get(o, "error"));
	if (e)
		printf("%serror: %s",
		       json_object_get(o, "documents") ? "; " : "", e);
	putchar('\n');
}

static int run_status(struct fctx *x)
{
	char **v = NULL;
	size_t n = 0;
	if (x->npos) {
		v = &x->pos[0];
		n = 1;
	} else {
		int rc = lfs_fp_list(&v, &n, x->storage);
		if (rc)
			return lfs_cli_fail(&x->cli, "cannot list %s: %s",
					    x->storage, lfs_errmsg(rc));
	}
	json_t *arr = json_array();
	int rc = LFS_EXIT_OK;
	for (size_t i = 0; i < n; i++) {
		json_t *o = status_of(x, v[i]);
		if (json_string_value(json_object_get(o, "error")))
			rc = LFS_EXIT_FAIL;
		if (!x->json)
			print_status_text(o);
		json_array_append_new(arr, o);
	}
	if (x->json) {
		if (x->npos) {
			json_t *one = json_incref(json_array_get(arr, 0));
			json_decref(arr);
			print_json(one);
		} else {
			print_json(arr);
		}
	} else {
		json_decref(arr);
	}
	if (!x->npos) {
		for (size_t i = 0; i < n; i++)
			free(v[i]);
		free(v);
	}
	return rc;
}

int lfs_cmd_fireproof(const char *cmd, int argc, char **argv)
{
	struct fctx x = {
		.cmd = cmd,
		.cli = {.cmd = cmd,
			.args = "--fireproof DIR [--keybag DIR] [OPTIONS] "
				"LEDGER [ID]"},
	};
	struct lfs_optscan sc;
	lfs_optscan_init(&sc, argc, argv);
	const char *val;
	int k, rc;
	while ((k = lfs_optscan_next(&sc, names, sizeof(names) / sizeof(*names),
				     &val)) != LFS_OPT_END) {
		if (k == LFS_OPT_POS) {
			if (x.npos == 3)
				return lfs_cli_usage_error(
					&x.cli, "too many arguments");
			x.pos[x.npos++] = (char *)val;
			continue;
		}
		if (k == LFS_OPT_HELP) {
			usage(stdout);
			return lfs_cli_finish_output(&x.cli, LFS_EXIT_OK);
		}
		if (k == LFS_OPT_UNKNOWN)
			return lfs_cli_usage_error(
				&x.cli, "unknown option '%s'", sc.arg);
		if (k == LFS_OPT_NOVALUE)
			return lfs_cli_usage_error(&x.cli, "%s needs a value",
						   val);
		switch (names[k].flag) {
		case O_FIREPROOF:
			x.storage_arg = val;
			break;
		case O_KEYBAG:
			x.keybag_arg = val;
			break;
		case O_AT:
			x.at = val;
			break;
		case O_JSON:
			x.json = true;
			break;
		case O_FILE:
			x.file = val;
			break;
		case O_N: {
			char *end;
			unsigned long long v = strtoull(val, &end, 10);
			if (end == val || *end || val[0] == '-')
				return lfs_cli_usage_error(
					&x.cli, "-n %s: not a number", val);
			x.has_n = true;
			x.n = (size_t)v;
			break;
		}
		}
	}
	bool ls = !strcmp(cmd, "ls"), get = !strcmp(cmd, "get"),
	     cat = !strcmp(cmd, "cat"), log = !strcmp(cmd, "log"),
	     status = !strcmp(cmd, "status");
	if (!ls && !get && !cat && !log && !status)
		return lfs_cli_usage_error(
			&x.cli,
			"Fireproof ledgers are read-only here: "
			"'%s' cannot change them (ls, get, cat, log "
			"and status read them)",
			cmd);
	size_t want = ls || log ? 1 : status ? x.npos : 2;
	if (x.npos != want || (status && x.npos > 1))
		return lfs_cli_usage_error(
			&x.cli, x.npos < want ? "missing arguments"
					      : "too many arguments");
	if (cat && !x.at)
		return lfs_cli_usage_error(&x.cli, "--at EVENT is required");
	if ((x.at && (log || status)) || (x.file && !get) ||
	    (x.json && (get || cat)) || (x.has_n && !log))
		return lfs_cli_usage_error(&x.cli, "option not valid for '%s'",
					   cmd);
	x.storage = lfs_fp_storage_dir(x.storage_arg);
	x.keybag = lfs_fp_keybag_dir(x.keybag_arg);
	if (!x.storage || !x.keybag) {
		rc = lfs_cli_fail(&x.cli,
				  "no --fireproof DIR given and no $HOME");
	} else if (status) {
		rc = run_status(&x);
	} else if (!(rc = open_ledger(&x, x.pos[0]))) {
		rc = ls ? run_ls(&x) : log ? run_log(&x) : run_get(&x);
	}
	lfs_fp_state_unref(x.s);
	lfs_fp_ledger_close(x.l);
	free(x.storage);
	free(x.keybag);
	return lfs_cli_finish_output(&x.cli, rc);
}
