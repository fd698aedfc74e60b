#!/usr/bin/env bash
# The GPU checks of the CUDA issue, for a machine with a GPU but without our build dependencies (the
# `device` tool's machine has CUDA and cmake, no MPI / HDF5 / Boost / GoogleTest). Build the test binary
# HERE (it links GoogleTest and the CUDA runtime statically; it needs only libgomp, libstdc++ and a driver
# for CUDA 13), then carry the build folder:
#   LONGCTX_BUILD=build-cuda ./jobs/build.sh          # on the dev machine
#   device tool: run(carry=["build-cuda/tests/test_attention_cuda"], command="bash jobs/device/gpu_check.sh build-cuda")
# Prints the GPU, runs the CUDA tests, then compute-sanitizer memcheck on them when it is installed.
set -euo pipefail
build=${1:-build-cuda}
tests="$build/tests/test_attention_cuda"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
ldd "$tests" | grep -E "not found" && { echo "gpu_check: missing shared libraries (see above)"; exit 1; }
"$tests" --gtest_brief=0
sanitizer=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
if [ -x "$sanitizer" ]; then
  "$sanitizer" --tool memcheck --error-exitcode 9 "$tests" --gtest_filter='*Uncovered*:*Fp32*'
else
  echo "gpu_check: compute-sanitizer not found; memcheck not run"
fi
