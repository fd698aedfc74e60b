#!/usr/bin/env bash
# Stops the cluster start-local.sh started: cancels its jobs (their ranks get SIGTERM: a train run
# checkpoints) and waits up to 60 s for them to end, then stops slurmd and slurmctld (munge is left
# running: other users may share it). Stopping the daemons alone left running jobs behind, with no
# controller. LONGCTX_SLURM_STATE: the state directory given to start-local.sh (default /tmp/longctx-slurm).
source "$(cd "$(dirname "$0")" && pwd)/../lib.sh"  # longctx_sudo: start-local.sh started them with it
longctx_script_args "$0" no_args "$@"
set +e                                               # stop what can be stopped, whatever fails
state="$(longctx_slurm_state)"
if [ ! -s "$state/slurmctld.pid" ] && [ ! -s "$state/slurmd.pid" ]; then
  echo "stop-local.sh: no daemons of $state to stop (is LONGCTX_SLURM_STATE the one start-local.sh used?)" >&2
  exit 0
fi
# Only this cluster's jobs: its controller alive and the one answering (not another cluster on its ports).
answers=0
if [ -s "$state/slurmctld.pid" ] && longctx_sudo kill -0 "$(cat "$state/slurmctld.pid")" 2>/dev/null; then
  if longctx_slurm_answers "$state"; then
    answers=1
  else
    echo "stop-local.sh: the controller of $state does not answer through $state/slurm.conf (another" \
         "cluster on its port?): its jobs, if any, are not cancelled and may keep running" >&2
  fi
fi
if [ "$answers" -eq 1 ]; then
  export SLURM_CONF="$state/slurm.conf"
  jobs=$(squeue -h -o %i 2>/dev/null)
  if [ -n "$jobs" ]; then
    echo "stop-local.sh: cancelling job(s) $(echo $jobs)" >&2
    scancel $jobs 2>/dev/null
    for _ in $(seq 1 120); do [ -z "$(squeue -h -o %i 2>/dev/null)" ] && break; sleep 0.5; done
    [ -n "$(squeue -h -o %i 2>/dev/null)" ] && echo "stop-local.sh: job(s) $(squeue -h -o %i | xargs) still" \
      "ending after 60 s; stopping the daemons anyway" >&2
  fi
fi
for daemon in slurmd slurmctld; do
  if [ -s "$state/$daemon.pid" ]; then
    pid="$(cat "$state/$daemon.pid")"
    longctx_sudo kill "$pid" 2>/dev/null
    for _ in $(seq 1 50); do longctx_sudo kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    longctx_sudo kill -9 "$pid" 2>/dev/null
    longctx_sudo rm -f "$state/$daemon.pid"
  fi
done
exit 0
