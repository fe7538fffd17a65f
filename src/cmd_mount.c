/*
 * `ledgerfs mount`: the daemon. Parses options, checks the mount point and
 * /dev/fuse with messages a person can act on, mounts, daemonizes unless
 * asked not to, and runs the multi-threaded session loop until unmounted
 * or signalled (SIGTERM, SIGINT, SIGHUP), then flushes and exits.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <malloc.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cmd.h"
#include "fs.h"
#include "fs_opts.h"
#include "fs_fireproof.h"
#include "fp_ledger.h"
#include "home.h"
#include "log.h"
#include "optscan.h"

static void mount_usage(FILE *f)
{
	fprintf(f,
		"usage: ledgerfs mount [OPTIONS] MOUNTPOINT\n"
		"\n"
		"Serve every ledger in the local store as a directory under\n"
		"MOUNTPOINT: one JSON file per document, .snapshots/ for "
		"history,\n"
		".ledgerfs/ for status. Runs in the background unless -f.\n"
		"\n"
		"options:\n"
		"  --home DIR          the local store (default: "
		"$LEDGERFS_HOME,\n"
		"                      else $XDG_DATA_HOME/ledgerfs)\n"
		"  -f, --foreground    stay in the foreground, log to stderr\n"
		"  --log-level LEVEL   debug, info (default), warn or error\n"
		"  --syslog            log to syslog even in the foreground\n"
		"  --remote URL        replicate with a store: "
		"s3://bucket/prefix,\n"
		"                      http(s)://host/path, file:///path\n"
		"                      (default: $LEDGERFS_REMOTE; none: local "
		"only)\n"
		"  --poll-ms N         how often to look for remote changes "
		"while\n"
		"                      active (1000); idle, up to every 30 s\n"
		"  --meta URL          also announce and hear of changes at "
		"once\n"
		"                      through redis://[:PASSWORD@]HOST[:PORT]"
		"[/DB]\n"
		"                      (default: $LEDGERFS_META; none: the "
		"store)\n"
		"  --fireproof DIR     serve the Fireproof 0.24 ledgers in DIR "
		"(its\n"
		"                      FP_STORAGE_URL) read-only instead; "
		"'' for\n"
		"                      $FP_STORAGE_URL or ~/.fireproof/v0.19\n"
		"  --keybag DIR        their keybag (default $FP_KEYBAG_URL, "
		"else\n"
		"                      ~/.fireproof/keybag)\n"
		"  -o OPTS             mount options: FUSE's (allow_other...)\n"
		"                      and snapdir=hidden|visible (list\n"
		"                      .snapshots and .ledgerfs; default\n"
		"                      hidden), uid=N, gid=N (owner of\n"
		"                      documents and directories), umask=OOO\n"
		"                      (default 022; 077 with allow_other),\n"
		"                      cache_timeout=S (how long the kernel\n"
		"                      keeps documents' names and attributes;\n"
		"                      default 30, 0 to 86400),\n"
		"                      changes_max=BYTES (the change feed's\n"
		"                      size before it starts again, kept as\n"
		"                      changes.1; default 8 MiB),\n"
		"                      cache_max=BYTES (what all caches keep\n"
		"                      in all; default 32 MiB, at least 1 "
		"MiB),\n"
		"                      and\n"
		"                      remote=, meta=, poll_ms=, log_level=,\n"
		"                      keybag= (as above)\n"
		"  -h, --help          this text\n"
		"\n"
		"Unmount with `fusermount3 -u MOUNTPOINT` (or `umount` as "
		"root)\n"
		"or by sending SIGTERM to the daemon; pending changes are\n"
		"committed and made durable first.\n");
}

/* Is path already the root of a mount (its device differs from its
 * parent's, or it is /)? */
static int is_mounted(const char *path)
{
	char parent[PATH_MAX];
	struct stat a, b;
	if (snprintf(parent, sizeof(parent), "%s/..", path) >=
		    (int)sizeof(parent) ||
	    stat(path, &a) || stat(parent, &b))
		return 0;
	return a.st_dev != b.st_dev || a.st_ino == b.st_ino;
}

struct mount_args;
static int mount_run(const struct mount_args *m, const char *argv0);

/* `--fireproof DIR`: Fireproof's files, read-only (fs_fireproof.h). */
static int mount_fireproof(const char *storage_arg, const char *keybag_arg,
			   const char *mp, const char *opts, int foreground,
			   enum lfs_log_level level, int use_syslog,
			   unsigned poll_ms, const char *argv0)
{
	char *storage = lfs_fp_storage_dir(storage_arg);
	char *keybag = lfs_fp_keybag_dir(keybag_arg);
	int rc = 1;
	if (storage && keybag) {
		struct lfs_fpfs_opts o = {
			.storage = storage,
			.keybag = keybag,
			.mountpoint = mp,
			.fuse_opts = opts,
			.argv0 = argv0,
			.poll_ms = poll_ms,
			.foreground = foreground,
			.level = level,
			.use_syslog = use_syslog,
		};
		rc = lfs_fpfs_main(&o);
	}
	free(storage);
	free(keybag);
	return rc;
}

/* What the command line (and -o) asks for. */
struct mount_args {
	const char *home_dir, *mountpoint, *remote, *meta, *fireproof, *keybag;
	char *fuse_opts; /* the -o options that are FUSE's, joined */
	char **o_copies; /* of each -o's text, which the values point into */
	size_t no_copies;
	unsigned poll_ms;
	int foreground, use_syslog;
	bool fireproof_home; /* -o fireproof: --home is Fireproof's */
	enum lfs_log_level level;
};

static int set_poll_ms(struct mount_args *m, const char *v)
{
	m->poll_ms = (unsigned)strtoul(v, NULL, 10);
	if (m->poll_ms < 50 || m->poll_ms > 3600000) {
		fprintf(stderr, "ledgerfs mount: --poll-ms takes 50 to "
				"3600000\n");
		return 2;
	}
	return 0;
}

static int set_log_level(struct mount_args *m, const char *v)
{
	if (lfs_log_parse_level(&m->level, v)) {
		fprintf(stderr,
			"ledgerfs mount: unknown log level '%s' (debug, info, "
			"warn, error)\n",
			v);
		return 2;
	}
	return 0;
}

/*
 * One -o option: ledgerfs's own (remote=URL, meta=URL, poll_ms=N,
 * log_level=L, keybag=DIR, fireproof: the same as --remote and so on;
 * fireproof says the store is a Fireproof directory), or FUSE's, added to
 * m->fuse_opts. 0, 1 (out of memory) or 2 (a bad value).
 */
static int take_o_option(struct mount_args *m, char *tok)
{
	static const char *const own[] = {
		"remote=", "meta=", "poll_ms=", "log_level=", "keybag="};
	size_t k = 0;
	while (k < sizeof(own) / sizeof(*own) &&
	       strncmp(tok, own[k], strlen(own[k])))
		k++;
	const char *v =
		k < sizeof(own) / sizeof(*own) ? tok + strlen(own[k]) : NULL;
	switch (k) {
	case 0:
		m->remote = v;
		return 0;
	case 1:
		m->meta = v;
		return 0;
	case 2:
		return set_poll_ms(m, v);
	case 3:
		return set_log_level(m, v);
	case 4:
		m->keybag = v;
		return 0;
	}
	if (!strcmp(tok, "fireproof")) {
		m->fireproof_home = true;
		return 0;
	}
	size_t n =
		(m->fuse_opts ? strlen(m->fuse_opts) + 1 : 0) + strlen(tok) + 1;
	char *joined = malloc(n);
	if (!joined)
		return 1;
	snprintf(joined, n, "%s%s%s", m->fuse_opts ? m->fuse_opts : "",
		 m->fuse_opts ? "," : "", tok);
	free(m->fuse_opts);
	m->fuse_opts = joined;
	return 0;
}

/* Several -o options add up, as mount(8)'s do. */
static int take_o(struct mount_args *m, const char *opts)
{
	char **v = realloc(m->o_copies, (m->no_copies + 1) * sizeof(*v));
	if (!v)
		return 1;
	m->o_copies = v;
	if (!(v[m->no_copies] = strdup(opts)))
		return 1;
	int rc = 0;
	for (char *save = NULL, *tok = strtok_r(v[m->no_copies++], ",", &save);
	     tok && !rc; tok = strtok_r(NULL, ",", &save))
		rc = take_o_option(m, tok);
	return rc;
}

enum {
	M_FOREGROUND,
	M_SYSLOG,
	M_HOME,
	M_LOG_LEVEL,
	M_FIREPROOF,
	M_KEYBAG,
	M_REMOTE,
	M_META,
	M_POLL_MS,
	M_O
};

static const struct lfs_optname mount_opts[] = {
	{"-f", M_FOREGROUND, false},
	{"--foreground", M_FOREGROUND, false},
	{"--syslog", M_SYSLOG, false},
	{"--home", M_HOME, true},
	{"--store", M_HOME, true},
	{"--log-level", M_LOG_LEVEL, true},
	{"--fireproof", M_FIREPROOF, true},
	{"--keybag", M_KEYBAG, true},
	{"--remote", M_REMOTE, true},
	{"--meta", M_META, true},
	{"--poll-ms", M_POLL_MS, true},
	{"-o", M_O, true},
};

/* Parse argv into m: 0, -1 for --help (done), else the exit status. */
static int parse_mount_args(struct mount_args *m, int argc, char **argv)
{
	struct lfs_optscan sc;
	lfs_optscan_init(&sc, argc, argv);
	const char *val;
	int k, rc = 0;
	while (!rc &&
	       (k = lfs_optscan_next(&sc, mount_opts,
				     sizeof(mount_opts) / sizeof(*mount_opts),
				     &val)) != LFS_OPT_END) {
		if (k == LFS_OPT_HELP) {
			mount_usage(stdout);
			return -1;
		}
		if (k == LFS_OPT_NOVALUE) {
			fprintf(stderr, "ledgerfs mount: %s needs a value\n",
				val);
			return 2;
		}
		if (k == LFS_OPT_UNKNOWN ||
		    (k == LFS_OPT_POS && m->mountpoint)) {
			fprintf(stderr, "ledgerfs mount: unexpected '%s'\n",
				sc.arg);
			mount_usage(stderr);
			return 2;
		}
		if (k == LFS_OPT_POS) {
			m->mountpoint = val;
			continue;
		}
		switch (mount_opts[k].flag) {
		case M_FOREGROUND:
			m->foreground = 1;
			break;
		case M_SYSLOG:
			m->use_syslog = 1;
			break;
		case M_HOME:
			m->home_dir = val;
			break;
		case M_LOG_LEVEL:
			rc = set_log_level(m, val);
			break;
		case M_FIREPROOF:
			m->fireproof = val;
			break;
		case M_KEYBAG:
			m->keybag = val;
			break;
		case M_REMOTE:
			m->remote = val;
			break;
		case M_META:
			m->meta = val;
			break;
		case M_POLL_MS:
			rc = set_poll_ms(m, val);
			break;
		case M_O:
			rc = take_o(m, val);
			break;
		}
	}
	if (!rc && m->fireproof_home && !m->fireproof) {
		m->fireproof = m->home_dir ? m->home_dir : "";
		m->home_dir = NULL;
	}
	return rc;
}

int lfs_cmd_mount(int argc, char **argv)
{
	struct mount_args m = {
		.remote = getenv("LEDGERFS_REMOTE"),
		.meta = getenv("LEDGERFS_META"),
		.poll_ms = 1000,
		.level = LFS_LOG_INFO,
	};
	int rc = parse_mount_args(&m, argc, argv);
	rc = rc < 0 ? 0 : rc ? rc : mount_run(&m, argv[0]);
	free(m.fuse_opts);
	for (size_t i = 0; i < m.no_copies; i++)
		free(m.o_copies[i]);
	free(m.o_copies);
	return rc;
}

int lfs_cmd_mount_fstab(int argc, char **argv)
{
	char *margv[64];
	int n = 0;
	margv[n++] = "mount";
	margv[n++] = "--home";
	margv[n++] = argv[1];
	for (int i = 3; i < argc; i++) {
		if (strcmp(argv[i], "-o") || i + 1 >= argc || n > 60) {
			fprintf(stderr,
				"ledgerfs: unexpected '%s' (usage: "
				"ledgerfs STORE MOUNTPOINT [-o OPTIONS])\n",
				argv[i]);
			return 2;
		}
		margv[n++] = argv[i++];
		margv[n++] = argv[i];
	}
	margv[n++] = argv[2];
	margv[n] = NULL;
	return lfs_cmd_mount(n, margv);
}

/*
 * A mount holds a host file for every open scratch file, its stores'
 * connections and its ledgers' files: take every descriptor the system
 * lets this process have, not the 1,024 a login shell's soft limit
 * gives. Nothing here uses select(), so high descriptors are fine.
 */
static void raise_fd_limit(void)
{
	struct rlimit r;
	if (getrlimit(RLIMIT_NOFILE, &r) || r.rlim_cur >= r.rlim_max)
		return;
	r.rlim_cur = r.rlim_max;
	if (setrlimit(RLIMIT_NOFILE, &r))
		lfs_warn("cannot raise the open-file limit: %s",
			 strerror(errno));
}

/*
 * At unmount libfuse cancels its worker threads, and glibc loads
 * libgcc_s.so.1 then to unwind them: with every descriptor in use that
 * load fails and glibc aborts the daemon. Loaded now, it is found there.
 */
static void keep_unwinder_loaded(void)
{
	if (!dlopen("libgcc_s.so.1", RTLD_NOW | RTLD_NODELETE))
		lfs_warn("cannot load libgcc_s.so.1 (%s): unmounting with "
			 "no file descriptor left would fail",
			 dlerror());
}

/*
 * libfuse's workers come and go, and glibc gives each thread that
 * allocates an arena of its own (up to eight per core): what one frees
 * stays in its arena, so a long-lived daemon's heap spreads over them
 * all. As many arenas as cores keep the workers apart as much as the
 * cores can, and a daemon that made 100,000 commits smaller
 * (docs/HACKING.md, "What the daemon keeps in memory").
 */
static void limit_malloc_arenas(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	if (!mallopt(M_ARENA_MAX, n < 2 ? 2 : n > 64 ? 64 : (int)n))
		lfs_debug("cannot limit malloc's arenas");
}

static int mount_run(const struct mount_args *m, const char *argv0)
{
	raise_fd_limit();
	keep_unwinder_loaded();
	limit_malloc_arenas();
	const char *home_dir = m->home_dir, *mountpoint = m->mountpoint;
	const char *opts = m->fuse_opts, *remote = m->remote, *meta = m->meta;
	const char *fireproof = m->fireproof, *keybag = m->keybag;
	unsigned poll_ms = m->poll_ms;
	int foreground = m->foreground, use_syslog = m->use_syslog;
	enum lfs_log_level level = m->level;
	if (!mountpoint) {
		mount_usage(stderr);
		return 2;
	}
	char mp[PATH_MAX];
	struct stat st;
	if (!realpath(mountpoint, mp) || stat(mp, &st)) {
		int e = errno;
		if (e == ENOTCONN)
			fprintf(stderr,
				"ledgerfs mount: %s is a dead mount (its "
				"daemon died): unmount it with `fusermount3 "
				"-u %s` and mount again\n",
				mountpoint, mountpoint);
		else
			fprintf(stderr,
				"ledgerfs mount: mount point %s: %s (create "
				"it with mkdir -p %s)\n",
				mountpoint, strerror(e), mountpoint);
		return 1;
	}
	if (!S_ISDIR(st.st_mode)) {
		fprintf(stderr,
			"ledgerfs mount: mount point %s is not a directory\n",
			mp);
		return 1;
	}
	if (is_mounted(mp)) {
		fprintf(stderr,
			"ledgerfs mount: %s is busy: something is already "
			"mounted there (unmount it with `fusermount3 -u %s`)\n",
			mp, mp);
		return 1;
	}
	int fd = open("/dev/fuse", O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		fprintf(stderr,
			"ledgerfs mount: cannot open /dev/fuse: %s. Install "
			"fuse3 (apt-get install fuse3), load the module "
			"(modprobe fuse), or in a container pass the device "
			"through (--device /dev/fuse).\n",
			strerror(errno));
		return 1;
	}
	close(fd);

	if (fireproof)
		return mount_fireproof(fireproof, keybag, mp, opts, foreground,
				       level, use_syslog, poll_ms, argv0);

	struct lfs_home home;
	int rc = lfs_home_open(&home, home_dir);
	if (rc) {
		fprintf(stderr,
			"ledgerfs mount: cannot use the local store %s: %s\n",
			home_dir ? home_dir : "(from the environment)",
			strerror(-rc));
		return 1;
	}
	/* Held until the process ends. */
	int home_lock = lfs_home_lock_mount(&home);
	if (home_lock < 0) {
		fprintf(stderr, "ledgerfs mount: the local store %s %s\n",
			home.dir,
			home_lock == -EBUSY
				? "is already mounted by another ledgerfs "
				  "(one mount per local store; unmount that "
				  "one first, or use another --home)"
				: strerror(-home_lock));
		lfs_home_release(&home);
		return 1;
	}
	char *logfile = lfs_home_log_path(&home);
	lfs_log_fallback(logfile);
	free(logfile);
	lfs_log_setup(level, use_syslog || !foreground);

	char optbuf[1024];
	snprintf(optbuf, sizeof(optbuf),
		 "fsname=ledgerfs,subtype=ledgerfs,default_permissions%s%s",
		 opts ? "," : "", opts ? opts : "");
	char *fargv[] = {(char *)argv0, "-o", optbuf, NULL};
	struct fuse_args args = FUSE_ARGS_INIT(3, fargv);
	struct lfs_fs *fs = NULL;
	struct lfs_sync *sync = NULL;
	struct fuse_session *se = NULL;
	int status = 1;
	if ((rc = lfs_fs_new(&fs, &home))) {
		fprintf(stderr, "ledgerfs mount: %s\n", strerror(-rc));
		goto out;
	}
	if (lfs_fs_parse_opts(fs, &args)) {
		fprintf(stderr,
			"ledgerfs mount: bad options '%s' (see "
			"`ledgerfs mount --help`)\n",
			optbuf);
		goto out;
	}
	if (remote && *remote) {
		struct lfs_sync_hooks hooks = lfs_fs_sync_hooks(fs);
		if ((rc = lfs_sync_new(&sync, &home, remote, &hooks))) {
			fprintf(stderr,
				"ledgerfs mount: cannot use the remote store "
				"%s: %s\n",
				remote,
				rc == -EINVAL ? "not a store URL (s3://, "
						"http(s)://, file:///)"
					      : strerror(-rc));
			goto out;
		}
		if (meta && *meta && (rc = lfs_sync_use_meta(sync, meta))) {
			fprintf(stderr,
				"ledgerfs mount: cannot use the metadata "
				"endpoint: %s\n",
				rc == -EINVAL ? "not redis://[[USER]:PASSWORD@]"
						"HOST[:PORT][/DB]"
					      : strerror(-rc));
			goto out;
		}
		lfs_fs_set_sync(fs, sync);
	}
	se = fuse_session_new(&args, lfs_fs_ops(), sizeof(*lfs_fs_ops()), fs);
	if (!se) {
		fprintf(stderr, "ledgerfs mount: bad FUSE options '%s'\n",
			optbuf);
		goto out;
	}
	if (fuse_set_signal_handlers(se)) {
		fprintf(stderr, "ledgerfs mount: cannot set signal handlers\n");
		goto out;
	}
	if (fuse_session_mount(se, mp)) {
		fprintf(stderr,
			"ledgerfs mount: mounting on %s failed (see the "
			"message above; as a normal user you need fuse3's "
			"fusermount3 and write access to %s)\n",
			mp, mp);
		fuse_remove_signal_handlers(se);
		goto out;
	}
	if (fuse_daemonize(foreground)) {
		fuse_session_unmount(se);
		fuse_remove_signal_handlers(se);
		goto out;
	}
	lfs_info("mounted %s on %s", home.dir, mp);
	if (!(rc = lfs_fs_start(fs, se)) && sync &&
	    (rc = lfs_sync_start(sync, poll_ms)))
		lfs_error("cannot start the sync thread: %s", strerror(-rc));
	if (rc) {
		lfs_error("cannot start the housekeeping thread: %s",
			  strerror(-rc));
	} else {
		struct fuse_loop_config *cfg = fuse_loop_cfg_create();
		fuse_loop_cfg_set_clone_fd(cfg, 0);
		fuse_loop_cfg_set_max_threads(cfg, 16);
		/* The loop returns the signal number after SIGTERM/SIGINT:
		 * that is a clean stop. Only a negative value is a failure. */
		status = fuse_session_loop_mt(se, cfg) < 0 ? 1 : 0;
		fuse_loop_cfg_destroy(cfg);
	}
	fuse_session_unmount(se);
	fuse_remove_signal_handlers(se);
	lfs_info("unmounted %s", mp);
	lfs_fs_flush(fs);
	if (sync) {
		/* Push what the last moments committed, once. */
		lfs_sync_stop(sync);
		lfs_sync_round(sync, NULL);
	}
out:
	if (se)
		fuse_session_destroy(se);
	lfs_sync_free(sync);
	lfs_fs_free(fs);
	fuse_opt_free_args(&args);
	lfs_home_release(&home);
	close(home_lock);
	return status;
}
