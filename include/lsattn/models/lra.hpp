#pragma once
// The bidirectional Transformer-LS attention layer of Long Range Arena
// (lra/attention_transformer_ls.py::AttentionLS), with the published parameter names.
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <utility>

#include "lsattn/attention.hpp"
#include "lsattn/backend/cpu/workspace.hpp"
#include "lsattn/core/checks.hpp"
#include "lsattn/core/error.hpp"
#include "lsattn/core/tensor.hpp"
#include "lsattn/models/parameter_checks.hpp"

namespace lsattn::models::lra {

// The published config fields (spec §1.1).
struct Config {
  index_t num_head = 2;
  index_t head_dim = 32;
  index_t transformer_dim = 64;
  index_t window_size = 8;    // w; ≤ 0 disables the short-term part
  index_t num_landmarks = 32; // r; 0 disables the long-range part
  bool cls_pooling = false;   // pooling_mode 'cls': the first token of x is the cls token
  int threads = 0;            // CPU threads, 0 = default
  Precision precision = Precision::fp32;  // of the matrix products (bf16: CPU only)

  index_t width() const { return num_head * head_dim; }

  void validate() const {
    checked_size("num_head", num_head, 1);
    checked_size("head_dim", head_dim, 1);
    checked_size("transformer_dim", transformer_dim, 1);
    checked_size("window_size", window_size, -max_size);
    checked_size("num_landmarks", num_landmarks);
    checked_product({{"num_head", num_head}, {"head_dim", head_dim}});
    checked_product({{"num_head", num_head}, {"num_landmarks", num_landmarks}, {"transformer_dim", transformer_dim}});
    checked_product({{"num_head", num_head}, {"head_dim", head_dim}, {"transformer_dim", transformer_dim}});
    require(transformer_dim == width(), "transformer_dim (", transformer_dim, ") must equal num_head * head_dim (",
            num_head, " * ", head_dim, " = ", width(),
            "): the published W_o is declared Linear(transformer_dim, num_head * head_dim)");
    require(threads >= 0, "threads: must be >= 0 (0 = default), got ", threads);
  }

  AttentionConfig attention() const {
    AttentionConfig config{num_head, head_dim, window_size, num_landmarks, threads};
    config.precision = precision;
    return config;
  }
};

// Parameters under their state_dict names (spec §1.2); Linear weights are [out, in].
template <class T = float>
struct Weights {
  Tensor<T, 2> W_q_weight, W_k_weight, W_v_weight, W_o_weight, dconv_fc_weight;
  Tensor<T, 1> W_q_bias, W_k_bias, W_v_bias, W_o_bias, dconv_fc_bias;
  Tensor<T, 1> dual_ln_s_weight, dual_ln_s_bias, dual_ln_l_weight, dual_ln_l_bias;

  // Visits every parameter with its published name and expected shape.
  template <class Visitor>
  void for_each(const Config& config, Visitor&& visit) {
    const index_t d = config.transformer_dim, width = config.width(), logits = config.num_head * config.num_landmarks;
    visit("W_q.weight", W_q_weight, Shape<2>{width, d});
    visit("W_q.bias", W_q_bias, Shape<1>{width});
    visit("W_k.weight", W_k_weight, Shape<2>{width, d});
    visit("W_k.bias", W_k_bias, Shape<1>{width});
    visit("W_v.weight", W_v_weight, Shape<2>{width, d});
    visit("W_v.bias", W_v_bias, Shape<1>{width});
    visit("W_o.weight", W_o_weight, Shape<2>{width, d});
    visit("W_o.bias", W_o_bias, Shape<1>{width});
    if (config.num_landmarks > 0) {
      visit("dconv_fc.weight", dconv_fc_weight, Shape<2>{logits, d});
      visit("dconv_fc.bias", dconv_fc_bias, Shape<1>{logits});
    }
    visit("dual_ln_s.weight", dual_ln_s_weight, Shape<1>{width});
    visit("dual_ln_s.bias", dual_ln_s_bias, Shape<1>{width});
    visit("dual_ln_l.weight", dual_ln_l_weight, Shape<1>{width});
    visit("dual_ln_l.bias", dual_ln_l_bias, Shape<1>{width});
  }

  // Deterministic random parameters (for demos and tests): Linear ~ N(0, 1/√D), LN ~ N(1, 0.1) / N(0, 0.1).
  static Weights random(const Config& config, std::uint64_t seed) {
    Weights weights;
    std::mt19937_64 generator(seed);
    const double linear_std = 1.0 / std::sqrt(static_cast<double>(config.transformer_dim));
    weights.for_each(config, [&](const std::string& name, auto& tensor, const auto& shape) {
      const bool is_norm = name.rfind("dual_ln", 0) == 0;
      const bool is_norm_weight = is_norm && name.ends_with(".weight");
      std::normal_distribution<double> normal(is_norm_weight ? 1.0 : 0.0, is_norm ? 0.1 : linear_std);
      tensor = std::remove_reference_t<decltype(tensor)>(shape);
      for (auto& v : tensor.values()) v = static_cast<T>(normal(generator));
    });
    return weights;
  }
};

// Every parameter with its shape and finite; dconv_fc empty when num_landmarks = 0 (the
// published zero-size [0, D] one is empty), so that a given one is never silently ignored.
template <class T>
void require_valid_weights(const Config& config, Weights<T>& weights) {
  detail::require_valid_parameters(weights, config);
  if (config.num_landmarks == 0) {
    detail::require_unused_empty(weights.dconv_fc_weight, "dconv_fc.weight", "num_landmarks = 0");
    detail::require_unused_empty(weights.dconv_fc_bias, "dconv_fc.bias", "num_landmarks = 0");
  }
}

// AttentionLS(config).forward(X, mask, cls_embed) of the published code, any sequence length.
template <class Backend, class T = float>
class AttentionLS {
 public:
  using space = typename Backend::memory_space;
  using Attention = LongShortAttention<Backend, T, BidirectionalWindow, SequenceProjection, DualLayerNorm>;

  AttentionLS(const Config& config, Weights<T> weights)
      : config_((config.validate(), config)), weights_(std::move(weights)), attention_(config.attention()) {
    require_valid_weights(config_, weights_);
  }

  const Config& config() const { return config_; }
  const Weights<T>& weights() const { return weights_; }

  // x (B, L, D); mask (B, L) with 1 = valid, 0 = padding (empty: all valid); cls_embed (B, 1, D)
  // optional. Returns (B, L, D), or (B, L+1, D) with the cls row first when cls_embed is given.
  // With cls pooling the first token of x is the cls token and the output keeps x's shape.
  Tensor<T, 3> forward(HostView<const T, 3> x, HostView<const T, 2> mask = {}, HostView<const T, 3> cls_embed = {}) const {
    CpuWorkspace scratch;
    return forward(x, mask, cls_embed, scratch);
  }

  // The same, with the intermediate tensors (Q, K, V, logits, context and the attention's own
  // scratch) in `workspace`: a workspace kept across calls saves their allocation, page faults
  // and zeroing on every call. One workspace per concurrent caller.
  Tensor<T, 3> forward(HostView<const T, 3> x, HostView<const T, 2> mask, HostView<const T, 3> cls_embed,
                       CpuWorkspace& workspace) const {
    const index_t d = config_.transformer_dim;
    require(x.extent(0) >= 1, "x: batch size must be >= 1, got shape ", to_string(x.shape()));
    require(x.extent(2) == d, "x: expected feature size transformer_dim = ", d, ", got shape ", to_string(x.shape()));
    require(x.size() == 0 || x.data() != nullptr, "x: null data pointer");
    if (!mask.empty()) detail::require_shape(mask, "mask", Shape<2>{x.extent(0), x.extent(1)});
    detail::require_finite(x, "x", config_.threads);

    Tensor<T, 3> tokens, pooled_cls;
    Tensor<T, 2> token_mask;
    if (config_.cls_pooling) {
      require(cls_embed.empty(), "cls_embed: must not be given when pooling_mode is 'cls' (the cls token is x[:, 0])");
      require(x.extent(1) >= 2, "x: with pooling_mode 'cls' the sequence needs the cls token and at least one more, got length ",
              x.extent(1));
      split_first_token(x, mask, tokens, pooled_cls, token_mask);
      x = tokens.view();
      cls_embed = pooled_cls.view();
      if (!mask.empty()) mask = token_mask.view();
    }
    require(x.extent(1) >= 1, "x: sequence length must be >= 1, got 0 (an empty sequence has nothing to attend to)");
    if (!cls_embed.empty()) detail::require_shape(cls_embed, "cls_embed", Shape<3>{x.extent(0), 1, d});

    const index_t batch = x.extent(0), length = x.extent(1), width = config_.width();
    const index_t rows = batch * length;
    const int threads = config_.threads;
    const CpuWorkspace::Frame frame(workspace);
    auto linear = [&](const T* input, index_t count, const Tensor<T, 2>& w, const Tensor<T, 1>& bias, index_t out_features,
                      T* result) {
      detail::LinearOp<Backend>::run(input, count, d, w.data(), bias.data(), out_features, result, threads,
                                     config_.precision);
    };
    // Workspace tensors: every element is written by the linear layer before it is read.
    auto project = [&](const T* input, index_t count, const Tensor<T, 2>& w, const Tensor<T, 1>& bias, index_t out_features) {
      const HostView<T, 3> result(workspace.take<T>(count * out_features), Shape<3>{batch, count / batch, out_features});
      linear(input, count, w, bias, out_features, result.data());
      return HostView<const T, 3>(result);
    };
    const HostView<const T, 3> query = project(x.data(), rows, weights_.W_q_weight, weights_.W_q_bias, width);
    const HostView<const T, 3> key = project(x.data(), rows, weights_.W_k_weight, weights_.W_k_bias, width);
    const HostView<const T, 3> value = project(x.data(), rows, weights_.W_v_weight, weights_.W_v_bias, width);
    HostView<const T, 3> logits, cls_query, cls_key, cls_value;
    if (config_.num_landmarks > 0) {
      logits = project(x.data(), rows, weights_.dconv_fc_weight, weights_.dconv_fc_bias, config_.num_head * config_.num_landmarks);
    }
    AttentionInputs<T, space> inputs{query, key, value, logits, mask, {}, {}, {}};
    if (!cls_embed.empty()) {
      detail::require_finite(cls_embed, "cls_embed");
      cls_query = project(cls_embed.data(), batch, weights_.W_q_weight, weights_.W_q_bias, width);
      cls_key = project(cls_embed.data(), batch, weights_.W_k_weight, weights_.W_k_bias, width);
      cls_value = project(cls_embed.data(), batch, weights_.W_v_weight, weights_.W_v_bias, width);
      inputs.cls_query = cls_query;
      inputs.cls_key = cls_key;
      inputs.cls_value = cls_value;
    }
    if (config_.num_landmarks == 0) inputs.projection_logits = {};

    // Every context row is written by the attention (padded rows with zeros).
    const HostView<T, 3> context(workspace.take<T>(batch * (length + (cls_embed.empty() ? 0 : 1)) * width),
                                 Shape<3>{batch, length + (cls_embed.empty() ? 0 : 1), width});
    const typename Attention::CombinerParams norm{
        {weights_.dual_ln_l_weight.view(), weights_.dual_ln_l_bias.view(), 1e-5},
        {weights_.dual_ln_s_weight.view(), weights_.dual_ln_s_bias.view(), 1e-5}};
    detail::overflow_checked("lra::AttentionLS", [&] { attention_(inputs, norm, context, &workspace); });
    Tensor<T, 3> y(Shape<3>{batch, context.extent(1), d});
    linear(context.data(), context.extent(0) * context.extent(1), weights_.W_o_weight, weights_.W_o_bias, d, y.data());
    detail::require_finite_output(std::as_const(y).view(), "lra::AttentionLS", config_.threads);
    return y;
  }

 private:
  // pooling_mode 'cls' (spec §1.3 step 0): X[:, :1] is the cls embedding, X[:, 1:] the tokens.
  static void split_first_token(HostView<const T, 3> x, HostView<const T, 2> mask, Tensor<T, 3>& tokens,
                                Tensor<T, 3>& cls, Tensor<T, 2>& token_mask) {
    const index_t batch = x.extent(0), length = x.extent(1) - 1, d = x.extent(2);
    tokens = Tensor<T, 3>(Shape<3>{batch, length, d});
    cls = Tensor<T, 3>(Shape<3>{batch, 1, d});
    for (index_t b = 0; b < batch; ++b) {
      std::copy_n(x.address(b, 0, 0), d, cls.address(b, 0, 0));
      std::copy_n(x.address(b, 1, 0), length * d, tokens.address(b, 0, 0));
    }
    if (mask.empty()) return;
    token_mask = Tensor<T, 2>(Shape<2>{batch, length});
    for (index_t b = 0; b < batch; ++b) std::copy_n(mask.address(b, 1), length, token_mask.address(b, 0));
  }

  Config config_;
  Weights<T> weights_;
  Attention attention_;
};

}  // namespace lsattn::models::lra
