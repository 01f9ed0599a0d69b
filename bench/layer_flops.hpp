#pragma once
// FLOPs of the published layers as both the CPU and the GPU benchmarks count them
// (multiply-add = 2; softmax, LayerNorm and masking not counted).
//
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

// The ViL-LS stage-1 attention (C = 96, 3 heads, w = 7, r = 8, one global token, RPE) over an
// n × n patch grid, batch 1: qkv and proj 2·N·C·4C, the dynamic projection 2·n²·C·nh·r and
// 4·n²·r·C, and per patch 4·C·(r + 13² + 1) over a full tile (border tiles are smaller).
inline double vision_layer_flops(std::int64_t n) {
  const double c = 96, patches = static_cast<double>(n * n), tokens = patches + 1;
  return 8 * tokens * c * c + 2 * patches * c * 24 + 4 * patches * 8 * c + 4 * patches * c * (8 + 169 + 1);
}

}  // namespace lsattn_bench
