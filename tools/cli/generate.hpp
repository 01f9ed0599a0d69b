#pragma once
// What `lsattn generate` does once a model is loaded: the prompt as token ids, a token as text,
// and the sampling loops of the two models. Kept apart from the command line so that tests can
// read the rules in one place.
#include <chrono>
#include <cmath>
#include <cstdint>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "lsattn/backend/cpu/parallel.hpp"
#include "lsattn/core/error.hpp"
#include "lsattn/core/limits.hpp"
#include "lsattn/lsattn.hpp"
#include "lsattn/models/causal_lm.hpp"
#include "lsattn/models/ls_gpt.hpp"
#include "lsattn/models/sampling.hpp"
#include "eval_bpc.hpp"

namespace lsattn::cli {

struct GenerateOptions {
  std::string model;                      // "lm", "gpt", or "": told by the weights
  std::optional<std::string> prompt;      // --prompt: text, through the byte vocabulary
  std::optional<std::string> prompt_ids;  // --prompt-ids: "1,2,3"
  std::string dict_path;
  index_t max_new_tokens = 100;
  double temperature = 1.0;
  index_t top_k = 0;
  double top_p = 1.0;
  std::uint64_t seed = 0;
  std::optional<index_t> segment_length;  // --segment-length (lm only)
  bool print_ids = false;

  // The options' own rules, named as the user typed them (Sampler's own checks name its fields).
  void validate() const {
    require(std::isfinite(temperature) && temperature >= 0, "--temperature: must be >= 0 (0 = greedy), got ",
            temperature);
    require(top_k >= 0, "--top-k: must be >= 0 (0 = all tokens), got ", top_k);
    require(std::isfinite(top_p) && top_p > 0 && top_p <= 1, "--top-p: must be in (0, 1] (1 = no cut), got ", top_p);
    checked_size("--max-new-tokens", max_new_tokens);
    if (segment_length) checked_size("--segment-length", *segment_length, 1);
    require(prompt.has_value() != prompt_ids.has_value(), "give the prompt as --prompt TEXT or --prompt-ids 1,2,3");
  }

  models::SamplingOptions sampling() const { return {temperature, top_k, top_p, seed}; }
};

// "1,2,3" → {1, 2, 3}; spaces around an id are allowed.
inline std::vector<std::int64_t> parse_token_ids(const std::string& list) {
  std::vector<std::int64_t> ids;
  for (std::size_t start = 0; start <= list.size();) {
    const std::size_t end = std::min(list.find(',', start), list.size());
    const std::string item = list.substr(start, end - start);
    std::size_t used = 0;
    long long id = -1;
    try {
      id = std::stoll(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    while (used < item.size() && item[used] == ' ') ++used;
    require(used != 0 && used == item.size(), "--prompt-ids: '", item, "' (item ", ids.size(),
            ") is not a token id; expected comma-separated integers such as 1,2,3");
    ids.push_back(id);
    start = end + 1;
  }
  return ids;
}

// The prompt text's bytes as ids (eval-bpc's vocabulary: a byte is its id, or fairseq's ids with
// a --dict); a byte the dictionary lacks is an error: the model never saw the text as typed.
inline std::vector<std::int64_t> text_tokens(const std::string& text, const ByteVocabulary& vocabulary) {
  std::vector<std::int64_t> ids;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const auto byte = static_cast<unsigned char>(text[i]);
    require(vocabulary.knows(byte), "--prompt: byte ", describe_byte(byte), " at offset ", i,
            " is not in --dict (only <unk> could stand for it)");
    ids.push_back(vocabulary.ids[byte]);
  }
  return ids;
}

// Writes generated tokens as they come: ids separated by spaces, or the bytes the vocabulary
// gives them (fairseq's specials as <s>, <pad>, <unk>; an id no byte maps to as <id>).
class TokenWriter {
 public:
  TokenWriter(std::ostream& out, const ByteVocabulary* vocabulary) : out_(out) {
    if (vocabulary == nullptr) return;
    text_ = true;
    for (int byte = 0; byte < 256; ++byte) {
      const std::int64_t id = vocabulary->ids[static_cast<std::size_t>(byte)];
      if (vocabulary->fairseq && id == ByteVocabulary::unknown_id) continue;
      if (id >= static_cast<std::int64_t>(bytes_.size())) bytes_.resize(static_cast<std::size_t>(id) + 1, -1);
      bytes_[static_cast<std::size_t>(id)] = byte;
    }
    fairseq_ = vocabulary->fairseq;
  }

  void write(std::int64_t id) {
    if (!text_) {
      out_ << (count_++ ? " " : "") << id << std::flush;
      return;
    }
    ++count_;
    if (id < static_cast<std::int64_t>(bytes_.size()) && bytes_[static_cast<std::size_t>(id)] >= 0) {
      out_.put(static_cast<char>(bytes_[static_cast<std::size_t>(id)]));
    } else if (fairseq_ && id == 0) {
      out_ << "<s>";
    } else if (fairseq_ && id == 1) {
      out_ << "<pad>";
    } else if (fairseq_ && id == ByteVocabulary::unknown_id) {
      out_ << "<unk>";
    } else {
      out_ << "<" << id << ">";
    }
    out_.flush();
  }

  void finish() { out_ << "\n" << std::flush; }

 private:
  std::ostream& out_;
  bool text_ = false, fairseq_ = false;
  std::vector<int> bytes_;  // id → byte, −1 where none
  index_t count_ = 0;
};

struct GenerationResult {
  index_t generated = 0;
  bool reached_block_size = false;  // the GPT stopped at its last learned position
  double prompt_seconds = 0, generation_seconds = 0;
};

namespace generate_detail {
inline double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}
}  // namespace generate_detail

// The character LM: the prompt, then each sampled token, fed through one decoding state; a
// segment closes (end_segment: the published padding, the memory carried on) every
// `segment_length` tokens, as forward() over segments of that length would.
template <class Emit>
GenerationResult generate_lm(const models::causal::TransformerLSModel<cpu, float>& model,
                             const std::vector<std::int64_t>& prompt, index_t segment_length, index_t max_new_tokens,
                             models::Sampler& sampler, Emit&& emit) {
  GenerationResult result;
  auto start = std::chrono::steady_clock::now();
  auto state = model.initial_decode_state();
  std::vector<float> logprobs;
  auto feed = [&](std::int64_t token) {
    logprobs = model.step(token, state);
    if (state.length == segment_length) model.end_segment(state);
  };
  for (const std::int64_t token : prompt) feed(token);
  result.prompt_seconds = generate_detail::seconds_since(start);
  start = std::chrono::steady_clock::now();
  for (index_t k = 0; k < max_new_tokens; ++k) {
    const auto token = static_cast<std::int64_t>(sampler.next(logprobs));
    emit(token);
    ++result.generated;
    if (k + 1 < max_new_tokens) feed(token);
  }
  result.generation_seconds = generate_detail::seconds_since(start);
  return result;
}

// The GPT: the prompt, then each sampled token, through one decoding state, until
// max_new_tokens or until the sequence fills block_size (the token sampled at the last learned
// position is still given; nothing can follow it).
template <class Emit>
GenerationResult generate_gpt(const models::ls_gpt::LsGpt<float>& model, const std::vector<std::int64_t>& prompt,
                              index_t max_new_tokens, models::Sampler& sampler, Emit&& emit) {
  GenerationResult result;
  auto start = std::chrono::steady_clock::now();
  auto state = model.initial_state();
  std::vector<float> logits;
  for (const std::int64_t token : prompt) logits = model.step(token, state);
  result.prompt_seconds = generate_detail::seconds_since(start);
  start = std::chrono::steady_clock::now();
  for (index_t k = 0; k < max_new_tokens; ++k) {
    const auto token = static_cast<std::int64_t>(sampler.next(logits));
    emit(token);
    ++result.generated;
    if (k + 1 == max_new_tokens) break;
    if (state.position == model.config().block_size) {
      result.reached_block_size = true;
      break;
    }
    logits = model.step(token, state);
  }
  result.generation_seconds = generate_detail::seconds_since(start);
  return result;
}

}  // namespace lsattn::cli
