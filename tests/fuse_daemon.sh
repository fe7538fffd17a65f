#!/bin/bash
# The daemon's life: usage errors; SIGTERM unmounts cleanly, exits 0 and
# everything written is committed (and a pending rename-away delete is
# flushed); background mode returns once the mount is ready and exits on
# fusermount3 -u; the fstab form (ledgerfs STORE MOUNTPOINT -o ...) gives
# remote= and the like to ledgerfs and the rest to FUSE; a mount point that
# is missing or already mounted gives a clear error and leaves the first
# mount alone; -o auto_unmount cleans
# up after SIGKILL; --log-level error keeps a quiet session quiet; a
# missing /dev/fuse (simulated in a private mount namespace) gives a
# message naming it.
# shellcheck disable=SC2016,SC2119,SC2120 # sh -c '...' scripts; optional arguments
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
# shellcheck source=tests/fuse_lib.sh
. "${top_srcdir:-$(dirname "$0")/..}/tests/fuse_lib.sh"
fuse_init

L=dmn
D=$MNT/$L
n=0

# The pids of processes whose command line names our mount point (unique
# to this test), other than this shell's own children that are not the
# daemon.
daemon_pids()
{
	local p
	for p in /proc/[0-9]*; do
		if { tr '\0' ' ' <"$p/cmdline"; } 2>/dev/null | grep -q "ledgerfs.* mount .*$MNT"; then
			echo "${p#/proc/}"
		fi
	done
}

note "usage"
expect 0 bounded "$LEDGERFS" mount --help
expect_stdout 'usage: ledgerfs mount'
expect 2 bounded "$LEDGERFS" mount
expect 2 bounded "$LEDGERFS" mount --log-level chatty "$MNT"
expect 2 bounded "$LEDGERFS" mount --frobnicate "$MNT"
fuse_mounted && fail "a usage error mounted $MNT"

note "a missing mount point: a clear error"
run bounded "$LEDGERFS" mount -f --home "$LFS_HOME" "$MNTBASE/nowhere"
case $STATUS in 0 | 124) fail "mounting on a missing directory: status $STATUS" ;; esac
expect_stderr "$MNTBASE/nowhere"

note "SIGTERM: clean unmount, exit 0, every write committed"
fuse_mount
bounded mkdir "$D"
for i in $(seq 20); do
	put_text "$D/doc$i.json" "{\"i\": $i}"
done
kill -TERM "$DAEMON_PID" # right after the last close
fuse_wait_daemon 15
[ "$REPLY" != 124 ] || fail "the daemon did not exit within 15 s of SIGTERM"
[ "$REPLY" = 0 ] || fail "the daemon exited with status $REPLY after SIGTERM (expected 0)"
fuse_mounted && fail "$MNT is still mounted after the daemon exited on SIGTERM"
# Saves that come together fold into one commit: 1 to 20 of them.
cli_commits $L
n=$REPLY
[ "$n" -ge 1 ] && [ "$n" -le 20 ] || fail "20 saves made $n commits"
expect_cli_commits $L $n
ids=()
for i in $(seq 20); do
	ids+=("doc$i")
done
expect_ids $L "${ids[@]}"
cli get $L doc20
grep -q '"i": 20' "$TMP/stdout" || fail "doc20 is not what was written: $(cat "$TMP/stdout")"

note "SIGTERM within the rename grace period flushes the pending delete"
fuse_mount
bounded mv "$D/doc20.json" "$D/doc20.json~"
kill -TERM "$DAEMON_PID"
fuse_wait_daemon 15
[ "$REPLY" = 0 ] || fail "the daemon exited with status $REPLY after SIGTERM (expected 0)"
n=$((n + 1))
expect_cli_commits $L $n
ids=("${ids[@]:0:19}")
expect_ids $L "${ids[@]}"

note "background mode: returns once mounted, exits after fusermount3 -u"
run bounded "$LEDGERFS" mount --home "$LFS_HOME" --log-level info "$MNT"
[ "$STATUS" = 0 ] || fail "ledgerfs mount (background) exited $STATUS: $(cat "$TMP/stderr")"
fuse_mounted || fail "ledgerfs mount returned but $MNT is not mounted"
pids=$(daemon_pids)
[ -n "$pids" ] || fail "no daemon process left after ledgerfs mount returned"
[ "$(wc -w <<<"$pids")" = 1 ] || fail "several daemon processes: $pids"
DAEMON_PID=$pids # for the cleanup trap
put_text "$D/bg.json" '{"mode":"background"}'
one_commit
ids+=(bg)
bounded fusermount3 -u "$MNT" || fail "fusermount3 -u failed"
end=$((SECONDS + 60))
while _alive "$pids"; do
	[ $SECONDS -lt $end ] || fail "the background daemon (pid $pids) is still running 60 s after fusermount3 -u"
	sleep 0.1
done
DAEMON_PID=
fuse_mounted && fail "$MNT is still mounted"
expect_cli_commits $L $n

note "the fstab form: ledgerfs STORE MOUNTPOINT -o OPTIONS, ledgerfs's own options among FUSE's"
expect 2 bounded "$LEDGERFS" "$LFS_HOME" "$MNT" -x
expect_stderr "unexpected '-x'"
expect 2 bounded "$LEDGERFS" "$LFS_HOME" "$MNT" -o poll_ms=1
expect_stderr 'poll-ms'
fuse_mounted && fail "a usage error of the fstab form mounted $MNT"
remote=$TMP/fstab-remote
mkdir -p "$remote"
run bounded "$LEDGERFS" "$LFS_HOME" "$MNT" -o log_level=info,poll_ms=100 -o "default_permissions,remote=file://$remote"
[ "$STATUS" = 0 ] || fail "the fstab form exited $STATUS: $(cat "$TMP/stderr")"
fuse_mounted || fail "the fstab form returned but $MNT is not mounted"
pids=
for p in /proc/[0-9]*; do
	if { tr '\0' ' ' <"$p/cmdline"; } 2>/dev/null | grep -qF "ledgerfs $LFS_HOME $MNT -o"; then
		pids="$pids ${p#/proc/}"
	fi
done
[ "$(wc -w <<<"$pids")" = 1 ] || fail "the fstab form: daemon processes '$pids'"
pids=${pids# }
DAEMON_PID=$pids
put_text "$D/fstab.json" '{"form":"fstab"}'
one_commit
ids+=(fstab)
# remote= went to ledgerfs, not to FUSE: the commit reaches the store.
end=$((SECONDS + 60))
until compgen -G "$remote/heads/$L~*" >/dev/null; do
	[ $SECONDS -lt $end ] || fail "the fstab form's remote= store has no head record of $L after 60 s"
	sleep 0.1
done
bounded fusermount3 -u "$MNT" || fail "fusermount3 -u failed"
end=$((SECONDS + 60))
while _alive "$pids"; do
	[ $SECONDS -lt $end ] || fail "the fstab-form daemon (pid $pids) is still running 60 s after fusermount3 -u"
	sleep 0.1
done
DAEMON_PID=

note "a mount point that is mounted already: a clear error, the first mount untouched"
fuse_mount
first=$DAEMON_PID
run bounded "$LEDGERFS" mount -f --home "$TMP/home2" "$MNT"
case $STATUS in 0 | 124) fail "a second mount on $MNT: status $STATUS (expected an error)" ;; esac
expect_stderr "$MNT"
grep -qiE 'already mounted|busy|in use' "$TMP/stderr" || fail "the second mount's error does not say the mount point is busy: $(cat "$TMP/stderr")"
got=$(awk -v d="$MNT" '$5 == d' /proc/self/mountinfo | wc -l)
[ "$got" = 1 ] || fail "$MNT is mounted $got times"
_alive "$first" || fail "the first daemon died"
note "a second mount of the same home elsewhere: refused, the first untouched"
mkdir -p "$TMP/mnt-other"
run bounded "$LEDGERFS" mount -f "$TMP/mnt-other"
case $STATUS in 0 | 124) fail "a second mount of the home: status $STATUS (expected an error)" ;; esac
expect_stderr "already mounted by another ledgerfs"
got=$(awk -v d="$TMP/mnt-other" '$5 == d' /proc/self/mountinfo | wc -l)
[ "$got" = 0 ] || fail "$TMP/mnt-other is mounted"
_alive "$first" || fail "the first daemon died"
put_text "$D/still.json" '{"first mount":"works"}'
one_commit
ids+=(still)
fuse_umount

note "-o auto_unmount: a killed daemon leaves no dead mount behind"
fuse_mount -o auto_unmount
kill -KILL "$DAEMON_PID"
fuse_wait_daemon 5
# libfuse's fusermount3 keeps a socket to the daemon and, when it closes,
# unmounts only if opening the mount point fails with ENOTCONN. If it looks
# before the kernel has aborted the connection, the open fails otherwise
# and it leaves without unmounting: a race libfuse documents (auto_unmount
# "cannot be implemented reliably", libfuse PR #763). Seen 2 in 25 on a
# saturated machine. That case is told apart and noted, not failed: the
# guard is gone and the mount is dead. A live mount, or a guard still
# waiting after 60 s, fails.
end=$((SECONDS + 60))
while fuse_mounted; do
	if [ $SECONDS -ge $end ]; then
		pgrep -f "fusermount3.*$MNT" >/dev/null &&
			fail "$MNT is still mounted, and fusermount3 still waits, 60 s after the daemon was killed with -o auto_unmount"
		err=$(bounded stat "$MNT" 2>&1) &&
			fail "$MNT still answers 60 s after the daemon was killed with -o auto_unmount"
		note "libfuse's auto_unmount lost its race with the kernel ($err); unmounting by hand"
		fusermount3 -uz "$MNT" || fail "fusermount3 -uz $MNT failed"
	fi
	sleep 0.1
done
cli fsck $L
[ "$STATUS" = 0 ] || fail "fsck after a killed daemon: $(cat "$TMP/stdout" "$TMP/stderr")"
expect_cli_commits $L $n

note "--log-level error: a quiet session logs nothing"
lines=$(wc -l <"$DAEMON_LOG")
LFS_LOG_LEVEL=error fuse_mount
put_text "$D/quiet.json" '{"quiet":true}'
one_commit
ids+=(quiet)
fuse_umount
new=$(tail -n +"$((lines + 2))" "$DAEMON_LOG") # past our own "==== mount" line
[ -z "$new" ] || fail "--log-level error logged a normal session:
$new"
note "--log-level debug logs one"
lines=$(wc -l <"$DAEMON_LOG")
LFS_LOG_LEVEL=debug fuse_mount
put_text "$D/quiet.json" '{"quiet":false}'
one_commit
fuse_umount
[ "$(wc -l <"$DAEMON_LOG")" -gt $((lines + 1)) ] || fail "--log-level debug logged nothing"
expect_cli_commits $L $n
expect_ids $L "${ids[@]}"

note "128 file descriptors: rsync -a of 600 files arrives whole; opens past the limit fail with EMFILE; SIGTERM exits cleanly"
# Retired scratch handles keep their host file open a few seconds; were
# they all to, a copy would run the daemon out of descriptors. And with
# none left, libfuse's unmount used to abort the daemon (glibc could not
# load libgcc_s to cancel its threads).
cat >"$TMP/lfs-128" <<WRAP
#!/bin/sh
exec prlimit --nofile=128:128 "$LEDGERFS" "\$@"
WRAP
chmod +x "$TMP/lfs-128"
real_ledgerfs=$LEDGERFS
LEDGERFS=$TMP/lfs-128 fuse_mount
LEDGERFS=$real_ledgerfs
mkdir -p "$TMP/many"
for i in $(seq 600); do
	printf '{"n": %d}\n' "$i" >"$TMP/many/m$i.json"
done
bounded mkdir "$MNT/fdl"
run bounded rsync -a "$TMP/many/" "$MNT/fdl/"
[ "$STATUS" = 0 ] || fail "rsync -a into a mount with 128 descriptors: status $STATUS: $(tail -n 3 "$TMP/stderr")"
n=$(bounded ls "$MNT/fdl" | grep -c '^m[0-9]*\.json$')
[ "$n" = 600 ] || fail "rsync -a into a mount with 128 descriptors: $n of 600 files arrived"
# Hold files open until the daemon has no descriptor left, then SIGTERM.
python3 -c '
import errno, os, sys, time
held, refused = [], 0
for i in range(200):
    try:
        held.append(os.open(os.path.join(sys.argv[1], "x%d.tmp" % i), os.O_CREAT | os.O_WRONLY, 0o644))
    except OSError as e:
        if e.errno != errno.EMFILE:
            raise
        refused += 1
with open(sys.argv[2] + ".new", "w") as f:
    print(len(held), refused, file=f)
os.rename(sys.argv[2] + ".new", sys.argv[2])
end = time.time() + 300
while not os.path.exists(sys.argv[3]) and time.time() < end:
    time.sleep(0.05)
for fd in held:
    try:
        os.close(fd)
    except OSError:
        pass' "$MNT/fdl" "$TMP/held" "$TMP/release" &
holder=$!
end=$((SECONDS + 120))
until [ -e "$TMP/held" ]; do
	_alive $holder || fail "the program holding files open exited early"
	[ $SECONDS -lt $end ] || fail "holding files open took over 120 s"
	sleep 0.1
done
read -r held refused <"$TMP/held"
[ "$refused" -gt 0 ] || fail "200 files held open in a mount with 128 descriptors: none was refused"
note "$held opens held, $refused refused with EMFILE; SIGTERM with no descriptor left"
kill -TERM "$DAEMON_PID"
fuse_wait_daemon 15
touch "$TMP/release"
wait $holder || true
[ "$REPLY" != 124 ] || fail "the daemon did not exit within 15 s of SIGTERM"
[ "$REPLY" = 0 ] || fail "with no descriptor left, the daemon exited with status $REPLY after SIGTERM (expected 0)"
if fuse_mounted; then
	timeout -k 2 10 fusermount3 -u "$MNT" || fail "$MNT stayed mounted after the daemon exited on SIGTERM"
fi

note "a missing /dev/fuse: a message that names it"
if [ "$(id -u)" != 0 ] || ! command -v unshare >/dev/null || ! command -v mknod >/dev/null; then
	note "SKIPPED this case: it needs root, unshare and mknod"
else
	# In a private mount namespace (checked: never the test's own), a tmpfs
	# over /dev holds null, zero, random and urandom but no fuse.
	ns=$(readlink /proc/self/ns/mnt)
	run bounded unshare -m --propagation private sh -c '
		[ "$(readlink /proc/self/ns/mnt)" != "$1" ] || exit 98
		mount -t tmpfs -o mode=755 lfs-nodev /dev || exit 97
		mknod -m 666 /dev/null c 1 3 && mknod -m 666 /dev/zero c 1 5 &&
			mknod -m 666 /dev/random c 1 8 && mknod -m 666 /dev/urandom c 1 9 || exit 96
		[ ! -e /dev/fuse ] || exit 95
		shift
		exec "$@"' sh "$ns" "$LEDGERFS" mount -f --home "$LFS_HOME" "$MNT"
	case $STATUS in
	95 | 96 | 97 | 98)
		note "SKIPPED this case: could not hide /dev/fuse in a private namespace (status $STATUS: $(cat "$TMP/stderr"))"
		;;
	0 | 124) fail "with no /dev/fuse the daemon exited $STATUS (expected an error)" ;;
	*)
		expect_stderr '/dev/fuse'
		note "the daemon said: $(head -c 300 "$TMP/stderr")"
		;;
	esac
	fuse_mounted && fail "$MNT is mounted in the test's namespace"
	[ -c /dev/fuse ] || fail "the test's own /dev/fuse is gone"
fi

note "SIGKILL right after 300 saves: every closed save is there, for the command line first, then for the next mount"
# The saves are staged in the segment and folded a moment later: killed
# before the fold, the daemon leaves them to whoever takes the ledger's
# lock next. One process writes them all and kills the daemon the moment
# the last close returns.
fuse_mount
K=kil
bounded mkdir "$MNT/$K"
bounded python3 - "$MNT/$K" "$DAEMON_PID" <<'PY' || fail "the writer failed"
import os, signal, sys
d, pid = sys.argv[1], int(sys.argv[2])
for i in range(300):
    with open(os.path.join(d, "k%03d.json" % i), "w") as f:
        f.write('{"i": %d, "pad": "%s"}\n' % (i, "x" * (i % 50)))
# Overwrite and delete a few: the last word must win.
for i in range(0, 300, 30):
    with open(os.path.join(d, "k%03d.json" % i), "w") as f:
        f.write('{"i": %d, "again": true}\n' % i)
for i in range(15, 300, 30):
    os.unlink(os.path.join(d, "k%03d.json" % i))
os.kill(pid, signal.SIGKILL)
PY
fuse_wait_daemon 15
[ "$REPLY" != 124 ] || fail "the daemon lives 15 s after SIGKILL"
fusermount3 -uz "$MNT" 2>/dev/null || umount -l "$MNT" 2>/dev/null || true
want=()
for i in $(seq 0 299); do
	[ $((i % 30)) = 15 ] || want+=("$(printf 'k%03d' "$i")")
done
expect_ids $K "${want[@]}"
cli get $K k030
grep -q '"again": true' "$TMP/stdout" || fail "k030 is not its last save: $(cat "$TMP/stdout")"
cli get $K k299
grep -q '"i": 299' "$TMP/stdout" || fail "k299 is not what was written: $(cat "$TMP/stdout")"
cli fsck $K
[ "$STATUS" = 0 ] || fail "fsck after the kill: $(cat "$TMP/stdout" "$TMP/stderr")"
cli_commits $K
before=$REPLY
fuse_mount
got=$(bounded ls "$MNT/$K" | wc -l)
[ "$got" = ${#want[@]} ] || fail "the next mount lists $got documents in $K, expected ${#want[@]}"
expect_file "$MNT/$K/k031.json" "{
  \"_id\": \"k031\",
  \"i\": 31,
  \"pad\": \"$(printf 'x%.0s' $(seq 31))\"
}"
fuse_umount
cli_commits $K
[ "$REPLY" = "$before" ] || fail "the saves were folded twice: $before commits, then $REPLY"

echo "PASS: fuse_daemon"
