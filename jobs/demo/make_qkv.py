#!/usr/bin/python3
"""Random q, k, v, do [N, H, D] float32 in an HDF5 file: the input of `longctx attend` in the quickstart.

    /usr/bin/python3 jobs/demo/make_qkv.py OUT.h5 [--seq-len 32768] [--heads 4] [--head-dim 64] [--seed 0]

OUT is replaced only once the whole file is written (a temporary file beside it is renamed over it): a
failure, Ctrl-C or SIGTERM leaves an existing OUT as it was. A size that this machine's available memory
(one array at a time) or OUT's free disk space (all four) cannot hold is refused before anything is drawn.
"""
import argparse
import os
import signal
import sys
import tempfile

import h5py
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "bench"))
# A bad size, seed or OUT is a usage error naming it (before: a traceback, or an empty [0, H, D] file; a
# negative --seed or OUT in a missing directory: a traceback).
from bench_args import non_negative, output_file, positive  # noqa: E402


def readable(count_bytes):
    for unit, shift in (("TiB", 40), ("GiB", 30), ("MiB", 20)):
        if count_bytes >= 1 << shift:
            return f"{count_bytes / (1 << shift):.1f} {unit}"
    return f"{count_bytes} B"


def available_memory_bytes():
    """MemAvailable of /proc/meminfo, or None where there is none."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("out", type=output_file)
parser.add_argument("--seq-len", type=positive, default=32768)
parser.add_argument("--heads", type=positive, default=4)
parser.add_argument("--head-dim", type=positive, default=64)
parser.add_argument("--seed", type=non_negative, default=0)
args = parser.parse_args()
shape = (args.seq_len, args.heads, args.head_dim)
array_bytes = args.seq_len * args.heads * args.head_dim * 4
# One array is in memory at a time (drawn, written, dropped: the peak RSS is one array and ~45 MiB of Python,
# numpy and h5py); the file holds all four, beside OUT until it replaces it. What does not fit is refused
# here (before: a MemoryError, or the OOM killer, after OUT had been truncated).
sizes = f"--seq-len {args.seq_len} --heads {args.heads} --head-dim {args.head_dim}"
memory_bytes, have_bytes = array_bytes + (64 << 20), available_memory_bytes()
if have_bytes is not None and memory_bytes > have_bytes:
    parser.error(f"{sizes}: each of q, k, v, do is {readable(array_bytes)} of float32, made one at a time: "
                 f"{readable(memory_bytes)} with the program, but this machine has {readable(have_bytes)} available "
                 "(MemAvailable): use a smaller --seq-len")
# A symbolic link stays one: the file it leads to is replaced (as longctx's outputs do; before: the link
# became a file, and its target kept the old data).
target = os.path.realpath(args.out)
folder, base = os.path.split(target)
disk = os.statvfs(folder)
if 4 * array_bytes > disk.f_bavail * disk.f_frsize:
    parser.error(f"{sizes}: q, k, v, do are {readable(4 * array_bytes)} of float32, but {folder} has "
                 f"{readable(disk.f_bavail * disk.f_frsize)} free: use a smaller --seq-len")

# SIGTERM (kill, timeout, Slurm) as SystemExit, so that the temporary file is removed as for Ctrl-C.
signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
fd, tmp = tempfile.mkstemp(prefix=f".{base}.", suffix=".tmp", dir=folder)
os.close(fd)
try:
    umask = os.umask(0)
    os.umask(umask)
    # An existing OUT's mode, else the one a new file gets (mkstemp's is 0600).
    os.chmod(tmp, os.stat(target).st_mode & 0o7777 if os.path.exists(target) else 0o666 & ~umask)
    rng = np.random.default_rng(args.seed)
    with h5py.File(tmp, "w") as f:
        for name in ("q", "k", "v", "do"):
            f[name] = rng.standard_normal(shape, dtype=np.float32)
    os.replace(tmp, target)
except BaseException:
    if os.path.exists(tmp):
        os.unlink(tmp)
    raise
print(f"wrote q, k, v, do [{args.seq_len}, {args.heads}, {args.head_dim}] to {args.out}")
