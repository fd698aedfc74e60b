#include "io/attend_file.hpp"

#include <algorithm>
#include <string>
#include <vector>

namespace longctx::io {

Shape AttendInput::lse_shape() const {
  return batched ? Shape{batch, seq_len, heads} : Shape{seq_len, heads};
}

namespace {
std::vector<std::string> input_names(bool backward) {
  std::vector<std::string> names = {"q", "k", "v"};
  if (backward) names.push_back("do");
  return names;
}

// What the file's top level holds, for a missing dataset's message (datasets under /data, or named Q, K, V).
std::string top_level(const h5::File& file) {
  const std::vector<std::string> names = file.children();
  if (names.empty()) return "the file's top level is empty";
  constexpr size_t kShown = 8;
  std::string listed;
  for (size_t i = 0; i < std::min(names.size(), kShown); ++i) listed += (i ? ", " : "") + names[i];
  if (names.size() > kShown) listed += " and " + std::to_string(names.size() - kShown) + " more";
  return "its top level holds " + listed;
}

}  // namespace

AttendInput check_attend_input(const h5::File& file, bool backward) {
  AttendInput input;
  for (const std::string& name : input_names(backward)) {
    if (!file.has(name))  // a link that is there but leads nowhere is said by open_dataset
      throw InputError(file.path() + ": no dataset '" + name + "' (needs q, k, v" +
                       (backward ? std::string(" and do for --backward") : std::string()) + " at the top level); " +
                       top_level(file));
    const h5::Dataset dataset = file.open_dataset(name);
    const h5::ElementType type = dataset.element_type();
    if (type != h5::ElementType::f32 && type != h5::ElementType::f16)
      // A float64 file (NumPy's default) says how to write it (before: the dtypes alone; from the user audit).
      throw InputError(dataset.where().describe() + ": dtype " + dataset.dtype_name() +
                       ", expected float32, float16 or bfloat16" +
                       (dataset.dtype_name() == "float64"
                            ? std::string(" (write it as one: h5py's f[name] = x.astype('float32'))")
                            : std::string()));
    dataset.require_rank(3, 4);
    input.virtual_layout = input.virtual_layout || dataset.virtual_layout();
    const Shape shape = dataset.shape();
    if (name == "q") {
      input.shape = shape;
    } else if (shape != input.shape) {
      throw InputError(dataset.where().describe() + ": shape " + to_string(shape) + " differs from q's " +
                       to_string(input.shape));
    }
  }
  const Shape& s = input.shape;
  input.batched = s.size() == 4;
  input.seq_axis = input.batched ? 1 : 0;
  input.batch = input.batched ? s[0] : 1;
  input.seq_len = s[input.seq_axis];
  input.heads = s[input.seq_axis + 1];
  input.head_dim = s[input.seq_axis + 2];
  for (int64_t extent : s)
    if (extent <= 0) throw InputError(file.path() + ": dataset 'q' has an empty shape " + to_string(s));
  return input;
}

void check_attend_storage(const h5::File& file, bool backward, const h5::Dataset::RowBlock* only) {
  for (const std::string& name : input_names(backward)) {
    const h5::Dataset dataset = file.open_dataset(name);
    if (only) dataset.require_allocated(*only);
    else dataset.require_allocated();
  }
}

}  // namespace longctx::io
