#pragma once
// The library's causal and 2D configurations and weights in the float64 oracles' terms, shared by
// the fp32 suites and test_bf16.
#include <vector>

#include "lsattn/lsattn.hpp"
#include "oracle_causal_lm.hpp"
#include "oracle_vision.hpp"
#include "test_helpers.hpp"

namespace test_helpers {

inline oracle::CausalConfig to_oracle(const lsattn::models::causal::Config& c) {
  return {int(c.n_head),     int(c.d_model), int(c.chunk_size), int(c.chunk_rank),
          int(c.window_len), c.use_bias,     int(c.clamp_len),  int(c.cpos_clamp_len)};
}

inline oracle::CausalWeights to_oracle(const lsattn::models::causal::Weights<float>& w,
                                       const lsattn::models::causal::Config& c) {
  const std::vector<double> zeros(c.d_model, 0.0);
  auto bias = [&](const lsattn::Tensor<float, 1>& b) { return c.use_bias ? flat(b) : zeros; };
  return {flat(w.r_w_bias), flat(w.r_r_bias), to_matrix(w.dconv_1_weight), to_matrix(w.r_net_weight),
          to_matrix(w.r_net_chunk_weight), to_matrix(w.proj_query_weight), to_matrix(w.proj_key_weight),
          to_matrix(w.proj_val_weight), to_matrix(w.proj_out_weight), flat(w.dconv_1_bias), flat(w.r_net_chunk_bias),
          bias(w.proj_query_bias), bias(w.proj_key_bias), bias(w.proj_val_bias), bias(w.proj_out_bias),
          flat(w.dual_ln_dproj_weight), flat(w.dual_ln_dproj_bias), flat(w.dual_ln_win_weight), flat(w.dual_ln_win_bias)};
}

// The language model without its stream state.
inline oracle::Lm to_oracle(const lsattn::models::causal::LmConfig& config,
                            const lsattn::models::causal::LmWeights<float>& w) {
  oracle::Lm m{to_oracle(config.layer()), int(config.vocab_size), int(config.d_inner), int(config.mem_len),
               config.pre_ln, config.use_gelu, to_matrix(w.in_emb), flat(w.out_emb_bias), {}};
  for (const auto& layer : w.layers) {
    m.layers.push_back({to_oracle(layer.attn, config.layer()), flat(layer.norm1_weight), flat(layer.norm1_bias),
                        flat(layer.norm2_weight), flat(layer.norm2_bias), flat(layer.fc1_bias), flat(layer.fc2_bias),
                        to_matrix(layer.fc1_weight), to_matrix(layer.fc2_weight)});
  }
  return m;
}

inline oracle::VisionConfig to_oracle(const lsattn::models::vision::Config& c) {
  return {int(c.num_heads), int(c.dim), int(c.w), int(c.dp_rank), int(c.nglo), c.rpe, c.qkv_bias};
}

inline oracle::VisionWeights to_oracle(const lsattn::models::vision::Weights<float>& w) {
  return {to_matrix(w.qkv_weight),       to_matrix(w.to_dynamic_projection_weight),
          to_matrix(w.proj_weight),      to_matrix(w.local_relative_position_bias_table),
          flat(w.qkv_bias),              flat(w.to_dynamic_projection_bias),
          flat(w.proj_bias),             flat(w.dual_ln_dp_weight),
          flat(w.dual_ln_dp_bias),       flat(w.dual_ln_full_weight),
          flat(w.dual_ln_full_bias)};
}

}  // namespace test_helpers
