// What the model needs from attention: forward and backward on THIS RANK's rows [B, L, H, D] of the
// global sequence. Two implementations:
//   LocalAttention           a plain backend on the local rows. Exact at P = 1, and at any P when every
//                            branch is local to a shard (w' divides L), since segments then never cross
//                            shard edges and each rank's segments start where the global ones do.
//   ShardedAttention         attention/'s SequenceParallelAttention: any shardable schedule at any P
//                            (spanning branches exchange their sparse K/V rows among the ranks they span).
//   GpuShardedAttention      the same on one GPU per rank (CudaSequenceParallel, bf16 / fp16): this rank's
//                            q, k, v go to the device and o, lse (and the gradients) come back, so the
//                            rest of the model stays where it is (the host).
#pragma once

#include <memory>
#include <type_traits>
#include <utility>

#include "attention/attention.hpp"
#include "attention/cuda/sequence_parallel_cuda.hpp"
#include "attention/sequence_parallel.hpp"

namespace longctx::model {

class SequenceAttention {
 public:
  virtual ~SequenceAttention() = default;
  virtual void forward(const AttentionParams& params, const Tensor& q, const Tensor& k, const Tensor& v, Tensor& o,
                       Tensor& lse) = 0;
  virtual void backward(const AttentionParams& params, const Tensor& q, const Tensor& k, const Tensor& v,
                        const Tensor& o, const Tensor& lse, const Tensor& dout, Tensor& dq, Tensor& dk,
                        Tensor& dv) = 0;
  // Whether the forwards that follow are for a backward (which may then reuse what they exchanged).
  virtual void keep_for_backward(bool) {}
};

class LocalAttention : public SequenceAttention {
 public:
  explicit LocalAttention(std::unique_ptr<AttentionBackend> backend) : backend_(std::move(backend)) {}
  void forward(const AttentionParams& params, const Tensor& q, const Tensor& k, const Tensor& v, Tensor& o,
               Tensor& lse) override {
    backend_->forward(params, q, k, v, o, lse);
  }
  void backward(const AttentionParams& params, const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& o,
                const Tensor& lse, const Tensor& dout, Tensor& dq, Tensor& dk, Tensor& dv) override {
    backend_->backward(params, q, k, v, o, lse, dout, dq, dk, dv);
  }

 private:
  std::unique_ptr<AttentionBackend> backend_;
};

// A sequence-parallel implementation behind the model's interface (constructed with its own arguments).
template <class Parallel>
class ParallelAttention : public SequenceAttention {
 public:
  template <class... Args>
  explicit ParallelAttention(Args&&... args) : attention_(std::forward<Args>(args)...) {}
  void forward(const AttentionParams& params, const Tensor& q, const Tensor& k, const Tensor& v, Tensor& o,
               Tensor& lse) override {
    attention_.forward(params, q, k, v, o, lse);
  }
  void backward(const AttentionParams& params, const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& o,
                const Tensor& lse, const Tensor& dout, Tensor& dq, Tensor& dk, Tensor& dv) override {
    attention_.backward(params, q, k, v, o, lse, dout, dq, dk, dv);
  }
  void keep_for_backward(bool keep) override {
    if constexpr (std::is_same_v<Parallel, SequenceParallelAttention>)
      attention_.keep_gathered_for_backward(keep && keep_allowed_);
  }
  // The backward gathers K / V again, whatever keep_for_backward says (memory before traffic).
  void never_keep() { keep_allowed_ = false; }
  const Parallel& inner() const { return attention_; }

 private:
  Parallel attention_;
  bool keep_allowed_ = true;
};

using ShardedAttention = ParallelAttention<SequenceParallelAttention>;  // (comm)
// (device_comm, dtype): `device_comm` moves device buffers (NCCL or staged) and must outlive it.
using GpuShardedAttention = ParallelAttention<CudaSequenceParallel>;

}  // namespace longctx::model
