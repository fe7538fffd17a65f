#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "errmsg.h"

#include <errno.h>
#include <string.h>

const char *lfs_errmsg(int err)
{
	switch (err < 0 ? -err : err) {
	case EBADMSG:
		return "corrupt or not authentic";
	case EPROTONOSUPPORT:
		return "unsupported format";
	case EFBIG:
		return "too large";
	case ENOKEY:
		return "no key on this machine";
	case EAGAIN:
		return "the store is unreachable or busy (will retry)";
	case EACCES:
		return "access refused";
	case ENOENT:
		return "missing";
	case ETIME:
		return "its clock goes backwards";
	case ERANGE:
		return "it holds a number beyond what JSON here represents "
		       "(an integer over 64 bits)";
	default:
		return strerror(err < 0 ? -err : err);
	}
}
