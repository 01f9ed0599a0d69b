#pragma once
// CUDA executor of the 2D attention of ViL-LS (spec §3.3) on projected inputs
// (VisionAttentionInputs). The caller's stream, the caller's workspace, no synchronisation.
// 16-bit types on sm_80+ run the tensor-core kernel (mma_vision.cuh) for every batch item at
// once; otherwise the one-block-per-query kernel, item by item.
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <type_traits>

#include "lsattn/attention.hpp"
#include "lsattn/backend/cuda/kernels.cuh"
#include "lsattn/backend/cuda/mma_vision.cuh"
#include "lsattn/backend/cuda/tiled_attention.cuh"
#include "lsattn/backend/cuda/runtime.cuh"

namespace lsattn::detail {

template <>
struct Executor<cuda, Window2D, SequenceProjection> {
  // Scratch of the one-block-per-query kernel, in fp32: LN'd k and v of all N tokens of one item,
  // the projection statistics, the compressed k, v. The tensor-core kernel (16-bit T) adds to the
  // statistics and the fp32 compressed rows the LN'd k, v of every item in T (2·B·N·D) and every
  // item's LN'd compressed rows in T (2·B·r·D). A 16-bit workspace holds the larger of the two.
  template <class T>
  static std::size_t workspace_bytes(const AttentionConfig& config, const VisionAttentionInputs<T, device_space>& in) {
    const index_t width = config.width(), tokens = in.query.extent(1), batch = in.query.extent(0);
    const index_t shared_floats = checked_sum({{"statistics", checked_product({{"heads", config.heads}, {"rank", config.rank}, {"2", 2}})},
                                               {"compressed rows", checked_product({{"rank", config.rank}, {"width", width}, {"2", 2}})}});
    const index_t per_query_floats =
        checked_sum({{"tokens", checked_product({{"tokens", tokens}, {"width", width}, {"2", 2}})}, {"rest", shared_floats}});
    const std::size_t per_query = sizeof(float) * static_cast<std::size_t>(per_query_floats);
    if constexpr (!cuda_detail::tensor_core_type<T>) {
      return per_query;
    } else {
      cuda_detail::WorkspaceCursor sizing;
      carve_tiled<T>(sizing, config, batch, tokens);
      return sizing.bytes() > per_query ? sizing.bytes() : per_query;
    }
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
    const auto ln = norm_pointers<Combiner, T>(norm);
    const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
    if (tiled_vision_applies(config, in, context)) {
      require_launchable(workspace, workspace_bytes(config, in), 0, head_dim, "r + T² + nglo");
      run_tiled(config, in, ln, context, stream, workspace, scale);
      return;
    }
    require_launchable(workspace, workspace_bytes(config, in), scores_per_query, head_dim, "r + T² + nglo");
    const std::size_t shared = sizeof(float) * static_cast<std::size_t>(scores_per_query);

    float* key = static_cast<float*>(workspace.data);
    float* value = key + tokens * width;
    float* column_max = value + tokens * width;
    float* column_sum = column_max + heads * rank;
    float* compressed_key = column_sum + heads * rank;
    float* compressed_value = compressed_key + rank * width;
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

  // The tensor-core kernel takes 16-bit T, head_dim 16/32/64/128 on sm_80+ (tiled_applies), a
  // window (w ≥ 1), at most 65535 items (grid z) and a 4-byte aligned context.
  template <class T>
  static bool tiled_vision_applies(const AttentionConfig& config, const VisionAttentionInputs<T, device_space>& in,
                                   const DeviceView<T, 3>& context) {
    using namespace cuda_detail;
    if constexpr (!tensor_core_type<T>) {
      return false;
    } else {
      if (!mma_kernel_enabled() || !Window2D::from(config).enabled() || in.query.extent(0) > 65535 ||
          config.heads > 65535)
        return false;
      if (reinterpret_cast<std::uintptr_t>(context.data()) % 4 != 0) return false;
      if (!tiled_applies<T>(config.head_dim, in.query.data(), config.width())) return false;
      const std::size_t bytes = config.head_dim == 128 ? VisionMmaLayout<T, 128>::bytes : VisionMmaLayout<T, 64>::bytes;
      return bytes <= TiledSupport::current().shared_optin;
    }
  }

 private:
  template <class T>
  struct TiledScratch {
    float *column_max, *column_sum, *compressed_key, *compressed_value;  // one item at a time
    T *key, *value, *compressed_key_t, *compressed_value_t;              // every item
  };
  template <class T>
  static TiledScratch<T> carve_tiled(cuda_detail::WorkspaceCursor& cursor, const AttentionConfig& config, index_t batch,
                                     index_t tokens) {
    const index_t width = config.width(), rank = config.rank;
    TiledScratch<T> scratch{};
    scratch.column_max = cursor.take<float>(config.heads * rank);
    scratch.column_sum = cursor.take<float>(config.heads * rank);
    scratch.compressed_key = cursor.take<float>(rank * width);
    scratch.compressed_value = cursor.take<float>(rank * width);
    const index_t rows = checked_product({{"batch", batch}, {"tokens", tokens}, {"width", width}});
    scratch.key = cursor.take<T>(rows);
    scratch.value = cursor.take<T>(rows);
    scratch.compressed_key_t = cursor.take<T>(checked_product({{"batch", batch}, {"rank", rank}, {"width", width}}));
    scratch.compressed_value_t = cursor.take<T>(batch * rank * width);
    return scratch;
  }

  template <class T, class Norm>
  static void run_tiled(const AttentionConfig& config, const VisionAttentionInputs<T, device_space>& in, const Norm& ln,
                        const DeviceView<T, 3>& context, cudaStream_t stream, DeviceWorkspace workspace, float scale) {
    using namespace cuda_detail;
    if constexpr (tensor_core_type<T>) {
      const index_t batch = in.query.extent(0), tokens = in.query.extent(1), width = config.width();
      const index_t heads = config.heads, head_dim = config.head_dim, rank = config.rank;
      const index_t globals = in.global_tokens, patches = in.rows * in.cols;
      WorkspaceCursor cursor(workspace.data);
      const TiledScratch<T> scratch = carve_tiled<T>(cursor, config, batch, tokens);
      constexpr index_t max_grid_x = 2147483647;
      require(batch * tokens <= max_grid_x, "batch x tokens: the CUDA 2D attention normalises at most ", max_grid_x,
              " rows in one call, got ", batch, " x ", tokens);
      // The local LN of every item's tokens, one launch each for k and v.
      layer_norm_rows<<<static_cast<unsigned>(batch * tokens), block_threads, 0, stream>>>(
          in.key.data(), scratch.key, width, ln.local_weight, ln.local_bias, ln.local_eps);
      layer_norm_rows<<<static_cast<unsigned>(batch * tokens), block_threads, 0, stream>>>(
          in.value.data(), scratch.value, width, ln.local_weight, ln.local_bias, ln.local_eps);
      const T* no_mask = nullptr;
      for (index_t b = 0; b < batch && rank > 0; ++b) {  // each item's compressed rows, then their global LN into T
        const T* key = scratch.key + b * tokens * width;
        const T* value = scratch.value + b * tokens * width;
        const T* logits = in.projection_logits.data() + b * patches * heads * rank;
        projection_statistics<<<heads * rank, block_threads, 0, stream>>>(logits, no_mask, patches, heads * rank,
                                                                           scratch.column_max, scratch.column_sum);
        compress_sequence<<<heads * rank, 128, 0, stream>>>(logits, no_mask, key + globals * width, value + globals * width,
                                                            scratch.column_max, scratch.column_sum, patches, rank,
                                                            head_dim, width, 0, scratch.compressed_key,
                                                            scratch.compressed_value);
        layer_norm_rows<<<rank, block_threads, 0, stream>>>(scratch.compressed_key, scratch.compressed_key_t + b * rank * width,
                                                            width, ln.global_weight, ln.global_bias, ln.global_eps);
        layer_norm_rows<<<rank, block_threads, 0, stream>>>(scratch.compressed_value,
                                                            scratch.compressed_value_t + b * rank * width, width,
                                                            ln.global_weight, ln.global_bias, ln.global_eps);
      }
      VisionTileArgs<T> args{};
      args.query = in.query.data();
      args.key = scratch.key;
      args.value = scratch.value;
      args.compressed_key = scratch.compressed_key_t;
      args.compressed_value = scratch.compressed_value_t;
      args.position_bias = in.position_bias.empty() ? nullptr : in.position_bias.data();
      args.context = context.data();
      args.width = width;
      args.token_stride = tokens * width;
      args.compressed_stride = rank * width;
      args.tiles = VisionTiles{in.rows, in.cols, globals, rank, Window2D::from(config)};
      args.scale = scale;
      launch_mma_vision(head_dim, heads, batch, args, stream);
      for (index_t b = 0; b < batch && globals > 0; ++b) {
        const index_t offset = b * tokens * width;
        global_update<<<dim3(static_cast<unsigned>(globals), static_cast<unsigned>(heads)), block_threads,
                        attention_row_shared_bytes(head_dim, block_threads), stream>>>(
            in.query.data() + offset, scratch.key + offset, scratch.value + offset, globals, patches, head_dim, width,
            scale, context.data() + offset);
      }
      check(cudaGetLastError(), "kernel launch");
    }
  }
};

}  // namespace lsattn::detail
