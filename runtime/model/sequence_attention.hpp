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

class ShardedAttention : public SequenceAttention {
 public:
  explicit ShardedAttention(comm::Communicator& comm) : attention_(comm) {}
  void forward(const AttentionParams& params, const Tensor& q, const Tensor& k, const Tensor& v, Tensor& o,
               Tensor& lse) override {
    attention_.forward(params, q, k, v, o, lse);
  }
  void backward(const AttentionParams& params, const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& o,
                const Tensor& lse, const Tensor& dout, Tensor& dq, Tensor& dk, Tensor& dv) override {
    attention_.backward(params, q, k, v, o, lse, dout, dq, dk, dv);
  }
  const SequenceParallelAttention& inner() const { return attention_; }

 private:
  SequenceParallelAttention attention_;
};

class GpuShardedAttention : public SequenceAttention {
 public:
  // `device_comm` moves device buffers (NCCL or staged) and must outlive this object.
  GpuShardedAttention(comm::Communicator& device_comm, Dtype dtype) : attention_(device_comm, dtype) {}
  void forward(const AttentionParams& params, const Tensor& q, const Tensor& k, const Tensor& v, Tensor& o,
               Tensor& lse) override {
    attention_.forward(params, q, k, v, o, lse);
  }
  void backward(const AttentionParams& params, const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& o,
                const Tensor& lse, const Tensor& dout, Tensor& dq, Tensor& dk, Tensor& dv) override {
    attention_.backward(params, q, k, v, o, lse, dout, dq, dk, dv);
  }

 private:
  CudaSequenceParallel attention_;
};

}  // namespace longctx::model
