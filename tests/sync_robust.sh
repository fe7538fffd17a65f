#!/bin/sh
# What a replica does with a store that misbehaves, on a file:// store (no
# server, no network):
#  - a CAR missing from the store for 15 rounds, then back: every round
#    says "incomplete" (never a permanent rejection), status names the
#    missing file and since when (the same time in every process), then
#    the replica converges and fsck is clean; the same in a mount, across
#    a remount, where .ledgerfs/wait and status say so meanwhile;
#  - junk head records (64 KiB, a FIFO, a symlink to /dev/zero) are
#    skipped and logged once, and sync goes on, pull and push;
#  - a CAR over the size limit (a sparse 1.5 GiB file) is rejected before
#    it is read, junk under it (900 MiB) and a CAR sealed under another key
#    after their first chunk: the CLI's and the daemon's peak RSS stay
#    under 100 MB, and the round goes on;
#  - a FIFO where a CAR should be never blocks a round; a symlinked
#    directory in the store leads no read, write or listing outside it.
. "${top_srcdir:-$(dirname "$0")/..}/tests/lib.sh"

need python3 jq mkfifo truncate
L=$LEDGERFS
base=$(mktemp -d /var/tmp/lfs-robust.XXXXXX)
store=$base/remote
url=file://$store
MNT=$base/mnt
mkdir -p "$MNT"
pid=
cleanup()
{
	mountpoint -q "$MNT" && { fusermount3 -u "$MNT" 2>/dev/null || umount -l "$MNT"; }
	[ -n "$pid" ] && kill "$pid" 2>/dev/null
	wait 2>/dev/null
	rm -rf "$base"
}
trap 'cleanup; trap - EXIT; exit 1' INT TERM
trap cleanup EXIT

# sync HOME: one bounded `ledgerfs sync` of ledger t for HOME (run()
# semantics: $STATUS, $TMP/stdout, $TMP/stderr).
sync_home()
{
	run env LEDGERFS_HOME="$1" timeout 120 "$L" sync --remote "$url" t
	[ "$STATUS" -lt 124 ] || fail "ledgerfs sync hung or crashed ($STATUS)"
}

# rss_run KB_FILE CMD...: run CMD (run() semantics), its peak RSS in
# kilobytes into KB_FILE.
rss_run()
{
	_kb=$1
	shift
	STATUS=0
	python3 -c '
import resource, subprocess, sys
with open(sys.argv[2], "w") as o, open(sys.argv[3], "w") as e:
    r = subprocess.run(sys.argv[4:], stdout=o, stderr=e)
with open(sys.argv[1], "w") as f:
    f.write("%d\n" % resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
sys.exit(r.returncode if r.returncode >= 0 else 128 - r.returncode)
' "$_kb" "$TMP/stdout" "$TMP/stderr" "$@" || STATUS=$?
}

# A raw CID no real file has: named after TEXT.
fake_cid()
{
	printf '%s' "$1" >"$base/fake"
	raw_cid "$base/fake"
}

A=$base/home-a
B=$base/home-b
export LEDGERFS_HOME="$A"
"$L" init t >/dev/null || fail "init"
share=$("$L" key export t) || fail "key export"
# Six single-document commits, pushed one by one: the third's CAR is known.
prev=
for i in 1 2 3 4 5 6; do
	echo "{\"n\": $i}" | "$L" put t "d$i" >/dev/null || fail "put d$i"
	sync_home "$A"
	[ "$STATUS" -eq 0 ] || fail "push of d$i: $(cat "$TMP/stderr")"
	now=$(ls "$store/t/car")
	new=$(echo "$now" | grep -vxF "$prev" || true)
	[ "$(echo "$new" | wc -w)" -eq 1 ] || fail "commit $i made no single CAR"
	[ "$i" -eq 3 ] && third=$new
	prev=$now
done

note "a CAR missing from the store for 15 rounds: retried, never rejected"
LEDGERFS_HOME=$B "$L" key import t "$share" >/dev/null || fail "key import"
mv "$store/t/car/$third" "$base/aside"
i=0
while [ $i -lt 15 ]; do
	i=$((i + 1))
	sync_home "$B"
	[ "$STATUS" -eq 1 ] || fail "round $i with a CAR missing exited $STATUS"
	expect_stderr "incomplete: .*$third is missing"
	if grep -q "pushed and pulled" "$TMP/stdout"; then
		fail "round $i claims it pushed and pulled"
	fi
	if grep -q "rejected" "$TMP/stderr"; then
		fail "round $i rejected a file: $(cat "$TMP/stderr")"
	fi
	if [ $i -eq 1 ]; then
		# Status names the missing file and since when; the time
		# is kept in the home, so later processes say the same.
		run env LEDGERFS_HOME="$B" "$L" sync --remote "$url" --json t
		since=$(jq -r --arg c "$third" \
			'.t.missing_files[] | select(.car == $c) | .since' \
			"$TMP/stdout")
		[ -n "$since" ] || fail "status does not list the missing CAR: $(cat "$TMP/stdout")"
	fi
done
run env LEDGERFS_HOME="$B" "$L" sync --remote "$url" --json t
jq -e --arg c "$third" --arg s "$since" '.t.state == "incomplete" and
	.t.unapplied_heads == 1 and .t.rejected_files == 0 and
	(.t.last_error | test("missing on the store \\(since ")) and
	.t.missing_files == [{"car": $c, "since": $s}]' \
	"$TMP/stdout" >/dev/null || fail "status while incomplete (missing since $since): $(cat "$TMP/stdout")"
mv "$base/aside" "$store/t/car/$third"
sync_home "$B"
[ "$STATUS" -eq 0 ] || fail "sync after the CAR came back: $(cat "$TMP/stderr")"
expect_stdout "pushed and pulled"
sync_home "$B"
[ "$STATUS" -eq 0 ] || fail "second sync after the CAR came back"
run env LEDGERFS_HOME="$B" "$L" sync --remote "$url" --json t
jq -e '.t.state == "synced" and (.t | has("missing_files") | not)' \
	"$TMP/stdout" >/dev/null || fail "status still lists a missing file: $(cat "$TMP/stdout")"
[ ! -s "$B/state/t/missing" ] || fail "state/t/missing still lists: $(cat "$B/state/t/missing")"
expect 0 env LEDGERFS_HOME="$B" "$L" fsck t
for i in 1 2 3 4 5 6; do
	expect 0 env LEDGERFS_HOME="$B" "$L" get t "d$i"
	expect_stdout "\"n\": $i"
done

note "junk head records are skipped, logged once; pull and push go on"
big=$(fake_cid big-record)
fifo=$(fake_cid fifo-record)
zero=$(fake_cid zero-record)
head -c 65536 /dev/zero | tr '\0' x >"$store/t/head/$big"
mkfifo "$store/t/head/$fifo"
ln -s /dev/zero "$store/t/head/$zero"
echo '{"n": 7}' | "$L" put t d7 >/dev/null || fail "put d7"
sync_home "$A"
[ "$STATUS" -eq 0 ] || fail "push beside junk records: $(cat "$TMP/stderr")"
expect_stdout "pushed and pulled"
for c in "$big" "$fifo" "$zero"; do
	[ "$(grep -c "ignored head record $c" "$TMP/stderr")" -eq 1 ] ||
		fail "junk record $c not logged once: $(cat "$TMP/stderr")"
done
sync_home "$B"
[ "$STATUS" -eq 0 ] || fail "pull beside junk records: $(cat "$TMP/stderr")"
expect_stdout "pushed and pulled"
expect 0 env LEDGERFS_HOME="$B" "$L" get t d7

note "a CAR over the size limit is rejected before it is read"
huge=$(fake_cid huge-car)
truncate -s 1536M "$store/t/car/$huge"
printf '{"car":{"/":"%s"},"parents":[]}' "$huge" >"$store/t/head/$huge"
rss_run "$base/rss" env LEDGERFS_HOME="$B" timeout 120 "$L" sync \
	--remote "$url" --json t
[ "$STATUS" -eq 0 ] || fail "sync beside a huge CAR exited $STATUS: $(cat "$TMP/stderr")"
kb=$(cat "$base/rss")
note "ledgerfs sync peak RSS beside a 1.5 GiB CAR: $kb kB"
[ "$kb" -lt 102400 ] || fail "ledgerfs sync used $kb kB beside a huge CAR"
jq -e --arg c "$huge" '.t.state == "synced" and .t.rejected_files == 1 and
	(.t.last_rejected | contains($c))' "$TMP/stdout" >/dev/null ||
	fail "status after a huge CAR: $(cat "$TMP/stdout")"

note "junk CARs under the size limit are refused at their first chunk"
# 900 MiB of zeros (sparse) under a made-up name, and a real CAR of
# another ledger (a good envelope under another key) under its own name:
# neither is read whole, both are rejected, and a new d7 arrives beside
# them.
junk=$(fake_cid junk-car)
truncate -s 900M "$store/t/car/$junk"
printf '{"car":{"/":"%s"},"parents":[]}' "$junk" >"$store/t/head/$junk"
"$L" init u >/dev/null || fail "init u"
echo '{"u": 1}' | "$L" put u d1 >/dev/null || fail "put u/d1"
run env LEDGERFS_HOME="$A" timeout 120 "$L" sync --remote "$url" u
[ "$STATUS" -eq 0 ] || fail "push of ledger u: $(cat "$TMP/stderr")"
other=$(ls "$store/u/car" | head -n 1)
cp "$store/u/car/$other" "$store/t/car/$other"
printf '{"car":{"/":"%s"},"parents":[]}' "$other" >"$store/t/head/$other"
echo '{"n": 7, "v": 2}' | "$L" put t d7 >/dev/null || fail "put d7"
sync_home "$A"
[ "$STATUS" -eq 0 ] || fail "push of d7 beside junk CARs: $(cat "$TMP/stderr")"
rss_run "$base/rss" env LEDGERFS_HOME="$B" timeout 120 "$L" sync \
	--remote "$url" --json t
[ "$STATUS" -eq 0 ] || fail "sync beside junk CARs exited $STATUS: $(cat "$TMP/stderr")"
kb=$(cat "$base/rss")
note "ledgerfs sync peak RSS beside a 900 MiB junk CAR: $kb kB"
[ "$kb" -lt 102400 ] || fail "ledgerfs sync used $kb kB beside a 900 MiB junk CAR"
for c in "$junk" "$other"; do
	grep -q "rejected CAR $c from the store: .*not authentic" "$TMP/stderr" ||
		fail "junk CAR $c not rejected clearly: $(cat "$TMP/stderr")"
done
jq -e '.t.state == "synced" and .t.rejected_files == 3' "$TMP/stdout" \
	>/dev/null || fail "status beside junk CARs: $(cat "$TMP/stdout")"
expect 0 env LEDGERFS_HOME="$B" "$L" get t d7
expect_stdout '"v": 2'

note "a FIFO where a CAR should be does not block a round"
fcar=$(fake_cid fifo-car)
mkfifo "$store/t/car/$fcar"
printf '{"car":{"/":"%s"},"parents":[]}' "$fcar" >"$store/t/head/$fcar"
sync_home "$B"
[ "$STATUS" -eq 1 ] || fail "a FIFO CAR: sync exited $STATUS"
expect_stderr "incomplete: .*$fcar is not a readable file"
rm -f "$store/t/car/$fcar" "$store/t/head/$fcar"
sync_home "$B"
[ "$STATUS" -eq 0 ] || fail "sync after the FIFO went: $(cat "$TMP/stderr")"

note "symlinks planted in the store lead nowhere outside it"
probe=${top_builddir:-$top_srcdir/build}/tests/store_probe
[ -x "$probe" ] || fail "tests/store_probe is not built"
mkdir -p "$base/outside/car"
echo secret >"$base/outside/car/x"
ln -s "$base/outside" "$store/evil"
run "$probe" "$url" get evil/car/x
[ "$(head -n 1 "$TMP/stdout")" = ENOENT ] ||
	fail "a key through a symlinked directory: $(cat "$TMP/stdout")"
run "$probe" "$url" list evil/
[ "$(cat "$TMP/stdout")" = ok ] || fail "listing a symlinked directory: $(cat "$TMP/stdout")"
run "$probe" "$url" put evil/car/y data
[ ! -e "$base/outside/car/y" ] || fail "a put went through a symlinked directory"
rm "$store/evil"

[ -e /dev/fuse ] || skip "no /dev/fuse: the mount half cannot run here"
command -v fusermount3 >/dev/null || skip "no fusermount3: the mount half cannot run here"

note "in a mount: a CAR missing across a remount, then back"
C=$base/home-c
LEDGERFS_HOME=$C "$L" key import t "$share" >/dev/null || fail "key import"
prev=$(ls "$store/t/car")
for i in 8 9 10; do
	echo "{\"n\": $i}" | "$L" put t "d$i" >/dev/null || fail "put d$i"
	sync_home "$A"
	[ "$STATUS" -eq 0 ] || fail "push of d$i"
	[ "$i" -eq 8 ] && eighth=$(ls "$store/t/car" | grep -vxF "$prev")
done
[ "$(echo "$eighth" | wc -w)" -eq 1 ] || fail "commit 8 made no single CAR"
mv "$store/t/car/$eighth" "$base/aside"

start_mount()
{
	sync_mount "$C" "$MNT" "$base/daemon.log" "$url" 200
	pid=$sync_pid
}
stop_mount()
{
	fusermount3 -u "$MNT" || fail "unmount"
	wait "$pid" || fail "the daemon exited with $?"
	pid=
}
# wait_state STATE: poll the mount's status (120 s at most).
wait_state()
{
	_t=600
	until [ "$(jq -r .sync.state "$MNT/t/.ledgerfs/status" 2>/dev/null)" = "$1" ]; do
		_t=$((_t - 1))
		[ $_t -gt 0 ] || fail "sync state never became $1: $(cat "$MNT/t/.ledgerfs/status")"
		sleep 0.2
	done
}
for round in 1 2; do
	start_mount
	wait_state incomplete
	st=$(cat "$MNT/t/.ledgerfs/status")
	echo "$st" | jq -e --arg c "$eighth" \
		'.sync.unapplied_heads == 1 and (.sync.last_error | contains($c))' \
		>/dev/null || fail "status while a CAR is missing: $st"
	run timeout 120 cat "$MNT/t/.ledgerfs/wait"
	[ "$STATUS" -ne 0 ] || fail "wait claims success while a CAR is missing: $(cat "$TMP/stdout")"
	expect_stderr "in progress"
	[ $round -eq 1 ] && stop_mount
done
mv "$base/aside" "$store/t/car/$eighth"
wait_state synced
run timeout 120 cat "$MNT/t/.ledgerfs/wait"
[ "$STATUS" -eq 0 ] || fail "wait after the CAR came back: $(cat "$TMP/stderr")"
expect_stdout pushed
jq -e '.documents == 10' "$MNT/t/.ledgerfs/status" >/dev/null ||
	fail "the mount shows $(jq .documents "$MNT/t/.ledgerfs/status") documents, expected 10"
n=$(grep -c "ignored head record $big" "$base/daemon.log")
[ "$n" -eq 2 ] || fail "the daemons logged the 64 KiB record $n times in 2 mounts, not once each"
hwm=$(sed -n 's/^VmHWM:[[:space:]]*\([0-9]*\) kB/\1/p' "/proc/$pid/status")
note "daemon peak RSS beside a 1.5 GiB CAR: $hwm kB"
[ "$hwm" -lt 102400 ] || fail "the daemon used $hwm kB beside a huge CAR"
stop_mount
expect 0 env LEDGERFS_HOME="$C" "$L" fsck t
for i in 1 2 3 4 5 6 7 8 9 10; do
	expect 0 env LEDGERFS_HOME="$C" "$L" get t "d$i"
done
echo "PASS: sync_robust"
