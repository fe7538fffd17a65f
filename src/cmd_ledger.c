/*
 * The ledger subcommands: init, put, rm, get, cat, ls, log, diff, merge,
 * compact, fsck, key, status and conflicts. They work on the ledgers of
 * this machine's home directory (home.h) without FUSE, for scripts and
 * tests, and for repairing a ledger by hand.
 *
 * Every command opens the ledger, does one thing and closes it; a write
 * commits one transaction and is durable when the command exits 0. Results
 * go to stdout (JSON with --json where that helps), errors to stderr naming
 * the ledger or document and what to do. Exit codes are as cmd.h says.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "cmd.h"
#include "cli.h"
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
#include "jsonparse.h"
#include "ledger.h"
#include "timefmt.h"

#include "cmd_ledger.h"

/* JSON text of one document: its DAG-CBOR is capped at LFS_DOC_MAX. */
#define INPUT_MAX (4 * LFS_DOC_MAX)

/* ---- messages ---- */

/* Print a JSON value as documents are shown, and drop the reference. */
int lcmd_print_json(const struct lcmd_ctx *x, json_t *j)
{
	struct lfs_buf text;
	lfs_buf_init(&text, 0);
	int rc = j ? lfs_dagjson_dump(&text, j) : -ENOMEM;
	json_decref(j);
	if (rc) {
		lfs_buf_release(&text);
		lfs_cli_fail(&x->cli, "cannot render the output as JSON: %s",
			     lfs_errmsg(rc));
		return LFS_EXIT_FAIL;
	}
	fwrite(text.data, 1, text.len, stdout);
	lfs_buf_release(&text);
	return LFS_EXIT_OK;
}

json_t *lcmd_json_cid(const struct lfs_cid *c)
{
	char s[LFS_CID_STRLEN + 1];
	lfs_cid_to_string(s, c);
	return json_string(s);
}

/* ---- home, ledger, key ---- */

/* The home open, name valid, and the ledger's directory present. */
int lcmd_need_ledger(struct lcmd_ctx *x, const char *name)
{
	x->name = name;
	free(x->dir);
	return lfs_cli_need_ledger(&x->cli, name, &x->dir);
}

/* lcmd_need_ledger() and then open it with its key. */
int lcmd_open_ledger(struct lcmd_ctx *x, const char *name)
{
	int rc = lcmd_need_ledger(x, name);
	return rc ? rc : lfs_cli_open_ledger(&x->cli, name, NULL, &x->l);
}

int lcmd_check_id(struct lcmd_ctx *x, const char *id)
{
	size_t n = strlen(id);
	if (n && n <= LFS_INDEX_ID_MAX && lfs_utf8_valid(id, n))
		return LFS_EXIT_OK;
	return lfs_cli_usage_error(
		&x->cli,
		"'%s' is not a valid document id (1 to %d bytes of "
		"UTF-8)",
		id, LFS_INDEX_ID_MAX);
}

/*
 * The index root recorded by an event given on the command line ("head" or
 * NULL: the current state).
 */
static int resolve_root(struct lcmd_ctx *x, const char *spec,
			struct lfs_cid *out)
{
	if (!spec || !strcmp(spec, "head")) {
		lfs_ledger_root(x->l, out);
		return LFS_EXIT_OK;
	}
	struct lfs_cid ev;
	int rc = lfs_cid_from_string(&ev, spec);
	if (rc || ev.codec != LFS_CODEC_DAG_CBOR)
		return lfs_cli_usage_error(
			&x->cli,
			"'%s' is not an event CID (expected "
			"\"b...\" as 'ledgerfs log %s' prints, or "
			"'head')",
			spec, x->name);
	rc = lfs_ledger_event_root(x->l, &ev, out);
	if (rc == -ENOENT) {
		lfs_cli_fail(&x->cli,
			     "no event %s in ledger '%s' ('ledgerfs log %s' "
			     "lists its "
			     "events)",
			     spec, x->name, x->name);
		return LFS_EXIT_NOTFOUND;
	}
	if (rc == -EBADMSG) {
		lfs_cli_fail(&x->cli,
			     "%s is not an event of ledger '%s' (it names "
			     "another kind "
			     "of block, or a damaged one)",
			     spec, x->name);
		return LFS_EXIT_FAIL;
	}
	if (rc) {
		lfs_cli_fail(&x->cli, "cannot read event %s of ledger '%s': %s",
			     spec, x->name, lfs_errmsg(rc));
		return LFS_EXIT_FAIL;
	}
	return LFS_EXIT_OK;
}

int lcmd_report_doc_error(struct lcmd_ctx *x, const char *id, const char *at,
			  int rc)
{
	if (rc == -ENOENT) {
		lfs_cli_fail(&x->cli, "no document '%s' in ledger '%s'%s%s", id,
			     x->name, at ? " at event " : "", at ? at : "");
		return LFS_EXIT_NOTFOUND;
	}
	lfs_cli_fail(&x->cli, "cannot read document '%s' of ledger '%s': %s",
		     id, x->name, lfs_errmsg(rc));
	return LFS_EXIT_FAIL;
}

/* ---- init ---- */

static int run_init(struct lcmd_ctx *x)
{
	const char *name = x->o.pos[0];
	int rc;
	if ((rc = lfs_cli_need_home(&x->cli)) ||
	    (rc = lfs_cli_check_name(&x->cli, name)))
		return rc;
	rc = lfs_home_create(&x->cli.home, name);
	if (rc == -EEXIST) {
		lfs_cli_fail(&x->cli,
			     "ledger '%s' already exists on this machine (its "
			     "key or "
			     "its directory is in '%s'); choose another name",
			     name, x->cli.home.dir);
		return LFS_EXIT_FAIL;
	}
	if (rc) {
		lfs_cli_fail(&x->cli, "cannot create ledger '%s' in '%s': %s",
			     name, x->cli.home.dir, lfs_errmsg(rc));
		return LFS_EXIT_FAIL;
	}
	return LFS_EXIT_OK;
}

/* ---- put, rm ---- */

static int read_input(struct lfs_buf *out, const char *path)
{
	bool in = !strcmp(path, "-");
	int fd = in ? STDIN_FILENO : open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	struct stat st;
	int rc = 0;
	if (fstat(fd, &st) == 0 && S_ISDIR(st.st_mode))
		rc = -EISDIR;
	while (!rc) {
		if ((rc = lfs_buf_reserve(out, 4096)))
			break;
		ssize_t n = read(fd, out->data + out->len, out->cap - out->len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			rc = -errno;
		else if (n == 0)
			break;
		else
			out->len += (size_t)n;
	}
	if (!in)
		close(fd);
	return rc;
}

static void print_commit(struct lcmd_ctx *x, const struct lfs_cid *ev,
			 bool have_ev, bool committed)
{
	char s[LFS_CID_STRLEN + 1] = "";
	if (have_ev)
		lfs_cid_to_string(s, ev);
	if (x->o.json) {
		lcmd_print_json(x, json_pack("{s:s?,s:b}", "event",
					     have_ev ? s : NULL, "committed",
					     committed));
		return;
	}
	if (have_ev)
		printf("%s\n", s);
}

static int commit(struct lcmd_ctx *x, struct lfs_txn *t, const char *what)
{
	struct lfs_cid ev = {0};
	bool committed = false;
	int rc = lfs_ledger_commit(x->l, t, &ev, &committed);
	if (rc == -EFBIG) {
		lfs_cli_fail(&x->cli,
			     "%s: a document is over the %zu MiB limit", what,
			     LFS_DOC_MAX >> 20);
		return LFS_EXIT_FAIL;
	}
	if (rc == -EINVAL) {
		lfs_cli_fail(&x->cli,
			     "%s: the document cannot be stored (nesting "
			     "deeper than "
			     "%d levels, or a value DAG-CBOR cannot hold)",
			     what, LFS_CBOR_MAX_DEPTH);
		return LFS_EXIT_FAIL;
	}
	if (rc) {
		lfs_cli_fail(
			&x->cli,
			"%s: the commit to ledger '%s' failed: %s (nothing was "
			"committed)",
			what, x->name, lfs_errmsg(rc));
		return LFS_EXIT_FAIL;
	}
	bool have_ev = !lfs_cid_equal(&ev, &(struct lfs_cid){0});
	if (!committed)
		fprintf(stderr,
			"ledgerfs %s: nothing changed; nothing was committed\n",
			x->c->name);
	print_commit(x, &ev, have_ev, committed);
	return lfs_cli_finish_output(&x->cli, LFS_EXIT_OK);
}

static int run_put(struct lcmd_ctx *x)
{
	const char *id = x->o.pos[1];
	const char *path = x->o.npos > 2 ? x->o.pos[2] : "-";
	const char *src = strcmp(path, "-") ? path : "standard input";
	int rc;
	if ((rc = lcmd_check_id(x, id)))
		return rc;
	if ((rc = lcmd_open_ledger(x, x->o.pos[0])))
		return rc;

	struct lfs_buf in;
	lfs_buf_init(&in, INPUT_MAX);
	json_t *doc = NULL;
	struct lfs_txn *t = NULL;
	int ret = LFS_EXIT_FAIL;
	if ((rc = read_input(&in, path))) {
		if (rc == -EFBIG)
			lfs_cli_fail(&x->cli,
				     "'%s' is too large (over %zu MiB of JSON)",
				     src, INPUT_MAX >> 20);
		else
			lfs_cli_fail(&x->cli, "cannot read '%s': %s", src,
				     strerror(-rc));
		goto out;
	}
	if (in.len == 0) {
		lfs_cli_fail(
			&x->cli,
			"'%s' is empty: a document is a JSON object (at least "
			"{}); nothing was committed",
			src);
		goto out;
	}
	json_error_t jerr;
	doc = lfs_json_parse(in.data, in.len,
			     JSON_DECODE_ANY | JSON_REJECT_DUPLICATES |
				     JSON_ALLOW_NUL,
			     &jerr);
	if (!doc) {
		lfs_cli_fail(&x->cli,
			     "'%s' is not valid JSON: line %d, column %d: %s; "
			     "nothing "
			     "was committed",
			     src, jerr.line, jerr.column, jerr.text);
		goto out;
	}
	if (!json_is_object(doc)) {
		lfs_cli_fail(
			&x->cli,
			"'%s' is JSON but not an object: a document is a JSON "
			"object ({...}); nothing was committed",
			src);
		goto out;
	}
	json_t *given = json_object_get(doc, "_id");
	if (given && !json_is_string(given)) {
		lfs_cli_fail(
			&x->cli,
			"'%s': \"_id\" must be a string (the document id); "
			"nothing was committed",
			src);
		goto out;
	}
	if (given && strcmp(json_string_value(given), id)) {
		lfs_cli_fail(
			&x->cli,
			"'%s': \"_id\" is \"%s\" but the document id given is "
			"'%s'; make them agree or drop \"_id\" (nothing was "
			"committed)",
			src, json_string_value(given), id);
		goto out;
	}
	if ((rc = lfs_txn_new(&t)) || (rc = lfs_txn_put(t, id, doc))) {
		lfs_cli_fail(&x->cli, "cannot add document '%s': %s", id,
			     lfs_errmsg(rc));
		goto out;
	}
	char what[64 + LFS_INDEX_ID_MAX];
	snprintf(what, sizeof(what), "document '%s'", id);
	ret = commit(x, t, what);
out:
	lfs_txn_free(t);
	json_decref(doc);
	lfs_buf_release(&in);
	return ret;
}

static int run_rm(struct lcmd_ctx *x)
{
	int rc;
	for (size_t i = 1; i < x->o.npos; i++)
		if ((rc = lcmd_check_id(x, x->o.pos[i])))
			return rc;
	if ((rc = lcmd_open_ledger(x, x->o.pos[0])))
		return rc;
	struct lfs_cid root;
	lfs_ledger_root(x->l, &root);
	struct lfs_txn *t = NULL;
	struct lfs_arena a;
	lfs_arena_init(&a, 0);
	int ret = LFS_EXIT_FAIL;
	if ((rc = lfs_txn_new(&t))) {
		ret = lfs_cli_oom(&x->cli);
		goto out;
	}
	size_t missing = 0;
	for (size_t i = 1; i < x->o.npos; i++) {
		const char *id = x->o.pos[i];
		struct lfs_index_entry e;
		rc = lfs_ledger_get(x->l, &root, id, &e, &a, NULL);
		if (rc == -ENOENT && !x->o.force) {
			lfs_cli_fail(&x->cli, "no document '%s' in ledger '%s'",
				     id, x->name);
			missing++;
			continue;
		}
		if (rc && rc != -ENOENT) {
			ret = lcmd_report_doc_error(x, id, NULL, rc);
			goto out;
		}
		if ((rc = lfs_txn_delete(t, id))) {
			lfs_cli_fail(&x->cli, "cannot delete '%s': %s", id,
				     lfs_errmsg(rc));
			goto out;
		}
	}
	if (missing) {
		fprintf(stderr,
			"Nothing was deleted (use --force to delete the "
			"others anyway).\n");
		ret = LFS_EXIT_NOTFOUND;
		goto out;
	}
	ret = commit(x, t, "delete");
out:
	lfs_arena_release(&a);
	lfs_txn_free(t);
	return ret;
}

/* ---- get, cat ---- */

static int show_doc(struct lcmd_ctx *x, const char *id, const char *at)
{
	struct lfs_cid root;
	int rc = resolve_root(x, at, &root);
	if (rc)
		return rc;
	struct lfs_arena a;
	lfs_arena_init(&a, 0);
	struct lfs_index_entry e;
	json_t *doc = NULL;
	rc = lfs_ledger_get(x->l, &root, id, &e, &a, &doc);
	lfs_arena_release(&a);
	if (rc)
		return lcmd_report_doc_error(x, id, at, rc);
	rc = lcmd_print_json(x, doc);
	return lfs_cli_finish_output(&x->cli, rc);
}

static int run_get(struct lcmd_ctx *x)
{
	int rc;
	if ((rc = lcmd_check_id(x, x->o.pos[1])) ||
	    (rc = lcmd_open_ledger(x, x->o.pos[0])))
		return rc;
	return show_doc(x, x->o.pos[1], x->o.at);
}

static int run_cat(struct lcmd_ctx *x)
{
	if (!x->o.at)
		return lfs_cli_usage_error(
			&x->cli, "--at EVENT is required (or use "
				 "'ledgerfs get' for the current state)");
	return run_get(x);
}

/* ---- ls ---- */

static int collect_fn(void *ctx, const struct lfs_index_entry *e)
{
	struct lcmd_collect *c = ctx;
	if (c->only_conflicts && !e->nconflicts)
		return 0;
	if (c->n == c->cap) {
		size_t cap = c->cap ? c->cap * 2 : 64;
		void *p = realloc(c->v, cap * sizeof(*c->v));
		if (!p)
			return -ENOMEM;
		c->v = p;
		c->cap = cap;
	}
	int rc = lfs_index_entry_copy(&c->v[c->n], &c->a, e);
	if (rc)
		return rc;
	c->n++;
	return 0;
}

static int entry_cmp(const void *p, const void *q)
{
	const struct lfs_index_entry *a = p, *b = q;
	size_t n = a->id_len < b->id_len ? a->id_len : b->id_len;
	int c = memcmp(a->id, b->id, n);
	return c ? c : (a->id_len > b->id_len) - (a->id_len < b->id_len);
}

/* All entries under root (only those with conflicts), sorted by id. */
int lcmd_collect_entries(struct lcmd_ctx *x, struct lcmd_collect *c,
			 const struct lfs_cid *root, bool only_conflicts)
{
	memset(c, 0, sizeof(*c));
	lfs_arena_init(&c->a, 0);
	c->only_conflicts = only_conflicts;
	int rc = lfs_index_each(lfs_ledger_index(x->l), root, collect_fn, c);
	if (rc) {
		lfs_cli_fail(&x->cli,
			     "cannot read the index of ledger '%s': %s",
			     x->name, lfs_errmsg(rc));
		return LFS_EXIT_FAIL;
	}
	if (c->n)
		qsort(c->v, c->n, sizeof(*c->v), entry_cmp);
	return LFS_EXIT_OK;
}

void lcmd_collect_release(struct lcmd_collect *c)
{
	free(c->v);
	lfs_arena_release(&c->a);
}

static int run_ls(struct lcmd_ctx *x)
{
	int rc;
	if ((rc = lcmd_open_ledger(x, x->o.pos[0])))
		return rc;
	struct lfs_cid root;
	if ((rc = resolve_root(x, x->o.at, &root)))
		return rc;
	struct lcmd_collect c;
	if ((rc = lcmd_collect_entries(x, &c, &root, false))) {
		lcmd_collect_release(&c);
		return rc;
	}
	if (!x->o.json) {
		for (size_t i = 0; i < c.n; i++)
			printf("%s\n", c.v[i].id);
		lcmd_collect_release(&c);
		return lfs_cli_finish_output(&x->cli, LFS_EXIT_OK);
	}
	json_t *arr = json_array();
	for (size_t i = 0; arr && i < c.n; i++) {
		const struct lfs_index_entry *e = &c.v[i];
		json_t *o = json_pack(
			"{s:s%,s:o,s:I,s:s,s:I}", "id", e->id, e->id_len, "cid",
			lcmd_json_cid(&e->cur.doc), "t", (json_int_t)e->cur.t,
			"writer", e->cur.writer, "conflicts",
			(json_int_t)e->nconflicts);
		if (!o || json_array_append_new(arr, o)) {
			json_decref(arr);
			arr = NULL;
		}
	}
	lcmd_collect_release(&c);
	rc = lcmd_print_json(x, arr);
	return lfs_cli_finish_output(&x->cli, rc);
}

/* ---- log ---- */

struct logw {
	struct lcmd_ctx *x;
	json_t *arr;
	size_t seen;
};

static int log_fn(void *ctx, const struct lfs_cid *cid,
		  const struct lfs_event *ev)
{
	struct logw *w = ctx;
	if (w->x->o.has_n && w->seen >= w->x->o.n)
		return 1;
	w->seen++;
	char s[LFS_CID_STRLEN + 1], when[LFS_TIME_ISO_MAX];
	lfs_cid_to_string(s, cid);
	lfs_time_iso(when, ev->t);
	if (!w->arr) {
		printf("%s %s writer=%s parents=%zu", s, when, ev->writer,
		       ev->nparents);
		for (size_t i = 0; i < ev->nops; i++)
			printf(" %s%s", ev->ops[i].del ? "-" : "",
			       ev->ops[i].id);
		putchar('\n');
		return 0;
	}
	json_t *parents = json_array(), *changes = json_array();
	for (size_t i = 0; parents && i < ev->nparents; i++)
		if (json_array_append_new(parents,
					  lcmd_json_cid(&ev->parents[i])))
			goto oom;
	for (size_t i = 0; changes && i < ev->nops; i++) {
		const struct lfs_op *op = &ev->ops[i];
		json_t *c = json_pack(
			"{s:s%,s:o}", "id", op->id, op->id_len, "doc",
			op->del ? json_null() : lcmd_json_cid(&op->doc));
		if (!c || json_array_append_new(changes, c))
			goto oom;
	}
	json_t *o =
		parents && changes
			? json_pack("{s:o,s:I,s:s,s:s,s:O,s:O}", "event",
				    lcmd_json_cid(cid), "t", (json_int_t)ev->t,
				    "time", when, "writer", ev->writer,
				    "parents", parents, "changes", changes)
			: NULL;
	if (!o || json_array_append_new(w->arr, o))
		goto oom;
	json_decref(parents);
	json_decref(changes);
	return 0;
oom:
	json_decref(parents);
	json_decref(changes);
	return -ENOMEM;
}

static int run_log(struct lcmd_ctx *x)
{
	int rc;
	if ((rc = lcmd_open_ledger(x, x->o.pos[0])))
		return rc;
	struct lfs_cid *heads;
	size_t n;
	if ((rc = lfs_ledger_heads(x->l, &heads, &n)))
		return lfs_cli_oom(&x->cli);
	struct logw w = {.x = x};
	if (x->o.json && !(w.arr = json_array())) {
		free(heads);
		return lfs_cli_oom(&x->cli);
	}
	struct lfs_blocks b = lfs_ledger_blocks(x->l);
	rc = lfs_clock_walk(&b, heads, n, log_fn, &w);
	free(heads);
	if (rc < 0) {
		json_decref(w.arr);
		fflush(stdout);
		lfs_cli_fail(
			&x->cli, "cannot read the history of ledger '%s': %s%s",
			x->name, lfs_errmsg(rc),
			rc == -ENOENT || rc == -EBADMSG
				? " ('ledgerfs fsck' names the damaged files)"
				: "");
		return LFS_EXIT_FAIL;
	}
	if (w.arr)
		rc = lcmd_print_json(x, w.arr);
	else
		rc = LFS_EXIT_OK;
	return lfs_cli_finish_output(&x->cli, rc);
}

/* ---- diff ---- */

struct change {
	char *id;
	char op; /* '+', '-', '~' */
};

struct diffw {
	struct change *v;
	size_t n, cap;
};

static int diff_fn(void *ctx, const struct lfs_index_entry *ea,
		   const struct lfs_index_entry *eb)
{
	struct diffw *d = ctx;
	if (d->n == d->cap) {
		size_t cap = d->cap ? d->cap * 2 : 64;
		void *p = realloc(d->v, cap * sizeof(*d->v));
		if (!p)
			return -ENOMEM;
		d->v = p;
		d->cap = cap;
	}
	const struct lfs_index_entry *e = eb ? eb : ea;
	if (!(d->v[d->n].id = strdup(e->id)))
		return -ENOMEM;
	d->v[d->n++].op = !ea ? '+' : !eb ? '-' : '~';
	return 0;
}

static int change_cmp(const void *p, const void *q)
{
	return strcmp(((const struct change *)p)->id,
		      ((const struct change *)q)->id);
}

static int run_diff(struct lcmd_ctx *x)
{
	int rc;
	if ((rc = lcmd_open_ledger(x, x->o.pos[0])))
		return rc;
	struct lfs_cid ra, rb;
	if ((rc = resolve_root(x, x->o.pos[1], &ra)) ||
	    (rc = resolve_root(x, x->o.pos[2], &rb)))
		return rc;
	struct diffw d = {0};
	rc = lfs_index_diff(lfs_ledger_index(x->l), &ra, &rb, diff_fn, &d);
	int ret = LFS_EXIT_OK;
	if (rc) {
		lfs_cli_fail(&x->cli,
			     "cannot compare the two states of ledger '%s': %s",
			     x->name, lfs_errmsg(rc));
		ret = LFS_EXIT_FAIL;
		goto out;
	}
	if (d.n)
		qsort(d.v, d.n, sizeof(*d.v), change_cmp);
	if (!x->o.json) {
		for (size_t i = 0; i < d.n; i++)
			printf("%c %s\n", d.v[i].op, d.v[i].id);
		ret = lfs_cli_finish_output(&x->cli, LFS_EXIT_OK);
		goto out;
	}
	json_t *add = json_array(), *del = json_array(), *chg = json_array();
	json_t *top = add && del && chg
			      ? json_pack("{s:O,s:O,s:O}", "added", add,
					  "removed", del, "changed", chg)
			      : NULL;
	for (size_t i = 0; top && i < d.n; i++) {
		json_t *arr = d.v[i].op == '+'   ? add
			      : d.v[i].op == '-' ? del
						 : chg;
		if (json_array_append_new(arr, json_string(d.v[i].id))) {
			json_decref(top);
			top = NULL;
		}
	}
	json_decref(add);
	json_decref(del);
	json_decref(chg);
	ret = lfs_cli_finish_output(&x->cli, lcmd_print_json(x, top));
out:
	for (size_t i = 0; i < d.n; i++)
		free(d.v[i].id);
	free(d.v);
	return ret;
}

/* ---- merge, compact ---- */

static int run_merge(struct lcmd_ctx *x)
{
	int rc;
	if ((rc = lcmd_open_ledger(x, x->o.pos[0])))
		return rc;
	struct lfs_cid ev = {0};
	bool committed = false;
	if ((rc = lfs_ledger_merge(x->l, &ev, &committed))) {
		lfs_cli_fail(&x->cli,
			     "cannot merge the heads of ledger '%s': %s",
			     x->name, lfs_errmsg(rc));
		return LFS_EXIT_FAIL;
	}
	if (x->o.json)
		print_commit(x, &ev, committed, committed);
	else if (committed)
		print_commit(x, &ev, true, true);
	else
		printf("nothing to merge\n");
	return lfs_cli_finish_output(&x->cli, LFS_EXIT_OK);
}

static int run_compact(struct lcmd_ctx *x)
{
	int rc;
	if ((rc = lcmd_open_ledger(x, x->o.pos[0])))
		return rc;
	struct lfs_cid *heads, *cars;
	size_t nheads, ncars;
	if ((rc = lfs_ledger_heads(x->l, &heads, &nheads)))
		return lfs_cli_oom(&x->cli);
	free(heads);
	if (nheads == 0) {
		if (x->o.json)
			lcmd_print_json(
				x, json_pack("{s:n,s:i}", "car", "cars", 0));
		else
			printf("nothing to compact: ledger '%s' has no history "
			       "yet\n",
			       x->name);
		return lfs_cli_finish_output(&x->cli, LFS_EXIT_OK);
	}
	struct lfs_cid car;
	if ((rc = lfs_ledger_compact(x->l, &car))) {
		lfs_cli_fail(
			&x->cli,
			"cannot compact ledger '%s': %s (its files are as "
			"before)%s",
			x->name, lfs_errmsg(rc),
			rc == -ENOENT || rc == -EBADMSG
				? "; 'ledgerfs fsck' names the damaged files"
				: "");
		return LFS_EXIT_FAIL;
	}
	if ((rc = lfs_blockstore_list_cars(&cars, &ncars,
					   lfs_ledger_store(x->l)))) {
		lfs_cli_fail(&x->cli,
			     "compacted, but cannot list the CAR files: %s",
			     lfs_errmsg(rc));
		return LFS_EXIT_FAIL;
	}
	free(cars);
	char s[LFS_CID_STRLEN + 1];
	lfs_cid_to_string(s, &car);
	if (x->o.json)
		lcmd_print_json(x, json_pack("{s:s,s:I}", "car", s, "cars",
					     (json_int_t)ncars));
	else
		printf("%s\n%zu CAR file%s remain%s\n", s, ncars,
		       ncars == 1 ? "" : "s", ncars == 1 ? "s" : "");
	return lfs_cli_finish_output(&x->cli, LFS_EXIT_OK);
}

/* ---- the table ---- */

static const struct lcmd cmd_init = {
	"init",
	run_init,
	0,
	1,
	1,
	"[--home DIR] NAME",
	"Create the ledger NAME on this machine: a new random key in the\n"
	"keybag and an empty store. Share the key with 'ledgerfs key export'.\n"
	"\n" LCMD_HOME_HELP LCMD_EXIT_HELP};

static const struct lcmd cmd_put = {
	"put",
	run_put,
	LCMD_JSON,
	2,
	3,
	"[--home DIR] [--json] NAME ID [FILE|-]",
	"Put the JSON object in FILE (standard input when FILE is - or "
	"absent)\n"
	"as document ID of ledger NAME, in one transaction, and print the new\n"
	"event's CID. \"_id\" in the object is optional; if present it must\n"
	"be ID. Putting what is already there commits nothing (and says so).\n"
	"Integers and reals stay what they are (1 is not 1.0).\n"
	"\n"
	"  --json      print {\"event\": CID, \"committed\": "
	"BOOL}\n" LCMD_HOME_HELP LCMD_EXIT_HELP};

static const struct lcmd cmd_rm = {
	"rm",
	run_rm,
	LCMD_JSON | LCMD_FORCE,
	2,
	LCMD_UNLIMITED,
	"[--home DIR] [--force] [--json] NAME ID...",
	"Delete the documents ID... of ledger NAME in one transaction and\n"
	"print the new event's CID. When an ID is absent nothing is deleted\n"
	"and the exit status is 3.\n"
	"\n"
	"  --force     ignore absent IDs\n"
	"  --json      print {\"event\": CID, \"committed\": "
	"BOOL}\n" LCMD_HOME_HELP LCMD_EXIT_HELP};

static const struct lcmd cmd_get = {
	"get",
	run_get,
	LCMD_AT,
	2,
	2,
	"[--home DIR] [--at EVENT] NAME ID",
	"Print document ID of ledger NAME as JSON (keys sorted, two-space\n"
	"indent, \"_id\" included).\n"
	"\n"
	"  --at EVENT  the document as it was after EVENT (a CID that\n"
	"              'ledgerfs log' prints; 'head' is the current "
	"state)\n" LCMD_HOME_HELP LCMD_EXIT_HELP};

static const struct lcmd cmd_cat = {
	"cat",
	run_cat,
	LCMD_AT,
	2,
	2,
	"[--home DIR] NAME --at EVENT ID",
	"Print document ID as it was after EVENT ('ledgerfs get --at').\n"
	"\n" LCMD_HOME_HELP LCMD_EXIT_HELP};

static const struct lcmd cmd_ls = {
	"ls",
	run_ls,
	LCMD_AT | LCMD_JSON,
	1,
	1,
	"[--home DIR] [--at EVENT] [--json] NAME",
	"List the document ids of ledger NAME, one per line, sorted bytewise.\n"
	"\n"
	"  --at EVENT  the documents after EVENT\n"
	"  --json      print [{\"id\", \"cid\", \"t\", \"writer\", "
	"\"conflicts\"}...]:\n"
	"              the current version's block, hybrid time (µs since the\n"
	"              epoch) and writer, and the number of losing "
	"versions\n" LCMD_HOME_HELP LCMD_EXIT_HELP};

static const struct lcmd cmd_log = {
	"log",
	run_log,
	LCMD_JSON | LCMD_N,
	1,
	1,
	"[--home DIR] [--json] [-n N] NAME",
	"Print the events of ledger NAME, newest first, one per line:\n"
	"\n"
	"  EVENT TIME writer=WRITER parents=N ID... (-ID for a delete)\n"
	"\n"
	"TIME is ISO 8601 UTC with microseconds.\n"
	"\n"
	"  -n N        at most N events\n"
	"  --json      print [{\"event\", \"t\", \"time\", \"writer\", "
	"\"parents\": [CID...],\n"
	"              \"changes\": [{\"id\", \"doc\": CID or "
	"null}...]}...]\n" LCMD_HOME_HELP LCMD_EXIT_HELP};

static const struct lcmd cmd_diff = {
	"diff",
	run_diff,
	LCMD_JSON,
	3,
	3,
	"[--home DIR] [--json] NAME A B",
	"Print what changed from the state after event A to the state after\n"
	"event B ('head': the current state), one line per document, sorted:\n"
	"\"+ ID\" added, \"- ID\" removed, \"~ ID\" changed.\n"
	"\n"
	"  --json      print {\"added\": [ID...], \"removed\": [...], "
	"\"changed\": [...]}\n" LCMD_HOME_HELP LCMD_EXIT_HELP};

static const struct lcmd cmd_merge = {
	"merge",
	run_merge,
	LCMD_JSON,
	1,
	1,
	"[--home DIR] [--json] NAME",
	"When ledger NAME has several heads (concurrent writes), commit an\n"
	"event that joins them and print its CID; otherwise print \"nothing\n"
	"to merge\". The merged documents are the same either way.\n"
	"\n"
	"  --json      print {\"event\": CID or null, \"committed\": "
	"BOOL}\n" LCMD_HOME_HELP LCMD_EXIT_HELP};

static const struct lcmd cmd_compact = {
	"compact",
	run_compact,
	LCMD_JSON,
	1,
	1,
	"[--home DIR] [--json] NAME",
	"Write every block of ledger NAME's history into one CAR file, remove\n"
	"the other CAR files, and print the new file's CID and how many CAR\n"
	"files remain. History stays readable.\n"
	"\n"
	"  --json      print {\"car\": CID, \"cars\": N}\n" LCMD_HOME_HELP
		LCMD_EXIT_HELP};

/* ---- option parsing and dispatch ---- */

static const struct lfs_optname optnames[] = {
	/* flag 0: every command has it */
	{"--home", 0, true},
	{"--json", LCMD_JSON, false},
	{"--at", LCMD_AT, true},
	{"-n", LCMD_N, true},
	{"--force", LCMD_FORCE, false},
	{"-f", LCMD_FORCE, false},
};

#define NOPTS (sizeof(optnames) / sizeof(optnames[0]))

static int parse_opts(struct lcmd_ctx *x, int argc, char **argv)
{
	struct lcmd_opts *o = &x->o;
	struct lfs_optscan sc;
	lfs_optscan_init(&sc, argc, argv);
	const char *val;
	int k;
	while ((k = lfs_optscan_next(&sc, optnames, NOPTS, &val)) !=
	       LFS_OPT_END) {
		if (k == LFS_OPT_POS) {
			o->pos[o->npos++] = (char *)val;
			continue;
		}
		if (k == LFS_OPT_HELP) {
			o->help = true;
			return 0;
		}
		if (k == LFS_OPT_NOVALUE)
			return lfs_cli_usage_error(&x->cli, "%s needs a value",
						   val);
		if (k == LFS_OPT_UNKNOWN ||
		    (optnames[k].flag && !(x->c->opts & optnames[k].flag)))
			return lfs_cli_usage_error(
				&x->cli, "unknown option '%s'", sc.arg);
		switch (optnames[k].flag) {
		case 0:
			if (!*val)
				return lfs_cli_usage_error(
					&x->cli, "--home needs a directory");
			x->cli.home_arg = val;
			break;
		case LCMD_JSON:
			o->json = true;
			break;
		case LCMD_FORCE:
			o->force = true;
			break;
		case LCMD_AT:
			o->at = val;
			break;
		case LCMD_N: {
			char *end;
			errno = 0;
			unsigned long long v = strtoull(val, &end, 10);
			if (errno || end == val || *end || val[0] == '-')
				return lfs_cli_usage_error(
					&x->cli,
					"-n %s: expected a number of "
					"events",
					val);
			o->has_n = true;
			o->n = v > SIZE_MAX ? SIZE_MAX : (size_t)v;
			break;
		}
		}
	}
	if (o->npos < x->c->min_pos)
		return lfs_cli_usage_error(&x->cli, "missing arguments");
	if (x->c->max_pos != LCMD_UNLIMITED && o->npos > x->c->max_pos)
		return lfs_cli_usage_error(&x->cli, "too many arguments");
	return 0;
}

int lcmd_run(const struct lcmd *c, int argc, char **argv)
{
	struct lcmd_ctx x = {.c = c, .cli = {.cmd = c->name, .args = c->args}};
	int rc;
	if (!(x.o.pos = calloc((size_t)argc + 1, sizeof(*x.o.pos)))) {
		fprintf(stderr, "ledgerfs %s: out of memory\n", c->name);
		return LFS_EXIT_FAIL;
	}
	if ((rc = parse_opts(&x, argc, argv))) {
		/* usage error already reported */
	} else if (x.o.help) {
		printf("usage: ledgerfs %s %s\n\n%s", c->name, c->args,
		       c->help);
		rc = lfs_cli_finish_output(&x.cli, LFS_EXIT_OK);
	} else {
		rc = c->run(&x);
	}
	lfs_ledger_close(x.l);
	free(x.dir);
	lfs_cli_release(&x.cli);
	free(x.o.pos);
	return rc;
}

int lfs_cmd_init(int argc, char **argv)
{
	return lcmd_run(&cmd_init, argc, argv);
}

int lfs_cmd_put(int argc, char **argv)
{
	return lcmd_run(&cmd_put, argc, argv);
}

int lfs_cmd_rm(int argc, char **argv)
{
	return lcmd_run(&cmd_rm, argc, argv);
}

int lfs_cmd_get(int argc, char **argv)
{
	return lcmd_run(&cmd_get, argc, argv);
}

int lfs_cmd_cat(int argc, char **argv)
{
	return lcmd_run(&cmd_cat, argc, argv);
}

int lfs_cmd_ls(int argc, char **argv)
{
	return lcmd_run(&cmd_ls, argc, argv);
}

int lfs_cmd_log(int argc, char **argv)
{
	return lcmd_run(&cmd_log, argc, argv);
}

int lfs_cmd_diff(int argc, char **argv)
{
	return lcmd_run(&cmd_diff, argc, argv);
}

int lfs_cmd_merge(int argc, char **argv)
{
	return lcmd_run(&cmd_merge, argc, argv);
}

int lfs_cmd_compact(int argc, char **argv)
{
	return lcmd_run(&cmd_compact, argc, argv);
}
