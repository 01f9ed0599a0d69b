#pragma once
// Loading the LRA layer from a safetensors checkpoint exported from PyTorch, under the
// published state_dict names, and reading its hyperparameters from `__metadata__`.
#include <cctype>
#include <map>
#include <optional>
#include <string>

#include "lsattn/io/safetensors.hpp"
#include "lsattn/models/lra.hpp"

namespace lsattn::models::lra {

// Each tensor is `prefix + name` (e.g. "model.transformer_0.mha." + "W_q.weight"); F32, F16
// and BF16 are accepted and converted. Shapes are checked against the config.
inline Weights<float> load_weights(const io::SafeTensorsFile& file, const Config& config, const std::string& prefix = "") {
  config.validate();
  Weights<float> weights;
  weights.for_each(config, [&](const std::string& name, auto& tensor, const auto& shape) {
    const std::string full = prefix + name;
    require(file.contains(full), "weights ", file.source(), ": missing tensor '", full, "' (expected shape ",
            to_string(shape), ")", prefix.empty() ? "; if the layer sits inside a model, pass its prefix" : "");
    tensor = file.load_float<std::tuple_size_v<std::remove_cvref_t<decltype(shape)>>>(full, shape);
  });
  if (config.num_landmarks == 0) {
    require(!file.contains(prefix + "dconv_fc.weight"), "weights ", file.source(), ": tensor '", prefix,
            "dconv_fc.weight' is present but num_landmarks = 0; the hyperparameters contradict the weights");
  }
  return weights;
}

// Hyperparameters under the published config names; any of them may be absent.
struct ConfigFields {
  std::optional<index_t> num_head, head_dim, transformer_dim, window_size, num_landmarks;
  std::optional<std::string> pooling_mode;

  static ConfigFields from_metadata(const std::map<std::string, std::string>& metadata, const std::string& source) {
    ConfigFields fields;
    auto integer = [&](const char* key, std::optional<index_t>& target) {
      const auto found = metadata.find(key);
      if (found == metadata.end()) return;
      std::size_t used = 0;
      long long value = 0;
      try {
        value = std::stoll(found->second, &used);
      } catch (const std::exception&) {
        used = 0;
      }
      require(used != 0 && used == found->second.size(), source, ": __metadata__ ", key,
              " must be an integer, got '", found->second, "'");
      target = value;
    };
    integer("num_head", fields.num_head);
    integer("head_dim", fields.head_dim);
    integer("transformer_dim", fields.transformer_dim);
    integer("window_size", fields.window_size);
    integer("num_landmarks", fields.num_landmarks);
    if (const auto found = metadata.find("pooling_mode"); found != metadata.end()) fields.pooling_mode = found->second;
    return fields;
  }

  // Fields set in `overrides` win.
  ConfigFields overridden_by(const ConfigFields& overrides) const {
    ConfigFields merged = *this;
    auto take = [](auto& target, const auto& source) {
      if (source) target = source;
    };
    take(merged.num_head, overrides.num_head);
    take(merged.head_dim, overrides.head_dim);
    take(merged.transformer_dim, overrides.transformer_dim);
    take(merged.window_size, overrides.window_size);
    take(merged.num_landmarks, overrides.num_landmarks);
    take(merged.pooling_mode, overrides.pooling_mode);
    return merged;
  }

  // transformer_dim defaults to num_head·head_dim and pooling_mode to "MEAN"; the rest are required.
  Config to_config() const {
    auto required = [](const std::optional<index_t>& value, const char* name, const char* flag) {
      require(value.has_value(), "missing hyperparameter ", name, ": store it in the weights' __metadata__ or pass ", flag);
      return *value;
    };
    Config config;
    config.num_head = required(num_head, "num_head", "--heads");
    config.head_dim = required(head_dim, "head_dim", "--head-dim");
    config.window_size = required(window_size, "window_size", "--window");
    config.num_landmarks = required(num_landmarks, "num_landmarks", "--rank");
    config.transformer_dim = transformer_dim.value_or(config.num_head * config.head_dim);
    std::string mode = pooling_mode.value_or("MEAN");
    for (char& c : mode) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    require(mode == "MEAN" || mode == "CLS", "pooling_mode must be 'MEAN' or 'CLS' (any case), got '",
            pooling_mode.value_or(""), "'");
    config.cls_pooling = mode == "CLS";
    config.validate();
    return config;
  }
};

}  // namespace lsattn::models::lra
