#!/bin/sh
# ledgerfs's CARs, CIDs and DAG-CBOR against the reference implementations
# (npm: @ipld/car, @ipld/dag-cbor, @ipld/dag-json, multiformats, ipfs-car;
# installed in tests/interop/node_modules by scripts/install-deps) and
# Python's standard library:
#   a) ledgerfs writes, the references read, re-hash and re-encode;
#   b) the references write, ledgerfs verifies, lists, shows and re-encodes;
#   c) a UnixFS (dag-pb) CAR from `ipfs-car pack` is refused cleanly.
. "${top_srcdir:-$(dirname "$0")/..}/tests/lib.sh"
set -e

I=$top_srcdir/tests/interop
if [ ! -d "$I/node_modules/@ipld/car" ] || [ ! -d "$I/node_modules/ipfs-car" ]; then
	skip "the npm reference implementations are not installed in $I/node_modules (run scripts/install-deps, or 'npm install' there)"
fi
need node python3
IPFS_CAR=$I/node_modules/.bin/ipfs-car
[ -x "$IPFS_CAR" ] || skip "$IPFS_CAR is missing (run scripts/install-deps)"
L=$LEDGERFS
export LEDGERFS
cd "$TMP"

# ---------------------------------------------------------------- a)
note "a) ledgerfs pack --json -> reference readers"
mkdir docs
cat >docs/doc.json <<'EOF'
{"title": "a non-trivial document", "done": false, "nothing": null, "yes": true,
 "ints": [0, 1, 23, 24, 255, 256, 65535, 65536, 4294967295, 4294967296,
          9007199254740991, 9007199254740992, 9007199254740993,
          9223372036854775807, -1, -24, -25, -256, -257, -65537,
          -9007199254740992, -9007199254740993, -9223372036854775808],
 "floats": [0.1, 1.5, -2.5, 1e300, -1e-300, 5e-324, 1.7976931348623157e308,
            2.2250738585072014e-308, 3.141592653589793, -123.456, 1e21],
 "nested": {"a": {"b": {"c": [[], {}, [[]], {"d": [1, {"e": null}]}]}}},
 "unicode": {"é": 1, "日本語": "テキスト", "🎉": "party", "": "empty key",
             "a": 1, "aa": 2, "b": 3, "Z": 4, "z": 5, "ü-longer-key": 6},
 "escapes": "tab\there, newline\n, \"quotes\", \\, nul \u0000, \u00e9, \ud83d\ude00",
 "links": [{"/": "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"},
           {"/": "bafyreiggih343djcsohwp7fallwy7kz2vmnnna52uc4d4bnugsbdb5gy4a"}],
 "bytes": [{"/": {"bytes": ""}}, {"/": {"bytes": "AA"}}, {"/": {"bytes": "AAE"}},
           {"/": {"bytes": "AAEC"}}, {"/": {"bytes": "//79/A"}}],
 "empty": {}, "list": []}
EOF
echo '[1, "two", {"three": [3]}, null, true, false]' >docs/array.json
echo '"a lone string"' >docs/string.json
echo '-9223372036854775808' >docs/int.json
# 300 keys (a 2-byte map head; k9 sorts before k10 by length) and a long string
{
	printf '{'
	i=0
	while [ $i -lt 300 ]; do
		printf '"k%d": %d, ' $i $i
		i=$((i + 1))
	done
	printf '"long": "%s"}\n' "$(head -c 70000 /dev/zero | tr '\0' x)"
} >docs/wide.json
# Floats with integral values: JavaScript reads 1.0 as 1 and writes it as an
# integer, so the reference cannot produce these bytes. DAG-CBOR keeps them
# as 64-bit floats; the expected block, worked out by hand: a map of 6, keys
# in length-first order, each value 0xfb + IEEE 754 big-endian.
echo '{"one": 1.0, "two": 2.0, "neg": -1.0, "big": 4.5e15, "negzero": -0.0, "e2": 1E2}' >docs/floats.json
cat >docs/floats.json.cbor.hex <<'EOF'
a6
62 6532             fb 4059000000000000
63 626967           fb 432ff973cafa8000
63 6e6567           fb bff0000000000000
63 6f6e65           fb 3ff0000000000000
63 74776f           fb 4000000000000000
67 6e65677a65726f   fb 8000000000000000
EOF
set -- docs/doc.json docs/array.json docs/string.json docs/int.json docs/wide.json docs/floats.json
expect 0 "$L" car pack --json docs.car "$@"
cp "$TMP/stdout" docs.cids
expect 0 node "$I/check_ledgerfs_car.mjs" --car docs.car --cids docs.cids --kind json "$@"
cat "$TMP/stdout"
expect 0 "$L" car pack --json --root 6 --root 2 docs-roots.car "$@"
cp "$TMP/stdout" docs-roots.cids
expect 0 node "$I/check_ledgerfs_car.mjs" --car docs-roots.car --cids docs-roots.cids --roots 6,2 --kind json "$@"
cat "$TMP/stdout"

note "a) ledgerfs pack (raw) -> reference readers and Python's sha256"
printf 'hello, world\n' >r1.txt
head -c 200000 /dev/urandom >r2.bin
: >r3.empty
expect 0 "$L" car pack raw.car r1.txt r2.bin r3.empty
cp "$TMP/stdout" raw.cids
expect 0 node "$I/check_ledgerfs_car.mjs" --car raw.car --cids raw.cids --kind raw r1.txt r2.bin r3.empty
cat "$TMP/stdout"
for f in r1.txt r2.bin r3.empty; do
	want=$(python3 -c '
import base64, hashlib, sys
d = hashlib.sha256(open(sys.argv[1], "rb").read()).digest()
print("b" + base64.b32encode(bytes([1, 0x55, 0x12, 0x20]) + d).decode().lower().rstrip("="))
' $f)
	grep -qx "$want" raw.cids || fail "ledgerfs's CID of $f is not $want (Python)"
done
# The same for a dag-cbor block (prefix 01 71 12 20), from the hand-made bytes.
want=$(tr -d ' \n' <docs/floats.json.cbor.hex | python3 -c '
import base64, hashlib, sys
b = bytes.fromhex(sys.stdin.read())
print("b" + base64.b32encode(bytes([1, 0x71, 0x12, 0x20]) + hashlib.sha256(b).digest()).decode().lower().rstrip("="))
')
[ "$(sed -n 6p docs.cids)" = "$want" ] || fail "CID of floats.json is not $want (Python)"

note "a) ipfs-car roots / blocks agree"
for car in docs.car docs-roots.car raw.car; do
	expect 0 "$L" car ls "$car"
	grep '^root ' "$TMP/stdout" | cut -d' ' -f2 >"$car.roots"
	grep -v '^root ' "$TMP/stdout" | cut -d' ' -f1 >"$car.blocks"
	expect 0 "$IPFS_CAR" roots "$car"
	cmp -s "$TMP/stdout" "$car.roots" || fail "ipfs-car roots $car: $(cat "$TMP/stdout")"
	# `ipfs-car blocks` re-hashes every block and exits 1 on a mismatch.
	expect 0 "$IPFS_CAR" blocks "$car"
	cmp -s "$TMP/stdout" "$car.blocks" || fail "ipfs-car blocks $car: $(cat "$TMP/stdout")"
done
[ "$(cat docs-roots.car.roots)" = "$(sed -n 6p docs.cids; sed -n 2p docs.cids)" ] ||
	fail "--root 6 --root 2 gave roots $(cat docs-roots.car.roots)"
# ...and it does notice a bad block, so its success above means something.
cp raw.car bad.car
flip_byte bad.car $(($(file_size bad.car) - 37 - 100))
run "$IPFS_CAR" blocks bad.car
[ "$STATUS" -ne 0 ] || fail "ipfs-car blocks accepted a corrupt CAR; the check above proves nothing"

# ---------------------------------------------------------------- b)
note "b) reference CarWriter -> ledgerfs verify, ls, cat, recode"
mkdir ref work
expect 0 node "$I/write_reference_cars.mjs" ref
cat "$TMP/stdout"
for exp in ref/good-*.expect.json; do
	car=${exp%.expect.json}.car
	nblocks=$(node -e 'console.log(JSON.parse(require("fs").readFileSync(process.argv[1])).blocks.length)' "$exp")
	expect 0 "$L" car verify "$car"
	expect_stdout "^ok $nblocks blocks\$"
	expect 0 "$L" car ls --json "$car"
	cp "$TMP/stdout" "$car.ls.json"
	expect 0 node "$I/compare.mjs" ls "$exp" "$car.ls.json"
	expect 0 "$L" car recode "$car" "$car.recoded"
	cmp -s "$car" "$car.recoded" || fail "recode of $car is not byte-identical"
	expect 0 node "$I/compare.mjs" cat "$car" work
	cat "$TMP/stdout"
done

# ---------------------------------------------------------------- c)
note "c) unsupported CID kinds and formats are refused, not crashed on"
for car in ref/bad-*.car; do
	where=$(cat "${car%.car}.expect.txt")
	case $where in
	header) pattern="'$car': CAR header: unsupported format/CID kind" ;;
	*) pattern="'$car': $where (section at byte offset [0-9]*): unsupported format/CID kind" ;;
	esac
	for sub in verify ls; do
		expect 1 "$L" car $sub "$car"
		expect_stderr "$pattern"
	done
	expect 1 "$L" car recode "$car" x.car
	[ ! -e x.car ] || fail "recode of $car wrote its output"
done
printf 'a small file for ipfs-car\n' >small.txt
expect 0 "$IPFS_CAR" pack small.txt --output unixfs.car
expect 0 "$IPFS_CAR" roots unixfs.car
cp "$TMP/stdout" unixfs.car.root
case $(cat unixfs.car.root) in
bafybei*) ;; # dag-pb, as expected
*) fail "ipfs-car pack made root $(cat "$TMP/stdout"), expected a dag-pb CID" ;;
esac
for sub in verify ls; do
	expect 1 "$L" car $sub unixfs.car
	expect_stderr "CAR header: unsupported format/CID kind"
	expect_stderr 'dag-pb'
done
expect 1 "$L" car cat unixfs.car "$(cat unixfs.car.root)"
expect_stderr 'unsupported format/CID kind'

echo "PASS: interop"
