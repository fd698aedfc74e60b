// Tile kernels (see cpu_tile.hpp). Layout of the packed operands, D' = D rounded up to the SIMD width:
//   kT, vT: [m_k / kBlockK][D][kBlockK]  key-block-major transposes, keys contiguous (zero padded to whole
//           vectors; the products read a block's columns only so far)
//   kp, vp: [m_k][D']  rows padded with zeros (the products read m_k rows of them, no more)
// Every product is one register-blocked kernel, C[M, cols] (+)= A(M x inner) B[inner, cols]: C holds
// kRowsMR x kVecsNR vectors in registers, A is read by broadcast through (row, inner) strides (so P^T and
// dS^T need no transpose), B is read as contiguous vectors. Forward, per block of kBlockQ queries:
//   S = (scale Q) kT_blk; online softmax in base 2 (m, l per row); O = alpha O + P vp_blk;
//   lse = max_j S + ln(l), from the row's largest score itself.
// Backward, per key block (outer) and query block (inner), FlashAttention-2's order:
//   S = (scale Q) kT; P = exp2((S - lse) log2e); dP = dO vT; dS = scale P (dP - delta);
//   dV_blk += P^T dO; dQ += dS kp; dK_blk += dS^T Q.
// Both passes form S by the same product of the same operands, so each score rounds alike in both, and the
// row's largest score minus lse is exactly -ln(l): where one key dominates a row (|score| ~ 1e9, where fp32
// rounds a score by ~100), its P is exactly 1. Scaling after the product, or taking lse through base 2 and
// back, rounded the two apart by an ulp of the score, and the backward lost or doubled rows' weight.
#include "attention/cpu_tile.hpp"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <new>

#include "runtime/core/simd.hpp"

namespace longctx {

using simd::kLanes;
using simd::vfloat;
using simd::vint;

namespace {

// Blocks: 48 x 128 scores (24 KiB) stay in L1 between the score product, the softmax and P V.
// Measured on the 2-core AVX-512 machine: 48-120 x 128-256 are within noise of each other.
constexpr int64_t kBlockQ = kTileBlockQ;  // query rows per block (a multiple of kRowsMR keeps the kernels full)
constexpr int64_t kBlockK = kTileBlockK;  // keys per block (a multiple of kLanes)
#if defined(__AVX512F__)
constexpr int kRowsMR = 6;  // 6 x 4 accumulators + 4 B vectors + 1 broadcast = 29 of 32 registers
constexpr int kVecsNR = 4;
#else
constexpr int kRowsMR = 4;  // 4 x 2 + 2 + 1 = 11 of 16 registers
constexpr int kVecsNR = 2;
#endif
using simd::kLog2e;
constexpr float kLn2 = 0.6931471805599453f;
constexpr float kNegInf = -std::numeric_limits<float>::infinity();

int64_t round_up(int64_t x, int64_t multiple) { return (x + multiple - 1) / multiple * multiple; }

template <int MR, int NV>
void kernel(int64_t inner, const float* a, int64_t a_rs, int64_t a_ts, const float* b, int64_t ldb, float* c,
            int64_t ldc, bool accumulate) {
  vfloat acc[MR][NV];
#pragma GCC unroll 8
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 8
    for (int n = 0; n < NV; ++n) acc[r][n] = accumulate ? simd::load(c + r * ldc + n * kLanes) : vfloat{};
  for (int64_t t = 0; t < inner; ++t) {
    const float* bt = b + t * ldb;
    const float* at = a + t * a_ts;
    vfloat bv[NV];
#pragma GCC unroll 8
    for (int n = 0; n < NV; ++n) bv[n] = simd::load(bt + n * kLanes);
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) {
      const vfloat av = simd::splat(at[r * a_rs]);
#pragma GCC unroll 8
      for (int n = 0; n < NV; ++n) acc[r][n] += av * bv[n];
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 8
    for (int n = 0; n < NV; ++n) simd::store(c + r * ldc + n * kLanes, acc[r][n]);
}

using KernelFn = void (*)(int64_t, const float*, int64_t, int64_t, const float*, int64_t, float*, int64_t, bool);

template <int MR, int... NV>
constexpr std::array<KernelFn, sizeof...(NV)> kernel_row(std::integer_sequence<int, NV...>) {
  return {&kernel<MR, NV + 1>...};
}
template <int... MR>
constexpr std::array<std::array<KernelFn, kVecsNR>, sizeof...(MR)> kernel_table(std::integer_sequence<int, MR...>) {
  return {kernel_row<MR + 1>(std::make_integer_sequence<int, kVecsNR>{})...};
}
constexpr auto kKernels = kernel_table(std::make_integer_sequence<int, kRowsMR>{});

// C[M, cols] (+)= A B with A(row, t) = a[row * a_rs + t * a_ts], B[t, :] = b + t * ldb; cols % kLanes == 0.
void gemm(int64_t rows, int64_t cols, int64_t inner, const float* a, int64_t a_rs, int64_t a_ts, const float* b,
          int64_t ldb, float* c, int64_t ldc, bool accumulate) {
  const int64_t vecs = cols / kLanes;
  for (int64_t r0 = 0; r0 < rows; r0 += kRowsMR) {
    const int64_t mr = std::min<int64_t>(kRowsMR, rows - r0);
    for (int64_t v0 = 0; v0 < vecs; v0 += kVecsNR) {
      const int64_t nv = std::min<int64_t>(kVecsNR, vecs - v0);
      kKernels[static_cast<size_t>(mr - 1)][static_cast<size_t>(nv - 1)](
          inner, a + r0 * a_rs, a_rs, a_ts, b + v0 * kLanes, ldb, c + r0 * ldc + v0 * kLanes, ldc, accumulate);
    }
  }
}

// kT[kb][d][jj] = k[kb * kBlockK + jj][d], zero beyond m_k up to a whole vector (the score products read
// round_up(nk, kLanes) columns of a block: zeroing the block's 128 was most of a short tile's packing).
void pack_transposed(const float* k, int64_t m_k, int64_t head_dim, float* kT) {
  const int64_t blocks = (m_k + kBlockK - 1) / kBlockK;
  for (int64_t kb = 0; kb < blocks; ++kb) {
    float* block = kT + kb * head_dim * kBlockK;
    const int64_t nk = std::min(kBlockK, m_k - kb * kBlockK);
    for (int64_t d = 0; d < head_dim; ++d) {
      float* out = block + d * kBlockK;
      for (int64_t jj = 0; jj < nk; ++jj) out[jj] = k[(kb * kBlockK + jj) * head_dim + d];
      std::fill(out + nk, out + round_up(nk, kLanes), 0.0f);
    }
  }
}

// out[j][d] = factor * in[j][d] for j < m, d < D; zero padding up to `padded_rows` rows and `padded_dim`
// columns.
void pack_rows(const float* in, int64_t m, int64_t head_dim, int64_t padded_rows, int64_t padded_dim, float* out,
               float factor = 1.0f) {
  if (factor == 1.0f && padded_dim == head_dim) {  // one block, copied whole
    simd::copy_row(in, m * head_dim, out);
    std::fill(out + m * padded_dim, out + padded_rows * padded_dim, 0.0f);
    return;
  }
  for (int64_t j = 0; j < m; ++j) {
    if (factor == 1.0f) {
      simd::copy_row(in + j * head_dim, head_dim, out + j * padded_dim);
    } else {
      for (int64_t d = 0; d < head_dim; ++d) out[j * padded_dim + d] = factor * in[j * head_dim + d];
    }
    std::fill(out + j * padded_dim + head_dim, out + (j + 1) * padded_dim, 0.0f);
  }
  std::fill(out + m * padded_dim, out + padded_rows * padded_dim, 0.0f);
}

int64_t visible_keys(const int64_t* key_limit, int64_t row, int64_t m_k) {
  return key_limit ? std::clamp<int64_t>(key_limit[row], 0, m_k) : m_k;
}

}  // namespace

void TileWorkspace::Free::operator()(void* p) const { std::free(p); }

void* TileWorkspace::bytes(std::array<Block, kSlots>& blocks, int slot, int64_t count) {
  Block& block = blocks.at(static_cast<size_t>(slot));
  if (count > block.bytes) {
    const int64_t size = round_up(std::max<int64_t>(count, 64), 64);
    block.data.reset(static_cast<unsigned char*>(std::aligned_alloc(64, static_cast<size_t>(size))));
    if (!block.data) throw std::bad_alloc();
    block.bytes = size;
  }
  return block.data.get();
}
float* TileWorkspace::floats(int slot, int64_t count) {
  return static_cast<float*>(bytes(float_blocks_, slot, count * static_cast<int64_t>(sizeof(float))));
}
int64_t* TileWorkspace::indices(int slot, int64_t count) {
  return static_cast<int64_t*>(bytes(index_blocks_, slot, count * static_cast<int64_t>(sizeof(int64_t))));
}

void flash_forward_tile(const float* q, const float* k, const float* v, int64_t m_q, int64_t m_k, int64_t head_dim,
                        const int64_t* key_limit, float scale, float* o, float* lse, TileWorkspace& ws) {
  const int64_t D = head_dim;
  const int64_t Dp = round_up(D, kLanes);
  const int64_t padded_keys = round_up(std::max<int64_t>(m_k, 1), kBlockK);
  float* kT = ws.floats(0, padded_keys * D);
  float* vp = ws.floats(1, padded_keys * Dp);
  float* S = ws.floats(2, kBlockQ * kBlockK);
  float* acc = ws.floats(3, kBlockQ * Dp);
  float* row_top = ws.floats(4, kBlockQ);  // each row's largest score so far (in base 2: times log2e)
  float* row_sum = ws.floats(5, kBlockQ);
  float* qs = ws.floats(6, std::max<int64_t>(m_q, 1) * D);
  int64_t* limit = ws.indices(0, kBlockQ);
  pack_transposed(k, m_k, D, kT);
  pack_rows(v, m_k, D, m_k, Dp, vp);  // P vp reads nk rows of a block
  pack_rows(q, m_q, D, m_q, D, qs, scale);
  const vint lanes = simd::lane_index();

  for (int64_t q0 = 0; q0 < m_q; q0 += kBlockQ) {
    const int64_t rows = std::min(kBlockQ, m_q - q0);
    int64_t max_limit = 0;
    for (int64_t i = 0; i < rows; ++i) {
      limit[i] = visible_keys(key_limit, q0 + i, m_k);
      max_limit = std::max(max_limit, limit[i]);
    }
    std::fill(row_top, row_top + rows, kNegInf);
    std::fill(row_sum, row_sum + rows, 0.0f);
    std::fill(acc, acc + rows * Dp, 0.0f);
    for (int64_t k0 = 0; k0 < max_limit; k0 += kBlockK) {
      const int64_t nk = std::min(kBlockK, max_limit - k0);
      const int64_t cols = round_up(nk, kLanes);
      gemm(rows, cols, D, qs + q0 * D, D, 1, kT + k0 * D, kBlockK, S, kBlockK, false);
      for (int64_t i = 0; i < rows; ++i) {
        float* s = S + i * kBlockK;
        const int64_t valid = std::clamp<int64_t>(limit[i] - k0, 0, nk);
        if (valid == 0) {
          std::fill(s, s + cols, 0.0f);
          continue;
        }
        const vint valid_v = simd::splat_int(static_cast<int32_t>(valid));
        vfloat top = simd::splat(kNegInf);
        for (int64_t j = 0; j < cols; j += kLanes) {
          vfloat score = simd::load(s + j);
          if (j + kLanes > valid)
            score = (lanes + static_cast<int32_t>(j)) < valid_v ? score : simd::splat(kNegInf);
          simd::store(s + j, score * kLog2e);
          top = simd::vmax(top, score);
        }
        const float top_new = std::max(row_top[i], simd::reduce_max(top));
        // The largest stored score (rounding is monotonic), and the one before this block's.
        const float m_old = row_top[i] * kLog2e, m_new = top_new * kLog2e;
        // Scores all -inf so far (an infinite input): P = exp2(-inf - 0) = 0, not exp2(-inf - -inf) = NaN.
        const vfloat m_v = simd::splat(m_new == kNegInf ? 0.0f : m_new);
        vfloat sum = vfloat{};
        for (int64_t j = 0; j < cols; j += kLanes) {
          const vfloat p = simd::exp2(simd::load(s + j) - m_v);
          simd::store(s + j, p);
          sum += p;
        }
        if (m_old != m_new) {
          const float alpha = std::exp2(m_old - m_new);  // 0 when row_top was -inf
          row_sum[i] *= alpha;
          float* a = acc + i * Dp;
          for (int64_t d = 0; d < Dp; ++d) a[d] *= alpha;
        }
        row_top[i] = top_new;
        row_sum[i] += simd::reduce_sum(sum);
      }
      gemm(rows, Dp, nk, S, kBlockK, 1, vp + k0 * Dp, Dp, acc, Dp, true);
    }
    for (int64_t i = 0; i < rows; ++i) {
      float* out = o + (q0 + i) * D;
      // Only a row that saw no key has a zero sum; a NaN sum (a NaN in q or k) must stay NaN, not read as
      // uncovered.
      if (row_sum[i] != 0) {
        const float inv = 1.0f / row_sum[i];
        for (int64_t d = 0; d < D; ++d) out[d] = acc[i * Dp + d] * inv;
        // l is relative to fl(row_top log2e), the largest stored score, so to row_top itself.
        lse[q0 + i] = row_top[i] + std::log2(row_sum[i]) * kLn2;
      } else {
        std::fill(out, out + D, 0.0f);
        lse[q0 + i] = kNegInf;
      }
    }
  }
}

void flash_backward_tile(const float* q, const float* k, const float* v, const float* dout, const float* lse,
                         const float* delta, int64_t m_q, int64_t m_k, int64_t head_dim, const int64_t* key_limit,
                         float scale, float* dq, float* dk, float* dv, TileWorkspace& ws) {
  const int64_t D = head_dim;
  const int64_t Dp = round_up(D, kLanes);
  const int64_t padded_keys = round_up(std::max<int64_t>(m_k, 1), kBlockK);
  const int64_t padded_queries = round_up(std::max<int64_t>(m_q, 1), kBlockQ);
  const bool want_dq = dq != nullptr, want_dkv = dk != nullptr;  // (cpu_tile.hpp: dk and dv both or neither)
  float* kT = ws.floats(0, padded_keys * D);
  float* vT = ws.floats(1, padded_keys * D);
  float* kp = ws.floats(2, padded_keys * Dp);
  float* qp = ws.floats(3, padded_queries * Dp);
  float* dop = ws.floats(4, padded_queries * Dp);
  float* dqp = ws.floats(5, padded_queries * Dp);
  float* S = ws.floats(6, kBlockQ * kBlockK);   // scores, then P
  float* dP = ws.floats(7, kBlockQ * kBlockK);  // dP, then scale * dS
  float* dk_block = ws.floats(8, kBlockK * Dp);
  float* dv_block = ws.floats(9, kBlockK * Dp);
  float* qs = ws.floats(10, padded_queries * Dp);  // scale * q: S as the forward forms it
  int64_t* limit = ws.indices(0, padded_queries);
  const int64_t query_blocks = (m_q + kBlockQ - 1) / kBlockQ;
  int64_t* block_max_limit = ws.indices(1, query_blocks);
  pack_transposed(k, m_k, D, kT);
  pack_transposed(v, m_k, D, vT);
  if (want_dq) pack_rows(k, m_k, D, m_k, Dp, kp);  // dS kp reads nk rows of a block
  if (want_dkv) pack_rows(q, m_q, D, m_q, Dp, qp);
  pack_rows(q, m_q, D, m_q, Dp, qs, scale);
  pack_rows(dout, m_q, D, m_q, Dp, dop);
  if (want_dq) std::fill(dqp, dqp + m_q * Dp, 0.0f);
  for (int64_t i = 0; i < m_q; ++i) {
    // A row that saw no key at all (lse = -inf) has P = 0 everywhere.
    limit[i] = std::isinf(lse[i]) && lse[i] < 0 ? 0 : visible_keys(key_limit, i, m_k);
  }
  for (int64_t qb = 0; qb < query_blocks; ++qb) {
    const int64_t end = std::min(m_q, (qb + 1) * kBlockQ);
    block_max_limit[qb] = *std::max_element(limit + qb * kBlockQ, limit + end);
  }
  const vint lanes = simd::lane_index();
  const vfloat one = simd::splat(1.0f);

  for (int64_t k0 = 0; k0 < m_k; k0 += kBlockK) {
    const int64_t nk = std::min(kBlockK, m_k - k0);
    const int64_t cols = round_up(nk, kLanes);
    bool touched = false;
    for (int64_t qb = 0; qb < query_blocks; ++qb) {
      if (block_max_limit[qb] <= k0) continue;
      if (!touched && want_dkv) {
        std::fill(dk_block, dk_block + nk * Dp, 0.0f);
        std::fill(dv_block, dv_block + nk * Dp, 0.0f);
      }
      touched = true;
      const int64_t q0 = qb * kBlockQ;
      const int64_t rows = std::min(kBlockQ, m_q - q0);
      gemm(rows, cols, D, qs + q0 * Dp, Dp, 1, kT + k0 * D, kBlockK, S, kBlockK, false);
      gemm(rows, cols, D, dop + q0 * Dp, Dp, 1, vT + k0 * D, kBlockK, dP, kBlockK, false);
      for (int64_t i = 0; i < rows; ++i) {
        float* p = S + i * kBlockK;
        float* ds = dP + i * kBlockK;
        const int64_t valid = std::clamp<int64_t>(limit[q0 + i] - k0, 0, nk);
        if (valid == 0) {
          std::fill(p, p + cols, 0.0f);
          std::fill(ds, ds + cols, 0.0f);
          continue;
        }
        const vint valid_v = simd::splat_int(static_cast<int32_t>(valid));
        const vfloat shift = simd::splat(lse[q0 + i]);
        const vfloat delta_v = simd::splat(delta[q0 + i]);
        for (int64_t j = 0; j < cols; j += kLanes) {
          vfloat pv = simd::exp2((simd::load(p + j) - shift) * kLog2e);
          // P <= 1 exactly (lse sums this key's term too); at |score| ~ 1e6 and more, fp32 rounding of
          // score and lse alone gave P up to 2^30 and gradients 1e9 too large. NaN stays NaN.
          pv = pv > one ? one : pv;
          if (j + kLanes > valid) pv = (lanes + static_cast<int32_t>(j)) < valid_v ? pv : vfloat{};
          simd::store(p + j, pv);
          simd::store(ds + j, pv * (simd::load(ds + j) - delta_v) * scale);
        }
      }
      if (want_dkv) gemm(nk, Dp, rows, S, 1, kBlockK, dop + q0 * Dp, Dp, dv_block, Dp, true);
      if (want_dq) gemm(rows, Dp, nk, dP, kBlockK, 1, kp + k0 * Dp, Dp, dqp + q0 * Dp, Dp, true);
      if (want_dkv) gemm(nk, Dp, rows, dP, 1, kBlockK, qp + q0 * Dp, Dp, dk_block, Dp, true);
    }
    if (!touched || !want_dkv) continue;
    for (int64_t j = 0; j < nk; ++j)
      for (int64_t d = 0; d < D; ++d) {
        dk[(k0 + j) * D + d] += dk_block[j * Dp + d];
        dv[(k0 + j) * D + d] += dv_block[j * Dp + d];
      }
  }
  if (want_dq)
    for (int64_t i = 0; i < m_q; ++i)
      for (int64_t d = 0; d < D; ++d) dq[i * D + d] += dqp[i * Dp + d];
}

void merge_into(float* o_acc, float* lse_acc, const float* o_part, const float* lse_part, int64_t rows,
                int64_t head_dim, int64_t o_acc_stride, int64_t lse_acc_stride) {
  for (int64_t i = 0; i < rows; ++i) {
    const float part = lse_part[i];
    if (part == kNegInf) continue;
    float* out = o_acc + i * o_acc_stride;
    const float* in = o_part + i * head_dim;
    float& running = lse_acc[i * lse_acc_stride];
    if (running == kNegInf) {
      simd::copy_row(in, head_dim, out);
      running = part;
      continue;
    }
    const float top = std::max(running, part);
    const float w_acc = std::exp(running - top);
    const float w_part = std::exp(part - top);
    const float inv = 1.0f / (w_acc + w_part);
    for (int64_t d = 0; d < head_dim; ++d) out[d] = (w_acc * out[d] + w_part * in[d]) * inv;
    running = top + std::log(w_acc + w_part);
  }
}

void row_dots(const float* a, const float* b, int64_t rows, int64_t dim, float* out) {
#pragma omp parallel for schedule(static)
  for (int64_t row = 0; row < rows; ++row) {
    float sum = 0;
    for (int64_t d = 0; d < dim; ++d) sum += a[row * dim + d] * b[row * dim + d];
    out[row] = sum;
  }
}

}  // namespace longctx
