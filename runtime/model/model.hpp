// Decoder-only LM with dilated attention (issue 6), forward and backward by hand, on this rank's rows of
// one long sequence (B = 1, L local rows starting at global position first_position):
//   x0 = E[tokens] (+ Eprev[previous tokens] with prev_token_embedding)   E [vocab, dim] (tied LM head)
//   per block l:  h = LN1(x);  q,k,v = h Wq, h Wk, h Wv  -> [L, H, D], rotary(q, k) at GLOBAL positions
//                 x = x + Attn(q, k, v) Wo                      causal dilated attention (SequenceAttention)
//                 x = x + GELU(LN2(x) W1 + b1) W2 + b2
//   logits = LNf(x) E^T,  loss = cross entropy on rows with target >= 0
// Parameters live in one flat buffer (parameters.hpp); weights are stored [in, out] so y = x W.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "attention/attention.hpp"
#include "runtime/model/layers.hpp"
#include "runtime/model/parameters.hpp"
#include "runtime/model/sequence_attention.hpp"

namespace longctx::model {

struct ModelConfig {
  int64_t layers = 2;
  int64_t dim = 128;
  int64_t heads = 8;
  int64_t vocab = 32;
  int64_t mlp_hidden = 512;
  Schedule schedule;
  bool causal = true;
  double rope_base = 10000;
  double init_std = 0.02;  // normal std of weight matrices and embeddings
  int64_t rope_dims = 0;  // dims of each head that rotate (even); 0 means all
  // Adds a second embedding of each row's PREVIOUS token to its input ("token shift" / smeared keys, as in
  // RWKV and Olsson et al.'s induction-head study): content-based copying ("what followed X before?")
  // then needs one attention layer instead of two. Off by default.
  bool prev_token_embedding = false;
  int64_t head_dim() const { return dim / heads; }
};

ParameterLayout make_layout(const ModelConfig& config);
// Deterministic from `seed`: normal(0, init_std) matrices (output projections scaled by 1/sqrt(2 layers)),
// unit norm gains, zero biases.
void init_parameters(const ModelConfig& config, const ParameterLayout& layout, uint64_t seed, float* flat);

// Model FLOPs per token for one training step (forward + backward) of the dense parts: 6 * matmul
// parameters (LM head included). Attention FLOPs are added separately from the schedule's pair count.
double dense_flops_per_token(const ModelConfig& config);

class Model {
 public:
  Model(ModelConfig config, SequenceAttention& attention);

  const ModelConfig& config() const { return config_; }
  const ParameterLayout& layout() const { return layout_; }

  // Runs the forward pass and the loss. With `for_backward`, keeps every layer's activations and writes
  // dlogits = loss_scale * dLoss_sum/dlogits for backward(); without, it holds one layer's at a time.
  // `previous_token`: the token before row 0 (on the previous rank), -1 at the start of the sequence.
  CrossEntropyStats forward(const float* params, const int32_t* tokens, const int32_t* targets, int64_t rows,
                            int64_t first_position, bool for_backward, float loss_scale, int32_t previous_token = -1,
                            const float* weights = nullptr);
  // Accumulates (+=) this rank's gradient of loss_scale * (sum of its rows' losses) into grads.
  void backward(const float* params, float* grads);

  // Argmax prediction per row of the last forward.
  const std::vector<int32_t>& predictions() const { return predictions_; }
  // The last forward's attention inputs and output of `layer`: [1, L, H, D] (q, k after rotary); the
  // forward must have kept them (for_backward).
  const Tensor& layer_tensor(int64_t layer, const std::string& name) const;

 private:
  struct LayerCache {
    Tensor x_in, h1, mean1, rstd1;  // [L, dim], [L]
    Tensor q, k, v, o, lse;         // [1, L, H, D], lse [1, L, H]
    Tensor x_mid, h2, mean2, rstd2;
    Tensor u, g;  // [L, hidden] pre- and post-GELU
  };
  const float* p(const float* flat, const std::string& name) const;
  float* p(float* flat, const std::string& name) const;
  std::string layer_name(int64_t layer, const char* what) const;
  int64_t rope_dims() const;

  ModelConfig config_;
  AttentionParams attention_params_;
  SequenceAttention& attention_;
  ParameterLayout layout_;
  std::vector<LayerCache> cache_;
  Tensor x_final_, hf_, meanf_, rstdf_, dlogits_;  // [L, dim], [L, vocab]
  // Scratch of forward (logits) and backward, kept from step to step (before: allocated, zero-filled by one
  // thread and page-faulted again each step).
  Tensor logits_, dh_, dx_, dg_, du_, dh2_, dout_, dq_, dk_, dv_;
  RotaryTable rotary_;  // the last forward's positions (its backward's too)
  std::vector<int32_t> tokens_;
  int32_t previous_token_ = -1;
  std::vector<int32_t> predictions_;
  int64_t rows_ = 0;
  int64_t first_position_ = 0;
  bool kept_for_backward_ = false;  // the last forward kept every layer's activations
};

}  // namespace longctx::model
