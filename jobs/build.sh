#!/usr/bin/env bash
# Configure + Release build (idempotent). The CLI lands at build/bin/longctx.
#   LONGCTX_BUILD=dir    build directory (default: build/)
#   LONGCTX_NATIVE=OFF   portable x86-64 code instead of -march=native
[ -n "${BASH_VERSION:-}" ] ||  # (under sh: "source: not found", "Bad substitution")
  { echo "build.sh: run it with bash (./jobs/build.sh, or bash jobs/build.sh)" >&2; exit 2; }
for lib in "$(dirname "$0")/lib.sh" "${LONGCTX_ROOT:-/-}/jobs/lib.sh" "${SLURM_SUBMIT_DIR:-/-}/jobs/lib.sh" ""; do
  # sbatch runs a copy of the script from Slurm's spool, where no lib.sh is beside it: then that of
  # $LONGCTX_ROOT, else of the submit directory. Found nowhere, the script stops (before, it went on
  # without lib.sh's settings and error checks, and ended with exit 0 having done nothing).
  [ ! -f "$lib" ] || break
done
[ -n "$lib" ] || { echo "build.sh: jobs/lib.sh is neither beside it nor in \$LONGCTX_ROOT or the submit directory" \
                      "(sbatch runs a copy): submit from the checkout, or set LONGCTX_ROOT to it" >&2; exit 2; }
source "$lib"
longctx_script_args "$0" no_args "$@"
longctx_install "${LONGCTX_BUILD_PACKAGES[@]}"
cmake -S "$LONGCTX_ROOT" -B "$LONGCTX_BUILD" -DCMAKE_BUILD_TYPE=Release -DLONGCTX_NATIVE="${LONGCTX_NATIVE:-ON}" >/dev/null
cmake --build "$LONGCTX_BUILD" -j "$(nproc)"
echo "[jobs] built $LONGCTX_BUILD/bin/longctx"
