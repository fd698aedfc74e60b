#include "attention/schedule.hpp"

#include <algorithm>
#include <set>
#include <sstream>

#include "runtime/core/error.hpp"
#include "runtime/core/log.hpp"

namespace longctx {

HeadOffsets parse_head_offsets(const std::string& text) {
  if (text == "paper") return HeadOffsets::paper;
  if (text == "grouped") return HeadOffsets::grouped;
  throw UsageError("--head-offsets: unknown value '" + text + "' (allowed: paper, grouped)", "head-offsets");
}

std::string to_string(HeadOffsets offsets) { return offsets == HeadOffsets::paper ? "paper" : "grouped"; }

std::string option_key(const std::string& name) {
  std::string key = name.rfind("--", 0) == 0 ? name.substr(2) : name;
  if (!key.empty() && key.back() == '=') key.pop_back();
  return key;
}

namespace {
std::string join(const std::vector<int64_t>& values) {
  std::ostringstream out;
  for (size_t i = 0; i < values.size(); ++i) out << (i ? "," : "") << values[i];
  return out.str();
}
}  // namespace

Schedule make_schedule(const std::vector<int64_t>& segment_lengths, const std::vector<int64_t>& dilation_rates,
                       bool allow_uncovered, const ScheduleOptionNames& names) {
  const std::string& w_name = names.segment_lengths;
  const std::string& r_name = names.dilation_rates;
  if (segment_lengths.empty())
    throw UsageError(w_name + ": the list is empty (give at least one length)", option_key(w_name));
  if (dilation_rates.empty())
    throw UsageError(r_name + ": the list is empty (give one rate per segment length)", option_key(r_name));
  if (segment_lengths.size() != dilation_rates.size())
    throw UsageError(w_name + " (" + join(segment_lengths) + ") and " + r_name + " (" + join(dilation_rates) +
                     ") have different lengths (" + std::to_string(segment_lengths.size()) + " vs " +
                     std::to_string(dilation_rates.size()) + "): give one dilation rate per segment length");
  Schedule schedule;
  bool covered = false;
  for (size_t i = 0; i < segment_lengths.size(); ++i) {
    const int64_t w = segment_lengths[i];
    const int64_t r = dilation_rates[i];
    if (w <= 0)
      throw UsageError(w_name + ": value " + std::to_string(w) + " (entry " + std::to_string(i + 1) +
                       ") must be a positive integer", option_key(w_name));
    if (r <= 0)
      throw UsageError(r_name + ": value " + std::to_string(r) + " (entry " + std::to_string(i + 1) +
                       ") must be a positive integer", option_key(r_name));
    // Beyond any sequence (N < 2^62 rows), and it keeps the row arithmetic (rows + r - 1, of both
    // backends) within int64: near 2^63 it wrapped, and a branch selected no rows, silently.
    if (w > kMaxSegmentLength)
      throw UsageError(w_name + ": value " + std::to_string(w) + " (entry " + std::to_string(i + 1) +
                       ") exceeds 2^62 = " + std::to_string(kMaxSegmentLength) +
                       ", longer than any sequence: give at most the sequence length", option_key(w_name));
    if (r > w)
      throw UsageError(r_name + ": value " + std::to_string(r) + " exceeds its segment length " + std::to_string(w) +
                       " (entry " + std::to_string(i + 1) + " of " + w_name + ")", option_key(r_name));
    covered = covered || r == 1;
    schedule.branches.push_back({w, r});
  }
  if (!covered && !allow_uncovered)
    throw UsageError(r_name + " (" + join(dilation_rates) +
                     "): no branch has rate 1, so some (row, head) pairs would attend to nothing; add a branch with "
                     "rate 1" +
                     (names.allow_uncovered.empty() ? "" : " or pass " + names.allow_uncovered), option_key(r_name));
  return schedule;
}

std::string to_string(const Schedule& schedule) {
  std::ostringstream out;
  for (size_t i = 0; i < schedule.branches.size(); ++i)
    out << (i ? "; " : "") << "w=" << schedule.branches[i].segment_length << ",r=" << schedule.branches[i].dilation;
  return out.str();
}

int64_t effective_segment_length(const Branch& branch, int64_t seq_len) {
  return std::min(branch.segment_length, seq_len);
}

int64_t segment_count(const Branch& branch, int64_t seq_len) {
  if (seq_len <= 0) return 0;
  const int64_t w = effective_segment_length(branch, seq_len);
  return (seq_len + w - 1) / w;
}

int64_t segment_begin(const Branch& branch, int64_t seq_len, int64_t segment) {
  return segment * effective_segment_length(branch, seq_len);
}

int64_t segment_rows(const Branch& branch, int64_t seq_len, int64_t segment) {
  const int64_t begin = segment_begin(branch, seq_len, segment);
  return std::min(effective_segment_length(branch, seq_len), seq_len - begin);
}

int64_t selected_rows(int64_t rows, int64_t dilation, int64_t offset) {
  if (offset >= rows) return 0;
  return (rows - offset + dilation - 1) / dilation;
}

double count_pairs(const Schedule& schedule, int64_t seq_len, int64_t heads, bool causal, HeadOffsets offsets) {
  long double pairs = 0;  // exact to 2^64
  for (const Branch& branch : schedule.branches) {
    const int64_t segments = segment_count(branch, seq_len);
    for (int64_t h = 0; h < heads; ++h) {
      const int64_t offset = head_offset(h, branch.dilation, heads, offsets);
      // All full segments share one count; only the last may differ.
      const int64_t full_rows = effective_segment_length(branch, seq_len);
      const int64_t last_rows = segment_rows(branch, seq_len, segments - 1);
      auto pairs_of = [&](int64_t rows) {
        const long double m = static_cast<long double>(selected_rows(rows, branch.dilation, offset));
        return causal ? m * (m + 1) / 2 : m * m;
      };
      if (segments > 0) pairs += static_cast<long double>(segments - 1) * pairs_of(full_rows) + pairs_of(last_rows);
    }
  }
  return static_cast<double>(pairs);
}

double count_pairs_in_rows(const Schedule& schedule, int64_t seq_len, int64_t heads, bool causal, HeadOffsets offsets,
                           int64_t first, int64_t last) {
  first = std::max<int64_t>(first, 0);
  last = std::min(last, seq_len);
  if (first >= last) return 0;
  // Selection index j of the rows s + o + j r that lie before `row` (clamped to [0, m]).
  const auto before = [](int64_t row, int64_t start, int64_t dilation, int64_t m) {
    const int64_t distance = row - start;
    if (distance <= 0) return int64_t{0};
    return std::min(m, (distance + dilation - 1) / dilation);
  };
  long double pairs = 0;
  for (const Branch& branch : schedule.branches) {
    const int64_t w = effective_segment_length(branch, seq_len), r = branch.dilation;
    for (int64_t segment = first / w; segment * w < last; ++segment) {
      const int64_t s = segment_begin(branch, seq_len, segment), rows = segment_rows(branch, seq_len, segment);
      for (int64_t h = 0; h < heads; ++h) {
        const int64_t o = head_offset(h, r, heads, offsets), m = selected_rows(rows, r, o);
        const long double ja = static_cast<long double>(before(first, s + o, r, m)),
                          jb = static_cast<long double>(before(last, s + o, r, m));
        // Query j sees j + 1 keys (causal) or all m.
        pairs += causal ? (jb * (jb + 1) - ja * (ja + 1)) / 2 : (jb - ja) * static_cast<long double>(m);
      }
    }
  }
  return static_cast<double>(pairs);
}

double flops_forward(double pairs, int64_t head_dim) { return 4.0 * static_cast<double>(head_dim) * pairs; }
double flops_backward(double pairs, int64_t head_dim) { return 10.0 * static_cast<double>(head_dim) * pairs; }

std::vector<CoverageGap> coverage_gaps(const Schedule& schedule, int64_t heads, HeadOffsets offsets, int64_t seq_len) {
  std::vector<CoverageGap> gaps;
  for (size_t i = 0; i < schedule.branches.size(); ++i) {
    const Branch& branch = schedule.branches[i];
    // A segment of w' rows holds residues 0 .. min(r, w') - 1 (before: r of them counted also where
    // w' < r, so a one-row sequence "reached only 2 of its 4 residues").
    const int64_t residues = std::min(branch.dilation, std::max<int64_t>(1, effective_segment_length(branch, seq_len)));
    std::set<int64_t> reached;
    for (int64_t h = 0; h < heads; ++h) {
      const int64_t offset = head_offset(h, branch.dilation, heads, offsets);
      if (offset < residues) reached.insert(offset);
    }
    if (static_cast<int64_t>(reached.size()) < residues)
      gaps.push_back({i, static_cast<int64_t>(reached.size()), residues});
  }
  return gaps;
}

void warn_coverage(const Schedule& schedule, int64_t heads, HeadOffsets offsets, int64_t seq_len) {
  for (const CoverageGap& gap : coverage_gaps(schedule, heads, offsets, seq_len)) {
    const Branch& branch = schedule.branches[gap.branch];
    const std::string held = gap.residues < branch.dilation
                                 ? " (its segments at N = " + std::to_string(seq_len) + " hold " +
                                       std::to_string(gap.residues) + " of the " + std::to_string(branch.dilation) + ")"
                                 : "";
    log::warn_once("branch " + std::to_string(gap.branch + 1) + " (w=" + std::to_string(branch.segment_length) +
                   ", r=" + std::to_string(branch.dilation) + ") reaches only " + std::to_string(gap.reached) +
                   " of its " + std::to_string(gap.residues) + " row residues" + held + " with " + std::to_string(heads) +
                   " heads (" + to_string(offsets) +
                   " offsets): positions of the other residues see this branch's keys in no head, so information "
                   "there travels far only through another layer; where any position must be retrievable, " +
                   (offsets == HeadOffsets::grouped
                        ? "give heads a multiple of the dilation rate (grouped offsets give each residue they "
                          "reach ceil(heads / r) heads, so they reach ceil(heads / ceil(heads / r)) residues), or "
                          "use paper offsets"
                        : "keep heads >= max dilation rate"));
  }
}

}  // namespace longctx
