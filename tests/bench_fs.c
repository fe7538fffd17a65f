/*
 * bench_fs: the FUSE file system against a plain FUSE passthrough (Debian's
 * bindfs over tmpfs), the same workload on both mount points in one run.
 * scripts/bench-fs sets up the mounts and calls the modes below; each mode
 * prints its rows of one side-by-side table (figures on stdout, progress on
 * stderr).
 *
 *   bench_fs compare [-n N] [-r REPS] DIR_BASE DIR_LFS
 *       N documents (default 10,000) of ~1 KiB JSON object text in one
 *       empty directory on each side, REPS repetitions (default 3), the
 *       sides alternating within each repetition. Per repetition and side:
 *       create+write+close, stat, read (open+read to EOF+close), readdir
 *       (opendir/readdir/closedir of all N; three listings, each counted),
 *       write-temp+rename-over (write ".tmp.NNN", rename it over an
 *       existing "<id>.json"), unlink. µs per file (readdir: ms per
 *       listing), the median over the repetitions; target: ledgerfs within
 *       1.5x of the baseline.
 *   bench_fs readdir [-r REPS] [-n N] DIR_BASE DIR_LFS
 *       list two directories that already hold N files (default 100,000)
 *       each, alternating; median ms; target within 2x.
 *   bench_fs rss [-n N] PID DIR
 *       list DIR, stat its first N documents (default 10,000), then report
 *       VmRSS of process PID; target < 150 MB.
 *   bench_fs rss-write [-n N] PID_BASE DIR_BASE PID_LFS DIR_LFS
 *       create N documents (default 100,000) one file each in an empty
 *       directory on each side, as a script saving them would, then
 *       report both daemons' VmRSS; target: ledgerfs < 150 MB. Every
 *       save is a commit, so this is what a long-lived mount keeps per
 *       commit, beside what the passthrough keeps per file.
 *   bench_fs populate HOME LEDGER N
 *       create ledger LEDGER in the local store HOME (daemon not mounted)
 *       and commit N documents in transactions of 1,000 through the
 *       library, the same text the workload writes (without "_id");
 *       then note their rendered sizes as `ledgerfs import` does.
 *   bench_fs mkfiles DIR N
 *       write N such documents as plain files into DIR.
 *   bench_fs op OP DIR N
 *       run one phase of the workload once (OP: create, stat, read,
 *       readdir, rename, unlink) and print its time: for a profiler or a
 *       request count (strace, perf, the daemon's -o debug).
 *
 * Exit status: 0 when every figure was measured (a missed target is
 * reported, not an error), 1 when an operation failed, 2 on bad usage.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
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

#include "fileio.h"
#include "fs_render.h"
#include "home.h"
#include "ledger.h"

#include "bench_util.h"

#define TARGET_OP      1.5   /* ledgerfs / baseline, per operation */
#define TARGET_READDIR 2.0   /* ledgerfs / baseline, big directory */
#define TARGET_RSS     150.0 /* MB */
#define DOC_BYTES      1024
#define BULK_TXN       1000
#define LISTINGS       3 /* readdir listings per repetition */

static const char *prog = "bench_fs";

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void die(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "%s: ", prog);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	exit(1);
}

static void progress(const char *fmt, ...)
	__attribute__((format(printf, 1, 2)));
static void progress(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "%s: ", prog);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

/* ---- documents ---- */

static void doc_name(char *out, size_t size, size_t i)
{
	snprintf(out, size, "d%06zu.json", i);
}

/*
 * About DOC_BYTES of JSON object text for document i, version rev
 * (deterministic; plain ASCII words so no escaping is needed).
 */
static size_t doc_text(char *out, size_t size, size_t i, int rev)
{
	static const char *const words[] = {
		"milk",  "ledger", "invoice", "paid",    "shipped",
		"alice", "bob",    "carol",   "meeting", "note",
		"total", "draft",  "the",     "and",     "of",
		"cafe",  "resume", "water",   "north",   "reviewed"};
	char body[DOC_BYTES];
	size_t n = 0, want = 760 + i % 64;
	uint64_t h = (uint64_t)i * 0x9e3779b97f4a7c15ull + (uint64_t)rev;
	while (n < want) {
		h ^= h >> 12;
		h ^= h << 25;
		h ^= h >> 27;
		const char *w = words[(h * 0x2545f4914f6cdd1dull >> 33) % 20];
		size_t wl = strlen(w);
		if (n + wl + 1 >= sizeof(body))
			break;
		if (n)
			body[n++] = ' ';
		memcpy(body + n, w, wl);
		n += wl;
	}
	body[n] = '\0';
	int len = snprintf(
		out, size,
		"{\"title\": \"document %zu\", \"rev\": %d, \"count\": %zu, "
		"\"price\": %zu.25, \"done\": %s, \"tags\": [\"alpha\", "
		"\"beta\", \"gamma\"], \"meta\": {\"author\": \"bench\", "
		"\"email\": \"someone@example.com\", \"created\": %zu}, "
		"\"body\": \"%s\"}\n",
		i, rev, i * 7 % 100000, i % 1000, i % 2 ? "true" : "false",
		(size_t)1600000000 + i, body);
	if (len < 0 || (size_t)len >= size)
		die("document text too long");
	return (size_t)len;
}

static void write_all(int fd, const char *data, size_t len, const char *what)
{
	while (len) {
		ssize_t w = write(fd, data, len);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			die("write %s: %s", what, strerror(errno));
		data += w;
		len -= (size_t)w;
	}
}

/* ---- the workload ---- */

enum op { OP_CREATE, OP_STAT, OP_READ, OP_READDIR, OP_UNLINK, OP_RENAME, NOPS };

static const char *const op_names[NOPS] = {
	"create+write+close",       "stat",   "read (open+read+close)",
	"readdir (ms per listing)", "unlink", "write-temp+rename-over"};

/* Run `what` over dir; the time in seconds. */
static double run_op(enum op what, const char *dir, size_t n, size_t extra)
{
	char path[4096], tmp[4096], text[2 * DOC_BYTES], name[64];
	double t0 = lfs_bench_now();
	if (what == OP_READDIR) {
		size_t seen = 0;
		DIR *d = opendir(dir);
		if (!d)
			die("opendir %s: %s", dir, strerror(errno));
		errno = 0;
		while (readdir(d))
			seen++;
		if (errno)
			die("readdir %s: %s", dir, strerror(errno));
		closedir(d);
		/* "." and ".." and whatever else the directory shows */
		if (seen < n || seen > n + 2 + extra)
			die("readdir %s: %zu entries, expected %zu", dir, seen,
			    n + 2);
		return lfs_bench_now() - t0;
	}
	for (size_t i = 0; i < n; i++) {
		doc_name(name, sizeof(name), i);
		snprintf(path, sizeof(path), "%s/%s", dir, name);
		switch (what) {
		case OP_CREATE: {
			size_t len = doc_text(text, sizeof(text), i, 1);
			int fd = open(path,
				      O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC,
				      0644);
			if (fd < 0)
				die("create %s: %s", path, strerror(errno));
			write_all(fd, text, len, path);
			if (close(fd))
				die("close %s: %s", path, strerror(errno));
			break;
		}
		case OP_STAT: {
			struct stat st;
			if (stat(path, &st))
				die("stat %s: %s", path, strerror(errno));
			if (!S_ISREG(st.st_mode) || st.st_size < 100)
				die("stat %s: not a document", path);
			break;
		}
		case OP_READ: {
			int fd = open(path, O_RDONLY | O_CLOEXEC);
			if (fd < 0)
				die("open %s: %s", path, strerror(errno));
			size_t got = 0;
			for (;;) {
				ssize_t r = read(fd, text, sizeof(text));
				if (r < 0 && errno == EINTR)
					continue;
				if (r < 0)
					die("read %s: %s", path,
					    strerror(errno));
				if (r == 0)
					break;
				got += (size_t)r;
			}
			close(fd);
			if (got < 100)
				die("read %s: only %zu bytes", path, got);
			break;
		}
		case OP_UNLINK:
			if (unlink(path))
				die("unlink %s: %s", path, strerror(errno));
			break;
		case OP_RENAME: {
			size_t len = doc_text(text, sizeof(text), i, 2);
			snprintf(tmp, sizeof(tmp), "%s/.tmp.%zu", dir, i);
			int fd = open(tmp,
				      O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
				      0644);
			if (fd < 0)
				die("create %s: %s", tmp, strerror(errno));
			write_all(fd, text, len, tmp);
			if (close(fd))
				die("close %s: %s", tmp, strerror(errno));
			if (rename(tmp, path))
				die("rename %s over %s: %s", tmp, path,
				    strerror(errno));
			break;
		}
		default:
			break;
		}
	}
	return lfs_bench_now() - t0;
}

/* Entries in dir beyond the documents (ledgerfs: .snapshots, .ledgerfs). */
static size_t count_entries(const char *dir)
{
	DIR *d = opendir(dir);
	if (!d)
		die("opendir %s: %s", dir, strerror(errno));
	size_t n = 0;
	while (readdir(d))
		n++;
	closedir(d);
	return n;
}

static void print_header(const char *base, const char *lfs)
{
	printf("%-28s %11s %11s %8s  %s\n", "operation", base, lfs, "ratio",
	       "target");
}

static void print_row(const char *what, double base, double lfs, double target,
		      const char *unit)
{
	double ratio = lfs / base;
	char t[32];
	snprintf(t, sizeof(t), "<= %.1fx", target);
	printf("%-28s %11.1f %11.1f %7.2fx  %-7s %s%s\n", what, base, lfs,
	       ratio, t, ratio <= target ? "met" : "NOT met", unit);
	fflush(stdout);
}

static int usage(void)
{
	fprintf(stderr,
		"usage: bench_fs compare [-n N] [-r REPS] DIR_BASE DIR_LFS\n"
		"       bench_fs readdir [-n N] [-r REPS] DIR_BASE DIR_LFS\n"
		"       bench_fs rss [-n N] PID DIR\n"
		"       bench_fs rss-write [-n N] PID_BASE DIR_BASE PID_LFS "
		"DIR_LFS\n"
		"       bench_fs populate HOME LEDGER N\n"
		"       bench_fs mkfiles DIR N\n"
		"       bench_fs op OP DIR N\n");
	return 2;
}

/* Parse -n/-r options; the index of the first operand. */
static int parse_opts(int argc, char **argv, size_t *n, size_t *reps)
{
	int i = 2;
	for (; i < argc && argv[i][0] == '-'; i++) {
		if (i + 1 >= argc)
			exit(usage());
		long v = atol(argv[i + 1]);
		if (v <= 0)
			exit(usage());
		if (!strcmp(argv[i], "-n"))
			*n = (size_t)v;
		else if (!strcmp(argv[i], "-r") && reps)
			*reps = (size_t)v;
		else
			exit(usage());
		i++;
	}
	return i;
}

static int cmd_compare(int argc, char **argv)
{
	size_t n = 10000, reps = 3;
	int i = parse_opts(argc, argv, &n, &reps);
	if (argc - i != 2)
		return usage();
	const char *dirs[2] = {argv[i], argv[i + 1]};
	size_t extra[2];
	for (int s = 0; s < 2; s++) {
		size_t e = count_entries(dirs[s]);
		if (e < 2)
			die("%s: no . and ..?", dirs[s]);
		extra[s] = e - 2;
	}
	static const enum op order[] = {OP_CREATE,  OP_STAT,   OP_READ,
					OP_READDIR, OP_RENAME, OP_UNLINK};
	double *t[2][NOPS];
	for (int s = 0; s < 2; s++)
		for (int o = 0; o < NOPS; o++)
			if (!(t[s][o] =
				      calloc(reps * LISTINGS, sizeof(double))))
				die("out of memory");
	for (size_t r = 0; r < reps; r++) {
		for (int s = 0; s < 2; s++) {
			progress("repetition %zu/%zu on %s", r + 1, reps,
				 dirs[s]);
			for (size_t k = 0; k < sizeof(order) / sizeof(*order);
			     k++) {
				enum op o = order[k];
				if (o == OP_READDIR) {
					for (int l = 0; l < LISTINGS; l++)
						t[s][o][r * LISTINGS + l] =
							run_op(o, dirs[s], n,
							       extra[s]) *
							1e3;
				} else {
					t[s][o][r] = run_op(o, dirs[s], n,
							    extra[s]) *
						     1e6 / (double)n;
				}
			}
		}
	}
	printf("%zu documents of ~%d B JSON in one directory; median of %zu "
	       "repetitions (readdir: %d listings each); us per file unless "
	       "noted\n",
	       n, DOC_BYTES, reps, LISTINGS);
	print_header("bindfs", "ledgerfs");
	for (int o = 0; o < NOPS; o++) {
		size_t cnt = o == OP_READDIR ? reps * LISTINGS : reps;
		double b = lfs_bench_median(t[0][o], cnt),
		       l = lfs_bench_median(t[1][o], cnt);
		print_row(op_names[o], b, l, TARGET_OP, "");
	}
	for (int s = 0; s < 2; s++)
		for (int o = 0; o < NOPS; o++)
			free(t[s][o]);
	return 0;
}

static int cmd_readdir(int argc, char **argv)
{
	size_t n = 100000, reps = 5;
	int i = parse_opts(argc, argv, &n, &reps);
	if (argc - i != 2)
		return usage();
	const char *dirs[2] = {argv[i], argv[i + 1]};
	double *t[2];
	size_t extra[2];
	for (int s = 0; s < 2; s++) {
		if (!(t[s] = calloc(reps, sizeof(double))))
			die("out of memory");
		size_t e = count_entries(dirs[s]); /* also warms up */
		if (e < n + 2)
			die("%s: %zu entries, expected %zu", dirs[s], e, n + 2);
		extra[s] = e - n - 2;
	}
	for (size_t r = 0; r < reps; r++)
		for (int s = 0; s < 2; s++)
			t[s][r] =
				run_op(OP_READDIR, dirs[s], n, extra[s]) * 1e3;
	char what[64];
	print_header("bindfs", "ledgerfs");
	snprintf(what, sizeof(what), "readdir %zu (ms, %zu runs)", n, reps);
	print_row(what, lfs_bench_median(t[0], reps),
		  lfs_bench_median(t[1], reps), TARGET_READDIR, "");
	free(t[0]);
	free(t[1]);
	return 0;
}

static long vm_rss_kb(long pid)
{
	char p[64], line[256];
	snprintf(p, sizeof(p), "/proc/%ld/status", pid);
	FILE *f = fopen(p, "r");
	if (!f)
		die("%s: %s", p, strerror(errno));
	long kb = -1;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, "VmRSS:", 6))
			kb = atol(line + 6);
	fclose(f);
	if (kb < 0)
		die("%s: no VmRSS", p);
	return kb;
}

static int cmd_rss(int argc, char **argv)
{
	size_t n = 10000;
	int i = parse_opts(argc, argv, &n, NULL);
	if (argc - i != 2)
		return usage();
	long pid = atol(argv[i]);
	const char *dir = argv[i + 1];
	long before = vm_rss_kb(pid);
	DIR *d = opendir(dir);
	if (!d)
		die("opendir %s: %s", dir, strerror(errno));
	size_t listed = 0, statted = 0;
	struct dirent *de;
	char path[4096];
	while ((de = readdir(d))) {
		listed++;
		size_t l = strlen(de->d_name);
		if (statted >= n || l < 6 ||
		    strcmp(de->d_name + l - 5, ".json"))
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		struct stat st;
		if (stat(path, &st))
			die("stat %s: %s", path, strerror(errno));
		statted++;
	}
	closedir(d);
	long after = vm_rss_kb(pid);
	double mb = (double)after / 1024.0;
	printf("daemon VmRSS: %.1f MB before listing, %.1f MB after listing "
	       "%zu entries and stat'ing %zu documents; target < %.0f MB: "
	       "%s\n",
	       (double)before / 1024.0, mb, listed, statted, TARGET_RSS,
	       mb < TARGET_RSS ? "met" : "NOT met");
	return 0;
}

static int cmd_rss_write(int argc, char **argv)
{
	size_t n = 100000;
	int i = parse_opts(argc, argv, &n, NULL);
	if (argc - i != 4)
		return usage();
	long pid[2] = {atol(argv[i]), atol(argv[i + 2])};
	const char *dir[2] = {argv[i + 1], argv[i + 3]};
	double kb[2][2], secs[2];
	for (int s = 0; s < 2; s++) {
		progress("creating %zu documents in %s", n, dir[s]);
		kb[s][0] = (double)vm_rss_kb(pid[s]);
		secs[s] = run_op(OP_CREATE, dir[s], n, 0);
		kb[s][1] = (double)vm_rss_kb(pid[s]);
	}
	printf("daemon VmRSS after creating %zu documents one file each "
	       "(MB; before -> after):\n",
	       n);
	printf("  bindfs %.1f -> %.1f (%.0f us a file); ledgerfs %.1f -> "
	       "%.1f (%.0f us a file); target < %.0f MB: %s\n",
	       kb[0][0] / 1024, kb[0][1] / 1024, secs[0] * 1e6 / (double)n,
	       kb[1][0] / 1024, kb[1][1] / 1024, secs[1] * 1e6 / (double)n,
	       TARGET_RSS, kb[1][1] / 1024 < TARGET_RSS ? "met" : "NOT met");
	return 0;
}

static int cmd_populate(int argc, char **argv)
{
	if (argc != 5)
		return usage();
	const char *name = argv[3];
	size_t n = (size_t)atol(argv[4]);
	if (sodium_init() < 0)
		die("sodium_init failed");
	struct lfs_home h;
	int rc = lfs_home_open(&h, argv[2]);
	if (rc)
		die("opening the home %s: %s", argv[2], strerror(-rc));
	if ((rc = lfs_home_create(&h, name)))
		die("creating ledger %s: %s", name, strerror(-rc));
	uint8_t key[LFS_KEY_BYTES];
	if ((rc = lfs_home_key(key, &h, name)))
		die("reading the key of %s: %s", name, strerror(-rc));
	char *dir = lfs_home_ledger_dir(&h, name);
	if (!dir)
		die("out of memory");
	struct lfs_ledger_opts o;
	lfs_ledger_opts_init(&o);
	o.durable = false;
	o.writer = h.writer;
	struct lfs_ledger *l;
	if ((rc = lfs_ledger_open(&l, dir, key, &o, true)))
		die("opening ledger %s: %s", dir, strerror(-rc));
	sodium_memzero(key, sizeof(key));
	char *sizes = lfs_home_state_path(&h, name, "sizes");
	struct lfs_render_sizes *st = NULL;
	if (!sizes || lfs_mkdirs_for(sizes) ||
	    lfs_render_sizes_open(&st, sizes))
		die("opening the size table of %s failed", name);
	free(sizes);
	double t0 = lfs_bench_now();
	char text[2 * DOC_BYTES], fname[64], id[64];
	for (size_t i = 0; i < n;) {
		struct lfs_txn *t;
		if ((rc = lfs_txn_new(&t)))
			die("lfs_txn_new: %s", strerror(-rc));
		for (size_t k = 0; k < BULK_TXN && i < n; k++, i++) {
			size_t len = doc_text(text, sizeof(text), i, 1);
			json_error_t err;
			json_t *doc = json_loadb(text, len, 0, &err);
			if (!doc)
				die("document %zu: %s", i, err.text);
			doc_name(fname, sizeof(fname), i);
			snprintf(id, sizeof(id), "%.*s",
				 (int)(strlen(fname) - 5), fname);
			if ((rc = lfs_txn_put(t, id, doc)))
				die("lfs_txn_put %s: %s", id, strerror(-rc));
			json_decref(doc);
		}
		if ((rc = lfs_ledger_commit(l, t, NULL, NULL)))
			die("lfs_ledger_commit: %s", strerror(-rc));
		/* What `ledgerfs import` does after each commit. */
		if ((rc = lfs_render_note_txn(st, NULL, t)))
			die("noting the rendered sizes: %s", strerror(-rc));
		lfs_txn_free(t);
	}
	if ((rc = lfs_ledger_sync(l)))
		die("lfs_ledger_sync: %s", strerror(-rc));
	lfs_render_sizes_close(st);
	lfs_ledger_close(l);
	progress("committed %zu documents to ledger %s in %.1f s", n, name,
		 lfs_bench_now() - t0);
	free(dir);
	lfs_home_release(&h);
	return 0;
}

static int cmd_mkfiles(int argc, char **argv)
{
	if (argc != 4)
		return usage();
	const char *dir = argv[2];
	size_t n = (size_t)atol(argv[3]);
	char path[4096], text[2 * DOC_BYTES], name[64];
	for (size_t i = 0; i < n; i++) {
		doc_name(name, sizeof(name), i);
		snprintf(path, sizeof(path), "%s/%s", dir, name);
		size_t len = doc_text(text, sizeof(text), i, 1);
		int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
			      0644);
		if (fd < 0)
			die("create %s: %s", path, strerror(errno));
		write_all(fd, text, len, path);
		close(fd);
	}
	return 0;
}

static int cmd_op(int argc, char **argv)
{
	static const char *const names[NOPS] = {"create",  "stat",   "read",
						"readdir", "unlink", "rename"};
	if (argc != 5)
		return usage();
	size_t n = (size_t)atol(argv[4]);
	for (int o = 0; o < NOPS; o++) {
		if (strcmp(argv[2], names[o]))
			continue;
		size_t extra = o == OP_READDIR ? count_entries(argv[3]) : 0;
		double t = run_op((enum op)o, argv[3], n, extra);
		if (o == OP_READDIR)
			printf("%s: %.2f ms\n", names[o], t * 1e3);
		else
			printf("%s: %.1f us per file\n", names[o],
			       t * 1e6 / (double)n);
		return 0;
	}
	return usage();
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc < 2)
		return usage();
	const char *m = argv[1];
	if (!strcmp(m, "compare"))
		return cmd_compare(argc, argv);
	if (!strcmp(m, "readdir"))
		return cmd_readdir(argc, argv);
	if (!strcmp(m, "rss"))
		return cmd_rss(argc, argv);
	if (!strcmp(m, "rss-write"))
		return cmd_rss_write(argc, argv);
	if (!strcmp(m, "populate"))
		return cmd_populate(argc, argv);
	if (!strcmp(m, "mkfiles"))
		return cmd_mkfiles(argc, argv);
	if (!strcmp(m, "op"))
		return cmd_op(argc, argv);
	return usage();
}
