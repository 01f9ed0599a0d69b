#pragma once
// The `lsattn` command line, as a function so that tests can drive it in-process.
#include <CLI/CLI.hpp>

#include <chrono>
#include <cmath>
#include <fstream>
#include <map>
#include <ostream>
#include <string>
#include <vector>

#include "lsattn/lsattn.hpp"
#include "lsattn/models/causal_checkpoint.hpp"
#include "lsattn/models/lra_checkpoint.hpp"
#include "lsattn/models/vision_checkpoint.hpp"

namespace lsattn::cli {

struct CommonOptions {
  std::string weights_path, input_path, output_path, prefix;
  int threads = 0;
  std::map<std::string, std::string> flags;  // hyperparameter flag → value, e.g. "--heads" → "8"
};

// Which hyperparameter (published name) each command-line flag sets, per model family.
inline const std::map<std::string, std::string>& flag_keys(const std::string& family) {
  static const std::map<std::string, std::string> lra{{"--heads", "num_head"},     {"--head-dim", "head_dim"},
                                                      {"--dim", "transformer_dim"}, {"--window", "window_size"},
                                                      {"--rank", "num_landmarks"}, {"--pooling", "pooling_mode"}};
  static const std::map<std::string, std::string> causal{
      {"--heads", "n_head"},        {"--dim", "d_model"},          {"--chunk", "chunk_size"},
      {"--rank", "chunk_rank"},     {"--window", "window_len"},    {"--use-bias", "use_bias"},
      {"--clamp-len", "clamp_len"}, {"--cpos-clamp-len", "cpos_clamp_len"}};
  static const std::map<std::string, std::string> vision{
      {"--heads", "num_heads"}, {"--dim", "dim"},   {"--window", "w"},  {"--rank", "dp_rank"},   {"--globals", "nglo"},
      {"--rpe", "rpe"},         {"--qkv-bias", "qkv_bias"}, {"--nx", "nx"}, {"--ny", "ny"}};
  static const std::map<std::string, std::string> ls_heads{{"--heads", "num_heads"},        {"--dim", "dim"},
                                                           {"--window", "window"},          {"--causal", "causal"},
                                                           {"--local-heads", "local_heads"}};
  static const std::map<std::string, std::string> lm = [] {
    auto keys = causal;
    keys.insert({{"--inner", "d_inner"}, {"--layers", "n_layer"}, {"--vocab", "vocab_size"}, {"--mem-len", "mem_len"},
                 {"--pre-ln", "pre_ln"}, {"--use-gelu", "use_gelu"}});
    return keys;
  }();
  if (family == "vision") return vision;
  if (family == "ls-heads") return ls_heads;
  return family == "lra" ? lra : family == "causal" ? causal : lm;
}

// The weights' metadata with the command-line flags applied on top.
inline io::Hyperparameters hyperparameters(const io::SafeTensorsFile& weights, const CommonOptions& options,
                                           const std::string& family, const std::string& command) {
  io::Hyperparameters values(weights.metadata(), weights.source());
  const auto& keys = flag_keys(family);
  for (const auto& [flag, value] : options.flags) {
    const auto key = keys.find(flag);
    require(key != keys.end(), flag, " does not apply to ", command);
    values.set(key->second, value);
  }
  return values;
}

template <std::size_t Rank>
Tensor<float, Rank> optional_input(const io::SafeTensorsFile& file, const std::string& name) {
  return file.contains(name) ? file.load_float<Rank>(name) : Tensor<float, Rank>{};
}

inline void require_input(const io::SafeTensorsFile& file, const std::string& name, const char* shape) {
  require(file.contains(name), "input ", file.source(), ": missing tensor '", name, "' ", shape);
}

// `run --variant lra`: input.x (B, L, D), optional input.mask (B, L), input.cls_embed (B, 1, D).
inline Tensor<float, 3> run_lra(const CommonOptions& options, const io::SafeTensorsFile& weights,
                                const io::SafeTensorsFile& input) {
  auto config = models::lra::config_from(hyperparameters(weights, options, "lra", "--variant lra"));
  config.threads = options.threads;
  const models::lra::AttentionLS<cpu, float> layer(config, models::lra::load_weights(weights, config, options.prefix));
  require_input(input, "input.x", "(B, L, D)");
  const auto x = input.load_float<3>("input.x");
  const auto mask = optional_input<2>(input, "input.mask");
  const auto cls_embed = optional_input<3>(input, "input.cls_embed");
  return layer.forward(x.view(), mask.size() ? mask.view() : HostView<const float, 2>{},
                       cls_embed.size() ? cls_embed.view() : HostView<const float, 3>{});
}

// `run --variant causal`: input.h (B, L, D), optional input.h_cache (B, M, D).
inline Tensor<float, 3> run_causal(const CommonOptions& options, const io::SafeTensorsFile& weights,
                                   const io::SafeTensorsFile& input) {
  auto config = models::causal::layer_config_from(hyperparameters(weights, options, "causal", "--variant causal"));
  config.threads = options.threads;
  const models::causal::ChunkedLSAttention<cpu, float> layer(
      config, models::causal::load_layer_weights(weights, config, options.prefix));
  require_input(input, "input.h", "(B, L, D)");
  const auto h = input.load_float<3>("input.h");
  const auto cache = optional_input<3>(input, "input.h_cache");
  return layer.forward(h.view(), cache.view());
}

// `run --variant vision`: input.x (B, nglo + nx·ny, C), patches in row-major order; nx (rows)
// and ny (columns) from the metadata or flags, ny defaulting to nx (the published square grid).
inline Tensor<float, 3> run_vision(const CommonOptions& options, const io::SafeTensorsFile& weights,
                                   const io::SafeTensorsFile& input) {
  const auto values = hyperparameters(weights, options, "vision", "--variant vision");
  auto config = models::vision::config_from(values);
  config.threads = options.threads;
  const index_t nx = values.required_integer("nx", "--nx"), ny = values.integer("ny").value_or(nx);
  const models::vision::AttentionLS2D<cpu, float> layer(config,
                                                        models::vision::load_weights(weights, config, options.prefix));
  require_input(input, "input.x", "(B, nglo + nx*ny, C)");
  const auto x = input.load_float<3>("input.x");
  return layer.forward(x.view(), nx, ny);
}

// `run --variant ls-heads`: ordinary multi-head attention weights (W_q, W_k, W_v, W_o); input.x
// (B, L, D), optional input.mask (B, L); writes output.y and output.max_logits (num_heads).
// local_heads is a comma-separated list of head indices ("" or absent: none).
inline Tensor<float, 3> run_ls_heads(const CommonOptions& options, const io::SafeTensorsFile& weights,
                                     const io::SafeTensorsFile& input, io::SafeTensorsWriter& writer) {
  const auto values = hyperparameters(weights, options, "ls-heads", "--variant ls-heads");
  models::ls_heads::Config config;
  config.num_heads = values.required_integer("num_heads", "--heads");
  config.dim = values.required_integer("dim", "--dim");
  config.window = values.required_integer("window", "--window");
  config.causal = values.boolean("causal").value_or(false);
  config.threads = options.threads;
  const std::string list = values.text("local_heads").value_or("");
  for (std::size_t start = 0; start < list.size();) {
    const std::size_t end = std::min(list.find(',', start), list.size());
    io::Hyperparameters one({{"local_heads", list.substr(start, end - start)}}, weights.source());
    config.local_heads.push_back(*one.integer("local_heads"));
    start = end + 1;
  }
  const models::ls_heads::LsHeadsAttention<cpu, float> layer(
      config, io::load_parameters<models::ls_heads::Weights<float>>(weights, config, options.prefix));
  require_input(input, "input.x", "(B, L, D)");
  const auto x = input.load_float<3>("input.x");
  const auto mask = optional_input<2>(input, "input.mask");
  std::vector<float> max_logits;
  auto y = layer.forward(x.view(), mask.size() ? mask.view() : HostView<const float, 2>{}, &max_logits);
  writer.add("output.max_logits", Tensor<float, 1>(Shape<1>{config.num_heads}, max_logits));
  return y;
}

inline models::causal::TransformerLSModel<cpu, float> load_model(const CommonOptions& options,
                                                                 const io::SafeTensorsFile& weights,
                                                                 const std::string& command) {
  auto config = models::causal::lm_config_from(hyperparameters(weights, options, "lm", command));
  config.threads = options.threads;
  return {config, models::causal::load_lm_weights(weights, config, options.prefix)};
}

// `lm`: input.tokens.0, input.tokens.1, … (B, L_s) int64, in order, from a zero memory.
inline void run_lm(const CommonOptions& options, std::ostream& log) {
  const auto weights = io::SafeTensorsFile::open(options.weights_path);
  const auto input = io::SafeTensorsFile::open(options.input_path);
  const auto model = load_model(options, weights, "lm");
  require_input(input, "input.tokens.0", "(B, L) int64");
  io::SafeTensorsWriter writer;
  writer.set_metadata("command", "lm");
  writer.set_metadata("lsattn_version", version);
  models::causal::LmState<float> state;
  index_t segment = 0;
  for (; input.contains("input.tokens." + std::to_string(segment)); ++segment) {
    const std::string name = "input.tokens." + std::to_string(segment);
    const auto tokens = input.load_int64<2>(name);
    if (segment == 0) state = model.initial_state(tokens.extent(0));
    require(tokens.extent(0) == state.caches.front().extent(0), "input ", input.source(), ": ", name, " has batch ",
            tokens.extent(0), ", input.tokens.0 had ", state.caches.front().extent(0));
    writer.add("output.logprobs." + std::to_string(segment), model.forward(tokens.view(), state));
    for (index_t layer = 0; layer < model.config().n_layer; ++layer)
      writer.add("output.cache." + std::to_string(segment) + "." + std::to_string(layer), state.caches[layer]);
  }
  writer.write(options.output_path);
  log << "lsattn: wrote " << segment << " segments of log-probabilities and caches to " << options.output_path << "\n";
}

struct EvalOptions {
  index_t tokens_per_sample = 0;  // 0: from metadata `tokens_per_sample`, else 256
  std::string dict_path;
  index_t max_bytes = -1;
  bool progress = true;
};

// Token ids of the text's bytes. Without a dictionary a byte is its own id. With a fairseq
// dict.txt (the published enwik8/text8 preprocessing: bytes written as decimal numbers, one
// line per text line) ids are <s>=0, <pad>=1, </s>=2, <unk>=3, then the file's symbols in order
// from 4; a newline byte is the end-of-line symbol </s>, an unlisted byte is <unk>.
struct ByteVocabulary {
  std::vector<std::int64_t> ids = std::vector<std::int64_t>(256);
  std::int64_t start = 10;  // what the first byte is predicted from

  static ByteVocabulary load(const std::string& dict_path) {
    ByteVocabulary vocabulary;
    for (int b = 0; b < 256; ++b) vocabulary.ids[b] = b;
    if (dict_path.empty()) return vocabulary;
    std::ifstream in(dict_path);
    require(static_cast<bool>(in), "--dict: cannot open '", dict_path, "'");
    std::fill(vocabulary.ids.begin(), vocabulary.ids.end(), 3);
    std::string symbol, line;
    for (std::int64_t id = 4; std::getline(in, line); ++id) {
      symbol = line.substr(0, line.find(' '));
      std::size_t used = 0;
      int byte = -1;
      try {
        byte = std::stoi(symbol, &used);
      } catch (const std::exception&) {
      }
      if (used == symbol.size() && byte >= 0 && byte < 256) vocabulary.ids[byte] = id;
    }
    vocabulary.ids[10] = 2;
    vocabulary.start = 2;
    return vocabulary;
  }
};

// `eval-bpc`: bits per character of a byte text with the published protocol: segments of
// tokens_per_sample tokens in order, the memory carried over from a zero start, every byte
// predicted from the ones before it (the first from the start symbol). Reads the file as it
// goes: memory does not grow with its length.
inline void run_eval_bpc(const CommonOptions& options, const EvalOptions& eval, std::ostream& out, std::ostream& err) {
  const auto weights = io::SafeTensorsFile::open(options.weights_path);
  const auto model = load_model(options, weights, "eval-bpc");
  index_t segment_length = eval.tokens_per_sample;
  if (segment_length == 0) {
    segment_length = io::Hyperparameters(weights.metadata(), weights.source()).integer("tokens_per_sample").value_or(256);
  }
  require(segment_length >= 1, "--tokens-per-sample: must be >= 1, got ", segment_length);
  const ByteVocabulary vocabulary = ByteVocabulary::load(eval.dict_path);
  for (std::int64_t id : vocabulary.ids) {
    require(id < model.config().vocab_size, "the model's vocab_size ", model.config().vocab_size,
            " is too small for the byte vocabulary (id ", id, "); pass the training --dict");
  }
  std::ifstream text(options.input_path, std::ios::binary);
  require(static_cast<bool>(text), "--text: cannot open '", options.input_path, "'");
  text.seekg(0, std::ios::end);
  const auto file_size = static_cast<index_t>(text.tellg());
  require(file_size >= 0, "--text: '", options.input_path, "' must be a regular file (its size is needed for the progress)");
  text.seekg(0);
  const index_t total = eval.max_bytes >= 0 ? std::min(eval.max_bytes, file_size) : file_size;
  require(total >= 1, "--text: '", options.input_path, "' is empty");

  auto state = model.initial_state(1);
  std::int64_t previous = vocabulary.start;
  double nats = 0;
  index_t done = 0;
  const auto start = std::chrono::steady_clock::now();
  auto last_report = start;
  std::vector<char> bytes(static_cast<std::size_t>(segment_length));
  while (done < total) {
    const index_t count = std::min(segment_length, total - done);
    text.read(bytes.data(), count);
    require(text.gcount() == count, "--text: read error in '", options.input_path, "' at byte ", done);
    Tensor<std::int64_t, 2> inputs(Shape<2>{1, count});
    std::vector<std::int64_t> targets(static_cast<std::size_t>(count));
    for (index_t i = 0; i < count; ++i) {
      targets[i] = vocabulary.ids[static_cast<unsigned char>(bytes[i])];
      inputs(0, i) = i == 0 ? previous : targets[i - 1];
    }
    previous = targets.back();
    const auto logprobs = model.forward(inputs.view(), state);
    for (index_t i = 0; i < count; ++i) nats -= logprobs(0, i, targets[i]);
    done += count;
    const auto now = std::chrono::steady_clock::now();
    if (eval.progress && (std::chrono::duration<double>(now - last_report).count() >= 1.0 || done == total)) {
      last_report = now;
      const double seconds = std::chrono::duration<double>(now - start).count();
      const int filled = static_cast<int>(30 * done / total);
      err << "\r[" << std::string(filled, '=') << std::string(30 - filled, ' ') << "] " << done << "/" << total
          << " bytes, " << static_cast<long long>(done / std::max(seconds, 1e-9)) << " bytes/s, bpc "
          << nats / std::log(2.0) / done << (done == total ? "\n" : "") << std::flush;
    }
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  out << "bpc " << nats / std::log(2.0) / total << " over " << total << " bytes (" << (total + segment_length - 1) / segment_length
      << " segments of " << segment_length << ", " << static_cast<long long>(total / std::max(seconds, 1e-9))
      << " bytes/s)\n";
}

// Runs the command line; returns the process exit code (0 ok, 1 runtime error, other: usage).
inline int main(int argc, const char* const* argv, std::ostream& out, std::ostream& err) {
  CLI::App app{"lsattn: long-short attention (Transformer-LS) on the CPU"};
  app.require_subcommand(1);
  CommonOptions options;
  std::string variant;
  EvalOptions eval;

  auto add_common = [&](CLI::App* command, const char* input_help) {
    command->add_option("--weights", options.weights_path, "weights (safetensors, published names)")->required();
    command->add_option("--prefix", options.prefix, "prefix of the tensor names in the weights file");
    command->add_option("--threads", options.threads, "CPU threads (0: OpenMP default)")->check(CLI::NonNegativeNumber);
    if (input_help != nullptr) {
      command->add_option("--input", options.input_path, input_help)->required();
      command->add_option("--output", options.output_path, "output file (safetensors)")->required();
    }
  };
  auto add_flags = [&](CLI::App* command, const std::string& family) {
    for (const auto& [flag, key] : flag_keys(family)) {
      command->add_option_function<std::string>(flag, [&options, flag = flag](const std::string& value) {
        options.flags[flag] = value;
      }, key + " (overrides __metadata__)");
    }
  };

  auto* run = app.add_subcommand("run", "run one attention layer on inputs from a safetensors file");
  run->add_option("--variant", variant, "attention variant")
      ->required()
      ->check(CLI::IsMember({"lra", "causal", "vision", "ls-heads"}));
  add_common(run, "inputs (safetensors)");
  // The flags of both families; one that does not apply to the chosen variant is an error.
  std::map<std::string, std::string> run_flags = flag_keys("lra");
  for (const auto& entry : flag_keys("causal")) run_flags.insert(entry);
  for (const auto& entry : flag_keys("vision")) run_flags.insert(entry);
  for (const auto& entry : flag_keys("ls-heads")) run_flags.insert(entry);
  for (const auto& [flag, key] : run_flags) {
    run->add_option_function<std::string>(flag, [&options, flag = flag](const std::string& value) {
      options.flags[flag] = value;
    }, "hyperparameter (overrides __metadata__)");
  }

  auto* lm = app.add_subcommand("lm", "run the language model over token segments, carrying its memory");
  add_common(lm, "inputs: input.tokens.0, input.tokens.1, ... (B, L) int64");
  add_flags(lm, "lm");

  auto* bpc = app.add_subcommand("eval-bpc", "bits per character of a byte text file");
  add_common(bpc, nullptr);
  bpc->add_option("--text", options.input_path, "the text file")->required();
  bpc->add_option("--tokens-per-sample", eval.tokens_per_sample, "segment length (default: metadata, else 256)");
  bpc->add_option("--dict", eval.dict_path, "fairseq dict.txt of the training data (default: byte = id)");
  bpc->add_option("--max-bytes", eval.max_bytes, "evaluate only the first N bytes");
  bpc->add_flag("!--no-progress", eval.progress, "no progress bar");
  add_flags(bpc, "lm");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e, out, err);
  }
  try {
    if (run->parsed()) {
      const auto weights = io::SafeTensorsFile::open(options.weights_path);
      const auto input = io::SafeTensorsFile::open(options.input_path);
      io::SafeTensorsWriter writer;
      const auto y = variant == "lra"      ? run_lra(options, weights, input)
                     : variant == "causal" ? run_causal(options, weights, input)
                     : variant == "vision" ? run_vision(options, weights, input)
                                           : run_ls_heads(options, weights, input, writer);
      writer.set_metadata("variant", variant);
      writer.set_metadata("lsattn_version", version);
      writer.add("output.y", y);
      writer.write(options.output_path);
      out << "lsattn: wrote output.y " << to_string(y.shape()) << " to " << options.output_path << "\n";
    } else if (lm->parsed()) {
      run_lm(options, out);
    } else if (bpc->parsed()) {
      run_eval_bpc(options, eval, out, err);
    }
  } catch (const error& e) {
    err << e.what() << "\n";
    return 1;
  }
  return 0;
}

}  // namespace lsattn::cli
