// Modules of the published code (NVIDIA/transformer-ls 1527c5c), exported from checkpoints saved
// as their training code saves them, run through the `lsattn` command line in-process.
// Fixtures: tools/reference/make_published_fixtures.py (test/data/published/<case>/); each
// expected.safetensors holds the exact `lsattn ...` command in its metadata, and that command is
// what runs here.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <sstream>
#include <string>
#include <vector>

#include "cli.hpp"
#include "test_helpers.hpp"

namespace {

using test_helpers::relative_difference;

namespace fs = std::filesystem;
using lsattn::index_t;
using lsattn::Tensor;
using lsattn::io::SafeTensorsFile;

// fp32 noise: the published fp32 forward and lsattn differ by 1e-7 to 3e-7 of the output's
// largest magnitude on these cases (printed by the generator with --lsattn).
constexpr double tolerance = 1e-5;

const std::string data_dir = "test/data/published/";

std::vector<std::string> split(const std::string& command) {
  std::istringstream words(command);
  std::vector<std::string> out;
  for (std::string word; words >> word;) out.push_back(word);
  return out;
}

// Runs the command stored in the case's expected.safetensors (OUT.safetensors replaced by a
// scratch file) and compares every expected tensor with the CLI's.
void check_case(const std::string& name) {
  INFO("published case " << name);
  const std::string dir = data_dir + name + "/";
  const auto want = SafeTensorsFile::open(dir + "expected.safetensors");
  const auto command = want.metadata().find("command");
  REQUIRE(command != want.metadata().end());
  auto args = split(command->second);
  REQUIRE(args.size() > 2);
  REQUIRE(args.front() == "lsattn");
  CHECK(command->second.find(dir + "weights.safetensors") != std::string::npos);

  const fs::path scratch = fs::temp_directory_path() / "lsattn_test_published";
  fs::create_directories(scratch);
  const auto output = (scratch / (name + ".safetensors")).string();
  fs::remove(output);
  const auto out_arg = std::find(args.begin(), args.end(), "OUT.safetensors");
  REQUIRE(out_arg != args.end());
  *out_arg = output;

  std::vector<const char*> argv;
  for (const auto& a : args) argv.push_back(a.c_str());
  std::ostringstream out, err;
  const int code = lsattn::cli::main(static_cast<int>(argv.size()), argv.data(), out, err);
  INFO("lsattn stderr: " << err.str());
  REQUIRE(code == 0);

  const auto got = SafeTensorsFile::open(output);
  CHECK(got.names() == want.names());
  for (const auto& tensor : want.names()) {
    INFO("tensor " << tensor);
    CHECK(relative_difference(got.load_float<3>(tensor), want.load_float<3>(tensor)) < tolerance);
  }
}

}  // namespace

TEST_CASE("published LRA ModelForSC: the cls_last_layer layer with the model's cls_embed", "[published][lra]") {
  // run_listops.sh's shape: layer 1 of 2 (model.transformer_1.mha.), r = 3, w = 4, a padded row.
  check_case("lra_listops_last_layer");
}

TEST_CASE("published LRA ModelForSC with r = 0: zero-size dconv_fc tensors load", "[published][lra]") {
  // The published AttentionLS always creates dconv_fc = Linear(D, nh * r): weight [0, D], bias [0].
  check_case("lra_rank0_first_layer");
}

TEST_CASE("published fairseq TransformerLS: log-probabilities and memory over segments", "[published][lm]") {
  // decoder.model.* of a fairseq checkpoint; the last segment of lm_fairseq is padded as published.
  check_case("lm_fairseq");
  check_case("lm_fairseq_bias_clamp");
}

TEST_CASE("published fairseq TransformerLS: one ChunkedLSAttention on the input it got in the model",
          "[published][causal]") {
  check_case("lm_fairseq_layer1");
  check_case("lm_fairseq_bias_clamp_layer0");
}

TEST_CASE("published MsViT: a block's long-short attention", "[published][vision]") {
  // module.layer1.3.attn. (rpe, r = 2) and module.layer2.1.attn. (no rpe, r = 0).
  check_case("vision_msvit_stage1_block1");
  check_case("vision_msvit_stage2_rank0");
}
