// The 2D attention of ViL-LS (spec §3) against the float64 oracle, and its error paths.
#include <catch2/catch.hpp>

#include <cmath>
#include <random>

#include "lsattn/lsattn.hpp"
#include "oracle_conversions.hpp"

namespace {

using lsattn::index_t;
using lsattn::Shape;
using lsattn::Tensor;
namespace vision = lsattn::models::vision;
using test_helpers::flat;
using test_helpers::to_matrix;


struct Case {
  vision::Config config;
  index_t batch, rows, cols;
};

double relative_error(const Tensor<float, 3>& got, const Case& c, const vision::Weights<float>& w,
                      const Tensor<float, 3>& x) {
  const auto& cfg = c.config;
  const oracle::VisionConfig oc = test_helpers::to_oracle(cfg);
  const oracle::VisionWeights ow = test_helpers::to_oracle(w);
  double worst = 0;
  for (index_t b = 0; b < c.batch; ++b) {
    oracle::Matrix rows(x.extent(1), std::vector<double>(x.extent(2)));
    for (index_t t = 0; t < x.extent(1); ++t)
      for (index_t f = 0; f < x.extent(2); ++f) rows[t][f] = x(b, t, f);
    const auto want = oracle::vision_forward(oc, ow, rows, int(c.rows), int(c.cols));
    double scale = 1e-3;
    for (const auto& row : want)
      for (double v : row) scale = std::max(scale, std::abs(v));
    for (index_t t = 0; t < x.extent(1); ++t)
      for (index_t f = 0; f < x.extent(2); ++f)
        worst = std::max(worst, std::abs(static_cast<double>(got(b, t, f)) - want[t][f]) / scale);
  }
  return worst;
}

Tensor<float, 3> random_input(const Case& c, std::mt19937_64& rng) {
  std::normal_distribution<double> normal(0.0, 1.0);
  Tensor<float, 3> x(Shape<3>{c.batch, c.config.nglo + c.rows * c.cols, c.config.dim});
  for (auto& v : x.values()) v = static_cast<float>(normal(rng));
  return x;
}

}  // namespace

TEST_CASE("2D window and RPE policies follow the published rules", "[vision][policy]") {
  using lsattn::IndexRange;
  using lsattn::RelativePositionBias2D;
  using lsattn::Window2D;
  constexpr Window2D w7{7, 3}, w1{1, 1};
  STATIC_REQUIRE(w7.tile() == 13);
  STATIC_REQUIRE(w1.tile() == 3);
  STATIC_REQUIRE(w7.keys(0, 56) == IndexRange{0, 10});    // top border: 3 rows of padding dropped
  STATIC_REQUIRE(w7.keys(7, 56) == IndexRange{46, 56});   // bottom border
  STATIC_REQUIRE(w7.keys(3, 56) == IndexRange{18, 31});   // interior: the full 13
  STATIC_REQUIRE(w7.tile_offset(3, 18) == 0);
  STATIC_REQUIRE(w7.queries(1, 10) == IndexRange{7, 10});  // a partial border block
  STATIC_REQUIRE(RelativePositionBias2D{7}.table_rows() == 253);
  STATIC_REQUIRE(RelativePositionBias2D{8}.table_rows() == 375);
  // The published collision: (ry, rx ≥ 2wp + w) aliases (ry + 1, rx − (2wp + w)).
  constexpr RelativePositionBias2D rpe{4};  // wp = 2, 2wp + w = 8
  STATIC_REQUIRE(rpe.index(0, 3, 0, 0) == 7 * 8 + 10);  // ry = 7, rx = 10
  STATIC_REQUIRE(rpe.index(0, 3, 0, 0) == rpe.index(1, 0, 0, 5));  // ry = 8, rx = 2
  const vision::Config config{8, 2, 7, 2, 1, true, true, 0};
  const auto index = vision::relative_position_index(config);
  CHECK(index.shape() == Shape<2>{49, 169});
  CHECK(*std::max_element(index.values().begin(), index.values().end()) == 252);
}

TEST_CASE("2D layer matches the float64 oracle on random configurations", "[vision][oracle]") {
  std::mt19937_64 rng(2024);
  auto pick = [&](std::initializer_list<int> options) {
    return static_cast<index_t>(options.begin()[std::uniform_int_distribution<size_t>(0, options.size() - 1)(rng)]);
  };
  for (int trial = 0; trial < 100; ++trial) {
    Case c;
    c.config.num_heads = pick({1, 2, 3});
    c.config.dim = c.config.num_heads * pick({2, 4});
    c.config.w = pick({-1, 0, 1, 2, 3, 4, 5});  // w <= 0: no window (the published module allows it)
    c.config.dp_rank = pick({0, 1, 3});
    c.config.nglo = pick({0, 1, 1, 2, 3});
    if (c.config.w <= 0 && c.config.dp_rank == 0 && c.config.nglo == 0) c.config.dp_rank = 2;  // some keys
    c.config.rpe = c.config.w >= 2 && pick({0, 1}) == 1;
    c.config.qkv_bias = pick({0, 1}) == 1;
    c.batch = pick({1, 2});
    c.rows = pick({1, 2, 3, 4, 6, 7, 9});
    c.cols = pick({1, 2, 4, 5, 8});
    const auto weights = vision::Weights<float>::random(c.config, 70 + trial);
    const auto x = random_input(c, rng);
    const vision::AttentionLS2D<lsattn::cpu, float> layer(c.config, weights);
    INFO("trial " << trial << ": nh=" << c.config.num_heads << " C=" << c.config.dim << " w=" << c.config.w
                  << " r=" << c.config.dp_rank << " nglo=" << c.config.nglo << " rpe=" << c.config.rpe << " grid "
                  << c.rows << "x" << c.cols << " B=" << c.batch);
    CHECK(relative_error(layer.forward(x.view(), c.rows, c.cols), c, weights, x) < 2e-5);
  }
}

TEST_CASE("2D layer without a window: compressed and global keys only, on grids beyond one tile", "[vision][oracle]") {
  // w = 0 with the stage-1 width on a 19 x 23 grid (437 patches, tiles of 8 x 8 with partial
  // borders), with and without global tokens; and w = 0, r = 0 with only a global token.
  std::mt19937_64 rng(31);
  for (const vision::Config& config : {vision::Config{12, 3, 0, 8, 1, false, true, 0},
                                       vision::Config{12, 3, 0, 4, 0, false, false, 0},
                                       vision::Config{12, 3, -3, 0, 2, false, true, 0}}) {
    Case c{config, 2, 19, 23};
    const auto weights = vision::Weights<float>::random(c.config, 5);
    const auto x = random_input(c, rng);
    const vision::AttentionLS2D<lsattn::cpu, float> layer(c.config, weights);
    INFO("w=" << config.w << " r=" << config.dp_rank << " nglo=" << config.nglo);
    CHECK(relative_error(layer.forward(x.view(), c.rows, c.cols), c, weights, x) < 2e-5);
  }
  const vision::Config nothing{12, 3, 0, 0, 0, false, false, 0};  // no keys at all
  const vision::AttentionLS2D<lsattn::cpu, float> empty(nothing, vision::Weights<float>::random(nothing, 6));
  const Tensor<float, 3> x(Shape<3>{1, 4, 12}, 0.5f);
  CHECK_THROWS_WITH(empty.forward(x.view(), 2, 2), Catch::Matchers::Contains("no keys"));
}

TEST_CASE("2D layer with the published ViL-LS stage-1 shape", "[vision][oracle]") {
  Case c{{12, 3, 7, 8, 1, true, true, 0}, 1, 14, 14};
  std::mt19937_64 rng(8);
  const auto weights = vision::Weights<float>::random(c.config, 3);
  const auto x = random_input(c, rng);
  const vision::AttentionLS2D<lsattn::cpu, float> layer(c.config, weights);
  CHECK(relative_error(layer.forward(x.view(), 14, 14), c, weights, x) < 2e-5);
}

TEST_CASE("2D results do not depend on the thread count", "[vision][threads]") {
  vision::Config config{16, 2, 4, 3, 2, true, true, 0};
  std::mt19937_64 rng(4);
  const auto weights = vision::Weights<float>::random(config, 5);
  const auto x = random_input({config, 2, 10, 13}, rng);
  std::vector<float> reference;
  for (int threads : {1, 2, 3}) {
    config.threads = threads;
    const auto y = vision::AttentionLS2D<lsattn::cpu, float>(config, weights).forward(x.view(), 10, 13);
    if (reference.empty()) reference = y.values();
    CHECK(y.values() == reference);
  }
}

TEST_CASE("2D bad configurations and inputs give errors naming the parameter", "[vision][errors]") {
  using Catch::Matchers::Contains;
  const vision::Config good{8, 2, 2, 2, 1, true, true, 0};
  const auto weights = vision::Weights<float>::random(good, 1);
  auto make = [&](vision::Config c) { return vision::AttentionLS2D<lsattn::cpu, float>(c, weights); };
  vision::Config c = good;
  c.num_heads = 3;
  CHECK_THROWS_WITH(make(c), Contains("dim") && Contains("num_heads"));
  c = good;
  c.w = 1;
  CHECK_THROWS_WITH(make(c), Contains("rpe") && Contains("w >= 2"));
  c = good;
  c.w = 4;  // the RPE table was made for w = 2
  CHECK_THROWS_WITH(make(c), Contains("local_relative_position_bias_table"));
  c = good;
  c.qkv_bias = false;  // a given bias the config switches off is never silently ignored
  CHECK_THROWS_WITH(make(c), Contains("qkv.bias") && Contains("qkv_bias = false"));
  c = good;
  c.rpe = false;
  CHECK_THROWS_WITH(make(c), Contains("local_relative_position_bias_table") && Contains("rpe = false"));
  c = good;
  c.nglo = -1;
  CHECK_THROWS_WITH(make(c), Contains("nglo"));

  const auto layer = make(good);
  Tensor<float, 3> x(Shape<3>{1, 1 + 12, 8}, 0.1f);
  CHECK_NOTHROW(layer.forward(x.view(), 3, 4));
  CHECK_THROWS_WITH(layer.forward(x.view(), 4, 4), Contains("nglo + nx*ny") && Contains("(1, 13, 8)"));
  CHECK_THROWS_WITH(layer.forward(x.view(), 0, 13), Contains("nx and ny"));
  x(0, 5, 1) = std::nanf("");
  CHECK_THROWS_WITH(layer.forward(x.view(), 3, 4), Contains("non-finite") && Contains("(0, 5, 1)"));
}

TEST_CASE("attention_map: what one query patch attends to", "[vision][map]") {
  std::mt19937_64 rng(12);
  SECTION("probabilities: non-negative, summing to 1 with the global tokens (with and without a window)") {
    for (const vision::Config& config : {vision::Config{8, 2, 3, 2, 2, true, true, 0}, vision::Config{8, 2, 0, 2, 2, false, true, 0}}) {
      INFO("w = " << config.w);
      const auto x = random_input({config, 1, 7, 9}, rng);
      const vision::AttentionLS2D<lsattn::cpu, float> layer(config, vision::Weights<float>::random(config, 2));
      float global = -1;
      const auto map = layer.attention_map(x.view(), 7, 9, 4, 5, 1, &global);
      double total = global;
      for (float v : map.values()) {
        CHECK(v >= 0);
        total += v;
      }
      CHECK(total == Approx(1.0).epsilon(1e-5));
      CHECK(global > 0);
    }
  }
  SECTION("window only: the softmax of the tile scores, zero outside the tile") {
    const vision::Config config{4, 1, 2, 0, 0, false, false, 0};
    const auto weights = vision::Weights<float>::random(config, 3);
    const auto x = random_input({config, 1, 6, 6}, rng);
    const vision::AttentionLS2D<lsattn::cpu, float> layer(config, weights);
    const auto map = layer.attention_map(x.view(), 6, 6, 2, 3, 0);
    // Independently: the query (2, 3) is in block (1, 1): tile rows and cols 1 … 4.
    auto project = [&](index_t token, index_t part) {
      std::vector<double> out(4, 0.0);
      for (index_t o = 0; o < 4; ++o)
        for (index_t i = 0; i < 4; ++i) out[o] += weights.qkv_weight(part * 4 + o, i) * x(0, token, i);
      return out;
    };
    const auto q = project(2 * 6 + 3, 0);
    std::vector<double> scores;
    for (index_t y = 1; y <= 4; ++y)
      for (index_t xk = 1; xk <= 4; ++xk) {
        const auto k = oracle::layer_norm(project(y * 6 + xk, 1), flat(weights.dual_ln_full_weight), flat(weights.dual_ln_full_bias));
        double s = 0;
        for (int f = 0; f < 4; ++f) s += q[f] * k[f] / 2.0;  // 1/√dh with dh = 4
        scores.push_back(s);
      }
    double total = 0;
    for (double s : scores) total += std::exp(s);
    for (index_t y = 0; y < 6; ++y)
      for (index_t xk = 0; xk < 6; ++xk) {
        const bool in_tile = y >= 1 && y <= 4 && xk >= 1 && xk <= 4;
        const double want = in_tile ? std::exp(scores[(y - 1) * 4 + (xk - 1)]) / total : 0.0;
        CHECK(map(y, xk) == Approx(want).margin(1e-6));
      }
  }
  SECTION("errors") {
    const vision::Config config{4, 1, 2, 0, 0, false, false, 0};
    const vision::AttentionLS2D<lsattn::cpu, float> layer(config, vision::Weights<float>::random(config, 3));
    const auto x = random_input({config, 1, 4, 4}, rng);
    CHECK_THROWS_WITH(layer.attention_map(x.view(), 4, 4, 4, 0, 0), Catch::Matchers::Contains("outside the grid"));
    CHECK_THROWS_WITH(layer.attention_map(x.view(), 4, 4, 0, 0, 1), Catch::Matchers::Contains("head 1"));
  }
}
