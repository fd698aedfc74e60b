#include "io/atomic_output.hpp"

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <cstring>
#include <exception>
#include <filesystem>
#include <iterator>
#include <mutex>
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
  file.close();
  sync_file(path);
  h5::comm_barrier(comm);
}

TemporaryFile claim_on_rank0(const std::string& temporary, MPI_Comm comm) {
  TemporaryFile claimed;
  run_on_rank0(comm, "claiming " + temporary, [&] { claimed = TemporaryFile::claim(temporary); });
  return claimed;
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

// Removes the slot's file if its path still names it. Async-signal-safe.
void remove_if_same(const ClaimSlot& slot) noexcept { unlink_if_same_file(slot.path, slot.device, slot.inode); }

}  // namespace

// Stays installed while it runs: a second signal that reaches another thread meanwhile (Open MPI ends a
// rank with SIGTERM to its process group, and `timeout` or a wrapper forwards it again) runs it as well.
// Reset on entry (SA_RESETHAND), the second signal ended the process by default before the unlink.
extern "C" void remove_claims_and_reraise(int signal) {
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
    constexpr int kSignals[] = {SIGINT, SIGTERM, SIGHUP};
    for (const int signal : kSignals) {
      struct sigaction current {};
      if (::sigaction(signal, nullptr, &current) != 0 || current.sa_handler != SIG_DFL ||
          (current.sa_flags & SA_SIGINFO) != 0)
        continue;
      struct sigaction removing {};
      removing.sa_handler = remove_claims_and_reraise;
      sigemptyset(&removing.sa_mask);
      for (const int other : kSignals) sigaddset(&removing.sa_mask, other);  // one at a time in a thread
      ::sigaction(signal, &removing, nullptr);
    }
  });
}

}  // namespace

// Async-signal-safe: the signal handler calls it too.
void remove_claims_before_abort() noexcept {
  for (ClaimSlot& slot : g_claim_slots)
    if (slot.used.load(std::memory_order_acquire)) remove_if_same(slot);
}

RegisteredClaim::RegisteredClaim(const TemporaryFile& claim, const std::string& path, MPI_Comm comm)
    : exceptions_(std::uncaught_exceptions()) {
  // Rank 0 holds the file and registers it at once (a signal during the broadcast still removes it);
  // every other rank learns which file it is.
  uint64_t identity[2] = {0, 0};
  struct stat held {};
  if (claim.fd() >= 0 && ::fstat(claim.fd(), &held) == 0) {
    identity[0] = static_cast<uint64_t>(held.st_dev), identity[1] = static_cast<uint64_t>(held.st_ino);
    take_slot(path, identity);
  }
  if (comm != MPI_COMM_NULL) {
    watchdog::Guard guard("waiting for rank 0 (claiming " + path + ")");
    LONGCTX_CHECK_MPI(MPI_Bcast(identity, 2, MPI_UINT64_T, 0, comm));
    if (claim.fd() < 0) take_slot(path, identity);
  }
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
    remove_claims_on_signals();
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

ClaimedEarly::ClaimedEarly(const std::string& temporary, MPI_Comm comm)
    : claim_(claim_on_rank0(temporary, comm)), registered_(claim_, temporary, comm) {}

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
    file_ = h5::File::create(temporary_path(), comm);
  } catch (...) {
    abort();
    throw;
  }
}

AtomicOutput::~AtomicOutput() {
  if (!done_) abort();
}

void AtomicOutput::require_room(uint64_t bytes, const std::string& what) {
  run_on_rank0(comm_, "looking for room for " + what + " in " + temporary_path(), [&] {
    std::error_code error;
    const std::filesystem::space_info space = std::filesystem::space(directory_of(path_), error);
    if (error || space.available >= bytes) return;  // a file system that cannot say: written as before
    throw InternalError("no room for " + what + " in " + temporary_path() + ": it takes " + std::to_string(bytes) +
                        " bytes, and the file system of " + directory_of(path_) + " has " +
                        std::to_string(space.available) + " free; none of it was written");
  });
}

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
