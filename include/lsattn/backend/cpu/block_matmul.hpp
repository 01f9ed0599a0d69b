#pragma once
// One interface over the float and the bf16 packed products, so the attention executors have
// a single code path for float tensors: B is packed once for the call's precision, and blocks
// of it (a key block, a head's columns) are multiplied with A read in place.
#include "lsattn/backend/cpu/matmul_bf16.hpp"
#include "lsattn/backend/cpu/matmul_f32.hpp"
#include "lsattn/core/config.hpp"

#include <type_traits>

namespace lsattn::cpu_detail {

static_assert(f32_panel == bf16_panel, "one slice alignment for both precisions");
inline constexpr index_t packed_panel = f32_panel;

// Resolves the kernel path for `precision` (LSATTN_FP32_PATH / LSATTN_BF16_PATH, or a forced
// path), throwing on a bad one. Executors call it before their parallel loops, where an
// exception could not be thrown (it would terminate the process), and pack_b looks again.
inline void require_kernel_path(Precision precision) {
  if (precision == Precision::bf16) (void)active_bf16_path();
  (void)active_fp32_path();  // also under bf16: its emulated path packs for the fp32 product
}

// Whether tensors of element type T run the packed kernels (float) or Eigen's products (double).
template <class T>
inline constexpr bool uses_packed_kernels = std::is_same_v<T, float>;

// An executor's check before its parallel loops: float resolves the kernel path of `precision`
// (a bad one throws here, where it may), other element types compute in fp32 only.
template <class T>
void require_precision(Precision precision) {
  if constexpr (uses_packed_kernels<T>) require_kernel_path(precision);
  else require(precision == Precision::fp32, "precision bf16 needs float tensors");
}

// B of C = A·B, packed for `precision` and the path active when packed.
struct PackedOperand {
  Precision precision = Precision::fp32;
  PackedF32 f32;
  PackedB bf16;

  // `transposed`: `b` holds Bᵀ (n × k, rows ldb apart), else B (k × n).
  void pack(const float* b, index_t ldb, index_t k, index_t n, bool transposed, Precision p) {
    precision = p;
    if (p == Precision::bf16) pack_b(b, ldb, k, n, transposed, bf16);
    else pack_b(b, ldb, k, n, transposed, f32);
  }
};

// Rows [k_begin, k_begin + k), columns [n_begin, n_begin + n) of a packed B: k_begin even and
// n_begin a multiple of packed_panel (the bf16 pairs and the panels of both kernels).
struct OperandSlice {
  const PackedOperand* operand = nullptr;
  index_t k_begin = 0, k = 0, n_begin = 0, n = 0;
};

inline OperandSlice whole(const PackedOperand& b) {
  return {&b, 0, b.precision == Precision::bf16 ? b.bf16.k : b.f32.k, 0,
          b.precision == Precision::bf16 ? b.bf16.n : b.f32.n};
}

inline OperandSlice slice(const PackedOperand& b, index_t k_begin, index_t k, index_t n_begin, index_t n) {
  return {&b, k_begin, k, n_begin, n};
}

// C (m × n, rows ldc apart) = A · B (+ C when `accumulate`); A is m × k, rows lda apart.
inline void block_matmul(const float* a, index_t lda, index_t m, const OperandSlice& b, float* c, index_t ldc,
                         bool accumulate) {
  if (b.operand->precision == Precision::bf16)
    matmul_bf16(a, lda, m, slice(b.operand->bf16, b.k_begin, b.k, b.n_begin, b.n), c, ldc, accumulate);
  else
    matmul_f32(a, lda, m, slice(b.operand->f32, b.k_begin, b.k, b.n_begin, b.n), c, ldc, accumulate);
}

inline void block_matmul(const float* a, index_t lda, index_t m, const PackedOperand& b, float* c, index_t ldc,
                         bool accumulate) {
  block_matmul(a, lda, m, whole(b), c, ldc, accumulate);
}

}  // namespace lsattn::cpu_detail
