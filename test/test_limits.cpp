// Bad input through the library: sizes beyond the limits, overflowing products, non-finite
// weights, lenient metadata, allocations that cannot succeed, absurd thread counts. Each case
// names what must be named; the CLI's side of the same inputs is in test_cli.cpp.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <tuple>
#include <type_traits>

#include "lsattn/lsattn.hpp"
#include "lsattn/models/causal_checkpoint.hpp"
#include "lsattn/models/lra_checkpoint.hpp"
#include "lsattn/models/vision_checkpoint.hpp"

namespace {

using Catch::Matchers::Contains;
using lsattn::index_t;
using lsattn::Shape;
using lsattn::Tensor;
namespace lra = lsattn::models::lra;
namespace causal = lsattn::models::causal;
namespace vision = lsattn::models::vision;
namespace ls_heads = lsattn::models::ls_heads;

constexpr index_t int64_max = std::numeric_limits<index_t>::max();
const std::string max_size_text = std::to_string(lsattn::max_size);

Tensor<float, 3> random_tensor(const Shape<3>& shape, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  Tensor<float, 3> t(shape);
  for (auto& v : t.values()) v = normal(rng);
  return t;
}

// Weights written to safetensors bytes and parsed back, as a checkpoint file would be.
template <class Weights, class Config>
lsattn::io::SafeTensorsFile as_file(const Weights& weights, const Config& config) {
  lsattn::io::SafeTensorsWriter writer;
  lsattn::io::save_parameters(writer, weights, config);
  return lsattn::io::SafeTensorsFile::parse(writer.to_bytes(), "weights.safetensors");
}

}  // namespace

TEST_CASE("checked arithmetic names its operands and never wraps", "[limits]") {
  using lsattn::checked_product;
  using lsattn::checked_size;
  using lsattn::checked_sum;
  CHECK(checked_size("window_len", lsattn::max_size, 1) == lsattn::max_size);
  CHECK_THROWS_WITH(checked_size("window_len", lsattn::max_size + 1, 1),
                    Contains("window_len") && Contains("2147483648") && Contains(max_size_text));
  CHECK_THROWS_WITH(checked_size("window_len", 0, 1), Contains("window_len: must be >= 1, got 0"));
  CHECK(checked_product({{"a", 3}, {"b", 5}}) == 15);
  CHECK(checked_product({{"a", int64_max}, {"b", 0}}) == 0);
  CHECK(checked_product({{"a", lsattn::max_elements}, {"b", 1}}) == lsattn::max_elements);
  // 2^32 · 2^32 wraps to 0 in 64 bits: here it is an error naming both factors.
  CHECK_THROWS_WITH(checked_product({{"nx", index_t{1} << 32}, {"ny", index_t{1} << 32}}),
                    Contains("nx * ny = 4294967296 * 4294967296") && Contains("exceeds"));
  CHECK_THROWS_WITH(checked_product({{"a", int64_max}, {"b", int64_max}}), Contains("a * b"));
  CHECK_THROWS_WITH(checked_product({{"a", -1}, {"b", 2}}), Contains("a: must be >= 0"));
  CHECK(checked_sum({{"a", 1}, {"b", 2}}) == 3);
  CHECK_THROWS_WITH(checked_sum({{"a", lsattn::max_elements}, {"b", 1}}), Contains("a + b"));
}

TEST_CASE("every configuration rejects sizes beyond lsattn::max_size, naming them", "[limits][config]") {
  SECTION("LRA: window_size 7e18 and 2^63-1 are errors, not 'no window'") {
    for (index_t window : {index_t{7'000'000'000'000'000'000}, int64_max}) {
      lra::Config c{2, 4, 8, window, 2, false, 0};
      CHECK_THROWS_WITH(c.validate(), Contains("window_size") && Contains(std::to_string(window)));
    }
    lra::Config c{2, 4, 8, 4, 2, false, 0};
    c.num_head = index_t{1} << 40;
    c.transformer_dim = c.num_head * c.head_dim;
    CHECK_THROWS_WITH(c.validate(), Contains("num_head") && Contains("1099511627776"));
    c = {65536, 65536, index_t{65536} * 65536, 4, 2, false, 0};  // each within the limit, the width is not
    CHECK_THROWS_WITH(c.validate(), Contains("transformer_dim"));
    c = {65536, 1, 65536, 4, lsattn::max_size, false, 0};  // num_head · num_landmarks · D overflows the weight
    CHECK_THROWS_WITH(c.validate(), Contains("num_head * num_landmarks * transformer_dim"));
  }
  SECTION("causal layer and language model") {
    causal::Config layer{8, 64, 16, 1, 1'000'000'000'000, false, -1, -1, 0};
    CHECK_THROWS_WITH(layer.validate(), Contains("window_len") && Contains("1000000000000"));
    layer = {65536, 131072, 16, lsattn::max_size, 16, false, -1, -1, 0};
    CHECK_THROWS_WITH(layer.validate(), Contains("chunk_rank * n_head * d_model"));
    causal::LmConfig lm;
    lm.d_model = 16;
    lm.n_head = 2;
    lm.d_inner = 32;
    lm.window_len = 16;
    lm.n_layer = 1'000'000'000'000;
    CHECK_THROWS_WITH(lm.validate(), Contains("n_layer") && Contains("1000000000000"));
    lm.n_layer = 2;
    lm.mem_len = index_t{1} << 40;
    CHECK_THROWS_WITH(lm.validate(), Contains("mem_len") && Contains("1099511627776"));
    lm.mem_len = 32;
    lm.vocab_size = 0;
    CHECK_THROWS_WITH(lm.validate(), Contains("vocab_size: must be >= 1"));
  }
  SECTION("2D: the RPE table of a huge window overflows; so does a 2^32 x 2^32 grid") {
    vision::Config c{96, 3, 1 << 20, 8, 1, true, true, 0};
    CHECK_THROWS_WITH(c.validate(), Contains("w * w * tile * tile"));
    c = {12, 3, 4, 2, 1, true, true, 0};
    const vision::AttentionLS2D<lsattn::cpu, float> layer(c, vision::Weights<float>::random(c, 3));
    const auto x = random_tensor(Shape<3>{1, 1 + 16, 12}, 4);
    const index_t huge = index_t{1} << 32;
    CHECK_THROWS_WITH(layer.forward(x.view(), huge, huge), Contains("nx") && Contains("4294967296"));
    CHECK_THROWS_WITH(layer.forward(x.view(), lsattn::max_size, lsattn::max_size),
                      Contains("nx * ny = 2147483647 * 2147483647"));
    CHECK(layer.forward(x.view(), 4, 4).shape() == x.shape());
  }
  SECTION("LS heads and the attention functor") {
    ls_heads::Config c;
    c.window = int64_max;
    CHECK_THROWS_WITH(c.validate(), Contains("window") && Contains(std::to_string(int64_max)));
    CHECK_THROWS_WITH((lsattn::LongShortAttention<lsattn::cpu, float>({1 << 30, 1 << 30, 4, 2})),
                      Contains("heads * head_dim"));
    CHECK_THROWS_WITH((lsattn::LongShortAttention<lsattn::cpu, float>({2, 4, int64_max, 2})), Contains("window_size"));
  }
}

TEST_CASE("a window at the limit covers the whole sequence", "[limits][window]") {
  // With overflow, w = max_size used to wrap into "no window"; it must equal a window as long
  // as the sequence (block 0 holds every query, its keys are the whole sequence).
  lra::Config wide{2, 4, 8, lsattn::max_size, 2, false, 0};
  lra::Config exact = wide;
  exact.window_size = 37;
  const auto weights = lra::Weights<float>::random(wide, 5);
  const auto x = random_tensor(Shape<3>{2, 37, 8}, 6);
  const lra::AttentionLS<lsattn::cpu, float> wide_layer(wide, weights), exact_layer(exact, weights);
  CHECK(wide_layer.forward(x.view()).values() == exact_layer.forward(x.view()).values());
}

// The finiteness scan runs in fixed blocks of 64 plus a scalar tail: a non-finite value at any
// position of any length (blocks, tail, both) is found, and finite ones pass.
TEMPLATE_TEST_CASE("the finiteness scan finds a non-finite value at every position", "[limits][finite]", float, double) {
  const TestType specials[] = {std::numeric_limits<TestType>::quiet_NaN(), std::numeric_limits<TestType>::infinity(),
                               -std::numeric_limits<TestType>::infinity()};
  for (index_t length : {0, 1, 63, 64, 65, 127, 128, 200}) {
    std::vector<TestType> values(static_cast<std::size_t>(length), TestType(1e30));
    CHECK(lsattn::detail::all_finite(values.data(), length));
    for (index_t at = 0; at < length; ++at)
      for (TestType special : specials) {
        values[at] = special;
        INFO("length " << length << ", value " << special << " at " << at);
        CHECK_FALSE(lsattn::detail::all_finite(values.data(), length));
        values[at] = std::numeric_limits<TestType>::max();
      }
    CHECK(lsattn::detail::all_finite(values.data(), length));  // max() everywhere: still finite
  }
}

// Tensors of two chunks or more are scanned on the layer's threads, chunk by chunk: a
// non-finite value in the first, a middle or the last (partial) chunk is found and named by its
// index, with any thread count.
TEST_CASE("the threaded finiteness scan finds a non-finite value in every chunk", "[limits][finite][threads]") {
  const index_t chunk = lsattn::detail::finite_scan_chunk, length = 3 * chunk + 17;
  std::vector<float> values(static_cast<std::size_t>(length), 1.0f);
  const lsattn::HostView<const float, 1> view(values.data(), Shape<1>{length});
  for (int threads : {0, 1, 2, 3}) {
    INFO("threads " << threads);
    CHECK(lsattn::detail::all_finite(values.data(), length, threads));
    CHECK_NOTHROW(lsattn::detail::require_finite(view, "x", threads));
    for (index_t at : {index_t(0), chunk - 1, chunk, 2 * chunk + 5, length - 1}) {
      values[at] = NAN;
      INFO("NaN at " << at);
      CHECK_FALSE(lsattn::detail::all_finite(values.data(), length, threads));
      CHECK_THROWS_WITH(lsattn::detail::require_finite(view, "x", threads),
                        Contains("x: non-finite value") && Contains("(" + std::to_string(at) + ")"));
      values[at] = 1.0f;
    }
  }
}

TEST_CASE("non-finite weights are refused at construction and at load, naming the tensor", "[limits][weights]") {
  const lra::Config config{2, 4, 8, 4, 2, false, 0};
  const auto good = lra::Weights<float>::random(config, 7);
  for (const char* name : {"W_o.weight", "W_o.bias", "dual_ln_s.weight", "dual_ln_l.bias", "W_q.weight"}) {
    INFO(name);
    auto weights = good;
    weights.for_each(config, [&](const std::string& visited, auto& tensor, const auto&) {
      if (visited == name) tensor.values().back() = visited.ends_with("bias") ? INFINITY : NAN;
    });
    CHECK_THROWS_WITH((lra::AttentionLS<lsattn::cpu, float>(config, weights)),
                      Contains(std::string("weight ") + name) && Contains("non-finite"));
    const auto file = as_file(weights, config);
    CHECK_THROWS_WITH(lra::load_weights(file, config),
                      Contains("weights.safetensors") && Contains(std::string("'") + name + "'") &&
                          Contains("non-finite") && !Contains("query"));
  }
  CHECK_NOTHROW(lra::load_weights(as_file(good, config), config));
}

TEST_CASE("integer and boolean tensors are not weights", "[limits][weights]") {
  const lra::Config config{2, 4, 8, 4, 2, false, 0};
  auto weights = lra::Weights<float>::random(config, 8);
  lsattn::io::SafeTensorsWriter writer;
  weights.for_each(config, [&](const std::string& name, const auto& tensor, const auto& shape) {
    if (name == "W_k.weight") {
      using ShapeType = std::remove_cvref_t<decltype(shape)>;
      writer.add(name, Tensor<std::int64_t, std::tuple_size_v<ShapeType>>(shape, 1));
    } else {
      writer.add(name, tensor);
    }
  });
  const auto file = lsattn::io::SafeTensorsFile::parse(writer.to_bytes(), "int.safetensors");
  CHECK_THROWS_WITH(lra::load_weights(file, config), Contains("W_k.weight") && Contains("I64"));
}

TEST_CASE("hyperparameters from a file are checked before any arithmetic on them", "[limits][metadata]") {
  // Found by fuzz_checkpoint: the default transformer_dim = num_head * head_dim overflowed.
  const lsattn::io::Hyperparameters values({{"num_head", "2"}, {"head_dim", "9223372036854775807"},
                                            {"window_size", "4"}, {"num_landmarks", "2"}},
                                           "m.safetensors");
  CHECK_THROWS_WITH(lra::config_from(values), Contains("head_dim") && Contains("9223372036854775807"));
}

TEST_CASE("metadata integers are strict decimal", "[limits][metadata]") {
  auto value = [](const std::string& text) {
    return lsattn::io::Hyperparameters({{"n_head", text}}, "m.safetensors").integer("n_head");
  };
  CHECK(value("2") == 2);
  CHECK(value("-1") == -1);
  CHECK(value("9223372036854775807") == int64_max);
  for (const char* bad : {" 2", "+2", "2 ", "2.0", "0x2", "", "2e3", "--2", "two"}) {
    INFO("'" << bad << "'");
    CHECK_THROWS_WITH(value(bad), Contains("n_head") && Contains("decimal integer") && Contains("m.safetensors"));
  }
  CHECK_THROWS_WITH(value("99999999999999999999"), Contains("n_head") && Contains("64-bit"));
}

TEST_CASE("an allocation that cannot succeed is an error naming the shape", "[limits][memory]") {
  // 2^53 floats (32 PiB): more than the machine's memory, refused before the allocator is asked
  // (so it is an error under AddressSanitizer too, which aborts on allocations it refuses).
  CHECK_THROWS_AS((Tensor<float, 3>(Shape<3>{1, index_t{1} << 31, index_t{1} << 22})), lsattn::out_of_memory);
  CHECK_THROWS_WITH((Tensor<float, 3>(Shape<3>{1, index_t{1} << 31, index_t{1} << 22})),
                    Contains("out of memory") && Contains("(1, 2147483648, 4194304)") &&
                        Contains("more than the machine's memory"));
  CHECK(lsattn::physical_memory_bytes() > 0);
  CHECK_THROWS_WITH((Tensor<float, 2>(Shape<2>{index_t{1} << 32, index_t{1} << 32})),
                    Contains("(4294967296, 4294967296)") && Contains("elements"));
  CHECK_THROWS_WITH((Tensor<float, 2>(Shape<2>{-1, 4})), Contains("negative extent"));
}

TEST_CASE("the language model's n_layer must match the file before anything is allocated", "[limits][lm]") {
  causal::LmConfig config;
  config.vocab_size = 11;
  config.d_model = 8;
  config.n_head = 2;
  config.d_inner = 16;
  config.n_layer = 2;
  config.mem_len = 8;
  config.chunk_size = 4;
  config.window_len = 4;
  const auto file = as_file(causal::LmWeights<float>::random(config, 9), config);
  CHECK_NOTHROW(causal::load_lm_weights(file, config));
  auto more = config;
  more.n_layer = lsattn::max_size;  // valid in itself; the file has 2 layers
  CHECK_THROWS_WITH(causal::load_lm_weights(file, more), Contains("n_layer = " + max_size_text) && Contains("lacks"));
  auto fewer = config;
  fewer.n_layer = 1;
  CHECK_THROWS_WITH(causal::load_lm_weights(file, fewer), Contains("n_layer = 1") && Contains("more layers"));
}

TEST_CASE("an absurd thread count runs on the processors there are, with the same result", "[limits][threads]") {
  lra::Config config{2, 4, 8, 4, 2, false, 0};
  const auto weights = lra::Weights<float>::random(config, 10);
  const auto x = random_tensor(Shape<3>{2, 45, 8}, 11);
  config.threads = 1;
  const auto one = lra::AttentionLS<lsattn::cpu, float>(config, weights).forward(x.view());
  config.threads = 100000;
  const auto many = lra::AttentionLS<lsattn::cpu, float>(config, weights).forward(x.view());
  CHECK(one.values() == many.values());
  CHECK(lsattn::cpu_detail::resolve_threads(100000) == lsattn::cpu_detail::available_threads());
}

TEST_CASE("an empty causal cache and r = 0 without cls run without touching null", "[limits][ub]") {
  // Both used to trip UBSan (a reference bound to null; an offset applied to null): the
  // sanitizer job runs this test.
  const causal::Config config{2, 8, 4, 1, 4, false, -1, -1, 0};
  const causal::ChunkedLSAttention<lsattn::cpu, float> layer(config, causal::Weights<float>::random(config, 12));
  const auto h = random_tensor(Shape<3>{2, 9, 8}, 13);
  const Tensor<float, 3> no_cache(Shape<3>{2, 0, 8});
  CHECK(layer.forward(h.view(), no_cache.view()).shape() == h.shape());
  CHECK(layer.forward(h.view(), {}).values() == layer.forward(h.view(), no_cache.view()).values());
  // A cache that is given must be (B, M, D): an empty (0, 0, 0) one is not "no cache".
  const float storage = 0;
  const lsattn::HostView<const float, 3> wrong_empty(&storage, Shape<3>{0, 0, 0});
  CHECK_THROWS_WITH(layer.forward(h.view(), wrong_empty), Contains("h_cache") && Contains("(0, 0, 0)"));
  const lra::Config local{2, 4, 8, 4, 0, false, 0};
  const lra::AttentionLS<lsattn::cpu, float> window_only(local, lra::Weights<float>::random(local, 14));
  const auto x = random_tensor(Shape<3>{1, 70, 8}, 15);
  CHECK(window_only.forward(x.view()).shape() == x.shape());
}

TEST_CASE("float overflow inside a layer is reported as such, never as an internal tensor or NaN output", "[limits][overflow]") {
  // Finite inputs and weights whose products overflow float: the error names the layer and
  // says what happened; it never reports "query" (a tensor the caller never gave) or returns NaN.
  const lra::Config config{2, 4, 8, 4, 2, false, 0};
  const lra::AttentionLS<lsattn::cpu, float> layer(config, lra::Weights<float>::random(config, 16));
  // LayerNorm keeps keys O(1), so 1e20 inputs are fine there; 3e38 overflows the projections.
  CHECK_NOTHROW(layer.forward(Tensor<float, 3>(Shape<3>{1, 9, 8}, 1e20f).view()));
  {
    const Tensor<float, 3> x(Shape<3>{1, 9, 8}, 3e38f);
    CHECK_THROWS_AS(layer.forward(x.view()), lsattn::overflow);
    CHECK_THROWS_WITH(layer.forward(x.view()), Contains("lra::AttentionLS: float overflow inside the layer") &&
                                                   Contains("too large in magnitude"));
  }
  ls_heads::Config heads_config;
  heads_config.dim = 8;
  heads_config.num_heads = 2;
  heads_config.local_heads = {0};
  heads_config.window = 3;
  const ls_heads::LsHeadsAttention<lsattn::cpu, float> heads(heads_config, ls_heads::Weights<float>::random(heads_config, 17));
  // Without LayerNorm, q·k of 1e20 inputs overflows: before, such scores passed for masked
  // keys (-inf) and the output was silently W_o.bias.
  for (float magnitude : {1e20f, -1e20f, 3e38f}) {
    INFO("x = " << magnitude);
    const Tensor<float, 3> x(Shape<3>{1, 9, 8}, magnitude);
    CHECK_THROWS_WITH(heads.forward(x.view()), Contains("ls_heads::LsHeadsAttention: float overflow"));
  }
  // An input that is itself non-finite is still named as the caller's input, not as overflow.
  Tensor<float, 3> nan_x(Shape<3>{1, 9, 8}, 0.5f);
  nan_x(0, 2, 3) = NAN;
  CHECK_THROWS_WITH(layer.forward(nan_x.view()), Contains("x: non-finite") && !Contains("overflow"));
}
