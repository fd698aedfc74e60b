// AdamW (decoupled weight decay, applied only to views marked `decay`), the learning-rate schedule
// (linear warm-up to the peak, then cosine decay to min_lr_ratio * peak at total_steps), and global
// gradient-norm clipping, all on the flat parameter buffer.
#pragma once

#include <cstdint>
#include <vector>

#include "runtime/model/parameters.hpp"

namespace longctx::model {

struct LrSchedule {
  double peak = 1e-3;
  int64_t warmup_steps = 0;
  int64_t total_steps = 1;
  double min_lr_ratio = 0.1;
  // Learning rate for (0-based) step `step`.
  double at(int64_t step) const;
};

struct AdamWConfig {
  double beta1 = 0.9;
  double beta2 = 0.95;
  double eps = 1e-8;
  double weight_decay = 0.1;
};

class AdamW {
 public:
  AdamW(const ParameterLayout& layout, AdamWConfig config);
  // One update with learning rate `lr`; `step` counts updates already done (bias correction uses step + 1).
  // Returns whether every parameter and moment it wrote is finite (an overflowing update is found in the
  // same pass, not by reading the three buffers again).
  bool update(float* params, const float* grads, double lr, int64_t step);
  std::vector<float>& first_moment() { return m_; }
  std::vector<float>& second_moment() { return v_; }

 private:
  const ParameterLayout& layout_;
  AdamWConfig config_;
  std::vector<float> m_, v_;
};

// L2 norm of the whole gradient, in double. Threaded, and still the same bits whatever the thread count:
// fixed blocks are summed in a fixed order (ranks must agree on it to clip alike).
double gradient_norm(const float* grads, int64_t count);
// Scales grads, whose norm is `norm` (gradient_norm), so that it is at most max_norm (max_norm <= 0: no
// clipping).
void clip_gradients(float* grads, int64_t count, double norm, double max_norm);

}  // namespace longctx::model
