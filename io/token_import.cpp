// `longctx data import`: text files as byte tokens, or token ids a tokenizer wrote (raw little-endian
// integers or NumPy .npy), into one token dataset (see token_dataset.hpp), one document per input.
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <limits>
#include <optional>
#include <type_traits>

#include "io/atomic_output.hpp"
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

// The inputs, looked at before anything is written: bytes of the regular files (for progress and the
// chunk size) and whether any is a stream, whose size is known only at its end.
struct InputPlan {
  int64_t bytes = 0;
  bool streams = false;
};

InputPlan plan_inputs(const std::vector<std::string>& files, const std::string& option, const std::string& out_path) {
  if (files.empty()) throw UsageError("data import: no input files");
  InputPlan plan;
  int standard_input = 0;
  for (const std::string& file : files) {
    if (file == "-") {
      if (++standard_input > 1) throw UsageError("--" + option + ": '-' (standard input) is given more than once");
      plan.streams = true;
      continue;
    }
    check_readable(file);
    struct stat info {};
    if (::stat(file.c_str(), &info) != 0) throw InputError(file + ": no such file");
    if (S_ISDIR(info.st_mode))
      throw InputError(file + ": is a directory; give the files in it (--" + option + " " + file + "/*, for one)");
    if (S_ISFIFO(info.st_mode)) {
      plan.streams = true;
      continue;
    }
    if (!S_ISREG(info.st_mode))
      throw InputError(file + ": is " + non_regular_kind(file) + "; give a regular file, a pipe or - (standard input)");
    if (same_file(file, out_path) || same_file(file, out_path + ".tmp"))
      throw UsageError("--" + option + " " + file + " is --out " + out_path + " (or its .tmp); write the dataset elsewhere");
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

// The dataset being written: /tokens grows as inputs are read; finish() adds /doc_offsets and the
// attributes and renames the temporary into place.
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
    written_ += count;
  }
  void end_document() { offsets_.push_back(written_); }
  int64_t written() const { return written_; }
  int64_t documents() const { return static_cast<int64_t>(offsets_.size()) - 1; }
  void finish(int64_t vocab) {
    h5::File& out = output_.file();
    h5::Dataset offsets = out.create_dataset("doc_offsets", h5::ElementType::i64, {static_cast<int64_t>(offsets_.size())});
    h5::Dataspace all = offsets.file_space();
    offsets.write(H5T_NATIVE_INT64, all, all, offsets_.data());
    out.write_attribute("format", std::string(kTokenFormat));
    out.write_attribute("format_version", kTokenFormatVersion);
    out.write_attribute("vocab", vocab);
    out.write_attribute("token_count", written_);
    out.write_attribute("document_count", documents());
    output_.commit();
  }

 private:
  AtomicOutput output_;
  h5::ElementType type_;
  h5::Dataset tokens_;
  int64_t written_ = 0;
  std::vector<int64_t> offsets_ = {0};
};

// ---- token ids --------------------------------------------------------------------------------------
struct IdType {
  const char* name;
  const char* npy;  // NumPy's descr, little endian
  int bytes;
  bool is_signed;
};

constexpr IdType kIdTypes[] = {{"uint8", "|u1", 1, false},  {"int8", "|i1", 1, true},   {"uint16", "<u2", 2, false},
                               {"int16", "<i2", 2, true},   {"uint32", "<u4", 4, false}, {"int32", "<i4", 4, true},
                               {"uint64", "<u8", 8, false}, {"int64", "<i8", 8, true}};

const IdType* find_id_type(const std::string& name) {
  for (const IdType& type : kIdTypes)
    if (name == type.name) return &type;
  return nullptr;
}

// The header of a .npy file (format versions 1 to 3): its dtype and how many ids it holds.
struct NpyHeader {
  const IdType* type = nullptr;
  int64_t count = 1;
  int64_t bytes = 0;  // of the magic and the header
};

// A value of the header's Python dict literal, e.g. 'descr': '<u2', 'fortran_order': False, 'shape': (10,).
std::string npy_field(const std::string& header, const std::string& key, const std::string& file) {
  const size_t at = header.find("'" + key + "'");
  if (at == std::string::npos) throw InputError(file + ": its .npy header has no '" + key + "': " + header);
  size_t begin = header.find(':', at);
  if (begin == std::string::npos) throw InputError(file + ": damaged .npy header: " + header);
  begin = header.find_first_not_of(' ', begin + 1);
  if (begin == std::string::npos) throw InputError(file + ": damaged .npy header: " + header);
  const char open = header[begin];
  const char close = open == '(' ? ')' : open == '[' ? ']' : open == '\'' || open == '"' ? open : ',';
  const size_t end = header.find(close, begin + 1);
  if (end == std::string::npos) throw InputError(file + ": damaged .npy header: " + header);
  return close == ',' ? header.substr(begin, end - begin) : header.substr(begin, end - begin + 1);
}

// Reads the header that follows the magic (already read) and leaves `in` at the first id.
NpyHeader read_npy_header(std::istream& in, const std::string& file) {
  const std::string name = name_of(file);
  unsigned char version[2] = {0, 0};
  if (read_some(in, reinterpret_cast<char*>(version), 2, file) != 2) throw InputError(name + ": a .npy file cut short in its header");
  if (version[0] < 1 || version[0] > 3)
    throw InputError(name + ": .npy format version " + std::to_string(version[0]) + " (this build reads 1 to 3)");
  const int length_bytes = version[0] == 1 ? 2 : 4;
  unsigned char length[4] = {0, 0, 0, 0};
  if (read_some(in, reinterpret_cast<char*>(length), length_bytes, file) != length_bytes)
    throw InputError(name + ": a .npy file cut short in its header");
  const uint32_t header_bytes = length[0] | length[1] << 8 | length[2] << 16 | uint32_t{length[3]} << 24;
  if (header_bytes > (1u << 20)) throw InputError(name + ": a .npy header of " + std::to_string(header_bytes) + " bytes: damaged?");
  std::string header(header_bytes, '\0');
  if (read_some(in, header.data(), header_bytes, file) != static_cast<int64_t>(header_bytes))
    throw InputError(name + ": a .npy file cut short in its header");
  while (!header.empty() && (header.back() == '\n' || header.back() == ' ')) header.pop_back();

  NpyHeader out;
  out.bytes = static_cast<int64_t>(kNpyMagicBytes) + 2 + length_bytes + header_bytes;
  const std::string descr = npy_field(header, "descr", name);
  if (descr.front() == '[') throw InputError(name + ": a .npy file of records (structured dtype " + descr + "); save the id column alone");
  const std::string code = descr.substr(1, descr.size() - 2);
  for (const IdType& type : kIdTypes)
    if (code == type.npy || (type.bytes == 1 && code == std::string("<") + (type.npy + 1))) out.type = &type;
  if (!out.type) {
    const bool big = !code.empty() && code[0] == '>';
    throw InputError(name + ": dtype " + descr + " in its .npy header: " +
                     (big ? "big-endian ids; save them little-endian (array.astype(array.dtype.newbyteorder('<')))"
                          : "token ids must be integers (" + id_dtype_names() + ")"));
  }
  const std::string shape = npy_field(header, "shape", name);
  int dims = 0;
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
      throw InputError(name + ": damaged .npy shape " + shape);
    if (extent > 0 && out.count > std::numeric_limits<int64_t>::max() / extent) throw InputError(name + ": .npy shape " + shape + " is too large");
    out.count *= extent;
    ++dims;
  }
  // Of several axes, C order is the rows one after another (packed sequences, say); Fortran order is not.
  if (dims > 1 && npy_field(header, "fortran_order", name) != "False")
    throw InputError(name + ": a .npy array of shape " + shape + " in Fortran order; save it in C order (numpy.ascontiguousarray)");
  return out;
}

// Ids of `type` -> storage values, each checked against [0, limit).
template <class In, class Out>
void convert_ids(const char* bytes, int64_t count, int64_t limit, Out* out, int64_t& largest, int64_t first_index,
                 const std::string& file, const std::string& limit_name) {
  for (int64_t i = 0; i < count; ++i) {
    In value;
    std::memcpy(&value, bytes + i * static_cast<int64_t>(sizeof(In)), sizeof(In));
    const bool negative = std::is_signed<In>::value && value < 0;
    if (negative || static_cast<uint64_t>(value) >= static_cast<uint64_t>(limit)) {
      const std::string shown = negative ? std::to_string(static_cast<int64_t>(value)) : std::to_string(static_cast<uint64_t>(value));
      throw InputError(name_of(file) + ": id " + shown + " at index " + std::to_string(first_index + i) +
                       " (from 0) is outside [0, " + std::to_string(limit) + "): " + limit_name);
    }
    out[i] = static_cast<Out>(value);
    largest = std::max<int64_t>(largest, static_cast<int64_t>(value));
  }
}

template <class Out>
void convert(const IdType& type, const char* bytes, int64_t count, int64_t limit, Out* out, int64_t& largest,
             int64_t first_index, const std::string& file, const std::string& limit_name) {
  const auto go = [&](auto tag) {
    convert_ids<decltype(tag)>(bytes, count, limit, out, largest, first_index, file, limit_name);
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

// The storage of ids below `limit`: the smallest of uint8, uint16 and int32 that holds them.
h5::ElementType storage_for(int64_t limit) {
  return limit <= 256 ? h5::ElementType::u8 : limit <= 65536 ? h5::ElementType::u16 : h5::ElementType::i32;
}
int64_t storage_limit(h5::ElementType type) {
  return type == h5::ElementType::u8 ? 256 : type == h5::ElementType::u16 ? 65536 : kMaxVocab;
}
int64_t storage_bytes(h5::ElementType type) {
  return type == h5::ElementType::u8 ? 1 : type == h5::ElementType::u16 ? 2 : 4;
}
int64_t type_limit(const IdType& type) {
  return type.bytes >= 4 ? kMaxVocab : int64_t{1} << (8 * type.bytes - (type.is_signed ? 1 : 0));
}

// What one input holds, looked at before the import writes anything (a regular file; a stream is
// looked at as it is read): a .npy header, or raw ids of --ids-dtype.
struct IdInput {
  const IdType* type = nullptr;
  int64_t count = -1;  // ids it holds; -1: a stream, not known yet
};

IdInput look_at_ids(const std::string& file, const IdType* raw_type) {
  std::ifstream in = open_input(file);
  char magic[kNpyMagicBytes];
  const int64_t got = read_some(in, magic, kNpyMagicBytes, file);
  IdInput input;
  if (got == static_cast<int64_t>(kNpyMagicBytes) && std::memcmp(magic, kNpyMagic, kNpyMagicBytes) == 0) {
    const NpyHeader header = read_npy_header(in, file);
    const int64_t start = static_cast<int64_t>(in.tellg());
    in.seekg(0, std::ios::end);
    const int64_t data_bytes = static_cast<int64_t>(in.tellg()) - start;
    if (data_bytes != header.count * header.type->bytes)
      throw InputError(file + ": its .npy header says " + std::to_string(header.count) + " " + header.type->name + " ids (" +
                       std::to_string(header.count * header.type->bytes) + " bytes) but " + std::to_string(data_bytes) +
                       " bytes follow it (cut short?)");
    input.type = header.type;
    input.count = header.count;
    return input;
  }
  if (!raw_type)
    throw UsageError(file + ": not a .npy file; raw token ids need --ids-dtype (" + id_dtype_names() +
                     ", little endian) to be read");
  struct stat info {};
  ::stat(file.c_str(), &info);
  const int64_t bytes = static_cast<int64_t>(info.st_size);
  if (bytes % raw_type->bytes != 0)
    throw InputError(file + ": holds " + std::to_string(bytes) + " bytes, not a whole number of " + raw_type->name + " ids (" +
                     std::to_string(raw_type->bytes) + " bytes each): another --ids-dtype, or cut short?");
  input.type = raw_type;
  input.count = bytes / raw_type->bytes;
  return input;
}

}  // namespace

std::string id_dtype_names() {
  std::string names;
  for (const IdType& type : kIdTypes) names += (names.empty() ? "" : "|") + std::string(type.name);
  return names;
}

bool is_id_dtype(const std::string& name) { return find_id_type(name) != nullptr; }

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
    writer.end_document();
  }
  if (writer.written() == 0) throw InputError("data import: the --text inputs held no bytes: nothing to train on");
  TokenImportStats stats;
  stats.documents = writer.documents();
  stats.tokens = writer.written();
  stats.vocab = 256;
  stats.storage = "uint8";
  writer.finish(stats.vocab);
  return stats;
}

TokenImportStats import_token_ids(const std::vector<std::string>& files, const IdImportOptions& options,
                                  const std::string& out_path) {
  const IdType* raw_type = nullptr;
  if (!options.dtype.empty() && !(raw_type = find_id_type(options.dtype)))
    throw UsageError("--ids-dtype " + options.dtype + ": one of " + id_dtype_names(), "ids-dtype");
  if (options.vocab < 0 || options.vocab > kMaxVocab)
    throw UsageError("--vocab " + std::to_string(options.vocab) + ": it must be in [1, 2^31] (ids are read as int32)", "vocab");
  check_hdf5_output_path("out", out_path, kTokenFormat);
  const InputPlan plan = plan_inputs(files, "ids", out_path);

  // Every regular input is looked at first (a .npy header, a raw file's length), so that a mistake is
  // refused before anything is written; the storage holds the widest input's ids (or --vocab's).
  int64_t limit = 0, known_ids = 0;
  for (const std::string& file : files) {
    struct stat info {};
    const bool stream = file == "-" || (::stat(file.c_str(), &info) == 0 && S_ISFIFO(info.st_mode));
    const IdInput input = stream ? IdInput{raw_type, -1} : look_at_ids(file, raw_type);
    // A stream's type is known when it is read: --ids-dtype's, else the widest storage.
    limit = std::max(limit, input.type ? type_limit(*input.type) : kMaxVocab);
    known_ids += std::max<int64_t>(input.count, 0);
  }
  if (options.vocab > 0) limit = options.vocab;
  if (known_ids == 0 && !plan.streams) throw InputError("data import: the --ids files hold no ids: nothing to train on");
  const h5::ElementType storage = storage_for(limit);
  // Why ids must lie below `limit`, for the message that refuses one.
  const std::string limit_name = options.vocab > 0            ? "--vocab is " + std::to_string(options.vocab)
                                 : storage == h5::ElementType::i32 ? std::string("ids are read as int32")
                                                                   : "what the inputs' dtypes hold (give --vocab)";
  const int64_t chunk_ids = (int64_t{1} << 20) / storage_bytes(storage);
  TokenWriter writer(out_path, storage, plan.streams ? chunk_ids : std::min(known_ids, chunk_ids));

  std::vector<char> buffer(size_t{16} << 20);
  std::vector<char> converted(buffer.size() * static_cast<size_t>(storage_bytes(storage)));  // 1-byte ids at most
  int64_t largest = -1;
  log::ByteProgress progress("data import", plan.streams ? log::ByteProgress::kUnknownTotal : static_cast<uint64_t>(plan.bytes));
  uint64_t bytes_read = 0;
  for (const std::string& file : files) {
    std::ifstream in = open_input(file);
    // The first bytes tell a .npy file from raw ids (read, not seeked back: a pipe cannot).
    char magic[kNpyMagicBytes];
    int64_t pending = read_some(in, magic, kNpyMagicBytes, file);
    bytes_read += static_cast<uint64_t>(pending);
    const IdType* type = raw_type;
    int64_t expected = -1;
    if (pending == static_cast<int64_t>(kNpyMagicBytes) && std::memcmp(magic, kNpyMagic, kNpyMagicBytes) == 0) {
      const NpyHeader header = read_npy_header(in, file);
      type = header.type;
      expected = header.count;
      bytes_read += static_cast<uint64_t>(header.bytes) - kNpyMagicBytes;
      pending = 0;
    } else {
      if (!type)
        throw UsageError(name_of(file) + ": not a .npy file; raw token ids need --ids-dtype (" + id_dtype_names() +
                         ", little endian) to be read");
      std::memcpy(buffer.data(), magic, static_cast<size_t>(pending));
      const std::string kind = binary_kind(std::string(magic, static_cast<size_t>(pending)));
      if (!kind.empty())
        log::warn(name_of(file) + " looks like " + kind + ": its bytes are read as " + type->name + " ids as they are");
    }
    if (type_limit(*type) > storage_limit(storage) && options.vocab == 0 && limit < kMaxVocab)
      log::warn(name_of(file) + ": its ids are " + type->name + "; each is checked against " + limit_name);
    const int64_t size = type->bytes;
    int64_t ids = 0;
    for (;;) {
      const int64_t got = read_some(in, buffer.data() + pending, static_cast<int64_t>(buffer.size()) - pending, file);
      bytes_read += static_cast<uint64_t>(got);
      const int64_t have = pending + got;
      const int64_t whole = have / size;
      if (whole > 0) {
        switch (storage) {
          case h5::ElementType::u8:
            convert(*type, buffer.data(), whole, limit, reinterpret_cast<uint8_t*>(converted.data()), largest, ids, file, limit_name);
            break;
          case h5::ElementType::u16:
            convert(*type, buffer.data(), whole, limit, reinterpret_cast<uint16_t*>(converted.data()), largest, ids, file, limit_name);
            break;
          default:
            convert(*type, buffer.data(), whole, limit, reinterpret_cast<int32_t*>(converted.data()), largest, ids, file, limit_name);
        }
        writer.append(converted.data(), whole);
        ids += whole;
      }
      pending = have - whole * size;
      std::memmove(buffer.data(), buffer.data() + whole * size, static_cast<size_t>(pending));
      progress.update(bytes_read);
      if (got == 0) break;
    }
    if (pending != 0)
      throw InputError(name_of(file) + ": ends in " + std::to_string(pending) + " byte(s) of a " + type->name + " id (" +
                       std::to_string(size) + " bytes each): another --ids-dtype, or cut short?");
    if (expected >= 0 && ids != expected)
      throw InputError(name_of(file) + ": its .npy header says " + std::to_string(expected) + " ids but it holds " +
                       std::to_string(ids) + " (cut short?)");
    writer.end_document();
  }
  if (writer.written() == 0) throw InputError("data import: the --ids inputs held no ids: nothing to train on");
  TokenImportStats stats;
  stats.documents = writer.documents();
  stats.tokens = writer.written();
  stats.largest_id = largest;
  stats.vocab = options.vocab > 0 ? options.vocab : largest + 1;
  stats.storage = h5::to_string(storage);
  writer.finish(stats.vocab);
  return stats;
}

}  // namespace longctx::io
