#!/bin/bash
# A Fireproof storage mounted for real (ledgerfs mount --fireproof): the
# application (tests/fireproof/writer.mjs, the real @fireproof/core)
# commits while mounted and the mount follows within a poll; a half-written
# meta/main.json is retried and never shown as an error; the application
# killed mid-commit leaves the mount serving the last whole commit; writes
# are refused with EROFS and the reason in .ledgerfs/errors; a ledger with
# a bad keybag file or a garbage meta file is an error in its status while
# the daemon serves the rest.
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
# shellcheck source=tests/fuse_lib.sh
. "${top_srcdir:-$(dirname "$0")/..}/tests/fuse_lib.sh"
fuse_init
# shellcheck source=tests/fireproof_lib.sh
. "$top_srcdir/tests/fireproof_lib.sh"

fpcli()
{
	run bounded "$LEDGERFS" "$1" --fireproof "$FPS" --keybag "$FPK" "${@:2}"
}

status_field()
{
	bounded cat "$MNT/$1/.ledgerfs/status" | jq -r "$2"
}

note "the application writes a ledger"
app app put doc1 '{"v":1,"name":"first"}'
fuse_mount --fireproof "$FPS" --keybag "$FPK" --poll-ms 200
D=$MNT/app
wait_for '[ -f "$D/doc1.json" ]' 60
fpcli get app doc1
expect_file "$D/doc1.json" "$(cat "$TMP/stdout")"
[ "$(status_field app .read_only)" = true ] || fail "status does not say read-only"

note "the application commits while mounted: the mount follows"
app app put doc2 '{"v":2}'
wait_for '[ -f "$D/doc2.json" ]'
app app put doc1 '{"v":3}'
wait_for 'grep -q "\"v\": 3" "$D/doc1.json"'
app app del doc2
wait_for '[ ! -e "$D/doc2.json" ]'
changes=$(bounded cat "$D/.ledgerfs/changes")
grep -q ' + doc2$' <<<"$changes" || fail "changes has no '+ doc2': $changes"
grep -q ' ~ doc1$' <<<"$changes" || fail "changes has no '~ doc1': $changes"
grep -q ' - doc2$' <<<"$changes" || fail "changes has no '- doc2': $changes"
lfs_head app
[ -d "$D/.snapshots/$REPLY" ] || fail "no snapshot for the head $REPLY"
n=$(bounded ls "$D/.snapshots/by-time" | wc -l)
m=$(bounded ls "$D/.snapshots" | grep -vcx by-time)
[ "$n" = "$m" ] || fail "by-time has $n links for $m events"

note "writes are refused with EROFS and a reason"
echo '{"x":1}' >"$TMP/doc.json"
expect_errno open:EROFS write "$D/doc1.json" "$TMP/doc.json"
expect_errno EROFS create "$D/new.json"
expect_errno EROFS unlink "$D/doc1.json"
expect_errno EROFS rename "$D/doc1.json" "$D/doc9.json"
expect_errno EROFS mkdir "$MNT/newledger"
expect_errno EROFS mkdir "$D/.snapshots/x"
errors=$(bounded cat "$D/.ledgerfs/errors")
grep -q 'refused creating app/new.json: Fireproof ledgers are mounted read-only' <<<"$errors" ||
	fail ".ledgerfs/errors does not give the reason: $errors"
nerr=$(status_field app .errors)

note "a half-written meta/main.json is retried, not an error"
META=$FPS/app/meta/main.json
cp "$META" "$TMP/meta.whole"
size=$(file_size "$META")
head -c $((size / 2)) "$TMP/meta.whole" >"$META"
wait_for '[ "$(status_field app .meta_incomplete_since)" != null ]'
[ -f "$D/doc1.json" ] || fail "doc1 vanished while meta/main.json was half written"
[ "$(status_field app .errors)" = "$nerr" ] || fail "a half-written meta file was reported as an error"
: >"$META"
bounded ls "$D" >/dev/null
cp "$TMP/meta.whole" "$META"
wait_for '[ "$(status_field app .meta_incomplete_since)" = null ]'
[ "$(status_field app .errors)" = "$nerr" ] || fail "a truncated meta file was reported as an error"

note "the application killed while committing"
for round in 1 2 3; do
	rm -rf "$TMP/fp-before"
	mkdir "$TMP/fp-before"
	cp -a "$FPS" "$FPK" "$TMP/fp-before/"
	(cd "$fp" && exec node writer.mjs "$FPS" app loop 100000 "k$round-") >"$TMP/loop.out" 2>>"$TMP/app.log" &
	pid=$!
	LFS_BG_PIDS="$LFS_BG_PIDS $pid"
	wait_for '[ "$(wc -l <"$TMP/loop.out")" -ge $((round * 4)) ]' 60
	kill -KILL "$pid"
	wait "$pid" 2>/dev/null || true
	fuse_alive
	if jq -e . "$META" >/dev/null 2>&1; then
		# A whole meta file: what Fireproof itself finds after the kill
		# (a fresh instance, as the restarted application) shows. (A put
		# that returned may not have reached meta/main.json yet.)
		if ! (cd "$fp" && timeout -k 5 120 node writer.mjs "$FPS" app alldocs) \
			>"$TMP/fp-ids" 2>"$TMP/alldocs.err"; then
			# Fireproof's file gateway writes with writeFile (truncate,
			# then write), so a kill can leave a file that Fireproof
			# itself cannot read back. Then there is nothing to compare
			# with: the mount must stay up and keep serving, and the
			# storage goes back to its state before the round, as a
			# user would restore it.
			note "round $round: Fireproof itself cannot open its storage after the kill: $(grep -m 1 '^Error: ' "$TMP/alldocs.err" | cut -c 1-300)"
			cat "$TMP/alldocs.err" >>"$TMP/app.log"
			fuse_alive
			[ -f "$D/doc1.json" ] || fail "doc1 vanished after Fireproof broke its own storage"
			rm -rf "$FPS" "$FPK"
			cp -a "$TMP/fp-before/$(basename "$FPS")" "$TMP/fp-before/$(basename "$FPK")" "$TMP/"
			fpcli status --json app
			want=$(jq -c .heads "$TMP/stdout")
			wait_for '[ "$(status_field app .heads | jq -c .)" = "$want" ]'
			nerr=$(status_field app .errors)
			continue
		fi
		cat "$TMP/alldocs.err" >>"$TMP/app.log"
		last=$(sed -n "s/^k$round-//p" "$TMP/fp-ids" | sort -n | tail -n 1)
		note "round $round: the application acknowledged $(wc -l <"$TMP/loop.out") puts, Fireproof finds $(grep -c "^k$round-" "$TMP/fp-ids")"
		[ -z "$last" ] || wait_for "[ -f \"\$D/k$round-$last.json\" ]"
	else
		note "round $round: killed mid-write; meta/main.json is $(file_size "$META") bytes"
		wait_for '[ "$(status_field app .meta_incomplete_since)" != null ]'
		[ -f "$D/doc1.json" ] || fail "doc1 vanished after the application died mid-write"
		cp "$TMP/meta.whole" "$META" # what the restarted application finds
	fi
	[ "$(status_field app .errors)" = "$nerr" ] || fail "round $round: the kill produced an error: $(bounded cat "$D/.ledgerfs/errors")"
done
app app put after-kill '{"ok":true}'
wait_for '[ -f "$D/after-kill.json" ]'

note "bad input: the ledger shows its error, the daemon stays up"
app bad put x '{"y":1}'
printf '{"something": "else"}\n' >"$FPK/_bad_data_.json"
bounded ls "$MNT/bad" >/dev/null
status_field bad .last_error | grep -q 'layout this version does not know' ||
	fail "bad keybag: status says $(bounded cat "$MNT/bad/.ledgerfs/status")"
fuse_alive
printf '[{"cid":"bafy","data":"Mxx"}]' >"$META"
wait_for '[ "$(status_field app .errors)" -gt "$nerr" ]'
status_field app .last_error | grep -q 'meta/main.json: it is not a Fireproof meta file' ||
	fail "garbage meta: $(bounded cat "$D/.ledgerfs/status")"
[ -f "$D/after-kill.json" ] || fail "a garbage meta file hid the last good state"
fuse_alive
fuse_umount
