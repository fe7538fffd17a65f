#!/bin/sh
# Two mounts replicating through a WebDAV server (lighttpd, started here):
# tests/sync_mounts.sh with an http:// store.
. "${top_srcdir:-$(dirname "$0")/..}/tests/lib.sh"

dir=$(mktemp -d /var/tmp/lfs-dav.XXXXXX)
# A port of its own, so parallel runs on one machine do not clash.
export LIGHTTPD_PORT="${LIGHTTPD_PORT:-$(free_ports 1)}"
trap '"$top_srcdir/scripts/lighttpd" stop "$dir" >/dev/null 2>&1; rm -rf "$dir"' EXIT INT TERM
url=$("$top_srcdir/scripts/lighttpd" start "$dir")
case $? in
0) ;;
77) skip "lighttpd with mod_webdav is not installed" ;;
*) fail "lighttpd did not start" ;;
esac
LFS_SYNC_URL="${url%/}/replicas" sh "$top_srcdir/tests/sync_mounts.sh" ||
	fail "sync through lighttpd"
