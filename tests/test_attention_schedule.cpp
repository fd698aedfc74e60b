// Schedule validation, head offsets, selection arithmetic and pair counts.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include "attention/schedule.hpp"
#include "runtime/core/error.hpp"

namespace longctx {
namespace {

// Runs make_schedule and expects a UsageError whose message contains every string in `needles`.
::testing::AssertionResult rejects(const std::vector<int64_t>& w, const std::vector<int64_t>& r, bool allow_uncovered,
                                   const std::vector<std::string>& needles, const ScheduleOptionNames& names = {}) {
  try {
    make_schedule(w, r, allow_uncovered, names);
  } catch (const UsageError& e) {
    const std::string message = e.what();
    for (const auto& needle : needles)
      if (message.find(needle) == std::string::npos)
        return ::testing::AssertionFailure() << "message lacks '" << needle << "': " << message;
    return ::testing::AssertionSuccess() << message;
  }
  return ::testing::AssertionFailure() << "accepted";
}

TEST(Schedule, RejectsBadLists) {
  EXPECT_TRUE(rejects({}, {}, false, {"--segment-lengths", "empty"}));
  EXPECT_TRUE(rejects({2048}, {}, false, {"--dilation-rates", "empty"}));
  EXPECT_TRUE(rejects({2048, 4096}, {1}, false, {"--segment-lengths", "--dilation-rates", "2048,4096", "different"}));
  EXPECT_TRUE(rejects({2048, 0}, {1, 2}, false, {"--segment-lengths", "0"}));
  EXPECT_TRUE(rejects({2048, -5}, {1, 2}, false, {"--segment-lengths", "-5"}));
  EXPECT_TRUE(rejects({2048, 4096}, {1, 0}, false, {"--dilation-rates", "0"}));
  EXPECT_TRUE(rejects({2048, 4096}, {-3, 1}, false, {"--dilation-rates", "-3"}));
  EXPECT_TRUE(rejects({2048, 8}, {1, 16}, false, {"--dilation-rates", "16", "8"}));
  // Near 2^63, rows + r - 1 wrapped and the branch silently selected nothing.
  EXPECT_TRUE(rejects({8, INT64_MAX}, {1, INT64_MAX}, false, {"--segment-lengths", "9223372036854775807", "2^62"}));
  EXPECT_TRUE(rejects({8, (int64_t{1} << 62) + 1}, {1, 2}, false, {"--segment-lengths", "entry 2", "2^62"}));
  EXPECT_NO_THROW(make_schedule({8, int64_t{1} << 62}, {1, int64_t{1} << 62}, false));
  EXPECT_TRUE(rejects({2048, 4096}, {2, 4}, false, {"--dilation-rates", "2,4", "--allow-uncovered"}));
}

// train's keys: every message names them, and none names a flag train does not have.
TEST(Schedule, ErrorsNameTheCallersOptions) {
  const ScheduleOptionNames train{"model.segment_lengths", "model.dilation_rates", ""};
  const std::vector<std::pair<std::vector<int64_t>, std::vector<int64_t>>> bad = {
      {{}, {}}, {{2048}, {}}, {{2048, 4096}, {1}}, {{0}, {1}}, {{8}, {0}}, {{8}, {16}}, {{2048, 4096}, {2, 4}}};
  for (const auto& [w, r] : bad) {
    try {
      make_schedule(w, r, false, train);
      ADD_FAILURE() << "accepted";
    } catch (const UsageError& e) {
      const std::string message = e.what();
      EXPECT_EQ(message.rfind("model.", 0), 0u) << message;
      EXPECT_EQ(message.find("--"), std::string::npos) << message;
    }
  }
  EXPECT_TRUE(rejects({2048, 8}, {1, 16}, false, {"model.dilation_rates: value 16", "of model.segment_lengths"}, train));
}

TEST(Schedule, AcceptsValidLists) {
  const Schedule s = make_schedule({2048, 4096, 8192}, {1, 2, 4}, false);
  ASSERT_EQ(s.branches.size(), 3u);
  EXPECT_EQ(s.branches[2].segment_length, 8192);
  EXPECT_EQ(s.branches[2].dilation, 4);
  EXPECT_EQ(make_schedule({16}, {4}, true).branches.size(), 1u);  // uncovered, but asked for
  EXPECT_EQ(make_schedule({4}, {4}, true).branches[0].dilation, 4);  // r == w is allowed
}

TEST(Schedule, ParsesHeadOffsets) {
  EXPECT_EQ(parse_head_offsets("paper"), HeadOffsets::paper);
  EXPECT_EQ(parse_head_offsets("grouped"), HeadOffsets::grouped);
  try {
    parse_head_offsets("torchscale");
    FAIL() << "accepted";
  } catch (const UsageError& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("--head-offsets"), std::string::npos) << message;
    EXPECT_NE(message.find("paper, grouped"), std::string::npos) << message;
  }
}

TEST(Schedule, HeadOffsets) {
  // paper: h mod r
  EXPECT_EQ(head_offset(0, 4, 8, HeadOffsets::paper), 0);
  EXPECT_EQ(head_offset(5, 4, 8, HeadOffsets::paper), 1);
  EXPECT_EQ(head_offset(2, 4, 3, HeadOffsets::paper), 2);
  // grouped: floor(h / ceil(H / r))
  EXPECT_EQ(head_offset(5, 4, 8, HeadOffsets::grouped), 2);  // ceil(8/4) = 2
  EXPECT_EQ(head_offset(4, 2, 5, HeadOffsets::grouped), 1);  // ceil(5/2) = 3
  EXPECT_EQ(head_offset(2, 2, 5, HeadOffsets::grouped), 0);
  EXPECT_EQ(head_offset(2, 4, 3, HeadOffsets::grouped), 2);  // H < r: group of 1
  for (int64_t heads = 1; heads <= 9; ++heads)
    for (int64_t r = 1; r <= 6; ++r)
      for (int64_t h = 0; h < heads; ++h)
        for (auto mode : {HeadOffsets::paper, HeadOffsets::grouped}) {
          const int64_t o = head_offset(h, r, heads, mode);
          EXPECT_TRUE(o >= 0 && o < r) << "h " << h << " r " << r << " H " << heads;
        }
}

TEST(Schedule, SegmentsAndSelection) {
  const Branch b{8, 3};
  EXPECT_EQ(effective_segment_length(b, 20), 8);
  EXPECT_EQ(effective_segment_length(b, 5), 5);  // w > N
  EXPECT_EQ(segment_count(b, 20), 3);
  EXPECT_EQ(segment_begin(b, 20, 2), 16);
  EXPECT_EQ(segment_rows(b, 20, 2), 4);  // partial last segment
  EXPECT_EQ(segment_rows(b, 20, 1), 8);
  EXPECT_EQ(segment_count(b, 5), 1);
  EXPECT_EQ(segment_rows(b, 5, 0), 5);
  EXPECT_EQ(selected_rows(8, 3, 0), 3);  // 0 3 6
  EXPECT_EQ(selected_rows(8, 3, 2), 2);  // 2 5
  EXPECT_EQ(selected_rows(4, 3, 1), 1);  // 1
  EXPECT_EQ(selected_rows(2, 3, 2), 0);  // offset beyond a short segment
}

// Pair count by enumeration, straight from the spec; only queries p in [first, last) when given.
int64_t enumerate_pairs(const Schedule& s, int64_t N, int64_t H, bool causal, HeadOffsets mode, int64_t first = 0,
                        int64_t last = -1) {
  if (last < 0) last = N;
  int64_t pairs = 0;
  for (const Branch& b : s.branches) {
    const int64_t w = std::min(b.segment_length, N);
    for (int64_t h = 0; h < H; ++h)
      for (int64_t seg = 0; seg < N; seg += w)
        for (int64_t p = std::max(seg, first); p < std::min({seg + w, N, last}); ++p)
          for (int64_t j = seg; j < std::min(seg + w, N); ++j) {
            const int64_t o = head_offset(h, b.dilation, H, mode);
            if ((p - seg) % b.dilation == o && (j - seg) % b.dilation == o && (!causal || j <= p)) ++pairs;
          }
  }
  return pairs;
}

TEST(Schedule, CountPairsMatchesEnumeration) {
  const Schedule s = make_schedule({6, 16, 40}, {1, 3, 4}, false);
  for (int64_t N : {1, 5, 17, 37, 64})
    for (int64_t H : {1, 3, 5})
      for (bool causal : {false, true})
        for (auto mode : {HeadOffsets::paper, HeadOffsets::grouped})
          EXPECT_EQ(count_pairs(s, N, H, causal, mode), static_cast<double>(enumerate_pairs(s, N, H, causal, mode)))
              << "N " << N << " H " << H << " causal " << causal;
}

// One rank's share: causal gives later rows more keys, so shares differ; they add up to the whole.
TEST(Schedule, CountPairsInRowsMatchesEnumeration) {
  const Schedule s = make_schedule({6, 16, 40}, {1, 3, 4}, false);
  for (int64_t N : {5, 17, 48})
    for (int64_t H : {1, 3})
      for (bool causal : {false, true})
        for (auto mode : {HeadOffsets::paper, HeadOffsets::grouped})
          for (int64_t P : {1, 2, 3}) {
            double total = 0;
            for (int64_t rank = 0; rank < P; ++rank) {
              const int64_t first = N * rank / P, last = N * (rank + 1) / P;
              const double mine = count_pairs_in_rows(s, N, H, causal, mode, first, last);
              EXPECT_EQ(mine, static_cast<double>(enumerate_pairs(s, N, H, causal, mode, first, last)))
                  << "N " << N << " H " << H << " causal " << causal << " rows " << first << ".." << last;
              total += mine;
            }
            EXPECT_EQ(total, count_pairs(s, N, H, causal, mode));
          }
}

TEST(Schedule, BenchmarkPairsAndFlops) {
  // N = 65536, H = 4, w/r = 2048 for every branch: 3 branches x 4 heads x (N / w) segments x 2048^2 pairs.
  const Schedule s = make_schedule({2048, 4096, 8192}, {1, 2, 4}, false);
  const double pairs = count_pairs(s, 65536, 4, false, HeadOffsets::paper);
  EXPECT_EQ(pairs, 4.0 * (32 + 16 + 8) * 2048 * 2048);
  EXPECT_EQ(flops_forward(pairs, 64), 4 * 64 * pairs);
  EXPECT_EQ(flops_backward(pairs, 64), 10 * 64 * pairs);
  // A billion tokens: 2^30 / w causal segments of 2048 selected rows per branch and head.
  EXPECT_EQ(count_pairs(s, int64_t{1} << 30, 4, true, HeadOffsets::paper),
            4.0 * ((1 << 19) + (1 << 18) + (1 << 17)) * (2048.0 * 2049 / 2));
  // Past int64: one dense branch over N = 2^31 with 8 heads is 8 * 2^62 = 2^65 pairs (before: int64 wrapped
  // to 0, and the FLOPs wrapped at 4 D pairs > 2^63); causal, 8 * 2^31 (2^31 + 1) / 2.
  const Schedule dense = make_schedule({int64_t{1} << 31}, {1}, false);
  const double n = std::ldexp(1.0, 31);
  EXPECT_EQ(count_pairs(dense, int64_t{1} << 31, 8, false, HeadOffsets::paper), std::ldexp(1.0, 65));
  EXPECT_EQ(count_pairs(dense, int64_t{1} << 31, 8, true, HeadOffsets::paper), 8 * n * (n + 1) / 2);
  EXPECT_EQ(flops_forward(std::ldexp(1.0, 65), 128), std::ldexp(1.0, 74));
  EXPECT_EQ(flops_backward(std::ldexp(1.0, 65), 128), 10 * std::ldexp(1.0, 72));
  // Half of the causal rows' pairs: the last rank of 2 has 3/4 of them (rows N/2..N see N/2..N keys).
  EXPECT_EQ(count_pairs_in_rows(dense, int64_t{1} << 31, 8, true, HeadOffsets::paper, int64_t{1} << 30, int64_t{1} << 31),
            8 * (n * (n + 1) / 2 - n / 2 * (n / 2 + 1) / 2));
}

TEST(Schedule, CoverageGapsCountTheResiduesASegmentHolds) {
  const Schedule s = make_schedule({2048, 4096}, {1, 8}, false);
  // Branch 2 (r = 8) with 4 heads, paper offsets 0..3: 4 of 8 residues.
  auto gaps = coverage_gaps(s, 4, HeadOffsets::paper, 8192);
  ASSERT_EQ(gaps.size(), 1u);
  EXPECT_EQ(gaps[0].branch, 1u);
  EXPECT_EQ(gaps[0].reached, 4);
  EXPECT_EQ(gaps[0].residues, 8);
  EXPECT_TRUE(coverage_gaps(s, 8, HeadOffsets::paper, 8192).empty());
  // Grouped offsets with 6 heads and r = 8: h / ceil(6 / 8) = 0..5, 6 of 8.
  gaps = coverage_gaps(s, 6, HeadOffsets::grouped, 8192);
  ASSERT_EQ(gaps.size(), 1u);
  EXPECT_EQ(gaps[0].reached, 6);
  // N = 3: segments of 3 rows hold residues 0..2, which 4 heads reach (before: "4 of its 8").
  EXPECT_TRUE(coverage_gaps(s, 4, HeadOffsets::paper, 3).empty());
  // N = 6 with 4 heads: 4 of the 6 residues there; offsets past w' are not counted as reached.
  gaps = coverage_gaps(s, 4, HeadOffsets::paper, 6);
  ASSERT_EQ(gaps.size(), 1u);
  EXPECT_EQ(gaps[0].reached, 4);
  EXPECT_EQ(gaps[0].residues, 6);
  const Schedule wide = make_schedule({16, 64}, {1, 50}, false);
  gaps = coverage_gaps(wide, 40, HeadOffsets::paper, 37);  // offsets 0..39, 37 residues: all reached
  EXPECT_TRUE(gaps.empty());
  gaps = coverage_gaps(wide, 3, HeadOffsets::paper, 37);
  ASSERT_EQ(gaps.size(), 1u);
  EXPECT_EQ(gaps[0].reached, 3);
  EXPECT_EQ(gaps[0].residues, 37);
}

}  // namespace
}  // namespace longctx
