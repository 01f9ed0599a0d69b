// `lsattn run --device cuda` (tools/cli/cuda_run.cu) in-process: on a GPU, every variant and
// dtype against the golden outputs of the published PyTorch code (the CPU run's references);
// without one, the clear error (a failure under LSATTN_REQUIRE_GPU=1). A host translation unit:
// the command line itself is compiled by the host compiler, its CUDA part by nvcc.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "cli.hpp"
#include "lsattn/backend/cuda/runtime.cuh"  // host code only: device_available, gpu_required
#include "lsattn/io/parameters.hpp"

namespace {

using Catch::Matchers::Contains;
using lsattn::index_t;
using lsattn::io::SafeTensorsFile;
namespace fs = std::filesystem;

struct Result {
  int code;
  std::string out, err;
};

Result run(const std::vector<std::string>& args) {
  std::vector<const char*> argv{"lsattn"};
  for (const auto& a : args) argv.push_back(a.c_str());
  std::ostringstream out, err;
  const int code = lsattn::cli::main(static_cast<int>(argv.size()), argv.data(), out, err);
  return {code, out.str(), err.str()};
}

std::string scratch(const std::string& name) {
  const fs::path dir = fs::temp_directory_path() / "lsattn_test_cuda_cli";
  fs::create_directories(dir);
  return (dir / name).string();
}

// max |got − want| / max |want|, NaN → infinite.
double relative_error(const lsattn::Tensor<float, 3>& got, const lsattn::Tensor<float, 3>& want) {
  double scale = 1e-3, worst = 0;
  for (float v : want.values()) scale = std::max(scale, static_cast<double>(std::abs(v)));
  for (index_t i = 0; i < got.size(); ++i) {
    const double difference = std::abs(static_cast<double>(got.values()[i]) - want.values()[i]);
    if (!std::isfinite(difference)) return HUGE_VAL;
    worst = std::max(worst, difference);
  }
  return worst / scale;
}

bool gpu_present() {
  if (lsattn::cuda_detail::device_available()) return true;
  if (lsattn::cuda_detail::gpu_required()) FAIL("LSATTN_REQUIRE_GPU=1 but no CUDA device is visible");
  return false;
}

}  // namespace

TEST_CASE("CUDA CLI: run --device cuda reproduces the golden outputs in fp32, fp16 and bf16", "[cuda][gpu][cli]") {
  struct Case {
    const char* variant;
    const char* dir;
  };
  const Case cases[] = {{"lra", "test/data/lra/basic/"},          {"lra", "test/data/lra/cls_pooling/"},
                        {"lra", "test/data/lra/cls_embed/"},      {"lra", "test/data/lra/ragged/"},
                        {"causal", "test/data/causal/basic/"},    {"causal", "test/data/causal/rank2_big_cache/"},
                        {"vision", "test/data/vision/basic/"},    {"vision", "test/data/vision/two_globals/"}};
  const bool gpu = gpu_present();
  for (const Case& c : cases) {
    for (const char* dtype : {"fp32", "fp16", "bf16"}) {
      INFO(c.variant << " " << c.dir << " " << dtype);
      const auto output = scratch(std::string(c.variant) + "_" + dtype + ".safetensors");
      const std::string dir = c.dir;
      const Result result = run({"run", "--variant", c.variant, "--weights", dir + "weights.safetensors", "--input",
                                 dir + "input.safetensors", "--output", output, "--device", "cuda", "--dtype", dtype});
      if (!gpu) {  // the CUDA part is linked in: the error is the missing device, not the build
        CHECK(result.code == 1);
        CHECK_THAT(result.err, Contains("no CUDA device"));
        continue;
      }
      REQUIRE(result.err == "");
      CHECK_THAT(result.out, Contains("ran on"));
      const auto got = SafeTensorsFile::open(output).load_float<3>("output.y");
      const auto want = SafeTensorsFile::open(dir + "expected.safetensors").load_float<3>("output.y");
      REQUIRE(got.shape() == want.shape());
      // fp32: as the CPU against PyTorch; 16-bit: inputs, weights and activations rounded.
      const double tolerance = std::string(dtype) == "fp32" ? 1e-4 : std::string(dtype) == "fp16" ? 2e-2 : 6e-2;
      CHECK(relative_error(got, want) < tolerance);
    }
  }
}

TEST_CASE("CUDA CLI: gpt --device cuda gives the CPU run's logits, both versions", "[cuda][gpu][cli][ls_gpt]") {
  namespace gpt = lsattn::models::ls_gpt;
  const bool gpu = gpu_present();
  for (const auto version : {gpt::Version::packed_heads, gpt::Version::split_heads}) {
    gpt::Config config;
    config.block_size = 32, config.vocab_size = 40, config.n_layer = 2, config.n_head = 4, config.head_dim = 16;
    config.n_embd = 64, config.n_local_head = 2, config.local_attn_span = 5, config.version = version;
    const auto weights = gpt::Weights<float>::random(config, 7);
    lsattn::io::SafeTensorsWriter w;
    lsattn::io::save_parameters(w, weights, config);
    for (const auto& [k, v] : std::map<std::string, std::string>{
             {"block_size", "32"}, {"vocab_size", "40"}, {"n_layer", "2"}, {"n_head", "4"}, {"head_dim", "16"},
             {"n_embd", "64"}, {"n_local_head", "2"}, {"local_attn_span", "5"}, {"bias", "True"}})
      w.set_metadata(k, v);
    const auto weights_path = scratch("gpt_weights.safetensors");
    w.write(weights_path);
    lsattn::Tensor<std::int64_t, 2> tokens(lsattn::Shape<2>{2, 29});
    for (index_t i = 0; i < tokens.size(); ++i) tokens.values()[i] = (i * 17 + 3) % 40;
    lsattn::io::SafeTensorsWriter in;
    in.add("input.tokens", tokens);
    const auto input_path = scratch("gpt_input.safetensors");
    in.write(input_path);
    const auto cpu_path = scratch("gpt_cpu.safetensors");
    const Result cpu = run({"gpt", "--weights", weights_path, "--input", input_path, "--output", cpu_path});
    REQUIRE(cpu.err == "");
    const auto want = SafeTensorsFile::open(cpu_path).load_float<3>("output.logits");
    for (const char* dtype : {"fp32", "bf16"}) {
      INFO(gpt::version_name(version) << " " << dtype);
      const auto output = scratch(std::string("gpt_cuda_") + dtype + ".safetensors");
      const Result result = run({"gpt", "--weights", weights_path, "--input", input_path, "--output", output, "--device",
                                 "cuda", "--dtype", dtype});
      if (!gpu) {
        CHECK(result.code == 1);
        CHECK_THAT(result.err, Contains("no CUDA device"));
        continue;
      }
      REQUIRE(result.err == "");
      const auto got = SafeTensorsFile::open(output).load_float<3>("output.logits");
      REQUIRE(got.shape() == want.shape());
      CHECK(relative_error(got, want) < (std::string(dtype) == "fp32" ? 1e-4 : 6e-2));
    }
    const Result decoding = run({"gpt", "--weights", weights_path, "--input", input_path, "--output", scratch("x.safetensors"),
                                 "--device", "cuda", "--incremental"});
    CHECK(decoding.code == 1);
    CHECK_THAT(decoding.err, Contains("--incremental") && Contains("CPU only"));
  }
}

TEST_CASE("CUDA CLI: lm --device cuda gives the CPU run's log-probabilities and memories", "[cuda][gpu][cli][lm]") {
  const bool gpu = gpu_present();
  for (const char* name : {"two_segments", "short_last", "post_ln_relu"}) {
    const std::string dir = std::string("test/data/lm/") + name + "/";
    const auto cpu_path = scratch(std::string("lm_cpu_") + name + ".safetensors");
    const Result cpu = run({"lm", "--weights", dir + "weights.safetensors", "--input", dir + "input.safetensors", "--output",
                            cpu_path});
    REQUIRE(cpu.err == "");
    const auto want = SafeTensorsFile::open(cpu_path);
    for (const char* dtype : {"fp32", "bf16"}) {
      INFO(name << " " << dtype);
      const auto output = scratch(std::string("lm_cuda_") + name + "_" + dtype + ".safetensors");
      const Result result = run({"lm", "--weights", dir + "weights.safetensors", "--input", dir + "input.safetensors",
                                 "--output", output, "--device", "cuda", "--dtype", dtype});
      if (!gpu) {
        CHECK(result.code == 1);
        CHECK_THAT(result.err, Contains("no CUDA device"));
        continue;
      }
      REQUIRE(result.err == "");
      const auto got = SafeTensorsFile::open(output);
      const double tolerance = std::string(dtype) == "fp32" ? 1e-4 : 6e-2;
      for (const auto& tensor : want.names()) {
        INFO(tensor);
        REQUIRE(got.contains(tensor));
        CHECK(relative_error(got.load_float<3>(tensor), want.load_float<3>(tensor)) < tolerance);
      }
    }
  }
  const Result bpc = run({"eval-bpc", "--weights", "test/data/lm/two_segments/weights.safetensors", "--text",
                          "README.md", "--device", "cuda"});
  CHECK(bpc.code == 1);
  CHECK_THAT(bpc.err, Contains("eval-bpc") && Contains("CPU only"));
}
