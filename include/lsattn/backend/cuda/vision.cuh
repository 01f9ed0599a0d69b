#pragma once
// CUDA executor of the 2D attention of ViL-LS (spec §3.3) on projected inputs
// (VisionAttentionInputs). The caller's stream, the caller's workspace, no synchronisation.
#include <cuda_runtime.h>

#include <cmath>
#include <type_traits>

#include "lsattn/attention.hpp"
#include "lsattn/backend/cuda/kernels.cuh"
#include "lsattn/backend/cuda/runtime.cuh"

namespace lsattn::detail {

template <>
struct Executor<cuda, Window2D, SequenceProjection> {
  // Float scratch: LN'd k and v of all N tokens, the projection statistics, the compressed k, v.
  template <class T>
  static std::size_t workspace_bytes(const AttentionConfig& config, const VisionAttentionInputs<T, device_space>& in) {
    const index_t width = config.width(), tokens = in.query.extent(1);
    return sizeof(float) * static_cast<std::size_t>(2 * tokens * width + 2 * config.heads * config.rank + 2 * config.rank * width);
  }

  template <class T, class Combiner>
  static void run(const AttentionConfig& config, const VisionAttentionInputs<T, device_space>& in,
                  const typename Combiner::template Params<T, device_space>& norm, const DeviceView<T, 3>& context,
                  cudaStream_t stream, DeviceWorkspace workspace) {
    static_assert(std::is_same_v<T, float> || std::is_same_v<T, __half> || std::is_same_v<T, __nv_bfloat16>,
                  "lsattn: the CUDA backend takes float, __half or __nv_bfloat16");
    using namespace cuda_detail;
    const Window2D window = Window2D::from(config);
    const index_t batch = in.query.extent(0), tokens = in.query.extent(1), width = config.width();
    const index_t heads = config.heads, head_dim = config.head_dim, rank = config.rank;
    const index_t globals = in.global_tokens, patches = in.rows * in.cols;
    const index_t scores_per_query = rank + window.tile() * window.tile() + globals;
    require_launchable(workspace, workspace_bytes(config, in), scores_per_query, head_dim, "r + T² + nglo");
    const std::size_t shared = sizeof(float) * static_cast<std::size_t>(scores_per_query);

    float* key = static_cast<float*>(workspace.data);
    float* value = key + tokens * width;
    float* column_max = value + tokens * width;
    float* column_sum = column_max + heads * rank;
    float* compressed_key = column_sum + heads * rank;
    float* compressed_value = compressed_key + rank * width;
    const auto ln = norm_pointers<Combiner, T>(norm);
    const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
    const T* no_mask = nullptr;
    for (index_t b = 0; b < batch; ++b) {
      const index_t offset = b * tokens * width;
      layer_norm_rows<<<tokens, block_threads, 0, stream>>>(in.key.data() + offset, key, width, ln.local_weight, ln.local_bias,
                                                            ln.local_eps);
      layer_norm_rows<<<tokens, block_threads, 0, stream>>>(in.value.data() + offset, value, width, ln.local_weight,
                                                            ln.local_bias, ln.local_eps);
      if (rank > 0) {
        const T* logits = in.projection_logits.data() + b * patches * heads * rank;
        projection_statistics<<<heads * rank, block_threads, 0, stream>>>(logits, no_mask, patches, heads * rank,
                                                                           column_max, column_sum);
        compress_sequence<<<heads * rank, 128, 0, stream>>>(logits, no_mask, key + globals * width, value + globals * width,
                                                            column_max, column_sum, patches, rank, head_dim, width, 0,
                                                            compressed_key, compressed_value);
        layer_norm_rows<<<rank, block_threads, 0, stream>>>(compressed_key, compressed_key, width, ln.global_weight,
                                                            ln.global_bias, ln.global_eps);
        layer_norm_rows<<<rank, block_threads, 0, stream>>>(compressed_value, compressed_value, width, ln.global_weight,
                                                            ln.global_bias, ln.global_eps);
      }
      T* out = context.data() + offset;
      vision_attention<<<dim3(static_cast<unsigned>(patches), static_cast<unsigned>(heads)), 128, shared, stream>>>(
          in.query.data() + offset, key, value, compressed_key, compressed_value,
          in.position_bias.empty() ? nullptr : in.position_bias.data(), globals, in.rows, in.cols, rank, head_dim, width,
          window, scale, out);
      if (globals > 0) {
        global_update<<<dim3(static_cast<unsigned>(globals), static_cast<unsigned>(heads)), block_threads,
                        attention_row_shared_bytes(head_dim, block_threads), stream>>>(
            in.query.data() + offset, key, value, globals, patches, head_dim, width, scale, out);
      }
      check(cudaGetLastError(), "kernel launch");
    }
  }
};

}  // namespace lsattn::detail
