#!/bin/bash
# Where the daemon's log goes when it is asked for syslog (a background
# mount, or --syslog) and nothing listens on /dev/log, as in a container:
# to HOME/ledgerfs.log (mode 0600), named in .ledgerfs/status as "log",
# never lost. And a log line cannot be forged: a newline or an escape in
# a document's name is written escaped.
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
# shellcheck source=tests/fuse_lib.sh
. "${top_srcdir:-$(dirname "$0")/..}/tests/fuse_lib.sh"
fuse_init

if python3 - <<'PY'
import socket, sys
for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
    s = socket.socket(socket.AF_UNIX, kind)
    try:
        s.connect("/dev/log")
        sys.exit(0)
    except OSError:
        pass
sys.exit(1)
PY
then
	skip "a syslog daemon listens on /dev/log here, so the fallback is not used"
fi

L=logs
D=$MNT/$L
LOG=$LFS_HOME/ledgerfs.log

fuse_mount --syslog
bounded mkdir "$D" || fail "mkdir $D"

note "the log goes to $LOG, and status says so"
lfs_status "$L"
where=$(jq -r .log <<<"$LFS_STATUS_JSON")
[ "$where" = "$LOG" ] || fail "status says the log goes to '$where', not $LOG"
[ -f "$LOG" ] || fail "$LOG does not exist"
mode=$(stat -c %a "$LOG")
[ "$mode" = 600 ] || fail "$LOG has mode $mode, not 600"

note "a name with a newline cannot forge a log line"
name=$'evil\nledgerfs error: forged.json'
put_text "$D/$name" '{"_id": "other", "v": 1}'
expect_commits "$L" 1
end=$((SECONDS + 60))
until grep -qF 'evil\nledgerfs error: forged' "$LOG"; do
	[ $SECONDS -lt $end ] || fail "the save of a document named with a newline was not logged escaped: $(tail -5 "$LOG")"
	sleep 0.05
done
if grep -q '^ledgerfs error: forged' "$LOG"; then
	fail "a document name forged a line in the log"
fi
if grep -q $'\x1b' "$LOG"; then
	fail "the log holds an escape character"
fi
grep -q 'ledgerfs ' "$LOG" || fail "the log holds no ledgerfs lines"

fuse_umount
note "ok"
