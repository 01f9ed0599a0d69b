#pragma once
// Bit-exact conversions between float and the 16-bit storage formats IEEE binary16 ("half")
// and bfloat16. Pure integer arithmetic on bit patterns: constexpr, no intrinsics and no other
// headers of lsattn, so the same code serves host loaders and (with nvcc's
// --expt-relaxed-constexpr) device kernels.
#include <bit>
#include <cstdint>

namespace lsattn {

// binary16: 1 sign bit, 5 exponent bits (bias 15), 10 mantissa bits. Every half is exactly
// representable as a float, so this direction never rounds.
constexpr float half_to_float(std::uint16_t h) {
  const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
  const std::uint32_t exponent = (h >> 10) & 0x1fu;
  std::uint32_t mantissa = h & 0x3ffu;
  std::uint32_t bits = 0;
  if (exponent == 0x1f) {
    // Inf or NaN; the NaN payload (quiet bit included) moves to the top of the float mantissa.
    bits = sign | 0x7f800000u | (mantissa << 13);
  } else if (exponent != 0) {
    bits = sign | ((exponent + (127 - 15)) << 23) | (mantissa << 13);
  } else if (mantissa == 0) {
    bits = sign;  // signed zero
  } else {
    // Subnormal half (mantissa * 2^-24) is a normal float: shift until the implicit bit appears.
    std::uint32_t shift = 0;
    while ((mantissa & 0x400u) == 0) {
      mantissa <<= 1;
      ++shift;
    }
    bits = sign | ((127 - 14 - shift) << 23) | ((mantissa & 0x3ffu) << 13);
  }
  return std::bit_cast<float>(bits);
}

// Rounds to nearest, ties to even. Too large -> inf, too small -> (signed) zero or subnormal.
constexpr std::uint16_t float_to_half(float value) {
  const std::uint32_t bits = std::bit_cast<std::uint32_t>(value);
  const std::uint32_t sign = (bits >> 16) & 0x8000u;
  const std::uint32_t exponent = (bits >> 23) & 0xffu;
  const std::uint32_t mantissa = bits & 0x7fffffu;

  if (exponent == 0xff) {
    if (mantissa == 0) return static_cast<std::uint16_t>(sign | 0x7c00u);
    // Keep the high payload bits, and force the quiet bit so a NaN can never turn into inf.
    return static_cast<std::uint16_t>(sign | 0x7e00u | (mantissa >> 13));
  }

  const int unbiased = static_cast<int>(exponent) - 127;
  if (unbiased > 15) return static_cast<std::uint16_t>(sign | 0x7c00u);

  if (unbiased >= -14) {
    // Normal range: drop 13 mantissa bits. A carry out of the mantissa correctly bumps the
    // exponent, and 0x7bff + 1 is exactly inf.
    std::uint32_t result = sign | (static_cast<std::uint32_t>(unbiased + 15) << 10) | (mantissa >> 13);
    const std::uint32_t rest = mantissa & 0x1fffu;
    if (rest > 0x1000u || (rest == 0x1000u && (result & 1u))) ++result;
    return static_cast<std::uint16_t>(result);
  }

  // Below 2^-25 (half the smallest subnormal; float subnormals included) everything rounds
  // to zero; exactly 2^-25 is a tie that goes to the even value zero as well.
  if (unbiased < -25) return static_cast<std::uint16_t>(sign);

  // Subnormal half: count units of 2^-24. The full significand (implicit bit set) is
  // significand * 2^(unbiased - 23), i.e. significand >> -(unbiased + 1) units.
  const std::uint32_t significand = mantissa | 0x800000u;
  const int shift = -(unbiased + 1);  // 14 .. 24
  std::uint32_t result = significand >> shift;
  const std::uint32_t rest = significand & ((1u << shift) - 1u);
  const std::uint32_t halfway = 1u << (shift - 1);
  if (rest > halfway || (rest == halfway && (result & 1u))) ++result;  // may become 0x400, the smallest normal
  return static_cast<std::uint16_t>(sign | result);
}

// bfloat16 is the top half of a float, so widening is a shift.
constexpr float bfloat16_to_float(std::uint16_t b) {
  return std::bit_cast<float>(static_cast<std::uint32_t>(b) << 16);
}

// Rounds to nearest, ties to even; overflow rounds to inf as the carry runs into the exponent.
constexpr std::uint16_t float_to_bfloat16(float value) {
  const std::uint32_t bits = std::bit_cast<std::uint32_t>(value);
  if ((bits & 0x7fffffffu) > 0x7f800000u) {
    // NaN: truncating could clear every remaining payload bit (-> inf), so set the quiet bit.
    return static_cast<std::uint16_t>((bits >> 16) | 0x0040u);
  }
  const std::uint32_t rounding = 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<std::uint16_t>((bits + rounding) >> 16);
}

}  // namespace lsattn
