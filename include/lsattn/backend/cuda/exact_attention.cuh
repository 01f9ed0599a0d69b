#pragma once
// Exact softmax attention on CUDA with a per-head visibility policy (LS-attention heads, full
// attention): the tiled tensor-core kernel where it applies, else one block per (query, head,
// batch item) with an online softmax over key chunks (any head_dim, any length, float included).
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "lsattn/backend/cuda/kernels.cuh"
#include "lsattn/backend/cuda/runtime.cuh"
#include "lsattn/backend/cuda/tiled_attention.cuh"

namespace lsattn::cuda_detail {

// One block of 128 threads per (query t, head): block_attention_row over the keys it sees.
template <class T, class Visibilities>
__global__ void exact_attention_rows(const T* query, const T* key, const T* value, const T* mask, index_t length,
                                     index_t head_dim, index_t width, Visibilities visibilities, float scale,
                                     T* context, float* row_max_logit, BatchStrides batch) {
  {  // this block's batch item (grid z)
    TiledKeys<T> keys{key, value, nullptr, nullptr, 0, width};
    select_batch_item(static_cast<index_t>(blockIdx.z), batch, query, keys, mask, context, row_max_logit);
    key = keys.key;
    value = keys.value;
  }
  extern __shared__ float row_memory[];
  __shared__ float scratch[32];
  const index_t t = blockIdx.x, h = blockIdx.y, column = h * head_dim;
  const IndexRange seen = valid_token(mask, t) ? visibilities.at(h).row_keys(t, length) : IndexRange{};
  const T* q = query + t * width + column;
  auto score = [&](index_t i) {
    const index_t s = seen.begin + i;
    if (!valid_token(mask, s)) return __int_as_float(0xff800000);
    float dot = 0;
    for (index_t f = 0; f < head_dim; ++f) dot += to_float(q[f]) * scale * to_float(key[s * width + column + f]);
    return dot;
  };
  auto row_value = [&](index_t i, index_t f) { return to_float(value[(seen.begin + i) * width + column + f]); };
  const float largest = block_attention_row(seen.size(), head_dim, score, row_value, row_memory, scratch);
  for (index_t f = threadIdx.x; f < head_dim; f += blockDim.x) context[t * width + column + f] = from_float<T>(row_memory[f]);
  if (row_max_logit != nullptr && threadIdx.x == 0) row_max_logit[t * gridDim.y + h] = largest;
}

// context (L × nh·dh rows `width` apart) = softmax(q kᵀ/√dh + visibility) v per head, for
// `items` batch items of L rows each, stored one after the other (all in one launch: batch ×
// heads × query tiles in the grid); padded queries (mask 0) and queries that see no key get
// zeros. row_max_logit (optional, items × L × heads floats) receives each row's largest visible
// scaled score. Enqueues on `stream` only.
template <class T, class Visibilities>
void exact_attention(const T* query, const T* key, const T* value, const T* mask, index_t length, index_t heads,
                     index_t head_dim, Visibilities visibilities, T* context, float* row_max_logit, cudaStream_t stream,
                     index_t items = 1) {
  if (length == 0 || items == 0) return;
  const index_t width = heads * head_dim;
  const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
  const BatchStrides batch{length * width, length, length * heads, length * width, 0};
  if (tiled_applies<T>(head_dim, query, width) && reinterpret_cast<std::uintptr_t>(key) % 16 == 0 &&
      reinterpret_cast<std::uintptr_t>(value) % 16 == 0) {
    if constexpr (tensor_core_type<T>) {
      const TiledKeys<T> keys{key, value, nullptr, nullptr, 0, width};
      launch_tiled(head_dim, query, keys, mask, length, visibilities, QueryTiling{length}, heads, scale, context,
                   row_max_logit, stream, items, batch);
      return;
    }
  }
  constexpr int threads = 128;
  // Dynamic: the accumulator and one chunk's probabilities; static: 32 floats of reduction scratch.
  const std::size_t shared = attention_row_shared_bytes(head_dim, threads);
  constexpr index_t max_head_dim = (48 * 1024) / 4 - threads - 32;
  require(head_dim <= max_head_dim, "head_dim: the CUDA attention kernel handles at most ", max_head_dim, ", got ",
          head_dim);
  require(heads <= 65535, "heads: the CUDA attention kernel takes at most 65535 heads (grid y), got ", heads);
  constexpr index_t max_grid_z = 65535;
  for (index_t first = 0; first < items; first += max_grid_z) {
    const index_t count = std::min(max_grid_z, items - first);
    const T* first_query = query;
    TiledKeys<T> first_keys{key, value, nullptr, nullptr, 0, width};
    const T* first_mask = mask;
    T* first_context = context;
    float* first_row_max = row_max_logit;
    select_batch_item(first, batch, first_query, first_keys, first_mask, first_context, first_row_max);
    exact_attention_rows<<<dim3(static_cast<unsigned>(length), static_cast<unsigned>(heads), static_cast<unsigned>(count)),
                           threads, shared, stream>>>(first_query, first_keys.key, first_keys.value, first_mask, length,
                                                      head_dim, width, visibilities, scale, first_context,
                                                      first_row_max, batch);
    check(cudaGetLastError(), "kernel launch");
  }
}

}  // namespace lsattn::cuda_detail
