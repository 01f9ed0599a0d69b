#pragma once
// The causal chunked Transformer-LS attention layer of the character-level LM
// (autoregressive/model_lib/layer.py::ChunkedLSAttention), with the published parameter names.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <utility>

#include "lsattn/attention.hpp"
#include "lsattn/backend/cpu/workspace.hpp"
#include "lsattn/core/checks.hpp"
#include "lsattn/core/error.hpp"
#include "lsattn/core/tensor.hpp"
#include "lsattn/models/parameter_checks.hpp"
#include "lsattn/policy/positions.hpp"

namespace lsattn::models::causal {

// The published constructor arguments (spec §2.1).
struct Config {
  index_t n_head = 8;
  index_t d_model = 512;
  index_t chunk_size = 16;   // l
  index_t chunk_rank = 1;    // r
  index_t window_len = 512;  // w
  bool use_bias = false;
  index_t clamp_len = -1;
  index_t cpos_clamp_len = -1;
  int threads = 0;
  Precision precision = Precision::fp32;  // of the matrix products (bf16: CPU only)

  index_t head_dim() const { return n_head > 0 ? d_model / n_head : 0; }

  void validate() const {
    checked_size("n_head", n_head, 1);
    checked_size("d_model", d_model, 2);
    checked_size("chunk_size", chunk_size, 1);
    checked_size("chunk_rank", chunk_rank, 1);
    checked_size("window_len", window_len, 1);
    checked_size("clamp_len", clamp_len, -max_size);
    checked_size("cpos_clamp_len", cpos_clamp_len, -max_size);
    checked_product({{"d_model", d_model}, {"d_model", d_model}});
    checked_product({{"window_len", window_len}, {"d_model", d_model}});
    checked_product({{"chunk_rank", chunk_rank}, {"n_head", n_head}, {"d_model", d_model}});
    require(d_model % n_head == 0, "d_model (", d_model, ") must be divisible by n_head (", n_head, ")");
    require(d_model % 2 == 0, "d_model (", d_model, ") must be even: the position sinusoids are sin|cos halves");
    require(threads >= 0, "threads: must be >= 0 (0 = default), got ", threads);
  }

  AttentionConfig attention() const {
    return {n_head, head_dim(), window_len, chunk_rank, threads, chunk_size, clamp_len, cpos_clamp_len, precision};
  }
};

// Parameters under their state_dict names (spec §2.2); Linear weights are [out, in].
template <class T = float>
struct Weights {
  Tensor<T, 4> r_r_bias;  // [1, nh, 1, dh]: v, the position bias
  Tensor<T, 5> r_w_bias;  // [1, nh, 1, 1, dh]: u, the content bias
  Tensor<T, 2> dconv_1_weight, r_net_weight, r_net_chunk_weight;
  Tensor<T, 1> dconv_1_bias, r_net_chunk_bias;
  Tensor<T, 2> proj_query_weight, proj_key_weight, proj_val_weight, proj_out_weight;
  Tensor<T, 1> proj_query_bias, proj_key_bias, proj_val_bias, proj_out_bias;  // only with use_bias
  Tensor<T, 1> dual_ln_dproj_weight, dual_ln_dproj_bias, dual_ln_win_weight, dual_ln_win_bias;

  template <class Visitor>
  void for_each(const Config& config, Visitor&& visit) {
    const index_t d = config.d_model, nh = config.n_head, dh = config.head_dim();
    visit("r_r_bias", r_r_bias, Shape<4>{1, nh, 1, dh});
    visit("r_w_bias", r_w_bias, Shape<5>{1, nh, 1, 1, dh});
    visit("dconv_1.weight", dconv_1_weight, Shape<2>{nh * config.chunk_rank, d});
    visit("dconv_1.bias", dconv_1_bias, Shape<1>{nh * config.chunk_rank});
    visit("r_net.weight", r_net_weight, Shape<2>{d, d});
    visit("r_net_chunk.weight", r_net_chunk_weight, Shape<2>{d, d});
    visit("r_net_chunk.bias", r_net_chunk_bias, Shape<1>{d});
    visit("proj_query.weight", proj_query_weight, Shape<2>{d, d});
    visit("proj_key.weight", proj_key_weight, Shape<2>{d, d});
    visit("proj_val.weight", proj_val_weight, Shape<2>{d, d});
    visit("proj_out.weight", proj_out_weight, Shape<2>{d, d});
    if (config.use_bias) {
      visit("proj_query.bias", proj_query_bias, Shape<1>{d});
      visit("proj_key.bias", proj_key_bias, Shape<1>{d});
      visit("proj_val.bias", proj_val_bias, Shape<1>{d});
      visit("proj_out.bias", proj_out_bias, Shape<1>{d});
    }
    visit("dual_ln_dproj.weight", dual_ln_dproj_weight, Shape<1>{d});
    visit("dual_ln_dproj.bias", dual_ln_dproj_bias, Shape<1>{d});
    visit("dual_ln_win.weight", dual_ln_win_weight, Shape<1>{d});
    visit("dual_ln_win.bias", dual_ln_win_bias, Shape<1>{d});
  }

  // Deterministic random parameters (demos, tests): Linear ~ N(0, 1/√D), biases ~ N(0, 0.1),
  // LN ~ N(1, 0.1) / N(0, 0.1).
  static Weights random(const Config& config, std::uint64_t seed) {
    Weights weights;
    std::mt19937_64 generator(seed);
    const double linear_std = 1.0 / std::sqrt(static_cast<double>(config.d_model));
    weights.for_each(config, [&](const std::string& name, auto& tensor, const auto& shape) {
      const bool is_norm_weight = name.rfind("dual_ln", 0) == 0 && name.ends_with(".weight");
      const bool is_matrix = shape.size() == 2;
      std::normal_distribution<double> normal(is_norm_weight ? 1.0 : 0.0, is_matrix ? linear_std : 0.1);
      tensor = std::remove_reference_t<decltype(tensor)>(shape);
      for (auto& v : tensor.values()) v = static_cast<T>(normal(generator));
    });
    return weights;
  }
};

// Every parameter with its shape and finite; the projection biases empty without use_bias, so
// that given ones are never silently ignored.
template <class T>
void require_valid_weights(const Config& config, Weights<T>& weights) {
  detail::require_valid_parameters(weights, config);
  if (config.use_bias) return;
  for (const auto& [tensor, name] :
       {std::pair{&weights.proj_query_bias, "proj_query.bias"}, std::pair{&weights.proj_key_bias, "proj_key.bias"},
        std::pair{&weights.proj_val_bias, "proj_val.bias"}, std::pair{&weights.proj_out_bias, "proj_out.bias"}}) {
    detail::require_unused_empty(*tensor, name, "use_bias = false");
  }
}

// ChunkedLSAttention(...).forward(h, h_cache): h (B, L, D) the segment, h_cache (B, M, D) the
// memory; returns (B, L, D). Any L ≥ 1 and any M with M % l == 0 (M = 0 allowed).
template <class Backend, class T = float>
class ChunkedLSAttention {
 public:
  using space = typename Backend::memory_space;
  using Attention = LongShortAttention<Backend, T, CausalWindow, ChunkedProjection, DualLayerNorm>;

  ChunkedLSAttention(const Config& config, Weights<T> weights)
      : config_((config.validate(), config)), weights_(std::move(weights)), attention_(config.attention()) {
    require_valid_weights(config_, weights_);
  }

  const Config& config() const { return config_; }
  const Weights<T>& weights() const { return weights_; }

  Tensor<T, 3> forward(HostView<const T, 3> h, HostView<const T, 3> h_cache) const {
    CpuWorkspace scratch;
    return forward(h, h_cache, scratch);
  }

  // The same, with the intermediate tensors in `workspace` (see lra::AttentionLS::forward).
  Tensor<T, 3> forward(HostView<const T, 3> h, HostView<const T, 3> h_cache, CpuWorkspace& workspace) const {
    const index_t d = config_.d_model, l = config_.chunk_size, r = config_.chunk_rank, nh = config_.n_head;
    require(h.extent(0) >= 1, "h: batch size must be >= 1, got shape ", to_string(h.shape()));
    require(h.extent(1) >= 1, "h: segment length must be >= 1, got shape ", to_string(h.shape()));
    require(h.extent(2) == d, "h: expected feature size d_model = ", d, ", got shape ", to_string(h.shape()));
    const index_t batch = h.extent(0), length = h.extent(1);
    // A null view means no cache (M = 0); a given one must be (B, M, D), so a (0, 0, 0) cache
    // is an error rather than "no cache".
    if (h_cache.empty()) h_cache = HostView<const T, 3>(nullptr, Shape<3>{batch, 0, d});
    require(h_cache.shape() == Shape<3>{batch, h_cache.extent(1), d}, "h_cache: expected shape (", batch, ", M, ", d,
            "), got ", to_string(h_cache.shape()));
    const index_t cache = h_cache.extent(1);
    require(cache % l == 0, "h_cache: its length M = ", cache, " must be a multiple of chunk_size = ", l,
            " (the cache is compressed in whole chunks)");
    detail::require_finite(h, "h", config_.threads);
    detail::require_finite(h_cache, "h_cache", config_.threads);

    const int threads = config_.threads;
    const index_t cache_window = std::min(cache, config_.window_len), window_rows = cache_window + length;
    const index_t cache_chunks = cache / l, segment_chunks = length / l, chunks = cache_chunks + segment_chunks;
    auto linear = [&](const T* x, index_t rows, const Tensor<T, 2>& w, const Tensor<T, 1>& bias, T* y) {
      detail::LinearOp<Backend>::run(x, rows, w.extent(1), w.data(), bias.size() ? bias.data() : nullptr, w.extent(0), y,
                                     threads, config_.precision);
    };

    // Workspace tensors: each is written whole (a linear layer, copies, the chunk compression,
    // the sinusoids, the attention) before it is read.
    const CpuWorkspace::Frame frame(workspace);
    auto take = [&](const Shape<3>& shape) { return HostView<T, 3>(workspace.take<T>(element_count(shape)), shape); };
    auto take_table = [&](const Shape<2>& shape) { return HostView<T, 2>(workspace.take<T>(element_count(shape)), shape); };
    const HostView<T, 3> query = take(Shape<3>{batch, length, d});
    linear(h.data(), batch * length, weights_.proj_query_weight, weights_.proj_query_bias, query.data());

    // Window rows: the last min(M, w) cache rows, then the segment (step 3).
    const HostView<T, 3> window_input = take(Shape<3>{batch, window_rows, d}), window_key = take(window_input.shape()),
                         window_value = take(window_input.shape());
    for (index_t b = 0; b < batch; ++b) {
      std::copy_n(h_cache.address(b, cache - cache_window, 0), cache_window * d, window_input.address(b, 0, 0));
      std::copy_n(h.address(b, 0, 0), length * d, window_input.address(b, cache_window, 0));
    }
    linear(window_input.data(), batch * window_rows, weights_.proj_key_weight, weights_.proj_key_bias, window_key.data());
    linear(window_input.data(), batch * window_rows, weights_.proj_val_weight, weights_.proj_val_bias, window_value.data());

    // Compressed rows: cache chunks (raw slices, then projected; step 2), then the segment's
    // whole chunks (projected, then compressed; step 4). A partial last chunk is the own chunk
    // of its queries, so nobody in this segment sees it: it is not computed.
    const HostView<T, 3> compressed_key = take(Shape<3>{batch, chunks * r, d}), compressed_value = take(compressed_key.shape());
    if (cache_chunks > 0) {
      const CpuWorkspace::Frame cache_frame(workspace);
      const HostView<T, 3> logits = take(Shape<3>{batch, cache, nh * r}), summaries = take(Shape<3>{batch, cache_chunks * r, d});
      const HostView<T, 3> keys = take(summaries.shape()), values = take(summaries.shape());
      linear(h_cache.data(), batch * cache, weights_.dconv_1_weight, weights_.dconv_1_bias, logits.data());
      for (index_t b = 0; b < batch; ++b) {
        detail::CompressChunksOp<Backend>::run(logits.address(b, 0, 0), h_cache.address(b, 0, 0), d, cache_chunks, l, nh,
                                               config_.head_dim(), r, summaries.address(b, 0, 0), threads);
      }
      linear(summaries.data(), batch * cache_chunks * r, weights_.proj_key_weight, weights_.proj_key_bias, keys.data());
      linear(summaries.data(), batch * cache_chunks * r, weights_.proj_val_weight, weights_.proj_val_bias, values.data());
      for (index_t b = 0; b < batch; ++b) {
        std::copy_n(keys.address(b, 0, 0), cache_chunks * r * d, compressed_key.address(b, 0, 0));
        std::copy_n(values.address(b, 0, 0), cache_chunks * r * d, compressed_value.address(b, 0, 0));
      }
    }
    if (segment_chunks > 0) {
      const CpuWorkspace::Frame segment_frame(workspace);
      const HostView<T, 3> logits = take(Shape<3>{batch, length, nh * r});
      linear(h.data(), batch * length, weights_.dconv_1_weight, weights_.dconv_1_bias, logits.data());
      for (index_t b = 0; b < batch; ++b) {
        for (auto [source, target] : {std::pair{&window_key, &compressed_key}, std::pair{&window_value, &compressed_value}}) {
          detail::CompressChunksOp<Backend>::run(logits.address(b, 0, 0), source->address(b, cache_window, 0), d, segment_chunks, l,
                                                 nh, config_.head_dim(), r, target->address(b, cache_chunks * r, 0), threads);
        }
      }
    }

    // Position tables (steps 6–7): row δ = r_net(e(δ)), row p = r_net_chunk(e(p)), clamped.
    const TransformerXLPositions positions = TransformerXLPositions::from(config_.attention());
    const HostView<T, 2> window_sinusoids = take_table(Shape<2>{config_.window_len, d}),
                         window_positions = take_table(window_sinusoids.shape());
    for (index_t delta = 0; delta < config_.window_len; ++delta)
      TransformerXLPositions::sinusoid(positions.window_value(delta), d, window_sinusoids.address(delta, 0));
    linear(window_sinusoids.data(), config_.window_len, weights_.r_net_weight, {}, window_positions.data());
    const HostView<T, 2> chunk_sinusoids = take_table(Shape<2>{chunks * r, d}), chunk_positions = take_table(chunk_sinusoids.shape());
    for (index_t p = 0; p < chunks * r; ++p)
      TransformerXLPositions::sinusoid(positions.chunk_value(p), d, chunk_sinusoids.address(p, 0));
    linear(chunk_sinusoids.data(), chunks * r, weights_.r_net_chunk_weight, weights_.r_net_chunk_bias,
           chunk_positions.data());

    const CausalAttentionInputs<T, space> inputs{query,
                                                 window_key,
                                                 window_value,
                                                 compressed_key,
                                                 compressed_value,
                                                 cache,
                                                 {weights_.r_w_bias.data(), Shape<1>{d}},
                                                 {weights_.r_r_bias.data(), Shape<1>{d}},
                                                 window_positions,
                                                 chunk_positions};
    const typename Attention::CombinerParams norm{
        {weights_.dual_ln_win_weight.view(), weights_.dual_ln_win_bias.view(), 1e-5},
        {weights_.dual_ln_dproj_weight.view(), weights_.dual_ln_dproj_bias.view(), 1e-5}};
    const HostView<T, 3> context = take(Shape<3>{batch, length, d});
    Tensor<T, 3> y(Shape<3>{batch, length, d});
    detail::overflow_checked("causal::ChunkedLSAttention", [&] { attention_(inputs, norm, context, &workspace); });
    linear(context.data(), batch * length, weights_.proj_out_weight, weights_.proj_out_bias, y.data());
    detail::require_finite_output(std::as_const(y).view(), "causal::ChunkedLSAttention", config_.threads);
    return y;
  }

  // Decoding: the segment after a memory h_cache fed one token at a time, each step's output
  // equal to forward(h, h_cache)'s row at that position. The state keeps what the next token
  // can see, not the whole segment: the last w projected window rows, the compressed rows of
  // every complete chunk (r per chunk), the partial chunk's inputs and projected rows.
  struct DecodeState {
    index_t cache = 0;   // M, the memory's rows
    index_t length = 0;  // segment tokens fed so far
    std::vector<T> window_key, window_value;          // the last min(M + length, w) rows, oldest first
    std::vector<T> compressed_key, compressed_value;  // complete chunks · r rows
    std::vector<T> chunk_input, chunk_key, chunk_value;  // the partial chunk's rows
    std::vector<T> window_positions, chunk_positions;    // the position tables (rows as needed)

    std::size_t bytes() const {
      std::size_t total = 0;
      for (const auto* v : {&window_key, &window_value, &compressed_key, &compressed_value, &chunk_input, &chunk_key,
                            &chunk_value, &window_positions, &chunk_positions})
        total += v->size() * sizeof(T);
      return total;
    }
  };

  // h_cache (M, D) for one sequence, M % l == 0 (M = 0 allowed).
  DecodeState begin_decode(HostView<const T, 2> h_cache) const {
    const index_t d = config_.d_model, l = config_.chunk_size, r = config_.chunk_rank, nh = config_.n_head;
    const index_t cache = h_cache.empty() ? 0 : h_cache.extent(0);
    require(h_cache.empty() || h_cache.extent(1) == d, "h_cache: expected shape (M, d_model = ", d, "), got ",
            to_string(h_cache.shape()));
    require(cache % l == 0, "h_cache: its length M = ", cache, " must be a multiple of chunk_size = ", l);
    if (cache > 0) detail::require_finite(h_cache, "h_cache", config_.threads);
    DecodeState state;
    state.cache = cache;
    const index_t cache_window = std::min(cache, config_.window_len);
    state.window_key.resize(static_cast<std::size_t>(cache_window * d));
    state.window_value.resize(state.window_key.size());
    if (cache_window > 0) {
      linear(h_cache.address(cache - cache_window, 0), cache_window, weights_.proj_key_weight, weights_.proj_key_bias,
             state.window_key.data());
      linear(h_cache.address(cache - cache_window, 0), cache_window, weights_.proj_val_weight, weights_.proj_val_bias,
             state.window_value.data());
    }
    const index_t cache_chunks = cache / l;
    if (cache_chunks > 0) {  // raw slices compressed, then projected (spec §2.4 step 2)
      std::vector<T> logits(static_cast<std::size_t>(cache * nh * r)), summaries(static_cast<std::size_t>(cache_chunks * r * d));
      linear(h_cache.data(), cache, weights_.dconv_1_weight, weights_.dconv_1_bias, logits.data());
      detail::CompressChunksOp<Backend>::run(logits.data(), h_cache.data(), d, cache_chunks, l, nh, config_.head_dim(), r,
                                             summaries.data(), config_.threads);
      state.compressed_key.resize(summaries.size());
      state.compressed_value.resize(summaries.size());
      linear(summaries.data(), cache_chunks * r, weights_.proj_key_weight, weights_.proj_key_bias, state.compressed_key.data());
      linear(summaries.data(), cache_chunks * r, weights_.proj_val_weight, weights_.proj_val_bias,
             state.compressed_value.data());
    }
    const TransformerXLPositions positions = TransformerXLPositions::from(config_.attention());
    std::vector<T> sinusoids(static_cast<std::size_t>(config_.window_len * d));
    for (index_t delta = 0; delta < config_.window_len; ++delta)
      TransformerXLPositions::sinusoid(positions.window_value(delta), d, sinusoids.data() + delta * d);
    state.window_positions.resize(sinusoids.size());
    linear(sinusoids.data(), config_.window_len, weights_.r_net_weight, {}, state.window_positions.data());
    extend_chunk_positions(state, cache_chunks * r);
    return state;
  }

  // The next segment token's input row h (D) → its output row (D).
  std::vector<T> step(HostView<const T, 1> h, DecodeState& state) const {
    const index_t d = config_.d_model, l = config_.chunk_size, r = config_.chunk_rank, nh = config_.n_head;
    const index_t w = config_.window_len;
    require(h.extent(0) == d && h.data() != nullptr, "h: expected shape (d_model = ", d, "), got ", to_string(h.shape()));
    require(state.window_positions.size() == static_cast<std::size_t>(w * d),
            "state: not a decoding state of this layer (start from begin_decode())");
    detail::require_finite(h, "h", config_.threads);
    std::vector<T> query(static_cast<std::size_t>(d)), key(query.size()), value(query.size());
    linear(h.data(), 1, weights_.proj_query_weight, weights_.proj_query_bias, query.data());
    linear(h.data(), 1, weights_.proj_key_weight, weights_.proj_key_bias, key.data());
    linear(h.data(), 1, weights_.proj_val_weight, weights_.proj_val_bias, value.data());
    state.window_key.insert(state.window_key.end(), key.begin(), key.end());
    state.window_value.insert(state.window_value.end(), value.begin(), value.end());

    // This token is stream position M + length: for the executor, everything before it is cache.
    const index_t before = state.cache + state.length;
    const index_t window_rows = static_cast<index_t>(state.window_key.size()) / d;  // min(before, w) + 1
    const index_t compressed_rows = static_cast<index_t>(state.compressed_key.size()) / d;
    std::vector<T> context(static_cast<std::size_t>(d)), out(context.size());
    const CausalAttentionInputs<T, space> inputs{{query.data(), Shape<3>{1, 1, d}},
                                                 {state.window_key.data(), Shape<3>{1, window_rows, d}},
                                                 {state.window_value.data(), Shape<3>{1, window_rows, d}},
                                                 {state.compressed_key.data(), Shape<3>{1, compressed_rows, d}},
                                                 {state.compressed_value.data(), Shape<3>{1, compressed_rows, d}},
                                                 before,
                                                 {weights_.r_w_bias.data(), Shape<1>{d}},
                                                 {weights_.r_r_bias.data(), Shape<1>{d}},
                                                 {state.window_positions.data(), Shape<2>{w, d}},
                                                 {state.chunk_positions.data(), Shape<2>{compressed_rows, d}}};
    const typename Attention::CombinerParams norm{
        {weights_.dual_ln_win_weight.view(), weights_.dual_ln_win_bias.view(), 1e-5},
        {weights_.dual_ln_dproj_weight.view(), weights_.dual_ln_dproj_bias.view(), 1e-5}};
    detail::overflow_checked("causal::ChunkedLSAttention step",
                             [&] { attention_(inputs, norm, HostView<T, 3>(context.data(), Shape<3>{1, 1, d})); });
    linear(context.data(), 1, weights_.proj_out_weight, weights_.proj_out_bias, out.data());

    // The next token sees the last w rows; a completed chunk becomes r compressed rows, projected
    // rows compressed (spec §2.4 step 4), visible from the next chunk on.
    const index_t keep = std::min(window_rows, w);
    state.window_key.erase(state.window_key.begin(), state.window_key.end() - keep * d);
    state.window_value.erase(state.window_value.begin(), state.window_value.end() - keep * d);
    state.chunk_input.insert(state.chunk_input.end(), h.data(), h.data() + d);
    state.chunk_key.insert(state.chunk_key.end(), key.begin(), key.end());
    state.chunk_value.insert(state.chunk_value.end(), value.begin(), value.end());
    ++state.length;
    if (static_cast<index_t>(state.chunk_input.size()) == l * d) {
      std::vector<T> logits(static_cast<std::size_t>(l * nh * r)), compressed(static_cast<std::size_t>(r * d));
      linear(state.chunk_input.data(), l, weights_.dconv_1_weight, weights_.dconv_1_bias, logits.data());
      for (auto [source, target] : {std::pair{&state.chunk_key, &state.compressed_key},
                                    std::pair{&state.chunk_value, &state.compressed_value}}) {
        detail::CompressChunksOp<Backend>::run(logits.data(), source->data(), d, 1, l, nh, config_.head_dim(), r,
                                               compressed.data(), config_.threads);
        target->insert(target->end(), compressed.begin(), compressed.end());
      }
      state.chunk_input.clear();
      state.chunk_key.clear();
      state.chunk_value.clear();
      extend_chunk_positions(state, static_cast<index_t>(state.compressed_key.size()) / d);
    }
    detail::require_finite(HostView<const T, 1>(out.data(), Shape<1>{d}), "output");
    return out;
  }

 private:
  void linear(const T* x, index_t rows, const Tensor<T, 2>& w, const Tensor<T, 1>& bias, T* y) const {
    detail::LinearOp<Backend>::run(x, rows, w.extent(1), w.data(), bias.size() ? bias.data() : nullptr, w.extent(0), y,
                                   config_.threads, config_.precision);
  }

  // The chunk position table up to `rows` rows: row p = r_net_chunk(e(p)) (clamped).
  void extend_chunk_positions(DecodeState& state, index_t rows) const {
    const index_t d = config_.d_model, have = static_cast<index_t>(state.chunk_positions.size()) / d;
    if (rows <= have) return;
    const TransformerXLPositions positions = TransformerXLPositions::from(config_.attention());
    std::vector<T> sinusoids(static_cast<std::size_t>((rows - have) * d));
    for (index_t p = have; p < rows; ++p)
      TransformerXLPositions::sinusoid(positions.chunk_value(p), d, sinusoids.data() + (p - have) * d);
    state.chunk_positions.resize(static_cast<std::size_t>(rows * d));
    linear(sinusoids.data(), rows - have, weights_.r_net_chunk_weight, weights_.r_net_chunk_bias,
           state.chunk_positions.data() + have * d);
  }

  Config config_;
  Weights<T> weights_;
  Attention attention_;
};

}  // namespace lsattn::models::causal
