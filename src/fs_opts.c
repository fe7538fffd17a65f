#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "fs_opts.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "fs_int.h"
#include "log.h"
#include "membudget.h"

#define UNUSED __attribute__((unused))

struct mount_opts {
	char *snapdir;
	unsigned uid, gid, umask, cache_timeout;
	unsigned long changes_max, cache_max;
	int has_uid, has_gid, has_umask, has_cache_timeout, has_changes_max;
	int has_cache_max;
	int allow_other;
};

enum { KEY_ALLOW_OTHER };

static const struct fuse_opt opt_spec[] = {
	{"snapdir=%s", offsetof(struct mount_opts, snapdir), 0},
	{"uid=%u", offsetof(struct mount_opts, uid), 0},
	{"uid=", offsetof(struct mount_opts, has_uid), 1},
	{"gid=%u", offsetof(struct mount_opts, gid), 0},
	{"gid=", offsetof(struct mount_opts, has_gid), 1},
	{"umask=%o", offsetof(struct mount_opts, umask), 0},
	{"umask=", offsetof(struct mount_opts, has_umask), 1},
	{"cache_timeout=%u", offsetof(struct mount_opts, cache_timeout), 0},
	{"cache_timeout=", offsetof(struct mount_opts, has_cache_timeout), 1},
	{"changes_max=%lu", offsetof(struct mount_opts, changes_max), 0},
	{"changes_max=", offsetof(struct mount_opts, has_changes_max), 1},
	{"cache_max=%lu", offsetof(struct mount_opts, cache_max), 0},
	{"cache_max=", offsetof(struct mount_opts, has_cache_max), 1},
	FUSE_OPT_KEY("allow_other", KEY_ALLOW_OTHER),
	FUSE_OPT_END,
};

static int opt_proc(void *data, const char *arg UNUSED, int key,
		    struct fuse_args *outargs UNUSED)
{
	if (key == KEY_ALLOW_OTHER)
		((struct mount_opts *)data)->allow_other = 1;
	return 1; /* libfuse's own: keep it */
}

int lfs_fs_parse_opts(struct lfs_fs *fs, struct fuse_args *args)
{
	struct mount_opts o = {0};
	if (fuse_opt_parse(args, &o, opt_spec, opt_proc))
		return -EINVAL;
	int rc = 0;
	if (o.snapdir && strcmp(o.snapdir, "hidden") &&
	    strcmp(o.snapdir, "visible")) {
		lfs_error("-o snapdir=%s: hidden or visible", o.snapdir);
		rc = -EINVAL;
	}
	if (o.has_umask && o.umask > 0777) {
		lfs_error("-o umask=%o: an octal mode mask, 0 to 777", o.umask);
		rc = -EINVAL;
	}
	if (o.has_cache_timeout && o.cache_timeout > LFS_FS_DOC_TTL_MAX) {
		lfs_error("-o cache_timeout=%u: seconds, 0 to %d",
			  o.cache_timeout, LFS_FS_DOC_TTL_MAX);
		rc = -EINVAL;
	}
	if (o.has_changes_max && o.changes_max < LFS_FS_CHANGES_MAX_MIN) {
		lfs_error("-o changes_max=%lu: bytes, at least %zu",
			  o.changes_max, LFS_FS_CHANGES_MAX_MIN);
		rc = -EINVAL;
	}
	if (o.has_cache_max && o.cache_max < LFS_FS_CACHE_MAX_MIN) {
		lfs_error("-o cache_max=%lu: bytes, at least %zu", o.cache_max,
			  LFS_FS_CACHE_MAX_MIN);
		rc = -EINVAL;
	}
	if (o.has_cache_timeout)
		fs->doc_ttl = o.cache_timeout;
	if (o.has_cache_max && !rc)
		lfs_membudget_set_max(fs->budget, o.cache_max);
	if (o.has_changes_max)
		fs->changes_max = o.changes_max;
	fs->snapdir_visible = o.snapdir && !strcmp(o.snapdir, "visible");
	fs->allow_other = o.allow_other;
	if (o.has_uid)
		fs->uid = (uid_t)o.uid;
	if (o.has_gid)
		fs->gid = (gid_t)o.gid;
	/* Safe by default: when other users may enter the mount, they read
	 * nothing until the owner says so (chmod, or -o umask=022). */
	fs->umask = o.has_umask ? (mode_t)o.umask : o.allow_other ? 077 : 022;
	free(o.snapdir);
	return rc;
}
