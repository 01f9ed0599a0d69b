#pragma once
// Shared by the published layers: every parameter must have the shape its config implies and
// hold only finite values (a NaN weight would silently poison every output).
#include <string>

#include "lsattn/core/checks.hpp"
#include "lsattn/core/error.hpp"
#include "lsattn/core/tensor.hpp"

namespace lsattn::detail {

// Weights::for_each(config, visit) names each parameter with its expected shape.
template <class Weights, class Config>
void require_valid_parameters(Weights& weights, const Config& config) {
  weights.for_each(config, [](const std::string& name, const auto& tensor, const auto& shape) {
    require(tensor.shape() == shape, "weight ", name, ": expected shape ", to_string(shape), ", got ",
            to_string(tensor.shape()));
    require_finite(tensor.view(), "weight " + name);
  });
}

}  // namespace lsattn::detail
