// CPU backend. Branches run one after another; inside a branch, OpenMP threads take work items
// (batch, segment, head[, query chunk]) dynamically. For one branch and head the selected rows of
// different segments are disjoint, so each item merges its rows into o / lse (forward) or scatter-adds
// into dq / dk / dv (backward) without locks. Per item, the selected rows (stride r * H * D in the
// [B,N,H,D] tensors) are gathered into per-thread packed tiles of at most kChunkRows rows; a segment
// with more selected rows is cut into query chunks x key chunks whose partial results are merged by
// log-sum-exp (forward) or accumulated (backward), so no temporary grows with N: per thread only
// O(kChunkRows * D) tiles, besides o, lse and (backward) delta = rowsum(dout * o), [B,N,H].
#include "attention/cpu_attention.hpp"

#include <omp.h>

#include <algorithm>
#include <limits>
#include <vector>

#include "attention/cpu_tile.hpp"
#include "runtime/core/simd.hpp"

namespace longctx {
namespace {

constexpr int64_t kChunkRows = 2048;  // selected rows per tile (queries and keys)

// The selected rows of one (batch, segment, head) for one branch: row t is p = first + t * r.
struct Selection {
  int64_t rows = 0;    // m
  int64_t first = 0;   // position of selected row 0
  int64_t stride = 0;  // r * H * D floats between consecutive selected rows of a [B,N,H,D] tensor
  int64_t base = 0;    // float index of selected row 0, head h, in a [B,N,H,D] tensor
  int64_t lse_stride = 0;
  int64_t lse_base = 0;
};

Selection select(const Branch& branch, const AttentionDims& dims, HeadOffsets offsets, int64_t b, int64_t segment,
                 int64_t h) {
  const int64_t r = branch.dilation;
  const int64_t offset = head_offset(h, r, dims.heads, offsets);
  Selection sel;
  sel.rows = selected_rows(segment_rows(branch, dims.seq_len, segment), r, offset);
  sel.first = segment_begin(branch, dims.seq_len, segment) + offset;
  sel.lse_stride = r * dims.heads;
  sel.lse_base = (b * dims.seq_len + sel.first) * dims.heads + h;
  sel.stride = sel.lse_stride * dims.head_dim;
  sel.base = sel.lse_base * dims.head_dim;
  return sel;
}

void gather(const float* tensor, const Selection& sel, int64_t t0, int64_t count, int64_t head_dim, float* out) {
  const float* in = tensor + sel.base + t0 * sel.stride;
  for (int64_t t = 0; t < count; ++t) simd::copy_row(in + t * sel.stride, head_dim, out + t * head_dim);
}

void scatter_add(const float* in, const Selection& sel, int64_t t0, int64_t count, int64_t head_dim, float* tensor) {
  float* out = tensor + sel.base + t0 * sel.stride;
  for (int64_t t = 0; t < count; ++t)
    for (int64_t d = 0; d < head_dim; ++d) out[t * sel.stride + d] += in[t * head_dim + d];
}

// Causal prefix of query rows [q0, q0 + count) against key rows [k0, k0 + keys) of the same selection.
void causal_limits(int64_t q0, int64_t count, int64_t k0, int64_t keys, int64_t* limit) {
  for (int64_t i = 0; i < count; ++i) limit[i] = std::clamp<int64_t>(q0 + i + 1 - k0, 0, keys);
}

std::vector<float> buffer(int64_t count) { return std::vector<float>(static_cast<size_t>(count)); }

void parallel_fill(Tensor& tensor, float value) {
  float* data = tensor.data();
  const int64_t count = tensor.size();
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < count; ++i) data[i] = value;
}

}  // namespace

void CpuAttention::forward(const AttentionParams& params, const Tensor& q, const Tensor& k, const Tensor& v,
                           Tensor& o, Tensor& lse) {
  const AttentionDims dims = check_qkv(q, k, v);
  ensure_shape(o, q.shape());
  ensure_shape(lse, lse_shape(q.shape()));
  parallel_fill(o, 0.0f);
  parallel_fill(lse, -std::numeric_limits<float>::infinity());
  if (warn_coverage_) warn_coverage(params.schedule, dims.heads, params.offsets, dims.seq_len);
  const int64_t D = dims.head_dim;
  const float scale = static_cast<float>(resolved_scale(params, D));

  for (const Branch& branch : params.schedule.branches) {
    const int64_t segments = segment_count(branch, dims.seq_len);
    const int64_t max_selected = (effective_segment_length(branch, dims.seq_len) + branch.dilation - 1) / branch.dilation;
    const int64_t chunks = (max_selected + kChunkRows - 1) / kChunkRows;
    const int64_t items = dims.batch * segments * dims.heads * chunks;
#pragma omp parallel
    {
      TileWorkspace ws;
      std::vector<float> qt = buffer(kChunkRows * D), kt = buffer(kChunkRows * D), vt = buffer(kChunkRows * D),
                         ot = buffer(kChunkRows * D), lt = buffer(kChunkRows);
      std::vector<int64_t> limit(static_cast<size_t>(kChunkRows));
#pragma omp for schedule(dynamic)
      for (int64_t item = 0; item < items; ++item) {
        const int64_t chunk = item % chunks;
        const int64_t h = item / chunks % dims.heads;
        const int64_t segment = item / (chunks * dims.heads) % segments;
        const int64_t b = item / (chunks * dims.heads * segments);
        const Selection sel = select(branch, dims, params.offsets, b, segment, h);
        const int64_t q0 = chunk * kChunkRows;
        if (q0 >= sel.rows) continue;
        const int64_t m_q = std::min(kChunkRows, sel.rows - q0);
        gather(q.data(), sel, q0, m_q, D, qt.data());
        const int64_t key_end = params.causal ? q0 + m_q : sel.rows;
        for (int64_t k0 = 0; k0 < key_end; k0 += kChunkRows) {
          const int64_t m_k = std::min(kChunkRows, key_end - k0);
          gather(k.data(), sel, k0, m_k, D, kt.data());
          gather(v.data(), sel, k0, m_k, D, vt.data());
          if (params.causal) causal_limits(q0, m_q, k0, m_k, limit.data());
          flash_forward_tile(qt.data(), kt.data(), vt.data(), m_q, m_k, D, params.causal ? limit.data() : nullptr,
                             scale, ot.data(), lt.data(), ws);
          merge_into(o.data() + sel.base + q0 * sel.stride, lse.data() + sel.lse_base + q0 * sel.lse_stride,
                     ot.data(), lt.data(), m_q, D, sel.stride, sel.lse_stride);
        }
      }
    }
  }
}

void CpuAttention::backward(const AttentionParams& params, const Tensor& q, const Tensor& k, const Tensor& v,
                            const Tensor& o, const Tensor& lse, const Tensor& dout, Tensor& dq, Tensor& dk,
                            Tensor& dv) {
  const AttentionDims dims = check_qkv(q, k, v);
  check_shape("o", o, q.shape());
  check_shape("lse", lse, lse_shape(q.shape()));
  check_shape("dout", dout, q.shape());
  Tensor delta(lse.shape());  // D_p = <dout_p, o_p>, [B,N,H]
  row_dots(dout.data(), o.data(), delta.size(), dims.head_dim, delta.data());
  backward_given_delta(params, q, k, v, lse, delta, dq, dk, dv, dout);
}

void CpuAttention::backward_given_delta(const AttentionParams& params, const Tensor& q, const Tensor& k,
                                        const Tensor& v, const Tensor& lse, const Tensor& delta, Tensor& dq,
                                        Tensor& dk, Tensor& dv, const Tensor& dout) {
  const AttentionDims dims = check_qkv(q, k, v);
  check_shape("lse", lse, lse_shape(q.shape()));
  check_shape("delta", delta, lse_shape(q.shape()));
  check_shape("dout", dout, q.shape());
  for (Tensor* t : {&dq, &dk, &dv}) {
    ensure_shape(*t, q.shape());
    parallel_fill(*t, 0.0f);
  }
  const int64_t D = dims.head_dim;
  const float scale = static_cast<float>(resolved_scale(params, D));

  for (const Branch& branch : params.schedule.branches) {
    const int64_t segments = segment_count(branch, dims.seq_len);
    const int64_t items = dims.batch * segments * dims.heads;
#pragma omp parallel
    {
      TileWorkspace ws;
      std::vector<float> qt = buffer(kChunkRows * D), kt = buffer(kChunkRows * D), vt = buffer(kChunkRows * D),
                         dot = buffer(kChunkRows * D), lt = buffer(kChunkRows), delt = buffer(kChunkRows),
                         dqt = buffer(kChunkRows * D), dkt = buffer(kChunkRows * D), dvt = buffer(kChunkRows * D);
      std::vector<int64_t> limit(static_cast<size_t>(kChunkRows));
#pragma omp for schedule(dynamic)
      for (int64_t item = 0; item < items; ++item) {
        const int64_t h = item % dims.heads;
        const int64_t segment = item / dims.heads % segments;
        const int64_t b = item / (dims.heads * segments);
        const Selection sel = select(branch, dims, params.offsets, b, segment, h);
        for (int64_t k0 = 0; k0 < sel.rows; k0 += kChunkRows) {
          const int64_t m_k = std::min(kChunkRows, sel.rows - k0);
          gather(k.data(), sel, k0, m_k, D, kt.data());
          gather(v.data(), sel, k0, m_k, D, vt.data());
          // (Only the rows in use: the whole tiles, kChunkRows rows, were most of the work of a short segment.)
          std::fill_n(dkt.begin(), m_k * D, 0.0f);
          std::fill_n(dvt.begin(), m_k * D, 0.0f);
          // Causal: query chunks that end before k0 see none of these keys.
          for (int64_t q0 = params.causal ? k0 / kChunkRows * kChunkRows : 0; q0 < sel.rows; q0 += kChunkRows) {
            const int64_t m_q = std::min(kChunkRows, sel.rows - q0);
            gather(q.data(), sel, q0, m_q, D, qt.data());
            gather(dout.data(), sel, q0, m_q, D, dot.data());
            for (int64_t i = 0; i < m_q; ++i) {
              lt[static_cast<size_t>(i)] = lse[sel.lse_base + (q0 + i) * sel.lse_stride];
              delt[static_cast<size_t>(i)] = delta[sel.lse_base + (q0 + i) * sel.lse_stride];
            }
            std::fill_n(dqt.begin(), m_q * D, 0.0f);
            if (params.causal) causal_limits(q0, m_q, k0, m_k, limit.data());
            flash_backward_tile(qt.data(), kt.data(), vt.data(), dot.data(), lt.data(), delt.data(), m_q, m_k, D,
                                params.causal ? limit.data() : nullptr, scale, dqt.data(), dkt.data(), dvt.data(), ws);
            scatter_add(dqt.data(), sel, q0, m_q, D, dq.data());
          }
          scatter_add(dkt.data(), sel, k0, m_k, D, dk.data());
          scatter_add(dvt.data(), sel, k0, m_k, D, dv.data());
        }
      }
    }
  }
}

}  // namespace longctx
