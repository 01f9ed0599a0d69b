#pragma once
// Helpers shared by the fuzz targets: checked cost estimates, deterministic inputs, and the
// checks that turn a silent misbehaviour into a crash libFuzzer reports.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <vector>

#include "lsattn/core/tensor.hpp"

namespace lsattn::fuzz {

// How much work a forward run may do (multiply-adds, roughly) before the harness skips it: keeps
// each input in milliseconds under ASan, so the fuzzer explores instead of waiting.
inline constexpr std::int64_t work_budget = std::int64_t{1} << 22;

// Accumulates products of sizes with overflow checks of its own: the harness must not overflow
// on the sizes it is about to hand the library. A negative size (a disabled window, "no clamp")
// counts as 1. Once a product exceeds the budget, or wraps, the whole estimate is over.
class Cost {
 public:
  explicit Cost(std::int64_t budget = work_budget) : budget_(budget) {}

  Cost& add(std::initializer_list<std::int64_t> factors) {
    std::int64_t product = 1;
    for (std::int64_t factor : factors) {
      const std::int64_t positive = factor < 1 ? 1 : factor;
      if (__builtin_mul_overflow(product, positive, &product) || product > budget_) {
        over_ = true;
        return *this;
      }
    }
    if (__builtin_add_overflow(total_, product, &total_) || total_ > budget_) over_ = true;
    return *this;
  }

  bool affordable() const { return !over_; }

 private:
  std::int64_t budget_;
  std::int64_t total_ = 0;
  bool over_ = false;
};

// a + b + ..., saturating at the largest int64 (which no budget affords) instead of wrapping.
inline std::int64_t plus(std::initializer_list<std::int64_t> terms) {
  std::int64_t sum = 0;
  for (std::int64_t term : terms) {
    if (__builtin_add_overflow(sum, term, &sum)) return INT64_MAX;
  }
  return sum;
}

// a * b, saturating likewise (both >= 0).
inline std::int64_t times(std::int64_t a, std::int64_t b) {
  std::int64_t product = 0;
  return __builtin_mul_overflow(a, b, &product) ? INT64_MAX : product;
}

// A deterministic tensor of values in [-1, 1) from a small linear congruential generator.
template <std::size_t Rank>
Tensor<float, Rank> deterministic(const Shape<Rank>& shape, std::uint32_t seed) {
  Tensor<float, Rank> tensor(shape);
  std::uint32_t state = seed * 2654435761u + 1u;
  for (float& value : tensor.values()) {
    state = state * 1664525u + 1013904223u;
    value = static_cast<float>(state >> 8) / static_cast<float>(1u << 23) - 1.0f;
  }
  return tensor;
}

// A finding that is not an exception or a sanitizer report: print it and crash, so libFuzzer
// saves the input.
[[noreturn]] inline void finding(const char* what) {
  std::fprintf(stderr, "lsattn fuzz finding: %s\n", what);
  std::abort();
}

// The same computation twice must give the same bits (threads = 1): a difference means a read
// of uninitialised or stale memory.
template <class T, std::size_t Rank>
void require_identical(const Tensor<T, Rank>& first, const Tensor<T, Rank>& second, const char* what) {
  if (first.shape() != second.shape()) finding(what);
  if (!first.values().empty() &&
      std::memcmp(first.values().data(), second.values().data(), first.values().size() * sizeof(T)) != 0) {
    finding(what);
  }
}

// The layers promise finite outputs or an lsattn::error (issue 10: no silent NaN).
template <class T, std::size_t Rank>
void require_finite(const Tensor<T, Rank>& output, const char* what) {
  for (const T& value : output.values()) {
    if (!std::isfinite(value)) finding(what);
  }
}

}  // namespace lsattn::fuzz
