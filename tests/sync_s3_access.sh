#!/bin/sh
# Wrong S3 credentials against a real S3 server (Ceph radosgw, started
# here): .ledgerfs/wait fails at once with "Permission denied" instead of
# timing out after 60 s, status says "access refused" while the outbox is
# counted, `ledgerfs sync` says so too; with the right key everything is
# pushed.
. "${top_srcdir:-$(dirname "$0")/..}/tests/lib.sh"

[ -e /dev/fuse ] || skip "no /dev/fuse on this machine"
command -v fusermount3 >/dev/null || skip "no fusermount3"
command -v radosgw >/dev/null 2>&1 ||
	skip "radosgw is not installed (scripts/install-deps installs it)"
need jq
L=$LEDGERFS
dir=$(mktemp -d /var/tmp/lfs-rgw-access.XXXXXX)
MNT=$dir/mnt
mkdir -p "$MNT"
pid=
# Ports of their own, below the ephemeral range (tests/lib.sh).
[ -n "${RGW_PORT:-}" ] || RGW_PORT=$(free_ports 2)
export RGW_PORT
export MON_PORT="${MON_PORT:-$((RGW_PORT + 1))}"
cleanup()
{
	mountpoint -q "$MNT" && { fusermount3 -u "$MNT" 2>/dev/null || umount -l "$MNT"; }
	[ -n "$pid" ] && kill "$pid" 2>/dev/null
	wait 2>/dev/null
	"$top_srcdir/scripts/radosgw" stop "$dir" >/dev/null 2>&1
	rm -rf "$dir"
}
trap 'cleanup; trap - EXIT; exit 1' INT TERM
trap cleanup EXIT
env=$("$top_srcdir/scripts/radosgw" start "$dir") || fail "radosgw did not start"
set -a
eval "$env"
set +a
"$top_srcdir/scripts/radosgw" mkbucket "$dir" access >/dev/null || fail "mkbucket"
url="s3://access/x?endpoint=$LEDGERFS_S3_ENDPOINT"
right=$AWS_SECRET_ACCESS_KEY

export LEDGERFS_HOME="$dir/home"
"$L" init t >/dev/null || fail "init"
echo '{"a": 1}' | "$L" put t a >/dev/null || fail "put"

note "a mount with a wrong secret: wait reports the access error at once"
AWS_SECRET_ACCESS_KEY=wrong-secret
sync_mount "$LEDGERFS_HOME" "$MNT" "$dir/daemon.log" "$url" 200
pid=$sync_pid
AWS_SECRET_ACCESS_KEY=$right
echo '{"b": 2}' >"$MNT/t/b.json" || fail "write"
t0=$(date +%s)
run timeout 120 cat "$MNT/t/.ledgerfs/wait"
took=$(($(date +%s) - t0))
note "wait answered after $took s: $(cat "$TMP/stderr")"
[ "$STATUS" -ne 0 ] || fail "wait succeeded with a wrong secret"
expect_stderr "Permission denied"
[ "$took" -lt 30 ] || fail "wait took $took s to report the access error"
_t=600
until jq -e '.sync.state == "failing" and .sync.pending_uploads == 2 and
	(.sync.last_error | test("access refused"))' \
	"$MNT/t/.ledgerfs/status" >/dev/null 2>&1; do
	_t=$((_t - 1))
	[ $_t -gt 0 ] || fail "status with a wrong secret: $(cat "$MNT/t/.ledgerfs/status")"
	sleep 0.2
done
grep -q "credentials refused" "$dir/daemon.log" ||
	fail "the daemon did not log why: $(tail -n 5 "$dir/daemon.log")"
fusermount3 -u "$MNT" || fail "unmount"
wait "$pid" || fail "the daemon exited with $?"
pid=

note "ledgerfs sync with a wrong secret, then the right one"
run env AWS_SECRET_ACCESS_KEY=wrong-secret timeout 120 "$L" sync --remote "$url" t
[ "$STATUS" -eq 1 ] || fail "sync with a wrong secret exited $STATUS"
expect_stderr "access refused"
run env AWS_SECRET_ACCESS_KEY="$right" timeout 120 "$L" sync --remote "$url" --json t
[ "$STATUS" -eq 0 ] || fail "sync with the right secret: $(cat "$TMP/stderr")"
jq -e '.t.state == "synced" and .t.pending_uploads == 0' "$TMP/stdout" \
	>/dev/null || fail "status after the right secret: $(cat "$TMP/stdout")"
echo "PASS: sync_s3_access"
