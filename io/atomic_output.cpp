#include "io/atomic_output.hpp"

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <cstring>
#include <exception>
#include <filesystem>
#include <iterator>
#include <mutex>
#include <thread>
#include <utility>

#include "io/durable.hpp"

namespace longctx::io {

void close_and_sync(h5::File& file, MPI_Comm comm) {
  const std::string path = file.path();
  // A dataset's last buffered bytes that could not be written (a full disk) when it was closed: this rank
  // throws, and its failure ends the job's other ranks.
  const std::string failure = h5::take_write_failure(path);
  if (!failure.empty()) throw InternalError(path + ": writing a dataset's buffered bytes failed: " + failure);
  file.flush();
  // HDF5 closes a file only when its last object closes: one left open would have the file renamed into
  // place still marked as being written, and the mark cleared after the rename, unsynced (a crash then
  // left a file every reader refused; from the data import audit, whose /tokens was open).
  const ssize_t open_objects = H5Fget_obj_count(file.id(), H5F_OBJ_DATASET | H5F_OBJ_GROUP | H5F_OBJ_DATATYPE |
                                                               H5F_OBJ_ATTR | H5F_OBJ_LOCAL);
  if (open_objects != 0)
    throw InternalError(path + ": committed with " + std::to_string(open_objects) + " of its objects open " +
                        "(or their count unknown): HDF5 would close it after its rename");
  file.close();
  sync_file(path);
  h5::comm_barrier(comm);
}

namespace {

// The claimed temporary files this process knows of, for the signal handler and the abort path (which
// may only read them): the path and the file's identity (device, inode), so that only that file is ever
// removed, not one another run has claimed at the same name since.
struct ClaimSlot {
  std::atomic<bool> taken{false};  // by a RegisteredClaim
  std::atomic<bool> used{false};   // filled in: the handler may read it
  dev_t device = 0;
  ino_t inode = 0;
  char path[4096] = {};
};
ClaimSlot g_claim_slots[8];
// LONGCTX_FAULT_SLOW_SIGNAL_CLEANUP_MS: the handler waits this long before removing the claims, so that
// a test can send a second signal while the first one is handled (read when the handler is installed).
long g_cleanup_delay_ms = 0;
// Claimed files being made in this process (ClaimingWindow): claimed, or about to be, and not yet
// registered; or being created by path (HDF5's create of the claimed name).
std::atomic<int> g_claims_in_flight{0};
// Set by the signal handler that removes the claims and ends the process: a thread that would begin a
// claim or a create from then on waits for that end instead (it would make a file the handler has passed).
std::atomic<bool> g_ending{false};
// How long a signal handled on another thread meanwhile waits for them (see remove_claims_before_abort):
// an open() and an fstat(), or a file's creation, take far less, unless the file system hangs.
constexpr long kClaimWaitMs = 3000;
// Those whose default action ends the process (and that something outside may send): Slurm's --signal
// sends SIGUSR1, `ulimit -f` gives SIGXFSZ, a closed pipe SIGPIPE (before: only the first three, and the
// others left OUT.tmp behind).
constexpr int kStopSignals[] = {SIGINT, SIGTERM, SIGHUP, SIGUSR1, SIGUSR2, SIGQUIT, SIGALRM, SIGXFSZ, SIGPIPE};

// Removes the slot's file if its path still names it. Async-signal-safe.
void remove_if_same(const ClaimSlot& slot) noexcept { unlink_if_same_file(slot.path, slot.device, slot.inode); }

}  // namespace

// Stays installed while it runs: a second signal that reaches another thread meanwhile (Open MPI ends a
// rank with SIGTERM to its process group, and `timeout` or a wrapper forwards it again) runs it as well.
// Reset on entry (SA_RESETHAND), the second signal ended the process by default before the unlink.
extern "C" void remove_claims_and_reraise(int signal) {
  g_ending.store(true);  // before the wait: no claim or create begins after it (ClaimingWindow)
  if (g_cleanup_delay_ms > 0) {
    const timespec delay{g_cleanup_delay_ms / 1000, (g_cleanup_delay_ms % 1000) * 1000000};
    ::nanosleep(&delay, nullptr);
  }
  remove_claims_before_abort();  // every registered claim, as before an abort
  struct sigaction by_default {};
  by_default.sa_handler = SIG_DFL;
  sigemptyset(&by_default.sa_mask);
  ::sigaction(signal, &by_default, nullptr);
  // Pending until the handler returns (blocked in it), then ends the process as it would have without it.
  ::raise(signal);
}

namespace {

// Installs the handler for the signals that end a process by default, where nothing else handles them
// (train catches SIGTERM to checkpoint; a launcher may ignore SIGHUP).
void remove_claims_on_signals() {
  static std::once_flag once;
  std::call_once(once, [] {
    if (const char* delay = std::getenv("LONGCTX_FAULT_SLOW_SIGNAL_CLEANUP_MS")) g_cleanup_delay_ms = std::atol(delay);
    for (const int signal : kStopSignals) {
      struct sigaction current {};
      if (::sigaction(signal, nullptr, &current) != 0 || current.sa_handler != SIG_DFL ||
          (current.sa_flags & SA_SIGINFO) != 0)
        continue;
      struct sigaction removing {};
      removing.sa_handler = remove_claims_and_reraise;
      sigemptyset(&removing.sa_mask);
      for (const int other : kStopSignals) sigaddset(&removing.sa_mask, other);  // one at a time in a thread
      ::sigaction(signal, &removing, nullptr);
    }
  });
}

// From before rank 0 claims a temporary file until it has registered it, and while a claimed name is
// created by path (HDF5's create, which makes a new file where the handler removed the claimed one): this
// thread holds back kStopSignals, which it then takes with the file registered (so they
// remove it), and the work counts as in flight, for which a handler on another thread waits. One that
// began before (g_ending) is waited for here: this thread stops until the process ends. Before, a signal
// handled meanwhile (the second Ctrl-C, while train's main thread claimed its next checkpoint) ended the
// process with the file left behind. (claim_registered installs the handler before any of this.)
class ClaimingWindow {
 public:
  ClaimingWindow() {
    sigset_t stop;
    sigemptyset(&stop);
    for (const int signal : kStopSignals) sigaddset(&stop, signal);
    ::pthread_sigmask(SIG_BLOCK, &stop, &previous_);
    g_claims_in_flight.fetch_add(1);  // sequentially consistent with g_ending: one of them sees the other
    if (g_ending.load()) {
      g_claims_in_flight.fetch_sub(1);  // nothing made: the handler need not wait for this thread
      for (;;) ::pause();               // it ends the process (on another thread: these signals are held here)
    }
  }
  ~ClaimingWindow() {
    g_claims_in_flight.fetch_sub(1);
    ::pthread_sigmask(SIG_SETMASK, &previous_, nullptr);  // a signal held back is taken here
  }
  ClaimingWindow(const ClaimingWindow&) = delete;
  ClaimingWindow& operator=(const ClaimingWindow&) = delete;

 private:
  sigset_t previous_;
};

// LONGCTX_FAULT_SLOW_CLAIM_MS: rank 0 waits this long between claiming a file and registering it, so that
// a test can signal the process then.
void slow_claim_for_tests() {
  static const long delay_ms = [] {
    const char* delay = std::getenv("LONGCTX_FAULT_SLOW_CLAIM_MS");
    return delay ? std::atol(delay) : 0L;
  }();
  if (delay_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
}

void identity_of(const TemporaryFile& claim, uint64_t identity[2]) {
  struct stat held {};
  if (claim.fd() >= 0 && ::fstat(claim.fd(), &held) == 0)
    identity[0] = static_cast<uint64_t>(held.st_dev), identity[1] = static_cast<uint64_t>(held.st_ino);
}

}  // namespace

// Async-signal-safe: the signal handler calls it too. It waits for the claims in flight (up to
// kClaimWaitMs, by the monotonic clock), which only another thread makes: the one claiming holds the
// signals back, and aborts from none of the few calls it makes meanwhile.
void remove_claims_before_abort() noexcept {
  timespec start{}, now{};
  ::clock_gettime(CLOCK_MONOTONIC, &start);
  const timespec tick{0, 1000000};
  while (g_claims_in_flight.load() > 0 && ::clock_gettime(CLOCK_MONOTONIC, &now) == 0 &&
         (now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000 < kClaimWaitMs)
    ::nanosleep(&tick, nullptr);
  for (ClaimSlot& slot : g_claim_slots)
    if (slot.used.load(std::memory_order_acquire)) remove_if_same(slot);
}

h5::File create_claimed(const std::string& temporary, MPI_Comm comm) {
  const ClaimingWindow window;
  return h5::File::create(temporary, comm);
}

Claim claim_registered(const std::string& temporary, MPI_Comm comm) {
  // First, on every rank (which all register the file): a signal that ends the process by default, on any
  // thread, would leave the file (before: installed after rank 0's first claim, on its registration).
  remove_claims_on_signals();
  Claim claim;
  uint64_t identity[2] = {0, 0};
  // Rank 0 claims the file and registers it in one step (a signal during the broadcast still removes it);
  // every other rank learns which file it is.
  run_on_rank0(comm, "claiming " + temporary, [&] {
    const ClaimingWindow window;
    claim.file = TemporaryFile::claim(temporary);
    slow_claim_for_tests();
    identity_of(claim.file, identity);
    claim.registered = RegisteredClaim(temporary, identity);
  });
  if (comm != MPI_COMM_NULL) {
    watchdog::Guard guard(h5::comm_rank(comm) == 0 ? "telling the other ranks which file " + temporary + " is"
                                                   : "waiting for rank 0 (claiming " + temporary + ")");
    LONGCTX_CHECK_MPI(MPI_Bcast(identity, 2, MPI_UINT64_T, 0, comm));
    if (claim.file.fd() < 0) claim.registered = RegisteredClaim(temporary, identity);
  }
  return claim;
}

RegisteredClaim::RegisteredClaim(const std::string& path, const uint64_t identity[2])
    : exceptions_(std::uncaught_exceptions()) {
  take_slot(path, identity);
}

void RegisteredClaim::take_slot(const std::string& path, const uint64_t identity[2]) {
  if (identity[1] == 0 || path.size() >= sizeof(ClaimSlot::path)) return;
  for (int i = 0; i < static_cast<int>(std::size(g_claim_slots)); ++i) {
    ClaimSlot& slot = g_claim_slots[i];
    bool free = false;
    if (!slot.taken.compare_exchange_strong(free, true, std::memory_order_acq_rel)) continue;
    slot.device = static_cast<dev_t>(identity[0]);
    slot.inode = static_cast<ino_t>(identity[1]);
    std::memcpy(slot.path, path.c_str(), path.size() + 1);
    slot.used.store(true, std::memory_order_release);
    slot_ = i;
    return;
  }
}

RegisteredClaim::RegisteredClaim(RegisteredClaim&& other) noexcept
    : slot_(std::exchange(other.slot_, -1)), exceptions_(other.exceptions_) {}

RegisteredClaim& RegisteredClaim::operator=(RegisteredClaim&& other) noexcept {
  if (this != &other) {
    release();
    slot_ = std::exchange(other.slot_, -1);
    exceptions_ = other.exceptions_;
  }
  return *this;
}

RegisteredClaim::~RegisteredClaim() {
  // Unwinding from this rank's failure, which ends the job (main aborts it; or every rank failed alike,
  // and rank 0 removes its file anyway): the file goes now, on whichever rank, not only when rank 0 gets
  // to handle its SIGTERM.
  if (slot_ >= 0 && std::uncaught_exceptions() > exceptions_) remove_if_same(g_claim_slots[slot_]);
  release();
}

void RegisteredClaim::release() noexcept {
  if (slot_ < 0) return;
  g_claim_slots[slot_].used.store(false, std::memory_order_release);
  g_claim_slots[slot_].taken.store(false, std::memory_order_release);
  slot_ = -1;
}

ClaimedEarly::ClaimedEarly(const std::string& temporary, MPI_Comm comm) {
  Claim claim = claim_registered(temporary, comm);
  claim_ = std::move(claim.file);
  registered_ = std::move(claim.registered);
}

TemporaryFile ClaimedEarly::take() { return std::move(claim_); }

ClaimedEarly::~ClaimedEarly() {
  claim_.remove_if_held();  // held (rank 0): no other writer's file
}

AtomicOutput::AtomicOutput(std::string path, MPI_Comm comm)
    : AtomicOutput(path, ClaimedEarly(path + ".tmp", comm), comm) {}

AtomicOutput::AtomicOutput(std::string path, ClaimedEarly&& claimed, MPI_Comm comm)
    : path_(std::move(path)),
      comm_(comm),
      temporary_(std::move(claimed.claim_)),
      registered_(std::move(claimed.registered_)) {
  if (h5::comm_rank(comm_) == 0 && temporary_.path() != temporary_path())
    throw InternalError("AtomicOutput " + path_ + ": not given the claim of " + temporary_path());
  try {
    file_ = create_claimed(temporary_path(), comm);
  } catch (...) {
    abort();
    throw;
  }
}

AtomicOutput::~AtomicOutput() {
  if (!done_) abort();
}

void require_room(MPI_Comm comm, const std::string& path, uint64_t bytes, const std::string& what) {
  const std::string temporary = path + ".tmp";
  run_on_rank0(comm, "looking for room for " + what + " in " + temporary, [&] {
    std::error_code error;
    const std::filesystem::space_info space = std::filesystem::space(directory_of(path), error);
    if (error || space.available >= bytes) return;  // a file system that cannot say: written as before
    throw InternalError("no room for " + what + " in " + temporary + ": it takes " + std::to_string(bytes) +
                        " bytes, and the file system of " + directory_of(path) + " has " +
                        std::to_string(space.available) + " free; none of it was written");
  });
}

void AtomicOutput::require_room(uint64_t bytes, const std::string& what) { io::require_room(comm_, path_, bytes, what); }

void AtomicOutput::commit() {
  if (done_) throw InternalError("AtomicOutput " + path_ + ": commit after commit or abort");
  close_and_sync(file_, comm_);
  done_ = true;
  try {
    publish_on_rank0(comm_, "publishing " + path_, [&] { rename_durably(temporary_path(), path_); });
  } catch (...) {  // every rank throws together; rank 0 removes what the failed rename left
    abort();
    throw;
  }
  registered_.release();  // renamed: the name is free for another run's claim
  temporary_.close();
}

void AtomicOutput::abort() noexcept {
  done_ = true;
  // Only while holding the claim (rank 0), and only the file held: never another writer's.
  if (temporary_.fd() >= 0) {
    temporary_.remove_if_held();
    // Before the close frees the inode (its number may then name another run's new file). The other
    // ranks keep theirs until destroyed: unwinding from their own failure, they remove the file too.
    registered_.release();
  }
  temporary_.close();
}

}  // namespace longctx::io
