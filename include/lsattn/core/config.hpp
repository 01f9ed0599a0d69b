#pragma once
// Runtime sizes of one attention call, shared by every variant; checked once at the boundary.
#include "lsattn/core/tensor.hpp"

namespace lsattn {

struct AttentionConfig {
  index_t heads = 1;        // nh
  index_t head_dim = 1;     // dh
  index_t window_size = 0;  // w (bidirectional: ≤ 0 disables the window; causal: ≥ 1)
  index_t rank = 0;         // r, compressed keys per head (per chunk when causal); 0 disables them
  int threads = 0;          // CPU threads; 0 = OpenMP's default. Results do not depend on it.
  // Causal variant only (spec §2):
  index_t chunk_size = 0;       // l, tokens per compressed chunk
  index_t clamp_len = -1;       // caps window position values when > 0
  index_t cpos_clamp_len = -1;  // caps compressed-key position values when > 0

  index_t width() const { return heads * head_dim; }
};

}  // namespace lsattn
