#pragma once
// Eigen maps over row-major host memory, the CPU backend's only view of Eigen.
#include <Eigen/Core>

#include "lsattn/core/tensor.hpp"

namespace lsattn::cpu_detail {

template <class T>
using RowMatrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class T>
using MatrixMap = Eigen::Map<RowMatrix<T>, Eigen::Unaligned, Eigen::OuterStride<>>;
template <class T>
using ConstMatrixMap = Eigen::Map<const RowMatrix<T>, Eigen::Unaligned, Eigen::OuterStride<>>;

// rows × cols block starting at `data`, consecutive rows `stride` elements apart.
template <class T>
MatrixMap<T> matrix(T* data, index_t rows, index_t cols, index_t stride) {
  return {data, rows, cols, Eigen::OuterStride<>(stride)};
}
template <class T>
ConstMatrixMap<T> matrix(const T* data, index_t rows, index_t cols, index_t stride) {
  return {data, rows, cols, Eigen::OuterStride<>(stride)};
}

// out = lhs · rhs, or out += lhs · rhs when `accumulate`; an empty inner dimension gives zeros
// (or leaves `out` as it is) without handing Eigen an empty product.
template <class Out, class Lhs, class Rhs>
void multiply_into(Out&& out, const Lhs& lhs, const Rhs& rhs, bool accumulate) {
  if (lhs.cols() == 0) {
    if (!accumulate) out.setZero();
    return;
  }
  if (accumulate) out.noalias() += lhs * rhs;
  else out.noalias() = lhs * rhs;
}

}  // namespace lsattn::cpu_detail
