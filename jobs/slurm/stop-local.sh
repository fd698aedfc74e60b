#!/usr/bin/env bash
# Stops the slurmd and slurmctld that start-local.sh started (munge is left running: other users may share it).
source "$(cd "$(dirname "$0")" && pwd)/../lib.sh"  # longctx_sudo: start-local.sh started them with it
set +e                                               # stop what can be stopped, whatever fails
state="${LONGCTX_SLURM_STATE:-/tmp/longctx-slurm}"
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
