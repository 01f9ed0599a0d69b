// GPU benchmarks of the CUDA backend (issue 5): the attention core and the LRA layer in bf16,
// D = 512, 8 heads, w = 128, r = 64, batch 1, L = 1K … 64K, beside the device's own dense bf16
// GEMM throughput (cuBLAS) as the yardstick. Times come from CUDA events around each call.
//
// FLOPs counted (multiply-add = 2 FLOPs; softmax, LayerNorm and masking not counted):
//   core    2·2·L·D·(r + w + 2·ext)   scores and P·V over the r compressed keys and a full block's
//                                      window (the keys a query meets), plus 2·2·L·r·D for
//                                      K̄ = Pᵀ K and V̄ = Pᵀ V
//   layer   the core plus 2·L·D·(4·D + nh·r) for W_q, W_k, W_v, W_o and the dynamic projection
//   GEMM    2·M·N·K
//   LS heads the four D × D projections (2·L·D² each) plus 4·dh per visible (query, key) pair
//           and head
//   causal, 2D  as the CPU benchmarks count them (layer_flops.hpp)
// device_MiB: device memory the benchmark allocated (inputs, outputs, workspace) plus whatever
// cuBLAS took, from cudaMemGetInfo before and after.
#include <benchmark/benchmark.h>

#include <cstdio>
#include <random>
#include <vector>

#include "layer_flops.hpp"
#include "lsattn/backend/cuda/linear.cuh"
#include "lsattn/backend/cuda/tiled_attention.cuh"
#include "lsattn/cuda.cuh"
#include "lsattn/models/causal_cuda.cuh"
#include "lsattn/models/ls_heads_cuda.cuh"
#include "lsattn/models/vision_cuda.cuh"
#include "lsattn/models/lra_cuda.cuh"

namespace {

using lsattn::index_t;
using lsattn::Shape;
using Bf16 = __nv_bfloat16;
namespace lra = lsattn::models::lra;

const lra::Config kConfig{8, 64, 512, 128, 64, false, 0};

template <std::size_t Rank>
lsattn::DeviceTensor<Bf16, Rank> random_device(const Shape<Rank>& shape, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  lsattn::Tensor<float, Rank> host(shape);
  for (auto& v : host.values()) v = normal(rng);
  return lsattn::to_device<Bf16>(host);
}

std::size_t device_used_bytes() {
  std::size_t free = 0, total = 0;
  lsattn::cuda_detail::check(cudaMemGetInfo(&free, &total), "cudaMemGetInfo");
  return total - free;
}

// Times `call` with CUDA events on `stream`, one synchronised call per iteration.
template <class Call>
void time_calls(benchmark::State& state, cudaStream_t stream, Call&& call) {
  using lsattn::cuda_detail::check;
  cudaEvent_t start, stop;
  check(cudaEventCreate(&start), "cudaEventCreate");
  check(cudaEventCreate(&stop), "cudaEventCreate");
  call();  // warm-up: first-launch costs, cuBLAS heuristics
  check(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
  for (auto _ : state) {
    check(cudaEventRecord(start, stream), "cudaEventRecord");
    call();
    check(cudaEventRecord(stop, stream), "cudaEventRecord");
    check(cudaEventSynchronize(stop), "cudaEventSynchronize");
    float milliseconds = 0;
    check(cudaEventElapsedTime(&milliseconds, start, stop), "cudaEventElapsedTime");
    state.SetIterationTime(milliseconds / 1e3);
  }
  (void)cudaEventDestroy(start);
  (void)cudaEventDestroy(stop);
}

void report(benchmark::State& state, double flops_per_call, index_t tokens, std::size_t used_before) {
  state.counters["FLOP/s"] = benchmark::Counter(flops_per_call, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["tokens/s"] = benchmark::Counter(static_cast<double>(tokens), benchmark::Counter::kIsIterationInvariantRate);
  state.counters["device_MiB"] = static_cast<double>(device_used_bytes() - used_before) / (1 << 20);
}

double core_flops(index_t length) {
  const double d = kConfig.transformer_dim, r = kConfig.num_landmarks;
  const double keys = r + lsattn::BidirectionalWindow::segments(kConfig.window_size).span();
  return static_cast<double>(length) * (4 * d * keys + 4 * r * d);
}

// The attention core: LongShortAttention<cuda, bf16> on precomputed Q, K, V and logits (local
// LN, dynamic projection, global LN, the fused attention kernel).
void BM_CudaLsCore(benchmark::State& state) {
  const index_t length = state.range(0), width = kConfig.width(), logits = kConfig.num_head * kConfig.num_landmarks;
  const std::size_t before = device_used_bytes();
  const auto q = random_device(Shape<3>{1, length, width}, 1), k = random_device(q.shape(), 2), v = random_device(q.shape(), 3);
  const auto p = random_device(Shape<3>{1, length, logits}, 4);
  lsattn::DeviceTensor<Bf16, 1> ln_weight(Shape<1>{width}), ln_bias(Shape<1>{width});
  {
    std::vector<Bf16> one(static_cast<std::size_t>(width), Bf16(1.0f)), zero(static_cast<std::size_t>(width), Bf16(0.0f));
    ln_weight.copy_from({one.data(), Shape<1>{width}});
    ln_bias.copy_from({zero.data(), Shape<1>{width}});
  }
  using Attention = lsattn::LongShortAttention<lsattn::cuda, Bf16>;
  const Attention attention(kConfig.attention());
  const Attention::Inputs inputs{q.view(), k.view(), v.view(), p.view()};
  const Attention::CombinerParams norm{{ln_weight.view(), ln_bias.view()}, {ln_weight.view(), ln_bias.view()}};
  lsattn::DeviceTensor<Bf16, 3> context(q.shape());
  lsattn::DeviceTensor<unsigned char, 1> workspace(Shape<1>{static_cast<index_t>(attention.workspace_bytes(inputs))});
  const lsattn::DeviceWorkspace scratch{workspace.view().data(), static_cast<std::size_t>(workspace.size())};
  time_calls(state, cudaStream_t{}, [&] { attention(inputs, norm, context.view(), cudaStream_t{}, scratch); });
  report(state, core_flops(length), length, before);
}

// The same core with the WMMA attention kernel that the mma.sync kernel replaced (the
// reference the tests compare it with): the ratio of the two is the new kernel's gain.
void BM_CudaLsCoreWmmaReference(benchmark::State& state) {
  bool& mma = lsattn::cuda_detail::mma_kernel_enabled();
  mma = false;
  BM_CudaLsCore(state);
  mma = true;
}

// The whole LRA layer on CUDA: cuBLAS projections, the core, the output projection.
void BM_CudaLsLayer(benchmark::State& state) {
  const index_t length = state.range(0), d = kConfig.transformer_dim;
  const std::size_t before = device_used_bytes();
  const lsattn::CublasHandle handle;
  const lra::AttentionLS<lsattn::cuda, Bf16> layer(kConfig, lra::Weights<float>::random(kConfig, 1));
  const auto x = random_device(Shape<3>{1, length, d}, 5);
  lsattn::DeviceTensor<Bf16, 3> y(x.shape());
  lsattn::DeviceTensor<unsigned char, 1> workspace(Shape<1>{static_cast<index_t>(layer.workspace_bytes(1, length, false))});
  const lsattn::DeviceWorkspace scratch{workspace.view().data(), static_cast<std::size_t>(workspace.size())};
  time_calls(state, cudaStream_t{}, [&] { layer.forward(x.view(), {}, {}, y.view(), handle, cudaStream_t{}, scratch); });
  const double dd = static_cast<double>(d), nh = kConfig.num_head, r = kConfig.num_landmarks;
  report(state, core_flops(length) + static_cast<double>(length) * 2 * dd * (4 * dd + nh * r), length, before);
}

// The yardstick: a dense bf16 GEMM (fp32 accumulation) of side n through cuBLAS.
void BM_CudaGemmBf16(benchmark::State& state) {
  const index_t n = state.range(0);
  const std::size_t before = device_used_bytes();
  const lsattn::CublasHandle handle;
  const auto a = random_device(Shape<2>{n, n}, 6), b = random_device(Shape<2>{n, n}, 7);
  lsattn::DeviceTensor<Bf16, 2> c(Shape<2>{n, n});
  time_calls(state, cudaStream_t{}, [&] {
    lsattn::cuda_detail::linear(handle, cudaStream_t{}, a.view().data(), n, n, b.view().data(),
                                static_cast<const Bf16*>(nullptr), n, c.view().data());
  });
  report(state, 2.0 * static_cast<double>(n) * static_cast<double>(n) * static_cast<double>(n), n, before);
}

// The LS-heads layer (bf16, batch 1, causal): range(1) selects the shape of the CPU peer rows —
// 0: D = 512, 8 heads of 64, 4 local with w = 256 + 4 global; 1: the LS-attention author's GPT
// setting, D = 768, 12 heads of 64, 11 local with w = 100 + 1 global. FLOPs: the four D × D
// projections plus 4·dh per visible (query, key) pair and head (QKᵀ and PV).
void BM_CudaLsHeadsLayer(benchmark::State& state) {
  namespace ls = lsattn::models::ls_heads;
  const index_t length = state.range(0);
  const bool gpt_shape = state.range(1) == 1;
  ls::Config config;
  config.dim = gpt_shape ? 768 : 512;
  config.num_heads = gpt_shape ? 12 : 8;
  config.window = gpt_shape ? 100 : 256;
  config.causal = true;
  for (index_t h = 0; h < (gpt_shape ? 11 : 4); ++h) config.local_heads.push_back(h);
  const std::size_t before = device_used_bytes();
  const lsattn::CublasHandle handle;
  const ls::LsHeadsAttention<lsattn::cuda, Bf16> layer(config, ls::Weights<float>::random(config, 1));
  const auto x = random_device(Shape<3>{1, length, config.dim}, 8);
  lsattn::DeviceTensor<Bf16, 3> y(x.shape());
  lsattn::DeviceTensor<unsigned char, 1> workspace(Shape<1>{static_cast<index_t>(layer.workspace_bytes(1, length))});
  const lsattn::DeviceWorkspace scratch{workspace.view().data(), static_cast<std::size_t>(workspace.size())};
  time_calls(state, cudaStream_t{}, [&] { layer.forward(x.view(), {}, y.view(), handle, cudaStream_t{}, scratch); });
  double pairs = 0;  // visible (query, key) pairs over all heads
  const double l = static_cast<double>(length), w = static_cast<double>(config.window);
  const double locals = static_cast<double>(config.local_heads.size()), globals = config.num_heads - locals;
  pairs += locals * (l * w - w * (w - 1) / 2);  // a causal window of w keys, fewer at the start
  pairs += globals * l * (l + 1) / 2;
  const double d = static_cast<double>(config.dim), dh = d / config.num_heads;
  report(state, 2 * l * d * d * 4 + 4 * dh * pairs, length, before);
}

// The published enwik8 causal layer (D = 512, 8 heads, l = 16, r = 1, w = 512) in bf16 on a
// segment of L tokens after a memory of M = 2048, batch 1: the CPU benchmark's BM_CausalLayer
// on the GPU (the tensor-core causal kernel).
void BM_CudaCausalLayer(benchmark::State& state) {
  namespace causal = lsattn::models::causal;
  const index_t length = state.range(0), cache = 2048, d = 512;
  const causal::Config config{8, d, 16, 1, 512, false, -1, -1, 0};
  const std::size_t before = device_used_bytes();
  const lsattn::CublasHandle handle;
  const causal::ChunkedLSAttention<lsattn::cuda, Bf16> layer(config, causal::Weights<float>::random(config, 1));
  const auto h = random_device(Shape<3>{1, length, d}, 9), memory = random_device(Shape<3>{1, cache, d}, 10);
  lsattn::DeviceTensor<Bf16, 3> y(h.shape());
  lsattn::DeviceTensor<unsigned char, 1> workspace(Shape<1>{static_cast<index_t>(layer.workspace_bytes(1, length, cache))});
  const lsattn::DeviceWorkspace scratch{workspace.view().data(), static_cast<std::size_t>(workspace.size())};
  time_calls(state, cudaStream_t{}, [&] { layer.forward(h.view(), memory.view(), y.view(), handle, cudaStream_t{}, scratch); });
  report(state, lsattn_bench::causal_layer_flops(length, cache), length, before);
}

// The same with the one-block-per-query causal kernel (the reference): the tensor-core kernel's gain.
void BM_CudaCausalLayerPerQueryReference(benchmark::State& state) {
  bool& mma = lsattn::cuda_detail::mma_kernel_enabled();
  mma = false;
  BM_CudaCausalLayer(state);
  mma = true;
}

// The ViL-LS stage-1 attention (C = 96, 3 heads, w = 7, r = 8, one global token, RPE) in bf16
// over an n × n patch grid, batch 1: the CPU benchmark's BM_VisionLayer on the GPU (the
// tensor-core 2D kernel).
void BM_CudaVisionLayer(benchmark::State& state) {
  namespace vision = lsattn::models::vision;
  const index_t n = state.range(0), tokens = 1 + n * n;
  const vision::Config config{96, 3, 7, 8, 1, true, true, 0};
  const std::size_t before = device_used_bytes();
  const lsattn::CublasHandle handle;
  const vision::AttentionLS2D<lsattn::cuda, Bf16> layer(config, vision::Weights<float>::random(config, 1));
  const auto x = random_device(Shape<3>{1, tokens, 96}, 11);
  lsattn::DeviceTensor<Bf16, 3> y(x.shape());
  lsattn::DeviceTensor<unsigned char, 1> workspace(Shape<1>{static_cast<index_t>(layer.workspace_bytes(1, n, n))});
  const lsattn::DeviceWorkspace scratch{workspace.view().data(), static_cast<std::size_t>(workspace.size())};
  time_calls(state, cudaStream_t{}, [&] { layer.forward(x.view(), n, n, y.view(), handle, cudaStream_t{}, scratch); });
  report(state, lsattn_bench::vision_layer_flops(n), tokens, before);
}

// The same with the one-block-per-query 2D kernel (the reference).
void BM_CudaVisionLayerPerQueryReference(benchmark::State& state) {
  bool& mma = lsattn::cuda_detail::mma_kernel_enabled();
  mma = false;
  BM_CudaVisionLayer(state);
  mma = true;
}

void lengths(benchmark::internal::Benchmark* b) {
  for (index_t length = 1024; length <= 65536; length *= 2) b->Arg(length);
  b->UseManualTime()->Unit(benchmark::kMillisecond);
}

BENCHMARK(BM_CudaGemmBf16)->Arg(8192)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_CudaLsCore)->Apply(lengths);
BENCHMARK(BM_CudaLsCoreWmmaReference)->Arg(4096)->Arg(16384)->Arg(65536)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_CudaLsLayer)->Apply(lengths);
BENCHMARK(BM_CudaCausalLayer)->Arg(1024)->Arg(4096)->Arg(16384)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_CudaCausalLayerPerQueryReference)->Arg(1024)->Arg(4096)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_CudaVisionLayer)->Arg(56)->Arg(112)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_CudaVisionLayerPerQueryReference)->Arg(56)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_CudaLsHeadsLayer)->Args({4096, 0})->Args({16384, 0})->Args({8192, 1})->UseManualTime()->Unit(benchmark::kMillisecond);

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (!lsattn::cuda_detail::device_available()) {
    std::fprintf(stderr, "lsattn_bench_cuda: no CUDA device; nothing to measure\n");
    return lsattn::cuda_detail::gpu_required() ? 1 : 0;  // LSATTN_REQUIRE_GPU=1: a failure
  }
  cudaDeviceProp properties{};
  lsattn::cuda_detail::check(cudaGetDeviceProperties(&properties, 0), "cudaGetDeviceProperties");
  benchmark::AddCustomContext("cuda_device", properties.name);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
