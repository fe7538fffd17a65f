/*
 * fp_crypt: Fireproof 0.24's keys and encrypted files, read side.
 *
 * Keybag. One JSON file per key name in the keybag directory
 * (FP_KEYBAG_URL, default ~/.fireproof/keybag). A ledger's data key is
 * named "@<ledger>-data@"; the file name is that name with every byte
 * outside [A-Za-z0-9] replaced by '_', plus ".json". Three layouts are
 * read (docs/FIREPROOF.md):
 *
 *   0.24   {"id", "clazz": "V2StorageKeyItem", "item": {"name", "keys": K}}
 *   0.23   {"name", "keys": K}
 *   v1     {"name", "key": "z<base58btc>"}
 *
 * where K maps a fingerprint to {"key": "z<base58btc>", "fingerPrint",
 * "default": bool}. Key material is 16, 24 or 32 bytes (AES-128/192/256);
 * a key's id is the SHA-256 of its bytes, which is what each encrypted
 * file names.
 *
 * Envelope. An encrypted file is the canonical DAG-CBOR map
 * {"iv": bytes(12), "data": AES-GCM ciphertext || 16-byte tag,
 *  "keyId": bytes(32)}, no additional data. The IV is not random: it is the
 * sha2-256 multihash (0x12 0x20 + digest) of the plaintext XOR-folded into
 * 12 bytes, and is checked after decryption as Fireproof checks it.
 * AES-GCM is OpenSSL libcrypto's (libsodium's AES-GCM takes 256-bit keys
 * only); nothing else of OpenSSL is used.
 *
 * Errors: -EBADMSG a file that is not an envelope, fails authentication or
 * whose IV does not match its plaintext; -ENOKEY no key with the file's
 * key id (a wrong or missing key); -EPROTO a keybag file of an unknown
 * layout or with an unusable key; -ENOENT no keybag file; -EFBIG input over
 * its limit; -ENOMEM. Thread-safe: no shared state.
 */
#ifndef LFS_FP_CRYPT_H
#define LFS_FP_CRYPT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"

#define LFS_FP_KEY_MAX     32
#define LFS_FP_KEYID_BYTES 32
#define LFS_FP_IV_BYTES    12
#define LFS_FP_TAG_BYTES   16
#define LFS_FP_KEYBAG_MAX  ((size_t)1 << 20) /* one keybag file */
#define LFS_FP_KEYS_MAX    256               /* keys in one item */

struct lfs_fp_key {
	uint8_t id[LFS_FP_KEYID_BYTES]; /* SHA-256 of the material */
	uint8_t key[LFS_FP_KEY_MAX];
	size_t len; /* 16, 24 or 32 */
	bool is_default;
};

struct lfs_fp_keyring {
	struct lfs_fp_key *keys; /* owned */
	size_t n;
};

void lfs_fp_keyring_init(struct lfs_fp_keyring *kr);
/* Wipe and free the keys. */
void lfs_fp_keyring_release(struct lfs_fp_keyring *kr);

/* The key with this id, or NULL. */
const struct lfs_fp_key *lfs_fp_keyring_find(const struct lfs_fp_keyring *kr,
					     const uint8_t id[32]);

/*
 * Parse one keybag file's text and add its keys to kr. -EPROTO for a
 * layout other than the three above (or a key that does not decode to 16,
 * 24 or 32 bytes). On error kr is unchanged.
 */
int lfs_fp_keybag_parse(struct lfs_fp_keyring *kr, const char *text,
			size_t len);

/*
 * The keybag file name of a key name: escaped as above plus ".json"
 * (malloc'd; NULL when memory is short).
 */
char *lfs_fp_keybag_file(const char *key_name);

/*
 * Read "@<ledger>-data@"'s file from keybag_dir into kr. -ENOENT when there
 * is none.
 */
int lfs_fp_keybag_load(struct lfs_fp_keyring *kr, const char *keybag_dir,
		       const char *ledger);

/*
 * Base58btc (Bitcoin alphabet) without the multibase 'z'. Returns the
 * number of bytes written to out (room for max), -EINVAL for a bad
 * character, -EFBIG when it does not fit.
 */
int lfs_base58_decode(uint8_t *out, size_t max, const char *s, size_t n);

/* The envelope's parts, pointing into the parsed bytes. */
struct lfs_fp_envelope {
	const uint8_t *iv;    /* 12 bytes */
	const uint8_t *keyid; /* 32 bytes */
	const uint8_t *data;  /* ciphertext and tag */
	size_t len;           /* >= 16 */
};

/* True when p starts like an envelope (a CBOR map of 3: 0xa3). */
bool lfs_fp_is_envelope(const uint8_t *p, size_t len);

/* Parse (strictly: exactly the canonical shape above). 0 or -EBADMSG. */
int lfs_fp_envelope_parse(struct lfs_fp_envelope *out, const uint8_t *p,
			  size_t len);

/*
 * Decrypt an envelope with the key its keyId names and check its IV;
 * append the plaintext to out.
 */
int lfs_fp_decrypt(struct lfs_buf *out, const struct lfs_fp_keyring *kr,
		   const uint8_t *p, size_t len);

/* The IV Fireproof derives from a plaintext. */
void lfs_fp_iv_of(uint8_t out[LFS_FP_IV_BYTES], const uint8_t *plain,
		  size_t len);

#endif
