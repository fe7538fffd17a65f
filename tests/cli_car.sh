#!/bin/sh
# `ledgerfs car`: every subcommand, its output and its failures (corrupt,
# truncated and oversized input, renamed and tampered sealed files, wrong
# keys, bad key files, usage errors). No network, no FUSE.
. "${top_srcdir:-$(dirname "$0")/..}/tests/lib.sh"
set -e
need python3 jq od dd truncate

L=$LEDGERFS
cd "$TMP"

note "usage and --help"
expect 2 "$L" car
expect_stderr 'usage: ledgerfs car SUBCOMMAND'
expect 2 "$L" car frobnicate
expect_stderr "unknown subcommand 'frobnicate'"
expect 0 "$L" car --help
for sub in pack ls verify cat recode seal open keygen; do
	expect 0 "$L" car $sub --help
	expect_stdout "^usage: ledgerfs car $sub"
	[ ! -s "$TMP/stderr" ] || fail "car $sub --help wrote to stderr"
done
expect 2 "$L" car ls
expect_stderr 'missing arguments'
expect 2 "$L" car ls a.car b.car
expect_stderr 'too many arguments'
expect 2 "$L" car ls --frob a.car
expect_stderr "unknown option '--frob'"
expect 2 "$L" car verify --json a.car
expect 2 "$L" car seal x.car
expect_stderr 'key KEYFILE is required'
expect 2 "$L" car seal --key
expect_stderr 'needs a value'

note "keygen"
expect 0 "$L" car keygen k1
[ "$(stat -c %a k1)" = 600 ] || fail "key file mode is $(stat -c %a k1)"
[ "$(file_size k1)" = 65 ] || fail "key file is $(file_size k1) bytes"
head -c 64 k1 | grep -Eq '^[0-9a-f]{64}$' || fail "key file is not hex"
cp k1 k1.copy
expect 1 "$L" car keygen k1
expect_stderr 'already exists'
cmp -s k1 k1.copy || fail "keygen changed an existing key file"
expect 0 "$L" car keygen k2
cmp -s k1 k2 && fail "two keygen runs gave the same key"
expect 1 "$L" car keygen nodir/k
expect_stderr "cannot create 'nodir/k'"

note "pack raw blocks"
printf 'hello, world\n' >a.txt
head -c 70000 /dev/urandom >b.bin # multi-byte section length varint
: >empty.bin
expect 0 "$L" car pack raw.car a.txt b.bin empty.bin
cp "$TMP/stdout" raw.cids
[ "$(wc -l <raw.cids)" -eq 3 ] || fail "pack printed $(wc -l <raw.cids) CIDs"
for f in a.txt b.bin empty.bin; do
	grep -qx "$(raw_cid $f)" raw.cids || fail "pack did not print the raw CID of $f"
done
expect 0 "$L" car verify raw.car
expect_stdout '^ok 3 blocks$'
expect 0 "$L" car ls raw.car
[ "$(grep -c '^root ' "$TMP/stdout")" -eq 3 ] || fail "default roots are not all blocks"
grep -qx "$(raw_cid b.bin) raw 70000" "$TMP/stdout" || fail "ls line of b.bin is wrong"
grep -qx "$(raw_cid empty.bin) raw 0" "$TMP/stdout" || fail "ls line of the empty block is wrong"
for f in a.txt b.bin empty.bin; do
	expect 0 "$L" car cat raw.car "$(raw_cid $f)"
	cmp -s "$TMP/stdout" $f || fail "cat of $f's block differs from $f"
done
no_dotfiles .

note "pack --root"
expect 0 "$L" car pack --root 2 --root=1 --root 2 roots.car a.txt b.bin empty.bin
expect 0 "$L" car ls --json roots.car
jq -e --arg a "$(raw_cid a.txt)" --arg b "$(raw_cid b.bin)" \
	'.roots == [$b, $a] and (.blocks | length) == 3' "$TMP/stdout" >/dev/null ||
	fail "roots are not [b, a]: $(cat "$TMP/stdout")"
expect 2 "$L" car pack --root 4 x.car a.txt b.bin empty.bin
expect_stderr 'expected a file number from 1 to 3'
expect 2 "$L" car pack --root 0 x.car a.txt
expect 2 "$L" car pack --root -1 x.car a.txt
expect 2 "$L" car pack --root one x.car a.txt
[ ! -e x.car ] || fail "a failed pack created its output"

note "identical blocks are stored once"
cp a.txt a2.txt
expect 0 "$L" car pack dup.car a.txt a2.txt
[ "$(sort -u "$TMP/stdout" | wc -l)" -eq 1 ] || fail "identical files gave different CIDs"
expect 0 "$L" car verify dup.car
expect_stdout '^ok 1 blocks$'

note "pack --json, ls --json, cat, recode"
cat >doc.json <<'EOF'
{"title": "milk", "done": false, "n": -42, "big": 9007199254740993,
 "min": -9223372036854775808, "max": 9223372036854775807,
 "f": 0.1, "one": 1.0, "nested": {"a": [1, [2, {"b": null}]], "é": "日本"},
 "link": {"/": "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"},
 "bytes": {"/": {"bytes": "AAECAwQ"}}, "empty": {}, "list": []}
EOF
echo '[1, "two", 3.5]' >arr.json
echo '"just a string"' >str.json
expect 0 "$L" car pack --json docs.car doc.json arr.json str.json
cp "$TMP/stdout" docs.cids
grep -vq '^bafyrei' docs.cids && fail "dag-cbor CIDs should start bafyrei: $(cat docs.cids)"
doc_cid=$(sed -n 1p docs.cids)
expect 0 "$L" car ls --json docs.car
jq -e --arg c "$doc_cid" '.blocks[0].cid == $c and .blocks[0].codec == "dag-cbor"
	and (.blocks[0].size | type) == "number" and (.roots | length) == 3' \
	"$TMP/stdout" >/dev/null || fail "ls --json is wrong: $(cat "$TMP/stdout")"
expect 0 "$L" car cat docs.car "$doc_cid"
cp "$TMP/stdout" doc.out
# Same value (jq compares numbers as doubles; exact checks are in interop.sh)
jq -e --slurpfile want doc.json '. == $want[0]' doc.out >/dev/null ||
	fail "cat of the JSON block is not the document: $(cat doc.out)"
grep -q '^  "one": 1.0,$' doc.out || fail "1.0 did not stay a float"
grep -q '^  "f": 0.1,$' doc.out || fail "0.1 is not printed shortest"
grep -q '^  "big": 9007199254740993,$' doc.out || fail "big integer changed"
grep -q '^  "min": -9223372036854775808,$' doc.out || fail "int64 min changed"
# The output packs back to the same block.
expect 0 "$L" car pack --json again.car doc.out
[ "$(cat "$TMP/stdout")" = "$doc_cid" ] || fail "cat output does not pack back to the same CID"
expect 0 "$L" car cat --raw docs.car "$doc_cid"
expect 0 "$L" car recode docs.car recoded.car
cmp -s docs.car recoded.car || fail "recode output differs from its input"
expect 0 "$L" car recode raw.car recoded-raw.car
cmp -s raw.car recoded-raw.car || fail "recode of raw blocks differs"

note "cat failures"
expect 1 "$L" car cat docs.car "$(raw_cid a.txt)"
expect_stderr "no block $(raw_cid a.txt) in 'docs.car'"
expect 2 "$L" car cat docs.car bnot-a-cid
expect_stderr 'is not a CID'
expect 1 "$L" car cat docs.car not-a-cid
expect_stderr 'expected a CIDv1 in base32'
expect 1 "$L" car cat docs.car QmdfTbBqBPQ7VNxZEYEj14VmRuZBkqFbiwReogJgS1zR1n
expect_stderr 'unsupported'

note "invalid JSON input"
printf '{"a": 1,\n "b": }\n' >bad.json
expect 1 "$L" car pack --json x.car doc.json bad.json
expect_stderr "'bad.json' is not valid JSON: line 2"
echo '{"a": 1, "a": 2}' >dupkey.json
expect 1 "$L" car pack --json x.car dupkey.json
expect_stderr 'dupkey.json'
echo '{"a": 18446744073709551615}' >huge.json
expect 1 "$L" car pack --json x.car huge.json
expect_stderr 'huge.json'
expect 1 "$L" car pack x.car a.txt missing.txt
expect_stderr "cannot read 'missing.txt'"
[ ! -e x.car ] || fail "a failed pack created its output"

note "corrupt CARs name the failing block"
# raw.car's sections: a.txt, b.bin, then empty.bin (varint + CID: 37 bytes)
cp raw.car c1.car
flip_byte c1.car $(($(file_size c1.car) - 37 - 100)) # inside b.bin's bytes
expect 1 "$L" car verify c1.car
expect_stderr "'c1.car': block 2 (section at byte offset [0-9]*): block bytes do not hash to its CID $(raw_cid b.bin)"
expect_stderr 'corrupt or not authentic'
expect 1 "$L" car ls c1.car
expect_stderr 'block 2'
expect 1 "$L" car recode c1.car x.car
expect_stderr 'block 2'
expect 1 "$L" car cat c1.car "$(raw_cid a.txt)"
expect_stderr 'block 2'

cp docs.car c2.car
flip_byte c2.car $(($(file_size c2.car) - 3)) # inside str.json's block
expect 1 "$L" car verify c2.car
expect_stderr "block 3 .*do not hash to its CID $(sed -n 3p docs.cids)"

cp docs.car c3.car
flip_byte c3.car 3 # inside the header
expect 1 "$L" car verify c3.car
expect_stderr "'c3.car': CAR header"

note "truncated CARs"
size=$(file_size raw.car)
head -c $((size - 37 - 5)) raw.car >t1.car # cuts into b.bin's section
expect 1 "$L" car verify t1.car
expect_stderr 'block 2 .*truncated: section claims'
head -c 20 raw.car >t2.car
expect 1 "$L" car verify t2.car
expect_stderr "CAR header: truncated"
: >t3.car
expect 1 "$L" car verify t3.car
expect_stderr 'the file is empty'
expect 1 "$L" car verify a.txt
expect_stderr "'a.txt': CAR header"
expect 1 "$L" car verify missing.car
expect_stderr "cannot read 'missing.car': No such file"
expect 1 "$L" car verify .
expect_stderr 'Is a directory'

note "input size caps"
truncate -s 300M sparse.car
expect 1 "$L" car verify sparse.car
expect_stderr 'too large (over 256 MiB)'
truncate -s 9M nine.bin
expect 1 "$L" car pack x.car nine.bin
expect_stderr "'nine.bin' is too large for one block"
[ ! -e x.car ] || fail "a failed pack created its output"

note "seal and open"
mkdir sealed
expect 0 "$L" car seal --key k1 docs.car sealed
sealed_cid=$(cat "$TMP/stdout")
[ -f "sealed/$sealed_cid" ] || fail "seal did not write sealed/$sealed_cid"
[ "$(raw_cid "sealed/$sealed_cid")" = "$sealed_cid" ] ||
	fail "sealed file is not named by the CID of its bytes"
cmp -s "sealed/$sealed_cid" docs.car && fail "sealed file is the plaintext"
no_dotfiles sealed
expect 0 "$L" car open --key k1 "sealed/$sealed_cid" opened.car
cmp -s opened.car docs.car || fail "open did not give back the CAR"
[ "$(stat -c %a opened.car)" = 600 ] || fail "opened CAR is not mode 0600"
# Default OUTDIR is the current directory; sealing twice gives a new name.
expect 0 "$L" car seal --key=k1 docs.car
[ -f "$(cat "$TMP/stdout")" ] || fail "seal did not write into the current directory"
[ "$(cat "$TMP/stdout")" != "$sealed_cid" ] || fail "two seals gave the same name"
expect 1 "$L" car seal --key k1 c1.car sealed
expect_stderr 'Refusing to seal'
expect 1 "$L" car seal --key k1 docs.car no-such-dir
expect_stderr "cannot write 'no-such-dir/"

note "a renamed sealed file is refused"
other=$(raw_cid a.txt)
cp "sealed/$sealed_cid" "$other"
expect 1 "$L" car open --key k1 "$other" renamed.car
expect_stderr 'does not match its name'
[ ! -e renamed.car ] || fail "open created its output after a name mismatch"
# Under a name that is not a CID there is nothing to check but the key.
cp "sealed/$sealed_cid" plain-name.sealed
expect 0 "$L" car open --key k1 plain-name.sealed plain-name.car
cmp -s plain-name.car docs.car || fail "open of a file not named by a CID failed"

note "wrong key, tampered and truncated sealed files"
expect 1 "$L" car open --key k2 "sealed/$sealed_cid" wrong.car
expect_stderr 'wrong key, or the file was truncated or tampered with'
[ ! -e wrong.car ] || fail "open created its output with a wrong key"
cp "sealed/$sealed_cid" tampered.sealed
flip_byte tampered.sealed 40
expect 1 "$L" car open --key k1 tampered.sealed tampered.car
expect_stderr 'corrupt or not authentic'
[ ! -e tampered.car ] || fail "open created its output from a tampered file"
head -c $(($(file_size "sealed/$sealed_cid") - 1)) "sealed/$sealed_cid" >short.sealed
expect 1 "$L" car open --key k1 short.sealed short.car
expect_stderr 'truncated or tampered with'
[ ! -e short.car ] || fail "open created its output from a truncated file"
head -c 20 "sealed/$sealed_cid" >stub.sealed
expect 1 "$L" car open --key k1 stub.sealed short.car
expect_stderr 'not a sealed ledgerfs file, or it is truncated'
[ ! -e short.car ] || fail "open created its output from a truncated file"
# Tampered and kept under its CID name: the name check catches it first.
cp tampered.sealed "$sealed_cid"
expect 1 "$L" car open --key k1 "$sealed_cid" x.car
expect_stderr 'does not match its name'
# A sealed file of something that is not a CAR.
expect 1 "$L" car open --key k1 a.txt x.car
expect_stderr "'a.txt' is not a sealed ledgerfs file"
[ ! -e x.car ] || fail "open created its output from a non-sealed file"

note "key files of the wrong size"
head -c 31 /dev/urandom >k31
head -c 33 /dev/zero | tr '\0' z >k33 # not random: a trailing blank would read as text
printf '%063d\n' 0 >k63hex
printf '%032d' 0 >k32hex
printf 'zz%062d\n' 0 >knothex
: >kempty
for k in k31 k33 k63hex knothex kempty; do
	expect 1 "$L" car seal --key $k docs.car sealed
	expect_stderr "key file '$k' holds [0-9]* bytes, which is neither 32 raw bytes nor 64 hex characters"
done
expect 1 "$L" car seal --key k32hex docs.car sealed
expect_stderr '32 hex characters (a 16-byte key)'
head -c 5000 /dev/zero >kbig
expect 1 "$L" car open --key kbig "sealed/$sealed_cid" x.car
expect_stderr "key file 'kbig' is too large"
expect 1 "$L" car seal --key no-such-key docs.car sealed
expect_stderr "cannot read key file 'no-such-key'"
# The same key as raw bytes, and as upper-case hex without a newline.
head -c 64 k1 | python3 -c 'import sys; sys.stdout.buffer.write(bytes.fromhex(sys.stdin.read()))' >k1.raw
[ "$(file_size k1.raw)" = 32 ] || fail "could not make a raw key"
expect 0 "$L" car open --key k1.raw "sealed/$sealed_cid" raw-key.car
cmp -s raw-key.car docs.car || fail "raw key did not open the file"
head -c 64 k1 | tr a-f A-F >k1.upper
expect 0 "$L" car open --key k1.upper "sealed/$sealed_cid" upper-key.car
cmp -s upper-key.car docs.car || fail "upper-case hex key did not open the file"

note "output errors"
expect 1 "$L" car pack no-such-dir/x.car a.txt
expect_stderr "cannot write 'no-such-dir/x.car'"
expect 1 "$L" car recode docs.car .
if [ -w /dev/full ]; then
	run sh -c '"$1" car cat raw.car "$2" >/dev/full' sh "$L" "$(raw_cid a.txt)"
	[ "$STATUS" -eq 1 ] || fail "writing to a full device exited $STATUS"
	expect_stderr 'writing to standard output failed'
fi

echo "PASS: cli_car"
