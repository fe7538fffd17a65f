#!/bin/bash
# `ls -l` of a ledger gets every name's attributes with the listing
# (READDIRPLUS): no lookup per document, and each size exact without
# rendering the document when its length is in the home's size table
# (HOME/state/<ledger>/sizes, filled by `ledgerfs import`, by the
# mount's renders and commits, and in the background for versions that
# came from elsewhere). The sizes stay exact when documents change elsewhere
# while the kernel keeps names for an hour (a commit by another process on
# the home, a pull of another home's commit), after a remount, and when
# the size table is damaged (it is not trusted past the damage).
# shellcheck disable=SC2119,SC2120,SC2012 # optional arguments; ls -l is what is tested
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
# shellcheck source=tests/fuse_lib.sh
. "${top_srcdir:-$(dirname "$0")/..}/tests/fuse_lib.sh"
fuse_init

L=listed
D=$MNT/$L
N=40
URL=file://$TMP/remote
B=$TMP/home-b
SIZES=$LFS_HOME/state/$L/sizes

# The size of document $2 of $L as `ledgerfs get` prints it (as the mount
# renders it), in home $1.
doc_size()
{
	REPLY=$(LEDGERFS_HOME=$1 bounded "$LEDGERFS" get "$L" "$2" | wc -c) ||
		fail "ledgerfs get $2"
}

# sizes_right: `ls -l` of the ledger shows each document's exact size,
# and reading it gives exactly `ledgerfs get`'s bytes. `ledgerfs export`
# writes every document as `get` prints it (one renderer; checked here on
# the first name), in one process instead of one per document.
sizes_right()
{
	local size name want first=
	bounded ls -l "$D" >"$TMP/ls.out" || fail "ls -l $D"
	[ "$(grep -c '\.json$' "$TMP/ls.out")" -ge "$N" ] ||
		fail "ls -l lists $(grep -c '\.json$' "$TMP/ls.out") documents: $(head -5 "$TMP/ls.out")"
	rm -rf "$TMP/exported"
	bounded "$LEDGERFS" export "$L" "$TMP/exported" >/dev/null || fail "ledgerfs export"
	while read -r size name; do
		if [ -z "$first" ]; then
			first=$name
			bounded cmp -s "$TMP/exported/$name" <(bounded "$LEDGERFS" get "$L" "${name%.json}") ||
				fail "ledgerfs export wrote $name otherwise than ledgerfs get prints it"
		fi
		want=$(stat -c %s "$TMP/exported/$name") || fail "ledgerfs export wrote no $name"
		[ "$size" = "$want" ] || fail "ls -l shows $name with $size bytes, not $want"
		bounded cmp -s "$D/$name" "$TMP/exported/$name" ||
			fail "$name does not read as ledgerfs get prints it"
	done < <(awk '/\.json$/ { print $5, $NF }' "$TMP/ls.out")
}

# wait_ls NAME SIZE: until `ls -l` shows NAME with SIZE bytes.
wait_ls()
{
	local end=$((SECONDS + 60))
	until [ "$(bounded ls -l "$D" | awk -v n="$1" '$NF == n { print $5 }')" = "$2" ]; do
		[ $SECONDS -lt $end ] || fail "ls -l still shows $1 with $(ls -l "$D" | awk -v n="$1" '$NF == n { print $5 }') bytes 60 s after the change, not $2"
		sleep 0.05
	done
}

"$LEDGERFS" init "$L" >/dev/null || fail "ledgerfs init"
share=$("$LEDGERFS" key export "$L") || fail "key export"
mkdir -p "$B" "$TMP/in"
LEDGERFS_HOME=$B "$LEDGERFS" key import "$L" "$share" >/dev/null ||
	fail "key import into the second home"
for i in $(seq 1 $N); do
	printf '{"n": %d, "text": "%*s", "f": %d.5}\n' "$i" "$i" x "$i" >"$TMP/in/d$i.json"
done

note "ledgerfs import notes the documents' sizes"
bounded "$LEDGERFS" import "$L" "$TMP/in" >/dev/null || fail "ledgerfs import"
[ -f "$SIZES" ] || fail "import made no size table at $SIZES"
[ "$(stat -c %s "$SIZES")" = $((16 + N * 48)) ] ||
	fail "the size table holds $(stat -c %s "$SIZES") bytes, not a header and $N records"

note "ls -l: one listing with attributes, no lookup per document"
fuse_mount --remote "$URL" --poll-ms 200 -o cache_timeout=3600,debug
dino=$(bounded stat -c %i "$D") || fail "stat $D"
before=$(grep -cE "opcode: LOOKUP \\(1\\), nodeid: $dino," "$DAEMON_LOG" || true)
bounded ls -l "$D" >/dev/null || fail "ls -l $D"
after=$(grep -cE "opcode: LOOKUP \\(1\\), nodeid: $dino," "$DAEMON_LOG" || true)
grep -qE "opcode: READDIRPLUS \\(44\\), nodeid: $dino," "$DAEMON_LOG" ||
	fail "ls -l sent no READDIRPLUS for the ledger's directory"
[ "$after" = "$before" ] || fail "ls -l sent $((after - before)) lookups in the ledger's directory"
sizes_right

note "a commit by another process on the home: ls -l shows the new size"
echo '{"by": "the command line", "pad": "0123456789 0123456789"}' |
	bounded "$LEDGERFS" put "$L" d3 >/dev/null || fail "ledgerfs put d3"
doc_size "$LFS_HOME" d3
wait_ls d3.json "$REPLY"
sizes_right

note "a commit pulled from another home: ls -l shows the new size"
bounded cat "$D/.ledgerfs/wait" >/dev/null || fail "the mount did not push"
LEDGERFS_HOME=$B bounded "$LEDGERFS" sync --remote "$URL" "$L" >/dev/null ||
	fail "the second home could not pull"
echo '{"by": "the other home", "much": "longer than it was before, much longer"}' |
	LEDGERFS_HOME=$B bounded "$LEDGERFS" put "$L" d4 >/dev/null || fail "put d4 in the second home"
LEDGERFS_HOME=$B bounded "$LEDGERFS" sync --remote "$URL" "$L" >/dev/null ||
	fail "the second home could not push"
doc_size "$B" d4
wait_ls d4.json "$REPLY"
sizes_right

note "versions pulled from another home get their sizes in the background"
M=30
mkdir -p "$TMP/more"
for i in $(seq 1 $M); do
	printf '{"more": %d, "pad": "%*s"}\n' "$i" "$i" y >"$TMP/more/m$i.json"
done
# Before the push: the mount may pull and fill the sizes before the
# push's command has even exited.
before=$(stat -c %s "$SIZES")
LEDGERFS_HOME=$B bounded "$LEDGERFS" import "$L" "$TMP/more" >/dev/null ||
	fail "import into the second home"
LEDGERFS_HOME=$B bounded "$LEDGERFS" sync --remote "$URL" "$L" >/dev/null ||
	fail "the second home could not push its import"
# The pulled root shows in the status a moment before the pull queues
# its versions (the hook runs after the ingest): wait for the records.
end=$((SECONDS + 120))
while :; do
	lfs_status "$L"
	docs=$(jq -r '.documents' <<<"$LFS_STATUS_JSON")
	left=$(jq -r '.sizes_to_fill' <<<"$LFS_STATUS_JSON")
	after=$(stat -c %s "$SIZES")
	[ "$docs" -ge $((N + M)) ] && [ "$left" = 0 ] &&
		[ "$after" -ge $((before + M * 48)) ] && break
	[ $SECONDS -lt $end ] ||
		fail "120 s after the push: $docs documents, $left sizes to fill, $(((after - before) / 48)) of the $M pulled documents' sizes filled (nothing listed or read)"
	sleep 0.05
done
sizes_right

note "a refused save (a draft): ls -l shows the draft's bytes, then the document's again"
printf 'not json, kept as a draft\n' >"$TMP/draft"
bounded cp "$TMP/draft" "$D/d7.json" 2>/dev/null || true # refused at close: EINVAL
wait_ls d7.json "$(stat -c %s "$TMP/draft")"
bounded cmp -s "$D/d7.json" "$TMP/draft" || fail "d7.json does not read as its draft"
bounded cp "$TMP/in/d7.json" "$D/d7.json" || fail "saving d7 again"
doc_size "$LFS_HOME" d7
wait_ls d7.json "$REPLY"
sizes_right
fuse_umount

note "the size table survives a remount, with the mount's renders in it"
size=$(stat -c %s "$SIZES")
[ "$size" -gt $((16 + N * 48)) ] || fail "the mount noted no render in the size table ($size bytes)"
[ $(((size - 16) % 48)) = 0 ] || fail "the size table ($size bytes) holds a record cut short"
fuse_mount -o cache_timeout=3600
sizes_right
fuse_umount

note "a damaged size table: nothing past the damage is trusted"
printf 'garbage!' | dd of="$SIZES" bs=1 seek=$((16 + 5 * 48 + 20)) conv=notrunc status=none ||
	fail "damaging the size table"
fuse_mount -o cache_timeout=3600
sizes_right
grep -q "size table .* damaged at byte $((16 + 5 * 48))" "$DAEMON_LOG" ||
	fail "the daemon did not say the size table was damaged"
fuse_umount
size=$(stat -c %s "$SIZES")
[ $(((size - 16) % 48)) = 0 ] || fail "the size table ($size bytes) holds a record cut short after the damage"

# ids_right: the mount lists (at any depth) exactly the documents
# `ledgerfs ls` finds in the ledger.
ids_right()
{
	bounded find "$D" -path "$D/.snapshots" -prune -o -path "$D/.ledgerfs" \
		-prune -o -name '*.json' -print >"$TMP/found" || fail "find $D"
	sed -e "s|^$D/||" -e 's|\.json$||' "$TMP/found" | LC_ALL=C sort >"$TMP/found.ids"
	cli ls "$L"
	[ "$STATUS" = 0 ] || fail "ledgerfs ls $L exited $STATUS: $(cat "$TMP/stderr")"
	LC_ALL=C sort "$TMP/stdout" >"$TMP/cli.ids"
	diff "$TMP/cli.ids" "$TMP/found.ids" >"$TMP/ids.diff" ||
		fail "the mount does not list the ledger's documents (< ledgerfs ls, > the mount):
$(head -n 20 "$TMP/ids.diff")"
}

note "the ids a mount leaves for the next: taken back, moved to what was committed while unmounted"
IDS=$LFS_HOME/state/$L/ids
fuse_mount
ls "$D" >/dev/null || fail "ls $D"
fuse_umount
[ -s "$IDS" ] || fail "the mount left no ids in $IDS"
cli ls "$L"
[ "$STATUS" = 0 ] || fail "ledgerfs ls $L exited $STATUS: $(cat "$TMP/stderr")"
ndocs=$(wc -l <"$TMP/stdout")
echo '{"n": 1}' >"$TMP/n.json"
cli put "$L" sub/new1 "$TMP/n.json"
[ "$STATUS" = 0 ] || fail "ledgerfs put: $(cat "$TMP/stderr")"
cli rm "$L" d3
[ "$STATUS" = 0 ] || fail "ledgerfs rm: $(cat "$TMP/stderr")"
fuse_mount
ids_right
grep -q "ledger '$L': took the $ndocs ids the last mount left" "$DAEMON_LOG" ||
	fail "the mount did not take the $ndocs ids the last one left"
[ -e "$D/sub/new1.json" ] && [ ! -e "$D/d3.json" ] ||
	fail "the listing does not show what was committed while unmounted"
fuse_umount

note "a mount that opened the ledger but never listed it leaves its ids too"
rm -f "$IDS"
fuse_mount
bounded stat "$D" >/dev/null || fail "stat $D"
fuse_umount
[ -s "$IDS" ] || fail "a mount that did not list the ledger left no ids in $IDS"
lines=$(wc -l <"$DAEMON_LOG")
fuse_mount
ids_right
tail -n +"$lines" "$DAEMON_LOG" | grep -q "ledger '$L': took the $ndocs ids the last mount left" ||
	fail "the mount did not take the ids a mount that did not list left"
fuse_umount

note "damaged saved ids are ignored: the listing walks the index"
size=$(stat -c %s "$IDS")
printf 'garbage!' | dd of="$IDS" bs=1 seek=$((size / 2)) conv=notrunc status=none ||
	fail "damaging $IDS"
fuse_mount
ids_right
grep -q "ledger '$L': $IDS: .*its first listing reads the whole index" "$DAEMON_LOG" ||
	fail "the daemon did not say the saved ids were damaged"
fuse_umount
fuse_mount
ids_right
fuse_umount

note "saved ids across a compaction and commits made while unmounted"
fuse_mount
ls "$D" >/dev/null || fail "ls $D"
fuse_umount
cli put "$L" sub/new2 "$TMP/n.json"
[ "$STATUS" = 0 ] || fail "ledgerfs put: $(cat "$TMP/stderr")"
cli rm "$L" d5
[ "$STATUS" = 0 ] || fail "ledgerfs rm: $(cat "$TMP/stderr")"
cli compact "$L"
[ "$STATUS" = 0 ] || fail "ledgerfs compact: $(cat "$TMP/stderr")"
cli rm "$L" d6
[ "$STATUS" = 0 ] || fail "ledgerfs rm: $(cat "$TMP/stderr")"
fuse_mount
ids_right
[ -e "$D/sub/new2.json" ] && [ ! -e "$D/d5.json" ] && [ ! -e "$D/d6.json" ] ||
	fail "the listing does not show what was committed and compacted while unmounted"
fuse_umount

echo "PASS: fuse_listing"
