#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "fp_format.h"

#include <errno.h>
#include <string.h>

#include <jansson.h>

#include "dagjson.h"

static const struct lfs_cbor *get(const struct lfs_cbor *m, const char *k)
{
	return lfs_cbor_map_get(m, k);
}

static bool is_text(const struct lfs_cbor *v, const char *s)
{
	return v && v->type == LFS_CBOR_STRING && v->u.str.len == strlen(s) &&
	       !memcmp(v->u.str.data, s, v->u.str.len);
}

/* An array of links into a new arena array. */
static int links(struct lfs_cid **out, size_t *n, struct lfs_arena *a,
		 const struct lfs_cbor *v)
{
	if (!v || v->type != LFS_CBOR_ARRAY)
		return -EBADMSG;
	size_t c = v->u.array.count;
	*out = c ? lfs_arena_calloc(a, c, sizeof(**out)) : NULL;
	if (c && !*out)
		return -ENOMEM;
	for (size_t i = 0; i < c; i++)
		if (lfs_cbor_get_link(&(*out)[i], v->u.array.items[i]))
			return -EBADMSG;
	*n = c;
	return 0;
}

/* [[link...]...] flattened, in order. */
static int groups(struct lfs_cid **out, size_t *n, struct lfs_arena *a,
		  const struct lfs_cbor *v)
{
	if (!v || v->type != LFS_CBOR_ARRAY)
		return -EBADMSG;
	size_t total = 0;
	for (size_t i = 0; i < v->u.array.count; i++) {
		const struct lfs_cbor *g = v->u.array.items[i];
		if (g->type != LFS_CBOR_ARRAY)
			return -EBADMSG;
		total += g->u.array.count;
	}
	*out = total ? lfs_arena_calloc(a, total, sizeof(**out)) : NULL;
	if (total && !*out)
		return -ENOMEM;
	size_t k = 0;
	for (size_t i = 0; i < v->u.array.count; i++) {
		const struct lfs_cbor *g = v->u.array.items[i];
		for (size_t j = 0; j < g->u.array.count; j++)
			if (lfs_cbor_get_link(&(*out)[k++],
					      g->u.array.items[j]))
				return -EBADMSG;
	}
	*n = total;
	return 0;
}

static int decode(const struct lfs_cbor **out, struct lfs_arena *a,
		  const uint8_t *p, size_t len)
{
	struct lfs_cbor *v;
	int rc = lfs_cbor_decode(&v, a, p, len);
	if (rc)
		return rc == -ENOMEM ? rc : -EBADMSG;
	if (v->type != LFS_CBOR_MAP)
		return -EBADMSG;
	*out = v;
	return 0;
}

int lfs_fp_meta_parse(struct lfs_fp_meta *out, struct lfs_arena *a,
		      const char *text, size_t len)
{
	if (len > LFS_FP_META_MAX)
		return -EFBIG;
	json_error_t jerr;
	json_t *root = json_loadb(text, len, 0, &jerr);
	if (!root)
		return -EAGAIN;
	int rc = -EBADMSG;
	json_t *el = json_is_array(root) && json_array_size(root)
			     ? json_array_get(root, json_array_size(root) - 1)
			     : NULL;
	const char *cid = json_string_value(json_object_get(el, "cid"));
	const char *data = json_string_value(json_object_get(el, "data"));
	struct lfs_cid event, check;
	if (!cid || !data || data[0] != 'M' || lfs_cid_from_string(&event, cid))
		goto out;
	size_t dlen = strlen(data + 1);
	while (dlen && data[1 + dlen - 1] == '=')
		dlen--;
	uint8_t *bytes = lfs_arena_alloc(a, dlen * 3 / 4 + 1);
	if (!bytes) {
		rc = -ENOMEM;
		goto out;
	}
	int n = lfs_base64_decode(bytes, data + 1, dlen);
	if (n < 0)
		goto out;
	lfs_cid_of(&check, LFS_CODEC_DAG_CBOR, bytes, (size_t)n);
	if (!lfs_cid_equal(&check, &event))
		goto out;
	const struct lfs_cbor *ev, *dbmeta;
	if ((rc = decode(&ev, a, bytes, (size_t)n)))
		goto out;
	rc = -EBADMSG;
	dbmeta = get(get(ev, "data"), "dbMeta");
	if (!dbmeta || dbmeta->type != LFS_CBOR_BYTES)
		goto out;
	json_t *dj =
		json_loadb(dbmeta->u.str.data, dbmeta->u.str.len, 0, &jerr);
	json_t *cars = json_object_get(dj, "cars");
	size_t nc = json_array_size(cars);
	if (!json_is_array(cars) || !nc) {
		json_decref(dj);
		goto out;
	}
	out->cars = lfs_arena_calloc(a, nc, sizeof(*out->cars));
	if (!out->cars) {
		json_decref(dj);
		rc = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < nc; i++) {
		const char *s = json_string_value(
			json_object_get(json_array_get(cars, i), "/"));
		if (!s || lfs_cid_from_string(&out->cars[i], s)) {
			json_decref(dj);
			goto out;
		}
	}
	json_decref(dj);
	out->ncars = nc;
	out->event = event;
	rc = 0;
out:
	json_decref(root);
	return rc;
}

int lfs_fp_header_decode(struct lfs_fp_header *out, struct lfs_arena *a,
			 const uint8_t *p, size_t len)
{
	const struct lfs_cbor *v, *fp;
	int rc = decode(&v, a, p, len);
	if (rc)
		return rc;
	if (!(fp = get(v, "fp")) || fp->type != LFS_CBOR_MAP)
		return -EBADMSG;
	memset(out, 0, sizeof(*out));
	if ((rc = groups(&out->cars, &out->ncars, a, get(fp, "cars"))))
		return rc;
	if (get(fp, "compact") &&
	    (rc = groups(&out->compact, &out->ncompact, a, get(fp, "compact"))))
		return rc;
	return links(&out->head, &out->nhead, a, get(get(fp, "meta"), "head"));
}

static int op_of(struct lfs_fp_op *out, const struct lfs_cbor *m)
{
	const struct lfs_cbor *k = get(m, "key");
	if (!k || k->type != LFS_CBOR_STRING ||
	    memchr(k->u.str.data, 0, k->u.str.len) ||
	    lfs_cbor_get_link(&out->value, get(m, "value")))
		return -EBADMSG;
	out->key = k->u.str.data;
	out->key_len = k->u.str.len;
	return 0;
}

int lfs_fp_event_decode(struct lfs_fp_event *out, struct lfs_arena *a,
			const uint8_t *p, size_t len)
{
	const struct lfs_cbor *v, *d, *type;
	int rc = decode(&v, a, p, len);
	if (rc)
		return rc;
	memset(out, 0, sizeof(*out));
	if ((rc = links(&out->parents, &out->nparents, a, get(v, "parents"))))
		return rc;
	d = get(v, "data");
	type = get(d, "type");
	if (lfs_cbor_get_link(&out->root, get(d, "root")))
		return -EBADMSG;
	if (is_text(type, "put")) {
		out->ops = lfs_arena_calloc(a, 1, sizeof(*out->ops));
		if (!out->ops)
			return -ENOMEM;
		out->nops = 1;
		return op_of(out->ops, d);
	}
	const struct lfs_cbor *ops = get(d, "ops");
	if (!is_text(type, "batch") || !ops || ops->type != LFS_CBOR_ARRAY)
		return -EBADMSG;
	out->batch = true;
	out->nops = ops->u.array.count;
	out->ops = out->nops ? lfs_arena_calloc(a, out->nops, sizeof(*out->ops))
			     : NULL;
	if (out->nops && !out->ops)
		return -ENOMEM;
	for (size_t i = 0; i < out->nops; i++) {
		const struct lfs_cbor *o = ops->u.array.items[i];
		if (!is_text(get(o, "type"), "put"))
			return -EBADMSG;
		if ((rc = op_of(&out->ops[i], o)))
			return rc;
	}
	return 0;
}

int lfs_fp_shard_decode(struct lfs_fp_shard *out, struct lfs_arena *a,
			const uint8_t *p, size_t len)
{
	const struct lfs_cbor *v, *prefix, *entries;
	int rc = decode(&v, a, p, len);
	if (rc)
		return rc;
	prefix = get(v, "prefix");
	entries = get(v, "entries");
	if (!prefix || prefix->type != LFS_CBOR_STRING || !entries ||
	    entries->type != LFS_CBOR_ARRAY)
		return -EBADMSG;
	int64_t version;
	if (get(v, "version") &&
	    (lfs_cbor_get_int(&version, get(v, "version")) || version != 1))
		return -EBADMSG;
	out->prefix = prefix->u.str.data;
	out->prefix_len = prefix->u.str.len;
	out->n = entries->u.array.count;
	out->entries =
		out->n ? lfs_arena_calloc(a, out->n, sizeof(*out->entries))
		       : NULL;
	if (out->n && !out->entries)
		return -ENOMEM;
	for (size_t i = 0; i < out->n; i++) {
		const struct lfs_cbor *e = entries->u.array.items[i], *s, *t;
		struct lfs_fp_entry *x = &out->entries[i];
		if (e->type != LFS_CBOR_ARRAY || e->u.array.count != 2)
			return -EBADMSG;
		s = e->u.array.items[0];
		t = e->u.array.items[1];
		if (s->type != LFS_CBOR_STRING ||
		    memchr(s->u.str.data, 0, s->u.str.len))
			return -EBADMSG;
		x->suffix = s->u.str.data;
		x->suffix_len = s->u.str.len;
		if (t->type == LFS_CBOR_LINK) {
			x->has_value = true;
			x->value = t->u.link;
		} else if (t->type == LFS_CBOR_ARRAY &&
			   (t->u.array.count == 1 || t->u.array.count == 2)) {
			x->has_child = true;
			if (lfs_cbor_get_link(&x->child, t->u.array.items[0]))
				return -EBADMSG;
			if (t->u.array.count == 2) {
				x->has_value = true;
				if (lfs_cbor_get_link(&x->value,
						      t->u.array.items[1]))
					return -EBADMSG;
			}
		} else {
			return -EBADMSG;
		}
	}
	return 0;
}

int lfs_fp_value_decode(const struct lfs_cbor **out_doc, struct lfs_arena *a,
			const uint8_t *p, size_t len)
{
	const struct lfs_cbor *v, *doc, *del;
	int rc = decode(&v, a, p, len);
	if (rc)
		return rc;
	doc = get(v, "doc");
	del = get(v, "del");
	if (doc && doc->type == LFS_CBOR_MAP) {
		*out_doc = doc;
		return 0;
	}
	if (del && del->type == LFS_CBOR_BOOL && del->u.boolean) {
		*out_doc = NULL;
		return 0;
	}
	return -EBADMSG;
}
