/*
 * libFuzzer target: the Fireproof decoders (fp_crypt.h, fp_format.h).
 *
 * The first byte picks what the rest is fed to: an encrypted file (the
 * envelope and AES-GCM with a fixed key whose id a file may name), a pail
 * shard, a clock event, a car header, a value block, meta/main.json or a
 * keybag file. Nothing may crash, leak or hang, and whatever a decoder
 * accepts must have the shape it promises.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "arena.h"
#include "buf.h"
#include "fp_crypt.h"
#include "fp_format.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The key of a file Fireproof 0.24.19 wrote. */
static const char keybag[] =
	"{\"name\":\"@f-data@\",\"key\":\"zJLf28iYjHpQVdEVPGKCTE\"}";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct lfs_fp_keyring kr;
	static int ready;
	if (!ready) {
		if (sodium_init() < 0)
			abort();
		lfs_fp_keyring_init(&kr);
		CHECK(lfs_fp_keybag_parse(&kr, keybag, strlen(keybag)) == 0);
		ready = 1;
	}
	if (!size)
		return 0;
	const uint8_t *p = data + 1;
	size_t n = size - 1;
	struct lfs_arena a;
	lfs_arena_init(&a, (size_t)16 << 20);
	switch (data[0] % 7) {
	case 0: {
		struct lfs_buf out;
		lfs_buf_init(&out, (size_t)1 << 20);
		struct lfs_fp_envelope env;
		int rc = lfs_fp_envelope_parse(&env, p, n);
		if (!rc)
			CHECK(env.len >= 16 && env.data + env.len <= p + n);
		rc = lfs_fp_decrypt(&out, &kr, p, n);
		CHECK(rc == 0 || rc == -EBADMSG || rc == -ENOKEY ||
		      rc == -EFBIG || rc == -ENOMEM);
		if (!rc)
			CHECK(out.len + 16 + 12 + 32 < n);
		lfs_buf_release(&out);
		break;
	}
	case 1: {
		struct lfs_fp_shard s;
		if (!lfs_fp_shard_decode(&s, &a, p, n))
			for (size_t i = 0; i < s.n; i++)
				CHECK(s.entries[i].has_value ||
				      s.entries[i].has_child);
		break;
	}
	case 2: {
		struct lfs_fp_event e;
		if (!lfs_fp_event_decode(&e, &a, p, n))
			for (size_t i = 0; i < e.nops; i++)
				CHECK(strlen(e.ops[i].key) == e.ops[i].key_len);
		break;
	}
	case 3: {
		struct lfs_fp_header h;
		lfs_fp_header_decode(&h, &a, p, n);
		break;
	}
	case 4: {
		const struct lfs_cbor *doc;
		lfs_fp_value_decode(&doc, &a, p, n);
		break;
	}
	case 5: {
		struct lfs_fp_meta m;
		if (!lfs_fp_meta_parse(&m, &a, (const char *)p, n))
			CHECK(m.ncars >= 1);
		break;
	}
	default: {
		struct lfs_fp_keyring k2;
		lfs_fp_keyring_init(&k2);
		if (!lfs_fp_keybag_parse(&k2, (const char *)p, n))
			for (size_t i = 0; i < k2.n; i++)
				CHECK(k2.keys[i].len == 16 ||
				      k2.keys[i].len == 24 ||
				      k2.keys[i].len == 32);
		lfs_fp_keyring_release(&k2);
	}
	}
	lfs_arena_release(&a);
	return 0;
}
