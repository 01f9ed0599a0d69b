// The 2D layer (models::vision::AttentionLS2D) on the CUDA backend: the host-side sizing and
// checks run everywhere nvcc is; the comparison with the CPU layer needs a GPU and skips with a
// message when none is present.
#include <catch2/catch.hpp>

#include <algorithm>
#include <random>
#include <set>
#include <tuple>
#include <string>
#include <type_traits>

#include "cpu_reference.hpp"
#include "cuda_test_helpers.cuh"
#include "lsattn/cuda.cuh"
#include "lsattn/models/vision_cuda.cuh"

namespace {

using lsattn::index_t;
using lsattn::Shape;
using lsattn::Tensor;
using namespace lsattn_test;
namespace vision = lsattn::models::vision;

template <class T>
using CudaLayer = vision::AttentionLS2D<lsattn::cuda, T>;

// The CUDA layer takes device views; a host view passed to it does not compile.
static_assert(std::is_invocable_v<decltype(&CudaLayer<float>::forward), const CudaLayer<float>&,
                                  lsattn::DeviceView<const float, 3>, index_t, index_t, lsattn::DeviceView<float, 3>,
                                  const lsattn::CublasHandle&, cudaStream_t, lsattn::DeviceWorkspace>);
static_assert(!std::is_invocable_v<decltype(&CudaLayer<float>::forward), const CudaLayer<float>&,
                                   lsattn::HostView<const float, 3>, index_t, index_t, lsattn::HostView<float, 3>,
                                   const lsattn::CublasHandle&, cudaStream_t, lsattn::DeviceWorkspace>);

// dim 16, 2 heads, w 2, r 3, one global token, RPE, qkv bias.
vision::Config small_config() { return {16, 2, 2, 3, 1, true, true, 0}; }

// The weights as T stores them, back in float: the CPU layer then sees what the GPU uses.
template <class T>
vision::Weights<float> rounded_weights(const vision::Config& config, vision::Weights<float> weights) {
  weights.for_each(config, [](const std::string&, auto& tensor, const auto&) {
    for (auto& v : tensor.values()) v = static_cast<float>(static_cast<T>(v));
  });
  return weights;
}

}  // namespace

TEMPLATE_TEST_CASE("CUDA 2D layer: the workspace size follows from the shapes", "[cuda][vision][layer]", float, __half) {
  const vision::Config config = small_config();
  const index_t c = 16, logits = 2 * 3, batch = 2;
  auto bytes = [&](index_t nx, index_t ny) { return CudaLayer<TestType>::workspace_bytes(config, batch, nx, ny); };
  // T buffers, each starting 256-byte aligned: q, k, v, context (B·N·C each) and the logits
  // (B·P·nh·r); then the attention's float scratch: LN'd k, v (2·N·C), statistics (2·nh·r),
  // compressed k, v (2·r·C).
  auto aligned = [](std::size_t size) { return (size + 255) / 256 * 256; };
  const index_t patches = 4 * 5, tokens = 1 + patches;
  // For 16-bit T the attention's scratch is the larger of that and the tensor-core kernel's:
  // statistics and compressed k, v in fp32 for one item, then every item's LN'd k, v (2·B·N·C) and
  // LN'd compressed k, v (2·B·r·C) in T, each buffer 256-byte aligned.
  const std::size_t per_query = sizeof(float) * (2 * tokens * c + 2 * logits + 2 * 3 * c);
  const std::size_t tiled = 2 * aligned(sizeof(float) * logits) + 2 * aligned(sizeof(float) * 3 * c) +
                            2 * aligned(sizeof(TestType) * batch * tokens * c) + aligned(sizeof(TestType) * batch * 3 * c) +
                            sizeof(TestType) * batch * 3 * c;
  const std::size_t attention = std::is_same_v<TestType, float> ? per_query : std::max(per_query, tiled);
  CHECK(bytes(4, 5) == 4 * aligned(sizeof(TestType) * batch * tokens * c) + aligned(sizeof(TestType) * batch * patches * logits) +
                           attention);
  // Linear in the patches: every patch adds the same bytes, whatever the grid's shape, up to the
  // alignment of the five T buffers.
  const std::size_t per_patch = sizeof(TestType) * (4 * batch * c + batch * logits) + sizeof(float) * 2 * c;
  auto linear = [](std::size_t got, std::size_t want) { return got + 5 * 256 >= want && got <= want + 5 * 256; };
  CHECK(linear(bytes(4, 10) - bytes(4, 5), 20 * per_patch));
  CHECK(linear(bytes(8, 10) - bytes(4, 10), 40 * per_patch));
  CHECK(linear(bytes(64, 64) - bytes(32, 64), 32 * 64 * per_patch));
  CHECK(bytes(3, 7) == bytes(7, 3));
  // Without the dynamic projection: no logits, no statistics, no compressed rows.
  vision::Config no_projection = config;
  no_projection.dp_rank = 0;
  const std::size_t no_projection_tiled = 2 * aligned(sizeof(TestType) * batch * tokens * c);
  CHECK(CudaLayer<TestType>::workspace_bytes(no_projection, batch, 4, 5) ==
        4 * aligned(sizeof(TestType) * batch * tokens * c) +
            (std::is_same_v<TestType, float> ? sizeof(float) * 2 * tokens * c
                                              : std::max(sizeof(float) * 2 * tokens * c, no_projection_tiled)));
  using Catch::Matchers::Contains;
  CHECK_THROWS_WITH(CudaLayer<TestType>::workspace_bytes(config, batch, 0, 5), Contains("grid") && Contains("0 x 5"));
  CHECK_THROWS_WITH(CudaLayer<TestType>::workspace_bytes(config, 0, 4, 5), Contains("batch"));
}

TEST_CASE("CUDA 2D layer: arguments are checked on the host before any launch", "[cuda][vision][layer][errors]") {
  using Catch::Matchers::Contains;
  const vision::Config config = small_config();
  // Views over never-dereferenced device addresses: only shapes are checked on the host.
  const float* fake = reinterpret_cast<const float*>(0x1000);
  float* fake_out = reinterpret_cast<float*>(0x100000);
  const index_t nx = 3, ny = 4, tokens = 1 + nx * ny;
  const lsattn::DeviceView<const float, 3> x(fake, Shape<3>{2, tokens, 16});
  const lsattn::DeviceView<float, 3> y(fake_out, Shape<3>{2, tokens, 16});
  const std::size_t needed = CudaLayer<float>::workspace_bytes(config, 2, nx, ny);
  const lsattn::DeviceWorkspace workspace{reinterpret_cast<void*>(0x200000), needed};
  CHECK(CudaLayer<float>::validate(config, x, nx, ny, y, workspace).empty());

  // x not (B, nglo + nx·ny, C): the message names x and the expected shape, as the CPU layer's.
  const lsattn::DeviceView<const float, 3> wrong_tokens(fake, Shape<3>{2, tokens + 1, 16});
  CHECK_THAT(CudaLayer<float>::validate(config, wrong_tokens, nx, ny, y, workspace),
             Contains("x: expected shape (B, nglo + nx*ny = 1 + 3*4, dim = 16)") && Contains("(2, 14, 16)"));
  const lsattn::DeviceView<const float, 3> wrong_dim(fake, Shape<3>{2, tokens, 8});
  CHECK_THAT(CudaLayer<float>::validate(config, wrong_dim, nx, ny, y, workspace), Contains("x: expected shape"));
  CHECK(CudaLayer<float>::validate(config, x, 4, 3, y, workspace).empty());  // 4 x 3 has as many patches as 3 x 4
  CHECK_THAT(CudaLayer<float>::validate(config, x, 0, ny, y, workspace), Contains("grid") && Contains("0 x 4"));
  CHECK_THAT(CudaLayer<float>::validate(config, x, nx, 5, y, workspace), Contains("x: expected shape"));
  CHECK_THAT(CudaLayer<float>::validate(config, lsattn::DeviceView<const float, 3>(nullptr, x.shape()), nx, ny, y, workspace),
             Contains("x: null data pointer"));
  // y must have x's shape.
  const lsattn::DeviceView<float, 3> wrong_y(fake_out, Shape<3>{2, tokens - 1, 16});
  CHECK_THAT(CudaLayer<float>::validate(config, x, nx, ny, wrong_y, workspace), Contains("y: expected shape (2, 13, 16)"));
  // The workspace: too small by one byte, or null.
  CHECK_THAT(CudaLayer<float>::validate(config, x, nx, ny, y, {workspace.data, needed - 1}),
             Contains("workspace: needs " + std::to_string(needed)) && Contains("workspace_bytes"));
  CHECK_THAT(CudaLayer<float>::validate(config, x, nx, ny, y, {nullptr, needed}), Contains("workspace"));
  // A bad configuration is reported by validate too.
  vision::Config bad = config;
  bad.dim = 15;
  CHECK_THAT(CudaLayer<float>::validate(bad, x, nx, ny, y, workspace), Contains("dim (15)"));
}

TEST_CASE("CUDA 2D layer: configuration and weights are checked before the device is touched", "[cuda][vision][layer][errors]") {
  using Catch::Matchers::Contains;
  vision::Config config = small_config();
  config.w = 1;  // rpe needs w >= 2 (spec §3.5)
  CHECK_THROWS_WITH(CudaLayer<float>(config, vision::Weights<float>::random(small_config(), 1)), Contains("rpe"));
  config = small_config();
  auto weights = vision::Weights<float>::random(config, 1);
  weights.proj_bias = Tensor<float, 1>(Shape<1>{15});
  CHECK_THROWS_WITH(CudaLayer<float>(config, weights), Contains("proj.bias") && Contains("(16)"));
  // More scores per query than the kernel's shared memory holds: r + T² + nglo > 12256.
  config.w = 60;  // T = 120, T² = 14400
  CHECK_THROWS_WITH(CudaLayer<float>(config, vision::Weights<float>::random(config, 1)),
                    Contains("dp_rank + T² + nglo") && Contains("14404"));

  const vision::Config good = small_config();
  if (!gpu_present()) {
    // Uploading the weights needs a device; without one the layer reports a clear CUDA error.
    CHECK_THROWS_WITH(CudaLayer<float>(good, vision::Weights<float>::random(good, 1)), Contains("CUDA"));
    return;
  }
  // With a device: forward() throws the same messages before launching (the fake pointers would
  // fault if anything ran).
  const CudaLayer<float> layer(good, vision::Weights<float>::random(good, 1));
  const index_t nx = 3, ny = 4, tokens = 1 + nx * ny;
  const lsattn::DeviceView<const float, 3> x(reinterpret_cast<const float*>(0x1000), Shape<3>{2, tokens, 16});
  const lsattn::DeviceView<const float, 3> wrong_x(reinterpret_cast<const float*>(0x1000), Shape<3>{2, tokens - 1, 16});
  const lsattn::DeviceView<float, 3> y(reinterpret_cast<float*>(0x100000), Shape<3>{2, tokens, 16});
  const lsattn::CublasHandle handle;
  const lsattn::DeviceWorkspace workspace{reinterpret_cast<void*>(0x200000), layer.workspace_bytes(2, nx, ny)};
  CHECK(layer.validate(x, nx, ny, y, workspace).empty());
  CHECK_THROWS_WITH(layer.forward(wrong_x, nx, ny, y, handle, cudaStream_t{}, workspace), Contains("x: expected shape"));
  CHECK_THROWS_WITH(layer.forward(x, nx, ny, y, handle, cudaStream_t{}, {workspace.data, workspace.bytes - 1}),
                    Contains("workspace") && Contains("workspace_bytes"));
  CHECK_THROWS_WITH(layer.forward(x, -1, ny, y, handle, cudaStream_t{}, workspace), Contains("grid"));
  lsattn::cuda_detail::check(cudaDeviceSynchronize(), "synchronize");  // nothing was launched
}

TEMPLATE_TEST_CASE("CUDA 2D layer matches the CPU layer", "[cuda][gpu][vision][layer]", float, __half, __nv_bfloat16) {
  if (!gpu_present()) return;
  struct Case {
    index_t heads, head_dim, w, rank, globals, nx, ny;
    bool rpe, qkv_bias;
  };
  // Square multiples of w (the published case), rectangular grids, ragged grids (partial border
  // blocks), grids smaller than one block, nglo 0/1/2, rpe on/off, dp_rank 0.
  const Case cases[] = {
      {2, 8, 2, 3, 1, 4, 4, true, true},    {3, 8, 4, 4, 1, 8, 8, true, true},    {2, 16, 2, 2, 0, 4, 6, true, false},
      {1, 8, 3, 3, 2, 5, 7, true, true},    {2, 8, 4, 0, 1, 6, 9, true, true},    {2, 8, 1, 2, 1, 5, 3, false, true},
      {2, 16, 3, 1, 0, 7, 4, false, false}, {1, 16, 2, 0, 2, 3, 5, false, true},  {3, 8, 7, 4, 1, 10, 13, true, true},
      {2, 8, 4, 2, 2, 2, 3, true, true},    {2, 8, 2, 5, 1, 1, 9, true, true},    {1, 8, 5, 3, 0, 11, 6, true, false},
      // w <= 0: no window, the compressed and global keys only (the published module allows it)
      {2, 8, 0, 3, 1, 6, 7, false, true},   {2, 8, -1, 0, 2, 5, 4, false, true},  {1, 16, 0, 4, 0, 9, 3, false, false},
  };
  std::mt19937_64 rng(23);
  const double tolerance = tolerance_for<TestType>(3e-2, 8e-2);
  cudaStream_t stream = nullptr;
  lsattn::cuda_detail::check(cudaStreamCreate(&stream), "cudaStreamCreate");
  const lsattn::CublasHandle handle;
  int trial = 0;
  for (const Case& k : cases) {
    const vision::Config config{k.heads * k.head_dim, k.heads, k.w, k.rank, k.globals, k.rpe, k.qkv_bias, 0};
    const index_t batch = 2, tokens = k.globals + k.nx * k.ny, c = config.dim;
    const auto weights = rounded_weights<TestType>(config, vision::Weights<float>::random(config, 40 + trial));
    const auto x = rounded_as<TestType>(random_tensor<float>(Shape<3>{batch, tokens, c}, rng));
    const auto want = lsattn_test::cpu_vision_layer(config, weights, x, k.nx, k.ny);

    const CudaLayer<TestType> layer(config, weights);
    const auto dx = lsattn::to_device<TestType>(x);
    lsattn::DeviceTensor<TestType, 3> y(want.shape());
    const std::size_t bytes = layer.workspace_bytes(batch, k.nx, k.ny);
    lsattn::DeviceTensor<unsigned char, 1> workspace(Shape<1>{static_cast<index_t>(bytes)});
    // NaN bit patterns everywhere: a read of unwritten scratch or an unwritten output shows up.
    lsattn::cuda_detail::check(cudaMemset(workspace.view().data(), 0xff, bytes), "cudaMemset");
    lsattn::cuda_detail::check(cudaMemset(y.view().data(), 0xff, sizeof(TestType) * y.size()), "cudaMemset");
    REQUIRE(layer.validate(dx.view(), k.nx, k.ny, y.view(), workspace_of(workspace)).empty());
    layer.forward(dx.view(), k.nx, k.ny, y.view(), handle, stream, workspace_of(workspace));
    INFO("case " << trial << ": nh=" << k.heads << " dh=" << k.head_dim << " w=" << k.w << " r=" << k.rank
                 << " nglo=" << k.globals << " grid " << k.nx << "x" << k.ny << " rpe=" << k.rpe << " qkv_bias=" << k.qkv_bias);
    CHECK(relative_error(y, want) < tolerance);
    ++trial;
  }
  lsattn::cuda_detail::check(cudaStreamDestroy(stream), "cudaStreamDestroy");
}

// ---- The tensor-core 2D kernel (mma_vision.cuh) ----------------------------------------------
// Its index rules against the spec's, written out here: every patch is the query of exactly one
// tile, in its own window block; a tile's key list is exactly the r compressed rows, the block's
// key rows × columns inside the grid (side = max(w/2, 1) around the block) and the globals, each
// once, with the RPE offsets of the tile keys and of the queries.
TEST_CASE("CUDA tiled 2D kernel: query tiles cover the grid once, key lists are the spec's", "[cuda][mma][vision]") {
  using lsattn::cuda_detail::VisionTiles;
  using Kind = VisionTiles::Kind;
  std::mt19937_64 rng(17);
  for (int trial = 0; trial < 300; ++trial) {
    const index_t w = std::uniform_int_distribution<index_t>(1, 13)(rng);
    const index_t rows = std::uniform_int_distribution<index_t>(1, 40)(rng), cols = std::uniform_int_distribution<index_t>(1, 40)(rng);
    const index_t globals = trial % 3, rank = trial % 4 == 0 ? 0 : std::uniform_int_distribution<index_t>(1, 70)(rng);
    const VisionTiles tiles{rows, cols, globals, rank, lsattn::Window2D{w, std::max<index_t>(w / 2, 1)}};
    const index_t side = std::max<index_t>(w / 2, 1), tile_side = w + 2 * side;
    INFO("w=" << w << " grid " << rows << "x" << cols << " nglo=" << globals << " r=" << rank);
    std::vector<int> seen(static_cast<std::size_t>(rows * cols), 0);
    for (index_t i = 0; i < tiles.count(); ++i) {
      const VisionTiles::QueryTile tile = tiles.query_tile(i);
      REQUIRE(tile.count <= 64);
      if (tile.count == 0) continue;
      for (index_t k = 0; k < tile.count; ++k) {
        const index_t token = tiles.query_token(tile, k);
        REQUIRE((token >= globals && token < globals + rows * cols));
        const index_t y = (token - globals) / cols, x = (token - globals) % cols;
        ++seen[static_cast<std::size_t>(y * cols + x)];
        REQUIRE(y / w == tile.gy);
        REQUIRE(x / w == tile.gx);
        REQUIRE(tiles.query_offset(tile, k) == (y % w) * w + x % w);
      }
      // The spec's keys of block (gy, gx), each once.
      std::set<std::tuple<int, index_t, index_t>> want;  // (kind, row or token, RPE offset)
      for (index_t j = 0; j < rank; ++j) want.insert({0, j, -1});
      for (index_t ky = tile.gy * w - side; ky < (tile.gy + 1) * w + side; ++ky)
        for (index_t kx = tile.gx * w - side; kx < (tile.gx + 1) * w + side; ++kx)
          if (ky >= 0 && ky < rows && kx >= 0 && kx < cols)
            want.insert({1, globals + ky * cols + kx, (ky - (tile.gy * w - side)) * tile_side + (kx - (tile.gx * w - side))});
      for (index_t g = 0; g < globals; ++g) want.insert({2, g, -1});
      std::set<std::tuple<int, index_t, index_t>> got;
      for (index_t j = 0; j < tiles.key_count(tile); ++j) {
        const VisionTiles::Key key = tiles.key(tile, j);
        const int kind = key.kind == Kind::compressed ? 0 : key.kind == Kind::tile ? 1 : 2;
        REQUIRE(got.insert({kind, key.row, key.offset}).second);
      }
      REQUIRE(got == want);
    }
    for (int count : seen) REQUIRE(count == 1);
  }
}

TEST_CASE("CUDA tiled 2D kernel: shared memory fits the sm_80 opt-in limit", "[cuda][mma][vision]") {
  CHECK(lsattn::cuda_detail::VisionMmaLayout<__nv_bfloat16, 64>::bytes <= 48 * 1024);  // with 168 registers a thread, three blocks fit an H100/H200 SM
  CHECK(lsattn::cuda_detail::VisionMmaLayout<__half, 128>::bytes <= 163 * 1024);
}

// Shapes the tensor-core kernel takes, against the CPU layer and against the one-block-per-query
// kernel on the same inputs.
TEMPLATE_TEST_CASE("CUDA tiled 2D kernel matches the CPU layer and the per-query kernel", "[cuda][gpu][vision][mma]", __half,
                   __nv_bfloat16) {
  if (!gpu_present()) return;
  struct Case {
    index_t heads, head_dim, w, rank, globals, nx, ny;
    bool rpe;
    index_t batch;
  };
  const Case cases[] = {
      {3, 32, 7, 8, 1, 14, 14, true, 2},   // ViL-LS stage 1 (C = 96), a 14 × 14 grid
      {3, 32, 7, 8, 1, 56, 56, true, 1},   // ViL-LS stage 1 at its published 56 × 56
      {2, 64, 8, 4, 2, 17, 16, true, 3},   // 64 queries a block, partial border blocks
      {1, 32, 12, 3, 0, 25, 13, true, 1},  // 144 queries a block: three query tiles
      {2, 16, 1, 0, 1, 9, 11, false, 2},   // w = 1: 3 × 3 key tiles, no projection
      {1, 128, 5, 70, 1, 12, 12, true, 1}, // r = 70: two key tiles of compressed rows
  };
  std::mt19937_64 rng(31);
  const double tolerance = tolerance_for<TestType>(3e-2, 8e-2), kernel_tolerance = tolerance_for<TestType>(5e-3, 2.5e-2);
  const lsattn::CublasHandle handle;
  int trial = 0;
  for (const Case& k : cases) {
    const vision::Config config{k.heads * k.head_dim, k.heads, k.w, k.rank, k.globals, k.rpe, true, 0};
    const index_t tokens = k.globals + k.nx * k.ny, c = config.dim;
    const auto weights = rounded_weights<TestType>(config, vision::Weights<float>::random(config, 70 + trial));
    const auto x = rounded_as<TestType>(random_tensor<float>(Shape<3>{k.batch, tokens, c}, rng));
    const auto want = lsattn_test::cpu_vision_layer(config, weights, x, k.nx, k.ny);
    const CudaLayer<TestType> layer(config, weights);
    const auto dx = lsattn::to_device<TestType>(x);
    lsattn::DeviceTensor<unsigned char, 1> workspace(Shape<1>{static_cast<index_t>(layer.workspace_bytes(k.batch, k.nx, k.ny))});
    auto run = [&] {
      lsattn::DeviceTensor<TestType, 3> y(want.shape());
      lsattn::cuda_detail::check(cudaMemset(y.view().data(), 0xff, sizeof(TestType) * y.size()), "cudaMemset");
      layer.forward(dx.view(), k.nx, k.ny, y.view(), handle, cudaStream_t{}, workspace_of(workspace));
      return lsattn::to_host<float>(y);
    };
    INFO("case " << trial << ": B=" << k.batch << " nh=" << k.heads << " dh=" << k.head_dim << " w=" << k.w << " r=" << k.rank
                 << " nglo=" << k.globals << " grid " << k.nx << "x" << k.ny << " rpe=" << k.rpe);
    const Tensor<float, 3> got = run();
    CHECK(host_relative_error(got, want) < tolerance);
    ++trial;
    if (!tiled_kernels_present()) continue;
    check_against_per_query_kernel(got, run, kernel_tolerance);
  }
}
