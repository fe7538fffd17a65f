#!/bin/sh
# Mounts that hear of each other's commits through Redis (--meta), with the
# store on a real S3 (Ceph radosgw): three mounts through Redis and one
# polling only, all of one ledger. Prints the propagation delay through
# Redis beside the polling one (a benchmark: printed, not asserted), then
# checks that Redis stopped (SIGSTOP), killed, restarted empty, fed garbage
# heads and message floods while writers run loses nothing: the mounts say
# "meta: unreachable, polling the store", go on through the store, and
# converge; and that Redis holds ledger names and head CIDs only.
#   SAMPLES        propagation samples (default 12: each arrives, is the
#                  test; SAMPLES=60 gives the figures docs/META.md cites)
. "${top_srcdir:-$(dirname "$0")/..}/tests/lib.sh"

[ -e /dev/fuse ] || skip "no /dev/fuse on this machine"
[ "$(id -u)" -eq 0 ] || command -v fusermount3 >/dev/null ||
	skip "needs root or fusermount3"
need redis-server redis-cli jq python3
command -v radosgw >/dev/null 2>&1 ||
	skip "radosgw is not installed (scripts/install-deps installs it)"

L=$LEDGERFS
base=$(mktemp -d /var/tmp/lfs-redis.XXXXXX)
# Ports of their own, below the ephemeral range (tests/lib.sh).
[ -n "${RGW_PORT:-}" ] || RGW_PORT=$(free_ports 3)
export RGW_PORT
export MON_PORT="${MON_PORT:-$((RGW_PORT + 1))}"
export REDIS_PORT="${REDIS_PORT:-$((RGW_PORT + 2))}"
rgw=$base/rgw
red=$base/redis
A=$base/mnt-a B=$base/mnt-b C=$base/mnt-c D=$base/mnt-d
mkdir -p "$A" "$B" "$C" "$D"
pids=
cleanup()
{
	[ -f "$red/redis.pid" ] && kill -CONT "$(cat "$red/redis.pid")" 2>/dev/null
	for m in "$A" "$B" "$C" "$D"; do
		mountpoint -q "$m" && { fusermount3 -u "$m" 2>/dev/null || umount -l "$m"; }
	done
	for p in $pids; do kill "$p" 2>/dev/null; done
	wait 2>/dev/null
	"$top_srcdir/scripts/redis" stop "$red" >/dev/null 2>&1
	"$top_srcdir/scripts/redis" stop "$base/redis2" >/dev/null 2>&1
	"$top_srcdir/scripts/radosgw" stop "$rgw" >/dev/null 2>&1
	rm -rf "$base"
}
trap cleanup EXIT INT TERM

env=$("$top_srcdir/scripts/radosgw" start "$rgw") || fail "radosgw did not start"
set -a
eval "$env"
set +a
"$top_srcdir/scripts/radosgw" mkbucket "$rgw" sync >/dev/null || fail "mkbucket"
"$top_srcdir/scripts/redis" start "$red" >/dev/null || fail "redis did not start"
url="s3://sync/r?endpoint=$LEDGERFS_S3_ENDPOINT"
meta="redis://127.0.0.1:$REDIS_PORT/0"
rcli()
{
	timeout 10 redis-cli -p "$REDIS_PORT" "$@"
}
rpid()
{
	cat "$red/redis.pid"
}

export LEDGERFS_HOME=$base/home-a
"$L" init shared >/dev/null || fail "init"
share=$("$L" key export shared) || fail "key export"
for h in b c d; do
	LEDGERFS_HOME=$base/home-$h "$L" key import shared "$share" >/dev/null ||
		fail "key import"
done

# mount_one HOME MOUNTPOINT [--meta URL]
mount_one()
{
	_h=$1 _m=$2
	shift 2
	sync_mount "$_h" "$_m" "$_h.log" "$url" 1000 "$@"
	pids="$pids $sync_pid"
}
meta_is()
{
	[ "$(jq -r .sync.meta "$1/shared/.ledgerfs/status")" = "$2" ]
}
root()
{
	jq -r .root "$1/shared/.ledgerfs/status"
}
all_same()
{
	_r=$(root "$A") && [ -n "$_r" ] && [ "$(root "$B")" = "$_r" ] &&
		[ "$(root "$C")" = "$_r" ] && [ "$(root "$D")" = "$_r" ]
}
converge()
{
	retry_for 60 all_same || {
		for m in "$A" "$B" "$C" "$D"; do
			jq -c '{root, sync}' "$m/shared/.ledgerfs/status"
		done
		tail -n 5 "$base"/home-*.log
		fail "the mounts did not converge: $1"
	}
}
# writer MOUNT PREFIX N: N documents, one every 50 ms.
writer()
{
	_i=0
	while [ $_i -lt "$3" ]; do
		echo "{\"n\": $_i}" >"$1/shared/$2$_i.json" || return 1
		_i=$((_i + 1))
		sleep 0.05
	done
}
count()
{
	ls "$1/shared" | grep -c "^$2[0-9]*\.json$"
}

mount_one "$base/home-a" "$A" --meta "$meta"
mount_one "$base/home-b" "$B" --meta "$meta"
mount_one "$base/home-c" "$C"
mount_one "$base/home-d" "$D" --meta "$meta"
for m in "$A" "$B" "$D"; do
	retry_for 60 meta_is "$m" live || fail "$m: meta is $(jq -r .sync.meta "$m/shared/.ledgerfs/status")"
done
meta_is "$C" "the store" || fail "C (no --meta) says meta: $(jq -r .sync.meta "$C/shared/.ledgerfs/status")"

note "propagation from A: to B and D through Redis, to C by polling (--poll-ms 1000)"
echo '{"warm": true}' >"$A/shared/prop.json"
converge "first write"
python3 "$top_srcdir/tests/propagation.py" "${SAMPLES:-12}" "$A/shared" \
	"redis-B=$B/shared" "redis-D=$D/shared" "polling-C=$C/shared" ||
	fail "a sample did not arrive"

note "three mounts through Redis: concurrent writes converge"
writer "$A" ca 20 &
w1=$!
writer "$B" cb 20 &
w2=$!
writer "$D" cd 20 &
w3=$!
wait $w1 $w2 $w3 || fail "a writer failed"
converge "concurrent writes"
for m in "$A" "$B" "$C" "$D"; do
	for p in ca cb cd; do
		[ "$(count "$m" $p)" -eq 20 ] || fail "$m has $(count "$m" $p) of the 20 $p documents"
	done
done

note "what Redis holds: ledger names and head CIDs, nothing else"
keys=$(rcli --scan) || fail "redis-cli --scan"
[ "$(echo "$keys" | wc -l)" -eq 1 ] || fail "Redis holds more than one key: $keys"
rcli SMEMBERS "$keys" >"$base/members"
[ -s "$base/members" ] || fail "no head in Redis"
grep -qv '^shared b[a-z2-7]\{58\}$' "$base/members" &&
	fail "a member is not '<ledger> <cid>': $(grep -v '^shared b' "$base/members" | head -n 3)"
chan=$(rcli PUBSUB CHANNELS 'ledgerfs:*')
[ "$chan" = "$keys" ] || fail "channel '$chan' is not the set's name '$keys'"
[ "$keys" = "ledgerfs:s3://sync/r:heads" ] || fail "the name does not say the store: $keys"
echo "$keys" | grep -q "$AWS_SECRET_ACCESS_KEY" && fail "a secret in Redis's key names"

note "Redis stopped (SIGSTOP) while writers run: the store carries on"
kill -STOP "$(rpid)"
writer "$A" sa 30 &
w1=$!
writer "$D" sd 30 &
w2=$!
retry_for 60 meta_is "$B" "unreachable, polling the store" ||
	fail "B says meta: $(jq -r .sync.meta "$B/shared/.ledgerfs/status") while Redis is stopped"
wait $w1 $w2 || fail "a writer failed while Redis was stopped"
converge "Redis stopped"
kill -CONT "$(rpid)"
for m in "$A" "$B" "$D"; do
	retry_for 60 meta_is "$m" live || fail "$m did not go live again after SIGCONT"
done
grep -q "unreachable, polling the store\|unreachable (" "$base/home-b.log" ||
	fail "B did not log that Redis was unreachable"

note "Redis killed, then restarted empty, while writers run"
kill -9 "$(rpid)"
writer "$A" ka 30 &
w1=$!
writer "$B" kb 30 &
w2=$!
retry_for 60 meta_is "$D" "unreachable, polling the store" || fail "D did not notice Redis gone"
rm -f "$red/redis.pid"
"$top_srcdir/scripts/redis" start "$red" >/dev/null || fail "redis did not restart"
wait $w1 $w2 || fail "a writer failed while Redis was down"
for m in "$A" "$B" "$D"; do
	retry_for 60 meta_is "$m" live || fail "$m did not go live after the restart"
done
converge "Redis restarted empty"
echo '{"after": "restart"}' >"$A/shared/after-restart.json"
converge "a write after the restart"

note "lies and floods: garbage heads and messages, unknown CIDs, a flood"
name=$(rcli PUBSUB CHANNELS 'ledgerfs:*')
[ -n "$name" ] || fail "nobody subscribes after the restart"
fake=bafkreibbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb
rcli SADD "$name" "garbage" "shared $fake" "../x y z" >/dev/null
rcli PUBLISH "$name" "not an announcement" >/dev/null
rcli PUBLISH "$name" "1 shared $fake" >/dev/null
rcli PUBLISH "$name" "1 nosuchledger $fake" >/dev/null
rcli PUBLISH "$name" "1 shared $fake $fake $fake junk" >/dev/null
writer "$A" fa 30 &
w1=$!
writer "$D" fd 30 &
w2=$!
# A flood: 20000 announcements of CIDs that do not exist, and 200
# messages of 64 KiB, pipelined.
python3 - "$name" >"$base/flood" <<'PY'
import hashlib, base64, sys
name = sys.argv[1].encode()
def cmd(*args):
    out = b"*%d\r\n" % len(args)
    for a in args:
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    return out
buf = []
for i in range(20000):
    d = hashlib.sha256(b"flood%d" % i).digest()
    cid = "b" + base64.b32encode(bytes([1, 0x55, 0x12, 0x20]) + d).decode().lower().rstrip("=")
    buf.append(cmd(b"PUBLISH", name, b"1 shared " + cid.encode()))
for i in range(200):
    buf.append(cmd(b"PUBLISH", name, b"x" * 65536))
sys.stdout.buffer.write(b"".join(buf))
PY
timeout 60 redis-cli -p "$REDIS_PORT" --pipe <"$base/flood" >/dev/null ||
	fail "the flood could not be sent"
wait $w1 $w2 || fail "a writer failed during the flood"
converge "garbage and floods"
for m in "$A" "$B" "$C" "$D"; do
	for p in ca cb cd sa sd ka kb fa fd; do
		want=30
		case $p in c?) want=20 ;; esac
		[ "$(count "$m" $p)" -eq $want ] ||
			fail "$m has $(count "$m" $p) of the $want $p documents"
	done
done
grep -q "not an announcement" "$base/home-b.log" ||
	fail "B did not log the garbage message"
for m in "$A" "$B" "$D"; do
	retry_for 60 meta_is "$m" live || fail "$m is not live after the flood"
	st=$(jq -r .sync.state "$m/shared/.ledgerfs/status")
	[ "$st" = synced ] || retry_for 60 sh -c "[ \"\$(jq -r .sync.state '$m/shared/.ledgerfs/status')\" = synced ]" ||
		fail "$m: sync state $(jq -c .sync "$m/shared/.ledgerfs/status") after the lies"
done
echo '{"after": "flood"}' >"$D/shared/after-flood.json"
converge "a write after the flood"

note "unmount while Redis is stopped: no hang"
kill -STOP "$(rpid)"
echo '{"last": true}' >"$A/shared/last.json"
start=$(date +%s)
for m in "$A" "$B" "$C" "$D"; do
	timeout 60 fusermount3 -u "$m" || fail "unmounting $m hung or failed"
done
for p in $pids; do
	t=600
	while kill -0 "$p" 2>/dev/null; do
		t=$((t - 1))
		[ $t -gt 0 ] || fail "daemon $p still runs 60 s after unmount with Redis stopped"
		sleep 0.1
	done
done
note "four unmounts with Redis stopped took $(($(date +%s) - start)) s"
kill -CONT "$(rpid)"
pids=
for h in a b c d; do
	expect 0 env LEDGERFS_HOME="$base/home-$h" "$L" fsck shared
done
grep -i "password\|$AWS_SECRET_ACCESS_KEY" "$base"/home-*.log &&
	fail "a credential in a log"

note "a Redis that wants a password: AUTH from the environment or the URL, never shown"
pw=s3cret-test-pw-$$
red2=$base/redis2
REDIS_PORT=$((REDIS_PORT + 1)) REDIS_PASSWORD=$pw "$top_srcdir/scripts/redis" start "$red2" >/dev/null ||
	fail "the second redis did not start"
meta2=redis://127.0.0.1:$((REDIS_PORT + 1))/0
members2()
{
	REDISCLI_AUTH=$pw timeout 10 redis-cli -p $((REDIS_PORT + 1)) SMEMBERS "ledgerfs:s3://sync/r:heads"
}
echo '{"auth": 1}' | "$L" put shared auth1 >/dev/null || fail "put"
run env LEDGERFS_REDIS_PASSWORD=wrong-$pw "$L" sync --remote "$url" --meta "$meta2"
[ "$STATUS" -eq 0 ] || fail "sync with a wrong Redis password exited $STATUS: $(cat "$TMP/stderr")"
expect_stderr "AUTH refused"
grep -q "$pw" "$TMP/stderr" "$TMP/stdout" && fail "the password was printed"
[ -z "$(members2)" ] || fail "announced with a wrong password"
echo '{"auth": 2}' | "$L" put shared auth2 >/dev/null || fail "put"
run env LEDGERFS_REDIS_PASSWORD=$pw "$L" sync --remote "$url" --meta "$meta2"
[ "$STATUS" -eq 0 ] || fail "sync with the Redis password exited $STATUS: $(cat "$TMP/stderr")"
members2 | grep -q "^shared b" || fail "nothing announced with the password from the environment"
echo '{"auth": 3}' | "$L" put shared auth3 >/dev/null || fail "put"
run "$L" sync --remote "$url" --meta "redis://:$pw@127.0.0.1:$((REDIS_PORT + 1))/0"
[ "$STATUS" -eq 0 ] || fail "sync with the password in the URL exited $STATUS"
grep -q "$pw" "$TMP/stderr" "$TMP/stdout" && fail "the password in the URL was printed"
[ "$(members2 | wc -l)" -ge 1 ] || fail "nothing announced with the password in the URL"
"$top_srcdir/scripts/redis" stop "$red2" >/dev/null
echo "PASS: sync_redis"
