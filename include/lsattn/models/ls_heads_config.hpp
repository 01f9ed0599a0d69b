#pragma once
// LS-attention (Hajra 2025) layer description shared by the backends: the configuration, the
// parameters under their names, and the per-head visibility.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "lsattn/core/config.hpp"
#include "lsattn/core/error.hpp"
#include "lsattn/core/tensor.hpp"
#include "lsattn/policy/window.hpp"

namespace lsattn::models::ls_heads {

struct Config {
  index_t dim = 512;
  index_t num_heads = 8;
  std::vector<index_t> local_heads;  // indices of the local heads; the others attend globally
  index_t window = 256;              // w, keys per local query
  bool causal = false;
  int threads = 0;
  Precision precision = Precision::fp32;  // of the matrix products (bf16: CPU only)

  index_t head_dim() const { return num_heads > 0 ? dim / num_heads : 0; }
  bool is_local(index_t head) const { return std::find(local_heads.begin(), local_heads.end(), head) != local_heads.end(); }

  void validate() const {
    checked_size("num_heads", num_heads, 1);
    checked_size("dim", dim, 1);
    checked_size("window", window, 1);
    checked_product({{"dim", dim}, {"dim", dim}});
    require(dim % num_heads == 0, "dim (", dim, ") must be divisible by num_heads (", num_heads, ")");
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
  LSATTN_HOST_DEVICE constexpr IndexRange keys(index_t first, index_t last, index_t length) const {
    return local ? sliding.keys(first, last, length) : full.keys(first, last, length);
  }
  LSATTN_HOST_DEVICE constexpr IndexRange row_keys(index_t t, index_t length) const {
    return local ? sliding.row_keys(t, length) : full.row_keys(t, length);
  }
};

// The layer: the CPU backend in <lsattn/models/ls_heads.hpp>, CUDA in <lsattn/models/ls_heads_cuda.cuh>.
template <class Backend, class T = float>
class LsHeadsAttention;

}  // namespace lsattn::models::ls_heads
