// The CUDA attention backend, first step: exact fp32 kernels (one warp per query row and head, one joint
// online softmax over every branch's selected keys; the dilated selection is done in the kernel's loads,
// no gathered copies). They are the GPU's correctness reference for the tensor-core bf16/fp16 kernels
// still to come (issue 7); they are not fast. Host tensors in and out: each call copies to the device.
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
  CudaAttention();  // UsageError naming --device when no GPU is visible or CUDA is not compiled in
  std::string name() const override { return "cuda"; }
  void forward(const AttentionParams& params, const Tensor& q, const Tensor& k, const Tensor& v, Tensor& o,
               Tensor& lse) override;
  void backward(const AttentionParams& params, const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& o,
                const Tensor& lse, const Tensor& dout, Tensor& dq, Tensor& dk, Tensor& dv) override;
};

}  // namespace longctx
