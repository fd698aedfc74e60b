// A small RAII layer over the HDF5 C API: files (serial, or parallel through MPI-IO), groups, datasets,
// dataspaces, attributes and property lists. Every handle closes itself; every failed call becomes a
// typed exception that names the file and the object and carries HDF5's own error text (HDF5's
// automatic printing of its error stack is turned off: the message travels in the exception instead).
//
// Which exception:
//   InputError     the file is missing, truncated, not HDF5, lacks a dataset, has the wrong dtype or
//                  rank, or fails a read (a Fletcher32 checksum failure, or a metadata checksum
//                  failure in files File::create made, surfaces here)                 -> exit 3
//   InternalError  a create or write failed (disk full, permissions, a bug)           -> exit 1
//
// Parallel files: File::create / File::open with an MPI communicator other than MPI_COMM_NULL use
// the MPI-IO driver (H5Pset_fapl_mpio). Then these calls are COLLECTIVE (every rank of the
// communicator calls them, in the same order, with the same arguments): File::create/open/close/flush,
// create_group, create_dataset, set_extent, write_attribute, and Dataset::read/write with
// Transfer::collective. A rank with nothing to read or write still calls read/write with an empty
// selection (Dataspace::select_none): skipping the call is the classic parallel-HDF5 hang.
//
// Unwinding: when a parallel File is destroyed while an exception is in flight, it is NOT closed
// (closing is collective; the other ranks may be inside another collective, and waiting for them is
// exactly the hang we must not have). The handle is left to HDF5's own clean-up at MPI_Finalize, or to
// MPI_Abort, which main() calls for a failure on one rank.
#pragma once

#include <hdf5.h>
#include <mpi.h>

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "runtime/core/error.hpp"
#include "runtime/core/tensor.hpp"

namespace longctx::io::h5 {

// ---- errors -------------------------------------------------------------------------------------------
// Turns off HDF5's automatic error printing for this process (idempotent; every File does it).
void quiet_errors();
// The text of HDF5's current error stack (innermost causes), then clears it. Empty when there is none.
std::string take_error_text();
[[noreturn]] void throw_input(const std::string& context);
[[noreturn]] void throw_internal(const std::string& context);

// A dataset whose elements HDF5 could not read (a damaged chunk, a checksum that does not match): an
// InputError that a caller knowing what the elements were (tokens, a tensor) can name further.
class ReadFailure : public InputError {
 public:
  using InputError::InputError;
};

// A file that HDF5's file lock says another process has open for writing (File::open): not damage.
class FileLocked : public InputError {
 public:
  using InputError::InputError;
};
// The superblock's "open for write" mark (1.10 format and later): a writer has the file open, or one ended
// without closing it. No lock is involved, and no process need be there.
class FileMarkedOpen : public InputError {
 public:
  using InputError::InputError;
};

// ---- identifiers --------------------------------------------------------------------------------------
// Owns one hid_t and closes it with the close function of its kind. Move-only.
class Handle {
 public:
  using Closer = herr_t (*)(hid_t);
  Handle() = default;
  Handle(hid_t id, Closer closer) : id_(id), closer_(closer) {}
  Handle(Handle&& other) noexcept;
  Handle& operator=(Handle&& other) noexcept;
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  ~Handle();

  hid_t id() const { return id_; }
  bool valid() const { return id_ >= 0; }
  // Closes now; throws InternalError with `context` when HDF5 reports a failure.
  void close(const std::string& context);
  // Gives up ownership without closing.
  hid_t release();

 private:
  hid_t id_ = H5I_INVALID_HID;
  Closer closer_ = nullptr;
};

// ---- element types ------------------------------------------------------------------------------------
enum class ElementType { f16, f32, f64, u8, i8, u16, i32, i64, u64, string, other };
using longctx::to_string;
std::string to_string(ElementType type);
hid_t native_type(ElementType type);  // memory type for numeric types (f16 has none: read as f32)
template <class T> ElementType element_type_of();
template <> inline ElementType element_type_of<float>() { return ElementType::f32; }
template <> inline ElementType element_type_of<double>() { return ElementType::f64; }
template <> inline ElementType element_type_of<uint8_t>() { return ElementType::u8; }
template <> inline ElementType element_type_of<int8_t>() { return ElementType::i8; }
template <> inline ElementType element_type_of<uint16_t>() { return ElementType::u16; }
template <> inline ElementType element_type_of<int32_t>() { return ElementType::i32; }
template <> inline ElementType element_type_of<int64_t>() { return ElementType::i64; }
template <> inline ElementType element_type_of<uint64_t>() { return ElementType::u64; }
// IEEE half precision, little endian, as numpy and h5py store float16.
Handle make_f16_file_type();

// ---- property lists -----------------------------------------------------------------------------------
enum class Transfer { independent, collective };

class PropertyList {
 public:
  // File access: MPI-IO on `comm`, or the default POSIX driver when comm == MPI_COMM_NULL.
  static PropertyList file_access(MPI_Comm comm);
  // Data transfer: collective or independent MPI-IO; plain default transfer for serial files.
  static PropertyList transfer(Transfer mode, bool parallel);
  // Link creation that makes missing intermediate groups ("a/b/c" creates a and b).
  static PropertyList link_create();
  hid_t id() const { return handle_.id(); }

 private:
  explicit PropertyList(Handle handle) : handle_(std::move(handle)) {}
  Handle handle_;
};

// ---- dataspaces ---------------------------------------------------------------------------------------
class Dataspace {
 public:
  static Dataspace simple(const Shape& dims);
  static Dataspace scalar();
  explicit Dataspace(Handle handle) : handle_(std::move(handle)) {}

  hid_t id() const { return handle_.id(); }
  Shape dims() const;
  // Selects the box start[i] .. start[i] + count[i] (replacing any selection). A zero count anywhere
  // selects nothing (HDF5 rejects empty hyperslabs, so this becomes select_none).
  void select_box(const Shape& start, const Shape& count);
  void select_none();
  void select_all();
  int64_t selected_count() const;

 private:
  Handle handle_;
};

// ---- objects ------------------------------------------------------------------------------------------
// What every object knows for error messages: its file's path and its own path inside the file.
struct Where {
  std::string file;  // path on disk
  std::string path;  // path inside the file, "/" for the root
  std::string describe() const;  // "file.h5: dataset /model/w" style
};

// Attributes live on files, groups and datasets. Parallel files: writing is collective and every rank
// must pass the same value.
class Object {
 public:
  hid_t id() const { return handle_.id(); }
  const Where& where() const { return where_; }
  bool parallel() const { return comm_ != MPI_COMM_NULL; }

  bool has_attribute(const std::string& name) const;
  void write_attribute(const std::string& name, int64_t value);
  void write_attribute(const std::string& name, double value);
  void write_attribute(const std::string& name, const std::string& value);
  void write_attribute(const std::string& name, const std::vector<int64_t>& values);
  // Missing attribute or the wrong kind -> InputError naming the object and the attribute.
  int64_t read_int64_attribute(const std::string& name) const;
  // One integer's 64 bits: an unsigned attribute's value, a signed one's two's complement (a digest,
  // which longctx stores as int64 and another tool may store as uint64).
  uint64_t read_bits64_attribute(const std::string& name) const;
  double read_double_attribute(const std::string& name) const;
  std::string read_string_attribute(const std::string& name) const;
  std::vector<int64_t> read_int64s_attribute(const std::string& name) const;
  std::vector<std::string> attribute_names() const;
  // Closes it now (a file being committed must have none of its objects open); errors -> InternalError.
  void close_object() { handle_.close(where_.describe()); }

 protected:
  Object() = default;
  Object(Handle handle, Where where, MPI_Comm comm)
      : handle_(std::move(handle)), where_(std::move(where)), comm_(comm) {}
  Handle handle_;
  Where where_;
  MPI_Comm comm_ = MPI_COMM_NULL;  // the file's communicator; MPI_COMM_NULL for serial files
};

// Creation options of a dataset. Chunking is needed for filters and for extendible datasets.
struct DatasetOptions {
  Shape chunk;               // empty: contiguous
  bool fletcher32 = false;   // checksum every chunk (needs chunk)
  Shape max_dims;            // empty: fixed size; -1 in an axis: unlimited (needs chunk)
};

class Dataset : public Object {
 public:
  Dataset() = default;
  Dataset(Handle handle, Where where, MPI_Comm comm) : Object(std::move(handle), std::move(where), comm) {}

  Shape shape() const;
  size_t rank() const { return shape().size(); }
  ElementType element_type() const;
  bool holds_integers() const;  // an integer type of any width and sign (H5T_INTEGER)
  std::string dtype_name() const;  // for messages: to_string(element_type()), or what an `other` is ("uint16")
  size_t element_bytes() const;  // size of one element in the file
  Dataspace file_space() const;
  bool virtual_layout() const;  // a virtual dataset (VDS): its elements live in other datasets
  bool checksummed() const;     // Fletcher32 in the filter pipeline
  int64_t storage_bytes() const;
  // Throws InputError unless every element has storage: HDF5 reads a chunk missing from a (damaged)
  // chunk index, or storage never written, as fill values without any error. A virtual dataset's
  // elements must each be mapped, and each mapping's source file and dataset found where HDF5 looks for
  // them, as large as the mapping reads and itself allocated: HDF5 reads a missing source as fill values.
  void require_allocated() const;
  // The same, but of a virtual dataset only the mappings that place elements in rows [begin, end) of
  // `axis` have their sources checked (a rank's own rows: each rank finds what it will read, and no
  // rank opens every source file of a big VDS). Whether every element is mapped is still checked whole.
  struct RowBlock {
    size_t axis = 0;
    int64_t begin = 0, end = 0;
  };
  void require_allocated(const RowBlock& only) const;

  // Raw transfers with HDF5 type conversion from/to `memory_type`. Read failures -> ReadFailure (a filter
  // this HDF5 lacks -> InputError);
  // write failures -> InternalError. Collective on parallel files unless Transfer::independent.
  void read(hid_t memory_type, const Dataspace& memory, const Dataspace& file, void* buffer,
            Transfer mode = Transfer::collective) const;
  void write(hid_t memory_type, const Dataspace& memory, const Dataspace& file, const void* buffer,
             Transfer mode = Transfer::collective);
  // Grows an extendible dataset (collective).
  void set_extent(const Shape& dims);

  // Fixed-length string content (the /config dataset); written whole by rank 0, read by everyone.
  std::string read_string() const;

  // Throws InputError unless the dataset has rank in [min_rank, max_rank].
  void require_rank(size_t min_rank, size_t max_rank) const;

 private:
  Handle datatype() const;  // the file type; InputError when HDF5 cannot give it
  void require_allocated(int depth, const RowBlock* only) const;
  void require_virtual_sources(int depth, const RowBlock* only) const;
  void require_external_files(hid_t create_plist) const;
};

class Group : public Object {
 public:
  Group() = default;
  Group(Handle handle, Where where, MPI_Comm comm) : Object(std::move(handle), std::move(where), comm) {}

  bool has(const std::string& name) const;  // a link of that name exists (nested paths allowed)
  bool has_dataset(const std::string& name) const;
  bool has_group(const std::string& name) const;
  // Missing -> InputError naming the file and the object.
  Dataset open_dataset(const std::string& name) const;
  Group open_group(const std::string& name) const;
  // Intermediate groups are created as needed. Collective on parallel files.
  Group create_group(const std::string& name);
  Dataset create_dataset(const std::string& name, ElementType type, const Shape& dims,
                         const DatasetOptions& options = {});
  Dataset create_dataset(const std::string& name, hid_t file_type, const Shape& dims,
                         const DatasetOptions& options = {});
  // A scalar fixed-length string dataset holding `text`; collective create, rank 0's text is stored.
  Dataset create_string_dataset(const std::string& name, const std::string& text);
  // Names of the direct children (links) in creation-independent, sorted order.
  std::vector<std::string> children() const;
  // Paths (relative to this group, no leading "/") of every dataset below this group, sorted. A link
  // back to a group that encloses it (a hard, soft or external link loop) -> InputError naming it.
  std::vector<std::string> dataset_paths() const;

 protected:
  std::string child_path(const std::string& name) const;

 private:
  // `enclosing`: the (file number, address) of this group and of the groups above it.
  std::vector<std::string> dataset_paths(std::vector<std::pair<uint64_t, uint64_t>>& enclosing) const;
};

enum class Mode { read, read_write };

class File : public Group {
 public:
  File() = default;
  // Creates (truncating) `path` in the HDF5 1.10 format, whose metadata is checksummed. Parallel when
  // comm != MPI_COMM_NULL.
  static File create(const std::string& path, MPI_Comm comm = MPI_COMM_NULL);
  // Opens an existing file. Missing, unreadable, truncated or not HDF5 -> InputError naming `path`.
  static File open(const std::string& path, Mode mode = Mode::read, MPI_Comm comm = MPI_COMM_NULL);
  File(File&&) noexcept = default;
  File& operator=(File&& other) noexcept;
  ~File();

  const std::string& path() const { return where_.file; }
  MPI_Comm comm() const { return comm_; }
  // Writes everything out (MPI_File_sync on parallel files). Collective.
  void flush();
  // Closes now (collective); errors -> InternalError. Safe to call twice.
  void close();

 private:
  File(Handle handle, const std::string& path, MPI_Comm comm);
  int exceptions_at_open_ = 0;
};

// Whether closing some file failed. HDF5 1.10 then crashes when it shuts down (at MPI_Finalize or exit),
// so the process has to end without shutting it down.
bool file_close_failed();
// The first failure to close a dataset of `file` (its name as opened), which a handle's
// destructor cannot throw: what HDF5 said, or "" when none; taken once.
std::string take_write_failure(const std::string& file);

// MPI helpers shared by io: rank and size of `comm`, treating MPI_COMM_NULL as a world of one.
int comm_rank(MPI_Comm comm);
int comm_size(MPI_Comm comm);
void comm_barrier(MPI_Comm comm);

}  // namespace longctx::io::h5
