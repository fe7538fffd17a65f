#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "fsname.h"

#include <errno.h>
#include <string.h>

static const char hex[] = "0123456789ABCDEF";

static bool must_escape(unsigned char c, size_t pos)
{
	return c == '/' || c == '%' || c == 0 || (pos == 0 && c == '.');
}

int lfs_fsname_from_id(char out[LFS_FSNAME_MAX + 1], const char *id)
{
	size_t n = 0;
	for (size_t i = 0; id[i]; i++) {
		unsigned char c = (unsigned char)id[i];
		size_t need = must_escape(c, i) ? 3 : 1;
		if (n + need + 5 > LFS_FSNAME_MAX)
			return -ENAMETOOLONG;
		if (need == 3) {
			out[n++] = '%';
			out[n++] = hex[c >> 4];
			out[n++] = hex[c & 15];
		} else {
			out[n++] = (char)c;
		}
	}
	memcpy(out + n, ".json", 6);
	return (int)(n + 5);
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

bool lfs_fsname_to_id(char *out, size_t outsize, const char *name)
{
	size_t len = strlen(name);
	if (len <= 5 || strcmp(name + len - 5, ".json") != 0)
		return false;
	len -= 5;
	size_t n = 0;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)name[i];
		if (c == '%') {
			if (i + 2 >= len)
				return false;
			int hi = hexval(name[i + 1]), lo = hexval(name[i + 2]);
			if (hi < 0 || lo < 0)
				return false;
			c = (unsigned char)(hi << 4 | lo);
			if (!must_escape(c, n) || c == 0)
				return false; /* not the one spelling, or NUL */
			i += 2;
		} else if (must_escape(c, n)) {
			return false;
		}
		if (n + 1 >= outsize)
			return false;
		out[n++] = (char)c;
	}
	out[n] = '\0';
	return true;
}
