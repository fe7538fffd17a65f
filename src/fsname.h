/*
 * fsname: how document ids become file names and paths, and back.
 *
 * Two spellings. A ledger's mount shows ids as paths, with folders (the
 * second half of this header), and so do the Fireproof mount and `ledgerfs
 * import` and `export`. The flat spelling below, one file name per id, is
 * what ledgers were shown as before folders: the mount still opens those
 * names at a ledger's top, and `import` reads them there.
 *
 * A flat name is "<escaped id>.json". Escaping turns every byte that
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
/* A document's path in a ledger: 1024 bytes of id, each escaped. */
#define LFS_FSPATH_MAX 4095

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

/*
 * Paths: how the mount of a ledger shows ids, with folders.
 *
 * An id is cut into segments at every '/' that has a byte other than '/'
 * on both sides; those are the path's separators. Every other '/' (first
 * or last byte, or next to another '/') is written %2F, as before folders.
 * Then each segment is escaped as a flat name is ('%' as %25, a '.' that
 * starts the segment as %2E, so no segment is hidden, "." or ".."), a
 * folder segment (every one but the last) ending in ".json" has that '.'
 * written %2E (a folder never looks like a document), and ".json" is
 * appended to the last one:
 *
 *   notes/2026/a  -> notes/2026/a.json      a//b  -> a%2F%2Fb.json
 *   /a            -> %2Fa.json              a/    -> a%2F.json
 *   a/./b         -> a/%2E/b.json           x.json/y -> x%2Ejson/y.json
 *   a/.git/b      -> a/%2Egit/b.json        50%/x -> 50%25/x.json
 *
 * Each path has exactly one id and each id one path: a path whose decoding
 * re-encodes to another spelling is not a document's (a scratch name). A
 * folder segment is a name that is the spelling of an id segment (not
 * starting with '.', no stray '%', not ending in ".json"); any other
 * directory (".git", ".cache") is a scratch directory.
 */

/*
 * Write the path of id into out. Returns its length, or -ENAMETOOLONG when
 * a segment would be longer than LFS_FSNAME_MAX bytes (such a document
 * exists in the ledger but has no path).
 */
int lfs_fsname_path_from_id(char out[LFS_FSPATH_MAX + 1], const char *id);

/*
 * If path (relative to the ledger, no leading '/') is a document's path,
 * write its id into out (outsize bytes) and return true.
 */
bool lfs_fsname_path_to_id(char *out, size_t outsize, const char *path);

/*
 * If path is a folder's (every segment a folder segment), write the id
 * prefix the folder stands for, without its final '/', into out and
 * return true. "notes/2026" -> "notes/2026"; "a/%2Egit" -> "a/.git" is not
 * a folder (a scratch directory): false.
 */
bool lfs_fsname_folder_to_prefix(char *out, size_t outsize, const char *path);

#endif
