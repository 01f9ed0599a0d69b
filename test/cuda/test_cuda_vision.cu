// The 2D layer (models::vision::AttentionLS2D) on the CUDA backend: the host-side sizing and
// checks run everywhere nvcc is; the comparison with the CPU layer needs a GPU and skips with a
// message when none is present.
#include <catch2/catch.hpp>

#include <random>
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
  CHECK(bytes(4, 5) == 4 * aligned(sizeof(TestType) * batch * tokens * c) + aligned(sizeof(TestType) * batch * patches * logits) +
                           sizeof(float) * (2 * tokens * c + 2 * logits + 2 * 3 * c));
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
  CHECK(CudaLayer<TestType>::workspace_bytes(no_projection, batch, 4, 5) ==
        4 * aligned(sizeof(TestType) * batch * tokens * c) + sizeof(float) * 2 * tokens * c);
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
