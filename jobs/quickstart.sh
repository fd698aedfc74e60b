#!/usr/bin/env bash
# Fresh Debian 12 machine -> dependencies (apt), Release build, then the main job.
source "$(dirname "$0")/lib.sh"
"$LONGCTX_ROOT/jobs/build.sh"
cd "$LONGCTX_ROOT"
LONGCTX=$LONGCTX_BUILD/bin/longctx
$LONGCTX --version
echo "[quickstart] mpirun -np 2 longctx info"
longctx_mpirun -np 2 "$LONGCTX" info --quiet
echo "[quickstart] done"
