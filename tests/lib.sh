# shellcheck shell=sh
# Helpers for the shell tests. Source it first thing:
#
#   . "${top_srcdir:-$(dirname "$0")/..}/tests/lib.sh"
#
# The harness (make check) exports top_srcdir, top_builddir and LEDGERFS.
# Run by hand from anywhere after a build in build/ (scripts/build), the
# defaults find the source tree from the script's path and the program in
# build/src/ledgerfs (or $top_builddir/src/ledgerfs, or an in-tree build).
#
# Provides:
#   $TMP                 a fresh directory, removed on exit (kept when
#                        KEEP_TMP=1, for debugging)
#   skip MSG             exit 77 (automake: skipped), saying why
#   fail MSG             exit 1, saying what went wrong
#   hard_error MSG       exit 99 (automake: the test could not run at all)
#   need CMD...          skip unless every CMD is on PATH
#   note MSG             progress line on stdout
#   run CMD...           run CMD; sets $STATUS, stdout in "$TMP/stdout",
#                        stderr in "$TMP/stderr"; never exits
#   expect N CMD...      run CMD and fail unless it exits with status N
#   expect_stdout RE     fail unless the last run's stdout matches RE (grep)
#   expect_stderr RE     fail unless the last run's stderr matches RE (grep)
#   file_size FILE       print FILE's size in bytes
#   flip_byte FILE OFF   invert the lowest bit of the byte at offset OFF
#   raw_cid FILE         print the CIDv1 (raw, sha2-256) of FILE (python3)
#   no_dotfiles DIR      fail if DIR holds a hidden file (a leftover temporary)
#   free_ports N         print P such that ports P..P+N-1 are unused now,
#                        below the kernel's ephemeral range

set -u

skip()
{
	echo "SKIP: $*" >&2
	exit 77
}

fail()
{
	echo "FAIL: $*" >&2
	exit 1
}

hard_error()
{
	echo "ERROR: $*" >&2
	exit 99
}

note()
{
	echo "-- $*"
}

# Ports for a test's own servers: below 32768, where the kernel never
# picks a connection's local port (a port in its ephemeral range can be
# taken by any client socket on the machine at any time), started at a
# place of this process's own so parallel tests rarely try the same one,
# and skipping ports any socket holds now.
free_ports()
{
	_p=$((20000 + $$ * 7 % 12000))
	_tries=0
	while [ $_tries -lt 12000 ]; do
		_i=0
		while [ $_i -lt "$1" ] && { ! command -v ss >/dev/null 2>&1 ||
			[ -z "$(ss -Htan "( sport = :$((_p + _i)) )")" ]; }; do
			_i=$((_i + 1))
		done
		if [ $_i -eq "$1" ]; then
			echo $_p
			return 0
		fi
		_p=$((20000 + (_p - 20000 + $1) % 12000))
		_tries=$((_tries + 1))
	done
	hard_error "no $1 free ports below 32768"
}

need()
{
	for _cmd in "$@"; do
		command -v "$_cmd" >/dev/null 2>&1 ||
			skip "'$_cmd' is not installed (scripts/install-deps installs it)"
	done
}

if [ -z "${top_srcdir:-}" ]; then
	top_srcdir=$(cd "$(dirname "$0")/.." && pwd) ||
		hard_error "cannot find the source tree from $0"
fi
if [ -z "${LEDGERFS:-}" ]; then
	for _cand in ${top_builddir:+"$top_builddir/src/ledgerfs"} \
		"$top_srcdir/build/src/ledgerfs" "$top_srcdir/src/ledgerfs"; do
		if [ -x "$_cand" ]; then
			LEDGERFS=$_cand
			break
		fi
	done
fi
if [ -z "${LEDGERFS:-}" ] || [ ! -x "$LEDGERFS" ]; then
	hard_error "no ledgerfs program found (LEDGERFS='${LEDGERFS:-}'); build first (scripts/build build) or set LEDGERFS"
fi
export top_srcdir LEDGERFS

TMP=$(mktemp -d "${TMPDIR:-/tmp}/ledgerfs-test.XXXXXX") ||
	hard_error "cannot make a temporary directory"
_lib_cleanup()
{
	if [ "${KEEP_TMP:-0}" = 1 ]; then
		echo "kept $TMP" >&2
	else
		rm -rf "$TMP"
	fi
}
trap _lib_cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# python3 on PATH may be a version manager's shim (pyenv's costs 0.3 s a
# start; the tests start python hundreds of times): put the interpreter
# it runs first on PATH, for the tests and every program they start.
if _py=$(python3 -c 'import sys; print(sys.executable)' 2>/dev/null) &&
	[ -x "$_py" ] && mkdir -p "$TMP/bin" && ln -s "$_py" "$TMP/bin/python3"; then
	PATH=$TMP/bin:$PATH
	export PATH
fi

STATUS=0
run()
{
	STATUS=0
	"$@" >"$TMP/stdout" 2>"$TMP/stderr" || STATUS=$?
}

expect()
{
	_want=$1
	shift
	run "$@"
	if [ "$STATUS" -ne "$_want" ]; then
		echo "stdout:" >&2
		head -c 4000 "$TMP/stdout" >&2
		echo "stderr:" >&2
		head -c 4000 "$TMP/stderr" >&2
		fail "'$*' exited with status $STATUS, expected $_want"
	fi
	# A status over 128 is a signal (a crash), never an acceptable answer.
	[ "$STATUS" -lt 128 ] || fail "'$*' was killed by a signal"
}

expect_stdout()
{
	grep -q -e "$1" "$TMP/stdout" ||
		fail "stdout does not match '$1'; it was: $(head -c 2000 "$TMP/stdout")"
}

expect_stderr()
{
	grep -q -e "$1" "$TMP/stderr" ||
		fail "stderr does not match '$1'; it was: $(head -c 2000 "$TMP/stderr")"
}

file_size()
{
	wc -c <"$1" | tr -d ' '
}

flip_byte()
{
	python3 -c '
import sys
path, off = sys.argv[1], int(sys.argv[2])
with open(path, "r+b") as f:
    f.seek(off)
    b = f.read(1)
    if not b:
        sys.exit("no byte at offset %d" % off)
    f.seek(off)
    f.write(bytes([b[0] ^ 1]))
' "$1" "$2" || fail "flip_byte: cannot flip byte $2 of $1"
}

raw_cid()
{
	python3 -c '
import base64, hashlib, sys
d = hashlib.sha256(open(sys.argv[1], "rb").read()).digest()
print("b" + base64.b32encode(bytes([1, 0x55, 0x12, 0x20]) + d).decode().lower().rstrip("="))
' "$1"
}

# The store tests (store_http.sh, store_s3.sh) define probe (store_probe
# on $U with the arguments: $RESULT is its first line) and $TEST_STORE.
# want RESULT: the last probe's result.
want()
{
	[ "$RESULT" = "$1" ] ||
		fail "expected $1, got '$RESULT' (stderr: $(head -c 1500 "$TMP/stderr"))"
}

# store_conformance URL TIMEOUT_S SERVER: test_store's suite against URL.
store_conformance()
{
	note "conformance test against $1"
	_sc_t0=$(date +%s)
	if ! LFS_TEST_STORE_URL=$1 timeout "$2" "$TEST_STORE" >"$TMP/conf.log" 2>&1; then
		tail -n 60 "$TMP/conf.log" >&2
		fail "the store conformance test failed against $3"
	fi
	note "conformance passed in $(($(date +%s) - _sc_t0)) s"
}

# store_probes_common ODD: a conditional PUT (c/one), then the key ODD
# (odd/a&b<c>...) written, read back and listed by its prefix.
store_probes_common()
{
	note "conditional PUT"
	probe put c/one first absent
	want ok
	probe put c/one second absent
	want EEXIST
	probe get c/one
	want ok
	[ "$(sed -n 2p "$TMP/stdout")" = first ] || fail "if_absent overwrote the object"
	probe put c/one third
	want ok

	note "an odd key written, read back and listed by its prefix"
	probe put "$1" oddvalue
	want ok
	probe get "$1"
	want ok
	[ "$(sed -n 2p "$TMP/stdout")" = oddvalue ] || fail "odd key read back wrong"
	probe list "odd/a&b<c>"
	want ok
	[ "$(sed -n 2p "$TMP/stdout")" = "$1" ] ||
		fail "odd key listed as '$(sed -n 2p "$TMP/stdout")'"
	[ "$(wc -l <"$TMP/stdout")" -eq 2 ] || fail "listing the odd prefix: $(cat "$TMP/stdout")"
}

# retry_for TIMEOUT_S COMMAND...: run COMMAND (quietly) until it succeeds;
# returns 1 when it has not after TIMEOUT_S seconds.
retry_for()
{
	_rf_t=$(($1 * 10))
	shift
	while [ "$_rf_t" -gt 0 ]; do
		"$@" >/dev/null 2>&1 && return 0
		sleep 0.1
		_rf_t=$((_rf_t - 1))
	done
	return 1
}

# sync_mount HOME MOUNTPOINT LOG URL POLL_MS [OPTIONS...]: start the
# daemon `ledgerfs mount -f --remote URL --poll-ms POLL_MS OPTIONS...` of
# HOME at MOUNTPOINT in the background, its output appended to LOG, and
# return once it is mounted (failing after 120 s, or if the daemon exits);
# $sync_pid is its pid. Needs $L, the ledgerfs program.
sync_mount()
{
	_sm_h=$1 _sm_m=$2 _sm_log=$3 _sm_url=$4 _sm_poll=$5
	shift 5
	LEDGERFS_HOME=$_sm_h "$L" mount -f --remote "$_sm_url" \
		--poll-ms "$_sm_poll" --log-level info "$@" "$_sm_m" \
		>>"$_sm_log" 2>&1 &
	sync_pid=$!
	_sm_t=1200
	until mountpoint -q "$_sm_m"; do
		kill -0 "$sync_pid" 2>/dev/null ||
			fail "the daemon for $_sm_m exited: $(tail -n 5 "$_sm_log")"
		_sm_t=$((_sm_t - 1))
		[ "$_sm_t" -gt 0 ] ||
			fail "$_sm_m did not mount in 120 s: $(tail -n 5 "$_sm_log")"
		sleep 0.1
	done
}

no_dotfiles()
{
	for _f in "$1"/.[!.]* "$1"/..?*; do
		[ ! -e "$_f" ] || fail "leftover temporary file $_f"
	done
}
