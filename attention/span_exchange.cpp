#include "attention/span_exchange.hpp"

#include <algorithm>

namespace longctx::spanning {

SpanPlan plan_span(const Branch& branch, const AttentionDims& local, int64_t global_len, int rank, int world,
                   HeadOffsets offsets) {
  SpanPlan plan;
  plan.branch = branch;
  const int64_t L = local.seq_len;
  const int64_t w = effective_segment_length(branch, global_len);
  const int group = static_cast<int>(w / L);
  plan.group_first = rank / group * group;
  plan.group_size = std::min(group, world - plan.group_first);  // the last segment may be partial
  plan.me = rank - plan.group_first;
  plan.batch = local.batch;
  plan.local_rows = L;
  plan.heads = local.heads;
  plan.head_dim = local.head_dim;
  const int64_t r = branch.dilation;
  plan.rows.resize(static_cast<size_t>(plan.group_size * plan.heads));
  plan.first_row.resize(static_cast<size_t>(plan.heads));
  plan.keys.assign(static_cast<size_t>(plan.heads), 0);
  plan.keys_before.assign(static_cast<size_t>(plan.heads), 0);
  for (int64_t h = 0; h < plan.heads; ++h) {
    const int64_t o = head_offset(h, r, plan.heads, offsets);
    for (int m = 0; m < plan.group_size; ++m) {
      // Rows t in [m L, (m+1) L) of the segment with t mod r == o.
      const int64_t count = selected_rows((m + 1) * L, r, o) - selected_rows(m * L, r, o);
      plan.rows[static_cast<size_t>(m * plan.heads + h)] = count;
      plan.keys[static_cast<size_t>(h)] += count;
      if (m < plan.me) plan.keys_before[static_cast<size_t>(h)] += count;
    }
    plan.first_row[static_cast<size_t>(h)] = ((o - plan.me * L) % r + r) % r;
  }
  for (int m = 0; m < plan.group_size; ++m)
    plan.counts.push_back(static_cast<size_t>(2 * plan.batch * plan.member_rows(m) * plan.head_dim));
  return plan;
}

long double causal_pairs(int64_t keys_before, int64_t t0, int64_t t1) {
  const long double a = static_cast<long double>(t0), b = static_cast<long double>(t1);
  return (b - a) * (static_cast<long double>(keys_before) + 1) + (b * (b - 1) - a * (a - 1)) / 2;
}

Handoff plan_handoff(const SpanPlan& plan, bool causal) {
  Handoff handoff;
  const size_t H = static_cast<size_t>(plan.heads);
  handoff.rows.assign(H, 0);
  handoff.keys_before.assign(H, 0);
  handoff.packed_before.assign(H, 0);
  handoff.own.resize(H);
  for (int64_t h = 0; h < plan.heads; ++h) handoff.own[static_cast<size_t>(h)] = plan.rows_of(plan.me, h);
  const int partner = plan.group_size - 1 - plan.me;
  if (!causal || partner == plan.me) return handoff;
  handoff.partner = partner;
  handoff.giver = plan.me > partner;
  const int lo = std::min(plan.me, partner), hi = std::max(plan.me, partner);
  for (int64_t h = 0; h < plan.heads; ++h) {
    int64_t before_lo = 0, before_hi = 0;
    for (int m = 0; m < hi; ++m) (m < lo ? before_lo : before_hi) += plan.rows_of(m, h);
    before_hi += before_lo;
    const int64_t n_lo = plan.rows_of(lo, h), n_hi = plan.rows_of(hi, h);
    // The fewest tail rows x of hi after which hi's pairs no longer exceed lo's, or one fewer if closer:
    // excess(x) = pairs(hi) - pairs(lo) - 2 tail(x) falls as x grows.
    const long double gap = causal_pairs(before_hi, 0, n_hi) - causal_pairs(before_lo, 0, n_lo);
    const auto excess = [&](int64_t x) { return gap - 2 * causal_pairs(before_hi, n_hi - x, n_hi); };
    int64_t low = 0, high = n_hi;  // excess(high) <= 0 unless gap > 2 pairs(hi), impossible: pairs(lo) >= 0
    if (excess(0) <= 0) high = 0;
    while (low < high) {
      const int64_t mid = low + (high - low) / 2;
      if (excess(mid) <= 0) high = mid; else low = mid + 1;
    }
    int64_t x = high;
    if (x > 0 && -excess(x) > excess(x - 1)) --x;
    handoff.rows[static_cast<size_t>(h)] = x;
    handoff.keys_before[static_cast<size_t>(h)] = before_hi + n_hi - x;
    if (handoff.giver) handoff.own[static_cast<size_t>(h)] = n_hi - x;
  }
  for (int64_t h = 0; h < plan.heads; ++h) {
    handoff.packed_before[static_cast<size_t>(h)] = handoff.total;
    handoff.total += handoff.rows[static_cast<size_t>(h)];
  }
  return handoff;
}

size_t member_offset(const SpanPlan& plan, int member) {
  size_t offset = 0;
  for (int m = 0; m < member; ++m) offset += plan.counts[static_cast<size_t>(m)];
  return offset;
}
int64_t head_offset_in_block(const SpanPlan& plan, int member, int64_t b, int64_t h) {
  int64_t before = b * plan.member_rows(member);
  for (int64_t hh = 0; hh < h; ++hh) before += plan.rows_of(member, hh);
  return before * plan.head_dim;
}

int64_t row_index(const SpanPlan& plan, int64_t b, int64_t local_row, int64_t h) {
  return ((b * plan.local_rows + local_row) * plan.heads + h) * plan.head_dim;
}

namespace {
// Calls at(packed, row) for each row of this rank that the branch selects: the offset of its D floats in
// the packed K half ([B][H][rows][D]; V's are `half` further on) and in a [B, L, H, D] tensor.
template <class At>
void for_own_rows(const SpanPlan& plan, At&& at) {
  const int64_t D = plan.head_dim, r = plan.branch.dilation;
  for (int64_t b = 0; b < plan.batch; ++b)
    for (int64_t h = 0; h < plan.heads; ++h) {
      const int64_t base = head_offset_in_block(plan, plan.me, b, h);
      const int64_t first = plan.first_row[static_cast<size_t>(h)];
      for (int64_t t = 0; t < plan.rows_of(plan.me, h); ++t) at(base + t * D, row_index(plan, b, first + t * r, h));
    }
}
}  // namespace

void pack_own(const SpanPlan& plan, const Tensor& k, const Tensor& v, std::vector<float>& out) {
  const int64_t D = plan.head_dim;
  out.resize(plan.counts[static_cast<size_t>(plan.me)]);
  float* const k_out = out.data();
  float* const v_out = out.data() + out.size() / 2;
  for_own_rows(plan, [&](int64_t packed, int64_t row) {
    std::copy(k.data() + row, k.data() + row + D, k_out + packed);
    std::copy(v.data() + row, v.data() + row + D, v_out + packed);
  });
}

void add_own(const SpanPlan& plan, const std::vector<float>& mine, Tensor& dk, Tensor& dv) {
  const int64_t D = plan.head_dim;
  const float* const dk_in = mine.data();
  const float* const dv_in = mine.data() + mine.size() / 2;
  for_own_rows(plan, [&](int64_t packed, int64_t row) {
    for (int64_t d = 0; d < D; ++d) {
      dk.data()[row + d] += dk_in[packed + d];
      dv.data()[row + d] += dv_in[packed + d];
    }
  });
}

void reorder(const SpanPlan& plan, std::vector<float>& gathered, std::vector<float>& k_tiles,
             std::vector<float>& v_tiles, bool to_tiles) {
  const int64_t D = plan.head_dim;
  int64_t tile_base = 0;
  for (int64_t b = 0; b < plan.batch; ++b)
    for (int64_t h = 0; h < plan.heads; ++h) {
      int64_t row = 0;
      for (int m = 0; m < plan.group_size; ++m) {
        const size_t block = member_offset(plan, m);
        const size_t half = plan.counts[static_cast<size_t>(m)] / 2;
        const int64_t count = plan.rows_of(m, h) * D;
        float* kg = gathered.data() + block + head_offset_in_block(plan, m, b, h);
        float* vg = kg + half;
        float* kt = k_tiles.data() + tile_base + row * D;
        float* vt = v_tiles.data() + tile_base + row * D;
        if (to_tiles) {
          std::copy(kg, kg + count, kt);
          std::copy(vg, vg + count, vt);
        } else {
          std::copy(kt, kt + count, kg);
          std::copy(vt, vt + count, vg);
        }
        row += plan.rows_of(m, h);
      }
      tile_base += plan.keys[static_cast<size_t>(h)] * D;
    }
}

int64_t tiles_size(const SpanPlan& plan) {
  int64_t total = 0;
  for (int64_t h = 0; h < plan.heads; ++h) total += plan.keys[static_cast<size_t>(h)];
  return plan.batch * total * plan.head_dim;
}
int64_t tile_offset(const SpanPlan& plan, int64_t b, int64_t h) {
  int64_t total = 0;
  for (int64_t hh = 0; hh < plan.heads; ++hh) total += plan.keys[static_cast<size_t>(hh)];
  int64_t before = b * total;
  for (int64_t hh = 0; hh < h; ++hh) before += plan.keys[static_cast<size_t>(hh)];
  return before * plan.head_dim;
}

}  // namespace longctx::spanning
