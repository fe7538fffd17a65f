/*
 * `ledgerfs sync`: one replication round with a remote store, without a
 * mount: pull what others pushed, push what this machine committed. When it
 * returns 0, everything committed here before it started is on the remote.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cmd.h"
#include "home.h"
#include "log.h"
#include "optscan.h"
#include "sync.h"

struct opened {
	char *name;
	struct lfs_ledger *l;
	struct opened *next;
};

struct provider {
	struct lfs_home *home;
	struct opened *list;
};

static struct lfs_ledger *provide(void *ctx, const char *name)
{
	struct provider *p = ctx;
	for (struct opened *o = p->list; o; o = o->next)
		if (!strcmp(o->name, name))
			return o->l;
	struct lfs_ledger *l = NULL;
	bool key_error;
	if (lfs_home_open_ledger(&l, p->home, name, NULL, true, &key_error))
		l = NULL;
	struct opened *o = calloc(1, sizeof(*o));
	if (o && (o->name = strdup(name))) {
		o->l = l;
		o->next = p->list;
		p->list = o;
	} else {
		free(o);
	}
	return l;
}

static void sync_usage(FILE *f)
{
	fprintf(f,
		"usage: ledgerfs sync [--home DIR] [--remote URL] [--meta URL] "
		"[--json] [NAME]\n"
		"\n"
		"Replicate ledger NAME (default: every ledger) with a remote "
		"store once:\n"
		"fetch and apply what other machines pushed, then upload what "
		"this one\n"
		"committed. URL: s3://bucket/prefix, http(s)://host/path, "
		"file:///path\n"
		"(default: $LEDGERFS_REMOTE). Exit 0 when everything is "
		"pushed and every\n"
		"remote change applied; 1 when the store failed, or when some "
		"remote\n"
		"changes could not be applied yet (incomplete: a file missing "
		"on the\n"
		"store, say); the reason is printed: try again later.\n"
		"--meta redis://... (default: $LEDGERFS_META) also announces "
		"the new\n"
		"heads there, so mounts listening hear of them at once.\n");
}

enum { O_HOME = 1, O_REMOTE, O_META, O_JSON };

static const struct lfs_optname sync_opts[] = {
	{"--home", O_HOME, true},
	{"--remote", O_REMOTE, true},
	{"--meta", O_META, true},
	{"--json", O_JSON, false},
};

int lfs_cmd_sync(int argc, char **argv)
{
	struct lfs_cli cli = {
		.cmd = "sync",
		.args = "[--home DIR] [--remote URL] [--meta URL] "
			"[--json] [NAME]"};
	const char *home_dir = NULL, *url = getenv("LEDGERFS_REMOTE");
	const char *name = NULL, *meta = getenv("LEDGERFS_META");
	bool json = false;
	struct lfs_optscan sc;
	lfs_optscan_init(&sc, argc, argv);
	const char *val;
	int k;
	while ((k = lfs_optscan_next(&sc, sync_opts,
				     sizeof(sync_opts) / sizeof(*sync_opts),
				     &val)) != LFS_OPT_END) {
		switch (k) {
		case LFS_OPT_HELP:
			sync_usage(stdout);
			return lfs_cli_finish_output(&cli, LFS_EXIT_OK);
		case LFS_OPT_POS:
			if (name)
				return lfs_cli_usage_error(
					&cli, "too many arguments");
			name = val;
			continue;
		case LFS_OPT_UNKNOWN:
			return lfs_cli_usage_error(&cli, "unknown option '%s'",
						   sc.arg);
		case LFS_OPT_NOVALUE:
			return lfs_cli_usage_error(&cli, "%s needs a value",
						   val);
		}
		switch (sync_opts[k].flag) {
		case O_HOME:
			home_dir = val;
			break;
		case O_REMOTE:
			url = val;
			break;
		case O_META:
			meta = val;
			break;
		case O_JSON:
			json = true;
			break;
		}
	}
	if (!url || !*url)
		return lfs_cli_usage_error(&cli,
					   "no remote store: give --remote URL "
					   "or set LEDGERFS_REMOTE");
	if (name && !lfs_home_valid_name(name))
		return lfs_cli_usage_error(&cli, "'%s' is not a ledger name",
					   name);
	lfs_log_setup(LFS_LOG_WARN, 0);
	struct lfs_home home;
	int rc = lfs_home_open(&home, home_dir);
	if (rc) {
		lfs_cli_fail(&cli, "cannot use the local store: %s",
			     strerror(-rc));
		return 1;
	}
	struct provider p = {.home = &home};
	struct lfs_sync_hooks hooks = {.ledger = provide, .ctx = &p};
	struct lfs_sync *s;
	if ((rc = lfs_sync_new(&s, &home, url, &hooks))) {
		lfs_cli_fail(&cli, "cannot use the remote store %s: %s", url,
			     rc == -EINVAL ? "not a store URL" : strerror(-rc));
		lfs_home_release(&home);
		return rc == -EINVAL ? 2 : 1;
	}
	if (meta && *meta && (rc = lfs_sync_use_meta(s, meta))) {
		lfs_cli_fail(&cli, "cannot use the metadata endpoint: %s",
			     rc == -EINVAL ? "not redis://[[USER]:PASSWORD@]"
					     "HOST[:PORT][/DB]"
					   : strerror(-rc));
		lfs_sync_free(s);
		lfs_home_release(&home);
		return 2;
	}
	rc = lfs_sync_round(s, name);
	int status = 0;
	char **names = NULL;
	size_t n = 0;
	if (name) {
		names = calloc(1, sizeof(*names));
		if (names && (names[0] = strdup(name)))
			n = 1;
	} else if (lfs_home_list(&names, &n, &home)) {
		n = 0;
	}
	json_t *all = json_object();
	for (size_t i = 0; i < n; i++) {
		json_t *st = lfs_sync_status(s, names[i]);
		const char *err =
			json_string_value(json_object_get(st, "last_error"));
		const char *state =
			json_string_value(json_object_get(st, "state"));
		bool ok = state && !strcmp(state, "synced");
		if (!ok && !(state && !strcmp(state, "no key")))
			status = 1;
		if (!ok)
			lfs_cli_fail(&cli, "ledger '%s': %s", names[i],
				     err     ? err
				     : state ? state
					     : "no status");
		else if (!json)
			printf("%s: pushed and pulled with %s\n", names[i],
			       url);
		json_object_set_new(all, names[i], st);
	}
	if (json) {
		char *text = json_dumps(all, JSON_INDENT(2) | JSON_SORT_KEYS);
		if (text)
			puts(text);
		free(text);
	}
	json_decref(all);
	lfs_home_list_free(names, n);
	if (rc && !status) {
		lfs_cli_fail(&cli, "%s: %s", url, strerror(-rc));
		status = 1;
	}
	lfs_sync_free(s);
	while (p.list) {
		struct opened *o = p.list;
		p.list = o->next;
		lfs_ledger_close(o->l);
		free(o->name);
		free(o);
	}
	lfs_home_release(&home);
	return status;
}
