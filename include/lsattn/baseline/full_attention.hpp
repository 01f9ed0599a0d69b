#pragma once
// Plain multi-head softmax attention on the CPU, the comparison point for long-short attention:
// exact, with the flash-style online softmax (no L × L matrix), bidirectional or causal.
#include "lsattn/backend/cpu/flash.hpp"
#include "lsattn/core/checks.hpp"
#include "lsattn/core/tensor.hpp"
#include "lsattn/policy/window.hpp"

namespace lsattn::baseline {

// query, key, value, context: (B, L, nh·dh); query unscaled; mask (B, L) optional (keys only).
template <class T>
void full_attention(index_t heads, HostView<const T, 3> query, HostView<const T, 3> key, HostView<const T, 3> value,
                    HostView<const T, 2> mask, HostView<T, 3> context, int threads = 0, bool causal = false,
                    Precision precision = Precision::fp32) {
  const index_t batch = query.extent(0), length = query.extent(1), width = query.extent(2);
  require(heads >= 1 && width % heads == 0, "heads (", heads, ") must divide the feature size ", width);
  detail::require_shape(key, "key", query.shape());
  detail::require_shape(value, "value", query.shape());
  detail::require_shape(context, "context", query.shape());
  if (!mask.empty()) detail::require_shape(mask, "mask", Shape<2>{batch, length});
  std::vector<char> valid;
  for (index_t b = 0; b < batch; ++b) {
    if (!mask.empty()) {
      valid.assign(static_cast<std::size_t>(length), 1);
      for (index_t t = 0; t < length; ++t) valid[t] = mask(b, t) != T(0);
    }
    const index_t offset = b * length * width;
    cpu_detail::flash_attention(query.data() + offset, key.data() + offset, value.data() + offset, valid, length, heads,
                                width / heads, [causal](index_t) { return FullVisibility{causal}; },
                                context.data() + offset, static_cast<T*>(nullptr), threads, precision);
  }
}

}  // namespace lsattn::baseline
