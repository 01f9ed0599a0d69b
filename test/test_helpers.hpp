#pragma once
// Conversions shared by the tests: library tensors to the oracles' float64 containers, and a
// Weights<float> to another element type.
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

}  // namespace test_helpers
