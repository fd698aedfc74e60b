#!/usr/bin/env bash
# Configure + Release build (idempotent). The CLI lands at build/bin/longctx.
#   LONGCTX_BUILD=dir    build directory (default: build/)
#   LONGCTX_NATIVE=OFF   portable x86-64 code instead of -march=native
source "$(dirname "$0")/lib.sh"
longctx_script_args "$0" no_args "$@"
longctx_install "${LONGCTX_BUILD_PACKAGES[@]}"
cmake -S "$LONGCTX_ROOT" -B "$LONGCTX_BUILD" -DCMAKE_BUILD_TYPE=Release -DLONGCTX_NATIVE="${LONGCTX_NATIVE:-ON}" >/dev/null
cmake --build "$LONGCTX_BUILD" -j "$(nproc)"
echo "[jobs] built $LONGCTX_BUILD/bin/longctx"
