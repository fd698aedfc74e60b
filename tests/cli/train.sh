#!/usr/bin/env bash
# longctx train: bad options exit 2 naming the value before any step; a bad data file / checkpoint exits
# 3; save + resume reproduces an uninterrupted run's losses exactly (same P), also after SIGUSR1 (exit 75);
# resume at another P works; activation dumps and log.jsonl fields exist.
LONGCTX=$1
source "$(dirname "$0")/lib.sh"

BASE=(--quiet --model.mlp_hidden 64 --model.dilation_rates 1,2,4
      --data.key_digits 3 --train.warmup 2 --train.lr 3e-3 --eval.sequences 2)
SMALL=("${BASE[@]}" --model.heads 4 --model.dim 32 --model.segment_lengths 32,128,256 --data.seq_len 256)
losses() { grep '"loss"' "$1" | sed -E 's/.*"step": ([0-9]+), "loss": ([^,]+),.*/\1 \2/'; }

# ---- every config the project ships loads and trains (the quickstart and the README run passkey.ini; a
# comment line left without its '#' made it exit 2 and nothing caught it) ------------------------------
for config in "$(dirname "$0")"/../../jobs/configs/*.ini; do
  expect_exit 0 "$(basename "$config"), 3 short steps on 2 ranks" -- timeout 300 "${MPIRUN[@]}" -np 2 "$LONGCTX" train \
    --config "$config" --quiet --data.seq_len 2048 --data.short_seq_len 256,1024 --data.short_steps 1,1 --train.steps 3 \
    --eval.every 0 --checkpoint.dir "$OUT/shipped" --log.jsonl "$OUT/shipped.jsonl"
  rm -rf "$OUT/shipped" "$OUT/shipped.jsonl"
done

# ---- a training step, evaluation or checkpoint that lasts a period (30 s; here 0.02 s) or longer is said,
# on rank 0 only; quick ones are not (before: train said nothing between its step lines, however long) ----
expect_exit 0 "steps of ~0.1 s with LONGCTX_PROGRESS_SECONDS=0.02" -- env LONGCTX_PROGRESS_SECONDS=0.02 \
  "${MPIRUN[@]}" -np 2 "$LONGCTX" train "${BASE[@]}" --model.heads 4 --model.dim 32 --model.segment_lengths 256,1024,8192 \
  --data.seq_len 8192 --train.steps 2 --checkpoint.dir "$OUT/alive"
expect_in "$OUT/stderr" "^\[longctx info r0\] training step 1: running, [0-9]+\.[0-9] s$" "a long training step is said"
expect_in "$OUT/stderr" "^\[longctx info r0\] evaluating step 2: running, [0-9]+\.[0-9] s$" "... and a long evaluation"
grep "running, " "$OUT/stderr" | grep -qv "info r0" && fail "a rank other than 0 said it" || pass "... from rank 0 only"
grep -qE "^\[longctx info r[0-9]+\] *$" "$OUT/stderr" && fail "an empty line" || pass "... and no empty line"
# Steps of ~5 ms for ~1.5 s: the heartbeat ticks, and finds nothing that lasted its 0.3 s.
expect_exit 0 "300 quick steps with LONGCTX_PROGRESS_SECONDS=0.3" -- env LONGCTX_PROGRESS_SECONDS=0.3 "$LONGCTX" train \
  "${SMALL[@]}" --train.steps 300 --log.every 100
grep -q "running, " "$OUT/stderr" && fail "a quick step was said: $(grep "running, " "$OUT/stderr")" || pass "... quick steps are not said"
rm -rf "$OUT/alive"

# ---- MFU's peak counts each thread of each rank (before: 128 GFLOP/s a rank, so a rank of 2 threads read
# MFU 109%); train.peak_gflops, when given, is one rank's ---------------------------------------------
QUIET_LESS=(); for arg in "${SMALL[@]}"; do [ "$arg" = --quiet ] || QUIET_LESS+=("$arg"); done
expect_exit 0 "1 rank of 2 threads" -- "$LONGCTX" train "${QUIET_LESS[@]}" --train.steps 2 --train.threads 2
expect_in "$OUT/stderr" "MFU peak 256 GFLOP/s \(128 a thread, 2 threads\); run" "peak: 128 a thread, 2 threads"
expect_exit 0 "2 ranks of 1 thread" -- env OMP_NUM_THREADS=1 "${MPIRUN[@]}" -np 2 "$LONGCTX" train "${QUIET_LESS[@]}" \
  --train.steps 2
expect_in "$OUT/stderr" "MFU peak 256 GFLOP/s \(128 a thread, 2 threads over 2 ranks\); run" "peak: 2 threads over 2 ranks"
expect_exit 0 "2 ranks, train.peak_gflops 100" -- "${MPIRUN[@]}" -np 2 "$LONGCTX" train "${QUIET_LESS[@]}" --train.steps 2 \
  --train.peak_gflops 100
expect_in "$OUT/stderr" "MFU peak 200 GFLOP/s \(100 per rank, train.peak_gflops\); run" "peak: train.peak_gflops a rank"

# ---- train.threads changes no number (a resume may change it; sgemm's tiles shrink to give 5 threads
# work): the same losses and gradient norms to the last digit at 1 and 5 threads ---------------------
for threads in 1 5; do
  expect_exit 0 "6 steps at train.threads $threads" -- "$LONGCTX" train "${SMALL[@]}" --train.steps 6 --train.threads "$threads" \
    --log.jsonl "$OUT/threads_$threads.jsonl"
done
numbers() { sed -E 's/.*("loss": [^,]+),.*("grad_norm": [^,]+),.*/\1 \2/' "$1"; }
[ "$(numbers "$OUT/threads_1.jsonl" | wc -l)" -eq 6 ] && [ "$(numbers "$OUT/threads_1.jsonl")" = "$(numbers "$OUT/threads_5.jsonl")" ] &&
  pass "... the same losses and gradient norms" || fail "train.threads changed the numbers: $(paste "$OUT/threads_1.jsonl" "$OUT/threads_5.jsonl" | head -3)"

# ---- validation: exit 2 naming the value, nothing run -----------------------------------------------
expect_exit 2 "a model larger than the node" -- "$LONGCTX" train "${BASE[@]}" --model.heads 4 --model.dim 32 \
  --model.segment_lengths 32,128,256 --data.seq_len 64M
expect_in "$OUT/stderr" "train \(model.layers=.*data.seq_len=67108864 over 1 rank\) needs at least .* GiB per rank" "says what it needs, up front"
# Task sizes that overflowed the fit check (a segfault, or exit 1 from a vector of 2^62) are exit 2.
for big in "data.key_repeats 4611686018427387903" "data.key_digits 4611686018427387903" \
           "data.filler_period 4611686018427387903" "data.records 4611686018427387903 --data.task associative"; do
  expect_exit 2 "--$big" -- "$LONGCTX" train --quiet --model.heads 4 --model.dim 32 --model.segment_lengths 32,128,256 \
    --model.dilation_rates 1,2,4 --data.seq_len 256 --${big%% *} ${big#* }
  expect_in "$OUT/stderr" "${big%% *}=4611686018427387903" "names ${big%% *}"
done
# Schedule errors name train's options (they named attend's --dilation-rates and --allow-uncovered).
expect_exit 2 "no rate-1 branch" -- "$LONGCTX" train --quiet --model.segment_lengths 64,128 --model.dilation_rates 2,4
expect_in "$OUT/stderr" "error: model.dilation_rates \(2,4\): no branch has rate 1.* add a branch with rate 1$" "names model.dilation_rates"
grep -q -- "--" "$OUT/stderr" && fail "names a command-line option train does not have" || pass "no attend option named"
expect_exit 2 "a curriculum stage that does not shard" -- "${MPIRUN[@]}" -np 2 "$LONGCTX" train "${SMALL[@]}" \
  --data.short_seq_len 96 --data.short_steps 2
expect_in "$OUT/stderr" "data.short_seq_len=96: model.segment_lengths: segment length 32" "names the stage and model.segment_lengths"
# A stage already trained does not have to shard at the world size of a resume (before: refused the same way).
expect_exit 0 "a curriculum run on one rank, past its stage" -- "$LONGCTX" train "${SMALL[@]}" --data.short_seq_len 96 \
  --data.short_steps 2 --train.steps 3 --checkpoint.dir "$OUT/stage_done"
# A fresh run in checkpoint.dir says so, with the directory's absolute path (before: no word, so a relative
# checkpoint.dir from another working directory looked like a resume).
expect_in "$OUT/stderr" "checkpoint.dir=$OUT/stage_done holds no checkpoint: a fresh run, from step 1" "a fresh run is said"
expect_exit 0 "the same, relative, from another directory" -- bash -c 'mkdir -p "$1/elsewhere" && cd "$1/elsewhere" &&
  "$0" train "${@:2}" --data.short_seq_len 96 --data.short_steps 2 --train.steps 1 --checkpoint.dir stage_done' \
  "$LONGCTX" "$OUT" "${SMALL[@]}"
expect_in "$OUT/stderr" "checkpoint.dir=stage_done \($OUT/elsewhere/stage_done\) holds no checkpoint: a fresh run" \
  "... a relative one with the directory it is in"
expect_exit 0 "resumed on 2 ranks after the stage" -- "${MPIRUN[@]}" -np 2 "$LONGCTX" train "${SMALL[@]}" \
  --data.short_seq_len 96 --data.short_steps 2 --train.steps 4 --checkpoint.dir "$OUT/stage_done"
[ "$(cat "$OUT/stage_done/latest")" = step_00000004.h5 ] && pass "trained on to step 4" || fail "latest: $(cat "$OUT/stage_done/latest")"
# A checkpoint file given as checkpoint.dir: its directory is named, and how to resume from that file (before:
# "is not a directory" alone).
expect_exit 2 "checkpoint.dir naming a checkpoint file" -- "$LONGCTX" train "${SMALL[@]}" --data.short_seq_len 96 \
  --data.short_steps 2 --train.steps 4 --checkpoint.dir "$OUT/stage_done/step_00000004.h5"
expect_in "$OUT/stderr" "is a checkpoint file, not a directory: give its directory \($OUT/stage_done\), .*write its name there" \
  "... names its directory and latest"
expect_exit 0 "a curriculum run on one rank, inside its stage" -- "$LONGCTX" train "${SMALL[@]}" --data.short_seq_len 96 \
  --data.short_steps 2 --train.steps 1 --checkpoint.dir "$OUT/stage_open"
expect_exit 2 "resumed on 2 ranks inside the stage" -- "${MPIRUN[@]}" -np 2 "$LONGCTX" train "${SMALL[@]}" \
  --data.short_seq_len 96 --data.short_steps 2 --train.steps 4 --checkpoint.dir "$OUT/stage_open"
expect_in "$OUT/stderr" "data.short_seq_len=96: model.segment_lengths: segment length 32" "names the stage it still has to train"
[ "$(cat "$OUT/stage_open/latest")" = step_00000001.h5 ] && pass "nothing trained" || fail "latest: $(cat "$OUT/stage_open/latest")"
# A task too long for a stage names data.short_seq_len (before: data.seq_len, set to 1024 here).
expect_exit 2 "an associative task longer than its stage" -- "$LONGCTX" train --quiet --model.heads 4 --model.dim 32 \
  --model.segment_lengths 32,128,256 --model.dilation_rates 1,2,4 --data.seq_len 1024 --data.task associative \
  --data.short_seq_len 256 --data.short_steps 2 --train.steps 4
expect_in "$OUT/stderr" "error: data.short_seq_len=256 is too short for associative: need at least" "names data.short_seq_len"
expect_exit 2 "zero layers" -- "$LONGCTX" train "${SMALL[@]}" --model.layers 0
expect_in "$OUT/stderr" "model.layers=0" "zero layers named"
# More steps than the int64 token counters hold at this length (before: accepted, and the counts would wrap).
expect_exit 2 "steps x seq_len past 2^63" -- timeout 60 "$LONGCTX" train "${SMALL[@]}" --train.steps 4611686018427387904
expect_in "$OUT/stderr" "past 2\^63 - 1 tokens; at most [0-9]+ steps" "names the most steps"
# More steps than checkpoint names hold, with checkpoint.dir (before: step 100000000 trained, then not saved).
expect_exit 2 "steps past 8-digit checkpoint names" -- timeout 60 "$LONGCTX" train "${SMALL[@]}" --train.steps 100000000 \
  --checkpoint.dir "$OUT/eight_digits"
expect_in "$OUT/stderr" "train.steps=100000000: checkpoints are named step_%08d.h5, so with checkpoint.dir at most 99999999 steps" \
  "... names the most steps"
[ -e "$OUT/eight_digits" ] && fail "made checkpoint.dir although it refused" || pass "... made no checkpoint.dir"
expect_exit 2 "heads not dividing dim" -- "$LONGCTX" train "${BASE[@]}" --model.dim 32 --model.segment_lengths 32,128,256 --data.seq_len 256 --model.heads 5
expect_in "$OUT/stderr" "model.heads=5" "heads named"
# Zero or negative heads: a usage error, not a SIGFPE (the rope_dims check divided model.dim by them first).
expect_exit 2 "zero heads" -- "$LONGCTX" train "${BASE[@]}" --model.dim 32 --model.segment_lengths 32,128,256 --data.seq_len 256 \
  --model.heads 0
expect_in "$OUT/stderr" "model.heads=0: must be >= 1" "zero heads named"
expect_exit 2 "negative heads" -- "$LONGCTX" train "${BASE[@]}" --model.segment_lengths 32,128,256 --data.seq_len 256 \
  --model.heads=-1 --model.dim=-9223372036854775808
expect_in "$OUT/stderr" "model.dim=-9223372036854775808: must be >= 2" "the dim named first"
expect_exit 2 "unshardable schedule at P=3" -- "${MPIRUN[@]}" -np 3 "$LONGCTX" train "${BASE[@]}" --model.dim 32 --model.heads 4 \
  --model.segment_lengths 32,128,256 --data.seq_len 255
expect_in "$OUT/stderr" "segment" "schedule error names the segment length"
expect_exit 2 "unknown task" -- "$LONGCTX" train "${SMALL[@]}" --data.task poetry
expect_in "$OUT/stderr" "data.task=poetry" "task named"
expect_exit 2 "dump layer out of range" -- "$LONGCTX" train "${SMALL[@]}" --dump.activations "$OUT/a.h5" --dump.layers 7
[ ! -e "$OUT/a.h5" ] && pass "nothing written on a usage error" || fail "dump written despite usage error"
expect_exit 2 "bf16 attention on the cpu" -- "$LONGCTX" train "${SMALL[@]}" --dtype bf16 --checkpoint.dir "$OUT/ck_bf16"
expect_in "$OUT/stderr" "dtype bf16.*--device cuda" "names --dtype and the way out"
if ! grep -qE "CUDA: .* [1-9][0-9]* device" <<<"$("$LONGCTX" --version)"; then
  expect_exit 2 "--device cuda without a GPU" -- "$LONGCTX" train "${SMALL[@]}" --device cuda --dtype bf16 --checkpoint.dir "$OUT/ck_gpu"
  expect_in "$OUT/stderr" "device cuda" "names --device cuda"
  [ ! -e "$OUT/ck_gpu" ] && pass "no checkpoint folder on a usage error" || fail "checkpoint folder made despite usage error"
fi
echo "not a token file" >"$OUT/text.h5"
expect_exit 3 "data.path not a token file" -- "$LONGCTX" train "${SMALL[@]}" --data.task file --data.path "$OUT/text.h5" --model.vocab 256
expect_in "$OUT/stderr" "text.h5" "bad data file named"
expect_exit 3 "data.path not a token file, 2 ranks" -- "${MPIRUN[@]}" -np 2 "$LONGCTX" train "${SMALL[@]}" --data.task file \
  --data.path "$OUT/text.h5" --model.vocab 256
[ "$(grep -c 'error' "$OUT/stderr")" -eq 1 ] && ! grep -q MPI_ABORT "$OUT/stderr" && pass "one message from 2 ranks, no MPI_Abort" \
  || { fail "a bad data file under mpirun: $(grep -c error "$OUT/stderr") error lines"; head -5 "$OUT/stderr"; }
# A token file damaged where step 1 reads it: refused (exit 3) before a step is trained, so the lock file,
# the note of where log.jsonl's lines start and the checkpoint.dir the run made go, as for a refusal before
# the start (before: all stayed). One rank: under mpirun the first window is read, and refused, at the start.
head -c 20000 "$(dirname "$0")/../../README.md" >"$OUT/corpus.txt"
"$LONGCTX" data import --quiet --text "$OUT/corpus.txt" --out "$OUT/corpus.h5" >/dev/null 2>&1 || fail "could not import the corpus"
/usr/bin/python3 - "$OUT/corpus.h5" "$OUT/corpus_damaged.h5" <<'PY' || fail "could not damage the corpus"
import sys, h5py
with h5py.File(sys.argv[1], "r") as f:
    offset = f["tokens"].id.get_chunk_info(0).byte_offset
data = bytearray(open(sys.argv[1], "rb").read())
data[offset + 100] ^= 0xFF  # in the first window (tokens [0, 257))
open(sys.argv[2], "wb").write(data)
PY
# (The check of the whole file before the run finds it first: LONGCTX_TOKEN_CHECK_BYTES=0 turns that off here.)
expect_exit 3 "a token file damaged, checked before the run" -- "$LONGCTX" train "${SMALL[@]}" --data.task file \
  --data.path "$OUT/corpus_damaged.h5" --model.vocab 256 --checkpoint.dir "$OUT/damaged_run/ck" --log.jsonl "$OUT/damaged.jsonl"
expect_in "$OUT/stderr" "corpus_damaged.h5 is damaged: .*/tokens \[0, 20000\) cannot be read \(Fletcher32 checksum mismatch" "... names it"
[ ! -e "$OUT/damaged_run" ] && [ ! -e "$OUT/damaged.jsonl" ] && pass "... and makes nothing" || fail "made: $(find "$OUT/damaged_run")"
export LONGCTX_TOKEN_CHECK_BYTES=0
expect_exit 3 "a token file damaged in step 1's window" -- "$LONGCTX" train "${SMALL[@]}" --data.task file \
  --data.path "$OUT/corpus_damaged.h5" --model.vocab 256 --checkpoint.dir "$OUT/damaged_run/ck" --log.jsonl "$OUT/damaged.jsonl"
expect_in "$OUT/stderr" "corpus_damaged.h5: /tokens: read failed: Fletcher32 checksum mismatch .*reading tokens \[0, 257\) for training" \
  "names the file, the damage and step 1's read"
[ ! -e "$OUT/damaged_run" ] && pass "... and leaves no checkpoint.dir, lock file or log note" || fail "left: $(find "$OUT/damaged_run")"
# ... with log.summary in that checkpoint.dir: the summary says so and keeps its directory, the lock file goes.
expect_exit 3 "the same with log.summary in checkpoint.dir" -- "$LONGCTX" train "${SMALL[@]}" --data.task file \
  --data.path "$OUT/corpus_damaged.h5" --model.vocab 256 --checkpoint.dir "$OUT/damaged_run/ck" \
  --log.summary "$OUT/damaged_run/ck/summary.json" --log.jsonl "$OUT/damaged.jsonl"
[ "$(ls -A "$OUT/damaged_run/ck")" = summary.json ] && grep -q '"exit": 3' "$OUT/damaged_run/ck/summary.json" &&
  pass "... the summary (exit 3) is written, the lock file and the log note are gone" || fail "left: $(ls -A "$OUT/damaged_run/ck")"
unset LONGCTX_TOKEN_CHECK_BYTES

# ---- uninterrupted reference: 6 steps at P=2 ---------------------------------------------------------
expect_exit 0 "uninterrupted run" -- "${MPIRUN[@]}" -np 2 "$LONGCTX" train "${SMALL[@]}" --train.steps 6 \
  --log.jsonl "$OUT/a.jsonl" --eval.every 3 --dump.activations "$OUT/acts.h5" --dump.layers 0,1 --dump.steps 2
expect_in "$OUT/stdout" "^step +6 .*tokens/s .*MFU" "per-step log line"
expect_in "$OUT/a.jsonl" '"tokens_per_s"' "jsonl has tokens_per_s"
expect_in "$OUT/a.jsonl" '"eval_accuracy"' "jsonl has eval_accuracy"
/usr/bin/python3 - "$OUT/a.jsonl" <<'PY' && pass "every log.jsonl line has interfaces.md's fields; steps 3 and 6 carry the eval" || fail "log.jsonl lines"
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
for l in lines:
    assert {"step", "loss", "tokens_per_s", "seconds", "lr"} <= set(l), l
assert [l["step"] for l in lines] == [1, 2, 3, 4, 5, 6], [l["step"] for l in lines]
assert [l["step"] for l in lines if "eval_accuracy" in l] == [3, 6], lines
PY
[ "$(losses "$OUT/a.jsonl" | wc -l)" -eq 6 ] && pass "six logged steps" || fail "wanted 6 logged steps"
# An eval off the log.every grid gets its log.jsonl line all the same (its fields would be lost otherwise).
expect_exit 0 "eval.every 3 with log.every 2" -- "$LONGCTX" train "${SMALL[@]}" --train.steps 4 --log.every 2 \
  --eval.every 3 --log.jsonl "$OUT/offgrid.jsonl"
[ "$(grep -c '"eval_accuracy"' "$OUT/offgrid.jsonl")" -eq 2 ] && [ "$(losses "$OUT/offgrid.jsonl" | cut -d' ' -f1 | tr '\n' ' ')" = "2 3 4 " ] &&
  grep -q '"step": 3,.*"eval_accuracy"' "$OUT/offgrid.jsonl" && pass "step 3's eval is logged" ||
  fail "log.jsonl steps: $(losses "$OUT/offgrid.jsonl" | cut -d' ' -f1 | tr '\n' ' ')"
# The backward keeps each layer's gathered K / V from the forward (w = 256 spans both ranks); gathering
# them again (train.regather_kv) is the same arithmetic: the same losses, bit for bit.
expect_exit 0 "the same run, gathering K / V again in the backward" -- "${MPIRUN[@]}" -np 2 "$LONGCTX" train "${SMALL[@]}" \
  --train.steps 6 --log.jsonl "$OUT/regather.jsonl" --eval.every 3 --train.regather_kv
diff <(losses "$OUT/a.jsonl") <(losses "$OUT/regather.jsonl") >/dev/null && pass "kept K / V = gathered again" \
  || { fail "kept and regathered K / V give other losses"; paste <(losses "$OUT/a.jsonl") <(losses "$OUT/regather.jsonl"); }
if python3 -c "import h5py" 2>/dev/null; then
  python3 - "$OUT/acts.h5" <<'PY' && pass "dump has global [N,H,D] q/k/v/o" || fail "dump layout"
import sys, h5py
f = h5py.File(sys.argv[1], "r")
for l in (0, 1):
    for n in "qkvo":
        assert f[f"step_2/layer_{l}/{n}"].shape == (256, 4, 8), f[f"step_2/layer_{l}/{n}"].shape
PY
else
  [ -s "$OUT/acts.h5" ] && pass "dump file written" || fail "no dump file"
fi

# ---- save at 3, resume to 6 at the same P: identical losses -------------------------------------------
expect_exit 0 "run with checkpoints" -- "${MPIRUN[@]}" -np 2 "$LONGCTX" train "${SMALL[@]}" --train.steps 6 \
  --checkpoint.dir "$OUT/ck" --checkpoint.every 3 --checkpoint.keep 0 --log.jsonl "$OUT/b.jsonl"
[ -f "$OUT/ck/step_00000003.h5" ] && [ -f "$OUT/ck/step_00000006.h5" ] && pass "checkpoints 3 and 6 committed" \
  || fail "missing checkpoints"
rm "$OUT/ck/step_00000006.h5"; printf 'step_00000003.h5\n' >"$OUT/ck/latest"
expect_exit 0 "resume from step 3" -- "${MPIRUN[@]}" -np 2 "$LONGCTX" train "${SMALL[@]}" --train.steps 6 \
  --checkpoint.dir "$OUT/ck" --log.jsonl "$OUT/c.jsonl"
expect_in "$OUT/stderr" "resumed from .*step_00000003.h5" "says where it resumed"
if diff <(losses "$OUT/a.jsonl" | tail -3) <(losses "$OUT/c.jsonl") >/dev/null; then pass "resumed losses identical"
else fail "resumed losses differ"; paste <(losses "$OUT/a.jsonl" | tail -3) <(losses "$OUT/c.jsonl"); fi

# ---- resume at another P (1 rank): runs, losses close but not bitwise ---------------------------------
rm "$OUT/ck/step_00000006.h5"; printf 'step_00000003.h5\n' >"$OUT/ck/latest"
expect_exit 0 "resume at P=1" -- "$LONGCTX" train "${SMALL[@]}" --train.steps 6 --checkpoint.dir "$OUT/ck" \
  --log.jsonl "$OUT/d.jsonl"
python3 - <(losses "$OUT/a.jsonl" | tail -3) <(losses "$OUT/d.jsonl") <<'PY' && pass "P=1 resume close to P=2" || fail "P=1 resume diverged"
import sys
a = [float(l.split()[1]) for l in open(sys.argv[1])]
b = [float(l.split()[1]) for l in open(sys.argv[2])]
assert len(a) == len(b) == 3 and all(abs(x - y) < 1e-3 for x, y in zip(a, b)), (a, b)
PY

# ---- latest past train.steps: exit 2 naming both, nothing trained or written (before: "done", exit 0) ---
# Its lock file removed first: the refused run makes one and removes it again (before, it stayed).
rm -f "$OUT/ck/.longctx.lock"
ls -A "$OUT/ck" >"$OUT/ck.before"
expect_exit 2 "resume past train.steps" -- "$LONGCTX" train "${SMALL[@]}" --train.steps 4 --checkpoint.dir "$OUT/ck" \
  --log.jsonl "$OUT/past.jsonl"
expect_in "$OUT/stderr" "train.steps=4: .*step_00000006.h5, is at step 6 already" "names train.steps and the checkpoint"
grep -q "continuing with" "$OUT/stderr" && fail "said it continues with train.steps=4, then refused it" ||
  pass "no word of continuing with the settings it refused"
[ ! -e "$OUT/past.jsonl" ] && diff <(ls -A "$OUT/ck") "$OUT/ck.before" >/dev/null && pass "nothing written" \
  || fail "wrote something: $(ls -A "$OUT/ck")"
# Found by every rank alike in the run: said once, and the job ends without MPI_Abort (before: each rank's
# message, then Open MPI's MPI_ABORT banner).
expect_exit 2 "resume past train.steps, 2 ranks" -- "${MPIRUN[@]}" -np 2 "$LONGCTX" train "${SMALL[@]}" --train.steps 4 \
  --checkpoint.dir "$OUT/ck" --log.jsonl "$OUT/past.jsonl"
[ "$(grep -c 'is at step 6 already' "$OUT/stderr")" -eq 1 ] && ! grep -q MPI_ABORT "$OUT/stderr" &&
  pass "... said once, no MPI_Abort" || fail "$(grep -c 'is at step 6 already' "$OUT/stderr") message(s): $(cat "$OUT/stderr")"
expect_in "$OUT/stderr" "^longctx: error: train.steps=4: " "... as a refusal of the config phase is"
[ ! -e "$OUT/past.jsonl" ] && diff <(ls -A "$OUT/ck") "$OUT/ck.before" >/dev/null && pass "... nothing written" \
  || fail "wrote something: $(ls -A "$OUT/ck")"
expect_exit 0 "resume at train.steps = the checkpoint's step (evaluates it)" -- "$LONGCTX" train "${SMALL[@]}" \
  --train.steps 6 --checkpoint.dir "$OUT/ck"
expect_in "$OUT/stdout" "eval step 6 " "evaluates the checkpoint"
expect_in "$OUT/stderr" "done: at step 6, 0 step\(s\) trained by this run" "says it trained nothing (it said \"6 steps\")"

# ---- length curriculum: short steps first, then data.seq_len; eval always at data.seq_len ------------
expect_exit 0 "length curriculum" -- "${MPIRUN[@]}" -np 2 "$LONGCTX" train "${SMALL[@]}" --train.steps 4 \
  --data.short_seq_len 64 --data.short_steps 2 --eval.every 1
expect_in "$OUT/stderr" "step 2 done: steps from 3 train at N = 256" "switches to the full length after step 2"
expect_in "$OUT/stdout" "^step +2 .*N 64" "first steps at the short length"
expect_in "$OUT/stdout" "eval step 1 .*N = 256" "eval at the full length"
# A curriculum whose short stage lasts the whole run says no change of length after its last step (before:
# "step 2 done: steps from 3 train at N = 256", of a step that never comes; from the dumps audit).
expect_exit 0 "a short stage as long as the run" -- "$LONGCTX" train "${SMALL[@]}" --train.steps 2 \
  --data.short_seq_len 64 --data.short_steps 2
grep -q "steps from 3" "$OUT/stderr" && fail "said a length for step 3 of 2" || pass "... says nothing of a step 3"
expect_exit 2 "unshardable short length" -- "${MPIRUN[@]}" -np 2 "$LONGCTX" train "${SMALL[@]}" \
  --data.short_seq_len 50 --data.short_steps 2
expect_in "$OUT/stderr" "data.short_seq_len=50" "short length named"
# several stages, and answer-weighted loss
expect_exit 0 "two-stage curriculum" -- "${MPIRUN[@]}" -np 2 "$LONGCTX" train "${SMALL[@]}" --train.steps 5 \
  --data.short_seq_len 64,128 --data.short_steps 2,2 --train.answer_weight 50
expect_in "$OUT/stdout" "^step +2 .*N 64" "stage 1 at N = 64"
expect_in "$OUT/stdout" "^step +4 .*N 128" "stage 2 at N = 128"
expect_in "$OUT/stdout" "^step +5 .*N 256" "then data.seq_len"
# Stages that do not grow are said, and run as given; two of one length say no switch between them.
expect_exit 0 "stages of 128, 64, 64" -- "$LONGCTX" train "${SMALL[@]}" --train.steps 4 --data.short_seq_len 128,64,64 \
  --data.short_steps 1,1,1
expect_in "$OUT/stderr" "data.short_seq_len=64 with data.short_steps=1 \(stage 2\): shorter than the stage before it \(128\)" \
  "warns that the curriculum does not grow"
expect_in "$OUT/stdout" "^step +3 .*N 64" "... and runs it as given"
grep -q "step 2 done" "$OUT/stderr" && fail "a switch said between two stages of 64" || pass "no switch said between two stages of 64"
expect_exit 2 "stage lists of different lengths" -- "$LONGCTX" train "${SMALL[@]}" \
  --data.short_seq_len 64,128 --data.short_steps 2
expect_in "$OUT/stderr" "data.short_seq_len gives 2 stage lengths but data.short_steps 1 step count: one of each per stage" \
  "stage count mismatch named"
# A stage is a length below data.seq_len and a step count; half a stage, or a "short" one as long, was
# dropped or run without a word. Stages that use up train.steps are warned about.
expect_exit 2 "a stage longer than data.seq_len" -- "$LONGCTX" train "${SMALL[@]}" --data.short_seq_len 512 --data.short_steps 2
expect_in "$OUT/stderr" "data.short_seq_len=512 with data.short_steps=2 \(stage 1\): the length must be below data.seq_len=256" "named"
expect_exit 2 "a stage with no steps" -- "$LONGCTX" train "${SMALL[@]}" --data.short_seq_len 128,64 --data.short_steps 2,0
expect_in "$OUT/stderr" "\(stage 2\): a stage needs a length and a step count" "names the stage"
expect_exit 2 "steps with no stage length" -- "$LONGCTX" train "${SMALL[@]}" --data.short_steps 2
expect_exit 0 "stages that use up train.steps" -- "$LONGCTX" train "${SMALL[@]}" --train.steps 2 \
  --data.short_seq_len 64 --data.short_steps 2
expect_in "$OUT/stderr" "data.short_steps add up to 2 steps, train.steps=2: the run never trains at data.seq_len=256" "warned"
expect_exit 2 "a negative data.curriculum_steps" -- "$LONGCTX" train "${SMALL[@]}" --data.curriculum_steps=-1
expect_in "$OUT/stderr" "data.curriculum_steps=-1: must be >= 0" "named"
expect_exit 2 "model.layers 2^32 + 1" -- timeout 60 "$LONGCTX" train "${SMALL[@]}" --model.layers 4294967297
expect_in "$OUT/stderr" "model.layers=4294967297: must be in \[1, 65536\]" "refused at once (it grew to GBs building the layout)"
expect_exit 2 "data.seq_len not divisible by 3 ranks" -- "${MPIRUN[@]}" -np 3 "$LONGCTX" train "${SMALL[@]}"
expect_in "$OUT/stderr" "data.seq_len=256 is not divisible by the 3 ranks" "names data.seq_len"
# A curriculum stage's length, and the segments at it, say where their values came from (before: not).
expect_exit 2 "a stage length not divisible by 2 ranks, from the environment" -- env LONGCTX_DATA_SHORT_SEQ_LEN=65 \
  LONGCTX_DATA_SHORT_STEPS=1 "${MPIRUN[@]}" -np 2 "$LONGCTX" train "${SMALL[@]}"
expect_in "$OUT/stderr" "data.short_seq_len=65: its length 65 is not divisible by the 2 ranks.* \(from environment variable LONGCTX_DATA_SHORT_SEQ_LEN\)" \
  "... names the variable"
# heads < max dilation: one warning, the attention backend's, naming the branch (train added its own).
expect_exit 0 "heads below a dilation rate" -- "$LONGCTX" train --quiet --model.heads 4 --model.dim 32 --model.mlp_hidden 64 \
  --model.segment_lengths 32,128,256 --model.dilation_rates 1,2,8 --data.seq_len 256 --data.key_digits 3 --train.steps 1 \
  --train.warmup 1
[ "$(grep -c "warn" "$OUT/stderr")" = 1 ] && pass "one warning" || fail "warnings: $(grep warn "$OUT/stderr")"
expect_in "$OUT/stderr" "branch 3 \(w=256, r=8\) reaches only 4 of its 8 row residues" "naming the branch"
expect_exit 2 "non-positive answer weight" -- "$LONGCTX" train "${SMALL[@]}" --train.answer_weight 0
expect_in "$OUT/stderr" "train.answer_weight" "answer weight named"

# ---- a checkpoint of another model shape is refused (exit 3) --------------------------------------------
expect_exit 3 "checkpoint of another shape" -- "$LONGCTX" train "${BASE[@]}" --model.heads 4 --model.dim 64 --model.segment_lengths 32,128,256 --data.seq_len 256 --train.steps 9 \
  --checkpoint.dir "$OUT/ck"
expect_in "$OUT/stderr" "step_0000000" "mismatching checkpoint named"

# Same tensor shapes, another model (heads, schedule): refused too, and nothing pruned or written.
ls "$OUT/ck" >"$OUT/ck.before"
expect_exit 3 "checkpoint of another head count" -- "$LONGCTX" train "${BASE[@]}" --model.heads 8 --model.dim 32 \
  --model.segment_lengths 32,128,256 --data.seq_len 256 --train.steps 9 --checkpoint.dir "$OUT/ck" --checkpoint.keep 1
expect_in "$OUT/stderr" "a different model: model.heads = 4 there, 8 here" "names the option that differs"
# A number is said in the fewest digits that are it (before: 0.050000000000000003 (given as 0.05)).
expect_exit 3 "checkpoint of another model.init_std" -- "$LONGCTX" train "${SMALL[@]}" --model.init_std 0.05 \
  --train.steps 9 --checkpoint.dir "$OUT/ck"
expect_in "$OUT/stderr" "a different model: model.init_std = 0.02 there, 0.05 here; " "... as written"
! grep -q "Older checkpoints" "$OUT/stderr" && pass "no hint to resume from an older checkpoint (of the same model)" \
  || fail "hinted at older checkpoints for a model mismatch"
expect_exit 3 "checkpoint of another schedule" -- "$LONGCTX" train "${BASE[@]}" --model.heads 4 --model.dim 32 \
  --model.segment_lengths 32,64,256 --data.seq_len 256 --train.steps 9 --checkpoint.dir "$OUT/ck" --checkpoint.keep 1
expect_in "$OUT/stderr" "model.segment_lengths = 32,128,256 there, 32,64,256 here" "names the schedule"
diff <(ls "$OUT/ck") "$OUT/ck.before" >/dev/null && pass "the checkpoints are untouched" || fail "checkpoint dir changed"
# The same model written another way resumes (before: exit 3, "64,128 there, 64, 128 here").
CANON=(--quiet --model.heads 4 --model.dim 32 --model.dilation_rates 1,2,4 --data.seq_len 256 --data.key_digits 3
       --checkpoint.every 1 --checkpoint.dir "$OUT/canon")
expect_exit 0 "checkpoint with model.mlp_hidden 0" -- "$LONGCTX" train "${CANON[@]}" --model.segment_lengths 32,128,256 \
  --model.mlp_hidden 0 --train.steps 1
expect_exit 0 "resume with '32, 128, 256' and model.mlp_hidden 128 (= 4 dim)" -- "$LONGCTX" train "${CANON[@]}" \
  --model.segment_lengths "32, 128, 256" --model.mlp_hidden 128 --train.steps 2
[ "$(cat "$OUT/canon/latest")" = step_00000002.h5 ] && pass "resumed and went on to step 2" || fail "latest: $(cat "$OUT/canon/latest")"
# A checkpoint's /config serves as --config (its unset paths are empty values: 'path =' is '', not an error).
"$LONGCTX" ckpt inspect "$OUT/canon" --quiet | sed -n '/^  config:$/,$p' | tail -n +2 | sed 's/^    //' >"$OUT/exported.ini"
grep -q "^path = *$" "$OUT/exported.ini" && pass "the exported config has an empty data.path" || fail "no empty path line"
expect_exit 0 "train --config <a checkpoint's /config>" -- "$LONGCTX" train --config "$OUT/exported.ini" --train.steps 3
[ "$(cat "$OUT/canon/latest")" = step_00000003.h5 ] && pass "resumed from it and went on to step 3" || fail "latest: $(cat "$OUT/canon/latest")"
# Paths a plain config value cannot hold (a blank before # or ;) are quoted in /config, and read back.
expect_exit 0 "checkpoint.dir 'ck #2'" -- "$LONGCTX" train --quiet --model.heads 4 --model.dim 32 --data.seq_len 256 \
  --model.segment_lengths 32,128,256 --model.dilation_rates 1,2,4 --data.key_digits 3 --train.steps 1 \
  --checkpoint.every 1 --checkpoint.dir "$OUT/ck #2" --log.jsonl "$OUT/log ;1.jsonl"
"$LONGCTX" ckpt inspect "$OUT/ck #2" --quiet | sed -n '/^  config:$/,$p' | tail -n +2 | sed 's/^    //' >"$OUT/quoted.ini"
expect_in "$OUT/quoted.ini" "^dir = \"$OUT/ck #2\"$" "the dir is quoted"
expect_exit 0 "train --config <that /config>" -- "$LONGCTX" train --config "$OUT/quoted.ini" --train.steps 2
[ "$(cat "$OUT/ck #2/latest")" = step_00000002.h5 ] && pass "resumed in 'ck #2' and went on to step 2" || fail "latest: $(cat "$OUT/ck #2/latest")"
[ "$(grep -c '"step"' "$OUT/log ;1.jsonl")" -ge 2 ] && pass "and logged to 'log ;1.jsonl'" || fail "log: $(ls "$OUT")"
expect_exit 3 "but model.mlp_hidden 64 is another model" -- "$LONGCTX" train "${CANON[@]}" --model.segment_lengths 32,128,256 \
  --model.mlp_hidden 64 --train.steps 4
expect_in "$OUT/stderr" "model.mlp_hidden = 128 there, 64 here" "names it as written"
# model.mlp_hidden 0 is 4 x model.dim: another dim is another hidden size, named as resolved (before:
# "model.mlp_hidden = 0 there, 0 here", a difference that read as none). The checkpoint holds 128 as written.
expect_exit 3 "model.dim 64 with model.mlp_hidden 0" -- "$LONGCTX" train "${CANON[@]/#32/64}" --model.segment_lengths 32,128,256 \
  --model.mlp_hidden 0 --train.steps 4
expect_in "$OUT/stderr" "model.dim = 32 there, 64 here, model.mlp_hidden = 128 there, 256 \\(given as 0\\) here" \
  "names the resolved hidden size and what was given"

# ---- where files go is checked before any step (exit 2, nothing written) ------------------------------
touch "$OUT/afile"
expect_exit 2 "checkpoint.dir below a file" -- "$LONGCTX" train "${SMALL[@]}" --checkpoint.dir "$OUT/afile/ck" \
  --log.jsonl "$OUT/never.jsonl"
expect_in "$OUT/stderr" "checkpoint.dir=.*is not a directory" "names checkpoint.dir"
[ ! -e "$OUT/never.jsonl" ] && ! grep -q "^step" "$OUT/stdout" && pass "no step run, no log written" || fail "ran or wrote before refusing"
# A checkpoint's or latest's temporary file that its commit could not claim (a directory, a symbolic link)
# is refused before step 1 (before: the run trained up to that checkpoint, then failed there, exit 2).
for kind in directory symlink; do
  rm -rf "$OUT/cktmp"; mkdir -p "$OUT/cktmp"
  case $kind in
    directory) mkdir "$OUT/cktmp/step_00000002.h5.tmp" ;;
    symlink) ln -s "$OUT/afile" "$OUT/cktmp/latest.tmp" ;;
  esac
  expect_exit 2 "a $kind at a checkpoint's temporary file" -- "$LONGCTX" train "${SMALL[@]}" --train.steps 3 \
    --checkpoint.dir "$OUT/cktmp" --checkpoint.every 2
  expect_in "$OUT/stderr" "checkpoint.dir=.*cktmp: its temporary file '.*cktmp/(step_00000002.h5|latest).tmp' is a (directory|symbolic link).*remove" \
    "names the $kind and says to remove it"
  ! grep -q "^step" "$OUT/stdout" && pass "$kind: no step run" || fail "$kind: trained before refusing"
done
rm -rf "$OUT/cktmp"; mkdir -p "$OUT/cktmp"; echo partial >"$OUT/cktmp/step_00000002.h5.tmp"
expect_exit 0 "a left-over plain temporary file is taken over" -- "$LONGCTX" train "${SMALL[@]}" --train.steps 2 \
  --checkpoint.dir "$OUT/cktmp" --checkpoint.every 2
[ "$(cat "$OUT/cktmp/latest")" = step_00000002.h5 ] && [ ! -e "$OUT/cktmp/step_00000002.h5.tmp" ] &&
  pass "and step 2's checkpoint committed over it" || fail "left-over temporary: $(ls "$OUT/cktmp")"
expect_exit 2 "log.jsonl with a line break" -- "$LONGCTX" train "${SMALL[@]}" --log.jsonl "$OUT/a
b.jsonl"
expect_in "$OUT/stderr" "--log.jsonl: a config value cannot hold a line break" "names the option"
# Refused before checkpoint.dir is made (before: after, and its lock file stayed).
expect_exit 2 "log.jsonl with a line break, with a checkpoint.dir" -- "$LONGCTX" train "${SMALL[@]}" --train.steps 2 \
  --checkpoint.dir "$OUT/nl" --log.jsonl "$OUT/a
b.jsonl"
[ ! -e "$OUT/nl" ] && pass "checkpoint.dir not made" || fail "made: $(ls -A "$OUT/nl")"
# Nor onto the temporary file of the other (before: the dump took such a log.jsonl for a crashed run's file).
echo '{"step": 1, "loss": 9.9}' >"$OUT/xx.h5.tmp"
expect_exit 2 "log.jsonl is the dump's temporary file" -- "$LONGCTX" train "${SMALL[@]}" --train.steps 2 \
  --dump.activations "$OUT/xx.h5" --dump.steps 1 --log.jsonl "$OUT/xx.h5.tmp"
expect_in "$OUT/stderr" "log.jsonl=.*xx.h5.tmp is dump.activations' temporary file" "names the collision"
[ "$(cat "$OUT/xx.h5.tmp")" = '{"step": 1, "loss": 9.9}' ] && [ ! -e "$OUT/xx.h5" ] && pass "the log is unchanged" ||
  fail "xx.h5.tmp: $(cat "$OUT/xx.h5.tmp" 2>&1)"
expect_exit 2 "the dump is log.jsonl's temporary file" -- "$LONGCTX" train "${SMALL[@]}" --train.steps 2 \
  --dump.activations "$OUT/yy.jsonl.tmp" --dump.steps 1 --log.jsonl "$OUT/yy.jsonl"
expect_in "$OUT/stderr" "dump.activations=.*yy.jsonl.tmp is log.jsonl's temporary file" "names the collision"
expect_exit 2 "log.jsonl in a missing directory" -- "$LONGCTX" train "${SMALL[@]}" --log.jsonl "$OUT/nodir/l.jsonl"
expect_exit 2 "dump.activations is a directory" -- "$LONGCTX" train "${SMALL[@]}" --dump.activations "$OUT"
# Outputs onto checkpoint.dir, or onto a checkpoint's name there, are refused before any step (before: a dump
# named as the new directory trained every step and failed at its rename, nothing saved; a log.jsonl there was
# exit 1 with a lock file left; a dump named step_00000002.h5 was replaced by that checkpoint).
for out in "--dump.activations $OUT/ckout" "--log.jsonl $OUT/ckout" "--dump.activations $OUT//ckout"; do
  expect_exit 2 "${out%% *} onto checkpoint.dir" -- "$LONGCTX" train "${SMALL[@]}" --train.steps 2 \
    --checkpoint.dir "$OUT/ckout" --dump.steps 1 $out
  expect_in "$OUT/stderr" "is checkpoint.dir=" "names the collision (${out%% *})"
done
[ ! -e "$OUT/ckout" ] && pass "nothing created" || fail "created: $(ls -A "$OUT/ckout")"
mkdir "$OUT/ckout"
for name in step_00000002.h5 latest .longctx.lock latest.tmp .longctx-log-start; do
  expect_exit 2 "dump.activations named $name in checkpoint.dir" -- "$LONGCTX" train "${SMALL[@]}" --train.steps 2 \
    --checkpoint.dir "$OUT/ckout" --dump.activations "$OUT/ckout/$name" --dump.steps 1
  expect_in "$OUT/stderr" "is a name that checkpoint.dir=.* uses for its checkpoints" "names the collision ($name)"
done
expect_exit 2 "a dump whose temporary file is checkpoint.dir" -- "$LONGCTX" train "${SMALL[@]}" --train.steps 2 \
  --checkpoint.dir "$OUT/ckt.tmp" --dump.activations "$OUT/ckt" --dump.steps 1
expect_in "$OUT/stderr" "is written as .*ckt.tmp first, which is checkpoint.dir" "names the temporary file"
[ -z "$(ls -A "$OUT/ckout")" ] && [ ! -e "$OUT/ckt.tmp" ] && [ ! -e "$OUT/ckt" ] && pass "nothing written" ||
  fail "wrote: $(ls -A "$OUT/ckout")"
expect_exit 0 "log.jsonl and a dump of other names in checkpoint.dir" -- "$LONGCTX" train "${SMALL[@]}" --train.steps 2 \
  --checkpoint.dir "$OUT/ckout" --dump.activations "$OUT/ckout/acts.h5" --dump.steps 1 --log.jsonl "$OUT/ckout/log.jsonl"
[ -s "$OUT/ckout/acts.h5" ] && [ -s "$OUT/ckout/log.jsonl" ] && [ "$(cat "$OUT/ckout/latest")" = step_00000002.h5 ] &&
  pass "all three written" || fail "in ckout: $(ls -A "$OUT/ckout")"
# The same into a checkpoint.dir this run makes (before: "directory does not exist", exit 2, on the first run
# only); a checkpoint's name there is refused as in one that exists, and nothing is made.
expect_exit 2 "log.jsonl named latest in a checkpoint.dir not made yet" -- "$LONGCTX" train "${SMALL[@]}" --train.steps 2 \
  --checkpoint.dir "$OUT/cknew/" --log.jsonl "$OUT/cknew/latest"
expect_in "$OUT/stderr" "is a name that checkpoint.dir=.* uses for its checkpoints" "names the collision"
[ ! -e "$OUT/cknew" ] && pass "nothing made" || fail "made: $(ls -A "$OUT/cknew")"
expect_exit 0 "log.jsonl and a dump in a checkpoint.dir not made yet" -- "$LONGCTX" train "${SMALL[@]}" --train.steps 2 \
  --checkpoint.dir "$OUT/cknew" --dump.activations "$OUT/./cknew/acts.h5" --dump.steps 1 --log.jsonl "$OUT/cknew/log.jsonl"
[ -s "$OUT/cknew/acts.h5" ] && [ -s "$OUT/cknew/log.jsonl" ] && [ "$(cat "$OUT/cknew/latest")" = step_00000002.h5 ] &&
  pass "all three written there" || fail "in cknew: $(ls -A "$OUT/cknew" 2>&1)"
printf '[train]\nsteps = 2\n' >"$OUT/run.ini"
expect_exit 2 "dump.activations is the config file" -- "$LONGCTX" train "${SMALL[@]}" --config "$OUT/run.ini" \
  --dump.activations "$OUT/run.ini"
expect_in "$OUT/stderr" "run.ini' exists and is not an HDF5 file" "refuses to replace it"
[ "$(head -1 "$OUT/run.ini")" = "[train]" ] && pass "the config is unchanged" || fail "run.ini was replaced"
# log.jsonl is appended to: a file there that is not JSON lines is refused (before: the config, or a
# checkpoint, got JSON appended to it).
expect_exit 2 "log.jsonl is the config file" -- "$LONGCTX" train "${SMALL[@]}" --config "$OUT/run.ini" --log.jsonl "$OUT/run.ini"
expect_in "$OUT/stderr" "log.jsonl '.*run.ini' exists and is not a JSON file; appending would damage it" "refuses to append to it"
[ "$(cat "$OUT/run.ini")" = "$(printf '[train]\nsteps = 2')" ] && pass "the config is unchanged" || fail "run.ini was changed"
# Options that would do nothing are said to (before: silent; an empty dump file, the plain loss).
expect_exit 0 "dump.steps after train.steps" -- "$LONGCTX" train "${SMALL[@]}" --train.steps 1 \
  --dump.activations "$OUT/late.h5" --dump.steps 9
expect_in "$OUT/stderr" "dump.steps: step 9 comes after train.steps=1: it is never dumped" "warns the step is never dumped"
[ ! -e "$OUT/late.h5" ] && pass "... and writes no dump file (before: one holding nothing)" || fail "a dump file with no step was written"
expect_exit 0 "dump.steps in a curriculum's short stage" -- "$LONGCTX" train "${SMALL[@]}" --train.steps 3 \
  --data.short_seq_len 128 --data.short_steps 2 --dump.activations "$OUT/short.h5" --dump.steps 1
expect_in "$OUT/stderr" "dump.steps: step 1 trains at N = 128 .*so it is not dumped" "warns the step is not dumped"
[ ! -e "$OUT/short.h5" ] && pass "... and writes no dump file" || fail "a dump file with no step was written"
# A fresh run replacing an earlier run's dump says so, as data import does (before: without a word).
expect_exit 0 "a fresh run where an earlier run's dump is" -- "$LONGCTX" train "${SMALL[@]}" --train.steps 1 \
  --dump.activations "$OUT/cknew/acts.h5" --dump.steps 1
expect_in "$OUT/stderr" "acts.h5: the activation dump there \(an earlier run's\) is replaced by this run's" "... says it replaces it"
# A run resumed from a checkpoint rolled back by hand drops the dumped steps past it, also when it dumps none
# itself (train.steps lowered).
expect_exit 0 "dumps at steps 2 and 4" -- "$LONGCTX" train "${SMALL[@]}" --train.steps 4 --checkpoint.every 2 \
  --checkpoint.dir "$OUT/rolled" --dump.activations "$OUT/rolled.h5" --dump.steps 2,4
echo step_00000002.h5 >"$OUT/rolled/latest"
expect_exit 0 "resume at step 2 with train.steps 3" -- "$LONGCTX" train "${SMALL[@]}" --train.steps 3 --checkpoint.every 2 \
  --checkpoint.dir "$OUT/rolled" --dump.activations "$OUT/rolled.h5" --dump.steps 2,4
/usr/bin/python3 -c "import h5py, sys; sys.exit(0 if sorted(h5py.File(sys.argv[1], 'r')) == ['step_2'] else 1)" "$OUT/rolled.h5" &&
  pass "... the dump keeps step 2, not the rolled-back step 4" ||
  fail "the dump holds $(/usr/bin/python3 -c "import h5py, sys; print(sorted(h5py.File(sys.argv[1], 'r')))" "$OUT/rolled.h5")"
# ... also where the resumed run's dump.steps no longer name the abandoned step (by what the file holds;
# before: step 4 of the abandoned run stayed).
rm -rf "$OUT/rolled" "$OUT/rolled.h5"
expect_exit 0 "dumps at steps 2 and 4, again" -- "$LONGCTX" train "${SMALL[@]}" --train.steps 4 --checkpoint.every 2 \
  --checkpoint.dir "$OUT/rolled" --dump.activations "$OUT/rolled.h5" --dump.steps 2,4
echo step_00000002.h5 >"$OUT/rolled/latest"
expect_exit 0 "resume at step 2 with dump.steps 2" -- "$LONGCTX" train "${SMALL[@]}" --train.steps 4 --checkpoint.every 2 \
  --checkpoint.dir "$OUT/rolled" --dump.activations "$OUT/rolled.h5" --dump.steps 2
/usr/bin/python3 -c "import h5py, sys; sys.exit(0 if sorted(h5py.File(sys.argv[1], 'r')) == ['step_2'] else 1)" "$OUT/rolled.h5" &&
  pass "... the dump keeps step 2, not the abandoned step 4" ||
  fail "the dump holds $(/usr/bin/python3 -c "import h5py, sys; print(sorted(h5py.File(sys.argv[1], 'r')))" "$OUT/rolled.h5")"
expect_exit 2 "an infinite learning rate" -- "$LONGCTX" train "${SMALL[@]}" --train.lr inf
expect_exit 2 "a negative clip" -- "$LONGCTX" train "${SMALL[@]}" --train.clip -1

# ---- divergence: stops with exit 1 before logging nan or checkpointing it ----------------------------
DIVERGE=(--quiet --model.mlp_hidden 64 --model.dilation_rates 1,2,4 --data.key_digits 3 --model.heads 4 --model.dim 32
         --model.segment_lengths 32,128,256 --data.seq_len 256 --train.warmup 0 --train.lr 1e30 --train.clip 0)
expect_exit 1 "a diverging run" -- "$LONGCTX" train "${DIVERGE[@]}" \
  --train.steps 8 --checkpoint.dir "$OUT/nan" --checkpoint.every 1 --log.jsonl "$OUT/nan.jsonl"
expect_in "$OUT/stderr" "training diverged at step" "says it diverged"
/usr/bin/python3 -c "import json, sys; [json.loads(l) for l in open(sys.argv[1])]" "$OUT/nan.jsonl" \
  && pass "log.jsonl stays valid JSON" || fail "log.jsonl is not JSON"
! ls "$OUT/nan"/step_*.h5 >/dev/null 2>&1 || "$LONGCTX" ckpt verify "$OUT/nan" >/dev/null 2>&1 \
  && pass "no nan checkpoint committed" || fail "a checkpoint that fails verify was committed"
expect_exit 1 "a run diverging before its first checkpoint" -- "$LONGCTX" train "${DIVERGE[@]}" \
  --train.steps 8 --checkpoint.dir "$OUT/nan2" --checkpoint.every 100
grep -q "last checkpoint" "$OUT/stderr" && fail "speaks of a checkpoint that does not exist" ||
  pass "no checkpoint yet: does not claim one is intact"

# A finite loss with a non-finite gradient: the norm is known before the update now. Before, it was computed
# in the update, after the check: nan weights were applied, logged and committed at step 2, checkpoint.keep 1
# pruned step 1 for it, and step 3 failed saying "the last checkpoint is intact". Rank 1 poisons its own
# gradient (LONGCTX_FAULT_NAN_GRADIENT): the all-reduce must carry it to rank 0, and both stop alike. (This
# case used train.lr 1e6, whose gradient overflowed only in some builds: rounding decides it.)
NANG=(--quiet --model.mlp_hidden 64 --model.heads 4 --model.dim 32 --model.segment_lengths 32,128,256
      --model.dilation_rates 1,2,4 --data.seq_len 256 --train.steps 3 --checkpoint.dir "$OUT/nang" --checkpoint.every 1
      --checkpoint.keep 1)
expect_exit 1 "a finite loss with a non-finite gradient" -- env LONGCTX_FAULT_NAN_GRADIENT=2:1 \
  "${MPIRUN[@]}" -np 2 -x LONGCTX_FAULT_NAN_GRADIENT "$LONGCTX" train "${NANG[@]}" --log.summary "$OUT/nang.summary.json"
expect_in "$OUT/stderr" "rank 1 puts a nan into its gradient at step 2" "says the fault is injected"
expect_in "$OUT/nang.summary.json" '"outcome": "failed", "exit": 1, "signal": null, "error": "training diverged at step 2: .*", "first_step": 0, "step": 1, .*"checkpoint_step": 1, .*"world_size": 2' \
  "log.summary of a failed run: the error, and the checkpoint it left"
[ "$(grep -cE '\[longctx error r[01]\] training diverged at step 2: loss [0-9.]+, gradient norm -?nan' "$OUT/stderr")" = 2 ] \
  && pass "both ranks refuse step 2 for its gradient" || fail "refusals: $(grep -c 'diverged' "$OUT/stderr")"
[ "$(ls "$OUT/nang" | grep '^step_' | tr '\n' ' ')" = "step_00000001.h5 " ] \
  && "$LONGCTX" ckpt verify "$OUT/nang" --quiet >/dev/null 2>&1 && pass "step 1's checkpoint kept, and it verifies" \
  || fail "checkpoints: $(ls "$OUT/nang")"
# "-" is no standard output for a file or checkpoint.dir (before: a file or directory called "-", exit 0).
pushd "$OUT" >/dev/null || exit 1
for option in log.summary log.jsonl dump.activations checkpoint.dir; do
  rm -rf ./-
  expect_exit 2 "$option=-" -- "$LONGCTX" train "${SMALL[@]}" --train.steps 1 "--$option" -
  expect_in "$OUT/stderr" "$option=-: longctx writes this to a (file|directory), not to standard output" "$option=-: says why"
  [ ! -e ./- ] && pass "$option=-: nothing called '-'" || fail "$option=-: made ./-"
  ln -s dash_target ./-  # refused by the name as given, not written through a link of that name
  expect_exit 2 "$option=- with a link called '-'" -- "$LONGCTX" train "${SMALL[@]}" --train.steps 1 "--$option" -
  [ ! -e dash_target ] && pass "$option=-: nothing written through the link" || fail "$option=-: wrote dash_target"
  rm -rf ./- dash_target
done
popd >/dev/null || exit 1
# log.summary is refused where it would land on another output, or replace a file that is no JSON.
expect_exit 2 "log.summary is log.jsonl" -- "$LONGCTX" train "${SMALL[@]}" --train.steps 1 --log.jsonl "$OUT/same.json" \
  --log.summary "$OUT/same.json"
expect_in "$OUT/stderr" "log.jsonl and log.summary name the same file" "names the collision"
expect_exit 2 "log.summary is the dump's temporary file" -- "$LONGCTX" train "${SMALL[@]}" --train.steps 1 \
  --dump.activations "$OUT/zz.h5" --dump.steps 1 --log.summary "$OUT/zz.h5.tmp"
expect_in "$OUT/stderr" "log.summary=.*zz.h5.tmp is dump.activations' temporary file" "names the collision"
expect_exit 2 "log.summary onto checkpoint.dir" -- "$LONGCTX" train "${SMALL[@]}" --train.steps 1 --checkpoint.dir "$OUT/cksum" \
  --log.summary "$OUT/cksum"
[ ! -e "$OUT/cksum" ] && pass "... nothing made" || fail "made $OUT/cksum"
# ... also through a link to a file not there yet, as to one that is (before: compared by the link's own name,
# so the summary replaced the log, ck/latest, or took the log's place as a .tmp; from the outputs audit).
ln -s lsame.jsonl "$OUT/lsame_link.json" && ln -s cklink/latest "$OUT/latest_link.json" && ln -s lsum.json.tmp "$OUT/tmp_link.jsonl"
expect_exit 2 "log.summary, a link to log.jsonl not there yet" -- "$LONGCTX" train "${SMALL[@]}" --train.steps 1 \
  --log.jsonl "$OUT/lsame.jsonl" --log.summary "$OUT/lsame_link.json"
expect_in "$OUT/stderr" "log.jsonl and log.summary name the same file" "... names the collision"
expect_exit 2 "log.summary, a link to checkpoint.dir's latest" -- "$LONGCTX" train "${SMALL[@]}" --train.steps 1 \
  --checkpoint.dir "$OUT/cklink" --log.summary "$OUT/latest_link.json"
expect_in "$OUT/stderr" "log.summary=.*cklink/latest is a name that checkpoint.dir=.*cklink uses for its checkpoints" "... names that"
expect_exit 2 "log.jsonl, a link to log.summary's temporary file" -- "$LONGCTX" train "${SMALL[@]}" --train.steps 1 \
  --log.jsonl "$OUT/tmp_link.jsonl" --log.summary "$OUT/lsum.json"
expect_in "$OUT/stderr" "log.jsonl=.*lsum.json.tmp is log.summary's temporary file" "... names that"
# A log.jsonl link to where no file can be made is refused before the run (before: after it started, exit 2
# with a "failed" log.summary; from the regression audit); one into the checkpoint.dir the run makes is taken.
ln -s nodir/run.jsonl "$OUT/nowhere_link.jsonl" && ln -s ck_loglink/run.jsonl "$OUT/ckll_link.jsonl"
expect_exit 2 "log.jsonl, a link into a directory that does not exist" -- "$LONGCTX" train "${SMALL[@]}" --train.steps 1 \
  --log.jsonl "$OUT/nowhere_link.jsonl" --log.summary "$OUT/nowhere.json"
expect_in "$OUT/stderr" "log.jsonl=.*nowhere_link.jsonl is a symbolic link to nodir/run.jsonl, where no file can be made" "... says why"
[ ! -e "$OUT/nowhere.json" ] && pass "... before the run: no log.summary" || fail "wrote $(cat "$OUT/nowhere.json")"
expect_exit 0 "log.jsonl, a link into the checkpoint.dir the run makes" -- "$LONGCTX" train "${SMALL[@]}" --train.steps 1 \
  --log.jsonl "$OUT/ckll_link.jsonl" --checkpoint.dir "$OUT/ck_loglink"
[ -s "$OUT/ck_loglink/run.jsonl" ] && pass "... its lines there" || fail "no $OUT/ck_loglink/run.jsonl"
[ ! -e "$OUT/lsame.jsonl" ] && [ ! -e "$OUT/cklink" ] && [ ! -e "$OUT/lsum.json.tmp" ] && pass "... nothing written" ||
  fail "written: $(ls -d "$OUT"/lsame.jsonl "$OUT"/cklink "$OUT"/lsum.json.tmp 2>&1)"
printf 'notes\n' >"$OUT/notes.txt"
expect_exit 2 "log.summary onto a file that is no JSON" -- "$LONGCTX" train "${SMALL[@]}" --train.steps 1 --log.summary "$OUT/notes.txt"
expect_in "$OUT/stderr" "--log.summary '.*notes.txt' exists and is not a JSON file; writing would replace it" "says so"
[ "$(cat "$OUT/notes.txt")" = notes ] && pass "... and leaves it" || fail "notes.txt: $(cat "$OUT/notes.txt")"
# The file this process prints to (before: replaced; as root /dev/stdout itself became a file).
expect_exit 2 "log.summary is /dev/stdout, itself a file" -- "$LONGCTX" train "${SMALL[@]}" --train.steps 1 --log.summary /dev/stdout
expect_in "$OUT/stderr" "log.summary=/dev/stdout is this process's standard output, which the summary would replace" "says so"
[ -L /dev/stdout ] && pass "/dev/stdout is still a link" || fail "/dev/stdout: $(ls -l /dev/stdout)"
# Through a link, as log.jsonl: the file it leads to gets the summary (before: the link was replaced). A
# name that is no UTF-8 still gives valid JSON; a checkpoint.dir given as "ck/" makes "ck/step_..." (before:
# "ck//step_...").
echo '{}' >"$OUT/real.json" && ln -s real.json "$OUT/link.json"
expect_exit 0 "log.summary through a link, checkpoint.dir named in Latin-1" -- "$LONGCTX" train "${SMALL[@]}" --train.steps 1 \
  --log.summary "$OUT/link.json" --checkpoint.dir "$OUT/ck"$'\xe9'/
[ -L "$OUT/link.json" ] && /usr/bin/python3 -c 'import json, sys; d = json.load(open(sys.argv[1])); sys.exit(0 if d["outcome"] == "done" and d["checkpoint"].endswith("/ck\u00e9/step_00000001.h5") else 1)' "$OUT/real.json" &&
  pass "... the link stays, its file holds valid JSON" || fail "link: $(ls -l "$OUT/link.json"), real.json: $(cat "$OUT/real.json")"
for bad in 0 x 2:2 2: 2:1:1; do
  expect_exit 2 "LONGCTX_FAULT_NAN_GRADIENT=$bad" -- env LONGCTX_FAULT_NAN_GRADIENT=$bad "${MPIRUN[@]}" -np 2 \
    -x LONGCTX_FAULT_NAN_GRADIENT "$LONGCTX" train "${NANG[@]}" --checkpoint.dir "$OUT/nang_bad"
done
[ ! -e "$OUT/nang_bad" ] && pass "a bad fault setting writes nothing" || fail "wrote $(ls "$OUT/nang_bad")"

# An update that overflows with a finite gradient (train.lr 1e39: the step in float is inf): not checkpointed.
# Before: step 1's parameters (-inf) were committed and the run exited 0.
expect_exit 1 "an update that overflows" -- "$LONGCTX" train "${DIVERGE[@]/1e30/1e39}" --train.steps 1 \
  --checkpoint.dir "$OUT/naninf"
expect_in "$OUT/stderr" "training diverged at step 1: its update made parameters or optimizer moments not finite" "says why"
[ ! -e "$OUT/naninf/latest" ] && pass "nothing committed" || fail "committed: $(ls "$OUT/naninf")"
# Found before anything of the step is printed: before, the step's eval was printed (eval_loss -nan).
! grep -qiE 'eval|nan' "$OUT/stdout" && pass "no eval of the diverged parameters printed" ||
  fail "printed: $(cat "$OUT/stdout")"

# Finite parameters whose forward pass overflows (train.lr 1e30: every parameter ~1e30 after step 1): the
# evaluation's loss is nan, and the step is neither logged nor checkpointed. Before: "eval_loss -nan" was
# printed and logged, and the step checkpointed (a checkpoint that resumes only into nan).
expect_exit 1 "an evaluation that overflows" -- "$LONGCTX" train "${DIVERGE[@]}" --train.steps 3 --eval.every 1 \
  --checkpoint.dir "$OUT/naneval" --checkpoint.every 1 --log.jsonl "$OUT/naneval.jsonl"
expect_in "$OUT/stderr" "training diverged at step 1: the evaluation of its parameters has loss -?nan" "says why"
[ ! -e "$OUT/naneval/latest" ] && [ ! -s "$OUT/naneval.jsonl" ] && ! grep -qiE 'eval|nan' "$OUT/stdout" \
  && pass "nothing committed, logged or printed" || fail "committed: $(ls "$OUT/naneval"); log: $(cat "$OUT/naneval.jsonl")"
# The same parameters checkpointed off the eval.every grid (eval.every 0: step 1 is not evaluated, step 2
# diverges), then resumed at their own step: nothing trains, but the final evaluation overflows. Before,
# "eval_loss nan" was printed and the run exited 0.
expect_exit 1 "a checkpoint off the eval grid whose parameters overflow" -- "$LONGCTX" train "${DIVERGE[@]}" \
  --train.steps 3 --eval.every 0 --checkpoint.dir "$OUT/nanoff" --checkpoint.every 1
[ "$(cat "$OUT/nanoff/latest" 2>/dev/null)" = step_00000001.h5 ] && pass "step 1 committed (not evaluated)" ||
  fail "latest: $(cat "$OUT/nanoff/latest" 2>&1)"
# Step 2's loss is nan: the parameters of step 1 overflow, so its checkpoint is no place to resume from.
expect_in "$OUT/stderr" "diverged at step 2: loss -?nan.*the last checkpoint \\(step 1\\) holds the parameters this loss came from" \
  "says the last checkpoint holds the overflowing parameters (not that it is intact)"
expect_exit 1 "resumed at its last step, evaluating to nan" -- "$LONGCTX" train "${DIVERGE[@]}" --train.steps 1 \
  --eval.every 0 --checkpoint.dir "$OUT/nanoff"
expect_in "$OUT/stderr" "the checkpoint resumed from \\(step 1\\) evaluates to loss -?nan" "says which checkpoint"
[ "$(cat "$OUT/nanoff/latest")" = step_00000001.h5 ] && pass "the checkpoint is left as it was" ||
  fail "latest: $(cat "$OUT/nanoff/latest")"

# ---- a resumed run keeps the activation dumps made before it ---------------------------------------
expect_exit 0 "dump step 1, stop at 2" -- "$LONGCTX" train "${SMALL[@]}" --train.steps 2 --checkpoint.dir "$OUT/dr" \
  --dump.activations "$OUT/dr.h5" --dump.steps 1,3
expect_exit 0 "resume to 3" -- "$LONGCTX" train "${SMALL[@]}" --train.steps 3 --checkpoint.dir "$OUT/dr" \
  --dump.activations "$OUT/dr.h5" --dump.steps 1,3
/usr/bin/python3 - "$OUT/dr.h5" "$OUT/acts.h5" <<'PY' && pass "the dump holds steps 1 and 3" || fail "dump after resume"
import sys, h5py
with h5py.File(sys.argv[1], "r") as f:
    assert sorted(f.keys()) == ["step_1", "step_3"], list(f.keys())
    assert f["step_1/layer_0/q"].shape == (256, 4, 8)
PY
# ---- the dump is published BEFORE the checkpoint that follows it commits: a kill between the two then
# resumes from the checkpoint before, which dumps the step again (the other order lost it for good) -----
DP=(--train.steps 4 --checkpoint.every 2 --checkpoint.dir "$OUT/dp" --dump.activations "$OUT/dp.h5" --dump.steps 1,4)
expect_exit 0 "dump steps 1 and 4, checkpoints 2 and 4" -- "$LONGCTX" train "${SMALL[@]}" "${DP[@]}"
published=$(grep -n "published through step 2" "$OUT/stderr" | cut -d: -f1)
committed=$(grep -n "checkpoint .*step_00000002.h5" "$OUT/stderr" | cut -d: -f1)
[ -n "$published" ] && [ -n "$committed" ] && [ "$published" -lt "$committed" ] &&
  pass "the dump is published before the checkpoint commits" || { fail "dump published at line '$published', checkpoint at '$committed'"; cat "$OUT/stderr"; }
# The state such a kill leaves: the dump holds step 4, the last checkpoint is step 2.
/usr/bin/python3 -c "import h5py, sys; h5py.File(sys.argv[1], 'r').copy('step_4', h5py.File(sys.argv[2], 'w'))" "$OUT/dp.h5" "$OUT/dp4.h5"
rm "$OUT/dp/step_00000004.h5" && echo step_00000002.h5 >"$OUT/dp/latest"
expect_exit 0 "resume from 2 with the dump ahead of it" -- "$LONGCTX" train "${SMALL[@]}" "${DP[@]}"
/usr/bin/python3 - "$OUT/dp.h5" "$OUT/dp4.h5" <<'PY' && pass "steps 1 and 4 dumped once, step 4 as before" || fail "dump after a kill between publish and commit"
import sys, h5py, numpy as np
with h5py.File(sys.argv[1], "r") as f, h5py.File(sys.argv[2], "r") as g:
    assert sorted(f.keys()) == ["step_1", "step_4"], list(f.keys())
    assert np.array_equal(f["step_4/layer_0/o"][...], g["step_4/layer_0/o"][...])
PY

# ---- ckpt verify checks a train checkpoint against its own /config's model, as a resume would: a file
# whose every dataset reads clean but lacks a tensor, has one of another shape or type, or an impossible
# attribute verified "ok" (exit 0) while the resume refused it (exit 3) ------------------------------------
expect_exit 0 "verify a sound train checkpoint" -- "$LONGCTX" ckpt verify "$OUT/dp/step_00000002.h5" --quiet
/usr/bin/python3 - "$OUT/dp/step_00000002.h5" "$OUT" "$(dirname "$0")" <<'PY' || fail "could not make the damaged copies"
import h5py, numpy as np, shutil, sys
src, out = sys.argv[1], sys.argv[2]
sys.path.insert(0, sys.argv[3])
from checkpoint_digest import sign  # values changed on purpose keep a right digest: refused for what they are
def variant(name, change):
    path = f"{out}/ck_{name}.h5"
    shutil.copy(src, path)
    with h5py.File(path, "r+") as f:
        change(f)
variant("no_wq", lambda f: f.__delitem__("model/layer0/wq"))
variant("no_optimizer", lambda f: f.__delitem__("optimizer"))
def reshape(f):
    del f["model/layer0/wq"]
    f.create_dataset("model/layer0/wq", data=np.zeros((16, 32), np.float32))
variant("shape", reshape)
def retype(f):
    w = f["model/layer0/wq"][...]
    del f["model/layer0/wq"]
    f.create_dataset("model/layer0/wq", data=w.astype(np.float64))
variant("float64", retype)
def half(f):
    w = f["model/layer0/wq"][...]
    del f["model/layer0/wq"]
    f.create_dataset("model/layer0/wq", data=w.astype(np.float16), fletcher32=True)
variant("float16", half)
def step_five(f):  # written through the filters: its checksum is right
    f["state/global/step"][...] = np.frombuffer(np.int64(5).tobytes(), np.uint8)
    sign(f, "state/global/step")
variant("step5", step_five)
variant("world0", lambda f: f.attrs.modify("world_size", np.int64(0)))
variant("state_extra", lambda f: f.create_dataset("state/global/notes", data=np.int64(7)))
def position_seven(f):
    f["state/global/data_position"][...] = np.frombuffer(np.array([7, 0], np.int64).tobytes(), np.uint8)
    sign(f, "state/global/data_position")
variant("pos7", position_seven)
def negative_v(f):
    f["optimizer/v/layer0/wq"][0, 0] = -3e-9  # written through the filters: its checksum is right
    sign(f, "optimizer/v/layer0/wq")
variant("negv", negative_v)
def unchecksummed(f):
    w = f["model/layer0/wq"][...]
    del f["model/layer0/wq"]
    f.create_dataset("model/layer0/wq", data=w)
variant("plain", unchecksummed)
shutil.copy(src, f"{out}/ck_flipped.h5")
with h5py.File(f"{out}/ck_flipped.h5", "r") as f:
    at = f["model/layer0/wq"].id.get_chunk_info(0).byte_offset + 4
with open(f"{out}/ck_flipped.h5", "r+b") as f:
    f.seek(at); b = f.read(1); f.seek(at); f.write(bytes([b[0] ^ 0xFF]))
PY
# A tensor whose checksum fails is reported as that alone (it also got 'shape [], the model needs [32,32]'
# and ', the model needs float32', from the description its failed read left empty).
expect_exit 3 "verify: a flipped byte in a tensor" -- "$LONGCTX" ckpt verify "$OUT/ck_flipped.h5" --quiet
expect_in "$OUT/stdout" "/model/layer0/wq: .*(Fletcher32|checksum)" "verify names the tensor's failed checksum"
! grep -q "the model needs" "$OUT/stdout" && pass "and no false shape / type lines" || fail "false lines: $(grep 'the model needs' "$OUT/stdout")"
expect_exit 0 "verify: more under /state, which a resume accepts too" -- "$LONGCTX" ckpt verify "$OUT/ck_state_extra.h5" --quiet
# A tensor without a checksum verifies, but "ok" says its bytes could not be checked (before: a plain "ok").
expect_exit 0 "verify: a tensor rewritten without its checksum" -- "$LONGCTX" ckpt verify "$OUT/ck_plain.h5" --quiet
expect_in "$OUT/stdout" "ok \(.*1 tensor\(s\) without a checksum, whose bytes could not be checked: /model/layer0/wq\)" \
  "verify says which tensor it could not check"
# A negative Adam second moment (nan at its square root): verify said ok, and a resume stopped at its first
# step as "training diverged". Both name it now.
expect_exit 3 "verify: a negative second moment" -- "$LONGCTX" ckpt verify "$OUT/ck_negv.h5" --quiet
expect_in "$OUT/stdout" "/optimizer/v/layer0/wq: negative value -3e-09 " "verify names it, as %g"
mkdir -p "$OUT/negv" && cp "$OUT/ck_negv.h5" "$OUT/negv/step_00000002.h5" && echo step_00000002.h5 >"$OUT/negv/latest"
expect_exit 3 "resume from it" -- "$LONGCTX" train "${SMALL[@]}" --train.steps 3 --checkpoint.dir "$OUT/negv"
expect_in "$OUT/stderr" "/optimizer/v/layer0/wq: value -3e-09 at flat index 0 \(an Adam second moment is finite and >= 0\)" \
  "the resume names it"
# A negative tokens_seen: verify refused it, and a resume carried it on as the run's count (exit 0).
expect_exit 0 "a checkpoint at step 2" -- "$LONGCTX" train "${SMALL[@]}" --train.steps 2 --checkpoint.dir "$OUT/negt"
/usr/bin/python3 -c "import h5py, sys; h5py.File(sys.argv[1], 'r+').attrs['tokens_seen'] = -5" "$OUT/negt/step_00000002.h5" ||
  fail "could not set tokens_seen"
expect_exit 3 "resume from a checkpoint whose tokens_seen is -5" -- "$LONGCTX" train "${SMALL[@]}" --train.steps 3 --checkpoint.dir "$OUT/negt"
expect_in "$OUT/stderr" "step_00000002.h5: attribute tokens_seen = -5: must be >= 0: damaged" "names the attribute, as verify does"
[ ! -e "$OUT/negt/step_00000003.h5" ] && pass "... and trains nothing" || fail "step 3 was written"
expect_exit 0 "inspect it" -- "$LONGCTX" ckpt inspect "$OUT/negt" --quiet
expect_in "$OUT/stderr" "step_00000002.h5: attribute tokens_seen = -5: must be >= 0: damaged; \`longctx ckpt verify\` checks the whole file" \
  "inspect prints it, and says it is damage (before: no word)"
# A seq_len no run wrote (more than tokens_seen, which counts the step's sequence) is damage too (before: it
# passed verify, and eval refused it for its memory, exit 2).
/usr/bin/python3 -c "import h5py, sys; f = h5py.File(sys.argv[1], 'r+'); f.attrs['tokens_seen'] = 128; f.attrs['seq_len'] = 10**12" \
  "$OUT/negt/step_00000002.h5" || fail "could not set seq_len"
expect_exit 3 "verify a checkpoint whose seq_len is 1e12" -- "$LONGCTX" ckpt verify "$OUT/negt" --quiet
expect_in "$OUT/stdout" "step_00000002.h5: attribute seq_len = 1000000000000: more than tokens_seen = 128, which counts step 2's sequence of that length" \
  "names the attribute"
expect_exit 3 "eval it" -- "$LONGCTX" eval "$OUT/negt" --quiet
expect_in "$OUT/stderr" "attribute seq_len = 1000000000000: more than tokens_seen" "... and eval refuses it as damage"
# Training settings changed on a resume are said, in one line (before: data.task and train.seed alone; a new
# train.clip or beta2 went unsaid); settings that leave the numbers alone are not.
expect_exit 0 "a checkpoint at step 1" -- "$LONGCTX" train "${SMALL[@]}" --train.steps 1 --checkpoint.dir "$OUT/changed"
expect_exit 0 "resume with other train.clip, train.beta2, train.steps and train.threads" -- "$LONGCTX" train "${SMALL[@]}" \
  --train.steps 2 --train.clip 0.25 --train.beta2 0.5 --train.threads 1 --checkpoint.dir "$OUT/changed"
expect_in "$OUT/stderr" "step_00000001.h5: train.beta2 was 0.95, continuing with 0.5; train.clip was [0-9.e-]+, continuing with 0.25; train.steps was 1, continuing with 2 \(the run goes on with these settings" \
  "says what changed"
grep -q "train.threads was" "$OUT/stderr" && fail "warned about train.threads" || pass "... and not train.threads"
# A train.seed past int64 is compared as itself (before: as a double, 2^64-1 and 2^64-2 were the same seed,
# and the change, which alters the data, went unsaid).
expect_exit 0 "a checkpoint with train.seed 2^64-1" -- "$LONGCTX" train "${SMALL[@]}" --train.steps 1 \
  --train.seed 18446744073709551615 --checkpoint.dir "$OUT/seed"
expect_exit 0 "resume with train.seed 2^64-2" -- "$LONGCTX" train "${SMALL[@]}" --train.steps 2 \
  --train.seed 18446744073709551614 --checkpoint.dir "$OUT/seed"
expect_in "$OUT/stderr" "train.seed was 18446744073709551615, continuing with 18446744073709551614;" "says the seed changed"
# A damaged latest is refused (exit 3, nothing changed); the message lists the older checkpoints, newest
# first, and how to resume from one (before: the checksum error alone). Following it resumes and trains
# the steps after it again.
expect_exit 0 "checkpoints at steps 2 and 4" -- "$LONGCTX" train "${SMALL[@]}" --train.steps 4 --checkpoint.every 2 \
  --checkpoint.dir "$OUT/older"
/usr/bin/python3 - "$OUT/older/step_00000004.h5" <<'PY' || fail "could not flip a byte of step 4"
import h5py, sys
with h5py.File(sys.argv[1], "r") as f:
    at = f["model/layer0/wq"].id.get_chunk_info(0).byte_offset + 4
with open(sys.argv[1], "r+b") as f:
    f.seek(at); b = f.read(1); f.seek(at); f.write(bytes([b[0] ^ 0xFF]))
PY
expect_exit 3 "resume from a damaged latest" -- "$LONGCTX" train "${SMALL[@]}" --train.steps 6 --checkpoint.dir "$OUT/older"
expect_in "$OUT/stderr" "step_00000004.h5: /model/layer0/wq: .*checksum.*Nothing was changed. Older checkpoints in .*/older, newest first: step_00000002.h5\. If step_00000004.h5 is damaged, .longctx ckpt verify .*/older. says which are whole; to resume from one, write its name into .*/older/latest" \
  "names the older checkpoint and how to resume from it"
[ "$(cat "$OUT/older/latest")" = step_00000004.h5 ] && pass "latest left as it was" || fail "latest: $(cat "$OUT/older/latest")"
echo step_00000002.h5 >"$OUT/older/latest"
expect_exit 0 "resume as the message says" -- "$LONGCTX" train "${SMALL[@]}" --train.steps 6 --checkpoint.every 2 \
  --checkpoint.dir "$OUT/older"
[ "$(cat "$OUT/older/latest")" = step_00000006.h5 ] && pass "... on to step 6" || fail "latest: $(cat "$OUT/older/latest")"
expect_exit 0 "step 4 written again, whole" -- "$LONGCTX" ckpt verify "$OUT/older" --quiet
# Without `latest` the newest file by name is resumed, with a warning naming it and its run (before: no word,
# also where it was another run's copy); a dangling link `latest` is refused, not taken for none.
rm "$OUT/older/latest"
expect_exit 0 "resume without latest" -- "$LONGCTX" train "${SMALL[@]}" --train.steps 7 --checkpoint.dir "$OUT/older"
expect_in "$OUT/stderr" "checkpoint.dir=.*/older has no .latest.: resumed from its newest checkpoint by name, step_00000006.h5 \(run [0-9a-f]+\); if that is not this run's" \
  "says it took the newest file by name, and its run"
ln -sf nowhere "$OUT/older/latest"
expect_exit 3 "a dangling link latest" -- "$LONGCTX" train "${SMALL[@]}" --train.steps 8 --checkpoint.dir "$OUT/older"
expect_in "$OUT/stderr" "older/latest: is a symbolic link to .nowhere., which is not there. Nothing was changed. Checkpoints in .*/older, newest first: step_00000007.h5" \
  "refused, listing the checkpoints there"
for c in "no_wq:/model/layer0/wq: missing" "no_optimizer:/optimizer/m/embedding: missing" \
         "shape:/model/layer0/wq: shape \[16,32\], the model needs \[32,32\]" \
         "world0:attribute world_size = 0: must be >= 1"; do
  expect_exit 3 "verify: ${c%%:*}" -- "$LONGCTX" ckpt verify "$OUT/ck_${c%%:*}.h5" --quiet
  expect_in "$OUT/stdout" "${c#*:}" "verify says: ${c#*:}"
done
# A resume refuses what verify refuses (before: HDF5 converted a float16 or float64 tensor to float32, and
# /state/global/step was never read, so both resumed with exit 0). A data position for another step too.
for c in "float64:/model/layer0/wq: float64, the model needs float32" "float16:/model/layer0/wq: float16, the model needs float32" \
         "step5:/state/global/step holds 5, the step attribute says 2" \
         "pos7:/state/global/data_position holds sequence 7, token 0: the step attribute says sequence 2"; do
  expect_exit 3 "verify: ${c%%:*}" -- "$LONGCTX" ckpt verify "$OUT/ck_${c%%:*}.h5" --quiet
  expect_in "$OUT/stdout" "${c#*:}" "verify says: ${c#*:}"
  mkdir -p "$OUT/re_${c%%:*}" && cp "$OUT/ck_${c%%:*}.h5" "$OUT/re_${c%%:*}/step_00000002.h5" &&
    echo step_00000002.h5 >"$OUT/re_${c%%:*}/latest"
  expect_exit 3 "resume from ${c%%:*}" -- "$LONGCTX" train "${SMALL[@]}" --train.steps 3 --checkpoint.dir "$OUT/re_${c%%:*}"
  expect_in "$OUT/stderr" "${c#*:}" "the resume says: ${c#*:}"
done

# ---- tokens_seen counts the curriculum's shorter steps -----------------------------------------------
expect_exit 0 "curriculum run with a checkpoint" -- "$LONGCTX" train "${SMALL[@]}" --train.steps 3 \
  --data.short_seq_len 64 --data.short_steps 1 --checkpoint.dir "$OUT/cur" --dump.activations "$OUT/cur.h5" --dump.steps 1,2
expect_in "$OUT/stderr" "dump.steps: step 1 trains at N = 64" "warns that a curriculum step is not dumped"
expect_in "$OUT/stderr" "N = 256 over 1 rank \(256 rows each\).*; curriculum: N = 64 until step 1" \
  "the start line gives data.seq_len's rows (before: the first stage's, 64)"
/usr/bin/python3 -c "import h5py, sys; t = int(h5py.File(sys.argv[1], 'r').attrs['tokens_seen']); sys.exit(0 if t == 64 + 2 * 256 else 1)" \
  "$OUT/cur/step_00000003.h5" && pass "tokens_seen = 64 + 2 x 256" || fail "tokens_seen ignores the curriculum"
# A checkpoint's seq_len is the length its last step trained at, also at the end of a stage (before: the
# next stage's, which the trainer had already switched to).
expect_exit 0 "curriculum run, a checkpoint each step" -- "$LONGCTX" train "${SMALL[@]}" --train.steps 2 \
  --data.short_seq_len 64 --data.short_steps 1 --checkpoint.dir "$OUT/cur_len" --checkpoint.every 1 --checkpoint.keep 0
/usr/bin/python3 -c "import h5py, sys; sys.exit(0 if [int(h5py.File(f, 'r').attrs['seq_len']) for f in sys.argv[1:]] == [64, 256] else 1)" \
  "$OUT/cur_len/step_00000001.h5" "$OUT/cur_len/step_00000002.h5" && pass "seq_len 64 at step 1, 256 at step 2" ||
  fail "seq_len: $("$LONGCTX" ckpt inspect "$OUT/cur_len/step_00000001.h5" --quiet 2>&1 | grep -m1 seq_len)"
# Resumed at another data.seq_len, the checkpoint's count goes on (before: every step counted at 128).
expect_exit 0 "resume it at data.seq_len 128" -- "$LONGCTX" train "${BASE[@]}" --model.heads 4 --model.dim 32 \
  --model.segment_lengths 32,128,256 --data.seq_len 128 --train.steps 5 --checkpoint.dir "$OUT/cur"
/usr/bin/python3 -c "import h5py, sys; t = int(h5py.File(sys.argv[1], 'r').attrs['tokens_seen']); sys.exit(0 if t == 64 + 2 * 256 + 2 * 128 else 1)" \
  "$OUT/cur/step_00000005.h5" && pass "tokens_seen = 64 + 2 x 256 + 2 x 128" || fail "tokens_seen after the resume at 128 is wrong"

# ---- SIGUSR1: finish the step, checkpoint, exit 75; resuming gives the uninterrupted losses ----------
LONG=("${BASE[@]}" --model.heads 4 --model.dim 32 --train.steps 40 --data.seq_len 1024 --model.segment_lengths 32,128,1024)
expect_exit 0 "long uninterrupted run" -- "$LONGCTX" train "${LONG[@]}" --log.jsonl "$OUT/e.jsonl"
"$LONGCTX" train "${LONG[@]}" --checkpoint.dir "$OUT/sig" --log.jsonl "$OUT/f.jsonl" \
  >"$OUT/sig.out" 2>"$OUT/sig.err" &
pid=$!
for _ in $(seq 200); do grep -q '"step": 3,' "$OUT/f.jsonl" 2>/dev/null && break; sleep 0.05; done
kill -USR1 $pid
wait $pid; code=$?
[ "$code" -eq 75 ] && pass "SIGUSR1 -> exit 75" || { fail "SIGUSR1 gave exit $code"; cat "$OUT/sig.err"; }
[ -f "$OUT/sig/latest" ] && pass "checkpoint committed on the signal" || fail "no checkpoint after the signal"
expect_exit 0 "resume after the signal" -- "$LONGCTX" train "${LONG[@]}" --checkpoint.dir "$OUT/sig" \
  --log.jsonl "$OUT/f.jsonl"
if [ "$(losses "$OUT/e.jsonl" | wc -l)" -eq 40 ] && diff <(losses "$OUT/e.jsonl") <(losses "$OUT/f.jsonl") >/dev/null; then pass "interrupted + resumed = uninterrupted"
else fail "losses differ after signal + resume"; diff <(losses "$OUT/e.jsonl") <(losses "$OUT/f.jsonl") | head; fi

# ---- a signal without checkpoint.dir: nothing to requeue from, so 128 + the signal, not 75 ------------
"$LONGCTX" train "${LONG[@]}" --log.jsonl "$OUT/h.jsonl" >"$OUT/sig3.out" 2>"$OUT/sig3.err" &
pid=$!
for _ in $(seq 200); do grep -q '"step": 3,' "$OUT/h.jsonl" 2>/dev/null && break; sleep 0.05; done
kill -USR1 $pid
wait $pid; code=$?
[ "$code" -eq $((128 + $(kill -l USR1))) ] && pass "SIGUSR1 without checkpoint.dir -> exit $code" || { fail "gave exit $code"; tail -3 "$OUT/sig3.err"; }

# ---- SIGINT (Ctrl-C; srun passes it on) and SIGHUP stop the run as SIGTERM does: finish the step,
# checkpoint, exit 75 (before: the process ended at once, losing the steps since the last checkpoint, and
# wrote no log.summary). Started with SIGINT at its default: a script's background job ignores it.
env --default-signal=INT "$LONGCTX" train "${LONG[@]}" --checkpoint.dir "$OUT/int" --log.jsonl "$OUT/i.jsonl" \
  --log.summary "$OUT/int.summary.json" >"$OUT/int.out" 2>"$OUT/int.err" &
pid=$!
for _ in $(seq 200); do grep -q '"step": 3,' "$OUT/i.jsonl" 2>/dev/null && break; sleep 0.05; done
kill -INT $pid
wait $pid; code=$?
[ "$code" -eq 75 ] && pass "SIGINT -> exit 75" || { fail "SIGINT gave exit $code"; tail -3 "$OUT/int.err"; }
expect_in "$OUT/int.err" "longctx: stopping after this step, with a checkpoint where checkpoint.dir is set \(the signal again stops now" \
  "says at once that it stops after the step"
expect_in "$OUT/int.summary.json" '"outcome": "stopped", "exit": 75, "signal": "SIGINT"' "log.summary: stopped on SIGINT"
expect_exit 0 "resume after SIGINT" -- "$LONGCTX" train "${LONG[@]}" --checkpoint.dir "$OUT/int" --log.jsonl "$OUT/i.jsonl"
diff <(losses "$OUT/e.jsonl") <(losses "$OUT/i.jsonl") >/dev/null && pass "interrupted by SIGINT + resumed = uninterrupted" ||
  fail "losses differ after SIGINT + resume"
# The same signal again (Ctrl-C twice) ends the process at once, as without the handler: 128 + SIGHUP. Its
# checkpoint's .tmp, if it was saving one, is removed (also one the main thread was claiming as the signal
# was handled on another thread, which CI once saw left behind: cli_attend's LONGCTX_FAULT_SLOW_CLAIM_MS).
# Each checkpoint's claim takes 1.5 s here, so that the second signal comes before the stop is settled (a
# signal after it is ignored: the run's 75 stands); before, a loaded machine could finish the step and its
# checkpoint within the test's polling, and the run then exited 75.
env --default-signal=HUP LONGCTX_FAULT_SLOW_CLAIM_MS=1500 "$LONGCTX" train "${LONG[@]}" --checkpoint.dir "$OUT/hup" --checkpoint.every 1 \
  --log.jsonl "$OUT/hup.jsonl" >"$OUT/hup.out" 2>"$OUT/hup.err" &
pid=$!
for _ in $(seq 200); do grep -q '"step": 3,' "$OUT/hup.jsonl" 2>/dev/null && break; sleep 0.05; done
kill -HUP $pid  # the second once the first is taken (two at once are delivered as one)
for _ in $(seq 200); do grep -q "stopping after this step" "$OUT/hup.err" && break; sleep 0.05; done
kill -HUP $pid
wait $pid 2>/dev/null; code=$?  # (bash says "Hangup" otherwise)
[ "$code" -eq $((128 + $(kill -l HUP))) ] && pass "SIGHUP twice -> exit $code at once" || { fail "gave exit $code"; tail -3 "$OUT/hup.err"; }
[ -z "$(find "$OUT/hup" -name '*.tmp')" ] && pass "... no .tmp left" || fail ".tmp left: $(ls "$OUT/hup")"
expect_exit 0 "resume after SIGHUP twice" -- "$LONGCTX" train "${LONG[@]}" --checkpoint.dir "$OUT/hup" --checkpoint.every 1
# Once the stop is settled (checkpoint committed, log.summary written) a SIGINT again is ignored: the process
# ends with the run's 75, as its summary says (before: 130). It is stopped after its summary, the SIGINT sent,
# then continued.
env --default-signal=INT LONGCTX_FAULT_STOP_AFTER_SUMMARY=1 "$LONGCTX" train "${LONG[@]}" --checkpoint.dir "$OUT/settled" \
  --log.jsonl "$OUT/settled.jsonl" --log.summary "$OUT/settled.summary.json" >"$OUT/settled.out" 2>"$OUT/settled.err" &
pid=$!
for _ in $(seq 200); do grep -q '"step": 3,' "$OUT/settled.jsonl" 2>/dev/null && break; sleep 0.05; done
kill -INT $pid
for _ in $(seq 400); do [ "$(cut -d' ' -f3 "/proc/$pid/stat" 2>/dev/null)" = T ] && break; sleep 0.05; done
kill -INT $pid
kill -CONT $pid
wait $pid 2>/dev/null; code=$?
[ "$code" -eq 75 ] && pass "SIGINT again once the stop is settled: ignored, exit 75" ||
  { fail "SIGINT again after the summary: exit $code"; tail -3 "$OUT/settled.err"; }
expect_in "$OUT/settled.summary.json" '"outcome": "stopped", "exit": 75, "signal": "SIGINT"' "... as log.summary says"
# Before the run's work begins there is nothing of it to save: a SIGINT ends it at once (128 + SIGINT), with
# no step trained and no checkpoint (before: a whole step and a checkpoint first).
env --default-signal=INT LONGCTX_FAULT_STOP_BEFORE_WORK=1 "$LONGCTX" train "${LONG[@]}" --checkpoint.dir "$OUT/early" \
  >"$OUT/early.out" 2>"$OUT/early.err" &
pid=$!
for _ in $(seq 400); do [ "$(cut -d' ' -f3 "/proc/$pid/stat" 2>/dev/null)" = T ] && break; sleep 0.05; done
# To the main thread (tgkill), the one that begins the work. Sent to the process, the SIGINT went at SIGCONT
# to whichever thread woke first (Open MPI's, OpenMP's), and one that took it a few microseconds after the
# main thread had begun the work made it a stop after the step: exit 75, seen once in CI.
/usr/bin/python3 -c 'import ctypes, signal, sys; pid = int(sys.argv[1])
sys.exit(ctypes.CDLL(None, use_errno=True).tgkill(pid, pid, signal.SIGINT) != 0)' "$pid" || fail "tgkill $pid failed"
kill -CONT $pid
wait $pid 2>/dev/null; code=$?
[ "$code" -eq $((128 + $(kill -l INT))) ] && [ ! -e "$OUT/early/latest" ] && ! grep -q "^step " "$OUT/early.out" &&
  pass "SIGINT before the first step: exit $code at once, nothing trained or saved" ||
  { fail "SIGINT before the first step: exit $code"; ls "$OUT/early"; tail -3 "$OUT/early.err"; }
# Ignored where it starts (nohup; a script's background job, SIGINT): the run goes on to its end.
env --ignore-signal=HUP "$LONGCTX" train "${LONG[@]/#40/12}" --log.jsonl "$OUT/nohup.jsonl" >"$OUT/nohup.out" 2>&1 &
pid=$!
for _ in $(seq 200); do grep -q '"step": 3,' "$OUT/nohup.jsonl" 2>/dev/null && break; sleep 0.05; done
kill -HUP $pid
wait $pid; code=$?
[ "$code" -eq 0 ] && [ "$(losses "$OUT/nohup.jsonl" | wc -l)" -eq 12 ] && pass "an ignored SIGHUP: the run goes on, exit 0" ||
  { fail "an ignored SIGHUP: exit $code"; tail -3 "$OUT/nohup.out"; }

# The signal reaching one rank only (rank 1): every rank exits with 128 + that signal. Before, the ranks it
# missed said SIGTERM (143) and the job's code depended on which rank exited first.
"${MPIRUN[@]}" -np 2 "$LONGCTX" train "${LONG[@]}" --log.jsonl "$OUT/one.jsonl" \
  >"$OUT/one.out" 2>"$OUT/one.err" &
launcher=$!
for _ in $(seq 200); do grep -q '"step": 3,' "$OUT/one.jsonl" 2>/dev/null && break; sleep 0.05; done
for child in $(pgrep -P $launcher); do
  grep -qx OMPI_COMM_WORLD_RANK=1 <<<"$(tr '\0' '\n' <"/proc/$child/environ" 2>/dev/null)" && kill -USR1 "$child"
done
wait $launcher; code=$?
[ "$code" -eq $((128 + $(kill -l USR1))) ] && grep -q "no checkpoint.dir, no checkpoint saved (exit $code, not 75)" "$OUT/one.err" &&
  pass "SIGUSR1 to rank 1 only -> every rank exits $code" || { fail "gave exit $code"; tail -3 "$OUT/one.err"; }
# Without checkpoint.dir, a stop still publishes the activation dump, and says so (before: "nothing saved").
expect_exit $((128 + $(kill -l USR1))) "a stop in a dumped step, no checkpoint.dir" -- env LONGCTX_FAULT_SIGNAL_AT=dump:2 \
  "$LONGCTX" train "${SMALL[@]}" --train.steps 4 --dump.activations "$OUT/stopdump.h5" --dump.steps 2,3
expect_in "$OUT/stderr" "no checkpoint.dir, no checkpoint saved \(the activation dump .*stopdump.h5 is published through this step\)" \
  "... says the dump is saved"
/usr/bin/python3 -c "import h5py, sys; sys.exit(0 if list(h5py.File(sys.argv[1], 'r').keys()) == ['step_2'] else 1)" \
  "$OUT/stopdump.h5" && pass "... and it holds step 2" || fail "no dump of step 2 alone after the stop"
expect_exit $((128 + $(kill -l USR1))) "a stop before any dumped step, no checkpoint.dir" -- env LONGCTX_FAULT_SIGNAL_AT=eval:2 \
  "$LONGCTX" train "${SMALL[@]}" --train.steps 4 --eval.every 2 --dump.activations "$OUT/stopdump2.h5" --dump.steps 4
grep -q "activation dump" "$OUT/stderr" && fail "said a dump of no step: $(grep 'activation dump' "$OUT/stderr")" ||
  pass "... says nothing of a dump that holds no step (from the regression audit)"

# checkpoint.dir removed or moved while the run holds it: the next checkpoint stops the run (exit 1) instead of making
# the directory again without the lock (a second run was let in, and both wrote there).
"$LONGCTX" train "${BASE[@]}" --model.heads 4 --model.dim 32 --data.seq_len 1024 --model.segment_lengths 32,128,1024 \
  --train.steps 400 --checkpoint.every 1 --checkpoint.dir "$OUT/gone" --log.jsonl "$OUT/gone.jsonl" \
  >"$OUT/gone.out" 2>"$OUT/gone.err" &
pid=$!
for _ in $(seq 200); do grep -q '"step": 3,' "$OUT/gone.jsonl" 2>/dev/null && break; sleep 0.05; done
mv "$OUT/gone" "$OUT/moved"  # one atomic step (rm -rf could race the checkpoint being written)
wait $pid; code=$?
# Said as "removed or replaced" at the next checkpoint, as "gone" when the move came between that check and
# the write, or as the write's failed rename when it came mid-write: each time the error names the directory.
[ "$code" -eq 1 ] && grep -q "error.*$OUT/gone" "$OUT/gone.err" &&
  pass "checkpoint.dir moved away mid-run -> exit 1, naming it" || { fail "gave exit $code"; tail -3 "$OUT/gone.err"; }
[ ! -e "$OUT/gone/latest" ] && pass "no checkpoint written into a directory made again" || fail "wrote: $(ls -a "$OUT/gone")"

# log.jsonl moved away mid-run (a log rotation): the run says so and logs on into a new file at that name
# (before: on into the moved file, unseen), with a checkpoint.dir (its start's note follows the new file).
"$LONGCTX" train "${BASE[@]}" --model.heads 4 --model.dim 32 --data.seq_len 1024 --model.segment_lengths 32,128,1024 \
  --train.steps 40 --log.every 1 --checkpoint.dir "$OUT/rot" --log.jsonl "$OUT/rot.jsonl" >"$OUT/rot.out" 2>"$OUT/rot.err" &
pid=$!
for _ in $(seq 200); do grep -q '"step": 3,' "$OUT/rot.jsonl" 2>/dev/null && break; sleep 0.05; done
mv "$OUT/rot.jsonl" "$OUT/rot.jsonl.1"
wait $pid; code=$?
steps() { /usr/bin/python3 -c 'import json, sys; print(*[json.loads(l)["step"] for l in open(sys.argv[1])])' "$1"; }
[ "$code" -eq 0 ] && grep -q "log.jsonl=.*rot.jsonl: removed or replaced while the run wrote to it; its next lines go to the file now at that name (a new one)" "$OUT/rot.err" &&
  pass "log.jsonl moved mid-run: said" || { fail "gave exit $code"; tail -3 "$OUT/rot.err"; }
old=$(steps "$OUT/rot.jsonl.1"); new=$(steps "$OUT/rot.jsonl" 2>/dev/null)
[ "${old##* }" -ge 3 ] && [ "${new%% *}" -eq $(( ${old##* } + 1 )) ] && [ "${new##* }" -eq 40 ] &&
  pass "... steps ${old%% *}-${old##* } in the moved file, ${new%% *}-40 in the new one" || fail "moved: $old; new: $new"

# ---- a crash after logging but before the next checkpoint: the resumed run drops the lines after its
# checkpoint (and a torn last line) and logs those steps again, so log.jsonl reads like one run -------
expect_exit 0 "6 steps, checkpoints at 4 and 6" -- "$LONGCTX" train "${SMALL[@]}" --train.steps 6 --checkpoint.every 4 \
  --checkpoint.dir "$OUT/crash" --log.jsonl "$OUT/crash.jsonl"
cp "$OUT/crash.jsonl" "$OUT/whole.jsonl"
rm "$OUT/crash/step_00000006.h5" && echo step_00000004.h5 >"$OUT/crash/latest"  # as if killed after step 6's log line
printf '{"step": 7, "loss": 1.2' >>"$OUT/crash.jsonl"                           # and mid-way through a line
expect_exit 0 "resume after the crash" -- "$LONGCTX" train "${SMALL[@]}" --train.steps 6 --checkpoint.every 4 \
  --checkpoint.dir "$OUT/crash" --log.jsonl "$OUT/crash.jsonl"
expect_in "$OUT/stderr" "log.jsonl: dropped 3 line" "says what it dropped"
diff <(losses "$OUT/whole.jsonl") <(losses "$OUT/crash.jsonl") >/dev/null && [ "$(wc -l <"$OUT/crash.jsonl")" -eq 6 ] &&
  pass "log.jsonl after crash + resume = one uninterrupted run" || { fail "log.jsonl after a crash"; cat "$OUT/crash.jsonl"; }

# The same in a file that a fresh run appended to: only this run's lines go. Before, the earlier run's
# steps 5 and 6 (after the checkpoint's step 4) were dropped too.
cp "$OUT/whole.jsonl" "$OUT/appended.jsonl"
APPENDED=(--train.steps 6 --train.seed 7 --checkpoint.every 2 --log.every 4 --checkpoint.dir "$OUT/appended"
          --log.jsonl "$OUT/appended.jsonl")
expect_exit 0 "a new run appends to that log.jsonl" -- "$LONGCTX" train "${SMALL[@]}" "${APPENDED[@]}"
cp "$OUT/appended.jsonl" "$OUT/both.jsonl"
[ "$(losses "$OUT/both.jsonl" | tail -3 | cut -d' ' -f1 | tr '\n' ' ')" = "1 4 6 " ] &&
  pass "it logs its step 1 off the log.every grid (where its lines start)" || fail "new run logged: $(losses "$OUT/both.jsonl" | tail -3)"
rm "$OUT/appended/step_00000006.h5" && echo step_00000004.h5 >"$OUT/appended/latest"
expect_exit 0 "resume the new run" -- "$LONGCTX" train "${SMALL[@]}" "${APPENDED[@]}"
expect_in "$OUT/stderr" "log.jsonl: dropped 1 line" "drops the new run's step 6 only"
cmp -s <(head -6 "$OUT/appended.jsonl") "$OUT/whole.jsonl" && diff <(losses "$OUT/both.jsonl") <(losses "$OUT/appended.jsonl") >/dev/null \
  && pass "the earlier run's lines stay, then the new run's as one run" || { fail "shared log.jsonl"; cat "$OUT/appended.jsonl"; }
# A crash before the new run's first line on the log.every grid (after its step 2 checkpoint): its step 1
# line marks where its lines start. Before, with no line of its own, the resume dropped the earlier run's 3-6.
head -7 "$OUT/both.jsonl" >"$OUT/appended.jsonl"
rm "$OUT/appended"/step_0000000[46].h5 && echo step_00000002.h5 >"$OUT/appended/latest"
expect_exit 0 "resume from step 2 with only step 1 logged" -- "$LONGCTX" train "${SMALL[@]}" "${APPENDED[@]}"
cmp -s <(head -6 "$OUT/appended.jsonl") "$OUT/whole.jsonl" && diff <(losses "$OUT/both.jsonl") <(losses "$OUT/appended.jsonl") >/dev/null \
  && pass "the earlier run's lines stay" || { fail "shared log.jsonl after an early crash"; cat "$OUT/appended.jsonl"; }

# An earlier run's torn last line: a fresh run drops it before appending (before, its step 1 line was glued
# to it, and a resume could not find where its lines start).
printf '{"step": 10, "loss": 1.0, "lr": 0}\n{"step": 20, "loss": 0.9, "lr": 0}\n{"step": 30, "lo' >"$OUT/torn.jsonl"
expect_exit 0 "a fresh run on a log.jsonl with a torn last line" -- "$LONGCTX" train "${SMALL[@]}" --train.steps 2 \
  --log.every 4 --log.jsonl "$OUT/torn.jsonl"
[ "$(losses "$OUT/torn.jsonl" | cut -d' ' -f1 | tr '\n' ' ')" = "10 20 1 2 " ] &&
  /usr/bin/python3 -c "import json, sys; [json.loads(l) for l in open(sys.argv[1])]" "$OUT/torn.jsonl" &&
  pass "the torn line is gone, every line is JSON" || { fail "torn log.jsonl"; cat "$OUT/torn.jsonl"; }
# ... but a whole JSON object with no line break after it (another tool's `echo -n`) is kept, given one
# (before: dropped as torn).
printf '{"step": 10, "loss": 1.0, "lr": 0}\n{"note": "a {brace} in \\"text\\"", "step": 20, "loss": 0.9, "lr": 0}' >"$OUT/nonl.jsonl"
expect_exit 0 "a fresh run on a log.jsonl whose whole last line has no line break" -- "$LONGCTX" train "${SMALL[@]}" \
  --train.steps 2 --log.every 4 --log.jsonl "$OUT/nonl.jsonl"
[ "$(losses "$OUT/nonl.jsonl" | cut -d' ' -f1 | tr '\n' ' ')" = "10 20 1 2 " ] &&
  /usr/bin/python3 -c "import json, sys; [json.loads(l) for l in open(sys.argv[1])]" "$OUT/nonl.jsonl" &&
  pass "... it is kept, every line is JSON" || { fail "log.jsonl with no last line break"; cat "$OUT/nonl.jsonl"; }
expect_in "$OUT/stderr" "log.jsonl: its last line had no line break; added" "... and says so"

# A start that stopped before its first checkpoint (a preemption; here a nan gradient at step 4), then the
# same run again in the same checkpoint.dir: before, log.jsonl held steps 1-3, then 1-6, as two runs.
cp "$OUT/whole.jsonl" "$OUT/early.jsonl"  # an earlier run's lines, which stay
EARLY=(--train.steps 6 --checkpoint.every 100 --checkpoint.dir "$OUT/early" --log.jsonl "$OUT/early.jsonl")
expect_exit 1 "a start that stops at step 4, before its first checkpoint" -- env LONGCTX_FAULT_NAN_GRADIENT=4 \
  "$LONGCTX" train "${SMALL[@]}" "${EARLY[@]}"
[ "$(wc -l <"$OUT/early.jsonl")" -eq 9 ] && pass "it logged steps 1-3 after the earlier run's" ||
  fail "log.jsonl has $(wc -l <"$OUT/early.jsonl") lines"
expect_exit 0 "the same run again" -- "$LONGCTX" train "${SMALL[@]}" "${EARLY[@]}"
expect_in "$OUT/stderr" "log.jsonl: dropped 3 line\(s\) of an earlier start of this run, which stopped before its first checkpoint" \
  "says what it dropped"
cmp -s <(head -6 "$OUT/early.jsonl") "$OUT/whole.jsonl" && diff <(losses "$OUT/whole.jsonl") <(tail -6 "$OUT/early.jsonl" | losses /dev/stdin) \
  >/dev/null && [ "$(wc -l <"$OUT/early.jsonl")" -eq 12 ] && pass "the earlier run's lines, then this run's once" ||
  { fail "log.jsonl after a restart before the first checkpoint"; cat "$OUT/early.jsonl"; }
[ ! -e "$OUT/early/.longctx-log-start" ] && pass "the note goes with the first checkpoint" || fail "the note is still there"
# A kill between a line and its note leaves the note a line behind; that line carries the start's run id, which
# the note holds, so it goes with the others (before: all kept, and logged again; from the crash audit, where a
# SIGKILL also left the note empty, now written beside and renamed over).
EARLY3=(--train.steps 6 --checkpoint.every 100 --checkpoint.dir "$OUT/early3" --log.jsonl "$OUT/early3.jsonl")
expect_exit 1 "a start that stops at step 4" -- env LONGCTX_FAULT_NAN_GRADIENT=4 "$LONGCTX" train "${SMALL[@]}" "${EARLY3[@]}"
/usr/bin/python3 - "$OUT/early3/.longctx-log-start" "$OUT/early3.jsonl" <<'PY' || fail "could not set the note a line back"
import json, sys
note, log = sys.argv[1], sys.argv[2]
inode, begin, end, before, run = open(note).read().split()
lines = open(log, 'rb').read().splitlines(keepends=True)
assert int(end) == sum(map(len, lines)) and run == json.loads(lines[-1])['run'], (end, run)
open(note, 'w').write(f"{inode} {begin} {int(end) - len(lines[-1])} {before} {run}\n")
PY
expect_exit 0 "the same run again" -- "$LONGCTX" train "${SMALL[@]}" "${EARLY3[@]}"
expect_in "$OUT/stderr" "log.jsonl: dropped 3 line\(s\) of an earlier start of this run" "... drops the line past the note too"
[ "$(grep -c '"step"' "$OUT/early3.jsonl")" -eq 6 ] && pass "... steps 1-6 once" || { fail "early3"; cat "$OUT/early3.jsonl"; }
# But another job's line among that start's (two jobs on one log.jsonl): every line stays, though only that
# start's lie past the note's end (regression audit: all were dropped, the other job's too).
EARLY4=(--train.steps 6 --checkpoint.every 100 --checkpoint.dir "$OUT/early4" --log.jsonl "$OUT/early4.jsonl")
expect_exit 1 "a start that stops at step 4" -- env LONGCTX_FAULT_NAN_GRADIENT=4 "$LONGCTX" train "${SMALL[@]}" "${EARLY4[@]}"
/usr/bin/python3 - "$OUT/early4.jsonl" <<'PY' || fail "could not put another job's line among the start's"
import sys
lines = open(sys.argv[1]).read().splitlines(keepends=True)
assert len(lines) == 3, lines
lines.insert(1, '{"step": 1, "loss": 1.0, "run": "b0b0b0b0b0b0b0b0"}\n')
open(sys.argv[1], 'w').write(''.join(lines))
PY
expect_exit 0 "the same run again" -- "$LONGCTX" train "${SMALL[@]}" "${EARLY4[@]}"
! grep -q "dropped" "$OUT/stderr" && [ "$(wc -l <"$OUT/early4.jsonl")" -eq 10 ] && grep -q b0b0b0b0b0b0b0b0 "$OUT/early4.jsonl" &&
  pass "... every line stays, the other job's too (3 + 1 + 6)" || { fail "early4"; cat "$OUT/early4.jsonl"; }
# But never another run's lines: here one appended to the file after that start stopped (review: a note of
# only a length and a fingerprint dropped them).
EARLY2=(--train.steps 6 --checkpoint.every 100 --checkpoint.dir "$OUT/early2" --log.jsonl "$OUT/early2.jsonl")
expect_exit 1 "a start that stops at step 2" -- env LONGCTX_FAULT_NAN_GRADIENT=2 "$LONGCTX" train "${SMALL[@]}" "${EARLY2[@]}"
expect_exit 0 "another run appends to its log.jsonl" -- "$LONGCTX" train "${SMALL[@]}" --train.steps 6 --log.jsonl "$OUT/early2.jsonl"
expect_exit 0 "the first run again" -- "$LONGCTX" train "${SMALL[@]}" "${EARLY2[@]}"
! grep -q "dropped" "$OUT/stderr" && [ "$(wc -l <"$OUT/early2.jsonl")" -eq 13 ] && pass "every line stays (1 + 6 + 6)" ||
  { fail "lines were dropped"; cat "$OUT/early2.jsonl"; }

# A .longctx.lock that is a symbolic link (a dangling one here): said, with the fix (before: "Too many levels of
# symbolic links" alone).
mkdir -p "$OUT/dl" && ln -s /nonexistent/lock "$OUT/dl/.longctx.lock"
expect_exit 2 "a .longctx.lock that is a symbolic link" -- "$LONGCTX" train "${SMALL[@]}" --train.steps 1 --checkpoint.dir "$OUT/dl"
expect_in "$OUT/stderr" "dl/.longctx.lock: it is a symbolic link, which the lock file never is; remove it" "... says so, and the fix"

# A checkpoint past the file-size limit (a job's `ulimit -f`, SIGXFSZ ignored) under mpirun, where MPI-IO says
# only "file write failed": the limit is named (before: no reason; from the crash audit). Nothing committed.
# (A checkpoint of 19 MB past 12 MB: mpirun's own shared-memory files need some MB, and hung under 40 KB.)
( ulimit -f 12000; trap '' XFSZ; exec timeout 120 "${MPIRUN[@]}" -np 2 "$LONGCTX" train --quiet --model.heads 4 \
  --model.dim 256 --model.mlp_hidden 1024 --model.segment_lengths 32,128,256 --model.dilation_rates 1,2,4 --data.seq_len 256 \
  --data.key_digits 3 --train.steps 1 --checkpoint.every 1 --checkpoint.dir "$OUT/fsize" ) >"$OUT/stdout" 2>"$OUT/stderr"
code=$?
[ "$code" -eq 1 ] && pass "a checkpoint past ulimit -f: exit 1" || fail "a checkpoint past ulimit -f: exit $code"
expect_in "$OUT/stderr" "this process's file-size limit, \`ulimit -f\`, is 12288000 bytes" "... names the limit"
[ ! -e "$OUT/fsize/latest" ] && ! ls "$OUT/fsize"/*.tmp >/dev/null 2>&1 && pass "... nothing committed, no .tmp" ||
  fail "fsize: $(ls -A "$OUT/fsize")"

# Two jobs logging to one file (requeued jobs given one name): a resume drops only its own lines, by the run
# id each line carries, which a resume keeps from its checkpoint. Before: it took the last run of rising
# steps for its own, here job B's 1-6 and job A's 7-10, and dropped A's 7-10 with B's 5 and 6.
SHARED=(--checkpoint.every 2 --log.jsonl "$OUT/shared.jsonl")
expect_exit 0 "job A, 6 steps" -- "$LONGCTX" train "${SMALL[@]}" "${SHARED[@]}" --train.steps 6 --checkpoint.dir "$OUT/ja"
expect_exit 0 "job B, 6 steps, the same log.jsonl" -- "$LONGCTX" train "${SMALL[@]}" "${SHARED[@]}" --train.steps 6 \
  --train.seed 9 --checkpoint.dir "$OUT/jb"
expect_exit 0 "job A goes on to step 10" -- "$LONGCTX" train "${SMALL[@]}" "${SHARED[@]}" --train.steps 10 --checkpoint.dir "$OUT/ja"
echo step_00000004.h5 >"$OUT/jb/latest"
expect_exit 0 "job B requeued from its step 4" -- "$LONGCTX" train "${SMALL[@]}" "${SHARED[@]}" --train.steps 6 \
  --train.seed 9 --checkpoint.dir "$OUT/jb"
expect_in "$OUT/stderr" "log.jsonl: dropped 2 line" "drops B's steps 5 and 6"
/usr/bin/python3 - "$OUT/shared.jsonl" "$OUT/ja/step_00000010.h5" "$OUT/jb/step_00000006.h5" <<'EOF' &&
import h5py, json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
a, b = (h5py.File(f, "r").attrs["run_id"] for f in sys.argv[2:4])
a, b = (x.decode() if isinstance(x, bytes) else x for x in (a, b))
got = [(l["step"], {a: "A", b: "B"}.get(l["run"], "?")) for l in lines]
want = [(s, "A") for s in range(1, 7)] + [(s, "B") for s in range(1, 5)] + [(s, "A") for s in range(7, 11)] + [(5, "B"), (6, "B")]
sys.exit(0 if a != b and len(a) == 16 and got == want else print(a, b, got) or 1)
EOF
  pass "A's lines all stay; each job keeps its run id through its resumes" || fail "shared log.jsonl: $(cat "$OUT/shared.jsonl")"
# A run resumed from a checkpoint made before runs had ids (its log lines have none) goes on without one, so
# that a later rollback still finds its lines (review: a new id at each resume made each attempt's lines
# another run's: steps 3 and 4 twice). Another job's tagged lines in between do not hide them.
strip_ids() {  # as the version before run ids wrote them
  /usr/bin/python3 - "$@" <<'EOF'
import glob, h5py, re, sys
for f in glob.glob(sys.argv[1] + "/step_*.h5"):
    with h5py.File(f, "r+") as h: del h.attrs["run_id"]
t = open(sys.argv[2]).read(); open(sys.argv[2], "w").write(re.sub(r', "run": "[0-9a-f]+"', "", t))
EOF
}
LEGACY=(--checkpoint.every 2 --checkpoint.dir "$OUT/legacy" --log.jsonl "$OUT/legacy.jsonl")
expect_exit 0 "a run of 6 steps" -- "$LONGCTX" train "${SMALL[@]}" "${LEGACY[@]}" --train.steps 6
strip_ids "$OUT/legacy" "$OUT/legacy.jsonl"
echo step_00000004.h5 >"$OUT/legacy/latest"
expect_exit 0 "another job appends to its log.jsonl" -- "$LONGCTX" train "${SMALL[@]}" --train.steps 2 --train.seed 9 \
  --log.jsonl "$OUT/legacy.jsonl"
expect_exit 0 "resumed from its step 4, a checkpoint without an id" -- "$LONGCTX" train "${SMALL[@]}" "${LEGACY[@]}" --train.steps 6
expect_in "$OUT/stderr" "run without an id \(its checkpoint predates them\)" "says it goes on without an id"
echo step_00000002.h5 >"$OUT/legacy/latest"
expect_exit 0 "rolled back to step 2" -- "$LONGCTX" train "${SMALL[@]}" "${LEGACY[@]}" --train.steps 4
/usr/bin/python3 -c "
import json, sys
got = [(l['step'], l.get('run', '-') != '-') for l in map(json.loads, open(sys.argv[1]))]
want = [(1, False), (2, False), (1, True), (2, True), (3, False), (4, False)]
sys.exit(0 if got == want else print(got) or 1)" "$OUT/legacy.jsonl" &&
  pass "its steps once each, the other job's lines kept" || fail "legacy log.jsonl: $(cat "$OUT/legacy.jsonl")"
# checkpoint.keep after a hand rollback keeps the run's own history, by the previous_step links of its
# checkpoints (review: a run that went on from 4 to 8 left 5-8; rolled back to 4 and saving at 6, the
# next run kept the abandoned 5 and deleted its own 2, then its rollback point 4).
expect_exit 0 "a run of 4 steps" -- "$LONGCTX" train "${SMALL[@]}" --train.steps 4 --checkpoint.every 2 --checkpoint.dir "$OUT/rb"
expect_exit 0 "a run that goes on to 8" -- "$LONGCTX" train "${SMALL[@]}" --train.steps 8 --checkpoint.every 1 \
  --checkpoint.keep 0 --checkpoint.dir "$OUT/rb"
echo step_00000004.h5 >"$OUT/rb/latest"
expect_exit 0 "rolled back to 4, saving at 6 and 8, keeping 3" -- "$LONGCTX" train "${SMALL[@]}" --train.steps 8 \
  --checkpoint.every 3 --checkpoint.keep 3 --checkpoint.dir "$OUT/rb"
[ "$(cd "$OUT/rb" && echo step_*.h5)" = "step_00000004.h5 step_00000006.h5 step_00000008.h5" ] &&
  pass "keeps 4, 6 and 8: the abandoned 5-8 went first" || fail "kept: $(ls "$OUT/rb")"
[ "$(/usr/bin/python3 -c "import h5py, sys; print(*[h5py.File(sys.argv[1] + '/step_%08d.h5' % s, 'r').attrs['previous_step'] for s in (4, 6, 8)])" "$OUT/rb")" = "2 4 6" ] &&
  pass "each links to the one before it in its history" || fail "previous_step links"
# A link no run writes (not an earlier step) is damage, as verify and a resume say.
/usr/bin/python3 -c "import h5py, sys; h5py.File(sys.argv[1], 'r+').attrs['previous_step'] = 8" "$OUT/rb/step_00000008.h5" ||
  fail "could not set previous_step"
expect_exit 3 "verify a checkpoint linked to its own step" -- "$LONGCTX" ckpt verify "$OUT/rb/step_00000008.h5" --quiet
expect_in "$OUT/stdout" "attribute previous_step = 8: must be -1 or an earlier step than 8" "names the attribute"
# A log.jsonl of NUL bytes (what a power loss can leave) is not refused as not JSON: the resume drops it.
head -c 600 /dev/zero >"$OUT/legacy.jsonl"
expect_exit 0 "resumed with a log.jsonl of NUL bytes" -- "$LONGCTX" train "${SMALL[@]}" "${LEGACY[@]}" --train.steps 6
[ "$(losses "$OUT/legacy.jsonl" | cut -d' ' -f1 | tr '\n' ' ')" = "5 6 " ] && pass "the NUL bytes dropped, steps 5 and 6 logged" ||
  fail "log.jsonl: $(cat -v "$OUT/legacy.jsonl")"
# A link named log.jsonl stays a link to the file it leads to (before: the resume's rewrite replaced the link
# with a file, and the target kept the dropped lines and got no more).
mkdir -p "$OUT/logs" && ln -s logs/linked.jsonl "$OUT/linked.jsonl"
LINKED=(--train.steps 6 --checkpoint.every 3 --checkpoint.dir "$OUT/linked" --log.jsonl "$OUT/linked.jsonl")
expect_exit 0 "6 steps logged through a link" -- "$LONGCTX" train "${SMALL[@]}" "${LINKED[@]}"
echo step_00000003.h5 >"$OUT/linked/latest"
expect_exit 0 "resumed from step 3" -- "$LONGCTX" train "${SMALL[@]}" "${LINKED[@]}"
[ -L "$OUT/linked.jsonl" ] && [ "$(losses "$OUT/logs/linked.jsonl" | cut -d' ' -f1 | tr '\n' ' ')" = "1 2 3 4 5 6 " ] &&
  pass "still a link; its file holds steps 1-6 once" || { fail "linked log.jsonl"; ls -l "$OUT/linked.jsonl"; cat "$OUT/logs/linked.jsonl"; }
# A resumed run's dump keeps only its own earlier steps of dump.steps and dump.layers: another run's file at
# that name is replaced, as a fresh run replaces it (before: its steps were copied in as this run's).
expect_exit 0 "a run dumps its steps 1 and 2" -- "$LONGCTX" train "${SMALL[@]}" --train.steps 2 --train.seed 5 \
  --dump.activations "$OUT/dx.h5" --dump.steps 1,2
expect_exit 0 "another run, 3 steps" -- "$LONGCTX" train "${SMALL[@]}" --train.steps 3 --checkpoint.dir "$OUT/dy"
expect_exit 0 "resumed, dumping to the first run's file" -- "$LONGCTX" train "${SMALL[@]}" --train.steps 5 \
  --checkpoint.dir "$OUT/dy" --dump.activations "$OUT/dx.h5" --dump.steps 1,5
expect_in "$OUT/stderr" "dx.h5 holds the activations of another run \(run [0-9a-f]{16}; this is run [0-9a-f]{16}\): replaced" \
  "says it replaces them"
dump_keys() { /usr/bin/python3 -c "import h5py, sys; f = h5py.File(sys.argv[1], 'r'); print(*sorted(f.keys()), *sorted(f[sorted(f.keys())[0]].keys()))" "$1"; }
[ "$(dump_keys "$OUT/dx.h5")" = "step_5 layer_0" ] && pass "only this run's step 5" || fail "dump holds: $(dump_keys "$OUT/dx.h5")"
# A resumed run that dumps no step after its checkpoint leaves another run's dump as it is, and says so (before:
# silently; from the outputs audit).
expect_exit 0 "a run dumps its step 1" -- "$LONGCTX" train "${SMALL[@]}" --train.steps 1 --train.seed 7 \
  --dump.activations "$OUT/dw.h5" --dump.steps 1
expect_exit 0 "resumed, dumping nothing more, onto that run's dump" -- "$LONGCTX" train "${SMALL[@]}" --train.steps 6 \
  --checkpoint.dir "$OUT/dy" --dump.activations "$OUT/dw.h5" --dump.steps 1
expect_in "$OUT/stderr" "dump.activations=.*dw.h5 holds the activations of another run \(run [0-9a-f]{16}\): this run dumps no step after" \
  "... says it leaves it"
[ "$(dump_keys "$OUT/dw.h5")" = "step_1 layer_0" ] && pass "... as it was" || fail "dump holds: $(dump_keys "$OUT/dw.h5")"
expect_exit 0 "a run dumps steps 1 and 2 of layers 0 and 1, checkpoint at 3" -- "$LONGCTX" train "${SMALL[@]}" --train.steps 3 \
  --checkpoint.every 3 --checkpoint.dir "$OUT/dz" --dump.activations "$OUT/dz.h5" --dump.steps 1,2 --dump.layers 0,1
expect_exit 0 "resumed with dump.steps 2,5 and dump.layers 1" -- "$LONGCTX" train "${SMALL[@]}" --train.steps 5 \
  --checkpoint.dir "$OUT/dz" --dump.activations "$OUT/dz.h5" --dump.steps 2,5 --dump.layers 1
[ "$(dump_keys "$OUT/dz.h5")" = "step_2 step_5 layer_1" ] && pass "its own step 2 of layer 1 kept, step 1 and layer 0 not" ||
  fail "dump holds: $(dump_keys "$OUT/dz.h5")"
# ... and says what it drops, and that step 2 is not dumped again (before: neither said; from the dumps audit).
expect_in "$OUT/stderr" "dz.h5: step 1 \(layer 0,1\), step 2 \(layer 0\), dumped before step 4, not kept: not of this run's dump.steps and dump.layers" \
  "... says what it drops"
expect_in "$OUT/stderr" "dump.steps: step\(s\) 2 come at or before step 3, where this run resumes from its checkpoint: this run does not dump them" \
  "... and that step 2 is not dumped again"
# A `latest` naming a file that is gone says which checkpoints there are (as for a damaged one).
rm "$OUT/dz/step_00000005.h5"
expect_exit 3 "latest names a deleted checkpoint" -- "$LONGCTX" train "${SMALL[@]}" --train.steps 6 --checkpoint.dir "$OUT/dz"
expect_in "$OUT/stderr" "names step_00000005.h5, which does not exist in .*dz. Nothing was changed. Checkpoints in .*dz, newest first: step_00000003.h5\..*write its name into .*dz/latest" \
  "lists the checkpoints there"

# ---- kill -9 after a dumped step and a checkpoint: the resumed run keeps that dump (the dump is
# published with each checkpoint after a dumped step; before, it lived in .tmp until the run ended) ----
"$LONGCTX" train "${LONG[@]}" --checkpoint.every 4 --checkpoint.dir "$OUT/k9" --dump.activations "$OUT/k9.h5" \
  --dump.steps 2,30 --dump.layers 0 >"$OUT/k9.out" 2>"$OUT/k9.err" &
pid=$!
for _ in $(seq 400); do grep -q "^step  *5 " "$OUT/k9.out" 2>/dev/null && break; sleep 0.02; done  # after checkpoint 4
kill -KILL $pid; wait $pid; code=$?
[ "$code" -eq 137 ] && pass "killed mid-run (step $(sed -n 's/^step *\([0-9]*\).*/\1/p' "$OUT/k9.out" | tail -1))" || fail "the run was not killed mid-run (exit $code)"
expect_exit 0 "resume after kill -9" -- "$LONGCTX" train "${LONG[@]}" --checkpoint.every 4 --checkpoint.dir "$OUT/k9" \
  --dump.activations "$OUT/k9.h5" --dump.steps 2,30 --dump.layers 0
/usr/bin/python3 -c "import h5py, sys; k = sorted(h5py.File(sys.argv[1], 'r').keys()); sys.exit(0 if k == ['step_2', 'step_30'] else print(k) or 1)" \
  "$OUT/k9.h5" && pass "the dump of step 2 survived kill -9" || fail "a dump step was lost to kill -9"

# ---- a full disk (root only: a 1 MiB tmpfs): a failed checkpoint or log write is exit 1 with the reason;
# the older checkpoints stay. Before: a checkpoint that HDF5 could not close crashed its shutdown (139),
# and log lines were lost silently (exit 0).
mkdir -p "$OUT/full"
if [ "$(id -u)" -eq 0 ] && mount -t tmpfs -o size=1m tmpfs "$OUT/full" 2>/dev/null; then
  trap 'umount "$OUT/full" 2>/dev/null; rm -rf "$OUT"' EXIT
  expect_exit 1 "checkpoints fill the disk" -- "$LONGCTX" train "${SMALL[@]}" --train.steps 40 --checkpoint.every 1 \
    --checkpoint.keep 0 --checkpoint.dir "$OUT/full/c"
  expect_in "$OUT/stderr" "No space left on device" "names the reason"
  ls "$OUT/full/c"/*.tmp >/dev/null 2>&1 && fail "a .tmp is left" || pass "no .tmp left"
  expect_exit 0 "the last committed checkpoint verifies" -- "$LONGCTX" ckpt verify "$OUT/full/c/$(cat "$OUT/full/c/latest")" --quiet
  rm -rf "$OUT/full/c"
  # On 2 ranks the file is written through MPI-IO, whose error does not say why ("file write failed").
  expect_exit 1 "checkpoints fill the disk, 2 ranks" -- timeout 120 "${MPIRUN[@]}" -np 2 "$LONGCTX" train "${SMALL[@]}" \
    --train.steps 40 --checkpoint.every 1 --checkpoint.keep 0 --checkpoint.dir "$OUT/full/c"
  expect_in "$OUT/stderr" "No space left on device|the file system of .*full/c has [0-9]+ bytes free: full\?" "names the reason"
  rm -rf "$OUT/full/c"
  # An activation dump that fills the disk, 2 ranks: rank 0 looks for room for each step's bytes before its
  # writes, so the run stops at the step that has none, every rank alike, naming it and the free bytes
  # (before: MPI-IO's "Write failed" from inside HDF5, where a write failing on one rank alone left the
  # ranks in different collectives until --comm-timeout), and no .tmp is left.
  expect_exit 1 "an activation dump fills the disk, 2 ranks" -- timeout 120 "${MPIRUN[@]}" -np 2 "$LONGCTX" train "${SMALL[@]}" \
    --train.steps 8 --dump.activations "$OUT/full/d.h5" --dump.steps 1,2,3,4,5,6,7,8 --dump.layers 0,1
  expect_in "$OUT/stderr" "r0\] no room for the activations of step [0-9] in .*full/d.h5.tmp: it takes [0-9]+ bytes, and the file system of .*full has [0-9]+ free; none of it was written" \
    "names the step and the free bytes"
  grep -q "driver write request failed (Write failed); file write failed (Write failed)" "$OUT/stderr" &&
    fail "MPI-IO's error said twice" || pass "says MPI-IO's error once"
  [ -z "$(ls -A "$OUT/full")" ] && pass "no .tmp left" || fail "left: $(ls -A "$OUT/full" | tr '\n' ' ')"
  # A shape whose last chunks are mostly padding (1024 x 4 x 68 floats: the file is 1.9x its values, the
  # padding a hole) is written where its values fit: a reservation that counted the padding refused it,
  # one that did not let HDF5's write fail past it (both tried, neither kept).
  mount -o remount,size=5000k "$OUT/full"
  expect_exit 0 "an odd-shaped dump where its values fit, 2 ranks" -- timeout 120 "${MPIRUN[@]}" -np 2 "$LONGCTX" train \
    --quiet --model.layers 1 --model.dim 272 --model.heads 4 --model.segment_lengths 32,128 --model.dilation_rates 1,2 \
    --data.seq_len 1024 --train.steps 1 --dump.steps 1 --dump.layers 0 --dump.activations "$OUT/full/odd.h5"
  rm -f "$OUT/full/odd.h5"
  mount -o remount,size=1m "$OUT/full"
  # Room for one checkpoint and most of a second, 2 ranks, the default --comm-timeout (600 s): a write that
  # failed on one rank left the ranks in different collectives inside HDF5, and the job waited the whole
  # timeout. The checkpoint's bytes are reserved before it is written: the run stops at once, naming them.
  mount -o remount,size=492k "$OUT/full"
  start=$(date +%s)
  expect_exit 1 "a second checkpoint without room, 2 ranks" -- timeout 120 "${MPIRUN[@]}" -np 2 "$LONGCTX" train \
    "${SMALL[@]}" --train.steps 4 --checkpoint.every 1 --checkpoint.keep 0 --checkpoint.dir "$OUT/full/c"
  expect_in "$OUT/stderr" "cannot reserve [0-9]+ bytes for the checkpoint .*full/c/step_00000002.h5.tmp \(the size of .*step_00000001.h5 and 1/16 more\): No space left on device" \
    "says the checkpoint's bytes could not be reserved"
  [ $(( $(date +%s) - start )) -lt 60 ] && [ "$(cat "$OUT/full/c/latest")" = step_00000001.h5 ] && ! ls "$OUT/full/c"/*.tmp >/dev/null 2>&1 &&
    pass "... at once; step 1 stays latest, no .tmp left" || fail "after $(( $(date +%s) - start )) s: $(ls "$OUT/full/c" | tr '\n' ' ')"
  rm -rf "$OUT/full/c"
  mount -o remount,size=1m "$OUT/full"
  # checkpoint.keep=4 on a disk that holds 4 of them (246 KB each): the oldest goes before the save
  # instead of after, so the run completes. Before: exit 1 at the fifth save.
  expect_exit 0 "keep=4 on a disk for 4 checkpoints" -- "$LONGCTX" train "${SMALL[@]}" --train.steps 10 \
    --checkpoint.every 1 --checkpoint.keep 4 --checkpoint.dir "$OUT/full/c"
  expect_in "$OUT/stderr" "nearly full: deleted .*step_00000006.h5 before writing step 10" "says what it deleted early"
  [ "$(ls "$OUT/full/c" | tr '\n' ' ')" = "latest step_00000007.h5 step_00000008.h5 step_00000009.h5 step_00000010.h5 " ] \
    && pass "the newest 4 are kept" || fail "kept: $(ls "$OUT/full/c" | tr '\n' ' ')"
  rm -rf "$OUT/full/c"
  dd if=/dev/zero of="$OUT/full/filler" bs=4096 count=255 status=none 2>/dev/null
  expect_exit 1 "log.jsonl fills the disk" -- "$LONGCTX" train "${SMALL[@]}" --train.steps 40 --log.jsonl "$OUT/full/log.jsonl"
  expect_in "$OUT/stderr" "log.jsonl=.*write failed" "says the log write failed"
  # checkpoint.dir on the full disk, log.jsonl elsewhere: the note of where this start's log lines begin
  # (.longctx-log-start) cannot be written, which is said (before: nothing, and a restart kept the lines).
  rm -f "$OUT/full/log.jsonl" && mkdir "$OUT/full/c" && dd if=/dev/zero of="$OUT/full/filler2" bs=4096 count=1 status=none 2>/dev/null
  expect_exit 1 "no room for the log note or a checkpoint" -- "$LONGCTX" train "${SMALL[@]}" --train.steps 2 \
    --checkpoint.dir "$OUT/full/c" --log.jsonl "$OUT/note.jsonl"
  expect_in "$OUT/stderr" "log.jsonl: cannot write .*full/c/.longctx-log-start \(No space left on device\): if this run stops before its first checkpoint, a restart" \
    "says the note cannot be written"
  rm -rf "$OUT/full/c" "$OUT/full/filler2" "$OUT/full/filler"
  # Inodes for two checkpoints, not for `latest.tmp` after the second (the reserved bytes leave room for it):
  # the error says that step 2 is complete and which one a restart resumes from (before: only "cannot
  # write .../latest.tmp").
  umount "$OUT/full" && mount -t tmpfs -o size=2m,nr_inodes=6 tmpfs "$OUT/full"
  expect_exit 1 "no inode for latest" -- "$LONGCTX" train "${SMALL[@]}" --train.steps 5 --checkpoint.every 1 \
    --checkpoint.keep 0 --checkpoint.dir "$OUT/full/c"
  expect_in "$OUT/stderr" "cannot (create|write) .*full/c/latest.tmp: No space left on device; .*full/c/step_00000002.h5 is written and complete, and a restart resumes from .*full/c/step_00000001.h5 \(to resume from step_00000002.h5: echo step_00000002.h5 > '.*full/c/latest'\)" \
    "says step 2 is complete and a restart resumes from step 1"
  # Inodes for the first checkpoint, not for its `latest.tmp`: the note of where this start's log lines begin
  # (.longctx-log-start) outlives the run, and the resume that follows removes it (before: it stayed for good).
  umount "$OUT/full" && mount -t tmpfs -o size=2m,nr_inodes=5 tmpfs "$OUT/full"
  expect_exit 1 "no inode for the first latest" -- "$LONGCTX" train "${SMALL[@]}" --train.steps 2 --checkpoint.every 1 \
    --checkpoint.dir "$OUT/full/c" --log.jsonl "$OUT/note5.jsonl"
  [ -e "$OUT/full/c/.longctx-log-start" ] && [ -e "$OUT/full/c/step_00000001.h5" ] && [ ! -e "$OUT/full/c/latest" ] &&
    pass "... step 1 written, no latest, the note left" || fail "left: $(ls -A "$OUT/full/c" | tr '\n' ' ')"
  mount -o remount,nr_inodes=100 "$OUT/full"
  expect_exit 0 "resumed from step 1" -- "$LONGCTX" train "${SMALL[@]}" --train.steps 2 --checkpoint.every 1 \
    --checkpoint.dir "$OUT/full/c" --log.jsonl "$OUT/note5.jsonl"
  [ ! -e "$OUT/full/c/.longctx-log-start" ] && [ "$(grep -c '"step"' "$OUT/note5.jsonl")" = 2 ] &&
    pass "... the note is gone, the log has steps 1 and 2" || fail "left: $(ls -A "$OUT/full/c" | tr '\n' ' '); $(cat "$OUT/note5.jsonl")"
  umount "$OUT/full"
else
  echo "SKIP full-disk checks (need root and tmpfs)"
fi

# ---- a signal that arrives before the first step (here: pending from the start, blocked by the parent)
# is acted on at step 1: checkpoint, 75. Before, it stayed blocked and the run went on to the end.
/usr/bin/python3 - "$LONGCTX" "${LONG[@]}" --checkpoint.dir "$OUT/sig4" --log.every 3 --log.jsonl "$OUT/sig4.jsonl" \
  >"$OUT/sig4.out" 2>"$OUT/sig4.err" <<'PY'
import os, signal, sys
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
os.kill(os.getpid(), signal.SIGTERM)  # pending across exec
os.execv(sys.argv[1], [sys.argv[1], "train"] + sys.argv[2:])
PY
code=$?
[ "$code" -eq 75 ] && [ "$(cat "$OUT/sig4/latest" 2>/dev/null)" = step_00000001.h5 ] &&
  pass "a signal pending at start -> step 1 checkpointed, exit 75" || { fail "pending signal gave exit $code"; tail -3 "$OUT/sig4.err"; }
[ ! -s "$OUT/sig4.jsonl" ] && pass "the stop step, off the log.every grid, has no log.jsonl line" ||
  { fail "log.jsonl got an off-grid line for the stop step"; cat "$OUT/sig4.jsonl"; }
# The same signal at the LAST step stops it there too: checkpointed with its evaluation pending, exit 75.
# (Before, it evaluated first and checkpointed after: a kill at the end of a scheduler's grace time lost the
# last steps.) The resumed run evaluates it, logs it, saves the checkpoint again without it and exits 0.
# (1 evaluation sequence: a run that began the evaluation would complete it before it heard the stop.)
ONE_STEP=(--quiet --model.mlp_hidden 64 --model.dilation_rates 1,2,4 --data.key_digits 3 --train.warmup 2 --train.lr 3e-3
          --model.heads 4 --model.dim 32 --train.steps 1 --data.seq_len 1024 --model.segment_lengths 32,128,1024
          --eval.sequences 1)
# sig_at_start NAME -- train options: runs train with SIGUSR1 pending from the start (acted on in step 1).
sig_at_start() {
  local name=$1; shift 2
  /usr/bin/python3 - "$LONGCTX" "$@" >"$OUT/stdout" 2>"$OUT/stderr" <<'PY'
import os, signal, sys
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
os.kill(os.getpid(), signal.SIGUSR1)
os.execv(sys.argv[1], [sys.argv[1], "train"] + sys.argv[2:])
PY
}
sig_at_start "sig6" -- "${ONE_STEP[@]}" --checkpoint.dir "$OUT/sig6" --log.jsonl "$OUT/sig6.jsonl"
code=$?
[ "$code" -eq 75 ] && [ ! -s "$OUT/sig6.jsonl" ] && [ "$(cat "$OUT/sig6/latest" 2>/dev/null)" = step_00000001.h5 ] &&
  pass "a signal at the last step: checkpointed with its evaluation pending, exit 75" ||
  { fail "signal at the last step gave exit $code"; tail -3 "$OUT/stderr"; cat "$OUT/sig6.jsonl"; }
expect_exit 0 "its resume evaluates the last step" -- "$LONGCTX" train "${ONE_STEP[@]}" --checkpoint.dir "$OUT/sig6" --log.jsonl "$OUT/sig6.jsonl"
[ "$(grep -c . "$OUT/sig6.jsonl")" -eq 1 ] && grep -q '"step": 1,.*"eval_loss"' "$OUT/sig6.jsonl" && pass "the last step's line, with its evaluation" ||
  { fail "log.jsonl after the resume at the end"; cat "$OUT/sig6.jsonl"; }
# ... and saves it again without the pending evaluation: a later run of the command only evaluates (before,
# each one evaluated it as pending again and trimmed its line from log.jsonl first).
/usr/bin/python3 -c "import h5py, sys; sys.exit('eval_pending' in h5py.File(sys.argv[1], 'r').attrs)" "$OUT/sig6/step_00000001.h5" &&
  pass "the finished run's checkpoint holds no pending evaluation" || fail "the finished run's checkpoint still holds its evaluation pending"
expect_exit 0 "a later run of the finished command" -- "$LONGCTX" train "${ONE_STEP[@]}" --checkpoint.dir "$OUT/sig6" --log.jsonl "$OUT/sig6.jsonl"
grep -q "evaluating step 1 first" "$OUT/stderr" && fail "it evaluated step 1 as pending again" || pass "it evaluates step 1 as a finished run"
[ "$(grep -c . "$OUT/sig6.jsonl")" -eq 1 ] && pass "log.jsonl keeps its one line" || { fail "log.jsonl after a later run"; cat "$OUT/sig6.jsonl"; }
# The checkpoint saved again keeps the length its step trained at (a curriculum stage's, 512), not the
# next stage's (1024).
sig_at_start "sig7" -- "${ONE_STEP[@]}" --data.short_seq_len 512 --data.short_steps 1 --checkpoint.dir "$OUT/sig7"
expect_exit 0 "resume a pending last step trained at a curriculum's 512" -- "$LONGCTX" train "${ONE_STEP[@]}" \
  --data.short_seq_len 512 --data.short_steps 1 --checkpoint.dir "$OUT/sig7"
/usr/bin/python3 -c "import h5py, sys; a = h5py.File(sys.argv[1], 'r').attrs; sys.exit(0 if int(a['seq_len']) == 512 and 'eval_pending' not in a else 1)" \
  "$OUT/sig7/step_00000001.h5" && pass "the checkpoint saved again says seq_len 512" || fail "the checkpoint saved again at the end lost its seq_len"

# ---- a fresh run (no checkpoint to resume) appends to an existing log.jsonl, and says so ------------------
expect_exit 0 "a fresh run into a log.jsonl with lines" -- "$LONGCTX" train "${ONE_STEP[@]}" --log.jsonl "$OUT/sig6.jsonl"
expect_in "$OUT/stderr" "log.jsonl=.*sig6.jsonl already holds 1 line\(s\) of an earlier run; this run starts at step 1 and appends" "warns it appends"

# ---- a signal during an evaluation stops it there: that step is checkpointed with its evaluation pending,
# and the resumed run evaluates it first and writes its log.jsonl line. Before, the evaluation (eval.sequences
# forward passes at data.seq_len) ran to its end and one more step was trained before the checkpoint, past
# what a scheduler's grace time may allow. LONGCTX_FAULT_SIGNAL_AT=eval:S raises SIGUSR1 on rank 0 after the
# first sequence of step S's evaluation.
EVAL=(--quiet --model.mlp_hidden 64 --model.dilation_rates 1,2,4 --data.key_digits 3 --train.warmup 2 --train.lr 3e-3
      --model.heads 4 --model.dim 32 --data.seq_len 1024 --model.segment_lengths 32,128,1024 --train.steps 4
      --eval.every 2)
EV20=("${EVAL[@]}" --eval.sequences 20)
# A log.jsonl without its timings (they differ from run to run); steps, losses and evaluations stay.
untimed() { sed -E 's/"tokens_per_s": [^,]*, "seconds": [^,]*, //; s/"mfu": [^,]*, //; s/, "run": "[0-9a-f]*"//' "$1"; }
expect_exit 0 "uninterrupted run evaluating every 2 steps" -- "$LONGCTX" train "${EV20[@]}" --log.jsonl "$OUT/ev0.jsonl"
expect_exit 75 "a signal after sequence 1 of step 2's evaluation" -- env LONGCTX_FAULT_SIGNAL_AT=eval:2 \
  "$LONGCTX" train "${EV20[@]}" --checkpoint.dir "$OUT/ev" --log.jsonl "$OUT/ev.jsonl" --log.summary "$OUT/ev.summary.json"
# log.summary: how the run ended, for a script (train.sbatch requeues only a run whose checkpoint_advanced).
expect_in "$OUT/ev.summary.json" '^\{"format": "longctx-train-summary", "format_version": 1, "started": "20[0-9]{2}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z", "outcome": "stopped", "exit": 75, "signal": "SIGUSR1", "error": null, "first_step": 0, "step": 2, "steps_trained": 2, "train_steps": 4, "checkpoint": ".*/ev/step_00000002.h5", "checkpoint_step": 2, "checkpoint_eval_pending": true, "checkpoint_advanced": true, "seconds": [0-9]+\.[0-9]{3}, "world_size": 1, "run_id": "[0-9a-f]+"\}$' \
  "log.summary of a stop: its fields"
[ "$(cat "$OUT/ev/latest" 2>/dev/null)" = step_00000002.h5 ] && [ "$(ls "$OUT/ev" | grep -c '^step_')" -eq 1 ] &&
  grep -q "the evaluation of step 2 is left undone by the stop (after 1 of 20 sequences): the checkpoint keeps it pending" "$OUT/stderr" &&
  pass "stopped there: step 2 checkpointed, its evaluation pending" ||
  { fail "a signal during an evaluation: latest $(cat "$OUT/ev/latest" 2>/dev/null)"; tail -3 "$OUT/stderr"; }
/usr/bin/python3 -c "
import h5py, sys
a = h5py.File(sys.argv[1], 'r').attrs
line = a['eval_pending_log']
line = line.decode() if isinstance(line, bytes) else line
sys.exit(0 if int(a['eval_pending']) == 1 and line.startswith('{\"step\": 2, \"loss\": ') and 'eval' not in line else 1)" \
  "$OUT/ev/step_00000002.h5" && pass "the checkpoint holds the pending evaluation and step 2's log.jsonl fields" ||
  fail "no pending evaluation in the stop's checkpoint"
[ "$(grep -c . "$OUT/ev.jsonl")" -eq 1 ] && pass "step 2's line waits for its evaluation" || { fail "log.jsonl after the stop"; cat "$OUT/ev.jsonl"; }
expect_exit 0 "ckpt verify accepts a checkpoint with a pending evaluation" -- "$LONGCTX" ckpt verify "$OUT/ev/step_00000002.h5"
expect_exit 0 "ckpt inspect of it" -- "$LONGCTX" ckpt inspect "$OUT/ev/step_00000002.h5"
expect_in "$OUT/stdout" "state: step 2, .*, its evaluation pending \(a stop interrupted it; train evaluates it first\)" "inspect says the evaluation is pending"
expect_exit 0 "ckpt inspect --json of it" -- "$LONGCTX" ckpt inspect "$OUT/ev/step_00000002.h5" --json --quiet
/usr/bin/python3 -c 'import json, sys; s = json.load(sys.stdin)["train_state"]; sys.exit(0 if s["eval_pending"] is True and s["step"] == 2 else 1)' \
  <"$OUT/stdout" && pass "... and its train_state says so" || fail "train_state: $(head -c 600 "$OUT/stdout")"
cp -r "$OUT/ev" "$OUT/ev-stopped"
# A signal during that evaluation, now the resumed run's first work: exit 75 again, the checkpoint unchanged.
expect_exit 75 "a signal during the pending evaluation" -- env LONGCTX_FAULT_SIGNAL_AT=eval:2 \
  "$LONGCTX" train "${EV20[@]}" --checkpoint.dir "$OUT/ev" --log.jsonl "$OUT/ev.jsonl" --log.summary "$OUT/ev.summary.json"
expect_in "$OUT/ev.summary.json" '"outcome": "stopped", "exit": 75, .*"first_step": 2, "step": 2, "steps_trained": 0, .*"checkpoint_step": 2, "checkpoint_eval_pending": true, "checkpoint_advanced": false' \
  "log.summary: this run got checkpoint.dir no further (replaced, one object)"
[ "$(grep -c . "$OUT/ev.summary.json")" -eq 1 ] && pass "log.summary holds one line" || fail "log.summary: $(cat "$OUT/ev.summary.json")"
[ "$(ls "$OUT/ev" | grep -c '^step_')" -eq 1 ] && cmp -s "$OUT/ev/step_00000002.h5" "$OUT/ev-stopped/step_00000002.h5" &&
  grep -q "stopped on SIGUSR1 during the pending evaluation of step 2, which the checkpoint still holds (exit 75: a requeued job, or any later run with this checkpoint.dir, resumes from it)" "$OUT/stderr" &&
  pass "... leaves the checkpoint as it was" || { fail "a signal during the pending evaluation"; ls "$OUT/ev"; tail -3 "$OUT/stderr"; }
expect_exit 0 "resume: step 2 evaluated first, then steps 3-4" -- "$LONGCTX" train "${EV20[@]}" --checkpoint.dir "$OUT/ev" \
  --log.jsonl "$OUT/ev.jsonl" --log.summary "$OUT/ev.summary.json"
expect_in "$OUT/ev.summary.json" '"outcome": "done", "exit": 0, "signal": null, "error": null, "first_step": 2, "step": 4, "steps_trained": 2, .*"checkpoint_step": 4, "checkpoint_eval_pending": false, "checkpoint_advanced": true' \
  "log.summary of the resumed run that finished"
expect_in "$OUT/stdout" "^eval step 2  eval_loss" "the pending evaluation is printed"
# A refusal after the start (train.steps below latest's step 4) writes no log.summary: exit 2 writes
# nothing (before: one said "failed", exit 2, replacing the finished run's).
cp "$OUT/ev.summary.json" "$OUT/ev.summary.done"
EV3=("${EV20[@]}")
for i in "${!EV3[@]}"; do [ "${EV3[$i]}" = --train.steps ] && EV3[i + 1]=3; done
expect_exit 2 "train.steps 3 below latest's step 4" -- "$LONGCTX" train "${EV3[@]}" --checkpoint.dir "$OUT/ev" \
  --log.summary "$OUT/ev.summary.json"
cmp -s "$OUT/ev.summary.json" "$OUT/ev.summary.done" && pass "... log.summary left as it was" ||
  fail "log.summary: $(cat "$OUT/ev.summary.json")"
# ... given by the environment, the error says so, as the config phase's do (before: not, found by the run).
EV_NO_STEPS=("${EV20[@]}")
for i in "${!EV_NO_STEPS[@]}"; do [ "${EV_NO_STEPS[$i]:-}" = --train.steps ] && unset 'EV_NO_STEPS[i]' 'EV_NO_STEPS[i + 1]'; done
expect_exit 2 "LONGCTX_TRAIN_STEPS=3 below latest's step 4" -- env LONGCTX_TRAIN_STEPS=3 "$LONGCTX" train \
  "${EV_NO_STEPS[@]}" --checkpoint.dir "$OUT/ev" --log.summary "$OUT/ev.summary.json"
expect_in "$OUT/stderr" "train.steps=3: checkpoint.dir's latest.*\(from environment variable LONGCTX_TRAIN_STEPS\)$" "... says it came from LONGCTX_TRAIN_STEPS"
# One after the work began ends a run that trained, and its log.summary says so: here step 4's checkpoint
# .tmp, which another process made and holds once the run had started (stopped before its work).
LONGCTX_FAULT_STOP_BEFORE_WORK=1 "$LONGCTX" train "${SMALL[@]}" --train.steps 4 --checkpoint.dir "$OUT/heldck" \
  --checkpoint.every 2 --log.summary "$OUT/heldck.summary.json" >"$OUT/heldck.out" 2>"$OUT/heldck.err" &
pid=$!
for _ in $(seq 400); do [ "$(cut -d' ' -f3 "/proc/$pid/stat" 2>/dev/null)" = T ] && break; sleep 0.05; done
mkdir -p "$OUT/heldck"
/usr/bin/python3 -c "import fcntl, sys, time; f = open(sys.argv[1] + '/step_00000004.h5.tmp', 'w')
fcntl.lockf(f, fcntl.LOCK_EX); open(sys.argv[1] + '.ready', 'w').close(); time.sleep(60)" "$OUT/heldck" &
holder=$!
for _ in $(seq 100); do [ -e "$OUT/heldck.ready" ] && break; sleep 0.1; done
kill -CONT $pid
wait $pid; code=$?
kill $holder
[ "$code" -eq 2 ] && pass "a checkpoint's .tmp held by another process after the start: exit 2" ||
  { fail "a held checkpoint .tmp after the start: exit $code"; tail -3 "$OUT/heldck.err"; }
expect_in "$OUT/heldck.summary.json" '"outcome": "failed", "exit": 2, "signal": null, "error": "temporary file .*step_00000004.h5.tmp. is being written by another running process.*", "first_step": 0, "step": 4, "steps_trained": 4, .*"checkpoint_step": 2,' \
  "... log.summary: failed, exit 2, 4 steps trained, the checkpoint at 2"
if [ "$(grep -c '"eval_loss"' "$OUT/ev0.jsonl")" -eq 2 ] && diff <(untimed "$OUT/ev0.jsonl") <(untimed "$OUT/ev.jsonl") >/dev/null; then
  pass "interrupted in an evaluation + resumed: log.jsonl = the uninterrupted run's (losses and evaluations)"
else fail "log.jsonl differs after a stop in an evaluation"; diff <(untimed "$OUT/ev0.jsonl") <(untimed "$OUT/ev.jsonl") | head; fi
# Killed after writing step 2's line, before its next checkpoint: a resume from that checkpoint again
# writes the line once (an earlier resume's is dropped).
rm -rf "$OUT/ev" && cp -r "$OUT/ev-stopped" "$OUT/ev"
expect_exit 0 "resume again from the pending checkpoint" -- "$LONGCTX" train "${EV20[@]}" --checkpoint.dir "$OUT/ev" \
  --log.jsonl "$OUT/ev.jsonl"
diff <(untimed "$OUT/ev0.jsonl") <(untimed "$OUT/ev.jsonl") >/dev/null && pass "the line of step 2 is there once" ||
  { fail "log.jsonl after a second resume of the pending checkpoint"; cat "$OUT/ev.jsonl"; }
# A pending line that is not step 2's is refused as damage (it goes into log.jsonl as written).
rm -rf "$OUT/ev" && cp -r "$OUT/ev-stopped" "$OUT/ev"
/usr/bin/python3 -c "import h5py, sys; h5py.File(sys.argv[1], 'r+').attrs['eval_pending_log'] = '{\"step\": 7, \"loss\": 1'" \
  "$OUT/ev/step_00000002.h5"
expect_exit 3 "a checkpoint whose pending log line is of another step" -- "$LONGCTX" train "${EV20[@]}" --checkpoint.dir "$OUT/ev"
expect_in "$OUT/stderr" "attribute eval_pending_log is not the log.jsonl line of step 2: damaged" "names the attribute"
# ... and so does verify, which a refused resume points to (before: "ok").
expect_exit 3 "verify it" -- "$LONGCTX" ckpt verify "$OUT/ev" --quiet
expect_in "$OUT/stdout" "step_00000002.h5: attribute eval_pending_log is not the log.jsonl line of step 2" "verify names it"
# Without checkpoint.dir nothing is pending: 128 + the signal, and step 2's line without an evaluation.
expect_exit $((128 + $(kill -l USR1))) "without checkpoint.dir: a signal in step 2's evaluation" -- env LONGCTX_FAULT_SIGNAL_AT=eval:2 \
  "$LONGCTX" train "${EV20[@]}" --log.jsonl "$OUT/ev3.jsonl" --log.summary "$OUT/ev3.summary.json"
expect_in "$OUT/ev3.summary.json" "\"outcome\": \"stopped_unsaved\", \"exit\": $((128 + $(kill -l USR1))), \"signal\": \"SIGUSR1\", .*\"checkpoint\": null, \"checkpoint_step\": null, .*\"checkpoint_advanced\": false" \
  "log.summary of a stop without checkpoint.dir"
grep -q '"step": 2,' "$OUT/ev3.jsonl" && ! grep -q eval_loss "$OUT/ev3.jsonl" && pass "... its line without an evaluation" ||
  { fail "log.jsonl of a signal during an evaluation without checkpoint.dir"; cat "$OUT/ev3.jsonl"; }
# A signal asked for after an evaluation's LAST sequence keeps the evaluation (here 1 sequence). In the
# pending evaluation of a resume: its line written, the checkpoint saved again without it, exit 75; the
# next resume goes on from there without evaluating again.
EV1=("${EVAL[@]}" --eval.sequences 1)
expect_exit 0 "uninterrupted, 1 evaluation sequence" -- "$LONGCTX" train "${EV1[@]}" --log.jsonl "$OUT/ew0.jsonl"
/usr/bin/python3 - "$LONGCTX" "${EV1[@]}" --checkpoint.dir "$OUT/ew" --log.jsonl "$OUT/ew.jsonl" >"$OUT/ew.out" 2>"$OUT/ew.err" <<'PY'
import os, signal, sys
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
os.kill(os.getpid(), signal.SIGUSR1)  # pending across exec: acted on in step 1
os.execv(sys.argv[1], [sys.argv[1], "train"] + sys.argv[2:])
PY
code=$?
[ "$code" -eq 75 ] && [ "$(cat "$OUT/ew/latest" 2>/dev/null)" = step_00000001.h5 ] && pass "a signal in step 1 -> exit 75 at step 1" ||
  { fail "a signal pending at start gave exit $code"; tail -3 "$OUT/ew.err"; }
expect_exit 0 "go on to step 4, a signal after its evaluation's one sequence" -- env LONGCTX_FAULT_SIGNAL_AT=eval:4 \
  "$LONGCTX" train "${EV1[@]}" --checkpoint.dir "$OUT/ew" --log.jsonl "$OUT/ew.jsonl"
expect_in "$OUT/stderr" "stop signal after the last step's evaluation: the run is done" "at the last step a complete evaluation ends the run (exit 0)"
/usr/bin/python3 -c "import h5py, sys; sys.exit('eval_pending' in h5py.File(sys.argv[1], 'r').attrs)" "$OUT/ew/step_00000004.h5" &&
  pass "... its checkpoint holds nothing pending" || fail "the done run's checkpoint holds a pending evaluation"
rm -rf "$OUT/ew2" "$OUT/ew2.jsonl"
expect_exit 75 "stopped in step 2's evaluation" -- env LONGCTX_FAULT_SIGNAL_AT=eval:2 \
  "$LONGCTX" train "${EV20[@]}" --checkpoint.dir "$OUT/ew2" --log.jsonl "$OUT/ew2.jsonl"
expect_exit 75 "its pending evaluation with 1 sequence, a signal after it" -- env LONGCTX_FAULT_SIGNAL_AT=eval:2 \
  "$LONGCTX" train "${EV1[@]}" --checkpoint.dir "$OUT/ew2" --log.jsonl "$OUT/ew2.jsonl" --log.summary "$OUT/ew2.summary.json"
expect_in "$OUT/ew2.summary.json" '"steps_trained": 0, .*"checkpoint_step": 2, "checkpoint_eval_pending": false, "checkpoint_advanced": true' \
  "log.summary: no step trained, but the pending evaluation done counts as getting further"
grep -q "stopped on SIGUSR1 after the pending evaluation of step 2 (exit 75: " "$OUT/stderr" &&
  /usr/bin/python3 -c "import h5py, sys; sys.exit('eval_pending' in h5py.File(sys.argv[1], 'r').attrs)" "$OUT/ew2/step_00000002.h5" &&
  grep -q '"step": 2,.*"eval_loss"' "$OUT/ew2.jsonl" && pass "... logs step 2, saves the checkpoint again without it" ||
  { fail "a stop after a pending evaluation's last sequence"; tail -3 "$OUT/stderr"; cat "$OUT/ew2.jsonl"; }
expect_exit 0 "the next resume" -- "$LONGCTX" train "${EV1[@]}" --checkpoint.dir "$OUT/ew2" --log.jsonl "$OUT/ew2.jsonl"
grep -q "evaluating step 2 first" "$OUT/stderr" && fail "it evaluated step 2 again" || pass "... goes on without evaluating step 2 again"
[ "$(grep -c '"step": 2,' "$OUT/ew2.jsonl")" -eq 1 ] && [ "$(grep -c . "$OUT/ew2.jsonl")" -eq 4 ] && pass "... 4 lines, step 2's once" ||
  { fail "log.jsonl after the stop after a pending evaluation"; cat "$OUT/ew2.jsonl"; }

# ---- a signal during a checkpoint's or a dump's write stops the run at that step (before: one more step
# was trained and checkpointed). LONGCTX_FAULT_SIGNAL_AT raises it on rank 0 as the write ends.
WRITE=(--quiet --model.mlp_hidden 64 --model.dilation_rates 1,2,4 --data.key_digits 3 --train.warmup 2 --train.lr 3e-3
       --model.heads 4 --model.dim 32 --data.seq_len 1024 --model.segment_lengths 32,128,1024 --train.steps 6
       --eval.sequences 2)
expect_exit 0 "uninterrupted 6 steps" -- "$LONGCTX" train "${WRITE[@]}" --log.jsonl "$OUT/w0.jsonl"
LONGCTX_FAULT_SIGNAL_AT=checkpoint:2 "$LONGCTX" train "${WRITE[@]}" --checkpoint.dir "$OUT/wc" --checkpoint.every 2 \
  --log.jsonl "$OUT/wc.jsonl" >"$OUT/wc.out" 2>"$OUT/wc.err"
code=$?
[ "$code" -eq 75 ] && [ "$(cat "$OUT/wc/latest" 2>/dev/null)" = step_00000002.h5 ] && [ "$(ls "$OUT/wc" | grep -c '^step_')" -eq 1 ] &&
  grep -q "stopped on SIGUSR1 at step 2 (exit 75: " "$OUT/wc.err" &&
  pass "a signal during step 2's checkpoint -> exit 75 at step 2, no second checkpoint" ||
  { fail "a signal during a checkpoint gave exit $code"; ls "$OUT/wc"; tail -3 "$OUT/wc.err"; }
expect_exit 0 "resume it" -- "$LONGCTX" train "${WRITE[@]}" --checkpoint.dir "$OUT/wc" --checkpoint.every 2 --log.jsonl "$OUT/wc.jsonl"
diff <(losses "$OUT/w0.jsonl") <(losses "$OUT/wc.jsonl") >/dev/null && [ "$(losses "$OUT/wc.jsonl" | wc -l)" -eq 6 ] &&
  pass "stopped in a checkpoint + resumed = uninterrupted" || { fail "losses differ"; diff <(losses "$OUT/w0.jsonl") <(losses "$OUT/wc.jsonl") | head; }
# A run resumed at train.steps = its checkpoint's step, which was off the log.every grid of the run that
# trained it: that step's line, with its evaluation, is written from the fields the checkpoint kept
# (step_log), once (before: the evaluation was printed, and log.jsonl ended at step 4).
GRID_RUN=(--quiet --model.mlp_hidden 64 --model.dilation_rates 1,2,4 --data.key_digits 3 --train.warmup 2 --train.lr 3e-3
          --model.heads 4 --model.dim 32 --data.seq_len 256 --model.segment_lengths 32,128,256 --eval.sequences 2)
GRID=("${GRID_RUN[@]}" --log.every 4 --eval.every 4 --checkpoint.dir "$OUT/wg" --log.jsonl "$OUT/wg.jsonl")
LONGCTX_FAULT_SIGNAL_AT=checkpoint:6 "$LONGCTX" train "${GRID[@]}" --train.steps 12 --checkpoint.every 6 >"$OUT/wg.out" 2>"$OUT/wg.err"
code=$?
[ "$code" -eq 75 ] && ! grep -q '"step": 6,' "$OUT/wg.jsonl" &&
  pass "stopped at step 6, off the log.every grid: no line yet" || { fail "the stop at step 6 gave exit $code"; cat "$OUT/wg.jsonl"; }
# Step 6's loss, as the same 12-step run logs it on a grid of 1.
"$LONGCTX" train "${GRID_RUN[@]}" --eval.every 4 --train.steps 12 --log.jsonl "$OUT/wg_every.jsonl" >/dev/null 2>&1 ||
  fail "the 12-step run logging every step"
for run in "resumed with train.steps 6" "a later run of it"; do
  expect_exit 0 "$run" -- "$LONGCTX" train "${GRID[@]}" --train.steps 6
  /usr/bin/python3 - "$OUT/wg.jsonl" "$OUT/wg_every.jsonl" <<'PY' && pass "... log.jsonl: steps 4 and 6, 6 with its evaluation and the loss it trained to" ||
import json, sys
lines = [json.loads(line) for line in open(sys.argv[1])]
every = {l["step"]: l for l in map(json.loads, open(sys.argv[2]))}
assert [l["step"] for l in lines] == [4, 6], lines
assert "eval_loss" in lines[1] and lines[1]["loss"] == every[6]["loss"], (lines[1], every[6])
PY
    { fail "$run: log.jsonl"; cat "$OUT/wg.jsonl"; }
done
# The same where that step is on the grid, its line written without an evaluation: the line gets one, in its
# place (before: the evaluation was printed only, and log.jsonl's last line lacked it).
ONGRID=("${GRID_RUN[@]}" --log.every 2 --eval.every 12 --checkpoint.dir "$OUT/wn" --log.jsonl "$OUT/wn.jsonl")
LONGCTX_FAULT_SIGNAL_AT=checkpoint:6 "$LONGCTX" train "${ONGRID[@]}" --train.steps 12 --checkpoint.every 6 \
  >"$OUT/wn.out" 2>"$OUT/wn.err"
code=$?
[ "$code" -eq 75 ] && cp "$OUT/wn.jsonl" "$OUT/wn_stopped.jsonl" && grep -q '"step": 6,' "$OUT/wn.jsonl" &&
  ! grep -q eval_loss "$OUT/wn.jsonl" && pass "stopped at step 6, on the log.every grid: its line, no evaluation" ||
  { fail "the stop at step 6 gave exit $code"; cat "$OUT/wn.jsonl"; }
for run in "resumed with train.steps 6" "a later run of it"; do
  expect_exit 0 "$run (on the grid)" -- "$LONGCTX" train "${ONGRID[@]}" --train.steps 6
  /usr/bin/python3 - "$OUT/wn.jsonl" "$OUT/wn_stopped.jsonl" <<'PY' && pass "... log.jsonl: 6 has its evaluation, in place" ||
import json, sys
lines = [json.loads(line) for line in open(sys.argv[1])]
stopped = [json.loads(line) for line in open(sys.argv[2])]
assert [l["step"] for l in lines] == [2, 4, 6], lines
assert lines[:2] == stopped[:2] and "eval_loss" in lines[2] and "eval_loss" not in stopped[2], (lines, stopped)
assert {k: v for k, v in lines[2].items() if not k.startswith("eval_")} == stopped[2], (lines[2], stopped[2])
PY
    { fail "$run: log.jsonl"; cat "$OUT/wn.jsonl"; }
done
# ---- two runs share a log.jsonl: a resume's rewrite keeps the lines the other appends meanwhile (before: those
# appended between its read and its rename were lost; from the race audit). The resume waits 1.5 s between its
# read and its rename (LONGCTX_FAULT_SLOW_LOG_REWRITE_MS) while run B logs every step.
SHARE=("${SMALL[@]}" --log.jsonl "$OUT/shared_race.jsonl")
expect_exit 0 "run A, 4 steps, on a shared log.jsonl" -- "$LONGCTX" train "${SHARE[@]}" --train.steps 4 \
  --checkpoint.dir "$OUT/sa" --checkpoint.every 2
echo step_00000002.h5 >"$OUT/sa/latest"  # rolled back by hand: A's resume drops its lines of steps 3 and 4
"$LONGCTX" train "${SHARE[@]}" --train.seed 9 --train.steps 100000000 >"$OUT/sb.out" 2>&1 &
b=$!
for _ in $(seq 600); do [ "$(grep -c '"step"' "$OUT/shared_race.jsonl")" -ge 10 ] && break; sleep 0.1; done
expect_exit 0 "A resumed while B appends" -- env LONGCTX_FAULT_SLOW_LOG_REWRITE_MS=1500 "$LONGCTX" train "${SHARE[@]}" \
  --train.steps 4 --checkpoint.dir "$OUT/sa"
sleep 0.5
kill "$b"; wait "$b" 2>/dev/null
/usr/bin/python3 - "$OUT/shared_race.jsonl" <<'PY' && pass "... every line of both runs is there, once" ||
import json, sys
lines = [json.loads(line) for line in open(sys.argv[1])]
runs = {}
for l in lines: runs.setdefault(l["run"], []).append(l["step"])
a = lines[0]["run"]
b = [r for r in runs if r != a]
assert sorted(runs[a]) == [1, 2, 3, 4], runs[a]
assert len(b) == 1 and runs[b[0]] == list(range(1, len(runs[b[0]]) + 1)) and len(runs[b[0]]) > 30, runs.get(b[0] if b else a)
PY
  { fail "shared log.jsonl: steps lost"; tail -3 "$OUT/sb.out"; }
# A done run whose log.summary another process is writing at that moment waits for it (up to 10 s), then
# writes its own (before: exit 1, "could not be written ... being written by another running process"). The
# other takes the .tmp once the run has started (stopped before its work), and holds it for 3 s.
LONGCTX_FAULT_STOP_BEFORE_WORK=1 "$LONGCTX" train "${SMALL[@]}" --train.steps 1 --log.summary "$OUT/held_summary.json" \
  >"$OUT/held_summary.out" 2>&1 &
pid=$!
for _ in $(seq 400); do [ "$(cut -d' ' -f3 "/proc/$pid/stat" 2>/dev/null)" = T ] && break; sleep 0.05; done
/usr/bin/python3 -c "import fcntl, sys, time; f = open(sys.argv[1] + '.tmp', 'w')
fcntl.lockf(f, fcntl.LOCK_EX, 1, 1 << 62); open(sys.argv[1] + '.ready', 'w').close(); time.sleep(3)" \
  "$OUT/held_summary.json" &
holder=$!
for _ in $(seq 100); do [ -e "$OUT/held_summary.json.ready" ] && break; sleep 0.1; done
kill -CONT $pid
wait $pid; code=$?
wait $holder
[ "$code" -eq 0 ] && grep -q '"outcome": "done", "exit": 0' "$OUT/held_summary.json" &&
  pass "a done run whose log.summary another process was writing waits, then writes it" ||
  { fail "held log.summary: exit $code"; tail -2 "$OUT/held_summary.out"; }
# At the last step's checkpoint the run is done: exit 0.
LONGCTX_FAULT_SIGNAL_AT=checkpoint:6 "$LONGCTX" train "${WRITE[@]}" --checkpoint.dir "$OUT/wl" --checkpoint.every 2 \
  >"$OUT/wl.out" 2>"$OUT/wl.err"
code=$?
[ "$code" -eq 0 ] && [ "$(cat "$OUT/wl/latest" 2>/dev/null)" = step_00000006.h5 ] && pass "a signal during the last step's checkpoint -> done, exit 0" ||
  { fail "a signal during the last checkpoint gave exit $code"; tail -3 "$OUT/wl.err"; }
# During an activation dump at an evaluated step: stopped there, the evaluation pending, the dump published.
LONGCTX_FAULT_SIGNAL_AT=dump:2 "$LONGCTX" train "${WRITE[@]}" --checkpoint.dir "$OUT/wd" --eval.every 2 \
  --dump.activations "$OUT/wd.h5" --dump.steps 2,4 --dump.layers 0 >"$OUT/wd.out" 2>"$OUT/wd.err"
code=$?
[ "$code" -eq 75 ] && [ "$(cat "$OUT/wd/latest" 2>/dev/null)" = step_00000002.h5 ] &&
  grep -q "the evaluation of step 2 is left undone by the stop (not begun: the stop came before it)" "$OUT/wd.err" &&
  pass "a signal during step 2's dump -> exit 75 at step 2, its evaluation pending" ||
  { fail "a signal during a dump gave exit $code, latest $(cat "$OUT/wd/latest" 2>/dev/null)"; tail -3 "$OUT/wd.err"; }
expect_exit 0 "resume it" -- "$LONGCTX" train "${WRITE[@]}" --checkpoint.dir "$OUT/wd" --eval.every 2 \
  --dump.activations "$OUT/wd.h5" --dump.steps 2,4 --dump.layers 0
/usr/bin/python3 -c "import h5py, sys; f = h5py.File(sys.argv[1], 'r'); sys.exit(0 if sorted(f) == ['step_2', 'step_4'] else 1)" "$OUT/wd.h5" &&
  pass "the dump holds steps 2 and 4" || fail "the dump after a stop in it and a resume"
expect_exit 2 "LONGCTX_FAULT_SIGNAL_AT of another form" -- env LONGCTX_FAULT_SIGNAL_AT=step:2 "$LONGCTX" train "${WRITE[@]}"
expect_in "$OUT/stderr" "expected checkpoint:STEP, dump:STEP or eval:STEP" "says the form"

# ---- a signal while the ranks start up (MPI_Init, options): acted on at step 1, not killing the rank ------
# (what a requeued Slurm job meets when its pre-time-limit signal fires at once). Before, the handlers came
# after MPI_Init and the options, and such a signal ended the job with 138. The signal goes as soon as the
# rank's SigCgt shows the USR1 handler (now set before MPI_Init, so it lands inside it), or after 0.5 s.
"${MPIRUN[@]}" -np 2 "$LONGCTX" train "${LONG[@]}" --checkpoint.dir "$OUT/sig5" >"$OUT/sig5.out" 2>"$OUT/sig5.err" &
pid=$!
rank=
for _ in $(seq 1000); do  # a rank that has exec'd longctx (a forked mpirun child has the same command line)
  rank=$(pgrep -P $pid -f "longctx train" | head -1)
  [ -n "$rank" ] && [ "$(readlink "/proc/$rank/exe" 2>/dev/null)" = "$(readlink -f "$LONGCTX")" ] && break
  sleep 0.005
done
for _ in $(seq 100); do
  mask=$(sed -n 's/^SigCgt:[[:space:]]*//p' "/proc/$rank/status" 2>/dev/null)
  [ -n "$mask" ] && (( 0x$mask & 0x200 )) && break
  sleep 0.002
done
[ -n "$rank" ] && kill -USR1 "$rank"
wait $pid; code=$?
[ "$code" -eq 75 ] && [ "$(cat "$OUT/sig5/latest" 2>/dev/null)" = step_00000001.h5 ] &&
  pass "SIGUSR1 to a rank during start-up -> step 1 checkpointed, exit 75" ||
  { fail "SIGUSR1 during start-up gave exit $code, latest $(cat "$OUT/sig5/latest" 2>/dev/null)"; tail -3 "$OUT/sig5.err"; }

# ---- two runs in one checkpoint.dir: the second is refused (exit 2, naming the first), not left to prune
# and rename the first one's checkpoints (each failed the other, exit 1, at some later commit) ------------
"$LONGCTX" train "${LONG[@]/#40/100000}" --checkpoint.dir "$OUT/shared" --checkpoint.every 1 --checkpoint.keep 2 \
  --log.jsonl "$OUT/shared1.jsonl" >/dev/null 2>"$OUT/shared1.err" &
first=$!
for _ in $(seq 400); do grep -q '"step": 3,' "$OUT/shared1.jsonl" 2>/dev/null && break; sleep 0.05; done
expect_exit 2 "a second run in the same checkpoint.dir" -- "$LONGCTX" train "${LONG[@]}" --checkpoint.dir "$OUT/shared" \
  --log.jsonl "$OUT/shared2.jsonl"
expect_in "$OUT/stderr" "checkpoint.dir=.*shared is in use by a run still going \(pid $first on " "names the run that holds it"
[ ! -e "$OUT/shared2.jsonl" ] && pass "the refused run wrote nothing" || fail "the refused run wrote its log"
kill -0 $first 2>/dev/null && pass "the first run goes on" || fail "the first run ended: $(tail -2 "$OUT/shared1.err")"
kill -KILL $first; wait $first 2>/dev/null
at=$(sed -n 's/^step_0*\([0-9][0-9]*\)\.h5$/\1/p' "$OUT/shared/latest")
expect_exit 0 "after kill -9 the directory is free: resume from step $at" -- "$LONGCTX" train "${LONG[@]/#40/$((at + 1))}" \
  --checkpoint.dir "$OUT/shared"
"$LONGCTX" ckpt verify "$OUT/shared" >/dev/null 2>&1 && pass "its checkpoints verify" || fail "checkpoints in the shared directory do not verify"

# ---- SIGTERM to ONE rank of an mpirun job: every rank finishes the step, they agree, checkpoint, exit 75 --
"${MPIRUN[@]}" -np 2 "$LONGCTX" train "${LONG[@]}" --checkpoint.dir "$OUT/sig2" --log.jsonl "$OUT/g.jsonl" \
  >"$OUT/sig2.out" 2>"$OUT/sig2.err" &
pid=$!
for _ in $(seq 400); do grep -q '"step": 3,' "$OUT/g.jsonl" 2>/dev/null && break; sleep 0.05; done
ranks=($(pgrep -P $pid))
if [ "${#ranks[@]}" -eq 2 ]; then
  kill -TERM "${ranks[1]}"
  wait $pid; code=$?
  [ "$code" -eq 75 ] && pass "SIGTERM to one rank -> mpirun exit 75" || { fail "SIGTERM to one rank gave exit $code"; tail -5 "$OUT/sig2.err"; }
  stopped_at=$(sed -n 's/.*stopped on SIGTERM at step \([0-9]*\) (exit 75.*/\1/p' "$OUT/sig2.err" | head -1)
  [ -n "$stopped_at" ] && [ "$(cat "$OUT/sig2/latest")" = "$(printf 'step_%08d.h5' "$stopped_at")" ] &&
    pass "both ranks checkpointed step $stopped_at together" || fail "no agreed checkpoint after SIGTERM"
else
  fail "expected 2 rank processes under mpirun, found ${#ranks[@]}"; kill $pid; wait $pid
fi
# ... and during an evaluation (the signal on rank 0 only): the ranks agree after the sequence they are at,
# both stop at that step.
expect_exit 75 "2 ranks: a signal on rank 0 during step 2's evaluation" -- env LONGCTX_FAULT_SIGNAL_AT=eval:2 \
  "${MPIRUN[@]}" -np 2 -x LONGCTX_FAULT_SIGNAL_AT "$LONGCTX" train "${EV20[@]}" --checkpoint.dir "$OUT/ev4" --log.jsonl "$OUT/ev4.jsonl"
[ "$(cat "$OUT/ev4/latest" 2>/dev/null)" = step_00000002.h5 ] && pass "... both stop at step 2" || fail "2 ranks stopped in an evaluation: latest $(cat "$OUT/ev4/latest" 2>/dev/null)"
expect_exit 0 "resume it on 2 ranks" -- "${MPIRUN[@]}" -np 2 "$LONGCTX" train "${EV20[@]}" --checkpoint.dir "$OUT/ev4" \
  --log.jsonl "$OUT/ev4.jsonl"
[ "$(grep -c '"eval_loss"' "$OUT/ev4.jsonl")" -eq 2 ] && [ "$(grep -c . "$OUT/ev4.jsonl")" -eq 4 ] &&
  [ "$(losses "$OUT/ev4.jsonl" | cut -d' ' -f1 | tr '\n' ' ')" = "1 2 3 4 " ] &&
  pass "... steps 1-4, 2 evaluations" || { fail "log.jsonl of the 2-rank stop in an evaluation"; cat "$OUT/ev4.jsonl"; }
# ---- a rank stopped during an evaluation: the timeout and the roll call say the others were evaluating ----
# (rank 0 may wait in a collective, or in the causal balance's send of moved rows' results to rank 1)
"${MPIRUN[@]}" -np 2 "$LONGCTX" train "${EVAL[@]}" --eval.sequences 100000 --comm-timeout 3 --log.jsonl "$OUT/ev5.jsonl" \
  >"$OUT/ev5.out" 2>"$OUT/ev5.err" &
pid=$!
# Step 2 takes well under a second here; its evaluation (100000 sequences) lasts until the timeout ends the job.
for _ in $(seq 400); do grep -q '"step": 1,' "$OUT/ev5.jsonl" 2>/dev/null && break; sleep 0.02; done
sleep 4
ranks=($(pgrep -P $pid))
if [ "${#ranks[@]}" -eq 2 ]; then
  kill -STOP "${ranks[1]}"
  for _ in $(seq 600); do kill -0 $pid 2>/dev/null || break; sleep 0.1; done
  kill -CONT "${ranks[1]}" 2>/dev/null; kill -9 $pid "${ranks[@]}" 2>/dev/null
  wait $pid; code=$?
  [ "$code" -ne 0 ] && grep -q "timed out after 3 s on rank 0 of a 2-rank MPI communicator (process rank 0 on [^)]*) while evaluating step 2" "$OUT/ev5.err" &&
    grep -qE "rank 0 waits in ([a-z_]+ #[0-9]+|send to rank [0-9]+ \(tag [0-9]+\)|recv from rank [0-9]+ \(tag [0-9]+\)) on [^;]* while evaluating step 2 \(for " "$OUT/ev5.err" &&
    pass "a rank stopped during an evaluation: exit $code, the message says the others were evaluating step 2" ||
    { fail "a rank stopped during an evaluation: exit $code"; grep -i "timed out" "$OUT/ev5.err" | head -3; }
else
  fail "expected 2 rank processes under mpirun, found ${#ranks[@]}"; kill $pid; wait $pid
fi

finish
