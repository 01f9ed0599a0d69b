#pragma once
// Inputs of the bidirectional attention (spec §1.3) and their boundary checks.
#include <type_traits>
#include <utility>

#include "lsattn/core/checks.hpp"
#include "lsattn/core/config.hpp"
#include "lsattn/core/tensor.hpp"
#include "lsattn/detail/executor.hpp"
#include "lsattn/policy/projection.hpp"
#include "lsattn/policy/combiner.hpp"
#include "lsattn/policy/window.hpp"

namespace lsattn {

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

namespace detail {

template <>
struct InputsFor<BidirectionalWindow> {
  template <class T, class Space>
  using type = AttentionInputs<T, Space>;
};

inline void check_config(const BidirectionalWindow&, const SequenceProjection&, const AttentionConfig&) {}

template <class Combiner, class T, class Space>
void check_inputs(const AttentionConfig& config, const AttentionInputs<T, Space>& in,
                  const typename Combiner::template Params<T, Space>& norm, const TensorView<T, 3, Space>& out) {
  const index_t width = config.width();
  require(in.query.extent(0) >= 1, "query: batch size must be >= 1, got ", in.query.extent(0));
  require(in.query.extent(1) >= 1, "query: sequence length must be >= 1, got ", in.query.extent(1),
          " (an empty sequence has nothing to attend to)");
  const index_t batch = checked_size("query: batch size", in.query.extent(0));
  const index_t length = checked_size("query: sequence length", in.query.extent(1));
  const Shape<3> tokens{batch, length, width};
  require_shape(in.query, "query", tokens);
  require_shape(in.key, "key", tokens);
  require_shape(in.value, "value", tokens);
  if (config.rank > 0) {
    require_shape(in.projection_logits, "projection_logits", Shape<3>{batch, length, config.heads * config.rank});
  } else {
    require(in.projection_logits.empty(), "projection_logits: given but rank = 0");
  }
  if (!in.mask.empty()) require_shape(in.mask, "mask", Shape<2>{batch, length});
  const bool cls = in.has_cls();
  if (cls) {
    require_shape(in.cls_query, "cls_query", Shape<3>{batch, 1, width});
    require_shape(in.cls_key, "cls_key", Shape<3>{batch, 1, width});
    require_shape(in.cls_value, "cls_value", Shape<3>{batch, 1, width});
  }
  require(config.window_size > 0 || config.rank > 0 || cls, "window_size = ", config.window_size,
          " and rank = 0 leave no keys to attend to; this is allowed only with a cls token (self-only attention)");
  require_shape(out, "context", Shape<3>{batch, length + (cls ? 1 : 0), width});
  check_norm_params<Combiner, T, Space>(config, norm);
  if constexpr (std::is_same_v<Space, host_space>) {
    require_finite(in.query, "query", config.threads);
    require_finite(in.key, "key", config.threads);
    require_finite(in.value, "value", config.threads);
    if (!in.projection_logits.empty()) require_finite(in.projection_logits, "projection_logits", config.threads);
    if (!in.mask.empty()) require_binary_mask(in.mask, "mask");
    if (cls) {
      require_finite(in.cls_query, "cls_query");
      require_finite(in.cls_key, "cls_key");
      require_finite(in.cls_value, "cls_value");
    }
    const std::pair<const TensorView<const T, 3, Space>*, const char*> inputs[] = {
        {&in.query, "query"},         {&in.key, "key"},           {&in.value, "value"},
        {&in.projection_logits, "projection_logits"}, {&in.cls_query, "cls_query"},
        {&in.cls_key, "cls_key"},     {&in.cls_value, "cls_value"}};
    for (const auto& [input, name] : inputs) require_disjoint(out, "context", *input, name);
    if (!in.mask.empty()) require_disjoint(out, "context", in.mask, "mask");
  }
}

}  // namespace detail
}  // namespace lsattn
