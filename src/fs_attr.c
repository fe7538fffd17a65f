#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "fs_attr.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <unistd.h>

#include "buf.h"
#include "fileio.h"
#include "fsname.h"
#include "hex.h"
#include "log.h"

struct attr_entry {
	char *name;
	struct lfs_attr a;
	struct attr_entry *next;
};

/*
 * The file is a journal: a change appends its name's line (all "-" once
 * the name has no attributes left), the last line of a name wins, and it
 * is written whole again only once it holds twice as many lines as names.
 * So saving costs what changed, not the table (rsync -a sets a mode and a
 * time on every file it copies).
 */
struct lfs_attr_table {
	struct lfs_fsl *lg;
	struct attr_entry **buckets;
	size_t nbuckets, n;
	struct lfs_buf log; /* lines of changes the file does not hold yet */
	size_t lines;       /* lines the file holds */
	bool whole;         /* write the file whole at the next save */
	struct lfs_attr_table *next;
};

static void log_change(struct lfs_attr_table *t, const char *name,
		       const struct lfs_attr *a);

static size_t name_hash(const char *s)
{
	uint64_t h = 0xcbf29ce484222325ull;
	for (; *s; s++)
		h = (h ^ (uint8_t)*s) * 0x100000001b3ull;
	return (size_t)h;
}

static struct attr_entry **slot(struct lfs_attr_table *t, const char *name)
{
	struct attr_entry **pp = &t->buckets[name_hash(name) % t->nbuckets];
	while (*pp && strcmp((*pp)->name, name))
		pp = &(*pp)->next;
	return pp;
}

static int grow(struct lfs_attr_table *t)
{
	size_t nb = t->nbuckets ? t->nbuckets * 2 : 64;
	struct attr_entry **b = calloc(nb, sizeof(*b));
	if (!b)
		return -ENOMEM;
	for (size_t i = 0; i < t->nbuckets; i++)
		for (struct attr_entry *e = t->buckets[i], *next; e; e = next) {
			next = e->next;
			size_t k = name_hash(e->name) % nb;
			e->next = b[k];
			b[k] = e;
		}
	free(t->buckets);
	t->buckets = b;
	t->nbuckets = nb;
	return 0;
}

/* The entry of name, made if missing (NULL: out of memory). */
static struct attr_entry *entry_get(struct lfs_attr_table *t, const char *name)
{
	if (t->n + 1 > t->nbuckets && grow(t))
		return NULL;
	struct attr_entry **pp = slot(t, name);
	if (*pp)
		return *pp;
	struct attr_entry *e = calloc(1, sizeof(*e));
	if (!e || !(e->name = strdup(name))) {
		free(e);
		return NULL;
	}
	*pp = e;
	t->n++;
	return e;
}

/* Forget name's entry; true when it had one. */
static bool entry_unlink(struct lfs_attr_table *t, const char *name)
{
	if (!t->nbuckets)
		return false;
	struct attr_entry **pp = slot(t, name), *e = *pp;
	if (!e)
		return false;
	*pp = e->next;
	free(e->name);
	free(e);
	t->n--;
	return true;
}

/* name has no attributes any more. */
static void entry_drop(struct lfs_attr_table *t, const char *name)
{
	if (entry_unlink(t, name))
		log_change(t, name, &(struct lfs_attr){0});
}

static void table_free(struct lfs_attr_table *t)
{
	for (size_t i = 0; i < t->nbuckets; i++)
		for (struct attr_entry *e = t->buckets[i], *next; e; e = next) {
			next = e->next;
			free(e->name);
			free(e);
		}
	free(t->buckets);
	lfs_buf_release(&t->log);
	free(t);
}

/* ---- the file ---- */

/* "-" or a number in base (8 or 10): *set tells which. */
static int parse_field(char **p, int base, bool *set, int64_t *out)
{
	char *s = strsep(p, " ");
	if (!s)
		return -EINVAL;
	*set = strcmp(s, "-") != 0;
	if (!*set)
		return 0;
	char *end;
	errno = 0;
	long long v = strtoll(s, &end, base);
	return errno || *end || end == s ? -EINVAL : (*out = v, 0);
}

static int parse_line(struct lfs_attr_table *t, char *line)
{
	char *p = line, *v = strsep(&p, " ");
	if (!v || strcmp(v, "v1"))
		return -EINVAL;
	struct lfs_attr a = {0};
	bool set;
	int64_t x = 0;
	static const struct {
		int base;
		unsigned bit;
	} f[] = {{8, LFS_ATTR_MODE},
		 {10, LFS_ATTR_UID},
		 {10, LFS_ATTR_GID},
		 {10, LFS_ATTR_MTIME}};
	for (size_t i = 0; i < 4; i++) {
		if (parse_field(&p, f[i].base, &set, &x))
			return -EINVAL;
		if (!set)
			continue;
		a.set |= f[i].bit;
		if (i == 0)
			a.mode = (mode_t)x & 07777;
		else if (i == 1)
			a.uid = (uid_t)x;
		else if (i == 2)
			a.gid = (gid_t)x;
		else
			a.mtime_us = x;
	}
	char *cid = strsep(&p, " ");
	if (!cid || !p ||
	    (strcmp(cid, "-") && lfs_cid_from_string(&a.version, cid)))
		return -EINVAL;
	char name[LFS_FSPATH_MAX + 1]; /* a path in the ledger */
	size_t hl = strlen(p);
	if (hl % 2 || hl / 2 > LFS_FSPATH_MAX)
		return -EINVAL;
	for (size_t i = 0; i < hl / 2; i++) {
		int hi = lfs_hex_value(p[2 * i]),
		    lo = lfs_hex_value(p[2 * i + 1]);
		if (hi < 0 || lo < 0 || (!hi && !lo))
			return -EINVAL;
		name[i] = (char)(hi << 4 | lo);
	}
	name[hl / 2] = '\0';
	t->lines++;
	if (!a.set) {
		entry_unlink(t, name); /* a journal line: none left */
		return 0;
	}
	struct attr_entry *e = entry_get(t, name);
	if (!e)
		return -ENOMEM;
	e->a = a;
	return 0;
}

/*
 * Attributes kept before folders named a document with '/' in its id by
 * its flat name ("a%2Fb.json"); it is now "a/b.json". Move each such
 * entry to its path (unless the path has its own), and save.
 */
static int migrate_flat(struct lfs_attr_table *t)
{
	struct attr_entry *moved = NULL;
	for (size_t i = 0; i < t->nbuckets; i++)
		for (struct attr_entry **pp = &t->buckets[i], *e; (e = *pp);) {
			char id[LFS_INDEX_ID_MAX + 1];
			char path[LFS_FSPATH_MAX + 1];
			if (strchr(e->name, '/') || !strstr(e->name, "%2F") ||
			    !lfs_fsname_to_id(id, sizeof(id), e->name) ||
			    !strchr(id, '/') ||
			    lfs_fsname_path_from_id(path, id) < 0 ||
			    !strcmp(path, e->name)) {
				pp = &e->next;
				continue;
			}
			char *np = strdup(path);
			if (!np)
				return -ENOMEM;
			lfs_info("ledger '%s': the attributes of %s are now "
				 "those of %s (folders)",
				 t->lg->name, e->name, path);
			free(e->name);
			e->name = np;
			*pp = e->next;
			e->next = moved;
			moved = e;
			t->n--;
		}
	while (moved) {
		struct attr_entry *e = moved;
		moved = e->next;
		t->whole = true;
		if (*slot(t, e->name)) { /* the path's own attributes win */
			free(e->name);
			free(e);
			continue;
		}
		struct attr_entry **pp = slot(t, e->name);
		e->next = NULL;
		*pp = e;
		t->n++;
	}
	return 0;
}

static char *attrs_path(struct lfs_fsl *lg)
{
	return lfs_fs_path(lg->state, "attrs");
}

/* Read lg's file into a new table (an empty one when there is none). */
static int load(struct lfs_attr_table **out, struct lfs_fsl *lg)
{
	struct lfs_attr_table *t = calloc(1, sizeof(*t));
	char *path = attrs_path(lg);
	if (!t || !path) {
		free(t);
		free(path);
		return -ENOMEM;
	}
	t->lg = lg;
	lfs_buf_init(&t->log, 0);
	int rc = grow(t);
	FILE *f = rc ? NULL : fopen(path, "re");
	if (!rc && !f && errno != ENOENT)
		lfs_warn("ledger '%s': cannot read %s: %s; attributes set "
			 "earlier are not shown",
			 lg->name, path, strerror(errno));
	char *line = NULL;
	size_t cap = 0;
	ssize_t len;
	while (f && !rc && (len = getline(&line, &cap, f)) > 0) {
		/* A line cut short by a crash while appending is not one
		 * (its name could be another's): it goes at the next save. */
		if (line[len - 1] != '\n') {
			t->whole = true;
			break;
		}
		line[len - 1] = '\0';
		int e = parse_line(t, line);
		if (e == -ENOMEM)
			rc = e;
	}
	free(line);
	if (f)
		fclose(f);
	free(path);
	if (!rc)
		rc = migrate_flat(t);
	if (rc) {
		table_free(t);
		return rc;
	}
	*out = t;
	return 0;
}

static struct lfs_attr_table *find(struct lfs_fs *fs, struct lfs_fsl *lg)
{
	for (struct lfs_attr_table *t = fs->attrs; t; t = t->next)
		if (t->lg == lg)
			return t;
	return NULL;
}

/* Make sure lg's table is loaded; then find() under fs->lock finds it. */
static int loaded(struct lfs_fs *fs, struct lfs_fsl *lg)
{
	pthread_mutex_lock(&fs->lock);
	bool have = find(fs, lg) != NULL;
	pthread_mutex_unlock(&fs->lock);
	if (have)
		return 0;
	struct lfs_attr_table *t;
	int rc = load(&t, lg);
	if (rc)
		return rc;
	pthread_mutex_lock(&fs->lock);
	if (!find(fs, lg)) {
		t->next = fs->attrs;
		fs->attrs = t;
		t = NULL;
	}
	pthread_mutex_unlock(&fs->lock);
	if (t)
		table_free(t);
	return 0;
}

/* ---- the interface ---- */

int lfs_attr_get(struct lfs_fs *fs, struct lfs_fsl *lg, const char *name,
		 struct lfs_attr *out)
{
	memset(out, 0, sizeof(*out));
	int rc = loaded(fs, lg);
	if (rc)
		return rc;
	pthread_mutex_lock(&fs->lock);
	struct lfs_attr_table *t = find(fs, lg);
	struct attr_entry *e = *slot(t, name);
	if (e)
		*out = e->a;
	pthread_mutex_unlock(&fs->lock);
	return 0;
}

int lfs_attr_set(struct lfs_fs *fs, struct lfs_fsl *lg, const char *name,
		 const struct lfs_attr *a)
{
	int rc = loaded(fs, lg);
	if (rc)
		return rc;
	pthread_mutex_lock(&fs->lock);
	struct lfs_attr_table *t = find(fs, lg);
	struct attr_entry *e = entry_get(t, name);
	if (e) {
		if (a->set & LFS_ATTR_MODE)
			e->a.mode = a->mode & 07777;
		if (a->set & LFS_ATTR_UID)
			e->a.uid = a->uid;
		if (a->set & LFS_ATTR_GID)
			e->a.gid = a->gid;
		if (a->set & LFS_ATTR_MTIME) {
			e->a.mtime_us = a->mtime_us;
			e->a.version = a->version;
			e->a.set_us = lfs_fs_now_ms() * 1000;
		}
		e->a.set |= a->set;
		log_change(t, name, &e->a);
	}
	pthread_mutex_unlock(&fs->lock);
	return e ? 0 : -ENOMEM;
}

void lfs_attr_rename(struct lfs_fs *fs, struct lfs_fsl *lg, const char *from,
		     const char *to)
{
	if (loaded(fs, lg))
		return;
	pthread_mutex_lock(&fs->lock);
	struct lfs_attr_table *t = find(fs, lg);
	struct attr_entry *e = *slot(t, from);
	struct lfs_attr a = e ? e->a : (struct lfs_attr){0};
	entry_drop(t, from);
	entry_drop(t, to);
	if (a.set && (e = entry_get(t, to))) {
		e->a = a;
		log_change(t, to, &a);
	}
	pthread_mutex_unlock(&fs->lock);
}

void lfs_attr_remove(struct lfs_fs *fs, struct lfs_fsl *lg, const char *name)
{
	if (loaded(fs, lg))
		return;
	pthread_mutex_lock(&fs->lock);
	entry_drop(find(fs, lg), name);
	pthread_mutex_unlock(&fs->lock);
}

static int dump_line(struct lfs_buf *b, const char *name,
		     const struct lfs_attr *a)
{
	char line[4 * 32 + LFS_CID_STRLEN + 16], f[4][32];
	snprintf(f[0], 32, a->set & LFS_ATTR_MODE ? "%o" : "-",
		 (unsigned)a->mode);
	snprintf(f[1], 32, a->set & LFS_ATTR_UID ? "%u" : "-",
		 (unsigned)a->uid);
	snprintf(f[2], 32, a->set & LFS_ATTR_GID ? "%u" : "-",
		 (unsigned)a->gid);
	snprintf(f[3], 32, a->set & LFS_ATTR_MTIME ? "%" PRId64 : "-",
		 a->mtime_us);
	char cid[LFS_CID_STRLEN + 1] = "-";
	if ((a->set & LFS_ATTR_MTIME) && a->version.codec)
		lfs_cid_to_string(cid, &a->version);
	snprintf(line, sizeof(line), "v1 %s %s %s %s %s ", f[0], f[1], f[2],
		 f[3], cid);
	size_t nl = strlen(name);
	int rc = lfs_buf_append_str(b, line);
	if (!rc)
		rc = lfs_buf_reserve(b, 2 * nl + 1);
	if (rc)
		return rc;
	static const char digits[] = "0123456789abcdef";
	for (size_t i = 0; i < nl; i++) {
		b->data[b->len++] = (uint8_t)digits[(uint8_t)name[i] >> 4];
		b->data[b->len++] = (uint8_t)digits[(uint8_t)name[i] & 15];
	}
	b->data[b->len++] = '\n';
	return 0;
}

/* Journal name's attributes now (none: a); the whole file on failure. */
static void log_change(struct lfs_attr_table *t, const char *name,
		       const struct lfs_attr *a)
{
	if (!t->whole && dump_line(&t->log, name, a))
		t->whole = true;
}

static int write_file(struct lfs_fsl *lg, const struct lfs_buf *b, bool whole)
{
	char *path = attrs_path(lg);
	if (!path)
		return -ENOMEM;
	int rc = 0;
	if (whole) {
		rc = lfs_write_atomic(path, b->data, b->len, 0600, false);
	} else {
		int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC,
			      0600);
		rc = fd < 0 ? -errno : lfs_write_all(fd, b->data, b->len);
		if (fd >= 0 && close(fd) && !rc)
			rc = -errno;
	}
	free(path);
	return rc;
}

static size_t count_lines(const struct lfs_buf *b)
{
	size_t n = 0;
	if (!b->len)
		return 0; /* b->data may be NULL: no offset may be applied */
	for (const uint8_t *p = b->data, *end = p + b->len;
	     p < end && (p = memchr(p, '\n', (size_t)(end - p))); p++)
		n++;
	return n;
}

/*
 * Take what t's next save writes, under fs->lock: its journal, or
 * (*whole) every entry when the file is to be written anew.
 */
static int take_locked(struct lfs_attr_table *t, struct lfs_buf *out,
		       bool *whole)
{
	size_t pending = count_lines(&t->log);
	*whole = t->whole || t->lines + pending > 2 * t->n + 1024;
	if (!*whole) {
		*out = t->log;
		lfs_buf_init(&t->log, 0);
		t->lines += pending;
		return 0;
	}
	int rc = 0;
	for (size_t i = 0; !rc && i < t->nbuckets; i++)
		for (struct attr_entry *e = t->buckets[i]; e && !rc;
		     e = e->next)
			rc = dump_line(out, e->name, &e->a);
	if (!rc) {
		lfs_buf_release(&t->log);
		t->whole = false;
		t->lines = t->n;
	}
	return rc;
}

void lfs_attr_save_all(struct lfs_fs *fs)
{
	for (;;) {
		struct lfs_buf b;
		lfs_buf_init(&b, 0);
		struct lfs_attr_table *t;
		bool whole = false;
		int rc = 0;
		pthread_mutex_lock(&fs->lock);
		for (t = fs->attrs; t && !t->whole && !t->log.len; t = t->next)
			;
		if (t)
			rc = take_locked(t, &b, &whole);
		pthread_mutex_unlock(&fs->lock);
		if (!t) {
			lfs_buf_release(&b);
			return;
		}
		/* The housekeeper is the only writer: no two saves race. */
		if (!rc)
			rc = write_file(t->lg, &b, whole);
		lfs_buf_release(&b);
		if (rc) {
			lfs_warn("ledger '%s': cannot save the attributes set "
				 "on its files: %s; retrying",
				 t->lg->name, strerror(-rc));
			pthread_mutex_lock(&fs->lock);
			t->whole = true;
			pthread_mutex_unlock(&fs->lock);
			return;
		}
	}
}

void lfs_attr_free_all(struct lfs_fs *fs)
{
	while (fs->attrs) {
		struct lfs_attr_table *next = fs->attrs->next;
		table_free(fs->attrs);
		fs->attrs = next;
	}
}
