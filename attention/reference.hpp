// The plain twin of every attention backend: double precision, loops that read like
// ../shared/spec/dilated-attention.md. For each (batch, head) it lists, row by row, the multiset union of
// the keys every branch gives that row (per branch, per segment, the rows of the head's offset), then
// takes one softmax over that list. Slow (it stores the key lists) and meant for tests of small shapes.
#pragma once

#include "attention/attention.hpp"

namespace longctx {

// Double core on raw [B,N,H,D] arrays (lse [B,N,H]); the finite-difference tests call it directly.
void reference_forward(const AttentionParams& params, const AttentionDims& dims, const double* q, const double* k,
                       const double* v, double* o, double* lse);
// Exact gradients of sum(dout * o); o and lse are recomputed in double.
void reference_backward(const AttentionParams& params, const AttentionDims& dims, const double* q, const double* k,
                        const double* v, const double* dout, double* dq, double* dk, double* dv);

// Same contract as AttentionBackend::forward / backward: float tensors in and out, double inside.
void reference_forward(const AttentionParams& params, const Tensor& q, const Tensor& k, const Tensor& v, Tensor& o,
                       Tensor& lse);
// o and lse are checked for shape only: the reference recomputes them in double.
void reference_backward(const AttentionParams& params, const Tensor& q, const Tensor& k, const Tensor& v,
                        const Tensor& o, const Tensor& lse, const Tensor& dout, Tensor& dq, Tensor& dk, Tensor& dv);

}  // namespace longctx
