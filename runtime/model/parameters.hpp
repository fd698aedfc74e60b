// The model's parameters as ONE flat float buffer with named views, so that the gradient all-reduce,
// the optimizer, clipping and checkpointing each handle a single contiguous array.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "runtime/core/tensor.hpp"

namespace longctx::model {

struct ParameterView {
  std::string name;  // "layer0/wq", checkpoint path under /model
  Shape shape;
  int64_t offset = 0;  // into the flat buffer
  int64_t count = 0;
  bool decay = false;  // AdamW weight decay applies (matrices, not norms or biases)
};

class ParameterLayout {
 public:
  // Appends a view; returns its offset.
  int64_t add(const std::string& name, Shape shape, bool decay);
  const std::vector<ParameterView>& views() const { return views_; }
  int64_t total() const { return total_; }
  const ParameterView& find(const std::string& name) const;  // InternalError when missing

 private:
  std::vector<ParameterView> views_;
  int64_t total_ = 0;
};

// Copies between the flat buffer and one Tensor per view (checkpoint I/O).
Tensor view_to_tensor(const ParameterView& view, const float* flat);
void tensor_to_view(const ParameterView& view, const Tensor& tensor, float* flat);

}  // namespace longctx::model
