/*
 * fs_view: what a node reads as — a document's text (its write buffer,
 * else its draft, else its committed version rendered as pretty JSON,
 * cached), attributes, the control files and directory listings.
 *
 * Rendering. A committed version's text is a pure function of its block
 * CID and id, so renders are cached (fs_render's cache, which a save
 * fills too). A stat
 * needs only the length: the ledger's size table (fs_render.h) knows it
 * for every version rendered or committed on this home, so a stat renders
 * a version at most once; and each document node remembers the version
 * it found at the ledger's root, so while the ledger does not move a stat,
 * a lookup or an open needs no index lookup either.
 *
 * Attribute times (lfs_view_stat's *ttl): a committed document's attributes
 * may be kept by the kernel for fs->doc_ttl, since they change only by
 * this mount's requests on the name or by commits from elsewhere, which
 * fs->moved reports; write buffers, drafts, scratch and control files: 0.
 *
 * Locks (fs_int.h): called with no fs lock held.
 */
#ifndef LFS_FS_VIEW_H
#define LFS_FS_VIEW_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>

#include "arena.h"
#include "buf.h"
#include "fs_int.h"
#include "fs_ledger.h"
#include "fs_node.h"
#include "index.h"

/* The text of a committed document version as its file shows it. */
int lfs_view_render(struct lfs_fs *fs, struct lfs_fsl *lg,
		    const struct lfs_cid *doc, const char *id,
		    struct lfs_buf *out);

/* Append a whole local file (at most LFS_FS_TEXT_MAX: -EFBIG) to out;
 * -EPERM when it is not a regular file (a link is never followed). */
int lfs_view_read_file(struct lfs_buf *out, const char *path, struct stat *st);
/* The same for name in directory dir (a *at call's pair). */
int lfs_view_read_file_at(struct lfs_buf *out, int dir, const char *name,
			  struct stat *st);

struct lfs_docstate {
	bool exists;
	bool draft;   /* the bytes are a write buffer or a draft */
	bool writing; /* an open write buffer's, not yet saved */
	int64_t mtime_us;
	struct lfs_index_entry entry; /* when committed (has_entry) */
	bool has_entry;
};

/*
 * The bytes document node n holds now: the open write buffer, else the
 * draft, else the committed version (hidden when its delete is pending).
 * -ENOENT when none exists; the ledger's error when it is not open.
 * ds->entry's strings are in a.
 */
int lfs_view_doc(struct lfs_fs *fs, struct lfs_node *n, struct lfs_buf *out,
		 struct lfs_docstate *ds, struct lfs_arena *a);

/*
 * The bytes name holds in lg: a document's text (through its live node,
 * which may hold a write buffer) or a scratch file's. *is_doc says which.
 */
int lfs_view_name(struct lfs_fs *fs, struct lfs_fsl *lg, const char *name,
		  struct lfs_buf *out, bool *is_doc);

/*
 * Reading documents through the kernel's page cache. The kernel keeps one
 * set of pages and one size per inode; a document's inode shows one
 * committed version to every file that reads it cached (the node's
 * binding, fs_node.h's pc_*). Opening binds the inode to the version the
 * name holds when no cached reader holds another one: o->keep when the
 * kernel's pages are of it already (FOPEN_KEEP_CACHE), else o->fresh (the
 * kernel is to drop the inode's pages, and with o->attrs its attributes,
 * unless the last it was given to keep were this version's). While cached
 * readers are open (and no writer came), the inode's attributes stay
 * those of the bound version, even after the name moved on; a lookup of
 * the name then gets a node of its own (lfs_view_pin_stale), so a rename
 * over the name or a pulled commit never changes what an open file reads.
 *
 * A draft, a write buffer, or a version other than the one open readers
 * hold is read from a snapshot in out, past the cache (o->cached false).
 * o->id (malloc'd) and o->doc name the version a cached file reads
 * (lfs_view_render). Every cached open ends with lfs_view_close_doc.
 */
struct lfs_view_open {
	bool cached; /* read through the page cache */
	bool keep;   /* the kernel's pages are of this version */
	bool fresh;  /* bound anew: the kernel drops the pages */
	bool attrs;  /* and the attributes, which are of another version */
	/* Bound the first time (size bytes): the inode has no pages of
	 * this mount's reads yet, so the text may be stored there at once
	 * (fs.c's preload); unless written, when it may hold pages of
	 * another kind (a writer's mapping, a scratch file renamed over the
	 * name), dropped first. */
	bool first, written;
	size_t size;
	struct lfs_cid doc;
	char *id;
};
int lfs_view_open_doc(struct lfs_fs *fs, struct lfs_node *n,
		      struct lfs_buf *out, struct lfs_view_open *o);
void lfs_view_close_doc(struct lfs_fs *fs, struct lfs_node *n);

/* A writer opened n: writes in place are not atomic for readers (as on
 * any file system), so the inode shows what the writer makes. */
void lfs_view_writer_opened(struct lfs_fs *fs, struct lfs_node *n);

/* Does the kernel hold valid attributes of document path of lg (given by
 * this mount and not expired; it asks again when told to forget them)?
 * Then a listing need not send them again. */
bool lfs_view_attrs_kept(struct lfs_fs *fs, struct lfs_fsl *lg,
			 const char *path);

/* Does n's inode show a version its name no longer holds (cached readers
 * hold it)? Then the name is to get a node of its own. */
bool lfs_view_pin_stale(struct lfs_fs *fs, struct lfs_node *n);

/*
 * Attributes of any node; *ttl is how long the kernel may keep them. The
 * caller tells the kernel (a reply), or, with _quiet, does not (a check
 * that something exists).
 */
int lfs_view_stat(struct lfs_fs *fs, struct lfs_node *n, struct stat *st,
		  double *ttl);
int lfs_view_stat_quiet(struct lfs_fs *fs, struct lfs_node *n, struct stat *st);

/*
 * The content of control file n (.ledgerfs/<name>). "wait" blocks until
 * the remote has everything (up to 60 s, -ETIMEDOUT), asking interrupted
 * (may be NULL) every 200 ms whether its reader gave up (-EINTR).
 */
int lfs_view_ctl(struct lfs_fs *fs, struct lfs_node *n, struct lfs_buf *out,
		 bool (*interrupted)(void *ctx), void *ctx);

/* A directory listing: names, their types and inode numbers. */
struct lfs_listing {
	char **names;
	mode_t *modes;
	uint64_t *inos;
	size_t n, cap;
};

/* List directory n ("." and ".." first). Free with lfs_listing_release. */
int lfs_view_list(struct lfs_fs *fs, struct lfs_node *n,
		  struct lfs_listing *out);
void lfs_listing_release(struct lfs_listing *l);

#endif
