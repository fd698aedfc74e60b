#include "io/activation_dump.hpp"

namespace longctx::io {

ActivationDump::ActivationDump(const std::string& path, MPI_Comm comm)
    : output_(std::make_unique<AtomicOutput>(path, comm)) {
  output_->file().write_attribute("format", std::string(kActivationFormat));
  output_->file().write_attribute("format_version", int64_t{1});
}

std::string ActivationDump::dataset_path(int64_t step, int64_t layer, const std::string& name) {
  return "/step_" + std::to_string(step) + "/layer_" + std::to_string(layer) + "/" + name;
}

void ActivationDump::write(int64_t step, int64_t layer, const std::string& name, const Shape& global_shape,
                           RowRange rows, const Tensor& block, size_t seq_axis) {
  h5::DatasetOptions options;
  options.chunk = row_chunk(global_shape, seq_axis, sizeof(float));
  write_rows(output_->file(), dataset_path(step, layer, name), global_shape, seq_axis, rows, block, options);
}

void ActivationDump::close() { output_->commit(); }

}  // namespace longctx::io
