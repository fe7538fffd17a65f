/*
 * cmd_ledger: the frame the ledger subcommands share. cmd_ledger.c holds the
 * document commands (init, put, rm, get, cat, ls, log, diff, merge,
 * compact) and the frame; cmd_admin.c the commands that look after a
 * ledger (fsck, key, status, conflicts). Each command is a struct lcmd: its
 * name, its run function, which options it takes and its help. lcmd_run()
 * parses the options every command spells alike, runs it, and releases
 * what the context holds (the home, the open ledger). Nothing outside
 * those two files includes this header.
 */
#ifndef LFS_CMD_LEDGER_H
#define LFS_CMD_LEDGER_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "arena.h"
#include "cid.h"
#include "cli.h"
#include "index.h"
#include "ledger.h"

#define LCMD_UNLIMITED ((size_t)-1)

enum {
	LCMD_JSON = 1 << 0,
	LCMD_AT = 1 << 1,
	LCMD_N = 1 << 2,
	LCMD_FORCE = 1 << 3,
};

struct lcmd_opts {
	bool help;
	bool json;
	bool force;
	const char *at; /* --at EVENT */
	bool has_n;
	size_t n; /* -n N */
	char **pos;
	size_t npos;
};

struct lcmd_ctx;

struct lcmd {
	const char *name; /* as typed after "ledgerfs" */
	int (*run)(struct lcmd_ctx *x);
	unsigned opts;
	size_t min_pos, max_pos;
	const char *args;
	const char *help;
};

struct lcmd_ctx {
	const struct lcmd *c;
	struct lcmd_opts o;
	struct lfs_cli cli; /* messages, the home */
	const char *name;   /* the ledger */
	char *dir;          /* its directory */
	struct lfs_ledger *l;
};

/* The help text's shared lines. */
#define LCMD_HOME_HELP                                                         \
	"  --home DIR  the ledgerfs home (default: $LEDGERFS_HOME, else\n"     \
	"              $XDG_DATA_HOME/ledgerfs, else "                         \
	"~/.local/share/ledgerfs)\n"

#define LCMD_EXIT_HELP                                                         \
	"\nExit status: 0 ok, 1 failed, 2 usage error, 3 ledger or document\n" \
	"not found.\n"

/* Parse argv (argv[0] names the command) and run c; an exit code. */
int lcmd_run(const struct lcmd *c, int argc, char **argv);

/* Print a JSON value as documents are shown, and drop the reference. */
int lcmd_print_json(const struct lcmd_ctx *x, json_t *j);

/* A CID as a JSON string (new reference; NULL when memory is short). */
json_t *lcmd_json_cid(const struct lfs_cid *c);

/*
 * The home open, name valid and the ledger present (x->name, x->dir set);
 * 0 or the reported failure's exit code.
 */
int lcmd_need_ledger(struct lcmd_ctx *x, const char *name);

/* lcmd_need_ledger(), then open it with its key into x->l. */
int lcmd_open_ledger(struct lcmd_ctx *x, const char *name);

/* 0 when id is a valid document id, else a reported usage error. */
int lcmd_check_id(struct lcmd_ctx *x, const char *id);

/*
 * Report why document id (at event at, or NULL for now) could not be read
 * (rc a negative errno); the exit code to return.
 */
int lcmd_report_doc_error(struct lcmd_ctx *x, const char *id, const char *at,
			  int rc);

/* Index entries copied out, sorted by id. */
struct lcmd_collect {
	struct lfs_arena a;
	struct lfs_index_entry *v;
	size_t n, cap;
	bool only_conflicts;
};

/*
 * All entries under root (only those with conflicts when only_conflicts),
 * sorted by id, into c (released by lcmd_collect_release even on failure).
 */
int lcmd_collect_entries(struct lcmd_ctx *x, struct lcmd_collect *c,
			 const struct lfs_cid *root, bool only_conflicts);
void lcmd_collect_release(struct lcmd_collect *c);

#endif
