#!/bin/bash
# The control files of a ledger, .ledgerfs/{status,errors,heads,changes,
# conflicts}: fresh on every read, status and conflicts parse as JSON with
# the expected counts, heads names the head, the changes feed gets one
# line per changed document ("<iso time> <event> <+|~|-> <id>") and
# `tail -f` sees a new line after a write; past -o changes_max the feed is
# kept as changes.1 and starts again, and `tail -f` goes on with it; the
# control files are not writable and never become documents.
# shellcheck disable=SC2016,SC2119,SC2120 # sh -c '...' scripts; optional arguments
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
# shellcheck source=tests/fuse_lib.sh
. "${top_srcdir:-$(dirname "$0")/..}/tests/fuse_lib.sh"
fuse_init
need tail

L=ctl
D=$MNT/$L
C=$D/.ledgerfs
n=0
re_line='^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?Z b[a-z2-7]{20,} [-+~] .+$'

# until_true WHAT CMD...: until CMD succeeds (a minute at most)
until_true()
{
	local what=$1 end=$((SECONDS + 60))
	shift
	until "$@"; do
		[ $SECONDS -lt $end ] || fail "waited a minute for: $what"
		sleep 0.05
	done
}

# one_commit, and HEAD is the ledger's one head after it
one_commit_head()
{
	one_commit
	lfs_head "$L"
	HEAD=$REPLY
}

# expect_status JQ: the status satisfies JQ
expect_status()
{
	lfs_status $L
	jq -e "$1" >/dev/null <<<"$LFS_STATUS_JSON" || fail "status: expected $1; got $LFS_STATUS_JSON"
}

# expect_changes LINE...: the changes feed is exactly these lines, each
# "<time> <event> <op> <id>" given as "<event> <op> <id>".
expect_changes()
{
	local got want
	got=$(bounded cat "$C/changes") || fail "cannot read $C/changes"
	if [ -n "$got" ]; then
		while read -r line; do
			[[ $line =~ $re_line ]] || fail "changes: malformed line '$line'"
		done <<<"$got"
	fi
	got=$(cut -d' ' -f2- <<<"$got")
	want=$(printf '%s\n' "$@")
	[ $# -gt 0 ] || want=
	[ "$got" = "$want" ] || fail "changes: expected (times left out)
$want
---- got ----
$got"
}

fuse_mount
bounded mkdir "$D"

note "a new ledger: empty status, errors, heads, changes, conflicts"
for f in status errors heads changes conflicts; do
	bounded test -f "$C/$f" || fail "$C/$f is missing"
done
got=$(bounded ls "$C" | tr '\n' ' ')
for f in status errors heads changes conflicts; do
	[[ " $got" == *" $f "* ]] || fail "ls $C does not list $f: $got"
done
expect_status '(.heads | type) == "array" and (.heads | length) == 0 and .documents == 0 and .events == 0 and .errors == 0'
[ -z "$(bounded cat "$C/errors")" ] || fail "errors is not empty"
[ -z "$(bounded cat "$C/heads")" ] || fail "heads is not empty"
expect_changes
bounded cat "$C/conflicts" >"$TMP/conflicts"
jq -e 'length == 0' "$TMP/conflicts" >/dev/null || fail "conflicts is not an empty JSON value: $(cat "$TMP/conflicts")"

note "writes show in status, heads and changes at once"
put_text "$D/a.json" '{"n":1}'
one_commit_head
h1=$HEAD
expect_status '(.heads | length) == 1 and .documents == 1 and .events == 1 and .errors == 0'
got=$(bounded cat "$C/heads")
[ "$got" = "$h1" ] || fail "heads: expected $h1, got '$got'"
expect_changes "$h1 + a"
put_text "$D/a.json" '{"n":2}'
one_commit_head
h2=$HEAD
put_text "$D/b.json" '{"n":1}'
one_commit_head
h3=$HEAD
bounded rm "$D/a.json"
one_commit_head
h4=$HEAD
expect_status "(.heads == [\"$h4\"]) and .documents == 1 and .events == 4"
got=$(bounded cat "$C/heads")
[ "$got" = "$h4" ] || fail "heads: expected $h4, got '$got'"
expect_changes "$h1 + a" "$h2 ~ a" "$h3 + b" "$h4 - a"
note "one line per changed document of a commit (mv: a delete and an add)"
bounded mv "$D/b.json" "$D/c.json"
one_commit_head
h5=$HEAD
got=$(bounded cat "$C/changes" | cut -d' ' -f2- | tail -n 2 | LC_ALL=C sort)
want=$(printf '%s\n' "$h5 + c" "$h5 - b" | LC_ALL=C sort)
[ "$got" = "$want" ] || fail "changes after mv b.json c.json: expected
$want
---- got ----
$got"

note "sizes: stat agrees with what a read returns"
for f in status heads changes; do
	size=$(bounded stat -c %s "$C/$f")
	len=$(bounded cat "$C/$f" | wc -c)
	[ "$size" = "$len" ] || fail "$C/$f: stat says $size bytes, a read returned $len"
done

note "tail -f follows the changes feed"
# From its first byte, so nothing depends on when tail reaches the end:
# it prints the feed as it is, then the line a new save adds.
bounded cat "$C/changes" >"$TMP/feed.before"
tail -c +1 -f "$C/changes" >"$TMP/tail.out" 2>"$TMP/tail.err" &
tail_pid=$!
LFS_BG_PIDS="$LFS_BG_PIDS $tail_pid"
until_true "tail -f printed the feed" cmp -s "$TMP/feed.before" "$TMP/tail.out"
put_text "$D/d.json" '{"n":4}'
one_commit_head
h6=$HEAD
until_true "tail -f printed the line of d" grep -qxE "[^ ]+ $h6 \+ d" "$TMP/tail.out"
kill "$tail_pid" 2>/dev/null
wait "$tail_pid" 2>/dev/null || true # killed
[ "$(wc -l <"$TMP/tail.out")" = $(($(wc -l <"$TMP/feed.before") + 1)) ] ||
	fail "tail -f printed more than the feed and the new line: $(cat "$TMP/tail.out")"

note "the errors file and count follow an invalid save"
printf 'not json' >"$TMP/bad"
got=$(fsop write "$D/eee.json" "$TMP/bad")
[ "$got" = close:EINVAL ] || fail "an invalid save: expected close:EINVAL, got $got"
expect_status '.errors == 1 and .events == 6'
got=$(bounded cat "$C/errors")
if [ "$(wc -l <<<"$got")" != 1 ] || ! grep -q 'eee' <<<"$got"; then
	fail "errors: expected one line about eee.json, got: $got"
fi
put_text "$D/eee.json" '{"n":5}'
one_commit

note "status and conflicts parse; conflicts stay empty without concurrent writes"
expect_status ".events == $n and .documents == 3"
bounded cat "$C/conflicts" >"$TMP/conflicts"
jq -e 'length == 0' "$TMP/conflicts" >/dev/null || fail "conflicts is not empty: $(cat "$TMP/conflicts")"

note "control files are read-only and never documents"
for f in status errors heads changes conflicts; do
	got=$(fsop write "$C/$f" "$TMP/bad")
	[ "$got" != ok ] || fail "writing $C/$f succeeded"
done
expect_status ".events == $n"
got=$(fsop create "$C/new")
[ "$got" != ok ] || fail "creating a file in $C succeeded"

fuse_umount
expect_cli_commits $L $n
expect_ids $L c d eee

note "past -o changes_max the feed is kept as changes.1 and starts again; tail -f goes on"
fuse_mount -o changes_max=4096
state=$LFS_HOME/state/$L
tail -c +1 -f "$C/changes" >"$TMP/tail2.out" 2>"$TMP/tail2.err" &
tail_pid=$!
LFS_BG_PIDS="$LFS_BG_PIDS $tail_pid"
# One commit of 80 documents from the command line: 80 lines, ~8 KB.
for i in $(seq 80); do printf '{"_id":"bulk-%03d","n":%d}\n' "$i" "$i"; done >"$TMP/bulk.ndjson"
cli import "$L" "$TMP/bulk.ndjson"
[ "$STATUS" = 0 ] || fail "ledgerfs import exited $STATUS: $(cat "$TMP/stderr")"
until_true "changes.1 holds the import's lines" grep -qs ' + bulk-080$' "$state/changes.1"
[ "$(grep -c ' + bulk-' "$state/changes.1")" = 80 ] ||
	fail "changes.1 does not hold the 80 lines of the import: $(cat "$state/changes.1")"
[ "$(bounded cat "$C/changes" | wc -c)" -le 4096 ] || fail "the feed did not start again"
put_text "$D/after.json" '{"n":6}'
until_true "tail -f printed the line after the feed started again" grep -q ' + after$' "$TMP/tail2.out"
kill "$tail_pid" 2>/dev/null
wait "$tail_pid" 2>/dev/null || true # killed
bounded cat "$C/changes" >"$TMP/feed.after"
grep -q ' + after$' "$TMP/feed.after" || fail "the feed lacks the save after it started again"
! grep -q ' + bulk-' "$TMP/feed.after" || fail "the feed still holds the import's lines: $(cat "$TMP/feed.after")"
fuse_umount
expect_ids $L after $(seq -f 'bulk-%03g' 80) c d eee

note "-o changes_max below 4096 is refused"
bounded "$LEDGERFS" mount --home "$LFS_HOME" -f -o changes_max=100 "$MNT" >"$TMP/bad.out" 2>&1 &&
	fail "a mount with -o changes_max=100 started"
grep -q 'changes_max' "$TMP/bad.out" || fail "the refusal does not name changes_max: $(cat "$TMP/bad.out")"

echo "PASS: fuse_control"
