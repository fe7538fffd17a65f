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

#include "cmd.h"
#include "home.h"
#include "log.h"
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
		"usage: ledgerfs sync [--home DIR] [--remote URL] [--json] "
		"[NAME]\n"
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
		"store, say); the reason is printed: try again later.\n");
}

int lfs_cmd_sync(int argc, char **argv)
{
	const char *home_dir = NULL, *url = getenv("LEDGERFS_REMOTE");
	const char *name = NULL;
	bool json = false;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			sync_usage(stdout);
			return 0;
		} else if (!strcmp(argv[i], "--home") && i + 1 < argc) {
			home_dir = argv[++i];
		} else if (!strcmp(argv[i], "--remote") && i + 1 < argc) {
			url = argv[++i];
		} else if (!strcmp(argv[i], "--json")) {
			json = true;
		} else if (argv[i][0] != '-' && !name) {
			name = argv[i];
		} else {
			sync_usage(stderr);
			return 2;
		}
	}
	if (!url || !*url) {
		fprintf(stderr, "ledgerfs sync: no remote store: give --remote "
				"URL or set LEDGERFS_REMOTE\n");
		return 2;
	}
	if (name && !lfs_home_valid_name(name)) {
		fprintf(stderr, "ledgerfs sync: '%s' is not a ledger name\n",
			name);
		return 2;
	}
	lfs_log_setup(LFS_LOG_WARN, 0);
	struct lfs_home home;
	int rc = lfs_home_open(&home, home_dir);
	if (rc) {
		fprintf(stderr,
			"ledgerfs sync: cannot use the local store: %s\n",
			strerror(-rc));
		return 1;
	}
	struct provider p = {.home = &home};
	struct lfs_sync_hooks hooks = {.ledger = provide, .ctx = &p};
	struct lfs_sync *s;
	if ((rc = lfs_sync_new(&s, &home, url, &hooks))) {
		fprintf(stderr,
			"ledgerfs sync: cannot use the remote store "
			"%s: %s\n",
			url, rc == -EINVAL ? "not a store URL" : strerror(-rc));
		lfs_home_release(&home);
		return rc == -EINVAL ? 2 : 1;
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
			fprintf(stderr, "ledgerfs sync: ledger '%s': %s\n",
				names[i],
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
		fprintf(stderr, "ledgerfs sync: %s: %s\n", url, strerror(-rc));
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
