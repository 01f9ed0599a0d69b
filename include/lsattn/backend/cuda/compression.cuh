#pragma once
// Chunk compression of the causal variant on CUDA (spec §2.4 steps 2 and 4), the rule of the CPU
// CompressChunksOp: for batch item b, chunk c, head h and rank slot j,
//   out[c·r + j][h-slice] = Σ_i softmax_i(logits[c·l + i][h·r + j]) · source[c·l + i][h-slice].
// The cache passes its raw hidden rows as `source`, the segment its projected keys/values.
// Softmax and accumulation in fp32; inputs and outputs in T.
#include <cuda_runtime.h>

#include <algorithm>
#include <cfloat>

#include "lsattn/backend/cuda/kernels.cuh"
#include "lsattn/backend/cuda/runtime.cuh"
#include "lsattn/policy/positions.hpp"

namespace lsattn::cuda_detail {

// Runtime sizes of one compression, by value to the kernel. Rows of `logits` are heads·rank
// apart, rows of `out` heads·head_dim apart; each operand has its own batch stride.
template <class T>
struct CompressChunksParams {
  const T* logits = nullptr;  // (batch, chunks·chunk, heads·rank)
  index_t logits_batch_stride = 0;
  const T* source = nullptr;  // (batch, chunks·chunk, heads·head_dim), rows source_row_stride apart
  index_t source_batch_stride = 0;
  index_t source_row_stride = 0;
  T* out = nullptr;  // (batch, chunks·rank, heads·head_dim)
  index_t out_batch_stride = 0;
  index_t batch = 0, chunks = 0, chunk = 1, heads = 1, head_dim = 1, rank = 1;
};

// One block per (batch item, chunk, head·rank column), blocks striding over them so that the
// grid stays small: the column's max and Σexp over the chunk's l logits (block reductions), then
// one thread per feature of the head's slice accumulates Σ_i p_i · source_i.
template <class T>
__global__ void compress_chunks_kernel(CompressChunksParams<T> params) {
  __shared__ float scratch[32];
  const index_t columns = params.heads * params.rank, width = params.heads * params.head_dim;
  const index_t tasks = params.batch * params.chunks * columns;
  for (index_t task = blockIdx.x; task < tasks; task += gridDim.x) {  // uniform per block: the barriers are safe
    const index_t column = task % columns, c = (task / columns) % params.chunks, b = task / columns / params.chunks;
    const index_t h = column / params.rank, j = column % params.rank, first = c * params.chunk;
    const T* logits = params.logits + b * params.logits_batch_stride + first * columns + column;  // token i: [i·columns]
    float top = -FLT_MAX;
    for (index_t i = threadIdx.x; i < params.chunk; i += blockDim.x) top = fmaxf(top, to_float(logits[i * columns]));
    top = block_reduce<true>(top, scratch);
    float total = 0;
    for (index_t i = threadIdx.x; i < params.chunk; i += blockDim.x) total += expf(to_float(logits[i * columns]) - top);
    total = block_reduce<false>(total, scratch);
    const T* source = params.source + b * params.source_batch_stride + first * params.source_row_stride + h * params.head_dim;
    T* out = params.out + b * params.out_batch_stride + (c * params.rank + j) * width + h * params.head_dim;
    for (index_t f = threadIdx.x; f < params.head_dim; f += blockDim.x) {
      float acc = 0;
      for (index_t i = 0; i < params.chunk; ++i)
        acc += expf(to_float(logits[i * columns]) - top) / total * to_float(source[i * params.source_row_stride + f]);
      out[f] = from_float<T>(acc);
    }
  }
}

template <class T>
void compress_chunks(const CompressChunksParams<T>& params, cudaStream_t stream) {
  const index_t tasks = params.batch * params.chunks * params.heads * params.rank;
  if (tasks == 0) return;  // a launch of zero blocks is an error
  const auto blocks = static_cast<unsigned>(std::min<index_t>(tasks, index_t{1} << 20));
  compress_chunks_kernel<<<blocks, 128, 0, stream>>>(params);
  check(cudaGetLastError(), "kernel launch");
}

enum class PositionTable { window, chunk };

// rows × width table of e(value(p)) for p = 0 … rows − 1, value = the policy's clamp of a
// window distance or of a compressed position; a thread per (row, frequency) pair, through the
// policy's own sinusoid_pair (float arithmetic, as the float CPU layer), rounded to T.
template <class T>
__global__ void position_sinusoids_kernel(TransformerXLPositions positions, PositionTable table, index_t rows,
                                          index_t width, T* out) {
  const index_t half = width / 2, pairs = rows * half;
  for (index_t k = static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x; k < pairs;
       k += static_cast<index_t>(gridDim.x) * blockDim.x) {
    const index_t p = k / half, i = k % half;
    const index_t value = table == PositionTable::window ? positions.window_value(p) : positions.chunk_value(p);
    TransformerXLPositions::sinusoid_pair(value, i, width, out + p * width);
  }
}

template <class T>
void position_sinusoids(const TransformerXLPositions& positions, PositionTable table, index_t rows, index_t width, T* out,
                        cudaStream_t stream) {
  const index_t pairs = rows * (width / 2);
  if (pairs == 0) return;
  const auto blocks = static_cast<unsigned>(std::min<index_t>((pairs + 255) / 256, 4096));
  position_sinusoids_kernel<<<blocks, 256, 0, stream>>>(positions, table, rows, width, out);
  check(cudaGetLastError(), "kernel launch");
}

}  // namespace lsattn::cuda_detail
