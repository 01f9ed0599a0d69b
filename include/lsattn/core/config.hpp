#pragma once
// Runtime sizes of one attention call, shared by every variant; checked once at the boundary.
#include "lsattn/core/error.hpp"
#include "lsattn/core/limits.hpp"
#include "lsattn/core/tensor.hpp"

namespace lsattn {

// The precision of the matrix products. fp32: float operands. bf16: operands rounded to
// bfloat16, products accumulated in float; softmax, LayerNorm and every other step stay in
// float (as under torch.autocast("cpu", torch.bfloat16)). CPU backend only.
enum class Precision { fp32, bf16 };

inline const char* precision_name(Precision precision) { return precision == Precision::bf16 ? "bf16" : "fp32"; }

namespace detail {
// For layers whose backend has no Precision::bf16 (CUDA picks bf16 by the element type).
inline void require_fp32_precision(Precision precision, const char* layer) {
  require(precision == Precision::fp32, layer, ": precision ", precision_name(precision),
          " is a CPU setting; on CUDA use the bf16 element type instead");
}
}  // namespace detail

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
  Precision precision = Precision::fp32;

  index_t width() const { return heads * head_dim; }

  // Every size within lsattn::max_size and the widths they make within max_elements, so that
  // no index computed from them can wrap around.
  void validate() const {
    checked_size("heads", heads, 1);
    checked_size("head_dim", head_dim, 1);
    checked_product({{"heads", heads}, {"head_dim", head_dim}});
    checked_size("window_size", window_size, -max_size);
    checked_size("rank", rank);
    checked_product({{"heads", heads}, {"rank", rank}});
    require(threads >= 0, "threads: must be >= 0 (0 = default), got ", threads);
    checked_size("chunk_size", chunk_size);
    checked_size("clamp_len", clamp_len, -max_size);
    checked_size("cpos_clamp_len", cpos_clamp_len, -max_size);
    require(precision == Precision::fp32 || precision == Precision::bf16, "precision: unknown value ",
            static_cast<int>(precision));
  }
};

}  // namespace lsattn
