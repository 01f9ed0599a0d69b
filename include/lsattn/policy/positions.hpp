#pragma once
// Relative-position policy of the causal variant (spec §2.3, §2.4 steps 6–7): Transformer-XL
// sinusoids e(p) = [sin(p·f) ‖ cos(p·f)], f_i = 1/10000^(2i/D), with optional clamps.
#include <cmath>
#include <type_traits>

#include "lsattn/core/backend.hpp"
#include "lsattn/core/config.hpp"
#include "lsattn/core/tensor.hpp"

namespace lsattn {

struct TransformerXLPositions {
  index_t clamp_len = -1;       // window positions are capped at clamp_len when > 0
  index_t cpos_clamp_len = -1;  // compressed-key positions are capped at cpos_clamp_len when > 0

  static TransformerXLPositions from(const AttentionConfig& config) { return {config.clamp_len, config.cpos_clamp_len}; }
  LSATTN_HOST_DEVICE constexpr index_t window_value(index_t distance) const { return clamped(distance, clamp_len); }
  LSATTN_HOST_DEVICE constexpr index_t chunk_value(index_t position) const { return clamped(position, cpos_clamp_len); }

  // Writes e(p) (width D, even). In float it follows the published float32 arithmetic (the
  // frequency 1/10000^(i/D) for i = 0, 2, …, then p·f, then sin and cos of that float), whose
  // rounding grows with p; in double every step is double.
  template <class T>
  static void sinusoid(index_t position, index_t width, T* out) {
    for (index_t i = 0; i < width / 2; ++i) sinusoid_pair(position, i, width, out);
  }

  // Frequency i < D/2 of e(p): out[i] = sin(p·f_i), out[D/2 + i] = cos(p·f_i). One element pair,
  // so that the CUDA backend computes its tables with this same function, a thread per pair.
  template <class T>
  LSATTN_HOST_DEVICE static void sinusoid_pair(index_t position, index_t i, index_t width, T* out) {
    using Math = std::conditional_t<std::is_same_v<T, double>, double, float>;
    const Math exponent = static_cast<Math>(2 * i) / static_cast<Math>(width);
    const Math frequency = Math(1) / std::pow(Math(10000), exponent);
    const Math angle = static_cast<Math>(position) * frequency;
    out[i] = static_cast<T>(std::sin(angle));
    out[width / 2 + i] = static_cast<T>(std::cos(angle));
  }

 private:
  LSATTN_HOST_DEVICE static constexpr index_t clamped(index_t value, index_t cap) {
    return cap > 0 && value > cap ? cap : value;
  }
};

}  // namespace lsattn

namespace lsattn {

// The 2D relative position bias of ViL-LS (spec §3.5), with the published index formula,
// collisions included, so that trained tables load: for a query at in-block offset (qy, qx)
// and a key at tile offset (a, b), with wp = w/2,
//   ry = qy − (a − wp) + wp + w − 1,  rx = qx − (b − wp) + wp + w − 1,  idx = ry·(2wp + w) + rx.
// It is defined for w ≥ 2 (for w = 1 the published index shape does not match the tile).
struct RelativePositionBias2D {
  index_t block = 2;  // w

  LSATTN_HOST_DEVICE constexpr index_t half() const { return block / 2; }  // wp = int(w/2)
  LSATTN_HOST_DEVICE constexpr index_t tile() const { return block + 2 * half(); }
  LSATTN_HOST_DEVICE constexpr index_t table_rows() const {
    return 2 * (block + half() - 1) * (2 * half() + block + 1) + 1;
  }
  LSATTN_HOST_DEVICE constexpr index_t index(index_t qy, index_t qx, index_t a, index_t b) const {
    const index_t wp = half(), w = block;
    const index_t ry = qy - (a - wp) + wp + w - 1, rx = qx - (b - wp) + wp + w - 1;
    return ry * (2 * wp + w) + rx;
  }
};

}  // namespace lsattn
