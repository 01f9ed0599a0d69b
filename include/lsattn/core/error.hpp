#pragma once
// The one exception type of lsattn. Messages name the parameter, the value and the rule.
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace lsattn {

class error : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

// A NaN or infinite value where finite ones are required; `overflow` when it arose inside a
// layer from finite inputs and weights.
class non_finite : public error {
 public:
  using error::error;
};
class overflow : public non_finite {
 public:
  using non_finite::non_finite;
};

// An allocation refused because the memory is not there; the message names the shape and
// bytes. Still an lsattn::error, so one catch handles every failure.
class out_of_memory : public error {
 public:
  using error::error;
};

namespace detail {

template <class... Parts>
std::string concat(Parts&&... parts) {
  std::ostringstream out;
  (out << ... << std::forward<Parts>(parts));
  return out.str();
}

}  // namespace detail

// Throws lsattn::error built from the parts ("lsattn: " + parts) when `condition` is false.
template <class... Parts>
void require(bool condition, Parts&&... parts) {
  if (!condition) throw error(detail::concat("lsattn: ", std::forward<Parts>(parts)...));
}

}  // namespace lsattn
