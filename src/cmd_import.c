/*
 * ledgerfs import NAME [DIR|FILE.ndjson|-] and ledgerfs export NAME DIR:
 * the bulk path. Import reads and parses every input first (once: the
 * parsed documents are kept until they are committed) and refuses the
 * whole import, naming each bad file or line with the reason, when any is
 * not a document; only then does it commit, in transactions of IMPORT_TXN
 * documents or IMPORT_TXN_BYTES of text (a transaction is a CAR file, and
 * opening a ledger reads a CAR whole) appended to the ledger's segment
 * (it is opened non-durable),
 * and make them durable once at the end. A directory is read, and export
 * writes, as a mount shows a ledger (fsname.h's paths: document
 * notes/2026/a is DIR/notes/2026/a.json), so an export copied into a mount
 * and a mount's tree imported give the same ids; what a mount keeps as
 * scratch is skipped and named.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "cli.h"
#include "cmd.h"
#include "dagjson.h"
#include "errmsg.h"
#include "fileio.h"
#include "fs_render.h"
#include "fsname.h"
#include "home.h"
#include "jsonparse.h"
#include "optscan.h"
#include "ledger.h"

#define IMPORT_TXN       10000 /* documents per transaction, at most */
#define IMPORT_TXN_BYTES ((size_t)64 << 20) /* and their texts' bytes */
/* Parsed documents kept from the check to the commit, by the size of
 * their text (parsed, about twice that); the rest are parsed again. */
#define IMPORT_KEEP_BYTES ((size_t)128 << 20)

struct input {
	char *id;    /* malloc'd */
	char *path;  /* a file (directory mode), else NULL */
	long line;   /* NDJSON: the line number... */
	size_t at;   /* ...and where it starts in the text */
	json_t *doc; /* parsed and checked (pass 1), until committed */
	size_t size; /* its text's length (set by load_doc) */
	char *why;   /* why it is not a document (malloc'd), or NULL */
};

struct imp {
	const char *name, *src;
	struct input *v;
	size_t n, cap;
	char *text; /* NDJSON input, whole */
	size_t bad; /* atomic: pass 1 runs in threads */
	size_t skipped;
	bool tty;
};

static int add_input(struct imp *m, char *id, char *path, long line, size_t at)
{
	if (m->n == m->cap) {
		size_t cap = m->cap ? m->cap * 2 : 1024;
		void *p = realloc(m->v, cap * sizeof(*m->v));
		if (!p)
			return -ENOMEM;
		m->v = p;
		m->cap = cap;
	}
	m->v[m->n++] =
		(struct input){.id = id, .path = path, .line = line, .at = at};
	return 0;
}

/* Note why input in is not a document (said by say_bad, in input order
 * whatever thread found it). */
static void bad(struct imp *m, struct input *in, const char *why)
{
	__atomic_add_fetch(&m->bad, 1, __ATOMIC_RELAXED);
	free(in->why);
	in->why = strdup(why);
}

static void say_bad(const struct imp *m, const struct input *in)
{
	const char *why = in->why ? in->why : "out of memory";
	if (in->path)
		fprintf(stderr, "ledgerfs import: %s: %s\n", in->path, why);
	else
		fprintf(stderr, "ledgerfs import: %s line %ld: %s\n", m->src,
			in->line, why);
}

/* The document of input i, checked (NULL after reporting why not). */
static json_t *load_doc(struct imp *m, struct input *in)
{
	json_error_t err;
	json_t *j;
	char why[300];
	if (in->path) {
		uint8_t *text;
		size_t len;
		int rc = lfs_read_file(in->path, SIZE_MAX, &text, &len);
		if (rc) {
			snprintf(why, sizeof(why), "cannot read it: %s",
				 lfs_errmsg(rc));
			bad(m, in, why);
			return NULL;
		}
		in->size = len;
		j = lfs_json_parse(text, len, JSON_ALLOW_NUL, &err);
		free(text);
	} else {
		char *s = m->text + in->at;
		char *e = strchr(s, '\n');
		in->size = e ? (size_t)(e - s) : strlen(s);
		j = lfs_json_parse(s, in->size, JSON_ALLOW_NUL, &err);
	}
	if (!j) {
		snprintf(why, sizeof(why), "not JSON: %s", err.text);
		bad(m, in, why);
		return NULL;
	}
	if (!json_is_object(j)) {
		bad(m, in, "not a JSON object");
		json_decref(j);
		return NULL;
	}
	json_t *given = json_object_get(j, "_id");
	if (given && !json_is_string(given)) {
		bad(m, in, "its \"_id\" is not a string");
		json_decref(j);
		return NULL;
	}
	if (!in->path) {
		if (!given) {
			bad(m, in, "no \"_id\" (NDJSON lines name their id)");
			json_decref(j);
			return NULL;
		}
		free(in->id);
		in->id = strdup(json_string_value(given));
	}
	/* The file name is the identity (as in the mount). */
	json_object_del(j, "_id");
	struct lfs_txn *t = NULL;
	int rc = in->id ? lfs_txn_new(&t) : -ENOMEM;
	if (!rc)
		rc = lfs_txn_put(t, in->id, j); /* encodes it: a full check */
	lfs_txn_free(t);
	if (rc) {
		snprintf(why, sizeof(why), "not a document: %s",
			 rc == -EINVAL ? "a bad id or value" : lfs_errmsg(rc));
		bad(m, in, why);
		json_decref(j);
		return NULL;
	}
	return j;
}

/*
 * Pass 1 over inputs [from, to), one thread's share: parse and check each,
 * keeping the parsed documents while their texts fit in budget bytes
 * (the rest are parsed again when committed).
 */
struct check_part {
	struct imp *m;
	size_t from, to, budget;
	pthread_t thread;
};

static void *check_part(void *arg)
{
	struct check_part *p = arg;
	size_t kept = 0;
	for (size_t i = p->from; i < p->to; i++) {
		struct input *in = &p->m->v[i];
		json_t *j = load_doc(p->m, in);
		size_t size = in->size;
		if (j && size <= p->budget - kept) {
			in->doc = j;
			kept += size;
		} else {
			json_decref(j);
		}
	}
	return NULL;
}

/* Pass 1 over every input, in a thread per CPU (up to 4) when there are
 * enough inputs to share; a share whose thread cannot start is done here.
 * The reasons are said in input order. */
static void check_all(struct imp *m)
{
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	size_t nt = m->n < 1000 || cpus < 2 ? 1 : cpus > 4 ? 4 : (size_t)cpus;
	struct check_part parts[4];
	bool started[4] = {false};
	json_object_seed(0); /* before any thread makes an object */
	for (size_t k = 0; k < nt; k++) {
		parts[k] =
			(struct check_part){.m = m,
					    .from = m->n * k / nt,
					    .to = m->n * (k + 1) / nt,
					    .budget = IMPORT_KEEP_BYTES / nt};
		started[k] = k > 0 && !pthread_create(&parts[k].thread, NULL,
						      check_part, &parts[k]);
	}
	check_part(&parts[0]);
	for (size_t k = 1; k < nt; k++) {
		if (started[k])
			pthread_join(parts[k].thread, NULL);
		else
			check_part(&parts[k]);
	}
	for (size_t i = 0; i < m->n; i++)
		if (m->v[i].why)
			say_bad(m, &m->v[i]);
}

/*
 * Noting the committed documents' sizes (lfs_render_note_txn) takes as
 * long as committing them: a thread does it for one transaction while the
 * next is committed.
 */
struct noter {
	struct lfs_render_sizes *sizes;
	pthread_t thread;
	bool threaded;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct lfs_txn *t; /* to note and free, or NULL */
	bool stop;
};

static void *noter_main(void *arg)
{
	struct noter *no = arg;
	pthread_mutex_lock(&no->lock);
	for (;;) {
		while (!no->t && !no->stop)
			pthread_cond_wait(&no->cond, &no->lock);
		if (!no->t)
			break;
		struct lfs_txn *t = no->t;
		pthread_mutex_unlock(&no->lock);
		lfs_render_note_txn(no->sizes, NULL, t);
		lfs_txn_free(t);
		pthread_mutex_lock(&no->lock);
		no->t = NULL;
		pthread_cond_broadcast(&no->cond);
	}
	pthread_mutex_unlock(&no->lock);
	return NULL;
}

static void noter_start(struct noter *no, struct lfs_render_sizes *sizes)
{
	*no = (struct noter){.sizes = sizes};
	pthread_mutex_init(&no->lock, NULL);
	pthread_cond_init(&no->cond, NULL);
	no->threaded =
		sizes && !pthread_create(&no->thread, NULL, noter_main, no);
}

/* Note and free t (taken): in the thread once it is free, else here. */
static void noter_give(struct noter *no, struct lfs_txn *t)
{
	if (!no->threaded) {
		if (no->sizes)
			lfs_render_note_txn(no->sizes, NULL, t);
		lfs_txn_free(t);
		return;
	}
	pthread_mutex_lock(&no->lock);
	while (no->t)
		pthread_cond_wait(&no->cond, &no->lock);
	no->t = t;
	pthread_cond_broadcast(&no->cond);
	pthread_mutex_unlock(&no->lock);
}

/* Wait for the last transaction to be noted; end the thread. */
static void noter_stop(struct noter *no)
{
	if (no->threaded) {
		pthread_mutex_lock(&no->lock);
		no->stop = true;
		pthread_cond_broadcast(&no->cond);
		pthread_mutex_unlock(&no->lock);
		pthread_join(no->thread, NULL);
	}
	pthread_mutex_destroy(&no->lock);
	pthread_cond_destroy(&no->cond);
}

/* A file or directory of the tree that is not a document's: named on
 * stderr (the first SKIPS_SHOWN of them), counted. */
#define SKIPS_SHOWN 20
static void skip(struct imp *m, const char *path, const char *why)
{
	if (m->skipped++ < SKIPS_SHOWN)
		fprintf(stderr, "ledgerfs import: %s: skipped: %s\n", path,
			why);
}

static int add_file(struct imp *m, const char *id, const char *dir,
		    const char *name)
{
	size_t pl = strlen(dir) + strlen(name) + 2;
	char *path = malloc(pl), *idc = strdup(id);
	if (!path || !idc) {
		free(path);
		free(idc);
		return -ENOMEM;
	}
	snprintf(path, pl, "%s/%s", dir, name);
	return add_input(m, idc, path, 0, 0);
}

/*
 * The tree under m->src as a mount shows it (fsname.h): rel is dir's path
 * from m->src ("" at the top). A file's path is its id; the old flat
 * spelling (a%2Fb.json) is read at the top, as the mount opens it. What a
 * mount keeps as scratch (other names, dot-folders, directories whose
 * name is not a folder's) and what is never a document (links, devices)
 * is skipped and named.
 */
static int walk(struct imp *m, const char *dir, const char *rel, int depth)
{
	DIR *d = opendir(dir);
	if (!d) {
		fprintf(stderr, "ledgerfs import: %s: %s\n", dir,
			strerror(errno));
		return -errno;
	}
	struct dirent *de;
	int rc = 0;
	while (!rc && (de = readdir(d))) {
		const char *name = de->d_name;
		if (!strcmp(name, ".") || !strcmp(name, ".."))
			continue;
		char relp[LFS_FSPATH_MAX + 1], full[PATH_MAX];
		char id[LFS_INDEX_ID_MAX + 1];
		struct stat st;
		bool fits = snprintf(relp, sizeof(relp), "%s%s%s", rel,
				     *rel ? "/" : "", name) < (int)sizeof(relp);
		if (snprintf(full, sizeof(full), "%s/%s", dir, name) >=
		    (int)sizeof(full)) {
			skip(m, full, "path too long");
			continue;
		}
		if (lstat(full, &st)) {
			rc = -errno;
			fprintf(stderr, "ledgerfs import: %s: %s\n", full,
				strerror(errno));
			break;
		}
		if (S_ISDIR(st.st_mode)) {
			if (fits &&
			    lfs_fsname_folder_to_prefix(id, sizeof(id), relp))
				rc = walk(m, full, relp, depth + 1);
			else
				skip(m, full,
				     name[0] == '.' ? "a dot-folder (scratch "
						      "in a mount)"
						    : "not a folder's name (a "
						      "scratch directory in a "
						      "mount)");
		} else if (!S_ISREG(st.st_mode)) {
			skip(m, full, "not a regular file (never a document)");
		} else if (fits &&
			   lfs_fsname_path_to_id(id, sizeof(id), relp)) {
			rc = add_file(m, id, dir, name);
		} else if (!depth && lfs_fsname_to_id(id, sizeof(id), name) &&
			   strchr(id, '/')) {
			rc = add_file(m, id, dir, name);
		} else {
			skip(m, full,
			     "not a document's name (a scratch file in a "
			     "mount)");
		}
	}
	closedir(d);
	return rc;
}

static int input_id_cmp(const void *a, const void *b)
{
	return strcmp(((const struct input *)a)->id,
		      ((const struct input *)b)->id);
}

static int read_dir(struct imp *m)
{
	int rc = walk(m, m->src, "", 0);
	if (rc)
		return rc;
	/* Two files for one id (a/b.json and the old a%2Fb.json): refused,
	 * as neither is the one to keep. */
	if (m->n > 1)
		qsort(m->v, m->n, sizeof(*m->v), input_id_cmp);
	for (size_t i = 1; i < m->n; i++)
		if (!strcmp(m->v[i - 1].id, m->v[i].id)) {
			char why[PATH_MAX + 64];
			snprintf(why, sizeof(why),
				 "the same document as %s (its old spelling)",
				 m->v[i - 1].path);
			bad(m, &m->v[i], why);
		}
	return 0;
}

static int read_ndjson(struct imp *m, FILE *f)
{
	size_t len = 0, cap = 1 << 20;
	char *t = malloc(cap);
	if (!t)
		return -ENOMEM;
	size_t r;
	while ((r = fread(t + len, 1, cap - len - 1, f)) > 0) {
		len += r;
		if (cap - len < 2) {
			void *p = realloc(t, cap * 2);
			if (!p) {
				free(t);
				return -ENOMEM;
			}
			t = p;
			cap *= 2;
		}
	}
	if (ferror(f)) {
		free(t);
		return -EIO;
	}
	t[len] = '\0';
	m->text = t;
	long line = 0;
	for (char *s = t; *s;) {
		char *e = strchr(s, '\n');
		line++;
		bool blank = true;
		for (char *c = s; c < (e ? e : s + strlen(s)) && blank; c++)
			blank = *c == ' ' || *c == '\t' || *c == '\r';
		if (!blank) {
			int rc =
				add_input(m, NULL, NULL, line, (size_t)(s - t));
			if (rc)
				return rc;
		}
		if (!e)
			break;
		s = e + 1;
	}
	return 0;
}

static void progress(struct imp *m, size_t done, size_t total)
{
	if (!m->tty || !total)
		return;
	int w = 40, fill = (int)(done * (size_t)w / total);
	fprintf(stderr, "\r[%.*s%*s] %zu/%zu", fill,
		"########################################", w - fill, "", done,
		total);
	if (done == total)
		fputc('\n', stderr);
}

/*
 * The home's size table of ledger name (fs_render.h), where import notes
 * the documents' rendered lengths so a mount lists them without rendering
 * each; NULL when it cannot be opened. Only a speed-up: a failure is
 * said, not an error.
 */
static struct lfs_render_sizes *open_sizes(struct lfs_cli *c, const char *name)
{
	char *path = lfs_home_state_path(&c->home, name, "sizes");
	struct lfs_render_sizes *t = NULL;
	int rc = !path                  ? -ENOMEM
		 : lfs_mkdirs_for(path) ? -EIO
					: lfs_render_sizes_open(&t, path);
	if (rc)
		fprintf(stderr,
			"ledgerfs import: noting the documents' sizes for "
			"mounts: %s (only a mount's first listing is "
			"slower)\n",
			lfs_errmsg(rc));
	free(path);
	return t;
}

/* Ledger name of this home, not durable per commit: one sync at the end. */
static int open_named(struct lfs_cli *c, const char *name,
		      struct lfs_ledger **out)
{
	struct lfs_ledger_opts lo;
	lfs_ledger_opts_init(&lo);
	lo.durable = false;
	return lfs_cli_open_ledger(c, name, &lo, out);
}

/*
 * Read import's or export's arguments: --home DIR anywhere, and minpos to
 * maxpos positionals into pos. Returns -1 for --help (nothing printed),
 * else LFS_EXIT_OK, or LFS_EXIT_USAGE said with cli->args as the usage.
 */
static int parse_args(struct lfs_cli *cli, char **pos, size_t *npos,
		      size_t minpos, size_t maxpos, int argc, char **argv)
{
	static const struct lfs_optname names[] = {{"--home", 0, true}};
	struct lfs_optscan sc;
	lfs_optscan_init(&sc, argc, argv);
	const char *val;
	int k;
	*npos = 0;
	while ((k = lfs_optscan_next(&sc, names, 1, &val)) != LFS_OPT_END) {
		if (k == LFS_OPT_HELP)
			return -1;
		if (k == LFS_OPT_POS && *npos < maxpos)
			pos[(*npos)++] = (char *)val;
		else if (k == LFS_OPT_POS)
			return lfs_cli_usage_error(cli, "too many arguments");
		else if (k == 0 && *val)
			cli->home_arg = val;
		else if (k == 0 || k == LFS_OPT_NOVALUE)
			return lfs_cli_usage_error(
				cli, "a directory must follow '%s'", sc.arg);
		else
			return lfs_cli_usage_error(cli, "unknown option '%s'",
						   sc.arg);
	}
	if (*npos < minpos)
		return lfs_cli_usage_error(cli, "missing arguments");
	return LFS_EXIT_OK;
}

int lfs_cmd_import(int argc, char **argv)
{
	struct lfs_cli cli = {.cmd = "import",
			      .args = "[--home DIR] NAME [DIR|FILE.ndjson|-]"};
	char *pos[2];
	size_t npos;
	int pr = parse_args(&cli, pos, &npos, 1, 2, argc, argv);
	if (pr > 0)
		return pr;
	if (pr < 0) {
		printf("usage: ledgerfs import %s\n", cli.args);
		printf("Load documents in bulk: every file of the tree DIR "
		       "named as a mount names a\ndocument (DIR/notes/2026/"
		       "a.json is document notes/2026/a; other files and\n"
		       "dot-folders, scratch in a mount, are skipped and "
		       "named), or newline-delimited\n"
		       "JSON objects with \"_id\" (a file, or - or nothing for "
		       "standard input).\nEvery input is checked first: if any "
		       "is not a document, each is named with the reason\nand "
		       "nothing is imported. Then the documents are committed "
		       "in transactions of %d\n(or %zu MiB of text) and made "
		       "durable once; prints the number imported.\n",
		       IMPORT_TXN, IMPORT_TXN_BYTES >> 20);
		return LFS_EXIT_OK;
	}
	struct imp m = {.name = pos[0], .src = npos == 2 ? pos[1] : "-"};
	m.tty = isatty(STDERR_FILENO);
	struct stat st;
	int rc;
	if (strcmp(m.src, "-") && stat(m.src, &st)) {
		fprintf(stderr, "ledgerfs import: %s: %s\n", m.src,
			strerror(errno));
		return LFS_EXIT_NOTFOUND;
	}
	if (strcmp(m.src, "-") && S_ISDIR(st.st_mode)) {
		rc = read_dir(&m);
	} else {
		FILE *f = strcmp(m.src, "-") ? fopen(m.src, "re") : stdin;
		rc = f ? read_ndjson(&m, f) : -errno;
		if (f && f != stdin)
			fclose(f);
		if (!strcmp(m.src, "-"))
			m.src = "standard input";
	}
	if (rc) {
		fprintf(stderr, "ledgerfs import: cannot read %s: %s\n", m.src,
			strerror(-rc));
		return LFS_EXIT_FAIL;
	}
	if (m.skipped > SKIPS_SHOWN)
		fprintf(stderr, "ledgerfs import: %zu more skipped\n",
			m.skipped - SKIPS_SHOWN);
	struct lfs_ledger *l = NULL;
	struct lfs_render_sizes *sizes = NULL;
	int ret = open_named(&cli, m.name, &l);
	if (ret)
		goto out;
	/* Pass 1: parse and check everything (kept for pass 2 up to
	 * IMPORT_KEEP_BYTES); commit nothing if anything is bad. */
	check_all(&m);
	if (m.bad) {
		fprintf(stderr,
			"ledgerfs import: %zu of %zu input%s not a document; "
			"nothing was imported\n",
			m.bad, m.n, m.n == 1 ? " is" : "s are");
		ret = LFS_EXIT_FAIL;
		goto out;
	}
	/* Pass 2: commit. */
	sizes = open_sizes(&cli, m.name);
	struct noter no;
	noter_start(&no, sizes);
	size_t done = 0;
	while (!ret && done < m.n) {
		struct lfs_txn *t;
		if ((rc = lfs_txn_new(&t)))
			break;
		/* IMPORT_TXN documents, or IMPORT_TXN_BYTES of them: each
		 * transaction is one CAR file, which opening the ledger
		 * reads whole. */
		size_t end = done, bytes = 0;
		while (end < m.n && end - done < IMPORT_TXN &&
		       (end == done ||
			bytes + m.v[end].size <= IMPORT_TXN_BYTES))
			bytes += m.v[end++].size;
		for (size_t i = done; !rc && i < end; i++) {
			json_t *j =
				m.v[i].doc ? m.v[i].doc : load_doc(&m, &m.v[i]);
			m.v[i].doc = NULL;
			if (!j)
				say_bad(&m, &m.v[i]);
			rc = j ? lfs_txn_put_new(t, m.v[i].id, j) : -EINVAL;
		}
		if (!rc)
			rc = lfs_ledger_commit(l, t, NULL, NULL);
		if (!rc)
			noter_give(&no, t);
		else
			lfs_txn_free(t);
		if (rc) {
			fprintf(stderr,
				"ledgerfs import: committing documents %zu to "
				"%zu failed: %s (%zu before them are "
				"imported; importing again is safe)\n",
				done + 1, end, lfs_errmsg(rc), done);
			ret = LFS_EXIT_FAIL;
			break;
		}
		done = end;
		progress(&m, done, m.n);
	}
	noter_stop(&no);
	if (!ret && (rc = lfs_ledger_sync(l))) {
		fprintf(stderr, "ledgerfs import: cannot make it durable: %s\n",
			lfs_errmsg(rc));
		ret = LFS_EXIT_FAIL;
	}
	if (!ret)
		printf("%zu document%s imported\n", m.n, m.n == 1 ? "" : "s");
out:
	lfs_render_sizes_close(sizes);
	lfs_ledger_close(l);
	lfs_cli_release(&cli);
	for (size_t i = 0; i < m.n; i++) {
		json_decref(m.v[i].doc);
		free(m.v[i].why);
		free(m.v[i].id);
		free(m.v[i].path);
	}
	free(m.v);
	free(m.text);
	return ret;
}

struct exp {
	struct lfs_ledger *l;
	const char *dir;
	size_t n, skipped;
	int err;
};

static int export_one(void *ctx, const struct lfs_index_entry *e)
{
	struct exp *x = ctx;
	char name[LFS_FSPATH_MAX + 1];
	if (lfs_fsname_path_from_id(name, e->id) < 0) {
		fprintf(stderr,
			"ledgerfs export: document '%s' has no path (a name "
			"in it is too long); use 'ledgerfs get'\n",
			e->id);
		x->skipped++;
		return 0;
	}
	json_t *doc;
	int rc = lfs_ledger_load_doc(x->l, &e->cur.doc, e->id, &doc);
	struct lfs_buf b;
	lfs_buf_init(&b, 0);
	if (!rc)
		rc = lfs_dagjson_dump(&b, doc);
	json_decref(doc);
	if (!rc) {
		size_t pl = strlen(x->dir) + strlen(name) + 2;
		char *p = malloc(pl);
		int fd = -1;
		rc = p ? 0 : -ENOMEM;
		if (p)
			snprintf(p, pl, "%s/%s", x->dir, name);
		/* Its folders, as the mount shows them. */
		if (!rc && strchr(name, '/'))
			rc = lfs_mkdirs_for(p);
		if (!rc &&
		    (fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
			       0644)) < 0)
			rc = -errno;
		if (!rc)
			rc = lfs_write_all(fd, b.data, b.len);
		if (fd >= 0 && close(fd) && !rc)
			rc = -errno;
		if (rc)
			fprintf(stderr, "ledgerfs export: %s: %s\n",
				p ? p : name, lfs_errmsg(rc));
		free(p);
	}
	lfs_buf_release(&b);
	if (rc) {
		x->err = rc;
		return rc;
	}
	x->n++;
	return 0;
}

int lfs_cmd_export(int argc, char **argv)
{
	struct lfs_cli cli = {.cmd = "export", .args = "[--home DIR] NAME DIR"};
	char *pos[2];
	size_t npos;
	int pr = parse_args(&cli, pos, &npos, 2, 2, argc, argv);
	if (pr > 0)
		return pr;
	if (pr < 0) {
		printf("usage: ledgerfs export %s\n", cli.args);
		printf("Write every document of ledger NAME as DIR/<id>.json "
		       "(pretty JSON with \"_id\"), in\nfolders, as a mount "
		       "shows it (document notes/2026/a is DIR/notes/2026/"
		       "a.json;\nDIR is made if missing); prints the number "
		       "written.\n");
		return LFS_EXIT_OK;
	}
	if (mkdir(pos[1], 0755) && errno != EEXIST) {
		fprintf(stderr, "ledgerfs export: %s: %s\n", pos[1],
			strerror(errno));
		return LFS_EXIT_FAIL;
	}
	struct lfs_ledger *l = NULL;
	int ret = open_named(&cli, pos[0], &l);
	if (ret) {
		lfs_cli_release(&cli);
		return ret;
	}
	struct exp x = {.l = l, .dir = pos[1]};
	struct lfs_cid root;
	lfs_ledger_root(l, &root);
	int rc = lfs_index_each(lfs_ledger_index(l), &root, export_one, &x);
	if (rc && !x.err)
		fprintf(stderr, "ledgerfs export: ledger '%s': %s\n", pos[0],
			lfs_errmsg(rc));
	if (!rc)
		printf("%zu document%s exported\n", x.n, x.n == 1 ? "" : "s");
	lfs_ledger_close(l);
	lfs_cli_release(&cli);
	return rc || x.skipped ? LFS_EXIT_FAIL : LFS_EXIT_OK;
}
