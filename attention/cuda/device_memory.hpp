// Device memory for the CUDA sources (includes the CUDA runtime: .cu files only): a buffer that frees
// itself, and host tensors to and from it.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <string>

#include "attention/cuda/cuda_attention.hpp"
#include "attention/cuda/flash_kernels.hpp"
#include "runtime/core/check.hpp"

namespace longctx::cuda {

// `bytes` of device memory on the current device; DeviceMemoryError (exit 2) when it does not fit.
class DeviceMemory {
 public:
  DeviceMemory() = default;
  explicit DeviceMemory(size_t bytes) : bytes_(bytes) {
    if (bytes == 0) return;
    const cudaError_t rc = cudaMalloc(&data_, bytes);
    if (rc == cudaErrorMemoryAllocation) {
      cudaGetLastError();
      size_t free_bytes = 0, total = 0;
      cudaMemGetInfo(&free_bytes, &total);
      throw DeviceMemoryError("--device cuda: cannot allocate " + std::to_string(bytes >> 20) + " MiB (" +
                              std::to_string(free_bytes >> 20) + " MiB free of " + std::to_string(total >> 20) + ")");
    }
    LONGCTX_CHECK_CUDA(rc);
  }
  ~DeviceMemory() { cudaFree(data_); }
  DeviceMemory(DeviceMemory&& other) noexcept : data_(other.data_), bytes_(other.bytes_) {
    other.data_ = nullptr;
    other.bytes_ = 0;
  }
  DeviceMemory& operator=(DeviceMemory&& other) noexcept {
    if (this != &other) {
      cudaFree(data_);
      data_ = other.data_;
      bytes_ = other.bytes_;
      other.data_ = nullptr;
      other.bytes_ = 0;
    }
    return *this;
  }
  template <class T = void> T* get() const { return static_cast<T*>(data_); }
  size_t bytes() const { return bytes_; }

 private:
  void* data_ = nullptr;
  size_t bytes_ = 0;
};

// A float32 host tensor's bytes to / from device memory of its size.
inline void upload_f32(const Tensor& t, DeviceMemory& out) {
  LONGCTX_CHECK_CUDA(cudaMemcpy(out.get(), t.data(), t.size_bytes(), cudaMemcpyHostToDevice));
}
inline void download_f32(const DeviceMemory& in, Tensor& t) {
  LONGCTX_CHECK_CUDA(cudaMemcpy(t.data(), in.get(), t.size_bytes(), cudaMemcpyDeviceToHost));
}

// A host tensor on the device in `dtype` (rounded there for bf16 / fp16).
inline DeviceMemory upload_as(const Tensor& t, Dtype dtype) {
  DeviceMemory out(static_cast<size_t>(t.size()) * element_bytes(dtype));
  if (dtype == Dtype::fp32) {
    upload_f32(t, out);
    return out;
  }
  DeviceMemory staging(t.size_bytes());
  upload_f32(t, staging);
  convert_from_f32(dtype, staging.get<float>(), out.get(), static_cast<size_t>(t.size()), nullptr);
  LONGCTX_CHECK_CUDA(cudaDeviceSynchronize());  // before the staging buffer is freed
  return out;
}

// Host tensors around a device computation. forward: checks q, k, v, uploads them in `dtype`, runs
// body(dims, q, k, v, o, lse) on device pointers, downloads o and lse.
template <class Body>
void on_device_forward(Dtype dtype, const Tensor& q, const Tensor& k, const Tensor& v, Tensor& o, Tensor& lse,
                       Body&& body) {
  const AttentionDims dims = check_qkv(q, k, v);
  ensure_shape(o, q.shape());
  ensure_shape(lse, lse_shape(q.shape()));
  const DeviceMemory bq = upload_as(q, dtype), bk = upload_as(k, dtype), bv = upload_as(v, dtype);
  DeviceMemory bo(o.size_bytes()), blse(lse.size_bytes());
  body(dims, bq.get(), bk.get(), bv.get(), bo.get<float>(), blse.get<float>());
  LONGCTX_CHECK_CUDA(cudaDeviceSynchronize());
  download_f32(bo, o);
  download_f32(blse, lse);
}

// backward: body(dims, q, k, v, dout, o, lse, dq, dk, dv) with dout in `dtype`, o / lse / gradients fp32.
template <class Body>
void on_device_backward(Dtype dtype, const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& o,
                        const Tensor& lse, const Tensor& dout, Tensor& dq, Tensor& dk, Tensor& dv, Body&& body) {
  const AttentionDims dims = check_qkv(q, k, v);
  check_shape("o", o, q.shape());
  check_shape("dout", dout, q.shape());
  check_shape("lse", lse, lse_shape(q.shape()));
  ensure_shape(dq, q.shape());
  ensure_shape(dk, q.shape());
  ensure_shape(dv, q.shape());
  const DeviceMemory bq = upload_as(q, dtype), bk = upload_as(k, dtype), bv = upload_as(v, dtype),
                     bdout = upload_as(dout, dtype);
  DeviceMemory bo(o.size_bytes()), blse(lse.size_bytes()), bdq(dq.size_bytes()), bdk(dk.size_bytes()),
      bdv(dv.size_bytes());
  upload_f32(o, bo);
  upload_f32(lse, blse);
  body(dims, bq.get(), bk.get(), bv.get(), bdout.get(), bo.get<float>(), blse.get<float>(), bdq.get<float>(),
       bdk.get<float>(), bdv.get<float>());
  LONGCTX_CHECK_CUDA(cudaDeviceSynchronize());
  download_f32(bdq, dq);
  download_f32(bdk, dk);
  download_f32(bdv, dv);
}

}  // namespace longctx::cuda
