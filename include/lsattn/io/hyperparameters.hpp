#pragma once
// Hyperparameters by their published config names: read from a checkpoint's `__metadata__`,
// overridden by the caller (command-line flags), parsed strictly.
#include <cctype>
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

  std::optional<index_t> integer(const std::string& key) const {
    const auto value = text(key);
    if (!value) return std::nullopt;
    std::size_t used = 0;
    long long parsed = 0;
    try {
      parsed = std::stoll(*value, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    require(used != 0 && used == value->size(), where(key), " must be an integer, got '", *value, "'");
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
