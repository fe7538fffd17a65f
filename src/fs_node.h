/*
 * fs_node: the inode table and name resolution.
 *
 * A node is one name the kernel may know: the root, a ledger, a document,
 * a folder, a scratch file or directory, a snapshot directory, folder or
 * document, a by-time link, the control directory or a control file.
 * Nodes inside a ledger are named by their path from the ledger's
 * directory, so a document's node names its id (fsname.h). Its inode number is
 * a SipHash of its identity (kind, ledger, event, name), so it is the same on
 * every mount; a collision moves on to the next free number. Two indexes: by
 * number (the kernel's requests) and by identity (lookups by name). A node
 * lives while the kernel holds lookups on it (nlookup) or an operation pins it
 * (nopen).
 *
 * Locks (fs_int.h): functions whose comment says "caller holds fs->lock"
 * run under it; the others take it themselves and are called without it.
 */
#ifndef LFS_FS_NODE_H
#define LFS_FS_NODE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>

#include "buf.h"
#include "fileio.h"
#include "fs_int.h"
#include "fs_ledger.h"

enum lfs_node_kind {
	LFS_N_ROOT,
	LFS_N_LEDGER,
	LFS_N_DOC,
	LFS_N_FOLDER,  /* a folder of documents (fsname.h) */
	LFS_N_SCRATCH, /* a local file or directory (a scratch directory's
			* children are all scratch) */
	LFS_N_SNAPS,
	LFS_N_SNAP,
	LFS_N_SNAPDOC,
	LFS_N_SNAPFOLDER,
	LFS_N_BYTIME,
	LFS_N_BYTIME_LINK,
	LFS_N_CTLDIR,
	LFS_N_CTL,
};

/* The inode number of the mount's root (FUSE_ROOT_ID). */
#define LFS_NODE_ROOT_INO 1

/*
 * A document version as the id it was committed under and its block's
 * CID, in 16 bytes where the CID alone takes 33: 128-bit SipHash of both
 * under a key the mount draws at start (fs->vtag_key). Equal tags are
 * the same version: a chance collision is 2^-128, and none can be aimed,
 * the key being secret. Only compared, never read back (fs_view.c).
 */
struct lfs_vtag {
	uint8_t b[16];
};

/* What a node in a snapshot knows of it (allocated with the node). */
struct lfs_node_snap {
	struct lfs_cid event; /* the snapshot's (a by-time link's target) */
	struct lfs_cid root;  /* its ledger root */
	int64_t t;            /* its time; 0 until learnt */
};

struct lfs_node {
	/* Fields are ordered to pack (one node per inode the kernel holds:
	 * 100,000 documents listed are 100,000 nodes). */
	uint64_t ino;
	enum lfs_node_kind kind;
	int nopen;
	struct lfs_fsl *lg;
	/* Under fs->lock: a rename gives a node a new name (and kind). */
	/* Under a ledger (documents, folders, scratch): the path from the
	 * ledger's directory ("notes/2026/a.json"); in a snapshot, from the
	 * snapshot's directory; otherwise the name in its parent. */
	char *name;
	char *id; /* documents */
	uint64_t nlookup;
	/* The identity's hash: the number a node gets unless taken. */
	uint64_t key;
	struct lfs_node *hnext; /* chain by ino */
	struct lfs_node *knext; /* chain by identity (key) */
	/* Snapshots, their contents and by-time links (lfs_node_has_snap),
	 * else NULL: what documents do not need, they do not carry. */
	struct lfs_node_snap *snap;
	bool indexed; /* found by its identity (a replaced node is not) */
	/* Documents (under fs->lock; fs_view.h): pc_bound below. */
	bool pc_bound;
	bool pc_written;
	/* Documents (under fs->lock): ent_root below. */
	bool ent_bound;
	/* attr_doc below. */
	bool attr_valid;
	/* Scratch files while open (under fs->lock): a descriptor of the
	 * file, so that a stat after an unlink still answers, as on any
	 * file system; closed with the last open. -1 otherwise. */
	int sfd;
	int invalid; /* last flush found invalid content (errno) */
	/* Documents being written (under fs->lock): one buffer shared by
	 * every open file. */
	struct lfs_buf *wbuf;
	uint64_t wgen; /* bumped by every change to wbuf */
	uint64_t committed_gen;
	int nwriters;
	int pc_open;
	/* Documents (under fs->lock): the committed version of the id
	 * hashed ent_idhash at ledger root ent_root, its time and length,
	 * so that while the ledger does not move, a stat needs no index
	 * lookup (fs_view.c's bound_entry); ent_bound: they are set. */
	uint64_t ent_idhash;
	int64_t ent_t;
	size_t ent_size;
	struct lfs_cid ent_root, ent_doc;
	/*
	 * Documents (under fs->lock; fs_view.h): the version whose pages
	 * and size the kernel holds for this inode (pc_bound: the version
	 * and id tagged pc_tag, pc_size bytes, mtime pc_mtime_us), and how
	 * many open files read it through the page cache (pc_open).
	 * pc_written: a writer opened the node since it was bound.
	 */
	struct lfs_vtag pc_tag;
	size_t pc_size;
	int64_t pc_mtime_us;
	/* The version whose attributes the kernel was last given to keep
	 * (attr_valid: no writer open since), so that binding the inode to
	 * that version need not drop them. */
	struct lfs_vtag attr_tag;
	int64_t attr_until_ms; /* until when (CLOCK_MONOTONIC), if valid */
};

/* Snapshots and their contents cannot be written. */
bool lfs_node_read_only(enum lfs_node_kind k);
/* Nodes of kind k carry a struct lfs_node_snap. */
bool lfs_node_has_snap(enum lfs_node_kind k);

/*
 * The inode number stat shows for a scratch file or directory: its local
 * file's (st_dev, st_ino), hashed like node numbers, so hard links of
 * one local file show one number, which a rename keeps. The node itself
 * (what the kernel asks about) keeps its own number.
 */
uint64_t lfs_node_local_ino(const struct stat *st);

/* The inode number a node of this identity gets (before collisions). */
uint64_t lfs_node_hash(enum lfs_node_kind k, const char *ledger,
		       const struct lfs_cid *event, const char *name);

/* Make the table and its root node. */
int lfs_node_table_init(struct lfs_fs *fs);
/* Free every node and the table (no thread left). */
void lfs_node_table_release(struct lfs_fs *fs);

/* The node numbered ino, or NULL. */
struct lfs_node *lfs_node_by_ino(struct lfs_fs *fs, uint64_t ino);

/*
 * The live node of document or scratch file `name` of lg, or NULL.
 * Caller holds fs->lock.
 */
struct lfs_node *lfs_node_find_locked(struct lfs_fs *fs, enum lfs_node_kind k,
				      struct lfs_fsl *lg, const char *name);

/* Free n if nothing refers to it any more. Caller holds fs->lock. */
void lfs_node_maybe_free(struct lfs_fs *fs, struct lfs_node *n);

/* Add or drop kernel lookups (forget). Caller holds fs->lock for _forget. */
void lfs_node_lookup_ref(struct lfs_fs *fs, struct lfs_node *n);
void lfs_node_lookup_unref(struct lfs_fs *fs, struct lfs_node *n);
void lfs_node_forget_locked(struct lfs_fs *fs, uint64_t ino, uint64_t nlookup);

/* Hold n for an operation or an open file (nopen), and let it go: a node
 * is freed when neither the kernel nor anyone else holds it. */
void lfs_node_ref(struct lfs_fs *fs, struct lfs_node *n);
void lfs_node_unref(struct lfs_fs *fs, struct lfs_node *n);

/*
 * Resolve name under parent to a node (made if needed, and held: the
 * caller lfs_node_unrefs it when done). Ledgers are opened, snapshot
 * directories and by-time links learn their event. -ENOENT for a name that
 * cannot exist there, the ledger's error for a ledger that is not open.
 */
int lfs_node_resolve(struct lfs_fs *fs, struct lfs_node *parent,
		     const char *name, struct lfs_node **out);

/*
 * The path of `name` in directory node p, malloc'd into *out: p's path
 * and name joined by '/' (name alone in a ledger or a snapshot).
 * -ENAMETOOLONG past LFS_FSPATH_MAX, -ENOMEM.
 */
int lfs_node_child_path(char **out, const struct lfs_node *p, const char *name);

/*
 * n's local file or directory (a scratch file or directory, or a folder's
 * local directory) under its ledger's scratch directory, ready for *at
 * calls (lfs_at_open, with mkdirs making the directories above it); n's
 * path is read under fs->lock, which a rename takes to change it. 0 or
 * a negative errno (lfs_walk_at's); out is closed with lfs_at_close.
 */
int lfs_node_at(struct lfs_at *out, struct lfs_fs *fs, const struct lfs_node *n,
		bool mkdirs);

/*
 * Is path of lg a folder because of what the ledger or its drafts hold
 * (documents under it), not only a local directory? Reads the index and
 * the disk; no lock held.
 */
bool lfs_node_folder_held(struct lfs_fsl *lg, const char *path);
/*
 * Does anything documents hold make path of lg a folder: ids under it in
 * the index, or its directory in the drafts? 0 with *out set, or the
 * index's negative errno. Reads the index and the disk; no lock held.
 */
int lfs_node_folder_has(bool *out, struct lfs_fsl *lg, const char *path);

/*
 * A folder and a scratch file of the same name (a pull or `ledgerfs put`
 * brought documents x/a while a scratch file x was here): the folder keeps
 * the name, as on every other machine, and the file moves to the first
 * free scratch name of "<path>~local", "<path>~local2"... (not a file nor
 * a folder), said in the log and in .ledgerfs/errors, so nothing is
 * hidden. Nothing happens unless path is a scratch file (not a
 * directory). The new path, malloc'd, in *out (NULL when nothing moved).
 * No lock held.
 */
int lfs_node_scratch_aside(char **out, struct lfs_fs *fs, struct lfs_fsl *lg,
			   const char *path);

/* Is n a directory inside a ledger (a folder or a scratch directory)? */
bool lfs_node_is_subdir(struct lfs_fs *fs, const struct lfs_node *n);

/*
 * A directory `from` of lg became `to`: every node at or under `from`
 * moves with it (documents' ids follow their new paths).
 */
void lfs_node_rekey_tree(struct lfs_fs *fs, struct lfs_fsl *lg,
			 const char *from, const char *to);

/*
 * The inode numbers of lg's documents, folders and scratch files found at
 * or under path, in a malloc'd *out (free it; NULL when none): their count
 * (fewer when out of memory). A walk of the whole table. Caller holds
 * fs->lock.
 */
size_t lfs_node_under_locked(struct lfs_fs *fs, struct lfs_fsl *lg,
			     const char *path, uint64_t **out);

/* The scratch file `name` was unlinked: its node lives on for whoever
 * holds it open (a stat answers from its descriptor), but no lookup finds
 * it; the name's next file gets a node of its own. */
void lfs_node_unname(struct lfs_fs *fs, struct lfs_fsl *lg, const char *name);

/*
 * Node n is no longer found by its name: open files of it keep working
 * (it lives while held), and the name's next lookup makes a node of its
 * own, with another inode number. Takes fs->lock.
 */
void lfs_node_unindex(struct lfs_fs *fs, struct lfs_node *n);

/*
 * After a rename the kernel keeps the source inode under the new name:
 * give lg's node `name` (a document when was_doc) the new name and, with
 * newid, make it document newid, else a scratch file. Its number stays.
 * A node the new name had (the replaced file) is no longer found by name:
 * open files of it keep working, lookups find the renamed node.
 */
void lfs_node_rekey(struct lfs_fs *fs, struct lfs_fsl *lg, const char *name,
		    bool was_doc, const char *newname, const char *newid);

#endif
