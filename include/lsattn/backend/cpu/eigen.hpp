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

}  // namespace lsattn::cpu_detail
