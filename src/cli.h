/*
 * cli: what every subcommand of the ledgerfs program shares. Messages go to
 * stderr as "ledgerfs CMD: what happened; what to do", and each function
 * that reports a failure returns the exit code cmd.h lists, so a command
 * can `return lfs_cli_...(...)`.
 *
 * A command fills in a struct lfs_cli (its name as typed, its usage line,
 * --home if given) and releases it at the end; the home and ledger helpers
 * open the home on first use.
 */
#ifndef LFS_CLI_H
#define LFS_CLI_H

#include <stdbool.h>

#include "home.h"

struct lfs_ledger;
struct lfs_ledger_opts;

/* The process exit codes of every subcommand (cmd.h). */
enum {
	LFS_EXIT_OK = 0,
	LFS_EXIT_FAIL = 1,     /* the operation failed */
	LFS_EXIT_USAGE = 2,    /* the command line is wrong */
	LFS_EXIT_NOTFOUND = 3, /* the ledger, document or event named */
};

struct lfs_cli {
	const char *cmd;      /* as typed after "ledgerfs": "put", "car ls" */
	const char *args;     /* the usage line's arguments; NULL: none shown */
	const char *home_arg; /* --home DIR, NULL: from the environment */
	struct lfs_home home; /* valid once have_home */
	bool have_home;
};

/* "ledgerfs CMD: <message>" on stderr; LFS_EXIT_FAIL. */
int lfs_cli_fail(const struct lfs_cli *c, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* The message, the usage line and a pointer to --help; LFS_EXIT_USAGE. */
int lfs_cli_usage_error(const struct lfs_cli *c, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* "out of memory"; LFS_EXIT_FAIL. */
int lfs_cli_oom(const struct lfs_cli *c);

/*
 * Flush stdout: rc when that worked, else a message (a full disk, a closed
 * pipe) and LFS_EXIT_FAIL.
 */
int lfs_cli_finish_output(const struct lfs_cli *c, int rc);

/* Open the home once (c->home); 0 or a reported failure's exit code. */
int lfs_cli_need_home(struct lfs_cli *c);

/* 0 when name is a valid ledger name, else a reported usage error. */
int lfs_cli_check_name(const struct lfs_cli *c, const char *name);

/*
 * The home open, name valid and the ledger present on this machine; its
 * directory in *out_dir (malloc'd) when out_dir is not NULL. Else the
 * reported failure's exit code (LFS_EXIT_NOTFOUND for a missing ledger).
 */
int lfs_cli_need_ledger(struct lfs_cli *c, const char *name, char **out_dir);

/*
 * Report why ledger name's key could not be read (rc from lfs_home_key),
 * naming the key file and the fix; LFS_EXIT_FAIL.
 */
int lfs_cli_key_error(const struct lfs_cli *c, const char *name, int rc);

/* Report why lfs_ledger_open() failed on ledger name; LFS_EXIT_FAIL. */
int lfs_cli_open_error(const struct lfs_cli *c, const char *name, int rc);

/*
 * lfs_cli_need_ledger(), then open it with its key and this home's writer
 * (opts NULL: the defaults, durable). 0, or the reported failure's exit
 * code.
 */
int lfs_cli_open_ledger(struct lfs_cli *c, const char *name,
			const struct lfs_ledger_opts *opts,
			struct lfs_ledger **out);

void lfs_cli_release(struct lfs_cli *c);

#endif
