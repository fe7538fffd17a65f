/*
 * cmd: the subcommands of the ledgerfs program. Each takes argc/argv with
 * argv[0] naming the subcommand, prints its result on stdout and any error
 * on stderr (naming the object and what to do), and returns a process exit
 * code: 0 success, 1 the operation failed (corrupt input, verification
 * failure, a missing key), 2 usage error, 3 not found: the ledger, the
 * document or the event named on the command line does not exist.
 *
 * The ledger commands (cmd_ledger.c) take --home DIR (else the home that
 * home.h finds from the environment) and work without FUSE.
 */
#ifndef LFS_CMD_H
#define LFS_CMD_H

int lfs_cmd_car(int argc, char **argv);

/* cmd_ledger.c */
int lfs_cmd_init(int argc, char **argv);
int lfs_cmd_put(int argc, char **argv);
int lfs_cmd_rm(int argc, char **argv);
int lfs_cmd_get(int argc, char **argv);
int lfs_cmd_cat(int argc, char **argv);
int lfs_cmd_ls(int argc, char **argv);
int lfs_cmd_log(int argc, char **argv);
int lfs_cmd_diff(int argc, char **argv);
int lfs_cmd_merge(int argc, char **argv);
int lfs_cmd_compact(int argc, char **argv);
int lfs_cmd_fsck(int argc, char **argv);
int lfs_cmd_key(int argc, char **argv);
int lfs_cmd_status(int argc, char **argv);
int lfs_cmd_conflicts(int argc, char **argv);

/*
 * cmd_fireproof.c: ls, get, cat, log and status (cmd names which) on a
 * Fireproof ledger, read-only; main() calls it when --fireproof is given.
 */
int lfs_cmd_fireproof(const char *cmd, int argc, char **argv);

/* cmd_import.c: the bulk path, import NAME [DIR|FILE.ndjson|-] and
 * export NAME DIR */
int lfs_cmd_import(int argc, char **argv);
int lfs_cmd_export(int argc, char **argv);

/* cmd_sync.c: one replication round with a remote store */
int lfs_cmd_sync(int argc, char **argv);

/* cmd_mount.c: the FUSE daemon */
int lfs_cmd_mount(int argc, char **argv);
/*
 * `ledgerfs SOURCE MOUNTPOINT [-o OPTIONS]...` (argv[0] "ledgerfs"): the
 * form mount(8) uses for an fstab line of type fuse.ledgerfs (through
 * mount.fuse3), the same as `ledgerfs mount --home SOURCE [-o
 * OPTIONS]... MOUNTPOINT`. Among OPTIONS, remote=URL, meta=URL, poll_ms=N,
 * log_level=L and keybag=DIR are ledgerfs's own (also in `mount -o`), the
 * rest go to FUSE; with fireproof, SOURCE is a Fireproof storage
 * directory, mounted read-only.
 */
int lfs_cmd_mount_fstab(int argc, char **argv);

#endif
