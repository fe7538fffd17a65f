#!/bin/bash
# .snapshots: one read-only directory per clock event. Five events (another
# document, three versions of doc.json a second apart, the other's
# deletion) give exactly five event directories, each with the documents
# of its point in time (byte-identical to `ledgerfs get --at EVENT`),
# directory and file mtimes in commit order and equal to the event's time;
# by-time/<ISO time> links name ../<event> and resolve; inode numbers of
# snapshot directories and files are stable across a remount.
# shellcheck disable=SC2016,SC2119,SC2120 # sh -c '...' scripts; optional arguments
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
# shellcheck source=tests/fuse_lib.sh
. "${top_srcdir:-$(dirname "$0")/..}/tests/fuse_lib.sh"
fuse_init
need stat readlink

L=snap
D=$MNT/$L
SN=$D/.snapshots
n=0
heads=()
started=$(date +%s)

commit_step()
{
	n=$((n + 1))
	expect_commits "$L" "$n"
	lfs_head "$L"
	heads+=("$REPLY")
}

fuse_mount
bounded mkdir "$D"
snap_events $L
[ -z "$REPLY" ] || fail "a new ledger has snapshots: $REPLY"

note "five events a second apart"
put_text "$D/other.json" '{"other":true}'
commit_step
for v in 1 2 3; do
	sleep 1.1
	put_text "$D/doc.json" "{\"version\":$v}"
	commit_step
done
sleep 1.1
bounded rm "$D/other.json"
commit_step
finished=$(date +%s)

note "one directory per event, nothing else"
snap_events $L
want=$(printf '%s\n' "${heads[@]}" | LC_ALL=C sort)
[ "$REPLY" = "$want" ] || fail ".snapshots: expected the events
$want
---- got ----
$REPLY"
got=$(bounded ls -1 "$SN" | grep -cx 'by-time')
[ "$got" = 1 ] || fail ".snapshots has no by-time directory"

note "each snapshot holds its point in time"
# heads[0]: other only; [1..3]: doc versions 1..3 with other; [4]: doc v3.
expect_errno ENOENT read "$SN/${heads[0]}/doc.json"
expect_file "$SN/${heads[0]}/other.json" "$(pretty other '{"other":true}')"
for v in 1 2 3; do
	expect_file "$SN/${heads[v]}/doc.json" "$(pretty doc "{\"version\":$v}")"
	expect_file "$SN/${heads[v]}/other.json" "$(pretty other '{"other":true}')"
done
expect_file "$SN/${heads[4]}/doc.json" "$(pretty doc '{"version":3}')"
expect_errno ENOENT read "$SN/${heads[4]}/other.json"
got=$(bounded ls "$SN/${heads[4]}")
[ "$got" = doc.json ] || fail "the last snapshot lists '$got', expected doc.json"
got=$(bounded ls "$SN/${heads[2]}" | tr '\n' ' ')
[ "$got" = "doc.json other.json " ] || fail "the third snapshot lists '$got'"
for i in 1 2 3 4; do
	f=$SN/${heads[i]}/doc.json
	size=$(bounded stat -c %s "$f")
	len=$(bounded cat "$f" | wc -c)
	[ "$size" = "$len" ] || fail "$f: stat says $size bytes, cat read $len"
done

note "mtimes: commit time, in order"
prev=0
for i in 0 1 2 3 4; do
	m=$(bounded stat -c %Y "$SN/${heads[i]}")
	mtimes[i]=$m
	if [ "$m" -lt $((started - 2)) ] || [ "$m" -gt $((finished + 2)) ]; then
		fail "snapshot ${heads[i]} has mtime $m, not within the test's run ($started..$finished)"
	fi
	[ "$m" -gt "$prev" ] || fail "snapshot $i's mtime $m is not after the previous one's ($prev)"
	prev=$m
done
for i in 1 2 3; do
	m=$(bounded stat -c %Y "$SN/${heads[i]}/doc.json")
	[ "$m" = "${mtimes[i]}" ] ||
		fail "doc.json in snapshot $i has mtime $m, its event's time is ${mtimes[i]}"
done

note "by-time/<ISO time> -> ../<event>, in time order"
bt=$(bounded ls -1 "$SN/by-time" | LC_ALL=C sort)
[ "$(wc -l <<<"$bt")" = 5 ] || fail "by-time has $(wc -l <<<"$bt") entries, expected 5: $bt"
i=0
while read -r name; do
	[[ $name =~ ^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?Z$ ]] ||
		fail "by-time name '$name' is not an ISO-8601 UTC time"
	bounded test -L "$SN/by-time/$name" || fail "by-time/$name is not a symbolic link"
	target=$(bounded readlink "$SN/by-time/$name")
	[ "$target" = "../${heads[i]}" ] || fail "by-time/$name -> '$target', expected ../${heads[i]} (event $i)"
	bytime[i]=$name
	i=$((i + 1))
done <<<"$bt"
expect_file "$SN/by-time/${bytime[2]}/doc.json" "$(pretty doc '{"version":2}')"
[ "$(bounded stat -L -c %i "$SN/by-time/${bytime[3]}")" = "$(bounded stat -c %i "$SN/${heads[3]}")" ] ||
	fail "by-time/${bytime[3]} does not lead to the directory of ${heads[3]}"

note "inode numbers: distinct, and stable within a mount"
record_inodes()
{
	local i
	for i in 0 1 2 3 4; do
		bounded stat -c '%i %n' "$SN/${heads[i]}"
		bounded find "$SN/${heads[i]}" -mindepth 1 -exec stat -c '%i %n' {} +
	done
	bounded find "$SN/by-time" -mindepth 1 -exec stat -c '%i %n' {} +
}
record_inodes | LC_ALL=C sort -k2 >"$TMP/inodes.1"
record_inodes | LC_ALL=C sort -k2 >"$TMP/inodes.2"
cmp -s "$TMP/inodes.1" "$TMP/inodes.2" || fail "inode numbers changed between two stats:
$(diff "$TMP/inodes.1" "$TMP/inodes.2")"
# Entries with different content never share an inode number (identical
# files of two snapshots may, like hard links).
distinct=$({
	for i in 0 1 2 3 4; do
		bounded stat -c %i "$SN/${heads[i]}"
		bounded stat -c %i "$SN/by-time/${bytime[i]}"
	done
	for i in 1 2 3; do
		bounded stat -c %i "$SN/${heads[i]}/doc.json"
	done
} | sort | uniq -d)
[ -z "$distinct" ] || fail "inode numbers shared by different directories, links or versions: $distinct
$(cat "$TMP/inodes.1")"
[ "$(wc -l <"$TMP/inodes.1")" -ge 14 ] || fail "too few snapshot entries: $(cat "$TMP/inodes.1")"
for i in 0 1 2 3 4; do
	for f in doc other; do
		if bounded test -e "$SN/${heads[i]}/$f.json"; then
			bounded cat "$SN/${heads[i]}/$f.json" >"$TMP/snap.$i.$f"
		fi
	done
done

fuse_umount

note "the CLI: the same events, times and contents"
expect_cli_commits $L 5
cli log --json $L
jq -r '.[].event' "$TMP/stdout" | LC_ALL=C sort >"$TMP/events"
[ "$(cat "$TMP/events")" = "$want" ] || fail "ledgerfs log lists the events
$(cat "$TMP/events")
---- the snapshots were ----
$want"
for i in 0 1 2 3 4; do
	t=$(jq -r --arg e "${heads[i]}" '.[] | select(.event == $e) | .time' "$TMP/stdout")
	[ "$t" = "${bytime[i]}" ] || fail "event ${heads[i]}: the CLI says its time is $t, by-time says ${bytime[i]}"
	s=$(jq -r --arg e "${heads[i]}" '.[] | select(.event == $e) | .t / 1000000 | floor' "$TMP/stdout")
	[ "$s" = "${mtimes[i]}" ] || fail "event ${heads[i]}: commit time $s s, snapshot mtime ${mtimes[i]}"
done
for i in 0 1 2 3 4; do
	for f in doc other; do
		if [ -e "$TMP/snap.$i.$f" ]; then
			cli get --at "${heads[i]}" $L $f
			[ "$STATUS" = 0 ] || fail "ledgerfs get --at ${heads[i]} $L $f: $(cat "$TMP/stderr")"
			cmp -s "$TMP/stdout" "$TMP/snap.$i.$f" ||
				fail "snapshot $i's $f.json differs from ledgerfs get --at:
$(cat "$TMP/snap.$i.$f")
---- CLI ----
$(cat "$TMP/stdout")"
		else
			cli get --at "${heads[i]}" $L $f
			[ "$STATUS" = 3 ] || fail "snapshot $i has no $f.json but ledgerfs get --at finds it (status $STATUS)"
		fi
	done
done

note "a remount: the same snapshots, the same inode numbers"
fuse_mount
record_inodes | LC_ALL=C sort -k2 >"$TMP/inodes.3"
cmp -s "$TMP/inodes.1" "$TMP/inodes.3" || fail "inode numbers changed across a remount:
$(diff "$TMP/inodes.1" "$TMP/inodes.3")"
for i in 0 1 2 3 4; do
	for f in doc other; do
		if [ -e "$TMP/snap.$i.$f" ]; then
			bounded cat "$SN/${heads[i]}/$f.json" | cmp -s - "$TMP/snap.$i.$f" ||
				fail "after a remount snapshot $i's $f.json reads differently"
		fi
	done
	[ "$(bounded stat -c %Y "$SN/${heads[i]}")" = "${mtimes[i]}" ] ||
		fail "after a remount snapshot $i's mtime changed"
done
fuse_umount

echo "PASS: fuse_snapshots"
