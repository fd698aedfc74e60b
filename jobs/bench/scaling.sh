#!/usr/bin/env bash
# The two measurements of the distributed issue, printed as tables (uses build/bin/longctx):
#
#  constant communication  P = 4 fixed, N grows 4x twice; the spanning branch keeps w/r = 4096 fixed
#                          (w = N, r = N / 4096; schedule 1024,N / 1,N/4096; forward, not causal). LongNet's
#                          claim: bytes per rank stay the same. The expected value (g-1)/g * (w/r) * H * D * 2
#                          * 4, where the segment spans all g = P ranks (w = N), is printed beside the
#                          measured one.
#  weak scaling            1 -> 2 ranks, one thread each, 32K tokens per rank; schedule 2048,4096,8192 / 1,2,4
#                          plus a branch over the whole sequence with w/r = 4096; causal forward. Each round
#                          runs three jobs: 1 rank, 2 ranks, and 2 ranks each doing the 1-rank job with no
#                          communication (what the machine alone adds). Time per rank should not grow by more
#                          than 15%. REPEATS (default 5) interleaved rounds, medians; one line per round
#                          on stderr as it ends (and one per job of the first part).
# On a 2-core machine the 4-rank runs are oversubscribed: use their bytes, not their seconds. The defaults
# take about 10 s per round there, plus 30 s for the first part.
# The runs' options are the script's alone: LONGCTX_* option variables (LONGCTX_THREADS, LONGCTX_BATCH,
# LONGCTX_CONFIG, ...) are not passed to them (they would change what is measured without a word); the
# script names those it left out. What longctx warns about the schedules is printed once each at the end.
#
# usage: jobs/bench/scaling.sh        (no arguments; settings from the environment)
#   H=4 D=64      heads and head dimension of every run
#   REPEATS=5     weak-scaling rounds
#   RESULTS=dir   also keep every job's JSON there (bench attention --json, one object per line):
#                 comm.jsonl, weak1.jsonl (1 rank), weak2.jsonl (2 ranks), pair.jsonl (2 ranks, no comm),
#                 and run.txt (date, host, longctx --version, settings). Each job's JSON is added as the
#                 job ends, so what finished stays there however the script ends (a failed job, a signal,
#                 SIGKILL). run.txt's last line, added as the script ends, says how: "status: complete
#                 (exit 0)", "status: stopped by SIGINT during the ... (exit 130)", "status: failed: ...
#                 (exit 1)"; a run.txt without one is of a study still running or killed (SIGKILL, a
#                 crash). The run claims the directory by creating run.txt (no two runs write one
#                 directory): one that holds any of these files, from an earlier or a running study, is
#                 refused: name a new one. A run where no job finished removes its run.txt again.
#   LONGCTX_BUILD build directory whose bin/longctx runs (default build)
# Exit 0 when every job ran, 1 when one failed (or its JSON could not be kept in RESULTS), 2 for a bad
# setting, 129 / 130 / 143 when stopped by SIGHUP / SIGINT / SIGTERM, to its process group (Ctrl-C, Slurm)
# or to the script alone (kill PID, timeout): the running job ends within a few seconds, not at its end (to
# the script alone, 6 s after the signal). What longctx warned about is printed in every case. Started
# with SIGINT ignored (`cmd &` in a script: bash ignores it for background jobs), it cannot take SIGINT:
# alone it is ignored, and to the group it ends the running job, a failure (exit 1); start it with
# `env --default-signal=INT` (coreutils 8.31 on) there.
[ -n "${BASH_VERSION:-}" ] || { echo "scaling.sh: run it with bash (jobs/bench/scaling.sh, or bash scaling.sh)" >&2; exit 2; }
if [ $# -gt 0 ]; then
  case "$1" in
    -h|--help) sed -n '2,/^[^#]/{/^#/s/^# \{0,1\}//p}' "$0"; exit 0 ;;
    *) echo "scaling.sh: takes no arguments ('$1'); H, D, REPEATS, RESULTS and LONGCTX_BUILD come from the" \
            "environment (--help)" >&2; exit 2 ;;
  esac
fi
for lib in "$(dirname "$0")/../lib.sh" "${LONGCTX_ROOT:-/-}/jobs/lib.sh" "${SLURM_SUBMIT_DIR:-/-}/jobs/lib.sh" ""; do
  # sbatch runs a copy of the script from Slurm's spool, where no lib.sh is beside it: then that of
  # $LONGCTX_ROOT, else of the submit directory. Found nowhere, the script stops (before, it went on
  # without lib.sh's settings and error checks, and ended with exit 0 having done nothing).
  [ ! -f "$lib" ] || break
done
[ -n "$lib" ] || { echo "scaling.sh: jobs/lib.sh is neither beside it nor in \$LONGCTX_ROOT or the submit directory" \
                      "(sbatch runs a copy): submit from the checkout, or set LONGCTX_ROOT to it" >&2; exit 2; }
source "$lib"
LONGCTX=$LONGCTX_BUILD/bin/longctx
H=${H:-4}; D=${D:-64}; REPEATS=${REPEATS:-5}
for setting in "H=$H" "D=$D" "REPEATS=$REPEATS"; do
  [[ "${setting#*=}" =~ ^[1-9][0-9]{0,5}$ ]] ||
    { echo "scaling.sh: $setting: must be a whole number from 1 to 999999, in plain digits" >&2; exit 2; }
done
[ -x "$LONGCTX" ] || { echo "scaling.sh: $LONGCTX: no such program (build first: ./jobs/build.sh)" >&2; exit 2; }
outputs=(comm.jsonl weak1.jsonl weak2.jsonl pair.jsonl run.txt)  # run.txt, the claim, last
if [ -n "${RESULTS:-}" ]; then
  mkdir -p -- "$RESULTS" && [ -w "$RESULTS" ] || { echo "scaling.sh: RESULTS=$RESULTS: cannot write there" >&2; exit 2; }
  for f in "${outputs[@]}"; do
    # run.txt is created with noclobber (O_EXCL) below: of two studies given one RESULTS at once, one gets it.
    { [ ! -e "$RESULTS/$f" ] && { [ "$f" != run.txt ] || (set -C; : >"$RESULTS/run.txt") 2>/dev/null; }; } ||
      { echo "scaling.sh: RESULTS=$RESULTS holds $f of an earlier (or a running) study: name a new directory" \
             "(or remove ${outputs[*]})" >&2; exit 2; }
  done
fi
# The script's own settings stay, and those of the other scripts, which change nothing measured (before: named
# as left out); every other LONGCTX_* variable is an option longctx would read, or a kernel choice.
left_out=()
for name in $(compgen -e | grep '^LONGCTX_'); do
  case $name in
    LONGCTX_BUILD|LONGCTX_ROOT|LONGCTX_*_PACKAGES|LONGCTX_SLURM_*|LONGCTX_NATIVE|LONGCTX_BIN) continue ;;
    LONGCTX_QUICKSTART_DIR|LONGCTX_MIN_RUN_SECONDS|LONGCTX_PROGRESS_SECONDS) continue ;;
  esac
  left_out+=("$name=${!name}")
  unset "$name"
done
[ ${#left_out[@]} -eq 0 ] || echo "scaling.sh: not passed to the runs (their options are the script's): ${left_out[*]}" >&2
tmp=$(mktemp -d)
out_dir=${RESULTS:-$tmp}  # where each job's JSON is added as it ends (before: RESULTS got a copy at the end,
                          # and a SIGKILL, as Slurm sends after KillWait, left it empty)
# The traps write to fd 3, the script's stderr: a trap that runs as a job ends still has that job's
# redirections in effect (its stderr is $tmp/err, removed below).
exec 3>&2
job_pid=
ended=  # how the script stopped itself (a signal, a failed job), for run.txt's status line
finish_results() {
  local status=$?
  end_job  # one still running (an exit on an error, a signal not trapped)
  # (Here, not at the end: a job that failed, or a stop, kept what the jobs before it said.)
  if [ -s "$tmp/said" ]; then
    echo
    echo "longctx said (once each, over all jobs):"
    sort -u "$tmp/said" | sed 's/^/  /'
  fi
  # Any job's JSON there, looked for by name (before: compgen -G "$RESULTS/*.jsonl", which took a RESULTS with
  # glob characters, res[x], for a pattern: a complete study said that no job had finished, and lost run.txt).
  local f finished=0
  for f in "${outputs[@]}"; do [ "$f" = run.txt ] || [ ! -e "${RESULTS:-/-}/$f" ] || finished=1; done
  if [ "$status" -eq 0 ]; then ended="complete"
  elif [ -z "$ended" ]; then ended="failed: an error during ${doing:-starting}"; fi
  if [ -n "${RESULTS:-}" ] && [ "$finished" -eq 0 ]; then
    # No job finished: the claim goes, so that the same RESULTS takes the next try (before: it kept run.txt
    # alone, refused thereafter, and was said to hold the JSON of every finished job).
    rm -f -- "$RESULTS/run.txt"
    echo "scaling.sh: no job finished; RESULTS=$RESULTS holds nothing of this run" >&3
  elif [ -n "${RESULTS:-}" ]; then
    # How the study ended, so that a partial one is not taken for a full one (before: run.txt, written at the
    # start, read the same after a stop or a failure as after a complete study).
    echo "status: $ended (exit $status)" >>"$RESULTS/run.txt" ||
      echo "scaling.sh: could not add the status line to $RESULTS/run.txt" >&3
    echo "scaling.sh: the JSON of every job that finished is in $RESULTS" >&3
  fi
  rm -rf "$tmp"
  exit "$status"
}
trap finish_results EXIT
# What was running when a signal came: the EXIT trap keeps what finished. The job runs in the background
# and is waited for, so that a signal to the script alone is handled at once (bash runs no trap while a
# foreground child runs: the whole job ran to its end first, and was then said to be stopped).
# end_job: mpirun ends its ranks on SIGTERM. A signal to the script's process group (Ctrl-C, kill -- -PGID;
# Slurm signals every process of the step) reached mpirun as well, and it is ending the job already: it is
# given 6 s to do so before it is sent SIGTERM, since Open MPI's mpirun takes a second signal within 5 s for
# "stuck" and exits at once, leaving its ranks running (one after that only writes "Abort is in
# progress..." to its stdout: the job's JSON, not kept). A signal to the script alone ends the job then.
doing="starting"
# A job that ended well meanwhile (it was finishing when the signal came) keeps its JSON, as run() keeps
# it (before: dropped, and "no job finished" said of a study whose only job had).
end_job() {
  [ -n "$job_pid" ] || return 0
  local tenths status=0
  for ((tenths = 0; tenths < 60; tenths++)); do kill -0 "$job_pid" 2>/dev/null || break; sleep 0.1; done
  kill -TERM "$job_pid" 2>/dev/null || true
  wait "$job_pid" 2>/dev/null || status=$?
  job_pid=
  if [ "$status" -eq 0 ] && [ -s "$tmp/job.json" ] && cat "$tmp/job.json" >>"$job_out"; then
    echo "scaling.sh: the $job_label had finished; its JSON is kept in $job_out" >&3
  fi
}
stop() {
  end_job
  ended="stopped by SIG$1 during $doing"
  echo "scaling.sh: $ended" >&3
  exit "$2"
}
trap 'stop HUP 129' HUP
trap 'stop INT 130' INT
trap 'stop TERM 143' TERM
export OMP_NUM_THREADS=1
{
  echo "date: $(date -u '+%Y-%m-%dT%H:%M:%SZ')"
  echo "host: $(hostname)"
  echo "longctx: $("$LONGCTX" --version 2>&1 | head -1)"
  echo "settings: H=$H D=$D REPEATS=$REPEATS"
} >"$out_dir/run.txt"
# run LABEL OUT LONGCTX_ARGS...: one bench attention job under mpirun, its JSON appended to OUT; its
# warnings kept for the end. A failed job stops the script, naming it, with its messages.
run() {
  local label=$1 out=$2
  shift 2
  doing="the $label"
  local status=0 mpirun_options
  read -ra mpirun_options <<<"$(longctx_mpirun_options)"
  # mpirun itself, not a shell around it (a function would run in a subshell): $! is what end_job() signals.
  # Its JSON joins OUT once it has ended well: a job stopped or failed leaves nothing there.
  job_out=$out job_label=$label
  mpirun "${mpirun_options[@]}" "$@" --threads 1 --batch 1 --json --quiet </dev/null 2>"$tmp/err" >"$tmp/job.json" &
  job_pid=$!
  wait "$job_pid" || status=$?
  job_pid=
  [ "$status" -eq 0 ] || {
    echo "scaling.sh: the $label failed:" >&2; cat "$tmp/err" >&2
    [ ! -s "$tmp/job.json" ] || { echo "it printed:" >&2; cat "$tmp/job.json" >&2; }
    [ -n "${RESULTS:-}" ] || [ ! -s "$out" ] || { echo "what finished before it (JSON):" >&2; cat "$out" >&2; }
    ended="failed: the $label failed"
    # longctx's exit 2 (every rank's, so mpirun's): it refused a setting of the script's (H or D too large
    # for this machine's memory): a bad setting, as exit 2 says (before: 1, as for a failure).
    [ "$status" -ne 2 ] || { echo "scaling.sh: longctx refused the $label's settings (H=$H D=$D): a bad setting" >&2
                             ended="failed: longctx refused the $label's settings (H=$H D=$D)"; exit 2; }
    exit 1; }
  cat "$tmp/job.json" >>"$out" || { echo "scaling.sh: could not add the $label's JSON to $out" >&2
                                    ended="failed: could not add the $label's JSON to $out"; exit 1; }
  grep -v "^\[longctx info " "$tmp/err" >>"$tmp/said" || true  # (none: grep's exit 1, under set -e)
}

echo "## constant communication (P = 4, H = $H, D = $D, w/r = 4096, forward, not causal)"
job=0
for N in 16384 65536 262144; do
  run "4-rank job at N = $N" "$out_dir/comm.jsonl" -np 4 "$LONGCTX" bench attention --seq-len $N --heads $H \
    --head-dim $D --iters 1 --warmup 0 --segment-lengths 1024,$N --dilation-rates 1,$((N / 4096))
  echo "scaling.sh: constant communication: job $((job += 1)) of 3 (N = $N) done" >&2
done
doing="the tables"
/usr/bin/python3 - "$out_dir/comm.jsonl" <<'PY'
import json, sys
print("| N | schedule | bytes received per rank (measured, fwd) | expected (g-1)/g (w/r) H D 2 4, g = P |")
print("|---|---|---|---|")
for line in open(sys.argv[1]):
    r = json.loads(line)
    p, (w, rate) = r["world_size"], r["schedule"][-1]
    want = (p - 1) * (w // rate) // p * r["heads"] * r["head_dim"] * 2 * 4
    got = sorted({x["bytes_received_fwd"] for x in r["per_rank"]})
    print(f"| {r['seq_len']} | {r['schedule']} | {', '.join(map(str, got))} | {want} |")
PY

echo
echo "## weak scaling (32768 tokens per rank, 1 thread per rank, H = $H, D = $D, schedule 2048,4096,8192,N /" \
  "1,2,4,N/4096, causal forward, $REPEATS interleaved rounds)"
# Each round runs three jobs back to back: 1 rank; 2 ranks with the spanning branch (all-gather between
# the ranks); and the machine's own share of the growth: the same 2 ranks each doing exactly the 1-rank
# work with NO communication (the last branch is w = 32768, r = 8 again, which fits in a shard). On a
# small VM two busy cores run slower than one (shared caches, memory, clocks, neighbours), and that noise
# swings single runs by +-20%, so the rounds are interleaved and the medians are reported.
# The 2 ranks do not do exactly the 1-rank work each: the spanning branch's causal pairs, balanced between
# them (sequence_parallel.hpp), come to a few % off the 1-rank job's. "per pair" columns divide that out.
# weak_run LABEL P LAST_W LAST_R OUT: one causal forward job on P ranks, N = 32768 P, schedule
# 2048,4096,8192 / 1,2,4 plus the branch (LAST_W, LAST_R); appends its JSON to OUT.
weak_run() {
  run "$1 (round $((round + 1)) of $REPEATS)" "$5" -np "$2" "$LONGCTX" bench attention --seq-len $((32768 * $2)) \
    --heads $H --head-dim $D --iters 3 --warmup 1 --segment-lengths 2048,4096,8192,"$3" --dilation-rates 1,2,4,"$4" --causal
}
last_seconds() { /usr/bin/python3 -c 'import json, sys; print("%.3f" % json.loads(open(sys.argv[1]).readlines()[-1])["seconds_fwd"])' "$1"; }
for ((round = 0; round < REPEATS; round++)); do
  weak_run "1-rank weak-scaling job" 1 32768 8 "$out_dir/weak1.jsonl"
  weak_run "2-rank weak-scaling job" 2 65536 16 "$out_dir/weak2.jsonl"
  weak_run "2-rank job without communication" 2 32768 8 "$out_dir/pair.jsonl"
  echo "scaling.sh: round $((round + 1)) of $REPEATS: 1 rank $(last_seconds "$out_dir/weak1.jsonl") s, 2 ranks" \
    "$(last_seconds "$out_dir/weak2.jsonl") s, 2 ranks without communication $(last_seconds "$out_dir/pair.jsonl") s" >&2
done
doing="the tables"
/usr/bin/python3 - "$out_dir/weak1.jsonl" "$out_dir/weak2.jsonl" "$out_dir/pair.jsonl" <<'PY'
import json, statistics, sys
one, two, pair = ([json.loads(l) for l in open(f)] for f in sys.argv[1:4])
pct = lambda a, b: 100 * (a / b - 1)
slowest = lambda r: max(r["per_rank"], key=lambda x: x["seconds_fwd"])
print("| round | 1 rank fwd s | 2 ranks fwd s (slowest) | its pairs / 1 rank's | 2 ranks, no comm, s | growth "
      "| contention alone | overhead beyond it | per pair | bytes received per rank | comm hidden |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
per_pair = []
for i, (a, b, c) in enumerate(zip(one, two, pair)):
    t1, t2, tc = a["seconds_fwd"], b["seconds_fwd"], c["seconds_fwd"]
    share = slowest(b)["pairs"] / a["pairs"]
    per_pair.append(pct(t2 / share, tc))
    recv = max(x["bytes_received_fwd"] for x in b["per_rank"])
    hidden = min((x["comm_hidden_fwd"] for x in b["per_rank"] if x["comm_hidden_fwd"] is not None), default=1.0)
    print(f"| {i + 1} | {t1:.3f} | {t2:.3f} | {share:.3f} | {tc:.3f} | {pct(t2, t1):+.1f}% | {pct(tc, t1):+.1f}% "
          f"| {pct(t2, tc):+.1f}% | {per_pair[-1]:+.1f}% | {recv} | {100 * hidden:.0f}% |")
m1, m2, mc = (statistics.median(r["seconds_fwd"] for r in rows) for rows in (one, two, pair))
print(f"\nmedians: 1 rank {m1:.3f} s, 2 ranks {m2:.3f} s, 2 ranks without communication {mc:.3f} s")
print(f"time per rank 1 -> 2 ranks: {pct(m2, m1):+.1f}% (target <= +15%; machine contention alone: "
      f"{pct(mc, m1):+.1f}%; distributed overhead beyond it: {pct(m2, mc):+.1f}%, "
      f"{statistics.median(per_pair):+.1f}% per pair: the slowest rank's pairs over 1 rank's)")
print("weak scaling: " + ("within the target" if pct(m2, m1) <= 15 else
      "OVER the target" + (" (beyond what the machine alone adds: within it)" if pct(m2, mc) <= 15 else "")))
PY
