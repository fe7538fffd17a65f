#!/bin/sh
# ledgerfs import and export: a directory of *.json, NDJSON from a file and
# from standard input, a refused import (every bad input named, nothing
# applied), export writing back what get shows, fsck after. A directory is
# a tree named as a mount names it (notes/2026/a.json is notes/2026/a):
# import walks subfolders, skipping and naming what a mount keeps as
# scratch; export makes the folders; export, import elsewhere, export
# gives the same tree.
. "${top_srcdir:-$(dirname "$0")/..}/tests/lib.sh"
set -e

L=$LEDGERFS
cd "$TMP"
LEDGERFS_HOME=$TMP/home
export LEDGERFS_HOME

"$L" init books >/dev/null || fail "init"
mkdir in
echo '{"title": "a", "n": 1}' >in/a.json
echo '{"_id": "other", "title": "b", "x": 1.0}' >in/b.json
echo '{"title": "slash"}' >in/x%2Fy.json
echo 'not a document' >in/notes.txt
expect 0 "$L" import books in
expect_stdout '^3 documents imported$'
expect_stderr 'in/notes.txt: skipped: not a document.s name'
expect 0 "$L" get books b
expect_stdout '"_id": "b"'
expect_stdout '"x": 1.0'
expect 0 "$L" get books x/y

note "a tree: subfolders are folders of the id; scratch is skipped and named"
"$L" init tree >/dev/null || fail "init tree"
mkdir -p t/notes/2026 t/.git/objects t/a%41 t/x.json.d t/odd%2Edir
echo '{"v": 1}' >t/notes/2026/a.json
echo '{"v": 2}' >t/notes/b.json
echo '{"v": 3}' >t/top.json
echo '{"v": 4}' >t/a%2Fflat.json           # the old flat spelling, at the top
echo '{"v": 5}' >t/.git/objects/c.json      # in a dot-folder: scratch
echo '{"v": 6}' >t/a%41/d.json              # not a folder's spelling
echo '{"v": 7}' >t/notes/%41.json           # not a document's spelling
echo '{"v": 8}' >t/notes/2026/x%2Fy.json    # flat spelling below the top: scratch
echo '{"v": 9}' >t/x.json.d/e.json          # "x.json.d" is a folder ("x.json.d/e")
echo 'text' >t/notes/readme.txt
ln -s ../top.json t/notes/link.json         # a document is never read through a link
expect 0 "$L" import tree t
expect_stdout '^5 documents imported$'
for s in t/.git 't/a%41' 't/notes/%41.json' 't/notes/2026/x%2Fy.json' t/notes/readme.txt t/notes/link.json; do
	grep -qF "$s: skipped" "$TMP/stderr" || fail "import did not name $s as skipped: $(cat "$TMP/stderr")"
done
grep -q 'objects' "$TMP/stderr" && fail "import walked into a dot-folder: $(cat "$TMP/stderr")"
"$L" ls tree >ids
printf '%s\n' a/flat notes/2026/a notes/b top x.json.d/e >want_ids
diff want_ids ids >/dev/null || fail "import of a tree: ids
$(cat ids)"
expect 0 "$L" get tree notes/2026/a
expect_stdout '"v": 1'
expect 0 "$L" export tree tout
expect_stdout '^5 documents exported$'
(cd tout && find . -type f | LC_ALL=C sort) >files
printf '%s\n' ./a/flat.json ./notes/2026/a.json ./notes/b.json ./top.json ./x.json.d/e.json >want_files
diff want_files files >/dev/null || fail "export of a tree: files
$(cat files)"

note "the same id twice (a/b.json and the old a%2Fb.json) is refused"
mkdir -p dup/a
echo '{"v": 1}' >dup/a/b.json
echo '{"v": 2}' >dup/a%2Fb.json
expect 1 "$L" import tree dup
expect_stderr 'the same document as'
expect_stderr 'nothing was imported'

note "NDJSON from a file and from standard input"
printf '{"_id": "n1", "v": 1}\n\n{"_id": "n2", "v": 2}\n' >docs.ndjson
expect 0 "$L" import books docs.ndjson
expect_stdout '^2 documents imported$'
printf '{"_id": "n3", "v": 3}\n' | "$L" import books - >/dev/null || fail "import from stdin"
expect 0 "$L" get books n3

note "a bad input refuses the whole import"
printf '{"_id": "ok1", "v": 1}\n[1, 2]\n{"v": 2}\n{"_id": 5}\n{oops\n' >bad.ndjson
expect 1 "$L" import books bad.ndjson
expect_stderr 'bad.ndjson line 2: not a JSON object'
expect_stderr 'bad.ndjson line 3: no "_id"'
expect_stderr 'bad.ndjson line 4: its "_id" is not a string'
expect_stderr 'bad.ndjson line 5: not JSON'
expect_stderr 'nothing was imported'
expect 3 "$L" get books ok1
# Enough lines to be checked in several threads: the reasons still come
# in input order, and one bad line in any share refuses all of it.
for i in $(seq 1 3000); do
	case $i in
	7 | 1501 | 2999) echo '{"no id": true}' ;;
	*) printf '{"_id": "many%d", "v": %d}\n' "$i" "$i" ;;
	esac
done >many.ndjson
"$L" init many >/dev/null || fail "init many"
expect 1 "$L" import many many.ndjson
[ "$(grep -o 'line [0-9]*' "$TMP/stderr" | tr '\n' ' ')" = "line 7 line 1501 line 2999 " ] ||
	fail "the bad lines were not named once each in order: $(head -c 500 "$TMP/stderr")"
expect_stderr '3 of 3000 inputs are not a document; nothing was imported'
expect 3 "$L" get many many8
sed -i 's/{"no id": true}/{"_id": "fixed"}/' many.ndjson
sed -i '1501s/fixed/fixed2/; 2999s/fixed/fixed3/' many.ndjson
expect 0 "$L" import many many.ndjson
expect_stdout '^3000 documents imported$'
expect 0 "$L" get many many2998
echo '[]' >in/bad.json
expect 1 "$L" import books in
expect_stderr 'in/bad.json: not a JSON object'
rm in/bad.json

note "export writes back what get shows"
expect 0 "$L" export books out
expect_stdout '^6 documents exported$'
"$L" get books b >want
cmp -s want out/b.json || fail "export of b differs from get"
[ -f out/x/y.json ] || fail "export did not put the id x/y in folder x"
"$L" init copy >/dev/null
expect 0 "$L" import copy out
expect_stdout '^6 documents imported$'
"$L" export copy out2 >/dev/null
diff -r out out2 >/dev/null || fail "export, import, export is not the same"
expect 0 "$L" fsck books
expect 0 "$L" fsck copy
expect 3 "$L" import nope in
expect 2 "$L" import
expect 2 "$L" import books in extra
expect 2 "$L" export --home

note "a big import: transactions of at most 64 MiB of text (one CAR file each, read whole when the ledger opens)"
mkdir heavy
python3 - heavy <<'PY'
import json, os, sys
for i in range(70):
    with open(os.path.join(sys.argv[1], "h%02d.json" % i), "w") as f:
        json.dump({"n": i, "body": "%07d" % i * 150000}, f)
PY
"$L" init heavy >/dev/null
expect 0 "$L" import heavy heavy
expect_stdout '^70 documents imported$'
expect 0 "$L" log heavy
n=$(wc -l <"$TMP/stdout")
[ "$n" -ge 2 ] || fail "70 MB of documents imported in $n transaction(s), not split at 64 MiB"
expect 0 "$L" fsck heavy
rm -rf heavy

note "--home DIR, as every command takes it"
(unset LEDGERFS_HOME && "$L" export --home "$TMP/home" copy out3 >/dev/null) ||
	fail "export --home"
diff -r out out3 >/dev/null || fail "export --home wrote another tree"
expect 0 env -u LEDGERFS_HOME "$L" import --home "$TMP/home" copy out3
expect_stdout '^6 documents imported$'
echo "PASS: cli_import"
