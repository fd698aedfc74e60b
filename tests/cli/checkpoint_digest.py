#!/usr/bin/python3
"""The `digest` of a checkpoint dataset or of a token dataset's /tokens (io/digest.hpp), written again in numpy as an outside check of the
C++ one, and for tests that change a checkpoint's values on purpose and must keep its digests right (a
value a resume must refuse for what it is, not as damage).

  checkpoint_digest.py check FILE      every dataset with a digest matches it (exit 1 naming one that does not)
  checkpoint_digest.py sign FILE NAME  stores the digest of dataset NAME's current contents

As a module: digest(array) and sign(h5py_file, name)."""
import sys

import h5py
import numpy as np


def _splitmix64(z):
    z = z + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def digest(values):
    """The sum mod 2^64 over the elements of splitmix64(splitmix64(flat index) ^ bits): float32 by their bits,
    uint8 and uint16 by their value, int32 (token ids) by their bits as uint32."""
    flat = np.ascontiguousarray(values).reshape(-1)
    if flat.dtype == np.float32:
        bits = flat.view(np.uint32).astype(np.uint64)
    elif flat.dtype in (np.uint8, np.uint16):
        bits = flat.astype(np.uint64)
    elif flat.dtype == np.int32:
        bits = flat.view(np.uint32).astype(np.uint64)
    else:
        raise ValueError(f"no digest for {flat.dtype}")
    with np.errstate(over="ignore"):
        terms = _splitmix64(_splitmix64(np.arange(flat.size, dtype=np.uint64)) ^ bits)
        return int(np.sum(terms, dtype=np.uint64))


def attribute_value(value):
    """The int64 the `digest` attribute holds for `value` (the same 64 bits)."""
    return np.array([value], np.uint64).view(np.int64)[0]


def sign(f, name):
    f[name].attrs["digest"] = attribute_value(digest(f[name][...]))


def check(path):
    bad, count = [], 0
    with h5py.File(path, "r") as f:
        def visit(name, obj):
            nonlocal count
            # Defined for float32 and uint8 (what checkpoints hold) and a token file's uint16 / int32 ids.
            if isinstance(obj, h5py.Dataset) and "digest" in obj.attrs and obj.dtype in (np.float32, np.uint8,
                                                                                         np.uint16, np.int32):
                count += 1
                if attribute_value(digest(obj[...])) != obj.attrs["digest"]:
                    bad.append(name)
        f.visititems(visit)
    return count, bad


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "check":
        count, bad = check(sys.argv[2])
        print(f"{count} digests, {len(bad)} wrong{': ' + ', '.join(bad) if bad else ''}")
        sys.exit(1 if bad or count == 0 else 0)
    if len(sys.argv) == 4 and sys.argv[1] == "sign":
        with h5py.File(sys.argv[2], "r+") as f:
            sign(f, sys.argv[3])
        sys.exit(0)
    print(__doc__, file=sys.stderr)
    sys.exit(2)
