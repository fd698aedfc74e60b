#include "attention/attention.hpp"

#include <cmath>

#include "attention/cpu_attention.hpp"
#include "attention/cuda/cuda_attention.hpp"
#include "runtime/core/error.hpp"

namespace longctx {

std::unique_ptr<AttentionBackend> make_attention_backend(const std::string& device) {
  if (device == "cpu") return std::make_unique<CpuAttention>();
  if (device == "cuda") return std::make_unique<CudaAttention>();  // UsageError without CUDA or a GPU
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
