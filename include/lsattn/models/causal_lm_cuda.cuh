#pragma once
// The character-level Transformer-LS language model (models/causal_lm.hpp) on the CUDA backend:
// segments of tokens with the Transformer-XL memory carried on the device. Embedding·√D, per
// layer the causal layer on CUDA (ChunkedLSAttention<cuda, T>) with LayerNorms (pre- or post-LN,
// as configured), the feed-forward through cuBLAS with GELU or ReLU, the tied output embedding
// and a log-softmax in fp32. Every step is enqueued on the caller's stream with scratch from the
// caller's workspace; decoding token by token stays on the CPU model.
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <numeric>
#include <utility>
#include <vector>

#include "lsattn/backend/cuda/elementwise.cuh"
#include "lsattn/backend/cuda/linear.cuh"
#include "lsattn/backend/cuda/parameters.cuh"
#include "lsattn/backend/cuda/runtime.cuh"
#include "lsattn/models/causal_cuda.cuh"
#include "lsattn/models/causal_lm.hpp"

namespace lsattn::models::causal {

// The memory on the device: per layer the last mem_len layer inputs (B, mem_len, D), in T.
template <class T>
struct LmCudaState {
  std::vector<DeviceTensor<T, 3>> caches;
};

namespace cuda_detail_lm {

// out[b, i] = row mem + length − count + i of [cache[b]; h[b]] (the rows the next memory keeps).
template <class T>
__global__ void last_rows(const T* cache, index_t memory, const T* h, index_t length, index_t count, index_t d, T* out) {
  const index_t b = blockIdx.x / count, i = blockIdx.x % count, row = memory + length - count + i;
  const T* source = row < memory ? cache + (b * memory + row) * d : h + (b * length + row - memory) * d;
  for (index_t f = threadIdx.x; f < d; f += blockDim.x) out[blockIdx.x * d + f] = source[f];
}

}  // namespace cuda_detail_lm

template <class T>
class TransformerLSModel<cuda, T> {
 public:
  TransformerLSModel(const LmConfig& config, LmWeights<float> weights) : config_((config.validate(), config)) {
    detail::require_fp32_precision(config_.precision, "causal::TransformerLSModel<cuda>");
    detail::require_valid_parameters(weights, config_);
    for (auto& layer : weights.layers) {
      Layer device;
      device.norm1_weight = cuda_detail::upload_flat<T>(layer.norm1_weight);
      device.norm1_bias = cuda_detail::upload_flat<T>(layer.norm1_bias);
      device.norm2_weight = cuda_detail::upload_flat<T>(layer.norm2_weight);
      device.norm2_bias = cuda_detail::upload_flat<T>(layer.norm2_bias);
      device.fc1_weight = cuda_detail::upload_flat<T>(layer.fc1_weight);
      device.fc1_bias = cuda_detail::upload_flat<T>(layer.fc1_bias);
      device.fc2_weight = cuda_detail::upload_flat<T>(layer.fc2_weight);
      device.fc2_bias = cuda_detail::upload_flat<T>(layer.fc2_bias);
      layers_.push_back(std::move(device));
      attention_.emplace_back(config_.layer(), std::move(layer.attn));
    }
    in_emb_ = cuda_detail::upload_flat<T>(weights.in_emb);
    out_emb_bias_ = cuda_detail::upload_flat<T>(weights.out_emb_bias);
  }

  const LmConfig& config() const { return config_; }

  // The published start of a stream: every layer's memory is zeros.
  LmCudaState<T> initial_state(index_t batch) const {
    require(batch >= 1, "batch: must be >= 1, got ", batch);
    LmCudaState<T> state;
    for (index_t i = 0; i < config_.n_layer; ++i) {
      DeviceTensor<T, 3> cache(Shape<3>{batch, config_.mem_len, config_.d_model});
      if (cache.size() > 0)
        cuda_detail::check(cudaMemset(cache.view().data(), 0, sizeof(T) * static_cast<std::size_t>(cache.size())),
                           "cudaMemset");
      state.caches.push_back(std::move(cache));
    }
    return state;
  }

  // The segment length after the published padding (spec §2.5): L, or the next multiple of
  // lcm(chunk_size, window_len) when L is not a multiple of chunk_size.
  static index_t padded_length(const LmConfig& config, index_t length) {
    const index_t l = config.chunk_size, unit = std::lcm(l, config.window_len);
    return length % l == 0 ? length : checked_sum({{"length", length}, {"padding", unit - length % unit}});
  }

  // Scratch for forward() on a (batch, length) segment, from the shapes only.
  static std::size_t workspace_bytes(const LmConfig& config, index_t batch, index_t length) {
    config.validate();
    cuda_detail::WorkspaceCursor sizing;
    carve(sizing, config, batch, padded_length(config, length));
    return sizing.bytes();
  }
  std::size_t workspace_bytes(index_t batch, index_t length) const { return workspace_bytes(config_, batch, length); }

  // Log-probabilities (B, L, vocab) in fp32 of the next token at every position of the segment
  // tokens (B, L) (host ids, checked here); `state` (on the device) is read and replaced by the
  // memory after this segment, as the CPU model's forward() does.
  void forward(HostView<const std::int64_t, 2> tokens, LmCudaState<T>& state, DeviceView<float, 3> logprobs,
               const CublasHandle& handle, cudaStream_t stream, DeviceWorkspace workspace) const {
    const index_t batch = tokens.extent(0), length = tokens.extent(1), d = config_.d_model, vocab = config_.vocab_size;
    require_segment(config_, tokens, state.caches);
    detail::require_shape(logprobs, "logprobs", Shape<3>{batch, length, vocab});
    cuda_detail::require_workspace(workspace, workspace_bytes(batch, length));

    // The published padding: token 0 up to the padded length (cut from the output, kept in the memory).
    const index_t padded = padded_length(config_, length), rows = batch * padded, memory = config_.mem_len;
    std::vector<std::int64_t> ids(static_cast<std::size_t>(rows), 0);
    for (index_t b = 0; b < batch; ++b)
      for (index_t t = 0; t < length; ++t) ids[static_cast<std::size_t>(b * padded + t)] = tokens.data()[b * length + t];
    cuda_detail::WorkspaceCursor cursor(workspace.data);
    const Buffers buffers = carve(cursor, config_, batch, padded);
    cuda_detail::check(cudaMemcpyAsync(buffers.ids, ids.data(), sizeof(std::int64_t) * ids.size(), cudaMemcpyHostToDevice,
                                       stream),
                       "cudaMemcpyAsync");
    cuda_detail::check(cudaStreamSynchronize(stream), "cudaStreamSynchronize");  // `ids` is about to go away

    using cuda_detail::block_threads;
    const unsigned row_blocks = static_cast<unsigned>(rows);
    const float embed_scale = std::sqrt(static_cast<float>(d));
    const T* no_positions = nullptr;
    cuda_detail::embed_rows<<<row_blocks, block_threads, 0, stream>>>(buffers.ids, in_emb_.view().data(), no_positions,
                                                                      padded, d, embed_scale, buffers.h);
    auto norm = [&](T* x, index_t count, const DeviceTensor<T, 1>& weight, const DeviceTensor<T, 1>& bias, T* out) {
      if (count == 0) return;
      cuda_detail::layer_norm_rows<<<static_cast<unsigned>(count), block_threads, 0, stream>>>(
          x, out, d, weight.view().data(), bias.view().data(), 1e-5f);
    };
    auto add = [&](T* x, const T* y, index_t count) {
      cuda_detail::add_into<<<cuda_detail::elementwise_blocks(count), 256, 0, stream>>>(x, y, count);
    };
    auto linear = [&](const T* x, index_t in, const DeviceTensor<T, 1>& weight, const DeviceTensor<T, 1>& bias,
                      index_t out, T* y) {
      cuda_detail::linear(handle, stream, x, rows, in, weight.view().data(), bias.size() ? bias.view().data() : nullptr,
                          out, y);
    };
    auto feed_forward = [&](const Layer& layer) {  // y = fc2(act(fc1(h)))
      linear(buffers.h, d, layer.fc1_weight, layer.fc1_bias, config_.d_inner, buffers.hidden);
      cuda_detail::activation<<<cuda_detail::elementwise_blocks(rows * config_.d_inner), 256, 0, stream>>>(
          buffers.hidden, rows * config_.d_inner, config_.use_gelu);
      linear(buffers.hidden, config_.d_inner, layer.fc2_weight, layer.fc2_bias, d, buffers.y);
    };
    const DeviceView<T, 3> h_view(buffers.h, Shape<3>{batch, padded, d}), y_view(buffers.y, h_view.shape());
    for (index_t i = 0; i < config_.n_layer; ++i) {
      const Layer& layer = layers_[static_cast<std::size_t>(i)];
      DeviceTensor<T, 3>& cache = state.caches[static_cast<std::size_t>(i)];
      // The next memory: the last mem_len rows of [cache; layer input], taken before the layer runs.
      if (memory > 0) {
        cuda_detail_lm::last_rows<<<static_cast<unsigned>(batch * memory), block_threads, 0, stream>>>(
            cache.view().data(), memory, buffers.h, padded, memory, d, buffers.next_cache);
      }
      const DeviceView<const T, 3> cache_view =
          memory > 0 ? DeviceView<const T, 3>(config_.pre_ln ? buffers.normed_cache : cache.view().data(), cache.shape())
                     : DeviceView<const T, 3>{};
      const DeviceWorkspace attention_workspace{buffers.attention, buffers.attention_bytes};
      const auto& attention = attention_[static_cast<std::size_t>(i)];
      if (config_.pre_ln) {  // hn = LN1(h); h = hn + attn(hn, LN1(cache)); hn2 = LN2(h); out = hn2 + ff(hn2)
        norm(buffers.h, rows, layer.norm1_weight, layer.norm1_bias, buffers.h);
        norm(cache.view().data(), batch * memory, layer.norm1_weight, layer.norm1_bias, buffers.normed_cache);
        attention.forward(h_view, cache_view, y_view, handle, stream, attention_workspace);
        add(buffers.h, buffers.y, rows * d);
        norm(buffers.h, rows, layer.norm2_weight, layer.norm2_bias, buffers.h);
        feed_forward(layer);
        add(buffers.h, buffers.y, rows * d);
      } else {  // h = LN1(h + attn(h, cache)); out = LN2(h + ff(h))
        attention.forward(h_view, cache_view, y_view, handle, stream, attention_workspace);
        add(buffers.h, buffers.y, rows * d);
        norm(buffers.h, rows, layer.norm1_weight, layer.norm1_bias, buffers.h);
        feed_forward(layer);
        add(buffers.h, buffers.y, rows * d);
        norm(buffers.h, rows, layer.norm2_weight, layer.norm2_bias, buffers.h);
      }
      if (memory > 0) {
        cuda_detail::check(cudaMemcpyAsync(cache.view().data(), buffers.next_cache,
                                           sizeof(T) * static_cast<std::size_t>(cache.size()), cudaMemcpyDeviceToDevice,
                                           stream),
                           "cudaMemcpyAsync");
      }
      cuda_detail::check(cudaGetLastError(), "kernel launch");
    }
    // Tied output embedding with its own bias, then the log-softmax of the unpadded rows.
    linear(buffers.h, d, in_emb_, out_emb_bias_, vocab, buffers.logits);
    cuda_detail::log_softmax_rows<<<static_cast<unsigned>(batch * length), block_threads, 0, stream>>>(
        buffers.logits, length, padded, vocab, logprobs.data());
    cuda_detail::check(cudaGetLastError(), "kernel launch");
  }

 private:
  struct Layer {
    DeviceTensor<T, 1> norm1_weight, norm1_bias, norm2_weight, norm2_bias, fc1_weight, fc1_bias, fc2_weight, fc2_bias;
  };
  struct Buffers {
    std::int64_t* ids;
    T *h, *y, *hidden, *logits, *normed_cache, *next_cache;
    void* attention;
    std::size_t attention_bytes;
  };

  static Buffers carve(cuda_detail::WorkspaceCursor& cursor, const LmConfig& config, index_t batch, index_t padded) {
    const index_t d = config.d_model, rows = checked_product({{"batch", batch}, {"padded length", padded}});
    Buffers buffers{};
    buffers.ids = cursor.take<std::int64_t>(rows);
    buffers.h = cursor.take<T>(rows * d);
    buffers.y = cursor.take<T>(rows * d);
    buffers.hidden = cursor.take<T>(rows * config.d_inner);
    buffers.logits = cursor.take<T>(rows * config.vocab_size);
    buffers.normed_cache = cursor.take<T>(batch * config.mem_len * d);
    buffers.next_cache = cursor.take<T>(batch * config.mem_len * d);
    buffers.attention_bytes = ChunkedLSAttention<cuda, T>::workspace_bytes(config.layer(), batch, padded, config.mem_len);
    buffers.attention = cursor.take<unsigned char>(static_cast<index_t>(buffers.attention_bytes));
    return buffers;
  }


  LmConfig config_;
  std::vector<Layer> layers_;
  std::vector<ChunkedLSAttention<cuda, T>> attention_;
  DeviceTensor<T, 1> in_emb_, out_emb_bias_;
};

}  // namespace lsattn::models::causal
