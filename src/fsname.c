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

/* The byte the escape "%XX" at s[i] (s is len bytes) stands for, or -1:
 * cut short, not upper-case hex, or NUL. */
static int escaped_byte(const char *s, size_t i, size_t len)
{
	if (i + 2 >= len)
		return -1;
	int hi = hexval(s[i + 1]), lo = hexval(s[i + 2]);
	return hi < 0 || lo < 0 || (hi == 0 && lo == 0) ? -1 : hi << 4 | lo;
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
			int e = escaped_byte(name, i, len);
			if (e < 0)
				return false;
			c = (unsigned char)e;
			if (!must_escape(c, n))
				return false; /* not the one spelling */
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

/* Is id[i], a '/', a separator of the id's path? */
static bool is_sep(const char *id, size_t i)
{
	return i > 0 && id[i - 1] != '/' && id[i + 1] && id[i + 1] != '/';
}

/* Does the folder segment that ends at id[end] (a separator) end in
 * ".json"? Then the '.' at end - 5 is escaped. */
static bool folder_json_dot(const char *id, size_t i)
{
	if (strncmp(id + i, ".json", 5) != 0 || id[i + 5] != '/')
		return false;
	return is_sep(id, i + 5);
}

int lfs_fsname_path_from_id(char out[LFS_FSPATH_MAX + 1], const char *id)
{
	size_t n = 0, seg = 0; /* seg: where the current segment began */
	bool start = true;
	for (size_t i = 0; id[i]; i++) {
		unsigned char c = (unsigned char)id[i];
		if (c == '/' && is_sep(id, i)) {
			out[n++] = '/';
			seg = n;
			start = true;
			continue;
		}
		bool esc = c == '/' || c == '%' || (start && c == '.') ||
			   (c == '.' && folder_json_dot(id, i));
		start = false;
		if (n - seg + (esc ? 3 : 1) + 5 > LFS_FSNAME_MAX ||
		    n + 3 + 5 > LFS_FSPATH_MAX)
			return -ENAMETOOLONG;
		if (esc) {
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

/* Decode the %XX of path[0..len) into out (outsize bytes), '/' kept as
 * it is. False on a stray or lower-case '%', a NUL, or no room. */
static bool decode(char *out, size_t outsize, const char *path, size_t len)
{
	size_t n = 0;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)path[i];
		if (c == '%') {
			int e = escaped_byte(path, i, len);
			if (e < 0)
				return false;
			c = (unsigned char)e;
			i += 2;
		}
		if (n + 1 >= outsize)
			return false;
		out[n++] = (char)c;
	}
	out[n] = '\0';
	return true;
}

bool lfs_fsname_path_to_id(char *out, size_t outsize, const char *path)
{
	size_t len = strlen(path);
	if (len <= 5 || len > LFS_FSPATH_MAX ||
	    strcmp(path + len - 5, ".json") != 0 || path[len - 6] == '/')
		return false;
	if (!decode(out, outsize, path, len - 5) || !out[0])
		return false;
	char again[LFS_FSPATH_MAX + 1];
	return lfs_fsname_path_from_id(again, out) >= 0 &&
	       strcmp(again, path) == 0;
}

bool lfs_fsname_folder_to_prefix(char *out, size_t outsize, const char *path)
{
	size_t len = strlen(path);
	if (!len || len + 7 > LFS_FSPATH_MAX || outsize < 3)
		return false;
	if (!decode(out, outsize - 2, path, len) || !out[0])
		return false;
	/* The folder's spelling is the path of "<prefix>/x" minus "/x". */
	size_t pl = strlen(out);
	char probe[LFS_FSPATH_MAX + 1], again[LFS_FSPATH_MAX + 1];
	if (pl + 3 > sizeof(probe))
		return false;
	memcpy(probe, out, pl);
	memcpy(probe + pl, "/x", 3);
	int n = lfs_fsname_path_from_id(again, probe);
	return n == (int)len + 7 && !strncmp(again, path, len) &&
	       !strcmp(again + len, "/x.json");
}
