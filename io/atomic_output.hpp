// An output HDF5 file that appears only when the run succeeds. Protocol (every rank of `comm`):
//   open       rank 0 claims `<path>.tmp` (durable.hpp: never through a link, refused while another
//              writer holds it, a crashed run's file taken over) and broadcasts whether that worked;
//              then create it (collective)
//   write      ...
//   commit()   close collectively -> every rank fsyncs the file -> barrier -> rank 0 renames
//              `<path>.tmp` to `path` and fsyncs the directory -> rank 0 broadcasts whether that worked,
//              so every rank returns or throws together
//   abort()    rank 0 removes `<path>.tmp` (no collectives; safe while unwinding after a failure)
// Rank 0 holds the claim (its lock) until after the rename or removal. Destroying an AtomicOutput that
// was not committed aborts it. So a failed run leaves no `path` (and an existing `path` untouched), and a
// crash leaves at most a stray `.tmp`, which the next writer of `path` takes over.
#pragma once

#include <mpi.h>

#include <cstdint>
#include <string>

#include "io/durable.hpp"
#include "io/h5.hpp"

namespace longctx::io {

// A claimed temporary file that this process removes if the job ends abnormally: on SIGINT, SIGTERM,
// SIGHUP (Ctrl-C, scancel, the SIGTERM with which Open MPI ends the other ranks when one aborts), SIGUSR1,
// SIGUSR2, SIGQUIT, SIGALRM, SIGXFSZ or SIGPIPE, where such a signal would end the process anyway (it is
// then raised again), and in remove_claims_before_abort(), which the rank that aborts the job calls.
// Every rank of `comm` registers it, by the identity (device, inode) that rank 0, which holds it,
// broadcasts: so the aborting rank removes it even though rank 0 holds it (Open MPI may SIGKILL rank 0
// before it handles its SIGTERM), and only that file, never one another run created at that name since (a
// run that takes over the file after this job's rank 0 died creates a new one: durable.hpp). (A limit: a
// rank on another node sees another device number for a network file system and removes nothing.) Made by
// claim_registered. At most 8 at a time per process (more go unregistered).
struct Claim;
class RegisteredClaim {
 public:
  RegisteredClaim() = default;
  RegisteredClaim(RegisteredClaim&& other) noexcept;
  RegisteredClaim& operator=(RegisteredClaim&& other) noexcept;
  RegisteredClaim(const RegisteredClaim&) = delete;
  RegisteredClaim& operator=(const RegisteredClaim&) = delete;
  // Destroyed while an exception unwinds (this rank failed, which ends the job), it removes the file
  // first, on any rank: the rank that fails need not be the one that holds it.
  ~RegisteredClaim();
  // No longer removed by a signal, an abort or a failure: call it once the file is renamed.
  void release() noexcept;

 private:
  friend Claim claim_registered(const std::string& temporary, MPI_Comm comm);
  // Registers the file of that identity (device, inode) at `path`.
  RegisteredClaim(const std::string& path, const uint64_t identity[2]);
  void take_slot(const std::string& path, const uint64_t identity[2]);

  int slot_ = -1;
  int exceptions_ = 0;  // std::uncaught_exceptions() when registered
};

struct Claim {
  TemporaryFile file;  // rank 0's (empty on the others)
  RegisteredClaim registered;
};
// TemporaryFile::claim on rank 0, registered on every rank of `comm` (every rank throws rank 0's error, of
// its kind: UsageError for an unusable or busy temporary file). Collective. Rank 0 claims and registers
// it with those signals held back in its thread, and the signal handler on another thread
// waits for it, and a claim or a create that would begin once that handler has begun waits for the end of
// the process instead: a signal never finds the file claimed and not registered, which it would leave.
Claim claim_registered(const std::string& temporary, MPI_Comm comm);
// h5::File::create of a claimed temporary file (by its path), guarded as the claim is: a signal handled on
// another thread meanwhile removes the file this makes, which may be a new one where the claimed one was.
h5::File create_claimed(const std::string& temporary, MPI_Comm comm);

// Removes the registered claims that are still the files registered (see RegisteredClaim). For the path
// that ends the job with MPI_Abort: no destructor runs on any rank after it.
void remove_claims_before_abort() noexcept;
// A signal handler's end: removes those claims, then ends the process as `signal` would have without a
// handler (its default action, raised again). What those signals do where nothing else
// handles them (installed by the first claim), and train's handler for a second SIGINT / SIGHUP.
// Async-signal-safe.
extern "C" void remove_claims_and_reraise(int signal);

// An output's temporary file claimed before the work that ends in its write: attend claims OUT.tmp
// before it reads its inputs, so a second run on the same output is refused at once (exit 2), not after
// its compute, and no run computes for an output another one is writing. Collective (claim_registered).
// Until take() or an AtomicOutput takes the claim, destroying it removes the temporary file again on
// rank 0: a run that fails or is refused before its write leaves nothing. It is a RegisteredClaim: a job
// ended by a signal or an abort leaves nothing either.
class ClaimedEarly {
 public:
  ClaimedEarly(const std::string& temporary, MPI_Comm comm);
  ClaimedEarly(const ClaimedEarly&) = delete;
  ClaimedEarly& operator=(const ClaimedEarly&) = delete;
  ~ClaimedEarly();
  // For a writer other than AtomicOutput (PreparedText). The file stays registered until this is
  // destroyed: a signal or an abort before the writer renames it still removes it (after, the name is
  // another file, or none, which the identity check leaves alone).
  TemporaryFile take();

 private:
  friend class AtomicOutput;  // takes the claim and its registration
  TemporaryFile claim_;        // rank 0's (empty on the others)
  RegisteredClaim registered_;
};

// Whether the file system of `path` has `bytes` free for it (at `path`.tmp): every rank of `comm` throws
// InternalError naming `what` and both figures where rank 0 finds fewer (statvfs). Collective. A look, not a
// reservation (AtomicOutput::require_room says why).
void require_room(MPI_Comm comm, const std::string& path, uint64_t bytes, const std::string& what);

class AtomicOutput {
 public:
  AtomicOutput(std::string path, MPI_Comm comm = MPI_COMM_NULL);
  // The same with `<path>.tmp` claimed already (a ClaimedEarly on every rank of `comm`).
  AtomicOutput(std::string path, ClaimedEarly&& claimed, MPI_Comm comm);
  AtomicOutput(const AtomicOutput&) = delete;
  AtomicOutput& operator=(const AtomicOutput&) = delete;
  ~AtomicOutput();

  h5::File& file() { return file_; }
  const std::string& path() const { return path_; }
  std::string temporary_path() const { return path_ + ".tmp"; }

  // Before a write of `bytes`: every rank throws InternalError naming `what` ("the activations of step
  // 7") and the free bytes when the file system (rank 0's look, statvfs) has fewer: on more than one rank,
  // a write failing on one rank mid-file could leave the ranks in different collectives inside HDF5, which
  // only --comm-timeout ends. A look, not a reservation: fallocate would also allocate the padding of
  // HDF5's last chunks, which stays a hole when written (up to 1.9x the values for odd shapes), and where
  // HDF5 allocates next is not known under MPI-IO. Another writer can still fill the disk after it.
  // Collective.
  void require_room(uint64_t bytes, const std::string& what);

  void commit();
  void abort() noexcept;

 private:
  std::string path_;
  MPI_Comm comm_;
  TemporaryFile temporary_;  // rank 0's claim
  RegisteredClaim registered_;
  h5::File file_;
  bool done_ = false;
};

// The collective part of a commit shared with checkpoints: close `file`, fsync it on every rank, and
// barrier, so that afterwards the temporary file is complete on disk.
void close_and_sync(h5::File& file, MPI_Comm comm);
// Runs `publish` on rank 0 only and broadcasts success; every rank throws InternalError when it failed.
template <class Publish>
void publish_on_rank0(MPI_Comm comm, const std::string& what, Publish&& publish);
// Runs `work` on rank 0 only; every rank throws rank 0's error, of its kind (UsageError for an unusable
// or busy temporary file, as TemporaryFile::claim throws it).
template <class Work>
void run_on_rank0(MPI_Comm comm, const std::string& what, Work&& work);

}  // namespace longctx::io

#include "io/atomic_output_inl.hpp"
