// Benchmarks of the bidirectional Transformer-LS layer, plain full attention, and the machine's
// own GEMM throughput (Eigen, the layer's projection shape) as the yardstick for both.
//
// FLOPs counted (multiply-add = 2 FLOPs; softmax, LayerNorm and masking not counted):
//   projections  2·L·D·(4·D + nh·r)         W_q, W_k, W_v, W_o and the dynamic projection
//   compression  2·2·L·r·D                   K̄ = Pᵀ K and V̄ = Pᵀ V
//   attention    2·2·L·D·(r + w + 2·ext)     scores and P·V over the keys of a full block
//   full layer   2·L·4·D² + 2·2·L²·D
//   causal layer projections of queries, window rows (min(M, w) + L, keys and values), cache
//                summaries and outputs, dconv_1 on cache and segment, the position tables, and
//                per query 2·D·(3·w + 3·k) for its w window keys and k visible compressed keys
//                (content, position and value terms)
#include <benchmark/benchmark.h>

#include <cstdio>
#include <cstdlib>
#include <random>
#include <string_view>

#include "lsattn/baseline/full_attention.hpp"
#include "lsattn/lsattn.hpp"
#include "lsattn/models/ls_gpt.hpp"
#include "layer_flops.hpp"
#include "peak_memory.hpp"

namespace {

using lsattn::index_t;
using lsattn::Shape;
using lsattn::Tensor;
namespace lra = lsattn::models::lra;

const lra::Config kConfig{8, 64, 512, 128, 64, false, 0};

// LSATTN_BENCH_DTYPE=bf16 runs every layer with bf16 products (Precision::bf16); unset or fp32:
// float. bench/peers.py runs the binary once per dtype.
lsattn::Precision bench_precision() {
  const char* dtype = std::getenv("LSATTN_BENCH_DTYPE");
  if (dtype == nullptr || std::string_view(dtype) == "fp32" || *dtype == '\0') return lsattn::Precision::fp32;
  if (std::string_view(dtype) == "bf16") return lsattn::Precision::bf16;
  throw lsattn::error("LSATTN_BENCH_DTYPE: expected fp32 or bf16, got " + std::string(dtype));
}

template <class Config>
Config with_precision(Config config) {
  config.precision = bench_precision();
  return config;
}

Tensor<float, 3> random_tensor(const Shape<3>& shape, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  Tensor<float, 3> x(shape);
  for (auto& v : x.values()) v = normal(rng);
  return x;
}

void report(benchmark::State& state, double flops_per_call, index_t tokens, std::size_t heap_before) {
  state.counters["FLOP/s"] = benchmark::Counter(flops_per_call, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["tokens/s"] = benchmark::Counter(static_cast<double>(tokens), benchmark::Counter::kIsIterationInvariantRate);
  state.counters["peak_MiB"] = static_cast<double>(lsattn_bench::peak_heap_bytes() - heap_before) / (1 << 20);
}

void long_short_layer(benchmark::State& state, const lra::Config& config) {
  const index_t batch = state.range(0), length = state.range(1);
  const double d = config.transformer_dim, r = config.num_landmarks, nh = config.num_head;
  const double keys = r + lsattn::BidirectionalWindow::segments(config.window_size).span();
  const lra::AttentionLS<lsattn::cpu, float> layer(with_precision(config), lra::Weights<float>::random(config, 1));
  const auto x = random_tensor(Shape<3>{batch, length, config.transformer_dim}, 2);
  const std::size_t before = lsattn_bench::current_heap_bytes();
  lsattn_bench::reset_peak_heap();
  lsattn::CpuWorkspace workspace;  // kept across calls, as a serving loop would (its bytes count in peak_MiB)
  for (auto _ : state) benchmark::DoNotOptimize(layer.forward(x.view(), {}, {}, workspace));
  const double tokens = static_cast<double>(batch * length);
  const double flops = tokens * (2 * d * (4 * d + nh * r) + 4 * r * d + 4 * d * keys);
  report(state, flops, batch * length, before);
}
void BM_LongShortLayer(benchmark::State& state) { long_short_layer(state, kConfig); }
// The paper's LRA text setting: D = 64, 2 heads of 32, w = 8, r = 32 (thousands of 8-query blocks).
void BM_LraTextLayer(benchmark::State& state) { long_short_layer(state, lra::Config{2, 32, 64, 8, 32, false, 0}); }

// The attention proper alone (LongShortAttention on precomputed Q, K, V and logits): the local
// LN, the dynamic projection and the joint softmax attention, no linear layers.
void BM_LongShortAttentionOnly(benchmark::State& state) {
  const index_t length = state.range(0), width = kConfig.transformer_dim;
  const double d = width, r = kConfig.num_landmarks;
  const double keys = r + lsattn::BidirectionalWindow::segments(kConfig.window_size).span();
  const auto q = random_tensor(Shape<3>{1, length, width}, 2), k = random_tensor(q.shape(), 3), v = random_tensor(q.shape(), 4);
  const auto logits = random_tensor(Shape<3>{1, length, kConfig.num_head * kConfig.num_landmarks}, 5);
  const Tensor<float, 1> ones(Shape<1>{width}, 1.0f), zeros(Shape<1>{width}, 0.0f);
  const lsattn::LongShortAttention<lsattn::cpu, float> attention(with_precision(kConfig).attention());
  Tensor<float, 3> context(q.shape());
  const std::size_t before = lsattn_bench::current_heap_bytes();
  lsattn_bench::reset_peak_heap();
  lsattn::CpuWorkspace workspace;
  for (auto _ : state) {
    attention({q.view(), k.view(), v.view(), logits.view()}, {{ones.view(), zeros.view()}, {ones.view(), zeros.view()}},
              context.view(), &workspace);
    benchmark::DoNotOptimize(context.data());
  }
  report(state, static_cast<double>(length) * (4 * r * d + 4 * d * keys), length, before);
}

void BM_FullAttentionLayer(benchmark::State& state) {
  const index_t batch = state.range(0), length = state.range(1), width = kConfig.transformer_dim;
  const auto w = lra::Weights<float>::random(kConfig, 1);
  const auto x = random_tensor(Shape<3>{batch, length, width}, 2);
  const index_t rows = batch * length;
  const std::size_t before = lsattn_bench::current_heap_bytes();
  lsattn_bench::reset_peak_heap();
  for (auto _ : state) {
    Tensor<float, 3> q(x.shape()), k(x.shape()), v(x.shape()), context(x.shape()), y(x.shape());
    lsattn::cpu_detail::linear(x.data(), rows, width, w.W_q_weight.data(), w.W_q_bias.data(), width, q.data(), 0,
                               bench_precision());
    lsattn::cpu_detail::linear(x.data(), rows, width, w.W_k_weight.data(), w.W_k_bias.data(), width, k.data(), 0,
                               bench_precision());
    lsattn::cpu_detail::linear(x.data(), rows, width, w.W_v_weight.data(), w.W_v_bias.data(), width, v.data(), 0,
                               bench_precision());
    lsattn::baseline::full_attention<float>(kConfig.num_head, q.view(), k.view(), v.view(), {}, context.view(), 0, false,
                                            bench_precision());
    lsattn::cpu_detail::linear(context.data(), rows, width, w.W_o_weight.data(), w.W_o_bias.data(), width, y.data(), 0,
                               bench_precision());
    benchmark::DoNotOptimize(y.data());
  }
  const double d = static_cast<double>(width), tokens = static_cast<double>(rows);
  report(state, tokens * (8 * d * d + 4 * static_cast<double>(length) * d), rows, before);
}

// The yardstick: the machine's Eigen GEMM on the projection shape (L × D)·(D × D), multi-threaded
// the same way as the library (row blocks, one thread each).
void gemm(benchmark::State& state, lsattn::Precision precision) {
  const index_t rows = state.range(0), width = kConfig.transformer_dim;
  const auto x = random_tensor(Shape<3>{1, rows, width}, 3);
  const auto w = random_tensor(Shape<3>{1, width, width}, 4);
  Tensor<float, 3> y(Shape<3>{1, rows, width});
  const std::size_t before = lsattn_bench::current_heap_bytes();
  lsattn_bench::reset_peak_heap();
  for (auto _ : state) {
    lsattn::cpu_detail::linear(x.data(), rows, width, w.data(), static_cast<const float*>(nullptr), width, y.data(), 0,
                               precision);
    benchmark::DoNotOptimize(y.data());
  }
  report(state, 2.0 * static_cast<double>(rows) * width * width, rows, before);
}
void BM_Gemm(benchmark::State& state) { gemm(state, lsattn::Precision::fp32); }
// The bf16 yardstick: the same product through the library's bf16 path (the fastest this CPU
// has: AVX-512-BF16 here; see docs/performance.md for the path).
void BM_GemmBf16(benchmark::State& state) { gemm(state, lsattn::Precision::bf16); }
// The same product in the precision LSATTN_BENCH_DTYPE asks for: the peer benchmark's GEMM row
// (bench/peers.py, against torch's F.linear under the same precision).
void BM_ProjectionGemm(benchmark::State& state) { gemm(state, bench_precision()); }

// One packed product C (m × n) = A (m × k) · B (k × n), operands in cache, in LSATTN_BENCH_DTYPE's
// precision: the micro-kernel's own rate (A's rounding included for bf16), apart from the memory
// traffic of a whole layer. Shapes: a Linear row block, a flash block's P·V, LRA text's Q·Kᵀ.
void BM_BlockProduct(benchmark::State& state) {
  const index_t m = state.range(0), k = state.range(1), n = state.range(2);
  const auto a = random_tensor(Shape<3>{1, m, k}, 5);
  const auto b = random_tensor(Shape<3>{1, k, n}, 6);
  Tensor<float, 3> c(Shape<3>{1, m, n});
  lsattn::cpu_detail::PackedOperand packed;
  packed.pack(b.data(), n, k, n, /*transposed=*/false, bench_precision());
  const std::size_t before = lsattn_bench::current_heap_bytes();
  lsattn_bench::reset_peak_heap();
  for (auto _ : state) {
    lsattn::cpu_detail::block_matmul(a.data(), k, m, packed, c.data(), n, false);
    benchmark::DoNotOptimize(c.data());
  }
  report(state, 2.0 * static_cast<double>(m) * static_cast<double>(k) * static_cast<double>(n), m, before);
}

// (batch, length) pairs from 1K tokens up to max_tokens tokens per call.
// The published enwik8 layer (D = 512, 8 heads, l = 16, r = 1, w = 512) on a segment of L
// tokens after a memory of M = 2048, batch 1 and 8.
void BM_CausalLayer(benchmark::State& state) {
  const index_t batch = state.range(0), length = state.range(1), cache = 2048;
  const lsattn::models::causal::Config config{8, 512, 16, 1, 512, false, -1, -1, 0};
  const lsattn::models::causal::ChunkedLSAttention<lsattn::cpu, float> layer(
      with_precision(config), lsattn::models::causal::Weights<float>::random(config, 1));
  const auto h = random_tensor(Shape<3>{batch, length, 512}, 2);
  const auto memory = random_tensor(Shape<3>{batch, cache, 512}, 3);
  const std::size_t before = lsattn_bench::current_heap_bytes();
  lsattn_bench::reset_peak_heap();
  lsattn::CpuWorkspace workspace;
  for (auto _ : state) benchmark::DoNotOptimize(layer.forward(h.view(), memory.view(), workspace));
  report(state, static_cast<double>(batch) * lsattn_bench::causal_layer_flops(length, cache), batch * length, before);
}

// The ViL-LS stage-1 attention (C = 96, 3 heads, w = 7, r = 8, one global token, RPE) over an
// n × n patch grid; FLOPs as layer_flops.hpp counts them.
void BM_VisionLayer(benchmark::State& state) {
  const index_t batch = state.range(0), n = state.range(1), tokens = 1 + n * n;
  const lsattn::models::vision::Config config{96, 3, 7, 8, 1, true, true, 0};
  const lsattn::models::vision::AttentionLS2D<lsattn::cpu, float> layer(
      with_precision(config), lsattn::models::vision::Weights<float>::random(config, 1));
  const auto x = random_tensor(Shape<3>{batch, tokens, 96}, 2);
  const std::size_t before = lsattn_bench::current_heap_bytes();
  lsattn_bench::reset_peak_heap();
  lsattn::CpuWorkspace workspace;
  for (auto _ : state) benchmark::DoNotOptimize(layer.forward(x.view(), n, n, workspace));
  report(state, static_cast<double>(batch) * lsattn_bench::vision_layer_flops(n), batch * tokens, before);
}

// LS-attention heads (half local with w = 256, half global) vs full multi-head attention of the
// same shape (D = 512, 8 heads), causal, batch 1. FLOPs: projections 8·L·D², attention 4·dh·(visible
// keys) per head and query (causal: L(L+1)/2 per global head, ≈ L·w per local head).
void ls_heads_benchmark(benchmark::State& state, bool split) {
  const index_t batch = state.range(0), length = state.range(1);
  lsattn::models::ls_heads::Config config{512, 8, {}, 256, true, 0};
  if (split) config.local_heads = {0, 1, 2, 3};
  const lsattn::models::ls_heads::LsHeadsAttention<lsattn::cpu, float> layer(
      with_precision(config), lsattn::models::ls_heads::Weights<float>::random(config, 1));
  const auto x = random_tensor(Shape<3>{batch, length, 512}, 2);
  const std::size_t before = lsattn_bench::current_heap_bytes();
  lsattn_bench::reset_peak_heap();
  lsattn::CpuWorkspace workspace;
  for (auto _ : state) benchmark::DoNotOptimize(layer.forward(x.view(), {}, nullptr, workspace));
  const double l = static_cast<double>(length), global_keys = l * (l + 1) / 2;
  const double local_keys = 256.0 * l - 256.0 * 255.0 / 2;
  const double keys = split ? 4 * global_keys + 4 * local_keys : 8 * global_keys;
  report(state, static_cast<double>(batch) * (8 * l * 512 * 512 + 4 * 64 * keys), batch * length, before);
}
void BM_LsHeadsCausal(benchmark::State& state) { ls_heads_benchmark(state, true); }

// The LS-attention author's current GPT setting: D = 768, 12 heads of 64, heads 0-10 local
// with a window of 100 keys (t - 99 ... t), head 11 global, causal, batch 1.
void BM_LsGptCausal(benchmark::State& state) {
  const index_t length = state.range(0);
  lsattn::models::ls_heads::Config config{768, 12, {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, 100, true, 0};
  const lsattn::models::ls_heads::LsHeadsAttention<lsattn::cpu, float> layer(
      with_precision(config), lsattn::models::ls_heads::Weights<float>::random(config, 1));
  const auto x = random_tensor(Shape<3>{1, length, 768}, 2);
  const std::size_t before = lsattn_bench::current_heap_bytes();
  lsattn_bench::reset_peak_heap();
  lsattn::CpuWorkspace workspace;
  for (auto _ : state) benchmark::DoNotOptimize(layer.forward(x.view(), {}, nullptr, workspace));
  const double l = static_cast<double>(length), keys = l * (l + 1) / 2 + 11 * (100.0 * l - 100.0 * 99.0 / 2);
  report(state, 8 * l * 768 * 768 + 4 * 64 * keys, length, before);
}
void BM_FullMhaCausal(benchmark::State& state) { ls_heads_benchmark(state, false); }

// Decoding with the LS-attention GPT at the author's current setting (D = 768, 12 heads of 64,
// 11 local with span 100, i.e. 101 keys, 1 global, 12 layers, vocab 50304, random weights)
// against the same model with all 12 heads global (full attention with a KV cache): one step at
// a context of `context` tokens. The state is filled directly (random keys and values): a
// step's cost does not depend on their values. FLOPs per step: 2·(parameters read by the
// linears) + 4·head_dim per visible key and head.
void BM_LsGptDecode(benchmark::State& state) {
  const index_t context = state.range(0);
  const bool all_global = state.range(1) != 0;
  namespace gpt = lsattn::models::ls_gpt;
  gpt::Config config;
  config.block_size = context + 1;
  config.vocab_size = 50304;
  config.n_layer = 12;
  config.n_head = 12;
  config.head_dim = 64;
  config.n_embd = 768;
  config.n_local_head = all_global ? 0 : 11;
  config.local_attn_span = 100;
  config.precision = bench_precision();
  const gpt::LsGpt<float> model(config, gpt::Weights<float>::random(config, 1));
  auto decode = model.initial_state();
  std::mt19937_64 rng(3);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  const index_t global = config.n_global_head() * config.head_dim;
  const index_t local = config.n_local_head * config.head_dim;
  for (auto& layer : decode.layers) {
    for (auto* ring : {&layer.local_keys, &layer.local_values}) {
      ring->resize(static_cast<std::size_t>(std::min(context, config.window()) * local));  // a full ring
      for (float& v : *ring) v = normal(rng);
    }
    for (auto* rows : {&layer.global_keys, &layer.global_values}) {
      rows->reserve(static_cast<std::size_t>((context + 1) * global));  // the step appends without reallocating
      rows->resize(static_cast<std::size_t>(context * global));
      for (float& v : *rows) v = normal(rng);
    }
  }
  decode.position = context;
  const std::size_t before = lsattn_bench::current_heap_bytes();
  lsattn_bench::reset_peak_heap();
  for (auto _ : state) {
    benchmark::DoNotOptimize(model.step(7, decode));
    state.PauseTiming();  // back to the same context: drop the token just appended
    decode.position = context;
    for (auto& layer : decode.layers)
      for (auto* rows : {&layer.global_keys, &layer.global_values}) rows->resize(static_cast<std::size_t>(context * global));
    state.ResumeTiming();
  }
  const double d = 768, inner = config.mlp_width(), keys = 11.0 * std::min<double>(101, context + 1) * !all_global +
                                                          (all_global ? 12.0 : 1.0) * static_cast<double>(context + 1);
  const double flops = 12 * 2 * (d * 3 * 768 + 768 * d + 2 * d * inner) + 2 * d * 50304 + 12 * 4 * 64 * keys;
  state.counters["FLOP/s"] = benchmark::Counter(flops, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["tokens/s"] = benchmark::Counter(1, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["state_MiB"] = static_cast<double>(decode.bytes()) / (1 << 20);
  state.counters["peak_MiB"] = static_cast<double>(lsattn_bench::peak_heap_bytes() - before) / (1 << 20);
}

// The character LM decoding (D = 512, 8 heads, l = 16, r = 1, w = 512 as in the published
// enwik8 model, but 2 layers, mem_len 512, segments of 512 tokens, vocab 256, random weights):
// steps from `decoded` tokens on (segments closed every 512; each timed step advances the
// stream), against the segment forward's time per token (BM_LmSegmentForward). Prefilling
// decodes the tokens one by one.
lsattn::models::causal::LmConfig lm_decode_config() {
  lsattn::models::causal::LmConfig config;
  config.vocab_size = 256;
  config.n_layer = 2;
  config.mem_len = 512;
  config.precision = bench_precision();
  return config;
}
constexpr index_t lm_segment = 512;

void BM_LmDecodeStep(benchmark::State& state) {
  namespace causal = lsattn::models::causal;
  const index_t decoded = state.range(0);
  const auto config = lm_decode_config();
  const causal::TransformerLSModel<lsattn::cpu, float> model(config, causal::LmWeights<float>::random(config, 1));
  auto decode = model.initial_decode_state();
  std::int64_t token = 0;
  auto next = [&] {
    benchmark::DoNotOptimize(model.step(token, decode));
    token = (token * 31 + 7) % config.vocab_size;
    if (decode.length == lm_segment) model.end_segment(decode);
  };
  for (index_t t = 0; t < decoded; ++t) next();
  for (auto _ : state) next();
  state.counters["tokens/s"] = benchmark::Counter(1, benchmark::Counter::kIsIterationInvariantRate);
}

void BM_LmSegmentForward(benchmark::State& state) {
  namespace causal = lsattn::models::causal;
  const auto config = lm_decode_config();
  const causal::TransformerLSModel<lsattn::cpu, float> model(config, causal::LmWeights<float>::random(config, 1));
  auto memory = model.initial_state(1);
  Tensor<std::int64_t, 2> tokens(Shape<2>{1, lm_segment});
  for (index_t t = 0; t < lm_segment; ++t) tokens(0, t) = (t * 31 + 7) % config.vocab_size;
  benchmark::DoNotOptimize(model.forward(tokens.view(), memory));  // a full memory, as in a stream
  for (auto _ : state) {
    auto carried = memory;
    benchmark::DoNotOptimize(model.forward(tokens.view(), carried));
  }
  state.counters["tokens/s"] = benchmark::Counter(static_cast<double>(lm_segment), benchmark::Counter::kIsIterationInvariantRate);
}

void lengths(benchmark::internal::Benchmark* b, index_t max_length, index_t max_tokens) {
  for (index_t batch : {1, 8})
    for (index_t length = 1024; length <= max_length; length *= 2)
      if (batch * length <= max_tokens) b->Args({batch, length});
}

}  // namespace

BENCHMARK(BM_Gemm)->Arg(16384)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_GemmBf16)->Arg(16384)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_ProjectionGemm)->Arg(16384)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_BlockProduct)->Args({128, 512, 512})->Args({64, 256, 64})->Args({8, 32, 64})->UseRealTime();
BENCHMARK(BM_LongShortLayer)->Apply([](auto* b) { lengths(b, 65536, 131072); })->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_LraTextLayer)->Args({1, 1024})->Args({1, 4096})->Args({32, 4096})->Args({1, 16384})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_LongShortAttentionOnly)->RangeMultiplier(4)->Range(4096, 65536)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_FullAttentionLayer)->Apply([](auto* b) { lengths(b, 16384, 16384); })->Unit(benchmark::kMillisecond)->UseRealTime();

BENCHMARK(BM_CausalLayer)->Apply([](auto* b) { lengths(b, 16384, 32768); })->Unit(benchmark::kMillisecond)->UseRealTime();

BENCHMARK(BM_VisionLayer)->Args({1, 28})->Args({1, 56})->Args({1, 112})->Args({1, 128})->Args({8, 28})->Args({8, 56})->Unit(benchmark::kMillisecond)->UseRealTime();

BENCHMARK(BM_LsHeadsCausal)->Args({1, 4096})->Args({1, 8192})->Args({1, 16384})->Args({8, 4096})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_LsGptCausal)->Arg(8192)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_LsGptDecode)->ArgsProduct({{1024, 8192, 32768}, {0, 1}})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_LmDecodeStep)->Arg(16)->Arg(500)->Arg(2048)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_LmSegmentForward)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_FullMhaCausal)->Args({1, 4096})->Args({1, 8192})->Args({1, 16384})->Args({8, 4096})->Unit(benchmark::kMillisecond)->UseRealTime();

// BENCHMARK_MAIN with the kernel paths in the run's context (the JSON's "context"), since the
// same binary takes different kernels on different CPUs.
int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  try {
    benchmark::AddCustomContext("lsattn_fp32_path", lsattn::fp32_path_name(lsattn::active_fp32_path()));
    benchmark::AddCustomContext("lsattn_bf16_path", lsattn::bf16_path_name(lsattn::active_bf16_path()));
  } catch (const lsattn::error& e) {  // a bad LSATTN_FP32_PATH / LSATTN_BF16_PATH
    std::fprintf(stderr, "%s\n", e.what());
    return 2;
  }
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
