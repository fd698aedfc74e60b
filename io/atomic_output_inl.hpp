// Template part of atomic_output.hpp.
#pragma once

#include <exception>
#include <string>

#include "runtime/core/check.hpp"

namespace longctx::io {

template <class Publish>
void publish_on_rank0(MPI_Comm comm, const std::string& what, Publish&& publish) {
  int ok = 1;
  std::string error;
  if (h5::comm_rank(comm) == 0) {
    try {
      publish();
    } catch (const std::exception& e) {
      ok = 0;
      error = e.what();
    }
  }
  if (comm != MPI_COMM_NULL) {  // every rank learns the outcome, and on failure rank 0's reason
    LONGCTX_CHECK_MPI(MPI_Bcast(&ok, 1, MPI_INT, 0, comm));
    if (!ok) {
      int length = static_cast<int>(error.size());
      LONGCTX_CHECK_MPI(MPI_Bcast(&length, 1, MPI_INT, 0, comm));
      error.resize(static_cast<size_t>(length));
      LONGCTX_CHECK_MPI(MPI_Bcast(error.data(), length, MPI_CHAR, 0, comm));
    }
  }
  if (!ok) throw InternalError(error.empty() ? what + " failed on rank 0" : error);
}

}  // namespace longctx::io
