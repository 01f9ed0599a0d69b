#pragma once
// The causal chunked layer (models::causal::ChunkedLSAttention, spec §2) on the CUDA backend:
// weights uploaded once and converted to T, the window position table r_net(e(δ)) computed once
// at construction, projections through cuBLAS, the chunk compression and the attention as CUDA
// kernels, all on the caller's stream with scratch from the caller's workspace.
#include <cuda_runtime.h>

#include <algorithm>
#include <climits>
#include <cstddef>
#include <cstdint>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "lsattn/backend/cuda/compression.cuh"
#include "lsattn/backend/cuda/linear.cuh"
#include "lsattn/backend/cuda/parameters.cuh"
#include "lsattn/cuda.cuh"
#include "lsattn/models/causal.hpp"

namespace lsattn::models::causal {

template <class T>
class ChunkedLSAttention<cuda, T> {
 public:
  using Attention = LongShortAttention<cuda, T, CausalWindow, ChunkedProjection, DualLayerNorm>;

  ChunkedLSAttention(const Config& config, Weights<float> weights)
      : config_((config.validate(),
                detail::require_fp32_precision(config.precision, "causal::ChunkedLSAttention<cuda>"), config)), attention_(config.attention()) {
    require_valid_weights(config_, weights);
    parameters_ = cuda_detail::DeviceParameters<T>(std::move(weights), config_);
    // Row δ = r_net(e(clamp(δ))) depends on the weights only (step 6): computed once, here.
    const index_t d = config_.d_model, w = config_.window_len;
    DeviceTensor<T, 2> sinusoids(Shape<2>{w, d});
    window_positions_ = DeviceTensor<T, 2>(Shape<2>{w, d});
    cuda_detail::position_sinusoids(positions(), cuda_detail::PositionTable::window, w, d, sinusoids.view().data(),
                                    cudaStream_t{});
    const CublasHandle handle;
    cuda_detail::linear(handle, cudaStream_t{}, sinusoids.view().data(), w, d, parameter("r_net.weight"),
                        static_cast<const T*>(nullptr), d, window_positions_.view().data());
    cuda_detail::check(cudaStreamSynchronize(cudaStream_t{}), "cudaStreamSynchronize");
  }

  const Config& config() const { return config_; }

  // Scratch for one call with h (batch, length, D) and a cache of `cache` rows, from the shapes
  // only: T buffers (each 256-byte aligned) for q, the window rows and their k/v, the compressed
  // rows, the cache's logits/summaries/their k/v, the segment's logits, the chunk position
  // table, the context; then the attention's float scratch. Linear in length and cache.
  std::size_t workspace_bytes(index_t batch, index_t length, index_t cache) const {
    return workspace_bytes(config_, batch, length, cache);
  }
  static std::size_t workspace_bytes(const Config& config, index_t batch, index_t length, index_t cache) {
    config.validate();
    cuda_detail::WorkspaceCursor sizing;
    carve(sizing, config, Sizes::of(config, batch, length, cache));
    return sizing.bytes() + cuda_detail::workspace_alignment;  // room to align an unaligned start
  }

  // The host-side checks forward() makes before any launch, callable without a device; empty
  // when the call is valid, else the message forward() throws.
  static std::string validate(const Config& config, DeviceView<const T, 3> h, DeviceView<const T, 3> h_cache,
                              DeviceView<T, 3> y, DeviceWorkspace workspace) {
    try {
      check_arguments(config, h, h_cache, y, workspace);
    } catch (const error& e) {
      return e.what();
    }
    return {};
  }

  // h (B, L, D) the segment, h_cache (B, M, D) the memory (empty or M = 0: no cache) → y (B, L, D).
  // Only enqueues work on `stream`: no synchronisation, no allocation. y may alias h or h_cache
  // (it is written last).
  void forward(DeviceView<const T, 3> h, DeviceView<const T, 3> h_cache, DeviceView<T, 3> y, const CublasHandle& handle,
               cudaStream_t stream, DeviceWorkspace workspace) const {
    check_arguments(config_, h, h_cache, y, workspace);
    const Sizes s = Sizes::of(config_, h.extent(0), h.extent(1), cache_length(h_cache));
    const index_t d = config_.d_model, r = config_.chunk_rank, columns = config_.n_head * r;
    const std::size_t alignment = cuda_detail::workspace_alignment;
    const auto start = reinterpret_cast<std::uintptr_t>(workspace.data);
    cuda_detail::WorkspaceCursor cursor(reinterpret_cast<void*>((start + alignment - 1) / alignment * alignment));
    const Buffers buffers = carve(cursor, config_, s);
    T *query = buffers.query, *window_key = buffers.window_key, *window_value = buffers.window_value;
    T *compressed_key = buffers.compressed_key, *compressed_value = buffers.compressed_value;
    T *chunk_sinusoids = buffers.chunk_sinusoids, *chunk_positions = buffers.chunk_positions, *context = buffers.context;
    // Without a cache the window rows are the segment itself: no gather.
    const T* window_input = s.cache_window > 0 ? buffers.window_input : h.data();

    const CausalAttentionInputs<T, device_space> inputs{
        {query, Shape<3>{s.batch, s.length, d}},
        {window_key, Shape<3>{s.batch, s.window_rows, d}},
        {window_value, Shape<3>{s.batch, s.window_rows, d}},
        {compressed_key, Shape<3>{s.batch, s.compressed_rows, d}},
        {compressed_value, Shape<3>{s.batch, s.compressed_rows, d}},
        s.cache,
        {parameter("r_w_bias"), Shape<1>{d}},
        {parameter("r_r_bias"), Shape<1>{d}},
        window_positions_.view(),
        {chunk_positions, Shape<2>{s.compressed_rows, d}}};
    const Shape<1> features{d};
    const typename Attention::CombinerParams norm{
        {{parameter("dual_ln_win.weight"), features}, {parameter("dual_ln_win.bias"), features}, 1e-5},
        {{parameter("dual_ln_dproj.weight"), features}, {parameter("dual_ln_dproj.bias"), features}, 1e-5}};
    const DeviceView<T, 3> context_view(context, y.shape());
    // The attention's own checks too, so that nothing is enqueued when any fails.
    const std::string problem = attention_.validate(inputs, norm, context_view);
    require(problem.empty(), problem);

    auto linear = [&](const T* x, index_t rows, const char* weight, const char* bias, index_t outputs, T* out) {
      cuda_detail::linear(handle, stream, x, rows, d, parameter(weight), parameter(bias), outputs, out);
    };
    // Copies `height` blocks of `count` elements, `from_pitch` and `to_pitch` elements apart: one
    // 2D copy, or one copy per block where a pitch exceeds what a 2D copy takes (2³¹ − 1 bytes).
    auto copy_blocks = [&](const T* from, index_t from_pitch, T* to, index_t to_pitch, index_t count, index_t height) {
      if (count == 0 || height == 0) return;
      if (std::max(from_pitch, to_pitch) * static_cast<index_t>(sizeof(T)) <= INT_MAX) {
        cuda_detail::check(cudaMemcpy2DAsync(to, to_pitch * sizeof(T), from, from_pitch * sizeof(T), count * sizeof(T),
                                             height, cudaMemcpyDeviceToDevice, stream),
                           "cudaMemcpy2DAsync");
        return;
      }
      for (index_t b = 0; b < height; ++b) {
        cuda_detail::check(cudaMemcpyAsync(to + b * to_pitch, from + b * from_pitch, count * sizeof(T),
                                           cudaMemcpyDeviceToDevice, stream),
                           "cudaMemcpyAsync");
      }
    };

    linear(h.data(), s.batch * s.length, "proj_query.weight", "proj_query.bias", d, query);

    // Window rows: the last min(M, w) cache rows, then the segment (step 3).
    if (s.cache_window > 0) {
      copy_blocks(h_cache.data() + (s.cache - s.cache_window) * d, s.cache * d, buffers.window_input,
                  s.window_rows * d, s.cache_window * d, s.batch);
      copy_blocks(h.data(), s.length * d, buffers.window_input + s.cache_window * d, s.window_rows * d, s.length * d,
                  s.batch);
    }
    linear(window_input, s.batch * s.window_rows, "proj_key.weight", "proj_key.bias", d, window_key);
    linear(window_input, s.batch * s.window_rows, "proj_val.weight", "proj_val.bias", d, window_value);

    // Compressed rows: cache chunks (raw slices compressed, then projected; step 2), then the
    // segment's whole chunks (projected, then compressed; step 4). A partial last chunk is its
    // queries' own chunk, invisible to all of them: not computed (as on the CPU).
    const index_t cache_rows = s.cache_chunks * r;
    cuda_detail::CompressChunksParams<T> compression{};
    compression.chunk = config_.chunk_size;
    compression.heads = config_.n_head;
    compression.head_dim = config_.head_dim();
    compression.rank = r;
    compression.batch = s.batch;
    if (s.cache_chunks > 0) {
      T* logits = buffers.cache_logits;
      T* summaries = buffers.summaries;
      linear(h_cache.data(), s.batch * s.cache, "dconv_1.weight", "dconv_1.bias", columns, logits);
      compression.logits = logits;
      compression.logits_batch_stride = s.cache * columns;
      compression.source = h_cache.data();
      compression.source_batch_stride = s.cache * d;
      compression.source_row_stride = d;
      compression.out = summaries;
      compression.out_batch_stride = cache_rows * d;
      compression.chunks = s.cache_chunks;
      cuda_detail::compress_chunks(compression, stream);
      T *cache_key = buffers.cache_key, *cache_value = buffers.cache_value;
      for (auto [weight, bias, projected, target] :
           {std::tuple{"proj_key.weight", "proj_key.bias", cache_key, compressed_key},
            std::tuple{"proj_val.weight", "proj_val.bias", cache_value, compressed_value}}) {
        linear(summaries, s.batch * cache_rows, weight, bias, d, projected);
        copy_blocks(projected, cache_rows * d, target, s.compressed_rows * d, cache_rows * d, s.batch);
      }
    }
    if (s.segment_chunks > 0) {
      T* logits = buffers.segment_logits;
      linear(h.data(), s.batch * s.length, "dconv_1.weight", "dconv_1.bias", columns, logits);
      compression.logits = logits;
      compression.logits_batch_stride = s.length * columns;
      compression.source_batch_stride = s.window_rows * d;
      compression.source_row_stride = d;
      compression.out_batch_stride = s.compressed_rows * d;
      compression.chunks = s.segment_chunks;
      for (auto [source, target] : {std::pair{window_key, compressed_key}, std::pair{window_value, compressed_value}}) {
        compression.source = source + s.cache_window * d;
        compression.out = target + cache_rows * d;
        cuda_detail::compress_chunks(compression, stream);
      }
    }

    // Chunk position table (step 7): row p = r_net_chunk(e(clamp(p))), p < (M/l + L/l)·r.
    cuda_detail::position_sinusoids(positions(), cuda_detail::PositionTable::chunk, s.compressed_rows, d, chunk_sinusoids,
                                    stream);
    linear(chunk_sinusoids, s.compressed_rows, "r_net_chunk.weight", "r_net_chunk.bias", d, chunk_positions);

    attention_(inputs, norm, context_view, stream, buffers.attention);
    linear(context, s.batch * s.length, "proj_out.weight", "proj_out.bias", d, y.data());
  }

 private:
  // A null view is no cache (M = 0), as on the CPU; a given one is (B, M, D), M = 0 included.
  static index_t cache_length(const DeviceView<const T, 3>& h_cache) { return h_cache.empty() ? 0 : h_cache.extent(1); }

  // The row counts of one call (spec §2.4 notation).
  struct Sizes {
    index_t batch = 0, length = 0, cache = 0;
    index_t cache_window = 0;     // W = min(M, w)
    index_t window_rows = 0;      // W + L
    index_t cache_chunks = 0;     // M / l
    index_t segment_chunks = 0;   // ⌊L / l⌋ (a partial last chunk is not computed)
    index_t compressed_rows = 0;  // (M/l + ⌊L/l⌋)·r

    static Sizes of(const Config& config, index_t batch, index_t length, index_t cache) {
      Sizes s;
      s.batch = batch;
      s.length = length;
      s.cache = cache;
      s.cache_window = std::min(cache, config.window_len);
      s.window_rows = s.cache_window + length;
      s.cache_chunks = cache / config.chunk_size;
      s.segment_chunks = length / config.chunk_size;
      s.compressed_rows = (s.cache_chunks + s.segment_chunks) * config.chunk_rank;
      return s;
    }
  };

  // The workspace's buffers, in one order for sizing and for use, each on a 256-byte boundary.
  struct Buffers {
    T *query, *window_input, *window_key, *window_value, *compressed_key, *compressed_value, *cache_logits,
        *summaries, *cache_key, *cache_value, *segment_logits, *chunk_sinusoids, *chunk_positions, *context;
    DeviceWorkspace attention;
  };
  static Buffers carve(cuda_detail::WorkspaceCursor& cursor, const Config& config, const Sizes& s) {
    const index_t d = config.d_model, columns = config.n_head * config.chunk_rank;
    const index_t cache_rows = s.cache_chunks * config.chunk_rank;
    Buffers buffers{};
    buffers.query = cursor.take<T>(s.batch * s.length * d);
    buffers.window_input = cursor.take<T>(s.cache_window > 0 ? s.batch * s.window_rows * d : 0);
    buffers.window_key = cursor.take<T>(s.batch * s.window_rows * d);
    buffers.window_value = cursor.take<T>(s.batch * s.window_rows * d);
    buffers.compressed_key = cursor.take<T>(s.batch * s.compressed_rows * d);
    buffers.compressed_value = cursor.take<T>(s.batch * s.compressed_rows * d);
    buffers.cache_logits = cursor.take<T>(s.cache_chunks > 0 ? s.batch * s.cache * columns : 0);
    buffers.summaries = cursor.take<T>(s.batch * cache_rows * d);
    buffers.cache_key = cursor.take<T>(s.batch * cache_rows * d);
    buffers.cache_value = cursor.take<T>(s.batch * cache_rows * d);
    buffers.segment_logits = cursor.take<T>(s.segment_chunks > 0 ? s.batch * s.length * columns : 0);
    buffers.chunk_sinusoids = cursor.take<T>(s.compressed_rows * d);
    buffers.chunk_positions = cursor.take<T>(s.compressed_rows * d);
    buffers.context = cursor.take<T>(s.batch * s.length * d);
    // The attention reads only the shapes of its inputs to size its (float) scratch.
    const Shape<3> rows{s.batch, s.window_rows, d}, compressed{s.batch, s.compressed_rows, d};
    const CausalAttentionInputs<T, device_space> shapes{{nullptr, Shape<3>{s.batch, s.length, d}},
                                                        {nullptr, rows},
                                                        {nullptr, rows},
                                                        {nullptr, compressed},
                                                        {nullptr, compressed}};
    buffers.attention = cursor.rest(Attention(config.attention()).workspace_bytes(shapes));
    return buffers;
  }

  // Same checks and messages as the CPU layer (models/causal.hpp), then the output, the
  // workspace and the CUDA kernels' limits; all on the host, before any launch.
  static void check_arguments(const Config& config, const DeviceView<const T, 3>& h, const DeviceView<const T, 3>& h_cache,
                              const DeviceView<T, 3>& y, const DeviceWorkspace& workspace) {
    config.validate();
    const index_t d = config.d_model, l = config.chunk_size;
    require(h.extent(0) >= 1, "h: batch size must be >= 1, got shape ", to_string(h.shape()));
    require(h.extent(1) >= 1, "h: segment length must be >= 1, got shape ", to_string(h.shape()));
    require(h.extent(2) == d, "h: expected feature size d_model = ", d, ", got shape ", to_string(h.shape()));
    detail::require_shape(h, "h", h.shape());  // a null pointer
    const index_t batch = h.extent(0), length = h.extent(1), cache = cache_length(h_cache);
    require(h_cache.empty() || h_cache.shape() == Shape<3>{batch, cache, d}, "h_cache: expected shape (",
            batch, ", M, ", d, "), got ", to_string(h_cache.shape()));
    require(cache % l == 0, "h_cache: its length M = ", cache, " must be a multiple of chunk_size = ", l,
            " (the cache is compressed in whole chunks)");
    detail::require_shape(h_cache, "h_cache", h_cache.shape());
    detail::require_shape(y, "y", Shape<3>{batch, length, d});
    const Sizes s = Sizes::of(config, batch, length, cache);
    const index_t gemm_rows = batch * std::max(cache + length, s.compressed_rows);
    require(gemm_rows <= INT_MAX, "h: B·max(M + L, compressed rows) = ", gemm_rows,
            " rows exceed the int range of a cuBLAS product; split the batch");
    const std::size_t needed = workspace_bytes(config, batch, length, cache);
    require(workspace.bytes >= needed && workspace.data != nullptr, "workspace: needs ", needed,
            " bytes (workspace_bytes()), got ", workspace.bytes);
    // The one-block-per-query kernel keeps a query's scores in shared memory; the tensor-core
    // kernel has no such limit.
    using Executor = detail::Executor<cuda, CausalWindow, ChunkedProjection>;
    if (!Executor::tiled_configuration<T>(config.attention(), batch))
      cuda_detail::require_launchable(DeviceWorkspace{}, 0, s.compressed_rows + config.window_len, config.head_dim(),
                                      "compressed rows + window_len");
  }

  TransformerXLPositions positions() const { return TransformerXLPositions::from(config_.attention()); }

  // A parameter by its state_dict name; null for an absent one (the projection biases without use_bias).
  const T* parameter(const std::string& name) const {
    return parameters_[name];
  }

  Config config_;
  Attention attention_;
  cuda_detail::DeviceParameters<T> parameters_;
  DeviceTensor<T, 2> window_positions_;
};

}  // namespace lsattn::models::causal
