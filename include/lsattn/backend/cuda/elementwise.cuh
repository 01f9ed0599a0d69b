#pragma once
// Element-wise kernels of the CUDA models (the GPT, the character LM): residual additions,
// activations, embeddings and the log-softmax, all computed in fp32 whatever the storage type.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "lsattn/backend/cuda/kernels.cuh"
#include "lsattn/backend/cuda/runtime.cuh"

namespace lsattn::cuda_detail {

// A grid-stride launch size for `count` elements (at most 4096 blocks of 256).
inline unsigned elementwise_blocks(index_t count) {
  return static_cast<unsigned>(std::clamp<index_t>((count + 255) / 256, 1, 4096));
}

// x += y (x and y any of float, __half, __nv_bfloat16).
template <class X, class Y>
__global__ void add_into(X* x, const Y* y, index_t count) {
  for (index_t i = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<index_t>(gridDim.x) * blockDim.x)
    x[i] = from_float<X>(to_float(x[i]) + to_float(y[i]));
}

// In place: GELU in its exact erf form (nn.GELU(), gelu = true) or ReLU.
template <class T>
__global__ void activation(T* h, index_t count, bool gelu) {
  for (index_t i = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<index_t>(gridDim.x) * blockDim.x) {
    const float v = to_float(h[i]);
    h[i] = from_float<T>(gelu ? 0.5f * v * (1.0f + erff(v * 0.70710678118654752f)) : fmaxf(v, 0.0f));
  }
}

// Row r of out = table[ids[r]] · scale (+ positions[r % period] when given), one block per row.
template <class T, class Out>
__global__ void embed_rows(const std::int64_t* ids, const T* table, const T* positions, index_t period, index_t width,
                           float scale, Out* out) {
  const index_t row = blockIdx.x;
  const T* source = table + ids[row] * width;
  const T* position = positions != nullptr ? positions + (row % period) * width : nullptr;
  for (index_t f = threadIdx.x; f < width; f += blockDim.x)
    out[row * width + f] =
        from_float<Out>(to_float(source[f]) * scale + (position != nullptr ? to_float(position[f]) : 0.0f));
}

// out[b, t, :] = log_softmax(logits[b, t, :]) for t < length of `padded` rows per item, one
// block per output row.
template <class T>
__global__ void log_softmax_rows(const T* logits, index_t length, index_t padded, index_t vocab, float* out) {
  __shared__ float scratch[32];
  const index_t b = blockIdx.x / length, t = blockIdx.x % length;
  const T* row = logits + (b * padded + t) * vocab;
  float* target = out + blockIdx.x * vocab;
  float top = __int_as_float(0xff800000);
  for (index_t v = threadIdx.x; v < vocab; v += blockDim.x) top = fmaxf(top, to_float(row[v]));
  top = block_reduce<true>(top, scratch);
  float total = 0;
  for (index_t v = threadIdx.x; v < vocab; v += blockDim.x) total += expf(to_float(row[v]) - top);
  const float log_total = logf(block_reduce<false>(total, scratch));
  for (index_t v = threadIdx.x; v < vocab; v += blockDim.x) target[v] = to_float(row[v]) - top - log_total;
}

}  // namespace lsattn::cuda_detail
