#!/usr/bin/env bash
# Dependencies, build, then the whole test suite (ctest: unit tests, MPI tests at 1-4 ranks, CLI tests).
#   extra arguments go to ctest, e.g. ./jobs/test.sh -R attention
source "$(dirname "$0")/lib.sh"
longctx_script_args "$0" ctest_args "$@"
longctx_install "${LONGCTX_BUILD_PACKAGES[@]}" "${LONGCTX_TEST_PACKAGES[@]}"
"$LONGCTX_ROOT/jobs/build.sh"
longctx_revive_stale_munge
cd "$LONGCTX_BUILD"
ctest --output-on-failure --timeout 900 "$@"
