#pragma once
// Short-term window policies: which full-resolution keys a block of queries sees.
// The index rules live here only; backends iterate over them, tests check them.
#include <algorithm>

#include "lsattn/core/backend.hpp"
#include "lsattn/core/config.hpp"
#include "lsattn/core/tensor.hpp"

namespace lsattn {

// A half-open range of positions [begin, end).
struct IndexRange {
  index_t begin = 0;
  index_t end = 0;
  LSATTN_HOST_DEVICE constexpr index_t size() const { return end > begin ? end - begin : 0; }
  LSATTN_HOST_DEVICE constexpr bool contains(index_t i) const { return begin <= i && i < end; }
  friend constexpr bool operator==(const IndexRange&, const IndexRange&) = default;
};

// Bidirectional segment window (spec §1.3 step 8): queries are grouped in blocks of w; block
// g sees keys g·w − ext … g·w + w + ext − 1 with ext = max(w/2, 1). Keys outside the sequence
// are dropped (the published code masks its zero padding with −inf: the same thing).
// `self_only()` is the published degenerate case w ≤ 0, r = 0 (cls token only): each token sees itself.
struct BidirectionalWindow {
  index_t block = 0;      // queries per block (w); 0: the window contributes no keys
  index_t extension = 0;  // keys added on each side of the block

  LSATTN_HOST_DEVICE static constexpr BidirectionalWindow segments(index_t window_size) {
    if (window_size <= 0) return {};
    return {window_size, window_size / 2 > 1 ? window_size / 2 : 1};
  }
  LSATTN_HOST_DEVICE static constexpr BidirectionalWindow self_only() { return {1, 0}; }
  static BidirectionalWindow from(const AttentionConfig& config) { return segments(config.window_size); }

  LSATTN_HOST_DEVICE constexpr bool enabled() const { return block > 0; }
  // Keys per full block: w + 2·ext (2w for even w ≥ 2, 3 for w = 1).
  LSATTN_HOST_DEVICE constexpr index_t span() const { return block + 2 * extension; }
  LSATTN_HOST_DEVICE constexpr index_t block_count(index_t length) const { return (length + block - 1) / block; }
  LSATTN_HOST_DEVICE constexpr IndexRange queries(index_t g, index_t length) const {
    return {g * block, std::min(length, (g + 1) * block)};
  }
  // The key positions of block g that lie inside the sequence.
  LSATTN_HOST_DEVICE constexpr IndexRange keys(index_t g, index_t length) const {
    return {std::max<index_t>(0, g * block - extension), std::min(length, (g + 1) * block + extension)};
  }
};

// The bidirectional segment window as token-level visibility (the interface of the tiled
// kernels): query t sees the keys of its segment t / w; a block of queries first … last − 1
// needs the union of its segments' keys (contiguous, as the ranges move forward with the
// segment). A disabled window (w ≤ 0) shows no keys.
struct SegmentVisibility {
  BidirectionalWindow window;
  LSATTN_HOST_DEVICE constexpr IndexRange keys(index_t first, index_t last, index_t length) const {
    if (!window.enabled() || last <= first) return {};
    return {window.keys(first / window.block, length).begin, window.keys((last - 1) / window.block, length).end};
  }
  LSATTN_HOST_DEVICE constexpr IndexRange row_keys(index_t t, index_t length) const {
    return window.enabled() ? window.keys(t / window.block, length) : IndexRange{};
  }
};

// Causal window (spec §2.4 step 6): stream position τ sees exactly τ − w + 1 … τ, itself
// included, reaching back into the cache; never masked. Positions before the start of the
// stream (a cache shorter than w) do not exist and are left out.
struct CausalWindow {
  index_t window = 1;  // w ≥ 1

  static CausalWindow from(const AttentionConfig& config) { return {config.window_size}; }
  LSATTN_HOST_DEVICE constexpr bool enabled() const { return window > 0; }
  // Stream positions seen by stream position tau.
  LSATTN_HOST_DEVICE constexpr IndexRange keys(index_t tau) const {
    return {tau - window + 1 > 0 ? tau - window + 1 : 0, tau + 1};
  }
  // Relative distance δ = τ − τ' ∈ [0, w) of a visible key: the row of the window position table.
  LSATTN_HOST_DEVICE constexpr index_t distance(index_t tau, index_t key) const { return tau - key; }
};

// 2D window (spec §3.3 step 5, §3.4): patches in w×w blocks; block (gy, gx) sees the key tile
// of rows gy·w − side … gy·w + w + side − 1 (and likewise columns), side = max(w/2, 1),
// tile side T = w + 2·side. Keys outside the grid are left out (the published zero padding
// with −inf). Grids are rows × cols; the published code needs rows = cols and rows % w = 0, here
// a border block may be partial (a grid padded with masked patches). w ≤ 0 disables the window
// (the published module then attends to the compressed and global keys only): block = side = 0,
// keys() is empty and tile() is 0.
struct Window2D {
  index_t block = 1;  // w
  index_t side = 1;   // max(w/2, 1)

  static Window2D from(const AttentionConfig& config) {
    if (config.window_size <= 0) return {0, 0};
    return {config.window_size, config.window_size / 2 > 1 ? config.window_size / 2 : 1};
  }
  LSATTN_HOST_DEVICE constexpr bool enabled() const { return block > 0; }
  // The block of a patch row (or column); 0 without a window.
  LSATTN_HOST_DEVICE constexpr index_t block_of(index_t position) const { return block > 0 ? position / block : 0; }
  LSATTN_HOST_DEVICE constexpr index_t tile() const { return block + 2 * side; }
  LSATTN_HOST_DEVICE constexpr index_t blocks(index_t extent) const { return (extent + block - 1) / block; }
  // Query rows (or columns) of block g along an axis of `extent` patches.
  LSATTN_HOST_DEVICE constexpr IndexRange queries(index_t g, index_t extent) const {
    return {g * block, (g + 1) * block < extent ? (g + 1) * block : extent};
  }
  // Key rows (or columns) of block g inside the grid, and the tile offset of a key.
  LSATTN_HOST_DEVICE constexpr IndexRange keys(index_t g, index_t extent) const {
    const index_t begin = g * block - side, end = (g + 1) * block + side;
    return {begin > 0 ? begin : 0, end < extent ? end : extent};
  }
  LSATTN_HOST_DEVICE constexpr index_t tile_offset(index_t g, index_t key) const { return key - (g * block - side); }
};

// Token-level visibility for exact softmax attention (the full-attention baseline and the
// heads of LS-attention). keys(t0, t1, L) is the key range a block of queries t0 … t1 − 1
// needs; row_keys(t, L) the exact (contiguous) range query t sees.
struct FullVisibility {  // every key; causal: keys s ≤ t
  bool causal = false;
  LSATTN_HOST_DEVICE constexpr IndexRange keys(index_t, index_t last, index_t length) const {
    return {0, causal ? last : length};
  }
  // The keys query t sees, as one range (they are contiguous).
  LSATTN_HOST_DEVICE constexpr IndexRange row_keys(index_t t, index_t length) const { return {0, causal ? t + 1 : length}; }
};

// A sliding window of w keys per query: causal, t − w + 1 … t; bidirectional, centred:
// t − (w − 1)/2 … t + w/2 (w keys; for even w one more on the right).
struct SlidingVisibility {
  index_t window = 1;
  bool causal = false;
  LSATTN_HOST_DEVICE constexpr index_t before() const { return causal ? window - 1 : (window - 1) / 2; }
  LSATTN_HOST_DEVICE constexpr index_t after() const { return causal ? 0 : window / 2; }
  LSATTN_HOST_DEVICE constexpr IndexRange keys(index_t first, index_t last, index_t length) const {
    const index_t begin = first - before(), end = last + after();
    return {begin > 0 ? begin : 0, end < length ? end : length};
  }
  LSATTN_HOST_DEVICE constexpr IndexRange row_keys(index_t t, index_t length) const { return keys(t, t + 1, length); }
};

}  // namespace lsattn
