/*
 * cmd: the subcommands of the ledgerfs program. Each takes argc/argv with
 * argv[0] naming the subcommand, prints its result on stdout and any error
 * on stderr (naming the object and what to do), and returns a process exit
 * code: 0 success, 1 the operation failed (corrupt input, verification
 * failure), 2 usage error.
 */
#ifndef LFS_CMD_H
#define LFS_CMD_H

int lfs_cmd_car(int argc, char **argv);

#endif
