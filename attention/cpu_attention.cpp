// CPU backend. Branches run one after another; inside a branch, OpenMP threads take work items
// dynamically: a (batch, segment, head) group, or a chunk of one. For one branch and head the selected rows
// of different segments are disjoint, so each item merges its rows into o / lse (forward) or scatter-adds
// into dq / dk / dv (backward) without locks. Per item, the selected rows (stride r * H * D in the
// [B,N,H,D] tensors) are gathered into per-thread packed tiles of at most kChunkRows rows; a segment
// with more selected rows is cut into query tiles x key tiles whose partial results are merged by
// log-sum-exp (forward) or accumulated (backward), so no temporary grows with N: per thread only
// O(kChunkRows * D) tiles, besides o, lse and (backward) delta = rowsum(dout * o), [B,N,H].
// Where a branch has too few groups for the threads, its items are cut finer, which changes no bit of the
// result (cpu_work.hpp).
#include "attention/cpu_attention.hpp"

#include <omp.h>

#include <algorithm>
#include <limits>
#include <vector>

#include "attention/cpu_tile.hpp"
#include "attention/cpu_work.hpp"
#include "runtime/core/simd.hpp"

namespace longctx {
namespace {

using cpu_work::BackwardPlan;
using cpu_work::ceil_div;
using cpu_work::kChunkRows;

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
  const int threads = omp_get_max_threads();

  for (const Branch& branch : params.schedule.branches) {
    const int64_t segments = segment_count(branch, dims.seq_len);
    const int64_t max_selected = (effective_segment_length(branch, dims.seq_len) + branch.dilation - 1) / branch.dilation;
    const int64_t groups = dims.batch * segments * dims.heads;
    const cpu_work::QueryCut cut = cpu_work::forward_cut(groups, max_selected, threads);
    const int64_t items = groups * cut.chunks;
    cpu_work::MainThreadProgress progress(progress_);
#pragma omp parallel
    {
      TileWorkspace ws;
      std::vector<float> qt = buffer(kChunkRows * D), kt = buffer(kChunkRows * D), vt = buffer(kChunkRows * D),
                         ot = buffer(kChunkRows * D), lt = buffer(kChunkRows);
      std::vector<int64_t> limit(static_cast<size_t>(kChunkRows));
#pragma omp for schedule(dynamic)
      for (int64_t item = 0; item < items; ++item) {
        progress.before_item();
        const int64_t group = item % groups, chunk = cut.chunk_of_round(item / groups, params.causal);
        const int64_t h = group % dims.heads;
        const int64_t segment = group / dims.heads % segments;
        const int64_t b = group / (dims.heads * segments);
        const Selection sel = select(branch, dims, params.offsets, b, segment, h);
        const int64_t q0 = cut.first(chunk), m_q = cut.count(chunk, sel.rows);
        if (m_q == 0) continue;
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
    progress.rethrow();
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

namespace {

// One backward's inputs and outputs, and a thread's tiles.
struct BackwardData {
  const AttentionParams& params;
  const Tensor &q, &k, &v, &lse, &delta, &dout;
  Tensor &dq, &dk, &dv;
  int64_t D;
  float scale;
};

struct BackwardTiles {
  explicit BackwardTiles(int64_t D)
      : qt(buffer(kChunkRows * D)), kt(buffer(kChunkRows * D)), vt(buffer(kChunkRows * D)),
        dot(buffer(kChunkRows * D)), lt(buffer(kChunkRows)), delt(buffer(kChunkRows)), dqt(buffer(kChunkRows * D)),
        dkt(buffer(kChunkRows * D)), dvt(buffer(kChunkRows * D)), limit(static_cast<size_t>(kChunkRows)) {}
  TileWorkspace ws;
  std::vector<float> qt, kt, vt, dot, lt, delt, dqt, dkt, dvt;
  std::vector<int64_t> limit;
};

void gather_queries(const BackwardData& x, const Selection& sel, int64_t q0, int64_t m_q, BackwardTiles& t) {
  gather(x.q.data(), sel, q0, m_q, x.D, t.qt.data());
  gather(x.dout.data(), sel, q0, m_q, x.D, t.dot.data());
  for (int64_t i = 0; i < m_q; ++i) {
    t.lt[static_cast<size_t>(i)] = x.lse[sel.lse_base + (q0 + i) * sel.lse_stride];
    t.delt[static_cast<size_t>(i)] = x.delta[sel.lse_base + (q0 + i) * sel.lse_stride];
  }
}

void gather_keys(const BackwardData& x, const Selection& sel, int64_t k0, int64_t m_k, BackwardTiles& t) {
  gather(x.k.data(), sel, k0, m_k, x.D, t.kt.data());
  gather(x.v.data(), sel, k0, m_k, x.D, t.vt.data());
}

// Keys [k0, k0 + m_k) (inside one key tile) against every query tile that sees them: their dk and dv, and
// with `with_dq` the query tiles' dq (a fused group, key tile by key tile).
void keys_against_queries(const BackwardData& x, const Selection& sel, int64_t k0, int64_t m_k, bool with_dq,
                          BackwardTiles& t) {
  gather_keys(x, sel, k0, m_k, t);
  // (Only the rows in use: the whole tiles, kChunkRows rows, were most of the work of a short segment.)
  std::fill_n(t.dkt.begin(), m_k * x.D, 0.0f);
  std::fill_n(t.dvt.begin(), m_k * x.D, 0.0f);
  // Causal: query tiles that end before k0's tile see none of these keys.
  for (int64_t q0 = x.params.causal ? k0 / kChunkRows * kChunkRows : 0; q0 < sel.rows; q0 += kChunkRows) {
    const int64_t m_q = std::min(kChunkRows, sel.rows - q0);
    gather_queries(x, sel, q0, m_q, t);
    if (with_dq) std::fill_n(t.dqt.begin(), m_q * x.D, 0.0f);
    if (x.params.causal) causal_limits(q0, m_q, k0, m_k, t.limit.data());
    flash_backward_tile(t.qt.data(), t.kt.data(), t.vt.data(), t.dot.data(), t.lt.data(), t.delt.data(), m_q, m_k,
                        x.D, x.params.causal ? t.limit.data() : nullptr, x.scale, with_dq ? t.dqt.data() : nullptr,
                        t.dkt.data(), t.dvt.data(), t.ws);
    if (with_dq) scatter_add(t.dqt.data(), sel, q0, m_q, x.D, x.dq.data());
  }
  scatter_add(t.dkt.data(), sel, k0, m_k, x.D, x.dk.data());
  scatter_add(t.dvt.data(), sel, k0, m_k, x.D, x.dv.data());
}

// Queries [q0, q0 + m_q) against every key tile they see: their dq (a split group's query pass).
void queries_against_keys(const BackwardData& x, const Selection& sel, int64_t q0, int64_t m_q, BackwardTiles& t) {
  gather_queries(x, sel, q0, m_q, t);
  const int64_t key_end = x.params.causal ? q0 + m_q : sel.rows;
  for (int64_t k0 = 0; k0 < key_end; k0 += kChunkRows) {
    const int64_t m_k = std::min(kChunkRows, key_end - k0);
    gather_keys(x, sel, k0, m_k, t);
    std::fill_n(t.dqt.begin(), m_q * x.D, 0.0f);
    if (x.params.causal) causal_limits(q0, m_q, k0, m_k, t.limit.data());
    flash_backward_tile(t.qt.data(), t.kt.data(), t.vt.data(), t.dot.data(), t.lt.data(), t.delt.data(), m_q, m_k,
                        x.D, x.params.causal ? t.limit.data() : nullptr, x.scale, t.dqt.data(), nullptr, nullptr,
                        t.ws);
    scatter_add(t.dqt.data(), sel, q0, m_q, x.D, x.dq.data());
  }
}

}  // namespace

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
  const BackwardData x{params, q, k, v, lse, delta, dout, dq, dk, dv, dims.head_dim,
                       static_cast<float>(resolved_scale(params, dims.head_dim))};
  const int threads = omp_get_max_threads();

  for (const Branch& branch : params.schedule.branches) {
    const int64_t segments = segment_count(branch, dims.seq_len);
    const int64_t max_selected = (effective_segment_length(branch, dims.seq_len) + branch.dilation - 1) / branch.dilation;
    const BackwardPlan plan = cpu_work::plan_backward(dims.batch * segments * dims.heads, max_selected, max_selected, threads);
    const int64_t items = plan.items();
    cpu_work::MainThreadProgress progress(progress_);
    const auto selection = [&](int64_t group) {
      const int64_t h = group % dims.heads;
      const int64_t segment = group / dims.heads % segments;
      return select(branch, dims, params.offsets, group / (dims.heads * segments), segment, h);
    };
#pragma omp parallel
    {
      BackwardTiles tiles(dims.head_dim);
#pragma omp for schedule(dynamic)
      for (int64_t item = 0; item < items; ++item) {
        progress.before_item();
        const BackwardPlan::Item it = plan.item(item, params.causal);
        const Selection sel = selection(it.group);
        if (it.kind == BackwardPlan::Item::fused_group) {
          for (int64_t k0 = 0; k0 < sel.rows; k0 += kChunkRows)
            keys_against_queries(x, sel, k0, std::min(kChunkRows, sel.rows - k0), true, tiles);
        } else if (it.kind == BackwardPlan::Item::key_chunk) {
          if (it.first_key < sel.rows)
            keys_against_queries(x, sel, it.first_key, std::min(plan.key_rows, sel.rows - it.first_key), false, tiles);
        } else if (const int64_t m_q = plan.queries.count(it.chunk, sel.rows); m_q > 0) {
          queries_against_keys(x, sel, plan.queries.first(it.chunk), m_q, tiles);
        }
      }
    }
    progress.rethrow();
  }
}

}  // namespace longctx
