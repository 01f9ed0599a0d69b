#pragma once
// Limits on the sizes a user gives, and the one place where arithmetic on them is checked.
// Every config, loader and boundary check goes through these helpers, so no size can wrap
// around into a small, "valid" number, and every error names the sizes involved.
#include <cstdint>
#include <initializer_list>
#include <limits>
#include <string>
#include <string_view>

#include "lsattn/core/error.hpp"

#if __has_include(<unistd.h>)
#include <unistd.h>
#endif

namespace lsattn {

using index_t = std::int64_t;

// The largest value of any single size: a length, batch, width, head count, window, rank,
// chunk, memory length, vocabulary, layer count or grid side. It keeps every index sum and
// every product of two sizes far from overflow, and fits the CUDA backend's 32-bit counts.
inline constexpr index_t max_size = std::numeric_limits<std::int32_t>::max();

// The largest element count of any tensor or product of sizes (2^53: far beyond any memory,
// still exact as a double).
inline constexpr index_t max_elements = index_t{1} << 53;

// The machine's physical memory in bytes, or 0 where it cannot be asked. A single allocation
// larger than this is refused before the allocator sees it: with overcommit the system may
// grant it and kill the process later, and sanitizers abort instead of throwing bad_alloc.
inline std::uint64_t physical_memory_bytes() {
#if defined(_SC_PHYS_PAGES) && defined(_SC_PAGESIZE)
  const long pages = sysconf(_SC_PHYS_PAGES), page_size = sysconf(_SC_PAGESIZE);
  if (pages > 0 && page_size > 0) return static_cast<std::uint64_t>(pages) * static_cast<std::uint64_t>(page_size);
#endif
  return 0;
}

// A size named `name` (e.g. "window_len"), checked to lie in [minimum, max_size].
inline index_t checked_size(std::string_view name, index_t value, index_t minimum = 0) {
  require(value >= minimum, name, ": must be >= ", minimum, ", got ", value);
  require(value <= max_size, name, ": ", value, " exceeds the largest supported size ", max_size,
          " (lsattn::max_size)");
  return value;
}

// A named operand of checked arithmetic: {"num_head", 8}.
struct NamedSize {
  std::string_view name;
  index_t value;
};

namespace detail {

inline std::string describe_terms(std::initializer_list<NamedSize> terms, std::string_view sign) {
  std::string names, values;
  for (const NamedSize& term : terms) {
    names += (names.empty() ? "" : std::string(sign)) + std::string(term.name);
    values += (values.empty() ? "" : std::string(sign)) + std::to_string(term.value);
  }
  return names + " = " + values;
}

}  // namespace detail

// The product of non-negative sizes, checked not to exceed max_elements; the error names
// every factor ("num_head * head_dim = 65536 * 2147483647 exceeds ...").
inline index_t checked_product(std::initializer_list<NamedSize> factors) {
  index_t product = 1;
  for (const NamedSize& factor : factors) {
    require(factor.value >= 0, factor.name, ": must be >= 0, got ", factor.value);
  }
  for (const NamedSize& factor : factors) {
    if (factor.value == 0) return 0;
  }
  for (const NamedSize& factor : factors) {
    require(product <= max_elements / factor.value, detail::describe_terms(factors, " * "),
            " exceeds the largest supported element count ", max_elements, " (lsattn::max_elements)");
    product *= factor.value;
  }
  return product;
}

// The sum of non-negative sizes, checked not to exceed max_elements.
inline index_t checked_sum(std::initializer_list<NamedSize> terms) {
  index_t sum = 0;
  for (const NamedSize& term : terms) {
    require(term.value >= 0, term.name, ": must be >= 0, got ", term.value);
    require(sum <= max_elements - term.value, detail::describe_terms(terms, " + "),
            " exceeds the largest supported element count ", max_elements, " (lsattn::max_elements)");
    sum += term.value;
  }
  return sum;
}

}  // namespace lsattn
