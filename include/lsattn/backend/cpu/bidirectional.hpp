#pragma once
// CPU executor of the bidirectional Transformer-LS attention (spec §1.3, steps 1–12).
// Memory per batch item is O(L·(D + nh·r)): no L × L matrix is ever formed.
#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>
#include <vector>

#include "lsattn/attention.hpp"
#include "lsattn/backend/cpu/eigen.hpp"
#include "lsattn/backend/cpu/layer_norm.hpp"
#include "lsattn/backend/cpu/linear.hpp"
#include "lsattn/backend/cpu/block_matmul.hpp"
#include "lsattn/backend/cpu/parallel.hpp"
#include "lsattn/backend/cpu/softmax.hpp"
#include "lsattn/backend/cpu/sequence_projection.hpp"
#include "lsattn/backend/cpu/workspace.hpp"

namespace lsattn::detail {

template <>
struct Executor<cpu, BidirectionalWindow, SequenceProjection> {
  // Queries per task when there is no window to define blocks (w ≤ 0).
  static constexpr index_t global_only_block = 64;

  template <class T, class Combiner>
  static void run(const AttentionConfig& config, const AttentionInputs<T, host_space>& in,
                  const typename Combiner::template Params<T, host_space>& norm, const HostView<T, 3>& context,
                  CpuWorkspace* workspace = nullptr) {
    static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>, "lsattn: the CPU backend computes in float or double");
    using namespace cpu_detail;
    using Matrix = RowMatrix<T>;
    constexpr T minus_infinity = -std::numeric_limits<T>::infinity();

    const index_t batch = in.query.extent(0), length = in.query.extent(1);
    const index_t heads = config.heads, head_dim = config.head_dim, width = config.width();
    const bool has_cls = in.has_cls();
    const SequenceProjection projection = SequenceProjection::from(config);
    const index_t rank = projection.rank;
    // The published w ≤ 0, r = 0 case (cls token required): every token attends to itself.
    const BidirectionalWindow window = config.window_size <= 0 && config.rank == 0 && has_cls
                                           ? BidirectionalWindow::self_only()
                                           : BidirectionalWindow::from(config);
    const index_t global_count = rank + (has_cls ? 1 : 0);  // cls key first, then the landmarks
    const index_t out_rows = length + (has_cls ? 1 : 0);
    const T scale = T(1) / std::sqrt(static_cast<T>(head_dim));
    const int threads = config.threads;
    // Float tensors use the packed kernels (fp32 or bf16 products): the global keys/values are
    // packed once per batch item and head, each block's window keys (and, for large windows,
    // values) once per task. Double tensors: Eigen products.
    constexpr bool packed = uses_packed_kernels<T>;
    require_precision<T>(config.precision);
    const Fp32Path kernels = cpu_detail::softmax_path<T>();
    std::vector<PackedOperand> packed_global_key(packed ? heads : 0), packed_global_value(packed ? heads : 0);
    // Small windows (LRA: w = 8, 16 keys per block of 8 queries): each head's values are packed
    // once per sequence and blocks multiply row slices of them, instead of packing 2w values per
    // block of w queries (the per-block packing was ~10% of LRA text's time, perf). The packed
    // values live in a thread-local vector reused across calls (no page faults per call). Large
    // windows keep the per-block packing: there it is under 1/w of a block's work and needs no
    // L × D copy.
    constexpr index_t sequence_values_max_window = 32;
    const bool values_per_sequence = packed && window.enabled() && window.block <= sequence_values_max_window;
    // (A reference: the worker threads' tasks must read this thread's vector, not their own.)
    thread_local std::vector<PackedOperand> sequence_values_storage;
    std::vector<PackedOperand>& sequence_values = sequence_values_storage;
    if (values_per_sequence && sequence_values.size() < static_cast<std::size_t>(heads)) sequence_values.resize(heads);

    const index_t row_blocks = (length + linear_row_block - 1) / linear_row_block;
    const index_t query_blocks = window.enabled() ? window.block_count(length)
                                                  : (length + global_only_block - 1) / global_only_block;

    // Scratch from the caller's workspace (reused across calls: no page faults), else a local one.
    CallScratch call(workspace);
    CpuWorkspace& scratch = call.workspace();
    auto take = [&](index_t rows) { return matrix(scratch.take<T>(rows * width), rows, width, width); };
    auto key = take(length), value = take(length);
    auto global_key = take(global_count), global_value = take(global_count);
    std::vector<char> valid(static_cast<std::size_t>(length), 1);
    const std::vector<char> no_mask;

    for (index_t b = 0; b < batch; ++b) {
      const index_t token_offset = b * length * width;
      T* context_rows = context.data() + (b * out_rows + (has_cls ? 1 : 0)) * width;
      if (!in.mask.empty())
        for (index_t t = 0; t < length; ++t) valid[t] = in.mask(b, t) != T(0);

      // Step 2: keys and values through the local LN.
      parallel_for(row_blocks, threads, [&](index_t block) {
        const index_t first = block * linear_row_block, rows = std::min(linear_row_block, length - first);
        const index_t offset = token_offset + first * width;
        if constexpr (Combiner::normalizes) {
          layer_norm_rows(in.key.data() + offset, key.data() + first * width, rows, width, norm.local);
          layer_norm_rows(in.value.data() + offset, value.data() + first * width, rows, width, norm.local);
        } else {
          std::copy_n(in.key.data() + offset, rows * width, key.data() + first * width);
          std::copy_n(in.value.data() + offset, rows * width, value.data() + first * width);
        }
      });

      // Step 4: P = softmax over the valid tokens, per head and landmark; K̄ = Pᵀ K, V̄ = Pᵀ V.
      if (rank > 0) {
        compress_sequence(in.projection_logits.data() + b * length * heads * rank, in.mask.empty() ? no_mask : valid,
                          length, heads, rank, head_dim, key.data(), value.data(),
                          global_key.data() + (global_count - rank) * width,
                          global_value.data() + (global_count - rank) * width, scratch, threads);
      }
      // Step 5: the cls token is global key/value 0, unnormalised by the local LN.
      if (has_cls) {
        std::copy_n(in.cls_key.data() + b * width, width, global_key.data());
        std::copy_n(in.cls_value.data() + b * width, width, global_value.data());
      }
      // Step 6: the global LN over the merged width, across heads.
      if constexpr (Combiner::normalizes) {
        layer_norm_rows(global_key.data(), global_key.data(), global_count, width, norm.global);
        layer_norm_rows(global_value.data(), global_value.data(), global_count, width, norm.global);
      }

      if constexpr (packed) {
        if (global_count > 0) {
          parallel_for(heads, threads, [&](index_t h) {
            packed_global_key[h].pack(global_key.data() + h * head_dim, width, head_dim, global_count,
                                      /*transposed=*/true, config.precision);
            packed_global_value[h].pack(global_value.data() + h * head_dim, width, global_count, head_dim,
                                        /*transposed=*/false, config.precision);
          });
        }
        if (values_per_sequence) {
          parallel_for(heads, threads, [&](index_t h) {
            sequence_values[h].pack(value.data() + h * head_dim, width, length, head_dim, /*transposed=*/false,
                                    config.precision);
          });
        }
      }

      // Steps 7–10: one joint softmax over [global keys ‖ window keys] per query block and head.
      parallel_for(query_blocks * heads, threads, [&](index_t task) {
        const index_t g = task / heads, h = task % heads;
        const IndexRange queries =
            window.enabled() ? window.queries(g, length)
                             : IndexRange{g * global_only_block, std::min(length, (g + 1) * global_only_block)};
        const IndexRange keys = window.enabled() ? window.keys(g, length) : IndexRange{};
        const index_t query_count = queries.size(), key_count = keys.size();
        const index_t column = h * head_dim;

        thread_local Matrix scores, block_queries;
        scores.resize(query_count, global_count + key_count);
        // Step 1: Q/√dh, scaled before the dot products as published.
        block_queries = matrix(in.query.data() + token_offset + queries.begin * width + column, query_count, head_dim, width) * scale;
        const auto window_keys = key.block(keys.begin, column, key_count, head_dim);
        const auto window_values = value.block(keys.begin, column, key_count, head_dim);
        // Without global keys (r = 0, no cls) the global matrices are empty: a column block of
        // them would offset a null pointer, so that part is skipped.
        thread_local PackedOperand packed_window;
        if constexpr (packed) {
          const index_t stride = scores.cols();
          if (global_count > 0)
            block_matmul(block_queries.data(), head_dim, query_count, packed_global_key[h], scores.data(), stride, false);
          packed_window.pack(key.data() + keys.begin * width + column, width, head_dim, key_count, /*transposed=*/true,
                             config.precision);
          block_matmul(block_queries.data(), head_dim, query_count, packed_window, scores.data() + global_count, stride,
                       false);
        } else {
          if (global_count > 0)
            scores.leftCols(global_count).noalias() = block_queries * global_key.middleCols(column, head_dim).transpose();
          scores.rightCols(key_count).noalias() = block_queries * window_keys.transpose();
        }
        for (index_t j = 0; j < key_count; ++j)
          if (!valid[keys.begin + j]) scores.col(global_count + j).setConstant(minus_infinity);
        for (index_t i = 0; i < query_count; ++i) {
          auto row = scores.row(i);
          if (!valid[queries.begin + i]) {
            row.setZero();  // step 9: padded query rows get probability 0, hence context 0
            continue;
          }
          softmax_row(row.data(), row.size(), kernels);
        }
        auto block_context = matrix(context_rows + queries.begin * width + column, query_count, head_dim, width);
        if constexpr (packed) {
          const index_t stride = scores.cols();
          if (global_count > 0)
            block_matmul(scores.data(), stride, query_count, packed_global_value[h], block_context.data(), width, false);
          // bf16 slices start on a pair and cover whole pairs (an odd count would read the next key).
          if (values_per_sequence && (config.precision != Precision::bf16 || (keys.begin % 2 == 0 && key_count % 2 == 0))) {
            block_matmul(scores.data() + global_count, stride, query_count,
                         slice(sequence_values[h], keys.begin, key_count, 0, head_dim), block_context.data(), width,
                         global_count > 0);
            return;
          }
          packed_window.pack(value.data() + keys.begin * width + column, width, key_count, head_dim,
                             /*transposed=*/false, config.precision);
          block_matmul(scores.data() + global_count, stride, query_count, packed_window, block_context.data(), width,
                       global_count > 0);
          return;
        }
        if (global_count > 0) {
          block_context.noalias() = scores.leftCols(global_count) * global_value.middleCols(column, head_dim);
        } else {
          block_context.setZero();  // 0 + x = x: the same values as assigning the window part
        }
        block_context.noalias() += scores.rightCols(key_count) * window_values;
      });

      // Step 11: the cls query attends to its raw self key/value and to the tokens' contexts.
      if (has_cls) {
        T* cls_context = context.data() + b * out_rows * width;
        parallel_for(heads, threads, [&](index_t h) {
          const index_t column = h * head_dim;
          const Eigen::Matrix<T, 1, Eigen::Dynamic> cls_query =
              matrix(in.cls_query.data() + b * width + column, 1, head_dim, width) * scale;
          const auto cls_key = matrix(in.cls_key.data() + b * width + column, 1, head_dim, width);
          const auto cls_value = matrix(in.cls_value.data() + b * width + column, 1, head_dim, width);
          const auto token_context = matrix(static_cast<const T*>(context_rows) + column, length, head_dim, width);

          Eigen::Matrix<T, 1, Eigen::Dynamic> scores(1 + length);
          scores(0) = (cls_query.array() * cls_key.array()).sum();
          scores.tail(length).noalias() = cls_query * token_context.transpose();
          for (index_t t = 0; t < length; ++t)
            if (!valid[t]) scores(1 + t) = minus_infinity;
          softmax_row(scores.data(), scores.size(), kernels);
          auto out = matrix(cls_context + column, 1, head_dim, width);
          out.noalias() = scores(0) * cls_value;
          out.noalias() += scores.tail(length) * token_context;
        });
      }
    }
  }
};

}  // namespace lsattn::detail
