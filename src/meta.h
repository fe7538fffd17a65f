/*
 * meta: a real-time metadata endpoint beside the object store
 * (`--meta URL`), through which mounts tell each other at once that a
 * ledger has a new head, instead of waiting for the next poll.
 *
 * The object store stays the source of truth: an endpoint only carries
 * hints. A hint says "ledger <enc> has head CAR <cid>"; the sync thread
 * fetches that CAR from the store and applies it only after every check
 * ingest makes (name, authentication, blocks, events), so an endpoint that
 * lies, loses its data, floods or goes away can cost requests and speed,
 * never a ledger's contents. Meanwhile the store is polled as without an
 * endpoint (sync.h), so nothing is lost while the endpoint is down.
 *
 * The one endpoint today is Redis (or Valkey), meta_redis.c:
 *
 *   redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]     (port 6379, db 0)
 *
 * The password comes from the URL's userinfo, else $LEDGERFS_REDIS_PASSWORD
 * (the user from $LEDGERFS_REDIS_USER, for Redis 6 ACLs); it is sent with
 * AUTH and never logged nor part of lfs_meta_shown(). TLS (rediss://) needs
 * a hiredis with SSL support, which this build does not use: -EPROTONOSUPPORT.
 *
 * What Redis holds and sees, for a store shown as NS (its URL without
 * credentials), all under the name "ledgerfs:NS:heads":
 *   - a set whose members are "<enc> <cid>": a ledger's percent-encoded
 *     name and the CID of one of its head CARs (SADD when a head record is
 *     written to the store, SREM when it is removed);
 *   - a pub/sub channel on which each writer, after writing head records
 *     to the store, publishes "1 <enc> <cid>..." (the new heads).
 * Ledger names and head CIDs only: no contents, no keys, no event data.
 *
 * Threads. lfs_meta_start() runs a listener thread holding a SUBSCRIBE
 * connection; it calls wake(ctx) (with no lock of this module held) when
 * hints arrive or the connection state changes. lfs_meta_announce() and
 * lfs_meta_take() are for the sync thread (one caller at a time);
 * lfs_meta_state() for anyone.
 *
 * Deadlines. Every connect and command has a deadline (LFS_META_IO_MS);
 * the listener sends a PING after LFS_META_IDLE_MS of silence and gives
 * the connection up when no answer comes within LFS_META_IO_MS, so a
 * Redis that is stopped (SIGSTOP), gone or black-holed is noticed within
 * seconds and never hangs a caller; reconnection is retried with a backoff
 * up to LFS_META_RETRY_MAX_MS. lfs_meta_stop() returns within about
 * LFS_META_IO_MS. A reply or message larger than LFS_META_REPLY_MAX ends
 * the connection (and counts as the endpoint being unreachable).
 *
 * Bounds. At most LFS_META_QUEUE hints wait to be taken; more, or a
 * message that does not parse, and lfs_meta_take() reports `poll` (ask
 * the store instead) and the excess is dropped. A message holds at most
 * LFS_META_MSG_CIDS CIDs and LFS_META_MSG_MAX bytes.
 *
 * Errors: -EINVAL a bad URL; -EPROTONOSUPPORT an endpoint this build does
 * not offer; -ENOMEM. Runtime failures are not errors of any call: they
 * show in lfs_meta_state() and the log (once per change).
 */
#ifndef LFS_META_H
#define LFS_META_H

#include <stdbool.h>
#include <stddef.h>

#include "cid.h"

#define LFS_META_IO_MS        1000
#define LFS_META_IDLE_MS      5000
#define LFS_META_RETRY_MAX_MS 10000
#define LFS_META_QUEUE        1024
#define LFS_META_MSG_MAX      4096
#define LFS_META_MSG_CIDS     16
#define LFS_META_ENC_MAX      800 /* a ledger name, percent-encoded */
#define LFS_META_REPLY_MAX    ((size_t)1 << 20)

struct lfs_meta;

struct lfs_meta_hint {
	char enc[LFS_META_ENC_MAX + 1];
	struct lfs_cid car;
};

/*
 * Open the endpoint url for the store shown as ns (connections are made
 * later, by lfs_meta_start() and lfs_meta_announce()).
 */
int lfs_meta_open(struct lfs_meta **out, const char *url, const char *ns);
void lfs_meta_free(struct lfs_meta *m);

/* The URL without credentials, for messages. */
const char *lfs_meta_shown(const struct lfs_meta *m);

/* Start listening; wake(ctx) is called from the listener thread. */
int lfs_meta_start(struct lfs_meta *m, void (*wake)(void *ctx), void *ctx);
/* Stop listening (within about LFS_META_IO_MS). */
void lfs_meta_stop(struct lfs_meta *m);

/*
 * Tell the others: ledger enc's head records for added were written to
 * the store, those for removed were removed. Best effort, bounded by
 * LFS_META_IO_MS; after a failure, calls do nothing for a backoff.
 */
void lfs_meta_announce(struct lfs_meta *m, const char *enc,
		       const struct lfs_cid *added, size_t nadded,
		       const struct lfs_cid *removed, size_t nremoved);

/*
 * Take up to max received hints into out; *poll is set when the store
 * should be listed now (the listener (re)subscribed, hints were dropped,
 * a message did not parse). Returns how many were taken.
 */
size_t lfs_meta_take(struct lfs_meta *m, struct lfs_meta_hint *out, size_t max,
		     bool *poll);

/*
 * For status: "live" (subscribed and answering), "connecting", or
 * "unreachable, polling the store".
 */
const char *lfs_meta_state(struct lfs_meta *m);

/*
 * Parse one announcement "1 <enc> <cid> [<cid>...]" (len bytes, not
 * NUL-terminated) into out[0..max): 0 and *n, or -EBADMSG for anything
 * else (wrong version, an empty or oversized field, a CID that is not a
 * raw CIDv1, too many CIDs, stray bytes). Exposed for tests and fuzzing.
 */
int lfs_meta_parse(struct lfs_meta_hint *out, size_t max, size_t *n,
		   const char *msg, size_t len);

/* Format the announcement of added into buf (size LFS_META_MSG_MAX + 1):
 * its length, or -EFBIG when it does not fit (announce fewer). */
int lfs_meta_format(char *buf, const char *enc, const struct lfs_cid *added,
		    size_t nadded);

#endif
