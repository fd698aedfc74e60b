// h5.hpp's errors, handles, types, property lists, dataspaces, attributes and datasets (groups and files:
// h5_files.cpp).
#include "io/h5.hpp"

#include <algorithm>
#include <cstring>
#include <limits>
#include <sstream>
#include <vector>

#include "io/durable.hpp"
#include "io/h5_internal.hpp"
#include "runtime/core/check.hpp"

namespace longctx::io::h5 {
namespace detail {

std::vector<hsize_t> to_hsize(const Shape& shape) {
  std::vector<hsize_t> out(shape.size());
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] < 0) throw InternalError("negative extent in " + to_string(shape));
    out[i] = static_cast<hsize_t>(shape[i]);
  }
  return out;
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

Handle fixed_string_type(size_t bytes) {
  Handle type(H5Tcopy(H5T_C_S1), H5Tclose);
  if (!type.valid()) throw_internal("H5Tcopy(H5T_C_S1)");
  if (H5Tset_size(type.id(), std::max<size_t>(bytes, 1)) < 0 || H5Tset_strpad(type.id(), H5T_STR_NULLPAD) < 0)
    throw_internal("fixed-length string type");
  return type;
}

}  // namespace detail

namespace {

using detail::file_type_of;
using detail::fixed_string_type;
using detail::to_hsize;

Shape to_shape(const std::vector<hsize_t>& dims) {
  Shape out(dims.size());
  for (size_t i = 0; i < dims.size(); ++i) out[i] = static_cast<int64_t>(dims[i]);
  return out;
}

ElementType classify(hid_t type) {
  const H5T_class_t type_class = H5Tget_class(type);
  const size_t bytes = H5Tget_size(type);
  if (type_class == H5T_FLOAT) {
    // The layouts float32 holds every value of: IEEE half and bfloat16 (2 bytes), IEEE single (4 bytes), with
    // an exponent bias that keeps their largest below float32's (before: any 2-byte float was float16, and
    // one of 9 exponent bits overflowed to inf in the conversion, said as the file's value; from the attend
    // audit). Another layout is `other`: its readers refuse it, naming it (dtype_name).
    size_t sign = 0, exponent_at = 0, exponent_bits = 0, mantissa_at = 0, mantissa_bits = 0;
    H5Tget_fields(type, &sign, &exponent_at, &exponent_bits, &mantissa_at, &mantissa_bits);
    const size_t bias = H5Tget_ebias(type);
    const bool half = exponent_bits == 5 && mantissa_bits == 10, brain = exponent_bits == 8 && mantissa_bits == 7;
    const bool single = exponent_bits == 8 && mantissa_bits == 23;
    if (bytes == 2 && (half || (brain && bias >= 127))) return ElementType::f16;
    if (bytes == 4 && single && bias >= 127) return ElementType::f32;
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
  // The header that holds what was read (a group's attributes and links) is damaged, not that item alone
  // (before: "attribute format: incorrect metadata checksum ...", as if that attribute were at fault; from
  // the ckpt audit).
  if (detail.find("metadata checksum") != std::string::npos)
    throw InputError(context + ": damaged on disk: the HDF5 metadata that holds it fails its checksum (" + detail +
                     ")");
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
  if (unsigned_type) {  // HDF5's conversion clamps a uint64 >= 2^63 to int64's largest: said as it is stored
    uint64_t bits = 0;
    if (H5Aread(attribute.id(), H5T_NATIVE_UINT64, &bits) < 0) throw_input(where_.describe() + ": attribute " + name);
    if (bits > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
      throw InputError(where_.describe() + ": attribute " + name + " is " + std::to_string(bits) +
                       ", more than int64 holds");
    return static_cast<int64_t>(bits);
  }
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
bool Dataset::holds_integers() const { return H5Tget_class(datatype().id()) == H5T_INTEGER; }

std::string Dataset::dtype_name() const {
  const Handle type = datatype();
  const ElementType known = classify(type.id());
  if (known != ElementType::other) return to_string(known);
  const std::string bits = std::to_string(8 * H5Tget_size(type.id()));
  switch (H5Tget_class(type.id())) {
    case H5T_INTEGER: return (H5Tget_sign(type.id()) == H5T_SGN_2 ? "int" : "uint") + bits;
    case H5T_FLOAT: {
      size_t sign = 0, exponent_at = 0, exponent_bits = 0, mantissa_at = 0, mantissa_bits = 0;
      H5Tget_fields(type.id(), &sign, &exponent_at, &exponent_bits, &mantissa_at, &mantissa_bits);
      return "float" + bits + " of " + std::to_string(exponent_bits) + " exponent bits (bias " +
             std::to_string(H5Tget_ebias(type.id())) + ") and " + std::to_string(mantissa_bits) + " mantissa bits";
    }
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
  // A filter (gzip, szip, ...) that cannot decode a stored chunk, its filter being there: the chunk's bytes
  // are not what it wrote (before: HDF5's words alone, "inflate() failed (Unable to initialize object)").
  if (detail.find("filter returned failure during read") != std::string::npos)
    throw ReadFailure(where_.describe() + ": read failed: a compressed chunk does not decode (damaged on disk?): " +
                      detail);
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
    // A null dataspace (h5py.Empty) holds no value at all: not a scalar (before: "has rank 0 (shape [])").
    if (H5Sget_simple_extent_type(file_space().id()) == H5S_NULL)
      message << where_.describe() << ": is empty (a null dataspace: no values, not even one), expected ";
    else
      message << where_.describe() << ": has rank " << dims.size() << " (shape " << to_string(dims) << "), expected ";
    if (min_rank == max_rank)
      message << "rank " << min_rank;
    else
      message << "rank " << min_rank << " to " << max_rank;
    throw InputError(message.str());
  }
}

}  // namespace longctx::io::h5
