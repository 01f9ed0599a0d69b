#pragma once
// The LRA layer (models::lra::AttentionLS) on the CUDA backend: weights uploaded once and
// converted to T, projections through cuBLAS, the attention through the CUDA executor, all on
// the caller's stream with scratch from the caller's workspace.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

#include "lsattn/backend/cuda/linear.cuh"
#include "lsattn/cuda.cuh"
#include "lsattn/models/lra.hpp"

namespace lsattn::cuda_detail {

// out[b, i, :] = in[b, first + i, :] for i < count: the same slice of rows of every batch item
// (rows of `features` elements, `in_rows` per item), made contiguous.
template <class T>
__global__ void copy_row_slice(const T* in, index_t in_rows, index_t first, index_t count, index_t features, index_t batch,
                               T* out) {
  const index_t item = count * features, total = batch * item;
  for (index_t i = static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += static_cast<index_t>(gridDim.x) * blockDim.x) {
    out[i] = in[((i / item) * in_rows + first) * features + i % item];
  }
}

template <class T>
void copy_row_slice_async(const T* in, index_t in_rows, index_t first, index_t count, index_t features, index_t batch, T* out,
                          cudaStream_t stream) {
  const index_t total = batch * count * features;
  if (total == 0) return;
  const auto blocks = static_cast<unsigned>(std::min<index_t>((total + block_threads - 1) / block_threads, 1024));
  copy_row_slice<<<blocks, block_threads, 0, stream>>>(in, in_rows, first, count, features, batch, out);
  check(cudaGetLastError(), "kernel launch");
}

}  // namespace lsattn::cuda_detail

namespace lsattn::models::lra {

template <class T>
class AttentionLS<cuda, T> {
 public:
  using Attention = LongShortAttention<cuda, T, BidirectionalWindow, SequenceProjection, DualLayerNorm>;

  AttentionLS(const Config& config, Weights<float> weights) : config_((config.validate(), config)), attention_(config.attention()) {
    detail::require_parameter_shapes(weights, config_);
    weights.for_each(config_, [&](const std::string&, const auto& tensor, const auto&) {
      std::vector<T> converted(tensor.values().begin(), tensor.values().end());
      parameters_.emplace_back(Shape<1>{tensor.size()});
      if (tensor.size() > 0) {
        cuda_detail::check(cudaMemcpy(parameters_.back().view().data(), converted.data(), converted.size() * sizeof(T),
                                      cudaMemcpyHostToDevice),
                           "cudaMemcpy");
      }
    });
  }

  const Config& config() const { return config_; }

  // Scratch for one call, from forward's arguments: x's length and whether cls_embed is given.
  // q, k, v, the logits, the cls projections, the context (all T); with cls pooling also the
  // tokens x[:, 1:], the cls token x[:, 0] and mask[:, 1:]; then the attention's own workspace.
  std::size_t workspace_bytes(index_t batch, index_t length, bool has_cls) const {
    const bool pooled = config_.cls_pooling;
    const index_t tokens = pooled ? std::max<index_t>(length - 1, 0) : length;
    const index_t split = pooled ? batch * tokens * config_.transformer_dim + batch * config_.transformer_dim + batch * tokens : 0;
    return sizeof(T) * static_cast<std::size_t>(elements(batch, tokens, pooled || has_cls) + split) +
           attention_workspace(batch, tokens, pooled || has_cls);
  }

  // x (B, L, D), mask (B, L) or empty, cls_embed (B, 1, D) or empty → y (B, L(+1), D). With
  // pooling_mode 'cls' (spec §1.3 step 0) x[:, 0] is the cls token, cls_embed must be empty and
  // y has x's shape (the cls row first).
  void forward(DeviceView<const T, 3> x, DeviceView<const T, 2> mask, DeviceView<const T, 3> cls_embed,
               DeviceView<T, 3> y, const CublasHandle& handle, cudaStream_t stream, DeviceWorkspace workspace) const {
    const index_t d = config_.transformer_dim, width = config_.width(), logits = config_.num_head * config_.num_landmarks;
    const bool pooled = config_.cls_pooling;
    const index_t batch = x.extent(0), x_length = x.extent(1), length = x_length - (pooled ? 1 : 0);
    require(batch >= 1 && x_length >= 1 && x.extent(2) == d, "x: expected (B >= 1, L >= 1, ", d, "), got ",
            to_string(x.shape()));
    require(x.data() != nullptr, "x: null data pointer for shape ", to_string(x.shape()));
    if (!mask.empty()) detail::require_shape(mask, "mask", Shape<2>{batch, x_length});
    if (pooled) {
      require(cls_embed.empty(), "cls_embed: must not be given when pooling_mode is 'cls' (the cls token is x[:, 0])");
      require(x_length >= 2, "x: with pooling_mode 'cls' the sequence needs the cls token and at least one more, got length ",
              x_length);
    }
    const bool has_cls = pooled || !cls_embed.empty();
    if (!cls_embed.empty()) detail::require_shape(cls_embed, "cls_embed", Shape<3>{batch, 1, d});
    detail::require_shape(y, "y", Shape<3>{batch, length + (has_cls ? 1 : 0), d});
    const std::size_t needed = workspace_bytes(batch, x_length, !cls_embed.empty());
    require(workspace.bytes >= needed && workspace.data != nullptr, "workspace: needs ", needed,
            " bytes (workspace_bytes()), got ", workspace.bytes);

    T* cursor = static_cast<T*>(workspace.data);
    auto take = [&](index_t count) { return std::exchange(cursor, cursor + count); };
    if (pooled) {  // x[:, 1:], x[:, :1] and mask[:, 1:] as contiguous tensors, then the cls_embed path
      T* tokens = take(batch * length * d);
      T* cls = take(batch * d);
      T* token_mask = take(batch * length);
      cuda_detail::copy_row_slice_async(x.data(), x_length, 1, length, d, batch, tokens, stream);
      cuda_detail::copy_row_slice_async(x.data(), x_length, 0, 1, d, batch, cls, stream);
      if (!mask.empty()) {
        cuda_detail::copy_row_slice_async(mask.data(), x_length, 1, length, 1, batch, token_mask, stream);
        mask = DeviceView<const T, 2>(token_mask, Shape<2>{batch, length});
      }
      x = DeviceView<const T, 3>(tokens, Shape<3>{batch, length, d});
      cls_embed = DeviceView<const T, 3>(cls, Shape<3>{batch, 1, d});
    }
    T* q = take(batch * length * width);
    T* k = take(batch * length * width);
    T* v = take(batch * length * width);
    T* projection = take(batch * length * logits);
    T* cls_q = take(has_cls ? batch * width : 0);
    T* cls_k = take(has_cls ? batch * width : 0);
    T* cls_v = take(has_cls ? batch * width : 0);
    T* context = take(batch * (length + (has_cls ? 1 : 0)) * width);
    const index_t rows = batch * length;
    auto linear = [&](const T* input, index_t count, index_t weight, index_t bias, index_t outputs, T* out) {
      cuda_detail::linear(handle, stream, input, count, d, parameter(weight), parameter(bias), outputs, out);
    };
    // Parameter order of Weights::for_each: W_q w/b, W_k w/b, W_v w/b, W_o w/b, [dconv_fc w/b], dual_ln_s w/b, dual_ln_l w/b.
    linear(x.data(), rows, 0, 1, width, q);
    linear(x.data(), rows, 2, 3, width, k);
    linear(x.data(), rows, 4, 5, width, v);
    const index_t norms = config_.num_landmarks > 0 ? 10 : 8;
    if (config_.num_landmarks > 0) linear(x.data(), rows, 8, 9, logits, projection);
    typename Attention::Inputs inputs{{q, Shape<3>{batch, length, width}}, {k, Shape<3>{batch, length, width}},
                                      {v, Shape<3>{batch, length, width}}, {}, mask};
    if (config_.num_landmarks > 0) inputs.projection_logits = {projection, Shape<3>{batch, length, logits}};
    if (has_cls) {
      linear(cls_embed.data(), batch, 0, 1, width, cls_q);
      linear(cls_embed.data(), batch, 2, 3, width, cls_k);
      linear(cls_embed.data(), batch, 4, 5, width, cls_v);
      inputs.cls_query = {cls_q, Shape<3>{batch, 1, width}};
      inputs.cls_key = {cls_k, Shape<3>{batch, 1, width}};
      inputs.cls_value = {cls_v, Shape<3>{batch, 1, width}};
    }
    const Shape<1> features{width};
    const typename Attention::CombinerParams norm{{{parameter(norms + 2), features}, {parameter(norms + 3), features}, 1e-5},
                                                  {{parameter(norms), features}, {parameter(norms + 1), features}, 1e-5}};
    const DeviceView<T, 3> context_view(context, y.shape());
    // The attention's float scratch starts at the next float-aligned address after the T buffers.
    const auto start = reinterpret_cast<std::uintptr_t>(workspace.data);
    const auto aligned = (reinterpret_cast<std::uintptr_t>(cursor) + alignof(float) - 1) & ~std::uintptr_t{alignof(float) - 1};
    attention_(inputs, norm, context_view, stream,
               DeviceWorkspace{reinterpret_cast<void*>(aligned), workspace.bytes - (aligned - start)});
    linear(context, y.extent(0) * y.extent(1), 6, 7, d, y.data());
  }

 private:
  const T* parameter(index_t i) const { return parameters_[static_cast<std::size_t>(i)].view().data(); }

  index_t elements(index_t batch, index_t length, bool has_cls) const {
    const index_t width = config_.width(), logits = config_.num_head * config_.num_landmarks;
    return 3 * batch * length * width + batch * length * logits + (has_cls ? 3 * batch * width : 0) +
           batch * (length + (has_cls ? 1 : 0)) * width;
  }
  std::size_t attention_workspace(index_t batch, index_t length, bool has_cls) const {
    const Shape<3> tokens{batch, length, config_.width()};
    typename Attention::Inputs shapes{{nullptr, tokens}, {nullptr, tokens}, {nullptr, tokens},
                                      {nullptr, Shape<3>{batch, length, config_.num_head * config_.num_landmarks}}};
    if (has_cls) shapes.cls_query = shapes.cls_key = shapes.cls_value = {nullptr, Shape<3>{batch, 1, config_.width()}};
    // Keep the attention's scratch aligned for floats after the T-typed buffers.
    return attention_.workspace_bytes(shapes) + alignof(float);
  }

  Config config_;
  Attention attention_;
  std::vector<DeviceTensor<T, 1>> parameters_;
};

}  // namespace lsattn::models::lra
