// MPI backend of the communicator: construction and sub() here; the operations in mpi_operations.cpp; an
// operation in flight (Pending) and the timed wait in mpi_pending.{hpp,cpp}. The protocol of all three:
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
#include "comm/mpi_pending.hpp"

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdlib>
#include <sstream>
#include <utility>

#include "comm/mpi_roll_call.hpp"
#include "runtime/core/check.hpp"
#include "runtime/core/watchdog.hpp"

namespace longctx::comm {
namespace {

using mpi_wait::timeout_message;
using mpi_wait::wait_all;

constexpr int kSubCommTag = 7411;  // MPI_Comm_create_group tag for sub(); calls are sequential per rank
constexpr size_t kMaxBytesPerCall = size_t{1} << 30;

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

// "ranks 0-2", "rank 3".
std::string ranks_span(int first, int count) {
  return count == 1 ? "rank " + std::to_string(first)
                    : "ranks " + std::to_string(first) + "-" + std::to_string(first + count - 1);
}

}  // namespace

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

bool MpiCommunicator::testable_while_threads_compute() const {
  int provided = MPI_THREAD_SINGLE;
  return MPI_Query_thread(&provided) == MPI_SUCCESS && provided >= MPI_THREAD_FUNNELED;
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
    watchdog::Guard guard("the set-up of sub-communicator #" + std::to_string(number) + " (" +
                          ranks_span(first, count) + "): MPI_Comm_create_group on " + described_);
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
  // Said as a user can read it (before: "sub #1 (first=0, count=2)", the call's own words).
  const std::string what = "the set-up of sub-communicator #" + std::to_string(number) + " (" +
                           ranks_span(first, count) + " of " + described_ + ")";
  const auto members = std::make_shared<const std::vector<int>>(world_ranks_->begin() + first,
                                                                 world_ranks_->begin() + last + 1);
  const auto start_meeting = [&](const std::string& step) {
    auto meeting = std::make_unique<Pending>("sub-communicator set-up", what + step, std::make_shared<Counters>(), timeout_seconds_,
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

}  // namespace longctx::comm
