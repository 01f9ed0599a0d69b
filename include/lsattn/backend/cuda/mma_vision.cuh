#pragma once
// The register-tiled tensor-core kernel of the 2D attention of ViL-LS (spec §3.3 steps 5–8), for
// __half and __nv_bfloat16 on sm_80+: one block of 4 warps per (64 queries of one w × w window
// block, head, batch item). Every query of a window block sees the same keys — the r compressed
// rows, the block's key tile inside the grid, the global tokens — so the block gathers that list
// 64 keys at a time (a tile row of keys is contiguous in the token order) and runs the
// mma_attention steps over it with no per-row range, adding the RPE bias of the tile keys.
// The one-block-per-query vision_attention kernel is the reference the GPU tests compare it with.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "lsattn/backend/cuda/attention_tiles.cuh"
#include "lsattn/backend/cuda/mma_attention.cuh"
#include "lsattn/backend/cuda/runtime.cuh"
#include "lsattn/policy/window.hpp"

namespace lsattn::cuda_detail {

// The index rules of the tiled 2D kernel: pure arithmetic shared by the kernel and its host
// test. Tokens are the G global tokens, then the patches row-major (token G + y·cols + x).
struct VisionTiles {
  index_t rows = 0, cols = 0, globals = 0, rank = 0;
  Window2D window{};

  // One tile of queries: window block (gy, gx) covers patch rows ys and columns xs; the tile
  // holds its queries first … first + count − 1 in row-major order inside the block.
  struct QueryTile {
    index_t gy = 0, gx = 0;
    IndexRange ys{}, xs{};
    index_t first = 0, count = 0;
  };
  enum class Kind { compressed, tile, global };
  struct Key {
    Kind kind = Kind::global;
    index_t row = 0;      // compressed row, or token
    index_t offset = -1;  // tile keys: the RPE key offset a·T + b
  };

  LSATTN_HOST_DEVICE constexpr index_t blocks_y() const { return window.blocks(rows); }
  LSATTN_HOST_DEVICE constexpr index_t blocks_x() const { return window.blocks(cols); }
  // A block holds at most min(w, rows) × min(w, cols) queries: a grid smaller than the window
  // launches no tiles that could only exit.
  LSATTN_HOST_DEVICE constexpr index_t tiles_per_block() const {
    const index_t block_rows = window.block < rows ? window.block : rows;
    const index_t block_cols = window.block < cols ? window.block : cols;
    const index_t tiles = (block_rows * block_cols + tile_rows - 1) / tile_rows;
    return tiles > 0 ? tiles : 1;
  }
  LSATTN_HOST_DEVICE constexpr index_t count() const { return blocks_y() * blocks_x() * tiles_per_block(); }

  LSATTN_HOST_DEVICE constexpr QueryTile query_tile(index_t i) const {
    QueryTile tile{};
    const index_t block = i / tiles_per_block();
    tile.gy = block / blocks_x();
    tile.gx = block % blocks_x();
    tile.ys = window.queries(tile.gy, rows);
    tile.xs = window.queries(tile.gx, cols);
    tile.first = (i % tiles_per_block()) * tile_rows;
    const index_t left = tile.ys.size() * tile.xs.size() - tile.first;
    tile.count = left < 0 ? 0 : left < tile_rows ? left : tile_rows;
    return tile;
  }
  // Query k of the tile (k < count): its token and its RPE query offset qy·w + qx.
  LSATTN_HOST_DEVICE constexpr index_t query_token(const QueryTile& tile, index_t k) const {
    const index_t at = tile.first + k, y = tile.ys.begin + at / tile.xs.size(), x = tile.xs.begin + at % tile.xs.size();
    return globals + y * cols + x;
  }
  LSATTN_HOST_DEVICE constexpr index_t query_offset(const QueryTile& tile, index_t k) const {
    const index_t at = tile.first + k, y = tile.ys.begin + at / tile.xs.size(), x = tile.xs.begin + at % tile.xs.size();
    return (y - tile.gy * window.block) * window.block + (x - tile.gx * window.block);
  }

  // The keys every query of the tile sees: r compressed rows, the key tile inside the grid
  // (row-major), the global tokens.
  LSATTN_HOST_DEVICE constexpr IndexRange key_rows(const QueryTile& tile) const { return window.keys(tile.gy, rows); }
  LSATTN_HOST_DEVICE constexpr IndexRange key_cols(const QueryTile& tile) const { return window.keys(tile.gx, cols); }
  LSATTN_HOST_DEVICE constexpr index_t key_count(const QueryTile& tile) const {
    return rank + key_rows(tile).size() * key_cols(tile).size() + globals;
  }
  LSATTN_HOST_DEVICE constexpr Key key(const QueryTile& tile, index_t i) const {
    if (i < rank) return {Kind::compressed, i, -1};
    const IndexRange ky = key_rows(tile), kx = key_cols(tile);
    const index_t tile_keys = ky.size() * kx.size();
    if (i < rank + tile_keys) {
      const index_t j = i - rank, y = ky.begin + j / kx.size(), x = kx.begin + j % kx.size();
      return {Kind::tile, globals + y * cols + x, window.tile_offset(tile.gy, y) * window.tile() + window.tile_offset(tile.gx, x)};
    }
    return {Kind::global, i - rank - tile_keys, -1};
  }
};

// The kernel's arguments: one batch item's rows (items `*_stride` elements apart in grid z).
template <class T>
struct VisionTileArgs {
  const T* query = nullptr;             // (N, D), not scaled
  const T* key = nullptr;               // (N, D) after the local LN
  const T* value = nullptr;
  const T* compressed_key = nullptr;    // (r, D) after the global LN
  const T* compressed_value = nullptr;
  const T* position_bias = nullptr;     // (nh, w², T²) or null
  T* context = nullptr;                 // (N, D): the patch rows are written
  index_t width = 0;
  index_t token_stride = 0, compressed_stride = 0;
  VisionTiles tiles{};
  float scale = 1.0f;
};

// Shared memory: Q, two stages of K and V, each stage's per-key RPE offset (−1: none; −2: no key).
template <class T, int HeadDim>
struct VisionMmaLayout {
  static constexpr int ld = HeadDim + 8;
  static constexpr std::size_t tile_bytes = sizeof(T) * tile_rows * ld;
  static constexpr std::size_t q = 0;
  static constexpr std::size_t k = q + tile_bytes;
  static constexpr std::size_t v = k + 2 * tile_bytes;
  static constexpr std::size_t key_offset = v + 2 * tile_bytes;  // 2 × 64 index_t
  static constexpr std::size_t bytes = key_offset + sizeof(index_t) * 2 * tile_rows;
  static_assert(HeadDim % 16 == 0 && HeadDim <= 256, "head_dim: a multiple of 16");
  static_assert(tile_bytes % 16 == 0, "cp.async alignment");
};

inline constexpr index_t vision_no_key = -2;  // a slot past the end of the key list

#if defined(__CUDACC__)

template <class T, int HeadDim>
__global__ void __launch_bounds__(tile_threads) mma_vision_attention(VisionTileArgs<T> args) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
  __trap();  // the host dispatch never launches this below sm_80
#else
  using Layout = VisionMmaLayout<T, HeadDim>;
  using Kind = VisionTiles::Kind;
  constexpr int ld = Layout::ld;
  constexpr int vectors = HeadDim * static_cast<int>(sizeof(T)) / 16;
  constexpr int k_steps = HeadDim / 16;
  constexpr int o_tiles = HeadDim / 8;
  constexpr float log2e = 1.4426950408889634f;
  extern __shared__ __align__(128) unsigned char block_memory[];
  T* q_tile = reinterpret_cast<T*>(block_memory + Layout::q);
  T* k_stage = reinterpret_cast<T*>(block_memory + Layout::k);
  T* v_stage = reinterpret_cast<T*>(block_memory + Layout::v);
  index_t* key_offsets = reinterpret_cast<index_t*>(block_memory + Layout::key_offset);

  const VisionTiles& tiles = args.tiles;
  const VisionTiles::QueryTile queries = tiles.query_tile(blockIdx.x);
  if (queries.count == 0) return;  // a block with fewer than 64·tiles_per_block queries: uniform exit
  const index_t item = blockIdx.z, h = blockIdx.y, column = h * HeadDim, width = args.width;
  const T* query = args.query + item * args.token_stride;
  const T* key = args.key + item * args.token_stride;
  const T* value = args.value + item * args.token_stride;
  const T* compressed_key = args.compressed_key + item * args.compressed_stride;
  const T* compressed_value = args.compressed_value + item * args.compressed_stride;
  T* context = args.context + item * args.token_stride;
  const index_t key_count = tiles.key_count(queries), tile_count = (key_count + tile_rows - 1) / tile_rows;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const float minus_infinity = __int_as_float(0xff800000);
  const index_t tile_side = tiles.window.tile(), block_area = tiles.window.block * tiles.window.block;

  for (int i = threadIdx.x; i < tile_rows * vectors; i += blockDim.x) {  // Q rows, gathered (zeros past the end)
    const int r = i / vectors, c = i % vectors;
    const bool inside = r < queries.count;
    const T* from = inside ? query + tiles.query_token(queries, r) * width + column + c * 8 : query;
    cp_async_16(q_tile + r * ld + c * 8, from, inside);
  }
  cp_async_commit();

  auto stage_tile = [&](index_t j) {
    const int stage = static_cast<int>(j & 1);
    T* k_tile = k_stage + stage * tile_rows * ld;
    T* v_tile = v_stage + stage * tile_rows * ld;
    for (int i = threadIdx.x; i < tile_rows * vectors; i += blockDim.x) {
      const int n = i / vectors, c = i % vectors;
      const index_t slot = j * tile_rows + n;
      const bool inside = slot < key_count;
      const VisionTiles::Key source = inside ? tiles.key(queries, slot) : VisionTiles::Key{};
      const bool compressed = source.kind == Kind::compressed;
      const index_t at = inside ? source.row * width + column + c * 8 : 0;
      cp_async_16(k_tile + n * ld + c * 8, (compressed ? compressed_key : key) + at, inside);
      cp_async_16(v_tile + n * ld + c * 8, (compressed ? compressed_value : value) + at, inside);
    }
    for (int n = threadIdx.x; n < tile_rows; n += blockDim.x) {
      const index_t slot = j * tile_rows + n;
      key_offsets[stage * tile_rows + n] = slot < key_count ? tiles.key(queries, slot).offset : vision_no_key;
    }
  };
  if (tile_count > 0) stage_tile(0);
  cp_async_commit();

  const int my_row[2] = {warp * 16 + lane / 4, warp * 16 + lane / 4 + 8};
  // Each row's RPE table row (h·w² + query offset), or −1 for rows past the end.
  index_t bias_row[2];
  for (int half = 0; half < 2; ++half)
    bias_row[half] = my_row[half] < queries.count ? (h * block_area + tiles.query_offset(queries, my_row[half])) * tile_side * tile_side : -1;
  float o[o_tiles][4];
  for (auto& tile : o)
    for (float& x : tile) x = 0.0f;
  float row_max[2] = {minus_infinity, minus_infinity};
  float row_sum[2] = {0.0f, 0.0f};
  std::uint32_t qa[k_steps][4];

  for (index_t j = 0; j < tile_count; ++j) {
    advance_key_pipeline(j, tile_count, stage_tile);
    if (j == 0) load_a_fragments<T, HeadDim>(qa, q_tile + warp * 16 * ld, ld, lane);
    const int stage = static_cast<int>(j & 1);
    const T* k_tile = k_stage + stage * tile_rows * ld;
    const T* v_tile = v_stage + stage * tile_rows * ld;
    const index_t* offsets = key_offsets + stage * tile_rows;
    float s[score_tiles][4];
    warp_scores<T, HeadDim>(qa, k_tile, ld, lane, s);
#pragma unroll
    for (int nt = 0; nt < score_tiles; ++nt) {
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int n = nt * 8 + mma_geometry::accumulator_cell(lane, i).col;
        const index_t offset = offsets[n], row = bias_row[i / 2];
        float x = s[nt][i] * args.scale;
        if (offset >= 0 && args.position_bias != nullptr && row >= 0) x += to_float(args.position_bias[row + offset]);
        s[nt][i] = offset == vision_no_key || row < 0 ? minus_infinity : x * log2e;
      }
    }
    warp_online_softmax(s, row_max, row_sum, o);
    warp_accumulate_pv<T, HeadDim>(s, v_tile, ld, lane, o);
    __syncthreads();
  }
  cp_async_wait_all();

#pragma unroll
  for (int half = 0; half < 2; ++half) {
    const float sum = quad_sum(row_sum[half]);
    const int r = my_row[half];
    if (r < queries.count) store_output_row<T>(o, half, sum, sum > 0, lane, context + tiles.query_token(queries, r) * width + column);
  }
#endif
}

// Launches the kernel for head_dim 16, 32, 64 or 128: every query tile, head and batch item.
template <class T>
void launch_mma_vision(index_t head_dim, index_t heads, index_t batch, const VisionTileArgs<T>& args, cudaStream_t stream) {
  const index_t tiles = args.tiles.count();
  if (tiles == 0 || batch == 0) return;
  constexpr index_t max_grid_x = 2147483647;
  require(tiles <= max_grid_x && heads <= 65535 && batch <= 65535,
          "grid: the tiled 2D kernel takes at most 2^31 - 1 query tiles and 65535 heads and batch items, got ", tiles,
          ", ", heads, ", ", batch);
  for_tile_head_dim(head_dim, "tiled 2D kernel", [&](auto head_size) {
    constexpr int HeadDim = decltype(head_size)::value;
    launch_tile_grid(&mma_vision_attention<T, HeadDim>, VisionMmaLayout<T, HeadDim>::bytes, tiles, heads, batch, stream,
                     args);
  });
}

#endif  // __CUDACC__

}  // namespace lsattn::cuda_detail
