// h5.hpp's groups and files: the tree of links (lookups that say what is there instead of failing,
// creation with compact links and attributes, the walk that refuses a loop of links) and files (created
// in the checksummed 1.10 format, opened with the reason they cannot be), and the closes that fail: a file
// that would not close is remembered (HDF5 crashes on it at shutdown), a dataset's by its file's name.
#include <algorithm>
#include <exception>
#include <filesystem>
#include <map>
#include <sstream>
#include <vector>

#include "io/durable.hpp"
#include "io/h5.hpp"
#include "io/h5_internal.hpp"
#include "runtime/core/check.hpp"
#include "runtime/core/log.hpp"

namespace longctx::io::h5 {
namespace {

using detail::file_type_of;
using detail::fixed_string_type;
using detail::to_hsize;

// Splits "a/b/c" into its non-empty components.
std::vector<std::string> split_path(const std::string& path) {
  std::vector<std::string> parts;
  std::string part;
  std::istringstream in(path);
  while (std::getline(in, part, '/'))
    if (!part.empty()) parts.push_back(part);
  return parts;
}

// Links and attributes stay messages in their object's header, checksummed with it, instead of moving
// to a fractal heap past 8: HDF5 1.10.8 frees uninitialised memory (a crash, not an error) when it
// iterates a dense group whose heap is damaged. Past 65535, or for an attribute over 64 KiB, HDF5 still
// goes dense by itself.
constexpr unsigned kMaxCompact = 65535;

void keep_links_compact(hid_t group_create, const std::string& context) {
  if (H5Pset_link_phase_change(group_create, kMaxCompact, kMaxCompact) < 0)
    throw_internal(context + ": H5Pset_link_phase_change");
}

void keep_attributes_compact(hid_t object_create, const std::string& context) {
  if (H5Pset_attr_phase_change(object_create, kMaxCompact, kMaxCompact) < 0)
    throw_internal(context + ": H5Pset_attr_phase_change");
}

}  // namespace

// ---- files that would not close -----------------------------------------------------------------------
namespace {
bool g_file_close_failed = false;

// H5Fclose, remembering a failure: HDF5 1.10 keeps such a file's ID half torn down (a failed flush, such
// as on a full disk, leaves its cache unable to flush again) and crashes on it when the library shuts down.
herr_t close_file(hid_t id) {
  const herr_t status = H5Fclose(id);
  if (status < 0) g_file_close_failed = true;
  return status;
}
}  // namespace

bool file_close_failed() { return g_file_close_failed; }

// ---- datasets that would not close --------------------------------------------------------------------
namespace {
std::map<std::string, std::string> g_write_failures;  // file name -> HDF5's reason (the first)

// H5Dclose of a dataset this process created or opened. Closing writes what HDF5 still buffers (a contiguous
// dataset's sieve buffer, a chunked one's chunk cache), and ~Handle drops a failure there, as on a full
// disk: `attend` then published its output with those bytes missing (zeros in lse / dq, exit 0). The
// failure is kept by file name; take_write_failure gives it to close_and_sync, which throws it.
herr_t close_dataset_noting_failure(hid_t id) {
  std::string file;
  const ssize_t length = H5Fget_name(id, nullptr, 0);
  if (length > 0) {
    std::vector<char> name(static_cast<size_t>(length) + 1);
    if (H5Fget_name(id, name.data(), name.size()) == length) file.assign(name.data(), static_cast<size_t>(length));
  }
  const herr_t status = H5Dclose(id);
  if (status < 0) g_write_failures.emplace(file, take_error_text());
  return status;
}
}  // namespace

std::string take_write_failure(const std::string& file) {
  const auto found = g_write_failures.find(file);
  if (found == g_write_failures.end()) return "";
  std::string reason = found->second.empty() ? "HDF5 gave no reason" : found->second;
  g_write_failures.erase(found);
  return reason;
}

// ---- groups -------------------------------------------------------------------------------------------
std::string Group::child_path(const std::string& name) const {
  if (!name.empty() && name.front() == '/') return name;
  return (where_.path == "/" ? "/" : where_.path + "/") + name;
}

bool Group::has(const std::string& name) const {
  std::string prefix = (!name.empty() && name.front() == '/') ? "/" : "";
  for (const std::string& part : split_path(name)) {
    prefix += (prefix.empty() || prefix == "/" ? "" : "/") + part;
    const htri_t exists = H5Lexists(id(), prefix.c_str(), H5P_DEFAULT);
    if (exists <= 0) {
      take_error_text();
      return false;
    }
  }
  return true;
}

namespace {
// H5I_BADID when the object cannot be opened; HDF5's reason goes to `error` (when given).
H5I_type_t object_kind(hid_t location, const std::string& name, std::string* error = nullptr) {
  Handle object(H5Oopen(location, name.c_str(), H5P_DEFAULT), H5Oclose);
  if (!object.valid()) {
    const std::string text = take_error_text();
    if (error) *error = text;
    return H5I_BADID;
  }
  return H5Iget_type(object.id());
}

// Where a soft or external link points ("'/x'" or "file 'f.h5', object '/x'"); "" for a hard link.
std::string link_target(hid_t location, const std::string& name) {
  H5L_info_t link;
  if (H5Lget_info(location, name.c_str(), &link, H5P_DEFAULT) < 0 || link.type == H5L_TYPE_HARD) {
    take_error_text();
    return "";
  }
  std::vector<char> value(std::max<size_t>(link.u.val_size, 1) + 1, '\0');
  if (H5Lget_val(location, name.c_str(), value.data(), value.size() - 1, H5P_DEFAULT) < 0) {
    take_error_text();
    return "?";
  }
  if (link.type == H5L_TYPE_SOFT) return "'" + std::string(value.data()) + "'";
  const char* file = nullptr;
  const char* object = nullptr;
  unsigned flags = 0;
  if (link.type == H5L_TYPE_EXTERNAL &&
      H5Lunpack_elink_val(value.data(), link.u.val_size, &flags, &file, &object) >= 0 && file && object)
    return "file '" + std::string(file) + "', object '" + object + "'";
  take_error_text();
  return "?";
}

// A link that exists but whose object cannot be opened is a dangling soft or external link, or a damaged
// object header (a checksum failure), not a missing object: say which instead of "no such dataset".
[[noreturn]] void throw_unopenable(hid_t location, const std::string& name, const Where& where,
                                   const std::string& error) {
  const std::string target = link_target(location, name);
  if (!target.empty())
    throw InputError(where.describe() + ": is a link to " + target + ", which does not exist or cannot be opened "
                     "(a dangling link)");
  throw InputError(where.describe() + ": cannot open the object (damaged metadata?)" +
                   (error.empty() ? "" : ": " + error));
}

// What open_dataset and open_group check before they open `name` (`present`: whether the link is there):
// it is there, can be opened, and is an object of `kind` (`noun`: "dataset", "group").
void require_child(hid_t location, const std::string& name, bool present, const Where& where, H5I_type_t kind,
                   const char* noun) {
  if (!present) throw InputError(where.file + ": no " + noun + " '" + where.path + "'");
  std::string error;
  const H5I_type_t found = object_kind(location, name, &error);
  if (found == H5I_BADID) throw_unopenable(location, name, where, error);
  if (found != kind) throw InputError(where.describe() + " is not a " + noun);
}
}  // namespace

bool Group::has_dataset(const std::string& name) const {
  return has(name) && object_kind(id(), name) == H5I_DATASET;
}

bool Group::has_group(const std::string& name) const { return has(name) && object_kind(id(), name) == H5I_GROUP; }

Dataset Group::open_dataset(const std::string& name) const {
  const Where where{where_.file, child_path(name)};
  require_child(id(), name, has(name), where, H5I_DATASET, "dataset");
  Handle dataset(H5Dopen2(id(), name.c_str(), H5P_DEFAULT), close_dataset_noting_failure);  // written too, in r+ files
  if (!dataset.valid()) throw_input(where.describe() + ": cannot open dataset");
  return Dataset(std::move(dataset), where, comm_);
}

Group Group::open_group(const std::string& name) const {
  const Where where{where_.file, child_path(name)};
  require_child(id(), name, has(name), where, H5I_GROUP, "group");
  Handle group(H5Gopen2(id(), name.c_str(), H5P_DEFAULT), H5Gclose);
  if (!group.valid()) throw_input(where.describe() + ": cannot open group");
  return Group(std::move(group), where, comm_);
}

Group Group::create_group(const std::string& name) {
  const Where where{where_.file, child_path(name)};
  if (has_group(name)) return open_group(name);
  const PropertyList links = PropertyList::link_create();
  Handle create(H5Pcreate(H5P_GROUP_CREATE), H5Pclose);
  if (!create.valid()) throw_internal("H5Pcreate(H5P_GROUP_CREATE)");
  keep_links_compact(create.id(), where.describe());
  keep_attributes_compact(create.id(), where.describe());
  Handle group(H5Gcreate2(id(), name.c_str(), links.id(), create.id(), H5P_DEFAULT), H5Gclose);
  if (!group.valid()) throw_internal(where.describe() + ": cannot create group");
  return Group(std::move(group), where, comm_);
}

Dataset Group::create_dataset(const std::string& name, ElementType type, const Shape& dims,
                              const DatasetOptions& options) {
  if (type == ElementType::f16) {
    Handle half = make_f16_file_type();
    return create_dataset(name, half.id(), dims, options);
  }
  return create_dataset(name, file_type_of(type), dims, options);
}

Dataset Group::create_dataset(const std::string& name, hid_t file_type, const Shape& dims,
                              const DatasetOptions& options) {
  const Where where{where_.file, child_path(name)};
  Handle create(H5Pcreate(H5P_DATASET_CREATE), H5Pclose);
  if (!create.valid()) throw_internal("H5Pcreate(H5P_DATASET_CREATE)");

  std::vector<hsize_t> extents = to_hsize(dims);
  std::vector<hsize_t> limits = extents;
  bool extendible = false;
  if (!options.max_dims.empty()) {
    if (options.max_dims.size() != dims.size()) throw InternalError(where.describe() + ": max_dims rank");
    for (size_t i = 0; i < dims.size(); ++i) {
      extendible |= options.max_dims[i] != dims[i];
      limits[i] = options.max_dims[i] < 0 ? H5S_UNLIMITED : static_cast<hsize_t>(options.max_dims[i]);
    }
  }
  // A chunk may not exceed a fixed extent, and an empty fixed extent cannot be chunked at all: such a
  // dataset holds no data, so it is stored contiguous and unfiltered.
  bool chunk = !options.chunk.empty() && !dims.empty();
  for (size_t i = 0; chunk && i < dims.size(); ++i)
    if (limits[i] == 0) chunk = false;
  if (extendible && !chunk) throw InternalError(where.describe() + ": an extendible dataset needs chunks");
  if (chunk) {
    if (options.chunk.size() != dims.size()) throw InternalError(where.describe() + ": chunk rank");
    std::vector<hsize_t> chunk_dims(dims.size());
    for (size_t i = 0; i < dims.size(); ++i) {
      hsize_t extent = static_cast<hsize_t>(std::max<int64_t>(options.chunk[i], 1));
      if (limits[i] != H5S_UNLIMITED) extent = std::min(extent, limits[i]);
      chunk_dims[i] = extent;
    }
    if (H5Pset_chunk(create.id(), static_cast<int>(chunk_dims.size()), chunk_dims.data()) < 0)
      throw_internal(where.describe() + ": H5Pset_chunk");
    if (options.fletcher32 && H5Pset_fletcher32(create.id()) < 0)
      throw_internal(where.describe() + ": H5Pset_fletcher32");
  }
  keep_attributes_compact(create.id(), where.describe());
  // Every element is written by someone; writing fill values first would only cost time.
  if (H5Pset_fill_time(create.id(), H5D_FILL_TIME_NEVER) < 0) throw_internal(where.describe() + ": fill time");

  Handle space(dims.empty() ? H5Screate(H5S_SCALAR)
                            : H5Screate_simple(static_cast<int>(extents.size()), extents.data(), limits.data()),
               H5Sclose);
  if (!space.valid()) throw_internal(where.describe() + ": dataspace " + to_string(dims));
  const PropertyList links = PropertyList::link_create();
  Handle dataset(H5Dcreate2(id(), name.c_str(), file_type, space.id(), links.id(), create.id(), H5P_DEFAULT),
                 close_dataset_noting_failure);
  if (!dataset.valid()) throw_internal(where.describe() + ": cannot create dataset of shape " + to_string(dims));
  return Dataset(std::move(dataset), where, comm_);
}

Dataset Group::create_string_dataset(const std::string& name, const std::string& text) {
  Handle type = fixed_string_type(text.size());
  Dataset dataset = create_dataset(name, type.id(), Shape{});
  Dataspace memory = Dataspace::scalar();
  Dataspace file = dataset.file_space();
  if (comm_rank(comm_) != 0) {
    memory.select_none();
    file.select_none();
  }
  std::string padded = text.empty() ? std::string(1, '\0') : text;
  dataset.write(type.id(), memory, file, padded.data());
  return dataset;
}

namespace {
herr_t collect_link_name(hid_t, const char* name, const H5L_info_t*, void* client) {
  static_cast<std::vector<std::string>*>(client)->push_back(name);
  return 0;
}
}  // namespace

std::vector<std::string> Group::children() const {
  std::vector<std::string> names;
  hsize_t index = 0;
  if (H5Literate(id(), H5_INDEX_NAME, H5_ITER_INC, &index, collect_link_name, &names) < 0)
    throw_input(where_.describe() + ": listing group");
  std::sort(names.begin(), names.end());
  return names;
}

std::vector<std::string> Group::dataset_paths() const {
  std::vector<std::pair<uint64_t, uint64_t>> enclosing;
  return dataset_paths(enclosing);
}

std::vector<std::string> Group::dataset_paths(std::vector<std::pair<uint64_t, uint64_t>>& enclosing) const {
  // A group whose links lead back to itself or to a group above it (before: listed forever, a stack
  // overflow, exit 139 of `ckpt verify` or of a resume). The bound on depth keeps links that reach one
  // group by many paths from multiplying the work past any checkpoint's nesting.
  constexpr size_t kMaxDepth = 64;
  H5O_info_t info{};
  if (H5Oget_info2(id(), &info, H5O_INFO_BASIC) < 0) throw_input(where_.describe() + ": reading its object header");
  const std::pair<uint64_t, uint64_t> self{info.fileno, static_cast<uint64_t>(info.addr)};
  if (std::find(enclosing.begin(), enclosing.end(), self) != enclosing.end())
    throw InputError(where_.describe() + ": a link back to a group that encloses it (a loop): damaged, or not a "
                     "file longctx wrote");
  if (enclosing.size() >= kMaxDepth)
    throw InputError(where_.describe() + ": groups nested more than " + std::to_string(kMaxDepth) +
                     " deep: damaged, or not a file longctx wrote");
  enclosing.push_back(self);
  std::vector<std::string> paths;
  for (const std::string& child : children()) {
    std::string error;
    const H5I_type_t kind = object_kind(id(), child, &error);
    if (kind == H5I_BADID) {
      H5L_info_t link;
      // A dangling soft or external link names no object of this file: skipped, as before.
      if (H5Lget_info(id(), child.c_str(), &link, H5P_DEFAULT) < 0 || link.type == H5L_TYPE_HARD)
        throw_unopenable(id(), child, Where{where_.file, child_path(child)}, error);
    } else if (kind == H5I_DATASET) {
      paths.push_back(child);
    } else if (kind == H5I_GROUP) {
      for (const std::string& below : open_group(child).dataset_paths(enclosing)) paths.push_back(child + "/" + below);
    }
  }
  enclosing.pop_back();
  return paths;
}

// ---- files --------------------------------------------------------------------------------------------
File::File(Handle handle, const std::string& path, MPI_Comm comm)
    : Group(std::move(handle), Where{path, "/"}, comm), exceptions_at_open_(std::uncaught_exceptions()) {}

File File::create(const std::string& path, MPI_Comm comm) {
  quiet_errors();
  const std::filesystem::path parent = std::filesystem::path(path).parent_path();
  std::error_code error;
  if (!parent.empty() && !std::filesystem::is_directory(parent, error))
    throw UsageError("cannot create " + path + ": directory " + parent.string() + " does not exist");
  const PropertyList access = PropertyList::file_access(comm);
  // The 1.10 format checksums its metadata (superblock, object headers, fixed-array chunk indexes), so
  // HDF5 itself refuses damaged metadata; the default, older format has no checksums, and a flipped
  // byte in a chunk index read back as zeros without any error. Readers need HDF5 >= 1.10 (h5py does).
  if (H5Pset_libver_bounds(access.id(), H5F_LIBVER_V110, H5F_LIBVER_LATEST) < 0)
    throw_internal("H5Pset_libver_bounds");
  // Files are created as temporary files their writer has claimed and locked (durable.hpp); HDF5's own
  // flock() would conflict with that lock where flock is emulated by fcntl (NFS).
  if (H5Pset_file_locking(access.id(), false, true) < 0) throw_internal("H5Pset_file_locking");
  // The root group's settings; intermediate groups copy their parent's.
  Handle create(H5Pcreate(H5P_FILE_CREATE), H5Pclose);
  if (!create.valid()) throw_internal("H5Pcreate(H5P_FILE_CREATE)");
  keep_links_compact(create.id(), path);
  keep_attributes_compact(create.id(), path);
  Handle file(H5Fcreate(path.c_str(), H5F_ACC_TRUNC, create.id(), access.id()), close_file);
  if (!file.valid()) throw_internal("cannot create " + path);
  return File(std::move(file), path, comm);
}

File File::open(const std::string& path, Mode mode, MPI_Comm comm) {
  quiet_errors();
  check_readable(path);
  std::error_code error;
  if (!std::filesystem::exists(path, error)) throw InputError(path + ": " + missing_file_text(path));
  if (std::filesystem::is_directory(path, error)) throw InputError(path + ": is a directory, not an HDF5 file");
  // HDF5 would wait forever on a FIFO (and read a device as long as it answers): only plain files.
  if (const std::string kind = non_regular_kind(path); !kind.empty())
    throw InputError(path + ": is " + kind + ", not an HDF5 file (give a regular file)");
  const PropertyList access = PropertyList::file_access(comm);
  const unsigned flags = mode == Mode::read ? H5F_ACC_RDONLY : H5F_ACC_RDWR;
  Handle file(H5Fopen(path.c_str(), flags, access.id()), close_file);
  if (!file.valid()) {
    const std::string detail = take_error_text();
    // HDF5's own lock, held (errno 11, EAGAIN): a writer (h5py, another tool) has the file open. Not
    // damage: say so. Another lock failure (ENOLCK on a network file system) keeps HDF5's words.
    if (detail.find("unable to lock file, errno = 11") != std::string::npos)
      throw FileLocked(path + ": locked by a process that has it open for writing (HDF5 file locking); wait for "
                       "it to close the file. With no such process running (a stale lock on a "
                       "network file system), HDF5_USE_FILE_LOCKING=FALSE skips the lock");
    // The superblock's "open for write" mark (files of the 1.10 format and later: h5py's libver='latest',
    // SWMR): a writer has the file open, or one ended without closing it. HDF5's words call for h5clear,
    // which under a live writer damages the file; before, this read as "truncated, damaged or not HDF5".
    if (detail.find("file is already open for write") != std::string::npos)
      throw FileMarkedOpen(path + ": marked as open for writing by an HDF5 writer (an SWMR writer, or a writer of "
                           "the newer file format): the writer has it open, or ended without closing it. Wait for a "
                           "running writer to close the file; only if none is running, `h5clear -s " +
                           log::shell_path(path) +
                           "` clears the mark (the file then holds what that writer had flushed)");
    if (detail.find("unable to lock file") != std::string::npos)
      throw InputError(path + ": HDF5 could not lock it (" + detail + "); where the file system has no locks, "
                       "HDF5_USE_FILE_LOCKING=FALSE skips them");
    throw InputError(path + ": cannot open as an HDF5 file (truncated, damaged or not HDF5)" +
                     (detail.empty() ? std::string() : ": " + detail));
  }
  return File(std::move(file), path, comm);
}

File& File::operator=(File&& other) noexcept {
  if (this != &other) {
    if (handle_.valid()) {
      try {
        close();
      } catch (...) {
      }
    }
    exceptions_at_open_ = other.exceptions_at_open_;  // File's own member, read before `other` is moved from
    Group::operator=(std::move(other));
  }
  return *this;
}

File::~File() {
  if (!handle_.valid()) return;
  if (parallel() && std::uncaught_exceptions() > exceptions_at_open_) {
    handle_.release();  // see the header: a collective close while unwinding can hang the job
    return;
  }
  close_file(handle_.release());
}

void File::flush() {
  if (H5Fflush(id(), H5F_SCOPE_GLOBAL) < 0) throw_internal(where_.file + ": flush");
}

void File::close() { handle_.close(where_.file); }

// ---- MPI helpers --------------------------------------------------------------------------------------
int comm_rank(MPI_Comm comm) {
  if (comm == MPI_COMM_NULL) return 0;
  int rank = 0;
  LONGCTX_CHECK_MPI(MPI_Comm_rank(comm, &rank));
  return rank;
}

int comm_size(MPI_Comm comm) {
  if (comm == MPI_COMM_NULL) return 1;
  int size = 1;
  LONGCTX_CHECK_MPI(MPI_Comm_size(comm, &size));
  return size;
}

void comm_barrier(MPI_Comm comm) {
  if (comm != MPI_COMM_NULL) LONGCTX_CHECK_MPI(MPI_Barrier(comm));
}

}  // namespace longctx::io::h5
