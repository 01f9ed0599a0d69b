// lsattn CUDA demo: the bidirectional Transformer-LS layer (LRA configuration, random weights)
// on the GPU in fp32 and bf16 over growing lengths: time per call, tokens/s, device memory,
// and how far bf16 lands from fp32. Without a CUDA device it says so and exits 0.
#include <CLI/CLI.hpp>

#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "lsattn/models/lra_cuda.cuh"

namespace {

using lsattn::index_t;
using lsattn::Shape;
namespace lra = lsattn::models::lra;

struct Run {
  double milliseconds = 0;
  double device_mib = 0;
  std::vector<float> y;
};

// One layer call on `x`, timed with CUDA events after a warm-up call.
template <class T>
Run run_layer(const lra::Config& config, const lra::Weights<float>& weights, const std::vector<float>& x, index_t length) {
  using lsattn::cuda_detail::check;
  const lsattn::CublasHandle handle;
  const lra::AttentionLS<lsattn::cuda, T> layer(config, weights);
  const Shape<3> shape{1, length, config.transformer_dim};
  const auto input = lsattn::to_device<T>(lsattn::HostView<const float, 3>(x.data(), shape));
  lsattn::DeviceTensor<T, 3> y(shape);
  const std::size_t bytes = layer.workspace_bytes(1, length, false);
  lsattn::DeviceTensor<unsigned char, 1> workspace(Shape<1>{static_cast<index_t>(bytes)});
  const lsattn::DeviceWorkspace scratch{workspace.view().data(), bytes};
  auto call = [&] { layer.forward(input.view(), {}, {}, y.view(), handle, cudaStream_t{}, scratch); };
  call();
  cudaEvent_t start, stop;
  check(cudaEventCreate(&start), "cudaEventCreate");
  check(cudaEventCreate(&stop), "cudaEventCreate");
  check(cudaEventRecord(start, cudaStream_t{}), "cudaEventRecord");
  call();
  check(cudaEventRecord(stop, cudaStream_t{}), "cudaEventRecord");
  check(cudaEventSynchronize(stop), "cudaEventSynchronize");
  float milliseconds = 0;
  check(cudaEventElapsedTime(&milliseconds, start, stop), "cudaEventElapsedTime");
  (void)cudaEventDestroy(start);
  (void)cudaEventDestroy(stop);
  const double mib = static_cast<double>(bytes + 2 * input.size() * sizeof(T)) / (1 << 20);
  return {milliseconds, mib, lsattn::to_host<float>(y).values()};
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"lsattn CUDA demo: the LRA Transformer-LS layer on the GPU, fp32 and bf16"};
  index_t max_length = 65536;
  app.add_option("--max-length", max_length, "longest sequence (powers of two from 1024)")->check(CLI::Range(1024, 1 << 20));
  CLI11_PARSE(app, argc, argv);
  if (!lsattn::cuda_detail::device_available()) {
    std::printf("lsattn CUDA demo: no CUDA device here; nothing to run (the CPU demo is lsattn_demo)\n");
    return lsattn::cuda_detail::gpu_required() ? 1 : 0;  // LSATTN_REQUIRE_GPU=1: a failure
  }
  try {
    cudaDeviceProp properties{};
    lsattn::cuda_detail::check(cudaGetDeviceProperties(&properties, 0), "cudaGetDeviceProperties");
    const lra::Config config{8, 64, 512, 128, 64, false, 0};  // nh, dh, D, w, r
    const auto weights = lra::Weights<float>::random(config, 1);
    std::printf("device: %s | layer: D=%lld, %lld heads, w=%lld, r=%lld, batch 1\n", properties.name,
                static_cast<long long>(config.transformer_dim), static_cast<long long>(config.num_head),
                static_cast<long long>(config.window_size), static_cast<long long>(config.num_landmarks));
    std::printf("%8s %12s %12s %14s %12s %22s\n", "L", "fp32 ms", "bf16 ms", "bf16 tok/s", "bf16 MiB", "bf16 vs fp32 (rel.)");
    std::mt19937_64 rng(2);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    for (index_t length = 1024; length <= max_length; length *= 2) {
      std::vector<float> x(static_cast<std::size_t>(length * config.transformer_dim));
      for (float& v : x) v = normal(rng);
      const Run full = run_layer<float>(config, weights, x, length);
      const Run half = run_layer<__nv_bfloat16>(config, weights, x, length);
      double worst = 0, scale = 1e-6;
      for (std::size_t i = 0; i < full.y.size(); ++i) {
        scale = std::max(scale, static_cast<double>(std::abs(full.y[i])));
        worst = std::max(worst, static_cast<double>(std::abs(full.y[i] - half.y[i])));
      }
      std::printf("%8lld %12.3f %12.3f %14.3g %12.1f %22.2e\n", static_cast<long long>(length), full.milliseconds,
                  half.milliseconds, static_cast<double>(length) / (half.milliseconds / 1e3), half.device_mib,
                  worst / scale);
      if (!(worst / scale < 0.1)) {  // bf16 rounding stays near 1e-2; more (or NaN) is a defect
        std::fprintf(stderr, "bf16 result differs from fp32 by %.2e (relative): something is wrong\n", worst / scale);
        return 1;
      }
    }
  } catch (const lsattn::error& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
  return 0;
}
