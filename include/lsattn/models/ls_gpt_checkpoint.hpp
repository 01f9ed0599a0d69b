#pragma once
// Loading the LS-attention GPT (models/ls_gpt.hpp) from a safetensors file exported from a
// nanoGPT checkpoint (tools/export_ls_gpt.py): the state_dict names unchanged, GPTConfig's fields
// in `__metadata__`, the version told by the attention's tensor names.
#include <cstddef>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "lsattn/core/error.hpp"
#include "lsattn/io/hyperparameters.hpp"
#include "lsattn/io/parameters.hpp"
#include "lsattn/io/safetensors.hpp"
#include "lsattn/models/ls_gpt.hpp"

namespace lsattn::models::ls_gpt {

namespace checkpoint_detail {

// The block index and the rest of "transformer.h.<i>.<rest>", or nothing for other names.
struct BlockName {
  index_t layer = 0;
  std::string rest;
};

inline std::optional<BlockName> block_name(const std::string& name) {
  const std::string head = "transformer.h.";
  if (name.rfind(head, 0) != 0) return std::nullopt;
  std::size_t end = head.size();
  index_t layer = 0;
  while (end < name.size() && name[end] >= '0' && name[end] <= '9' && end - head.size() < 10)
    layer = layer * 10 + (name[end++] - '0');
  if (end == head.size() || end >= name.size() || name[end] != '.') return std::nullopt;
  return BlockName{layer, name.substr(end + 1)};
}

// The file's tensor names that start with `prefix`, without it.
inline std::vector<std::string> names_under(const io::SafeTensorsFile& file, const std::string& prefix) {
  std::vector<std::string> names;
  for (const std::string& name : file.names())
    if (name.rfind(prefix, 0) == 0) names.push_back(name.substr(prefix.size()));
  return names;
}

// "; its names start with '_orig_mod.': give that prefix (lsattn --prefix _orig_mod.)" when
// the model's token embedding sits behind another prefix than the one given, else "".
inline std::string prefix_hint(const io::SafeTensorsFile& file, const std::string& prefix) {
  const std::string anchor = "transformer.wte.weight";
  for (const std::string& name : file.names()) {
    if (name.size() > anchor.size() && name.ends_with(anchor) && name != prefix + anchor) {
      const std::string found = name.substr(0, name.size() - anchor.size());
      return "; its model sits under the prefix '" + found + "': give that prefix (lsattn --prefix " + found + ")";
    }
  }
  return "";
}

inline std::string describe(const Config& config) {
  return lsattn::detail::concat("version ", version_name(config.version), ", n_layer = ", config.n_layer,
                                ", bias = ", config.bias ? "true" : "false");
}

// The published packed_heads mask: head h < n_local_head sees keys j with i − span < j ≤ i,
// the other heads every j ≤ i.
inline bool published_mask(index_t n_local_head, index_t span, index_t head, index_t i, index_t j) {
  return j <= i && (head >= n_local_head || j > i - span);
}

// The (n_local_head, local_attn_span) whose formula gives `mask` (1, n_head, M, M), if any:
// local heads come first and see fewer than M keys in the last row.
inline std::optional<std::pair<index_t, index_t>> mask_parameters(const Tensor<float, 4>& mask) {
  const index_t heads = mask.extent(1), m = mask.extent(2);
  if (m == 0) return std::nullopt;
  auto last_row_keys = [&](index_t h) {
    index_t keys = 0;
    for (index_t j = 0; j < m; ++j) keys += mask(0, h, m - 1, j) != 0.0f;
    return keys;
  };
  index_t n_local = 0;
  while (n_local < heads && last_row_keys(n_local) < m) ++n_local;
  const index_t span = n_local > 0 ? last_row_keys(0) : 0;
  for (index_t h = 0; h < heads; ++h)
    for (index_t i = 0; i < m; ++i)
      for (index_t j = 0; j < m; ++j)
        if ((mask(0, h, i, j) != 0.0f) != published_mask(n_local, span, h, i, j)) return std::nullopt;
  return std::pair{n_local, span};
}

}  // namespace checkpoint_detail

// The version the attention's tensor names tell: `transformer.h.<i>.attn.c_attn.*` is the packed
// one, `attn.c_local_attn.*` / `attn.c_global_attn.*` the split one; neither or both is an error.
inline Version version_from(const io::SafeTensorsFile& file, const std::string& prefix = "") {
  std::string packed, split;
  for (const std::string& name : checkpoint_detail::names_under(file, prefix)) {
    const auto block = checkpoint_detail::block_name(name);
    if (!block) continue;
    if (packed.empty() && block->rest.rfind("attn.c_attn.", 0) == 0) packed = prefix + name;
    if (split.empty() && (block->rest.rfind("attn.c_local_attn.", 0) == 0 || block->rest.rfind("attn.c_global_attn.", 0) == 0))
      split = prefix + name;
  }
  require(packed.empty() || split.empty(), "weights ", file.source(), ": both versions' attention tensors are present, '",
          packed, "' (", version_name(Version::packed_heads), ") and '", split, "' (", version_name(Version::split_heads),
          "); a checkpoint holds one");
  if (!packed.empty()) return Version::packed_heads;
  if (!split.empty()) return Version::split_heads;
  std::string examples;
  std::size_t listed = 0;
  for (const std::string& name : file.names()) {
    if (listed++ == 4) {
      examples += ", ...";
      break;
    }
    examples += (examples.empty() ? "'" : ", '") + name + "'";
  }
  throw error(lsattn::detail::concat(
      "lsattn: weights ", file.source(), ": no attention tensors under the prefix '", prefix,
      "': expected transformer.h.<i>.attn.c_attn.* (", version_name(Version::packed_heads),
      ") or transformer.h.<i>.attn.c_local_attn.* / c_global_attn.* (", version_name(Version::split_heads),
      "); the file holds ", file.names().size(), " tensors", examples.empty() ? "" : ": ", examples,
      checkpoint_detail::prefix_hint(file, prefix)));
}

// GPTConfig's fields by their names (block_size, vocab_size, n_layer, n_head, head_dim, n_embd,
// n_local_head, local_attn_span: required), bias (when absent: told by `transformer.ln_f.bias`),
// and lsattn's local_window (default 0: the version's own window); the version from the names.
inline Config config_from(const io::Hyperparameters& values, const io::SafeTensorsFile& file,
                          const std::string& prefix = "") {
  Config config;
  config.version = version_from(file, prefix);
  config.block_size = values.required_integer("block_size", "--block-size");
  config.vocab_size = values.required_integer("vocab_size", "--vocab");
  config.n_layer = values.required_integer("n_layer", "--layers");
  config.n_head = values.required_integer("n_head", "--heads");
  config.head_dim = values.required_integer("head_dim", "--head-dim");
  config.n_embd = values.required_integer("n_embd", "--dim");
  config.n_local_head = values.required_integer("n_local_head", "--local-heads");
  config.local_attn_span = values.required_integer("local_attn_span", "--local-attn-span");
  config.bias = values.boolean("bias").value_or(file.contains(prefix + "transformer.ln_f.bias"));
  config.local_window = values.integer("local_window").value_or(0);
  config.validate();
  return config;
}

// The packed version's registered buffer `transformer.h.<i>.attn.mask`, (1, n_head, M, M) bool
// with M ≥ block_size (the published crop_block_size leaves it uncropped), must be the published
// formula for n_layer's n_local_head and local_attn_span (local_window is a run-time choice and
// is not checked against it).
inline void check_mask_buffer(const io::SafeTensorsFile& file, const std::string& name, const Config& config) {
  const auto& stored_shape = file.info(name).shape;
  const bool shape_ok = stored_shape.size() == 4 && stored_shape[0] == 1 && stored_shape[1] == config.n_head &&
                        stored_shape[2] == stored_shape[3] && stored_shape[2] >= config.block_size;
  require(shape_ok, "weights ", file.source(), ": the attention mask buffer '", name, "' has shape ",
          io::detail::shape_string(stored_shape), ", expected (1, n_head, block_size, block_size) = (1, ", config.n_head,
          ", ", config.block_size, ", ", config.block_size, ") or a larger square");
  const auto mask = file.load_numeric<4>(name);
  const index_t m = mask.extent(2);
  for (index_t h = 0; h < config.n_head; ++h) {
    for (index_t i = 0; i < m; ++i) {
      for (index_t j = 0; j < m; ++j) {
        const float value = mask(0, h, i, j);
        require(value == 0.0f || value == 1.0f, "weights ", file.source(), ": the attention mask buffer '", name,
                "' holds ", value, " at (0, ", h, ", ", i, ", ", j, "); a mask holds 0 (false) or 1 (true)");
        const bool expected = checkpoint_detail::published_mask(config.n_local_head, config.local_attn_span, h, i, j);
        if ((value == 1.0f) == expected) continue;
        const auto implied = checkpoint_detail::mask_parameters(mask);
        throw error(lsattn::detail::concat(
            "lsattn: weights ", file.source(), ": the attention mask buffer '", name, "' contradicts n_local_head = ",
            config.n_local_head, ", local_attn_span = ", config.local_attn_span, ": at head ", h, ", query ", i,
            ", key ", j, " it holds ", value == 1.0f ? "true" : "false", ", the published formula (heads below n_local_head: ",
            "i - span < j <= i; the others: j <= i) gives ", expected ? "true" : "false",
            implied ? lsattn::detail::concat("; the mask is that of n_local_head = ", implied->first,
                                             ", local_attn_span = ", implied->second)
                    : std::string("; the mask follows no such formula")));
      }
    }
  }
}

// Every parameter of `config` as `prefix + name` (F32, F16 or BF16 in the file), with the names
// checked before anything is read: the version must be the file's, n_layer its block count, and
// every tensor under the prefix must be a parameter or, for packed_heads, a mask buffer that
// follows the formula; anything else is an error, never a tensor silently ignored (tensors
// outside a non-empty prefix are not looked at: the model may sit inside a larger file).
inline Weights<float> load_weights(const io::SafeTensorsFile& file, const Config& config, const std::string& prefix = "") {
  config.validate();
  const Version found = version_from(file, prefix);
  require(found == config.version, "weights ", file.source(), ": the attention tensors are those of ",
          version_name(found), ", but the config says ", version_name(config.version));
  // The block count first: a wrong n_layer would otherwise list every block's tensors as missing.
  io::require_layer_count(file, config.n_layer, prefix, "transformer.h.", ".ln_1.weight", "blocks");

  // In the published module order, so that the first error is the first tensor the model reads.
  std::vector<std::pair<std::string, std::vector<index_t>>> expected;
  std::map<std::string, std::size_t> known;
  Weights<float> names;
  names.for_each(config, [&](const std::string& name, const auto&, const auto& shape) {
    known[name] = expected.size();
    expected.push_back({name, {shape.begin(), shape.end()}});
  });
  for (const auto& [name, shape] : expected) {
    const std::string full = prefix + name;
    require(file.contains(full), "weights ", file.source(), ": missing tensor '", full, "' (expected shape ",
            io::detail::shape_string(shape), "; ", checkpoint_detail::describe(config), ")");
    const auto& stored = file.info(full).shape;
    require(stored == shape, "weights ", file.source(), ": tensor '", full, "' has shape ",
            io::detail::shape_string(stored), ", expected ", io::detail::shape_string(shape), " (",
            checkpoint_detail::describe(config), ", n_embd = ", config.n_embd, ", n_head = ", config.n_head,
            ", head_dim = ", config.head_dim, ", n_local_head = ", config.n_local_head, ", vocab_size = ",
            config.vocab_size, ", block_size = ", config.block_size, ")");
  }

  std::vector<std::string> masks, unexpected;
  for (const std::string& name : checkpoint_detail::names_under(file, prefix)) {
    if (known.count(name)) continue;
    const auto block = checkpoint_detail::block_name(name);
    if (block && block->rest == "attn.mask" && block->layer < config.n_layer && config.version == Version::packed_heads) {
      masks.push_back(prefix + name);
      continue;
    }
    std::string reason = "not a parameter of the model";
    if (block && block->layer >= config.n_layer)
      reason = lsattn::detail::concat("block ", block->layer, ", past n_layer = ", config.n_layer);
    else if (block && block->rest == "attn.mask") reason = "a mask buffer, which only the packed_heads version has";
    else if (name.ends_with(".bias") && !config.bias) reason = "a bias, but bias = false";
    unexpected.push_back("'" + prefix + name + "' (" + reason + ")");
  }
  if (!unexpected.empty()) {
    std::string list;
    for (std::size_t i = 0; i < unexpected.size() && i < 4; ++i) list += (i ? ", " : "") + unexpected[i];
    if (unexpected.size() > 4) list += lsattn::detail::concat(" and ", unexpected.size() - 4, " more");
    throw error(lsattn::detail::concat("lsattn: weights ", file.source(), ": ", unexpected.size(),
                                       unexpected.size() == 1 ? " tensor" : " tensors", " under the prefix '", prefix,
                                       "' that the model (", checkpoint_detail::describe(config),
                                       ") does not use: ", list, "; the hyperparameters contradict the weights"));
  }
  for (const std::string& mask : masks) check_mask_buffer(file, mask, config);
  return io::load_parameters<Weights<float>>(file, config, prefix);
}

}  // namespace lsattn::models::ls_gpt
