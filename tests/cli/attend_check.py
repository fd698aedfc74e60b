#!/usr/bin/python3
"""Helpers for tests/cli/attend.sh, written against the spec with numpy + h5py (an outside reader).

  make IN.h5 N H D [B] [--f16]      random q, k, v, do
  spec IN.h5 OUT.h5 W R CAUSAL OFFSETS   check OUT against a plain numpy implementation of the spec
  same A.h5 B.h5 TOL                 every dataset of A equals B's within TOL (-inf where -inf)
  report REPORT.json P BYTES         world_size == P and each rank received BYTES (or 'any')
"""
import json
import sys

import h5py
import numpy as np


def make(path, n, h, d, b=None, f16=False):
    rng = np.random.default_rng(7)
    shape = (n, h, d) if b is None else (b, n, h, d)
    with h5py.File(path, "w") as f:
        for name in ("q", "k", "v", "do"):
            f[name] = rng.standard_normal(shape).astype(np.float16 if f16 else np.float32)


def spec_forward(q, k, v, ws, rs, causal, offsets):
    """dilated-attention.md, Forward: one softmax over the union of every branch's keys."""
    n, heads, d = q.shape
    scale = 1.0 / np.sqrt(d)
    num = np.zeros((n, heads, d))
    den = np.zeros((n, heads))
    mx = np.full((n, heads), -np.inf)
    scores_per_row = [[[] for _ in range(heads)] for _ in range(n)]
    for w, r in zip(ws, rs):
        w = min(w, n)
        for s in range(0, n, w):
            seg = range(s, min(s + w, n))
            for h in range(heads):
                o = h % r if offsets == "paper" else h // -(-heads // r)
                rows = [p for p in seg if (p - s) % r == o]
                for p in rows:
                    for j in rows:
                        if causal and j > p:
                            continue
                        scores_per_row[p][h].append((scale * float(q[p, h] @ k[j, h]), j))
    out = np.zeros((n, heads, d))
    lse = np.full((n, heads), -np.inf)
    for p in range(n):
        for h in range(heads):
            sc = scores_per_row[p][h]
            if not sc:
                continue
            m = max(x for x, _ in sc)
            z = sum(np.exp(x - m) for x, _ in sc)
            out[p, h] = sum(np.exp(x - m) * v[j, h] for x, j in sc) / z
            lse[p, h] = m + np.log(z)
    return out, lse


def main():
    cmd = sys.argv[1]
    if cmd == "make":
        args = [a for a in sys.argv[2:] if a != "--f16"]
        make(args[0], int(args[1]), int(args[2]), int(args[3]), int(args[4]) if len(args) > 4 else None,
             "--f16" in sys.argv)
    elif cmd == "spec":
        inp, outp, ws, rs, causal, offsets = sys.argv[2:8]
        with h5py.File(inp, "r") as f, h5py.File(outp, "r") as g:
            q, k, v = (f[x][...].astype(np.float64) for x in ("q", "k", "v"))
            o, lse = spec_forward(q, k, v, [int(x) for x in ws.split(",")], [int(x) for x in rs.split(",")],
                                  causal == "1", offsets)
            err_o = np.max(np.abs(g["o"][...] - o))
            finite = np.isfinite(lse)
            same_inf = np.array_equal(finite, np.isfinite(g["lse"][...]))
            err_l = np.max(np.abs(g["lse"][...][finite] - lse[finite]))
            print(f"numpy spec check: max |o err| {err_o:.2e}, max |lse err| {err_l:.2e}, -inf pattern same: {same_inf}")
            sys.exit(0 if err_o < 1e-4 and err_l < 1e-4 and same_inf else 1)
    elif cmd == "same":
        a, b, tol = sys.argv[2], sys.argv[3], float(sys.argv[4])
        with h5py.File(a, "r") as f, h5py.File(b, "r") as g:
            if sorted(f.keys()) != sorted(g.keys()):
                print(f"datasets differ: {sorted(f.keys())} vs {sorted(g.keys())}")
                sys.exit(1)
            worst = 0.0
            for name in f:
                x, y = f[name][...], g[name][...]
                if x.shape != y.shape or x.dtype != y.dtype:
                    print(f"{name}: {x.shape} {x.dtype} vs {y.shape} {y.dtype}")
                    sys.exit(1)
                fin = np.isfinite(x)
                if not np.array_equal(fin, np.isfinite(y)) or not np.array_equal(x[~fin], y[~fin]):
                    print(f"{name}: non-finite pattern differs")
                    sys.exit(1)
                worst = max(worst, float(np.max(np.abs(x[fin] - y[fin]), initial=0.0)))
            print(f"max abs difference over {sorted(f.keys())}: {worst:.2e}")
            sys.exit(0 if worst <= tol else 1)
    elif cmd == "report":
        path, p, want = sys.argv[2], int(sys.argv[3]), sys.argv[4]
        rep = json.load(open(path))
        for key in ("world_size", "seq_len", "heads", "head_dim", "schedule", "pairs", "flops_fwd", "flops_bwd", "per_rank"):
            assert key in rep, key
        assert rep["world_size"] == p and len(rep["per_rank"]) == p, rep
        # Without --backward nothing of the backward was done: no FLOPs, no seconds.
        assert (rep["flops_bwd"] > 0) == rep["backward"], (rep["flops_bwd"], rep["backward"])
        assert rep["flops_fwd"] > 0
        for r, x in enumerate(rep["per_rank"]):
            for key in ("rank", "seconds_fwd", "seconds_bwd", "bytes_sent", "bytes_received", "collectives"):
                assert key in x, key
            assert x["rank"] == r
            # The share of communication that computation hid: null where the rank received nothing.
            hidden = x["comm_hidden_fraction"]
            assert (hidden is None) == (x["bytes_received"] == 0), (r, hidden, x["bytes_received"])
            assert hidden is None or 0 <= hidden <= 1, (r, hidden)
            assert (x["seconds_bwd"] > 0) == rep["backward"], (r, x["seconds_bwd"])
            if want != "any":  # one figure for every rank, or one per rank (comma-separated)
                wants = [int(w) for w in want.split(",")]
                expected = wants[r] if len(wants) > 1 else wants[0]
                assert x["bytes_received"] == expected, (r, x["bytes_received"], expected)
        print("report ok:", [x["bytes_received"] for x in rep["per_rank"]])


if __name__ == "__main__":
    main()
