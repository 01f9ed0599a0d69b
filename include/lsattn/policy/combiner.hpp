#pragma once
// Combiner policies: how the local and the compressed keys/values are put on one scale
// before the joint softmax.
#include "lsattn/core/backend.hpp"
#include "lsattn/core/checks.hpp"
#include "lsattn/core/config.hpp"
#include "lsattn/core/tensor.hpp"

namespace lsattn {

// Affine LayerNorm over the merged model width (all heads jointly), biased variance.
template <class T, class Space = host_space>
struct LayerNormParams {
  TensorView<const T, 1, Space> weight;
  TensorView<const T, 1, Space> bias;
  double eps = 1e-5;
};

// DualLN (spec §1.3 steps 2 and 6): `local` normalises the full-resolution K, V (which are
// also the compression input); `global` normalises the compressed K̄, V̄ and the cls k, v.
struct DualLayerNorm {
  template <class T, class Space>
  struct Params {
    LayerNormParams<T, Space> local;
    LayerNormParams<T, Space> global;
  };
  static constexpr bool normalizes = true;
};

// No normalisation: for users whose keys and values are already on one scale.
struct PlainCombiner {
  template <class T, class Space>
  struct Params {};
  static constexpr bool normalizes = false;
};

namespace detail {

// The LayerNorm parameters must cover the merged width.
template <class Combiner, class T, class Space>
void check_norm_params([[maybe_unused]] const AttentionConfig& config,
                       [[maybe_unused]] const typename Combiner::template Params<T, Space>& norm) {
  if constexpr (Combiner::normalizes) {
    const Shape<1> features{config.width()};
    require_shape(norm.local.weight, "local LayerNorm weight", features);
    require_shape(norm.local.bias, "local LayerNorm bias", features);
    require_shape(norm.global.weight, "global LayerNorm weight", features);
    require_shape(norm.global.bias, "global LayerNorm bias", features);
    require(norm.local.eps > 0 && norm.global.eps > 0, "LayerNorm eps: must be > 0");
  }
}

}  // namespace detail
}  // namespace lsattn
