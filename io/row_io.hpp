// Row-sharded tensor I/O: each rank reads or writes only its own rows along the sequence axis of a
// global dataset, with collective MPI-IO transfers on parallel files.
//
// Layouts: the sequence axis is 0 for [N,H,D] and [N,H], and 1 for [B,N,H,D] and [B,N,H]; callers say
// which (`seq_axis`). A rank's block holds every other axis whole, so its rows are the hyperslab
// start = (0.., row_begin, 0..), count = (.., rows, ..) and its Tensor has the global shape with
// `rows` along the sequence axis. Every rank calls read_rows / write_rows for every dataset, in the
// same order; a rank with zero rows takes part with an empty selection (no hang).
#pragma once

#include <string>

#include "io/h5.hpp"
#include "runtime/core/span.hpp"
#include "runtime/core/tensor.hpp"

namespace longctx::io {

// Rows [begin, end) along the sequence axis.
struct RowRange {
  int64_t begin = 0;
  int64_t end = 0;
  int64_t rows() const { return end - begin; }
};

// The block of `rank` when `total` rows are split over `size` ranks in rank order, the first
// total % size ranks one row larger (so with fewer rows than ranks, the last ranks get zero rows).
RowRange even_rows(int64_t total, int rank, int size);

// The shape of a rank's block: `global` with rows.rows() along seq_axis.
Shape block_shape(const Shape& global, size_t seq_axis, RowRange rows);

// Reads `rows` of a float32 or float16 dataset (float16 is converted to float32). A dataset of any other
// dtype, a seq_axis beyond its rank, or rows outside [0, N) -> InputError naming file and dataset.
Tensor read_rows(const h5::Dataset& dataset, size_t seq_axis, RowRange rows);
Tensor read_rows(const h5::Group& group, const std::string& name, size_t seq_axis, RowRange rows);

// Creates a float32 dataset of the global shape (collective). Options add chunking and checksums.
h5::Dataset create_float_dataset(h5::Group& group, const std::string& name, const Shape& global_shape,
                                 const h5::DatasetOptions& options = {});
// Writes this rank's block (`local` holds block_shape(...) elements, row-major) into `dataset`.
void write_rows(h5::Dataset& dataset, size_t seq_axis, RowRange rows, Span<const float> local);
// create_float_dataset + write_rows.
void write_rows(h5::Group& group, const std::string& name, const Shape& global_shape, size_t seq_axis,
                RowRange rows, const Tensor& local, const h5::DatasetOptions& options = {});

// Chunk shape for a row-sharded dataset: whole rows, about `target_bytes` per chunk (HDF5 caps a chunk at
// 4 GiB; ~1 MiB keeps the chunk cache and the checksums cheap).
Shape row_chunk(const Shape& global, size_t seq_axis, size_t element_bytes, int64_t target_bytes = int64_t{1} << 20);

}  // namespace longctx::io
