// The CUDA backend's fp32 kernels against the double-precision reference on the CPU issue's awkward
// shapes (odd N, partial segments, w > N, H not a multiple of r, H < r, B > 1, odd D, D > 128, causal and
// not, both offset modes), forward and backward. Skips where no GPU is visible (or CUDA is not built).
#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include "attention/attention.hpp"
#include "attention/cuda/cuda_attention.hpp"
#include "attention/reference.hpp"
#include "runtime/core/error.hpp"
#include "test_util.hpp"

namespace longctx {
namespace {

using testing::all_close;
using testing::random_tensor;

struct Case {
  std::string name;
  int64_t B, N, H, D;
  std::vector<int64_t> w, r;
};

TEST(CudaAttention, RefusesClearlyWithoutAGpu) {
  if (cuda_device_count() > 0) GTEST_SKIP() << "a GPU is visible: " << cuda_description();
  try {
    CudaAttention backend;
    FAIL() << "constructed a CUDA backend without a GPU";
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("--device cuda"), std::string::npos) << e.what();
  }
  EXPECT_THROW(make_attention_backend("cuda"), UsageError);
}

TEST(CudaAttention, Fp32ForwardAndBackwardMatchReference) {
  if (!cuda_compiled_in()) GTEST_SKIP() << "CUDA backend not compiled in";
  if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device visible (" << cuda_description() << ")";
  const std::vector<Case> cases = {
      {"odd_n_partial", 1, 37, 3, 24, {8, 16}, {1, 2}},
      {"w_gt_n_h_not_multiple", 1, 200, 5, 24, {64, 128, 512}, {1, 3, 4}},
      {"batch_h_lt_r", 2, 301, 2, 16, {100, 300}, {1, 5}},
      {"bench_like", 1, 1000, 4, 64, {1000, 512, 256}, {1, 2, 4}},
      {"tiny_d", 2, 50, 2, 3, {7}, {1}},
      {"big_d", 1, 90, 2, 136, {32, 64}, {1, 2}},
      {"long_segment", 1, 2500, 1, 128, {2500}, {1}},
  };
  CudaAttention backend;
  uint64_t seed = 500;
  for (const Case& c : cases)
    for (bool causal : {false, true})
      for (auto offsets : {HeadOffsets::paper, HeadOffsets::grouped}) {
        SCOPED_TRACE(c.name + (causal ? " causal " : " full ") + to_string(offsets));
        AttentionParams p;
        p.schedule = make_schedule(c.w, c.r, false);
        p.causal = causal;
        p.offsets = offsets;
        const Shape shape = c.B == 1 ? Shape{c.N, c.H, c.D} : Shape{c.B, c.N, c.H, c.D};
        const Tensor q = random_tensor(shape, ++seed, 1.5f), k = random_tensor(shape, ++seed, 1.5f),
                     v = random_tensor(shape, ++seed), dout = random_tensor(shape, ++seed);
        Tensor o, lse, o_ref, lse_ref;
        backend.forward(p, q, k, v, o, lse);
        reference_forward(p, q, k, v, o_ref, lse_ref);
        EXPECT_TRUE(all_close(o, o_ref, 1e-5, 1e-4)) << "o";
        EXPECT_TRUE(all_close(lse, lse_ref, 1e-5, 1e-5)) << "lse";
        Tensor dq, dk, dv, dq_ref, dk_ref, dv_ref;
        backend.backward(p, q, k, v, o, lse, dout, dq, dk, dv);
        reference_backward(p, q, k, v, o_ref, lse_ref, dout, dq_ref, dk_ref, dv_ref);
        EXPECT_TRUE(all_close(dq, dq_ref, 1e-4, 1e-3)) << "dq";
        EXPECT_TRUE(all_close(dk, dk_ref, 1e-4, 1e-3)) << "dk";
        EXPECT_TRUE(all_close(dv, dv_ref, 1e-4, 1e-3)) << "dv";
      }
}

TEST(CudaAttention, UncoveredRowsGetZeroAndMinusInfinity) {
  if (!cuda_compiled_in() || cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device";
  AttentionParams p;
  p.schedule = make_schedule({16}, {4}, /*allow_uncovered=*/true);  // H = 2 < r: residues 2, 3 uncovered
  const Shape shape{33, 2, 8};
  const Tensor q = random_tensor(shape, 1), k = random_tensor(shape, 2), v = random_tensor(shape, 3);
  Tensor o, lse, o_ref, lse_ref;
  CudaAttention backend;
  backend.forward(p, q, k, v, o, lse);
  reference_forward(p, q, k, v, o_ref, lse_ref);
  EXPECT_TRUE(all_close(o, o_ref, 1e-5, 1e-4));
  for (int64_t i = 0; i < lse.size(); ++i) EXPECT_EQ(std::isinf(lse[i]), std::isinf(lse_ref[i])) << i;
}

}  // namespace
}  // namespace longctx
