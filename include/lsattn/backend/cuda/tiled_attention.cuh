#pragma once
// The fused tensor-core attention kernel: one block of 4 warps per (query tile of 64, head).
// The tile's queries meet their keys 64 at a time — the global (compressed) keys first, then
// the tile's contiguous range of local keys — with an online softmax in fp32; Q·Kᵀ and P·V run
// on tensor cores (WMMA 16×16×16, 16-bit inputs, fp32 accumulation). Keys a query may not see
// (padding, outside its own row range) get −inf. Used for __half and __nv_bfloat16 on sm_80+;
// everything else falls back to the one-block-per-query kernels.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <mma.h>

#include <algorithm>
#include <cstdint>
#include <map>
#include <mutex>
#include <type_traits>

#include "lsattn/backend/cuda/attention_tiles.cuh"
#include "lsattn/backend/cuda/kernels.cuh"
#include "lsattn/backend/cuda/mma_attention.cuh"
#include "lsattn/backend/cuda/runtime.cuh"
#include "lsattn/policy/window.hpp"

namespace lsattn::cuda_detail {

// Shared-memory layout of one block; leading dimensions padded against bank conflicts, every
// region 32-byte aligned as WMMA requires.
template <class T, int HeadDim>
struct TileLayout {
  static constexpr int ld_t = HeadDim + 8;                                    // q, k, v rows (T)
  static constexpr int ld_s = (HeadDim > tile_rows ? HeadDim : tile_rows) + 4;  // scores / P·V (float)
  static constexpr int ld_p = tile_rows + 8;                                   // probabilities (T)
  static constexpr int ld_o = HeadDim + 4;                                     // output accumulator (float)
  static constexpr std::size_t q = 0;
  static constexpr std::size_t k = q + sizeof(T) * tile_rows * ld_t;
  static constexpr std::size_t v = k + sizeof(T) * tile_rows * ld_t;
  static constexpr std::size_t s = v + sizeof(T) * tile_rows * ld_t;
  static constexpr std::size_t p = s + sizeof(float) * tile_rows * ld_s;
  static constexpr std::size_t o = p + sizeof(T) * tile_rows * ld_p;
  static constexpr std::size_t rows = o + sizeof(float) * tile_rows * ld_o;  // max, sum, rescale
  static constexpr std::size_t key_bias = rows + sizeof(float) * 3 * tile_rows;
  static constexpr std::size_t bytes = key_bias + sizeof(float) * tile_rows;
  static_assert(k % 32 == 0 && v % 32 == 0 && s % 32 == 0 && p % 32 == 0 && o % 32 == 0, "WMMA needs 32-byte alignment");
};

__device__ inline float warp_max(float v) {
  for (int offset = 16; offset > 0; offset /= 2) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, offset));
  return v;
}
__device__ inline float warp_sum(float v) {
  for (int offset = 16; offset > 0; offset /= 2) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

// Copies rows [first, first + count) of a T matrix (row stride `stride`, the head's columns from
// `column`) into a 64-row shared tile, 16 bytes at a time; missing rows become zeros.
template <class T, int HeadDim, class RowSource>
__device__ void load_tile(T* tile, int ld, RowSource&& row_of) {
  constexpr int vectors = HeadDim * static_cast<int>(sizeof(T)) / 16;  // uint4 per row
  for (int i = threadIdx.x; i < tile_rows * vectors; i += blockDim.x) {
    const int r = i / vectors, c = i % vectors;
    const T* source = row_of(r);
    uint4 bits = make_uint4(0, 0, 0, 0);
    if (source != nullptr) bits = reinterpret_cast<const uint4*>(source)[c];
    reinterpret_cast<uint4*>(tile + r * ld)[c] = bits;
  }
}

// `visibilities.at(head)` is the head's visibility policy: keys(first, last, L), the key range a
// query tile needs, and row_keys(t, L), the range query t sees. row_max_logit (optional, L × heads)
// receives each row's largest visible scaled score (−inf for padded queries).
template <class T, int HeadDim, class Visibilities>
__global__ void __launch_bounds__(tile_threads)
    tiled_attention(const T* query, TiledKeys<T> keys, const T* mask, index_t length, Visibilities visibilities,
                    QueryTiling tiling, float scale, T* context, float* row_max_logit,
                  BatchStrides batch) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
  __trap();  // the host dispatch never launches this below sm_80
#else
  select_batch_item(static_cast<index_t>(blockIdx.z), batch, query, keys, mask, context, row_max_logit);
  namespace wmma = nvcuda::wmma;
  using Layout = TileLayout<T, HeadDim>;
  extern __shared__ __align__(128) unsigned char tile_memory[];
  T* q_tile = reinterpret_cast<T*>(tile_memory + Layout::q);
  T* k_tile = reinterpret_cast<T*>(tile_memory + Layout::k);
  T* v_tile = reinterpret_cast<T*>(tile_memory + Layout::v);
  float* scores = reinterpret_cast<float*>(tile_memory + Layout::s);
  T* probabilities = reinterpret_cast<T*>(tile_memory + Layout::p);
  float* output = reinterpret_cast<float*>(tile_memory + Layout::o);
  float* row_max = reinterpret_cast<float*>(tile_memory + Layout::rows);
  float* row_sum = row_max + tile_rows;
  float* row_rescale = row_sum + tile_rows;
  float* key_bias = reinterpret_cast<float*>(tile_memory + Layout::key_bias);

  const IndexRange queries = tiling.tile(blockIdx.x);  // never empty: count() tiles are launched
  const index_t column = static_cast<index_t>(blockIdx.y) * HeadDim;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const auto visibility = visibilities.at(blockIdx.y);
  const IndexRange local = visibility.keys(queries.begin, queries.end, length);
  const index_t total = keys.global_count + local.size();
  const float minus_infinity = __int_as_float(0xff800000);

  load_tile<T, HeadDim>(q_tile, Layout::ld_t, [&](int r) -> const T* {
    const index_t t = queries.begin + r;
    return t < queries.end ? query + t * keys.stride + column : nullptr;
  });
  for (int i = threadIdx.x; i < tile_rows * HeadDim; i += blockDim.x) output[(i / HeadDim) * Layout::ld_o + i % HeadDim] = 0;
  for (int r = threadIdx.x; r < tile_rows; r += blockDim.x) {
    row_max[r] = minus_infinity;
    row_sum[r] = 0;
  }
  __syncthreads();  // rows are read by their own warp below, even when there is no key at all

  for (index_t start = 0; start < total; start += tile_rows) {
    __syncthreads();  // every warp is done with the previous key tile
    // Key row n of this tile: global row start + n, or local position local.begin + (start + n − globals).
    auto local_row = [&](int n) { return local.begin + (start + n - keys.global_count); };
    const bool global_part = start < keys.global_count;
    if (global_part) {  // float rows, converted (there are few of them)
      for (int i = threadIdx.x; i < tile_rows * HeadDim; i += blockDim.x) {
        const int n = i / HeadDim, f = i % HeadDim;
        const index_t index = start + n;
        float k = 0, v = 0;
        if (index < keys.global_count) {
          k = keys.global_key[index * keys.stride + column + f];
          v = keys.global_value[index * keys.stride + column + f];
        } else if (index < total) {
          k = to_float(keys.key[local_row(n) * keys.stride + column + f]);
          v = to_float(keys.value[local_row(n) * keys.stride + column + f]);
        }
        k_tile[n * Layout::ld_t + f] = from_float<T>(k);
        v_tile[n * Layout::ld_t + f] = from_float<T>(v);
      }
    } else {
      auto row = [&](const T* base) {
        return [&, base](int n) -> const T* {
          return start + n < total ? base + local_row(n) * keys.stride + column : nullptr;
        };
      };
      load_tile<T, HeadDim>(k_tile, Layout::ld_t, row(keys.key));
      load_tile<T, HeadDim>(v_tile, Layout::ld_t, row(keys.value));
    }
    for (int n = threadIdx.x; n < tile_rows; n += blockDim.x) {
      const index_t index = start + n;
      const bool valid = index < keys.global_count || (index < total && valid_token(mask, local_row(n)));
      key_bias[n] = valid ? 0.0f : minus_infinity;
    }
    __syncthreads();

    // S = Q Kᵀ for this warp's 16 rows.
    for (int n = 0; n < tile_rows / 16; ++n) {
      wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
      wmma::fill_fragment(acc, 0.0f);
      for (int kk = 0; kk < HeadDim; kk += 16) {
        wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> a;
        wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::col_major> b;
        wmma::load_matrix_sync(a, q_tile + warp * 16 * Layout::ld_t + kk, Layout::ld_t);
        wmma::load_matrix_sync(b, k_tile + n * 16 * Layout::ld_t + kk, Layout::ld_t);
        wmma::mma_sync(acc, a, b, acc);
      }
      wmma::store_matrix_sync(scores + warp * 16 * Layout::ld_s + n * 16, acc, Layout::ld_s, wmma::mem_row_major);
    }
    __syncwarp();

    // Online softmax over the tile, one row at a time, two key columns per lane.
    for (int rr = 0; rr < 16; ++rr) {
      const int r = warp * 16 + rr;
      const index_t t = queries.begin + r;
      const IndexRange seen = t < queries.end ? visibility.row_keys(t, length) : IndexRange{};
      const bool query_row = t < queries.end && valid_token(mask, t);
      float x[2];
      for (int j = 0; j < 2; ++j) {
        const int n = lane + 32 * j;
        const index_t index = start + n;
        x[j] = scores[r * Layout::ld_s + n] * scale + key_bias[n];
        if (index >= keys.global_count && index < total && !seen.contains(local_row(n))) x[j] = minus_infinity;
        if (!query_row) x[j] = minus_infinity;
      }
      const float old_max = row_max[r];
      const float new_max = fmaxf(old_max, warp_max(fmaxf(x[0], x[1])));
      const bool none = new_max == minus_infinity;
      float sum = 0;
      for (int j = 0; j < 2; ++j) {
        const float p = none ? 0.0f : __expf(x[j] - new_max);
        sum += p;
        probabilities[r * Layout::ld_p + lane + 32 * j] = from_float<T>(p);
      }
      sum = warp_sum(sum);
      __syncwarp();  // every lane has read row_max[r] before lane 0 updates it
      if (lane == 0) {
        const float rescale = none ? 1.0f : __expf(old_max - new_max);
        row_rescale[r] = rescale;
        row_sum[r] = row_sum[r] * rescale + sum;
        row_max[r] = new_max;
      }
    }
    __syncwarp();

    // P·V for this warp's rows into the (now free) score rows, then O = O·rescale + P·V.
    for (int nf = 0; nf < HeadDim / 16; ++nf) {
      wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
      wmma::fill_fragment(acc, 0.0f);
      for (int kk = 0; kk < tile_rows; kk += 16) {
        wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> a;
        wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::row_major> b;
        wmma::load_matrix_sync(a, probabilities + warp * 16 * Layout::ld_p + kk, Layout::ld_p);
        wmma::load_matrix_sync(b, v_tile + kk * Layout::ld_t + nf * 16, Layout::ld_t);
        wmma::mma_sync(acc, a, b, acc);
      }
      wmma::store_matrix_sync(scores + warp * 16 * Layout::ld_s + nf * 16, acc, Layout::ld_s, wmma::mem_row_major);
    }
    __syncwarp();
    for (int i = lane; i < 16 * HeadDim; i += 32) {
      const int r = warp * 16 + i / HeadDim, f = i % HeadDim;
      output[r * Layout::ld_o + f] = output[r * Layout::ld_o + f] * row_rescale[r] + scores[r * Layout::ld_s + f];
    }
  }
  __syncwarp();

  // Each warp writes its own rows: O / Σ, zero for padded queries (and rows that saw no key).
  for (int i = lane; i < 16 * HeadDim; i += 32) {
    const int r = warp * 16 + i / HeadDim, f = i % HeadDim;
    const index_t t = queries.begin + r;
    if (t >= queries.end) continue;
    const float sum = row_sum[r];
    context[t * keys.stride + column + f] = from_float<T>(sum > 0 ? output[r * Layout::ld_o + f] / sum : 0.0f);
  }
  if (row_max_logit != nullptr && lane < 16) {  // the largest pre-softmax logit of each row (LS heads)
    const int r = warp * 16 + lane;
    const index_t t = queries.begin + r;
    if (t < queries.end) row_max_logit[t * gridDim.y + blockIdx.y] = row_max[r];
  }
#endif
}

// The same visibility for every head (the Transformer-LS window).
template <class Visibility>
struct SameVisibility {
  Visibility visibility;
  LSATTN_HOST_DEVICE constexpr Visibility at(index_t) const { return visibility; }
};

// An empty kernel whose attributes tell which code the runtime loaded for this device: the
// tiled kernel needs code compiled for sm_80 or newer (a compute_75 PTX build JIT-compiled on an
// sm_90 device would reach its __trap()).
template <int = 0>
__global__ void arch_probe() {}

// Whether the current device can run the tiled kernel, and how much shared memory it may take.
// Asked once per device and process (three runtime queries); no device: no tiled kernel, and
// the launch that follows reports the error.
struct TiledSupport {
  bool capable = false;
  std::size_t shared_optin = 0;  // bytes of dynamic shared memory a block may opt into

  static TiledSupport current() {
    int device = 0;
    if (cudaGetDevice(&device) != cudaSuccess) return {};
    static std::mutex mutex;
    static std::map<int, TiledSupport> known;
    const std::lock_guard<std::mutex> lock(mutex);
    const auto found = known.find(device);
    return found != known.end() ? found->second : known.emplace(device, query(device)).first->second;
  }

 private:
  static TiledSupport query(int device) {
    int major = 0, optin = 0;
    cudaFuncAttributes probe{};
    if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) != cudaSuccess ||
        cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device) != cudaSuccess ||
        cudaFuncGetAttributes(&probe, arch_probe<>) != cudaSuccess) {
      // A failed query (no kernel image for this device, say) leaves its error for the next
      // cudaGetLastError(): clear it, or the caller's next launch check would report it.
      (void)cudaGetLastError();
      return {};
    }
    const bool sm80_code = probe.ptxVersion >= 80 && probe.binaryVersion >= 80;
    return {major >= 8 && sm80_code, static_cast<std::size_t>(optin)};
  }
};

// Tests set this to false to run the one-block-per-query kernels on the same inputs.
inline bool& tiled_kernel_enabled() {
  static bool enabled = true;
  return enabled;
}

// Which tiled kernel runs: the register-tiled mma.sync kernel (true, the default) or the WMMA
// kernel it replaced, kept as the reference the tests compare it with.
inline bool& mma_kernel_enabled() {
  static bool enabled = true;
  return enabled;
}

template <class T>
inline constexpr bool tensor_core_type = std::is_same_v<T, __half> || std::is_same_v<T, __nv_bfloat16>;

// Whether the tiled kernel takes this call: 16-bit T, head_dim 16/32/64/128, a device (and
// code) of sm_80 or newer with the shared memory, 16-byte aligned rows.
template <class T>
bool tiled_applies(index_t head_dim, const void* query, index_t stride) {
  if constexpr (!tensor_core_type<T>) {
    return false;
  } else {
    if (!tiled_kernel_enabled()) return false;
    if (head_dim != 16 && head_dim != 32 && head_dim != 64 && head_dim != 128) return false;
    if (reinterpret_cast<std::uintptr_t>(query) % 16 != 0 || (stride * sizeof(T)) % 16 != 0) return false;
    const TiledSupport support = TiledSupport::current();
    const std::size_t bytes = head_dim == 128 ? TileLayout<T, 128>::bytes : TileLayout<T, 64>::bytes;
    return support.capable && bytes <= support.shared_optin;
  }
}

template <class T, int HeadDim, class Visibilities>
void launch_tiled_for(const T* query, const TiledKeys<T>& keys, const T* mask, index_t length, Visibilities visibilities,
                      QueryTiling tiling, index_t heads, float scale, T* context, float* row_max_logit,
                      cudaStream_t stream, index_t items, const BatchStrides& batch) {
  // The mma kernel stores O two elements at a time: the context rows must be 4-byte aligned.
  const bool mma = mma_kernel_enabled() && reinterpret_cast<std::uintptr_t>(context) % 4 == 0;
  auto* kernel = mma ? &mma_attention<T, HeadDim, Visibilities> : &tiled_attention<T, HeadDim, Visibilities>;
  const std::size_t bytes = mma ? MmaLayout<T, HeadDim>::bytes : TileLayout<T, HeadDim>::bytes;
  check(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)),
        "cudaFuncSetAttribute");
  const index_t tiles = tiling.count();
  if (tiles == 0) return;
  require(heads <= 65535, "heads: the tiled CUDA kernels take at most 65535 heads (grid y), got ", heads);
  constexpr index_t max_grid_z = 65535;
  for (index_t first = 0; first < items; first += max_grid_z) {  // batch items in grid z, 65535 a launch
    const index_t count = std::min(max_grid_z, items - first);
    const T* first_query = query;
    TiledKeys<T> first_keys = keys;
    const T* first_mask = mask;
    T* first_context = context;
    float* first_row_max = row_max_logit;
    select_batch_item(first, batch, first_query, first_keys, first_mask, first_context, first_row_max);
    kernel<<<dim3(static_cast<unsigned>(tiles), static_cast<unsigned>(heads), static_cast<unsigned>(count)), tile_threads,
             bytes, stream>>>(first_query, first_keys, first_mask, length, visibilities, tiling, scale, first_context,
                              first_row_max, batch);
    check(cudaGetLastError(), "kernel launch");
  }
}

// Launches the tiled kernel for head_dim 16, 32, 64 or 128 (tiled_applies() said yes), on
// `items` batch items `batch` apart (one item: the strides are not used).
template <class T, class Visibilities>
void launch_tiled(index_t head_dim, const T* query, const TiledKeys<T>& keys, const T* mask, index_t length,
                  Visibilities visibilities, QueryTiling tiling, index_t heads, float scale, T* context,
                  float* row_max_logit, cudaStream_t stream, index_t items = 1, const BatchStrides& batch = {}) {
  if constexpr (tensor_core_type<T>) {
    auto launch = [&](auto head_size) {
      launch_tiled_for<T, decltype(head_size)::value>(query, keys, mask, length, visibilities, tiling, heads, scale,
                                                      context, row_max_logit, stream, items, batch);
    };
    for_tile_head_dim(head_dim, "tiled CUDA kernel", launch);
  } else {
    throw error(detail::concat("lsattn: internal: the tiled CUDA kernel takes 16-bit types only, head_dim ", head_dim));
  }
}

}  // namespace lsattn::cuda_detail
