// An operation of MpiCommunicator in flight (its MPI requests and what they need until completion) and
// the timed wait every operation ends in. The protocol (post, timed wait, roll call, what an operation that
// never completes leaves behind) is mpi_communicator.cpp's top comment. Internal to comm/.
#pragma once

#include <mpi.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "comm/mpi_communicator.hpp"

namespace longctx::comm {
namespace mpi_wait {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start);
// One MPI_Testall; true once every request is complete. An error in one request is reported with that
// request's own error code rather than MPI_ERR_IN_STATUS.
bool test_all(std::vector<MPI_Request>& requests, std::vector<MPI_Status>& statuses);
// Polls until every request completes (true) or timeout_seconds pass (false). With `what` (the call
// waited for), it answers other ranks' roll calls between naps.
bool wait_all(std::vector<MPI_Request>& requests, std::vector<MPI_Status>& statuses, double timeout_seconds,
              const std::string* what = nullptr);
// CommTimeout's text: with the roll call's summary when there is one; a guess otherwise.
std::string timeout_message(const std::string& operation, int rank, int size, double timeout_seconds,
                            const std::string& roll_call = "");

}  // namespace mpi_wait

class MpiCommunicator::Pending final : public Request::Impl {
 public:
  // `what` names the call for the roll call: "all_gather #7 on the world communicator".
  Pending(const char* operation, std::string what, std::shared_ptr<Counters> counters, double timeout_seconds,
          int rank, int size)
      : operation_(operation), what_(std::move(what)), counters_(std::move(counters)),
        timeout_seconds_(timeout_seconds), rank_(rank), size_(size), posted_(mpi_wait::Clock::now()) {}
  Pending(const Pending&) = delete;
  Pending& operator=(const Pending&) = delete;

  ~Pending() override {
    if (!done_) abandon();
  }

  void add(MPI_Request request, int expected_recv_count = -1) {
    requests_.push_back(request);
    statuses_.emplace_back();
    expected_recv_.push_back(expected_recv_count);
  }

  // Charged once, after posting: the time spent posting.
  void charge_posting() { counters_->seconds += mpi_wait::seconds_since(posted_); }

  void wait() override;
  bool test() override;
  bool worth_waiting_for() const override { return !(family_timed_out && *family_timed_out); }

  bool point_to_point = false;
  std::shared_ptr<std::atomic<bool>> family_timed_out;  // its communicator's (MpiCommunicator::family_timed_out_)
  std::shared_ptr<const std::vector<int>> world_ranks;  // of its communicator's ranks: the roll call's "members"
  std::shared_ptr<bool> collective_abandoned;  // its communicator's: set when a collective is left in flight
  std::vector<int> counts;  // argument arrays of v-collectives: MPI reads them until completion
  std::vector<int> displs;
  MPI_Datatype type = MPI_DATATYPE_NULL;

 private:
  void complete();
  void abandon() noexcept;

  std::string operation_;
  std::string what_;
  std::shared_ptr<Counters> counters_;
  double timeout_seconds_;
  int rank_;
  int size_;
  mpi_wait::Clock::time_point posted_;
  std::vector<MPI_Request> requests_;
  std::vector<MPI_Status> statuses_;
  std::vector<int> expected_recv_;  // per request: elements a receive must deliver; -1 otherwise
  bool done_ = false;
};

}  // namespace longctx::comm
