#pragma once
// The LS-attention GPT's configuration and parameters (models/ls_gpt.hpp has the model), apart so
// that the CUDA model (models/ls_gpt_cuda.cuh) shares them without the CPU backend. Both published
// versions' attention tensors reduce to one layout here: pack_attention().
#include <algorithm>
#include <cstdint>
#include <random>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "lsattn/core/checks.hpp"
#include "lsattn/core/config.hpp"
#include "lsattn/core/error.hpp"
#include "lsattn/core/limits.hpp"
#include "lsattn/core/tensor.hpp"

namespace lsattn::models::ls_gpt {

enum class Version { packed_heads, split_heads };

inline const char* version_name(Version version) {
  return version == Version::packed_heads ? "packed_heads (attn.c_attn, a1f13df)"
                                          : "split_heads (attn.c_local_attn / attn.c_global_attn)";
}

// GPTConfig's fields under their names, plus the library's choices.
struct Config {
  index_t block_size = 1024;  // positions wpe holds: the longest sequence
  index_t vocab_size = 50304;
  index_t n_layer = 12;
  index_t n_head = 12;
  index_t head_dim = 64;
  index_t n_embd = 768;
  index_t n_local_head = 3;     // heads 0 … n_local_head − 1 are local
  index_t local_attn_span = 30;
  bool bias = true;             // biases in the Linears and LayerNorms
  Version version = Version::split_heads;
  index_t local_window = 0;     // keys a local query sees, itself included; 0: the version's own
  int threads = 0;
  Precision precision = Precision::fp32;

  // Keys a local query sees, itself included: packed_heads span, split_heads span + 1.
  index_t window() const {
    if (local_window > 0) return local_window;
    return version == Version::packed_heads ? local_attn_span : local_attn_span + 1;
  }
  index_t attention_width() const { return n_head * head_dim; }
  index_t n_global_head() const { return n_head - n_local_head; }
  // The MLP is widened by what the attention saves when n_head · head_dim < n_embd.
  index_t mlp_width() const { return 4 * n_embd + 2 * (n_embd - head_dim * n_head); }

  void validate() const {
    checked_size("block_size", block_size, 1);
    checked_size("vocab_size", vocab_size, 1);
    checked_size("n_layer", n_layer, 1);
    checked_size("n_head", n_head, 1);
    checked_size("head_dim", head_dim, 1);
    checked_size("n_embd", n_embd, 1);
    checked_size("n_local_head", n_local_head);
    checked_size("local_attn_span", local_attn_span);
    checked_size("local_window", local_window);
    require(n_local_head <= n_head, "n_local_head (", n_local_head, ") must be at most n_head (", n_head, ")");
    require(n_local_head == 0 || window() >= 1, "local_attn_span: the ", version_name(version),
            " convention gives a window of ", window(), " keys; a local head needs at least 1 (set local_window)");
    const index_t width = checked_product({{"n_head", n_head}, {"head_dim", head_dim}});
    checked_product({{"3", 3}, {"n_head * head_dim", width}, {"n_embd", n_embd}});
    checked_product({{"vocab_size", vocab_size}, {"n_embd", n_embd}});
    checked_product({{"block_size", block_size}, {"n_embd", n_embd}});
    require(width < 3 * n_embd, "n_head * head_dim (", width, ") is too large for n_embd (", n_embd,
            "): the MLP width 4·n_embd + 2·(n_embd − n_head·head_dim) must be positive");
    checked_product({{"n_layer", n_layer}, {"mlp width", mlp_width()}, {"n_embd", n_embd}});
    require(threads >= 0, "threads: must be >= 0 (0 = default), got ", threads);
  }
};

// One block's parameters under their names below `transformer.h.<i>.`. Only the attention
// tensors of the config's version are used; the others stay empty.
template <class T = float>
struct BlockWeights {
  Tensor<T, 1> ln_1_weight, ln_1_bias, ln_2_weight, ln_2_bias;
  Tensor<T, 2> c_attn_weight, c_local_attn_weight, c_global_attn_weight, attn_c_proj_weight;
  Tensor<T, 1> c_attn_bias, c_local_attn_bias, c_global_attn_bias, attn_c_proj_bias;
  Tensor<T, 2> mlp_c_fc_weight, mlp_c_proj_weight;
  Tensor<T, 1> mlp_c_fc_bias, mlp_c_proj_bias;
};

template <class T = float>
struct Weights {
  Tensor<T, 2> wte, wpe, lm_head;
  Tensor<T, 1> ln_f_weight, ln_f_bias;
  std::vector<BlockWeights<T>> blocks;

  // Visits every parameter the config implies with its published name and shape.
  template <class Visitor>
  void for_each(const Config& config, Visitor&& visit) {
    const index_t d = config.n_embd, width = config.attention_width(), hd = config.head_dim;
    const index_t local = config.n_local_head * hd, global = config.n_global_head() * hd, inner = config.mlp_width();
    blocks.resize(static_cast<std::size_t>(config.n_layer));
    visit("transformer.wte.weight", wte, Shape<2>{config.vocab_size, d});
    visit("transformer.wpe.weight", wpe, Shape<2>{config.block_size, d});
    for (index_t i = 0; i < config.n_layer; ++i) {
      auto& b = blocks[static_cast<std::size_t>(i)];
      const std::string p = "transformer.h." + std::to_string(i) + ".";
      visit(p + "ln_1.weight", b.ln_1_weight, Shape<1>{d});
      if (config.bias) visit(p + "ln_1.bias", b.ln_1_bias, Shape<1>{d});
      if (config.version == Version::packed_heads) {
        visit(p + "attn.c_attn.weight", b.c_attn_weight, Shape<2>{3 * width, d});
        if (config.bias) visit(p + "attn.c_attn.bias", b.c_attn_bias, Shape<1>{3 * width});
      } else {
        if (local > 0) {
          visit(p + "attn.c_local_attn.weight", b.c_local_attn_weight, Shape<2>{3 * local, d});
          if (config.bias) visit(p + "attn.c_local_attn.bias", b.c_local_attn_bias, Shape<1>{3 * local});
        }
        if (global > 0) {
          visit(p + "attn.c_global_attn.weight", b.c_global_attn_weight, Shape<2>{3 * global, d});
          if (config.bias) visit(p + "attn.c_global_attn.bias", b.c_global_attn_bias, Shape<1>{3 * global});
        }
      }
      visit(p + "attn.c_proj.weight", b.attn_c_proj_weight, Shape<2>{d, width});
      if (config.bias) visit(p + "attn.c_proj.bias", b.attn_c_proj_bias, Shape<1>{d});
      visit(p + "ln_2.weight", b.ln_2_weight, Shape<1>{d});
      if (config.bias) visit(p + "ln_2.bias", b.ln_2_bias, Shape<1>{d});
      visit(p + "mlp.c_fc.weight", b.mlp_c_fc_weight, Shape<2>{inner, d});
      if (config.bias) visit(p + "mlp.c_fc.bias", b.mlp_c_fc_bias, Shape<1>{inner});
      visit(p + "mlp.c_proj.weight", b.mlp_c_proj_weight, Shape<2>{d, inner});
      if (config.bias) visit(p + "mlp.c_proj.bias", b.mlp_c_proj_bias, Shape<1>{d});
    }
    visit("transformer.ln_f.weight", ln_f_weight, Shape<1>{d});
    if (config.bias) visit("transformer.ln_f.bias", ln_f_bias, Shape<1>{d});
    visit("lm_head.weight", lm_head, Shape<2>{config.vocab_size, d});
  }

  // Deterministic random parameters (demos, tests, benchmarks): Linear and embeddings
  // ~ N(0, 0.02), LayerNorm weights ~ N(1, 0.1), biases ~ N(0, 0.02).
  static Weights random(const Config& config, std::uint64_t seed) {
    Weights weights;
    std::mt19937_64 generator(seed);
    weights.for_each(config, [&](const std::string& name, auto& tensor, const auto& shape) {
      const bool norm_weight = name.find(".ln_") != std::string::npos && name.ends_with(".weight");
      std::normal_distribution<double> normal(norm_weight ? 1.0 : 0.0, norm_weight ? 0.1 : 0.02);
      tensor = std::remove_reference_t<decltype(tensor)>(shape);
      for (auto& v : tensor.values()) v = static_cast<T>(normal(generator));
    });
    return weights;
  }
};

// Token ids a forward takes (CPU and CUDA alike): a non-empty (B, T) batch in the vocabulary,
// positions first_position … first_position + T − 1 within block_size.
inline void require_tokens(const Config& config, HostView<const std::int64_t, 2> tokens, index_t first_position) {
  require(tokens.extent(0) >= 1 && tokens.extent(1) >= 1, "tokens: expected a non-empty (B, T) batch, got ",
          to_string(tokens.shape()));
  require(tokens.data() != nullptr, "tokens: null data pointer");
  require(first_position + tokens.extent(1) <= config.block_size, "tokens: length ", tokens.extent(1),
          " exceeds block_size = ", config.block_size, " (the learned positions end there)");
  for (index_t i = 0; i < tokens.size(); ++i) {
    const std::int64_t id = tokens.data()[i];
    require(id >= 0 && id < config.vocab_size, "tokens: id ", id, " at (", i / tokens.extent(1), ", ",
            i % tokens.extent(1), ") is outside the vocabulary [0, ", config.vocab_size, ")");
  }
}

// A block's attention input projection in the layout both versions reduce to: [q; k; v] of all
// heads, local heads first (packed_heads already is; split_heads' local and global packs are
// interleaved part by part). Moves out of the block's version-specific tensors.
template <class T>
struct PackedAttention {
  Tensor<T, 2> weight;  // (3 · n_head · head_dim, n_embd)
  Tensor<T, 1> bias;    // empty without bias
};

template <class T>
PackedAttention<T> pack_attention(const Config& config, BlockWeights<T>& b) {
  if (config.version == Version::packed_heads) return {std::move(b.c_attn_weight), std::move(b.c_attn_bias)};
  const index_t d = config.n_embd, width = config.attention_width();
  const index_t local = config.n_local_head * config.head_dim, global = width - local;
  PackedAttention<T> packed{Tensor<T, 2>(Shape<2>{3 * width, d}), {}};
  const bool has_bias = config.bias;
  if (has_bias) packed.bias = Tensor<T, 1>(Shape<1>{3 * width});
  for (index_t s = 0; s < 3; ++s) {  // part s (q, k, v) of each head group
    if (local > 0) {
      std::copy_n(b.c_local_attn_weight.address(s * local, 0), local * d, packed.weight.address(s * width, 0));
      if (has_bias) std::copy_n(b.c_local_attn_bias.data() + s * local, local, packed.bias.data() + s * width);
    }
    if (global > 0) {
      std::copy_n(b.c_global_attn_weight.address(s * global, 0), global * d, packed.weight.address(s * width + local, 0));
      if (has_bias) std::copy_n(b.c_global_attn_bias.data() + s * global, global, packed.bias.data() + s * width + local);
    }
  }
  return packed;
}

}  // namespace lsattn::models::ls_gpt
