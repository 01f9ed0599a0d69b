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
  // per chunk of 256 tokens 2·nh·r more), for the tensor-core compression its partial sums
  // (2·⌈L/256⌉·nh·r₁₆·dh), and per batch item the global keys and values ((r + cls) × D each); then
  // in T the normalised K and V of every item (B × L × D each), which the attention kernels read.
  // The statistics and partial sums are reused by the items in stream order; the rest is per item,
  // so that one launch of the tiled kernel serves the whole batch (batch items in grid z).
  template <class T>
  static std::size_t workspace_bytes(const AttentionConfig& config, const AttentionInputs<T, device_space>& in) {
    cuda_detail::WorkspaceCursor sizing;
    carve<T>(sizing, config, in.query.extent(0), in.query.extent(1), in.has_cls());
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
    if (batch == 0 || length == 0) return;
    constexpr index_t max_grid_x = 2147483647;  // the LayerNorm launches take one block per row of every item
    require(batch * length <= max_grid_x, "batch x length: the CUDA bidirectional attention takes at most ", max_grid_x,
            " rows in one call, got ", batch, " x ", length);

    WorkspaceCursor cursor(workspace.data);
    const Scratch<T> scratch = carve<T>(cursor, config, batch, length, has_cls);
    const index_t item_rows = length * width, item_globals = global_count * width;
    const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
    const auto ln = norm_pointers<Combiner, T>(norm);
    const T* no_norm = nullptr;
    auto mask_of = [&](index_t b) -> const T* { return in.mask.empty() ? nullptr : in.mask.data() + b * length; };

    // The local LayerNorm of every item's K and V, one launch each.
    layer_norm_rows<<<static_cast<unsigned>(batch * length), block_threads, 0, stream>>>(
        in.key.data(), scratch.key, width, ln.local_weight, ln.local_bias, ln.local_eps);
    layer_norm_rows<<<static_cast<unsigned>(batch * length), block_threads, 0, stream>>>(
        in.value.data(), scratch.value, width, ln.local_weight, ln.local_bias, ln.local_eps);
    // Each item's global rows: the compressed keys and values after the cls row.
    for (index_t b = 0; b < batch; ++b) {
      const T *key = scratch.key + b * item_rows, *value = scratch.value + b * item_rows, *mask = mask_of(b);
      float *global_key = scratch.global_key + b * item_globals, *global_value = scratch.global_value + b * item_globals;
      if (rank > 0) {
        const T* logits = in.projection_logits.data() + b * length * heads * rank;
        launch_chunked_statistics(logits, mask, length, heads * rank, scratch.statistics, scratch.column_max,
                                  scratch.column_sum, stream);
        if (tiled && scratch.partials != nullptr) {
          launch_tiled_compression(head_dim, logits, mask, key, value, scratch.column_max, scratch.column_sum, length,
                                   heads, rank, width, scratch.partials, has_cls ? 1 : 0, global_key, global_value,
                                   stream);
        } else {
          compress_sequence<<<heads * rank, 128, 0, stream>>>(logits, mask, key, value, scratch.column_max,
                                                              scratch.column_sum, length, rank, head_dim, width,
                                                              has_cls ? 1 : 0, global_key, global_value);
        }
      }
      if (has_cls) {  // the raw cls key/value become global row 0 (no local LN)
        layer_norm_rows<<<1, block_threads, 0, stream>>>(in.cls_key.data() + b * width, global_key, width, no_norm,
                                                         no_norm, 0.0f);
        layer_norm_rows<<<1, block_threads, 0, stream>>>(in.cls_value.data() + b * width, global_value, width, no_norm,
                                                         no_norm, 0.0f);
      }
    }
    if (global_count > 0) {  // the global LayerNorm of every item's global rows, one launch each
      const auto rows = static_cast<unsigned>(batch * global_count);
      layer_norm_rows<<<rows, block_threads, 0, stream>>>(scratch.global_key, scratch.global_key, width,
                                                          ln.global_weight, ln.global_bias, ln.global_eps);
      layer_norm_rows<<<rows, block_threads, 0, stream>>>(scratch.global_value, scratch.global_value, width,
                                                          ln.global_weight, ln.global_bias, ln.global_eps);
    }
    T* token_context = context.data() + (has_cls ? width : 0);  // item 0's first token row
    if (tiled) {  // every item in one launch
      const TiledKeys<T> keys{scratch.key, scratch.value, scratch.global_key, scratch.global_value, global_count, width};
      const BatchStrides strides{item_rows, length, 0, out_rows * width, item_globals};
      launch_tiled(head_dim, in.query.data(), keys, mask_of(0), length, SameVisibility<SegmentVisibility>{{window}},
                   QueryTiling{length}, heads, scale, token_context, static_cast<float*>(nullptr), stream, batch,
                   strides);
    } else {
      for (index_t b = 0; b < batch; ++b) {
        bidirectional_attention<<<dim3(static_cast<unsigned>(length), static_cast<unsigned>(heads)), 128, shared,
                                  stream>>>(in.query.data() + b * item_rows, scratch.key + b * item_rows,
                                            scratch.value + b * item_rows, scratch.global_key + b * item_globals,
                                            scratch.global_value + b * item_globals, mask_of(b), length, head_dim,
                                            width, global_count, window, scale, token_context + b * out_rows * width);
      }
    }
    if (has_cls) {
      for (index_t b = 0; b < batch; ++b) {
        cls_update<<<heads, block_threads, attention_row_shared_bytes(head_dim, block_threads), stream>>>(
            in.cls_query.data() + b * width, in.cls_key.data() + b * width, in.cls_value.data() + b * width,
            token_context + b * out_rows * width, mask_of(b), length, head_dim, width, scale,
            context.data() + b * out_rows * width);
      }
    }
    check(cudaGetLastError(), "kernel launch");
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
  static Scratch<T> carve(cuda_detail::WorkspaceCursor& cursor, const AttentionConfig& config, index_t batch,
                          index_t length, bool has_cls) {
    const index_t width = config.width(), globals = config.rank + (has_cls ? 1 : 0);
    const bool tiled_compression = cuda_detail::tiled_compression_shape<T>(config.head_dim, config.rank);
    Scratch<T> scratch{};
    scratch.column_max = cursor.take<float>(config.heads * config.rank);
    scratch.column_sum = cursor.take<float>(config.heads * config.rank);
    scratch.global_key = cursor.take<float>(checked_product({{"batch", batch}, {"rank + cls", globals}, {"width", width}}));
    scratch.global_value = cursor.take<float>(checked_product({{"batch", batch}, {"rank + cls", globals}, {"width", width}}));
    scratch.statistics = cursor.take<float>(2 * ((length + cuda_detail::statistics_chunk - 1) / cuda_detail::statistics_chunk) *
                                            config.heads * config.rank);
    scratch.partials = tiled_compression ? cursor.take<float>(cuda_detail::compression_partials(
                                               length, config.heads, config.head_dim, config.rank))
                                         : nullptr;
    scratch.key = cursor.take<T>(checked_product({{"batch", batch}, {"length", length}, {"width", width}}));
    scratch.value = cursor.take<T>(checked_product({{"batch", batch}, {"length", length}, {"width", width}}));
    return scratch;
  }
};

}  // namespace lsattn::detail
