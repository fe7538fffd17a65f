#!/bin/sh
# Fireproof interop: the real @fireproof/core 0.24.19 (tests/fireproof,
# installed by scripts/install-deps) writes ledgers — puts, updates,
# deletes, bulk, a commit split over several cars, a compacted ledger, two
# synced instances with several heads, unicode, numbers at the edges, an
# attachment — and `ledgerfs ls/get/cat/log/status --fireproof` must show
# them byte for byte as Fireproof returns them (tests/fireproof/interop.mjs).
. "${top_srcdir:-$(dirname "$0")/..}/tests/lib.sh"

need node
fp=$top_srcdir/tests/fireproof
[ -d "$fp/node_modules/@fireproof/core" ] ||
	skip "@fireproof/core is not installed in tests/fireproof (run scripts/install-deps)"
cd "$fp" || hard_error "cannot enter $fp"
timeout -k 10 900 node interop.mjs "$LEDGERFS" "$TMP" || fail "the Fireproof interop checks failed (see above)"
