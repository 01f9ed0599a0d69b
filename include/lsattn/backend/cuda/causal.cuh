#pragma once
// CUDA executor of the causal chunked attention proper (spec §2.4 steps 6–9), on projected
// inputs (CausalAttentionInputs). The caller's stream, the caller's workspace, no synchronisation.
#include <cuda_runtime.h>

#include <cmath>
#include <type_traits>

#include "lsattn/attention.hpp"
#include "lsattn/backend/cuda/kernels.cuh"
#include "lsattn/backend/cuda/runtime.cuh"

namespace lsattn::detail {

template <>
struct Executor<cuda, CausalWindow, ChunkedProjection> {
  // Float scratch: the window rows and the compressed rows after their LayerNorms, keys and values.
  template <class T>
  static std::size_t workspace_bytes(const AttentionConfig& config, const CausalAttentionInputs<T, device_space>& in) {
    return sizeof(float) * 2 * static_cast<std::size_t>((in.window_key.extent(1) + in.compressed_key.extent(1)) * config.width());
  }

  template <class T, class Combiner>
  static void run(const AttentionConfig& config, const CausalAttentionInputs<T, device_space>& in,
                  const typename Combiner::template Params<T, device_space>& norm, const DeviceView<T, 3>& context,
                  cudaStream_t stream, DeviceWorkspace workspace) {
    static_assert(std::is_same_v<T, float> || std::is_same_v<T, __half> || std::is_same_v<T, __nv_bfloat16>,
                  "lsattn: the CUDA backend takes float, __half or __nv_bfloat16");
    using namespace cuda_detail;
    const CausalWindow window = CausalWindow::from(config);
    const ChunkedProjection projection = ChunkedProjection::from(config);
    const index_t batch = in.query.extent(0), length = in.query.extent(1), width = config.width();
    const index_t window_rows = in.window_key.extent(1), compressed_rows = in.compressed_key.extent(1);
    require_launchable(workspace, workspace_bytes(config, in), compressed_rows + window.window, config.head_dim,
                       "compressed rows + window");
    const std::size_t shared = sizeof(float) * static_cast<std::size_t>(compressed_rows + window.window);

    float* key = static_cast<float*>(workspace.data);
    float* value = key + window_rows * width;
    float* compressed_key = value + window_rows * width;
    float* compressed_value = compressed_key + compressed_rows * width;
    const auto ln = norm_pointers<Combiner, T>(norm);
    const float scale = 1.0f / std::sqrt(static_cast<float>(config.head_dim));
    for (index_t b = 0; b < batch; ++b) {
      layer_norm_rows<<<window_rows, block_threads, 0, stream>>>(in.window_key.data() + b * window_rows * width, key,
                                                                 width, ln.local_weight, ln.local_bias, ln.local_eps);
      layer_norm_rows<<<window_rows, block_threads, 0, stream>>>(in.window_value.data() + b * window_rows * width, value,
                                                                 width, ln.local_weight, ln.local_bias, ln.local_eps);
      if (compressed_rows > 0) {
        layer_norm_rows<<<compressed_rows, block_threads, 0, stream>>>(
            in.compressed_key.data() + b * compressed_rows * width, compressed_key, width, ln.global_weight, ln.global_bias,
            ln.global_eps);
        layer_norm_rows<<<compressed_rows, block_threads, 0, stream>>>(
            in.compressed_value.data() + b * compressed_rows * width, compressed_value, width, ln.global_weight,
            ln.global_bias, ln.global_eps);
      }
      causal_attention<<<dim3(static_cast<unsigned>(length), static_cast<unsigned>(config.heads)), 128, shared, stream>>>(
          in.query.data() + b * length * width, key, value, compressed_key, compressed_value, in.content_bias.data(),
          in.position_bias.data(), in.window_positions.data(), in.chunk_positions.data(), in.cache_length, length,
          window_rows, compressed_rows, config.head_dim, width, window, projection, scale,
          context.data() + b * length * width);
      check(cudaGetLastError(), "kernel launch");
    }
  }
};

}  // namespace lsattn::detail
