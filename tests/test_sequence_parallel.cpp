// Sharded equals unsharded: every rank builds the GLOBAL inputs from (seed, global index), runs the
// single-process CPU backend on them for the expected values, runs the sequence-parallel path on its
// own rows, and compares its rows. Byte counters are checked against the volume the algorithm needs,
// computed here from the spec's formula, not from the implementation; the causal balance's moved rows from
// a brute-force balance here (BytesAreExactlyWhatTheAlgorithmNeeds), and in run_case's relation between
// forward and backward from the implementation's plan (plan_handoff), which that test checks.
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "attention/cpu_attention.hpp"
#include "attention/schedule.hpp"
#include "attention/sequence_parallel.hpp"
#include "attention/span_exchange.hpp"
#include "comm/mpi_communicator.hpp"
#include "test_util.hpp"

namespace longctx {
namespace {

using longctx::testing::all_close;
using longctx::testing::random_tensor;
using longctx::testing::rows_of;

std::unique_ptr<comm::Communicator> world() {
  auto c = comm::make_mpi_world(120.0);
  c->set_timeout_seconds(60.0);
  return c;
}

struct Case {
  const char* name;
  std::vector<int64_t> w, r;  // segment lengths in units of rows-per-rank L when negative (-k -> k L)
  int64_t batch, heads, head_dim;
  bool causal;
  HeadOffsets offsets;
};

// L rows per rank; L = 24 so r = 5 gives ranks different phases (uneven all-gathers).
constexpr int64_t kRowsPerRank = 24;

Schedule resolve(const Case& c) {
  std::vector<int64_t> w;
  for (int64_t x : c.w) w.push_back(x < 0 ? -x * kRowsPerRank : x);
  return make_schedule(w, c.r, false);
}

// Bytes of the backward's all-reduce (min of 3 int64) that decides whether the kept rows serve, by the
// communicator's accounting (comm/communicator.hpp): a reduce-scatter of the even split of 3 elements
// (the first 3 % P blocks one larger), then an all-gather of the same blocks.
uint64_t keep_check_bytes(int rank, int P) {
  const uint64_t block = 3 / P + (rank < 3 % P ? 1 : 0);
  return (3 - block) * 8 + (P - 1) * block * 8;
}

// Bytes the causal balance moves on this rank (span_exchange.hpp Handoff), over its spanning branches:
// a giver sends its moved rows' q and receives o and lse (forward), sends q, dout, lse and delta and
// receives dq (backward); a taker the other way round.
struct MovedBytes {
  uint64_t forward_sent = 0, forward_received = 0, backward_sent = 0, backward_received = 0;
};
MovedBytes moved_bytes(const AttentionParams& params, const AttentionDims& local, int rank, int P) {
  MovedBytes bytes;
  const int64_t N = local.seq_len * P, D = local.head_dim;
  for (const Branch& branch : params.schedule.branches) {
    if (branch_is_local(branch, N, local.seq_len)) continue;
    const spanning::SpanPlan plan = spanning::plan_span(branch, local, N, rank, P, params.offsets);
    const spanning::Handoff handoff = spanning::plan_handoff(plan, params.causal);
    const uint64_t rows = static_cast<uint64_t>(local.batch * handoff.total) * 4;
    const uint64_t out_fwd = rows * D, back_fwd = rows * (D + 1), out_bwd = rows * (2 * D + 2), back_bwd = rows * D;
    bytes.forward_sent += handoff.giver ? out_fwd : back_fwd;
    bytes.forward_received += handoff.giver ? back_fwd : out_fwd;
    bytes.backward_sent += handoff.giver ? out_bwd : back_bwd;
    bytes.backward_received += handoff.giver ? back_bwd : out_bwd;
  }
  return bytes;
}

void run_case(const Case& c, bool backward, bool keep = false) {
  SCOPED_TRACE(std::string(c.name) + (keep ? ", backward on the forward's kept K / V" : ""));
  auto comm = world();
  const int P = comm->size();
  const int64_t N = kRowsPerRank * P, first = kRowsPerRank * comm->rank();
  AttentionParams params;
  params.schedule = resolve(c);
  params.causal = c.causal;
  params.offsets = c.offsets;
  const Shape shape{c.batch, N, c.heads, c.head_dim};
  const Tensor q = random_tensor(shape, 11), k = random_tensor(shape, 12), v = random_tensor(shape, 13),
               dout = random_tensor(shape, 14);
  CpuAttention single;
  Tensor o, lse;
  single.forward(params, q, k, v, o, lse);

  SequenceParallelAttention sharded(*comm);
  sharded.keep_gathered_for_backward(keep);
  const Tensor q_mine = rows_of(q, first, kRowsPerRank), k_mine = rows_of(k, first, kRowsPerRank),
               v_mine = rows_of(v, first, kRowsPerRank);
  Tensor o_mine, lse_mine;
  sharded.forward(params, q_mine, k_mine, v_mine, o_mine, lse_mine);
  // Tolerance: same float32 tile kernels, but key chunks and merge order differ with P.
  EXPECT_TRUE(all_close(o_mine, rows_of(o, first, kRowsPerRank), 2e-5, 2e-5));
  EXPECT_TRUE(all_close(lse_mine, rows_of(lse, first, kRowsPerRank), 2e-5, 2e-5));
  if (!backward) return;
  Tensor dq, dk, dv, dq_mine, dk_mine, dv_mine;
  single.backward(params, q, k, v, o, lse, dout, dq, dk, dv);
  sharded.backward(params, q_mine, k_mine, v_mine, o_mine, lse_mine, rows_of(dout, first, kRowsPerRank), dq_mine,
                   dk_mine, dv_mine);
  // Kept rows used: the backward only reduce-scatters, the forward's all-gather in reverse (what this rank
  // sent there it receives back summed, and the other way round), plus the deciding all-reduce, and the
  // causal balance's moved rows.
  if (keep && P > 1 && sharded.last_forward().bytes_received > 0) {
    const MovedBytes moved = moved_bytes(params, {c.batch, kRowsPerRank, c.heads, c.head_dim}, comm->rank(), P);
    EXPECT_EQ(sharded.last_backward().bytes_received - moved.backward_received,
              sharded.last_forward().bytes_sent - moved.forward_sent + keep_check_bytes(comm->rank(), P));
    EXPECT_EQ(sharded.last_backward().bytes_sent - moved.backward_sent,
              sharded.last_forward().bytes_received - moved.forward_received + keep_check_bytes(comm->rank(), P));
  }
  // dK / dV sum contributions from several ranks in another order: 1e-4.
  EXPECT_TRUE(all_close(dq_mine, rows_of(dq, first, kRowsPerRank), 1e-4, 1e-4));
  EXPECT_TRUE(all_close(dk_mine, rows_of(dk, first, kRowsPerRank), 1e-4, 1e-4));
  EXPECT_TRUE(all_close(dv_mine, rows_of(dv, first, kRowsPerRank), 1e-4, 1e-4));
}

const std::vector<Case>& cases() {
  static const std::vector<Case> all{
      {"local+2ranks+all, paper", {6, -2, -4}, {1, 2, 4}, 1, 4, 16, false, HeadOffsets::paper},
      {"local+2ranks+all, causal", {6, -2, -4}, {1, 2, 4}, 1, 4, 16, true, HeadOffsets::paper},
      {"uneven phases r=5, H=5, grouped, causal", {12, 24, -4}, {1, 5, 3}, 1, 5, 8, true, HeadOffsets::grouped},
      {"uneven phases r=5, B=2, not causal", {8, -2}, {1, 5}, 2, 3, 12, false, HeadOffsets::paper},
      {"B=2, causal (moved rows of two batch elements)", {6, -2, -4}, {1, 2, 3}, 2, 3, 8, true, HeadOffsets::paper},
      {"dense, clipped to N", {1 << 20}, {1}, 1, 2, 16, true, HeadOffsets::paper},
      {"only spanning branches", {-2, -4}, {1, 3}, 1, 3, 16, false, HeadOffsets::grouped},
      // At P = 4: groups of 2, then 3 (and rank 3 alone in the short last segment), then 4 ranks. Rank 1 (the
      // middle of the 3) and rank 3 move no rows in the second branch; the groups' communicators were made
      // on first use, in another order on those ranks, and the job hung in their creation.
      {"groups of 2, 3 and 4 ranks, causal", {-2, -3, -4}, {1, 1, 1}, 1, 2, 8, true, HeadOffsets::paper},
  };
  return all;
}

TEST(SequenceParallel, ForwardEqualsSingleProcess) {
  for (const Case& c : cases()) run_case(c, false);
}

TEST(SequenceParallel, BackwardEqualsSingleProcess) {
  for (const Case& c : cases()) run_case(c, true);
}

TEST(SequenceParallel, BackwardOnKeptRowsEqualsSingleProcess) {
  for (const Case& c : cases()) run_case(c, true, true);
}


// The thread count decides how a spanning branch's work is cut (cpu_work.hpp: one head is one group,
// which 7 threads cut into query chunks forward and split into key and query passes backward, against
// three 2048-row key tiles at 4 ranks), never a bit of this rank's o, lse, dq, dk or dv; at 7 threads
// they also match the single process. 1100 rows a rank: several chunks of each kind.
TEST(SequenceParallel, ResultsDoNotDependOnTheThreadCount) {
  auto comm = world();
  const int P = comm->size();
  const int64_t L = 1100, N = L * P, first = L * comm->rank();
  const auto same_bits = [](const Tensor& a, const Tensor& b) {  // (all_close takes -0 for +0)
    return a.shape() == b.shape() && std::memcmp(a.data(), b.data(), sizeof(float) * a.size()) == 0;
  };
  const int threads_before = omp_get_max_threads();
  // D = 4 with scale 1: the kernels copy q rows unscaled, where a chunk past a taker's moved rows once
  // came with a negative row count (as many rows of garbage to copy).
  for (const auto& [causal, D, scale] : {std::tuple{false, 8, 0.0}, std::tuple{true, 8, 0.0}, std::tuple{true, 4, 1.0}}) {
    SCOPED_TRACE(std::string(causal ? "causal" : "full") + ", D = " + std::to_string(D));
    const Shape shape{1, N, 1, D};
    const Tensor q = random_tensor(shape, 31), k = random_tensor(shape, 32), v = random_tensor(shape, 33),
                 dout = random_tensor(shape, 34);
    const Tensor q_mine = rows_of(q, first, L), k_mine = rows_of(k, first, L), v_mine = rows_of(v, first, L),
                 dout_mine = rows_of(dout, first, L);
    AttentionParams params;
    params.schedule = make_schedule({100, N, N}, {1, 1, 2}, false);
    params.causal = causal;
    params.softmax_scale = scale;
    Tensor o[2], lse[2], dq[2], dk[2], dv[2];
    for (int run = 0; run < 2; ++run) {
      omp_set_num_threads(run == 0 ? 1 : 7);
      SequenceParallelAttention sharded(*comm);
      sharded.forward(params, q_mine, k_mine, v_mine, o[run], lse[run]);
      sharded.backward(params, q_mine, k_mine, v_mine, o[run], lse[run], dout_mine, dq[run], dk[run], dv[run]);
    }
    EXPECT_TRUE(same_bits(o[0], o[1])) << "o";
    EXPECT_TRUE(same_bits(lse[0], lse[1])) << "lse";
    EXPECT_TRUE(same_bits(dq[0], dq[1])) << "dq";
    EXPECT_TRUE(same_bits(dk[0], dk[1])) << "dk";
    EXPECT_TRUE(same_bits(dv[0], dv[1])) << "dv";
    CpuAttention single;
    Tensor o1, lse1, dq1, dk1, dv1;
    single.forward(params, q, k, v, o1, lse1);
    single.backward(params, q, k, v, o1, lse1, dout, dq1, dk1, dv1);
    omp_set_num_threads(threads_before);
    EXPECT_TRUE(all_close(o[1], rows_of(o1, first, L), 2e-5, 2e-5)) << "o";
    EXPECT_TRUE(all_close(lse[1], rows_of(lse1, first, L), 2e-5, 2e-5)) << "lse";
    EXPECT_TRUE(all_close(dq[1], rows_of(dq1, first, L), 1e-4, 1e-4)) << "dq";
    EXPECT_TRUE(all_close(dk[1], rows_of(dk1, first, L), 1e-4, 1e-4)) << "dk";
    EXPECT_TRUE(all_close(dv[1], rows_of(dv1, first, L), 1e-4, 1e-4)) << "dv";
  }
}

// The backward on kept rows gives what a backward that gathers again gives, bit for bit, and only while
// the rows are unchanged: k changed in place on ONE rank after the forward makes every rank gather again
// (a stale row there would be a wrong gradient everywhere; a split decision would hang).
TEST(SequenceParallel, KeptRowsServeOnlyWhileUnchangedOnEveryRank) {
  auto comm = world();
  const int P = comm->size();
  if (P == 1) GTEST_SKIP() << "one rank gathers nothing";
  const int64_t L = 24, H = 3, D = 8;
  AttentionParams params;
  params.schedule = make_schedule({6, 2 * L, P * L}, {1, 2, 3}, false);
  params.causal = true;
  const Shape shape{1, L, H, D};
  const uint64_t seed = 100 + 10 * static_cast<uint64_t>(comm->rank());
  const Tensor q = random_tensor(shape, seed), v = random_tensor(shape, seed + 2), dout = random_tensor(shape, seed + 3);
  Tensor k = random_tensor(shape, seed + 1);

  SequenceParallelAttention plain(*comm), keeping(*comm);
  keeping.keep_gathered_for_backward(true);
  Tensor o, lse, dq, dk, dv, o2, lse2, dq2, dk2, dv2;
  plain.forward(params, q, k, v, o, lse);
  plain.backward(params, q, k, v, o, lse, dout, dq, dk, dv);
  keeping.forward(params, q, k, v, o2, lse2);
  keeping.backward(params, q, k, v, o2, lse2, dout, dq2, dk2, dv2);
  for (const auto& [a, b] : {std::pair{&dq, &dq2}, {&dk, &dk2}, {&dv, &dv2}})
    EXPECT_TRUE(all_close(*a, *b, 0, 0)) << "kept rows give other gradients";
  EXPECT_LT(keeping.last_backward().bytes_received, plain.last_backward().bytes_received);

  // Change k on the last rank only, between forward and backward.
  keeping.forward(params, q, k, v, o2, lse2);
  if (comm->rank() == P - 1)
    for (int64_t i = 0; i < k.size(); ++i) k.data()[i] *= 1.5f;
  keeping.backward(params, q, k, v, o2, lse2, dout, dq2, dk2, dv2);
  plain.backward(params, q, k, v, o2, lse2, dout, dq, dk, dv);  // gathers the changed rows
  for (const auto& [a, b] : {std::pair{&dq, &dq2}, {&dk, &dk2}, {&dv, &dv2}})
    EXPECT_TRUE(all_close(*a, *b, 0, 0)) << "stale kept rows were used";
  const uint64_t check = keep_check_bytes(comm->rank(), P);  // the deciding all-reduce, which plain skips
  EXPECT_EQ(keeping.last_backward().bytes_received, plain.last_backward().bytes_received + check);

  // A backward with no forward kept for these tensors (another k buffer) gathers too.
  const Tensor k_copy = k;
  keeping.forward(params, q, k, v, o2, lse2);
  keeping.backward(params, q, k_copy, v, o2, lse2, dout, dq2, dk2, dv2);
  EXPECT_EQ(keeping.last_backward().bytes_received, plain.last_backward().bytes_received + check);

  // Rows kept under the same buffer but in different forward calls on different ranks (rank 0's buffer a
  // in the first, the others' in the second) are not one gathering: every rank gathers again.
  const Tensor a = random_tensor(shape, seed + 5), b = random_tensor(shape, seed + 6);
  const bool first = comm->rank() == 0;
  keeping.forward(params, q, first ? a : b, v, o2, lse2);
  keeping.forward(params, q, first ? b : a, v, o2, lse2);
  keeping.backward(params, q, a, v, o2, lse2, dout, dq2, dk2, dv2);
  plain.backward(params, q, a, v, o2, lse2, dout, dq, dk, dv);
  for (const auto& [x, y] : {std::pair{&dq, &dq2}, {&dk, &dk2}, {&dv, &dv2}})
    EXPECT_TRUE(all_close(*x, *y, 0, 0)) << "rows of two forward calls were mixed";
  EXPECT_EQ(keeping.last_backward().bytes_received, plain.last_backward().bytes_received + check);
}

// Bytes for a branch spanning g ranks: (g-1)/g * (w/r) rows * H * D * 2 (K and V) * 4 bytes, received
// and sent by every rank (forward); the backward gathers again (unless it keeps the forward's rows) and
// reduce-scatters the same volume back.
// At |score| ~ 1e9 one key dominates each row, and its P must come out exactly 1 on every rank: one
// segment spanning all ranks, each rank's dv summed per column and added up across ranks equals dout's
// column sum (no row's weight lost or doubled), with the rows gathered again or kept from the forward.
TEST(SequenceParallel, BackwardKeepsEveryRowsWeightAtHugeScores) {
  auto comm = world();
  const int P = comm->size();
  const int64_t N = kRowsPerRank * P, D = 16, first = kRowsPerRank * comm->rank();
  AttentionParams params;
  params.schedule = make_schedule({1 << 20}, {1}, false);
  const Shape shape{1, N, 1, D};
  const Tensor q = random_tensor(shape, 91, testing::kHugeScoreInputScale),
               k = random_tensor(shape, 92, testing::kHugeScoreInputScale), v = random_tensor(shape, 93),
               dout = random_tensor(shape, 94);
  for (const bool keep : {false, true}) {
    SCOPED_TRACE(keep ? "kept K / V" : "gathered again");
    SequenceParallelAttention sharded(*comm);
    sharded.keep_gathered_for_backward(keep);
    Tensor o, lse, dq, dk, dv;
    const Tensor q_mine = rows_of(q, first, kRowsPerRank), k_mine = rows_of(k, first, kRowsPerRank),
                 v_mine = rows_of(v, first, kRowsPerRank);
    sharded.forward(params, q_mine, k_mine, v_mine, o, lse);
    sharded.backward(params, q_mine, k_mine, v_mine, o, lse, rows_of(dout, first, kRowsPerRank), dq, dk, dv);
    std::vector<double> sums(static_cast<size_t>(D), 0.0);
    for (int64_t j = 0; j < kRowsPerRank; ++j)
      for (int64_t d = 0; d < D; ++d) sums[static_cast<size_t>(d)] += dv[j * D + d];
    comm->all_reduce(Span<double>(sums));
    for (int64_t d = 0; d < D; ++d) {
      double want = 0, scale = 0;
      for (int64_t i = 0; i < N; ++i) want += dout[i * D + d], scale += std::fabs(dout[i * D + d]);
      EXPECT_NEAR(sums[static_cast<size_t>(d)], want, 1e-5 * scale) << "column " << d;
    }
  }
}

TEST(SequenceParallel, BytesAreExactlyWhatTheAlgorithmNeeds) {
  auto comm = world();
  const int P = comm->size();
  const int64_t L = 64, H = 4, D = 16, r = 4;
  for (int g : {2, 4}) {
    if (P % g != 0) continue;
    AttentionParams params;
    params.schedule = make_schedule({16, g * L}, {1, r}, false);
    const Shape shape{1, L, H, D};
    const Tensor q = random_tensor(shape, 1 + static_cast<uint64_t>(comm->rank())), k = random_tensor(shape, 2),
                 v = random_tensor(shape, 3);
    SequenceParallelAttention sharded(*comm);
    Tensor o, lse, dq, dk, dv;
    sharded.forward(params, q, k, v, o, lse);
    const uint64_t expected = static_cast<uint64_t>((g - 1) * (g * L / r) / g * H * D * 2 * 4);
    EXPECT_EQ(sharded.last_forward().bytes_received, expected) << "g = " << g;
    EXPECT_EQ(sharded.last_forward().bytes_sent, expected) << "g = " << g;
    const uint64_t check = keep_check_bytes(comm->rank(), P);
    sharded.backward(params, q, k, v, o, lse, q, dq, dk, dv);  // nothing kept: gathers again, nothing to decide
    EXPECT_EQ(sharded.last_backward().bytes_received, 2 * expected) << "g = " << g;
    EXPECT_EQ(sharded.last_backward().bytes_sent, 2 * expected) << "g = " << g;
    // Keeping the forward's gathered rows, the backward only reduce-scatters dK / dV.
    sharded.keep_gathered_for_backward(true);
    sharded.forward(params, q, k, v, o, lse);
    sharded.backward(params, q, k, v, o, lse, q, dq, dk, dv);
    EXPECT_EQ(sharded.last_backward().bytes_received, expected + check) << "g = " << g;
    EXPECT_EQ(sharded.last_backward().bytes_sent, expected + check) << "g = " << g;

    // Causal: members m and g - 1 - m pair up, and the later one hands the x last of its n = L / r rows per
    // head to the earlier one, the x that leaves their pairs closest (ties: the larger). Member m's row t
    // sees n m + t + 1 keys. Found here by trying every x.
    params.causal = true;
    sharded.keep_gathered_for_backward(false);
    const int64_t n = L / r;
    const int me = comm->rank() % g, partner = g - 1 - me;
    const auto pairs = [&](int member, int64_t t0, int64_t t1) {
      int64_t sum = 0;
      for (int64_t t = t0; t < t1; ++t) sum += n * member + t + 1;
      return sum;
    };
    int64_t x = 0, closest = -1;
    const int lo = std::min(me, partner), hi = std::max(me, partner);
    for (int64_t y = 0; y <= n && me != partner; ++y) {
      const int64_t apart = std::llabs(pairs(hi, 0, n - y) - (pairs(lo, 0, n) + pairs(hi, n - y, n)));
      if (closest < 0 || apart <= closest) {
        x = y;
        closest = apart;
      }
    }
    if (g == 2) {
      EXPECT_GT(x, 0) << "the later rank of a pair hands rows over";
    }
    const uint64_t rows = static_cast<uint64_t>(x * H) * 4, giver = me > partner;
    sharded.forward(params, q, k, v, o, lse);
    EXPECT_EQ(sharded.last_forward().bytes_sent, expected + rows * (giver ? D : D + 1)) << "g = " << g;
    EXPECT_EQ(sharded.last_forward().bytes_received, expected + rows * (giver ? D + 1 : D)) << "g = " << g;
    sharded.backward(params, q, k, v, o, lse, q, dq, dk, dv);
    EXPECT_EQ(sharded.last_backward().bytes_sent, 2 * expected + rows * (giver ? 2 * D + 2 : D)) << "g = " << g;
    EXPECT_EQ(sharded.last_backward().bytes_received, 2 * expected + rows * (giver ? D : 2 * D + 2)) << "g = " << g;
  }
  // A schedule whose branches all fit in a shard exchanges nothing.
  AttentionParams local;
  local.schedule = make_schedule({16, 32}, {1, 2}, false);
  const Tensor x = random_tensor({1, L, H, D}, 5);
  SequenceParallelAttention sharded(*comm);
  Tensor o, lse;
  sharded.forward(local, x, x, x, o, lse);
  EXPECT_EQ(sharded.last_forward().bytes_received, 0u);
  EXPECT_EQ(sharded.last_forward().collectives, 0u);
}

// With causal masking a spanning segment's later ranks' queries see more keys (rank k of g about 2k + 1
// times rank 0's pairs); the balance moves query rows so that each rank computes about 1 / g of them. The
// ranks' pairs add up to the job's; the results stay one process's (run_case's causal cases, and above).
TEST(SequenceParallel, CausalWorkIsBalancedAcrossRanks) {
  auto comm = world();
  const int P = comm->size();
  const int64_t L = 600, H = 2, D = 8, N = L * P;
  AttentionParams params;
  params.schedule = make_schedule({100, N, N}, {1, 1, 3}, false);
  params.causal = true;
  const Shape shape{1, L, H, D};
  const Tensor q = random_tensor(shape, 41 + static_cast<uint64_t>(comm->rank())), k = random_tensor(shape, 42),
               v = random_tensor(shape, 43);
  SequenceParallelAttention sharded(*comm);
  Tensor o, lse, dq, dk, dv;
  sharded.forward(params, q, k, v, o, lse);
  sharded.backward(params, q, k, v, o, lse, q, dq, dk, dv);
  const double mine = sharded.last_forward().pairs;
  EXPECT_EQ(sharded.last_backward().pairs, mine);
  std::vector<double> all(static_cast<size_t>(P));
  comm->all_gather(Span<const double>(&mine, 1), Span<double>(all));
  double sum = 0;
  for (double x : all) sum += x;
  EXPECT_DOUBLE_EQ(sum, count_pairs(params.schedule, N, H, true, HeadOffsets::paper));
  const double most = *std::max_element(all.begin(), all.end()), fewest = *std::min_element(all.begin(), all.end());
  EXPECT_LT(most / fewest, 1.01) << "rank 0: " << all.front() << " pairs, rank " << P - 1 << ": " << all.back();
  if (P > 1) {  // the rows' owners alone: the last rank several times the first
    EXPECT_GT(count_pairs_in_rows(params.schedule, N, H, true, HeadOffsets::paper, N - L, N),
              2 * count_pairs_in_rows(params.schedule, N, H, true, HeadOffsets::paper, 0, L));
  }
}

TEST(SequenceParallel, UnshardableInputIsRefusedNamingTheSegment) {
  auto comm = world();
  EXPECT_THROW(check_shardable(make_schedule({8}, {1}, false), 10, 4), UsageError);  // 10 % 4
  try {
    check_shardable(make_schedule({8, 48}, {1, 2}, false), 128, 4);  // L = 32: 48 neither divides nor is a multiple
    FAIL() << "expected UsageError";
  } catch (const UsageError& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("48"), std::string::npos) << message;
    EXPECT_NE(message.find("32"), std::string::npos) << message;
  }
  EXPECT_NO_THROW(check_shardable(make_schedule({8, 64, 1 << 20}, {1, 2, 4}, false), 128, 4));
  // One rank has no shard edges: segments of 18 over N = 24 ([0,18), [18,24)) are the spec's forward rule.
  EXPECT_NO_THROW(check_shardable(make_schedule({18}, {1}, false), 24, 1));
  EXPECT_THROW(check_shardable(make_schedule({18}, {1}, false), 24, 2), UsageError);  // L = 12
  // The GPU path on several ranks also wants spanning segments whole: 18 over 24 at P = 4 (L = 6) spans 3
  // ranks and leaves a shorter last segment; a local one (6) or a whole one (12) is fine.
  const auto whole = SpanningSegments::whole;
  EXPECT_NO_THROW(check_shardable(make_schedule({6, 18}, {1, 2}, false), 24, 4));
  EXPECT_THROW(check_shardable(make_schedule({6, 18}, {1, 2}, false), 24, 4, whole), UsageError);
  EXPECT_NO_THROW(check_shardable(make_schedule({6, 12, 24}, {1, 2, 4}, false), 24, 4, whole));
  EXPECT_NO_THROW(check_shardable(make_schedule({18}, {1}, false), 24, 1, whole));
}

TEST(SequenceParallel, ShardErrorsNameTheCallersOption) {
  const ScheduleOptionNames train{"model.segment_lengths", "model.dilation_rates", ""};
  for (const auto spanning : {SpanningSegments::may_end_short, SpanningSegments::whole}) {
    const Schedule schedule = make_schedule({8, 48}, {1, 2}, false);
    try {
      check_shardable(schedule, 128, 4, spanning, train);  // L = 32: 48 neither divides nor is a multiple
      FAIL() << "expected UsageError";
    } catch (const UsageError& e) {
      EXPECT_EQ(std::string(e.what()).rfind("model.segment_lengths: segment length 48", 0), 0u) << e.what();
    }
  }
  try {
    check_shardable(make_schedule({6, 18}, {1, 2}, false), 24, 4, SpanningSegments::whole, train);
    FAIL() << "expected UsageError";
  } catch (const UsageError& e) {
    EXPECT_EQ(std::string(e.what()).rfind("model.segment_lengths: segment length 18 spans ranks", 0), 0u) << e.what();
  }
}

}  // namespace
}  // namespace longctx
