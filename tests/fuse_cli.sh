#!/bin/bash
# Several processes on one home: `ledgerfs put` and `ledgerfs rm` on the
# home a mount is serving show up in the mount (and in its change feed)
# within a poll interval, with no commit through the mount to wake it; a
# save through the mount after that is based on the new head, so it never
# reverts the command line's write.
# shellcheck disable=SC2119,SC2120 # optional arguments
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
# shellcheck source=tests/fuse_lib.sh
. "${top_srcdir:-$(dirname "$0")/..}/tests/fuse_lib.sh"
fuse_init

L=multi
D=$MNT/$L

# wait_for FILE JQ: until FILE, read through the mount, satisfies JQ.
wait_for()
{
	local end=$((SECONDS + 60))
	until bounded jq -e "$2" "$1" >/dev/null 2>&1; do
		[ $SECONDS -lt $end ] || fail "$1 never satisfied '$2' (now: $(cat "$1" 2>&1))"
		sleep 0.05
	done
}

fuse_mount
bounded mkdir "$D" || fail "mkdir $D"
put_text "$D/a.json" '{"v": 1}'
put_text "$D/b.json" '{"v": 1}'
expect_commits "$L" 2

note "a write from the command line shows in the mount"
echo '{"v": 2, "by": "cli"}' | bounded "$LEDGERFS" put --home "$LFS_HOME" "$L" a >/dev/null ||
	fail "ledgerfs put on a mounted home failed"
wait_for "$D/a.json" '.v == 2 and .by == "cli"'
echo '{"v": 1}' | bounded "$LEDGERFS" put --home "$LFS_HOME" "$L" c >/dev/null ||
	fail "ledgerfs put of a new document failed"
wait_for "$D/c.json" '.v == 1'
bounded ls "$D" | grep -qx c.json || fail "c.json is not listed after the CLI wrote it"
grep -q ' + c$' "$D/.ledgerfs/changes" || fail "the change feed does not name c"

note "a save through the mount keeps the command line's writes"
put_text "$D/b.json" '{"v": 2}'
bounded "$LEDGERFS" get --home "$LFS_HOME" "$L" a >"$TMP/a" || fail "ledgerfs get a"
jq -e '.by == "cli"' "$TMP/a" >/dev/null || fail "saving b.json reverted a: $(cat "$TMP/a")"
bounded "$LEDGERFS" get --home "$LFS_HOME" "$L" c >"$TMP/c" || fail "saving b.json dropped c"

note "a delete from the command line shows in the mount"
bounded "$LEDGERFS" rm --home "$LFS_HOME" "$L" c >/dev/null || fail "ledgerfs rm c"
end=$((SECONDS + 60))
while bounded test -e "$D/c.json"; do
	[ $SECONDS -lt $end ] || fail "c.json is still there 60 s after ledgerfs rm"
	sleep 0.05
done
put_text "$D/b.json" '{"v": 3}'
bounded "$LEDGERFS" get --home "$LFS_HOME" "$L" c >/dev/null 2>&1 &&
	fail "saving b.json brought c back"

fuse_umount
echo "PASS: fuse_cli"
