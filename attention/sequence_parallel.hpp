// Sequence-parallel dilated attention (LongNet's distributed algorithm; spec "Distributed").
//
// P ranks each hold L = N / P contiguous rows: rank k owns global rows [k L, (k+1) L) of q, k, v.
// For each branch, w' = min(w, N) must divide L (the branch is LOCAL: its segments lie inside one shard)
// or be a multiple of L (the branch SPANS g = w' / L ranks: ranks [j g, (j+1) g) share one segment).
//
// Protocol for a spanning branch (per batch element, per head h with offset o = o(h, r)):
//   1. each rank packs only ITS selected K and V rows (global position p with (p - s) mod r == o,
//      s = segment start) into a contiguous buffer laid out [B][H][rows][D] for K, then the same for V;
//   2. one all-gatherv among exactly the g ranks of the segment (a sub-communicator per group size,
//      cached; every rank makes those of a call's spanning branches when it plans their exchanges, in
//      branch order, so that ranks sharing two groups create them in one order), counts known to every
//      rank without asking (they follow from L, r, o);
//   3. each rank attends its own selected queries to the gathered rows. Gathered rows are in position
//      order (rank-major), so a causal query's visible keys are a prefix: those of earlier ranks,
//      then its own up to its position; a later rank's keys are never visible.
//   4. causal: members pair up (m with g - 1 - m) and the later one hands the tail of its selected queries
//      to the earlier one (span_exchange.hpp Handoff), so that each computes about 1 / g of the branch;
//      point-to-point on the group's communicator, the inputs at the call's start, the results back after
//      the taker's branch (forward: o and lse, merged by the giver at the end; backward: dq).
//   Backward accumulates dK and dV for every gathered row from this rank's queries, and reduce-scatters
//   them (same layout, same counts) back to the owners of those rows. Its K / V rows are the forward's,
//   kept (keep_gathered_for_backward), or gathered again: one all-reduce of 3 int64 decides, on all
//   ranks alike, whether every rank still holds unchanged rows kept in the same forward call.
// Overlap: the next spanning branch's non-blocking all-gather is started before the current branch is
// computed, and progressed between work chunks (Open MPI has no progress thread), so its time hides
// behind compute; in the backward each branch's reduce-scatter is non-blocking too and completes while
// the following branches compute. No deadlock: every rank of a group issues the same collectives on the
// same communicator in the same order (gather i+1 before reduce-scatter i), and non-blocking
// collectives on different communicators progress independently. The moved rows' transfers are
// non-blocking too, posted before any wait that could need them (the inputs at the call's start, each
// branch's results right after it); a taker waits for a branch's inputs before computing it, and the
// results (and the sends) are waited for at the call's end. In the stats they count only their waits.
#pragma once

#include <map>
#include <memory>

#include "attention/attention.hpp"
#include "comm/communicator.hpp"

namespace longctx {

// What one forward or backward call did on this rank.
struct SequenceParallelStats {
  double seconds = 0;              // wall time of the call
  double comm_seconds = 0;         // from starting each exchange to seeing it complete (moved rows: waits)
  double comm_wait_seconds = 0;    // of which this rank sat waiting (exposed, not hidden by compute)
  uint64_t bytes_sent = 0;         // payload to other ranks (communicator counters)
  uint64_t bytes_received = 0;     // payload from other ranks
  uint64_t collectives = 0;        // communicator calls
  double pairs = 0;                // (query, key) pairs this rank computed (causal: balanced, Handoff)
  double hidden_fraction() const { return comm_seconds > 0 ? 1.0 - comm_wait_seconds / comm_seconds : 1.0; }
};

// Whether a segment that spans ranks may end short (N not a multiple of its w'). The CPU path takes it;
// the GPU path's kernels assume g full shards, so on several ranks it asks for whole segments.
enum class SpanningSegments { may_end_short, whole };

// Throws UsageError (before any work) when N % P != 0, when a segment length neither divides nor is a
// multiple of N / P, or (`whole`) when a spanning segment would end short. Messages name the segment
// length under names.segment_lengths.
void check_shardable(const Schedule& schedule, int64_t seq_len, int world_size,
                     SpanningSegments spanning = SpanningSegments::may_end_short,
                     const ScheduleOptionNames& names = {});

// Whether `branch` is LOCAL when N = global_len rows are split into shards of local_len (its segments lie
// inside one shard); otherwise it spans ranks.
bool branch_is_local(const Branch& branch, int64_t global_len, int64_t local_len);

// Bytes rank `rank` of `world` holds during one forward (or backward) call on the CPU beyond its rows of
// q, k, v, o (and do, dq, dk, dv): lse (and the backward's delta), the spanning branches' buffers (this
// rank's packed rows, the gathered K / V of its segment and their tiles, the next branch's gather in
// flight; the backward keeps every branch's gathered rows for its reduce-scatters, and `keep_gathered`
// keeps the forward's; with causal masking the rows moved by the balance, their inputs and results),
// and each thread's tiles. An upper bound, for the memory check before any work
// (before it counted only the rows: a spanning segment's peak was 3-6x that).
double attention_workspace_bytes(const AttentionParams& params, const AttentionDims& local, int rank, int world,
                                 bool backward, bool keep_gathered, int threads);

class SequenceParallelAttention {
 public:
  // `comm` spans the ranks that share the sequence; it must outlive this object.
  explicit SequenceParallelAttention(comm::Communicator& comm);
  ~SequenceParallelAttention();

  // q, k, v: this rank's rows, [B, L, H, D] (or [L, H, D]); o and lse likewise (lse [B, L, H]).
  void forward(const AttentionParams& params, const Tensor& q, const Tensor& k, const Tensor& v, Tensor& o,
               Tensor& lse);
  void backward(const AttentionParams& params, const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& o,
                const Tensor& lse, const Tensor& dout, Tensor& dq, Tensor& dk, Tensor& dv);

  // On: each forward keeps its spanning branches' gathered K / V rows (by k's buffer) for the backward
  // on the same k and v, which then skips its all-gathers (half of the backward's traffic) and frees
  // them. The backward checks that every rank kept them in the same forward call and that its own rows
  // in them still equal k and v (bit for bit; one all-reduce of 3 int64 over the communicator), else it
  // gathers again. Memory: the gathered rows of the spanning branches per forward kept (the model: one
  // set per layer, sum over spanning branches of (w'/r) B H D 8 bytes). Off (the default): forward keeps
  // nothing and drops what was kept, and the backward gathers without the all-reduce. Collective: set it
  // alike on every rank.
  void keep_gathered_for_backward(bool keep);

  const SequenceParallelStats& last_forward() const { return forward_stats_; }
  const SequenceParallelStats& last_backward() const { return backward_stats_; }

 private:
  struct Kept;  // one forward's gathered rows
  comm::Communicator& group_for(int group_size);

  comm::Communicator& comm_;
  bool keep_gathered_ = false;
  int64_t forwards_ = 0;  // forward calls so far (collective: the same on every rank)
  std::map<const float*, std::unique_ptr<Kept>> kept_;  // by k.data()
  std::map<int, std::unique_ptr<comm::Communicator>> groups_;  // group size -> this rank's group
  SequenceParallelStats forward_stats_;
  SequenceParallelStats backward_stats_;
};

}  // namespace longctx
