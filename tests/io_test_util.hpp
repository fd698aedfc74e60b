// Helpers shared by the io tests: a scratch directory every rank agrees on, and inputs that are a
// function of (seed, global index) so each rank builds its own shard and its expected values locally.
#pragma once

#include <mpi.h>
#include <stdlib.h>

#include <cmath>
#include <cstdio>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "io/row_io.hpp"
#include "runtime/core/tensor.hpp"

namespace longctx::io::test {

inline int world_rank() {
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  return rank;
}

inline int world_size() {
  int size = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  return size;
}

// Runs `section` on rank 0 alone, for a test whose other ranks then wait in a collective. A failed ASSERT or
// an exception ends the section (a test failure), not the test, so rank 0 still reaches the collective the
// other ranks wait in (before: the ranks fell out of step, and the test hung until ctest's timeout instead
// of failing).
template <class F>
void on_rank0(F&& section) {
  if (world_rank() != 0) return;
  try {
    section();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "rank 0: " << e.what();
  }
}

// A fresh directory made by rank 0 and shared with every rank; removed (by rank 0) on destruction.
class SharedTempDir {
 public:
  explicit SharedTempDir(MPI_Comm comm = MPI_COMM_WORLD) : comm_(comm) {
    int rank = 0;
    MPI_Comm_rank(comm, &rank);
    char buffer[256] = {0};
    if (rank == 0) {
      std::string pattern = (std::filesystem::temp_directory_path() / "longctx_io_XXXXXX").string();
      std::vector<char> name(pattern.begin(), pattern.end());
      name.push_back('\0');
      if (mkdtemp(name.data()) != nullptr) std::snprintf(buffer, sizeof(buffer), "%s", name.data());
    }
    MPI_Bcast(buffer, sizeof(buffer), MPI_CHAR, 0, comm);
    path_ = buffer;
  }
  ~SharedTempDir() {
    MPI_Barrier(comm_);
    int rank = 0;
    MPI_Comm_rank(comm_, &rank);
    std::error_code error;
    if (rank == 0 && !path_.empty()) std::filesystem::remove_all(path_, error);
  }
  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  MPI_Comm comm_;
  std::string path_;
};

// The value at flat global index `index` of a tensor seeded by `seed`: deterministic, in [-1, 1),
// exactly representable in float16 (multiples of 1/64), so float16 round trips are exact.
inline float value_at(uint64_t seed, int64_t index) {
  uint64_t x = seed * 0x9E3779B97F4A7C15ull + static_cast<uint64_t>(index) + 1;
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdull;
  x ^= x >> 33;
  return static_cast<float>(static_cast<int64_t>(x % 128) - 64) / 64.0f;
}

// This rank's block of a global tensor filled by value_at: rows `rows` along `seq_axis`.
inline Tensor make_block(uint64_t seed, const Shape& global, size_t seq_axis, RowRange rows) {
  Tensor block(block_shape(global, seq_axis, rows));
  int64_t outer = 1;
  for (size_t i = 0; i < seq_axis; ++i) outer *= global[i];
  int64_t row_elements = 1;
  for (size_t i = seq_axis + 1; i < global.size(); ++i) row_elements *= global[i];
  const int64_t n = global[seq_axis];
  int64_t out = 0;
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t r = rows.begin; r < rows.end; ++r)
      for (int64_t e = 0; e < row_elements; ++e) block[out++] = value_at(seed, (o * n + r) * row_elements + e);
  return block;
}

// Elementwise equality with the first bad index in the message.
inline ::testing::AssertionResult tensors_equal(const Tensor& expected, const Tensor& actual) {
  if (expected.shape() != actual.shape())
    return ::testing::AssertionFailure() << "shape " << to_string(actual.shape()) << ", expected "
                                         << to_string(expected.shape());
  for (int64_t i = 0; i < expected.size(); ++i)
    if (!(expected[i] == actual[i]))
      return ::testing::AssertionFailure() << "first difference at flat index " << i << ": " << actual[i]
                                           << ", expected " << expected[i];
  return ::testing::AssertionSuccess();
}

}  // namespace longctx::io::test
