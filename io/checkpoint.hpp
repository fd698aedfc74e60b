// Checkpoints: one HDF5 file per checkpoint, written collectively by every rank, committed so that a
// crash at any moment leaves either the old or the new checkpoint intact, and loadable on any number of
// ranks. What goes in (which tensors, which state) belongs to the trainer; this file owns the layout,
// the commit protocol, validation, resharding and verification.
//
// File layout (format "longctx-checkpoint", format_version 1):
//   /                     attributes format, format_version, step, world_size, seq_len, tokens_seen,
//                         config_fnv1a64, previous_step (int64, format a string) + any extra attributes
//                         the writer adds
//   /config               scalar fixed-length string: the resolved config as text (its FNV-1a hash is
//                         the root attribute config_fnv1a64, in the checksummed object header)
//   /model/...            float32, GLOBAL shape, chunked along axis 0 with Fletcher32 checksums, and
//                         attribute `digest` (digest.hpp: what a chunk zeroed or rewritten with its
//                         checksum cannot keep; readers check it where they read the whole tensor, on
//                         each rank or in rows that tile it across the ranks)
//   /optimizer/...        the same
//   /state/global/<name>  uint8 [bytes]: state every rank agrees on (data position, ...), rank 0's copy
//   /state/rank/<name>    uint8 [P, max_bytes], attribute "bytes" int64 [P]: per-rank state (RNG
//                         streams), row r written by rank r
//   (each /state dataset has a `digest` too; a checkpoint written before digests has none, and reads as before)
//
// Directory: <dir>/step_<8 digits>.h5 and <dir>/latest, a text file holding the newest committed file
// name. Commit protocol (CheckpointWriter::commit):
//   1. every rank writes <dir>/step_<n>.h5.tmp collectively, flushes (MPI_File_sync) and closes it
//   2. every rank fsyncs the file, then barrier: the temporary is complete on disk
//   3. rank 0 renames it to step_<n>.h5 and fsyncs the directory
//   4. rank 0 writes latest.tmp, fsyncs it, renames it to latest, fsyncs the directory
//   5. rank 0 deletes own committed files (list_own_checkpoints) beyond the newest `keep` (never the one
//      `latest` names) and stray temporaries of earlier attempts; then broadcasts success, so all ranks
//      return or throw together. On a nearly full disk, make_room_for_checkpoint does the deleting
//      that 5 would do before 1 instead.
// Rank 0 claims the .tmp before 1 (durable.hpp: no link followed; one held by another running writer is
// refused) and holds it through 3. A crash before 3 leaves a stray .tmp (ignored by readers, removed
// by the next commit unless a running writer holds it); between 3 and
// 4, a complete new file that `latest` does not name yet (latest still names the old, intact one).
//
// Resharding: tensors are stored with their global shape, so P' ranks read any rows they like. Per-rank
// state cannot be split; the rule (read_rank_blob) is:
//   P' == P  rank r gets the state rank r wrote (exact = true)
//   P' != P  rank r' gets the state of old rank floor(r' * P / P'), the old rank whose even block of
//            rows held the first row of r's new block (exact = false): the caller must treat it as a
//            starting point and re-derive what is rank-specific (e.g. reseed RNG streams from
//            (seed, step, rank)), since P' streams cannot continue P streams exactly.
//
// Collective calls (every rank of the communicator, same order, same arguments): the writer's
// constructor, write_*, commit; the reader's constructor, read_rows, read_whole. Blob reads and the
// accessors are local.
#pragma once

#include <mpi.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "io/atomic_output.hpp"
#include "io/durable.hpp"
#include "io/h5.hpp"
#include "io/row_io.hpp"
#include "runtime/core/span.hpp"
#include "runtime/core/tensor.hpp"

namespace longctx::io {

inline constexpr const char* kCheckpointFormat = "longctx-checkpoint";
inline constexpr int64_t kCheckpointFormatVersion = 1;

// What reads a file of longctx's `format` attribute, for a refusal of it in the wrong place: ": a token
// dataset (`longctx data inspect` reads it)"; "" for a format of no longctx file.
std::string format_reader_hint(const std::string& format);

struct CheckpointMeta {
  int64_t step = 0;
  int64_t seq_len = 0;      // the length its last step trained at (a curriculum's stage, or data.seq_len)
  int64_t tokens_seen = 0;  // tokens trained on through its step, at whatever lengths
  std::string config;  // the resolved config as text
  // The checkpoint before it in its run's history: the one the run resumed from, or the run's save before
  // this one (-1: none). Retention follows these links from `latest` to tell the run's own checkpoints from
  // those of a run that went further before `latest` was rolled back by hand (deletion_order).
  int64_t previous_step = -1;
};

// The largest step a checkpoint's name holds (step_%08d.h5: eight digits, as readers' patterns take them).
constexpr int64_t kMaxCheckpointStep = 99999999;
// "step_00000042.h5"
std::string checkpoint_file_name(int64_t step);
// FNV-1a (64 bit) of the /config text, as the root attribute `config_fnv1a64` records it (the bits as
// int64). Readers compare it where present (checkpoints written before it have none).
int64_t config_hash(const std::string& text);

// Where a simulated crash stops commit(): for tests of the protocol only.
enum class CrashPoint { none, after_temporary_closed, after_rename, after_latest_temporary };

class CheckpointWriter {
 public:
  // Creates <dir> (rank 0) if needed, then <dir>/step_<n>.h5.tmp collectively, with the root attributes
  // and /config (rank 0's values are the ones stored). With `create_dir` false, a missing <dir> is an
  // InternalError instead (a run's directory removed or moved away while the run held it).
  CheckpointWriter(std::string dir, const CheckpointMeta& meta, MPI_Comm comm = MPI_COMM_NULL,
                   bool create_dir = true);
  CheckpointWriter(const CheckpointWriter&) = delete;
  CheckpointWriter& operator=(const CheckpointWriter&) = delete;
  // Not committed (a failure): the temporary file is removed (rank 0; on a rank unwinding from its
  // failure, that rank: atomic_output.hpp, RegisteredClaim); nothing committed is touched.
  ~CheckpointWriter();

  // A float32 tensor of `global_shape` (e.g. "model/layer0/wq"), sharded along axis 0: this rank holds
  // rows `rows`. The ranks' row ranges must tile [0, global_shape[0]) (checked; a rank may hold none).
  void write_tensor(const std::string& name, const Shape& global_shape, RowRange rows, Span<const float> block);
  void write_tensor(const std::string& name, const Shape& global_shape, RowRange rows, const Tensor& block);
  // A tensor every rank holds whole (parameters under sequence parallelism): rank 0 writes it.
  void write_replicated(const std::string& name, const Tensor& whole);
  // Extra root attributes; rank 0's value is stored.
  void write_attribute(const std::string& name, int64_t value);
  void write_attribute(const std::string& name, double value);
  void write_attribute(const std::string& name, const std::string& value);
  // /state/global/<name>: rank 0's bytes.
  void write_global_blob(const std::string& name, Span<const uint8_t> bytes);
  // /state/rank/<name>: each rank's own bytes (lengths may differ).
  void write_rank_blob(const std::string& name, Span<const uint8_t> bytes);

  // Reserves room for the file before its tensors are written (rank 0: fallocate, its size unchanged): the
  // size of the checkpoint `latest` names and 1/16 more (a resume's config text may be longer), or
  // `estimate` bytes where there is none.
  // Every rank throws InternalError when the file system has no room for them (ENOSPC, EDQUOT): on more
  // than one rank, a write failing on one rank mid-file could leave the ranks in different collectives
  // inside HDF5, which only --comm-timeout ends. A file system that cannot reserve is written as before.
  void reserve(uint64_t estimate);

  // The commit protocol above. `keep`: how many committed files to keep (0 keeps all). Returns the
  // committed path. `crash` stops early to simulate a crash (tests only).
  std::string commit(int64_t keep, CrashPoint crash = CrashPoint::none);

  const std::string& temporary_path() const { return temporary_; }
  const std::string& final_path() const { return final_; }

 private:
  // write_tensor with this rank's part of the tensor's digest (the parts are summed).
  void write_tensor_rows(const std::string& name, const Shape& global_shape, RowRange rows, Span<const float> block,
                         uint64_t digest_part);
  std::string dir_;
  std::string final_;
  std::string temporary_;
  MPI_Comm comm_;
  TemporaryFile claim_;         // rank 0's claim of temporary_ (durable.hpp)
  RegisteredClaim registered_;  // removed by any rank on a failure, an abort or a signal (atomic_output.hpp)
  h5::File file_;
  bool committed_ = false;
  uint64_t reserved_ = 0;  // bytes reserve() allocated (rank 0)
};

struct RankBlob {
  std::vector<uint8_t> bytes;
  int source_rank = 0;  // the old rank whose state this is
  bool exact = false;   // P' == P: this rank's own state
};

// The digest stored with a checkpoint dataset (digest.hpp) that is read as `read_as`, or nullopt where there
// is none to check: one written before digests (or rewritten by a tool that dropped it), one whose type is
// not `read_as` (its elements would be converted), or one neither float32 nor uint8, the types a digest is
// defined for (float_digest and byte_digest). Readers of the stored type pass dataset.element_type().
std::optional<uint64_t> stored_digest(const h5::Dataset& dataset, h5::ElementType read_as);

// What a dataset whose contents do not match its digest says, after its name: the bytes changed after the
// write, while every chunk still matches its Fletcher32 checksum.
inline constexpr const char* kDigestMismatch =
    "its contents do not match the digest written with them: damaged after the write (a chunk zeroed, or "
    "rewritten, together with its checksum)";

class CheckpointReader {
 public:
  // Opens `path` (collective when comm != MPI_COMM_NULL) and validates format and format_version:
  // anything else -> InputError naming the file, the field and both values.
  explicit CheckpointReader(std::string path, MPI_Comm comm = MPI_COMM_NULL);

  const std::string& path() const { return path_; }
  int64_t format_version() const { return format_version_; }
  int64_t step() const { return step_; }
  int64_t world_size() const { return world_size_; }
  int64_t seq_len() const { return seq_len_; }
  int64_t tokens_seen() const { return tokens_seen_; }
  // CheckpointMeta::previous_step; nullopt in a checkpoint written before it was recorded.
  std::optional<int64_t> previous_step() const { return previous_step_; }
  const std::string& config() const { return config_; }
  const h5::File& file() const { return file_; }

  // Every dataset under /model and /optimizer, as "model/..." paths, sorted.
  std::vector<std::string> tensor_names() const;
  bool has_tensor(const std::string& name) const;
  Shape shape(const std::string& name) const;  // missing -> InputError
  // Mismatch -> InputError "<file>: <name>: shape [..] in the checkpoint, [..] expected".
  void expect_shape(const std::string& name, const Shape& expected) const;
  // Root attribute `name` must equal `expected`, else InputError naming both values.
  void expect_attribute(const std::string& name, int64_t expected) const;

  // Collective: rows `rows` along axis 0 (any split, any number of ranks), or the whole tensor. A
  // tensor whose storage is not fully allocated (damage) -> InputError naming the file and the tensor; so
  // is one whose digest does not match what was read, where the ranks read all of it (each rank the
  // whole, or rows that tile it), on every rank alike. A read that fails on one rank fails on all.
  Tensor read_rows(const std::string& name, RowRange rows) const;
  Tensor read_whole(const std::string& name) const;
  std::vector<uint8_t> read_global_blob(const std::string& name) const;
  // The resharding rule of the header comment, for this rank of `size` ranks.
  RankBlob read_rank_blob(const std::string& name, int rank, int size) const;
  // Every rank's blob as written (for callers with their own rule).
  std::vector<std::vector<uint8_t>> read_all_rank_blobs(const std::string& name) const;

 private:
  std::string path_;
  h5::File file_;
  int64_t format_version_ = 0;
  int64_t step_ = 0;
  int64_t world_size_ = 0;
  int64_t seq_len_ = 0;
  int64_t tokens_seen_ = 0;
  std::optional<int64_t> previous_step_;
  std::string config_;
};

// ---- the checkpoint directory -------------------------------------------------------------------------
// Committed checkpoint files (step_<8 digits>.h5, no .tmp) in `dir`, oldest step first, by name only.
std::vector<std::string> list_checkpoints(const std::string& dir);
// For "DIR: no committed checkpoint": "" or, where DIR holds files named like checkpoints that are not
// (step_9.h5, step_10.h5: not eight digits), " (step_9.h5 and 1 more are not named step_NNNNNNNN.h5 ...)".
std::string misnamed_checkpoints_note(const std::string& dir);
// "step_00000003.h5, step_00000002.h5, step_00000001.h5 and 4 more": the file names of `paths` (oldest
// first, as list_checkpoints gives them), newest first, three at the most.
std::string newest_first_names(const std::vector<std::string>& paths);
// The subset that opens as a checkpoint whose step attribute matches its name (serial reads). Only
// these count toward, and are deleted by, `checkpoint.keep`: a step_*.h5 that is no checkpoint, is
// damaged, or is a renamed copy is left alone (a checkpoint copied in under its own name counts).
std::vector<std::string> list_own_checkpoints(const std::string& dir);
// The same files with their steps and previous_step links (nullopt: none recorded), oldest step first.
struct OwnCheckpoint {
  std::string path;
  int64_t step = 0;
  std::optional<int64_t> previous_step;
};
std::vector<OwnCheckpoint> own_checkpoints(const std::string& dir);
// The step a checkpoint file name states ("step_00000042.h5" -> 42); nullopt for any other name.
std::optional<int64_t> step_in_file_name(const std::string& path);
// Whether `name` (a file name, no directory) is one a checkpoint directory's commits use: step_<8 digits>.h5,
// `latest`, and the .tmp of either.
bool is_checkpoint_file_name(const std::string& name);
// InputError when the file's name states a step other than its `step` attribute (a renamed copy would
// otherwise resume at the wrong step, or be pruned as if it were another).
void check_step_matches_file_name(const CheckpointReader& reader);
// Before a checkpoint is written, rank 0: when the file system has less room than the newest committed
// file takes (+ 1/16; by name, so no file is opened while there is room), removes stray temporaries of
// killed saves, then, when at least `keep` >= 2 own checkpoints exist, deletes down to keep - 1 in the
// commit's order (those past `latest`'s step first, then the oldest), which the commit would delete
// anyway; a full disk would otherwise fail every save. Never touches the file `latest` names. `available`: the free bytes to assume (tests); by default the file
// system's. Returns the deleted checkpoints on rank 0.
std::vector<std::string> make_room_for_checkpoint(const std::string& dir, int64_t keep, MPI_Comm comm = MPI_COMM_NULL,
                                                  std::optional<uint64_t> available = std::nullopt);
// The checkpoint to resume from: the file `latest` names; without `latest` (a crash right after the
// very first rename), the newest committed file by name; nullopt when there is none. `latest` naming a missing
// file, or a malformed `latest` -> InputError. Temporaries are never returned.
std::optional<std::string> find_latest_checkpoint(const std::string& dir);
// A checkpoint directory's `latest` given as a path itself (`ckpt verify ck/*`, `eval ck/latest`): the
// checkpoint it names (find_latest_checkpoint's InputError where it names none there); nullopt for any other
// path, a checkpoint file named `latest` included. Before, such a path read as a damaged HDF5 file.
std::optional<std::string> latest_file_target(const std::string& path);
// Removes step_*.h5.tmp and latest.tmp left by crashed commits; returns how many. Call it only when no
// writer is active on `dir` (commit does it itself, on rank 0, after publishing).
int remove_stray_temporaries(const std::string& dir);
// Before a run writes checkpoints into `dir`: throws UsageError (starting with `named`) for a checkpoint's
// or latest's temporary file there that could not be claimed when its commit comes (a link, a directory,
// a FIFO; check_temporary_path). A left-over plain one passes: the commit takes it over.
void check_checkpoint_temporaries(const std::string& named, const std::string& dir);

// ---- inspection and verification (serial: one process reads the whole file) ----------------------------
struct DatasetInfo {
  std::string path;  // "/model/w"
  Shape shape;
  std::string dtype;
  int64_t storage_bytes = 0;
  bool checksummed = false;
  bool digested = false;  // carries a `digest` attribute (digest.hpp)
  std::string problem;  // empty when it verified clean
  double min_value = 0;  // verify: the smallest value of float data (0 when none was read)
};

struct CheckpointSummary {
  std::string path;
  int64_t format_version = 0, step = 0, world_size = 0, seq_len = 0, tokens_seen = 0;
  std::string config;
  std::vector<std::pair<std::string, std::string>> attributes;  // every root attribute, as text
  std::vector<DatasetInfo> datasets;
};

// Step, config, attributes, datasets and sizes. Not a checkpoint / unreadable -> InputError.
CheckpointSummary inspect_checkpoint(const std::string& path);
// The same of a checkpoint already open (which stays readable while open, also once removed).
CheckpointSummary inspect_checkpoint(const CheckpointReader& reader);

struct VerifyReport {
  std::string path;
  bool ok = true;
  std::vector<DatasetInfo> datasets;
  std::vector<std::string> problems;  // each names the file and the damaged dataset (or the file)
  // Listed in a directory and removed before it could be opened (a running train's checkpoint.keep): not
  // checked, and not damage (ok stays true).
  bool removed = false;
  // A directory's `latest` given as a path: the checkpoint file it names, which is there ("" otherwise).
  std::string names;
  // Not ok, with `problem` among the problems once: a damaged state blob fails the datasets' check and
  // the state's read alike.
  void add_problem(const std::string& problem);
  std::string summary() const;        // one line per problem, or "<path>: ok (n datasets)"
  // Tensors (/model, /optimizer) without a checksum: written by another tool or an old version, their
  // bytes could not be checked, which "ok" alone would hide.
  std::vector<std::string> unchecked_tensors() const;
  // Checksummed tensors and /state datasets without a digest (written before digests, or rewritten since):
  // checked only chunk by chunk against their own checksums.
  size_t undigested() const;
};

// Checks that every dataset's storage is fully allocated, reads every dataset (in bounded blocks), so
// every Fletcher32 checksum is checked, and checks that float data is finite; also the root attributes.
// Damage is reported, not thrown.
VerifyReport verify_checkpoint(const std::string& path);
// Every committed checkpoint in `dir`, oldest first (also those removed while it ran, as `removed`), plus a
// check that `latest` names one of them.
std::vector<VerifyReport> verify_checkpoint_dir(const std::string& dir);

}  // namespace longctx::io
