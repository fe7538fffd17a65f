#!/bin/bash
# The kernel keeps committed documents' names and attributes, and is told
# at once when a commit that did not come through the mount changes them:
# `ledgerfs put` and `rm` on the mounted home, and changes pulled from the
# remote store that another home pushed. The mount here keeps them for an
# hour (-o cache_timeout=3600), so a name or a size the kernel was not told
# about would outlive every wait below: stat and cat through the mount must
# show each change once the mount has applied it, a name a pull or a put
# adds is never hidden by an earlier failed lookup (which the kernel keeps
# too: a second stat of a missing name asks nothing), a second stat of a
# document asks the daemon nothing (no lookup, no getattr), and a new
# file's attributes, kept while it is written, are the saved document's
# after close. Under the least -o cache_max, two ledgers' documents read
# back whole; less is refused.
# shellcheck disable=SC2119,SC2120 # optional arguments
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
# shellcheck source=tests/fuse_lib.sh
. "${top_srcdir:-$(dirname "$0")/..}/tests/fuse_lib.sh"
fuse_init

L=cached
D=$MNT/$L
URL=file://$TMP/remote
B=$TMP/home-b

# wait_size FILE SIZE: until stat (alone: reading a file makes the kernel
# ask for its atime again) shows FILE's size as SIZE.
wait_size()
{
	local end=$((SECONDS + 60))
	until [ "$(bounded stat -c %s "$1" 2>/dev/null)" = "$2" ]; do
		[ $SECONDS -lt $end ] || fail "$1: stat still shows $(stat -c %s "$1" 2>&1) bytes 60 s after the change, not $2"
		sleep 0.05
	done
}

# The size of document $2 of $L as `ledgerfs get` prints it (as the mount
# renders it), in home $1.
doc_size()
{
	REPLY=$(LEDGERFS_HOME=$1 bounded "$LEDGERFS" get "$L" "$2" | wc -c) ||
		fail "ledgerfs get $2"
}

# wait_gone FILE: until stat says there is no FILE.
wait_gone()
{
	local end=$((SECONDS + 60))
	while bounded stat "$1" >/dev/null 2>&1; do
		[ $SECONDS -lt $end ] || fail "$1 is still there 60 s after its delete"
		sleep 0.05
	done
}

# cached FILE: stat FILE, then check a second stat asks the daemon
# nothing (no lookup in its directory, no getattr of it; libfuse's -o
# debug lines), so what follows tests what the kernel was told.
cached()
{
	local dino ino before
	bounded stat "$1" >/dev/null || fail "stat $1"
	dino=$(bounded stat -c %i "$(dirname "$1")") || fail "stat $(dirname "$1")"
	ino=$(bounded stat -c %i "$1") || fail "stat $1"
	requests "$dino" "$ino"
	before=$REPLY
	bounded stat "$1" >/dev/null || fail "stat $1"
	requests "$dino" "$ino"
	[ "$REPLY" = "$before" ] || fail "a second stat of $1 sent $((REPLY - before)) lookups or getattrs to the daemon"
}

# absent FILE: FILE does not exist, and the kernel keeps that too: a
# second stat of it asks the daemon nothing (no lookup in its directory),
# so what follows tests that a name added elsewhere is told to the kernel.
absent()
{
	local dino before
	bounded stat "$1" >/dev/null 2>&1 && fail "$1 exists"
	dino=$(bounded stat -c %i "$(dirname "$1")") || fail "stat $(dirname "$1")"
	requests "$dino" none
	before=$REPLY
	bounded stat "$1" >/dev/null 2>&1 && fail "$1 exists"
	requests "$dino" none
	[ "$REPLY" = "$before" ] || fail "a second stat of the missing $1 sent $((REPLY - before)) lookups to the daemon"
}

requests()
{
	REPLY=$(grep -cE "^unique: [0-9]+, opcode: (LOOKUP \\(1\\), nodeid: $1|GETATTR \\(3\\), nodeid: $2)," "$DAEMON_LOG" || true)
}

"$LEDGERFS" init "$L" >/dev/null || fail "ledgerfs init"
share=$("$LEDGERFS" key export "$L") || fail "key export"
mkdir -p "$B"
LEDGERFS_HOME=$B "$LEDGERFS" key import "$L" "$share" >/dev/null ||
	fail "key import into the second home"

fuse_mount --remote "$URL" --poll-ms 200 -o cache_timeout=3600,debug
put_text "$D/a.json" '{"v": 1}'
put_text "$D/gone.json" '{"v": 1}'
expect_commits "$L" 2
doc_size "$LFS_HOME" a
wait_size "$D/a.json" "$REPLY"

note "ledgerfs put and rm on the mounted home"
cached "$D/a.json"
cached "$D/gone.json"
echo '{"v": 2, "by": "the command line", "pad": "0123456789"}' |
	bounded "$LEDGERFS" put "$L" a >/dev/null || fail "ledgerfs put a"
doc_size "$LFS_HOME" a
wait_size "$D/a.json" "$REPLY"
expect_doc_jq "$L" a.json '.v == 2 and .by == "the command line"'
expect_errno ENOENT read "$D/new.json"
absent "$D/new.json"
echo '{"v": 1}' | bounded "$LEDGERFS" put "$L" new >/dev/null || fail "ledgerfs put new"
doc_size "$LFS_HOME" new
wait_size "$D/new.json" "$REPLY"
bounded "$LEDGERFS" rm "$L" gone >/dev/null || fail "ledgerfs rm gone"
wait_gone "$D/gone.json"
bounded ls "$D" | grep -qx gone.json && fail "gone.json is still listed"

note "changes another home pushed, pulled by the mount"
bounded cat "$D/.ledgerfs/wait" >/dev/null || fail "the mount did not push"
LEDGERFS_HOME=$B bounded "$LEDGERFS" sync --remote "$URL" "$L" >/dev/null ||
	fail "the second home could not pull"
cached "$D/new.json"
cached "$D/a.json"
expect_errno ENOENT read "$D/pulled.json"
absent "$D/pulled.json"
absent "$D/pulled-folder"
echo '{"v": 3, "by": "the other home"}' |
	LEDGERFS_HOME=$B bounded "$LEDGERFS" put "$L" new >/dev/null || fail "put new in the second home"
echo '{"v": 1}' | LEDGERFS_HOME=$B bounded "$LEDGERFS" put "$L" pulled >/dev/null ||
	fail "put pulled in the second home"
echo '{"v": 1}' | LEDGERFS_HOME=$B bounded "$LEDGERFS" put "$L" pulled-folder/p >/dev/null ||
	fail "put pulled-folder/p in the second home"
LEDGERFS_HOME=$B bounded "$LEDGERFS" rm "$L" a >/dev/null || fail "rm a in the second home"
LEDGERFS_HOME=$B bounded "$LEDGERFS" sync --remote "$URL" "$L" >/dev/null ||
	fail "the second home could not push"
doc_size "$B" new
wait_size "$D/new.json" "$REPLY"
expect_doc_jq "$L" new.json '.v == 3 and .by == "the other home"'
doc_size "$B" pulled
wait_size "$D/pulled.json" "$REPLY"
doc_size "$B" pulled-folder/p
wait_size "$D/pulled-folder/p.json" "$REPLY"
wait_gone "$D/a.json"

note "renames and saves through the mount"
cached "$D/new.json"
bounded mv "$D/new.json" "$D/renamed-to-a-longer-name.json" || fail "mv"
doc_size "$LFS_HOME" renamed-to-a-longer-name
[ "$(stat -c %s "$D/renamed-to-a-longer-name.json")" = "$REPLY" ] ||
	fail "stat of a renamed document shows $(stat -c %s "$D/renamed-to-a-longer-name.json") bytes, not $REPLY"
cached "$D/pulled.json"
put_text "$D/pulled.json" '{"v": 2, "more": "text than before"}'
doc_size "$LFS_HOME" pulled
[ "$(stat -c %s "$D/pulled.json")" = "$REPLY" ] ||
	fail "stat after a save shows $(stat -c %s "$D/pulled.json") bytes, not $REPLY"
expect_doc_jq "$L" pulled.json '.more == "text than before"'
put_text "$D/fresh.json" '{ "v":    1,    "spaces": "are not kept" }'
doc_size "$LFS_HOME" fresh
[ "$(stat -c %s "$D/fresh.json")" = "$REPLY" ] ||
	fail "stat of a new document after close shows $(stat -c %s "$D/fresh.json") bytes, not $REPLY"

note "a document's first read comes with its open"
# A document the kernel has not read through this mount gets its text
# into the page cache with the open (fs.c's preload): cat sends no READ.
echo '{"v": 1, "text": "read with its open"}' |
	bounded "$LEDGERFS" put "$L" first-read >/dev/null || fail "ledgerfs put first-read"
doc_size "$LFS_HOME" first-read
wait_size "$D/first-read.json" "$REPLY"
ino=$(bounded stat -c %i "$D/first-read.json") || fail "stat first-read.json"
reads_before=$(grep -cE "^unique: [0-9]+, opcode: READ \(15\), nodeid: $ino," "$DAEMON_LOG" || true)
bounded cat "$D/first-read.json" >"$TMP/first-read.out" || fail "cat first-read.json"
jq -e '.text == "read with its open"' "$TMP/first-read.out" >/dev/null ||
	fail "first-read.json reads back as $(head -c 200 "$TMP/first-read.out")"
[ "$(wc -c <"$TMP/first-read.out")" = "$REPLY" ] ||
	fail "first-read.json read $(wc -c <"$TMP/first-read.out") bytes, not $REPLY"
reads_after=$(grep -cE "^unique: [0-9]+, opcode: READ \(15\), nodeid: $ino," "$DAEMON_LOG" || true)
[ "$reads_after" = "$reads_before" ] ||
	fail "the first read of first-read.json sent $((reads_after - reads_before)) READ requests"
cmp -s "$TMP/first-read.out" <(bounded cat "$D/first-read.json") ||
	fail "first-read.json reads differently the second time"

note "an editor's temporary renamed over a document keeps its name cached"
# The temporary's entry is kept as long as a document's (it is a local
# file, which nothing from elsewhere names): changes from the command
# line to the name it now holds must still show at once.
printf '%s\n' '{"v": 1, "by": "the editor"}' >"$D/.edited.json.tmp" ||
	fail "write .edited.json.tmp"
bounded mv "$D/.edited.json.tmp" "$D/edited.json" || fail "mv over edited.json"
expect_doc_jq "$L" edited.json '.v == 1 and .by == "the editor"'
cached "$D/edited.json"
echo '{"v": 2, "by": "the command line, after the editor"}' |
	bounded "$LEDGERFS" put "$L" edited >/dev/null || fail "ledgerfs put edited"
doc_size "$LFS_HOME" edited
wait_size "$D/edited.json" "$REPLY"
expect_doc_jq "$L" edited.json '.v == 2 and .by == "the command line, after the editor"'
bounded "$LEDGERFS" rm "$L" edited >/dev/null || fail "ledgerfs rm edited"
wait_gone "$D/edited.json"

note "documents in folders: a put from the command line, a folder renamed"
echo '{"v": 1}' | bounded "$LEDGERFS" put "$L" dir/x >/dev/null || fail "ledgerfs put dir/x"
doc_size "$LFS_HOME" dir/x
wait_size "$D/dir/x.json" "$REPLY"
cached "$D/dir/x.json"
absent "$D/dir/y.json"
absent "$D/later"
echo '{"v": 1}' | bounded "$LEDGERFS" put "$L" dir/y >/dev/null || fail "ledgerfs put dir/y"
echo '{"v": 1}' | bounded "$LEDGERFS" put "$L" later/z >/dev/null || fail "ledgerfs put later/z"
doc_size "$LFS_HOME" dir/y
wait_size "$D/dir/y.json" "$REPLY"
doc_size "$LFS_HOME" later/z
wait_size "$D/later/z.json" "$REPLY"
echo '{"v": 2, "longer": "than before"}' | bounded "$LEDGERFS" put "$L" dir/x >/dev/null ||
	fail "ledgerfs put dir/x again"
doc_size "$LFS_HOME" dir/x
wait_size "$D/dir/x.json" "$REPLY"
cached "$D/dir/x.json"
# A folder's attributes are kept as long as a ledger's (a second): with
# default_permissions the kernel needs them for every path through the
# folder, and asked each time while they were not kept. So a burst of
# stats of a document in it asks for them at most once a second (and
# once more at each end).
fino=$(bounded stat -c %i "$D/dir") || fail "stat $D/dir"
requests none "$fino"
before=$REPLY
t0=$(date +%s%N)
bounded python3 -c 'import os, sys
for _ in range(300):
    os.stat(sys.argv[1])' "$D/dir/x.json" || fail "stat $D/dir/x.json"
elapsed=$((($(date +%s%N) - t0) / 1000000000))
requests none "$fino"
[ $((REPLY - before)) -le $((elapsed + 2)) ] ||
	fail "300 stats of a document in a folder asked for the folder's attributes $((REPLY - before)) times in ${elapsed}s"
note "a folder emptied elsewhere goes: its name and attributes are told"
# A nested folder's attributes follow the ledger's times; a commit
# elsewhere under it tells the kernel (the folder's and its parents').
echo '{"v": 1}' | bounded "$LEDGERFS" put "$L" deep/a/b >/dev/null || fail "ledgerfs put deep/a/b"
doc_size "$LFS_HOME" deep/a/b
wait_size "$D/deep/a/b.json" "$REPLY"
bounded stat "$D/deep" "$D/deep/a" >/dev/null || fail "stat deep, deep/a"
bounded "$LEDGERFS" rm "$L" deep/a/b >/dev/null || fail "ledgerfs rm deep/a/b"
wait_gone "$D/deep"
bounded mv "$D/dir" "$D/renamed-folder" || fail "mv dir renamed-folder"
doc_size "$LFS_HOME" renamed-folder/x
[ "$(stat -c %s "$D/renamed-folder/x.json")" = "$REPLY" ] ||
	fail "stat of a document in a renamed folder shows $(stat -c %s "$D/renamed-folder/x.json") bytes, not $REPLY"

fuse_umount

note "the least cache budget (-o cache_max=1 MiB) shared by two ledgers: every document reads back whole"
fuse_mount -o cache_max=1048576
pad=$(printf '%03000d' 0)
for l in budget1 budget2; do
	bounded mkdir "$MNT/$l" || fail "mkdir $l"
	for i in $(seq 120); do
		put_text "$MNT/$l/d$i.json" "{\"n\":$i,\"pad\":\"$pad\"}"
	done
done
fuse_umount
# Read after a remount, alternating ledgers: ~720 KB of texts, their index
# nodes and their decrypted blocks go through caches bounded to 1 MiB.
fuse_mount -o cache_max=1048576
for i in $(seq 120); do
	for l in budget1 budget2; do
		expect_doc $l "d$i" "{\"n\":$i,\"pad\":\"$pad\"}"
	done
done
fuse_umount

note "-o cache_max below 1 MiB is refused"
bounded "$LEDGERFS" mount --home "$LFS_HOME" -f -o cache_max=100 "$MNT" >"$TMP/bad.out" 2>&1 &&
	fail "a mount with -o cache_max=100 started"
grep -q 'cache_max' "$TMP/bad.out" || fail "the refusal does not name cache_max: $(cat "$TMP/bad.out")"
echo "PASS: fuse_cache"
