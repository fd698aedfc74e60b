// MPI backend of the communicator.
//
// Protocol. Every operation, blocking or not, is posted as one or more non-blocking MPI calls on this
// communicator's own MPI_Comm (a duplicate, so library traffic never matches the caller's). A blocking
// call is "post, then timed wait"; the non-blocking twin returns the posted operation as a Request.
// The timed wait polls MPI_Testall, spinning briefly, then yielding, then sleeping from 1 us doubling to
// 1 ms, and throws CommTimeout (operation, rank, communicator size, timeout) once timeout_seconds() has
// passed: a peer that died or called a different operation makes this rank fail, never hang. Before it
// throws, a roll call (mpi_roll_call.hpp) asks the other ranks what they wait in, and the message names
// the ranks that are elsewhere or silent; while waiting, a rank answers the others' roll calls. MPI
// reports errors to us (MPI_ERRORS_RETURN) and every call goes through LONGCTX_CHECK_MPI.
//
// Large counts. No single MPI call is given more than max_count() elements (default: INT_MAX, and at
// most 1 GiB per call, because some Open MPI 4 transports mishandle single messages of 2 GiB or more).
// Larger operations are split, and every rank splits the same way because the split depends only on
// arguments that every rank must pass identically:
//   all_reduce, broadcast      consecutive chunks, one MPI call each, posted in the same order everywhere
//   send / recv                consecutive chunks with the same tag; MPI's non-overtaking rule pairs them
//                              in order, so a send and its recv must have the same element count (a recv
//                              that gets fewer elements than it asked for throws InternalError, or, when
//                              a whole chunk is missing, CommTimeout)
//   all_gather(v)              one MPI_Iallgather(v) while sum(counts) <= max_count (its displacements
//                              are int); otherwise one chunked MPI_Ibcast per root into recv
//   reduce_scatter             one MPI_Ireduce_scatter while sum(counts) <= max_count; otherwise one
//                              chunked MPI_Ireduce per block to its owner
// Several non-blocking collectives may be in flight on one communicator: MPI matches them in posting
// order, and every rank posts the same sequence.
//
// Counters follow the table in communicator.hpp (logical volume, other ranks only; a send or receive
// with oneself counts no bytes). They are charged when an operation is posted; `seconds` adds the time
// spent posting and the time spent in wait()/test(). sub() and construction count nothing.
//
// An operation that never completes (wait timed out, or its Request was abandoned): point-to-point
// requests are cancelled (MPI_Cancel, then a bounded poll, then MPI_Request_free); collectives cannot be
// cancelled in MPI, so their requests and argument arrays are deliberately leaked, and their communicator
// is never freed (Open MPI's progress of a collective whose communicator was freed segfaults). The job is failing
// at that point; what matters is that this rank goes on to report it rather than block.
//
// sub() uses MPI_Comm_create_group, which is collective over the members only and has no non-blocking
// form or timeout: a member that never came (stalled before it, outside MPI) hung the others in it
// forever. So the members meet first, with timed point-to-point messages: each tells the first member it
// is here and waits for its go; only then do they call MPI_Comm_create_group, which returns promptly with
// everyone inside. Each meeting has its own tag among the communicator's top 1024 (refused to callers),
// numbered by the sub() calls made of this communicator, which every member makes in one order: a
// message left by a meeting that timed out (sends cannot be cancelled) never stands in for a later one.
// A member that times out still leaves the others in MPI_Comm_create_group if they met without it (its
// "here" had arrived): that ends with the job, which a timeout always ends (main's MPI_Abort). A member
// that stops between the meeting and the call is left to the watchdog (runtime/core/watchdog.hpp).
#include "comm/mpi_communicator.hpp"

#include <sched.h>

#include <algorithm>
#include <chrono>
#include <climits>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <sstream>
#include <thread>
#include <utility>

#include "comm/mpi_roll_call.hpp"
#include "runtime/core/activity.hpp"
#include "runtime/core/check.hpp"
#include "runtime/core/watchdog.hpp"

namespace longctx::comm {
namespace {

using Clock = std::chrono::steady_clock;

constexpr int kSubCommTag = 7411;  // MPI_Comm_create_group tag for sub(); calls are sequential per rank
constexpr size_t kMaxBytesPerCall = size_t{1} << 30;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

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

// One MPI_Testall; true once every request is complete. An error in one request is reported with that
// request's own error code rather than MPI_ERR_IN_STATUS.
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

// Polls until every request completes (true) or timeout_seconds pass (false). With `what` (the call
// waited for), it answers other ranks' roll calls between naps.
bool wait_all(std::vector<MPI_Request>& requests, std::vector<MPI_Status>& statuses, double timeout_seconds,
              const std::string* what = nullptr) {
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

// With the roll call's summary when there is one; a guess otherwise.
std::string timeout_message(const std::string& operation, int rank, int size, double timeout_seconds,
                            const std::string& roll_call = "") {
  std::ostringstream message;
  const std::string doing = activity::current();
  message << "comm " << operation << " timed out after " << timeout_seconds << " s on rank " << rank
          << " of a " << size << "-rank MPI communicator (process rank " << process_rank() << " on "
          << process_host() << ")" << (doing.empty() ? "" : " while " + doing)
          << (roll_call.empty() ? ": a peer rank probably failed, exited or called a different operation"
                                : ". " + roll_call);
  return message.str();
}

// The world rank of each rank of `comm`, in its rank order.
std::vector<int> world_ranks_of(MPI_Comm comm) {
  MPI_Group group = MPI_GROUP_NULL, world = MPI_GROUP_NULL;
  LONGCTX_CHECK_MPI(MPI_Comm_group(comm, &group));
  LONGCTX_CHECK_MPI(MPI_Comm_group(MPI_COMM_WORLD, &world));
  int size = 0;
  MPI_Group_size(group, &size);
  std::vector<int> ranks(static_cast<size_t>(size)), world_ranks(static_cast<size_t>(size));
  for (int i = 0; i < size; ++i) ranks[static_cast<size_t>(i)] = i;
  const int rc = MPI_Group_translate_ranks(group, size, ranks.data(), world, world_ranks.data());
  MPI_Group_free(&group);
  MPI_Group_free(&world);
  LONGCTX_CHECK_MPI(rc);
  return world_ranks;
}

}  // namespace

// ---- an operation in flight --------------------------------------------------------------------------

class MpiCommunicator::Pending final : public Request::Impl {
 public:
  // `what` names the call for the roll call: "all_gather #7 on the world communicator".
  Pending(const char* operation, std::string what, std::shared_ptr<Counters> counters, double timeout_seconds,
          int rank, int size)
      : operation_(operation), what_(std::move(what)), counters_(std::move(counters)),
        timeout_seconds_(timeout_seconds), rank_(rank), size_(size), posted_(Clock::now()) {}
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
  void charge_posting() { counters_->seconds += seconds_since(posted_); }

  void wait() override {
    if (done_) return;
    const Clock::time_point start = Clock::now();
    const bool completed = wait_all(requests_, statuses_, timeout_seconds_, &what_);
    counters_->seconds += seconds_since(start);
    if (!completed) {
      const std::string roll = roll_call::ask(what_, seconds_since(start), roll_call::window(timeout_seconds_),
                                              world_ranks ? *world_ranks : std::vector<int>{});
      if (!test_all(requests_, statuses_)) {  // it may have completed meanwhile: then it did not time out
        if (family_timed_out) *family_timed_out = true;
        throw CommTimeout(timeout_message(operation_, rank_, size_, timeout_seconds_, roll));
      }
    }
    complete();
  }

  bool test() override {
    if (done_) return true;
    const Clock::time_point start = Clock::now();
    const bool completed = test_all(requests_, statuses_);
    counters_->seconds += seconds_since(start);
    if (completed) complete();
    return done_;
  }

  bool worth_waiting_for() const override { return !(family_timed_out && *family_timed_out); }

  bool point_to_point = false;
  std::shared_ptr<std::atomic<bool>> family_timed_out;  // its communicator's (MpiCommunicator::family_timed_out_)
  std::shared_ptr<const std::vector<int>> world_ranks;  // of its communicator's ranks: the roll call's "members"
  std::shared_ptr<bool> collective_abandoned;  // its communicator's: set when a collective is left in flight
  std::vector<int> counts;  // argument arrays of v-collectives: MPI reads them until completion
  std::vector<int> displs;
  MPI_Datatype type = MPI_DATATYPE_NULL;

 private:
  void complete() {
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

  void abandon() noexcept {
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

  std::string operation_;
  std::string what_;
  std::shared_ptr<Counters> counters_;
  double timeout_seconds_;
  int rank_;
  int size_;
  Clock::time_point posted_;
  std::vector<MPI_Request> requests_;
  std::vector<MPI_Status> statuses_;
  std::vector<int> expected_recv_;  // per request: elements a receive must deliver; -1 otherwise
  bool done_ = false;
};

// ---- construction ------------------------------------------------------------------------------------

MpiCommunicator::MpiCommunicator(MPI_Comm comm, std::shared_ptr<Counters> counters, double timeout_seconds)
    : Communicator(std::move(counters), timeout_seconds), comm_(comm) {
  if (comm_ == MPI_COMM_NULL) throw InternalError("comm: MpiCommunicator given MPI_COMM_NULL");
  LONGCTX_CHECK_MPI(MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN));
  LONGCTX_CHECK_MPI(MPI_Comm_rank(comm_, &rank_));
  LONGCTX_CHECK_MPI(MPI_Comm_size(comm_, &size_));
  int* tag_ub = nullptr;
  int found = 0;
  LONGCTX_CHECK_MPI(MPI_Comm_get_attr(comm_, MPI_TAG_UB, &tag_ub, &found));
  if (found && tag_ub != nullptr) tag_ub_ = *tag_ub;
  world_ranks_ = std::make_shared<const std::vector<int>>(world_ranks_of(comm_));
  name("a communicator");
}

void MpiCommunicator::name(const std::string& name, bool with_ranks) {
  name_ = name;
  // "sub-communicator #2 of the world communicator (world ranks 0-3)": names alone may repeat (a sub of all
  // ranks), and the ranks alone do too (two subs of the same ranks count their collectives apart).
  described_ = with_ranks ? name_ + " (world " + roll_call::ranks_text(*world_ranks_) + ")" : name_;
}

MpiCommunicator::~MpiCommunicator() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized && comm_ != MPI_COMM_NULL && !*collective_abandoned_) MPI_Comm_free(&comm_);
}

std::unique_ptr<Communicator> make_mpi_world(double timeout_seconds) {
  if (!(timeout_seconds > 0) || !std::isfinite(timeout_seconds))
    throw UsageError("comm timeout must be a positive number of seconds, got " +
                     std::to_string(timeout_seconds));
  int initialized = 0;
  LONGCTX_CHECK_MPI(MPI_Initialized(&initialized));
  if (!initialized) throw InternalError("comm: make_mpi_world called before MPI_Init");
  MPI_Comm dup = MPI_COMM_NULL;
  std::vector<MPI_Request> requests(1, MPI_REQUEST_NULL);
  std::vector<MPI_Status> statuses(1);
  LONGCTX_CHECK_MPI(MPI_Comm_idup(MPI_COMM_WORLD, &dup, &requests[0]));
  if (!wait_all(requests, statuses, timeout_seconds)) {
    int rank = 0, size = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    throw CommTimeout(timeout_message("comm_dup(MPI_COMM_WORLD)", rank, size, timeout_seconds));
  }
  auto world = std::make_unique<MpiCommunicator>(dup, std::make_shared<Counters>(), timeout_seconds);
  world->name("the world communicator", false);
  const auto wait = [&](std::vector<MPI_Request>& posted) {
    std::vector<MPI_Status> posted_statuses(posted.size());
    return wait_all(posted, posted_statuses, timeout_seconds);
  };
  if (!roll_call::open(wait))
    throw CommTimeout(timeout_message("roll call set-up (comm_dup(MPI_COMM_WORLD), all_gather)", world->rank(),
                                      world->size(), timeout_seconds));
  return world;
}

std::unique_ptr<Communicator> MpiCommunicator::sub(int first, int count) {
  if (count < 1 || first < 0 || first > size_ - count) {
    std::ostringstream message;
    message << "comm sub(first=" << first << ", count=" << count << "): the range must be non-empty and "
            << "lie within [0, " << size_ << ")";
    throw InternalError(message.str());
  }
  if (rank_ < first || rank_ >= first + count) {
    std::ostringstream message;
    message << "comm sub(first=" << first << ", count=" << count << ") called on rank " << rank_
            << ", which is outside the range; only member ranks may call it";
    throw InternalError(message.str());
  }
  const long number = ++subs_made_;  // alike on every member: members make their sub()s in one order
  meet(first, count, number);
  MPI_Group group = MPI_GROUP_NULL, members = MPI_GROUP_NULL;
  LONGCTX_CHECK_MPI(MPI_Comm_group(comm_, &group));
  int range[1][3] = {{first, first + count - 1, 1}};
  LONGCTX_CHECK_MPI(MPI_Group_range_incl(group, 1, range, &members));
  MPI_Comm created = MPI_COMM_NULL;
  int rc = MPI_SUCCESS;
  {  // every member met, but one may still stop before this call: the watchdog ends the job then
    watchdog::Guard guard("sub #" + std::to_string(number) + ": MPI_Comm_create_group on " + described_);
    rc = MPI_Comm_create_group(comm_, members, kSubCommTag, &created);
  }
  MPI_Group_free(&members);
  MPI_Group_free(&group);
  LONGCTX_CHECK_MPI(rc);
  auto result = std::make_unique<MpiCommunicator>(created, counters_, timeout_seconds_);
  result->max_count_override_ = max_count_override_;
  result->family_timed_out_ = family_timed_out_;
  result->name("sub-communicator #" + std::to_string(number) + " of " + name_);
  return result;
}

void MpiCommunicator::meet(int first, int count, long number) const {
  const int last = first + count - 1;
  const std::string what = "sub #" + std::to_string(number) + " (first=" + std::to_string(first) +
                           ", count=" + std::to_string(count) + ") of " + described_;
  const auto members = std::make_shared<const std::vector<int>>(world_ranks_->begin() + first,
                                                                 world_ranks_->begin() + last + 1);
  const auto start_meeting = [&](const std::string& step) {
    auto meeting = std::make_unique<Pending>("sub", what + step, std::make_shared<Counters>(), timeout_seconds_,
                                             rank_, size_);  // counted nowhere, like sub() itself
    meeting->point_to_point = true;  // cancelled, not leaked, if it times out
    meeting->type = MPI_BYTE;
    meeting->world_ranks = members;  // silent ranks outside the sub() are not its missing members
    return meeting;
  };
  auto pending = start_meeting("");
  // A tag per meeting: the message of a meeting that timed out (a send cannot be cancelled) must not
  // stand in for a later one's.
  const int tag = tag_ub_ - static_cast<int>(number % kMeetingTags);
  const auto post = [&](bool send, int peer) {
    MPI_Request request = MPI_REQUEST_NULL;
    LONGCTX_CHECK_MPI(send ? MPI_Isend(nullptr, 0, MPI_BYTE, peer, tag, comm_, &request)
                           : MPI_Irecv(nullptr, 0, MPI_BYTE, peer, tag, comm_, &request));
    pending->add(request, send ? -1 : 0);
  };
  if (rank_ == first) {
    for (int member = first + 1; member <= last; ++member) post(false, member);  // "here"
    pending->wait();
    pending = start_meeting(", its go");
    for (int member = first + 1; member <= last; ++member) post(true, member);  // "go"
  } else {
    post(true, first);
    post(false, first);
  }
  pending->wait();
}

[[noreturn]] void MpiCommunicator::abort(int exit_code) {
  MPI_Abort(MPI_COMM_WORLD, exit_code);
  std::abort();  // MPI_Abort does not return; this keeps the promise if an implementation does
}

size_t MpiCommunicator::max_count(DataType type) const {
  if (max_count_override_ > 0) return max_count_override_;
  return std::min(static_cast<size_t>(INT_MAX), kMaxBytesPerCall / size_of(type));
}

// ---- shared helpers ----------------------------------------------------------------------------------

std::unique_ptr<MpiCommunicator::Pending> MpiCommunicator::start(const char* operation, const std::string& peer) const {
  // Collectives are numbered per communicator (every rank posts the same ones, so the numbers agree);
  // point-to-point calls name their peer instead.
  const std::string what = peer.empty() ? std::string(operation) + " #" + std::to_string(++collectives_posted_) + " on " + described_
                                        : std::string(operation) + " " + peer + " on " + described_;
  auto pending = std::make_unique<Pending>(operation, what, counters_, timeout_seconds_, rank_, size_);
  pending->collective_abandoned = collective_abandoned_;
  pending->family_timed_out = family_timed_out_;
  pending->world_ranks = world_ranks_;
  return pending;
}

void MpiCommunicator::count_call(Volume volume) const {
  counters_->calls += 1;
  counters_->bytes_sent += volume.sent;
  counters_->bytes_received += volume.received;
}

Request MpiCommunicator::to_request(std::unique_ptr<Pending> pending) {
  pending->charge_posting();
  return Request(std::move(pending));
}

void MpiCommunicator::finish(std::unique_ptr<Pending> pending) {
  pending->charge_posting();
  pending->wait();
}

void MpiCommunicator::check_rank(int peer, const char* what, const char* operation) const {
  if (peer < 0 || peer >= size_) {
    std::ostringstream message;
    message << "comm " << operation << ": " << what << " " << peer << " is not a rank of this " << size_
            << "-rank communicator";
    throw InternalError(message.str());
  }
}

void MpiCommunicator::check_tag(int tag, const char* operation) const {
  if (tag < 0 || tag > max_tag()) {
    std::ostringstream message;
    message << "comm " << operation << ": tag " << tag << " is outside [0, " << max_tag() << "] (the "
            << kMeetingTags << " tags above are sub()'s)";
    throw InternalError(message.str());
  }
}

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

std::unique_ptr<MpiCommunicator::Pending> MpiCommunicator::start_send(const void* data, size_t count,
                                                                      DataType type, int dest, int tag) {
  check_rank(dest, "destination", "send");
  check_tag(tag, "send");
  const size_t s = size_of(type);
  const MPI_Datatype t = mpi_type(type);
  count_call(send_volume(count, rank_, dest, s));

  auto pending = start("send", "to rank " + std::to_string(dest) + " (tag " + std::to_string(tag) + ")");
  pending->type = t;
  pending->point_to_point = true;
  for_chunks(count, max_count(type), [&](size_t offset, int chunk) {
    MPI_Request request = MPI_REQUEST_NULL;
    LONGCTX_CHECK_MPI(MPI_Isend(at(data, offset, s), chunk, t, dest, tag, comm_, &request));
    pending->add(request);
  });
  if (count == 0) {  // a zero-length message still has to be matched by the receiver's
    MPI_Request request = MPI_REQUEST_NULL;
    LONGCTX_CHECK_MPI(MPI_Isend(data, 0, t, dest, tag, comm_, &request));
    pending->add(request);
  }
  return pending;
}

std::unique_ptr<MpiCommunicator::Pending> MpiCommunicator::start_recv(void* data, size_t count,
                                                                      DataType type, int source, int tag) {
  check_rank(source, "source", "recv");
  check_tag(tag, "recv");
  const size_t s = size_of(type);
  const MPI_Datatype t = mpi_type(type);
  count_call(recv_volume(count, rank_, source, s));

  auto pending = start("recv", "from rank " + std::to_string(source) + " (tag " + std::to_string(tag) + ")");
  pending->type = t;
  pending->point_to_point = true;
  for_chunks(count, max_count(type), [&](size_t offset, int chunk) {
    MPI_Request request = MPI_REQUEST_NULL;
    LONGCTX_CHECK_MPI(MPI_Irecv(at(data, offset, s), chunk, t, source, tag, comm_, &request));
    pending->add(request, chunk);
  });
  if (count == 0) {
    MPI_Request request = MPI_REQUEST_NULL;
    LONGCTX_CHECK_MPI(MPI_Irecv(data, 0, t, source, tag, comm_, &request));
    pending->add(request, 0);
  }
  return pending;
}

Request MpiCommunicator::isend_raw(const void* data, size_t count, DataType type, int dest, int tag) {
  return to_request(start_send(data, count, type, dest, tag));
}

Request MpiCommunicator::irecv_raw(void* data, size_t count, DataType type, int source, int tag) {
  return to_request(start_recv(data, count, type, source, tag));
}

}  // namespace longctx::comm
