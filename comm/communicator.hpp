// The communicator interface the rest of longctx uses. Backends (MPI now, NCCL later) implement the
// untyped virtual operations; callers use the typed wrappers, so an element count can never be passed
// where a byte count is meant.
//
// Byte counters count payload exchanged with OTHER ranks only, by the logical volume of each collective
// (independent of the algorithm the library picks), with g = size() and s = sizeof(T):
//   all_gather(n per rank)        sent (g-1)*n*s                 received (g-1)*n*s
//   all_gatherv(counts c)         sent (g-1)*c[me]*s             received (sum(c) - c[me])*s
//   reduce_scatter(counts c)      sent (sum(c) - c[me])*s        received (g-1)*c[me]*s
//   all_reduce(n)                 = reduce_scatter over the even split of n (first n%g blocks one
//                                   larger) followed by all_gather of the same blocks:
//                                   sent = received = (n - b[me])*s + (g-1)*b[me]*s
//   broadcast(n, root)            root sent (g-1)*n*s; every other rank received n*s
//   send / recv (n)               n*s, one side each
//   barrier                       nothing
// Every call counts 1 in `calls`; `seconds` is wall time spent inside calls and waits. A
// sub-communicator adds into its parent's counters, so a rank's totals cover all of its traffic.
//
// Every blocking call and every wait gives up after the communicator's timeout and throws
// CommTimeout: a peer that died or diverged makes this rank fail loudly (and main() aborts the job)
// instead of hanging.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "runtime/core/error.hpp"
#include "runtime/core/span.hpp"

namespace longctx::comm {

enum class DataType { f32, f64, i32, i64, u64, u8 };
enum class ReduceOp { sum, max, min };

template <class T>
struct DataTypeOf;
template <> struct DataTypeOf<float> { static constexpr DataType value = DataType::f32; };
template <> struct DataTypeOf<double> { static constexpr DataType value = DataType::f64; };
template <> struct DataTypeOf<int32_t> { static constexpr DataType value = DataType::i32; };
template <> struct DataTypeOf<int64_t> { static constexpr DataType value = DataType::i64; };
// (Its own type, not i64: max / min of values of 2^63 and more compared them as negative.)
template <> struct DataTypeOf<uint64_t> { static constexpr DataType value = DataType::u64; };
template <> struct DataTypeOf<uint8_t> { static constexpr DataType value = DataType::u8; };
template <> struct DataTypeOf<char> { static constexpr DataType value = DataType::u8; };

size_t size_of(DataType type);

// The table above as functions, for the backends: what one call adds to this rank's byte counters
// (g ranks, this rank `me`, elements of s bytes).
struct Volume {
  uint64_t sent = 0;
  uint64_t received = 0;
};
Volume all_gatherv_volume(const std::vector<size_t>& counts, int me, size_t s);
Volume reduce_scatter_volume(const std::vector<size_t>& counts, int me, size_t s);
Volume all_reduce_volume(size_t count, int g, int me, size_t s);
Volume broadcast_volume(size_t count, int g, int me, int root, size_t s);
Volume send_volume(size_t count, int me, int dest, size_t s);    // nothing to itself
Volume recv_volume(size_t count, int me, int source, size_t s);  // nothing from itself

struct Counters {
  uint64_t bytes_sent = 0;      // payload sent to other ranks
  uint64_t bytes_received = 0;  // payload received from other ranks
  uint64_t calls = 0;           // collective / point-to-point calls started
  double seconds = 0;           // wall time inside calls and waits
};

class CommTimeout : public InternalError {
 public:
  explicit CommTimeout(const std::string& message) : InternalError(message) {}
};

// A pending non-blocking operation. wait() completes it (throws CommTimeout past the timeout);
// destroying a Request that was never waited for waits for it, unless a wait on its communicator (or
// one of its family: parent, subs) has already timed out: the job is ending then, and each such wait could
// take another whole timeout before the rank gets to end it (a branch's gather in flight, the backward's
// reduce-scatters), so it is abandoned at once.
class Request {
 public:
  struct Impl {
    virtual ~Impl() = default;
    virtual void wait() = 0;
    virtual bool test() = 0;  // true once complete
    // Whether a Request destroyed while pending waits for it (above); false: its destructor abandons it.
    virtual bool worth_waiting_for() const { return true; }
  };
  Request() = default;
  explicit Request(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
  Request(Request&&) noexcept = default;
  Request& operator=(Request&& other) noexcept;
  ~Request();

  void wait();
  bool test();
  bool pending() const { return impl_ != nullptr; }
  bool worth_waiting_for() const { return impl_ && impl_->worth_waiting_for(); }
  // What the destructor does: waits for a pending operation (when worth_waiting_for()), logging a failure
  // instead of throwing it. True when nothing is left in flight: it completed, or none was pending; false
  // when it was abandoned, and whatever buffers it uses may still be written.
  bool finish_or_abandon() noexcept;

 private:
  std::unique_ptr<Impl> impl_;
};

class Communicator {
 public:
  virtual ~Communicator() = default;

  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual std::string backend() const = 0;
  // Whether the main thread may test this communicator's requests while other threads of the process
  // compute (MPI: the library gave MPI_THREAD_FUNNELED or more). Without it, a caller tests them only
  // between its parallel regions.
  virtual bool testable_while_threads_compute() const { return false; }

  // ---- typed interface ---------------------------------------------------------------------------
  // Each blocking call is its non-blocking twin below, waited for: a backend implements only those.
  // recv.size() == send.size() * size()
  template <class T> void all_gather(Span<const T> send, Span<T> recv) { iall_gather(send, recv).wait(); }
  // counts[i]: elements from rank i; recv is their concatenation in rank order.
  template <class T> void all_gatherv(Span<const T> send, Span<T> recv, const std::vector<size_t>& counts) {
    iall_gatherv(send, recv, counts).wait();
  }
  // send is the concatenation of blocks of counts[i] elements; this rank receives the reduced block
  // counts[rank()].
  template <class T>
  void reduce_scatter(Span<const T> send, Span<T> recv, const std::vector<size_t>& counts,
                      ReduceOp op = ReduceOp::sum) {
    ireduce_scatter(send, recv, counts, op).wait();
  }
  template <class T> void all_reduce(Span<T> data, ReduceOp op = ReduceOp::sum) { iall_reduce(data, op).wait(); }
  template <class T> void broadcast(Span<T> data, int root) { ibroadcast(data, root).wait(); }
  template <class T> void send(Span<const T> data, int dest, int tag = 0) { isend(data, dest, tag).wait(); }
  template <class T> void recv(Span<T> data, int source, int tag = 0) { irecv(data, source, tag).wait(); }
  virtual void barrier() = 0;

  // Non-blocking twins: buffers must stay alive and untouched until the Request completes.
  template <class T> Request iall_gather(Span<const T> send, Span<T> recv) {
    return iall_gather_raw(send.data(), send.size(), recv.data(), recv.size(), type<T>());
  }
  template <class T>
  Request iall_gatherv(Span<const T> send, Span<T> recv, const std::vector<size_t>& counts) {
    return iall_gatherv_raw(send.data(), send.size(), recv.data(), recv.size(), counts, type<T>());
  }
  template <class T>
  Request ireduce_scatter(Span<const T> send, Span<T> recv, const std::vector<size_t>& counts,
                          ReduceOp op = ReduceOp::sum) {
    return ireduce_scatter_raw(send.data(), send.size(), recv.data(), recv.size(), counts, type<T>(), op);
  }
  template <class T> Request iall_reduce(Span<T> data, ReduceOp op = ReduceOp::sum) {
    return iall_reduce_raw(data.data(), data.size(), type<T>(), op);
  }
  template <class T> Request ibroadcast(Span<T> data, int root) {
    return ibroadcast_raw(data.data(), data.size(), type<T>(), root);
  }
  template <class T> Request isend(Span<const T> data, int dest, int tag = 0) {
    return isend_raw(data.data(), data.size(), type<T>(), dest, tag);
  }
  template <class T> Request irecv(Span<T> data, int source, int tag = 0) {
    return irecv_raw(data.data(), data.size(), type<T>(), source, tag);
  }

  // A communicator over ranks [first, first + count) of this one, ranked in the same order.
  // Collective over those ranks only: ranks outside the range must not call it.
  virtual std::unique_ptr<Communicator> sub(int first, int count) = 0;

  const Counters& counters() const { return *counters_; }
  void reset_counters() { *counters_ = Counters{}; }

  double timeout_seconds() const { return timeout_seconds_; }
  void set_timeout_seconds(double seconds) { timeout_seconds_ = seconds; }

  // Ends every rank of the job with `exit_code` (never returns).
  [[noreturn]] virtual void abort(int exit_code) = 0;

 protected:
  friend class StagedCommunicator;  // forwards the raw calls of the communicator it stages through

  Communicator() : counters_(std::make_shared<Counters>()) {}
  Communicator(std::shared_ptr<Counters> counters, double timeout_seconds)
      : counters_(std::move(counters)), timeout_seconds_(timeout_seconds) {}

  template <class T> static DataType type() { return DataTypeOf<std::remove_const_t<T>>::value; }

  virtual Request iall_gather_raw(const void* send, size_t send_count, void* recv, size_t recv_count,
                                  DataType type) = 0;
  virtual Request iall_gatherv_raw(const void* send, size_t send_count, void* recv, size_t recv_count,
                                   const std::vector<size_t>& counts, DataType type) = 0;
  virtual Request ireduce_scatter_raw(const void* send, size_t send_count, void* recv, size_t recv_count,
                                      const std::vector<size_t>& counts, DataType type, ReduceOp op) = 0;
  virtual Request iall_reduce_raw(void* data, size_t count, DataType type, ReduceOp op) = 0;
  virtual Request ibroadcast_raw(void* data, size_t count, DataType type, int root) = 0;
  virtual Request isend_raw(const void* data, size_t count, DataType type, int dest, int tag) = 0;
  virtual Request irecv_raw(void* data, size_t count, DataType type, int source, int tag) = 0;

  std::shared_ptr<Counters> counters_;
  double timeout_seconds_ = 600;
};

// `text` of rank `root`, on every rank (its length, then its bytes): collective.
std::string broadcast_text(Communicator& comm, const std::string& text, int root);

}  // namespace longctx::comm
