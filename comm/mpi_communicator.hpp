// The MPI backend of the communicator (host buffers). See mpi_communicator.cpp for the protocol: every
// call is a non-blocking MPI call followed by a timed wait, and no single MPI call is given more than
// max_count() elements, so counts beyond INT_MAX are split rather than truncated.
#pragma once

#include <mpi.h>

#include <atomic>
#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "comm/communicator.hpp"

namespace longctx::comm {

class MpiCommunicator : public Communicator {
 public:
  // Takes ownership of `comm` (freed in the destructor); the caller must not use or free it.
  MpiCommunicator(MPI_Comm comm, std::shared_ptr<Counters> counters, double timeout_seconds);
  ~MpiCommunicator() override;
  MpiCommunicator(const MpiCommunicator&) = delete;
  MpiCommunicator& operator=(const MpiCommunicator&) = delete;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string backend() const override { return "mpi"; }
  bool testable_while_threads_compute() const override;
  MPI_Comm handle() const { return comm_; }

  void barrier() override;
  std::unique_ptr<Communicator> sub(int first, int count) override;
  [[noreturn]] void abort(int exit_code) override;

  // Most elements handed to one MPI call, per element type. 0 (the default) means min(INT_MAX, 1 GiB
  // worth of elements). Tests lower it to drive the split paths with small buffers; it must be the
  // same on every rank. Sub-communicators inherit it.
  void set_max_count(size_t count) { max_count_override_ = count; }
  size_t max_count(DataType type) const;

  // What the roll call calls this communicator in its messages: `name` ("the world communicator",
  // "sub-communicator #2 of the world communicator") and, `with_ranks`, its world ranks.
  void name(const std::string& name, bool with_ranks = true);

 protected:
  Request iall_gather_raw(const void* send, size_t send_count, void* recv, size_t recv_count,
                          DataType type) override;
  Request iall_gatherv_raw(const void* send, size_t send_count, void* recv, size_t recv_count,
                           const std::vector<size_t>& counts, DataType type) override;
  Request ireduce_scatter_raw(const void* send, size_t send_count, void* recv, size_t recv_count,
                              const std::vector<size_t>& counts, DataType type, ReduceOp op) override;
  Request iall_reduce_raw(void* data, size_t count, DataType type, ReduceOp op) override;
  Request ibroadcast_raw(void* data, size_t count, DataType type, int root) override;
  Request isend_raw(const void* data, size_t count, DataType type, int dest, int tag) override;
  Request irecv_raw(void* data, size_t count, DataType type, int source, int tag) override;

 private:
  class Pending;  // an operation in flight: its MPI requests and what they need until completion

  // `peer` ("to rank 2 (tag 9)") for point-to-point calls, "" for collectives.
  std::unique_ptr<Pending> start(const char* operation, const std::string& peer = "") const;
  std::unique_ptr<Pending> start_all_gatherv(const void* send, size_t send_count, void* recv,
                                             size_t recv_count, const std::vector<size_t>& counts,
                                             DataType type, const char* operation);
  std::unique_ptr<Pending> start_reduce_scatter(const void* send, size_t send_count, void* recv,
                                                size_t recv_count, const std::vector<size_t>& counts,
                                                DataType type, ReduceOp op);
  std::unique_ptr<Pending> start_all_reduce(void* data, size_t count, DataType type, ReduceOp op);
  std::unique_ptr<Pending> start_broadcast(void* data, size_t count, DataType type, int root);
  enum class Direction { send, recv };
  std::unique_ptr<Pending> start_point_to_point(Direction direction, void* data, size_t count, DataType type, int peer,
                                                int tag);
  static Request to_request(std::unique_ptr<Pending> pending);
  static void finish(std::unique_ptr<Pending> pending);
  void count_call(Volume volume) const;
  void check_rank(int peer, const char* what, const char* operation) const;
  void check_tag(int tag, const char* operation) const;
  // sub()'s members meet before MPI_Comm_create_group, which has no timeout (mpi_communicator.cpp):
  // sub() number `number` of this communicator, on its own tag among the top kMeetingTags.
  void meet(int first, int count, long number) const;
  static constexpr int kMeetingTags = 1024;
  int max_tag() const { return tag_ub_ - kMeetingTags; }  // callers' tags: [0, max_tag()]

  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0;
  int size_ = 0;
  size_t max_count_override_ = 0;
  int tag_ub_ = 32767;  // MPI_TAG_UB of comm_; the standard guarantees at least 32767
  std::shared_ptr<const std::vector<int>> world_ranks_;  // world rank of each of its ranks
  std::string name_;       // "the world communicator", "sub-communicator #2 of the world communicator"
  std::string described_;  // name_ and the world ranks: what the roll call says
  mutable long collectives_posted_ = 0;
  long subs_made_ = 0;
  // A collective left in flight (timed out) keeps using comm_: then the destructor does not free it.
  std::shared_ptr<bool> collective_abandoned_ = std::make_shared<bool>(false);
  // Shared with its parent and its subs: a wait on one of them timed out (Request::worth_waiting_for).
  std::shared_ptr<std::atomic<bool>> family_timed_out_ = std::make_shared<std::atomic<bool>>(false);
};

// A communicator over a duplicate of MPI_COMM_WORLD. MPI must already be initialised by the caller.
// Throws UsageError unless timeout_seconds > 0. Collective over the world; the first call also opens
// the roll call (mpi_roll_call.hpp).
std::unique_ptr<Communicator> make_mpi_world(double timeout_seconds);

}  // namespace longctx::comm
