#include "io/atomic_output.hpp"

#include <cstdio>

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

ClaimedEarly::~ClaimedEarly() {
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
