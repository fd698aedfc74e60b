// A minimal std::span stand-in (C++17 has none): pointer + element count, never bytes.
#pragma once

#include <cstddef>
#include <type_traits>
#include <vector>

namespace longctx {

template <class T>
class Span {
 public:
  Span() = default;
  Span(T* data, size_t count) : data_(data), count_(count) {}
  template <class U, class = std::enable_if_t<std::is_convertible_v<U (*)[], T (*)[]>>>
  Span(std::vector<U>& v) : data_(v.data()), count_(v.size()) {}  // NOLINT: implicit like std::span
  template <class U, class = std::enable_if_t<std::is_convertible_v<const U (*)[], T (*)[]>>>
  Span(const std::vector<U>& v) : data_(v.data()), count_(v.size()) {}  // NOLINT
  template <class U, class = std::enable_if_t<std::is_convertible_v<U (*)[], T (*)[]>>>
  Span(Span<U> other) : data_(other.data()), count_(other.size()) {}  // NOLINT: Span<T> -> Span<const T>

  T* data() const { return data_; }
  size_t size() const { return count_; }
  size_t size_bytes() const { return count_ * sizeof(T); }
  bool empty() const { return count_ == 0; }
  T& operator[](size_t i) const { return data_[i]; }
  T* begin() const { return data_; }
  T* end() const { return data_ + count_; }
  Span subspan(size_t offset, size_t count) const { return Span(data_ + offset, count); }

 private:
  T* data_ = nullptr;
  size_t count_ = 0;
};

}  // namespace longctx
