#pragma once
// Inputs of the causal chunked attention (spec §2.4) and their boundary checks.
#include <algorithm>
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

// Everything already projected; head h owns features [h·dh, (h+1)·dh) of every D = nh·dh row.
// The segment's L tokens follow a cache of M tokens in one stream: segment token t is stream
// position M + t. Output: context (B, L, D), before the output projection.
template <class T, class Space = host_space>
struct CausalAttentionInputs {
  TensorView<const T, 3, Space> query = {};  // (B, L, D), not scaled (the attention applies 1/√dh)
  // (B, W + L, D): projected keys/values of stream rows M − W … M + L − 1 with W = min(M, w),
  // before the local (window) LN.
  TensorView<const T, 3, Space> window_key = {};
  TensorView<const T, 3, Space> window_value = {};
  // (B, C·r, D): compressed keys/values of stream chunks 0 … C − 1 (row c·r + j), before the
  // global LN. Needs C ≥ (M + L − 1)/l, the last chunk any query can see.
  TensorView<const T, 3, Space> compressed_key = {};
  TensorView<const T, 3, Space> compressed_value = {};
  index_t cache_length = 0;  // M
  // Transformer-XL biases u (r_w_bias, content) and v (r_r_bias, position), each (D).
  TensorView<const T, 1, Space> content_bias = {};
  TensorView<const T, 1, Space> position_bias = {};
  // Position tables: row δ = r_net(e(δ)) for window distances δ = 0 … w − 1, (w, D); row p =
  // r_net_chunk(e(p)) for compressed positions p = 0 … C·r − 1, (C·r, D). Clamps are applied
  // when the tables are built.
  TensorView<const T, 2, Space> window_positions = {};
  TensorView<const T, 2, Space> chunk_positions = {};
};

namespace detail {

template <>
struct InputsFor<CausalWindow> {
  template <class T, class Space>
  using type = CausalAttentionInputs<T, Space>;
};

inline void check_config(const CausalWindow& window, const ChunkedProjection& projection, const AttentionConfig&) {
  require(window.window >= 1, "window_len: the causal window must be >= 1, got ", window.window);
  require(projection.chunk >= 1, "chunk_size: must be >= 1, got ", projection.chunk);
}

template <class Combiner, class T, class Space>
void check_inputs(const AttentionConfig& config, const CausalAttentionInputs<T, Space>& in,
                  const typename Combiner::template Params<T, Space>& norm, const TensorView<T, 3, Space>& out) {
  const index_t width = config.width(), rank = config.rank, chunk = config.chunk_size;
  const index_t batch = in.query.extent(0), length = in.query.extent(1), cache = in.cache_length;
  require(batch >= 1, "query: batch size must be >= 1, got ", batch);
  require(length >= 1, "query: segment length must be >= 1, got ", length, " (an empty segment has nothing to attend to)");
  require(cache >= 0, "cache_length: must be >= 0, got ", cache);
  checked_size("query: batch size", batch);
  checked_size("query: segment length", length);
  checked_size("cache_length", cache);
  checked_sum({{"cache_length", cache}, {"segment length", length}});
  require_shape(in.query, "query", Shape<3>{batch, length, width});
  const index_t window_rows = std::min(cache, config.window_size) + length;
  require_shape(in.window_key, "window_key", Shape<3>{batch, window_rows, width});
  require_shape(in.window_value, "window_value", Shape<3>{batch, window_rows, width});
  const index_t needed_chunks = (cache + length - 1) / chunk;
  const index_t compressed_rows = in.compressed_key.extent(1);
  require(rank == 0 || compressed_rows >= needed_chunks * rank, "compressed_key: needs at least ", needed_chunks * rank,
          " rows (", needed_chunks, " chunks of ", chunk, " before the last query, rank ", rank, "), got ",
          to_string(in.compressed_key.shape()));
  require(compressed_rows % (rank > 0 ? rank : 1) == 0, "compressed_key: row count ", compressed_rows,
          " is not a multiple of rank ", rank);
  require_shape(in.compressed_key, "compressed_key", Shape<3>{batch, compressed_rows, width});
  require_shape(in.compressed_value, "compressed_value", Shape<3>{batch, compressed_rows, width});
  require_shape(in.content_bias, "content_bias (r_w_bias)", Shape<1>{width});
  require_shape(in.position_bias, "position_bias (r_r_bias)", Shape<1>{width});
  require_shape(in.window_positions, "window_positions", Shape<2>{config.window_size, width});
  require_shape(in.chunk_positions, "chunk_positions", Shape<2>{compressed_rows, width});
  require_shape(out, "context", Shape<3>{batch, length, width});
  check_norm_params<Combiner, T, Space>(config, norm);
  if constexpr (std::is_same_v<Space, host_space>) {
    const std::pair<const TensorView<const T, 3, Space>*, const char*> tensors[] = {
        {&in.query, "query"}, {&in.window_key, "window_key"}, {&in.window_value, "window_value"},
        {&in.compressed_key, "compressed_key"}, {&in.compressed_value, "compressed_value"}};
    for (const auto& [tensor, name] : tensors) {
      require_finite(*tensor, name, config.threads);
      require_disjoint(out, "context", *tensor, name);
    }
    require_finite(in.content_bias, "content_bias");
    require_finite(in.position_bias, "position_bias");
    require_finite(in.window_positions, "window_positions");
    require_finite(in.chunk_positions, "chunk_positions");
  }
}

}  // namespace detail
}  // namespace lsattn
