#!/bin/bash
# Real editors save documents on a mounted ledger, each with its own save
# sequence (docs/NOTES.md, "How editors save"): vim -es (rename or copy
# backup), vim in tmux (default, and forced rename-and-write), emacs --batch
# and emacs -nw in tmux (lock symlink, backup left behind), nano in tmux
# (lock file, write in place), sed -i (temporary + rename), and editors on a
# file that `touch` made. For each: the exact number of new commits (one per
# save, none for an unchanged save, none late after the rename grace
# period), the content, snapshots showing the version before and after, no
# swap or lock file left over; after unmounting, the CLI shows only the
# documents (no scratch name was committed) and the same total of commits.
# shellcheck disable=SC2016,SC2119,SC2120 # sh -c '...' scripts; optional arguments
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
# shellcheck source=tests/fuse_lib.sh
. "${top_srcdir:-$(dirname "$0")/..}/tests/fuse_lib.sh"
fuse_init
need vim emacs nano tmux sed

L=edit
D=$MNT/$L
n=0 # commits so far
ids=()

# seed ID: a fresh document {"item": "milk", "n": 1} (one commit)
seed()
{
	put_text "$D/$1.json" '{"item":"milk","n":1}'
	n=$((n + 1))
	expect_commits "$L" "$n"
	ids+=("$1")
}

# scenario ID COMMITS FILTER [EDITOR OPTIONS] EDITOR EDIT...
# Run scripts/editors on ID.json; expect COMMITS new commits (after the
# grace period), jq FILTER true on the result, the old version in the
# snapshot of the head before and the new one in the snapshot of the head
# after, and no swap or lock file left.
scenario()
{
	local id=$1 commits=$2 filter=$3 f before after h0 h1 x
	shift 3
	f=$D/$id.json
	before=$(bounded cat "$f" && echo x) || fail "cannot read $f"
	before=${before%x}
	lfs_head $L
	h0=$REPLY
	# scripts/editors [options] EDITOR FILE EDIT...: put FILE after EDITOR
	local args=() seen=0
	while [ $# -gt 0 ]; do
		args+=("$1")
		case $1 in
		--vim-cmd) args+=("$2") && shift ;;
		-*) ;;
		*) if [ $seen = 0 ]; then
			args+=("$f")
			seen=1
		fi ;;
		esac
		shift
	done
	note "$id: scripts/editors ${args[*]}"
	editor "${args[@]}" || fail "$id: scripts/editors ${args[*]} failed (status $?)"
	n=$((n + commits))
	expect_commits --settle "$L" "$n"
	expect_doc_jq $L "$id.json" "._id == \"$id\" and ($filter)"
	after=$(bounded cat "$f" && echo x) || fail "cannot read $f"
	after=${after%x}
	lfs_head $L
	h1=$REPLY
	if [ "$commits" = 0 ]; then
		[ "$h1" = "$h0" ] || fail "$id: no commit expected, but the head moved from $h0 to $h1"
		[ "$after" = "$before" ] || fail "$id: the content changed without a commit:
$before
---- now ----
$after"
	else
		[ "$h1" != "$h0" ] || fail "$id: the head did not move"
		if [ -z "$before" ]; then
			expect_errno ENOENT read "$D/.snapshots/$h0/$id.json"
		else
			expect_file "$D/.snapshots/$h0/$id.json" "${before%$'\n'}"
		fi
		expect_file "$D/.snapshots/$h1/$id.json" "${after%$'\n'}"
	fi
	for x in ".$id.json.swp" ".$id.json.swx" 4913 ".#$id.json" "#$id.json#"; do
		expect_errno ENOENT read "$D/$x"
	done
	SCENARIO_BEFORE=$before
}

fuse_mount
bounded mkdir "$D"

note "vim -es: swap, 4913 probe, backup by rename (backupcopy=auto), write"
seed vimes
scenario vimes 1 '.item == "bread" and .n == 1' vim-es s/milk/bread
expect_errno ENOENT read "$D/vimes.json~"

note "vim -es with backupcopy=yes: backup by copy, write in place"
seed vimcopy
scenario vimcopy 1 '.item == "bread"' --vim-cmd 'set backupcopy=yes' vim-es s/milk/bread
expect_errno ENOENT read "$D/vimcopy.json~"

note "vim -es with nobackup nowritebackup: no backup at all, write in place"
seed vimnb
scenario vimnb 1 '.item == "bread"' --vim-cmd 'set nobackup nowritebackup' vim-es s/milk/bread
expect_errno ENOENT read "$D/vimnb.json~"

note "vim in tmux: two saves in one session are two commits"
seed vim
scenario vim 2 '.item == "cheese"' vim s/milk/bread s/bread/cheese
snap_count_matching $L vim.json '.item == "bread"'
[ "$REPLY" -ge 1 ] || fail "no snapshot holds vim.json's middle version (bread)"
expect_errno ENOENT read "$D/vim.json~"

note "vim in tmux, backupcopy=no (rename doc to doc~, write a new doc): one commit per save, none for an unchanged save"
seed vimren
scenario vimren 1 '.item == "bread"' --vim-cmd 'set backupcopy=no' vim s/milk/bread
scenario vimren 0 '.item == "bread"' --vim-cmd 'set backupcopy=no' vim -
scenario vimren 1 '.item == "jam"' --vim-cmd 'set backupcopy=no' vim s/bread/jam
expect_errno ENOENT read "$D/vimren.json~"

note "emacs --batch: lock symlink, backup by rename (kept), write; two saves"
seed emb
scenario emb 2 '.item == "cheese"' emacs-batch s/milk/bread s/bread/cheese
expect_file "$D/emb.json~" "${SCENARIO_BEFORE%$'\n'}"
note "emacs --batch again: the new backup replaces the old one"
scenario emb 1 '.item == "jam"' emacs-batch s/cheese/jam
expect_file "$D/emb.json~" "${SCENARIO_BEFORE%$'\n'}"
note "emacs --batch forced save of an unchanged buffer: no commit"
scenario emb 0 '.item == "jam"' emacs-batch -

note "emacs -nw in tmux: two saves"
seed emacs
scenario emacs 2 '.item == "cheese"' emacs s/milk/bread s/bread/cheese
expect_file "$D/emacs.json~" "${SCENARIO_BEFORE%$'\n'}"
snap_count_matching $L emacs.json '.item == "bread"'
[ "$REPLY" -ge 1 ] || fail "no snapshot holds emacs.json's middle version (bread)"

note "nano in tmux: lock file, write in place with fsync; two saves, then an unchanged one"
seed nano
scenario nano 2 '.item == "cheese"' nano s/milk/bread s/bread/cheese
scenario nano 0 '.item == "cheese"' nano -
expect_errno ENOENT read "$D/nano.json~"

note "sed -i: a temporary ./sedXXXXXX renamed over the document"
seed sed
scenario sed 1 '.item == "bread"' sed s/milk/bread
scenario sed 0 '.item == "bread"' sed -
left=$(bounded ls -a "$D" | grep -E '^sed[A-Za-z0-9]{6}$' || true)
[ -z "$left" ] || fail "sed -i left temporary files: $left"

note "touch new.json, then an editor writes it: one commit"
for ed in vim-es vim emacs-batch emacs nano; do
	id=fresh-$ed
	bounded touch "$D/$id.json"
	expect_commits $L $n
	scenario "$id" 1 ".editor == \"$ed\"" "$ed" "={\"editor\": \"$ed\", \"list\": [1, 2]}"
	ids+=("$id")
done

note "the documents through the mount, then unmount"
ls_now=$(bounded ls "$D" | grep '\.json$' | LC_ALL=C sort)
want=$(printf '%s.json\n' "${ids[@]}" | LC_ALL=C sort)
[ "$ls_now" = "$want" ] || fail "ls $D (*.json): expected
$want
---- got ----
$ls_now"
snap_events $L
[ "$(wc -l <<<"$REPLY")" = "$n" ] || fail "expected $n snapshot directories, got: $REPLY"
mkdir "$TMP/final"
for id in "${ids[@]}"; do
	bounded cat "$D/$id.json" >"$TMP/final/$id"
done
fuse_umount

note "the CLI: $n commits, only the documents, the same content"
expect_cli_commits $L $n
expect_ids $L "${ids[@]}"
for id in "${ids[@]}"; do
	expect_cli_doc $L "$id" "$TMP/final/$id"
done

echo "PASS: fuse_editors"
