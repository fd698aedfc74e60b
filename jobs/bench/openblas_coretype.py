"""Import before numpy or torch: sets OPENBLAS_CORETYPE from the CPU's flags unless it is already set.

OpenBLAS 0.3.21 misreads the CPU model under this hypervisor (it falls back to "Prescott", SSE3, and runs
~6x slower), so the bench scripts would time the misdetection instead of the machine. AVX-512: SkylakeX,
AVX2: Haswell; anything else is left to OpenBLAS.
"""
import os


def cpu_flags():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


if "OPENBLAS_CORETYPE" not in os.environ:
    flags = cpu_flags()
    if "avx512f" in flags:
        os.environ["OPENBLAS_CORETYPE"] = "SkylakeX"
    elif "avx2" in flags:
        os.environ["OPENBLAS_CORETYPE"] = "Haswell"
