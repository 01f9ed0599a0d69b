// The CUDA backend: host-side checks run everywhere nvcc is; results are compared with the CPU
// backend when a GPU is present, and skipped with a message when none is.
#include <catch2/catch.hpp>

#include <random>
#include <type_traits>

#include "cpu_reference.hpp"
#include "cuda_test_helpers.cuh"
#include "lsattn/cuda.cuh"
#include "lsattn/models/lra_cuda.cuh"

namespace {

using lsattn::index_t;
using lsattn::Shape;
using lsattn::Tensor;

using CudaAttention = lsattn::LongShortAttention<lsattn::cuda, float>;
using HostInputs = lsattn::AttentionInputs<float, lsattn::host_space>;
using HostNorm = lsattn::DualLayerNorm::Params<float, lsattn::host_space>;

// A host view passed to the CUDA backend does not compile (and device views are not host views).
static_assert(!std::is_invocable_v<CudaAttention, const HostInputs&, const HostNorm&, const lsattn::HostView<float, 3>&,
                                   cudaStream_t, lsattn::DeviceWorkspace>);
static_assert(!std::is_convertible_v<lsattn::DeviceView<float, 3>, lsattn::HostView<float, 3>>);

using namespace lsattn_test;

}  // namespace

TEST_CASE("CUDA workspace size is known up front", "[cuda]") {
  const CudaAttention attention({8, 64, 128, 64});
  // Only shapes are read: views over a never-dereferenced device address.
  float* fake = reinterpret_cast<float*>(0x1000);
  auto inputs = [&](index_t length, bool cls) {
    const lsattn::DeviceView<const float, 3> tokens(fake, Shape<3>{1, length, 512}), one(fake, Shape<3>{1, 1, 512});
    CudaAttention::Inputs in{tokens, tokens, tokens, lsattn::DeviceView<const float, 3>(fake, Shape<3>{1, length, 512})};
    if (cls) in.cls_query = in.cls_key = in.cls_value = one;
    return in;
  };
  const std::size_t small = attention.workspace_bytes(inputs(1024, false)), large = attention.workspace_bytes(inputs(4096, false));
  // fp32: K and V after the LN, the column statistics and their per-256-token chunks, the global rows.
  CHECK(small == sizeof(float) * (2 * 1024 * 512 + 2 * 8 * 64 + 2 * 4 * 8 * 64 + 2 * 64 * 512));
  CHECK(large - small == sizeof(float) * (2 * 3072 * 512 + 2 * 12 * 8 * 64));  // linear in the length
  CHECK(attention.workspace_bytes(inputs(1024, true)) - small == sizeof(float) * 2 * 512);
  // 16-bit types keep the normalised K and V in T; statistics, global rows and the tensor-core
  // compression's partial sums (2 · ⌈L/256⌉ chunks · nh · r · dh) stay fp32.
  using Bf16Attention = lsattn::LongShortAttention<lsattn::cuda, __nv_bfloat16>;
  const lsattn::DeviceView<const __nv_bfloat16, 3> tokens(reinterpret_cast<__nv_bfloat16*>(fake), Shape<3>{1, 1024, 512});
  const Bf16Attention::Inputs bf16_inputs{tokens, tokens, tokens,
                                          lsattn::DeviceView<const __nv_bfloat16, 3>(tokens.data(), Shape<3>{1, 1024, 512})};
  CHECK(Bf16Attention({8, 64, 128, 64}).workspace_bytes(bf16_inputs) ==
        sizeof(float) * (2 * 8 * 64 + 2 * 4 * 8 * 64 + 2 * 64 * 512 + 2 * 4 * 8 * 64 * 64) +
            sizeof(__nv_bfloat16) * 2 * 1024 * 512);
}

TEST_CASE("CUDA arguments are checked on the host before any launch", "[cuda][errors]") {
  using Catch::Matchers::Contains;
  const CudaAttention attention({2, 4, 4, 2});
  // Views over (never dereferenced) device pointers: only shapes are checked on the host.
  float* fake = reinterpret_cast<float*>(0x1000);
  const lsattn::DeviceView<const float, 3> q(fake, Shape<3>{1, 6, 8}), logits(fake, Shape<3>{1, 6, 4});
  const lsattn::DeviceView<float, 3> out(reinterpret_cast<float*>(0x100000), Shape<3>{1, 5, 8});
  const lsattn::DeviceView<const float, 1> ln(fake, Shape<1>{8});
  const CudaAttention::CombinerParams norm{{ln, ln}, {ln, ln}};
  CHECK_THAT(attention.validate({q, q, q, logits}, norm, out), Contains("context") && Contains("(1, 5, 8)"));
  CHECK_THROWS_WITH(attention({q, q, q, logits}, norm, out, cudaStream_t{}, lsattn::DeviceWorkspace{}),
                    Contains("context"));
  const lsattn::DeviceView<float, 3> good(reinterpret_cast<float*>(0x100000), Shape<3>{1, 6, 8});
  CHECK_THROWS_WITH(attention({q, q, q, logits}, norm, good, cudaStream_t{}, lsattn::DeviceWorkspace{nullptr, 16}),
                    Contains("workspace") && Contains("workspace_bytes"));
}

// The bidirectional attention against the CPU backend: test_cuda_bidirectional.cu.

TEST_CASE("CUDA causal workspace and argument checks", "[cuda][causal]") {
  using Catch::Matchers::Contains;
  using Causal = lsattn::LongShortAttention<lsattn::cuda, float, lsattn::CausalWindow, lsattn::ChunkedProjection>;
  const Causal attention({2, 4, 4, 1, 0, 2});  // w = 4, r = 1, l = 2
  float* fake = reinterpret_cast<float*>(0x1000);
  // L = 6 after a cache of M = 4: window rows min(M, w) + L = 10, compressed rows (4 + 6)/2 = 5.
  const lsattn::DeviceView<const float, 3> query(fake, Shape<3>{1, 6, 8}), rows(fake, Shape<3>{1, 10, 8}),
      compressed(fake, Shape<3>{1, 5, 8});
  const lsattn::DeviceView<const float, 1> bias(fake, Shape<1>{8});
  const lsattn::DeviceView<const float, 2> window_positions(fake, Shape<2>{4, 8}), chunk_positions(fake, Shape<2>{5, 8});
  const Causal::Inputs in{query, rows, rows, compressed, compressed, 4, bias, bias, window_positions, chunk_positions};
  CHECK(attention.workspace_bytes(in) == sizeof(float) * 2 * (10 + 5) * 8);
  const Causal::CombinerParams norm{{bias, bias}, {bias, bias}};
  const lsattn::DeviceView<float, 3> out(reinterpret_cast<float*>(0x100000), Shape<3>{1, 6, 8});
  CHECK_THROWS_WITH(attention(in, norm, out, cudaStream_t{}, lsattn::DeviceWorkspace{nullptr, 8}), Contains("workspace"));
  const lsattn::DeviceView<const float, 3> short_rows(fake, Shape<3>{1, 9, 8});
  const Causal::Inputs bad{query, short_rows, short_rows, compressed, compressed, 4, bias, bias, window_positions, chunk_positions};
  CHECK_THAT(attention.validate(bad, norm, out), Contains("window_key") && Contains("(1, 9, 8)"));
}

TEMPLATE_TEST_CASE("CUDA causal attention matches the CPU backend", "[cuda][gpu][causal]", float, __half, __nv_bfloat16) {
  if (!gpu_present()) return;
  std::mt19937_64 rng(9);
  const double tolerance = tolerance_for<TestType>(2e-2, 6e-2);
  for (int trial = 0; trial < 12; ++trial) {
    const index_t heads = 1 + trial % 2, head_dim = 8, width = heads * head_dim, window = 1 + trial % 6;
    const index_t chunk = 1 + trial % 4, rank = 1 + trial % 2, cache = chunk * (trial % 3), length = 1 + (trial * 13) % 40;
    const index_t window_rows = std::min(cache, window) + length, chunks = (cache + length) / chunk;
    const lsattn::AttentionConfig config{heads, head_dim, window, rank, 0, chunk};
    auto make = [&](const Shape<3>& shape) { return random_tensor<float>(shape, rng); };
    const auto q = make(Shape<3>{1, length, width}), wk = make(Shape<3>{1, window_rows, width}),
               wv = make(wk.shape()), ck = make(Shape<3>{1, chunks * rank, width}), cv = make(ck.shape());
    const auto wpos = make(Shape<3>{1, window, width}), cpos = make(Shape<3>{1, chunks * rank, width});
    const auto biases = make(Shape<3>{1, 2, width});
    const auto qr = rounded_as<TestType>(q), wkr = rounded_as<TestType>(wk), wvr = rounded_as<TestType>(wv), ckr = rounded_as<TestType>(ck), cvr = rounded_as<TestType>(cv),
               wpr = rounded_as<TestType>(wpos), cpr = rounded_as<TestType>(cpos), br = rounded_as<TestType>(biases);
    Tensor<float, 1> ones(Shape<1>{width}, 1.0f), eighth(Shape<1>{width}, 0.125f);
    Tensor<float, 3> want(Shape<3>{1, length, width});
    const lsattn::CausalAttentionInputs<float> cpu_in{
        qr.view(), wkr.view(), wvr.view(), ckr.view(), cvr.view(), cache,
        lsattn::HostView<const float, 1>(br.data(), Shape<1>{width}),
        lsattn::HostView<const float, 1>(br.data() + width, Shape<1>{width}),
        lsattn::HostView<const float, 2>(wpr.data(), Shape<2>{window, width}),
        lsattn::HostView<const float, 2>(cpr.data(), Shape<2>{chunks * rank, width})};
    lsattn_test::cpu_causal(config, cpu_in, {{ones.view(), eighth.view()}, {ones.view(), eighth.view()}}, want.view());

    const auto dq = lsattn::to_device<TestType>(q), dwk = lsattn::to_device<TestType>(wk), dwv = lsattn::to_device<TestType>(wv), dck = lsattn::to_device<TestType>(ck), dcv = lsattn::to_device<TestType>(cv), dwp = lsattn::to_device<TestType>(wpos),
               dcp = lsattn::to_device<TestType>(cpos), db = lsattn::to_device<TestType>(biases);
    const auto dones = lsattn::to_device<TestType>(ones), deighth = lsattn::to_device<TestType>(eighth);
    using Attention = lsattn::LongShortAttention<lsattn::cuda, TestType, lsattn::CausalWindow, lsattn::ChunkedProjection>;
    const Attention gpu(config);
    const typename Attention::Inputs in{
        dq.view(), dwk.view(), dwv.view(), dck.view(), dcv.view(), cache,
        lsattn::DeviceView<const TestType, 1>(db.view().data(), Shape<1>{width}),
        lsattn::DeviceView<const TestType, 1>(db.view().data() + width, Shape<1>{width}),
        lsattn::DeviceView<const TestType, 2>(dwp.view().data(), Shape<2>{window, width}),
        lsattn::DeviceView<const TestType, 2>(dcp.view().data(), Shape<2>{chunks * rank, width})};
    lsattn::DeviceTensor<TestType, 3> context(want.shape());
    lsattn::DeviceTensor<unsigned char, 1> workspace(Shape<1>{static_cast<index_t>(gpu.workspace_bytes(in))});
    gpu(in, {{dones.view(), deighth.view()}, {dones.view(), deighth.view()}}, context.view(), cudaStream_t{},
        workspace_of(workspace));
    INFO("trial " << trial << ": w=" << window << " l=" << chunk << " r=" << rank << " M=" << cache << " L=" << length);
    CHECK(relative_error(context, want) < tolerance);
  }
}

TEST_CASE("CUDA 2D workspace and argument checks", "[cuda][vision]") {
  using Catch::Matchers::Contains;
  using Vision = lsattn::LongShortAttention<lsattn::cuda, float, lsattn::Window2D, lsattn::SequenceProjection>;
  const Vision attention({2, 4, 2, 3});  // w = 2, r = 3
  float* fake = reinterpret_cast<float*>(0x1000);
  const lsattn::DeviceView<const float, 3> tokens(fake, Shape<3>{1, 1 + 12, 8}), logits(fake, Shape<3>{1, 12, 6});
  const Vision::Inputs in{tokens, tokens, tokens, logits, 1, 3, 4};
  CHECK(attention.workspace_bytes(in) == sizeof(float) * (2 * 13 * 8 + 2 * 6 + 2 * 3 * 8));
  const lsattn::DeviceView<const float, 1> ln(fake, Shape<1>{8});
  const lsattn::DeviceView<float, 3> out(reinterpret_cast<float*>(0x100000), Shape<3>{1, 13, 8});
  const Vision::Inputs bad{tokens, tokens, tokens, logits, 1, 4, 4};
  CHECK_THAT(attention.validate(bad, {{ln, ln}, {ln, ln}}, out), Contains("query") && Contains("(1, 17, 8)"));
}

TEMPLATE_TEST_CASE("CUDA 2D attention matches the CPU backend", "[cuda][gpu][vision]", float, __half, __nv_bfloat16) {
  if (!gpu_present()) return;
  std::mt19937_64 rng(13);
  const double tolerance = tolerance_for<TestType>(2e-2, 6e-2);
  for (int trial = 0; trial < 12; ++trial) {
    const index_t heads = 1 + trial % 2, head_dim = 8, width = heads * head_dim, w = 1 + trial % 4, rank = trial % 3;
    const index_t globals = trial % 3, rows = 2 + trial % 5, cols = 3 + trial % 4, tokens = globals + rows * cols;
    const bool with_bias = w >= 2 && trial % 2 == 0;
    const lsattn::AttentionConfig config{heads, head_dim, w, rank};
    const lsattn::Window2D window = lsattn::Window2D::from(config);
    auto make = [&](const Shape<3>& shape) { return random_tensor<float>(shape, rng); };
    const auto q = make(Shape<3>{1, tokens, width}), k = make(q.shape()), v = make(q.shape());
    const auto logits = make(Shape<3>{1, rows * cols, heads * rank});
    const auto bias = make(Shape<3>{heads, w * w, window.tile() * window.tile()});
    const auto qr = rounded_as<TestType>(q), kr = rounded_as<TestType>(k), vr = rounded_as<TestType>(v), lr = rounded_as<TestType>(logits), br = rounded_as<TestType>(bias);
    Tensor<float, 1> ones(Shape<1>{width}, 1.0f), eighth(Shape<1>{width}, 0.125f);
    Tensor<float, 3> want(q.shape());
    const lsattn::VisionAttentionInputs<float> cpu_in{qr.view(), kr.view(), vr.view(),
                                                      rank ? lr.view() : lsattn::HostView<const float, 3>{},
                                                      globals, rows, cols,
                                                      with_bias ? br.view() : lsattn::HostView<const float, 3>{}};
    lsattn_test::cpu_vision(config, cpu_in, {{ones.view(), eighth.view()}, {ones.view(), eighth.view()}}, want.view());

    const auto dq = lsattn::to_device<TestType>(q), dk = lsattn::to_device<TestType>(k), dv = lsattn::to_device<TestType>(v), dl = lsattn::to_device<TestType>(logits), db = lsattn::to_device<TestType>(bias);
    const auto dones = lsattn::to_device<TestType>(ones), deighth = lsattn::to_device<TestType>(eighth);
    using Attention = lsattn::LongShortAttention<lsattn::cuda, TestType, lsattn::Window2D, lsattn::SequenceProjection>;
    const Attention gpu(config);
    const typename Attention::Inputs in{dq.view(), dk.view(), dv.view(),
                                        rank ? dl.view() : lsattn::DeviceView<const TestType, 3>{},
                                        globals, rows, cols,
                                        with_bias ? db.view() : lsattn::DeviceView<const TestType, 3>{}};
    lsattn::DeviceTensor<TestType, 3> context(want.shape());
    lsattn::DeviceTensor<unsigned char, 1> workspace(Shape<1>{static_cast<index_t>(gpu.workspace_bytes(in))});
    gpu(in, {{dones.view(), deighth.view()}, {dones.view(), deighth.view()}}, context.view(), cudaStream_t{},
        workspace_of(workspace));
    INFO("trial " << trial << ": w=" << w << " r=" << rank << " nglo=" << globals << " grid " << rows << "x" << cols);
    CHECK(relative_error(context, want) < tolerance);
  }
}

TEMPLATE_TEST_CASE("CUDA linear (cuBLAS) matches a host product", "[cuda][gpu][linear]", float, __half, __nv_bfloat16) {
  if (!gpu_present()) return;
  std::mt19937_64 rng(21);
  const index_t rows = 37, in_features = 24, out_features = 20;
  const auto x = random_tensor<float>(Shape<3>{1, rows, in_features}, rng);
  const auto w = random_tensor<float>(Shape<3>{1, out_features, in_features}, rng);
  const auto b = random_tensor<float>(Shape<3>{1, 1, out_features}, rng);
  const auto dx = lsattn::to_device<TestType>(x), dw = lsattn::to_device<TestType>(w), db = lsattn::to_device<TestType>(b);
  const lsattn::CublasHandle handle;
  // Whole, and in slices of 5 rows (as inputs of more than INT_MAX rows run: cuBLAS sizes are int).
  for (const index_t slice : {lsattn::cuda_detail::max_gemm_rows(), index_t{5}}) {
    const ScopedValue<index_t> slicing(lsattn::cuda_detail::max_gemm_rows(), slice);
    lsattn::DeviceTensor<TestType, 3> dy(Shape<3>{1, rows, out_features});
    lsattn::cuda_detail::linear(handle, cudaStream_t{}, dx.view().data(), rows, in_features, dw.view().data(),
                                db.view().data(), out_features, dy.view().data());
    lsattn::cuda_detail::check(cudaDeviceSynchronize(), "synchronize");
    Tensor<TestType, 3> y(dy.shape());
    dy.copy_to(y.view());
    const double tolerance = std::is_same_v<TestType, float> ? 1e-4 : std::is_same_v<TestType, __half> ? 2e-2 : 6e-2;
    INFO("rows per cuBLAS call: " << slice);
    for (index_t r = 0; r < rows; ++r)
      for (index_t o = 0; o < out_features; ++o) {
        double want = static_cast<float>(static_cast<TestType>(b(0, 0, o)));
        for (index_t i = 0; i < in_features; ++i)
          want += static_cast<double>(static_cast<float>(static_cast<TestType>(x(0, r, i)))) *
                  static_cast<float>(static_cast<TestType>(w(0, o, i)));
        CHECK(static_cast<float>(y(0, r, o)) == Approx(want).margin(tolerance * 5));
      }
  }
}

TEST_CASE("CUDA linear: feature counts beyond int are refused by name", "[cuda][linear]") {
  using Catch::Matchers::Contains;
  const lsattn::index_t too_many = lsattn::index_t{1} << 31;
  CHECK_NOTHROW(lsattn::cuda_detail::require_cublas_features(512, 2048));
  CHECK_THROWS_WITH(lsattn::cuda_detail::require_cublas_features(too_many, 8),
                    Contains("in_features = 2147483648"));
}

TEST_CASE("CUDA LRA layer: workspace and argument checks", "[cuda][layer]") {
  using Catch::Matchers::Contains;
  namespace lra = lsattn::models::lra;
  const lra::Config config{2, 4, 8, 4, 2, false, 0};
  if (!gpu_present()) {
    // Uploading weights needs a device; without one the layer reports a clear CUDA error.
    CHECK_THROWS_WITH((lra::AttentionLS<lsattn::cuda, float>(config, lra::Weights<float>::random(config, 1))),
                      Contains("CUDA"));
    return;
  }
  const lra::AttentionLS<lsattn::cuda, float> layer(config, lra::Weights<float>::random(config, 1));
  CHECK(layer.workspace_bytes(2, 100, true) > layer.workspace_bytes(2, 100, false));
  CHECK(layer.workspace_bytes(2, 200, false) > layer.workspace_bytes(2, 100, false));
}

TEST_CASE("CUDA LRA layer: cls pooling", "[cuda][layer][cls]") {
  using Catch::Matchers::Contains;
  namespace lra = lsattn::models::lra;
  const lra::Config config{2, 4, 8, 4, 2, true, 0};  // pooling_mode 'cls'
  if (!gpu_present()) {
    // Supported now: without a device the only error is the weights' upload.
    CHECK_THROWS_WITH((lra::AttentionLS<lsattn::cuda, float>(config, lra::Weights<float>::random(config, 1))),
                      Contains("CUDA") && !Contains("pooling_mode"));
    return;
  }
  const lra::AttentionLS<lsattn::cuda, float> layer(config, lra::Weights<float>::random(config, 1));
  lra::Config plain_config = config;
  plain_config.cls_pooling = false;
  const lra::AttentionLS<lsattn::cuda, float> plain(plain_config, lra::Weights<float>::random(plain_config, 1));
  // Sized from forward's arguments (x's length, cls_embed given or not): L + 1 tokens with cls
  // pooling need what L tokens with a cls_embed need, plus the split-off tokens, cls row and mask.
  CHECK(layer.workspace_bytes(2, 101, false) ==
        plain.workspace_bytes(2, 100, true) + sizeof(float) * (2 * 100 * 8 + 2 * 8 + 2 * 100));

  // Checked on the host before any launch (fake device pointers: nothing may run).
  const float* fake = reinterpret_cast<const float*>(0x1000);
  const lsattn::DeviceView<const float, 3> x(fake, Shape<3>{2, 7, 8}), cls(fake, Shape<3>{2, 1, 8});
  const lsattn::DeviceView<const float, 2> mask(fake, Shape<2>{2, 7}), short_mask(fake, Shape<2>{2, 6});
  const lsattn::DeviceView<float, 3> y(reinterpret_cast<float*>(0x100000), Shape<3>{2, 7, 8});
  const lsattn::CublasHandle handle;
  const lsattn::DeviceWorkspace workspace{reinterpret_cast<void*>(0x200000), layer.workspace_bytes(2, 7, false)};
  CHECK_THROWS_WITH(layer.forward(x, mask, cls, y, handle, cudaStream_t{}, workspace), Contains("cls_embed: must not be given"));
  CHECK_THROWS_WITH(layer.forward(x, short_mask, {}, y, handle, cudaStream_t{}, workspace),
                    Contains("mask: expected shape (2, 7)"));
  const lsattn::DeviceView<float, 3> long_y(reinterpret_cast<float*>(0x100000), Shape<3>{2, 8, 8});
  CHECK_THROWS_WITH(layer.forward(x, mask, {}, long_y, handle, cudaStream_t{}, workspace), Contains("y: expected shape (2, 7, 8)"));
  const lsattn::DeviceView<const float, 3> only_cls(fake, Shape<3>{2, 1, 8});
  CHECK_THROWS_WITH(layer.forward(only_cls, {}, {}, lsattn::DeviceView<float, 3>(reinterpret_cast<float*>(0x100000), Shape<3>{2, 1, 8}),
                                  handle, cudaStream_t{}, workspace),
                    Contains("the cls token and at least one more"));
  CHECK_THROWS_WITH(layer.forward(x, mask, {}, y, handle, cudaStream_t{}, {workspace.data, workspace.bytes - 1}),
                    Contains("workspace") && Contains("workspace_bytes"));
  lsattn::cuda_detail::check(cudaDeviceSynchronize(), "synchronize");  // nothing was launched
}

TEMPLATE_TEST_CASE("CUDA LRA layer matches the CPU layer", "[cuda][gpu][layer]", float, __half, __nv_bfloat16) {
  namespace lra = lsattn::models::lra;
  if (!gpu_present()) return;
  std::mt19937_64 rng(17);
  const double tolerance = tolerance_for<TestType>(3e-2, 8e-2);
  for (int trial = 0; trial < 6; ++trial) {
    const lra::Config config{2, 16, 32, 1 + trial % 5, trial % 3, false, 0};
    const bool with_cls = trial % 2 == 0;
    const index_t batch = 2, length = 5 + trial * 17;
    const auto weights = lra::Weights<float>::random(config, 30 + trial);
    const auto x = rounded_as<TestType>(random_tensor<float>(Shape<3>{batch, length, 32}, rng));
    const auto cls = rounded_as<TestType>(random_tensor<float>(Shape<3>{batch, 1, 32}, rng));
    Tensor<float, 2> mask(Shape<2>{batch, length}, 1.0f);
    mask(1, length - 1) = 0;
    const auto want = lsattn_test::cpu_lra_layer(config, weights, x, mask, with_cls ? cls : Tensor<float, 3>{});

    const auto dx = lsattn::to_device<TestType>(x), dcls = lsattn::to_device<TestType>(cls);
    const auto dmask = lsattn::to_device<TestType>(mask);
    const lra::AttentionLS<lsattn::cuda, TestType> layer(config, weights);
    lsattn::DeviceTensor<TestType, 3> y(want.shape());
    lsattn::DeviceTensor<unsigned char, 1> workspace(
        Shape<1>{static_cast<index_t>(layer.workspace_bytes(batch, length, with_cls))});
    const lsattn::CublasHandle handle;
    layer.forward(dx.view(), dmask.view(), with_cls ? dcls.view() : lsattn::DeviceView<const TestType, 3>{}, y.view(),
                  handle, cudaStream_t{},
                  workspace_of(workspace));
    INFO("trial " << trial << ": w=" << config.window_size << " r=" << config.num_landmarks << " cls=" << with_cls);
    CHECK(relative_error(y, want) < tolerance);
  }
}

TEMPLATE_TEST_CASE("CUDA LRA layer with cls pooling matches the CPU layer", "[cuda][gpu][layer][cls]", float, __half,
                   __nv_bfloat16) {
  namespace lra = lsattn::models::lra;
  if (!gpu_present()) return;
  std::mt19937_64 rng(29);
  const double tolerance = tolerance_for<TestType>(3e-2, 8e-2);
  const lsattn::CublasHandle handle;
  for (int trial = 0; trial < 8; ++trial) {
    // window_size 0 with rank 0 is the cls-only (self) case the reference allows with a cls token.
    const index_t window = trial == 7 ? 0 : 1 + trial % 5, rank = trial == 7 ? 0 : trial % 3;
    const lra::Config config{2, 16, 32, window, rank, true, 0};
    const bool with_mask = trial % 2 == 1;
    const index_t batch = 2, length = 2 + trial * 13;  // x's length: the cls token and length − 1 tokens
    const auto weights = lra::Weights<float>::random(config, 50 + trial);
    const auto x = rounded_as<TestType>(random_tensor<float>(Shape<3>{batch, length, 32}, rng));
    Tensor<float, 2> mask(Shape<2>{batch, length}, 1.0f);
    if (with_mask) {
      for (index_t t = 2; t < length; ++t) mask(0, t) = std::bernoulli_distribution(0.3)(rng) ? 0.0f : 1.0f;
      mask(1, 0) = 0;  // the cls position's mask entry is dropped with it (spec §1.3 step 0)
      if (length > 2) mask(1, length - 1) = 0;
    }
    const auto want = lsattn_test::cpu_lra_layer(config, weights, x, with_mask ? mask : Tensor<float, 2>{}, Tensor<float, 3>{});
    REQUIRE(want.shape() == x.shape());

    const auto dx = lsattn::to_device<TestType>(x);
    const auto dmask = lsattn::to_device<TestType>(mask);
    const lra::AttentionLS<lsattn::cuda, TestType> layer(config, weights);
    lsattn::DeviceTensor<TestType, 3> y(want.shape());
    const std::size_t bytes = layer.workspace_bytes(batch, length, false);
    lsattn::DeviceTensor<unsigned char, 1> workspace(Shape<1>{static_cast<index_t>(bytes)});
    // NaN bit patterns: a read of unwritten scratch or an unwritten output shows up.
    lsattn::cuda_detail::check(cudaMemset(workspace.view().data(), 0xff, bytes), "cudaMemset");
    lsattn::cuda_detail::check(cudaMemset(y.view().data(), 0xff, sizeof(TestType) * y.size()), "cudaMemset");
    layer.forward(dx.view(), with_mask ? dmask.view() : lsattn::DeviceView<const TestType, 2>{},
                  lsattn::DeviceView<const TestType, 3>{}, y.view(), handle, cudaStream_t{}, workspace_of(workspace));
    INFO("trial " << trial << ": w=" << window << " r=" << rank << " x length " << length << " mask=" << with_mask);
    CHECK(relative_error(y, want) < tolerance);
  }
}
