#include "attention/sequence_parallel.hpp"

#include <omp.h>

#include <algorithm>
#include <cstring>
#include <functional>
#include <limits>
#include <sstream>
#include <vector>

#include "attention/cpu_attention.hpp"
#include "attention/cpu_tile.hpp"
#include "attention/cpu_work.hpp"
#include "attention/span_exchange.hpp"

namespace longctx {
namespace {

using spanning::add_own;
using spanning::Clock;
using spanning::causal_pairs;
using spanning::Exchange;
using spanning::ExchangePipeline;
using spanning::for_moved_rows;
using spanning::Handoff;
using spanning::member_offset;
using spanning::pack_own;
using spanning::plan_handoff;
using spanning::plan_span;
using spanning::reorder;
using spanning::row_index;
using spanning::since;
using spanning::SpanPlan;
using spanning::tile_offset;
using spanning::tiles_size;

using cpu_work::kChunkRows;  // query / key rows per tile, as in the single-process backend

bool same_branches(const Schedule& a, const Schedule& b) {
  return std::equal(a.branches.begin(), a.branches.end(), b.branches.begin(), b.branches.end(),
                    [](const Branch& x, const Branch& y) {
                      return x.segment_length == y.segment_length && x.dilation == y.dilation;
                    });
}

// What moves exchange `next` (and the reduce-scatters so far) along between a parallel region's items, where
// the communicator allows the main thread to test it while others compute; else nothing (between regions).
std::function<void()> progress_call(const comm::Communicator& comm, ExchangePipeline& exchanges, size_t next) {
  if (!comm.testable_while_threads_compute()) return {};
  return [&exchanges, next] { exchanges.progress(next); };
}

void stride_gather(const float* tensor, int64_t first_index, int64_t stride, int64_t count, int64_t D, float* out) {
  for (int64_t t = 0; t < count; ++t)
    std::copy(tensor + first_index + t * stride, tensor + first_index + t * stride + D, out + t * D);
}

// The query rows this rank computes in a spanning branch, per head, as one range of indices: its own
// selected rows [0, own) and, where it takes a partner's rows (Handoff), those from guest_at(h), its own
// count rounded up to whole kChunkRows tiles. So every query tile, and every chunk of one (cpu_work.hpp),
// lies in one of the two and meets the same kernel blocks as wherever else it is computed.
struct QueryRows {
  const Handoff& handoff;

  int64_t own(int64_t h) const { return handoff.own[static_cast<size_t>(h)]; }
  int64_t guest_at(int64_t h) const { return cpu_work::ceil_div(own(h), kChunkRows) * kChunkRows; }
  int64_t end(int64_t h) const { return handoff.guests(h) > 0 ? guest_at(h) + handoff.guests(h) : own(h); }
  int64_t most() const {
    int64_t most = 0;
    for (size_t h = 0; h < handoff.own.size(); ++h) most = std::max(most, end(static_cast<int64_t>(h)));
    return most;
  }
  // The rows of [q0, q0 + count), inside one tile: own rows or moved ones (guest) from `first`, or none.
  struct Part {
    bool guest = false;
    int64_t first = 0, count = 0;
  };
  Part part(int64_t h, int64_t q0, int64_t count) const {
    if (q0 < own(h)) return {false, q0, std::min(count, own(h) - q0)};
    if (handoff.guests(h) > 0 && q0 >= guest_at(h) && q0 < end(h)) return {true, q0 - guest_at(h), std::min(count, end(h) - q0)};
    return {};  // between the two, or past the end (a chunk of a head with fewer rows than the most)
  }
};

// The backward's moved inputs of `rows` rows: q and dout (D floats a row), then lse and delta (one each).
constexpr int64_t moved_backward_width(int64_t D) { return 2 * D + 2; }
template <class F>
struct MovedBackward {
  F *q, *dout, *lse, *delta;
  MovedBackward(F* base, int64_t rows, int64_t D)
      : q(base), dout(base + rows * D), lse(base + 2 * rows * D), delta(base + 2 * rows * D + rows) {}
};

// (query, key) pairs this rank computes in a spanning branch: its own rows' and those it takes.
double spanning_pairs(const SpanPlan& plan, const Handoff& handoff, bool causal) {
  long double pairs = 0;
  for (int64_t h = 0; h < plan.heads; ++h) {
    const size_t i = static_cast<size_t>(h);
    if (!causal) {
      pairs += static_cast<long double>(handoff.own[i]) * static_cast<long double>(plan.keys[i]);
      continue;
    }
    pairs += causal_pairs(plan.keys_before[i], 0, handoff.own[i]);
    if (handoff.guests(h) > 0) pairs += causal_pairs(handoff.keys_before[i], 0, handoff.guests(h));
  }
  return static_cast<double>(pairs * static_cast<long double>(plan.batch));
}

// (query, key) pairs this rank computes in one call: its rows' of the local branches, and what
// spanning_pairs gives for each spanning branch.
double computed_pairs(const AttentionParams& params, const Schedule& local, const AttentionDims& dims, int rank,
                      int64_t global_len, ExchangePipeline& exchanges) {
  double pairs = static_cast<double>(dims.batch) * count_pairs_in_rows(local, global_len, dims.heads, params.causal,
                                                                       params.offsets, rank * dims.seq_len,
                                                                       (rank + 1) * dims.seq_len);
  for (size_t i = 0; i < exchanges.size(); ++i) pairs += spanning_pairs(exchanges[i].plan, exchanges[i].handoff, params.causal);
  return pairs;
}

}  // namespace

bool branch_is_local(const Branch& branch, int64_t global_len, int64_t local_len) {
  return effective_segment_length(branch, global_len) <= local_len;
}

void check_shardable(const Schedule& schedule, int64_t seq_len, int world_size, SpanningSegments spanning,
                     const ScheduleOptionNames& names) {
  if (seq_len % world_size != 0) {
    std::ostringstream message;
    message << names.seq_len << seq_len << " is not divisible by the " << world_size
            << " ranks: every rank must hold N / P rows";
    throw UsageError(message.str(), option_key(names.seq_len));
  }
  if (world_size == 1) return;  // no shard edges: a shorter last segment is the spec's forward rule
  const int64_t L = seq_len / world_size;
  for (const Branch& branch : schedule.branches) {
    const int64_t w = effective_segment_length(branch, seq_len);
    if (L % w != 0 && w % L != 0) {
      std::ostringstream message;
      message << names.segment_lengths << ": segment length " << branch.segment_length;
      if (w != branch.segment_length) message << " (" << w << " after clipping to N)";
      message << " neither divides nor is a multiple of N / P = " << seq_len << " / " << world_size << " = " << L
              << " rows per rank; segments must line up with the shards";
      throw UsageError(message.str(), option_key(names.segment_lengths));
    }
    if (spanning == SpanningSegments::whole && !branch_is_local(branch, seq_len, L) && seq_len % w != 0) {
      std::ostringstream message;
      message << names.segment_lengths << ": segment length " << w << " spans ranks and does not divide N = "
              << seq_len << ": its last segment would be shorter, which --device cuda on several ranks does not run "
                 "(the cpu backend does)";
      throw UsageError(message.str(), option_key(names.segment_lengths));
    }
  }
}

// One forward's gathered rows, per spanning branch, and what they were gathered for.
struct SequenceParallelAttention::Kept {
  int64_t forward = 0;  // which forward call of this object (the same count on every rank)
  const float* v = nullptr;
  Shape shape;
  Schedule spanning;
  HeadOffsets offsets = HeadOffsets::paper;
  std::vector<std::vector<float>> gathered;  // [spanning branch]: the all-gather's buffer
};

SequenceParallelAttention::SequenceParallelAttention(comm::Communicator& comm) : comm_(comm) {}
SequenceParallelAttention::~SequenceParallelAttention() = default;

void SequenceParallelAttention::keep_gathered_for_backward(bool keep) {
  keep_gathered_ = keep;
  if (!keep) kept_.clear();
}

comm::Communicator& SequenceParallelAttention::group_for(int group_size) {
  // Key: group size -> this rank's group; the first rank is implied by the rank and the size.
  auto it = groups_.find(group_size);
  if (it != groups_.end()) return *it->second;
  const int first = comm_.rank() / group_size * group_size;
  const int count = std::min(group_size, comm_.size() - first);
  auto group = comm_.sub(first, count);
  return *groups_.emplace(group_size, std::move(group)).first->second;
}

namespace {

struct Split {
  Schedule local, spanning;
};
Split split_schedule(const Schedule& schedule, int64_t global_len, int64_t local_len) {
  Split split;
  for (const Branch& branch : schedule.branches)
    (branch_is_local(branch, global_len, local_len) ? split.local : split.spanning).branches.push_back(branch);
  return split;
}

}  // namespace

double attention_workspace_bytes(const AttentionParams& params, const AttentionDims& local, int rank, int world,
                                 bool backward, bool keep_gathered, int threads) {
  const auto f = [](int64_t x) { return static_cast<double>(x); };
  const int64_t D = local.head_dim;
  // lse [B, L, H] (and delta); per thread the kernels' chunk buffers and their TileWorkspace (cpu_tile:
  // K, V and q copies forward; seven backward), kChunkRows rows of D floats each.
  double floats = f(local.batch) * f(local.seq_len) * f(local.heads) * (backward ? 2 : 1);
  floats += f(std::max(threads, 1)) * (backward ? 14.0 : 7.0) * f(kChunkRows) * f(D);
  if (world > 1) {
    const int64_t global_len = local.seq_len * world;
    const Split split = split_schedule(params.schedule, global_len, local.seq_len);
    // Per spanning branch, in order: its gathered rows, this rank's packed share, its K / V tiles.
    std::vector<double> gathered, send, tiles;
    for (const Branch& branch : split.spanning.branches) {
      const SpanPlan plan = plan_span(branch, local, global_len, rank, world, params.offsets);
      double all = 0;
      for (size_t c : plan.counts) all += static_cast<double>(c);
      gathered.push_back(all);
      send.push_back(static_cast<double>(plan.counts[static_cast<size_t>(plan.me)]));
      tiles.push_back(2.0 * f(tiles_size(plan)));  // K and V (backward: dK and dV too)
      // Causal balance: the moved rows' inputs and results, for the whole call (either role).
      const Handoff handoff = plan_handoff(plan, params.causal);
      floats += f(plan.batch) * f(handoff.total) * (backward ? f(moved_backward_width(D) + D) : f(2 * D + 1));
    }
    const size_t n = gathered.size();
    double all_gathered = 0, all_send = 0, peak = 0;
    for (size_t i = 0; i < n; ++i) {
      all_gathered += gathered[i];
      all_send += send[i];
      // While branch i computes, branch i + 1's gather is in flight (its packed rows and its buffer).
      const double next = i + 1 < n ? gathered[i + 1] + send[i + 1] : 0.0;
      if (backward)  // dK / dV tiles too; every branch's gathered rows stay (its dK / dV then) until the end
        peak = std::max(peak, 2.0 * tiles[i] + (i + 1 < n ? send[i + 1] : 0.0));
      else  // its gathered rows until they are tiled (the kept ones count below)
        peak = std::max(peak, (keep_gathered ? 0.0 : gathered[i]) + tiles[i] + next);
    }
    if (n > 0) peak = std::max(peak, gathered[0] + send[0]);  // the first gather, before any compute
    if (backward)
      floats += all_gathered + all_send + peak;  // all_send: each branch's reduce-scattered share
    else
      floats += peak + (keep_gathered ? all_gathered : 0.0);
  }
  return floats * sizeof(float);
}

// Forward. Order: start the first spanning exchange, compute local branches (progressing it between their
// items), then for each spanning branch start the next exchange, wait for this one, attend (progressing the
// next one between items).
void SequenceParallelAttention::forward(const AttentionParams& params, const Tensor& q, const Tensor& k,
                                        const Tensor& v, Tensor& o, Tensor& lse) {
  const auto start = Clock::now();
  const comm::Counters before = comm_.counters();
  const AttentionDims dims = check_qkv(q, k, v);
  const int64_t global_len = dims.seq_len * comm_.size();
  check_shardable(params.schedule, global_len, comm_.size());
  const Split split = split_schedule(params.schedule, global_len, dims.seq_len);
  forward_stats_ = {};

  ExchangePipeline exchanges(split.spanning, dims, global_len, comm_, params.offsets, params.causal,
                             [this](int group_size) -> comm::Communicator& { return group_for(group_size); },
                             forward_stats_);
  kept_.erase(k.data());
  ++forwards_;
  Kept* keep = nullptr;
  if (keep_gathered_ && exchanges.size() > 0) {
    auto entry = std::make_unique<Kept>();
    entry->forward = forwards_;
    entry->v = v.data();
    entry->shape = k.shape();
    entry->spanning = split.spanning;
    entry->offsets = params.offsets;
    keep = (kept_[k.data()] = std::move(entry)).get();
  }
  warn_coverage(params.schedule, dims.heads, params.offsets, global_len);  // numbered as the user's schedule
  const int64_t D = dims.head_dim;
  exchanges.begin(0, k, v);
  // Causal balance: the moved rows' queries go to their takers now; o and lse come back (D + 1 a row).
  exchanges.begin_handoffs(static_cast<size_t>(D), static_cast<size_t>(D + 1), [&](size_t i, std::vector<float>& out) {
    for_moved_rows(exchanges[i].plan, exchanges[i].handoff,
                   [&](int64_t packed, int64_t row) { std::copy_n(q.data() + row * D, D, out.data() + packed * D); });
  });
  forward_stats_.pairs = computed_pairs(params, split.local, dims, comm_.rank(), global_len, exchanges);
  if (!split.local.branches.empty()) {
    AttentionParams local = params;
    local.schedule = split.local;
    CpuAttention cpu(false);
    cpu.set_progress(progress_call(comm_, exchanges, 0));  // the first all-gather, while they compute
    cpu.forward(local, q, k, v, o, lse);
  } else {
    ensure_shape(o, q.shape());
    ensure_shape(lse, lse_shape(q.shape()));
    o.fill(0.0f);
    lse.fill(-std::numeric_limits<float>::infinity());
  }
  exchanges.progress(0);

  const float scale = static_cast<float>(resolved_scale(params, D));
  for (size_t i = 0; i < exchanges.size(); ++i) {
    exchanges.begin(i + 1, k, v);
    Exchange& ex = exchanges.finish(i);
    const SpanPlan& plan = ex.plan;
    std::vector<float> k_tiles(static_cast<size_t>(tiles_size(plan))), v_tiles(k_tiles.size());
    reorder(plan, ex.gathered, k_tiles, v_tiles, true);
    if (keep) keep->gathered.push_back(std::move(ex.gathered));
    std::vector<float>().swap(ex.gathered);  // in the tiles now (before: held to the end of the call)

    // The rows this rank computes: its own (a giver's without its moved tail) and those it takes, whose o
    // and lse it builds from zero and -inf in moved_results ([rows][D], then [rows]) and returns.
    const Handoff& handoff = ex.handoff;
    const QueryRows rows{handoff};
    const bool taking = handoff.takes();
    const int64_t moved = ex.moved_rows();
    const float* guest_q = taking ? exchanges.guest_inputs(i).data() : nullptr;
    if (taking) {
      std::fill_n(ex.moved_results.begin(), moved * D, 0.0f);
      std::fill(ex.moved_results.begin() + moved * D, ex.moved_results.end(), -std::numeric_limits<float>::infinity());
    }

    const int64_t r = plan.branch.dilation;
    const int64_t groups = plan.batch * plan.heads;
    const cpu_work::QueryCut cut = cpu_work::forward_cut(groups, rows.most(), omp_get_max_threads());
    const int64_t items = groups * cut.chunks;
    // The main thread moves the next exchange along between the items it computes (before: between eighths
    // of the items, each its own parallel region, which left threads idle where a branch had few items).
    cpu_work::MainThreadProgress progress(progress_call(comm_, exchanges, i + 1));
#pragma omp parallel
    {
      TileWorkspace ws;
      std::vector<float> qt(static_cast<size_t>(kChunkRows * D)), ot(qt.size()), lt(kChunkRows);
      std::vector<int64_t> limit(static_cast<size_t>(kChunkRows));
#pragma omp for schedule(dynamic)
      for (int64_t item = 0; item < items; ++item) {
        progress.before_item();
        const int64_t chunk = cut.chunk_of_round(item / groups, params.causal);
        const int64_t h = item % groups % plan.heads;
        const int64_t b = item % groups / plan.heads;
        const QueryRows::Part part = rows.part(h, cut.first(chunk), cut.count(chunk, rows.end(h)));
        const int64_t m_q = part.count;
        if (m_q == 0) continue;
        // Where its queries come from and its o and lse go, and the keys before its first row.
        int64_t keys_before = 0, o_stride = D, lse_stride = 1;
        float *o_rows = nullptr, *lse_rows = nullptr;
        if (!part.guest) {
          const int64_t row0 = plan.first_row[static_cast<size_t>(h)] + part.first * r;
          stride_gather(q.data(), row_index(plan, b, row0, h), r * plan.heads * D, m_q, D, qt.data());
          keys_before = plan.keys_before[static_cast<size_t>(h)] + part.first;
          const int64_t lse0 = (b * plan.local_rows + row0) * plan.heads + h;
          o_rows = o.data() + lse0 * D;
          lse_rows = lse.data() + lse0;
          o_stride = r * plan.heads * D;
          lse_stride = r * plan.heads;
        } else {
          const int64_t p0 = handoff.packed_row(b, h, part.first);
          std::copy_n(guest_q + p0 * D, m_q * D, qt.data());
          keys_before = handoff.keys_before[static_cast<size_t>(h)] + part.first;
          o_rows = ex.moved_results.data() + p0 * D;
          lse_rows = ex.moved_results.data() + moved * D + p0;
        }
        const int64_t key_end = params.causal ? keys_before + m_q : plan.keys[static_cast<size_t>(h)];
        const float* kh = k_tiles.data() + tile_offset(plan, b, h);
        const float* vh = v_tiles.data() + tile_offset(plan, b, h);
        for (int64_t k0 = 0; k0 < key_end; k0 += kChunkRows) {
          const int64_t m_k = std::min(kChunkRows, key_end - k0);
          if (params.causal)
            for (int64_t t = 0; t < m_q; ++t) limit[static_cast<size_t>(t)] = std::clamp<int64_t>(keys_before + t + 1 - k0, 0, m_k);
          flash_forward_tile(qt.data(), kh + k0 * D, vh + k0 * D, m_q, m_k, D,
                             params.causal ? limit.data() : nullptr, scale, ot.data(), lt.data(), ws);
          merge_into(o_rows, lse_rows, ot.data(), lt.data(), m_q, D, o_stride, lse_stride);
        }
      }
    }
    progress.rethrow();
    if (taking) exchanges.return_results(i);
    exchanges.progress(i + 1);
  }
  // The moved rows' o and lse, back from their takers, join this rank's (as one more partial result each).
  for (size_t i = 0; i < exchanges.size(); ++i) {
    const Exchange& ex = exchanges.finish_handoff(i);
    if (!ex.handoff.gives()) continue;
    const float* o_moved = ex.moved_results.data();
    const float* lse_moved = o_moved + ex.moved_rows() * D;
    for_moved_rows(ex.plan, ex.handoff, [&](int64_t packed, int64_t row) {
      merge_into(o.data() + row * D, lse.data() + row, o_moved + packed * D, lse_moved + packed, 1, D, D, 1);
    });
  }
  const comm::Counters& after = comm_.counters();
  forward_stats_.bytes_sent = after.bytes_sent - before.bytes_sent;
  forward_stats_.bytes_received = after.bytes_received - before.bytes_received;
  forward_stats_.collectives = after.calls - before.calls;
  forward_stats_.seconds = since(start);
}

// Backward: local branches through the CPU backend (exact, with the final o and lse), then each
// spanning branch: gather K and V again, accumulate dq locally and dK / dV for every gathered row, and
// reduce-scatter dK / dV back to their owners. The next branch's gather overlaps this branch's compute, and
// the main thread moves it (and the reduce-scatters so far) along between its items.
void SequenceParallelAttention::backward(const AttentionParams& params, const Tensor& q, const Tensor& k,
                                         const Tensor& v, const Tensor& o, const Tensor& lse, const Tensor& dout,
                                         Tensor& dq, Tensor& dk, Tensor& dv) {
  const auto start = Clock::now();
  const comm::Counters before = comm_.counters();
  const AttentionDims dims = check_qkv(q, k, v);
  check_shape("o", o, q.shape());
  check_shape("lse", lse, lse_shape(q.shape()));
  check_shape("dout", dout, q.shape());
  const int64_t global_len = dims.seq_len * comm_.size();
  check_shardable(params.schedule, global_len, comm_.size());
  const Split split = split_schedule(params.schedule, global_len, dims.seq_len);
  backward_stats_ = {};

  ExchangePipeline exchanges(split.spanning, dims, global_len, comm_, params.offsets, params.causal,
                             [this](int group_size) -> comm::Communicator& { return group_for(group_size); },
                             backward_stats_);
  if (keep_gathered_ && exchanges.size() > 0) {
    // The forward's rows serve when every rank kept them in the same forward call, for these k and v, and
    // its own rows in them still equal k and v: then so does every row of every group. All ranks decide
    // together (keep_gathered_ is the same on every rank: the callers set it collectively).
    std::unique_ptr<Kept> kept;
    if (const auto found = kept_.find(k.data()); found != kept_.end()) {
      kept = std::move(found->second);
      kept_.erase(found);
    }
    int usable = kept && kept->v == v.data() && kept->shape == k.shape() && kept->offsets == params.offsets &&
                 same_branches(kept->spanning, split.spanning) && kept->gathered.size() == exchanges.size();
    std::vector<float> own;
    for (size_t i = 0; usable && i < exchanges.size(); ++i) {
      const SpanPlan& plan = exchanges[i].plan;
      pack_own(plan, k, v, own);
      const std::vector<float>& gathered = kept->gathered[i];
      const size_t at = member_offset(plan, plan.me);
      usable = gathered.size() >= at + own.size() &&
               std::memcmp(gathered.data() + at, own.data(), own.size() * sizeof(float)) == 0;
    }
    // min over ranks of {usable, forward, -forward}: all usable, and the same forward everywhere.
    const int64_t forward = kept ? kept->forward : 0;
    int64_t decide[3] = {usable, forward, -forward};
    const auto decide_start = Clock::now();
    comm_.all_reduce(Span<int64_t>(decide, 3), comm::ReduceOp::min);
    const double decide_seconds = since(decide_start);  // blocking: all of it is exposed
    backward_stats_.comm_seconds += decide_seconds;
    backward_stats_.comm_wait_seconds += decide_seconds;
    usable = decide[0] == 1 && decide[1] == -decide[2];
    if (usable)
      for (size_t i = 0; i < exchanges.size(); ++i) exchanges.adopt(i, std::move(kept->gathered[i]));
  }
  exchanges.begin(0, k, v);
  const int64_t D = dims.head_dim;
  const float scale = static_cast<float>(resolved_scale(params, D));
  Tensor delta(lse.shape());  // D_p = <dout_p, o_p>, [B,L,H], for the local and the spanning branches
  row_dots(dout.data(), o.data(), delta.size(), D, delta.data());
  // Causal balance: the moved rows' q, dout, lse and delta go to their takers now; dq comes back.
  exchanges.begin_handoffs(static_cast<size_t>(moved_backward_width(D)), static_cast<size_t>(D),
                           [&](size_t i, std::vector<float>& out) {
                             const Exchange& ex = exchanges[i];
                             const MovedBackward<float> to(out.data(), ex.moved_rows(), D);
                             for_moved_rows(ex.plan, ex.handoff, [&](int64_t packed, int64_t row) {
                               std::copy_n(q.data() + row * D, D, to.q + packed * D);
                               std::copy_n(dout.data() + row * D, D, to.dout + packed * D);
                               to.lse[packed] = lse[row];
                               to.delta[packed] = delta[row];
                             });
                           });
  backward_stats_.pairs = computed_pairs(params, split.local, dims, comm_.rank(), global_len, exchanges);
  if (!split.local.branches.empty()) {
    AttentionParams local = params;
    local.schedule = split.local;
    CpuAttention cpu(false);
    cpu.set_progress(progress_call(comm_, exchanges, 0));  // the first all-gather, while they compute
    cpu.backward_given_delta(local, q, k, v, lse, delta, dq, dk, dv, dout);
  } else {
    for (Tensor* t : {&dq, &dk, &dv}) {
      ensure_shape(*t, q.shape());
      t->fill(0.0f);
    }
  }
  exchanges.progress(0);

  for (size_t i = 0; i < exchanges.size(); ++i) {
    exchanges.begin(i + 1, k, v);
    Exchange& ex = exchanges.finish(i);
    const SpanPlan& plan = ex.plan;
    std::vector<float> k_tiles(static_cast<size_t>(tiles_size(plan))), v_tiles(k_tiles.size());
    std::vector<float> dk_tiles(k_tiles.size(), 0.0f), dv_tiles(k_tiles.size(), 0.0f);
    reorder(plan, ex.gathered, k_tiles, v_tiles, true);

    // The rows this rank computes (QueryRows): a taker's moved rows come with their inputs, and their dq
    // goes back in moved_results.
    const Handoff& handoff = ex.handoff;
    const QueryRows rows{handoff};
    const bool taking = handoff.takes();
    const int64_t moved = ex.moved_rows();
    if (taking) {
      exchanges.guest_inputs(i);
      std::fill(ex.moved_results.begin(), ex.moved_results.end(), 0.0f);
    }
    const MovedBackward<const float> guest(ex.moved_inputs.data(), moved, D);  // read where taking

    const int64_t r = plan.branch.dilation;
    int64_t max_keys = 0;
    for (int64_t h = 0; h < plan.heads; ++h) max_keys = std::max(max_keys, plan.keys[static_cast<size_t>(h)]);
    // A (b, h) group's dK / dV are written by one item, or by its key chunks (cpu_work.hpp).
    const cpu_work::BackwardPlan cut =
        cpu_work::plan_backward(plan.batch * plan.heads, rows.most(), max_keys, omp_get_max_threads());
    const int64_t items = cut.items();
    // The main thread moves the next all-gather and the reduce-scatters so far along between its items.
    cpu_work::MainThreadProgress progress(progress_call(comm_, exchanges, i + 1));
#pragma omp parallel
    {
      TileWorkspace ws;
      std::vector<float> qt(static_cast<size_t>(kChunkRows * D)), dot(qt.size()), dqt(qt.size()), lt(kChunkRows),
          delt(kChunkRows);
      std::vector<int64_t> limit(static_cast<size_t>(kChunkRows));
      using Part = QueryRows::Part;
      // Group (b, h): the queries of `part` into qt, dot, lt and delt; returns where their dq goes: its first
      // float and the stride between rows.
      const auto gather_queries = [&](int64_t b, int64_t h, const Part& part) -> std::pair<float*, int64_t> {
        const int64_t m_q = part.count;
        if (part.guest) {
          const int64_t p0 = handoff.packed_row(b, h, part.first);
          std::copy_n(guest.q + p0 * D, m_q * D, qt.data());
          std::copy_n(guest.dout + p0 * D, m_q * D, dot.data());
          std::copy_n(guest.lse + p0, m_q, lt.data());
          std::copy_n(guest.delta + p0, m_q, delt.data());
          return {ex.moved_results.data() + p0 * D, D};
        }
        const int64_t row0 = plan.first_row[static_cast<size_t>(h)] + part.first * r;
        const int64_t first = row_index(plan, b, row0, h);
        stride_gather(q.data(), first, r * plan.heads * D, m_q, D, qt.data());
        stride_gather(dout.data(), first, r * plan.heads * D, m_q, D, dot.data());
        const int64_t lse0 = (b * plan.local_rows + row0) * plan.heads + h;
        for (int64_t t = 0; t < m_q; ++t) {
          lt[static_cast<size_t>(t)] = lse[lse0 + t * r * plan.heads];
          delt[static_cast<size_t>(t)] = delta[lse0 + t * r * plan.heads];
        }
        return {dq.data() + first, r * plan.heads * D};
      };
      // The gathered keys before the first row of `part` (causal prefix).
      const auto keys_before = [&](int64_t h, const Part& part) {
        return (part.guest ? handoff.keys_before : plan.keys_before)[static_cast<size_t>(h)] + part.first;
      };
      const auto key_end = [&](int64_t h, const Part& part) {
        return params.causal ? keys_before(h, part) + part.count : plan.keys[static_cast<size_t>(h)];
      };
      // The queries of `part` against the gathered keys [k0, k0 + m_k): adds to dqt (when asked) and to the
      // group's dK / dV tiles (when asked).
      const auto tile = [&](int64_t b, int64_t h, const Part& part, int64_t k0, int64_t m_k, bool with_dq, bool with_dkv) {
        const int64_t prefix = keys_before(h, part);
        if (params.causal)
          for (int64_t t = 0; t < part.count; ++t)
            limit[static_cast<size_t>(t)] = std::clamp<int64_t>(prefix + t + 1 - k0, 0, m_k);
        const int64_t at = tile_offset(plan, b, h) + k0 * D;
        flash_backward_tile(qt.data(), k_tiles.data() + at, v_tiles.data() + at, dot.data(), lt.data(), delt.data(),
                            part.count, m_k, D, params.causal ? limit.data() : nullptr, scale,
                            with_dq ? dqt.data() : nullptr, with_dkv ? dk_tiles.data() + at : nullptr,
                            with_dkv ? dv_tiles.data() + at : nullptr, ws);
      };
      // The queries of `part` against every key tile they see; with_dkv: the fused item's dK / dV too.
      const auto queries_against_keys = [&](int64_t b, int64_t h, const Part& part, bool with_dkv) {
        const auto [to, stride] = gather_queries(b, h, part);
        std::fill_n(dqt.begin(), part.count * D, 0.0f);
        const int64_t end = key_end(h, part);
        for (int64_t k0 = 0; k0 < end; k0 += kChunkRows) tile(b, h, part, k0, std::min(kChunkRows, end - k0), true, with_dkv);
        for (int64_t t = 0; t < part.count; ++t)
          for (int64_t d = 0; d < D; ++d) to[t * stride + d] += dqt[static_cast<size_t>(t * D + d)];
      };
      // The query tiles of group (b, h)'s rows, in order.
      const auto query_tile = [&](int64_t h, int64_t q0) { return rows.part(h, q0, std::min(kChunkRows, rows.end(h) - q0)); };
#pragma omp for schedule(dynamic)
      for (int64_t item = 0; item < items; ++item) {
        progress.before_item();
        const cpu_work::BackwardPlan::Item it = cut.item(item, params.causal);
        const int64_t h = it.group % plan.heads, b = it.group / plan.heads;
        if (it.kind == cpu_work::BackwardPlan::Item::fused_group) {
          for (int64_t q0 = 0; q0 < rows.end(h); q0 += kChunkRows)
            if (const Part part = query_tile(h, q0); part.count > 0) queries_against_keys(b, h, part, true);
        } else if (it.kind == cpu_work::BackwardPlan::Item::key_chunk) {
          // Keys [k0, k0 + key_rows) against every query tile of this rank that sees them: their dK / dV.
          const int64_t k0 = it.first_key;
          for (int64_t q0 = 0; q0 < rows.end(h); q0 += kChunkRows) {
            const Part part = query_tile(h, q0);
            const int64_t end = std::min(key_end(h, part), k0 + cut.key_rows);
            if (part.count == 0 || end <= k0) continue;
            gather_queries(b, h, part);
            tile(b, h, part, k0, end - k0, false, true);
          }
        } else if (const Part part = rows.part(h, cut.queries.first(it.chunk), cut.queries.count(it.chunk, rows.end(h)));
                   part.count > 0) {
          queries_against_keys(b, h, part, false);
        }
      }
    }
    progress.rethrow();
    if (taking) exchanges.return_results(i);
    exchanges.progress(i + 1);

    // dK / dV of every gathered row back to its owner, summed over the group's queries; the
    // reduce-scatter runs while the next branch computes.
    reorder(plan, ex.gathered, dk_tiles, dv_tiles, false);
    exchanges.begin_reduce(i);
  }
  for (size_t i = 0; i < exchanges.size(); ++i) {
    const Exchange& ex = exchanges.finish_reduce(i);
    add_own(ex.plan, ex.mine, dk, dv);
  }
  // The moved rows' dq, back from their takers.
  for (size_t i = 0; i < exchanges.size(); ++i) {
    const Exchange& ex = exchanges.finish_handoff(i);
    if (!ex.handoff.gives()) continue;
    for_moved_rows(ex.plan, ex.handoff, [&](int64_t packed, int64_t row) {
      for (int64_t d = 0; d < D; ++d) dq[row * D + d] += ex.moved_results[static_cast<size_t>(packed * D + d)];
    });
  }
  const comm::Counters& after = comm_.counters();
  backward_stats_.bytes_sent = after.bytes_sent - before.bytes_sent;
  backward_stats_.bytes_received = after.bytes_received - before.bytes_received;
  backward_stats_.collectives = after.calls - before.calls;
  backward_stats_.seconds = since(start);
}

}  // namespace longctx
