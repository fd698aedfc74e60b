// What the model needs from attention: forward and backward on THIS RANK's rows [B, L, H, D] of the
// global sequence. Two implementations:
//   LocalAttention           a plain backend on the local rows. Exact at P = 1, and at any P when every
//                            branch is local to a shard (w' divides L), since segments then never cross
//                            shard edges and each rank's segments start where the global ones do.
//   (SequenceParallelAttention in attention/ covers spanning branches; an adapter goes here when it lands.)
#pragma once

#include <memory>

#include "attention/attention.hpp"

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

}  // namespace longctx::model
