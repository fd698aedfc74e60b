#!/usr/bin/env python3
"""PyTorch baselines for the CUDA issue, on one GPU, in one run:

1. the cuBLAS bf16 GEMM rate (torch.matmul, M = N = K = --gemm), the yardstick of the speed targets;
2. dilated attention written the usual way: per branch, gather each head's selected rows, FlashAttention
   through scaled_dot_product_attention (aten._scaled_dot_product_flash_attention, which also returns the
   lse), scatter back, then mix the branches by their lse; forward, and forward + backward (autograd; the
   lse output of the flash kernel carries no gradient, so the mixing weights are treated as constants in
   the backward: its FLOPs are those of the exact backward, its gradient is not. Timing only).

    python3 jobs/bench/torch_dilated_gpu.py [--seq-len 1048576 --heads 16 --head-dim 128 --batch 1
        --segment-lengths 2048,4096,8192,16384 --dilation-rates 1,2,4,8 --dtype bf16 --causal --iters 5
        --gemm 8192 --no-backward]

Prints one JSON object per figure (GEMM, forward, backward) with seconds (median of --iters after a
warm-up, CUDA events) and TFLOP/s by the spec's counts (4 D pairs forward, 10 D pairs backward). Before
timing, it checks the dilated forward against a plain softmax implementation of the same schedule on a
small problem, so the baseline is the right computation. Paper head offsets (o = h mod r); w' = min(w, N)
must divide N and r must divide w'; as longctx, one branch must have r = 1 (so that every row attends to
something).
"""
import argparse
import json
import math
import statistics

from bench_args import check_schedule, non_negative, positive, positive_list

torch = None  # imported by main() once the arguments are read: --help and a bad argument need no torch


def import_torch():
    global torch
    try:
        import torch as imported
    except ImportError as e:  # a bare traceback otherwise
        raise SystemExit(f"torch_dilated_gpu: cannot import torch ({e}); on Debian: apt-get install python3-torch, and run it "
                         "with /usr/bin/python3")
    torch = imported


def timed(fn, iters, warmup=1):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    seconds = []
    for _ in range(iters):
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        stop.record()
        stop.synchronize()
        seconds.append(start.elapsed_time(stop) * 1e-3)
    return statistics.median(seconds)


def selection(H, r):
    """Index tensors picking head h's rows (offset h mod r) of every segment: x[:, :, :, offs, heads]."""
    offs = torch.tensor([h % r for h in range(H)], device="cuda")
    heads = torch.arange(H, device="cuda")
    return offs, heads


def branch(q, k, v, w, r, scale, causal, flash=True):
    """One branch: o [B,N,H,D] (0 where unselected) and lse [B,N,H] float32 (-inf where unselected)."""
    B, N, H, D = q.shape
    nseg, m = N // w, w // r
    offs, heads = selection(H, r)

    def gather(x):  # [B,N,H,D] -> [B*nseg, H, m, D]
        x = x.view(B, nseg, m, r, H, D)[:, :, :, offs, heads, :]  # [B,nseg,m,H,D]
        return x.permute(0, 1, 3, 2, 4).reshape(B * nseg, H, m, D)

    qs, ks, vs = gather(q), gather(k), gather(v)
    if flash:
        out = torch.ops.aten._scaled_dot_product_flash_attention(qs, ks, vs, 0.0, causal, False, scale=scale)
        o_sel, lse_sel = out[0], out[1]
    else:  # plain softmax in float32: the check's reference
        s = torch.matmul(qs.float(), ks.float().transpose(-1, -2)) * scale
        if causal:
            s = s.masked_fill(torch.ones(m, m, device="cuda", dtype=torch.bool).triu(1), float("-inf"))
        lse_sel = torch.logsumexp(s, dim=-1)
        o_sel = torch.matmul(torch.softmax(s, dim=-1), vs.float()).to(q.dtype)
    o_sel = o_sel.reshape(B, nseg, H, m, D).permute(0, 1, 3, 2, 4)  # [B,nseg,m,H,D]
    lse_sel = lse_sel.reshape(B, nseg, H, m).permute(0, 1, 3, 2)
    o = torch.zeros(B, nseg, m, r, H, D, device="cuda", dtype=q.dtype)
    lse = torch.full((B, nseg, m, r, H), float("-inf"), device="cuda")
    o[:, :, :, offs, heads, :] = o_sel
    lse[:, :, :, offs, heads] = lse_sel.float()
    return o.view(B, N, H, D), lse.view(B, N, H)


def dilated(q, k, v, ws, rs, causal, flash=True):
    N, D = q.shape[1], q.shape[3]
    scale = D ** -0.5
    outs, lses = zip(*(branch(q, k, v, min(w, N), r, scale, causal, flash) for w, r in zip(ws, rs)))
    lse_all = torch.stack(lses)
    lse = torch.logsumexp(lse_all, dim=0)
    weights = torch.exp(lse_all - lse).detach()  # the flash kernel's lse has no gradient anyway
    o = sum(wt.unsqueeze(-1) * oi.float() for wt, oi in zip(weights, outs))
    return o, lse


def pairs_of(B, N, H, ws, rs, causal):
    total = 0
    for w, r in zip(ws, rs):
        w = min(w, N)
        if N % w or w % r:
            raise SystemExit(f"segment length {w} must divide N={N} and be a multiple of its rate {r}")
        m = w // r
        total += B * H * (N // w) * (m * (m + 1) // 2 if causal else m * m)
    return total


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seq-len", type=positive, default=1 << 20)
    parser.add_argument("--heads", type=positive, default=16)
    parser.add_argument("--head-dim", type=positive, default=128)
    parser.add_argument("--batch", type=positive, default=1)
    parser.add_argument("--segment-lengths", type=positive_list, default="2048,4096,8192,16384")
    parser.add_argument("--dilation-rates", type=positive_list, default="1,2,4,8")
    parser.add_argument("--dtype", default="bf16", choices=["bf16", "fp16"])
    parser.add_argument("--causal", action="store_true")
    parser.add_argument("--iters", type=positive, default=5)
    parser.add_argument("--gemm", type=non_negative, default=8192, help="GEMM size M = N = K (0 skips it)")
    parser.add_argument("--no-backward", action="store_true")
    args = parser.parse_args()
    ws, rs = args.segment_lengths, args.dilation_rates
    check_schedule(parser, ws, rs, args.seq_len)  # (before: the shapes were checked after the GEMM, as exit 1)
    import_torch()  # (after the arguments: a bad one is said as such, also without torch)
    dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float16
    B, N, H, D = args.batch, args.seq_len, args.heads, args.head_dim
    gpu = torch.cuda.get_device_name()

    if args.gemm:
        n = args.gemm
        a, b = (torch.randn(n, n, device="cuda", dtype=dtype) for _ in range(2))
        s = timed(lambda: torch.matmul(a, b), max(args.iters, 10), warmup=3)
        print(json.dumps({"figure": "gemm", "gpu": gpu, "torch": torch.__version__, "dtype": args.dtype, "n": n,
                          "seconds": s, "tflops": 2 * n ** 3 / s / 1e12}), flush=True)
        del a, b

    # The baseline is the right computation: flash path vs plain softmax on a small problem.
    gen = torch.Generator(device="cuda").manual_seed(0)
    small = [torch.randn(1, 4096, 4, D, device="cuda", dtype=dtype, generator=gen) for _ in range(3)]
    small_ws = [min(w, 4096) for w in (1024, 2048, 4096)]
    o_fast, lse_fast = dilated(*small, small_ws, [1, 2, 4], args.causal)
    o_ref, lse_ref = dilated(*small, small_ws, [1, 2, 4], args.causal, flash=False)
    err_o = (o_fast - o_ref).abs().max().item() / o_ref.abs().max().item()
    err_lse = (lse_fast - lse_ref).abs().max().item()
    ok = err_o < 2e-2 and err_lse < 1e-2
    print(json.dumps({"figure": "check", "relative_error_o": err_o, "max_error_lse": err_lse, "ok": ok}), flush=True)
    if not ok:
        raise SystemExit("torch_dilated_gpu: the flash-path baseline disagrees with plain softmax")
    del small, o_fast, o_ref

    pairs = pairs_of(B, N, H, ws, rs, args.causal)
    q, k, v = (torch.randn(B, N, H, D, device="cuda", dtype=dtype, generator=gen) for _ in range(3))
    with torch.no_grad():
        s_fwd = timed(lambda: dilated(q, k, v, ws, rs, args.causal), args.iters)
    base = {"gpu": gpu, "torch": torch.__version__, "dtype": args.dtype, "seq_len": N, "batch": B, "heads": H,
            "head_dim": D, "schedule": [[w, r] for w, r in zip(ws, rs)], "causal": args.causal, "pairs": pairs}
    print(json.dumps({"figure": "torch_forward", **base, "seconds": s_fwd,
                      "tflops": 4 * D * pairs / s_fwd / 1e12}), flush=True)
    if not args.no_backward:
        for t in (q, k, v):
            t.requires_grad_(True)
        dout = torch.randn(B, N, H, D, device="cuda", dtype=torch.float32, generator=gen)

        def step():
            o, _ = dilated(q, k, v, ws, rs, args.causal)
            o.backward(dout)

        s_step = timed(step, args.iters)
        s_bwd = s_step - s_fwd
        print(json.dumps({"figure": "torch_forward_backward", **base, "seconds": s_step,
                          "seconds_backward_estimate": s_bwd,
                          "tflops_backward_estimate": 10 * D * pairs / s_bwd / 1e12 if s_bwd > 0 else math.nan}),
              flush=True)


if __name__ == "__main__":
    main()
