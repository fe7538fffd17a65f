#!/bin/bash
# Folders in a ledger (issue 11): a folder is part of the document id
# (notes/2026/a.json is document notes/2026/a); mkdir -p, cp -r, tar x and
# git work; dot-folders (.git) and what is under them are scratch, never
# committed; rmdir of a non-empty folder is ENOTEMPTY; renaming a folder
# moves every document under it in one commit; an empty folder is local;
# snapshots show folders; a ledger written before folders (ids with '/'
# named a%2Fb.json) shows every document, in folders, and the old names
# still open them. Each part checks the commit count.
# shellcheck disable=SC2016,SC2119,SC2120 # sh -c '...' scripts; optional arguments
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
# shellcheck source=tests/fuse_lib.sh
. "${top_srcdir:-$(dirname "$0")/..}/tests/fuse_lib.sh"
fuse_init

L=folders
D=$MNT/$L
n=0 # commits so far

# expect_ls DIR NAME... : DIR lists exactly NAME...
expect_ls()
{
	local dir=$1 want got
	shift
	want=$(printf '%s\n' "$@" | LC_ALL=C sort)
	got=$(bounded ls -A "$dir" | LC_ALL=C sort) || fail "ls $dir failed"
	[ "$got" = "$want" ] || fail "ls $dir: expected
$want
---- got ----
$got"
}

fuse_mount
bounded mkdir "$D"

note "mkdir -p, write, read, ls: a folder is part of the id"
bounded mkdir -p "$D/notes/2026"
[ -d "$D/notes/2026" ] || fail "mkdir -p made no folder"
no_commit
put_text "$D/notes/2026/a.json" '{"title":"a"}'
one_commit
expect_doc $L notes/2026/a '{"title":"a"}'
expect_ls "$D" notes
expect_ls "$D/notes" 2026
expect_ls "$D/notes/2026" a.json
[ "$(stat -c %F "$D/notes")" = directory ] || fail "notes is not a directory"
put_text "$D/notes/b.json" '{"title":"b"}'
one_commit
expect_ls "$D/notes" 2026 b.json

note "a document's name is not a folder's; a folder is not a file"
expect_errno EPERM mkdir "$D/notes/c.json"
expect_errno EISDIR unlink "$D/notes/2026"
expect_errno ENOTDIR rmdir "$D/notes/b.json"
expect_errno EEXIST mkdir "$D/notes"

note "rmdir: a non-empty folder is ENOTEMPTY; an empty one goes"
expect_errno ENOTEMPTY rmdir "$D/notes/2026"
bounded mkdir "$D/empty"
expect_errno ok rmdir "$D/empty"
[ ! -e "$D/empty" ] || fail "rmdir left $D/empty"
no_commit

note "removing the last document keeps its folder, as a directory would"
bounded rm "$D/notes/2026/a.json"
one_commit
[ -d "$D/notes/2026" ] || fail "the folder went with its last document"
expect_ls "$D/notes/2026"
expect_errno ok rmdir "$D/notes/2026"
[ ! -e "$D/notes/2026" ] || fail "rmdir left notes/2026"

note "cp -r of a tree with subfolders: every document, in one commit or more"
mkdir -p "$OUTSIDE/tree/x/y" "$OUTSIDE/tree/z"
echo '{"k":1}' >"$OUTSIDE/tree/one.json"
echo '{"k":2}' >"$OUTSIDE/tree/x/two.json"
echo '{"k":3}' >"$OUTSIDE/tree/x/y/three.json"
echo 'plain text' >"$OUTSIDE/tree/z/readme.txt"
bounded cp -r "$OUTSIDE/tree" "$D/"
expect_saved $L $n 3
n=$REPLY
expect_doc $L tree/x/y/three '{"k":3}'
expect_file "$D/tree/z/readme.txt" 'plain text'
# The same names, at the same places (a document's bytes are re-rendered).
(cd "$OUTSIDE/tree" && find . | LC_ALL=C sort) >"$TMP/want.tree"
(cd "$D/tree" && bounded find . | LC_ALL=C sort) >"$TMP/got.tree"
cmp -s "$TMP/want.tree" "$TMP/got.tree" || fail "cp -r made another tree:
$(diff "$TMP/want.tree" "$TMP/got.tree")"
expect_ls "$D/tree" one.json x z

note "tar x of a tree"
(cd "$OUTSIDE" && bounded tar cf "$TMP/t.tar" tree)
bounded mkdir "$D/untar"
bounded tar xf "$TMP/t.tar" -C "$D/untar"
expect_saved $L $n 3
n=$REPLY
expect_doc $L untar/tree/x/two '{"k":2}'
expect_file "$D/untar/tree/z/readme.txt" 'plain text'

note "a folder's rename moves every document under it in one commit"
bounded mv "$D/tree" "$D/moved"
one_commit --settle
expect_doc $L moved/x/y/three '{"k":3}'
expect_file "$D/moved/z/readme.txt" 'plain text'
[ ! -e "$D/tree" ] || fail "the old folder is still there"
expect_ls "$D/moved/x" two.json y
bounded mkdir "$D/target"
bounded mv "$D/moved/x" "$D/target/x"
one_commit
expect_doc $L target/x/two '{"k":2}'
bounded mkdir "$D/full"
put_text "$D/full/f.json" '{}'
one_commit
expect_errno ENOTEMPTY rename "$D/target/x" "$D/full"
expect_errno ok rename "$D/target/x" "$D/empty2"
one_commit
expect_errno EXDEV rename "$D/empty2" "$D/.hidden"
no_commit

note "dot-folders are scratch: git init, add, commit inside a ledger"
if command -v git >/dev/null; then
	before=$n
	bounded git -C "$D/notes" init -q
	bounded git -C "$D/notes" -c user.email=t@e -c user.name=t add .
	bounded git -C "$D/notes" -c user.email=t@e -c user.name=t commit -q -m one
	bounded git -C "$D/notes" log --oneline | grep -q one || fail "git log has no commit"
	bounded git -C "$D/notes" status --porcelain >"$TMP/st"
	[ ! -s "$TMP/st" ] || fail "git status is not clean: $(cat "$TMP/st")"
	put_text "$D/notes/b.json" '{"title":"b2"}'
	one_commit
	bounded git -C "$D/notes" diff --stat | grep -q b.json || fail "git diff does not see b.json change"
	expect_commits $L $((before + 1))
	[ -d "$D/notes/.git" ] || fail "no .git"
	bounded mkdir -p "$D/.cache/x"
	put_text "$D/.cache/x/y.json" '{"cached":true}'
	no_commit --settle
else
	note "(git is not installed: skipped)"
fi

note "snapshots show folders"
lfs_head $L
expect_ls "$D/.snapshots/$REPLY/empty2" two.json y
expect_ls "$D/.snapshots/$REPLY/empty2/y" three.json
[ -d "$D/.snapshots/$REPLY/notes" ] || fail "the snapshot has no folder notes"
[ ! -e "$D/.snapshots/$REPLY/target" ] || fail "the snapshot shows an empty folder"
expect_doc_jq "$L/.snapshots/$REPLY" empty2/y/three.json '.k == 3' 

note "a scratch file and a folder of the same name: the folder keeps it, the file moves to NAME~local"
C=$MNT/clash
bounded mkdir "$C"
put_text "$C/x" 'scratch x'
put_text "$C/y" 'scratch y'
printf '{"v":1}' >"$TMP/v1.json"
for id in x/a y/b; do
	cli put clash "$id" "$TMP/v1.json"
	[ "$STATUS" = 0 ] || fail "ledgerfs put clash $id: $(cat "$TMP/stderr")"
done
expect_commits clash 2
# x: found by a lookup first; y: by a listing first. (The kernel may
# still hold x as the scratch file for its 1 s: wait, bounded.)
end=$((SECONDS + 60))
until [ -d "$C/x" ]; do
	[ $SECONDS -lt $end ] || fail "x is not the folder of x/a after 60 s"
	sleep 0.1
done
expect_doc_jq clash x/a.json '.v == 1'
got=$(bounded find "$C" -mindepth 1 -maxdepth 1 -printf '%y %f\n' | LC_ALL=C sort)
want=$(printf '%s\n' 'd x' 'd y' 'f x~local' 'f y~local')
[ "$got" = "$want" ] || fail "the listing of a clash: expected
$want
---- got ----
$got"
expect_file "$C/x~local" 'scratch x'
expect_file "$C/y~local" 'scratch y'
expect_doc_jq clash y/b.json '.v == 1'
bounded grep -q 'scratch file x moved to x~local' "$C/.ledgerfs/errors" ||
	fail ".ledgerfs/errors does not say where x went: $(bounded cat "$C/.ledgerfs/errors")"
note "and a file cannot take a folder's name"
expect_errno EISDIR open-w "$C/x"
expect_errno EISDIR unlink "$C/x"
expect_errno EEXIST create "$C/x"
expect_errno EISDIR rename "$C/x~local" "$C/x"
expect_errno EEXIST symlink z "$C/x"
expect_commits clash 2

fuse_umount
note "the CLI sees the ids with their folders"
cli ls $L
grep -qxF empty2/y/three "$TMP/stdout" || fail "ledgerfs ls has no empty2/y/three: $(cat "$TMP/stdout")"
grep -q '^\.\|/\.' "$TMP/stdout" && fail "a dot-folder was committed: $(cat "$TMP/stdout")"

note "replication: a second home, through ledgerfs sync with a file:// store, shows the same folders"
remote=file://$TMP/remote
cli sync --remote "$remote" $L
[ "$STATUS" = 0 ] || fail "ledgerfs sync (home A): $(cat "$TMP/stderr")"
share=$(LEDGERFS_HOME=$LFS_HOME bounded "$LEDGERFS" key export $L) || fail "key export (home A)"
homeA=$LFS_HOME
LFS_HOME=$TMP/home-b
LEDGERFS_HOME=$LFS_HOME bounded "$LEDGERFS" key import $L "$share" >/dev/null ||
	fail "key import (home B)"
cli sync --remote "$remote" $L
[ "$STATUS" = 0 ] || fail "ledgerfs sync (home B): $(cat "$TMP/stderr")"
fuse_mount
expect_ls "$D" notes untar empty2 full moved
expect_ls "$D/moved" one.json
expect_ls "$D/empty2" two.json y
expect_doc $L empty2/y/three '{"k":3}'
expect_ls "$D/notes" b.json
[ ! -e "$D/target" ] || fail "an empty folder was replicated"
[ ! -e "$D/notes/.git" ] || fail "a dot-folder was replicated"
note "a folder made on B, with a document, reaches A"
bounded mkdir -p "$D/from-b/deep"
put_text "$D/from-b/deep/x.json" '{"b":true}'
expect_commits $L $((n + 1))
fuse_umount
cli sync --remote "$remote" $L
[ "$STATUS" = 0 ] || fail "ledgerfs sync (home B, push): $(cat "$TMP/stderr")"
LFS_HOME=$homeA
cli sync --remote "$remote" $L
[ "$STATUS" = 0 ] || fail "ledgerfs sync (home A, pull): $(cat "$TMP/stderr")"
fuse_mount
expect_ls "$D/from-b/deep" x.json
expect_doc $L from-b/deep/x '{"b":true}'
fuse_umount

note "a ledger written before folders: ids with '/' show in folders, old names still open"
cli init old
printf '{"v":1}' >"$TMP/v1.json"
for id in a/b a/c/d x//y /lead trail/; do
	cli put old "$id" "$TMP/v1.json"
	[ "$STATUS" = 0 ] || fail "ledgerfs put old $id: $(cat "$TMP/stderr")"
done
fuse_mount
expect_ls "$MNT/old" a x%2F%2Fy.json %2Flead.json trail%2F.json
expect_ls "$MNT/old/a" b.json c
expect_ls "$MNT/old/a/c" d.json
expect_doc_jq old a%2Fb.json '.v == 1'
expect_doc_jq old a%2Fc%2Fd.json '.v == 1'
fuse_umount
