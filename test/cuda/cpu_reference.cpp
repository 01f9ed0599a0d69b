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
