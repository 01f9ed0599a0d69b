#pragma once
// CPU executor of the causal chunked Transformer-LS attention (spec §2.4, steps 6–9).
// Work is split into blocks of queries × heads; each block sees a band of window rows and the
// compressed rows visible to its last query, and masks per query. Memory is O(M + L) rows.
#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>
#include <vector>

#include "lsattn/attention.hpp"
#include "lsattn/backend/cpu/block_matmul.hpp"
#include "lsattn/backend/cpu/eigen.hpp"
#include "lsattn/backend/cpu/layer_norm.hpp"
#include "lsattn/backend/cpu/linear.hpp"
#include "lsattn/backend/cpu/parallel.hpp"
#include "lsattn/backend/cpu/softmax.hpp"
#include "lsattn/backend/cpu/workspace.hpp"

namespace lsattn::detail {

template <>
struct Executor<cpu, CausalWindow, ChunkedProjection> {
  static constexpr index_t query_block = 64;

  template <class T, class Combiner>
  static void run(const AttentionConfig& config, const CausalAttentionInputs<T, host_space>& in,
                  const typename Combiner::template Params<T, host_space>& norm, const HostView<T, 3>& context,
                  CpuWorkspace* workspace = nullptr) {
    static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>, "lsattn: the CPU backend computes in float or double");
    using namespace cpu_detail;
    using Matrix = RowMatrix<T>;
    constexpr T minus_infinity = -std::numeric_limits<T>::infinity();

    const CausalWindow window = CausalWindow::from(config);
    const ChunkedProjection projection = ChunkedProjection::from(config);
    const index_t batch = in.query.extent(0), length = in.query.extent(1), cache = in.cache_length;
    const index_t heads = config.heads, head_dim = config.head_dim, width = config.width();
    const index_t window_rows = in.window_key.extent(1), compressed_rows = in.compressed_key.extent(1);
    const index_t first_window_position = cache + length - window_rows;  // stream position of window row 0
    const T scale = T(1) / std::sqrt(static_cast<T>(head_dim));
    const int threads = config.threads;
    const index_t query_blocks = (length + query_block - 1) / query_block;

    // Scratch from the caller's workspace (reused across calls: no page faults), else a local one.
    CallScratch call(workspace);
    CpuWorkspace& scratch = call.workspace();
    auto take = [&](index_t rows) { return matrix(scratch.take<T>(rows * width), rows, width, width); };
    auto key = take(window_rows), value = take(window_rows);
    auto compressed_key = take(compressed_rows), compressed_value = take(compressed_rows);
    // DualLN: the window rows through the local LN, the compressed rows through the global one.
    const LayerNormParams<T, host_space>* local_norm = nullptr;
    const LayerNormParams<T, host_space>* global_norm = nullptr;
    if constexpr (Combiner::normalizes) {
      local_norm = &norm.local;
      global_norm = &norm.global;
    }
    auto normalize = [&](const T* source, MatrixMap<T>& target, index_t rows, const LayerNormParams<T, host_space>* params) {
      const index_t blocks = (rows + linear_row_block - 1) / linear_row_block;
      parallel_for(blocks, threads, [&](index_t block) {
        const index_t first = block * linear_row_block, count = std::min(linear_row_block, rows - first);
        if (params != nullptr) {
          layer_norm_rows(source + first * width, target.data() + first * width, count, width, *params);
        } else {
          std::copy_n(source + first * width, count * width, target.data() + first * width);
        }
      });
    };

    // Float tensors use the packed kernels (fp32 or bf16 products): per head, the position
    // tables are packed once per call, the normalised keys and values once per batch item, and
    // each block's band starts on a panel boundary (the extra leading rows are masked like any
    // row outside the window). Double tensors: Eigen products.
    constexpr bool packed = uses_packed_kernels<T>;
    require_precision<T>(config.precision);
    const Fp32Path kernels = cpu_detail::softmax_path<T>();
    const index_t packed_heads = packed ? heads : 0;
    std::vector<PackedOperand> packed_key(packed_heads), packed_value(packed_heads), packed_chunk_key(packed_heads),
        packed_chunk_value(packed_heads), packed_window_position(packed_heads), packed_chunk_position(packed_heads);
    if constexpr (packed) {
      parallel_for(2 * heads, threads, [&](index_t task) {
        const index_t h = task / 2, column = h * head_dim;
        if (task % 2 == 0) {
          packed_window_position[h].pack(in.window_positions.data() + column, width, head_dim, window.window,
                                         /*transposed=*/true, config.precision);
        } else if (compressed_rows > 0) {  // none: no chunk scores, and no table to offset into
          packed_chunk_position[h].pack(in.chunk_positions.data() + column, width, head_dim, compressed_rows,
                                        /*transposed=*/true, config.precision);
        }
      });
    }

    for (index_t b = 0; b < batch; ++b) {
      normalize(in.window_key.data() + b * window_rows * width, key, window_rows, local_norm);
      normalize(in.window_value.data() + b * window_rows * width, value, window_rows, local_norm);
      normalize(in.compressed_key.data() + b * compressed_rows * width, compressed_key, compressed_rows, global_norm);
      normalize(in.compressed_value.data() + b * compressed_rows * width, compressed_value, compressed_rows, global_norm);
      if constexpr (packed) {
        parallel_for(4 * heads, threads, [&](index_t task) {
          const index_t h = task / 4, column = h * head_dim;
          switch (task % 4) {
            case 0: packed_key[h].pack(key.data() + column, width, head_dim, window_rows, true, config.precision); break;
            case 1: packed_value[h].pack(value.data() + column, width, window_rows, head_dim, false, config.precision); break;
            case 2:
              if (compressed_rows == 0) break;
              packed_chunk_key[h].pack(compressed_key.data() + column, width, head_dim, compressed_rows, true,
                                       config.precision);
              break;
            default:
              if (compressed_rows == 0) break;
              packed_chunk_value[h].pack(compressed_value.data() + column, width, compressed_rows, head_dim, false,
                                         config.precision);
          }
        });
      }

      parallel_for(query_blocks * heads, threads, [&](index_t task) {
        const index_t block = task / heads, h = task % heads, column = h * head_dim;
        const index_t first_query = block * query_block, query_count = std::min(query_block, length - first_query);
        const index_t first_tau = cache + first_query, last_tau = first_tau + query_count - 1;
        // The band of window rows any query of the block sees, and the compressed rows its last
        // query sees. Packed: the band starts on a panel boundary of the window rows.
        index_t band_begin = std::max(window.keys(first_tau).begin, first_window_position);
        if constexpr (packed)
          band_begin = first_window_position + (band_begin - first_window_position) / packed_panel * packed_panel;
        const index_t band_count = last_tau + 1 - band_begin;
        const index_t visible = projection.enabled() ? std::min(projection.visible_rows(last_tau), compressed_rows) : 0;

        thread_local Matrix scores, queries, window_position_scores, chunk_position_scores;
        queries = matrix(in.query.data() + (b * length + first_query) * width + column, query_count, head_dim, width) * scale;
        scores.resize(query_count, visible + band_count);
        const auto band_keys = key.block(band_begin - first_window_position, column, band_count, head_dim);
        const auto band_values = value.block(band_begin - first_window_position, column, band_count, head_dim);
        const auto content_bias = matrix(in.content_bias.data() + column, 1, head_dim, head_dim);
        const auto position_bias = matrix(in.position_bias.data() + column, 1, head_dim, head_dim);
        const auto window_positions = matrix(in.window_positions.data() + column, window.window, head_dim, width);

        // Window: (q + u)·k + (q + v)·R[δ] over exactly τ − w + 1 … τ (spec §2.4 step 6).
        const index_t band_row = band_begin - first_window_position;
        if constexpr (packed) {
          thread_local Matrix biased_queries;
          const index_t stride = scores.cols();
          biased_queries = queries.rowwise() + content_bias.row(0);
          block_matmul(biased_queries.data(), head_dim, query_count, slice(packed_key[h], 0, head_dim, band_row, band_count),
                       scores.data() + visible, stride, false);
          biased_queries = queries.rowwise() + position_bias.row(0);
          window_position_scores.resize(query_count, window.window);
          block_matmul(biased_queries.data(), head_dim, query_count, packed_window_position[h],
                       window_position_scores.data(), window.window, false);
        } else {
          scores.rightCols(band_count).noalias() = (queries.rowwise() + content_bias.row(0)) * band_keys.transpose();
          window_position_scores.noalias() = (queries.rowwise() + position_bias.row(0)) * window_positions.transpose();
        }
        for (index_t i = 0; i < query_count; ++i) {
          // Band columns of τ − w + 1 … τ; their distances run w − 1 … 0, so the position
          // scores are read backwards over one contiguous run.
          const index_t tau = first_tau + i;
          const IndexRange seen = window.keys(tau);
          const index_t first = std::max(seen.begin, band_begin) - band_begin, count = tau + 1 - band_begin - first;
          auto row = scores.row(i).segment(visible, band_count);
          row.head(first).setConstant(minus_infinity);
          row.tail(band_count - first - count).setConstant(minus_infinity);
          row.segment(first, count) +=
              window_position_scores.row(i).head(window.distance(tau, band_begin + first) + 1).reverse();
        }
        // Compressed chunks strictly before the query's own: q·k̄ + q·R_chunk[d·r − 1 − j] (step 7).
        if (visible > 0) {
          const auto chunk_keys = compressed_key.block(0, column, visible, head_dim);
          const auto chunk_positions = matrix(in.chunk_positions.data() + column, visible, head_dim, width);
          if constexpr (packed) {
            const index_t stride = scores.cols();
            block_matmul(queries.data(), head_dim, query_count, slice(packed_chunk_key[h], 0, head_dim, 0, visible),
                         scores.data(), stride, false);
            chunk_position_scores.resize(query_count, visible);
            block_matmul(queries.data(), head_dim, query_count, slice(packed_chunk_position[h], 0, head_dim, 0, visible),
                         chunk_position_scores.data(), visible, false);
          } else {
            scores.leftCols(visible).noalias() = queries * chunk_keys.transpose();
            chunk_position_scores.noalias() = queries * chunk_positions.transpose();
          }
          for (index_t i = 0; i < query_count; ++i) {
            // Visible rows 0 … seen − 1 read positions seen − 1 … 0 (ChunkedProjection::relative_position).
            const index_t seen = std::min(projection.visible_rows(first_tau + i), visible);
            auto row = scores.row(i).head(visible);
            row.head(seen) += chunk_position_scores.row(i).head(seen).reverse();
            row.tail(visible - seen).setConstant(minus_infinity);
          }
        }
        // One joint softmax; every query sees at least itself, so no row is empty (step 8).
        for (index_t i = 0; i < query_count; ++i) {
          auto row = scores.row(i);
          cpu_detail::softmax_row(row.data(), row.size(), kernels);
        }
        auto out = matrix(context.data() + (b * length + first_query) * width + column, query_count, head_dim, width);
        if constexpr (packed) {
          const index_t stride = scores.cols();
          block_matmul(scores.data() + visible, stride, query_count, slice(packed_value[h], band_row, band_count, 0, head_dim),
                       out.data(), width, false);
          if (visible > 0)
            block_matmul(scores.data(), stride, query_count, slice(packed_chunk_value[h], 0, visible, 0, head_dim),
                         out.data(), width, true);
        } else {
          out.noalias() = scores.rightCols(band_count) * band_values;
          if (visible > 0) out.noalias() += scores.leftCols(visible) * compressed_value.block(0, column, visible, head_dim);
        }
      });
    }
  }
};

}  // namespace lsattn::detail
