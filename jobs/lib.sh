# Shared by the jobs/ scripts: sourced, not run.
#   longctx_install PKG...   apt-get install of the packages not installed yet (nothing when all are)
#   longctx_mpirun ARGS...   mpirun with the flags this machine needs (root, more ranks than cores)
#   longctx_slurm_answers STATE   the slurmctld answering through STATE/slurm.conf is the one that keeps
#                                 its state in STATE (jobs/slurm/start-local.sh), not another cluster's
set -euo pipefail
LONGCTX_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LONGCTX_BUILD="${LONGCTX_BUILD:-$LONGCTX_ROOT/build}"

# Everything the build, the tests and the main job need on a fresh Debian 12.
LONGCTX_BUILD_PACKAGES=(build-essential cmake git openmpi-bin libopenmpi-dev libhdf5-openmpi-dev hdf5-tools
                        libboost-program-options-dev libgtest-dev)
LONGCTX_DEMO_PACKAGES=(python3-numpy python3-h5py)
LONGCTX_TEST_PACKAGES=("${LONGCTX_DEMO_PACKAGES[@]}" slurm-wlm munge gdb)  # gdb: cli_untimed_calls

longctx_sudo() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

longctx_install() {
  local missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "[jobs] installing: ${missing[*]}" >&2  # stderr: callers may capture stdout (start-local.sh)
  longctx_sudo apt-get update -qq >&2
  longctx_sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}

longctx_mpirun() {
  local extra=(--oversubscribe --bind-to none)
  [ "$(id -u)" -eq 0 ] && extra+=(--allow-run-as-root)
  mpirun "${extra[@]}" "$@"
}

longctx_slurm_answers() {
  [ "$(SLURM_CONF="$1/slurm.conf" scontrol show config 2>/dev/null | sed -n 's/^StateSaveLocation *= *//p')" = "$1/ctld" ]
}
