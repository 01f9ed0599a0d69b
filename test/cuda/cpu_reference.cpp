#include "cpu_reference.hpp"

#include "lsattn/lsattn.hpp"

namespace lsattn_test {

void cpu_bidirectional(const lsattn::AttentionConfig& config, const lsattn::AttentionInputs<float>& inputs,
                       const lsattn::DualLayerNorm::Params<float, lsattn::host_space>& norm,
                       const lsattn::HostView<float, 3>& context) {
  const lsattn::LongShortAttention<lsattn::cpu, float> attention(config);
  attention(inputs, norm, context);
}

}  // namespace lsattn_test

namespace lsattn_test {

void cpu_causal(const lsattn::AttentionConfig& config, const lsattn::CausalAttentionInputs<float>& inputs,
                const lsattn::DualLayerNorm::Params<float, lsattn::host_space>& norm, const lsattn::HostView<float, 3>& context) {
  const lsattn::LongShortAttention<lsattn::cpu, float, lsattn::CausalWindow, lsattn::ChunkedProjection> attention(config);
  attention(inputs, norm, context);
}

}  // namespace lsattn_test

namespace lsattn_test {

void cpu_vision(const lsattn::AttentionConfig& config, const lsattn::VisionAttentionInputs<float>& inputs,
                const lsattn::DualLayerNorm::Params<float, lsattn::host_space>& norm, const lsattn::HostView<float, 3>& context) {
  const lsattn::LongShortAttention<lsattn::cpu, float, lsattn::Window2D, lsattn::SequenceProjection> attention(config);
  attention(inputs, norm, context);
}

}  // namespace lsattn_test

namespace lsattn_test {

lsattn::Tensor<float, 3> cpu_lra_layer(const lsattn::models::lra::Config& config,
                                       const lsattn::models::lra::Weights<float>& weights,
                                       const lsattn::Tensor<float, 3>& x, const lsattn::Tensor<float, 2>& mask,
                                       const lsattn::Tensor<float, 3>& cls) {
  const lsattn::models::lra::AttentionLS<lsattn::cpu, float> layer(config, weights);
  return layer.forward(x.view(), mask.size() ? mask.view() : lsattn::HostView<const float, 2>{},
                       cls.size() ? cls.view() : lsattn::HostView<const float, 3>{});
}

}  // namespace lsattn_test

namespace lsattn_test {

lsattn::Tensor<float, 3> cpu_vision_layer(const lsattn::models::vision::Config& config,
                                          const lsattn::models::vision::Weights<float>& weights,
                                          const lsattn::Tensor<float, 3>& x, lsattn::index_t nx, lsattn::index_t ny) {
  const lsattn::models::vision::AttentionLS2D<lsattn::cpu, float> layer(config, weights);
  return layer.forward(x.view(), nx, ny);
}

}  // namespace lsattn_test

namespace lsattn_test {

lsattn::Tensor<float, 3> cpu_causal_layer(const lsattn::models::causal::Config& config,
                                          const lsattn::models::causal::Weights<float>& weights,
                                          const lsattn::Tensor<float, 3>& h, const lsattn::Tensor<float, 3>& h_cache) {
  const lsattn::models::causal::ChunkedLSAttention<lsattn::cpu, float> layer(config, weights);
  return layer.forward(h.view(), h_cache.size() ? h_cache.view() : lsattn::HostView<const float, 3>{});
}

}  // namespace lsattn_test

#include "lsattn/models/ls_heads.hpp"

namespace lsattn_test {

lsattn::Tensor<float, 3> cpu_ls_heads_layer(const lsattn::models::ls_heads::Config& config,
                                            const lsattn::models::ls_heads::Weights<float>& weights,
                                            const lsattn::Tensor<float, 3>& x, const lsattn::Tensor<float, 2>& mask,
                                            std::vector<float>& max_logits) {
  const lsattn::models::ls_heads::LsHeadsAttention<lsattn::cpu, float> layer(config, weights);
  return layer.forward(x.view(), mask.size() ? mask.view() : lsattn::HostView<const float, 2>{}, &max_logits);
}

}  // namespace lsattn_test

#include "lsattn/models/ls_gpt.hpp"

namespace lsattn_test {

lsattn::Tensor<float, 3> cpu_ls_gpt_logits(const lsattn::models::ls_gpt::Config& config,
                                           const lsattn::models::ls_gpt::Weights<float>& weights,
                                           const lsattn::Tensor<std::int64_t, 2>& tokens) {
  const lsattn::models::ls_gpt::LsGpt<float> model(config, weights);
  return model.forward(tokens.view());
}

}  // namespace lsattn_test

#include "lsattn/models/causal_lm.hpp"

namespace lsattn_test {

LmRun cpu_lm_segments(const lsattn::models::causal::LmConfig& config, const lsattn::models::causal::LmWeights<float>& weights,
                      const std::vector<lsattn::Tensor<std::int64_t, 2>>& segments) {
  const lsattn::models::causal::TransformerLSModel<lsattn::cpu, float> model(config, weights);
  auto state = model.initial_state(segments.front().extent(0));
  LmRun run;
  for (const auto& tokens : segments) run.logprobs.push_back(model.forward(tokens.view(), state));
  run.caches = state.caches;
  return run;
}

}  // namespace lsattn_test
