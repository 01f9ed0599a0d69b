#pragma once
// The CPU backend behind a plain function, so that the CUDA tests (compiled by nvcc, which
// must not see Eigen) can compare against it.
#include "lsattn/attention.hpp"

namespace lsattn_test {

void cpu_bidirectional(const lsattn::AttentionConfig& config, const lsattn::AttentionInputs<float>& inputs,
                       const lsattn::DualLayerNorm::Params<float, lsattn::host_space>& norm,
                       const lsattn::HostView<float, 3>& context);

}  // namespace lsattn_test

namespace lsattn_test {

void cpu_causal(const lsattn::AttentionConfig& config, const lsattn::CausalAttentionInputs<float>& inputs,
                const lsattn::DualLayerNorm::Params<float, lsattn::host_space>& norm, const lsattn::HostView<float, 3>& context);

}  // namespace lsattn_test

namespace lsattn_test {

void cpu_vision(const lsattn::AttentionConfig& config, const lsattn::VisionAttentionInputs<float>& inputs,
                const lsattn::DualLayerNorm::Params<float, lsattn::host_space>& norm, const lsattn::HostView<float, 3>& context);

}  // namespace lsattn_test

#include "lsattn/models/lra.hpp"

namespace lsattn_test {

lsattn::Tensor<float, 3> cpu_lra_layer(const lsattn::models::lra::Config& config,
                                       const lsattn::models::lra::Weights<float>& weights,
                                       const lsattn::Tensor<float, 3>& x, const lsattn::Tensor<float, 2>& mask,
                                       const lsattn::Tensor<float, 3>& cls);

}  // namespace lsattn_test

#include "lsattn/models/vision.hpp"

namespace lsattn_test {

// models::vision::AttentionLS2D<cpu, float>(config, weights).forward(x, nx, ny).
lsattn::Tensor<float, 3> cpu_vision_layer(const lsattn::models::vision::Config& config,
                                          const lsattn::models::vision::Weights<float>& weights,
                                          const lsattn::Tensor<float, 3>& x, lsattn::index_t nx, lsattn::index_t ny);

}  // namespace lsattn_test

#include "lsattn/models/causal.hpp"

namespace lsattn_test {

// The CPU causal layer; an empty h_cache means no cache.
lsattn::Tensor<float, 3> cpu_causal_layer(const lsattn::models::causal::Config& config,
                                          const lsattn::models::causal::Weights<float>& weights,
                                          const lsattn::Tensor<float, 3>& h, const lsattn::Tensor<float, 3>& h_cache);

}  // namespace lsattn_test

#include <vector>

#include "lsattn/models/ls_heads_config.hpp"

namespace lsattn_test {

// models::ls_heads::LsHeadsAttention<cpu, float>(config, weights).forward(x, mask, max_logits).
lsattn::Tensor<float, 3> cpu_ls_heads_layer(const lsattn::models::ls_heads::Config& config,
                                            const lsattn::models::ls_heads::Weights<float>& weights,
                                            const lsattn::Tensor<float, 3>& x, const lsattn::Tensor<float, 2>& mask,
                                            std::vector<float>& max_logits);

}  // namespace lsattn_test

#include <cstdint>

#include "lsattn/models/ls_gpt_config.hpp"

namespace lsattn_test {

// models::ls_gpt::LsGpt<float>(config, weights).forward(tokens): the logits (B, T, vocab_size).
lsattn::Tensor<float, 3> cpu_ls_gpt_logits(const lsattn::models::ls_gpt::Config& config,
                                           const lsattn::models::ls_gpt::Weights<float>& weights,
                                           const lsattn::Tensor<std::int64_t, 2>& tokens);

}  // namespace lsattn_test

#include "lsattn/models/causal_lm.hpp"

namespace lsattn_test {

// The CPU character LM over segments from a zero memory: each segment's log-probabilities,
// and the layer caches after the last one.
struct LmRun {
  std::vector<lsattn::Tensor<float, 3>> logprobs;
  std::vector<lsattn::Tensor<float, 3>> caches;
};
LmRun cpu_lm_segments(const lsattn::models::causal::LmConfig& config, const lsattn::models::causal::LmWeights<float>& weights,
                      const std::vector<lsattn::Tensor<std::int64_t, 2>>& segments);

}  // namespace lsattn_test
