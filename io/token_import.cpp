// `longctx data import`: text files as byte tokens, or token ids a tokenizer wrote (raw little-endian
// integers or NumPy .npy), into one token dataset (see token_dataset.hpp), one document per input.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <limits>
#include <memory>
#include <optional>
#include <type_traits>

#include "io/atomic_output.hpp"
#include "io/digest.hpp"
#include "io/durable.hpp"
#include "io/token_dataset.hpp"
#include "runtime/core/log.hpp"

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "token ids are read as little-endian integers");

namespace longctx::io {
namespace {

constexpr char kNpyMagic[] = "\x93NUMPY";
constexpr size_t kNpyMagicBytes = 6;
constexpr int64_t kMaxVocab = int64_t{1} << 31;  // ids are int32 when read

std::string name_of(const std::string& file) { return file == "-" ? std::string("standard input") : file; }

// What a file that starts with `head` is, where it is a known binary container; "" otherwise.
std::string binary_kind(const std::string& head) {
  static const std::pair<const char*, const char*> kSignatures[] = {
      {"\x89HDF\r\n\x1a\n", "an HDF5 file"}, {kNpyMagic, "a NumPy .npy file"}, {"\x1f\x8b", "a gzip file"},
      {"PK\x03\x04", "a zip file"}, {"BZh", "a bzip2 file"}, {"\xfd" "7zXZ", "an xz file"},
      {"\x28\xb5\x2f\xfd", "a zstd file"}, {"\x89PNG", "a PNG image"}, {"\x7f" "ELF", "an executable"},
      {"%PDF-", "a PDF"}};
  for (const auto& [signature, kind] : kSignatures)
    if (head.compare(0, std::strlen(signature), signature) == 0) return kind;
  return "";
}

// PREFIX + `extension` (lower case) for PREFIX.xxx, in the case of the name given (B.IDX -> B.BIN).
std::string beside(const std::string& path, const std::string& extension) {
  std::string out = path.substr(0, path.size() - extension.size());
  const bool upper = std::isupper(static_cast<unsigned char>(path.back()));
  for (const char c : extension) out += upper ? static_cast<char>(std::toupper(static_cast<unsigned char>(c))) : c;
  return out;
}

// Whether `text` ends in `end` (lower case), in any case: B.IDX is an index too.
bool ends_with(const std::string& text, const std::string& end) {
  if (text.size() <= end.size()) return false;
  for (size_t i = 0; i < end.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(text[text.size() - end.size() + i])) != end[i]) return false;
  return true;
}

// What plan_inputs found.
struct InputPlan {
  int64_t bytes = 0;
  bool streams = false;      // any input a stream
  std::vector<bool> stream;  // which, by input
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
  const bool has_stdin = std::find(files.begin(), files.end(), "-") != files.end() && ::fstat(0, &stdin_info) == 0;
  std::vector<std::pair<std::string, struct stat>> streams;
  for (size_t f = 0; f < files.size(); ++f) {
    const std::string& file = files[f];
    if (file == "-") {
      if (++standard_input > 1) throw UsageError("--" + option + ": '-' (standard input) is given more than once");
      plan.streams = plan.stream[f] = true;
      continue;
    }
    check_readable(file);
    struct stat info {};
    if (::stat(file.c_str(), &info) != 0) {
      if (option == "ids" && ::stat((file + ".idx").c_str(), &info) == 0)
        throw InputError(file + ": no such file; " + file + ".idx is there: a Megatron dataset is given by its index (--ids " +
                         file + ".idx)");
      throw InputError(file + ": no such file");
    }
    if (has_stdin && info.st_dev == stdin_info.st_dev && info.st_ino == stdin_info.st_ino)
      throw UsageError("--" + option + " " + file + " is standard input, which '-' reads already");
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

std::ifstream open_input(const std::string& file) {
  std::ifstream in(file == "-" ? "/dev/stdin" : file, std::ios::binary);
  if (!in) throw InputError(name_of(file) + ": cannot be read (" + std::strerror(errno) + ")");
  return in;
}

// Reads up to `count` bytes; fewer only at the end of the input.
int64_t read_some(std::istream& in, char* into, int64_t count, const std::string& file) {
  in.read(into, static_cast<std::streamsize>(count));
  if (in.bad()) throw InputError(name_of(file) + ": read error");
  return static_cast<int64_t>(in.gcount());
}

void warn_empty_document(const std::string& file, const std::string& what) {
  log::warn(name_of(file) + " holds no " + what + ": it is an empty document (doc_offsets lists it)");
}

// The dataset being written: /tokens grows as inputs are read; finish() adds /doc_offsets and the
// attributes (/tokens' digest among them, summed as the tokens are appended) and renames the temporary
// into place. Both datasets carry Fletcher32 checksums.
class TokenWriter {
 public:
  TokenWriter(const std::string& out_path, h5::ElementType type, int64_t chunk)
      : output_(out_path), type_(type) {
    h5::DatasetOptions options;
    options.chunk = {std::max<int64_t>(chunk, 1)};
    options.fletcher32 = true;
    options.max_dims = {-1};
    tokens_ = output_.file().create_dataset("tokens", type, {0}, options);
  }
  void append(const void* values, int64_t count) {
    if (count == 0) return;
    tokens_.set_extent({written_ + count});
    h5::Dataspace space = tokens_.file_space();
    space.select_box({written_}, {count});
    tokens_.write(h5::native_type(type_), h5::Dataspace::simple({count}), space, values);
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
    h5::File& out = output_.file();
    const int64_t count = static_cast<int64_t>(offsets_.size());
    h5::DatasetOptions options;  // a flipped offset would move document boundaries unseen
    options.chunk = {std::min<int64_t>(count, int64_t{1} << 17)};
    options.fletcher32 = true;
    h5::Dataset offsets = out.create_dataset("doc_offsets", h5::ElementType::i64, {count}, options);
    h5::Dataspace all = offsets.file_space();
    offsets.write(H5T_NATIVE_INT64, all, all, offsets_.data());
    out.write_attribute("format", std::string(kTokenFormat));
    out.write_attribute("format_version", kTokenFormatVersion);
    out.write_attribute("vocab", vocab);
    out.write_attribute("token_count", written_);
    out.write_attribute("document_count", documents());
    tokens_.write_attribute(kDigestAttribute, digest_attribute_value(digest_));
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
  AtomicOutput output_;
  h5::ElementType type_;
  h5::Dataset tokens_;
  int64_t written_ = 0;
  uint64_t digest_ = 0;
  std::vector<int64_t> offsets_ = {0};
};

// ---- token ids --------------------------------------------------------------------------------------
struct IdType {
  const char* name;
  char kind;  // NumPy's: 'u' or 'i'
  int bytes;
  bool is_signed;
};

constexpr IdType kIdTypes[] = {{"uint8", 'u', 1, false},  {"int8", 'i', 1, true},   {"uint16", 'u', 2, false},
                               {"int16", 'i', 2, true},   {"uint32", 'u', 4, false}, {"int32", 'i', 4, true},
                               {"uint64", 'u', 8, false}, {"int64", 'i', 8, true}};

const IdType* find_id_type(const std::string& name) {
  for (const IdType& type : kIdTypes)
    if (name == type.name) return &type;
  return nullptr;
}

std::string id_dtype_names() {  // "uint8|int8|..."
  std::string names;
  for (const IdType& type : kIdTypes) names += (names.empty() ? "" : "|") + std::string(type.name);
  return names;
}


// A value of the header's Python dict literal, e.g. 'descr': '<u2', 'fortran_order': False, 'shape': (10,).
std::string npy_field(const std::string& header, const std::string& key, const std::string& file) {
  size_t at = header.find("'" + key + "'");
  if (at == std::string::npos) at = header.find("\"" + key + "\"");
  if (at == std::string::npos) throw InputError(file + ": its .npy header has no '" + key + "': " + header);
  size_t begin = header.find(':', at);
  if (begin != std::string::npos) begin = header.find_first_not_of(' ', begin + 1);
  if (begin == std::string::npos) throw InputError(file + ": damaged .npy header: " + header);
  const char open = header[begin];
  const char close = open == '(' ? ')' : open == '[' ? ']' : open == '\'' || open == '"' ? open : ',';
  const size_t end = header.find(close, begin + 1);
  if (end == std::string::npos) throw InputError(file + ": damaged .npy header: " + header);
  return close == ',' ? header.substr(begin, end - begin) : header.substr(begin, end - begin + 1);
}

// Little-endian ids of `type` -> int64 (a uint64 past int64's range is refused here, by its value).
void decode_ids(const IdType& type, const char* bytes, int64_t count, int64_t* out, int64_t first_index,
                const std::string& name) {
  const auto go = [&](auto tag) {
    using T = decltype(tag);
    for (int64_t i = 0; i < count; ++i) {
      T value;
      std::memcpy(&value, bytes + i * static_cast<int64_t>(sizeof(T)), sizeof(T));
      if (!std::is_signed<T>::value && static_cast<uint64_t>(value) > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
        throw InputError(name + ": id " + std::to_string(static_cast<uint64_t>(value)) + " at index " +
                         std::to_string(first_index + i) + " (from 0) is past any vocabulary (ids are read as int32)");
      out[i] = static_cast<int64_t>(value);
    }
  };
  switch (type.bytes * (type.is_signed ? -1 : 1)) {
    case 1: go(uint8_t{}); break;
    case -1: go(int8_t{}); break;
    case 2: go(uint16_t{}); break;
    case -2: go(int16_t{}); break;
    case 4: go(uint32_t{}); break;
    case -4: go(int32_t{}); break;
    case 8: go(uint64_t{}); break;
    default: go(int64_t{}); break;
  }
}

constexpr int64_t kReadBytes = int64_t{4} << 20;  // one read of ids

using IdVisit = std::function<void(const int64_t* ids, int64_t count, int64_t first_index)>;
using ByteCount = std::function<void(uint64_t bytes)>;

// One --ids input: a .npy file, raw ids, or a Megatron index (.idx) and its .bin.
class IdSource {
 public:
  virtual ~IdSource() = default;
  virtual const IdType& type() const = 0;
  // Of a regular file, before any id is read: its size (and index) checked; returns how many ids it holds.
  virtual int64_t check_size() = 0;
  // Calls visit for consecutive runs of the ids (index = the first's, counted through the input), to its
  // end, progress(bytes) as bytes are read, and document_end() at the end of each document it holds (a
  // .npy or raw file is one; a Megatron index lists them, maybe none).
  virtual void read_all(const IdVisit& visit, const ByteCount& progress, const std::function<void()>& document_end) = 0;
};

// An input of ids as it is read: a .npy file (magic and header read on opening) or raw ids of
// --ids-dtype (the first bytes, read to tell the two apart, kept as ids: a pipe cannot seek back).
class IdInput : public IdSource {
 public:
  IdInput(const std::string& file, const IdType* raw_type) : file_(file), name_(name_of(file)), in_(open_input(file)) {
    char magic[kNpyMagicBytes];
    const int64_t got = read_some(in_, magic, kNpyMagicBytes, file);
    const bool named_npy = file.size() > 4 && file.compare(file.size() - 4, 4, ".npy") == 0;
    if (got == static_cast<int64_t>(kNpyMagicBytes) && std::memcmp(magic, kNpyMagic, kNpyMagicBytes) == 0) {
      read_header();
      return;
    }
    if (got > 0 && std::memcmp(magic, kNpyMagic, static_cast<size_t>(got)) == 0 && got < static_cast<int64_t>(kNpyMagicBytes))
      throw InputError(name_ + ": a .npy file cut short in its magic (" + std::to_string(got) + " bytes)");
    if (got == static_cast<int64_t>(kNpyMagicBytes) && std::memcmp(magic + 1, kNpyMagic + 1, kNpyMagicBytes - 1) == 0)
      throw InputError(name_ + ": starts as a .npy file (NUMPY) but its first byte is not NumPy's \\x93: damaged");
    if (named_npy)
      throw InputError(name_ + (got == 0 ? ": empty; a .npy file holds at least its header"
                                         : ": named .npy but does not start as a NumPy .npy file does (\\x93NUMPY): damaged, "
                                           "or raw ids under another name"));
    if (got == static_cast<int64_t>(kNpyMagicBytes) && std::memcmp(magic, "MMIDIDX", kNpyMagicBytes) == 0)
      throw InputError(name_ + ": a Megatron index (MMIDIDX), not ids: give it as PREFIX.idx, a regular file with its "
                       "PREFIX.bin beside it");
    head_.assign(magic, static_cast<size_t>(got));
    if (got == 0) {  // empty: no ids, whatever their type
      type_ = raw_type ? raw_type : &kIdTypes[0];
      return;
    }
    if (!raw_type)
      throw UsageError(name_ + ": not a .npy file; raw token ids need --ids-dtype (" + id_dtype_names() +
                       ", little endian) to be read");
    type_ = raw_type;
    // Two bytes more to tell what it is: HDF5's signature is 8 bytes long (a token dataset given as ids).
    char more[2];
    head_.append(more, static_cast<size_t>(read_some(in_, more, sizeof more, file)));
    const std::string kind = binary_kind(head_);
    if (!kind.empty())  // once: the file is read twice without --vocab
      log::warn_once(name_ + " looks like " + kind + ": its bytes are read as " + type_->name + " ids as they are");
  }

  const IdType& type() const override { return *type_; }
  bool npy() const { return expected_ >= 0; }
  // A regular file's whole size checked before any id is read: a whole number of ids, or what the header says.
  // Returns how many ids it holds.
  int64_t check_size() override {
    struct stat info {};
    if (::stat(file_.c_str(), &info) != 0) throw InputError(name_ + ": no such file");
    const int64_t data_bytes = static_cast<int64_t>(info.st_size) - header_bytes_;
    check_length(data_bytes);
    return data_bytes / type_->bytes;
  }

  void read_all(const IdVisit& visit, const ByteCount& progress, const std::function<void()>& document_end) override {
    constexpr int64_t kBufferBytes = kReadBytes;
    std::vector<char> buffer(static_cast<size_t>(kBufferBytes));
    std::vector<int64_t> ids(static_cast<size_t>(kBufferBytes / type_->bytes));
    int64_t pending = static_cast<int64_t>(head_.size()), index = 0;
    std::memcpy(buffer.data(), head_.data(), head_.size());
    progress(static_cast<uint64_t>(header_bytes_ + pending));
    for (;;) {
      const int64_t got = read_some(in_, buffer.data() + pending, kBufferBytes - pending, file_);
      const int64_t have = pending + got, whole = have / type_->bytes;
      decode_ids(*type_, buffer.data(), whole, ids.data(), index, name_);
      if (whole > 0) visit(ids.data(), whole, index);
      index += whole;
      pending = have - whole * type_->bytes;
      std::memmove(buffer.data(), buffer.data() + whole * type_->bytes, static_cast<size_t>(pending));
      progress(static_cast<uint64_t>(got));
      if (got == 0) break;
    }
    check_length(index * type_->bytes + pending);
    document_end();
  }

 private:
  void read_header() {
    unsigned char version[2] = {0, 0};
    if (read_some(in_, reinterpret_cast<char*>(version), 2, file_) != 2) throw InputError(name_ + ": a .npy file cut short in its header");
    if (version[0] < 1 || version[0] > 3)
      throw InputError(name_ + ": .npy format version " + std::to_string(version[0]) + " (this build reads 1 to 3)");
    const int length_bytes = version[0] == 1 ? 2 : 4;
    unsigned char length[4] = {0, 0, 0, 0};
    if (read_some(in_, reinterpret_cast<char*>(length), length_bytes, file_) != length_bytes)
      throw InputError(name_ + ": a .npy file cut short in its header");
    const uint32_t header_bytes = length[0] | length[1] << 8 | length[2] << 16 | uint32_t{length[3]} << 24;
    if (header_bytes > (1u << 20)) throw InputError(name_ + ": a .npy header of " + std::to_string(header_bytes) + " bytes: damaged?");
    std::string header(header_bytes, '\0');
    if (read_some(in_, header.data(), header_bytes, file_) != static_cast<int64_t>(header_bytes))
      throw InputError(name_ + ": a .npy file cut short in its header");
    while (!header.empty() && (header.back() == '\n' || header.back() == ' ')) header.pop_back();
    header_bytes_ = static_cast<int64_t>(kNpyMagicBytes) + 2 + length_bytes + header_bytes;

    const std::string descr = npy_field(header, "descr", name_);
    if (descr.front() == '[') throw InputError(name_ + ": a .npy file of records (structured dtype " + descr + "); save the id column alone");
    const std::string code = descr.substr(1, descr.size() - 2);  // '<u2': byte order, kind, bytes
    for (const IdType& type : kIdTypes)
      if (code.size() == 3 && code[1] == type.kind && code[2] == char('0' + type.bytes) &&
          (code[0] == '<' || code[0] == '=' || code[0] == '|' || (type.bytes == 1 && code[0] == '>')))
        type_ = &type;
    if (!type_)
      throw InputError(name_ + ": dtype " + descr + " in its .npy header: " +
                       (code.size() == 3 && code[0] == '>' && (code[1] == 'i' || code[1] == 'u')
                            ? "big-endian ids; save them little-endian (array.astype(array.dtype.newbyteorder('<')))"
                            : "token ids must be integers (" + id_dtype_names() + ")"));
    const std::string shape = npy_field(header, "shape", name_);
    int dims = 0;
    expected_ = 1;
    for (size_t i = 1; i + 1 < shape.size();) {
      const size_t comma = shape.find(',', i);
      const std::string part = shape.substr(i, (comma == std::string::npos ? shape.size() - 1 : comma) - i);
      i = comma == std::string::npos ? shape.size() : comma + 1;
      if (part.find_first_not_of(' ') == std::string::npos) continue;
      size_t used = 0;
      int64_t extent = -1;
      try {
        extent = std::stoll(part, &used);
      } catch (const std::exception&) {
      }
      if (extent < 0 || part.find_first_not_of(' ', used) != std::string::npos)
        throw InputError(name_ + ": damaged .npy shape " + shape);
      if (extent > 0 && expected_ > std::numeric_limits<int64_t>::max() / 8 / extent)
        throw InputError(name_ + ": .npy shape " + shape + " is larger than any file");
      expected_ *= extent;
      ++dims;
    }
    // Of several axes, C order is the rows one after another (packed sequences, say); Fortran order is not.
    if (dims > 1 && npy_field(header, "fortran_order", name_) != "False")
      throw InputError(name_ + ": a .npy array of shape " + shape + " in Fortran order; save it in C order (numpy.ascontiguousarray)");
  }

  void check_length(int64_t data_bytes) const {
    const int64_t size = type_->bytes;
    if (npy()) {
      if (data_bytes != expected_ * size)
        throw InputError(name_ + ": its .npy header says " + std::to_string(expected_) + " " + type_->name + " ids (" +
                         std::to_string(expected_ * size) + " bytes) but " + std::to_string(data_bytes) + " bytes follow it (" +
                         (data_bytes < expected_ * size ? "cut short?)" : "more than its shape holds: appended to?)"));
    } else if (data_bytes % size != 0) {
      throw InputError(name_ + ": holds " + std::to_string(data_bytes) + " bytes, not a whole number of " + type_->name +
                       " ids (" + std::to_string(size) + " bytes each): another --ids-dtype, or cut short?");
    }
  }

  std::string file_, name_;
  std::ifstream in_;
  const IdType* type_ = nullptr;
  int64_t expected_ = -1;     // ids a .npy header announces; -1: raw
  int64_t header_bytes_ = 0;  // of a .npy file: magic and header
  std::string head_;          // raw: the first bytes, already read
};

// A Megatron-LM indexed dataset: PREFIX.idx lists the sequences (length, byte offset in PREFIX.bin) and
// the documents (ranges of sequences); PREFIX.bin holds the ids. Layout of the index (Megatron's
// _IndexWriter): "MMIDIDX\0\0", u64 version 1, u8 dtype code, u64 sequence count S, u64 document index
// count D, int32 lengths[S], int64 byte offsets[S], int64 document indices[D] (0 first, S last), and
// for a multimodal dataset int8 modes[S]. All little endian. Each of its documents is one of ours.
class MegatronInput : public IdSource {
 public:
  explicit MegatronInput(const std::string& idx) : idx_(idx), bin_(beside(idx, ".bin")) {
    check_readable(idx_);
    struct stat info {};
    if (::stat(idx_.c_str(), &info) != 0) throw InputError(idx_ + ": no such file");
    if (!S_ISREG(info.st_mode))  // (opening a FIFO would wait for a writer)
      throw InputError(idx_ + ": is " + non_regular_kind(idx_) + "; a Megatron index is read from a regular file");
    const int fd = ::open(idx_.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0 || ::fstat(fd, &info) != 0) {
      if (fd >= 0) ::close(fd);
      throw InputError(idx_ + ": cannot be read (" + std::strerror(errno) + ")");
    }
    size_ = static_cast<size_t>(info.st_size);
    if (size_ > 0) {
      void* map = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
      ::close(fd);
      if (map == MAP_FAILED) throw InputError(idx_ + ": cannot map it (" + std::strerror(errno) + ")");
      mapping_.data = map;
      mapping_.size = size_;
      map_ = static_cast<const char*>(map);
    } else {
      ::close(fd);
    }
    constexpr char kMagic[] = "MMIDIDX\0\0";
    constexpr size_t kHead = 9 + 8 + 1 + 8 + 8;
    const bool magic = size_ >= 9 ? std::memcmp(map_, kMagic, 9) == 0 : size_ > 0 && std::memcmp(map_, kMagic, size_) == 0;
    if (!magic)
      throw InputError(idx_ + ": not a Megatron index (" + (size_ < 9 ? "shorter than its header" : "no MMIDIDX header") +
                       "); named .idx, an --ids input is read as one");
    if (size_ < kHead)
      throw InputError(idx_ + ": a Megatron index cut short: " + std::to_string(size_) + " bytes, and its header alone takes " +
                       std::to_string(kHead));
    if (const uint64_t version = u64(9); version != 1)
      throw InputError(idx_ + ": Megatron index version " + std::to_string(version) + " (this build reads 1)");
    static const char* const kCodes[] = {nullptr, "uint8", "int8", "int16", "int32", "int64", nullptr, nullptr, "uint16"};
    const int code = static_cast<unsigned char>(map_[17]);
    if (code == 6 || code == 7)  // float64 / float32 (their order differs between Megatron versions)
      throw InputError(idx_ + ": dtype code " + std::to_string(code) + ", a float type: token ids must be integers");
    if (code < 1 || code > 8) throw InputError(idx_ + ": unknown dtype code " + std::to_string(code) + " in its header");
    type_ = find_id_type(kCodes[code]);
    sequences_ = u64(18);
    documents_ = u64(26);
    if (sequences_ > (uint64_t{1} << 40) || documents_ > (uint64_t{1} << 40) || documents_ < 1)
      throw InputError(idx_ + ": damaged header (" + std::to_string(sequences_) + " sequences, " + std::to_string(documents_) +
                       " document indices)");
    lengths_at_ = kHead;
    offsets_at_ = lengths_at_ + 4 * sequences_;
    documents_at_ = offsets_at_ + 8 * sequences_;
    const uint64_t need = documents_at_ + 8 * documents_;
    if (size_ != need && size_ != need + sequences_)  // + the modes of a multimodal dataset
      throw InputError(idx_ + ": holds " + std::to_string(size_) + " bytes, but its header's " + std::to_string(sequences_) +
                       " sequences and " + std::to_string(documents_) + " document indices need " + std::to_string(need) +
                       " (cut short, or damaged)");
    check_readable(bin_);
    struct stat bin {};
    if (::stat(bin_.c_str(), &bin) != 0) throw InputError(bin_ + ": no such file (the data of " + idx_ + ")");
    if (!S_ISREG(bin.st_mode)) throw InputError(bin_ + ": is " + non_regular_kind(bin_) + ", not the data file of " + idx_);
    bin_bytes_ = static_cast<int64_t>(bin.st_size);
  }

  const IdType& type() const override { return *type_; }

  // (Warns once about sequences that are not back to back, and .bin bytes no sequence covers: Megatron's
  // writer makes neither.)
  int64_t check_size() override {
    const int64_t ids = validate();
    int64_t breaks = 0, end = 0;
    for (uint64_t i = 0; i < sequences_; ++i) {
      breaks += offset(i) != end;
      end = offset(i) + length(i) * type_->bytes;
    }
    if (breaks > 0)
      log::warn(idx_ + ": " + std::to_string(breaks) + " of its " + std::to_string(sequences_) +
                " sequences do not start where the one before ends (gaps or overlaps in " + bin_ + "; its writer makes "
                "none): read as the index says");
    if (end < bin_bytes_ && breaks == 0)
      log::warn(bin_ + ": " + std::to_string(bin_bytes_ - end) + " byte(s) past its index's last sequence are not read");
    return ids;
  }

  void read_all(const IdVisit& visit, const ByteCount& progress, const std::function<void()>& document_end) override {
    validate();  // (check_size ran already on this file; cheap next to the reads)
    std::ifstream in = open_input(bin_);
    std::vector<char> buffer(static_cast<size_t>(kReadBytes));
    std::vector<int64_t> ids(static_cast<size_t>(kReadBytes / type_->bytes));
    int64_t position = 0, index = 0;
    const int64_t per_read = kReadBytes / type_->bytes;
    for (uint64_t d = 0; d + 1 < documents_; ++d) {
      for (int64_t s = document(d); s < document(d + 1); ++s) {
        const int64_t offset = this->offset(static_cast<uint64_t>(s));
        if (offset != position) {  // sequences are usually back to back: a seek only where they are not
          in.clear();
          in.seekg(offset);
          position = offset;
        }
        for (int64_t left = length(static_cast<uint64_t>(s)); left > 0;) {
          const int64_t count = std::min(left, per_read), bytes = count * type_->bytes;
          if (read_some(in, buffer.data(), bytes, bin_) != bytes)
            throw InputError(bin_ + ": ends before sequence " + std::to_string(s) + " of " + idx_ + " does (it changed?)");
          decode_ids(*type_, buffer.data(), count, ids.data(), index, bin_);
          visit(ids.data(), count, index);
          index += count;
          left -= count;
          position += bytes;
          progress(static_cast<uint64_t>(bytes));
        }
      }
      document_end();
    }
  }

 private:
  // The document indices and each sequence against the .bin; returns how many ids the sequences hold.
  int64_t validate() const {
    for (uint64_t d = 0; d < documents_; ++d) {
      const int64_t at = document(d), previous = d == 0 ? 0 : document(d - 1);
      if ((d == 0 && at != 0) || at < previous || at > static_cast<int64_t>(sequences_) ||
          (d + 1 == documents_ && at != static_cast<int64_t>(sequences_)))
        throw InputError(idx_ + ": document index " + std::to_string(d) + " = " + std::to_string(at) +
                         ": they must rise from 0 to the sequence count " + std::to_string(sequences_));
    }
    int64_t ids = 0;
    for (uint64_t i = 0; i < sequences_; ++i) {
      const int64_t length = this->length(i), offset = this->offset(i);
      if (length < 0 || offset < 0 || offset > bin_bytes_ || length > (bin_bytes_ - offset) / type_->bytes)
        throw InputError(idx_ + ": sequence " + std::to_string(i) + " (" + std::to_string(length) + " ids at byte " +
                         std::to_string(offset) + ") lies outside " + bin_ + " (" + std::to_string(bin_bytes_) + " bytes)");
      if (offset % type_->bytes != 0)
        throw InputError(idx_ + ": sequence " + std::to_string(i) + " starts at byte " + std::to_string(offset) +
                         ", not at a whole " + type_->name + " id: a damaged index");
      ids += length;
    }
    return ids;
  }

  template <class T>
  T at(uint64_t byte) const {
    T value;
    std::memcpy(&value, map_ + byte, sizeof(T));
    return value;
  }
  uint64_t u64(uint64_t byte) const { return at<uint64_t>(byte); }
  int64_t length(uint64_t i) const { return at<int32_t>(lengths_at_ + 4 * i); }
  int64_t offset(uint64_t i) const { return at<int64_t>(offsets_at_ + 8 * i); }
  int64_t document(uint64_t i) const { return at<int64_t>(documents_at_ + 8 * i); }

  // The index mapped; unmapped also when the constructor refuses the file.
  struct Mapping {
    void* data = nullptr;
    size_t size = 0;
    Mapping() = default;
    Mapping(const Mapping&) = delete;
    Mapping& operator=(const Mapping&) = delete;
    ~Mapping() {
      if (data) ::munmap(data, size);
    }
  };

  std::string idx_, bin_;
  Mapping mapping_;
  const char* map_ = nullptr;
  size_t size_ = 0;
  const IdType* type_ = nullptr;
  uint64_t sequences_ = 0, documents_ = 0;
  uint64_t lengths_at_ = 0, offsets_at_ = 0, documents_at_ = 0;
  int64_t bin_bytes_ = 0;
};

// The dtype the Megatron index beside PREFIX.bin says (nullptr: none there, or not one).
const IdType* megatron_dtype_beside(const std::string& bin) {
  if (!ends_with(bin, ".bin")) return nullptr;
  std::ifstream idx(beside(bin, ".idx"), std::ios::binary);
  char head[18];
  if (!idx.read(head, sizeof head) || std::memcmp(head, "MMIDIDX\0\0", 9) != 0) return nullptr;
  static const char* const kCodes[] = {nullptr, "uint8", "int8", "int16", "int32", "int64", nullptr, nullptr, "uint16"};
  const int code = static_cast<unsigned char>(head[17]);
  return code >= 1 && code <= 8 && kCodes[code] ? find_id_type(kCodes[code]) : nullptr;
}

// The input `file` is: a Megatron index by its name (.idx), else a .npy file or raw ids by its first bytes.
// A PREFIX.bin read as raw ids with another dtype than its index beside it says is refused (its ids would
// be read wrong: two uint16 ids as one int32), and one without --ids-dtype is pointed to that index.
std::unique_ptr<IdSource> open_ids(const std::string& file, const IdType* raw_type) {
  if (ends_with(file, ".idx")) return std::make_unique<MegatronInput>(file);
  if (const IdType* indexed = megatron_dtype_beside(file)) {
    const std::string index = "give the index (--ids " + beside(file, ".idx") + ", documents kept)";
    if (!raw_type)
      throw UsageError(file + ": raw token ids need --ids-dtype; the Megatron index beside it says " + indexed->name +
                       ": " + index + ", or --ids-dtype " + indexed->name);
    if (indexed != raw_type)
      throw UsageError(file + ": the Megatron index beside it says its ids are " + indexed->name + ", not --ids-dtype " +
                       raw_type->name + ": " + index);
  }
  return std::make_unique<IdInput>(file, raw_type);
}

// Each id in [0, limit), or an InputError naming the file, the id and its index; `reason` says why the
// limit is what it is.
void check_ids(const int64_t* ids, int64_t count, int64_t first_index, int64_t limit, const std::string& file,
               const std::string& reason) {
  for (int64_t i = 0; i < count; ++i) {
    if (ids[i] >= 0 && ids[i] < limit) continue;
    const std::string where = std::to_string(ids[i]) + " at index " + std::to_string(first_index + i) + " (from 0)";
    if (ids[i] < 0) throw InputError(name_of(file) + ": negative id " + where + "; token ids are 0 or more");
    throw InputError(name_of(file) + ": id " + where + " is outside [0, " + std::to_string(limit) + "): " + reason);
  }
}

// The storage of ids below `limit`: the smallest of uint8, uint16 and int32 that holds them.
h5::ElementType storage_for(int64_t limit) {
  return limit <= 256 ? h5::ElementType::u8 : limit <= 65536 ? h5::ElementType::u16 : h5::ElementType::i32;
}
int64_t storage_bytes(h5::ElementType type) {
  return type == h5::ElementType::u8 ? 1 : type == h5::ElementType::u16 ? 2 : 4;
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

TokenImportStats import_text_files(const std::vector<std::string>& files, const std::string& out_path) {
  check_hdf5_output_path("out", out_path, kTokenFormat);
  // Regular files, and streams: a pipe (`--text <(zcat a.gz)`, a FIFO) or `-`, standard input (before:
  // refused as "not a regular file", so a compressed corpus had to be unpacked to disk first).
  const InputPlan plan = plan_inputs(files, "text", out_path);
  if (plan.bytes == 0 && !plan.streams) throw InputError("data import: the --text files hold no bytes: nothing to train on");
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
  return writer.finish(256, "--text inputs held no bytes");
}

TokenImportStats import_token_ids(const std::vector<std::string>& files, const IdImportOptions& options,
                                  const std::string& out_path) {
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
            check_ids(ids, count, first, kMaxVocab, file, "ids are read as int32");
            largest = std::max(largest, *std::max_element(ids, ids + count));
            digests[f] += id_digest(ids, count, known_ids - counts[f] + first);
          },
          [&](uint64_t bytes) { scanning.update(scanned += bytes); }, [] {});
  }
  if (!plan.streams && known_ids == 0) throw InputError("data import: the --ids files hold no ids: nothing to train on");
  // LONGCTX_FAULT_STOP_BETWEEN_READS=1: the process stops itself (SIGSTOP) after the first reading, so that a
  // test can change a file before the second (a change lands there only by timing otherwise).
  if (const char* stop = std::getenv("LONGCTX_FAULT_STOP_BETWEEN_READS"); scan && stop && std::string(stop) == "1")
    ::raise(SIGSTOP);
  const int64_t limit = options.vocab > 0 ? options.vocab : scan ? largest + 1 : type_bound;
  const h5::ElementType storage = storage_for(limit);
  // Why ids must lie below `limit`, for the message that refuses one.
  const std::string reason = options.vocab > 0              ? "--vocab is " + std::to_string(options.vocab)
                             : scan                         ? "past the largest id the first reading found (did the file change?)"
                             : storage == h5::ElementType::i32 ? "ids are read as int32"
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
    const auto* npy = dynamic_cast<const IdInput*>(input.get());
    if (raw_type && raw_type != &input->type() && (!npy || npy->npy()))
      log::warn(name_of(file) + ": its " + (npy ? ".npy header" : "Megatron index") + " says " + input->type().name +
                "; --ids-dtype " + raw_type->name + " is for raw files (the others are read as they say)");
    const int64_t before = writer.written();
    const uint64_t digest_before = writer.digest();
    input->read_all(
        [&](const int64_t* ids, int64_t count, int64_t first) {
          check_ids(ids, count, first, limit, file, reason);
          largest = std::max(largest, *std::max_element(ids, ids + count));
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
    if (writer.written() == before && npy && files.size() > 1) warn_empty_document(file, "ids");
  }
  TokenImportStats stats = writer.finish(options.vocab > 0 ? options.vocab : largest + 1, "--ids inputs held no ids");
  stats.largest_id = largest;
  return stats;
}

}  // namespace longctx::io
