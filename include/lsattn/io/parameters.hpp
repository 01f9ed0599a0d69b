#pragma once
// Loading a model's parameters from a safetensors file by their published state_dict names.
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>

#include "lsattn/core/checks.hpp"
#include "lsattn/core/error.hpp"
#include "lsattn/io/safetensors.hpp"

namespace lsattn::io {

// Weights::for_each(config, visit) names every parameter with its expected shape; each is
// read as `prefix + name` (F32, F16 or BF16, converted to float), its shape checked and its
// values checked to be finite, so the error names the tensor of the file.
template <class Weights, class Config>
Weights load_parameters(const SafeTensorsFile& file, const Config& config, const std::string& prefix = "") {
  Weights weights;
  weights.for_each(config, [&](const std::string& name, auto& tensor, const auto& shape) {
    const std::string full = prefix + name;
    require(file.contains(full), "weights ", file.source(), ": missing tensor '", full, "' (expected shape ",
            to_string(shape), ")", prefix.empty() ? "; if the layer sits inside a model, pass its prefix" : "");
    tensor = file.load_float<std::tuple_size_v<std::remove_cvref_t<decltype(shape)>>>(full, shape);
    lsattn::detail::require_finite(std::as_const(tensor).view(), "weights " + file.source() + ": tensor '" + full + "'");
  });
  return weights;
}

// The inverse: adds every parameter of `weights` to `writer` as `prefix + name`.
template <class Weights, class Config>
void save_parameters(SafeTensorsWriter& writer, const Weights& weights, const Config& config, const std::string& prefix = "") {
  // for_each only resizes the layer list of an empty Weights; a filled one is not modified.
  const_cast<Weights&>(weights).for_each(config, [&](const std::string& name, const auto& tensor, const auto&) {
    writer.add(prefix + name, tensor);
  });
}

// A model's stacked layers `<prefix><stem><i><probe>` (i = 0, 1, …) must number n_layer: checked
// before n_layer layers are allocated, since a wrong n_layer would otherwise fail on a missing
// tensor after a huge allocation, or ignore trained layers. `unit` names them ("layers").
inline void require_layer_count(const SafeTensorsFile& file, index_t n_layer, const std::string& prefix,
                                const std::string& stem, const std::string& probe, const char* unit) {
  const auto has = [&](index_t layer) { return file.contains(prefix + stem + std::to_string(layer) + probe); };
  const bool has_last = has(n_layer - 1), has_more = has(n_layer);
  require(has_last && !has_more, "weights ", file.source(), ": n_layer = ", n_layer, " contradicts the file, which ",
          has_more ? "has more " + std::string(unit) + " (" : std::string("lacks "), prefix, stem,
          has_more ? n_layer : n_layer - 1, probe, has_more ? ")" : "");
}

}  // namespace lsattn::io
