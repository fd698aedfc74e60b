// The reference's gradients against central finite differences of its own forward, all in double.
// loss = sum(dout * o), so dloss/dx is what reference_backward returns for x in {q, k, v}.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "attention/reference.hpp"
#include "test_util.hpp"

namespace longctx {
namespace {

double loss(const AttentionParams& p, const AttentionDims& dims, const std::vector<double>& q,
            const std::vector<double>& k, const std::vector<double>& v, const std::vector<double>& dout) {
  std::vector<double> o(q.size()), lse(q.size() / static_cast<size_t>(dims.head_dim));
  reference_forward(p, dims, q.data(), k.data(), v.data(), o.data(), lse.data());
  double sum = 0;
  for (size_t i = 0; i < o.size(); ++i) sum += dout[i] * o[i];
  return sum;
}

TEST(ReferenceGradients, MatchFiniteDifferences) {
  const AttentionDims dims{2, 11, 3, 4};
  const int64_t count = dims.batch * dims.seq_len * dims.heads * dims.head_dim;
  for (bool causal : {false, true})
    for (auto offsets : {HeadOffsets::paper, HeadOffsets::grouped}) {
      SCOPED_TRACE(std::string(causal ? "causal " : "full ") + to_string(offsets));
      AttentionParams p;
      // Overlapping branches (keys counted twice), a partial last segment, w > N, H = 3 vs r = 2 and 4.
      p.schedule = make_schedule({4, 8, 16}, {1, 2, 4}, false);
      p.causal = causal;
      p.offsets = offsets;
      p.softmax_scale = 0.7;
      std::vector<double> q = testing::random_doubles(count, 1), k = testing::random_doubles(count, 2),
                          v = testing::random_doubles(count, 3), dout = testing::random_doubles(count, 4);
      std::vector<double> dq(static_cast<size_t>(count)), dk(dq.size()), dv(dq.size());
      reference_backward(p, dims, q.data(), k.data(), v.data(), dout.data(), dq.data(), dk.data(), dv.data());
      const double eps = 1e-5;
      for (auto [x, grad, name] : {std::tuple{&q, &dq, "dq"}, std::tuple{&k, &dk, "dk"}, std::tuple{&v, &dv, "dv"}}) {
        std::vector<double> numeric(static_cast<size_t>(count));
        for (size_t i = 0; i < numeric.size(); ++i) {
          const double keep = (*x)[i];
          (*x)[i] = keep + eps;
          const double up = loss(p, dims, q, k, v, dout);
          (*x)[i] = keep - eps;
          const double down = loss(p, dims, q, k, v, dout);
          (*x)[i] = keep;
          numeric[i] = (up - down) / (2 * eps);
        }
        // Central differences: truncation ~eps^2 * f''' ~1e-10, rounding ~1e-16 / eps ~1e-11.
        EXPECT_TRUE(testing::all_close(grad->data(), numeric.data(), count, 1e-8, 1e-6)) << name;
      }
    }
}

}  // namespace
}  // namespace longctx
