// CheckpointReader (validation, resharded reads) and the checkpoint directory (latest, listing, strays).
#include <algorithm>
#include <exception>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <regex>
#include <utility>
#include <vector>

#include "io/activation_dump.hpp"
#include "io/checkpoint.hpp"
#include "io/digest.hpp"
#include "io/durable.hpp"
#include "io/token_dataset.hpp"
#include "runtime/core/check.hpp"
#include "runtime/core/log.hpp"

namespace longctx::io {
namespace {

const std::regex& committed_name() {
  static const std::regex pattern(R"(step_(\d{8})\.h5)");
  return pattern;
}

// The state blobs (RNG, data position) are a few KiB per rank; a shape far past that is damage, refused
// before it is allocated (before: a damaged shape was std::bad_alloc, exit 1, or the kernel's OOM killer).
constexpr int64_t kMaxStateBytes = int64_t{256} << 20;

InputError digest_mismatch(const h5::Dataset& dataset) {
  return InputError(dataset.where().describe() + ": " + kDigestMismatch);
}

// How the ranks' reads of a tensor with a digest are checked against it: not at all (the ranks read only
// part of it), each rank its own whole tensor, or their parts added up (rows that tile it).
enum class DigestReads { none, each_whole, tiled };

// Collective over `comm` (its ranges are gathered). Every rank sees the same file and the same ranges: all
// decide alike.
DigestReads digest_reads(const Shape& shape, RowRange rows, MPI_Comm comm) {
  const int64_t total = shape[0];
  if (comm == MPI_COMM_NULL) return rows.begin == 0 && rows.end == total ? DigestReads::each_whole : DigestReads::none;
  const int ranks = h5::comm_size(comm);
  std::vector<int64_t> ranges(2 * static_cast<size_t>(ranks));
  const int64_t mine[2] = {rows.begin, rows.end};
  LONGCTX_CHECK_MPI(MPI_Allgather(mine, 2, MPI_INT64_T, ranges.data(), 2, MPI_INT64_T, comm));
  bool all_whole = true;
  std::vector<std::pair<int64_t, int64_t>> parts;
  for (int r = 0; r < ranks; ++r) {
    const int64_t begin = ranges[2 * static_cast<size_t>(r)], end = ranges[2 * static_cast<size_t>(r) + 1];
    all_whole = all_whole && begin == 0 && end == total;
    if (end > begin) parts.emplace_back(begin, end);
  }
  if (all_whole) return DigestReads::each_whole;
  std::sort(parts.begin(), parts.end());
  int64_t next = 0;
  for (const auto& [begin, end] : parts) next = begin == next ? end : -1;
  return next == total ? DigestReads::tiled : DigestReads::none;
}

std::vector<uint8_t> read_bytes(const h5::Dataset& dataset) {
  dataset.require_allocated();
  // Bytes as the writer stores them (before: an int64 4 was converted to one byte, "holds 1 bytes").
  if (const h5::ElementType type = dataset.element_type(); type != h5::ElementType::u8)
    throw InputError(dataset.where().describe() + ": " + h5::to_string(type) +
                     " values, not the uint8 bytes a checkpoint stores state in (damaged)");
  const Shape shape = dataset.shape();
  int64_t count = 1;
  for (int64_t extent : shape) {
    if (extent != 0 && count > kMaxStateBytes / extent) count = kMaxStateBytes + 1;
    else count *= extent;
  }
  if (count > kMaxStateBytes)
    throw InputError(dataset.where().describe() + ": shape " + to_string(shape) + " is over " +
                     std::to_string(kMaxStateBytes >> 20) + " MiB of state bytes (damaged)");
  std::vector<uint8_t> bytes(static_cast<size_t>(count));
  h5::Dataspace file = dataset.file_space();
  h5::Dataspace memory = h5::Dataspace::simple({static_cast<int64_t>(bytes.size())});
  dataset.read(H5T_NATIVE_UINT8, memory, file, bytes.data(), h5::Transfer::independent);
  if (const std::optional<uint64_t> stored = stored_digest(dataset, h5::ElementType::u8);
      stored && byte_digest(bytes.data(), static_cast<int64_t>(bytes.size()), 0) != *stored)
    throw digest_mismatch(dataset);
  return bytes;
}

}  // namespace

std::optional<uint64_t> stored_digest(const h5::Dataset& dataset, h5::ElementType read_as) {
  const h5::ElementType type = dataset.element_type();
  if (type != read_as || (type != h5::ElementType::f32 && type != h5::ElementType::u8) ||
      !dataset.has_attribute(kDigestAttribute))
    return std::nullopt;
  return dataset.read_bits64_attribute(kDigestAttribute);
}

// The first link of the file that is no hard link (a soft link, an external one), or "".
herr_t first_other_link(hid_t, const char* name, const H5L_info_t* info, void* found) {
  if (info->type == H5L_TYPE_HARD) return 0;
  *static_cast<std::string*>(found) = name;
  return 1;  // stops the walk
}

std::string format_reader_hint(const std::string& format) {
  return format == kCheckpointFormat   ? ": a checkpoint (`longctx ckpt inspect` reads it)"
         : format == kTokenFormat      ? ": a token dataset (`longctx data inspect` reads it)"
         : format == kActivationFormat ? ": an activation dump of `longctx train` (h5py or h5dump read it)"
                                       : "";
}

CheckpointReader::CheckpointReader(std::string path, MPI_Comm comm)
    : path_(std::move(path)), file_(h5::File::open(path_, h5::Mode::read, comm)) {
  if (!file_.has_attribute("format"))
    throw InputError(path_ + ": not a longctx checkpoint (no 'format' attribute)");
  const std::string format = file_.read_string_attribute("format");
  if (format != kCheckpointFormat)
    throw InputError(path_ + ": format is '" + log::printable(format, "") + "', expected '" + kCheckpointFormat + "'" +
                     format_reader_hint(format));
  format_version_ = file_.read_int64_attribute("format_version");
  if (format_version_ != kCheckpointFormatVersion)
    throw InputError(path_ + ": format_version is " + std::to_string(format_version_) +
                     ", this build reads format_version " + std::to_string(kCheckpointFormatVersion));
  step_ = file_.read_int64_attribute("step");
  world_size_ = file_.read_int64_attribute("world_size");
  seq_len_ = file_.read_int64_attribute("seq_len");
  tokens_seen_ = file_.read_int64_attribute("tokens_seen");
  if (file_.has_attribute("previous_step")) previous_step_ = file_.read_int64_attribute("previous_step");
  // A checkpoint holds hard links alone: a soft link /model/layer0/wq -> /model/layer0/wk, or one to another
  // file, resumed with the wrong weights (before: verify said "ok"; from the ckpt audit).
  // (A walk that fails on damaged metadata is left to the reads below, which name the object.)
  std::string link;
  if (H5Lvisit(file_.id(), H5_INDEX_NAME, H5_ITER_INC, first_other_link, &link) < 0) h5::take_error_text();
  if (!link.empty())
    throw InputError(path_ + ": /" + log::printable(link, "", 200) + " is a soft or external link, which no checkpoint "
                     "holds (edited by hand?): damaged");
  const h5::Dataset config = file_.open_dataset("config");
  config.require_allocated();
  config_ = config.read_string();
  if (file_.has_attribute("config_fnv1a64") && file_.read_int64_attribute("config_fnv1a64") != config_hash(config_))
    throw InputError(path_ + ": /config does not match its recorded hash (damaged)");
}

int64_t config_hash(const std::string& text) {
  uint64_t hash = 14695981039346656037ull;
  for (unsigned char c : text) hash = (hash ^ c) * 1099511628211ull;
  int64_t bits = 0;
  std::memcpy(&bits, &hash, sizeof bits);
  return bits;
}

std::vector<std::string> CheckpointReader::tensor_names() const {
  std::vector<std::string> names;
  for (const std::string group : {"model", "optimizer"}) {
    if (!file_.has_group(group)) continue;
    for (const std::string& path : file_.open_group(group).dataset_paths()) names.push_back(group + "/" + path);
  }
  return names;
}

bool CheckpointReader::has_tensor(const std::string& name) const { return file_.has_dataset(name); }

Shape CheckpointReader::shape(const std::string& name) const { return file_.open_dataset(name).shape(); }

void CheckpointReader::expect_shape(const std::string& name, const Shape& expected) const {
  // Only a missing link is "missing"; a damaged object behind the link fails in shape() with its reason.
  if (!file_.has(name))
    throw InputError(path_ + ": " + name + ": missing from the checkpoint, expected shape " + to_string(expected));
  const Shape found = shape(name);
  if (found != expected)
    throw InputError(path_ + ": " + name + ": shape " + to_string(found) + " in the checkpoint, " +
                     to_string(expected) + " expected");
}

void CheckpointReader::expect_attribute(const std::string& name, int64_t expected) const {
  const int64_t found = file_.read_int64_attribute(name);
  if (found != expected)
    throw InputError(path_ + ": " + name + " is " + std::to_string(found) + " in the checkpoint, " +
                     std::to_string(expected) + " expected");
}

Tensor CheckpointReader::read_rows(const std::string& name, RowRange rows) const {
  // A tensor with missing storage is damage even where this rank's rows happen to be stored; every rank
  // sees the same file, so all refuse it together.
  const h5::Dataset dataset = file_.open_dataset(name);
  dataset.require_allocated();
  const Shape shape = dataset.shape();
  if (shape.empty()) return io::read_rows(dataset, 0, rows);  // refused there: a scalar has no rows
  // Decided before the read (collective): a rank whose read fails must not leave the others in a
  // collective of the check.
  const std::optional<uint64_t> stored = stored_digest(dataset, h5::ElementType::f32);
  const DigestReads check = stored ? digest_reads(shape, rows, file_.comm()) : DigestReads::none;
  std::optional<Tensor> block;
  std::exception_ptr failed;
  try {
    block = io::read_rows(dataset, 0, rows);
  } catch (...) {
    if (check != DigestReads::tiled) throw;
    failed = std::current_exception();
  }
  if (check == DigestReads::none) return std::move(*block);
  const int64_t row_elements = element_count(shape) / std::max<int64_t>(shape[0], 1);
  uint64_t sums[2] = {block ? float_digest(block->data(), block->size(), rows.begin * row_elements) : 0,
                      failed ? uint64_t{1} : 0};
  if (check == DigestReads::tiled)  // the parts, and the ranks whose read failed
    LONGCTX_CHECK_MPI(MPI_Allreduce(MPI_IN_PLACE, sums, 2, MPI_UINT64_T, MPI_SUM, file_.comm()));
  if (failed) std::rethrow_exception(failed);
  if (sums[1] > 0)
    throw InputError(dataset.where().describe() + ": the read failed on " + std::to_string(sums[1]) +
                     " other rank(s), which say why");
  if (sums[0] != *stored) throw digest_mismatch(dataset);
  return std::move(*block);
}

Tensor CheckpointReader::read_whole(const std::string& name) const {
  const Shape global = shape(name);
  if (global.empty()) throw InputError(path_ + ": " + name + " is a scalar, not a tensor");
  return read_rows(name, {0, global[0]});
}

std::vector<uint8_t> CheckpointReader::read_global_blob(const std::string& name) const {
  return read_bytes(file_.open_dataset("state/global/" + name));
}

std::vector<std::vector<uint8_t>> CheckpointReader::read_all_rank_blobs(const std::string& name) const {
  const h5::Dataset dataset = file_.open_dataset("state/rank/" + name);
  dataset.require_rank(2, 2);
  const Shape shape = dataset.shape();
  const std::vector<int64_t> lengths = dataset.read_int64s_attribute("bytes");
  if (static_cast<int64_t>(lengths.size()) != shape[0])
    throw InputError(dataset.where().describe() + ": " + std::to_string(lengths.size()) + " lengths for " +
                     std::to_string(shape[0]) + " ranks");
  const std::vector<uint8_t> all = read_bytes(dataset);
  std::vector<std::vector<uint8_t>> blobs;
  for (int64_t r = 0; r < shape[0]; ++r) {
    const int64_t length = lengths[static_cast<size_t>(r)];
    if (length < 0 || length > shape[1])
      throw InputError(dataset.where().describe() + ": rank " + std::to_string(r) + " length " + std::to_string(length) +
                       " outside [0, " + std::to_string(shape[1]) + "]");
    const auto first = all.begin() + r * shape[1];
    blobs.emplace_back(first, first + length);
  }
  return blobs;
}

RankBlob CheckpointReader::read_rank_blob(const std::string& name, int rank, int size) const {
  std::vector<std::vector<uint8_t>> blobs = read_all_rank_blobs(name);
  const int64_t old_size = static_cast<int64_t>(blobs.size());
  if (old_size == 0) throw InputError(path_ + ": state/rank/" + name + " holds no ranks");
  RankBlob blob;
  blob.exact = old_size == size;
  blob.source_rank = static_cast<int>(blob.exact ? rank : static_cast<int64_t>(rank) * old_size / size);
  blob.bytes = std::move(blobs[static_cast<size_t>(blob.source_rank)]);
  return blob;
}

// ---- the directory ------------------------------------------------------------------------------------
std::string misnamed_checkpoints_note(const std::string& dir) {
  static const std::regex near(R"(step_?\d+\.h5)");
  std::vector<std::string> names;
  std::error_code error;
  for (std::filesystem::directory_iterator entry(dir, error), end; !error && entry != end; entry.increment(error)) {
    const std::string name = entry->path().filename().string();
    if (std::regex_match(name, near) && !std::regex_match(name, committed_name())) names.push_back(name);
  }
  if (names.empty()) return "";
  std::sort(names.begin(), names.end());
  return " (" + log::printable(names[0], "", 100) +
         (names.size() > 1 ? " and " + std::to_string(names.size() - 1) + " more" : std::string()) +
         (names.size() > 1 ? " are" : " is") +
         " not named step_NNNNNNNN.h5, eight digits, as train names checkpoints: a resume, eval and verify pass "
         "over such names)";
}

std::string newest_first_names(const std::vector<std::string>& paths) {
  std::string names;
  for (size_t i = paths.size(); i-- > 0 && paths.size() - i <= 3;)
    names += (names.empty() ? "" : ", ") + std::filesystem::path(paths[i]).filename().string();
  if (paths.size() > 3) names += " and " + std::to_string(paths.size() - 3) + " more";
  return names;
}

std::vector<std::string> list_checkpoints(const std::string& dir) {
  std::vector<std::pair<int64_t, std::string>> found;
  // The error_code forms throughout: a name that is a link loop (ELOOP) is no checkpoint, not an internal
  // failure (before: std::filesystem_error, exit 1).
  std::error_code error;
  for (std::filesystem::directory_iterator entry(dir, error), end; !error && entry != end; entry.increment(error)) {
    const std::string name = entry->path().filename().string();
    std::smatch match;
    std::error_code kind;
    if (std::regex_match(name, match, committed_name()) && entry->is_regular_file(kind))
      found.emplace_back(std::stoll(match[1].str()), entry->path().string());
  }
  // A listing cut short by a read error (not a missing or unreadable directory, which check_readable and the
  // callers say) would hide checkpoints: said (before: std::filesystem_error, exit 1).
  if (error && error != std::errc::no_such_file_or_directory && error != std::errc::not_a_directory &&
      error != std::errc::permission_denied)
    throw InputError(dir + ": cannot list it (" + error.message() + ")");
  std::sort(found.begin(), found.end());
  std::vector<std::string> paths;
  for (auto& item : found) paths.push_back(std::move(item.second));
  return paths;
}

std::optional<int64_t> step_in_file_name(const std::string& path) {
  const std::string name = std::filesystem::path(path).filename().string();
  std::smatch match;
  if (!std::regex_match(name, match, committed_name())) return std::nullopt;
  return std::stoll(match[1].str());
}

void check_step_matches_file_name(const CheckpointReader& reader) {
  const std::optional<int64_t> named = step_in_file_name(reader.path());
  if (named && *named != reader.step())
    throw InputError(reader.path() + ": the file name says step " + std::to_string(*named) +
                     " but its step attribute is " + std::to_string(reader.step()) +
                     " (renamed, or copied from another run?)");
}

std::vector<OwnCheckpoint> own_checkpoints(const std::string& dir) {
  std::vector<OwnCheckpoint> own;
  for (std::string& path : list_checkpoints(dir)) {
    try {
      const CheckpointReader reader(path);
      check_step_matches_file_name(reader);
      own.push_back({std::move(path), reader.step(), reader.previous_step()});
    } catch (const Error&) {
      continue;  // not ours, or not readable: never counted, never deleted
    }
  }
  return own;
}

std::vector<std::string> list_own_checkpoints(const std::string& dir) {
  std::vector<std::string> paths;
  for (OwnCheckpoint& file : own_checkpoints(dir)) paths.push_back(std::move(file.path));
  return paths;
}

std::optional<std::string> latest_file_target(const std::string& path) {
  const std::filesystem::path given(path);
  std::error_code error;
  if (given.filename() != "latest" || !std::filesystem::is_regular_file(given, error)) return std::nullopt;
  char head[8] = {};
  std::ifstream in(path, std::ios::binary);
  in.read(head, sizeof head);
  if (std::string(head, static_cast<size_t>(in.gcount())) == "\x89HDF\r\n\x1a\n") return std::nullopt;
  const std::string dir = given.has_parent_path() ? given.parent_path().string() : ".";
  return find_latest_checkpoint(dir);
}

std::optional<std::string> find_latest_checkpoint(const std::string& dir) {
  const std::string latest = dir + "/latest";
  check_readable(latest);  // (a directory one may enter but not list, mode 711, still has a latest to read)
  std::error_code link_error;
  if (std::filesystem::is_symlink(std::filesystem::symlink_status(latest, link_error)) &&
      !std::filesystem::exists(latest, link_error)) {
    // (Before: taken for "no latest", and the newest file by name was resumed without a word.)
    const std::filesystem::path target = std::filesystem::read_symlink(latest, link_error);
    throw InputError(latest + ": is a symbolic link to '" + log::printable(target.string(), "", 200, true) +
                     "', which is not there");
  }
  if (!std::filesystem::exists(latest)) {
    check_readable(dir);  // listed
    // By name, as every rank sees the same names (opening the files could fail on one rank and not
    // another); a foreign newest file is then refused loudly by the load.
    const std::vector<std::string> files = list_checkpoints(dir);
    if (files.empty()) return std::nullopt;
    return files.back();
  }
  // Read as bytes, at most 4 KiB: `latest` is a few dozen characters of text, and whatever
  // else is there (a FIFO, a binary file) must neither hang the reader nor reach the terminal raw.
  if (const std::string kind = non_regular_kind(latest); !kind.empty())
    throw InputError(latest + ": is " + kind + ", not the text file naming the latest checkpoint");
  std::ifstream in(latest, std::ios::binary);
  std::string head(4096, '\0');  // a name, and room for white space after it
  in.read(head.data(), static_cast<std::streamsize>(head.size()));
  head.resize(static_cast<size_t>(in.gcount()));
  const auto space = [](char c) { return c == ' ' || c == '\n' || c == '\t' || c == '\r' || c == '\v' || c == '\f'; };
  const bool longer = in.peek() != std::char_traits<char>::eof();
  const auto first = std::find_if_not(head.begin(), head.end(), space);
  const auto last = std::find_if(first, head.end(), space);
  const std::string name(first, last);
  if (!std::regex_match(name, committed_name())) {
    // What it holds, blanks inside included (before: its first word alone, 'hello' of "hello world").
    const auto end = std::find_if_not(head.rbegin(), head.rend(), space).base();
    const std::string held(first, std::max(end, last));
    throw InputError(latest + ": holds '" + log::printable(held, "", 64, /*ascii_only=*/true) +
                     "', not a checkpoint file name like step_00000001.h5");
  }
  // One name: a second line (a hand edit, two writers) was read as its first name alone.
  const auto more = std::find_if_not(last, head.end(), space);
  if (more != head.end() || longer)
    throw InputError(latest + ": holds more than one name ('" + name + "', then " +
                     (more == head.end() ? std::string("more")
                                         : "'" + log::printable(std::string(more, std::find_if(more, head.end(), space)),
                                                                "", 64, /*ascii_only=*/true) + "'") +
                     "); write the one checkpoint file name to resume from, e.g. " + name);
  const std::string path = dir + "/" + name;
  std::error_code error;
  const auto status = std::filesystem::status(path, error);
  if (error == std::errc::too_many_symbolic_link_levels)  // (before: "does not exist")
    throw InputError(latest + ": names " + name + ", which in " + dir + " cannot be followed (" + error.message() + ")");
  if (!std::filesystem::exists(status))
    throw InputError(latest + ": names " + name + ", which does not exist in " + dir);
  if (!std::filesystem::is_regular_file(status))
    throw InputError(latest + ": names " + name + ", which in " + dir + " is " +
                     (std::filesystem::is_directory(status) ? "a directory" : "not a regular file") +
                     ", not a checkpoint file");
  return path;
}

namespace {
const std::regex& temporary_name() {
  static const std::regex name(R"(step_\d{8}\.h5\.tmp|latest\.tmp)");
  return name;
}
}  // namespace

bool is_checkpoint_file_name(const std::string& name) {
  return name == "latest" || std::regex_match(name, committed_name()) || std::regex_match(name, temporary_name());
}

void check_checkpoint_temporaries(const std::string& named, const std::string& dir) {
  std::error_code error;
  for (std::filesystem::directory_iterator entry(dir, error), end; !error && entry != end; entry.increment(error))
    if (std::regex_match(entry->path().filename().string(), temporary_name()))
      check_temporary_path(named, entry->path().string());
}

int remove_stray_temporaries(const std::string& dir) {
  const std::regex& stray = temporary_name();
  int removed = 0;
  std::error_code error;
  for (std::filesystem::directory_iterator entry(dir, error), end; !error && entry != end; entry.increment(error)) {
    // One a running writer holds (another job on the same directory) is not stray.
    std::error_code kind;
    if (std::regex_match(entry->path().filename().string(), stray) && entry->is_regular_file(kind) &&
        !temporary_in_use(entry->path().string())) {
      std::error_code ignored;
      if (std::filesystem::remove(entry->path(), ignored)) ++removed;
    }
  }
  return removed;
}

}  // namespace longctx::io
