#pragma once
// The register-tiled tensor-core attention kernel (FlashAttention-2 style), the default for
// __half and __nv_bfloat16 on sm_80+: one block of 4 warps per (query tile of 64, head), each
// warp owning 16 query rows. Scores S, probabilities P and the output O never leave registers:
// Q·Kᵀ and P·V are `mma.sync.m16n8k16` with fragments loaded by `ldmatrix` (bf16 included, where
// nvcc's WMMA falls back to generic loads), S's accumulators become P's A fragments in place,
// and K/V tiles stream through a two-stage `cp.async` pipeline. Each row's key range is computed
// once per block; a key tile inside every row's range skips the per-row range test (block-sparse
// treatment of the window), and the key bias applies only with a padding mask or a partial tile.
// The WMMA kernel in tiled_attention.cuh stays as the reference the tests compare this one with.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

#include "lsattn/backend/cuda/attention_tiles.cuh"
#include "lsattn/backend/cuda/kernels.cuh"
#include "lsattn/backend/cuda/runtime.cuh"
#include "lsattn/policy/window.hpp"

namespace lsattn::cuda_detail {

// Fragment geometry of `mma.sync.aligned.m16n8k16` (16-bit inputs, fp32 accumulators) and of
// the `ldmatrix.x4` loads that feed it (PTX ISA, "Matrix fragments for mma.m16n8k16"). Pure
// index arithmetic, shared by the kernel and its host-side test, which replays it through an
// emulation of the two instructions.
namespace mma_geometry {

struct Cell {
  int row = 0, col = 0;
};

// Accumulator element i ∈ [0, 4) of `lane` in a 16×8 tile: rows lane/4 and lane/4 + 8.
LSATTN_HOST_DEVICE constexpr Cell accumulator_cell(int lane, int i) {
  return {lane / 4 + (i >= 2 ? 8 : 0), (lane % 4) * 2 + (i & 1)};
}

// The row each lane hands to ldmatrix.x4 (relative to the 16×16 block being loaded; the cell is
// the row's first element, eight 16-bit values follow). Lanes 8j…8j+7 address matrix j.
// A operand (row-major 16×16, e.g. Q rows × features): matrices (rows 0-7 | 8-15) × (cols 0-7 | 8-15)
// in the order a0 a1 a2 a3 of the mma A fragment.
LSATTN_HOST_DEVICE constexpr Cell a_load_cell(int lane) { return {lane % 16, (lane / 16) * 8}; }

// Two B operands from a key-major tile (K rows × features): the block holds keys 0-15 and
// features 0-15; registers 0,1 are the B fragment of keys 0-7, registers 2,3 of keys 8-15.
LSATTN_HOST_DEVICE constexpr Cell key_load_cell(int lane) { return {(lane / 16) * 8 + lane % 8, ((lane / 8) % 2) * 8}; }

// Two B operands from a key-major tile through ldmatrix.trans (V rows × features, used as
// keys × features = k × n): registers 0,1 are the B fragment of features 0-7, 2,3 of features 8-15.
LSATTN_HOST_DEVICE constexpr Cell value_load_cell(int lane) { return {((lane / 8) % 2) * 8 + lane % 8, (lane / 16) * 8}; }

// The (row, column) of half `half` (the low 16 bits: 0) of A-fragment register `reg` of `lane`
// in a 16×16 block: rows lane/4 (+8 for odd registers), columns 2·(lane % 4) + half (+8 for
// registers 2 and 3).
LSATTN_HOST_DEVICE constexpr Cell a_fragment_cell(int lane, int reg, int half) {
  return {lane / 4 + 8 * (reg % 2), 2 * (lane % 4) + half + 8 * (reg / 2)};
}

// The A fragment of P for keys 16j…16j+15 comes from the accumulators of score n-tiles 2j and
// 2j + 1: A register `reg` packs accumulator elements 2·(reg % 2) and 2·(reg % 2) + 1 of n-tile
// 2j + reg / 2, that is row lane/4 for even registers and lane/4 + 8 for odd ones.
struct PackedSource {
  int tile_offset;  // 0 or 1: n-tile 2j or 2j + 1
  int first;        // accumulator elements first, first + 1
};
LSATTN_HOST_DEVICE constexpr PackedSource p_fragment_source(int reg) { return {reg / 2, (reg % 2) * 2}; }

}  // namespace mma_geometry

// Shared memory of one block: Q, two stages of K and V (rows padded by 16 bytes so that the
// eight rows an ldmatrix reads fall in distinct banks), the stages' key biases and each row's
// key range.
template <class T, int HeadDim>
struct MmaLayout {
  static constexpr int ld = HeadDim + 8;  // elements per row
  static constexpr std::size_t tile_bytes = sizeof(T) * tile_rows * ld;
  static constexpr std::size_t q = 0;
  static constexpr std::size_t k = q + tile_bytes;          // two stages
  static constexpr std::size_t v = k + 2 * tile_bytes;      // two stages
  static constexpr std::size_t key_bias = v + 2 * tile_bytes;  // 2 × 64 floats
  static constexpr std::size_t row_begin = key_bias + sizeof(float) * 2 * tile_rows;
  static constexpr std::size_t row_end = row_begin + sizeof(index_t) * tile_rows;
  static constexpr std::size_t row_valid = row_end + sizeof(index_t) * tile_rows;
  static constexpr std::size_t bytes = row_valid + sizeof(int) * tile_rows;
  static_assert(HeadDim % 16 == 0 && HeadDim <= 256, "head_dim: a multiple of 16");
  static_assert(tile_bytes % 16 == 0 && row_begin % 8 == 0, "cp.async and index_t alignment");
};

// One key tile of a query tile: local keys [begin, end), or global slots.
struct KeyTileSpan {
  index_t begin = 0, end = 0;  // key indices (local keys) or slots (global keys)
  bool global = false;
};

// Whether every valid row of the block sees every key of a local tile [begin, end) — it lies
// inside each row's range (highest begin … lowest end over the valid rows) — so that the per-row
// range test can be skipped (block-sparse treatment of the window). The key bias (padding mask,
// slots past the end of a partial tile) is a separate, cheaper matter.
LSATTN_HOST_DEVICE constexpr bool key_tile_in_every_row(const KeyTileSpan& tile, index_t highest_row_begin,
                                                        index_t lowest_row_end) {
  return !tile.global && highest_row_begin <= tile.begin && tile.end <= lowest_row_end;
}

// The key tiles of a query tile: ⌈globals / 64⌉ tiles of global slots, then the local range in
// 64s from its start.
struct KeyTiling {
  index_t global_count = 0;
  IndexRange local{};
  LSATTN_HOST_DEVICE constexpr index_t global_tiles() const { return (global_count + tile_rows - 1) / tile_rows; }
  LSATTN_HOST_DEVICE constexpr index_t count() const {
    return global_tiles() + (local.size() + tile_rows - 1) / tile_rows;
  }
  LSATTN_HOST_DEVICE constexpr KeyTileSpan tile(index_t j) const {
    if (j < global_tiles()) {
      const index_t first = j * tile_rows;
      return {first, first + tile_rows < global_count ? first + tile_rows : global_count, true};
    }
    const index_t first = local.begin + (j - global_tiles()) * tile_rows;
    return {first, first + tile_rows < local.end ? first + tile_rows : local.end, false};
  }
};

#if defined(__CUDACC__)

__device__ inline unsigned shared_address(const void* pointer) {
  return static_cast<unsigned>(__cvta_generic_to_shared(pointer));
}

__device__ inline void ldmatrix_x4(std::uint32_t (&r)[4], const void* row) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(shared_address(row)));
}

__device__ inline void ldmatrix_x4_trans(std::uint32_t (&r)[4], const void* row) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(shared_address(row)));
}

// d += a · b on tensor cores (16×16 · 16×8, fp32 accumulation).
template <class T>
__device__ inline void mma_16816(float (&d)[4], const std::uint32_t (&a)[4], std::uint32_t b0, std::uint32_t b1) {
  if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  } else {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
}

// 16 bytes global → shared without passing through registers; `fill` false writes zeros.
__device__ inline void cp_async_16(void* shared, const void* global, bool fill) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(shared_address(shared)), "l"(global),
               "r"(fill ? 16 : 0));
}
__device__ inline void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
__device__ inline void cp_async_wait_all_but_one() { asm volatile("cp.async.wait_group 1;\n" ::); }
__device__ inline void cp_async_wait_all() { asm volatile("cp.async.wait_all;\n" ::); }

// Step j of a double-buffered key pipeline: start staging tile j + 1 (when there is one), then
// wait until tile j has landed and every thread of the block sees it.
template <class StageTile>
__device__ inline void advance_key_pipeline(index_t j, index_t tile_count, StageTile&& stage_tile) {
  if (j + 1 < tile_count) stage_tile(j + 1);
  cp_async_commit();  // possibly empty: the wait below always leaves exactly the newest group in flight
  cp_async_wait_all_but_one();
  __syncthreads();
}

__device__ inline float fast_exp2(float x) {  // 2^x; −inf → 0
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}

// Two floats as one register of two 16-bit values, the lower column in the low half.
template <class T>
__device__ inline std::uint32_t pack_pair(float lo, float hi) {
  if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    const __nv_bfloat162 pair = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<const std::uint32_t*>(&pair);
  } else {
    const __half2 pair = __floats2half2_rn(lo, hi);
    return *reinterpret_cast<const std::uint32_t*>(&pair);
  }
}

// The warp-level steps of the register-tiled kernels. A warp owns 16 query rows; a key tile has
// 64 keys; S holds the warp's 16 × 64 scores as eight 16×8 accumulator tiles.
inline constexpr int score_tiles = tile_rows / 8;

// The A fragments of a 16-row block of a row-major tile (rows ld elements apart), for every
// 16-feature step.
template <class T, int HeadDim>
__device__ inline void load_a_fragments(std::uint32_t (&a)[HeadDim / 16][4], const T* rows, int ld, int lane) {
  const mma_geometry::Cell cell = mma_geometry::a_load_cell(lane);
#pragma unroll
  for (int kk = 0; kk < HeadDim / 16; ++kk) ldmatrix_x4(a[kk], rows + cell.row * ld + kk * 16 + cell.col);
}

// s = A · Bᵀ for 64 rows of B (a key-major tile, rows ld elements apart): 16 × 64 per warp.
template <class T, int HeadDim>
__device__ inline void warp_scores(const std::uint32_t (&a)[HeadDim / 16][4], const T* b_tile, int ld, int lane,
                                   float (&s)[score_tiles][4]) {
  for (auto& tile : s)
    for (float& x : tile) x = 0.0f;
  const mma_geometry::Cell cell = mma_geometry::key_load_cell(lane);
#pragma unroll
  for (int kk = 0; kk < HeadDim / 16; ++kk) {
#pragma unroll
    for (int pair = 0; pair < score_tiles / 2; ++pair) {
      std::uint32_t b[4];
      ldmatrix_x4(b, b_tile + (pair * 16 + cell.row) * ld + kk * 16 + cell.col);
      mma_16816<T>(s[2 * pair], a[kk], b[0], b[1]);
      mma_16816<T>(s[2 * pair + 1], a[kk], b[2], b[3]);
    }
  }
}

// One online-softmax step on s (log2 units, −inf where hidden): each row's running max over the
// quad of lanes that share it, s becomes the unnormalised probabilities, the running sums and
// the output accumulators are rescaled. Element i of an accumulator tile is row half i / 2.
template <int OTiles>
__device__ inline void warp_online_softmax(float (&s)[score_tiles][4], float (&row_max)[2], float (&row_sum)[2],
                                           float (&o)[OTiles][4]) {
  const float minus_infinity = __int_as_float(0xff800000);
  float rescale[2];
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    float top = row_max[h];
#pragma unroll
    for (int nt = 0; nt < score_tiles; ++nt) top = fmaxf(top, fmaxf(s[nt][2 * h], s[nt][2 * h + 1]));
    top = fmaxf(top, __shfl_xor_sync(0xffffffffu, top, 1));
    top = fmaxf(top, __shfl_xor_sync(0xffffffffu, top, 2));
    const float base = top == minus_infinity ? 0.0f : top;  // a row that saw nothing yet stays at zero
    rescale[h] = fast_exp2(row_max[h] - base);
    row_max[h] = top;
    float sum = 0;
#pragma unroll
    for (int nt = 0; nt < score_tiles; ++nt) {
      s[nt][2 * h] = fast_exp2(s[nt][2 * h] - base);
      s[nt][2 * h + 1] = fast_exp2(s[nt][2 * h + 1] - base);
      sum += s[nt][2 * h] + s[nt][2 * h + 1];
    }
    row_sum[h] = row_sum[h] * rescale[h] + sum;
  }
#pragma unroll
  for (int nt = 0; nt < OTiles; ++nt) {
    o[nt][0] *= rescale[0];
    o[nt][1] *= rescale[0];
    o[nt][2] *= rescale[1];
    o[nt][3] *= rescale[1];
  }
}

// O += P · V, P's A fragments packed straight from the probabilities in s; V a key-major tile
// read through ldmatrix.trans.
template <class T, int HeadDim>
__device__ inline void warp_accumulate_pv(const float (&s)[score_tiles][4], const T* v_tile, int ld, int lane,
                                          float (&o)[HeadDim / 8][4]) {
  const mma_geometry::Cell cell = mma_geometry::value_load_cell(lane);
#pragma unroll
  for (int kk = 0; kk < tile_rows / 16; ++kk) {
    std::uint32_t pa[4];
#pragma unroll
    for (int reg = 0; reg < 4; ++reg) {
      const mma_geometry::PackedSource source = mma_geometry::p_fragment_source(reg);
      const float* from = s[2 * kk + source.tile_offset];
      pa[reg] = pack_pair<T>(from[source.first], from[source.first + 1]);
    }
#pragma unroll
    for (int pair = 0; pair < HeadDim / 16; ++pair) {
      std::uint32_t b[4];
      ldmatrix_x4_trans(b, v_tile + (kk * 16 + cell.row) * ld + pair * 16 + cell.col);
      mma_16816<T>(o[2 * pair], pa, b[0], b[1]);
      mma_16816<T>(o[2 * pair + 1], pa, b[2], b[3]);
    }
  }
}

// The row sum of row half h over the quad of lanes that share the row.
__device__ inline float quad_sum(float x) {
  x += __shfl_xor_sync(0xffffffffu, x, 1);
  x += __shfl_xor_sync(0xffffffffu, x, 2);
  return x;
}

// Stores O / Σ of row half h into `out` (the row's first feature of the head, 4-byte aligned),
// two values per store; zeros where the row is padded or saw no key — a select, not a product
// with zero, since a padded row's scores may be NaN if its query is.
template <class T, int OTiles>
__device__ inline void store_output_row(const float (&o)[OTiles][4], int h, float sum, bool seen, int lane, T* out) {
  const float inverse = seen ? 1.0f / sum : 0.0f;
  std::uint32_t* pairs = reinterpret_cast<std::uint32_t*>(out);
#pragma unroll
  for (int nt = 0; nt < OTiles; ++nt)
    pairs[(nt * 8 + (lane % 4) * 2) / 2] =
        pack_pair<T>(seen ? o[nt][2 * h] * inverse : 0.0f, seen ? o[nt][2 * h + 1] * inverse : 0.0f);
}

// The same arguments as tiled_attention (TiledKeys, a visibility policy per head), the same results.
template <class T, int HeadDim, class Visibilities>
__global__ void __launch_bounds__(tile_threads)
    mma_attention(const T* query, TiledKeys<T> keys, const T* mask, index_t length, Visibilities visibilities,
                  QueryTiling tiling, float scale, T* context, float* row_max_logit,
                  BatchStrides batch) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
  __trap();  // the host dispatch never launches this below sm_80
#else
  select_batch_item(static_cast<index_t>(blockIdx.z), batch, query, keys, mask, context, row_max_logit);
  using Layout = MmaLayout<T, HeadDim>;
  namespace geometry = mma_geometry;
  constexpr int ld = Layout::ld;
  constexpr int vectors = HeadDim * static_cast<int>(sizeof(T)) / 16;  // 16-byte pieces per row
  constexpr int k_steps = HeadDim / 16;                                // of Q·Kᵀ
  constexpr int o_tiles = HeadDim / 8;                                 // 8-feature tiles of O
  constexpr int s_tiles = tile_rows / 8;                           // 8-key tiles of S
  constexpr float log2e = 1.4426950408889634f;
  extern __shared__ __align__(128) unsigned char block_memory[];
  T* q_tile = reinterpret_cast<T*>(block_memory + Layout::q);
  T* k_stage = reinterpret_cast<T*>(block_memory + Layout::k);
  T* v_stage = reinterpret_cast<T*>(block_memory + Layout::v);
  float* key_bias = reinterpret_cast<float*>(block_memory + Layout::key_bias);
  index_t* row_begin = reinterpret_cast<index_t*>(block_memory + Layout::row_begin);
  index_t* row_end = reinterpret_cast<index_t*>(block_memory + Layout::row_end);
  int* row_valid = reinterpret_cast<int*>(block_memory + Layout::row_valid);

  const IndexRange queries = tiling.tile(blockIdx.x);
  const index_t column = static_cast<index_t>(blockIdx.y) * HeadDim;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const auto visibility = visibilities.at(blockIdx.y);
  const KeyTiling key_tiling{keys.global_count, visibility.keys(queries.begin, queries.end, length)};
  const index_t tile_count = key_tiling.count();
  const float minus_infinity = __int_as_float(0xff800000);
  const float scale_log2 = scale * log2e;

  // Q tile (zeros past the end) and every row's key range, once.
  for (int i = threadIdx.x; i < tile_rows * vectors; i += blockDim.x) {
    const int r = i / vectors, c = i % vectors;
    const index_t t = queries.begin + r;
    const bool inside = t < queries.end;
    cp_async_16(q_tile + r * ld + c * 8, inside ? query + t * keys.stride + column + c * 8 : query, inside);
  }
  cp_async_commit();
  for (int r = threadIdx.x; r < tile_rows; r += blockDim.x) {
    const index_t t = queries.begin + r;
    const bool valid = t < queries.end && valid_token(mask, t);
    const IndexRange seen = valid ? visibility.row_keys(t, length) : IndexRange{};
    row_begin[r] = seen.begin;
    row_end[r] = seen.end;
    row_valid[r] = valid ? 1 : 0;
  }

  // Stage a key tile: global slots converted from float by plain stores, local rows by cp.async
  // (zeros past the end, so that masked probabilities never meet garbage values).
  auto stage_tile = [&](index_t j) {
    const int stage = static_cast<int>(j & 1);
    T* k_tile = k_stage + stage * tile_rows * ld;
    T* v_tile = v_stage + stage * tile_rows * ld;
    const KeyTileSpan span = key_tiling.tile(j);
    const index_t count = span.end - span.begin;
    if (span.global) {
      for (int i = threadIdx.x; i < tile_rows * HeadDim; i += blockDim.x) {
        const int n = i / HeadDim, f = i % HeadDim;
        const bool inside = n < count;
        const index_t at = (span.begin + n) * keys.stride + column + f;
        k_tile[n * ld + f] = from_float<T>(inside ? keys.global_key[at] : 0.0f);
        v_tile[n * ld + f] = from_float<T>(inside ? keys.global_value[at] : 0.0f);
      }
    } else {
      for (int i = threadIdx.x; i < tile_rows * vectors; i += blockDim.x) {
        const int n = i / vectors, c = i % vectors;
        const bool inside = n < count;
        const index_t at = inside ? (span.begin + n) * keys.stride + column + c * 8 : 0;
        cp_async_16(k_tile + n * ld + c * 8, keys.key + at, inside);
        cp_async_16(v_tile + n * ld + c * 8, keys.value + at, inside);
      }
    }
    for (int n = threadIdx.x; n < tile_rows; n += blockDim.x) {
      const bool visible = n < count && (span.global || valid_token(mask, span.begin + n));
      key_bias[stage * tile_rows + n] = visible ? 0.0f : minus_infinity;
    }
  };
  if (tile_count > 0) stage_tile(0);
  cp_async_commit();
  __syncthreads();  // the row ranges

  // Block-wide bounds for the unmasked-tile test, over the valid rows.
  index_t highest_begin = 0, lowest_end = length;
  for (int r = 0; r < tile_rows; ++r) {
    if (!row_valid[r]) continue;
    highest_begin = row_begin[r] > highest_begin ? row_begin[r] : highest_begin;
    lowest_end = row_end[r] < lowest_end ? row_end[r] : lowest_end;
  }
  // This thread's two rows (warp rows lane/4 and lane/4 + 8).
  const int my_row[2] = {warp * 16 + lane / 4, warp * 16 + lane / 4 + 8};
  const IndexRange my_range[2] = {{row_begin[my_row[0]], row_end[my_row[0]]}, {row_begin[my_row[1]], row_end[my_row[1]]}};

  float o[o_tiles][4];
  for (auto& tile : o)
    for (float& x : tile) x = 0.0f;
  float row_max[2] = {minus_infinity, minus_infinity};  // in log2 units (scaled)
  float row_sum[2] = {0.0f, 0.0f};                      // this lane's share; summed over the quad at the end
  std::uint32_t qa[k_steps][4];

  for (index_t j = 0; j < tile_count; ++j) {
    advance_key_pipeline(j, tile_count, stage_tile);
    if (j == 0) load_a_fragments<T, HeadDim>(qa, q_tile + warp * 16 * ld, ld, lane);
    const int stage = static_cast<int>(j & 1);
    const T* k_tile = k_stage + stage * tile_rows * ld;
    const T* v_tile = v_stage + stage * tile_rows * ld;
    const float* bias = key_bias + stage * tile_rows;
    const KeyTileSpan span = key_tiling.tile(j);

    // S = Q Kᵀ: 16 rows × 64 keys per warp, in registers.
    float s[s_tiles][4];
    warp_scores<T, HeadDim>(qa, k_tile, ld, lane, s);

    // Scale to log2 units; hide what a row may not see: the key bias where there is a padding
    // mask or the tile is partial, the per-row range where the tile is not in every row's range.
    const bool needs_bias = mask != nullptr || span.end - span.begin < tile_rows;
    const bool needs_range = !span.global && !key_tile_in_every_row(span, highest_begin, lowest_end);
#pragma unroll
    for (int nt = 0; nt < s_tiles; ++nt) {
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        float x = s[nt][i] * scale_log2;
        const int n = nt * 8 + geometry::accumulator_cell(lane, i).col;
        if (needs_bias) x += bias[n];
        if (needs_range && !my_range[i / 2].contains(span.begin + n)) x = minus_infinity;
        s[nt][i] = x;
      }
    }

    warp_online_softmax(s, row_max, row_sum, o);
    warp_accumulate_pv<T, HeadDim>(s, v_tile, ld, lane, o);
    __syncthreads();  // every warp is done with this stage before it is refilled
  }
  cp_async_wait_all();  // with no key tile at all the Q copies are still in flight: never leave them

  // O / Σ per row (zeros for padded queries and rows that saw no key), straight from registers.
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const float sum = quad_sum(row_sum[h]);
    const int r = my_row[h];
    const index_t t = queries.begin + r;
    const bool valid = row_valid[r] != 0;
    if (t < queries.end) {
      store_output_row<T>(o, h, sum, valid && sum > 0, lane, context + t * keys.stride + column);
      if (row_max_logit != nullptr && lane % 4 == 0)
        row_max_logit[t * gridDim.y + blockIdx.y] = valid ? row_max[h] / log2e : minus_infinity;
    }
  }
#endif
}

// Calls launch(std::integral_constant<int, D>{}) for the head sizes the tile kernels are built
// for (D = 16, 32, 64, 128); any other is an internal error naming `kernel`.
template <class Launch>
void for_tile_head_dim(index_t head_dim, const char* kernel, Launch&& launch) {
  switch (head_dim) {
    case 16: return launch(std::integral_constant<int, 16>{});
    case 32: return launch(std::integral_constant<int, 32>{});
    case 64: return launch(std::integral_constant<int, 64>{});
    case 128: return launch(std::integral_constant<int, 128>{});
    default: throw error(detail::concat("lsattn: internal: the ", kernel, " does not take head_dim ", head_dim));
  }
}

// Launches a tile kernel on a (tiles, heads, batch) grid of tile_threads-thread blocks with
// `shared_bytes` of dynamic shared memory (opted in first: above 48 KiB it must be).
template <class... Params, class... Args>
void launch_tile_grid(void (*kernel)(Params...), std::size_t shared_bytes, index_t tiles, index_t heads, index_t batch,
                      cudaStream_t stream, const Args&... args) {
  check(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(shared_bytes)),
        "cudaFuncSetAttribute");
  kernel<<<dim3(static_cast<unsigned>(tiles), static_cast<unsigned>(heads), static_cast<unsigned>(batch)), tile_threads,
           shared_bytes, stream>>>(args...);
  check(cudaGetLastError(), "kernel launch");
}

#endif  // __CUDACC__

}  // namespace lsattn::cuda_detail
