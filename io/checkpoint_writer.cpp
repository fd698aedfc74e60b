// CheckpointWriter: the collective write and the commit protocol of checkpoint.hpp.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>

#include "io/atomic_output.hpp"
#include "io/checkpoint.hpp"
#include "io/digest.hpp"
#include "io/durable.hpp"
#include "runtime/core/check.hpp"

namespace longctx::io {
namespace {

// The checkpoint a restart in `dir` resumes from (find_latest_checkpoint); "" where there is none, or where
// `latest` is damaged.
std::string resumed_from(const std::string& dir) {
  try {
    if (const std::optional<std::string> latest = find_latest_checkpoint(dir)) return *latest;
  } catch (const Error&) {
  }
  return "";
}

int64_t broadcast_int64(MPI_Comm comm, int64_t value) {
  if (comm != MPI_COMM_NULL) LONGCTX_CHECK_MPI(MPI_Bcast(&value, 1, MPI_INT64_T, 0, comm));
  return value;
}

double broadcast_double(MPI_Comm comm, double value) {
  if (comm != MPI_COMM_NULL) LONGCTX_CHECK_MPI(MPI_Bcast(&value, 1, MPI_DOUBLE, 0, comm));
  return value;
}

// Rank 0's bytes on every rank (MPI counts are int: split long payloads).
std::vector<uint8_t> broadcast_bytes(MPI_Comm comm, Span<const uint8_t> bytes) {
  std::vector<uint8_t> out(bytes.begin(), bytes.end());
  if (comm == MPI_COMM_NULL) return out;
  const int64_t length = broadcast_int64(comm, static_cast<int64_t>(bytes.size()));
  out.resize(static_cast<size_t>(length));
  constexpr int64_t piece = int64_t{1} << 30;
  for (int64_t offset = 0; offset < length; offset += piece)
    LONGCTX_CHECK_MPI(MPI_Bcast(out.data() + offset, static_cast<int>(std::min(piece, length - offset)),
                                MPI_UINT8_T, 0, comm));
  return out;
}

std::string broadcast_string(MPI_Comm comm, const std::string& text) {
  const std::vector<uint8_t> bytes =
      broadcast_bytes(comm, Span<const uint8_t>(reinterpret_cast<const uint8_t*>(text.data()), text.size()));
  return std::string(bytes.begin(), bytes.end());
}

std::vector<int64_t> all_gather_int64(MPI_Comm comm, int64_t value) {
  std::vector<int64_t> values(static_cast<size_t>(h5::comm_size(comm)), value);
  if (comm != MPI_COMM_NULL) LONGCTX_CHECK_MPI(MPI_Allgather(&value, 1, MPI_INT64_T, values.data(), 1, MPI_INT64_T, comm));
  return values;
}

// The sum of the ranks' parts of a digest (uint64 sums wrap, as the digest does).
uint64_t sum_digest(MPI_Comm comm, uint64_t part) {
  if (comm != MPI_COMM_NULL) LONGCTX_CHECK_MPI(MPI_Allreduce(MPI_IN_PLACE, &part, 1, MPI_UINT64_T, MPI_SUM, comm));
  return part;
}

// The ranks' row ranges must tile [0, total): a gap would leave garbage, an overlap means a bug.
void check_tiling(MPI_Comm comm, const std::string& name, int64_t total, RowRange rows) {
  const std::vector<int64_t> begins = all_gather_int64(comm, rows.begin);
  const std::vector<int64_t> ends = all_gather_int64(comm, rows.end);
  std::vector<std::pair<int64_t, int64_t>> ranges;
  for (size_t r = 0; r < begins.size(); ++r)
    if (ends[r] != begins[r]) ranges.emplace_back(begins[r], ends[r]);
  std::sort(ranges.begin(), ranges.end());
  int64_t next = 0;
  for (const auto& [begin, end] : ranges) {
    if (begin != next || end < begin)
      throw InternalError("checkpoint tensor " + name + ": the ranks' rows do not tile [0, " + std::to_string(total) +
                          "): a block starts at " + std::to_string(begin) + " where " + std::to_string(next) +
                          " was expected");
    next = end;
  }
  if (next != total)
    throw InternalError("checkpoint tensor " + name + ": the ranks' rows cover [0, " + std::to_string(next) +
                        ") of " + std::to_string(total));
}

h5::DatasetOptions checksummed_chunks(const Shape& global, size_t element_bytes) {
  h5::DatasetOptions options;
  options.chunk = row_chunk(global, 0, element_bytes);
  options.fletcher32 = true;
  return options;
}

// The order in which retention deletes `own` (own_checkpoints), without `protect` (the file name `latest`
// names). The run's history is `protect` and the checkpoints its previous_step links reach, down to the
// first link that is not there (deleted, or a checkpoint written before the links: the one it names is
// the lowest of the history, and every file below it counts as history too). First go the files above
// that lowest step that are no part of the history: left by a run that went further before `latest` was
// rolled back by hand, they would otherwise be kept as the run's own (and a directory without `latest`
// would resume from the newest), the farthest first; then the oldest. Before, "abandoned" meant past the
// step just committed: after a rollback from 50 to 40 and a save at 45, the abandoned 42 was kept and the
// rollback point 40 deleted.
std::vector<std::string> deletion_order(const std::vector<OwnCheckpoint>& own, const std::string& protect) {
  std::optional<int64_t> lowest = step_in_file_name(protect);
  std::vector<int64_t> history;
  for (std::optional<int64_t> step = lowest; step;) {
    history.push_back(*step);
    lowest = step;
    const auto file = std::find_if(own.begin(), own.end(), [&](const OwnCheckpoint& c) { return c.step == *step; });
    const std::optional<int64_t> previous = file == own.end() ? std::nullopt : file->previous_step;
    if (!previous || *previous < 0 || *previous >= *step) break;  // (the links go down: no loop)
    lowest = previous;
    if (std::none_of(own.begin(), own.end(), [&](const OwnCheckpoint& c) { return c.step == *previous; })) break;
    step = previous;
  }
  std::vector<std::string> abandoned, older;
  for (const OwnCheckpoint& file : own) {
    if (std::filesystem::path(file.path).filename() == protect) continue;
    const bool in_history = std::find(history.begin(), history.end(), file.step) != history.end();
    (lowest && file.step > *lowest && !in_history ? abandoned : older).push_back(file.path);
  }
  std::reverse(abandoned.begin(), abandoned.end());  // the farthest first
  abandoned.insert(abandoned.end(), older.begin(), older.end());
  return abandoned;
}

// Deletes committed files beyond `keep` (deletion_order), never `protect` (the one `latest` names).
void apply_retention(const std::string& dir, int64_t keep, const std::string& protect) {
  if (keep <= 0) return;
  const std::vector<OwnCheckpoint> files = own_checkpoints(dir);
  int64_t excess = static_cast<int64_t>(files.size()) - keep;
  bool removed = false;
  for (const std::string& file : deletion_order(files, protect)) {
    if (excess <= 0) break;
    std::error_code error;
    std::filesystem::remove(file, error);
    removed = true;
    --excess;
  }
  if (removed) sync_directory(dir);
}

}  // namespace

std::vector<std::string> make_room_for_checkpoint(const std::string& dir, int64_t keep, MPI_Comm comm,
                                                  std::optional<uint64_t> available) {
  std::vector<std::string> removed;
  if (keep < 2) return removed;  // keep = 1 would leave no checkpoint at all while the new one is written
  publish_on_rank0(comm, "making room for a checkpoint in " + dir, [&] {
    std::error_code looked;
    if (!std::filesystem::is_directory(dir, looked)) return;
    // Sized by the newest file by name: the files are opened (list_own_checkpoints) only when short of room.
    const std::vector<std::string> named = list_checkpoints(dir);
    if (named.empty()) return;  // nothing to size the next one by
    std::error_code error;
    const uintmax_t newest = std::filesystem::file_size(named.back(), error);
    if (error) return;
    const bool measured = !available;
    const auto room = [&]() -> uint64_t {
      if (!measured) return *available;
      const std::filesystem::space_info space = std::filesystem::space(dir, error);
      return error ? std::numeric_limits<uint64_t>::max() : space.available;
    };
    if (room() >= newest + newest / 16) return;
    // A killed save's .tmp is what fills a disk first (no writer is active on `dir` now).
    if (remove_stray_temporaries(dir) > 0 && room() >= newest + newest / 16) return;
    const std::vector<OwnCheckpoint> own = own_checkpoints(dir);
    if (static_cast<int64_t>(own.size()) < keep) return;  // the commit would delete none of them
    std::string protect;
    try {
      if (const auto latest = find_latest_checkpoint(dir)) protect = std::filesystem::path(*latest).filename().string();
    } catch (const Error&) {
      return;  // a damaged `latest`: resume will say so; delete nothing
    }
    int64_t left = static_cast<int64_t>(own.size());
    for (const std::string& file : deletion_order(own, protect)) {
      if (left < keep) break;
      std::error_code ignored;
      if (std::filesystem::remove(file, ignored)) {
        removed.push_back(file);
        --left;
      }
    }
    if (!removed.empty()) sync_directory(dir);
  });
  return removed;
}

std::string checkpoint_file_name(int64_t step) {
  if (step < 0 || step > kMaxCheckpointStep)
    throw UsageError("checkpoint step " + std::to_string(step) + " outside 0.." + std::to_string(kMaxCheckpointStep));
  char name[32];
  std::snprintf(name, sizeof(name), "step_%08lld.h5", static_cast<long long>(step));
  return name;
}

CheckpointWriter::CheckpointWriter(std::string dir, const CheckpointMeta& meta, MPI_Comm comm, bool create_dir)
    : dir_(std::move(dir)), comm_(comm) {
  const int64_t step = broadcast_int64(comm_, meta.step);
  final_ = dir_ + "/" + checkpoint_file_name(step);
  temporary_ = final_ + ".tmp";
  publish_on_rank0(comm_, "creating checkpoint directory " + dir_, [&] {
    std::error_code looked;
    if (!create_dir && !std::filesystem::is_directory(dir_, looked))
      throw InternalError("checkpoint directory " + dir_ + " is gone (removed or moved away while this run held "
                          "it): not made again; nothing of step " + std::to_string(step) + " was saved");
    std::error_code error;
    std::filesystem::create_directories(dir_, error);
    if (!std::filesystem::is_directory(dir_, looked))
      throw UsageError("cannot create checkpoint directory " + dir_ + ": " + error.message());
  });
  Claim claim = claim_registered(temporary_, comm_);
  claim_ = std::move(claim.file);
  registered_ = std::move(claim.registered);
  try {
    file_ = create_claimed(temporary_, comm_);
  } catch (...) {
    claim_.remove_if_held();
    throw;
  }
  file_.write_attribute("format", std::string(kCheckpointFormat));
  file_.write_attribute("format_version", kCheckpointFormatVersion);
  file_.write_attribute("step", step);
  file_.write_attribute("world_size", static_cast<int64_t>(h5::comm_size(comm_)));
  file_.write_attribute("seq_len", broadcast_int64(comm_, meta.seq_len));
  file_.write_attribute("tokens_seen", broadcast_int64(comm_, meta.tokens_seen));
  file_.write_attribute("previous_step", broadcast_int64(comm_, meta.previous_step));
  const std::string config = broadcast_string(comm_, meta.config);
  file_.create_string_dataset("config", config);
  // /config is plain data (no Fletcher32): its hash lives in the checksummed root object header.
  file_.write_attribute("config_fnv1a64", config_hash(config));
}

void CheckpointWriter::reserve(uint64_t estimate) {
  run_on_rank0(comm_, "reserving room for " + temporary_, [&] {
    if (claim_.fd() < 0) return;
    // Sized by this run's last checkpoint, not by the highest-numbered file (another run's, never this
    // run's to count: list_own_checkpoints); a damaged `latest`: the estimate.
    const std::string sized_by = resumed_from(dir_);
    std::error_code error;
    const uintmax_t size = sized_by.empty() ? 0 : std::filesystem::file_size(sized_by, error);
    const bool measured = !sized_by.empty() && !error && size > 0;
    const uint64_t bytes = measured ? size + size / 16 : estimate;
    if (bytes == 0) return;
    const int reason = reserve_space(claim_.fd(), 0, bytes);
    if (reason == 0) reserved_ = bytes;
    if (!out_of_space(reason)) return;  // reserved, or a file system that cannot reserve
    throw InternalError("cannot reserve " + std::to_string(bytes) + " bytes for the checkpoint " + temporary_ + " (" +
                        (measured ? "the size of " + sized_by + " and 1/16 more"
                                  : "an estimate of its tensors and HDF5's own bytes") +
                        "): " + std::strerror(reason) + full_disk_note(dir_) + "; nothing of it was written");
  });
}

CheckpointWriter::~CheckpointWriter() {
  if (!committed_) claim_.remove_if_held();  // held (rank 0): no other writer's file
}

void CheckpointWriter::write_tensor(const std::string& name, const Shape& global_shape, RowRange rows,
                                    Span<const float> block) {
  if (global_shape.empty()) throw InternalError("checkpoint tensor " + name + ": needs at least one axis");
  const int64_t row_elements = element_count(global_shape) / std::max<int64_t>(global_shape[0], 1);
  write_tensor_rows(name, global_shape, rows, block,
                    float_digest(block.data(), static_cast<int64_t>(block.size()), rows.begin * row_elements));
}

void CheckpointWriter::write_tensor_rows(const std::string& name, const Shape& global_shape, RowRange rows,
                                         Span<const float> block, uint64_t digest_part) {
  check_tiling(comm_, name, global_shape[0], rows);
  h5::Dataset dataset = create_float_dataset(file_, name, global_shape, checksummed_chunks(global_shape, sizeof(float)));
  write_rows(dataset, 0, rows, block);
  dataset.write_attribute(kDigestAttribute, digest_attribute_value(sum_digest(comm_, digest_part)));
}

void CheckpointWriter::write_tensor(const std::string& name, const Shape& global_shape, RowRange rows,
                                    const Tensor& block) {
  write_tensor(name, global_shape, rows, block.span());
}

void CheckpointWriter::write_replicated(const std::string& name, const Tensor& whole) {
  const Shape shape = whole.rank() == 0 ? Shape{1} : whole.shape();
  const int rank = h5::comm_rank(comm_), ranks = h5::comm_size(comm_);
  const bool writer = rank == 0;
  const RowRange rows = writer ? RowRange{0, shape[0]} : RowRange{shape[0], shape[0]};
  // Every rank holds the tensor: each hashes an even slice of its elements (1/P of the work each).
  const int64_t count = whole.size(), first = count * rank / ranks, last = count * (rank + 1) / ranks;
  write_tensor_rows(name, shape, rows, writer ? whole.span() : Span<const float>(),
                    float_digest(whole.data() + first, last - first, first));
}

void CheckpointWriter::write_attribute(const std::string& name, int64_t value) {
  file_.write_attribute(name, broadcast_int64(comm_, value));
}

void CheckpointWriter::write_attribute(const std::string& name, double value) {
  file_.write_attribute(name, broadcast_double(comm_, value));
}

void CheckpointWriter::write_attribute(const std::string& name, const std::string& value) {
  file_.write_attribute(name, broadcast_string(comm_, value));
}

void CheckpointWriter::write_global_blob(const std::string& name, Span<const uint8_t> bytes) {
  const std::vector<uint8_t> shared = broadcast_bytes(comm_, bytes);
  const Shape shape = {static_cast<int64_t>(shared.size())};
  h5::Dataset dataset = file_.create_dataset("state/global/" + name, h5::ElementType::u8, shape,
                                             checksummed_chunks(shape, 1));
  h5::Dataspace file = dataset.file_space();
  h5::Dataspace memory = h5::Dataspace::simple(shape);
  if (h5::comm_rank(comm_) != 0) {
    file.select_none();
    memory.select_none();
  }
  dataset.write(H5T_NATIVE_UINT8, memory, file, shared.data());
  // Every rank holds the bytes: the same digest everywhere, no reduction.
  dataset.write_attribute(kDigestAttribute,
                          digest_attribute_value(byte_digest(shared.data(), static_cast<int64_t>(shared.size()), 0)));
}

void CheckpointWriter::write_rank_blob(const std::string& name, Span<const uint8_t> bytes) {
  const std::vector<int64_t> lengths = all_gather_int64(comm_, static_cast<int64_t>(bytes.size()));
  const int64_t width = *std::max_element(lengths.begin(), lengths.end());
  const Shape shape = {static_cast<int64_t>(lengths.size()), width};
  h5::DatasetOptions options;
  options.chunk = {1, std::min<int64_t>(std::max<int64_t>(width, 1), int64_t{1} << 20)};
  options.fletcher32 = true;
  h5::Dataset dataset = file_.create_dataset("state/rank/" + name, h5::ElementType::u8, shape, options);
  dataset.write_attribute("bytes", lengths);
  // This rank's whole row: its bytes, then zeros to the widest rank's (written, where the fill value would
  // have depended on HDF5's choices for a chunk written in part; the datasets are created fill-time never).
  std::vector<uint8_t> row(static_cast<size_t>(width), 0);
  std::copy(bytes.begin(), bytes.end(), row.begin());
  h5::Dataspace file = dataset.file_space();
  file.select_box({h5::comm_rank(comm_), 0}, {1, width});
  h5::Dataspace memory = h5::Dataspace::simple({1, width});  // the selection's shape (see row_io.cpp)
  if (row.empty()) memory.select_none();
  dataset.write(H5T_NATIVE_UINT8, memory, file, row.data());
  const uint64_t part = byte_digest(row.data(), width, h5::comm_rank(comm_) * width);
  dataset.write_attribute(kDigestAttribute, digest_attribute_value(sum_digest(comm_, part)));
}

std::string CheckpointWriter::commit(int64_t keep, CrashPoint crash) {
  if (committed_) throw InternalError("checkpoint " + final_ + ": committed twice");
  close_and_sync(file_, comm_);  // steps 1-2: complete on disk on every rank
  // What reserve() allocated past the file's end stays allocated, or each checkpoint would keep the
  // estimate's surplus: freed.
  release_reserved_space(claim_.fd(), reserved_);
  if (crash == CrashPoint::after_temporary_closed) {
    committed_ = true;  // a crashed process removes nothing, and its lock dies with it
    registered_.release();
    claim_.close();
    return final_;
  }
  const std::string name = std::filesystem::path(final_).filename().string();
  publish_on_rank0(comm_, "committing checkpoint " + final_, [&] {
    rename_durably(temporary_, final_);  // step 3
    if (crash == CrashPoint::after_rename) return;
    if (crash == CrashPoint::after_latest_temporary) {
      std::ofstream(dir_ + "/latest.tmp") << name << "\n";
      return;
    }
    try {
      write_text_durably(dir_ + "/latest", name + "\n");  // step 4
    } catch (const Error& e) {  // say where a restart goes on from (before: only the failed write)
      std::string resumes = resumed_from(dir_);
      if (resumes.empty()) resumes = "(unreadable)";
      std::error_code same_error;
      const bool same = std::filesystem::equivalent(resumes, final_, same_error);
      throw InternalError(e.what() + std::string("; ") + final_ + " is written and complete, and a restart resumes from " +
                          (same ? "it" : resumes + " (to resume from " + name + ": echo " + name + " > '" + dir_ +
                                             "/latest')"));
    }
    apply_retention(dir_, keep, name);                   // step 5
    remove_stray_temporaries(dir_);
  });
  registered_.release();
  claim_.close();
  committed_ = true;
  return final_;
}

}  // namespace longctx::io
