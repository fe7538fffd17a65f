/*
 * `ledgerfs mount`: the daemon. Parses options, checks the mount point and
 * /dev/fuse with messages a person can act on, mounts, daemonizes unless
 * asked not to, and runs the multi-threaded session loop until unmounted
 * or signalled (SIGTERM, SIGINT, SIGHUP), then flushes and exits.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cmd.h"
#include "fs.h"
#include "fs_fireproof.h"
#include "fp_ledger.h"
#include "home.h"
#include "log.h"

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
		"                      default 30, 0 to 86400)\n"
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

static int mount_run(int argc, char **argv, char **own);

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

int lfs_cmd_mount(int argc, char **argv)
{
	char *own = NULL; /* joined -o options */
	int rc = mount_run(argc, argv, &own);
	free(own);
	return rc;
}

static int mount_run(int argc, char **argv, char **own)
{
	const char *home_dir = NULL, *mountpoint = NULL, *opts = NULL;
	const char *remote = getenv("LEDGERFS_REMOTE");
	const char *meta = getenv("LEDGERFS_META");
	const char *fireproof = NULL, *keybag = NULL;
	unsigned poll_ms = 1000;
	int foreground = 0, use_syslog = 0;
	enum lfs_log_level level = LFS_LOG_INFO;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
			mount_usage(stdout);
			return 0;
		} else if (!strcmp(a, "-f") || !strcmp(a, "--foreground")) {
			foreground = 1;
		} else if (!strcmp(a, "--syslog")) {
			use_syslog = 1;
		} else if ((!strcmp(a, "--home") || !strcmp(a, "--store")) &&
			   i + 1 < argc) {
			home_dir = argv[++i];
		} else if (!strcmp(a, "--log-level") && i + 1 < argc) {
			if (lfs_log_parse_level(&level, argv[++i])) {
				fprintf(stderr,
					"ledgerfs mount: unknown log level "
					"'%s' (debug, info, warn, error)\n",
					argv[i]);
				return 2;
			}
		} else if (!strcmp(a, "--fireproof") && i + 1 < argc) {
			fireproof = argv[++i];
		} else if (!strcmp(a, "--keybag") && i + 1 < argc) {
			keybag = argv[++i];
		} else if (!strcmp(a, "--remote") && i + 1 < argc) {
			remote = argv[++i];
		} else if (!strcmp(a, "--meta") && i + 1 < argc) {
			meta = argv[++i];
		} else if (!strcmp(a, "--poll-ms") && i + 1 < argc) {
			poll_ms = (unsigned)strtoul(argv[++i], NULL, 10);
			if (poll_ms < 50 || poll_ms > 3600000) {
				fprintf(stderr, "ledgerfs mount: --poll-ms "
						"takes 50 to 3600000\n");
				return 2;
			}
		} else if (!strcmp(a, "-o") && i + 1 < argc) {
			/* Several -o options add up, as mount(8)'s do. */
			const char *more = argv[++i];
			size_t n = (opts ? strlen(opts) + 1 : 0) +
				   strlen(more) + 1;
			char *joined = malloc(n);
			if (!joined)
				return 1;
			snprintf(joined, n, "%s%s%s", opts ? opts : "",
				 opts ? "," : "", more);
			free(*own);
			opts = *own = joined;
		} else if (a[0] == '-' || mountpoint) {
			fprintf(stderr, "ledgerfs mount: unexpected '%s'\n", a);
			mount_usage(stderr);
			return 2;
		} else {
			mountpoint = a;
		}
	}
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
				       level, use_syslog, poll_ms, argv[0]);

	struct lfs_home home;
	int rc = lfs_home_open(&home, home_dir);
	if (rc) {
		fprintf(stderr,
			"ledgerfs mount: cannot use the local store %s: %s\n",
			home_dir ? home_dir : "(from the environment)",
			strerror(-rc));
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
	char *fargv[] = {argv[0], "-o", optbuf, NULL};
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
	return status;
}
