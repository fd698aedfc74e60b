// The CUDA attention backend. fp32: exact kernels (one warp per query row and head, one joint online
// softmax over every branch's selected keys), the GPU's correctness reference, not fast. bf16 / fp16: the
// tensor-core kernels of flash_kernels.hpp (fp32 accumulation, fp32 lse and outputs). In both the dilated
// selection is done in the kernels' loads, no gathered copies. Host tensors in and out: each call copies
// to the device (and rounds q, k, v, dout to the dtype there).
//
// This header includes no CUDA header, so the rest of the code can use it in any build.
#pragma once

#include <string>

#include "attention/attention.hpp"

namespace longctx {

// Whether the CUDA backend is compiled into this build.
bool cuda_compiled_in();
// Visible CUDA devices (0 when none, or when not compiled in; never throws).
int cuda_device_count();
// "runtime 13.0, driver 13.0, 1 device(s): NVIDIA H200 (sm_90)" or "not compiled in" / "no device".
std::string cuda_description();
// "2.28.3", or "not compiled in".
std::string nccl_version();

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
