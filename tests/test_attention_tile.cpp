// The tile kernels directly, against plain double loops: prefix key limits (including 0), shapes that
// cross the kernels' query and key blocks, D not a multiple of the SIMD width, the log-sum-exp merge.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "attention/cpu_tile.hpp"
#include "test_util.hpp"

namespace longctx {
namespace {

using testing::all_close;

constexpr double kInf = std::numeric_limits<double>::infinity();

struct TileCase {
  int64_t m_q, m_k, D;
};

std::vector<float> random_floats(int64_t count, uint64_t seed, float stddev = 1.0f) {
  std::vector<float> out(static_cast<size_t>(count));
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, stddev);
  for (float& x : out) x = normal(rng);
  return out;
}

// Limits with every kind of row: 0, full, random prefixes, and (when there are many) a causal ramp.
std::vector<int64_t> random_limits(int64_t m_q, int64_t m_k, uint64_t seed) {
  std::vector<int64_t> limit(static_cast<size_t>(m_q));
  std::mt19937_64 rng(seed);
  for (int64_t i = 0; i < m_q; ++i) {
    const auto kind = i % 4;
    limit[static_cast<size_t>(i)] = kind == 0 ? 0 : kind == 1 ? m_k : kind == 2 ? std::min(i + 1, m_k)
                                                                      : static_cast<int64_t>(rng() % static_cast<uint64_t>(m_k + 1));
  }
  return limit;
}

struct Naive {
  std::vector<double> o, lse, dq, dk, dv;
};

Naive naive_tile(const std::vector<float>& q, const std::vector<float>& k, const std::vector<float>& v,
                 const std::vector<float>& dout, const int64_t* limit, const TileCase& c, double scale) {
  Naive out;
  const auto D = c.D;
  out.o.assign(static_cast<size_t>(c.m_q * D), 0.0);
  out.lse.assign(static_cast<size_t>(c.m_q), -kInf);
  out.dq.assign(static_cast<size_t>(c.m_q * D), 0.0);
  out.dk.assign(static_cast<size_t>(c.m_k * D), 0.0);
  out.dv.assign(static_cast<size_t>(c.m_k * D), 0.0);
  auto at = [](const std::vector<float>& t, int64_t i) { return static_cast<double>(t[static_cast<size_t>(i)]); };
  for (int64_t i = 0; i < c.m_q; ++i) {
    const int64_t keys = limit ? limit[i] : c.m_k;
    if (keys == 0) continue;
    std::vector<double> p(static_cast<size_t>(keys));
    double mx = -kInf;
    for (int64_t j = 0; j < keys; ++j) {
      double s = 0;
      for (int64_t d = 0; d < D; ++d) s += at(q, i * D + d) * at(k, j * D + d);
      p[static_cast<size_t>(j)] = s * scale;
      mx = std::max(mx, s * scale);
    }
    double sum = 0;
    for (double& x : p) sum += (x = std::exp(x - mx));
    for (double& x : p) x /= sum;
    out.lse[static_cast<size_t>(i)] = mx + std::log(sum);
    for (int64_t j = 0; j < keys; ++j)
      for (int64_t d = 0; d < D; ++d) out.o[static_cast<size_t>(i * D + d)] += p[static_cast<size_t>(j)] * at(v, j * D + d);
    double delta = 0;
    for (int64_t d = 0; d < D; ++d) delta += at(dout, i * D + d) * out.o[static_cast<size_t>(i * D + d)];
    for (int64_t j = 0; j < keys; ++j) {
      double dp = 0;
      for (int64_t d = 0; d < D; ++d) dp += at(dout, i * D + d) * at(v, j * D + d);
      const double ds = p[static_cast<size_t>(j)] * (dp - delta);
      for (int64_t d = 0; d < D; ++d) {
        out.dv[static_cast<size_t>(j * D + d)] += p[static_cast<size_t>(j)] * at(dout, i * D + d);
        out.dq[static_cast<size_t>(i * D + d)] += scale * ds * at(k, j * D + d);
        out.dk[static_cast<size_t>(j * D + d)] += scale * ds * at(q, i * D + d);
      }
    }
  }
  return out;
}

class Tile : public ::testing::TestWithParam<TileCase> {};

TEST_P(Tile, ForwardAndBackwardMatchNaive) {
  const TileCase c = GetParam();
  const auto q = random_floats(c.m_q * c.D, 1, 1.5f), k = random_floats(c.m_k * c.D, 2, 1.5f),
             v = random_floats(c.m_k * c.D, 3), dout = random_floats(c.m_q * c.D, 4);
  const float scale = 1.0f / std::sqrt(static_cast<float>(c.D));
  const auto limits = random_limits(c.m_q, c.m_k, 5);
  TileWorkspace ws;
  for (const int64_t* limit : {static_cast<const int64_t*>(nullptr), limits.data()}) {
    SCOPED_TRACE(limit ? "prefix limits" : "no limits");
    const Naive expected = naive_tile(q, k, v, dout, limit, c, scale);
    std::vector<float> o(static_cast<size_t>(c.m_q * c.D), 7.0f), lse(static_cast<size_t>(c.m_q), 7.0f);
    flash_forward_tile(q.data(), k.data(), v.data(), c.m_q, c.m_k, c.D, limit, scale, o.data(), lse.data(), ws);
    // float32 accumulation over <= a few hundred keys of O(1) values: ~1e-6; fast exp2 adds ~2e-7 relative.
    EXPECT_TRUE(all_close(o.data(), expected.o.data(), c.m_q * c.D, 2e-6, 2e-5)) << "o";
    EXPECT_TRUE(all_close(lse.data(), expected.lse.data(), c.m_q, 2e-6, 2e-6)) << "lse";

    // Backward with the naive (final) lse and delta; outputs are accumulated into, so start from 1.
    std::vector<float> lse_f(expected.lse.begin(), expected.lse.end()), delta(static_cast<size_t>(c.m_q));
    for (int64_t i = 0; i < c.m_q; ++i) {
      double sum = 0;
      for (int64_t d = 0; d < c.D; ++d)
        sum += static_cast<double>(dout[static_cast<size_t>(i * c.D + d)]) * expected.o[static_cast<size_t>(i * c.D + d)];
      delta[static_cast<size_t>(i)] = static_cast<float>(sum);
    }
    std::vector<float> dq(static_cast<size_t>(c.m_q * c.D), 1.0f), dk(static_cast<size_t>(c.m_k * c.D), 1.0f),
        dv(static_cast<size_t>(c.m_k * c.D), 1.0f);
    flash_backward_tile(q.data(), k.data(), v.data(), dout.data(), lse_f.data(), delta.data(), c.m_q, c.m_k, c.D, limit,
                        scale, dq.data(), dk.data(), dv.data(), ws);
    for (auto* g : {&dq, &dk, &dv})
      for (float& x : *g) x -= 1.0f;
    // Gradients sum up to m_q terms of O(1): float32 error ~1e-5 absolute (the -1 above costs ~6e-8).
    EXPECT_TRUE(all_close(dq.data(), expected.dq.data(), c.m_q * c.D, 2e-5, 1e-4)) << "dq";
    EXPECT_TRUE(all_close(dk.data(), expected.dk.data(), c.m_k * c.D, 2e-5, 1e-4)) << "dk";
    EXPECT_TRUE(all_close(dv.data(), expected.dv.data(), c.m_k * c.D, 2e-5, 1e-4)) << "dv";
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, Tile,
                         ::testing::Values(TileCase{1, 1, 1}, TileCase{3, 5, 7}, TileCase{17, 9, 24},
                                           TileCase{150, 300, 24}, TileCase{97, 129, 64}, TileCase{200, 130, 40},
                                           TileCase{64, 256, 128}, TileCase{5, 400, 80}));

TEST(TileForward, ZeroLimitGivesZeroAndNegInf) {
  const int64_t m_q = 3, m_k = 4, D = 8;
  const auto q = random_floats(m_q * D, 1), k = random_floats(m_k * D, 2), v = random_floats(m_k * D, 3);
  const std::vector<int64_t> limit{0, 0, 0};
  std::vector<float> o(static_cast<size_t>(m_q * D), 5.0f), lse(static_cast<size_t>(m_q), 5.0f);
  TileWorkspace ws;
  flash_forward_tile(q.data(), k.data(), v.data(), m_q, m_k, D, limit.data(), 0.3f, o.data(), lse.data(), ws);
  for (float x : o) EXPECT_EQ(x, 0.0f);
  for (float x : lse) EXPECT_EQ(x, -std::numeric_limits<float>::infinity());
  // A zero-key tile leaves the gradients untouched (lse = -inf rows too).
  std::vector<float> dq(static_cast<size_t>(m_q * D), 2.0f), dk(static_cast<size_t>(m_k * D), 2.0f),
      dv(static_cast<size_t>(m_k * D), 2.0f), delta(static_cast<size_t>(m_q), 0.0f);
  flash_backward_tile(q.data(), k.data(), v.data(), q.data(), lse.data(), delta.data(), m_q, m_k, D, nullptr, 0.3f,
                      dq.data(), dk.data(), dv.data(), ws);
  for (auto* g : {&dq, &dk, &dv})
    for (float x : *g) EXPECT_EQ(x, 2.0f);
}

// The backward normalises by the lse its caller passes. One that rounds below the row's largest score (by
// one fp32 ulp, 64, at a score of 1e9: an lse from another rounding path) gave P = e^64 for that key and
// a dv 1e28 too large; P is held at 1, so the key gets exactly dout.
TEST(TileBackward, PStaysAtMostOneWhenLseRoundsBelowTheScore) {
  const float score = 1e9f, lse = std::nextafter(score, 0.0f);  // 1e9 - 64
  ASSERT_EQ(score - lse, 64.0f);
  const std::vector<float> q{score}, k{1.0f}, v{2.0f}, dout{3.0f}, delta{6.0f};  // o = v, delta = dout o
  std::vector<float> dq{0.0f}, dk{0.0f}, dv{0.0f};
  TileWorkspace ws;
  flash_backward_tile(q.data(), k.data(), v.data(), dout.data(), &lse, delta.data(), 1, 1, 1, nullptr, 1.0f,
                      dq.data(), dk.data(), dv.data(), ws);
  EXPECT_EQ(dv[0], 3.0f);  // P dout with P = 1
  EXPECT_EQ(dq[0], 0.0f);  // dS = P (dout v - delta) = 0
  EXPECT_EQ(dk[0], 0.0f);
}

TEST(MergeInto, SplitKeysMergeToTheWhole) {
  // Keys [0, 300) in one tile equal keys [0, 170) and [170, 300) merged; rows with limit <= 170 get a
  // -inf part from the second half, rows with limit 0 stay -inf.
  const TileCase c{120, 300, 24};
  const auto q = random_floats(c.m_q * c.D, 11, 2.0f), k = random_floats(c.m_k * c.D, 12, 2.0f),
             v = random_floats(c.m_k * c.D, 13);
  const auto limit = random_limits(c.m_q, c.m_k, 14);
  const int64_t split = 170;
  std::vector<int64_t> limit_a(limit.size()), limit_b(limit.size());
  for (size_t i = 0; i < limit.size(); ++i) {
    limit_a[i] = std::min(limit[i], split);
    limit_b[i] = std::max<int64_t>(limit[i] - split, 0);
  }
  TileWorkspace ws;
  const float scale = 0.2f;
  const size_t rows = static_cast<size_t>(c.m_q), values = static_cast<size_t>(c.m_q * c.D);
  std::vector<float> o(values), lse(rows), oa(values), la(rows), ob(values), lb(rows);
  flash_forward_tile(q.data(), k.data(), v.data(), c.m_q, c.m_k, c.D, limit.data(), scale, o.data(), lse.data(), ws);
  flash_forward_tile(q.data(), k.data(), v.data(), c.m_q, split, c.D, limit_a.data(), scale, oa.data(), la.data(), ws);
  flash_forward_tile(q.data(), k.data() + split * c.D, v.data() + split * c.D, c.m_q, c.m_k - split, c.D,
                     limit_b.data(), scale, ob.data(), lb.data(), ws);
  // Merge b into a, then (to check -inf on the accumulator side) a into an empty accumulator.
  merge_into(oa.data(), la.data(), ob.data(), lb.data(), c.m_q, c.D, c.D, 1);
  std::vector<float> o_empty(values, 0.0f), l_empty(rows, -std::numeric_limits<float>::infinity());
  merge_into(o_empty.data(), l_empty.data(), oa.data(), la.data(), c.m_q, c.D, c.D, 1);
  // Two float32 partial results, one exp/log each: a few ulps of O(1) values.
  EXPECT_TRUE(all_close(o_empty.data(), o.data(), c.m_q * c.D, 2e-6, 2e-5));
  EXPECT_TRUE(all_close(l_empty.data(), lse.data(), c.m_q, 2e-6, 2e-6));
}

}  // namespace
}  // namespace longctx
