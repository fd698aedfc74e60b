// Device communicators in a build without CUDA: each entry point explains that the build has none.
#include "comm/device_comm.hpp"

namespace longctx::comm {

namespace {
[[noreturn]] void no_cuda(const char* what) {
  throw UsageError(std::string(what) + ": this build has no CUDA backend (no nvcc was found at configure time)");
}
}  // namespace

int select_device(int) { no_cuda("--comm"); }
std::shared_ptr<void> device_alloc(size_t) { no_cuda("--comm"); }
void device_synchronize() {}

std::shared_ptr<MemoryCopier> make_cuda_copier() { no_cuda("--comm staged"); }

bool nccl_available(std::string* version_or_reason) {
  if (version_or_reason) *version_or_reason = "not compiled in";
  return false;
}

std::unique_ptr<Communicator> make_nccl_communicator(Communicator&, int) { no_cuda("--comm nccl"); }

}  // namespace longctx::comm
