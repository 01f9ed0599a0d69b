#pragma once
// The CPU's float matrix product for the attention blocks: C (m × n) = A (m × k) · B (k × n),
// with B packed once (per head of a sequence, or per weight) and reused by every block.
// Eigen repacks both operands of every small product (a fifth of full attention's time went to
// packing the queries and the probabilities again for each key block); this kernel reads A in
// place, broadcasting one element at a time, and streams B from its packed panels.
// Paths, chosen at run time like the bf16 ones:
//  - avx512: 8 × 32 register-blocked FMA micro-kernel, compiled with a target attribute and
//    used where CPUID reports AVX-512F;
//  - avx2: 6 × 16 register-blocked FMA micro-kernel on the same packed panels (each panel in two
//    halves: 12 accumulators, two B vectors and a broadcast fill the 16 YMM registers), for
//    x86-64 with AVX2 and FMA but no AVX-512 (Zen 2/3, Intel client CPUs);
//  - eigen: Eigen's product on the unpacked copy; any CPU.
// LSATTN_FP32_PATH (eigen | avx2 | avx512; read at the first product, again after
// reset_fp32_path()) or set_fp32_path() forces a path.
#include <algorithm>
#include <array>
#include <vector>

#include "lsattn/backend/cpu/eigen.hpp"
#include "lsattn/backend/cpu/kernel_path.hpp"
#include "lsattn/core/error.hpp"
#include "lsattn/core/tensor.hpp"

#if LSATTN_HAS_X86_KERNELS
#define LSATTN_HAS_PANEL_F32_KERNELS 1
#define LSATTN_AVX512_F32_TARGET __attribute__((target("avx512f")))
#define LSATTN_AVX2_F32_TARGET __attribute__((target("avx2,fma")))
#else
#define LSATTN_HAS_PANEL_F32_KERNELS 0
#endif

namespace lsattn {

enum class Fp32Path { eigen, avx2, avx512 };

namespace cpu_detail {
template <>
struct PathTraits<Fp32Path> {
  static constexpr std::array<const char*, 3> names{"eigen", "avx2", "avx512"};
  static constexpr const char* variable = "LSATTN_FP32_PATH";
  static constexpr const char* setter = "set_fp32_path";
  static bool available(Fp32Path path) {
    switch (path) {
      case Fp32Path::eigen: return true;
      case Fp32Path::avx2: return cpu_supports_avx2_fma();
      case Fp32Path::avx512: return cpu_supports_avx512(/*with_bf16=*/false);
    }
    return false;
  }
};
}  // namespace cpu_detail

inline const char* fp32_path_name(Fp32Path path) { return cpu_detail::path_name(path); }
inline bool fp32_path_available(Fp32Path path) { return cpu_detail::PathTraits<Fp32Path>::available(path); }
inline void set_fp32_path(Fp32Path path) { cpu_detail::force_path(path); }
inline void reset_fp32_path() { cpu_detail::reset_path_choice<Fp32Path>(); }
inline Fp32Path active_fp32_path() { return cpu_detail::active_path<Fp32Path>(); }

namespace cpu_detail {

inline constexpr index_t f32_panel = 32;  // columns of B per packed panel
inline constexpr index_t f32_rows = 8;    // rows of A per micro-kernel call (avx512)
inline constexpr index_t f32_half_panel = f32_panel / 2;  // columns per avx2 micro-kernel call
inline constexpr index_t f32_avx2_rows = 6;                // rows of A per avx2 micro-kernel call

// B packed for one path. avx512 and avx2: panels of 32 columns, element (row p, column j) of panel q at
// values[(q·k + p)·32 + j], zero beyond n. eigen: B itself, k × n row-major.
struct PackedF32 {
  Fp32Path path = Fp32Path::eigen;
  index_t k = 0, n = 0, panels = 0;
  std::vector<float> values;
  RowMatrix<float> plain;
};

// Rows [k_begin, k_begin + k) and columns [n_begin, n_begin + n) of a packed B; on the panel
// paths (avx2, avx512) n_begin is a multiple of f32_panel.
struct F32Slice {
  const PackedF32* b = nullptr;
  index_t k_begin = 0, k = 0, n_begin = 0, n = 0;
};

inline F32Slice whole(const PackedF32& b) { return {&b, 0, b.k, 0, b.n}; }

inline F32Slice slice(const PackedF32& b, index_t k_begin, index_t k, index_t n_begin, index_t n) {
  if (b.path != Fp32Path::eigen) {
    require(n_begin % f32_panel == 0, "lsattn internal: unaligned fp32 slice (", n_begin, ")");
  }
  return {&b, k_begin, k, n_begin, n};
}

// Packs B for the active path; `transposed`: `b` holds Bᵀ (n × k, rows ldb apart), else B (k × n).
// `convert` maps each element as it is packed (the bf16 `emulated` path packs B rounded to bf16
// this way, in one pass).
struct Unchanged {
  float operator()(float x) const { return x; }
};

template <class Convert = Unchanged>
void pack_b(const float* b, index_t ldb, index_t k, index_t n, bool transposed, PackedF32& packed,
            const Convert& convert = {}) {
  packed.path = active_fp32_path();
  packed.k = k;
  packed.n = n;
  packed.panels = (n + f32_panel - 1) / f32_panel;
  if (packed.path == Fp32Path::eigen) {
    if (transposed) packed.plain = matrix(b, n, k, ldb).transpose().unaryExpr(convert);
    else packed.plain = matrix(b, k, n, ldb).unaryExpr(convert);
    return;
  }
  packed.values.assign(static_cast<std::size_t>(packed.panels * k * f32_panel), 0.0f);
  for (index_t q = 0; q < packed.panels; ++q) {
    const index_t n0 = q * f32_panel, cols = std::min(f32_panel, n - n0);
    float* panel = packed.values.data() + q * k * f32_panel;
    if (transposed) {
      for (index_t j = 0; j < cols; ++j) {
        const float* column = b + (n0 + j) * ldb;
        for (index_t p = 0; p < k; ++p) panel[p * f32_panel + j] = convert(column[p]);
      }
    } else {
      for (index_t p = 0; p < k; ++p) {
        const float* row = b + p * ldb + n0;
        std::transform(row, row + cols, panel + p * f32_panel, convert);
      }
    }
  }
}

#if LSATTN_HAS_PANEL_F32_KERNELS
// How a tile kernel reads its operands. packed: C (+)= A·B, A read along its rows (rows lda
// apart), B a packed panel (rows f32_panel apart, zero past n). transposed: C (+)= Aᵀ·B with
// both read in place, A k × m (element (p, i) at a[p·lda + i]) and B rows ldb apart;
// transposed_masked: the same with B's loads masked past `cols` (B may end at its last column).
enum class TileOperands { packed, transposed, transposed_masked };

// C[Rows × cols] (+)= A · one panel of B (k rows of 32), or Aᵀ · B (see TileOperands), cols ≤ 32.
template <int Rows, TileOperands Operands = TileOperands::packed>
LSATTN_AVX512_F32_TARGET inline void micro_kernel_f32(index_t k, const float* a, index_t lda, const float* b,
                                                     index_t ldb, float* c, index_t ldc, index_t cols,
                                                     bool accumulate) {
  constexpr bool packed = Operands == TileOperands::packed;
  const index_t b_step = packed ? f32_panel : ldb;
  const __mmask16 mask0 = lane_mask16(cols), mask1 = lane_mask16(cols - 16);
  __m512 sum[Rows][2];
  LSATTN_UNROLL
  for (int i = 0; i < Rows; ++i) sum[i][0] = sum[i][1] = _mm512_setzero_ps();
  for (index_t p = 0; p < k; ++p) {
    const float* b_row = b + p * b_step;
    __m512 b0, b1;
    if constexpr (Operands == TileOperands::transposed_masked) {
      b0 = _mm512_maskz_loadu_ps(mask0, b_row);
      b1 = _mm512_maskz_loadu_ps(mask1, b_row + 16);
    } else {
      b0 = _mm512_loadu_ps(b_row);
      b1 = _mm512_loadu_ps(b_row + 16);
    }
    LSATTN_UNROLL
    for (int i = 0; i < Rows; ++i) {
      const __m512 element = _mm512_set1_ps(packed ? a[i * lda + p] : a[p * lda + i]);
      sum[i][0] = _mm512_fmadd_ps(element, b0, sum[i][0]);
      sum[i][1] = _mm512_fmadd_ps(element, b1, sum[i][1]);
    }
  }
  store_tile<Rows>(sum, c, ldc, cols, accumulate);
}

template <TileOperands Operands, int Rows = f32_rows>
LSATTN_AVX512_F32_TARGET inline void micro_kernel_f32_rows(index_t rows, index_t k, const float* a, index_t lda,
                                                          const float* b, index_t ldb, float* c, index_t ldc,
                                                          index_t cols, bool accumulate) {
  if constexpr (Rows > 0) {
    if (rows == Rows) return micro_kernel_f32<Rows, Operands>(k, a, lda, b, ldb, c, ldc, cols, accumulate);
    return micro_kernel_f32_rows<Operands, Rows - 1>(rows, k, a, lda, b, ldb, c, ldc, cols, accumulate);
  }
}

// Lanes [0, count) set (all of them for count ≥ 8, none for count ≤ 0): the mask of masked
// loads and stores that stop at the end of a row.
LSATTN_AVX2_F32_TARGET inline __m256i lane_mask_avx2(index_t count) {
  const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(std::min<index_t>(count, 8))), lanes);
}

// Writes (or adds to C, when `accumulate`) a tile of Rows × cols (cols ≤ 16) held in two YMM
// accumulators a row; masked stores past the last column. Always inlined: a call takes the
// accumulators by reference, through memory (GCC 12 left the 1- and 2-row ones out of line).
template <int Rows>
LSATTN_AVX2_F32_TARGET __attribute__((always_inline)) inline void store_tile_avx2(__m256 (&sum)[Rows][2], float* c,
                                                                                 index_t ldc, index_t cols,
                                                                                 bool accumulate) {
  if (cols == f32_half_panel) {
    LSATTN_UNROLL
    for (int i = 0; i < Rows; ++i) {
      float* row = c + i * ldc;
      if (accumulate) {
        sum[i][0] = _mm256_add_ps(sum[i][0], _mm256_loadu_ps(row));
        sum[i][1] = _mm256_add_ps(sum[i][1], _mm256_loadu_ps(row + 8));
      }
      _mm256_storeu_ps(row, sum[i][0]);
      _mm256_storeu_ps(row + 8, sum[i][1]);
    }
    return;
  }
  const __m256i mask0 = lane_mask_avx2(cols), mask1 = lane_mask_avx2(cols - 8);
  LSATTN_UNROLL
  for (int i = 0; i < Rows; ++i) {
    float* row = c + i * ldc;
    if (accumulate) {
      sum[i][0] = _mm256_add_ps(sum[i][0], _mm256_maskload_ps(row, mask0));
      sum[i][1] = _mm256_add_ps(sum[i][1], _mm256_maskload_ps(row + 8, mask1));
    }
    _mm256_maskstore_ps(row, mask0, sum[i][0]);
    _mm256_maskstore_ps(row + 8, mask1, sum[i][1]);
  }
}

// C[Rows × cols] (+)= A · one half panel of B (k rows of 16, f32_panel apart), or Aᵀ · B (see
// TileOperands), cols ≤ 16; masked stores past the last column.
template <int Rows, TileOperands Operands = TileOperands::packed>
LSATTN_AVX2_F32_TARGET inline void micro_kernel_avx2(index_t k, const float* a, index_t lda, const float* b,
                                                    index_t ldb, float* c, index_t ldc, index_t cols, bool accumulate) {
  constexpr bool packed = Operands == TileOperands::packed;
  const index_t b_step = packed ? f32_panel : ldb;
  const __m256i mask0 = lane_mask_avx2(cols), mask1 = lane_mask_avx2(cols - 8);
  __m256 sum[Rows][2];
  LSATTN_UNROLL
  for (int i = 0; i < Rows; ++i) sum[i][0] = sum[i][1] = _mm256_setzero_ps();
  for (index_t p = 0; p < k; ++p) {
    const float* b_row = b + p * b_step;
    __m256 b0, b1;
    if constexpr (Operands == TileOperands::transposed_masked) {
      b0 = _mm256_maskload_ps(b_row, mask0);
      b1 = _mm256_maskload_ps(b_row + 8, mask1);
    } else {
      b0 = _mm256_loadu_ps(b_row);
      b1 = _mm256_loadu_ps(b_row + 8);
    }
    // Keeps B in registers: for fewer than 6 rows GCC 12 folded these loads into every FMA,
    // and the kernel became load-bound (two loads a cycle on Zen 2).
    asm("" : "+x"(b0), "+x"(b1));
    LSATTN_UNROLL
    for (int i = 0; i < Rows; ++i) {
      const __m256 element = _mm256_broadcast_ss(packed ? a + i * lda + p : a + p * lda + i);
      sum[i][0] = _mm256_fmadd_ps(element, b0, sum[i][0]);
      sum[i][1] = _mm256_fmadd_ps(element, b1, sum[i][1]);
    }
  }
  store_tile_avx2<Rows>(sum, c, ldc, cols, accumulate);
}

template <TileOperands Operands, int Rows = f32_avx2_rows>
LSATTN_AVX2_F32_TARGET inline void micro_kernel_avx2_rows(index_t rows, index_t k, const float* a, index_t lda,
                                                         const float* b, index_t ldb, float* c, index_t ldc,
                                                         index_t cols, bool accumulate) {
  if constexpr (Rows > 0) {
    if (rows == Rows) return micro_kernel_avx2<Rows, Operands>(k, a, lda, b, ldb, c, ldc, cols, accumulate);
    return micro_kernel_avx2_rows<Operands, Rows - 1>(rows, k, a, lda, b, ldb, c, ldc, cols, accumulate);
  }
}
#endif

// body(first, rows) for the rows of an m-row product in groups of at most f32_avx2_rows, of
// sizes as equal as possible (16 = 6 + 5 + 5, not 6 + 6 + 4): an avx2 kernel of fewer than 5
// rows has too few accumulators to cover the FMA latency.
template <class Body>
__attribute__((always_inline)) inline void for_each_avx2_row_group(index_t m, const Body& body) {
  const index_t groups = (m + f32_avx2_rows - 1) / f32_avx2_rows, base = m / groups, larger = m % groups;
  for (index_t g = 0, i = 0; g < groups; ++g) {
    const index_t rows = base + (g < larger ? 1 : 0);
    body(i, rows);
    i += rows;
  }
}

// C (m × n, rows ldc apart) = A · B, or += when `accumulate`; A is m × k, rows lda apart.
inline void matmul_f32(const float* a, index_t lda, index_t m, const F32Slice& b, float* c, index_t ldc,
                       bool accumulate) {
  if (m == 0 || b.n == 0) return;
  if (b.b->path == Fp32Path::eigen) {
    multiply_into(matrix(c, m, b.n, ldc), matrix(a, m, b.k, lda), b.b->plain.block(b.k_begin, b.n_begin, b.k, b.n),
                  accumulate);
    return;
  }
  if (b.k == 0) {  // an empty sum (a B of no rows has no panel storage to offset into)
    if (!accumulate)
      for (index_t i = 0; i < m; ++i) std::fill_n(c + i * ldc, b.n, 0.0f);
    return;
  }
#if LSATTN_HAS_PANEL_F32_KERNELS
  const PackedF32& packed = *b.b;
  const index_t first_panel = b.n_begin / f32_panel;
  for (index_t n0 = 0; n0 < b.n; n0 += f32_panel) {
    const index_t cols = std::min(f32_panel, b.n - n0);
    const float* panel = packed.values.data() + ((first_panel + n0 / f32_panel) * packed.k + b.k_begin) * f32_panel;
    if (packed.path == Fp32Path::avx512) {
      for (index_t i = 0; i < m; i += f32_rows)
        micro_kernel_f32_rows<TileOperands::packed>(std::min(f32_rows, m - i), b.k, a + i * lda, lda, panel, f32_panel,
                                                    c + i * ldc + n0, ldc, cols, accumulate);
      continue;
    }
    for (index_t half = 0; half < cols; half += f32_half_panel)
      for_each_avx2_row_group(m, [&](index_t i, index_t rows) {
        micro_kernel_avx2_rows<TileOperands::packed>(rows, b.k, a + i * lda, lda, panel + half, f32_panel,
                                                     c + i * ldc + n0 + half, ldc,
                                                     std::min(f32_half_panel, cols - half), accumulate);
      });
  }
#else
  throw error("lsattn internal: B packed for a panel fp32 path in a build without its kernels");
#endif
}

inline void matmul_f32(const float* a, index_t lda, index_t m, const PackedF32& b, float* c, index_t ldc,
                       bool accumulate) {
  matmul_f32(a, lda, m, whole(b), c, ldc, accumulate);
}

// The dynamic projection's K̄ = Pᵀ·K: C (m × n, rows ldc apart) = Aᵀ · B with A k × m (rows lda
// apart) and B k × n (rows ldb apart), both read in place. There k is the sequence length
// (thousands) and m, n are small (landmarks, head width): packing would copy all of A and B
// to use each element a few times only (Eigen's packing took as long as its product here).
// k runs in blocks that stay in L1/L2 while every tile of C passes over them.
inline constexpr index_t transposed_k_block = 64;

// C = Aᵀ · B (or C += Aᵀ · B when `accumulate`) as above, on `path`: eigen, or the tile kernels
// of the avx2 and avx512 paths with their `transposed` operands.
inline void transposed_matmul_f32(const float* a, index_t lda, index_t m, const float* b, index_t ldb, index_t n,
                                  index_t k, float* c, index_t ldc, Fp32Path path, bool accumulate = false) {
  if (m == 0 || n == 0) return;
  if (path == Fp32Path::eigen || k == 0) {  // Eigen's product over no rows is 0
    multiply_into(matrix(c, m, n, ldc), matrix(a, k, m, lda).transpose(), matrix(b, k, n, ldb), accumulate);
    return;
  }
#if LSATTN_HAS_PANEL_F32_KERNELS
  for (index_t p0 = 0; p0 < k; p0 += transposed_k_block) {
    const index_t depth = std::min(transposed_k_block, k - p0);
    const float* a_block = a + p0 * lda;
    const float* b_block = b + p0 * ldb;
    const bool add = accumulate || p0 > 0;
    if (path == Fp32Path::avx512) {
      for (index_t j = 0; j < n; j += f32_panel) {
        const index_t cols = std::min(f32_panel, n - j);
        for (index_t i = 0; i < m; i += f32_rows) {
          const index_t rows = std::min(f32_rows, m - i);
          if (cols == f32_panel)
            micro_kernel_f32_rows<TileOperands::transposed>(rows, depth, a_block + i, lda, b_block + j, ldb,
                                                            c + i * ldc + j, ldc, cols, add);
          else
            micro_kernel_f32_rows<TileOperands::transposed_masked>(rows, depth, a_block + i, lda, b_block + j, ldb,
                                                                   c + i * ldc + j, ldc, cols, add);
        }
      }
      continue;
    }
    for (index_t j = 0; j < n; j += f32_half_panel) {
      const index_t cols = std::min(f32_half_panel, n - j);
      for_each_avx2_row_group(m, [&](index_t i, index_t rows) {
        if (cols == f32_half_panel)
          micro_kernel_avx2_rows<TileOperands::transposed>(rows, depth, a_block + i, lda, b_block + j, ldb,
                                                           c + i * ldc + j, ldc, cols, add);
        else
          micro_kernel_avx2_rows<TileOperands::transposed_masked>(rows, depth, a_block + i, lda, b_block + j, ldb,
                                                                  c + i * ldc + j, ldc, cols, add);
      });
    }
  }
#else
  throw error("lsattn internal: a panel fp32 path in a build without its kernels");
#endif
}

}  // namespace cpu_detail
}  // namespace lsattn
