#pragma once
// Inputs of the 2D attention (spec §3.3) and their boundary checks.
#include <type_traits>
#include <utility>

#include "lsattn/core/checks.hpp"
#include "lsattn/core/config.hpp"
#include "lsattn/core/tensor.hpp"
#include "lsattn/detail/executor.hpp"
#include "lsattn/policy/combiner.hpp"
#include "lsattn/policy/projection.hpp"
#include "lsattn/policy/window.hpp"

namespace lsattn {

// Tokens are [global tokens; patches in row-major order (row·cols + col)], N = G + rows·cols,
// already projected; head h owns features [h·dh, (h+1)·dh). Output: context (B, N, D) before
// the output projection, global rows first.
template <class T, class Space = host_space>
struct VisionAttentionInputs {
  TensorView<const T, 3, Space> query = {};              // (B, N, D), not scaled
  TensorView<const T, 3, Space> key = {};                // (B, N, D), before the local (full) LN
  TensorView<const T, 3, Space> value = {};              // (B, N, D), before the local (full) LN
  TensorView<const T, 3, Space> projection_logits = {};  // (B, rows·cols, nh·r), required when r > 0
  index_t global_tokens = 0;                             // G
  index_t rows = 0;                                      // nx, patch rows
  index_t cols = 0;                                      // ny, patch columns
  // Optional relative position bias added to the window scores: (nh, w², T²), entry
  // [h][qy·w + qx][a·T + b] for a query at in-block offset (qy, qx) and a key at tile offset (a, b).
  TensorView<const T, 3, Space> position_bias = {};
};

namespace detail {

// N = G + rows·cols for a grid the user gives: each side in [1, max_size], the product and the
// sum checked, so that a 2^32 × 2^32 grid is an error instead of wrapping to 0 tokens.
inline index_t grid_token_count(index_t global_tokens, index_t rows, index_t cols) {
  require(rows >= 1 && cols >= 1, "grid: nx and ny (rows and cols) must be >= 1, got ", rows, " x ", cols);
  checked_size("grid: nx (rows)", rows);
  checked_size("grid: ny (cols)", cols);
  checked_size("global_tokens (nglo)", global_tokens);
  return checked_sum({{"nglo", global_tokens}, {"nx * ny", checked_product({{"nx", rows}, {"ny", cols}})}});
}

template <>
struct InputsFor<Window2D> {
  template <class T, class Space>
  using type = VisionAttentionInputs<T, Space>;
};

inline void check_config(const Window2D&, const SequenceProjection&, const AttentionConfig&) {}

template <class Combiner, class T, class Space>
void check_inputs(const AttentionConfig& config, const VisionAttentionInputs<T, Space>& in,
                  const typename Combiner::template Params<T, Space>& norm, const TensorView<T, 3, Space>& out) {
  const index_t width = config.width(), batch = in.query.extent(0);
  require(batch >= 1, "query: batch size must be >= 1, got ", batch);
  checked_size("query: batch size", batch);
  const index_t tokens = grid_token_count(in.global_tokens, in.rows, in.cols), patches = in.rows * in.cols;
  checked_product({{"batch", batch}, {"tokens", tokens}, {"width", width}});
  require_shape(in.query, "query", Shape<3>{batch, tokens, width});
  require_shape(in.key, "key", Shape<3>{batch, tokens, width});
  require_shape(in.value, "value", Shape<3>{batch, tokens, width});
  if (config.rank > 0) {
    require_shape(in.projection_logits, "projection_logits", Shape<3>{batch, patches, config.heads * config.rank});
  } else {
    require(in.projection_logits.empty(), "projection_logits: given but rank = 0");
  }
  const Window2D window = Window2D::from(config);
  require(window.enabled() || config.rank > 0 || in.global_tokens > 0, "w = ", config.window_size,
          " (no window), rank (dp_rank) = 0 and no global tokens leave no keys to attend to");
  if (!in.position_bias.empty()) {
    require(window.enabled(), "position_bias: given but the window is off (w = ", config.window_size,
            "); the relative position bias applies to window keys only");
    require_shape(in.position_bias, "position_bias",
                  Shape<3>{config.heads, window.block * window.block, window.tile() * window.tile()});
  }
  require_shape(out, "context", Shape<3>{batch, tokens, width});
  check_norm_params<Combiner, T, Space>(config, norm);
  if constexpr (std::is_same_v<Space, host_space>) {
    const std::pair<const TensorView<const T, 3, Space>*, const char*> tensors[] = {
        {&in.query, "query"}, {&in.key, "key"}, {&in.value, "value"}, {&in.projection_logits, "projection_logits"},
        {&in.position_bias, "position_bias"}};
    for (const auto& [tensor, name] : tensors) {
      require_finite(*tensor, name, config.threads);
      require_disjoint(out, "context", *tensor, name);
    }
  }
}

}  // namespace detail
}  // namespace lsattn
