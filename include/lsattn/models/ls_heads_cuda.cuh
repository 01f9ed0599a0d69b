#pragma once
// The LS-attention layer (local and global heads) on the CUDA backend: weights uploaded once,
// W_q/W_k/W_v/W_o through cuBLAS, the exact attention of every head (tiled tensor-core kernel for
// 16-bit types), all enqueued on the caller's stream with scratch from the caller's workspace.
#include <cuda_runtime.h>

#include <cstdint>

#include "lsattn/backend/cuda/exact_attention.cuh"
#include "lsattn/backend/cuda/linear.cuh"
#include "lsattn/backend/cuda/parameters.cuh"
#include "lsattn/core/checks.hpp"
#include "lsattn/cuda.cuh"
#include "lsattn/models/ls_heads_config.hpp"
#include "lsattn/models/parameter_checks.hpp"

namespace lsattn::models::ls_heads {

// Every head's visibility as one kernel argument (bit h of local_heads: head h is local).
struct HeadVisibilities {
  std::uint64_t local_heads = 0;
  SlidingVisibility sliding;
  FullVisibility full;
  LSATTN_HOST_DEVICE constexpr HeadVisibility at(index_t head) const {
    return {((local_heads >> head) & 1u) != 0, sliding, full};
  }
};

namespace cuda_detail_ls {

// One block per head: out[h] = max over the rows of row_max (rows × heads).
__global__ void reduce_max_logits(const float* row_max, index_t rows, index_t heads, float* out) {
  __shared__ float scratch[32];
  float top = __int_as_float(0xff800000);  // −inf: a head that saw no key reports −inf, as on the CPU
  for (index_t t = threadIdx.x; t < rows; t += blockDim.x) top = fmaxf(top, row_max[t * heads + blockIdx.x]);
  top = lsattn::cuda_detail::block_reduce<true>(top, scratch);
  if (threadIdx.x == 0) out[blockIdx.x] = top;
}

}  // namespace cuda_detail_ls

template <class T>
class LsHeadsAttention<cuda, T> {
 public:
  LsHeadsAttention(const Config& config, Weights<float> weights) : config_((config.validate(),
                detail::require_fp32_precision(config.precision, "ls_heads::LsHeadsAttention<cuda>"), config)) {
    require(config_.num_heads <= 64, "num_heads: the CUDA backend handles at most 64 heads, got ", config_.num_heads);
    detail::require_valid_parameters(weights, config_);
    parameters_ = cuda_detail::DeviceParameters<T>(std::move(weights), config_);
    for (index_t head : config_.local_heads) visibilities_.local_heads |= std::uint64_t{1} << head;
    visibilities_.sliding = {config_.window, config_.causal};
    visibilities_.full = {config_.causal};
  }

  const Config& config() const { return config_; }

  // Scratch for one call (q, k, v, the context in T; per-row max logits), from shapes only.
  static std::size_t workspace_bytes(const Config& config, index_t batch, index_t length) {
    cuda_detail::WorkspaceCursor sizing;
    carve(sizing, config, batch, length);
    return sizing.bytes();
  }
  std::size_t workspace_bytes(index_t batch, index_t length) const { return workspace_bytes(config_, batch, length); }

  // x (B, L, dim), mask (B, L) 1 = valid, 0 = padding, or empty → y (B, L, dim); padded query rows
  // give W_o.bias. max_logits (optional, device, num_heads floats) receives per head the largest
  // pre-softmax logit q·k/√dh over all visible keys of the batch (−inf if none).
  void forward(DeviceView<const T, 3> x, DeviceView<const T, 2> mask, DeviceView<T, 3> y, const CublasHandle& handle,
               cudaStream_t stream, DeviceWorkspace workspace, DeviceView<float, 1> max_logits = {}) const {
    const index_t d = config_.dim, heads = config_.num_heads;
    require(x.extent(0) >= 1 && x.extent(1) >= 1 && x.extent(2) == d, "x: expected shape (B >= 1, L >= 1, dim = ", d,
            "), got ", to_string(x.shape()));
    const index_t batch = x.extent(0), length = x.extent(1), rows = batch * length;
    if (!mask.empty()) detail::require_shape(mask, "mask", Shape<2>{batch, length});
    detail::require_shape(y, "y", x.shape());
    if (!max_logits.empty()) detail::require_shape(max_logits, "max_logits", Shape<1>{heads});
    cuda_detail::require_workspace(workspace, workspace_bytes(batch, length));

    cuda_detail::WorkspaceCursor cursor(workspace.data);
    const Buffers buffers = carve(cursor, config_, batch, length);
    auto linear = [&](const T* input, const char* weight, const char* bias, T* out) {
      cuda_detail::linear(handle, stream, input, rows, d, parameters_[weight], parameters_[bias], d, out);
    };
    linear(x.data(), "W_q.weight", "W_q.bias", buffers.q);
    linear(x.data(), "W_k.weight", "W_k.bias", buffers.k);
    linear(x.data(), "W_v.weight", "W_v.bias", buffers.v);
    // Every batch item in one launch (batch × heads × query tiles).
    cuda_detail::exact_attention(buffers.q, buffers.k, buffers.v, mask.empty() ? nullptr : mask.data(), length, heads,
                                 config_.head_dim(), visibilities_, buffers.context,
                                 max_logits.empty() ? nullptr : buffers.row_max, stream, batch);
    if (!max_logits.empty()) {
      cuda_detail_ls::reduce_max_logits<<<static_cast<unsigned>(heads), cuda_detail::block_threads, 0, stream>>>(
          buffers.row_max, rows, heads, max_logits.data());
      cuda_detail::check(cudaGetLastError(), "kernel launch");
    }
    linear(buffers.context, "W_o.weight", "W_o.bias", y.data());
  }

 private:
  struct Buffers {
    T *q, *k, *v, *context;
    float* row_max;
  };
  static Buffers carve(cuda_detail::WorkspaceCursor& cursor, const Config& config, index_t batch, index_t length) {
    const index_t elements = batch * length * config.dim;
    Buffers buffers{};
    buffers.q = cursor.take<T>(elements);
    buffers.k = cursor.take<T>(elements);
    buffers.v = cursor.take<T>(elements);
    buffers.context = cursor.take<T>(elements);
    buffers.row_max = cursor.take<float>(batch * length * config.num_heads);
    return buffers;
  }

  Config config_;
  cuda_detail::DeviceParameters<T> parameters_;
  HeadVisibilities visibilities_;
};

}  // namespace lsattn::models::ls_heads
