// The file contract of `longctx attend` (../shared/spec/interfaces.md): which datasets its input must
// hold and what shapes its outputs get. Checked once, before any work, on every rank (each reads the
// same metadata, so all ranks refuse together).
#pragma once

#include <cstdint>
#include <string>

#include "io/h5.hpp"
#include "runtime/core/tensor.hpp"

namespace longctx::io {

// The root `format` attribute of attend's output (o, lse; dq, dk, dv), which replaces only a file of
// this format (or an older output that has none, holding nothing but those datasets).
inline constexpr const char* kAttendOutputFormat = "longctx-attend-output";
inline constexpr int64_t kAttendOutputFormatVersion = 1;

struct AttendInput {
  Shape shape;             // q's shape: [N,H,D] or [B,N,H,D]
  bool batched = false;    // rank 4
  int64_t batch = 1;
  int64_t seq_len = 0;     // N
  int64_t heads = 0;       // H
  int64_t head_dim = 0;    // D
  size_t seq_axis = 0;     // 0 for [N,H,D], 1 for [B,N,H,D]
  bool virtual_layout = false;  // some input is a virtual dataset (VDS): parallel HDF5 cannot read it
  Shape lse_shape() const;  // [N,H] or [B,N,H]
};

// q, k, v (and `do` with backward) must exist, be float32 or float16, have rank 3 or 4, and all have
// q's shape. Anything else -> InputError naming the file, the dataset and what was found.
// A dangling link names its target.
AttendInput check_attend_input(const h5::File& file, bool backward);
// Every element of q, k, v (and `do`) must have been written: a chunked dataset with chunks missing, or
// one whose storage was never allocated, reads as fill values without any error (require_allocated).
// So does a virtual dataset's part whose source is missing; with `only`, a virtual dataset's sources are
// checked for those rows (a rank's own: each rank of a job finds the sources it will read, where a node
// may see other files than rank 0's, and none opens all of thousands). InputError naming the dataset and
// how much of it is stored, or the mapping.
void check_attend_storage(const h5::File& file, bool backward, const h5::Dataset::RowBlock* only);

}  // namespace longctx::io
