/*
 * Unit tests for the Fireproof decoders (fp_crypt, fp_format): base58,
 * the three keybag layouts and unknown ones, the AES-GCM envelope built
 * here with OpenSSL as Fireproof builds it (derived IV), and every way a
 * file can be wrong: truncated, tampered, another key, another IV; meta
 * files half written or garbage; shards, events and headers of the wrong
 * shape.
 */
#include <check.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <sodium.h>

#include "arena.h"
#include "buf.h"
#include "cbor.h"
#include "cid.h"
#include "dagjson.h"
#include "fp_crypt.h"
#include "fp_format.h"
#include "check_util.h"

/* "zJLf28iYjHpQVdEVPGKCTE" is a 16-byte key Fireproof 0.24.19 wrote. */
#define KEY_Z  "zJLf28iYjHpQVdEVPGKCTE"
#define KEY2_Z "zDQ3eMDHz1XVqECEzqPkzjL"

static const char v24[] =
	"{\"id\":\"@demo-data@\",\"clazz\":\"V2StorageKeyItem\",\"item\":{"
	"\"name\":\"@demo-data@\",\"keys\":{\"zfp\":{\"key\":\"" KEY_Z
	"\",\"fingerPrint\":\"zfp\",\"default\":true}}}}";

static void keyring(struct lfs_fp_keyring *kr, const char *text)
{
	lfs_fp_keyring_init(kr);
	ck_assert_int_eq(lfs_fp_keybag_parse(kr, text, strlen(text)), 0);
}

START_TEST(base58)
{
	uint8_t out[64];
	ck_assert_int_eq(lfs_base58_decode(out, sizeof(out), "", 0), 0);
	ck_assert_int_eq(lfs_base58_decode(out, sizeof(out), "1", 1), 1);
	ck_assert_uint_eq(out[0], 0);
	ck_assert_int_eq(lfs_base58_decode(out, sizeof(out), "2g", 2), 1);
	ck_assert_uint_eq(out[0], 'a');
	ck_assert_int_eq(lfs_base58_decode(out, sizeof(out), "0", 1), -EINVAL);
	ck_assert_int_eq(lfs_base58_decode(out, sizeof(out), "Il", 2), -EINVAL);
	ck_assert_int_eq(lfs_base58_decode(out, 1, "zzzz", 4), -EFBIG);
	ck_assert_int_eq(lfs_base58_decode(out, sizeof(out), &KEY_Z[1],
					   strlen(KEY_Z) - 1),
			 16);
}
END_TEST

START_TEST(keybag_layouts)
{
	struct lfs_fp_keyring kr;
	keyring(&kr, v24);
	ck_assert_uint_eq(kr.n, 1);
	ck_assert_uint_eq(kr.keys[0].len, 16);
	ck_assert(kr.keys[0].is_default);
	uint8_t id[32];
	crypto_hash_sha256(id, kr.keys[0].key, 16);
	ck_assert_ptr_eq(lfs_fp_keyring_find(&kr, id), &kr.keys[0]);
	/* 0.23: no wrapper; v1: one key. Both add to the same ring. */
	const char *v23 =
		"{\"name\":\"@demo-data@\",\"keys\":{\"a\":{\"key\":\"" KEY2_Z
		"\",\"default\":false}}}";
	ck_assert_int_eq(lfs_fp_keybag_parse(&kr, v23, strlen(v23)), 0);
	const char *v1 = "{\"name\":\"@demo-data@\",\"key\":\"" KEY_Z "\"}";
	ck_assert_int_eq(lfs_fp_keybag_parse(&kr, v1, strlen(v1)), 0);
	ck_assert_uint_eq(kr.n, 3);
	lfs_fp_keyring_release(&kr);
	ck_assert_uint_eq(kr.n, 0);
}
END_TEST

START_TEST(keybag_unknown)
{
	static const char *bad[] = {
		"",
		"[]",
		"{\"something\":\"else\"}",
		"{\"clazz\":\"DeviceIdItem\",\"item\":{\"keys\":{}}}",
		"{\"name\":\"x\",\"keys\":{}}",
		"{\"name\":\"x\",\"key\":\"notz\"}",
		"{\"name\":\"x\",\"key\":\"z111\"}",  /* 3 bytes: no AES key */
		"{\"name\":\"x\",\"key\":\"z0OIl\"}", /* not base58 */
		"{\"name\":\"x\",\"keys\":{\"a\":\"string\"}}",
		"{\"name\":\"x\",\"key\":\"" KEY_Z "\",\"keys\":{}}",
		"{\"id\":1,\"clazz\":\"V2StorageKeyItem\"}",
		"{\"name\":\"x\",\"key\":\"" KEY_Z "\"", /* truncated */
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
		struct lfs_fp_keyring kr;
		lfs_fp_keyring_init(&kr);
		ck_assert_msg(lfs_fp_keybag_parse(&kr, bad[i],
						  strlen(bad[i])) == -EPROTO,
			      "accepted %s", bad[i]);
		ck_assert_uint_eq(kr.n, 0);
	}
}
END_TEST

START_TEST(keybag_file_name)
{
	char *f = lfs_fp_keybag_file("@my-ledger.v2@");
	ck_assert_str_eq(f, "_my_ledger_v2_.json");
	free(f);
}
END_TEST

/* Encrypt as Fireproof does: IV from the plaintext, 16-byte tag. */
static uint8_t *seal(const struct lfs_fp_key *k, const uint8_t *plain,
		     size_t len, size_t *out_len, const uint8_t *iv_override)
{
	uint8_t iv[12];
	lfs_fp_iv_of(iv, plain, len);
	if (iv_override)
		memcpy(iv, iv_override, 12);
	uint8_t *ct = malloc(len + 16 + 1);
	int n = 0, m = 0;
	EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
	ck_assert_int_eq(
		EVP_EncryptInit_ex(c, EVP_aes_128_gcm(), NULL, k->key, iv), 1);
	ck_assert_int_eq(EVP_EncryptUpdate(c, ct, &n, plain, (int)len), 1);
	ck_assert_int_eq(EVP_EncryptFinal_ex(c, ct + n, &m), 1);
	ck_assert_int_eq(
		EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, 16, ct + n + m),
		1);
	EVP_CIPHER_CTX_free(c);
	struct lfs_buf b;
	lfs_buf_init(&b, 0);
	lfs_buf_append_byte(&b, 0xa3);
	lfs_cbor_put_string(&b, "iv", 2);
	lfs_cbor_put_bytes(&b, iv, 12);
	lfs_cbor_put_string(&b, "data", 4);
	lfs_cbor_put_bytes(&b, ct, len + 16);
	lfs_cbor_put_string(&b, "keyId", 5);
	lfs_cbor_put_bytes(&b, k->id, 32);
	free(ct);
	ck_assert_int_eq(b.err, 0);
	return lfs_buf_steal(&b, out_len);
}

START_TEST(envelope_round_trip_and_attacks)
{
	struct lfs_fp_keyring kr, other;
	keyring(&kr, v24);
	keyring(&other, "{\"name\":\"x\",\"key\":\"" KEY2_Z "\"}");
	const char plain[] = "a CAR file's bytes, more or less";
	size_t len;
	uint8_t *env = seal(&kr.keys[0], (const uint8_t *)plain, sizeof(plain),
			    &len, NULL);
	struct lfs_buf out;
	lfs_buf_init(&out, 0);
	ck_assert(lfs_fp_is_envelope(env, len));
	ck_assert_int_eq(lfs_fp_decrypt(&out, &kr, env, len), 0);
	ck_assert_uint_eq(out.len, sizeof(plain));
	ck_assert_mem_eq(out.data, plain, sizeof(plain));
	/* The wrong key: named by keyId, so not found at all. */
	lfs_buf_reset(&out);
	ck_assert_int_eq(lfs_fp_decrypt(&out, &other, env, len), -ENOKEY);
	/* Every truncation, and every flipped byte. */
	for (size_t n = 0; n < len; n++) {
		lfs_buf_reset(&out);
		ck_assert_int_ne(lfs_fp_decrypt(&out, &kr, env, n), 0);
	}
	for (size_t i = 0; i < len; i++) {
		env[i] ^= 0x01;
		lfs_buf_reset(&out);
		int rc = lfs_fp_decrypt(&out, &kr, env, len);
		ck_assert_msg(rc == -EBADMSG || rc == -ENOKEY,
			      "flip at %zu: %d", i, rc);
		env[i] ^= 0x01;
	}
	/* Trailing bytes. */
	uint8_t *longer = malloc(len + 1);
	memcpy(longer, env, len);
	longer[len] = 0;
	lfs_buf_reset(&out);
	ck_assert_int_eq(lfs_fp_decrypt(&out, &kr, longer, len + 1), -EBADMSG);
	free(longer);
	free(env);
	/* Authentic, but not the IV Fireproof derives: rejected as it is. */
	uint8_t iv[12] = {1, 2, 3};
	env = seal(&kr.keys[0], (const uint8_t *)plain, sizeof(plain), &len,
		   iv);
	lfs_buf_reset(&out);
	ck_assert_int_eq(lfs_fp_decrypt(&out, &kr, env, len), -EBADMSG);
	free(env);
	lfs_buf_release(&out);
	lfs_fp_keyring_release(&kr);
	lfs_fp_keyring_release(&other);
}
END_TEST

/* DAG-CBOR of a JSON text (links as {"/": cid}). */
static uint8_t *cbor_of(const char *json, size_t *len)
{
	json_error_t e;
	json_t *j = json_loads(json, 0, &e);
	ck_assert_ptr_nonnull(j);
	struct lfs_arena a;
	lfs_arena_init(&a, 0);
	struct lfs_cbor *v;
	ck_assert_int_eq(lfs_dagjson_to_cbor(&v, &a, j), 0);
	struct lfs_buf b;
	lfs_buf_init(&b, 0);
	ck_assert_int_eq(lfs_cbor_encode(&b, v), 0);
	lfs_arena_release(&a);
	json_decref(j);
	return lfs_buf_steal(&b, len);
}

#define L1                                                                     \
	"{\"/"                                                                 \
	"\":\"bafyreidnvv4mwvweup5w52ddre2sl4syhvczm6ejqsmuekajowdl2cf2q4\"}"
#define L2                                                                     \
	"{\"/"                                                                 \
	"\":\"bafyreihh6nbfbhgkf5lz7hhsscjgiquw426rxzr3fprbgonekzmyvirrhe\"}"
#define CAR                                                                    \
	"{\"/"                                                                 \
	"\":\"baembeig2is4vdgz4gyiadfh5uutxxeiuqtacnesnytrnilpwcu7q5m5tmu\"}"

START_TEST(shards)
{
	size_t len;
	uint8_t *p = cbor_of("{\"prefix\":\"do\",\"entries\":[[\"c\",[" L1
			     "]],[\"g\"," L2 "],[\"x\",[" L1 "," L2
			     "]]],\"version\":1,\"keyChars\":\"ascii\","
			     "\"maxKeySize\":4096}",
			     &len);
	struct lfs_arena a;
	lfs_arena_init(&a, 0);
	struct lfs_fp_shard s;
	ck_assert_int_eq(lfs_fp_shard_decode(&s, &a, p, len), 0);
	ck_assert_uint_eq(s.n, 3);
	ck_assert_uint_eq(s.prefix_len, 2);
	ck_assert(s.entries[0].has_child && !s.entries[0].has_value);
	ck_assert(!s.entries[1].has_child && s.entries[1].has_value);
	ck_assert(s.entries[2].has_child && s.entries[2].has_value);
	for (size_t n = 0; n < len; n++)
		ck_assert_int_ne(lfs_fp_shard_decode(&s, &a, p, n), 0);
	free(p);
	static const char *bad[] = {
		"{\"entries\":[]}",
		"{\"prefix\":1,\"entries\":[]}",
		"{\"prefix\":\"\",\"entries\":{}}",
		"{\"prefix\":\"\",\"entries\":[[\"a\"]]}",
		"{\"prefix\":\"\",\"entries\":[[\"a\",1]]}",
		"{\"prefix\":\"\",\"entries\":[[\"a\",[]]]}",
		"{\"prefix\":\"\",\"entries\":[[\"a\",[1,2]]]}",
		"{\"prefix\":\"\",\"entries\":[[1," L1 "]]}",
		"{\"prefix\":\"\",\"entries\":[[\"a\",[" L1 "," L1 "," L1
		"]]]}",
		"{\"prefix\":\"\",\"entries\":[],\"version\":2}",
		"[1,2]",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
		p = cbor_of(bad[i], &len);
		ck_assert_msg(lfs_fp_shard_decode(&s, &a, p, len) == -EBADMSG,
			      "accepted %s", bad[i]);
		free(p);
	}
	lfs_arena_release(&a);
}
END_TEST

START_TEST(events_headers_values)
{
	size_t len;
	struct lfs_arena a;
	lfs_arena_init(&a, 0);
	struct lfs_fp_event e;
	uint8_t *p = cbor_of("{\"data\":{\"key\":\"k\",\"root\":" L1
			     ",\"type\":\"put\",\"value\":" L2
			     "},\"parents\":[" L1 "]}",
			     &len);
	ck_assert_int_eq(lfs_fp_event_decode(&e, &a, p, len), 0);
	ck_assert_uint_eq(e.nops, 1);
	ck_assert_uint_eq(e.nparents, 1);
	ck_assert_str_eq(e.ops[0].key, "k");
	free(p);
	p = cbor_of("{\"data\":{\"ops\":[{\"key\":\"a\",\"type\":\"put\","
		    "\"value\":" L2
		    "},{\"key\":\"b\",\"type\":\"put\",\"value\":" L1
		    "}],\"root\":" L1 ",\"type\":\"batch\"},\"parents\":[]}",
		    &len);
	ck_assert_int_eq(lfs_fp_event_decode(&e, &a, p, len), 0);
	ck_assert(e.batch);
	ck_assert_uint_eq(e.nops, 2);
	free(p);
	static const char *bad_events[] = {
		"{\"data\":{\"key\":\"k\",\"root\":" L1
		",\"type\":\"del\",\"value\":" L2 "},\"parents\":[]}",
		"{\"data\":{\"key\":\"k\",\"type\":\"put\",\"value\":" L2
		"},\"parents\":[]}",
		"{\"data\":{\"key\":\"k\",\"root\":" L1
		",\"type\":\"put\",\"value\":" L2 "}}",
		"{\"data\":{\"ops\":[{\"key\":\"a\",\"type\":\"del\","
		"\"value\":" L2 "}],\"root\":" L1
		",\"type\":\"batch\"},\"parents\":[]}",
		"{\"data\":{\"key\":1,\"root\":" L1
		",\"type\":\"put\",\"value\":" L2 "},\"parents\":[]}",
	};
	for (size_t i = 0; i < sizeof(bad_events) / sizeof(*bad_events); i++) {
		p = cbor_of(bad_events[i], &len);
		ck_assert_msg(lfs_fp_event_decode(&e, &a, p, len) == -EBADMSG,
			      "accepted %s", bad_events[i]);
		free(p);
	}
	struct lfs_fp_header h;
	p = cbor_of("{\"fp\":{\"cars\":[[" CAR "],[" CAR "," CAR
		    "]],\"compact\":[],\"meta\":{\"head\":[" L1 "]}}}",
		    &len);
	ck_assert_int_eq(lfs_fp_header_decode(&h, &a, p, len), 0);
	ck_assert_uint_eq(h.ncars, 3);
	ck_assert_uint_eq(h.cars[0].codec, LFS_CODEC_FP_CAR);
	ck_assert_uint_eq(h.nhead, 1);
	free(p);
	p = cbor_of("{\"fp\":{\"cars\":[" CAR "],\"meta\":{\"head\":[]}}}",
		    &len);
	ck_assert_int_eq(lfs_fp_header_decode(&h, &a, p, len), -EBADMSG);
	free(p);
	const struct lfs_cbor *doc;
	static const uint8_t del[] = {0xa1, 0x63, 'd', 'e', 'l', 0xf5};
	ck_assert_int_eq(lfs_fp_value_decode(&doc, &a, del, sizeof(del)), 0);
	ck_assert_ptr_null(doc);
	p = cbor_of("{\"doc\":{\"_id\":\"x\",\"n\":1}}", &len);
	ck_assert_int_eq(lfs_fp_value_decode(&doc, &a, p, len), 0);
	ck_assert_ptr_nonnull(doc);
	free(p);
	p = cbor_of("{\"del\":false}", &len);
	ck_assert_int_eq(lfs_fp_value_decode(&doc, &a, p, len), -EBADMSG);
	free(p);
	lfs_arena_release(&a);
}
END_TEST

START_TEST(meta)
{
	/* A meta file Fireproof 0.24.19 wrote (FIREPROOF.md 3.3). */
	static const char good[] =
		"[{\"cid\":"
		"\"bafyreidugywqib2m3kl634f3rj234i7yu3mif5njiubb4qhwd6"
		"nlgm2kzm\",\"parents\":[],\"data\":"
		"\"MomRkYXRhoWZkYk1ldGFYTnsiY2"
		"FycyI6W3siLyI6ImJhZW1iZWlmenR3YmV4NGxoZG1jbjM3aWo3M2RtaWg2czQ1"
		"e"
		"mZpcmJ6M3V6NTVqNWNvcWtzeWFpZXVlIn1dfWdwYXJlbnRzgA==\"}]";
	struct lfs_arena a;
	lfs_arena_init(&a, 0);
	struct lfs_fp_meta m;
	ck_assert_int_eq(lfs_fp_meta_parse(&m, &a, good, strlen(good)), 0);
	ck_assert_uint_eq(m.ncars, 1);
	char s[LFS_CID_STRLEN + 1];
	lfs_cid_to_string(s, &m.cars[0]);
	ck_assert_str_eq(
		s,
		"baembeifztwbex4lhdmcn37ij73dmih6s45zfirbz3uz55j5coqksyaieue");
	/* Half written: retry. */
	for (size_t n = 0; n < strlen(good); n++)
		ck_assert_int_eq(lfs_fp_meta_parse(&m, &a, good, n), -EAGAIN);
	/* Whole JSON, wrong content: an error. */
	char *tampered = strdup(good);
	tampered[strlen(good) - 10] ^= 1; /* data no longer hashes to cid */
	ck_assert_int_eq(lfs_fp_meta_parse(&m, &a, tampered, strlen(good)),
			 -EBADMSG);
	free(tampered);
	static const char *bad[] = {"[]",
				    "{}",
				    "[{}]",
				    "[{\"cid\":1}]",
				    "[{\"cid\":\"bafy\",\"data\":\"Mxx\"}]",
				    "[1]"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++)
		ck_assert_msg(lfs_fp_meta_parse(&m, &a, bad[i],
						strlen(bad[i])) == -EBADMSG,
			      "accepted %s", bad[i]);
	lfs_arena_release(&a);
}
END_TEST

static Suite *fireproof_suite(void)
{
	Suite *s = suite_create("fireproof");
	TCase *tc = tcase_create("core");
	tcase_add_test(tc, base58);
	tcase_add_test(tc, keybag_layouts);
	tcase_add_test(tc, keybag_unknown);
	tcase_add_test(tc, keybag_file_name);
	tcase_add_test(tc, envelope_round_trip_and_attacks);
	tcase_add_test(tc, shards);
	tcase_add_test(tc, events_headers_values);
	tcase_add_test(tc, meta);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	if (sodium_init() < 0)
		return 99;
	return lfs_check_run(fireproof_suite());
}
