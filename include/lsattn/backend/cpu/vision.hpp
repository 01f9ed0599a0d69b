#pragma once
// CPU executor of the 2D Transformer-LS attention of ViL-LS (spec §3.3, steps 2–9).
// One task per (w×w block, head): its queries and its key tile are gathered into small dense
// matrices; one joint softmax over [projected (r), window tile, global tokens].
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
#include "lsattn/backend/cpu/sequence_projection.hpp"
#include "lsattn/backend/cpu/workspace.hpp"

namespace lsattn::detail {

template <>
struct Executor<cpu, Window2D, SequenceProjection> {
  template <class T, class Combiner>
  static void run(const AttentionConfig& config, const VisionAttentionInputs<T, host_space>& in,
                  const typename Combiner::template Params<T, host_space>& norm, const HostView<T, 3>& context,
                  CpuWorkspace* workspace = nullptr) {
    static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>, "lsattn: the CPU backend computes in float or double");
    using namespace cpu_detail;
    using Matrix = RowMatrix<T>;

    const Window2D window = Window2D::from(config);
    // Queries are processed in w×w tiles; without a window (w ≤ 0, no window keys) in tiles of
    // a fixed side, so that the tasks stay few and even.
    constexpr index_t unwindowed_tile_side = 8;
    const Window2D tiling = window.enabled() ? window : Window2D{unwindowed_tile_side, 0};
    const index_t batch = in.query.extent(0), globals = in.global_tokens, rows = in.rows, cols = in.cols;
    const index_t patches = rows * cols, tokens = globals + patches;
    const index_t heads = config.heads, head_dim = config.head_dim, width = config.width(), rank = config.rank;
    const index_t tile = window.tile(), block_rows = tiling.blocks(rows), block_cols = tiling.blocks(cols);
    const T scale = T(1) / std::sqrt(static_cast<T>(head_dim));
    const int threads = config.threads;
    const bool has_bias = !in.position_bias.empty();

    // Scratch from the caller's workspace (reused across calls: no page faults), else a local one.
    CallScratch call(workspace);
    CpuWorkspace& scratch = call.workspace();
    auto take = [&](index_t count) { return matrix(scratch.take<T>(count * width), count, width, width); };
    auto key = take(tokens), value = take(tokens), compressed_key = take(rank), compressed_value = take(rank);
    const std::vector<char> all_valid;
    constexpr bool packed = uses_packed_kernels<T>;
    require_precision<T>(config.precision);
    const Fp32Path kernels = cpu_detail::softmax_path<T>();
    const index_t packed_heads = packed ? heads : 0;
    std::vector<PackedOperand> packed_compressed_key(packed_heads), packed_compressed_value(packed_heads),
        packed_global_key(packed_heads), packed_global_value(packed_heads);

    for (index_t b = 0; b < batch; ++b) {
      const index_t offset = b * tokens * width;
      // Step 2: the local (full) LN on every k and v, global tokens included.
      if constexpr (Combiner::normalizes) {
        LayerNormOp<cpu>::run(in.key.data() + offset, key.data(), tokens, width, norm.local, threads);
        LayerNormOp<cpu>::run(in.value.data() + offset, value.data(), tokens, width, norm.local, threads);
      } else {
        std::copy_n(in.key.data() + offset, tokens * width, key.data());
        std::copy_n(in.value.data() + offset, tokens * width, value.data());
      }
      // Step 4: the dynamic projection over all patches, then the global (dp) LN.
      if (rank > 0) {
        compress_sequence(in.projection_logits.data() + b * patches * heads * rank, all_valid, patches, heads, rank,
                          head_dim, key.data() + globals * width, value.data() + globals * width,
                          compressed_key.data(), compressed_value.data(), scratch, threads);
        if constexpr (Combiner::normalizes) {
          layer_norm_rows(compressed_key.data(), compressed_key.data(), rank, width, norm.global);
          layer_norm_rows(compressed_value.data(), compressed_value.data(), rank, width, norm.global);
        }
      }

      // Float tensors use the packed kernels (fp32 or bf16 products): the compressed and the
      // global keys/values are packed once per batch item and head, each tile's gathered keys
      // and values once per task. Double tensors: Eigen products.
      if constexpr (packed) {
        parallel_for(heads, threads, [&](index_t h) {
          const index_t column = h * head_dim;
          if (rank > 0) {  // none: the compressed scratch is empty, nothing to offset into
            packed_compressed_key[h].pack(compressed_key.data() + column, width, head_dim, rank, true, config.precision);
            packed_compressed_value[h].pack(compressed_value.data() + column, width, rank, head_dim, false,
                                            config.precision);
          }
          if (globals > 0) {
            packed_global_key[h].pack(key.data() + column, width, head_dim, globals, true, config.precision);
            packed_global_value[h].pack(value.data() + column, width, globals, head_dim, false, config.precision);
          }
        });
      }

      // Steps 5–8, per block and head.
      T* context_tokens = context.data() + offset;
      parallel_for(block_rows * block_cols * heads, threads, [&](index_t task) {
        const index_t gy = task / (block_cols * heads), gx = task / heads % block_cols, h = task % heads;
        const index_t column = h * head_dim;
        const IndexRange query_rows = tiling.queries(gy, rows), query_cols = tiling.queries(gx, cols);
        const IndexRange key_rows = window.keys(gy, rows), key_cols = window.keys(gx, cols);
        const index_t query_count = query_rows.size() * query_cols.size();
        const index_t key_count = key_rows.size() * key_cols.size();
        const index_t total = rank + key_count + globals;

        thread_local Matrix queries, tile_keys, tile_values, scores;
        thread_local std::vector<index_t> query_tokens, key_tokens, query_offsets, key_offsets;
        queries.resize(query_count, head_dim);
        tile_keys.resize(key_count, head_dim);
        tile_values.resize(key_count, head_dim);
        query_tokens.clear();
        query_offsets.clear();
        key_tokens.clear();
        key_offsets.clear();
        for (index_t y = query_rows.begin; y < query_rows.end; ++y)
          for (index_t x = query_cols.begin; x < query_cols.end; ++x) {
            query_tokens.push_back(globals + y * cols + x);
            query_offsets.push_back((y - gy * window.block) * window.block + (x - gx * window.block));
          }
        for (index_t y = key_rows.begin; y < key_rows.end; ++y)
          for (index_t x = key_cols.begin; x < key_cols.end; ++x) {
            key_tokens.push_back(globals + y * cols + x);
            key_offsets.push_back(window.tile_offset(gy, y) * tile + window.tile_offset(gx, x));
          }
        for (index_t i = 0; i < query_count; ++i)
          queries.row(i) = matrix(in.query.data() + offset + query_tokens[i] * width + column, 1, head_dim, width) * scale;
        for (index_t j = 0; j < key_count; ++j) {
          tile_keys.row(j) = key.block(key_tokens[j], column, 1, head_dim);
          tile_values.row(j) = value.block(key_tokens[j], column, 1, head_dim);
        }

        scores.resize(query_count, total);
        thread_local PackedOperand packed_tile;
        if constexpr (packed) {
          if (rank > 0) block_matmul(queries.data(), head_dim, query_count, packed_compressed_key[h], scores.data(), total, false);
          packed_tile.pack(tile_keys.data(), head_dim, head_dim, key_count, /*transposed=*/true, config.precision);
          block_matmul(queries.data(), head_dim, query_count, packed_tile, scores.data() + rank, total, false);
          if (globals > 0)
            block_matmul(queries.data(), head_dim, query_count, packed_global_key[h], scores.data() + rank + key_count,
                         total, false);
        } else {
          if (rank > 0) scores.leftCols(rank).noalias() = queries * compressed_key.middleCols(column, head_dim).transpose();
          scores.middleCols(rank, key_count).noalias() = queries * tile_keys.transpose();
          if (globals > 0) {
            scores.rightCols(globals).noalias() = queries * key.block(0, column, globals, head_dim).transpose();
          }
        }
        if (has_bias) {  // added to the window scores only
          for (index_t i = 0; i < query_count; ++i) {
            const T* bias_row = in.position_bias.address(h, query_offsets[i], 0);
            for (index_t j = 0; j < key_count; ++j) scores(i, rank + j) += bias_row[key_offsets[j]];
          }
        }
        for (index_t i = 0; i < query_count; ++i) {
          auto row = scores.row(i);
          cpu_detail::softmax_row(row.data(), row.size(), kernels);
        }
        thread_local Matrix out;
        if constexpr (packed) {
          out.resize(query_count, head_dim);
          packed_tile.pack(tile_values.data(), head_dim, key_count, head_dim, /*transposed=*/false, config.precision);
          block_matmul(scores.data() + rank, total, query_count, packed_tile, out.data(), head_dim, false);
          if (rank > 0) block_matmul(scores.data(), total, query_count, packed_compressed_value[h], out.data(), head_dim, true);
          if (globals > 0)
            block_matmul(scores.data() + rank + key_count, total, query_count, packed_global_value[h], out.data(), head_dim,
                         true);
        } else {
          out.noalias() = scores.middleCols(rank, key_count) * tile_values;
          if (rank > 0) out.noalias() += scores.leftCols(rank) * compressed_value.middleCols(column, head_dim);
          if (globals > 0) out.noalias() += scores.rightCols(globals) * value.block(0, column, globals, head_dim);
        }
        for (index_t i = 0; i < query_count; ++i)
          matrix(context_tokens + query_tokens[i] * width + column, 1, head_dim, width) = out.row(i);
      });

      // Step 9: each global token attends to the global keys and to the patches' outputs.
      if (globals > 0) {
        parallel_for(globals * heads, threads, [&](index_t task) {
          const index_t g = task / heads, column = task % heads * head_dim;
          const Eigen::Matrix<T, 1, Eigen::Dynamic> global_query =
              matrix(in.query.data() + offset + g * width + column, 1, head_dim, width) * scale;
          const auto patch_outputs = matrix(static_cast<const T*>(context_tokens) + globals * width + column, patches,
                                            head_dim, width);
          Eigen::Matrix<T, 1, Eigen::Dynamic> scores(globals + patches);
          scores.head(globals).noalias() = global_query * key.block(0, column, globals, head_dim).transpose();
          scores.tail(patches).noalias() = global_query * patch_outputs.transpose();
          cpu_detail::softmax_row(scores.data(), scores.size(), kernels);
          Eigen::Matrix<T, 1, Eigen::Dynamic> result = scores.head(globals) * value.block(0, column, globals, head_dim);
          result.noalias() += scores.tail(patches) * patch_outputs;
          // Global rows are written after every task read the patch rows (distinct rows, no race).
          matrix(context_tokens + g * width + column, 1, head_dim, width) = result;
        });
      }
    }
  }
};

}  // namespace lsattn::detail
