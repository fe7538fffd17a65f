/*
 * bench_sync: the replication benchmarks of scripts/bench-sync.
 *
 *   bench_sync commit HOME LEDGER N [DOCS]
 *                                       N single-document commits (no fsync)
 *                                       over DOCS ids (default 1000)
 *   bench_sync push HOME URL            one sync round, timed: the push of
 *                                       everything not yet on the remote
 *   bench_sync propagate A B N          N writes into mount A, each timed
 *                                       until its content reads on mount B;
 *                                       prints the median and p90 in ms
 * Only loopback stores.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <sodium.h>

#include "home.h"
#include "ledger.h"
#include "sync.h"

#include "bench_util.h"

static struct lfs_ledger *open_ledger(struct lfs_home *h, const char *name)
{
	struct lfs_ledger_opts o;
	lfs_ledger_opts_init(&o);
	o.durable = false;
	struct lfs_ledger *l = NULL;
	bool key_error = false;
	int rc = lfs_home_open_ledger(&l, h, name, &o, true, &key_error);
	if (rc && key_error && lfs_home_create(h, name) == 0)
		rc = lfs_home_open_ledger(&l, h, name, &o, true, &key_error);
	return rc ? NULL : l;
}

static int commit(const char *home, const char *name, long n, long docs)
{
	struct lfs_home h;
	if (lfs_home_open(&h, home))
		return 1;
	struct lfs_ledger *l = open_ledger(&h, name);
	if (!l)
		return 1;
	double t0 = lfs_bench_now();
	for (long i = 0; i < n; i++) {
		json_t *doc = json_pack("{s:I,s:s}", "i", (json_int_t)i, "pad",
					"0123456789abcdef0123456789abcdef");
		char id[32];
		snprintf(id, sizeof(id), "d%ld", i % docs);
		struct lfs_txn *t;
		lfs_txn_new(&t);
		lfs_txn_put(t, id, doc);
		json_decref(doc);
		if (lfs_ledger_commit(l, t, NULL, NULL))
			return 1;
		lfs_txn_free(t);
	}
	lfs_ledger_sync(l);
	printf("committed %ld in %.2f s\n", n, lfs_bench_now() - t0);
	lfs_ledger_close(l);
	lfs_home_release(&h);
	return 0;
}

struct one {
	struct lfs_home *home;
	struct lfs_ledger *l;
};

static struct lfs_ledger *provide(void *ctx, const char *name)
{
	struct one *o = ctx;
	if (!o->l)
		o->l = open_ledger(o->home, name);
	return o->l;
}

static int push(const char *home, const char *url, long commits)
{
	struct lfs_home h;
	if (lfs_home_open(&h, home))
		return 1;
	struct one o = {.home = &h};
	struct lfs_sync_hooks hooks = {.ledger = provide, .ctx = &o};
	struct lfs_sync *s;
	if (lfs_sync_new(&s, &h, url, &hooks))
		return 1;
	double t0 = lfs_bench_now();
	int rc = lfs_sync_round(s, "bench");
	double dt = lfs_bench_now() - t0;
	printf("push: %ld commits in %.2f s = %.0f commits/s (round %s)\n",
	       commits, dt, (double)commits / dt, rc ? strerror(-rc) : "ok");
	lfs_sync_free(s);
	lfs_ledger_close(o.l);
	lfs_home_release(&h);
	return rc ? 1 : 0;
}

static int propagate(const char *a, const char *b, int n)
{
	double *t = calloc((size_t)n, sizeof(*t));
	for (int i = 0; i < n; i++) {
		char pa[600], pb[600], body[128];
		snprintf(pa, sizeof(pa), "%s/p%d.json", a, i);
		snprintf(pb, sizeof(pb), "%s/p%d.json", b, i);
		int len = snprintf(body, sizeof(body), "{\"n\": %d}", i);
		double t0 = lfs_bench_now();
		int fd = open(pa, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		if (fd < 0 || write(fd, body, (size_t)len) != len || close(fd))
			return 1;
		for (;;) {
			if (access(pb, F_OK) == 0)
				break;
			if (lfs_bench_now() - t0 > 30) {
				fprintf(stderr, "p%d never arrived\n", i);
				return 1;
			}
			usleep(2000);
		}
		t[i] = (lfs_bench_now() - t0) * 1000;
		usleep(100000 + (unsigned)(i * 37 % 300) * 1000);
	}
	qsort(t, (size_t)n, sizeof(*t), lfs_bench_cmp_double);
	printf("propagation: median %.0f ms, p90 %.0f ms, max %.0f ms (%d "
	       "writes)\n",
	       t[n / 2], t[n * 9 / 10], t[n - 1], n);
	free(t);
	return 0;
}

int main(int argc, char **argv)
{
	if (sodium_init() < 0 || curl_global_init(CURL_GLOBAL_DEFAULT))
		return 1;
	if ((argc == 5 || argc == 6) && !strcmp(argv[1], "commit"))
		return commit(argv[2], argv[3], atol(argv[4]),
			      argc == 6 && atol(argv[5]) > 0 ? atol(argv[5])
							     : 1000);
	if (argc == 5 && !strcmp(argv[1], "push"))
		return push(argv[2], argv[3], atol(argv[4]));
	if (argc == 5 && !strcmp(argv[1], "propagate"))
		return propagate(argv[2], argv[3], atoi(argv[4]));
	fprintf(stderr, "usage: bench_sync commit HOME LEDGER N | push HOME "
			"URL COMMITS | propagate DIR_A DIR_B N\n");
	return 2;
}
