#pragma once
// The dynamic projection's compression K̄ = Pᵀ·K, V̄ = Pᵀ·V (spec §1.3 step 5) on tensor cores,
// for 16-bit T: one block of 4 warps per (chunk of 256 tokens, head). The block turns the chunk's
// logits into probabilities P (exp(x − column max) / column sum, 0 for padding; the statistics
// come from projection_statistics), then accumulates Pᵀ·K and Pᵀ·V over 64-token tiles on tensor cores
// (mma.sync fed by ldmatrix.trans, fp32 accumulation) into its own fp32 partial sums; P holds exp(x − max), normalised at the
// end. A second kernel adds the chunks' partials in a fixed order (deterministic), divides by the
// column sums and writes the global rows. Ranks up to 64 (padded to a multiple of
// 16); other shapes use compress_sequence.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "lsattn/backend/cuda/kernels.cuh"
#include "lsattn/backend/cuda/runtime.cuh"
#include "lsattn/backend/cuda/tiled_attention.cuh"

namespace lsattn::cuda_detail {

inline constexpr index_t compression_chunk = 256;  // tokens per block
inline constexpr index_t max_tiled_rank = 64;

LSATTN_HOST_DEVICE constexpr index_t padded_rank(index_t rank) { return (rank + 15) / 16 * 16; }

// Whether the compression of this shape can take the tensor-core kernel (shapes only, so the
// workspace size does not depend on the device).
template <class T>
constexpr bool tiled_compression_shape(index_t head_dim, index_t rank) {
  return tensor_core_type<T> && rank >= 1 && rank <= max_tiled_rank &&
         (head_dim == 16 || head_dim == 32 || head_dim == 64 || head_dim == 128);
}

// fp32 partial sums: [chunk][head][padded rank][head_dim] for K̄, then the same for V̄.
inline index_t compression_partials(index_t length, index_t heads, index_t head_dim, index_t rank) {
  return 2 * ((length + compression_chunk - 1) / compression_chunk) * heads * padded_rank(rank) * head_dim;
}

template <class T, int HeadDim>
struct CompressionLayout {
  static constexpr int ld_p = max_tiled_rank + 8;  // P tile: 64 tokens × padded rank (T)
  static constexpr int ld_t = HeadDim + 8;         // K, V tiles: 64 tokens × head_dim (T)
  static constexpr std::size_t p = 0;
  static constexpr std::size_t k = p + sizeof(T) * tile_rows * ld_p;
  static constexpr std::size_t v = k + sizeof(T) * tile_rows * ld_t;
  static constexpr std::size_t bytes = v + sizeof(T) * tile_rows * ld_t;
  static_assert(k % 16 == 0 && v % 16 == 0 && (ld_p * sizeof(T)) % 16 == 0, "ldmatrix rows are 16-byte aligned");
};

template <class T, int HeadDim>
__global__ void __launch_bounds__(tile_threads)
    compress_tiled(const T* logits, const T* mask, const T* key, const T* value, const float* column_max,
                   const float* column_sum, index_t length, index_t rank, index_t width, float* partials) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
  __trap();  // the host dispatch never launches this below sm_80
#else
  using Layout = CompressionLayout<T, HeadDim>;
  extern __shared__ __align__(128) unsigned char compression_memory[];
  T* p_tile = reinterpret_cast<T*>(compression_memory + Layout::p);
  T* k_tile = reinterpret_cast<T*>(compression_memory + Layout::k);
  T* v_tile = reinterpret_cast<T*>(compression_memory + Layout::v);
  const index_t chunk = blockIdx.x, h = blockIdx.y, heads = gridDim.y, columns = heads * rank;
  const index_t column = h * HeadDim, ranks = padded_rank(rank);
  const index_t first = chunk * compression_chunk;
  const index_t last = first + compression_chunk < length ? first + compression_chunk : length;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const bool active = warp * 16 < ranks;  // warp w owns landmarks 16w … 16w + 15

  // This warp's 16 landmarks × head_dim of K̄ and V̄ as mma accumulators (8-feature tiles).
  float k_sum[HeadDim / 8][4], v_sum[HeadDim / 8][4];
#pragma unroll
  for (int nt = 0; nt < HeadDim / 8; ++nt)
#pragma unroll
    for (int i = 0; i < 4; ++i) k_sum[nt][i] = v_sum[nt][i] = 0.0f;
  for (index_t start = first; start < last; start += tile_rows) {
    __syncthreads();  // the previous tile is consumed
    auto row = [&](const T* base) {
      return [&, base](int n) -> const T* { return start + n < last ? base + (start + n) * width + column : nullptr; };
    };
    load_tile<T, HeadDim>(k_tile, Layout::ld_t, row(key));
    load_tile<T, HeadDim>(v_tile, Layout::ld_t, row(value));
    for (int i = threadIdx.x; i < tile_rows * max_tiled_rank; i += blockDim.x) {
      const int n = i / max_tiled_rank, j = i % max_tiled_rank;
      const index_t t = start + n, c = h * rank + j;
      // exp(x − max) ∈ (0, 1]; the division by the column sum waits for the fp32 total (in fp16
      // p itself would turn subnormal for long sequences).
      float p = 0;
      if (t < last && j < rank && valid_token(mask, t)) p = __expf(to_float(logits[t * columns + c]) - column_max[c]);
      p_tile[n * Layout::ld_p + j] = from_float<T>(p);
    }
    __syncthreads();
    if (active) {
      const mma_geometry::Cell a_cell = mma_geometry::key_load_cell(lane), b_cell = mma_geometry::value_load_cell(lane);
#pragma unroll
      for (int kk = 0; kk < tile_rows; kk += 16) {
        // Pᵀ (landmarks × tokens) is the token-major P tile transposed: ldmatrix.trans.
        std::uint32_t a[4];
        ldmatrix_x4_trans(a, p_tile + (kk + a_cell.row) * Layout::ld_p + warp * 16 + a_cell.col);
#pragma unroll
        for (int pair = 0; pair < HeadDim / 16; ++pair) {
          std::uint32_t b[4];
          ldmatrix_x4_trans(b, k_tile + (kk + b_cell.row) * Layout::ld_t + pair * 16 + b_cell.col);
          mma_16816<T>(k_sum[2 * pair], a, b[0], b[1]);
          mma_16816<T>(k_sum[2 * pair + 1], a, b[2], b[3]);
          ldmatrix_x4_trans(b, v_tile + (kk + b_cell.row) * Layout::ld_t + pair * 16 + b_cell.col);
          mma_16816<T>(v_sum[2 * pair], a, b[0], b[1]);
          mma_16816<T>(v_sum[2 * pair + 1], a, b[2], b[3]);
        }
      }
    }
  }
  if (active) {
    const index_t per_part = gridDim.x * heads * ranks * HeadDim;  // the V̄ partials follow the K̄ ones
    float* out = partials + ((chunk * heads + h) * ranks + warp * 16) * HeadDim;
#pragma unroll
    for (int nt = 0; nt < HeadDim / 8; ++nt)
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const mma_geometry::Cell cell = mma_geometry::accumulator_cell(lane, i);
        out[cell.row * HeadDim + nt * 8 + cell.col] = k_sum[nt][i];
        out[per_part + cell.row * HeadDim + nt * 8 + cell.col] = v_sum[nt][i];
      }
  }
#endif
}

// One block per (head, landmark j), one thread per feature: the chunks' partial sums in chunk
// order, divided by the column's Σ exp, into global row first_row + j (zeros without a valid token).
template <class T>  // T: the call's element type (only to give the kernel template linkage)
__global__ void sum_compression_partials(const float* partials, const float* column_sum, index_t chunks, index_t heads,
                                         index_t rank, index_t head_dim, index_t width, index_t first_row,
                                         float* global_key, float* global_value) {
  const index_t h = blockIdx.x / rank, j = blockIdx.x % rank, ranks = padded_rank(rank);
  const index_t per_part = chunks * heads * ranks * head_dim;
  const float total = column_sum[h * rank + j], inverse = total > 0 ? 1.0f / total : 0.0f;
  for (index_t f = threadIdx.x; f < head_dim; f += blockDim.x) {
    float k = 0, v = 0;
    for (index_t c = 0; c < chunks; ++c) {
      const index_t at = ((c * heads + h) * ranks + j) * head_dim + f;
      k += partials[at];
      v += partials[per_part + at];
    }
    global_key[(first_row + j) * width + h * head_dim + f] = k * inverse;
    global_value[(first_row + j) * width + h * head_dim + f] = v * inverse;
  }
}

// Enqueues the compression of one batch item: global rows first_row … first_row + r − 1.
template <class T>
void launch_tiled_compression(index_t head_dim, const T* logits, const T* mask, const T* key, const T* value,
                              const float* column_max, const float* column_sum, index_t length, index_t heads,
                              index_t rank, index_t width, float* partials, index_t first_row, float* global_key,
                              float* global_value, cudaStream_t stream) {
  const index_t chunks = (length + compression_chunk - 1) / compression_chunk;
  if (chunks == 0) return;
  auto launch = [&](auto* kernel, std::size_t bytes) {
    check(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)),
          "cudaFuncSetAttribute");
    kernel<<<dim3(static_cast<unsigned>(chunks), static_cast<unsigned>(heads)), tile_threads, bytes, stream>>>(
        logits, mask, key, value, column_max, column_sum, length, rank, width, partials);
  };
  if constexpr (!tensor_core_type<T>) {
    throw error("lsattn: internal: the tiled compression takes __half or __nv_bfloat16 only");
  } else {
    for_tile_head_dim(head_dim, "tiled compression", [&](auto head_size) {
      constexpr int HeadDim = decltype(head_size)::value;
      launch(&compress_tiled<T, HeadDim>, CompressionLayout<T, HeadDim>::bytes);
    });
  }
  sum_compression_partials<T><<<static_cast<unsigned>(heads * rank), 128, 0, stream>>>(
      partials, column_sum, chunks, heads, rank, head_dim, width, first_row, global_key, global_value);
  check(cudaGetLastError(), "kernel launch");
}

}  // namespace lsattn::cuda_detail
