#pragma once
// LS-attention (Hajra 2025): ordinary multi-head attention whose heads are split into local
// heads (a sliding window of w keys, causal or centred) and global heads (full attention).
// Standard parameters W_q, W_k, W_v, W_o, so a model trained with ordinary multi-head
// attention loads unchanged. Exact softmax per head, computed with the flash-style kernel.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "lsattn/backend/cpu/flash.hpp"
#include "lsattn/backend/cpu/linear.hpp"
#include "lsattn/core/checks.hpp"
#include "lsattn/core/error.hpp"
#include "lsattn/core/tensor.hpp"
#include "lsattn/models/parameter_checks.hpp"
#include "lsattn/policy/window.hpp"

namespace lsattn::models::ls_heads {

struct Config {
  index_t dim = 512;
  index_t num_heads = 8;
  std::vector<index_t> local_heads;  // indices of the local heads; the others attend globally
  index_t window = 256;              // w, keys per local query
  bool causal = false;
  int threads = 0;

  index_t head_dim() const { return num_heads > 0 ? dim / num_heads : 0; }
  bool is_local(index_t head) const { return std::find(local_heads.begin(), local_heads.end(), head) != local_heads.end(); }

  void validate() const {
    require(num_heads >= 1, "num_heads: must be >= 1, got ", num_heads);
    require(dim >= 1 && dim % num_heads == 0, "dim (", dim, ") must be divisible by num_heads (", num_heads, ")");
    require(window >= 1, "window: must be >= 1, got ", window);
    for (std::size_t i = 0; i < local_heads.size(); ++i) {
      require(local_heads[i] >= 0 && local_heads[i] < num_heads, "local_heads: head ", local_heads[i],
              " is not in [0, ", num_heads, ")");
      require(std::count(local_heads.begin(), local_heads.end(), local_heads[i]) == 1, "local_heads: head ",
              local_heads[i], " is listed twice");
    }
    require(threads >= 0, "threads: must be >= 0 (0 = default), got ", threads);
  }
};

template <class T = float>
struct Weights {
  Tensor<T, 2> W_q_weight, W_k_weight, W_v_weight, W_o_weight;
  Tensor<T, 1> W_q_bias, W_k_bias, W_v_bias, W_o_bias;

  template <class Visitor>
  void for_each(const Config& config, Visitor&& visit) {
    const Shape<2> matrix{config.dim, config.dim};
    const Shape<1> vector{config.dim};
    visit("W_q.weight", W_q_weight, matrix);
    visit("W_q.bias", W_q_bias, vector);
    visit("W_k.weight", W_k_weight, matrix);
    visit("W_k.bias", W_k_bias, vector);
    visit("W_v.weight", W_v_weight, matrix);
    visit("W_v.bias", W_v_bias, vector);
    visit("W_o.weight", W_o_weight, matrix);
    visit("W_o.bias", W_o_bias, vector);
  }

  static Weights random(const Config& config, std::uint64_t seed) {
    Weights weights;
    std::mt19937_64 generator(seed);
    weights.for_each(config, [&](const std::string&, auto& tensor, const auto& shape) {
      std::normal_distribution<double> normal(0.0, shape.size() == 2 ? 1.0 / std::sqrt(double(config.dim)) : 0.1);
      tensor = std::remove_reference_t<decltype(tensor)>(shape);
      for (auto& v : tensor.values()) v = static_cast<T>(normal(generator));
    });
    return weights;
  }
};

// The visibility of one head: a sliding window or everything (both causal or not).
struct HeadVisibility {
  bool local = false;
  SlidingVisibility sliding;
  FullVisibility full;
  constexpr IndexRange keys(index_t first, index_t last, index_t length) const {
    return local ? sliding.keys(first, last, length) : full.keys(first, last, length);
  }
  constexpr IndexRange row_keys(index_t t, index_t length) const {
    return local ? sliding.row_keys(t, length) : full.row_keys(t, length);
  }
};

template <class Backend, class T = float>
class LsHeadsAttention {
  static_assert(std::is_same_v<Backend, cpu>, "lsattn: LS-attention heads exist on the CPU backend only so far");

 public:
  LsHeadsAttention(const Config& config, Weights<T> weights) : config_((config.validate(), config)), weights_(std::move(weights)) {
    detail::require_parameter_shapes(weights_, config_);
  }

  const Config& config() const { return config_; }

  // x (B, L, dim), mask (B, L) 1 = valid, 0 = padding (keys are masked; padded query rows give
  // W_o.bias). max_logits, if given, receives per head the largest pre-softmax logit q·k/√dh
  // over all visible keys of the batch (the quantity LS-attention keeps in check).
  Tensor<T, 3> forward(HostView<const T, 3> x, HostView<const T, 2> mask = {}, std::vector<T>* max_logits = nullptr) const {
    const index_t d = config_.dim, heads = config_.num_heads;
    require(x.extent(0) >= 1 && x.extent(1) >= 1 && x.extent(2) == d, "x: expected shape (B >= 1, L >= 1, dim = ", d,
            "), got ", to_string(x.shape()));
    if (!mask.empty()) detail::require_shape(mask, "mask", Shape<2>{x.extent(0), x.extent(1)});
    detail::require_finite(x, "x");
    if (!mask.empty()) detail::require_binary_mask(mask, "mask");
    const index_t batch = x.extent(0), length = x.extent(1), rows = batch * length;
    auto linear = [&](const T* input, const Tensor<T, 2>& w, const Tensor<T, 1>& b, T* y) {
      cpu_detail::linear(input, rows, d, w.data(), b.data(), d, y, config_.threads);
    };
    Tensor<T, 3> q(x.shape()), k(x.shape()), v(x.shape()), context(x.shape()), y(x.shape());
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
      cpu_detail::flash_attention(q.data() + offset, k.data() + offset, v.data() + offset, valid, length, heads,
                                  config_.head_dim(), visibility_of, context.data() + offset,
                                  max_logits ? batch_largest.data() : nullptr, config_.threads);
      for (index_t h = 0; h < heads; ++h) largest[h] = std::max(largest[h], batch_largest[h]);
      for (index_t t = 0; t < length; ++t)  // padded query rows: zero context, hence W_o.bias
        if (!valid.empty() && !valid[t]) std::fill_n(context.data() + offset + t * d, d, T(0));
    }
    linear(context.data(), weights_.W_o_weight, weights_.W_o_bias, y.data());
    if (max_logits != nullptr) *max_logits = largest;
    return y;
  }

 private:
  Config config_;
  Weights<T> weights_;
};

}  // namespace lsattn::models::ls_heads
