// Backend-independent parts of the communicator interface: element sizes and the Request handle.
//
// Request lifetime: wait() hands the pending operation to the backend and, whether it returns or throws
// (CommTimeout, a failed library call), the Request is no longer pending afterwards; a backend's Impl
// destructor releases whatever an unfinished operation still holds (the MPI backend cancels
// point-to-point operations and abandons collectives, which MPI cannot cancel). A Request that is
// destroyed or assigned over while pending is waited for; a failure there cannot be thrown out of a
// destructor or a noexcept move, so it is logged on this rank (log::error) and the operation is
// abandoned as above. Once a wait of its communicator's family has timed out, it is abandoned without
// waiting (worth_waiting_for): the job is ending, and the rank that timed out must end it within its
// timeout, not after one more for each operation in flight. The job does not hang and does not
// std::terminate: the failure that caused it (a peer gone or diverged) surfaces loudly at that rank's next
// communicator call.
#include "comm/communicator.hpp"

#include <exception>

#include "runtime/core/log.hpp"

namespace longctx::comm {

size_t size_of(DataType type) {
  switch (type) {
    case DataType::f32: return 4;
    case DataType::f64: return 8;
    case DataType::i32: return 4;
    case DataType::i64: return 8;
    case DataType::u64: return 8;
    case DataType::u8: return 1;
  }
  throw InternalError("comm: unknown DataType " + std::to_string(static_cast<int>(type)));
}

Volume all_gatherv_volume(const std::vector<size_t>& counts, int me, size_t s) {
  size_t total = 0;
  for (size_t c : counts) total += c;
  const size_t mine = counts[static_cast<size_t>(me)];
  return {(counts.size() - 1) * mine * s, (total - mine) * s};
}

Volume reduce_scatter_volume(const std::vector<size_t>& counts, int me, size_t s) {
  const Volume gather = all_gatherv_volume(counts, me, s);  // the same blocks, the other way round
  return {gather.received, gather.sent};
}

Volume all_reduce_volume(size_t count, int g, int me, size_t s) {
  const size_t ranks = static_cast<size_t>(g);
  const size_t block = count / ranks + (static_cast<size_t>(me) < count % ranks ? 1 : 0);  // the even split
  const uint64_t bytes = (count - block) * s + (ranks - 1) * block * s;
  return {bytes, bytes};
}

Volume broadcast_volume(size_t count, int g, int me, int root, size_t s) {
  if (me == root) return {static_cast<uint64_t>(g - 1) * count * s, 0};
  return {0, count * s};
}

Volume send_volume(size_t count, int me, int dest, size_t s) { return {dest == me ? 0 : count * s, 0}; }
Volume recv_volume(size_t count, int me, int source, size_t s) { return {0, source == me ? 0 : count * s}; }

bool Request::finish_or_abandon() noexcept {
  if (!impl_) return true;
  std::unique_ptr<Impl> pending = std::move(impl_);
  if (!pending->worth_waiting_for()) return false;  // ~Impl abandons it
  try {
    pending->wait();
    return true;
  } catch (const std::exception& e) {
    log::error(std::string("comm: a pending request was destroyed and could not complete; abandoned: ") +
               e.what());
  } catch (...) {
    log::error("comm: a pending request was destroyed and could not complete (unknown error); abandoned");
  }
  return false;
}

Request& Request::operator=(Request&& other) noexcept {
  if (this != &other) {
    finish_or_abandon();
    impl_ = std::move(other.impl_);
  }
  return *this;
}

Request::~Request() { finish_or_abandon(); }

std::string broadcast_text(Communicator& comm, const std::string& text, int root) {
  std::vector<int64_t> length{static_cast<int64_t>(text.size())};
  comm.broadcast(Span<int64_t>(length), root);
  std::vector<char> bytes(static_cast<size_t>(length[0]));
  if (comm.rank() == root) bytes.assign(text.begin(), text.end());
  comm.broadcast(Span<char>(bytes), root);
  return std::string(bytes.begin(), bytes.end());
}

void Request::wait() {
  if (!impl_) return;
  std::unique_ptr<Impl> pending = std::move(impl_);
  pending->wait();
}

bool Request::test() {
  if (!impl_) return true;
  bool done = false;
  try {
    done = impl_->test();
  } catch (...) {
    impl_.reset();
    throw;
  }
  if (done) impl_.reset();
  return done;
}

}  // namespace longctx::comm
