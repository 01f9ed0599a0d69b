#pragma once
// Non-owning row-major views over caller memory, and a small owning host tensor.
#include <array>
#include <cstddef>
#include <cstdint>
#include <new>
#include <numeric>
#include <string>
#include <type_traits>
#include <vector>

#include "lsattn/core/backend.hpp"
#include "lsattn/core/error.hpp"
#include "lsattn/core/limits.hpp"

namespace lsattn {

template <std::size_t Rank>
using Shape = std::array<index_t, Rank>;

template <std::size_t Rank>
std::string to_string(const Shape<Rank>& shape) {
  std::string text = "(";
  for (std::size_t i = 0; i < Rank; ++i) text += (i ? ", " : "") + std::to_string(shape[i]);
  return text + ")";
}

template <std::size_t Rank>
constexpr index_t element_count(const Shape<Rank>& shape) {
  index_t count = 1;
  for (index_t extent : shape) count *= extent;
  return count;
}

// A contiguous row-major view: (batch, sequence, features) for Rank 3. The memory space is
// part of the type, so a host view cannot be handed to a device backend, nor the reverse.
template <class T, std::size_t Rank, class Space = host_space>
class TensorView {
 public:
  using value_type = std::remove_const_t<T>;
  using memory_space = Space;
  static constexpr std::size_t rank = Rank;

  constexpr TensorView() = default;
  constexpr TensorView(T* data, const Shape<Rank>& shape) : data_(data), shape_(shape) {}

  // A view of const elements from a view of mutable ones.
  template <class U>
    requires(std::is_same_v<const U, T> && !std::is_same_v<U, T>)
  constexpr TensorView(const TensorView<U, Rank, Space>& other) : data_(other.data()), shape_(other.shape()) {}

  constexpr T* data() const { return data_; }
  constexpr const Shape<Rank>& shape() const { return shape_; }
  constexpr index_t extent(std::size_t dim) const { return shape_[dim]; }
  constexpr index_t size() const { return element_count(shape_); }
  constexpr bool empty() const { return data_ == nullptr; }

  template <class... Indices>
    requires(sizeof...(Indices) == Rank && std::is_same_v<Space, host_space>)
  T& operator()(Indices... indices) const {
    return *address(indices...);
  }

  // The address of an element, or of where it would be: unlike &view(i, j), it is defined for
  // an empty view (a row pointer into a cache of length 0 is null + 0, never a null reference).
  template <class... Indices>
    requires(sizeof...(Indices) == Rank)
  T* address(Indices... indices) const {
    const std::array<index_t, Rank> idx{static_cast<index_t>(indices)...};
    index_t offset = 0;
    for (std::size_t d = 0; d < Rank; ++d) offset = offset * shape_[d] + idx[d];
    return offset == 0 ? data_ : data_ + offset;
  }

 private:
  T* data_ = nullptr;
  Shape<Rank> shape_{};
};

template <class T, std::size_t Rank>
using HostView = TensorView<T, Rank, host_space>;

namespace detail {

// The element count of a shape about to be allocated: extents >= 0, count <= max_elements.
template <std::size_t Rank>
index_t checked_element_count(const Shape<Rank>& shape) {
  index_t count = 1;
  for (index_t extent : shape) require(extent >= 0, "Tensor: negative extent in shape ", to_string(shape));
  for (index_t extent : shape) {
    if (extent == 0) return 0;
    require(count <= max_elements / extent, "Tensor: shape ", to_string(shape), " has more than ", max_elements,
            " elements (lsattn::max_elements)");
    count *= extent;
  }
  return count;
}

// A vector of `count` values, or an lsattn::error naming the shape and the bytes when the
// memory is not there (instead of a bare std::bad_alloc).
template <class T, std::size_t Rank>
std::vector<T> allocate_values(const Shape<Rank>& shape, T fill) {
  const index_t count = checked_element_count(shape);
  const auto refuse = [&](const char* why) {
    return out_of_memory(concat("lsattn: out of memory: a tensor of shape ", to_string(shape), " needs ",
                                static_cast<double>(count) * sizeof(T) / (1 << 20), " MiB", why));
  };
  const std::uint64_t bytes = static_cast<std::uint64_t>(count) * sizeof(T), memory = physical_memory_bytes();
  if (memory > 0 && bytes > memory) throw refuse(", more than the machine's memory");
  try {
    return std::vector<T>(static_cast<std::size_t>(count), fill);
  } catch (const std::bad_alloc&) {
    throw refuse("");
  }
}

}  // namespace detail

// Owning host tensor; views are taken from it with view().
template <class T, std::size_t Rank>
class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(const Shape<Rank>& shape, T fill = T{}) : shape_(shape), values_(detail::allocate_values(shape, fill)) {}
  Tensor(const Shape<Rank>& shape, std::vector<T> values) : shape_(shape), values_(std::move(values)) {
    require(static_cast<index_t>(values_.size()) == element_count(shape), "Tensor: ", values_.size(),
            " values do not fill shape ", to_string(shape));
  }

  HostView<T, Rank> view() { return {values_.data(), shape_}; }
  HostView<const T, Rank> view() const { return {values_.data(), shape_}; }
  T* data() { return values_.data(); }
  const T* data() const { return values_.data(); }
  const Shape<Rank>& shape() const { return shape_; }
  index_t extent(std::size_t dim) const { return shape_[dim]; }
  index_t size() const { return static_cast<index_t>(values_.size()); }
  std::vector<T>& values() { return values_; }
  const std::vector<T>& values() const { return values_; }

  template <class... Indices>
  T* address(Indices... indices) { return view().address(indices...); }
  template <class... Indices>
  const T* address(Indices... indices) const { return view().address(indices...); }
  template <class... Indices>
  T& operator()(Indices... indices) { return view()(indices...); }
  template <class... Indices>
  const T& operator()(Indices... indices) const { return view()(indices...); }

 private:
  Shape<Rank> shape_{};
  std::vector<T> values_;
};

}  // namespace lsattn
