#include "runtime/version.hpp"

#include <hdf5.h>
#include <mpi.h>

#include <sstream>

#include "attention/cuda/cuda_attention.hpp"
#include "comm/device_comm.hpp"

#include "longctx_build_info.hpp"
#include "longctx_git_hash.hpp"

namespace longctx {

std::vector<std::string> compiled_backends() {
  std::vector<std::string> backends{"attention: cpu", "comm: mpi"};
  if (cuda_compiled_in()) {
    backends.insert(backends.begin() + 1, "attention: cuda (bf16/fp16 tensor cores, one GPU per rank under mpirun; fp32 reference on one GPU)");
    backends.push_back("comm: nccl (libnccl.so.2 loaded at run time)");
    backends.push_back("comm: mpi+staged (device buffers through host memory)");
  }
  return backends;
}

std::string version_text() {
  std::ostringstream out;
  out << "longctx " << LONGCTX_VERSION << " (git " << LONGCTX_GIT_HASH << ", " << LONGCTX_BUILD_TYPE << ")\n";
  out << "backends: ";
  const auto backends = compiled_backends();
  for (size_t i = 0; i < backends.size(); ++i) out << (i ? ", " : "") << backends[i];
  out << "\n";
  char mpi_version[MPI_MAX_LIBRARY_VERSION_STRING];
  int length = 0;
  MPI_Get_library_version(mpi_version, &length);
  std::string mpi(mpi_version, static_cast<size_t>(length));
  if (const size_t comma = mpi.find(','); comma != std::string::npos) mpi.resize(comma);
  while (!mpi.empty() && (mpi.back() == '\n' || mpi.back() == ' ')) mpi.pop_back();
  int mpi_major = 0, mpi_minor = 0;
  MPI_Get_version(&mpi_major, &mpi_minor);
  unsigned h5_major = 0, h5_minor = 0, h5_release = 0;
  H5get_libversion(&h5_major, &h5_minor, &h5_release);
  out << "MPI: " << mpi << " (MPI " << mpi_major << "." << mpi_minor << ")\n";
  out << "HDF5: " << h5_major << "." << h5_minor << "." << h5_release << " (parallel)\n";
  out << "CUDA: " << cuda_description() << "\n";
  std::string nccl_runtime;
  const bool nccl_loads = comm::nccl_available(&nccl_runtime);
  out << "NCCL: " << nccl_version() << "; libnccl.so.2 " << (nccl_loads ? nccl_runtime + " loads" : "not loaded: " + nccl_runtime)
      << "\n";
  return out.str();
}

}  // namespace longctx
