// The inputs of `longctx data import` (token_import_input.hpp): byte streams, .npy files, raw ids and
// Megatron indexed datasets.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <type_traits>

#include "io/token_import_input.hpp"

#include "io/durable.hpp"
#include "runtime/core/error.hpp"
#include "runtime/core/log.hpp"

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "token ids are read as little-endian integers");

namespace longctx::io::import {
namespace {

constexpr char kNpyMagic[] = "\x93NUMPY";
constexpr size_t kNpyMagicBytes = 6;

constexpr IdType kIdTypes[] = {{"uint8", 'u', 1, false},  {"int8", 'i', 1, true},   {"uint16", 'u', 2, false},
                               {"int16", 'i', 2, true},   {"uint32", 'u', 4, false}, {"int32", 'i', 4, true},
                               {"uint64", 'u', 8, false}, {"int64", 'i', 8, true}};

// The header's Python dict literal, e.g. {'descr': '<u2', 'fortran_order': False, 'shape': (10,), }, as
// key -> value text: a quoted string with its quotes, a tuple or list with its brackets, or a bare word (False).
// Any key order and spacing Python takes, keys in either quotes; a key given twice keeps its last value, as
// Python's dict does (before: numpy's own order and spacing alone; `'fortran_order' : False ,` read as not
// False, so a C-order array was refused as Fortran order).
std::map<std::string, std::string> npy_header_fields(const std::string& header, const std::string& file) {
  const auto damaged = [&] { return InputError(file + ": damaged .npy header: " + header); };
  std::map<std::string, std::string> fields;
  const size_t size = header.size();
  size_t i = 0;
  const auto skip_blanks = [&] {
    while (i < size && std::isspace(static_cast<unsigned char>(header[i]))) ++i;
  };
  const auto past_quoted = [&](size_t at) {  // the index after the string literal that starts at `at`
    const size_t end = header.find(header[at], at + 1);
    if (end == std::string::npos) throw damaged();
    return end + 1;
  };
  skip_blanks();
  if (i >= size || header[i] != '{') throw damaged();
  ++i;
  for (;;) {
    skip_blanks();
    if (i < size && header[i] == '}') break;
    if (i >= size || (header[i] != '\'' && header[i] != '"')) throw damaged();
    const size_t key_end = past_quoted(i);
    const std::string key = header.substr(i + 1, key_end - i - 2);
    i = key_end;
    skip_blanks();
    if (i >= size || header[i] != ':') throw damaged();
    ++i;
    skip_blanks();
    if (i >= size) throw damaged();
    const size_t begin = i;
    if (header[i] == '\'' || header[i] == '"') {
      i = past_quoted(i);
    } else if (header[i] == '(' || header[i] == '[') {  // nested: a structured dtype's descr is a list of tuples
      int depth = 0;
      do {
        const char c = header[i];
        if (c == '\'' || c == '"') {
          i = past_quoted(i);
          continue;
        }
        depth += c == '(' || c == '[' ? 1 : c == ')' || c == ']' ? -1 : 0;
        ++i;
      } while (depth > 0 && i < size);
      if (depth != 0) throw damaged();
    } else {
      while (i < size && header[i] != ',' && header[i] != '}' && !std::isspace(static_cast<unsigned char>(header[i]))) ++i;
      if (i == begin) throw damaged();  // no value
    }
    fields[key] = header.substr(begin, i - begin);
    skip_blanks();
    if (i < size && header[i] == ',') {
      ++i;
      continue;
    }
    if (i < size && header[i] == '}') break;
    throw damaged();
  }
  ++i;  // past '}'
  skip_blanks();
  if (i != size) throw damaged();
  return fields;
}

const std::string& npy_field(const std::map<std::string, std::string>& fields, const std::string& key,
                             const std::string& header, const std::string& file) {
  const auto found = fields.find(key);
  if (found == fields.end()) throw InputError(file + ": its .npy header has no '" + key + "': " + header);
  return found->second;
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
                         std::to_string(first_index + i) + " (counting from 0) is past any vocabulary (ids are read as int32)");
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

// The buffers of those reads, one pair for the process (inputs are read one at a time, on one thread), left
// uninitialised: a pair per input, zero-filled, cost 0.1 s per file of uint8 ids (32 MiB of int64 mapped,
// zeroed and unmapped each time), 25 s for 100 files of 5 bytes. Pages are touched only as ids fill them.
struct ReadBuffers {
  std::unique_ptr<char[]> bytes{new char[static_cast<size_t>(kReadBytes)]};
  std::unique_ptr<int64_t[]> ids{new int64_t[static_cast<size_t>(kReadBytes)]};  // kReadBytes of uint8
};
ReadBuffers& read_buffers() {
  static ReadBuffers buffers;
  return buffers;
}

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
    // Shorter than the magic: with --ids-dtype, raw ids that begin as it does (a uint16 id 20115 is \x93N; before:
    // refused as a .npy cut short); without, no raw ids are possible.
    if (got > 0 && std::memcmp(magic, kNpyMagic, static_cast<size_t>(got)) == 0 &&
        got < static_cast<int64_t>(kNpyMagicBytes) && (!raw_type || named_npy))
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
  const char* type_said_by() const override { return npy() ? ".npy header" : nullptr; }
  bool one_document() const override { return true; }
  // A regular file's whole size checked before any id is read: a whole number of ids, or what the header says.
  // Returns how many ids it holds.
  int64_t check_size() override {
    struct stat info {};
    if (::stat(file_.c_str(), &info) != 0) throw InputError(name_ + ": " + missing_file_text(file_));
    const int64_t data_bytes = static_cast<int64_t>(info.st_size) - header_bytes_;
    check_length(data_bytes);
    return data_bytes / type_->bytes;
  }

  void read_all(const IdVisit& visit, const ByteCount& progress, const std::function<void()>& document_end) override {
    constexpr int64_t kBufferBytes = kReadBytes;
    char* const buffer = read_buffers().bytes.get();
    int64_t* const ids = read_buffers().ids.get();
    int64_t pending = static_cast<int64_t>(head_.size()), index = 0;
    std::memcpy(buffer, head_.data(), head_.size());
    progress(static_cast<uint64_t>(header_bytes_ + pending));
    for (;;) {
      const int64_t got = read_some(in_, buffer + pending, kBufferBytes - pending, file_);
      const int64_t have = pending + got, whole = have / type_->bytes;
      decode_ids(*type_, buffer, whole, ids, index, name_);
      if (whole > 0) visit(ids, whole, index);
      index += whole;
      pending = have - whole * type_->bytes;
      std::memmove(buffer, buffer + whole * type_->bytes, static_cast<size_t>(pending));
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

    const std::map<std::string, std::string> fields = npy_header_fields(header, name_);
    const std::string& descr = npy_field(fields, "descr", header, name_);
    if (descr.front() == '[') throw InputError(name_ + ": a .npy file of records (structured dtype " + descr + "); save the id column alone");
    std::string code = descr.substr(1, descr.size() - 2);  // '<u2': byte order, kind, bytes
    if (code.size() == 2) code = "=" + code;  // 'u2', which NumPy reads as the machine's order, as '=u2'
    for (const IdType& type : kIdTypes)
      if (code.size() == 3 && code[1] == type.kind && code[2] == char('0' + type.bytes) &&
          (code[0] == '<' || code[0] == '=' || code[0] == '|' || (type.bytes == 1 && code[0] == '>')))
        type_ = &type;
    if (!type_)
      throw InputError(name_ + ": dtype " + descr + " in its .npy header: " +
                       (code.size() == 3 && code[0] == '>' && (code[1] == 'i' || code[1] == 'u')
                            ? "big-endian ids; save them little-endian (array.astype(array.dtype.newbyteorder('<')))"
                            : "token ids must be integers (" + id_dtype_names() + ")"));
    const std::string& shape = npy_field(fields, "shape", header, name_);
    // A tuple, as NumPy writes and reads it: (), (10,), (2, 3), one trailing comma at most (before: (10,,),
    // (,10), (10], (10) and [10] were read too, which NumPy refuses).
    if (shape.size() < 2 || shape.front() != '(' || shape.back() != ')')
      throw InputError(name_ + ": damaged .npy shape " + shape + " (not a tuple)");
    std::vector<std::string> parts;
    for (size_t i = 1; i < shape.size();) {
      const size_t end = std::min(shape.find(',', i), shape.size() - 1);
      parts.push_back(shape.substr(i, end - i));
      i = end + 1;
    }
    const auto blank = [](const std::string& part) { return part.find_first_not_of(' ') == std::string::npos; };
    if (parts.size() > 1 && blank(parts.back())) parts.pop_back();  // (10,) and (2, 3,)
    else if (parts.size() == 1 && !blank(parts[0]))                 // (10): an integer in parentheses
      throw InputError(name_ + ": damaged .npy shape " + shape + " (not a tuple: one axis is written (n,))");
    if (parts.size() == 1 && blank(parts[0])) parts.clear();  // (): one id
    int long_axes = 0;  // of more than one id
    expected_ = 1;
    for (const std::string& part : parts) {
      if (blank(part)) throw InputError(name_ + ": damaged .npy shape " + shape + " (an empty axis)");
      size_t used = 0;
      int64_t extent = -1;
      bool too_large = false;  // digits past int64: no file holds that many (before: "damaged")
      try {
        extent = std::stoll(part, &used);
      } catch (const std::out_of_range&) {  // a run of digits alone (a trailing L aside), not "-9...9" or "9...9x"
        const size_t first = part.find_first_not_of(' '), last = part.find_last_not_of(" L");
        too_large = part[first] != '-' && part.find_first_not_of("0123456789", first + (part[first] == '+')) > last;
      } catch (const std::exception&) {
      }
      if (too_large) throw InputError(name_ + ": .npy shape " + shape + " is larger than any file");
      if (extent >= 0 && used < part.size() && part[used] == 'L') ++used;  // Python 2's long: (10L,), as NumPy reads it
      if (extent < 0 || part.find_first_not_of(' ', used) != std::string::npos)
        throw InputError(name_ + ": damaged .npy shape " + shape);
      if (extent > 0 && expected_ > std::numeric_limits<int64_t>::max() / 8 / extent)
        throw InputError(name_ + ": .npy shape " + shape + " is larger than any file");
      expected_ *= extent;
      long_axes += extent > 1;
    }
    // Of several axes, C order is the rows one after another (packed sequences, say); Fortran order is not,
    // unless at most one axis is longer than 1: (10, 1) is the same ids in the same order either way.
    // True or False, as numpy.load requires (before: of one long axis, not read: 'False', a string, passed).
    const std::string& order = npy_field(fields, "fortran_order", header, name_);
    if (order != "True" && order != "False")
      throw InputError(name_ + ": damaged .npy header: fortran_order is " + order + ", not True or False: " + header);
    if (long_axes > 1 && order != "False")
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
    if (::stat(idx_.c_str(), &info) != 0) throw InputError(idx_ + ": " + missing_file_text(idx_));
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
  const char* type_said_by() const override { return "Megatron index"; }
  bool one_document() const override { return false; }

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
    char* const buffer = read_buffers().bytes.get();
    int64_t* const ids = read_buffers().ids.get();
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
          if (read_some(in, buffer, bytes, bin_) != bytes)
            throw InputError(bin_ + ": ends before sequence " + std::to_string(s) + " of " + idx_ + " does (it changed?)");
          decode_ids(*type_, buffer, count, ids, index, bin_);
          visit(ids, count, index);
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
      if (length < 0 || offset < 0)  // (before: "-5 ids at byte 0 lies outside", as if the .bin were short)
        throw InputError(idx_ + ": sequence " + std::to_string(i) + " has a negative " +
                         (length < 0 ? "length (" + std::to_string(length) + " ids)" : "byte offset (" + std::to_string(offset) + ")") +
                         ": a damaged index");
      if (offset > bin_bytes_ || length > (bin_bytes_ - offset) / type_->bytes)
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

}  // namespace

std::string name_of(const std::string& file) { return file == "-" ? std::string("standard input") : file; }

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

std::string beside(const std::string& path, const std::string& extension) {
  std::string out = path.substr(0, path.size() - extension.size());
  const bool upper = std::isupper(static_cast<unsigned char>(path.back()));
  for (const char c : extension) out += upper ? static_cast<char>(std::toupper(static_cast<unsigned char>(c))) : c;
  return out;
}

bool ends_with(const std::string& text, const std::string& end) {
  if (text.size() <= end.size()) return false;
  for (size_t i = 0; i < end.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(text[text.size() - end.size() + i])) != end[i]) return false;
  return true;
}

std::ifstream open_input(const std::string& file) {
  std::ifstream in(file == "-" ? "/dev/stdin" : file, std::ios::binary);
  if (!in) throw InputError(name_of(file) + ": cannot be read (" + std::strerror(errno) + ")");
  return in;
}

int64_t read_some(std::istream& in, char* into, int64_t count, const std::string& file) {
  in.read(into, static_cast<std::streamsize>(count));
  if (in.bad()) throw InputError(name_of(file) + ": read error");
  return static_cast<int64_t>(in.gcount());
}

const IdType* find_id_type(const std::string& name) {
  for (const IdType& type : kIdTypes)
    if (name == type.name) return &type;
  return nullptr;
}

std::string id_dtype_names() {
  std::string names;
  for (const IdType& type : kIdTypes) names += (names.empty() ? "" : "|") + std::string(type.name);
  return names;
}

const IdType* megatron_dtype_beside(const std::string& bin) {
  if (!ends_with(bin, ".bin")) return nullptr;
  std::ifstream idx(beside(bin, ".idx"), std::ios::binary);
  char head[18];
  if (!idx.read(head, sizeof head) || std::memcmp(head, "MMIDIDX\0\0", 9) != 0) return nullptr;
  static const char* const kCodes[] = {nullptr, "uint8", "int8", "int16", "int32", "int64", nullptr, nullptr, "uint16"};
  const int code = static_cast<unsigned char>(head[17]);
  return code >= 1 && code <= 8 && kCodes[code] ? find_id_type(kCodes[code]) : nullptr;
}

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

}  // namespace longctx::io::import
