# What the tests of a mounted Fireproof storage share, sourced after
# fuse_lib.sh's fuse_init: the real @fireproof/core in tests/fireproof
# (the test skips without it), a storage ($FPS) and a keybag ($FPK) under
# $TMP, `app ARGS...` (the application, tests/fireproof/writer.mjs, on
# that storage) and `wait_for COND [S]`.
# shellcheck shell=bash
need node
fp=$top_srcdir/tests/fireproof
[ -d "$fp/node_modules/@fireproof/core" ] ||
	skip "@fireproof/core is not installed in tests/fireproof (run scripts/install-deps)"

FPS=$TMP/fp-storage
FPK=$TMP/fp-keybag
export FP_KEYBAG_URL=file://$FPK
mkdir -p "$FPS"

app()
{
	(cd "$fp" && timeout -k 5 120 node writer.mjs "$FPS" "$@") >>"$TMP/app.log" 2>&1 ||
		fail "the Fireproof application failed: node writer.mjs $*: $(tail -n 5 "$TMP/app.log")"
}

# Wait (up to $2 s, default 60: a saturated machine) until the shell
# condition $1 holds.
wait_for()
{
	local end=$((SECONDS + ${2:-60}))
	until eval "$1"; do
		[ $SECONDS -lt $end ] || fail "waited ${2:-60}s for: $1"
		sleep 0.1
	done
}
