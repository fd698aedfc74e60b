// The tensor-core kernels' row arithmetic (attention/cuda/flash_layout.hpp, compiled here for the host)
// against brute-force enumeration of the spec's selection: which rows a block's queries and keys are, the
// sparse index of each (for causal masking), and where the distributed driver packs and gathers a
// spanning branch's rows. Runs without a GPU: the index math of the GPU path is checked in every build.
#include <gtest/gtest.h>

#include <algorithm>
#include <set>
#include <tuple>
#include <vector>

#include "attention/cuda/flash_layout.hpp"

namespace longctx::cuda {
namespace {

// Positions p in [begin, begin + rows) with (p - begin) mod r == o, in order.
std::vector<int64_t> brute_selection(int64_t begin, int64_t rows, int64_t r, int64_t o) {
  std::vector<int64_t> out;
  for (int64_t p = begin; p < begin + rows; ++p)
    if ((p - begin) % r == o) out.push_back(p);
  return out;
}

TEST(FlashLayout, SelectedCountsRows) {
  for (int64_t n = 0; n < 40; ++n)
    for (int64_t r = 1; r < 9; ++r)
      for (int64_t o = 0; o < r; ++o)
        EXPECT_EQ(selected(n, r, o), static_cast<int64_t>(brute_selection(0, n, r, o).size())) << n << " " << r << " " << o;
}

TEST(FlashLayout, LocalProblemsAreTheSelectedRows) {
  for (HeadOffsets offsets : {HeadOffsets::paper, HeadOffsets::grouped})
    for (auto [N, w, r, H, B] : std::vector<std::tuple<int64_t, int64_t, int64_t, int, int64_t>>{
             {37, 8, 1, 3, 1}, {37, 16, 2, 3, 2}, {200, 128, 3, 5, 1}, {301, 300, 5, 2, 2}, {50, 64, 4, 6, 1}}) {
      const int64_t segment = w < N ? w : N;
      const int64_t segments = (N + segment - 1) / segment;
      for (int64_t b = 0; b < B; ++b)
        for (int64_t s = 0; s < segments; ++s)
          for (int h = 0; h < H; ++h) {
            SCOPED_TRACE(::testing::Message() << "N=" << N << " w=" << w << " r=" << r << " H=" << H << " b=" << b
                                              << " s=" << s << " h=" << h);
            const int64_t begin = s * segment, rows = std::min(segment, N - begin);
            const std::vector<int64_t> want = brute_selection(begin, rows, r, head_offset(h, r, H, offsets));
            FlashProblem p;
            const bool any = local_problem(b, s, h, N, segment, r, H, offsets, p);
            ASSERT_EQ(any, !want.empty());
            if (!any) continue;
            ASSERT_EQ(p.n_q, static_cast<int>(want.size()));
            ASSERT_EQ(p.n_k, p.n_q);
            EXPECT_EQ(p.q_base, 0);
            for (int t = 0; t < p.n_q; ++t) {
              EXPECT_EQ(p.q_row(t), (b * N + want[static_cast<size_t>(t)]) * H + h);
              EXPECT_EQ(p.k_row(t), p.q_row(t));
            }
          }
    }
}

// The fused launches' counts (flash_device.cuh, BranchOrder): the rows a branch selects in a range of
// positions, against the segments' enumeration; and the rows of an arithmetic run that fall in a range.
TEST(FlashLayout, SelectedBetweenCountsTheSegmentsSelection) {
  for (auto [N, w, r] : std::vector<std::tuple<int64_t, int64_t, int64_t>>{
           {37, 8, 1}, {37, 16, 2}, {200, 64, 3}, {301, 300, 5}, {50, 64, 4}, {520, 7, 3}, {600, 600, 300}}) {
    const int64_t segment = w < N ? w : N;
    for (int64_t o = 0; o < r; ++o) {
      std::vector<int64_t> all;
      for (int64_t begin = 0; begin < N; begin += segment)
        for (int64_t p : brute_selection(begin, std::min(segment, N - begin), r, o)) all.push_back(p);
      for (int64_t lo = 0; lo <= N; lo += 13)
        for (int64_t hi = lo; hi <= N + 5; hi += 29) {
          const int64_t want = std::count_if(all.begin(), all.end(), [&](int64_t p) { return p >= lo && p < hi; });
          EXPECT_EQ(selected_between(lo, hi, N, segment, r, o), want)
              << "N=" << N << " w=" << w << " r=" << r << " o=" << o << " [" << lo << ", " << hi << ")";
        }
    }
  }
}

TEST(FlashLayout, RowsBetweenCountsARun) {
  for (int64_t first : {0, 5, 300})
    for (int64_t r : {1, 2, 7, 256, 300})
      for (int64_t count : {1, 3, 128})
        for (int64_t lo = 0; lo < first + count * r + 10; lo += 11)
          for (int64_t hi = lo; hi < first + count * r + 300; hi += 97) {
            int64_t want = 0;
            for (int64_t t = 0; t < count; ++t) want += first + t * r >= lo && first + t * r < hi;
            EXPECT_EQ(rows_between(first, r, count, lo, hi), want)
                << first << " " << r << " " << count << " [" << lo << ", " << hi << ")";
          }
}

// At the most rows per head the kernels accept (kMaxSelectedRows, local and spanning), their int loop bounds
// stay in range: the last query tile's key end is the key count (at 2^31 - 1 it wrapped negative), and a
// bound rounded up to whole tiles, as the kernels round it in int, still fits.
TEST(FlashLayout, LoopBoundsFitAtTheRowLimit) {
  const auto check = [](const FlashProblem& p) {
    for (int tile : {kFwdBlockQ, kBwdBlockQ, kMaxTileRows})
      for (bool causal : {false, true}) {
        SCOPED_TRACE(::testing::Message() << "n_q=" << p.n_q << " n_k=" << p.n_k << " q_base=" << p.q_base
                                          << " tile=" << tile << " causal=" << causal);
        const int t0 = (p.n_q - 1) / tile * tile;  // the last query tile
        const int key_end = forward_key_end(p, t0, tile, causal);
        EXPECT_EQ(key_end, p.n_k);
        EXPECT_LE(static_cast<int64_t>(key_end) + kMaxTileRows - 1, INT32_MAX);
        EXPECT_LE(static_cast<int64_t>(p.n_q) + kMaxTileRows - 1, INT32_MAX);
      }
  };
  FlashProblem local;
  ASSERT_TRUE(local_problem(0, 0, 0, kMaxSelectedRows, kMaxSelectedRows, 1, 1, HeadOffsets::paper, local));
  ASSERT_EQ(local.n_q, kMaxSelectedRows);
  check(local);
  // Two ranks share a segment of 2 L rows (r = 2 selects one row in two, up to the limit); the second
  // rank's queries start at key L.
  const int64_t L = kMaxSelectedRows;
  FlashProblem spanning;
  ASSERT_TRUE(spanning_problem(0, 0, L, 1, 2, 2, 1, HeadOffsets::paper, spanning));
  ASSERT_EQ(spanning.n_k, kMaxSelectedRows);
  ASSERT_GT(spanning.q_base, 0);
  check(spanning);
}

// One segment of g L rows shared by g ranks: member m's queries are its own selected rows (local row
// indexes), their sparse indexes q_base + t match the segment's enumeration, and the keys are the
// segment's selected rows in position order at the tiles offset the driver writes them to.
TEST(FlashLayout, SpanningProblemsMatchTheSegmentsSelection) {
  for (HeadOffsets offsets : {HeadOffsets::paper, HeadOffsets::grouped})
    for (auto [L, r, g, H, B] : std::vector<std::tuple<int64_t, int64_t, int, int, int64_t>>{
             {24, 2, 2, 4, 1}, {24, 5, 2, 3, 2}, {24, 3, 4, 5, 1}, {64, 4, 4, 4, 1}, {7, 9, 3, 2, 2}, {24, 1, 4, 3, 1}}) {
      const int64_t D = 16;
      for (int m = 0; m < g; ++m) {
        const SpanLayout lay(B, H, D, L, r, g, m, offsets);
        std::set<int64_t> tile_rows;  // every (b, h, key) lands on its own tile row
        for (int64_t b = 0; b < B; ++b)
          for (int h = 0; h < H; ++h) {
            SCOPED_TRACE(::testing::Message() << "L=" << L << " r=" << r << " g=" << g << " H=" << H << " m=" << m
                                              << " b=" << b << " h=" << h);
            const std::vector<int64_t> keys = brute_selection(0, g * L, r, head_offset(h, r, H, offsets));
            FlashProblem p;
            const bool any = spanning_problem(b, h, L, m, g, r, H, offsets, p);
            ASSERT_EQ(any, !keys.empty());
            if (!any) continue;
            ASSERT_EQ(p.n_k, static_cast<int>(keys.size()));
            EXPECT_EQ(lay.keys[static_cast<size_t>(h)], p.n_k);
            // Queries: the keys that fall in [m L, (m + 1) L), as local rows.
            std::vector<int64_t> mine;
            int64_t first_index = -1;
            for (size_t i = 0; i < keys.size(); ++i)
              if (keys[i] >= m * L && keys[i] < (m + 1) * L) {
                if (first_index < 0) first_index = static_cast<int64_t>(i);
                mine.push_back(keys[i] - m * L);
              }
            ASSERT_EQ(p.n_q, static_cast<int>(mine.size()));
            EXPECT_EQ(lay.rows_of(m, h), p.n_q);
            if (!mine.empty()) {
              EXPECT_EQ(p.q_base, first_index);
              EXPECT_EQ(lay.first_row(h), mine[0]);
            }
            for (int t = 0; t < p.n_q; ++t) EXPECT_EQ(p.q_row(t), (b * L + mine[static_cast<size_t>(t)]) * H + h);
            // Keys: contiguous rows from the (b, h) tile, where member mm's rows start at its tile offset.
            for (int t = 0; t < p.n_k; ++t) {
              EXPECT_EQ(p.k_row(t), lay.tile_offset(b, h) / D + t);
              tile_rows.insert(p.k_row(t));
            }
            int64_t before = 0;
            for (int mm = 0; mm < g; ++mm) {
              EXPECT_EQ(lay.tile_offset(mm, b, h), lay.tile_offset(b, h) + before * D);
              before += lay.rows_of(mm, h);
            }
            EXPECT_EQ(before, p.n_k);
          }
        EXPECT_EQ(static_cast<int64_t>(tile_rows.size()), B * lay.keys_all());
        // Packed blocks: (b, h) pieces of each member's half-block tile it without gaps or overlaps.
        for (int mm = 0; mm < g; ++mm) {
          int64_t next = 0;
          for (int64_t b = 0; b < B; ++b)
            for (int64_t h = 0; h < H; ++h) {
              EXPECT_EQ(lay.block_offset(mm, b, h), next);
              next += lay.rows_of(mm, h) * D;
            }
          EXPECT_EQ(2 * next, lay.block_elements(mm));
        }
      }
    }
}

}  // namespace
}  // namespace longctx::cuda
