#!/bin/bash
# Bad Fireproof input through the command line: a missing or wrong key, a
# car that fails authentication, a car whose name does not match, a
# truncated car, garbage in meta/main.json, a keybag file of an unknown
# layout. Each is exit 1 with a message naming the file and the cause.
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
. "${top_srcdir:-$(dirname "$0")/..}/tests/lib.sh"
need node jq
fp=$top_srcdir/tests/fireproof
[ -d "$fp/node_modules/@fireproof/core" ] ||
	skip "@fireproof/core is not installed in tests/fireproof (run scripts/install-deps)"
S=$TMP/s K=$TMP/k
export FP_KEYBAG_URL=file://$K
(cd "$fp" && timeout 120 node writer.mjs "$S" led put a '{"n":1}' &&
	timeout 120 node writer.mjs "$S" led put b '{"n":2}') >"$TMP/app.log" 2>&1 ||
	fail "the Fireproof application failed: $(tail -n 5 "$TMP/app.log")"
fpls() { run timeout 60 "$LEDGERFS" ls --fireproof "$S" --keybag "$K" led; }
fpls
[ "$STATUS" = 0 ] && [ "$(cat "$TMP/stdout")" = "a
b" ] || fail "the good ledger does not list: $STATUS $(cat "$TMP/stderr")"
cp -a "$S" "$TMP/s.good"
cp -a "$K" "$TMP/k.good"
restore() { rm -rf "$S" "$K"; cp -a "$TMP/s.good" "$S"; cp -a "$TMP/k.good" "$K"; }
expect_error() { # WHAT REGEX
	fpls
	[ "$STATUS" = 1 ] || fail "$1: exit $STATUS, expected 1; stderr: $(cat "$TMP/stderr")"
	expect_stderr "$2"
	note "$1: $(cat "$TMP/stderr")"
	restore
}
car=$(cd "$S/led/data" && ls -t ./*.car | head -n 1)
car=${car#./}

rm "$K/_led_data_.json"
expect_error "missing key" "cannot decrypt car file data/.*key the keybag does not hold"
jq '.item.keys |= with_entries(.value.key = "zDQ3eMDHz1XVqECEzqPkzjL")' "$TMP/k.good/_led_data_.json" >"$K/_led_data_.json"
expect_error "wrong key" "key the keybag does not hold (a wrong or missing key)"
flip_byte "$S/led/data/$car" 100
expect_error "tampered car" "data/$car: it fails authentication"
other=$(cd "$S/led/data" && ls ./*.car | grep -v "$car" | head -n 1)
cp "$S/led/data/${other#./}" "$S/led/data/$car"
expect_error "renamed car" "data/$car does not hold what its name says"
head -c 200 "$TMP/s.good/led/data/$car" >"$S/led/data/$car"
expect_error "truncated car" "data/$car: it fails authentication"
echo 'garbage{' >"$S/led/meta/main.json"
expect_error "garbage meta" "meta/main.json: it is not complete JSON after"
echo '[{"cid":"x"}]' >"$S/led/meta/main.json"
expect_error "wrong meta" "meta/main.json: it is not a Fireproof meta file"
echo '{"clazz":"V3FancyKeyItem","item":{}}' >"$K/_led_data_.json"
expect_error "unknown keybag layout" "has a layout this version does not know"
