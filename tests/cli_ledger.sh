#!/bin/sh
# The ledger commands end to end, without FUSE: init, put, rm, get, cat, ls,
# log, diff, merge, compact, fsck, key export/import, status and conflicts,
# with their failures (invalid JSON, a wrong "_id", no key, a key file others
# can read, unknown ledgers, documents and events, corrupt CAR files, usage
# errors). The home is a fresh directory named by LEDGERFS_HOME.
. "${top_srcdir:-$(dirname "$0")/..}/tests/lib.sh"
set -e
need jq od dd

L=$LEDGERFS
cd "$TMP"
LEDGERFS_HOME=$TMP/home
export LEDGERFS_HOME
CAR_DIR=$LEDGERFS_HOME/ledgers/todos/car

# The number of CAR files a ledger directory holds.
ncars()
{
	find "$1/car" -type f | wc -l | tr -d ' '
}

note "usage and --help"
for c in init put rm get cat ls log diff merge compact fsck status conflicts; do
	expect 0 "$L" $c --help
	expect_stdout "^usage: ledgerfs $c "
	[ ! -s "$TMP/stderr" ] || fail "$c --help wrote to stderr"
done
expect 0 "$L" key --help
expect_stdout 'ledgerfs key export NAME'
expect 0 "$L" key export --help
expect_stdout '^usage: ledgerfs key export'
expect 0 "$L" key import --help
expect_stdout '^usage: ledgerfs key import'
expect 2 "$L" key
expect 2 "$L" key frob todos
expect_stderr "unknown subcommand 'frob'"
expect 2 "$L" get
expect_stderr 'missing arguments'
expect 2 "$L" get todos a b
expect_stderr 'too many arguments'
expect 2 "$L" ls --frob todos
expect_stderr "unknown option '--frob'"
expect 2 "$L" ls --at
expect_stderr '--at needs a value'
expect 2 "$L" init --at x todos
expect_stderr "unknown option '--at'"
expect 2 "$L" log -n many todos
expect_stderr 'expected a number'
for bad in .hidden a/b ''; do
	expect 2 "$L" init "$bad"
	expect_stderr 'is not a valid ledger name'
done
[ ! -e "$LEDGERFS_HOME/ledgers/.hidden" ] || fail "init made a dot ledger"

note "init"
expect 0 "$L" init todos
[ -d "$CAR_DIR" ] || fail "init made no car/ directory"
[ -d "$LEDGERFS_HOME/ledgers/todos/head" ] || fail "init made no head/ directory"
key_file=$LEDGERFS_HOME/keys/todos.key
[ "$(stat -c %a "$key_file")" = 600 ] || fail "key file mode is $(stat -c %a "$key_file")"
grep -Eqx '[0-9a-f]{64}' "$key_file" || fail "key file is not 64 hex digits"
[ "$(stat -c %a "$LEDGERFS_HOME")" = 700 ] || fail "home mode is $(stat -c %a "$LEDGERFS_HOME")"
writer=$(cat "$LEDGERFS_HOME/writer")
echo "$writer" | grep -Eqx '[0-9a-f]{16}' || fail "writer id is '$writer'"
cp "$key_file" key.orig
expect 1 "$L" init todos
expect_stderr "ledger 'todos' already exists"
cmp -s "$key_file" key.orig || fail "a second init changed the key"
[ "$(cat "$LEDGERFS_HOME/writer")" = "$writer" ] || fail "the writer id changed"
expect 0 "$L" init --home "$TMP/elsewhere" other
[ -d "$TMP/elsewhere/ledgers/other" ] || fail "--home was not honoured"
[ ! -e "$LEDGERFS_HOME/ledgers/other" ] || fail "--home also wrote to LEDGERFS_HOME"

note "unknown ledgers are not found (exit 3)"
for c in "get nope x" "ls nope" "log nope" "status nope" "fsck nope" \
	"rm nope x" "compact nope" "merge nope" "conflicts nope" \
	"diff nope head head" "cat nope --at head x"; do
	# shellcheck disable=SC2086 # split the command on purpose
	expect 3 "$L" $c
	expect_stderr "no ledger 'nope' on this machine"
	expect_stderr "ledgerfs init nope"
done
echo '{}' >empty-object.json
expect 3 "$L" put nope x empty-object.json
[ ! -e "$LEDGERFS_HOME/ledgers/nope" ] || fail "a failed command created a ledger"

note "put and get: a round trip keeps integers and reals apart"
cat >milk.json <<'EOF'
{"title": "milk", "qty": 1, "price": 1.0, "tenth": 0.1, "neg": -7,
 "big": 9007199254740993, "max": 9223372036854775807,
 "tags": ["a", 2, 2.5, true, null], "nested": {"x": null, "y": {}},
 "text": "caf\u00e9 \"quoted\"\n"}
EOF
cat >milk.want <<'EOF'
{
  "_id": "milk",
  "big": 9007199254740993,
  "max": 9223372036854775807,
  "neg": -7,
  "nested": {
    "x": null,
    "y": {}
  },
  "price": 1.0,
  "qty": 1,
  "tags": [
    "a",
    2,
    2.5,
    true,
    null
  ],
  "tenth": 0.1,
  "text": "café \"quoted\"\n",
  "title": "milk"
}
EOF
expect 0 "$L" put todos milk milk.json
ev1=$(cat "$TMP/stdout")
echo "$ev1" | grep -Eqx 'bafyrei[a-z2-7]{52}' || fail "put printed '$ev1', not an event CID"
expect 0 "$L" get todos milk
cmp -s "$TMP/stdout" milk.want || fail "get gave $(cat "$TMP/stdout")"
# What get prints puts back as the same document: nothing to commit.
cp "$TMP/stdout" milk.out
expect 0 "$L" put --json todos milk milk.out
jq -e --arg e "$ev1" '.committed == false and .event == $e' "$TMP/stdout" >/dev/null ||
	fail "putting the same document again committed: $(cat "$TMP/stdout")"
expect_stderr 'nothing changed'
# From standard input, with and without "-", "_id" optional.
printf '{"_id": "eggs", "n": 12}' | "$L" put todos eggs >eggs.ev ||
	fail "put from standard input failed"
printf '{"n": 12, "size": "L"}' | "$L" put todos eggs - >eggs2.ev ||
	fail "put from - failed"
expect 0 "$L" get todos eggs
expect_stdout '"size": "L"'
ev_eggs=$(cat eggs2.ev)
printf '{"v": 1}' | "$L" put todos "with space/and é" >/dev/null ||
	fail "put of an id with a space, a slash and UTF-8 failed"
expect 0 "$L" get todos "with space/and é"
expect_stdout '"_id": "with space/and é"'

note "invalid documents commit nothing"
expect 0 "$L" log todos
log_before=$(wc -l <"$TMP/stdout")
printf '{"a": 1,\n "b": }\n' >bad.json
expect 1 "$L" put todos bad bad.json
expect_stderr "'bad.json' is not valid JSON: line 2, column [0-9]*:"
expect_stderr 'nothing was committed'
printf '{"a": 1' | "$L" put todos bad 2>"$TMP/stderr" && fail "truncated JSON on stdin was accepted"
expect_stderr "'standard input' is not valid JSON: line 1"
echo '[1, 2]' >array.json
expect 1 "$L" put todos bad array.json
expect_stderr 'not an object'
echo '"text"' >string.json
expect 1 "$L" put todos bad string.json
expect_stderr 'not an object'
echo '{"_id": "other", "a": 1}' >wrongid.json
expect 1 "$L" put todos bad wrongid.json
expect_stderr "\"_id\" is \"other\" but the document id given is 'bad'"
echo '{"_id": 5}' >numid.json
expect 1 "$L" put todos bad numid.json
expect_stderr '"_id" must be a string'
echo '{"a": 1, "a": 2}' >dup.json
expect 1 "$L" put todos bad dup.json
expect_stderr "'dup.json' is not valid JSON"
echo '{"a": 18446744073709551615}' >huge.json
expect 1 "$L" put todos bad huge.json
expect_stderr "'huge.json' is not valid JSON"
: >empty.json
expect 1 "$L" put todos bad empty.json
expect_stderr "'empty.json' is empty"
expect 1 "$L" put todos bad missing.json
expect_stderr "cannot read 'missing.json'"
expect 1 "$L" put todos bad .
expect_stderr "cannot read '.'"
expect 2 "$L" put todos '' empty-object.json
expect_stderr 'is not a valid document id'
expect 0 "$L" log todos
[ "$(wc -l <"$TMP/stdout")" = "$log_before" ] || fail "a failed put committed something"
expect 3 "$L" get todos bad
expect_stderr "no document 'bad' in ledger 'todos'"

note "ls"
expect 0 "$L" ls todos
printf 'eggs\nmilk\nwith space/and é\n' >ls.want
cmp -s "$TMP/stdout" ls.want || fail "ls printed: $(cat "$TMP/stdout")"
expect 0 "$L" ls --json todos
jq -e --arg w "$writer" 'length == 3 and .[0].id == "eggs" and .[1].id == "milk"
	and .[1].conflicts == 0 and (.[1].t | type) == "number"
	and (.[1].cid | test("^bafyrei[a-z2-7]{52}$")) and .[1].writer == $w
	and (.[0] | keys) == ["cid", "conflicts", "id", "t", "writer"]' \
	"$TMP/stdout" >/dev/null || fail "ls --json: $(cat "$TMP/stdout")"

note "history: log, get --at and cat"
echo '{"title": "oat milk", "qty": 2}' >milk2.json
expect 0 "$L" put todos milk milk2.json
ev2=$(cat "$TMP/stdout")
expect 0 "$L" log todos
cp "$TMP/stdout" log.txt
[ "$(wc -l <log.txt)" -eq 5 ] || fail "log has $(wc -l <log.txt) events, expected 5"
head -n 1 log.txt | grep -Eqx "$ev2 [0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}Z writer=$writer parents=1 milk" ||
	fail "newest log line is: $(head -n 1 log.txt)"
tail -n 1 log.txt | grep -q "^$ev1 .* parents=0 milk$" ||
	fail "oldest log line is: $(tail -n 1 log.txt)"
grep -q "^$ev_eggs .* eggs$" log.txt || fail "log does not show the eggs put"
expect 0 "$L" log -n 2 todos
[ "$(wc -l <"$TMP/stdout")" -eq 2 ] || fail "log -n 2 printed $(wc -l <"$TMP/stdout") lines"
expect 0 "$L" log --json -n 0 todos
[ "$(jq length "$TMP/stdout")" = 0 ] || fail "log -n 0 is not empty"
expect 0 "$L" log --json todos
jq -e --arg e2 "$ev2" --arg e1 "$ev1" --arg w "$writer" '
	length == 5 and .[0].event == $e2 and .[0].writer == $w
	and .[0].changes == [{"id": "milk", "doc": .[0].changes[0].doc}]
	and (.[0].time | test("Z$")) and (.[0].parents | length) == 1
	and .[4].event == $e1 and .[4].parents == []
	and ([.[].t] == ([.[].t] | sort | reverse))' "$TMP/stdout" >/dev/null ||
	fail "log --json: $(cat "$TMP/stdout")"
expect 0 "$L" get todos --at "$ev1" milk
cmp -s "$TMP/stdout" milk.want || fail "get --at the first event: $(cat "$TMP/stdout")"
expect 0 "$L" cat todos --at "$ev1" milk
cmp -s "$TMP/stdout" milk.want || fail "cat --at the first event differs"
expect 0 "$L" get todos milk
expect_stdout '"title": "oat milk"'
expect 0 "$L" get --at=head todos milk
expect_stdout '"title": "oat milk"'
expect 2 "$L" cat todos milk
expect_stderr '--at EVENT is required'
expect 3 "$L" get --at "$ev1" todos eggs
expect_stderr "no document 'eggs' in ledger 'todos' at event $ev1"
expect 2 "$L" get --at not-a-cid todos milk
expect_stderr "'not-a-cid' is not an event CID"
# A well-formed CID of no block of this ledger; a document's CID.
expect 3 "$L" get --at bafyreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku todos milk
expect_stderr 'no event bafyrei.* in ledger'
doc_cid=$("$L" log --json todos | jq -r '.[0].changes[0].doc')
expect 1 "$L" get --at "$doc_cid" todos milk
expect_stderr 'is not an event of ledger'
expect 0 "$L" ls --at "$ev1" todos
[ "$(cat "$TMP/stdout")" = milk ] || fail "ls --at the first event: $(cat "$TMP/stdout")"

note "rm"
expect 3 "$L" rm todos eggs nothere
expect_stderr "no document 'nothere'"
expect_stderr 'Nothing was deleted'
expect 0 "$L" get todos eggs
expect 0 "$L" rm todos eggs "with space/and é"
ev3=$(cat "$TMP/stdout")
expect 0 "$L" log -n 1 todos
expect_stdout "^$ev3 .* -eggs -with space/and é$"
expect 3 "$L" get todos eggs
expect 0 "$L" get --at "$ev2" todos eggs
expect_stdout '"n": 12'
expect 0 "$L" rm -f todos eggs
expect_stderr 'nothing changed'
expect 0 "$L" ls todos
[ "$(cat "$TMP/stdout")" = milk ] || fail "ls after rm: $(cat "$TMP/stdout")"

note "diff"
expect 0 "$L" diff todos "$ev1" head
[ "$(cat "$TMP/stdout")" = "~ milk" ] || fail "diff ev1 head: $(cat "$TMP/stdout")"
expect 0 "$L" diff todos "$ev2" "$ev3"
printf -- '- eggs\n- with space/and é\n' >diff.want
cmp -s "$TMP/stdout" diff.want || fail "diff ev2 ev3: $(cat "$TMP/stdout")"
expect 0 "$L" diff todos "$ev3" "$ev2"
expect_stdout '^+ eggs$'
expect 0 "$L" diff --json todos "$ev1" "$ev2"
jq -e '.added == ["eggs", "with space/and é"] and .changed == ["milk"] and .removed == []' \
	"$TMP/stdout" >/dev/null || fail "diff --json: $(cat "$TMP/stdout")"
expect 0 "$L" diff todos head head
[ ! -s "$TMP/stdout" ] || fail "diff head head is not empty"
expect 2 "$L" diff todos "$ev1" nonsense
expect 3 "$L" diff todos "$ev1" bafyreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku

note "merge with one head"
expect 0 "$L" merge todos
[ "$(cat "$TMP/stdout")" = "nothing to merge" ] || fail "merge: $(cat "$TMP/stdout")"

note "concurrent writes: a second replica's files, conflicts, merge"
cp -a "$LEDGERFS_HOME" home2
echo bbbbbbbbbbbbbbbb >home2/writer
echo '{"title": "milk A"}' | "$L" put todos milk >/dev/null
echo '{"title": "milk B"}' | "$L" put --home home2 todos milk >/dev/null
echo '{"x": 1}' | "$L" put --home home2 todos bread >/dev/null
# What sync does, by hand: bring the other replica's CARs and head records.
cp -n home2/ledgers/todos/car/* "$CAR_DIR/"
cp -n home2/ledgers/todos/head/* "$LEDGERFS_HOME/ledgers/todos/head/"
expect 0 "$L" status --json todos
jq -e '.nheads == 2 and .documents == 2' "$TMP/stdout" >/dev/null ||
	fail "status after bringing the second replica: $(cat "$TMP/stdout")"
expect 0 "$L" get todos bread
expect 0 "$L" conflicts todos
[ "$(cat "$TMP/stdout")" = "milk conflicts=1" ] || fail "conflicts: $(cat "$TMP/stdout")"
expect 0 "$L" conflicts --json todos
jq -e '. == [{"id": "milk", "conflicts": 1}]' "$TMP/stdout" >/dev/null ||
	fail "conflicts --json: $(cat "$TMP/stdout")"
expect 0 "$L" get todos milk
winner=$(jq -r .title "$TMP/stdout")
case $winner in
"milk A") loser="milk B" ;;
"milk B") loser="milk A" ;;
*) fail "the merged milk is '$winner'" ;;
esac
expect 0 "$L" conflicts todos milk
expect_stdout "^version bafyrei[a-z2-7]* [0-9T:.-]*Z writer=[0-9a-f]*$"
expect_stdout "\"title\": \"$loser\""
expect 0 "$L" conflicts --json todos milk
jq -e --arg l "$loser" 'length == 1 and .[0].doc.title == $l and .[0].doc._id == "milk"
	and (.[0].t | type) == "number"' "$TMP/stdout" >/dev/null ||
	fail "conflicts --json milk: $(cat "$TMP/stdout")"
expect 3 "$L" conflicts todos nothere
expect 0 "$L" conflicts todos bread
expect_stderr 'has no conflicting versions'
expect 0 "$L" merge todos
ev_merge=$(cat "$TMP/stdout")
echo "$ev_merge" | grep -Eqx 'bafyrei[a-z2-7]{52}' || fail "merge printed '$ev_merge'"
expect 0 "$L" log -n 1 todos
expect_stdout "^$ev_merge .* parents=2$"
expect 0 "$L" merge --json todos
jq -e '.committed == false and .event == null' "$TMP/stdout" >/dev/null ||
	fail "second merge: $(cat "$TMP/stdout")"
expect 0 "$L" get todos milk
expect_stdout "\"title\": \"$winner\""

note "status"
expect 0 "$L" status --json todos
jq -e --arg e "$ev_merge" --argjson n "$(ncars "$LEDGERFS_HOME/ledgers/todos")" \
	'.name == "todos" and .key == true and .heads == [$e] and .nheads == 1
	and .documents == 2 and .cars == $n and (has("error") | not)' \
	"$TMP/stdout" >/dev/null || fail "status --json todos: $(cat "$TMP/stdout")"
expect 0 "$L" status
expect_stdout '^todos$'
expect_stdout '^  key: present$'
expect_stdout "^    $ev_merge$"
expect_stdout '^  documents: 2$'
expect 0 "$L" status --json
jq -e 'length == 1 and .[0].name == "todos"' "$TMP/stdout" >/dev/null ||
	fail "status --json: $(cat "$TMP/stdout")"
expect 0 "$L" status --home "$TMP/empty-home"
expect_stdout 'no ledgers'

note "key export and import"
expect 0 "$L" key export todos
share=$(cat "$TMP/stdout")
echo "$share" | grep -Eqx 'lfskey1:[0-9a-f]{64}' || fail "key export printed '$share'"
[ "${share#lfskey1:}" = "$(cat "$key_file")" ] || fail "the share is not the key"
expect 3 "$L" key export nope
expect_stderr "ledger 'nope' has no key"
# A third machine: import from stdin, then receive the files.
printf '%s\n' "$share" | "$L" key import --home home3 todos ||
	fail "key import from standard input failed"
[ "$(stat -c %a home3/keys/todos.key)" = 600 ] || fail "imported key mode"
[ -d home3/ledgers/todos/car ] || fail "key import made no local store"
expect 0 "$L" status --home home3 --json todos
jq -e '.key == true and .nheads == 0' "$TMP/stdout" >/dev/null ||
	fail "status after import: $(cat "$TMP/stdout")"
cp "$CAR_DIR"/* home3/ledgers/todos/car/
cp "$LEDGERFS_HOME"/ledgers/todos/head/* home3/ledgers/todos/head/
expect 0 "$L" get --home home3 todos milk
expect_stdout "\"title\": \"$winner\""
expect 0 "$L" key import --home home3 todos "$share"
other_share=lfskey1:$(printf '%064d' 7)
expect 1 "$L" key import --home home3 todos "$other_share"
expect_stderr 'already has a different key'
cmp -s home3/keys/todos.key "$key_file" || fail "a refused import changed the key"
expect 2 "$L" key import --home home3 todos lfskey1:1234
expect_stderr 'not a ledgerfs key'
expect 2 "$L" key import --home home3 todos "${share#lfskey1:}"
expect 2 "$L" key import --home home3 .bad "$share"

note "a key file others can read is refused"
chmod 644 "$key_file"
expect 1 "$L" get todos milk
expect_stderr "refusing to use the key of ledger 'todos'"
expect_stderr "mode 0644"
expect_stderr "chmod 600 $key_file"
expect 1 "$L" key export todos
expect_stderr 'chmod 600'
chmod 600 "$key_file"
expect 0 "$L" get todos milk

note "no key on this machine"
mv "$key_file" key.saved
for c in "get todos milk" "ls todos" "log todos" "fsck todos" "compact todos"; do
	# shellcheck disable=SC2086 # split the command on purpose
	expect 1 "$L" $c
	expect_stderr "ledger 'todos' has no key on this machine; import it with 'ledgerfs key import todos lfskey1:...'"
done
expect 0 "$L" status --json todos
jq -e '.key == false and .error == "no key on this machine" and (.cars | type) == "number"' \
	"$TMP/stdout" >/dev/null || fail "status without a key: $(cat "$TMP/stdout")"
expect 0 "$L" key import todos "$share"
cmp -s "$key_file" key.saved || fail "the re-imported key file differs"
expect 0 "$L" get todos milk

note "a wrong key"
rm -rf home5
cp -a "$LEDGERFS_HOME" home5
printf '%064d\n' 5 >home5/keys/todos.key
chmod 600 home5/keys/todos.key
expect 1 "$L" get --home home5 todos milk
expect_stderr "cannot open ledger 'todos'.*corrupt or not authentic"
expect_stderr 'ledgerfs fsck todos'

note "compact"
rm -rf todos.orig
cp -a "$LEDGERFS_HOME/ledgers/todos" todos.orig
[ "$(ncars todos.orig)" -gt 1 ] || fail "expected several CAR files before compaction"
expect 0 "$L" log todos
cp "$TMP/stdout" log.before
expect 0 "$L" ls --json todos
cp "$TMP/stdout" ls.before
expect 0 "$L" compact todos
car=$(sed -n 1p "$TMP/stdout")
echo "$car" | grep -Eqx 'bafkrei[a-z2-7]{52}' || fail "compact printed '$car'"
[ "$(sed -n 2p "$TMP/stdout")" = "1 CAR file remains" ] || fail "compact: $(cat "$TMP/stdout")"
[ "$(ncars "$LEDGERFS_HOME/ledgers/todos")" = 1 ] || fail "$(ncars "$LEDGERFS_HOME/ledgers/todos") CAR files after compaction"
[ -f "$CAR_DIR/$car" ] || fail "the remaining CAR file is not $car"
if command -v python3 >/dev/null 2>&1; then
	[ "$(raw_cid "$CAR_DIR/$car")" = "$car" ] || fail "the compacted CAR is not named by its CID"
fi
expect 0 "$L" log todos
cmp -s "$TMP/stdout" log.before || fail "log changed after compaction"
expect 0 "$L" ls --json todos
cmp -s "$TMP/stdout" ls.before || fail "ls changed after compaction"
expect 0 "$L" get --at "$ev1" todos milk
cmp -s "$TMP/stdout" milk.want || fail "the first version is unreadable after compaction"
expect 0 "$L" get --at "$ev2" todos eggs
expect 0 "$L" conflicts todos milk
expect_stdout "\"title\": \"$loser\""
expect 0 "$L" diff todos "$ev1" head
expect 0 "$L" fsck todos
[ "$(cat "$TMP/stdout")" = ok ] || fail "fsck after compaction: $(cat "$TMP/stdout")"
expect 0 "$L" compact --json todos
jq -e '.cars == 1' "$TMP/stdout" >/dev/null || fail "compact --json: $(cat "$TMP/stdout")"
echo '{"after": "compaction"}' | "$L" put todos late >/dev/null || fail "put after compaction failed"
expect 0 "$L" get todos late
expect 0 "$L" fsck --json todos
jq -e '.ok == true and .problems == []' "$TMP/stdout" >/dev/null || fail "fsck --json: $(cat "$TMP/stdout")"
[ "$(ncars "$LEDGERFS_HOME/ledgers/todos")" = 2 ] || fail "a put after compaction should add one CAR"

note "fsck names a corrupt CAR file"
expect 1 "$L" fsck --home home5 todos
expect_stdout "ledger 'todos': cannot be opened: corrupt or not authentic"
for f in todos.orig/car/*; do
	name=$(basename "$f")
	rm -rf home6
	mkdir home6
	cp -a "$LEDGERFS_HOME/keys" "$LEDGERFS_HOME/writer" home6/
	mkdir home6/ledgers
	cp -a todos.orig home6/ledgers/todos
	expect 0 "$L" fsck --home home6 todos
	flip_byte "home6/ledgers/todos/car/$name" $(($(file_size "$f") / 2))
	expect 1 "$L" fsck --home home6 todos
	expect_stdout "CAR file $name: corrupt or not authentic"
	expect_stdout '^[0-9]* problems\{0,1\}$'
	expect_stderr "ledger 'todos' is damaged"
done
# A missing CAR file is named too.
for f in todos.orig/car/*; do
	name=$(basename "$f")
	rm -rf home6/ledgers/todos
	cp -a todos.orig home6/ledgers/todos
	rm "home6/ledgers/todos/car/$name"
	expect 1 "$L" fsck --home home6 todos
	expect_stdout "$name.* missing"
	expect_stdout '^[0-9]* problems\{0,1\}$'
done

note "output errors"
if [ -w /dev/full ]; then
	run sh -c '"$1" get todos milk >/dev/full' sh "$L"
	[ "$STATUS" -eq 1 ] || fail "writing to a full device exited $STATUS"
	expect_stderr 'writing to standard output failed'
fi

note "parallel writers: every commit from every process survives"
"$L" init par >/dev/null || fail "init par"
for r in 1 2 3; do
	for i in 1 2 3 4 5 6 7 8 9 10; do
		(echo "{\"i\": $i}" | "$L" put par "r$r-d$i" >/dev/null ||
			echo "put r$r-d$i failed" >>par.err) &
	done
	wait
done
[ ! -s par.err ] || fail "some parallel puts failed: $(cat par.err)"
n=$("$L" ls par | wc -l | tr -d ' ')
[ "$n" -eq 30 ] || fail "parallel puts: $n documents, expected 30"
expect 0 "$L" fsck par

echo "PASS: cli_ledger"
