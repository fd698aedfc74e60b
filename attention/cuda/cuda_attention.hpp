// The CUDA attention backend. fp32: exact kernels (one warp per query row and head, one joint online
// softmax over every branch's selected keys), the GPU's correctness reference, not fast. bf16 / fp16: the
// tensor-core kernels of flash_kernels.hpp (fp32 accumulation, fp32 lse and outputs). In both the dilated
// selection is done in the kernels' loads, no gathered copies. Host tensors in and out: each call copies
// to the device (and rounds q, k, v, dout to the dtype there).
//
// This header includes no CUDA header, so the rest of the code can use it in any build.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "attention/attention.hpp"
#include "runtime/core/error.hpp"

namespace longctx {

// Whether the CUDA backend is compiled into this build.
bool cuda_compiled_in();
// Visible CUDA devices (0 when none, or when not compiled in; never throws).
int cuda_device_count();
// "runtime 13.0, driver 13.0, 1 device(s): NVIDIA H200 (sm_90)" or "not compiled in" / "no device".
std::string cuda_description();
// The GPU a rank with this node-local rank uses (one per local rank: local_rank mod the visible
// devices, so ranks past the device count share, which `longctx info` refuses), as
// "cuda:<index> <name> <uuid prefix>" (the uuid tells GPUs apart across ranks that see different
// CUDA_VISIBLE_DEVICES); "" when no GPU is visible.
std::string cuda_device_label(int local_rank);
// "2.28.3", or "not compiled in".
std::string nccl_version();

// The device ran out of memory (a usage limit, exit 2: a smaller problem or more ranks will fit).
class DeviceMemoryError : public UsageError {
 public:
  explicit DeviceMemoryError(const std::string& message) : UsageError(message) {}
};

// Device time of the kernels alone on device-resident seeded inputs (values in [-1, 1), the same hash as
// `longctx bench attention` on the CPU): `warmup` untimed runs, then the median of `iters` (CUDA events).
struct CudaBenchFigures {
  double seconds_fwd = 0;
  double seconds_bwd = 0;      // 0 without backward
  uint64_t device_bytes = 0;   // inputs, outputs and scratch held on the device
  std::string forward_kernel;   // which kernels ran: "wgmma (sm_90a)", "mma.sync" or "fp32 reference"
  std::string backward_kernel;  // empty without backward
  int launches_fwd = 0, launches_bwd = 0;  // attention kernel launches per pass (1: all branches in one)
  // Per branch in schedule order, when the half-precision kernels ran one launch per branch (empty for
  // fp32, whose kernel takes all branches at once, and for fused launches, cuda::flash_fuses): its launch's
  // device seconds (median over the timed iterations, from CUDA events between the launches), its blocks,
  // and the blocks the GPU runs at once.
  struct BranchFigures {
    double seconds_fwd = 0, seconds_bwd = 0;
    long long blocks_fwd = 0, blocks_bwd = 0, resident_fwd = 0, resident_bwd = 0;
  };
  std::vector<BranchFigures> branches;
};
CudaBenchFigures cuda_bench_attention(const AttentionParams& params, const AttentionDims& dims, Dtype dtype,
                                      int warmup, int iters, bool backward, uint64_t seed);

class CudaAttention : public AttentionBackend {
 public:
  // UsageError naming --device when no GPU is visible or CUDA is not compiled in.
  explicit CudaAttention(Dtype dtype = Dtype::fp32);
  std::string name() const override { return "cuda"; }
  Dtype dtype() const { return dtype_; }
  void forward(const AttentionParams& params, const Tensor& q, const Tensor& k, const Tensor& v, Tensor& o,
               Tensor& lse) override;
  void backward(const AttentionParams& params, const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& o,
                const Tensor& lse, const Tensor& dout, Tensor& dq, Tensor& dk, Tensor& dv) override;

 private:
  Dtype dtype_;
};

}  // namespace longctx
