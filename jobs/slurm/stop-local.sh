#!/usr/bin/env bash
# Stops the cluster start-local.sh started: cancels its jobs (their ranks get SIGTERM: a train run
# checkpoints) and waits up to 60 s for them to end, then stops slurmd and slurmctld (munge is left
# running: other users may share it). Stopping the daemons alone left running jobs behind, with no
# controller. LONGCTX_SLURM_STATE: the state directory given to start-local.sh (default /tmp/longctx-slurm).
# A controller that is gone (killed, crashed) while jobs of it run cannot cancel them: their processes get
# the SIGTERM scancel gives, and SIGKILL after 60 s (before: they kept running, and it said nothing). A
# daemon is stopped only when its pid file names that daemon: a stale file (the daemon killed with -9) is
# removed, and the process of that number left alone (before: it got SIGTERM, then SIGKILL, whatever it was).
[ -n "${BASH_VERSION:-}" ] ||  # (under sh: "source: not found", "Bad substitution")
  { echo "stop-local.sh: run it with bash (jobs/slurm/stop-local.sh)" >&2; exit 2; }
source "$(cd "$(dirname "$0")" && pwd)/../lib.sh"  # longctx_sudo: start-local.sh started them with it
longctx_script_args "$0" no_args "$@"
set +e                                               # stop what can be stopped, whatever fails
state="$(longctx_slurm_state)"
steps=$(longctx_slurm_steps "$state")
# (Jobs may run on after their daemons: a controller and slurmd that exited removed their pid files.)
if [ ! -s "$state/slurmctld.pid" ] && [ ! -s "$state/slurmd.pid" ] && [ -z "$steps" ]; then
  echo "stop-local.sh: no daemons of $state to stop (is LONGCTX_SLURM_STATE the one start-local.sh used?)" >&2
  exit 0
fi
# Only this cluster's jobs: its controller alive and the one answering (not another cluster on its ports).
answers=0
descendants() { local child; for child in $(pgrep -P "$1"); do echo "$child"; descendants "$child"; done; }
alive_of() { local pid; for pid in "$@"; do longctx_sudo kill -0 "$pid" 2>/dev/null && echo "$pid"; done; }
if [ -n "$(longctx_slurm_daemon_pid "$state" slurmctld)" ]; then
  if longctx_slurm_answers "$state"; then
    answers=1
  else
    echo "stop-local.sh: the controller of $state does not answer through $state/slurm.conf (another" \
         "cluster on its port?): its jobs, if any, are not cancelled and may keep running" >&2
  fi
elif [ -n "$steps" ]; then
  # Its jobs cannot be cancelled (a controller started again recovers only the state it saved last, where
  # a job that had just started may be pending): their steps' processes get the SIGTERM scancel would give
  # them (a train run checkpoints and exits 75), and SIGKILL after 60 s.
  echo "stop-local.sh: the controller of $state is not running, and job steps of it are ($(for pid in $steps; do
    ps -o pid=,args= -p "$pid"; done | xargs)): ending their processes as scancel would (SIGTERM; the" \
    "controller's saved state may still hold their jobs: a later start-local.sh shows them RUNNING with nothing" \
    "behind them; scontrol requeue JOB runs one again, from its checkpoint, and scancel JOB ends it)" >&2
  tasks=$(for pid in $steps; do descendants "$pid"; done)
  [ -n "$tasks" ] && longctx_sudo kill -TERM $tasks 2>/dev/null
  for _ in $(seq 1 120); do
    [ -z "$(alive_of $tasks)" ] && break
    sleep 0.5
  done
  # What is left, also what was started since (a trap's child): SIGKILL, before their slurmstepd, which
  # waits for the controller to hear of the end, goes too (its children would outlive it).
  left=$(for pid in $(longctx_slurm_steps "$state"); do descendants "$pid"; done)
  [ -n "$left" ] && { echo "stop-local.sh: processes $(echo $left) of those steps still running: SIGKILL" >&2
                      longctx_sudo kill -KILL $left 2>/dev/null; }
  sleep 1
  left=$(longctx_slurm_steps "$state")
  [ -n "$left" ] && longctx_sudo kill -KILL $left 2>/dev/null && sleep 0.5
  longctx_slurm_clear_step_sockets "$state"  # (a killed step leaves its PMIx socket: a requeue could not start)
fi
if [ "$answers" -eq 1 ]; then
  export SLURM_CONF="$state/slurm.conf"
  jobs=$(squeue -h -o %i 2>/dev/null)
  if [ -n "$jobs" ]; then
    echo "stop-local.sh: cancelling job(s) $(echo $jobs)" >&2
    scancel $jobs 2>/dev/null
    # Gone from the queue is not yet ended: slurmd must be there while their steps end their processes.
    for _ in $(seq 1 120); do
      [ -z "$(squeue -h -o %i 2>/dev/null)" ] && [ -z "$(longctx_slurm_steps "$state")" ] && break
      sleep 0.5
    done
    [ -n "$(squeue -h -o %i 2>/dev/null)$(longctx_slurm_steps "$state")" ] && echo "stop-local.sh: job(s)" \
      "$(echo $jobs) still ending after 60 s (in the queue: $(squeue -h -o %i | xargs); slurmstepd" \
      "processes: $(longctx_slurm_steps "$state" | xargs)); stopping the daemons anyway" >&2
  fi
fi
for daemon in slurmd slurmctld; do
  [ -e "$state/$daemon.pid" ] || continue
  pid="$(longctx_slurm_daemon_pid "$state" "$daemon")"
  if [ -n "$pid" ]; then
    longctx_sudo kill "$pid" 2>/dev/null
    # By the process, not its pid file (which it removes before it has ended)
    for _ in $(seq 1 50); do longctx_slurm_pid_is "$pid" "$daemon" || break; sleep 0.1; done
    longctx_slurm_pid_is "$pid" "$daemon" && longctx_sudo kill -9 "$pid" 2>/dev/null
  else
    echo "stop-local.sh: $state/$daemon.pid names no running $daemon (it ended without removing it): removed" >&2
  fi
  longctx_sudo rm -f "$state/$daemon.pid"
done
exit 0
