#!/usr/bin/env bash
# Real Slurm on this machine: starts the one-node cluster (jobs/slurm/start-local.sh), submits
# jobs/slurm/info.sbatch (srun --mpi=pmix, mpirun in the allocation, and longctx run by the batch script
# itself), checks srun without PMI fails with exit 2 and says why, runs jobs/slurm/train.sbatch through a
# pre-time-limit signal (checkpoint, exit 75, requeue, resume: the same losses as one uninterrupted run),
# through a run that gets no further than its checkpoint (not requeued: it would loop; by the run's
# log.summary, and by time where a config file hides that summary from the script) and through scancel
# (checkpoint, not requeued), through SIGUSR1 to the batch script alone (passed on, requeued), with no binary (exit 2),
# checks that start-local.sh refuses ports another cluster holds and that stop-local.sh cancels running
# jobs, and stops the daemons it started.
LONGCTX=$1
source "$(dirname "$0")/lib.sh"
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
# The jobs/ scripts answer --help with their usage and refuse arguments they do not take, before any work
# (before: `stop-local.sh --help` cancelled the jobs and stopped the cluster; `quickstart.sh --help` ran it).
for script in build.sh quickstart.sh test.sh slurm/start-local.sh slurm/stop-local.sh; do
  expect_exit 0 "$script --help" -- bash "$ROOT/jobs/$script" --help
  [ "$(head -c 1 "$OUT/stdout")" != "#" ] && [ -s "$OUT/stdout" ] && cmp -s <(sed -n 2p "$ROOT/jobs/$script" | sed 's/^# //') \
    <(head -1 "$OUT/stdout") && pass "$script --help prints its header" || fail "$script --help printed: $(head -3 "$OUT/stdout")"
done
for script in build.sh quickstart.sh slurm/start-local.sh slurm/stop-local.sh; do
  expect_exit 2 "$script --bogus" -- bash "$ROOT/jobs/$script" --bogus
  expect_in "$OUT/stderr" "takes no arguments \(got: --bogus\)" "$script says it takes none"
done
# ... and those that take a build directory or nothing (before: gpu_check.sh --help ran every GPU check, with
# "--help" as its build directory; info.sbatch ran srun and mpirun).
for script in device/gpu_check.sh device/pack_runtime.sh device/check_pack.sh slurm/info.sbatch; do
  expect_exit 0 "$script --help" -- env OUT="$OUT/gc" bash "$ROOT/jobs/$script" --help
  cmp -s <(grep -m1 '^# ' "$ROOT/jobs/$script" | sed 's/^# //') <(head -1 "$OUT/stdout") && [ ! -e "$OUT/gc" ] &&
    pass "$script --help prints its header, runs nothing" || fail "$script --help printed: $(head -3 "$OUT/stdout")"
  expect_exit 2 "$script --bogus" -- env OUT="$OUT/gc" bash "$ROOT/jobs/$script" --bogus
  expect_in "$OUT/stderr" "unknown option '--bogus'" "$script names the option"
done
# A script that starts with #! runs as its usage shows (jobs/slurm/info.sbatch --help; before: "Permission
# denied", exit 126, for it and two jobs/bench helpers).
not_executable=$(find "$ROOT/jobs" -type f ! -perm -u+x -exec sh -c 'head -c 2 "$1" | grep -q "^#!"' _ {} \; -print)
[ -z "$not_executable" ] && pass "every jobs/ script with a #! line is executable" || fail "not executable: $not_executable"
# train.sbatch passes its arguments to longctx train, but a first --help is its own (before: srun, then
# longctx train's help; without a cluster, srun's "fatal" and exit 1).
expect_exit 0 "train.sbatch --help" -- env -u SLURM_CONF bash "$ROOT/jobs/slurm/train.sbatch" --help
cmp -s <(grep -m1 '^# ' "$ROOT/jobs/slurm/train.sbatch" | sed 's/^# //') <(head -1 "$OUT/stdout") &&
  grep -q "Its arguments go to longctx train" "$OUT/stdout" && [ ! -s "$OUT/stderr" ] &&
  pass "train.sbatch --help prints its header, runs nothing" || fail "train.sbatch --help: $(head -3 "$OUT/stdout" "$OUT/stderr")"
expect_exit 2 "info.sbatch with an argument" -- bash "$ROOT/jobs/slurm/info.sbatch" extra
expect_in "$OUT/stderr" "takes no arguments \(got: extra" "says it takes none"
# (before: srun's "execve(): build/bin/longctx: No such file or directory")
expect_exit 2 "info.sbatch whose LONGCTX names no program" -- env LONGCTX="$OUT/none" bash "$ROOT/jobs/slurm/info.sbatch"
expect_in "$OUT/stderr" "LONGCTX=$OUT/none: no such program" "says so before srun"
# A value that is no number made the guard's test fail, and every run was requeued: the loop it stops.
expect_exit 2 "train.sbatch with LONGCTX_MIN_RUN_SECONDS=abc" -- env -u SLURM_CONF LONGCTX="$LONGCTX" LONGCTX_MIN_RUN_SECONDS=abc \
  bash "$ROOT/jobs/slurm/train.sbatch" --train.steps 1
expect_in "$OUT/stderr" "LONGCTX_MIN_RUN_SECONDS=abc: must be a whole number of seconds" "refused before srun"
expect_exit 2 "start-local.sh with LONGCTX_SLURM_CPUS=abc" -- env LONGCTX_SLURM_STATE="$OUT/cpus" LONGCTX_SLURM_CPUS=abc \
  bash "$ROOT/jobs/slurm/start-local.sh"
expect_in "$OUT/stderr" "LONGCTX_SLURM_CPUS=abc: must be a whole number from 1 to 65535" "names the setting (before: slurmctld's parse error, exit 1)"
# Slurm's limit is this one's (before: 70000 passed, and slurmctld failed on it: exit 1 without a word).
expect_exit 2 "start-local.sh with LONGCTX_SLURM_CPUS=70000" -- env LONGCTX_SLURM_STATE="$OUT/cpus" LONGCTX_SLURM_CPUS=70000 \
  bash "$ROOT/jobs/slurm/start-local.sh"
expect_in "$OUT/stderr" "LONGCTX_SLURM_CPUS=70000: must be a whole number from 1 to 65535" "... refused before slurmctld"
expect_exit 2 "start-local.sh with one port for both daemons" -- env LONGCTX_SLURM_STATE="$OUT/cpus" \
  LONGCTX_SLURM_CTLD_PORT=26999 LONGCTX_SLURM_D_PORT=26999 bash "$ROOT/jobs/slurm/start-local.sh"
expect_in "$OUT/stderr" "are both 26999: slurmctld and slurmd each need a port of their own" "... says why"
expect_exit 2 "a state directory with a blank (slurm.conf cannot hold it)" -- env LONGCTX_SLURM_STATE="$OUT/st ate" \
  bash "$ROOT/jobs/slurm/start-local.sh"
expect_in "$OUT/stderr" "holds a blank, '#', '&', '\|' or" "start-local.sh says why"
# '&' in the replacement of start-local.sh's sed was the matched text (before: "@STATE@" in every path of
# slurm.conf, and exit 1 through set -e without the daemons' log lines).
expect_exit 2 "a state directory with a '&'" -- env LONGCTX_SLURM_STATE="$OUT/a&b" bash "$ROOT/jobs/slurm/start-local.sh"
[ ! -e "$OUT/a&b" ] && pass "... refused before anything is made" || fail "made $OUT/a&b"
export LONGCTX_SLURM_STATE="$OUT/slurm"
eval "$(bash "$ROOT/jobs/slurm/start-local.sh")" || { echo "could not start Slurm"; exit 1; }
trap 'bash "$ROOT/jobs/slurm/stop-local.sh"; [ -n "${KEEP_OUT:-}" ] || rm -rf "$OUT"' EXIT

cd "$OUT"
expect_exit 0 "sbatch info.sbatch" -- env LONGCTX="$LONGCTX" timeout 300 sbatch --wait --output="$OUT/job.out" "$ROOT/jobs/slurm/info.sbatch"
expect_in "$OUT/job.out" "^rank 0/2 .*launcher Slurm" "srun --mpi=pmix rank 0 sees Slurm and 2 ranks"
expect_in "$OUT/job.out" "^rank 1/2 .*launcher Slurm" "srun --mpi=pmix rank 1 sees Slurm and 2 ranks"
expect_in "$OUT/job.out" "^rank 1/2 .*launcher Open MPI" "mpirun inside the job gives 2 ranks"
expect_in "$OUT/job.out" "^rank 0/1 .*launcher Slurm" "the batch script itself runs one process under Slurm"
# srun's exit 0 from tasks that did not run longctx info (LONGCTX=true stands for tasks srun could not launch,
# where it exits 0 too): the job fails (before: COMPLETED).
expect_exit 1 "sbatch info.sbatch whose tasks say nothing" -- env LONGCTX=true timeout 300 sbatch --wait \
  --output="$OUT/job_none.out" "$ROOT/jobs/slurm/info.sbatch"
expect_in "$OUT/job_none.out" "srun exited 0, but 0 of the job's 2 tasks said their line" "... says so"

expect_exit 2 "srun without PMI" -- timeout 120 srun --mpi=none -n 2 "$LONGCTX" info
expect_in "$OUT/stderr" "srun without PMI" "explains the missing PMI"
expect_in "$OUT/stderr" "--mpi=pmix" "says how to fix it"
# One task needs no PMI, as in the batch script (before: Open MPI took the srun step without PMIx for a
# broken build, exit 1 with its page of build advice); also under PMI-2, which this Open MPI cannot use.
expect_exit 0 "srun -n 1 without PMI (slurm.conf: MpiDefault=none)" -- timeout 120 srun --mpi=none -n 1 "$LONGCTX" info --quiet
expect_in "$OUT/stdout" "^rank 0/1 .*launcher Slurm" "... one rank, launcher Slurm"
expect_exit 0 "srun -n 1 --mpi=pmi2" -- timeout 120 srun --mpi=pmi2 -n 1 "$LONGCTX" info --quiet
# Two tasks with PMI-2: every MPI_Init would fail (this Open MPI speaks PMIx only): refused before it.
expect_exit 2 "srun --mpi=pmi2 -n 2" -- timeout 120 srun --mpi=pmi2 -n 2 "$LONGCTX" info --quiet
expect_in "$OUT/stderr" "with PMI-2 \\(srun --mpi=pmi2\\), which this Open MPI cannot use" "... says why"
expect_in "$OUT/stderr" "Launch with \`srun --mpi=pmix" "... and how to launch"

# ---- train.sbatch: the signal Slurm sends before the time limit -> checkpoint, exit 75, requeue, resume --
TRAIN=(--model.layers 1 --model.dim 32 --model.heads 4 --model.vocab 32 --model.segment_lengths 32,128,1024
       --model.dilation_rates 1,2,4 --data.task passkey --data.seq_len 1024 --train.lr 1e-3 --train.seed 1
       --log.every 1 --quiet)
job_field() { scontrol show job "$1" 2>/dev/null | grep -o "$2=[^ ]*" | head -1 | cut -d= -f2; }
# wait_for_step FILE STEP: until FILE logs STEP (60 s at most)
wait_for_step() { for _ in $(seq 600); do grep -q "\"step\": $2," "$1" 2>/dev/null && return 0; sleep 0.1; done; return 1; }
# wait_for_end JOB: until the job has ended (COMPLETED, FAILED, CANCELLED, ...; 180 s at most)
wait_for_end() {
  local state
  for _ in $(seq 180); do
    state=$(job_field "$1" JobState)
    case "$state" in COMPLETED|FAILED|CANCELLED|TIMEOUT|NODE_FAIL|OUT_OF_MEMORY) echo "$state"; return 0 ;; esac
    sleep 1
  done
  echo "${state:-unknown}"; return 1
}
# expect_ended JOB STATE RESTARTS EXITCODE NAME: once it ended, the job is STATE after RESTARTS requeues,
# with EXITCODE ("any": not checked).
expect_ended() {
  local state restarts exit_code
  state=$(wait_for_end "$1"); restarts=$(job_field "$1" Restarts); exit_code=$(job_field "$1" ExitCode)
  [ "$state" = "$2" ] && [ "$restarts" = "$3" ] && { [ "$4" = any ] || [ "$exit_code" = "$4" ]; } && pass "$5" ||
    fail "$5: $state, Restarts=$restarts, ExitCode=$exit_code"
}
losses() { /usr/bin/python3 -c 'import json, sys; [print(json.loads(l)["step"], json.loads(l)["loss"]) for l in open(sys.argv[1])]' "$1"; }

# --time=10: the script's --signal=USR1@300 must not fire by itself while the test runs. The signal comes
# seconds after the start: the run's summary says it trained, so it is requeued (before the summary, the
# guard by time refused such a run below LONGCTX_MIN_RUN_SECONDS=60).
jid=$(env LONGCTX="$LONGCTX" sbatch --parsable --time=10 --output="$OUT/train.out" "$ROOT/jobs/slurm/train.sbatch" \
      "${TRAIN[@]}" --train.steps 600 --checkpoint.dir "$OUT/ck" --checkpoint.every 200 --checkpoint.keep 2 \
      --log.jsonl "$OUT/train.jsonl")
if wait_for_step "$OUT/train.jsonl" 5; then
  scancel --signal=USR1 "$jid"          # what --signal=USR1@300 sends: every step's tasks, not the batch script
  state=$(wait_for_end "$jid")
  [ "$state" = COMPLETED ] && pass "train.sbatch: signalled, requeued, completed" || fail "train.sbatch ended $state"
  [ "$(job_field "$jid" Restarts)" = 1 ] && pass "the job was requeued once" || fail "Restarts=$(job_field "$jid" Restarts)"
  expect_in "$OUT/train.out" "requeueing job $jid" "train.sbatch says it requeues"
  expect_in "$OUT/train.out" "run 2 on 2 ranks" "the requeued job ran again"
  # The script's summary, where the job was submitted: the last run's.
  expect_in "$OUT/longctx-train-$jid.summary.json" '"outcome": "done", "exit": 0, .*"step": 600, .*"checkpoint_step": 600' \
    "the job's summary is its last run's"
  expect_in "$OUT/train.out" "resumed from .*step_[0-9]{8}\.h5" "the second run resumed from the signal's checkpoint"
  [ "$(cat "$OUT/ck/latest" 2>/dev/null)" = step_00000600.h5 ] && pass "last checkpoint is step 600" || fail "latest: $(cat "$OUT/ck/latest" 2>/dev/null)"
  expect_exit 0 "the same run, uninterrupted" -- "${MPIRUN[@]}" -np 2 -x OMP_NUM_THREADS=1 "$LONGCTX" train "${TRAIN[@]}" --train.steps 600 --log.jsonl "$OUT/whole.jsonl"
  if [ "$(losses "$OUT/whole.jsonl" | wc -l)" -eq 600 ] && diff <(losses "$OUT/whole.jsonl") <(losses "$OUT/train.jsonl") >/dev/null
  then pass "requeued run logs steps 1..600 once each, with the uninterrupted losses"
  else fail "requeued run's log.jsonl differs from the uninterrupted run's"; diff <(losses "$OUT/whole.jsonl") <(losses "$OUT/train.jsonl") | head -5; fi
else
  fail "train.sbatch did not reach step 5"; tail -5 "$OUT/train.out"; scancel "$jid"
fi

# ---- train.sbatch: a run that gets checkpoint.dir no further -> exit 75, NOT requeued (a loop) ----------
# What a --time too short for the evaluation a stop left pending gives: each run would stop in it again.
# LONGCTX_FAULT_SIGNAL_AT=eval:2 signals the first run during step 2's evaluation (checkpoint, evaluation
# pending, requeued: it trained), and the second during that pending evaluation (it trained nothing).
jid=$(env LONGCTX="$LONGCTX" LONGCTX_FAULT_SIGNAL_AT=eval:2 sbatch --parsable --time=10 --output="$OUT/early.out" \
      "$ROOT/jobs/slurm/train.sbatch" "${TRAIN[@]}" --train.steps 100000 --eval.every 2 --eval.sequences 2 \
      --checkpoint.dir "$OUT/ck3" --log.summary "$OUT/early.summary.json")
expect_ended "$jid" FAILED 1 75:0 "no further: requeued once (the run that trained), then exit 75, not requeued"
expect_in "$OUT/early.out" "no further than it found it \(step 2: .*not requeued, as the next run would most likely stop as soon" \
  "train.sbatch says why it does not requeue"
expect_in "$OUT/early.summary.json" '"outcome": "stopped", "exit": 75, .*"steps_trained": 0, .*"checkpoint_eval_pending": true, "checkpoint_advanced": false' \
  "read from the summary given as --log.summary"
[ "$(cat "$OUT/ck3/latest" 2>/dev/null)" = step_00000002.h5 ] && pass "the checkpoint of step 2 is kept" ||
  fail "latest: $(cat "$OUT/ck3/latest" 2>/dev/null)"
# ... and where the script cannot find the summary (a config file's log.summary wins over the variable it
# sets), by time: a run stopped within LONGCTX_MIN_RUN_SECONDS (60) of its start is not requeued.
printf '[log]\nsummary = %s\n' "$OUT/cfg.summary.json" >"$OUT/summary.ini"
jid=$(env LONGCTX="$LONGCTX" sbatch --parsable --time=10 --output="$OUT/bytime.out" "$ROOT/jobs/slurm/train.sbatch" \
      --config "$OUT/summary.ini" "${TRAIN[@]}" --train.steps 100000 --checkpoint.dir "$OUT/ck4" --log.jsonl "$OUT/bytime.jsonl")
for _ in $(seq 180); do [ "$(job_field "$jid" JobState)" = RUNNING ] && break; sleep 1; done
if wait_for_step "$OUT/bytime.jsonl" 5; then
  scancel --signal=USR1 "$jid"
  expect_ended "$jid" FAILED 0 75:0 "no summary found, early signal: exit 75, not requeued"
  expect_in "$OUT/bytime.out" "it wrote no summary to $OUT/longctx-train-$jid.summary.json \(log.summary set in a config file" \
    "train.sbatch says why it judged by time"
  [ -s "$OUT/cfg.summary.json" ] && [ -s "$OUT/ck4/latest" ] && pass "the config's summary and a checkpoint are written" ||
    fail "cfg summary: $(cat "$OUT/cfg.summary.json" 2>&1), latest: $(cat "$OUT/ck4/latest" 2>&1)"
else
  fail "train.sbatch (no summary found) did not reach step 5"; tail -5 "$OUT/bytime.out"; scancel "$jid"
fi

# A --time within the script's --signal=USR1@300 lead (and Slurm's 60 s): warned about, and the run, signalled
# as it starts, is not requeued (before: requeued again and again, a step or so a run).
jid=$(env LONGCTX="$LONGCTX" sbatch --parsable --time=3 --output="$OUT/short.out" "$ROOT/jobs/slurm/train.sbatch" \
      "${TRAIN[@]}" --train.steps 10000000 --checkpoint.dir "$OUT/ck6")
expect_ended "$jid" FAILED 0 75:0 "--time=3 under the 300 s lead: exit 75, not requeued"
expect_in "$OUT/short.out" "--time is 180 s, not more than the 300 s lead of this script's --signal=USR1@300" "warned as it starts"
expect_in "$OUT/short.out" "under a --time of 180 s that leaves no room over the 300 s lead .*not requeued, as every run would stop" \
  "... and says why it does not requeue"
[ -s "$OUT/ck6/latest" ] && pass "... its checkpoint kept" || fail "no checkpoint in $OUT/ck6"

# ---- train.sbatch: scancel -> the ranks checkpoint, the job is NOT requeued --------------------------
# In the job's last minute (--time=1; --signal=URG@1 keeps the script's USR1@300 from stopping it first):
# before, the script took any SIGTERM then for the time limit and requeued the cancelled job.
jid=$(env LONGCTX="$LONGCTX" sbatch --parsable --time=1 --signal=URG@1 --output="$OUT/cancel.out" "$ROOT/jobs/slurm/train.sbatch" \
      "${TRAIN[@]}" --train.steps 100000 --checkpoint.dir "$OUT/ck2" --log.jsonl "$OUT/cancel.jsonl")
if wait_for_step "$OUT/cancel.jsonl" 5; then
  scancel "$jid"
  expect_ended "$jid" CANCELLED 0 any "scancel: CANCELLED, not requeued"
  for _ in $(seq 50); do grep -q "not requeued" "$OUT/cancel.out" && break; sleep 0.2; done
  expect_in "$OUT/cancel.out" "SIGTERM \(scancel; .*\): not requeued by this script; the checkpoint the ranks committed is kept" \
    "train.sbatch says it does not requeue, and what is kept"
  expect_in "$OUT/cancel.out" "stopped on SIGTERM at step [0-9]+ \(exit 75: " "the ranks name the signal"
  [ -s "$OUT/ck2/latest" ] && "$LONGCTX" ckpt verify "$OUT/ck2" >/dev/null 2>&1 &&
    pass "scancel: the ranks committed a checkpoint ($(cat "$OUT/ck2/latest"))" || fail "no valid checkpoint after scancel"
else
  fail "train.sbatch (cancel) did not reach step 5"; tail -5 "$OUT/cancel.out"; scancel "$jid"
fi
# ---- train.sbatch: SIGUSR1 to the batch script alone (--signal=B:USR1@T, scancel --batch) is passed on to
# the ranks: checkpoint, exit 75, requeue (before: it killed the script, the job FAILED, not requeued) ----
jid=$(env LONGCTX="$LONGCTX" LONGCTX_MIN_RUN_SECONDS=0 sbatch --parsable --time=10 --output="$OUT/busr1.out" \
      "$ROOT/jobs/slurm/train.sbatch" "${TRAIN[@]}" --train.steps 600 --checkpoint.dir "$OUT/ck_busr1" --log.jsonl "$OUT/busr1.jsonl")
# It may wait for the node while the cancelled job before it ends.
for _ in $(seq 180); do [ "$(job_field "$jid" JobState)" = RUNNING ] && break; sleep 1; done
if wait_for_step "$OUT/busr1.jsonl" 5; then
  scancel --batch --signal=USR1 "$jid"
  expect_ended "$jid" COMPLETED 1 any "B:USR1: requeued once, completed"
  expect_in "$OUT/busr1.out" "SIGUSR1: passed on to the ranks" "the script says it passed the signal on"
  grep -q "LONGCTX_MIN_RUN_SECONDS is neither an option" "$OUT/busr1.out" &&
    fail "longctx warns about train.sbatch's LONGCTX_MIN_RUN_SECONDS" || pass "LONGCTX_MIN_RUN_SECONDS is a known setting"
else
  fail "train.sbatch (B:USR1) did not reach step 5"; tail -5 "$OUT/busr1.out"; scancel "$jid"
fi

# ---- train.sbatch with no binary at LONGCTX: exit 2 before srun, saying where it looked ------------------
expect_exit 2 "sbatch with LONGCTX naming no program" -- env LONGCTX="$OUT/nowhere/longctx" timeout 120 \
  sbatch --wait --output="$OUT/nobin.out" "$ROOT/jobs/slurm/train.sbatch" "${TRAIN[@]}"
expect_in "$OUT/nobin.out" "LONGCTX=$OUT/nowhere/longctx: no such program" "says the binary is missing"
# ... and srun's exit 0 from tasks that never ran longctx (srun exits 0 where it could not launch them): the run
# wrote no summary, so the job fails (before: COMPLETED, exit 0, nothing trained; from the Slurm audit).
# LONGCTX=true stands for the tasks that did not start. A config file's log.summary leaves it unknowable.
expect_exit 1 "train.sbatch whose tasks did not run longctx" -- env LONGCTX=true timeout 120 \
  sbatch --wait --output="$OUT/norun.out" "$ROOT/jobs/slurm/train.sbatch" "${TRAIN[@]}"
expect_in "$OUT/norun.out" "srun exited 0, but the run wrote no summary to .*: longctx train did not run" "says nothing ran"
expect_exit 0 "... with --log.summary= (none)" -- env LONGCTX=true timeout 120 \
  sbatch --wait --output="$OUT/norun3.out" "$ROOT/jobs/slurm/train.sbatch" "${TRAIN[@]}" --log.summary=
printf '[log]\nsummary = %s\n' "$OUT/norun.summary.json" >"$OUT/norun.ini"
expect_exit 0 "... with log.summary in a config file" -- env LONGCTX=true timeout 120 \
  sbatch --wait --output="$OUT/norun2.out" "$ROOT/jobs/slurm/train.sbatch" --config "$OUT/norun.ini" "${TRAIN[@]}"

# ---- start-local.sh refuses when another cluster holds its ports (before: "started", with sinfo answered
# by the other cluster); stop-local.sh cancels running jobs before stopping the daemons (before: their ranks
# kept running with no controller) ------------------------------------------------------------------------
# Given as a relative directory (before: the daemons, working from /, could not find their files, and the
# wait went on for 10 minutes), which it makes absolute; it stops waiting once its daemons exit, and shows
# their last log lines (before: `tail -5` of two files failed).
# Run again with other ports while the cluster runs: refused at once, its slurm.conf kept (before: rewritten
# under the running daemons, which no client then reached, stop-local.sh included, after a 10-minute wait).
cp "$OUT/slurm/slurm.conf" "$OUT/slurm.conf.before"
SECONDS=0
expect_exit 2 "start-local.sh again with other ports" -- env LONGCTX_SLURM_CTLD_PORT=17917 LONGCTX_SLURM_D_PORT=17918 \
  bash "$ROOT/jobs/slurm/start-local.sh"
expect_in "$OUT/stderr" "already runs with other settings \(SlurmctldPort=[0-9]+ SlurmdPort=[0-9]+ CPUs=[0-9]+, or another user or host name\); stop it first" "says so"
cmp -s "$OUT/slurm/slurm.conf" "$OUT/slurm.conf.before" && [ "$SECONDS" -lt 30 ] &&
  grep -qE "idle|mix|alloc" <<<"$(sinfo -h -o %t)" && pass "... in ${SECONDS} s, slurm.conf kept, the cluster answers" ||
  fail "after ${SECONDS} s: $(diff "$OUT/slurm.conf.before" "$OUT/slurm/slurm.conf" | head -3); sinfo: $(sinfo 2>&1 | head -2)"
# ... and so is any start while its slurm.conf is gone (before this check: written anew under the daemons).
mv "$OUT/slurm/slurm.conf" "$OUT/slurm.conf.aside"
expect_exit 2 "start-local.sh while the running cluster's slurm.conf is gone" -- env LONGCTX_SLURM_CTLD_PORT=17917 \
  bash "$ROOT/jobs/slurm/start-local.sh"
expect_in "$OUT/stderr" "already runs with a slurm.conf that is gone; stop it first" "says so"
[ ! -e "$OUT/slurm/slurm.conf" ] && pass "... and writes none" || fail "wrote $(grep Port "$OUT/slurm/slurm.conf" | xargs)"
mv "$OUT/slurm.conf.aside" "$OUT/slurm/slurm.conf"
# A controller restarted on its saved state keeps the queue (before: slurmctld -c, which dropped it).
pending=$(sbatch --parsable --begin=now+3600 --output=/dev/null --wrap 'true')
ctld_pid=$(cat "$OUT/slurm/slurmctld.pid")
kill "$ctld_pid"; for _ in $(seq 50); do kill -0 "$ctld_pid" 2>/dev/null || break; sleep 0.2; done
# Its pid file naming another process by now (a controller killed with -9 leaves it; numbers are reused):
# started all the same (before: taken for the running controller, and start-local.sh waited ~11 minutes).
sleep 900 &
other=$!
echo "$other" >"$OUT/slurm/slurmctld.pid"
expect_exit 0 "start-local.sh after the controller stopped, its pid file naming another process" -- \
  timeout 120 bash "$ROOT/jobs/slurm/start-local.sh"
expect_in "$OUT/stderr" "slurmctld recovers the jobs saved in $OUT/slurm/ctld" "says it recovers the saved jobs"
kill -0 "$other" 2>/dev/null && pass "... the other process left alone" || fail "the process the stale pid file named is gone"
grep -qx "$pending" <<<"$(squeue -h -o %i)" && pass "the pending job $pending is still queued" ||
  fail "queue after the restart: $(squeue -h -o '%i %T' | xargs)"
scancel "$pending" 2>/dev/null
SECONDS=0
expect_exit 1 "a second cluster on the same ports" -- env -C "$OUT" LONGCTX_SLURM_STATE=slurm2 bash "$ROOT/jobs/slurm/start-local.sh"
expect_in "$OUT/stderr" "not running or not the ones answering on ports .* logs in $OUT/slurm2" "says its daemons are not the ones answering"
expect_in "$OUT/stderr" "^==> $OUT/slurm2/slurmctld.log <==" "shows the daemons' last log lines"
[ "$SECONDS" -lt 45 ] && pass "it gave up once they exited (${SECONDS} s)" || fail "it waited ${SECONDS} s"
grep -qE "idle|mix|alloc" <<<"$(sinfo -h -o %t)" && pass "the first cluster still answers" || fail "sinfo: $(sinfo 2>&1 | head -3)"
# Only the controller's port taken: the slurmd it started must not be left running (before: it was,
# trying to register with a controller that had exited).
/usr/bin/python3 -c 'import socket, time; s = socket.socket(); s.bind(("", 17927)); s.listen(); time.sleep(300)' &
holder=$!
sleep 0.5
expect_exit 1 "a cluster whose controller port is taken" -- env -C "$OUT" LONGCTX_SLURM_STATE=slurm3 LONGCTX_SLURM_CTLD_PORT=17927 \
  LONGCTX_SLURM_D_PORT=17928 bash "$ROOT/jobs/slurm/start-local.sh"
expect_in "$OUT/stderr" "stopped the slurmd it started" "says it stopped the daemon it started"
! pgrep -f "$OUT/slurm3/slurm.conf" >/dev/null && pass "no daemon of it is left" ||
  { fail "left: $(pgrep -af "$OUT/slurm3/slurm.conf")"; pkill -f "$OUT/slurm3/slurm.conf"; }
kill "$holder" 2>/dev/null; wait "$holder" 2>/dev/null
jid=$(env LONGCTX="$LONGCTX" sbatch --parsable --time=10 --output="$OUT/stop.out" "$ROOT/jobs/slurm/train.sbatch" \
      "${TRAIN[@]}" --train.steps 100000 --checkpoint.dir "$OUT/ck_stop" --log.jsonl "$OUT/stop.jsonl")
for _ in $(seq 180); do [ "$(job_field "$jid" JobState)" = RUNNING ] && break; sleep 1; done
if wait_for_step "$OUT/stop.jsonl" 5; then
  # The state directory as a relative path with a trailing '/' (before: compared unresolved, so it was "not
  # this cluster": its jobs were not cancelled, and their ranks kept running without a controller).
  expect_exit 0 "stop-local.sh with a job running (state given as 'slurm/' from $OUT)" -- env -C "$OUT" \
    LONGCTX_SLURM_STATE=slurm/ bash "$ROOT/jobs/slurm/stop-local.sh"
  expect_in "$OUT/stderr" "cancelling job\(s\) $jid" "it cancels the job"
  sleep 1
  ! pgrep -f "$OUT/ck_stop" >/dev/null && pass "no rank of the job is left" ||
    { fail "ranks left: $(pgrep -af "$OUT/ck_stop" | head -3)"; pkill -f "$OUT/ck_stop"; }
  expect_exit 0 "stop-local.sh again" -- bash "$ROOT/jobs/slurm/stop-local.sh"
  expect_in "$OUT/stderr" "no daemons of .* to stop" "says there is nothing to stop"
else
  fail "train.sbatch (stop) did not reach step 5"; tail -5 "$OUT/stop.out"; scancel "$jid"
fi
# The controller gone (killed, crashed) while a job runs, and its pid file naming another process by now:
# stop-local.sh ends the job's processes as scancel would (before: it said nothing, and they ran on with
# no controller), and leaves that process alone (before: SIGTERM, then SIGKILL, whatever it was).
eval "$(bash "$ROOT/jobs/slurm/start-local.sh")" || fail "could not start Slurm again"
jid=$(sbatch --parsable --output=/dev/null --wrap "srun --mpi=pmix sleep 3017")
for _ in $(seq 60); do pgrep -xf "sleep 3017" >/dev/null && break; sleep 0.5; done
ctld_pid=$(cat "$OUT/slurm/slurmctld.pid")
kill -9 "$ctld_pid"; for _ in $(seq 50); do kill -0 "$ctld_pid" 2>/dev/null || break; sleep 0.2; done
echo "$other" >"$OUT/slurm/slurmctld.pid"
steps_of() { bash -c 'source "$1/jobs/lib.sh"; longctx_slurm_steps "$2"' _ "$ROOT" "$OUT/slurm"; }
[ -n "$(steps_of)" ] && pass "the job's steps are found by their SLURM_CONF" || fail "no job step found: $(pgrep -a slurmstepd)"
expect_exit 0 "stop-local.sh with a job running and its controller gone" -- timeout 180 bash "$ROOT/jobs/slurm/stop-local.sh"
expect_in "$OUT/stderr" "the controller of $OUT/slurm is not running, and job steps of it are \([0-9]+ slurmstepd.*\): ending their processes as scancel would \(SIGTERM" \
  "says it ends the job's processes"
expect_in "$OUT/stderr" "slurmctld.pid names no running slurmctld .*: removed" "says the pid file was stale"
kill -0 "$other" 2>/dev/null && pass "... and leaves the process it named alone" || fail "killed the process a stale pid file named"
! pgrep -xf "sleep 3017" >/dev/null && [ -z "$(steps_of)" ] && pass "no process of the job is left" ||
  { fail "left: $(pgrep -af "sleep 3017") steps $(steps_of | xargs)"; pkill -xf "sleep 3017"; kill -9 $(steps_of) 2>/dev/null; }
# ... nor the PMIx socket and directories of the killed step, which a step of that job requeued could not bind
# (before: srun said "task 0 launch failed" and exited 0, the job COMPLETED without a step; from the Slurm
# audit). Its spmix_appdir is in the state directory (mpi.conf): in /tmp it failed the job of its number in
# the next cluster.
grep -qx "PMIxCliTmpDirBase=$OUT/slurm/tmp" "$OUT/slurm/mpi.conf" && [ -d "$OUT/slurm/tmp" ] &&
  pass "the PMIx plugin's step directories are in the state directory" || fail "mpi.conf: $(cat "$OUT/slurm/mpi.conf" 2>&1)"
left_sockets=$(ls -d "$OUT/slurm/d/"*pmix* "$OUT/slurm/tmp/"spmix* 2>/dev/null | xargs)
[ -z "$left_sockets" ] && pass "... nor its PMIx socket and directories" || fail "PMIx leftovers of the killed step: $left_sockets"
# ... also with both daemons gone and their pid files with them (before this check: "no daemons to stop").
eval "$(bash "$ROOT/jobs/slurm/start-local.sh")" || fail "could not start Slurm again"
jid=$(sbatch --parsable --output=/dev/null --wrap "srun sleep 3018")
for _ in $(seq 60); do pgrep -xf "sleep 3018" >/dev/null && break; sleep 0.5; done
for daemon in slurmctld slurmd; do kill -9 "$(cat "$OUT/slurm/$daemon.pid")"; rm -f "$OUT/slurm/$daemon.pid"; done
expect_exit 0 "stop-local.sh with a job running and no daemon" -- timeout 180 bash "$ROOT/jobs/slurm/stop-local.sh"
expect_in "$OUT/stderr" "ending their processes as scancel would" "says it ends the job's processes"
! pgrep -xf "sleep 3018" >/dev/null && [ -z "$(steps_of)" ] && pass "no process of the job is left" ||
  { fail "left: $(pgrep -af "sleep 3018") steps $(steps_of | xargs)"; pkill -xf "sleep 3018"; kill -9 $(steps_of) 2>/dev/null; }
kill "$other" 2>/dev/null
finish
