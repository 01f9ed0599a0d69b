// `lsattn run`, `gpt` and `lm` with `--device cuda`: the attention layers, the GPT and the
// character LM on the GPU, linked into the command line of builds with CUDA. Inputs are converted to the run's element type (float, __half or
// __nv_bfloat16) and uploaded, the layer runs on one stream with one workspace, and the output
// comes back as float; the weights go through the CUDA layers' own upload (float → T).
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <string>
#include <utility>

#include "cuda_bridge.hpp"
#include "lsattn/models/causal_cuda.cuh"
#include "lsattn/models/causal_lm_cuda.cuh"
#include "lsattn/models/ls_gpt_cuda.cuh"
#include "lsattn/models/ls_heads_cuda.cuh"
#include "lsattn/models/lra_cuda.cuh"
#include "lsattn/models/vision_cuda.cuh"

namespace lsattn::cli {
namespace {

// The device the run uses; a clear error when there is none (no driver, no GPU).
std::string device_name() {
  require(cuda_detail::device_available(), "--device cuda: no CUDA device is visible (no NVIDIA GPU or driver here); ",
          "run on the CPU without --device, or on a machine with a GPU");
  int device = 0;
  cuda_detail::check(cudaGetDevice(&device), "cudaGetDevice");
  cudaDeviceProp properties{};
  cuda_detail::check(cudaGetDeviceProperties(&properties, device), "cudaGetDeviceProperties");
  return properties.name;
}

// An optional input: uploaded when given, and its view (empty when not).
template <class T, std::size_t Rank>
struct OptionalDevice {
  DeviceTensor<T, Rank> tensor;
  bool given = false;
  explicit OptionalDevice(const Tensor<float, Rank>* host) : given(host != nullptr) {
    if (given) tensor = to_device<T>(*host);
  }
  DeviceView<const T, Rank> view() const { return given ? DeviceView<const T, Rank>(tensor.view()) : DeviceView<const T, Rank>{}; }
};

struct Workspace {
  DeviceTensor<unsigned char, 1> memory;
  explicit Workspace(std::size_t bytes) : memory(Shape<1>{static_cast<index_t>(bytes)}) {}
  DeviceWorkspace get() { return {memory.view().data(), static_cast<std::size_t>(memory.size())}; }
};

template <class T>
CudaLayerResult lra(const models::lra::Config& config, models::lra::Weights<float> weights, const Tensor<float, 3>& x,
                    const Tensor<float, 2>* mask, const Tensor<float, 3>* cls_embed) {
  CudaLayerResult result{{}, {}, device_name()};
  const models::lra::AttentionLS<cuda, T> layer(config, std::move(weights));
  const auto dx = to_device<T>(x);
  const OptionalDevice<T, 2> dmask(mask);
  const OptionalDevice<T, 3> dcls(cls_embed);
  const bool has_cls = config.cls_pooling || cls_embed != nullptr;
  const index_t rows = x.extent(1) - (config.cls_pooling ? 1 : 0) + (has_cls ? 1 : 0);
  DeviceTensor<T, 3> y(Shape<3>{x.extent(0), rows, config.transformer_dim});
  Workspace workspace(layer.workspace_bytes(x.extent(0), x.extent(1), cls_embed != nullptr));
  const CublasHandle handle;
  layer.forward(dx.view(), dmask.view(), dcls.view(), y.view(), handle, cudaStream_t{}, workspace.get());
  result.y = to_host<float>(y);
  return result;
}

template <class T>
CudaLayerResult causal(const models::causal::Config& config, models::causal::Weights<float> weights,
                       const Tensor<float, 3>& h, const Tensor<float, 3>* h_cache) {
  CudaLayerResult result{{}, {}, device_name()};
  const models::causal::ChunkedLSAttention<cuda, T> layer(config, std::move(weights));
  const auto dh = to_device<T>(h);
  const OptionalDevice<T, 3> dcache(h_cache);
  DeviceTensor<T, 3> y(h.shape());
  Workspace workspace(layer.workspace_bytes(h.extent(0), h.extent(1), h_cache ? h_cache->extent(1) : 0));
  const CublasHandle handle;
  layer.forward(dh.view(), dcache.view(), y.view(), handle, cudaStream_t{}, workspace.get());
  result.y = to_host<float>(y);
  return result;
}

template <class T>
CudaLayerResult vision(const models::vision::Config& config, models::vision::Weights<float> weights,
                       const Tensor<float, 3>& x, index_t nx, index_t ny) {
  CudaLayerResult result{{}, {}, device_name()};
  const models::vision::AttentionLS2D<cuda, T> layer(config, std::move(weights));
  const auto dx = to_device<T>(x);
  DeviceTensor<T, 3> y(x.shape());
  Workspace workspace(layer.workspace_bytes(x.extent(0), nx, ny));
  const CublasHandle handle;
  layer.forward(dx.view(), nx, ny, y.view(), handle, cudaStream_t{}, workspace.get());
  result.y = to_host<float>(y);
  return result;
}

template <class T>
CudaLayerResult ls_heads(const models::ls_heads::Config& config, models::ls_heads::Weights<float> weights,
                         const Tensor<float, 3>& x, const Tensor<float, 2>* mask) {
  CudaLayerResult result{{}, {}, device_name()};
  const models::ls_heads::LsHeadsAttention<cuda, T> layer(config, std::move(weights));
  const auto dx = to_device<T>(x);
  const OptionalDevice<T, 2> dmask(mask);
  DeviceTensor<T, 3> y(x.shape());
  DeviceTensor<float, 1> max_logits(Shape<1>{config.num_heads});
  Workspace workspace(layer.workspace_bytes(x.extent(0), x.extent(1)));
  const CublasHandle handle;
  layer.forward(dx.view(), dmask.view(), y.view(), handle, cudaStream_t{}, workspace.get(), max_logits.view());
  result.y = to_host<float>(y);
  result.max_logits.resize(static_cast<std::size_t>(config.num_heads));
  max_logits.copy_to({result.max_logits.data(), Shape<1>{config.num_heads}});
  return result;
}

template <class T>
CudaLayerResult gpt(const models::ls_gpt::Config& config, models::ls_gpt::Weights<float> weights,
                    const Tensor<std::int64_t, 2>& tokens) {
  CudaLayerResult result{{}, {}, device_name()};
  const models::ls_gpt::LsGptCuda<T> model(config, std::move(weights));
  DeviceTensor<T, 3> logits(Shape<3>{tokens.extent(0), tokens.extent(1), config.vocab_size});
  Workspace workspace(model.workspace_bytes(tokens.extent(0), tokens.extent(1)));
  const CublasHandle handle;
  model.forward(tokens.view(), logits.view(), handle, cudaStream_t{}, workspace.get());
  result.y = to_host<float>(logits);
  return result;
}

template <class T>
CudaLmResult lm(const models::causal::LmConfig& config, models::causal::LmWeights<float> weights,
                const std::vector<Tensor<std::int64_t, 2>>& segments) {
  CudaLmResult result{{}, {}, device_name()};
  const models::causal::TransformerLSModel<cuda, T> model(config, std::move(weights));
  auto state = model.initial_state(segments.front().extent(0));
  const CublasHandle handle;
  for (const auto& tokens : segments) {
    DeviceTensor<float, 3> logprobs(Shape<3>{tokens.extent(0), tokens.extent(1), config.vocab_size});
    Workspace workspace(model.workspace_bytes(tokens.extent(0), tokens.extent(1)));
    model.forward(tokens.view(), state, logprobs.view(), handle, cudaStream_t{}, workspace.get());
    result.logprobs.push_back(to_host<float>(logprobs));
    std::vector<Tensor<float, 3>> caches;
    for (const auto& cache : state.caches) caches.push_back(to_host<float>(cache));
    result.caches.push_back(std::move(caches));
  }
  return result;
}

// One function per layer for the bridge: the element type chosen at run time.
template <template <class> class Run, class... Args>
auto by_dtype(CudaDtype dtype, Args&&... args) {
  switch (dtype) {
    case CudaDtype::fp16: return Run<__half>::call(std::forward<Args>(args)...);
    case CudaDtype::bf16: return Run<__nv_bfloat16>::call(std::forward<Args>(args)...);
    case CudaDtype::fp32: break;
  }
  return Run<float>::call(std::forward<Args>(args)...);
}

template <class T> struct RunLra { template <class... A> static CudaLayerResult call(A&&... a) { return lra<T>(std::forward<A>(a)...); } };
template <class T> struct RunCausal { template <class... A> static CudaLayerResult call(A&&... a) { return causal<T>(std::forward<A>(a)...); } };
template <class T> struct RunVision { template <class... A> static CudaLayerResult call(A&&... a) { return vision<T>(std::forward<A>(a)...); } };
template <class T> struct RunLsHeads { template <class... A> static CudaLayerResult call(A&&... a) { return ls_heads<T>(std::forward<A>(a)...); } };
template <class T> struct RunGpt { template <class... A> static CudaLayerResult call(A&&... a) { return gpt<T>(std::forward<A>(a)...); } };
template <class T> struct RunLm { template <class... A> static CudaLmResult call(A&&... a) { return lm<T>(std::forward<A>(a)...); } };

// Registered before main() runs: the command line then offers --device cuda.
[[maybe_unused]] const bool registered = [] {
  CudaLayers& layers = cuda_layers();
  layers.lra = [](CudaDtype dtype, const models::lra::Config& config, models::lra::Weights<float> weights,
                  const Tensor<float, 3>& x, const Tensor<float, 2>* mask, const Tensor<float, 3>* cls_embed) {
    return by_dtype<RunLra>(dtype, config, std::move(weights), x, mask, cls_embed);
  };
  layers.causal = [](CudaDtype dtype, const models::causal::Config& config, models::causal::Weights<float> weights,
                     const Tensor<float, 3>& h, const Tensor<float, 3>* h_cache) {
    return by_dtype<RunCausal>(dtype, config, std::move(weights), h, h_cache);
  };
  layers.vision = [](CudaDtype dtype, const models::vision::Config& config, models::vision::Weights<float> weights,
                     const Tensor<float, 3>& x, index_t nx, index_t ny) {
    return by_dtype<RunVision>(dtype, config, std::move(weights), x, nx, ny);
  };
  layers.ls_heads = [](CudaDtype dtype, const models::ls_heads::Config& config, models::ls_heads::Weights<float> weights,
                       const Tensor<float, 3>& x, const Tensor<float, 2>* mask) {
    return by_dtype<RunLsHeads>(dtype, config, std::move(weights), x, mask);
  };
  layers.gpt = [](CudaDtype dtype, const models::ls_gpt::Config& config, models::ls_gpt::Weights<float> weights,
                  const Tensor<std::int64_t, 2>& tokens) {
    return by_dtype<RunGpt>(dtype, config, std::move(weights), tokens);
  };
  layers.lm = [](CudaDtype dtype, const models::causal::LmConfig& config, models::causal::LmWeights<float> weights,
                 const std::vector<Tensor<std::int64_t, 2>>& segments) {
    return by_dtype<RunLm>(dtype, config, std::move(weights), segments);
  };
  return true;
}();

}  // namespace
}  // namespace lsattn::cli
