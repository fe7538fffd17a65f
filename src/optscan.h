/*
 * optscan: the argument scanner shared by the subcommands' parsers.
 *
 * Walks argv[1..] once. Long options take "--name value" or "--name=value"
 * when they have an argument; "--" ends the options; a lone "-" and
 * anything not starting with '-' is positional. What each option means,
 * and which a command accepts, stays with the caller.
 */
#ifndef LFS_OPTSCAN_H
#define LFS_OPTSCAN_H

#include <stdbool.h>
#include <stddef.h>

struct lfs_optname {
	const char *name; /* "--json", "-n" */
	unsigned flag;    /* the caller's meaning */
	bool has_arg;
};

struct lfs_optscan {
	int argc;
	char **argv;
	int i;           /* the last argument consumed */
	const char *arg; /* the last option as typed, for messages */
	bool dashdash;
};

/* What lfs_optscan_next() found. */
enum {
	LFS_OPT_END = -1,     /* no more arguments */
	LFS_OPT_POS = -2,     /* a positional argument: *out_val */
	LFS_OPT_HELP = -3,    /* -h or --help */
	LFS_OPT_UNKNOWN = -4, /* an option not in the table: *out_val */
	LFS_OPT_NOVALUE = -5, /* an option missing its value: *out_val */
};

void lfs_optscan_init(struct lfs_optscan *s, int argc, char **argv);

/*
 * The next argument: the index (>= 0) of the matched entry of names[n],
 * with its value in *out_val (NULL for options without one), or one of
 * the negative codes above.
 */
int lfs_optscan_next(struct lfs_optscan *s, const struct lfs_optname *names,
		     size_t n, const char **out_val);

#endif
