#!/usr/bin/python3
"""PyTorch baseline for issue 3: the same dilated-attention schedule written the usual way (torchscale's):
per branch, gather each head's selected rows, dense attention per segment (bmm, logsumexp, softmax, bmm),
scatter back, then mix the branches by their lse. Forward only, float32, no grad.

    /usr/bin/python3 jobs/bench/torch_dilated.py [--seq-len 65536 --heads 4 --head-dim 64 --batch 1
        --segment-lengths 2048,4096,8192 --dilation-rates 1,2,4 --iters 3 --threads 2]

Prints seconds (best, median) and GFLOP/s = 4 D pairs / seconds (../../../shared/spec/dilated-attention.md,
"Counting work"). Needs python3-torch (Debian's) and, for its matmuls, an optimised BLAS: on Debian,
libopenblas0-pthread. As in sgemm_rate.py, OPENBLAS_CORETYPE is set from the CPU's flags unless given,
because OpenBLAS 0.3.21 misdetects this hypervisor's CPU as Prescott (SSE3).
Paper head offsets (o = h mod r); w' = min(w, N) must divide N and r must divide w' (the bench's shapes);
as longctx, one branch must have r = 1 (so that every row attends to something).
"""
import argparse
import os
import time

import openblas_coretype  # noqa: F401  (sets OPENBLAS_CORETYPE; must come first)
from bench_args import check_schedule, positive, positive_list  # noqa: E402
torch = None  # imported by main() once the arguments are read: --help and a bad argument need no torch


def import_torch():
    global torch
    try:
        import torch as imported
    except ImportError as e:  # a bare traceback otherwise
        raise SystemExit(f"torch_dilated: cannot import torch ({e}); on Debian: apt-get install python3-torch, and run it "
                         "with /usr/bin/python3")
    torch = imported


def branch_attention(q, k, v, w, r, scale, chunk):
    """One branch: o [B,N,H,D] (0 where unselected) and lse [B,N,H] (-inf where unselected)."""
    B, N, H, D = q.shape
    nseg, m = N // w, w // r
    # Paper offsets: head h takes residue h mod r of every segment.
    index = torch.tensor([h % r for h in range(H)]).view(1, 1, 1, 1, H, 1).expand(B, nseg, m, 1, H, D)

    def gather(x):  # [B,N,H,D] -> [B*nseg*H, m, D]
        x = torch.gather(x.view(B, nseg, m, r, H, D), 3, index).squeeze(3)  # [B,nseg,m,H,D]
        return x.permute(0, 1, 3, 2, 4).reshape(B * nseg * H, m, D)

    qs, ks, vs = gather(q), gather(k), gather(v)
    o_sel = torch.empty_like(qs)
    lse_sel = torch.empty(qs.shape[:2])
    for c in range(0, qs.shape[0], chunk):  # bounded score memory: chunk x m x m
        s = torch.bmm(qs[c:c + chunk], ks[c:c + chunk].transpose(1, 2)) * scale
        lse = torch.logsumexp(s, dim=-1)
        o_sel[c:c + chunk] = torch.bmm(torch.exp(s - lse.unsqueeze(-1)), vs[c:c + chunk])
        lse_sel[c:c + chunk] = lse
    # Scatter back to [B,N,H,D] / [B,N,H].
    o_sel = o_sel.view(B, nseg, H, m, D).permute(0, 1, 3, 2, 4).unsqueeze(3)  # [B,nseg,m,1,H,D]
    lse_sel = lse_sel.view(B, nseg, H, m).permute(0, 1, 3, 2).unsqueeze(3)  # [B,nseg,m,1,H]
    o = torch.zeros(B, nseg, m, r, H, D).scatter_(3, index, o_sel)
    lse = torch.full((B, nseg, m, r, H), float("-inf")).scatter_(3, index[..., 0], lse_sel)
    return o.view(B, N, H, D), lse.view(B, N, H)


def dilated_attention(q, k, v, segment_lengths, dilation_rates, chunk=8):
    N, D = q.shape[1], q.shape[3]
    scale = D ** -0.5
    outs, lses = [], []
    for w, r in zip(segment_lengths, dilation_rates):
        o, lse = branch_attention(q, k, v, min(w, N), r, scale, chunk)
        outs.append(o)
        lses.append(lse)
    lse_all = torch.stack(lses)  # [branches,B,N,H]
    lse = torch.logsumexp(lse_all, dim=0)
    weights = torch.exp(lse_all - lse)  # the paper's alpha_i = s_i / sum_j s_j
    o = sum(wt.unsqueeze(-1) * oi for wt, oi in zip(weights, outs))
    return o, lse


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seq-len", type=positive, default=65536)
    parser.add_argument("--heads", type=positive, default=4)
    parser.add_argument("--head-dim", type=positive, default=64)
    parser.add_argument("--batch", type=positive, default=1)
    parser.add_argument("--segment-lengths", type=positive_list, default="2048,4096,8192")
    parser.add_argument("--dilation-rates", type=positive_list, default="1,2,4")
    parser.add_argument("--iters", type=positive, default=3)
    parser.add_argument("--threads", type=positive, default=2)
    args = parser.parse_args()
    ws, rs = args.segment_lengths, args.dilation_rates
    B, N, H, D = args.batch, args.seq_len, args.heads, args.head_dim
    check_schedule(parser, ws, rs, N)
    pairs = sum(B * H * (N // min(w, N)) * (min(w, N) // r) ** 2 for w, r in zip(ws, rs))
    import_torch()  # (after the arguments: a bad one is said as such, also without torch)
    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(B, N, H, D, generator=gen) for _ in range(3))
    with torch.no_grad():
        dilated_attention(q, k, v, ws, rs)  # warm-up
        seconds = []
        for _ in range(args.iters):
            t0 = time.perf_counter()
            dilated_attention(q, k, v, ws, rs)
            seconds.append(time.perf_counter() - t0)
    seconds.sort()
    flops = 4.0 * D * pairs
    best, median = seconds[0], seconds[len(seconds) // 2]
    print(f"torch {torch.__version__} threads={args.threads} N={N} H={H} D={D} B={B} pairs={pairs} "
          f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '(auto)')}")
    print(f"torch forward: best {best:.4f} s ({flops / best * 1e-9:.1f} GFLOP/s), "
          f"median {median:.4f} s ({flops / median * 1e-9:.1f} GFLOP/s)")


if __name__ == "__main__":
    main()
