#include "attention/reference.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

namespace longctx {
namespace {

// keys[p] = the multiset union, over branches, of the key rows that query row p sees in head h.
std::vector<std::vector<int64_t>> keys_per_row(const AttentionParams& params, int64_t seq_len, int64_t heads,
                                               int64_t h) {
  std::vector<std::vector<int64_t>> keys(static_cast<size_t>(seq_len));
  for (const Branch& branch : params.schedule.branches) {
    const int64_t r = branch.dilation;
    const int64_t offset = head_offset(h, r, heads, params.offsets);
    for (int64_t segment = 0; segment < segment_count(branch, seq_len); ++segment) {
      const int64_t s = segment_begin(branch, seq_len, segment);
      const int64_t end = s + segment_rows(branch, seq_len, segment);
      for (int64_t p = s + offset; p < end; p += r)
        for (int64_t j = s + offset; j < end; j += r)
          if (!params.causal || j <= p) keys[static_cast<size_t>(p)].push_back(j);
    }
  }
  return keys;
}

double dot(const double* a, const double* b, int64_t n) {
  double sum = 0;
  for (int64_t d = 0; d < n; ++d) sum += a[d] * b[d];
  return sum;
}

struct Rows {  // addressing of [B,N,H,D] and [B,N,H]
  AttentionDims dims;
  int64_t row(int64_t b, int64_t p, int64_t h) const { return (b * dims.seq_len + p) * dims.heads + h; }
  int64_t vec(int64_t b, int64_t p, int64_t h) const { return row(b, p, h) * dims.head_dim; }
};

// Softmax of row p over its keys: fills prob (same order as keys) and returns lse (-inf for no keys).
double softmax_row(const Rows& at, const double* q, const double* k, double scale, int64_t b, int64_t p, int64_t h,
                   const std::vector<int64_t>& keys, std::vector<double>& prob) {
  const int64_t D = at.dims.head_dim;
  prob.resize(keys.size());
  if (keys.empty()) return -std::numeric_limits<double>::infinity();
  double max_score = -std::numeric_limits<double>::infinity();
  for (size_t n = 0; n < keys.size(); ++n) {
    prob[n] = scale * dot(q + at.vec(b, p, h), k + at.vec(b, keys[n], h), D);
    max_score = std::max(max_score, prob[n]);
  }
  const bool all_neg_inf = std::all_of(prob.begin(), prob.end(), [](double x) { return std::isinf(x) && x < 0; });
  if (all_neg_inf) {  // every score -inf (infinite inputs): nothing to weigh; a NaN score stays NaN below
    std::fill(prob.begin(), prob.end(), 0.0);
    return max_score;
  }
  double sum = 0;
  for (double& x : prob) sum += (x = std::exp(x - max_score));
  for (double& x : prob) x /= sum;
  return max_score + std::log(sum);
}

}  // namespace

void reference_forward(const AttentionParams& params, const AttentionDims& dims, const double* q, const double* k,
                       const double* v, double* o, double* lse) {
  const Rows at{dims};
  const int64_t D = dims.head_dim;
  const double scale = resolved_scale(params, D);
  std::vector<double> prob;
  for (int64_t h = 0; h < dims.heads; ++h) {
    const auto keys = keys_per_row(params, dims.seq_len, dims.heads, h);
    for (int64_t b = 0; b < dims.batch; ++b)
      for (int64_t p = 0; p < dims.seq_len; ++p) {
        const auto& row_keys = keys[static_cast<size_t>(p)];
        lse[at.row(b, p, h)] = softmax_row(at, q, k, scale, b, p, h, row_keys, prob);
        double* out = o + at.vec(b, p, h);
        std::fill(out, out + D, 0.0);
        for (size_t n = 0; n < row_keys.size(); ++n)
          for (int64_t d = 0; d < D; ++d) out[d] += prob[n] * v[at.vec(b, row_keys[n], h) + d];
      }
  }
}

void reference_backward(const AttentionParams& params, const AttentionDims& dims, const double* q, const double* k,
                        const double* v, const double* dout, double* dq, double* dk, double* dv) {
  const Rows at{dims};
  const int64_t D = dims.head_dim;
  const double scale = resolved_scale(params, D);
  const int64_t count = dims.batch * dims.seq_len * dims.heads * D;
  std::fill(dq, dq + count, 0.0);
  std::fill(dk, dk + count, 0.0);
  std::fill(dv, dv + count, 0.0);
  std::vector<double> prob, out(static_cast<size_t>(D));
  for (int64_t h = 0; h < dims.heads; ++h) {
    const auto keys = keys_per_row(params, dims.seq_len, dims.heads, h);
    for (int64_t b = 0; b < dims.batch; ++b)
      for (int64_t p = 0; p < dims.seq_len; ++p) {
        const auto& row_keys = keys[static_cast<size_t>(p)];
        softmax_row(at, q, k, scale, b, p, h, row_keys, prob);
        const double* dout_p = dout + at.vec(b, p, h);
        std::fill(out.begin(), out.end(), 0.0);
        for (size_t n = 0; n < row_keys.size(); ++n)
          for (int64_t d = 0; d < D; ++d) out[static_cast<size_t>(d)] += prob[n] * v[at.vec(b, row_keys[n], h) + d];
        const double delta = dot(dout_p, out.data(), D);  // D_p = <do_p, o_p>
        for (size_t n = 0; n < row_keys.size(); ++n) {
          const int64_t j = row_keys[n];
          const double dscore = prob[n] * (dot(dout_p, v + at.vec(b, j, h), D) - delta);  // dS = P (dP - D_p)
          for (int64_t d = 0; d < D; ++d) {
            dv[at.vec(b, j, h) + d] += prob[n] * dout_p[d];
            dq[at.vec(b, p, h) + d] += scale * dscore * k[at.vec(b, j, h) + d];
            dk[at.vec(b, j, h) + d] += scale * dscore * q[at.vec(b, p, h) + d];
          }
        }
      }
  }
}

namespace {
std::vector<double> to_double(const Tensor& t) { return std::vector<double>(t.data(), t.data() + t.size()); }
void to_float(const std::vector<double>& from, Tensor& to) {
  for (int64_t i = 0; i < to.size(); ++i) to[i] = static_cast<float>(from[static_cast<size_t>(i)]);
}
}  // namespace

void reference_forward(const AttentionParams& params, const Tensor& q, const Tensor& k, const Tensor& v, Tensor& o,
                       Tensor& lse) {
  const AttentionDims dims = check_qkv(q, k, v);
  ensure_shape(o, q.shape());
  ensure_shape(lse, lse_shape(q.shape()));
  std::vector<double> o64(static_cast<size_t>(o.size())), lse64(static_cast<size_t>(lse.size()));
  reference_forward(params, dims, to_double(q).data(), to_double(k).data(), to_double(v).data(), o64.data(),
                    lse64.data());
  to_float(o64, o);
  to_float(lse64, lse);
}

void reference_backward(const AttentionParams& params, const Tensor& q, const Tensor& k, const Tensor& v,
                        const Tensor& o, const Tensor& lse, const Tensor& dout, Tensor& dq, Tensor& dk, Tensor& dv) {
  const AttentionDims dims = check_qkv(q, k, v);
  check_shape("o", o, q.shape());
  check_shape("lse", lse, lse_shape(q.shape()));
  check_shape("dout", dout, q.shape());
  for (Tensor* t : {&dq, &dk, &dv}) ensure_shape(*t, q.shape());
  const size_t count = static_cast<size_t>(q.size());
  std::vector<double> dq64(count), dk64(count), dv64(count);
  reference_backward(params, dims, to_double(q).data(), to_double(k).data(), to_double(v).data(),
                     to_double(dout).data(), dq64.data(), dk64.data(), dv64.data());
  to_float(dq64, dq);
  to_float(dk64, dk);
  to_float(dv64, dv);
}

}  // namespace longctx
