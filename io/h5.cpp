#include "io/h5.hpp"

#include <algorithm>
#include <array>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <filesystem>
#include <map>
#include <set>
#include <sstream>
#include <vector>

#include "io/durable.hpp"
#include "runtime/core/check.hpp"

namespace longctx::io::h5 {
namespace {

std::vector<hsize_t> to_hsize(const Shape& shape) {
  std::vector<hsize_t> out(shape.size());
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] < 0) throw InternalError("negative extent in " + to_string(shape));
    out[i] = static_cast<hsize_t>(shape[i]);
  }
  return out;
}

Shape to_shape(const std::vector<hsize_t>& dims) {
  Shape out(dims.size());
  for (size_t i = 0; i < dims.size(); ++i) out[i] = static_cast<int64_t>(dims[i]);
  return out;
}

// Splits "a/b/c" into its non-empty components.
std::vector<std::string> split_path(const std::string& path) {
  std::vector<std::string> parts;
  std::string part;
  std::istringstream in(path);
  while (std::getline(in, part, '/'))
    if (!part.empty()) parts.push_back(part);
  return parts;
}

hid_t file_type_of(ElementType type) {
  switch (type) {
    case ElementType::f32: return H5T_IEEE_F32LE;
    case ElementType::f64: return H5T_IEEE_F64LE;
    case ElementType::u8: return H5T_STD_U8LE;
    case ElementType::i8: return H5T_STD_I8LE;
    case ElementType::u16: return H5T_STD_U16LE;
    case ElementType::i32: return H5T_STD_I32LE;
    case ElementType::i64: return H5T_STD_I64LE;
    case ElementType::u64: return H5T_STD_U64LE;
    default: throw InternalError("no HDF5 file type for element type " + to_string(type));
  }
}

ElementType classify(hid_t type) {
  const H5T_class_t type_class = H5Tget_class(type);
  const size_t bytes = H5Tget_size(type);
  if (type_class == H5T_FLOAT) {
    if (bytes == 2) return ElementType::f16;
    if (bytes == 4) return ElementType::f32;
    if (bytes == 8) return ElementType::f64;
  } else if (type_class == H5T_INTEGER) {
    const bool is_signed = H5Tget_sign(type) == H5T_SGN_2;
    if (bytes == 1) return is_signed ? ElementType::i8 : ElementType::u8;
    if (bytes == 2 && !is_signed) return ElementType::u16;
    if (bytes == 4 && is_signed) return ElementType::i32;
    if (bytes == 8) return is_signed ? ElementType::i64 : ElementType::u64;
  } else if (type_class == H5T_STRING) {
    return ElementType::string;
  }
  return ElementType::other;
}

Handle fixed_string_type(size_t bytes) {
  Handle type(H5Tcopy(H5T_C_S1), H5Tclose);
  if (!type.valid()) throw_internal("H5Tcopy(H5T_C_S1)");
  if (H5Tset_size(type.id(), std::max<size_t>(bytes, 1)) < 0 || H5Tset_strpad(type.id(), H5T_STR_NULLPAD) < 0)
    throw_internal("fixed-length string type");
  return type;
}

std::string strip_nulls(std::string text) {
  while (!text.empty() && text.back() == '\0') text.pop_back();
  return text;
}

// Reads a string attribute or dataset content (fixed or variable length, scalar or one element; ASCII or
// UTF-8, as h5py writes by default: HDF5 converts neither into the other, so memory takes the file's).
template <class Reader>
std::string read_text(hid_t type, Reader&& read_with, const std::string& context) {
  if (H5Tget_class(type) != H5T_STRING) throw InputError(context + ": not a string");
  const H5T_cset_t cset = H5Tget_cset(type);
  if (H5Tis_variable_str(type) > 0) {
    Handle memory(H5Tcopy(H5T_C_S1), H5Tclose);
    H5Tset_size(memory.id(), H5T_VARIABLE);
    H5Tset_cset(memory.id(), cset);
    char* value = nullptr;
    if (read_with(memory.id(), &value) < 0) throw_input(context + ": read failed");
    std::string text = value ? value : "";
    H5free_memory(value);
    return text;
  }
  const size_t bytes = H5Tget_size(type);
  Handle memory = fixed_string_type(bytes);
  H5Tset_cset(memory.id(), cset);
  std::string text(bytes, '\0');
  if (read_with(memory.id(), text.data()) < 0) throw_input(context + ": read failed");
  return strip_nulls(std::move(text));
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

herr_t collect_error(unsigned, const H5E_error2_t* error, void* client) {
  auto* lines = static_cast<std::vector<std::string>*>(client);
  std::string line = error->desc ? error->desc : "";
  // A failed write()'s entry ("file write failed: time = ..., filename = ..., errno = 28, error message =
  // 'No space left on device', buf = 0x..., ...", over two lines) is cut to its system message.
  const std::string key = "error message = '";
  const size_t at = line.find(key), end = at == std::string::npos ? at : line.find('\'', at + key.size());
  const size_t colon = line.find(':');  // "file write failed:" (HSYS_GOTO_ERROR's entries have none: kept)
  if (end != std::string::npos && colon < at)
    line = line.substr(0, colon) + ": " + line.substr(at + key.size(), end - at - key.size());
  char minor[256] = {0};
  if (H5Eget_msg(error->min_num, nullptr, minor, sizeof(minor)) > 0 && line.find(minor) == std::string::npos)
    line += std::string(" (") + minor + ")";
  lines->push_back(line);
  return 0;
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

// ---- errors -------------------------------------------------------------------------------------------
void quiet_errors() {
  static bool done = false;
  if (done) return;
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
  done = true;
}

std::string take_error_text() {
  std::vector<std::string> lines;
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_DOWNWARD, collect_error, &lines);
  H5Eclear2(H5E_DEFAULT);
  // The innermost entries say what actually went wrong ("truncated file", "Fletcher32 checksum ...").
  const size_t keep = 3;
  const size_t first = lines.size() > keep ? lines.size() - keep : 0;
  // MPI-IO's failed write is "file write failed (Write failed)" at two levels of the stack: said once.
  std::string text;
  for (size_t i = lines.size(); i-- > first;)
    if (std::find(lines.begin() + static_cast<std::ptrdiff_t>(i) + 1, lines.end(), lines[i]) == lines.end())
      text += (text.empty() ? "" : "; ") + lines[i];
  return text;
}

void throw_input(const std::string& context) {
  const std::string detail = take_error_text();
  throw InputError(detail.empty() ? context : context + ": " + detail);
}

void throw_internal(const std::string& context) {
  const std::string detail = take_error_text();
  std::ostringstream message;
  message << "HDF5: " << context;
  if (!detail.empty()) message << ": " << detail;
  message << " (rank " << process_rank() << " on " << process_host() << ")";
  throw InternalError(message.str());
}

// ---- handles ------------------------------------------------------------------------------------------
Handle::Handle(Handle&& other) noexcept : id_(other.id_), closer_(other.closer_) {
  other.id_ = H5I_INVALID_HID;
}

Handle& Handle::operator=(Handle&& other) noexcept {
  if (this != &other) {
    if (valid() && closer_) closer_(id_);
    id_ = other.id_;
    closer_ = other.closer_;
    other.id_ = H5I_INVALID_HID;
  }
  return *this;
}

Handle::~Handle() {
  if (valid() && closer_) closer_(id_);
}

void Handle::close(const std::string& context) {
  if (!valid()) return;
  const hid_t id = id_;
  id_ = H5I_INVALID_HID;
  if (closer_ && closer_(id) < 0) throw_internal("closing " + context);
}

hid_t Handle::release() {
  const hid_t id = id_;
  id_ = H5I_INVALID_HID;
  return id;
}

// ---- types --------------------------------------------------------------------------------------------
std::string to_string(ElementType type) {
  switch (type) {
    case ElementType::f16: return "float16";
    case ElementType::f32: return "float32";
    case ElementType::f64: return "float64";
    case ElementType::u8: return "uint8";
    case ElementType::i8: return "int8";
    case ElementType::u16: return "uint16";
    case ElementType::i32: return "int32";
    case ElementType::i64: return "int64";
    case ElementType::u64: return "uint64";
    case ElementType::string: return "string";
    case ElementType::other: return "other";
  }
  return "?";
}

hid_t native_type(ElementType type) {
  switch (type) {
    case ElementType::f16:
    case ElementType::f32: return H5T_NATIVE_FLOAT;
    case ElementType::f64: return H5T_NATIVE_DOUBLE;
    case ElementType::u8: return H5T_NATIVE_UINT8;
    case ElementType::i8: return H5T_NATIVE_INT8;
    case ElementType::u16: return H5T_NATIVE_UINT16;
    case ElementType::i32: return H5T_NATIVE_INT32;
    case ElementType::i64: return H5T_NATIVE_INT64;
    case ElementType::u64: return H5T_NATIVE_UINT64;
    default: throw InternalError("no native type for element type " + to_string(type));
  }
}

Handle make_f16_file_type() {
  // The recipe h5py uses for numpy float16: sign bit 15, exponent bits 10-14 (bias 15), mantissa 0-9.
  Handle type(H5Tcopy(H5T_IEEE_F32LE), H5Tclose);
  if (!type.valid() || H5Tset_fields(type.id(), 15, 10, 5, 0, 10) < 0 || H5Tset_size(type.id(), 2) < 0 ||
      H5Tset_ebias(type.id(), 15) < 0)
    throw_internal("building the float16 type");
  return type;
}

// ---- property lists -----------------------------------------------------------------------------------
PropertyList PropertyList::file_access(MPI_Comm comm) {
  Handle plist(H5Pcreate(H5P_FILE_ACCESS), H5Pclose);
  if (!plist.valid()) throw_internal("H5Pcreate(H5P_FILE_ACCESS)");
  if (comm != MPI_COMM_NULL && H5Pset_fapl_mpio(plist.id(), comm, MPI_INFO_NULL) < 0)
    throw_internal("H5Pset_fapl_mpio");
  return PropertyList(std::move(plist));
}

PropertyList PropertyList::transfer(Transfer mode, bool parallel) {
  Handle plist(H5Pcreate(H5P_DATASET_XFER), H5Pclose);
  if (!plist.valid()) throw_internal("H5Pcreate(H5P_DATASET_XFER)");
  if (parallel &&
      H5Pset_dxpl_mpio(plist.id(), mode == Transfer::collective ? H5FD_MPIO_COLLECTIVE : H5FD_MPIO_INDEPENDENT) < 0)
    throw_internal("H5Pset_dxpl_mpio");
  return PropertyList(std::move(plist));
}

PropertyList PropertyList::link_create() {
  Handle plist(H5Pcreate(H5P_LINK_CREATE), H5Pclose);
  if (!plist.valid() || H5Pset_create_intermediate_group(plist.id(), 1) < 0)
    throw_internal("link creation property list");
  return PropertyList(std::move(plist));
}

// ---- dataspaces ---------------------------------------------------------------------------------------
Dataspace Dataspace::simple(const Shape& dims) {
  if (dims.empty()) return scalar();
  const std::vector<hsize_t> extents = to_hsize(dims);
  Handle space(H5Screate_simple(static_cast<int>(extents.size()), extents.data(), nullptr), H5Sclose);
  if (!space.valid()) throw_internal("H5Screate_simple " + to_string(dims));
  return Dataspace(std::move(space));
}

Dataspace Dataspace::scalar() {
  Handle space(H5Screate(H5S_SCALAR), H5Sclose);
  if (!space.valid()) throw_internal("H5Screate(H5S_SCALAR)");
  return Dataspace(std::move(space));
}

Shape Dataspace::dims() const {
  const int rank = H5Sget_simple_extent_ndims(id());
  if (rank < 0) throw_internal("H5Sget_simple_extent_ndims");
  std::vector<hsize_t> extents(static_cast<size_t>(rank));
  if (rank > 0 && H5Sget_simple_extent_dims(id(), extents.data(), nullptr) < 0)
    throw_internal("H5Sget_simple_extent_dims");
  return to_shape(extents);
}

void Dataspace::select_box(const Shape& start, const Shape& count) {
  if (start.size() != count.size())
    throw InternalError("select_box: start " + to_string(start) + " and count " + to_string(count));
  if (start.empty()) return select_all();
  for (int64_t extent : count)
    if (extent == 0) return select_none();
  const std::vector<hsize_t> first = to_hsize(start);
  const std::vector<hsize_t> extents = to_hsize(count);
  if (H5Sselect_hyperslab(id(), H5S_SELECT_SET, first.data(), nullptr, extents.data(), nullptr) < 0)
    throw_internal("H5Sselect_hyperslab start " + to_string(start) + " count " + to_string(count));
}

void Dataspace::select_none() {
  if (H5Sselect_none(id()) < 0) throw_internal("H5Sselect_none");
}

void Dataspace::select_all() {
  if (H5Sselect_all(id()) < 0) throw_internal("H5Sselect_all");
}

int64_t Dataspace::selected_count() const {
  const hssize_t count = H5Sget_select_npoints(id());
  if (count < 0) throw_internal("H5Sget_select_npoints");
  return static_cast<int64_t>(count);
}

// ---- objects ------------------------------------------------------------------------------------------
std::string Where::describe() const {
  if (path.empty() || path == "/") return file;
  return file + ": " + path;
}

bool Object::has_attribute(const std::string& name) const {
  const htri_t exists = H5Aexists(id(), name.c_str());
  if (exists < 0) throw_input(where_.describe() + ": attribute " + name);
  return exists > 0;
}

namespace {
void write_attribute_raw(hid_t object, const Where& where, const std::string& name, hid_t file_type,
                         const Dataspace& space, hid_t memory_type, const void* value) {
  if (H5Aexists(object, name.c_str()) > 0 && H5Adelete(object, name.c_str()) < 0)
    throw_internal(where.describe() + ": replacing attribute " + name);
  Handle attribute(H5Acreate2(object, name.c_str(), file_type, space.id(), H5P_DEFAULT, H5P_DEFAULT), H5Aclose);
  if (!attribute.valid()) throw_internal(where.describe() + ": creating attribute " + name);
  if (H5Awrite(attribute.id(), memory_type, value) < 0) throw_internal(where.describe() + ": writing attribute " + name);
  attribute.close(where.describe() + ": attribute " + name);
}

// Opens attribute `name` of `object`; InputError when it is missing.
Handle open_attribute(hid_t object, const Where& where, const std::string& name) {
  const htri_t exists = H5Aexists(object, name.c_str());
  if (exists <= 0) {
    take_error_text();
    throw InputError(where.describe() + ": missing attribute '" + name + "'");
  }
  Handle attribute(H5Aopen(object, name.c_str(), H5P_DEFAULT), H5Aclose);
  if (!attribute.valid()) throw_input(where.describe() + ": attribute '" + name + "'");
  return attribute;
}

int64_t attribute_points(hid_t attribute) {
  Handle space(H5Aget_space(attribute), H5Sclose);
  return static_cast<int64_t>(H5Sget_simple_extent_npoints(space.id()));
}

herr_t collect_attribute_name(hid_t, const char* name, const H5A_info_t*, void* client) {
  static_cast<std::vector<std::string>*>(client)->push_back(name);
  return 0;
}

// Attribute `name`, which must be one integer (else InputError); whether it is unsigned goes to `unsigned_type`.
Handle open_one_integer(hid_t object, const Where& where, const std::string& name, bool& unsigned_type) {
  Handle attribute = open_attribute(object, where, name);
  Handle type(H5Aget_type(attribute.id()), H5Tclose);
  if (H5Tget_class(type.id()) != H5T_INTEGER || attribute_points(attribute.id()) != 1)
    throw InputError(where.describe() + ": attribute '" + name + "' is not one integer");
  unsigned_type = H5Tget_sign(type.id()) == H5T_SGN_NONE;
  return attribute;
}

}  // namespace

void Object::write_attribute(const std::string& name, int64_t value) {
  write_attribute_raw(id(), where_, name, H5T_STD_I64LE, Dataspace::scalar(), H5T_NATIVE_INT64, &value);
}

void Object::write_attribute(const std::string& name, double value) {
  write_attribute_raw(id(), where_, name, H5T_IEEE_F64LE, Dataspace::scalar(), H5T_NATIVE_DOUBLE, &value);
}

void Object::write_attribute(const std::string& name, const std::string& value) {
  Handle type = fixed_string_type(value.size());
  std::string padded = value.empty() ? std::string(1, '\0') : value;
  write_attribute_raw(id(), where_, name, type.id(), Dataspace::scalar(), type.id(), padded.data());
}

void Object::write_attribute(const std::string& name, const std::vector<int64_t>& values) {
  const int64_t dummy = 0;
  write_attribute_raw(id(), where_, name, H5T_STD_I64LE, Dataspace::simple({static_cast<int64_t>(values.size())}),
                      H5T_NATIVE_INT64, values.empty() ? &dummy : values.data());
}

int64_t Object::read_int64_attribute(const std::string& name) const {
  bool unsigned_type = false;
  const Handle attribute = open_one_integer(id(), where_, name, unsigned_type);
  int64_t value = 0;
  if (H5Aread(attribute.id(), H5T_NATIVE_INT64, &value) < 0) throw_input(where_.describe() + ": attribute " + name);
  return value;
}

uint64_t Object::read_bits64_attribute(const std::string& name) const {
  bool unsigned_type = false;
  const Handle attribute = open_one_integer(id(), where_, name, unsigned_type);
  // Read as what it is: HDF5's conversion of a uint64 >= 2^63 to int64 (or of a negative int64 to uint64)
  // clamps it.
  uint64_t bits = 0;
  if (unsigned_type) {
    if (H5Aread(attribute.id(), H5T_NATIVE_UINT64, &bits) < 0) throw_input(where_.describe() + ": attribute " + name);
    return bits;
  }
  int64_t value = 0;
  if (H5Aread(attribute.id(), H5T_NATIVE_INT64, &value) < 0) throw_input(where_.describe() + ": attribute " + name);
  std::memcpy(&bits, &value, sizeof bits);
  return bits;
}

double Object::read_double_attribute(const std::string& name) const {
  Handle attribute = open_attribute(id(), where_, name);
  Handle type(H5Aget_type(attribute.id()), H5Tclose);
  const H5T_class_t type_class = H5Tget_class(type.id());
  if ((type_class != H5T_INTEGER && type_class != H5T_FLOAT) || attribute_points(attribute.id()) != 1)
    throw InputError(where_.describe() + ": attribute '" + name + "' is not one number");
  double value = 0;
  if (H5Aread(attribute.id(), H5T_NATIVE_DOUBLE, &value) < 0) throw_input(where_.describe() + ": attribute " + name);
  return value;
}

std::string Object::read_string_attribute(const std::string& name) const {
  Handle attribute = open_attribute(id(), where_, name);
  Handle type(H5Aget_type(attribute.id()), H5Tclose);
  if (attribute_points(attribute.id()) != 1)
    throw InputError(where_.describe() + ": attribute '" + name + "' is not one string");
  return read_text(
      type.id(), [&](hid_t memory, void* buffer) { return H5Aread(attribute.id(), memory, buffer); },
      where_.describe() + ": attribute '" + name + "'");
}

std::vector<int64_t> Object::read_int64s_attribute(const std::string& name) const {
  Handle attribute = open_attribute(id(), where_, name);
  Handle type(H5Aget_type(attribute.id()), H5Tclose);
  if (H5Tget_class(type.id()) != H5T_INTEGER)
    throw InputError(where_.describe() + ": attribute '" + name + "' is not integers");
  std::vector<int64_t> values(static_cast<size_t>(attribute_points(attribute.id())));
  int64_t dummy = 0;
  if (H5Aread(attribute.id(), H5T_NATIVE_INT64, values.empty() ? &dummy : values.data()) < 0)
    throw_input(where_.describe() + ": attribute " + name);
  return values;
}

std::vector<std::string> Object::attribute_names() const {
  std::vector<std::string> names;
  hsize_t index = 0;
  if (H5Aiterate2(id(), H5_INDEX_NAME, H5_ITER_INC, &index, collect_attribute_name, &names) < 0)
    throw_input(where_.describe() + ": listing attributes");
  return names;
}

// ---- datasets -----------------------------------------------------------------------------------------
namespace {
// A dataset with no elements has no storage, and HDF5 fails a transfer to it even with empty
// selections. Its extent is the same on every rank, so every rank skips the collective together.
bool holds_nothing(const Dataspace& file) {
  const hssize_t points = H5Sget_simple_extent_npoints(file.id());
  return points == 0;
}
}  // namespace

Dataspace Dataset::file_space() const {
  Handle space(H5Dget_space(id()), H5Sclose);
  if (!space.valid()) throw_input(where_.describe() + ": dataspace");
  return Dataspace(std::move(space));
}

Shape Dataset::shape() const { return file_space().dims(); }

Handle Dataset::datatype() const {
  Handle type(H5Dget_type(id()), H5Tclose);
  if (!type.valid()) throw_input(where_.describe() + ": datatype");
  return type;
}

ElementType Dataset::element_type() const { return classify(datatype().id()); }

std::string Dataset::dtype_name() const {
  const Handle type = datatype();
  const ElementType known = classify(type.id());
  if (known != ElementType::other) return to_string(known);
  const std::string bits = std::to_string(8 * H5Tget_size(type.id()));
  switch (H5Tget_class(type.id())) {
    case H5T_INTEGER: return (H5Tget_sign(type.id()) == H5T_SGN_2 ? "int" : "uint") + bits;
    case H5T_FLOAT: return "float" + bits;
    case H5T_COMPOUND: return "compound (" + bits + " bits)";
    case H5T_ENUM: return "enum";
    case H5T_ARRAY: return "array";
    case H5T_VLEN: return "variable-length sequence";
    case H5T_OPAQUE: return "opaque";
    case H5T_BITFIELD: return "bitfield" + bits;
    case H5T_REFERENCE: return "reference";
    case H5T_TIME: return "time";
    default: return "an unknown HDF5 type class";
  }
}

size_t Dataset::element_bytes() const {
  return H5Tget_size(datatype().id());
}

bool Dataset::virtual_layout() const {
  Handle plist(H5Dget_create_plist(id()), H5Pclose);
  return plist.valid() && H5Pget_layout(plist.id()) == H5D_VIRTUAL;
}

bool Dataset::checksummed() const {
  Handle plist(H5Dget_create_plist(id()), H5Pclose);
  if (!plist.valid()) return false;
  const int filters = H5Pget_nfilters(plist.id());
  for (int i = 0; i < filters; ++i) {
    unsigned flags = 0;
    size_t count = 0;
    unsigned config = 0;
    if (H5Pget_filter2(plist.id(), static_cast<unsigned>(i), &flags, &count, nullptr, 0, nullptr, &config) ==
        H5Z_FILTER_FLETCHER32)
      return true;
  }
  return false;
}

int64_t Dataset::storage_bytes() const { return static_cast<int64_t>(H5Dget_storage_size(id())); }

void Dataset::read(hid_t memory_type, const Dataspace& memory, const Dataspace& file, void* buffer,
                   Transfer mode) const {
  if (holds_nothing(file)) return;
  // A filtered dataset is read independently: HDF5 1.10's collective read of filtered chunks ignores
  // each chunk's filter mask, so a chunk stored with a filter skipped (h5py stores lzf / szip chunks that
  // do not shrink so) was "decompressed" anyway: wrong values with exit 0, or a filter's error, on 2+
  // ranks only. Reading needs no collective (writes do: this project's are unfiltered or collective).
  if (mode == Transfer::collective && parallel()) {
    Handle plist(H5Dget_create_plist(id()), H5Pclose);
    if (plist.valid() && H5Pget_nfilters(plist.id()) > 0) mode = Transfer::independent;
  }
  const PropertyList transfer = PropertyList::transfer(mode, parallel());
  float dummy = 0;  // HDF5 rejects a null buffer even for an empty selection on some paths
  if (H5Dread(id(), memory_type, memory.id(), file.id(), transfer.id(), buffer ? buffer : &dummy) >= 0) return;
  // In words, where HDF5's stack does not say it plainly: a filter this HDF5 lacks (h5py's lzf, say:
  // HDF5 tells of the plugin directory it searched), and a checksum that does not match.
  const std::string detail = take_error_text();
  Handle plist(H5Dget_create_plist(id()), H5Pclose);
  const int filters = plist.valid() ? H5Pget_nfilters(plist.id()) : 0;
  for (int i = 0; i < filters; ++i) {
    unsigned flags = 0, config = 0;
    size_t values = 0;
    char name[64] = {};
    const H5Z_filter_t filter = H5Pget_filter2(plist.id(), static_cast<unsigned>(i), &flags, &values, nullptr,
                                               sizeof name, name, &config);
    if (filter >= 0 && H5Zfilter_avail(filter) <= 0)
      throw InputError(where_.describe() + ": stored with HDF5 filter " + std::to_string(filter) +
                       (name[0] ? " (" + std::string(name) + ")" : "") +
                       ", which this HDF5 cannot decode: rewrite it without that filter (h5repack -f NONE), or "
                       "with gzip, which every HDF5 reads");
  }
  if (detail.find("Fletcher32") != std::string::npos)
    throw ReadFailure(where_.describe() + ": read failed: Fletcher32 checksum mismatch (damaged on disk)");
  throw ReadFailure(detail.empty() ? where_.describe() + ": read failed" : where_.describe() + ": read failed: " + detail);
}

void Dataset::write(hid_t memory_type, const Dataspace& memory, const Dataspace& file, const void* buffer,
                    Transfer mode) {
  if (holds_nothing(file)) return;
  const PropertyList transfer = PropertyList::transfer(mode, parallel());
  const float dummy = 0;
  if (H5Dwrite(id(), memory_type, memory.id(), file.id(), transfer.id(), buffer ? buffer : &dummy) < 0)
    throw_internal(where_.describe() + ": write failed");
}

void Dataset::set_extent(const Shape& dims) {
  const std::vector<hsize_t> extents = to_hsize(dims);
  if (H5Dset_extent(id(), extents.data()) < 0) throw_internal(where_.describe() + ": set_extent " + to_string(dims));
}

std::string Dataset::read_string() const {
  const Handle type = datatype();
  if (file_space().selected_count() != 1) throw InputError(where_.describe() + ": not a single string");
  // Every rank reads the whole (small) value: an independent read is enough and needs no partners.
  const PropertyList transfer = PropertyList::transfer(Transfer::independent, parallel());
  return read_text(
      type.id(),
      [&](hid_t memory, void* buffer) { return H5Dread(id(), memory, H5S_ALL, H5S_ALL, transfer.id(), buffer); },
      where_.describe());
}

void Dataset::require_rank(size_t min_rank, size_t max_rank) const {
  const Shape dims = shape();
  if (dims.size() < min_rank || dims.size() > max_rank) {
    std::ostringstream message;
    message << where_.describe() << ": has rank " << dims.size() << " (shape " << to_string(dims)
            << "), expected ";
    if (min_rank == max_rank)
      message << "rank " << min_rank;
    else
      message << "rank " << min_rank << " to " << max_rank;
    throw InputError(message.str());
  }
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
}  // namespace

bool Group::has_dataset(const std::string& name) const {
  return has(name) && object_kind(id(), name) == H5I_DATASET;
}

bool Group::has_group(const std::string& name) const { return has(name) && object_kind(id(), name) == H5I_GROUP; }

Dataset Group::open_dataset(const std::string& name) const {
  const Where where{where_.file, child_path(name)};
  if (!has(name)) throw InputError(where_.file + ": no dataset '" + where.path + "'");
  std::string error;
  const H5I_type_t kind = object_kind(id(), name, &error);
  if (kind == H5I_BADID) throw_unopenable(id(), name, where, error);
  if (kind != H5I_DATASET) throw InputError(where.describe() + " is not a dataset");
  Handle dataset(H5Dopen2(id(), name.c_str(), H5P_DEFAULT), close_dataset_noting_failure);  // written too, in r+ files
  if (!dataset.valid()) throw_input(where.describe() + ": cannot open dataset");
  return Dataset(std::move(dataset), where, comm_);
}

Group Group::open_group(const std::string& name) const {
  const Where where{where_.file, child_path(name)};
  if (!has(name)) throw InputError(where_.file + ": no group '" + where.path + "'");
  std::string error;
  const H5I_type_t kind = object_kind(id(), name, &error);
  if (kind == H5I_BADID) throw_unopenable(id(), name, where, error);
  if (kind != H5I_GROUP) throw InputError(where.describe() + " is not a group");
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
  if (!parent.empty() && !std::filesystem::is_directory(parent))
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
  if (!std::filesystem::exists(path, error)) throw InputError(path + ": no such file");
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
      throw InputError(path + ": locked by a process that has it open for writing (HDF5 file locking); wait for "
                       "it to close the file. With no such process running (a stale lock on a "
                       "network file system), HDF5_USE_FILE_LOCKING=FALSE skips the lock");
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
