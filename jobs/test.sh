#!/usr/bin/env bash
# Dependencies, build, then the whole test suite (ctest: unit tests, MPI tests at 1-4 ranks, CLI tests).
#   extra arguments go to ctest, e.g. ./jobs/test.sh -R attention
[ -n "${BASH_VERSION:-}" ] ||  # (under sh: "source: not found", "Bad substitution")
  { echo "test.sh: run it with bash (./jobs/test.sh, or bash jobs/test.sh)" >&2; exit 2; }
for lib in "$(dirname "$0")/lib.sh" "${LONGCTX_ROOT:-/-}/jobs/lib.sh" "${SLURM_SUBMIT_DIR:-/-}/jobs/lib.sh" ""; do
  # sbatch runs a copy of the script from Slurm's spool, where no lib.sh is beside it: then that of
  # $LONGCTX_ROOT, else of the submit directory. Found nowhere, the script stops (before, it went on
  # without lib.sh's settings and error checks, and ended with exit 0 having done nothing).
  [ ! -f "$lib" ] || break
done
[ -n "$lib" ] || { echo "test.sh: jobs/lib.sh is neither beside it nor in \$LONGCTX_ROOT or the submit directory" \
                      "(sbatch runs a copy): submit from the checkout, or set LONGCTX_ROOT to it" >&2; exit 2; }
source "$lib"
longctx_script_args "$0" ctest_args "$@"
longctx_install "${LONGCTX_BUILD_PACKAGES[@]}" "${LONGCTX_TEST_PACKAGES[@]}"
"$LONGCTX_ROOT/jobs/build.sh"
longctx_revive_stale_munge
cd "$LONGCTX_BUILD"
ctest --output-on-failure --timeout 900 "$@"
