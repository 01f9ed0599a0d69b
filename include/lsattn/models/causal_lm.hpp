#pragma once
// The character-level Transformer-LS language model (autoregressive/model_lib/model.py::
// TransformerLSModel, spec §2.5–2.6): embedding·√D, causal Transformer-LS layers with a
// Transformer-XL memory of the last mem_len layer inputs, tied output embedding, log-softmax.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "lsattn/core/error.hpp"
#include "lsattn/core/tensor.hpp"
#include "lsattn/models/parameter_checks.hpp"
#include "lsattn/models/causal.hpp"

namespace lsattn::models::causal {

struct LmConfig {
  index_t vocab_size = 256;
  index_t d_model = 512;
  index_t n_head = 8;
  index_t d_inner = 2048;
  index_t n_layer = 12;
  index_t mem_len = 2048;
  index_t chunk_size = 16;
  index_t chunk_rank = 1;
  index_t window_len = 512;
  bool pre_ln = true;
  bool use_gelu = true;
  bool use_bias = false;
  index_t clamp_len = -1;
  index_t cpos_clamp_len = -1;
  int threads = 0;
  Precision precision = Precision::fp32;  // of the matrix products (bf16: CPU only)

  Config layer() const {
    return {n_head, d_model, chunk_size, chunk_rank, window_len, use_bias, clamp_len, cpos_clamp_len, threads, precision};
  }
  void validate() const {
    layer().validate();
    checked_size("vocab_size", vocab_size, 1);
    checked_size("d_inner", d_inner, 1);
    checked_size("n_layer", n_layer, 1);
    checked_size("mem_len", mem_len);
    checked_product({{"vocab_size", vocab_size}, {"d_model", d_model}});
    checked_product({{"d_inner", d_inner}, {"d_model", d_model}});
    checked_product({{"n_layer", n_layer}, {"d_model", d_model}, {"d_model", d_model}});
    checked_product({{"n_layer", n_layer}, {"d_inner", d_inner}, {"d_model", d_model}});
    checked_product({{"n_layer", n_layer}, {"mem_len", mem_len}, {"d_model", d_model}});
    require(mem_len % chunk_size == 0, "mem_len (", mem_len,
            ") must be a non-negative multiple of chunk_size (", chunk_size, ")");
  }
};

template <class T = float>
struct LmLayerWeights {
  Weights<T> attn;
  Tensor<T, 1> norm1_weight, norm1_bias, norm2_weight, norm2_bias;
  Tensor<T, 2> fc1_weight, fc2_weight;
  Tensor<T, 1> fc1_bias, fc2_bias;
};

// Parameters under their state_dict names (spec §2.6). `out_emb.weight` is tied to
// `in_emb.weight` and not stored separately.
template <class T = float>
struct LmWeights {
  Tensor<T, 2> in_emb;        // in_emb.weight [vocab, D]
  Tensor<T, 1> out_emb_bias;  // out_emb.bias [vocab]
  std::vector<LmLayerWeights<T>> layers;

  template <class Visitor>
  void for_each(const LmConfig& config, Visitor&& visit) {
    const index_t d = config.d_model;
    visit("in_emb.weight", in_emb, Shape<2>{config.vocab_size, d});
    visit("out_emb.bias", out_emb_bias, Shape<1>{config.vocab_size});
    layers.resize(static_cast<std::size_t>(config.n_layer));
    for (index_t i = 0; i < config.n_layer; ++i) {
      const std::string prefix = "layers." + std::to_string(i) + ".";
      auto& layer = layers[static_cast<std::size_t>(i)];
      layer.attn.for_each(config.layer(), [&](const std::string& name, auto& tensor, const auto& shape) {
        visit(prefix + "attn." + name, tensor, shape);
      });
      visit(prefix + "norm1.weight", layer.norm1_weight, Shape<1>{d});
      visit(prefix + "norm1.bias", layer.norm1_bias, Shape<1>{d});
      visit(prefix + "norm2.weight", layer.norm2_weight, Shape<1>{d});
      visit(prefix + "norm2.bias", layer.norm2_bias, Shape<1>{d});
      visit(prefix + "ff.fc1.weight", layer.fc1_weight, Shape<2>{config.d_inner, d});
      visit(prefix + "ff.fc1.bias", layer.fc1_bias, Shape<1>{config.d_inner});
      visit(prefix + "ff.fc2.weight", layer.fc2_weight, Shape<2>{d, config.d_inner});
      visit(prefix + "ff.fc2.bias", layer.fc2_bias, Shape<1>{d});
    }
  }

  // Deterministic random parameters: matrices ~ N(0, 1/√fan_in), embedding ~ N(0, 0.02·…),
  // LN weight ~ N(1, 0.1), every other vector ~ N(0, 0.1).
  static LmWeights random(const LmConfig& config, std::uint64_t seed) {
    LmWeights weights;
    std::mt19937_64 generator(seed);
    weights.for_each(config, [&](const std::string& name, auto& tensor, const auto& shape) {
      const bool norm_weight = name.find("norm") != std::string::npos && name.ends_with(".weight");
      double stddev = 0.1;
      if (name == "in_emb.weight") stddev = 1.0 / static_cast<double>(config.d_model);
      else if (shape.size() == 2) stddev = 1.0 / std::sqrt(static_cast<double>(shape[1]));
      std::normal_distribution<double> normal(norm_weight ? 1.0 : 0.0, stddev);
      tensor = std::remove_reference_t<decltype(tensor)>(shape);
      for (auto& v : tensor.values()) v = static_cast<T>(normal(generator));
    });
    return weights;
  }
};

// The memory carried from segment to segment: per layer, the last mem_len inputs (B, mem_len, D).
// The checks of a segment forward (CPU and CUDA models alike): a non-empty (B, L) batch of ids in
// the vocabulary, and one (B, mem_len, D) memory per layer, whatever holds them.
template <class Caches>
void require_segment(const LmConfig& config, HostView<const std::int64_t, 2> tokens, const Caches& caches) {
  const index_t batch = tokens.extent(0), length = tokens.extent(1);
  require(batch >= 1 && length >= 1, "tokens: expected a non-empty (B, L) segment, got ", to_string(tokens.shape()));
  require(tokens.data() != nullptr, "tokens: null data pointer");
  require(static_cast<index_t>(caches.size()) == config.n_layer, "state: holds ", caches.size(),
          " layer caches, the model has n_layer = ", config.n_layer, " (start from initial_state())");
  const Shape<3> expected{batch, config.mem_len, config.d_model};
  for (const auto& cache : caches) {
    require(cache.shape() == expected, "state: a layer cache has shape ", to_string(cache.shape()), ", expected ",
            to_string(expected));
  }
  for (index_t i = 0; i < tokens.size(); ++i) {
    const std::int64_t id = tokens.data()[i];
    require(id >= 0 && id < config.vocab_size, "tokens: id ", id, " at (", i / length, ", ", i % length,
            ") is outside the vocabulary [0, ", config.vocab_size, ")");
  }
}

template <class T = float>
struct LmState {
  std::vector<Tensor<T, 3>> caches;
  CpuWorkspace workspace;  // the layers' scratch, kept from one segment to the next
};

// Decoding one sequence token by token with the same segments as forward(): the memory (the
// layer caches forward carries), and within a segment each layer's decoding state and the
// layer inputs so far (they become the next memory). See TransformerLSModel::step.
template <class Backend, class T = float>
struct LmDecodeState {
  LmState<T> memory;
  index_t length = 0;  // tokens of the current segment so far (0: between segments)
  std::vector<typename ChunkedLSAttention<Backend, T>::DecodeState> layers;
  std::vector<std::vector<T>> inputs;  // per layer, the segment's inputs so far (length × D)
};

template <class Backend, class T = float>
class TransformerLSModel {
 public:
  TransformerLSModel(const LmConfig& config, LmWeights<T> weights)
      : config_((config.validate(), config)), weights_(std::move(weights)) {
    detail::require_valid_parameters(weights_, config_);
    // The attention layers take their parameters over; weights_ keeps the rest.
    for (auto& layer : weights_.layers) attention_.emplace_back(config_.layer(), std::move(layer.attn));
  }

  const LmConfig& config() const { return config_; }

  // The published start of a stream: every layer's memory is zeros (spec §2.6).
  LmState<T> initial_state(index_t batch) const {
    require(batch >= 1, "batch: must be >= 1, got ", batch);
    LmState<T> state;
    for (index_t i = 0; i < config_.n_layer; ++i) state.caches.emplace_back(Shape<3>{batch, config_.mem_len, config_.d_model});
    return state;
  }

  // A stream of one sequence, decoded token by token: memory as initial_state(1).
  LmDecodeState<Backend, T> initial_decode_state() const {
    LmDecodeState<Backend, T> state;
    state.memory = initial_state(1);
    return state;
  }

  // The log-probabilities (vocab) of the token after `token`, equal to forward()'s at this
  // position when the stream is cut into the same segments: end_segment() closes a segment
  // (and carries its memory on, as forward does); a step after it starts the next one.
  std::vector<T> step(std::int64_t token, LmDecodeState<Backend, T>& state) const {
    require(token >= 0 && token < config_.vocab_size, "step: token id ", token, " is outside the vocabulary [0, ",
            config_.vocab_size, ")");
    require(state.memory.caches.size() == static_cast<std::size_t>(config_.n_layer),
            "state: not a decoding state of this model (start from initial_decode_state())");
    const index_t d = config_.d_model;
    if (state.length == 0) begin_segment(state);
    Tensor<T, 3> h(Shape<3>{1, 1, d});
    const T embed_scale = static_cast<T>(std::sqrt(static_cast<double>(d)));
    for (index_t f = 0; f < d; ++f) h(0, 0, f) = weights_.in_emb(token, f) * embed_scale;
    for (index_t i = 0; i < config_.n_layer; ++i) {
      const auto index = static_cast<std::size_t>(i);
      state.inputs[index].insert(state.inputs[index].end(), h.data(), h.data() + d);
      h = detail::overflow_checked("TransformerLSModel layer " + std::to_string(i), [&] {
        return run_layer_step(weights_.layers[index], attention_[index], h, state.layers[index]);
      });
    }
    ++state.length;
    std::vector<T> logits(static_cast<std::size_t>(config_.vocab_size));
    linear(h.data(), 1, weights_.in_emb, weights_.out_emb_bias, logits.data());
    const T top = *std::max_element(logits.begin(), logits.end());
    double total = 0;
    for (const T v : logits) total += std::exp(static_cast<double>(v - top));
    const T log_total = static_cast<T>(std::log(total));
    for (T& v : logits) v = v - top - log_total;
    detail::require_finite(HostView<const T, 1>(logits.data(), Shape<1>{config_.vocab_size}), "log-probabilities");
    return logits;
  }

  // Closes the current segment as forward() would: a length that is not a multiple of
  // chunk_size is padded with token 0 up to a multiple of lcm(chunk_size, window_len) (the
  // padded tokens enter the memory, as published); then every layer's memory becomes the last
  // mem_len of [memory; the segment's inputs]. Nothing happens between segments.
  void end_segment(LmDecodeState<Backend, T>& state) const {
    if (state.length == 0) return;
    const index_t l = config_.chunk_size, unit = std::lcm(l, config_.window_len), d = config_.d_model;
    const index_t padded = state.length % l == 0 ? state.length : state.length + unit - state.length % unit;
    while (state.length < padded) step(0, state);
    for (index_t i = 0; i < config_.n_layer; ++i) {
      const auto index = static_cast<std::size_t>(i);
      const Tensor<T, 3> inputs(Shape<3>{1, state.length, d}, std::move(state.inputs[index]));
      state.memory.caches[index] = last_rows(state.memory.caches[index], inputs, config_.mem_len);
    }
    state.length = 0;
    state.layers.clear();
    state.inputs.clear();
  }

  // Log-probabilities (B, L, vocab) of the next token at every position of the segment
  // tokens (B, L); `state` is read and replaced by the memory after this segment.
  Tensor<T, 3> forward(HostView<const std::int64_t, 2> tokens, LmState<T>& state) const {
    const index_t batch = tokens.extent(0), length = tokens.extent(1), d = config_.d_model;
    require_segment(config_, tokens, state.caches);

    // Published padding (spec §2.5): only when L % l != 0, with token 0 up to a multiple of
    // lcm(l, w). The padded tokens are cut from the output but enter the next memory, as published.
    const index_t l = config_.chunk_size, unit = std::lcm(l, config_.window_len);
    const index_t padded = length % l == 0 ? length : length + unit - length % unit;

    Tensor<T, 3> h(Shape<3>{batch, padded, d});
    const T embed_scale = static_cast<T>(std::sqrt(static_cast<double>(d)));
    for (index_t b = 0; b < batch; ++b)
      for (index_t t = 0; t < padded; ++t) {
        const std::int64_t id = t < length ? tokens(b, t) : 0;
        for (index_t f = 0; f < d; ++f) h(b, t, f) = weights_.in_emb(id, f) * embed_scale;
      }

    for (index_t i = 0; i < config_.n_layer; ++i) {
      const auto& layer = weights_.layers[static_cast<std::size_t>(i)];
      Tensor<T, 3>& cache = state.caches[static_cast<std::size_t>(i)];
      Tensor<T, 3> next_cache = last_rows(cache, h, config_.mem_len);  // taken before the layer runs
      h = detail::overflow_checked("TransformerLSModel layer " + std::to_string(i),
                                   [&] { return run_layer(i, layer, h, cache, state.workspace); });
      cache = std::move(next_cache);
    }

    // Tied output embedding with its own bias, then log-softmax over the vocabulary.
    const index_t vocab = config_.vocab_size;
    Tensor<T, 3> logits(Shape<3>{batch, padded, vocab});
    linear(h.data(), batch * padded, weights_.in_emb, weights_.out_emb_bias, logits.data());
    Tensor<T, 3> out(Shape<3>{batch, length, vocab});
    for (index_t b = 0; b < batch; ++b)
      for (index_t t = 0; t < length; ++t) {
        const T* row = logits.address(b, t, 0);
        const T top = *std::max_element(row, row + vocab);
        double total = 0;
        for (index_t v = 0; v < vocab; ++v) total += std::exp(static_cast<double>(row[v] - top));
        const T log_total = static_cast<T>(std::log(total));
        for (index_t v = 0; v < vocab; ++v) out(b, t, v) = row[v] - top - log_total;
      }
    detail::require_finite_output(std::as_const(out).view(), "TransformerLSModel", config_.threads);
    return out;
  }

 private:
  void linear(const T* x, index_t rows, const Tensor<T, 2>& w, const Tensor<T, 1>& bias, T* y) const {
    detail::LinearOp<Backend>::run(x, rows, w.extent(1), w.data(), bias.size() ? bias.data() : nullptr, w.extent(0), y,
                                   config_.threads, config_.precision);
  }

  void layer_norm(Tensor<T, 3>& x, const Tensor<T, 1>& weight, const Tensor<T, 1>& bias) const {
    const LayerNormParams<T, host_space> params{weight.view(), bias.view(), 1e-5};
    detail::LayerNormOp<Backend>::run(x.data(), x.data(), x.extent(0) * x.extent(1), x.extent(2), params,
                                      config_.threads);
  }

  // The last `count` rows of [cache; h] per batch item.
  static Tensor<T, 3> last_rows(const Tensor<T, 3>& cache, const Tensor<T, 3>& h, index_t count) {
    const index_t batch = h.extent(0), d = h.extent(2), m = cache.extent(1), length = h.extent(1);
    Tensor<T, 3> out(Shape<3>{batch, count, d});
    for (index_t b = 0; b < batch; ++b)
      for (index_t i = 0; i < count; ++i) {
        const index_t row = m + length - count + i;  // row of [cache; h]
        const T* source = row < m ? cache.address(b, row, 0) : h.address(b, row - m, 0);
        std::copy_n(source, d, out.address(b, i, 0));
      }
    return out;
  }

  // Every layer's decoding state for a new segment after the memory (LN1 of it with pre_ln).
  void begin_segment(LmDecodeState<Backend, T>& state) const {
    state.layers.clear();
    state.inputs.assign(static_cast<std::size_t>(config_.n_layer), {});
    for (index_t i = 0; i < config_.n_layer; ++i) {
      Tensor<T, 3> cache = state.memory.caches[static_cast<std::size_t>(i)];
      require(cache.shape() == Shape<3>{1, config_.mem_len, config_.d_model}, "state: a layer memory has shape ",
              to_string(cache.shape()), ", expected (1, ", config_.mem_len, ", ", config_.d_model, ")");
      const auto& layer = weights_.layers[static_cast<std::size_t>(i)];
      if (config_.pre_ln) layer_norm(cache, layer.norm1_weight, layer.norm1_bias);
      state.layers.push_back(attention_[static_cast<std::size_t>(i)].begin_decode(
          HostView<const T, 2>(cache.data(), Shape<2>{config_.mem_len, config_.d_model})));
    }
  }

  // run_layer for one token, through the layer's decoding state.
  Tensor<T, 3> run_layer_step(const LmLayerWeights<T>& layer, const ChunkedLSAttention<Backend, T>& attention,
                              Tensor<T, 3> h, typename ChunkedLSAttention<Backend, T>::DecodeState& decode) const {
    const index_t d = config_.d_model;
    auto attend = [&](const Tensor<T, 3>& input) {
      const auto out = attention.step(HostView<const T, 1>(input.data(), Shape<1>{d}), decode);
      return Tensor<T, 3>(Shape<3>{1, 1, d}, std::vector<T>(out.begin(), out.end()));
    };
    if (config_.pre_ln) {
      layer_norm(h, layer.norm1_weight, layer.norm1_bias);
      add(h, attend(h));
      layer_norm(h, layer.norm2_weight, layer.norm2_bias);
      add(h, feed_forward(layer, h));
    } else {
      add(h, attend(h));
      layer_norm(h, layer.norm1_weight, layer.norm1_bias);
      add(h, feed_forward(layer, h));
      layer_norm(h, layer.norm2_weight, layer.norm2_bias);
    }
    return h;
  }

  // One layer (spec §2.6). pre_ln: hn = LN1(h), h = hn + attn(hn, LN1(cache)), hn2 = LN2(h),
  // out = hn2 + ff(hn2). Otherwise: h = LN1(h + attn(h, cache)), out = LN2(h + ff(h)).
  Tensor<T, 3> run_layer(index_t index, const LmLayerWeights<T>& layer, Tensor<T, 3> h, const Tensor<T, 3>& cache,
                         CpuWorkspace& workspace) const {
    const auto& attention = attention_[static_cast<std::size_t>(index)];
    if (config_.pre_ln) {
      Tensor<T, 3> normalized_cache = cache;
      layer_norm(h, layer.norm1_weight, layer.norm1_bias);
      layer_norm(normalized_cache, layer.norm1_weight, layer.norm1_bias);
      add(h, attention.forward(h.view(), normalized_cache.view(), workspace));
      layer_norm(h, layer.norm2_weight, layer.norm2_bias);
      add(h, feed_forward(layer, h));
    } else {
      add(h, attention.forward(h.view(), cache.view(), workspace));
      layer_norm(h, layer.norm1_weight, layer.norm1_bias);
      add(h, feed_forward(layer, h));
      layer_norm(h, layer.norm2_weight, layer.norm2_bias);
    }
    return h;
  }

  Tensor<T, 3> feed_forward(const LmLayerWeights<T>& layer, const Tensor<T, 3>& x) const {
    const index_t rows = x.extent(0) * x.extent(1);
    Tensor<T, 3> hidden(Shape<3>{x.extent(0), x.extent(1), config_.d_inner}), out(x.shape());
    linear(x.data(), rows, layer.fc1_weight, layer.fc1_bias, hidden.data());
    for (T& v : hidden.values()) {
      // GELU in its exact erf form, as published; or ReLU.
      v = config_.use_gelu ? static_cast<T>(0.5 * v * (1.0 + std::erf(v / std::sqrt(2.0)))) : std::max(v, T(0));
    }
    linear(hidden.data(), rows, layer.fc2_weight, layer.fc2_bias, out.data());
    return out;
  }

  static void add(Tensor<T, 3>& target, const Tensor<T, 3>& source) {
    for (index_t i = 0; i < target.size(); ++i) target.values()[i] += source.values()[i];
  }

  LmConfig config_;
  LmWeights<T> weights_;
  std::vector<ChunkedLSAttention<Backend, T>> attention_;
};

}  // namespace lsattn::models::causal
