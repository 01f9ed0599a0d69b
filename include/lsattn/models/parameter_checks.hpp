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

// An optional parameter the config switches off must not be given: a filled qkv.bias with
// qkv_bias = false would otherwise be silently ignored and the output wrong.
template <class Tensor>
void require_unused_empty(const Tensor& tensor, const std::string& name, const std::string& switched_off_by) {
  require(tensor.size() == 0, "weight ", name, " is given (shape ", to_string(tensor.shape()), ") but ", switched_off_by,
          "; the configuration contradicts the weights");
}

}  // namespace lsattn::detail
