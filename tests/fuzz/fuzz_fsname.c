/*
 * fsname's paths (issue 11): every id that has a path comes back from it,
 * every path taken as a document's or a folder's is the one spelling of
 * what it decodes to, and nothing overflows on hostile names.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "fsname.h"
#include "fuzz.h"
#include "index.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char in[LFS_FSPATH_MAX + 8], out[LFS_FSPATH_MAX + 1];
	char id[LFS_INDEX_ID_MAX + 1], back[LFS_FSPATH_MAX + 1];
	size_t n = size < LFS_FSPATH_MAX + 4 ? size : LFS_FSPATH_MAX + 4;
	memcpy(in, data, n);
	in[n] = '\0'; /* ids and names hold no NUL: stop at the first */

	/* As an id: its path, if any, gives it back. */
	if (strlen(in) && strlen(in) <= LFS_INDEX_ID_MAX &&
	    lfs_fsname_path_from_id(out, in) > 0) {
		CHECK(lfs_fsname_path_to_id(id, sizeof(id), out));
		CHECK(!strcmp(id, in));
		CHECK(out[0] != '/' && !strstr(out, "//"));
		for (const char *s = out; s; s = strchr(s, '/')) {
			s += *s == '/';
			CHECK(*s != '.');
		}
	}
	/* As a path: a document's decodes to an id that spells it. */
	if (lfs_fsname_path_to_id(id, sizeof(id), in)) {
		CHECK(lfs_fsname_path_from_id(back, id) > 0);
		CHECK(!strcmp(back, in));
	}
	/* As a folder: "<prefix>/x" is a document in it. */
	char prefix[LFS_INDEX_ID_MAX + 1];
	if (lfs_fsname_folder_to_prefix(prefix, sizeof(prefix), in) &&
	    strlen(prefix) + 2 <= LFS_INDEX_ID_MAX) {
		char probe[LFS_INDEX_ID_MAX + 3];
		snprintf(probe, sizeof(probe), "%s/x", prefix);
		CHECK(lfs_fsname_path_from_id(back, probe) > 0);
		CHECK(!strncmp(back, in, strlen(in)) &&
		      !strcmp(back + strlen(in), "/x.json"));
	}
	return 0;
}
