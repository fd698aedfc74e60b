// The spanning branches' exchanges of the sequence-parallel CPU path (attention-internal): SpanPlan, the
// layout of one branch's packed and gathered rows on this rank; Handoff, the causal balance's moved rows;
// and ExchangePipeline, which starts, lets progress and finishes their non-blocking all-gathers,
// reduce-scatters and the moved rows' sends and receives. The protocol they follow is written at the top
// of sequence_parallel.hpp.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <new>
#include <vector>

#include "attention/attention.hpp"
#include "attention/sequence_parallel.hpp"
#include "comm/communicator.hpp"

namespace longctx::spanning {

using Clock = std::chrono::steady_clock;
inline double since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

// One spanning branch as seen from this rank: its group of ranks and, per group member and head, how
// many rows that member selects (rows are a function of L, r and the head offset: nobody needs to ask).
struct SpanPlan {
  Branch branch;
  int group_first = 0;  // first rank of the group sharing this rank's segment
  int group_size = 0;
  int me = 0;           // this rank's index in the group
  int64_t batch = 0, local_rows = 0, heads = 0, head_dim = 0;
  std::vector<int64_t> rows;        // [member][head]: selected rows of that member for that head
  std::vector<int64_t> first_row;   // [head]: this rank's first selected local row for that head
  std::vector<size_t> counts;       // [member]: floats that member contributes (K and V, all b, h)
  std::vector<int64_t> keys;        // [head]: selected rows of the whole segment (m_k)
  std::vector<int64_t> keys_before;  // [head]: selected rows of members before me (causal prefix)

  int64_t rows_of(int member, int64_t h) const { return rows[static_cast<size_t>(member * heads + h)]; }
  int64_t member_rows(int member) const {  // sum over heads
    int64_t total = 0;
    for (int64_t h = 0; h < heads; ++h) total += rows_of(member, h);
    return total;
  }
};

// This rank's plan (rank `rank` of `world`) for a spanning branch.
SpanPlan plan_span(const Branch& branch, const AttentionDims& local, int64_t global_len, int rank, int world,
                   HeadOffsets offsets);

// Causal balance: which rank computes which of a spanning branch's query rows (not what they compute).
// With causal masking member m of a group of g computes about (2m + 1) / g^2 of the branch, as its queries
// see the keys of members 0..m: the last member 2g - 1 times the first's share. Members pair up, m with
// g - 1 - m, and the later one hands the tail of its selected query rows (its costliest) to the earlier one,
// which holds every key of the segment after the all-gather, so that the two compute about the same number
// of (query, key) pairs. Every pair's total is about the same (g n^2 for n rows per member), so each member
// computes about 1 / g of the branch. The moved rows' inputs go to the taker and their results come back
// (forward: o and lse; backward: dq; their dK / dV join the taker's, which the reduce-scatter sums anyway).
// Nothing moves without causal masking, in a group of one, or for the middle member of an odd group.
struct Handoff {
  int partner = -1;                    // group member paired with this rank; -1: nothing moves
  bool giver = false;                  // this rank hands rows over (the later member); else it takes them
  std::vector<int64_t> own;            // [head]: this rank's own selected rows that it computes, [0, own)
  std::vector<int64_t> rows;           // [head]: rows moved (the giver's tail after its `own`)
  std::vector<int64_t> keys_before;    // [head]: gathered keys before the first moved row (causal prefix)
  std::vector<int64_t> packed_before;  // [head]: moved rows of the heads before (per batch element)
  int64_t total = 0;                   // moved rows of all heads, per batch element

  bool moves() const { return total > 0; }
  bool gives() const { return moves() && giver; }
  bool takes() const { return moves() && !giver; }
  int64_t guests(int64_t h) const { return giver ? 0 : rows[static_cast<size_t>(h)]; }
  // Row t of head h of batch element b in the packed moved rows ([B][H][rows][...]).
  int64_t packed_row(int64_t b, int64_t h, int64_t t) const { return b * total + packed_before[static_cast<size_t>(h)] + t; }
};

// (query, key) pairs of causal rows [t0, t1) of a member whose row t sees keys_before + t + 1 keys.
long double causal_pairs(int64_t keys_before, int64_t t0, int64_t t1);

// This rank's part of the balance of `plan`'s branch (both members of a pair compute the same rows).
Handoff plan_handoff(const SpanPlan& plan, bool causal);

// The giver's moved rows: at(packed row, index of the row in a [B, L, H] tensor; times D in [B, L, H, D]).
template <class At>
void for_moved_rows(const SpanPlan& plan, const Handoff& handoff, At&& at) {
  const int64_t r = plan.branch.dilation;
  for (int64_t b = 0; b < plan.batch; ++b)
    for (int64_t h = 0; h < plan.heads; ++h) {
      const int64_t first = plan.first_row[static_cast<size_t>(h)] + handoff.own[static_cast<size_t>(h)] * r;
      for (int64_t t = 0; t < handoff.rows[static_cast<size_t>(h)]; ++t)
        at(handoff.packed_row(b, h, t), (b * plan.local_rows + first + t * r) * plan.heads + h);
    }
}

// Float offset of member m's block (K then V, each [B][H][rows][D]) in the gathered buffer, and of
// (b, h) inside one half of that block.
size_t member_offset(const SpanPlan& plan, int member);
int64_t head_offset_in_block(const SpanPlan& plan, int member, int64_t b, int64_t h);

// Local row index -> float offset in a [B, L, H, D] tensor.
int64_t row_index(const SpanPlan& plan, int64_t b, int64_t local_row, int64_t h);

// This rank's selected K and V rows, [B][H][rows][D] for K then for V.
void pack_own(const SpanPlan& plan, const Tensor& k, const Tensor& v, std::vector<float>& out);
// Adds this rank's share of the reduce-scattered dK and dV (pack_own's layout) into its rows of dk and dv.
void add_own(const SpanPlan& plan, const std::vector<float>& mine, Tensor& dk, Tensor& dv);

// Gathered (member-major) <-> per-(b, h) contiguous [B][H][m_k][D] for K and for V.
// to_tiles = true copies gathered -> tiles; false adds tiles -> gathered layout (for the reduce-scatter).
void reorder(const SpanPlan& plan, std::vector<float>& gathered, std::vector<float>& k_tiles,
             std::vector<float>& v_tiles, bool to_tiles);

// Floats of the tiled K (or V) of every (b, h), [B][H][m_k][D], and the offset of (b, h) in them.
int64_t tiles_size(const SpanPlan& plan);
int64_t tile_offset(const SpanPlan& plan, int64_t b, int64_t h);

// A non-blocking collective (or send, or receive) and its timing: started -> seen complete (by test() or
// wait()).
struct Timed {
  comm::Request request;
  Clock::time_point started;
  bool done = false;
  bool counted = false;  // seconds are in the stats
  double seconds = 0;

  void start(comm::Request r) {
    request = std::move(r);
    started = Clock::now();
    done = counted = false;
  }
  void progress() {
    if (!done && request.pending() && request.test()) complete();
  }
  // Waits if needed; adds to the stats once (all of the wait is exposed time). `only_wait`: only the wait
  // counts, to both figures (the moved rows' transfers: their start-to-complete spans the partner's compute
  // of the branch, which is not communication time).
  void finish(SequenceParallelStats& stats, bool only_wait = false) {
    double waited = 0;
    if (!done) {
      const auto wait_start = Clock::now();
      request.wait();
      waited = since(wait_start);
      stats.comm_wait_seconds += waited;
      complete();
    }
    if (!counted) stats.comm_seconds += only_wait ? waited : seconds;
    counted = true;
  }

 private:
  void complete() {
    done = true;
    seconds = since(started);
  }
};

// One spanning branch's exchanges: the packed send rows, where the group's rows land, and (backward)
// this rank's share of the reduce-scattered dK / dV.
struct Exchange {
  SpanPlan plan;
  std::vector<float> send, gathered, mine;
  Timed gather, reduce;
  bool kept = false;  // `gathered` holds the forward's rows: no all-gather
  // Causal balance: the moved rows' inputs (giver -> taker) and results (taker -> giver), packed by
  // Handoff::packed_row, and their transfers.
  Handoff handoff;
  std::vector<float> moved_inputs, moved_results;
  Timed inputs, results;
  int64_t moved_rows() const { return plan.batch * handoff.total; }  // over the batch

  Exchange() = default;
  Exchange(const Exchange&) = delete;
  Exchange& operator=(const Exchange&) = delete;
  // Destroyed with a collective in flight (a failure unwinding): it is waited for, or abandoned once its
  // communicator's family timed out. MPI cannot cancel an abandoned collective and may still write its
  // buffers: they are leaked on purpose, not freed (the job is ending).
  ~Exchange() {
    const bool gather_done = gather.request.finish_or_abandon();
    const bool reduce_done = reduce.request.finish_or_abandon();
    const bool inputs_done = inputs.request.finish_or_abandon();
    const bool results_done = results.request.finish_or_abandon();
    if (gather_done && reduce_done && inputs_done && results_done) return;
    for (std::vector<float>* buffer : {&send, &gathered, &mine, &moved_inputs, &moved_results})
      new (std::nothrow) std::vector<float>(std::move(*buffer));
  }
};

// The spanning branches' all-gathers of one forward or backward call, in branch order. begin(i) packs
// this rank's rows and starts exchange i; progress(i) lets MPI move it along (Open MPI has no progress
// thread); finish(i) waits for it. Times go into `stats`: comm_seconds from start to seen complete,
// comm_wait_seconds for the part spent blocked in finish().
class ExchangePipeline {
 public:
  ExchangePipeline(const Schedule& spanning, const AttentionDims& dims, int64_t global_len, comm::Communicator& comm,
                   HeadOffsets offsets, bool causal, std::function<comm::Communicator&(int)> group_for,
                   SequenceParallelStats& stats)
      : group_for_(std::move(group_for)), stats_(stats), rows_per_rank_(dims.seq_len), global_len_(global_len) {
    for (const Branch& branch : spanning.branches) {
      auto exchange = std::make_unique<Exchange>();
      exchange->plan = plan_span(branch, dims, global_len, comm.rank(), comm.size(), offsets);
      exchange->handoff = plan_handoff(exchange->plan, causal);
      exchanges_.push_back(std::move(exchange));
    }
    // Every rank makes its groups' communicators here, in branch order: each one's creation is collective
    // over its members, and ranks that share two groups must create them in the same order. Made on first
    // use, they were not: the causal balance's transfers use the groups before their gathers do, and a rank
    // that moves no rows in a branch (the middle one of an odd group, or one alone in a short last segment)
    // made a later branch's group first, and waited in its creation for ranks waiting in the earlier one's
    // (P = 4 with --causal --segment-lengths 48,72,96 on N = 96: a hang to the comm timeout).
    for (const auto& exchange : exchanges_) group(exchange->plan);
  }

  size_t size() const { return exchanges_.size(); }
  Exchange& operator[](size_t i) { return *exchanges_[i]; }
  comm::Communicator& group(const SpanPlan& plan) {
    return group_for_(static_cast<int>(effective_segment_length(plan.branch, global_len_) / rows_per_rank_));
  }

  // Exchange i uses `gathered` (the forward's rows) instead of an all-gather.
  void adopt(size_t i, std::vector<float> gathered) {
    exchanges_[i]->gathered = std::move(gathered);
    exchanges_[i]->kept = true;
  }

  void begin(size_t i, const Tensor& k, const Tensor& v) {
    if (i >= exchanges_.size() || exchanges_[i]->kept) return;
    Exchange& ex = *exchanges_[i];
    pack_own(ex.plan, k, v, ex.send);
    size_t total = 0;
    for (size_t c : ex.plan.counts) total += c;
    ex.gathered.resize(total);
    ex.gather.start(group(ex.plan).iall_gatherv(Span<const float>(ex.send), Span<float>(ex.gathered), ex.plan.counts));
  }

  // Lets MPI move exchange i's gather, and every reduce-scatter and moved-row transfer started so far, along.
  void progress(size_t i) {
    if (i < exchanges_.size() && !exchanges_[i]->kept) exchanges_[i]->gather.progress();
    for (auto& ex : exchanges_) {
      ex->reduce.progress();
      ex->inputs.progress();
      ex->results.progress();
    }
  }

  // Causal balance (Handoff), for every exchange at once: the giver packs its moved rows' inputs
  // (pack(i, buffer), input_width floats a row) and sends them, and posts the receive of their results
  // (result_width floats a row); the taker posts the receive of the inputs. Tags 2i and 2i + 1 on the
  // group's communicator.
  void begin_handoffs(size_t input_width, size_t result_width,
                      const std::function<void(size_t, std::vector<float>&)>& pack) {
    for (size_t i = 0; i < exchanges_.size(); ++i) {
      Exchange& ex = *exchanges_[i];
      if (!ex.handoff.moves()) continue;
      const size_t rows = static_cast<size_t>(ex.moved_rows());
      ex.moved_inputs.resize(rows * input_width);
      ex.moved_results.resize(rows * result_width);
      comm::Communicator& peers = group(ex.plan);
      const int tag = static_cast<int>(2 * i);
      if (ex.handoff.giver) {
        pack(i, ex.moved_inputs);
        ex.inputs.start(peers.isend(Span<const float>(ex.moved_inputs), ex.handoff.partner, tag));
        ex.results.start(peers.irecv(Span<float>(ex.moved_results), ex.handoff.partner, tag + 1));
      } else {
        ex.inputs.start(peers.irecv(Span<float>(ex.moved_inputs), ex.handoff.partner, tag));
      }
    }
  }
  // Taker: waits for exchange i's moved inputs.
  const std::vector<float>& guest_inputs(size_t i) {
    exchanges_[i]->inputs.finish(stats_, true);
    return exchanges_[i]->moved_inputs;
  }
  // Taker: sends exchange i's moved_results (filled) back to the giver.
  void return_results(size_t i) {
    Exchange& ex = *exchanges_[i];
    ex.results.start(group(ex.plan).isend(Span<const float>(ex.moved_results), ex.handoff.partner,
                                          static_cast<int>(2 * i + 1)));
  }
  // Waits for exchange i's moved rows: the giver's sent inputs and received results, the taker's sent results.
  Exchange& finish_handoff(size_t i) {
    Exchange& ex = *exchanges_[i];
    if (ex.handoff.moves()) {
      ex.inputs.finish(stats_, true);
      ex.results.finish(stats_, true);
    }
    return ex;
  }

  // Frees the packed rows once the gather is done (before: held to the end of the call, every branch's).
  Exchange& finish(size_t i) {
    if (!exchanges_[i]->kept) {
      exchanges_[i]->gather.finish(stats_);
      std::vector<float>().swap(exchanges_[i]->send);
    }
    return *exchanges_[i];
  }

  // Backward: sends exchange i's dK / dV (in ex.gathered's layout) back to their owners, summed.
  void begin_reduce(size_t i) {
    Exchange& ex = *exchanges_[i];
    ex.mine.resize(ex.plan.counts[static_cast<size_t>(ex.plan.me)]);
    ex.reduce.start(group(ex.plan).ireduce_scatter(Span<const float>(ex.gathered), Span<float>(ex.mine), ex.plan.counts));
  }
  Exchange& finish_reduce(size_t i) {
    exchanges_[i]->reduce.finish(stats_);
    return *exchanges_[i];
  }

 private:
  std::vector<std::unique_ptr<Exchange>> exchanges_;
  std::function<comm::Communicator&(int)> group_for_;
  SequenceParallelStats& stats_;
  int64_t rows_per_rank_, global_len_;
};

}  // namespace longctx::spanning
