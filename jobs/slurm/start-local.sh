#!/usr/bin/env bash
# Starts munge, slurmctld and slurmd on this machine with jobs/slurm/slurm.conf.in (one node, localhost),
# waits until the node is idle, and prints the line to export. Idempotent; stop with stop-local.sh. A
# controller restarted on a state directory that holds saved state recovers its queue (pending and
# requeued jobs are kept); a cluster already running with other settings (ports, CPUs) is refused (exit 2):
# stop it first.
#   LONGCTX_SLURM_STATE=dir   where config, state and logs go (default /tmp/longctx-slurm)
#   LONGCTX_SLURM_CPUS=N      CPUs the node advertises (default 4)
#   LONGCTX_SLURM_CTLD_PORT=P, LONGCTX_SLURM_D_PORT=P   slurmctld's and slurmd's ports (default 16817,
#                             16818): another cluster on this machine needs others
# It fails (exit 1, with the daemons' last log lines) when its own daemons are not the ones answering: a
# port held by another cluster made them exit at once while `sinfo` got its answer from that cluster. Then
# it stops the daemons it started itself (before: one whose port was free kept running). munged, which it
# starts when none runs, is left running (stop-local.sh leaves it too: other programs may use it).
[ -n "${BASH_VERSION:-}" ] ||  # (under sh: "source: not found", "Bad substitution")
  { echo "start-local.sh: run it with bash (jobs/slurm/start-local.sh)" >&2; exit 2; }
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
source "$here/../lib.sh"
longctx_script_args "$0" no_args "$@"
longctx_install slurm-wlm munge
# Absolute: the daemons work from / once started (a relative directory made them fail to find their files).
# stop-local.sh resolves it alike (longctx_slurm_state).
state="$(longctx_slurm_state)"
# slurm.conf takes its paths unquoted: a blank (or '#', which starts a comment there) breaks it; '&', '|'
# and '\' would be read by the sed below (before: '&' became "@STATE@" in every path).
case "$state" in
  *[[:space:]#\&\|\\]*) echo "start-local.sh: LONGCTX_SLURM_STATE='$state' holds a blank, '#', '&', '|' or '\'," \
                       "which slurm.conf paths cannot; choose a directory without" >&2; exit 2 ;;
esac
for setting in "LONGCTX_SLURM_CPUS=${LONGCTX_SLURM_CPUS:-4}" "LONGCTX_SLURM_CTLD_PORT=${LONGCTX_SLURM_CTLD_PORT:-16817}" \
               "LONGCTX_SLURM_D_PORT=${LONGCTX_SLURM_D_PORT:-16818}"; do
  value=${setting#*=}
  # (Slurm takes at most 65535 CPUs a node too: before, 70000 passed here and slurmctld failed on it.)
  [[ "$value" =~ ^[1-9][0-9]{0,4}$ ]] && [ "$value" -le 65535 ] ||
    { echo "start-local.sh: $setting: must be a whole number from 1 to 65535" >&2; exit 2; }
done
[ "${LONGCTX_SLURM_CTLD_PORT:-16817}" != "${LONGCTX_SLURM_D_PORT:-16818}" ] ||
  { echo "start-local.sh: LONGCTX_SLURM_CTLD_PORT and LONGCTX_SLURM_D_PORT are both ${LONGCTX_SLURM_D_PORT:-16818}:" \
         "slurmctld and slurmd each need a port of their own" >&2; exit 2; }
mkdir -p "$state/ctld" "$state/d"
host="$(hostname -s)"
# DAEMON of this state directory runs (its pid file names a live DAEMON: before, any live process, so a
# stale file whose number was reused kept the daemon from starting, and the wait below went on ~11 min).
pid_alive() { [ -n "$(longctx_slurm_daemon_pid "$state" "$1")" ]; }
sed -e "s|@HOST@|$host|g" -e "s|@USER@|$(id -un)|g" -e "s|@STATE@|$state|g" \
    -e "s|@CPUS@|${LONGCTX_SLURM_CPUS:-4}|g" -e "s|@CTLD_PORT@|${LONGCTX_SLURM_CTLD_PORT:-16817}|g" \
    -e "s|@D_PORT@|${LONGCTX_SLURM_D_PORT:-16818}|g" "$here/slurm.conf.in" >"$state/slurm.conf.new"
# Daemons running on this directory keep the settings they started with: a slurm.conf rewritten under them
# (before: always) cut them off from every client, stop-local.sh included, and the wait below went on ~10 min.
if { pid_alive slurmctld || pid_alive slurmd; } &&
   ! cmp -s "$state/slurm.conf" "$state/slurm.conf.new"; then
  rm -f "$state/slurm.conf.new"
  if [ -s "$state/slurm.conf" ]; then
    running="other settings ($(grep -E '^(SlurmctldPort|SlurmdPort)=' "$state/slurm.conf" | tr '\n' ' ')$(grep -o \
             'CPUs=[0-9]*' "$state/slurm.conf" | head -1), or another user or host name)"
  else
    running="a slurm.conf that is gone"
  fi
  echo "start-local.sh: the cluster of $state already runs with $running; stop it first" \
       "(LONGCTX_SLURM_STATE=$state jobs/slurm/stop-local.sh) or choose another LONGCTX_SLURM_STATE" >&2
  exit 2
fi
mv -f "$state/slurm.conf.new" "$state/slurm.conf"
export SLURM_CONF="$state/slurm.conf"
# The PMIx plugin's directory of each step (spmix_appdir_UID_JOB.STEP) goes into the state directory (mpi.conf,
# read beside slurm.conf): in /tmp, where it was, one a killed step left made the job of that number in a later
# cluster fail to launch ("task 0 launch failed"), job numbers starting at 1 in each new state directory.
mkdir -p "$state/tmp"
echo "PMIxCliTmpDirBase=$state/tmp" >"$state/mpi.conf"

longctx_start_munge
started=()  # the daemons this run started: stopped again if it fails
# -c (a clean start) only where nothing was saved: a controller restarted on its own state recovers the
# queue (before: -c always, which silently dropped pending and requeued jobs).
if ! pid_alive slurmctld; then
  started+=(slurmctld)
  if [ -n "$(ls -A "$state/ctld")" ]; then
    echo "[slurm] slurmctld recovers the jobs saved in $state/ctld" >&2
    longctx_sudo env SLURM_CONF="$SLURM_CONF" /usr/sbin/slurmctld -f "$SLURM_CONF"
  else
    longctx_sudo env SLURM_CONF="$SLURM_CONF" /usr/sbin/slurmctld -c -f "$SLURM_CONF"
  fi
fi
pid_alive slurmd || { started+=(slurmd); longctx_slurm_clear_step_sockets "$state"
                      longctx_sudo env SLURM_CONF="$SLURM_CONF" /usr/sbin/slurmd -f "$SLURM_CONF"; }

# Ours: both daemons of this state directory alive, and the controller that answers keeps its state here.
ours() { pid_alive slurmctld && pid_alive slurmd && longctx_slurm_answers "$state"; }
# A daemon that exits (a bad port, a config it cannot read) ends the wait: before, it went on for its 60
# rounds, each `sinfo` waiting ~10 s for a controller that was gone.
for i in $(seq 1 60); do
  node_state="$(timeout 10 sinfo -h -N -o %t 2>/dev/null | head -1 || true)"
  case "$node_state" in idle|mix|alloc) ours && { echo "export SLURM_CONF='$SLURM_CONF'"; exit 0; } ;; esac
  [ "$i" -ge 3 ] && ! { pid_alive slurmctld && pid_alive slurmd; } && break
  sleep 1
done
if ! ours; then
  echo "[slurm] the daemons started for $state are not running or not the ones answering on ports" \
       "${LONGCTX_SLURM_CTLD_PORT:-16817}/${LONGCTX_SLURM_D_PORT:-16818} (another cluster on them? set" \
       "LONGCTX_SLURM_CTLD_PORT / LONGCTX_SLURM_D_PORT); logs in $state" >&2
  for daemon in slurmctld slurmd; do pid_alive $daemon || rm -f "$state/$daemon.pid"; done
else
  echo "[slurm] node did not become idle (state '${node_state:-?}'); logs in $state" >&2
fi
tail -n 5 "$state/slurmctld.log" "$state/slurmd.log" >&2 || true
for daemon in "${started[@]}"; do
  if pid_alive $daemon; then
    pid=$(cat "$state/$daemon.pid")
    longctx_sudo kill "$pid" 2>/dev/null || true
    # By /proc (before: kill -0, which a user other than the daemons' gets EPERM from: taken for gone)
    for _ in $(seq 1 50); do longctx_slurm_pid_is "$pid" "$daemon" || break; sleep 0.1; done
    longctx_slurm_pid_is "$pid" "$daemon" && { longctx_sudo kill -9 "$pid" 2>/dev/null || true; }
    echo "[slurm] stopped the $daemon it started (pid $pid)" >&2
  fi
  rm -f "$state/$daemon.pid"
done
exit 1
