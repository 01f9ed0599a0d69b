#pragma once
// Conversions shared by the tests: library tensors to the oracles' float64 containers, and a
// Weights<float> to another element type.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <string>
#include <type_traits>
#include <vector>

#include "lsattn/core/tensor.hpp"
#include "oracle_lra.hpp"

namespace test_helpers {

template <class T, std::size_t R>
std::vector<double> flat(const lsattn::Tensor<T, R>& t) {
  return {t.values().begin(), t.values().end()};
}

template <class T>
oracle::Matrix to_matrix(const lsattn::Tensor<T, 2>& t) {
  oracle::Matrix m(t.extent(0), std::vector<double>(t.extent(1)));
  for (lsattn::index_t i = 0; i < t.extent(0); ++i)
    for (lsattn::index_t j = 0; j < t.extent(1); ++j) m[i][j] = t(i, j);
  return m;
}

// The same parameters in element type T (Weights::for_each visits them in a fixed order).
template <class T, template <class> class Weights, class Config>
Weights<T> cast_weights(const Weights<float>& weights, const Config& config) {
  std::vector<std::vector<T>> values;
  const_cast<Weights<float>&>(weights).for_each(config, [&](const std::string&, const auto& tensor, const auto&) {
    values.emplace_back(tensor.values().begin(), tensor.values().end());
  });
  Weights<T> out;
  std::size_t i = 0;
  out.for_each(config, [&](const std::string&, auto& tensor, const auto& shape) {
    tensor = std::remove_reference_t<decltype(tensor)>(shape, values[i++]);
  });
  return out;
}

// The largest absolute difference relative to the largest |want| (at least 1e-6).
inline double relative_difference(const lsattn::Tensor<float, 3>& got, const lsattn::Tensor<float, 3>& want) {
  REQUIRE(got.shape() == want.shape());
  double scale = 1e-6, worst = 0;
  for (float v : want.values()) scale = std::max(scale, static_cast<double>(std::abs(v)));
  for (lsattn::index_t i = 0; i < got.size(); ++i)
    worst = std::max(worst, static_cast<double>(std::abs(got.values()[i] - want.values()[i])));
  return worst / scale;
}

}  // namespace test_helpers
