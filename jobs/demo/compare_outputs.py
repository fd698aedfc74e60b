#!/usr/bin/python3
"""Whether two `longctx attend` output files agree: the quickstart's check that the output sharded over
ranks equals the one of a single rank.

    /usr/bin/python3 jobs/demo/compare_outputs.py EXPECTED.h5 ACTUAL.h5 [--tolerance 1e-3]

Both files must hold the same datasets (o, lse, and dq, dk, dv of a --backward run) with the same shapes,
no NaN (which compares as nothing: it fails the check), an infinity only where the other file has the same
one (lse is -inf at a row that reaches no key), and each other value of ACTUAL within --tolerance of
EXPECTED's. Prints the largest difference of each dataset. Exit 0 when they agree, 1 when they do not
(saying how), 2 when a file cannot be read as an output of attend.
"""
import argparse
import sys

import h5py
import numpy as np


class NotAnOutput(Exception):
    pass


def open_output(path):
    try:
        return h5py.File(path, "r")
    except OSError as error:
        raise NotAnOutput(f"{path}: cannot be read as an HDF5 file ({error})") from None


def datasets(path, f):
    """name -> dataset of the file's top level; attend writes real numbers there, nothing else."""
    found = {}
    for name in f:
        item = f.get(name)  # None for a link that leads nowhere
        if not isinstance(item, h5py.Dataset):
            what = "a group" if isinstance(item, h5py.Group) else "a link to nothing"
            raise NotAnOutput(f"{path}: '{name}' is {what}, not a dataset: not an output of longctx attend")
        if item.shape is None or item.dtype.kind not in "fiub":
            raise NotAnOutput(f"{path}: '{name}' holds {'no dataspace' if item.shape is None else item.dtype}, "
                              "not real numbers: not an output of longctx attend")
        found[name] = item
    if not found:
        raise NotAnOutput(f"{path} holds no datasets: not an output of longctx attend")
    return found


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog="exit 0: they agree; 1: they do not (saying how); 2: a file cannot be "
                                            "read as an output of attend",
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("expected", help="the reference output (the one rank's)")
    parser.add_argument("actual", help="the output to check (the sharded one)")
    parser.add_argument("--tolerance", type=float, default=1e-3,
                        help="the largest |ACTUAL - EXPECTED| allowed (default 1e-3)")
    args = parser.parse_args()
    if not np.isfinite(args.tolerance) or np.signbit(args.tolerance):
        parser.error(f"--tolerance {args.tolerance}: must be a finite number >= 0")
    failures, figures = [], []
    try:
        with open_output(args.expected) as e, open_output(args.actual) as a:
            want, got = datasets(args.expected, e), datasets(args.actual, a)
            for name in sorted(set(want) ^ set(got)):
                failures.append(f"'{name}' is in {args.expected if name in want else args.actual} only")
            for name in sorted(set(want) & set(got)):
                x, y = want[name][...], got[name][...]
                if x.shape != y.shape:
                    failures.append(f"'{name}': shape {list(y.shape)}, expected {list(x.shape)}")
                    continue
                nan = [path for path, v in ((args.expected, x), (args.actual, y)) if np.isnan(v).any()]
                if nan:
                    failures.append(f"'{name}' holds NaN in {' and '.join(nan)}")
                    continue
                finite = np.isfinite(x) & np.isfinite(y)
                if not np.array_equal(x[~finite], y[~finite]):
                    failures.append(f"'{name}': the files hold infinite values at different places")
                    continue
                x, y = x[finite].astype(np.float64), y[finite].astype(np.float64)
                worst = float(np.max(np.abs(x - y))) if x.size else 0.0
                figures.append(f"{name} {worst:.2e}")
                if not worst <= args.tolerance:
                    failures.append(f"'{name}' differs by up to {worst:.3e}, more than --tolerance {args.tolerance:g}")
    except NotAnOutput as error:
        print(f"compare_outputs.py: {error}", file=sys.stderr)
        return 2
    if figures:
        print(f"  max |{args.actual} - {args.expected}|: " + ", ".join(figures))
    for failure in failures:
        print(f"compare_outputs.py: {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
