#pragma once
// Long-range policies: how the r compressed keys/values per head are made.
#include "lsattn/core/backend.hpp"
#include "lsattn/core/tensor.hpp"

namespace lsattn {

// Dynamic projection over the whole sequence (spec §1.3 step 4): for head h and landmark j,
// P[h, j, :] = softmax over the valid tokens of the logits column h·r + j (padded tokens get
// −inf), then K̄ = Pᵀ K and V̄ = Pᵀ V. rank = 0 disables the long-range part.
struct SequenceProjection {
  index_t rank = 0;

  LSATTN_HOST_DEVICE constexpr bool enabled() const { return rank > 0; }
  // Logit feature of head h, landmark j (the published `view(..., nh, r)` layout).
  LSATTN_HOST_DEVICE constexpr index_t logit_column(index_t head, index_t landmark) const {
    return head * rank + landmark;
  }
};

}  // namespace lsattn
