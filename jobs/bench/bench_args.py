"""argparse types of the bench helpers: a bad value is a usage error that names the argument (exit 2), not a
traceback or a ZeroDivisionError after torch is loaded."""
import argparse
import os


def whole(text, least):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number") from None
    if value < least:
        raise argparse.ArgumentTypeError(f"{value}: must be >= {least}")
    return value


def positive(text):
    return whole(text, 1)


def non_negative(text):
    return whole(text, 0)


def positive_list(text):
    """'2048,4096' -> [2048, 4096], each >= 1."""
    return [positive(item) for item in text.split(",")]


def output_file(text):
    """A file to be written: its directory must exist (before: make_qkv.py's h5py traceback, after the work)."""
    folder = os.path.dirname(os.path.abspath(text))
    if not os.path.isdir(folder):
        raise argparse.ArgumentTypeError(f"{text}: no such directory: {folder}")
    if os.path.isdir(text):
        raise argparse.ArgumentTypeError(f"{text}: is a directory; name a file")
    if not os.access(folder, os.W_OK):
        raise argparse.ArgumentTypeError(f"{text}: cannot write in {folder}")
    return text


def check_schedule(parser, ws, rs, n):
    """The rules `longctx bench attention` applies to --segment-lengths / --dilation-rates, then the torch
    baselines' own (w' = min(w, N) divides N, r divides w'): a usage error naming the arguments. (Before: the
    baselines took a schedule without an r = 1 branch, and the rows no branch selects came out NaN where the
    spec has o = 0, lse = -inf; torch_dilated_gpu.py checked the shapes only after torch and its GEMM.)"""
    if len(ws) != len(rs):  # zip would drop the unmatched branches without a word
        parser.error(f"{len(ws)} segment lengths but {len(rs)} dilation rates; give one rate per length")
    if 1 not in rs:
        parser.error(f"--dilation-rates ({','.join(map(str, rs))}): no branch has rate 1, so some (row, head) pairs "
                     "would attend to nothing; add a branch with rate 1 (as longctx bench attention requires)")
    for i, (w, r) in enumerate(zip(ws, rs)):
        if r > w:
            parser.error(f"--dilation-rates: value {r} exceeds its segment length {w} "
                         f"(entry {i + 1} of --segment-lengths)")
        w = min(w, n)
        if n % w or w % r:
            parser.error(f"segment length {w} must divide N={n} and be a multiple of its rate {r}")
