// The CUDA backend against the double-precision reference on the CPU issue's awkward shapes (odd N,
// partial segments, w > N, H not a multiple of r, H < r, B > 1, odd D, D > 128, causal and not, both
// offset modes), forward and backward: the fp32 kernels to fp32 tolerances, the bf16 / fp16 tensor-core
// kernels against the reference on the same rounded inputs, to tolerances stated below. Skips where no
// GPU is visible (or CUDA is not built).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <iostream>
#include <string>
#include <utility>

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
using testing::relative_error;

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

// Tolerances for the half-precision kernels, relative to each tensor's largest entry. The inputs are the
// same rounded values on both sides, so what is left is the rounding of P (and dS) to the dtype before
// their products: about 2^-9 (bf16) or 2^-12 (fp16) of a term, observed well inside these bounds, while
// a wrong key, mask or merge costs O(1).
struct HalfTolerance {
  Dtype dtype;
  double forward, backward;
};

// Sets an environment variable for a scope (the forward kernel choice is read at each launch).
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old, had_ = true;
    setenv(name, value, 1);
  }
  ~ScopedEnv() {
    if (had_) setenv(name_.c_str(), old_.c_str(), 1);
    else unsetenv(name_.c_str());
  }

 private:
  std::string name_, old_;
  bool had_ = false;
};

// Whether the wgmma kernels run on this GPU (it runs the sm_90a code): LONGCTX_FLASH_FORWARD=wgmma is
// accepted for a small forward.
bool wgmma_kernels_run_here() {
  ScopedEnv forward_kernel("LONGCTX_FLASH_FORWARD", "wgmma");
  AttentionCase c{"probe", 1, 16, 1, 16, {16}, {1}};
  const AttentionParams p = c.params(false, HeadOffsets::paper);
  Tensor o, lse;
  try {
    CudaAttention(Dtype::bf16).forward(p, random_tensor(c.shape(), 1), random_tensor(c.shape(), 2),
                                       random_tensor(c.shape(), 3), o, lse);
    return true;
  } catch (const UsageError& e) {
    if (std::string(e.what()).find("LONGCTX_FLASH_FORWARD=wgmma") == std::string::npos) throw;
    return false;
  }
}

TEST(CudaAttention, HalfPrecisionMatchesReferenceOnRoundedInputs) {
  if (!cuda_compiled_in() || cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device";
  std::vector<AttentionCase> cases = testing::awkward_attention_cases();
  cases.push_back({"head_dim_128", 1, 700, 2, 128, {700, 128}, {1, 2}});
  cases.push_back({"many_tiles_d128", 1, 1500, 3, 128, {2048, 1024}, {1, 2}});
  // Branch 0 dilated: o / lse are filled first and every launch merges (elsewhere branch 0 overwrites).
  cases.push_back({"dilated_branch_first", 1, 300, 2, 64, {100, 300}, {2, 1}});
  uint64_t seed = 900;
  // Both kernel families against one reference per case: mma.sync everywhere, wgmma where the GPU runs the
  // sm_90a code (H100 / H200) and the head dim is a multiple of 8.
  const bool wgmma_here = wgmma_kernels_run_here();
  if (!wgmma_here)
    std::cout << "[ note     ] the wgmma kernels do not run on this GPU (" << cuda_description() << "): not tested\n";
  for (const HalfTolerance tol : {HalfTolerance{Dtype::bf16, 2e-2, 5e-2}, HalfTolerance{Dtype::fp16, 4e-3, 1e-2}}) {
    CudaAttention backend(tol.dtype);
    for (const AttentionCase& c : cases)
      for (bool causal : {false, true})
        for (auto offsets : {HeadOffsets::paper, HeadOffsets::grouped}) {
          SCOPED_TRACE(to_string(tol.dtype) + " " + c.name + (causal ? " causal " : " full ") + to_string(offsets));
          const AttentionParams p = c.params(causal, offsets);
          const Shape shape = c.shape();
          const Tensor q = random_tensor(shape, ++seed, 1.5f), k = random_tensor(shape, ++seed, 1.5f),
                       v = random_tensor(shape, ++seed), dout = random_tensor(shape, ++seed);
          Tensor o, lse;
          if (c.D > 128) {  // above the tensor-core kernels: refused, naming the way out
            try {
              backend.forward(p, q, k, v, o, lse);
              ADD_FAILURE() << "accepted head dim " << c.D;
            } catch (const UsageError& e) {
              EXPECT_NE(std::string(e.what()).find("--dtype fp32"), std::string::npos) << e.what();
            }
            continue;
          }
          const Tensor qr = rounded(q, tol.dtype), kr = rounded(k, tol.dtype), vr = rounded(v, tol.dtype),
                       dor = rounded(dout, tol.dtype);
          Tensor o_ref, lse_ref, dq, dk, dv, dq_ref, dk_ref, dv_ref;
          reference_forward(p, qr, kr, vr, o_ref, lse_ref);
          reference_backward(p, qr, kr, vr, o_ref, lse_ref, dor, dq_ref, dk_ref, dv_ref);
          for (const char* kernel : {"mma", "wgmma"}) {
            if (std::string(kernel) == "wgmma" && (!wgmma_here || c.D % 8 != 0)) continue;
            SCOPED_TRACE(kernel);
            ScopedEnv forward_kernel("LONGCTX_FLASH_FORWARD", kernel), backward_kernel("LONGCTX_FLASH_BACKWARD", kernel);
            backend.forward(p, q, k, v, o, lse);
            EXPECT_LE(relative_error(o, o_ref), tol.forward) << "o";
            EXPECT_TRUE(all_close(lse, lse_ref, 1e-3, 1e-4)) << "lse";
            backend.backward(p, q, k, v, o, lse, dout, dq, dk, dv);
            EXPECT_LE(relative_error(dq, dq_ref), tol.backward) << "dq";
            EXPECT_LE(relative_error(dk, dk_ref), tol.backward) << "dk";
            EXPECT_LE(relative_error(dv, dv_ref), tol.backward) << "dv";
          }
        }
  }
}

// All branches in one launch (LONGCTX_FLASH_FUSE=on) against one launch per branch (off), both kernel
// families, on shapes with thousands of blocks of different branches writing the same rows at once: o,
// lse, dk and dv the same bits (each row written in schedule order), dq equal up to the order of its
// atomic additions; three fused runs each, so that a missing wait has chances to show. (Sized for the
// memcheck step too.)
TEST(CudaAttention, FusedLaunchesMatchOneLaunchPerBranch) {
  if (!cuda_compiled_in() || cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device";
  const bool wgmma_here = wgmma_kernels_run_here();
  const std::vector<AttentionCase> cases = {
      {"four_branches", 1, 16384, 8, 128, {512, 2048, 8192, 16384}, {1, 2, 4, 8}},
      {"dilated_first_d64", 2, 6000, 4, 64, {1000, 3000, 6000}, {2, 1, 600}},
  };
  CudaAttention backend(Dtype::bf16);
  uint64_t seed = 1300;
  for (const AttentionCase& c : cases) {
    const Tensor q = random_tensor(c.shape(), ++seed, 1.5f), k = random_tensor(c.shape(), ++seed, 1.5f),
                 v = random_tensor(c.shape(), ++seed), dout = random_tensor(c.shape(), ++seed);
    for (bool causal : {false, true})
      for (const char* kernel : {"mma", "wgmma"}) {
        if (std::string(kernel) == "wgmma" && !wgmma_here) continue;
        SCOPED_TRACE(c.name + (causal ? " causal " : " full ") + kernel);
        ScopedEnv forward_kernel("LONGCTX_FLASH_FORWARD", kernel), backward_kernel("LONGCTX_FLASH_BACKWARD", kernel);
        const AttentionParams p = c.params(causal, HeadOffsets::paper);
        Tensor o1, lse1, dq1, dk1, dv1;
        {
          ScopedEnv fuse("LONGCTX_FLASH_FUSE", "off");
          backend.forward(p, q, k, v, o1, lse1);
          backend.backward(p, q, k, v, o1, lse1, dout, dq1, dk1, dv1);
        }
        ScopedEnv fuse("LONGCTX_FLASH_FUSE", "on");
        for (int run = 0; run < 3; ++run) {
          Tensor o, lse, dq, dk, dv;
          backend.forward(p, q, k, v, o, lse);
          backend.backward(p, q, k, v, o, lse, dout, dq, dk, dv);
          EXPECT_EQ(relative_error(o, o1), 0.0) << "o, run " << run;
          EXPECT_EQ(relative_error(lse, lse1), 0.0) << "lse, run " << run;
          EXPECT_EQ(relative_error(dk, dk1), 0.0) << "dk, run " << run;
          EXPECT_EQ(relative_error(dv, dv1), 0.0) << "dv, run " << run;
          EXPECT_LE(relative_error(dq, dq1), 1e-5) << "dq, run " << run;
        }
      }
  }
}

TEST(CudaAttention, UncoveredRowsGetZeroAndMinusInfinity) {
  if (!cuda_compiled_in() || cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device";
  AttentionParams p;
  p.schedule = make_schedule({16}, {4}, /*allow_uncovered=*/true);  // H = 2 < r: residues 2, 3 uncovered
  const Shape shape{33, 2, 8};
  const Tensor q = random_tensor(shape, 1), k = random_tensor(shape, 2), v = random_tensor(shape, 3);
  for (Dtype dtype : {Dtype::fp32, Dtype::bf16}) {
    SCOPED_TRACE(to_string(dtype));
    Tensor o, lse, o_ref, lse_ref;
    CudaAttention backend(dtype);
    backend.forward(p, q, k, v, o, lse);
    reference_forward(p, rounded(q, dtype), rounded(k, dtype), rounded(v, dtype), o_ref, lse_ref);
    EXPECT_TRUE(all_close(o, o_ref, 1e-2, 1e-2));
    for (int64_t i = 0; i < lse.size(); ++i) {
      EXPECT_EQ(std::isinf(lse[i]), std::isinf(lse_ref[i])) << i;
      if (std::isinf(lse_ref[i])) {
        for (int64_t d = 0; d < 8; ++d) EXPECT_EQ(o[i * 8 + d], 0.f) << i;
      }
    }
  }
}

// At |score| ~ 1e9 the backward's P = exp(score - lse), <= 1 exactly, came out far larger from fp32
// rounding alone (inf once packed to bf16); capped, as on the CPU, dv stays within its bound, and a NaN
// still spreads over its segment. (test_flash_kernels_emulated runs the same cases on the emulated kernels.)
TEST(CudaAttention, BackwardStaysBoundedAtHugeScores) {
  if (!cuda_compiled_in() || cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device";
  AttentionParams p;
  p.schedule = make_schedule({64}, {1}, false);
  const bool wgmma_here = wgmma_kernels_run_here();
  for (const int64_t D : {16, 24})
    for (const std::string nan_in : {"", "q", "k"}) {
      const testing::HugeScoreInputs x = testing::huge_score_inputs(D, nan_in);
      const Tensor &q = x.q, &k = x.k, &v = x.v, &dout = x.dout;
      const bool with_nan = !nan_in.empty();
      // fp32 runs the reference kernels (LONGCTX_FLASH_* do not apply); bf16 the mma and wgmma kernels.
      for (const auto& [dtype, kernel] : {std::pair{Dtype::fp32, "reference"}, std::pair{Dtype::bf16, "mma"},
                                          std::pair{Dtype::bf16, "wgmma"}}) {
        if (std::string(kernel) == "wgmma" && !wgmma_here) continue;
        SCOPED_TRACE(to_string(dtype) + " " + kernel + " D=" + std::to_string(D) + " NaN in: " + nan_in);
        ScopedEnv forward_kernel("LONGCTX_FLASH_FORWARD", dtype == Dtype::fp32 ? "mma" : kernel),
            backward_kernel("LONGCTX_FLASH_BACKWARD", dtype == Dtype::fp32 ? "mma" : kernel);
        CudaAttention backend(dtype);
        Tensor o, lse, dq, dk, dv;
        backend.forward(p, q, k, v, o, lse);
        backend.backward(p, q, k, v, o, lse, dout, dq, dk, dv);
        EXPECT_TRUE(testing::dv_within_bound(dv, rounded(dout, dtype), 64, dtype == Dtype::fp32 ? 1e-5 : 1e-2,
                                             with_nan ? 64 : 0));
        if (dtype == Dtype::fp32) {
          EXPECT_TRUE(testing::dv_sums_to_dout(dv, dout, 64, 1e-5, with_nan ? 64 : 0));
        }
        if (with_nan) {
          EXPECT_TRUE(testing::rows_all_nan(dv, 0, 64)) << "the NaN's segment";
        }
      }
    }
}

}  // namespace
}  // namespace longctx
