// The model's kernels and gradients: blocked sgemm against its naive twin on awkward sizes, each layer's
// backward against central finite differences, and the whole model's gradient (every parameter tensor)
// against finite differences of the loss. The optimizer against PyTorch's AdamW formulas in double, the
// learning-rate schedule and clipping at their defining points.
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <limits>
#include <random>
#include <vector>

#include "runtime/model/gemm.hpp"
#include "runtime/model/layers.hpp"
#include "runtime/model/model.hpp"
#include "runtime/model/optimizer.hpp"
#include "test_util.hpp"

namespace longctx::model {
namespace {

using longctx::testing::all_close;

std::vector<float> random_vector(int64_t n, uint64_t seed, float stddev = 1.0f) {
  std::vector<float> v(static_cast<size_t>(n));
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, stddev);
  for (float& x : v) x = normal(rng);
  return v;
}

TEST(Gemm, BlockedMatchesNaiveOnAwkwardSizes) {
  struct Case { int64_t m, n, k; };
  for (const Case c : {Case{1, 1, 1}, Case{7, 33, 5}, Case{129, 257, 300}, Case{300, 17, 513}, Case{64, 64, 64}})
    for (Trans ta : {Trans::no, Trans::yes})
      for (Trans tb : {Trans::no, Trans::yes})
        for (float beta : {0.0f, 1.0f, 0.5f}) {
          const int64_t lda = (ta == Trans::no ? c.k : c.m) + 3, ldb = (tb == Trans::no ? c.n : c.k) + 1;
          const int64_t ldc = c.n + 2;
          const auto a = random_vector((ta == Trans::no ? c.m : c.k) * lda, 1);
          const auto b = random_vector((tb == Trans::no ? c.k : c.n) * ldb, 2);
          auto fast = random_vector(c.m * ldc, 3);
          auto slow = fast;
          sgemm(ta, tb, c.m, c.n, c.k, 0.75f, a.data(), lda, b.data(), ldb, beta, fast.data(), ldc);
          sgemm_naive(ta, tb, c.m, c.n, c.k, 0.75f, a.data(), lda, b.data(), ldb, beta, slow.data(), ldc);
          // float accumulation over k <= 513 products of unit normals: errors ~ sqrt(k) * 1e-7 * |terms|.
          EXPECT_TRUE(all_close(fast.data(), slow.data(), c.m * ldc, 1e-4 * std::sqrt(double(c.k)), 1e-4))
              << c.m << "x" << c.n << "x" << c.k << " ta " << int(ta) << " tb " << int(tb) << " beta " << beta;
        }
}

// The tiles shrink when C has fewer than there are threads (down to 32 x 64): the values must not change,
// to the bit (train.threads is a setting that does not change the numbers). 129 x 257 and 300 x 17 have
// part tiles at every size; 96 x 2048 has 8 tiles of 128 x 256, and 64 of 64 x 64 at 64 threads.
TEST(Gemm, SameBitsAtEveryThreadCount) {
  struct Case { int64_t m, n, k; };
  const int saved = omp_get_max_threads();
  for (const Case c : {Case{129, 257, 300}, Case{300, 17, 513}, Case{96, 2048, 260}})
    for (Trans ta : {Trans::no, Trans::yes})
      for (Trans tb : {Trans::no, Trans::yes}) {
        const int64_t lda = ta == Trans::no ? c.k : c.m, ldb = tb == Trans::no ? c.n : c.k;
        const auto a = random_vector((ta == Trans::no ? c.m : c.k) * lda, 4);
        const auto b = random_vector((tb == Trans::no ? c.k : c.n) * ldb, 5);
        const auto c0 = random_vector(c.m * c.n, 6);
        std::vector<float> one;
        for (int threads : {1, 3, 7, 64}) {
          omp_set_num_threads(threads);
          auto out = c0;
          sgemm(ta, tb, c.m, c.n, c.k, 0.75f, a.data(), lda, b.data(), ldb, 0.5f, out.data(), c.n);
          if (threads == 1) {
            one = out;
            continue;
          }
          size_t differ = 0;
          for (size_t i = 0; i < out.size(); ++i) differ += out[i] != one[i];
          EXPECT_EQ(differ, 0u) << c.m << "x" << c.n << "x" << c.k << " ta " << int(ta) << " tb " << int(tb) << ": "
                                << threads << " threads against 1";
        }
      }
  omp_set_num_threads(saved);
}

// Central difference of f along direction d, in double around float parameters.
double directional_fd(const std::function<double()>& f, std::vector<float>& x, const std::vector<float>& d, float eps) {
  const auto saved = x;
  for (size_t i = 0; i < x.size(); ++i) x[i] = saved[i] + eps * d[i];
  const double plus = f();
  for (size_t i = 0; i < x.size(); ++i) x[i] = saved[i] - eps * d[i];
  const double minus = f();
  x = saved;
  return (plus - minus) / (2.0 * double(eps));
}

double dot(const std::vector<float>& a, const std::vector<float>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += double(a[i]) * double(b[i]);
  return s;
}

// |fd - analytic| <= atol + rtol |fd|.
::testing::AssertionResult close_scalar(double analytic, double fd, double atol, double rtol) {
  const double err = std::fabs(analytic - fd);
  if (err <= atol + rtol * std::fabs(fd)) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "analytic " << analytic << " vs finite difference " << fd << " (err " << err
                                       << ")";
}

// Float forward, eps 1e-2: truncation error O(eps^2) ~ 1e-4 relative, rounding ~ 1e-7 / eps ~ 1e-5.
constexpr float kEps = 1e-2f;
constexpr double kAtol = 1e-3, kRtol = 2e-3;

TEST(LayerGradients, LayerNorm) {
  const int64_t rows = 5, dim = 19;
  auto x = random_vector(rows * dim, 10), gamma = random_vector(dim, 11), beta = random_vector(dim, 12);
  const auto w = random_vector(rows * dim, 13);
  std::vector<float> y(static_cast<size_t>(rows * dim)), mean(static_cast<size_t>(rows)), rstd(static_cast<size_t>(rows));
  const auto objective = [&] {
    layer_norm_forward(x.data(), gamma.data(), beta.data(), rows, dim, y.data(), mean.data(), rstd.data());
    return dot(y, w);
  };
  objective();
  for (int64_t r = 0; r < rows; ++r) {  // the statistics themselves, in double (19 = 2 x 8 + 3 past the lanes)
    double sum = 0, sq = 0;
    for (int64_t j = 0; j < dim; ++j) sum += x[size_t(r * dim + j)];
    for (int64_t j = 0; j < dim; ++j) sq += std::pow(x[size_t(r * dim + j)] - sum / double(dim), 2);
    EXPECT_NEAR(mean[size_t(r)], sum / double(dim), 1e-6) << "row " << r;
    EXPECT_NEAR(rstd[size_t(r)], 1.0 / std::sqrt(sq / double(dim) + 1e-5), 1e-6 * rstd[size_t(r)]) << "row " << r;
  }
  std::vector<float> dx(x.size(), 0.0f), dgamma(static_cast<size_t>(dim), 0.0f), dbeta(static_cast<size_t>(dim), 0.0f);
  layer_norm_backward_accumulate(x.data(), gamma.data(), mean.data(), rstd.data(), w.data(), rows, dim, dx.data(),
                                 dgamma.data(), dbeta.data());
  for (auto* pair : {&x, &gamma, &beta}) {
    const auto& grad = pair == &x ? dx : pair == &gamma ? dgamma : dbeta;
    const auto d = random_vector(int64_t(pair->size()), 14);
    EXPECT_TRUE(close_scalar(dot(grad, d), directional_fd(objective, *pair, d, kEps), kAtol, kRtol));
  }
}

// A bias gradient: column sums added to b, over a row count that 16 chunks do not divide, against double,
// and the same bits at 1 and 3 threads.
TEST(Layers, ColumnSumAccumulate) {
  const int64_t rows = 1001, cols = 37;
  const auto dy = random_vector(rows * cols, 15);
  std::vector<float> b(static_cast<size_t>(cols), 0.25f), b3 = b;
  const int saved = omp_get_max_threads();
  omp_set_num_threads(1);
  column_sum_accumulate(dy.data(), rows, cols, b.data());
  omp_set_num_threads(3);
  column_sum_accumulate(dy.data(), rows, cols, b3.data());
  omp_set_num_threads(saved);
  EXPECT_EQ(b, b3);
  for (int64_t j = 0; j < cols; ++j) {
    double want = 0.25;
    for (int64_t r = 0; r < rows; ++r) want += dy[size_t(r * cols + j)];
    EXPECT_NEAR(b[size_t(j)], want, 1e-5 * std::max(1.0, std::fabs(want))) << "column " << j;
  }
}

TEST(LayerGradients, Gelu) {
  const int64_t n = 101;
  auto u = random_vector(n, 20, 2.0f);
  const auto w = random_vector(n, 21);
  std::vector<float> g(static_cast<size_t>(n)), du(static_cast<size_t>(n));
  const auto objective = [&] {
    gelu_forward(u.data(), n, g.data());
    return dot(g, w);
  };
  gelu_backward(u.data(), w.data(), n, du.data());
  const auto d = random_vector(n, 22);
  EXPECT_TRUE(close_scalar(dot(du, d), directional_fd(objective, u, d, kEps), kAtol, kRtol));
}

// GELU against its formula in double, over [-12, 12] (past the saturation at |x| = 10) and a count of
// values that leaves a partial vector: relative to the value, not to 1, so the negative tail (GELU ~1e-9
// at x = -8) must be right too (1.0f + tanhf(z) made it 0 from x ~ -7.5 on). The float z = c (x + a x^3)
// carries a relative error ~1e-7, which exp(-2|z|) multiplies by 2|z|: hence the |z| in the tolerance.
// Each value is also computed alone (in a partial vector) and must match the batch's bit for bit.
TEST(LayerGradients, GeluMatchesItsFormulaInDouble) {
  const int64_t n = 24007;
  std::vector<float> u(static_cast<size_t>(n)), dg(static_cast<size_t>(n), 1.0f);
  for (int64_t i = 0; i < n; ++i) u[size_t(i)] = -12.0f + 24.0f * float(i) / float(n - 1);
  std::vector<float> g(u.size()), du(u.size());
  gelu_forward(u.data(), n, g.data());
  gelu_backward(u.data(), dg.data(), n, du.data());
  constexpr double c = 0.7978845608028654, a = 0.044715;
  double worst_g = 0, worst_du = 0;
  for (int64_t i = 0; i < n; ++i) {
    const double x = u[size_t(i)], z = c * (x + a * x * x * x), e = std::exp(-2.0 * std::fabs(z));
    const double half_one_plus_t = z >= 0 ? 1.0 / (1.0 + e) : e / (1.0 + e);
    const double one_minus_t2 = 4.0 * e / ((1.0 + e) * (1.0 + e));
    double g_ref = x * half_one_plus_t;
    const double slope_term = 0.5 * x * one_minus_t2 * c * (1.0 + 3.0 * a * x * x);
    double du_ref = half_one_plus_t + slope_term;
    // (gelu' is a sum of terms of opposite signs for x < 0, 0 near x = -0.75: its error is relative to
    // the terms' size)
    double du_scale = half_one_plus_t + std::fabs(slope_term);
    if (std::fabs(x) >= 10) g_ref = x > 0 ? x : 0.0, du_ref = du_scale = x > 0 ? 1.0 : 0.0;
    const double tolerance = 1e-6 + 4e-7 * std::fabs(z);
    const double err_g = std::fabs(g[size_t(i)] - g_ref) / std::max(std::fabs(g_ref), 1e-37);
    const double err_du = std::fabs(du[size_t(i)] - du_ref) / std::max(du_scale, 1e-37);
    worst_g = std::max(worst_g, err_g / tolerance);
    worst_du = std::max(worst_du, err_du / tolerance);
    EXPECT_LE(err_g, tolerance) << "gelu(" << x << ") = " << g[size_t(i)] << ", in double " << g_ref;
    EXPECT_LE(err_du, tolerance) << "gelu'(" << x << ") = " << du[size_t(i)] << ", in double " << du_ref;
    if (HasFailure()) break;
  }
  std::printf("worst error / tolerance: gelu %.3f, gelu' %.3f\n", worst_g, worst_du);
  for (const int64_t i : {int64_t{0}, int64_t{5}, n / 2 + 3, n - 2, n - 1}) {
    float alone = 0, d_alone = 0;
    gelu_forward(&u[size_t(i)], 1, &alone);
    gelu_backward(&u[size_t(i)], &dg[size_t(i)], 1, &d_alone);
    EXPECT_EQ(alone, g[size_t(i)]) << "gelu(" << u[size_t(i)] << ") alone";
    EXPECT_EQ(d_alone, du[size_t(i)]) << "gelu'(" << u[size_t(i)] << ") alone";
  }
}

// Far out GELU is x (or 0) and its derivative 1 (or 0). The tanh formula's x^3 and x^2 overflow there:
// the derivative came out nan from |x| ~ 5e19 (0 * inf), which a diverging run's backward turned into a
// nan gradient in some builds and not others.
TEST(LayerGradients, GeluIsExactWhereItSaturates) {
  const float inf = std::numeric_limits<float>::infinity();
  const std::vector<float> u = {10.0f, -10.0f, 1e13f, -1e13f, 1e20f, -1e20f, 3e38f, -3e38f, inf, -inf};
  const std::vector<float> dg = {0.5f, 0.5f, -2.0f, -2.0f, 3.0f, 3.0f, 1.0f, 1.0f, 7.0f, 7.0f};
  const int64_t n = static_cast<int64_t>(u.size());
  std::vector<float> g(u.size()), du(u.size());
  gelu_forward(u.data(), n, g.data());
  gelu_backward(u.data(), dg.data(), n, du.data());
  for (size_t i = 0; i < u.size(); ++i) {
    EXPECT_EQ(g[i], u[i] > 0 ? u[i] : 0.0f) << "gelu(" << u[i] << ")";
    EXPECT_EQ(du[i], u[i] > 0 ? dg[i] : 0.0f) << "gelu'(" << u[i] << ")";
  }
  // At the edge the formula itself already gives exactly this: nothing changes below it.
  for (const float x : {10.0f, -10.0f}) {
    const float t = std::tanh(0.7978845608028654f * (x + 0.044715f * x * x * x));
    EXPECT_EQ(std::fabs(t), 1.0f);
  }
}

TEST(LayerGradients, RotaryInverseIsBackward) {
  const int64_t rows = 6, heads = 3, hd = 8;
  auto x = random_vector(rows * heads * hd, 30);
  const auto w = random_vector(rows * heads * hd, 31);
  std::vector<float> y;
  const auto objective = [&] {
    y = x;
    rotary_apply(y.data(), rows, heads, hd, 1000, 10000.0, false);
    return dot(y, w);
  };
  auto dx = w;
  rotary_apply(dx.data(), rows, heads, hd, 1000, 10000.0, true);
  const auto d = random_vector(int64_t(x.size()), 32);
  EXPECT_TRUE(close_scalar(dot(dx, d), directional_fd(objective, x, d, kEps), kAtol, kRtol));
}

TEST(LayerGradients, RotaryUsesGlobalPositions) {
  // Rows [3, 6) rotated as a shard starting at position 3 equal rows 3..5 of the whole rotated at 0.
  const int64_t rows = 6, heads = 2, hd = 4;
  auto whole = random_vector(rows * heads * hd, 33);
  std::vector<float> shard(whole.begin() + 3 * heads * hd, whole.end());
  rotary_apply(whole.data(), rows, heads, hd, 0, 10000.0, false);
  rotary_apply(shard.data(), 3, heads, hd, 3, 10000.0, false);
  EXPECT_TRUE(all_close(shard.data(), whole.data() + 3 * heads * hd, 3 * heads * hd, 0, 0));
}

// A model's table is prepared once per forward and reused by its q, k, dq and dk: one prepared again for
// other positions, another base or another rotated width rotates as a fresh call does.
TEST(LayerGradients, RotaryTableFollowsItsPositions) {
  const int64_t rows = 5, heads = 2, hd = 8;
  const auto x = random_vector(rows * heads * hd, 34);
  RotaryTable table;
  struct Case {
    int64_t rows, first;
    double base;
    int64_t rotated;
  };
  for (const Case& c : {Case{rows, 0, 10000.0, 8}, Case{rows, 3, 10000.0, 8}, Case{rows - 1, 3, 10000.0, 8},
                        Case{rows - 1, 3, 500.0, 8}, Case{rows - 1, 3, 500.0, 4}}) {
    for (const bool inverse : {false, true}) {
      std::vector<float> fresh = x, prepared = x;
      rotary_apply(fresh.data(), c.rows, heads, hd, c.first, c.base, inverse, c.rotated);
      rotary_prepare(table, c.rows, c.first, c.base, c.rotated);
      rotary_apply(prepared.data(), heads, hd, table, inverse);
      EXPECT_EQ(prepared, fresh) << "rows " << c.rows << ", first " << c.first << ", base " << c.base << ", rotated "
                                 << c.rotated << (inverse ? ", inverse" : "");
    }
  }
}

TEST(LayerGradients, CrossEntropy) {
  const int64_t rows = 7, vocab = 13;
  auto logits = random_vector(rows * vocab, 40, 3.0f);
  const std::vector<int32_t> targets{3, -1, 0, 12, 5, -1, 7};
  std::vector<int32_t> argmax(static_cast<size_t>(rows));
  std::vector<float> dlogits(logits.size());
  const auto objective = [&] {
    return cross_entropy(logits.data(), targets.data(), rows, vocab, 1.0f, nullptr, argmax.data()).loss_sum;
  };
  const auto stats = cross_entropy(logits.data(), targets.data(), rows, vocab, 1.0f, dlogits.data(), argmax.data());
  EXPECT_EQ(stats.count, 5);
  const auto d = random_vector(int64_t(logits.size()), 41);
  EXPECT_TRUE(close_scalar(dot(dlogits, d), directional_fd(objective, logits, d, kEps), kAtol, kRtol));
}

// The loss and softmax against double, at a vocabulary that leaves a partial vector (1000 = 62 x 16 + 8),
// with a row whose logits spread over 400 (exp of a difference past -87 is 0 in float), and rows without a
// target. The loss is the same with and without dlogits (those without keep the exps in a buffer of their own).
TEST(CrossEntropy, MatchesDoubleAtALargeVocabulary) {
  const int64_t rows = 9, vocab = 1000;
  auto logits = random_vector(rows * vocab, 45, 3.0f);
  for (int64_t j = 0; j < vocab; ++j) logits[size_t(4 * vocab + j)] = -200.0f + 400.0f * float(j % 97) / 96.0f;
  const std::vector<int32_t> targets{3, -1, 999, 0, 500, 998, -1, 17, 640};
  std::vector<int32_t> argmax(static_cast<size_t>(rows));
  std::vector<float> dlogits(logits.size());
  const auto stats = cross_entropy(logits.data(), targets.data(), rows, vocab, 0.5f, dlogits.data(), argmax.data());
  const auto no_gradient = cross_entropy(logits.data(), targets.data(), rows, vocab, 0.5f, nullptr, argmax.data());
  EXPECT_EQ(stats.loss_sum, no_gradient.loss_sum);
  double loss = 0;
  for (int64_t r = 0; r < rows; ++r) {
    const float* z = logits.data() + r * vocab;
    const int32_t t = targets[size_t(r)];
    const double top = *std::max_element(z, z + vocab);
    double sum = 0;
    for (int64_t j = 0; j < vocab; ++j) sum += std::exp(double(z[j]) - top);
    if (t >= 0) loss += top + std::log(sum) - z[t];
    for (int64_t j = 0; j < vocab; ++j) {
      const double want = t < 0 ? 0.0 : 0.5 * (std::exp(double(z[j]) - top) / sum - (j == t ? 1.0 : 0.0));
      const double got = dlogits[size_t(r * vocab + j)];
      EXPECT_NEAR(got, want, 1e-9 + 1e-6 * std::fabs(want)) << "row " << r << ", logit " << j;
      if (HasFailure()) return;
    }
  }
  EXPECT_NEAR(stats.loss_sum, loss, 1e-6 * loss);
}

// Logits far from zero: the loss and its gradient depend on their differences only (before: a row of equal
// logits near 1e38 scored 0, the log of the partition sum lost beside them, and its gradient was 1 - onehot;
// eval then reported a perfect loss for a checkpoint whose embedding had blown up).
TEST(CrossEntropy, DependsOnLogitDifferencesOnly) {
  const int64_t rows = 3, vocab = 8;
  const std::vector<int32_t> targets{2, 7, 0};
  std::vector<int32_t> argmax(static_cast<size_t>(rows));
  for (const float offset : {1e6f, 1e30f, 3e38f}) {
    std::vector<float> equal(static_cast<size_t>(rows * vocab), offset), d_equal(equal.size());
    const auto stats = cross_entropy(equal.data(), targets.data(), rows, vocab, 1.0f, d_equal.data(), argmax.data());
    EXPECT_NEAR(stats.loss_sum, rows * std::log(double(vocab)), 1e-9) << "equal logits at " << offset;
    for (int64_t i = 0; i < rows * vocab; ++i)
      EXPECT_FLOAT_EQ(d_equal[size_t(i)], 1.0f / vocab - (i % vocab == targets[size_t(i / vocab)] ? 1.0f : 0.0f));
  }
  // Logits moved by 1024 and back: both sets hold the same differences exactly (x - 1024 is exact for x in
  // [512, 2048]), so the same loss and gradient to the bit.
  const auto logits = random_vector(rows * vocab, 44, 3.0f);
  std::vector<float> moved(logits.size()), back(logits.size()), d_moved(logits.size()), d_back(logits.size());
  for (size_t i = 0; i < logits.size(); ++i) {
    moved[i] = logits[i] + 1024.0f;
    back[i] = moved[i] - 1024.0f;
  }
  const auto at_1024 = cross_entropy(moved.data(), targets.data(), rows, vocab, 1.0f, d_moved.data(), argmax.data());
  const auto at_0 = cross_entropy(back.data(), targets.data(), rows, vocab, 1.0f, d_back.data(), argmax.data());
  EXPECT_EQ(at_1024.loss_sum, at_0.loss_sum);
  EXPECT_EQ(d_moved, d_back);
}

// Per-row loss weights (train.answer_weight): the weighted sum and its gradient, with a zero weight acting
// like "no target" for the gradient.
TEST(LayerGradients, WeightedCrossEntropy) {
  const int64_t rows = 6, vocab = 9;
  auto logits = random_vector(rows * vocab, 42, 3.0f);
  const std::vector<int32_t> targets{3, -1, 0, 8, 5, 2};
  const std::vector<float> weights{1.0f, 7.0f, 250.0f, 0.0f, 1.0f, 0.5f};
  std::vector<int32_t> argmax(static_cast<size_t>(rows));
  std::vector<float> dlogits(logits.size()), plain(logits.size());
  const auto objective = [&] {
    return cross_entropy(logits.data(), targets.data(), rows, vocab, 1.0f, nullptr, argmax.data(), weights.data())
        .loss_sum;
  };
  const auto stats =
      cross_entropy(logits.data(), targets.data(), rows, vocab, 1.0f, dlogits.data(), argmax.data(), weights.data());
  const auto unweighted = cross_entropy(logits.data(), targets.data(), rows, vocab, 1.0f, plain.data(), argmax.data());
  EXPECT_EQ(stats.count, 5);
  EXPECT_DOUBLE_EQ(stats.weight_sum, 1.0 + 250.0 + 0.0 + 1.0 + 0.5);
  EXPECT_DOUBLE_EQ(unweighted.weight_sum, 5.0);
  for (int64_t j = 0; j < vocab; ++j) {
    EXPECT_EQ(dlogits[size_t(3 * vocab + j)], 0.0f);  // weight 0
    EXPECT_FLOAT_EQ(dlogits[size_t(2 * vocab + j)], 250.0f * plain[size_t(2 * vocab + j)]);
  }
  const auto d = random_vector(int64_t(logits.size()), 43);
  EXPECT_TRUE(close_scalar(dot(dlogits, d), directional_fd(objective, logits, d, kEps), kAtol, kRtol));
}

ModelConfig tiny_config() {
  ModelConfig c;
  c.layers = 2;
  c.dim = 16;
  c.heads = 4;
  c.vocab = 11;
  c.mlp_hidden = 24;
  c.schedule = make_schedule({8, 16}, {1, 2}, false);
  return c;
}

// The whole model: for every parameter tensor, the gradient along a random direction restricted to that
// tensor equals the finite difference of the mean loss. Small weights keep the loss smooth at eps.
class ModelGradients : public ::testing::TestWithParam<bool> {};

TEST_P(ModelGradients, EveryParameterTensorMatchesFiniteDifferences) {
  ModelConfig config = tiny_config();
  config.prev_token_embedding = GetParam();
  if (GetParam()) config.rope_dims = 2;  // partial rotary too
  LocalAttention attention(make_attention_backend("cpu"));
  Model model(config, attention);
  const auto& layout = model.layout();
  std::vector<float> params(static_cast<size_t>(layout.total()));
  init_parameters(config, layout, 7, params.data());
  // Larger than the 0.02 init so that every path (attention scores included) carries gradient.
  std::mt19937_64 rng(8);
  std::normal_distribution<float> normal(0.0f, 0.3f);
  for (const auto& v : layout.views())
    for (int64_t i = 0; i < v.count; ++i) params[size_t(v.offset + i)] += normal(rng);
  const int64_t rows = 37;
  std::vector<int32_t> tokens(static_cast<size_t>(rows)), targets(static_cast<size_t>(rows));
  for (int64_t t = 0; t < rows; ++t) {
    tokens[size_t(t)] = int32_t((t * 7 + 3) % config.vocab);
    targets[size_t(t)] = t % 5 == 4 ? -1 : int32_t((t * 5 + 1) % config.vocab);
  }
  const auto loss = [&] {
    const auto s = model.forward(params.data(), tokens.data(), targets.data(), rows, 0, false, 1.0f, 4);
    return s.loss_sum / double(s.count);
  };
  const auto stats = model.forward(params.data(), tokens.data(), targets.data(), rows, 0, true, 1.0f / 30.0f, 4);
  ASSERT_EQ(stats.count, 30);
  std::vector<float> grads(params.size(), 0.0f);
  model.backward(params.data(), grads.data());
  for (const auto& view : layout.views()) {
    std::vector<float> d(params.size(), 0.0f);
    const auto r = random_vector(view.count, 100 + uint64_t(view.offset));
    for (int64_t i = 0; i < view.count; ++i) d[size_t(view.offset + i)] = r[size_t(i)];
    EXPECT_TRUE(close_scalar(dot(grads, d), directional_fd(loss, params, d, 3e-3f), 2e-3, 1e-2)) << view.name;
  }
}

INSTANTIATE_TEST_SUITE_P(PrevTokenEmbedding, ModelGradients, ::testing::Bool());

// A shard of rows at its global position computes what the whole sequence computes for those rows
// when every branch is local to the shard (what LocalAttention relies on at P > 1).
TEST(ModelForward, ShardWithLocalBranchesMatchesWholeSequence) {
  ModelConfig config = tiny_config();
  LocalAttention attention(make_attention_backend("cpu"));
  Model whole(config, attention), shard(config, attention);
  std::vector<float> params(static_cast<size_t>(whole.layout().total()));
  init_parameters(config, whole.layout(), 3, params.data());
  const int64_t rows = 64;
  std::vector<int32_t> tokens(static_cast<size_t>(rows)), targets(static_cast<size_t>(rows));
  for (int64_t t = 0; t < rows; ++t) tokens[size_t(t)] = targets[size_t(t)] = int32_t((t * 3) % config.vocab);
  // (for_backward: a forward pass without one keeps no layer's tensors to look at.)
  whole.forward(params.data(), tokens.data(), targets.data(), rows, 0, true, 1.0f);
  shard.forward(params.data(), tokens.data() + 32, targets.data() + 32, 32, 32, true, 1.0f);
  const Tensor& o_whole = whole.layer_tensor(1, "o");
  const Tensor& o_shard = shard.layer_tensor(1, "o");
  const int64_t row = config.dim;
  EXPECT_TRUE(all_close(o_shard.data(), o_whole.data() + 32 * row, 32 * row, 1e-5, 1e-4));
}

// Without a backward to come, the forward works in one layer's buffers: the same loss and predictions as
// the training forward, to the bit; layer_tensor and backward, which need every layer's, refuse.
TEST(ModelForward, WithoutBackwardComputesWhatTheTrainingForwardDoes) {
  ModelConfig config = tiny_config();
  config.layers = 3;
  LocalAttention attention(make_attention_backend("cpu"));
  Model model(config, attention);
  std::vector<float> params(static_cast<size_t>(model.layout().total()));
  init_parameters(config, model.layout(), 4, params.data());
  const int64_t rows = 64;
  std::vector<int32_t> tokens(static_cast<size_t>(rows)), targets(static_cast<size_t>(rows));
  for (int64_t t = 0; t < rows; ++t) {
    tokens[size_t(t)] = int32_t((t * 5 + 1) % config.vocab);
    targets[size_t(t)] = int32_t((t * 7 + 2) % config.vocab);
  }
  const auto kept = model.forward(params.data(), tokens.data(), targets.data(), rows, 0, true, 1.0f);
  const std::vector<int32_t> kept_predictions = model.predictions();
  const auto lean = model.forward(params.data(), tokens.data(), targets.data(), rows, 0, false, 1.0f);
  EXPECT_EQ(lean.loss_sum, kept.loss_sum);
  EXPECT_EQ(lean.count, kept.count);
  EXPECT_EQ(model.predictions(), kept_predictions);
  EXPECT_THROW(model.layer_tensor(0, "o"), InternalError);
  std::vector<float> grads(params.size(), 0.0f);
  EXPECT_THROW(model.backward(params.data(), grads.data()), InternalError);
}

// torch.optim.AdamW's update, in double: p -= lr wd p (decayed tensors only); m, v moving averages;
// p -= lr m_hat / (sqrt(v_hat) + eps) with m_hat = m / (1 - b1^t), v_hat = v / (1 - b2^t), t = step + 1.
TEST(Optimizer, AdamWMatchesTorchOverSeveralSteps) {
  ParameterLayout layout;
  layout.add("matrix", {3, 4}, true);
  layout.add("bias", {5}, false);
  const AdamWConfig config{0.9, 0.95, 1e-8, 0.1};
  AdamW adamw(layout, config);
  std::vector<float> params = random_vector(layout.total(), 1);
  std::vector<double> p(params.begin(), params.end()), m(p.size(), 0.0), v(p.size(), 0.0);
  const double lrs[] = {1e-2, 3e-2, 2e-2, 5e-3, 1e-2};
  for (int64_t step = 0; step < 5; ++step) {
    SCOPED_TRACE("step " + std::to_string(step));
    // Gradients of mixed scales, so eps and the bias corrections both matter.
    std::vector<float> grads = random_vector(layout.total(), 10 + uint64_t(step), step % 2 ? 1e-3f : 2.0f);
    const double lr = lrs[step];
    adamw.update(params.data(), grads.data(), lr, step);
    const double c1 = 1 - std::pow(config.beta1, double(step + 1)), c2 = 1 - std::pow(config.beta2, double(step + 1));
    for (const auto& view : layout.views())
      for (int64_t j = view.offset; j < view.offset + view.count; ++j) {
        const size_t i = size_t(j);
        const double g = grads[i];
        if (view.decay) p[i] -= lr * config.weight_decay * p[i];
        m[i] = config.beta1 * m[i] + (1 - config.beta1) * g;
        v[i] = config.beta2 * v[i] + (1 - config.beta2) * g * g;
        p[i] -= lr * (m[i] / c1) / (std::sqrt(v[i] / c2) + config.eps);
      }
    // float32 rounding: relative 1e-6, plus the ulps of the largest terms a moment held (O(0.1)).
    for (size_t i = 0; i < p.size(); ++i) {
      EXPECT_NEAR(params[i], p[i], 2e-6) << "parameter " << i;
      EXPECT_NEAR(adamw.first_moment()[i], m[i], 1e-6 * std::abs(m[i]) + 1e-7) << "m " << i;
      EXPECT_NEAR(adamw.second_moment()[i], v[i], 1e-6 * v[i] + 1e-7) << "v " << i;
    }
  }
}

// train.weight_decay is "matrices only": every 2-D tensor of the model decays, no gain or bias does.
TEST(Optimizer, ModelDecaysExactlyItsMatrices) {
  for (const bool prev_token : {false, true}) {
    ModelConfig config = tiny_config();
    config.prev_token_embedding = prev_token;
    const ParameterLayout layout = make_layout(config);
    for (const auto& view : layout.views())
      EXPECT_EQ(view.decay, view.shape.size() == 2) << view.name;
  }
}

// Linear warm-up from peak / warmup at step 0 to the peak at step warmup - 1, the peak again at step
// warmup (cosine progress 0), half way down the cosine at the middle, min_lr_ratio * peak from total_steps on.
TEST(Optimizer, LrScheduleWarmsUpThenDecaysByCosine) {
  const LrSchedule schedule{2.0, 4, 12, 0.1};
  EXPECT_DOUBLE_EQ(schedule.at(0), 0.5);
  EXPECT_DOUBLE_EQ(schedule.at(1), 1.0);
  EXPECT_DOUBLE_EQ(schedule.at(3), 2.0);
  EXPECT_DOUBLE_EQ(schedule.at(4), 2.0);
  EXPECT_DOUBLE_EQ(schedule.at(8), 2.0 * (0.1 + 0.9 * 0.5));
  EXPECT_DOUBLE_EQ(schedule.at(6), 2.0 * (0.1 + 0.9 * 0.5 * (1 + std::cos(M_PI / 4))));
  EXPECT_DOUBLE_EQ(schedule.at(12), 0.2);
  EXPECT_DOUBLE_EQ(schedule.at(100), 0.2);
  const LrSchedule no_warmup{1.0, 0, 10, 0.0};
  EXPECT_DOUBLE_EQ(no_warmup.at(0), 1.0);
  EXPECT_DOUBLE_EQ(no_warmup.at(5), 0.5);
  EXPECT_DOUBLE_EQ(no_warmup.at(10), 0.0);
}

// AdamW::update reports an overflowing update from the same pass (train refuses the step on it): a non-finite
// gradient in the last element of the last tensor, or a step size that overflows float.
TEST(Optimizer, AdamWReportsAnUpdateThatIsNotFinite) {
  ParameterLayout layout;
  layout.add("matrix", {3, 4}, true);
  layout.add("bias", {5}, false);
  std::vector<float> params = random_vector(layout.total(), 1);
  AdamW finite(layout, AdamWConfig{});
  EXPECT_TRUE(finite.update(params.data(), random_vector(layout.total(), 2).data(), 1e-2, 0));
  for (const float bad : {std::numeric_limits<float>::infinity(), std::numeric_limits<float>::quiet_NaN()}) {
    std::vector<float> p = params, grads = random_vector(layout.total(), 3);
    grads.back() = bad;
    AdamW adamw(layout, AdamWConfig{});
    EXPECT_FALSE(adamw.update(p.data(), grads.data(), 1e-2, 0)) << bad;
  }
  std::vector<float> p = params;
  AdamW huge(layout, AdamWConfig{});
  EXPECT_FALSE(huge.update(p.data(), random_vector(layout.total(), 4).data(), 1e39, 0));
}

// The norm is exact to double rounding and the same bits at any thread count (the ranks' threads may
// differ, and they must clip alike): several blocks of the fixed partition, a ragged tail, mixed scales.
TEST(Optimizer, GradientNormIsExactAndTheSameAtAnyThreadCount) {
  for (const int64_t count : {int64_t(1), int64_t(7), int64_t(16384), int64_t(100003)}) {
    std::vector<float> g = random_vector(count, 5);
    for (int64_t i = 0; i < count; i += 11) g[size_t(i)] *= 1e3f;
    long double exact = 0;
    for (const float x : g) exact += static_cast<long double>(x) * x;
    const int threads = omp_get_max_threads();
    omp_set_num_threads(1);
    const double one = gradient_norm(g.data(), count);
    omp_set_num_threads(3);
    const double three = gradient_norm(g.data(), count);
    omp_set_num_threads(threads);
    EXPECT_NEAR(one, std::sqrt(static_cast<double>(exact)), 1e-13 * one) << count;
    EXPECT_EQ(one, three) << count;
  }
}

// Clipping scales to max_norm only above it; max_norm <= 0 turns it off.
TEST(Optimizer, ClipsOnlyAboveTheLimit) {
  std::vector<float> g{3.0f, 4.0f};  // norm 5
  ASSERT_DOUBLE_EQ(gradient_norm(g.data(), 2), 5.0);
  clip_gradients(g.data(), 2, 5.0, 5.0);
  EXPECT_EQ(g, (std::vector<float>{3.0f, 4.0f}));
  clip_gradients(g.data(), 2, 5.0, 5.5);
  EXPECT_EQ(g, (std::vector<float>{3.0f, 4.0f}));
  clip_gradients(g.data(), 2, 5.0, 0.0);
  EXPECT_EQ(g, (std::vector<float>{3.0f, 4.0f}));
  clip_gradients(g.data(), 2, 5.0, 1.0);
  EXPECT_NEAR(g[0], 0.6f, 1e-7);
  EXPECT_NEAR(g[1], 0.8f, 1e-7);
}

}  // namespace
}  // namespace longctx::model
