// MpiCommunicator's operations in flight and their timed wait (mpi_pending.hpp); the protocol is
// mpi_communicator.cpp's top comment.
#include "comm/mpi_pending.hpp"

#include <sched.h>

#include <algorithm>
#include <sstream>
#include <thread>
#include <utility>

#include "comm/mpi_roll_call.hpp"
#include "runtime/core/activity.hpp"
#include "runtime/core/check.hpp"

namespace longctx::comm {
namespace mpi_wait {

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

bool test_all(std::vector<MPI_Request>& requests, std::vector<MPI_Status>& statuses) {
  if (requests.empty()) return true;
  int done = 0;
  const int rc = MPI_Testall(static_cast<int>(requests.size()), requests.data(), &done, statuses.data());
  if (rc == MPI_ERR_IN_STATUS) {
    for (const MPI_Status& status : statuses)
      if (status.MPI_ERROR != MPI_SUCCESS && status.MPI_ERROR != MPI_ERR_PENDING)
        LONGCTX_CHECK_MPI(status.MPI_ERROR);
  }
  LONGCTX_CHECK_MPI(rc);
  return done != 0;
}

bool wait_all(std::vector<MPI_Request>& requests, std::vector<MPI_Status>& statuses, double timeout_seconds,
              const std::string* what) {
  const Clock::time_point start = Clock::now();
  std::chrono::microseconds nap(1);
  for (long polls = 0;; ++polls) {
    if (test_all(requests, statuses)) return true;
    if (seconds_since(start) > timeout_seconds) return false;
    if (polls < 64) continue;
    // Roll calls are answered from here on: on a loaded machine the yields alone can take a second.
    if (what != nullptr && (polls % 16 == 0 || polls >= 256)) roll_call::answer(*what, seconds_since(start));
    if (polls < 256) {
      sched_yield();
      continue;
    }
    std::this_thread::sleep_for(nap);
    nap = std::min(nap * 2, std::chrono::microseconds(1000));
  }
}

std::string timeout_message(const std::string& operation, int rank, int size, double timeout_seconds,
                            const std::string& roll_call) {
  std::ostringstream message;
  const std::string doing = activity::current();
  message << "comm " << operation << " timed out after " << timeout_seconds << " s on rank " << rank
          << " of a " << size << "-rank MPI communicator (process rank " << process_rank() << " on "
          << process_host() << ")" << (doing.empty() ? "" : " while " + doing)
          << (roll_call.empty() ? ": a peer rank probably failed, exited or called a different operation"
                                : ". " + roll_call);
  return message.str();
}

}  // namespace mpi_wait

using mpi_wait::Clock;
using mpi_wait::seconds_since;
using mpi_wait::test_all;
using mpi_wait::timeout_message;
using mpi_wait::wait_all;

// ---- an operation in flight --------------------------------------------------------------------------

void MpiCommunicator::Pending::wait() {
  if (done_) return;
  const Clock::time_point start = Clock::now();
  // The roll call runs within the timeout, its last window (before: after it, so that the job ended up to
  // 1.25 x --comm-timeout after a rank stopped; interfaces.md: within the timeout). The wait then goes on to
  // the timeout's end, answering the others' roll calls: a call that completes by then did not time out.
  const double window = roll_call::window(timeout_seconds_);
  bool completed = wait_all(requests_, statuses_, timeout_seconds_ - window, &what_);
  if (!completed) {
    const std::string roll = roll_call::ask(what_, seconds_since(start), window,
                                            world_ranks ? *world_ranks : std::vector<int>{});
    const double left = timeout_seconds_ - seconds_since(start);
    completed = test_all(requests_, statuses_) || (left > 0 && wait_all(requests_, statuses_, left, &what_));
    if (!completed) {
      counters_->seconds += seconds_since(start);
      if (family_timed_out) *family_timed_out = true;
      throw CommTimeout(timeout_message(operation_, rank_, size_, timeout_seconds_, roll));
    }
  }
  counters_->seconds += seconds_since(start);
  complete();
}

bool MpiCommunicator::Pending::test() {
  if (done_) return true;
  const Clock::time_point start = Clock::now();
  const bool completed = test_all(requests_, statuses_);
  counters_->seconds += seconds_since(start);
  if (completed) complete();
  return done_;
}

void MpiCommunicator::Pending::complete() {
  done_ = true;
  for (size_t i = 0; i < requests_.size(); ++i) {
    if (expected_recv_[i] < 0) continue;
    int received = 0;
    LONGCTX_CHECK_MPI(MPI_Get_count(&statuses_[i], type, &received));
    if (received != expected_recv_[i]) {
      std::ostringstream message;
      message << "comm " << operation_ << ": rank " << rank_ << " expected " << expected_recv_[i]
              << " elements from rank " << statuses_[i].MPI_SOURCE << " (tag " << statuses_[i].MPI_TAG
              << ") but received " << received << "; a send and its recv must have the same size";
      throw InternalError(message.str());
    }
  }
}

void MpiCommunicator::Pending::abandon() noexcept {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (finalized) return;
  if (!point_to_point) {
    // MPI cannot cancel a collective: leave it in flight with everything it reads, its communicator
    // included (Open MPI's progress of a collective whose communicator was freed segfaults).
    static_cast<void>(new std::vector<int>(std::move(counts)));  // NOLINT: deliberate leak
    static_cast<void>(new std::vector<int>(std::move(displs)));  // NOLINT: deliberate leak
    if (collective_abandoned) *collective_abandoned = true;
    return;
  }
  for (MPI_Request& request : requests_)
    if (request != MPI_REQUEST_NULL) MPI_Cancel(&request);
  const Clock::time_point start = Clock::now();
  while (seconds_since(start) < 0.5) {
    int done = 0;
    if (MPI_Testall(static_cast<int>(requests_.size()), requests_.data(), &done, MPI_STATUSES_IGNORE) !=
            MPI_SUCCESS ||
        done)
      return;
    std::this_thread::sleep_for(std::chrono::microseconds(100));
  }
  for (MPI_Request& request : requests_)
    if (request != MPI_REQUEST_NULL) MPI_Request_free(&request);
}

}  // namespace longctx::comm
