// Host tensor: a contiguous, row-major, 64-byte aligned float32 buffer with a shape. Indices and sizes
// are 64-bit: anything that scales with the sequence length overflows int at a billion tokens.
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "runtime/core/span.hpp"

namespace longctx {

using Shape = std::vector<int64_t>;

int64_t element_count(const Shape& shape);
std::string to_string(const Shape& shape);

class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(Shape shape, float fill = 0.0f);

  Tensor(const Tensor& other);
  Tensor& operator=(const Tensor& other);
  Tensor(Tensor&&) noexcept = default;
  Tensor& operator=(Tensor&&) noexcept = default;

  const Shape& shape() const { return shape_; }
  int64_t dim(size_t axis) const { return shape_.at(axis); }
  size_t rank() const { return shape_.size(); }
  int64_t size() const { return count_; }
  size_t size_bytes() const { return static_cast<size_t>(count_) * sizeof(float); }

  float* data() { return data_.get(); }
  const float* data() const { return data_.get(); }
  float& operator[](int64_t i) { return data_.get()[i]; }
  float operator[](int64_t i) const { return data_.get()[i]; }
  Span<float> span() { return {data(), static_cast<size_t>(count_)}; }
  Span<const float> span() const { return {data(), static_cast<size_t>(count_)}; }

  void fill(float value);
  // Same data, new shape with the same element count.
  void reshape(Shape shape);

 private:
  struct Free {
    // (Constructors, not a member initializer: a nested class's counts as default-constructible only once
    // Tensor is complete, too late for unique_ptr's check.)
    Free() noexcept : mapped(0) {}
    explicit Free(size_t bytes) noexcept : mapped(bytes) {}
    size_t mapped;  // bytes of a mapping of its own (a tensor of 32 MiB or more), else 0: malloc's
    void operator()(float* p) const;
  };
  struct Unfilled {};
  Tensor(Shape shape, Unfilled);  // storage only: for a copy, which writes every element
  Shape shape_;
  int64_t count_ = 0;
  std::unique_ptr<float[], Free> data_;
};

}  // namespace longctx
