#pragma once
// LongShortAttention: the composition of a short-term window policy, a long-range projection
// policy and a combiner, executed by a backend chosen at compile time. The window policy
// family also fixes the input bundle (bidirectional: AttentionInputs; causal:
// CausalAttentionInputs).
#include <concepts>
#include <cstddef>
#include <string>
#include <type_traits>
#include <utility>

#include "lsattn/core/backend.hpp"
#include "lsattn/core/config.hpp"
#include "lsattn/core/error.hpp"
#include "lsattn/core/tensor.hpp"
#include "lsattn/detail/executor.hpp"
#include "lsattn/inputs/bidirectional.hpp"
#include "lsattn/inputs/causal.hpp"
#include "lsattn/inputs/vision.hpp"
#include "lsattn/policy/combiner.hpp"
#include "lsattn/policy/projection.hpp"
#include "lsattn/policy/window.hpp"

namespace lsattn {

// The input bundle of window policy W for element type T in memory space Space.
template <class W, class T, class Space>
using attention_inputs_t = typename detail::InputsFor<W>::template type<T, Space>;

template <class W>
concept WindowPolicy = requires(const AttentionConfig& config) {
  { W::from(config) } -> std::same_as<W>;
  typename attention_inputs_t<W, float, host_space>;
};

template <class P>
concept ProjectionPolicy = requires(const P projection, const AttentionConfig& config) {
  { P::from(config) } -> std::same_as<P>;
  { projection.enabled() } -> std::convertible_to<bool>;
};

template <class C>
concept CombinerPolicy = requires {
  { C::normalizes } -> std::convertible_to<bool>;
  typename C::template Params<float, host_space>;
};

template <class Backend, class T, WindowPolicy Window = BidirectionalWindow,
          ProjectionPolicy Projection = SequenceProjection, CombinerPolicy Combiner = DualLayerNorm>
class LongShortAttention {
 public:
  using backend = Backend;
  using space = typename Backend::memory_space;
  using Inputs = attention_inputs_t<Window, T, space>;
  using CombinerParams = typename Combiner::template Params<T, space>;
  using Output = TensorView<T, 3, space>;
  using Executor = detail::Executor<Backend, Window, Projection>;

  explicit LongShortAttention(const AttentionConfig& config) : config_(config) {
    config.validate();
    if constexpr (!std::is_same_v<Backend, cpu>) detail::require_fp32_precision(config.precision, "LongShortAttention");
    detail::check_config(Window::from(config), Projection::from(config), config);
  }

  const AttentionConfig& config() const { return config_; }

  // Checks every shape, value and configuration rule; returns an empty string when valid.
  std::string validate(const Inputs& in, const CombinerParams& norm, const Output& out) const {
    try {
      detail::check_inputs<Combiner>(config_, in, norm, out);
    } catch (const error& e) {
      return e.what();
    }
    return {};
  }

  // Writes the per-head attention outputs, merged, before the output projection, into
  // `context`; see the input bundle for the shapes. Backend arguments follow: none on the CPU;
  // a cudaStream_t and a DeviceWorkspace on CUDA.
  template <class... BackendArguments>
  void operator()(const Inputs& in, const CombinerParams& norm, const Output& context,
                  BackendArguments&&... backend_arguments) const {
    detail::check_inputs<Combiner>(config_, in, norm, context);
    Executor::template run<T, Combiner>(config_, in, norm, context, std::forward<BackendArguments>(backend_arguments)...);
  }

  // Scratch memory a call with these inputs needs, for backends that take a caller-provided
  // workspace (CUDA). Only the inputs' shapes are read.
  std::size_t workspace_bytes(const Inputs& in) const
    requires requires(const Inputs& inputs) { Executor::workspace_bytes(AttentionConfig{}, inputs); }
  {
    return Executor::workspace_bytes(config_, in);
  }

 private:
  AttentionConfig config_;
};

}  // namespace lsattn
