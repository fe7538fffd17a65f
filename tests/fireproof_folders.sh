#!/bin/bash
# A Fireproof ledger's ids with '/' are folders in its mount, as in a
# ledger's (issue 11; src/fsname.h's paths, src/idtree.h's listings):
# notes/2026/a is notes/2026/a.json; ids fsname cannot cut (a//b) keep
# their escapes; the flat name from before folders still opens a document;
# a folder goes with its last document while mounted; snapshots show the
# folders as they were; writes in a folder are refused (EROFS).
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
# shellcheck source=tests/fuse_lib.sh
. "${top_srcdir:-$(dirname "$0")/..}/tests/fuse_lib.sh"
fuse_init
# shellcheck source=tests/fireproof_lib.sh
. "$top_srcdir/tests/fireproof_lib.sh"

expect_ls()
{
	local dir=$1 want got
	shift
	want=$(printf '%s\n' "$@" | LC_ALL=C sort)
	got=$(bounded ls "$dir" | LC_ALL=C sort) || fail "ls $dir failed"
	[ "$got" = "$want" ] || fail "ls $dir: expected
$want
---- got ----
$got"
}

note "the application writes ids with '/'"
app app put top '{"v":0}'
app app put notes/2026/a '{"v":1}'
app app put notes/b '{"v":2}'
app app put a//b '{"v":3}'
fuse_mount --fireproof "$FPS" --keybag "$FPK" --poll-ms 200
D=$MNT/app
expect_ls "$D" top.json notes a%2F%2Fb.json
expect_ls "$D/notes" 2026 b.json
expect_ls "$D/notes/2026" a.json
[ "$(stat -c %F "$D/notes")" = directory ] || fail "notes is not a directory"
run bounded "$LEDGERFS" get --fireproof "$FPS" --keybag "$FPK" app notes/2026/a
expect_file "$D/notes/2026/a.json" "$(cat "$TMP/stdout")"
expect_file "$D/notes%2F2026%2Fa.json" "$(cat "$TMP/stdout")"
bounded find "$D" -name '*.json' -not -path '*/.snapshots/*' | wc -l | grep -qx 4 ||
	fail "find does not see the 4 documents: $(bounded find "$D" -not -path '*/.snapshots/*')"
lfs_head app
before=$REPLY

note "writes in a folder are refused"
expect_errno EROFS create "$D/notes/new.json"
expect_errno EROFS mkdir "$D/notes/sub"

note "a folder goes with its last document, while mounted"
app app del notes/2026/a
wait_for '[ ! -e "$D/notes/2026/a.json" ]'
wait_for '[ ! -e "$D/notes/2026" ]'
expect_ls "$D/notes" b.json
app app put fresh/x '{"v":4}'
wait_for '[ -f "$D/fresh/x.json" ]'

note "snapshots show the folders as they were"
expect_ls "$D/.snapshots/$before/notes/2026" a.json
bounded cat "$D/.snapshots/$before/notes/2026/a.json" | jq -e '.v == 1' >/dev/null ||
	fail "the snapshot's notes/2026/a.json is not the old version"
[ ! -e "$D/.snapshots/$before/fresh" ] || fail "the snapshot shows a later folder"
fuse_umount
