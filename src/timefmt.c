#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "timefmt.h"

#include <inttypes.h>
#include <stdio.h>
#include <time.h>

void lfs_time_iso(char out[LFS_TIME_ISO_MAX], int64_t us)
{
	int64_t s = us / 1000000, f = us % 1000000;
	if (f < 0) {
		f += 1000000;
		s--;
	}
	time_t tt = (time_t)s;
	struct tm tm;
	size_t n;
	if (!gmtime_r(&tt, &tm) || tm.tm_year + 1900 > 9999 ||
	    tm.tm_year + 1900 < 0 ||
	    !(n = strftime(out, LFS_TIME_ISO_MAX, "%Y-%m-%dT%H:%M:%S", &tm))) {
		snprintf(out, LFS_TIME_ISO_MAX, "@%" PRId64 "us", us);
		return;
	}
	snprintf(out + n, LFS_TIME_ISO_MAX - n, ".%06dZ", (int)f);
}
