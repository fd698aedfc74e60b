#!/usr/bin/python3
"""An outside reader (h5py) checks a checkpoint and an activation dump written by io_h5py_writer.

Usage: h5py_read_check.py DIR WORLD_SIZE. Exits non-zero, saying what differed, on any mismatch.
Values: element at flat global index i of tensor number t is t + i / 4 (exact in float32).
"""
import os
import sys

import h5py
import numpy as np


def expected(tensor, shape):
    return (tensor + np.arange(int(np.prod(shape)), dtype=np.float64) / 4).reshape(shape).astype(np.float32)


def text(value):
    return value.decode() if isinstance(value, bytes) else str(value)


def check(condition, message):
    if not condition:
        print("h5py_read_check: FAILED:", message)
        sys.exit(1)


def main():
    directory, world_size = sys.argv[1], int(sys.argv[2])
    with open(os.path.join(directory, "ckpt", "latest")) as latest:
        name = latest.read().strip()
    check(name == "step_00000012.h5", f"latest names {name!r}")
    with h5py.File(os.path.join(directory, "ckpt", name), "r") as f:
        attrs = {key: f.attrs[key] for key in f.attrs}
        check(text(attrs["format"]) == "longctx-checkpoint", f"format {attrs['format']!r}")
        for key, want in [("format_version", 1), ("step", 12), ("world_size", world_size), ("seq_len", 16),
                          ("tokens_seen", 192)]:
            check(int(attrs[key]) == want, f"attribute {key} = {attrs[key]!r}, expected {want}")
        check(text(f["config"][()]) == "[model]\nlayers=1\ndim=6\n", f"config {f['config'][()]!r}")
        for path, tensor in [("model/w", 1), ("optimizer/m/w", 2)]:
            data = f[path]
            check(data.dtype == np.float32, f"{path} dtype {data.dtype}")
            check(data.shape == (7, 6), f"{path} shape {data.shape}")
            check(data.fletcher32 and data.chunks is not None, f"{path} not chunked with Fletcher32")
            check(np.array_equal(data[...], expected(tensor, (7, 6))), f"{path} values differ")
    with h5py.File(os.path.join(directory, "acts.h5"), "r") as f:
        check(text(f.attrs["format"]) == "longctx-activations", f"dump format {f.attrs['format']!r}")
        for i, name in enumerate("qkvo"):
            data = f[f"step_2/layer_0/{name}"]
            check(data.shape == (16, 2, 3), f"dump {name} shape {data.shape}")
            check(np.array_equal(data[...], expected(10 + i, (16, 2, 3))), f"dump {name} values differ")
    print(f"h5py_read_check: checkpoint and dump written by {world_size} ranks read back correctly by h5py")


if __name__ == "__main__":
    main()
