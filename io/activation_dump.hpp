// Activation dumps: `/step_<n>/layer_<l>/<name>` (name: q, k, v, o) holding the GLOBAL tensor ([N,H,D])
// in sequence order whatever the number of ranks; each rank writes its own rows collectively. The file is
// written as `<path>.tmp` and appears at `path` on close() (AtomicOutput), so a crashed run leaves no
// half-written dump. Root attributes: format = "longctx-activations", format_version = 1, and run_id (the
// writing run's, as its checkpoints and log.jsonl lines hold it; none when it has none).
// Every rank calls write() for the same (step, layer, name) in the same order; close() is collective.
// A resumed run passes the step it resumes at: the steps up to it that an existing file at `path` holds
// are copied into the new file, so a requeued job keeps the dumps it made before it was stopped. (train
// also closes and reopens the dump this way at each checkpoint after a dumped step, so a crash keeps them.)
// Only the same run's (the file's run_id is the one given, or the file has none) and only the (step, layer)
// that `wanted` accepts: another run's dump at that name is replaced, as a fresh run replaces it.
#pragma once

#include <mpi.h>

#include <functional>
#include <memory>
#include <string>

#include "io/atomic_output.hpp"
#include "io/row_io.hpp"

namespace longctx::io {

inline constexpr const char* kActivationFormat = "longctx-activations";

class ActivationDump {
 public:
  ActivationDump(const std::string& path, MPI_Comm comm = MPI_COMM_NULL, int64_t keep_steps_through = 0,
                 const std::string& run_id = "", const std::function<bool(int64_t step, int64_t layer)>& wanted = {});
  // The same with `<path>.tmp` claimed already (ClaimedEarly): a run that publishes its dump at a
  // checkpoint claims its next one at once, so that no other run takes the name while it checkpoints.
  ActivationDump(const std::string& path, ClaimedEarly&& claimed, MPI_Comm comm, int64_t keep_steps_through,
                 const std::string& run_id, const std::function<bool(int64_t step, int64_t layer)>& wanted);

  // "/step_<step>/layer_<layer>/<name>"
  static std::string dataset_path(int64_t step, int64_t layer, const std::string& name);
  // The last step a dump at `path` of run `run_id` (or of no id) holds; 0 where there is none, or no such
  // dump there. Read by this process alone.
  static int64_t last_step(const std::string& path, const std::string& run_id);
  // The run_id of the dump at `path`; "" where it has none, or there is no dump there. Read by this process alone.
  static std::string run_of(const std::string& path);

  // Collective: this rank's rows `rows` (along seq_axis, 0 for [N,H,D]) of a global tensor.
  void write(int64_t step, int64_t layer, const std::string& name, const Shape& global_shape, RowRange rows,
             const Tensor& block, size_t seq_axis = 0);
  // Collective, before `datasets` float32 tensors of `global_shape` are written: every rank throws
  // InternalError, naming `what` ("the activations of step 7"), where the file system has no room for
  // them (AtomicOutput::require_room).
  void require_room(const Shape& global_shape, int64_t datasets, const std::string& what);
  // The bytes one such tensor takes on disk: its values, HDF5's header and chunk index.
  static uint64_t stored_bytes(const Shape& global_shape);
  // Collective: publishes the file.
  void close();
  const std::string& path() const { return output_->path(); }

 private:
  std::unique_ptr<AtomicOutput> output_;
};

}  // namespace longctx::io
