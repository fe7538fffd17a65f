#!/bin/bash
# What programs written for a POSIX file system rely on (issue 11): rename
# over a document is atomic for readers (a reader and a writer race over
# 1,000 temp+rename replaces: no ENOENT, no empty, no torn read); a renamed
# scratch file is there at once; a symlink renamed over a document is
# refused and never read; cp of a document; real errnos (ENOSPC) and
# escaped names in line-oriented output; .snapshots and .ledgerfs not
# listed unless -o snapdir=visible; honest times (commit time, touch,
# the ledger's mtime, rsync -a twice sends nothing); modes kept locally,
# -o umask,uid,gid, allow_other safe by default and enforced for another
# user; hard links, FIFOs, sockets, device nodes for scratch names. Each
# part checks the commit count.
# shellcheck disable=SC2016,SC2119,SC2120 # sh -c '...' scripts; optional arguments
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
# shellcheck source=tests/fuse_lib.sh
. "${top_srcdir:-$(dirname "$0")/..}/tests/fuse_lib.sh"
fuse_init

L=posix
D=$MNT/$L
n=0 # commits so far
REPLACES=${LFS_RACE_REPLACES:-1000}

fuse_mount
bounded mkdir "$D"

note "rename(2) over a document is atomic for readers: $REPLACES replaces, a reader reading all along"
cat >"$TMP/race.py" <<'PY'
import json, os, sys
d, N = sys.argv[1], int(sys.argv[2])
doc, tmp = os.path.join(d, "race.json"), os.path.join(d, "race.json.tmp")
def version(i):  # every version has another length
    return json.dumps({"n": i, "pad": "x" * (i % 37)}) + "\n"
with open(doc, "w") as f:
    f.write(version(0))
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    os.close(r)
    for i in range(1, N + 1):
        with open(tmp, "w") as f:
            f.write(version(i))
        os.rename(tmp, doc)
    os._exit(0)
os.close(w)
os.set_blocking(r, False)
reads = enoent = empty = torn = 0
done = False
while not done:
    try:
        done = os.read(r, 1) == b""  # the writer has exited
    except BlockingIOError:
        pass
    try:
        with open(doc, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        enoent += 1
        continue
    reads += 1
    if not data:
        empty += 1
        continue
    try:
        j = json.loads(data)
        if j["_id"] != "race" or j["pad"] != "x" * (j["n"] % 37):
            raise ValueError
    except Exception:
        torn += 1
        if torn < 4:
            print("torn read:", repr(data[:200]), file=sys.stderr)
_, st = os.waitpid(pid, 0)
print(f"replaces={N} reads={reads} enoent={enoent} empty={empty} torn={torn} writer_status={st}")
sys.exit(0 if st == 0 and enoent == empty == torn == 0 and reads > 0 else 1)
PY
timeout -k 5 600 python3 "$TMP/race.py" "$D" "$REPLACES" >"$TMP/race.out" || fail "the race: $(cat "$TMP/race.out")"
note "$(cat "$TMP/race.out")"
expect_saved "$L" "$n" $((1 + REPLACES))
n=$REPLY
expect_doc_jq $L race.json ".n == $REPLACES"
expect_errno ENOENT read "$D/race.json.tmp"

note "a renamed scratch file is there at once: mv a.txt b.txt && cat b.txt"
for i in 1 2 3 4 5 6 7 8 9 10; do
	bounded sh -c 'echo one >"$1/a.txt" && mv "$1/a.txt" "$1/b.txt" && cat "$1/b.txt" && echo two >>"$1/b.txt" && chmod 600 "$1/b.txt" && stat -c %a "$1/b.txt"' sh "$D" >"$TMP/mv.out" ||
		fail "mv a.txt b.txt, then cat/append/chmod/stat b.txt failed (try $i)"
	[ "$(cat "$TMP/mv.out")" = "one
600" ] || fail "after mv a.txt b.txt: $(cat "$TMP/mv.out")"
	expect_file "$D/b.txt" "one
two"
	expect_errno ENOENT read "$D/a.txt"
	bounded rm "$D/b.txt"
done
no_commit

note "a symlink renamed over a document is refused (EPERM), never followed"
printf '{"secret": true}\n' >"$OUTSIDE/private.json"
put_text "$D/evil.json" '{"good": true}'
one_commit
bounded ln -s "$OUTSIDE/private.json" "$D/evil.tmp"
expect_errno EPERM rename "$D/evil.tmp" "$D/evil.json"
expect_errno EPERM rename "$D/evil.tmp" "$D/new-evil.json"
no_commit
expect_doc $L evil '{"good": true}'
expect_errno ENOENT read "$D/new-evil.json"
bounded stat "$D/evil.json" >/dev/null || fail "stat evil.json failed after the refused rename"
[ "$(bounded readlink "$D/evil.tmp")" = "$OUTSIDE/private.json" ] || fail "the link evil.tmp is gone"
bounded grep -q 'evil.tmp is not' "$D/.ledgerfs/errors" || fail ".ledgerfs/errors does not say why the rename was refused"
note "a document renamed onto a symlink's name replaces the link, never writes through it"
bounded ln -s "$OUTSIDE/private.json" "$D/evil.json~"
bounded mv "$D/evil.json" "$D/evil.json~"
[ "$(cat "$OUTSIDE/private.json")" = '{"secret": true}' ] || fail "renaming a document onto a link wrote through it"
[ ! -L "$D/evil.json~" ] || fail "evil.json~ is still a link"
bounded grep -q '"good": true' "$D/evil.json~" || fail "evil.json~ does not hold the document's text"
bounded mv "$D/evil.json~" "$D/evil.json"
no_commit
expect_doc $L evil '{"good": true}'
bounded rm "$D/evil.tmp"


note "cp a.json b.json saves b: the file name is the identity"
put_text "$D/a.json" '{"v": 1}'
one_commit
bounded cp "$D/a.json" "$D/b.json"
one_commit
expect_doc $L b '{"v": 1}'
bounded cp -p "$D/a.json" "$D/c.json"
one_commit
expect_doc $L c '{"v": 1}'

note "a refused save of a name that is not UTF-8 leaves .ledgerfs/status readable"
printf '{"v": 1}\n' >"$TMP/v1"
got=$(fsop write "$D/$(printf '\377').json" "$TMP/v1")
[ "$got" = "close:EINVAL" ] || fail "saving \\xff.json: expected close:EINVAL, got $got"
no_commit
lfs_status $L
jq -e '.last_error | test("xff")' <<<"$LFS_STATUS_JSON" >/dev/null || fail "status does not show the refusal: $LFS_STATUS_JSON"
bounded rm "$D/$(printf '\377').json"

note "names with newlines are escaped in .ledgerfs/changes, .ledgerfs/errors and the log"
nl=$'two\nFORGED line'
put_text "$D/$nl.json" '{"v": 2}'
one_commit
bounded grep -q 'two\\nFORGED line' "$D/.ledgerfs/changes" || fail ".ledgerfs/changes does not hold the escaped id: $(cat "$D/.ledgerfs/changes")"
! bounded grep -q '^FORGED' "$D/.ledgerfs/changes" || fail "a newline in an id forged a line in .ledgerfs/changes"
printf 'not json\n' >"$TMP/bad"
got=$(fsop write "$D/bad$nl.json" "$TMP/bad")
[ "$got" = "close:EINVAL" ] || fail "a save of text: expected close:EINVAL, got $got"
bounded grep -q 'badtwo\\nFORGED line.json' "$D/.ledgerfs/errors" || fail ".ledgerfs/errors does not hold the escaped name"
! bounded grep -q '^FORGED' "$D/.ledgerfs/errors" || fail "a newline in a name forged a line in .ledgerfs/errors"
! grep -q '^FORGED' "$DAEMON_LOG" || fail "a newline in a name forged a line in the log"
grep -q 'badtwo\\nFORGED line.json' "$DAEMON_LOG" || fail "the log does not hold the escaped name"
bounded rm "$D/bad$nl.json" "$D/$nl.json"
one_commit

note "history out of the way: .snapshots and .ledgerfs are reachable, not listed"
got=$(bounded ls -a "$D" | grep -c '^\.snapshots$\|^\.ledgerfs$' || true)
[ "$got" = 0 ] || fail "ls -a lists .snapshots or .ledgerfs without snapdir=visible"
bounded test -d "$D/.snapshots" || fail "$D/.snapshots is not reachable by name"
bounded test -f "$D/.ledgerfs/status" || fail "$D/.ledgerfs/status is not reachable by name"
got=$(bounded find "$D" | grep -c '\.snapshots\|\.ledgerfs' || true)
[ "$got" = 0 ] || fail "find walks the history ($got entries)"

note "honest times: a document's mtime is its last commit's"
lfs_head $L
h=$REPLY
mt() { bounded python3 -c 'import os, sys; print(os.stat(sys.argv[1]).st_mtime_ns // 1000)' "$1"; }
[ "$(mt "$D/c.json")" -le "$(mt "$D/.snapshots/$h")" ] || fail "c.json is newer than the head's commit"
put_text "$D/c.json" '{"v": 3}'
one_commit
lfs_head $L
[ "$(mt "$D/c.json")" = "$(mt "$D/.snapshots/$REPLY")" ] || fail "c.json's mtime $(mt "$D/c.json") is not its commit's $(mt "$D/.snapshots/$REPLY")"
note "touch -d sets a document's mtime, kept until the next commit"
bounded touch -d '2020-02-03 04:05:06 UTC' "$D/c.json"
[ "$(bounded stat -c %Y "$D/c.json")" = 1580702706 ] || fail "touch -d did not set c.json's mtime: $(stat -c %y "$D/c.json")"
no_commit
put_text "$D/c.json" '{"v": 4}'
one_commit
[ "$(bounded stat -c %Y "$D/c.json")" != 1580702706 ] || fail "a new commit kept the old mtime"
bounded touch -d '2020-02-03 04:05:06 UTC' "$D/c.json"
note "a ledger directory's mtime moves when a document is added or removed"
bounded touch -d '2021-01-01 00:00:00 UTC' "$D"
[ "$(bounded stat -c %Y "$D")" = 1609459200 ] || fail "touch -d on the ledger directory did not set its mtime"
put_text "$D/added.json" '{"v": 5}'
one_commit
end=$((SECONDS + 60))
while [ "$(bounded stat -c %Y "$D")" = 1609459200 ]; do
	[ $SECONDS -lt $end ] || fail "adding a document did not move the ledger directory's mtime"
	sleep 0.1
done
bounded touch -d '2021-01-01 00:00:00 UTC' "$D"
bounded rm "$D/added.json"
one_commit
end=$((SECONDS + 60))
while [ "$(bounded stat -c %Y "$D")" = 1609459200 ]; do
	[ $SECONDS -lt $end ] || fail "removing a document did not move the ledger directory's mtime"
	sleep 0.1
done
[ "$(bounded stat -c %Y "$D/.ledgerfs/status")" -gt 1600000000 ] || fail ".ledgerfs/status shows $(stat -c %y "$D/.ledgerfs/status")"

note "permissions: chmod works on documents and ledgers (kept locally), fails clearly elsewhere"
bounded chmod 600 "$D/c.json"
[ "$(bounded stat -c %a "$D/c.json")" = 600 ] || fail "chmod 600 c.json: mode $(stat -c %a "$D/c.json")"
bounded chmod 700 "$D"
[ "$(bounded stat -c %a "$D")" = 700 ] || fail "chmod 700 on the ledger: mode $(stat -c %a "$D")"
expect_errno EPERM chmod "$MNT" 700
expect_errno EPERM chmod "$D/.ledgerfs/status" 600
no_commit
bounded chmod 755 "$D"

note "rsync -a twice: the second run transfers nothing"
need rsync
mkdir "$OUTSIDE/tree"
for i in $(seq 1 30); do
	pretty "r$i" "{\"i\": $i, \"name\": \"doc $i\"}" >"$OUTSIDE/tree/r$i.json"
done
bounded rsync -a "$OUTSIDE/tree/" "$D/"
expect_saved "$L" "$n" 30
n=$REPLY
bounded rsync -a --itemize-changes --stats "$OUTSIDE/tree/" "$D/" >"$TMP/rsync.out"
grep -q 'Number of regular files transferred: 0' "$TMP/rsync.out" || fail "the second rsync -a sent files:
$(cat "$TMP/rsync.out")"
no_commit

note "scratch names: hard links, FIFOs, sockets and device nodes pass through"
bounded sh -c 'echo data >"$1/s.txt" && ln "$1/s.txt" "$1/s2.txt"' sh "$D"
expect_file "$D/s2.txt" data
[ "$(bounded stat -c %h "$D/s2.txt")" = 2 ] || fail "s2.txt has $(stat -c %h "$D/s2.txt") links"
expect_errno EPERM link "$D/s.txt" "$D/s.json"
expect_errno EPERM link "$D/c.json" "$D/c2.txt"
bounded mkfifo "$D/fifo"
[ "$(bounded stat -c %F "$D/fifo")" = fifo ] || fail "mkfifo made a $(stat -c %F "$D/fifo")"
bounded sh -c 'echo through >"$1/fifo" & cat "$1/fifo"; wait' sh "$D" >"$TMP/fifo.out"
[ "$(cat "$TMP/fifo.out")" = through ] || fail "the FIFO passed '$(cat "$TMP/fifo.out")'"
bounded python3 -c 'import socket, sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])' "$D/sock"
[ "$(bounded stat -c %F "$D/sock")" = socket ] || fail "the socket is a $(stat -c %F "$D/sock")"
bounded mknod "$D/null" c 1 3
[ "$(bounded stat -c %t:%T "$D/null")" = 1:3 ] || fail "mknod c 1 3 made $(stat -c %F "$D/null")"
expect_errno EPERM rename "$D/fifo" "$D/fifo.json"
bounded rm "$D/s.txt" "$D/s2.txt" "$D/fifo" "$D/sock" "$D/null"
no_commit

note "a scratch file unlinked while open: fstat gives 0 links, reads and writes go on, the name is free"
out=$(bounded python3 - "$D/open.tmp" <<'PY'
import os, sys
p = sys.argv[1]
fd = os.open(p, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
os.write(fd, b"kept while open")
os.unlink(p)
print(os.fstat(fd).st_nlink, os.pread(fd, 15, 0).decode(), os.path.exists(p))
os.pwrite(fd, b"KEPT", 0)
fd2 = os.open(p, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
os.write(fd2, b"new\n")
print(os.pread(fd, 15, 0).decode(), os.fstat(fd).st_ino != os.fstat(fd2).st_ino)
os.close(fd)
os.close(fd2)
PY
)
[ "$out" = "0 kept while open False
KEPT while open True" ] || fail "unlinked while open: $out"
expect_file "$D/open.tmp" new
bounded rm "$D/open.tmp"
no_commit

fuse_alive
fuse_umount

note "after a remount: modes and set times are still there"
fuse_mount
[ "$(bounded stat -c %a "$D/c.json")" = 600 ] || fail "c.json's mode after a remount: $(stat -c %a "$D/c.json")"
[ "$(bounded stat -c %Y "$D/c.json")" = 1580702706 ] || fail "c.json's mtime after a remount: $(stat -c %y "$D/c.json")"
bounded rsync -a --stats "$OUTSIDE/tree/" "$D/" >"$TMP/rsync.out"
grep -q 'Number of regular files transferred: 0' "$TMP/rsync.out" || fail "rsync -a after a remount sent files"
fuse_umount

note "-o snapdir=visible lists .snapshots and .ledgerfs; -o umask,uid,gid"
fuse_mount -o snapdir=visible,umask=027,uid=1234,gid=5678
got=$(bounded ls -a "$D" | grep -c '^\.snapshots$\|^\.ledgerfs$' || true)
[ "$got" = 2 ] || fail "snapdir=visible: ls -a lists $got of .snapshots and .ledgerfs"
[ "$(bounded stat -c '%a %u %g' "$D/a.json")" = "640 1234 5678" ] || fail "umask=027,uid,gid: a.json is $(stat -c '%a %u %g' "$D/a.json")"
bounded mkdir "$MNT/masked"
[ "$(bounded stat -c '%a %u' "$MNT/masked")" = "750 1234" ] || fail "umask=027: a new ledger is $(stat -c '%a %u' "$MNT/masked")"
[ "$(bounded stat -c '%a' "$D")" = 755 ] || fail "the ledger's mode set with chmod is $(stat -c '%a' "$D") under umask=027"
fuse_umount

note "-o allow_other: safe by default (umask 077), enforced for another user"
fuse_mount -o allow_other
[ "$(bounded stat -c %a "$D/a.json")" = 600 ] || fail "allow_other: a.json is $(stat -c %a "$D/a.json")"
if id nobody >/dev/null 2>&1; then
	chmod 755 "$MNTBASE" # mktemp made it 0700: let nobody reach the mount
	bounded runuser -u nobody -- cat "$D/a.json" >/dev/null 2>&1 && fail "another user read a.json"
	bounded chmod 644 "$D/a.json"
	bounded chmod 755 "$D"
	bounded runuser -u nobody -- cat "$D/a.json" >/dev/null || fail "another user cannot read a.json after chmod 644"
	bounded runuser -u nobody -- sh -c 'echo "{}" >"$1"' sh "$D/a.json" 2>/dev/null && fail "another user wrote a.json (0644, not theirs)"
fi
no_commit
fuse_umount

note "a full disk: a save answers ENOSPC, not EINVAL"
SMALL=$TMP/small
mkdir "$SMALL"
if mount -t tmpfs -o size=8m tmpfs "$SMALL" 2>/dev/null; then
	_small_cleanup()
	{
		local st=$?
		trap - ERR
		umount -l "$SMALL" 2>/dev/null
		(exit $st)
		_fuse_cleanup
	}
	trap _small_cleanup EXIT
	LFS_HOME=$SMALL/home
	export LEDGERFS_HOME=$LFS_HOME
	fuse_mount
	bounded mkdir "$MNT/full"
	put_text "$MNT/full/ok.json" '{"v": 1}'
	dd if=/dev/zero of="$SMALL/filler" bs=4k >/dev/null 2>&1 || true
	# Larger than any slack the store's files may have left.
	python3 -c 'import json; print(json.dumps({"pad": "x" * 300000}))' >"$TMP/big"
	got=$(fsop write "$MNT/full/more.json" "$TMP/big")
	case $got in
	*ENOSPC*) ;;
	*) fail "a save on a full disk: expected ENOSPC, got $got" ;;
	esac
	rm -f "$SMALL/filler"
	lfs_status full
	fuse_umount
	umount "$SMALL"
	trap _fuse_cleanup EXIT
else
	note "(skipped: cannot mount a tmpfs here)"
fi

echo "PASS: fuse_posix"
