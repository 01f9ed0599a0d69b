// `lsattn run --device cuda` (tools/cli/cuda_run.cu) in-process: on a GPU, every variant and
// dtype against the golden outputs of the published PyTorch code (the CPU run's references);
// without one, the clear error (a failure under LSATTN_REQUIRE_GPU=1). A host translation unit:
// the command line itself is compiled by the host compiler, its CUDA part by nvcc.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <filesystem>
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
