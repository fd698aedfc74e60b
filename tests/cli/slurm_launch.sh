#!/usr/bin/env bash
# Real Slurm on this machine: starts the one-node cluster (jobs/slurm/start-local.sh), submits
# jobs/slurm/info.sbatch (srun --mpi=pmix, mpirun in the allocation, and longctx run by the batch script
# itself), checks srun without PMI fails with exit 2 and says why, and stops the daemons it started.
LONGCTX=$1
source "$(dirname "$0")/lib.sh"
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
export LONGCTX_SLURM_STATE="$OUT/slurm"
eval "$(bash "$ROOT/jobs/slurm/start-local.sh")" || { echo "could not start Slurm"; exit 1; }
trap 'bash "$ROOT/jobs/slurm/stop-local.sh"; rm -rf "$OUT"' EXIT

cd "$OUT"
expect_exit 0 "sbatch info.sbatch" -- env LONGCTX="$LONGCTX" timeout 300 sbatch --wait --output="$OUT/job.out" "$ROOT/jobs/slurm/info.sbatch"
expect_in "$OUT/job.out" "^rank 0/2 .*launcher Slurm" "srun --mpi=pmix rank 0 sees Slurm and 2 ranks"
expect_in "$OUT/job.out" "^rank 1/2 .*launcher Slurm" "srun --mpi=pmix rank 1 sees Slurm and 2 ranks"
expect_in "$OUT/job.out" "^rank 1/2 .*launcher Open MPI" "mpirun inside the job gives 2 ranks"
expect_in "$OUT/job.out" "^rank 0/1 .*launcher Slurm" "the batch script itself runs one process under Slurm"

expect_exit 2 "srun without PMI" -- timeout 120 srun --mpi=none -n 2 "$LONGCTX" info
expect_in "$OUT/stderr" "srun without PMI" "explains the missing PMI"
expect_in "$OUT/stderr" "--mpi=pmix" "says how to fix it"
finish
