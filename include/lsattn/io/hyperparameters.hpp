#pragma once
// Hyperparameters by their published config names: read from a checkpoint's `__metadata__`,
// overridden by the caller (command-line flags), parsed strictly.
#include <cctype>
#include <charconv>
#include <map>
#include <optional>
#include <string>

#include "lsattn/core/error.hpp"
#include "lsattn/core/tensor.hpp"

namespace lsattn::io {

class Hyperparameters {
 public:
  Hyperparameters() = default;
  Hyperparameters(std::map<std::string, std::string> metadata, std::string source)
      : values_(std::move(metadata)), source_(std::move(source)) {}

  // A caller-given value replaces the stored one.
  void set(const std::string& key, std::string value) {
    values_[key] = std::move(value);
    overridden_[key] = true;
  }

  std::optional<std::string> text(const std::string& key) const {
    const auto found = values_.find(key);
    if (found == values_.end()) return std::nullopt;
    return found->second;
  }

  // Decimal digits with an optional leading '-', nothing else: " 2", "+2", "2.0" and "0x2"
  // are errors, not 2, so a typo in a checkpoint's metadata never passes as a number.
  std::optional<index_t> integer(const std::string& key) const {
    const auto value = text(key);
    if (!value) return std::nullopt;
    long long parsed = 0;
    const char* end = value->data() + value->size();
    const auto [stop, status] = std::from_chars(value->data(), end, parsed);
    require(!value->empty() && status != std::errc::invalid_argument && stop == end, where(key),
            " must be a decimal integer, got '", *value, "'");
    require(status != std::errc::result_out_of_range, where(key), ": '", *value,
            "' does not fit in a 64-bit integer");
    return parsed;
  }

  // true/false, 1/0, yes/no, in any case (Python writes True/False).
  std::optional<bool> boolean(const std::string& key) const {
    const auto value = text(key);
    if (!value) return std::nullopt;
    std::string lower;
    for (char c : *value) lower += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (lower == "true" || lower == "1" || lower == "yes") return true;
    if (lower == "false" || lower == "0" || lower == "no") return false;
    throw error(detail::concat("lsattn: ", where(key), " must be true or false, got '", *value, "'"));
  }

  index_t required_integer(const std::string& key, const std::string& flag) const {
    const auto value = integer(key);
    require(value.has_value(), "missing hyperparameter ", key, ": store it in the weights' __metadata__ (", source_,
            ") or pass ", flag);
    return *value;
  }
  bool required_boolean(const std::string& key, const std::string& flag) const {
    const auto value = boolean(key);
    require(value.has_value(), "missing hyperparameter ", key, ": store it in the weights' __metadata__ (", source_,
            ") or pass ", flag);
    return *value;
  }

 private:
  std::string where(const std::string& key) const {
    return overridden_.count(key) ? "hyperparameter " + key + " (command line)"
                                  : source_ + ": __metadata__ " + key;
  }

  std::map<std::string, std::string> values_;
  std::map<std::string, bool> overridden_;
  std::string source_;
};

}  // namespace lsattn::io
