#!/usr/bin/env bash
# Where options come from, and what each source refuses: the command line, config files (comments, empty
# values, keys of other commands) and LONGCTX_* variables (interfaces.md; README, "Running").
LONGCTX=$1
source "$(dirname "$0")/lib.sh"

# An on/off option given twice is refused whatever its spelling, as any other option given twice is.
expect_exit 2 "--quiet --quiet" -- "$LONGCTX" info --quiet --quiet
expect_exit 2 "--quiet=1 --quiet=0" -- "$LONGCTX" info --quiet=1 --quiet=0
expect_in "$OUT/stderr" "--quiet: given twice on the command line \('--quiet=1', then '--quiet=0'\)" "names both"
[ ! -s "$OUT/stdout" ] && pass "and ran nothing" || fail "info ran with --quiet=1 --quiet=0"
expect_exit 2 "--quiet=0 --quiet" -- "$LONGCTX" info --quiet=0 --quiet
expect_in "$OUT/stderr" "given twice" "--quiet=0 --quiet is refused too"
expect_exit 0 "--quiet=0 alone" -- "$LONGCTX" info --quiet=0
expect_in "$OUT/stderr" "quiet = false  \[command line\]" "one --quiet=0 still works"

finish
