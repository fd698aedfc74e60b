// The awkward shapes every attention backend is checked on (CPU now, CUDA on a GPU): odd N, partial last
// segments, w > N, H not a multiple of r, H < r, B > 1, D not a multiple of the SIMD width, D > 128,
// segments longer than one tile chunk (2048 selected rows).
#pragma once

#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "attention/attention.hpp"
#include "attention/reference.hpp"
#include "test_util.hpp"

namespace longctx::testing {

struct AttentionCase {
  std::string name;
  int64_t B, N, H, D;
  std::vector<int64_t> w, r;

  Shape shape() const { return B == 1 ? Shape{N, H, D} : Shape{B, N, H, D}; }
  AttentionParams params(bool causal, HeadOffsets offsets) const {
    AttentionParams p;
    p.schedule = make_schedule(w, r, false);
    p.causal = causal;
    p.offsets = offsets;
    return p;
  }
};

inline std::vector<AttentionCase> awkward_attention_cases() {
  return {
      {"odd_n_partial", 1, 37, 3, 24, {8, 16}, {1, 2}},
      {"w_gt_n_h_not_multiple", 1, 200, 5, 24, {64, 128, 512}, {1, 3, 4}},
      {"batch_h_lt_r", 2, 301, 2, 16, {100, 300}, {1, 5}},
      {"multi_block", 1, 517, 3, 40, {517, 256}, {1, 2}},
      {"bench_like", 1, 1000, 4, 64, {1000, 512, 256}, {1, 2, 4}},
      {"tiny_d", 2, 50, 2, 3, {7}, {1}},
      {"dense", 1, 130, 2, 32, {130}, {1}},
      {"big_d", 1, 90, 2, 136, {32, 64}, {1, 2}},
      {"chunked_segment", 1, 2500, 1, 16, {2500}, {1}},
  };
}

// `backend` against the double-precision reference on case `c`, causal and not, both offset modes,
// forward and backward, with fp32 tolerances. `seed` advances by 4 per call of the inner body.
inline void expect_fp32_matches_reference(AttentionBackend& backend, const AttentionCase& c, uint64_t& seed) {
  for (bool causal : {false, true})
    for (auto offsets : {HeadOffsets::paper, HeadOffsets::grouped}) {
      SCOPED_TRACE(c.name + (causal ? " causal " : " full ") + to_string(offsets));
      const AttentionParams p = c.params(causal, offsets);
      const Shape shape = c.shape();
      // stddev 1.5 makes scores of a few units: softmaxes that are neither flat nor one-hot.
      const Tensor q = random_tensor(shape, ++seed, 1.5f), k = random_tensor(shape, ++seed, 1.5f),
                   v = random_tensor(shape, ++seed), dout = random_tensor(shape, ++seed);
      Tensor o, lse, o_ref, lse_ref;
      backend.forward(p, q, k, v, o, lse);
      reference_forward(p, q, k, v, o_ref, lse_ref);
      // float32 vs double: dot products of <= 136 terms and sums over <= 2500 keys, fast exp2 (~2e-7):
      // observed ~1e-6; 1e-5 leaves room without hiding a wrong key (that costs ~1e-1).
      EXPECT_TRUE(all_close(o, o_ref, 1e-5, 1e-4)) << "o";
      EXPECT_TRUE(all_close(lse, lse_ref, 1e-5, 1e-5)) << "lse";

      Tensor dq, dk, dv, dq_ref, dk_ref, dv_ref;
      backend.backward(p, q, k, v, o, lse, dout, dq, dk, dv);
      reference_backward(p, q, k, v, o_ref, lse_ref, dout, dq_ref, dk_ref, dv_ref);
      // Gradients add up to a few thousand float32 terms of O(1-10) (and use the float lse and o).
      EXPECT_TRUE(all_close(dq, dq_ref, 1e-4, 1e-3)) << "dq";
      EXPECT_TRUE(all_close(dk, dk_ref, 1e-4, 1e-3)) << "dk";
      EXPECT_TRUE(all_close(dv, dv_ref, 1e-4, 1e-3)) << "dv";
    }
}

}  // namespace longctx::testing
