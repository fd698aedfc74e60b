// Whether a dataset's bytes are really there before anything reads them: Dataset::require_allocated and its
// checks of external storage (files that must exist and be long enough) and virtual datasets (sources that
// must exist, hold their selections and be allocated themselves). HDF5 reads what is missing as fill values
// without a word; these turn it into an InputError naming the dataset and what is missing.
#include <algorithm>
#include <array>
#include <cstdlib>
#include <filesystem>
#include <set>
#include <string>
#include <vector>

#include "io/durable.hpp"
#include "io/h5.hpp"
#include "runtime/core/check.hpp"

namespace longctx::io::h5 {

void Dataset::require_allocated() const { require_allocated(0, nullptr); }

void Dataset::require_allocated(const RowBlock& only) const { require_allocated(0, &only); }

void Dataset::require_allocated(int depth, const RowBlock* only) const {
  const Shape dims = shape();
  if (element_count(dims) == 0) return;  // nothing to store
  Handle plist(H5Dget_create_plist(id()), H5Pclose);
  if (!plist.valid()) throw_input(where_.describe() + ": creation properties");
  const H5D_layout_t layout = H5Pget_layout(plist.id());
  if (layout == H5D_VIRTUAL) {
    require_virtual_sources(depth, only);
    return;
  }
  if (H5Pget_external_count(plist.id()) > 0) {
    require_external_files(plist.id());
    return;
  }
  // Chunks are counted: H5Dget_space_status compares stored bytes with unfiltered chunk bytes, so a
  // Fletcher32 dataset (4 more bytes a chunk) never reads as fully allocated.
  if (layout == H5D_CHUNKED) {
    std::array<hsize_t, H5S_MAX_RANK> chunk{};  // (a std::vector here made GCC 12 warn falsely, -Wfree-nonheap-object)
    const int rank = static_cast<int>(dims.size());
    if (rank > H5S_MAX_RANK || H5Pget_chunk(plist.id(), rank, chunk.data()) != rank)
      throw_input(where_.describe() + ": chunk shape");
    const auto coordinates = [&](const hsize_t* at) {
      std::string text;
      for (int j = 0; j < rank; ++j) text += (j ? "," : "") + std::to_string(at[j]);
      return "(" + text + ")";
    };
    const std::string chunk_text = coordinates(chunk.data());
    const Dataspace space = file_space();
    // HDF5 refuses, when it creates a dataset, a chunk longer than a fixed (not extendible) dimension;
    // reading one, HDF5 1.10 takes it and reads past the end of each decompressed chunk (a crash, or
    // garbage): the layout is damaged (one flipped bit in a version-1 object header, which has no checksum).
    std::array<hsize_t, H5S_MAX_RANK> extent{}, max_extent{};
    if (H5Sget_simple_extent_dims(space.id(), extent.data(), max_extent.data()) != rank)
      throw_input(where_.describe() + ": extent");
    hsize_t needed = 1;
    for (size_t i = 0; i < dims.size(); ++i) {
      if (chunk[i] == 0) throw InputError(where_.describe() + ": chunk shape has a zero extent");
      if (max_extent[i] != H5S_UNLIMITED && chunk[i] > max_extent[i])
        throw InputError(where_.describe() + ": damaged layout: chunk shape " + chunk_text +
                         " is longer than the dataset's fixed dimension " + std::to_string(i) + " (" +
                         std::to_string(max_extent[i]) + "), which HDF5 never writes");
      needed *= (static_cast<hsize_t>(dims[i]) + chunk[i] - 1) / chunk[i];
    }
    hsize_t stored = 0;
    if (H5Dget_num_chunks(id(), space.id(), &stored) < 0)
      throw_input(where_.describe() + ": counting chunks");
    if (stored < needed)
      throw InputError(where_.describe() + ": " + std::to_string(stored) + " of " + std::to_string(needed) +
                       " chunks are stored (damaged chunk index, or never written): the rest would read as "
                       "fill values");
    // An extensible-array chunk index (libver latest, one unlimited dimension) over another dimension than
    // the first: HDF5 1.10's lookups by index and by coordinates give wrong answers there (no chunk at the
    // grid's last, which h5py reads back whole), so only the count above is checked (before: a sound file
    // was refused as damaged, exit 3; from the attend audit).
    H5D_chunk_index_t index_type = H5D_CHUNK_IDX_BTREE;
    if (H5Dget_chunk_index_type(id(), &index_type) < 0) throw_input(where_.describe() + ": chunk index type");
    if (index_type == H5D_CHUNK_IDX_EARRAY && max_extent[0] != H5S_UNLIMITED) return;
    // A chunk shape that disagrees with the stored chunks (one flipped bit in a layout message, whose
    // object header has no checksum) makes HDF5 read each stored chunk as other rows, past its end.
    const auto damaged = [&](const std::string& what) {
      throw InputError(where_.describe() + ": damaged layout or chunk index: " + what + " (chunk shape " +
                       chunk_text + ")");
    };
    if (stored > needed) {
      // Extra chunks lie past the extent (a direct chunk write beyond it leaves them, and HDF5 ignores
      // them), or the chunk shape is damaged: then stored chunks fall on one grid position. The first
      // 1024 are looked at (HDF5 1.10 walks the index to the i-th chunk for each).
      std::set<std::vector<hsize_t>> seen;
      for (hsize_t i = 0; i < std::min<hsize_t>(stored, 1024); ++i) {
        std::array<hsize_t, H5S_MAX_RANK> at{};
        unsigned filter_mask = 0;
        haddr_t address = HADDR_UNDEF;
        hsize_t bytes = 0;
        if (H5Dget_chunk_info(id(), space.id(), i, at.data(), &filter_mask, &address, &bytes) < 0)
          throw_input(where_.describe() + ": reading stored chunk " + std::to_string(i) + " of the chunk index");
        bool on_grid = true;
        for (int j = 0; j < rank; ++j) on_grid = on_grid && at[size_t(j)] % chunk[size_t(j)] == 0;
        if (!on_grid || !seen.emplace(at.begin(), at.begin() + rank).second)
          damaged(std::to_string(stored) + " chunks are stored where the chunk grid has " + std::to_string(needed) +
                  ", two of them at " + coordinates(at.data()));
      }
    }
    // A chunk dimension that grew with the count unchanged puts the grid's last chunk beyond every stored
    // one. One lookup (HDF5 1.10 finds a chunk by coordinates by walking the whole index).
    std::array<hsize_t, H5S_MAX_RANK> last{};
    for (int i = 0; i < rank; ++i)
      last[size_t(i)] = (static_cast<hsize_t>(dims[size_t(i)]) - 1) / chunk[size_t(i)] * chunk[size_t(i)];
    unsigned filter_mask = 0;
    haddr_t address = HADDR_UNDEF;
    hsize_t bytes = 0;
    if (H5Dget_chunk_info_by_coord(id(), last.data(), &filter_mask, &address, &bytes) < 0)
      throw_input(where_.describe() + ": looking up the chunk at " + coordinates(last.data()));
    if (address == HADDR_UNDEF)
      damaged("no chunk is stored at " + coordinates(last.data()) + ", the last of the chunk grid, while the " +
              "index holds " + std::to_string(stored) + " chunks (the grid has " + std::to_string(needed) + ")");
    return;
  }
  H5D_space_status_t status = H5D_SPACE_STATUS_ERROR;
  if (H5Dget_space_status(id(), &status) < 0) throw_input(where_.describe() + ": storage status");
  if (status != H5D_SPACE_STATUS_ALLOCATED)
    throw InputError(where_.describe() + ": storage is not fully allocated (damaged, or never written): " +
                     (status == H5D_SPACE_STATUS_NOT_ALLOCATED ? "all" : "part") + " of it would read as fill values");
}

namespace {

// The text a property-list getter writes (H5Pget_virtual_filename style: length first, then the text).
template <class Getter>
std::string property_text(Getter get) {
  const ssize_t length = get(nullptr, 0);
  if (length <= 0) return "";
  std::string text(static_cast<size_t>(length) + 1, '\0');
  if (get(text.data(), text.size()) < 0) return "";
  text.resize(static_cast<size_t>(length));
  return text;
}

bool unlimited_selection(hid_t space) {
  if (H5Sget_select_type(space) != H5S_SEL_HYPERSLABS || H5Sis_regular_hyperslab(space) <= 0) return false;
  std::array<hsize_t, H5S_MAX_RANK> start{}, stride{}, count{}, block{};
  if (H5Sget_regular_hyperslab(space, start.data(), stride.data(), count.data(), block.data()) < 0) return false;
  const int rank = H5Sget_simple_extent_ndims(space);
  for (int i = 0; i < rank; ++i)
    if (count[static_cast<size_t>(i)] == H5S_UNLIMITED || block[static_cast<size_t>(i)] == H5S_UNLIMITED) return true;
  return false;
}

// Adds `space`'s selection to `so_far`'s (same extent). False where it cannot be told (not a hyperslab).
bool add_selection(hid_t so_far, hid_t space) {
  const H5S_sel_type type = H5Sget_select_type(space);
  if (type == H5S_SEL_ALL) return H5Sselect_all(so_far) >= 0;
  if (type == H5S_SEL_NONE) return true;
  if (type != H5S_SEL_HYPERSLABS) return false;
  const hssize_t blocks = H5Sget_select_hyper_nblocks(space);
  if (blocks < 0) return false;
  const int rank = H5Sget_simple_extent_ndims(space);
  std::vector<hsize_t> corners(static_cast<size_t>(blocks) * 2 * static_cast<size_t>(rank));
  if (blocks > 0 && H5Sget_select_hyper_blocklist(space, 0, static_cast<hsize_t>(blocks), corners.data()) < 0)
    return false;
  std::vector<hsize_t> count(static_cast<size_t>(rank));
  for (hssize_t b = 0; b < blocks; ++b) {
    const hsize_t* first = corners.data() + static_cast<size_t>(b) * 2 * static_cast<size_t>(rank);
    const hsize_t* last = first + rank;
    for (int i = 0; i < rank; ++i) count[static_cast<size_t>(i)] = last[i] - first[i] + 1;
    // H5S_SELECT_OR onto an empty selection fails in HDF5 1.10; the first block is SET.
    const H5S_seloper_t op = H5Sget_select_npoints(so_far) == 0 ? H5S_SELECT_SET : H5S_SELECT_OR;
    if (H5Sselect_hyperslab(so_far, op, first, nullptr, count.data(), nullptr) < 0) return false;
  }
  return true;
}

// The absolute directory of `file` ("." made absolute for a bare name), which HDF5's ${ORIGIN} stands for.
std::string origin_of(const std::string& file) {
  std::error_code error;
  const std::filesystem::path directory = directory_of(file);
  const std::filesystem::path absolute = std::filesystem::absolute(directory, error).lexically_normal();
  return (error ? directory : absolute).string();
}

// `prefix` with a leading ${ORIGIN} replaced by `origin`, as HDF5 expands it.
std::string expand_origin(const std::string& prefix, const std::string& origin) {
  return prefix.rfind("${ORIGIN}", 0) == 0 ? origin + prefix.substr(9) : prefix;
}

// Where HDF5 looks for a virtual dataset's source file, in its order (H5F_prefix_open_file, HDF5 1.10 to
// 1.14): an absolute name as it is; then the name (an absolute one's last component) under each
// HDF5_VDS_PREFIX entry (':'-separated), under the dataset access list's prefix, and under the virtual
// dataset's own file's directory (a prefix starting ${ORIGIN} means that directory too); last the name as
// given, from the working directory.
std::vector<std::string> source_file_candidates(const std::string& name, const std::string& vds_file,
                                                const std::string& access_prefix) {
  std::vector<std::string> out;
  std::string base = name;
  if (!name.empty() && name[0] == '/') {
    out.push_back(name);
    base = std::filesystem::path(name).filename().string();
  }
  const std::string origin = origin_of(vds_file);
  const auto under = [&](const std::string& entry) {
    const std::string prefix = expand_origin(entry, origin);
    if (prefix.empty()) return;
    out.push_back((std::filesystem::path(prefix) / base).string());
  };
  if (const char* env = std::getenv("HDF5_VDS_PREFIX")) {
    std::string entries = env;
    for (size_t start = 0; start <= entries.size();) {
      const size_t end = std::min(entries.find(':', start), entries.size());
      under(entries.substr(start, end - start));
      start = end + 1;
    }
  }
  under(access_prefix);
  under(origin);
  out.push_back(base);
  return out;
}

}  // namespace

// External storage: the raw data lies in other files, in order, each from its offset for its size. HDF5
// reads what lies past such a file's end as zeros without a word, and finds a missing file only
// at the read. A relative name is taken under HDF5_EXTFILE_PREFIX, else the access list's prefix (${ORIGIN}:
// this file's directory), else from the working directory (H5D__build_file_prefix, HDF5 1.10 to 1.14).
void Dataset::require_external_files(hid_t create) const {
  const int files = H5Pget_external_count(create);
  hsize_t needed = static_cast<hsize_t>(element_count(shape())) * element_bytes();
  std::string prefix;
  if (const char* env = std::getenv("HDF5_EXTFILE_PREFIX")) {
    prefix = env;
  } else {
    Handle access(H5Dget_access_plist(id()), H5Pclose);
    if (access.valid())
      prefix = property_text([&](char* out, size_t size) { return H5Pget_efile_prefix(access.id(), out, size); });
  }
  prefix = expand_origin(prefix, origin_of(where_.file));
  for (int i = 0; i < files && needed > 0; ++i) {
    std::array<char, 4096> name{};
    off_t offset = 0;
    hsize_t size = 0;
    if (H5Pget_external(create, static_cast<unsigned>(i), name.size(), name.data(), &offset, &size) < 0)
      throw_input(where_.describe() + ": reading its external storage list");
    name.back() = '\0';
    const std::string file_name = name.data();
    const std::string path = file_name.empty() || file_name[0] == '/' || prefix.empty()
                                 ? file_name
                                 : (std::filesystem::path(prefix) / file_name).string();
    const hsize_t part = size == H5F_UNLIMITED ? needed : std::min(size, needed);
    const std::string what = where_.describe() + ": its external storage file " + std::to_string(i + 1) + " of " +
                             std::to_string(files) + ", '" + file_name + "'";
    std::error_code error;
    const auto status = std::filesystem::status(path, error);
    if (!std::filesystem::exists(status))
      throw InputError(what + ", is not there (looked for '" + path + "'" +
                       (prefix.empty() ? "; a relative name is taken from the working directory, or under "
                                         "HDF5_EXTFILE_PREFIX" : "") + ")");
    const std::string found = path == file_name ? "" : " ('" + path + "')";
    if (!std::filesystem::is_regular_file(status)) throw InputError(what + found + " is not a regular file");
    const uintmax_t bytes = std::filesystem::file_size(path, error);
    const uintmax_t end = static_cast<uintmax_t>(offset) + part;
    if (error || bytes < end)
      throw InputError(what + found + " holds " + std::to_string(bytes) + " bytes, and this dataset's part of "
                       "it ends at byte " + std::to_string(end) + ": the rest would read as zeros");
    needed -= part;
  }
}

void Dataset::require_virtual_sources(int depth, const RowBlock* only) const {
  // A virtual dataset can map another; past a few levels it is a loop.
  if (depth > 8) throw InputError(where_.describe() + ": virtual datasets nest deeper than 8 levels (a loop?)");
  Handle create(H5Dget_create_plist(id()), H5Pclose);
  Handle access(H5Dget_access_plist(id()), H5Pclose);
  size_t mappings = 0;
  if (!create.valid() || H5Pget_virtual_count(create.id(), &mappings) < 0)
    throw_input(where_.describe() + ": reading its virtual mappings");
  const std::string access_prefix =
      access.valid() ? property_text([&](char* out, size_t size) {
        return H5Pget_virtual_prefix(access.id(), out, size);
      })
                     : std::string();
  // `only`'s rows as a block of the whole extent (corners inclusive), once for every mapping.
  std::vector<hsize_t> block_start, block_end;
  if (only) {
    const Shape extent = shape();
    block_start.assign(extent.size(), 0);
    for (const int64_t n : extent) block_end.push_back(static_cast<hsize_t>(std::max<int64_t>(n, 1) - 1));
    block_start[only->axis] = static_cast<hsize_t>(only->begin);
    block_end[only->axis] = static_cast<hsize_t>(std::max<int64_t>(only->end, 1) - 1);
  }
  Dataspace covered(Handle(H5Scopy(file_space().id()), H5Sclose));
  if (covered.id() < 0) throw_input(where_.describe() + ": dataspace");
  covered.select_none();
  bool coverage_known = true;
  for (size_t i = 0; i < mappings; ++i) {
    const std::string which = "mapping " + std::to_string(i + 1) + " of " + std::to_string(mappings);
    const std::string file_name = property_text(
        [&](char* out, size_t size) { return H5Pget_virtual_filename(create.id(), i, out, size); });
    const std::string dataset_name = property_text(
        [&](char* out, size_t size) { return H5Pget_virtual_dsetname(create.id(), i, out, size); });
    Handle virtual_space(H5Pget_virtual_vspace(create.id(), i), H5Sclose);
    Handle source_space(H5Pget_virtual_srcspace(create.id(), i), H5Sclose);
    if (file_name.empty() || dataset_name.empty() || !virtual_space.valid() || !source_space.valid())
      throw_input(where_.describe() + ": reading its virtual " + which);
    // An unlimited mapping (printf-style source names) takes as many sources as there are: not checked.
    if (unlimited_selection(virtual_space.id()) || unlimited_selection(source_space.id())) {
      coverage_known = false;
      continue;
    }
    if (H5Sget_select_npoints(virtual_space.id()) == 0) continue;
    if (coverage_known && !add_selection(covered.id(), virtual_space.id())) coverage_known = false;
    // Another rank's rows only: that rank checks this mapping.
    if (only && (only->begin >= only->end ||
                 H5Sselect_intersect_block(virtual_space.id(), block_start.data(), block_end.data()) == 0))
      continue;
    const std::string what = where_.describe() + ": its " + which + " reads '" + dataset_name + "' from ";
    const std::string fill = ": that part would read as fill values";
    std::optional<File> source_file;  // another file's (this one's is open already)
    std::string source = "this file";
    Handle source_handle;
    if (file_name == ".") {
      Handle own_file(H5Iget_file_id(id()), H5Fclose);
      if (own_file.valid()) source_handle = Handle(H5Dopen2(own_file.id(), dataset_name.c_str(), H5P_DEFAULT), H5Dclose);
      take_error_text();
      if (!source_handle.valid())
        throw InputError(what + source + ", which has no dataset '" + dataset_name + "'" + fill);
    } else {
      const std::vector<std::string> candidates = source_file_candidates(file_name, where_.file, access_prefix);
      std::error_code error;
      for (const std::string& candidate : candidates)
        if (std::filesystem::exists(candidate, error)) {
          try {
            source_file = File::open(candidate, Mode::read, MPI_COMM_NULL);
          } catch (const InputError& e) {
            throw InputError(what + "'" + file_name + "', found as " + e.what() + fill);
          }
          break;
        }
      if (!source_file) {
        std::string looked;
        for (const std::string& candidate : candidates) looked += (looked.empty() ? "" : ", ") + candidate;
        throw InputError(what + "'" + file_name + "', which is not there (looked for " + looked +
                         "; HDF5_VDS_PREFIX names more directories to look in)" + fill);
      }
    }
    if (source_file) {
      source = "'" + source_file->path() + "'";
      if (!source_file->has_dataset(dataset_name))
        throw InputError(what + source + ", which has no dataset '" + dataset_name + "'" + fill);
    }
    const Dataset dataset = source_file ? source_file->open_dataset(dataset_name)
                                        : Dataset(std::move(source_handle), Where{where_.file, dataset_name}, comm_);
    const Shape dims = dataset.shape();
    const std::string has_shape = ", whose '" + dataset_name + "' has shape " + to_string(dims);
    if (H5Sget_select_type(source_space.id()) == H5S_SEL_ALL) {
      // The whole source, whatever its extent then: HDF5 needs as many elements as the mapping places.
      const int64_t placed = H5Sget_select_npoints(virtual_space.id());
      if (element_count(dims) != placed)
        throw InputError(what + source + has_shape + " (" + std::to_string(element_count(dims)) +
                         " elements), where the mapping places " + std::to_string(placed) +
                         ": HDF5 cannot read it whole into that");
    } else {
      const int rank = H5Sget_simple_extent_ndims(source_space.id());
      std::array<hsize_t, H5S_MAX_RANK> first{}, last{};
      if (rank <= 0 || rank > H5S_MAX_RANK ||
          H5Sget_select_bounds(source_space.id(), first.data(), last.data()) < 0)
        throw_input(what + source + ": the selection it reads");
      bool inside = static_cast<size_t>(rank) == dims.size();
      for (int d = 0; inside && d < rank; ++d)
        inside = last[static_cast<size_t>(d)] < static_cast<hsize_t>(dims[static_cast<size_t>(d)]);
      if (!inside) {
        std::ostringstream reads;
        for (int d = 0; d < rank; ++d) reads << (d ? "," : "[") << last[static_cast<size_t>(d)] + 1;
        reads << "]";
        throw InputError(what + source + has_shape + ", smaller than the " + reads.str() + " the mapping reads" +
                         fill);
      }
    }
    try {
      dataset.require_allocated(depth + 1, nullptr);
    } catch (const InputError& e) {
      if (depth > 0) throw;  // the outermost mapping and the innermost problem say enough
      throw InputError(what + source + ": " + e.what());
    }
  }
  if (coverage_known) {
    const int64_t total = element_count(shape()), mapped = covered.selected_count();
    if (mapped < total)
      throw InputError(where_.describe() + ": " + std::to_string(total - mapped) + " of " + std::to_string(total) +
                       " elements are mapped to no source dataset: they would read as fill values");
  }
}

}  // namespace longctx::io::h5
