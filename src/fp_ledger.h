/*
 * fp_ledger: one Fireproof 0.24 ledger, read-only — its documents, heads
 * and history — from the files @fireproof/core's file storage writes.
 *
 *   STORAGE/<name>/meta/main.json   pointer to the newest commit
 *   STORAGE/<name>/data/<car>.car   encrypted CARs (fp_crypt.h)
 *   STORAGE/<name>/data/<car>       attachment CARs (no suffix)
 *   KEYBAG/_<name>_data_.json       the ledger's key
 *
 * State. Reading meta/main.json names the newest commit's cars; the first
 * one's root is the header, which lists every other car of the log. Each
 * car is decrypted once and kept (car files never change); its blocks are
 * indexed by CID. The state — heads, the live documents and every clock
 * event — is rebuilt from them and published as an immutable, refcounted
 * struct lfs_fp_state: readers take a reference (lfs_fp_ledger_state) and
 * read without locks while a refresh builds the next one.
 *
 * The merged view. With one head the documents are the pail shards under
 * the head event's root. With several heads they are computed as pail's
 * crdt root() does (docs/FIREPROOF.md): the common ancestor's shards, then
 * every event between it and the heads replayed, heavier (deeper) events
 * first, ties by CID string. Deletes are puts of the {del: true} block;
 * the genesis key is never a document.
 *
 * Refresh. The application rewrites meta/main.json in place (truncate, then
 * write). A refresh that finds incomplete JSON returns -EAGAIN and keeps
 * the current state; the caller tries again later. Same bytes as last
 * time: nothing to do.
 *
 * Time. Fireproof's clock events carry no time. Each event is given the
 * modification time of the oldest car file that holds it (its own
 * commit's car while that exists; a compaction's car afterwards).
 *
 * Writing is not supported (a later step: the decoders in fp_format.h get
 * encoders, and a commit path appends a car and rewrites the meta file).
 *
 * Errors: as fp_crypt.h and fp_format.h, plus -ENOENT (no such ledger,
 * document, event or block; a car the log names that is missing),
 * -ENOKEY (the keybag has no key for a car), -ERANGE (a number JSON
 * cannot show here: an integer beyond int64). lfs_fp_ledger_error() says
 * in words what the last failure was. Thread-safe.
 */
#ifndef LFS_FP_LEDGER_H
#define LFS_FP_LEDGER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "arena.h"
#include "buf.h"
#include "cid.h"
#include "fp_format.h"

#define LFS_FP_CAR_MAX ((size_t)256 << 20) /* one car file */

struct lfs_fp_ledger;

/* A live document: its id and value block. */
struct lfs_fp_doc {
	const char *id; /* NUL-terminated */
	size_t id_len;
	struct lfs_cid value;
};

/* A clock event with what it did. */
struct lfs_fp_evinfo {
	struct lfs_cid cid;
	int64_t t_ns; /* see "Time" above */
	struct lfs_fp_event ev;
};

struct lfs_fp_state {
	struct lfs_arena a; /* everything below */
	int refs;
	struct lfs_cid *heads; /* sorted by CID bytes */
	size_t nheads;
	struct lfs_fp_doc *docs; /* live documents, sorted bytewise by id */
	size_t ndocs;
	struct lfs_fp_evinfo
		*events; /* newest first (children before parents) */
	size_t nevents;
	size_t ncars;   /* car files the log names */
	size_t missing; /* of those, how many could not be read */
};

/*
 * Open name's ledger under storage with keys from keybag, and load it.
 * Retries an incomplete meta file for up to wait_ms. -ENOENT: no such
 * ledger directory. When the ledger exists but cannot be loaded (its key,
 * its meta file, a car) *out is set all the same, with no state and
 * lfs_fp_ledger_error() saying why; close it in every case where *out was
 * set. -EINVAL for a name that cannot be a directory name.
 */
int lfs_fp_ledger_open(struct lfs_fp_ledger **out, const char *storage,
		       const char *keybag, const char *name, int wait_ms);
void lfs_fp_ledger_close(struct lfs_fp_ledger *l);

const char *lfs_fp_ledger_name(const struct lfs_fp_ledger *l);

/*
 * Read meta/main.json again and move to the commit it names. *out_changed
 * tells whether the state moved. -EAGAIN: the file is being written.
 */
int lfs_fp_ledger_refresh(struct lfs_fp_ledger *l, bool *out_changed);

/* The current state, referenced; drop it with lfs_fp_state_unref(). */
struct lfs_fp_state *lfs_fp_ledger_state(struct lfs_fp_ledger *l);
void lfs_fp_state_unref(struct lfs_fp_state *s);

/* Binary search of a state's documents; NULL when absent. */
const struct lfs_fp_doc *lfs_fp_state_find(const struct lfs_fp_state *s,
					   const char *id, size_t id_len);

/* The event with this CID in s, or NULL. */
const struct lfs_fp_evinfo *lfs_fp_state_event(const struct lfs_fp_state *s,
					       const struct lfs_cid *ev);

/*
 * The live documents after event ev (a snapshot): malloc'd array sorted
 * by id, strings in a (the caller's arena). Documents whose block a
 * compaction dropped are left out.
 */
int lfs_fp_ledger_docs_at(struct lfs_fp_ledger *l, const struct lfs_fp_state *s,
			  const struct lfs_cid *ev, struct lfs_arena *a,
			  struct lfs_fp_doc **out, size_t *out_n);

/*
 * Append the document in value block doc as ledgerfs shows documents
 * (dagjson.h: sorted keys, two-space indent, "_id": id, newline).
 */
int lfs_fp_ledger_render(struct lfs_fp_ledger *l, const struct lfs_cid *doc,
			 const char *id, struct lfs_buf *out);

/* The document as JSON (new reference). */
int lfs_fp_ledger_doc_json(struct lfs_fp_ledger *l, const struct lfs_cid *doc,
			   const char *id, void **out_json);

/* True when the block is held by a loaded car. */
bool lfs_fp_ledger_has_block(struct lfs_fp_ledger *l, const struct lfs_cid *c);

/*
 * An attachment's bytes: the raw block file in the attachment car car
 * (data/<car>, no suffix), appended to out.
 */
int lfs_fp_ledger_file(struct lfs_fp_ledger *l, const struct lfs_cid *car,
		       const struct lfs_cid *file, struct lfs_buf *out);

/* Words for the last error (a copy into out, NUL-terminated). */
void lfs_fp_ledger_error(struct lfs_fp_ledger *l, char *out, size_t size);

/*
 * The Fireproof ledgers under storage: directories holding meta/ or data/
 * (malloc'd array of malloc'd names, sorted).
 */
int lfs_fp_list(char ***out, size_t *out_n, const char *storage);

/*
 * Where Fireproof keeps things: a directory or a file:// URL (query
 * stripped) from arg, else env (FP_STORAGE_URL / FP_KEYBAG_URL), else
 * $HOME/.fireproof/v0.19 or $HOME/.fireproof/keybag. malloc'd.
 */
char *lfs_fp_storage_dir(const char *arg);
char *lfs_fp_keybag_dir(const char *arg);

#endif
