#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "fp_crypt.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/evp.h>
#include <sodium.h>

void lfs_fp_keyring_init(struct lfs_fp_keyring *kr)
{
	kr->keys = NULL;
	kr->n = 0;
}

void lfs_fp_keyring_release(struct lfs_fp_keyring *kr)
{
	if (kr->keys)
		sodium_memzero(kr->keys, kr->n * sizeof(*kr->keys));
	free(kr->keys);
	lfs_fp_keyring_init(kr);
}

const struct lfs_fp_key *lfs_fp_keyring_find(const struct lfs_fp_keyring *kr,
					     const uint8_t id[32])
{
	for (size_t i = 0; i < kr->n; i++)
		if (!memcmp(kr->keys[i].id, id, LFS_FP_KEYID_BYTES))
			return &kr->keys[i];
	return NULL;
}

static const char b58[] =
	"123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";

int lfs_base58_decode(uint8_t *out, size_t max, const char *s, size_t n)
{
	/* Big-endian accumulator in out[max - size .. max). */
	uint8_t tmp[128];
	size_t size = 0, zeros = 0;
	if (n > 170)
		return -EFBIG;
	while (zeros < n && s[zeros] == '1')
		zeros++;
	for (size_t i = zeros; i < n; i++) {
		const char *c = s[i] ? strchr(b58, s[i]) : NULL;
		if (!c)
			return -EINVAL;
		unsigned carry = (unsigned)(c - b58);
		for (size_t k = 0; k < size; k++) {
			carry += 58u * tmp[sizeof(tmp) - 1 - k];
			tmp[sizeof(tmp) - 1 - k] = (uint8_t)carry;
			carry >>= 8;
		}
		while (carry) {
			if (size == sizeof(tmp))
				return -EFBIG;
			tmp[sizeof(tmp) - 1 - size++] = (uint8_t)carry;
			carry >>= 8;
		}
	}
	if (zeros + size > max)
		return -EFBIG;
	memset(out, 0, zeros);
	memcpy(out + zeros, tmp + sizeof(tmp) - size, size);
	return (int)(zeros + size);
}

static int add_key(struct lfs_fp_key *k, const char *material, bool dflt)
{
	size_t n = material ? strlen(material) : 0;
	if (n < 2 || material[0] != 'z')
		return -EPROTO;
	int len =
		lfs_base58_decode(k->key, sizeof(k->key), material + 1, n - 1);
	if (len != 16 && len != 24 && len != 32)
		return -EPROTO;
	k->len = (size_t)len;
	k->is_default = dflt;
	crypto_hash_sha256(k->id, k->key, k->len);
	return 0;
}

int lfs_fp_keybag_parse(struct lfs_fp_keyring *kr, const char *text, size_t len)
{
	json_error_t jerr;
	json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!root || !json_is_object(root)) {
		json_decref(root);
		return -EPROTO;
	}
	json_t *item = root, *keys, *single;
	const char *clazz = json_string_value(json_object_get(root, "clazz"));
	if (clazz) {
		/* 0.24: a typed wrapper; only storage keys are ledger keys. */
		if (strcmp(clazz, "V2StorageKeyItem")) {
			json_decref(root);
			return -EPROTO;
		}
		item = json_object_get(root, "item");
	}
	keys = json_object_get(item, "keys");
	single = json_object_get(item, "key");
	struct lfs_fp_key got[LFS_FP_KEYS_MAX];
	size_t ngot = 0;
	int rc = 0;
	if (json_is_object(keys) && !single) {
		const char *fp;
		json_t *k;
		json_object_foreach(keys, fp, k)
		{
			if (ngot == LFS_FP_KEYS_MAX || !json_is_object(k)) {
				rc = -EPROTO;
				break;
			}
			json_t *d = json_object_get(k, "default");
			if ((rc = add_key(&got[ngot],
					  json_string_value(
						  json_object_get(k, "key")),
					  json_is_true(d))))
				break;
			ngot++;
		}
		if (!rc && !ngot)
			rc = -EPROTO;
	} else if (json_is_string(single) && !keys && !clazz) {
		rc = add_key(&got[0], json_string_value(single), true);
		ngot = rc ? 0 : 1;
	} else {
		rc = -EPROTO;
	}
	json_decref(root);
	if (!rc) {
		struct lfs_fp_key *v =
			realloc(kr->keys, (kr->n + ngot) * sizeof(*v));
		if (!v)
			rc = -ENOMEM;
		else {
			memcpy(v + kr->n, got, ngot * sizeof(*v));
			kr->keys = v;
			kr->n += ngot;
		}
	}
	sodium_memzero(got, sizeof(got));
	return rc;
}

char *lfs_fp_keybag_file(const char *key_name)
{
	size_t n = strlen(key_name);
	char *s = malloc(n + 6);
	if (!s)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		char c = key_name[i];
		s[i] = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
				       (c >= '0' && c <= '9')
			       ? c
			       : '_';
	}
	memcpy(s + n, ".json", 6);
	return s;
}

int lfs_fp_keybag_load(struct lfs_fp_keyring *kr, const char *keybag_dir,
		       const char *ledger)
{
	char name[PATH_MAX], path[PATH_MAX];
	if ((size_t)snprintf(name, sizeof(name), "@%s-data@", ledger) >=
	    sizeof(name))
		return -ENAMETOOLONG;
	char *file = lfs_fp_keybag_file(name);
	if (!file)
		return -ENOMEM;
	int n = snprintf(path, sizeof(path), "%s/%s", keybag_dir, file);
	free(file);
	if (n < 0 || (size_t)n >= sizeof(path))
		return -ENAMETOOLONG;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	struct lfs_buf b;
	lfs_buf_init(&b, LFS_FP_KEYBAG_MAX);
	int rc = 0;
	for (;;) {
		if ((rc = lfs_buf_reserve(&b, 4096)))
			break;
		ssize_t r = read(fd, b.data + b.len, b.cap - b.len);
		if (r < 0) {
			rc = -errno;
			break;
		}
		if (!r)
			break;
		b.len += (size_t)r;
	}
	close(fd);
	if (!rc)
		rc = lfs_fp_keybag_parse(kr, (const char *)b.data, b.len);
	if (b.data)
		sodium_memzero(b.data, b.len);
	lfs_buf_release(&b);
	return rc;
}

bool lfs_fp_is_envelope(const uint8_t *p, size_t len)
{
	return len > 0 && p[0] == 0xa3;
}

/* Expect a text key (short head) equal to k. */
static bool take_key(const uint8_t **p, const uint8_t *end, const char *k)
{
	size_t n = strlen(k);
	if ((size_t)(end - *p) < n + 1 || **p != 0x60 + n ||
	    memcmp(*p + 1, k, n))
		return false;
	*p += n + 1;
	return true;
}

/* Expect a byte string in the shortest head; its bytes and length. */
static bool take_bytes(const uint8_t **p, const uint8_t *end,
		       const uint8_t **out, size_t *out_len)
{
	if (*p >= end || (**p >> 5) != 2)
		return false;
	unsigned info = **p & 31;
	uint64_t n;
	size_t head;
	const uint8_t *q = *p;
	size_t avail = (size_t)(end - q);
	if (info < 24) {
		n = info;
		head = 1;
	} else if (info == 24 && avail >= 2 && q[1] >= 24) {
		n = q[1];
		head = 2;
	} else if (info == 25 && avail >= 3) {
		n = (uint64_t)q[1] << 8 | q[2];
		head = 3;
		if (n < 256)
			return false;
	} else if (info == 26 && avail >= 5) {
		n = (uint64_t)q[1] << 24 | (uint64_t)q[2] << 16 |
		    (uint64_t)q[3] << 8 | q[4];
		head = 5;
		if (n < 65536)
			return false;
	} else {
		return false; /* 8-byte lengths: no file is that big */
	}
	if (avail - head < n)
		return false;
	*out = q + head;
	*out_len = (size_t)n;
	*p = q + head + n;
	return true;
}

int lfs_fp_envelope_parse(struct lfs_fp_envelope *out, const uint8_t *p,
			  size_t len)
{
	const uint8_t *end = p + len, *iv, *data, *keyid;
	size_t ivlen, dlen, klen;
	if (!len || *p++ != 0xa3)
		return -EBADMSG;
	if (!take_key(&p, end, "iv") || !take_bytes(&p, end, &iv, &ivlen) ||
	    !take_key(&p, end, "data") || !take_bytes(&p, end, &data, &dlen) ||
	    !take_key(&p, end, "keyId") ||
	    !take_bytes(&p, end, &keyid, &klen) || p != end)
		return -EBADMSG;
	if (ivlen != LFS_FP_IV_BYTES || klen != LFS_FP_KEYID_BYTES ||
	    dlen < LFS_FP_TAG_BYTES)
		return -EBADMSG;
	out->iv = iv;
	out->keyid = keyid;
	out->data = data;
	out->len = dlen;
	return 0;
}

void lfs_fp_iv_of(uint8_t out[LFS_FP_IV_BYTES], const uint8_t *plain,
		  size_t len)
{
	uint8_t mh[2 + 32] = {0x12, 0x20};
	crypto_hash_sha256(mh + 2, plain, len);
	memset(out, 0, LFS_FP_IV_BYTES);
	for (size_t i = 0; i < sizeof(mh); i++)
		out[i % LFS_FP_IV_BYTES] ^= mh[i];
}

static const EVP_CIPHER *cipher_for(size_t keylen)
{
	switch (keylen) {
	case 16:
		return EVP_aes_128_gcm();
	case 24:
		return EVP_aes_192_gcm();
	default:
		return EVP_aes_256_gcm();
	}
}

int lfs_fp_decrypt(struct lfs_buf *out, const struct lfs_fp_keyring *kr,
		   const uint8_t *p, size_t len)
{
	struct lfs_fp_envelope env;
	int rc = lfs_fp_envelope_parse(&env, p, len);
	if (rc)
		return rc;
	const struct lfs_fp_key *k = lfs_fp_keyring_find(kr, env.keyid);
	if (!k)
		return -ENOKEY;
	size_t clen = env.len - LFS_FP_TAG_BYTES;
	if (clen > INT_MAX)
		return -EFBIG;
	size_t start = out->len;
	if ((rc = lfs_buf_reserve(out, clen + 16)))
		return rc;
	EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
	if (!c)
		return -ENOMEM;
	int n = 0, m = 0;
	rc = -EBADMSG;
	if (EVP_DecryptInit_ex(c, cipher_for(k->len), NULL, NULL, NULL) == 1 &&
	    EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_IVLEN, LFS_FP_IV_BYTES,
				NULL) == 1 &&
	    EVP_DecryptInit_ex(c, NULL, NULL, k->key, env.iv) == 1 &&
	    EVP_DecryptUpdate(c, out->data + start, &n, env.data, (int)clen) ==
		    1 &&
	    EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, LFS_FP_TAG_BYTES,
				(void *)(env.data + clen)) == 1 &&
	    EVP_DecryptFinal_ex(c, out->data + start + n, &m) == 1)
		rc = 0;
	EVP_CIPHER_CTX_free(c);
	if (rc)
		return rc;
	uint8_t iv[LFS_FP_IV_BYTES];
	lfs_fp_iv_of(iv, out->data + start, (size_t)(n + m));
	if (memcmp(iv, env.iv, sizeof(iv)))
		return -EBADMSG;
	out->len = start + (size_t)(n + m);
	return 0;
}
