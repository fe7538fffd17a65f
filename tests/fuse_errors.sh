#!/bin/bash
# What the mount refuses, and that it stays up after each refusal:
#   - invalid content (not JSON, not an object, a non-string "_id"):
#     close and fsync answer EINVAL, nothing is committed, the bytes
#     stay readable at the path (a draft), the previous version stays in
#     the ledger and its snapshots, the reason is in .ledgerfs/errors, the
#     status's error count and the log; a valid write then commits;
#   - an "_id" naming another document (a copied file) is not an error:
#     the file name is the identity, the "_id" is replaced;
#   - vim saving invalid content (rename path): the editor fails, nothing
#     is committed, not even the delete of the renamed-away document;
#   - a 300-byte name: ENAMETOOLONG (a 255-byte one works);
#   - a document over 16 MiB: EFBIG on write;
#   - writes, create, unlink, rename, mkdir, rmdir, chmod, utimens, truncate,
#     symlink into .snapshots: EROFS, and vim's :w! there fails;
#   - mkdir of a document's name (x.json) inside a ledger: EPERM.
# After each: the daemon runs, the mount answers, a further write commits,
# and the daemon logged a line (at the test's log level, debug unless
# LFS_LOG_LEVEL says otherwise). The CLI checks the ledger at the end.
# shellcheck disable=SC2016,SC2119,SC2120 # sh -c '...' scripts; optional arguments
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
# shellcheck source=tests/fuse_lib.sh
. "${top_srcdir:-$(dirname "$0")/..}/tests/fuse_lib.sh"
fuse_init
need vim touch chmod mkdir cp

L=err
D=$MNT/$L
n=0
probes=0

# The daemon is up and a write still commits.
still_up()
{
	fuse_alive
	probes=$((probes + 1))
	put_text "$D/probe.json" "{\"probe\": $probes}"
	one_commit
}

# Count the daemon log's lines before an operation...
log_mark()
{
	LOG_MARK=$(wc -l <"$DAEMON_LOG")
}

# ...and wait (up to 60 s: a saturated machine) for a new line after it,
# matching PATTERN if given.
expect_log()
{
	local what=$1 pat=${2:-} end=$((SECONDS + 60))
	while :; do
		if [ "$(wc -l <"$DAEMON_LOG")" -gt "$LOG_MARK" ]; then
			if [ -z "$pat" ] || tail -n +"$((LOG_MARK + 1))" "$DAEMON_LOG" | grep -qF -- "$pat"; then
				return 0
			fi
		fi
		[ $SECONDS -lt $end ] || fail "$what: no new line${pat:+ naming '$pat'} in the daemon log"
		sleep 0.1
	done
}

errors_count()
{
	lfs_status $L
	REPLY=$(jq -r '.errors' <<<"$LFS_STATUS_JSON")
	case $REPLY in
	'' | *[!0-9]*) fail "the status has no error count: $LFS_STATUS_JSON" ;;
	esac
}

# invalid WHAT OP TEXT WANT: write TEXT to good.json with fsop OP (write or
# write-fsync), expect fsop to print WANT, and everything an invalid save
# must do.
invalid()
{
	local what=$1 op=$2 text=$3 want=$4 e0 got
	note "invalid content ($what) via $op"
	printf '%s' "$text" >"$TMP/bad"
	errors_count
	e0=$REPLY
	log_mark
	got=$(fsop "$op" "$D/good.json" "$TMP/bad")
	[ "$got" = "$want" ] || fail "$what: writing good.json: expected '$want', got '$got'"
	expect_commits $L $n
	# The user's bytes stay readable there.
	got=$(bounded cat "$D/good.json" && echo x) || fail "cannot read the draft good.json"
	[ "${got%x}" = "$text" ] || fail "$what: the draft good.json reads
${got%x}
---- expected the bytes written ----
$text"
	[ "$(bounded stat -c %s "$D/good.json")" = "${#text}" ] ||
		fail "$what: the draft's size is not the size of the bytes written"
	# The last good version stays in the ledger and its snapshot.
	lfs_head $L
	expect_file "$D/.snapshots/$REPLY/good.json" "$GOOD_PRETTY"
	# The reason is reported.
	errors_count
	[ "$REPLY" -gt "$e0" ] || fail "$what: the status's error count stayed $e0"
	got=$(bounded cat "$D/.ledgerfs/errors")
	grep -q 'good' <<<"$got" || fail "$what: .ledgerfs/errors does not name good.json: $got"
	expect_log "$what" good
	still_up
}

fuse_mount
bounded mkdir "$D"
put_text "$D/good.json" '{"v":1}'
one_commit
GOOD_PRETTY=$(pretty good '{"v":1}')
[ -z "$(bounded cat "$D/.ledgerfs/errors")" ] || fail ".ledgerfs/errors is not empty before any error"

invalid "not JSON" write '{"v": 2,' close:EINVAL
invalid "not JSON" write-fsync '{"v": 3,' "fsync:EINVAL close:EINVAL"
invalid "an array" write '[1, 2]' close:EINVAL
invalid "a string" write '"just text"' close:EINVAL
invalid "trailing garbage" write '{"v": 2} x' close:EINVAL
invalid "a non-string _id" write '{"_id": 5, "v": 2}' close:EINVAL
grep -q '_id' <<<"$(bounded cat "$D/.ledgerfs/errors")" || fail ".ledgerfs/errors does not mention _id"

note "a valid write over the draft commits; a matching _id is fine"
put_text "$D/good.json" '{"v":2}'
one_commit
expect_doc $L good '{"v":2}'
note "the file name is the identity: an \"_id\" naming another document is replaced (cp, as mv)"
put_text "$D/good.json" '{"_id":"other","v":4}'
one_commit
expect_doc $L good '{"v":4}'
bounded cp "$D/good.json" "$D/copy.json"
one_commit
expect_doc $L copy '{"v":4}'
expect_doc $L good '{"v":4}'
bounded rm "$D/copy.json"
one_commit
put_text "$D/good.json" '{"_id":"good","v":3}'
one_commit
expect_doc $L good '{"v":3}'
GOOD_PRETTY=$(pretty good '{"v":3}')

note "vim saving invalid content: vim fails, nothing is committed (not even a delete)"
log_mark
if editor --vim-cmd 'set backupcopy=no' vim-es "$D/good.json" '=this is not JSON' 2>"$TMP/vim.err"; then
	fail "vim -es saved invalid JSON without an error"
fi
expect_commits --settle $L $n
lfs_head $L
expect_file "$D/.snapshots/$REPLY/good.json" "$GOOD_PRETTY"
expect_log "vim's invalid save" good
still_up
put_text "$D/good.json" '{"v":4}'
one_commit
GOOD_PRETTY=$(pretty good '{"v":4}')
bounded rm -f "$D/good.json~"

note "a 300-byte name: ENAMETOOLONG; 255 bytes work"
long=$(printf 'x%.0s' $(seq 295)).json
[ ${#long} = 300 ] || hard_error "the long name is ${#long} bytes"
log_mark
expect_errno ENAMETOOLONG create "$D/$long"
expect_errno ENAMETOOLONG read "$D/$long"
if bounded touch "$D/$long" 2>"$TMP/touch.err"; then
	fail "touch of a 300-byte name succeeded"
fi
grep -q 'File name too long' "$TMP/touch.err" || fail "touch said: $(cat "$TMP/touch.err")"
expect_log "the 300-byte name"
expect_commits $L $n
still_up
id255=$(printf 'y%.0s' $(seq 250))
put_text "$D/$id255.json" '{"long":true}'
one_commit
expect_doc $L "$id255" '{"long":true}'

note "a document over 16 MiB: EFBIG on write"
python3 -c '
import sys
with open(sys.argv[1], "w") as f:
    f.write("{\"pad\": \"" + "x" * (17 << 20) + "\"}\n")' "$TMP/big"
log_mark
got=$(fsop write "$D/big.json" "$TMP/big")
[ "${got%% *}" = write:EFBIG ] || fail "writing 17 MiB to big.json: expected write:EFBIG first, got '$got'"
expect_commits $L $n
expect_log "the 17 MiB document" big
still_up

note "writes into .snapshots: EROFS"
lfs_head $L
S=$D/.snapshots/$REPLY
expect_file "$S/good.json" "$GOOD_PRETTY"
log_mark
printf '{"v": 9}\n' >"$TMP/nine"
expect_errno EROFS open-w "$S/good.json"
expect_errno open:EROFS write "$S/good.json" "$TMP/nine"
expect_errno open:EROFS write "$S/new.json" "$TMP/nine"
expect_errno EROFS append "$S/good.json"
expect_errno EROFS create "$S/new.json"
expect_errno EROFS create "$S/scratch.txt"
expect_errno EROFS unlink "$S/good.json"
expect_errno EROFS rename "$S/good.json" "$S/moved.json"
expect_errno EROFS rename "$S/good.json" "$D/stolen.json"
expect_errno EROFS rename "$D/probe.json" "$S/probe.json"
expect_errno EROFS mkdir "$S/sub"
expect_errno EROFS rmdir "$S"
expect_errno EROFS chmod "$S/good.json" 600
expect_errno EROFS utime "$S/good.json"
expect_errno EROFS truncate "$S/good.json" 0
expect_errno EROFS symlink good.json "$S/link"
expect_errno EROFS create "$D/.snapshots/new"
expect_errno EROFS mkdir "$D/.snapshots/sub"
expect_errno EROFS create "$D/.snapshots/by-time/new"
expect_log "writes into a snapshot"
for cmd in "touch $S/good.json" "rm -f $S/good.json" "mv $S/good.json $S/x.json" "chmod 600 $S/good.json"; do
	# shellcheck disable=SC2086 # the words of cmd, on purpose
	if bounded $cmd 2>"$TMP/cmd.err"; then
		fail "'$cmd' succeeded in a snapshot"
	fi
	grep -q 'Read-only file system' "$TMP/cmd.err" || fail "'$cmd' said: $(cat "$TMP/cmd.err")"
done
if editor --bang vim-es "$S/good.json" '={"v": 10}' 2>"$TMP/vim.err"; then
	fail "vim's :w! into a snapshot succeeded"
fi
expect_file "$S/good.json" "$GOOD_PRETTY"
expect_errno ENOENT read "$S/x.json"
expect_errno ENOENT read "$S/moved.json"
expect_errno ENOENT read "$D/stolen.json"
expect_commits --settle $L $n
still_up

note "mkdir of a document's name inside a ledger: EPERM"
log_mark
expect_errno EPERM mkdir "$D/sub.json"
if bounded mkdir "$D/sub2.json" 2>"$TMP/mkdir.err"; then
	fail "mkdir of a .json name inside a ledger succeeded"
fi
grep -q 'Operation not permitted' "$TMP/mkdir.err" || fail "mkdir said: $(cat "$TMP/mkdir.err")"
expect_log "mkdir of a .json name" "is a document's, not a folder's"
expect_commits $L $n
still_up

note "the draft and the errors do not reach the ledger"
bounded cat "$D/good.json" >"$TMP/good.final"
bounded cat "$D/probe.json" >"$TMP/probe.final"
bounded cat "$D/$id255.json" >"$TMP/long.final"
fuse_umount
expect_cli_commits $L $n
expect_ids $L good probe "$id255"
expect_cli_doc $L good "$TMP/good.final"
expect_cli_doc $L probe "$TMP/probe.final"
expect_cli_doc $L "$id255" "$TMP/long.final"
cli fsck $L
[ "$STATUS" = 0 ] || fail "ledgerfs fsck $L: $(cat "$TMP/stdout" "$TMP/stderr")"

echo "PASS: fuse_errors"
