// Single-precision GEMM for the model's dense layers, row-major:
//   C[M,N] = alpha * op(A)[M,K] * op(B)[K,N] + beta * C
// op(A) = A ([M,K], leading dimension lda) or A^T (A stored [K,M]); likewise op(B).
// sgemm is cache-blocked (panels packed to contiguous MR x KC and KC x NR strips), register-tiled with
// vector extensions, and OpenMP-parallel over output tiles (each tile is owned by one thread, and each
// element's K-sum is accumulated in a fixed order, so results do not depend on the thread count).
// sgemm_naive is its slow, obviously-right twin (double accumulation) for tests.
#pragma once

#include <cstdint>

namespace longctx::model {

enum class Trans { no, yes };

void sgemm(Trans trans_a, Trans trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
           const float* b, int64_t ldb, float beta, float* c, int64_t ldc);

void sgemm_naive(Trans trans_a, Trans trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
                 int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc);

}  // namespace longctx::model
