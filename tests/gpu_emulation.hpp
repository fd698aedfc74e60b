// Runs CUDA kernel source on the CPU, for tests: the CUDA names the tensor-core kernels use
// (attention/cuda/flash_kernels.cuh) as host code, one fiber per GPU thread of a block (switched at every
// barrier), blocks one after another. __syncthreads / __syncwarp are barriers; the warp instructions (mma.sync m16n8k16,
// ldmatrix .x4 / .x4.trans, shfl.xor) are collective: every lane posts its operands, then computes its
// result from all of them by the fragment layouts of the PTX ISA, written out here a second time from
// the ISA's tables (not shared with the kernels); cp.async copies are queued per commit group and land
// at the wait that covers them. bf16 / fp16 are bit-exact
// (round to nearest even). Shared memory starts as 0xff bytes (NaN in bf16 and fp16), so a read of a tile
// element the kernel never wrote shows up in the results.
#pragma once

#define LONGCTX_GPU_EMULATION 1

#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>

// ---- CUDA keywords and built-in variables --------------------------------------------------------------
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __grid_constant__

struct EmulatedDim3 {
  unsigned x = 0, y = 0, z = 0;
};

namespace longctx::cuda::emulation {

extern thread_local EmulatedDim3 thread_idx, block_idx, block_dim, grid_dim;

unsigned char* shared_memory();
void sync_block();
void sync_warp();
float shfl_xor(float value, int lane_mask);
void mma_m16n8k16(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1, bool bf16);
void ldmatrix_x4(uint32_t (&r)[4], const void* address, bool trans);
// cp.async: copy16 queues a 16-byte copy (zero fill when !valid) in the thread's open group;
// copy_commit closes the group; copy_wait(n) performs all but the newest n closed groups.
void copy16(void* smem, const void* gmem, bool valid);
void copy_commit();
void copy_wait(int newest_left_pending);
float atomic_add(float* address, float value);
// float2 atomicAdd (sm_90): an address not 8-byte aligned is a fault there, an abort here.
void atomic_add2(float* address, float x, float y);

// The shared-window address of a pointer into the block's shared memory (__cvta_generic_to_shared).
uint32_t shared_address(const void* p);
// wgmma (sm_90a), per warpgroup of 128 threads: wgmma_rs posts this thread's accumulators d[0 .. n/2) and
// A registers; the warpgroup's product D (+)= A (64 x 16, registers) B (16 x n, shared memory through a
// descriptor: no-swizzle canonical layouts only, K-major or, with trans_b, MN-major) is QUEUED, and runs
// at the wgmma_wait that covers its commit group: B is read from shared memory then, and the accumulators
// change then, so a kernel that reads them or rewrites B before its wait sees what the GPU could; one that
// writes the accumulators or A's registers before the wait aborts (the GPU reads them while in flight).
void wgmma_fence();
void wgmma_rs(float* d, int n, const uint32_t (&a)[4], uint64_t desc_b, bool accumulate, bool trans_b, bool bf16);
// The same with A from shared memory too (K-major, or MN-major with trans_a).
void wgmma_ss(float* d, int n, uint64_t desc_a, uint64_t desc_b, bool accumulate, bool trans_a, bool trans_b,
              bool bf16);
void wgmma_commit();
void wgmma_wait(int newest_left_pending);
// bar.sync on the calling thread's warpgroup alone (128 threads).
void warpgroup_sync();
// cp.reduce.async.bulk .add.f32 from shared to global memory (sm_90), per thread: bulk_reduce_add queues
// `bytes` (a multiple of 16; both addresses 16-byte aligned, else a fault) in the thread's open bulk
// group; bulk_commit closes it; bulk_wait(n) (wait_group and wait_group.read alike) performs all but the
// newest n closed groups. The GPU may read the source any time between the issue and the wait, so a
// source that changed in between (written after the issue, or rewritten before the wait) is a fault. A
// thread that ends with bulk groups not waited for is an error.
void bulk_reduce_add(float* gmem, const float* smem, uint32_t bytes);
void bulk_commit();
void bulk_wait(int newest_left_pending);

// A fused launch's order counters. add_count adds `value` rows of branch `branch`; wait_for_count(counter,
// expected, branch) is a block of that branch waiting for *counter >= expected. Blocks run one after
// another here, so every earlier block has finished: a wait must expect exactly the rows that earlier
// branches' blocks counted there (more: on a GPU it would spin until its watchdog; fewer: it would
// write before them), else a fault. Counts are kept per launch.
void add_count(int* counter, int value, int branch);
void wait_for_count(const int* counter, int expected, int branch);

// Runs body() as `threads` threads of each of `blocks` blocks, with `shared_bytes` of shared memory each.
void launch(unsigned blocks, unsigned threads, size_t shared_bytes, const std::function<void()>& body);

// bf16 / fp16 bits <-> float, round to nearest even.
uint16_t bf16_bits(float x);
float bf16_value(uint16_t bits);
uint16_t fp16_bits(float x);
float fp16_value(uint16_t bits);

}  // namespace longctx::cuda::emulation

#define threadIdx (::longctx::cuda::emulation::thread_idx)
#define blockIdx (::longctx::cuda::emulation::block_idx)
#define blockDim (::longctx::cuda::emulation::block_dim)
#define gridDim (::longctx::cuda::emulation::grid_dim)

// CUDA's global min / max overloads.
template <class T> inline T min(T a, T b) { return b < a ? b : a; }
template <class T> inline T max(T a, T b) { return a < b ? b : a; }

inline void __syncthreads() { longctx::cuda::emulation::sync_block(); }
inline void __syncwarp(unsigned = 0xffffffffu) { longctx::cuda::emulation::sync_warp(); }
inline float __shfl_xor_sync(unsigned, float value, int lane_mask) {
  return longctx::cuda::emulation::shfl_xor(value, lane_mask);
}
inline float atomicAdd(float* address, float value) { return longctx::cuda::emulation::atomic_add(address, value); }
struct float2 {
  float x, y;
};
inline float2 make_float2(float x, float y) { return {x, y}; }
inline float2 atomicAdd(float2* address, float2 value) {
  const float2 old = *address;
  longctx::cuda::emulation::atomic_add2(&address->x, value.x, value.y);
  return old;
}

// ---- bf16 / fp16 ------------------------------------------------------------------------------------------
struct __nv_bfloat16 {
  uint16_t bits;
};
struct __nv_bfloat162 {
  __nv_bfloat16 x, y;  // x in the low half
};
struct __half {
  uint16_t bits;
};
struct __half2 {
  __half x, y;
};
inline __nv_bfloat16 __float2bfloat16_rn(float x) { return {longctx::cuda::emulation::bf16_bits(x)}; }
inline float __bfloat162float(__nv_bfloat16 x) { return longctx::cuda::emulation::bf16_value(x.bits); }
inline __nv_bfloat162 __floats2bfloat162_rn(float lo, float hi) {
  return {__float2bfloat16_rn(lo), __float2bfloat16_rn(hi)};
}
inline __half __float2half_rn(float x) { return {longctx::cuda::emulation::fp16_bits(x)}; }
inline float __half2float(__half x) { return longctx::cuda::emulation::fp16_value(x.bits); }
inline __half2 __floats2half2_rn(float lo, float hi) { return {__float2half_rn(lo), __float2half_rn(hi)}; }
