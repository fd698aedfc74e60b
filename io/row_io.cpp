#include "io/row_io.hpp"

#include <algorithm>

#include "runtime/core/watchdog.hpp"

namespace longctx::io {

RowRange even_rows(int64_t total, int rank, int size) {
  if (size <= 0 || rank < 0 || rank >= size || total < 0)
    throw InternalError("even_rows: total " + std::to_string(total) + ", rank " + std::to_string(rank) +
                        ", size " + std::to_string(size));
  const int64_t base = total / size;
  const int64_t extra = total % size;
  const int64_t begin = rank * base + std::min<int64_t>(rank, extra);
  return {begin, begin + base + (rank < extra ? 1 : 0)};
}

Shape block_shape(const Shape& global, size_t seq_axis, RowRange rows) {
  Shape block = global;
  block.at(seq_axis) = rows.rows();
  return block;
}

namespace {

// Hyperslab of this rank's rows in the file; an empty block selects nothing (and still takes part).
void select_rows(h5::Dataspace& file, const Shape& global, size_t seq_axis, RowRange rows) {
  Shape start(global.size(), 0);
  start[seq_axis] = rows.begin;
  file.select_box(start, block_shape(global, seq_axis, rows));
}

void check_rows(const h5::Dataset& dataset, const Shape& global, size_t seq_axis, RowRange rows) {
  if (seq_axis >= global.size())
    throw InputError(dataset.where().describe() + ": shape " + to_string(global) + " has no sequence axis " +
                     std::to_string(seq_axis));
  if (rows.begin < 0 || rows.end < rows.begin || rows.end > global[seq_axis])
    throw InputError(dataset.where().describe() + ": rows [" + std::to_string(rows.begin) + ", " +
                     std::to_string(rows.end) + ") outside the " + std::to_string(global[seq_axis]) +
                     " rows of shape " + to_string(global));
}

}  // namespace

Tensor read_rows(const h5::Dataset& dataset, size_t seq_axis, RowRange rows) {
  const h5::ElementType type = dataset.element_type();
  if (type != h5::ElementType::f32 && type != h5::ElementType::f16)
    throw InputError(dataset.where().describe() + ": dtype " + dataset.dtype_name() +
                     ", expected float32, float16 or bfloat16");
  const Shape global = dataset.shape();
  check_rows(dataset, global, seq_axis, rows);
  Tensor block(block_shape(global, seq_axis, rows));
  h5::Dataspace file = dataset.file_space();
  select_rows(file, global, seq_axis, rows);
  // The memory space has the block's own shape: against a flat one HDF5 maps every element of a chunked
  // dataset to its chunk one at a time (a 608 MB checkpoint wrote at 86 MB/s, and read 10x slower).
  h5::Dataspace memory = h5::Dataspace::simple(block.shape());
  if (block.size() == 0) memory.select_none();
  dataset.read(H5T_NATIVE_FLOAT, memory, file, block.data());
  watchdog::progress();  // each tensor read or written restarts a guarded region's deadline
  return block;
}

Tensor read_rows(const h5::Group& group, const std::string& name, size_t seq_axis, RowRange rows) {
  return read_rows(group.open_dataset(name), seq_axis, rows);
}

h5::Dataset create_float_dataset(h5::Group& group, const std::string& name, const Shape& global_shape,
                                 const h5::DatasetOptions& options) {
  return group.create_dataset(name, h5::ElementType::f32, global_shape, options);
}

void write_rows(h5::Dataset& dataset, size_t seq_axis, RowRange rows, Span<const float> local) {
  const Shape global = dataset.shape();
  if (seq_axis >= global.size() || rows.begin < 0 || rows.end < rows.begin || rows.end > global[seq_axis])
    throw InternalError(dataset.where().describe() + ": cannot write rows [" + std::to_string(rows.begin) + ", " +
                        std::to_string(rows.end) + ") along axis " + std::to_string(seq_axis) + " of shape " +
                        to_string(global));
  const int64_t expected = element_count(block_shape(global, seq_axis, rows));
  if (static_cast<int64_t>(local.size()) != expected)
    throw InternalError(dataset.where().describe() + ": block of " + std::to_string(local.size()) +
                        " elements, expected " + std::to_string(expected));
  h5::Dataspace file = dataset.file_space();
  select_rows(file, global, seq_axis, rows);
  h5::Dataspace memory = h5::Dataspace::simple(block_shape(global, seq_axis, rows));  // (as read_rows says)
  if (expected == 0) memory.select_none();
  dataset.write(H5T_NATIVE_FLOAT, memory, file, local.data());
  watchdog::progress();
}

void write_rows(h5::Group& group, const std::string& name, const Shape& global_shape, size_t seq_axis,
                RowRange rows, const Tensor& local, const h5::DatasetOptions& options) {
  if (local.shape() != block_shape(global_shape, seq_axis, rows))
    throw InternalError("write_rows " + name + ": block of shape " + to_string(local.shape()) + ", expected " +
                        to_string(block_shape(global_shape, seq_axis, rows)));
  h5::Dataset dataset = create_float_dataset(group, name, global_shape, options);
  write_rows(dataset, seq_axis, rows, local.span());
}

Shape row_chunk(const Shape& global, size_t seq_axis, size_t element_bytes, int64_t target_bytes) {
  Shape chunk = global;
  if (global.empty()) return chunk;
  int64_t row_bytes = static_cast<int64_t>(element_bytes);
  for (size_t i = seq_axis + 1; i < global.size(); ++i) row_bytes *= std::max<int64_t>(global[i], 1);
  for (size_t i = 0; i < seq_axis; ++i) chunk[i] = 1;
  chunk[seq_axis] = std::max<int64_t>(1, std::min<int64_t>(global[seq_axis], target_bytes / std::max<int64_t>(row_bytes, 1)));
  // A row wider than HDF5's 4 GiB chunk limit is split along the next axes.
  constexpr int64_t max_chunk_bytes = (int64_t{1} << 32) - 1;
  for (size_t i = seq_axis + 1; i < global.size() && row_bytes > max_chunk_bytes; ++i) {
    row_bytes /= std::max<int64_t>(global[i], 1);
    chunk[i] = std::max<int64_t>(1, max_chunk_bytes / std::max<int64_t>(row_bytes, 1));
    row_bytes *= chunk[i];
  }
  return chunk;
}

}  // namespace longctx::io
