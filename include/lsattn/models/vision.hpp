#pragma once
// The 2D Transformer-LS attention of ViL-LS (imagenet/models/layers/transformer_ls.py::
// AttentionLS), with the published parameter names.
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>
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
#include "lsattn/policy/positions.hpp"

namespace lsattn::models::vision {

// The published constructor arguments (spec §3.1); the grid (nx rows, ny columns) is given per call.
struct Config {
  index_t dim = 96;        // C
  index_t num_heads = 3;
  index_t w = 7;           // block side
  index_t dp_rank = 8;     // r; 0 disables the dynamic projection
  index_t nglo = 1;        // global tokens at the front of the sequence
  bool rpe = true;         // relative position bias on the window scores
  bool qkv_bias = true;
  int threads = 0;
  Precision precision = Precision::fp32;  // of the matrix products (bf16: CPU only)

  index_t head_dim() const { return num_heads > 0 ? dim / num_heads : 0; }

  void validate() const {
    checked_size("num_heads", num_heads, 1);
    checked_size("dim", dim, 1);
    checked_size("w", w, -max_size);  // w ≤ 0: no window (compressed and global keys only)
    checked_size("dp_rank", dp_rank);
    checked_size("nglo", nglo);
    checked_product({{"3", 3}, {"dim", dim}, {"dim", dim}});
    checked_product({{"num_heads", num_heads}, {"dp_rank", dp_rank}, {"dim", dim}});
    if (w > 0) {  // a query's window keys (T², T = w + 2·max(w/2, 1)), and with rpe the index
                  // buffer (w², T²) and the expanded bias (nh, w², T²)
      const index_t tile = checked_sum({{"w", w}, {"2 * max(w / 2, 1)", 2 * std::max<index_t>(w / 2, 1)}});
      checked_product({{"tile", tile}, {"tile", tile}});
      if (rpe) checked_product({{"num_heads", num_heads}, {"w", w}, {"w", w}, {"tile", tile}, {"tile", tile}});
    }
    require(dim % num_heads == 0, "dim (", dim, ") must be divisible by num_heads (", num_heads, ")");
    require(!rpe || w >= 2, "rpe: the published relative position index needs w >= 2, got w = ", w);
    require(threads >= 0, "threads: must be >= 0 (0 = default), got ", threads);
  }

  AttentionConfig attention() const {
    AttentionConfig config{num_heads, head_dim(), w, dp_rank, threads};
    config.precision = precision;
    return config;
  }
  RelativePositionBias2D position_bias() const { return {w}; }
};

// Parameters under their state_dict names (spec §3.2). `relative_position_index` is a buffer
// computed from the formula; a checkpoint's copy is checked against it by the loader.
template <class T = float>
struct Weights {
  Tensor<T, 2> qkv_weight, proj_weight, to_dynamic_projection_weight, local_relative_position_bias_table;
  Tensor<T, 1> qkv_bias, proj_bias, to_dynamic_projection_bias;
  Tensor<T, 1> dual_ln_dp_weight, dual_ln_dp_bias, dual_ln_full_weight, dual_ln_full_bias;

  template <class Visitor>
  void for_each(const Config& config, Visitor&& visit) {
    const index_t c = config.dim, logits = config.num_heads * config.dp_rank;
    visit("qkv.weight", qkv_weight, Shape<2>{3 * c, c});
    if (config.qkv_bias) visit("qkv.bias", qkv_bias, Shape<1>{3 * c});
    visit("proj.weight", proj_weight, Shape<2>{c, c});
    visit("proj.bias", proj_bias, Shape<1>{c});
    if (config.dp_rank > 0) {
      visit("to_dynamic_projection.weight", to_dynamic_projection_weight, Shape<2>{logits, c});
      visit("to_dynamic_projection.bias", to_dynamic_projection_bias, Shape<1>{logits});
    }
    visit("dual_ln_dp.weight", dual_ln_dp_weight, Shape<1>{c});
    visit("dual_ln_dp.bias", dual_ln_dp_bias, Shape<1>{c});
    visit("dual_ln_full.weight", dual_ln_full_weight, Shape<1>{c});
    visit("dual_ln_full.bias", dual_ln_full_bias, Shape<1>{c});
    if (config.rpe) {
      visit("local_relative_position_bias_table", local_relative_position_bias_table,
            Shape<2>{config.position_bias().table_rows(), config.num_heads});
    }
  }

  static Weights random(const Config& config, std::uint64_t seed) {
    Weights weights;
    std::mt19937_64 generator(seed);
    const double linear_std = 1.0 / std::sqrt(static_cast<double>(config.dim));
    weights.for_each(config, [&](const std::string& name, auto& tensor, const auto& shape) {
      const bool norm_weight = name.rfind("dual_ln", 0) == 0 && name.ends_with(".weight");
      const bool table = name == "local_relative_position_bias_table";
      std::normal_distribution<double> normal(norm_weight ? 1.0 : 0.0,
                                              shape.size() == 2 && !table ? linear_std : (table ? 0.5 : 0.1));
      tensor = std::remove_reference_t<decltype(tensor)>(shape);
      for (auto& v : tensor.values()) v = static_cast<T>(normal(generator));
    });
    return weights;
  }
};

// Every parameter with its shape and finite; those the config switches off (qkv_bias, rpe,
// dp_rank = 0) empty, so that a given one is never silently ignored.
template <class T>
void require_valid_weights(const Config& config, Weights<T>& weights) {
  detail::require_valid_parameters(weights, config);
  if (!config.qkv_bias) detail::require_unused_empty(weights.qkv_bias, "qkv.bias", "qkv_bias = false");
  if (!config.rpe) {
    detail::require_unused_empty(weights.local_relative_position_bias_table, "local_relative_position_bias_table",
                                 "rpe = false");
  }
  if (config.dp_rank == 0) {
    detail::require_unused_empty(weights.to_dynamic_projection_weight, "to_dynamic_projection.weight", "dp_rank = 0");
  }
}

// The published `relative_position_index` buffer [w², (w+2wp)²] (spec §3.5).
inline Tensor<std::int64_t, 2> relative_position_index(const Config& config) {
  const RelativePositionBias2D bias = config.position_bias();
  const index_t w = config.w, tile = bias.tile();
  Tensor<std::int64_t, 2> index(Shape<2>{w * w, tile * tile});
  for (index_t qy = 0; qy < w; ++qy)
    for (index_t qx = 0; qx < w; ++qx)
      for (index_t a = 0; a < tile; ++a)
        for (index_t b = 0; b < tile; ++b) index(qy * w + qx, a * tile + b) = bias.index(qy, qx, a, b);
  return index;
}

// The table expanded through the index into the per-head bias the attention takes (nh, w², T²):
// bias[h][qy·w + qx][a·T + b] = table[index(qy, qx, a, b)][h]. Depends only on the weights and w.
template <class T>
Tensor<T, 3> dense_position_bias(const Config& config, const Tensor<T, 2>& table) {
  const auto index = relative_position_index(config);
  const index_t heads = config.num_heads;
  Tensor<T, 3> bias(Shape<3>{heads, index.extent(0), index.extent(1)});
  for (index_t h = 0; h < heads; ++h)
    for (index_t q = 0; q < index.extent(0); ++q)
      for (index_t k = 0; k < index.extent(1); ++k) bias(h, q, k) = table.view()(index(q, k), h);
  return bias;
}

// AttentionLS(dim, ...).forward(x, nx, ny): x (B, nglo + nx·ny, C) with patches in row-major
// order (row·ny + col); returns the same shape. Any nx, ny ≥ 1 and any nglo ≥ 0.
template <class Backend, class T = float>
class AttentionLS2D {
 public:
  using space = typename Backend::memory_space;
  using Attention = LongShortAttention<Backend, T, Window2D, SequenceProjection, DualLayerNorm>;

  AttentionLS2D(const Config& config, Weights<T> weights)
      : config_((config.validate(), config)), weights_(std::move(weights)), attention_(config.attention()) {
    require_valid_weights(config_, weights_);
    if (config_.rpe) position_bias_ = dense_position_bias(config_, weights_.local_relative_position_bias_table);
  }

  const Config& config() const { return config_; }

  Tensor<T, 3> forward(HostView<const T, 3> x, index_t nx, index_t ny) const {
    CpuWorkspace scratch;
    return forward(x, nx, ny, scratch);
  }

  // The same, with the intermediate tensors in `workspace` (see lra::AttentionLS::forward).
  Tensor<T, 3> forward(HostView<const T, 3> x, index_t nx, index_t ny, CpuWorkspace& workspace) const {
    const index_t c = config_.dim, globals = config_.nglo;
    const index_t tokens = detail::grid_token_count(globals, nx, ny);
    require(x.extent(0) >= 1 && x.shape() == Shape<3>{x.extent(0), tokens, c}, "x: expected shape (B, nglo + nx*ny = ",
            globals, " + ", nx, "*", ny, ", dim = ", c, "), got ", to_string(x.shape()));
    detail::require_finite(x, "x", config_.threads);
    const index_t batch = x.extent(0), rows = batch * tokens, patches = nx * ny;
    auto linear = [&](const T* input, index_t count, const T* weight, const T* bias, index_t out_features, T* y) {
      detail::LinearOp<Backend>::run(input, count, c, weight, bias, out_features, y, config_.threads, config_.precision);
    };
    // Workspace tensors: every element is written (by a linear layer, or the attention) before
    // it is read.
    const CpuWorkspace::Frame frame(workspace);
    auto take = [&](const Shape<3>& shape) { return HostView<T, 3>(workspace.take<T>(element_count(shape)), shape); };
    // The fused qkv: rows [0, C) of its weight are q, [C, 2C) k, [2C, 3C) v.
    const HostView<T, 3> query = take(x.shape()), key = take(x.shape()), value = take(x.shape());
    const HostView<T, 3> targets[] = {query, key, value};
    for (index_t part = 0; part < 3; ++part) {
      linear(x.data(), rows, weights_.qkv_weight.data() + part * c * c,
             config_.qkv_bias ? weights_.qkv_bias.data() + part * c : nullptr, c, targets[part].data());
    }
    HostView<T, 3> logits;
    if (config_.dp_rank > 0) {  // from the raw patches (step 4)
      const index_t outputs = config_.num_heads * config_.dp_rank;
      logits = take(Shape<3>{batch, patches, outputs});
      for (index_t b = 0; b < batch; ++b) {
        linear(x.address(b, globals, 0), patches, weights_.to_dynamic_projection_weight.data(),
               weights_.to_dynamic_projection_bias.data(), outputs, logits.address(b, 0, 0));
      }
    }
    const VisionAttentionInputs<T, space> inputs{query, key, value, logits, globals, nx, ny, position_bias_.view()};
    const typename Attention::CombinerParams norm{
        {weights_.dual_ln_full_weight.view(), weights_.dual_ln_full_bias.view(), 1e-5},
        {weights_.dual_ln_dp_weight.view(), weights_.dual_ln_dp_bias.view(), 1e-5}};
    const HostView<T, 3> context = take(x.shape());
    Tensor<T, 3> y(x.shape());
    detail::overflow_checked("vision::AttentionLS2D", [&] { attention_(inputs, norm, context, &workspace); });
    linear(context.data(), rows, weights_.proj_weight.data(), weights_.proj_bias.data(), c, y.data());
    detail::require_finite_output(std::as_const(y).view(), "vision::AttentionLS2D", config_.threads);
    return y;
  }

  // What one query patch attends to, for pictures: the joint softmax of head `head` for the
  // patch at (row, col) of batch item 0, as weights on the patches (nx, ny). A window key gets
  // its probability; a compressed key j spreads its probability over the patches with the
  // projection weights P_j (its value is Σ_t P_j[t]·v_t, before the dp LayerNorm). The weight on
  // the global tokens is returned in `global_weight`; the map plus it sums to 1.
  Tensor<T, 2> attention_map(HostView<const T, 3> x, index_t nx, index_t ny, index_t row, index_t col, index_t head,
                             T* global_weight = nullptr) const {
    const index_t c = config_.dim, globals = config_.nglo, dh = config_.head_dim(), r = config_.dp_rank;
    require(row >= 0 && row < nx && col >= 0 && col < ny, "attention_map: patch (", row, ", ", col,
            ") is outside the grid ", nx, " x ", ny);
    require(head >= 0 && head < config_.num_heads, "attention_map: head ", head, " not in [0, ", config_.num_heads, ")");
    const index_t tokens = detail::grid_token_count(globals, nx, ny), patches = nx * ny;
    require(x.extent(0) >= 1 && x.shape() == Shape<3>{x.extent(0), tokens, c}, "x: expected shape (B, ", tokens, ", ",
            c, "), got ", to_string(x.shape()));
    auto project = [&](const T* input, index_t rows, const T* weight, const T* bias, index_t outputs) {
      Tensor<T, 2> result(Shape<2>{rows, outputs});
      detail::LinearOp<Backend>::run(input, rows, c, weight, bias, outputs, result.data(), config_.threads,
                                     config_.precision);
      return result;
    };
    auto qkv_bias = [&](index_t part) { return config_.qkv_bias ? weights_.qkv_bias.data() + part * c : nullptr; };
    const auto query = project(x.address(0, globals + row * ny + col, 0), 1, weights_.qkv_weight.data(), qkv_bias(0), c);
    auto key = project(x.data(), tokens, weights_.qkv_weight.data() + c * c, qkv_bias(1), c);
    const LayerNormParams<T, host_space> full{weights_.dual_ln_full_weight.view(), weights_.dual_ln_full_bias.view(), 1e-5};
    const LayerNormParams<T, host_space> dp{weights_.dual_ln_dp_weight.view(), weights_.dual_ln_dp_bias.view(), 1e-5};
    detail::LayerNormOp<Backend>::run(key.data(), key.data(), tokens, c, full, config_.threads);
    auto dot = [&](const T* a, const T* b) {
      double sum = 0;
      for (index_t f = 0; f < dh; ++f) sum += static_cast<double>(a[head * dh + f]) * b[head * dh + f];
      return sum / std::sqrt(static_cast<double>(dh));
    };

    // Scores in the order of the joint softmax: compressed keys, window tile, global tokens.
    std::vector<double> scores;
    Tensor<T, 2> projection;  // P as (patches, r) for this head
    if (r > 0) {
      const auto logits = project(x.address(0, globals, 0), patches, weights_.to_dynamic_projection_weight.data(),
                                  weights_.to_dynamic_projection_bias.data(), config_.num_heads * r);
      projection = Tensor<T, 2>(Shape<2>{patches, r});
      for (index_t j = 0; j < r; ++j) {
        double top = -std::numeric_limits<double>::infinity(), total = 0;
        for (index_t t = 0; t < patches; ++t) top = std::max<double>(top, logits(t, head * r + j));
        for (index_t t = 0; t < patches; ++t) total += std::exp(logits(t, head * r + j) - top);
        for (index_t t = 0; t < patches; ++t) projection(t, j) = static_cast<T>(std::exp(logits(t, head * r + j) - top) / total);
      }
      Tensor<T, 2> compressed(Shape<2>{r, c});
      for (index_t j = 0; j < r; ++j)
        for (index_t t = 0; t < patches; ++t)
          for (index_t f = 0; f < c; ++f) compressed(j, f) += projection(t, j) * key(globals + t, f);
      detail::LayerNormOp<Backend>::run(compressed.data(), compressed.data(), r, c, dp, config_.threads);
      for (index_t j = 0; j < r; ++j) scores.push_back(dot(query.data(), compressed.address(j, 0)));
    }
    const Window2D window = Window2D::from(config_.attention());  // w ≤ 0: no window keys
    const index_t gy = window.block_of(row), gx = window.block_of(col), tile = window.tile();
    const IndexRange key_rows = window.keys(gy, nx), key_cols = window.keys(gx, ny);
    for (index_t y = key_rows.begin; y < key_rows.end; ++y)
      for (index_t xk = key_cols.begin; xk < key_cols.end; ++xk) {
        double score = dot(query.data(), key.address(globals + y * ny + xk, 0));
        if (config_.rpe) {
          score += position_bias_(head, (row - gy * config_.w) * config_.w + (col - gx * config_.w),
                                  window.tile_offset(gy, y) * tile + window.tile_offset(gx, xk));
        }
        scores.push_back(score);
      }
    for (index_t g = 0; g < globals; ++g) scores.push_back(dot(query.data(), key.address(g, 0)));
    const double top = *std::max_element(scores.begin(), scores.end());
    double total = 0;
    for (double& s : scores) total += (s = std::exp(s - top));
    for (double& s : scores) s /= total;

    Tensor<T, 2> map(Shape<2>{nx, ny});
    for (index_t j = 0; j < r; ++j)
      for (index_t t = 0; t < patches; ++t) map.values()[t] += static_cast<T>(scores[j] * projection(t, j));
    std::size_t next = static_cast<std::size_t>(r);
    for (index_t y = key_rows.begin; y < key_rows.end; ++y)
      for (index_t xk = key_cols.begin; xk < key_cols.end; ++xk) map(y, xk) += static_cast<T>(scores[next++]);
    if (global_weight != nullptr) {
      double mass = 0;
      for (; next < scores.size(); ++next) mass += scores[next];
      *global_weight = static_cast<T>(mass);
    }
    return map;
  }

 private:
  Config config_;
  Weights<T> weights_;
  Attention attention_;
  Tensor<T, 3> position_bias_;
};

}  // namespace lsattn::models::vision
