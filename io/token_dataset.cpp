#include "io/token_dataset.hpp"

#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <fstream>

#include "io/atomic_output.hpp"
#include "io/durable.hpp"
#include "runtime/core/log.hpp"

namespace longctx::io {
namespace {

// What a file that starts with `head` is, where it is a known binary container (its bytes would go in as
// tokens as they are: a compressed corpus trains on the compressed stream); "" otherwise.
std::string binary_kind(const std::string& head) {
  static const std::pair<const char*, const char*> kSignatures[] = {
      {"\x89HDF\r\n\x1a\n", "an HDF5 file"}, {"\x93NUMPY", "a NumPy .npy file"}, {"\x1f\x8b", "a gzip file"},
      {"PK\x03\x04", "a zip file"}, {"BZh", "a bzip2 file"}, {"\xfd" "7zXZ", "an xz file"},
      {"\x28\xb5\x2f\xfd", "a zstd file"}, {"\x89PNG", "a PNG image"}, {"\x7f" "ELF", "an executable"},
      {"%PDF-", "a PDF"}};
  for (const auto& [signature, kind] : kSignatures)
    if (head.compare(0, std::strlen(signature), signature) == 0) return kind;
  return "";
}

}  // namespace

TokenImportStats import_text_files(const std::vector<std::string>& files, const std::string& out_path) {
  if (files.empty()) throw UsageError("data import: no input files");
  check_hdf5_output_path("out", out_path, kTokenFormat);
  // Regular files, and streams: a pipe (`--text <(zcat a.gz)`, a FIFO) or `-`, standard input (before:
  // refused as "not a regular file", so a compressed corpus had to be unpacked to disk first).
  const auto name_of = [](const std::string& file) { return file == "-" ? std::string("standard input") : file; };
  int64_t expected = 0;  // the chunk need not exceed the corpus (a 12-byte corpus made a 1 MiB file)
  bool streams = false;
  int standard_input = 0;
  for (const std::string& file : files) {
    if (file == "-") {
      if (++standard_input > 1) throw UsageError("--text: '-' (standard input) is given more than once");
      streams = true;
      continue;
    }
    check_readable(file);
    struct stat info {};
    if (::stat(file.c_str(), &info) != 0) throw InputError(file + ": no such file");
    if (S_ISDIR(info.st_mode))
      throw InputError(file + ": is a directory; give the files in it (--text " + file + "/*.txt, for one)");
    if (S_ISFIFO(info.st_mode)) {
      streams = true;
      continue;
    }
    if (!S_ISREG(info.st_mode))
      throw InputError(file + ": is " + non_regular_kind(file) + "; give a regular file, a pipe or - (standard input)");
    if (same_file(file, out_path) || same_file(file, out_path + ".tmp"))
      throw UsageError("--text " + file + " is --out " + out_path + " (or its .tmp); write the dataset elsewhere");
    expected += static_cast<int64_t>(info.st_size);
  }
  if (expected == 0 && !streams) throw InputError("data import: the --text files hold no bytes: nothing to train on");
  AtomicOutput output(out_path);
  h5::File& out = output.file();
  h5::DatasetOptions options;
  options.chunk = {streams ? int64_t{1} << 20 : std::min(expected, int64_t{1} << 20)};
  options.fletcher32 = true;
  options.max_dims = {-1};
  h5::Dataset tokens = out.create_dataset("tokens", h5::ElementType::u8, {0}, options);

  TokenImportStats stats;
  std::vector<int64_t> offsets = {0};
  std::vector<char> buffer(size_t{16} << 20);
  // On long imports; a stream's size is known only at its end.
  log::ByteProgress progress("data import", streams ? log::ByteProgress::kUnknownTotal : static_cast<uint64_t>(expected));
  for (const std::string& file : files) {
    std::ifstream in(file == "-" ? "/dev/stdin" : file, std::ios::binary);
    if (!in) throw InputError(name_of(file) + ": cannot be read (" + std::strerror(errno) + ")");
    bool first = true;  // its first bytes tell a binary container (read, not seeked back: a pipe cannot)
    while (in) {
      in.read(buffer.data(), static_cast<std::streamsize>(buffer.size()));
      const int64_t got = static_cast<int64_t>(in.gcount());
      if (got == 0) break;
      if (first) {
        const std::string kind = binary_kind(std::string(buffer.data(), static_cast<size_t>(std::min<int64_t>(got, 8))));
        if (!kind.empty())
          log::warn(name_of(file) + " looks like " + kind + ": its bytes are imported as they are, as byte tokens "
                    "(decompress or convert it to text first, if that is not what you want)");
        first = false;
      }
      tokens.set_extent({stats.tokens + got});
      h5::Dataspace space = tokens.file_space();
      space.select_box({stats.tokens}, {got});
      tokens.write(H5T_NATIVE_UINT8, h5::Dataspace::simple({got}), space, buffer.data());
      stats.tokens += got;
      progress.update(static_cast<uint64_t>(stats.tokens));
    }
    if (in.bad()) throw InputError(name_of(file) + ": read error");
    offsets.push_back(stats.tokens);
    ++stats.documents;
  }
  if (stats.tokens == 0) throw InputError("data import: the --text inputs held no bytes: nothing to train on");
  h5::Dataset offsets_dataset =
      out.create_dataset("doc_offsets", h5::ElementType::i64, {static_cast<int64_t>(offsets.size())});
  h5::Dataspace all = offsets_dataset.file_space();
  offsets_dataset.write(H5T_NATIVE_INT64, all, all, offsets.data());
  out.write_attribute("format", std::string(kTokenFormat));
  out.write_attribute("format_version", kTokenFormatVersion);
  out.write_attribute("vocab", int64_t{256});
  out.write_attribute("token_count", stats.tokens);
  out.write_attribute("document_count", stats.documents);
  output.commit();
  return stats;
}

TokenReader::TokenReader(const std::string& path, MPI_Comm comm)
    : path_(path), file_(h5::File::open(path, h5::Mode::read, comm)) {
  if (!file_.has_attribute("format") || file_.read_string_attribute("format") != kTokenFormat)
    throw InputError(path_ + ": not a longctx token dataset (format attribute is not '" + kTokenFormat + "')");
  const int64_t version = file_.read_int64_attribute("format_version");
  if (version != kTokenFormatVersion)
    throw InputError(path_ + ": format_version is " + std::to_string(version) + ", this build reads " +
                     std::to_string(kTokenFormatVersion));
  tokens_ = file_.open_dataset("tokens");
  tokens_.require_rank(1, 1);
  const h5::ElementType type = tokens_.element_type();
  if (type != h5::ElementType::u8 && type != h5::ElementType::i32)
    throw InputError(tokens_.where().describe() + ": dtype " + tokens_.dtype_name() + ", expected uint8 or int32");
  token_count_ = tokens_.shape()[0];
  // Storage never written (missing chunks, a VDS source or external file that is not there) reads as
  // fill values without an error: training and evaluation would run on zeros.
  tokens_.require_allocated();
  vocab_ = file_.read_int64_attribute("vocab");
  const h5::Dataset offsets = file_.open_dataset("doc_offsets");
  offsets.require_rank(1, 1);
  offsets.require_allocated();
  document_count_ = offsets.shape()[0] - 1;
  check_metadata();
}

// The attributes and doc_offsets must describe the tokens dataset: a file assembled by hand (or cut
// short) that disagrees is refused here, not at some later sequence.
void TokenReader::check_metadata() const {
  const auto refuse = [&](const std::string& what) { throw InputError(path_ + ": " + what); };
  if (file_.has_attribute("token_count") && file_.read_int64_attribute("token_count") != token_count_)
    refuse("token_count attribute is " + std::to_string(file_.read_int64_attribute("token_count")) +
           " but /tokens holds " + std::to_string(token_count_) + " tokens");
  if (document_count_ < 0) refuse("/doc_offsets is empty; it needs at least [0, token count]");
  if (file_.has_attribute("document_count") && file_.read_int64_attribute("document_count") != document_count_)
    refuse("document_count attribute is " + std::to_string(file_.read_int64_attribute("document_count")) +
           " but /doc_offsets holds " + std::to_string(document_count_) + " documents");
  // Token ids are int32 at most: a larger vocabulary is a damaged attribute (compared with model.vocab
  // it would read as a configuration mistake).
  constexpr int64_t kMaxVocab = int64_t{1} << 31;
  if (vocab_ <= 0 || vocab_ > kMaxVocab)
    refuse("vocab attribute is " + std::to_string(vocab_) + "; it must be in [1, " + std::to_string(kMaxVocab) +
           "] (token ids are int32)");
  const std::vector<int64_t> offsets = document_offsets();
  for (size_t i = 0; i < offsets.size(); ++i) {
    const int64_t previous = i == 0 ? 0 : offsets[i - 1];
    const bool last = i + 1 == offsets.size();
    if ((i == 0 && offsets[i] != 0) || offsets[i] < previous || offsets[i] > token_count_ ||
        (last && offsets[i] != token_count_))
      refuse("/doc_offsets[" + std::to_string(i) + "] = " + std::to_string(offsets[i]) +
             ": offsets must rise from 0 to the token count " + std::to_string(token_count_));
  }
}

int64_t TokenReader::sequence_count(int64_t seq_len) const {
  if (seq_len <= 0) throw UsageError("seq_len must be positive, got " + std::to_string(seq_len));
  return token_count_ > 0 ? (token_count_ - 1) / seq_len : 0;
}

std::vector<int32_t> TokenReader::read(int64_t begin, int64_t end) const {
  if (begin < 0 || end < begin || end > token_count_)
    throw InputError(path_ + ": tokens [" + std::to_string(begin) + ", " + std::to_string(end) + ") outside [0, " +
                     std::to_string(token_count_) + ")");
  std::vector<int32_t> out(static_cast<size_t>(end - begin));
  h5::Dataspace file = tokens_.file_space();
  file.select_box({begin}, {end - begin});
  h5::Dataspace memory = h5::Dataspace::simple({end - begin});
  if (end == begin) memory.select_none();
  tokens_.read(H5T_NATIVE_INT32, memory, file, out.data(), h5::Transfer::independent);
  return out;
}

SequenceRows TokenReader::read_sequence_rows(int64_t index, int64_t seq_len, RowRange rows) const {
  const int64_t count = sequence_count(seq_len);
  if (index < 0 || index >= count)
    throw InputError(path_ + ": sequence " + std::to_string(index) + " of length " + std::to_string(seq_len) +
                     " does not exist (the " + std::to_string(token_count_) + " tokens hold " + std::to_string(count) + ")");
  return read_window_rows(index * seq_len, seq_len, rows);
}

SequenceRows TokenReader::read_window_rows(int64_t first, int64_t seq_len, RowRange rows) const {
  if (first < 0 || seq_len < 1 || first > token_count_ - 1 - seq_len)
    throw InputError(path_ + ": a window of " + std::to_string(seq_len) + " tokens (+1 target) at token " +
                     std::to_string(first) + " does not fit in its " + std::to_string(token_count_) + " tokens");
  if (rows.begin < 0 || rows.end < rows.begin || rows.end > seq_len)
    throw InternalError("read_window_rows: rows [" + std::to_string(rows.begin) + ", " + std::to_string(rows.end) +
                        ") outside a sequence of " + std::to_string(seq_len));
  SequenceRows out;
  if (rows.rows() == 0) return out;
  std::vector<int32_t> window = read(first + rows.begin, first + rows.end + 1);
  out.inputs.assign(window.begin(), window.end() - 1);
  out.targets.assign(window.begin() + 1, window.end());
  return out;
}

std::vector<int64_t> TokenReader::document_offsets() const {
  const h5::Dataset offsets = file_.open_dataset("doc_offsets");
  std::vector<int64_t> out(static_cast<size_t>(offsets.shape()[0]));
  h5::Dataspace all = offsets.file_space();
  offsets.read(H5T_NATIVE_INT64, all, all, out.data(), h5::Transfer::independent);
  return out;
}

}  // namespace longctx::io
