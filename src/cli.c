#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "cli.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "errmsg.h"
#include "ledger.h"

static void vsay(const struct lfs_cli *c, const char *fmt, va_list ap)
{
	fprintf(stderr, "ledgerfs %s: ", c->cmd);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
}

int lfs_cli_fail(const struct lfs_cli *c, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsay(c, fmt, ap);
	va_end(ap);
	return LFS_EXIT_FAIL;
}

int lfs_cli_usage_error(const struct lfs_cli *c, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsay(c, fmt, ap);
	va_end(ap);
	if (c->args)
		fprintf(stderr, "usage: ledgerfs %s %s\n", c->cmd, c->args);
	fprintf(stderr, "Try 'ledgerfs %s --help'.\n", c->cmd);
	return LFS_EXIT_USAGE;
}

int lfs_cli_oom(const struct lfs_cli *c)
{
	return lfs_cli_fail(c, "out of memory");
}

int lfs_cli_finish_output(const struct lfs_cli *c, int rc)
{
	if (fflush(stdout) == EOF || ferror(stdout)) {
		lfs_cli_fail(c, "writing to standard output failed: %s",
			     strerror(errno));
		return LFS_EXIT_FAIL;
	}
	return rc;
}

int lfs_cli_need_home(struct lfs_cli *c)
{
	if (c->have_home)
		return LFS_EXIT_OK;
	int rc = lfs_home_open(&c->home, c->home_arg);
	if (rc == -EBADMSG) {
		lfs_cli_fail(c,
			     "the writer id file in the ledgerfs home is "
			     "damaged (it should hold 16 hex characters); "
			     "delete '%s/writer' and a new one is made",
			     c->home_arg ? c->home_arg : "$LEDGERFS_HOME");
		return LFS_EXIT_FAIL;
	}
	if (rc) {
		lfs_cli_fail(c,
			     "cannot open the ledgerfs home directory %s%s%s: "
			     "%s (set LEDGERFS_HOME or pass --home DIR)",
			     c->home_arg ? "'" : "(from the environment",
			     c->home_arg ? c->home_arg : ")",
			     c->home_arg ? "'" : "", lfs_errmsg(rc));
		return LFS_EXIT_FAIL;
	}
	c->have_home = true;
	return LFS_EXIT_OK;
}

int lfs_cli_check_name(const struct lfs_cli *c, const char *name)
{
	if (lfs_home_valid_name(name))
		return LFS_EXIT_OK;
	return lfs_cli_usage_error(c,
				   "'%s' is not a valid ledger name (1 to %d "
				   "bytes of UTF-8, no '/' and not starting "
				   "with '.')",
				   name, LFS_LEDGER_NAME_MAX);
}

int lfs_cli_need_ledger(struct lfs_cli *c, const char *name, char **out_dir)
{
	int rc;
	if (out_dir)
		*out_dir = NULL;
	if ((rc = lfs_cli_need_home(c)) || (rc = lfs_cli_check_name(c, name)))
		return rc;
	char *dir = lfs_home_ledger_dir(&c->home, name);
	if (!dir)
		return lfs_cli_oom(c);
	struct stat st;
	errno = 0;
	if (stat(dir, &st) == 0 && S_ISDIR(st.st_mode)) {
		if (out_dir)
			*out_dir = dir;
		else
			free(dir);
		return LFS_EXIT_OK;
	}
	if (errno == ENOENT || errno == ENOTDIR || !errno) {
		lfs_cli_fail(c,
			     "no ledger '%s' on this machine (in "
			     "'%s/ledgers'); create it with 'ledgerfs init "
			     "%s' ('ledgerfs status' lists the ledgers)",
			     name, c->home.dir, name);
		rc = LFS_EXIT_NOTFOUND;
	} else {
		lfs_cli_fail(c, "cannot look at ledger '%s' ('%s'): %s", name,
			     dir, strerror(errno));
		rc = LFS_EXIT_FAIL;
	}
	free(dir);
	return rc;
}

int lfs_cli_key_error(const struct lfs_cli *c, const char *name, int rc)
{
	char *path = lfs_home_key_path(&c->home, name);
	const char *p = path ? path : "the key file";
	struct stat st;
	switch (-rc) {
	case ENOENT:
		lfs_cli_fail(c,
			     "ledger '%s' has no key on this machine; import "
			     "it with 'ledgerfs key import %s lfskey1:...' (on "
			     "a machine that has it, 'ledgerfs key export %s' "
			     "prints that string)",
			     name, name, name);
		break;
	case EACCES:
		if (stat(p, &st) == 0 && st.st_uid != geteuid())
			lfs_cli_fail(c,
				     "refusing to use the key of ledger '%s': "
				     "'%s' belongs to another user; it must be "
				     "yours and mode 0600",
				     name, p);
		else
			lfs_cli_fail(c,
				     "refusing to use the key of ledger '%s': "
				     "'%s' may be read by group or others "
				     "(mode %04o); fix it with 'chmod 600 %s' "
				     "(and consider the key exposed)",
				     name, p,
				     (unsigned)(stat(p, &st) == 0
							? st.st_mode & 07777
							: 0),
				     p);
		break;
	case EBADMSG:
		lfs_cli_fail(c,
			     "the key file of ledger '%s' ('%s') is damaged: "
			     "it should hold 64 hex digits; move it away and "
			     "import the key again with 'ledgerfs key import "
			     "%s lfskey1:...'",
			     name, p, name);
		break;
	default:
		lfs_cli_fail(c, "cannot read the key of ledger '%s' ('%s'): %s",
			     name, p, lfs_errmsg(rc));
	}
	free(path);
	return LFS_EXIT_FAIL;
}

int lfs_cli_open_error(const struct lfs_cli *c, const char *name, int rc)
{
	char *dir = lfs_home_ledger_dir(&c->home, name);
	const char *d = dir ? dir : name;
	if (rc == -EBADMSG)
		lfs_cli_fail(c,
			     "cannot open ledger '%s': its files are corrupt "
			     "or not authentic (or the key on this machine is "
			     "not this ledger's); 'ledgerfs fsck %s' names the "
			     "damaged files",
			     name, name);
	else if (rc == -ENOENT)
		lfs_cli_fail(c,
			     "cannot open ledger '%s': a file it needs is "
			     "missing from '%s'; 'ledgerfs fsck %s' says which",
			     name, d, name);
	else
		lfs_cli_fail(c, "cannot open ledger '%s' ('%s'): %s", name, d,
			     lfs_errmsg(rc));
	free(dir);
	return LFS_EXIT_FAIL;
}

int lfs_cli_open_ledger(struct lfs_cli *c, const char *name,
			const struct lfs_ledger_opts *opts,
			struct lfs_ledger **out)
{
	*out = NULL;
	int rc = lfs_cli_need_ledger(c, name, NULL);
	if (rc)
		return rc;
	bool key_error;
	rc = lfs_home_open_ledger(out, &c->home, name, opts, false, &key_error);
	if (!rc)
		return LFS_EXIT_OK;
	*out = NULL;
	return key_error ? lfs_cli_key_error(c, name, rc)
			 : lfs_cli_open_error(c, name, rc);
}

void lfs_cli_release(struct lfs_cli *c)
{
	if (c->have_home)
		lfs_home_release(&c->home);
	c->have_home = false;
}
