/*
 * bench_ledger: the ledger engine against its targets, beside the file
 * system floor measured in the same run:
 *
 *   1. single-document commits of ~1 KiB JSON: 20,000 with durable=false
 *      (>= 20,000/s; appended to the segment, as the mount does), 500 with
 *      durable=true appended to the segment (an fdatasync each: the mount's
 *      fsync; >= 1,000/s), 8 threads of 500 each doing the same (the group
 *      commit: one fdatasync covers what others appended meanwhile, as
 *      when several programs save through a mount; >= 1,000/s) and 500
 *      written as a file each (the CLI's way, informative), and the CPU
 *      time of a durable=false commit (steadier than its rate on a loaded
 *      machine, beside a write+close's); baselines: as
 *      many 1 KiB files written with write+close, and with
 *      write+fsync+close (by 1 and by 8 threads), in the same file system,
 *      and the file operations of a commit written as files alone (two
 *      temporary files renamed into place, one head record unlinked);
 *   2. bulk put of 100,000 documents in transactions of 1,000 (durable=false,
 *      the final lfs_ledger_sync included);
 *   3. a ledger of 100,000 documents built with 10,000 commits of 10:
 *      open time (lfs_ledger_open through the first lfs_ledger_get) before
 *      and after lfs_ledger_compact (< 0.5 s after), each in a fresh process
 *      (this program re-executed), with the files hot in the page cache and
 *      cold (evicted with posix_fadvise(DONTNEED), checked with mincore);
 *   4. get latency, median and p99 over 10,000 random gets (document loaded
 *      as JSON) in that fresh process;
 *   5. its VmRSS after those gets (< 100 MB);
 *   6. lfs_index_diff of two roots 10 documents apart (< 5 ms, median).
 *
 * Sizes are divided by 10 with --quick. The work happens in a fresh
 * directory under /var/tmp (or -d DIR), which is removed at the end.
 * Targets are reported, not enforced: exits 0 when the run completed (a
 * failed compaction is reported in the table and the figures that need it
 * are marked not measured), 1 when another operation failed, 2 on bad usage.
 * --keep leaves the directory in place (for a profiler or a look).
 *
 * File creation speed on a shared disk varies a lot between runs (ext4
 * skips recently freed inodes, so a large rm -rf slows creates for minutes
 * after); compare figures with the baselines of the same run.
 *
 *   tests/bench_ledger [--quick] [--keep] [-d DIR]
 *   tests/bench_ledger --child DIR NDOCS NGETS hot|cold   (internal)
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <sodium.h>

#include "index.h"
#include "ledger.h"

#include "bench_util.h"
#include "rm_tree.h"

#define TARGET_COMMITS  20000.0 /* commits/s, durable=false */
#define TARGET_DURABLE  1000.0  /* commits/s, fsync each (segment) */
#define COMMITTERS      8       /* threads of the group-commit row */
#define TARGET_OPEN     0.5     /* s, after compaction */
#define TARGET_RSS      100.0   /* MB */
#define TARGET_DIFF     5.0     /* ms */
#define DOC_POOL        64
#define DIFF_CHANGES    10
#define DIFF_REPEATS    201
#define DOCS_PER_COMMIT 10
#define BULK_TXN        1000

static const char *prog = "bench_ledger";
static uint8_t key[LFS_KEY_BYTES];

static const char *workdir; /* removed by die() in the parent */

static void die(const char *what, int rc)
{
	fprintf(stderr, "%s: %s failed: %s\n", prog, what,
		rc < 0 ? strerror(-rc) : "unexpected result");
	if (workdir)
		lfs_rm_tree(workdir);
	exit(1);
}

/* The q-quantile (0..1) of t[0..n), which gets sorted. */
static double quantile(double *t, size_t n, double q)
{
	qsort(t, n, sizeof(*t), lfs_bench_cmp_double);
	size_t i = (size_t)(q * (double)(n - 1) + 0.5);
	return t[i < n ? i : n - 1];
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

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rng(void)
{
	/* xorshift64*: deterministic across runs and machines */
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 0x2545f4914f6cdd1dull;
}

static json_t *random_text(size_t min, size_t max)
{
	static const char *const words[] = {"milk",
					    "ledger",
					    "invoice",
					    "paid",
					    "shipped",
					    "alice",
					    "bob",
					    "carol",
					    "meeting",
					    "tomorrow",
					    "caf\xc3\xa9",
					    "note",
					    "r\xc3\xa9sum\xc3\xa9",
					    "total",
					    "draft",
					    "reviewed",
					    "the",
					    "and",
					    "of",
					    "\xe6\xb0\xb4"};
	size_t want = min + rng() % (max - min + 1);
	char buf[2048];
	size_t n = 0;
	while (n < want && n < sizeof(buf) - 32) {
		const char *w = words[rng() % (sizeof(words) / sizeof(*words))];
		if (n)
			buf[n++] = ' ';
		memcpy(buf + n, w, strlen(w));
		n += strlen(w);
	}
	return json_stringn(buf, n);
}

/* A ~1 KiB JSON object; "seq" is set per put so every version differs. */
static json_t *typical_doc(void)
{
	json_t *tags = json_array();
	for (int k = 0; k < 5; k++)
		json_array_append_new(tags, random_text(3, 12));
	json_t *scores = json_array();
	for (int k = 0; k < 6; k++)
		json_array_append_new(
			scores,
			k & 1 ? json_integer((json_int_t)(rng() % 1000))
			      : json_real((double)(rng() % 1000000) / 1000.0));
	json_t *d = json_pack(
		"{s:o,s:o,s:I,s:f,s:b,s:o,s:o,s:{s:I,s:o,s:s},s:I}", "title",
		random_text(20, 60), "body", random_text(620, 760), "count",
		(json_int_t)(rng() % 100000), "price",
		(double)(rng() % 100000) / 100.0, "done", (int)(rng() & 1),
		"tags", tags, "scores", scores, "meta", "created",
		(json_int_t)(1600000000 + rng() % 100000000), "author",
		random_text(5, 15), "email", "someone@example.com", "seq",
		(json_int_t)0);
	if (!d)
		die("building a document", -ENOMEM);
	return d;
}

struct pool {
	json_t *docs[DOC_POOL];
	double avg_bytes;
};

static void pool_init(struct pool *p)
{
	size_t total = 0;
	for (int i = 0; i < DOC_POOL; i++) {
		p->docs[i] = typical_doc();
		char *s = json_dumps(p->docs[i], JSON_COMPACT);
		if (!s)
			die("json_dumps", -ENOMEM);
		total += strlen(s);
		free(s);
	}
	p->avg_bytes = (double)total / DOC_POOL;
}

static void pool_release(struct pool *p)
{
	for (int i = 0; i < DOC_POOL; i++)
		json_decref(p->docs[i]);
}

/* Document i's content for version seq (the txn takes its own copy). */
static json_t *pool_doc(struct pool *p, size_t i, size_t seq)
{
	json_t *d = p->docs[i % DOC_POOL];
	if (json_object_set_new(d, "seq", json_integer((json_int_t)seq)))
		die("json_object_set_new", -ENOMEM);
	return d;
}

static void doc_id(char *out, size_t n, size_t i)
{
	snprintf(out, n, "doc-%07zu", i);
}

/* ---- files and directories ---- */

static const char *fs_name(const char *dir)
{
	struct statfs s;
	if (statfs(dir, &s))
		return "unknown";
	switch ((unsigned long)s.f_type) {
	case 0xEF53:
		return "ext4";
	case 0x58465342:
		return "xfs";
	case 0x9123683E:
		return "btrfs";
	case 0x01021994:
		return "tmpfs";
	case 0x794c7630:
		return "overlayfs";
	default:
		return "other";
	}
}

static char *path_cat(const char *a, const char *b)
{
	size_t n = strlen(a) + strlen(b) + 2;
	char *p = malloc(n);
	if (!p)
		die("malloc", -ENOMEM);
	snprintf(p, n, "%s/%s", a, b);
	return p;
}

/* Call fn for every regular file under dir (recursively). */
static void each_file(const char *dir, void (*fn)(void *, const char *),
		      void *ctx)
{
	DIR *d = opendir(dir);
	if (!d)
		die(dir, -errno);
	struct dirent *de;
	while ((de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		char *p = path_cat(dir, de->d_name);
		struct stat st;
		if (lstat(p, &st) == 0) {
			if (S_ISDIR(st.st_mode))
				each_file(p, fn, ctx);
			else if (S_ISREG(st.st_mode))
				fn(ctx, p);
		}
		free(p);
	}
	closedir(d);
}

struct usage {
	size_t files;
	uint64_t bytes, pages, resident;
};

static void usage_file(void *ctx, const char *path)
{
	struct usage *u = ctx;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	struct stat st;
	if (fstat(fd, &st) == 0 && st.st_size > 0) {
		long pg = sysconf(_SC_PAGESIZE);
		size_t len = (size_t)st.st_size;
		size_t np = (len + (size_t)pg - 1) / (size_t)pg;
		void *m = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, 0);
		unsigned char *vec = malloc(np);
		if (m != MAP_FAILED && vec && mincore(m, len, vec) == 0) {
			for (size_t i = 0; i < np; i++)
				u->resident += vec[i] & 1;
		}
		free(vec);
		if (m != MAP_FAILED)
			munmap(m, len);
		u->pages += np;
		u->bytes += len;
	}
	u->files++;
	close(fd);
}

/* Files, bytes and page-cache residency of everything under dir. */
static struct usage dir_usage(const char *dir)
{
	struct usage u = {0};
	each_file(dir, usage_file, &u);
	return u;
}

static void evict_file(void *ctx, const char *path)
{
	(void)ctx;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	fdatasync(fd); /* only clean pages can be dropped */
	posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
	close(fd);
}

static double rss_mb(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	double kb = -1;
	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "VmRSS: %lf kB", &kb) == 1)
			break;
	if (f)
		fclose(f);
	return kb / 1024.0;
}

/* ---- the ledger ---- */

static struct lfs_ledger *open_ledger_seg(const char *dir, bool durable,
					  bool segment, bool create)
{
	struct lfs_ledger_opts o;
	lfs_ledger_opts_init(&o);
	o.durable = durable;
	o.segment = segment;
	o.writer = "bench";
	struct lfs_ledger *l;
	int rc = lfs_ledger_open(&l, dir, key, &o, create);
	if (rc)
		die("lfs_ledger_open", rc);
	return l;
}

static void commit_range(struct lfs_ledger *l, struct pool *p, size_t first,
			 size_t n, size_t seq)
{
	struct lfs_txn *t;
	int rc = lfs_txn_new(&t);
	if (rc)
		die("lfs_txn_new", rc);
	for (size_t i = first; i < first + n; i++) {
		char id[32];
		doc_id(id, sizeof(id), i);
		if ((rc = lfs_txn_put(t, id, pool_doc(p, i, seq + i))))
			die("lfs_txn_put", rc);
	}
	bool committed;
	if ((rc = lfs_ledger_commit(l, t, NULL, &committed)))
		die("lfs_ledger_commit", rc);
	if (!committed)
		die("lfs_ledger_commit (nothing committed)", 0);
	lfs_txn_free(t);
}

static struct lfs_ledger *open_ledger(const char *dir, bool durable,
				      bool create)
{
	return open_ledger_seg(dir, durable, false, create);
}

/* ---- the table ---- */

#define MAX_ROWS 64

struct row {
	char what[64], figure[32], target[16], verdict[10], baseline[80];
	bool heading;
};

static struct row rows[MAX_ROWS];
static size_t nrows;

static void heading(const char *what)
{
	if (nrows == MAX_ROWS)
		return;
	struct row *r = &rows[nrows++];
	memset(r, 0, sizeof(*r));
	r->heading = true;
	snprintf(r->what, sizeof(r->what), "%s", what);
}

/*
 * A figure; target NULL is informative. met is ignored then. baseline may be
 * NULL.
 */
static void add_row(const char *what, const char *figure, const char *target,
		    bool met, const char *baseline)
{
	if (nrows == MAX_ROWS)
		return;
	struct row *r = &rows[nrows++];
	memset(r, 0, sizeof(*r));
	snprintf(r->what, sizeof(r->what), "%s", what);
	snprintf(r->figure, sizeof(r->figure), "%s", figure);
	snprintf(r->target, sizeof(r->target), "%s", target ? target : "-");
	snprintf(r->verdict, sizeof(r->verdict), "%s",
		 target ? (met ? "met" : "NOT met") : "");
	snprintf(r->baseline, sizeof(r->baseline), "%s",
		 baseline ? baseline : "");
}

static const char *fmt(const char *f, double x)
{
	static char bufs[8][64];
	static int k;
	char *b = bufs[k++ % 8];
	snprintf(b, 64, f, x);
	return b;
}

static void print_table(void)
{
	printf("  %-50s %16s %10s %-8s %s\n", "", "figure", "target", "",
	       "baseline (same run)");
	for (size_t i = 0; i < nrows; i++) {
		const struct row *r = &rows[i];
		if (r->heading)
			printf("%s\n", r->what);
		else
			printf("  %-50s %16s %10s %-8s %s\n", r->what,
			       r->figure, r->target, r->verdict, r->baseline);
	}
}

/* ---- 1. single-document commits ---- */

/* This process's CPU time (user + system), in seconds. */
static double cpu_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/*
 * Commits per second; *cpu_us (may be NULL) gets the CPU time of a commit,
 * which other processes on a loaded machine disturb far less than the
 * rate.
 */
static double commit_rate(const char *dir, struct pool *p, size_t n,
			  bool durable, bool segment, double *sync_secs,
			  double *cpu_us)
{
	struct lfs_ledger *l = open_ledger_seg(dir, durable, segment, true);
	double t0 = lfs_bench_now(), c0 = cpu_now();
	for (size_t i = 0; i < n; i++)
		commit_range(l, p, i, 1, 0);
	double secs = lfs_bench_now() - t0;
	if (cpu_us)
		*cpu_us = (cpu_now() - c0) * 1e6 / (double)n;
	t0 = lfs_bench_now();
	int rc = lfs_ledger_sync(l);
	if (rc)
		die("lfs_ledger_sync", rc);
	*sync_secs = lfs_bench_now() - t0;
	lfs_ledger_close(l);
	return (double)n / secs;
}

/* Write 1 KiB files first .. first + n - 1 in dir, fsyncing each if sync. */
static void write_files(const char *dir, size_t first, size_t n, bool sync)
{
	char data[1024];
	memset(data, 'x', sizeof(data));
	for (size_t i = first; i < first + n; i++) {
		char path[512];
		snprintf(path, sizeof(path), "%s/f%07zu", dir, i);
		int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
			      0600);
		if (fd < 0)
			die(path, -errno);
		if (write(fd, data, sizeof(data)) != (ssize_t)sizeof(data))
			die("write", -EIO);
		if (sync && fsync(fd))
			die("fsync", -errno);
		if (close(fd))
			die("close", -errno);
	}
}

/* One of several threads committing to one ledger, durable. */
struct committer {
	struct lfs_ledger *l;
	struct pool pool; /* its own: pool_doc() changes the documents */
	size_t first, n;
};

static void *committer_main(void *arg)
{
	struct committer *c = arg;
	for (size_t i = 0; i < c->n; i++)
		commit_range(c->l, &c->pool, c->first + i, 1, 0);
	return NULL;
}

/*
 * Commits per second of COMMITTERS threads each committing n single-document
 * transactions, durable, to one ledger with a segment: the group commit
 * (a thread's fdatasync covers what the others appended meanwhile).
 */
static double commit_rate_threads(const char *dir, size_t n)
{
	struct lfs_ledger *l = open_ledger_seg(dir, true, true, true);
	struct committer c[COMMITTERS];
	pthread_t t[COMMITTERS];
	for (int i = 0; i < COMMITTERS; i++) {
		c[i] = (struct committer){
			.l = l, .first = (size_t)i * n, .n = n};
		pool_init(&c[i].pool);
	}
	double t0 = lfs_bench_now();
	for (int i = 0; i < COMMITTERS; i++)
		if (pthread_create(&t[i], NULL, committer_main, &c[i]))
			die("pthread_create", -EAGAIN);
	for (int i = 0; i < COMMITTERS; i++)
		pthread_join(t[i], NULL);
	double secs = lfs_bench_now() - t0;
	for (int i = 0; i < COMMITTERS; i++)
		pool_release(&c[i].pool);
	lfs_ledger_close(l);
	return (double)(n * COMMITTERS) / secs;
}

struct file_writer {
	const char *dir;
	size_t first, n;
};

static void *file_writer_main(void *arg)
{
	struct file_writer *w = arg;
	write_files(w->dir, w->first, w->n, true);
	return NULL;
}

/* The baseline of the group-commit row: COMMITTERS threads each writing
 * and fsyncing n 1 KiB files of their own in dir. */
static double file_rate_threads(const char *dir, size_t n)
{
	struct file_writer w[COMMITTERS];
	pthread_t t[COMMITTERS];
	double t0 = lfs_bench_now();
	for (int i = 0; i < COMMITTERS; i++) {
		w[i] = (struct file_writer){
			.dir = dir, .first = (size_t)i * n, .n = n};
		if (pthread_create(&t[i], NULL, file_writer_main, &w[i]))
			die("pthread_create", -EAGAIN);
	}
	for (int i = 0; i < COMMITTERS; i++)
		pthread_join(t[i], NULL);
	return (double)(n * COMMITTERS) / (lfs_bench_now() - t0);
}

/* Files per second for n 1 KiB files written in dir. */
static double file_rate(const char *dir, size_t n, bool sync, double *cpu_us)
{
	double t0 = lfs_bench_now(), c0 = cpu_now();
	write_files(dir, 0, n, sync);
	double secs = lfs_bench_now() - t0;
	if (cpu_us)
		*cpu_us = (cpu_now() - c0) * 1e6 / (double)n;
	return (double)n / secs;
}

/*
 * Commits per second if a commit cost only its file operations: a CAR and a
 * head record each written as a temporary file and renamed into place, and
 * the previous head record unlinked (what write_atomic and set_head do,
 * without fsync).
 */
static double pattern_rate(const char *dir, size_t n, size_t car_bytes)
{
	char *cars = path_cat(dir, "car"), *heads = path_cat(dir, "head");
	if (mkdir(cars, 0700) || mkdir(heads, 0700))
		die(dir, -errno);
	char data[8192], prev[512] = "";
	memset(data, 'x', sizeof(data));
	if (car_bytes > sizeof(data))
		car_bytes = sizeof(data);
	double t0 = lfs_bench_now();
	for (size_t i = 0; i < n; i++) {
		char tmp[512], final[512];
		for (int k = 0; k < 2; k++) {
			const char *d = k ? heads : cars;
			size_t len = k ? 155 : car_bytes;
			snprintf(tmp, sizeof(tmp), "%s/.tmp-%08x", d,
				 randombytes_random());
			snprintf(final, sizeof(final), "%s/f%07zu", d, i);
			int fd = open(tmp,
				      O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC,
				      0600);
			if (fd < 0)
				die(tmp, -errno);
			if (write(fd, data, len) != (ssize_t)len)
				die("write", -EIO);
			if (close(fd) || rename(tmp, final))
				die(final, -errno);
		}
		if (*prev && unlink(prev))
			die(prev, -errno);
		snprintf(prev, sizeof(prev), "%s", final);
	}
	double rate = (double)n / (lfs_bench_now() - t0);
	free(cars);
	free(heads);
	return rate;
}

/* ---- 3-5. a fresh process opens the big ledger ---- */

struct open_result {
	double open_s, rss_before, rss_after, get_p50_us, get_p99_us,
		gets_total_s, resident_pct;
};

static int child_main(const char *dir, size_t ndocs, size_t ngets, bool cold)
{
	if (cold)
		each_file(dir, evict_file, NULL);
	struct usage u = dir_usage(dir);
	double resident =
		u.pages ? 100.0 * (double)u.resident / (double)u.pages : 0;
	double rss0 = rss_mb();
	struct lfs_arena a;
	char id[32];

	double t0 = lfs_bench_now();
	struct lfs_ledger *l = open_ledger(dir, false, false);
	lfs_arena_init(&a, 0);
	json_t *doc;
	doc_id(id, sizeof(id), rng() % ndocs);
	int rc = lfs_ledger_get(l, NULL, id, NULL, &a, &doc);
	if (rc)
		die("first lfs_ledger_get", rc);
	double open_s = lfs_bench_now() - t0;
	json_decref(doc);
	lfs_arena_release(&a);

	double *lat = malloc(ngets * sizeof(*lat));
	if (!lat)
		die("malloc", -ENOMEM);
	double g0 = lfs_bench_now();
	for (size_t i = 0; i < ngets; i++) {
		doc_id(id, sizeof(id), rng() % ndocs);
		double t = lfs_bench_now();
		lfs_arena_init(&a, 0);
		if ((rc = lfs_ledger_get(l, NULL, id, NULL, &a, &doc)))
			die("lfs_ledger_get", rc);
		json_decref(doc);
		lfs_arena_release(&a);
		lat[i] = (lfs_bench_now() - t) * 1e6;
	}
	double gets_total = lfs_bench_now() - g0;
	double rss1 = rss_mb();
	double p50 = quantile(lat, ngets, 0.5),
	       p99 = quantile(lat, ngets, 0.99);
	free(lat);
	lfs_ledger_close(l);
	printf("%.6f %.3f %.3f %.3f %.3f %.6f %.2f\n", open_s, rss0, rss1, p50,
	       p99, gets_total, resident);
	return 0;
}

static struct open_result run_child(const char *dir, size_t ndocs, size_t ngets,
				    bool cold)
{
	int fds[2];
	if (pipe(fds))
		die("pipe", -errno);
	pid_t pid = fork();
	if (pid < 0)
		die("fork", -errno);
	if (pid == 0) {
		close(fds[0]);
		if (dup2(fds[1], STDOUT_FILENO) < 0)
			_exit(1);
		close(fds[1]);
		char nd[32], ng[32];
		snprintf(nd, sizeof(nd), "%zu", ndocs);
		snprintf(ng, sizeof(ng), "%zu", ngets);
		execl("/proc/self/exe", prog, "--child", dir, nd, ng,
		      cold ? "cold" : "hot", (char *)NULL);
		_exit(127);
	}
	close(fds[1]);
	FILE *f = fdopen(fds[0], "r");
	struct open_result r = {0};
	int got = f ? fscanf(f, "%lf %lf %lf %lf %lf %lf %lf", &r.open_s,
			     &r.rss_before, &r.rss_after, &r.get_p50_us,
			     &r.get_p99_us, &r.gets_total_s, &r.resident_pct)
		    : 0;
	if (f)
		fclose(f);
	int status;
	if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) ||
	    WEXITSTATUS(status) != 0 || got != 7)
		die("the open/get child process", 0);
	return r;
}

static void open_rows(const char *when, const struct open_result *hot,
		      const struct open_result *cold, bool open_target,
		      size_t ngets)
{
	char what[64], fig[32], base[80];
	snprintf(what, sizeof(what), "  %s, in a fresh process:", when);
	heading(what);
	const char *target = open_target ? "< 0.5 s" : NULL;
	add_row("  open + first get, hot", fmt("%.3f s", hot->open_s), target,
		hot->open_s < TARGET_OPEN,
		fmt("%.0f%% of the files' pages resident", hot->resident_pct));
	add_row("  open + first get, cold", fmt("%.3f s", cold->open_s), target,
		cold->open_s < TARGET_OPEN,
		fmt("%.0f%% resident after fadvise(DONTNEED)",
		    cold->resident_pct));
	snprintf(what, sizeof(what), "  get median / p99 (%zu random), hot",
		 ngets);
	snprintf(fig, sizeof(fig), "%.0f / %.0f us", hot->get_p50_us,
		 hot->get_p99_us);
	snprintf(base, sizeof(base), "all %zu gets: %.2f s", ngets,
		 hot->gets_total_s);
	add_row(what, fig, NULL, false, base);
	snprintf(fig, sizeof(fig), "%.0f / %.0f us", cold->get_p50_us,
		 cold->get_p99_us);
	snprintf(base, sizeof(base), "all %zu gets: %.2f s", ngets,
		 cold->gets_total_s);
	add_row("  get median / p99, cold", fig, NULL, false, base);
	add_row("  VmRSS after the gets, hot", fmt("%.1f MB", hot->rss_after),
		"< 100 MB", hot->rss_after < TARGET_RSS,
		fmt("%.1f MB before lfs_ledger_open", hot->rss_before));
	add_row("  VmRSS after the gets, cold", fmt("%.1f MB", cold->rss_after),
		"< 100 MB", cold->rss_after < TARGET_RSS, NULL);
}

/* ---- 6. diff ---- */

static int count_diff(void *ctx, const struct lfs_index_entry *ea,
		      const struct lfs_index_entry *eb)
{
	(void)ea;
	(void)eb;
	(*(size_t *)ctx)++;
	return 0;
}

static void head_root(struct lfs_ledger *l, struct lfs_cid *out)
{
	struct lfs_cid *h;
	size_t n;
	int rc = lfs_ledger_heads(l, &h, &n);
	if (rc || n != 1)
		die("lfs_ledger_heads (one head)", rc);
	if ((rc = lfs_ledger_event_root(l, &h[0], out)))
		die("lfs_ledger_event_root", rc);
	free(h);
}

static void diff_bench(struct lfs_ledger *l, struct pool *p, size_t ndocs,
		       double *first_ms, double *median_ms)
{
	struct lfs_cid a, b;
	head_root(l, &a);
	struct lfs_txn *t;
	int rc = lfs_txn_new(&t);
	if (rc)
		die("lfs_txn_new", rc);
	for (int i = 0; i < DIFF_CHANGES; i++) {
		char id[32];
		size_t k = (size_t)i * (ndocs / DIFF_CHANGES) + rng() % 7;
		doc_id(id, sizeof(id), k);
		if ((rc = lfs_txn_put(t, id, pool_doc(p, k, 999999999))))
			die("lfs_txn_put", rc);
	}
	if ((rc = lfs_ledger_commit(l, t, NULL, NULL)))
		die("lfs_ledger_commit", rc);
	lfs_txn_free(t);
	head_root(l, &b);
	const struct lfs_index *ix = lfs_ledger_index(l);
	double ms[DIFF_REPEATS];
	for (int i = 0; i < DIFF_REPEATS; i++) {
		size_t n = 0;
		double t0 = lfs_bench_now();
		if ((rc = lfs_index_diff(ix, &a, &b, count_diff, &n)))
			die("lfs_index_diff", rc);
		ms[i] = (lfs_bench_now() - t0) * 1e3;
		if (n != DIFF_CHANGES)
			die("lfs_index_diff (wrong number of changes)", 0);
	}
	*first_ms = ms[0];
	*median_ms = quantile(ms, DIFF_REPEATS, 0.5);
}

/* ---- main ---- */

static char *make_workdir(const char *base)
{
	char *tmpl = path_cat(base, "lfs-bench-XXXXXX");
	if (!mkdtemp(tmpl))
		die(tmpl, -errno);
	return tmpl;
}

static char *subdir(const char *top, const char *name)
{
	char *p = path_cat(top, name);
	if (mkdir(p, 0700))
		die(p, -errno);
	return p;
}

int main(int argc, char **argv)
{
	if (sodium_init() < 0) {
		fprintf(stderr, "%s: sodium_init failed\n", prog);
		return 1;
	}
	memset(key, 0x42, sizeof(key));
	if (argc == 6 && !strcmp(argv[1], "--child"))
		return child_main(argv[2], strtoul(argv[3], NULL, 10),
				  strtoul(argv[4], NULL, 10),
				  !strcmp(argv[5], "cold"));

	setvbuf(stdout, NULL, _IOLBF, 0);
	bool quick = false, keep = false;
	const char *base = "/var/tmp";
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--quick")) {
			quick = true;
		} else if (!strcmp(argv[i], "--keep")) {
			keep = true;
		} else if (!strcmp(argv[i], "-d") && i + 1 < argc) {
			base = argv[++i];
		} else {
			fprintf(stderr,
				"usage: %s [--quick] [--keep] [-d DIR]\n",
				argv[0]);
			return 2;
		}
	}
	size_t div = quick ? 10 : 1;
	size_t n_fast = 20000 / div, n_durable = 500 / div;
	size_t n_bulk = 100000 / div, n_big = 100000 / div;
	size_t n_gets = 10000 / div;

	char *top = make_workdir(base);
	if (!keep)
		workdir = top;
	char *d_fast = subdir(top, "commits-nodurable");
	char *d_durable = subdir(top, "commits-durable");
	char *d_dseg = subdir(top, "commits-durable-segment");
	char *d_group = subdir(top, "commits-durable-threads");
	char *d_fgroup = subdir(top, "files-fsync-threads");
	char *d_files = subdir(top, "files-nosync");
	char *d_fsync = subdir(top, "files-fsync");
	char *d_pattern = subdir(top, "files-pattern");
	char *d_bulk = subdir(top, "bulk");
	char *d_big = subdir(top, "big");
	double t_start = lfs_bench_now();

	struct pool pool;
	pool_init(&pool);

	/* 1 */
	progress("1. %zu single-document commits, durable=false", n_fast);
	double sync_fast, sync_durable, sync_dseg, cpu_fast, cpu_files;
	double r_fast = commit_rate(d_fast, &pool, n_fast, false, false,
				    &sync_fast, &cpu_fast);
	progress("1. %zu single-document commits, durable=true", n_durable);
	double r_durable = commit_rate(d_durable, &pool, n_durable, true, false,
				       &sync_durable, NULL);
	progress("1. %zu single-document commits, durable=true, segment",
		 n_durable);
	double r_dseg = commit_rate(d_dseg, &pool, n_durable, true, true,
				    &sync_dseg, NULL);
	progress("1. %d threads of %zu single-document commits, durable=true, "
		 "segment",
		 COMMITTERS, n_durable);
	double r_group = commit_rate_threads(d_group, n_durable);
	double f_group = file_rate_threads(d_fgroup, n_durable);
	struct usage u_fast = dir_usage(d_fast);
	double f_nosync = file_rate(d_files, n_fast, false, &cpu_files);
	double f_fsync = file_rate(d_fsync, n_durable, true, NULL);
	double f_pattern = pattern_rate(
		d_pattern, n_fast, (size_t)(u_fast.bytes / (u_fast.files + 1)));

	/* 2 */
	progress("2. bulk put of %zu documents in txns of %d", n_bulk,
		 BULK_TXN);
	struct lfs_ledger *l = open_ledger(d_bulk, false, true);
	double t0 = lfs_bench_now();
	for (size_t i = 0; i < n_bulk; i += BULK_TXN)
		commit_range(l, &pool, i,
			     n_bulk - i < BULK_TXN ? n_bulk - i : BULK_TXN, 0);
	int rc = lfs_ledger_sync(l);
	if (rc)
		die("lfs_ledger_sync", rc);
	double t_bulk = lfs_bench_now() - t0;
	lfs_ledger_close(l);
	struct usage u_bulk = dir_usage(d_bulk);

	/* 3 */
	size_t n_commits = n_big / DOCS_PER_COMMIT;
	progress("3. building %zu documents with %zu commits of %d", n_big,
		 n_commits, DOCS_PER_COMMIT);
	l = open_ledger(d_big, false, true);
	t0 = lfs_bench_now();
	double t_half = 0;
	for (size_t c = 0; c < n_commits; c++) {
		commit_range(l, &pool, c * DOCS_PER_COMMIT, DOCS_PER_COMMIT, 0);
		if (c + 1 == n_commits / 2)
			t_half = lfs_bench_now() - t0;
	}
	double t_build = lfs_bench_now() - t0;
	t0 = lfs_bench_now();
	lfs_ledger_close(l);
	double t_build_close = lfs_bench_now() - t0;
	struct usage u_big = dir_usage(d_big);

	progress("3. opening it in fresh processes (hot, cold)");
	struct open_result pre_hot = run_child(d_big, n_big, n_gets, false);
	struct open_result pre_cold = run_child(d_big, n_big, n_gets, true);

	progress("3. compacting");
	t0 = lfs_bench_now();
	l = open_ledger(d_big, false, false);
	double t_reopen = lfs_bench_now() - t0;
	t0 = lfs_bench_now();
	int compact_rc = lfs_ledger_compact(l, NULL);
	double t_compact = lfs_bench_now() - t0;
	lfs_ledger_close(l);
	struct usage u_compact = dir_usage(d_big);
	struct open_result post_hot = {0}, post_cold = {0};
	if (compact_rc) {
		progress("lfs_ledger_compact failed: %s; carrying on without",
			 strerror(-compact_rc));
	} else {
		progress("3. opening the compacted ledger in fresh processes");
		post_hot = run_child(d_big, n_big, n_gets, false);
		post_cold = run_child(d_big, n_big, n_gets, true);
	}

	/* 6 */
	progress("6. diff of two roots %d documents apart", DIFF_CHANGES);
	l = open_ledger(d_big, false, false);
	double diff_first, diff_median;
	diff_bench(l, &pool, n_big, &diff_first, &diff_median);
	lfs_ledger_close(l);

	double t_total = lfs_bench_now() - t_start;

	/* the table */
	char what[64], base_s[80], fig[32];
	snprintf(what, sizeof(what),
		 "1. single-document commits (%zu, ~%.0f B JSON)", n_fast,
		 pool.avg_bytes);
	heading(what);
	snprintf(base_s, sizeof(base_s), "write+close 1 KiB: %.0f files/s",
		 f_nosync);
	add_row("durable=false", fmt("%.0f commits/s", r_fast), ">= 20000/s",
		r_fast >= TARGET_COMMITS, base_s);
	add_row("  CPU time (user + system) per commit",
		fmt("%.1f us", cpu_fast), NULL, false,
		fmt("write+close: %.1f us per file", cpu_files));
	add_row("  file ops of a file-per-commit commit alone",
		fmt("%.0f commits/s", f_pattern), NULL, false,
		"the same files, no engine");
	add_row("  then lfs_ledger_sync", fmt("%.2f s", sync_fast), NULL, false,
		NULL);
	snprintf(base_s, sizeof(base_s),
		 "write+fsync+close 1 KiB: %.0f files/s", f_fsync);
	snprintf(what, sizeof(what), "durable=true, segment (%zu)", n_durable);
	add_row(what, fmt("%.0f commits/s", r_dseg), ">= 1000/s",
		r_dseg >= TARGET_DURABLE, base_s);
	snprintf(what, sizeof(what), "durable=true, file each (%zu)",
		 n_durable);
	add_row(what, fmt("%.0f commits/s", r_durable), NULL, false, base_s);
	snprintf(base_s, sizeof(base_s),
		 "%d threads write+fsync+close: %.0f files/s", COMMITTERS,
		 f_group);
	snprintf(what, sizeof(what), "durable=true, segment, %d threads (%zu)",
		 COMMITTERS, n_durable * COMMITTERS);
	add_row(what, fmt("%.0f commits/s", r_group), ">= 1000/s",
		r_group >= TARGET_DURABLE, base_s);
	snprintf(fig, sizeof(fig), "%.1f KB",
		 (double)u_fast.bytes / 1e3 / (double)n_fast);
	add_row("  on disk per commit (durable=false run)", fig, NULL, false,
		fmt("%.0f files", (double)u_fast.files));

	snprintf(what, sizeof(what), "2. bulk put of %zu documents, txns of %d",
		 n_bulk, BULK_TXN);
	heading(what);
	add_row("docs/s (durable=false, sync included)",
		fmt("%.0f docs/s", (double)n_bulk / t_bulk), NULL, false, NULL);
	add_row("total", fmt("%.2f s", t_bulk), NULL, false,
		fmt("%.1f MB on disk", (double)u_bulk.bytes / 1e6));

	snprintf(what, sizeof(what),
		 "3-5. %zu documents in %zu commits of %d (durable=false)",
		 n_big, n_commits, DOCS_PER_COMMIT);
	heading(what);
	snprintf(base_s, sizeof(base_s), "%.1f s; first half %.1f s", t_build,
		 t_half);
	add_row("build", fmt("%.0f commits/s", (double)n_commits / t_build),
		NULL, false, base_s);
	add_row("  then close (sync)", fmt("%.2f s", t_build_close), NULL,
		false, NULL);
	snprintf(base_s, sizeof(base_s), "%zu files", u_big.files);
	add_row("  on disk", fmt("%.1f MB", (double)u_big.bytes / 1e6), NULL,
		false, base_s);
	open_rows("before compaction", &pre_hot, &pre_cold, false, n_gets);
	add_row("lfs_ledger_open alone (no get), warm process",
		fmt("%.3f s", t_reopen), NULL, false, NULL);
	if (compact_rc) {
		snprintf(fig, sizeof(fig), "FAILED: %s", strerror(-compact_rc));
		add_row("lfs_ledger_compact", fig, NULL, false,
			fmt("after %.2f s", t_compact));
	} else {
		add_row("lfs_ledger_compact", fmt("%.2f s", t_compact), NULL,
			false, NULL);
	}
	snprintf(base_s, sizeof(base_s), "%zu files", u_compact.files);
	add_row("  on disk after",
		fmt("%.1f MB", (double)u_compact.bytes / 1e6), NULL, false,
		base_s);
	if (compact_rc) {
		heading("  after compaction:");
		add_row("  open + first get", "not measured", "< 0.5 s", false,
			"compaction failed");
		add_row("  VmRSS after the gets", "not measured", "< 100 MB",
			false, "compaction failed");
	} else {
		open_rows("after compaction", &post_hot, &post_cold, true,
			  n_gets);
	}

	snprintf(what, sizeof(what), "6. diff, roots %d documents apart",
		 DIFF_CHANGES);
	heading(what);
	snprintf(what, sizeof(what), "lfs_index_diff, median of %d",
		 DIFF_REPEATS);
	add_row(what, fmt("%.3f ms", diff_median), "< 5 ms",
		diff_median < TARGET_DIFF,
		fmt("first (cold cache): %.3f ms", diff_first));

	char host[64] = "";
	gethostname(host, sizeof(host) - 1);
	printf("ledgerfs ledger benchmarks%s: %ld CPUs, %s\n",
	       quick ? " (--quick: sizes / 10)" : "",
	       sysconf(_SC_NPROCESSORS_ONLN), host);
	printf("work dir %s on %s (%s; page cache hot unless marked cold)\n\n",
	       top, fs_name(top),
	       strcmp(fs_name(top), "tmpfs") ? "a disk" : "NOT a disk");
	print_table();
	printf("\ntotal %.1f s\n", t_total);

	pool_release(&pool);
	if (keep)
		printf("kept %s\n", top);
	else
		lfs_rm_tree(top);
	free(d_fast);
	free(d_durable);
	free(d_dseg);
	free(d_group);
	free(d_fgroup);
	free(d_files);
	free(d_fsync);
	free(d_pattern);
	free(d_bulk);
	free(d_big);
	free(top);
	return 0;
}
