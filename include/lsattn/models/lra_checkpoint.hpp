#pragma once
// Loading the LRA layer from a safetensors checkpoint exported from PyTorch, under the
// published state_dict names, and reading its hyperparameters from `__metadata__`.
#include <cctype>
#include <string>
#include <utility>
#include <vector>

#include "lsattn/io/hyperparameters.hpp"
#include "lsattn/io/parameters.hpp"
#include "lsattn/io/safetensors.hpp"
#include "lsattn/models/lra.hpp"

namespace lsattn::models::lra {

// Each tensor is `prefix + name` (e.g. "model.transformer_0.mha." + "W_q.weight"); F32, F16
// and BF16 are accepted and converted. Shapes are checked against the config.
inline Weights<float> load_weights(const io::SafeTensorsFile& file, const Config& config, const std::string& prefix = "") {
  config.validate();
  Weights<float> weights = io::load_parameters<Weights<float>>(file, config, prefix);
  // The published module creates dconv_fc = Linear(D, num_head·num_landmarks) even for r = 0,
  // so its state_dict then holds a zero-size [0, D] weight and [0] bias: accepted as exactly
  // that; any other dconv_fc with r = 0 means the hyperparameters contradict the weights.
  if (config.num_landmarks == 0) {
    const std::pair<const char*, std::vector<index_t>> published_empty[] = {
        {"dconv_fc.weight", {0, config.transformer_dim}}, {"dconv_fc.bias", {0}}};
    for (const auto& [name, empty_shape] : published_empty) {
      const std::string full = prefix + name;
      if (!file.contains(full)) continue;
      const auto& shape = file.info(full).shape;
      require(shape == empty_shape, "weights ", file.source(), ": tensor '", full, "' has shape ",
              io::detail::shape_string(shape), " but num_landmarks = 0 (the published module then stores ",
              io::detail::shape_string(empty_shape), "); the hyperparameters contradict the weights");
    }
  }
  return weights;
}

// The config from the published names (spec §1.1): num_head, head_dim, window_size and
// num_landmarks are required; transformer_dim defaults to num_head·head_dim (and must equal
// it); pooling_mode is MEAN or CLS in any case, MEAN when absent.
inline Config config_from(const io::Hyperparameters& values) {
  Config config;
  config.num_head = values.required_integer("num_head", "--heads");
  config.head_dim = values.required_integer("head_dim", "--head-dim");
  config.window_size = values.required_integer("window_size", "--window");
  config.num_landmarks = values.required_integer("num_landmarks", "--rank");
  const auto transformer_dim = values.integer("transformer_dim");
  // The default is a product of two sizes from the file: checked before it is formed.
  config.transformer_dim = transformer_dim ? *transformer_dim
                                           : checked_size("num_head", config.num_head, 1) *
                                                 checked_size("head_dim", config.head_dim, 1);
  const std::string given = values.text("pooling_mode").value_or("MEAN");
  std::string mode;
  for (char c : given) mode += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  require(mode == "MEAN" || mode == "CLS", "pooling_mode must be 'MEAN' or 'CLS' (any case), got '", given, "'");
  config.cls_pooling = mode == "CLS";
  config.validate();
  return config;
}

}  // namespace lsattn::models::lra
