#pragma once
// Choosing the next token from a model's logits (or log-probabilities): greedy at temperature
// 0, otherwise a draw from softmax(logits / temperature) restricted to the top-k tokens and to
// the smallest set whose probability reaches top-p. The draw uses its own 64-bit generator and
// integer-exact steps, so the same seed gives the same tokens on every machine.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <vector>

#include "lsattn/core/error.hpp"
#include "lsattn/core/tensor.hpp"

namespace lsattn::models {

struct SamplingOptions {
  double temperature = 1.0;  // 0: greedy (argmax)
  index_t top_k = 0;         // 0: all tokens
  double top_p = 1.0;        // 1: no nucleus cut
  std::uint64_t seed = 0;

  void validate() const {
    require(std::isfinite(temperature) && temperature >= 0, "temperature: must be >= 0 (0 = greedy), got ", temperature);
    require(top_k >= 0, "top_k: must be >= 0 (0 = all tokens), got ", top_k);
    require(std::isfinite(top_p) && top_p > 0 && top_p <= 1, "top_p: must be in (0, 1], got ", top_p);
  }
};

class Sampler {
 public:
  explicit Sampler(const SamplingOptions& options) : options_((options.validate(), options)), state_(options.seed) {}

  // The index of the next token. Ties in greedy mode go to the lowest index.
  template <class T>
  index_t next(const std::vector<T>& logits) {
    require(!logits.empty(), "sampling: empty logits");
    for (const T& value : logits) require(std::isfinite(static_cast<double>(value)), "sampling: non-finite logit ", value);
    const auto best = std::max_element(logits.begin(), logits.end());  // first of the largest
    if (options_.temperature == 0) return static_cast<index_t>(best - logits.begin());

    // Candidates by decreasing logit (ties: lower index first), cut to top-k.
    std::vector<index_t> order(logits.size());
    std::iota(order.begin(), order.end(), index_t{0});
    std::stable_sort(order.begin(), order.end(), [&](index_t a, index_t b) { return logits[a] > logits[b]; });
    if (options_.top_k > 0 && options_.top_k < static_cast<index_t>(order.size())) order.resize(options_.top_k);
    std::vector<double> weights(order.size());
    const double top = static_cast<double>(*best);
    double total = 0;
    for (std::size_t i = 0; i < order.size(); ++i)
      total += weights[i] = std::exp((static_cast<double>(logits[order[i]]) - top) / options_.temperature);
    // Nucleus: the smallest prefix whose probability reaches top_p (at least one token).
    std::size_t keep = order.size();
    if (options_.top_p < 1) {
      double mass = 0;
      for (std::size_t i = 0; i < order.size(); ++i) {
        mass += weights[i] / total;
        if (mass >= options_.top_p) {
          keep = i + 1;
          break;
        }
      }
      total = std::accumulate(weights.begin(), weights.begin() + static_cast<std::ptrdiff_t>(keep), 0.0);
    }
    // A uniform draw in [0, total) with 53 random bits.
    const double draw = static_cast<double>(next_bits() >> 11) * 0x1.0p-53 * total;
    double running = 0;
    for (std::size_t i = 0; i < keep; ++i) {
      running += weights[i];
      if (draw < running) return order[i];
    }
    return order[keep - 1];  // rounding at the very end of the range
  }

 private:
  // splitmix64: small, fast, and the same sequence everywhere.
  std::uint64_t next_bits() {
    std::uint64_t z = (state_ += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }

  SamplingOptions options_;
  std::uint64_t state_;
};

}  // namespace lsattn::models
