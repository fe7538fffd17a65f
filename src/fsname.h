/*
 * fsname: how document ids become file names and back.
 *
 * A document's file is "<escaped id>.json". Escaping turns every byte that
 * cannot, or should not, stand in a file name into %XX (upper-case hex):
 * '/', NUL, '%' itself, and a '.' at the start of the id (so no document
 * hides as a dot file or collides with "." and ".."). Everything else,
 * including UTF-8, is kept. Each id has exactly one file name: a name whose
 * unescaping re-escapes to something else (e.g. "%41.json" for "A.json",
 * lower-case hex, a stray '%') is not a document name.
 *
 * Every name that is not a document name is a scratch name: editor swap and
 * backup files, temporary files, anything not ending in ".json".
 */
#ifndef LFS_FSNAME_H
#define LFS_FSNAME_H

#include <stdbool.h>
#include <stddef.h>

#define LFS_FSNAME_MAX 255 /* NAME_MAX */

/*
 * If name is a document name, write the id (NUL-terminated) into out
 * (outsize bytes) and return true; otherwise return false.
 */
bool lfs_fsname_to_id(char *out, size_t outsize, const char *name);

/*
 * Write the file name for id into out. Returns the name's length, or
 * -ENAMETOOLONG when it would not fit in LFS_FSNAME_MAX bytes (such a
 * document exists in the ledger but has no file name).
 */
int lfs_fsname_from_id(char out[LFS_FSNAME_MAX + 1], const char *id);

#endif
