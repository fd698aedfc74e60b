// The CPU backend: float32, OpenMP threads, FlashAttention-style tile kernels (cpu_tile.hpp).
// forward() calls warn_coverage (once per process per branch) so every entry point gets the spec's warning;
// a caller that runs it on part of a schedule (the sequence-parallel path's local branches, renumbered)
// warns for the whole schedule itself and turns this off.
#pragma once

#include <functional>
#include <utility>

#include "attention/attention.hpp"

namespace longctx {

class CpuAttention : public AttentionBackend {
 public:
  explicit CpuAttention(bool warn_coverage = true) : warn_coverage_(warn_coverage) {}
  std::string name() const override { return "cpu"; }
  void forward(const AttentionParams& params, const Tensor& q, const Tensor& k, const Tensor& v, Tensor& o,
               Tensor& lse) override;
  void backward(const AttentionParams& params, const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& o,
                const Tensor& lse, const Tensor& dout, Tensor& dq, Tensor& dk, Tensor& dv) override;
  // backward() with delta = rowsum(dout * o) ([B,N,H], lse's shape) already computed: the sequence-parallel
  // path computes it once for its local and its spanning branches.
  void backward_given_delta(const AttentionParams& params, const Tensor& q, const Tensor& k, const Tensor& v,
                            const Tensor& lse, const Tensor& delta, Tensor& dq, Tensor& dk, Tensor& dv,
                            const Tensor& dout);
  // Called on the main thread between work items of forward() and backward() (the sequence-parallel path
  // moves its next all-gather along); what it throws ends the call, after the items in flight.
  void set_progress(std::function<void()> call) { progress_ = std::move(call); }

 private:
  bool warn_coverage_;
  std::function<void()> progress_;
};

}  // namespace longctx
