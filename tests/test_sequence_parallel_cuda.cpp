// The distributed GPU path equals one GPU: every rank builds the GLOBAL inputs, runs the single-GPU bf16
// kernels on them for the expected values, runs CudaSequenceParallel on its own rows through the staged
// communicator (MPI via pinned host memory: any number of ranks may share one GPU), and compares its
// rows. The same cases as the CPU sequence-parallel test (local, 2-rank and all-rank spanning branches,
// uneven phases r = 5, B = 2, both offset modes, causal and not). Skips without a GPU.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <memory>

#include "attention/cuda/cuda_attention.hpp"
#include "attention/cuda/sequence_parallel_cuda.hpp"
#include "comm/device_comm.hpp"
#include "comm/mpi_communicator.hpp"
#include "comm/staged_communicator.hpp"
#include "test_util.hpp"

namespace longctx {
namespace {

using longctx::testing::random_tensor;
using longctx::testing::relative_error;
using longctx::testing::rows_of;

struct Case {
  const char* name;
  std::vector<int64_t> w, r;  // -k means k L
  int64_t batch, heads, head_dim;
  bool causal;
  HeadOffsets offsets;
  int64_t rows_per_rank = 24;  // L
};

class CudaSequenceParallelTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device visible";
    world = comm::make_mpi_world(120.0);
    world->set_timeout_seconds(60.0);
    comm::select_device(world->rank());
    staged = std::make_unique<comm::StagedCommunicator>(*world, comm::make_cuda_copier());
  }
  std::unique_ptr<comm::Communicator> world;
  std::unique_ptr<comm::Communicator> staged;
};

TEST_F(CudaSequenceParallelTest, StagedRanksEqualOneGpu) {
  const std::vector<Case> cases{
      {"local+2ranks+all, paper", {6, -2, -4}, {1, 2, 4}, 1, 4, 16, false, HeadOffsets::paper},
      {"local+2ranks+all, causal", {6, -2, -4}, {1, 2, 4}, 1, 4, 16, true, HeadOffsets::paper},
      {"uneven phases r=5, H=5, grouped, causal", {12, 24, -4}, {1, 5, 3}, 1, 5, 8, true, HeadOffsets::grouped},
      {"uneven phases r=5, B=2, not causal, D=12", {8, -2}, {1, 5}, 2, 3, 12, false, HeadOffsets::paper},
      {"only spanning branches, D=64", {-2, -4}, {1, 3}, 1, 3, 64, false, HeadOffsets::grouped},
      {"dilated spanning branch first (o / lse filled, every launch merges)", {-2, 6}, {2, 1}, 1, 4, 16, true,
       HeadOffsets::paper},
      // Rank 1's queries start at sparse index 190 = 62 mod 64 (a partially masked tile before the diagonal).
      {"q_base = 62 mod 64, causal, D=32", {-4}, {1}, 1, 2, 32, true, HeadOffsets::paper, 190},
  };
  const int P = world->size();
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    const int64_t kRowsPerRank = c.rows_per_rank;
    const int64_t N = kRowsPerRank * P, first = kRowsPerRank * world->rank();
    std::vector<int64_t> w;
    for (int64_t x : c.w) w.push_back(x < 0 ? -x * kRowsPerRank : x);
    AttentionParams params;
    params.schedule = make_schedule(w, c.r, false);
    params.causal = c.causal;
    params.offsets = c.offsets;
    const Shape shape{c.batch, N, c.heads, c.head_dim};
    const Tensor q = random_tensor(shape, 11, 1.5f), k = random_tensor(shape, 12, 1.5f), v = random_tensor(shape, 13),
                 dout = random_tensor(shape, 14);
    CudaAttention one(Dtype::bf16);
    Tensor o, lse, dq, dk, dv;
    one.forward(params, q, k, v, o, lse);
    one.backward(params, q, k, v, o, lse, dout, dq, dk, dv);

    CudaSequenceParallel sharded(*staged, Dtype::bf16);
    Tensor o_mine, lse_mine, dq_mine, dk_mine, dv_mine;
    sharded.forward(params, rows_of(q, first, kRowsPerRank), rows_of(k, first, kRowsPerRank),
                    rows_of(v, first, kRowsPerRank), o_mine, lse_mine);
    // Same keys in the same order per row: only the placement of rows in tiles differs.
    EXPECT_LE(relative_error(o_mine, rows_of(o, first, kRowsPerRank)), 1e-5) << "o";
    EXPECT_LE(relative_error(lse_mine, rows_of(lse, first, kRowsPerRank)), 1e-6) << "lse";
    sharded.backward(params, rows_of(q, first, kRowsPerRank), rows_of(k, first, kRowsPerRank),
                     rows_of(v, first, kRowsPerRank), o_mine, lse_mine, rows_of(dout, first, kRowsPerRank), dq_mine,
                     dk_mine, dv_mine);
    // dq by atomics and dK / dV summed over ranks: float32 sums in another order.
    EXPECT_LE(relative_error(dq_mine, rows_of(dq, first, kRowsPerRank)), 1e-4) << "dq";
    EXPECT_LE(relative_error(dk_mine, rows_of(dk, first, kRowsPerRank)), 1e-4) << "dk";
    EXPECT_LE(relative_error(dv_mine, rows_of(dv, first, kRowsPerRank)), 1e-4) << "dv";
  }
}

// bf16 K / V rows out (2 bytes), fp32 dK / dV back (4 bytes): (g-1)/g of the group's (g L / r) rows x H x D
// x 2 (K and V), received and sent by every rank.
TEST_F(CudaSequenceParallelTest, BytesAreTheSparseRowsOnly) {
  const int P = world->size();
  const int64_t L = 64, H = 4, D = 16, r = 4;
  for (int g : {2, 4}) {
    if (P % g != 0) continue;
    AttentionParams params;
    params.schedule = make_schedule({16, g * L}, {1, r}, false);
    const Shape shape{1, L, H, D};
    const Tensor q = random_tensor(shape, 1 + static_cast<uint64_t>(world->rank())), k = random_tensor(shape, 2),
                 v = random_tensor(shape, 3);
    CudaSequenceParallel sharded(*staged, Dtype::bf16);
    Tensor o, lse, dq, dk, dv;
    sharded.forward(params, q, k, v, o, lse);
    const uint64_t rows = static_cast<uint64_t>((g - 1) * (g * L / r) / g * H * D * 2);
    EXPECT_EQ(sharded.last_forward().bytes_received, rows * 2) << "g = " << g;
    EXPECT_EQ(sharded.last_forward().bytes_sent, rows * 2) << "g = " << g;
    sharded.backward(params, q, k, v, o, lse, q, dq, dk, dv);
    EXPECT_EQ(sharded.last_backward().bytes_received, rows * 2 + rows * 4) << "g = " << g;
    EXPECT_EQ(sharded.last_backward().bytes_sent, rows * 2 + rows * 4) << "g = " << g;
  }
}

}  // namespace
}  // namespace longctx
