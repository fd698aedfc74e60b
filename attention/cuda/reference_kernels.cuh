// Exact fp32 CUDA kernels for ../../../shared/spec/dilated-attention.md (see cuda_attention.hpp), the GPU's
// correctness reference; included by cuda_attention.cu and, for the host with LONGCTX_GPU_EMULATION, by
// the emulation test.
//
// One warp owns one (batch, query row p, head h). Lane l holds elements l, l + 32, ... of the head
// dimension. For every branch whose selection contains p in head h, the warp walks that branch's selected
// keys of p's segment (causal: up to p), with ONE running max / sum / accumulator across all branches:
// that is the spec's joint softmax over the multiset union of keys, so no per-branch mixing is needed.
// Backward: dq in registers; dk and dv by atomicAdd into zeroed buffers (the only non-deterministic
// summation order; fp32 tolerance).
#pragma once

#ifndef LONGCTX_GPU_EMULATION
#include <cuda_runtime.h>
#endif

#include <cmath>
#include <limits>
#include <string>

#include "attention/attention.hpp"
#include "runtime/core/error.hpp"

#ifdef LONGCTX_GPU_EMULATION
#define LONGCTX_REFERENCE_KERNELS reference_kernels_emulated
#else
#define LONGCTX_REFERENCE_KERNELS reference_kernels
#endif

namespace longctx::cuda::LONGCTX_REFERENCE_KERNELS {

constexpr int kWarp = 32;
constexpr int kMaxPerLane = 8;  // head_dim <= 256
constexpr int kMaxBranches = 16;
constexpr int kWarpsPerBlock = 4;

struct DeviceSchedule {
  int count = 0;
  long long segment[kMaxBranches] = {};  // w' = min(w, N)
  long long dilation[kMaxBranches] = {};
};

struct Geometry {
  long long batch, seq_len;
  int heads, head_dim;
  int causal;
  HeadOffsets offsets;
  float scale;
};

__device__ __forceinline__ float warp_sum(float x) {
  for (int delta = kWarp / 2; delta > 0; delta /= 2) x += __shfl_xor_sync(0xffffffffu, x, delta);
  return x;
}

// Calls visit(j) for every key j that branch `i` gives row p in head h, in increasing j.
template <class Visit>
__device__ __forceinline__ void for_each_key(const DeviceSchedule& s, const Geometry& g, int i, long long p, int h,
                                             Visit&& visit) {
  const long long w = s.segment[i], r = s.dilation[i];
  const long long begin = (p / w) * w;
  const long long rows = min(w, g.seq_len - begin);
  const long long offset = head_offset(h, r, g.heads, g.offsets);
  if ((p - begin) % r != offset) return;
  const long long end = g.causal ? p + 1 : begin + rows;
  for (long long j = begin + offset; j < end; j += r) visit(j);
}

// The (batch b, row p, head h) this thread's warp owns; rows of q, o, lse are laid out [B, N, H(, D)].
struct WarpItem {
  long long item, p, b;
  int lane, h;
  bool valid;
  __device__ explicit WarpItem(const Geometry& g)
      : item((static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x) / kWarp),
        p((item / g.heads) % g.seq_len),
        b(item / (g.heads * g.seq_len)),
        lane(static_cast<int>(threadIdx.x % kWarp)),
        h(static_cast<int>(item % g.heads)),
        valid(item < g.batch * g.seq_len * g.heads) {}
};

__global__ void forward_kernel(const float* __restrict__ q, const float* __restrict__ k, const float* __restrict__ v,
                               float* __restrict__ o, float* __restrict__ lse, DeviceSchedule s, Geometry g) {
  const WarpItem it(g);
  if (!it.valid) return;
  const long long item = it.item, p = it.p, b = it.b;
  const int lane = it.lane, h = it.h, D = g.head_dim;
  const size_t row = static_cast<size_t>(item) * D;
  float qs[kMaxPerLane], acc[kMaxPerLane];
#pragma unroll
  for (int e = 0; e < kMaxPerLane; ++e) {
    const int d = lane + e * kWarp;
    qs[e] = d < D ? q[row + d] * g.scale : 0.f;
    acc[e] = 0.f;
  }
  float m = -INFINITY, l = 0.f;
  for (int i = 0; i < s.count; ++i) {
    for_each_key(s, g, i, p, h, [&](long long j) {
      const size_t key = ((static_cast<size_t>(b) * g.seq_len + j) * g.heads + h) * D;
      float dot = 0.f;
#pragma unroll
      for (int e = 0; e < kMaxPerLane; ++e) {
        const int d = lane + e * kWarp;
        if (d < D) dot += qs[e] * k[key + d];
      }
      dot = warp_sum(dot);
      // fmaxf drops a NaN: a NaN first score (m = -inf) then weighed 0 and the row came out 0 / -inf.
      const float m_new = dot != dot ? dot : fmaxf(m, dot);
      // While every score so far is -inf, nothing is kept (exp(-inf - -inf) would be NaN).
      const float keep = m_new == -INFINITY ? 1.f : expf(m - m_new);
      const float weight = m_new == -INFINITY ? 0.f : expf(dot - m_new);
      l = l * keep + weight;
#pragma unroll
      for (int e = 0; e < kMaxPerLane; ++e) {
        const int d = lane + e * kWarp;
        if (d < D) acc[e] = acc[e] * keep + weight * v[key + d];
      }
      m = m_new;
    });
  }
  const float inv = l != 0.f ? 1.f / l : 0.f;  // l = 0: no keys; NaN (from q or k) stays NaN
#pragma unroll
  for (int e = 0; e < kMaxPerLane; ++e) {
    const int d = lane + e * kWarp;
    if (d < D) o[row + d] = acc[e] * inv;
  }
  if (lane == 0) lse[item] = l != 0.f ? m + logf(l) : -INFINITY;
}

__global__ void backward_kernel(const float* __restrict__ q, const float* __restrict__ k,
                                const float* __restrict__ v, const float* __restrict__ o,
                                const float* __restrict__ lse, const float* __restrict__ dout,
                                float* __restrict__ dq, float* __restrict__ dk, float* __restrict__ dv,
                                DeviceSchedule s, Geometry g) {
  const WarpItem it(g);
  if (!it.valid) return;
  const long long item = it.item, p = it.p, b = it.b;
  const int lane = it.lane, h = it.h, D = g.head_dim;
  const size_t row = static_cast<size_t>(item) * D;
  // qs: q scaled before the dot product, as the forward scales it, so that both passes round every score
  // alike (scaling the dot product instead made P ~ e^-64 for a row's largest key at |score| ~ 1e9).
  float qv[kMaxPerLane], qs[kMaxPerLane], dov[kMaxPerLane], dqa[kMaxPerLane];
  float delta = 0.f;
#pragma unroll
  for (int e = 0; e < kMaxPerLane; ++e) {
    const int d = lane + e * kWarp;
    qv[e] = d < D ? q[row + d] : 0.f;
    qs[e] = d < D ? q[row + d] * g.scale : 0.f;
    dov[e] = d < D ? dout[row + d] : 0.f;
    dqa[e] = 0.f;
    if (d < D) delta += dov[e] * o[row + d];
  }
  delta = warp_sum(delta);
  const float row_lse = lse[item];
  if (row_lse != -INFINITY) {
    for (int i = 0; i < s.count; ++i) {
      for_each_key(s, g, i, p, h, [&](long long j) {
        const size_t key = ((static_cast<size_t>(b) * g.seq_len + j) * g.heads + h) * D;
        float dot = 0.f, dp = 0.f;
#pragma unroll
        for (int e = 0; e < kMaxPerLane; ++e) {
          const int d = lane + e * kWarp;
          if (d < D) {
            dot += qs[e] * k[key + d];
            dp += dov[e] * v[key + d];
          }
        }
        dot = warp_sum(dot);
        dp = warp_sum(dp);
        float prob = expf(dot - row_lse);
        prob = prob > 1.f ? 1.f : prob;  // <= 1 exactly (lse >= this score); kept as the flash kernels keep it
        const float ds = prob * (dp - delta) * g.scale;
#pragma unroll
        for (int e = 0; e < kMaxPerLane; ++e) {
          const int d = lane + e * kWarp;
          if (d < D) {
            dqa[e] += ds * k[key + d];
            atomicAdd(&dk[key + d], ds * qv[e]);
            atomicAdd(&dv[key + d], prob * dov[e]);
          }
        }
      });
    }
  }
#pragma unroll
  for (int e = 0; e < kMaxPerLane; ++e) {
    const int d = lane + e * kWarp;
    if (d < D) dq[row + d] = dqa[e];
  }
}

struct Launch {
  DeviceSchedule schedule;
  Geometry geometry;
  unsigned blocks;
};

inline Launch prepare(const AttentionParams& params, const AttentionDims& dims) {
  if (dims.head_dim > kWarp * kMaxPerLane)
    throw UsageError("--device cuda: head dim " + std::to_string(dims.head_dim) + " is above the fp32 kernels' " +
                     std::to_string(kWarp * kMaxPerLane));
  if (params.schedule.branches.size() > static_cast<size_t>(kMaxBranches))
    throw UsageError("--device cuda: at most " + std::to_string(kMaxBranches) + " branches");
  Launch launch;
  launch.schedule.count = static_cast<int>(params.schedule.branches.size());
  for (int i = 0; i < launch.schedule.count; ++i) {
    const Branch& branch = params.schedule.branches[static_cast<size_t>(i)];
    launch.schedule.segment[i] = effective_segment_length(branch, dims.seq_len);
    launch.schedule.dilation[i] = branch.dilation;
  }
  launch.geometry = {dims.batch, dims.seq_len, static_cast<int>(dims.heads), static_cast<int>(dims.head_dim),
                     params.causal ? 1 : 0, params.offsets,
                     static_cast<float>(resolved_scale(params, dims.head_dim))};
  const long long items = dims.batch * dims.seq_len * dims.heads;
  const long long blocks = (items + kWarpsPerBlock - 1) / kWarpsPerBlock;
  if (blocks > std::numeric_limits<int>::max()) throw UsageError("--device cuda: problem too large for one launch");
  launch.blocks = static_cast<unsigned>(blocks);
  return launch;
}

}  // namespace longctx::cuda::LONGCTX_REFERENCE_KERNELS
