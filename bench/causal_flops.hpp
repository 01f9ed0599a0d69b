#pragma once
// FLOPs of one call of the published enwik8 causal layer (D = 512, 8 heads, l = 16, r = 1,
// w = 512) on a segment of `length` tokens after a memory of `cache`, batch 1, as both the CPU
// and the GPU benchmarks count them (multiply-add = 2): the projections of the segment, the
// window rows and the chunk summaries, the dynamic projection, the two position tables, and per
// query 2·D·3 per window key (content, position, P·V) and per visible compressed row.
#include <algorithm>
#include <cstdint>

namespace lsattn_bench {

inline double causal_layer_flops(std::int64_t length, std::int64_t cache) {
  const double d = 512, w = 512, window_rows = std::min<double>(static_cast<double>(cache), w) + static_cast<double>(length);
  const double chunks = static_cast<double>((cache + length) / 16);
  double flops = 2 * d * d * (2.0 * static_cast<double>(length) + 2 * window_rows + 2 * static_cast<double>(cache) / 16.0) +
                 2 * d * 8 * static_cast<double>(cache + length) + 2 * d * d * (w + chunks);
  for (std::int64_t t = 0; t < length; ++t) flops += 2 * d * (3 * w + 3 * static_cast<double>((cache + t) / 16));
  return flops;
}

}  // namespace lsattn_bench
