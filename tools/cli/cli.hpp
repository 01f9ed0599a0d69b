#pragma once
// The `lsattn` command line, as a function so that tests can drive it in-process.
#include <CLI/CLI.hpp>

#include <sys/stat.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <new>
#include <optional>
#include <ostream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "lsattn/backend/cpu/parallel.hpp"
#include "lsattn/core/limits.hpp"
#include "lsattn/lsattn.hpp"
#include "lsattn/models/causal_checkpoint.hpp"
#include "lsattn/models/lra_checkpoint.hpp"
#include "lsattn/models/ls_gpt_checkpoint.hpp"
#include "lsattn/models/vision_checkpoint.hpp"
#include "cuda_bridge.hpp"
#include "eval_bpc.hpp"
#include "generate.hpp"

namespace lsattn::cli {

struct CommonOptions {
  std::string weights_path, input_path, output_path, prefix;
  int threads = 0;
  std::string device = "cpu";             // --device cpu | cuda
  std::string dtype = "fp32";             // --dtype fp32 | fp16 | bf16, as given
  Precision precision = Precision::fp32;  // the CPU's: of the model's matrix products
  std::map<std::string, std::string> flags;  // hyperparameter flag → value, e.g. "--heads" → "8"

  bool on_cuda() const { return device == "cuda"; }
  CudaDtype cuda_dtype() const { return dtype == "bf16" ? CudaDtype::bf16 : dtype == "fp16" ? CudaDtype::fp16 : CudaDtype::fp32; }
};

// --device and --dtype together: on the CPU fp32 or bf16 (the precision of the matrix
// products); on CUDA the element type of the whole run (the layers' precision setting stays
// fp32), and only in a build that has the CUDA layers.
inline void resolve_device(CommonOptions& options, const char* command) {
  if (options.on_cuda()) {
    require(cuda_layers().lra != nullptr, "--device cuda: this lsattn was built without CUDA (configure with ",
            "-DLSATTN_ENABLE_CUDA=ON on a machine with nvcc); ", command, " runs on the CPU");
    options.precision = Precision::fp32;
    return;
  }
  require(options.dtype != "fp16", "--dtype fp16: the CPU computes in fp32 or bf16; fp16 needs --device cuda");
  options.precision = options.dtype == "bf16" ? Precision::bf16 : Precision::fp32;
}

// Scoring a text (eval-bpc) and sampling (generate, token by token) run on the CPU only; on
// CUDA: the attention layers (`run`), the GPT (`gpt`) and the character LM's segments (`lm`).
inline void require_cpu_model(const CommonOptions& options, const char* command) {
  require(!options.on_cuda(), "--device cuda: ", command, " runs on the CPU only for now (on CUDA: lsattn run, ",
          "lsattn gpt and lsattn lm); drop --device cuda");
}

// What the command is doing right now, for failures whose own message cannot say it (out of
// memory): "building the language model (n_layer = 2, d_model = 8, d_inner = 16, vocab_size = 256)".
class Stage {
 public:
  template <class... Parts>
  void enter(Parts&&... parts) {
    description_ = lsattn::detail::concat(std::forward<Parts>(parts)...);
  }
  const std::string& description() const { return description_; }

 private:
  std::string description_ = "starting";
};

// Runs a command and turns every exception into one line on `err` and exit code 1, so that no
// input, however absurd, ends in an abort: lsattn::error as it is (an allocation it refused gets
// the stage added), std::bad_alloc and std::length_error as "out of memory while <stage>", and
// anything else as an unexpected error with the stage.
template <class Command>
int exit_code_of(Command&& command, const Stage& stage, std::ostream& err) {
  try {
    command();
    return 0;
  } catch (const out_of_memory& e) {
    err << e.what() << ", while " << stage.description() << "\n";
  } catch (const error& e) {
    err << e.what() << "\n";
  } catch (const std::bad_alloc&) {
    err << "lsattn: out of memory while " << stage.description() << "\n";
  } catch (const std::length_error& e) {
    err << "lsattn: out of memory while " << stage.description() << " (" << e.what() << ")\n";
  } catch (const std::exception& e) {
    err << "lsattn: unexpected error (while " << stage.description() << "): " << e.what() << "\n";
  } catch (...) {
    err << "lsattn: unexpected error (while " << stage.description() << "): an exception of unknown type\n";
  }
  return 1;
}

// A file given on the command line: the flag that named it and its path.
struct NamedPath {
  std::string flag, path;
};

// Refuses, before anything is loaded or run, an output that is one of the inputs (the same
// device and inode, so hard links, symbolic links and "./a" for "a" are all caught: writing it
// would destroy the input) or that lies in a directory that does not exist (which would only
// show after the whole run).
inline void check_output_path(const NamedPath& output, const std::vector<NamedPath>& inputs) {
  const std::string directory = std::filesystem::path(output.path).has_parent_path()
                                    ? std::filesystem::path(output.path).parent_path().string()
                                    : ".";
  struct stat directory_status {};
  require(::stat(directory.c_str(), &directory_status) == 0 && S_ISDIR(directory_status.st_mode), output.flag, " '",
          output.path, "': the directory '", directory, "' does not exist");
  struct stat output_status {};
  if (::stat(output.path.c_str(), &output_status) != 0) return;  // not there yet: cannot be an input
  for (const NamedPath& input : inputs) {
    struct stat input_status {};
    if (input.path.empty() || ::stat(input.path.c_str(), &input_status) != 0) continue;
    require(input_status.st_dev != output_status.st_dev || input_status.st_ino != output_status.st_ino, output.flag,
            " '", output.path, "' is the same file as ", input.flag, " '", input.path,
            "'; refusing to overwrite an input (choose another output path)");
  }
}

// `--threads N` above the processors available: a note, and the processors instead (the
// library clamps too; the note says why the run does not use N).
inline int usable_threads(int requested, std::ostream& err) {
  const int available = cpu_detail::available_threads();
  if (requested <= available) return requested;
  err << "lsattn: --threads " << requested << " is more than the " << available
      << (available == 1 ? " processor" : " processors") << " available; using " << available << "\n";
  return available;
}

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
  // GPTConfig's fields, and lsattn's local_window (keys a local query sees, itself included).
  static const std::map<std::string, std::string> gpt{
      {"--block-size", "block_size"},     {"--vocab", "vocab_size"},          {"--layers", "n_layer"},
      {"--heads", "n_head"},              {"--head-dim", "head_dim"},         {"--dim", "n_embd"},
      {"--local-heads", "n_local_head"},  {"--local-attn-span", "local_attn_span"}, {"--bias", "bias"},
      {"--local-window", "local_window"}};
  if (family == "gpt") return gpt;
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

// An input tensor that may be absent. Presence is decided by the file, never by the size: a
// present (0, 0) mask must reach the layer, which rejects its shape, not pass as "no mask".
template <std::size_t Rank>
struct OptionalInput {
  std::optional<Tensor<float, Rank>> tensor;

  // The layers take a null view as "absent"; a present tensor without elements (whose vector
  // may have no storage) gets a non-null pointer so that it still counts as given.
  HostView<const float, Rank> view() const {
    static constexpr float no_elements = 0;
    if (!tensor) return {};
    return {tensor->size() ? tensor->data() : &no_elements, tensor->shape()};
  }
  const Tensor<float, Rank>* pointer() const { return tensor ? &*tensor : nullptr; }  // null: absent
};

// Float inputs (x, h, cls_embed, h_cache) must be F32, F16 or BF16.
template <std::size_t Rank>
OptionalInput<Rank> optional_float_input(const io::SafeTensorsFile& file, const std::string& name) {
  return {file.contains(name) ? std::optional(file.load_float<Rank>(name)) : std::nullopt};
}

// Masks may also be I64 or BOOL (PyTorch masks often are), read as floats; the layer checks
// that every value is 0 or 1.
template <std::size_t Rank>
OptionalInput<Rank> optional_mask_input(const io::SafeTensorsFile& file, const std::string& name) {
  return {file.contains(name) ? std::optional(file.load_numeric<Rank>(name)) : std::nullopt};
}

inline void require_input(const io::SafeTensorsFile& file, const std::string& name, const char* shape) {
  require(file.contains(name), "input ", file.source(), ": missing tensor '", name, "' ", shape);
}

// `run --variant lra`: input.x (B, L, D), optional input.mask (B, L), input.cls_embed (B, 1, D).
inline Tensor<float, 3> run_lra(const CommonOptions& options, const io::SafeTensorsFile& weights,
                                const io::SafeTensorsFile& input, Stage& stage, std::string& device) {
  auto config = models::lra::config_from(hyperparameters(weights, options, "lra", "--variant lra"));
  config.threads = options.threads;
  config.precision = options.precision;
  stage.enter("building the LRA layer (num_head = ", config.num_head, ", head_dim = ", config.head_dim,
              ", transformer_dim = ", config.transformer_dim, ", num_landmarks = ", config.num_landmarks, ")");
  auto layer_weights = models::lra::load_weights(weights, config, options.prefix);
  require_input(input, "input.x", "(B, L, D)");
  stage.enter("reading the inputs of '", input.source(), "'");
  const auto x = input.load_float<3>("input.x");
  const auto mask = optional_mask_input<2>(input, "input.mask");
  const auto cls_embed = optional_float_input<3>(input, "input.cls_embed");
  stage.enter("running the LRA layer on input.x (B, L, D) = ", to_string(x.shape()), " (num_head = ", config.num_head,
              ", window_size = ", config.window_size, ", num_landmarks = ", config.num_landmarks, ")");
  if (options.on_cuda()) {
    auto result = cuda_layers().lra(options.cuda_dtype(), config, std::move(layer_weights), x, mask.pointer(),
                                    cls_embed.pointer());
    device = result.device;
    return std::move(result.y);
  }
  const models::lra::AttentionLS<cpu, float> layer(config, std::move(layer_weights));
  return layer.forward(x.view(), mask.view(), cls_embed.view());
}

// `run --variant causal`: input.h (B, L, D), optional input.h_cache (B, M, D).
inline Tensor<float, 3> run_causal(const CommonOptions& options, const io::SafeTensorsFile& weights,
                                   const io::SafeTensorsFile& input, Stage& stage, std::string& device) {
  auto config = models::causal::layer_config_from(hyperparameters(weights, options, "causal", "--variant causal"),
                                                  weights, options.prefix);
  config.threads = options.threads;
  config.precision = options.precision;
  stage.enter("building the causal layer (n_head = ", config.n_head, ", d_model = ", config.d_model,
              ", chunk_size = ", config.chunk_size, ", chunk_rank = ", config.chunk_rank, ", window_len = ",
              config.window_len, ")");
  auto layer_weights = models::causal::load_layer_weights(weights, config, options.prefix);
  require_input(input, "input.h", "(B, L, D)");
  stage.enter("reading the inputs of '", input.source(), "'");
  const auto h = input.load_float<3>("input.h");
  const auto cache = optional_float_input<3>(input, "input.h_cache");
  stage.enter("running the causal layer on input.h (B, L, D) = ", to_string(h.shape()),
              cache.tensor ? " with input.h_cache (B, M, D) = " + to_string(cache.tensor->shape()) : std::string(),
              " (chunk_size = ", config.chunk_size, ", window_len = ", config.window_len, ")");
  if (options.on_cuda()) {
    auto result = cuda_layers().causal(options.cuda_dtype(), config, std::move(layer_weights), h, cache.pointer());
    device = result.device;
    return std::move(result.y);
  }
  const models::causal::ChunkedLSAttention<cpu, float> layer(config, std::move(layer_weights));
  return layer.forward(h.view(), cache.view());
}

// `run --variant vision`: input.x (B, nglo + nx·ny, C), patches in row-major order; nx (rows)
// and ny (columns) from the metadata or flags, ny defaulting to nx (the published square grid).
inline Tensor<float, 3> run_vision(const CommonOptions& options, const io::SafeTensorsFile& weights,
                                   const io::SafeTensorsFile& input, Stage& stage, std::string& device) {
  const auto values = hyperparameters(weights, options, "vision", "--variant vision");
  auto config = models::vision::config_from(values, weights, options.prefix);
  config.threads = options.threads;
  config.precision = options.precision;
  const index_t nx = values.required_integer("nx", "--nx"), ny = values.integer("ny").value_or(nx);
  stage.enter("building the 2D layer (num_heads = ", config.num_heads, ", dim = ", config.dim, ", w = ", config.w,
              ", dp_rank = ", config.dp_rank, ", nglo = ", config.nglo, ")");
  auto layer_weights = models::vision::load_weights(weights, config, options.prefix);
  require_input(input, "input.x", "(B, nglo + nx*ny, C)");
  stage.enter("reading the inputs of '", input.source(), "'");
  const auto x = input.load_float<3>("input.x");
  stage.enter("running the 2D layer on input.x (B, N, C) = ", to_string(x.shape()), " (nx = ", nx, ", ny = ", ny,
              ", w = ", config.w, ", dp_rank = ", config.dp_rank, ")");
  if (options.on_cuda()) {
    auto result = cuda_layers().vision(options.cuda_dtype(), config, std::move(layer_weights), x, nx, ny);
    device = result.device;
    return std::move(result.y);
  }
  const models::vision::AttentionLS2D<cpu, float> layer(config, std::move(layer_weights));
  return layer.forward(x.view(), nx, ny);
}

// `run --variant ls-heads`: ordinary multi-head attention weights (W_q, W_k, W_v, W_o); input.x
// (B, L, D), optional input.mask (B, L); writes output.y and output.max_logits (num_heads).
// local_heads is a comma-separated list of head indices ("" or absent: none).
inline Tensor<float, 3> run_ls_heads(const CommonOptions& options, const io::SafeTensorsFile& weights,
                                     const io::SafeTensorsFile& input, io::SafeTensorsWriter& writer, Stage& stage,
                                     std::string& device) {
  const auto values = hyperparameters(weights, options, "ls-heads", "--variant ls-heads");
  models::ls_heads::Config config;
  config.num_heads = values.required_integer("num_heads", "--heads");
  config.dim = values.required_integer("dim", "--dim");
  config.window = values.required_integer("window", "--window");
  config.causal = values.boolean("causal").value_or(false);
  config.threads = options.threads;
  config.precision = options.precision;
  const std::string list = values.text("local_heads").value_or("");
  for (std::size_t start = 0; start < list.size();) {
    const std::size_t end = std::min(list.find(',', start), list.size());
    io::Hyperparameters one({{"local_heads", list.substr(start, end - start)}}, weights.source());
    config.local_heads.push_back(*one.integer("local_heads"));
    start = end + 1;
  }
  stage.enter("building the LS-heads layer (num_heads = ", config.num_heads, ", dim = ", config.dim, ", window = ",
              config.window, ")");
  auto layer_weights = io::load_parameters<models::ls_heads::Weights<float>>(weights, config, options.prefix);
  require_input(input, "input.x", "(B, L, D)");
  stage.enter("reading the inputs of '", input.source(), "'");
  const auto x = input.load_float<3>("input.x");
  const auto mask = optional_mask_input<2>(input, "input.mask");
  stage.enter("running the LS-heads layer on input.x (B, L, D) = ", to_string(x.shape()), " (num_heads = ",
              config.num_heads, ", window = ", config.window, ")");
  std::vector<float> max_logits;
  Tensor<float, 3> y;
  if (options.on_cuda()) {
    auto result = cuda_layers().ls_heads(options.cuda_dtype(), config, std::move(layer_weights), x, mask.pointer());
    device = result.device;
    y = std::move(result.y);
    max_logits = std::move(result.max_logits);
  } else {
    const models::ls_heads::LsHeadsAttention<cpu, float> layer(config, std::move(layer_weights));
    y = layer.forward(x.view(), mask.view(), &max_logits);
  }
  writer.add("output.max_logits", Tensor<float, 1>(Shape<1>{config.num_heads}, max_logits));
  return y;
}

// `run`: one attention layer, its output written to --output.
inline void run_layer(const CommonOptions& options, const std::string& variant, Stage& stage, std::ostream& log) {
  stage.enter("reading --weights '", options.weights_path, "'");
  const auto weights = io::SafeTensorsFile::open(options.weights_path);
  stage.enter("reading --input '", options.input_path, "'");
  const auto input = io::SafeTensorsFile::open(options.input_path);
  io::SafeTensorsWriter writer;
  std::string device = "cpu";  // the GPU's name when the layer ran there
  const auto y = variant == "lra"      ? run_lra(options, weights, input, stage, device)
                 : variant == "causal" ? run_causal(options, weights, input, stage, device)
                 : variant == "vision" ? run_vision(options, weights, input, stage, device)
                                       : run_ls_heads(options, weights, input, writer, stage, device);
  stage.enter("writing --output '", options.output_path, "' (output.y ", to_string(y.shape()), ")");
  writer.set_metadata("variant", variant);
  writer.set_metadata("lsattn_version", version);
  writer.set_metadata("device", options.device);
  writer.set_metadata("dtype", options.dtype);
  writer.add("output.y", y);
  writer.write(options.output_path);
  log << "lsattn: wrote output.y " << to_string(y.shape()) << " to " << options.output_path;
  if (options.on_cuda()) log << " (ran on " << device << ", " << options.dtype << ")";
  log << "\n";
}

inline models::causal::TransformerLSModel<cpu, float> load_model(const CommonOptions& options,
                                                                 const io::SafeTensorsFile& weights,
                                                                 const std::string& command, Stage& stage) {
  auto config = models::causal::lm_config_from(hyperparameters(weights, options, "lm", command), weights, options.prefix);
  config.threads = options.threads;
  config.precision = options.precision;
  stage.enter("building the language model (n_layer = ", config.n_layer, ", d_model = ", config.d_model,
              ", d_inner = ", config.d_inner, ", vocab_size = ", config.vocab_size, ")");
  return {config, models::causal::load_lm_weights(weights, config, options.prefix)};
}

// The model's zero memory for `batch` streams, with the stage naming the sizes it takes.
inline models::causal::LmState<float> initial_state(const models::causal::TransformerLSModel<cpu, float>& model,
                                                    index_t batch, Stage& stage) {
  const auto& config = model.config();
  stage.enter("starting the memory of the language model (batch = ", batch, ", n_layer = ", config.n_layer,
              ", mem_len = ", config.mem_len, ", d_model = ", config.d_model, ")");
  return model.initial_state(batch);
}

// `lm --device cuda`: the segments read first, then run in order on the GPU (the memory stays
// there); the same outputs as on the CPU. Decoding token by token (--incremental) is the CPU's.
inline void run_lm_on_cuda(const CommonOptions& options, bool incremental, const io::SafeTensorsFile& weights,
                           const io::SafeTensorsFile& input, Stage& stage, std::ostream& log) {
  require(!incremental, "--incremental: decoding one token at a time runs on the CPU only; drop --device cuda ",
          "(or --incremental: the segment run gives the same log-probabilities)");
  auto config = models::causal::lm_config_from(hyperparameters(weights, options, "lm", "lm"), weights, options.prefix);
  stage.enter("building the language model (n_layer = ", config.n_layer, ", d_model = ", config.d_model,
              ", d_inner = ", config.d_inner, ", vocab_size = ", config.vocab_size, ")");
  auto model_weights = models::causal::load_lm_weights(weights, config, options.prefix);
  require_input(input, "input.tokens.0", "(B, L) int64");
  std::vector<Tensor<std::int64_t, 2>> segments;
  for (index_t segment = 0; input.contains("input.tokens." + std::to_string(segment)); ++segment) {
    const std::string name = "input.tokens." + std::to_string(segment);
    stage.enter("reading ", name, " of '", input.source(), "'");
    segments.push_back(input.load_int64<2>(name));
    require(segments.back().extent(0) == segments.front().extent(0), "input ", input.source(), ": ", name,
            " has batch ", segments.back().extent(0), ", input.tokens.0 had ", segments.front().extent(0));
  }
  stage.enter("running the language model on ", segments.size(), " segments on the GPU (n_layer = ", config.n_layer,
              ", mem_len = ", config.mem_len, ", vocab_size = ", config.vocab_size, ")");
  const CudaLmResult result = cuda_layers().lm(options.cuda_dtype(), config, std::move(model_weights), segments);
  io::SafeTensorsWriter writer;
  writer.set_metadata("command", "lm");
  writer.set_metadata("lsattn_version", version);
  writer.set_metadata("incremental", "false");
  writer.set_metadata("device", options.device);
  writer.set_metadata("dtype", options.dtype);
  for (std::size_t segment = 0; segment < segments.size(); ++segment) {
    const std::string segment_name = std::to_string(segment);
    writer.add("output.logprobs." + segment_name, result.logprobs[segment]);
    for (std::size_t layer = 0; layer < result.caches[segment].size(); ++layer)
      writer.add("output.cache." + segment_name + "." + std::to_string(layer), result.caches[segment][layer]);
  }
  stage.enter("writing --output '", options.output_path, "' (", segments.size(), " segments)");
  writer.write(options.output_path);
  log << "lsattn: wrote " << segments.size() << " segments of log-probabilities and caches to " << options.output_path
      << " (ran on " << result.device << ", " << options.dtype << ")\n";
}

// `lm`: input.tokens.0, input.tokens.1, … (B, L_s) int64, in order, from a zero memory. With
// `incremental`, every batch row is fed one token at a time through its own decoding state
// (step, then end_segment after each segment): the same outputs, to rounding.
inline void run_lm(const CommonOptions& options, bool incremental, Stage& stage, std::ostream& log) {
  stage.enter("reading --weights '", options.weights_path, "'");
  const auto weights = io::SafeTensorsFile::open(options.weights_path);
  stage.enter("reading --input '", options.input_path, "'");
  const auto input = io::SafeTensorsFile::open(options.input_path);
  if (options.on_cuda()) return run_lm_on_cuda(options, incremental, weights, input, stage, log);
  const auto model = load_model(options, weights, "lm", stage);
  const auto& config = model.config();
  require_input(input, "input.tokens.0", "(B, L) int64");
  io::SafeTensorsWriter writer;
  writer.set_metadata("command", "lm");
  writer.set_metadata("lsattn_version", version);
  writer.set_metadata("incremental", incremental ? "true" : "false");
  models::causal::LmState<float> state;                                // the whole batch at once
  std::vector<models::causal::LmDecodeState<cpu, float>> row_states;  // incremental: one per row
  index_t segment = 0, batch = 0;
  for (; input.contains("input.tokens." + std::to_string(segment)); ++segment) {
    const std::string name = "input.tokens." + std::to_string(segment);
    stage.enter("reading ", name, " of '", input.source(), "'");
    const auto tokens = input.load_int64<2>(name);
    if (segment == 0) {
      batch = tokens.extent(0);
      if (!incremental) state = initial_state(model, batch, stage);
      for (index_t b = 0; incremental && b < batch; ++b) row_states.push_back(model.initial_decode_state());
    }
    require(tokens.extent(0) == batch, "input ", input.source(), ": ", name, " has batch ", tokens.extent(0),
            ", input.tokens.0 had ", batch);
    stage.enter(incremental ? "decoding " : "running the language model on ", name, " (B, L) = ",
                to_string(tokens.shape()), incremental ? " one token at a time" : "", " (n_layer = ", config.n_layer,
                ", mem_len = ", config.mem_len, ", vocab_size = ", config.vocab_size, ")");
    const std::string segment_name = std::to_string(segment);
    if (!incremental) {
      writer.add("output.logprobs." + segment_name, model.forward(tokens.view(), state));
      for (index_t layer = 0; layer < config.n_layer; ++layer)
        writer.add("output.cache." + segment_name + "." + std::to_string(layer), state.caches[layer]);
      continue;
    }
    // Checked here, naming the file: step() sees one token at a time.
    const index_t length = tokens.extent(1);
    require(batch >= 1 && length >= 1, "input ", input.source(), ": ", name, " has shape ", to_string(tokens.shape()),
            "; expected a non-empty (B, L) segment");
    for (index_t i = 0; i < tokens.size(); ++i) {
      const std::int64_t id = tokens.values()[static_cast<std::size_t>(i)];
      require(id >= 0 && id < config.vocab_size, "input ", input.source(), ": ", name, " holds id ", id, " at (",
              i / length, ", ", i % length, "), outside the vocabulary [0, ", config.vocab_size, ")");
    }
    Tensor<float, 3> logprobs(Shape<3>{batch, length, config.vocab_size});
    for (index_t b = 0; b < batch; ++b) {
      auto& row = row_states[static_cast<std::size_t>(b)];
      for (index_t t = 0; t < length; ++t) {
        const std::vector<float> next = model.step(tokens(b, t), row);
        std::copy(next.begin(), next.end(), logprobs.address(b, t, 0));
      }
      model.end_segment(row);
    }
    writer.add("output.logprobs." + segment_name, logprobs);
    for (index_t layer = 0; layer < config.n_layer; ++layer) {
      Tensor<float, 3> cache(Shape<3>{batch, config.mem_len, config.d_model});
      for (index_t b = 0; b < batch; ++b) {
        const auto& memory = row_states[static_cast<std::size_t>(b)].memory.caches[static_cast<std::size_t>(layer)];
        std::copy(memory.values().begin(), memory.values().end(), cache.address(b, 0, 0));
      }
      writer.add("output.cache." + segment_name + "." + std::to_string(layer), cache);
    }
  }
  stage.enter("writing --output '", options.output_path, "' (", segment, " segments)");
  writer.write(options.output_path);
  log << "lsattn: wrote " << segment << " segments of log-probabilities and caches to " << options.output_path << "\n";
}

// The GPT's configuration: the metadata, the flags over it, and the window a run may use. Rows
// hold at most block_size tokens, so a window of block_size keys already sees every earlier one:
// a larger window gives the same logits, but initial_state() would size its local rings by it
// (2^31 - 1 keys for --local-window 2147483647). `stated_window` is the window asked for.
struct GptSetup {
  models::ls_gpt::Config config;
  index_t stated_window = 0;
};

inline GptSetup gpt_setup(const CommonOptions& options, const io::SafeTensorsFile& weights, const std::string& command) {
  GptSetup setup{models::ls_gpt::config_from(hyperparameters(weights, options, "gpt", command), weights, options.prefix)};
  auto& config = setup.config;
  config.threads = options.threads;
  config.precision = options.precision;
  setup.stated_window = config.window();
  if (config.n_local_head > 0 && setup.stated_window > config.block_size) config.local_window = config.block_size;
  return setup;
}

inline void enter_gpt_build(Stage& stage, const models::ls_gpt::Config& config) {
  stage.enter("building the GPT (", models::ls_gpt::version_name(config.version), ", n_layer = ", config.n_layer,
              ", n_embd = ", config.n_embd, ", n_head = ", config.n_head, ", head_dim = ", config.head_dim,
              ", vocab_size = ", config.vocab_size, ", block_size = ", config.block_size, ")");
}

// `gpt`: input.tokens (B, T) int64 → output.logits (B, T, vocab_size), the whole sequences at
// once, or with `incremental` one token at a time through a decoding state per batch row (the
// same logits, to rounding).
inline void run_gpt(const CommonOptions& options, bool incremental, Stage& stage, std::ostream& log) {
  namespace gpt = models::ls_gpt;
  stage.enter("reading --weights '", options.weights_path, "'");
  const auto weights = io::SafeTensorsFile::open(options.weights_path);
  stage.enter("reading --input '", options.input_path, "'");
  const auto input = io::SafeTensorsFile::open(options.input_path);
  const auto [config, stated_window] = gpt_setup(options, weights, "gpt");
  require(!(options.on_cuda() && incremental), "--incremental: decoding one token at a time runs on the CPU only; ",
          "drop --device cuda (or --incremental: the whole-sequence run gives the same logits)");
  enter_gpt_build(stage, config);
  auto model_weights = gpt::load_weights(weights, config, options.prefix);
  require_input(input, "input.tokens", "(B, T) int64");
  stage.enter("reading input.tokens of '", input.source(), "'");
  const auto tokens = input.load_int64<2>("input.tokens");
  const index_t batch = tokens.extent(0), length = tokens.extent(1);
  // Checked here for both modes, naming the file: step() would only see one token at a time.
  require(batch >= 1 && length >= 1, "input ", input.source(), ": input.tokens has shape ", to_string(tokens.shape()),
          "; expected a non-empty (B, T) batch");
  require(length <= config.block_size, "input ", input.source(), ": input.tokens has ", length,
          " tokens per row, more than block_size = ", config.block_size, " (the learned positions end there)");
  for (index_t i = 0; i < tokens.size(); ++i) {
    const std::int64_t id = tokens.values()[static_cast<std::size_t>(i)];
    require(id >= 0 && id < config.vocab_size, "input ", input.source(), ": input.tokens holds id ", id, " at (",
            i / length, ", ", i % length, "), outside the vocabulary [0, ", config.vocab_size, ")");
  }
  stage.enter(incremental ? "decoding " : "running the GPT on ", "input.tokens (B, T) = ", to_string(tokens.shape()),
              incremental ? " one token at a time" : "", " (n_layer = ", config.n_layer, ", vocab_size = ",
              config.vocab_size, ", local window = ", stated_window, " keys)");
  Tensor<float, 3> logits;
  std::string device = "cpu";
  if (options.on_cuda()) {
    auto result = cuda_layers().gpt(options.cuda_dtype(), config, std::move(model_weights), tokens);
    device = result.device;
    logits = std::move(result.y);
  } else if (!incremental) {
    const gpt::LsGpt<float> model(config, std::move(model_weights));
    logits = model.forward(tokens.view());
  } else {
    const gpt::LsGpt<float> model(config, std::move(model_weights));
    logits = Tensor<float, 3>(Shape<3>{batch, length, config.vocab_size});
    for (index_t b = 0; b < batch; ++b) {
      auto state = model.initial_state();
      for (index_t t = 0; t < length; ++t) {
        const std::vector<float> row = model.step(tokens(b, t), state);
        std::copy(row.begin(), row.end(), logits.address(b, t, 0));
      }
    }
  }
  stage.enter("writing --output '", options.output_path, "' (output.logits ", to_string(logits.shape()), ")");
  io::SafeTensorsWriter writer;
  writer.set_metadata("command", "gpt");
  writer.set_metadata("lsattn_version", version);
  writer.set_metadata("ls_gpt_version", config.version == gpt::Version::packed_heads ? "packed_heads" : "split_heads");
  writer.set_metadata("local_window", std::to_string(stated_window));
  writer.set_metadata("incremental", incremental ? "true" : "false");
  writer.set_metadata("device", options.device);
  writer.set_metadata("dtype", options.dtype);
  writer.add("output.logits", logits);
  writer.write(options.output_path);
  log << "lsattn: wrote output.logits " << to_string(logits.shape()) << " to " << options.output_path;
  if (options.on_cuda()) log << " (ran on " << device << ", " << options.dtype << ")";
  log << "\n";
}

struct EvalOptions {
  std::string protocol = "published";        // ScoringProtocol by name
  std::optional<index_t> tokens_per_sample;  // absent: metadata `tokens_per_sample`, else 256
  std::string dict_path;
  std::optional<index_t> max_bytes;  // absent: the whole text
  bool allow_unknown = false;        // --allow-unk: bytes missing from --dict become <unk>
  bool progress = true;
};

// The bytes among the first `total` of the text that the dictionary does not list.
struct UnknownBytes {
  index_t count = 0;
  index_t first_offset = -1;
  unsigned char first_byte = 0;
};

inline UnknownBytes find_unknown_bytes(const std::string& text_path, index_t total, const ByteVocabulary& vocabulary) {
  std::ifstream text(text_path, std::ios::binary);
  require(static_cast<bool>(text), "--text: cannot open '", text_path, "'");
  UnknownBytes unknown;
  std::vector<char> chunk(std::size_t{1} << 16);
  for (index_t done = 0; done < total;) {
    const index_t count = std::min<index_t>(static_cast<index_t>(chunk.size()), total - done);
    text.read(chunk.data(), count);
    require(text.gcount() == count, "--text: read error in '", text_path, "' at byte ", done + text.gcount());
    for (index_t i = 0; i < count; ++i) {
      const auto byte = static_cast<unsigned char>(chunk[static_cast<std::size_t>(i)]);
      if (vocabulary.knows(byte)) continue;
      if (unknown.count++ == 0) {
        unknown.first_offset = done + i;
        unknown.first_byte = byte;
      }
    }
    done += count;
  }
  return unknown;
}

// `eval-bpc`: bits per character of a byte text, by default with the published protocol
// (ScoringProtocol::published: blocks of tokens_per_sample fed as they are, the first token of
// each block unscored, the memory carried over from a zero start). Reads the file as it goes:
// memory does not grow with its length.
inline void run_eval_bpc(const CommonOptions& options, const EvalOptions& eval, Stage& stage, std::ostream& out,
                         std::ostream& err) {
  const ScoringProtocol protocol = scoring_protocol_from(eval.protocol);
  if (eval.tokens_per_sample) checked_size("--tokens-per-sample", *eval.tokens_per_sample, 1);
  if (eval.max_bytes) checked_size("--max-bytes", *eval.max_bytes, 1);
  stage.enter("reading --weights '", options.weights_path, "'");
  const auto weights = io::SafeTensorsFile::open(options.weights_path);
  const auto model = load_model(options, weights, "eval-bpc", stage);
  const index_t block_length =
      eval.tokens_per_sample
          ? *eval.tokens_per_sample
          : checked_size("tokens_per_sample (metadata of " + weights.source() + ")",
                         io::Hyperparameters(weights.metadata(), weights.source()).integer("tokens_per_sample").value_or(256),
                         1);
  require(protocol != ScoringProtocol::published || block_length >= 2, "--tokens-per-sample: the published protocol ",
          "scores tokens 1 … n − 1 of every block, so blocks need >= 2 tokens, got ", block_length);
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
  text.close();
  const index_t total = eval.max_bytes ? std::min(*eval.max_bytes, file_size) : file_size;
  require(total >= 1, "--text: '", options.input_path, "' is empty");

  // Before the long run: a byte the training dictionary lacks would silently score as <unk>.
  UnknownBytes unknown;
  if (!eval.dict_path.empty()) {
    stage.enter("checking the bytes of --text '", options.input_path, "' against --dict '", eval.dict_path, "'");
    unknown = find_unknown_bytes(options.input_path, total, vocabulary);
    require(unknown.count == 0 || eval.allow_unknown, "--text '", options.input_path, "': byte ",
            describe_byte(unknown.first_byte), " at offset ", unknown.first_offset, " is not in --dict '",
            eval.dict_path, "' (", unknown.count, unknown.count == 1 ? " byte" : " bytes",
            " of the text are missing from it); pass --allow-unk to map them to <unk> (id ",
            ByteVocabulary::unknown_id, "), as fairseq does");
    if (eval.allow_unknown) {
      err << "lsattn: --allow-unk: " << unknown.count << (unknown.count == 1 ? " byte" : " bytes")
          << " of the text missing from --dict '" << eval.dict_path << "' mapped to <unk> (id "
          << ByteVocabulary::unknown_id << ")\n";
    }
  }

  // fairseq ends every line with </s>, the last one too: only the published protocol over the
  // whole text adds one where the text does not end with a newline.
  const bool fairseq_lines = vocabulary.fairseq && protocol == ScoringProtocol::published && total == file_size;
  TokenStream stream(options.input_path, total, fairseq_lines, vocabulary);
  auto state = initial_state(model, 1, stage);
  std::int64_t previous = vocabulary.start;
  double nats = 0;
  index_t scored = 0, blocks = 0;
  const auto start = std::chrono::steady_clock::now();
  auto last_report = start;
  for (index_t done = 0; done < stream.size(); ++blocks) {
    stage.enter("scoring tokens [", done, ", ", std::min(done + block_length, stream.size()), ") of --text '",
                options.input_path, "' (tokens_per_sample = ", block_length, ", vocab_size = ", model.config().vocab_size,
                ")");
    const std::vector<std::int64_t> tokens = stream.next(block_length);
    const ScoredBlock block = scored_block(tokens, previous, protocol);
    previous = tokens.back();
    const auto logprobs = model.forward(block.input.view(), state);
    for (const auto& [position, target] : block.targets) nats -= logprobs(0, position, target);
    scored += static_cast<index_t>(block.targets.size());
    done += static_cast<index_t>(tokens.size());
    const auto now = std::chrono::steady_clock::now();
    if (eval.progress && (std::chrono::duration<double>(now - last_report).count() >= 1.0 || done == stream.size())) {
      last_report = now;
      const double seconds = std::chrono::duration<double>(now - start).count();
      const index_t bytes = stream.bytes_read();
      const int filled = static_cast<int>(30 * bytes / total);
      err << "\r[" << std::string(filled, '=') << std::string(30 - filled, ' ') << "] " << bytes << "/" << total
          << " bytes, " << static_cast<long long>(bytes / std::max(seconds, 1e-9)) << " bytes/s, bpc "
          << nats / std::log(2.0) / std::max<index_t>(scored, 1) << (done == stream.size() ? "\n" : "") << std::flush;
    }
  }
  require(scored >= 1, "--text '", options.input_path, "': ", stream.size(),
          " token(s) leave nothing to score under the published protocol (a block's first token is never a target)");
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  out << "bpc " << nats / std::log(2.0) / scored << " over " << scored << " scored tokens (protocol " << eval.protocol
      << ": " << stream.size() << " tokens from " << total << " bytes in " << blocks << " blocks of " << block_length
      << ", " << static_cast<long long>(total / std::max(seconds, 1e-9)) << " bytes/s";
  if (eval.allow_unknown && !eval.dict_path.empty()) out << "; " << unknown.count << " bytes mapped to <unk>";
  out << ")\n";
}

// Which model a weights file holds, when --model does not say: the character LM's in_emb.weight
// or the GPT's transformer.wte.weight under the prefix.
inline std::string model_family_of(const io::SafeTensorsFile& weights, const std::string& prefix) {
  const bool lm = weights.contains(prefix + "in_emb.weight"), gpt = weights.contains(prefix + "transformer.wte.weight");
  require(lm != gpt, "--weights '", weights.source(), "': ",
          lm ? "holds both a language model's" : "holds neither a language model's", " '", prefix,
          "in_emb.weight' and ", lm ? "a GPT's" : "nor a GPT's", " '", prefix,
          "transformer.wte.weight'; pass --model lm or --model gpt (and --prefix if the names have one)");
  return lm ? "lm" : "gpt";
}

// `generate`: samples tokens after a prompt from the character LM or the GPT, streaming them to
// `out`; the timing goes to `err`.
inline void run_generate(const CommonOptions& options, const GenerateOptions& generation, Stage& stage, std::ostream& out,
                         std::ostream& err) {
  generation.validate();
  stage.enter("reading --weights '", options.weights_path, "'");
  const auto weights = io::SafeTensorsFile::open(options.weights_path);
  const std::string family = generation.model.empty() ? model_family_of(weights, options.prefix) : generation.model;
  require(family == "lm" || !generation.segment_length, "--segment-length applies to --model lm only");
  const bool has_dict = !generation.dict_path.empty();
  const ByteVocabulary vocabulary = ByteVocabulary::load(generation.dict_path);
  // The character LM always has a byte vocabulary (a byte is its id without --dict, as in
  // eval-bpc); the GPT only with --dict.
  const bool text = family == "lm" || has_dict;
  std::vector<std::int64_t> prompt;
  if (generation.prompt) {
    require(text, "--prompt: a GPT's token ids have no text form without --dict; give --prompt-ids 1,2,3");
    prompt = text_tokens(*generation.prompt, vocabulary);
  } else {
    prompt = parse_token_ids(*generation.prompt_ids);
  }
  require(!prompt.empty(), generation.prompt ? "--prompt" : "--prompt-ids", ": the prompt is empty; give at least one token");
  const char* prompt_flag = generation.prompt ? "--prompt" : "--prompt-ids";
  auto check_ids = [&](index_t vocab_size) {
    for (std::size_t i = 0; i < prompt.size(); ++i) {
      require(prompt[i] >= 0 && prompt[i] < vocab_size, prompt_flag, ": token id ", prompt[i], " at position ", i,
              " is outside the model's vocabulary [0, ", vocab_size, ")");
    }
  };
  models::Sampler sampler(generation.sampling());
  TokenWriter writer(out, text && !generation.print_ids ? &vocabulary : nullptr);
  auto emit = [&](std::int64_t token) { writer.write(token); };
  GenerationResult result;
  index_t block_size = 0;  // the GPT's
  if (family == "lm") {
    const auto model = load_model(options, weights, "generate --model lm", stage);
    check_ids(model.config().vocab_size);
    const index_t segment_length =
        generation.segment_length
            ? *generation.segment_length
            : checked_size("tokens_per_sample (metadata of " + weights.source() + ")",
                           io::Hyperparameters(weights.metadata(), weights.source()).integer("tokens_per_sample").value_or(256),
                           1);
    stage.enter("generating ", generation.max_new_tokens, " tokens after a prompt of ", prompt.size(),
                " with the language model (segments of ", segment_length, " tokens, mem_len = ", model.config().mem_len,
                ")");
    result = generate_lm(model, prompt, segment_length, generation.max_new_tokens, sampler, emit);
  } else {
    const auto [config, stated_window] = gpt_setup(options, weights, "generate --model gpt");
    enter_gpt_build(stage, config);
    const models::ls_gpt::LsGpt<float> model(config, models::ls_gpt::load_weights(weights, config, options.prefix));
    check_ids(config.vocab_size);
    block_size = config.block_size;
    require(static_cast<index_t>(prompt.size()) <= config.block_size, prompt_flag, ": the prompt has ", prompt.size(),
            " tokens, more than block_size = ", config.block_size, " (the learned positions end there)");
    stage.enter("generating ", generation.max_new_tokens, " tokens after a prompt of ", prompt.size(),
                " with the GPT (block_size = ", config.block_size, ", local window = ", stated_window, " keys)");
    result = generate_gpt(model, prompt, generation.max_new_tokens, sampler, emit);
  }
  writer.finish();
  if (result.reached_block_size) {
    err << "lsattn: stopped after " << result.generated << " of " << generation.max_new_tokens
        << " new tokens: the sequence reached block_size = " << block_size
        << " (the learned positions end there)\n";
  }
  err << "lsattn: prompt of " << prompt.size() << " tokens in " << result.prompt_seconds << " s; generated "
      << result.generated << " tokens in " << result.generation_seconds << " s ("
      << result.generated / std::max(result.generation_seconds, 1e-9) << " tokens/s)\n";
}

// Runs the command line; returns the process exit code (0 ok, 1 runtime error, other: usage).
inline int main(int argc, const char* const* argv, std::ostream& out, std::ostream& err) {
  CLI::App app{"lsattn: long-short attention (Transformer-LS) on the CPU, and its layers on CUDA in builds with CUDA"};
  app.require_subcommand(1);
  CommonOptions options;
  std::string variant;
  EvalOptions eval;

  auto add_common = [&](CLI::App* command, const char* input_help) {
    command->add_option("--weights", options.weights_path, "weights (safetensors, published names)")->required();
    command->add_option("--prefix", options.prefix, "prefix of the tensor names in the weights file");
    command->add_option("--threads", options.threads, "CPU threads (0: OpenMP default)")->check(CLI::NonNegativeNumber);
    command
        ->add_option("--dtype", options.dtype,
                     "fp32 (default) or bf16: on the CPU the precision of the matrix products (operands rounded to "
                     "bfloat16, sums in float; softmax and LayerNorm stay float); with --device cuda the element type "
                     "of the run, fp16 too")
        ->check(CLI::IsMember({"fp32", "fp16", "bf16"}));
    command->add_option("--device", options.device,
                        "cpu (default) or cuda (builds with CUDA: run's layers, gpt's and lm's whole-segment runs on the GPU)")
        ->check(CLI::IsMember({"cpu", "cuda"}));
    if (input_help != nullptr) {
      command->add_option("--input", options.input_path, input_help)->required();
      command->add_option("--output", options.output_path, "output file (safetensors; never one of the inputs)")
          ->required();
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
  bool lm_incremental = false;
  lm->add_flag("--incremental", lm_incremental,
               "feed each batch row one token at a time through a decoding state, closing each segment with "
               "end_segment (the same log-probabilities and caches as the segment run)");
  add_flags(lm, "lm");

  auto* gpt = app.add_subcommand("gpt", "run the LS-attention GPT (nanoGPT model_localAttn.py) over token sequences");
  add_common(gpt, "inputs: input.tokens (B, T) int64");
  bool incremental = false;
  gpt->add_flag("--incremental", incremental,
                "feed the tokens one at a time through a decoding state (same logits as the whole-sequence run)");
  add_flags(gpt, "gpt");
  gpt->get_option("--local-window")
      ->description("keys a local query sees, itself included (default: the version's own, local_attn_span for "
                    "packed_heads, local_attn_span + 1 for split_heads; overrides __metadata__ local_window)");

  auto* bpc = app.add_subcommand("eval-bpc", "bits per character of a byte text file");
  add_common(bpc, nullptr);
  bpc->add_option("--text", options.input_path, "the text file")->required();
  bpc->add_option_function<index_t>("--tokens-per-sample", [&eval](index_t value) { eval.tokens_per_sample = value; },
                                    "block length (default: metadata, else 256)");
  bpc->add_option("--protocol", eval.protocol,
                  "published (fairseq-eval-lm truncated_bptt_lm: a block's first token unscored; default) or "
                  "every-byte (every byte scored, the first from the start symbol)")
      ->check(CLI::IsMember({"published", "every-byte"}));
  auto* dict = bpc->add_option("--dict", eval.dict_path, "fairseq dict.txt of the training data (default: byte = id)");
  bpc->add_flag("--allow-unk", eval.allow_unknown, "map bytes missing from --dict to <unk> (id 3) instead of failing")
      ->needs(dict);
  bpc->add_option_function<index_t>("--max-bytes", [&eval](index_t value) { eval.max_bytes = value; },
                                    "evaluate only the first N bytes");
  bpc->add_flag("!--no-progress", eval.progress, "no progress bar");
  add_flags(bpc, "lm");

  auto* generate = app.add_subcommand("generate", "sample tokens after a prompt from the language model or the GPT");
  GenerateOptions generation;
  add_common(generate, nullptr);
  generate
      ->add_option("--model", generation.model,
                   "lm (the character LM) or gpt (default: told by the weights: in_emb.weight is lm, "
                   "transformer.wte.weight gpt)")
      ->check(CLI::IsMember({"lm", "gpt"}));
  auto* prompt_text = generate->add_option_function<std::string>(
      "--prompt", [&generation](const std::string& value) { generation.prompt = value; },
      "the prompt as text: its bytes through --dict (the LM without --dict: a byte is its id)");
  generate
      ->add_option_function<std::string>(
          "--prompt-ids", [&generation](const std::string& value) { generation.prompt_ids = value; },
          "the prompt as token ids, comma-separated: 1,2,3")
      ->excludes(prompt_text);
  generate->add_option("--dict", generation.dict_path,
                       "fairseq dict.txt of byte symbols, as eval-bpc reads it: prompt text in, tokens out as text");
  generate->add_option("--max-new-tokens", generation.max_new_tokens, "tokens to generate (default 100)");
  generate->add_option("--temperature", generation.temperature, "softmax temperature; 0: greedy (default 1)");
  generate->add_option("--top-k", generation.top_k, "sample among the K most likely tokens only (0: all; default)");
  generate->add_option("--top-p", generation.top_p,
                       "sample among the smallest set of tokens whose probability reaches P (1: all; default)");
  generate->add_option("--seed", generation.seed, "random seed: the same seed gives the same tokens (default 0)");
  generate->add_option_function<index_t>(
      "--segment-length", [&generation](index_t value) { generation.segment_length = value; },
      "lm: tokens per segment before end_segment carries the memory on (default: metadata tokens_per_sample, else "
      "256, as eval-bpc)");
  generate->add_flag("--print-ids", generation.print_ids, "print token ids separated by spaces, not text");
  // The flags of both models; one that does not apply to the model run is an error.
  std::map<std::string, std::string> generate_flags = flag_keys("lm");
  for (const auto& entry : flag_keys("gpt")) generate_flags.insert(entry);
  for (const auto& [flag, key] : generate_flags) {
    generate->add_option_function<std::string>(flag, [&options, flag = flag](const std::string& value) {
      options.flags[flag] = value;
    }, "hyperparameter (overrides __metadata__)");
  }

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e, out, err);
  }
  Stage stage;
  return exit_code_of(
      [&] {
        stage.enter("checking the command line");
        options.threads = usable_threads(options.threads, err);
        if (!options.output_path.empty()) {
          check_output_path({"--output", options.output_path},
                            {{"--weights", options.weights_path}, {"--input", options.input_path}});
        }
        const char* command = run->parsed()   ? "run"
                              : lm->parsed()  ? "lm"
                              : gpt->parsed() ? "gpt"
                              : bpc->parsed() ? "eval-bpc"
                                              : "generate";
        resolve_device(options, command);
        if (run->parsed()) {
          run_layer(options, variant, stage, out);
          return;
        }
        if (gpt->parsed()) {
          run_gpt(options, incremental, stage, out);
          return;
        }
        if (lm->parsed()) {
          run_lm(options, lm_incremental, stage, out);
          return;
        }
        require_cpu_model(options, command);
        if (bpc->parsed()) {
          run_eval_bpc(options, eval, stage, out, err);
        } else if (generate->parsed()) {
          run_generate(options, generation, stage, out, err);
        }
      },
      stage, err);
}

}  // namespace lsattn::cli
