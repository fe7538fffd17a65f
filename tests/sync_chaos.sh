#!/bin/sh
# Chaos: three mounts of one ledger replicating through a real S3 (Ceph
# radosgw, started here), one of them through a fault-injecting proxy;
# random writers on all three while radosgw is stopped and resumed, the
# proxy stalls and resets connections, daemons are SIGKILLed and mounted
# again, and `ledgerfs sync` runs on a mount's home beside it. Then:
# identical trees and heads everywhere, every acknowledged write of a
# single-writer document kept (or superseded by its writer), no
# acknowledged delete undone, no conflicts for single-writer documents,
# fsck clean, no plaintext or key bytes in the bucket.
# tests/chaos_driver.py does the work and describes every check.
#
#   CHAOS_SEED       the seed (default: random; printed at start)
#   CHAOS_SECONDS    seconds of faults (default 90: about 3 minutes in all)
#   CHAOS_CONVERGE_SECONDS   how long convergence may take (default 300)
#   CHAOS_POLL_MS    the mounts' --poll-ms (default 400)
#   CHAOS_FAULTS     the fault kinds, comma-separated (default all:
#                    store_stop,proxy_stall,proxy_reset,kill,cli_sync, and
#                    with CHAOS_META=redis also redis_stop,redis_kill;
#                    none: none)
#   CHAOS_META=redis the mounts also use a Redis endpoint (--meta), started
#                    here (scripts/redis), which the faults stop and kill
#   CHAOS_EVIDENCE   on failure, copy the logs (daemons', writers' operation
#                    logs, control files, the diff) into this directory
#                    (default /var/tmp/lfs-chaos-evidence-SEED; empty: don't)
#   CHAOS_SELFTEST=1 check the checks: plant bugs (a rolled-back document,
#                    a scratch file, plaintext in the bucket) after the
#                    faults; pass only if the checks catch every one
#   KEEP_TMP=1       keep the work directory
# scripts/chaos runs this for longer: scripts/chaos --minutes N [--seed S].
. "${top_srcdir:-$(dirname "$0")/..}/tests/lib.sh"

CHAOS_SEED=${CHAOS_SEED:-$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')}
CHAOS_SECONDS=${CHAOS_SECONDS:-90}
case $CHAOS_SEED$CHAOS_SECONDS${CHAOS_CONVERGE_SECONDS:-} in
*[!0-9]*) hard_error "CHAOS_SEED, CHAOS_SECONDS and CHAOS_CONVERGE_SECONDS must be numbers" ;;
esac
replay=${CHAOS_REPLAY:-"CHAOS_SEED=$CHAOS_SEED CHAOS_SECONDS=$CHAOS_SECONDS${CHAOS_FAULTS:+ CHAOS_FAULTS=$CHAOS_FAULTS}${CHAOS_META:+ CHAOS_META=$CHAOS_META} tests/sync_chaos.sh"}
echo "chaos: seed $CHAOS_SEED (replay: $replay)"

[ "$(uname -s)" = Linux ] || skip "FUSE tests run on Linux only"
[ -c /dev/fuse ] || skip "no /dev/fuse on this machine"
[ "$(id -u)" -eq 0 ] || skip "the chaos test runs as root (it signals radosgw and mounts)"
command -v radosgw >/dev/null 2>&1 ||
	skip "radosgw is not installed (scripts/install-deps installs it)"
need fusermount3 python3 diff timeout curl od
case ${CHAOS_META:-} in
'' | redis) ;;
*) hard_error "CHAOS_META is redis or empty, not '$CHAOS_META'" ;;
esac
[ -z "${CHAOS_META:-}" ] || need redis-server redis-cli

base=$(mktemp -d /var/tmp/lfs-chaos.XXXXXX) || hard_error "mktemp"
rgwdir=$base/rgw
driver=
cleanup()
{
	# Stopped early (a signal): ask the driver to clean up (it unmounts,
	# stops what it started) and give it a while.
	if [ -n "$driver" ] && kill -0 "$driver" 2>/dev/null; then
		kill -TERM "$driver" 2>/dev/null
		_i=0
		while kill -0 "$driver" 2>/dev/null && [ $_i -lt 600 ]; do
			sleep 0.1
			_i=$((_i + 1))
		done
	fi
	# The driver cleans up after itself; this is for a driver that was
	# killed: unmount what is mounted under $base, kill what it started.
	for m in "$base"/mnt-*; do
		[ -d "$m" ] || continue
		if mountpoint -q "$m" 2>/dev/null; then
			fusermount3 -u -z "$m" 2>/dev/null || umount -l "$m" 2>/dev/null
		fi
	done
	if [ -f "$base/pids" ]; then
		while read -r p; do
			kill -KILL "$p" 2>/dev/null
		done <"$base/pids"
	fi
	"$top_srcdir/scripts/radosgw" stop "$rgwdir" >/dev/null 2>&1
	"$top_srcdir/scripts/redis" stop "$base/redis" >/dev/null 2>&1
	if [ "${KEEP_TMP:-0}" = 1 ]; then
		echo "kept $base" >&2
	else
		rm -rf "$base"
	fi
	_lib_cleanup
}
trap cleanup EXIT

# Ports of its own, so parallel runs on one machine do not clash; another
# pair on a clash.
started=
for try in 1 2 3 4; do
	RGW_PORT=$(free_ports 3) # below the ephemeral range (tests/lib.sh)
	MON_PORT=$((RGW_PORT + 2))
	export RGW_PORT MON_PORT
	if env=$("$top_srcdir/scripts/radosgw" start "$rgwdir" 2>"$base/rgw-start.err"); then
		started=1
		break
	fi
	echo "chaos: radosgw did not start on port $RGW_PORT: $(tail -n 2 "$base/rgw-start.err")" >&2
done
[ -n "$started" ] || hard_error "radosgw did not start (4 tries)"
set -a
eval "$env"
set +a
"$top_srcdir/scripts/radosgw" mkbucket "$rgwdir" chaos >/dev/null ||
	hard_error "cannot create the bucket"
rgw_pid=$(cat "$rgwdir/run/client.rgw.test.pid") || hard_error "no radosgw pid file"
meta=
# cli_sync: `ledgerfs sync` on a mount's home beside it, SIGKILLed partway
# now and then (several processes on one home).
faults=${CHAOS_FAULTS:-store_stop,proxy_stall,proxy_reset,kill,cli_sync}
if [ -n "${CHAOS_META:-}" ]; then
	REDIS_PORT=$((RGW_PORT + 1)) "$top_srcdir/scripts/redis" start "$base/redis" >/dev/null ||
		hard_error "redis-server did not start"
	meta=redis://127.0.0.1:$((RGW_PORT + 1))/0
	[ -n "${CHAOS_FAULTS:-}" ] || faults=$faults,redis_stop,redis_kill
fi

# In the background, so a signal to this shell is handled at once (the
# trap stops the driver) rather than when the driver is done.
converge=${CHAOS_CONVERGE_SECONDS:-300}
timeout -k 30 $((CHAOS_SECONDS + converge + 1200)) python3 "$top_srcdir/tests/chaos_driver.py" run \
	--ledgerfs "$LEDGERFS" --srcdir "$top_srcdir" --base "$base" \
	--endpoint "$LEDGERFS_S3_ENDPOINT" --rgw-pid "$rgw_pid" --bucket chaos \
	--seed "$CHAOS_SEED" --seconds "$CHAOS_SECONDS" \
	--converge-seconds "$converge" \
	--poll-ms "${CHAOS_POLL_MS:-400}" \
	--faults "$faults" ${meta:+--meta "$meta" --redis-dir "$base/redis"} \
	--evidence "${CHAOS_EVIDENCE-/var/tmp/lfs-chaos-evidence-$CHAOS_SEED}" \
	--replay "$replay" \
	${CHAOS_SELFTEST:+--selftest} &
driver=$!
st=0
wait "$driver" || st=$?
driver=
case $st in
0) echo "PASS: sync_chaos (seed $CHAOS_SEED)" ;;
124 | 137) fail "the chaos driver ran over its time limit (seed $CHAOS_SEED; replay: $replay)" ;;
*) fail "sync_chaos (seed $CHAOS_SEED; replay: $replay)" ;;
esac
