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
#include "lsattn/backend/cuda/parameters.cuh"
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

  AttentionLS(const Config& config, Weights<float> weights) : config_((config.validate(),
                detail::require_fp32_precision(config.precision, "lra::AttentionLS<cuda>"), config)), attention_(config.attention()) {
    require_valid_weights(config_, weights);
    parameters_ = cuda_detail::DeviceParameters<T>(std::move(weights), config_);
  }

  const Config& config() const { return config_; }

  // Scratch for one call, from forward's arguments: x's length and whether cls_embed is given.
  // With cls pooling the tokens x[:, 1:], the cls token x[:, 0] and mask[:, 1:]; q, k, v, the
  // logits, the cls projections, the context (all T); then the attention's own workspace.
  std::size_t workspace_bytes(index_t batch, index_t length, bool has_cls) const {
    cuda_detail::WorkspaceCursor sizing;
    carve(sizing, batch, length, has_cls);
    return sizing.bytes();
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
    cuda_detail::require_workspace(workspace, workspace_bytes(batch, x_length, !cls_embed.empty()));

    cuda_detail::WorkspaceCursor cursor(workspace.data);
    const Buffers buffers = carve(cursor, batch, x_length, !cls_embed.empty());
    if (pooled) {  // x[:, 1:], x[:, :1] and mask[:, 1:] as contiguous tensors, then the cls_embed path
      cuda_detail::copy_row_slice_async(x.data(), x_length, 1, length, d, batch, buffers.tokens, stream);
      cuda_detail::copy_row_slice_async(x.data(), x_length, 0, 1, d, batch, buffers.cls, stream);
      if (!mask.empty()) {
        cuda_detail::copy_row_slice_async(mask.data(), x_length, 1, length, 1, batch, buffers.token_mask, stream);
        mask = DeviceView<const T, 2>(buffers.token_mask, Shape<2>{batch, length});
      }
      x = DeviceView<const T, 3>(buffers.tokens, Shape<3>{batch, length, d});
      cls_embed = DeviceView<const T, 3>(buffers.cls, Shape<3>{batch, 1, d});
    }
    auto linear = [&](const T* input, index_t count, const char* name, index_t outputs, T* out) {
      const std::string prefix(name);
      cuda_detail::linear(handle, stream, input, count, d, parameters_[prefix + ".weight"], parameters_[prefix + ".bias"],
                          outputs, out);
    };
    const index_t rows = batch * length;
    const Shape<3> tokens{batch, length, width}, one{batch, 1, width};
    linear(x.data(), rows, "W_q", width, buffers.q);
    linear(x.data(), rows, "W_k", width, buffers.k);
    linear(x.data(), rows, "W_v", width, buffers.v);
    typename Attention::Inputs inputs{{buffers.q, tokens}, {buffers.k, tokens}, {buffers.v, tokens}, {}, mask};
    if (logits > 0) {
      linear(x.data(), rows, "dconv_fc", logits, buffers.projection);
      inputs.projection_logits = {buffers.projection, Shape<3>{batch, length, logits}};
    }
    if (has_cls) {
      linear(cls_embed.data(), batch, "W_q", width, buffers.cls_q);
      linear(cls_embed.data(), batch, "W_k", width, buffers.cls_k);
      linear(cls_embed.data(), batch, "W_v", width, buffers.cls_v);
      inputs.cls_query = {buffers.cls_q, one};
      inputs.cls_key = {buffers.cls_k, one};
      inputs.cls_value = {buffers.cls_v, one};
    }
    const Shape<1> features{width};
    auto view = [&](const char* name) { return DeviceView<const T, 1>(parameters_[name], features); };
    const typename Attention::CombinerParams norm{{view("dual_ln_l.weight"), view("dual_ln_l.bias"), 1e-5},
                                                  {view("dual_ln_s.weight"), view("dual_ln_s.bias"), 1e-5}};
    attention_(inputs, norm, DeviceView<T, 3>(buffers.context, y.shape()), stream, buffers.attention);
    linear(buffers.context, y.extent(0) * y.extent(1), "W_o", d, y.data());
  }

 private:
  // The workspace's buffers, in one order for sizing and for use, each 256-byte aligned.
  struct Buffers {
    T *tokens, *cls, *token_mask;  // cls pooling only
    T *q, *k, *v, *projection, *cls_q, *cls_k, *cls_v, *context;
    DeviceWorkspace attention;
  };
  Buffers carve(cuda_detail::WorkspaceCursor& cursor, index_t batch, index_t x_length, bool cls_embed) const {
    const bool pooled = config_.cls_pooling, has_cls = pooled || cls_embed;
    const index_t d = config_.transformer_dim, width = config_.width(), logits = config_.num_head * config_.num_landmarks;
    const index_t length = pooled ? std::max<index_t>(x_length - 1, 0) : x_length;
    Buffers buffers{};
    buffers.tokens = cursor.take<T>(pooled ? batch * length * d : 0);
    buffers.cls = cursor.take<T>(pooled ? batch * d : 0);
    buffers.token_mask = cursor.take<T>(pooled ? batch * length : 0);
    buffers.q = cursor.take<T>(batch * length * width);
    buffers.k = cursor.take<T>(batch * length * width);
    buffers.v = cursor.take<T>(batch * length * width);
    buffers.projection = cursor.take<T>(batch * length * logits);
    buffers.cls_q = cursor.take<T>(has_cls ? batch * width : 0);
    buffers.cls_k = cursor.take<T>(has_cls ? batch * width : 0);
    buffers.cls_v = cursor.take<T>(has_cls ? batch * width : 0);
    buffers.context = cursor.take<T>(batch * (length + (has_cls ? 1 : 0)) * width);
    const Shape<3> tokens{batch, length, width};
    typename Attention::Inputs shapes{{nullptr, tokens}, {nullptr, tokens}, {nullptr, tokens},
                                      {nullptr, Shape<3>{batch, length, logits}}};
    if (has_cls) shapes.cls_query = shapes.cls_key = shapes.cls_value = {nullptr, Shape<3>{batch, 1, width}};
    buffers.attention = cursor.rest(attention_.workspace_bytes(shapes));
    return buffers;
  }

  Config config_;
  Attention attention_;
  cuda_detail::DeviceParameters<T> parameters_;
};

}  // namespace lsattn::models::lra
