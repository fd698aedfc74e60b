#include "runtime/train/train_state_io.hpp"

#include <cstring>

#include "io/checkpoint.hpp"

namespace longctx::train {

std::string save_checkpoint(Trainer& trainer, const std::string& dir, int64_t keep, const std::string& config_text,
                            MPI_Comm comm) {
  io::CheckpointMeta meta;
  meta.step = trainer.step();
  meta.seq_len = trainer.config().seq_len;
  meta.tokens_seen = trainer.step() * trainer.config().seq_len;
  meta.config = config_text;
  io::CheckpointWriter writer(dir, meta, comm);
  const auto& layout = trainer.model().layout();
  for (const auto& view : layout.views()) {
    writer.write_replicated("model/" + view.name, model::view_to_tensor(view, trainer.params().data()));
    writer.write_replicated("optimizer/m/" + view.name,
                            model::view_to_tensor(view, trainer.optimizer().first_moment().data()));
    writer.write_replicated("optimizer/v/" + view.name,
                            model::view_to_tensor(view, trainer.optimizer().second_moment().data()));
  }
  const int64_t step = trainer.step();
  uint8_t bytes[sizeof step];
  std::memcpy(bytes, &step, sizeof step);
  writer.write_global_blob("step", Span<const uint8_t>(bytes, sizeof bytes));
  writer.write_attribute("model_layers", trainer.config().model.layers);
  writer.write_attribute("model_dim", trainer.config().model.dim);
  writer.write_attribute("model_heads", trainer.config().model.heads);
  return writer.commit(keep);
}

void load_checkpoint(Trainer& trainer, const std::string& path, MPI_Comm comm) {
  io::CheckpointReader reader(path, comm);
  const auto& layout = trainer.model().layout();
  for (const auto& view : layout.views()) {
    reader.expect_shape("model/" + view.name, view.shape);
    reader.expect_shape("optimizer/m/" + view.name, view.shape);
    reader.expect_shape("optimizer/v/" + view.name, view.shape);
  }
  // Shapes agree: only now is the trainer changed.
  for (const auto& view : layout.views()) {
    model::tensor_to_view(view, reader.read_whole("model/" + view.name), trainer.params().data());
    model::tensor_to_view(view, reader.read_whole("optimizer/m/" + view.name),
                          trainer.optimizer().first_moment().data());
    model::tensor_to_view(view, reader.read_whole("optimizer/v/" + view.name),
                          trainer.optimizer().second_moment().data());
  }
  trainer.set_step(reader.step());
}

}  // namespace longctx::train
