#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

/*
 * fsck: a ledger's CAR files, head records, history and index checked
 * against each other, every problem reported with what it names
 * (ledger.h: lfs_ledger_fsck).
 */

#include "ledger.h"
#include "ledger_int.h"

#include "errmsg.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "merge.h"

/* ---- fsck ---- */

struct fsck {
	struct lfs_ledger *l;
	lfs_ledger_report_fn report;
	void *ctx;
	int problems;
};

static void problem(struct fsck *f, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void problem(struct fsck *f, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	f->problems++;
	if (f->report)
		f->report(f->ctx, msg);
}

/* Recompute what an event's root should be, from its parents and ops. */
static int expected_root(struct lfs_ledger *l, struct lfs_cid *out,
			 const struct lfs_event *ev)
{
	struct lfs_cid base;
	int rc = lfs_merge_root(&base, &l->ix, &l->blocks, ev->parents,
				ev->nparents);
	if (rc)
		return rc;
	struct lfs_index_change *ch = calloc(ev->nops + 1, sizeof(*ch));
	struct lfs_index_entry *e = calloc(ev->nops + 1, sizeof(*e));
	if (!ch || !e) {
		free(ch);
		free(e);
		return -ENOMEM;
	}
	for (size_t i = 0; i < ev->nops; i++) {
		ch[i].id = ev->ops[i].id;
		ch[i].id_len = ev->ops[i].id_len;
		if (ev->ops[i].del)
			continue;
		e[i].id = ev->ops[i].id;
		e[i].id_len = ev->ops[i].id_len;
		e[i].cur.doc = ev->ops[i].doc;
		e[i].cur.t = ev->t;
		e[i].cur.writer = ev->writer;
		ch[i].entry = &e[i];
	}
	rc = lfs_index_apply(out, &l->ix, &base, ch, ev->nops);
	free(ch);
	free(e);
	return rc;
}

static int fsck_event(void *ctx, const struct lfs_cid *cid,
		      const struct lfs_event *ev)
{
	struct fsck *f = ctx;
	char s[LFS_CID_STRLEN + 1];
	lfs_cid_to_string(s, cid);
	struct lfs_cid missing, want;
	int rc = lfs_clock_check_parents(&missing, &f->l->blocks, ev);
	if (rc == -ENOENT) {
		char m[LFS_CID_STRLEN + 1];
		lfs_cid_to_string(m, &missing);
		problem(f, "event %s: parent %s is missing", s, m);
		return 0;
	}
	if (rc == -ETIME) {
		problem(f, "event %s: a parent is not older than it", s);
		return 0;
	}
	if (rc == -EBADMSG) {
		problem(f, "event %s: a parent event is corrupt", s);
		return 0;
	}
	if (rc)
		return rc;
	rc = expected_root(f->l, &want, ev);
	if (rc == -ENOMEM)
		return rc;
	if (rc)
		problem(f, "event %s: cannot recompute its root: %s", s,
			lfs_errmsg(rc));
	else if (!lfs_cid_equal(&want, &ev->root))
		problem(f,
			"event %s: its root does not follow from its "
			"parents and operations",
			s);
	return 0;
}

static int fsck_entry(void *ctx, const struct lfs_index_entry *e)
{
	struct fsck *f = ctx;
	json_t *doc;
	int rc = lfs_ledger_load_doc(f->l, &e->cur.doc, NULL, &doc);
	if (rc == -ENOMEM)
		return rc;
	if (rc)
		problem(f, "document '%s': its block is %s", e->id,
			lfs_errmsg(rc));
	else
		json_decref(doc);
	for (size_t i = 0; i < e->nconflicts; i++) {
		struct lfs_buf b;
		lfs_buf_init(&b, LFS_DOC_MAX);
		rc = lfs_blocks_get(&f->l->blocks, &b, &e->conflicts[i].doc);
		lfs_buf_release(&b);
		if (rc)
			problem(f, "document '%s': a conflicting version is %s",
				e->id, lfs_errmsg(rc));
	}
	return 0;
}

int lfs_ledger_fsck(struct lfs_ledger *l, lfs_ledger_report_fn report,
		    void *ctx)
{
	struct fsck f = {.l = l, .report = report, .ctx = ctx};
	struct lfs_cid *cars = NULL, *recs = NULL, *heads = NULL;
	size_t ncars = 0, nrecs = 0, nheads = 0;
	/* Recomputing roots puts blocks in memory: keep writers out. */
	pthread_mutex_lock(&l->write_lock);
	size_t mark = lfs_blockstore_fresh_mark(l->bs);
	int rc = lfs_blockstore_list_cars(&cars, &ncars, l->bs);
	if (rc)
		goto out;
	for (size_t i = 0; i < ncars; i++) {
		int r = lfs_blockstore_verify_car(l->bs, &cars[i]);
		if (r == -ENOMEM) {
			rc = r;
			goto out;
		}
		if (r) {
			char s[LFS_CID_STRLEN + 1];
			lfs_cid_to_string(s, &cars[i]);
			problem(&f, "CAR file %s: %s", s, lfs_errmsg(r));
		}
	}
	if ((rc = lfs_blockstore_heads(&recs, &nrecs, l->bs)))
		goto out;
	for (size_t i = 0; i < nrecs; i++)
		if (!lfs_cid_in(cars, ncars, &recs[i])) {
			char s[LFS_CID_STRLEN + 1];
			lfs_cid_to_string(s, &recs[i]);
			problem(&f,
				"head record %s: names a CAR file that is "
				"missing",
				s);
		}
	if ((rc = lfs_ledger_heads(l, &heads, &nheads)))
		goto out;
	rc = lfs_clock_walk(&l->blocks, heads, nheads, fsck_event, &f);
	if (rc && rc != -ENOMEM) {
		problem(&f, "history: cannot walk the clock: %s",
			lfs_errmsg(rc));
		rc = 0;
	}
	if (rc)
		goto out;
	struct lfs_cid root;
	lfs_ledger_root(l, &root);
	rc = lfs_index_check(&l->ix, &root, fsck_entry, &f);
	if (rc && rc != -ENOMEM) {
		problem(&f, "index: %s", lfs_errmsg(rc));
		rc = 0;
	}
out:
	lfs_blockstore_fresh_rewind(l->bs, mark);
	pthread_mutex_unlock(&l->write_lock);
	free(cars);
	free(recs);
	free(heads);
	return rc ? rc : f.problems;
}
