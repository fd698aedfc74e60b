// The CPU backend against the double-precision reference on awkward shapes: odd N, partial last
// segments, w > N, H not a multiple of r, H < r, B > 1, D not a multiple of the SIMD width, causal and
// not, both head-offset modes, segments longer than one tile chunk (2048 selected rows).
#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <limits>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <tuple>

#include "attention/attention.hpp"
#include "attention/cpu_attention.hpp"
#include "attention/reference.hpp"
#include "runtime/core/error.hpp"
#include "attention_cases.hpp"
#include "test_util.hpp"

namespace longctx {
namespace {

using testing::all_close;
using testing::AttentionCase;
using testing::random_tensor;

TEST(CpuAttention, ForwardAndBackwardMatchReference) {
  auto backend = make_attention_backend("cpu");
  EXPECT_EQ(backend->name(), "cpu");
  uint64_t seed = 100;
  for (const AttentionCase& c : testing::awkward_attention_cases())
    testing::expect_fp32_matches_reference(*backend, c, seed);
}

TEST(CpuAttention, UncoveredRowsAreZeroAndNegInf) {
  // One branch, r = 3, two heads: with paper offsets heads use residues 0 and 1, so rows with residue 2
  // (within each segment) are seen by no branch.
  AttentionParams p;
  p.schedule = make_schedule({9}, {3}, /*allow_uncovered=*/true);
  const Shape shape{2, 31, 2, 8};
  const Tensor q = random_tensor(shape, 1), k = random_tensor(shape, 2), v = random_tensor(shape, 3),
               dout = random_tensor(shape, 4);
  auto backend = make_attention_backend("cpu");
  for (bool causal : {false, true}) {
    p.causal = causal;
    Tensor o, lse, o_ref, lse_ref, dq, dk, dv;
    backend->forward(p, q, k, v, o, lse);
    reference_forward(p, q, k, v, o_ref, lse_ref);
    const float neg_inf = -std::numeric_limits<float>::infinity();
    for (int64_t b = 0; b < 2; ++b)
      for (int64_t n = 0; n < 31; ++n)
        for (int64_t h = 0; h < 2; ++h) {
          const int64_t row = (b * 31 + n) * 2 + h;
          const bool covered = (n % 9) % 3 == h;
          EXPECT_EQ(std::isinf(lse[row]) && lse[row] < 0, !covered) << "b " << b << " n " << n << " h " << h;
          EXPECT_EQ(lse_ref[row] == neg_inf, !covered);
          if (!covered)
            for (int64_t d = 0; d < 8; ++d) {
              EXPECT_EQ(o[row * 8 + d], 0.0f);
              EXPECT_EQ(o_ref[row * 8 + d], 0.0f);
            }
        }
    EXPECT_TRUE(all_close(o, o_ref, 1e-5, 1e-4));
    backend->backward(p, q, k, v, o, lse, dout, dq, dk, dv);
    for (const Tensor* g : {&dq, &dk, &dv})
      for (int64_t i = 0; i < g->size(); ++i) ASSERT_TRUE(std::isfinite((*g)[i])) << i;
  }
}

// A NaN in q or k makes the spec's softmax NaN for every row that sees it. The backend may spread NaN
// further (0 x NaN in a masked product), but must never turn it into a finite number: before, a row
// whose softmax sum was NaN read as "no keys" (o = 0, lse = -inf), and branches merged over it.
TEST(CpuAttention, NanInQOrKIsNeverAFiniteResult) {
  AttentionParams p;
  p.schedule = make_schedule({8, 40}, {1, 2}, false);
  const Shape shape{1, 40, 2, 8};
  auto backend = make_attention_backend("cpu");
  const float nan = std::numeric_limits<float>::quiet_NaN();
  for (bool causal : {false, true})
    for (const char* where : {"k", "q"}) {
      SCOPED_TRACE(std::string(where) + (causal ? " causal" : " full"));
      p.causal = causal;
      Tensor q = random_tensor(shape, 11), k = random_tensor(shape, 12);
      const Tensor v = random_tensor(shape, 13), dout = random_tensor(shape, 14);
      (std::string(where) == "k" ? k : q)[(5 * 2 + 0) * 8 + 1] = nan;  // row 5, head 0, d 1
      Tensor o, lse, o_ref, lse_ref, dq, dk, dv, dq_ref, dk_ref, dv_ref;
      backend->forward(p, q, k, v, o, lse);
      reference_forward(p, q, k, v, o_ref, lse_ref);
      const auto never_finite_where_nan = [](const Tensor& ours, const Tensor& ref, const char* name) {
        int64_t nans = 0;
        for (int64_t i = 0; i < ref.size(); ++i) {
          if (std::isnan(ref[i])) {
            ++nans;
            EXPECT_TRUE(std::isnan(ours[i])) << name << "[" << i << "] = " << ours[i] << ", the spec gives NaN";
          } else if (std::isfinite(ours[i])) {
            EXPECT_NEAR(ours[i], ref[i], 1e-4 * (1 + std::fabs(ref[i]))) << name << "[" << i << "]";
          }
        }
        EXPECT_GT(nans, 0) << name << ": the NaN reached no output";
      };
      never_finite_where_nan(o, o_ref, "o");
      never_finite_where_nan(lse, lse_ref, "lse");
      backend->backward(p, q, k, v, o, lse, dout, dq, dk, dv);
      reference_backward(p, q, k, v, o_ref, lse_ref, dout, dq_ref, dk_ref, dv_ref);
      never_finite_where_nan(dq, dq_ref, "dq");
      never_finite_where_nan(dk, dk_ref, "dk");
    }
}

// A key whose score is -inf (an infinite input) drops out of the softmax: a branch that gave a row only
// that key adds nothing (it computed exp2(-inf - -inf) = NaN for the row). The same cases as the CUDA
// kernels' emulated test.
TEST(CpuAttention, InfiniteScoresDropOutOfTheSoftmax) {
  auto backend = make_attention_backend("cpu");
  struct Case {
    std::vector<int64_t> w, r;
    int64_t row;
  };
  for (const Case& c : {Case{{12, 16}, {1, 2}, 16}, Case{{8, 40}, {1, 2}, 0}}) {
    SCOPED_TRACE("row " + std::to_string(c.row));
    AttentionParams p;
    p.schedule = make_schedule(c.w, c.r, false);
    p.causal = true;
    const Shape shape{1, 40, 2, 8};
    Tensor q = random_tensor(shape, 81), k = random_tensor(shape, 82);
    const Tensor v = random_tensor(shape, 83);
    q[(c.row * 2) * 8] = -1.0f;
    k[(c.row * 2) * 8] = std::numeric_limits<float>::infinity();
    Tensor o, lse, o_ref, lse_ref;
    backend->forward(p, q, k, v, o, lse);
    reference_forward(p, q, k, v, o_ref, lse_ref);
    for (const auto& [ours, ref, name] : {std::tuple{&o, &o_ref, "o"}, std::tuple{&lse, &lse_ref, "lse"}})
      for (int64_t i = 0; i < ref->size(); ++i) {
        if (std::isnan((*ref)[i])) EXPECT_TRUE(std::isnan((*ours)[i])) << name << "[" << i << "]";
        else if (std::isinf((*ref)[i])) EXPECT_EQ((*ours)[i], (*ref)[i]) << name << "[" << i << "]";
        else EXPECT_NEAR((*ours)[i], (*ref)[i], 1e-4 * (1 + std::fabs((*ref)[i]))) << name << "[" << i << "]";
      }
    EXPECT_TRUE(std::isfinite(o[(c.row * 2) * 8])) << "the row that lost one key";
  }
}

// At |score| ~ 1e9 fp32 rounds score and lse by hundreds, and the backward's P = exp(score - lse) came
// out up to 1e37 where it is <= 1 exactly: dv (a P-weighted sum of do) was 1e36 times its bound. Now P is
// capped at 1 and every dv[j][d] stays within sum_p |do[p][d]|. And both passes round each score alike and
// take lse from the row's largest score, so the dominant key's P is exactly 1: dv sums to dout per segment
// (it summed to -0.52 where dout sums to 6.68 when the backward took lse through base 2 and back).
TEST(CpuAttention, BackwardStaysBoundedAtHugeScores) {
  auto backend = make_attention_backend("cpu");
  AttentionParams p;
  p.schedule = make_schedule({64}, {1}, false);
  for (const std::string nan_in : {"", "q", "k"}) {
    SCOPED_TRACE("NaN in: " + nan_in);
    const testing::HugeScoreInputs x = testing::huge_score_inputs(16, nan_in);
    const bool with_nan = !nan_in.empty();
    Tensor o, lse, dq, dk, dv;
    backend->forward(p, x.q, x.k, x.v, o, lse);
    backend->backward(p, x.q, x.k, x.v, o, lse, x.dout, dq, dk, dv);
    EXPECT_TRUE(testing::dv_within_bound(dv, x.dout, 64, 1e-5, with_nan ? 64 : 0));
    EXPECT_TRUE(testing::dv_sums_to_dout(dv, x.dout, 64, 1e-5, with_nan ? 64 : 0));
    if (with_nan) {
      EXPECT_TRUE(testing::rows_all_nan(dv, 0, 64)) << "the NaN's segment";
    }
  }
}

// The thread count decides how a branch's work is cut (finer where it has fewer (batch, segment, head)
// groups than the threads; the backward then splits a group's dk and dv from its dq, each pass on its own
// chunks), never a bit of the result: o, lse, dq, dk and dv at 1 thread and at 7 are the same. The two
// cases added here cut segments of more than one key tile; the first matches the reference at 7 threads.
TEST(CpuAttention, ResultsDoNotDependOnTheThreadCount) {
  auto backend = make_attention_backend("cpu");
  std::vector<AttentionCase> cases = testing::awkward_attention_cases();
  cases.push_back({"one_head_three_tiles", 1, 4200, 1, 16, {4200}, {1}});
  cases.push_back({"three_heads_two_tiles_dilated", 1, 4100, 3, 8, {4100, 1024}, {2, 1}});
  const auto same_bits = [](const Tensor& a, const Tensor& b) {
    return a.shape() == b.shape() && std::memcmp(a.data(), b.data(), sizeof(float) * a.size()) == 0;
  };
  const int threads_before = omp_get_max_threads();
  uint64_t seed = 500;
  for (const AttentionCase& c : cases)
    for (bool causal : {false, true}) {
      SCOPED_TRACE(c.name + (causal ? " causal" : " full"));
      const AttentionParams p = c.params(causal, HeadOffsets::paper);
      const Tensor q = random_tensor(c.shape(), ++seed, 1.5f), k = random_tensor(c.shape(), ++seed, 1.5f),
                   v = random_tensor(c.shape(), ++seed), dout = random_tensor(c.shape(), ++seed);
      Tensor o[2], lse[2], dq[2], dk[2], dv[2];
      for (int run = 0; run < 2; ++run) {
        omp_set_num_threads(run == 0 ? 1 : 7);
        backend->forward(p, q, k, v, o[run], lse[run]);
        backend->backward(p, q, k, v, o[run], lse[run], dout, dq[run], dk[run], dv[run]);
      }
      omp_set_num_threads(threads_before);
      EXPECT_TRUE(same_bits(o[0], o[1])) << "o";
      EXPECT_TRUE(same_bits(lse[0], lse[1])) << "lse";
      EXPECT_TRUE(same_bits(dq[0], dq[1])) << "dq";
      EXPECT_TRUE(same_bits(dk[0], dk[1])) << "dk";
      EXPECT_TRUE(same_bits(dv[0], dv[1])) << "dv";
    }
  omp_set_num_threads(7);
  testing::expect_fp32_matches_reference(*backend, cases[cases.size() - 2], seed);
  omp_set_num_threads(threads_before);
}

// The same to the sign of a zero: a row's o that ends at -0 (its dominant key's v is -0 and the rest of the
// sum underflowed away, alpha = 0 times negative v) stays -0 at 7 threads, where the forward cuts its query
// chunks. Before its chunks started where the kernel's query blocks did, a row after the first 2048 shared
// its block with other rows than uncut, took more masked keys (P = +0) into P V, and came out +0 (a review
// of the change found 512 such elements here).
TEST(CpuAttention, ASignedZeroDoesNotDependOnTheThreadCount) {
  auto backend = make_attention_backend("cpu");
  const int64_t N = 4200, D = 16, star = 2200, last_negative = 2239;
  const Shape shape{1, N, 1, D};
  Tensor q(shape, 0.0f), k(shape, 0.0f), v(shape, 0.0f);
  for (int64_t t = 0; t < N; ++t) {
    q.data()[t * D] = 4.0f;
    for (int64_t d = 0; d < D; ++d) v.data()[t * D + d] = t <= last_negative ? -1.0f : 1.0f;
  }
  k.data()[star * D] = 1000.0f;
  for (int64_t d = 0; d < D; ++d) v.data()[star * D + d] = -0.0f;
  AttentionParams p;
  p.schedule = make_schedule({N}, {1}, false);
  p.causal = true;
  Tensor o[2], lse[2];
  const int threads_before = omp_get_max_threads();
  for (int run = 0; run < 2; ++run) {
    omp_set_num_threads(run == 0 ? 1 : 7);
    backend->forward(p, q, k, v, o[run], lse[run]);
  }
  omp_set_num_threads(threads_before);
  EXPECT_TRUE(std::signbit(o[0][(star + 8) * D])) << "the case no longer makes a -0";
  int64_t differ = 0;
  for (int64_t i = 0; i < o[0].size(); ++i) differ += std::memcmp(&o[0][i], &o[1][i], sizeof(float)) != 0;
  EXPECT_EQ(differ, 0) << "elements of o differ in their bits";
  EXPECT_EQ(std::memcmp(lse[0].data(), lse[1].data(), sizeof(float) * lse[0].size()), 0);
}

// The progress hook (the sequence-parallel path's all-gathers move along through it) runs between work
// items, on the main thread only (MPI_THREAD_FUNNELED), forward and backward; what it throws ends the call
// with that error, never std::terminate from inside the parallel region. (At 3 threads the main thread
// may take none of a branch's short items: there only "nowhere else" is certain.)
TEST(CpuAttention, ProgressRunsOnTheMainThreadAndItsErrorEndsTheCall) {
  AttentionParams p;
  p.schedule = make_schedule({32, 256}, {1, 2}, false);
  const Shape shape{1, 512, 4, 16};
  const Tensor q = random_tensor(shape, 71), k = random_tensor(shape, 72), v = random_tensor(shape, 73),
               dout = random_tensor(shape, 74);
  const int threads_before = omp_get_max_threads();
  CpuAttention cpu;
  const std::thread::id main_thread = std::this_thread::get_id();
  Tensor o, lse, dq, dk, dv;
  for (int threads : {1, 3}) {
    SCOPED_TRACE(std::to_string(threads) + " threads");
    omp_set_num_threads(threads);
    int calls = 0, elsewhere = 0;
    cpu.set_progress([&] { ++(std::this_thread::get_id() == main_thread ? calls : elsewhere); });
    cpu.forward(p, q, k, v, o, lse);
    const int forward_calls = calls;
    cpu.backward(p, q, k, v, o, lse, dout, dq, dk, dv);
    if (threads == 1) {
      EXPECT_GT(forward_calls, 0);
      EXPECT_GT(calls, forward_calls) << "the backward's items";
    }
    EXPECT_EQ(elsewhere, 0);
  }
  omp_set_num_threads(1);
  cpu.set_progress([] { throw std::runtime_error("the all-gather failed"); });
  for (bool backward : {false, true}) {
    try {
      if (backward)
        cpu.backward(p, q, k, v, o, lse, dout, dq, dk, dv);
      else
        cpu.forward(p, q, k, v, o, lse);
      ADD_FAILURE() << "no error";
    } catch (const std::runtime_error& e) {
      EXPECT_STREQ(e.what(), "the all-gather failed");
    }
  }
  omp_set_num_threads(threads_before);
}

// A shape whose byte count wraps int64 was a tiny buffer for a huge tensor (then writes past it).
TEST(Tensor, ShapesBeyondAnyMemoryAreRefused) {
  EXPECT_THROW(element_count({int64_t{1} << 31, int64_t{1} << 31}), UsageError);  // 2^62 floats: 2^64 bytes
  EXPECT_THROW(Tensor({int64_t{1} << 40, int64_t{1} << 30, 16}), UsageError);
  EXPECT_EQ(element_count({int64_t{1} << 30, int64_t{1} << 30}), int64_t{1} << 60);  // 2^62 bytes: no wrap
  EXPECT_EQ(element_count({0, int64_t{1} << 62}), 0);
}

// Copies: of the values and the shape; an assignment of the same size keeps its storage (and takes the
// shape), one of another size gets its own; a moved-from tensor can be assigned to.
TEST(Tensor, CopiesHoldTheValuesAndShape) {
  const Tensor a = random_tensor({5, 3, 2}, 7);
  Tensor b(a);
  EXPECT_EQ(b.shape(), a.shape());
  EXPECT_EQ(std::vector<float>(b.data(), b.data() + b.size()), std::vector<float>(a.data(), a.data() + a.size()));
  EXPECT_NE(b.data(), a.data());
  Tensor same({30}, 4.0f);
  const float* storage = same.data();
  same = a;
  EXPECT_EQ(same.data(), storage);
  EXPECT_EQ(same.shape(), a.shape());
  EXPECT_EQ(same[29], a[29]);
  Tensor other({7}, 4.0f);
  other = a;
  EXPECT_EQ(other.shape(), a.shape());
  EXPECT_EQ(other[0], a[0]);
  EXPECT_EQ(other[29], a[29]);
  Tensor moved = std::move(b);
  b = a;  // (b holds no storage now, whatever its count says)
  EXPECT_EQ(b.shape(), a.shape());
  EXPECT_EQ(b[17], a[17]);
  EXPECT_EQ(moved[17], a[17]);
}

// The VmFlags line of the mapping of /proc/self/smaps that holds `address` ("" if none does); nullopt
// where smaps has no VmFlags lines at all (kernels before 3.8, some sandboxes).
std::optional<std::string> mapping_flags(const void* address) {
  std::ifstream smaps("/proc/self/smaps");
  const auto at = reinterpret_cast<uintptr_t>(address);
  bool inside = false, any_flags = false;
  std::string found;
  for (std::string line; std::getline(smaps, line);) {
    unsigned long long begin = 0, end = 0;
    if (std::sscanf(line.c_str(), "%llx-%llx ", &begin, &end) == 2 && line.find(' ') > line.find('-')) {
      inside = begin <= at && at < end;
    } else if (line.rfind("VmFlags:", 0) == 0) {
      any_flags = true;
      if (inside) found = line;
    }
  }
  if (!any_flags) return std::nullopt;
  return found;
}

// A tensor of 32 MiB or more is a mapping of its own that asks for transparent huge pages (VmFlags "hg":
// madvise(MADV_HUGEPAGE)): faults per 2 MiB on first touch, not per 4 KiB. A smaller tensor stays with
// malloc and asks for nothing (its block may come from the heap, which malloc reuses). Copies, moves and
// assignments of a mapped tensor keep its values and give the mapping back (munmap, not free).
TEST(Tensor, LargeTensorsAskForHugePages) {
  constexpr uintptr_t kHugePage = uintptr_t{2} << 20;
  const int64_t large_count = 10 * (int64_t{1} << 20), small_count = 5 * (int64_t{1} << 18);  // 40 and 5 MiB
  const Tensor large({10, int64_t{1} << 20}, 1.5f);
  const Tensor small({5, int64_t{1} << 18}, 2.5f);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(large.data()) % 64, 0u);
  EXPECT_EQ(large[large_count - 1], 1.5f);
  EXPECT_EQ(small[small_count - 1], 2.5f);
  {
    Tensor copy(large);
    copy[7] = 3.0f;
    Tensor moved = std::move(copy);
    EXPECT_EQ(moved[7], 3.0f);
    EXPECT_EQ(moved[large_count - 1], 1.5f);
    Tensor assigned({3}, 0.0f);
    assigned = moved;  // another size: storage of its own (a mapping), the small one freed
    EXPECT_EQ(assigned[7], 3.0f);
    moved = small;  // the mapping given back, malloc's storage taken
    EXPECT_EQ(moved[small_count - 1], 2.5f);
  }
  if (!std::ifstream("/sys/kernel/mm/transparent_hugepage/enabled"))
    GTEST_SKIP() << "this kernel has no transparent huge pages";
  const std::optional<std::string> flags = mapping_flags(large.data());
  if (!flags) GTEST_SKIP() << "/proc/self/smaps has no VmFlags lines";
  ASSERT_FALSE(flags->empty()) << "no mapping in /proc/self/smaps holds the tensor";
  EXPECT_NE((*flags + " ").find(" hg "), std::string::npos) << *flags;
  const auto page_inside_small =
      reinterpret_cast<const float*>((reinterpret_cast<uintptr_t>(small.data()) + kHugePage - 1) / kHugePage * kHugePage);
  const std::string small_flags = mapping_flags(page_inside_small).value_or("");
  ASSERT_FALSE(small_flags.empty()) << "no mapping in /proc/self/smaps holds the small tensor";
  EXPECT_EQ((small_flags + " ").find(" hg "), std::string::npos) << small_flags;
}

TEST(CpuAttention, ReusesAndReallocatesOutputs) {
  AttentionParams p;
  p.schedule = make_schedule({16}, {1}, false);
  const Tensor q = random_tensor({20, 2, 8}, 1), k = random_tensor({20, 2, 8}, 2), v = random_tensor({20, 2, 8}, 3);
  auto backend = make_attention_backend("cpu");
  Tensor o({3}, 9.0f), lse({20, 2}, 9.0f), o_ref, lse_ref;
  backend->forward(p, q, k, v, o, lse);
  reference_forward(p, q, k, v, o_ref, lse_ref);
  EXPECT_EQ(o.shape(), q.shape());
  EXPECT_TRUE(all_close(o, o_ref, 1e-5, 1e-4));
  EXPECT_TRUE(all_close(lse, lse_ref, 1e-5, 1e-5));
  backend->forward(p, q, k, v, o, lse);  // second call into the same buffers gives the same result
  EXPECT_TRUE(all_close(o, o_ref, 1e-5, 1e-4));
}

template <class Fn>
::testing::AssertionResult throws_input_error(Fn fn, const std::string& needle) {
  try {
    fn();
  } catch (const InputError& e) {
    const std::string message = e.what();
    if (message.find(needle) == std::string::npos)
      return ::testing::AssertionFailure() << "message lacks '" << needle << "': " << message;
    return ::testing::AssertionSuccess();
  }
  return ::testing::AssertionFailure() << "no InputError";
}

TEST(CpuAttention, RejectsBadShapes) {
  auto backend = make_attention_backend("cpu");
  AttentionParams p;
  p.schedule = make_schedule({4}, {1}, false);
  const Tensor good({6, 2, 4}), other_d({6, 2, 5}), other_h({6, 3, 4}), rank2({6, 8}), rank5({1, 1, 6, 2, 4});
  Tensor o, lse, dq, dk, dv;
  EXPECT_TRUE(throws_input_error([&] { backend->forward(p, good, other_d, good, o, lse); }, "[6,2,5]"));
  EXPECT_TRUE(throws_input_error([&] { backend->forward(p, good, good, other_h, o, lse); }, "v [6,3,4]"));
  EXPECT_TRUE(throws_input_error([&] { backend->forward(p, rank2, rank2, rank2, o, lse); }, "rank"));
  EXPECT_TRUE(throws_input_error([&] { backend->forward(p, rank5, rank5, rank5, o, lse); }, "rank"));
  backend->forward(p, good, good, good, o, lse);
  EXPECT_TRUE(throws_input_error([&] { backend->backward(p, good, good, good, o, lse, other_d, dq, dk, dv); }, "dout"));
  EXPECT_TRUE(throws_input_error([&] { backend->backward(p, good, good, good, o, o, good, dq, dk, dv); }, "lse"));
}

TEST(CpuAttention, FactoryRejectsUnknownDevice) {
  EXPECT_THROW(make_attention_backend("tpu"), UsageError);
  try {
    make_attention_backend("tpu");
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("--device"), std::string::npos) << e.what();
  }
}

TEST(CpuAttention, FactoryRefusesHalfPrecisionOnCpu) {
  for (Dtype dtype : {Dtype::bf16, Dtype::fp16}) {
    try {
      make_attention_backend("cpu", dtype);
      FAIL() << "cpu accepted " << to_string(dtype);
    } catch (const UsageError& e) {
      EXPECT_NE(std::string(e.what()).find("--dtype " + to_string(dtype)), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("--device cuda"), std::string::npos) << e.what();
    }
  }
}

TEST(Dtype, ParsesAndPrints) {
  for (Dtype dtype : {Dtype::fp32, Dtype::bf16, Dtype::fp16}) EXPECT_EQ(parse_dtype(to_string(dtype)), dtype);
  EXPECT_THROW(parse_dtype("fp8"), UsageError);
  EXPECT_THROW(parse_dtype("BF16"), UsageError);
}

// Round to nearest even on the bits of a float: the textbook bf16 conversion, independent of round_to.
float bf16_by_bits(float x) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  u += 0x7fffu + ((u >> 16) & 1u);
  u &= 0xffff0000u;
  float y;
  std::memcpy(&y, &u, 4);
  return y;
}

TEST(Dtype, RoundsToNearestEven) {
  const float ulp_bf16 = std::ldexp(1.f, -7), ulp_fp16 = std::ldexp(1.f, -10);
  EXPECT_EQ(round_to(Dtype::bf16, 1.f + ulp_bf16 / 2), 1.f);                      // tie -> even
  EXPECT_EQ(round_to(Dtype::bf16, 1.f + 1.5f * ulp_bf16), 1.f + 2 * ulp_bf16);    // tie -> even
  EXPECT_EQ(round_to(Dtype::bf16, 1.f + 0.51f * ulp_bf16), 1.f + ulp_bf16);
  EXPECT_EQ(round_to(Dtype::fp16, 1.f + ulp_fp16 / 2), 1.f);
  EXPECT_EQ(round_to(Dtype::fp16, -(1.f + 1.5f * ulp_fp16)), -(1.f + 2 * ulp_fp16));
  EXPECT_EQ(round_to(Dtype::fp16, 65519.f), 65504.f);  // largest finite half
  EXPECT_EQ(round_to(Dtype::fp16, 65520.f), std::numeric_limits<float>::infinity());
  EXPECT_EQ(round_to(Dtype::fp16, std::ldexp(1.f, -24)), std::ldexp(1.f, -24));  // smallest subnormal
  EXPECT_EQ(round_to(Dtype::fp16, std::ldexp(1.f, -25)), 0.f);                     // tie -> even (0)
  EXPECT_EQ(round_to(Dtype::fp16, std::ldexp(3.f, -26)), std::ldexp(1.f, -24));
  EXPECT_EQ(round_to(Dtype::fp32, 1.f + ulp_bf16 / 3), 1.f + ulp_bf16 / 3);
  EXPECT_TRUE(std::isnan(round_to(Dtype::bf16, std::nanf(""))));
  // Against the bit-level conversion on normal, subnormal and huge values.
  uint64_t state = 12345;
  for (int i = 0; i < 100000; ++i) {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    uint32_t bits = static_cast<uint32_t>(state >> 32);
    bits &= 0x7f7fffffu;  // finite, below the bf16 overflow region
    float x;
    std::memcpy(&x, &bits, 4);
    if (i % 2) x = -x;
    ASSERT_EQ(round_to(Dtype::bf16, x), bf16_by_bits(x)) << std::hexfloat << x;
  }
  const Tensor t = rounded(random_tensor({3, 5}, 7), Dtype::fp16);
  for (int64_t i = 0; i < t.size(); ++i) EXPECT_EQ(round_to(Dtype::fp16, t[i]), t[i]);
}

}  // namespace
}  // namespace longctx
