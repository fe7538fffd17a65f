#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "optscan.h"

#include <string.h>

void lfs_optscan_init(struct lfs_optscan *s, int argc, char **argv)
{
	s->argc = argc;
	s->argv = argv;
	s->i = 0;
	s->arg = NULL;
	s->dashdash = false;
}

int lfs_optscan_next(struct lfs_optscan *s, const struct lfs_optname *names,
		     size_t n, const char **out_val)
{
	for (;;) {
		if (++s->i >= s->argc)
			return LFS_OPT_END;
		char *a = s->argv[s->i];
		*out_val = a;
		s->arg = a;
		if (s->dashdash || a[0] != '-' || !a[1])
			return LFS_OPT_POS;
		if (!strcmp(a, "--")) {
			s->dashdash = true;
			continue;
		}
		if (!strcmp(a, "--help") || !strcmp(a, "-h"))
			return LFS_OPT_HELP;
		for (size_t k = 0; k < n; k++) {
			size_t len = strlen(names[k].name);
			if (strncmp(a, names[k].name, len) ||
			    !(a[len] == '\0' ||
			      (a[len] == '=' && names[k].has_arg)))
				continue;
			*out_val = NULL;
			if (!names[k].has_arg)
				return (int)k;
			if (a[len] == '=')
				*out_val = a + len + 1;
			else if (s->i + 1 < s->argc)
				*out_val = s->argv[++s->i];
			else {
				*out_val = names[k].name;
				return LFS_OPT_NOVALUE;
			}
			return (int)k;
		}
		return LFS_OPT_UNKNOWN;
	}
}
