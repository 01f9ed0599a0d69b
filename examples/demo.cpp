// lsattn demo: the bidirectional Transformer-LS layer on an embedded configuration (no files
// needed), over growing lengths, beside plain full attention while that stays affordable.
#include <CLI/CLI.hpp>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <random>

#include "lsattn/baseline/full_attention.hpp"
#include "lsattn/lsattn.hpp"
#include "oracle_lra.hpp"
#include "peak_memory.hpp"

namespace {

using lsattn::index_t;
using lsattn::Shape;
using lsattn::Tensor;
namespace lra = lsattn::models::lra;

Tensor<float, 3> random_tokens(index_t length, index_t width, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  Tensor<float, 3> x(Shape<3>{1, length, width});
  for (auto& v : x.values()) v = normal(rng);
  return x;
}

// A full multi-head attention layer with the same projections, for comparison.
Tensor<float, 3> full_attention_layer(const lra::Weights<float>& w, const lra::Config& c, const Tensor<float, 3>& x) {
  const index_t length = x.extent(1), width = c.width();
  Tensor<float, 3> q(x.shape()), k(x.shape()), v(x.shape()), context(x.shape()), y(x.shape());
  lsattn::cpu_detail::linear(x.data(), length, width, w.W_q_weight.data(), w.W_q_bias.data(), width, q.data(), c.threads);
  lsattn::cpu_detail::linear(x.data(), length, width, w.W_k_weight.data(), w.W_k_bias.data(), width, k.data(), c.threads);
  lsattn::cpu_detail::linear(x.data(), length, width, w.W_v_weight.data(), w.W_v_bias.data(), width, v.data(), c.threads);
  lsattn::baseline::full_attention<float>(c.num_head, q.view(), k.view(), v.view(), {}, context.view(), c.threads);
  lsattn::cpu_detail::linear(context.data(), length, width, w.W_o_weight.data(), w.W_o_bias.data(), width, y.data(), c.threads);
  return y;
}

struct Measurement {
  double seconds;
  double peak_mib;
  bool finite;
};

template <class Run>
Measurement measure(Run&& run) {
  lsattn_bench::reset_peak_heap();
  const std::size_t before = lsattn_bench::current_heap_bytes();
  const auto start = std::chrono::steady_clock::now();
  const Tensor<float, 3> y = run();
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  bool finite = true;
  for (float v : y.values()) finite = finite && std::isfinite(v);
  return {seconds, static_cast<double>(lsattn_bench::peak_heap_bytes() - before) / (1 << 20), finite};
}

// The float layer against the independent float64 oracle on a small padded input.
double oracle_check(const lra::Config& config) {
  const lra::Config small{config.num_head, 8, config.num_head * 8, 4, 3, false, config.threads};
  const auto weights = lra::Weights<float>::random(small, 99);
  const index_t length = 37;
  const auto x = random_tokens(length, small.width(), 3);
  Tensor<float, 2> mask(Shape<2>{1, length}, 1.0f);
  mask(0, 5) = mask(0, 36) = 0;
  const auto y = lra::AttentionLS<lsattn::cpu, float>(small, weights).forward(x.view(), mask.view());

  auto matrix = [](const auto& t) {
    oracle::Matrix m(t.extent(0), std::vector<double>(t.extent(1)));
    for (index_t i = 0; i < t.extent(0); ++i)
      for (index_t j = 0; j < t.extent(1); ++j) m[i][j] = t(i, j);
    return m;
  };
  auto vector = [](const auto& t) { return std::vector<double>(t.values().begin(), t.values().end()); };
  const oracle::LraWeights ow{matrix(weights.W_q_weight), matrix(weights.W_k_weight), matrix(weights.W_v_weight),
                              matrix(weights.W_o_weight), matrix(weights.dconv_fc_weight), vector(weights.W_q_bias),
                              vector(weights.W_k_bias), vector(weights.W_v_bias), vector(weights.W_o_bias),
                              vector(weights.dconv_fc_bias), vector(weights.dual_ln_s_weight),
                              vector(weights.dual_ln_s_bias), vector(weights.dual_ln_l_weight),
                              vector(weights.dual_ln_l_bias)};
  oracle::Matrix rows(length, std::vector<double>(small.width()));
  std::vector<bool> valid(length);
  for (index_t t = 0; t < length; ++t) {
    valid[t] = mask(0, t) != 0;
    for (index_t f = 0; f < small.width(); ++f) rows[t][f] = x(0, t, f);
  }
  const auto want = oracle::lra_forward({int(small.num_head), 8, 4, 3}, ow, rows, valid, nullptr);
  double worst = 0;
  for (index_t t = 0; t < length; ++t)
    for (index_t f = 0; f < small.width(); ++f) worst = std::max(worst, std::abs(y(0, t, f) - want[t][f]));
  return worst;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"lsattn demo: bidirectional Transformer-LS attention vs full attention"};
  index_t max_length = 65536, max_full_length = 8192;
  lra::Config config{8, 64, 512, 128, 64, false, 0};
  app.add_option("--max-length", max_length, "longest sequence")->check(CLI::PositiveNumber);
  app.add_option("--max-full-length", max_full_length, "longest sequence for full attention");
  app.add_option("--threads", config.threads, "threads (0: OpenMP default)")->check(CLI::NonNegativeNumber);
  CLI11_PARSE(app, argc, argv);

  const double error = oracle_check(config);
  std::printf("oracle check (L=37, padding, float vs float64): max abs error %.2e %s\n", error, error < 1e-4 ? "OK" : "FAILED");
  std::printf("layer: D=%lld heads=%lld w=%lld r=%lld, batch 1, float32, %d threads\n\n",
              static_cast<long long>(config.transformer_dim), static_cast<long long>(config.num_head),
              static_cast<long long>(config.window_size), static_cast<long long>(config.num_landmarks),
              lsattn::cpu_detail::resolve_threads(config.threads));
  std::printf("%8s | %10s %12s %10s | %10s %12s %10s | %8s\n", "tokens", "LS time", "LS tok/s", "LS MiB", "full time",
              "full tok/s", "full MiB", "speed-up");

  const auto weights = lra::Weights<float>::random(config, 1);
  const lra::AttentionLS<lsattn::cpu, float> layer(config, weights);
  bool all_finite = true;
  for (index_t length = 1024; length <= max_length; length *= 2) {
    const auto x = random_tokens(length, config.transformer_dim, length);
    const Measurement ls = measure([&] { return layer.forward(x.view()); });
    all_finite = all_finite && ls.finite;
    std::printf("%8lld | %9.3fs %12.0f %10.1f |", static_cast<long long>(length), ls.seconds, length / ls.seconds, ls.peak_mib);
    if (length <= max_full_length) {
      const Measurement full = measure([&] { return full_attention_layer(weights, config, x); });
      std::printf(" %9.3fs %12.0f %10.1f | %7.1fx\n", full.seconds, length / full.seconds, full.peak_mib,
                  full.seconds / ls.seconds);
    } else {
      std::printf(" %10s %12s %10s | %8s\n", "-", "-", "-", "-");
    }
    std::fflush(stdout);
  }
  std::printf("\nall outputs finite: %s\n", all_finite ? "yes" : "NO");
  return error < 1e-4 && all_finite ? 0 : 1;
}
