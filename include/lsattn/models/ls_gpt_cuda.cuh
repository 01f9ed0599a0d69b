#pragma once
// The LS-attention GPT (models/ls_gpt.hpp) on the CUDA backend, whole sequences: weights uploaded
// once in T (float, __half or __nv_bfloat16), every Linear through cuBLAS (fp32 accumulation),
// every head's exact causal attention (local heads a sliding window, global heads everything)
// through the tiled tensor-core kernel for 16-bit T, the residual stream in fp32 (as PyTorch's
// autocast keeps it), LayerNorms and GELU in fp32. All enqueued on the caller's stream with
// scratch from the caller's workspace; decoding one token at a time stays on the CPU model.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <utility>
#include <vector>

#include "lsattn/backend/cuda/elementwise.cuh"
#include "lsattn/backend/cuda/exact_attention.cuh"
#include "lsattn/backend/cuda/kernels.cuh"
#include "lsattn/backend/cuda/linear.cuh"
#include "lsattn/backend/cuda/parameters.cuh"
#include "lsattn/backend/cuda/runtime.cuh"
#include "lsattn/models/ls_gpt_config.hpp"
#include "lsattn/models/ls_heads_config.hpp"
#include "lsattn/models/parameter_checks.hpp"

namespace lsattn::models::ls_gpt {

// Heads 0 … local_count − 1 see a causal sliding window, the others every earlier key.
struct GptHeadVisibilities {
  index_t local_count = 0;
  SlidingVisibility sliding;
  FullVisibility full{true};
  LSATTN_HOST_DEVICE constexpr ls_heads::HeadVisibility at(index_t head) const {
    return {head < local_count, sliding, full};
  }
};

template <class T>
class LsGptCuda {
 public:
  LsGptCuda(const Config& config, Weights<float> weights) : config_((config.validate(), config)) {
    detail::require_fp32_precision(config_.precision, "ls_gpt::LsGptCuda");
    detail::require_valid_parameters(weights, config_);
    for (auto& block : weights.blocks) {
      PackedAttention<float> qkv = pack_attention(config_, block);
      Layer layer;
      layer.ln_1 = norm(block.ln_1_weight, block.ln_1_bias);
      layer.ln_2 = norm(block.ln_2_weight, block.ln_2_bias);
      layer.qkv_weight = cuda_detail::upload_flat<T>(qkv.weight);
      layer.qkv_bias = cuda_detail::upload_flat<T>(qkv.bias);
      layer.proj_weight = cuda_detail::upload_flat<T>(block.attn_c_proj_weight);
      layer.proj_bias = cuda_detail::upload_flat<T>(block.attn_c_proj_bias);
      layer.fc_weight = cuda_detail::upload_flat<T>(block.mlp_c_fc_weight);
      layer.fc_bias = cuda_detail::upload_flat<T>(block.mlp_c_fc_bias);
      layer.fc_proj_weight = cuda_detail::upload_flat<T>(block.mlp_c_proj_weight);
      layer.fc_proj_bias = cuda_detail::upload_flat<T>(block.mlp_c_proj_bias);
      layers_.push_back(std::move(layer));
    }
    wte_ = cuda_detail::upload_flat<T>(weights.wte);
    wpe_ = cuda_detail::upload_flat<T>(weights.wpe);
    lm_head_ = cuda_detail::upload_flat<T>(weights.lm_head);
    final_norm_ = norm(weights.ln_f_weight, weights.ln_f_bias);
  }

  const Config& config() const { return config_; }

  // Scratch for forward() on (batch, length) tokens, from the shapes only: the token ids, the
  // fp32 residual stream, the normalised rows, q, k, v, the context and the MLP's hidden rows in
  // T. Linear in batch · length.
  static std::size_t workspace_bytes(const Config& config, index_t batch, index_t length) {
    config.validate();
    cuda_detail::WorkspaceCursor sizing;
    carve(sizing, config, checked_product({{"batch", batch}, {"length", length}}));
    return sizing.bytes();
  }
  std::size_t workspace_bytes(index_t batch, index_t length) const { return workspace_bytes(config_, batch, length); }

  // tokens (B, T) on the host, 0 ≤ id < vocab_size, T ≤ block_size (checked here, before any
  // launch) → logits (B, T, vocab_size) on the device, in T. Enqueues on `stream` only, after one
  // copy of the ids into the workspace.
  void forward(HostView<const std::int64_t, 2> tokens, DeviceView<T, 3> logits, const CublasHandle& handle,
               cudaStream_t stream, DeviceWorkspace workspace) const {
    const index_t batch = tokens.extent(0), length = tokens.extent(1);
    require_tokens(config_, tokens, 0);
    detail::require_shape(logits, "logits", Shape<3>{batch, length, config_.vocab_size});
    cuda_detail::require_workspace(workspace, workspace_bytes(batch, length));

    const index_t d = config_.n_embd, width = config_.attention_width(), rows = batch * length;
    const index_t inner = config_.mlp_width();
    cuda_detail::WorkspaceCursor cursor(workspace.data);
    const Buffers buffers = carve(cursor, config_, rows);
    cuda_detail::check(cudaMemcpyAsync(buffers.tokens, tokens.data(), sizeof(std::int64_t) * static_cast<std::size_t>(rows),
                                       cudaMemcpyHostToDevice, stream),
                       "cudaMemcpyAsync");
    // The ids live in caller memory the call may return before reading: wait for the copy.
    cuda_detail::check(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
    using namespace cuda_detail;
    using cuda_detail::linear;
    embed_rows(buffers, rows, length, stream);
    const GptHeadVisibilities visibilities{config_.n_local_head, {config_.window(), true}, {true}};
    for (const Layer& layer : layers_) {
      layer_norm_rows<<<static_cast<unsigned>(rows), block_threads, 0, stream>>>(
          buffers.x, buffers.normed, d, layer.ln_1.weight.view().data(), layer.ln_1.bias.view().data(), 1e-5f);
      T* const parts[] = {buffers.q, buffers.k, buffers.v};
      for (index_t part = 0; part < 3; ++part) {  // rows [part·width, (part + 1)·width) of the packed weight
        const T* bias = layer.qkv_bias.size() > 0 ? layer.qkv_bias.view().data() + part * width : nullptr;
        linear(handle, stream, buffers.normed, rows, d, layer.qkv_weight.view().data() + part * width * d, bias, width,
               parts[part]);
      }
      exact_attention(buffers.q, buffers.k, buffers.v, static_cast<const T*>(nullptr), length, config_.n_head,
                      config_.head_dim, visibilities, buffers.context, static_cast<float*>(nullptr), stream, batch);
      linear(handle, stream, buffers.context, rows, width, layer.proj_weight.view().data(), bias_of(layer.proj_bias), d,
             buffers.out);
      add_into<<<elementwise_blocks(rows * d), 256, 0, stream>>>(buffers.x, buffers.out, rows * d);
      layer_norm_rows<<<static_cast<unsigned>(rows), block_threads, 0, stream>>>(
          buffers.x, buffers.normed, d, layer.ln_2.weight.view().data(), layer.ln_2.bias.view().data(), 1e-5f);
      linear(handle, stream, buffers.normed, rows, d, layer.fc_weight.view().data(), bias_of(layer.fc_bias), inner,
             buffers.hidden);
      activation<<<elementwise_blocks(rows * inner), 256, 0, stream>>>(buffers.hidden, rows * inner, true);
      linear(handle, stream, buffers.hidden, rows, inner, layer.fc_proj_weight.view().data(), bias_of(layer.fc_proj_bias),
             d, buffers.out);
      add_into<<<elementwise_blocks(rows * d), 256, 0, stream>>>(buffers.x, buffers.out, rows * d);
      check(cudaGetLastError(), "kernel launch");
    }
    layer_norm_rows<<<static_cast<unsigned>(rows), block_threads, 0, stream>>>(
        buffers.x, buffers.normed, d, final_norm_.weight.view().data(), final_norm_.bias.view().data(), 1e-5f);
    linear(handle, stream, buffers.normed, rows, d, lm_head_.view().data(), static_cast<const T*>(nullptr),
           config_.vocab_size, logits.data());
    check(cudaGetLastError(), "kernel launch");
  }

 private:
  struct Norm {
    DeviceTensor<T, 1> weight, bias;
  };
  struct Layer {
    Norm ln_1, ln_2;
    DeviceTensor<T, 1> qkv_weight, qkv_bias, proj_weight, proj_bias, fc_weight, fc_bias, fc_proj_weight, fc_proj_bias;
  };
  struct Buffers {
    std::int64_t* tokens;
    float* x;
    T *normed, *q, *k, *v, *context, *out, *hidden;
  };

  static Buffers carve(cuda_detail::WorkspaceCursor& cursor, const Config& config, index_t rows) {
    const index_t d = config.n_embd, width = config.attention_width();
    Buffers buffers{};
    buffers.tokens = cursor.take<std::int64_t>(rows);
    buffers.x = cursor.take<float>(rows * d);
    buffers.normed = cursor.take<T>(rows * d);
    buffers.q = cursor.take<T>(rows * width);
    buffers.k = cursor.take<T>(rows * width);
    buffers.v = cursor.take<T>(rows * width);
    buffers.context = cursor.take<T>(rows * width);
    buffers.out = cursor.take<T>(rows * d);
    buffers.hidden = cursor.take<T>(rows * config.mlp_width());
    return buffers;
  }

  // bias = False: LayerNorm biases are zeros, Linear biases absent.
  Norm norm(const Tensor<float, 1>& weight, const Tensor<float, 1>& bias) const {
    return {cuda_detail::upload_flat<T>(weight), cuda_detail::upload_flat<T>(bias.size() > 0 ? bias : Tensor<float, 1>(Shape<1>{config_.n_embd}))};
  }
  static const T* bias_of(const DeviceTensor<T, 1>& bias) { return bias.size() > 0 ? bias.view().data() : nullptr; }

  void embed_rows(const Buffers& buffers, index_t rows, index_t length, cudaStream_t stream) const {
    cuda_detail::embed_rows<<<static_cast<unsigned>(rows), cuda_detail::block_threads, 0, stream>>>(
        buffers.tokens, wte_.view().data(), wpe_.view().data(), length, config_.n_embd, 1.0f, buffers.x);
    cuda_detail::check(cudaGetLastError(), "kernel launch");
  }

  Config config_;
  std::vector<Layer> layers_;
  DeviceTensor<T, 1> wte_, wpe_, lm_head_;
  Norm final_norm_;
};

}  // namespace lsattn::models::ls_gpt
