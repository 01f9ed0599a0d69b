#pragma once
// Boundary checks shared by the public entry points: shapes, finiteness, 0/1 masks, aliasing.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

// The scans of large tensors use the CPU backend's deterministic loop (host memory only).
#include "lsattn/backend/cpu/parallel.hpp"
#include "lsattn/core/error.hpp"
#include "lsattn/core/tensor.hpp"

namespace lsattn::detail {

template <class T, std::size_t Rank, class Space>
void require_shape(const TensorView<T, Rank, Space>& view, std::string_view name, const Shape<Rank>& expected) {
  require(view.shape() == expected, name, ": expected shape ", to_string(expected), ", got ", to_string(view.shape()));
  require(view.size() == 0 || view.data() != nullptr, name, ": null data pointer for shape ", to_string(view.shape()));
}

// NaN or infinite inputs would silently poison every output that sees them.
// Whether every value is finite: an exponent of all ones marks inf and NaN. Integer tests on
// the bit patterns, OR-reduced, so the loop vectorises (a float test would not, for NaN's sake).
template <class T>
bool all_finite(const T* values, index_t count) {
  if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double>) {
    using Bits = std::conditional_t<std::is_same_v<T, float>, std::uint32_t, std::uint64_t>;
    constexpr Bits exponent = std::is_same_v<T, float> ? Bits(0x7f800000u) : Bits(0x7ff0000000000000ull);
    Bits all_ones = 0;
    auto test = [&](index_t i) {
      Bits bits;
      std::memcpy(&bits, values + i, sizeof bits);
      all_ones |= static_cast<Bits>((bits & exponent) == exponent);
    };
    // Fixed blocks of 64: GCC's -O2 vectorises only loops that need no remainder, so an
    // open-ended loop stayed scalar there (a sixth of a small layer's time at -O2).
    constexpr index_t block = 64;
    index_t i = 0;
    for (; i + block <= count; i += block)
      for (index_t j = 0; j < block; ++j) test(i + j);
    for (; i < count; ++i) test(i);
    return all_ones == 0;
  } else {
    for (index_t i = 0; i < count; ++i)
      if (!std::isfinite(static_cast<double>(values[i]))) return false;
    return true;
  }
}

// all_finite over fixed chunks on up to `threads` threads (0: OpenMP's default): a layer's
// inputs and output are scanned once a call each, megabytes at long lengths, and a serial scan
// was the largest serial part of a small-width layer (LRA text: 6% of one thread's time).
inline constexpr index_t finite_scan_chunk = index_t(1) << 16;
template <class T>
bool all_finite(const T* values, index_t count, int threads) {
  if (threads == 1 || count < 2 * finite_scan_chunk) return all_finite(values, count);
  const index_t chunks = (count + finite_scan_chunk - 1) / finite_scan_chunk;
  std::vector<char> finite(static_cast<std::size_t>(chunks));
  cpu_detail::parallel_for(chunks, threads, [&](index_t chunk) {
    const index_t first = chunk * finite_scan_chunk;
    finite[chunk] = all_finite(values + first, std::min(finite_scan_chunk, count - first));
  });
  return std::all_of(finite.begin(), finite.end(), [](char ok) { return ok != 0; });
}

// NaN or infinite inputs would silently poison every output that sees them. `threads` as for
// the layer that checks (the scan of a large tensor runs on them).
template <class T, std::size_t Rank>
void require_finite(const HostView<const T, Rank>& view, std::string_view name, int threads = 1) {
  if (all_finite(view.data(), view.size(), threads)) return;
  for (index_t i = 0; i < view.size(); ++i) {
    if (!std::isfinite(static_cast<double>(view.data()[i]))) {
      Shape<Rank> where{};
      index_t rest = i;
      for (std::size_t d = Rank; d-- > 0;) {
        where[d] = rest % view.extent(d);
        rest /= view.extent(d);
      }
      throw non_finite(concat("lsattn: ", name, ": non-finite value ", view.data()[i], " at index ", to_string(where)));
    }
  }
}

// Runs `step`, a computation inside `layer` whose inputs and weights were already checked to
// be finite: a non-finite value met there can only come from float overflow, so the error
// says that, in the caller's terms, instead of naming an internal tensor such as "query".
template <class Step>
decltype(auto) overflow_checked(std::string_view layer, Step&& step) {
  try {
    return std::forward<Step>(step)();
  } catch (const overflow&) {
    throw;  // already explained by an inner layer
  } catch (const non_finite& e) {
    std::string_view what = e.what();
    if (what.starts_with("lsattn: ")) what.remove_prefix(8);
    throw overflow(concat("lsattn: ", layer, ": float overflow inside the layer (", what,
                          "); its inputs and weights are finite but too large in magnitude"));
  }
}

// The output of `layer`, computed from finite inputs and weights, checked the same way.
template <class T, std::size_t Rank>
void require_finite_output(const HostView<const T, Rank>& output, std::string_view layer, int threads = 1) {
  overflow_checked(layer, [&] { require_finite(output, "output", threads); });
}

template <class T>
void require_binary_mask(const HostView<const T, 2>& mask, std::string_view name) {
  for (index_t i = 0; i < mask.size(); ++i) {
    const T value = mask.data()[i];
    if (value != T(0) && value != T(1)) {
      throw error(concat("lsattn: ", name, ": values must be 1 (valid) or 0 (padding), got ", value, " at index (",
                         i / mask.extent(1), ", ", i % mask.extent(1), ")"));
    }
  }
}

// Writing into a buffer that is also read would give order-dependent results.
template <class T, class U, std::size_t R1, std::size_t R2, class Space>
void require_disjoint(const TensorView<T, R1, Space>& out, std::string_view out_name, const TensorView<U, R2, Space>& in,
                      std::string_view in_name) {
  if (out.size() == 0 || in.size() == 0) return;
  const auto* out_begin = reinterpret_cast<const char*>(out.data());
  const auto* out_end = reinterpret_cast<const char*>(out.data() + out.size());
  const auto* in_begin = reinterpret_cast<const char*>(in.data());
  const auto* in_end = reinterpret_cast<const char*>(in.data() + in.size());
  require(out_end <= in_begin || in_end <= out_begin, out_name, " overlaps the input ", in_name,
          ": the output must be a separate buffer");
}

}  // namespace lsattn::detail
