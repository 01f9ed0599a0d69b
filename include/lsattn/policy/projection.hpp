#pragma once
// Long-range policies: how the r compressed keys/values per head are made.
#include "lsattn/core/backend.hpp"
#include "lsattn/core/config.hpp"
#include "lsattn/core/tensor.hpp"

namespace lsattn {

// Dynamic projection over the whole sequence (spec §1.3 step 4): for head h and landmark j,
// P[h, j, :] = softmax over the valid tokens of the logits column h·r + j (padded tokens get
// −inf), then K̄ = Pᵀ K and V̄ = Pᵀ V. rank = 0 disables the long-range part.
struct SequenceProjection {
  index_t rank = 0;

  static SequenceProjection from(const AttentionConfig& config) { return {config.rank}; }
  LSATTN_HOST_DEVICE constexpr bool enabled() const { return rank > 0; }
};

// Chunked causal projection (spec §2.4 steps 2, 4, 7): the stream (cache + segment) is cut into
// chunks of l tokens; each chunk is compressed to r vectors per head (P = softmax over the
// chunk's l tokens). Stream position τ sees the compressed vectors of chunk c only if
// c < τ / l: chunks strictly before its own, whose summaries hold no future token.
struct ChunkedProjection {
  index_t chunk = 1;  // l
  index_t rank = 0;   // r per chunk and head

  static ChunkedProjection from(const AttentionConfig& config) { return {config.chunk_size, config.rank}; }
  LSATTN_HOST_DEVICE constexpr bool enabled() const { return rank > 0; }
  LSATTN_HOST_DEVICE constexpr index_t chunk_of(index_t tau) const { return tau / chunk; }
  // Compressed vectors visible to stream position tau: rows [0, visible_rows(tau)) (row c·r + j).
  LSATTN_HOST_DEVICE constexpr index_t visible_rows(index_t tau) const { return chunk_of(tau) * rank; }
  // The relative position value of compressed row c·r + j seen from stream position tau:
  // d·r − 1 − j with d = chunk_of(tau) − c ≥ 1 (the published key_pe indexing). Since
  // d·r − 1 − j = chunk_of(tau)·r − 1 − (c·r + j), the visible rows read the position table
  // backwards: row 0 … visible_rows − 1 ↦ position visible_rows − 1 … 0.
  LSATTN_HOST_DEVICE constexpr index_t relative_position(index_t tau, index_t row) const {
    return visible_rows(tau) - 1 - row;
  }
};

}  // namespace lsattn
