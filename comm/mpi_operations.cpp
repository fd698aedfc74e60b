// MpiCommunicator's operations: each posts non-blocking MPI calls into a Pending (mpi_pending.hpp), split
// at max_count() elements per call as mpi_communicator.cpp's top comment says ("Large counts").
#include <algorithm>
#include <climits>
#include <cstdint>
#include <cstring>
#include <sstream>
#include <utility>

#include "comm/mpi_communicator.hpp"
#include "comm/mpi_pending.hpp"
#include "runtime/core/check.hpp"

namespace longctx::comm {
namespace {

MPI_Datatype mpi_type(DataType type) {
  switch (type) {
    case DataType::f32: return MPI_FLOAT;
    case DataType::f64: return MPI_DOUBLE;
    case DataType::i32: return MPI_INT32_T;
    case DataType::i64: return MPI_INT64_T;
    case DataType::u64: return MPI_UINT64_T;
    case DataType::u8: return MPI_UINT8_T;
  }
  throw InternalError("comm: unknown DataType " + std::to_string(static_cast<int>(type)));
}

MPI_Op mpi_op(ReduceOp op) {
  switch (op) {
    case ReduceOp::sum: return MPI_SUM;
    case ReduceOp::max: return MPI_MAX;
    case ReduceOp::min: return MPI_MIN;
  }
  throw InternalError("comm: unknown ReduceOp " + std::to_string(static_cast<int>(op)));
}

// Calls f(offset, chunk) for consecutive chunks of at most max_count elements covering [0, count).
template <class F>
void for_chunks(size_t count, size_t max_count, F&& f) {
  for (size_t offset = 0; offset < count; offset += max_count)
    f(offset, static_cast<int>(std::min(max_count, count - offset)));
}

const char* at(const void* base, size_t elements, size_t element_bytes) {
  return static_cast<const char*>(base) + elements * element_bytes;
}
char* at(void* base, size_t elements, size_t element_bytes) {
  return static_cast<char*>(base) + elements * element_bytes;
}

size_t checked_sum(const std::vector<size_t>& counts, const char* operation) {
  size_t sum = 0;
  for (size_t c : counts) {
    if (c > SIZE_MAX - sum) throw InternalError(std::string("comm ") + operation + ": counts overflow size_t");
    sum += c;
  }
  return sum;
}

}  // namespace

// ---- gathers -----------------------------------------------------------------------------------------

std::unique_ptr<MpiCommunicator::Pending> MpiCommunicator::start_all_gatherv(
    const void* send, size_t send_count, void* recv, size_t recv_count, const std::vector<size_t>& counts,
    DataType type, const char* operation) {
  const size_t g = static_cast<size_t>(size_);
  const size_t me = static_cast<size_t>(rank_);
  if (counts.size() != g) {
    std::ostringstream message;
    message << "comm " << operation << ": counts has " << counts.size() << " entries, the communicator "
            << size_ << " ranks";
    throw InternalError(message.str());
  }
  const size_t total = checked_sum(counts, operation);
  if (send_count != counts[me] || recv_count != total) {
    std::ostringstream message;
    message << "comm " << operation << " on rank " << rank_ << ": send has " << send_count
            << " elements and recv " << recv_count << "; counts say send " << counts[me] << " and recv "
            << total;
    throw InternalError(message.str());
  }
  const size_t s = size_of(type);
  const MPI_Datatype t = mpi_type(type);
  const size_t max_count = this->max_count(type);
  count_call(all_gatherv_volume(counts, rank_, s));

  auto pending = start(operation);
  pending->type = t;
  const bool even = std::all_of(counts.begin(), counts.end(), [&](size_t c) { return c == counts[0]; });
  if (total <= max_count) {
    MPI_Request request = MPI_REQUEST_NULL;
    if (even) {
      const int n = static_cast<int>(counts[0]);
      LONGCTX_CHECK_MPI(MPI_Iallgather(send, n, t, recv, n, t, comm_, &request));
    } else {
      pending->counts.resize(g);
      pending->displs.resize(g);
      size_t displ = 0;
      for (size_t i = 0; i < g; ++i) {
        pending->counts[i] = static_cast<int>(counts[i]);
        pending->displs[i] = static_cast<int>(displ);
        displ += counts[i];
      }
      LONGCTX_CHECK_MPI(MPI_Iallgatherv(send, pending->counts[me], t, recv, pending->counts.data(),
                                        pending->displs.data(), t, comm_, &request));
    }
    pending->add(request);
    return pending;
  }
  // Too large for int displacements: every rank broadcasts its block into place.
  size_t displ = 0;
  for (size_t i = 0; i < g; ++i) {
    if (i == me && counts[me] > 0) std::memmove(at(recv, displ, s), send, counts[me] * s);
    for_chunks(counts[i], max_count, [&](size_t offset, int chunk) {
      MPI_Request request = MPI_REQUEST_NULL;
      LONGCTX_CHECK_MPI(
          MPI_Ibcast(at(recv, displ + offset, s), chunk, t, static_cast<int>(i), comm_, &request));
      pending->add(request);
    });
    displ += counts[i];
  }
  return pending;
}

Request MpiCommunicator::iall_gather_raw(const void* send, size_t send_count, void* recv, size_t recv_count,
                                         DataType type) {
  return to_request(start_all_gatherv(send, send_count, recv, recv_count,
                                      std::vector<size_t>(static_cast<size_t>(size_), send_count), type,
                                      "all_gather"));
}

Request MpiCommunicator::iall_gatherv_raw(const void* send, size_t send_count, void* recv, size_t recv_count,
                                          const std::vector<size_t>& counts, DataType type) {
  return to_request(start_all_gatherv(send, send_count, recv, recv_count, counts, type, "all_gatherv"));
}

// ---- reductions --------------------------------------------------------------------------------------

std::unique_ptr<MpiCommunicator::Pending> MpiCommunicator::start_reduce_scatter(
    const void* send, size_t send_count, void* recv, size_t recv_count, const std::vector<size_t>& counts,
    DataType type, ReduceOp op) {
  const char* operation = "reduce_scatter";
  const size_t g = static_cast<size_t>(size_);
  const size_t me = static_cast<size_t>(rank_);
  if (counts.size() != g) {
    std::ostringstream message;
    message << "comm " << operation << ": counts has " << counts.size() << " entries, the communicator "
            << size_ << " ranks";
    throw InternalError(message.str());
  }
  const size_t total = checked_sum(counts, operation);
  if (send_count != total || recv_count != counts[me]) {
    std::ostringstream message;
    message << "comm " << operation << " on rank " << rank_ << ": send has " << send_count
            << " elements and recv " << recv_count << "; counts say send " << total << " and recv "
            << counts[me];
    throw InternalError(message.str());
  }
  const size_t s = size_of(type);
  const MPI_Datatype t = mpi_type(type);
  const MPI_Op o = mpi_op(op);
  const size_t max_count = this->max_count(type);
  count_call(reduce_scatter_volume(counts, rank_, s));

  auto pending = start(operation);
  pending->type = t;
  if (total <= max_count) {
    pending->counts.resize(g);
    for (size_t i = 0; i < g; ++i) pending->counts[i] = static_cast<int>(counts[i]);
    MPI_Request request = MPI_REQUEST_NULL;
    LONGCTX_CHECK_MPI(MPI_Ireduce_scatter(send, recv, pending->counts.data(), t, o, comm_, &request));
    pending->add(request);
    return pending;
  }
  // Too large for one call: reduce each block to its owner, in chunks.
  size_t displ = 0;
  for (size_t i = 0; i < g; ++i) {
    for_chunks(counts[i], max_count, [&](size_t offset, int chunk) {
      MPI_Request request = MPI_REQUEST_NULL;
      void* target = i == me ? at(recv, offset, s) : nullptr;
      LONGCTX_CHECK_MPI(MPI_Ireduce(at(send, displ + offset, s), target, chunk, t, o, static_cast<int>(i),
                                    comm_, &request));
      pending->add(request);
    });
    displ += counts[i];
  }
  return pending;
}

Request MpiCommunicator::ireduce_scatter_raw(const void* send, size_t send_count, void* recv,
                                             size_t recv_count, const std::vector<size_t>& counts,
                                             DataType type, ReduceOp op) {
  return to_request(start_reduce_scatter(send, send_count, recv, recv_count, counts, type, op));
}

std::unique_ptr<MpiCommunicator::Pending> MpiCommunicator::start_all_reduce(void* data, size_t count,
                                                                            DataType type, ReduceOp op) {
  const size_t s = size_of(type);
  const MPI_Datatype t = mpi_type(type);
  const MPI_Op o = mpi_op(op);
  count_call(all_reduce_volume(count, size_, rank_, s));

  auto pending = start("all_reduce");
  pending->type = t;
  for_chunks(count, max_count(type), [&](size_t offset, int chunk) {
    MPI_Request request = MPI_REQUEST_NULL;
    LONGCTX_CHECK_MPI(MPI_Iallreduce(MPI_IN_PLACE, at(data, offset, s), chunk, t, o, comm_, &request));
    pending->add(request);
  });
  return pending;
}

Request MpiCommunicator::iall_reduce_raw(void* data, size_t count, DataType type, ReduceOp op) {
  return to_request(start_all_reduce(data, count, type, op));
}

// ---- broadcast, barrier ------------------------------------------------------------------------------

std::unique_ptr<MpiCommunicator::Pending> MpiCommunicator::start_broadcast(void* data, size_t count,
                                                                           DataType type, int root) {
  check_rank(root, "root", "broadcast");
  const size_t s = size_of(type);
  const MPI_Datatype t = mpi_type(type);
  count_call(broadcast_volume(count, size_, rank_, root, s));

  auto pending = start("broadcast");
  pending->type = t;
  for_chunks(count, max_count(type), [&](size_t offset, int chunk) {
    MPI_Request request = MPI_REQUEST_NULL;
    LONGCTX_CHECK_MPI(MPI_Ibcast(at(data, offset, s), chunk, t, root, comm_, &request));
    pending->add(request);
  });
  return pending;
}

Request MpiCommunicator::ibroadcast_raw(void* data, size_t count, DataType type, int root) {
  return to_request(start_broadcast(data, count, type, root));
}

void MpiCommunicator::barrier() {
  count_call({});
  auto pending = start("barrier");
  MPI_Request request = MPI_REQUEST_NULL;
  LONGCTX_CHECK_MPI(MPI_Ibarrier(comm_, &request));
  pending->add(request);
  finish(std::move(pending));
}

// ---- point to point ----------------------------------------------------------------------------------

// An MPI_Isend of `data` to `peer`, or an MPI_Irecv into it from `peer`, in chunks of at most max_count
// elements. A zero-length message still posts one request: the other side's must be matched.
std::unique_ptr<MpiCommunicator::Pending> MpiCommunicator::start_point_to_point(Direction direction, void* data,
                                                                                size_t count, DataType type, int peer,
                                                                                int tag) {
  const bool send = direction == Direction::send;
  const char* const operation = send ? "send" : "recv";
  check_rank(peer, send ? "destination" : "source", operation);
  check_tag(tag, operation);
  const size_t s = size_of(type);
  const MPI_Datatype t = mpi_type(type);
  count_call(send ? send_volume(count, rank_, peer, s) : recv_volume(count, rank_, peer, s));

  auto pending = start(operation, (send ? "to rank " : "from rank ") + std::to_string(peer) + " (tag " +
                                      std::to_string(tag) + ")");
  pending->type = t;
  pending->point_to_point = true;
  const auto post = [&](void* buffer, int chunk) {
    MPI_Request request = MPI_REQUEST_NULL;
    if (send) {
      LONGCTX_CHECK_MPI(MPI_Isend(buffer, chunk, t, peer, tag, comm_, &request));
      pending->add(request);
    } else {
      LONGCTX_CHECK_MPI(MPI_Irecv(buffer, chunk, t, peer, tag, comm_, &request));
      pending->add(request, chunk);
    }
  };
  for_chunks(count, max_count(type), [&](size_t offset, int chunk) { post(at(data, offset, s), chunk); });
  if (count == 0) post(data, 0);
  return pending;
}

Request MpiCommunicator::isend_raw(const void* data, size_t count, DataType type, int dest, int tag) {
  // MPI_Isend only reads the buffer.
  return to_request(start_point_to_point(Direction::send, const_cast<void*>(data), count, type, dest, tag));
}

Request MpiCommunicator::irecv_raw(void* data, size_t count, DataType type, int source, int tag) {
  return to_request(start_point_to_point(Direction::recv, data, count, type, source, tag));
}

}  // namespace longctx::comm
