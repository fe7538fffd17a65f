/*
 * timefmt: the one way ledgerfs writes a time for people and JSON output:
 * ISO 8601 in UTC with microseconds, "2026-12-03T11:00:31.123456Z".
 */
#ifndef LFS_TIMEFMT_H
#define LFS_TIMEFMT_H

#include <stdint.h>

#define LFS_TIME_ISO_MAX 40 /* with the NUL; "@<digits>us" included */

/*
 * Format us (microseconds since the epoch, may be negative) into out.
 * A time gmtime() cannot represent comes out as "@<us>us".
 */
void lfs_time_iso(char out[LFS_TIME_ISO_MAX], int64_t us);

#endif
