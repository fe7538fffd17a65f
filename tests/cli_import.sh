#!/bin/sh
# ledgerfs import and export: a directory of *.json, NDJSON from a file and
# from standard input, a refused import (every bad input named, nothing
# applied), export writing back what get shows, fsck after.
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
expect 0 "$L" get books b
expect_stdout '"_id": "b"'
expect_stdout '"x": 1.0'
expect 0 "$L" get books x/y

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
echo '[]' >in/bad.json
expect 1 "$L" import books in
expect_stderr 'in/bad.json: not a JSON object'
rm in/bad.json

note "export writes back what get shows"
expect 0 "$L" export books out
expect_stdout '^6 documents exported$'
"$L" get books b >want
cmp -s want out/b.json || fail "export of b differs from get"
[ -f out/x%2Fy.json ] || fail "export did not escape the id x/y"
"$L" init copy >/dev/null
expect 0 "$L" import copy out
expect_stdout '^6 documents imported$'
"$L" export copy out2 >/dev/null
diff -r out out2 >/dev/null || fail "export, import, export is not the same"
expect 0 "$L" fsck books
expect 0 "$L" fsck copy
expect 3 "$L" import nope in
expect 2 "$L" import
echo "PASS: cli_import"
