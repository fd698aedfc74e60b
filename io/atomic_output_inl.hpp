// Template part of atomic_output.hpp.
#pragma once

#include <exception>
#include <string>
#include <utility>

#include "runtime/core/check.hpp"
#include "runtime/core/watchdog.hpp"

namespace longctx::io {

namespace detail {
// Runs `work` on rank 0 and broadcasts the outcome: on failure, rank 0's reason and (with `keep_kind`)
// its exit code, which every rank then throws.
template <class Work>
void on_rank0(MPI_Comm comm, const std::string& what, Work&& work, bool keep_kind) {
  int code = 0;  // 0: ok; else the ExitCode to throw
  std::string error;
  if (h5::comm_rank(comm) == 0) {
    try {
      work();
    } catch (const Error& e) {
      code = keep_kind ? static_cast<int>(e.code()) : static_cast<int>(ExitCode::internal);
      error = e.what();
    } catch (const std::exception& e) {
      code = static_cast<int>(ExitCode::internal);
      error = e.what();
    }
  }
  if (comm != MPI_COMM_NULL) {  // every rank learns the outcome, and on failure rank 0's reason
    // MPI_Bcast has no timeout: a rank 0 stopped in `work` (a hung file system) left the others here
    // forever; the watchdog ends the job after --comm-timeout instead.
    // (On rank 0 itself the label named "waiting for rank 0".)
    watchdog::Guard guard(h5::comm_rank(comm) == 0 ? "telling the other ranks how " + what + " went"
                                                   : "waiting for rank 0 (" + what + ")");
    LONGCTX_CHECK_MPI(MPI_Bcast(&code, 1, MPI_INT, 0, comm));
    if (code != 0) {
      int length = static_cast<int>(error.size());
      LONGCTX_CHECK_MPI(MPI_Bcast(&length, 1, MPI_INT, 0, comm));
      error.resize(static_cast<size_t>(length));
      LONGCTX_CHECK_MPI(MPI_Bcast(error.data(), length, MPI_CHAR, 0, comm));
    }
  }
  if (code == 0) return;
  if (error.empty()) error = what + " failed on rank 0";
  if (code == static_cast<int>(ExitCode::usage)) throw UsageError(error);
  if (code == static_cast<int>(ExitCode::bad_input)) throw InputError(error);
  throw InternalError(error);
}
}  // namespace detail

template <class Publish>
void publish_on_rank0(MPI_Comm comm, const std::string& what, Publish&& publish) {
  detail::on_rank0(comm, what, std::forward<Publish>(publish), false);
}

template <class Work>
void run_on_rank0(MPI_Comm comm, const std::string& what, Work&& work) {
  detail::on_rank0(comm, what, std::forward<Work>(work), true);
}

}  // namespace longctx::io
