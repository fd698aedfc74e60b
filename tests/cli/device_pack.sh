#!/usr/bin/env bash
# The device machine's run-time pack (jobs/device/pack_runtime.sh) works with this machine's MPI, HDF5 and
# Boost covered (jobs/device/check_pack.sh): longctx --version, mpirun -np 2 longctx info, 2-rank attend.
# Skipped (77) where no mount namespace can be made.
set -euo pipefail
longctx=$1
root=$(cd "$(dirname "$0")/../.." && pwd)
build=$(cd "$(dirname "$longctx")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
bash "$root/jobs/device/pack_runtime.sh" "$build" "$work/runtime"
bash "$root/jobs/device/check_pack.sh" "$build" "$work/runtime"
