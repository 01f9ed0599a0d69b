// The causal chunked layer on CUDA (models::causal::ChunkedLSAttention<cuda, T>): host-side
// checks and workspace sizes run everywhere nvcc is; the layer, the chunk compression and the
// position sinusoids are compared with the CPU when a GPU is present, and skipped without one.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include "cpu_reference.hpp"
#include "cuda_test_helpers.cuh"
#include "lsattn/cuda.cuh"
#include "lsattn/models/causal_lm_cuda.cuh"
#include "lsattn/models/causal_cuda.cuh"

namespace {

using lsattn::index_t;
using lsattn::Shape;
using lsattn::Tensor;
using namespace lsattn_test;
namespace causal = lsattn::models::causal;

template <class T>
using CudaLayer = causal::ChunkedLSAttention<lsattn::cuda, T>;

// Views over never-dereferenced device addresses: only shapes are read on the host.
template <class T>
lsattn::DeviceView<const T, 3> fake_input(const Shape<3>& shape) {
  return {reinterpret_cast<const T*>(0x1000), shape};
}
template <class T>
lsattn::DeviceView<T, 3> fake_output(const Shape<3>& shape) {
  return {reinterpret_cast<T*>(0x100000), shape};
}

// The weights as T stores them, back in float (the CPU layer sees what the GPU layer uploads).
template <class T>
causal::Weights<float> rounded_weights(causal::Weights<float> weights, const causal::Config& config) {
  weights.for_each(config, [](const std::string&, auto& tensor, const auto&) {
    for (auto& v : tensor.values()) v = static_cast<float>(static_cast<T>(v));
  });
  return weights;
}

}  // namespace

TEST_CASE("CUDA causal layer: workspace from the shapes only", "[cuda][causal][layer]") {
  // D = 64 floats = 256 bytes a row and lengths multiple of 32: every buffer is a whole number
  // of 256-byte alignment units, so the size is exactly affine in the length.
  const causal::Config config{2, 64, 4, 1, 16};  // nh, D, l, r, w
  auto bytes = [&](index_t batch, index_t length, index_t cache) {
    return CudaLayer<float>::workspace_bytes(config, batch, length, cache);
  };
  for (index_t cache : {0, 8, 64}) {
    const std::size_t one = bytes(2, 64, cache), two = bytes(2, 128, cache), three = bytes(2, 192, cache);
    CHECK(two > one);
    CHECK(three - two == two - one);  // linear in the length
  }
  CHECK(bytes(2, 64, 64) > bytes(2, 64, 8));
  CHECK(bytes(4, 64, 8) > bytes(2, 64, 8));

  // Against the element count of the buffers (T), the attention's float scratch, and at most one
  // 256-byte alignment unit per buffer (16) plus one for the workspace start.
  const index_t d = 64, columns = 2, batch = 3;
  for (auto [length, cache] : {std::pair<index_t, index_t>{5, 0}, {7, 4}, {9, 12}, {13, 32}}) {
    const index_t cache_window = std::min<index_t>(cache, 16), window_rows = cache_window + length;
    const index_t cache_rows = cache / 4, compressed_rows = cache / 4 + length / 4;
    const index_t elements = batch * length * d * 2                     // q, context
                             + (cache_window > 0 ? batch * window_rows * d : 0)  // gathered window rows
                             + 2 * batch * window_rows * d                 // window k, v
                             + 2 * batch * compressed_rows * d             // compressed k, v
                             + (cache > 0 ? batch * cache * columns : 0)   // cache logits
                             + 3 * batch * cache_rows * d                  // summaries and their k, v
                             + (length >= 4 ? batch * length * columns : 0)  // segment logits
                             + 2 * compressed_rows * d;                    // chunk sinusoids and positions
    const std::size_t attention = sizeof(float) * 2 * static_cast<std::size_t>((window_rows + compressed_rows) * d);
    const std::size_t minimum = sizeof(float) * static_cast<std::size_t>(elements) + attention;
    INFO("L=" << length << " M=" << cache);
    CHECK(bytes(batch, length, cache) >= minimum);
    CHECK(bytes(batch, length, cache) <= minimum + 16 * 256);
  }
  // Half the bytes of the T buffers for 16-bit types; the attention scratch is the larger of the
  // tensor-core kernel's (every item in T) and the per-query kernel's (one item in float).
  CHECK(CudaLayer<__half>::workspace_bytes(config, 2, 64, 8) < bytes(2, 64, 8));
  CHECK(CudaLayer<__nv_bfloat16>::workspace_bytes(config, 2, 64, 8) == CudaLayer<__half>::workspace_bytes(config, 2, 64, 8));
}

TEST_CASE("CUDA causal layer: arguments are checked on the host before any launch", "[cuda][causal][layer][errors]") {
  using Catch::Matchers::Contains;
  const causal::Config config{2, 8, 4, 2, 6};  // nh, D, l, r, w
  const auto h = fake_input<float>(Shape<3>{2, 10, 8}), cache = fake_input<float>(Shape<3>{2, 8, 8});
  const auto y = fake_output<float>(Shape<3>{2, 10, 8});
  const std::size_t needed = CudaLayer<float>::workspace_bytes(config, 2, 10, 8);
  const lsattn::DeviceWorkspace enough{reinterpret_cast<void*>(0x200000), needed};
  auto problem = [&](auto h_view, auto cache_view, auto y_view, lsattn::DeviceWorkspace workspace) {
    return CudaLayer<float>::validate(config, h_view, cache_view, y_view, workspace);
  };
  CHECK(problem(h, cache, y, enough).empty());
  CHECK(problem(h, lsattn::DeviceView<const float, 3>{}, y, enough).empty());  // no cache: smaller workspace
  CHECK(problem(h, fake_input<float>(Shape<3>{2, 0, 8}), y, enough).empty());

  CHECK_THAT(problem(fake_input<float>(Shape<3>{2, 10, 6}), cache, y, enough),
             Contains("h: expected feature size d_model = 8") && Contains("(2, 10, 6)"));
  CHECK_THAT(problem(fake_input<float>(Shape<3>{2, 0, 8}), cache, y, enough), Contains("h: segment length"));
  CHECK_THAT(problem(h, fake_input<float>(Shape<3>{2, 6, 8}), y, enough),
             Contains("h_cache") && Contains("M = 6") && Contains("multiple of chunk_size = 4"));
  CHECK_THAT(problem(h, fake_input<float>(Shape<3>{1, 8, 8}), y, enough), Contains("h_cache: expected shape (2, M, 8)"));
  CHECK_THAT(problem(h, cache, fake_output<float>(Shape<3>{2, 9, 8}), enough), Contains("y") && Contains("(2, 10, 8)"));
  CHECK_THAT(problem(h, cache, y, lsattn::DeviceWorkspace{enough.data, needed - 1}),
             Contains("workspace: needs " + std::to_string(needed)) && Contains("workspace_bytes()"));
  CHECK_THAT(problem(h, cache, y, lsattn::DeviceWorkspace{nullptr, needed}), Contains("workspace"));
  CHECK_THAT(problem(lsattn::DeviceView<const float, 3>(nullptr, Shape<3>{2, 10, 8}), cache, y, enough),
             Contains("h") && Contains("null"));

  // The attention kernel keeps one query's scores in 48 KiB of shared memory: checked up front.
  const causal::Config long_config{1, 8, 1, 4, 16};  // l = 1, r = 4: 4 compressed rows per token
  const auto long_h = fake_input<float>(Shape<3>{1, 3100, 8});
  const lsattn::DeviceWorkspace large{enough.data, CudaLayer<float>::workspace_bytes(long_config, 1, 3100, 0)};
  CHECK_THAT(CudaLayer<float>::validate(long_config, long_h, {}, fake_output<float>(long_h.shape()), large),
             Contains("12256"));

  const causal::Config bad{3, 8, 4, 1, 6};
  CHECK_THAT(CudaLayer<float>::validate(bad, h, cache, y, enough), Contains("divisible by n_head"));
}

TEST_CASE("CUDA causal layer without a device reports a CUDA error", "[cuda][causal][layer]") {
  const causal::Config config{2, 8, 4, 1, 6};
  if (gpu_present()) {
    const CudaLayer<float> layer(config, causal::Weights<float>::random(config, 1));
    CHECK(layer.workspace_bytes(2, 10, 8) == CudaLayer<float>::workspace_bytes(config, 2, 10, 8));
    return;
  }
  CHECK_THROWS_WITH((CudaLayer<float>(config, causal::Weights<float>::random(config, 1))),
                    Catch::Matchers::Contains("CUDA"));
}

TEMPLATE_TEST_CASE("CUDA chunk compression matches a host loop", "[cuda][gpu][causal]", float, __half, __nv_bfloat16) {
  if (!gpu_present()) return;
  std::mt19937_64 rng(41);
  for (int trial = 0; trial < 8; ++trial) {
    const index_t batch = 1 + trial % 3, heads = 1 + trial % 2, head_dim = 3 + trial, rank = 1 + trial % 3;
    const index_t chunk = 1 + (trial * 5) % 7, chunks = 1 + trial % 4, width = heads * head_dim, columns = heads * rank;
    const index_t rows = chunks * chunk + trial % 2, stride = width + 3;  // spare rows and padded source rows
    const auto logits = rounded_as<TestType>(random_tensor<float>(Shape<3>{batch, rows, columns}, rng));
    const auto source = rounded_as<TestType>(random_tensor<float>(Shape<3>{batch, rows, stride}, rng));
    const index_t out_rows = chunks * rank + 2;  // written from row 1: rows 0 and last stay untouched
    Tensor<float, 3> want(Shape<3>{batch, out_rows, width}, 0.25f);
    for (index_t b = 0; b < batch; ++b)
      for (index_t c = 0; c < chunks; ++c)
        for (index_t column = 0; column < columns; ++column) {
          const index_t h = column / rank, j = column % rank;
          double top = -1e300, total = 0;
          for (index_t i = 0; i < chunk; ++i) top = std::max(top, static_cast<double>(logits(b, c * chunk + i, column)));
          for (index_t i = 0; i < chunk; ++i) total += std::exp(logits(b, c * chunk + i, column) - top);
          for (index_t f = 0; f < head_dim; ++f) {
            double acc = 0;
            for (index_t i = 0; i < chunk; ++i)
              acc += std::exp(logits(b, c * chunk + i, column) - top) / total * source(b, c * chunk + i, h * head_dim + f);
            want(b, 1 + c * rank + j, h * head_dim + f) = static_cast<float>(acc);
          }
        }
    const auto device_logits = lsattn::to_device<TestType>(logits), device_source = lsattn::to_device<TestType>(source);
    auto out = lsattn::to_device<TestType>(Tensor<float, 3>(want.shape(), 0.25f));
    lsattn::cuda_detail::CompressChunksParams<TestType> params{};
    params.logits = device_logits.view().data();
    params.logits_batch_stride = rows * columns;
    params.source = device_source.view().data();
    params.source_batch_stride = rows * stride;
    params.source_row_stride = stride;
    params.out = out.view().data() + width;
    params.out_batch_stride = out_rows * width;
    params.batch = batch;
    params.chunks = chunks;
    params.chunk = chunk;
    params.heads = heads;
    params.head_dim = head_dim;
    params.rank = rank;
    lsattn::cuda_detail::compress_chunks(params, cudaStream_t{});
    INFO("trial " << trial << ": B=" << batch << " nh=" << heads << " dh=" << head_dim << " r=" << rank << " l=" << chunk
                  << " chunks=" << chunks);
    CHECK(relative_error(out, want) < tolerance_for<TestType>(2e-3, 1e-2));
  }
}

TEMPLATE_TEST_CASE("CUDA position sinusoids match the host policy", "[cuda][gpu][causal]", float, __half, __nv_bfloat16) {
  if (!gpu_present()) return;
  for (const lsattn::TransformerXLPositions positions :
       {lsattn::TransformerXLPositions{-1, -1}, lsattn::TransformerXLPositions{5, 3}}) {
    const index_t rows = 97, width = 20;
    for (auto table : {lsattn::cuda_detail::PositionTable::window, lsattn::cuda_detail::PositionTable::chunk}) {
      Tensor<float, 3> want(Shape<3>{1, rows, width});
      for (index_t p = 0; p < rows; ++p) {
        const index_t value = table == lsattn::cuda_detail::PositionTable::window ? positions.window_value(p)
                                                                                  : positions.chunk_value(p);
        lsattn::TransformerXLPositions::sinusoid(value, width, &want(0, p, 0));
      }
      lsattn::DeviceTensor<TestType, 3> got(want.shape());
      lsattn::cuda_detail::position_sinusoids(positions, table, rows, width, got.view().data(), cudaStream_t{});
      // Device powf/sinf/cosf are within a few ulp of the host's; the angle error grows with p.
      CHECK(relative_error(got, want) < (std::is_same_v<TestType, float> ? 1e-4 : tolerance_for<TestType>(1.5e-3, 8e-3)));
    }
  }
}

TEMPLATE_TEST_CASE("CUDA causal layer matches the CPU layer", "[cuda][gpu][causal][layer]", float, __half, __nv_bfloat16) {
  if (!gpu_present()) return;
  std::mt19937_64 rng(23);
  const double tolerance = tolerance_for<TestType>(3e-2, 8e-2);
  const lsattn::CublasHandle handle;
  for (int trial = 0; trial < 18; ++trial) {
    causal::Config config;
    config.n_head = 1 + trial % 3;
    config.d_model = config.n_head * (trial % 2 == 0 ? 8 : 6);
    config.chunk_size = 1 + trial % 5;                                  // l
    config.chunk_rank = 1 + (trial / 2) % 3;                            // r > 1 too
    config.window_len = 1 + (trial * 7) % 13;                           // w
    config.use_bias = trial % 2 == 1;
    config.clamp_len = trial % 4 == 1 || trial % 4 == 3 ? 3 : -1;
    config.cpos_clamp_len = trial % 4 == 2 || trial % 4 == 3 ? 2 : -1;
    const index_t l = config.chunk_size, w = config.window_len;
    // No cache, a cache shorter than the window, one longer than it.
    const index_t cache = trial % 3 == 0 ? 0 : trial % 3 == 1 ? l * ((w - 1) / l) : l * (w / l + 2);
    const index_t batch = 1 + trial % 3, length = 1 + (trial * 13) % 41;  // mostly not a multiple of l
    const auto weights = rounded_weights<TestType>(causal::Weights<float>::random(config, 100 + trial), config);
    const auto h = rounded_as<TestType>(random_tensor<float>(Shape<3>{batch, length, config.d_model}, rng));
    const auto h_cache = rounded_as<TestType>(random_tensor<float>(Shape<3>{batch, cache, config.d_model}, rng));
    const Tensor<float, 3> want = lsattn_test::cpu_causal_layer(config, weights, h, h_cache);

    const auto device_h = lsattn::to_device<TestType>(h);
    const auto device_cache = cache > 0 ? lsattn::to_device<TestType>(h_cache) : lsattn::DeviceTensor<TestType, 3>(h_cache.shape());
    const CudaLayer<TestType> layer(config, weights);
    const std::size_t bytes = layer.workspace_bytes(batch, length, cache);
    lsattn::DeviceTensor<unsigned char, 1> workspace(Shape<1>{static_cast<index_t>(bytes)});
    // Poison the workspace and the output: nothing may be read before it is written.
    lsattn::cuda_detail::check(cudaMemset(workspace.view().data(), 0xff, bytes), "cudaMemset");
    auto y = lsattn::to_device<TestType>(Tensor<float, 3>(want.shape(), std::nanf("")));
    // Alternate the two spellings of "no cache": an empty view and a (B, 0, D) one.
    const lsattn::DeviceView<const TestType, 3> cache_view =
        cache == 0 && trial % 2 == 0 ? lsattn::DeviceView<const TestType, 3>{} : device_cache.view();
    layer.forward(device_h.view(), cache_view, y.view(), handle, cudaStream_t{}, workspace_of(workspace));
    INFO("trial " << trial << ": B=" << batch << " nh=" << config.n_head << " D=" << config.d_model << " l=" << l
                  << " r=" << config.chunk_rank << " w=" << w << " M=" << cache << " L=" << length << " bias="
                  << config.use_bias << " clamp=" << config.clamp_len << "/" << config.cpos_clamp_len);
    CHECK(relative_error(y, want) < tolerance);

    // A second call on the same workspace gives the same result (no state carried between calls).
    layer.forward(device_h.view(), cache_view, y.view(), handle, cudaStream_t{}, workspace_of(workspace));
    CHECK(relative_error(y, want) < tolerance);
  }
}

// ---- The tensor-core causal kernel (mma_causal.cuh) -----------------------------------------
// Its index rules against the spec's, written out here: for every query tile the key tiles
// must show each row exactly the keys it may see, and each position term must come from table
// row f(τ) − key, the window distance τ − s or the compressed position chunk(τ)·r − 1 − i.
TEST_CASE("CUDA tiled causal kernel: key tiles show each row its keys once, position terms land on the spec's table rows",
          "[cuda][mma][causal]") {
  using lsattn::cuda_detail::CausalTiles;
  using lsattn::cuda_detail::QueryTiling;
  using Kind = CausalTiles::Kind;
  std::mt19937_64 rng(71);
  int shapes = 0;
  for (int trial = 0; trial < 400; ++trial) {
    const index_t l = std::uniform_int_distribution<index_t>(1, 80)(rng), r = std::uniform_int_distribution<index_t>(1, 64)(rng);
    const lsattn::ChunkedProjection projection{l, trial % 7 == 6 ? 0 : r};
    if (!lsattn::cuda_detail::causal_tiles_fit(projection)) continue;
    const index_t w = std::uniform_int_distribution<index_t>(1, 300)(rng);
    const index_t cache = trial % 3 == 0 ? 0 : std::uniform_int_distribution<index_t>(0, 400)(rng);
    const index_t length = std::uniform_int_distribution<index_t>(1, 260)(rng);
    const index_t window_rows = std::min(cache, w) + length;
    const index_t chunks = (cache + length - 1) / l + (trial % 2);  // the minimum C, or one more
    const CausalTiles tiles{cache, length, window_rows, chunks * projection.rank, lsattn::CausalWindow{w}, projection};
    ++shapes;
    INFO("l=" << l << " r=" << projection.rank << " w=" << w << " M=" << cache << " L=" << length);
    const QueryTiling tiling{length};
    for (index_t q = 0; q < tiling.count(); ++q) {
      const lsattn::IndexRange queries = tiling.tile(q);
      const index_t first_tau = cache + queries.begin, last_tau = cache + queries.end - 1;
      for (index_t t = queries.begin; t < queries.end; ++t) {
        const index_t tau = cache + t;
        // The spec's keys of τ: compressed rows of the finished chunks, window positions.
        const index_t compressed_seen = std::min(projection.rank > 0 ? (tau / l) * projection.rank : 0, tiles.compressed_rows);
        const index_t window_first = std::max({tau - w + 1, cache - std::min(cache, w), index_t{0}});
        std::vector<int> compressed_hits(static_cast<std::size_t>(tiles.compressed_rows), 0);
        std::vector<int> window_hits(static_cast<std::size_t>(cache + length), 0);
        for (index_t j = 0; j < tiles.count(queries); ++j) {
          const CausalTiles::KeyTile tile = tiles.tile(queries, j);
          REQUIRE(tile.count >= 1);
          REQUIRE(tile.count <= 64);
          for (index_t n = 0; n < tile.count; ++n) {
            const index_t key = tile.first + n;
            if (!tiles.visible(tile.kind, tau, key)) continue;
            if (tile.kind == Kind::compressed) {
              REQUIRE((key >= 0 && key < compressed_seen));
              ++compressed_hits[static_cast<std::size_t>(key)];
            } else {
              REQUIRE((key >= window_first && key <= tau));
              ++window_hits[static_cast<std::size_t>(key)];
            }
            // The row's term: staged row offset + column is table row f(τ) − key, the spec's position.
            const index_t warp = (t - queries.begin) / 16;
            const auto at = lsattn::cuda_detail::warp_positions(tiles, tile, first_tau, last_tau, first_tau + warp * 16);
            REQUIRE(at.offset >= 0);
            REQUIRE(at.columns <= lsattn::cuda_detail::causal_position_columns);
            REQUIRE(at.offset + (at.columns + 15) / 16 * 16 <= lsattn::cuda_detail::causal_position_rows);
            const index_t column = at.column(tiles.position_origin(tile.kind, tau), n);
            REQUIRE((column >= 0 && column < at.columns));
            const index_t table_row = at.stage_first + at.offset + column;
            const index_t want = tile.kind == Kind::compressed ? (tau / l) * projection.rank - 1 - key : tau - key;
            REQUIRE(table_row == want);
            REQUIRE((table_row >= 0 && table_row < tiles.table_rows(tile.kind)));
          }
        }
        for (index_t i = 0; i < tiles.compressed_rows; ++i) REQUIRE(compressed_hits[static_cast<std::size_t>(i)] == (i < compressed_seen ? 1 : 0));
        for (index_t key = 0; key < cache + length; ++key)
          REQUIRE(window_hits[static_cast<std::size_t>(key)] == (key >= window_first && key <= tau ? 1 : 0));
      }
    }
  }
  CHECK(shapes > 100);
  // What does not fit the staging: a chunk rank that grows by more than 64 rows over 64 positions.
  CHECK(lsattn::cuda_detail::causal_tiles_fit({16, 16}));   // ⌈63/16⌉·16 = 64
  CHECK_FALSE(lsattn::cuda_detail::causal_tiles_fit({16, 17}));
  CHECK_FALSE(lsattn::cuda_detail::causal_tiles_fit({1, 2}));
  CHECK(lsattn::cuda_detail::causal_tiles_fit({1, 0}));     // no projection
}

TEST_CASE("CUDA tiled causal kernel: shared memory fits the sm_80 opt-in limit", "[cuda][mma][causal]") {
  CHECK(lsattn::cuda_detail::CausalMmaLayout<__nv_bfloat16, 64>::bytes <= 113 * 1024);  // two blocks per H100/H200 SM
  CHECK(lsattn::cuda_detail::CausalMmaLayout<__half, 128>::bytes <= 163 * 1024);       // sm_80's opt-in maximum
}

// The layer with head sizes the tensor-core kernel takes, against the CPU layer and against the
// one-block-per-query kernel on the same inputs (where the kernel applies it must have run).
TEMPLATE_TEST_CASE("CUDA tiled causal kernel matches the CPU layer and the per-query kernel", "[cuda][gpu][causal][mma]",
                   __half, __nv_bfloat16) {
  if (!gpu_present()) return;
  std::mt19937_64 rng(29);
  const double tolerance = tolerance_for<TestType>(3e-2, 8e-2), kernel_tolerance = tolerance_for<TestType>(5e-3, 2.5e-2);
  const lsattn::CublasHandle handle;
  struct Case {
    index_t heads, head_dim, l, r, w, cache, length, batch;
  };
  const Case cases[] = {
      {1, 16, 1, 1, 1, 0, 1, 1},        // w = 1, one token
      {2, 16, 3, 2, 5, 7, 70, 2},       // cache shorter than l·r windows, L not a multiple of 64
      {1, 32, 16, 1, 64, 48, 130, 1},   // the window spans three key tiles
      {2, 64, 16, 1, 100, 160, 200, 2}, // cache longer than the window
      {1, 64, 20, 4, 33, 40, 65, 3},    // three items in grid z
      {1, 128, 64, 64, 128, 128, 129, 1},  // r = 64: the staging's limit
      {2, 32, 2, 1, 17, 0, 100, 1},     // 32 compressed rows per query tile
      {1, 16, 1, 2, 9, 5, 40, 1},       // does not fit the staging: the per-query kernel
      {8, 64, 16, 1, 512, 600, 300, 1}, // the published enwik8 layer, shortened
  };
  for (const Case& c : cases) {
    causal::Config config;
    config.n_head = c.heads;
    config.d_model = c.heads * c.head_dim;
    config.chunk_size = c.l;
    config.chunk_rank = c.r;
    config.window_len = c.w;
    config.use_bias = c.batch % 2 == 0;
    const auto weights = rounded_weights<TestType>(causal::Weights<float>::random(config, 300 + c.length), config);
    const auto h = rounded_as<TestType>(random_tensor<float>(Shape<3>{c.batch, c.length, config.d_model}, rng));
    const auto h_cache = rounded_as<TestType>(random_tensor<float>(Shape<3>{c.batch, c.cache, config.d_model}, rng));
    const Tensor<float, 3> want = lsattn_test::cpu_causal_layer(config, weights, h, h_cache);
    const auto device_h = lsattn::to_device<TestType>(h);
    const auto device_cache = lsattn::to_device<TestType>(h_cache);
    const CudaLayer<TestType> layer(config, weights);
    lsattn::DeviceTensor<unsigned char, 1> workspace(
        Shape<1>{static_cast<index_t>(layer.workspace_bytes(c.batch, c.length, c.cache))});
    auto run = [&] {
      auto y = lsattn::to_device<TestType>(Tensor<float, 3>(want.shape(), std::nanf("")));
      layer.forward(device_h.view(), device_cache.view(), y.view(), handle, cudaStream_t{}, workspace_of(workspace));
      return lsattn::to_host<float>(y);
    };
    INFO("B=" << c.batch << " nh=" << c.heads << " dh=" << c.head_dim << " l=" << c.l << " r=" << c.r << " w=" << c.w
              << " M=" << c.cache << " L=" << c.length);
    const Tensor<float, 3> got = run();
    CHECK(host_relative_error(got, want) < tolerance);
    const bool fits = lsattn::cuda_detail::causal_tiles_fit(lsattn::ChunkedProjection{c.l, c.r});
    if (!fits || !tiled_kernels_present()) continue;
    check_against_per_query_kernel(got, run, kernel_tolerance);
  }
}

TEST_CASE("CUDA causal layer: forward throws the host-side errors before any launch", "[cuda][gpu][causal][errors]") {
  using Catch::Matchers::Contains;
  if (!gpu_present()) return;
  const causal::Config config{2, 8, 4, 1, 6};
  const CudaLayer<float> layer(config, causal::Weights<float>::random(config, 3));
  const lsattn::CublasHandle handle;
  const auto h = fake_input<float>(Shape<3>{1, 5, 8});
  const auto y = fake_output<float>(Shape<3>{1, 5, 8});
  const lsattn::DeviceWorkspace workspace{reinterpret_cast<void*>(0x200000), layer.workspace_bytes(1, 5, 4)};
  // Fake device addresses: any launch would fault, so a clean throw shows nothing was launched.
  CHECK_THROWS_WITH(layer.forward(h, fake_input<float>(Shape<3>{1, 6, 8}), y, handle, cudaStream_t{}, workspace),
                    Contains("multiple of chunk_size"));
  CHECK_THROWS_WITH(layer.forward(h, fake_input<float>(Shape<3>{1, 40, 8}), y, handle, cudaStream_t{}, workspace),
                    Contains("workspace: needs"));
  CHECK_THROWS_WITH(layer.forward(fake_input<float>(Shape<3>{1, 5, 7}), {}, y, handle, cudaStream_t{}, workspace),
                    Contains("d_model"));
  lsattn::cuda_detail::check(cudaDeviceSynchronize(), "synchronize");
}

// ---- The character LM on CUDA (models/causal_lm_cuda.cuh) -----------------------------------

namespace {

causal::LmConfig small_lm(bool pre_ln, bool gelu) {
  causal::LmConfig config;
  config.vocab_size = 20, config.d_model = 16, config.n_head = 2, config.d_inner = 32, config.n_layer = 2;
  config.mem_len = 8, config.chunk_size = 4, config.chunk_rank = 1, config.window_len = 4;
  config.pre_ln = pre_ln, config.use_gelu = gelu;
  return config;
}

}  // namespace

TEST_CASE("CUDA character LM: workspace from the shapes", "[cuda][lm]") {
  const causal::LmConfig config = small_lm(true, true);
  using Model = causal::TransformerLSModel<lsattn::cuda, float>;
  CHECK(Model::padded_length(config, 8) == 8);
  CHECK(Model::padded_length(config, 6) == 8);  // lcm(4, 4) = 4: the next multiple
  CHECK(Model::workspace_bytes(config, 2, 6) == Model::workspace_bytes(config, 2, 8));
  CHECK(Model::workspace_bytes(config, 2, 16) > Model::workspace_bytes(config, 2, 8));
}

TEMPLATE_TEST_CASE("CUDA character LM matches the CPU model over segments", "[cuda][gpu][lm]", float, __half, __nv_bfloat16) {
  if (!gpu_present()) return;
  std::mt19937_64 rng(31);
  const double tolerance = tolerance_for<TestType>(2e-2, 6e-2) * (std::is_same_v<TestType, float> ? 5 : 2);
  int seed = 0;
  for (const bool pre_ln : {true, false}) {
    for (const bool gelu : {true, false}) {
      const causal::LmConfig config = small_lm(pre_ln, gelu);
      causal::LmWeights<float> weights = causal::LmWeights<float>::random(config, static_cast<std::uint64_t>(++seed));
      weights.for_each(config, [](const std::string&, auto& tensor, const auto&) {  // as TestType stores them
        for (auto& v : tensor.values()) v = static_cast<float>(static_cast<TestType>(v));
      });
      std::vector<Tensor<std::int64_t, 2>> segments;
      for (const index_t length : {index_t{8}, index_t{6}, index_t{12}}) {  // 6: the published padding
        Tensor<std::int64_t, 2> tokens(Shape<2>{2, length});
        for (auto& id : tokens.values()) id = static_cast<std::int64_t>(rng() % 20);
        segments.push_back(tokens);
      }
      const LmRun want = cpu_lm_segments(config, weights, segments);
      const causal::TransformerLSModel<lsattn::cuda, TestType> model(config, weights);
      auto state = model.initial_state(2);
      const lsattn::CublasHandle handle;
      for (std::size_t s = 0; s < segments.size(); ++s) {
        const index_t length = segments[s].extent(1);
        lsattn::DeviceTensor<float, 3> logprobs(Shape<3>{2, length, config.vocab_size});
        lsattn::DeviceTensor<unsigned char, 1> workspace(Shape<1>{static_cast<index_t>(model.workspace_bytes(2, length))});
        model.forward(segments[s].view(), state, logprobs.view(), handle, cudaStream_t{}, workspace_of(workspace));
        INFO("pre_ln=" << pre_ln << " gelu=" << gelu << " segment " << s);
        CHECK(relative_error(logprobs, want.logprobs[s]) < tolerance);
      }
      for (std::size_t i = 0; i < want.caches.size(); ++i) {
        INFO("pre_ln=" << pre_ln << " gelu=" << gelu << " the memory of layer " << i);
        CHECK(relative_error(state.caches[i], want.caches[i]) < tolerance);
      }
    }
  }
}
