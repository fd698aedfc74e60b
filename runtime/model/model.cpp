#include "runtime/model/model.hpp"

#include <cmath>
#include <cstring>
#include <random>

#include "runtime/core/error.hpp"
#include "runtime/model/gemm.hpp"

namespace longctx::model {
namespace {

// y[rows, out] = x[rows, in] W[in, out] (+ y when accumulate)
void linear(const float* x, const float* w, int64_t rows, int64_t in, int64_t out, float* y, bool accumulate) {
  sgemm(Trans::no, Trans::no, rows, out, in, 1.0f, x, in, w, out, accumulate ? 1.0f : 0.0f, y, out);
}
// dx[rows, in] (+)= dy[rows, out] W^T;  dW[in, out] += x^T dy
void linear_backward(const float* x, const float* w, const float* dy, int64_t rows, int64_t in, int64_t out,
                     float* dx, bool accumulate_dx, float* dw) {
  sgemm(Trans::no, Trans::yes, rows, in, out, 1.0f, dy, out, w, out, accumulate_dx ? 1.0f : 0.0f, dx, in);
  sgemm(Trans::yes, Trans::no, in, out, rows, 1.0f, x, in, dy, out, 1.0f, dw, out);
}

void ensure(Tensor& t, const Shape& shape) {
  if (t.shape() != shape) t = Tensor(shape);
}

}  // namespace

ParameterLayout make_layout(const ModelConfig& c) {
  ParameterLayout layout;
  layout.add("embedding", {c.vocab, c.dim}, true);
  if (c.prev_token_embedding) layout.add("prev_embedding", {c.vocab, c.dim}, true);
  for (int64_t l = 0; l < c.layers; ++l) {
    const std::string prefix = "layer" + std::to_string(l) + "/";
    layout.add(prefix + "ln1_gain", {c.dim}, false);
    layout.add(prefix + "ln1_bias", {c.dim}, false);
    layout.add(prefix + "wq", {c.dim, c.dim}, true);
    layout.add(prefix + "wk", {c.dim, c.dim}, true);
    layout.add(prefix + "wv", {c.dim, c.dim}, true);
    layout.add(prefix + "wo", {c.dim, c.dim}, true);
    layout.add(prefix + "ln2_gain", {c.dim}, false);
    layout.add(prefix + "ln2_bias", {c.dim}, false);
    layout.add(prefix + "w1", {c.dim, c.mlp_hidden}, true);
    layout.add(prefix + "b1", {c.mlp_hidden}, false);
    layout.add(prefix + "w2", {c.mlp_hidden, c.dim}, true);
    layout.add(prefix + "b2", {c.dim}, false);
  }
  layout.add("final_ln_gain", {c.dim}, false);
  layout.add("final_ln_bias", {c.dim}, false);
  return layout;
}

void init_parameters(const ModelConfig& c, const ParameterLayout& layout, uint64_t seed, float* flat) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal(0.0, 1.0);
  std::memset(flat, 0, sizeof(float) * static_cast<size_t>(layout.total()));
  const double residual_scale = 1.0 / std::sqrt(2.0 * double(c.layers));
  for (const auto& view : layout.views()) {
    float* p = flat + view.offset;
    const std::string& n = view.name;
    const auto ends_with = [&](const char* s) {
      const size_t len = std::strlen(s);
      return n.size() >= len && n.compare(n.size() - len, len, s) == 0;
    };
    if (ends_with("_gain")) {
      for (int64_t i = 0; i < view.count; ++i) p[i] = 1.0f;
    } else if (view.decay) {
      const double std = c.init_std * ((ends_with("/wo") || ends_with("/w2")) ? residual_scale : 1.0);
      for (int64_t i = 0; i < view.count; ++i) p[i] = static_cast<float>(std * normal(rng));
    }
  }
}

double dense_flops_per_token(const ModelConfig& c) {
  const double per_layer = 4.0 * double(c.dim * c.dim) + 2.0 * double(c.dim * c.mlp_hidden);
  return 6.0 * (double(c.layers) * per_layer + double(c.vocab * c.dim));
}

Model::Model(ModelConfig config, SequenceAttention& attention)
    : config_(std::move(config)), attention_(attention), layout_(make_layout(config_)) {
  if (config_.layers < 1 || config_.dim < 1 || config_.heads < 1 || config_.dim % config_.heads != 0 ||
      config_.head_dim() % 2 != 0 || config_.rope_dims < 0 || config_.rope_dims % 2 != 0 ||
      config_.rope_dims > config_.head_dim())
    throw UsageError("model: need layers >= 1, dim divisible by heads into an even head dim, and even rope dims <= head dim");
  attention_params_.schedule = config_.schedule;
  attention_params_.causal = config_.causal;
  cache_.resize(static_cast<size_t>(config_.layers));
}

int64_t Model::rope_dims() const { return config_.rope_dims > 0 ? config_.rope_dims : config_.head_dim(); }

std::string Model::layer_name(int64_t layer, const char* what) const {
  return "layer" + std::to_string(layer) + "/" + what;
}
const float* Model::p(const float* flat, const std::string& name) const { return flat + layout_.find(name).offset; }
float* Model::p(float* flat, const std::string& name) const { return flat + layout_.find(name).offset; }

const Tensor& Model::layer_tensor(int64_t layer, const std::string& name) const {
  if (!kept_for_backward_)
    throw InternalError("Model::layer_tensor after a forward pass that kept no layer's activations");
  const LayerCache& c = cache_.at(static_cast<size_t>(layer));
  if (name == "q") return c.q;
  if (name == "k") return c.k;
  if (name == "v") return c.v;
  if (name == "o") return c.o;
  throw InternalError("no layer tensor " + name);
}

CrossEntropyStats Model::forward(const float* params, const int32_t* tokens, const int32_t* targets, int64_t rows,
                                 int64_t first_position, bool for_backward, float loss_scale,
                                 int32_t previous_token, const float* weights) {
  const int64_t dim = config_.dim, heads = config_.heads, hd = config_.head_dim(), hidden = config_.mlp_hidden;
  const int64_t vocab = config_.vocab;
  rows_ = rows;
  first_position_ = first_position;
  tokens_.assign(tokens, tokens + rows);
  previous_token_ = previous_token;
  kept_for_backward_ = for_backward;
  const float* embedding = p(params, "embedding");
  attention_.keep_for_backward(for_backward);

  ensure(x_final_, {rows, dim});  // the residual stream, written whole by the embedding
  Tensor& x = x_final_;
  for (int64_t t = 0; t < rows; ++t) {
    const int32_t tok = tokens[t];
    if (tok < 0 || tok >= vocab) throw InputError("token " + std::to_string(tok) + " outside model.vocab");
    std::memcpy(x.data() + t * dim, embedding + int64_t(tok) * dim, sizeof(float) * size_t(dim));
  }
  if (config_.prev_token_embedding) {
    const float* prev = p(params, "prev_embedding");
    for (int64_t t = 0; t < rows; ++t) {
      const int32_t before = t > 0 ? tokens[t - 1] : previous_token;
      if (before < 0) continue;
      if (before >= vocab) throw InputError("token " + std::to_string(before) + " outside model.vocab");
      for (int64_t j = 0; j < dim; ++j) x[t * dim + j] += prev[int64_t(before) * dim + j];
    }
  }
  rotary_prepare(rotary_, rows, first_position, config_.rope_base, rope_dims());  // for the backward too
  for (int64_t l = 0; l < config_.layers; ++l) {
    // Without a backward to come, every layer works in the first one's buffers: the memory of a forward
    // pass (eval at long lengths) is one layer's, whatever model.layers is.
    LayerCache& c = cache_[for_backward ? size_t(l) : 0];
    if (for_backward) c.x_in = x;
    ensure(c.h1, {rows, dim});
    ensure(c.mean1, {rows});
    ensure(c.rstd1, {rows});
    layer_norm_forward(x.data(), p(params, layer_name(l, "ln1_gain")), p(params, layer_name(l, "ln1_bias")), rows, dim,
                       c.h1.data(), c.mean1.data(), c.rstd1.data());
    const Shape qkv_shape{1, rows, heads, hd};
    ensure(c.q, qkv_shape);
    ensure(c.k, qkv_shape);
    ensure(c.v, qkv_shape);
    linear(c.h1.data(), p(params, layer_name(l, "wq")), rows, dim, dim, c.q.data(), false);
    linear(c.h1.data(), p(params, layer_name(l, "wk")), rows, dim, dim, c.k.data(), false);
    linear(c.h1.data(), p(params, layer_name(l, "wv")), rows, dim, dim, c.v.data(), false);
    rotary_apply(c.q.data(), heads, hd, rotary_, false);
    rotary_apply(c.k.data(), heads, hd, rotary_, false);
    attention_.forward(attention_params_, c.q, c.k, c.v, c.o, c.lse);
    linear(c.o.data(), p(params, layer_name(l, "wo")), rows, dim, dim, x.data(), true);
    if (for_backward) c.x_mid = x;
    ensure(c.h2, {rows, dim});
    ensure(c.mean2, {rows});
    ensure(c.rstd2, {rows});
    layer_norm_forward(x.data(), p(params, layer_name(l, "ln2_gain")), p(params, layer_name(l, "ln2_bias")), rows, dim,
                       c.h2.data(), c.mean2.data(), c.rstd2.data());
    ensure(c.u, {rows, hidden});
    ensure(c.g, {rows, hidden});
    linear(c.h2.data(), p(params, layer_name(l, "w1")), rows, dim, hidden, c.u.data(), false);
    add_bias(c.u.data(), rows, hidden, p(params, layer_name(l, "b1")));
    gelu_forward(c.u.data(), rows * hidden, c.g.data());
    linear(c.g.data(), p(params, layer_name(l, "w2")), rows, hidden, dim, x.data(), true);
    add_bias(x.data(), rows, dim, p(params, layer_name(l, "b2")));
  }
  ensure(hf_, {rows, dim});
  ensure(meanf_, {rows});
  ensure(rstdf_, {rows});
  layer_norm_forward(x_final_.data(), p(params, "final_ln_gain"), p(params, "final_ln_bias"), rows, dim, hf_.data(),
                     meanf_.data(), rstdf_.data());
  ensure(logits_, {rows, vocab});
  sgemm(Trans::no, Trans::yes, rows, vocab, dim, 1.0f, hf_.data(), dim, embedding, dim, 0.0f, logits_.data(), vocab);
  predictions_.assign(static_cast<size_t>(rows), 0);
  if (for_backward) ensure(dlogits_, {rows, vocab});
  return cross_entropy(logits_.data(), targets, rows, vocab, loss_scale, for_backward ? dlogits_.data() : nullptr,
                       predictions_.data(), weights);
}

void Model::backward(const float* params, float* grads) {
  const int64_t rows = rows_, dim = config_.dim, heads = config_.heads, hd = config_.head_dim();
  const int64_t hidden = config_.mlp_hidden, vocab = config_.vocab;
  if (!kept_for_backward_ || dlogits_.size() != rows * vocab)
    throw InternalError("Model::backward without forward(for_backward)");
  const float* embedding = p(params, "embedding");
  float* d_embedding = p(grads, "embedding");

  // LM head (tied): logits = hf E^T. (Scratch written whole before it is read, but dx, which the layer
  // norms' backward adds into.)
  ensure(dh_, {rows, dim});
  ensure(dx_, {rows, dim});
  dx_.fill(0.0f);
  ensure(dg_, {rows, hidden});
  ensure(du_, {rows, hidden});
  ensure(dh2_, {rows, dim});
  ensure(dout_, {1, rows, heads, hd});
  Tensor &dh = dh_, &dx = dx_, &dg = dg_, &du = du_, &dh2 = dh2_, &dout = dout_, &dq = dq_, &dk = dk_, &dv = dv_;
  sgemm(Trans::no, Trans::no, rows, dim, vocab, 1.0f, dlogits_.data(), vocab, embedding, dim, 0.0f, dh.data(), dim);
  sgemm(Trans::yes, Trans::no, vocab, dim, rows, 1.0f, dlogits_.data(), vocab, hf_.data(), dim, 1.0f, d_embedding,
        dim);
  layer_norm_backward_accumulate(x_final_.data(), p(params, "final_ln_gain"), meanf_.data(), rstdf_.data(), dh.data(),
                                 rows, dim, dx.data(), p(grads, "final_ln_gain"), p(grads, "final_ln_bias"));

  for (int64_t l = config_.layers - 1; l >= 0; --l) {
    LayerCache& c = cache_[size_t(l)];
    // MLP: x_out = x_mid + GELU(h2 W1 + b1) W2 + b2
    column_sum_accumulate(dx.data(), rows, dim, p(grads, layer_name(l, "b2")));
    linear_backward(c.g.data(), p(params, layer_name(l, "w2")), dx.data(), rows, hidden, dim, dg.data(), false,
                    p(grads, layer_name(l, "w2")));
    gelu_backward(c.u.data(), dg.data(), rows * hidden, du.data());
    column_sum_accumulate(du.data(), rows, hidden, p(grads, layer_name(l, "b1")));
    linear_backward(c.h2.data(), p(params, layer_name(l, "w1")), du.data(), rows, dim, hidden, dh2.data(), false,
                    p(grads, layer_name(l, "w1")));
    layer_norm_backward_accumulate(c.x_mid.data(), p(params, layer_name(l, "ln2_gain")), c.mean2.data(),
                                   c.rstd2.data(), dh2.data(), rows, dim, dx.data(), p(grads, layer_name(l, "ln2_gain")),
                                   p(grads, layer_name(l, "ln2_bias")));
    // Attention: x_mid = x_in + Attn(q, k, v) Wo
    linear_backward(c.o.data(), p(params, layer_name(l, "wo")), dx.data(), rows, dim, dim, dout.data(), false,
                    p(grads, layer_name(l, "wo")));
    attention_.backward(attention_params_, c.q, c.k, c.v, c.o, c.lse, dout, dq, dk, dv);
    rotary_apply(dq.data(), heads, hd, rotary_, true);
    rotary_apply(dk.data(), heads, hd, rotary_, true);
    linear_backward(c.h1.data(), p(params, layer_name(l, "wq")), dq.data(), rows, dim, dim, dh.data(), false,
                    p(grads, layer_name(l, "wq")));
    linear_backward(c.h1.data(), p(params, layer_name(l, "wk")), dk.data(), rows, dim, dim, dh.data(), true,
                    p(grads, layer_name(l, "wk")));
    linear_backward(c.h1.data(), p(params, layer_name(l, "wv")), dv.data(), rows, dim, dim, dh.data(), true,
                    p(grads, layer_name(l, "wv")));
    layer_norm_backward_accumulate(c.x_in.data(), p(params, layer_name(l, "ln1_gain")), c.mean1.data(), c.rstd1.data(),
                                   dh.data(), rows, dim, dx.data(), p(grads, layer_name(l, "ln1_gain")),
                                   p(grads, layer_name(l, "ln1_bias")));
  }
  // Embedding rows: sequential over tokens so repeated tokens add in a fixed order.
  for (int64_t t = 0; t < rows; ++t) {
    float* row = d_embedding + int64_t(tokens_[size_t(t)]) * dim;
    const float* src = dx.data() + t * dim;
    for (int64_t j = 0; j < dim; ++j) row[j] += src[j];
  }
  if (config_.prev_token_embedding) {
    float* d_prev = p(grads, "prev_embedding");
    for (int64_t t = 0; t < rows; ++t) {
      const int32_t before = t > 0 ? tokens_[size_t(t - 1)] : previous_token_;
      if (before < 0) continue;
      float* row = d_prev + int64_t(before) * dim;
      const float* src = dx.data() + t * dim;
      for (int64_t j = 0; j < dim; ++j) row[j] += src[j];
    }
  }
}

}  // namespace longctx::model
