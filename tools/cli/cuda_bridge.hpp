#pragma once
// What the command line asks of its CUDA part: one attention layer (or the GPT) on the GPU, from host
// configurations, weights and inputs, back as host floats. Only the model headers that nvcc
// compiles appear here; tools/cli/cuda_run.cu fills in `cuda_layers()` when it is linked in
// (builds with CUDA), so a CPU-only build can say plainly that it has no GPU path.
#include <cstdint>
#include <string>
#include <vector>

#include "lsattn/core/tensor.hpp"
#include "lsattn/models/causal.hpp"
#include "lsattn/models/causal_lm.hpp"
#include "lsattn/models/ls_gpt_config.hpp"
#include "lsattn/models/ls_heads_config.hpp"
#include "lsattn/models/lra.hpp"
#include "lsattn/models/vision.hpp"

namespace lsattn::cli {

// The CUDA element type of a run: --dtype fp32, fp16 or bf16.
enum class CudaDtype { fp32, fp16, bf16 };

struct CudaLayerResult {
  Tensor<float, 3> y;
  std::vector<float> max_logits;  // LS heads only
  std::string device;             // the GPU's name, for the log
};

// The character LM over segments on the GPU: per segment the log-probabilities and the layer
// memories after it.
struct CudaLmResult {
  std::vector<Tensor<float, 3>> logprobs;
  std::vector<std::vector<Tensor<float, 3>>> caches;
  std::string device;
};

// Null pointers: an input that is not given.
struct CudaLayers {
  CudaLayerResult (*lra)(CudaDtype, const models::lra::Config&, models::lra::Weights<float>, const Tensor<float, 3>& x,
                         const Tensor<float, 2>* mask, const Tensor<float, 3>* cls_embed) = nullptr;
  CudaLayerResult (*causal)(CudaDtype, const models::causal::Config&, models::causal::Weights<float>,
                            const Tensor<float, 3>& h, const Tensor<float, 3>* h_cache) = nullptr;
  CudaLayerResult (*vision)(CudaDtype, const models::vision::Config&, models::vision::Weights<float>,
                            const Tensor<float, 3>& x, index_t nx, index_t ny) = nullptr;
  CudaLayerResult (*ls_heads)(CudaDtype, const models::ls_heads::Config&, models::ls_heads::Weights<float>,
                              const Tensor<float, 3>& x, const Tensor<float, 2>* mask) = nullptr;
  // The whole GPT on (B, T) token ids: y holds the logits (B, T, vocab_size).
  CudaLayerResult (*gpt)(CudaDtype, const models::ls_gpt::Config&, models::ls_gpt::Weights<float>,
                         const Tensor<std::int64_t, 2>& tokens) = nullptr;
  // The character LM on its segments, in order, from a zero memory.
  CudaLmResult (*lm)(CudaDtype, const models::causal::LmConfig&, models::causal::LmWeights<float>,
                     const std::vector<Tensor<std::int64_t, 2>>& segments) = nullptr;
};

inline CudaLayers& cuda_layers() {
  static CudaLayers layers;
  return layers;
}

}  // namespace lsattn::cli
