// The model's elementwise and row-wise layers, forward and backward, on raw row-major float arrays.
// Shapes: x, y, dx, dy [rows, dim]; mean, rstd [rows]; gamma, beta [dim]. Backward functions
// ACCUMULATE (+=) into parameter gradients and WRITE input gradients unless named *_accumulate.
#pragma once

#include <cstdint>
#include <vector>

namespace longctx::model {

void layer_norm_forward(const float* x, const float* gamma, const float* beta, int64_t rows, int64_t dim, float* y,
                        float* mean, float* rstd);
// dx += LN'(dy); dgamma += ...; dbeta += ...
void layer_norm_backward_accumulate(const float* x, const float* gamma, const float* mean, const float* rstd,
                                    const float* dy, int64_t rows, int64_t dim, float* dx, float* dgamma,
                                    float* dbeta);

// tanh-approximation GELU, elementwise over n values.
void gelu_forward(const float* u, int64_t n, float* g);
void gelu_backward(const float* u, const float* dg, int64_t n, float* du);

// Rotary position embedding in place on x [rows, heads, head_dim] (head_dim even): pair (2i, 2i+1) of
// row t is rotated by angle (first_position + t) * base^(-2i / head_dim). `inverse` rotates by minus the
// angle, which is the backward of the forward rotation (rotations are orthogonal). Only the first
// `rotary_dims` dims of each head rotate (frequencies base^(-2i / rotary_dims)); -1 means all. The rest
// carry content only, so they can match tokens at any distance.
void rotary_apply(float* x, int64_t rows, int64_t heads, int64_t head_dim, int64_t first_position, double base,
                  bool inverse, int64_t rotary_dims = -1);

// The cos and sin of rotary's angles for `rows` positions from first_position, [rows, rotated / 2] each
// (computed in double, rounded to float): a model's q, k, dq and dk of every layer share one (before: each
// of those calls computed them anew, in double, per row).
struct RotaryTable {
  int64_t first_position = 0, rows = -1, rotated = 0;
  double base = 0;
  std::vector<float> cos, sin;
};
// Fills `table` for these positions and frequencies unless it holds them already.
void rotary_prepare(RotaryTable& table, int64_t rows, int64_t first_position, double base, int64_t rotated);
// rotary_apply with a prepared table: the same values to the bit.
void rotary_apply(float* x, int64_t heads, int64_t head_dim, const RotaryTable& table, bool inverse);

// b[j] += sum_rows dy[row, j]
void column_sum_accumulate(const float* dy, int64_t rows, int64_t cols, float* b);
// y[row, :] += b
void add_bias(float* y, int64_t rows, int64_t cols, const float* b);

struct CrossEntropyStats {
  double loss_sum = 0;   // sum of -log p(target) over rows with target >= 0
  int64_t count = 0;     // such rows
  int64_t correct = 0;   // such rows whose argmax is the target
  double weight_sum = 0;  // sum of the rows' loss weights (= count when unweighted)
};
// logits [rows, vocab]; targets[row] < 0 means "no loss". Writes dlogits = scale * (softmax - onehot)
// (zero rows where there is no target) when dlogits is not null; `argmax` [rows] gets the prediction.
// `weights` [rows] (null: all 1) scales each row's loss and its dlogits; loss_sum is the weighted sum.
CrossEntropyStats cross_entropy(const float* logits, const int32_t* targets, int64_t rows, int64_t vocab, float scale,
                                float* dlogits, int32_t* argmax, const float* weights = nullptr);

}  // namespace longctx::model
