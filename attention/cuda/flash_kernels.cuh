// The tensor-core kernels themselves (device code), included by flash_kernels.cu and, compiled for the host
// with LONGCTX_GPU_EMULATION (tests/gpu_emulation.hpp provides the CUDA names), by the emulation test
// that runs this very code on the CPU: one fiber per GPU thread, warp instructions emulated. Two families:
// mma.sync (any GPU the PTX runs on; flash_blocks_mma.cuh) and warpgroup MMA for Hopper
// (flash_blocks_wgmma.cuh, over wgmma.cuh), on the building blocks of flash_device.cuh. Here: the kernels
// (one branch per launch, or all local branches fused) and the host side of a launch.
#pragma once

#include "attention/cuda/flash_blocks_mma.cuh"
#include "attention/cuda/flash_blocks_wgmma.cuh"

namespace longctx::cuda::LONGCTX_KERNELS {

// ---- the kernels: one branch per launch (blockIdx.x is the tile), or all local branches fused ------------------
// The four block bodies: forward and backward, each on mma.sync and on wgmma (Hopper).
enum class Kernel { forward_mma, forward_wgmma, backward_mma, backward_wgmma };

__host__ __device__ constexpr bool is_forward(Kernel which) {
  return which == Kernel::forward_mma || which == Kernel::forward_wgmma;
}
// Rows of the sparse space per block: queries (forward) or keys (backward).
__host__ __device__ constexpr int rows_per_block(Kernel which) {
  switch (which) {
    case Kernel::forward_mma: return kFwdBlockQ;
    case Kernel::forward_wgmma: return kWgBlockQ;
    case Kernel::backward_mma: return kBwdBlockK;
    case Kernel::backward_wgmma: return kWgBwdBlockK;
  }
  return 0;
}
__host__ __device__ constexpr int threads_per_block(Kernel which) {
  switch (which) {
    case Kernel::forward_mma: return kFwdThreads;
    case Kernel::forward_wgmma: return kWgThreads;
    case Kernel::backward_mma: return kBwdThreads;
    case Kernel::backward_wgmma: return kWgBwdThreads;
  }
  return 0;
}

template <Kernel K, class T, int D, class Order>
__device__ __forceinline__ void run_block(const FlashArgs& a, const Problem& p, int first, const Order& order) {
  if constexpr (K == Kernel::forward_mma) forward_mma_block<T, D>(a, p, first, order);
  else if constexpr (K == Kernel::forward_wgmma) forward_wgmma_block<T, D>(a, p, first, order);
  else if constexpr (K == Kernel::backward_mma) backward_mma_block<T, D>(a, p, first, order);
  else backward_wgmma_block<T, D>(a, p, first, order);
}

template <Kernel K, class T, int D>
__global__ void __launch_bounds__(threads_per_block(K), 1) flash_kernel(const FlashArgs a) {
  Problem p;
  int first;
  if (decode_block<rows_per_block(K), is_forward(K)>(a, blockIdx.x, p, first))
    run_block<K, T, D>(a, p, first, Unordered{});
}

template <Kernel K, class T, int D>
__global__ void __launch_bounds__(threads_per_block(K), 1) flash_fused_kernel(const __grid_constant__ FusedArgs f) {
  run_fused_block<rows_per_block(K), threads_per_block(K), is_forward(K)>(
      f, [](const FlashArgs& a, const Problem& p, int first, const BranchOrder& order) {
        run_block<K, T, D>(a, p, first, order);
      });
}

// Writes 1 where the GPU runs code with wgmma (the sm_90a machine code), 0 where it runs the PTX.
__global__ void wgmma_probe_kernel(int* compiled) { *compiled = LONGCTX_HAVE_WGMMA; }

// ---- host side of a launch (shared with the emulation test) -------------------------------------------

// Calls f(std::integral_constant<int, D>{}) with D the padded head dim the kernels use for `head_dim`.
template <class F>
void with_padded_head_dim(int64_t head_dim, F&& f) {
  if (head_dim <= 32) f(std::integral_constant<int, 32>{});
  else if (head_dim <= 64) f(std::integral_constant<int, 64>{});
  else f(std::integral_constant<int, 128>{});
}

// Whether a pass's first launch (branch 0 of the schedule) may overwrite its outputs: its branch selects
// every row. Forward: o and lse (local or spanning); backward: dk and dv, when branch 0 is local (a
// spanning launch writes the gathered keys' gradients, where keys no query of the rank sees get nothing).
// Then nothing fills them before; otherwise the pass's begin does, and every launch adds or merges.
inline bool first_launch_overwrites(const Schedule& schedule) {
  return !schedule.branches.empty() && schedule.branches.front().dilation == 1;
}

// FlashArgs::overwrite for `a`'s launch, checked: a launch that overwrites its outputs must select every
// row (or the rows it skips keep what was there), and a spanning backward writes the gathered keys'
// gradients, where keys no query of the rank sees get nothing.
inline int overwrite_flag(const FlashArgs& a, bool overwrite, bool backward) {
  if (overwrite && a.dilation != 1)
    throw InternalError("flash: a launch with dilation " + std::to_string(a.dilation) +
                        " cannot overwrite its outputs (it does not select every row)");
  if (overwrite && backward && a.spanning)
    throw InternalError("flash backward: a spanning launch cannot overwrite dk / dv");
  return overwrite ? 1 : 0;
}

// `a` with the forward's / backward's tensors; `overwrite`: see FlashArgs::overwrite.
inline FlashArgs with_forward_buffers(FlashArgs a, const void* q, const void* k, const void* v, float* o,
                                      float* lse, bool overwrite) {
  a.overwrite = overwrite_flag(a, overwrite, false);
  a.q = q;
  a.k = k;
  a.v = v;
  a.o = o;
  a.lse = lse;
  return a;
}
inline FlashArgs with_backward_buffers(FlashArgs a, const void* q, const void* k, const void* v, const void* dout,
                                       const float* lse, const float* delta, float* dq, float* dk, float* dv,
                                       bool overwrite) {
  a.overwrite = overwrite_flag(a, overwrite, true);
  a.q = q;
  a.k = k;
  a.v = v;
  a.dout = dout;
  a.lse = const_cast<float*>(lse);  // read only in the backward
  a.delta = delta;
  a.dq = dq;
  a.dk = dk;
  a.dv = dv;
  return a;
}

template <class T, int D>
constexpr size_t forward_smem_bytes() {
  return static_cast<size_t>(kFwdBlockQ + 4 * kFwdBlockK) * (D + kPad) * sizeof(T);
}
template <class T, int D>
constexpr size_t forward_wgmma_smem_bytes() {
  return static_cast<size_t>(kWgBlockQ + 4 * kWgBlockK) * D * sizeof(T);
}
template <class T, int D>
constexpr size_t backward_wgmma_smem_bytes() {
  return static_cast<size_t>(2 * kWgBwdBlockK * D + 4 * kWgBwdBlockQ * D + kWgBwdBlockK * kWgBwdBlockQ) * sizeof(T) +
         (4 * kWgBwdBlockQ + 2 * kWgBwdBlockQ * kWgDqStride<D>) * sizeof(float);
}
template <class T, int D>
constexpr size_t backward_smem_bytes() {
  return static_cast<size_t>(2 * kBwdBlockK + 4 * kBwdBlockQ) * (D + kPad) * sizeof(T) +
         static_cast<size_t>(kBwdBlockQ) * (kBwdBlockK + kPad) * sizeof(T) + 4 * kBwdBlockQ * sizeof(float);
}

// A kernel for element type T and a head dim: its entry (instantiated at the padded head dim), dynamic
// shared memory and block size.
struct KernelConfig {
  void (*kernel)(const FlashArgs) = nullptr;  // one branch per launch
  void (*fused)(FusedArgs) = nullptr;         // fused: its shared memory is smem + kFusedSlotBytes
  size_t smem = 0;
  int threads = 0;
};
// The fused kernels' extra shared memory (FusedSlot: the block's tile and its chunks), past the kernel's own.
constexpr size_t kFusedSlotBytes = sizeof(FusedSlot);
template <Kernel K, class T, int D>
KernelConfig config_of(size_t smem) {
  return {flash_kernel<K, T, D>, flash_fused_kernel<K, T, D>, smem, threads_per_block(K)};
}
template <class T>
KernelConfig kernel_config(Kernel which, int64_t head_dim) {
  KernelConfig k;
  with_padded_head_dim(head_dim, [&](auto d) {
    constexpr int D = decltype(d)::value;
    switch (which) {
      case Kernel::forward_mma: k = config_of<Kernel::forward_mma, T, D>(forward_smem_bytes<T, D>()); break;
      case Kernel::forward_wgmma: k = config_of<Kernel::forward_wgmma, T, D>(forward_wgmma_smem_bytes<T, D>()); break;
      case Kernel::backward_mma: k = config_of<Kernel::backward_mma, T, D>(backward_smem_bytes<T, D>()); break;
      case Kernel::backward_wgmma: k = config_of<Kernel::backward_wgmma, T, D>(backward_wgmma_smem_bytes<T, D>()); break;
    }
  });
  return k;
}

// The kernels count a segment's selected rows per head in int (FlashProblem): a branch selecting more
// (ceil(rows / r) of `rows` positions) than kMaxSelectedRows is refused (before: the count or a loop bound
// wrapped, blocks were skipped, and o and lse came back unwritten with exit 0; from two reviews).
inline void check_selected_rows(const Branch& branch, long long rows) {
  const long long selected_max = (rows + branch.dilation - 1) / branch.dilation;
  if (selected_max > kMaxSelectedRows)
    throw UsageError("--device cuda: branch w=" + std::to_string(branch.segment_length) + ", r=" +
                     std::to_string(branch.dilation) + " selects " + std::to_string(selected_max) +
                     " rows of one segment per head, above the CUDA kernels' " + std::to_string(kMaxSelectedRows) +
                     " (2^31 - 257; a shorter segment length or a larger dilation; the CPU backend has no such limit)");
}

// Arguments for branch `branch` over `dims` (local mode), and its grid size in blocks of
// `rows_per_block` sparse rows.
inline FlashArgs branch_args(const AttentionParams& params, const AttentionDims& dims, const Branch& branch,
                      int rows_per_block, long long& blocks) {
  FlashArgs a{};
  a.seq_len = dims.seq_len;
  a.segment = effective_segment_length(branch, dims.seq_len);
  a.dilation = branch.dilation;
  a.segments = segment_count(branch, dims.seq_len);
  a.batch = static_cast<int>(dims.batch);
  a.heads = static_cast<int>(dims.heads);
  a.head_dim = static_cast<int>(dims.head_dim);
  const long long selected_max = (a.segment + a.dilation - 1) / a.dilation;
  a.tiles = static_cast<int>((selected_max + rows_per_block - 1) / rows_per_block);
  a.causal = params.causal ? 1 : 0;
  a.offsets = params.offsets;
  a.scale = static_cast<float>(resolved_scale(params, dims.head_dim));
  check_selected_rows(branch, a.segment);
  blocks = dims.batch * a.segments * dims.heads * a.tiles;
  if (blocks > std::numeric_limits<int>::max())
    throw UsageError("--device cuda: " + std::to_string(blocks) + " blocks for one branch is above one launch's limit");
  return a;
}

// ---- fused launches (host side) ----
// The fused launches' counters: rows written per (batch, chunk of kOrderChunk positions, head).
inline long long order_chunks(const AttentionDims& dims) { return (dims.seq_len + kOrderChunk - 1) / kOrderChunk; }
inline size_t order_counters(const AttentionDims& dims) {
  return static_cast<size_t>(dims.batch * order_chunks(dims) * dims.heads);
}

// One launch of `launches` (local branches with their buffers, schedule order, each with its block count):
// the kernel's shared memory is `smem` (+ kFusedSlotBytes); `next_tile` (one unsigned) and `written`
// (order_counters) zeroed before it. `total` gets the launch's blocks.
inline FusedArgs fused_args(const std::vector<FlashArgs>& launches, const std::vector<long long>& blocks,
                            const AttentionDims& dims, size_t smem, unsigned* next_tile, int* written,
                            long long& total) {
  if (launches.empty() || launches.size() > static_cast<size_t>(kMaxFusedBranches) || blocks.size() != launches.size())
    throw InternalError("flash: a fused launch takes 1 to " + std::to_string(kMaxFusedBranches) + " branches, not " +
                        std::to_string(launches.size()));
  FusedArgs f{};
  f.branches = static_cast<int>(launches.size());
  for (size_t e = 0; e < launches.size(); ++e) {
    if (launches[e].spanning) throw InternalError("flash: a fused launch takes local branches only");
    if (launches[e].overwrite && e > 0) throw InternalError("flash: only branch 0 of a fused launch may overwrite");
    f.branch[e] = launches[e];
    f.first_block[e + 1] = f.first_block[e] + blocks[e];
  }
  total = f.first_block[launches.size()];
  if (total > std::numeric_limits<int>::max())
    throw UsageError("--device cuda: " + std::to_string(total) + " blocks for one launch is above its limit");
  f.next_tile = next_tile;
  f.written = written;
  f.chunks = order_chunks(dims);
  if (order_counters(dims) > static_cast<size_t>(std::numeric_limits<int>::max()))
    throw UsageError("--device cuda: the sequence is too long for a fused launch's counters (LONGCTX_FLASH_FUSE=off)");
  if (smem % 16 != 0) throw InternalError("flash: a kernel's shared memory is not a multiple of 16 bytes");
  f.slot = static_cast<unsigned>(smem);
  return f;
}

// Spanning mode: one segment of `group` ranks x dims.seq_len rows, this rank `member`. Blocks tile the
// query rows (forward: up to ceil(L / r) per head) or the keys (backward: up to ceil(g L / r)).
inline FlashArgs spanning_args(const AttentionParams& params, const AttentionDims& local, const Branch& branch, int member,
                        int group, bool over_keys, int rows_per_block, long long& blocks) {
  if (member < 0 || member >= group) throw InternalError("flash: member " + std::to_string(member) + " of a group of " + std::to_string(group));
  FlashArgs a = branch_args(params, local, branch, rows_per_block, blocks);
  a.spanning = 1;
  a.local_len = local.seq_len;
  a.member = member;
  a.group = group;
  a.segments = 1;
  check_selected_rows(branch, group * local.seq_len);  // the keys (n_k) of the gathered segment
  const long long rows = over_keys ? group * local.seq_len : local.seq_len;
  const long long selected_max = (rows + branch.dilation - 1) / branch.dilation;
  a.tiles = static_cast<int>((selected_max + rows_per_block - 1) / rows_per_block);
  blocks = local.batch * local.heads * a.tiles;
  if (blocks > std::numeric_limits<int>::max())
    throw UsageError("--device cuda: " + std::to_string(blocks) + " blocks for one branch is above one launch's limit");
  return a;
}

}  // namespace longctx::cuda::LONGCTX_KERNELS
