/*
 * What the JSON reader's tests and fuzz target compare: two jansson
 * values the same, object keys in the same order, reals to the bit.
 * Header only; each program includes it once.
 */
#ifndef LFS_JSON_SAME_H
#define LFS_JSON_SAME_H

#include <stdbool.h>
#include <string.h>

#include <jansson.h>

static inline bool lfs_json_same(const json_t *a, const json_t *b)
{
	if (json_typeof(a) != json_typeof(b))
		return false;
	switch (json_typeof(a)) {
	case JSON_OBJECT: {
		if (json_object_size(a) != json_object_size(b))
			return false;
		void *ia = json_object_iter((json_t *)a);
		void *ib = json_object_iter((json_t *)b);
		for (; ia && ib; ia = json_object_iter_next((json_t *)a, ia),
				 ib = json_object_iter_next((json_t *)b, ib)) {
			size_t la = json_object_iter_key_len(ia);
			if (la != json_object_iter_key_len(ib) ||
			    memcmp(json_object_iter_key(ia),
				   json_object_iter_key(ib), la) ||
			    !lfs_json_same(json_object_iter_value(ia),
					   json_object_iter_value(ib)))
				return false;
		}
		return !ia && !ib;
	}
	case JSON_ARRAY:
		if (json_array_size(a) != json_array_size(b))
			return false;
		for (size_t i = 0; i < json_array_size(a); i++)
			if (!lfs_json_same(json_array_get(a, i),
					   json_array_get(b, i)))
				return false;
		return true;
	case JSON_REAL: {
		double x = json_real_value(a), y = json_real_value(b);
		return memcmp(&x, &y, sizeof(x)) == 0;
	}
	default:
		return json_equal((json_t *)a, (json_t *)b);
	}
}

#endif
