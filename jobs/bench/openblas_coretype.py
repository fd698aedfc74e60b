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


if __name__ == "__main__":  # a module the bench scripts import, not a command: its docstring says what it does
    import sys
    if sys.argv[1:] not in ([], ["--help"], ["-h"]):
        print(f"openblas_coretype.py: takes no arguments (got: {' '.join(sys.argv[1:])}); bench scripts import it",
              file=sys.stderr)
        sys.exit(2)
    print(__doc__.strip())
    sys.exit(0)

if "OPENBLAS_CORETYPE" not in os.environ:
    flags = cpu_flags()
    if "avx512f" in flags:
        os.environ["OPENBLAS_CORETYPE"] = "SkylakeX"
    elif "avx2" in flags:
        os.environ["OPENBLAS_CORETYPE"] = "Haswell"
