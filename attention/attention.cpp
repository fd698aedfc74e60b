#include "attention/attention.hpp"

#include <algorithm>
#include <cmath>

#include "attention/cpu_attention.hpp"
#include "attention/cuda/cuda_attention.hpp"
#include "runtime/core/error.hpp"

namespace longctx {

Dtype parse_dtype(const std::string& text) {
  if (text == "fp32") return Dtype::fp32;
  if (text == "bf16") return Dtype::bf16;
  if (text == "fp16") return Dtype::fp16;
  throw UsageError("--dtype: '" + text + "' is not a dtype; allowed: fp32, bf16, fp16", "dtype");
}

std::string to_string(Dtype dtype) {
  switch (dtype) {
    case Dtype::fp32: return "fp32";
    case Dtype::bf16: return "bf16";
    case Dtype::fp16: return "fp16";
  }
  return "?";
}

float round_to(Dtype dtype, float x) {
  if (dtype == Dtype::fp32 || !std::isfinite(x) || x == 0.f) return x;
  // Significant bits and the exponent of the smallest subnormal's unit: bf16 8 and -133, fp16 11 and -24.
  const int bits = dtype == Dtype::bf16 ? 8 : 11;
  const int min_unit = dtype == Dtype::bf16 ? -133 : -24;
  int exponent = 0;
  std::frexp(x, &exponent);  // |x| = m 2^exponent, m in [0.5, 1)
  const float unit = std::ldexp(1.f, std::max(exponent - bits, min_unit));
  const float y = std::nearbyint(x / unit) * unit;  // exact scaling by powers of two; ties to even
  if (dtype == Dtype::fp16 && std::fabs(y) > 65504.f) return std::copysign(INFINITY, x);
  return y;
}

Tensor rounded(const Tensor& tensor, Dtype dtype) {
  Tensor out(tensor.shape());
  for (int64_t i = 0; i < tensor.size(); ++i) out[i] = round_to(dtype, tensor[i]);
  return out;
}

std::unique_ptr<AttentionBackend> make_attention_backend(const std::string& device, Dtype dtype) {
  if (device == "cpu") {
    if (dtype != Dtype::fp32)
      throw UsageError("--dtype " + to_string(dtype) + ": the cpu backend computes in fp32 only (bf16, fp16 need "
                       "--device cuda)");
    return std::make_unique<CpuAttention>();
  }
  if (device == "cuda") return std::make_unique<CudaAttention>(dtype);  // UsageError without CUDA or a GPU
  throw UsageError("--device: unknown value '" + device + "' (allowed: cpu, cuda)");
}

AttentionDims check_qkv(const Tensor& q, const Tensor& k, const Tensor& v) {
  if (q.rank() != 3 && q.rank() != 4)
    throw InputError("q must have rank 3 [N,H,D] or 4 [B,N,H,D], got shape " + to_string(q.shape()));
  if (k.shape() != q.shape() || v.shape() != q.shape())
    throw InputError("q, k and v must have the same shape, got q " + to_string(q.shape()) + ", k " +
                     to_string(k.shape()) + ", v " + to_string(v.shape()));
  for (int64_t extent : q.shape())
    if (extent <= 0) throw InputError("q, k, v have an empty extent: shape " + to_string(q.shape()));
  const size_t first = q.rank() == 4 ? 1 : 0;
  AttentionDims dims;
  dims.batch = q.rank() == 4 ? q.dim(0) : 1;
  dims.seq_len = q.dim(first);
  dims.heads = q.dim(first + 1);
  dims.head_dim = q.dim(first + 2);
  return dims;
}

void check_shape(const char* name, const Tensor& tensor, const Shape& expected) {
  if (tensor.shape() != expected)
    throw InputError(std::string(name) + " must have shape " + to_string(expected) + ", got " +
                     to_string(tensor.shape()));
}

Shape lse_shape(const Shape& q_shape) { return Shape(q_shape.begin(), q_shape.end() - 1); }

void ensure_shape(Tensor& tensor, const Shape& shape) {
  if (tensor.shape() != shape) tensor = Tensor(shape);
}

double resolved_scale(const AttentionParams& params, int64_t head_dim) {
  return params.softmax_scale != 0 ? params.softmax_scale : 1.0 / std::sqrt(static_cast<double>(head_dim));
}

}  // namespace longctx
