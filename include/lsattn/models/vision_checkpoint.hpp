#pragma once
// Loading the 2D ViL-LS attention from a safetensors checkpoint exported from PyTorch, under the
// published state_dict names, with hyperparameters from `__metadata__`.
#include <string>

#include "lsattn/io/hyperparameters.hpp"
#include "lsattn/io/parameters.hpp"
#include "lsattn/io/safetensors.hpp"
#include "lsattn/models/vision.hpp"

namespace lsattn::models::vision {

// Published names (spec §3.1): num_heads, dim, w, dp_rank are required; nglo defaults to 1 and
// rpe, qkv_bias to false, the published constructor's defaults (MsViT passes rpe and qkv_bias
// true: store them in the metadata).
inline Config config_from(const io::Hyperparameters& values) {
  Config config;
  config.num_heads = values.required_integer("num_heads", "--heads");
  config.dim = values.required_integer("dim", "--dim");
  config.w = values.required_integer("w", "--window");
  config.dp_rank = values.required_integer("dp_rank", "--rank");
  config.nglo = values.integer("nglo").value_or(1);
  config.rpe = values.boolean("rpe").value_or(false);
  config.qkv_bias = values.boolean("qkv_bias").value_or(false);
  config.validate();
  return config;
}

// As above, with the switches the metadata leaves out told by the tensors present: qkv_bias by
// `qkv.bias` (MsViT checkpoints have it, the constructor's default is false), rpe by
// `local_relative_position_bias_table`. A stated switch the tensors contradict is an error in
// load_weights, never a tensor silently ignored.
inline Config config_from(const io::Hyperparameters& values, const io::SafeTensorsFile& file,
                          const std::string& prefix = "") {
  Config config = config_from(values);
  if (!values.boolean("qkv_bias")) config.qkv_bias = file.contains(prefix + "qkv.bias");
  if (!values.boolean("rpe")) config.rpe = file.contains(prefix + "local_relative_position_bias_table");
  config.validate();
  return config;
}

// The checkpoint's `relative_position_index` buffer, when present, must equal the published
// formula (spec §3.5): trained tables are only meaningful with that exact indexing.
inline Weights<float> load_weights(const io::SafeTensorsFile& file, const Config& config, const std::string& prefix = "") {
  config.validate();
  Weights<float> weights = io::load_parameters<Weights<float>>(file, config, prefix);
  const std::string index_name = prefix + "relative_position_index";
  if (config.rpe && file.contains(index_name)) {
    const auto expected = relative_position_index(config);
    const auto stored = file.load_int64<2>(index_name);
    require(stored.shape() == expected.shape(), "weights ", file.source(), ": '", index_name, "' has shape ",
            to_string(stored.shape()), ", expected ", to_string(expected.shape()), " for w = ", config.w);
    for (index_t i = 0; i < stored.size(); ++i) {
      require(stored.values()[i] == expected.values()[i], "weights ", file.source(), ": '", index_name,
              "' differs from the published formula at (", i / expected.extent(1), ", ", i % expected.extent(1),
              "): stored ", stored.values()[i], ", formula ", expected.values()[i]);
    }
  }
  require(config.rpe || !file.contains(prefix + "local_relative_position_bias_table"), "weights ", file.source(),
          ": '", prefix, "local_relative_position_bias_table' is present but rpe = false; the hyperparameters contradict the weights");
  require(config.qkv_bias || !file.contains(prefix + "qkv.bias"), "weights ", file.source(), ": '", prefix,
          "qkv.bias' is present but qkv_bias = false; the hyperparameters contradict the weights");
  return weights;
}

}  // namespace lsattn::models::vision
