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
#include "attention_cases.hpp"
#include "test_util.hpp"

namespace longctx {
namespace {

using testing::all_close;
using testing::AttentionCase;
using testing::random_tensor;

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
  std::vector<AttentionCase> cases = testing::awkward_attention_cases();
  cases.push_back({"head_dim_128", 1, 700, 2, 128, {700, 128}, {1, 2}});
  CudaAttention backend;
  uint64_t seed = 500;
  for (const AttentionCase& c : cases) testing::expect_fp32_matches_reference(backend, c, seed);
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
