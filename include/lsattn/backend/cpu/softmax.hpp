#pragma once
// The softmax's element-wise work on one row of float scores (maximum, exp(x − shift) and its
// sum, the division by the sum) in the vector width of the fp32 path: AVX-512 or AVX2 code
// compiled with target attributes, so that a build without -march=native does not fall back to
// SSE2 for it (Eigen's exp is compiled for the build's baseline: on the Zen 2 machine of
// 2026-12-02 full attention took 1051 ms in a baseline build against 727 with -march=native, a
// third of the difference being the softmax). The eigen path keeps Eigen's operations.
//
// exp, for x ≤ 88 (every caller passes x − max ≤ 0): x is clamped below at −88; n = round(x·log₂e)
// by the 1.5·2²³ rounding trick (which leaves n in the low bits of the sum as well);
// r = x − n·ln 2 by two FMAs (ln 2 as a high part exact in float and a low part), |r| ≤ ln 2 / 2;
// exp(r) = 1 + r + r²(c2 + c3·r) + r⁴(c4 + c5·r + c6·r²), coefficients fitted for the least
// maximum relative error on that interval (1.7·10⁻⁸ with float coefficients), evaluated by
// Estrin's scheme (a chain of 3 FMAs: the loop is latency-bound, its out-of-order window too
// small for Horner's chain of 6); then one multiplication by 2ⁿ built from n's bits. Results
// below 2⁻¹²⁶ from x < −87.68 (and x = −inf, a masked score) are exactly 0; a NaN stays NaN.
// On Zen 2 this is 0.42 ns an element against 0.68 for the first version (Horner, degree-7
// Taylor, x clamped at both ends, 2ⁿ in two halves): the clamps, compares and blends cost as
// much as the polynomial there.
// Lanes are independent and a row's tail runs through the same vector code (masked loads and
// stores), so an element's value does not depend on its position.
#include <algorithm>
#include <cmath>
#include <cstdint>
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
inline constexpr float lowest = -88.0f;          // n ≥ −127, whose 2ⁿ is built as +0
inline constexpr float round_magic = 12582912.0f;  // 1.5·2²³: t + magic rounds t to an integer
inline constexpr std::int32_t biased_magic = 0x4b400000 - 127;  // bits(magic) − the exponent bias
// exp(r) ≈ 1 + r + c2·r² + … + c6·r⁶ on |r| ≤ ln 2 / 2 (least maximum relative error).
inline constexpr float c2 = 4.999999404e-01f, c3 = 1.666643173e-01f, c4 = 4.166800156e-02f, c5 = 8.374155499e-03f,
                       c6 = 1.384365372e-03f;
}  // namespace exp_constants

#if LSATTN_HAS_PANEL_F32_KERNELS
LSATTN_AVX2_F32_TARGET inline __m256 exp_avx2(__m256 x) {
  namespace k = exp_constants;
  // max(lowest, x) returns x when x is NaN (the second operand), so a NaN goes through.
  x = _mm256_max_ps(_mm256_set1_ps(k::lowest), x);
  const __m256 magic = _mm256_set1_ps(k::round_magic);
  const __m256 shifted = _mm256_fmadd_ps(x, _mm256_set1_ps(k::log2e), magic);
  const __m256 n = _mm256_sub_ps(shifted, magic);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(k::ln2_high), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(k::ln2_low), r);
  const __m256 r2 = _mm256_mul_ps(r, r), r4 = _mm256_mul_ps(r2, r2);
  const __m256 low = _mm256_fmadd_ps(_mm256_fmadd_ps(_mm256_set1_ps(k::c3), r, _mm256_set1_ps(k::c2)), r2,
                                   _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
  const __m256 high = _mm256_fmadd_ps(_mm256_set1_ps(k::c6), r2,
                                    _mm256_fmadd_ps(_mm256_set1_ps(k::c5), r, _mm256_set1_ps(k::c4)));
  const __m256 p = _mm256_fmadd_ps(high, r4, low);
  // bits(shifted) − bits(magic) = n, so this is n + 127: the biased exponent of 2ⁿ.
  const __m256i biased = _mm256_sub_epi32(_mm256_castps_si256(shifted), _mm256_set1_epi32(k::biased_magic));
  return _mm256_mul_ps(p, _mm256_castsi256_ps(_mm256_slli_epi32(biased, 23)));
}

// GCC 12's AVX-512 intrinsics (max, reduce_max and others) pass _mm512_undefined_ps() as
// the merge source of their unmasked form, which -Wuninitialized reports once inlined here.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
LSATTN_AVX512_F32_TARGET inline __m512 exp_avx512(__m512 x) {
  namespace k = exp_constants;
  // max(lowest, x) returns x when x is NaN (the second operand), so a NaN goes through.
  x = _mm512_max_ps(_mm512_set1_ps(k::lowest), x);
  const __m512 magic = _mm512_set1_ps(k::round_magic);
  const __m512 shifted = _mm512_fmadd_ps(x, _mm512_set1_ps(k::log2e), magic);
  const __m512 n = _mm512_sub_ps(shifted, magic);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(k::ln2_high), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(k::ln2_low), r);
  const __m512 r2 = _mm512_mul_ps(r, r), r4 = _mm512_mul_ps(r2, r2);
  const __m512 low = _mm512_fmadd_ps(_mm512_fmadd_ps(_mm512_set1_ps(k::c3), r, _mm512_set1_ps(k::c2)), r2,
                                   _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
  const __m512 high = _mm512_fmadd_ps(_mm512_set1_ps(k::c6), r2,
                                    _mm512_fmadd_ps(_mm512_set1_ps(k::c5), r, _mm512_set1_ps(k::c4)));
  const __m512 p = _mm512_fmadd_ps(high, r4, low);
  // bits(shifted) − bits(magic) = n, so this is n + 127: the biased exponent of 2ⁿ.
  const __m512i biased = _mm512_sub_epi32(_mm512_castps_si512(shifted), _mm512_set1_epi32(k::biased_magic));
  return _mm512_mul_ps(p, _mm512_castsi512_ps(_mm512_slli_epi32(biased, 23)));
}

// The sum of the eight lanes, in lane order.
LSATTN_AVX2_F32_TARGET inline float lane_sum_avx2(__m256 v) {
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, v);
  float total = 0;
  for (float lane : lanes) total += lane;
  return total;
}

// x[0 … count) in the first lanes (count < 8) and `fill` in the others, reading nothing past
// x[count − 1].
LSATTN_AVX2_F32_TARGET inline __m256 load_tail_avx2(const float* x, index_t count, float fill) {
  const __m256i mask = lane_mask_avx2(count);
  return _mm256_blendv_ps(_mm256_set1_ps(fill), _mm256_maskload_ps(x, mask), _mm256_castsi256_ps(mask));
}

// max over x[0 … n), n ≥ 1 (the tail read through a copy padded with −inf).
LSATTN_AVX2_F32_TARGET inline float row_max_avx2(const float* x, index_t n) {
  __m256 best = _mm256_set1_ps(-std::numeric_limits<float>::infinity());
  index_t i = 0;
  for (; i + 8 <= n; i += 8) best = _mm256_max_ps(best, _mm256_loadu_ps(x + i));
  if (i < n) best = _mm256_max_ps(best, load_tail_avx2(x + i, n - i, -std::numeric_limits<float>::infinity()));
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
  if (i < n) {  // the lanes past the row load −inf, whose exp is 0
    const __m256 tail = load_tail_avx2(x + i, n - i, -std::numeric_limits<float>::infinity());
    const __m256 e = exp_avx2(_mm256_sub_ps(tail, offset));
    _mm256_maskstore_ps(x + i, lane_mask_avx2(n - i), e);
    sum = _mm256_add_ps(sum, e);
  }
  return lane_sum_avx2(sum);
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
    const __m256 difference = _mm256_sub_ps(load_tail_avx2(x + i, n - i, 0.0f), load_tail_avx2(shift + i, n - i, 0.0f));
    _mm256_maskstore_ps(out + i, lane_mask_avx2(n - i), exp_avx2(difference));
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

// x ← exp(x − shift) over x[0 … n); returns Σ x afterwards. shift ≥ every x[i] (a maximum).
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

// out ← exp(x − shift) element by element over [0, n) (a row of logits minus the column maxima;
// x − shift ≤ 88 as for exp_shifted).
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
