#!/bin/sh
# Two mounts of one ledger, each with its own local store, replicating
# through a remote store: writes propagate, concurrent writes (the same
# document too) converge to the same state on both with the loser listed as
# a conflict, nothing is lost, and the store holds no plaintext.
#   LFS_SYNC_URL   the remote store (default: a file:// store in a temp dir;
#                  tests/sync_s3.sh and tests/sync_http.sh set it)
. "${top_srcdir:-$(dirname "$0")/..}/tests/lib.sh"

[ -e /dev/fuse ] || skip "no /dev/fuse on this machine"
[ "$(id -u)" -eq 0 ] || command -v fusermount3 >/dev/null ||
	skip "needs root or fusermount3"

L=$LEDGERFS
base=$(mktemp -d /var/tmp/lfs-sync.XXXXXX)
url=${LFS_SYNC_URL:-file://$base/remote}
A=$base/mnt-a
B=$base/mnt-b
mkdir -p "$A" "$B"
cleanup_mounts()
{
	for m in "$A" "$B"; do
		mountpoint -q "$m" && { fusermount3 -u "$m" 2>/dev/null || umount -l "$m"; }
	done
	[ -n "${pa:-}" ] && kill "$pa" 2>/dev/null
	[ -n "${pb:-}" ] && kill "$pb" 2>/dev/null
	wait 2>/dev/null
	rm -rf "$base"
}
trap 'cleanup_mounts' EXIT INT TERM

export LEDGERFS_HOME=$base/home-a
"$L" init shared >/dev/null || fail "init"
share=$("$L" key export shared) || fail "key export"
LEDGERFS_HOME=$base/home-b "$L" key import shared "$share" >/dev/null ||
	fail "key import"

sync_mount "$base/home-a" "$A" "$base/home-a.log" "$url" 200
pa=$sync_pid
sync_mount "$base/home-b" "$B" "$base/home-b.log" "$url" 200
pb=$sync_pid

note "a write on A shows up on B"
echo '{"text": "secret-plaintext-one"}' >"$A/shared/first.json" ||
	fail "write on A"
retry_for 60 grep -q secret-plaintext-one "$B/shared/first.json" || {
	tail -n 5 "$base/home-a.log" "$base/home-b.log"
	fail "B never saw A's write"
}

note "concurrent writes, the same document too, converge"
i=0 w=
while [ $i -lt 10 ]; do
	echo "{\"n\": $i, \"who\": \"a\"}" >"$A/shared/a$i.json" &
	w="$w $!"
	echo "{\"n\": $i, \"who\": \"b\"}" >"$B/shared/b$i.json" &
	w="$w $!"
	i=$((i + 1))
done
echo '{"who": "secret-a"}' >"$A/shared/topsecret-doc.json" &
w="$w $!"
echo '{"who": "secret-b"}' >"$B/shared/topsecret-doc.json" &
w="$w $!"
# shellcheck disable=SC2086 # a list of pids; not the daemons, children too
wait $w
root()
{
	jq -r .root "$1/shared/.ledgerfs/status"
}
same_root()
{
	ra=$(root "$A") && rb=$(root "$B") && [ -n "$ra" ] && [ "$ra" = "$rb" ]
}
retry_for 60 same_root || {
	cat "$A/shared/.ledgerfs/status" "$B/shared/.ledgerfs/status"
	tail -n 5 "$base/home-a.log" "$base/home-b.log"
	fail "A and B did not converge"
}
for f in topsecret-doc first a0 a9 b0 b9; do
	cmp -s "$A/shared/$f.json" "$B/shared/$f.json" ||
		fail "$f.json differs between A and B"
done
n=$(ls "$A/shared" | grep -c '\.json$')
[ "$n" -eq 22 ] || fail "A lists $n documents, expected 22"
# The loser of same.json is listed on both sides.
winner=$(jq -r .who "$A/shared/topsecret-doc.json")
loser=secret-a
[ "$winner" = secret-a ] && loser=secret-b
# Unless one write saw the other before it was made (then the older one
# was overwritten, not lost: it stays in history).
if ! jq -e --arg l "$loser" \
	'.[] | select(.id == "topsecret-doc") | .conflicts[] | select(.document.who == $l)' \
	"$B/shared/.ledgerfs/conflicts" >/dev/null; then
	grep -qs "$loser" "$B"/shared/.snapshots/*/topsecret-doc.json ||
		fail "the losing version ($loser) is neither a conflict nor in history"
fi

note "the wait file returns once everything is pushed"
echo '{"last": true}' >"$A/shared/last.json"
timeout 30 cat "$A/shared/.ledgerfs/wait" | grep -q pushed ||
	fail ".ledgerfs/wait did not report pushed"

note "unmount both; histories check out"
fusermount3 -u "$A" && fusermount3 -u "$B" || fail "unmount"
wait "$pa" "$pb"
pa= pb=
for h in home-a home-b; do
	expect 0 env LEDGERFS_HOME="$base/$h" "$L" fsck shared
done

note "the store holds no plaintext"
if [ "${url#file://}" = "$url" ]; then
	# Copy every object out of the store through its own driver.
	probe=${top_builddir:-$top_srcdir/build}/tests/store_probe
	[ -x "$probe" ] || fail "tests/store_probe is not built"
	mkdir -p "$base/dump"
	"$probe" "$url" list "" | tail -n +2 >"$base/keys" ||
		fail "cannot list the store"
	[ -s "$base/keys" ] || fail "the store lists no objects"
	i=0
	while read -r key; do
		i=$((i + 1))
		"$probe" "$url" get "$key" >"$base/dump/$i" 2>/dev/null
	done <"$base/keys"
	url_dump=file://$base/dump
else
	url_dump=$url
fi
if true; then
	dir=${url_dump#file://}
	for word in secret-plaintext-one secret-a secret-b '"who"' first.json; do
		if grep -rq -- "$word" "$dir"; then
			fail "found '$word' in the store"
		fi
	done
	# Document ids never appear either (only ledger names and CIDs).
	if grep -rqa -e topsecret-doc "$dir"; then
		fail "found a document id in the store"
	fi
fi
echo "PASS: sync_mounts ($url)"
