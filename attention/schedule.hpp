// The dilated-attention schedule: branches (segment length w, dilation r), their validation, and the
// per-branch selection arithmetic of ../shared/spec/dilated-attention.md ("Forward", "Counting work").
//
// Branch i cuts [0, N) into segments [s, s + w') with w' = min(w, N), s = 0, w', 2w', ...; the last
// segment may be shorter. Head h selects, in each segment, the rows p with (p - s) mod r == o(h, r).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#if defined(__CUDACC__)
#define LONGCTX_HOST_DEVICE __host__ __device__
#else
#define LONGCTX_HOST_DEVICE
#endif

namespace longctx {

struct Branch {
  int64_t segment_length;  // w
  int64_t dilation;        // r
};

enum class HeadOffsets {
  paper,    // o = h mod r
  grouped,  // o = floor(h / ceil(H / r)), torchscale's layout
};

// "paper" or "grouped"; UsageError naming --head-offsets and the allowed values otherwise.
HeadOffsets parse_head_offsets(const std::string& text);
std::string to_string(HeadOffsets offsets);

struct Schedule {
  std::vector<Branch> branches;
};

// What the schedule's options are called where a schedule error reaches the user: attend's and bench's
// flags by default; train passes its model.* keys.
struct ScheduleOptionNames {
  std::string segment_lengths = "--segment-lengths";
  std::string dilation_rates = "--dilation-rates";
  std::string allow_uncovered = "--allow-uncovered";  // empty: the command has no such option
  std::string seq_len = "sequence length ";             // before N in check_shardable's messages
};

// The option's key as the config phase knows it, from its name in messages ("--segment-lengths" ->
// "segment-lengths", "--seq-len=" -> "seq-len"), so that an error about its value says where the value came
// from (a config file, an environment variable). A name that is no option ("its length ") finds no source.
std::string option_key(const std::string& name);

inline constexpr int64_t kMaxSegmentLength = int64_t{1} << 62;

// Validates the two option lists: same non-zero length, 0 < w <= 2^62, 0 < r <= w, and some branch with
// r = 1 unless allow_uncovered. UsageError naming the option and the bad value otherwise.
Schedule make_schedule(const std::vector<int64_t>& segment_lengths, const std::vector<int64_t>& dilation_rates,
                       bool allow_uncovered, const ScheduleOptionNames& names = {});
std::string to_string(const Schedule& schedule);  // "w=2048,r=1; w=4096,r=2"

// Head offset o(h, r) in [0, r) for head h of `heads`. Also compiled for the device by the CUDA kernels,
// so both backends select rows by this one definition.
LONGCTX_HOST_DEVICE inline int64_t head_offset(int64_t h, int64_t r, int64_t heads, HeadOffsets offsets) {
  if (offsets == HeadOffsets::paper) return h % r;
  const int64_t group = (heads + r - 1) / r;  // ceil(H / r)
  return h / group;
}

// w' = min(w, N).
int64_t effective_segment_length(const Branch& branch, int64_t seq_len);
// Number of segments of [0, N), the partial last one included: ceil(N / w').
int64_t segment_count(const Branch& branch, int64_t seq_len);
// First row and number of rows of segment `segment` (the last one may be short).
int64_t segment_begin(const Branch& branch, int64_t seq_len, int64_t segment);
int64_t segment_rows(const Branch& branch, int64_t seq_len, int64_t segment);
// Number of rows p in a segment of `rows` rows with (p - s) mod r == offset.
int64_t selected_rows(int64_t rows, int64_t dilation, int64_t offset);

// Unmasked (query, key) pairs per batch element, summed over branches, segments and heads (partial
// segments included; causal counts m(m+1)/2 per segment of m selected rows). Pair and FLOP counts are
// doubles (exact below 2^53, counted in long double): a dense branch at N = 2^31 with 8 heads has 2^65
// pairs, past int64 (before: int64, which wrapped to 0 there, and the FLOPs at 2^63 / (4 D)).
double count_pairs(const Schedule& schedule, int64_t seq_len, int64_t heads, bool causal, HeadOffsets offsets);
// The pairs whose query row lies in [first, last): one rank's share under sequence parallelism (with
// causal masking, later ranks' queries see more keys). Summed over a partition of [0, N): count_pairs.
double count_pairs_in_rows(const Schedule& schedule, int64_t seq_len, int64_t heads, bool causal, HeadOffsets offsets,
                           int64_t first, int64_t last);
double flops_forward(double pairs, int64_t head_dim);   // 4 D pairs
double flops_backward(double pairs, int64_t head_dim);  // 10 D pairs

// A branch whose head offsets do not reach every residue mod r that its segments hold (with paper offsets:
// H < r): of the min(r, w') residues of a segment of w' = min(w, N) rows, the heads reach `reached`.
struct CoverageGap {
  size_t branch = 0;  // index into schedule.branches
  int64_t reached = 0, residues = 0;
};
std::vector<CoverageGap> coverage_gaps(const Schedule& schedule, int64_t heads, HeadOffsets offsets, int64_t seq_len);
// Warns once per coverage gap at sequence length `seq_len`, naming the branch.
void warn_coverage(const Schedule& schedule, int64_t heads, HeadOffsets offsets, int64_t seq_len);

}  // namespace longctx
