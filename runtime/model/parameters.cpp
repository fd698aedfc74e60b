#include "runtime/model/parameters.hpp"

#include <algorithm>

#include "runtime/core/error.hpp"

namespace longctx::model {

int64_t ParameterLayout::add(const std::string& name, Shape shape, bool decay) {
  ParameterView view;
  view.name = name;
  view.count = element_count(shape);
  view.shape = std::move(shape);
  // Each view starts on a 16-float (64-byte) boundary so vector loads of a matrix row stay aligned.
  view.offset = (total_ + 15) / 16 * 16;
  view.decay = decay;
  total_ = view.offset + view.count;
  views_.push_back(view);
  return view.offset;
}

const ParameterView& ParameterLayout::find(const std::string& name) const {
  for (const auto& v : views_)
    if (v.name == name) return v;
  throw InternalError("no parameter named " + name);
}

Tensor view_to_tensor(const ParameterView& view, const float* flat) {
  Tensor t(view.shape);
  std::copy(flat + view.offset, flat + view.offset + view.count, t.data());
  return t;
}

void tensor_to_view(const ParameterView& view, const Tensor& tensor, float* flat) {
  if (tensor.size() != view.count) throw InternalError("parameter " + view.name + ": size mismatch");
  std::copy(tensor.data(), tensor.data() + view.count, flat + view.offset);
}

}  // namespace longctx::model
