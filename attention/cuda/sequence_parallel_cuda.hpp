// Sequence-parallel dilated attention on GPUs: the distributed algorithm of sequence_parallel.hpp
// (LongNet's) with the tensor-core kernels and device buffers. Rank k holds rows [k L, (k+1) L).
//   Local branches (w' divides L): the single-GPU kernels on this rank's rows.
//   Spanning branches (w' = g L): each rank copies its selected K and V rows of the branch into one
//   buffer, [K: B][H][rows][D] then V (strided device copies, no kernel), one all-gatherv among the g
//   ranks of the segment moves them (bf16 / fp16 bytes: the sparsified K / V only), the rows are put
//   in position order per (b, h) and the spanning kernels attend this rank's queries to them; their
//   epilogue merges into o / lse like every other branch. Backward: the same gather, dK / dV of every
//   gathered row from this rank's queries (fp32), reduce-scattered back to the rows' owners and added
//   into dk / dv. Each spanning branch's all-gather starts one branch ahead (non-blocking), so with NCCL
//   (its own stream) it moves while the previous branch's kernels run.
// The communicator must move device buffers: NCCL, or MPI staged through host memory (two ranks on one
// GPU, or no NCCL). This header includes no CUDA header.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <vector>

#include "attention/attention.hpp"
#include "attention/sequence_parallel.hpp"
#include "comm/communicator.hpp"

namespace longctx {

class CudaSequenceParallel {
 public:
  // `comm` (device buffers) spans the ranks that share the sequence; it must outlive this object.
  // dtype: bf16 or fp16 (UsageError otherwise).
  CudaSequenceParallel(comm::Communicator& comm, Dtype dtype);
  ~CudaSequenceParallel();

  // Device pointers of the current device. q, k, v [B, L, H, D] in the dtype; o [B, L, H, D] and lse
  // [B, L, H] float32 (overwritten).
  void forward(const AttentionParams& params, const AttentionDims& local, const void* q, const void* k,
               const void* v, float* o, float* lse);
  // dout in the dtype; o, lse from forward; dq, dk, dv float32 (overwritten).
  void backward(const AttentionParams& params, const AttentionDims& local, const void* q, const void* k,
                const void* v, const void* dout, const float* o, const float* lse, float* dq, float* dk, float* dv);

  // Host tensors (this rank's rows, [B, L, H, D] or [L, H, D]): copies in, runs, copies out.
  void forward(const AttentionParams& params, const Tensor& q, const Tensor& k, const Tensor& v, Tensor& o,
               Tensor& lse);
  void backward(const AttentionParams& params, const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& o,
                const Tensor& lse, const Tensor& dout, Tensor& dq, Tensor& dk, Tensor& dv);

  const SequenceParallelStats& last_forward() const { return forward_stats_; }
  const SequenceParallelStats& last_backward() const { return backward_stats_; }

 private:
  struct Gathered;
  comm::Communicator& group_for(int group_size);
  // Time since `start` and the communicator's counters (reset at the start of each call).
  SequenceParallelStats stats_since(std::chrono::steady_clock::time_point start) const;
  // Packs this rank's selected K / V rows of spanning `branch` and starts their all-gatherv in its group;
  // finish_gather waits for it and lays the rows out as k_tiles / v_tiles.
  void begin_gather(const AttentionParams& params, const AttentionDims& local, const Branch& branch, const void* k,
                    const void* v, Gathered& out);
  void finish_gather(Gathered& out);
  // Starts the exchange of the first spanning branch at or after `next` (gathered[i] holds branch i's);
  // returns the index after it (branches.size() when none is left).
  size_t start_next_gather(const AttentionParams& params, const AttentionDims& local, const void* k, const void* v,
                           std::vector<std::unique_ptr<Gathered>>& gathered, size_t next);
  // The schedule's branches in order: on_local(branch) for the local ones; for a spanning one, its gather
  // finished (each starts one spanning branch ahead) and the next started, on_spanning(branch, gathered,
  // settle). settle() waits for the next branch's exchange (with the communicator's timeout) and then for
  // the device, so that on_spanning may free device memory after it: a cudaFree waits for every stream,
  // the one of an exchange a dead peer never completes among them, with no timeout. Waits for the device
  // before the gathered buffers go.
  void run_branches(
      const AttentionParams& params, const AttentionDims& local, const void* k, const void* v,
      const std::function<void(const Branch&)>& on_local,
      const std::function<void(const Branch&, std::unique_ptr<Gathered>&, const std::function<void()>&)>& on_spanning);

  comm::Communicator& comm_;
  Dtype dtype_;
  std::map<int, std::unique_ptr<comm::Communicator>> groups_;
  SequenceParallelStats forward_stats_, backward_stats_;  // seconds, bytes and calls (no overlap timing)
};

}  // namespace longctx
