/*
 * ledgerfs: the one program. main() initialises the libraries (before any
 * thread starts) and dispatches to a subcommand; only main exits.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <sodium.h>

#include "cmd.h"

struct command {
	const char *name;
	int (*run)(int argc, char **argv);
	const char *summary;
};

static const struct command commands[] = {
	{"mount", lfs_cmd_mount, "serve the ledgers as a file system"},
	{"sync", lfs_cmd_sync, "replicate ledgers with a remote store once"},
	{"car", lfs_cmd_car, "inspect, build, seal and open CAR files"},
	{"init", lfs_cmd_init, "create a ledger"},
	{"put", lfs_cmd_put, "put a JSON document into a ledger"},
	{"import", lfs_cmd_import, "load many documents (a directory, NDJSON)"},
	{"export", lfs_cmd_export, "write every document into a directory"},
	{"rm", lfs_cmd_rm, "delete documents"},
	{"get", lfs_cmd_get, "print a document (now or at an event)"},
	{"cat", lfs_cmd_cat, "print a document at an event"},
	{"ls", lfs_cmd_ls, "list a ledger's documents"},
	{"log", lfs_cmd_log, "list a ledger's events, newest first"},
	{"diff", lfs_cmd_diff, "what changed between two events"},
	{"merge", lfs_cmd_merge, "join concurrent heads into one"},
	{"compact", lfs_cmd_compact, "rewrite a ledger into one CAR file"},
	{"fsck", lfs_cmd_fsck, "check a ledger's files and history"},
	{"key", lfs_cmd_key, "export or import a ledger's key"},
	{"status", lfs_cmd_status, "heads, documents and files of ledgers"},
	{"conflicts", lfs_cmd_conflicts,
	 "losing versions of concurrent writes"},
};

static void usage(FILE *f)
{
	fprintf(f, "usage: ledgerfs COMMAND [ARGS...]\n\ncommands:\n");
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		fprintf(f, "  %-10s %s\n", commands[i].name,
			commands[i].summary);
	fprintf(f,
		"\n`ledgerfs COMMAND --help` describes each command;\n"
		"`ledgerfs --version` prints the version. mount(8) may also\n"
		"run `ledgerfs STORE MOUNTPOINT -o OPTIONS` (fstab type\n"
		"fuse.ledgerfs; see ledgerfs(1)).\n");
}

/* Does a command line name a Fireproof ledger (--fireproof DIR)? */
static int wants_fireproof(int argc, char **argv)
{
	for (int i = 1; i < argc && strcmp(argv[i], "--"); i++)
		if (!strcmp(argv[i], "--fireproof") ||
		    !strncmp(argv[i], "--fireproof=", 12))
			return 1;
	return 0;
}

int main(int argc, char **argv)
{
	if (sodium_init() < 0) {
		fprintf(stderr, "ledgerfs: libsodium failed to initialise\n");
		return 1;
	}
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		fprintf(stderr, "ledgerfs: libcurl failed to initialise\n");
		return 1;
	}
	int rc = 2;
	if (argc < 2) {
		usage(stderr);
	} else if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") ||
		   !strcmp(argv[1], "help")) {
		usage(stdout);
		rc = 0;
	} else if (!strcmp(argv[1], "--version")) {
		printf("ledgerfs %s\n", PACKAGE_VERSION);
		rc = 0;
	} else {
		const struct command *c = NULL;
		for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]);
		     i++)
			if (!strcmp(argv[1], commands[i].name))
				c = &commands[i];
		if (c && strcmp(c->name, "mount") &&
		    wants_fireproof(argc - 1, argv + 1))
			rc = lfs_cmd_fireproof(c->name, argc - 1, argv + 1);
		else if (c)
			rc = c->run(argc - 1, argv + 1);
		else if (argc >= 3 && argv[1][0] != '-' && argv[2][0] != '-')
			rc = lfs_cmd_mount_fstab(argc, argv);
		else {
			fprintf(stderr, "ledgerfs: unknown command '%s'\n\n",
				argv[1]);
			usage(stderr);
		}
	}
	curl_global_cleanup();
	return rc;
}
