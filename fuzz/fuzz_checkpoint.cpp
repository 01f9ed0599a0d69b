// libFuzzer target: bytes → a safetensors file → hyperparameters from its __metadata__ → the
// config of one model family → load_weights → a small forward run on deterministic inputs.
//
// The family is the metadata's `variant` (lra, causal, lm, vision, ls-heads) or, without it, is
// told from the keys that only one family uses (n_layer: lm, n_head: causal, num_head: lra,
// dp_rank: vision, num_heads: ls-heads), so the test fixtures are seeds as they are. Optional
// metadata keys shape the run: fuzz_batch (B, default 1), fuzz_length (L, default 9), fuzz_cache
// (the causal cache length M, default one chunk), fuzz_mask and fuzz_cls (booleans, default false).
//
// lsattn::error is the only acceptable way to refuse an input; any other exception, a crash, a
// sanitizer report, an output of the wrong shape or with a NaN or an infinity, or two runs
// that differ are findings. Loading and the forward run are skipped (the input is simply
// uninteresting) when the config implies more than a small amount of work, estimated with the
// harness's own checked arithmetic.
// LSATTN_FUZZ_VERBOSE=1 in the environment prints what became of each input.
//
// Byte mutations rarely keep a safetensors file valid, so half of the mutations are made by a
// custom mutator that knows the format: it sets a metadata value (a hyperparameter, a fuzz_*
// key) to an interesting one, or a weight to NaN, ±Inf, a huge or a subnormal value, and keeps
// the file well-formed; the rest are libFuzzer's own.
#include <algorithm>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstdint>
#include <string>
#include <vector>

#include "harness.hpp"
#include "lsattn/lsattn.hpp"
#include "lsattn/models/causal_checkpoint.hpp"
#include "lsattn/models/lra_checkpoint.hpp"
#include "lsattn/models/vision_checkpoint.hpp"

namespace {

using lsattn::cpu;
using lsattn::HostView;
using lsattn::index_t;
using lsattn::Shape;
using lsattn::Tensor;
using lsattn::fuzz::Cost;
using lsattn::fuzz::deterministic;
using lsattn::fuzz::finding;
using lsattn::fuzz::plus;
using lsattn::fuzz::times;
using lsattn::fuzz::require_identical;
using lsattn::io::Hyperparameters;
using lsattn::io::SafeTensorsFile;
namespace lra = lsattn::models::lra;
namespace causal = lsattn::models::causal;
namespace vision = lsattn::models::vision;
namespace ls_heads = lsattn::models::ls_heads;

// The shape of the run, from the fuzz_* keys; nullopt-like `valid = false` when out of range.
struct Run {
  index_t batch = 1, length = 9, cache = -1;  // cache -1: one chunk
  bool mask = false, cls = false, valid = true;

  explicit Run(const Hyperparameters& values) {
    batch = values.integer("fuzz_batch").value_or(1);
    length = values.integer("fuzz_length").value_or(9);
    cache = values.integer("fuzz_cache").value_or(-1);
    mask = values.boolean("fuzz_mask").value_or(false);
    cls = values.boolean("fuzz_cls").value_or(false);
    valid = batch >= 1 && batch <= 4 && length >= 1 && length <= 256 && cache >= -1 && cache <= 256;
  }
};

// 1 everywhere except every third token of each sequence (and never all of them).
Tensor<float, 2> make_mask(index_t batch, index_t length) {
  Tensor<float, 2> mask(Shape<2>{batch, length}, 1.0f);
  for (index_t b = 0; b < batch; ++b)
    for (index_t i = 1; i < length; i += 3) mask(b, i) = 0.0f;
  return mask;
}

// What became of an input, when LSATTN_FUZZ_VERBOSE is set.
void note(const std::string& family, const char* outcome, const char* detail = "") {
  static const bool verbose = std::getenv("LSATTN_FUZZ_VERBOSE") != nullptr;
  if (verbose) std::fprintf(stderr, "fuzz_checkpoint: %s: %s%s\n", family.c_str(), outcome, detail);
}

template <class T, std::size_t Rank>
void require_shape(const Tensor<T, Rank>& output, const Shape<Rank>& expected) {
  if (output.shape() != expected) finding("a forward run returned an output of the wrong shape");
  lsattn::fuzz::require_finite(output, "a forward run returned a non-finite value without an error");
}

void run_lra(const SafeTensorsFile& file, const Hyperparameters& values, const Run& run) {
  const std::string family = "lra";
  lra::Config config = lra::config_from(values);
  config.threads = 1;
  const index_t d = config.transformer_dim, r = config.num_landmarks, w = config.window_size;
  const index_t length = run.length + (config.cls_pooling ? 1 : 0);
  Cost cost;
  cost.add({4, d, d}).add({config.num_head, r, d});  // parameters
  cost.add({run.batch, length, 4, d, d}).add({run.batch, length, config.num_head, r, d});
  cost.add({run.batch, length, d, 2, w, 2}).add({run.batch, length, d, r, 2});
  if (!cost.affordable()) return note(family, "skipped: too much work");
  const lra::AttentionLS<cpu, float> layer(config, lra::load_weights(file, config));
  const auto x = deterministic(Shape<3>{run.batch, length, d}, 1);
  const auto mask = run.mask ? make_mask(run.batch, length) : Tensor<float, 2>{};
  const auto cls_embed = run.cls ? deterministic(Shape<3>{run.batch, 1, d}, 2) : Tensor<float, 3>{};
  const HostView<const float, 2> mask_view = run.mask ? mask.view() : HostView<const float, 2>{};
  const HostView<const float, 3> cls_view = run.cls ? cls_embed.view() : HostView<const float, 3>{};
  const auto first = layer.forward(x.view(), mask_view, cls_view);
  // A cls_embed given beside the tokens (pooling other than 'cls') comes back as one more row, first.
  const index_t output_length = length + (run.cls && !config.cls_pooling ? 1 : 0);
  require_shape(first, Shape<3>{run.batch, output_length, d});
  require_identical(first, layer.forward(x.view(), mask_view, cls_view), "two LRA forward runs differ");
  note(family, "ran");
}

// The causal layer's cost, shared with the language model's layers.
void add_layer_cost(Cost& cost, const causal::Config& config, index_t batch, index_t length, index_t cache) {
  const index_t d = config.d_model, l = config.chunk_size, r = config.chunk_rank, w = config.window_len;
  cost.add({6, d, d}).add({w, d, d}).add({r, config.n_head, d});  // parameters and the position table
  const index_t keys = plus({length, cache});
  cost.add({batch, keys, 6, d, d}).add({batch, length, plus({w, l, 1}), d, 2});
  cost.add({batch, keys, r, config.n_head, d}).add({batch, length, keys, d});
}

void run_causal(const SafeTensorsFile& file, const Hyperparameters& values, const Run& run) {
  const std::string family = "causal";
  causal::Config config = causal::layer_config_from(values);
  config.threads = 1;
  const index_t d = config.d_model;
  if (run.cache < 0 && config.chunk_size > 256) return note(family, "skipped: chunk_size above 256");
  const index_t cache_length = run.cache < 0 ? config.chunk_size : run.cache;
  Cost cost;
  add_layer_cost(cost, config, run.batch, run.length, cache_length);
  if (!cost.affordable()) return note(family, "skipped: too much work");
  const causal::ChunkedLSAttention<cpu, float> layer(config, causal::load_layer_weights(file, config));
  const auto h = deterministic(Shape<3>{run.batch, run.length, d}, 3);
  const auto cache = deterministic(Shape<3>{run.batch, cache_length, d}, 4);
  const auto first = layer.forward(h.view(), cache.view());
  require_shape(first, Shape<3>{run.batch, run.length, d});
  require_identical(first, layer.forward(h.view(), cache.view()), "two causal forward runs differ");
  note(family, "ran");
}

void run_lm(const SafeTensorsFile& file, const Hyperparameters& values, const Run& run) {
  const std::string family = "lm";
  causal::LmConfig config = causal::lm_config_from(values);
  config.threads = 1;
  // The published padding runs up to a multiple of lcm(chunk_size, window_len) <= their product.
  const index_t d = config.d_model, l = config.chunk_size, w = config.window_len;
  Cost cost;
  cost.add({config.vocab_size, d, 2}).add({config.n_layer, config.d_inner, d, 2 * run.batch * run.length});
  const index_t padded = plus({run.length, times(l, w)});
  if (padded > lsattn::fuzz::work_budget) return note(family, "skipped: too much work");
  cost.add({run.batch, padded, config.vocab_size, d});
  for (index_t layer = 0; layer < config.n_layer && cost.affordable(); ++layer)
    add_layer_cost(cost, config.layer(), run.batch, padded, config.mem_len);
  if (!cost.affordable()) return note(family, "skipped: too much work");
  const causal::TransformerLSModel<cpu, float> model(config, causal::load_lm_weights(file, config));
  Tensor<std::int64_t, 2> tokens(Shape<2>{run.batch, run.length});
  for (index_t i = 0; i < tokens.size(); ++i) tokens.values()[i] = (i * 7 + 3) % config.vocab_size;
  // Two segments, so that the second reads the memory the first left; twice, to compare.
  Tensor<float, 3> outputs[2][2];
  for (auto& pass : outputs) {
    auto state = model.initial_state(run.batch);
    for (auto& segment : pass) {
      segment = model.forward(tokens.view(), state);
      require_shape(segment, Shape<3>{run.batch, run.length, config.vocab_size});
    }
  }
  require_identical(outputs[0][0], outputs[1][0], "two language model runs differ (first segment)");
  require_identical(outputs[0][1], outputs[1][1], "two language model runs differ (second segment)");
  note(family, "ran");
}

void run_vision(const SafeTensorsFile& file, const Hyperparameters& values, const Run& run) {
  const std::string family = "vision";
  vision::Config config = vision::config_from(values);
  config.threads = 1;
  const index_t nx = values.integer("nx").value_or(4), ny = values.integer("ny").value_or(nx);
  if (nx < 1 || nx > 64 || ny < 1 || ny > 64) return note(family, "skipped: grid outside 1..64");
  const index_t c = config.dim, w = config.w, tile = times(2, w), tokens = plus({config.nglo, nx * ny});
  if (tokens > lsattn::fuzz::work_budget) return note(family, "skipped: too much work");
  Cost cost;
  cost.add({3, c, c}).add({config.num_heads, config.dp_rank, c}).add({config.num_heads, w, w, tile, tile});
  cost.add({run.batch, tokens, 4, c, c}).add({run.batch, tokens, c, tile, tile, 2});
  cost.add({run.batch, tokens, c, plus({config.dp_rank, config.nglo}), 2}).add({run.batch, config.nglo, tokens, c, 2});
  if (!cost.affordable()) return note(family, "skipped: too much work");
  const vision::AttentionLS2D<cpu, float> layer(config, vision::load_weights(file, config));
  const auto x = deterministic(Shape<3>{run.batch, tokens, c}, 5);
  const auto first = layer.forward(x.view(), nx, ny);
  require_shape(first, Shape<3>{run.batch, tokens, c});
  require_identical(first, layer.forward(x.view(), nx, ny), "two vision forward runs differ");
  note(family, "ran");
}

// As the command line reads it (tools/cli): local_heads is a comma-separated list of indices.
void run_ls_heads(const SafeTensorsFile& file, const Hyperparameters& values, const Run& run) {
  const std::string family = "ls-heads";
  ls_heads::Config config;
  config.num_heads = values.required_integer("num_heads", "--heads");
  config.dim = values.required_integer("dim", "--dim");
  config.window = values.required_integer("window", "--window");
  config.causal = values.boolean("causal").value_or(false);
  config.threads = 1;
  const std::string list = values.text("local_heads").value_or("");
  for (std::size_t start = 0; start < list.size() && config.local_heads.size() <= 64;) {
    const std::size_t end = std::min(list.find(',', start), list.size());
    const Hyperparameters one({{"local_heads", list.substr(start, end - start)}}, file.source());
    config.local_heads.push_back(*one.integer("local_heads"));
    start = end + 1;
  }
  config.validate();
  const index_t d = config.dim;
  Cost cost;
  cost.add({4, d, d}).add({run.batch, run.length, 4, d, d}).add({run.batch, run.length, run.length, d, 2});
  if (!cost.affordable()) return note(family, "skipped: too much work");
  const ls_heads::LsHeadsAttention<cpu, float> layer(
      config, lsattn::io::load_parameters<ls_heads::Weights<float>>(file, config));
  const auto x = deterministic(Shape<3>{run.batch, run.length, d}, 6);
  const auto mask = run.mask ? make_mask(run.batch, run.length) : Tensor<float, 2>{};
  const HostView<const float, 2> mask_view = run.mask ? mask.view() : HostView<const float, 2>{};
  std::vector<float> max_logits;
  const auto first = layer.forward(x.view(), mask_view, &max_logits);
  require_shape(first, Shape<3>{run.batch, run.length, d});
  if (static_cast<index_t>(max_logits.size()) != config.num_heads) finding("max_logits has the wrong size");
  require_identical(first, layer.forward(x.view(), mask_view), "two LS-heads forward runs differ");
  note(family, "ran");
}

std::string family_of(const Hyperparameters& values) {
  if (const auto variant = values.text("variant")) return *variant;
  if (values.text("n_layer")) return "lm";
  if (values.text("n_head")) return "causal";
  if (values.text("num_head")) return "lra";
  if (values.text("dp_rank")) return "vision";
  if (values.text("num_heads")) return "ls-heads";
  return "";
}

// The structure-aware mutations (see the top of the file). Returns the new size, or 0 when the
// input is not a file it can edit.
std::size_t mutate_structure(std::uint8_t* data, std::size_t size, std::size_t max_size, unsigned seed) {
  using json = nlohmann::json;
  std::minstd_rand random(seed);
  if (size < 8) return 0;
  std::uint64_t header_size = 0;
  for (int i = 7; i >= 0; --i) header_size = (header_size << 8) | data[i];
  if (header_size > size - 8) return 0;
  // json::dump recurses: leave deeply nested headers to the byte mutations.
  int depth = 0;
  for (std::size_t i = 8; i < 8 + header_size; ++i) {
    depth += data[i] == '[' || data[i] == '{' ? 1 : data[i] == ']' || data[i] == '}' ? -1 : 0;
    if (depth > 32) return 0;
  }
  json header = json::parse(data + 8, data + 8 + header_size, nullptr, false);
  if (!header.is_object()) return 0;
  const std::size_t data_offset = 8 + static_cast<std::size_t>(header_size);

  if (random() % 2 == 0) {  // a weight value
    std::vector<std::pair<std::uint64_t, std::uint64_t>> spans;  // F32 tensors' [begin, end)
    for (const auto& [name, entry] : header.items()) {
      if (!entry.is_object() || entry.value("dtype", json()) != "F32") continue;
      const json offsets = entry.value("data_offsets", json());
      if (!offsets.is_array() || offsets.size() != 2 || !offsets[0].is_number_unsigned() ||
          !offsets[1].is_number_unsigned())
        continue;
      const std::uint64_t begin = offsets[0], end = offsets[1];
      if (end >= 4 && begin <= end - 4 && end <= size - data_offset) spans.emplace_back(begin, end);
    }
    if (spans.empty()) return 0;
    const auto [begin, end] = spans[random() % spans.size()];
    const std::uint64_t at = data_offset + begin + 4 * (random() % ((end - begin) / 4));
    const float values[] = {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(),
                            -std::numeric_limits<float>::infinity(), 3e38f, -3e38f, 1e-40f, 0.0f, 1e10f};
    const float value = values[random() % std::size(values)];
    std::memcpy(data + at, &value, sizeof value);  // little-endian hosts, like the reader's tests
    return size;
  }

  // A metadata value: an existing key, a fuzz_* key or a hyperparameter name of any family.
  static const char* const keys[] = {"fuzz_batch", "fuzz_length", "fuzz_cache", "fuzz_mask", "fuzz_cls", "variant",
                                     "window_size", "num_landmarks", "pooling_mode", "window_len", "chunk_size",
                                     "clamp_len", "cpos_clamp_len", "mem_len", "pre_ln", "use_gelu", "w", "nglo",
                                     "rpe", "nx", "ny", "window", "causal", "local_heads", "n_layer"};
  static const char* const values[] = {"0", "1", "2", "3", "4", "5", "7", "8", "16", "-1", "-2", "2147483647",
                                       "2147483648", "9223372036854775807", "-9223372036854775808",
                                       "99999999999999999999", "true", "false", "", " 2", "+2", "CLS", "mean", "lra",
                                       "causal", "lm", "vision", "ls-heads", "0,1", "1,1", "-1"};
  json& metadata = header["__metadata__"];
  if (!metadata.is_object()) metadata = json::object();
  std::string key = keys[random() % std::size(keys)];
  if (!metadata.empty() && random() % 2 == 0) {
    auto it = metadata.begin();
    std::advance(it, static_cast<std::ptrdiff_t>(random() % metadata.size()));
    key = it.key();
  }
  metadata[key] = values[random() % std::size(values)];
  std::string text = header.dump(-1, ' ', false, json::error_handler_t::replace);
  text.append((8 - text.size() % 8) % 8, ' ');
  const std::size_t data_size = size - data_offset, new_size = 8 + text.size() + data_size;
  if (new_size > max_size) return 0;
  std::vector<std::uint8_t> result(new_size);
  for (int i = 0; i < 8; ++i) result[i] = static_cast<std::uint8_t>(static_cast<std::uint64_t>(text.size()) >> (8 * i));
  std::memcpy(result.data() + 8, text.data(), text.size());
  std::memcpy(result.data() + 8 + text.size(), data + data_offset, data_size);
  std::memcpy(data, result.data(), new_size);
  return new_size;
}

}  // namespace

extern "C" std::size_t LLVMFuzzerMutate(std::uint8_t* data, std::size_t size, std::size_t max_size);

extern "C" std::size_t LLVMFuzzerCustomMutator(std::uint8_t* data, std::size_t size, std::size_t max_size,
                                               unsigned seed) {
  if (seed % 2 == 0) {
    if (const std::size_t new_size = mutate_structure(data, size, max_size, seed / 2)) return new_size;
  }
  return LLVMFuzzerMutate(data, size, max_size);
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string family = "?";
  try {
    const SafeTensorsFile file = SafeTensorsFile::parse(std::vector<std::uint8_t>(data, data + size), "fuzz");
    const Hyperparameters values(file.metadata(), file.source());
    const Run run(values);
    family = family_of(values);
    if (!run.valid) {
      note(family, "skipped: fuzz_batch, fuzz_length or fuzz_cache out of range");
      return 0;
    }
    if (family == "lra") run_lra(file, values, run);
    else if (family == "causal") run_causal(file, values, run);
    else if (family == "lm") run_lm(file, values, run);
    else if (family == "vision") run_vision(file, values, run);
    else if (family == "ls-heads") run_ls_heads(file, values, run);
    else note(family, "skipped: no model family");
  } catch (const lsattn::error& refusal) {
    // A refusal with a message: the expected outcome for most inputs.
    note(family, "refused: ", refusal.what());
  }
  return 0;
}
