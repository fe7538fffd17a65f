#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "varint.h"

#include <errno.h>

size_t lfs_varint_encode(uint8_t *out, uint64_t v)
{
	size_t n = 0;
	while (v >= 0x80) {
		out[n++] = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	out[n++] = (uint8_t)v;
	return n;
}

int lfs_varint_decode(uint64_t *out, const uint8_t *p, size_t len)
{
	uint64_t v = 0;
	for (size_t i = 0; i < len && i < LFS_VARINT_MAX; i++) {
		uint8_t byte = p[i];
		v |= (uint64_t)(byte & 0x7f) << (7 * i);
		if (byte & 0x80)
			continue;
		if (byte == 0 && i > 0)
			return -EBADMSG; /* non-minimal */
		if (v >> 63)
			return -EBADMSG;
		*out = v;
		return (int)i + 1;
	}
	return -EBADMSG;
}
