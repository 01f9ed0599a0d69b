#pragma once
// LS-attention (Hajra 2025): ordinary multi-head attention whose heads are split into local
// heads (a sliding window of w keys, causal or centred) and global heads (full attention).
// Standard parameters W_q, W_k, W_v, W_o, so a model trained with ordinary multi-head
// attention loads unchanged. Exact softmax per head, computed with the flash-style kernel.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "lsattn/backend/cpu/flash.hpp"
#include "lsattn/backend/cpu/linear.hpp"
#include "lsattn/backend/cpu/workspace.hpp"
#include "lsattn/core/checks.hpp"
#include "lsattn/core/error.hpp"
#include "lsattn/core/tensor.hpp"
#include "lsattn/models/decode_cache.hpp"
#include "lsattn/models/ls_heads_config.hpp"
#include "lsattn/models/parameter_checks.hpp"
#include "lsattn/policy/window.hpp"

namespace lsattn::models::ls_heads {

template <class Backend, class T>
class LsHeadsAttention {
  static_assert(std::is_same_v<Backend, cpu>,
                "lsattn: for the CUDA backend include <lsattn/models/ls_heads_cuda.cuh> (from a .cu file)");

 public:
  LsHeadsAttention(const Config& config, Weights<T> weights) : config_((config.validate(), config)), weights_(std::move(weights)) {
    detail::require_valid_parameters(weights_, config_);
  }

  const Config& config() const { return config_; }

  // x (B, L, dim), mask (B, L) 1 = valid, 0 = padding (keys are masked; padded query rows give
  // W_o.bias). max_logits, if given, receives per head the largest pre-softmax logit q·k/√dh
  // over all visible keys of the batch (the quantity LS-attention keeps in check).
  Tensor<T, 3> forward(HostView<const T, 3> x, HostView<const T, 2> mask = {}, std::vector<T>* max_logits = nullptr) const {
    CpuWorkspace scratch;
    return forward(x, mask, max_logits, scratch);
  }

  // The same, with Q, K, V and the context in `workspace` (see lra::AttentionLS::forward).
  Tensor<T, 3> forward(HostView<const T, 3> x, HostView<const T, 2> mask, std::vector<T>* max_logits,
                       CpuWorkspace& workspace) const {
    const index_t d = config_.dim, heads = config_.num_heads;
    require(x.extent(0) >= 1 && x.extent(1) >= 1 && x.extent(2) == d, "x: expected shape (B >= 1, L >= 1, dim = ", d,
            "), got ", to_string(x.shape()));
    if (!mask.empty()) detail::require_shape(mask, "mask", Shape<2>{x.extent(0), x.extent(1)});
    detail::require_finite(x, "x", config_.threads);
    if (!mask.empty()) detail::require_binary_mask(mask, "mask");
    const index_t batch = x.extent(0), length = x.extent(1), rows = batch * length;
    auto linear = [&](const T* input, const Tensor<T, 2>& w, const Tensor<T, 1>& b, T* y) {
      cpu_detail::linear(input, rows, d, w.data(), b.data(), d, y, config_.threads, config_.precision);
    };
    // Workspace tensors: the linear layers write all of Q, K, V, the attention all of the context.
    const CpuWorkspace::Frame frame(workspace);
    auto take = [&] { return HostView<T, 3>(workspace.take<T>(x.size()), x.shape()); };
    const HostView<T, 3> q = take(), k = take(), v = take(), context = take();
    Tensor<T, 3> y(x.shape());
    linear(x.data(), weights_.W_q_weight, weights_.W_q_bias, q.data());
    linear(x.data(), weights_.W_k_weight, weights_.W_k_bias, k.data());
    linear(x.data(), weights_.W_v_weight, weights_.W_v_bias, v.data());
    auto visibility_of = [&](index_t head) {
      return HeadVisibility{config_.is_local(head), {config_.window, config_.causal}, {config_.causal}};
    };
    std::vector<T> largest(static_cast<std::size_t>(heads), -std::numeric_limits<T>::infinity()), batch_largest(largest);
    std::vector<char> valid;
    for (index_t b = 0; b < batch; ++b) {
      const index_t offset = b * length * d;
      if (!mask.empty()) {
        valid.assign(static_cast<std::size_t>(length), 1);
        for (index_t t = 0; t < length; ++t) valid[t] = mask(b, t) != T(0);
      }
      detail::overflow_checked("ls_heads::LsHeadsAttention", [&] {
        cpu_detail::flash_attention(q.data() + offset, k.data() + offset, v.data() + offset, valid, length, heads,
                                    config_.head_dim(), visibility_of, context.data() + offset,
                                    max_logits ? batch_largest.data() : nullptr, config_.threads, config_.precision);
      });
      for (index_t h = 0; h < heads; ++h) largest[h] = std::max(largest[h], batch_largest[h]);
      for (index_t t = 0; t < length; ++t)  // padded query rows: zero context, hence W_o.bias
        if (!valid.empty() && !valid[t]) std::fill_n(context.data() + offset + t * d, d, T(0));
    }
    linear(context.data(), weights_.W_o_weight, weights_.W_o_bias, y.data());
    detail::require_finite_output(std::as_const(y).view(), "ls_heads::LsHeadsAttention", config_.threads);
    if (max_logits != nullptr) *max_logits = largest;
    return y;
  }

  // Decoding, for causal configurations: one token at a time, each step reusing the keys and
  // values of the earlier ones (a ring of the last `window` for the local heads, all of them
  // for the global heads; see decode_cache.hpp).
  struct DecodeState {
    index_t position = 0;
    HeadCache<T> cache;
    std::size_t bytes() const { return cache.bytes(); }
  };

  DecodeState initial_state() const {
    require(config_.causal, "initial_state: decoding needs a causal configuration (causal = true)");
    return DecodeState{};  // the local ring grows to `window` slots as tokens come
  }

  // The next token's row x (dim) → its output row (dim), equal to forward()'s at that position
  // of the sequence fed so far.
  std::vector<T> step(HostView<const T, 1> x, DecodeState& state) const {
    const index_t d = config_.dim;
    require(config_.causal, "step: decoding needs a causal configuration (causal = true)");
    require(x.extent(0) == d && x.data() != nullptr, "x: expected shape (dim = ", d, "), got ", to_string(x.shape()));
    detail::require_finite(x, "x", config_.threads);
    std::vector<T> q(static_cast<std::size_t>(d)), k(q.size()), v(q.size()), context(q.size()), y(q.size());
    auto linear = [&](const T* input, const Tensor<T, 2>& w, const Tensor<T, 1>& b, T* out) {
      cpu_detail::linear(input, 1, d, w.data(), b.data(), d, out, config_.threads, config_.precision);
    };
    linear(x.data(), weights_.W_q_weight, weights_.W_q_bias, q.data());
    linear(x.data(), weights_.W_k_weight, weights_.W_k_bias, k.data());
    linear(x.data(), weights_.W_v_weight, weights_.W_v_bias, v.data());
    detail::overflow_checked("ls_heads::LsHeadsAttention step", [&] {
      detail::decode_attention(q.data(), k.data(), v.data(), config_.num_heads, config_.head_dim(),
                               [&](index_t h) { return config_.is_local(h); }, config_.window, state.position,
                               state.cache, context.data(), config_.threads);
    });
    linear(context.data(), weights_.W_o_weight, weights_.W_o_bias, y.data());
    detail::require_finite(HostView<const T, 1>(y.data(), Shape<1>{d}), "output");
    ++state.position;
    return y;
  }

 private:
  Config config_;
  Weights<T> weights_;
};

}  // namespace lsattn::models::ls_heads
