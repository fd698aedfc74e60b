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

void AdamW::update(float* params, const float* grads, double lr, int64_t step) {
  const double b1 = config_.beta1, b2 = config_.beta2;
  const double correction1 = 1.0 - std::pow(b1, double(step + 1));
  const double correction2 = 1.0 - std::pow(b2, double(step + 1));
  const float step_size = static_cast<float>(lr / correction1);
  const float inv_sqrt_c2 = static_cast<float>(1.0 / std::sqrt(correction2));
  const float eps = static_cast<float>(config_.eps);
  const float fb1 = static_cast<float>(b1), fb2 = static_cast<float>(b2);
  for (const auto& view : layout_.views()) {
    const float decay = view.decay ? static_cast<float>(1.0 - lr * config_.weight_decay) : 1.0f;
    float* p = params + view.offset;
    const float* g = grads + view.offset;
    float* m = m_.data() + view.offset;
    float* v = v_.data() + view.offset;
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < view.count; ++i) {
      m[i] = fb1 * m[i] + (1.0f - fb1) * g[i];
      v[i] = fb2 * v[i] + (1.0f - fb2) * g[i] * g[i];
      p[i] = p[i] * decay - step_size * m[i] / (std::sqrt(v[i]) * inv_sqrt_c2 + eps);
    }
  }
}

double gradient_norm(const float* grads, int64_t count) {
  double sum = 0;
  for (int64_t i = 0; i < count; ++i) sum += double(grads[i]) * double(grads[i]);
  return std::sqrt(sum);
}

void clip_gradients(float* grads, int64_t count, double norm, double max_norm) {
  if (max_norm > 0 && norm > max_norm) {
    const float scale = static_cast<float>(max_norm / (norm + 1e-12));
    for (int64_t i = 0; i < count; ++i) grads[i] *= scale;
  }
}

}  // namespace longctx::model
