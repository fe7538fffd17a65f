#!/bin/sh
# Replication under faults and against a hostile store:
#  - the store stopped (SIGSTOP), then killed, then back; connections
#    reset (a proxy); packets dropped (an iptables rule on loopback):
#    writes go on locally without hanging, and everything converges;
#  - a daemon killed with SIGKILL in the middle of uploading resumes its
#    outbox on restart;
#  - objects that lie (bytes that don't match their name, a CAR sealed with
#    another key, a head record naming a missing CAR, garbage in a head
#    record) are rejected with a logged reason, nothing of them is applied,
#    and sync goes on.
. "${top_srcdir:-$(dirname "$0")/..}/tests/lib.sh"

[ -e /dev/fuse ] || skip "no /dev/fuse on this machine"
L=$LEDGERFS
base=$(mktemp -d /var/tmp/lfs-faults.XXXXXX)
dav=$base/dav
# A port of its own (and the next for the proxy), so parallel runs on
# one machine do not clash.
export LIGHTTPD_PORT="${LIGHTTPD_PORT:-$(free_ports 2)}"
A=$base/mnt-a
B=$base/mnt-b
mkdir -p "$A" "$B"
pa= pb=
cleanup()
{
	for m in "$A" "$B"; do
		mountpoint -q "$m" && { fusermount3 -u "$m" 2>/dev/null || umount -l "$m"; }
	done
	for p in $pa $pb; do kill "$p" 2>/dev/null; done
	"$top_srcdir/scripts/lighttpd" stop "$dav" >/dev/null 2>&1
	[ -n "${proxy_pid:-}" ] && kill "$proxy_pid" 2>/dev/null
	[ -n "${dropping:-}" ] && iptables -D INPUT -i lo -p tcp \
		--dport "$proxy_port" -j DROP 2>/dev/null
	wait $pa $pb 2>/dev/null
	rm -rf "$base"
}
trap 'cleanup; trap - EXIT; exit 1' INT TERM
trap cleanup EXIT

url=$("$top_srcdir/scripts/lighttpd" start "$dav")
case $? in
0) ;;
77) skip "lighttpd with mod_webdav is not installed" ;;
*) fail "lighttpd did not start" ;;
esac
# The mounts talk to the store through a proxy that can reset
# connections, on a port a firewall rule can drop.
dav_port=${url#http://127.0.0.1:}
dav_port=${dav_port%%/*}
proxy_port=$((LIGHTTPD_PORT + 1))
echo pass >"$base/proxy-mode"
python3 "$top_srcdir/tests/faultproxy.py" "$proxy_port" "$dav_port" \
	"$base/proxy-mode" 600 &
proxy_pid=$!
url=http://127.0.0.1:$proxy_port/faults
lpid=$(cat "$dav"/*.pid 2>/dev/null | head -n 1)
[ -n "$lpid" ] || lpid=$(pgrep -f "lighttpd -f $dav" | head -n 1)
[ -n "$lpid" ] || fail "cannot find lighttpd's pid"

export LEDGERFS_HOME=$base/home-a
"$L" init f >/dev/null || fail "init"
share=$("$L" key export f)
LEDGERFS_HOME=$base/home-b "$L" key import f "$share" >/dev/null || fail "import"

mount_one()
{
	sync_mount "$1" "$2" "$1.log" "$url" 200
}
same_root()
{
	ra=$(jq -r .root "$A/f/.ledgerfs/status") &&
		rb=$(jq -r .root "$B/f/.ledgerfs/status") && [ "$ra" = "$rb" ]
}
mount_one "$base/home-a" "$A"
pa=$sync_pid
mount_one "$base/home-b" "$B"
pb=$sync_pid

# How long a local operation may take while the store is stalled before
# it counts as hung: a request to a store that stops answering is aborted
# after LFS_STORE_LOW_SPEED_S (15 s, src/store.h), so an operation that
# waited on one takes at least that long; one that does not is done in
# milliseconds, even on a saturated machine. The bound sits just below.
# (Dropped packets below are different: a connection attempt gives up
# after LFS_STORE_CONNECT_MS, 5 s, so that is their bound.)
hang=12

note "the store stops answering: local writes go on, nothing hangs"
kill -STOP "$lpid"
for i in 1 2 3 4 5; do
	timeout $hang sh -c "echo '{\"i\": $i}' > '$A/f/stopped$i.json'" ||
		fail "a write hung while the store was stopped"
	timeout $hang cat "$A/f/stopped$i.json" >/dev/null || fail "a read hung"
done
timeout $hang ls "$B/f" >/dev/null || fail "listing hung on B"
timeout $hang cat "$A/f/.ledgerfs/status" >/dev/null || fail "status hung"

note "the store is killed, then comes back: everything converges"
kill -CONT "$lpid"
"$top_srcdir/scripts/lighttpd" stop "$dav" >/dev/null
echo '{"while": "down"}' >"$B/f/down.json" || fail "write while down"
sleep 1
"$top_srcdir/scripts/lighttpd" start "$dav" >/dev/null || fail "restart lighttpd"
retry_for 60 same_root || {
	tail -n 5 "$base/home-a.log" "$base/home-b.log"
	fail "no convergence after the store came back"
}
[ -f "$B/f/stopped5.json" ] && [ -f "$A/f/down.json" ] ||
	fail "a write from the outage is missing"

note "connections reset: local writes go on, then everything converges"
retry_pat="unreachable\|EAGAIN\|will retry"
resets_before=$(grep -c "$retry_pat" "$base/home-a.log" || true)
echo reset >"$base/proxy-mode"
sleep 0.5
for i in 1 2 3; do
	timeout $hang sh -c "echo '{\"i\": $i}' > '$A/f/reset$i.json'" ||
		fail "a write hung while connections were reset"
done
# A round meets a reset: wait for A to say so anew (not a fixed time).
resets_logged()
{
	[ "$(grep -c "$retry_pat" "$base/home-a.log")" -gt "$resets_before" ]
}
retry_for 120 resets_logged || fail "A did not log the resets"
echo pass >"$base/proxy-mode"
retry_for 60 same_root || fail "no convergence after the resets stopped"
[ -f "$B/f/reset3.json" ] || fail "B lacks a document written during resets"

if command -v iptables >/dev/null 2>&1 &&
	iptables -A INPUT -i lo -p tcp --dport "$proxy_port" -j DROP 2>/dev/null; then
	note "a firewall drops the store's traffic: nothing hangs, then convergence"
	dropping=1
	for i in 1 2 3; do
		timeout 5 sh -c "echo '{\"i\": $i}' > '$B/f/drop$i.json'" ||
			fail "a write hung while packets were dropped"
		timeout 5 cat "$A/f/.ledgerfs/status" >/dev/null ||
			fail "status hung while packets were dropped"
	done
	sleep 2
	iptables -D INPUT -i lo -p tcp --dport "$proxy_port" -j DROP
	dropping=
	retry_for 90 same_root || fail "no convergence after the drop ended"
	[ -f "$A/f/drop3.json" ] || fail "A lacks a document written during the drop"
elif [ "${CI:-}" = true ]; then
	fail "iptables cannot drop packets here (scripts/install-deps installs it)"
else
	echo "-- skipped the firewall drop: iptables is not usable here"
fi

note "a daemon killed in the middle of uploading resumes its outbox"
i=0
while [ $i -lt 40 ]; do
	echo "{\"n\": $i}" >"$A/f/burst$i.json"
	i=$((i + 1))
done
kill -9 "$pa"
wait "$pa" 2>/dev/null
pa=
fusermount3 -u "$A" 2>/dev/null || umount -l "$A"
mount_one "$base/home-a" "$A"
pa=$sync_pid
retry_for 60 same_root || fail "no convergence after the restart"
[ "$(ls "$B/f" | grep -c '^burst')" -eq 40 ] ||
	fail "B has $(ls "$B/f" | grep -c '^burst') of the 40 documents"

note "a hostile store: lies are rejected, sync goes on"
root=$dav/root/faults/f
[ -d "$root/car" ] || fail "unexpected store layout: no $root/car"
some=$(ls "$root/car" | head -n 1)
# 1. bytes that don't match their name
fake=bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy
cp "$root/car/$some" "$root/car/$fake"
printf '{"car":{"/":"%s"},"parents":[]}' "$fake" >"$root/head/$fake"
# 2. garbage in a head record
bad2=bafkreiaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa
printf 'this is not json' >"$root/head/$bad2"
# 3. a head record naming a CAR that does not exist
gone=bafkreibbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb
printf '{"car":{"/":"%s"},"parents":[]}' "$gone" >"$root/head/$gone"
# 4. a CAR sealed with another key, under its true name
printf '%s' "$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')" >"$base/other.key"
"$L" car pack "$base/x.car" "$base/other.key" >/dev/null || fail "pack"
other=$("$L" car seal --key "$base/other.key" "$base/x.car" "$root/car") ||
	fail "seal"
other=$(echo "$other" | tail -n 1 | awk '{print $NF}')
printf '{"car":{"/":"%s"},"parents":[]}' "$other" >"$root/head/$other"
# The same lies where mounts look every round: heads/<ledger>~<cid>.
heads=$dav/root/faults/heads
[ -d "$heads" ] || fail "unexpected store layout: no $heads"
for c in "$fake" "$bad2" "$gone" "$other"; do
	cp "$root/head/$c" "$heads/f~$c"
done
echo '{"after": "hostile"}' >"$A/f/after.json"
retry_for 60 test -f "$B/f/after.json" || fail "sync stopped after hostile objects"
retry_for 60 same_root || fail "no convergence beside hostile objects"
for what in "$fake" "$bad2" "$other"; do
	grep -q "$what" "$base/home-b.log" ||
		fail "B did not log why it refused $what"
done
n=$(jq -r .documents "$B/f/.ledgerfs/status")
want=$((47 + 3 + ${dropped_docs:-3}))
[ "$n" -eq "$want" ] || fail "B shows $n documents, expected $want"

fusermount3 -u "$A" && fusermount3 -u "$B" || fail "unmount"
wait $pa $pb 2>/dev/null
pa= pb=
for h in home-a home-b; do
	expect 0 env LEDGERFS_HOME="$base/$h" "$L" fsck f
done
echo "PASS: sync_faults"
