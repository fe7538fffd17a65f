#!/bin/bash
# Scratch files and directories at any depth the kernel accepts (issue 11,
# pjdfstest's */03.t): their local copies live under
# $LEDGERFS_HOME/scratch/<ledger>/, and the daemon reaches them from a
# descriptor of that directory one name at a time, so an in-mount path
# longer than PATH_MAX minus that prefix, up to the longest a ledger holds
# (PATH_MAX - 1 bytes, README), works: create, write, read, stat, rename,
# link, unlink, mkdir and rmdir, from a working directory that deep and by
# one relative path that long (pjdfstest's way). And hard links of scratch names show one inode
# number (stat and readdir agree) and one link count, which renames keep.
# None of it commits anything.
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
# shellcheck source=tests/fuse_lib.sh
. "${top_srcdir:-$(dirname "$0")/..}/tests/fuse_lib.sh"
fuse_init

L=deep
D=$MNT/$L

fuse_mount
bounded mkdir "$D"

note "a scratch path longer than PATH_MAX minus the home's scratch prefix"
prefix=$LFS_HOME/scratch/$L/
cat >"$TMP/deep.py" <<'EOF'
import errno, os, sys

top, prefix_len = sys.argv[1], int(sys.argv[2])
COMP = 200
PATH_MAX = os.pathconf(top, "PC_PATH_MAX")
LONGEST = PATH_MAX - 1  # a path inside a ledger, in bytes (README)
depth = 0

def check(cond, what):
    if not cond:
        print("FAIL: " + what + " (at a depth of %d bytes)" % depth)
        sys.exit(1)

def errno_of(f, *a):
    try:
        f(*a)
    except OSError as e:
        return e.errno
    return 0

# Down one directory at a time, to where a 5-byte name makes a path of
# LONGEST bytes inside the ledger: with the home's prefix, past PATH_MAX
# on the host.
os.chdir(top)
names = []
while depth < LONGEST - 6:
    n = min(COMP, LONGEST - 6 - depth - (1 if names else 0))
    name = chr(ord("a") + len(names) % 26) * n
    os.mkdir(name, 0o755)
    os.chdir(name)
    depth += n + (1 if names else 0)
    names.append(name)
check(depth == LONGEST - 6, "depth")
check(prefix_len + depth + 6 > PATH_MAX, "the host path is past PATH_MAX")

fd = os.open("f.txt", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
check(os.write(fd, b"hello\n") == 6, "write")
os.close(fd)
st = os.lstat("f.txt")
check(st.st_size == 6 and (st.st_mode & 0o7777) == 0o640, "stat after create")
check(open("f.txt", "rb").read() == b"hello\n", "read back")
os.rename("f.txt", "g.txt")
check(errno_of(os.lstat, "f.txt") == errno.ENOENT, "rename left the old name")
check(open("g.txt", "rb").read() == b"hello\n", "read after rename")
os.link("g.txt", "h.txt")
a, b = os.lstat("g.txt"), os.lstat("h.txt")
check(a.st_ino == b.st_ino and a.st_nlink == 2, "a hard link at depth")
os.chmod("g.txt", 0o600)
os.utime("g.txt", (1000000000, 1000000000))
st = os.lstat("h.txt")
check((st.st_mode & 0o7777) == 0o600 and st.st_mtime == 1000000000,
      "chmod and utime at depth")
os.truncate("h.txt", 2)
check(open("g.txt", "rb").read() == b"he", "truncate at depth")
os.symlink("g.txt", "s")
check(os.readlink("s") == "g.txt", "readlink at depth")
os.mkfifo("p")
got = sorted(os.listdir("."))
check(got == ["g.txt", "h.txt", "p", "s"], "listing at depth: %s" % got)
for n in ("g.txt", "h.txt", "p", "s"):
    os.unlink(n)
os.mkdir("sub", 0o700)
check((os.lstat("sub").st_mode & 0o7777) == 0o700, "mkdir at depth")
os.rmdir("sub")
check(os.listdir(".") == [], "rmdir at depth")
# One byte more than a ledger's paths hold.
check(errno_of(os.mknod, "f.txt6") == errno.ENAMETOOLONG,
      "a path past %d bytes" % LONGEST)

while names:
    os.chdir("..")
    os.rmdir(names.pop())
check(os.listdir(".") == [], "the tree is gone")

# The same by one relative path of LONGEST bytes from the ledger
# (pjdfstest's */03.t).
rel = ""
while len(rel) < LONGEST - 6:
    n = min(COMP, LONGEST - 6 - len(rel) - (1 if rel else 0))
    rel = os.path.join(rel, chr(ord("a") + len(rel) // (COMP + 1) % 26) * n)
    os.mkdir(rel, 0o755)
f = rel + "/f.txt"
depth = len(f)
check(len(f) == LONGEST, "the relative path")
fd = os.open(f, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
os.write(fd, b"x")
os.close(fd)
check(os.stat(f).st_size == 1, "stat by a long relative path")
os.rename(f, rel + "/g.txt")
check(os.listdir(rel) == ["g.txt"], "listing by a long relative path")
os.unlink(rel + "/g.txt")
while rel:
    os.rmdir(rel)
    rel = os.path.dirname(rel)
check(os.listdir(".") == [], "the second tree is gone")
print("ok")
EOF
out=$(bounded python3 "$TMP/deep.py" "$D" "${#prefix}" 2>&1) || fail "$out"
expect_commits $L 0

note "hard links of scratch names share one inode number and link count"
cat >"$TMP/links.py" <<'EOF'
import os, sys

def check(cond, what):
    if not cond:
        print("FAIL: " + what)
        sys.exit(1)

os.chdir(sys.argv[1])
def ino_nlink(p):
    st = os.lstat(p)
    return st.st_ino, st.st_nlink

def dirent_ino(d, name):
    for e in os.scandir(d):
        if e.name == name:
            return e.inode()
    return None

os.mkdir(".scratch")
with open("a.txt", "w") as f:
    f.write("one\n")
ino, n = ino_nlink("a.txt")
check(n == 1, "a new file has one link")
os.link("a.txt", "b.txt")
os.link("a.txt", ".scratch/c")
for p in ("a.txt", "b.txt", ".scratch/c"):
    check(ino_nlink(p) == (ino, 3), "%s: %s, want (%d, 3)" % (p, ino_nlink(p), ino))
check(dirent_ino(".", "b.txt") == ino, "readdir's inode number is stat's")
check(dirent_ino(".scratch", "c") == ino, "readdir's in a scratch dir")
os.rename("b.txt", "d.txt")
check(ino_nlink("d.txt") == (ino, 3), "a rename keeps the number")
with open("d.txt", "a") as f:
    f.write("two\n")
check(open(".scratch/c").read() == "one\ntwo\n", "one file, three names")
os.unlink("a.txt")
check(ino_nlink("d.txt") == (ino, 2), "unlink: one link fewer")
os.unlink("d.txt")
check(ino_nlink(".scratch/c") == (ino, 1), "the last name")
with open("e.txt", "w") as f:
    f.write("other\n")
check(ino_nlink("e.txt")[0] != ino, "another file, another number")
os.unlink(".scratch/c")
os.unlink("e.txt")
os.rmdir(".scratch")
print("ok")
EOF
out=$(bounded python3 "$TMP/links.py" "$D" 2>&1) || fail "$out"
expect_commits $L 0

note "documents keep their own numbers beside scratch files"
put_text "$D/doc.json" '{"a":1}'
expect_errno EPERM link "$D/doc.json" "$D/doc2.txt"
expect_commits $L 1

fuse_umount
echo "PASS"
