#!/usr/bin/env bash
# Fresh Debian 12 machine -> dependencies (apt), Release build, then the main job:
#   1. longctx info on 2 ranks (who runs where, launcher checks)
#   2. distributed dilated attention: 32K tokens sharded over 2 ranks, forward + exact backward, with
#      the sparse K/V all-gather of the branch that spans both ranks, and a JSON report
#   3. the same input on 1 rank, and a check that both output files agree (sharded equals unsharded)
#   4. the trainer: a short run of jobs/configs/passkey.ini on 2 ranks (passkey retrieval at 2048 tokens,
#      a few minutes), printing the held-out accuracy it reached
# Files go to ${LONGCTX_QUICKSTART_DIR:-$LONGCTX_BUILD/quickstart} (LONGCTX_BUILD: build): quickstart_* (input,
# outputs, report, checkpoints) and the training log quickstart.jsonl; a run replaces those of the last one,
# and no other file there. Step 3's check is jobs/demo/compare_outputs.py.
# Settings (environment): LONGCTX_QUICKSTART_DIR, and LONGCTX_BUILD / LONGCTX_NATIVE as jobs/build.sh takes them.
[ -n "${BASH_VERSION:-}" ] ||  # (under sh: "source: not found", "Bad substitution")
  { echo "quickstart.sh: run it with bash (./jobs/quickstart.sh, or bash jobs/quickstart.sh)" >&2; exit 2; }
for lib in "$(dirname "$0")/lib.sh" "${LONGCTX_ROOT:-/-}/jobs/lib.sh" "${SLURM_SUBMIT_DIR:-/-}/jobs/lib.sh" ""; do
  # sbatch runs a copy of the script from Slurm's spool, where no lib.sh is beside it: then that of
  # $LONGCTX_ROOT, else of the submit directory. Found nowhere, the script stops (before, it went on
  # without lib.sh's settings and error checks, and ended with exit 0 having done nothing).
  [ ! -f "$lib" ] || break
done
[ -n "$lib" ] || { echo "quickstart.sh: jobs/lib.sh is neither beside it nor in \$LONGCTX_ROOT or the submit directory" \
                      "(sbatch runs a copy): submit from the checkout, or set LONGCTX_ROOT to it" >&2; exit 2; }
source "$lib"
longctx_script_args "$0" no_args "$@"
"$LONGCTX_ROOT/jobs/build.sh"
longctx_install "${LONGCTX_DEMO_PACKAGES[@]}"
LONGCTX=$LONGCTX_BUILD/bin/longctx
work="${LONGCTX_QUICKSTART_DIR:-$LONGCTX_BUILD/quickstart}"
mkdir -p "$work"
export OMP_NUM_THREADS=1

"$LONGCTX" --version
echo "[quickstart] 1/4 mpirun -np 2 longctx info"
longctx_mpirun -np 2 "$LONGCTX" info --quiet

echo "[quickstart] 2/4 mpirun -np 2 longctx attend (N=32768, H=8, D=64, w=2048,8192,32768 r=1,2,8, causal)"
/usr/bin/python3 "$LONGCTX_ROOT/jobs/demo/make_qkv.py" "$work/quickstart_qkv.h5" --seq-len 32768 --heads 8
schedule=(--segment-lengths 2048,8192,32768 --dilation-rates 1,2,8 --causal --backward)
longctx_mpirun -np 2 "$LONGCTX" attend --input "$work/quickstart_qkv.h5" --output "$work/quickstart_out_p2.h5" \
  "${schedule[@]}" --report "$work/quickstart_report_p2.json" --quiet
/usr/bin/python3 - "$work/quickstart_report_p2.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
for x in r["per_rank"]:
    print(f"  rank {x['rank']}: forward {x['seconds_fwd']:.2f} s, backward {x['seconds_bwd']:.2f} s, "
          f"received {x['bytes_received'] / 2**20:.2f} MiB in {x['collectives']} collectives, "
          f"{100 * x['comm_hidden_fraction']:.0f}% of communication hidden")
PY

echo "[quickstart] 3/4 the same on 1 rank, then compare the two files"
"$LONGCTX" attend --input "$work/quickstart_qkv.h5" --output "$work/quickstart_out_p1.h5" "${schedule[@]}" --quiet
# Every dataset, shape and value within 1e-3; a NaN fails (before: max() skipped one that was not first).
/usr/bin/python3 "$LONGCTX_ROOT/jobs/demo/compare_outputs.py" "$work/quickstart_out_p1.h5" "$work/quickstart_out_p2.h5"
echo "[quickstart] 4/4 mpirun -np 2 longctx train --config jobs/configs/passkey.ini, shortened to N=2048"
# Its own names (before: passkey_ckpt and passkey.jsonl, those of a user's own `train --config
# jobs/configs/passkey.ini` in that directory, were deleted here, and a qkv.h5 replaced).
rm -rf "$work/quickstart_ckpt" "$work/quickstart.jsonl"
longctx_mpirun -np 2 "$LONGCTX" train --config "$LONGCTX_ROOT/jobs/configs/passkey.ini" --quiet \
  --data.seq_len 2048 --data.short_seq_len 256,1024 --data.short_steps 3000,2000 --train.steps 6000 \
  --eval.every 1000 --log.every 500 --checkpoint.dir "$work/quickstart_ckpt" --log.jsonl "$work/quickstart.jsonl"
/usr/bin/python3 - "$work/quickstart.jsonl" <<'PY'
import json, sys
evals = [r for r in map(json.loads, open(sys.argv[1])) if "eval_accuracy" in r]
last = evals[-1]
print(f"  passkey at N=2048 after {last['step']} steps: eval_accuracy {last['eval_accuracy']:.2f} "
      f"(exact match of the whole key), eval_loss {last['eval_loss']:.3f} per answer digit")
PY
echo "[quickstart] done: outputs in $work"
