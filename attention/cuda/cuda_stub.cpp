// The CUDA backend's entry points in a build without CUDA (no nvcc found, or LONGCTX_CUDA=OFF).
#include "attention/cuda/cuda_attention.hpp"
#include "attention/cuda/sequence_parallel_cuda.hpp"
#include "runtime/core/error.hpp"

namespace longctx {

bool cuda_compiled_in() { return false; }
int cuda_device_count() { return 0; }
std::string cuda_description() { return "not compiled in"; }
std::string cuda_device_label(int) { return ""; }
std::string nccl_version() { return "not compiled in"; }

CudaAttention::CudaAttention(Dtype dtype) : dtype_(dtype) {
  throw UsageError("--device cuda: this build has no CUDA backend (no nvcc was found at configure time; "
                   "allowed: cpu)");
}
CudaBenchFigures cuda_bench_attention(const AttentionParams&, const AttentionDims&, Dtype, int, int, bool, uint64_t) {
  throw UsageError("--device cuda: this build has no CUDA backend (no nvcc was found at configure time; "
                   "allowed: cpu)");
}
void CudaAttention::forward(const AttentionParams&, const Tensor&, const Tensor&, const Tensor&, Tensor&, Tensor&) {}
void CudaAttention::backward(const AttentionParams&, const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                             const Tensor&, const Tensor&, Tensor&, Tensor&, Tensor&) {}

CudaSequenceParallel::CudaSequenceParallel(comm::Communicator& comm, Dtype dtype) : comm_(comm), dtype_(dtype) {
  throw UsageError("--device cuda: this build has no CUDA backend (no nvcc was found at configure time; "
                   "allowed: cpu)");
}
CudaSequenceParallel::~CudaSequenceParallel() = default;
void CudaSequenceParallel::forward(const AttentionParams&, const AttentionDims&, const void*, const void*, const void*,
                                   float*, float*) {}
void CudaSequenceParallel::backward(const AttentionParams&, const AttentionDims&, const void*, const void*,
                                    const void*, const void*, const float*, const float*, float*, float*, float*) {}
void CudaSequenceParallel::forward(const AttentionParams&, const Tensor&, const Tensor&, const Tensor&, Tensor&,
                                   Tensor&) {}
void CudaSequenceParallel::backward(const AttentionParams&, const Tensor&, const Tensor&, const Tensor&,
                                    const Tensor&, const Tensor&, const Tensor&, Tensor&, Tensor&, Tensor&) {}

}  // namespace longctx
