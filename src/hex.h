/*
 * hex: the value of one hexadecimal digit (either case), for the parsers of
 * keys, percent-escapes and XML character references. Header only.
 */
#ifndef LFS_HEX_H
#define LFS_HEX_H

/* 0..15, or -1 when c is not a hex digit. */
static inline int lfs_hex_value(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

#endif
