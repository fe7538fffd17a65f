#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

/*
 * store_mem: the memory:// store driver (see store.h), for tests.
 */
#include "store.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * Named in-memory stores shared by every handle in the process, so tests
 * can run several replicas against one "remote". Objects live until exit.
 */
struct mem_object {
	char *key;
	uint8_t *data;
	size_t len;
	struct mem_object *next;
};

struct mem_space {
	char *name;
	struct mem_object *objects;
	struct mem_space *next;
};

static pthread_mutex_t mem_lock = PTHREAD_MUTEX_INITIALIZER;
static struct mem_space *mem_spaces;

struct mem_store {
	struct lfs_store base;
	struct mem_space *space;
};

static struct mem_object **mem_find(struct mem_space *sp, const char *key)
{
	struct mem_object **pp = &sp->objects;
	while (*pp && strcmp((*pp)->key, key))
		pp = &(*pp)->next;
	return pp;
}

static int mem_put(struct lfs_store *s, const char *key, const uint8_t *data,
		   size_t len, bool if_absent)
{
	struct mem_store *m = (struct mem_store *)s;
	if (!lfs_store_valid_key(key))
		return -EINVAL;
	uint8_t *copy = malloc(len ? len : 1);
	if (!copy)
		return -ENOMEM;
	memcpy(copy, data, len);
	pthread_mutex_lock(&mem_lock);
	struct mem_object **pp = mem_find(m->space, key);
	int rc = 0;
	if (*pp && if_absent) {
		rc = -EEXIST;
		free(copy);
	} else if (*pp) {
		free((*pp)->data);
		(*pp)->data = copy;
		(*pp)->len = len;
	} else {
		struct mem_object *o = calloc(1, sizeof(*o));
		if (!o || !(o->key = strdup(key))) {
			free(o);
			free(copy);
			rc = -ENOMEM;
		} else {
			o->data = copy;
			o->len = len;
			*pp = o;
		}
	}
	pthread_mutex_unlock(&mem_lock);
	return rc;
}

static int mem_get_to(struct lfs_store *s, const char *key, uint64_t max,
		      const struct lfs_store_sink *sink)
{
	struct mem_store *m = (struct mem_store *)s;
	/* A copy, handed over without the lock: the sink may use the store. */
	pthread_mutex_lock(&mem_lock);
	struct mem_object *o = *mem_find(m->space, key);
	size_t len = o ? o->len : 0;
	int rc = !o ? -ENOENT : len > max ? -EFBIG : 0;
	uint8_t *copy = rc ? NULL : malloc(len ? len : 1);
	if (!rc && !copy)
		rc = -ENOMEM;
	if (!rc)
		memcpy(copy, o->data, len);
	pthread_mutex_unlock(&mem_lock);
	if (!rc && sink->size)
		rc = sink->size(sink->ctx, len);
	if (!rc && len)
		rc = sink->write(sink->ctx, copy, len);
	free(copy);
	return rc;
}

static int mem_list(struct lfs_store *s, const char *prefix,
		    lfs_store_list_fn fn, void *ctx)
{
	struct mem_store *m = (struct mem_store *)s;
	/* Copy the keys first: fn may call back into the store. */
	char **keys = NULL;
	size_t n = 0;
	int rc = 0;
	pthread_mutex_lock(&mem_lock);
	for (struct mem_object *o = m->space->objects; o && !rc; o = o->next) {
		if (strncmp(o->key, prefix, strlen(prefix)))
			continue;
		void *p = realloc(keys, (n + 1) * sizeof(*keys));
		if (!p || !(((char **)p)[n] = strdup(o->key))) {
			if (p)
				keys = p;
			rc = -ENOMEM;
			break;
		}
		keys = p;
		n++;
	}
	pthread_mutex_unlock(&mem_lock);
	for (size_t i = 0; i < n; i++) {
		if (!rc)
			rc = fn(ctx, keys[i]);
		free(keys[i]);
	}
	free(keys);
	return rc;
}

static int mem_del(struct lfs_store *s, const char *key)
{
	struct mem_store *m = (struct mem_store *)s;
	pthread_mutex_lock(&mem_lock);
	struct mem_object **pp = mem_find(m->space, key), *o = *pp;
	if (o) {
		*pp = o->next;
		free(o->key);
		free(o->data);
		free(o);
	}
	pthread_mutex_unlock(&mem_lock);
	return 0;
}

static void mem_free(struct lfs_store *s)
{
	free(s->url);
	free(s);
}

static const struct lfs_store_ops mem_ops = {
	.put = mem_put,
	.get_to = mem_get_to,
	.list = mem_list,
	.del = mem_del,
	.free = mem_free,
};

int lfs_store_memory_open(struct lfs_store **out, const char *name)
{
	struct mem_store *m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	m->base.ops = &mem_ops;
	size_t n = strlen(name) + 10;
	if (!(m->base.url = malloc(n))) {
		free(m);
		return -ENOMEM;
	}
	snprintf(m->base.url, n, "memory://%s", name);
	pthread_mutex_lock(&mem_lock);
	struct mem_space *sp = mem_spaces;
	while (sp && strcmp(sp->name, name))
		sp = sp->next;
	if (!sp) {
		sp = calloc(1, sizeof(*sp));
		if (sp && !(sp->name = strdup(name))) {
			free(sp);
			sp = NULL;
		}
		if (sp) {
			sp->next = mem_spaces;
			mem_spaces = sp;
		}
	}
	pthread_mutex_unlock(&mem_lock);
	if (!sp) {
		mem_free(&m->base);
		return -ENOMEM;
	}
	m->space = sp;
	*out = &m->base;
	return 0;
}
