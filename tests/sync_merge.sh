#!/bin/sh
# The merge follows ancestry: three homes of one ledger syncing through a
# file:// store, each document written by one home only. No conflicts may
# appear (nothing was concurrent) and an acknowledged delete stays deleted.
# This is the trace that once brought B-2 back with an old value and listed
# single-writer documents in `ledgerfs conflicts`.
. "${top_srcdir:-$(dirname "$0")/..}/tests/lib.sh"
set -e

L=$LEDGERFS
S=file://$TMP/store
mkdir -p "$TMP/store"
h()
{
	home=$1
	shift
	LEDGERFS_HOME=$TMP/$home "$L" "$@"
}
put()
{
	echo "{\"v\":$3}" | h "$1" put c "$2" >/dev/null ||
		fail "put $2 on $1 failed"
}
sync()
{
	h "$1" sync --remote "$S" c >"$TMP/out" 2>&1 ||
		{ cat "$TMP/out"; fail "sync on $1 failed"; }
}

h A init c >/dev/null
sync A
h A key export c >"$TMP/key"
for x in B C; do
	h $x key import c - <"$TMP/key" >/dev/null
	sync $x
done

put C C-1 0; put A A-1 1; sync C; h A merge c >/dev/null; put B B-2 4
put A A-0 5; put B B-2 6; sync A; put C C-1 8; sync A; put C C-2 10
put A A-1 11; put A A-2 12; put B B-2 13; put C C-0 14; put A A-1 15
sync C; sync C; put A A-2 18; put C C-0 19; sync A; sync B; put B B-1 22
put C C-0 23; put B B-2 24; sync A; sync B; put B B-0 27; put A A-1 28
h B rm c B-2 >/dev/null
for i in 1 2 3; do sync A; sync B; sync C; done

for x in A B C; do
	note "home $x"
	h $x ls c >"$TMP/ls-$x"
	[ "$(tr '\n' ' ' <"$TMP/ls-$x")" = "A-0 A-1 A-2 B-0 B-1 C-0 C-1 C-2 " ] ||
		{ cat "$TMP/ls-$x"; fail "home $x lists other documents"; }
	expect 3 h $x get c B-2
	expect_stderr "no document 'B-2'"
	h $x conflicts c >"$TMP/conflicts-$x"
	[ ! -s "$TMP/conflicts-$x" ] ||
		{ cat "$TMP/conflicts-$x"; fail "conflicts on home $x"; }
	for d in A-1:28 A-2:18 C-0:23 B-1:22 B-0:27 C-1:8; do
		v=$(h $x get c "${d%%:*}" | jq .v)
		[ "$v" = "${d#*:}" ] || fail "$x: ${d%%:*} is $v, not ${d#*:}"
	done
	h $x fsck c >/dev/null || fail "fsck on home $x"
done
cmp "$TMP/ls-A" "$TMP/ls-B" && cmp "$TMP/ls-A" "$TMP/ls-C" ||
	fail "homes disagree"
