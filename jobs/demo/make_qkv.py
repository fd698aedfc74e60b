#!/usr/bin/python3
"""Random q, k, v, do [N, H, D] float32 in an HDF5 file: the input of `longctx attend` in the quickstart.

    /usr/bin/python3 jobs/demo/make_qkv.py OUT.h5 [--seq-len 32768] [--heads 4] [--head-dim 64] [--seed 0]
"""
import argparse
import os
import sys

import h5py
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "bench"))
# A bad size is a usage error naming it (before: a traceback, or an empty [0, H, D] file).
from bench_args import positive  # noqa: E402

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("out")
parser.add_argument("--seq-len", type=positive, default=32768)
parser.add_argument("--heads", type=positive, default=4)
parser.add_argument("--head-dim", type=positive, default=64)
parser.add_argument("--seed", type=int, default=0)
args = parser.parse_args()
rng = np.random.default_rng(args.seed)
with h5py.File(args.out, "w") as f:
    for name in ("q", "k", "v", "do"):
        f[name] = rng.standard_normal((args.seq_len, args.heads, args.head_dim), dtype=np.float32)
print(f"wrote q, k, v, do [{args.seq_len}, {args.heads}, {args.head_dim}] to {args.out}")
