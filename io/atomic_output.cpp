#include "io/atomic_output.hpp"

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <iterator>
#include <mutex>

#include "io/durable.hpp"

namespace longctx::io {

void close_and_sync(h5::File& file, MPI_Comm comm) {
  const std::string path = file.path();
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

// The paths of the early claims this process holds, for the signal handler (which may only read them).
struct ClaimSlot {
  std::atomic<bool> used{false};
  char path[4096] = {};
};
ClaimSlot g_claim_slots[4];

extern "C" void remove_claims_and_reraise(int signal) {
  for (ClaimSlot& slot : g_claim_slots)
    if (slot.used.load(std::memory_order_acquire)) ::unlink(slot.path);
  ::raise(signal);  // the disposition is the default again (SA_RESETHAND): ends the process as it would have
}

// Installs the handler for the signals that end a process by default, where nothing else handles them
// (train catches SIGTERM to checkpoint; a launcher may ignore SIGHUP).
void remove_claims_on_signals() {
  static std::once_flag once;
  std::call_once(once, [] {
    for (const int signal : {SIGINT, SIGTERM, SIGHUP}) {
      struct sigaction current {};
      if (::sigaction(signal, nullptr, &current) != 0 || current.sa_handler != SIG_DFL ||
          (current.sa_flags & SA_SIGINFO) != 0)
        continue;
      struct sigaction removing {};
      removing.sa_handler = remove_claims_and_reraise;
      sigemptyset(&removing.sa_mask);
      removing.sa_flags = SA_RESETHAND;
      ::sigaction(signal, &removing, nullptr);
    }
  });
}

}  // namespace

ClaimedEarly::ClaimedEarly(const std::string& temporary, MPI_Comm comm) : claim_(claim_on_rank0(temporary, comm)) {
  if (claim_.fd() < 0 || claim_.path().size() >= sizeof(ClaimSlot::path)) return;
  for (int i = 0; i < static_cast<int>(std::size(g_claim_slots)); ++i) {
    ClaimSlot& slot = g_claim_slots[i];
    if (slot.used.load(std::memory_order_relaxed)) continue;
    std::memcpy(slot.path, claim_.path().c_str(), claim_.path().size() + 1);
    slot.used.store(true, std::memory_order_release);
    slot_ = i;
    remove_claims_on_signals();
    return;
  }
}

TemporaryFile ClaimedEarly::take() {
  // Out of the handler's reach first: once the writer has it, it may be renamed, and the name then taken
  // by another run.
  if (slot_ >= 0) g_claim_slots[slot_].used.store(false, std::memory_order_release);
  slot_ = -1;
  return std::move(claim_);
}

ClaimedEarly::~ClaimedEarly() {
  if (slot_ >= 0) g_claim_slots[slot_].used.store(false, std::memory_order_release);
  if (claim_.fd() >= 0) std::remove(claim_.path().c_str());  // still held: no other writer's file
}

AtomicOutput::AtomicOutput(std::string path, MPI_Comm comm)
    : AtomicOutput(path, claim_on_rank0(path + ".tmp", comm), comm) {}

AtomicOutput::AtomicOutput(std::string path, TemporaryFile claimed, MPI_Comm comm)
    : path_(std::move(path)), comm_(comm), temporary_(std::move(claimed)) {
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

void AtomicOutput::commit() {
  if (done_) throw InternalError("AtomicOutput " + path_ + ": commit after commit or abort");
  close_and_sync(file_, comm_);
  done_ = true;
  try {
    publish_on_rank0(comm_, "publishing " + path_, [&] { rename_durably(temporary_path(), path_); });
  } catch (...) {  // every rank throws together; rank 0 removes what the failed rename left
    if (h5::comm_rank(comm_) == 0) std::remove(temporary_path().c_str());
    temporary_.close();
    throw;
  }
  temporary_.close();
}

void AtomicOutput::abort() noexcept {
  done_ = true;
  // Only while holding the claim: a temporary file that is another writer's is never removed.
  if (h5::comm_rank(comm_) == 0 && temporary_.fd() >= 0) std::remove(temporary_path().c_str());
  temporary_.close();
}

}  // namespace longctx::io
