// The `lsattn` command line: golden fixtures from the PyTorch reference, and every error path.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "cli.hpp"

namespace {

namespace fs = std::filesystem;
using Catch::Matchers::Contains;
using lsattn::index_t;
using lsattn::Shape;
using lsattn::Tensor;
using lsattn::io::SafeTensorsFile;
using lsattn::io::SafeTensorsWriter;

struct Result {
  int code;
  std::string out, err;
};

Result run(std::vector<std::string> args) {
  args.insert(args.begin(), "lsattn");
  std::vector<const char*> argv;
  for (const auto& a : args) argv.push_back(a.c_str());
  std::ostringstream out, err;
  const int code = lsattn::cli::main(static_cast<int>(argv.size()), argv.data(), out, err);
  return {code, out.str(), err.str()};
}

fs::path scratch(const std::string& name) {
  const fs::path dir = fs::temp_directory_path() / "lsattn_test_cli";
  fs::create_directories(dir);
  return dir / name;
}

const std::string data_dir = "test/data/lra/";

std::vector<std::string> run_args(const std::string& weights, const std::string& input, const std::string& output) {
  return {"run", "--variant", "lra", "--weights", weights, "--input", input, "--output", output};
}

// Rewrites a fixture's weights with edited metadata and optionally renamed tensors.
std::string edited_weights(const std::string& case_name, const std::map<std::string, std::string>& metadata,
                           const std::string& prefix = "", const std::string& drop = "") {
  const auto source = SafeTensorsFile::open(data_dir + case_name + "/weights.safetensors");
  SafeTensorsWriter writer;
  for (const auto& [k, v] : metadata)
    if (v != "<erase>") writer.set_metadata(k, v);
  for (const auto& name : source.names()) {
    if (name == drop) continue;
    const auto& info = source.info(name);
    if (info.shape.size() == 1) writer.add(prefix + name, source.load_float<1>(name));
    if (info.shape.size() == 2) writer.add(prefix + name, source.load_float<2>(name));
  }
  const auto path = scratch(case_name + "_edited.safetensors").string();
  writer.write(path);
  return path;
}

std::map<std::string, std::string> fixture_metadata(const std::string& case_name) {
  auto metadata = SafeTensorsFile::open(data_dir + case_name + "/weights.safetensors").metadata();
  return metadata;
}

}  // namespace

TEST_CASE("the CLI reproduces the PyTorch reference on every golden case", "[cli][golden]") {
  for (const char* name : {"basic", "odd_window", "window1", "rank0", "window0", "cls_embed", "cls_pooling",
                           "cls_self_only", "ragged"}) {
    INFO("case " << name);
    const std::string dir = data_dir + name + "/";
    const auto output = scratch(std::string(name) + "_out.safetensors").string();
    const Result result = run(run_args(dir + "weights.safetensors", dir + "input.safetensors", output));
    REQUIRE(result.err == "");
    REQUIRE(result.code == 0);
    const auto got = SafeTensorsFile::open(output).load_float<3>("output.y");
    const auto want = SafeTensorsFile::open(dir + "expected.safetensors").load_float<3>("output.y");
    REQUIRE(got.shape() == want.shape());
    double scale = 0, worst = 0;
    for (float v : want.values()) scale = std::max(scale, static_cast<double>(std::abs(v)));
    for (index_t i = 0; i < got.size(); ++i)
      worst = std::max(worst, static_cast<double>(std::abs(got.values()[i] - want.values()[i])));
    CHECK(worst / scale < 1e-5);
  }
}

TEST_CASE("flags override the metadata and --prefix selects a layer inside a model", "[cli]") {
  const std::string dir = data_dir + "basic/";
  auto metadata = fixture_metadata("basic");
  const auto output = scratch("override_out.safetensors").string();
  SECTION("a missing hyperparameter is supplied by a flag") {
    metadata["window_size"] = "<erase>";
    const auto weights = edited_weights("basic", metadata);
    auto args = run_args(weights, dir + "input.safetensors", output);
    const Result missing = run(args);
    CHECK(missing.code == 1);
    CHECK_THAT(missing.err, Contains("window_size") && Contains("--window"));
    args.insert(args.end(), {"--window", "4"});
    CHECK(run(args).code == 0);
  }
  SECTION("prefix") {
    const auto weights = edited_weights("basic", metadata, "model.transformer_0.mha.");
    const Result without = run(run_args(weights, dir + "input.safetensors", output));
    CHECK(without.code == 1);
    CHECK_THAT(without.err, Contains("W_q.weight") && Contains("prefix"));
    auto args = run_args(weights, dir + "input.safetensors", output);
    args.insert(args.end(), {"--prefix", "model.transformer_0.mha."});
    CHECK(run(args).code == 0);
  }
}

TEST_CASE("CLI error paths give clear messages", "[cli][errors]") {
  const std::string dir = data_dir + "basic/";
  const std::string weights = dir + "weights.safetensors", input = dir + "input.safetensors";
  const auto output = scratch("errors_out.safetensors").string();
  auto metadata = fixture_metadata("basic");

  SECTION("usage") {
    CHECK(run({}).code != 0);
    CHECK(run({"run", "--variant", "lra"}).code != 0);
    const Result unknown =
        run({"run", "--variant", "nope", "--weights", weights, "--input", input, "--output", output});
    CHECK(unknown.code != 0);
    CHECK_THAT(unknown.err + unknown.out, Contains("nope"));
    CHECK(run({"run", "--variant", "lra", "--weights", weights, "--input", input, "--output", output, "--threads", "-2"})
              .code != 0);
  }
  SECTION("files") {
    const Result missing = run(run_args("/nonexistent/w.safetensors", input, output));
    CHECK(missing.code == 1);
    CHECK_THAT(missing.err, Contains("/nonexistent/w.safetensors"));
    const auto garbage = scratch("garbage.safetensors").string();
    std::ofstream(garbage) << "not a safetensors file at all";
    const Result bad = run(run_args(garbage, input, output));
    CHECK(bad.code == 1);
    CHECK_THAT(bad.err, Contains("garbage.safetensors"));
    const Result unwritable = run(run_args(weights, input, "/nonexistent/dir/out.safetensors"));
    CHECK(unwritable.code == 1);
    CHECK_THAT(unwritable.err, Contains("/nonexistent/dir/out.safetensors"));
  }
  SECTION("hyperparameters") {
    auto m = metadata;
    m["num_head"] = "two";
    Result r = run(run_args(edited_weights("basic", m), input, output));
    CHECK_THAT(r.err, Contains("num_head") && Contains("two"));
    m = metadata;
    m["transformer_dim"] = "20";
    r = run(run_args(edited_weights("basic", m), input, output));
    CHECK(r.code == 1);
    CHECK_THAT(r.err, Contains("transformer_dim") && Contains("20"));
    m = metadata;
    m["pooling_mode"] = "max";
    r = run(run_args(edited_weights("basic", m), input, output));
    CHECK_THAT(r.err, Contains("pooling_mode") && Contains("max"));
    r = run([&] {
      auto a = run_args(weights, input, output);
      a.insert(a.end(), {"--rank", "0"});
      return a;
    }());
    CHECK(r.code == 1);
    CHECK_THAT(r.err, Contains("dconv_fc") && Contains("num_landmarks"));
    r = run([&] {
      auto a = run_args(weights, input, output);
      a.insert(a.end(), {"--heads", "4"});
      return a;
    }());
    CHECK(r.code == 1);
    CHECK_THAT(r.err, Contains("transformer_dim") || Contains("shape"));
    r = run(run_args(edited_weights("basic", metadata, "", "dual_ln_s.bias"), input, output));
    CHECK_THAT(r.err, Contains("dual_ln_s.bias"));
  }
  SECTION("inputs") {
    auto write_input = [&](const std::string& name, auto add) {
      SafeTensorsWriter writer;
      add(writer);
      const auto path = scratch(name).string();
      writer.write(path);
      return path;
    };
    const auto no_x = write_input("no_x.safetensors", [](SafeTensorsWriter& w) {
      w.add("input.mask", Tensor<float, 2>(Shape<2>{2, 16}, 1.0f));
    });
    CHECK_THAT(run(run_args(weights, no_x, output)).err, Contains("input.x"));
    const auto wrong_width = write_input("wrong_width.safetensors", [](SafeTensorsWriter& w) {
      w.add("input.x", Tensor<float, 3>(Shape<3>{2, 16, 15}, 0.1f));
    });
    CHECK_THAT(run(run_args(weights, wrong_width, output)).err, Contains("x") && Contains("(2, 16, 15)"));
    const auto wrong_rank = write_input("wrong_rank.safetensors", [](SafeTensorsWriter& w) {
      w.add("input.x", Tensor<float, 2>(Shape<2>{16, 16}, 0.1f));
    });
    CHECK_THAT(run(run_args(weights, wrong_rank, output)).err, Contains("input.x"));
    const auto bad_mask = write_input("bad_mask.safetensors", [](SafeTensorsWriter& w) {
      w.add("input.x", Tensor<float, 3>(Shape<3>{2, 16, 16}, 0.1f));
      w.add("input.mask", Tensor<float, 2>(Shape<2>{2, 15}, 1.0f));
    });
    CHECK_THAT(run(run_args(weights, bad_mask, output)).err, Contains("mask") && Contains("(2, 15)"));
    const auto nan_input = write_input("nan.safetensors", [](SafeTensorsWriter& w) {
      Tensor<float, 3> x(Shape<3>{1, 4, 16}, 0.1f);
      x(0, 2, 5) = std::nanf("");
      w.add("input.x", x);
    });
    CHECK_THAT(run(run_args(weights, nan_input, output)).err, Contains("non-finite") && Contains("(0, 2, 5)"));
    const auto empty = write_input("empty.safetensors", [](SafeTensorsWriter& w) {
      w.add("input.x", Tensor<float, 3>(Shape<3>{1, 0, 16}));
    });
    CHECK_THAT(run(run_args(weights, empty, output)).err, Contains("sequence length"));
  }
}
