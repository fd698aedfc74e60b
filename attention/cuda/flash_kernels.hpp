// Tensor-core (bf16 / fp16) dilated attention on device pointers, FlashAttention-2 style (issue 7).
//
// Layout: q, k, v, dout [B, N, H, D] in the element type; o, dq, dk, dv [B, N, H, D] float32; lse, delta
// [B, N, H] float32. All device memory of the current device, used in stream order on `stream`.
//
// Each branch of the schedule is one launch (or all of them one: flash_fuses) over (batch, segment, head,
// tile) in the branch's sparse space (row t of a segment is position s + o(h, r) + t r): the kernels read
// the selected rows straight from q, k, v (no gathered copies). The forward's epilogue merges the
// branch's (o_i, lse_i) into o, lse by log-sum-exp, which is the spec's joint softmax over the union of
// every branch's keys; a row is merged by one block at a time, branch by branch (launches of one stream
// run in order; a fused launch orders its blocks' epilogues). The backward uses the final lse and
// delta = rowsum(dout * o): per branch it is the ordinary attention backward over that branch's keys, and
// dq, dk, dv add up over the branches.
//
// Head dims up to kFlashMaxHeadDim (padded to 32, 64 or 128 inside); D a multiple of 8 takes 16-byte
// asynchronous loads, other D a slower element-wise load.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <functional>
#include <string>

#include "attention/attention.hpp"

namespace longctx::cuda {

constexpr int64_t kFlashMaxHeadDim = 128;

// The kernels the current GPU gets for this head dim: "wgmma (sm_90a)" (warpgroup MMA, H100 / H200, head
// dims a multiple of 8) or "mma.sync"; LONGCTX_FLASH_FORWARD / LONGCTX_FLASH_BACKWARD = auto|mma|wgmma
// override (for comparisons).
std::string flash_forward_kernel_name(int64_t head_dim);
std::string flash_backward_kernel_name(int64_t head_dim);

// A branch's local launch (forward or backward): its blocks, and how many the GPU runs at once (blocks
// per SM by the occupancy calculator, times the SMs).
struct FlashGrid {
  long long blocks = 0, resident = 0;
};
FlashGrid flash_grid(const AttentionParams& params, const AttentionDims& dims, const Branch& branch, Dtype dtype,
                     bool backward);

// Whether flash_forward / flash_backward launch all the schedule's branches as one (fused) launch: blocks
// take their tiles branch by branch from a counter, and a block writes its outputs after the earlier
// branches' blocks have written theirs (the results are the same bits as one launch per branch). That
// saves each launch's last, partly idle wave: `auto` fuses when some branch's own launch is under
// kFuseBelowWaves waves of the GPU (its tail is then over ~1/8 of it), and the fused kernel does not
// spill registers. LONGCTX_FLASH_FUSE = auto|on|off overrides (for comparisons); up to 8 branches.
constexpr long long kFuseBelowWaves = 4;
bool flash_fuses(const AttentionParams& params, const AttentionDims& dims, Dtype dtype, bool backward);

// Called, when given, with b = 0 .. branches between a pass's launches: before branch b's launch is
// enqueued on the stream (after the pass's fills), and with b = branches after the last one (the bench
// records CUDA events there to time each branch). Not called when the branches are fused.
using BranchBoundary = std::function<void(size_t)>;

// bf16 or fp16 (UsageError for anything else, naming --dtype).
void flash_forward(const AttentionParams& params, const AttentionDims& dims, Dtype dtype, const void* q,
                   const void* k, const void* v, float* o, float* lse, cudaStream_t stream,
                   const BranchBoundary& at_boundary = nullptr);

// The same in steps, for callers that mix local and spanning branches (the distributed path): begin,
// then the branches in schedule order. begin returns whether branch 0's launch overwrites o and lse (it
// selects every row: dilation 1), and then leaves them unfilled; otherwise it fills them (o = 0,
// lse = -inf) and every launch merges. Pass `overwrite` = that for branch 0, false for the rest.
bool flash_forward_begin(const AttentionDims& dims, const Schedule& schedule, float* o, float* lse,
                         cudaStream_t stream);
void flash_forward_branch(const AttentionParams& params, const AttentionDims& dims, const Branch& branch,
                          Dtype dtype, const void* q, const void* k, const void* v, float* o, float* lse,
                          bool overwrite, cudaStream_t stream);
// A branch whose segment spans `group` ranks of dims.seq_len = L rows each, this rank being `member`:
// q, o, lse are this rank's [B, L, H, ...]; k_tiles, v_tiles hold the group's selected rows of the
// branch, [B][H][keys of head h][D] in position order (keys of head h: the segment's rows t < g L with
// t mod r == o(h, r)).
void flash_forward_spanning(const AttentionParams& params, const AttentionDims& local, const Branch& branch,
                            int member, int group, Dtype dtype, const void* q, const void* k_tiles,
                            const void* v_tiles, float* o, float* lse, bool overwrite, cudaStream_t stream);

// `delta` is scratch of B*N*H floats. dq, dk, dv are overwritten.
void flash_backward(const AttentionParams& params, const AttentionDims& dims, Dtype dtype, const void* q,
                    const void* k, const void* v, const void* dout, const float* o, const float* lse, float* delta,
                    float* dq, float* dk, float* dv, cudaStream_t stream, const BranchBoundary& at_boundary = nullptr);

// In steps: begin (delta = rowsum(dout o); dq = 0), then branches, which add into dq, dk, dv. begin
// returns whether branch 0's launch overwrites dk and dv (it is local, `branch0_local`, with dilation 1),
// and then leaves them unfilled; otherwise it zeroes them. Pass `overwrite` = that for branch 0, false for
// the rest (spanning launches always add).
bool flash_backward_begin(const AttentionDims& dims, const Schedule& schedule, bool branch0_local, Dtype dtype,
                          const void* dout, const float* o, float* delta, float* dq, float* dk, float* dv,
                          cudaStream_t stream);
void flash_backward_branch(const AttentionParams& params, const AttentionDims& dims, const Branch& branch,
                           Dtype dtype, const void* q, const void* k, const void* v, const void* dout,
                           const float* lse, const float* delta, float* dq, float* dk, float* dv,
                           bool overwrite, cudaStream_t stream);
// Spanning: dq gets this rank's queries' gradients (added); dk_tiles, dv_tiles ([B][H][keys][D], fp32,
// the layout of k_tiles) get this rank's queries' contributions to every gathered key (added).
void flash_backward_spanning(const AttentionParams& params, const AttentionDims& local, const Branch& branch,
                             int member, int group, Dtype dtype, const void* q, const void* k_tiles,
                             const void* v_tiles, const void* dout, const float* lse, const float* delta, float* dq,
                             float* dk_tiles, float* dv_tiles, cudaStream_t stream);

// dst[i] = src[i] rounded to nearest-even in `dtype` (bf16 or fp16).
void convert_from_f32(Dtype dtype, const float* src, void* dst, size_t count, cudaStream_t stream);

// Bytes per element of bf16 / fp16 / fp32.
size_t element_bytes(Dtype dtype);

}  // namespace longctx::cuda
