#pragma once
// What the tiled tensor-core attention kernels (WMMA and mma.sync) share: the query tiling and
// where a head's keys come from.
#include "lsattn/core/backend.hpp"
#include "lsattn/policy/window.hpp"

namespace lsattn::cuda_detail {

inline constexpr index_t tile_rows = 64;  // queries per tile, and keys per key tile
inline constexpr int tile_threads = 128;  // 4 warps, 16 query rows each

// Query tiles: tile i covers queries [64·i, min(64·(i + 1), L)). A tile may span several window
// segments: it loads the union of their keys and masks each row to its own range.
struct QueryTiling {
  index_t length = 0;

  LSATTN_HOST_DEVICE constexpr index_t count() const { return (length + tile_rows - 1) / tile_rows; }
  LSATTN_HOST_DEVICE constexpr IndexRange tile(index_t i) const {
    return {i * tile_rows, (i + 1) * tile_rows < length ? (i + 1) * tile_rows : length};
  }
};

// Where one head's keys and values come from: `global_count` float rows (always visible, the
// compressed keys and the cls key), then the local rows of T chosen by the visibility policy.
template <class T>
struct TiledKeys {
  const T* key = nullptr;
  const T* value = nullptr;
  const float* global_key = nullptr;
  const float* global_value = nullptr;
  index_t global_count = 0;
  index_t stride = 0;  // row stride of all four (the model width)
};

// Batch items in the grid's z dimension: item i reads query, keys, values and mask `rows` and
// `mask` elements further than item 0, writes context and row_max_logit `context` and `row_max`
// elements further, and reads its global (float) rows `globals` elements further (0: every item
// shares them).
struct BatchStrides {
  index_t rows = 0;     // elements between items of query, key and value
  index_t mask = 0;     // elements between items of the mask
  index_t row_max = 0;  // floats between items of row_max_logit
  index_t context = 0;  // elements between items of context
  index_t globals = 0;  // floats between items of global_key and global_value
};

// Moves a kernel's pointers to batch item `item`.
template <class T>
LSATTN_HOST_DEVICE inline void select_batch_item(index_t item, const BatchStrides& batch, const T*& query, TiledKeys<T>& keys,
                                                 const T*& mask, T*& context, float*& row_max_logit) {
  query += item * batch.rows;
  keys.key += item * batch.rows;
  keys.value += item * batch.rows;
  if (keys.global_key != nullptr) keys.global_key += item * batch.globals;
  if (keys.global_value != nullptr) keys.global_value += item * batch.globals;
  context += item * batch.context;
  if (mask != nullptr) mask += item * batch.mask;
  if (row_max_logit != nullptr) row_max_logit += item * batch.row_max;
}

}  // namespace lsattn::cuda_detail
