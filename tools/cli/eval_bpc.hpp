#pragma once
// What `lsattn eval-bpc` scores: the text as a token stream, and the two scoring protocols.
// Kept apart from the command line so that tests can check the token rules directly.
#include <cstdint>
#include <fstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "lsattn/core/error.hpp"
#include "lsattn/core/tensor.hpp"

namespace lsattn::cli {

// How a text is scored.
enum class ScoringProtocol {
  // The published evaluation (fairseq-eval-lm --task truncated_bptt_lm, spec §2.7): the token
  // stream is cut into blocks of tokens_per_sample fed as they are, with no start symbol; in a
  // block, token i + 1 is predicted from tokens 0 … i (and the carried memory), so the first
  // token of every block is never scored. Comparable with the paper's figures.
  published,
  // Every byte of the text scored (lsattn's earlier protocol): block k's input is the stream
  // shifted by one, its first position the previous block's last token, the very first the
  // start symbol.
  every_byte,
};

inline ScoringProtocol scoring_protocol_from(const std::string& name) {
  if (name == "published") return ScoringProtocol::published;
  if (name == "every-byte") return ScoringProtocol::every_byte;
  throw error("lsattn: --protocol: expected 'published' or 'every-byte', got '" + name + "'");
}

// "120 ('x')", or "7" for a byte that does not print.
inline std::string describe_byte(unsigned char byte) {
  std::string text = std::to_string(byte);
  if (byte >= 0x20 && byte < 0x7f) text += std::string(" ('") + static_cast<char>(byte) + "')";
  return text;
}

// Token ids of the text's bytes. Without a dictionary a byte is its own id. With a fairseq
// dict.txt (the published enwik8/text8 preprocessing writes every byte as a decimal number and
// every text line as a line) the ids are fairseq's: <s>=0, <pad>=1, </s>=2, <unk>=3, then the
// file's symbols in order from 4; the newline byte ends a line and is the end-of-line symbol
// </s>, which fairseq's binarisation appends to every line.
struct ByteVocabulary {
  static constexpr std::int64_t end_of_line_id = 2;  // fairseq's </s>
  static constexpr std::int64_t unknown_id = 3;      // fairseq's <unk>
  std::vector<std::int64_t> ids = std::vector<std::int64_t>(256);
  std::int64_t start = 10;  // the start symbol of the every-byte protocol
  bool fairseq = false;     // a dictionary was given: lines end with </s>

  bool knows(unsigned char byte) const { return ids[byte] != unknown_id || !fairseq; }

  static ByteVocabulary load(const std::string& dict_path) {
    ByteVocabulary vocabulary;
    for (int b = 0; b < 256; ++b) vocabulary.ids[b] = b;
    if (dict_path.empty()) return vocabulary;
    std::ifstream in(dict_path);
    require(static_cast<bool>(in), "--dict: cannot open '", dict_path, "'");
    std::fill(vocabulary.ids.begin(), vocabulary.ids.end(), unknown_id);
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
    vocabulary.ids['\n'] = end_of_line_id;
    vocabulary.start = end_of_line_id;
    vocabulary.fairseq = true;
    return vocabulary;
  }
};

// The token stream of the first `byte_count` bytes of a text, read in pieces so that memory
// does not grow with the text. With `fairseq_lines`, a text whose last line has no newline
// still ends with </s>, as fairseq's binarisation gives every line one.
class TokenStream {
 public:
  TokenStream(const std::string& path, index_t byte_count, bool fairseq_lines, const ByteVocabulary& vocabulary)
      : text_(path, std::ios::binary), path_(path), bytes_left_(byte_count), vocabulary_(vocabulary) {
    require(static_cast<bool>(text_), "--text: cannot open '", path, "'");
    final_end_of_line_ = fairseq_lines && byte_count > 0 && !last_byte_is_newline(byte_count);
    size_ = byte_count + (final_end_of_line_ ? 1 : 0);
  }

  // Tokens in the whole stream: the bytes, plus a final </s> where fairseq adds one.
  index_t size() const { return size_; }

  // Up to `count` next tokens; fewer only at the end of the stream.
  std::vector<std::int64_t> next(index_t count) {
    const index_t from_bytes = std::min(count, bytes_left_);
    std::vector<char> bytes(static_cast<std::size_t>(from_bytes));
    text_.read(bytes.data(), from_bytes);
    require(text_.gcount() == from_bytes, "--text: read error in '", path_, "' at byte ", bytes_read_ + text_.gcount());
    bytes_read_ += from_bytes;
    bytes_left_ -= from_bytes;
    std::vector<std::int64_t> tokens;
    tokens.reserve(static_cast<std::size_t>(count));
    for (char byte : bytes) tokens.push_back(vocabulary_.ids[static_cast<unsigned char>(byte)]);
    if (bytes_left_ == 0 && final_end_of_line_ && static_cast<index_t>(tokens.size()) < count) {
      tokens.push_back(ByteVocabulary::end_of_line_id);
      final_end_of_line_ = false;
    }
    return tokens;
  }

  index_t bytes_read() const { return bytes_read_; }

 private:
  bool last_byte_is_newline(index_t byte_count) {
    text_.seekg(byte_count - 1);
    const bool newline = text_.get() == '\n';
    text_.clear();
    text_.seekg(0);
    return newline;
  }

  std::ifstream text_;
  std::string path_;
  index_t bytes_left_ = 0, bytes_read_ = 0, size_ = 0;
  const ByteVocabulary& vocabulary_;
  bool final_end_of_line_ = false;
};

// One block of the stream as the model's input, and which (position, target) pairs are scored.
struct ScoredBlock {
  Tensor<std::int64_t, 2> input;                          // (1, n)
  std::vector<std::pair<index_t, std::int64_t>> targets;  // position in the block, token predicted there
};

// Builds block k of the stream from its tokens; `previous` is the last token of block k − 1
// (the start symbol before block 0), used by the every-byte protocol only.
inline ScoredBlock scored_block(const std::vector<std::int64_t>& tokens, std::int64_t previous, ScoringProtocol protocol) {
  const auto n = static_cast<index_t>(tokens.size());
  ScoredBlock block{Tensor<std::int64_t, 2>(Shape<2>{1, n}), {}};
  for (index_t i = 0; i < n; ++i) {
    if (protocol == ScoringProtocol::published) {
      block.input(0, i) = tokens[i];
      if (i + 1 < n) block.targets.emplace_back(i, tokens[i + 1]);
    } else {
      block.input(0, i) = i == 0 ? previous : tokens[i - 1];
      block.targets.emplace_back(i, tokens[i]);
    }
  }
  return block;
}

}  // namespace lsattn::cli
