/*
 * fs_opts: the mount's own -o options, read out of FUSE's arguments.
 */
#ifndef LFS_FS_OPTS_H
#define LFS_FS_OPTS_H

#include "fs.h"

/*
 * Take this file system's mount options out of args (before
 * fuse_session_new, which refuses options it does not know):
 *   snapdir=hidden|visible  list .snapshots and .ledgerfs in a ledger
 *                           (default hidden: reachable by name only)
 *   uid=N, gid=N            the owner and group of documents and
 *                           directories (default: the daemon's)
 *   umask=OOO               taken off their default modes 0644 and 0755
 *                           (default 022; 077 with allow_other)
 *   cache_timeout=S         how long the kernel keeps committed names and
 *                           attributes (default 30 s; fs_inval.h)
 *   changes_max=BYTES       the size past which a ledger's change feed is
 *                           kept as changes.1 and starts again (default
 *                           8 MiB, at least 4096; fs_ledger.h)
 * allow_other is noted and left in args. -EINVAL (said in the log) for a
 * bad value.
 */
int lfs_fs_parse_opts(struct lfs_fs *fs, struct fuse_args *args);

#endif
