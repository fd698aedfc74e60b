// `longctx data import`: text files as byte tokens, or token ids a tokenizer wrote (raw little-endian
// integers or NumPy .npy), into one token dataset (see token_dataset.hpp), one document per input.
// Reading the inputs is token_import_input.cpp's.
#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <optional>
#include <thread>
#include <type_traits>

#include "io/atomic_output.hpp"
#include "io/digest.hpp"
#include "io/durable.hpp"
#include "io/token_dataset.hpp"
#include "io/token_import_input.hpp"
#include "runtime/core/heartbeat.hpp"
#include "runtime/core/log.hpp"
#include "runtime/core/stop_point.hpp"

namespace longctx::io {
namespace {

using import::beside;
using import::binary_kind;
using import::ends_with;
using import::find_id_type;
using import::id_dtype_names;
using import::IdSource;
using import::IdType;
using import::megatron_dtype_beside;
using import::name_of;
using import::open_ids;
using import::open_input;
using import::read_some;

constexpr int64_t kMaxVocab = int64_t{1} << 31;  // ids are int32 when read

// What plan_inputs found.
struct InputPlan {
  int64_t bytes = 0;
  bool streams = false;      // any input a stream
  std::vector<bool> stream;  // which, by input
  bool reads_stdin = false;  // an input is standard input: "-", or by another name (/dev/stdin, /dev/fd/0)
};

// The inputs, looked at before anything is written: bytes of the regular files (for progress and the
// chunk size) and whether any is a stream, whose size is known only at its end. A stream can be read
// once: the same pipe given twice (or `-` and /dev/stdin) is refused (the second open of a FIFO waited
// for a writer that never came).
InputPlan plan_inputs(const std::vector<std::string>& files, const std::string& option, const std::string& out_path) {
  if (files.empty()) throw UsageError("data import: no input files");
  InputPlan plan;
  plan.stream.assign(files.size(), false);
  int standard_input = 0;
  struct stat stdin_info {};
  const bool stdin_known = ::fstat(0, &stdin_info) == 0;
  const bool has_dash = std::find(files.begin(), files.end(), "-") != files.end();
  std::vector<std::pair<std::string, struct stat>> streams;
  for (size_t f = 0; f < files.size(); ++f) {
    const std::string& file = files[f];
    if (file == "-") {
      if (++standard_input > 1)
        throw UsageError("--" + option + ": '-' (standard input) is given more than once", option);
      if (standard_input_was_closed())
        throw UsageError("--" + option + " -: standard input is closed (the command was started with it closed, "
                         "as `<&-`, a daemon or cron do): give a file, or a pipe into it",
                         option);
      plan.streams = plan.stream[f] = plan.reads_stdin = true;
      continue;
    }
    check_readable(file);
    struct stat info {};
    if (::stat(file.c_str(), &info) != 0) {
      if (option == "ids" && ::stat((file + ".idx").c_str(), &info) == 0)
        throw InputError(file + ": no such file; " + file + ".idx is there: a Megatron dataset is given by its index (--ids " +
                         file + ".idx)");
      throw InputError(file + ": " + missing_file_text(file));
    }
    if (stdin_known && info.st_dev == stdin_info.st_dev && info.st_ino == stdin_info.st_ino) {
      if (has_dash) throw UsageError("--" + option + " " + file + " is standard input, which '-' reads already");
      plan.reads_stdin = true;
    }
    if (S_ISDIR(info.st_mode))
      throw InputError(file + ": is a directory; give the files in it (--" + option + " " + file + "/*, for one)");
    if (S_ISFIFO(info.st_mode)) {
      for (const auto& [other, seen] : streams)
        if (seen.st_dev == info.st_dev && seen.st_ino == info.st_ino)
          throw UsageError("--" + option + " " + other + " and " + file + " are the same pipe, which can be read once");
      streams.emplace_back(file, info);
      plan.streams = plan.stream[f] = true;
      continue;
    }
    if (!S_ISREG(info.st_mode))
      throw InputError(file + ": is " + non_regular_kind(file) + "; give a regular file, a pipe or - (standard input)");
    if (same_file(file, out_path) || same_file(file, out_path + ".tmp"))
      throw UsageError("--" + option + " " + file + " is --out " + out_path + " (or its .tmp); write the dataset elsewhere");
    // A file whose size says 0 but that holds bytes (/proc, /sys: they are made as it is read) is read once, as
    // a stream is, to its end (before: "the files hold no bytes", or for --ids "changed while it was imported").
    if (info.st_size == 0) {
      char first = 0;
      std::ifstream probe(file, std::ios::binary);
      if (probe.read(&first, 1).gcount() == 1) {
        plan.streams = plan.stream[f] = true;
        continue;
      }
    }
    // A Megatron index's ids are in its .bin (read when it is opened).
    const std::string data = option == "ids" && ends_with(file, ".idx") ? beside(file, ".bin") : file;
    if (data != file) {
      if (same_file(data, out_path) || same_file(data, out_path + ".tmp"))
        throw UsageError("--" + option + " " + file + ": its " + data + " is --out " + out_path + "; write the dataset elsewhere");
      if (::stat(data.c_str(), &info) != 0) info.st_size = 0;
    }
    plan.bytes += static_cast<int64_t>(info.st_size);
  }
  return plan;
}


void warn_empty_document(const std::string& file, const std::string& what) {
  log::warn(name_of(file) + " holds no " + what + ": it is an empty document (doc_offsets lists it)");
}

// Bytes of one id stored as `type` (uint8, uint16 or int32).
int64_t storage_bytes(h5::ElementType type) {
  return type == h5::ElementType::u8 ? 1 : type == h5::ElementType::u16 ? 2 : 4;
}

// The dataset being written: /tokens grows as inputs are read; finish() adds /doc_offsets and the
// attributes (/tokens' digest among them, summed as the tokens are appended) and renames the temporary
// into place. Both datasets carry Fletcher32 checksums. /tokens is made once its first chunk is full, or
// at the end: its chunk is at most `chunk` ids and no longer than what the inputs held (before: 1 MiB for
// any stream, so 12 bytes piped in made a 1 MiB file; from the data import audit).
class TokenWriter {
 public:
  TokenWriter(const std::string& out_path, h5::ElementType type, int64_t chunk)
      : output_(out_path), type_(type), chunk_(std::max<int64_t>(chunk, 1)) {}
  void append(const void* values, int64_t count) {
    if (count == 0) return;
    const auto* bytes = static_cast<const char*>(values);
    if (!created_) {  // held until a chunk's worth has come
      pending_.insert(pending_.end(), bytes, bytes + count * storage_bytes(type_));
      if (written_ + count >= chunk_) create(chunk_);
    } else {
      write(bytes, written_, count);
    }
    if (type_ == h5::ElementType::u8)
      digest_ += id_digest(static_cast<const uint8_t*>(values), count, written_);
    else if (type_ == h5::ElementType::u16)
      digest_ += id_digest(static_cast<const uint16_t*>(values), count, written_);
    else
      digest_ += id_digest(static_cast<const int32_t*>(values), count, written_);
    written_ += count;
  }
  void end_document() { offsets_.push_back(written_); }
  int64_t written() const { return written_; }
  uint64_t digest() const { return digest_; }  // of the tokens appended so far
  int64_t documents() const { return static_cast<int64_t>(offsets_.size()) - 1; }
  // Refuses an import that wrote no token (`nothing` says what the inputs held); else adds /doc_offsets
  // and the attributes, renames the temporary into place and returns the counts.
  TokenImportStats finish(int64_t vocab, const std::string& nothing) {
    if (written_ == 0) throw InputError("data import: the " + nothing + ": nothing to train on");
    if (!created_) create(written_);
    h5::File& out = output_.file();
    const int64_t count = static_cast<int64_t>(offsets_.size());
    h5::DatasetOptions options;  // a flipped offset would move document boundaries unseen
    options.chunk = {std::min<int64_t>(count, int64_t{1} << 17)};
    options.fletcher32 = true;
    h5::Dataset offsets = out.create_dataset("doc_offsets", h5::ElementType::i64, {count}, options);
    h5::Dataspace all = offsets.file_space();
    offsets.write(H5T_NATIVE_INT64, all, all, offsets_.data());
    offsets.close_object();
    out.write_attribute("format", std::string(kTokenFormat));
    out.write_attribute("format_version", kTokenFormatVersion);
    out.write_attribute("vocab", vocab);
    out.write_attribute("token_count", written_);
    out.write_attribute("document_count", documents());
    tokens_.write_attribute(kDigestAttribute, digest_attribute_value(digest_));
    tokens_.close_object();  // (the commit refuses a file with objects open)
    output_.commit();
    TokenImportStats stats;
    stats.documents = documents();
    stats.tokens = written_;
    stats.vocab = vocab;
    stats.storage = h5::to_string(type_);
    stats.digest = digest_;
    return stats;
  }

 private:
  // /tokens with chunks of `chunk` ids, holding the ids appended so far.
  void create(int64_t chunk) {
    h5::DatasetOptions options;
    options.chunk = {chunk};
    options.fletcher32 = true;
    options.max_dims = {-1};
    tokens_ = output_.file().create_dataset("tokens", type_, {0}, options);
    created_ = true;
    const int64_t held = static_cast<int64_t>(pending_.size()) / storage_bytes(type_);
    write(pending_.data(), 0, held);
    std::vector<char>().swap(pending_);
  }
  void write(const char* values, int64_t at, int64_t count) {
    tokens_.set_extent({at + count});
    h5::Dataspace space = tokens_.file_space();
    space.select_box({at}, {count});
    tokens_.write(h5::native_type(type_), h5::Dataspace::simple({count}), space, values);
  }

  AtomicOutput output_;
  h5::ElementType type_;
  int64_t chunk_;
  bool created_ = false;
  std::vector<char> pending_;  // the ids appended before /tokens was made
  h5::Dataset tokens_;
  int64_t written_ = 0;
  uint64_t digest_ = 0;
  std::vector<int64_t> offsets_ = {0};
};


// Each id in [0, limit), or an InputError naming the file, the id and its index; `reason` says why the
// limit is what it is.
void check_ids(const int64_t* ids, int64_t count, int64_t first_index, int64_t limit, const std::string& file,
               const std::string& reason) {
  for (int64_t i = 0; i < count; ++i) {
    if (ids[i] >= 0 && ids[i] < limit) continue;
    const std::string where = std::to_string(ids[i]) + " at index " + std::to_string(first_index + i) + " (counting from 0)";
    if (ids[i] < 0) throw InputError(name_of(file) + ": negative id " + where + "; token ids are 0 or more");
    throw InputError(name_of(file) + ": id " + where + " is outside [0, " + std::to_string(limit) + "): " + reason);
  }
}

// The largest of `count` ids, each checked to lie in [0, limit) (check_ids names the first that does not);
// -1 for none. One pass of min and max, which vectorise (before: check_ids' branch per id, then
// max_element: two passes).
int64_t checked_largest(const int64_t* ids, int64_t count, int64_t first_index, int64_t limit, const std::string& file,
                        const std::string& reason) {
  if (count <= 0) return -1;
  int64_t lowest = ids[0], largest = ids[0];
  for (int64_t i = 1; i < count; ++i) {
    lowest = std::min(lowest, ids[i]);
    largest = std::max(largest, ids[i]);
  }
  if (lowest < 0 || largest >= limit) check_ids(ids, count, first_index, limit, file, reason);  // throws
  return largest;
}

// The storage of ids below `limit`: the smallest of uint8, uint16 and int32 that holds them.
h5::ElementType storage_for(int64_t limit) {
  return limit <= 256 ? h5::ElementType::u8 : limit <= 65536 ? h5::ElementType::u16 : h5::ElementType::i32;
}
int64_t type_limit(const IdType& type) {
  return type.bytes >= 4 ? kMaxVocab : int64_t{1} << (8 * type.bytes - (type.is_signed ? 1 : 0));
}

// ids -> `storage` values (checked already), in `out`.
void narrow(const int64_t* ids, int64_t count, h5::ElementType storage, std::vector<char>& out) {
  out.resize(static_cast<size_t>(count * storage_bytes(storage)));
  const auto to = [&](auto* values) {
    for (int64_t i = 0; i < count; ++i) values[i] = static_cast<std::remove_pointer_t<decltype(values)>>(ids[i]);
  };
  if (storage == h5::ElementType::u8)
    to(reinterpret_cast<uint8_t*>(out.data()));
  else if (storage == h5::ElementType::u16)
    to(reinterpret_cast<uint16_t*>(out.data()));
  else
    to(reinterpret_cast<int32_t*>(out.data()));
}

}  // namespace

void check_id_options(const IdImportOptions& options) {
  if (!options.dtype.empty() && !find_id_type(options.dtype))
    throw UsageError("--ids-dtype " + options.dtype + ": one of " + id_dtype_names(), "ids-dtype");
  if (options.vocab < 0 || options.vocab > kMaxVocab)
    throw UsageError("--vocab " + std::to_string(options.vocab) + ": it must be in [1, 2^31] (ids are read as int32), or 0",
                     "vocab");
}

namespace {
// Before the commit of an import that read standard input: `seconds` for a signal that may follow its end
// (import_text_files), said. A signal then ends the process, the temporary removed (before: an mpirun
// interrupted mid-import left the stream's first part as the whole dataset; from the data import audit).
// `plan.reads_stdin`: "-", or standard input by another name (before, only "-" waited).
void settle_after_stdin(const InputPlan& plan, double seconds) {
  if (seconds <= 0 || !plan.reads_stdin) return;
  log::info("data import: standard input ended; the launcher also ends it when interrupted, so waiting " +
            Heartbeat::elapsed_text(seconds) + " s for a stop signal before writing the dataset");
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
}
}  // namespace

TokenImportStats import_text_files(const std::vector<std::string>& files, const std::string& out_path,
                                   double stdin_settle_seconds) {
  check_hdf5_output_path("out", out_path, kTokenFormat);
  // Regular files, and streams: a pipe (`--text <(zcat a.gz)`, a FIFO) or `-`, standard input (before:
  // refused as "not a regular file", so a compressed corpus had to be unpacked to disk first).
  const InputPlan plan = plan_inputs(files, "text", out_path);
  if (plan.bytes == 0 && !plan.streams) throw InputError("data import: the --text inputs held no bytes: nothing to train on");
  // The chunk need not exceed the corpus (a 12-byte corpus made a 1 MiB file).
  TokenWriter writer(out_path, h5::ElementType::u8, plan.streams ? int64_t{1} << 20 : std::min(plan.bytes, int64_t{1} << 20));
  std::vector<char> buffer(size_t{16} << 20);
  // On long imports; a stream's size is known only at its end.
  log::ByteProgress progress("data import", plan.streams ? log::ByteProgress::kUnknownTotal : static_cast<uint64_t>(plan.bytes));
  for (const std::string& file : files) {
    std::ifstream in = open_input(file);
    const int64_t before = writer.written();
    bool first = true;  // its first bytes tell a binary container (read, not seeked back: a pipe cannot)
    for (int64_t got; (got = read_some(in, buffer.data(), static_cast<int64_t>(buffer.size()), file)) > 0;) {
      if (first) {
        const std::string kind = binary_kind(std::string(buffer.data(), static_cast<size_t>(std::min<int64_t>(got, 8))));
        if (!kind.empty())
          log::warn(name_of(file) + " looks like " + kind + ": its bytes are imported as they are, as byte tokens " +
                    (kind == "a NumPy .npy file" ? "(token ids a tokenizer wrote go in with --ids instead)"
                                                 : "(decompress or convert it to text first, if that is not what you want)"));
        first = false;
      }
      writer.append(buffer.data(), got);
      progress.update(static_cast<uint64_t>(writer.written()));
    }
    if (writer.written() == before && files.size() > 1) warn_empty_document(file, "bytes");
    writer.end_document();
  }
  settle_after_stdin(plan, stdin_settle_seconds);
  return writer.finish(256, "--text inputs held no bytes");
}

TokenImportStats import_token_ids(const std::vector<std::string>& files, const IdImportOptions& options,
                                  const std::string& out_path, double stdin_settle_seconds) {
  check_id_options(options);
  const IdType* const raw_type = options.dtype.empty() ? nullptr : find_id_type(options.dtype);
  check_hdf5_output_path("out", out_path, kTokenFormat);
  const InputPlan plan = plan_inputs(files, "ids", out_path);

  // Every regular input is looked at first (a .npy header, its size), so that a mistake is refused
  // before anything is written. Without --vocab and without streams its ids are read too: the largest
  // sets the vocabulary, and the storage holds it (an int64 .npy of GPT-2 ids is stored in 2 bytes).
  // With a stream and no --vocab the storage holds what the inputs' dtypes do.
  const bool scan = options.vocab == 0 && !plan.streams;
  int64_t type_bound = 0, known_ids = 0, largest = -1;
  std::vector<int64_t> counts(files.size(), -1);  // ids of each regular file, as first looked at
  // and, where they were read (scan), their part of /tokens' digest: the writer's, over the second reading,
  // must be the same (no stream among the inputs: each file's tokens start where the ones before end).
  std::vector<uint64_t> digests(files.size(), 0);
  log::ByteProgress scanning("data import: the largest id", scan ? static_cast<uint64_t>(plan.bytes) : 0);
  uint64_t scanned = 0;
  for (size_t f = 0; f < files.size(); ++f) {
    const std::string& file = files[f];
    if (plan.stream[f]) {  // its type is known when it is read: --ids-dtype's, else the widest
      type_bound = std::max(type_bound, raw_type ? type_limit(*raw_type) : kMaxVocab);
      continue;
    }
    const std::unique_ptr<IdSource> input = open_ids(file, raw_type);
    known_ids += counts[f] = input->check_size();
    type_bound = std::max(type_bound, type_limit(input->type()));
    if (scan)
      input->read_all(
          [&](const int64_t* ids, int64_t count, int64_t first) {
            largest = std::max(largest, checked_largest(ids, count, first, kMaxVocab, file, "ids are read as int32"));
            digests[f] += id_digest(ids, count, known_ids - counts[f] + first);
          },
          [&](uint64_t bytes) { scanning.update(scanned += bytes); }, [] {});
  }
  if (!plan.streams && known_ids == 0) throw InputError("data import: the --ids files hold no ids: nothing to train on");
  if (scan) stop_here_if_set("LONGCTX_FAULT_STOP_BETWEEN_READS");  // a test changes a file before the second reading
  const int64_t limit = options.vocab > 0 ? options.vocab : scan ? largest + 1 : type_bound;
  const h5::ElementType storage = storage_for(limit);
  // Why ids must lie below `limit`, for the message that refuses one.
  const std::string reason = options.vocab > 0              ? "--vocab is " + std::to_string(options.vocab)
                             : scan                         ? "past the largest id the first reading found (did the file change?)"
                             : storage == h5::ElementType::i32 ? "ids are read as int32"
                             : plan.streams && raw_type
                                 ? std::string("what the storage holds, sized before the streams were read, by --ids-dtype ") +
                                       raw_type->name + " for theirs (a .npy stream's own dtype is known only as it is "
                                       "read): give --vocab"
                                 : "what the inputs' dtypes hold (give --vocab)";
  const int64_t chunk_ids = (int64_t{1} << 20) / storage_bytes(storage);
  TokenWriter writer(out_path, storage, plan.streams ? chunk_ids : std::min(known_ids, chunk_ids));

  std::vector<char> narrowed;
  log::ByteProgress progress("data import", plan.streams ? log::ByteProgress::kUnknownTotal : static_cast<uint64_t>(plan.bytes));
  uint64_t bytes_read = 0;
  largest = -1;
  for (size_t f = 0; f < files.size(); ++f) {
    const std::string& file = files[f];
    const std::unique_ptr<IdSource> input = open_ids(file, raw_type);
    if (megatron_dtype_beside(file))
      log::warn(file + ": a Megatron index is beside it; give that (--ids PREFIX.idx) to keep its documents: as raw "
                "ids this file is one document");
    if (const char* said_by = input->type_said_by(); raw_type && said_by && raw_type != &input->type())
      log::warn(name_of(file) + ": its " + said_by + " says " + input->type().name + "; --ids-dtype " + raw_type->name +
                " is for raw files (the others are read as they say)" +
                // (Before, the storage it sized went unsaid: the warning read as if it were ignored.)
                (plan.stream[f] ? std::string("; it sized /tokens' storage all the same, chosen before this pipe was "
                                              "read (--vocab sets it)")
                                : std::string()));
    const int64_t before = writer.written();
    const uint64_t digest_before = writer.digest();
    input->read_all(
        [&](const int64_t* ids, int64_t count, int64_t first) {
          largest = std::max(largest, checked_largest(ids, count, first, limit, file, reason));
          narrow(ids, count, storage, narrowed);
          writer.append(narrowed.data(), count);
        },
        [&](uint64_t bytes) { progress.update(bytes_read += bytes); }, [&] { writer.end_document(); });
    if (counts[f] >= 0 && writer.written() - before != counts[f])
      throw InputError(name_of(file) + ": changed while it was imported (" + std::to_string(counts[f]) +
                       " ids when first looked at, " + std::to_string(writer.written() - before) + " now)");
    // As many ids, others among them (an id past the largest first read is refused above, as it is read).
    if (scan && writer.digest() - digest_before != digests[f])
      throw InputError(name_of(file) + ": changed while it was imported (its ids are not those first read)");
    if (writer.written() == before && input->one_document() && files.size() > 1) warn_empty_document(file, "ids");
  }
  settle_after_stdin(plan, stdin_settle_seconds);
  TokenImportStats stats = writer.finish(options.vocab > 0 ? options.vocab : largest + 1, "--ids inputs held no ids");
  stats.largest_id = largest;
  stats.narrowest_storage = h5::to_string(storage_for(stats.vocab));
  stats.narrowest_bytes = storage_bytes(storage_for(stats.vocab));
  return stats;
}

}  // namespace longctx::io
