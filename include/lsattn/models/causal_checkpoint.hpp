#pragma once
// Loading the causal layer and the language model from safetensors checkpoints exported from
// PyTorch, under the published state_dict names, with hyperparameters from `__metadata__`.
#include <string>

#include "lsattn/io/hyperparameters.hpp"
#include "lsattn/io/parameters.hpp"
#include "lsattn/io/safetensors.hpp"
#include "lsattn/models/causal.hpp"
#include "lsattn/models/causal_lm.hpp"

namespace lsattn::models::causal {

// Published names (spec §2.1, §2.7): n_head, d_model, chunk_size, chunk_rank, window_len are
// required; use_bias defaults to false, clamp_len and cpos_clamp_len to -1 (no clamp).
inline Config layer_config_from(const io::Hyperparameters& values) {
  Config config;
  config.n_head = values.required_integer("n_head", "--heads");
  config.d_model = values.required_integer("d_model", "--dim");
  config.chunk_size = values.required_integer("chunk_size", "--chunk");
  config.chunk_rank = values.required_integer("chunk_rank", "--rank");
  config.window_len = values.required_integer("window_len", "--window");
  config.use_bias = values.boolean("use_bias").value_or(false);
  config.clamp_len = values.integer("clamp_len").value_or(-1);
  config.cpos_clamp_len = values.integer("cpos_clamp_len").value_or(-1);
  config.validate();
  return config;
}

// The model adds d_inner, n_layer, vocab_size, mem_len (required), pre_ln and use_gelu
// (default true, as in every published run).
inline LmConfig lm_config_from(const io::Hyperparameters& values) {
  const Config layer = layer_config_from(values);
  LmConfig config;
  config.n_head = layer.n_head;
  config.d_model = layer.d_model;
  config.chunk_size = layer.chunk_size;
  config.chunk_rank = layer.chunk_rank;
  config.window_len = layer.window_len;
  config.use_bias = layer.use_bias;
  config.clamp_len = layer.clamp_len;
  config.cpos_clamp_len = layer.cpos_clamp_len;
  config.d_inner = values.required_integer("d_inner", "--inner");
  config.n_layer = values.required_integer("n_layer", "--layers");
  config.vocab_size = values.required_integer("vocab_size", "--vocab");
  config.mem_len = values.required_integer("mem_len", "--mem-len");
  config.pre_ln = values.boolean("pre_ln").value_or(true);
  config.use_gelu = values.boolean("use_gelu").value_or(true);
  config.validate();
  return config;
}

// Whether the file holds the projection biases of the layer under `prefix`.
inline bool has_projection_bias(const io::SafeTensorsFile& file, const std::string& prefix) {
  for (const char* name : {"proj_query.bias", "proj_key.bias", "proj_val.bias", "proj_out.bias"}) {
    if (file.contains(prefix + name)) return true;
  }
  return false;
}

inline void require_bias_matches(const io::SafeTensorsFile& file, const std::string& prefix, bool use_bias) {
  require(use_bias || !has_projection_bias(file, prefix), "weights ", file.source(), ": '", prefix,
          "proj_*.bias' tensors are present but use_bias = false; the hyperparameters contradict the weights");
}

// As layer_config_from(values), with use_bias, when the metadata leaves it out, told by the
// projection biases present (a stated use_bias the tensors contradict is an error at load).
inline Config layer_config_from(const io::Hyperparameters& values, const io::SafeTensorsFile& file,
                                const std::string& prefix = "") {
  Config config = layer_config_from(values);
  if (!values.boolean("use_bias")) config.use_bias = has_projection_bias(file, prefix);
  return config;
}

// The same for the model: use_bias told by layer 0's projection biases.
inline LmConfig lm_config_from(const io::Hyperparameters& values, const io::SafeTensorsFile& file,
                               const std::string& prefix = "") {
  LmConfig config = lm_config_from(values);
  if (!values.boolean("use_bias")) config.use_bias = has_projection_bias(file, prefix + "layers.0.attn.");
  return config;
}

inline Weights<float> load_layer_weights(const io::SafeTensorsFile& file, const Config& config,
                                         const std::string& prefix = "") {
  config.validate();
  require_bias_matches(file, prefix, config.use_bias);
  return io::load_parameters<Weights<float>>(file, config, prefix);
}

// `out_emb.weight` is tied to `in_emb.weight`: when the file has it too, it must be equal.
inline LmWeights<float> load_lm_weights(const io::SafeTensorsFile& file, const LmConfig& config,
                                        const std::string& prefix = "") {
  config.validate();
  io::require_layer_count(file, config.n_layer, prefix, "layers.", ".norm1.weight", "layers");
  for (index_t layer = 0; layer < config.n_layer; ++layer) {
    require_bias_matches(file, prefix + "layers." + std::to_string(layer) + ".attn.", config.use_bias);
  }
  LmWeights<float> weights = io::load_parameters<LmWeights<float>>(file, config, prefix);
  if (file.contains(prefix + "out_emb.weight")) {
    const auto out_emb = file.load_float<2>(prefix + "out_emb.weight", weights.in_emb.shape());
    require(out_emb.values() == weights.in_emb.values(), "weights ", file.source(), ": '", prefix,
            "out_emb.weight' differs from '", prefix, "in_emb.weight', but the published model ties them");
  }
  return weights;
}

}  // namespace lsattn::models::causal
