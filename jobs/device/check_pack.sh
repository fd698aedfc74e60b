#!/usr/bin/env bash
# Checks a pack made by pack_runtime.sh HERE, as the device machine would see it: in a private mount
# namespace every system file the pack carries is covered by an empty one (so a library, plugin or help
# file still taken from the system fails loudly), then the packed runtime runs `longctx --version`,
# `mpirun -np 2 longctx info` and a 2-rank `longctx attend` (HDF5 read and write).
#   jobs/device/check_pack.sh [BUILD (build-cuda)] [DIR (.device/runtime)]
# Needs root and unshare(1); exits 77 (skipped) where a mount namespace cannot be made.
set -euo pipefail
case "${1:-}" in  # --help: the header above; an option is refused before anything runs (exit 2)
  -h | --help) sed -n '2,/^[^#]/{/^#/s/^# \{0,1\}//p}' "$0"; exit 0 ;;
  -*) echo "check_pack.sh: unknown option '$1' (--help)" >&2; exit 2 ;;
esac
[ $# -le 2 ] || { echo "check_pack.sh: takes at most two arguments, BUILD and DIR (got: $*; --help)" >&2; exit 2; }
build=$(cd "${1:-build-cuda}" && pwd)
pack=$(cd "${2:-.device/runtime}" && pwd)
unshare -m true 2>/dev/null || { echo "check_pack: no mount namespace here (needs root); skipped"; exit 77; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
/usr/bin/python3 - "$work/in.h5" <<'EOF'
import sys, h5py, numpy as np
rng = np.random.default_rng(0)
with h5py.File(sys.argv[1], "w") as f:
    for name in "qkv":
        f[name] = rng.standard_normal((64, 2, 8)).astype(np.float32)
EOF
export LONGCTX_BIN="$build/bin/longctx" PACK="$pack" WORK="$work"
unshare -m bash -euo pipefail -c '
  # Cover the system copies of what the pack carries.
  (cd "$PACK/root" && find . -type f -o -type l) | sed "s|^\.||" | while read -r f; do
    if [ -f "$f" ]; then mount --bind /dev/null "$f"; fi
  done
  for d in /usr/lib/x86_64-linux-gnu/openmpi /usr/lib/x86_64-linux-gnu/pmix2 /usr/share/openmpi /etc/openmpi; do
    if [ -d "$d" ]; then mount -t tmpfs none "$d"; fi
  done
  if env -u LD_LIBRARY_PATH "$LONGCTX_BIN" --version >/dev/null 2>&1; then
    echo "check_pack: the binary still runs with the system libraries covered: the check proves nothing"; exit 1
  fi
  source "$PACK/env.sh"
  cd "$WORK"
  "$LONGCTX_BIN" --version
  mpirun --oversubscribe -np 2 "$LONGCTX_BIN" info
  mpirun --oversubscribe -np 2 "$LONGCTX_BIN" attend --input in.h5 --output out.h5 --segment-lengths 16,32 \
    --dilation-rates 1,2 --quiet
  [ -s out.h5 ] && echo "check_pack: attend wrote out.h5 on 2 ranks"
'
echo "check_pack: OK"
