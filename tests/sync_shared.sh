#!/bin/sh
# One home, several processes: a mount and command-line syncs share the
# state files of HOME/state/<ledger>/ (waiting, missing). Writers A and B
# push to a file:// store while one of A's CAR files is hidden, so replica
# C keeps A's later CARs unapplied (listed in `waiting`) while it applies
# B's (taking entries out of it): a mount of C and four `ledgerfs sync`
# loops on C race on that file all along. Once the hidden file is back, C
# must converge: every document of A and B readable, fsck clean, nothing
# left waiting. This caught a process applying A's CAR above one another
# process kept unapplied (its events' blocks were here), then counting
# kept files as applied: C said "synced" without A's later documents.
. "${top_srcdir:-$(dirname "$0")/..}/tests/lib.sh"

need jq timeout
L=$LEDGERFS
store=$TMP/store
url=file://$store
MNT=$TMP/mnt
A=$TMP/home-a
B=$TMP/home-b
C=$TMP/home-c
mkdir -p "$store" "$MNT"
pid=
loops=
cleanup()
{
	touch "$TMP/stop"
	mountpoint -q "$MNT" && { fusermount3 -u "$MNT" 2>/dev/null || umount -l "$MNT"; }
	[ -n "$pid" ] && kill "$pid" 2>/dev/null
	# shellcheck disable=SC2086
	[ -n "$loops" ] && kill $loops 2>/dev/null
	wait 2>/dev/null
	_lib_cleanup
}
trap cleanup EXIT

on()
{
	_h=$1
	shift
	LEDGERFS_HOME=$_h timeout 120 "$L" "$@"
}

on "$A" init t >/dev/null || fail "init"
share=$(on "$A" key export t) || fail "key export"
on "$B" key import t "$share" >/dev/null || fail "key import B"
on "$C" key import t "$share" >/dev/null || fail "key import C"
for i in 1 2; do
	echo "{\"a\": $i}" | on "$A" put t "a$i" >/dev/null || fail "put a$i"
	on "$A" sync --remote "$url" t >/dev/null || fail "sync A"
done
on "$B" sync --remote "$url" t >/dev/null || fail "first sync of B"
prev=$(ls "$store/t/car")
echo '{"a": 3}' | on "$A" put t a3 >/dev/null || fail "put a3"
on "$A" sync --remote "$url" t >/dev/null || fail "sync A"
hidden=$(ls "$store/t/car" | grep -vxF "$prev")
[ "$(echo "$hidden" | wc -w)" -eq 1 ] || fail "put a3 made no single CAR"
mv "$store/t/car/$hidden" "$TMP/hidden"

mounted=no
if [ -e /dev/fuse ] && command -v fusermount3 >/dev/null; then
	sync_mount "$C" "$MNT" "$TMP/daemon.log" "$url" 100
	pid=$sync_pid
	mounted=yes
else
	note "no /dev/fuse or fusermount3: command-line processes only"
fi
for k in 1 2 3 4; do
	(
		while [ ! -e "$TMP/stop" ]; do
			on "$C" sync --remote "$url" t >/dev/null 2>&1 || true
		done
	) &
	loops="$loops $!"
done

note "A and B write while A's third CAR is hidden (mount: $mounted)"
N=12
for i in $(seq 4 $N); do
	echo "{\"a\": $i}" | on "$A" put t "a$i" >/dev/null || fail "put a$i"
	on "$A" sync --remote "$url" t >/dev/null 2>&1
	echo "{\"b\": $i}" | on "$B" put t "b$i" >/dev/null || fail "put b$i"
	on "$B" sync --remote "$url" t >/dev/null 2>&1
done
# Let every process of C go round at least once more on the last writes.
for k in 1 2 3; do
	on "$C" sync --remote "$url" t >/dev/null 2>&1 || true
done
touch "$TMP/stop"
# shellcheck disable=SC2086
wait $loops
loops=
if [ $mounted = yes ]; then
	fusermount3 -u "$MNT" || fail "unmount"
	wait "$pid" || fail "the daemon exited with $?"
	pid=
fi
grep -qv '^b[a-z2-7]*$' "$C/state/t/waiting" &&
	fail "state/t/waiting holds a line that is not a CID: $(grep -v '^b[a-z2-7]*$' "$C/state/t/waiting" | head -n 3)"

note "the hidden CAR comes back: C converges"
mv "$TMP/hidden" "$store/t/car/$hidden"
i=0
until on "$C" sync --remote "$url" t >"$TMP/out" 2>&1; do
	i=$((i + 1))
	[ $i -lt 5 ] || fail "C does not converge: $(cat "$TMP/out")"
done
expect 0 env LEDGERFS_HOME="$C" "$L" fsck t
for i in $(seq 1 $N); do
	expect 0 env LEDGERFS_HOME="$C" "$L" get t "a$i"
	expect_stdout "\"a\": $i"
	[ "$i" -ge 4 ] || continue
	expect 0 env LEDGERFS_HOME="$C" "$L" get t "b$i"
	expect_stdout "\"b\": $i"
done
[ ! -s "$C/state/t/waiting" ] ||
	fail "C still lists waiting CARs: $(cat "$C/state/t/waiting")"
echo "PASS: sync_shared"
