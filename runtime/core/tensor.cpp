#include "runtime/core/tensor.hpp"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <new>
#include <sstream>

#include <sys/mman.h>

#include "runtime/core/error.hpp"

namespace longctx {

int64_t element_count(const Shape& shape) {
  int64_t count = 1;
  for (int64_t extent : shape) {
    if (extent < 0) throw InternalError("negative extent in shape " + to_string(shape));
    // Past 2^63 / 4 elements the byte count would wrap (a tiny buffer for a huge shape).
    if (extent != 0 && count > std::numeric_limits<int64_t>::max() / 4 / extent)
      throw UsageError("shape " + to_string(shape) + " has more elements than any memory holds");
    count *= extent;
  }
  return count;
}

std::string to_string(const Shape& shape) {
  std::ostringstream out;
  out << '[';
  for (size_t i = 0; i < shape.size(); ++i) out << (i ? "," : "") << shape[i];
  out << ']';
  return out.str();
}

void Tensor::Free::operator()(float* p) const {
  if (mapped > 0) {
    ::munmap(p, mapped);
  } else {
    std::free(p);
  }
}

// A tensor of 32 MiB or more is a mapping of its own that asks for transparent huge pages: where THP is
// "madvise" (as on our VM), the kernel backs only regions that ask with them. A first touch then faults once
// per 2 MiB instead of once per 4 KiB (bench attention's set-up of 2 GB of tensors: 1.5-2x faster on the
// 2-core VM; the kernels' times did not change beyond noise). Malloc maps blocks this large on their own too
// (32 MiB is glibc's largest mmap threshold), but may also carve one from its heap, which it reuses for
// other allocations: the advice would stay there. Smaller tensors stay with malloc and ask for nothing. No
// 2 MiB alignment: it would add up to 2 MiB of address space to each tensor, which `ulimit -v` counts (and
// the memory check's estimate does not). Where THP is "never", or the advice fails, the pages are 4 KiB ones.
Tensor::Tensor(Shape shape, Unfilled) : shape_(std::move(shape)), count_(element_count(shape_)) {
  constexpr size_t alignment = 64;
  constexpr size_t kOwnMapping = size_t{32} << 20;
  const size_t bytes = std::max<size_t>(alignment, (size_bytes() + alignment - 1) / alignment * alignment);
  if (bytes >= kOwnMapping) {
    void* mapping = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mapping == MAP_FAILED) throw std::bad_alloc();
#ifdef MADV_HUGEPAGE
    ::madvise(mapping, bytes, MADV_HUGEPAGE);
#endif
    data_ = std::unique_ptr<float[], Free>(static_cast<float*>(mapping), Free{bytes});
    return;
  }
  data_.reset(static_cast<float*>(std::aligned_alloc(alignment, bytes)));
  if (!data_) throw std::bad_alloc();
}

Tensor::Tensor(Shape shape, float fill_value) : Tensor(std::move(shape), Unfilled{}) { fill(fill_value); }

// A copy writes every element once (before: zeroed first); one of the same size keeps its storage (before:
// a new allocation, filled, copied into, and the old one freed: the model copies its layers' inputs each step).
Tensor::Tensor(const Tensor& other) : Tensor(other.shape_, Unfilled{}) {
  if (count_) std::memcpy(data(), other.data(), size_bytes());
}

Tensor& Tensor::operator=(const Tensor& other) {
  if (this == &other) return *this;
  if (data_ && count_ == other.count_) {
    shape_ = other.shape_;
    if (count_) std::memcpy(data(), other.data(), size_bytes());
    return *this;
  }
  *this = Tensor(other);
  return *this;
}

void Tensor::fill(float value) { std::fill(data(), data() + count_, value); }

void Tensor::reshape(Shape shape) {
  if (element_count(shape) != count_)
    throw InternalError("cannot reshape " + to_string(shape_) + " to " + to_string(shape));
  shape_ = std::move(shape);
}

}  // namespace longctx
