// LS-attention head splitting and the flash-style full attention against a dense float64
// oracle with explicit per-head visibility.
#include <catch2/catch.hpp>

#include <cmath>
#include <random>

#include "lsattn/baseline/full_attention.hpp"
#include "lsattn/lsattn.hpp"
#include "oracle_lra.hpp"

namespace {

using lsattn::index_t;
using lsattn::Shape;
using lsattn::Tensor;
namespace ls = lsattn::models::ls_heads;

// Dense oracle: per head, scores over every key s it may see (local: a window of w keys,
// causal t−w+1…t or centred t−(w−1)/2…t+w/2; global: all, causal s ≤ t), valid keys only.
struct OracleResult {
  oracle::Matrix y;
  std::vector<double> max_logit;
};

OracleResult oracle_ls_heads(const ls::Config& c, const ls::Weights<float>& w, const Tensor<float, 3>& x,
                             const Tensor<float, 2>& mask, index_t b) {
  const int D = int(c.dim), nh = int(c.num_heads), dh = D / nh, L = int(x.extent(1));
  auto mat = [](const Tensor<float, 2>& t) {
    oracle::Matrix m(t.extent(0), std::vector<double>(t.extent(1)));
    for (index_t i = 0; i < t.extent(0); ++i)
      for (index_t j = 0; j < t.extent(1); ++j) m[i][j] = t(i, j);
    return m;
  };
  auto vec = [](const Tensor<float, 1>& t) { return std::vector<double>(t.values().begin(), t.values().end()); };
  oracle::Matrix q(L), k(L), v(L);
  for (int t = 0; t < L; ++t) {
    std::vector<double> row(D);
    for (int f = 0; f < D; ++f) row[f] = x(b, t, f);
    q[t] = oracle::linear(row, mat(w.W_q_weight), vec(w.W_q_bias));
    k[t] = oracle::linear(row, mat(w.W_k_weight), vec(w.W_k_bias));
    v[t] = oracle::linear(row, mat(w.W_v_weight), vec(w.W_v_bias));
  }
  auto valid = [&](int s) { return mask.size() == 0 || mask(b, s) != 0; };
  OracleResult result{oracle::Matrix(L, std::vector<double>(D, 0.0)), std::vector<double>(nh, -INFINITY)};
  for (int h = 0; h < nh; ++h)
    for (int t = 0; t < L; ++t) {
      if (!valid(t)) continue;
      const bool local = c.is_local(h);
      const int wl = int(c.window);
      std::vector<double> scores(L, -INFINITY);
      for (int s = 0; s < L; ++s) {
        bool sees;
        if (local) sees = c.causal ? (s > t - wl && s <= t) : (s >= t - (wl - 1) / 2 && s <= t + wl / 2);
        else sees = !c.causal || s <= t;
        if (!sees || !valid(s)) continue;
        scores[s] = oracle::dot_head(q[t], k[s], h, dh) / std::sqrt(double(dh));
        result.max_logit[h] = std::max(result.max_logit[h], scores[s]);
      }
      double top = -INFINITY, total = 0;
      for (double s : scores) top = std::max(top, s);
      if (top == -INFINITY) continue;
      for (double s : scores) total += std::exp(s - top);
      for (int s = 0; s < L; ++s)
        for (int f = 0; f < dh; ++f) result.y[t][h * dh + f] += std::exp(scores[s] - top) / total * v[s][h * dh + f];
    }
  for (auto& row : result.y) row = oracle::linear(row, mat(w.W_o_weight), vec(w.W_o_bias));
  return result;
}

}  // namespace

TEST_CASE("sliding and full visibility rules", "[ls_heads][policy]") {
  using lsattn::IndexRange;
  using lsattn::SlidingVisibility;
  STATIC_REQUIRE(SlidingVisibility{4, true}.keys(10, 12, 100) == IndexRange{7, 12});
  STATIC_REQUIRE(SlidingVisibility{4, false}.keys(10, 12, 100) == IndexRange{9, 14});  // t−1 … t+2
  STATIC_REQUIRE(SlidingVisibility{5, false}.row_keys(10, 100) == IndexRange{8, 13});  // t−2 … t+2
  STATIC_REQUIRE(SlidingVisibility{4, false}.row_keys(10, 100) == IndexRange{9, 13});  // t−1 … t+2
  STATIC_REQUIRE(SlidingVisibility{4, true}.row_keys(1, 100) == IndexRange{0, 2});     // clipped at 0
  STATIC_REQUIRE(lsattn::FullVisibility{true}.row_keys(7, 100) == IndexRange{0, 8});
  STATIC_REQUIRE(lsattn::FullVisibility{true}.keys(0, 64, 1000) == IndexRange{0, 64});
}

TEST_CASE("LS heads match the float64 oracle", "[ls_heads][oracle]") {
  std::mt19937_64 rng(31);
  auto pick = [&](std::initializer_list<int> options) {
    return static_cast<index_t>(options.begin()[std::uniform_int_distribution<size_t>(0, options.size() - 1)(rng)]);
  };
  for (int trial = 0; trial < 60; ++trial) {
    ls::Config c;
    c.num_heads = pick({1, 2, 4});
    c.dim = c.num_heads * pick({2, 8});
    c.window = pick({1, 2, 3, 8, 33});
    c.causal = pick({0, 1}) == 1;
    for (index_t h = 0; h < c.num_heads; ++h)
      if (pick({0, 1})) c.local_heads.push_back(h);
    const index_t batch = pick({1, 2}), length = pick({1, 5, 64, 65, 300});
    const auto weights = ls::Weights<float>::random(c, 10 + trial);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    Tensor<float, 3> x(Shape<3>{batch, length, c.dim});
    for (auto& value : x.values()) value = normal(rng);
    Tensor<float, 2> mask;
    if (pick({0, 1})) {
      mask = Tensor<float, 2>(Shape<2>{batch, length}, 1.0f);
      for (auto& m : mask.values()) m = std::bernoulli_distribution(0.2)(rng) ? 0.0f : 1.0f;
    }
    const ls::LsHeadsAttention<lsattn::cpu, float> layer(c, weights);
    std::vector<float> max_logits;
    const auto y = layer.forward(x.view(), mask.size() ? mask.view() : lsattn::HostView<const float, 2>{}, &max_logits);
    double worst = 0, scale = 1e-3;
    std::vector<double> want_max(c.num_heads, -INFINITY);
    for (index_t b = 0; b < batch; ++b) {
      const auto want = oracle_ls_heads(c, weights, x, mask, b);
      for (index_t h = 0; h < c.num_heads; ++h) want_max[h] = std::max(want_max[h], want.max_logit[h]);
      for (const auto& row : want.y)
        for (double value : row) scale = std::max(scale, std::abs(value));
      for (index_t t = 0; t < length; ++t)
        for (index_t f = 0; f < c.dim; ++f) worst = std::max(worst, std::abs(y(b, t, f) - want.y[t][f]));
    }
    INFO("trial " << trial << ": nh=" << c.num_heads << " w=" << c.window << " causal=" << c.causal << " local="
                  << c.local_heads.size() << " L=" << length);
    CHECK(worst / scale < 2e-5);
    for (index_t h = 0; h < c.num_heads; ++h)
      if (std::isfinite(want_max[h])) CHECK(max_logits[h] == Approx(want_max[h]).epsilon(1e-4).margin(1e-5));
  }
}

TEST_CASE("the full-attention baseline is exact softmax attention", "[ls_heads][baseline]") {
  std::mt19937_64 rng(2);
  for (bool causal : {false, true}) {
    std::normal_distribution<float> normal(0.0f, 1.0f);
    Tensor<float, 3> q(Shape<3>{2, 300, 16}), k(q.shape()), v(q.shape()), context(q.shape());
    for (auto* t : {&q, &k, &v})
      for (auto& value : t->values()) value = normal(rng);
    lsattn::baseline::full_attention<float>(2, q.view(), k.view(), v.view(), {}, context.view(), 0, causal);
    // One query of one head, by hand.
    const index_t t = 123, h = 1;
    double top = -INFINITY, total = 0;
    std::vector<double> scores(300, -INFINITY);
    for (index_t s = 0; s < 300; ++s) {
      if (causal && s > t) continue;
      scores[s] = 0;
      for (index_t f = 0; f < 8; ++f) scores[s] += q(1, t, h * 8 + f) * k(1, s, h * 8 + f) / std::sqrt(8.0);
      top = std::max(top, scores[s]);
    }
    for (double s : scores) total += std::exp(s - top);
    for (index_t f = 0; f < 8; ++f) {
      double want = 0;
      for (index_t s = 0; s < 300; ++s) want += std::exp(scores[s] - top) / total * v(1, s, h * 8 + f);
      CHECK(context(1, t, h * 8 + f) == Approx(want).margin(1e-5));
    }
  }
}

TEST_CASE("LS heads configuration and input errors", "[ls_heads][errors]") {
  using Catch::Matchers::Contains;
  ls::Config c{8, 2, {0}, 4, true, 0};
  const auto weights = ls::Weights<float>::random(c, 1);
  c.local_heads = {2};
  CHECK_THROWS_WITH((ls::LsHeadsAttention<lsattn::cpu, float>(c, weights)), Contains("local_heads") && Contains("2"));
  c.local_heads = {1, 1};
  CHECK_THROWS_WITH((ls::LsHeadsAttention<lsattn::cpu, float>(c, weights)), Contains("twice"));
  c.local_heads = {0};
  c.window = 0;
  CHECK_THROWS_WITH((ls::LsHeadsAttention<lsattn::cpu, float>(c, weights)), Contains("window"));
  c.window = 4;
  c.num_heads = 3;
  CHECK_THROWS_WITH((ls::LsHeadsAttention<lsattn::cpu, float>(c, weights)), Contains("divisible"));
  c.num_heads = 2;
  const ls::LsHeadsAttention<lsattn::cpu, float> layer(c, weights);
  Tensor<float, 3> x(Shape<3>{1, 4, 7});
  CHECK_THROWS_WITH(layer.forward(x.view()), Contains("(1, 4, 7)"));
  Tensor<float, 3> good(Shape<3>{1, 4, 8}, 0.5f);
  good(0, 3, 3) = std::nanf("");
  CHECK_THROWS_WITH(layer.forward(good.view()), Contains("non-finite"));
}
