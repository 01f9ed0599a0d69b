#pragma once
// The register-tiled tensor-core kernel of the causal chunked attention (spec §2.4 steps 6–9),
// for __half and __nv_bfloat16 on sm_80+: one block of 4 warps per (query tile of 64, head, batch
// item), each warp owning 16 query rows, the same mma.sync/ldmatrix/cp.async steps as
// mma_attention.cuh. A query at stream position τ = M + t sees
//  - the compressed rows i < min(visible_rows(τ), C): score q·(k̄ᵢ + R_chunk[visible_rows(τ) − 1 − i]),
//  - the window rows s ∈ [max(τ − w + 1, M + L − W), τ]: score (q + u)·kₛ + (q + v)·R[τ − s]
// (q already scaled by 1/√dh), in one online softmax. The position terms are Toeplitz: within a
// key tile the table row is f(τ) − key with f(τ) = visible_rows(τ) − 1 or τ. So each warp
// multiplies its (scaled, biased) queries with the contiguous table rows its 16 rows can reach
// (at most 128: 64 keys plus the spread of f over the rows), parks that 16 × 128 block in shared
// memory and reads each score's term back at column f(τ) − f(first row) + 63 − n (the
// Transformer-XL "relative shift", done per tile). The one-block-per-query causal_attention
// kernel is the reference the GPU tests compare this one with.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "lsattn/backend/cuda/attention_tiles.cuh"
#include "lsattn/backend/cuda/mma_attention.cuh"
#include "lsattn/backend/cuda/runtime.cuh"
#include "lsattn/policy/projection.hpp"
#include "lsattn/policy/window.hpp"

namespace lsattn::cuda_detail {

inline constexpr index_t causal_position_columns = 128;  // table rows one warp reads per key tile, at most
inline constexpr index_t causal_position_rows = 144;     // table rows staged per key tile (128 + a 16-row step)

// The index rules of the tiled causal kernel: pure arithmetic shared by the kernel and its host
// test. Keys are compressed row indices i or stream positions s (window rows s − first_window()).
struct CausalTiles {
  index_t cache_length = 0, length = 0, window_rows = 0, compressed_rows = 0;
  CausalWindow window{};
  ChunkedProjection projection{};

  enum class Kind { compressed, window };
  struct KeyTile {
    Kind kind = Kind::window;
    index_t first = 0, count = 0;  // keys first … first + count − 1
  };

  LSATTN_HOST_DEVICE constexpr index_t first_window() const { return cache_length + length - window_rows; }
  LSATTN_HOST_DEVICE constexpr index_t compressed_limit(index_t tau) const {
    if (!projection.enabled()) return 0;
    const index_t visible = projection.visible_rows(tau);
    return visible < compressed_rows ? visible : compressed_rows;
  }
  LSATTN_HOST_DEVICE constexpr index_t window_begin(index_t tau) const {
    const index_t begin = window.keys(tau).begin;
    return begin > first_window() ? begin : first_window();
  }
  // The keys of this kind stream position tau sees: compressed rows [0, compressed_limit(τ)),
  // window positions [window_begin(τ), τ].
  LSATTN_HOST_DEVICE constexpr IndexRange row_keys(Kind kind, index_t tau) const {
    if (kind == Kind::compressed) return {0, compressed_limit(tau)};
    return {window_begin(tau), tau + 1};
  }
  LSATTN_HOST_DEVICE constexpr bool visible(Kind kind, index_t tau, index_t key) const {
    return row_keys(kind, tau).contains(key);
  }
  // f(τ): the position table row of key k is f(τ) − k.
  LSATTN_HOST_DEVICE constexpr index_t position_origin(Kind kind, index_t tau) const {
    return kind == Kind::compressed ? projection.visible_rows(tau) - 1 : tau;
  }
  LSATTN_HOST_DEVICE constexpr index_t table_rows(Kind kind) const {
    return kind == Kind::compressed ? compressed_rows : window.window;
  }

  // The key tiles of the queries [begin, end) (stream positions M + begin … M + end − 1): the
  // compressed rows the last query sees, in 64s, then the window from the first query's start
  // to the last query, in 64s.
  LSATTN_HOST_DEVICE constexpr index_t compressed_tiles(IndexRange queries) const {
    return (compressed_limit(cache_length + queries.end - 1) + tile_rows - 1) / tile_rows;
  }
  LSATTN_HOST_DEVICE constexpr index_t count(IndexRange queries) const {
    const index_t window_keys = cache_length + queries.end - window_begin(cache_length + queries.begin);
    return compressed_tiles(queries) + (window_keys + tile_rows - 1) / tile_rows;
  }
  LSATTN_HOST_DEVICE constexpr KeyTile tile(IndexRange queries, index_t j) const {
    const index_t compressed = compressed_tiles(queries);
    if (j < compressed) {
      const index_t first = j * tile_rows, end = compressed_limit(cache_length + queries.end - 1);
      return {Kind::compressed, first, end - first < tile_rows ? end - first : tile_rows};
    }
    const index_t first = window_begin(cache_length + queries.begin) + (j - compressed) * tile_rows;
    const index_t end = cache_length + queries.end;
    return {Kind::window, first, end - first < tile_rows ? end - first : tile_rows};
  }
};

// Whether the kernel's position staging holds every shape of this configuration: over 64
// consecutive stream positions visible_rows grows by at most ⌈63/l⌉·r, which must stay ≤ 64.
inline bool causal_tiles_fit(const ChunkedProjection& projection) {
  return !projection.enabled() || ((tile_rows - 1 + projection.chunk - 1) / projection.chunk) * projection.rank <= 64;
}

// Where one warp's block of position terms lies, for a key tile: the staged table rows start at
// origin(first row of the block) − first key − 63; the warp's rows f(τ) − key lie `offset` rows
// further, in `columns` consecutive rows (64 keys plus the spread of f over its 16 rows), and
// the term of row τ and key first + n sits at column origin(τ) − origin(warp's first row) + 63 − n.
struct WarpPositions {
  index_t stage_first = 0;  // table row of staged row 0
  index_t offset = 0;       // the warp's first staged row
  index_t columns = 0;      // how many it reads (≤ causal_position_columns)
  index_t origin = 0;       // f of the warp's first row

  LSATTN_HOST_DEVICE constexpr index_t column(index_t row_origin, index_t n) const { return row_origin - origin + tile_rows - 1 - n; }
};

// `first_tau`/`last_tau`: the block's first and last valid stream positions; the warp's rows are
// clamped to them (rows past the end have no scores that count).
LSATTN_HOST_DEVICE constexpr WarpPositions warp_positions(const CausalTiles& tiles, const CausalTiles::KeyTile& tile,
                                                          index_t first_tau, index_t last_tau, index_t warp_first_tau) {
  const index_t warp_first = warp_first_tau < last_tau ? warp_first_tau : last_tau;
  const index_t warp_last = warp_first_tau + 15 < last_tau ? warp_first_tau + 15 : last_tau;
  const index_t block_origin = tiles.position_origin(tile.kind, first_tau);
  const index_t origin = tiles.position_origin(tile.kind, warp_first);
  WarpPositions at{};
  at.stage_first = block_origin - tile.first - (tile_rows - 1);
  at.offset = origin - block_origin;
  at.columns = tiles.position_origin(tile.kind, warp_last) - origin + tile_rows;
  at.origin = origin;
  return at;
}

// The kernel's arguments: one batch item's rows (items `*_stride` elements apart in grid z).
template <class T>
struct CausalTileArgs {
  const T* query = nullptr;             // (L, D), not scaled
  const T* window_key = nullptr;        // (W + L, D) after the local LN
  const T* window_value = nullptr;
  const T* compressed_key = nullptr;    // (C·r, D) after the global LN
  const T* compressed_value = nullptr;
  const T* content_bias = nullptr;      // u (D)
  const T* position_bias = nullptr;     // v (D)
  const T* window_positions = nullptr;  // (w, D)
  const T* chunk_positions = nullptr;   // (C·r, D)
  T* context = nullptr;                 // (L, D)
  index_t width = 0;
  index_t query_stride = 0, window_stride = 0, compressed_stride = 0;
  CausalTiles tiles{};
  float scale = 1.0f;
};

// Shared memory of one block: the raw Q tile, two stages of K and V, one stage of position table
// rows, each warp's 16 × 128 block of position terms (rows padded to 136 floats, so that the
// 8-byte stores of an accumulator tile's eight rows fall in distinct banks), and per query row
// f(τ) of the compressed kind and the ends of its compressed and window keys.
template <class T, int HeadDim>
struct CausalMmaLayout {
  static constexpr int ld = HeadDim + 8;
  static constexpr int terms_ld = causal_position_columns + 8;
  static constexpr std::size_t tile_bytes = sizeof(T) * tile_rows * ld;
  static constexpr std::size_t q = 0;
  static constexpr std::size_t k = q + tile_bytes;
  static constexpr std::size_t v = k + 2 * tile_bytes;
  static constexpr std::size_t positions = v + 2 * tile_bytes;
  static constexpr std::size_t terms = positions + sizeof(T) * causal_position_rows * ld;
  static constexpr std::size_t row_data = terms + sizeof(float) * 4 * 16 * terms_ld;  // per row: 4 index_t
  static constexpr std::size_t bytes = row_data + sizeof(index_t) * 4 * tile_rows;
  static_assert(HeadDim % 16 == 0 && HeadDim <= 256, "head_dim: a multiple of 16");
  static_assert(tile_bytes % 16 == 0 && positions % 16 == 0 && terms % 16 == 0, "cp.async alignment");
};

#if defined(__CUDACC__)

// The A fragments of q·scale + bias (bias null: none), from the raw Q fragments, rounded to T.
template <class T, int HeadDim>
__device__ inline void biased_fragments(const std::uint32_t (&raw)[HeadDim / 16][4], float scale, const T* bias, int lane,
                                        std::uint32_t (&out)[HeadDim / 16][4]) {
#pragma unroll
  for (int kk = 0; kk < HeadDim / 16; ++kk) {
#pragma unroll
    for (int reg = 0; reg < 4; ++reg) {
      const T* pair = reinterpret_cast<const T*>(&raw[kk][reg]);
      float x[2];
#pragma unroll
      for (int half = 0; half < 2; ++half) {
        const int col = kk * 16 + mma_geometry::a_fragment_cell(lane, reg, half).col;
        x[half] = to_float(pair[half]) * scale + (bias != nullptr ? to_float(bias[col]) : 0.0f);
      }
      out[kk][reg] = pack_pair<T>(x[0], x[1]);
    }
  }
}

template <class T, int HeadDim>
__global__ void __launch_bounds__(tile_threads) mma_causal_attention(CausalTileArgs<T> args, QueryTiling tiling) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
  __trap();  // the host dispatch never launches this below sm_80
#else
  using Layout = CausalMmaLayout<T, HeadDim>;
  using Kind = CausalTiles::Kind;
  constexpr int ld = Layout::ld;
  constexpr int vectors = HeadDim * static_cast<int>(sizeof(T)) / 16;  // 16-byte pieces per row
  constexpr int k_steps = HeadDim / 16;
  constexpr int o_tiles = HeadDim / 8;
  constexpr float log2e = 1.4426950408889634f;
  extern __shared__ __align__(128) unsigned char block_memory[];
  T* q_tile = reinterpret_cast<T*>(block_memory + Layout::q);
  T* k_stage = reinterpret_cast<T*>(block_memory + Layout::k);
  T* v_stage = reinterpret_cast<T*>(block_memory + Layout::v);
  T* position_rows = reinterpret_cast<T*>(block_memory + Layout::positions);
  float* all_terms = reinterpret_cast<float*>(block_memory + Layout::terms);

  const index_t item = blockIdx.z, column = static_cast<index_t>(blockIdx.y) * HeadDim, width = args.width;
  const T* query = args.query + item * args.query_stride;
  const T* window_key = args.window_key + item * args.window_stride;
  const T* window_value = args.window_value + item * args.window_stride;
  const T* compressed_key = args.compressed_key + item * args.compressed_stride;
  const T* compressed_value = args.compressed_value + item * args.compressed_stride;
  T* context = args.context + item * args.query_stride;
  const CausalTiles& tiles = args.tiles;
  const IndexRange queries = tiling.tile(blockIdx.x);
  const index_t first_tau = tiles.cache_length + queries.begin, last_tau = tiles.cache_length + queries.end - 1;
  const index_t tile_count = tiles.count(queries);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const float minus_infinity = __int_as_float(0xff800000);
  float* terms = all_terms + warp * 16 * Layout::terms_ld;

  for (int i = threadIdx.x; i < tile_rows * vectors; i += blockDim.x) {  // Q (zeros past the end)
    const int r = i / vectors, c = i % vectors;
    const index_t t = queries.begin + r;
    const bool inside = t < queries.end;
    cp_async_16(q_tile + r * ld + c * 8, inside ? query + t * width + column + c * 8 : query, inside);
  }
  cp_async_commit();

  // K and V of tile j into stage j % 2; the position table rows of tile j into the one stage.
  auto stage_keys = [&](index_t j) {
    const CausalTiles::KeyTile tile = tiles.tile(queries, j);
    const int stage = static_cast<int>(j & 1);
    T* k_tile = k_stage + stage * tile_rows * ld;
    T* v_tile = v_stage + stage * tile_rows * ld;
    const bool compressed = tile.kind == Kind::compressed;
    const T* key = compressed ? compressed_key : window_key;
    const T* value = compressed ? compressed_value : window_value;
    const index_t row0 = compressed ? tile.first : tile.first - tiles.first_window();
    for (int i = threadIdx.x; i < tile_rows * vectors; i += blockDim.x) {
      const int n = i / vectors, c = i % vectors;
      const bool inside = n < tile.count;
      const index_t at = inside ? (row0 + n) * width + column + c * 8 : 0;
      cp_async_16(k_tile + n * ld + c * 8, key + at, inside);
      cp_async_16(v_tile + n * ld + c * 8, value + at, inside);
    }
  };
  auto stage_positions = [&](index_t j) {
    const CausalTiles::KeyTile tile = tiles.tile(queries, j);
    const T* table = tile.kind == Kind::compressed ? args.chunk_positions : args.window_positions;
    const index_t table_rows = tiles.table_rows(tile.kind);
    const index_t stage_first = warp_positions(tiles, tile, first_tau, last_tau, first_tau).stage_first;
    for (int i = threadIdx.x; i < causal_position_rows * vectors; i += blockDim.x) {
      const int n = i / vectors, c = i % vectors;
      const index_t row = stage_first + n;
      const bool inside = row >= 0 && row < table_rows;  // rows no visible score reads: zeros
      cp_async_16(position_rows + n * ld + c * 8, inside ? table + row * width + column + c * 8 : table, inside);
    }
  };
  if (tile_count > 0) {
    stage_keys(0);
    stage_positions(0);
  }
  cp_async_commit();

  const int my_row[2] = {warp * 16 + lane / 4, warp * 16 + lane / 4 + 8};
  // Every row's f(τ) of the compressed kind and its visible keys of each kind, once, in shared
  // memory (registers are short): rows past the end see nothing, and take f at the last row so
  // that their reads of the position terms stay in range. f of the window kind is τ itself.
  index_t* row_origin = reinterpret_cast<index_t*>(block_memory + Layout::row_data);  // τ (clamped)
  index_t* row_compressed_origin = row_origin + tile_rows;
  index_t* row_compressed_end = row_compressed_origin + tile_rows;
  index_t* row_window_begin = row_compressed_end + tile_rows;
  for (int r = threadIdx.x; r < tile_rows; r += blockDim.x) {
    const index_t t = queries.begin + r;
    const bool valid_row = t < queries.end;
    const index_t tau = valid_row ? tiles.cache_length + t : last_tau;
    row_origin[r] = tau;
    row_compressed_origin[r] = tiles.position_origin(Kind::compressed, tau);
    row_compressed_end[r] = valid_row ? tiles.row_keys(Kind::compressed, tau).end : 0;
    row_window_begin[r] = valid_row ? tiles.row_keys(Kind::window, tau).begin : tau + 1;  // past the end: empty
  }
  // (the first barrier in the loop publishes them)
  float o[o_tiles][4];
  for (auto& tile : o)
    for (float& x : tile) x = 0.0f;
  float row_max[2] = {minus_infinity, minus_infinity};  // log2 units
  float row_sum[2] = {0.0f, 0.0f};
  std::uint32_t content[k_steps][4], position[k_steps][4];  // q·scale (+ u), q·scale (+ v)
  Kind phase = Kind::window;
  bool have_phase = false;

  for (index_t j = 0; j < tile_count; ++j) {
    advance_key_pipeline(j, tile_count, stage_keys);
    const CausalTiles::KeyTile tile = tiles.tile(queries, j);
    if (!have_phase || tile.kind != phase) {  // the compressed tiles come first, then the window's
      phase = tile.kind;
      have_phase = true;
      std::uint32_t raw[k_steps][4];
      load_a_fragments<T, HeadDim>(raw, q_tile + warp * 16 * ld, ld, lane);
      const bool window = phase == Kind::window;
      biased_fragments<T, HeadDim>(raw, args.scale, window ? args.content_bias + column : nullptr, lane, content);
      biased_fragments<T, HeadDim>(raw, args.scale, window ? args.position_bias + column : nullptr, lane, position);
    }

    // This warp's position terms: 16 rows × up to 128 table rows, parked in shared memory.
    const WarpPositions at = warp_positions(tiles, tile, first_tau, last_tau, first_tau + warp * 16);
    {
      const mma_geometry::Cell cell = mma_geometry::key_load_cell(lane);
      for (index_t group = 0; group * 16 < at.columns; ++group) {  // uniform over the warp
        float acc[2][4] = {};
#pragma unroll
        for (int kk = 0; kk < k_steps; ++kk) {
          std::uint32_t b[4];
          ldmatrix_x4(b, position_rows + (at.offset + group * 16 + cell.row) * ld + kk * 16 + cell.col);
          mma_16816<T>(acc[0], position[kk], b[0], b[1]);
          mma_16816<T>(acc[1], position[kk], b[2], b[3]);
        }
#pragma unroll
        for (int half = 0; half < 2; ++half)
#pragma unroll
          for (int i = 0; i < 4; ++i) {
            const mma_geometry::Cell c = mma_geometry::accumulator_cell(lane, i);
            terms[c.row * Layout::terms_ld + group * 16 + half * 8 + c.col] = acc[half][i];
          }
      }
    }
    __syncthreads();  // every warp is done with the staged table rows
    if (j + 1 < tile_count) {
      stage_positions(j + 1);
      cp_async_commit();
    }

    const int stage = static_cast<int>(j & 1);
    const T* k_tile = k_stage + stage * tile_rows * ld;
    const T* v_tile = v_stage + stage * tile_rows * ld;
    float s[score_tiles][4];
    warp_scores<T, HeadDim>(content, k_tile, ld, lane, s);
    __syncwarp();  // the warp's position terms are in shared memory
    const bool compressed_tile = tile.kind == Kind::compressed;
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int r = my_row[h];
      const index_t origin = compressed_tile ? row_compressed_origin[r] : row_origin[r];
      // The row's visible keys as tile columns [lo, hi): compressed rows [0, end), window
      // positions [begin, τ]; never past the tile's last key.
      const index_t key_begin = compressed_tile ? 0 : row_window_begin[r];
      const index_t key_end = compressed_tile ? row_compressed_end[r] : row_origin[r] + 1;
      const index_t lo = key_begin - tile.first;
      const index_t hi = (key_end < tile.first + tile.count ? key_end : tile.first + tile.count) - tile.first;
      const float* row_terms = terms + (r - warp * 16) * Layout::terms_ld + (origin - at.origin + tile_rows - 1);
#pragma unroll
      for (int nt = 0; nt < score_tiles; ++nt) {
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const int n = nt * 8 + mma_geometry::accumulator_cell(lane, 2 * h + e).col;
          const float term = row_terms[-n];  // column at.column(origin, n)
          s[nt][2 * h + e] = n >= lo && n < hi ? (s[nt][2 * h + e] + term) * log2e : minus_infinity;
        }
      }
    }
    warp_online_softmax(s, row_max, row_sum, o);
    warp_accumulate_pv<T, HeadDim>(s, v_tile, ld, lane, o);
    __syncthreads();  // K/V stage and position terms are refilled next
  }
  cp_async_wait_all();

#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const float sum = quad_sum(row_sum[h]);
    const index_t t = queries.begin + my_row[h];
    if (t < queries.end) store_output_row<T>(o, h, sum, sum > 0, lane, context + t * width + column);
  }
#endif
}

// Launches the kernel for head_dim 16, 32, 64 or 128: every query tile, head and batch item.
template <class T>
void launch_mma_causal(index_t head_dim, index_t heads, index_t batch, const CausalTileArgs<T>& args,
                       cudaStream_t stream) {
  const QueryTiling tiling{args.tiles.length};
  if (tiling.count() == 0 || batch == 0) return;
  require(heads <= 65535 && batch <= 65535, "heads, batch: the tiled causal kernel takes at most 65535 of each, got ",
          heads, " and ", batch);
  for_tile_head_dim(head_dim, "tiled causal kernel", [&](auto head_size) {
    constexpr int HeadDim = decltype(head_size)::value;
    launch_tile_grid(&mma_causal_attention<T, HeadDim>, CausalMmaLayout<T, HeadDim>::bytes, tiling.count(), heads, batch,
                     stream, args, tiling);
  });
}

#endif  // __CUDACC__

}  // namespace lsattn::cuda_detail
