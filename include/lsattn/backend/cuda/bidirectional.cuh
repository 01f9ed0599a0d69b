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
#include "lsattn/backend/cuda/tiled_compression.cuh"

namespace lsattn::detail {

template <>
struct Executor<cuda, BidirectionalWindow, SequenceProjection> {
  // Scratch per call, each part 256-byte aligned: in fp32 the projection statistics (2·nh·r, and
  // per chunk of 256 tokens 2·nh·r more), the global keys and values ((r + cls) × D each) and,
  // for the tensor-core compression, its
  // partial sums (2·⌈L/256⌉·nh·r₁₆·dh); then in T the normalised K and V (L × D each), which the
  // attention kernels read. Batch items reuse it in stream order.
  template <class T>
  static std::size_t workspace_bytes(const AttentionConfig& config, const AttentionInputs<T, device_space>& in) {
    cuda_detail::WorkspaceCursor sizing;
    carve<T>(sizing, config, in.query.extent(1), in.has_cls());
    return sizing.bytes();
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

    WorkspaceCursor cursor(workspace.data);
    const Scratch<T> scratch = carve<T>(cursor, config, length, has_cls);
    float *column_max = scratch.column_max, *column_sum = scratch.column_sum;
    float *global_key = scratch.global_key, *global_value = scratch.global_value;
    T *key = scratch.key, *value = scratch.value;
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
        launch_chunked_statistics(logits, mask, length, heads * rank, scratch.statistics, column_max, column_sum, stream);
        if (tiled && scratch.partials != nullptr) {
          launch_tiled_compression(head_dim, logits, mask, key, value, column_max, column_sum, length, heads, rank, width,
                                   scratch.partials, has_cls ? 1 : 0, global_key, global_value, stream);
        } else {
          compress_sequence<<<heads * rank, 128, 0, stream>>>(logits, mask, key, value, column_max, column_sum, length,
                                                              rank, head_dim, width, has_cls ? 1 : 0, global_key,
                                                              global_value);
        }
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
  template <class T>
  struct Scratch {
    float *column_max, *column_sum, *global_key, *global_value;
    float* statistics;  // the chunks' (max, Σ exp) of every logit column
    float* partials;    // null unless the shape takes the tensor-core compression
    T *key, *value;
  };
  template <class T>
  static Scratch<T> carve(cuda_detail::WorkspaceCursor& cursor, const AttentionConfig& config, index_t length,
                          bool has_cls) {
    const index_t width = config.width(), globals = config.rank + (has_cls ? 1 : 0);
    const bool tiled_compression = cuda_detail::tiled_compression_shape<T>(config.head_dim, config.rank);
    Scratch<T> scratch{};
    scratch.column_max = cursor.take<float>(config.heads * config.rank);
    scratch.column_sum = cursor.take<float>(config.heads * config.rank);
    scratch.global_key = cursor.take<float>(globals * width);
    scratch.global_value = cursor.take<float>(globals * width);
    scratch.statistics = cursor.take<float>(2 * ((length + cuda_detail::statistics_chunk - 1) / cuda_detail::statistics_chunk) *
                                            config.heads * config.rank);
    scratch.partials = tiled_compression ? cursor.take<float>(cuda_detail::compression_partials(
                                               length, config.heads, config.head_dim, config.rank))
                                         : nullptr;
    scratch.key = cursor.take<T>(length * width);
    scratch.value = cursor.take<T>(length * width);
    return scratch;
  }
};

}  // namespace lsattn::detail
