// The attention interface every backend implements (CPU now, CUDA later), and the shape rules they share.
// Semantics: ../shared/spec/dilated-attention.md. Tensors are row-major float32:
//   q, k, v, o, dout, dq, dk, dv: [B, N, H, D]  (rank 3 [N, H, D] means B = 1)
//   lse:                          [B, N, H]     ([N, H]); natural log, -inf for rows no branch selects
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "attention/schedule.hpp"
#include "runtime/core/tensor.hpp"

namespace longctx {

// Element type of q, k, v (and dout) in the kernels: fp32 everywhere; bf16 / fp16 on --device cuda
// (fp32 accumulation and lse, fp32 outputs).
enum class Dtype { fp32, bf16, fp16 };
// "fp32", "bf16" or "fp16"; UsageError naming --dtype and the allowed values otherwise.
Dtype parse_dtype(const std::string& text);
std::string to_string(Dtype dtype);
// x rounded to the nearest `dtype` value, ties to even, overflow to +-inf: what a kernel of that dtype
// reads of an fp32 input.
float round_to(Dtype dtype, float x);
Tensor rounded(const Tensor& tensor, Dtype dtype);

struct AttentionParams {
  Schedule schedule;
  bool causal = false;
  HeadOffsets offsets = HeadOffsets::paper;
  double softmax_scale = 0;  // 0 -> 1/sqrt(D)
};

class AttentionBackend {
 public:
  virtual ~AttentionBackend() = default;
  virtual std::string name() const = 0;
  // q, k, v: [B,N,H,D] float32 (rank 3 [N,H,D] means B = 1); o gets q's shape, lse [B,N,H] ([N,H]).
  // Outputs are (re)allocated by the callee if their shape is wrong.
  virtual void forward(const AttentionParams& params, const Tensor& q, const Tensor& k, const Tensor& v, Tensor& o,
                       Tensor& lse) = 0;
  // Exact gradients (spec "Backward"), given the forward's o and lse.
  virtual void backward(const AttentionParams& params, const Tensor& q, const Tensor& k, const Tensor& v,
                        const Tensor& o, const Tensor& lse, const Tensor& dout, Tensor& dq, Tensor& dk,
                        Tensor& dv) = 0;
};

// "cpu" (fp32 only) or "cuda"; UsageError naming --device / --dtype and the allowed values otherwise.
std::unique_ptr<AttentionBackend> make_attention_backend(const std::string& device, Dtype dtype = Dtype::fp32);

// Extents of one attention call.
struct AttentionDims {
  int64_t batch = 0;
  int64_t seq_len = 0;
  int64_t heads = 0;
  int64_t head_dim = 0;
};

// Checks q, k, v (same shape, rank 3 or 4, no zero extent); InputError naming the tensors otherwise.
AttentionDims check_qkv(const Tensor& q, const Tensor& k, const Tensor& v);
// Checks that `tensor` (named `name`) has `expected` shape; InputError otherwise.
void check_shape(const char* name, const Tensor& tensor, const Shape& expected);
// The lse shape that goes with q's shape: q's without its last extent.
Shape lse_shape(const Shape& q_shape);
// Reallocates `tensor` unless it already has `shape` (contents are then unspecified).
void ensure_shape(Tensor& tensor, const Shape& shape);
// params.softmax_scale, or 1/sqrt(D) when it is 0.
double resolved_scale(const AttentionParams& params, int64_t head_dim);

}  // namespace longctx
