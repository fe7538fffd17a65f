/*
 * Unit tests for home: ledger names, finding the home directory from the
 * environment, the writer id, creating ledgers, the keybag (modes, damaged
 * files, races left to link(2)) and key share strings.
 */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "home.h"
#include "check_util.h"

static char tmp[256];

static void setup(void)
{
	ck_assert_int_ge(sodium_init(), 0);
	lfs_check_mkdtemp(tmp, sizeof(tmp), "test_home");
}

static void teardown(void)
{
	lfs_rm_tree(tmp);
}

static char *path_in(const char *fmt, const char *a)
{
	static char buf[2048];
	char rel[1024];
	snprintf(rel, sizeof(rel), fmt, a);
	snprintf(buf, sizeof(buf), "%s/%s", tmp, rel);
	return buf;
}

static void open_home(struct lfs_home *h)
{
	ck_assert_int_eq(lfs_home_open(h, path_in("%s", "home")), 0);
}

static size_t count_entries(const char *dir)
{
	DIR *d = opendir(dir);
	ck_assert_ptr_nonnull(d);
	size_t n = 0;
	struct dirent *e;
	while ((e = readdir(d)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			n++;
	closedir(d);
	return n;
}

static void write_text(const char *path, const char *text, mode_t mode)
{
	unlink(path);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	ck_assert_int_eq(fchmod(fd, mode), 0);
	close(fd);
}

START_TEST(test_valid_name)
{
	char name[LFS_LEDGER_NAME_MAX + 2];
	ck_assert(lfs_home_valid_name("todos"));
	ck_assert(lfs_home_valid_name("a"));
	ck_assert(lfs_home_valid_name("my ledger.v2"));
	ck_assert(lfs_home_valid_name("a."));
	ck_assert(lfs_home_valid_name("caf\xc3\xa9"));
	ck_assert(!lfs_home_valid_name(""));
	ck_assert(!lfs_home_valid_name(NULL));
	ck_assert(!lfs_home_valid_name("a/b"));
	ck_assert(!lfs_home_valid_name("/"));
	ck_assert(!lfs_home_valid_name("todos/"));
	ck_assert(!lfs_home_valid_name(".hidden"));
	ck_assert(!lfs_home_valid_name("."));
	ck_assert(!lfs_home_valid_name(".."));
	ck_assert(!lfs_home_valid_name("bad\xff"));
	ck_assert(!lfs_home_valid_name("\xc3"));
	/* A C string stops at the first NUL: "a\0/b" is the name "a". */
	ck_assert(lfs_home_valid_name("a\0/b"));
	memset(name, 'x', sizeof(name));
	name[LFS_LEDGER_NAME_MAX] = '\0';
	ck_assert(lfs_home_valid_name(name)); /* 200 bytes */
	name[LFS_LEDGER_NAME_MAX] = 'x';
	name[LFS_LEDGER_NAME_MAX + 1] = '\0';
	ck_assert(!lfs_home_valid_name(name)); /* 201 bytes */
}
END_TEST

START_TEST(test_open_layout)
{
	struct lfs_home h, h2;
	struct stat st;
	/* A home whose parents do not exist yet is made, mode 0700. */
	ck_assert_int_eq(lfs_home_open(&h, path_in("%s", "a/b/home///")), 0);
	ck_assert_str_eq(h.dir, path_in("%s", "a/b/home"));
	ck_assert_int_eq(stat(h.dir, &st), 0);
	ck_assert_uint_eq(st.st_mode & 0777, 0700);
	ck_assert_int_eq(stat(path_in("%s", "a/b/home/keys"), &st), 0);
	ck_assert(S_ISDIR(st.st_mode));
	ck_assert_uint_eq(st.st_mode & 0777, 0700);
	ck_assert_int_eq(stat(path_in("%s", "a/b/home/ledgers"), &st), 0);
	ck_assert(S_ISDIR(st.st_mode));

	/* The writer id: 16 hex characters, made once. */
	ck_assert_uint_eq(strlen(h.writer), 16);
	ck_assert_uint_eq(strspn(h.writer, "0123456789abcdef"), 16);
	ck_assert_int_eq(lfs_home_open(&h2, path_in("%s", "a/b/home")), 0);
	ck_assert_str_eq(h.writer, h2.writer);
	ck_assert_int_eq(stat(path_in("%s", "a/b/home/writer"), &st), 0);
	ck_assert_uint_eq(st.st_size, 17);
	/* No temporary file is left behind. */
	ck_assert_uint_eq(count_entries(h.dir), 3);
	lfs_home_release(&h);
	lfs_home_release(&h2);
	ck_assert_ptr_null(h.dir);

	/* Another home gets another writer id. */
	ck_assert_int_eq(lfs_home_open(&h2, path_in("%s", "other")), 0);
	ck_assert_int_eq(lfs_home_open(&h, path_in("%s", "a/b/home")), 0);
	ck_assert_str_ne(h.writer, h2.writer);
	lfs_home_release(&h);
	lfs_home_release(&h2);
}
END_TEST

START_TEST(test_writer_file)
{
	struct lfs_home h;
	ck_assert_int_eq(lfs_home_open(&h, path_in("%s", "home")), 0);
	lfs_home_release(&h);
	/* A writer id set by hand is kept (trailing newline optional). */
	write_text(path_in("%s", "home/writer"), "laptop-1", 0644);
	ck_assert_int_eq(lfs_home_open(&h, path_in("%s", "home")), 0);
	ck_assert_str_eq(h.writer, "laptop-1");
	lfs_home_release(&h);
	/* Damaged: empty, a bad character, too long. */
	write_text(path_in("%s", "home/writer"), "\n", 0644);
	ck_assert_int_eq(lfs_home_open(&h, path_in("%s", "home")), -EBADMSG);
	write_text(path_in("%s", "home/writer"), "a b\n", 0644);
	ck_assert_int_eq(lfs_home_open(&h, path_in("%s", "home")), -EBADMSG);
	char longw[LFS_WRITER_MAX + 3];
	memset(longw, 'a', LFS_WRITER_MAX + 1);
	longw[LFS_WRITER_MAX + 1] = '\0';
	write_text(path_in("%s", "home/writer"), longw, 0644);
	ck_assert_int_eq(lfs_home_open(&h, path_in("%s", "home")), -EBADMSG);
	longw[LFS_WRITER_MAX] = '\0';
	write_text(path_in("%s", "home/writer"), longw, 0644);
	ck_assert_int_eq(lfs_home_open(&h, path_in("%s", "home")), 0);
	ck_assert_uint_eq(strlen(h.writer), LFS_WRITER_MAX);
	lfs_home_release(&h);
	/* A home that is a file. */
	write_text(path_in("%s", "file"), "x", 0600);
	ck_assert_int_eq(lfs_home_open(&h, path_in("%s", "file")), -ENOTDIR);
	ck_assert_int_eq(lfs_home_open(&h, ""), -EINVAL);
}
END_TEST

START_TEST(test_environment)
{
	struct lfs_home h;
	char want[4096];

	/* LEDGERFS_HOME first. */
	setenv("LEDGERFS_HOME", path_in("%s", "env-home"), 1);
	setenv("XDG_DATA_HOME", path_in("%s", "xdg"), 1);
	setenv("HOME", path_in("%s", "user"), 1);
	ck_assert_int_eq(lfs_home_open(&h, NULL), 0);
	ck_assert_str_eq(h.dir, path_in("%s", "env-home"));
	lfs_home_release(&h);
	/* An explicit dir beats the environment. */
	ck_assert_int_eq(lfs_home_open(&h, path_in("%s", "explicit")), 0);
	ck_assert_str_eq(h.dir, path_in("%s", "explicit"));
	lfs_home_release(&h);

	/* Then $XDG_DATA_HOME/ledgerfs (an empty LEDGERFS_HOME is unset). */
	setenv("LEDGERFS_HOME", "", 1);
	ck_assert_int_eq(lfs_home_open(&h, NULL), 0);
	snprintf(want, sizeof(want), "%s", path_in("%s", "xdg/ledgerfs"));
	ck_assert_str_eq(h.dir, want);
	lfs_home_release(&h);

	/* Then ~/.local/share/ledgerfs (a relative XDG_DATA_HOME is ignored).
	 */
	unsetenv("LEDGERFS_HOME");
	setenv("XDG_DATA_HOME", "relative/dir", 1);
	ck_assert_int_eq(lfs_home_open(&h, NULL), 0);
	snprintf(want, sizeof(want), "%s",
		 path_in("%s", "user/.local/share/ledgerfs"));
	ck_assert_str_eq(h.dir, want);
	lfs_home_release(&h);
	unsetenv("XDG_DATA_HOME");
	ck_assert_int_eq(lfs_home_open(&h, NULL), 0);
	ck_assert_str_eq(h.dir, want);
	lfs_home_release(&h);
}
END_TEST

START_TEST(test_create_and_list)
{
	struct lfs_home h;
	struct stat st;
	char **names;
	size_t n;
	open_home(&h);

	ck_assert_int_eq(lfs_home_list(&names, &n, &h), 0);
	ck_assert_uint_eq(n, 0);
	lfs_home_list_free(names, n);

	ck_assert_int_eq(lfs_home_create(&h, "todos"), 0);
	ck_assert_int_eq(lfs_home_create(&h, "todos"), -EEXIST);
	ck_assert_int_eq(lfs_home_create(&h, "b"), 0);
	ck_assert_int_eq(lfs_home_create(&h, "a b"), 0);
	ck_assert_int_eq(lfs_home_create(&h, ""), -EINVAL);
	ck_assert_int_eq(lfs_home_create(&h, "x/y"), -EINVAL);
	ck_assert_int_eq(lfs_home_create(&h, ".x"), -EINVAL);

	/* The store and the key file. */
	char *dir = lfs_home_ledger_dir(&h, "todos");
	ck_assert_ptr_nonnull(dir);
	ck_assert_str_eq(dir, path_in("%s", "home/ledgers/todos"));
	ck_assert_int_eq(stat(dir, &st), 0);
	ck_assert(S_ISDIR(st.st_mode));
	free(dir);
	ck_assert_int_eq(stat(path_in("%s", "home/ledgers/todos/car"), &st), 0);
	ck_assert_int_eq(stat(path_in("%s", "home/ledgers/todos/head"), &st),
			 0);
	ck_assert_int_eq(stat(path_in("%s", "home/keys/todos.key"), &st), 0);
	ck_assert(S_ISREG(st.st_mode));
	ck_assert_uint_eq(st.st_mode & 0777, 0600);
	ck_assert_uint_eq(st.st_size, 65);
	ck_assert_uint_eq(count_entries(path_in("%s", "home/keys")), 3);
	ck_assert_ptr_null(lfs_home_ledger_dir(&h, "../x"));
	ck_assert_ptr_null(lfs_home_ledger_dir(&h, ""));

	/* Two ledgers get two different keys. */
	uint8_t k1[LFS_KEY_BYTES], k2[LFS_KEY_BYTES];
	ck_assert_int_eq(lfs_home_key(k1, &h, "todos"), 0);
	ck_assert_int_eq(lfs_home_key(k2, &h, "b"), 0);
	ck_assert_mem_ne(k1, k2, LFS_KEY_BYTES);

	/* Listing: directories with valid names only, sorted. */
	mkdir(path_in("%s", "home/ledgers/.scratch"), 0700);
	write_text(path_in("%s", "home/ledgers/stray-file"), "x", 0600);
	ck_assert_int_eq(lfs_home_list(&names, &n, &h), 0);
	ck_assert_uint_eq(n, 3);
	ck_assert_str_eq(names[0], "a b");
	ck_assert_str_eq(names[1], "b");
	ck_assert_str_eq(names[2], "todos");
	lfs_home_list_free(names, n);

	/* A ledger directory without a key, or a key without a directory,
	 * blocks create and leaves what is there alone. */
	mkdir(path_in("%s", "home/ledgers/nokey"), 0700);
	ck_assert_int_eq(lfs_home_create(&h, "nokey"), -EEXIST);
	ck_assert_int_eq(lfs_home_key(k1, &h, "nokey"), -ENOENT);
	ck_assert_int_eq(lfs_home_set_key(&h, "imported", k2), 0);
	ck_assert_int_eq(lfs_home_create(&h, "imported"), -EEXIST);
	ck_assert_int_eq(lfs_home_key(k1, &h, "imported"), 0);
	ck_assert_mem_eq(k1, k2, LFS_KEY_BYTES);
	ck_assert_int_ne(stat(path_in("%s", "home/ledgers/imported"), &st), 0);
	lfs_home_release(&h);
}
END_TEST

START_TEST(test_key_roundtrip)
{
	struct lfs_home h;
	open_home(&h);
	uint8_t key[LFS_KEY_BYTES], back[LFS_KEY_BYTES], other[LFS_KEY_BYTES];
	char share[73];
	ck_assert_int_eq(lfs_home_create(&h, "todos"), 0);
	ck_assert_int_eq(lfs_home_key(key, &h, "todos"), 0);

	/* Export, import elsewhere, read back. */
	lfs_key_to_share(share, key);
	ck_assert_uint_eq(strlen(share), 72);
	ck_assert_int_eq(strncmp(share, "lfskey1:", 8), 0);
	ck_assert_uint_eq(strspn(share + 8, "0123456789abcdef"), 64);
	ck_assert_int_eq(lfs_key_from_share(back, share), 0);
	ck_assert_mem_eq(back, key, LFS_KEY_BYTES);

	struct lfs_home h2;
	ck_assert_int_eq(lfs_home_open(&h2, path_in("%s", "home2")), 0);
	ck_assert_int_eq(lfs_home_key(back, &h2, "todos"), -ENOENT);
	ck_assert_int_eq(lfs_home_set_key(&h2, "todos", back), 0);
	memset(back, 0, sizeof(back));
	ck_assert_int_eq(lfs_home_key(back, &h2, "todos"), 0);
	ck_assert_mem_eq(back, key, LFS_KEY_BYTES);
	struct stat st;
	ck_assert_int_eq(stat(path_in("%s", "home2/keys/todos.key"), &st), 0);
	ck_assert_uint_eq(st.st_mode & 0777, 0600);

	/* The same key again is fine; a different one is refused. */
	ck_assert_int_eq(lfs_home_set_key(&h2, "todos", key), 0);
	memcpy(other, key, sizeof(other));
	other[31] ^= 1;
	ck_assert_int_eq(lfs_home_set_key(&h2, "todos", other), -EEXIST);
	ck_assert_int_eq(lfs_home_key(back, &h2, "todos"), 0);
	ck_assert_mem_eq(back, key, LFS_KEY_BYTES);
	ck_assert_int_eq(lfs_home_set_key(&h2, "bad/name", key), -EINVAL);
	ck_assert_int_eq(lfs_home_key(back, &h2, ".x"), -EINVAL);
	ck_assert_uint_eq(count_entries(path_in("%s", "home2/keys")), 1);

	/* Upper case and a trailing newline are accepted. */
	char upper[80];
	snprintf(upper, sizeof(upper), "%s\n", share);
	for (char *p = upper + 8; *p; p++)
		if (*p >= 'a' && *p <= 'f')
			*p = (char)(*p - 'a' + 'A');
	ck_assert_int_eq(lfs_key_from_share(back, upper), 0);
	ck_assert_mem_eq(back, key, LFS_KEY_BYTES);

	/* A known vector. */
	uint8_t k[LFS_KEY_BYTES];
	for (int i = 0; i < LFS_KEY_BYTES; i++)
		k[i] = (uint8_t)i;
	lfs_key_to_share(share, k);
	ck_assert_str_eq(share, "lfskey1:000102030405060708090a0b0c0d0e0f101112"
				"131415161718191a1b1c1d1e1f");
	lfs_home_release(&h);
	lfs_home_release(&h2);
}
END_TEST

START_TEST(test_bad_shares)
{
	static const char *bad[] = {
		"",
		"lfskey1:",
		"lfskey1",
		"lfskey2:"
		"000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c"
		"1d1e1f",
		"LFSKEY1:"
		"000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c"
		"1d1e1f",
		"000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e"
		"1f",
		/* 63 and 65 digits */
		"lfskey1:"
		"000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c"
		"1d1e1",
		"lfskey1:"
		"000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c"
		"1d1e1f0",
		/* 32 digits: a 16-byte key */
		"lfskey1:000102030405060708090a0b0c0d0e0f",
		/* not hex */
		"lfskey1:"
		"g00102030405060708090a0b0c0d0e0f101112131415161718191a1b1c"
		"1d1e1f",
		"lfskey1: "
		"000102030405060708090a0b0c0d0e0f101112131415161718191a1b1"
		"c1d1e1f",
		"lfskey1:000102030405060708090a0b0c0d0e0f "
		"101112131415161718191a1b1"
		"c1d1e1f",
		"lfskey1:"
		"000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c"
		"1d1e1f\nx",
	};
	uint8_t out[LFS_KEY_BYTES];
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		memset(out, 0xaa, sizeof(out));
		ck_assert_msg(lfs_key_from_share(out, bad[i]) == -EINVAL,
			      "accepted share #%zu", i);
		for (size_t j = 0; j < sizeof(out); j++)
			ck_assert_uint_eq(out[j], 0xaa); /* untouched */
	}
	ck_assert_int_eq(lfs_key_from_share(out, NULL), -EINVAL);
}
END_TEST

START_TEST(test_key_file_modes)
{
	struct lfs_home h;
	open_home(&h);
	uint8_t key[LFS_KEY_BYTES], back[LFS_KEY_BYTES];
	ck_assert_int_eq(lfs_home_create(&h, "todos"), 0);
	ck_assert_int_eq(lfs_home_key(key, &h, "todos"), 0);
	const char *path = path_in("%s", "home/keys/todos.key");

	static const mode_t refused[] = {0644, 0640, 0604, 0660, 0606,
					 0602, 0620, 0666, 0610, 0601};
	for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
		ck_assert_int_eq(chmod(path, refused[i]), 0);
		ck_assert_msg(lfs_home_key(back, &h, "todos") == -EACCES,
			      "key file mode %o accepted", refused[i]);
		/* set_key can't compare with a key it refuses to read. */
		ck_assert_int_eq(lfs_home_set_key(&h, "todos", key), -EACCES);
		ck_assert_int_eq(lfs_home_create(&h, "todos"), -EEXIST);
	}
	ck_assert_int_eq(chmod(path, 0400), 0);
	ck_assert_int_eq(lfs_home_key(back, &h, "todos"), 0);
	ck_assert_mem_eq(back, key, LFS_KEY_BYTES);
	ck_assert_int_eq(chmod(path, 0600), 0);
	ck_assert_int_eq(lfs_home_key(back, &h, "todos"), 0);

	/* A key that does not hold 64 hex digits is damaged. */
	write_text(path, "not a key\n", 0600);
	ck_assert_int_eq(lfs_home_key(back, &h, "todos"), -EBADMSG);
	write_text(path, "", 0600);
	ck_assert_int_eq(lfs_home_key(back, &h, "todos"), -EBADMSG);
	char big[8192];
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	write_text(path, big, 0600);
	ck_assert_int_eq(lfs_home_key(back, &h, "todos"), -EBADMSG);
	/* Hex without a newline, in upper case, is read. */
	char hex[65];
	sodium_bin2hex(hex, sizeof(hex), key, sizeof(key));
	for (char *p = hex; *p; p++)
		if (*p >= 'a' && *p <= 'f')
			*p = (char)(*p - 'a' + 'A');
	write_text(path, hex, 0600);
	ck_assert_int_eq(lfs_home_key(back, &h, "todos"), 0);
	ck_assert_mem_eq(back, key, LFS_KEY_BYTES);
	/* A directory where the key should be. */
	unlink(path);
	mkdir(path, 0700);
	ck_assert_int_eq(lfs_home_key(back, &h, "todos"), -EBADMSG);
	rmdir(path);
	ck_assert_int_eq(lfs_home_key(back, &h, "todos"), -ENOENT);
	lfs_home_release(&h);
}
END_TEST

static Suite *home_suite(void)
{
	Suite *s = suite_create("home");
	TCase *tc = tcase_create("core");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_valid_name);
	tcase_add_test(tc, test_open_layout);
	tcase_add_test(tc, test_writer_file);
	tcase_add_test(tc, test_environment);
	tcase_add_test(tc, test_create_and_list);
	tcase_add_test(tc, test_key_roundtrip);
	tcase_add_test(tc, test_bad_shares);
	tcase_add_test(tc, test_key_file_modes);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return lfs_check_run(home_suite());
}
