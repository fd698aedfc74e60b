// How the CPU paths cut one branch's work into OpenMP items: cpu_attention.cpp for a rank's own segments,
// sequence_parallel.cpp for the spanning ones (a (batch, head) group each, against the gathered keys).
// A group's rows are cut into tiles of kChunkRows rows. Where a branch has too few groups for the threads
// (the w = N branch of a few heads: one group per head) its items are cut finer. The key tiles stay
// kChunkRows rows from the group's first key row whatever the cut; key chunks are whole key blocks and
// query chunks whole query blocks of the kernels (cpu_tile.hpp), inside one tile, so a row meets the same
// blocks, with the same block-mates, as uncut, and every output element adds the same terms in the same
// order: the thread count, which decides the cut, changes no bit of o, lse, dq, dk or dv (for finite
// inputs; a chunk that started elsewhere made a -0 of o a +0, where its block took more masked keys).
#pragma once

#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <exception>
#include <functional>
#include <utility>

#include "attention/cpu_tile.hpp"

namespace longctx::cpu_work {

inline constexpr int64_t kChunkRows = 2048;          // selected rows per tile (queries and keys)
inline constexpr int64_t kItemsPerThread = 4;        // a finer cut's aim: causal items differ in cost
inline constexpr int64_t kMinCutRows = 2 * kTileBlockQ;  // the finest query cut (its K / V packing is per item)
// A split backward group's work over a fused one's: 7 block products (S and dP twice, dV, dK, dQ) of 5.
inline constexpr double kSplitCost = 1.4;

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// A group's query rows cut into chunks of `rows` rows (a multiple of the kernels' query block, at most
// kChunkRows) inside each kChunkRows-row tile; a tile's last chunk ends with the tile.
struct QueryCut {
  int64_t rows = kChunkRows;
  int64_t per_tile = 1;  // chunks in a tile
  int64_t chunks = 0;    // in a group of the most rows
  // Chunk c of a group of `total` rows: its first row, and its row count (0: past the group's end).
  int64_t first(int64_t c) const { return c / per_tile * kChunkRows + c % per_tile * rows; }
  int64_t count(int64_t c, int64_t total) const {
    const int64_t begin = first(c);
    return std::max<int64_t>(0, std::min({begin + rows, (c / per_tile + 1) * kChunkRows, total}) - begin);
  }
  // The chunk of the `rank`-th round of chunks (chunk-major items): causal, the last first, as a later
  // chunk sees more keys.
  int64_t chunk_of_round(int64_t rank, bool causal) const { return causal ? chunks - 1 - rank : rank; }
};

inline QueryCut cut_queries(int64_t rows, int64_t max_queries) {
  QueryCut cut;
  cut.rows = rows;
  cut.per_tile = ceil_div(kChunkRows, rows);
  cut.chunks = ceil_div(max_queries, kChunkRows) * cut.per_tile;
  return cut;
}

// The forward's query chunks: kChunkRows rows, or fewer where `groups` groups of kChunkRows-row items
// would give the threads fewer than kItemsPerThread items each.
inline QueryCut forward_cut(int64_t groups, int64_t max_queries, int threads) {
  const int64_t wanted = kItemsPerThread * threads;
  if (threads <= 1 || groups * ceil_div(max_queries, kChunkRows) >= wanted) return cut_queries(kChunkRows, max_queries);
  const int64_t rows = ceil_div(ceil_div(max_queries, ceil_div(wanted, groups)), kTileBlockQ) * kTileBlockQ;
  return cut_queries(std::clamp(rows, kMinCutRows, kChunkRows), max_queries);
}

// The backward's items of one branch. A group is one fused item: its dq, dk and dv together. Groups that
// would leave threads idle in the last round (groups mod threads of them, fewer than threads / kSplitCost)
// are split instead: their dk and dv by key chunks (each against every query tile) and their dq by query
// chunks (each against every key tile), which computes the scores and dP twice, kSplitCost times the
// work, spread over every thread. Key chunks are a power of two rows, whole key blocks inside one key tile.
struct BackwardPlan {
  int64_t fused = 0;  // groups [0, fused) are fused items
  int64_t split = 0;  // groups [fused, fused + split) are split
  int64_t key_rows = kChunkRows, key_chunks = 0;  // a split group's key chunks (dk, dv)
  QueryCut queries;                               // and query chunks (dq)
  int64_t items() const { return fused + split * (key_chunks + queries.chunks); }

  // Item `item`: a fused group; or a split group's key chunk (its first key row, key_rows rows) or query
  // chunk (of `queries`). The split items go chunk-major: causal, an early key chunk and a late query chunk
  // see the most, and go first.
  struct Item {
    enum Kind { fused_group, key_chunk, query_chunk } kind;
    int64_t group;
    int64_t first_key = 0;  // key_chunk
    int64_t chunk = 0;      // query_chunk
  };
  Item item(int64_t index, bool causal) const {
    if (index < fused) return {Item::fused_group, index};
    const int64_t part = index - fused, group = fused + part % split;
    if (part < split * key_chunks) return {Item::key_chunk, group, part / split * key_rows};
    return {Item::query_chunk, group, 0, queries.chunk_of_round((part - split * key_chunks) / split, causal)};
  }
};

inline BackwardPlan plan_backward(int64_t groups, int64_t max_queries, int64_t max_keys, int threads) {
  BackwardPlan plan;
  const int64_t rest = threads > 1 ? groups % threads : 0;
  plan.split = kSplitCost * static_cast<double>(rest) < threads ? rest : 0;
  plan.fused = groups - plan.split;
  if (plan.split == 0) return plan;
  const int64_t pieces = ceil_div(kItemsPerThread * threads, 2 * plan.split);  // per split group and pass
  const int64_t key_rows = ceil_div(max_keys, pieces);
  while (plan.key_rows / 2 >= std::max(key_rows, kTileBlockK)) plan.key_rows /= 2;
  plan.queries = cut_queries(
      std::clamp(ceil_div(ceil_div(max_queries, pieces), kTileBlockQ) * kTileBlockQ, kMinCutRows, kChunkRows),
      max_queries);
  plan.key_chunks = ceil_div(max_keys, plan.key_rows);
  return plan;
}

// Lets a caller's communication move along while a branch computes (Open MPI progresses a non-blocking
// collective only inside MPI calls): `call` runs on the OpenMP team's thread 0, the main thread, where
// MPI_THREAD_FUNNELED allows MPI, before each item it takes (so after the one before). Its first exception
// is kept (none may leave a parallel region) and rethrown by rethrow() after the region; no call follows.
class MainThreadProgress {
 public:
  explicit MainThreadProgress(std::function<void()> call) : call_(std::move(call)) {}
  void before_item() {
    if (omp_get_thread_num() != 0 || !call_ || error_) return;  // (error_ is thread 0's alone)
    try {
      call_();
    } catch (...) {
      error_ = std::current_exception();
    }
  }
  void rethrow() const {
    if (error_) std::rethrow_exception(error_);
  }

 private:
  std::function<void()> call_;
  std::exception_ptr error_;
};

}  // namespace longctx::cpu_work
