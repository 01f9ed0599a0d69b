// The bidirectional attention (spec §1) against the float64 oracle, and its error paths.
#include <catch2/catch.hpp>

#include <cmath>
#include <random>

#include "lsattn/lsattn.hpp"
#include "oracle_lra.hpp"
#include "test_helpers.hpp"

namespace {

using lsattn::index_t;
using lsattn::Shape;
using lsattn::Tensor;
namespace lra = lsattn::models::lra;
using test_helpers::cast_weights;
using test_helpers::flat;
using test_helpers::to_matrix;


template <class T>
oracle::LraWeights to_oracle(const lra::Weights<T>& w, bool has_projection) {
  oracle::LraWeights o{to_matrix(w.W_q_weight), to_matrix(w.W_k_weight), to_matrix(w.W_v_weight), to_matrix(w.W_o_weight),
                       {}, flat(w.W_q_bias), flat(w.W_k_bias), flat(w.W_v_bias), flat(w.W_o_bias),
                       {}, flat(w.dual_ln_s_weight), flat(w.dual_ln_s_bias), flat(w.dual_ln_l_weight),
                       flat(w.dual_ln_l_bias)};
  if (has_projection) {
    o.Wp = to_matrix(w.dconv_fc_weight);
    o.bp = flat(w.dconv_fc_bias);
  }
  return o;
}


struct Case {
  lra::Config config;
  index_t batch, length;
  bool mask, cls_embed;
};

struct Inputs {
  Tensor<float, 3> x, cls;
  Tensor<float, 2> mask;
};

Inputs random_inputs(const Case& c, std::mt19937_64& rng) {
  std::normal_distribution<double> normal(0.0, 1.0);
  Inputs in;
  const index_t d = c.config.transformer_dim;
  in.x = Tensor<float, 3>(Shape<3>{c.batch, c.length, d});
  for (auto& v : in.x.values()) v = static_cast<float>(normal(rng));
  if (c.cls_embed) {
    in.cls = Tensor<float, 3>(Shape<3>{c.batch, 1, d});
    for (auto& v : in.cls.values()) v = static_cast<float>(normal(rng));
  }
  if (c.mask) {
    in.mask = Tensor<float, 2>(Shape<2>{c.batch, c.length}, 1.0f);
    std::bernoulli_distribution drop(0.3);
    for (auto& v : in.mask.values()) v = drop(rng) ? 0.0f : 1.0f;
  }
  return in;
}

// Oracle output for the whole batch, as (B, rows, D) doubles.
std::vector<oracle::Matrix> run_oracle(const Case& c, const lra::Weights<float>& weights, const Inputs& in,
                                       bool normalize = true) {
  const auto& cfg = c.config;
  const oracle::LraConfig oc{static_cast<int>(cfg.num_head), static_cast<int>(cfg.head_dim),
                             static_cast<int>(cfg.window_size), static_cast<int>(cfg.num_landmarks), cfg.cls_pooling,
                             normalize};
  const auto ow = to_oracle(weights, cfg.num_landmarks > 0);
  std::vector<oracle::Matrix> out;
  for (index_t b = 0; b < c.batch; ++b) {
    oracle::Matrix x(c.length, std::vector<double>(cfg.transformer_dim));
    std::vector<bool> valid(c.length, true);
    for (index_t t = 0; t < c.length; ++t) {
      for (index_t f = 0; f < cfg.transformer_dim; ++f) x[t][f] = in.x(b, t, f);
      if (c.mask) valid[t] = in.mask(b, t) != 0;
    }
    std::vector<double> cls;
    if (c.cls_embed)
      for (index_t f = 0; f < cfg.transformer_dim; ++f) cls.push_back(in.cls(b, 0, f));
    out.push_back(oracle::lra_forward(oc, ow, x, valid, c.cls_embed ? &cls : nullptr));
  }
  return out;
}

template <class T>
double max_relative_error(const Tensor<T, 3>& got, const std::vector<oracle::Matrix>& want) {
  double worst = 0;
  REQUIRE(got.extent(0) == static_cast<index_t>(want.size()));
  for (index_t b = 0; b < got.extent(0); ++b) {
    REQUIRE(got.extent(1) == static_cast<index_t>(want[b].size()));
    double scale = 1e-3;
    for (const auto& row : want[b])
      for (double v : row) scale = std::max(scale, std::abs(v));
    for (index_t t = 0; t < got.extent(1); ++t)
      for (index_t f = 0; f < got.extent(2); ++f)
        worst = std::max(worst, std::abs(static_cast<double>(got(b, t, f)) - want[b][t][f]) / scale);
  }
  return worst;
}

Tensor<float, 3> forward(const lra::AttentionLS<lsattn::cpu, float>& layer, const Inputs& in) {
  return layer.forward(in.x.view(), in.mask.size() ? in.mask.view() : lsattn::HostView<const float, 2>{},
                       in.cls.size() ? in.cls.view() : lsattn::HostView<const float, 3>{});
}

Case random_case(std::mt19937_64& rng) {
  auto pick = [&](std::initializer_list<int> options) {
    return static_cast<index_t>(options.begin()[std::uniform_int_distribution<size_t>(0, options.size() - 1)(rng)]);
  };
  for (;;) {
    Case c;
    c.config.num_head = pick({1, 2, 3});
    c.config.head_dim = pick({1, 2, 4, 8});
    c.config.transformer_dim = c.config.num_head * c.config.head_dim;
    c.config.window_size = pick({-1, 0, 1, 2, 3, 4, 5, 7, 8, 16});
    c.config.num_landmarks = pick({0, 1, 2, 3, 5});
    c.config.cls_pooling = pick({0, 0, 0, 1}) == 1;
    c.batch = pick({1, 2, 3});
    c.length = pick({1, 2, 3, 5, 8, 9, 12, 16, 17, 23, 31, 40}) + (c.config.cls_pooling ? 1 : 0);
    c.mask = pick({0, 1}) == 1;
    c.cls_embed = !c.config.cls_pooling && pick({0, 1}) == 1;
    const bool has_cls = c.cls_embed || c.config.cls_pooling;
    if (c.config.window_size <= 0 && c.config.num_landmarks == 0 && !has_cls) continue;
    return c;
  }
}

}  // namespace

TEST_CASE("window policy follows the published index rule", "[lra][window]") {
  using lsattn::BidirectionalWindow;
  using lsattn::IndexRange;
  STATIC_REQUIRE(BidirectionalWindow::segments(1).extension == 1);
  STATIC_REQUIRE(BidirectionalWindow::segments(1).span() == 3);
  STATIC_REQUIRE(BidirectionalWindow::segments(4).span() == 8);
  STATIC_REQUIRE(BidirectionalWindow::segments(5).extension == 2);
  STATIC_REQUIRE(BidirectionalWindow::segments(5).span() == 9);
  STATIC_REQUIRE(!BidirectionalWindow::segments(0).enabled());
  STATIC_REQUIRE(!BidirectionalWindow::segments(-3).enabled());
  constexpr auto w4 = BidirectionalWindow::segments(4);
  STATIC_REQUIRE(w4.block_count(10) == 3);
  STATIC_REQUIRE(w4.queries(2, 10) == IndexRange{8, 10});
  STATIC_REQUIRE(w4.keys(0, 10) == IndexRange{0, 6});
  STATIC_REQUIRE(w4.keys(1, 10) == IndexRange{2, 10});
  STATIC_REQUIRE(w4.keys(2, 10) == IndexRange{6, 10});
  STATIC_REQUIRE(BidirectionalWindow::self_only().keys(3, 10) == IndexRange{3, 4});
}

TEST_CASE("float layer matches the float64 oracle on random configurations", "[lra][oracle]") {
  std::mt19937_64 rng(20261122);
  for (int trial = 0; trial < 150; ++trial) {
    Case c = random_case(rng);
    const auto weights = lra::Weights<float>::random(c.config, 1000 + trial);
    const Inputs in = random_inputs(c, rng);
    const lra::AttentionLS<lsattn::cpu, float> layer(c.config, weights);
    const double error = max_relative_error(forward(layer, in), run_oracle(c, weights, in));
    INFO("trial " << trial << ": nh=" << c.config.num_head << " dh=" << c.config.head_dim << " w=" << c.config.window_size
                  << " r=" << c.config.num_landmarks << " B=" << c.batch << " L=" << c.length << " mask=" << c.mask
                  << " cls=" << c.cls_embed << " pooling=" << c.config.cls_pooling);
    CHECK(error < 2e-5);
  }
}

TEST_CASE("double layer matches the float64 oracle to rounding", "[lra][oracle]") {
  std::mt19937_64 rng(7);
  for (int trial = 0; trial < 60; ++trial) {
    Case c = random_case(rng);
    const auto weights = lra::Weights<float>::random(c.config, 2000 + trial);
    const Inputs in = random_inputs(c, rng);
    const lra::AttentionLS<lsattn::cpu, double> layer(c.config, cast_weights<double>(weights, c.config));
    Tensor<double, 3> x(in.x.shape(), std::vector<double>(in.x.values().begin(), in.x.values().end()));
    Tensor<double, 2> mask(in.mask.shape(), std::vector<double>(in.mask.values().begin(), in.mask.values().end()));
    Tensor<double, 3> cls(in.cls.shape(), std::vector<double>(in.cls.values().begin(), in.cls.values().end()));
    const auto got = layer.forward(x.view(), c.mask ? mask.view() : lsattn::HostView<const double, 2>{},
                                   c.cls_embed ? cls.view() : lsattn::HostView<const double, 3>{});
    INFO("trial " << trial << ": w=" << c.config.window_size << " r=" << c.config.num_landmarks << " L=" << c.length);
    CHECK(max_relative_error(got, run_oracle(c, weights, in)) < 1e-11);
  }
}

TEST_CASE("a large configuration with the published LRA shapes", "[lra][oracle]") {
  Case c{{2, 32, 64, 8, 32, false, 0}, 2, 300, true, true};
  std::mt19937_64 rng(3);
  const auto weights = lra::Weights<float>::random(c.config, 5);
  const Inputs in = random_inputs(c, rng);
  const lra::AttentionLS<lsattn::cpu, float> layer(c.config, weights);
  CHECK(max_relative_error(forward(layer, in), run_oracle(c, weights, in)) < 2e-5);
}

TEST_CASE("sequences beyond one 64-query block, in every window regime", "[lra][oracle]") {
  // The executor processes queries in blocks (w queries with a window, 64 without): lengths
  // past 64, 128 and partial last blocks, with padding, for w <= 0 (global keys only), w = 1
  // and LRA's w = 8, 16.
  std::mt19937_64 rng(64);
  const Case cases[] = {
      {{2, 4, 8, 0, 3, false, 0}, 2, 200, true, false},  {{2, 4, 8, -1, 2, false, 0}, 1, 129, false, true},
      {{1, 8, 8, 0, 0, false, 0}, 2, 97, true, true},    {{2, 4, 8, 1, 2, false, 0}, 1, 131, true, false},
      {{2, 4, 8, 8, 3, false, 0}, 2, 165, true, true},   {{3, 2, 6, 16, 1, false, 0}, 1, 257, true, false},
      {{2, 4, 8, 0, 4, true, 0}, 2, 1 + 150, true, false},
  };
  for (const Case& c : cases) {
    const auto weights = lra::Weights<float>::random(c.config, 77);
    const Inputs in = random_inputs(c, rng);
    const lra::AttentionLS<lsattn::cpu, float> layer(c.config, weights);
    INFO("w=" << c.config.window_size << " r=" << c.config.num_landmarks << " L=" << c.length << " cls=" << c.cls_embed
              << " pooling=" << c.config.cls_pooling);
    CHECK(max_relative_error(forward(layer, in), run_oracle(c, weights, in)) < 2e-5);
  }
}

TEST_CASE("padded query rows give W_o.bias and padded content changes nothing", "[lra][padding]") {
  Case c{{2, 4, 8, 4, 3, false, 0}, 2, 14, true, true};
  std::mt19937_64 rng(11);
  const auto weights = lra::Weights<float>::random(c.config, 9);
  Inputs in = random_inputs(c, rng);
  in.mask(0, 3) = 0;
  in.mask(1, 13) = 0;
  in.mask(0, 5) = 1;
  const lra::AttentionLS<lsattn::cpu, float> layer(c.config, weights);
  const auto y = forward(layer, in);
  for (index_t b = 0; b < c.batch; ++b)
    for (index_t t = 0; t < c.length; ++t)
      if (in.mask(b, t) == 0)
        for (index_t f = 0; f < 8; ++f) CHECK(y(b, 1 + t, f) == Approx(weights.W_o_bias(f)).margin(1e-6));

  Inputs changed = in;
  for (index_t b = 0; b < c.batch; ++b)
    for (index_t t = 0; t < c.length; ++t)
      if (in.mask(b, t) == 0)
        for (index_t f = 0; f < 8; ++f) changed.x(b, t, f) += 10.0f * static_cast<float>(f + 1);
  const auto y2 = forward(layer, changed);
  for (index_t i = 0; i < y.size(); ++i) CHECK(y.values()[i] == Approx(y2.values()[i]).margin(1e-5));
}

TEST_CASE("a fully padded sequence gives a defined output", "[lra][padding]") {
  // Defined behaviour (the published code gives NaN): every token row is W_o.bias; the cls row
  // sees only itself, so it is W_o(W_v cls + b_v) + b_o.
  Case c{{2, 4, 8, 4, 2, false, 0}, 2, 9, true, true};
  std::mt19937_64 rng(13);
  const auto weights = lra::Weights<float>::random(c.config, 4);
  Inputs in = random_inputs(c, rng);
  for (index_t t = 0; t < c.length; ++t) in.mask(1, t) = 0;
  in.mask(0, 0) = 1;
  const lra::AttentionLS<lsattn::cpu, float> layer(c.config, weights);
  const auto y = forward(layer, in);
  const auto ow = to_oracle(weights, true);
  std::vector<double> cls(8);
  for (index_t f = 0; f < 8; ++f) cls[f] = in.cls(1, 0, f);
  const auto expected_cls = oracle::linear(oracle::linear(cls, ow.Wv, ow.bv), ow.Wo, ow.bo);
  for (index_t f = 0; f < 8; ++f) {
    CHECK(y(1, 0, f) == Approx(expected_cls[f]).margin(1e-5));
    for (index_t t = 0; t < c.length; ++t) CHECK(y(1, 1 + t, f) == Approx(weights.W_o_bias(f)).margin(1e-6));
  }
  for (float v : y.values()) CHECK(std::isfinite(v));
  // The other batch item is unaffected by its neighbour.
  Inputs first{Tensor<float, 3>(Shape<3>{1, 9, 8}), Tensor<float, 3>(Shape<3>{1, 1, 8}), Tensor<float, 2>(Shape<2>{1, 9})};
  std::copy_n(in.x.data(), 72, first.x.data());
  std::copy_n(in.cls.data(), 8, first.cls.data());
  std::copy_n(in.mask.data(), 9, first.mask.data());
  const auto y_first = forward(layer, first);
  for (index_t i = 0; i < y_first.size(); ++i) CHECK(y_first.values()[i] == y.values()[i]);
}

TEST_CASE("results do not depend on the thread count", "[lra][threads]") {
  Case c{{4, 16, 64, 16, 8, false, 0}, 3, 777, true, true};
  std::mt19937_64 rng(17);
  const auto weights = lra::Weights<float>::random(c.config, 21);
  const Inputs in = random_inputs(c, rng);
  std::vector<float> reference;
  for (int threads : {1, 2, 3, 8}) {
    c.config.threads = threads;
    const lra::AttentionLS<lsattn::cpu, float> layer(c.config, weights);
    const auto y = forward(layer, in);
    if (reference.empty()) {
      reference = y.values();
    } else {
      INFO("threads = " << threads);
      CHECK(y.values() == reference);
    }
  }
}

TEST_CASE("the lower-level entry point takes user projections", "[lra][attention]") {
  // With identity projections, the attention proper must equal the layer minus W_o.
  const index_t heads = 2, head_dim = 3, width = 6, rank = 2, length = 11;
  lra::Config config{heads, head_dim, width, 4, rank, false, 0};
  auto weights = lra::Weights<float>::random(config, 31);
  for (auto* w : {&weights.W_q_weight, &weights.W_k_weight, &weights.W_v_weight, &weights.W_o_weight}) {
    for (index_t i = 0; i < width; ++i)
      for (index_t j = 0; j < width; ++j) (*w)(i, j) = i == j ? 1.0f : 0.0f;
  }
  for (auto* b : {&weights.W_q_bias, &weights.W_k_bias, &weights.W_v_bias, &weights.W_o_bias})
    for (auto& v : b->values()) v = 0;
  Case c{config, 1, length, true, false};
  std::mt19937_64 rng(5);
  Inputs in = random_inputs(c, rng);
  Tensor<float, 3> logits(Shape<3>{1, length, heads * rank});
  lsattn::cpu_detail::linear(in.x.data(), length, width, weights.dconv_fc_weight.data(), weights.dconv_fc_bias.data(),
                             heads * rank, logits.data(), 1);

  SECTION("DualLN combiner") {
    lsattn::LongShortAttention<lsattn::cpu, float> attention({heads, head_dim, 4, rank});
    Tensor<float, 3> context(Shape<3>{1, length, width});
    attention({in.x.view(), in.x.view(), in.x.view(), logits.view(), in.mask.view()},
              {{weights.dual_ln_l_weight.view(), weights.dual_ln_l_bias.view()},
               {weights.dual_ln_s_weight.view(), weights.dual_ln_s_bias.view()}},
              context.view());
    CHECK(max_relative_error(context, run_oracle(c, weights, in)) < 2e-5);
  }
  SECTION("plain combiner (no LayerNorm)") {
    lsattn::LongShortAttention<lsattn::cpu, float, lsattn::BidirectionalWindow, lsattn::SequenceProjection,
                               lsattn::PlainCombiner>
        attention({heads, head_dim, 4, rank});
    Tensor<float, 3> context(Shape<3>{1, length, width});
    attention({in.x.view(), in.x.view(), in.x.view(), logits.view(), in.mask.view()}, {}, context.view());
    CHECK(max_relative_error(context, run_oracle(c, weights, in, false)) < 2e-5);
  }
}

TEST_CASE("bad configurations and inputs give errors naming the parameter", "[lra][errors]") {
  using Catch::Matchers::Contains;
  const lra::Config good{2, 4, 8, 4, 2, false, 0};
  const auto weights = lra::Weights<float>::random(good, 1);
  auto make = [&](lra::Config config) { return lra::AttentionLS<lsattn::cpu, float>(config, weights); };

  SECTION("configuration") {
    lra::Config c = good;
    c.transformer_dim = 9;
    CHECK_THROWS_WITH(make(c), Contains("transformer_dim") && Contains("9"));
    c = good;
    c.num_head = 0;
    CHECK_THROWS_WITH(make(c), Contains("num_head"));
    c = good;
    c.num_landmarks = -1;
    CHECK_THROWS_WITH(make(c), Contains("num_landmarks"));
    c = good;
    c.num_landmarks = 3;  // weights were made for r = 2
    CHECK_THROWS_WITH(make(c), Contains("dconv_fc.weight") && Contains("(6, 8)"));
    c.num_landmarks = 0;  // a given projection that r = 0 would silently ignore
    CHECK_THROWS_WITH(make(c), Contains("dconv_fc.weight") && Contains("num_landmarks = 0"));
  }
  const auto layer = make(good);
  Tensor<float, 3> x(Shape<3>{2, 5, 8}, 0.5f);
  SECTION("shapes") {
    Tensor<float, 3> wrong(Shape<3>{2, 5, 7});
    CHECK_THROWS_WITH(layer.forward(wrong.view()), Contains("x") && Contains("(2, 5, 7)"));
    Tensor<float, 3> empty(Shape<3>{2, 0, 8});
    CHECK_THROWS_WITH(layer.forward(empty.view()), Contains("sequence length"));
    Tensor<float, 2> mask(Shape<2>{2, 4}, 1.0f);
    CHECK_THROWS_WITH(layer.forward(x.view(), mask.view()), Contains("mask") && Contains("(2, 4)"));
    Tensor<float, 3> cls(Shape<3>{1, 1, 8});
    CHECK_THROWS_WITH(layer.forward(x.view(), {}, cls.view()), Contains("cls_embed") && Contains("(1, 1, 8)"));
  }
  SECTION("values") {
    x(1, 2, 3) = std::nanf("");
    CHECK_THROWS_WITH(layer.forward(x.view()), Contains("x") && Contains("non-finite") && Contains("(1, 2, 3)"));
    x(1, 2, 3) = 0;
    Tensor<float, 2> mask(Shape<2>{2, 5}, 1.0f);
    mask(0, 1) = 0.5f;
    CHECK_THROWS_WITH(layer.forward(x.view(), mask.view()), Contains("mask") && Contains("0.5"));
  }
  SECTION("no keys at all") {
    lra::Config c = good;
    c.window_size = 0;
    c.num_landmarks = 0;
    const auto w0 = lra::Weights<float>::random(c, 2);
    const lra::AttentionLS<lsattn::cpu, float> layer0(c, w0);
    CHECK_THROWS_WITH(layer0.forward(x.view()), Contains("window_size") && Contains("cls"));
  }
  SECTION("cls pooling") {
    lra::Config c = good;
    c.cls_pooling = true;
    const lra::AttentionLS<lsattn::cpu, float> pooled(c, weights);
    Tensor<float, 3> cls(Shape<3>{2, 1, 8});
    CHECK_THROWS_WITH(pooled.forward(x.view(), {}, cls.view()), Contains("cls_embed"));
    Tensor<float, 3> one(Shape<3>{2, 1, 8});
    CHECK_THROWS_WITH(pooled.forward(one.view()), Contains("pooling_mode"));
  }
  SECTION("attention entry point") {
    lsattn::LongShortAttention<lsattn::cpu, float> attention({2, 4, 4, 2});
    Tensor<float, 3> q(Shape<3>{1, 6, 8}), logits(Shape<3>{1, 6, 4}), out(Shape<3>{1, 6, 8});
    Tensor<float, 1> ones(Shape<1>{8}, 1.0f);
    const decltype(attention)::CombinerParams norm{{ones.view(), ones.view()}, {ones.view(), ones.view()}};
    CHECK(attention.validate({q.view(), q.view(), q.view(), logits.view()}, norm, out.view()).empty());
    CHECK_THAT(attention.validate({q.view(), q.view(), q.view(), {}}, norm, out.view()), Contains("projection_logits"));
    Tensor<float, 3> small(Shape<3>{1, 5, 8});
    CHECK_THAT(attention.validate({q.view(), q.view(), q.view(), logits.view()}, norm, small.view()), Contains("context"));
    CHECK_THAT(attention.validate({q.view(), q.view(), q.view(), logits.view()}, norm, q.view()),
               Contains("overlaps") && Contains("query"));
    Tensor<float, 1> short_ln(Shape<1>{7});
    CHECK_THAT(attention.validate({q.view(), q.view(), q.view(), logits.view()},
                                  {{short_ln.view(), ones.view()}, {ones.view(), ones.view()}}, out.view()),
               Contains("local LayerNorm weight"));
    CHECK_THROWS_AS(attention({q.view(), q.view(), q.view(), {}}, norm, out.view()), lsattn::error);
    CHECK_THROWS_WITH((lsattn::LongShortAttention<lsattn::cpu, float>({2, 0, 4, 2})), Contains("head_dim"));
  }
}
