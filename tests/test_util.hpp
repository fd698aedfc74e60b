// Helpers shared by the tests: seeded random tensors and an element-wise comparison that reports the
// maximum absolute and relative error and the first bad index (as a GoogleTest AssertionResult).
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "runtime/core/tensor.hpp"

namespace longctx::testing {

// |actual - expected| <= atol + rtol * |expected| element-wise. Equal infinities pass; NaN fails.
template <class A, class E>
::testing::AssertionResult all_close(const A* actual, const E* expected, int64_t count, double atol, double rtol) {
  double max_abs = 0, max_rel = 0;
  int64_t bad = 0, first_bad = -1;
  for (int64_t i = 0; i < count; ++i) {
    const double a = static_cast<double>(actual[i]);
    const double e = static_cast<double>(expected[i]);
    bool ok;
    if (std::isnan(a) || std::isnan(e)) {
      ok = false;
    } else if (std::isinf(a) || std::isinf(e)) {
      ok = a == e;
    } else {
      const double abs_err = std::fabs(a - e);
      max_abs = std::max(max_abs, abs_err);
      if (e != 0) max_rel = std::max(max_rel, abs_err / std::fabs(e));
      ok = abs_err <= atol + rtol * std::fabs(e);
    }
    if (!ok && bad++ == 0) first_bad = i;
  }
  std::ostringstream report;
  report << count << " values, max abs err " << max_abs << ", max rel err " << max_rel << " (atol " << atol
         << ", rtol " << rtol << ")";
  if (bad == 0) return ::testing::AssertionSuccess() << report.str();
  report << "; " << bad << " bad, first at index " << first_bad << ": actual " << actual[first_bad] << ", expected "
         << expected[first_bad];
  return ::testing::AssertionFailure() << report.str();
}

inline ::testing::AssertionResult all_close(const Tensor& actual, const Tensor& expected, double atol, double rtol) {
  if (actual.shape() != expected.shape())
    return ::testing::AssertionFailure() << "shape " << to_string(actual.shape()) << " vs expected "
                                         << to_string(expected.shape());
  return all_close(actual.data(), expected.data(), actual.size(), atol, rtol);
}

// max |actual - expected| / max |expected| (how far off, relative to the tensor's scale). Equal
// infinities are skipped; a NaN, or an infinity that does not match, makes it infinite.
inline double relative_error(const Tensor& actual, const Tensor& expected) {
  double diff = 0, scale = 0;
  for (int64_t i = 0; i < expected.size(); ++i) {
    const double a = actual[i], e = expected[i];
    if (std::isnan(a) || std::isnan(e)) return INFINITY;
    if (std::isinf(a) || std::isinf(e)) {
      if (a != e) return INFINITY;
      continue;
    }
    diff = std::max(diff, std::fabs(a - e));
    scale = std::max(scale, std::fabs(e));
  }
  return scale > 0 ? diff / scale : diff;
}

inline Tensor random_tensor(const Shape& shape, uint64_t seed, float stddev = 1.0f) {
  Tensor t(shape);
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, stddev);
  for (int64_t i = 0; i < t.size(); ++i) t[i] = normal(rng);
  return t;
}

// Rows [first, first + count) of axis 1 of a [B, N, ...] tensor (one rank's shard of the sequence).
inline Tensor rows_of(const Tensor& t, int64_t first, int64_t count) {
  Shape shape = t.shape();
  const int64_t n = shape[1];
  shape[1] = count;
  Tensor out(shape);
  const int64_t inner = t.size() / (shape[0] * n);
  for (int64_t b = 0; b < shape[0]; ++b)
    std::copy(t.data() + (b * n + first) * inner, t.data() + (b * n + first + count) * inner,
              out.data() + b * count * inner);
  return out;
}

inline std::vector<double> random_doubles(int64_t count, uint64_t seed) {
  std::vector<double> out(static_cast<size_t>(count));
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal(0.0, 1.0);
  for (double& x : out) x = normal(rng);
  return out;
}

// The backward at huge scores (each backend's BackwardStaysBoundedAtHugeScores): q and k of this scale
// give |score| ~ 1e9, where fp32 rounding of the score and lse alone made P = exp(score - lse), <= 1
// exactly, far larger.
constexpr float kHugeScoreInputScale = 30000.0f;

// The inputs of that case, shape {1, 192, 1, D} (one branch w = 64, r = 1: three segments): q and k at the
// huge scale, with a NaN in q's row 5 (nan_in "q") or in key 0, every row's first ("k"), both in segment 0.
struct HugeScoreInputs {
  Tensor q, k, v, dout;
};
inline HugeScoreInputs huge_score_inputs(int64_t D, const std::string& nan_in) {
  const Shape shape{1, 192, 1, D};
  HugeScoreInputs x{random_tensor(shape, 91, kHugeScoreInputScale), random_tensor(shape, 92, kHugeScoreInputScale),
                    random_tensor(shape, 93), random_tensor(shape, 94)};
  if (nan_in == "q") x.q[5 * D] = NAN;
  if (nan_in == "k") x.k[0] = NAN;
  return x;
}

// dv = P^T dout with each row of P in [0, 1], so in a segment of `w` rows (shape {1, N, 1, D}, one branch of
// rate 1) every |dv[j][d]| is at most sum_i |dout[i][d]| (rounding made P far larger), within `slack`
// relative to that. Checked from row `first` (a multiple of w) on.
inline ::testing::AssertionResult dv_within_bound(const Tensor& dv, const Tensor& dout, int64_t w, double slack,
                                                  int64_t first = 0) {
  const int64_t N = dv.shape()[1], D = dv.shape()[3];
  for (int64_t s = first; s < N; s += w)
    for (int64_t d = 0; d < D; ++d) {
      double bound = 0;
      for (int64_t i = s; i < std::min(s + w, N); ++i) bound += std::fabs(dout[i * D + d]);
      for (int64_t j = s; j < std::min(s + w, N); ++j)
        if (!(std::fabs(dv[j * D + d]) <= bound * (1 + slack)))
          return ::testing::AssertionFailure() << "dv[" << j << "][" << d << "] = " << dv[j * D + d]
                                               << ", above its bound " << bound;
    }
  return ::testing::AssertionSuccess();
}

// And since each row of P sums to 1, sum_j dv[j][d] = sum_i dout[i][d] in each segment, within `tol`
// relative to sum_i |dout[i][d]|: no row's weight lost. At |score| ~ 1e9 this holds only where the forward
// and the backward round each score alike (the CPU path and the fp32 CUDA kernels, not the bf16 ones; see
// the huge-score tests).
inline ::testing::AssertionResult dv_sums_to_dout(const Tensor& dv, const Tensor& dout, int64_t w, double tol,
                                                  int64_t first = 0) {
  const int64_t N = dv.shape()[1], D = dv.shape()[3];
  for (int64_t s = first; s < N; s += w)
    for (int64_t d = 0; d < D; ++d) {
      double scale = 0, want = 0, got = 0;
      for (int64_t i = s; i < std::min(s + w, N); ++i) scale += std::fabs(dout[i * D + d]), want += dout[i * D + d];
      for (int64_t j = s; j < std::min(s + w, N); ++j) got += dv[j * D + d];
      if (!(std::fabs(got - want) <= tol * scale))
        return ::testing::AssertionFailure() << "segment at row " << s << ", column " << d << ": dv sums to " << got
                                             << ", dout to " << want;
    }
  return ::testing::AssertionSuccess();
}

// Whether every value of rows [first, last) of `t` ({1, N, 1, D}) is NaN.
inline bool rows_all_nan(const Tensor& t, int64_t first, int64_t last) {
  const int64_t D = t.shape()[3];
  for (int64_t i = first * D; i < last * D; ++i)
    if (!std::isnan(t[i])) return false;
  return true;
}

}  // namespace longctx::testing
