// The CPU backend: float32, OpenMP threads, FlashAttention-style tile kernels (cpu_tile.hpp).
// forward() calls warn_coverage (once per process per branch) so every entry point gets the spec's warning.
#pragma once

#include "attention/attention.hpp"

namespace longctx {

class CpuAttention : public AttentionBackend {
 public:
  std::string name() const override { return "cpu"; }
  void forward(const AttentionParams& params, const Tensor& q, const Tensor& k, const Tensor& v, Tensor& o,
               Tensor& lse) override;
  void backward(const AttentionParams& params, const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& o,
                const Tensor& lse, const Tensor& dout, Tensor& dq, Tensor& dk, Tensor& dv) override;
};

}  // namespace longctx
