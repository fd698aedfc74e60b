#!/usr/bin/env bash
# The MPI calls with no timeout of their own, each with one rank stopped inside it (under gdb, as a
# SIGSTOP or a hung file system would): MPI_Finalize, the broadcast after a rank-0-only step,
# MPI_Comm_create_group and the start-up's collectives; and MPI_Init, with a rank that never reached it. The watchdog must end the job after --comm-timeout
# (600 s at start-up), saying what made no progress; before, each of these hung until the outer
# timeout. Skipped (77) where gdb cannot run a
# program (not installed, or ptrace not allowed).
LONGCTX=$1
source "$(dirname "$0")/lib.sh"
command -v gdb >/dev/null || { echo "skipped: no gdb"; exit 77; }
gdb -q -batch -ex run --args /bin/true >/dev/null 2>&1 || { echo "skipped: gdb cannot run a program here"; exit 77; }
HERE=$(cd "$(dirname "$0")" && pwd)
cd "$OUT"
/usr/bin/python3 "$HERE/attend_check.py" make in.h5 48 5 8 || exit 1

# Under mpirun: rank $STOP_RANK runs under gdb and stops at the $STOP_HIT-th call of $STOP_AT (then
# sleeps, stopped, until it is killed); it writes "STOPPED" to stop.log when it got there.
cat >stopper.sh <<'EOF'
#!/usr/bin/env bash
if [ "$OMPI_COMM_WORLD_RANK" != "$STOP_RANK" ]; then exec "$@"; fi
echo $$ >gdb.pid
cat >gdb.cmd <<EOG
set pagination off
set breakpoint pending on
set startup-with-shell off
handle SIGUSR1 SIGUSR2 SIGPIPE SIGTERM nostop noprint pass
break $STOP_AT
ignore 1 $(( ${STOP_HIT:-1} - 1 ))
run
if \$_isvoid(\$_exitcode)
  shell echo STOPPED >>stop.log
  shell sleep 100
end
EOG
exec gdb -q -batch -x gdb.cmd --args "$@"
EOF
chmod +x stopper.sh

# stopped NAME RANK FUNCTION HIT EXPECTED -- attend options...
stopped() {
  local name=$1 rank=$2 at=$3 hit=$4 expected=$5
  shift 6
  rm -f stop.log gdb.pid
  local start
  start=$(date +%s)
  STOP_RANK=$rank STOP_AT=$at STOP_HIT=$hit "${MPIRUN[@]}" -np 2 -x STOP_RANK -x STOP_AT -x STOP_HIT timeout 120 \
    ./stopper.sh "$LONGCTX" attend --input in.h5 --segment-lengths 4,48 --dilation-rates 1,2 --quiet \
    --comm-timeout 4 "$@" >"$OUT/stdout" 2>"$OUT/stderr"
  local code=$? elapsed=$(( $(date +%s) - start ))
  # The stopped rank's gdb and the program it holds, wherever mpirun left them.
  if [ -s gdb.pid ]; then
    pkill -9 -P "$(cat gdb.pid)" 2>/dev/null
    kill -9 "$(cat gdb.pid)" 2>/dev/null
  fi
  if ! grep -q STOPPED stop.log 2>/dev/null; then
    fail "$name: rank $rank never reached $at (hit $hit)"
    sed 's/^/  | /' "$OUT/stderr" | head -20
    return
  fi
  [ "$code" -ne 0 ] && [ "$code" -ne 124 ] && [ "$elapsed" -lt 60 ] &&
    pass "$name: the job ends in ${elapsed}s (exit $code)" || fail "$name: exit $code after ${elapsed}s"
  expect_in "$OUT/stderr" "$expected: no progress for 4 s" "$name: says what made no progress"
}

stopped "rank 1 stopped in MPI_Finalize" 1 MPI_Finalize 1 "MPI_Finalize at the end of the job" -- --output f.h5
stopped "rank 1 stopped entering MPI_Comm_create_group" 1 MPI_Comm_create_group 1 \
  "the set-up of sub-communicator #1 \\(ranks 0-[0-9]\\): MPI_Comm_create_group on the world communicator" -- --output g.h5
# The start-up's collectives (each node's ranks and CPUs), before the options are read: the watchdog ends the
# job after 600 s, here 4 (before: the others waited for good).
export LONGCTX_FAULT_STARTUP_TIMEOUT=4
stopped "rank 1 stopped in the start-up's MPI_Allgather" 1 PMPI_Allgather 1 \
  "the start-up \\(the ranks of each node and their CPUs: MPI_Comm_split_type, MPI_Allgather, MPI_Allreduce\\)" \
  -- --output s.h5
expect_in "$OUT/stderr" "have no timeout of their own; at start-up, before the options are read, 4 s, whatever --comm-timeout says\\)" \
  "... and what sets its timeout"
# MPI_Init, which meets the job's tasks: one that exited before it, or stopped, held the others there for good
# (before: documented as a window). Each waiting task says so and exits 1 after the start-up's timeout; mpirun
# ends the job.
for how in "exit 0" "kill -STOP \$\$"; do
  start=$(date +%s)
  "${MPIRUN[@]}" -np 2 -x LONGCTX_FAULT_STARTUP_TIMEOUT timeout 120 sh -c \
    '[ "$OMPI_COMM_WORLD_RANK" = 1 ] && '"$how"'; exec "$0" "$@"' "$LONGCTX" info --quiet >"$OUT/stdout" 2>"$OUT/stderr"
  code=$? elapsed=$(( $(date +%s) - start ))
  [ "$code" -ne 0 ] && [ "$code" -ne 124 ] && [ "$elapsed" -lt 60 ] &&
    pass "rank 1 before MPI_Init ($how): the job ends in ${elapsed}s (exit $code)" || fail "rank 1 before MPI_Init ($how): exit $code after ${elapsed}s"
  expect_in "$OUT/stderr" "^\[longctx error\] MPI_Init on Open MPI's task 0 of 2 \(a task of the job that exited before MPI_Init or is stopped keeps the others there\): no progress for 4 s" \
    "... rank 0 says where it waited"
done
unset LONGCTX_FAULT_STARTUP_TIMEOUT
# A run that publishes its activation dump at a checkpoint holds the dump's next .tmp while it checkpoints:
# a second run on the same dump.activations is refused then (before: it took the name, replaced the first
# run's dump, and the first run ended with exit 2 at its next claim; from the dumps audit). The first run is
# held under gdb in its first save_checkpoint, after the dump of step 1 is published.
cat >hold.cmd <<'EOG'
set pagination off
set breakpoint pending on
set startup-with-shell off
handle SIGUSR1 SIGUSR2 SIGPIPE SIGTERM nostop noprint pass
break longctx::train::save_checkpoint
run
if $_isvoid($_exitcode)
  shell echo HELD >>hold.log
  shell sleep 100
end
EOG
TRAIN=(train --quiet --model.mlp_hidden 32 --model.heads 2 --model.dim 16 --model.segment_lengths 64,256
       --model.dilation_rates 1,2 --data.seq_len 256 --train.warmup 1 --dump.activations "$OUT/held.h5")
rm -f hold.log
gdb -q -batch -x hold.cmd --args "$LONGCTX" "${TRAIN[@]}" --train.steps 4 --checkpoint.every 2 \
  --checkpoint.dir "$OUT/held_ck" --dump.steps 1,3 >"$OUT/held.out" 2>&1 &
held=$!
for _ in $(seq 600); do grep -q HELD hold.log 2>/dev/null && break; sleep 0.1; done
if grep -q HELD hold.log 2>/dev/null; then
  expect_exit 2 "a second run on a dump whose run is checkpointing" -- "$LONGCTX" "${TRAIN[@]}" --train.steps 1 --dump.steps 1
  expect_in "$OUT/stderr" "held.h5.tmp' is being written by another running process" "... says the name is in use"
  /usr/bin/python3 -c "import h5py, sys; sys.exit(0 if list(h5py.File(sys.argv[1], 'r').keys()) == ['step_1'] else 1)" \
    "$OUT/held.h5" && pass "... and the first run's published dump is as it was" || fail "held.h5 changed"
else
  fail "the first run never reached save_checkpoint: $(tail -5 "$OUT/held.out")"
fi
pkill -9 -P "$held" 2>/dev/null
kill -9 "$held" 2>/dev/null
wait "$held" 2>/dev/null
# rank 0's renames: the output (1), then the report (2), while rank 1 waits for its outcome.
stopped "rank 0 stopped publishing the report" 0 rename 2 "waiting for rank 0 \(publishing r.json\)" -- \
  --output r.h5 --report r.json
finish
