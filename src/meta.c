#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "meta.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

/* The announcement format, shared by every endpoint (meta.h). */

static bool enc_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.' ||
	       c == '%';
}

/* *n stays 0 unless the whole message parses. */
int lfs_meta_parse(struct lfs_meta_hint *out, size_t max, size_t *n,
		   const char *msg, size_t len)
{
	*n = 0;
	if (len < 2 || len > LFS_META_MSG_MAX || msg[0] != '1' || msg[1] != ' ')
		return -EBADMSG;
	const char *p = msg + 2, *end = msg + len;
	const char *e = p;
	while (e < end && *e != ' ')
		if (!enc_char(*e++))
			return -EBADMSG;
	size_t elen = (size_t)(e - p);
	if (!elen || elen > LFS_META_ENC_MAX || e == end)
		return -EBADMSG;
	char enc[LFS_META_ENC_MAX + 1];
	memcpy(enc, p, elen);
	enc[elen] = '\0';
	size_t got = 0;
	for (p = e; p < end;) {
		if (*p++ != ' ' || p == end)
			return -EBADMSG;
		const char *c = p;
		while (p < end && *p != ' ')
			p++;
		char cs[LFS_CID_STRLEN + 1];
		size_t clen = (size_t)(p - c);
		struct lfs_cid cid;
		if (clen > LFS_CID_STRLEN || got == max ||
		    got == LFS_META_MSG_CIDS)
			return -EBADMSG;
		memcpy(cs, c, clen);
		cs[clen] = '\0';
		if (lfs_cid_from_string(&cid, cs) || cid.codec != LFS_CODEC_RAW)
			return -EBADMSG;
		memcpy(out[got].enc, enc, elen + 1);
		out[got].car = cid;
		got++;
	}
	*n = got;
	return got ? 0 : -EBADMSG;
}

int lfs_meta_format(char *buf, const char *enc, const struct lfs_cid *added,
		    size_t nadded)
{
	size_t elen = strlen(enc);
	if (!nadded || nadded > LFS_META_MSG_CIDS || !elen ||
	    elen > LFS_META_ENC_MAX)
		return -EFBIG;
	int len = snprintf(buf, LFS_META_MSG_MAX + 1, "1 %s", enc);
	for (size_t i = 0; i < nadded; i++) {
		char cs[LFS_CID_STRLEN + 1];
		lfs_cid_to_string(cs, &added[i]);
		if ((size_t)len + 1 + strlen(cs) > LFS_META_MSG_MAX)
			return -EFBIG;
		len += snprintf(buf + len, LFS_META_MSG_MAX + 1 - (size_t)len,
				" %s", cs);
	}
	return len;
}
