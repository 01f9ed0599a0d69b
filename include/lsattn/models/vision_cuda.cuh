#pragma once
// The 2D layer of ViL-LS (models::vision::AttentionLS2D) on the CUDA backend: weights uploaded
// once and converted to T, the RPE table expanded once into the per-head bias, projections
// through cuBLAS, the attention through the CUDA executor, all on the caller's stream with
// scratch from the caller's workspace.
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "lsattn/backend/cuda/linear.cuh"
#include "lsattn/backend/cuda/parameters.cuh"
#include "lsattn/cuda.cuh"
#include "lsattn/models/vision.hpp"

namespace lsattn::models::vision {

template <class T>
class AttentionLS2D<cuda, T> {
 public:
  using Attention = LongShortAttention<cuda, T, Window2D, SequenceProjection, DualLayerNorm>;

  // The configuration and the weights' shapes are checked before anything touches the device.
  AttentionLS2D(const Config& config, Weights<float> weights)
      : config_((config.validate(),
                detail::require_fp32_precision(config.precision, "vision::AttentionLS2D<cuda>"), config)), attention_(config.attention()) {
    require_valid_weights(config_, weights);
    const Window2D window = Window2D::from(config_.attention());
    cuda_detail::require_launchable(DeviceWorkspace{}, 0, config_.dp_rank + window.tile() * window.tile() + config_.nglo,
                                    config_.head_dim(), "dp_rank + T² + nglo");
    // The bias depends only on the table and w: expanded once through the published index.
    if (config_.rpe) {
      const Tensor<float, 3> bias = dense_position_bias(config_, weights.local_relative_position_bias_table);
      const std::vector<T> converted(bias.values().begin(), bias.values().end());
      position_bias_ = DeviceTensor<T, 3>(bias.shape());
      position_bias_.copy_from(HostView<const T, 3>(converted.data(), bias.shape()));
    }
    parameters_ = cuda_detail::DeviceParameters<T>(std::move(weights), config_);
  }

  const Config& config() const { return config_; }

  // Scratch for forward() on x (batch, nglo + nx·ny, C): q, k, v, the projection logits and the
  // context (all T), then the attention's float workspace. From the shapes only, linear in the
  // patches; static so that it can be sized without a layer (or a device).
  static std::size_t workspace_bytes(const Config& config, index_t batch, index_t nx, index_t ny) {
    config.validate();
    require(batch >= 1, "batch: must be >= 1, got ", batch);
    require(nx >= 1 && ny >= 1, "grid: nx and ny must be >= 1, got ", nx, " x ", ny);
    cuda_detail::WorkspaceCursor sizing;
    carve(sizing, config, batch, nx, ny);
    return sizing.bytes();
  }
  std::size_t workspace_bytes(index_t batch, index_t nx, index_t ny) const { return workspace_bytes(config_, batch, nx, ny); }

  // The host-side checks of forward() (shapes, grid, workspace), without launching anything:
  // an empty string when the call is valid, else the message forward() would throw.
  static std::string validate(const Config& config, DeviceView<const T, 3> x, index_t nx, index_t ny, DeviceView<T, 3> y,
                              DeviceWorkspace workspace) {
    try {
      config.validate();
      check_arguments(config, x, nx, ny, y, workspace);
    } catch (const error& e) {
      return e.what();
    }
    return {};
  }
  std::string validate(DeviceView<const T, 3> x, index_t nx, index_t ny, DeviceView<T, 3> y, DeviceWorkspace workspace) const {
    return validate(config_, x, nx, ny, y, workspace);
  }

  // x (B, nglo + nx·ny, C), patches in row-major order (row·ny + col) → y, the same shape. Only
  // enqueues on `stream`: no synchronisation, no allocation. Every argument is checked on the
  // host before the first launch; device values are not scanned (that would synchronise).
  void forward(DeviceView<const T, 3> x, index_t nx, index_t ny, DeviceView<T, 3> y, const CublasHandle& handle,
               cudaStream_t stream, DeviceWorkspace workspace) const {
    check_arguments(config_, x, nx, ny, y, workspace);
    const index_t c = config_.dim, globals = config_.nglo, batch = x.extent(0), tokens = x.extent(1);
    const index_t patches = nx * ny, logits = config_.num_heads * config_.dp_rank, rows = batch * tokens;

    cuda_detail::WorkspaceCursor cursor(workspace.data);
    const Buffers buffers = carve(cursor, config_, batch, nx, ny);
    T *query = buffers.query, *key = buffers.key, *value = buffers.value, *projection = buffers.projection,
      *context = buffers.context;
    auto linear = [&](const T* input, index_t count, const T* weight, const T* bias, index_t outputs, T* out) {
      cuda_detail::linear(handle, stream, input, count, c, weight, bias, outputs, out);
    };

    // The fused qkv (spec §3.3 step 1): rows [0, C) of its weight are q, [C, 2C) k, [2C, 3C) v.
    T* const parts[] = {query, key, value};
    const T* qkv_bias = parameters_["qkv.bias"];  // null without qkv_bias
    for (index_t part = 0; part < 3; ++part) {
      linear(x.data(), rows, parameters_["qkv.weight"] + part * c * c, qkv_bias != nullptr ? qkv_bias + part * c : nullptr,
             c, parts[part]);
    }
    if (logits > 0) {  // from the raw patches (step 4); each item's patches are contiguous rows
      for (index_t b = 0; b < batch; ++b) {
        linear(x.data() + (b * tokens + globals) * c, patches, parameters_["to_dynamic_projection.weight"],
               parameters_["to_dynamic_projection.bias"], logits, projection + b * patches * logits);
      }
    }
    const Shape<3> shape = x.shape();
    const VisionAttentionInputs<T, device_space> inputs{
        {query, shape},
        {key, shape},
        {value, shape},
        logits > 0 ? DeviceView<const T, 3>(projection, Shape<3>{batch, patches, logits}) : DeviceView<const T, 3>{},
        globals,
        nx,
        ny,
        config_.rpe ? position_bias_.view() : DeviceView<const T, 3>{}};
    auto norm_view = [&](const char* name) { return DeviceView<const T, 1>(parameters_[name], Shape<1>{c}); };
    const typename Attention::CombinerParams norm{{norm_view("dual_ln_full.weight"), norm_view("dual_ln_full.bias"), 1e-5},
                                                  {norm_view("dual_ln_dp.weight"), norm_view("dual_ln_dp.bias"), 1e-5}};
    attention_(inputs, norm, DeviceView<T, 3>(context, shape), stream, buffers.attention);
    linear(context, rows, parameters_["proj.weight"], parameters_["proj.bias"], c, y.data());
  }

 private:
  // The workspace's buffers, in one order for sizing and for use: q, k, v, the projection
  // logits and the context (T), then the attention's own workspace, each 256-byte aligned.
  struct Buffers {
    T *query, *key, *value, *projection, *context;
    DeviceWorkspace attention;
  };
  static Buffers carve(cuda_detail::WorkspaceCursor& cursor, const Config& config, index_t batch, index_t nx, index_t ny) {
    const index_t tokens = detail::grid_token_count(config.nglo, nx, ny), width = config.dim, patches = nx * ny;
    const index_t logits = config.num_heads * config.dp_rank, rows = batch * tokens;
    const Shape<3> shape{batch, tokens, width};
    const VisionAttentionInputs<T, device_space> shapes{{nullptr, shape},
                                                        {nullptr, shape},
                                                        {nullptr, shape},
                                                        {nullptr, Shape<3>{batch, patches, logits}},
                                                        config.nglo,
                                                        nx,
                                                        ny};
    Buffers buffers{};
    buffers.query = cursor.take<T>(rows * width);
    buffers.key = cursor.take<T>(rows * width);
    buffers.value = cursor.take<T>(rows * width);
    buffers.projection = cursor.take<T>(batch * patches * logits);
    buffers.context = cursor.take<T>(rows * width);
    buffers.attention = cursor.rest(Attention(config.attention()).workspace_bytes(shapes));
    return buffers;
  }

  // The checks and messages of the CPU layer, plus y and the workspace.
  static void check_arguments(const Config& config, const DeviceView<const T, 3>& x, index_t nx, index_t ny,
                              const DeviceView<T, 3>& y, const DeviceWorkspace& workspace) {
    const index_t c = config.dim, globals = config.nglo;
    const index_t tokens = detail::grid_token_count(globals, nx, ny);
    require(x.extent(0) >= 1 && x.shape() == Shape<3>{x.extent(0), tokens, c}, "x: expected shape (B, nglo + nx*ny = ",
            globals, " + ", nx, "*", ny, ", dim = ", c, "), got ", to_string(x.shape()));
    require(x.data() != nullptr, "x: null data pointer for shape ", to_string(x.shape()));
    detail::require_shape(y, "y", x.shape());
    cuda_detail::require_workspace(workspace, workspace_bytes(config, x.extent(0), nx, ny));
  }

  Config config_;
  Attention attention_;
  cuda_detail::DeviceParameters<T> parameters_;
  DeviceTensor<T, 3> position_bias_;
};

}  // namespace lsattn::models::vision
