#pragma once
// CUDA executor of the causal chunked attention proper (spec §2.4 steps 6–9), on projected
// inputs (CausalAttentionInputs). The caller's stream, the caller's workspace, no synchronisation.
// 16-bit types on sm_80+ run the tensor-core kernel (mma_causal.cuh) for every batch item at once;
// otherwise the one-block-per-query kernel, item by item.
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <type_traits>

#include "lsattn/attention.hpp"
#include "lsattn/backend/cuda/kernels.cuh"
#include "lsattn/backend/cuda/mma_causal.cuh"
#include "lsattn/backend/cuda/tiled_attention.cuh"
#include "lsattn/backend/cuda/runtime.cuh"

namespace lsattn::detail {

template <>
struct Executor<cuda, CausalWindow, ChunkedProjection> {
  // Scratch: the window rows and the compressed rows after their LayerNorms, keys and values.
  // The tensor-core kernel (16-bit T) reads them in T for every batch item at once
  // (2·B·(W + L + C·r)·D elements); the one-block-per-query kernel in fp32, item by item
  // (2·(W + L + C·r)·D floats). A 16-bit workspace holds the larger of the two.
  template <class T>
  static std::size_t workspace_bytes(const AttentionConfig& config, const CausalAttentionInputs<T, device_space>& in) {
    const index_t rows = checked_sum({{"window rows", in.window_key.extent(1)}, {"compressed rows", in.compressed_key.extent(1)}});
    const index_t per_item = checked_product({{"rows", rows}, {"width", config.width()}, {"keys and values", 2}});
    const auto per_query = sizeof(float) * static_cast<std::size_t>(per_item);
    if constexpr (!cuda_detail::tensor_core_type<T>) {
      return per_query;
    } else {  // 4 buffers of 256-byte-aligned starts
      const index_t elements = checked_product({{"batch", in.query.extent(0)}, {"rows", per_item}});
      const std::size_t tiled = sizeof(T) * static_cast<std::size_t>(elements) + 4 * 256;
      return tiled > per_query ? tiled : per_query;
    }
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
    const auto ln = norm_pointers<Combiner, T>(norm);
    const float scale = 1.0f / std::sqrt(static_cast<float>(config.head_dim));
    if (tiled_causal_applies(config, in, context)) {
      require_launchable(workspace, workspace_bytes(config, in), 0, config.head_dim, "compressed rows + window");
      run_tiled(config, in, ln, context, stream, workspace, scale);
      return;
    }
    require_launchable(workspace, workspace_bytes(config, in), compressed_rows + window.window, config.head_dim,
                       "compressed rows + window");
    const std::size_t shared = sizeof(float) * static_cast<std::size_t>(compressed_rows + window.window);

    float* key = static_cast<float*>(workspace.data);
    float* value = key + window_rows * width;
    float* compressed_key = value + window_rows * width;
    float* compressed_value = compressed_key + compressed_rows * width;
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

  // Whether the tensor-core kernel takes calls of this configuration and batch on the current
  // device, the pointers' alignment aside: 16-bit T, head_dim 16/32/64/128, sm_80+ with the
  // shared memory, at most 65535 items (grid z), a chunk rank whose positions fit its staging
  // (causal_tiles_fit). The layers ask this before applying the per-query kernel's limits.
  template <class T>
  static bool tiled_configuration(const AttentionConfig& config, index_t batch) {
    using namespace cuda_detail;
    if constexpr (!tensor_core_type<T>) {
      return false;
    } else {
      const index_t head_dim = config.head_dim;
      if (!mma_kernel_enabled() || !tiled_kernel_enabled() || batch > 65535 || config.heads > 65535) return false;
      if (!causal_tiles_fit(ChunkedProjection::from(config))) return false;
      if (head_dim != 16 && head_dim != 32 && head_dim != 64 && head_dim != 128) return false;
      const TiledSupport support = TiledSupport::current();
      const std::size_t bytes = head_dim == 128 ? CausalMmaLayout<T, 128>::bytes : CausalMmaLayout<T, 64>::bytes;
      return support.capable && bytes <= support.shared_optin;
    }
  }

  // ... and with these pointers: 16-byte aligned query rows and tables, a 4-byte aligned context.
  template <class T>
  static bool tiled_causal_applies(const AttentionConfig& config, const CausalAttentionInputs<T, device_space>& in,
                                   const DeviceView<T, 3>& context) {
    auto aligned = [](const void* pointer, std::uintptr_t bytes) { return reinterpret_cast<std::uintptr_t>(pointer) % bytes == 0; };
    return tiled_configuration<T>(config, in.query.extent(0)) && aligned(in.query.data(), 16) &&
           (config.width() * sizeof(T)) % 16 == 0 && aligned(in.window_positions.data(), 16) &&
           aligned(in.chunk_positions.data(), 16) && aligned(context.data(), 4);
  }

 private:
  template <class T, class Norm>
  static void run_tiled(const AttentionConfig& config, const CausalAttentionInputs<T, device_space>& in, const Norm& ln,
                        const DeviceView<T, 3>& context, cudaStream_t stream, DeviceWorkspace workspace, float scale) {
    using namespace cuda_detail;
    if constexpr (tensor_core_type<T>) {
      const index_t batch = in.query.extent(0), length = in.query.extent(1), width = config.width();
      const index_t window_rows = in.window_key.extent(1), compressed_rows = in.compressed_key.extent(1);
      WorkspaceCursor cursor(workspace.data);
      T* key = cursor.take<T>(batch * window_rows * width);
      T* value = cursor.take<T>(batch * window_rows * width);
      T* compressed_key = cursor.take<T>(batch * compressed_rows * width);
      T* compressed_value = cursor.take<T>(batch * compressed_rows * width);
      // Every item's rows in one launch each (the rows of all items are contiguous).
      auto normalise = [&](const T* from, T* to, index_t rows, const T* weight, const T* bias, float eps) {
        if (rows == 0) return;
        constexpr index_t max_grid_x = 2147483647;
        require(rows <= max_grid_x, "batch x rows: the CUDA causal attention normalises at most ", max_grid_x,
                " rows in one call, got ", rows);
        layer_norm_rows<<<static_cast<unsigned>(rows), block_threads, 0, stream>>>(from, to, width, weight, bias, eps);
      };
      normalise(in.window_key.data(), key, batch * window_rows, ln.local_weight, ln.local_bias, ln.local_eps);
      normalise(in.window_value.data(), value, batch * window_rows, ln.local_weight, ln.local_bias, ln.local_eps);
      normalise(in.compressed_key.data(), compressed_key, batch * compressed_rows, ln.global_weight, ln.global_bias,
                ln.global_eps);
      normalise(in.compressed_value.data(), compressed_value, batch * compressed_rows, ln.global_weight,
                ln.global_bias, ln.global_eps);
      CausalTileArgs<T> args{};
      args.query = in.query.data();
      args.window_key = key;
      args.window_value = value;
      args.compressed_key = compressed_key;
      args.compressed_value = compressed_value;
      args.content_bias = in.content_bias.data();
      args.position_bias = in.position_bias.data();
      args.window_positions = in.window_positions.data();
      args.chunk_positions = in.chunk_positions.data();
      args.context = context.data();
      args.width = width;
      args.query_stride = length * width;
      args.window_stride = window_rows * width;
      args.compressed_stride = compressed_rows * width;
      args.tiles = CausalTiles{in.cache_length, length, window_rows, compressed_rows, CausalWindow::from(config),
                               ChunkedProjection::from(config)};
      args.scale = scale;
      launch_mma_causal(config.head_dim, config.heads, batch, args, stream);
    }
  }
};

}  // namespace lsattn::detail
