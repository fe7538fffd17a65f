#!/bin/sh
# Status and stops that tell the truth against WebDAV stores (lighttpd,
# started here) that are down, refuse us, hang or trickle:
#  - the store down: pending_uploads counts the outbox, then drains;
#  - wrong credentials: .ledgerfs/wait fails at once with "Permission
#    denied" (not a timeout after 60 s), status says "access refused";
#  - the store stopped (SIGSTOP) with a request in flight: the daemon
#    exits within 5 s of fusermount3 -u;
#  - a store that trickles 2 KiB/s forever: `ledgerfs sync` gives up within
#    the request deadline, and unmount still takes under 5 s;
#  - a CAR of 1.5 GiB (sparse) served with its length: rejected before it
#    is read; `ledgerfs sync` stays under 100 MB.
. "${top_srcdir:-$(dirname "$0")/..}/tests/lib.sh"

[ -e /dev/fuse ] || skip "no /dev/fuse on this machine"
command -v fusermount3 >/dev/null || skip "no fusermount3"
need python3 jq ss truncate
L=$LEDGERFS
base=$(mktemp -d /var/tmp/lfs-stalls.XXXXXX)
# Ports of their own (lighttpd, lighttpd with auth), so parallel runs on
# one machine do not clash; the trickling server takes a free one.
port=$(free_ports 2)
MNT=$base/mnt
mkdir -p "$MNT"
pid=
lpid=
cleanup()
{
	[ -n "$lpid" ] && kill -CONT "$lpid" 2>/dev/null
	mountpoint -q "$MNT" && { fusermount3 -u "$MNT" 2>/dev/null || umount -l "$MNT"; }
	[ -n "$pid" ] && kill "$pid" 2>/dev/null
	[ -n "${tpid:-}" ] && kill "$tpid" 2>/dev/null
	[ -n "${ppid:-}" ] && kill "$ppid" 2>/dev/null
	LIGHTTPD_PORT=$port "$top_srcdir/scripts/lighttpd" stop "$base/dav" >/dev/null 2>&1
	"$top_srcdir/scripts/lighttpd" stop "$base/dav-auth" >/dev/null 2>&1
	wait 2>/dev/null
	rm -rf "$base"
}
trap 'cleanup; trap - EXIT; exit 1' INT TERM
trap cleanup EXIT

dav_start()
{
	LIGHTTPD_PORT=$port "$top_srcdir/scripts/lighttpd" start "$base/dav"
	case $? in
	0) ;;
	77) skip "lighttpd with mod_webdav is not installed" ;;
	*) fail "lighttpd did not start" ;;
	esac
}
url=$(dav_start) || exit $?
url=${url%/}/s

# mount_home HOME URL: mount HOME at $MNT with remote URL; $pid is the daemon.
mount_home()
{
	sync_mount "$1" "$MNT" "$base/daemon.log" "$2" 200
	pid=$sync_pid
}
# unmount_within S: fusermount3 -u, then the daemon must exit within S s.
unmount_within()
{
	_t0=$(date +%s%N)
	fusermount3 -u "$MNT" || fail "fusermount3 -u failed"
	while kill -0 "$pid" 2>/dev/null; do
		_ms=$((($(date +%s%N) - _t0) / 1000000))
		[ "$_ms" -lt $(($1 * 1000)) ] || {
			kill -9 "$pid"
			fail "the daemon was still running $1 s after unmount: $(tail -n 5 "$base/daemon.log")"
		}
		sleep 0.05
	done
	wait "$pid" 2>/dev/null
	pid=
	note "the daemon exited $(($(date +%s%N) / 1000000 - _t0 / 1000000)) ms after unmount"
}
# wait_status JQ: poll the mount's status of ledger t until jq -e JQ
# holds (120 s at most).
wait_status()
{
	_t=600
	until jq -e "$1" "$MNT/t/.ledgerfs/status" >/dev/null 2>&1; do
		_t=$((_t - 1))
		[ $_t -gt 0 ] || fail "status never satisfied $1: $(cat "$MNT/t/.ledgerfs/status")"
		sleep 0.2
	done
}

H=$base/home
export LEDGERFS_HOME="$H"
"$L" init t >/dev/null || fail "init"

note "the store is down: pending_uploads counts the outbox, then drains"
mount_home "$H" "$url"
echo '{"first": true}' >"$MNT/t/first.json" || fail "write"
timeout 120 cat "$MNT/t/.ledgerfs/wait" | grep -q pushed || fail "first push"
LIGHTTPD_PORT=$port "$top_srcdir/scripts/lighttpd" stop "$base/dav" >/dev/null
i=0
while [ $i -lt 20 ]; do
	i=$((i + 1))
	echo "{\"offline\": $i}" >"$MNT/t/off$i.json" || fail "write while down"
	# A commit each (saves that come together fold into one: reading
	# the status folds what is staged), so 20 CAR files wait.
	cat "$MNT/t/.ledgerfs/status" >/dev/null || fail "status"
done
wait_status '.sync.pending_uploads == 20 and .sync.state == "failing"'
jq -e '.sync.last_error | test("unreachable")' "$MNT/t/.ledgerfs/status" \
	>/dev/null || fail "status while down: $(cat "$MNT/t/.ledgerfs/status")"
dav_start >/dev/null
wait_status '.sync.pending_uploads == 0 and .sync.state == "synced"'
timeout 120 cat "$MNT/t/.ledgerfs/wait" | grep -q pushed ||
	fail "wait after the store came back"

note "the store stopped with a request in flight: unmount within 5 s"
lpid=$(cat "$base/dav/lighttpd.pid")
kill -STOP "$lpid"
echo '{"stalled": true}' >"$MNT/t/stalled.json" || fail "write while stopped"
# A request is in flight once the stopped server holds unread bytes.
_t=600
until ss -Htn state established "( sport = :$port )" |
	awk '$1 > 0 { found = 1 } END { exit !found }'; do
	_t=$((_t - 1))
	[ $_t -gt 0 ] || fail "no request reached the stopped server"
	sleep 0.2
done
unmount_within 5
kill -CONT "$lpid"
lpid=
expect 0 timeout 120 "$L" sync --remote "$url" t

note "connections reset while a fresh replica catches up: it converges"
# An HTTP proxy in front of lighttpd that resets the connection of the
# N-th to M-th CAR GETs counted since $base/plan last changed ("N M").
cat >"$base/proxy.py" <<'EOF'
import http.client, http.server, os, socket, struct, sys, threading
port_file, target, plan_file = sys.argv[1], int(sys.argv[2]), sys.argv[3]
lock = threading.Lock()
state = {"plan": None, "n": 0}


def plan():
    try:
        with open(plan_file) as f:
            return f.read().split()
    except OSError:
        return []


class Proxy(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def any(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else None
        if self.command == "GET" and "/car/" in self.path:
            with lock:
                p = plan()
                if p != state["plan"]:
                    state["plan"], state["n"] = p, 0
                state["n"] += 1
                k = state["n"]
            if len(p) == 2 and int(p[0]) <= k <= int(p[1]):
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                           struct.pack("ii", 1, 0))
                self.close_connection = True
                self.connection.close()
                return
        c = http.client.HTTPConnection("127.0.0.1", target, timeout=60)
        hdrs = {k: v for k, v in self.headers.items()
                if k.lower() not in ("host", "connection", "content-length")}
        c.request(self.command, self.path, body=body, headers=hdrs)
        r = c.getresponse()
        data = r.read()
        self.send_response(r.status, r.reason)
        for k, v in r.getheaders():
            if k.lower() not in ("transfer-encoding", "connection",
                                 "content-length", "date", "server"):
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        c.close()

    do_GET = do_PUT = do_DELETE = do_PROPFIND = do_MKCOL = any

    def finish(self):
        try:
            super().finish()
        except OSError:
            pass

    def log_message(self, *args):
        pass


http.server.ThreadingHTTPServer.daemon_threads = True
srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Proxy)
with open(port_file + ".tmp", "w") as f:
    f.write("%d\n" % srv.server_address[1])
os.rename(port_file + ".tmp", port_file)
threading.Timer(600, srv.shutdown).start()
srv.serve_forever()
EOF
python3 "$base/proxy.py" "$base/pport" "$port" "$base/plan" 2>"$base/proxy.log" &
ppid=$!
_t=100
until [ -s "$base/pport" ]; do
	_t=$((_t - 1))
	[ $_t -gt 0 ] || fail "the proxy did not start: $(cat "$base/proxy.log")"
	sleep 0.1
done
purl=http://127.0.0.1:$(cat "$base/pport")/s
share=$("$L" key export t) || fail "key export"
ncars=$(find "$base/dav/root/s/t/car" -type f | wc -l)
[ "$ncars" -ge 20 ] || fail "only $ncars CARs on the store"
F=$base/home-f
LEDGERFS_HOME=$F "$L" key import t "$share" >/dev/null || fail "key import"
# Resets of the 3rd to 5th CAR fetched: a sync stops at one (the store
# is unreachable; curl tries a reused connection twice), the next goes on
# from where it was.
# (A fresh replica fetches its files over several connections at once and
# takes a reset one again by itself, so the first sync may also succeed,
# saying what it met.)
echo "3 5" >"$base/plan"
tries=0
met=0
while :; do
	tries=$((tries + 1))
	run env LEDGERFS_HOME="$F" timeout 120 "$L" sync --remote "$purl" t
	grep -q "unreachable" "$TMP/stderr" && met=1
	if grep -q "rejected\|cycle\|incomplete" "$TMP/stderr"; then
		fail "resets turned into a rejection: $(cat "$TMP/stderr")"
	fi
	[ "$STATUS" -eq 0 ] && break
	[ "$STATUS" -eq 1 ] || fail "a sync with resets exited $STATUS"
	expect_stderr "unreachable"
	[ $tries -lt 10 ] || fail "still no clean sync after $tries tries"
done
[ $met = 1 ] || fail "the syncs never met a reset"
expect 0 env LEDGERFS_HOME="$F" "$L" fsck t
docs=$(LEDGERFS_HOME=$F "$L" ls t | wc -l)
[ "$docs" -eq 22 ] || fail "the replica lists $docs documents, expected 22"
for d in first off1 off20 stalled; do
	expect 0 env LEDGERFS_HOME="$F" "$L" get t "$d"
done
G=$base/home-g
LEDGERFS_HOME=$G "$L" key import t "$share" >/dev/null || fail "key import"
echo "2 6" >"$base/plan"
mount_home "$G" "$purl"
wait_status '.sync.state == "synced" and .documents == 22'
timeout 120 cat "$MNT/t/.ledgerfs/wait" | grep -q pushed ||
	fail "wait after the resets"
grep -q "unreachable\|will retry" "$base/daemon.log" ||
	fail "the mount never met a reset: $(tail -n 5 "$base/daemon.log")"
unmount_within 5
expect 0 env LEDGERFS_HOME="$G" "$L" fsck t
kill "$ppid"
ppid=

note "wrong credentials: wait says 'Permission denied' at once"
auth_port=$((port + 1))
aurl=$(LIGHTTPD_PORT=$auth_port LIGHTTPD_AUTH=u:right \
	"$top_srcdir/scripts/lighttpd" start "$base/dav-auth") ||
	fail "lighttpd with auth did not start"
aurl=http://u:wrong@${aurl#http://}
aurl=${aurl%/}/s
mount_home "$H" "$aurl"
t0=$(date +%s)
run timeout 120 cat "$MNT/t/.ledgerfs/wait"
took=$(($(date +%s) - t0))
note "wait answered after $took s: $(cat "$TMP/stderr")"
[ "$STATUS" -ne 0 ] || fail "wait succeeded with a wrong password"
expect_stderr "Permission denied"
[ "$took" -lt 30 ] || fail "wait took $took s to report the access error"
jq -e '.sync.state == "failing" and (.sync.last_error | test("access refused"))' \
	"$MNT/t/.ledgerfs/status" >/dev/null ||
	fail "status with a wrong password: $(cat "$MNT/t/.ledgerfs/status")"
unmount_within 5
run timeout 120 "$L" sync --remote "$aurl" t
[ "$STATUS" -eq 1 ] || fail "sync with a wrong password exited $STATUS"
expect_stderr "access refused"

note "a store that trickles: sync gives up in time, unmount within 5 s"
python3 -c '
import socket, sys, threading, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 0))
s.listen(16)
open(sys.argv[1], "w").write("%d\n" % s.getsockname()[1])
end = time.time() + 300
def serve(c):
    try:
        c.recv(65536)
        c.sendall(b"HTTP/1.1 207 Multi-Status\r\nContent-Type: application/xml\r\n"
                  b"Transfer-Encoding: chunked\r\n\r\n")
        while time.time() < end:
            c.sendall(b"800\r\n" + b" " * 2048 + b"\r\n")
            time.sleep(1)
    except OSError:
        pass
    c.close()
s.settimeout(1)
while time.time() < end:
    try:
        c, _ = s.accept()
    except socket.timeout:
        continue
    threading.Thread(target=serve, args=(c,), daemon=True).start()
' "$base/tport" &
tpid=$!
_t=100
until [ -s "$base/tport" ]; do
	_t=$((_t - 1))
	[ $_t -gt 0 ] || fail "the trickling server did not start"
	sleep 0.1
done
turl=http://127.0.0.1:$(cat "$base/tport")/s
t0=$(date +%s)
run timeout 200 "$L" sync --remote "$turl" t
took=$(($(date +%s) - t0))
note "ledgerfs sync against a trickle ended after $took s: $(head -c 300 "$TMP/stderr")"
[ "$STATUS" -eq 1 ] || fail "sync against a trickle exited $STATUS"
expect_stderr "unreachable"
[ "$took" -lt 100 ] || fail "sync against a trickle took $took s"
mount_home "$H" "$turl"
echo '{"trickle": true}' >"$MNT/t/trickle.json" || fail "write"
_t=600
until ss -Htn state established "( dport = :$(cat "$base/tport") )" | grep -q .; do
	_t=$((_t - 1))
	[ $_t -gt 0 ] || fail "the daemon never reached the trickling server"
	sleep 0.2
done
unmount_within 5
kill "$tpid"
tpid=

note "a CAR of 1.5 GiB served with its length: rejected before it is read"
root=$base/dav/root/s/t
[ -d "$root/car" ] || fail "unexpected store layout: no $root/car"
printf 'huge' >"$base/h"
huge=$(raw_cid "$base/h")
truncate -s 1536M "$root/car/$huge"
printf '{"car":{"/":"%s"},"parents":[]}' "$huge" >"$root/head/$huge"
python3 -c '
import resource, subprocess, sys
with open(sys.argv[2], "w") as o, open(sys.argv[3], "w") as e:
    r = subprocess.run(sys.argv[4:], stdout=o, stderr=e)
with open(sys.argv[1], "w") as f:
    f.write("%d\n" % resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
sys.exit(r.returncode)
' "$base/rss" "$TMP/stdout" "$TMP/stderr" timeout 120 "$L" sync --json \
	--remote "$url" t || fail "sync beside a huge CAR: $(cat "$TMP/stderr")"
kb=$(cat "$base/rss")
note "ledgerfs sync peak RSS beside a 1.5 GiB CAR over HTTP: $kb kB"
[ "$kb" -lt 102400 ] || fail "ledgerfs sync used $kb kB"
jq -e --arg c "$huge" '.t.state == "synced" and .t.rejected_files == 1 and
	(.t.last_rejected | contains($c))' "$TMP/stdout" >/dev/null ||
	fail "status after a huge CAR: $(cat "$TMP/stdout")"
expect 0 "$L" fsck t
echo "PASS: sync_stalls"
