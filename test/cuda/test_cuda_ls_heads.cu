// LS-attention heads on CUDA: host-side checks everywhere; the layer (and its max logits) and
// the LS-attention GPT against the CPU layer and model when a GPU is present.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <random>
#include <type_traits>
#include <vector>

#include "cpu_reference.hpp"
#include "cuda_test_helpers.cuh"
#include "lsattn/models/ls_gpt_cuda.cuh"
#include "lsattn/models/ls_heads_cuda.cuh"

namespace {

using lsattn::index_t;
using lsattn::Shape;
using lsattn::Tensor;
using namespace lsattn_test;
namespace ls = lsattn::models::ls_heads;

template <class T>
using CudaLayer = ls::LsHeadsAttention<lsattn::cuda, T>;

}  // namespace

TEST_CASE("CUDA LS heads: workspace from shapes, configuration checked", "[cuda][ls_heads]") {
  using Catch::Matchers::Contains;
  const ls::Config config{64, 4, {0, 2}, 16, false};
  const std::size_t small = CudaLayer<float>::workspace_bytes(config, 1, 1000);
  const std::size_t large = CudaLayer<float>::workspace_bytes(config, 1, 3000);
  CHECK(large - small == 2000 * (4 * 64 * sizeof(float) + 4 * sizeof(float)));  // linear in L
  CHECK(CudaLayer<__nv_bfloat16>::workspace_bytes(config, 2, 1000) < CudaLayer<float>::workspace_bytes(config, 2, 1000));
  const ls::Config too_many{130, 65, {}, 4, false};  // checked before any upload
  CHECK_THROWS_WITH(CudaLayer<float>(too_many, ls::Weights<float>::random(too_many, 1)),
                    Contains("num_heads") && Contains("64"));
}

TEST_CASE("CUDA LS heads: arguments checked before any launch", "[cuda][ls_heads]") {
  using Catch::Matchers::Contains;
  if (!gpu_present()) return;
  const ls::Config config{64, 4, {0, 2}, 16, false};
  const CudaLayer<float> layer(config, ls::Weights<float>::random(config, 1));
  float* fake = reinterpret_cast<float*>(0x1000);
  const lsattn::DeviceView<const float, 3> x(fake, Shape<3>{1, 10, 64}), narrow(fake, Shape<3>{1, 10, 32});
  const lsattn::DeviceView<float, 3> y(reinterpret_cast<float*>(0x100000), Shape<3>{1, 10, 64});
  const lsattn::CublasHandle handle;
  CHECK_THROWS_WITH(layer.forward(narrow, {}, y, handle, cudaStream_t{}, {}), Contains("x") && Contains("(1, 10, 32)"));
  const lsattn::DeviceView<const float, 2> bad_mask(fake, Shape<2>{1, 9});
  CHECK_THROWS_WITH(layer.forward(x, bad_mask, y, handle, cudaStream_t{}, {}), Contains("mask"));
  CHECK_THROWS_WITH(layer.forward(x, {}, y, handle, cudaStream_t{}, lsattn::DeviceWorkspace{fake, 16}),
                    Contains("workspace") && Contains("workspace_bytes"));
}

TEMPLATE_TEST_CASE("CUDA LS heads match the CPU layer", "[cuda][gpu][ls_heads]", float, __half, __nv_bfloat16) {
  if (!gpu_present()) return;
  struct Case {
    index_t dim, heads;
    std::vector<index_t> local;
    index_t window;
    bool causal;
    index_t length;
    bool with_mask;
  };
  // head_dim 16, 32, 64 and 128 take the tiled kernel for 16-bit types; 8 and 24 the per-query one.
  const Case cases[] = {
      {64, 4, {0, 2}, 16, false, 130, true}, {64, 4, {}, 1, true, 300, false},   {64, 1, {0}, 1, false, 65, true},
      {256, 4, {1, 2, 3}, 64, true, 257, true}, {256, 4, {0}, 200, false, 199, false}, {32, 4, {3}, 7, true, 1, false},
      {96, 4, {0, 1}, 33, false, 100, true},  {32, 2, {}, 5, false, 63, true},
      {128, 4, {0, 3}, 40, true, 150, true},  // head_dim 32
      {512, 4, {2}, 100, false, 129, true},   // head_dim 128
  };
  std::mt19937_64 rng(11);
  const double tolerance = tolerance_for<TestType>(2e-2, 6e-2);
  int seed = 0;
  for (const Case& c : cases) {
    const ls::Config config{c.dim, c.heads, c.local, c.window, c.causal};
    // Weights rounded to TestType, so both sides use the same parameters.
    ls::Weights<float> weights = ls::Weights<float>::random(config, static_cast<std::uint64_t>(++seed));
    weights.for_each(config, [](const std::string&, auto& tensor, const auto&) {
      for (auto& v : tensor.values()) v = static_cast<float>(static_cast<TestType>(v));
    });
    const auto x = rounded_as<TestType>(random_tensor<float>(Shape<3>{2, c.length, c.dim}, rng));
    Tensor<float, 2> mask(Shape<2>{2, c.length}, 1.0f);
    if (c.with_mask)
      for (auto& m : mask.values()) m = std::bernoulli_distribution(0.25)(rng) ? 0.0f : 1.0f;
    std::vector<float> want_logits;
    const Tensor<float, 3> want = cpu_ls_heads_layer(config, weights, x, c.with_mask ? mask : Tensor<float, 2>{}, want_logits);

    const CudaLayer<TestType> layer(config, weights);
    const auto dx = lsattn::to_device<TestType>(x);
    const auto dm = lsattn::to_device<TestType>(mask);
    lsattn::DeviceTensor<TestType, 3> y(x.shape());
    lsattn::DeviceTensor<float, 1> logits(Shape<1>{c.heads});
    lsattn::DeviceTensor<unsigned char, 1> workspace(Shape<1>{static_cast<index_t>(layer.workspace_bytes(2, c.length))});
    const lsattn::CublasHandle handle;
    auto forward = [&](lsattn::DeviceTensor<TestType, 3>& out, lsattn::DeviceTensor<float, 1>& max_logits) {
      layer.forward(dx.view(), c.with_mask ? dm.view() : lsattn::DeviceView<const TestType, 2>{}, out.view(), handle,
                    cudaStream_t{}, workspace_of(workspace), max_logits.view());
    };
    forward(y, logits);
    INFO("dim=" << c.dim << " heads=" << c.heads << " local=" << c.local.size() << " w=" << c.window
                << " causal=" << c.causal << " L=" << c.length << " mask=" << c.with_mask);
    CHECK(relative_error(y, want) < tolerance);
    std::vector<float> got_logits(static_cast<std::size_t>(c.heads));
    logits.copy_to({got_logits.data(), Shape<1>{c.heads}});
    for (index_t h = 0; h < c.heads; ++h) {
      const float expected = want_logits[static_cast<std::size_t>(h)];
      CHECK(std::abs(got_logits[static_cast<std::size_t>(h)] - expected) <= 2 * tolerance * std::max(1.0f, std::abs(expected)));
    }
    if (lsattn::cuda_detail::tensor_core_type<TestType> && lsattn::cuda_detail::TiledSupport::current().capable) {
      // The default (mma.sync) kernel against the WMMA kernel it replaced, same inputs.
      lsattn::DeviceTensor<TestType, 3> y_wmma(x.shape());
      lsattn::DeviceTensor<float, 1> logits_wmma(Shape<1>{c.heads});
      {
        const ScopedValue wmma(lsattn::cuda_detail::mma_kernel_enabled(), false);
        forward(y_wmma, logits_wmma);
      }
      CHECK(relative_error(y_wmma, lsattn::to_host<float>(y)) < tolerance / 4);
      std::vector<float> wmma_logits(static_cast<std::size_t>(c.heads));
      logits_wmma.copy_to({wmma_logits.data(), Shape<1>{c.heads}});
      for (index_t h = 0; h < c.heads; ++h) {
        const float mine = got_logits[static_cast<std::size_t>(h)], reference = wmma_logits[static_cast<std::size_t>(h)];
        CHECK(std::abs(mine - reference) <= tolerance * std::max(1.0f, std::abs(reference)));
      }
    }
  }
}

// ---- The LS-attention GPT on CUDA (models/ls_gpt_cuda.cuh) ----------------------------------

namespace {
namespace gpt = lsattn::models::ls_gpt;

gpt::Config small_gpt(gpt::Version version, lsattn::index_t head_dim) {
  gpt::Config config;
  config.block_size = 64;
  config.vocab_size = 50;
  config.n_layer = 2;
  config.n_head = 4;
  config.head_dim = head_dim;
  config.n_embd = 4 * head_dim;
  config.n_local_head = 2;
  config.local_attn_span = 5;
  config.version = version;
  return config;
}

}  // namespace

TEST_CASE("CUDA LS GPT: workspace from the shapes, linear in the tokens", "[cuda][ls_gpt]") {
  const gpt::Config config = small_gpt(gpt::Version::split_heads, 16);
  const std::size_t small = gpt::LsGptCuda<float>::workspace_bytes(config, 1, 1000);
  const std::size_t large = gpt::LsGptCuda<float>::workspace_bytes(config, 2, 1000);
  const std::size_t larger = gpt::LsGptCuda<float>::workspace_bytes(config, 3, 1000);
  CHECK(large > small);
  CHECK(larger - large == large - small);
  CHECK(gpt::LsGptCuda<__nv_bfloat16>::workspace_bytes(config, 2, 1000) < large);
  CHECK_THROWS_WITH(gpt::LsGptCuda<float>::workspace_bytes(config, index_t{1} << 40, index_t{1} << 40),
                    Catch::Matchers::Contains("batch") && Catch::Matchers::Contains("length"));
}

TEMPLATE_TEST_CASE("CUDA LS GPT matches the CPU model", "[cuda][gpu][ls_gpt]", float, __half, __nv_bfloat16) {
  if (!gpu_present()) return;
  std::mt19937_64 rng(23);
  const double tolerance = tolerance_for<TestType>(2e-2, 6e-2) * (std::is_same_v<TestType, float> ? 5 : 1);
  int seed = 0;
  for (const gpt::Version version : {gpt::Version::packed_heads, gpt::Version::split_heads}) {
    for (const index_t head_dim : {index_t{16}, index_t{64}}) {
      const gpt::Config config = small_gpt(version, head_dim);
      gpt::Weights<float> weights = gpt::Weights<float>::random(config, static_cast<std::uint64_t>(++seed));
      weights.for_each(config, [](const std::string&, auto& tensor, const auto&) {  // as TestType stores them
        for (auto& v : tensor.values()) v = static_cast<float>(static_cast<TestType>(v));
      });
      for (const index_t length : {index_t{1}, index_t{37}, index_t{64}}) {
        Tensor<std::int64_t, 2> tokens(Shape<2>{2, length});
        for (auto& id : tokens.values()) id = static_cast<std::int64_t>(rng() % 50);
        const Tensor<float, 3> want = cpu_ls_gpt_logits(config, weights, tokens);
        const gpt::LsGptCuda<TestType> model(config, weights);
        lsattn::DeviceTensor<TestType, 3> logits(want.shape());
        lsattn::DeviceTensor<unsigned char, 1> workspace(Shape<1>{static_cast<index_t>(model.workspace_bytes(2, length))});
        const lsattn::CublasHandle handle;
        model.forward(tokens.view(), logits.view(), handle, cudaStream_t{}, workspace_of(workspace));
        INFO(gpt::version_name(version) << " head_dim=" << head_dim << " T=" << length);
        CHECK(relative_error(logits, want) < tolerance);
        Tensor<std::int64_t, 2> bad = tokens;
        bad(1, 0) = 50;
        CHECK_THROWS_WITH(model.forward(bad.view(), logits.view(), handle, cudaStream_t{}, workspace_of(workspace)),
                          Catch::Matchers::Contains("id 50") && Catch::Matchers::Contains("(1, 0)"));
      }
    }
  }
}
