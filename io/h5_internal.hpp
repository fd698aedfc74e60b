// What h5.cpp and h5_files.cpp share of h5.hpp's implementation (io-internal).
#pragma once

#include <hdf5.h>

#include <vector>

#include "io/h5.hpp"

namespace longctx::io::h5::detail {

// A shape's extents as HDF5's dims (InternalError for a negative one).
std::vector<hsize_t> to_hsize(const Shape& shape);
// The little-endian file type longctx writes for `type`.
hid_t file_type_of(ElementType type);
// A fixed-length, null-padded string type of `bytes` (at least 1).
Handle fixed_string_type(size_t bytes);

}  // namespace longctx::io::h5::detail
