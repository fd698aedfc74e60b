#!/usr/bin/env bash
# The GPU checks and figures of the CUDA issue in one run, for a machine with a GPU but without our build
# dependencies (the `device` tool's machine: CUDA, PyTorch, no MPI / HDF5 / Boost, no installs). Prepare
# HERE, then carry the binaries and the packed runtime:
#   LONGCTX_BUILD=build-cuda LONGCTX_NATIVE=OFF ./jobs/build.sh
#   jobs/device/pack_runtime.sh build-cuda .device/runtime && tar czf .device/runtime.tgz -C .device runtime
#   device tool: run(carry=["build-cuda/bin/longctx", "build-cuda/tests/test_attention_cuda",
#                           "build-cuda/tests/test_comm_device", "build-cuda/tests/test_sequence_parallel_cuda",
#                           ".device/runtime.tgz"],
#                     command="bash jobs/device/gpu_check.sh build-cuda", timeout_s=420)
# Steps, most important first, each under its own time limit, all output also in $OUT/gpu_check.log:
#   1. the GPU; 2. CUDA tests (fp32 / bf16 / fp16 vs the reference; staged and NCCL communicators at 1
#   and 2 ranks; the distributed GPU path at 1, 2 and 4 ranks on the one GPU, staged, equal to one GPU); 3. longctx bench attention at the shape (bf16 with each kernel family, fp16) and bench comm
#   (staged at 2 ranks, NCCL at 1); 4. PyTorch baselines (cuBLAS GEMM rate, dilated attention through
#   flash SDPA); 5. the largest N one GPU runs forward + backward; 6. compute-sanitizer memcheck.
# GPU_CHECK_STEPS="2 3" runs only those steps (1 always runs). With 15 device minutes a session and 1-2
# minutes per machine start: first call steps "2 3" (timeout_s 300: correctness and our figures), fix,
# then "3 4 5 6" (timeout_s 540); or everything at once when nothing is expected to fail.
set -uo pipefail
case "${1:-}" in  # --help: the header above; an option is refused before anything runs (exit 2)
  -h | --help) sed -n '2,/^[^#]/{/^#/s/^# \{0,1\}//p}' "$0"; exit 0 ;;
  -*) echo "gpu_check.sh: unknown option '$1' (--help)" >&2; exit 2 ;;
esac
[ $# -le 1 ] || { echo "gpu_check.sh: takes at most one argument, the build directory (got: $*; --help)" >&2; exit 2; }
build=${1:-build-cuda}
out=${OUT:-/tmp/gpu_check}
mkdir -p "$out"
log="$out/gpu_check.log"
# Everything also to the log; at exit, the script waits for tee to write the last lines (the status line)
# before the device tool collects $OUT.
exec 3>&1 4>&2
exec > >(tee -a "$log") 2>&1
tee_pid=$!
flush_log() {
  exec 1>&3 2>&4 3>&- 4>&-
  for _ in $(seq 50); do kill -0 "$tee_pid" 2>/dev/null || break; sleep 0.1; done
}
trap flush_log EXIT
steps=${GPU_CHECK_STEPS:-2 3 4 5 6}
want() { [[ " $steps " == *" $1 "* ]]; }
longctx="$build/bin/longctx"
tests="$build/tests/test_attention_cuda"
shape=(--heads 16 --head-dim 128 --segment-lengths 2048,4096,8192,16384 --dilation-rates 1,2,4,8)
status=0
step() { echo; echo "=== $* ($(date +%T))"; }

step "1. GPU"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader || true
if [ -f .device/runtime.tgz ]; then
  tar xzf .device/runtime.tgz -C /tmp && source /tmp/runtime/env.sh
else
  echo "gpu_check: .device/runtime.tgz not carried; longctx will not find MPI / HDF5 / Boost"
fi
# NCCL from PyTorch's wheel when the system has none.
nccl_lib=$(python3 -c "import nvidia.nccl, os; print(os.path.join(list(nvidia.nccl.__path__)[0], 'lib'))" 2>/dev/null || true)
[ -n "$nccl_lib" ] && export LD_LIBRARY_PATH="$nccl_lib:${LD_LIBRARY_PATH:-}"
"$longctx" --version || { echo "gpu_check: longctx does not start here"; status=1; }

if want 2; then
  step "2. CUDA tests"
  timeout 300 "$tests" --gtest_brief=0 || status=1
  for np in 1 2; do
    timeout 120 mpirun --oversubscribe -np $np "$build/tests/test_comm_device" --gtest_brief=1 || status=1
  done
  for np in 1 2 4; do
    timeout 120 mpirun --oversubscribe -np $np "$build/tests/test_sequence_parallel_cuda" --gtest_brief=1 || status=1
  done
fi

if want 3; then
  step "3. longctx bench attention (issue 7's shape)"
  # bf16 with the kernels the GPU gets (wgmma on H100 / H200), then with the mma.sync ones to compare; fp16;
  # the branches fused into one launch (LONGCTX_FLASH_FUSE=on) against auto (one launch per branch at
  # this shape), and both at N = 32K (a shard of a multi-GPU run, where branches are a few waves each).
  for run in "bf16 auto auto 1M" "bf16 mma auto 1M" "fp16 auto auto 1M" "bf16 auto on 1M" \
             "bf16 auto off 32K" "bf16 auto on 32K"; do
    set -- $run
    LONGCTX_FLASH_FORWARD=$2 LONGCTX_FLASH_BACKWARD=$2 LONGCTX_FLASH_FUSE=$3 timeout 180 "$longctx" bench attention \
      --device cuda --dtype "$1" "${shape[@]}" --seq-len "$4" --backward --iters 5 --json --quiet \
      | tee -a "$out/bench.jsonl" || status=1
  done
  timeout 120 mpirun --oversubscribe -np 2 "$longctx" bench comm --comm staged --bytes 256M --json --quiet | tee -a "$out/bench.jsonl" || status=1
  timeout 120 "$longctx" bench comm --comm nccl --bytes 256M --json --quiet | tee -a "$out/bench.jsonl" || status=1
  # train with attention on the GPU: 1 rank, then 2 ranks sharing it through the staged path (passkey.ini
  # at N = 8192, 30 steps at the curriculum's first length, losses in the log).
  for np in 1 2; do
    timeout 180 mpirun --oversubscribe -np $np "$longctx" train --config jobs/configs/passkey.ini --device cuda \
      --dtype bf16 --comm staged --train.steps 30 --eval.every 0 --log.every 10 --log.jsonl "$out/train_np$np.jsonl" \
      --checkpoint.dir /tmp/gpu_check_ckpt_np$np --checkpoint.every 1000 --quiet || status=1
  done
  # eval of that checkpoint with attention on the GPU (bf16) and on the CPU (fp32): losses agree to bf16's
  # rounding, accuracies alike.
  for device in "cpu --dtype fp32" "cuda --dtype bf16"; do
    timeout 120 "$longctx" eval /tmp/gpu_check_ckpt_np1 --device $device --seq-len 8K,16K --depths 0,100 --sequences 4 \
      --json --quiet | tee -a "$out/eval.jsonl" || status=1
  done
fi

if want 4; then
  step "4. PyTorch baselines (GEMM rate, dilated attention via flash SDPA)"
  PYTHONUNBUFFERED=1 timeout 300 python3 jobs/bench/torch_dilated_gpu.py --iters 5 | tee -a "$out/torch.jsonl" || status=1
fi

if want 5; then
  step "5. largest N for forward + backward (bf16, H=16, D=128, issue 7's schedule)"
  # Doubling from 1M, then bisection on multiples of 64K (the schedule's largest w divides them).
  fits() {
    timeout 120 "$longctx" bench attention --device cuda --dtype bf16 --seq-len "$1" --heads 16 --head-dim 128 \
      --segment-lengths 2048,4096,8192,16384 --dilation-rates 1,2,4,8 --backward --iters 1 --warmup 0 --json \
      --quiet >"$out/probe.json" 2>"$out/probe.err"
  }
  unit=65536 lo=0 hi=16
  while fits $((hi * unit)); do lo=$hi; hi=$((hi * 2)); echo "  fits: $((lo * unit))"; done
  while [ $((hi - lo)) -gt 1 ]; do
    mid=$(((lo + hi) / 2))
    if fits $((mid * unit)); then lo=$mid; echo "  fits: $((lo * unit))"; else hi=$mid; echo "  does not fit: $((mid * unit))"; fi
  done
  tail -n 2 "$out/probe.err"
  echo "largest N (forward + backward, one GPU): $((lo * unit)) tokens"
fi

if want 6; then
  step "6. compute-sanitizer memcheck on the CUDA tests"
  sanitizer=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
  if [ -x "$sanitizer" ]; then
    timeout 300 "$sanitizer" --tool memcheck --error-exitcode 9 "$tests" || status=1
  else
    echo "gpu_check: compute-sanitizer not found; memcheck not run"
  fi
fi
echo; echo "gpu_check: done, status $status"
exit $status
