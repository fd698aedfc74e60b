// One family of check macros, always on (Release too). Each reports the failed statement, the library's
// own error text, file:line, rank and host, and throws longctx::InternalError; main() turns an uncaught
// one into MPI_Abort so that no rank is left waiting.
//
// The library-specific macros expand at the call site, so this header includes no MPI, HDF5 or CUDA
// header: a file that uses LONGCTX_CHECK_MPI already includes <mpi.h>.
#pragma once

#include <sstream>
#include <string>

#include "runtime/core/error.hpp"

namespace longctx {

// Rank and host reported by failed checks; set once by the process context after MPI_Init.
void set_process_identity(int rank, const std::string& host);
int process_rank();  // -1 before the process context exists
const std::string& process_host();

[[noreturn]] void fail_check(const char* library, const char* statement, const std::string& detail,
                             const char* file, int line);

}  // namespace longctx

// The generic macro: `ok` is evaluated once; `detail` only on failure.
#define LONGCTX_CHECK_IMPL(library, ok, statement, detail)                              \
  do {                                                                                   \
    if (!(ok)) ::longctx::fail_check(library, statement, (detail), __FILE__, __LINE__); \
  } while (0)

// Invariants of our own code.
#define LONGCTX_CHECK(cond, message) LONGCTX_CHECK_IMPL("longctx", (cond), #cond, (message))

#define LONGCTX_CHECK_MPI(call)                                                           \
  do {                                                                                    \
    const int longctx_rc_ = (call);                                                       \
    LONGCTX_CHECK_IMPL("MPI", longctx_rc_ == MPI_SUCCESS, #call, [&] {                    \
      char text_[MPI_MAX_ERROR_STRING];                                                   \
      int length_ = 0;                                                                    \
      MPI_Error_string(longctx_rc_, text_, &length_);                                     \
      return std::string(text_, static_cast<size_t>(length_));                            \
    }());                                                                                 \
  } while (0)

// HDF5 calls return a negative value (herr_t or hid_t) on failure.
#define LONGCTX_CHECK_HDF5(call)                                                          \
  do {                                                                                    \
    const auto longctx_rc_ = (call);                                                      \
    LONGCTX_CHECK_IMPL("HDF5", longctx_rc_ >= 0, #call, std::string("HDF5 call failed")); \
  } while (0)

#define LONGCTX_CHECK_CUDA(call)                                                            \
  do {                                                                                      \
    const cudaError_t longctx_rc_ = (call);                                                 \
    LONGCTX_CHECK_IMPL("CUDA", longctx_rc_ == cudaSuccess, #call,                           \
                       std::string(cudaGetErrorString(longctx_rc_)));                       \
  } while (0)

#define LONGCTX_CHECK_NCCL(call)                                                            \
  do {                                                                                      \
    const ncclResult_t longctx_rc_ = (call);                                                \
    LONGCTX_CHECK_IMPL("NCCL", longctx_rc_ == ncclSuccess, #call,                           \
                       std::string(ncclGetErrorString(longctx_rc_)));                       \
  } while (0)
