#include "runtime/model/layers.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "runtime/core/error.hpp"
#include "runtime/core/simd.hpp"

namespace longctx::model {
namespace {
// sum over j < n of term(j), in double, over 8 interleaved partial sums (independent, so the compiler
// vectorises them without reordering any one sum) folded in a fixed order. A row's one running sum was a
// chain of dependent scalar additions: layer norm took 5% of a small model's step.
template <typename Term>
double lane_sum(int64_t n, const Term& term) {
  constexpr int64_t kLanes = 8;
  double lanes[kLanes] = {};
  int64_t j = 0;
  for (; j + kLanes <= n; j += kLanes)
    for (int64_t l = 0; l < kLanes; ++l) lanes[l] += term(j + l);
  for (int64_t l = 0; j < n; ++j, ++l) lanes[l] += term(j);
  return ((lanes[0] + lanes[1]) + (lanes[2] + lanes[3])) + ((lanes[4] + lanes[5]) + (lanes[6] + lanes[7]));
}
}  // namespace

void layer_norm_forward(const float* x, const float* gamma, const float* beta, int64_t rows, int64_t dim, float* y,
                        float* mean, float* rstd) {
  constexpr double kEps = 1e-5;
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * dim;
    const double mu = lane_sum(dim, [&](int64_t j) { return double(xr[j]); }) / double(dim);
    const double sq = lane_sum(dim, [&](int64_t j) { return (xr[j] - mu) * (xr[j] - mu); });
    const float m = static_cast<float>(mu);
    const float s = static_cast<float>(1.0 / std::sqrt(sq / double(dim) + kEps));
    mean[r] = m;
    rstd[r] = s;
    float* yr = y + r * dim;
    for (int64_t j = 0; j < dim; ++j) yr[j] = (xr[j] - m) * s * gamma[j] + beta[j];
  }
}

void layer_norm_backward_accumulate(const float* x, const float* gamma, const float* mean, const float* rstd,
                                    const float* dy, int64_t rows, int64_t dim, float* dx, float* dgamma,
                                    float* dbeta) {
  // Parameter gradients: a column reduction over rows, done per thread on a fixed row split and summed
  // in thread order, so the result does not depend on scheduling.
  const int64_t chunks = 16;
  std::vector<double> partial(static_cast<size_t>(chunks * 2 * dim), 0.0);
#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < chunks; ++c) {
    double* pg = partial.data() + c * 2 * dim;
    double* pb = pg + dim;
    const int64_t r0 = rows * c / chunks, r1 = rows * (c + 1) / chunks;
    for (int64_t r = r0; r < r1; ++r) {
      const float* xr = x + r * dim;
      const float* dyr = dy + r * dim;
      const float m = mean[r], s = rstd[r];
      for (int64_t j = 0; j < dim; ++j) {
        pg[j] += double(dyr[j]) * ((xr[j] - m) * s);
        pb[j] += dyr[j];
      }
      const double sum_g = lane_sum(dim, [&](int64_t j) { return double(dyr[j] * gamma[j]); });
      const double sum_gx = lane_sum(dim, [&](int64_t j) { return double(dyr[j] * gamma[j]) * ((xr[j] - m) * s); });
      const float mean_g = static_cast<float>(sum_g / double(dim));
      const float mean_gx = static_cast<float>(sum_gx / double(dim));
      float* dxr = dx + r * dim;
      for (int64_t j = 0; j < dim; ++j) {
        const float xhat = (xr[j] - m) * s;
        dxr[j] += s * (dyr[j] * gamma[j] - mean_g - xhat * mean_gx);
      }
    }
  }
  for (int64_t c = 0; c < chunks; ++c)
    for (int64_t j = 0; j < dim; ++j) {
      dgamma[j] += static_cast<float>(partial[static_cast<size_t>(c * 2 * dim + j)]);
      dbeta[j] += static_cast<float>(partial[static_cast<size_t>(c * 2 * dim + dim + j)]);
    }
}

namespace {
constexpr float kGeluC = 0.7978845608028654f;  // sqrt(2 / pi)
constexpr float kGeluA = 0.044715f;
// From |x| = 10 on, GELU is x (or -0) and its derivative 1 (or 0) in float. Taken directly there: the
// formula's x^3 overflows from |x| ~ 7e12, and 1 - t^2 (0) times 3a x^2 (inf from |x| ~ 5e19) made the
// derivative nan where it is 1 or 0, and GELU(-inf) was nan.
constexpr float kGeluSaturated = 10.0f;

// GELU(x) = 0.5 x (1 + tanh z), z = c (x + a x^3), through e = exp(-2|z|), without tanh itself:
//   1 + tanh z = 2 / (1 + e) for z >= 0, 2 e / (1 + e) for z < 0;  1 - tanh^2 z = 4 e / (1 + e)^2.
// Both are sums of positive terms, so they keep their relative accuracy (~3e-7) where tanh z is near -1
// (x below about -3), which 1.0f + std::tanh(z) lost (it was 0 from x ~ -7.5 on). A step's GELUs took a
// quarter of a small model's step through glibc's scalar tanhf; these run a vector at a time.
struct GeluTerms {
  simd::vfloat half_one_plus_t;  // (1 + tanh z) / 2
  simd::vfloat one_minus_t2;     // 1 - tanh^2 z
};
inline GeluTerms gelu_terms(simd::vfloat x) {
  const simd::vfloat z = kGeluC * (x + kGeluA * x * x * x);
  const simd::vfloat abs_z = z < 0.0f ? -z : z;
  const simd::vfloat e = simd::exp(-2.0f * abs_z);  // |z| < 44 below saturation: a normal float
  const simd::vfloat d = 1.0f / (1.0f + e);
  return {z >= 0.0f ? d : e * d, 4.0f * e * d * d};
}

// f(first, count) for every vector of `n` values; the last, partial one through a padded copy, so each value is
// computed the same way wherever it lies. OpenMP splits the vectors.
template <typename F>
void for_each_vector(int64_t n, const F& f) {
  constexpr int64_t kLanes = simd::kLanes;
  const int64_t vectors = (n + kLanes - 1) / kLanes;
#pragma omp parallel for schedule(static)
  for (int64_t v = 0; v < vectors; ++v) f(v * kLanes, std::min(kLanes, n - v * kLanes));
}

inline simd::vfloat load_part(const float* p, int64_t count) {
  if (count == simd::kLanes) return simd::load(p);
  float lanes[simd::kLanes] = {};
  std::memcpy(lanes, p, static_cast<size_t>(count) * sizeof(float));
  return simd::load(lanes);
}
inline void store_part(float* p, simd::vfloat v, int64_t count) {
  if (count == simd::kLanes) return simd::store(p, v);
  float lanes[simd::kLanes];
  simd::store(lanes, v);
  std::memcpy(p, lanes, static_cast<size_t>(count) * sizeof(float));
}
}  // namespace

void gelu_forward(const float* u, int64_t n, float* g) {
  for_each_vector(n, [&](int64_t i, int64_t count) {
    const simd::vfloat x = load_part(u + i, count);
    const simd::vfloat formula = x * gelu_terms(x).half_one_plus_t;
    const simd::vfloat saturated = x > 0.0f ? x : simd::splat(-0.0f);
    const simd::vfloat abs_x = x < 0.0f ? -x : x;
    store_part(g + i, abs_x >= kGeluSaturated ? saturated : formula, count);
  });
}

void gelu_backward(const float* u, const float* dg, int64_t n, float* du) {
  for_each_vector(n, [&](int64_t i, int64_t count) {
    const simd::vfloat x = load_part(u + i, count), dy = load_part(dg + i, count);
    const GeluTerms terms = gelu_terms(x);
    const simd::vfloat dt = terms.one_minus_t2 * kGeluC * (1.0f + 3.0f * kGeluA * x * x);
    const simd::vfloat formula = dy * (terms.half_one_plus_t + 0.5f * x * dt);
    const simd::vfloat saturated = x > 0.0f ? dy : 0.0f * dy;
    const simd::vfloat abs_x = x < 0.0f ? -x : x;
    store_part(du + i, abs_x >= kGeluSaturated ? saturated : formula, count);
  });
}

void rotary_prepare(RotaryTable& table, int64_t rows, int64_t first_position, double base, int64_t rotated) {
  if (table.rows == rows && table.first_position == first_position && table.base == base && table.rotated == rotated)
    return;
  const int64_t pairs = rotated / 2;
  std::vector<double> inv_freq(static_cast<size_t>(pairs));
  for (int64_t i = 0; i < pairs; ++i) inv_freq[size_t(i)] = std::pow(base, -2.0 * double(i) / double(rotated));
  table.cos.resize(static_cast<size_t>(rows * pairs));
  table.sin.resize(static_cast<size_t>(rows * pairs));
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < rows; ++t) {
    const double pos = double(first_position + t);
    for (int64_t i = 0; i < pairs; ++i) {
      const double angle = pos * inv_freq[size_t(i)];
      table.cos[size_t(t * pairs + i)] = static_cast<float>(std::cos(angle));
      table.sin[size_t(t * pairs + i)] = static_cast<float>(std::sin(angle));
    }
  }
  table.rows = rows;
  table.first_position = first_position;
  table.base = base;
  table.rotated = rotated;
}

void rotary_apply(float* x, int64_t heads, int64_t head_dim, const RotaryTable& table, bool inverse) {
  const int64_t pairs = table.rotated / 2;
  if (table.rotated > head_dim) throw InternalError("rotary_apply: a table of more rotated dims than a head has");
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < table.rows; ++t) {
    const float* c = table.cos.data() + t * pairs;
    const float* sine = table.sin.data() + t * pairs;
    for (int64_t h = 0; h < heads; ++h) {
      float* v = x + (t * heads + h) * head_dim;
      for (int64_t i = 0; i < pairs; ++i) {
        const float a = v[2 * i], b = v[2 * i + 1];
        const float s = inverse ? -sine[i] : sine[i];
        v[2 * i] = a * c[i] - b * s;
        v[2 * i + 1] = a * s + b * c[i];
      }
    }
  }
}

void rotary_apply(float* x, int64_t rows, int64_t heads, int64_t head_dim, int64_t first_position, double base,
                  bool inverse, int64_t rotary_dims) {
  RotaryTable table;
  rotary_prepare(table, rows, first_position, base, rotary_dims < 0 ? head_dim : rotary_dims);
  rotary_apply(x, heads, head_dim, table, inverse);
}

void column_sum_accumulate(const float* dy, int64_t rows, int64_t cols, float* b) {
  // Threaded as layer norm's parameter gradients are: a fixed split of the rows, summed in its order, so the
  // result does not depend on the thread count (before: one thread summed every row).
  const int64_t chunks = 16;
  std::vector<double> partial(static_cast<size_t>(chunks * cols), 0.0);
#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < chunks; ++c) {
    double* sum = partial.data() + c * cols;
    for (int64_t r = rows * c / chunks; r < rows * (c + 1) / chunks; ++r)
      for (int64_t j = 0; j < cols; ++j) sum[j] += dy[r * cols + j];
  }
  for (int64_t j = 0; j < cols; ++j) {
    double sum = 0;
    for (int64_t c = 0; c < chunks; ++c) sum += partial[static_cast<size_t>(c * cols + j)];
    b[j] += static_cast<float>(sum);
  }
}

void add_bias(float* y, int64_t rows, int64_t cols, const float* b) {
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < cols; ++j) y[r * cols + j] += b[j];
}

CrossEntropyStats cross_entropy(const float* logits, const int32_t* targets, int64_t rows, int64_t vocab, float scale,
                                float* dlogits, int32_t* argmax, const float* weights) {
  CrossEntropyStats stats;
  std::vector<double> losses(static_cast<size_t>(rows), 0.0);
#pragma omp parallel
  {
    std::vector<float> own;  // exp(z - z_best) of a row where there is no dlogits row to hold them
#pragma omp for schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
      const float* z = logits + r * vocab;
      int64_t best = 0;
      for (int64_t j = 1; j < vocab; ++j)
        if (z[j] > z[best]) best = j;
      if (argmax) argmax[r] = static_cast<int32_t>(best);
      const int32_t target = targets[r];
      float* dz = dlogits ? dlogits + r * vocab : nullptr;
      if (target < 0) {
        if (dz) std::fill(dz, dz + vocab, 0.0f);
        continue;
      }
      // In differences from the largest logit only: log Z = z_best + log(sum) would lose log(sum) beside a
      // logit of 1e30 (a row of equal ones scored 0 with gradient 1 - onehot). Each exp(z_j - z_best) once,
      // a vector at a time (relative error ~2e-7, below the float logits' own), summed in double: two
      // scalar double exps a logit took a fifth of a step at vocab 32K.
      float* e = dz;
      if (!e) {
        own.resize(static_cast<size_t>(vocab));
        e = own.data();
      }
      const float top = z[best];
      for (int64_t j = 0; j < vocab; j += simd::kLanes) {
        const int64_t count = std::min<int64_t>(simd::kLanes, vocab - j);
        store_part(e + j, simd::exp(load_part(z + j, count) - top), count);
      }
      const double sum = lane_sum(vocab, [&](int64_t j) { return double(e[j]); });
      const double log_sum = std::log(sum);
      losses[size_t(r)] = (double(top) - double(z[target])) + log_sum;
      if (!dz) continue;
      const float row_scale = weights ? scale * weights[r] : scale;
      const float inverse_sum = static_cast<float>(1.0 / sum);
      const float p_target = e[target] * inverse_sum;  // (e is dz: read before it is written over)
      for (int64_t j = 0; j < vocab; ++j) dz[j] = row_scale * (e[j] * inverse_sum);
      dz[target] = row_scale * (p_target - 1.0f);
    }
  }
  for (int64_t r = 0; r < rows; ++r) {
    if (targets[r] < 0) continue;
    const double w = weights ? double(weights[r]) : 1.0;
    stats.loss_sum += w * losses[size_t(r)];
    stats.weight_sum += w;
    ++stats.count;
    if (argmax && argmax[r] == targets[r]) ++stats.correct;
  }
  return stats;
}

}  // namespace longctx::model
