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
 * Files (the writer id, keys) are written to a temporary file (O_EXCL,
 * mode 0600) beside their name, fsynced, and published atomically without
 * replacing an existing file: a reader never sees half a file, and of two
 * processes creating the same file one wins and the other reads its file.
 *
 * Errors: -EINVAL bad name or key text, -ENOENT no such ledger or key,
 * -EEXIST the ledger (or its key) exists already, -EACCES a key file that
 * group or others may read or write, or that another user owns (refused:
 * `chmod 600` it), -EBADMSG a key or writer file that does not hold what it
 * should (damaged), file system errors.
 *
 * Thread rules: a struct lfs_home is read-only after lfs_home_open(); the
 * functions may be called concurrently and from several processes.
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
 * Find (dir NULL: from the environment as above; an empty $LEDGERFS_HOME or
 * a relative $XDG_DATA_HOME is ignored) and create if needed the home
 * directory, its subdirectories and the writer id. On success out->dir is
 * the directory without trailing slashes; release it with
 * lfs_home_release(). -EBADMSG when HOME/writer exists but is not 1 to
 * LFS_WRITER_MAX characters of [0-9A-Za-z._-].
 */
int lfs_home_open(struct lfs_home *out, const char *dir);
void lfs_home_release(struct lfs_home *h);

/* True when name is acceptable as a ledger name. */
bool lfs_home_valid_name(const char *name);

/*
 * malloc'd path of HOME/ledgers/<name> (which may not exist); NULL when name
 * is not valid or memory is short.
 */
char *lfs_home_ledger_dir(const struct lfs_home *h, const char *name);

/*
 * malloc'd path of HOME/ledgerfs.log, where a background mount logs when
 * the machine has no syslog; NULL when memory is short.
 */
char *lfs_home_log_path(const struct lfs_home *h);

/*
 * Claim the home for one mount (an exclusive lock on HOME/mount.lock,
 * held by the returned descriptor until it is closed or the process
 * ends, however it ends). -EBUSY when another mount holds it: a home's
 * drafts, scratch files, sizes and attributes belong to one mount (the
 * command line may run beside it).
 */
int lfs_home_lock_mount(const struct lfs_home *h);

/* malloc'd path of HOME/keys/<name>.key (which may not exist); NULL as above.
 */
char *lfs_home_key_path(const struct lfs_home *h, const char *name);

/*
 * malloc'd path of HOME/state/<name>/<file>, this machine's replication and
 * mount state for a ledger (file "" for the directory itself); NULL as
 * above.
 */
char *lfs_home_state_path(const struct lfs_home *h, const char *name,
			  const char *file);

struct lfs_ledger;
struct lfs_ledger_opts;

/*
 * Open ledger name of this home: its directory, its key and this home's
 * writer id (which replaces opts->writer; opts NULL: the defaults of
 * lfs_ledger_opts_init). Returns 0; a key error as lfs_home_key() says,
 * with *out_key_error set (so a caller can tell "no key" from "no
 * ledger"); or lfs_ledger_open()'s error (-ENOENT when the ledger is not
 * here and create is not set).
 */
int lfs_home_open_ledger(struct lfs_ledger **out, const struct lfs_home *h,
			 const char *name, const struct lfs_ledger_opts *opts,
			 bool create, bool *out_key_error);

/*
 * List ledger names: the directories under HOME/ledgers with valid names,
 * whether or not this machine has their key (malloc'd array of malloc'd
 * strings, sorted bytewise; *out is NULL when there are none).
 */
int lfs_home_list(char ***out, size_t *out_n, const struct lfs_home *h);
void lfs_home_list_free(char **names, size_t n);

/*
 * Create a new ledger: a fresh random key in the keybag and an empty store.
 * -EEXIST when either exists (a key file is never replaced). On failure
 * nothing is left behind.
 */
int lfs_home_create(const struct lfs_home *h, const char *name);

/*
 * Read a ledger's key. -ENOENT when the keybag has none ("no key"), -EACCES
 * for a key file with a lax mode or owner, -EBADMSG when it does not hold 64
 * hex digits. The caller should sodium_memzero() out when done.
 */
int lfs_home_key(uint8_t out[LFS_KEY_BYTES], const struct lfs_home *h,
		 const char *name);

/*
 * Store a key for name (import). -EEXIST when a different key is there
 * already; storing the same key again is fine.
 */
int lfs_home_set_key(const struct lfs_home *h, const char *name,
		     const uint8_t key[LFS_KEY_BYTES]);

/*
 * Share-string form of a key, and back. out holds 8 + 64 + 1 bytes
 * (lower-case hex, NUL-terminated). from_share accepts either case and
 * trailing white space (a pasted line); -EINVAL for anything else, and out
 * is only written on success.
 */
void lfs_key_to_share(char out[73], const uint8_t key[LFS_KEY_BYTES]);
int lfs_key_from_share(uint8_t out[LFS_KEY_BYTES], const char *s);

#endif
