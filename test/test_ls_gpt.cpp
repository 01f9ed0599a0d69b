// The LS-attention GPT against a float64 oracle written from the published description
// (nanoGPT model_localAttn.py, both versions), and its decoding: step by step equals the whole
// forward at every position, across window boundaries.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "lsattn/lsattn.hpp"
#include "lsattn/models/ls_gpt.hpp"
#include "lsattn/models/ls_heads.hpp"
#include "lsattn/models/sampling.hpp"
#include "oracle_lra.hpp"
#include "test_helpers.hpp"

namespace {

using lsattn::index_t;
using lsattn::Shape;
using lsattn::Tensor;
namespace gpt = lsattn::models::ls_gpt;
using Matrix = std::vector<std::vector<double>>;

// ---- The oracle: dense float64, explicit masks, the published tensors as they are. ----

// The published tensors into the dense oracle's helpers (oracle_lra.hpp); an absent bias
// (bias = False) is zeros.
std::vector<double> bias_or_zeros(const Tensor<float, 1>& b, index_t size) {
  return b.size() ? test_helpers::flat(b) : std::vector<double>(static_cast<std::size_t>(size), 0.0);
}

std::vector<double> layer_norm(const std::vector<double>& x, const Tensor<float, 1>& w, const Tensor<float, 1>& b) {
  return oracle::layer_norm(x, test_helpers::flat(w), bias_or_zeros(b, w.size()));
}

// y = W x + b for W [out, in].
std::vector<double> linear(const std::vector<double>& x, const Tensor<float, 2>& w, const Tensor<float, 1>& b) {
  return oracle::linear(x, test_helpers::to_matrix(w), bias_or_zeros(b, w.extent(0)));
}

// Whether query i may see key j in head h: causal; a local head also bounds the distance.
// packed_heads (a1f13df): the buffer tril(1) · (1 − tril(1, −span)), i.e. i − span < j ≤ i;
// split_heads: FlashAttention window_size = (span, 0), i.e. i − span ≤ j ≤ i. `keys` > 0
// overrides both: i − keys < j ≤ i.
bool visible(const gpt::Config& c, index_t h, index_t i, index_t j, index_t keys) {
  if (j > i) return false;
  if (h >= c.n_local_head) return true;
  if (keys > 0) return j > i - keys;
  return c.version == gpt::Version::packed_heads ? j > i - c.local_attn_span : j >= i - c.local_attn_span;
}

// logits (T × vocab) of one sequence.
Matrix oracle_forward(const gpt::Config& c, const gpt::Weights<float>& w, const std::vector<std::int64_t>& tokens) {
  const index_t length = static_cast<index_t>(tokens.size()), d = c.n_embd, hd = c.head_dim, nh = c.n_head;
  const index_t width = nh * hd, n_local = c.n_local_head, local = n_local * hd, global = width - local;
  Matrix x(length, std::vector<double>(d));
  for (index_t t = 0; t < length; ++t)
    for (index_t f = 0; f < d; ++f) x[t][f] = double(w.wte(tokens[t], f)) + double(w.wpe(t, f));
  for (const auto& b : w.blocks) {
    // q, k, v of every head h (h < n_local: local), each T × hd.
    std::vector<Matrix> q(nh, Matrix(length, std::vector<double>(hd))), k = q, v = q;
    for (index_t t = 0; t < length; ++t) {
      const auto h1 = layer_norm(x[t], b.ln_1_weight, b.ln_1_bias);
      auto take = [&](const std::vector<double>& packed, index_t heads, index_t first_head) {
        // packed = [q of `heads` heads | k | v], as .view(B, T, 3, heads, hd) reads it.
        for (index_t s = 0; s < 3; ++s)
          for (index_t g = 0; g < heads; ++g)
            for (index_t f = 0; f < hd; ++f) {
              const double value = packed[(s * heads + g) * hd + f];
              (s == 0 ? q : s == 1 ? k : v)[first_head + g][t][f] = value;
            }
      };
      if (c.version == gpt::Version::packed_heads) {
        take(linear(h1, b.c_attn_weight, b.c_attn_bias), nh, 0);
      } else {
        if (local > 0) take(linear(h1, b.c_local_attn_weight, b.c_local_attn_bias), n_local, 0);
        if (global > 0) take(linear(h1, b.c_global_attn_weight, b.c_global_attn_bias), nh - n_local, n_local);
      }
    }
    for (index_t t = 0; t < length; ++t) {
      std::vector<double> y(width, 0.0);  // heads side by side, local first
      for (index_t h = 0; h < nh; ++h) {
        std::vector<double> scores(length, -INFINITY);
        double top = -INFINITY;
        for (index_t j = 0; j < length; ++j) {
          if (!visible(c, h, t, j, c.local_window)) continue;
          double dot = 0;
          for (index_t f = 0; f < hd; ++f) dot += q[h][t][f] * k[h][j][f];
          scores[j] = dot / std::sqrt(double(hd));
          top = std::max(top, scores[j]);
        }
        double total = 0;
        for (double& s : scores) total += (s = std::exp(s - top));
        for (index_t j = 0; j < length; ++j)
          for (index_t f = 0; f < hd; ++f) y[h * hd + f] += scores[j] / total * v[h][j][f];
      }
      const auto out = linear(y, b.attn_c_proj_weight, b.attn_c_proj_bias);
      for (index_t f = 0; f < d; ++f) x[t][f] += out[f];
    }
    for (index_t t = 0; t < length; ++t) {
      auto hidden = linear(layer_norm(x[t], b.ln_2_weight, b.ln_2_bias), b.mlp_c_fc_weight, b.mlp_c_fc_bias);
      for (double& h : hidden) h = 0.5 * h * (1.0 + std::erf(h / std::sqrt(2.0)));
      const auto out = linear(hidden, b.mlp_c_proj_weight, b.mlp_c_proj_bias);
      for (index_t f = 0; f < d; ++f) x[t][f] += out[f];
    }
  }
  Matrix logits;
  for (index_t t = 0; t < length; ++t)
    logits.push_back(linear(layer_norm(x[t], w.ln_f_weight, w.ln_f_bias), w.lm_head, Tensor<float, 1>{}));
  return logits;
}

gpt::Config random_config(std::mt19937_64& rng, gpt::Version version) {
  gpt::Config c;
  c.version = version;
  c.n_head = 1 + rng() % 4;
  c.head_dim = 2 + rng() % 5;
  c.n_embd = c.n_head * c.head_dim + rng() % 5;  // n_head·head_dim < n_embd widens the MLP
  c.n_local_head = rng() % (c.n_head + 1);
  c.local_attn_span = (version == gpt::Version::packed_heads ? 1 : 0) + rng() % 6;
  c.n_layer = 1 + rng() % 2;
  c.vocab_size = 5 + rng() % 20;
  c.block_size = 40;
  c.bias = rng() % 2;
  return c;
}

std::vector<std::int64_t> random_tokens(std::mt19937_64& rng, index_t length, index_t vocab) {
  std::vector<std::int64_t> tokens(static_cast<std::size_t>(length));
  for (auto& t : tokens) t = static_cast<std::int64_t>(rng() % vocab);
  return tokens;
}

// max |got − want| / max(1, max |want|).
double relative_error(const Tensor<float, 3>& got, index_t b, const Matrix& want) {
  double worst = 0, scale = 1;
  for (const auto& row : want)
    for (double v : row) scale = std::max(scale, std::abs(v));
  for (std::size_t t = 0; t < want.size(); ++t)
    for (std::size_t j = 0; j < want[t].size(); ++j)
      worst = std::max(worst, std::abs(got(b, index_t(t), index_t(j)) - want[t][j]));
  return worst / scale;
}

std::string describe(const gpt::Config& c) {
  return std::string(gpt::version_name(c.version)) + " n_head " + std::to_string(c.n_head) + " head_dim " +
         std::to_string(c.head_dim) + " n_embd " + std::to_string(c.n_embd) + " n_local_head " +
         std::to_string(c.n_local_head) + " span " + std::to_string(c.local_attn_span) + " window " +
         std::to_string(c.window()) + " bias " + std::to_string(c.bias) + " layers " + std::to_string(c.n_layer);
}

}  // namespace

TEST_CASE("LS GPT matches the float64 oracle in both published versions", "[ls_gpt][oracle]") {
  std::mt19937_64 rng(2025);
  for (const auto version : {gpt::Version::packed_heads, gpt::Version::split_heads}) {
    for (int trial = 0; trial < 12; ++trial) {
      auto c = random_config(rng, version);
      if (trial % 4 == 3) c.local_window = 1 + rng() % 7;  // the number of keys stated explicitly
      INFO(describe(c));
      const auto weights = gpt::Weights<float>::random(c, rng());
      const gpt::LsGpt<float> model(c, weights);
      const index_t length = 1 + rng() % c.block_size;
      Tensor<std::int64_t, 2> tokens(Shape<2>{2, length});
      std::vector<std::vector<std::int64_t>> rows;
      for (index_t b = 0; b < 2; ++b) {
        rows.push_back(random_tokens(rng, length, c.vocab_size));
        std::copy(rows.back().begin(), rows.back().end(), tokens.address(b, 0));
      }
      const auto logits = model.forward(tokens.view());
      for (index_t b = 0; b < 2; ++b) CHECK(relative_error(logits, b, oracle_forward(c, weights, rows[b])) < 1e-5);
    }
  }
}

TEST_CASE("the two window conventions differ by one key and local_window states it", "[ls_gpt][window]") {
  gpt::Config c;
  c.local_attn_span = 4;
  c.version = gpt::Version::packed_heads;
  CHECK(c.window() == 4);  // keys i − 3 … i
  c.version = gpt::Version::split_heads;
  CHECK(c.window() == 5);  // keys i − 4 … i
  c.local_window = 2;
  CHECK(c.window() == 2);
  // The oracle's masks agree: query 10 of a local head.
  gpt::Config packed = c, split = c;
  packed.version = gpt::Version::packed_heads;
  packed.local_window = split.local_window = 0;
  split.version = gpt::Version::split_heads;
  packed.n_local_head = split.n_local_head = 1;
  std::vector<index_t> seen_packed, seen_split;
  for (index_t j = 0; j <= 10; ++j) {
    if (visible(packed, 0, 10, j, 0)) seen_packed.push_back(j);
    if (visible(split, 0, 10, j, 0)) seen_split.push_back(j);
  }
  CHECK(seen_packed == std::vector<index_t>{7, 8, 9, 10});
  CHECK(seen_split == std::vector<index_t>{6, 7, 8, 9, 10});
}

TEST_CASE("decoding step by step equals the whole forward at every position", "[ls_gpt][decode]") {
  std::mt19937_64 rng(7);
  for (const auto version : {gpt::Version::packed_heads, gpt::Version::split_heads}) {
    for (int trial = 0; trial < 8; ++trial) {
      auto c = random_config(rng, version);
      INFO(describe(c));
      const gpt::LsGpt<float> model(c, gpt::Weights<float>::random(c, rng()));
      const index_t length = c.block_size;  // crosses every window boundary
      const auto row = random_tokens(rng, length, c.vocab_size);
      Tensor<std::int64_t, 2> tokens(Shape<2>{1, length});
      std::copy(row.begin(), row.end(), tokens.data());
      const auto logits = model.forward(tokens.view());
      auto state = model.initial_state();
      for (index_t t = 0; t < length; ++t) {
        const auto step = model.step(row[t], state);
        double worst = 0, scale = 1e-30;
        for (index_t j = 0; j < c.vocab_size; ++j) {
          worst = std::max(worst, double(std::abs(step[j] - logits(0, t, j))));
          scale = std::max(scale, double(std::abs(logits(0, t, j))));
        }
        INFO("position " << t);
        REQUIRE(worst <= 1e-5 * scale);
        // Local heads' memory stops growing at the window; only global heads keep growing.
        std::size_t local = 0;
        for (const auto& layer : state.layers) local += layer.local_keys.size();
        const auto rows = static_cast<std::size_t>(std::min(t + 1, c.window()));
        REQUIRE(local == rows * static_cast<std::size_t>(c.n_layer * c.n_local_head * c.head_dim));
      }
      const std::size_t global_rows = state.layers[0].global_keys.size();
      CHECK(global_rows == static_cast<std::size_t>(length * (c.n_head - c.n_local_head) * c.head_dim));
      CHECK_THROWS_WITH(model.step(0, state), Catch::Contains("block_size"));
    }
  }
}

TEST_CASE("LS GPT results do not depend on the thread count, and bf16 stays close", "[ls_gpt][threads]") {
  std::mt19937_64 rng(11);
  auto c = random_config(rng, gpt::Version::split_heads);
  c.block_size = 300;
  c.n_embd = 40;
  c.n_head = 4;
  c.head_dim = 8;
  c.n_local_head = 2;
  const auto weights = gpt::Weights<float>::random(c, 3);
  const auto row = random_tokens(rng, 300, c.vocab_size);
  Tensor<std::int64_t, 2> tokens(Shape<2>{1, 300});
  std::copy(row.begin(), row.end(), tokens.data());
  c.threads = 1;
  const auto one = gpt::LsGpt<float>(c, weights).forward(tokens.view());
  c.threads = 2;
  const auto two = gpt::LsGpt<float>(c, weights).forward(tokens.view());
  CHECK(one.values() == two.values());
  c.precision = lsattn::Precision::bf16;
  const auto reduced = gpt::LsGpt<float>(c, weights).forward(tokens.view());
  const double error = relative_error(reduced, 0, oracle_forward(c, weights, row));
  CHECK(error < 1.0 / 32);
  CHECK(error > 1e-5);  // bf16 was in effect
}

TEST_CASE("LS GPT configuration and input errors name the parameter", "[ls_gpt][errors]") {
  gpt::Config c;
  c.block_size = 8;
  c.vocab_size = 10;
  c.n_layer = 1;
  c.n_head = 2;
  c.head_dim = 4;
  c.n_embd = 8;
  c.n_local_head = 1;
  c.local_attn_span = 2;
  const auto weights = gpt::Weights<float>::random(c, 1);
  const gpt::LsGpt<float> model(c, weights);
  Tensor<std::int64_t, 2> too_long(Shape<2>{1, 9});
  CHECK_THROWS_WITH(model.forward(too_long.view()), Catch::Contains("block_size"));
  Tensor<std::int64_t, 2> bad(Shape<2>{1, 3});
  bad(0, 1) = 10;
  CHECK_THROWS_WITH(model.forward(bad.view()), Catch::Contains("vocabulary") && Catch::Contains("(0, 1)"));
  auto state = model.initial_state();
  CHECK_THROWS_WITH(model.step(-1, state), Catch::Contains("vocabulary"));
  gpt::DecodeState<float> foreign;
  CHECK_THROWS_WITH(model.step(0, foreign), Catch::Contains("initial_state"));

  auto wrong = c;
  wrong.n_local_head = 3;
  CHECK_THROWS_WITH(gpt::LsGpt<float>(wrong, weights), Catch::Contains("n_local_head"));
  wrong = c;
  wrong.version = gpt::Version::packed_heads;
  wrong.local_attn_span = 0;  // span keys: none
  CHECK_THROWS_WITH(wrong.validate(), Catch::Contains("local_attn_span") && Catch::Contains("0 keys"));
  wrong = c;
  wrong.n_head = 7;  // 7·4 > 3·8: the MLP width would not be positive
  CHECK_THROWS_WITH(wrong.validate(), Catch::Contains("n_head * head_dim"));
  auto misshaped = weights;
  misshaped.lm_head = Tensor<float, 2>(Shape<2>{9, 8});
  CHECK_THROWS_WITH(gpt::LsGpt<float>(c, misshaped), Catch::Contains("lm_head.weight"));
  auto poisoned = weights;
  poisoned.blocks[0].mlp_c_fc_weight(0, 0) = NAN;
  CHECK_THROWS_WITH(gpt::LsGpt<float>(c, poisoned), Catch::Contains("mlp.c_fc.weight"));
}

TEST_CASE("LS heads decode step by step like their causal forward", "[ls_gpt][ls_heads][decode]") {
  namespace ls = lsattn::models::ls_heads;
  std::mt19937_64 rng(19);
  for (int trial = 0; trial < 6; ++trial) {
    ls::Config c{24, 4, {}, 1 + static_cast<index_t>(rng() % 9), true, 0};
    for (index_t h = 0; h < 4; ++h)
      if (rng() % 2) c.local_heads.push_back(h);
    INFO("local heads " << c.local_heads.size() << " window " << c.window);
    const ls::LsHeadsAttention<lsattn::cpu, float> layer(c, ls::Weights<float>::random(c, rng()));
    const index_t length = 30;
    Tensor<float, 3> x(Shape<3>{1, length, 24});
    std::normal_distribution<float> normal(0.0f, 1.0f);
    for (float& v : x.values()) v = normal(rng);
    const auto whole = layer.forward(x.view());
    auto state = layer.initial_state();
    for (index_t t = 0; t < length; ++t) {
      const auto y = layer.step(lsattn::HostView<const float, 1>(x.address(0, t, 0), Shape<1>{24}), state);
      for (index_t f = 0; f < 24; ++f) REQUIRE(std::abs(y[f] - whole(0, t, f)) <= 1e-5 * (1 + std::abs(whole(0, t, f))));
    }
    CHECK(state.bytes() == (c.local_heads.size() * std::min(c.window, length) + (4 - c.local_heads.size()) * length) * 6 *
                               2 * sizeof(float));
  }
  ls::Config bidirectional{24, 4, {0}, 4, false, 0};
  const ls::LsHeadsAttention<lsattn::cpu, float> layer(bidirectional, ls::Weights<float>::random(bidirectional, 1));
  CHECK_THROWS_WITH(layer.initial_state(), Catch::Contains("causal"));
  // A window far larger than any sequence costs nothing until tokens fill it.
  ls::Config huge{24, 4, {0, 1}, lsattn::max_size, true, 0};
  const ls::LsHeadsAttention<lsattn::cpu, float> wide(huge, ls::Weights<float>::random(huge, 2));
  auto state = wide.initial_state();
  const std::vector<float> row(24, 0.5f);
  wide.step(lsattn::HostView<const float, 1>(row.data(), Shape<1>{24}), state);
  CHECK(state.bytes() == 4 * 6 * 2 * sizeof(float));
}

TEST_CASE("sampling: greedy is argmax, seeds reproduce, top-k and top-p restrict", "[ls_gpt][sampling]") {
  namespace models = lsattn::models;
  const std::vector<float> logits{0.5f, 2.0f, -1.0f, 2.0f, 1.0f};
  models::Sampler greedy({0.0, 0, 1.0, 1});
  CHECK(greedy.next(logits) == 1);  // ties go to the lowest index
  auto draw = [&](models::SamplingOptions options, int count) {
    models::Sampler sampler(options);
    std::vector<index_t> tokens;
    for (int i = 0; i < count; ++i) tokens.push_back(sampler.next(logits));
    return tokens;
  };
  CHECK(draw({1.0, 0, 1.0, 42}, 50) == draw({1.0, 0, 1.0, 42}, 50));
  CHECK(draw({1.0, 0, 1.0, 42}, 50) != draw({1.0, 0, 1.0, 43}, 50));
  for (index_t token : draw({1.0, 2, 1.0, 5}, 200)) CHECK((token == 1 || token == 3));  // top-2: the two 2.0s
  // top-p 0.5: the two largest carry 2·e²/(…) ≈ 0.757 ≥ 0.5, the first alone ≈ 0.379 < 0.5.
  for (index_t token : draw({1.0, 0, 0.5, 6}, 200)) CHECK((token == 1 || token == 3));
  // Frequencies follow softmax: token 4 (logit 1) has e¹/(e^.5 + 2e² + e⁻¹ + e) ≈ 0.1393.
  const auto many = draw({1.0, 0, 1.0, 7}, 20000);
  const double share = std::count(many.begin(), many.end(), index_t{4}) / 20000.0;
  CHECK(std::abs(share - 0.1393) < 0.01);
  // A low temperature approaches greedy.
  for (index_t token : draw({0.01, 0, 1.0, 8}, 100)) CHECK((token == 1 || token == 3));
  CHECK_THROWS_WITH(models::Sampler({-1.0, 0, 1.0, 0}), Catch::Contains("temperature"));
  CHECK_THROWS_WITH(models::Sampler({1.0, -2, 1.0, 0}), Catch::Contains("top_k"));
  CHECK_THROWS_WITH(models::Sampler({1.0, 0, 0.0, 0}), Catch::Contains("top_p"));
  models::Sampler sampler({1.0, 0, 1.0, 0});
  CHECK_THROWS_WITH(sampler.next(std::vector<float>{1.0f, NAN}), Catch::Contains("non-finite"));
}

TEST_CASE("the causal Transformer-LS layer decodes a segment like its forward", "[decode][causal]") {
  namespace causal = lsattn::models::causal;
  std::mt19937_64 rng(23);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (int trial = 0; trial < 10; ++trial) {
    const index_t l = 1 + rng() % 4, cache = l * (rng() % 5), w = 1 + rng() % 9, length = 1 + rng() % 23;
    causal::Config c{2, 16, l, 1 + static_cast<index_t>(rng() % 2), w, trial % 2 == 0, -1, -1, 0};
    INFO("l " << l << " M " << cache << " w " << w << " L " << length << " r " << c.chunk_rank);
    const causal::ChunkedLSAttention<lsattn::cpu, float> layer(c, causal::Weights<float>::random(c, rng()));
    Tensor<float, 3> h(Shape<3>{1, length, 16}), memory(Shape<3>{1, cache, 16});
    for (float& v : h.values()) v = normal(rng);
    for (float& v : memory.values()) v = normal(rng);
    const auto whole = layer.forward(h.view(), memory.view());
    auto state = layer.begin_decode(lsattn::HostView<const float, 2>(memory.data(), Shape<2>{cache, 16}));
    for (index_t t = 0; t < length; ++t) {
      const auto y = layer.step(lsattn::HostView<const float, 1>(h.address(0, t, 0), Shape<1>{16}), state);
      for (index_t f = 0; f < 16; ++f) REQUIRE(std::abs(y[f] - whole(0, t, f)) <= 1e-5 * (1 + std::abs(whole(0, t, f))));
      // What the next token can see, not the segment: w window rows, a partial chunk.
      REQUIRE(state.window_key.size() <= static_cast<std::size_t>(w * 16));
      REQUIRE(state.chunk_input.size() < static_cast<std::size_t>(l * 16));
    }
  }
}

TEST_CASE("the Transformer-LS language model decodes its segments like its forward", "[decode][causal][lm]") {
  namespace causal = lsattn::models::causal;
  std::mt19937_64 rng(29);
  for (int trial = 0; trial < 6; ++trial) {
    causal::LmConfig c;
    c.vocab_size = 11;
    c.d_model = 16;
    c.n_head = 2;
    c.d_inner = 24;
    c.n_layer = 2;
    c.chunk_size = 1 + rng() % 4;
    c.chunk_rank = 1 + rng() % 2;
    c.window_len = 1 + rng() % 6;
    c.mem_len = c.chunk_size * (rng() % 4);
    c.pre_ln = trial % 2 == 0;
    c.use_gelu = trial % 3 != 0;
    c.use_bias = trial % 2 == 1;
    INFO("l " << c.chunk_size << " r " << c.chunk_rank << " w " << c.window_len << " mem " << c.mem_len << " pre_ln "
              << c.pre_ln);
    const causal::TransformerLSModel<lsattn::cpu, float> model(c, causal::LmWeights<float>::random(c, rng()));
    auto memory = model.initial_state(1);
    auto decode = model.initial_decode_state();
    for (int segment = 0; segment < 3; ++segment) {
      const index_t length = 1 + rng() % 13;  // multiples of chunk_size or not (then padded)
      Tensor<std::int64_t, 2> tokens(Shape<2>{1, length});
      for (auto& t : tokens.values()) t = static_cast<std::int64_t>(rng() % c.vocab_size);
      const auto whole = model.forward(tokens.view(), memory);
      for (index_t t = 0; t < length; ++t) {
        INFO("segment " << segment << " position " << t << " of " << length);
        const auto logprobs = model.step(tokens(0, t), decode);
        for (index_t v = 0; v < c.vocab_size; ++v)
          REQUIRE(std::abs(logprobs[v] - whole(0, t, v)) <= 1e-5 * (1 + std::abs(whole(0, t, v))));
      }
      model.end_segment(decode);
      for (index_t i = 0; i < c.n_layer; ++i) {
        const auto& want = memory.caches[static_cast<std::size_t>(i)];
        const auto& got = decode.memory.caches[static_cast<std::size_t>(i)];
        REQUIRE(got.shape() == want.shape());
        for (index_t k = 0; k < want.size(); ++k)
          REQUIRE(std::abs(got.values()[k] - want.values()[k]) <= 1e-5 * (1 + std::abs(want.values()[k])));
      }
    }
  }
}
