#pragma once
// LongShortAttention: the composition of a short-term window policy, a long-range projection
// policy and a combiner, executed by a backend chosen at compile time.
#include <cmath>
#include <concepts>
#include <string>
#include <utility>

#include "lsattn/core/backend.hpp"
#include "lsattn/core/checks.hpp"
#include "lsattn/core/error.hpp"
#include "lsattn/core/tensor.hpp"
#include "lsattn/detail/executor.hpp"
#include "lsattn/policy/combiner.hpp"
#include "lsattn/policy/projection.hpp"
#include "lsattn/policy/window.hpp"

namespace lsattn {

// Runtime sizes of one attention; checked once at the boundary.
struct AttentionConfig {
  index_t heads = 1;        // nh
  index_t head_dim = 1;     // dh
  index_t window_size = 0;  // w (≤ 0 disables the short-term part)
  index_t rank = 0;         // r, compressed keys per head (0 disables the long-range part)
  int threads = 0;          // CPU threads; 0 = OpenMP's default. Results do not depend on it.

  index_t width() const { return heads * head_dim; }
};

// Inputs of the attention proper, already projected: head h owns features [h·dh, (h+1)·dh).
// The query is not scaled (the attention applies 1/√dh). Empty views mean "absent".
template <class T, class Space = host_space>
struct AttentionInputs {
  TensorView<const T, 3, Space> query = {};              // (B, L, nh·dh)
  TensorView<const T, 3, Space> key = {};                // (B, L, nh·dh), before the local LN
  TensorView<const T, 3, Space> value = {};              // (B, L, nh·dh), before the local LN
  TensorView<const T, 3, Space> projection_logits = {};  // (B, L, nh·r), required when r > 0
  TensorView<const T, 2, Space> mask = {};               // (B, L): 1 valid, 0 padding; empty = all valid
  // Optional cls token (spec §1.3 steps 5, 11), projected, not normalised; each (B, 1, nh·dh).
  TensorView<const T, 3, Space> cls_query = {};
  TensorView<const T, 3, Space> cls_key = {};
  TensorView<const T, 3, Space> cls_value = {};

  bool has_cls() const { return !cls_query.empty() || !cls_key.empty() || !cls_value.empty(); }
};

template <class W>
concept WindowPolicy = requires(const W window, index_t i) {
  { window.enabled() } -> std::convertible_to<bool>;
  { window.queries(i, i) } -> std::same_as<IndexRange>;
  { window.keys(i, i) } -> std::same_as<IndexRange>;
};

template <class P>
concept ProjectionPolicy = requires(const P projection) {
  { projection.enabled() } -> std::convertible_to<bool>;
  { projection.rank } -> std::convertible_to<index_t>;
};

template <class C>
concept CombinerPolicy = requires {
  { C::normalizes } -> std::convertible_to<bool>;
  typename C::template Params<float, host_space>;
};

template <class Backend, class T, WindowPolicy Window = BidirectionalWindow,
          ProjectionPolicy Projection = SequenceProjection, CombinerPolicy Combiner = DualLayerNorm>
class LongShortAttention {
 public:
  using backend = Backend;
  using space = typename Backend::memory_space;
  using Inputs = AttentionInputs<T, space>;
  using CombinerParams = typename Combiner::template Params<T, space>;
  using Output = TensorView<T, 3, space>;

  explicit LongShortAttention(const AttentionConfig& config) : config_(config) {
    require(config.heads >= 1, "heads: must be >= 1, got ", config.heads);
    require(config.head_dim >= 1, "head_dim: must be >= 1, got ", config.head_dim);
    require(config.rank >= 0, "rank: must be >= 0, got ", config.rank);
    require(config.threads >= 0, "threads: must be >= 0 (0 = default), got ", config.threads);
  }

  const AttentionConfig& config() const { return config_; }
  Window window(bool has_cls) const {
    // The published w ≤ 0, r = 0 case: every token attends to itself only (cls token required).
    if (config_.window_size <= 0 && config_.rank == 0 && has_cls) return Window::self_only();
    return Window::segments(config_.window_size);
  }
  Projection projection() const { return Projection{config_.rank}; }

  // Checks every shape, value and configuration rule; returns an empty string when valid.
  std::string validate(const Inputs& in, const CombinerParams& norm, const Output& out) const {
    try {
      check(in, norm, out);
    } catch (const error& e) {
      return e.what();
    }
    return {};
  }

  // context (B, L(+1), nh·dh): the per-head attention outputs, merged, before the output
  // projection; with a cls token its row comes first. Padded query rows are zero.
  void operator()(const Inputs& in, const CombinerParams& norm, const Output& context) const {
    check(in, norm, context);
    detail::Executor<Backend, Window, Projection>::template run<T, Combiner>(config_, window(in.has_cls()),
                                                                             projection(), in, norm, context);
  }

 private:
  void check(const Inputs& in, const CombinerParams& norm, const Output& out) const {
    const index_t width = config_.width();
    require(in.query.extent(0) >= 1, "query: batch size must be >= 1, got ", in.query.extent(0));
    require(in.query.extent(1) >= 1, "query: sequence length must be >= 1, got ", in.query.extent(1),
            " (an empty sequence has nothing to attend to)");
    const index_t batch = in.query.extent(0), length = in.query.extent(1);
    const Shape<3> tokens{batch, length, width};
    detail::require_shape(in.query, "query", tokens);
    detail::require_shape(in.key, "key", tokens);
    detail::require_shape(in.value, "value", tokens);
    if (config_.rank > 0) {
      detail::require_shape(in.projection_logits, "projection_logits", Shape<3>{batch, length, config_.heads * config_.rank});
    } else {
      require(in.projection_logits.empty(), "projection_logits: given but rank = 0");
    }
    if (!in.mask.empty()) detail::require_shape(in.mask, "mask", Shape<2>{batch, length});
    const bool cls = in.has_cls();
    if (cls) {
      detail::require_shape(in.cls_query, "cls_query", Shape<3>{batch, 1, width});
      detail::require_shape(in.cls_key, "cls_key", Shape<3>{batch, 1, width});
      detail::require_shape(in.cls_value, "cls_value", Shape<3>{batch, 1, width});
    }
    require(config_.window_size > 0 || config_.rank > 0 || cls, "window_size = ", config_.window_size,
            " and rank = 0 leave no keys to attend to; this is allowed only with a cls token (self-only attention)");
    detail::require_shape(out, "context", Shape<3>{batch, length + (cls ? 1 : 0), width});
    if constexpr (Combiner::normalizes) {
      const Shape<1> features{width};
      detail::require_shape(norm.local.weight, "local LayerNorm weight", features);
      detail::require_shape(norm.local.bias, "local LayerNorm bias", features);
      detail::require_shape(norm.global.weight, "global LayerNorm weight", features);
      detail::require_shape(norm.global.bias, "global LayerNorm bias", features);
      require(norm.local.eps > 0 && norm.global.eps > 0, "LayerNorm eps: must be > 0");
    }
    if constexpr (std::is_same_v<space, host_space>) {
      detail::require_finite(in.query, "query");
      detail::require_finite(in.key, "key");
      detail::require_finite(in.value, "value");
      if (!in.projection_logits.empty()) detail::require_finite(in.projection_logits, "projection_logits");
      if (!in.mask.empty()) detail::require_binary_mask(in.mask, "mask");
      if (cls) {
        detail::require_finite(in.cls_query, "cls_query");
        detail::require_finite(in.cls_key, "cls_key");
        detail::require_finite(in.cls_value, "cls_value");
      }
      const std::pair<const TensorView<const T, 3, space>*, const char*> inputs[] = {
          {&in.query, "query"},         {&in.key, "key"},         {&in.value, "value"},
          {&in.projection_logits, "projection_logits"}, {&in.cls_query, "cls_query"},
          {&in.cls_key, "cls_key"},     {&in.cls_value, "cls_value"}};
      for (const auto& [input, name] : inputs) detail::require_disjoint(out, "context", *input, name);
      if (!in.mask.empty()) detail::require_disjoint(out, "context", in.mask, "mask");
    }
  }

  AttentionConfig config_;
};

}  // namespace lsattn
