# shellcheck shell=bash
# shellcheck disable=SC2016 # sh -c '...' scripts take their arguments as $1...
# Helpers for the FUSE integration tests (tests/fuse_*.sh): they mount for
# real, drive real programs through the mount, then check with the CLI what
# the ledger committed. Source it first thing (it sources lib.sh):
#
#   #!/bin/bash
#   [ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
#   . "${top_srcdir:-$(dirname "$0")/..}/tests/fuse_lib.sh"
#   fuse_init
#
# Everything lib.sh provides, plus:
#
# Set up and tear down
#   skip MSG             as in lib.sh (exit 77), but under CI=true a failure
#                        (CI must run these tests) unless
#                        LFS_FUSE_ALLOW_SKIP=1; `need` goes through it too
#   fuse_init            check the machine can mount (else skip), make the
#                        mount point $MNT outside /tmp (editors skip
#                        backups under /tmp; LFS_MNT_PARENT, default
#                        /var/tmp), the home $LFS_HOME (exported as
#                        LEDGERFS_HOME), the daemon log $DAEMON_LOG, and
#                        the traps: on any exit the mount is unmounted and
#                        the daemon stopped. Any unchecked command that
#                        fails is a failure (an ERR trap names its line). A
#                        watchdog kills the daemon and ends a test that
#                        runs over LFS_TEST_TIMEOUT seconds (default 1200).
#   fuse_mount [ARGS]    start `ledgerfs mount -f` (log level
#                        $LFS_LOG_LEVEL, default debug; ARGS go before the
#                        mount point) in the background, its stderr to
#                        $DAEMON_LOG, and wait (LFS_MOUNT_TIMEOUT s, default
#                        10) until $MNT is mounted; $DAEMON_PID is its pid
#   fuse_umount          fusermount3 -u, then wait for the daemon to exit 0
#   fuse_wait_daemon S   wait up to S s for the daemon to exit; status in
#                        $REPLY (124 when it did not)
#   fuse_mounted         true when $MNT is a mount point
#                        (read from /proc/self/mountinfo: never blocks)
#   fuse_alive           fail unless the daemon runs, $MNT is mounted and
#                        answers
#
# Running things (every one bounded in time)
#   bounded CMD...       timeout (LFS_OP_TIMEOUT s, default 30) around CMD
#   editor ARGS...       scripts/editors ARGS, bounded
#   fsop OP ARGS...      one system call through python; prints "ok" or the
#                        errno name (EROFS...). OPs: read, open-w, create,
#                        append, unlink, rename, mkdir, rmdir, chmod, utime,
#                        truncate, symlink, link, setxattr, getxattr; and
#                        write / write-fsync PATH DATAFILE (O_TRUNC, write,
#                        [fsync,] close: prints "ok" or each failed step,
#                        e.g. "open:EROFS", "fsync:EINVAL close:EINVAL")
#   expect_errno WANT OP ARGS...   fail unless fsop prints WANT
#   OUTSIDE              a plain directory beside the mount point
#   put_text FILE TEXT   printf '%s\n' TEXT > FILE in a shell (a redirection)
#
# Ledger state while mounted (control files)
#   lfs_status L         $LFS_STATUS_JSON := L's .ledgerfs/status (checked
#                        to be a JSON object)
#   lfs_events L         $REPLY := the number of events (commits)
#   lfs_head L           $REPLY := the one head's event CID
#   expect_commits [--settle] L N   wait (bounded) until L has N events and
#                        fail on more; --settle then waits until no delete
#                        waits out the rename grace period (LFS_GRACE s,
#                        default 2; the status lists them) and checks
#                        again (no late delete sneaked in)
#   expect_file F TEXT   fail unless file F holds exactly TEXT + newline
#   pretty ID JSON       JSON with "_id": ID, as a document reads (jq -S)
#   expect_doc L ID JSON fail unless the mounted document reads as JSON
#                        pretty-printed (keys sorted, two-space indent,
#                        "_id" included; as `jq -S` prints)
#   expect_doc_jq L NAME FILTER    fail unless jq -e FILTER holds on the
#                        mounted file L/NAME
#   doc_name ID          $REPLY := the path of document ID in its ledger
#                        (folders, escapes: src/fsname.h)
#   snap_events L        $REPLY := the event directories under .snapshots
#                        (one per line, sorted), by-time excluded
#   snap_count_matching L NAME FILTER   $REPLY := how many snapshot
#                        directories hold NAME with jq -e FILTER true
#
# The ledger after unmounting (the CLI, with --home $LFS_HOME)
#   cli CMD ARGS...      ledgerfs CMD --home $LFS_HOME ARGS, bounded; run()
#                        semantics: $STATUS, $TMP/stdout, $TMP/stderr
#   cli_commits L        $REPLY := number of events in `log --json`
#   expect_cli_commits L N
#   expect_ids L ID...   fail unless `ledgerfs ls L` lists exactly ID...
#   expect_cli_doc L ID FILE   fail unless `ledgerfs get L ID` prints FILE's
#                        bytes exactly
#
# A failure prints what was expected and what happened, then the tail of
# the daemon log. KEEP_TMP=1 keeps $TMP (the log, the home) and the mount
# point's parent for a look afterwards.

if [ -z "${BASH_VERSION:-}" ]; then
	echo "ERROR: tests/fuse_lib.sh needs bash" >&2
	exit 99
fi

# shellcheck source=tests/lib.sh
. "${top_srcdir:-$(dirname "$0")/..}/tests/lib.sh"

LFS_GRACE=${LFS_GRACE:-2}
LFS_OP_TIMEOUT=${LFS_OP_TIMEOUT:-30}
LFS_MOUNT_TIMEOUT=${LFS_MOUNT_TIMEOUT:-10}
LFS_TEST_TIMEOUT=${LFS_TEST_TIMEOUT:-1200}
LFS_LOG_LEVEL=${LFS_LOG_LEVEL:-debug}
DAEMON_PID=
DAEMON_LOG=
MNT=
MNTBASE=
WATCHDOG_PID=
LFS_BG_PIDS=
REPLY=

# lib.sh's fail, plus the daemon's side of the story.
fail()
{
	echo "FAIL: $*" >&2
	_fuse_context >&2
	exit 1
}

_fuse_context()
{
	if [ -n "$DAEMON_LOG" ] && [ -s "$DAEMON_LOG" ]; then
		echo "---- last ${LFS_LOG_LINES:-40} lines of the daemon log ($DAEMON_LOG) ----"
		tail -n "${LFS_LOG_LINES:-40}" "$DAEMON_LOG"
		echo "---- end of the daemon log ----"
	fi
	if [ -n "$DAEMON_PID" ]; then
		if _alive "$DAEMON_PID"; then
			echo "(the daemon, pid $DAEMON_PID, is running; $MNT is $(fuse_mounted && echo mounted || echo "NOT mounted"))"
		else
			echo "(the daemon, pid $DAEMON_PID, is not running)"
		fi
	fi
}

# lib.sh's skip, except under CI, where the FUSE tests must run: there a
# missing /dev/fuse or editor is a broken machine, not a reason to skip.
skip()
{
	if [ "${CI:-}" = true ] && [ "${LFS_FUSE_ALLOW_SKIP:-0}" != 1 ]; then
		fail "$* -- under CI the FUSE tests must run (LFS_FUSE_ALLOW_SKIP=1 lets them skip)"
	fi
	echo "SKIP: $*" >&2
	exit 77
}

# A command that fails where nothing checks it is a failure, with its line.
set -E
trap '_fuse_err $LINENO "$BASH_COMMAND"' ERR
_fuse_err()
{
	fail "line $1: '$2' failed"
}

_alive()
{
	local s
	s=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
	s=${s##*) }
	[ "${s%% *}" != Z ]
}

fuse_mounted()
{
	_mounted_at "$MNT"
}

_mounted_at()
{
	awk -v d="$1" '$5 == d { found = 1 } END { exit !found }' /proc/self/mountinfo
}

bounded()
{
	timeout -k 5 "$LFS_OP_TIMEOUT" "$@"
}

fuse_init()
{
	need fusermount3 timeout python3 jq awk
	[ "$(uname -s)" = Linux ] || skip "FUSE tests run on Linux only"
	[ -e /dev/fuse ] || skip "/dev/fuse is missing (modprobe fuse; in a container, pass --device /dev/fuse)"
	[ -c /dev/fuse ] || skip "/dev/fuse is not a character device"
	if [ ! -r /dev/fuse ] || [ ! -w /dev/fuse ]; then
		skip "$(id -un) cannot open /dev/fuse (run the FUSE tests as root)"
	fi
	"$LEDGERFS" mount --help >/dev/null 2>&1 ||
		hard_error "'$LEDGERFS mount --help' failed: this ledgerfs has no working mount command"

	# The mount point: outside /tmp, where vim and emacs make no backups
	# (their save sequence would not be tested). scripts/editors gives them
	# a private TMPDIR, so $TMPDIR does not matter.
	local parent=${LFS_MNT_PARENT:-/var/tmp}
	if [ ! -d "$parent" ] || [ ! -w "$parent" ]; then
		skip "no writable $parent for the mount point (set LFS_MNT_PARENT)"
	fi
	MNTBASE=$(mktemp -d "$parent/lfs-test.XXXXXX") || hard_error "cannot make a directory in $parent"
	MNTBASE=$(cd "$MNTBASE" && pwd -P)
	case $MNTBASE/ in
	/tmp/*)
		hard_error "the mount point must be outside /tmp (editors skip backups there): $MNTBASE; set LFS_MNT_PARENT"
		;;
	esac
	MNT=$MNTBASE/mnt
	mkdir "$MNT" "$MNTBASE/outside"
	# shellcheck disable=SC2034 # for the tests: plain files beside the mount
	OUTSIDE=$MNTBASE/outside
	LFS_HOME=$TMP/home
	LEDGERFS_HOME=$LFS_HOME
	export LEDGERFS_HOME
	DAEMON_LOG=$TMP/daemon.log
	: >"$DAEMON_LOG"
	EDITORS=$top_srcdir/scripts/editors
	[ -x "$EDITORS" ] || hard_error "$EDITORS is missing"
	_fuse_write_fsop
	trap _fuse_cleanup EXIT
	_fuse_watchdog &
	WATCHDOG_PID=$!
	note "mount point $MNT, home $LFS_HOME"
}

# Kill the daemon (so every request on the mount fails instead of hanging)
# and the test, when the test runs too long.
_fuse_watchdog()
{
	trap - ERR EXIT
	local end=$((SECONDS + LFS_TEST_TIMEOUT)) pid
	while [ $SECONDS -lt $end ]; do
		kill -0 $$ 2>/dev/null || exit 0
		sleep 1
	done
	echo "FAIL: watchdog: the test ran over ${LFS_TEST_TIMEOUT}s; killing the daemon and the test" >&2
	pid=$(cat "$TMP/daemon.pid" 2>/dev/null) || pid=
	[ -z "$pid" ] || kill -KILL "$pid" 2>/dev/null
	kill -TERM $$ 2>/dev/null
	exit 0
}

_fuse_cleanup()
{
	local st=$? pid
	trap - ERR
	set +e
	[ -z "$WATCHDOG_PID" ] || kill "$WATCHDOG_PID" 2>/dev/null
	for pid in $LFS_BG_PIDS; do
		kill "$pid" 2>/dev/null
	done
	if [ -n "$MNT" ] && fuse_mounted; then
		timeout -k 2 10 fusermount3 -u "$MNT" 2>/dev/null ||
			timeout -k 2 10 fusermount3 -uz "$MNT" 2>/dev/null
	fi
	if [ -n "$DAEMON_PID" ] && _alive "$DAEMON_PID"; then
		kill -TERM "$DAEMON_PID" 2>/dev/null
		fuse_wait_daemon 10
		if _alive "$DAEMON_PID"; then
			kill -KILL "$DAEMON_PID" 2>/dev/null
			fuse_wait_daemon 5
		fi
	fi
	if [ -n "$MNTBASE" ]; then
		if fuse_mounted; then
			echo "WARNING: $MNT is still mounted; left in place" >&2
		elif [ "${KEEP_TMP:-0}" = 1 ]; then
			echo "kept $MNTBASE" >&2
		else
			rmdir "$MNT" 2>/dev/null
			rm -rf "$MNTBASE"
		fi
	fi
	_lib_cleanup
	exit "$st"
}

fuse_mount()
{
	local end pid
	if fuse_mounted; then
		fail "fuse_mount: $MNT is mounted already"
	fi
	echo "==== $(date -u +%H:%M:%S) ledgerfs mount -f --log-level $LFS_LOG_LEVEL $* $MNT" >>"$DAEMON_LOG"
	"$LEDGERFS" mount --home "$LFS_HOME" -f --log-level "$LFS_LOG_LEVEL" "$@" "$MNT" \
		</dev/null >>"$DAEMON_LOG" 2>&1 &
	DAEMON_PID=$!
	echo "$DAEMON_PID" >"$TMP/daemon.pid"
	end=$((SECONDS + LFS_MOUNT_TIMEOUT))
	until fuse_mounted; do
		if ! _alive "$DAEMON_PID"; then
			fuse_wait_daemon 1
			fail "the daemon exited with status $REPLY before $MNT was mounted"
		fi
		[ $SECONDS -lt $end ] || fail "$MNT was not mounted ${LFS_MOUNT_TIMEOUT}s after starting the daemon"
		sleep 0.1
	done
	bounded stat "$MNT" >/dev/null || fail "stat $MNT failed right after mounting"
	pid=$DAEMON_PID
	note "mounted (daemon pid $pid)"
}

fuse_wait_daemon()
{
	local end=$((SECONDS + $1))
	while _alive "$DAEMON_PID"; do
		if [ $SECONDS -ge $end ]; then
			REPLY=124
			return 0
		fi
		sleep 0.1
	done
	REPLY=0
	wait "$DAEMON_PID" 2>/dev/null || REPLY=$?
}

fuse_umount()
{
	local end=$((SECONDS + 60)) err
	while :; do
		err=$(timeout -k 2 10 fusermount3 -u "$MNT" 2>&1) && break
		[ $SECONDS -lt $end ] || fail "fusermount3 -u $MNT failed: $err"
		sleep 0.2 # e.g. busy: an editor that just exited
	done
	fuse_wait_daemon 15
	[ "$REPLY" != 124 ] || fail "the daemon did not exit within 15 s of fusermount3 -u"
	[ "$REPLY" = 0 ] || fail "the daemon exited with status $REPLY after fusermount3 -u (expected 0)"
	if fuse_mounted; then
		fail "$MNT is still mounted after fusermount3 -u"
	fi
	note "unmounted"
}

fuse_alive()
{
	_alive "$DAEMON_PID" || fail "the daemon is not running"
	fuse_mounted || fail "$MNT is not mounted any more"
	bounded ls "$MNT" >/dev/null || fail "ls $MNT failed: the daemon does not answer"
}

# editor ARGS...: scripts/editors ARGS. Its deadline covers the whole
# session (start, every edit, every save, exit): a tmux-driven emacs took
# over 60 s on a machine loaded at 11, so it gets 6 operations' worth.
editor()
{
	timeout -k 5 $((LFS_OP_TIMEOUT * 7)) "$EDITORS" --timeout $((LFS_OP_TIMEOUT * 6)) "$@"
}

_fuse_write_fsop()
{
	cat >"$TMP/fsop.py" <<'EOF'
import errno, os, sys

def name(e):
    return errno.errorcode.get(e.errno, str(e.errno))

op, args = sys.argv[1], sys.argv[2:]
if op in ("write", "write-fsync"):
    data = open(args[1], "rb").read()
    try:
        fd = os.open(args[0], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    except OSError as e:
        print("open:" + name(e))
        sys.exit(0)
    out = []
    try:
        off = 0
        while off < len(data):
            off += os.write(fd, data[off:off + (1 << 20)])
    except OSError as e:
        out.append("write:" + name(e))
    if op == "write-fsync":
        try:
            os.fsync(fd)
        except OSError as e:
            out.append("fsync:" + name(e))
    try:
        os.close(fd)
    except OSError as e:
        out.append("close:" + name(e))
    print(" ".join(out) or "ok")
    sys.exit(0)
try:
    if op == "read":
        with open(args[0], "rb") as f:
            f.read()
    elif op == "create":
        os.close(os.open(args[0], os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
    elif op == "open-w":
        os.close(os.open(args[0], os.O_WRONLY))
    elif op == "append":
        fd = os.open(args[0], os.O_WRONLY | os.O_APPEND)
        try:
            os.write(fd, b" ")
        finally:
            os.close(fd)
    elif op == "unlink":
        os.unlink(args[0])
    elif op == "rename":
        os.rename(args[0], args[1])
    elif op == "mkdir":
        os.mkdir(args[0])
    elif op == "rmdir":
        os.rmdir(args[0])
    elif op == "chmod":
        os.chmod(args[0], int(args[1], 8))
    elif op == "utime":
        os.utime(args[0], None)
    elif op == "truncate":
        os.truncate(args[0], int(args[1]) if len(args) > 1 else 0)
    elif op == "symlink":
        os.symlink(args[0], args[1])
    elif op == "link":
        os.link(args[0], args[1])
    elif op == "setxattr":
        os.setxattr(args[0], args[1], args[2].encode())
    elif op == "getxattr":
        sys.stdout.write(os.getxattr(args[0], args[1]).decode() + "\n")
        sys.exit(0)
    else:
        print("fsop: unknown op " + op, file=sys.stderr)
        sys.exit(2)
except OSError as e:
    print(name(e))
    sys.exit(0)
print("ok")
EOF
}

fsop()
{
	bounded python3 "$TMP/fsop.py" "$@"
}

expect_errno()
{
	local want=$1 got
	shift
	got=$(fsop "$@") || fail "fsop $* did not run (status $?)"
	[ "$got" = "$want" ] || fail "$*: expected $want, got $got"
}

put_text()
{
	bounded sh -c 'printf "%s\n" "$2" >"$1"' sh "$1" "$2"
}

# ---- the ledger while mounted ----

lfs_status()
{
	local f=$MNT/$1/.ledgerfs/status
	LFS_STATUS_JSON=$(bounded cat "$f") || fail "cannot read $f"
	if ! jq -e 'type == "object"' >/dev/null 2>&1 <<<"$LFS_STATUS_JSON"; then
		fail "$f is not a JSON object: $LFS_STATUS_JSON"
	fi
}

lfs_events()
{
	lfs_status "$1"
	REPLY=$(jq -r '.events' <<<"$LFS_STATUS_JSON")
	case $REPLY in
	'' | *[!0-9]*) fail "$1's status has no event count: $LFS_STATUS_JSON" ;;
	esac
}

lfs_head()
{
	lfs_status "$1"
	REPLY=$(jq -r 'if (.heads | type) == "array" and (.heads | length) == 1 then .heads[0] else empty end' <<<"$LFS_STATUS_JSON")
	[ -n "$REPLY" ] || fail "$1 does not have exactly one head: $LFS_STATUS_JSON"
}

_changes_tail()
{
	echo "last lines of $MNT/$1/.ledgerfs/changes:"
	bounded tail -n "${2:-10}" "$MNT/$1/.ledgerfs/changes" 2>&1 | sed 's/^/  /'
}

expect_commits()
{
	local settle=0 l n end
	if [ "$1" = --settle ]; then
		settle=1
		shift
	fi
	l=$1
	n=$2
	end=$((SECONDS + 60))
	while :; do
		lfs_events "$l"
		[ "$REPLY" -lt "$n" ] || break
		[ $SECONDS -lt $end ] || fail "ledger $l: expected $n commits, got $REPLY after 60 s; $(_changes_tail "$l")"
		sleep 0.1
	done
	[ "$REPLY" -eq "$n" ] || fail "ledger $l: expected $n commits, got $REPLY; $(_changes_tail "$l")"
	if [ $settle = 1 ]; then
		# Only deletes wait out the grace period, and the status lists
		# them until their commit is made: once none waits (and the
		# writer is done), no commit can come later.
		end=$((SECONDS + 60))
		until lfs_status "$l" &&
			[ "$(jq -c '.pending_deletes' <<<"$LFS_STATUS_JSON")" = "[]" ]; do
			[ $SECONDS -lt $end ] || fail "ledger $l: deletes still wait 60 s later: $(jq -c '.pending_deletes' <<<"$LFS_STATUS_JSON")"
			sleep 0.1
		done
		lfs_events "$l"
		[ "$REPLY" -eq "$n" ] ||
			fail "ledger $l: expected $n commits, got $REPLY after the ${LFS_GRACE}s grace period; $(_changes_tail "$l")"
	fi
}

# expect_saved L BEFORE K: ledger L, which had BEFORE commits, has taken
# a burst of K saves (cp -r, tar x, a script): the mount folds saves that
# come together into one commit (group commit, docs/DESIGN.md), so it has
# gained between 1 and K. REPLY: the count now. Whether each save landed
# is for the caller to check, by its documents.
expect_saved()
{
	local l=$1 before=$2 k=$3
	lfs_events "$l"
	[ "$REPLY" -gt "$before" ] && [ "$REPLY" -le $((before + k)) ] ||
		fail "ledger $l: $k saves after $before commits made $REPLY commits in all; $(_changes_tail "$l")"
}

# one_commit [--settle]: ledger $L has gained exactly one commit since
# the $n counted so far (n counts it); no_commit: it has still $n.
one_commit()
{
	n=$((n + 1))
	expect_commits "$@" "$L" "$n"
}

no_commit()
{
	expect_commits "$@" "$L" "$n"
}

expect_file()
{
	local got
	got=$(bounded cat "$1" && echo x) || fail "cannot read $1"
	got=${got%x}
	[ "$got" = "$2"$'\n' ] || fail "$1: expected
$2
---- got ----
$got"
}

# Canonical rendering of a JSON object text with its _id (as jq -S does).
pretty()
{
	jq -S --arg id "$1" '. + {_id: $id}' <<<"$2" || fail "pretty: bad JSON: $2"
}

doc_name()
{
	# The path of document ID in its ledger (src/fsname.h): '/' between
	# two bytes other than '/' separates folders, every other '/' is %2F;
	# '%' is %25, a segment's leading '.' %2E, a folder's ".json" %2Ejson.
	# An id with none of those is its own name: no python start (a
	# tenth of a second, hundreds of times in a run).
	case $1 in
	*/* | *%* | .* | *.json*) ;;
	*)
		REPLY=$1.json
		return
		;;
	esac
	REPLY=$(python3 -c '
import sys
i = sys.argv[1].encode()
def sep(k):
    return 0 < k < len(i) - 1 and i[k - 1] != 0x2F and i[k + 1] != 0x2F
o = bytearray()
start = True
for k, b in enumerate(i):
    if b == 0x2F and sep(k):
        o.append(b)
        start = True
        continue
    dot_json = b == 0x2E and i[k:k + 5] == b".json" and k + 5 < len(i) and sep(k + 5)
    if b in (0x2F, 0x25) or (start and b == 0x2E) or dot_json:
        o += b"%%%02X" % b
    else:
        o.append(b)
    start = False
sys.stdout.write(o.decode() + ".json")' "$1")
}

expect_doc()
{
	local want
	doc_name "$2"
	want=$(pretty "$2" "$3")
	expect_file "$MNT/$1/$REPLY" "$want"
}

expect_doc_jq()
{
	local f=$MNT/$1/$2 text
	text=$(bounded cat "$f") || fail "cannot read $f"
	jq -e "$3" >/dev/null 2>&1 <<<"$text" || fail "$f: expected a document where '$3'; got:
$text"
}

snap_events()
{
	local d=$MNT/$1/.snapshots list
	list=$(bounded ls -1 "$d") || fail "cannot list $d"
	REPLY=$(grep -vx 'by-time' <<<"$list" | LC_ALL=C sort)
}

snap_count_matching()
{
	local l=$1 name=$2 filter=$3 ev n=0 text
	snap_events "$l"
	for ev in $REPLY; do
		if text=$(bounded cat "$MNT/$l/.snapshots/$ev/$name" 2>/dev/null) &&
			jq -e "$filter" >/dev/null 2>&1 <<<"$text"; then
			n=$((n + 1))
		fi
	done
	REPLY=$n
}

# ---- the ledger through the CLI (after unmounting) ----

cli()
{
	local cmd=$1
	shift
	run bounded "$LEDGERFS" "$cmd" --home "$LFS_HOME" "$@"
}

cli_commits()
{
	cli log --json "$1"
	[ "$STATUS" = 0 ] || fail "ledgerfs log --json $1 exited $STATUS: $(cat "$TMP/stderr")"
	REPLY=$(jq 'length' "$TMP/stdout") || fail "ledgerfs log --json $1 is not JSON: $(head -c 2000 "$TMP/stdout")"
}

expect_cli_commits()
{
	cli_commits "$1"
	[ "$REPLY" = "$2" ] || fail "ledger $1 (CLI): expected $2 commits, got $REPLY:
$(jq -r '.[] | "\(.time) \(.event) \([.changes[] | (if .doc == null then "-" else "" end) + .id] | join(" "))"' "$TMP/stdout")"
}

expect_ids()
{
	local l=$1 want got
	shift
	cli ls "$l"
	[ "$STATUS" = 0 ] || fail "ledgerfs ls $l exited $STATUS: $(cat "$TMP/stderr")"
	want=$(printf '%s\n' "$@" | LC_ALL=C sort)
	[ $# -gt 0 ] || want=
	got=$(LC_ALL=C sort "$TMP/stdout")
	[ "$got" = "$want" ] || fail "ledger $l (CLI): expected the documents
$want
---- got ----
$got"
}

expect_cli_doc()
{
	cli get "$1" "$2"
	[ "$STATUS" = 0 ] || fail "ledgerfs get $1 $2 exited $STATUS: $(cat "$TMP/stderr")"
	cmp -s "$TMP/stdout" "$3" || fail "ledger $1 (CLI): document $2 is
$(cat "$TMP/stdout")
---- expected (as read through the mount) ----
$(cat "$3")"
}
