// Blocked sgemm (see gemm.hpp). Loop nest per output tile [MC x NC] (one OpenMP task each):
//   for each K block of KC: pack op(A) rows into MR-row strips [KC][MR] and op(B) columns into
//   NR-column strips [KC][NR] (zero-padded at the edges), then run the MR x NR micro-kernel over
//   every strip pair, accumulating in registers and adding alpha * acc into C.
// beta is applied once per tile before the first K block.
#include "runtime/model/gemm.hpp"

#include <omp.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "runtime/core/simd.hpp"

namespace longctx::model {
namespace {

using simd::kLanes;
using simd::vfloat;

constexpr int64_t kMR = 8;
constexpr int64_t kNR = 2 * kLanes;
constexpr int64_t kMC = 128;
constexpr int64_t kNC = 256;
constexpr int64_t kKC = 256;
// sgemm halves the tiles for more threads, down to 4 x 2 register tiles: halving must keep them multiples.
constexpr bool power_of_two(int64_t x) { return x > 0 && (x & (x - 1)) == 0; }
static_assert(kMC % (4 * kMR) == 0 && power_of_two(kMC / (4 * kMR)), "kMC: 4 kMR times a power of two");
static_assert(kNC % (2 * kNR) == 0 && power_of_two(kNC / (2 * kNR)), "kNC: 2 kNR times a power of two");

inline float element(const float* p, int64_t ld, Trans trans, int64_t row, int64_t col) {
  return trans == Trans::no ? p[row * ld + col] : p[col * ld + row];
}

// op(M)[i0 + i, k0 + p] -> out[(i / W) * kc * W + p * W + i % W], zero beyond `rows`: strips of W rows of
// op(M), each stored column by column. op(A)'s rows are packed with W = MR; op(B)'s columns with W = NR, as
// the rows of op(B)^T (pack_b).
template <int64_t W>
void pack_strips(const float* m, int64_t ld, Trans t, int64_t i0, int64_t rows, int64_t k0, int64_t kc, float* out) {
  for (int64_t strip = 0; strip < rows; strip += W) {
    float* dst = out + (strip / W) * kc * W;
    const int64_t live = std::min(W, rows - strip);
    if (live == W && t == Trans::yes) {  // op(M)'s column p is a row of M: W floats in a row
      for (int64_t p = 0; p < kc; ++p) std::memcpy(dst + p * W, m + (k0 + p) * ld + i0 + strip, sizeof(float) * W);
      continue;
    }
    if (live == W && t == Trans::no) {  // op(M)'s row i is a row of M: read in order, W rows interleaved
      for (int64_t i = 0; i < W; ++i) {
        const float* src = m + (i0 + strip + i) * ld + k0;
        for (int64_t p = 0; p < kc; ++p) dst[p * W + i] = src[p];
      }
      continue;
    }
    for (int64_t p = 0; p < kc; ++p)
      for (int64_t i = 0; i < W; ++i) dst[p * W + i] = i < live ? element(m, ld, t, i0 + strip + i, k0 + p) : 0.0f;
  }
}

void pack_a(const float* a, int64_t lda, Trans ta, int64_t i0, int64_t rows, int64_t k0, int64_t kc, float* out) {
  pack_strips<kMR>(a, lda, ta, i0, rows, k0, kc, out);
}

// op(B)[k0 + p, j0 + j] -> out[(j / NR) * kc * NR + p * NR + j % NR], zero beyond n.
void pack_b(const float* b, int64_t ldb, Trans tb, int64_t k0, int64_t kc, int64_t j0, int64_t cols, float* out) {
  pack_strips<kNR>(b, ldb, tb == Trans::no ? Trans::yes : Trans::no, j0, cols, k0, kc, out);
}

// c[0:rows, 0:cols] += alpha * (packed A strip) x (packed B strip).
void micro_kernel(int64_t kc, const float* a, const float* b, float alpha, float* c, int64_t ldc, int64_t rows,
                  int64_t cols) {
  vfloat acc[kMR][2] = {};
  for (int64_t p = 0; p < kc; ++p) {
    const vfloat b0 = simd::load(b + p * kNR), b1 = simd::load(b + p * kNR + kLanes);
    for (int64_t i = 0; i < kMR; ++i) {
      const float ai = a[p * kMR + i];
      acc[i][0] += ai * b0;
      acc[i][1] += ai * b1;
    }
  }
  if (rows == kMR && cols == kNR) {  // a whole tile: added from the registers, a vector at a time
    for (int64_t i = 0; i < kMR; ++i) {
      float* row = c + i * ldc;
      simd::store(row, simd::load(row) + alpha * acc[i][0]);
      simd::store(row + kLanes, simd::load(row + kLanes) + alpha * acc[i][1]);
    }
    return;
  }
  for (int64_t i = 0; i < rows; ++i)  // a part tile
    for (int64_t j = 0; j < cols; ++j) c[i * ldc + j] += alpha * acc[i][j / kLanes][j % kLanes];
}

}  // namespace

void sgemm(Trans trans_a, Trans trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
           const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  if (m <= 0 || n <= 0) return;
  // A tile for every thread where C has too few of kMC x kNC (a weight gradient, [dim, dim], has 1 or 2):
  // halved, down to 4 x 2 register tiles. Tiles start on register tiles' edges, so each element of C is
  // computed as before, by the same instructions: the results do not depend on the thread count.
  int64_t mc = kMC, nc = kNC;
  const auto count_tiles = [&] { return ((m + mc - 1) / mc) * ((n + nc - 1) / nc); };
  const int64_t threads = omp_get_max_threads();
  while (count_tiles() < threads && (mc > 4 * kMR || nc > 2 * kNR)) {
    if (mc > 4 * kMR && (mc >= nc || nc <= 2 * kNR))
      mc /= 2;
    else
      nc /= 2;
  }
  const int64_t tiles_n = (n + nc - 1) / nc;
  const int64_t tiles = count_tiles();
#pragma omp parallel if (tiles > 1 && m * n * k > (int64_t{1} << 18))
  {
    std::vector<float> packed_a(static_cast<size_t>(kMC * kKC));
    std::vector<float> packed_b(static_cast<size_t>(kKC * ((kNC + kNR - 1) / kNR) * kNR));
#pragma omp for schedule(static)
    for (int64_t tile = 0; tile < tiles; ++tile) {
      const int64_t i0 = (tile / tiles_n) * mc, j0 = (tile % tiles_n) * nc;
      const int64_t rows = std::min(mc, m - i0), cols = std::min(nc, n - j0);
      for (int64_t i = 0; i < rows; ++i) {
        float* row = c + (i0 + i) * ldc + j0;
        if (beta == 0.0f)
          std::fill(row, row + cols, 0.0f);
        else if (beta != 1.0f)
          for (int64_t j = 0; j < cols; ++j) row[j] *= beta;
      }
      for (int64_t k0 = 0; k0 < k; k0 += kKC) {
        const int64_t kc = std::min(kKC, k - k0);
        pack_a(a, lda, trans_a, i0, rows, k0, kc, packed_a.data());
        pack_b(b, ldb, trans_b, k0, kc, j0, cols, packed_b.data());
        for (int64_t js = 0; js < cols; js += kNR)
          for (int64_t is = 0; is < rows; is += kMR)
            micro_kernel(kc, packed_a.data() + (is / kMR) * kc * kMR, packed_b.data() + (js / kNR) * kc * kNR, alpha,
                         c + (i0 + is) * ldc + j0 + js, ldc, std::min(kMR, rows - is), std::min(kNR, cols - js));
      }
    }
  }
}

void sgemm_naive(Trans trans_a, Trans trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
                 int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      double sum = 0;
      for (int64_t p = 0; p < k; ++p)
        sum += double(element(a, lda, trans_a, i, p)) * double(element(b, ldb, trans_b, p, j));
      const double prior = beta == 0.0f ? 0.0 : double(beta) * double(c[i * ldc + j]);
      c[i * ldc + j] = static_cast<float>(double(alpha) * sum + prior);
    }
}

}  // namespace longctx::model
