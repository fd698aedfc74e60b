#pragma once
#include <string>
#include <vector>
namespace longctx {
// `longctx --version`: version, git hash, compiled backends, MPI / HDF5 / CUDA / NCCL versions.
std::string version_text();
std::vector<std::string> compiled_backends();
}  // namespace longctx
