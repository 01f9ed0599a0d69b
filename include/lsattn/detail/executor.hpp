#pragma once
// The primary executor template: a backend specialises it for the policies it implements.
#include <type_traits>

namespace lsattn::detail {

template <class>
inline constexpr bool always_false = false;

// The input bundle of a window policy family; specialised next to each bundle.
template <class Window>
struct InputsFor;

template <class Backend, class Window, class Projection>
struct Executor {
  static_assert(always_false<Backend>,
                "lsattn: no executor for this backend and policy combination. For lsattn::cpu include "
                "<lsattn/cpu.hpp>; for lsattn::cuda include <lsattn/cuda.cuh> and compile with nvcc.");
};

// y = x Wᵀ + b on a backend (W is [out, in], as in a PyTorch state_dict).
template <class Backend>
struct LinearOp {
  static_assert(always_false<Backend>, "lsattn: no linear layer for this backend; include its header");
};

// Row-wise LayerNorm on a backend.
template <class Backend>
struct LayerNormOp {
  static_assert(always_false<Backend>, "lsattn: no LayerNorm for this backend; include its header");
};

// Chunk compression (spec §2.4 steps 2, 4) on a backend.
template <class Backend>
struct CompressChunksOp {
  static_assert(always_false<Backend>, "lsattn: no chunk compression for this backend; include its header");
};

}  // namespace lsattn::detail
