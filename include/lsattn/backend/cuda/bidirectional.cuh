#pragma once
// CUDA executor of the bidirectional Transformer-LS attention (spec §1.3). Launches on the
// caller's stream, never synchronises, and takes its scratch memory from the caller's workspace.
#include <cuda_runtime.h>

#include <cmath>
#include <type_traits>

#include "lsattn/attention.hpp"
#include "lsattn/backend/cuda/kernels.cuh"
#include "lsattn/backend/cuda/runtime.cuh"
#include "lsattn/backend/cuda/tiled_attention.cuh"

namespace lsattn::detail {

template <>
struct Executor<cuda, BidirectionalWindow, SequenceProjection> {
  // Scratch per call: in fp32 the projection statistics (2·nh·r) and the global keys and values
  // ((r + cls) × D each); then, 16-byte aligned, the normalised K and V in T (L × D each), which
  // the attention kernels read. Batch items reuse it in stream order.
  template <class T>
  static std::size_t workspace_bytes(const AttentionConfig& config, const AttentionInputs<T, device_space>& in) {
    const index_t width = config.width(), length = in.query.extent(1), globals = config.rank + (in.has_cls() ? 1 : 0);
    return float_bytes(config, globals) + sizeof(T) * static_cast<std::size_t>(2 * length * width);
  }

  template <class T, class Combiner>
  static void run(const AttentionConfig& config, const AttentionInputs<T, device_space>& in,
                  const typename Combiner::template Params<T, device_space>& norm, const DeviceView<T, 3>& context,
                  cudaStream_t stream, DeviceWorkspace workspace) {
    static_assert(std::is_same_v<T, float> || std::is_same_v<T, __half> || std::is_same_v<T, __nv_bfloat16>,
                  "lsattn: the CUDA backend takes float, __half or __nv_bfloat16");
    using namespace cuda_detail;
    const index_t batch = in.query.extent(0), length = in.query.extent(1), width = config.width();
    const index_t heads = config.heads, head_dim = config.head_dim, rank = config.rank;
    const bool has_cls = in.has_cls();
    const index_t global_count = rank + (has_cls ? 1 : 0), out_rows = length + (has_cls ? 1 : 0);
    const BidirectionalWindow window = config.window_size <= 0 && rank == 0 && has_cls ? BidirectionalWindow::self_only()
                                                                                          : BidirectionalWindow::from(config);
    const bool tiled = tiled_applies<T>(head_dim, in.query.data(), width);
    const index_t window_keys = window.enabled() ? window.span() : 0;
    // The one-block-per-query fallback keeps all of a query's scores in shared memory.
    require_launchable(workspace, workspace_bytes(config, in), tiled ? 0 : global_count + window_keys, head_dim,
                       "rank + window keys");
    const std::size_t shared = sizeof(float) * static_cast<std::size_t>(global_count + window_keys);

    float* column_max = static_cast<float*>(workspace.data);
    float* column_sum = column_max + heads * rank;
    float* global_key = column_sum + heads * rank;
    float* global_value = global_key + global_count * width;
    T* key = reinterpret_cast<T*>(static_cast<unsigned char*>(workspace.data) + float_bytes(config, global_count));
    T* value = key + length * width;
    const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
    const auto ln = norm_pointers<Combiner, T>(norm);
    const T* no_norm = nullptr;

    for (index_t b = 0; b < batch; ++b) {
      const index_t offset = b * length * width;
      const T* mask = in.mask.empty() ? nullptr : in.mask.data() + b * length;
      layer_norm_rows<<<length, block_threads, 0, stream>>>(in.key.data() + offset, key, width, ln.local_weight,
                                                            ln.local_bias, ln.local_eps);
      layer_norm_rows<<<length, block_threads, 0, stream>>>(in.value.data() + offset, value, width, ln.local_weight,
                                                            ln.local_bias, ln.local_eps);
      if (rank > 0) {
        const T* logits = in.projection_logits.data() + b * length * heads * rank;
        projection_statistics<<<heads * rank, block_threads, 0, stream>>>(logits, mask, length, heads * rank,
                                                                           column_max, column_sum);
        compress_sequence<<<heads * rank, 128, 0, stream>>>(logits, mask, key, value, column_max, column_sum, length,
                                                            rank, head_dim, width, has_cls ? 1 : 0, global_key,
                                                            global_value);
      }
      if (has_cls) {  // the raw cls key/value become global row 0 (no local LN)
        layer_norm_rows<<<1, block_threads, 0, stream>>>(in.cls_key.data() + b * width, global_key, width, no_norm,
                                                         no_norm, 0.0f);
        layer_norm_rows<<<1, block_threads, 0, stream>>>(in.cls_value.data() + b * width, global_value, width, no_norm,
                                                         no_norm, 0.0f);
      }
      if (global_count > 0) {
        layer_norm_rows<<<global_count, block_threads, 0, stream>>>(global_key, global_key, width, ln.global_weight,
                                                                    ln.global_bias, ln.global_eps);
        layer_norm_rows<<<global_count, block_threads, 0, stream>>>(global_value, global_value, width, ln.global_weight,
                                                                    ln.global_bias, ln.global_eps);
      }
      T* token_context = context.data() + (b * out_rows + (has_cls ? 1 : 0)) * width;
      if (tiled) {
        const TiledKeys<T> keys{key, value, global_key, global_value, global_count, width};
        launch_tiled(head_dim, in.query.data() + offset, keys, mask, length,
                     SameVisibility<SegmentVisibility>{{window}}, QueryTiling{length}, heads, scale,
                     token_context, static_cast<float*>(nullptr), stream);
      } else {
        bidirectional_attention<<<dim3(static_cast<unsigned>(length), static_cast<unsigned>(heads)), 128, shared,
                                  stream>>>(in.query.data() + offset, key, value, global_key, global_value, mask, length,
                                            head_dim, width, global_count, window, scale, token_context);
      }
      if (has_cls) {
        cls_update<<<heads, block_threads, attention_row_shared_bytes(head_dim, block_threads), stream>>>(in.cls_query.data() + b * width, in.cls_key.data() + b * width,
                                                        in.cls_value.data() + b * width, token_context, mask, length,
                                                        head_dim, width, scale, context.data() + b * out_rows * width);
      }
      check(cudaGetLastError(), "kernel launch");
    }
  }

 private:
  // The fp32 part of the workspace, rounded up to 16 bytes so the T part after it is aligned.
  static std::size_t float_bytes(const AttentionConfig& config, index_t globals) {
    const std::size_t bytes =
        sizeof(float) * static_cast<std::size_t>(2 * config.heads * config.rank + 2 * globals * config.width());
    return (bytes + 15) / 16 * 16;
  }
};

}  // namespace lsattn::detail
