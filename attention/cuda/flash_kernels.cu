// Tensor-core dilated attention kernels: see flash_kernels.hpp for the contract, flash_kernels.cuh for
// the kernels; here the small helper kernels and the host side (launch geometry, dispatch).
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <string>
#include <vector>

#include "attention/cuda/flash_kernels.cuh"
#include "attention/cuda/flash_kernels.hpp"
#include "attention/cuda/flash_layout.hpp"
#include "runtime/core/check.hpp"
#include "runtime/core/error.hpp"

namespace longctx::cuda {
namespace {

using namespace kernels;

// delta[row] = sum_d dout[row, d] o[row, d]: one warp per row.
template <class T>
__global__ void delta_kernel(const T* __restrict__ dout, const float* __restrict__ o, float* __restrict__ delta,
                             long long rows, int head_dim) {
  const long long row = (static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x) / 32;
  const int lane = threadIdx.x % 32;
  if (row >= rows) return;
  float sum = 0.f;
  for (int d = lane; d < head_dim; d += 32)
    sum += Elem<T>::to(dout[row * head_dim + d]) * o[row * head_dim + d];
  for (int delta_lane = 16; delta_lane > 0; delta_lane /= 2) sum += __shfl_xor_sync(0xffffffffu, sum, delta_lane);
  if (lane == 0) delta[row] = sum;
}

template <class T>
__global__ void convert_kernel(const float* __restrict__ src, T* __restrict__ dst, size_t count) {
  for (size_t i = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < count;
       i += static_cast<size_t>(gridDim.x) * blockDim.x)
    dst[i] = Elem<T>::from(src[i]);
}

__global__ void fill_kernel(float* data, size_t count, float value) {
  for (size_t i = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < count;
       i += static_cast<size_t>(gridDim.x) * blockDim.x)
    data[i] = value;
}

unsigned grid_for(size_t count, unsigned threads) {
  const size_t blocks = (count + threads - 1) / threads;
  return static_cast<unsigned>(blocks < 65536 ? (blocks ? blocks : 1) : 65536);
}

void check_dtype(Dtype dtype) {
  if (dtype != Dtype::bf16 && dtype != Dtype::fp16)
    throw UsageError("--dtype " + to_string(dtype) + ": the tensor-core kernels take bf16 or fp16");
}

// bf16 / fp16 and a head dim the kernels take; UsageError naming the way out otherwise.
void check_kernel_inputs(Dtype dtype, int64_t head_dim) {
  check_dtype(dtype);
  if (head_dim <= kFlashMaxHeadDim) return;
  throw UsageError("--dtype bf16/fp16: head dim " + std::to_string(head_dim) + " is above the tensor-core kernels' " +
                   std::to_string(kFlashMaxHeadDim) + " (use --dtype fp32)");
}

// kernel_config for `dtype` (bf16 or fp16).
KernelConfig typed_config(Kernel which, Dtype dtype, int64_t head_dim) {
  return dtype == Dtype::bf16 ? kernel_config<__nv_bfloat16>(which, head_dim) : kernel_config<__half>(which, head_dim);
}

// Blocks of `k` the GPU runs at once: blocks per SM (occupancy calculator) times SMs.
long long resident_blocks(const KernelConfig& k) {
  int per_sm = 0, device = 0, sms = 0;
  LONGCTX_CHECK_CUDA(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, k.kernel, k.threads, k.smem));
  LONGCTX_CHECK_CUDA(cudaGetDevice(&device));
  LONGCTX_CHECK_CUDA(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  return static_cast<long long>(per_sm) * sms;
}

// kernel_config for `dtype`, with its shared memory allowed for the per-branch kernel or, `fused`, the
// fused one (a clear error where the GPU has less).
KernelConfig checked_config(Kernel which, Dtype dtype, int64_t head_dim, bool fused = false) {
  const KernelConfig k = typed_config(which, dtype, head_dim);
  const size_t smem = fused ? k.smem + kFusedSlotBytes : k.smem;
  int device = 0, allowed = 0;
  LONGCTX_CHECK_CUDA(cudaGetDevice(&device));
  LONGCTX_CHECK_CUDA(cudaDeviceGetAttribute(&allowed, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
  if (smem > static_cast<size_t>(allowed)) {
    throw UsageError("--dtype bf16/fp16: the " + std::string(is_forward(which) ? "forward" : "backward") +
                     " kernel for head dim " + std::to_string(head_dim) + " needs " + std::to_string(smem / 1024) +
                     " KiB of shared memory per block and this GPU allows " + std::to_string(allowed / 1024) +
                     " KiB (a head dim <= 64 needs less; --dtype fp32 runs the reference kernels)");
  }
  if (fused)
    LONGCTX_CHECK_CUDA(
        cudaFuncSetAttribute(k.fused, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)));
  else
    LONGCTX_CHECK_CUDA(
        cudaFuncSetAttribute(k.kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)));
  return k;
}

// One branch's launch.
void launch(Kernel which, Dtype dtype, const FlashArgs& a, long long blocks, int64_t head_dim, cudaStream_t stream) {
  const KernelConfig k = checked_config(which, dtype, head_dim);
  k.kernel<<<static_cast<unsigned>(blocks), k.threads, k.smem, stream>>>(a);
  LONGCTX_CHECK_CUDA(cudaGetLastError());
}

// Whether the current GPU runs this binary's sm_90a code (wgmma): a compute 9.0 GPU loads the sm_90a
// machine code, anything else JIT-compiles the compute_90 PTX, which has no wgmma. Probed once per device.
bool wgmma_compiled_here() {
  static int cached[64];
  static bool probed[64] = {};
  int device = 0;
  LONGCTX_CHECK_CUDA(cudaGetDevice(&device));
  if (device < 0 || device >= 64) return false;
  if (!probed[device]) {
    int* flag = nullptr;
    int host = 0;
    LONGCTX_CHECK_CUDA(cudaMalloc(&flag, sizeof(int)));
    wgmma_probe_kernel<<<1, 1>>>(flag);
    const cudaError_t launched = cudaGetLastError();
    if (launched == cudaSuccess) LONGCTX_CHECK_CUDA(cudaMemcpy(&host, flag, sizeof(int), cudaMemcpyDeviceToHost));
    LONGCTX_CHECK_CUDA(cudaFree(flag));
    cached[device] = launched == cudaSuccess && host == 1;
    probed[device] = true;
  }
  return cached[device] != 0;
}

// Whether to run the Hopper (wgmma) kernel: where it runs and the head dim is a multiple of 8, unless the
// environment variable `name` (LONGCTX_FLASH_FORWARD / LONGCTX_FLASH_BACKWARD) says mma; =wgmma forces
// it (for comparisons; where it cannot run, an error).
bool use_wgmma(const char* name, int64_t head_dim) {
  const char* env = std::getenv(name);
  const std::string choice = env ? env : "auto";
  if (choice != "auto" && choice != "mma" && choice != "wgmma")
    throw UsageError(std::string(name) + "=" + choice + ": expected auto, mma or wgmma");
  if (choice == "mma") return false;
  const bool possible = head_dim % 8 == 0 && wgmma_compiled_here();
  if (choice == "wgmma" && !possible)
    throw UsageError(std::string(name) + "=wgmma: needs a compute 9.0 GPU (H100 / H200) and a head dim that is a "
                     "multiple of 8 (head dim " + std::to_string(head_dim) + ")");
  return possible;
}

Kernel forward_kernel(int64_t head_dim) {
  return use_wgmma("LONGCTX_FLASH_FORWARD", head_dim) ? Kernel::forward_wgmma : Kernel::forward_mma;
}
Kernel backward_kernel(int64_t head_dim) {
  return use_wgmma("LONGCTX_FLASH_BACKWARD", head_dim) ? Kernel::backward_wgmma : Kernel::backward_mma;
}

// flash_fuses for the kernel `which` the pass runs.
bool fuses(Kernel which, const AttentionParams& params, const AttentionDims& dims, Dtype dtype) {
  const char* env = std::getenv("LONGCTX_FLASH_FUSE");
  const std::string choice = env ? env : "auto";
  if (choice != "auto" && choice != "on" && choice != "off")
    throw UsageError("LONGCTX_FLASH_FUSE=" + choice + ": expected auto, on or off");
  const std::vector<Branch>& branches = params.schedule.branches;
  if (choice == "off" || branches.size() < 2) return false;
  if (branches.size() > static_cast<size_t>(kMaxFusedBranches)) {
    if (choice == "on")
      throw UsageError("LONGCTX_FLASH_FUSE=on: a fused launch takes up to " + std::to_string(kMaxFusedBranches) +
                       " branches; the schedule has " + std::to_string(branches.size()));
    return false;
  }
  if (choice == "on") return true;
  // Not where the fused kernel spills registers (the per-branch one does not; ptxas for sm_90a: the
  // mma.sync backward at head dim 128, a family Hopper runs only when told to).
  const KernelConfig k = checked_config(which, dtype, dims.head_dim);
  cudaFuncAttributes attributes{};
  LONGCTX_CHECK_CUDA(cudaFuncGetAttributes(&attributes, k.fused));
  if (attributes.localSizeBytes > 0) return false;
  // Nor past a fused launch's limits (fused_args), where "on" is refused: per-branch launches have none of
  // them (before, auto chose the fused launch there, which then threw).
  if (order_counters(dims) > static_cast<size_t>(std::numeric_limits<int>::max())) return false;
  const long long resident = resident_blocks(k);
  bool small_branch = false;
  long long total = 0;
  for (const Branch& branch : branches) {
    long long blocks = 0;
    branch_args(params, dims, branch, rows_per_block(which), blocks);
    total += blocks;
    small_branch = small_branch || blocks < kFuseBelowWaves * resident;
  }
  return small_branch && total <= std::numeric_limits<int>::max();
}

// A pass over the schedule's (local) branches with the kernel `which`: all of them in one launch where
// `fuses` says so, else one launch each with at_boundary(b) before branch b's and at_boundary(branches)
// after the last. with_buffers(args, overwrite) gives a branch's args their tensors (branch 0 overwrites
// when `overwrite`). A fused launch's counters are allocated and zeroed in stream order and freed after it.
template <class WithBuffers>
void launch_pass(Kernel which, Dtype dtype, const AttentionParams& params, const AttentionDims& dims, bool overwrite,
                 WithBuffers&& with_buffers, const BranchBoundary& at_boundary, cudaStream_t stream) {
  const bool fused = fuses(which, params, dims, dtype);
  const std::vector<Branch>& branches = params.schedule.branches;
  std::vector<FlashArgs> launches;
  std::vector<long long> blocks(branches.size());
  for (size_t b = 0; b < branches.size(); ++b)
    launches.push_back(
        with_buffers(branch_args(params, dims, branches[b], rows_per_block(which), blocks[b]), overwrite && b == 0));
  if (!fused) {
    for (size_t b = 0; b < branches.size(); ++b) {
      if (at_boundary) at_boundary(b);
      launch(which, dtype, launches[b], blocks[b], dims.head_dim, stream);
    }
    if (at_boundary) at_boundary(branches.size());
    return;
  }
  const KernelConfig k = checked_config(which, dtype, dims.head_dim, true);
  long long total = 0;  // the arguments are checked (fused_args throws) before the scratch is allocated
  FusedArgs f = fused_args(launches, blocks, dims, k.smem, nullptr, nullptr, total);
  const size_t bytes = 16 + order_counters(dims) * sizeof(int);
  void* scratch = nullptr;
  LONGCTX_CHECK_CUDA(cudaMallocAsync(&scratch, bytes, stream));
  LONGCTX_CHECK_CUDA(cudaMemsetAsync(scratch, 0, bytes, stream));
  f.next_tile = static_cast<unsigned*>(scratch);
  f.written = reinterpret_cast<int*>(static_cast<unsigned char*>(scratch) + 16);
  k.fused<<<static_cast<unsigned>(total), k.threads, f.slot + kFusedSlotBytes, stream>>>(f);
  LONGCTX_CHECK_CUDA(cudaGetLastError());
  LONGCTX_CHECK_CUDA(cudaFreeAsync(scratch, stream));
}

}  // namespace

size_t element_bytes(Dtype dtype) { return dtype == Dtype::fp32 ? 4 : 2; }

FlashGrid flash_grid(const AttentionParams& params, const AttentionDims& dims, const Branch& branch, Dtype dtype,
                     bool backward) {
  check_kernel_inputs(dtype, dims.head_dim);
  const Kernel which = backward ? backward_kernel(dims.head_dim) : forward_kernel(dims.head_dim);
  FlashGrid grid;
  branch_args(params, dims, branch, rows_per_block(which), grid.blocks);
  grid.resident = resident_blocks(checked_config(which, dtype, dims.head_dim));
  return grid;
}

bool flash_fuses(const AttentionParams& params, const AttentionDims& dims, Dtype dtype, bool backward) {
  check_kernel_inputs(dtype, dims.head_dim);
  return fuses(backward ? backward_kernel(dims.head_dim) : forward_kernel(dims.head_dim), params, dims, dtype);
}

std::string flash_forward_kernel_name(int64_t head_dim) {
  return forward_kernel(head_dim) == Kernel::forward_wgmma ? "wgmma (sm_90a)" : "mma.sync";
}
std::string flash_backward_kernel_name(int64_t head_dim) {
  return backward_kernel(head_dim) == Kernel::backward_wgmma ? "wgmma (sm_90a)" : "mma.sync";
}

void convert_from_f32(Dtype dtype, const float* src, void* dst, size_t count, cudaStream_t stream) {
  check_dtype(dtype);
  if (count == 0) return;
  if (dtype == Dtype::bf16)
    convert_kernel<<<grid_for(count, 256), 256, 0, stream>>>(src, static_cast<__nv_bfloat16*>(dst), count);
  else
    convert_kernel<<<grid_for(count, 256), 256, 0, stream>>>(src, static_cast<__half*>(dst), count);
  LONGCTX_CHECK_CUDA(cudaGetLastError());
}

bool flash_forward_begin(const AttentionDims& dims, const Schedule& schedule, float* o, float* lse,
                         cudaStream_t stream) {
  // The kernel probe (a cudaFree, which waits for the whole device) here, before the sequence-parallel pass
  // starts an exchange, not at the first branch's launch with one in flight (from a review: a dead peer's
  // exchange left it waiting forever).
  wgmma_compiled_here();
  if (first_launch_overwrites(schedule)) return true;
  const size_t rows = static_cast<size_t>(dims.batch * dims.seq_len * dims.heads);
  LONGCTX_CHECK_CUDA(cudaMemsetAsync(o, 0, rows * dims.head_dim * sizeof(float), stream));
  fill_kernel<<<grid_for(rows, 256), 256, 0, stream>>>(lse, rows, -INFINITY);
  LONGCTX_CHECK_CUDA(cudaGetLastError());
  return false;
}

void flash_forward_branch(const AttentionParams& params, const AttentionDims& dims, const Branch& branch,
                          Dtype dtype, const void* q, const void* k, const void* v, float* o, float* lse,
                          bool overwrite, cudaStream_t stream) {
  check_kernel_inputs(dtype, dims.head_dim);
  long long blocks = 0;
  const Kernel which = forward_kernel(dims.head_dim);
  const FlashArgs a = branch_args(params, dims, branch, rows_per_block(which), blocks);
  launch(which, dtype, with_forward_buffers(a, q, k, v, o, lse, overwrite), blocks, dims.head_dim, stream);
}

void flash_forward_spanning(const AttentionParams& params, const AttentionDims& local, const Branch& branch,
                            int member, int group, Dtype dtype, const void* q, const void* k_tiles,
                            const void* v_tiles, float* o, float* lse, bool overwrite, cudaStream_t stream) {
  check_kernel_inputs(dtype, local.head_dim);
  long long blocks = 0;
  const Kernel which = forward_kernel(local.head_dim);
  const FlashArgs a = spanning_args(params, local, branch, member, group, false, rows_per_block(which), blocks);
  launch(which, dtype, with_forward_buffers(a, q, k_tiles, v_tiles, o, lse, overwrite), blocks, local.head_dim,
         stream);
}

void flash_forward(const AttentionParams& params, const AttentionDims& dims, Dtype dtype, const void* q,
                   const void* k, const void* v, float* o, float* lse, cudaStream_t stream,
                   const BranchBoundary& at_boundary) {
  check_kernel_inputs(dtype, dims.head_dim);
  const bool overwrite = flash_forward_begin(dims, params.schedule, o, lse, stream);
  launch_pass(
      forward_kernel(dims.head_dim), dtype, params, dims, overwrite,
      [&](const FlashArgs& a, bool first_overwrites) {
        return with_forward_buffers(a, q, k, v, o, lse, first_overwrites);
      },
      at_boundary, stream);
}

bool flash_backward_begin(const AttentionDims& dims, const Schedule& schedule, bool branch0_local, Dtype dtype,
                          const void* dout, const float* o, float* delta, float* dq, float* dk, float* dv,
                          cudaStream_t stream) {
  check_dtype(dtype);
  wgmma_compiled_here();  // (as flash_forward_begin)
  const size_t rows = static_cast<size_t>(dims.batch * dims.seq_len * dims.heads);
  const size_t bytes = rows * dims.head_dim * sizeof(float);
  const bool overwrite = branch0_local && first_launch_overwrites(schedule);
  LONGCTX_CHECK_CUDA(cudaMemsetAsync(dq, 0, bytes, stream));
  if (!overwrite) {
    LONGCTX_CHECK_CUDA(cudaMemsetAsync(dk, 0, bytes, stream));
    LONGCTX_CHECK_CUDA(cudaMemsetAsync(dv, 0, bytes, stream));
  }
  const unsigned delta_blocks = static_cast<unsigned>((rows * 32 + 255) / 256);
  if (dtype == Dtype::bf16)
    delta_kernel<<<delta_blocks, 256, 0, stream>>>(static_cast<const __nv_bfloat16*>(dout), o, delta,
                                                   static_cast<long long>(rows), static_cast<int>(dims.head_dim));
  else
    delta_kernel<<<delta_blocks, 256, 0, stream>>>(static_cast<const __half*>(dout), o, delta,
                                                   static_cast<long long>(rows), static_cast<int>(dims.head_dim));
  LONGCTX_CHECK_CUDA(cudaGetLastError());
  return overwrite;
}

void flash_backward_branch(const AttentionParams& params, const AttentionDims& dims, const Branch& branch,
                           Dtype dtype, const void* q, const void* k, const void* v, const void* dout,
                           const float* lse, const float* delta, float* dq, float* dk, float* dv,
                           bool overwrite, cudaStream_t stream) {
  check_kernel_inputs(dtype, dims.head_dim);
  long long blocks = 0;
  const Kernel which = backward_kernel(dims.head_dim);
  const FlashArgs a = branch_args(params, dims, branch, rows_per_block(which), blocks);
  launch(which, dtype, with_backward_buffers(a, q, k, v, dout, lse, delta, dq, dk, dv, overwrite), blocks,
         dims.head_dim, stream);
}

void flash_backward_spanning(const AttentionParams& params, const AttentionDims& local, const Branch& branch,
                             int member, int group, Dtype dtype, const void* q, const void* k_tiles,
                             const void* v_tiles, const void* dout, const float* lse, const float* delta, float* dq,
                             float* dk_tiles, float* dv_tiles, cudaStream_t stream) {
  check_kernel_inputs(dtype, local.head_dim);
  long long blocks = 0;
  const Kernel which = backward_kernel(local.head_dim);
  const FlashArgs a = spanning_args(params, local, branch, member, group, true, rows_per_block(which), blocks);
  launch(which, dtype, with_backward_buffers(a, q, k_tiles, v_tiles, dout, lse, delta, dq, dk_tiles, dv_tiles, false),
         blocks, local.head_dim, stream);
}

void flash_backward(const AttentionParams& params, const AttentionDims& dims, Dtype dtype, const void* q,
                    const void* k, const void* v, const void* dout, const float* o, const float* lse, float* delta,
                    float* dq, float* dk, float* dv, cudaStream_t stream, const BranchBoundary& at_boundary) {
  check_kernel_inputs(dtype, dims.head_dim);
  const bool overwrite = flash_backward_begin(dims, params.schedule, true, dtype, dout, o, delta, dq, dk, dv, stream);
  launch_pass(
      backward_kernel(dims.head_dim), dtype, params, dims, overwrite,
      [&](const FlashArgs& a, bool first_overwrites) {
        return with_backward_buffers(a, q, k, v, dout, lse, delta, dq, dk, dv, first_overwrites);
      },
      at_boundary, stream);
}

}  // namespace longctx::cuda
