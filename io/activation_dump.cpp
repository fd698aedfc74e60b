#include "io/activation_dump.hpp"

#include <algorithm>
#include <filesystem>
#include <map>
#include <regex>
#include <set>

#include "io/durable.hpp"
#include "runtime/core/log.hpp"
#include "runtime/core/watchdog.hpp"

namespace longctx::io {
namespace {

// A dump's dataset name: step_<n>/layer_<l>/<name>, as (n, l, name).
const std::regex& dataset_name() {
  static const std::regex name(R"(step_(\d+)/layer_(\d+)/([^/]+))");
  return name;
}

}  // namespace

ActivationDump::ActivationDump(const std::string& path, MPI_Comm comm, int64_t keep_steps_through,
                               const std::string& run_id, const std::function<bool(int64_t, int64_t)>& wanted)
    : ActivationDump(path, ClaimedEarly(path + ".tmp", comm), comm, keep_steps_through, run_id, wanted) {}

ActivationDump::ActivationDump(const std::string& path, ClaimedEarly&& claimed, MPI_Comm comm,
                               int64_t keep_steps_through, const std::string& run_id,
                               const std::function<bool(int64_t, int64_t)>& wanted) {
  watchdog::Guard guard("creating the activation dump " + path);
  output_ = std::make_unique<AtomicOutput>(path, std::move(claimed), comm);
  output_->file().write_attribute("format", std::string(kActivationFormat));
  output_->file().write_attribute("format_version", int64_t{1});
  if (!run_id.empty()) output_->file().write_attribute("run_id", run_id);
  std::error_code looked;
  if (!std::filesystem::exists(path, looked)) return;
  if (keep_steps_through <= 0) {  // a fresh run's (before: without a word, where data import says so)
    log::info(path + ": the activation dump there (an earlier run's) is replaced by this run's");
    return;
  }
  // Each rank copies its own rows of every kept tensor, as write() would have written them.
  const h5::File old = h5::File::open(path, h5::Mode::read, comm);
  if (!old.has_attribute("format") || old.read_string_attribute("format") != kActivationFormat)
    throw InputError(path + ": exists and is not a longctx activation dump; move it away or choose another "
                     "dump.activations");
  // Another run's (before: its steps were copied into this run's dump, as if this run had made them).
  const std::string old_run = old.has_attribute("run_id") ? old.read_string_attribute("run_id") : "";
  if (!old_run.empty() && old_run != run_id) {
    log::warn_once(path + " holds the activations of another run (run " + old_run + "; this is run " +
                   (run_id.empty() ? "without an id" : run_id) + "): replaced by this run's, which has none dumped before step " +
                   std::to_string(keep_steps_through + 1));
    return;
  }
  const int rank = h5::comm_rank(comm), size = h5::comm_size(comm);
  struct Kept {
    std::string dataset, name;
    int64_t step, layer;
    Shape global;
  };
  std::vector<Kept> kept;  // every rank alike: the old file's datasets, read collectively
  uint64_t kept_bytes = 0;
  std::map<int64_t, std::set<int64_t>> dropped;  // the steps before, and their layers, this run's options leave out
  for (const std::string& dataset : old.dataset_paths()) {
    std::smatch match;
    if (!std::regex_match(dataset, match, dataset_name())) continue;
    const int64_t step = std::stoll(match[1]), layer = std::stoll(match[2]);
    if (step > keep_steps_through) continue;
    if (wanted && !wanted(step, layer)) {
      dropped[step].insert(layer);
      continue;
    }
    kept.push_back({dataset, match[3], step, layer, old.open_dataset(dataset).shape()});
    kept_bytes += stored_bytes(kept.back().global);
  }
  // Said (before: dropped without a word; from the dumps audit).
  if (!dropped.empty()) {
    std::string said;
    for (const auto& [step, layers] : dropped) {
      std::string listed;
      for (const int64_t layer : layers) listed += (listed.empty() ? "" : ",") + std::to_string(layer);
      said += (said.empty() ? "step " : ", step ") + std::to_string(step) + " (layer " + listed + ")";
    }
    log::info(path + ": " + said + ", dumped before step " + std::to_string(keep_steps_through + 1) +
              ", not kept: not of this run's dump.steps and dump.layers");
  }
  output_->require_room(kept_bytes, "the steps kept from " + path);
  for (const Kept& k : kept) {
    const RowRange rows = even_rows(k.global[0], rank, size);
    write(k.step, k.layer, k.name, k.global, rows, read_rows(old, k.dataset, 0, rows));
  }
}

int64_t ActivationDump::last_step(const std::string& path, const std::string& run_id) {
  std::error_code looked;
  if (!std::filesystem::is_regular_file(path, looked)) return 0;
  int64_t last = 0;
  try {
    const h5::File old = h5::File::open(path, h5::Mode::read);
    if (!old.has_attribute("format") || old.read_string_attribute("format") != kActivationFormat) return 0;
    if (old.has_attribute("run_id") && old.read_string_attribute("run_id") != run_id) return 0;
    for (const std::string& dataset : old.dataset_paths()) {
      std::smatch match;
      if (std::regex_match(dataset, match, dataset_name())) last = std::max<int64_t>(last, std::stoll(match[1]));
    }
  } catch (const std::exception&) {
    return 0;  // not readable as a dump: the constructor says so where it opens it
  }
  return last;
}

std::string ActivationDump::run_of(const std::string& path) {
  std::error_code looked;
  if (!std::filesystem::is_regular_file(path, looked)) return "";
  try {
    const h5::File old = h5::File::open(path, h5::Mode::read);
    if (!old.has_attribute("format") || old.read_string_attribute("format") != kActivationFormat) return "";
    return old.has_attribute("run_id") ? old.read_string_attribute("run_id") : "";
  } catch (const std::exception&) {
    return "";
  }
}

std::string ActivationDump::dataset_path(int64_t step, int64_t layer, const std::string& name) {
  return "/step_" + std::to_string(step) + "/layer_" + std::to_string(layer) + "/" + name;
}

void ActivationDump::write(int64_t step, int64_t layer, const std::string& name, const Shape& global_shape,
                           RowRange rows, const Tensor& block, size_t seq_axis) {
  h5::DatasetOptions options;
  options.chunk = row_chunk(global_shape, seq_axis, sizeof(float));
  // MPI-IO does not say why a write failed ("file write failed (Write failed)"): a full disk is named.
  guarded_write("writing " + dataset_path(step, layer, name) + " of the activation dump " + path(), directory_of(path()), [&] {
    write_rows(output_->file(), dataset_path(step, layer, name), global_shape, seq_axis, rows, block, options);
  });
}

uint64_t ActivationDump::stored_bytes(const Shape& global_shape) {
  uint64_t bytes = sizeof(float);
  for (const int64_t extent : global_shape) bytes *= static_cast<uint64_t>(extent);
  // HDF5's own: a dataset's header and first index node under 4 KiB, and its chunk index grows with the
  // chunks (measured: 3 KiB for a step of 8 datasets of 32 Ki values, 6 KiB for 4 of 8 Mi). The padding
  // of a last chunk is allocated but never written: a hole, no disk.
  return bytes + bytes / 256 + 4096;
}

void ActivationDump::require_room(const Shape& global_shape, int64_t datasets, const std::string& what) {
  output_->require_room(static_cast<uint64_t>(datasets) * stored_bytes(global_shape), what);
}

void ActivationDump::close() {
  guarded_write("closing the activation dump " + path(), directory_of(path()), [&] { output_->commit(); });
}

}  // namespace longctx::io
