/*
 * What the benchmarks share: a monotonic clock in seconds and the median
 * of a run of timings. Header only.
 */
#ifndef LFS_BENCH_UTIL_H
#define LFS_BENCH_UTIL_H

#include <stddef.h>
#include <stdlib.h>
#include <time.h>

static inline double lfs_bench_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* qsort order of doubles. */
static inline int lfs_bench_cmp_double(const void *x, const void *y)
{
	double a = *(const double *)x, b = *(const double *)y;
	return a < b ? -1 : a > b;
}

/* The median of t[0..n) (which gets sorted); of an even n, the mean of
 * the middle two. */
static inline double lfs_bench_median(double *t, size_t n)
{
	qsort(t, n, sizeof(*t), lfs_bench_cmp_double);
	return n % 2 ? t[n / 2] : (t[n / 2 - 1] + t[n / 2]) / 2;
}

#endif
