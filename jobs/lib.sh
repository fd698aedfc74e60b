# Shared by the jobs/ scripts: sourced, not run.
#   longctx_install PKG...   apt-get install of the packages not installed yet (nothing when all are)
#   longctx_mpirun ARGS...   mpirun with the flags this machine needs (root, more ranks than cores)
#   longctx_mpirun_options   those flags, on one line (for a script that runs mpirun itself, in the background)
#   longctx_slurm_state           the local cluster's state directory (LONGCTX_SLURM_STATE, default
#                                 /tmp/longctx-slurm), absolute and clean: start-local.sh and stop-local.sh
#                                 must name it alike (a trailing '/' or a relative path made stop-local.sh
#                                 miss the cluster's jobs and leave their ranks running without a controller)
#   longctx_slurm_answers STATE   the slurmctld answering through STATE/slurm.conf is the one that keeps
#                                 its state in STATE (jobs/slurm/start-local.sh), not another cluster's
#   longctx_slurm_daemon_pid STATE DAEMON   the pid in STATE/DAEMON.pid (slurmctld, slurmd) when that process
#                                 runs and is DAEMON: a pid file outlives a daemon killed with -9 (or by the
#                                 OOM killer), and its number may be another process's by now
#   longctx_slurm_pid_is PID DAEMON   PID runs (not a zombie) and is DAEMON (by /proc/PID/comm and /proc/PID/stat,
#                                 which any user may read)
#   longctx_slurm_steps STATE     pids of the slurmstepd processes (running jobs) of the cluster of STATE,
#                                 by the SLURM_CONF they inherit from its slurmd (their /proc/PID/environ:
#                                 Slurm 22.05's setproctitle leaves it readable; cli_slurm_launch checks)
#   longctx_script_args SCRIPT MODE ARGS...   -h / --help: SCRIPT's header comment, exit 0; MODE no_args
#                                 refuses any other argument (exit 2), before the script does anything
set -euo pipefail
LONGCTX_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LONGCTX_BUILD="${LONGCTX_BUILD:-$LONGCTX_ROOT/build}"

# Everything the build, the tests and the main job need on a fresh Debian 12.
LONGCTX_BUILD_PACKAGES=(build-essential cmake git openmpi-bin libopenmpi-dev libhdf5-openmpi-dev hdf5-tools
                        libboost-program-options-dev libgtest-dev)
LONGCTX_DEMO_PACKAGES=(python3-numpy python3-h5py)
LONGCTX_TEST_PACKAGES=("${LONGCTX_DEMO_PACKAGES[@]}" slurm-wlm munge gdb strace)  # gdb: cli_untimed_calls; strace: cli_eval

longctx_script_args() {
  local script=$1 mode=$2
  shift 2
  case "${1:-}" in
    -h | --help)
      sed -n '2,/^[^#]/{/^#/s/^# \{0,1\}//p}' "$script"
      exit 0 ;;
  esac
  if [ "$mode" = no_args ] && [ $# -gt 0 ]; then
    echo "$(basename "$script"): takes no arguments (got: $*); its settings are environment variables:" \
         "see $(basename "$script") --help" >&2
    exit 2
  fi
}
longctx_sudo() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

longctx_install() {
  local missing=()
  for pkg in "$@"; do
    # A substring: with more than one architecture's copy, dpkg-query prints their statuses back to back.
    [[ "$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null)" == *"install ok installed"* ]] || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "[jobs] installing: ${missing[*]}" >&2  # stderr: callers may capture stdout (start-local.sh)
  longctx_sudo apt-get update -qq >&2
  longctx_sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}

# The options mpirun needs here, one line: more ranks than cores, no binding, root allowed.
longctx_mpirun_options() {
  local extra=(--oversubscribe --bind-to none)
  [ "$(id -u)" -eq 0 ] && extra+=(--allow-run-as-root)
  echo "${extra[*]}"
}

longctx_mpirun() {
  local extra
  read -ra extra <<<"$(longctx_mpirun_options)"
  mpirun "${extra[@]}" "$@"
}

longctx_slurm_state() { realpath -m -- "${LONGCTX_SLURM_STATE:-/tmp/longctx-slurm}"; }

longctx_slurm_answers() {
  [ "$(SLURM_CONF="$1/slurm.conf" scontrol show config 2>/dev/null | sed -n 's/^StateSaveLocation *= *//p')" = "$1/ctld" ]
}

# A zombie is not running: a daemon just killed keeps its comm until it is reaped (which PID 1 of a container
# may do seconds later), and start-local.sh took it for a live one (before) and started none.
longctx_slurm_pid_is() {
  local stat
  [[ "$1" =~ ^[0-9]+$ ]] && [ "$(cat "/proc/$1/comm" 2>/dev/null)" = "$2" ] &&
    stat=$(cat "/proc/$1/stat" 2>/dev/null) && [[ "${stat##*) }" != [ZX]* ]]
}

longctx_slurm_daemon_pid() {
  local pid
  pid="$(cat "$1/$2.pid" 2>/dev/null)" || return 1
  longctx_slurm_pid_is "$pid" "$2" && echo "$pid"
}

# By the SLURM_CONF they inherit from the slurmd started for STATE (start-local.sh).
longctx_slurm_steps() {
  local pid
  for pid in $(pgrep -x slurmstepd || true); do
    # (grep reads all of it: -q would end the pipe early, which pipefail took for no match)
    longctx_sudo cat "/proc/$pid/environ" 2>/dev/null | tr '\0' '\n' | grep -xF "SLURM_CONF=$1/slurm.conf" >/dev/null &&
      echo "$pid"
  done
  return 0
}

# Removes what the PMIx plugin of killed job steps left in the cluster of state directory $1 (in its spool
# directory, the socket stepd.slurm.pmix.JOB.STEP and directory pmix.JOB.STEP; in its tmp, spmix_appdir_*),
# where no step of that cluster runs: a step of the same job again (the job requeued) could not bind the
# socket, and srun said "task 0 launch failed" and exited 0 (from the Slurm audit: after stop-local.sh had
# killed a step).
longctx_slurm_clear_step_sockets() {
  [ -z "$(longctx_slurm_steps "$1")" ] || return 0
  longctx_sudo rm -rf "$1"/d/stepd.slurm.pmix.* "$1"/d/pmix.* "$1"/tmp/spmix_appdir_* 2>/dev/null || true
}

# Starts munged (Slurm's authentication) unless it runs, with a key made on first use.
longctx_start_munge() {
  pgrep -x munged >/dev/null && return 0
  if [ ! -s /etc/munge/munge.key ]; then
    longctx_sudo mkdir -p /etc/munge
    longctx_sudo dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
    longctx_sudo chmod 400 /etc/munge/munge.key
    longctx_sudo chown munge:munge /etc/munge/munge.key 2>/dev/null || true
  fi
  longctx_sudo mkdir -p /run/munge /var/log/munge /var/lib/munge
  longctx_sudo chown munge:munge /run/munge /var/log/munge /var/lib/munge 2>/dev/null || true
  if id munge >/dev/null 2>&1; then longctx_sudo su -s /bin/sh munge -c /usr/sbin/munged || longctx_sudo /usr/sbin/munged --force
  else longctx_sudo /usr/sbin/munged --force; fi
}

# A munge socket whose munged is gone (killed with the session that started it) makes every MPI process
# retry it for about 2.5 s as it starts (PMIx's munge security), which made the test suite several times
# slower: such a socket gets its munged back. Nothing happens where munge is not installed or runs.
longctx_revive_stale_munge() {
  local socket=/run/munge/munge.socket.2
  [ -S "$socket" ] && [ -x /usr/sbin/munged ] && ! pgrep -x munged >/dev/null || return 0
  echo "note: $socket is there but munged is not running (MPI start-up would wait 2.5 s per process): starting munged" >&2
  longctx_start_munge
}
