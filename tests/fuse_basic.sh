#!/bin/bash
# The mounted file system with everyday programs: mkdir makes a ledger, ls,
# shell redirection, cat (pretty JSON with "_id"), stat sizes, rm, mv (to a
# new name and over a document), cp, python's json.dump, jq > tmp && mv,
# rsync, touch then write, scratch names, escaped ids, xattrs, statfs.
# Every step checks the exact number of commits; after unmounting, the CLI
# checks the committed documents, the commit count and that no scratch name
# was committed; a remount shows the same documents.
# shellcheck disable=SC2016,SC2119,SC2120 # sh -c '...' scripts; optional arguments
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
# shellcheck source=tests/fuse_lib.sh
. "${top_srcdir:-$(dirname "$0")/..}/tests/fuse_lib.sh"
fuse_init
need rsync getfattr df stat cp mv touch cmp

L=basic
D=$MNT/$L
n=0 # commits so far

fuse_mount

note "mkdir creates a ledger; ls lists it"
bounded mkdir "$D"
got=$(bounded ls "$MNT")
[ "$got" = "$L" ] || fail "ls $MNT: expected '$L', got '$got'"
bounded test -d "$D" || fail "$D is not a directory"
got=$(bounded ls "$D")
[ -z "$got" ] || fail "a new ledger lists '$got'"
bounded test -d "$D/.snapshots" || fail "$D/.snapshots is missing"
bounded test -d "$D/.ledgerfs" || fail "$D/.ledgerfs is missing"
no_commit

note "echo > milk.json creates a document: one commit; cat shows it pretty"
bounded sh -c 'echo '\''{"title":"milk","done":false}'\'' >"$1"' sh "$D/milk.json"
one_commit
expect_file "$D/milk.json" '{
  "_id": "milk",
  "done": false,
  "title": "milk"
}'
got=$(bounded ls "$D")
[ "$got" = milk.json ] || fail "ls $D: expected milk.json, got '$got'"

note "stat and ls -l give the size of what a read returns"
size=$(bounded stat -c %s "$D/milk.json")
len=$(bounded cat "$D/milk.json" | wc -c)
[ "$size" = "$len" ] || fail "stat says $size bytes, cat read $len"
lsz=$(bounded ls -l "$D/milk.json" | awk '{ print $5 }')
[ "$lsz" = "$len" ] || fail "ls -l says $lsz bytes, cat read $len"
[ "$(bounded stat -c %F "$D/milk.json")" = "regular file" ] || fail "milk.json is not a regular file"

note "writing the same document again commits nothing"
bounded cat "$D/milk.json" >"$TMP/milk.same"
bounded sh -c 'cat "$1" >"$2"' sh "$TMP/milk.same" "$D/milk.json"
no_commit
put_text "$D/milk.json" '{"done": false, "title": "milk"}' # same value, other bytes
no_commit

note "a here-document rewrite: one commit, new size"
bounded sh -c 'cat >"$1" <<EOF
{"title": "milk", "done": true, "qty": 2}
EOF' sh "$D/milk.json"
one_commit
expect_doc $L milk '{"title":"milk","done":true,"qty":2}'
size=$(bounded stat -c %s "$D/milk.json")
len=$(bounded cat "$D/milk.json" | wc -c)
[ "$size" = "$len" ] || fail "after a rewrite stat says $size bytes, cat read $len"

note "rm deletes a document: one commit"
put_text "$D/bread.json" '{"title":"bread"}'
one_commit
bounded rm "$D/bread.json"
one_commit --settle
expect_errno ENOENT read "$D/bread.json"

note "mv a.json b.json: one commit; the document takes its new id"
put_text "$D/a.json" '{"n":1}'
one_commit
bounded mv "$D/a.json" "$D/b.json"
one_commit --settle
expect_errno ENOENT read "$D/a.json"
expect_doc $L b '{"n":1}'

note "mv over an existing document: one commit"
put_text "$D/c.json" '{"n":3}'
one_commit
bounded mv "$D/b.json" "$D/c.json"
one_commit --settle
expect_errno ENOENT read "$D/b.json"
expect_doc $L c '{"n":1}'

note "cp in from outside (plain and -p): one commit each; cp out"
printf '{"from":"cp"}\n' >"$OUTSIDE/cp.json"
printf '{"from":"cp -p"}\n' >"$OUTSIDE/cpp.json"
touch -d '2001-02-03 04:05:06' "$OUTSIDE/cpp.json"
bounded cp "$OUTSIDE/cp.json" "$D/cp.json"
one_commit
expect_doc $L cp '{"from":"cp"}'
bounded cp -p "$OUTSIDE/cpp.json" "$D/cpp.json"
one_commit
expect_doc $L cpp '{"from":"cp -p"}'
bounded cp "$D/cp.json" "$OUTSIDE/back.json"
bounded cat "$D/cp.json" | cmp -s - "$OUTSIDE/back.json" || fail "cp out of the mount differs from cat"

note "python3 json.dump: one commit"
bounded python3 -c '
import json, sys
with open(sys.argv[1], "w") as f:
    json.dump({"lang": "python", "n": [1, 2, 3], "nested": {"ok": True}}, f)
' "$D/py.json"
one_commit
expect_doc $L py '{"lang":"python","n":[1,2,3],"nested":{"ok":true}}'

note "a read right after close gets the committed document, even while another writer holds the file"
bounded python3 -c '
import json, os, sys
path = sys.argv[1]
keep = os.open(path, os.O_WRONLY)          # a second writer keeps the file open
fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
os.write(fd, b"{\"lang\":\"python\",\"n\":[4]}")
os.close(fd)                               # flush: committed
with open(path) as f:
    text = f.read()
os.close(keep)
doc = json.loads(text)
if doc.get("_id") != "py" or not text.startswith("{\n"):
    sys.exit("read after close gave the raw bytes written, not the document: %r" % text)
' "$D/py.json" || fail "a read after close did not see the committed document"
one_commit
expect_doc $L py '{"lang":"python","n":[4]}'

note "jq ... > tmp && mv tmp x.json: the temporary is scratch, the mv one commit"
bounded sh -c 'jq ".done = false | .qty = 3" "$1/milk.json" >"$1/tmp"' sh "$D"
no_commit
bounded test -s "$D/tmp" || fail "the scratch file tmp is empty or missing"
bounded mv "$D/tmp" "$D/milk.json"
one_commit --settle
expect_doc $L milk '{"title":"milk","done":false,"qty":3}'
expect_errno ENOENT read "$D/tmp"

note "rsync a file in (temporary .rs.json.XXXXXX then rename): one commit"
printf '{"via":"rsync"}\n' >"$OUTSIDE/rs.json"
bounded rsync -a "$OUTSIDE/rs.json" "$D/"
one_commit --settle
expect_doc $L rs '{"via":"rsync"}'
printf '{"via":"rsync","again":true}\n' >"$OUTSIDE/rs.json"
bounded rsync -a "$OUTSIDE/rs.json" "$D/"
one_commit --settle
expect_doc $L rs '{"via":"rsync","again":true}'
bounded rsync -a "$OUTSIDE/rs.json" "$D/" # unchanged: nothing to send
no_commit

note "touch new.json: an empty draft, no commit; writing it commits"
bounded touch "$D/new.json" || fail "touch new.json failed"
no_commit
[ "$(bounded stat -c %s "$D/new.json")" = 0 ] || fail "a touched new.json is not empty"
bounded ls "$D" | grep -qx new.json || fail "ls does not show the draft new.json"
put_text "$D/new.json" '{"state":"fresh"}'
one_commit
expect_doc $L new '{"state":"fresh"}'
bounded touch "$D/new.json" || fail "touch of an existing document failed"
no_commit

note "scratch names are local files, never committed"
put_text "$D/notes.txt" 'hello'
put_text "$D/.hidden.json" '{"a":1}'
put_text "$D/%41.json" '{"a":1}' # not the canonical name of any id
put_text "$D/x.json.bak" '{"a":1}'
no_commit
expect_file "$D/notes.txt" 'hello'
expect_file "$D/%41.json" '{"a":1}'
bounded rm "$D/x.json.bak"
no_commit

note "renaming a scratch file over a document commits its content"
put_text "$D/draft.tmp" '{"state":"from a scratch file"}'
no_commit
bounded mv "$D/draft.tmp" "$D/new.json"
one_commit --settle
expect_doc $L new '{"state":"from a scratch file"}'

note "escaped ids: a/b (a folder; written through its name before folders, a%2Fb.json), .env, 100%"
put_text "$D/a%2Fb.json" '{"slash":true}'
one_commit
put_text "$D/%2Eenv.json" '{"dot":true}'
one_commit
put_text "$D/100%25.json" '{"percent":true}'
one_commit
expect_doc $L a/b '{"slash":true}'
expect_doc $L .env '{"dot":true}'
expect_doc $L 100% '{"percent":true}'
for f in a %2Eenv.json 100%25.json; do
	bounded ls "$D" | grep -qxF "$f" || fail "ls $D does not list $f"
done
bounded ls "$D/a" | grep -qxF b.json || fail "ls $D/a does not list b.json"

note "xattrs name the document's CID and the head"
lfs_head $L
head=$REPLY
cid=$(bounded getfattr --absolute-names --only-values -n user.ledgerfs.cid "$D/milk.json") ||
	fail "getfattr user.ledgerfs.cid failed"
[[ $cid =~ ^b[a-z2-7]{20,}$ ]] || fail "user.ledgerfs.cid is not a CID: '$cid'"
got=$(bounded getfattr --absolute-names --only-values -n user.ledgerfs.head "$D/milk.json") ||
	fail "getfattr user.ledgerfs.head failed"
[ "$got" = "$head" ] || fail "user.ledgerfs.head: expected the head $head, got '$got'"
names=$(bounded getfattr --absolute-names -d -m '^user\.ledgerfs\.' "$D/milk.json")
for x in user.ledgerfs.cid user.ledgerfs.head; do
	grep -q "^$x=" <<<"$names" || fail "getfattr -d does not list $x: $names"
done

note "statfs: df and stat -f answer"
bounded df -P "$MNT" >"$TMP/df" || fail "df $MNT failed"
bounded stat -f "$MNT" >"$TMP/statfs" || fail "stat -f $MNT failed"
bounded df -P "$D/milk.json" >/dev/null || fail "df on a document failed"

note "snapshots hold the older versions"
snap_count_matching $L milk.json '.title == "milk" and .done == false and (has("qty") | not)'
[ "$REPLY" -ge 1 ] || fail "no snapshot holds the first version of milk.json"
snap_count_matching $L bread.json '.title == "bread"'
[ "$REPLY" -ge 1 ] || fail "no snapshot holds the deleted bread.json"
snap_events $L
[ "$(wc -l <<<"$REPLY")" = "$n" ] || fail "expected $n snapshot directories, got: $REPLY"

# What the mount shows now, to compare with the CLI.
ids=(milk c cp cpp py rs new a/b .env 100%)
mkdir "$TMP/final"
for i in "${!ids[@]}"; do
	doc_name "${ids[i]}"
	bounded cat "$D/$REPLY" >"$TMP/final/$i"
done
fuse_umount

note "the CLI sees the same ledger: $n commits, only the documents"
expect_cli_commits $L $n
expect_ids $L "${ids[@]}"
for i in "${!ids[@]}"; do
	expect_cli_doc $L "${ids[i]}" "$TMP/final/$i"
done
cli ls --json $L
got=$(jq -r '.[] | select(.id == "milk") | .cid' "$TMP/stdout")
[ "$got" = "$cid" ] || fail "user.ledgerfs.cid was $cid, the CLI says milk's CID is $got"
cli status --json $L
jq -e --arg h "$head" '.heads == [$h]' "$TMP/stdout" >/dev/null ||
	fail "the head was $head in the mount, the CLI says: $(cat "$TMP/stdout")"

note "a remount shows the same documents"
fuse_mount
for i in "${!ids[@]}"; do
	doc_name "${ids[i]}"
	bounded cat "$D/$REPLY" | cmp -s - "$TMP/final/$i" || fail "after a remount ${ids[i]} reads differently"
done
no_commit
fuse_umount
expect_cli_commits $L $n

echo "PASS: fuse_basic"
