// Inspection and verification of checkpoint files: serial, one process reads everything. Verification
// checks that every dataset's storage is fully allocated, reads every dataset in bounded blocks (so every
// Fletcher32 checksum is checked; a mismatch is a read error) and checks float data for NaN and Inf.
// Damage is collected into the report, naming the dataset.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <sstream>

#include "io/checkpoint.hpp"
#include "io/digest.hpp"
#include "io/durable.hpp"
#include "runtime/core/log.hpp"
#include "runtime/core/stop_point.hpp"

namespace longctx::io {
namespace {

constexpr int64_t kBlockBytes = int64_t{16} << 20;

DatasetInfo describe(const h5::Dataset& dataset) {
  DatasetInfo info;
  info.path = dataset.where().path;
  info.shape = dataset.shape();
  info.dtype = h5::to_string(dataset.element_type());
  info.storage_bytes = dataset.storage_bytes();
  info.checksummed = dataset.checksummed();
  info.digested = stored_digest(dataset, dataset.element_type()).has_value();
  return info;
}

// An attribute as `ckpt inspect` shows it; a digest or hash in hex, as messages show a digest (digest_text).
std::string attribute_text(const h5::Object& object, const std::string& name) {
  if (name == kDigestAttribute || name == "data_digest" || name == "config_fnv1a64") {
    try {
      return digest_text(object.read_bits64_attribute(name));
    } catch (const InputError&) {
    }
  }
  try {
    return std::to_string(object.read_int64_attribute(name));
  } catch (const InputError&) {
  }
  try {
    std::ostringstream out;
    out << object.read_double_attribute(name);
    return out.str();
  } catch (const InputError&) {
  }
  try {
    return object.read_string_attribute(name);
  } catch (const InputError&) {
  }
  try {
    std::string text = "[";
    for (int64_t value : object.read_int64s_attribute(name)) text += (text.size() > 1 ? "," : "") + std::to_string(value);
    return text + "]";
  } catch (const InputError&) {
  }
  return "?";
}

// Reads all of `dataset`; returns the first problem, or "" when clean. Float data's smallest value goes
// to `min_value`. A float32 or uint8 dataset with a `digest` (digest.hpp) is checked against it.
std::string check_dataset(const h5::Dataset& dataset, double& min_value) {
  const h5::ElementType type = dataset.element_type();
  if (type == h5::ElementType::string) {
    dataset.read_string();
    return "";
  }
  const bool floating = type == h5::ElementType::f16 || type == h5::ElementType::f32 || type == h5::ElementType::f64;
  // float32, nearly every byte of a checkpoint, is read as it is stored (as doubles it read at 2/3 the rate);
  // float16 and float64 as doubles.
  const bool as_float = type == h5::ElementType::f32;
  h5::Handle file_type(H5Dget_type(dataset.id()), H5Tclose);
  h5::Handle memory_type(as_float   ? H5Tcopy(H5T_NATIVE_FLOAT)
                         : floating ? H5Tcopy(H5T_NATIVE_DOUBLE)
                                    : H5Tget_native_type(file_type.id(), H5T_DIR_DEFAULT),
                         H5Tclose);
  if (!memory_type.valid()) h5::throw_input(dataset.where().describe() + ": unsupported datatype");
  const int64_t element_bytes = static_cast<int64_t>(H5Tget_size(memory_type.id()));
  const Shape shape = dataset.shape();
  std::vector<uint8_t> buffer;
  // Value i of what was read into `buffer` (floats or doubles, as above).
  const auto value = [&](int64_t i) {
    return as_float ? double(reinterpret_cast<const float*>(buffer.data())[i])
                    : reinterpret_cast<const double*>(buffer.data())[i];
  };
  // The digest of what was read so far, where there is one to compare with.
  const std::optional<uint64_t> stored = stored_digest(dataset, type);
  uint64_t digest = 0;
  const auto add_to_digest = [&](int64_t count, int64_t flat) {
    if (!stored) return;
    if (type == h5::ElementType::u8) {  // read as bytes
      digest += byte_digest(buffer.data(), count, flat);
      return;
    }
    if (as_float) {  // (a digest is of float32 or bytes)
      digest += float_digest(reinterpret_cast<const float*>(buffer.data()), count, flat);
      return;
    }
    std::vector<float> floats(static_cast<size_t>(count));
    for (int64_t i = 0; i < count; ++i) floats[static_cast<size_t>(i)] = static_cast<float>(value(i));
    digest += float_digest(floats.data(), count, flat);
  };
  // The first non-finite value of `count` read into `buffer`, "" when none; `flat`: the flat index
  // of the first of them (-1: a scalar, which has none). Scalars are checked as arrays are (before: a
  // scalar inf or nan passed).
  const auto non_finite = [&](int64_t count, int64_t flat) -> std::string {
    if (!floating) return "";
    for (int64_t i = 0; i < count; ++i) {
      const double x = value(i);
      min_value = std::min(min_value, x);
      if (std::isfinite(x)) continue;
      std::ostringstream out;
      out << "non-finite value " << x;
      if (flat >= 0) out << " at flat index " << flat + i;
      return out.str();
    }
    return "";
  };
  if (shape.empty()) {
    buffer.resize(static_cast<size_t>(element_bytes));
    h5::Dataspace space = h5::Dataspace::scalar();
    dataset.read(memory_type.id(), space, dataset.file_space(), buffer.data());
    return non_finite(1, -1);
  }
  // Blocks of at most kBlockBytes: whole rows of dimension `split` (every index before it fixed), where
  // `split` is the first dimension whose rows fit. Before, blocks were rows of dimension 0 only, so a
  // [1, 2^32] dataset needed one 32 GiB buffer.
  if (element_count(shape) == 0) return "";
  const int rank = static_cast<int>(shape.size());
  int split = 0;  // at most the last dimension: one element per row there, whatever its size
  int64_t inner = element_count(shape) / shape[0];  // elements of one row of dimension `split`
  while (split + 1 < rank && inner * element_bytes > kBlockBytes) inner /= shape[static_cast<size_t>(++split)];
  const int64_t block_rows = std::max<int64_t>(1, kBlockBytes / (inner * element_bytes));
  const int64_t split_extent = shape[static_cast<size_t>(split)];
  const int64_t outer_count = element_count(shape) / (split_extent * inner);  // index tuples before `split`
  for (int64_t outer = 0; outer < outer_count; ++outer) {
    Shape start(shape.size(), 0), count = shape;
    for (int64_t d = split - 1, rest = outer; d >= 0; rest /= shape[static_cast<size_t>(d)], --d) {
      start[static_cast<size_t>(d)] = rest % shape[static_cast<size_t>(d)];
      count[static_cast<size_t>(d)] = 1;
    }
    for (int64_t row = 0; row < split_extent; row += block_rows) {
      const int64_t rows = std::min(block_rows, split_extent - row);
      start[static_cast<size_t>(split)] = row;
      count[static_cast<size_t>(split)] = rows;
      h5::Dataspace file = dataset.file_space();
      file.select_box(start, count);
      const int64_t elements = rows * inner;
      buffer.resize(static_cast<size_t>(elements * element_bytes));
      h5::Dataspace memory = h5::Dataspace::simple(count);  // the block's shape (see io/row_io.cpp's read_rows)
      dataset.read(memory_type.id(), memory, file, buffer.data());
      const int64_t flat = (outer * split_extent + row) * inner;
      if (std::string problem = non_finite(elements, flat); !problem.empty()) return problem;
      add_to_digest(elements, flat);
    }
  }
  if (stored && digest != *stored) return kDigestMismatch;
  return "";
}

}  // namespace

CheckpointSummary inspect_checkpoint(const std::string& path) { return inspect_checkpoint(CheckpointReader(path)); }

CheckpointSummary inspect_checkpoint(const CheckpointReader& reader) {
  CheckpointSummary summary;
  summary.path = reader.path();
  summary.format_version = reader.format_version();
  summary.step = reader.step();
  summary.world_size = reader.world_size();
  summary.seq_len = reader.seq_len();
  summary.tokens_seen = reader.tokens_seen();
  summary.config = reader.config();
  for (const std::string& name : reader.file().attribute_names())
    summary.attributes.emplace_back(name, attribute_text(reader.file(), name));
  for (const std::string& name : reader.file().dataset_paths())
    summary.datasets.push_back(describe(reader.file().open_dataset(name)));
  return summary;
}

namespace {
bool is_tensor(const DatasetInfo& d) { return d.path.rfind("/model/", 0) == 0 || d.path.rfind("/optimizer/", 0) == 0; }
}  // namespace

void VerifyReport::add_problem(const std::string& problem) {
  ok = false;
  if (std::find(problems.begin(), problems.end(), problem) == problems.end()) problems.push_back(problem);
}

std::vector<std::string> VerifyReport::unchecked_tensors() const {
  // The writer checksums every tensor (Fletcher32). A dataset with a problem is among the problems: one
  // that did not open says nothing of its filters.
  std::vector<std::string> unchecked;
  for (const DatasetInfo& d : datasets)
    if (!d.checksummed && d.problem.empty() && is_tensor(d)) unchecked.push_back(d.path);
  return unchecked;
}

size_t VerifyReport::undigested() const {
  // (One without a checksum either is among unchecked_tensors, as not checked at all.) A version before
  // digests wrote none, and a tool that rewrote a dataset dropped it: a chunk zeroed with its checksum
  // would have passed those.
  return static_cast<size_t>(std::count_if(datasets.begin(), datasets.end(), [](const DatasetInfo& d) {
    return !d.digested && d.checksummed && d.problem.empty() && (is_tensor(d) || d.path.rfind("/state/", 0) == 0);
  }));
}

std::string VerifyReport::summary() const {
  if (removed) return path + ": removed while this ran (a running train's checkpoint.keep?): not checked";
  if (ok && !names.empty())
    return path + ": ok (the directory's pointer to " + names + ", which is there; that file is checked where it is "
                  "given, or its directory)";
  if (ok) {
    const std::vector<std::string> listed = unchecked_tensors();
    const size_t count = listed.size(), undigested = this->undigested();
    std::string unchecked;
    for (size_t i = 0; i < std::min<size_t>(count, 3); ++i) unchecked += (i ? ", " : "") + listed[i];
    if (count > 3) unchecked += ", ...";
    return path + ": ok (" + std::to_string(datasets.size()) + " datasets" +
           (count ? "; " + std::to_string(count) + " tensor(s) without a checksum, whose bytes could not be checked: " +
                        unchecked
                  : std::string()) +
           (undigested ? "; " + std::to_string(undigested) + " without a digest (written before digests, or rewritten " +
                             "since), checked only chunk by chunk against their own checksums"
                       : std::string()) + ")";
  }
  std::string text;
  for (const std::string& problem : problems) text += (text.empty() ? "" : "\n") + problem;
  return text;
}

VerifyReport verify_checkpoint(const std::string& path) {
  VerifyReport report;
  report.path = path;
  // Progress on a long verify (a 40 GB checkpoint reads for minutes), by dataset.
  std::error_code size_error;
  const uintmax_t file_bytes = std::filesystem::file_size(path, size_error);
  log::ByteProgress progress("ckpt verify: " + path, size_error ? 0 : static_cast<uint64_t>(file_bytes));
  uint64_t read_bytes = 0;
  try {
    const CheckpointReader reader(path);  // format, version, root attributes, /config
    try {
      check_step_matches_file_name(reader);
    } catch (const Error& e) {
      report.add_problem(e.what());
    }
    for (const std::string& name : reader.file().dataset_paths()) {
      h5::Dataset dataset;
      progress.update(read_bytes);
      try {
        dataset = reader.file().open_dataset(name);
        DatasetInfo info = describe(dataset);
        read_bytes += info.storage_bytes;
        // A null dataspace (h5py.Empty) holds no element: nothing to allocate or read (before: "not fully
        // allocated", exit 3).
        if (H5Sget_simple_extent_type(dataset.file_space().id()) != H5S_NULL) {
          dataset.require_allocated();  // missing chunks would read as fill values, not fail
          info.problem = check_dataset(dataset, info.min_value);
        }
        if (!info.problem.empty()) report.add_problem(path + ": /" + name + ": " + info.problem);
        report.datasets.push_back(std::move(info));
      } catch (const Error& e) {
        DatasetInfo info;
        info.path = "/" + name;
        info.problem = e.what();
        report.datasets.push_back(info);
        const std::string message = e.what();
        // A read error already names file and dataset; make sure the dataset is named either way.
        report.add_problem(message.find("/" + name) == std::string::npos ? path + ": /" + name + ": " + message
                                                                          : message);
      }
    }
  } catch (const Error& e) {
    report.add_problem(e.what());
  }
  return report;
}

std::vector<VerifyReport> verify_checkpoint_dir(const std::string& dir) {
  std::vector<VerifyReport> reports;
  check_readable(dir);
  std::error_code error;
  if (!std::filesystem::is_directory(dir, error)) {
    VerifyReport report;
    report.path = dir;
    report.ok = false;
    report.problems.push_back(dir + ": no such directory");
    return {report};
  }
  // A running train's checkpoint.keep may remove a listed checkpoint before it is opened: not damage, said
  // in a report of its own (before: "no such file", exit 3, for a healthy directory; then an info line on
  // stderr alone, which --json's readers did not see).
  std::vector<VerifyReport> removed;
  // When every listed one was removed so, or the listing missed them all (readdir need not return a name
  // renamed meanwhile) while `latest` names one, the directory is listed again, up to 5 times.
  for (int attempt = 1; attempt <= 5 && reports.empty(); ++attempt) {
    const std::vector<std::string> files = list_checkpoints(dir);
    // A test removes a listed checkpoint before it is read.
    if (attempt == 1) stop_here_if_set("LONGCTX_FAULT_STOP_AFTER_LISTING");
    if (files.empty()) {
      bool named = false;
      try {
        named = find_latest_checkpoint(dir).has_value();
      } catch (const Error&) {
      }
      if (named) continue;
      break;
    }
    for (const std::string& file : files) {
      VerifyReport report = verify_checkpoint(file);
      std::error_code looked;
      if (!report.ok && !std::filesystem::exists(file, looked) && !looked) {
        VerifyReport gone;
        gone.path = file;
        gone.removed = true;
        removed.push_back(std::move(gone));
        continue;
      }
      reports.push_back(std::move(report));
    }
    if (removed.empty()) break;
  }
  // A checkpoint's name on what is no regular file (a dangling link, a FIFO): the listing skips it, so a
  // resume and eval take an older checkpoint; said (before: verify reported only the others, exit 0).
  std::error_code listed;
  for (std::filesystem::directory_iterator entry(dir, listed), end; !listed && entry != end; entry.increment(listed)) {
    std::error_code kind;
    if (!step_in_file_name(entry->path().string()) || entry->is_regular_file(kind)) continue;
    VerifyReport odd;
    odd.path = entry->path().string();
    odd.ok = false;
    const std::string what = non_regular_kind(odd.path);  // "" where the link leads nowhere
    odd.problems.push_back(odd.path + ": is " +
                           (what.empty() ? std::string("a symbolic link that leads to no file") : what) +
                           ", not a checkpoint file: a resume and eval pass over it");
    reports.push_back(std::move(odd));
  }
  // In the listing's order, oldest step first (the removed ones may come from several listings).
  reports.insert(reports.end(), std::make_move_iterator(removed.begin()), std::make_move_iterator(removed.end()));
  std::stable_sort(reports.begin(), reports.end(), [](const VerifyReport& a, const VerifyReport& b) {
    return step_in_file_name(a.path).value_or(-1) < step_in_file_name(b.path).value_or(-1);
  });
  VerifyReport latest;
  latest.path = dir + "/latest";
  // `latest` read just before a train moved it on, naming a checkpoint removed since: read again.
  for (int attempt = 1; attempt <= 3; ++attempt) {
    latest.ok = true;
    latest.problems.clear();
    try {
      if (!find_latest_checkpoint(dir)) {
        latest.ok = false;
        latest.path = dir;  // (before: DIR/latest, a path not given and not there, in --json)
        latest.problems.push_back(dir + ": no committed checkpoint" + misnamed_checkpoints_note(dir));
      }
    } catch (const Error& e) {
      latest.ok = false;
      latest.problems.push_back(e.what());
    }
    if (latest.ok) break;
  }
  if (!latest.ok) reports.push_back(latest);
  return reports;
}

}  // namespace longctx::io
