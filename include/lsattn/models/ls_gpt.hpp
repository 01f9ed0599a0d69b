#pragma once
// The LS-attention GPT (Hajra 2025; github.com/suvadeep-iitb/nanoGPT, model_localAttn.py): GPT-2
// blocks whose attention splits the heads into local ones (a causal sliding window) and global
// ones (causal), learned positions, an untied lm_head. Both published versions load under their
// state_dict names:
//  - packed_heads (the paper's first release, commit a1f13df): attn.c_attn packs q|k|v of all
//    heads; the first n_local_head heads are local, query i sees keys i − span + 1 … i (span keys);
//  - split_heads (the current code): attn.c_local_attn and attn.c_global_attn pack q|k|v of the
//    local and of the global heads; FlashAttention's window_size = (span, 0) lets query i see
//    keys i − span … i (span + 1 keys).
// The library counts a window in keys, itself included (as LsHeadsAttention does): `window()`.
// Whole sequences run through forward(); decoding one token at a time through a DecodeState and
// step(), whose cost and memory per local head do not grow with the tokens decoded.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "lsattn/backend/cpu/flash.hpp"
#include "lsattn/backend/cpu/layer_norm.hpp"
#include "lsattn/backend/cpu/linear.hpp"
#include "lsattn/core/checks.hpp"
#include "lsattn/core/config.hpp"
#include "lsattn/core/error.hpp"
#include "lsattn/core/tensor.hpp"
#include "lsattn/models/decode_cache.hpp"
#include "lsattn/models/ls_gpt_config.hpp"
#include "lsattn/models/ls_heads_config.hpp"
#include "lsattn/models/parameter_checks.hpp"

namespace lsattn::models::ls_gpt {

// The decoding state of one sequence: per layer the keys and values a next token can see (a
// ring of the last window() for each local head, every earlier one for each global head; see
// decode_cache.hpp) and the position of the next token. Local heads' memory is fixed; global
// heads' grows with the context, as the model attends to all of it.
template <class T = float>
struct DecodeState {
  index_t position = 0;
  std::vector<HeadCache<T>> layers;

  // Bytes of keys and values held.
  std::size_t bytes() const {
    std::size_t total = 0;
    for (const auto& layer : layers) total += layer.bytes();
    return total;
  }
};

template <class T = float>
class LsGpt {
 public:
  LsGpt(const Config& config, Weights<T> weights) : config_((config.validate(), config)) {
    require(std::is_same_v<T, float> || config_.precision == Precision::fp32, "precision bf16 needs float weights");
    detail::require_valid_parameters(weights, config_);
    adopt(std::move(weights));
  }

  const Config& config() const { return config_; }

  // tokens (B, T) with 0 ≤ id < vocab_size and T ≤ block_size → logits (B, T, vocab_size).
  Tensor<T, 3> forward(HostView<const std::int64_t, 2> tokens) const {
    const index_t batch = tokens.extent(0), length = tokens.extent(1);
    require_tokens(config_, tokens, 0);
    const index_t d = config_.n_embd, width = config_.attention_width(), rows = batch * length;
    Tensor<T, 3> x(Shape<3>{batch, length, d});
    for (index_t b = 0; b < batch; ++b)
      for (index_t t = 0; t < length; ++t) embed(tokens(b, t), t, x.address(b, t, 0));

    Tensor<T, 2> normed(Shape<2>{rows, d}), qkv(Shape<2>{rows, 3 * width}), context(Shape<2>{rows, width});
    Tensor<T, 2> q(Shape<2>{length, width}), k(q.shape()), v(q.shape());
    const index_t window = config_.window(), n_local = config_.n_local_head;
    auto visibility_of = [&](index_t head) {
      return ls_heads::HeadVisibility{head < n_local, {window, true}, {true}};
    };
    const std::vector<char> all_valid;
    for (const auto& layer : layers_) {
      normalize(x.data(), normed.data(), rows, layer.ln_1);
      linear(normed.data(), rows, layer.qkv_weight, layer.qkv_bias, qkv.data());
      for (index_t b = 0; b < batch; ++b) {
        for (index_t t = 0; t < length; ++t) {
          const T* row = qkv.address(b * length + t, 0);
          std::copy_n(row, width, q.address(t, 0));
          std::copy_n(row + width, width, k.address(t, 0));
          std::copy_n(row + 2 * width, width, v.address(t, 0));
        }
        detail::overflow_checked("ls_gpt::LsGpt", [&] {
          cpu_detail::flash_attention(q.data(), k.data(), v.data(), all_valid, length, config_.n_head, config_.head_dim,
                                      visibility_of, context.address(b * length, 0), static_cast<T*>(nullptr),
                                      config_.threads, config_.precision);
        });
      }
      add_linear(context.data(), rows, layer.proj_weight, layer.proj_bias, x.data());
      feed_forward(layer, x.data(), rows, normed);
    }
    Tensor<T, 3> logits(Shape<3>{batch, length, config_.vocab_size});
    normalize(x.data(), normed.data(), rows, final_norm_);
    linear(normed.data(), rows, lm_head_, Tensor<T, 1>{}, logits.data());
    detail::require_finite_output(std::as_const(logits).view(), "ls_gpt::LsGpt", config_.threads);
    return logits;
  }

  DecodeState<T> initial_state() const {
    DecodeState<T> state;
    state.layers.assign(static_cast<std::size_t>(config_.n_layer), HeadCache<T>{});  // rings grow as tokens come
    return state;
  }

  // Feeds the next token of each of the state's sequences (one per state) and returns its
  // logits (vocab_size), equal to forward()'s at that position. Throws past block_size.
  std::vector<T> step(std::int64_t token, DecodeState<T>& state) const {
    require(state.layers.size() == static_cast<std::size_t>(config_.n_layer),
            "state: not a decoding state of this model (start from initial_state())");
    require(state.position < config_.block_size, "step: position ", state.position,
            " is past block_size = ", config_.block_size, " (the learned positions end there)");
    require(token >= 0 && token < config_.vocab_size, "step: token id ", token, " is outside the vocabulary [0, ",
            config_.vocab_size, ")");
    const index_t d = config_.n_embd, width = config_.attention_width(), hd = config_.head_dim;
    const index_t n_local = config_.n_local_head, window = config_.window(), t = state.position;
    std::vector<T> x(static_cast<std::size_t>(d)), normed(x.size()), qkv(static_cast<std::size_t>(3 * width)),
        context(static_cast<std::size_t>(width));
    embed(token, t, x.data());
    Tensor<T, 2> normed_rows;
    for (index_t i = 0; i < config_.n_layer; ++i) {
      const auto& layer = layers_[static_cast<std::size_t>(i)];
      const auto index = static_cast<std::size_t>(i);
      normalize(x.data(), normed.data(), 1, layer.ln_1);
      linear(normed.data(), 1, layer.qkv_weight, layer.qkv_bias, qkv.data());
      detail::decode_attention(qkv.data(), qkv.data() + width, qkv.data() + 2 * width, config_.n_head, hd,
                               [n_local](index_t h) { return h < n_local; }, window, t, state.layers[index], context.data(),
                               config_.threads);
      add_linear(context.data(), 1, layer.proj_weight, layer.proj_bias, x.data());
      if (normed_rows.size() == 0) normed_rows = Tensor<T, 2>(Shape<2>{1, d});
      feed_forward(layer, x.data(), 1, normed_rows);
    }
    std::vector<T> logits(static_cast<std::size_t>(config_.vocab_size));
    normalize(x.data(), normed.data(), 1, final_norm_);
    linear(normed.data(), 1, lm_head_, Tensor<T, 1>{}, logits.data());
    detail::require_finite(HostView<const T, 1>(logits.data(), Shape<1>{config_.vocab_size}), "logits");
    ++state.position;
    return logits;
  }

 private:
  struct Norm {
    Tensor<T, 1> weight, bias;
  };
  // A block in the layout both versions reduce to: q|k|v of all heads (local heads first).
  struct Layer {
    Norm ln_1, ln_2;
    Tensor<T, 2> qkv_weight, proj_weight, fc_weight, fc_proj_weight;
    Tensor<T, 1> qkv_bias, proj_bias, fc_bias, fc_proj_bias;
  };

  void adopt(Weights<T> weights) {
    const index_t d = config_.n_embd;
    auto norm = [&](Tensor<T, 1>& weight, Tensor<T, 1>& bias) {
      Norm n{std::move(weight), std::move(bias)};
      if (n.bias.size() == 0) n.bias = Tensor<T, 1>(Shape<1>{d});  // bias = False: zeros
      return n;
    };
    for (auto& b : weights.blocks) {
      Layer layer;
      layer.ln_1 = norm(b.ln_1_weight, b.ln_1_bias);
      layer.ln_2 = norm(b.ln_2_weight, b.ln_2_bias);
      PackedAttention<T> qkv = pack_attention(config_, b);
      layer.qkv_weight = std::move(qkv.weight);
      layer.qkv_bias = std::move(qkv.bias);
      layer.proj_weight = std::move(b.attn_c_proj_weight);
      layer.proj_bias = std::move(b.attn_c_proj_bias);
      layer.fc_weight = std::move(b.mlp_c_fc_weight);
      layer.fc_bias = std::move(b.mlp_c_fc_bias);
      layer.fc_proj_weight = std::move(b.mlp_c_proj_weight);
      layer.fc_proj_bias = std::move(b.mlp_c_proj_bias);
      layers_.push_back(std::move(layer));
    }
    wte_ = std::move(weights.wte);
    wpe_ = std::move(weights.wpe);
    final_norm_ = norm(weights.ln_f_weight, weights.ln_f_bias);
    lm_head_ = std::move(weights.lm_head);
  }

  void embed(std::int64_t token, index_t position, T* out) const {
    for (index_t f = 0; f < config_.n_embd; ++f) out[f] = wte_(token, f) + wpe_(position, f);
  }

  void normalize(const T* in, T* out, index_t rows, const Norm& norm) const {
    const LayerNormParams<T, host_space> params{norm.weight.view(), norm.bias.view(), 1e-5};
    detail::LayerNormOp<cpu>::run(in, out, rows, config_.n_embd, params, config_.threads);
  }

  void linear(const T* x, index_t rows, const Tensor<T, 2>& w, const Tensor<T, 1>& bias, T* y) const {
    cpu_detail::linear(x, rows, w.extent(1), w.data(), bias.size() ? bias.data() : nullptr, w.extent(0), y,
                       config_.threads, config_.precision);
  }

  // x += input Wᵀ + b (the residual connections).
  void add_linear(const T* input, index_t rows, const Tensor<T, 2>& w, const Tensor<T, 1>& bias, T* x) const {
    std::vector<T> out(static_cast<std::size_t>(rows * w.extent(0)));
    linear(input, rows, w, bias, out.data());
    for (std::size_t i = 0; i < out.size(); ++i) x[i] += out[i];
  }

  // x += c_proj(GELU(c_fc(LN_2(x)))), GELU in its exact erf form (nn.GELU()).
  void feed_forward(const Layer& layer, T* x, index_t rows, Tensor<T, 2>& normed) const {
    normalize(x, normed.data(), rows, layer.ln_2);
    std::vector<T> hidden(static_cast<std::size_t>(rows * layer.fc_weight.extent(0)));
    linear(normed.data(), rows, layer.fc_weight, layer.fc_bias, hidden.data());
    for (T& v : hidden) v = static_cast<T>(0.5 * v * (1.0 + std::erf(v / std::sqrt(2.0))));
    add_linear(hidden.data(), rows, layer.fc_proj_weight, layer.fc_proj_bias, x);
  }

  Config config_;
  std::vector<Layer> layers_;
  Tensor<T, 2> wte_, wpe_, lm_head_;
  Norm final_norm_;
};

}  // namespace lsattn::models::ls_gpt
