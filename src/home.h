/*
 * home: this machine's ledgerfs directory — where ledgers, keys and the
 * replica's identity live.
 *
 *   HOME/                   $LEDGERFS_HOME, else $XDG_DATA_HOME/ledgerfs,
 *                           else ~/.local/share/ledgerfs (mode 0700)
 *   HOME/writer             this replica's writer id (16 hex chars, made once)
 *   HOME/keys/<name>.key    keybag: one 32-byte key per ledger, 64 hex chars,
 *                           mode 0600; never logged, never sent to a store
 *   HOME/ledgers/<name>/    one blockstore per ledger (car/, head/)
 *
 * Ledger names are directory names: 1..LFS_LEDGER_NAME_MAX bytes of UTF-8
 * without '/', NUL or a leading '.'.
 *
 * A key travels between machines as a share string, "lfskey1:" followed by
 * the 64 hex digits of the key: `ledgerfs key export NAME` prints it,
 * `ledgerfs key import NAME STRING` stores it.
 *
 * Errors: -EINVAL bad name or key text, -ENOENT no such ledger or key,
 * -EEXIST the ledger (or its key) exists already, -EACCES a key file that
 * others can read (refused: fix its mode), file system errors.
 */
#ifndef LFS_HOME_H
#define LFS_HOME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "envelope.h"
#include "index.h"

#define LFS_LEDGER_NAME_MAX  200
#define LFS_KEY_SHARE_PREFIX "lfskey1:"

struct lfs_home {
	char *dir;
	char writer[LFS_WRITER_MAX + 1];
};

/*
 * Find (dir NULL: from the environment as above) and create if needed the
 * home directory, its subdirectories and the writer id.
 */
int lfs_home_open(struct lfs_home *out, const char *dir);
void lfs_home_release(struct lfs_home *h);

/* True when name is acceptable as a ledger name. */
bool lfs_home_valid_name(const char *name);

/* malloc'd path of HOME/ledgers/<name>. */
char *lfs_home_ledger_dir(const struct lfs_home *h, const char *name);

/* List ledger names (malloc'd array of malloc'd strings; sorted). */
int lfs_home_list(char ***out, size_t *out_n, const struct lfs_home *h);
void lfs_home_list_free(char **names, size_t n);

/*
 * Create a new ledger: a fresh random key in the keybag and an empty store.
 * -EEXIST when either exists.
 */
int lfs_home_create(const struct lfs_home *h, const char *name);

/* Read a ledger's key. -ENOENT when the keybag has none ("no key"). */
int lfs_home_key(uint8_t out[LFS_KEY_BYTES], const struct lfs_home *h,
		 const char *name);

/*
 * Store a key for name (import). -EEXIST when a different key is there
 * already; storing the same key again is fine.
 */
int lfs_home_set_key(const struct lfs_home *h, const char *name,
		     const uint8_t key[LFS_KEY_BYTES]);

/* Share-string form of a key, and back. out holds 8 + 64 + 1 bytes. */
void lfs_key_to_share(char out[73], const uint8_t key[LFS_KEY_BYTES]);
int lfs_key_from_share(uint8_t out[LFS_KEY_BYTES], const char *s);

#endif
