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
#include "ledger.h"
#include "timefmt.h"

/* JSON text of one document: its DAG-CBOR is capped at LFS_DOC_MAX. */
#define INPUT_MAX (4 * LFS_DOC_MAX)
#define SHARE_MAX 256
#define UNLIMITED ((size_t)-1)

enum {
	OPT_JSON = 1 << 0,
	OPT_AT = 1 << 1,
	OPT_N = 1 << 2,
	OPT_FORCE = 1 << 3,
};

struct opts {
	bool help;
	bool json;
	bool force;
	const char *at; /* --at EVENT */
	bool has_n;
	size_t n; /* -n N */
	char **pos;
	size_t npos;
};

struct ctx;

struct cmd {
	const char *name; /* as typed after "ledgerfs" */
	int (*run)(struct ctx *x);
	unsigned opts;
	size_t min_pos, max_pos;
	const char *args;
	const char *help;
};

struct ctx {
	const struct cmd *c;
	struct opts o;
	struct lfs_cli cli; /* messages, the home */
	const char *name;   /* the ledger */
	char *dir;          /* its directory */
	struct lfs_ledger *l;
};

/* ---- messages ---- */

/* Print a JSON value as documents are shown, and drop the reference. */
static int print_json(const struct ctx *x, json_t *j)
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

static void cid_str(char out[LFS_CID_STRLEN + 1], const struct lfs_cid *c)
{
	lfs_cid_to_string(out, c);
}

static json_t *json_cid(const struct lfs_cid *c)
{
	char s[LFS_CID_STRLEN + 1];
	cid_str(s, c);
	return json_string(s);
}

/* ---- home, ledger, key ---- */

/* The home open, name valid, and the ledger's directory present. */
static int need_ledger(struct ctx *x, const char *name)
{
	x->name = name;
	free(x->dir);
	return lfs_cli_need_ledger(&x->cli, name, &x->dir);
}

/* need_ledger() and then open it with its key. */
static int open_ledger(struct ctx *x, const char *name)
{
	int rc = need_ledger(x, name);
	return rc ? rc : lfs_cli_open_ledger(&x->cli, name, NULL, &x->l);
}

static int check_id(struct ctx *x, const char *id)
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
static int resolve_root(struct ctx *x, const char *spec, struct lfs_cid *out)
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

static int report_doc_error(struct ctx *x, const char *id, const char *at,
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

static int run_init(struct ctx *x)
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

static void print_commit(struct ctx *x, const struct lfs_cid *ev, bool have_ev,
			 bool committed)
{
	char s[LFS_CID_STRLEN + 1] = "";
	if (have_ev)
		cid_str(s, ev);
	if (x->o.json) {
		print_json(x,
			   json_pack("{s:s?,s:b}", "event", have_ev ? s : NULL,
				     "committed", committed));
		return;
	}
	if (have_ev)
		printf("%s\n", s);
}

static int commit(struct ctx *x, struct lfs_txn *t, const char *what)
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

static int run_put(struct ctx *x)
{
	const char *id = x->o.pos[1];
	const char *path = x->o.npos > 2 ? x->o.pos[2] : "-";
	const char *src = strcmp(path, "-") ? path : "standard input";
	int rc;
	if ((rc = check_id(x, id)))
		return rc;
	if ((rc = open_ledger(x, x->o.pos[0])))
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
	doc = json_loadb((const char *)in.data, in.len,
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

static int run_rm(struct ctx *x)
{
	int rc;
	for (size_t i = 1; i < x->o.npos; i++)
		if ((rc = check_id(x, x->o.pos[i])))
			return rc;
	if ((rc = open_ledger(x, x->o.pos[0])))
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
			ret = report_doc_error(x, id, NULL, rc);
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

static int show_doc(struct ctx *x, const char *id, const char *at)
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
		return report_doc_error(x, id, at, rc);
	rc = print_json(x, doc);
	return lfs_cli_finish_output(&x->cli, rc);
}

static int run_get(struct ctx *x)
{
	int rc;
	if ((rc = check_id(x, x->o.pos[1])) ||
	    (rc = open_ledger(x, x->o.pos[0])))
		return rc;
	return show_doc(x, x->o.pos[1], x->o.at);
}

static int run_cat(struct ctx *x)
{
	if (!x->o.at)
		return lfs_cli_usage_error(
			&x->cli, "--at EVENT is required (or use "
				 "'ledgerfs get' for the current state)");
	return run_get(x);
}

/* ---- ls ---- */

struct collect {
	struct lfs_arena a;
	struct lfs_index_entry *v;
	size_t n, cap;
	bool only_conflicts;
};

static int collect_fn(void *ctx, const struct lfs_index_entry *e)
{
	struct collect *c = ctx;
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
static int collect_entries(struct ctx *x, struct collect *c,
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

static void collect_release(struct collect *c)
{
	free(c->v);
	lfs_arena_release(&c->a);
}

static int run_ls(struct ctx *x)
{
	int rc;
	if ((rc = open_ledger(x, x->o.pos[0])))
		return rc;
	struct lfs_cid root;
	if ((rc = resolve_root(x, x->o.at, &root)))
		return rc;
	struct collect c;
	if ((rc = collect_entries(x, &c, &root, false))) {
		collect_release(&c);
		return rc;
	}
	if (!x->o.json) {
		for (size_t i = 0; i < c.n; i++)
			printf("%s\n", c.v[i].id);
		collect_release(&c);
		return lfs_cli_finish_output(&x->cli, LFS_EXIT_OK);
	}
	json_t *arr = json_array();
	for (size_t i = 0; arr && i < c.n; i++) {
		const struct lfs_index_entry *e = &c.v[i];
		json_t *o =
			json_pack("{s:s%,s:o,s:I,s:s,s:I}", "id", e->id,
				  e->id_len, "cid", json_cid(&e->cur.doc), "t",
				  (json_int_t)e->cur.t, "writer", e->cur.writer,
				  "conflicts", (json_int_t)e->nconflicts);
		if (!o || json_array_append_new(arr, o)) {
			json_decref(arr);
			arr = NULL;
		}
	}
	collect_release(&c);
	rc = print_json(x, arr);
	return lfs_cli_finish_output(&x->cli, rc);
}

/* ---- log ---- */

struct logw {
	struct ctx *x;
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
	cid_str(s, cid);
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
		if (json_array_append_new(parents, json_cid(&ev->parents[i])))
			goto oom;
	for (size_t i = 0; changes && i < ev->nops; i++) {
		const struct lfs_op *op = &ev->ops[i];
		json_t *c =
			json_pack("{s:s%,s:o}", "id", op->id, op->id_len, "doc",
				  op->del ? json_null() : json_cid(&op->doc));
		if (!c || json_array_append_new(changes, c))
			goto oom;
	}
	json_t *o = parents && changes
			    ? json_pack("{s:o,s:I,s:s,s:s,s:O,s:O}", "event",
					json_cid(cid), "t", (json_int_t)ev->t,
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

static int run_log(struct ctx *x)
{
	int rc;
	if ((rc = open_ledger(x, x->o.pos[0])))
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
		rc = print_json(x, w.arr);
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

static int run_diff(struct ctx *x)
{
	int rc;
	if ((rc = open_ledger(x, x->o.pos[0])))
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
	ret = lfs_cli_finish_output(&x->cli, print_json(x, top));
out:
	for (size_t i = 0; i < d.n; i++)
		free(d.v[i].id);
	free(d.v);
	return ret;
}

/* ---- merge, compact ---- */

static int run_merge(struct ctx *x)
{
	int rc;
	if ((rc = open_ledger(x, x->o.pos[0])))
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

static int run_compact(struct ctx *x)
{
	int rc;
	if ((rc = open_ledger(x, x->o.pos[0])))
		return rc;
	struct lfs_cid *heads, *cars;
	size_t nheads, ncars;
	if ((rc = lfs_ledger_heads(x->l, &heads, &nheads)))
		return lfs_cli_oom(&x->cli);
	free(heads);
	if (nheads == 0) {
		if (x->o.json)
			print_json(x, json_pack("{s:n,s:i}", "car", "cars", 0));
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
	cid_str(s, &car);
	if (x->o.json)
		print_json(x, json_pack("{s:s,s:I}", "car", s, "cars",
					(json_int_t)ncars));
	else
		printf("%s\n%zu CAR file%s remain%s\n", s, ncars,
		       ncars == 1 ? "" : "s", ncars == 1 ? "s" : "");
	return lfs_cli_finish_output(&x->cli, LFS_EXIT_OK);
}

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
	cid_str(sa, a);
	if (b)
		cid_str(sb, b);
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
			cid_str(s, &cars[i]);
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

static int fsck_unopened(struct ctx *x, struct fsckw *f)
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

static int run_fsck(struct ctx *x)
{
	int rc;
	if ((rc = need_ledger(x, x->o.pos[0])))
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
		print_json(x, json_pack("{s:o,s:b}", "problems", f.arr, "ok",
					f.n == 0));
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

static int run_key_export(struct ctx *x)
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

static int read_share(struct ctx *x, char *out, size_t size)
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

static int run_key_import(struct ctx *x)
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
static int ledger_status(struct ctx *x, const char *name, json_t **out)
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
			json_array_append_new(h, json_cid(&heads[i]));
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

static int run_status(struct ctx *x)
{
	int rc;
	char **names = NULL;
	size_t n = 0;
	const char *one = x->o.npos ? x->o.pos[0] : NULL;
	if (one) {
		if ((rc = need_ledger(x, one)))
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
		if (print_json(x, out))
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

static int show_conflicts(struct ctx *x, const char *id)
{
	struct lfs_arena a;
	lfs_arena_init(&a, 0);
	struct lfs_index_entry e;
	json_t *arr = x->o.json ? json_array() : NULL;
	int ret = LFS_EXIT_FAIL;
	int rc = lfs_ledger_get(x->l, NULL, id, &e, &a, NULL);
	if (rc) {
		ret = report_doc_error(x, id, NULL, rc);
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
		cid_str(s, &v->doc);
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
		if (print_json(x, doc))
			goto out;
	}
	if (!e.nconflicts)
		fprintf(stderr,
			"ledgerfs conflicts: document '%s' has no conflicting "
			"versions\n",
			id);
	ret = LFS_EXIT_OK;
	if (arr) {
		ret = print_json(x, arr);
		arr = NULL;
	}
	ret = lfs_cli_finish_output(&x->cli, ret);
out:
	json_decref(arr);
	lfs_arena_release(&a);
	return ret;
}

static int run_conflicts(struct ctx *x)
{
	int rc;
	if (x->o.npos > 1 && (rc = check_id(x, x->o.pos[1])))
		return rc;
	if ((rc = open_ledger(x, x->o.pos[0])))
		return rc;
	if (x->o.npos > 1)
		return show_conflicts(x, x->o.pos[1]);
	struct lfs_cid root;
	lfs_ledger_root(x->l, &root);
	struct collect c;
	if ((rc = collect_entries(x, &c, &root, true))) {
		collect_release(&c);
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
			collect_release(&c);
			return lfs_cli_oom(&x->cli);
		}
	}
	collect_release(&c);
	rc = x->o.json ? print_json(x, arr) : LFS_EXIT_OK;
	return lfs_cli_finish_output(&x->cli, rc);
}

/* ---- the table ---- */

#define HOME_HELP                                                              \
	"  --home DIR  the ledgerfs home (default: $LEDGERFS_HOME, else\n"     \
	"              $XDG_DATA_HOME/ledgerfs, else "                         \
	"~/.local/share/ledgerfs)\n"

#define EXIT_HELP                                                              \
	"\nExit status: 0 ok, 1 failed, 2 usage error, 3 ledger or document\n" \
	"not found.\n"

static const struct cmd cmd_init = {
	"init",
	run_init,
	0,
	1,
	1,
	"[--home DIR] NAME",
	"Create the ledger NAME on this machine: a new random key in the\n"
	"keybag and an empty store. Share the key with 'ledgerfs key export'.\n"
	"\n" HOME_HELP EXIT_HELP};

static const struct cmd cmd_put = {
	"put",
	run_put,
	OPT_JSON,
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
	"  --json      print {\"event\": CID, \"committed\": BOOL}\n" HOME_HELP
		EXIT_HELP};

static const struct cmd cmd_rm = {
	"rm",
	run_rm,
	OPT_JSON | OPT_FORCE,
	2,
	UNLIMITED,
	"[--home DIR] [--force] [--json] NAME ID...",
	"Delete the documents ID... of ledger NAME in one transaction and\n"
	"print the new event's CID. When an ID is absent nothing is deleted\n"
	"and the exit status is 3.\n"
	"\n"
	"  --force     ignore absent IDs\n"
	"  --json      print {\"event\": CID, \"committed\": BOOL}\n" HOME_HELP
		EXIT_HELP};

static const struct cmd cmd_get = {
	"get",
	run_get,
	OPT_AT,
	2,
	2,
	"[--home DIR] [--at EVENT] NAME ID",
	"Print document ID of ledger NAME as JSON (keys sorted, two-space\n"
	"indent, \"_id\" included).\n"
	"\n"
	"  --at EVENT  the document as it was after EVENT (a CID that\n"
	"              'ledgerfs log' prints; 'head' is the current "
	"state)\n" HOME_HELP EXIT_HELP};

static const struct cmd cmd_cat = {
	"cat",
	run_cat,
	OPT_AT,
	2,
	2,
	"[--home DIR] NAME --at EVENT ID",
	"Print document ID as it was after EVENT ('ledgerfs get --at').\n"
	"\n" HOME_HELP EXIT_HELP};

static const struct cmd cmd_ls = {
	"ls",
	run_ls,
	OPT_AT | OPT_JSON,
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
	"versions\n" HOME_HELP EXIT_HELP};

static const struct cmd cmd_log = {
	"log",
	run_log,
	OPT_JSON | OPT_N,
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
	"null}...]}...]\n" HOME_HELP EXIT_HELP};

static const struct cmd cmd_diff = {
	"diff",
	run_diff,
	OPT_JSON,
	3,
	3,
	"[--home DIR] [--json] NAME A B",
	"Print what changed from the state after event A to the state after\n"
	"event B ('head': the current state), one line per document, sorted:\n"
	"\"+ ID\" added, \"- ID\" removed, \"~ ID\" changed.\n"
	"\n"
	"  --json      print {\"added\": [ID...], \"removed\": [...], "
	"\"changed\": [...]}\n" HOME_HELP EXIT_HELP};

static const struct cmd cmd_merge = {
	"merge",
	run_merge,
	OPT_JSON,
	1,
	1,
	"[--home DIR] [--json] NAME",
	"When ledger NAME has several heads (concurrent writes), commit an\n"
	"event that joins them and print its CID; otherwise print \"nothing\n"
	"to merge\". The merged documents are the same either way.\n"
	"\n"
	"  --json      print {\"event\": CID or null, \"committed\": "
	"BOOL}\n" HOME_HELP EXIT_HELP};

static const struct cmd cmd_compact = {
	"compact",
	run_compact,
	OPT_JSON,
	1,
	1,
	"[--home DIR] [--json] NAME",
	"Write every block of ledger NAME's history into one CAR file, remove\n"
	"the other CAR files, and print the new file's CID and how many CAR\n"
	"files remain. History stays readable.\n"
	"\n"
	"  --json      print {\"car\": CID, \"cars\": N}\n" HOME_HELP
		EXIT_HELP};

static const struct cmd cmd_fsck = {
	"fsck",
	run_fsck,
	OPT_JSON,
	1,
	1,
	"[--home DIR] [--json] NAME",
	"Check ledger NAME: every CAR file (name, authentication, block\n"
	"hashes), every event, the index and every current document. Print\n"
	"each problem, then \"ok\" or \"N problems\"; exit 1 on problems.\n"
	"\n"
	"  --json      print {\"problems\": [TEXT...], \"ok\": "
	"BOOL}\n" HOME_HELP EXIT_HELP};

static const struct cmd cmd_key_export = {
	"key export",
	run_key_export,
	0,
	1,
	1,
	"[--home DIR] NAME",
	"Print the key of ledger NAME as a share string (\"lfskey1:\" and 64\n"
	"hex digits). Whoever has it can read the ledger: send it privately.\n"
	"\n" HOME_HELP EXIT_HELP};

static const struct cmd cmd_key_import = {
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
	"\n" HOME_HELP EXIT_HELP};

static const struct cmd cmd_status = {
	"status",
	run_status,
	OPT_JSON,
	0,
	1,
	"[--home DIR] [--json] [NAME]",
	"Show each ledger (or NAME): whether its key is here, its heads, its\n"
	"number of documents and of CAR files.\n"
	"\n"
	"  --json      print {\"name\", \"key\": BOOL, \"heads\": [CID...], "
	"\"nheads\",\n"
	"              \"documents\", \"cars\", \"error\"} (an array of them "
	"without NAME)\n" HOME_HELP EXIT_HELP};

static const struct cmd cmd_conflicts = {
	"conflicts",
	run_conflicts,
	OPT_JSON,
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
	"\"doc\"}...]\n" HOME_HELP EXIT_HELP};

/* ---- option parsing and dispatch ---- */

static const struct lfs_optname optnames[] = {
	/* flag 0: every command has it */
	{"--home", 0, true},           {"--json", OPT_JSON, false},
	{"--at", OPT_AT, true},        {"-n", OPT_N, true},
	{"--force", OPT_FORCE, false}, {"-f", OPT_FORCE, false},
};

#define NOPTS (sizeof(optnames) / sizeof(optnames[0]))

static int parse_opts(struct ctx *x, int argc, char **argv)
{
	struct opts *o = &x->o;
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
		case OPT_JSON:
			o->json = true;
			break;
		case OPT_FORCE:
			o->force = true;
			break;
		case OPT_AT:
			o->at = val;
			break;
		case OPT_N: {
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
	if (x->c->max_pos != UNLIMITED && o->npos > x->c->max_pos)
		return lfs_cli_usage_error(&x->cli, "too many arguments");
	return 0;
}

static int run_cmd(const struct cmd *c, int argc, char **argv)
{
	struct ctx x = {.c = c, .cli = {.cmd = c->name, .args = c->args}};
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
	return run_cmd(&cmd_init, argc, argv);
}

int lfs_cmd_put(int argc, char **argv)
{
	return run_cmd(&cmd_put, argc, argv);
}

int lfs_cmd_rm(int argc, char **argv)
{
	return run_cmd(&cmd_rm, argc, argv);
}

int lfs_cmd_get(int argc, char **argv)
{
	return run_cmd(&cmd_get, argc, argv);
}

int lfs_cmd_cat(int argc, char **argv)
{
	return run_cmd(&cmd_cat, argc, argv);
}

int lfs_cmd_ls(int argc, char **argv)
{
	return run_cmd(&cmd_ls, argc, argv);
}

int lfs_cmd_log(int argc, char **argv)
{
	return run_cmd(&cmd_log, argc, argv);
}

int lfs_cmd_diff(int argc, char **argv)
{
	return run_cmd(&cmd_diff, argc, argv);
}

int lfs_cmd_merge(int argc, char **argv)
{
	return run_cmd(&cmd_merge, argc, argv);
}

int lfs_cmd_compact(int argc, char **argv)
{
	return run_cmd(&cmd_compact, argc, argv);
}

int lfs_cmd_fsck(int argc, char **argv)
{
	return run_cmd(&cmd_fsck, argc, argv);
}

int lfs_cmd_status(int argc, char **argv)
{
	return run_cmd(&cmd_status, argc, argv);
}

int lfs_cmd_conflicts(int argc, char **argv)
{
	return run_cmd(&cmd_conflicts, argc, argv);
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
		return run_cmd(&cmd_key_export, argc - 1, argv + 1);
	if (!strcmp(argv[1], "import"))
		return run_cmd(&cmd_key_import, argc - 1, argv + 1);
	fprintf(stderr, "ledgerfs key: unknown subcommand '%s'\n\n", argv[1]);
	key_usage(stderr);
	return LFS_EXIT_USAGE;
}
