// GoogleTest main for the MPI tests (run by ctest under mpirun at 1-4 ranks).
//
// Protocol: every rank initialises MPI, runs the same tests in the same order, and then all-reduces its
// result, so the job fails on EVERY rank when ANY rank failed (and rank 0 names the ranks that failed).
// Rank 0 prints GoogleTest's usual output; the other ranks print only their failures, prefixed with
// their rank, so a failure that happens on rank 2 alone is still visible.
//
// Rules for MPI tests, so that a failure on one rank cannot hang the others:
//   * Never return early before a collective: use EXPECT_*, not ASSERT_*, ahead of any communicator
//     call that the other ranks will make (ASSERT_ is fine after the test's last collective).
//   * Give each test its own communicator whose calls have a short timeout, created with a longer one:
//       world = comm::make_mpi_world(120); world->set_timeout_seconds(30);
//     If ranks diverge anyway, the stuck ranks throw CommTimeout after 30 s (GoogleTest records it as a
//     failure) instead of waiting forever, and the next test's communicator creation (which waits up to
//     120 s) gathers every rank again, so that test starts in step. A rank that fails only records the
//     failure; this main fails the job on every rank at the end.
//   * A section that rank 0 runs alone, ahead of a collective, goes through io_test_util.hpp's on_rank0.
// And the net under them all: after each test every rank meets the others on a communicator of this main's
// own, for at most kTestSyncSeconds. A rank that got there while another did not (one left a collective
// behind: an ASSERT or an exception on some ranks only, ahead of a bare MPI or HDF5 collective) names the
// test and aborts the job, instead of every rank waiting until ctest's timeout without a word.
#include <mpi.h>

#include <chrono>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "runtime/core/check.hpp"

namespace {

// On ranks other than 0: GoogleTest's failures only, each line prefixed with the rank.
class FailurePrinter : public ::testing::EmptyTestEventListener {
 public:
  explicit FailurePrinter(int rank) : rank_(rank) {}

  void OnTestPartResult(const ::testing::TestPartResult& result) override {
    if (!result.failed()) return;
    std::fprintf(stderr, "[rank %d] %s:%d: Failure\n%s\n", rank_,
                 result.file_name() ? result.file_name() : "unknown", result.line_number(),
                 result.message());
    std::fflush(stderr);
  }
  void OnTestEnd(const ::testing::TestInfo& info) override {
    if (info.result()->Failed()) {
      std::fprintf(stderr, "[rank %d] FAILED %s.%s\n", rank_, info.test_suite_name(), info.name());
      std::fflush(stderr);
    }
  }

 private:
  int rank_;
};

// The longest that ranks in step may reach the end of a test apart: far more than a test's own skew (its
// communicators' timeouts are 30 to 120 s), far less than ctest's 600 s.
constexpr int kTestSyncSeconds = 180;

// After each test, every rank meets the others (MPI_Iallreduce of the test's number, polled against the
// clock), on a communicator no test uses, so it cannot pair with a test's collective.
class TestSync : public ::testing::EmptyTestEventListener {
 public:
  explicit TestSync(int rank) : rank_(rank) { MPI_Comm_dup(MPI_COMM_WORLD, &comm_); }
  ~TestSync() override { MPI_Comm_free(&comm_); }

  void OnTestEnd(const ::testing::TestInfo& info) override {
    const int mine = tests_ended_++;
    int lowest = 0;
    MPI_Request request = MPI_REQUEST_NULL;
    MPI_Iallreduce(&mine, &lowest, 1, MPI_INT, MPI_MIN, comm_, &request);
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(kTestSyncSeconds);
    for (int done = 0;;) {
      MPI_Test(&request, &done, MPI_STATUS_IGNORE);
      if (done && lowest == mine) return;
      if (done || std::chrono::steady_clock::now() > deadline) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    std::fprintf(stderr,
                 "[rank %d] [mpi_test_main] test %s.%s (%s here) ended on this rank, but not on every rank within "
                 "%d s: the ranks are out of step (a rank left a collective behind: an ASSERT or an exception on "
                 "some ranks only, ahead of an MPI or HDF5 collective; see the failures above). Aborting the job.\n",
                 rank_, info.test_suite_name(), info.name(), info.result()->Failed() ? "failed" : "passed",
                 kTestSyncSeconds);
    std::fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, 1);
  }

 private:
  int rank_;
  int tests_ended_ = 0;
  MPI_Comm comm_ = MPI_COMM_NULL;
};

}  // namespace

int main(int argc, char** argv) {
  int provided = 0;  // as the longctx binary asks (runtime/process.cpp): the attention code tests requests from
  MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided);  // the main thread inside parallel regions
  int rank = 0, size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  char host[MPI_MAX_PROCESSOR_NAME] = {};
  int host_length = 0;
  MPI_Get_processor_name(host, &host_length);
  longctx::set_process_identity(rank, std::string(host, static_cast<size_t>(host_length)));

  ::testing::InitGoogleTest(&argc, argv);
  if (rank != 0) {
    ::testing::TestEventListeners& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
    listeners.Append(new FailurePrinter(rank));
  }
  // (Failures are printed as they happen, so a rank that aborts has shown them already.)
  TestSync* sync = new TestSync(rank);
  ::testing::UnitTest::GetInstance()->listeners().Append(sync);

  const int failed_here = RUN_ALL_TESTS() != 0 ? 1 : 0;
  delete ::testing::UnitTest::GetInstance()->listeners().Release(sync);  // its communicator, before MPI_Finalize
  std::vector<int> failed(static_cast<size_t>(size), 0);
  MPI_Allgather(&failed_here, 1, MPI_INT, failed.data(), 1, MPI_INT, MPI_COMM_WORLD);
  std::string failed_ranks;
  for (int r = 0; r < size; ++r)
    if (failed[static_cast<size_t>(r)]) failed_ranks += (failed_ranks.empty() ? "" : ", ") + std::to_string(r);
  if (rank == 0 && !failed_ranks.empty()) {
    std::fprintf(stderr, "[mpi_test_main] tests FAILED on rank(s) %s of %d\n", failed_ranks.c_str(), size);
    std::fflush(stderr);
  }

  MPI_Finalize();
  return failed_ranks.empty() ? 0 : 1;
}
