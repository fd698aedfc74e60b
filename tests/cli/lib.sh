# Sourced by the CLI tests: tiny assertion helpers. $LONGCTX is the binary under test.
set -uo pipefail
failures=0
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
MPIRUN=(mpirun --oversubscribe --bind-to none)
[ "$(id -u)" -eq 0 ] && MPIRUN+=(--allow-run-as-root)

fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
pass() { echo "ok: $*"; }

# expect_exit CODE NAME -- COMMAND...   (stdout -> $OUT/stdout, stderr -> $OUT/stderr)
expect_exit() {
  local want=$1 name=$2; shift 3
  "$@" >"$OUT/stdout" 2>"$OUT/stderr"
  local got=$?
  if [ "$got" -eq "$want" ]; then pass "$name (exit $got)"; else
    fail "$name: exit $got, wanted $want"; sed 's/^/  | /' "$OUT/stdout" "$OUT/stderr" | head -20; fi
}
# expect_in FILE PATTERN NAME
expect_in() {
  if grep -qE -- "$2" "$1"; then pass "$3"; else fail "$3: /$2/ not in $(basename "$1")"; sed 's/^/  | /' "$1" | head -20; fi
}
finish() {
  if [ "$failures" -eq 0 ]; then echo "all checks passed"; exit 0; fi
  echo "$failures check(s) failed"; exit 1
}
