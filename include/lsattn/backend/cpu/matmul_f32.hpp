#pragma once
// The CPU's float matrix product for the attention blocks: C (m × n) = A (m × k) · B (k × n),
// with B packed once (per head of a sequence, or per weight) and reused by every block.
// Eigen repacks both operands of every small product (a fifth of full attention's time went to
// packing the queries and the probabilities again for each key block); this kernel reads A in
// place, broadcasting one element at a time, and streams B from its packed panels.
// Paths, chosen at run time like the bf16 ones:
//  - avx512: 8 × 32 register-blocked FMA micro-kernel, compiled with a target attribute and
//    used where CPUID reports AVX-512F;
//  - eigen: Eigen's product on the unpacked copy; any CPU.
// LSATTN_FP32_PATH (eigen | avx512) or set_fp32_path() forces a path.
#include <algorithm>
#include <array>
#include <vector>

#include "lsattn/backend/cpu/eigen.hpp"
#include "lsattn/backend/cpu/kernel_path.hpp"
#include "lsattn/core/error.hpp"
#include "lsattn/core/tensor.hpp"

#if LSATTN_HAS_AVX512_KERNELS
#define LSATTN_HAS_AVX512_F32_KERNEL 1
#define LSATTN_AVX512_F32_TARGET __attribute__((target("avx512f")))
#else
#define LSATTN_HAS_AVX512_F32_KERNEL 0
#endif

namespace lsattn {

enum class Fp32Path { eigen, avx512 };

namespace cpu_detail {
template <>
struct PathTraits<Fp32Path> {
  static constexpr std::array<const char*, 2> names{"eigen", "avx512"};
  static constexpr const char* variable = "LSATTN_FP32_PATH";
  static constexpr const char* setter = "set_fp32_path";
  static bool available(Fp32Path path) { return path == Fp32Path::eigen || cpu_supports_avx512(/*with_bf16=*/false); }
};
}  // namespace cpu_detail

inline const char* fp32_path_name(Fp32Path path) { return cpu_detail::path_name(path); }
inline bool fp32_path_available(Fp32Path path) { return cpu_detail::PathTraits<Fp32Path>::available(path); }
inline void set_fp32_path(Fp32Path path) { cpu_detail::force_path(path); }
inline void reset_fp32_path() { cpu_detail::forced_path<Fp32Path>() = -1; }
inline Fp32Path active_fp32_path() { return cpu_detail::active_path<Fp32Path>(); }

namespace cpu_detail {

inline constexpr index_t f32_panel = 32;  // columns of B per packed panel
inline constexpr index_t f32_rows = 8;    // rows of A per micro-kernel call

// B packed for one path. avx512: panels of 32 columns, element (row p, column j) of panel q at
// values[(q·k + p)·32 + j], zero beyond n. eigen: B itself, k × n row-major.
struct PackedF32 {
  Fp32Path path = Fp32Path::eigen;
  index_t k = 0, n = 0, panels = 0;
  std::vector<float> values;
  RowMatrix<float> plain;
};

// Rows [k_begin, k_begin + k) and columns [n_begin, n_begin + n) of a packed B; on the avx512
// path n_begin is a multiple of f32_panel.
struct F32Slice {
  const PackedF32* b = nullptr;
  index_t k_begin = 0, k = 0, n_begin = 0, n = 0;
};

inline F32Slice whole(const PackedF32& b) { return {&b, 0, b.k, 0, b.n}; }

inline F32Slice slice(const PackedF32& b, index_t k_begin, index_t k, index_t n_begin, index_t n) {
  if (b.path == Fp32Path::avx512) {
    require(n_begin % f32_panel == 0, "lsattn internal: unaligned fp32 slice (", n_begin, ")");
  }
  return {&b, k_begin, k, n_begin, n};
}

// Packs B for the active path; `transposed`: `b` holds Bᵀ (n × k, rows ldb apart), else B (k × n).
inline void pack_b(const float* b, index_t ldb, index_t k, index_t n, bool transposed, PackedF32& packed) {
  packed.path = active_fp32_path();
  packed.k = k;
  packed.n = n;
  packed.panels = (n + f32_panel - 1) / f32_panel;
  if (packed.path == Fp32Path::eigen) {
    if (transposed) packed.plain = matrix(b, n, k, ldb).transpose();
    else packed.plain = matrix(b, k, n, ldb);
    return;
  }
  packed.values.assign(static_cast<std::size_t>(packed.panels * k * f32_panel), 0.0f);
  for (index_t q = 0; q < packed.panels; ++q) {
    const index_t n0 = q * f32_panel, cols = std::min(f32_panel, n - n0);
    float* panel = packed.values.data() + q * k * f32_panel;
    if (transposed) {
      for (index_t j = 0; j < cols; ++j) {
        const float* column = b + (n0 + j) * ldb;
        for (index_t p = 0; p < k; ++p) panel[p * f32_panel + j] = column[p];
      }
    } else {
      for (index_t p = 0; p < k; ++p) std::copy_n(b + p * ldb + n0, cols, panel + p * f32_panel);
    }
  }
}

#if LSATTN_HAS_AVX512_F32_KERNEL
// C[rows × cols] (+)= A (rows lda apart, read in place) · one panel of B (k rows of 32).
template <int Rows>
LSATTN_AVX512_F32_TARGET inline void micro_kernel_f32(index_t k, const float* a, index_t lda, const float* panel,
                                                     float* c, index_t ldc, index_t cols, bool accumulate) {
  __m512 sum[Rows][2];
  LSATTN_UNROLL
  for (int i = 0; i < Rows; ++i) sum[i][0] = sum[i][1] = _mm512_setzero_ps();
  for (index_t p = 0; p < k; ++p) {
    const __m512 b0 = _mm512_loadu_ps(panel + p * f32_panel);
    const __m512 b1 = _mm512_loadu_ps(panel + p * f32_panel + 16);
    LSATTN_UNROLL
    for (int i = 0; i < Rows; ++i) {
      const __m512 element = _mm512_set1_ps(a[i * lda + p]);
      sum[i][0] = _mm512_fmadd_ps(element, b0, sum[i][0]);
      sum[i][1] = _mm512_fmadd_ps(element, b1, sum[i][1]);
    }
  }
  store_tile<Rows>(sum, c, ldc, cols, accumulate);
}

template <int Rows = f32_rows>
LSATTN_AVX512_F32_TARGET inline void micro_kernel_f32_rows(index_t rows, index_t k, const float* a, index_t lda,
                                                          const float* panel, float* c, index_t ldc, index_t cols,
                                                          bool accumulate) {
  if constexpr (Rows > 0) {
    if (rows == Rows) return micro_kernel_f32<Rows>(k, a, lda, panel, c, ldc, cols, accumulate);
    return micro_kernel_f32_rows<Rows - 1>(rows, k, a, lda, panel, c, ldc, cols, accumulate);
  }
}
#endif

// C (m × n, rows ldc apart) = A · B, or += when `accumulate`; A is m × k, rows lda apart.
inline void matmul_f32(const float* a, index_t lda, index_t m, const F32Slice& b, float* c, index_t ldc,
                       bool accumulate) {
  if (m == 0 || b.n == 0) return;
  if (b.b->path == Fp32Path::eigen) {
    multiply_into(matrix(c, m, b.n, ldc), matrix(a, m, b.k, lda), b.b->plain.block(b.k_begin, b.n_begin, b.k, b.n),
                  accumulate);
    return;
  }
#if LSATTN_HAS_AVX512_F32_KERNEL
  const PackedF32& packed = *b.b;
  const index_t first_panel = b.n_begin / f32_panel;
  for (index_t n0 = 0; n0 < b.n; n0 += f32_panel) {
    const index_t cols = std::min(f32_panel, b.n - n0);
    const float* panel = packed.values.data() + ((first_panel + n0 / f32_panel) * packed.k + b.k_begin) * f32_panel;
    for (index_t i = 0; i < m; i += f32_rows)
      micro_kernel_f32_rows(std::min(f32_rows, m - i), b.k, a + i * lda, lda, panel, c + i * ldc + n0, ldc, cols,
                            accumulate);
  }
#else
  throw error("lsattn internal: B packed for the avx512 fp32 path in a build without that kernel");
#endif
}

inline void matmul_f32(const float* a, index_t lda, index_t m, const PackedF32& b, float* c, index_t ldc,
                       bool accumulate) {
  matmul_f32(a, lda, m, whole(b), c, ldc, accumulate);
}

}  // namespace cpu_detail
}  // namespace lsattn
