#!/usr/bin/python3
"""The machine's single-precision GEMM rate, the yardstick of issue 3's attention targets.

    /usr/bin/python3 jobs/bench/sgemm_rate.py [--size 4096] [--iters 10]

Times numpy's float32 matmul on square matrices and prints GFLOP/s = 2 n^3 / seconds, best and median.
numpy must use an optimised BLAS: on Debian, `apt-get install libopenblas0-pthread` (it replaces the
reference BLAS through update-alternatives). OpenBLAS uses every core unless OPENBLAS_NUM_THREADS says
otherwise.

Under a hypervisor OpenBLAS 0.3.21 can misread the CPU model (here it falls back to "Prescott", SSE3, and
runs ~6x slower). Unless OPENBLAS_CORETYPE is set, this script sets it from the CPU's flags (AVX-512:
SkylakeX, AVX2: Haswell), so the figure is the machine's rate, not the misdetection's.
"""
import argparse
import os
import time

import openblas_coretype  # noqa: F401  (sets OPENBLAS_CORETYPE; must come first)
from bench_args import positive  # noqa: E402
import numpy as np  # noqa: E402


def loaded_blas():
    """The optimised BLAS this process has loaded (a path), or None when it is the reference one."""
    with open("/proc/self/maps") as maps:
        for line in maps:
            path = line.split()[-1] if len(line.split()) >= 6 else ""
            if any(name in os.path.basename(path) for name in ("openblas", "blis", "mkl_rt", "libmkl")):
                return path
    return None


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=positive, default=4096)
    parser.add_argument("--iters", type=positive, default=10)
    args = parser.parse_args()
    # numpy loads its BLAS as it is imported: the reference one is refused before any matmul (before: only after
    # the warm-up matmul, about 65 s at the default --size 4096).
    blas = loaded_blas()
    if blas is None:
        raise SystemExit("sgemm_rate: numpy runs on the reference BLAS (no OpenBLAS, BLIS or MKL is loaded), whose rate "
                         "is no yardstick; install one: apt-get install libopenblas0-pthread")
    n = args.size
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    c = np.empty((n, n), dtype=np.float32)
    np.matmul(a, b, out=c)  # warm-up
    seconds = []
    for _ in range(args.iters):
        t0 = time.perf_counter()
        np.matmul(a, b, out=c)
        seconds.append(time.perf_counter() - t0)
    seconds.sort()
    flops = 2.0 * n ** 3
    best, median = seconds[0], seconds[len(seconds) // 2]
    print(f"sgemm n={n} {os.path.basename(blas)} OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '(auto)')}: best {best:.4f} s ({flops / best * 1e-9:.1f} GFLOP/s), "
          f"median {median:.4f} s ({flops / median * 1e-9:.1f} GFLOP/s)")


if __name__ == "__main__":
    main()
