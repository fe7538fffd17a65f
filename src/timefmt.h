/*
 * timefmt: the one way ledgerfs writes a time for people and JSON output:
 * ISO 8601 in UTC with microseconds, "2026-12-03T11:00:31.123456Z"; and
 * the one way it reads the clock of deadlines and timeouts.
 */
#ifndef LFS_TIMEFMT_H
#define LFS_TIMEFMT_H

#include <stdint.h>
#include <time.h>

#define LFS_TIME_ISO_MAX 40 /* with the NUL; "@<digits>us" included */

/*
 * Format us (microseconds since the epoch, may be negative) into out.
 * A time gmtime() cannot represent comes out as "@<us>us".
 */
void lfs_time_iso(char out[LFS_TIME_ISO_MAX], int64_t us);

/* CLOCK_MONOTONIC in microseconds and in milliseconds. */
static inline int64_t lfs_mono_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static inline int64_t lfs_mono_ms(void)
{
	return lfs_mono_us() / 1000;
}

#endif
