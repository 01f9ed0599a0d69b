// The `lsattn` command line: golden fixtures from the PyTorch reference, and every error path.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <new>
#include <sstream>
#include <stdexcept>

#include "cli.hpp"
#include "test_helpers.hpp"

namespace {

using test_helpers::relative_difference;

namespace fs = std::filesystem;
using Catch::Matchers::Contains;
using Catch::Matchers::StartsWith;
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

namespace {

namespace causal = lsattn::models::causal;

// A small random language model written with its metadata, as an exporter would.
std::string write_model(const causal::LmConfig& config, const std::string& name, std::uint64_t seed,
                        const std::map<std::string, std::string>& extra = {}) {
  SafeTensorsWriter writer;
  const auto weights = causal::LmWeights<float>::random(config, seed);
  lsattn::io::save_parameters(writer, weights, config);
  const std::map<std::string, std::string> metadata{
      {"d_model", std::to_string(config.d_model)},     {"n_head", std::to_string(config.n_head)},
      {"d_inner", std::to_string(config.d_inner)},     {"n_layer", std::to_string(config.n_layer)},
      {"vocab_size", std::to_string(config.vocab_size)}, {"mem_len", std::to_string(config.mem_len)},
      {"chunk_size", std::to_string(config.chunk_size)}, {"chunk_rank", std::to_string(config.chunk_rank)},
      {"window_len", std::to_string(config.window_len)}, {"pre_ln", config.pre_ln ? "True" : "False"},
      {"use_gelu", config.use_gelu ? "true" : "false"}, {"use_bias", config.use_bias ? "true" : "false"},
      {"clamp_len", "-1"}, {"cpos_clamp_len", "-1"}};
  for (const auto& [k, v] : metadata) writer.set_metadata(k, v);
  for (const auto& [k, v] : extra) writer.set_metadata(k, v);
  const auto path = scratch(name).string();
  writer.write(path);
  return path;
}

const causal::LmConfig small_lm{256, 8, 2, 16, 2, 8, 4, 1, 8, true, true, false, -1, -1, 0};

double parse_bpc(const std::string& text) {
  const auto at = text.find("bpc ");
  REQUIRE(at != std::string::npos);
  return std::stod(text.substr(at + 4));
}

}  // namespace

TEST_CASE("lm runs segments with the memory carried over", "[cli][lm]") {
  const auto weights = write_model(small_lm, "lm_weights.safetensors", 3);
  SafeTensorsWriter inputs;
  Tensor<std::int64_t, 2> first(Shape<2>{2, 8}), second(Shape<2>{2, 5});
  for (index_t i = 0; i < first.size(); ++i) first.values()[i] = (i * 37) % 256;
  for (index_t i = 0; i < second.size(); ++i) second.values()[i] = (i * 11 + 5) % 256;
  inputs.add("input.tokens.0", first);
  inputs.add("input.tokens.1", second);
  const auto input = scratch("lm_input.safetensors").string();
  inputs.write(input);
  const auto output = scratch("lm_output.safetensors").string();
  const Result result = run({"lm", "--weights", weights, "--input", input, "--output", output});
  REQUIRE(result.err == "");
  REQUIRE(result.code == 0);

  // The same computation through the library API.
  const causal::TransformerLSModel<lsattn::cpu, float> model(small_lm, causal::LmWeights<float>::random(small_lm, 3));
  auto state = model.initial_state(2);
  const auto got = SafeTensorsFile::open(output);
  const auto want0 = model.forward(first.view(), state);
  const auto want1 = model.forward(second.view(), state);
  CHECK(got.load_float<3>("output.logprobs.0").values() == want0.values());
  CHECK(got.load_float<3>("output.logprobs.1").values() == want1.values());
  CHECK(got.load_float<3>("output.cache.1.1").values() == state.caches[1].values());
  CHECK(got.contains("output.cache.0.0"));

  SECTION("errors") {
    const Result bad_flag = run({"lm", "--weights", weights, "--input", input, "--output", output, "--pooling", "cls"});
    CHECK(bad_flag.code != 0);
    const Result wrong_vocab = run({"lm", "--weights", weights, "--input", input, "--output", output, "--vocab", "100"});
    CHECK(wrong_vocab.code == 1);
    CHECK_THAT(wrong_vocab.err, Contains("in_emb.weight") && Contains("(100, 8)"));
    const Result bool_flag = run({"lm", "--weights", weights, "--input", input, "--output", output, "--pre-ln", "maybe"});
    CHECK_THAT(bool_flag.err, Contains("pre_ln") && Contains("maybe") && Contains("command line"));
    SafeTensorsWriter bad_inputs;
    Tensor<std::int64_t, 2> out_of_range(Shape<2>{1, 4}, 300);
    bad_inputs.add("input.tokens.0", out_of_range);
    const auto bad = scratch("lm_bad_input.safetensors").string();
    bad_inputs.write(bad);
    CHECK_THAT(run({"lm", "--weights", weights, "--input", bad, "--output", output}).err, Contains("id 300"));
    SafeTensorsWriter float_inputs;
    float_inputs.add("input.tokens.0", Tensor<float, 2>(Shape<2>{1, 4}, 1.0f));
    const auto floats = scratch("lm_float_input.safetensors").string();
    float_inputs.write(floats);
    CHECK_THAT(run({"lm", "--weights", weights, "--input", floats, "--output", output}).err, Contains("F32"));
  }
}

TEST_CASE("eval-bpc scores a text with the memory carried over", "[cli][lm][bpc]") {
  const auto weights = write_model(small_lm, "bpc_weights.safetensors", 5, {{"tokens_per_sample", "16"}});
  std::string text;
  for (int i = 0; i < 300; ++i) text += "the quick brown fox " + std::to_string(i) + "\n";
  const auto path = scratch("bpc_text.txt").string();
  std::ofstream(path, std::ios::binary) << text;

  const Result result = run({"eval-bpc", "--weights", weights, "--text", path, "--no-progress", "--max-bytes", "1000",
                             "--protocol", "every-byte"});
  REQUIRE(result.err == "");
  REQUIRE(result.code == 0);
  const double bpc = parse_bpc(result.out);
  CHECK_THAT(result.out, Contains("over 1000 scored tokens (protocol every-byte: 1000 tokens from 1000 bytes in 63 blocks of 16"));

  // Independently: segments of 16 bytes, each byte predicted from the previous one (the first
  // from the newline start symbol), the memory carried over.
  const causal::TransformerLSModel<lsattn::cpu, float> model(small_lm, causal::LmWeights<float>::random(small_lm, 5));
  auto state = model.initial_state(1);
  double nats = 0;
  std::int64_t previous = 10;
  for (index_t start = 0; start < 1000; start += 16) {
    const index_t count = std::min<index_t>(16, 1000 - start);
    Tensor<std::int64_t, 2> inputs(Shape<2>{1, count});
    for (index_t i = 0; i < count; ++i) inputs(0, i) = i == 0 ? previous : static_cast<unsigned char>(text[start + i - 1]);
    previous = static_cast<unsigned char>(text[start + count - 1]);
    const auto logprobs = model.forward(inputs.view(), state);
    for (index_t i = 0; i < count; ++i) nats -= logprobs(0, i, static_cast<unsigned char>(text[start + i]));
  }
  CHECK(bpc == Approx(nats / std::log(2.0) / 1000).epsilon(1e-5));
  CHECK(bpc > 4.0);  // an untrained model is close to uniform over 256 bytes (8 bits)

  SECTION("the published protocol (the default): blocks as they are, a block's first token unscored") {
    const Result published = run({"eval-bpc", "--weights", weights, "--text", path, "--no-progress", "--max-bytes", "1000"});
    REQUIRE(published.code == 0);
    // fairseq's truncated_bptt_lm: input = the block, target = the block shifted left by one,
    // the last target padding; the memory carried from block to block. 63 blocks: 62 of 16
    // tokens and one of 8, so 62·15 + 7 = 937 scored tokens.
    auto fresh = model.initial_state(1);
    double published_nats = 0;
    index_t scored = 0;
    for (index_t start = 0; start < 1000; start += 16) {
      const index_t count = std::min<index_t>(16, 1000 - start);
      Tensor<std::int64_t, 2> inputs(Shape<2>{1, count});
      for (index_t i = 0; i < count; ++i) inputs(0, i) = static_cast<unsigned char>(text[start + i]);
      const auto logprobs = model.forward(inputs.view(), fresh);
      for (index_t i = 0; i + 1 < count; ++i, ++scored) published_nats -= logprobs(0, i, inputs(0, i + 1));
    }
    CHECK(scored == 937);
    CHECK_THAT(published.out, Contains("over 937 scored tokens (protocol published: 1000 tokens from 1000 bytes in 63 blocks of 16"));
    CHECK(parse_bpc(published.out) == Approx(published_nats / std::log(2.0) / scored).epsilon(1e-5));
    CHECK(parse_bpc(published.out) != Approx(bpc).epsilon(1e-9));
  }
  SECTION("a published block needs two tokens; a text of one token has nothing to score") {
    CHECK_THAT(run({"eval-bpc", "--weights", weights, "--text", path, "--tokens-per-sample", "1"}).err,
               Contains("--tokens-per-sample") && Contains(">= 2 tokens"));
    CHECK(run({"eval-bpc", "--weights", weights, "--text", path, "--tokens-per-sample", "1", "--protocol", "every-byte",
               "--max-bytes", "5", "--no-progress"}).code == 0);
    CHECK_THAT(run({"eval-bpc", "--weights", weights, "--text", path, "--max-bytes", "1", "--no-progress"}).err,
               Contains("nothing to score"));
    CHECK_THAT(run({"eval-bpc", "--weights", weights, "--text", path, "--protocol", "paper"}).err, Contains("--protocol"));
  }

  SECTION("the progress bar goes to stderr") {
    const Result shown = run({"eval-bpc", "--weights", weights, "--text", path, "--max-bytes", "100"});
    CHECK(shown.code == 0);
    CHECK_THAT(shown.err, Contains("bytes/s") && Contains("100/100"));
  }
  SECTION("errors") {
    CHECK_THAT(run({"eval-bpc", "--weights", weights, "--text", "/nonexistent.txt"}).err, Contains("/nonexistent.txt"));
    const auto empty = scratch("empty.txt").string();
    std::ofstream(empty).close();
    CHECK_THAT(run({"eval-bpc", "--weights", weights, "--text", empty}).err, Contains("empty"));
    CHECK_THAT(run({"eval-bpc", "--weights", weights, "--text", path, "--tokens-per-sample", "-3"}).err,
               Contains("--tokens-per-sample"));
    causal::LmConfig tiny = small_lm;
    tiny.vocab_size = 100;
    const auto tiny_weights = write_model(tiny, "bpc_tiny.safetensors", 1);
    CHECK_THAT(run({"eval-bpc", "--weights", tiny_weights, "--text", path}).err, Contains("vocab_size") && Contains("--dict"));
    CHECK_THAT(run({"eval-bpc", "--weights", weights, "--text", path, "--dict", "/nonexistent.dict"}).err,
               Contains("--dict"));
  }
}

TEST_CASE("eval-bpc maps bytes through a fairseq dictionary", "[cli][lm][bpc]") {
  causal::LmConfig config = small_lm;
  config.vocab_size = 8;
  const auto weights = write_model(config, "bpc_dict_weights.safetensors", 9);
  const auto dict = scratch("dict.txt").string();
  std::ofstream(dict) << "116 500\n104 400\n101 300\n";  // 't', 'h', 'e' → ids 4, 5, 6
  const auto path = scratch("dict_text.txt").string();
  std::ofstream(path, std::ios::binary) << "the\nthe x";
  const Result result = run({"eval-bpc", "--weights", weights, "--text", path, "--dict", dict, "--no-progress",
                             "--tokens-per-sample", "4", "--allow-unk", "--protocol", "every-byte"});
  REQUIRE(result.code == 0);
  CHECK(result.err == "lsattn: --allow-unk: 2 bytes of the text missing from --dict '" + dict +
                          "' mapped to <unk> (id 3)\n");
  CHECK_THAT(result.out, Contains("2 bytes mapped to <unk>"));
  // </s> = 2 for the newline and as the start symbol; <unk> = 3 for ' ' and 'x'.
  const std::vector<std::int64_t> ids{4, 5, 6, 2, 4, 5, 6, 3, 3};
  const causal::TransformerLSModel<lsattn::cpu, float> model(config, causal::LmWeights<float>::random(config, 9));
  auto state = model.initial_state(1);
  double nats = 0;
  for (index_t start = 0; start < 9; start += 4) {
    const index_t count = std::min<index_t>(4, 9 - start);
    Tensor<std::int64_t, 2> inputs(Shape<2>{1, count});
    for (index_t i = 0; i < count; ++i) inputs(0, i) = start + i == 0 ? 2 : ids[start + i - 1];
    const auto logprobs = model.forward(inputs.view(), state);
    for (index_t i = 0; i < count; ++i) nats -= logprobs(0, i, ids[start + i]);
  }
  CHECK(parse_bpc(result.out) == Approx(nats / std::log(2.0) / 9).epsilon(1e-5));

  // The published protocol with fairseq's lines: the last line "the x" has no newline, yet
  // fairseq's binarisation ends it with </s> too: 10 tokens, blocks [4 5 6 2] [4 5 6 3] [3 2],
  // no start symbol, 3 + 3 + 1 scored.
  const Result published = run({"eval-bpc", "--weights", weights, "--text", path, "--dict", dict, "--no-progress",
                                "--tokens-per-sample", "4", "--allow-unk"});
  REQUIRE(published.code == 0);
  CHECK_THAT(published.out, Contains("over 7 scored tokens (protocol published: 10 tokens from 9 bytes in 3 blocks of 4"));
  const std::vector<std::int64_t> stream{4, 5, 6, 2, 4, 5, 6, 3, 3, 2};
  auto fresh = model.initial_state(1);
  double published_nats = 0;
  for (index_t start = 0; start < 10; start += 4) {
    const index_t count = std::min<index_t>(4, 10 - start);
    Tensor<std::int64_t, 2> inputs(Shape<2>{1, count});
    for (index_t i = 0; i < count; ++i) inputs(0, i) = stream[start + i];
    const auto logprobs = model.forward(inputs.view(), fresh);
    for (index_t i = 0; i + 1 < count; ++i) published_nats -= logprobs(0, i, stream[start + i + 1]);
  }
  CHECK(parse_bpc(published.out) == Approx(published_nats / std::log(2.0) / 7).epsilon(1e-5));
  // A text that ends with its newline gets no extra </s>; --max-bytes (a prefix) never does.
  const auto ended = scratch("dict_text_ended.txt").string();
  std::ofstream(ended, std::ios::binary) << "the\nthe\n";
  CHECK_THAT(run({"eval-bpc", "--weights", weights, "--text", ended, "--dict", dict, "--no-progress", "--tokens-per-sample",
                  "4"}).out,
             Contains("protocol published: 8 tokens from 8 bytes"));
  CHECK_THAT(run({"eval-bpc", "--weights", weights, "--text", path, "--dict", dict, "--no-progress", "--tokens-per-sample",
                  "4", "--max-bytes", "3"}).out,
             Contains("protocol published: 3 tokens from 3 bytes"));
}


TEST_CASE("the CLI reproduces the PyTorch causal layer and model references", "[cli][golden][causal]") {
  for (const char* name : {"basic", "bias_clamp", "short_segment", "rank2_big_cache"}) {
    INFO("causal case " << name);
    const std::string dir = "test/data/causal/" + std::string(name) + "/";
    const auto output = scratch(std::string("causal_") + name + ".safetensors").string();
    const Result result = run({"run", "--variant", "causal", "--weights", dir + "weights.safetensors", "--input",
                               dir + "input.safetensors", "--output", output});
    REQUIRE(result.err == "");
    CHECK(relative_difference(SafeTensorsFile::open(output).load_float<3>("output.y"),
                              SafeTensorsFile::open(dir + "expected.safetensors").load_float<3>("output.y")) < 1e-5);
  }
  for (const char* name : {"two_segments", "post_ln_relu", "short_last"}) {
    INFO("lm case " << name);
    const std::string dir = "test/data/lm/" + std::string(name) + "/";
    const auto output = scratch(std::string("lm_") + name + ".safetensors").string();
    const Result result = run({"lm", "--weights", dir + "weights.safetensors", "--input", dir + "input.safetensors",
                               "--output", output});
    REQUIRE(result.err == "");
    const auto got = SafeTensorsFile::open(output);
    const auto want = SafeTensorsFile::open(dir + "expected.safetensors");
    CHECK(got.names() == want.names());
    for (const auto& tensor : want.names()) {
      INFO(tensor);
      CHECK(relative_difference(got.load_float<3>(tensor), want.load_float<3>(tensor)) < 1e-5);
    }
  }
}

TEST_CASE("causal CLI error paths", "[cli][errors][causal]") {
  const std::string dir = "test/data/causal/basic/";
  const auto output = scratch("causal_errors.safetensors").string();
  auto args = [&](std::vector<std::string> extra) {
    std::vector<std::string> a{"run", "--variant", "causal", "--weights", dir + "weights.safetensors", "--input",
                               dir + "input.safetensors", "--output", output};
    a.insert(a.end(), extra.begin(), extra.end());
    return a;
  };
  CHECK_THAT(run(args({"--pooling", "cls"})).err, Contains("--pooling") && Contains("does not apply"));
  CHECK_THAT(run(args({"--chunk", "3"})).err, Contains("multiple of chunk_size"));
  CHECK_THAT(run(args({"--use-bias", "true"})).err, Contains("proj_query.bias"));
  CHECK_THAT(run(args({"--heads", "3"})).err, Contains("d_model") && Contains("n_head"));
  CHECK_THAT(run(args({"--window", "zero"})).err, Contains("window_len") && Contains("zero"));
  CHECK_THAT(run({"run", "--variant", "causal", "--weights", dir + "weights.safetensors", "--input",
                  "test/data/lra/basic/input.safetensors", "--output", output})
                 .err,
             Contains("input.h"));
}

TEST_CASE("the CLI reproduces the PyTorch 2D reference", "[cli][golden][vision]") {
  for (const char* name : {"basic", "no_global", "odd_w", "rank0", "w4", "rect", "ragged", "two_globals", "rect_ragged"}) {
    INFO("vision case " << name);
    const std::string dir = "test/data/vision/" + std::string(name) + "/";
    const auto output = scratch(std::string("vision_") + name + ".safetensors").string();
    const Result result = run({"run", "--variant", "vision", "--weights", dir + "weights.safetensors", "--input",
                               dir + "input.safetensors", "--output", output});
    REQUIRE(result.err == "");
    CHECK(relative_difference(SafeTensorsFile::open(output).load_float<3>("output.y"),
                              SafeTensorsFile::open(dir + "expected.safetensors").load_float<3>("output.y")) < 1e-5);
  }
}

namespace {

// A copy of a fixture's weights with its metadata edited ("<erase>" removes a key), tensors
// dropped and extra tensors added; floating-point tensors are stored as F32.
std::string rewritten_weights(const std::string& source_path, const std::string& name,
                              const std::map<std::string, std::string>& metadata_edits,
                              const std::function<void(SafeTensorsWriter&)>& add = {},
                              const std::vector<std::string>& drop = {}) {
  const auto source = SafeTensorsFile::open(source_path);
  SafeTensorsWriter writer;
  auto metadata = source.metadata();
  for (const auto& [key, value] : metadata_edits) {
    if (value == "<erase>") metadata.erase(key);
    else metadata[key] = value;
  }
  for (const auto& [key, value] : metadata) writer.set_metadata(key, value);
  for (const auto& tensor : source.names()) {
    if (std::find(drop.begin(), drop.end(), tensor) != drop.end()) continue;
    const bool integer = source.info(tensor).type == lsattn::io::dtype::i64;
    auto copy = [&]<std::size_t Rank>() {
      if (integer) writer.add(tensor, source.load_int64<Rank>(tensor));
      else writer.add(tensor, source.load_float<Rank>(tensor));
    };
    switch (source.info(tensor).shape.size()) {
      case 1: copy.operator()<1>(); break;
      case 2: copy.operator()<2>(); break;
      case 3: copy.operator()<3>(); break;
      case 4: copy.operator()<4>(); break;
      case 5: copy.operator()<5>(); break;
      default: FAIL("unexpected rank of " << tensor);
    }
  }
  if (add) add(writer);
  const auto path = scratch(name).string();
  writer.write(path);
  return path;
}

}  // namespace

TEST_CASE("switches the metadata leaves out are told by the tensors, contradictions are errors", "[cli][checkpoint]") {
  auto matches = [](const std::vector<std::string>& args, const std::string& expected) {
    const Result result = run(args);
    INFO(result.err);
    REQUIRE(result.code == 0);
    return relative_difference(SafeTensorsFile::open(args[8]).load_float<3>("output.y"),
                               SafeTensorsFile::open(expected).load_float<3>("output.y"));
  };
  const auto output = scratch("switches_out.safetensors").string();
  SECTION("2D: qkv_bias and rpe (MsViT checkpoints have both; the constructor defaults are false)") {
    const std::string dir = "test/data/vision/basic/";
    const auto bare = rewritten_weights(dir + "weights.safetensors", "vision_no_switches.safetensors",
                                        {{"qkv_bias", "<erase>"}, {"rpe", "<erase>"}});
    CHECK(matches({"run", "--variant", "vision", "--weights", bare, "--input", dir + "input.safetensors", "--output",
                   output},
                  dir + "expected.safetensors") < 1e-5);
    const auto stated_false = rewritten_weights(dir + "weights.safetensors", "vision_qkv_false.safetensors",
                                                {{"qkv_bias", "false"}});
    CHECK_THAT(run({"run", "--variant", "vision", "--weights", stated_false, "--input", dir + "input.safetensors",
                    "--output", output})
                   .err,
               Contains("qkv.bias' is present but qkv_bias = false"));
  }
  SECTION("causal: use_bias") {
    const std::string dir = "test/data/causal/bias_clamp/";
    const auto bare = rewritten_weights(dir + "weights.safetensors", "causal_no_use_bias.safetensors",
                                        {{"use_bias", "<erase>"}});
    CHECK(matches({"run", "--variant", "causal", "--weights", bare, "--input", dir + "input.safetensors", "--output",
                   output},
                  dir + "expected.safetensors") < 1e-5);
    const auto stated_false = rewritten_weights(dir + "weights.safetensors", "causal_use_bias_false.safetensors",
                                                {{"use_bias", "false"}});
    CHECK_THAT(run({"run", "--variant", "causal", "--weights", stated_false, "--input", dir + "input.safetensors",
                    "--output", output})
                   .err,
               Contains("proj_*.bias' tensors are present but use_bias = false"));
  }
  SECTION("LRA r = 0: the published module's zero-size dconv_fc loads") {
    const std::string dir = "test/data/lra/rank0/";
    const index_t width = std::stoll(fixture_metadata("rank0").at("transformer_dim"));
    const auto published = rewritten_weights(dir + "weights.safetensors", "lra_rank0_published.safetensors", {},
                                             [&](SafeTensorsWriter& writer) {
                                               writer.add("dconv_fc.weight", Tensor<float, 2>(Shape<2>{0, width}));
                                               writer.add("dconv_fc.bias", Tensor<float, 1>(Shape<1>{0}));
                                             },
                                             {"dconv_fc.weight", "dconv_fc.bias"});
    CHECK(matches({"run", "--variant", "lra", "--weights", published, "--input", dir + "input.safetensors", "--output",
                   output},
                  dir + "expected.safetensors") < 1e-5);
    const auto filled = rewritten_weights(dir + "weights.safetensors", "lra_rank0_filled.safetensors", {},
                                          [&](SafeTensorsWriter& writer) {
                                            writer.add("dconv_fc.weight", Tensor<float, 2>(Shape<2>{1, width}));
                                            writer.add("dconv_fc.bias", Tensor<float, 1>(Shape<1>{1}));
                                          },
                                          {"dconv_fc.weight", "dconv_fc.bias"});
    CHECK_THAT(run({"run", "--variant", "lra", "--weights", filled, "--input", dir + "input.safetensors", "--output",
                    output})
                   .err,
               Contains("dconv_fc") && Contains("num_landmarks = 0") && Contains("(1, " + std::to_string(width) + ")"));
  }
}

TEST_CASE("vision CLI error paths", "[cli][errors][vision]") {
  const std::string dir = "test/data/vision/basic/";
  const auto output = scratch("vision_errors.safetensors").string();
  auto args = [&](const std::string& weights, std::vector<std::string> extra) {
    std::vector<std::string> a{"run", "--variant", "vision", "--weights", weights, "--input", dir + "input.safetensors",
                               "--output", output};
    a.insert(a.end(), extra.begin(), extra.end());
    return a;
  };
  const std::string weights = dir + "weights.safetensors";
  CHECK_THAT(run(args(weights, {"--nx", "3"})).err, Contains("nglo + nx*ny"));
  CHECK_THAT(run(args(weights, {"--rpe", "false"})).err, Contains("rpe = false"));
  CHECK_THAT(run(args(weights, {"--window", "4"})).err, Contains("local_relative_position_bias_table"));
  CHECK_THAT(run(args(weights, {"--chunk", "4"})).err, Contains("--chunk") && Contains("does not apply"));

  // A relative_position_index that is not the published formula is refused.
  const auto source = SafeTensorsFile::open(weights);
  SafeTensorsWriter writer;
  for (const auto& [k, v] : source.metadata()) writer.set_metadata(k, v);
  for (const auto& name : source.names()) {
    if (source.info(name).type == lsattn::io::dtype::i64) {
      auto index = source.load_int64<2>(name);
      index(1, 2) += 1;
      writer.add(name, index);
    } else if (source.info(name).shape.size() == 2) {
      writer.add(name, source.load_float<2>(name));
    } else {
      writer.add(name, source.load_float<1>(name));
    }
  }
  const auto corrupted = scratch("vision_bad_index.safetensors").string();
  writer.write(corrupted);
  CHECK_THAT(run(args(corrupted, {})).err, Contains("relative_position_index") && Contains("(1, 2)"));
}

TEST_CASE("CLI device and dtype options: what a CPU-only build says", "[cli][device]") {
  const std::string dir = data_dir + "basic/";
  const auto output = scratch("device_out.safetensors").string();
  auto args = run_args(dir + "weights.safetensors", dir + "input.safetensors", output);
  // This test program links no CUDA part: --device cuda names the build, not a missing GPU.
  auto with = [&](std::vector<std::string> extra) {
    auto all = args;
    all.insert(all.end(), extra.begin(), extra.end());
    return run(all);
  };
  const Result cuda = with({"--device", "cuda"});
  CHECK(cuda.code == 1);
  CHECK_THAT(cuda.err, Contains("--device cuda") && Contains("built without CUDA") && Contains("LSATTN_ENABLE_CUDA"));
  const Result half = with({"--dtype", "fp16"});
  CHECK(half.code == 1);
  CHECK_THAT(half.err, Contains("--dtype fp16") && Contains("--device cuda"));
  CHECK(with({"--device", "tpu"}).code != 0);  // not a choice: a usage error
  CHECK(with({"--device", "cpu", "--dtype", "bf16"}).code == 0);
  const Result lm = run({"lm", "--weights", "w", "--input", "i", "--output", output, "--device", "cuda"});
  CHECK(lm.code == 1);
  CHECK_THAT(lm.err, Contains("--device cuda") && Contains("built without CUDA") && Contains("lm"));
}

TEST_CASE("run --variant ls-heads", "[cli][ls_heads]") {
  namespace ls = lsattn::models::ls_heads;
  const ls::Config config{8, 2, {1}, 3, true, 0};
  const auto weights = ls::Weights<float>::random(config, 4);
  SafeTensorsWriter w;
  lsattn::io::save_parameters(w, weights, config);
  for (const auto& [k, v] : std::map<std::string, std::string>{
           {"num_heads", "2"}, {"dim", "8"}, {"window", "3"}, {"causal", "true"}, {"local_heads", "1"}})
    w.set_metadata(k, v);
  const auto weights_path = scratch("ls_heads_weights.safetensors").string();
  w.write(weights_path);
  SafeTensorsWriter in;
  Tensor<float, 3> x(Shape<3>{1, 10, 8});
  for (index_t i = 0; i < x.size(); ++i) x.values()[i] = std::sin(0.37f * static_cast<float>(i));
  in.add("input.x", x);
  const auto input_path = scratch("ls_heads_input.safetensors").string();
  in.write(input_path);
  const auto output = scratch("ls_heads_output.safetensors").string();
  const Result result = run({"run", "--variant", "ls-heads", "--weights", weights_path, "--input", input_path, "--output", output});
  REQUIRE(result.err == "");
  const ls::LsHeadsAttention<lsattn::cpu, float> layer(config, weights);
  std::vector<float> max_logits;
  const auto want = layer.forward(x.view(), {}, &max_logits);
  const auto got = SafeTensorsFile::open(output);
  CHECK(got.load_float<3>("output.y").values() == want.values());
  CHECK(got.load_float<1>("output.max_logits").values() == max_logits);
  const Result bad = run({"run", "--variant", "ls-heads", "--weights", weights_path, "--input", input_path, "--output",
                          output, "--local-heads", "0,x"});
  CHECK_THAT(bad.err, Contains("local_heads") && Contains("x"));
  const Result out_of_range = run({"run", "--variant", "ls-heads", "--weights", weights_path, "--input", input_path,
                                   "--output", output, "--local-heads", "0,5"});
  CHECK_THAT(out_of_range.err, Contains("local_heads") && Contains("5"));
  // A present (0, 0) mask is a shape error, not "no mask".
  SafeTensorsWriter empty_mask;
  empty_mask.add("input.x", x);
  empty_mask.add("input.mask", Tensor<float, 2>(Shape<2>{0, 0}));
  const auto empty_mask_path = scratch("ls_heads_empty_mask.safetensors").string();
  empty_mask.write(empty_mask_path);
  const Result masked = run({"run", "--variant", "ls-heads", "--weights", weights_path, "--input", empty_mask_path,
                             "--output", output});
  CHECK(masked.code == 1);
  CHECK_THAT(masked.err, Contains("mask") && Contains("(0, 0)"));
}

// ----------------------------------------------------------------------------------------------
// Issue 10: no lost files, no crashes, no silent wrong answers on bad input

namespace {

std::vector<char> file_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// A fresh copy of a file in the scratch directory (hard links cannot cross file systems).
std::string scratch_copy(const std::string& source, const std::string& name) {
  const auto path = scratch(name);
  fs::remove(path);
  fs::copy_file(source, path);
  return path.string();
}


// Raw safetensors bytes for tensors the writer does not store (BOOL): name → (dtype, shape, data).
struct RawTensor {
  std::string dtype;
  std::vector<index_t> shape;
  std::vector<std::uint8_t> data;
};

std::string write_raw(const std::string& name, const std::map<std::string, RawTensor>& tensors,
                      const std::map<std::string, std::string>& metadata = {}) {
  nlohmann::json header = nlohmann::json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::vector<std::uint8_t> data;
  for (const auto& [tensor_name, tensor] : tensors) {
    header[tensor_name] = {{"dtype", tensor.dtype}, {"shape", tensor.shape}, {"data_offsets", {data.size(), data.size() + tensor.data.size()}}};
    data.insert(data.end(), tensor.data.begin(), tensor.data.end());
  }
  const std::string text = header.dump();
  std::vector<std::uint8_t> bytes;
  for (int i = 0; i < 8; ++i) bytes.push_back(static_cast<std::uint8_t>(static_cast<std::uint64_t>(text.size()) >> (8 * i)));
  bytes.insert(bytes.end(), text.begin(), text.end());
  bytes.insert(bytes.end(), data.begin(), data.end());
  const auto path = scratch(name).string();
  std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  return path;
}

template <std::size_t Rank>
RawTensor raw_f32(const Tensor<float, Rank>& t) {
  RawTensor raw{"F32", {t.shape().begin(), t.shape().end()}, std::vector<std::uint8_t>(t.values().size() * 4)};
  std::memcpy(raw.data.data(), t.values().data(), raw.data.size());  // little-endian hosts, as the reader assumes
  return raw;
}

template <class Add>
std::string write_input(const std::string& name, Add add) {
  SafeTensorsWriter writer;
  add(writer);
  const auto path = scratch(name).string();
  writer.write(path);
  return path;
}

}  // namespace

TEST_CASE("an --output that is an input is refused before anything runs", "[cli][errors][same_file]") {
  const std::string dir = data_dir + "basic/";
  const auto weights = scratch_copy(dir + "weights.safetensors", "same_weights.safetensors");
  const auto input = scratch_copy(dir + "input.safetensors", "same_input.safetensors");
  const auto weights_before = file_bytes(weights), input_before = file_bytes(input);
  const auto hard_link = scratch("same_input_hard_link.safetensors"), symbolic_link = scratch("same_weights_link.safetensors");
  fs::remove(hard_link);
  fs::remove(symbolic_link);
  fs::create_hard_link(input, hard_link);
  fs::create_symlink(weights, symbolic_link);
  // "<dir>/./name" names the same file as "<dir>/name" with a different string.
  const std::string dotted_input = (scratch("") / "." / "same_input.safetensors").string();

  struct Case {
    std::string output, flag, input_path;
  };
  for (const Case& c : {Case{weights, "--weights", weights}, Case{input, "--input", input},
                        Case{dotted_input, "--input", input}, Case{hard_link.string(), "--input", input},
                        Case{symbolic_link.string(), "--weights", weights}}) {
    INFO("--output " << c.output);
    const Result result = run(run_args(weights, input, c.output));
    CHECK(result.code == 1);
    CHECK_THAT(result.err, Contains("--output '" + c.output + "' is the same file as " + c.flag + " '" + c.input_path + "'"));
    CHECK(result.out == "");
  }
  CHECK(file_bytes(weights) == weights_before);
  CHECK(file_bytes(input) == input_before);
  CHECK(fs::is_symlink(symbolic_link));

  // lm: the same check with its own inputs.
  const auto lm_weights = write_model(small_lm, "same_lm_weights.safetensors", 3);
  const auto lm_input = write_input("same_lm_input.safetensors", [](SafeTensorsWriter& w) {
    w.add("input.tokens.0", Tensor<std::int64_t, 2>(Shape<2>{1, 4}, 7));
  });
  const auto lm_weights_before = file_bytes(lm_weights), lm_input_before = file_bytes(lm_input);
  const auto lm_link = scratch("same_lm_link.safetensors");
  fs::remove(lm_link);
  fs::create_hard_link(lm_weights, lm_link);
  for (const auto& [output, flag, input_path] : std::vector<std::tuple<std::string, std::string, std::string>>{
           {lm_input, "--input", lm_input}, {lm_link.string(), "--weights", lm_weights}}) {
    const Result result = run({"lm", "--weights", lm_weights, "--input", lm_input, "--output", output});
    CHECK(result.code == 1);
    CHECK_THAT(result.err, Contains("--output '" + output + "' is the same file as " + flag + " '" + input_path + "'"));
  }
  CHECK(file_bytes(lm_weights) == lm_weights_before);
  CHECK(file_bytes(lm_input) == lm_input_before);

  // A distinct output still works, and so does one that exists already (it is replaced).
  const auto output = scratch("same_distinct_out.safetensors").string();
  std::ofstream(output) << "old content";
  CHECK(run(run_args(weights, input, output)).code == 0);
  CHECK(SafeTensorsFile::open(output).contains("output.y"));
  CHECK(run({"lm", "--weights", lm_weights, "--input", lm_input, "--output", output}).code == 0);
  CHECK(SafeTensorsFile::open(output).contains("output.logprobs.0"));
}

TEST_CASE("an output in a missing directory is refused before the run", "[cli][errors]") {
  const std::string dir = data_dir + "basic/";
  const Result result = run(run_args(dir + "weights.safetensors", dir + "input.safetensors", "/nonexistent-lsattn/out.safetensors"));
  CHECK(result.code == 1);
  CHECK_THAT(result.err, Contains("--output '/nonexistent-lsattn/out.safetensors'") && Contains("'/nonexistent-lsattn'") &&
                             Contains("does not exist"));
}

TEST_CASE("every exception becomes one line and exit code 1", "[cli][errors][exceptions]") {
  lsattn::cli::Stage stage;
  stage.enter("building the language model (n_layer = ", 12, ", d_model = ", 512, ")");
  auto message_of = [&](auto&& body) {
    std::ostringstream err;
    CHECK(lsattn::cli::exit_code_of(body, stage, err) == 1);
    return err.str();
  };
  CHECK(message_of([] { throw std::bad_alloc(); }) ==
        "lsattn: out of memory while building the language model (n_layer = 12, d_model = 512)\n");
  CHECK_THAT(message_of([] { std::vector<int>().reserve(std::vector<int>().max_size() + 1); }),
             StartsWith("lsattn: out of memory while building the language model (n_layer = 12, d_model = 512) ("));
  CHECK(message_of([] { throw std::runtime_error("disk on fire"); }) ==
        "lsattn: unexpected error (while building the language model (n_layer = 12, d_model = 512)): disk on fire\n");
  CHECK_THAT(message_of([] { throw 42; }), StartsWith("lsattn: unexpected error (while building") &&
                                               Contains("unknown type"));
  CHECK(message_of([] { throw lsattn::error("lsattn: window_len: must be >= 1, got 0"); }) ==
        "lsattn: window_len: must be >= 1, got 0\n");
  // An allocation the library refused (its own message names the shape) gets the stage too.
  CHECK(message_of([] { throw lsattn::out_of_memory("lsattn: out of memory: a tensor of shape (2, 3) needs 1 MiB"); }) ==
        "lsattn: out of memory: a tensor of shape (2, 3) needs 1 MiB, while building the language model (n_layer = 12, "
        "d_model = 512)\n");
  std::ostringstream quiet;
  CHECK(lsattn::cli::exit_code_of([] {}, stage, quiet) == 0);
  CHECK(quiet.str() == "");
}

TEST_CASE("a memory the machine cannot hold is a clear error naming the sizes", "[cli][errors][oom]") {
  // B = 2^24 streams of zero tokens (a file of no data) with mem_len = 2^24: the zero memory
  // alone would be 2^51 floats, more than the machine's memory, so the library refuses it
  // before the allocator is asked (which also keeps this test valid under AddressSanitizer).
  const auto weights = write_model(small_lm, "oom_weights.safetensors", 3);
  const auto input = write_input("oom_input.safetensors", [](SafeTensorsWriter& w) {
    w.add("input.tokens.0", Tensor<std::int64_t, 2>(Shape<2>{index_t{1} << 24, 0}));
  });
  const Result result = run({"lm", "--weights", weights, "--input", input, "--output", scratch("oom_out.safetensors").string(),
                             "--mem-len", "16777216"});
  CHECK(result.code == 1);
  CHECK_THAT(result.err, StartsWith("lsattn: out of memory") &&
                             Contains("starting the memory of the language model (batch = 16777216, n_layer = 2, "
                                      "mem_len = 16777216, d_model = 8)"));
}

TEST_CASE("a --threads above the processors is a note, and the results do not change", "[cli][threads]") {
  const std::string dir = data_dir + "basic/";
  const int available = lsattn::cpu_detail::available_threads();
  const auto one = scratch("threads_1.safetensors").string(), many = scratch("threads_many.safetensors").string();
  auto args = run_args(dir + "weights.safetensors", dir + "input.safetensors", one);
  args.insert(args.end(), {"--threads", "1"});
  REQUIRE(run(args).code == 0);
  args = run_args(dir + "weights.safetensors", dir + "input.safetensors", many);
  args.insert(args.end(), {"--threads", "100000"});
  const Result result = run(args);
  CHECK(result.code == 0);
  CHECK(result.err == "lsattn: --threads 100000 is more than the " + std::to_string(available) +
                          (available == 1 ? " processor" : " processors") + " available; using " +
                          std::to_string(available) + "\n");
  CHECK(SafeTensorsFile::open(many).load_float<3>("output.y").values() ==
        SafeTensorsFile::open(one).load_float<3>("output.y").values());

  const auto weights = write_model(small_lm, "threads_lm_weights.safetensors", 3);
  const auto input = write_input("threads_lm_input.safetensors", [](SafeTensorsWriter& w) {
    Tensor<std::int64_t, 2> tokens(Shape<2>{2, 8});
    for (index_t i = 0; i < tokens.size(); ++i) tokens.values()[i] = (i * 37) % 256;
    w.add("input.tokens.0", tokens);
  });
  REQUIRE(run({"lm", "--weights", weights, "--input", input, "--output", one, "--threads", "1"}).code == 0);
  CHECK(run({"lm", "--weights", weights, "--input", input, "--output", many, "--threads", "100000"}).code == 0);
  CHECK(SafeTensorsFile::open(many).load_float<3>("output.logprobs.0").values() ==
        SafeTensorsFile::open(one).load_float<3>("output.logprobs.0").values());
}

TEST_CASE("eval-bpc: bytes missing from --dict are an error unless --allow-unk", "[cli][lm][bpc][errors]") {
  causal::LmConfig config = small_lm;
  config.vocab_size = 8;
  const auto weights = write_model(config, "unk_weights.safetensors", 9);
  const auto dict = scratch("unk_dict.txt").string();
  std::ofstream(dict) << "116 500\n104 400\n101 300\n";  // 't', 'h', 'e'
  const auto text = scratch("unk_text.txt").string();
  std::ofstream(text, std::ios::binary) << "the\nthe x";

  const Result refused = run({"eval-bpc", "--weights", weights, "--text", text, "--dict", dict, "--no-progress"});
  CHECK(refused.code == 1);
  CHECK(refused.out == "");
  CHECK_THAT(refused.err, Contains("byte 32 (' ') at offset 7") && Contains("--dict '" + dict + "'") &&
                              Contains("--text '" + text + "'") && Contains("2 bytes") && Contains("--allow-unk"));

  const auto control = scratch("unk_control.txt").string();
  std::ofstream(control, std::ios::binary) << "thee\x07";
  CHECK_THAT(run({"eval-bpc", "--weights", weights, "--text", control, "--dict", dict}).err,
             Contains("byte 7 at offset 4") && Contains("1 byte of the text"));
  // --max-bytes limits the check to the bytes evaluated.
  CHECK(run({"eval-bpc", "--weights", weights, "--text", control, "--dict", dict, "--max-bytes", "4", "--no-progress"})
            .code == 0);

  const Result allowed =
      run({"eval-bpc", "--weights", weights, "--text", text, "--dict", dict, "--no-progress", "--allow-unk"});
  CHECK(allowed.code == 0);
  CHECK_THAT(allowed.err, Contains("2 bytes") && Contains("<unk> (id 3)"));
  CHECK_THAT(allowed.out, StartsWith("bpc ") && Contains("2 bytes mapped to <unk>"));

  const Result without_dict = run({"eval-bpc", "--weights", weights, "--text", text, "--allow-unk"});
  CHECK(without_dict.code != 0);
  CHECK_THAT(without_dict.err + without_dict.out, Contains("--dict"));
}

TEST_CASE("eval-bpc: segment and byte counts are checked sizes", "[cli][lm][bpc][errors]") {
  const auto weights = write_model(small_lm, "sizes_weights.safetensors", 5);
  const auto text = scratch("sizes_text.txt").string();
  std::ofstream(text, std::ios::binary) << std::string(100, 'a');
  for (const char* flag : {"--tokens-per-sample", "--max-bytes"}) {
    INFO(flag);
    const Result huge = run({"eval-bpc", "--weights", weights, "--text", text, flag, "100000000000000"});
    CHECK(huge.code == 1);
    CHECK_THAT(huge.err, Contains(flag) && Contains("100000000000000") && Contains("2147483647"));
    const Result zero = run({"eval-bpc", "--weights", weights, "--text", text, flag, "0"});
    CHECK(zero.code == 1);
    CHECK_THAT(zero.err, Contains(flag) && Contains(">= 1"));
  }
  const auto huge_metadata = write_model(small_lm, "sizes_meta.safetensors", 5, {{"tokens_per_sample", "100000000000000"}});
  CHECK_THAT(run({"eval-bpc", "--weights", huge_metadata, "--text", text}).err,
             Contains("tokens_per_sample") && Contains("sizes_meta.safetensors") && Contains("100000000000000"));

  // The largest segment on a short text allocates only the text: one segment, the same score.
  const Result largest =
      run({"eval-bpc", "--weights", weights, "--text", text, "--no-progress", "--tokens-per-sample", "2147483647"});
  const Result exact = run({"eval-bpc", "--weights", weights, "--text", text, "--no-progress", "--tokens-per-sample", "100"});
  REQUIRE(largest.code == 0);
  REQUIRE(exact.code == 0);
  CHECK(parse_bpc(largest.out) == parse_bpc(exact.out));
}

TEST_CASE("present but empty optional inputs reach the layer, integer inputs only where allowed", "[cli][errors][inputs]") {
  const std::string dir = data_dir + "ragged/";
  const std::string weights = dir + "weights.safetensors";
  const auto fixture = SafeTensorsFile::open(dir + "input.safetensors");
  const auto x = fixture.load_float<3>("input.x");
  const auto mask = fixture.load_float<2>("input.mask");
  const auto output = scratch("inputs_out.safetensors").string();

  SECTION("a (0, 0) mask or a (0, 0, 0) cls_embed is a shape error, not an absent input") {
    const auto empty_mask = write_input("inputs_empty_mask.safetensors", [&](SafeTensorsWriter& w) {
      w.add("input.x", x);
      w.add("input.mask", Tensor<float, 2>(Shape<2>{0, 0}));
    });
    const Result masked = run(run_args(weights, empty_mask, output));
    CHECK(masked.code == 1);
    CHECK_THAT(masked.err, Contains("mask") && Contains("(0, 0)"));
    const auto empty_cls = write_input("inputs_empty_cls.safetensors", [&](SafeTensorsWriter& w) {
      w.add("input.x", x);
      w.add("input.cls_embed", Tensor<float, 3>(Shape<3>{0, 0, 0}));
    });
    const Result cls = run(run_args(weights, empty_cls, output));
    CHECK(cls.code == 1);
    CHECK_THAT(cls.err, Contains("cls_embed") && Contains("(0, 0, 0)"));
  }
  SECTION("masks may be F32, I64 or BOOL, with the same result") {
    REQUIRE(run(run_args(weights, dir + "input.safetensors", output)).code == 0);
    const auto want = SafeTensorsFile::open(output).load_float<3>("output.y").values();
    Tensor<std::int64_t, 2> integer_mask(mask.shape());
    RawTensor bool_mask{"BOOL", {mask.extent(0), mask.extent(1)}, {}};
    for (index_t i = 0; i < mask.size(); ++i) {
      integer_mask.values()[i] = static_cast<std::int64_t>(mask.values()[i]);
      bool_mask.data.push_back(static_cast<std::uint8_t>(mask.values()[i]));
    }
    REQUIRE(std::count(bool_mask.data.begin(), bool_mask.data.end(), 0) > 0);  // the fixture pads some tokens
    const auto i64 = write_input("inputs_i64_mask.safetensors", [&](SafeTensorsWriter& w) {
      w.add("input.x", x);
      w.add("input.mask", integer_mask);
    });
    const auto boolean = write_raw("inputs_bool_mask.safetensors", {{"input.x", raw_f32(x)}, {"input.mask", bool_mask}});
    for (const auto& input : {i64, boolean}) {
      INFO(input);
      REQUIRE(run(run_args(weights, input, output)).code == 0);
      CHECK(SafeTensorsFile::open(output).load_float<3>("output.y").values() == want);
    }
  }
  SECTION("float inputs stored as integers are refused, naming the file, tensor and dtype") {
    Tensor<std::int64_t, 3> integer_x(x.shape());
    const auto i64 = write_input("inputs_i64_x.safetensors", [&](SafeTensorsWriter& w) { w.add("input.x", integer_x); });
    CHECK_THAT(run(run_args(weights, i64, output)).err,
               Contains("inputs_i64_x.safetensors") && Contains("'input.x'") && Contains("I64"));
    const auto causal_dir = std::string("test/data/causal/basic/");
    const auto h = SafeTensorsFile::open(causal_dir + "input.safetensors").load_float<3>("input.h");
    const auto integer_cache = write_input("inputs_i64_cache.safetensors", [&](SafeTensorsWriter& w) {
      w.add("input.h", h);
      w.add("input.h_cache", Tensor<std::int64_t, 3>(Shape<3>{2, 8, 16}));
    });
    const Result cache = run({"run", "--variant", "causal", "--weights", causal_dir + "weights.safetensors", "--input",
                              integer_cache, "--output", output});
    CHECK(cache.code == 1);
    CHECK_THAT(cache.err, Contains("'input.h_cache'") && Contains("I64"));
    RawTensor bool_cls{"BOOL", {x.extent(0), 1, x.extent(2)}, std::vector<std::uint8_t>(x.extent(0) * x.extent(2), 1)};
    const auto boolean = write_raw("inputs_bool_cls.safetensors", {{"input.x", raw_f32(x)}, {"input.cls_embed", bool_cls}});
    CHECK_THAT(run(run_args(weights, boolean, output)).err, Contains("'input.cls_embed'") && Contains("BOOL"));
  }
  SECTION("weights stored as integers are refused") {
    const auto source = SafeTensorsFile::open(weights);
    SafeTensorsWriter writer;
    for (const auto& [k, v] : source.metadata()) writer.set_metadata(k, v);
    for (const auto& name : source.names()) {
      const auto& info = source.info(name);
      if (name == "W_o.bias") writer.add(name, Tensor<std::int64_t, 1>(Shape<1>{info.shape[0]}));
      else if (info.shape.size() == 1) writer.add(name, source.load_float<1>(name));
      else writer.add(name, source.load_float<2>(name));
    }
    const auto integer_weights = scratch("inputs_i64_weights.safetensors").string();
    writer.write(integer_weights);
    CHECK_THAT(run(run_args(integer_weights, dir + "input.safetensors", output)).err,
               Contains("'W_o.bias'") && Contains("I64"));
  }
}

TEST_CASE("the --dtype bf16 option runs every command in bf16, close to fp32 but not equal", "[cli][bf16]") {
  // bf16 rounds the operands of the matrix products (test_bf16 bounds each model against its
  // float64 oracle); here: every command takes the option and changes the result by a little.
  const auto output_fp32 = scratch("dtype_fp32.safetensors").string(), output_bf16 = scratch("dtype_bf16.safetensors").string();
  auto both = [&](std::vector<std::string> args, const std::string& tensor) {
    INFO(args[0] << " " << args[2]);
    auto with = [&](const std::string& output, std::vector<std::string> extra) {
      auto a = args;
      a.insert(a.end(), {"--output", output});
      a.insert(a.end(), extra.begin(), extra.end());
      const Result result = run(a);
      INFO(result.err);
      REQUIRE(result.code == 0);
      return SafeTensorsFile::open(output).load_float<3>(tensor);
    };
    const auto fp32 = with(output_fp32, {});
    CHECK(with(output_fp32, {"--dtype", "fp32"}).values() == fp32.values());  // the default
    const auto bf16 = with(output_bf16, {"--dtype", "bf16"});
    CHECK(bf16.values() != fp32.values());
    CHECK(relative_difference(bf16, fp32) < 1.0 / 16);
  };
  for (const char* variant : {"lra", "causal", "vision"}) {
    const std::string dir = std::string("test/data/") + variant + "/basic/";
    both({"run", "--variant", variant, "--weights", dir + "weights.safetensors", "--input", dir + "input.safetensors"},
         "output.y");
  }
  namespace ls = lsattn::models::ls_heads;
  const ls::Config config{.dim = 16, .num_heads = 2, .local_heads = {1}, .window = 3, .causal = false};
  SafeTensorsWriter ls_writer;
  lsattn::io::save_parameters(ls_writer, ls::Weights<float>::random(config, 8), config);
  for (const auto& [k, v] : std::map<std::string, std::string>{
           {"num_heads", "2"}, {"dim", "16"}, {"window", "3"}, {"causal", "false"}, {"local_heads", "1"}})
    ls_writer.set_metadata(k, v);
  const auto ls_weights = scratch("dtype_ls_heads_weights.safetensors").string();
  ls_writer.write(ls_weights);
  const auto ls_input = write_input("dtype_ls_heads_input.safetensors", [](SafeTensorsWriter& w) {
    Tensor<float, 3> x(Shape<3>{2, 40, 16});
    for (index_t i = 0; i < x.size(); ++i) x.values()[i] = std::sin(0.37f * static_cast<float>(i));
    w.add("input.x", x);
  });
  both({"run", "--variant", "ls-heads", "--weights", ls_weights, "--input", ls_input}, "output.y");

  const auto lm_weights = write_model(small_lm, "dtype_lm_weights.safetensors", 3, {{"tokens_per_sample", "16"}});
  const auto lm_input = write_input("dtype_lm_input.safetensors", [](SafeTensorsWriter& w) {
    Tensor<std::int64_t, 2> tokens(Shape<2>{2, 8});
    for (index_t i = 0; i < tokens.size(); ++i) tokens.values()[i] = (i * 37) % 256;
    w.add("input.tokens.0", tokens);
  });
  both({"lm", "--weights", lm_weights, "--input", lm_input}, "output.logprobs.0");

  std::string text;
  for (int i = 0; i < 40; ++i) text += "the quick brown fox " + std::to_string(i) + "\n";
  const auto text_path = scratch("dtype_text.txt").string();
  std::ofstream(text_path, std::ios::binary) << text;
  const std::vector<std::string> bpc{"eval-bpc", "--weights", lm_weights, "--text", text_path, "--no-progress"};
  auto bpc_with = [&](std::vector<std::string> extra) {
    auto args = bpc;
    args.insert(args.end(), extra.begin(), extra.end());
    const Result result = run(args);
    INFO(result.err);
    REQUIRE(result.code == 0);
    return parse_bpc(result.out);
  };
  const double fp32 = bpc_with({}), bf16 = bpc_with({"--dtype", "bf16"});
  CHECK(bf16 != fp32);
  CHECK(std::abs(bf16 - fp32) < 0.01 * fp32);
}

TEST_CASE("a --dtype other than fp32, fp16 or bf16 is refused, naming the option", "[cli][bf16][errors]") {
  const std::string dir = data_dir + "basic/";
  const auto output = scratch("dtype_refused.safetensors").string();
  fs::remove(output);
  const auto lm_weights = write_model(small_lm, "dtype_refused_lm.safetensors", 1);
  for (const char* value : {"fp8", "garbage", "BF16", ""}) {  // fp16: a CUDA dtype (see the device test)
    for (const auto& args : std::vector<std::vector<std::string>>{
             run_args(dir + "weights.safetensors", dir + "input.safetensors", output),
             {"lm", "--weights", lm_weights, "--input", dir + "input.safetensors", "--output", output},
             {"eval-bpc", "--weights", lm_weights, "--text", dir + "input.safetensors"}}) {
      auto a = args;
      a.insert(a.end(), {"--dtype", value});
      const Result result = run(a);
      INFO(a[0] << " --dtype '" << value << "'");
      CHECK(result.code != 0);
      CHECK(result.code != 1);  // a usage error from the option parser, before anything runs
      CHECK_THAT(result.err, Contains("--dtype") && Contains(value));
      CHECK_FALSE(fs::exists(output));
    }
  }
}

// ----------------------------------------------------------------------------------------------
// Issue 13: the LS-attention GPT's checkpoints (models/ls_gpt_checkpoint.hpp) and `lsattn gpt`

namespace {

namespace gpt = lsattn::models::ls_gpt;

// n_head · head_dim (16) < n_embd (20): the MLP is widened to 4·20 + 2·4 = 88.
gpt::Config small_gpt(gpt::Version version, bool bias = true) {
  return {.block_size = 12, .vocab_size = 40, .n_layer = 2, .n_head = 4, .head_dim = 4, .n_embd = 20,
          .n_local_head = 2, .local_attn_span = 3, .bias = bias, .version = version};
}

// GPTConfig's fields as the exporter writes them from model_args (bias as Python prints it).
std::map<std::string, std::string> gpt_metadata(const gpt::Config& c) {
  return {{"block_size", std::to_string(c.block_size)},   {"vocab_size", std::to_string(c.vocab_size)},
          {"n_layer", std::to_string(c.n_layer)},         {"n_head", std::to_string(c.n_head)},
          {"head_dim", std::to_string(c.head_dim)},       {"n_embd", std::to_string(c.n_embd)},
          {"n_local_head", std::to_string(c.n_local_head)}, {"local_attn_span", std::to_string(c.local_attn_span)},
          {"bias", c.bias ? "True" : "False"},            {"dropout", "0.0"}};
}

// Every parameter as F32 under prefix + its published name.
std::map<std::string, RawTensor> gpt_tensors(const gpt::Config& config, const gpt::Weights<float>& weights,
                                             const std::string& prefix = "") {
  std::map<std::string, RawTensor> tensors;
  const_cast<gpt::Weights<float>&>(weights).for_each(
      config, [&](const std::string& name, const auto& tensor, const auto&) { tensors[prefix + name] = raw_f32(tensor); });
  return tensors;
}

std::vector<float> parameter_values(const gpt::Config& config, const gpt::Weights<float>& weights) {
  std::vector<float> values;
  const_cast<gpt::Weights<float>&>(weights).for_each(config, [&](const std::string&, const auto& tensor, const auto&) {
    values.insert(values.end(), tensor.values().begin(), tensor.values().end());
  });
  return values;
}

// The packed_heads buffer of the published code, (1, n_head, size, size) BOOL: heads below
// n_local_head see i − span < j ≤ i, the others j ≤ i.
RawTensor mask_buffer(index_t n_head, index_t n_local_head, index_t span, index_t size) {
  RawTensor raw{"BOOL", {1, n_head, size, size}, {}};
  for (index_t h = 0; h < n_head; ++h)
    for (index_t i = 0; i < size; ++i)
      for (index_t j = 0; j < size; ++j) raw.data.push_back(j <= i && (h >= n_local_head || j > i - span));
  return raw;
}

void add_masks(std::map<std::string, RawTensor>& tensors, const gpt::Config& c, const RawTensor& mask) {
  for (index_t i = 0; i < c.n_layer; ++i) tensors["transformer.h." + std::to_string(i) + ".attn.mask"] = mask;
}

// Loads the config (metadata, then `overrides` as flags would) and the weights; the error text or "".
std::string gpt_load_error(const std::string& path, const std::string& prefix = "",
                           const std::map<std::string, std::string>& overrides = {}) {
  try {
    const auto file = SafeTensorsFile::open(path);
    lsattn::io::Hyperparameters values(file.metadata(), file.source());
    for (const auto& [k, v] : overrides) values.set(k, v);
    const auto config = gpt::config_from(values, file, prefix);
    gpt::load_weights(file, config, prefix);
  } catch (const lsattn::error& e) {
    return e.what();
  }
  return "";
}

Tensor<std::int64_t, 2> gpt_tokens(index_t batch, index_t length, index_t vocab) {
  Tensor<std::int64_t, 2> tokens(Shape<2>{batch, length});
  for (index_t i = 0; i < tokens.size(); ++i) tokens.values()[i] = (i * 17 + 3) % vocab;
  return tokens;
}

std::string gpt_input(const std::string& name, const Tensor<std::int64_t, 2>& tokens) {
  return write_input(name, [&](SafeTensorsWriter& w) { w.add("input.tokens", tokens); });
}

}  // namespace

TEST_CASE("ls_gpt checkpoints round-trip both versions, the version told by the names", "[cli][ls_gpt][checkpoint]") {
  for (const auto version : {gpt::Version::packed_heads, gpt::Version::split_heads}) {
    for (const bool bias : {true, false}) {
      for (const bool stated : {true, false}) {  // bias in the metadata, or told by transformer.ln_f.bias
        INFO(gpt::version_name(version) << ", bias " << bias << (stated ? " stated" : " inferred"));
        const auto config = small_gpt(version, bias);
        const auto weights = gpt::Weights<float>::random(config, 11);
        auto metadata = gpt_metadata(config);
        if (!stated) metadata.erase("bias");
        const auto file = SafeTensorsFile::open(write_raw("gpt_round_trip.safetensors", gpt_tensors(config, weights), metadata));
        const auto loaded = gpt::config_from(lsattn::io::Hyperparameters(file.metadata(), file.source()), file);
        CHECK(loaded.version == version);
        CHECK(loaded.bias == bias);
        CHECK(loaded.block_size == 12);
        CHECK(loaded.vocab_size == 40);
        CHECK(loaded.n_layer == 2);
        CHECK(loaded.n_head == 4);
        CHECK(loaded.head_dim == 4);
        CHECK(loaded.n_embd == 20);
        CHECK(loaded.n_local_head == 2);
        CHECK(loaded.local_attn_span == 3);
        CHECK(loaded.window() == (version == gpt::Version::packed_heads ? 3 : 4));
        CHECK(parameter_values(loaded, gpt::load_weights(file, loaded)) == parameter_values(config, weights));
      }
    }
  }
  SECTION("a version with no local or no global heads has only one of the split packs") {
    for (const index_t n_local : {index_t{0}, index_t{4}}) {
      auto config = small_gpt(gpt::Version::split_heads);
      config.n_local_head = n_local;
      const auto weights = gpt::Weights<float>::random(config, 12);
      const auto path = write_raw("gpt_one_pack.safetensors", gpt_tensors(config, weights), gpt_metadata(config));
      CHECK(gpt_load_error(path) == "");
    }
  }
  SECTION("F16 and BF16 weights load as float") {
    const auto config = small_gpt(gpt::Version::split_heads);
    const auto weights = gpt::Weights<float>::random(config, 13);
    for (const auto stored : {lsattn::io::dtype::f16, lsattn::io::dtype::bf16}) {
      SafeTensorsWriter writer;
      for (const auto& [k, v] : gpt_metadata(config)) writer.set_metadata(k, v);
      std::vector<float> rounded;
      const_cast<gpt::Weights<float>&>(weights).for_each(config, [&](const std::string& name, const auto& tensor, const auto&) {
        writer.add(name, tensor, stored);
        for (float v : tensor.values())
          rounded.push_back(stored == lsattn::io::dtype::f16 ? lsattn::half_to_float(lsattn::float_to_half(v))
                                                             : lsattn::bfloat16_to_float(lsattn::float_to_bfloat16(v)));
      });
      const auto path = scratch("gpt_16bit.safetensors").string();
      writer.write(path);
      const auto file = SafeTensorsFile::open(path);
      const auto loaded = gpt::config_from(lsattn::io::Hyperparameters(file.metadata(), file.source()), file);
      const auto values = parameter_values(loaded, gpt::load_weights(file, loaded));
      CHECK(values == rounded);
      CHECK(values != parameter_values(config, weights));
    }
  }
}

TEST_CASE("ls_gpt checkpoints: version, prefix, names, shapes and hyperparameters are checked", "[cli][ls_gpt][checkpoint][errors]") {
  const auto config = small_gpt(gpt::Version::packed_heads);
  const auto weights = gpt::Weights<float>::random(config, 21);
  const auto tensors = gpt_tensors(config, weights);
  const auto metadata = gpt_metadata(config);
  auto error_of = [&](const std::map<std::string, RawTensor>& edited, const std::map<std::string, std::string>& meta,
                      const std::string& prefix = "", const std::map<std::string, std::string>& overrides = {}) {
    return gpt_load_error(write_raw("gpt_errors.safetensors", edited, meta), prefix, overrides);
  };
  REQUIRE(error_of(tensors, metadata) == "");

  SECTION("neither version's attention") {
    auto edited = tensors;
    std::erase_if(edited, [](const auto& entry) { return entry.first.find(".attn.c_attn.") != std::string::npos; });
    CHECK_THAT(error_of(edited, metadata), Contains("no attention tensors under the prefix ''") &&
                                               Contains("attn.c_attn") && Contains("c_local_attn") &&
                                               Contains("the file holds 25 tensors: 'lm_head.weight', "));
  }
  SECTION("both versions' attention") {
    auto edited = tensors;
    edited["transformer.h.1.attn.c_global_attn.weight"] = edited["transformer.h.1.attn.c_attn.weight"];
    CHECK_THAT(error_of(edited, metadata), Contains("both versions") && Contains("'transformer.h.0.attn.c_attn.bias'") &&
                                               Contains("'transformer.h.1.attn.c_global_attn.weight'"));
  }
  SECTION("the version the caller states must be the file's") {
    const auto file = SafeTensorsFile::open(write_raw("gpt_errors.safetensors", tensors, metadata));
    CHECK_THROWS_WITH(gpt::load_weights(file, small_gpt(gpt::Version::split_heads)),
                      Contains("are those of packed_heads") && Contains("the config says split_heads"));
  }
  SECTION("a prefix (torch.compile's _orig_mod.) is named when not given, stripped when given") {
    auto compiled = gpt_tensors(config, weights, "_orig_mod.");
    compiled["optimizer.state"] = compiled["_orig_mod.lm_head.weight"];  // outside the prefix: not looked at
    CHECK_THAT(error_of(compiled, metadata), Contains("no attention tensors") && Contains("--prefix _orig_mod."));
    CHECK(error_of(compiled, metadata, "_orig_mod.") == "");
    compiled["_orig_mod.transformer.h.0.attn.rotary"] = compiled["_orig_mod.lm_head.weight"];
    CHECK_THAT(error_of(compiled, metadata, "_orig_mod."),
               Contains("1 tensor under the prefix '_orig_mod.'") &&
                   Contains("'_orig_mod.transformer.h.0.attn.rotary' (not a parameter of the model)"));
  }
  SECTION("missing, unexpected and misshaped tensors") {
    auto missing = tensors;
    missing.erase("transformer.h.1.mlp.c_fc.bias");
    CHECK_THAT(error_of(missing, metadata),
               Contains("missing tensor 'transformer.h.1.mlp.c_fc.bias' (expected shape (88)") && Contains("bias = true"));
    auto extra = tensors;
    extra["transformer.h.0.attn.rotary"] = extra["lm_head.weight"];
    extra["lm_head.bias"] = extra["transformer.ln_f.bias"];
    CHECK_THAT(error_of(extra, metadata), Contains("2 tensors") && Contains("'lm_head.bias'") &&
                                              Contains("'transformer.h.0.attn.rotary' (not a parameter of the model)"));
    auto misshaped = tensors;
    misshaped["transformer.wpe.weight"] = raw_f32(Tensor<float, 2>(Shape<2>{13, 20}));
    CHECK_THAT(error_of(misshaped, metadata),
               Contains("tensor 'transformer.wpe.weight' has shape (13, 20), expected (12, 20)") &&
                   Contains("block_size = 12"));
    auto rank = tensors;
    rank["transformer.ln_f.weight"] = raw_f32(Tensor<float, 2>(Shape<2>{1, 20}));
    CHECK_THAT(error_of(rank, metadata), Contains("'transformer.ln_f.weight' has shape (1, 20), expected (20)"));
  }
  SECTION("hyperparameters the tensors contradict") {
    auto meta = metadata;
    meta["n_layer"] = "1";
    CHECK_THAT(error_of(tensors, meta), Contains("n_layer = 1 contradicts the file, which has more blocks (transformer.h.1.ln_1.weight)"));
    meta["n_layer"] = "3";
    CHECK_THAT(error_of(tensors, meta), Contains("n_layer = 3 contradicts the file, which lacks transformer.h.2.ln_1.weight"));
    meta = metadata;
    meta["bias"] = "false";
    CHECK_THAT(error_of(tensors, meta), Contains("'transformer.h.0.attn.c_attn.bias' (a bias, but bias = false)") &&
                                            Contains("the hyperparameters contradict the weights"));
    meta = metadata;
    meta["n_embd"] = "24";
    CHECK_THAT(error_of(tensors, meta), Contains("'transformer.wte.weight' has shape (40, 20), expected (40, 24)"));
    meta = metadata;
    meta["n_local_head"] = "5";
    CHECK_THAT(error_of(tensors, meta), Contains("n_local_head (5) must be at most n_head (4)"));
  }
  SECTION("hyperparameters: from the metadata, the caller's (flags') values override it") {
    auto meta = metadata;
    meta.erase("n_head");
    CHECK_THAT(error_of(tensors, meta), Contains("missing hyperparameter n_head") && Contains("--heads"));
    CHECK(error_of(tensors, meta, "", {{"n_head", "4"}}) == "");
    CHECK_THAT(error_of(tensors, metadata, "", {{"n_head", "2"}}),
               Contains("'transformer.h.0.attn.c_attn.weight' has shape (48, 20), expected (24, 20)"));
    meta = metadata;
    meta["head_dim"] = "4.0";
    CHECK_THAT(error_of(tensors, meta), Contains("__metadata__ head_dim must be a decimal integer, got '4.0'"));
    CHECK_THAT(error_of(tensors, metadata, "", {{"local_window", "x"}}),
               Contains("hyperparameter local_window (command line) must be a decimal integer"));
    for (const char* key : {"block_size", "vocab_size", "n_layer", "head_dim", "n_embd", "n_local_head", "local_attn_span"}) {
      meta = metadata;
      meta.erase(key);
      CHECK_THAT(error_of(tensors, meta), Contains(std::string("missing hyperparameter ") + key));
    }
    const auto file = SafeTensorsFile::open(write_raw("gpt_errors.safetensors", tensors, metadata));
    lsattn::io::Hyperparameters values(file.metadata(), file.source());
    CHECK(gpt::config_from(values, file).local_window == 0);
    values.set("local_window", "6");
    CHECK(gpt::config_from(values, file).window() == 6);
  }
}

TEST_CASE("ls_gpt checkpoints: the packed_heads mask buffer is checked against the published formula", "[cli][ls_gpt][checkpoint][mask]") {
  const auto config = small_gpt(gpt::Version::packed_heads);
  const auto weights = gpt::Weights<float>::random(config, 31);
  const auto metadata = gpt_metadata(config);
  auto with_mask = [&](const RawTensor& mask) {
    auto tensors = gpt_tensors(config, weights);
    add_masks(tensors, config, mask);
    return gpt_load_error(write_raw("gpt_mask.safetensors", tensors, metadata));
  };
  SECTION("the published buffer loads, also uncropped (larger than block_size) and stored as I64") {
    CHECK(with_mask(mask_buffer(4, 2, 3, 12)) == "");
    CHECK(with_mask(mask_buffer(4, 2, 3, 20)) == "");
    RawTensor as_i64 = mask_buffer(4, 2, 3, 12);
    as_i64.dtype = "I64";
    std::vector<std::uint8_t> wide;
    for (std::uint8_t v : as_i64.data) {
      wide.push_back(v);
      wide.insert(wide.end(), 7, 0);
    }
    as_i64.data = wide;
    CHECK(with_mask(as_i64) == "");
    // One layer's buffer only: the buffers are optional.
    auto tensors = gpt_tensors(config, weights);
    tensors["transformer.h.1.attn.mask"] = mask_buffer(4, 2, 3, 12);
    CHECK(gpt_load_error(write_raw("gpt_mask.safetensors", tensors, metadata)) == "");
  }
  SECTION("a buffer of other hyperparameters is refused, naming those it implies") {
    CHECK_THAT(with_mask(mask_buffer(4, 2, 5, 12)),
               Contains("the attention mask buffer 'transformer.h.0.attn.mask' contradicts n_local_head = 2, local_attn_span = 3") &&
                   Contains("at head 0, query 3, key 0 it holds true") &&
                   Contains("the mask is that of n_local_head = 2, local_attn_span = 5"));
    // The first published commits made n_head / 2 heads local, whatever n_local_head said.
    CHECK_THAT(with_mask(mask_buffer(4, 1, 3, 12)), Contains("at head 1, query 3, key 0 it holds true") &&
                                                        Contains("the mask is that of n_local_head = 1, local_attn_span = 3"));
  }
  SECTION("a buffer that follows no formula, or holds other values than 0 and 1") {
    RawTensor corrupt = mask_buffer(4, 2, 3, 12);
    corrupt.data[static_cast<std::size_t>(3 * 144 + 5 * 12 + 9)] = 1;  // head 3 (global), query 5 sees key 9
    CHECK_THAT(with_mask(corrupt), Contains("at head 3, query 5, key 9 it holds true") &&
                                       Contains("gives false; the mask follows no such formula"));
    RawTensor twos{"I64", {1, 4, 12, 12}, {}};
    for (std::uint8_t v : mask_buffer(4, 2, 3, 12).data) {
      twos.data.push_back(v ? 2 : 0);
      twos.data.insert(twos.data.end(), 7, 0);
    }
    CHECK_THAT(with_mask(twos), Contains("holds 2 at (0, 0, 0, 0); a mask holds 0 (false) or 1 (true)"));
  }
  SECTION("a buffer of the wrong shape") {
    CHECK_THAT(with_mask(mask_buffer(4, 2, 3, 8)),
               Contains("'transformer.h.0.attn.mask' has shape (1, 4, 8, 8), expected (1, n_head, block_size, block_size) = (1, 4, 12, 12) or a larger square"));
    CHECK_THAT(with_mask(mask_buffer(2, 2, 3, 12)), Contains("has shape (1, 2, 12, 12)"));
  }
  SECTION("only the packed_heads version has the buffer") {
    const auto split = small_gpt(gpt::Version::split_heads);
    auto tensors = gpt_tensors(split, gpt::Weights<float>::random(split, 32));
    add_masks(tensors, split, mask_buffer(4, 2, 3, 12));
    CHECK_THAT(gpt_load_error(write_raw("gpt_mask.safetensors", tensors, metadata)),
               Contains("'transformer.h.0.attn.mask' (a mask buffer, which only the packed_heads version has)"));
  }
  SECTION("a buffer of a block past n_layer is an extra block") {
    auto tensors = gpt_tensors(config, weights);
    tensors["transformer.h.2.attn.mask"] = mask_buffer(4, 2, 3, 12);
    CHECK_THAT(gpt_load_error(write_raw("gpt_mask.safetensors", tensors, metadata)),
               Contains("'transformer.h.2.attn.mask' (block 2, past n_layer = 2)"));
  }
}

TEST_CASE("lsattn gpt runs both versions, --incremental gives the same logits", "[cli][ls_gpt]") {
  const auto tokens = gpt_tokens(2, 11, 40);
  const auto input = gpt_input("gpt_input.safetensors", tokens);
  const auto output = scratch("gpt_output.safetensors").string(), stepped = scratch("gpt_stepped.safetensors").string();
  for (const auto version : {gpt::Version::packed_heads, gpt::Version::split_heads}) {
    INFO(gpt::version_name(version));
    const auto config = small_gpt(version);
    const auto weights = gpt::Weights<float>::random(config, 41);
    auto tensors = gpt_tensors(config, weights, "_orig_mod.");
    if (version == gpt::Version::packed_heads) {
      for (index_t i = 0; i < config.n_layer; ++i)
        tensors["_orig_mod.transformer.h." + std::to_string(i) + ".attn.mask"] = mask_buffer(4, 2, 3, 12);
    }
    const auto path = write_raw("gpt_weights.safetensors", tensors, gpt_metadata(config));
    const std::vector<std::string> args{"gpt", "--weights", path, "--input", input, "--prefix", "_orig_mod."};
    auto run_with = [&](const std::string& out, std::vector<std::string> extra) {
      auto a = args;
      a.insert(a.end(), {"--output", out});
      a.insert(a.end(), extra.begin(), extra.end());
      const Result result = run(a);
      INFO(result.err);
      REQUIRE(result.code == 0);
      CHECK_THAT(result.out, Contains("wrote output.logits (2, 11, 40)"));
      return SafeTensorsFile::open(out);
    };
    const auto plain = run_with(output, {}).load_float<3>("output.logits");
    const gpt::LsGpt<float> model(config, weights);
    CHECK(plain.values() == model.forward(tokens.view()).values());

    const auto incremental_file = run_with(stepped, {"--incremental"});
    CHECK(incremental_file.metadata().at("incremental") == "true");
    CHECK(incremental_file.metadata().at("ls_gpt_version") ==
          (version == gpt::Version::packed_heads ? "packed_heads" : "split_heads"));
    CHECK(relative_difference(incremental_file.load_float<3>("output.logits"), plain) < 1e-5);

    // --local-window states the keys a local query sees; --heads etc. override the metadata.
    auto narrow = config;
    narrow.local_window = 2;
    const auto narrowed = run_with(output, {"--local-window", "2"});
    CHECK(narrowed.metadata().at("local_window") == "2");
    CHECK(narrowed.load_float<3>("output.logits").values() == gpt::LsGpt<float>(narrow, weights).forward(tokens.view()).values());
    CHECK(narrowed.load_float<3>("output.logits").values() != plain.values());
    CHECK(relative_difference(run_with(stepped, {"--local-window", "2", "--incremental"}).load_float<3>("output.logits"),
                              narrowed.load_float<3>("output.logits")) < 1e-5);

    // A window past block_size sees every earlier key (the local heads become causal), and
    // decoding does not allocate rings of that many keys.
    auto all_keys_config = config;
    all_keys_config.local_window = 11;  // the rows' length: every earlier key
    const auto all_keys = gpt::LsGpt<float>(all_keys_config, weights).forward(tokens.view());
    CHECK(all_keys.values() != plain.values());
    for (const char* huge : {"12", "2147483647"}) {
      INFO("--local-window " << huge);
      const auto wide = run_with(output, {"--local-window", huge});
      CHECK(wide.metadata().at("local_window") == huge);
      CHECK(relative_difference(wide.load_float<3>("output.logits"), all_keys) < 1e-6);
      CHECK(relative_difference(run_with(stepped, {"--local-window", huge, "--incremental"}).load_float<3>("output.logits"),
                                all_keys) < 1e-5);
    }

    const auto bf16 = run_with(output, {"--dtype", "bf16"}).load_float<3>("output.logits");
    CHECK(bf16.values() != plain.values());
    CHECK(relative_difference(bf16, plain) < 1.0 / 16);
    CHECK(run_with(output, {"--threads", "1"}).load_float<3>("output.logits").values() == plain.values());
  }
}

TEST_CASE("lsattn gpt: bad inputs and hyperparameters are clear errors and write nothing", "[cli][ls_gpt][errors]") {
  const auto config = small_gpt(gpt::Version::split_heads);
  const auto weights = write_raw("gpt_bad_weights.safetensors", gpt_tensors(config, gpt::Weights<float>::random(config, 51)),
                                 gpt_metadata(config));
  const auto output = scratch("gpt_bad_output.safetensors").string();
  auto attempt = [&](const std::string& input, std::vector<std::string> extra = {}) {
    fs::remove(output);
    std::vector<std::string> args{"gpt", "--weights", weights, "--input", input, "--output", output};
    args.insert(args.end(), extra.begin(), extra.end());
    const Result result = run(args);
    CHECK(fs::exists(output) == (result.code == 0));
    return result;
  };
  auto tokens = gpt_tokens(2, 6, 40);
  for (const bool incremental : {false, true}) {
    INFO((incremental ? "--incremental" : "whole sequences"));
    const std::vector<std::string> mode = incremental ? std::vector<std::string>{"--incremental"} : std::vector<std::string>{};
    auto out_of_range = tokens;
    out_of_range(1, 3) = 40;
    Result result = attempt(gpt_input("gpt_bad_id.safetensors", out_of_range), mode);
    CHECK(result.code == 1);
    CHECK_THAT(result.err, StartsWith("lsattn: input ") &&
                               Contains("input.tokens holds id 40 at (1, 3), outside the vocabulary [0, 40)"));
    out_of_range(1, 3) = -1;
    CHECK_THAT(attempt(gpt_input("gpt_bad_id.safetensors", out_of_range), mode).err, Contains("holds id -1 at (1, 3)"));
    result = attempt(gpt_input("gpt_long.safetensors", gpt_tokens(1, 13, 40)), mode);
    CHECK(result.code == 1);
    CHECK_THAT(result.err, Contains("input.tokens has 13 tokens per row, more than block_size = 12"));
    CHECK(attempt(gpt_input("gpt_full.safetensors", gpt_tokens(1, 12, 40)), mode).code == 0);
  }
  CHECK_THAT(attempt(gpt_input("gpt_empty.safetensors", gpt_tokens(2, 0, 40))).err,
             Contains("input.tokens has shape (2, 0); expected a non-empty (B, T) batch"));
  CHECK_THAT(attempt(write_input("gpt_no_tokens.safetensors", [](SafeTensorsWriter& w) {
               w.add("input.tokens.0", gpt_tokens(1, 3, 40));
             })).err,
             Contains("missing tensor 'input.tokens' (B, T) int64"));
  CHECK_THAT(attempt(write_input("gpt_float_tokens.safetensors", [](SafeTensorsWriter& w) {
               w.add("input.tokens", Tensor<float, 2>(Shape<2>{1, 3}));
             })).err,
             Contains("tensor 'input.tokens' has dtype F32, but an integer tensor (I64 or BOOL) was requested"));
  const auto input = gpt_input("gpt_good.safetensors", tokens);
  CHECK_THAT(attempt(input, {"--local-window", "-1"}).err, Contains("local_window"));
  CHECK_THAT(attempt(input, {"--heads", "x"}).err, Contains("hyperparameter n_head (command line) must be a decimal integer"));
  const Result foreign = attempt(input, {"--window", "3"});  // a flag of another command
  CHECK(foreign.code != 0);
  CHECK(foreign.code != 1);
  const Result no_prefix = attempt(input, {"--prefix", "model."});
  CHECK(no_prefix.code == 1);
  CHECK_THAT(no_prefix.err, Contains("no attention tensors under the prefix 'model.'"));
}

// ----------------------------------------------------------------------------------------------
// Issue 13 item 3: `lsattn lm --incremental` and `lsattn generate`

namespace {

std::vector<std::int64_t> printed_ids(const std::string& text) {
  std::istringstream in(text);
  std::vector<std::int64_t> ids;
  for (std::int64_t id = 0; in >> id;) ids.push_back(id);
  return ids;
}

std::string ids_argument(const std::vector<std::int64_t>& ids) {
  std::string list;
  for (const auto id : ids) list += (list.empty() ? "" : ",") + std::to_string(id);
  return list;
}

template <class T>
std::int64_t argmax_of(const T* row, index_t count) {
  return static_cast<std::int64_t>(std::max_element(row, row + count) - row);
}

}  // namespace

TEST_CASE("lm --incremental writes the plain run's log-probabilities and caches", "[cli][lm][incremental]") {
  for (const bool pre_ln : {true, false}) {
    INFO("pre_ln " << pre_ln);
    auto config = small_lm;  // chunk_size 4, window_len 8, mem_len 8
    config.pre_ln = pre_ln;
    const auto weights = write_model(config, "lm_incremental_weights.safetensors", 17);
    // Segments of 8, 5, 7 and 4 tokens: 5 and 7 are not multiples of chunk_size, so the published
    // padding runs (in forward, and in end_segment).
    const auto input = write_input("lm_incremental_input.safetensors", [](SafeTensorsWriter& w) {
      index_t segment = 0;
      for (const index_t length : {8, 5, 7, 4}) {
        Tensor<std::int64_t, 2> tokens(Shape<2>{2, length});
        for (index_t i = 0; i < tokens.size(); ++i) tokens.values()[i] = (i * 31 + segment * 7 + 1) % 256;
        w.add("input.tokens." + std::to_string(segment++), tokens);
      }
    });
    const auto plain_path = scratch("lm_plain_out.safetensors").string();
    const auto stepped_path = scratch("lm_stepped_out.safetensors").string();
    const Result plain_run = run({"lm", "--weights", weights, "--input", input, "--output", plain_path});
    REQUIRE(plain_run.code == 0);
    const Result stepped_run =
        run({"lm", "--weights", weights, "--input", input, "--output", stepped_path, "--incremental"});
    INFO(stepped_run.err);
    REQUIRE(stepped_run.code == 0);
    CHECK(stepped_run.out == "lsattn: wrote 4 segments of log-probabilities and caches to " + stepped_path + "\n");
    const auto plain = SafeTensorsFile::open(plain_path), stepped = SafeTensorsFile::open(stepped_path);
    auto sorted_names = [](const SafeTensorsFile& file) {
      auto names = file.names();
      std::sort(names.begin(), names.end());
      return names;
    };
    CHECK(sorted_names(stepped) == sorted_names(plain));
    CHECK(plain.names().size() == 4 * (1 + 2));
    CHECK(stepped.metadata().at("incremental") == "true");
    CHECK(plain.metadata().at("incremental") == "false");
    for (const auto& name : plain.names()) {
      INFO(name);
      const auto want = plain.load_float<3>(name);
      const auto got = stepped.load_float<3>(name);
      CHECK(relative_difference(got, want) < 1e-5);
    }
  }
  SECTION("tokens outside the vocabulary are named with the segment and position") {
    const auto weights = write_model(small_lm, "lm_incremental_weights.safetensors", 17);
    const auto bad = write_input("lm_incremental_bad.safetensors", [](SafeTensorsWriter& w) {
      w.add("input.tokens.0", Tensor<std::int64_t, 2>(Shape<2>{1, 3}, 1));
      Tensor<std::int64_t, 2> second(Shape<2>{2, 3}, 1);
      w.add("input.tokens.1", second);
    });
    const auto output = scratch("lm_incremental_bad_out.safetensors").string();
    CHECK_THAT(run({"lm", "--weights", weights, "--input", bad, "--output", output, "--incremental"}).err,
               Contains("input.tokens.1 has batch 2, input.tokens.0 had 1"));
    const auto out_of_range = write_input("lm_incremental_range.safetensors", [](SafeTensorsWriter& w) {
      Tensor<std::int64_t, 2> tokens(Shape<2>{2, 3}, 1);
      tokens(1, 2) = 256;
      w.add("input.tokens.0", tokens);
    });
    CHECK_THAT(run({"lm", "--weights", weights, "--input", out_of_range, "--output", output, "--incremental"}).err,
               Contains("input.tokens.0 holds id 256 at (1, 2), outside the vocabulary [0, 256)"));
  }
}

TEST_CASE("generate: greedy decoding of the LM is the argmax chain of its segment forward", "[cli][generate][lm]") {
  const auto weights = write_model(small_lm, "generate_lm.safetensors", 23);
  const std::vector<std::int64_t> prompt{10, 20, 30};
  const index_t segment_length = 6;  // not a multiple of chunk_size 4: end_segment pads
  const std::vector<std::string> greedy{"generate", "--weights", weights, "--prompt-ids", ids_argument(prompt),
                                        "--max-new-tokens", "14", "--temperature", "0", "--print-ids",
                                        "--segment-length", std::to_string(segment_length)};
  const Result result = run(greedy);
  INFO(result.err);
  REQUIRE(result.code == 0);
  CHECK_THAT(result.err, Contains("generated 14 tokens in") && Contains("tokens/s"));
  const auto generated = printed_ids(result.out);
  REQUIRE(generated.size() == 14);
  CHECK(result.out.back() == '\n');

  // Independently: forward over the stream (prompt and every generated token but the last) cut
  // into segments of 6, the memory carried; each generated token is the argmax of the
  // log-probabilities at the position before it.
  std::vector<std::int64_t> stream = prompt;
  stream.insert(stream.end(), generated.begin(), generated.end() - 1);
  const causal::TransformerLSModel<lsattn::cpu, float> model(small_lm, causal::LmWeights<float>::random(small_lm, 23));
  auto state = model.initial_state(1);
  std::vector<std::vector<float>> rows;
  for (std::size_t start = 0; start < stream.size(); start += segment_length) {
    const index_t count = std::min<index_t>(segment_length, static_cast<index_t>(stream.size() - start));
    Tensor<std::int64_t, 2> tokens(Shape<2>{1, count});
    for (index_t i = 0; i < count; ++i) tokens(0, i) = stream[start + i];
    const auto logprobs = model.forward(tokens.view(), state);
    for (index_t i = 0; i < count; ++i) rows.emplace_back(logprobs.address(0, i, 0), logprobs.address(0, i, 0) + 256);
  }
  for (std::size_t k = 0; k < generated.size(); ++k) {
    INFO("generated token " << k);
    const auto& row = rows[prompt.size() - 1 + k];
    const auto best = argmax_of(row.data(), 256);
    // Equal, or a near tie that the step's rounding may order either way.
    CHECK((generated[k] == best || row[generated[k]] > row[best] - 1e-5f));
  }

  SECTION("--model lm gives the same; a text prompt is its bytes; tokens print as text") {
    auto stated = greedy;
    stated.insert(stated.end(), {"--model", "lm"});
    CHECK(run(stated).out == result.out);
    const Result as_ids = run({"generate", "--weights", weights, "--prompt-ids", "104,105", "--max-new-tokens", "6",
                               "--temperature", "0", "--print-ids"});
    const Result as_text = run({"generate", "--weights", weights, "--prompt", "hi", "--max-new-tokens", "6",
                                "--temperature", "0", "--print-ids"});
    REQUIRE(as_ids.code == 0);
    CHECK(as_text.out == as_ids.out);
    const Result text = run({"generate", "--weights", weights, "--prompt", "hi", "--max-new-tokens", "6",
                             "--temperature", "0"});
    REQUIRE(text.code == 0);
    std::string bytes;
    for (const auto id : printed_ids(as_ids.out)) bytes += static_cast<char>(id);
    CHECK(text.out == bytes + "\n");
  }
  SECTION("the default segment length is the metadata's tokens_per_sample, else 256") {
    const auto with_metadata =
        write_model(small_lm, "generate_lm_tps.safetensors", 23, {{"tokens_per_sample", std::to_string(segment_length)}});
    auto args = greedy;
    args[2] = with_metadata;
    args.resize(args.size() - 2);  // no --segment-length
    CHECK(run(args).out == result.out);
  }
}

TEST_CASE("generate: a fairseq dictionary maps the prompt in and the tokens out", "[cli][generate][lm]") {
  causal::LmConfig config = small_lm;
  config.vocab_size = 8;
  const auto weights = write_model(config, "generate_dict.safetensors", 29);
  const auto dict = scratch("generate_dict.txt").string();
  std::ofstream(dict) << "116 500\n104 400\n101 300\n";  // 't', 'h', 'e' → ids 4, 5, 6
  const std::vector<std::string> base{"generate", "--weights", weights, "--dict", dict, "--max-new-tokens", "40",
                                      "--seed", "3"};
  auto with = [&](std::vector<std::string> extra) {
    auto args = base;
    args.insert(args.end(), extra.begin(), extra.end());
    return run(args);
  };
  const Result ids = with({"--prompt", "the\nt", "--print-ids"});
  INFO(ids.err);
  REQUIRE(ids.code == 0);
  CHECK(with({"--prompt-ids", "4,5,6,2,4", "--print-ids"}).out == ids.out);
  const Result text = with({"--prompt", "the\nt"});
  REQUIRE(text.code == 0);
  const std::map<std::int64_t, std::string> symbols{{0, "<s>"}, {1, "<pad>"}, {2, "\n"}, {3, "<unk>"},
                                                    {4, "t"},   {5, "h"},     {6, "e"},  {7, "<7>"}};
  std::string expected;
  for (const auto id : printed_ids(ids.out)) expected += symbols.at(id);
  CHECK(text.out == expected + "\n");
  CHECK_THAT(with({"--prompt", "tax"}).err, Contains("--prompt: byte 97 ('a') at offset 1 is not in --dict"));
}

TEST_CASE("generate: greedy decoding of the GPT is the argmax chain of its forward, and stops at block_size", "[cli][generate][ls_gpt]") {
  for (const auto version : {gpt::Version::packed_heads, gpt::Version::split_heads}) {
    INFO(gpt::version_name(version));
    const auto config = small_gpt(version);  // block_size 12, vocab 40
    const auto weights = gpt::Weights<float>::random(config, 61);
    const auto path = write_raw("generate_gpt.safetensors", gpt_tensors(config, weights), gpt_metadata(config));
    const std::vector<std::int64_t> prompt{1, 2, 3};
    const Result result = run({"generate", "--weights", path, "--prompt-ids", "1,2,3", "--max-new-tokens", "20",
                               "--temperature", "0"});
    INFO(result.err);
    REQUIRE(result.code == 0);
    const auto generated = printed_ids(result.out);  // ids: the GPT has no text without --dict
    // Positions 0 … 11 are fed; the token sampled at position 11 is the last one.
    REQUIRE(generated.size() == 10);
    CHECK_THAT(result.err, Contains("stopped after 10 of 20 new tokens: the sequence reached block_size = 12"));
    std::vector<std::int64_t> stream = prompt;
    stream.insert(stream.end(), generated.begin(), generated.end() - 1);
    Tensor<std::int64_t, 2> tokens(Shape<2>{1, static_cast<index_t>(stream.size())}, stream);
    const auto logits = gpt::LsGpt<float>(config, weights).forward(tokens.view());
    for (std::size_t k = 0; k < generated.size(); ++k) {
      INFO("generated token " << k);
      const float* row = logits.address(0, static_cast<index_t>(prompt.size() - 1 + k), 0);
      const auto best = argmax_of(row, 40);
      CHECK((generated[k] == best || row[generated[k]] > row[best] - 1e-5f));
    }
    const Result short_run = run({"generate", "--weights", path, "--prompt-ids", "1,2,3", "--max-new-tokens", "4",
                                  "--temperature", "0", "--model", "gpt"});
    REQUIRE(short_run.code == 0);
    CHECK(printed_ids(short_run.out) == std::vector<std::int64_t>(generated.begin(), generated.begin() + 4));
    CHECK_THAT(short_run.err, !Contains("stopped"));
    CHECK_THAT(run({"generate", "--weights", path, "--prompt-ids", ids_argument(gpt_tokens(1, 13, 40).values()),
                    "--temperature", "0"}).err,
               Contains("--prompt-ids: the prompt has 13 tokens, more than block_size = 12"));
  }
}

TEST_CASE("generate: the same seed gives the same tokens, another seed others", "[cli][generate]") {
  const auto lm_weights = write_model(small_lm, "generate_seed_lm.safetensors", 31);
  const auto config = small_gpt(gpt::Version::split_heads);
  const auto gpt_weights =
      write_raw("generate_seed_gpt.safetensors", gpt_tensors(config, gpt::Weights<float>::random(config, 71)),
                gpt_metadata(config));
  for (const auto& [model_weights, model_length] : {std::pair{lm_weights, "30"}, std::pair{gpt_weights, "9"}}) {
    const std::string weights = model_weights, length = model_length;
    INFO(weights);
    for (const std::vector<std::string>& cut : {std::vector<std::string>{}, std::vector<std::string>{"--top-k", "5"},
                                              std::vector<std::string>{"--top-p", "0.9", "--temperature", "1.5"}}) {
      auto sample = [&](const std::string& seed) {
        std::vector<std::string> args{"generate", "--weights", weights, "--prompt-ids", "5,6", "--max-new-tokens",
                                      length, "--seed", seed, "--print-ids"};
        args.insert(args.end(), cut.begin(), cut.end());
        const Result result = run(args);
        INFO(result.err);
        REQUIRE(result.code == 0);
        return printed_ids(result.out);
      };
      const auto first = sample("7");
      CHECK(first.size() == std::stoul(length));
      CHECK(sample("7") == first);
      CHECK(sample("8") != first);
    }
  }
  SECTION("top-k 1 is greedy") {
    auto with = [&](std::vector<std::string> extra) {
      std::vector<std::string> args{"generate", "--weights", lm_weights, "--prompt-ids", "5,6", "--max-new-tokens", "10",
                                    "--print-ids"};
      args.insert(args.end(), extra.begin(), extra.end());
      return run(args).out;
    };
    CHECK(with({"--top-k", "1", "--seed", "1"}) == with({"--temperature", "0"}));
  }
}

TEST_CASE("generate: bad options are errors naming the option", "[cli][generate][errors]") {
  const auto weights = write_model(small_lm, "generate_errors_lm.safetensors", 37);
  const auto config = small_gpt(gpt::Version::split_heads);
  const auto gpt_path = write_raw("generate_errors_gpt.safetensors",
                                  gpt_tensors(config, gpt::Weights<float>::random(config, 73)), gpt_metadata(config));
  auto attempt = [&](const std::string& path, std::vector<std::string> extra) {
    std::vector<std::string> args{"generate", "--weights", path, "--max-new-tokens", "3"};
    args.insert(args.end(), extra.begin(), extra.end());
    return run(args);
  };
  auto error_of = [&](std::vector<std::string> extra, const std::string& path = "") {
    const Result result = attempt(path.empty() ? weights : path, std::move(extra));
    CHECK(result.code == 1);
    CHECK(result.out == "");
    return result.err;
  };
  const std::vector<std::string> prompt{"--prompt-ids", "1,2"};
  auto plus = [&](std::vector<std::string> extra) {
    extra.insert(extra.begin(), prompt.begin(), prompt.end());
    return extra;
  };
  CHECK_THAT(error_of(plus({"--temperature", "-1"})), Contains("--temperature: must be >= 0 (0 = greedy), got -1"));
  CHECK_THAT(error_of(plus({"--temperature", "nan"})), Contains("--temperature"));
  CHECK_THAT(error_of(plus({"--top-p", "0"})), Contains("--top-p: must be in (0, 1]"));
  CHECK_THAT(error_of(plus({"--top-p", "1.5"})), Contains("--top-p"));
  CHECK_THAT(error_of(plus({"--top-k", "-2"})), Contains("--top-k: must be >= 0"));
  const Result negative_count = attempt(weights, plus({"--max-new-tokens", "-1"}));  // refused by the parser or after
  CHECK(negative_count.code != 0);
  CHECK_THAT(negative_count.err + negative_count.out, Contains("--max-new-tokens"));
  CHECK_THAT(error_of(plus({"--segment-length", "0"})), Contains("--segment-length"));
  CHECK_THAT(error_of({}), Contains("--prompt TEXT or --prompt-ids"));
  CHECK_THAT(error_of({"--prompt", ""}), Contains("--prompt: the prompt is empty"));
  CHECK_THAT(error_of({"--prompt-ids", "1,x"}), Contains("--prompt-ids: 'x' (item 1) is not a token id"));
  CHECK_THAT(error_of({"--prompt-ids", "1,,2"}), Contains("--prompt-ids"));
  CHECK_THAT(error_of({"--prompt-ids", "1,256"}),
             Contains("--prompt-ids: token id 256 at position 1 is outside the model's vocabulary [0, 256)"));
  CHECK_THAT(error_of({"--prompt-ids", "1,-3"}), Contains("token id -3"));
  CHECK_THAT(error_of(plus({"--window", "x"})), Contains("window_len") && Contains("x"));
  CHECK_THAT(error_of(plus({"--block-size", "4"})), Contains("--block-size does not apply to generate --model lm"));
  CHECK_THAT(error_of(plus({"--segment-length", "4"}), gpt_path), Contains("--segment-length applies to --model lm only"));
  CHECK_THAT(error_of({"--prompt", "hi"}, gpt_path), Contains("--prompt") && Contains("--dict"));
  CHECK_THAT(error_of(plus({"--model", "gpt"})), Contains("missing") || Contains("no attention tensors"));
  CHECK_THAT(error_of(plus({"--mem-len", "4"}), gpt_path), Contains("--mem-len does not apply to generate --model gpt"));
  const Result unknown = attempt(weights, plus({"--model", "nope"}));
  CHECK(unknown.code != 0);
  CHECK(unknown.code != 1);
  CHECK_THAT(unknown.err + unknown.out, Contains("--model") && Contains("nope"));
  const Result both = attempt(weights, plus({"--prompt", "hi"}));
  CHECK(both.code != 0);
  CHECK_THAT(both.err + both.out, Contains("--prompt"));
  const auto neither = write_input("generate_neither.safetensors", [](SafeTensorsWriter& w) {
    w.add("weight", Tensor<float, 2>(Shape<2>{2, 2}));
  });
  CHECK_THAT(error_of(prompt, neither), Contains("holds neither a language model's 'in_emb.weight'") &&
                                            Contains("pass --model lm or --model gpt"));
}
