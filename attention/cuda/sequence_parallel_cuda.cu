// Sequence-parallel dilated attention on GPUs: see sequence_parallel_cuda.hpp.
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "attention/cuda/device_memory.hpp"
#include "attention/cuda/flash_kernels.hpp"
#include "attention/cuda/flash_layout.hpp"
#include "attention/cuda/sequence_parallel_cuda.hpp"
#include "attention/sequence_parallel.hpp"
#include "runtime/core/check.hpp"
#include "runtime/core/error.hpp"

namespace longctx {
namespace {

using Clock = std::chrono::steady_clock;
double since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

using cuda::DeviceMemory;

// dst rows (first + t stride) of a [*, D] float tensor += src rows t (contiguous).
__global__ void add_rows_kernel(float* __restrict__ dst, const float* __restrict__ src, long long first,
                                long long stride, long long rows, int head_dim) {
  const long long total = rows * head_dim;
  for (long long i = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += static_cast<long long>(gridDim.x) * blockDim.x) {
    const long long t = i / head_dim, d = i % head_dim;
    dst[(first + t * stride) * head_dim + d] += src[i];
  }
}

void add_rows(float* dst, const float* src, int64_t first, int64_t stride, int64_t rows, int64_t head_dim) {
  if (rows == 0) return;
  const long long total = rows * head_dim;
  const unsigned blocks = static_cast<unsigned>(std::min<long long>((total + 255) / 256, 65536));
  add_rows_kernel<<<blocks, 256>>>(dst, src, first, stride, rows, static_cast<int>(head_dim));
  LONGCTX_CHECK_CUDA(cudaGetLastError());
}

// Member-major blocks (member after member, each [K: B][H][rows][D] then V) <-> the per-(b, h) tiles in
// position order, for elements of `es` bytes: to_tiles after the all-gather, back for the reduce-scatter.
void reorder(const cuda::SpanLayout& lay, size_t es, char* blocks, char* k_tiles, char* v_tiles, bool to_tiles) {
  size_t block = 0;
  for (int m = 0; m < lay.group; ++m) {
    const size_t half = static_cast<size_t>(lay.block_elements(m)) * es / 2;
    for (int64_t b = 0; b < lay.batch; ++b)
      for (int64_t h = 0; h < lay.heads; ++h) {
        const int64_t n = lay.rows_of(m, h);
        if (n == 0) continue;
        char* in_block = blocks + block + static_cast<size_t>(lay.block_offset(m, b, h)) * es;
        const size_t tile = static_cast<size_t>(lay.tile_offset(m, b, h)) * es;
        const size_t bytes = static_cast<size_t>(n * lay.head_dim) * es;
        char* to_k = to_tiles ? k_tiles + tile : in_block;
        char* to_v = to_tiles ? v_tiles + tile : in_block + half;
        const char* from_k = to_tiles ? in_block : k_tiles + tile;
        const char* from_v = to_tiles ? in_block + half : v_tiles + tile;
        LONGCTX_CHECK_CUDA(cudaMemcpyAsync(to_k, from_k, bytes, cudaMemcpyDeviceToDevice, nullptr));
        LONGCTX_CHECK_CUDA(cudaMemcpyAsync(to_v, from_v, bytes, cudaMemcpyDeviceToDevice, nullptr));
      }
    block += 2 * half;
  }
}

}  // namespace

// One spanning branch's layout on this rank (cuda::SpanLayout) and its device buffers.
struct CudaSequenceParallel::Gathered {
  cuda::SpanLayout layout;
  std::vector<size_t> counts;  // bytes of each member's block (alive while the exchange is in flight)
  DeviceMemory send, gathered, k_tiles, v_tiles;
  comm::Request exchange;      // the all-gatherv in flight
};

SequenceParallelStats CudaSequenceParallel::stats_since(std::chrono::steady_clock::time_point start) const {
  SequenceParallelStats stats;
  stats.seconds = since(start);
  stats.bytes_sent = comm_.counters().bytes_sent;
  stats.bytes_received = comm_.counters().bytes_received;
  stats.collectives = comm_.counters().calls;
  return stats;
}

CudaSequenceParallel::CudaSequenceParallel(comm::Communicator& comm, Dtype dtype) : comm_(comm), dtype_(dtype) {
  if (dtype != Dtype::bf16 && dtype != Dtype::fp16)
    throw UsageError("--dtype " + to_string(dtype) + ": on several GPUs the kernels take bf16 or fp16 (fp32 is the "
                     "single-GPU reference)");
}

CudaSequenceParallel::~CudaSequenceParallel() = default;

comm::Communicator& CudaSequenceParallel::group_for(int group_size) {
  if (group_size == comm_.size()) return comm_;
  auto it = groups_.find(group_size);
  if (it == groups_.end())
    it = groups_.emplace(group_size, comm_.sub((comm_.rank() / group_size) * group_size, group_size)).first;
  return *it->second;
}

void CudaSequenceParallel::begin_gather(const AttentionParams& params, const AttentionDims& local,
                                        const Branch& branch, const void* k, const void* v, Gathered& out) {
  const int64_t L = local.seq_len, H = local.heads, D = local.head_dim, B = local.batch, r = branch.dilation;
  const int64_t N = L * comm_.size();
  const int g = static_cast<int>(effective_segment_length(branch, N) / L);
  const size_t es = cuda::element_bytes(dtype_);
  out.layout = cuda::SpanLayout(B, H, D, L, r, g, comm_.rank() % g, params.offsets);
  const cuda::SpanLayout& lay = out.layout;
  const int me = lay.member;
  std::vector<size_t>& counts = out.counts;
  counts.clear();
  for (int m = 0; m < g; ++m) counts.push_back(static_cast<size_t>(lay.block_elements(m)) * es);
  const size_t half = counts[static_cast<size_t>(me)] / 2;
  size_t total = 0;
  for (size_t c : counts) total += c;
  const size_t tiles_bytes = static_cast<size_t>(B * lay.keys_all() * D) * es;
  out.send = DeviceMemory(counts[static_cast<size_t>(me)]);
  out.gathered = DeviceMemory(total);
  out.k_tiles = DeviceMemory(tiles_bytes);
  out.v_tiles = DeviceMemory(tiles_bytes);

  // 1. This rank's selected rows: per (b, h) a strided 2-D copy (rows r H D elements apart), or one copy
  // per row where that pitch is past the device's limit for 2-D copies (cudaDevAttrMaxPitch, about 2 GiB:
  // r H D 2 bytes at r = 2^18, H = 32, D = 128; before, an internal error; from a review). Rows that far
  // apart are few: under (this rank's bytes) / (the limit) per (b, h).
  char* send = out.send.get<char>();
  const size_t pitch = static_cast<size_t>(r * H * D) * es, width = static_cast<size_t>(D) * es;
  int device = 0, max_pitch = 0;
  LONGCTX_CHECK_CUDA(cudaGetDevice(&device));
  LONGCTX_CHECK_CUDA(cudaDeviceGetAttribute(&max_pitch, cudaDevAttrMaxPitch, device));
  auto copy_rows = [&](char* to, const char* from, int64_t n) {
    if (pitch <= static_cast<size_t>(max_pitch)) {
      LONGCTX_CHECK_CUDA(cudaMemcpy2DAsync(to, width, from, pitch, width, static_cast<size_t>(n),
                                           cudaMemcpyDeviceToDevice, nullptr));
      return;
    }
    for (int64_t i = 0; i < n; ++i)
      LONGCTX_CHECK_CUDA(cudaMemcpyAsync(to + static_cast<size_t>(i) * width, from + static_cast<size_t>(i) * pitch,
                                         width, cudaMemcpyDeviceToDevice, nullptr));
  };
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h) {
      const int64_t n = lay.rows_of(me, h);
      if (n == 0) continue;
      const size_t src = static_cast<size_t>(((b * L + lay.first_row(h)) * H + h) * D) * es;
      const size_t dst = static_cast<size_t>(lay.block_offset(me, b, h)) * es;
      copy_rows(send + dst, static_cast<const char*>(k) + src, n);
      copy_rows(send + half + dst, static_cast<const char*>(v) + src, n);
    }
  // 2. The group's rows, member after member (bytes: the element type needs no reduction). Non-blocking:
  // it moves while the kernels already issued run.
  out.exchange = group_for(g).iall_gatherv(
      Span<const uint8_t>(reinterpret_cast<const uint8_t*>(send), counts[static_cast<size_t>(me)]),
      Span<uint8_t>(out.gathered.get<uint8_t>(), total), counts);
}

size_t CudaSequenceParallel::start_next_gather(const AttentionParams& params, const AttentionDims& local,
                                               const void* k, const void* v,
                                               std::vector<std::unique_ptr<Gathered>>& gathered, size_t next) {
  const std::vector<Branch>& branches = params.schedule.branches;
  const int64_t L = local.seq_len, N = L * comm_.size();
  while (next < branches.size() && branch_is_local(branches[next], N, L)) ++next;
  if (next == branches.size()) return next;
  gathered[next] = std::make_unique<Gathered>();
  begin_gather(params, local, branches[next], k, v, *gathered[next]);
  return next + 1;
}

void CudaSequenceParallel::run_branches(
    const AttentionParams& params, const AttentionDims& local, const void* k, const void* v,
    const std::function<void(const Branch&)>& on_local,
    const std::function<void(const Branch&, std::unique_ptr<Gathered>&, const std::function<void()>&)>& on_spanning) {
  // Spanning branches' exchanges run one ahead: the next one starts before this one's kernels (and the
  // first before the local branches), so it moves while the GPU computes.
  const std::vector<Branch>& branches = params.schedule.branches;
  std::vector<std::unique_ptr<Gathered>> gathered(branches.size());
  size_t next = start_next_gather(params, local, k, v, gathered, 0);
  for (size_t i = 0; i < branches.size(); ++i) {
    if (!gathered[i]) {
      on_local(branches[i]);
      continue;
    }
    finish_gather(*gathered[i]);
    const size_t started = next;
    next = start_next_gather(params, local, k, v, gathered, next);
    Gathered* in_flight = next != started ? gathered[next - 1].get() : nullptr;
    on_spanning(branches[i], gathered[i], [&] {
      if (in_flight) in_flight->exchange.wait();  // finish_gather's wait then returns at once
      LONGCTX_CHECK_CUDA(cudaDeviceSynchronize());
    });
  }
  LONGCTX_CHECK_CUDA(cudaDeviceSynchronize());  // before the gathered buffers are freed
}

void CudaSequenceParallel::finish_gather(Gathered& out) {
  out.exchange.wait();
  // 3. Position order per (b, h): member m's rows follow those of members before it.
  reorder(out.layout, cuda::element_bytes(dtype_), out.gathered.get<char>(), out.k_tiles.get<char>(),
          out.v_tiles.get<char>(), true);
}

void CudaSequenceParallel::forward(const AttentionParams& params, const AttentionDims& local, const void* q,
                                   const void* k, const void* v, float* o, float* lse) {
  const auto start = Clock::now();
  comm_.reset_counters();
  const int64_t L = local.seq_len, N = L * comm_.size();
  check_shardable(params.schedule, N, comm_.size(), SpanningSegments::whole);
  warn_coverage(params.schedule, local.heads, params.offsets, N);  // as the cpu path does
  bool overwrite = cuda::flash_forward_begin(local, params.schedule, o, lse, nullptr);  // branch 0 runs first
  run_branches(
      params, local, k, v,
      [&](const Branch& branch) {
        cuda::flash_forward_branch(params, local, branch, dtype_, q, k, v, o, lse, overwrite, nullptr);
        overwrite = false;
      },
      [&](const Branch& branch, std::unique_ptr<Gathered>& x, const std::function<void()>& settle) {
        cuda::flash_forward_spanning(params, local, branch, x->layout.member, x->layout.group, dtype_, q,
                                     x->k_tiles.get(), x->v_tiles.get(), o, lse, overwrite, nullptr);
        overwrite = false;
        // Its gathered rows go once its kernels are done, as the backward's do (before: every spanning
        // branch's were held to the end of the pass, so the peak grew with their number; from a review).
        // The next exchange, started before these kernels, moved while they ran.
        settle();
        x.reset();
      });
  forward_stats_ = stats_since(start);
}

void CudaSequenceParallel::backward(const AttentionParams& params, const AttentionDims& local, const void* q,
                                    const void* k, const void* v, const void* dout, const float* o,
                                    const float* lse, float* dq, float* dk, float* dv) {
  const auto start = Clock::now();
  comm_.reset_counters();
  const int64_t L = local.seq_len, N = L * comm_.size(), B = local.batch, H = local.heads, D = local.head_dim;
  check_shardable(params.schedule, N, comm_.size(), SpanningSegments::whole);
  DeviceMemory delta(static_cast<size_t>(B * L * H) * sizeof(float));
  const bool branch0_local = !params.schedule.branches.empty() && branch_is_local(params.schedule.branches[0], N, L);
  bool overwrite = cuda::flash_backward_begin(local, params.schedule, branch0_local, dtype_, dout, o,
                                              delta.get<float>(), dq, dk, dv, nullptr);  // branch 0 runs first
  auto on_local = [&](const Branch& branch) {
    cuda::flash_backward_branch(params, local, branch, dtype_, q, k, v, dout, lse, delta.get<float>(), dq, dk, dv,
                                overwrite, nullptr);
    overwrite = false;
  };
  auto on_spanning = [&](const Branch& branch, std::unique_ptr<Gathered>& gathered,
                         const std::function<void()>& settle) {
    const cuda::SpanLayout& lay = gathered->layout;
    const int g = lay.group, me = lay.member;
    const int64_t tile_floats = B * lay.keys_all() * D;
    DeviceMemory dk_tiles(static_cast<size_t>(tile_floats) * sizeof(float)),
        dv_tiles(static_cast<size_t>(tile_floats) * sizeof(float));
    LONGCTX_CHECK_CUDA(cudaMemsetAsync(dk_tiles.get(), 0, dk_tiles.bytes(), nullptr));
    LONGCTX_CHECK_CUDA(cudaMemsetAsync(dv_tiles.get(), 0, dv_tiles.bytes(), nullptr));
    cuda::flash_backward_spanning(params, local, branch, me, g, dtype_, q, gathered->k_tiles.get(),
                                  gathered->v_tiles.get(), dout, lse, delta.get<float>(), dq, dk_tiles.get<float>(),
                                  dv_tiles.get<float>(), nullptr);
    // Back to member-major blocks (fp32: [dK: B][H][rows][D] then dV), summed onto their owners.
    std::vector<size_t> counts;
    for (int m = 0; m < g; ++m) counts.push_back(static_cast<size_t>(lay.block_elements(m)));
    size_t total = 0;
    for (size_t c : counts) total += c;
    DeviceMemory grads(total * sizeof(float)), mine(counts[static_cast<size_t>(me)] * sizeof(float));
    reorder(lay, sizeof(float), grads.get<char>(), dk_tiles.get<char>(), dv_tiles.get<char>(), false);
    group_for(g).reduce_scatter(Span<const float>(grads.get<float>(), total),
                                Span<float>(mine.get<float>(), counts[static_cast<size_t>(me)]), counts);
    // Add this rank's summed rows into dk, dv at their strided places.
    const size_t half = counts[static_cast<size_t>(me)] / 2;
    for (int64_t b = 0; b < B; ++b)
      for (int64_t h = 0; h < H; ++h) {
        const int64_t n = lay.rows_of(me, h);
        const int64_t first = (b * L + lay.first_row(h)) * H + h, stride = branch.dilation * H;
        const float* src = mine.get<float>() + lay.block_offset(me, b, h);
        add_rows(dk, src, first, stride, n, D);
        add_rows(dv, src + half, first, stride, n, D);
      }
    settle();          // grads and mine are freed on return (before: a cudaDeviceSynchronize with no timeout)
    gathered.reset();  // the gathered rows too, rather than at the end
  };
  run_branches(params, local, k, v, on_local, on_spanning);
  backward_stats_ = stats_since(start);
}

void CudaSequenceParallel::forward(const AttentionParams& params, const Tensor& q, const Tensor& k, const Tensor& v,
                                   Tensor& o, Tensor& lse) {
  cuda::on_device_forward(dtype_, q, k, v, o, lse,
                          [&](const AttentionDims& dims, const void* d_q, const void* d_k, const void* d_v, float* d_o,
                              float* d_lse) { forward(params, dims, d_q, d_k, d_v, d_o, d_lse); });
}

void CudaSequenceParallel::backward(const AttentionParams& params, const Tensor& q, const Tensor& k, const Tensor& v,
                                    const Tensor& o, const Tensor& lse, const Tensor& dout, Tensor& dq, Tensor& dk,
                                    Tensor& dv) {
  cuda::on_device_backward(dtype_, q, k, v, o, lse, dout, dq, dk, dv,
                           [&](const AttentionDims& dims, const void* d_q, const void* d_k, const void* d_v,
                               const void* d_dout, const float* d_o, const float* d_lse, float* d_dq, float* d_dk,
                               float* d_dv) {
                             backward(params, dims, d_q, d_k, d_v, d_dout, d_o, d_lse, d_dq, d_dk, d_dv);
                           });
}

}  // namespace longctx
