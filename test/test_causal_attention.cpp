// The causal chunked attention (spec §2.4) against the float64 oracle, and its error paths.
#include <catch2/catch.hpp>

#include <cmath>
#include <random>

#include "lsattn/lsattn.hpp"
#include "oracle_conversions.hpp"

namespace {

using lsattn::index_t;
using lsattn::Shape;
using lsattn::Tensor;
namespace causal = lsattn::models::causal;
using test_helpers::cast_weights;
using test_helpers::flat;
using test_helpers::to_matrix;
using test_helpers::to_oracle;




struct Case {
  causal::Config config;
  index_t batch, length, cache;
};

Tensor<float, 3> random_tensor(const Shape<3>& shape, std::mt19937_64& rng) {
  std::normal_distribution<double> normal(0.0, 1.0);
  Tensor<float, 3> t(shape);
  for (auto& v : t.values()) v = static_cast<float>(normal(rng));
  return t;
}

oracle::Matrix rows_of(const Tensor<float, 3>& t, index_t b) {
  oracle::Matrix m(t.extent(1), std::vector<double>(t.extent(2)));
  for (index_t i = 0; i < t.extent(1); ++i)
    for (index_t f = 0; f < t.extent(2); ++f) m[i][f] = t(b, i, f);
  return m;
}

template <class T>
double relative_error(const Tensor<T, 3>& got, const Case& c, const causal::Weights<float>& weights,
                      const Tensor<float, 3>& h, const Tensor<float, 3>& cache) {
  const oracle::CausalConfig oc = to_oracle(c.config);
  const auto ow = to_oracle(weights, c.config);
  double worst = 0;
  for (index_t b = 0; b < c.batch; ++b) {
    const auto want = oracle::causal_forward(oc, ow, rows_of(cache, b), rows_of(h, b));
    double scale = 1e-3;
    for (const auto& row : want)
      for (double v : row) scale = std::max(scale, std::abs(v));
    for (index_t t = 0; t < c.length; ++t)
      for (index_t f = 0; f < c.config.d_model; ++f)
        worst = std::max(worst, std::abs(static_cast<double>(got(b, t, f)) - want[t][f]) / scale);
  }
  return worst;
}

Case random_case(std::mt19937_64& rng) {
  auto pick = [&](std::initializer_list<int> options) {
    return static_cast<index_t>(options.begin()[std::uniform_int_distribution<size_t>(0, options.size() - 1)(rng)]);
  };
  Case c;
  c.config.n_head = pick({1, 2, 3});
  c.config.d_model = c.config.n_head * pick({2, 4});
  c.config.chunk_size = pick({1, 2, 3, 4});
  c.config.chunk_rank = pick({1, 2});
  c.config.window_len = pick({1, 2, 3, 5, 8});
  c.config.use_bias = pick({0, 1}) == 1;
  c.config.clamp_len = pick({-1, -1, 1, 3});
  c.config.cpos_clamp_len = pick({-1, -1, 2, 4});
  c.batch = pick({1, 2});
  c.length = pick({1, 2, 3, 4, 7, 8, 12, 16, 19});
  c.cache = c.config.chunk_size * pick({0, 1, 2, 3, 5});
  return c;
}

// The float layer on random weights (seed) and random h, cache (drawn from rng in that order),
// against the float64 oracle.
double float_layer_error(const Case& c, std::uint64_t weight_seed, std::mt19937_64& rng) {
  const auto weights = causal::Weights<float>::random(c.config, weight_seed);
  const auto h = random_tensor(Shape<3>{c.batch, c.length, c.config.d_model}, rng);
  const auto cache = random_tensor(Shape<3>{c.batch, c.cache, c.config.d_model}, rng);
  const causal::ChunkedLSAttention<lsattn::cpu, float> layer(c.config, weights);
  return relative_error(layer.forward(h.view(), cache.view()), c, weights, h, cache);
}

std::string describe(const Case& c) {
  std::ostringstream out;
  out << "nh=" << c.config.n_head << " D=" << c.config.d_model << " l=" << c.config.chunk_size
      << " r=" << c.config.chunk_rank << " w=" << c.config.window_len << " bias=" << c.config.use_bias
      << " clamp=" << c.config.clamp_len << "/" << c.config.cpos_clamp_len << " B=" << c.batch << " L=" << c.length
      << " M=" << c.cache;
  return out.str();
}

}  // namespace

TEST_CASE("causal policies follow the published index rules", "[causal][policy]") {
  using lsattn::CausalWindow;
  using lsattn::ChunkedProjection;
  using lsattn::IndexRange;
  STATIC_REQUIRE(CausalWindow{4}.keys(10) == IndexRange{7, 11});
  STATIC_REQUIRE(CausalWindow{4}.keys(1) == IndexRange{0, 2});
  STATIC_REQUIRE(CausalWindow{1}.keys(5) == IndexRange{5, 6});
  STATIC_REQUIRE(CausalWindow{4}.distance(10, 7) == 3);
  constexpr ChunkedProjection p{4, 2};
  STATIC_REQUIRE(p.chunk_of(7) == 1);
  STATIC_REQUIRE(p.visible_rows(3) == 0);   // own chunk never visible
  STATIC_REQUIRE(p.visible_rows(8) == 4);   // chunks 0 and 1
  STATIC_REQUIRE(p.relative_position(8, 2) == 1);  // chunk 1 (d = 1), slot 0: d·r − 1 − j = 1
  STATIC_REQUIRE(p.relative_position(8, 3) == 0);  // the previous chunk's last slot has position 0
  STATIC_REQUIRE(p.relative_position(8, 0) == 3);  // chunk 0 (d = 2), slot 0
  constexpr lsattn::TransformerXLPositions clamps{3, 2};
  STATIC_REQUIRE(clamps.window_value(5) == 3);
  STATIC_REQUIRE(clamps.chunk_value(1) == 1);
  STATIC_REQUIRE(lsattn::TransformerXLPositions{}.window_value(100) == 100);
}

TEST_CASE("causal float layer matches the float64 oracle on random configurations", "[causal][oracle]") {
  std::mt19937_64 rng(424242);
  for (int trial = 0; trial < 120; ++trial) {
    const Case c = random_case(rng);
    INFO("trial " << trial << ": " << describe(c));
    CHECK(float_layer_error(c, 300 + trial, rng) < 2e-5);
  }
}

TEST_CASE("causal double layer matches the float64 oracle to rounding", "[causal][oracle]") {
  std::mt19937_64 rng(99);
  for (int trial = 0; trial < 40; ++trial) {
    const Case c = random_case(rng);
    const auto weights = causal::Weights<float>::random(c.config, 500 + trial);
    const auto h = random_tensor(Shape<3>{c.batch, c.length, c.config.d_model}, rng);
    const auto cache = random_tensor(Shape<3>{c.batch, c.cache, c.config.d_model}, rng);
    const causal::ChunkedLSAttention<lsattn::cpu, double> layer(c.config, cast_weights<double>(weights, c.config));
    const Tensor<double, 3> hd(h.shape(), flat(h)), cached(cache.shape(), flat(cache));
    INFO("trial " << trial << ": " << describe(c));
    CHECK(relative_error(layer.forward(hd.view(), cached.view()), c, weights, h, cache) < 1e-11);
  }
}

TEST_CASE("causal layer with the published LM shapes and a long cache", "[causal][oracle]") {
  Case c{{4, 32, 4, 1, 16, false, -1, -1, 0}, 1, 70, 48};
  std::mt19937_64 rng(5);
  CHECK(float_layer_error(c, 8, rng) < 2e-5);
}

TEST_CASE("causal runs longer than 64 queries with w of 16 and 64", "[causal][oracle]") {
  // Random lengths up to ~200 across window, chunk and query-block boundaries, with and
  // without a cache, biases and clamps.
  std::mt19937_64 rng(6464);
  auto pick = [&](std::initializer_list<int> options) {
    return static_cast<index_t>(options.begin()[std::uniform_int_distribution<size_t>(0, options.size() - 1)(rng)]);
  };
  for (int trial = 0; trial < 10; ++trial) {
    Case c;
    c.config.n_head = pick({1, 2, 4});
    c.config.d_model = c.config.n_head * pick({2, 4});
    c.config.chunk_size = pick({2, 4, 8, 16});
    c.config.chunk_rank = pick({1, 2});
    c.config.window_len = pick({16, 64});
    c.config.use_bias = pick({0, 1}) == 1;
    c.config.clamp_len = pick({-1, -1, 20});
    c.config.cpos_clamp_len = pick({-1, -1, 9});
    c.batch = pick({1, 2});
    c.length = std::uniform_int_distribution<index_t>(65, 200)(rng);
    c.cache = c.config.chunk_size * pick({0, 1, 5, 12});
    INFO("trial " << trial << ": " << describe(c));
    CHECK(float_layer_error(c, 900 + trial, rng) < 2e-5);
  }
}

TEST_CASE("causal outputs never depend on later tokens", "[causal]") {
  const causal::Config config{2, 8, 2, 1, 4, true, -1, -1, 0};
  std::mt19937_64 rng(3);
  const causal::ChunkedLSAttention<lsattn::cpu, float> layer(config, causal::Weights<float>::random(config, 1));
  const auto cache = random_tensor(Shape<3>{1, 4, 8}, rng);
  auto h = random_tensor(Shape<3>{1, 13, 8}, rng);
  const auto before = layer.forward(h.view(), cache.view());
  for (index_t f = 0; f < 8; ++f) h(0, 9, f) += 3.0f;
  const auto after = layer.forward(h.view(), cache.view());
  for (index_t t = 0; t < 13; ++t)
    for (index_t f = 0; f < 8; ++f) {
      if (t < 9) CHECK(after(0, t, f) == before(0, t, f));
    }
  CHECK(after(0, 9, 0) != before(0, 9, 0));
}

TEST_CASE("causal results do not depend on the thread count", "[causal][threads]") {
  causal::Config config{4, 64, 8, 2, 32, false, -1, -1, 0};
  std::mt19937_64 rng(11);
  const auto weights = causal::Weights<float>::random(config, 2);
  const auto h = random_tensor(Shape<3>{2, 300, 64}, rng);
  const auto cache = random_tensor(Shape<3>{2, 64, 64}, rng);
  std::vector<float> reference;
  for (int threads : {1, 2, 3}) {
    config.threads = threads;
    const auto y = causal::ChunkedLSAttention<lsattn::cpu, float>(config, weights).forward(h.view(), cache.view());
    if (reference.empty()) reference = y.values();
    INFO("threads = " << threads);
    CHECK(y.values() == reference);
  }
}

TEST_CASE("causal bad configurations and inputs give errors naming the parameter", "[causal][errors]") {
  using Catch::Matchers::Contains;
  const causal::Config good{2, 8, 4, 1, 4, false, -1, -1, 0};
  const auto weights = causal::Weights<float>::random(good, 1);
  auto make = [&](causal::Config c) { return causal::ChunkedLSAttention<lsattn::cpu, float>(c, weights); };
  causal::Config c = good;
  c.n_head = 3;
  CHECK_THROWS_WITH(make(c), Contains("d_model") && Contains("n_head"));
  c = good;
  c.chunk_size = 0;
  CHECK_THROWS_WITH(make(c), Contains("chunk_size"));
  c = good;
  c.window_len = 0;
  CHECK_THROWS_WITH(make(c), Contains("window_len"));
  c = good;
  c.use_bias = true;  // the weights have no projection biases
  CHECK_THROWS_WITH(make(c), Contains("proj_query.bias"));
  {  // the reverse: given biases that use_bias = false would silently ignore
    const auto biased = causal::Weights<float>::random(c, 3);
    CHECK_THROWS_WITH((causal::ChunkedLSAttention<lsattn::cpu, float>(good, biased)),
                      Contains("proj_query.bias") && Contains("use_bias = false"));
  }
  c = good;
  c.n_head = 1;
  c.d_model = 7;
  CHECK_THROWS_WITH(make(c), Contains("even"));

  const auto layer = make(good);
  Tensor<float, 3> h(Shape<3>{1, 5, 8}, 0.1f), cache(Shape<3>{1, 6, 8}, 0.1f);
  CHECK_THROWS_WITH(layer.forward(h.view(), cache.view()), Contains("h_cache") && Contains("multiple of chunk_size"));
  Tensor<float, 3> wrong(Shape<3>{1, 5, 6});
  CHECK_THROWS_WITH(layer.forward(wrong.view(), {}), Contains("h") && Contains("(1, 5, 6)"));
  Tensor<float, 3> empty(Shape<3>{1, 0, 8});
  CHECK_THROWS_WITH(layer.forward(empty.view(), {}), Contains("segment length"));
  Tensor<float, 3> other_batch(Shape<3>{2, 4, 8});
  CHECK_THROWS_WITH(layer.forward(h.view(), other_batch.view()), Contains("h_cache") && Contains("(2, 4, 8)"));
  h(0, 1, 2) = std::numeric_limits<float>::infinity();
  CHECK_THROWS_WITH(layer.forward(h.view(), {}), Contains("non-finite") && Contains("(0, 1, 2)"));
  // No cache at all is allowed: the first segment of a stream without memory.
  h(0, 1, 2) = 0;
  CHECK_NOTHROW(layer.forward(h.view(), {}));
}

namespace {


}  // namespace

TEST_CASE("language model matches the float64 oracle across segments", "[causal][lm][oracle]") {
  std::mt19937_64 rng(77);
  struct LmCase {
    causal::LmConfig config;
    std::vector<index_t> segments;
  };
  const std::vector<LmCase> cases = {
      {{11, 8, 2, 12, 2, 8, 4, 1, 8, true, true, false, -1, -1, 0}, {8, 8, 5}},   // pre-LN, GELU, short last segment
      {{7, 8, 2, 16, 1, 4, 2, 2, 4, false, false, true, 3, 2, 0}, {4, 6, 3}},     // post-LN, ReLU, biases, clamps
      {{5, 6, 3, 10, 2, 6, 3, 1, 2, true, true, false, -1, -1, 0}, {9, 1, 12}},   // w < l, one-token segment
      {{9, 8, 1, 8, 1, 0, 2, 1, 3, true, false, false, -1, -1, 0}, {6, 6}},       // no memory at all
  };
  for (size_t k = 0; k < cases.size(); ++k) {
    const auto& c = cases[k];
    const auto weights = causal::LmWeights<float>::random(c.config, 40 + k);
    const auto reference = to_oracle(c.config, weights);
    const causal::TransformerLSModel<lsattn::cpu, float> model(c.config, weights);
    const index_t batch = 2;
    auto state = model.initial_state(batch);
    std::vector<std::vector<oracle::Matrix>> oracle_caches(
        batch, std::vector<oracle::Matrix>(c.config.n_layer,
                                           oracle::Matrix(c.config.mem_len, std::vector<double>(c.config.d_model, 0.0))));
    for (index_t length : c.segments) {
      Tensor<std::int64_t, 2> tokens(Shape<2>{batch, length});
      for (auto& id : tokens.values()) id = std::uniform_int_distribution<std::int64_t>(0, c.config.vocab_size - 1)(rng);
      const auto logprobs = model.forward(tokens.view(), state);
      double worst = 0, worst_cache = 0;
      for (index_t b = 0; b < batch; ++b) {
        std::vector<long> ids(tokens.values().begin() + b * length, tokens.values().begin() + (b + 1) * length);
        const auto want = oracle::lm_forward(reference, ids, oracle_caches[b]);
        for (index_t t = 0; t < length; ++t)
          for (index_t v = 0; v < c.config.vocab_size; ++v)
            worst = std::max(worst, std::abs(logprobs(b, t, v) - want[t][v]));
        for (index_t i = 0; i < c.config.n_layer; ++i)
          for (index_t t = 0; t < c.config.mem_len; ++t)
            for (index_t f = 0; f < c.config.d_model; ++f)
              worst_cache = std::max(worst_cache, std::abs(state.caches[i](b, t, f) - oracle_caches[b][i][t][f]));
      }
      INFO("case " << k << ", segment of " << length);
      CHECK(worst < 5e-5);
      CHECK(worst_cache < 5e-5);
    }
  }
}

TEST_CASE("language model input errors", "[causal][lm][errors]") {
  using Catch::Matchers::Contains;
  const causal::LmConfig config{5, 8, 2, 8, 1, 4, 2, 1, 4, true, true, false, -1, -1, 0};
  const causal::TransformerLSModel<lsattn::cpu, float> model(config, causal::LmWeights<float>::random(config, 1));
  auto state = model.initial_state(1);
  Tensor<std::int64_t, 2> tokens(Shape<2>{1, 4}, 1);
  tokens(0, 2) = 5;
  CHECK_THROWS_WITH(model.forward(tokens.view(), state), Contains("id 5") && Contains("(0, 2)") && Contains("[0, 5)"));
  tokens(0, 2) = -1;
  CHECK_THROWS_WITH(model.forward(tokens.view(), state), Contains("id -1"));
  tokens(0, 2) = 0;
  auto wrong_batch = model.initial_state(2);
  CHECK_THROWS_WITH(model.forward(tokens.view(), wrong_batch), Contains("state") && Contains("(2, 4, 8)"));
  causal::LmState<float> empty;
  CHECK_THROWS_WITH(model.forward(tokens.view(), empty), Contains("initial_state"));
  causal::LmConfig bad = config;
  bad.mem_len = 3;
  CHECK_THROWS_WITH((causal::TransformerLSModel<lsattn::cpu, float>(bad, causal::LmWeights<float>::random(config, 1))),
                    Contains("mem_len"));
}
