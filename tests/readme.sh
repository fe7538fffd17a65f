#!/bin/bash
# shellcheck disable=SC2317 # cleanup and its helpers run from the EXIT trap
# The README's tour, run as a new user would type it: every fenced block that
# README.md marks with an HTML comment
#
#   <!-- readme-test -->                 or
#   <!-- readme-test: KEY=VALUE ... -->
#
# right before it is extracted and run with bash -e, in a fresh HOME under
# /var/tmp (so ~/ledgers is there too) with LEDGERFS_HOME set and a clean
# environment, each block bounded in time. Nothing is installed or built:
# `ledgerfs` on PATH is a wrapper for $LEDGERFS (the program under test).
#
# Keys of a marker:
#   machine=a|b        whose HOME the block runs in (default a): two homes
#                      stand for two machines. A block on b gets on its
#                      standard input the share string (lfskey1:...) that
#                      an earlier block printed, as a user would paste it.
#   vim=EDIT           `vim FILE` in the block makes this edit with the real
#                      vim (scripts/editors vim-es FILE EDIT; EDIT as
#                      scripts/editors takes it, e.g. s/false/true), then
#                      saves and quits, as the block's comment tells a user.
#   then-on-a=PATH     after the block, wait (up to 20 s) until
#                      ~/ledgers/PATH exists on machine a: the README's
#                      promise that a write on b shows up on a.
#
# Remote stores: every s3://... URL in a block is replaced by one file://
# directory shared by the two machines (there is no S3 server here); the
# commands and the protocol are otherwise the same.
#
# Exit status: 0 every block ran and every promise held; 1 otherwise;
# 77 when this machine cannot mount FUSE file systems (/dev/fuse missing or
# not usable). At the end, and on any exit, both mounts are unmounted and
# the daemons waited for.
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
set -u

# shellcheck source=tests/lib.sh
. "${top_srcdir:-$(dirname "$0")/..}/tests/lib.sh"

BLOCK_TIMEOUT=${LFS_README_BLOCK_TIMEOUT:-120}
README=$top_srcdir/README.md
EDITORS=$top_srcdir/scripts/editors

[ -e /dev/fuse ] || skip "/dev/fuse is missing (modprobe fuse; in a container, pass --device /dev/fuse)"
if [ ! -r /dev/fuse ] || [ ! -w /dev/fuse ]; then
	skip "$(id -un) cannot open /dev/fuse"
fi
for cmd in fusermount3 timeout awk sed grep; do
	command -v "$cmd" >/dev/null 2>&1 || fail "'$cmd' is not installed (scripts/install-deps installs it)"
done
[ -r "$README" ] || hard_error "no README at $README"
[ -x "$EDITORS" ] || hard_error "$EDITORS is missing"
LEDGERFS_BIN=$(cd "$(dirname "$LEDGERFS")" && pwd -P)/$(basename "$LEDGERFS")

base=$(mktemp -d /var/tmp/lfs-readme.XXXXXX) || hard_error "cannot make a directory in /var/tmp"
base=$(cd "$base" && pwd -P)
BIN=$base/bin
REMOTE=$base/remote
mkdir -p "$BIN" "$REMOTE" "$base/blocks" "$base/a" "$base/b"
DAEMONS=
HOME_SIGN='~'

# The daemons this test started: ledgerfs processes whose command line
# names a path under $base.
find_daemons()
{
	local d pid args
	for d in /proc/[0-9]*; do
		pid=${d#/proc/}
		args=$({ tr '\0' ' ' <"$d/cmdline"; } 2>/dev/null) || continue
		case $args in
		"$LEDGERFS_BIN "*"$base/"*)
			case " $DAEMONS " in
			*" $pid "*) ;;
			*) DAEMONS="$DAEMONS $pid" ;;
			esac
			;;
		esac
	done
}

mounted()
{
	awk -v d="$1" '$5 == d { found = 1 } END { exit !found }' /proc/self/mountinfo
}

alive()
{
	[ -d "/proc/$1" ] && ! grep -q '^[^)]*) Z' "/proc/$1/stat" 2>/dev/null
}

cleanup()
{
	local st=$? m pid end
	trap - EXIT
	set +e
	find_daemons
	for m in "$base/a/ledgers" "$base/b/ledgers"; do
		if mounted "$m"; then
			timeout -k 2 10 fusermount3 -u "$m" 2>/dev/null ||
				timeout -k 2 10 fusermount3 -uz "$m" 2>/dev/null
		fi
	done
	for pid in $DAEMONS; do
		end=$((SECONDS + 60))
		while alive "$pid" && [ "$SECONDS" -lt "$end" ]; do
			sleep 0.1
		done
		if alive "$pid"; then
			echo "FAIL: the daemon $pid did not exit within 15 s of unmounting; killing it" >&2
			kill -TERM "$pid" 2>/dev/null
			sleep 2
			kill -KILL "$pid" 2>/dev/null
			[ "$st" -ne 0 ] || st=1
		fi
	done
	for m in "$base/a/ledgers" "$base/b/ledgers"; do
		if mounted "$m"; then
			echo "WARNING: $m is still mounted; $base left in place" >&2
			_lib_cleanup
			exit 1
		fi
	done
	if [ "${KEEP_TMP:-0}" = 1 ]; then
		echo "kept $base" >&2
	else
		rm -rf "$base"
	fi
	_lib_cleanup
	exit "$st"
}
trap cleanup EXIT

# ---- the commands a block finds on PATH ----

cat >"$BIN/ledgerfs" <<EOF
#!/bin/sh
exec '$LEDGERFS_BIN' "\$@"
EOF
# vim: the real one, driven headless with the edit the block's marker names.
cat >"$BIN/vim" <<EOF
#!/bin/sh
edit=\$(cat '$base/vim-edit' 2>/dev/null)
[ -n "\$edit" ] || { echo "readme.sh: this block has no vim=EDIT in its marker" >&2; exit 2; }
[ \$# -eq 1 ] || { echo "readme.sh: vim takes one file here" >&2; exit 2; }
PATH='$PATH'
export PATH
if command -v vim >/dev/null 2>&1; then
	exec '$EDITORS' --timeout 60 vim-es "\$1" "\$edit"
fi
echo "readme.sh: vim is not installed; editing with sed -i instead" >&2
exec '$EDITORS' --timeout 60 sed "\$1" "\$edit"
EOF
chmod +x "$BIN/ledgerfs" "$BIN/vim"

# ---- extract the marked blocks ----

awk -v dir="$base/blocks" '
	function fail(msg) { print "README.md:" NR ": " msg > "/dev/stderr"; bad = 1; exit 1 }
	/^<!-- readme-test(:[^>]*)? -->[ \t]*$/ {
		if (want || inblock) fail("marker inside or right after another marker")
		attrs = $0
		sub(/^<!-- readme-test:?[ \t]*/, "", attrs)
		sub(/[ \t]*-->[ \t]*$/, "", attrs)
		want = 1
		next
	}
	want && /^```/ {
		n++
		file = sprintf("%s/%02d.sh", dir, n)
		printf "%s\n", attrs > sprintf("%s/%02d.attrs", dir, n)
		printf "%d\n", NR + 1 > sprintf("%s/%02d.line", dir, n)
		want = 0
		inblock = 1
		next
	}
	want && NF { fail("a readme-test marker must be followed by a fenced block") }
	inblock && /^```/ { inblock = 0; close(file); next }
	inblock { print > file }
	END {
		if (bad) exit 1
		if (want || inblock) { print "README.md: unterminated readme-test block" > "/dev/stderr"; exit 1 }
	}
' "$README" || fail "cannot extract the marked blocks from $README"

nblocks=$(find "$base/blocks" -name '*.sh' | wc -l)
# The tour has a mount, an edit, and a share with a second machine.
[ "$nblocks" -ge 4 ] || fail "README.md has $nblocks blocks marked <!-- readme-test -->; expected the tour's 4 or more"
note "$nblocks README blocks to run, home and mount points under $base"

# ---- run them ----

share=

run_block()
{
	local n=$1 script=$base/blocks/$1.sh machine=a vim_edit='' then_on_a=''
	local kv home log input st line attrs
	line=$(cat "$base/blocks/$n.line")
	attrs=$(cat "$base/blocks/$n.attrs")
	for kv in $attrs; do
		case $kv in
		machine=a | machine=b) machine=${kv#machine=} ;;
		vim=*) vim_edit=${kv#vim=} ;;
		then-on-a=*) then_on_a=${kv#then-on-a=} ;;
		*) fail "README.md:$line: unknown readme-test key '$kv'" ;;
		esac
	done
	home=$base/$machine
	log=$base/blocks/$n.log
	printf '%s\n' "$vim_edit" >"$base/vim-edit"
	# Any s3:// URL becomes the shared file:// store.
	sed -i "s#s3://[^ '\"]*#file://$REMOTE#g" "$script"
	input=/dev/null
	if [ "$machine" = b ]; then
		[ -n "$share" ] || fail "README.md:$line: a block on machine b, but no earlier block printed a share string (ledgerfs key export)"
		printf '%s\n' "$share" >"$base/share.txt"
		input=$base/share.txt
	fi
	note "block $n (README.md line $line) on machine $machine:"
	sed 's/^/    /' "$script"
	st=0
	(
		cd "$home" || exit 1
		exec env -i HOME="$home" USER="$(id -un)" LOGNAME="$(id -un)" \
			PATH="$BIN:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
			SHELL=/bin/bash TERM=dumb LANG=C.UTF-8 \
			LEDGERFS_HOME="$home/.local/share/ledgerfs" \
			${ASAN_OPTIONS:+ASAN_OPTIONS="$ASAN_OPTIONS"} \
			${UBSAN_OPTIONS:+UBSAN_OPTIONS="$UBSAN_OPTIONS"} \
			${LSAN_OPTIONS:+LSAN_OPTIONS="$LSAN_OPTIONS"} \
			timeout -k 5 "$BLOCK_TIMEOUT" bash -e -x "$script"
	) <"$input" >"$log" 2>&1 || st=$?
	find_daemons
	sed 's/^/  | /' "$log"
	if [ "$st" -eq 124 ] || [ "$st" -eq 137 ]; then
		fail "README.md:$line: the block ran over ${BLOCK_TIMEOUT}s"
	fi
	[ "$st" -eq 0 ] || fail "README.md:$line: the block failed (status $st) at its last '+' line above"
	if grep -q 'lfskey1:[0-9a-f]\{64\}' "$log"; then
		share=$(grep -o 'lfskey1:[0-9a-f]\{64\}' "$log" | tail -n 1)
	fi
	if [ -n "$then_on_a" ]; then
		local f=$base/a/ledgers/$then_on_a end=$((SECONDS + 60))
		while [ "$SECONDS" -lt "$end" ]; do
			timeout 5 test -e "$f" && break
			sleep 0.1
		done
		timeout 5 test -e "$f" || fail "README.md:$line: ~/ledgers/$then_on_a never showed up on machine a (20 s)"
		timeout 10 cat "$f" >/dev/null || fail "README.md:$line: cannot read ~/ledgers/$then_on_a on machine a"
		note "$HOME_SIGN/ledgers/$then_on_a showed up on machine a"
	fi
}

for f in "$base"/blocks/*.sh; do
	n=$(basename "$f" .sh)
	run_block "$n"
done

find_daemons
note "every README block ran; unmounting (daemons:$DAEMONS)"
for m in "$base/a/ledgers" "$base/b/ledgers"; do
	if mounted "$m"; then
		timeout -k 2 20 fusermount3 -u "$m" || fail "fusermount3 -u $m failed"
	fi
done
echo "PASS: the README's tour works as written ($nblocks blocks)"
exit 0
