#pragma once
// The `lsattn` command line, as a function so that tests can drive it in-process.
#include <CLI/CLI.hpp>

#include <ostream>
#include <string>
#include <vector>

#include "lsattn/lsattn.hpp"
#include "lsattn/models/lra_checkpoint.hpp"

namespace lsattn::cli {

struct RunOptions {
  std::string variant;
  std::string weights_path, input_path, output_path, prefix;
  models::lra::ConfigFields overrides;
  int threads = 0;
};

// `lsattn run --variant lra`: weights under the published names, input.x (B, L, D), optional
// input.mask (B, L) and input.cls_embed (B, 1, D); writes output.y.
inline void run_lra(const RunOptions& options, std::ostream& log) {
  const auto weights_file = io::SafeTensorsFile::open(options.weights_path);
  const auto input_file = io::SafeTensorsFile::open(options.input_path);
  models::lra::Config config =
      models::lra::ConfigFields::from_metadata(weights_file.metadata(), options.weights_path)
          .overridden_by(options.overrides)
          .to_config();
  config.threads = options.threads;
  const models::lra::AttentionLS<cpu, float> layer(config, models::lra::load_weights(weights_file, config, options.prefix));

  require(input_file.contains("input.x"), "input ", options.input_path, ": missing tensor 'input.x' (B, L, D)");
  const auto x = input_file.load_float<3>("input.x");
  Tensor<float, 2> mask;
  Tensor<float, 3> cls_embed;
  if (input_file.contains("input.mask")) mask = input_file.load_float<2>("input.mask");
  if (input_file.contains("input.cls_embed")) cls_embed = input_file.load_float<3>("input.cls_embed");
  const auto y = layer.forward(x.view(), mask.size() ? mask.view() : HostView<const float, 2>{},
                               cls_embed.size() ? cls_embed.view() : HostView<const float, 3>{});

  io::SafeTensorsWriter writer;
  writer.set_metadata("variant", "lra");
  writer.set_metadata("lsattn_version", version);
  writer.add("output.y", y);
  writer.write(options.output_path);
  log << "lsattn: wrote output.y " << to_string(y.shape()) << " to " << options.output_path << "\n";
}

// Runs the command line; returns the process exit code (0 ok, 1 runtime error, other: usage).
inline int main(int argc, const char* const* argv, std::ostream& out, std::ostream& err) {
  CLI::App app{"lsattn: long-short attention (Transformer-LS) on the CPU"};
  app.require_subcommand(1);
  RunOptions options;
  auto* run = app.add_subcommand("run", "run one attention layer on inputs from a safetensors file");
  run->add_option("--variant", options.variant, "attention variant")->required()->check(CLI::IsMember({"lra"}));
  run->add_option("--weights", options.weights_path, "weights (safetensors, published names)")->required();
  run->add_option("--input", options.input_path, "inputs (safetensors)")->required();
  run->add_option("--output", options.output_path, "output file (safetensors)")->required();
  run->add_option("--prefix", options.prefix, "prefix of the layer's tensor names in the weights file");
  run->add_option("--threads", options.threads, "CPU threads (0: OpenMP default)")->check(CLI::NonNegativeNumber);
  auto& o = options.overrides;
  auto add_integer = [&](const char* flag, std::optional<index_t>& target, const char* help) {
    run->add_option_function<index_t>(flag, [&target](const index_t& value) { target = value; }, help);
  };
  add_integer("--heads", o.num_head, "num_head (overrides __metadata__)");
  add_integer("--head-dim", o.head_dim, "head_dim (overrides __metadata__)");
  add_integer("--dim", o.transformer_dim, "transformer_dim (overrides __metadata__)");
  add_integer("--window", o.window_size, "window_size w (overrides __metadata__)");
  add_integer("--rank", o.num_landmarks, "num_landmarks r (overrides __metadata__)");
  run->add_option_function<std::string>("--pooling", [&o](const std::string& v) { o.pooling_mode = v; },
                                        "pooling_mode MEAN or CLS (overrides __metadata__)");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e, out, err);
  }
  try {
    if (options.variant == "lra") run_lra(options, out);
  } catch (const error& e) {
    err << e.what() << "\n";
    return 1;
  }
  return 0;
}

}  // namespace lsattn::cli
