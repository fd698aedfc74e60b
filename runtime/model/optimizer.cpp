#include "runtime/model/optimizer.hpp"

#include <algorithm>
#include <cmath>

namespace longctx::model {

double LrSchedule::at(int64_t step) const {
  if (warmup_steps > 0 && step < warmup_steps) return peak * double(step + 1) / double(warmup_steps);
  const int64_t decay_steps = std::max<int64_t>(1, total_steps - warmup_steps);
  const double progress = std::min(1.0, double(step - warmup_steps) / double(decay_steps));
  const double cosine = 0.5 * (1.0 + std::cos(M_PI * progress));
  return peak * (min_lr_ratio + (1.0 - min_lr_ratio) * cosine);
}

AdamW::AdamW(const ParameterLayout& layout, AdamWConfig config)
    : layout_(layout),
      config_(config),
      m_(static_cast<size_t>(layout.total()), 0.0f),
      v_(static_cast<size_t>(layout.total()), 0.0f) {}

bool AdamW::update(float* params, const float* grads, double lr, int64_t step) {
  const double b1 = config_.beta1, b2 = config_.beta2;
  const double correction1 = 1.0 - std::pow(b1, double(step + 1));
  const double correction2 = 1.0 - std::pow(b2, double(step + 1));
  const float step_size = static_cast<float>(lr / correction1);
  const float inv_sqrt_c2 = static_cast<float>(1.0 / std::sqrt(correction2));
  const float eps = static_cast<float>(config_.eps);
  const float fb1 = static_cast<float>(b1), fb2 = static_cast<float>(b2);
  // x * 0 is 0 for finite x and nan otherwise, so `poison` stays 0 only while everything written is finite:
  // the check vectorises with the update, where a separate scan read 12 bytes per parameter again.
  float poison = 0.0f;
  for (const auto& view : layout_.views()) {
    const float decay = view.decay ? static_cast<float>(1.0 - lr * config_.weight_decay) : 1.0f;
    float* p = params + view.offset;
    const float* g = grads + view.offset;
    float* m = m_.data() + view.offset;
    float* v = v_.data() + view.offset;
    // Locals, not m[i] read back: the compiler cannot tell the four buffers apart, and the stores and
    // reloads kept the loop to a third of the memory bandwidth (0.85 s against 0.25 s for 1e8 floats).
#pragma omp parallel for schedule(static) reduction(+ : poison)
    for (int64_t i = 0; i < view.count; ++i) {
      const float mi = fb1 * m[i] + (1.0f - fb1) * g[i];
      const float vi = fb2 * v[i] + (1.0f - fb2) * g[i] * g[i];
      const float pi = p[i] * decay - step_size * mi / (std::sqrt(vi) * inv_sqrt_c2 + eps);
      m[i] = mi;
      v[i] = vi;
      p[i] = pi;
      poison += (pi * 0.0f + mi * 0.0f) + vi * 0.0f;
    }
  }
  return poison == 0.0f;
}

double gradient_norm(const float* grads, int64_t count) {
  // Blocks of a fixed size, each summed by 8 interleaved accumulators, then the block sums in order: the
  // result depends on the count only, never on the threads. (One serial accumulator was latency-bound.)
  constexpr int64_t kBlock = int64_t(1) << 14;
  constexpr int kLanes = 8;
  const int64_t blocks = (count + kBlock - 1) / kBlock;
  std::vector<double> block_sums(static_cast<size_t>(blocks));
#pragma omp parallel for schedule(static)
  for (int64_t b = 0; b < blocks; ++b) {
    double lane[kLanes] = {};
    const int64_t end = std::min(count, (b + 1) * kBlock);
    int64_t i = b * kBlock;
    for (; i + kLanes <= end; i += kLanes)
      for (int j = 0; j < kLanes; ++j) lane[j] += double(grads[i + j]) * double(grads[i + j]);
    for (; i < end; ++i) lane[0] += double(grads[i]) * double(grads[i]);
    block_sums[static_cast<size_t>(b)] =
        ((lane[0] + lane[1]) + (lane[2] + lane[3])) + ((lane[4] + lane[5]) + (lane[6] + lane[7]));
  }
  double sum = 0;
  for (const double block_sum : block_sums) sum += block_sum;
  return std::sqrt(sum);
}

void clip_gradients(float* grads, int64_t count, double norm, double max_norm) {
  if (max_norm > 0 && norm > max_norm) {
    const float scale = static_cast<float>(max_norm / (norm + 1e-12));
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < count; ++i) grads[i] *= scale;
  }
}

}  // namespace longctx::model
