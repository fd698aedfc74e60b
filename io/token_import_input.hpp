// What `longctx data import` reads (io-internal; token_import.cpp writes the dataset): its inputs as
// streams of bytes, and the token ids a tokenizer wrote, from a NumPy .npy file, raw little-endian
// integers of --ids-dtype, or a Megatron-LM indexed dataset (PREFIX.idx and PREFIX.bin).
#pragma once

#include <cstdint>
#include <fstream>
#include <functional>
#include <memory>
#include <string>

namespace longctx::io::import {

// "standard input" for "-", else the file's name.
std::string name_of(const std::string& file);
// What a file that starts with `head` is, where it is a known binary container; "" otherwise.
std::string binary_kind(const std::string& head);
// PREFIX + `extension` (lower case) for PREFIX.xxx, in the case of the name given (B.IDX -> B.BIN).
std::string beside(const std::string& path, const std::string& extension);
// Whether `text` ends in `end` (lower case), in any case: B.IDX is an index too.
bool ends_with(const std::string& text, const std::string& end);
// `file` ("-": standard input) opened to read, or an InputError.
std::ifstream open_input(const std::string& file);
// Reads up to `count` bytes; fewer only at the end of the input.
int64_t read_some(std::istream& in, char* into, int64_t count, const std::string& file);

// ---- token ids --------------------------------------------------------------------------------------
struct IdType {
  const char* name;
  char kind;  // NumPy's: 'u' or 'i'
  int bytes;
  bool is_signed;
};

// The type named (uint8, int8, ..., int64), or nullptr.
const IdType* find_id_type(const std::string& name);
std::string id_dtype_names();  // "uint8|int8|..."

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
  // What says the ids' type: ".npy header" or "Megatron index"; nullptr for raw ids (--ids-dtype's).
  virtual const char* type_said_by() const = 0;
  // Whether the input is one document (a .npy or raw file), not a list of them (a Megatron index).
  virtual bool one_document() const = 0;
};

// The dtype the Megatron index beside PREFIX.bin says (nullptr: none there, or not one).
const IdType* megatron_dtype_beside(const std::string& bin);
// The input `file` is: a Megatron index by its name (.idx), else a .npy file or raw ids by its first bytes.
// A PREFIX.bin read as raw ids with another dtype than its index beside it says is refused (its ids would
// be read wrong: two uint16 ids as one int32), and one without --ids-dtype is pointed to that index.
std::unique_ptr<IdSource> open_ids(const std::string& file, const IdType* raw_type);

}  // namespace longctx::io::import
