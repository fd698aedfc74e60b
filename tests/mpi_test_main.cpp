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
#include <mpi.h>

#include <cstdio>
#include <string>
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

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
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

  const int failed_here = RUN_ALL_TESTS() != 0 ? 1 : 0;
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
