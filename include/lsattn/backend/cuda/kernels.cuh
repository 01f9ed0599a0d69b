#pragma once
// CUDA kernels of the bidirectional attention. Inputs in T (float, __half or __nv_bfloat16);
// LayerNorms, softmaxes and accumulation in float. Index rules come from the policies'
// __host__ __device__ functions, shared with the CPU backend.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cfloat>
#include <cmath>
#include <cstddef>

#include "lsattn/core/backend.hpp"
#include "lsattn/policy/projection.hpp"
#include "lsattn/policy/window.hpp"

namespace lsattn::cuda_detail {

__device__ inline float to_float(float v) { return v; }
__device__ inline float to_float(__half v) { return __half2float(v); }
__device__ inline float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }
template <class T>
__device__ inline T from_float(float v);
template <>
__device__ inline float from_float<float>(float v) { return v; }
template <>
__device__ inline __half from_float<__half>(float v) { return __float2half_rn(v); }
template <>
__device__ inline __nv_bfloat16 from_float<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }

inline constexpr int block_threads = 256;

// Block-wide reduction of one float per thread (max or sum); every thread gets the result.
template <bool Max>
__device__ float block_reduce(float value, float* scratch) {
  for (int offset = 16; offset > 0; offset /= 2) {
    const float other = __shfl_xor_sync(0xffffffffu, value, offset);
    value = Max ? fmaxf(value, other) : value + other;
  }
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, warps = (blockDim.x + 31) / 32;
  __syncthreads();
  if (lane == 0) scratch[warp] = value;
  __syncthreads();
  value = threadIdx.x < warps ? scratch[threadIdx.x] : (Max ? __int_as_float(0xff800000) : 0.0f);  // −inf, 0
  if (warp == 0) {
    for (int offset = 16; offset > 0; offset /= 2) {
      const float other = __shfl_xor_sync(0xffffffffu, value, offset);
      value = Max ? fmaxf(value, other) : value + other;
    }
    if (lane == 0) scratch[0] = value;
  }
  __syncthreads();
  return scratch[0];
}

// Turns the block's shared scores[0, total) into exp(score − max) and returns their sum (the
// joint softmax of one query, normalised by the caller when it accumulates the values).
__device__ inline float block_softmax(float* scores, index_t total, float* scratch) {
  __syncthreads();
  float top = -FLT_MAX;
  for (index_t i = threadIdx.x; i < total; i += blockDim.x) top = fmaxf(top, scores[i]);
  top = block_reduce<true>(top, scratch);
  float sum = 0;
  for (index_t i = threadIdx.x; i < total; i += blockDim.x) {
    scores[i] = __expf(scores[i] - top);
    sum += scores[i];
  }
  return block_reduce<false>(sum, scratch);
}

// One block: one query's softmax attention over keys 0 … count − 1, a chunk of blockDim.x keys
// at a time (any count). score(i) is key i's scaled score (−inf: not seen), value(i, f) its
// value. `shared` holds head_dim + blockDim.x floats (the output accumulator, one chunk's
// probabilities). On return thread x holds out[f] = Σ p·v / Σ p for its features f ≡ x
// (mod blockDim.x) in shared[f] (zeros if no key was seen); returns the largest score (−inf if none).
template <class Score, class Value>
__device__ float block_attention_row(index_t count, index_t head_dim, Score&& score, Value&& value, float* shared,
                                     float* scratch) {
  float* accumulator = shared;
  float* probabilities = shared + head_dim;
  const float minus_infinity = __int_as_float(0xff800000);
  for (index_t f = threadIdx.x; f < head_dim; f += blockDim.x) accumulator[f] = 0;
  float running_max = minus_infinity, running_sum = 0;
  for (index_t start = 0; start < count; start += blockDim.x) {
    const index_t i = start + threadIdx.x;
    const float own = i < count ? score(i) : minus_infinity;
    const float new_max = fmaxf(running_max, block_reduce<true>(own, scratch));
    const bool none = new_max == minus_infinity;
    const float p = none ? 0.0f : __expf(own - new_max);
    const float rescale = none ? 1.0f : __expf(running_max - new_max);
    probabilities[threadIdx.x] = p;
    running_sum = running_sum * rescale + block_reduce<false>(p, scratch);  // its barriers publish probabilities
    running_max = new_max;
    const index_t chunk = count - start < static_cast<index_t>(blockDim.x) ? count - start : blockDim.x;
    for (index_t f = threadIdx.x; f < head_dim; f += blockDim.x) {
      float acc = accumulator[f] * rescale;
      for (index_t j = 0; j < chunk; ++j) acc += probabilities[j] * value(start + j, f);
      accumulator[f] = acc;
    }
    __syncthreads();  // probabilities are rewritten by the next chunk
  }
  for (index_t f = threadIdx.x; f < head_dim; f += blockDim.x)
    accumulator[f] = running_sum > 0 ? accumulator[f] / running_sum : 0.0f;
  return running_max;
}

// Dynamic shared memory of a block_attention_row kernel.
inline std::size_t attention_row_shared_bytes(index_t head_dim, int threads) {
  return sizeof(float) * static_cast<std::size_t>(head_dim + threads);
}

// One block per row: out = LN(in) (weight/bias may be null: plain copy), two-pass moments in fp32.
template <class In, class Param, class Out>
__global__ void layer_norm_rows(const In* in, Out* out, index_t width, const Param* weight, const Param* bias, float eps) {
  __shared__ float scratch[32];
  const In* x = in + blockIdx.x * width;
  Out* y = out + blockIdx.x * width;
  if (weight == nullptr) {
    for (index_t f = threadIdx.x; f < width; f += blockDim.x) y[f] = from_float<Out>(to_float(x[f]));
    return;
  }
  float sum = 0;
  for (index_t f = threadIdx.x; f < width; f += blockDim.x) sum += to_float(x[f]);
  const float mean = block_reduce<false>(sum, scratch) / width;
  float squares = 0;
  for (index_t f = threadIdx.x; f < width; f += blockDim.x) {
    const float d = to_float(x[f]) - mean;
    squares += d * d;
  }
  const float inv_std = rsqrtf(block_reduce<false>(squares, scratch) / width + eps);
  for (index_t f = threadIdx.x; f < width; f += blockDim.x)
    y[f] = from_float<Out>((to_float(x[f]) - mean) * inv_std * to_float(weight[f]) + to_float(bias[f]));
}

// Masks are passed in T; 0 = padding.
template <class T>
__device__ inline bool valid_token(const T* mask, index_t t) {
  return mask == nullptr || to_float(mask[t]) != 0.0f;
}

// One block per logit column: the max and the Σ exp over the valid tokens (spec §1.3 step 4).
template <class T>
__global__ void projection_statistics(const T* logits, const T* mask, index_t length, index_t columns, float* column_max,
                                      float* column_sum) {
  __shared__ float scratch[32];
  const index_t column = blockIdx.x;
  float top = -FLT_MAX;
  for (index_t t = threadIdx.x; t < length; t += blockDim.x)
    if (valid_token(mask, t)) top = fmaxf(top, to_float(logits[t * columns + column]));
  top = block_reduce<true>(top, scratch);
  float total = 0;
  for (index_t t = threadIdx.x; t < length; t += blockDim.x)
    if (valid_token(mask, t)) total += __expf(to_float(logits[t * columns + column]) - top);
  total = block_reduce<false>(total, scratch);
  if (threadIdx.x == 0) {
    column_max[column] = top;
    column_sum[column] = total;
  }
}

// The running (max, Σ exp(x − max)) of a stream of logits, and the merge of two such summaries
// (the order of merges fixed by the caller: deterministic). __host__ __device__: the host tests
// check it against a direct sum.
struct LogitSummary {
  float top = -FLT_MAX;
  float total = 0;  // 0: no logit yet

  LSATTN_HOST_DEVICE void add(float x) {
    if (total == 0) {
      top = x;
      total = 1;
    } else if (x > top) {
      total = total * expf(top - x) + 1.0f;
      top = x;
    } else {
      total += expf(x - top);
    }
  }
  LSATTN_HOST_DEVICE void merge(const LogitSummary& other) {
    if (other.total == 0) return;
    if (total == 0) {
      *this = other;
      return;
    }
    const float joint = top > other.top ? top : other.top;
    total = total * expf(top - joint) + other.total * expf(other.top - joint);
    top = joint;
  }
};

// The same statistics as projection_statistics, read coalesced, for long sequences: one block
// per chunk of statistics_chunk tokens, one thread per column, a LogitSummary per chunk; then
// merge_statistics joins the chunks of each column in chunk order.
inline constexpr index_t statistics_chunk = 256;

template <class T>
__global__ void chunk_statistics(const T* logits, const T* mask, index_t length, index_t columns, float* partial_max,
                                 float* partial_sum) {
  const index_t chunk = blockIdx.x, first = chunk * statistics_chunk;
  const index_t last = first + statistics_chunk < length ? first + statistics_chunk : length;
  for (index_t c = threadIdx.x; c < columns; c += blockDim.x) {
    LogitSummary summary;
    for (index_t t = first; t < last; ++t)
      if (valid_token(mask, t)) summary.add(to_float(logits[t * columns + c]));
    partial_max[chunk * columns + c] = summary.top;
    partial_sum[chunk * columns + c] = summary.total;
  }
}

// One thread per column: the chunks' summaries merged in order; a column without a valid token
// gets (−FLT_MAX, 0), as from projection_statistics.
template <class T>  // T: the call's element type (only to give the kernel template linkage)
__global__ void merge_statistics(const float* partial_max, const float* partial_sum, index_t chunks, index_t columns,
                                 float* column_max, float* column_sum) {
  const index_t c = static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c >= columns) return;
  LogitSummary summary;
  for (index_t chunk = 0; chunk < chunks; ++chunk)
    summary.merge({partial_max[chunk * columns + c], partial_sum[chunk * columns + c]});
  column_max[c] = summary.top;
  column_sum[c] = summary.total;
}

// Enqueues chunk_statistics and merge_statistics; partials hold 2·⌈L/statistics_chunk⌉·columns floats.
template <class T>
void launch_chunked_statistics(const T* logits, const T* mask, index_t length, index_t columns, float* partials,
                               float* column_max, float* column_sum, cudaStream_t stream) {
  const index_t chunks = (length + statistics_chunk - 1) / statistics_chunk;
  if (chunks == 0 || columns == 0) return;
  float* partial_max = partials;
  float* partial_sum = partials + chunks * columns;
  chunk_statistics<<<static_cast<unsigned>(chunks), block_threads, 0, stream>>>(logits, mask, length, columns,
                                                                                 partial_max, partial_sum);
  merge_statistics<T><<<static_cast<unsigned>((columns + block_threads - 1) / block_threads), block_threads, 0, stream>>>(
      partial_max, partial_sum, chunks, columns, column_max, column_sum);
}

// One block per (head, landmark), one thread per feature: K̄ = Pᵀ K, V̄ = Pᵀ V into rows
// `first_row + j` of the global keys/values (float). No valid token: zeros.
template <class T, class KV>
__global__ void compress_sequence(const T* logits, const T* mask, const KV* key, const KV* value,
                                  const float* column_max, const float* column_sum, index_t length, index_t rank,
                                  index_t head_dim, index_t width, index_t first_row, float* global_key,
                                  float* global_value) {
  const index_t column = blockIdx.x, h = column / rank, j = column % rank, columns = gridDim.x;
  const float top = column_max[column], total = column_sum[column];
  for (index_t f = threadIdx.x; f < head_dim; f += blockDim.x) {
    float k = 0, v = 0;
    if (total > 0) {
      for (index_t t = 0; t < length; ++t) {
        if (!valid_token(mask, t)) continue;
        const float p = __expf(to_float(logits[t * columns + column]) - top) / total;
        k += p * to_float(key[t * width + h * head_dim + f]);
        v += p * to_float(value[t * width + h * head_dim + f]);
      }
    }
    global_key[(first_row + j) * width + h * head_dim + f] = k;
    global_value[(first_row + j) * width + h * head_dim + f] = v;
  }
}

// One block per (query t, head): one joint softmax over [global keys ‖ window keys] in shared
// memory (steps 7–10). Padded queries get a zero context. The fallback of the tiled kernel.
template <class T>
__global__ void bidirectional_attention(const T* query, const T* key, const T* value, const float* global_key,
                                        const float* global_value, const T* mask, index_t length, index_t head_dim,
                                        index_t width, index_t global_count, BidirectionalWindow window, float scale,
                                        T* context) {
  extern __shared__ float scores[];
  __shared__ float scratch[32];
  const index_t t = blockIdx.x, h = blockIdx.y, column = h * head_dim;
  T* out = context + t * width + column;
  if (!valid_token(mask, t)) {
    for (index_t f = threadIdx.x; f < head_dim; f += blockDim.x) out[f] = from_float<T>(0.0f);
    return;
  }
  const IndexRange keys = window.enabled() ? window.keys(window.block > 0 ? t / window.block : 0, length) : IndexRange{};
  const index_t total = global_count + keys.size();
  const T* q = query + t * width + column;
  for (index_t i = threadIdx.x; i < total; i += blockDim.x) {
    const bool global = i < global_count;
    const index_t s = global ? i : keys.begin + (i - global_count);
    float dot = 0;
    if (global) {
      const float* k = global_key + i * width + column;
      for (index_t f = 0; f < head_dim; ++f) dot += to_float(q[f]) * scale * k[f];
    } else {
      const T* k = key + s * width + column;
      for (index_t f = 0; f < head_dim; ++f) dot += to_float(q[f]) * scale * to_float(k[f]);
    }
    scores[i] = global || valid_token(mask, s) ? dot : __int_as_float(0xff800000);
  }
  const float sum = block_softmax(scores, total, scratch);
  for (index_t f = threadIdx.x; f < head_dim; f += blockDim.x) {
    float acc = 0;
    for (index_t i = 0; i < total; ++i) {
      acc += scores[i] * (i < global_count ? global_value[i * width + column + f]
                                           : to_float(value[(keys.begin + i - global_count) * width + column + f]));
    }
    out[f] = from_float<T>(acc / sum);
  }
}

// One block per head: the cls query over its raw self key/value and the tokens' contexts
// (step 11). Dynamic shared memory: attention_row_shared_bytes(head_dim, blockDim.x).
template <class T>
__global__ void cls_update(const T* cls_query, const T* cls_key, const T* cls_value, const T* token_context,
                           const T* mask, index_t length, index_t head_dim, index_t width, float scale, T* cls_context) {
  extern __shared__ float row_memory[];
  __shared__ float scratch[32];
  const index_t column = blockIdx.x * head_dim;
  auto row = [&](index_t i) { return i == 0 ? cls_key + column : token_context + (i - 1) * width + column; };
  auto score = [&](index_t i) {  // key 0: the cls self term; key i: token i − 1
    if (i > 0 && !valid_token(mask, i - 1)) return __int_as_float(0xff800000);
    const T* k = row(i);
    float dot = 0;
    for (index_t f = 0; f < head_dim; ++f) dot += to_float(cls_query[column + f]) * scale * to_float(k[f]);
    return dot;
  };
  auto value = [&](index_t i, index_t f) {
    return to_float(i == 0 ? cls_value[column + f] : token_context[(i - 1) * width + column + f]);
  };
  block_attention_row(length + 1, head_dim, score, value, row_memory, scratch);
  for (index_t f = threadIdx.x; f < head_dim; f += blockDim.x) cls_context[column + f] = from_float<T>(row_memory[f]);
}

}  // namespace lsattn::cuda_detail

namespace lsattn::cuda_detail {

// One block per (segment query t, head) of the causal attention (spec §2.4 steps 6–9): the
// compressed rows visible to its stream position τ = M + t, then exactly τ − w + 1 … τ of the
// window rows (those before the start of the stream do not exist); one joint softmax.
template <class T>
__global__ void causal_attention(const T* query, const float* window_key, const float* window_value,
                                 const float* compressed_key, const float* compressed_value, const T* content_bias,
                                 const T* position_bias, const T* window_positions, const T* chunk_positions,
                                 index_t cache_length, index_t length, index_t window_rows, index_t compressed_rows,
                                 index_t head_dim, index_t width, CausalWindow window, ChunkedProjection projection,
                                 float scale, T* context) {
  extern __shared__ float scores[];
  __shared__ float scratch[32];
  const index_t t = blockIdx.x, h = blockIdx.y, column = h * head_dim;
  const index_t tau = cache_length + t, first_window_position = cache_length + length - window_rows;
  const index_t visible = projection.enabled() ? min(projection.visible_rows(tau), compressed_rows) : 0;
  const IndexRange seen = window.keys(tau);
  const index_t key_begin = max(seen.begin, first_window_position), total = visible + (tau + 1 - key_begin);
  const T* q = query + t * width + column;
  for (index_t i = threadIdx.x; i < total; i += blockDim.x) {
    float score = 0;
    if (i < visible) {  // q·k̄ + q·R_chunk[d·r − 1 − j]
      const float* k = compressed_key + i * width + column;
      const T* r = chunk_positions + projection.relative_position(tau, i) * width + column;
      for (index_t f = 0; f < head_dim; ++f) score += to_float(q[f]) * scale * (k[f] + to_float(r[f]));
    } else {  // (q + u)·k + (q + v)·R[δ]
      const index_t s = key_begin + (i - visible);
      const float* k = window_key + (s - first_window_position) * width + column;
      const T* r = window_positions + window.distance(tau, s) * width + column;
      for (index_t f = 0; f < head_dim; ++f) {
        const float qf = to_float(q[f]) * scale;
        score += (qf + to_float(content_bias[column + f])) * k[f] + (qf + to_float(position_bias[column + f])) * to_float(r[f]);
      }
    }
    scores[i] = score;
  }
  const float sum = block_softmax(scores, total, scratch);
  for (index_t f = threadIdx.x; f < head_dim; f += blockDim.x) {
    float acc = 0;
    for (index_t i = 0; i < total; ++i) {
      const float* v = i < visible ? compressed_value + i * width
                                   : window_value + (key_begin + (i - visible) - first_window_position) * width;
      acc += scores[i] * v[column + f];
    }
    context[t * width + column + f] = from_float<T>(acc / sum);
  }
}

}  // namespace lsattn::cuda_detail

namespace lsattn::cuda_detail {

// One block per (patch query, head) of the 2D attention (spec §3.3 steps 5–8): the r compressed
// keys, the query block's key tile inside the grid (+ the RPE bias), the global tokens; one
// joint softmax. key/value are the LN'd rows of all tokens (globals first).
template <class T>
__global__ void vision_attention(const T* query, const float* key, const float* value, const float* compressed_key,
                                 const float* compressed_value, const T* position_bias, index_t globals, index_t rows,
                                 index_t cols, index_t rank, index_t head_dim, index_t width, Window2D window, float scale,
                                 T* context) {
  extern __shared__ float scores[];
  __shared__ float scratch[32];
  const index_t patch = blockIdx.x, h = blockIdx.y, column = h * head_dim;
  const index_t y = patch / cols, x = patch % cols, gy = window.block_of(y), gx = window.block_of(x);
  const IndexRange key_rows = window.keys(gy, rows), key_cols = window.keys(gx, cols);
  const index_t tile_count = key_rows.size() * key_cols.size(), total = rank + tile_count + globals, tile = window.tile();
  const T* q = query + (globals + patch) * width + column;
  auto key_of = [&](index_t i) -> const float* {  // compressed, tile (row-major in the tile), global
    if (i < rank) return compressed_key + i * width;
    if (i < rank + tile_count) {
      const index_t j = i - rank;
      return key + (globals + (key_rows.begin + j / key_cols.size()) * cols + key_cols.begin + j % key_cols.size()) * width;
    }
    return key + (i - rank - tile_count) * width;
  };
  for (index_t i = threadIdx.x; i < total; i += blockDim.x) {
    const float* k = key_of(i) + column;
    float score = 0;
    for (index_t f = 0; f < head_dim; ++f) score += to_float(q[f]) * scale * k[f];
    if (position_bias != nullptr && i >= rank && i < rank + tile_count) {
      const index_t j = i - rank, ky = key_rows.begin + j / key_cols.size(), kx = key_cols.begin + j % key_cols.size();
      const index_t query_offset = (y - gy * window.block) * window.block + (x - gx * window.block);
      const index_t key_offset = window.tile_offset(gy, ky) * tile + window.tile_offset(gx, kx);
      score += to_float(position_bias[(h * window.block * window.block + query_offset) * tile * tile + key_offset]);
    }
    scores[i] = score;
  }
  const float sum = block_softmax(scores, total, scratch);
  for (index_t f = threadIdx.x; f < head_dim; f += blockDim.x) {
    float acc = 0;
    for (index_t i = 0; i < total; ++i) {
      // The value row of key i: the same row as its key, in the value buffers.
      const float* k = key_of(i);
      const float* v = i < rank ? compressed_value + i * width : value + (k - key);
      acc += scores[i] * v[column + f];
    }
    context[(globals + patch) * width + column + f] = from_float<T>(acc / sum);
  }
}

// One block per (global token g, head): over all global keys and the patches' outputs (step 9).
// Blocks write global rows only and read patch rows only. Keys and values in fp32 or in T. Dynamic shared memory:
// attention_row_shared_bytes(head_dim, blockDim.x).
template <class T, class KV>
__global__ void global_update(const T* query, const KV* key, const KV* value, index_t globals, index_t patches,
                              index_t head_dim, index_t width, float scale, T* context) {
  extern __shared__ float row_memory[];
  __shared__ float scratch[32];
  const index_t g = blockIdx.x, column = blockIdx.y * head_dim;
  const T* q = query + g * width + column;
  auto score = [&](index_t i) {  // i < globals: global key i; else the output of patch row i
    float dot = 0;
    for (index_t f = 0; f < head_dim; ++f) {
      const float k = i < globals ? to_float(key[i * width + column + f]) : to_float(context[i * width + column + f]);
      dot += to_float(q[f]) * scale * k;
    }
    return dot;
  };
  auto row_value = [&](index_t i, index_t f) {
    return i < globals ? to_float(value[i * width + column + f]) : to_float(context[i * width + column + f]);
  };
  block_attention_row(globals + patches, head_dim, score, row_value, row_memory, scratch);
  for (index_t f = threadIdx.x; f < head_dim; f += blockDim.x) context[g * width + column + f] = from_float<T>(row_memory[f]);
}

}  // namespace lsattn::cuda_detail
