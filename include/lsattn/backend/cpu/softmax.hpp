#pragma once
// The softmax's element-wise work on one row of float scores (maximum, exp(x − shift) and its
// sum, the division by the sum) in the vector width of the fp32 path: AVX-512 or AVX2 code
// compiled with target attributes, so that a build without -march=native does not fall back to
// SSE2 for it (Eigen's exp is compiled for the build's baseline: on the Zen 2 machine of
// 2026-12-02 full attention took 1051 ms in a baseline build against 727 with -march=native, a
// third of the difference being the softmax). The eigen path keeps Eigen's operations.
//
// exp: x = n·ln2 + r with n = round(x·log2 e), |r| ≤ ln2/2 split off in two FMAs (ln2 as a high
// part exact in float and a low part); exp(r) by its Taylor polynomial of degree 7 (truncation
// below 6·10⁻⁹ relative) evaluated by Estrin's scheme (a dependency chain of 3 FMAs instead
// of Horner's 6: the loop is latency-bound, its out-of-order window too small for Horner's
// chain; 0.67 → 0.4 ns an element on Zen 2); 2ⁿ applied as two powers of two of half n each, so that results near
// the float range's ends (denormals, overflow to inf) come out right. x is clamped to
// [−110, 89] first (exp(−110) underflows to exactly 0, exp(89) overflows to inf); a NaN stays NaN.
// Lanes are independent and the tail runs through the same vector code on a padded copy, so an
// element's value does not depend on its position.
#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>

#include "lsattn/backend/cpu/eigen.hpp"
#include "lsattn/backend/cpu/kernel_path.hpp"
#include "lsattn/backend/cpu/matmul_f32.hpp"
#include "lsattn/core/tensor.hpp"

namespace lsattn::cpu_detail {

namespace exp_constants {
inline constexpr float log2e = 1.44269504088896341f;
inline constexpr float ln2_high = 0.693359375f;  // 8 significant bits: n·ln2_high is exact
inline constexpr float ln2_low = -2.12194440e-4f;
inline constexpr float lowest = -110.0f, highest = 89.0f;
// 1/k! for k = 7 … 2 (Horner from the highest degree).
inline constexpr float c7 = 1.0f / 5040, c6 = 1.0f / 720, c5 = 1.0f / 120, c4 = 1.0f / 24, c3 = 1.0f / 6, c2 = 0.5f;
}  // namespace exp_constants

#if LSATTN_HAS_PANEL_F32_KERNELS
LSATTN_AVX2_F32_TARGET inline __m256 exp_avx2(__m256 x) {
  namespace k = exp_constants;
  // max(lowest, x) returns x when x is NaN (the second operand), so a NaN goes through.
  x = _mm256_min_ps(_mm256_set1_ps(k::highest), _mm256_max_ps(_mm256_set1_ps(k::lowest), x));
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(k::log2e)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(k::ln2_high), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(k::ln2_low), r);
  // Estrin's scheme: 1 + r + r²(c2 + c3·r) + r⁴(c4 + c5·r + r²(c6 + c7·r)).
  const __m256 r2 = _mm256_mul_ps(r, r), r4 = _mm256_mul_ps(r2, r2);
  const __m256 low = _mm256_fmadd_ps(_mm256_fmadd_ps(_mm256_set1_ps(k::c3), r, _mm256_set1_ps(k::c2)), r2,
                                   _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
  const __m256 high = _mm256_fmadd_ps(_mm256_fmadd_ps(_mm256_set1_ps(k::c7), r, _mm256_set1_ps(k::c6)), r2,
                                    _mm256_fmadd_ps(_mm256_set1_ps(k::c5), r, _mm256_set1_ps(k::c4)));
  const __m256 p = _mm256_fmadd_ps(high, r4, low);
  const __m256i whole = _mm256_cvtps_epi32(n);  // exact: n is an integer in [−159, 129]
  const __m256i half = _mm256_srai_epi32(whole, 1), rest = _mm256_sub_epi32(whole, half);
  const __m256i bias = _mm256_set1_epi32(127);
  const __m256 scale_half = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(half, bias), 23));
  const __m256 scale_rest = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(rest, bias), 23));
  return _mm256_mul_ps(_mm256_mul_ps(p, scale_half), scale_rest);
}

// GCC 12's AVX-512 intrinsics (max, roundscale, cvtps, reduce) pass _mm512_undefined_ps() as
// the merge source of their unmasked form, which -Wuninitialized reports once inlined here.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
LSATTN_AVX512_F32_TARGET inline __m512 exp_avx512(__m512 x) {
  namespace k = exp_constants;
  x = _mm512_min_ps(_mm512_set1_ps(k::highest), _mm512_max_ps(_mm512_set1_ps(k::lowest), x));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(k::log2e)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(k::ln2_high), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(k::ln2_low), r);
  // Estrin's scheme: 1 + r + r²(c2 + c3·r) + r⁴(c4 + c5·r + r²(c6 + c7·r)).
  const __m512 r2 = _mm512_mul_ps(r, r), r4 = _mm512_mul_ps(r2, r2);
  const __m512 low = _mm512_fmadd_ps(_mm512_fmadd_ps(_mm512_set1_ps(k::c3), r, _mm512_set1_ps(k::c2)), r2,
                                   _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
  const __m512 high = _mm512_fmadd_ps(_mm512_fmadd_ps(_mm512_set1_ps(k::c7), r, _mm512_set1_ps(k::c6)), r2,
                                    _mm512_fmadd_ps(_mm512_set1_ps(k::c5), r, _mm512_set1_ps(k::c4)));
  const __m512 p = _mm512_fmadd_ps(high, r4, low);
  const __m512i whole = _mm512_cvtps_epi32(n);
  const __m512i half = _mm512_srai_epi32(whole, 1), rest = _mm512_sub_epi32(whole, half);
  const __m512i bias = _mm512_set1_epi32(127);
  const __m512 scale_half = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(half, bias), 23));
  const __m512 scale_rest = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(rest, bias), 23));
  return _mm512_mul_ps(_mm512_mul_ps(p, scale_half), scale_rest);
}

// max over x[0 … n), n ≥ 1 (the tail read through a copy padded with −inf).
LSATTN_AVX2_F32_TARGET inline float row_max_avx2(const float* x, index_t n) {
  __m256 best = _mm256_set1_ps(-std::numeric_limits<float>::infinity());
  index_t i = 0;
  for (; i + 8 <= n; i += 8) best = _mm256_max_ps(best, _mm256_loadu_ps(x + i));
  if (i < n) {
    alignas(32) float tail[8];
    std::fill_n(tail, 8, -std::numeric_limits<float>::infinity());
    std::copy(x + i, x + n, tail);
    best = _mm256_max_ps(best, _mm256_load_ps(tail));
  }
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, best);
  return *std::max_element(lanes, lanes + 8);
}

LSATTN_AVX512_F32_TARGET inline float row_max_avx512(const float* x, index_t n) {
  __m512 best = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
  index_t i = 0;
  for (; i + 16 <= n; i += 16) best = _mm512_max_ps(best, _mm512_loadu_ps(x + i));
  if (i < n) {
    const __mmask16 mask = static_cast<__mmask16>((1u << (n - i)) - 1u);
    best = _mm512_mask_max_ps(best, mask, best, _mm512_maskz_loadu_ps(mask, x + i));
  }
  return _mm512_reduce_max_ps(best);
}

// x ← exp(x − shift) over x[0 … n); returns the sum (lane sums, then the lanes in order).
LSATTN_AVX2_F32_TARGET inline float exp_shifted_avx2(float* x, index_t n, float shift) {
  const __m256 offset = _mm256_set1_ps(shift);
  __m256 sum = _mm256_setzero_ps();
  index_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 e = exp_avx2(_mm256_sub_ps(_mm256_loadu_ps(x + i), offset));
    _mm256_storeu_ps(x + i, e);
    sum = _mm256_add_ps(sum, e);
  }
  if (i < n) {  // the padding's −inf gives exp = 0
    alignas(32) float tail[8];
    std::fill_n(tail, 8, -std::numeric_limits<float>::infinity());
    std::copy(x + i, x + n, tail);
    const __m256 e = exp_avx2(_mm256_sub_ps(_mm256_load_ps(tail), offset));
    _mm256_store_ps(tail, e);
    std::copy(tail, tail + (n - i), x + i);
    sum = _mm256_add_ps(sum, e);
  }
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, sum);
  float total = 0;
  for (float lane : lanes) total += lane;
  return total;
}

LSATTN_AVX512_F32_TARGET inline float exp_shifted_avx512(float* x, index_t n, float shift) {
  const __m512 offset = _mm512_set1_ps(shift);
  __m512 sum = _mm512_setzero_ps();
  index_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512 e = exp_avx512(_mm512_sub_ps(_mm512_loadu_ps(x + i), offset));
    _mm512_storeu_ps(x + i, e);
    sum = _mm512_add_ps(sum, e);
  }
  if (i < n) {  // masked-off lanes load −inf, whose exp is 0
    const __mmask16 mask = static_cast<__mmask16>((1u << (n - i)) - 1u);
    const __m512 minus_infinity = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
    const __m512 e = exp_avx512(_mm512_sub_ps(_mm512_mask_loadu_ps(minus_infinity, mask, x + i), offset));
    _mm512_mask_storeu_ps(x + i, mask, e);
    sum = _mm512_add_ps(sum, e);
  }
  alignas(64) float lanes[16];
  _mm512_store_ps(lanes, sum);
  float total = 0;
  for (float lane : lanes) total += lane;
  return total;
}

// out ← exp(x − shift) element by element over [0, n), shift a row of its own.
LSATTN_AVX2_F32_TARGET inline void exp_difference_avx2(const float* x, const float* shift, float* out, index_t n) {
  index_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(out + i, exp_avx2(_mm256_sub_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(shift + i))));
  if (i < n) {
    alignas(32) float tail[8] = {}, tail_shift[8] = {};
    std::copy(x + i, x + n, tail);
    std::copy(shift + i, shift + n, tail_shift);
    _mm256_store_ps(tail, exp_avx2(_mm256_sub_ps(_mm256_load_ps(tail), _mm256_load_ps(tail_shift))));
    std::copy(tail, tail + (n - i), out + i);
  }
}

LSATTN_AVX512_F32_TARGET inline void exp_difference_avx512(const float* x, const float* shift, float* out, index_t n) {
  index_t i = 0;
  for (; i + 16 <= n; i += 16)
    _mm512_storeu_ps(out + i, exp_avx512(_mm512_sub_ps(_mm512_loadu_ps(x + i), _mm512_loadu_ps(shift + i))));
  if (i < n) {
    const __mmask16 mask = static_cast<__mmask16>((1u << (n - i)) - 1u);
    const __m512 difference = _mm512_sub_ps(_mm512_maskz_loadu_ps(mask, x + i), _mm512_maskz_loadu_ps(mask, shift + i));
    _mm512_mask_storeu_ps(out + i, mask, exp_avx512(difference));
  }
}

LSATTN_AVX2_F32_TARGET inline void divide_avx2(float* x, index_t n, float divisor) {
  const __m256 d = _mm256_set1_ps(divisor);
  index_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, _mm256_div_ps(_mm256_loadu_ps(x + i), d));
  for (; i < n; ++i) x[i] /= divisor;
}

LSATTN_AVX512_F32_TARGET inline void divide_avx512(float* x, index_t n, float divisor) {
  const __m512 d = _mm512_set1_ps(divisor);
  index_t i = 0;
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(x + i, _mm512_div_ps(_mm512_loadu_ps(x + i), d));
  if (i < n) {
    const __mmask16 mask = static_cast<__mmask16>((1u << (n - i)) - 1u);
    _mm512_mask_storeu_ps(x + i, mask, _mm512_div_ps(_mm512_maskz_loadu_ps(mask, x + i), d));
  }
}
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
#endif

// The path whose vector width the softmax of T runs in: the fp32 path for float (resolved, so a
// bad LSATTN_FP32_PATH throws; executors ask before their parallel loops), Eigen for others.
template <class T>
Fp32Path softmax_path() {
  if constexpr (std::is_same_v<T, float>) return active_fp32_path();
  else return Fp32Path::eigen;
}

// The largest of x[0 … n); −inf when n = 0.
template <class T>
T row_max(const T* x, index_t n, Fp32Path path) {
  if (n == 0) return -std::numeric_limits<T>::infinity();
#if LSATTN_HAS_PANEL_F32_KERNELS
  if constexpr (std::is_same_v<T, float>) {
    if (path == Fp32Path::avx512) return row_max_avx512(x, n);
    if (path == Fp32Path::avx2) return row_max_avx2(x, n);
  }
#endif
  (void)path;
  return Eigen::Map<const Eigen::Matrix<T, 1, Eigen::Dynamic>>(x, n).maxCoeff();
}

// x ← exp(x − shift) over x[0 … n); returns Σ x afterwards.
template <class T>
T exp_shifted(T* x, index_t n, T shift, Fp32Path path) {
  if (n == 0) return T(0);
#if LSATTN_HAS_PANEL_F32_KERNELS
  if constexpr (std::is_same_v<T, float>) {
    if (path == Fp32Path::avx512) return exp_shifted_avx512(x, n, shift);
    if (path == Fp32Path::avx2) return exp_shifted_avx2(x, n, shift);
  }
#endif
  (void)path;
  Eigen::Map<Eigen::Matrix<T, 1, Eigen::Dynamic>> row(x, n);
  row = (row.array() - shift).exp();
  return row.sum();
}

// out ← exp(x − shift) element by element over [0, n) (a row of logits minus the column maxima).
template <class T>
void exp_difference(const T* x, const T* shift, T* out, index_t n, Fp32Path path) {
#if LSATTN_HAS_PANEL_F32_KERNELS
  if constexpr (std::is_same_v<T, float>) {
    if (path == Fp32Path::avx512) return exp_difference_avx512(x, shift, out, n);
    if (path == Fp32Path::avx2) return exp_difference_avx2(x, shift, out, n);
  }
#endif
  (void)path;
  using Row = Eigen::Matrix<T, 1, Eigen::Dynamic>;
  Eigen::Map<Row>(out, n) = (Eigen::Map<const Row>(x, n) - Eigen::Map<const Row>(shift, n)).array().exp();
}

// x ← x / divisor over x[0 … n).
template <class T>
void divide(T* x, index_t n, T divisor, Fp32Path path) {
#if LSATTN_HAS_PANEL_F32_KERNELS
  if constexpr (std::is_same_v<T, float>) {
    if (path == Fp32Path::avx512) return divide_avx512(x, n, divisor);
    if (path == Fp32Path::avx2) return divide_avx2(x, n, divisor);
  }
#endif
  (void)path;
  Eigen::Map<Eigen::Matrix<T, 1, Eigen::Dynamic>>(x, n) /= divisor;
}

// x ← softmax(x) over x[0 … n): exp(x − max x) / Σ.
template <class T>
void softmax_row(T* x, index_t n, Fp32Path path) {
  const T sum = exp_shifted(x, n, row_max(x, n, path), path);
  divide(x, n, sum, path);
}

}  // namespace lsattn::cpu_detail
