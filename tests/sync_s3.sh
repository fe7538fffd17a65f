#!/bin/sh
# Two mounts replicating through a real S3 server (Ceph radosgw, started
# here): tests/sync_mounts.sh with an s3:// store.
. "${top_srcdir:-$(dirname "$0")/..}/tests/lib.sh"

command -v radosgw >/dev/null 2>&1 ||
	skip "radosgw is not installed (scripts/install-deps installs it)"
dir=$(mktemp -d /var/tmp/lfs-rgw.XXXXXX)
# Ports of their own, below the ephemeral range (tests/lib.sh).
[ -n "${RGW_PORT:-}" ] || RGW_PORT=$(free_ports 2)
export RGW_PORT
export MON_PORT="${MON_PORT:-$((RGW_PORT + 1))}"
trap '"$top_srcdir/scripts/radosgw" stop "$dir" >/dev/null 2>&1; rm -rf "$dir"' EXIT INT TERM
env=$("$top_srcdir/scripts/radosgw" start "$dir") || fail "radosgw did not start"
set -a
eval "$env"
set +a
"$top_srcdir/scripts/radosgw" mkbucket "$dir" sync >/dev/null || fail "mkbucket"
LFS_SYNC_URL="s3://sync/replicas?endpoint=$LEDGERFS_S3_ENDPOINT" \
	sh "$top_srcdir/tests/sync_mounts.sh" || fail "sync through radosgw"
