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
