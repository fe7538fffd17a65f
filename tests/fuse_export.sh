#!/bin/bash
# ledgerfs export and import name documents as a mount does (issue 11's
# folders): the export of a ledger is the tree its mount shows (diff -r);
# that tree copied into a mount (cp -r) or imported into another ledger
# gives the same ids and bodies; a mount's tree imported gives them too.
# Ids that need escapes (a//b, /lead, .env, x.json/y, 50%, a/./b) included.
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
# shellcheck source=tests/fuse_lib.sh
. "${top_srcdir:-$(dirname "$0")/..}/tests/fuse_lib.sh"
fuse_init

# bulk import|export ARGS: the bulk commands (they take the home from
# LEDGERFS_HOME)
bulk()
{
	run bounded env LEDGERFS_HOME="$LFS_HOME" "$LEDGERFS" "$@"
}

# same_ledgers A B: the same ids, each with the same body
same_ledgers()
{
	cli ls "$1"
	cp "$TMP/stdout" "$TMP/ids.$1"
	cli ls "$2"
	cmp -s "$TMP/ids.$1" "$TMP/stdout" || fail "ledgers $1 and $2 have different ids:
$(diff "$TMP/ids.$1" "$TMP/stdout")"
	[ -s "$TMP/ids.$1" ] || fail "ledger $1 is empty"
	while IFS= read -r id; do
		cli get "$1" "$id"
		cp "$TMP/stdout" "$TMP/a.json"
		cli get "$2" "$id"
		cmp -s "$TMP/a.json" "$TMP/stdout" || fail "document $id differs between $1 and $2"
	done <"$TMP/ids.$1"
}

note "a ledger with folders and ids that need escapes"
for l in src frommount imported; do
	cli init $l
	[ "$STATUS" = 0 ] || fail "ledgerfs init $l: $(cat "$TMP/stderr")"
done
printf '{"v":1}' >"$TMP/v.json"
for id in top notes/2026/a notes/b deep/er/est/c a//b /lead trail/ .env x.json/y 50% a/./b 'sp ace/ü'; do
	cli put src "$id" "$TMP/v.json"
	[ "$STATUS" = 0 ] || fail "ledgerfs put src $id: $(cat "$TMP/stderr")"
done

bulk export src "$OUTSIDE/exp"
[ "$STATUS" = 0 ] || fail "export: $(cat "$TMP/stderr")"
grep -qx '12 documents exported' "$TMP/stdout" || fail "export: $(cat "$TMP/stdout")"

fuse_mount
note "the export is the tree the mount shows"
bounded diff -r "$MNT/src" "$OUTSIDE/exp" >"$TMP/diff" || fail "the mount and the export differ:
$(cat "$TMP/diff")"
[ -f "$OUTSIDE/exp/notes/2026/a.json" ] || fail "export has no notes/2026/a.json"

note "a mount's tree imported gives the same ids"
bulk import frommount "$MNT/src"
[ "$STATUS" = 0 ] || fail "import of the mount's tree: $(cat "$TMP/stderr")"
grep -qx '12 documents imported' "$TMP/stdout" || fail "import: $(cat "$TMP/stdout")"

note "the export copied into a mount (cp -r) gives the same ids"
bounded mkdir "$MNT/copied"
bounded cp -r "$OUTSIDE/exp/." "$MNT/copied/"
expect_saved copied 0 12
fuse_umount
same_ledgers src frommount
same_ledgers src copied

note "export, import into another ledger: the same ids and bodies"
bulk import imported "$OUTSIDE/exp"
[ "$STATUS" = 0 ] || fail "import: $(cat "$TMP/stderr")"
[ ! -s "$TMP/stderr" ] || fail "import of an export skipped something: $(cat "$TMP/stderr")"
same_ledgers src imported
