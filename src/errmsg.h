/*
 * errmsg: what ledgerfs's negative errnos mean, in words a user can act on.
 *
 * Every module returns 0 or a negative errno with one meaning (EBADMSG:
 * corrupt or not authentic data; EAGAIN: a store to retry later; ENOKEY: no
 * key on this machine ...). This is the one place that says so in text.
 * Returns a static string; thread-safe.
 */
#ifndef LFS_ERRMSG_H
#define LFS_ERRMSG_H

const char *lfs_errmsg(int err);

#endif
