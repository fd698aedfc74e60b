// The CUDA backend's host side: device queries, CudaAttention (fp32 reference kernels of
// reference_kernels.cuh, bf16 / fp16 tensor-core kernels of flash_kernels.hpp) and the device bench.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#ifdef LONGCTX_HAVE_NCCL_HEADER
#include <nccl.h>
#endif

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "attention/cuda/cuda_attention.hpp"
#include "attention/cuda/reference_kernels.cuh"
#include "attention/cuda/device_memory.hpp"
#include "attention/cuda/flash_kernels.hpp"
#include "runtime/core/check.hpp"
#include "runtime/core/error.hpp"
#include "runtime/core/stats.hpp"

namespace longctx {
namespace {

using namespace cuda::LONGCTX_REFERENCE_KERNELS;

using cuda::DeviceMemory;

// Forward / backward on device pointers in `dtype` (fp32: the exact kernels above; bf16 / fp16: the
// tensor-core kernels). `delta` is scratch of B*N*H floats (unused by fp32).
// `at_boundary`: between the half-precision kernels' launches (cuda::BranchBoundary; the fp32 kernel takes
// all branches in one launch).
void forward_on_device(const AttentionParams& params, const AttentionDims& dims, Dtype dtype, const void* q,
                       const void* k, const void* v, float* o, float* lse, cudaStream_t stream,
                       const cuda::BranchBoundary& at_boundary = nullptr) {
  if (dtype != Dtype::fp32) {
    cuda::flash_forward(params, dims, dtype, q, k, v, o, lse, stream, at_boundary);
    return;
  }
  const Launch launch = prepare(params, dims);
  forward_kernel<<<launch.blocks, kWarpsPerBlock * kWarp, 0, stream>>>(
      static_cast<const float*>(q), static_cast<const float*>(k), static_cast<const float*>(v), o, lse,
      launch.schedule, launch.geometry);
  LONGCTX_CHECK_CUDA(cudaGetLastError());
}

void backward_on_device(const AttentionParams& params, const AttentionDims& dims, Dtype dtype, const void* q,
                        const void* k, const void* v, const void* dout, const float* o, const float* lse,
                        float* delta, float* dq, float* dk, float* dv, cudaStream_t stream,
                        const cuda::BranchBoundary& at_boundary = nullptr) {
  if (dtype != Dtype::fp32) {
    cuda::flash_backward(params, dims, dtype, q, k, v, dout, o, lse, delta, dq, dk, dv, stream, at_boundary);
    return;
  }
  const Launch launch = prepare(params, dims);
  const size_t bytes = static_cast<size_t>(dims.batch * dims.seq_len * dims.heads * dims.head_dim) * sizeof(float);
  LONGCTX_CHECK_CUDA(cudaMemsetAsync(dk, 0, bytes, stream));
  LONGCTX_CHECK_CUDA(cudaMemsetAsync(dv, 0, bytes, stream));
  backward_kernel<<<launch.blocks, kWarpsPerBlock * kWarp, 0, stream>>>(
      static_cast<const float*>(q), static_cast<const float*>(k), static_cast<const float*>(v), o, lse,
      static_cast<const float*>(dout), dq, dk, dv, launch.schedule, launch.geometry);
  LONGCTX_CHECK_CUDA(cudaGetLastError());
}

__device__ __forceinline__ void store_as(float* p, float x) { *p = x; }
__device__ __forceinline__ void store_as(__nv_bfloat16* p, float x) { *p = __float2bfloat16_rn(x); }
__device__ __forceinline__ void store_as(__half* p, float x) { *p = __float2half_rn(x); }

// The bench's inputs: element i of tensor `which` is a hash of (seed, which, i) mapped to [-1, 1).
template <class T>
__global__ void seeded_fill_kernel(T* data, size_t count, unsigned long long seed, unsigned long long which) {
  for (size_t i = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < count;
       i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    unsigned long long z = seed * 0x9E3779B97F4A7C15ull + which * 0xD1B54A32D192ED03ull + i;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    store_as(data + i, static_cast<float>(static_cast<double>(z >> 40) / 8388608.0 - 1.0));
  }
}

void seeded_fill(Dtype dtype, void* data, size_t count, uint64_t seed, uint64_t which) {
  const unsigned blocks = static_cast<unsigned>(std::min<size_t>((count + 255) / 256, 65536));
  if (dtype == Dtype::bf16)
    seeded_fill_kernel<<<blocks, 256>>>(static_cast<__nv_bfloat16*>(data), count, seed, which);
  else if (dtype == Dtype::fp16)
    seeded_fill_kernel<<<blocks, 256>>>(static_cast<__half*>(data), count, seed, which);
  else
    seeded_fill_kernel<<<blocks, 256>>>(static_cast<float*>(data), count, seed, which);
  LONGCTX_CHECK_CUDA(cudaGetLastError());
}

}  // namespace

bool cuda_compiled_in() { return true; }

int cuda_device_count() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no device" error
    return 0;
  }
  return count;
}

std::string cuda_description() {
  int runtime = 0, driver = 0;
  cudaRuntimeGetVersion(&runtime);
  cudaDriverGetVersion(&driver);
  std::ostringstream out;
  out << "runtime " << runtime / 1000 << "." << (runtime % 1000) / 10 << ", driver ";
  if (driver > 0)
    out << driver / 1000 << "." << (driver % 1000) / 10;
  else
    out << "none";
  const int count = cuda_device_count();
  out << ", " << count << " device(s)";
  for (int i = 0; i < count; ++i) {
    cudaDeviceProp prop{};
    if (cudaGetDeviceProperties(&prop, i) == cudaSuccess)
      out << (i ? "; " : ": ") << prop.name << " (sm_" << prop.major << prop.minor << ")";
  }
  return out.str();
}

std::string cuda_device_label(int local_rank) {
  const int count = cuda_device_count();
  if (count == 0) return "";
  const int index = local_rank % count;
  cudaDeviceProp prop{};
  if (cudaGetDeviceProperties(&prop, index) != cudaSuccess) return "cuda:" + std::to_string(index);
  char uuid[16];
  std::snprintf(uuid, sizeof uuid, "GPU-%02x%02x%02x%02x", static_cast<unsigned char>(prop.uuid.bytes[0]),
                static_cast<unsigned char>(prop.uuid.bytes[1]), static_cast<unsigned char>(prop.uuid.bytes[2]),
                static_cast<unsigned char>(prop.uuid.bytes[3]));
  std::string name = prop.name;
  for (char& c : name)
    if (c == ' ') c = '_';
  return "cuda:" + std::to_string(index) + " " + name + " " + uuid;
}

// The headers the build saw; the library is loaded at run time by comm/device_comm_cuda.cpp.
std::string nccl_version() {
#ifdef LONGCTX_HAVE_NCCL_HEADER
  return std::to_string(NCCL_MAJOR) + "." + std::to_string(NCCL_MINOR) + "." + std::to_string(NCCL_PATCH) +
         " headers";
#else
  return "not found";
#endif
}

CudaAttention::CudaAttention(Dtype dtype) : dtype_(dtype) {
  if (cuda_device_count() == 0)
    throw UsageError("--device cuda: no CUDA device is visible to this process (allowed here: cpu)");
}

void CudaAttention::forward(const AttentionParams& params, const Tensor& q, const Tensor& k, const Tensor& v,
                            Tensor& o, Tensor& lse) {
  const AttentionDims dims = check_qkv(q, k, v);
  warn_coverage(params.schedule, dims.heads, params.offsets, dims.seq_len);  // as the cpu backend does
  cuda::on_device_forward(dtype_, q, k, v, o, lse,
                          [&](const AttentionDims& dims, const void* dq, const void* dk, const void* dv, float* d_o,
                              float* d_lse) { forward_on_device(params, dims, dtype_, dq, dk, dv, d_o, d_lse, nullptr); });
}

void CudaAttention::backward(const AttentionParams& params, const Tensor& q, const Tensor& k, const Tensor& v,
                             const Tensor& o, const Tensor& lse, const Tensor& dout, Tensor& dq, Tensor& dk,
                             Tensor& dv) {
  cuda::on_device_backward(
      dtype_, q, k, v, o, lse, dout, dq, dk, dv,
      [&](const AttentionDims& dims, const void* d_q, const void* d_k, const void* d_v, const void* d_dout,
          const float* d_o, const float* d_lse, float* d_dq, float* d_dk, float* d_dv) {
        const DeviceMemory delta(static_cast<size_t>(lse.size()) * sizeof(float));
        backward_on_device(params, dims, dtype_, d_q, d_k, d_v, d_dout, d_o, d_lse, delta.get<float>(), d_dq, d_dk,
                           d_dv, nullptr);
        LONGCTX_CHECK_CUDA(cudaDeviceSynchronize());  // before delta is freed
      });
}

namespace {

// CUDA events between one pass's branch launches (cuda::BranchBoundary), and each branch's seconds over
// the passes.
class BranchTimes {
 public:
  explicit BranchTimes(size_t branches) : marks_(branches + 1), seconds_(branches) {
    for (cudaEvent_t& e : marks_) LONGCTX_CHECK_CUDA(cudaEventCreate(&e));
  }
  ~BranchTimes() {
    for (cudaEvent_t& e : marks_) cudaEventDestroy(e);
  }
  BranchTimes(const BranchTimes&) = delete;
  BranchTimes& operator=(const BranchTimes&) = delete;
  cuda::BranchBoundary recorder() {
    return [this](size_t b) { LONGCTX_CHECK_CUDA(cudaEventRecord(marks_[b], nullptr)); };
  }
  // After a pass whose events have completed.
  void collect() {
    for (size_t i = 0; i + 1 < marks_.size(); ++i) {
      float ms = 0;
      LONGCTX_CHECK_CUDA(cudaEventElapsedTime(&ms, marks_[i], marks_[i + 1]));
      seconds_[i].push_back(ms * 1e-3);
    }
  }
  double median(size_t branch) const { return longctx::median(seconds_[branch]); }

 private:
  std::vector<cudaEvent_t> marks_;
  std::vector<std::vector<double>> seconds_;
};

}  // namespace

CudaBenchFigures cuda_bench_attention(const AttentionParams& params, const AttentionDims& dims, Dtype dtype,
                                      int warmup, int iters, bool backward, uint64_t seed) {
  if (cuda_device_count() == 0)
    throw UsageError("--device cuda: no CUDA device is visible to this process (allowed here: cpu)");
  const size_t n = static_cast<size_t>(dims.batch * dims.seq_len * dims.heads * dims.head_dim);
  const size_t rows = static_cast<size_t>(dims.batch * dims.seq_len * dims.heads);
  const size_t in_bytes = n * cuda::element_bytes(dtype), out_bytes = n * sizeof(float);
  CudaBenchFigures figures;
  figures.device_bytes = 3 * in_bytes + out_bytes + rows * sizeof(float) +
                         (backward ? in_bytes + 3 * out_bytes + rows * sizeof(float) : 0);
  DeviceMemory q(in_bytes), k(in_bytes), v(in_bytes), o(out_bytes), lse(rows * sizeof(float));
  DeviceMemory dout(backward ? in_bytes : 0), dq(backward ? out_bytes : 0), dk(backward ? out_bytes : 0),
      dv(backward ? out_bytes : 0), delta(backward ? rows * sizeof(float) : 0);
  seeded_fill(dtype, q.get(), n, seed, 0);
  seeded_fill(dtype, k.get(), n, seed, 1);
  seeded_fill(dtype, v.get(), n, seed, 2);
  if (backward) seeded_fill(dtype, dout.get(), n, seed, 3);
  cudaEvent_t start, stop;
  LONGCTX_CHECK_CUDA(cudaEventCreate(&start));
  LONGCTX_CHECK_CUDA(cudaEventCreate(&stop));
  auto timed = [&](auto&& body) {
    LONGCTX_CHECK_CUDA(cudaEventRecord(start, nullptr));
    body();
    LONGCTX_CHECK_CUDA(cudaEventRecord(stop, nullptr));
    LONGCTX_CHECK_CUDA(cudaEventSynchronize(stop));
    float ms = 0;
    LONGCTX_CHECK_CUDA(cudaEventElapsedTime(&ms, start, stop));
    return ms * 1e-3;
  };
  // Half precision, one launch per branch: events between the launches too, in the same passes.
  const size_t nb = params.schedule.branches.size();
  const bool half = dtype != Dtype::fp32;
  const bool fused_fwd = half && cuda::flash_fuses(params, dims, dtype, false);
  const bool fused_bwd = backward && half && cuda::flash_fuses(params, dims, dtype, true);
  const bool per_branch = half && !fused_fwd && !fused_bwd;
  figures.launches_fwd = half && !fused_fwd ? static_cast<int>(nb) : 1;
  figures.launches_bwd = backward ? (half && !fused_bwd ? static_cast<int>(nb) : 1) : 0;
  BranchTimes fwd_branches(nb), bwd_branches(nb);
  std::vector<double> fwd, bwd;
  for (int it = 0; it < warmup + iters; ++it) {
    const bool kept = it >= warmup;
    const double f = timed([&] {
      forward_on_device(params, dims, dtype, q.get(), k.get(), v.get(), o.get<float>(), lse.get<float>(), nullptr,
                        per_branch ? fwd_branches.recorder() : nullptr);
    });
    if (kept) fwd.push_back(f);
    if (kept && per_branch) fwd_branches.collect();
    if (backward) {
      const double b = timed([&] {
        backward_on_device(params, dims, dtype, q.get(), k.get(), v.get(), dout.get(), o.get<float>(),
                           lse.get<float>(), delta.get<float>(), dq.get<float>(), dk.get<float>(), dv.get<float>(),
                           nullptr, per_branch ? bwd_branches.recorder() : nullptr);
      });
      if (kept) bwd.push_back(b);
      if (kept && per_branch) bwd_branches.collect();
    }
  }
  for (size_t i = 0; per_branch && i < nb; ++i) {
    CudaBenchFigures::BranchFigures branch;
    const cuda::FlashGrid f = cuda::flash_grid(params, dims, params.schedule.branches[i], dtype, false);
    branch.seconds_fwd = fwd_branches.median(i);
    branch.blocks_fwd = f.blocks;
    branch.resident_fwd = f.resident;
    if (backward) {
      const cuda::FlashGrid b = cuda::flash_grid(params, dims, params.schedule.branches[i], dtype, true);
      branch.seconds_bwd = bwd_branches.median(i);
      branch.blocks_bwd = b.blocks;
      branch.resident_bwd = b.resident;
    }
    figures.branches.push_back(branch);
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  figures.forward_kernel = dtype == Dtype::fp32 ? "fp32 reference" : cuda::flash_forward_kernel_name(dims.head_dim);
  if (backward)
    figures.backward_kernel = dtype == Dtype::fp32 ? "fp32 reference" : cuda::flash_backward_kernel_name(dims.head_dim);
  figures.seconds_fwd = median(fwd);
  figures.seconds_bwd = backward ? median(bwd) : 0;
  return figures;
}

}  // namespace longctx
