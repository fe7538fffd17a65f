/*
 * store_probe: one store operation from the command line, for the shell
 * tests that put a store driver in odd situations (wrong secret, a stopped
 * server) and check which error comes back.
 *
 *   store_probe URL put KEY DATA [absent]   put DATA (if_absent with absent)
 *   store_probe URL get KEY                 the object on stdout after "ok"
 *   store_probe URL del KEY
 *   store_probe URL list PREFIX             "ok", then the keys, one a line
 *
 * The first line of stdout is "ok" or the errno's name (EACCES, EAGAIN...);
 * the elapsed milliseconds go to stderr as "ms=N". Exits 0 when the
 * operation ran (whatever its result), 2 on bad usage or a failed open.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>
#include <sodium.h>

#include "log.h"
#include "store.h"

static const char *errname(int rc)
{
	static const struct {
		int e;
		const char *n;
	} names[] = {
		{ENOENT, "ENOENT"}, {EEXIST, "EEXIST"},   {EACCES, "EACCES"},
		{EAGAIN, "EAGAIN"}, {EBADMSG, "EBADMSG"}, {EFBIG, "EFBIG"},
		{EINVAL, "EINVAL"}, {EIO, "EIO"},         {ENOMEM, "ENOMEM"}};
	if (!rc)
		return "ok";
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (-rc == names[i].e)
			return names[i].n;
	return "E?";
}

static int print_key(void *ctx, const char *key)
{
	struct lfs_buf *b = ctx;
	lfs_buf_append_str(b, key);
	lfs_buf_append_byte(b, '\n');
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 4) {
		fprintf(stderr, "usage: store_probe URL put|get|del|list ARG "
				"[DATA [absent]]\n");
		return 2;
	}
	if (sodium_init() < 0 || curl_global_init(CURL_GLOBAL_DEFAULT))
		return 2;
	lfs_log_setup(LFS_LOG_DEBUG, 0);
	struct lfs_store *s;
	int rc = lfs_store_open(&s, argv[1]);
	if (rc) {
		printf("open:%s\n", errname(rc));
		return 2;
	}
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	const char *op = argv[2], *arg = argv[3];
	struct lfs_buf b;
	lfs_buf_init(&b, 0);
	if (!strcmp(op, "put") && argc >= 5) {
		bool absent = argc >= 6 && !strcmp(argv[5], "absent");
		rc = lfs_store_put(s, arg, (const uint8_t *)argv[4],
				   strlen(argv[4]), absent);
	} else if (!strcmp(op, "get")) {
		rc = lfs_store_get(s, arg, &b);
	} else if (!strcmp(op, "del")) {
		rc = lfs_store_del(s, arg);
	} else if (!strcmp(op, "list")) {
		rc = lfs_store_list(s, arg, print_key, &b);
	} else {
		fprintf(stderr, "store_probe: unknown operation %s\n", op);
		lfs_store_free(s);
		return 2;
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	printf("%s\n", errname(rc));
	if (!rc && b.len)
		fwrite(b.data, 1, b.len, stdout);
	fprintf(stderr, "ms=%ld\n",
		(long)((t1.tv_sec - t0.tv_sec) * 1000 +
		       (t1.tv_nsec - t0.tv_nsec) / 1000000));
	lfs_buf_release(&b);
	lfs_store_free(s);
	curl_global_cleanup();
	return 0;
}
