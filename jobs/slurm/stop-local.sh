#!/usr/bin/env bash
# Stops the slurmd and slurmctld that start-local.sh started (munge is left running: other users may share it).
set -uo pipefail
state="${LONGCTX_SLURM_STATE:-/tmp/longctx-slurm}"
for daemon in slurmd slurmctld; do
  if [ -s "$state/$daemon.pid" ]; then
    pid="$(cat "$state/$daemon.pid")"
    kill "$pid" 2>/dev/null
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null
    rm -f "$state/$daemon.pid"
  fi
done
exit 0
