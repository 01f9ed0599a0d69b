// half/bfloat16 conversions and the safetensors reader/writer: round trips, every validation
// error on hand-built files, and robustness against truncated and randomly mutated files.
#include <catch2/catch.hpp>

#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "lsattn/core/half.hpp"
#include "lsattn/io/safetensors.hpp"

using Catch::Matchers::Contains;
using lsattn::index_t;
using lsattn::Shape;
using lsattn::Tensor;
using lsattn::io::dtype;
using lsattn::io::SafeTensorsFile;
using lsattn::io::SafeTensorsWriter;

namespace {

constexpr const char* kSource = "hand.safetensors";

float from_bits(std::uint32_t bits) { return std::bit_cast<float>(bits); }
std::uint32_t to_bits(float value) { return std::bit_cast<std::uint32_t>(value); }

// Value of a half bit pattern computed independently of the library, with ldexp.
double half_reference(std::uint16_t h) {
  const int exponent = (h >> 10) & 0x1f;
  const int mantissa = h & 0x3ff;
  const double magnitude = exponent == 0 ? std::ldexp(mantissa, -24) : std::ldexp(1024 + mantissa, exponent - 25);
  return (h & 0x8000) ? -magnitude : magnitude;
}

// [u64 header length][header][data]: the raw format, built by hand.
std::vector<std::uint8_t> make_file(const std::string& header, const std::vector<std::uint8_t>& data = {}) {
  std::vector<std::uint8_t> bytes;
  const std::uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) bytes.push_back(static_cast<std::uint8_t>(n >> (8 * i)));
  bytes.insert(bytes.end(), header.begin(), header.end());
  bytes.insert(bytes.end(), data.begin(), data.end());
  return bytes;
}

std::vector<std::uint8_t> zeros(std::size_t n) { return std::vector<std::uint8_t>(n, 0); }

// The message of the lsattn::error that `f` throws; any other outcome fails the test.
template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const lsattn::error& e) {
    return e.what();
  }
  FAIL("expected an lsattn::error");
  return {};
}

std::string parse_error(const std::vector<std::uint8_t>& bytes) {
  return error_of([&] { SafeTensorsFile::parse(bytes, kSource); });
}

// One tensor entry of a hand-written header.
std::string entry(const std::string& name, const std::string& type, const std::string& shape, std::uint64_t begin,
                  std::uint64_t end) {
  return "\"" + name + "\": {\"dtype\": \"" + type + "\", \"shape\": " + shape + ", \"data_offsets\": [" +
         std::to_string(begin) + ", " + std::to_string(end) + "]}";
}

bool is_float(dtype type) { return type == dtype::f32 || type == dtype::f16 || type == dtype::bf16; }

// Loads every tensor whose rank is 0..4 through every loader that accepts its dtype; used on
// mutated files.
void load_everything(const SafeTensorsFile& file) {
  for (const std::string& name : file.names()) {
    const auto& info = file.info(name);
    auto load = [&](auto rank) {
      constexpr std::size_t Rank = decltype(rank)::value;
      file.load_numeric<Rank>(name);
      if (is_float(info.type)) file.load_float<Rank>(name);
    };
    switch (info.shape.size()) {
      case 0: load(std::integral_constant<std::size_t, 0>{}); break;
      case 1: load(std::integral_constant<std::size_t, 1>{}); break;
      case 2: load(std::integral_constant<std::size_t, 2>{}); break;
      case 3: load(std::integral_constant<std::size_t, 3>{}); break;
      case 4: load(std::integral_constant<std::size_t, 4>{}); break;
      default: break;
    }
    if (info.type == dtype::i64 && info.shape.size() == 1) file.load_int64<1>(name);
  }
}

// A valid file mixing dtypes and ranks, with metadata.
std::vector<std::uint8_t> sample_file() {
  SafeTensorsWriter writer;
  Tensor<float, 2> a({3, 4});
  for (index_t i = 0; i < a.size(); ++i) a.data()[i] = 0.5f * static_cast<float>(i) - 2.0f;
  Tensor<float, 1> b({5}, 1.25f);
  Tensor<float, 3> c({2, 1, 3}, -3.0f);
  Tensor<std::int64_t, 1> d({3}, std::vector<std::int64_t>{-7, 0, 1ll << 40});
  Tensor<float, 0> s({}, 42.0f);
  Tensor<float, 2> e({0, 3});
  writer.add("a", a);
  writer.add("b", b, dtype::f16);
  writer.add("c", c, dtype::bf16);
  writer.add("d", d);
  writer.add("s", s);
  writer.add("e", e);
  writer.set_metadata("format", "pt");
  return writer.to_bytes();
}

template <std::size_t Rank>
Tensor<float, Rank> counting_tensor(const Shape<Rank>& shape) {
  Tensor<float, Rank> t(shape);
  // Multiples of 1/4 in [-8, 8): exact in F32, F16 and BF16.
  for (index_t i = 0; i < t.size(); ++i) t.data()[i] = 0.25f * static_cast<float>(i % 64) - 8.0f;
  return t;
}

template <std::size_t Rank>
void check_float_round_trip(const Shape<Rank>& shape, dtype stored) {
  CAPTURE(lsattn::to_string(shape), lsattn::io::dtype_name(stored));
  const Tensor<float, Rank> original = counting_tensor(shape);
  SafeTensorsWriter writer;
  writer.add("t", original, stored);
  const SafeTensorsFile file = SafeTensorsFile::parse(writer.to_bytes(), "round_trip");
  const auto& info = file.info("t");
  CHECK(info.type == stored);
  CHECK(info.shape == std::vector<index_t>(shape.begin(), shape.end()));
  CHECK(info.data_end - info.data_begin ==
        static_cast<std::size_t>(lsattn::element_count(shape)) * lsattn::io::dtype_size(stored));
  const Tensor<float, Rank> loaded = file.load_float<Rank>("t", shape);
  CHECK(loaded.shape() == shape);
  CHECK(loaded.values() == original.values());
}

template <std::size_t Rank>
void check_int64_round_trip(const Shape<Rank>& shape) {
  CAPTURE(lsattn::to_string(shape));
  Tensor<std::int64_t, Rank> original(shape);
  const std::int64_t specials[] = {0, -1, 1, std::numeric_limits<std::int64_t>::min(),
                                   std::numeric_limits<std::int64_t>::max(), 1ll << 53, -(1ll << 33)};
  for (index_t i = 0; i < original.size(); ++i) original.data()[i] = specials[i % 7] ^ (i / 7);  // xor: no overflow at the extremes
  SafeTensorsWriter writer;
  writer.add("t", original);
  const SafeTensorsFile file = SafeTensorsFile::parse(writer.to_bytes(), "round_trip");
  CHECK(file.info("t").type == dtype::i64);
  const Tensor<std::int64_t, Rank> loaded = file.load_int64<Rank>("t");
  CHECK(loaded.shape() == shape);
  CHECK(loaded.values() == original.values());
  const Tensor<float, Rank> as_float = file.load_numeric<Rank>("t");
  for (index_t i = 0; i < original.size(); ++i) CHECK(as_float.data()[i] == static_cast<float>(original.data()[i]));
  CHECK_THROWS_AS(file.load_float<Rank>("t"), lsattn::error);
}

template <class Check>
void for_all_test_shapes(Check&& check) {
  check(Shape<0>{});
  check(Shape<1>{7});
  check(Shape<1>{0});
  check(Shape<2>{3, 5});
  check(Shape<2>{3, 0});
  check(Shape<3>{2, 3, 4});
  check(Shape<3>{2, 0, 4});
  check(Shape<4>{2, 1, 3, 2});
  check(Shape<4>{0, 0, 0, 0});
  check(Shape<4>{1, 2, 0, 3});
}

}  // namespace

// ----------------------------------------------------------------------------------------------
// half / bfloat16

TEST_CASE("half conversions are usable in constant expressions", "[half]") {
  static_assert(lsattn::float_to_half(1.0f) == 0x3c00);
  static_assert(lsattn::half_to_float(0xc000) == -2.0f);
  static_assert(lsattn::float_to_bfloat16(1.0f) == 0x3f80);
  static_assert(lsattn::bfloat16_to_float(0x4040) == 3.0f);
  SUCCEED();
}

TEST_CASE("half_to_float gives exact values", "[half]") {
  using lsattn::half_to_float;
  CHECK(half_to_float(0x0000) == 0.0f);
  CHECK(to_bits(half_to_float(0x8000)) == 0x80000000u);  // -0 keeps its sign
  CHECK(half_to_float(0x3c00) == 1.0f);
  CHECK(half_to_float(0xbc00) == -1.0f);
  CHECK(half_to_float(0x3555) == 0.333251953125f);
  CHECK(half_to_float(0x7bff) == 65504.0f);           // largest finite
  CHECK(half_to_float(0x0400) == std::ldexp(1.0f, -14));  // smallest normal
  CHECK(half_to_float(0x0001) == std::ldexp(1.0f, -24));  // smallest subnormal
  CHECK(half_to_float(0x03ff) == std::ldexp(1023.0f, -24));  // largest subnormal
  CHECK(half_to_float(0x8001) == -std::ldexp(1.0f, -24));
  CHECK(half_to_float(0x7c00) == std::numeric_limits<float>::infinity());
  CHECK(half_to_float(0xfc00) == -std::numeric_limits<float>::infinity());
  CHECK(std::isnan(half_to_float(0x7e00)));
  CHECK(std::isnan(half_to_float(0x7c01)));  // signalling NaN stays NaN, not inf
  CHECK(std::signbit(half_to_float(0xfe00)));
}

TEST_CASE("half_to_float matches an independent formula for all 65536 patterns", "[half]") {
  for (std::uint32_t h = 0; h < 0x10000; ++h) {
    const auto bits = static_cast<std::uint16_t>(h);
    const float value = lsattn::half_to_float(bits);
    if (((h >> 10) & 0x1f) == 0x1f) {
      const bool is_nan = (h & 0x3ff) != 0;
      CHECK(std::isnan(value) == is_nan);
      if (!is_nan) CHECK(std::isinf(value));
      CHECK(std::signbit(value) == ((h & 0x8000) != 0));
    } else if (static_cast<double>(value) != half_reference(bits) ||
               std::signbit(value) != ((h & 0x8000) != 0)) {
      FAIL("half 0x" << std::hex << h << " converts to " << value);
    }
  }
}

TEST_CASE("all 65536 half patterns survive half -> float -> half", "[half]") {
  int mismatches = 0;
  for (std::uint32_t h = 0; h < 0x10000; ++h) {
    const auto bits = static_cast<std::uint16_t>(h);
    const std::uint16_t back = lsattn::float_to_half(lsattn::half_to_float(bits));
    const bool is_nan = (h & 0x7c00) == 0x7c00 && (h & 0x3ff) != 0;
    if (is_nan) {
      // NaNs come back as NaN with the same sign and payload; only the quiet bit may be added.
      if ((back | 0x0200) != (bits | 0x0200) || (back & 0x3ff) == 0) ++mismatches;
    } else if (back != bits) {
      ++mismatches;
    }
  }
  CHECK(mismatches == 0);
}

TEST_CASE("float_to_half rounds to nearest, ties to even, across the whole half range", "[half]") {
  using lsattn::float_to_half;
  using lsattn::half_to_float;
  // Between each pair of adjacent positive finite halves (subnormals included) the midpoint is
  // exactly representable in float; it must go to the even neighbour, and its float
  // neighbours to the nearer half.
  int failures = 0;
  for (std::uint16_t h = 0; h < 0x7bff; ++h) {
    const auto next = static_cast<std::uint16_t>(h + 1);
    const float low = half_to_float(h), high = half_to_float(next);
    const float mid = (low + high) / 2;
    const std::uint16_t even = (h & 1) ? next : h;
    if (float_to_half(mid) != even) ++failures;
    if (float_to_half(std::nextafter(mid, 0.0f)) != h) ++failures;
    if (float_to_half(std::nextafter(mid, 1e9f)) != next) ++failures;
    if (float_to_half(-mid) != (even | 0x8000)) ++failures;
    if (float_to_half(low) != h) ++failures;
  }
  CHECK(failures == 0);
}

TEST_CASE("float_to_half special cases", "[half]") {
  using lsattn::float_to_half;
  const float inf = std::numeric_limits<float>::infinity();
  CHECK(float_to_half(1.0f + std::ldexp(1.0f, -11)) == 0x3c00);       // tie -> even (down)
  CHECK(float_to_half(1.0f + 3 * std::ldexp(1.0f, -11)) == 0x3c02);   // tie -> even (up)
  CHECK(float_to_half(1.0f + std::ldexp(1.0f, -11) + std::ldexp(1.0f, -20)) == 0x3c01);
  CHECK(float_to_half(65504.0f) == 0x7bff);
  CHECK(float_to_half(65519.99f) == 0x7bff);
  CHECK(float_to_half(65520.0f) == 0x7c00);  // tie between 65504 (odd) and 65536 -> inf
  CHECK(float_to_half(1e10f) == 0x7c00);
  CHECK(float_to_half(-1e10f) == 0xfc00);
  CHECK(float_to_half(std::numeric_limits<float>::max()) == 0x7c00);
  CHECK(float_to_half(inf) == 0x7c00);
  CHECK(float_to_half(-inf) == 0xfc00);
  CHECK(float_to_half(-0.0f) == 0x8000);
  // Subnormals and underflow.
  CHECK(float_to_half(std::ldexp(1.0f, -24)) == 0x0001);
  CHECK(float_to_half(std::ldexp(1.0f, -25)) == 0x0000);  // tie with zero -> zero
  CHECK(float_to_half(std::nextafter(std::ldexp(1.0f, -25), 1.0f)) == 0x0001);
  CHECK(float_to_half(3 * std::ldexp(1.0f, -25)) == 0x0002);  // 1.5 units -> 2
  CHECK(float_to_half(5 * std::ldexp(1.0f, -25)) == 0x0002);  // 2.5 units -> 2
  CHECK(float_to_half(std::ldexp(1.0f, -14) - std::ldexp(1.0f, -25)) == 0x0400);  // rounds up into normals
  CHECK(float_to_half(std::ldexp(1.0f, -26)) == 0x0000);
  CHECK(float_to_half(-std::ldexp(1.0f, -30)) == 0x8000);
  CHECK(float_to_half(from_bits(0x00000001)) == 0x0000);  // float subnormal
  CHECK(float_to_half(from_bits(0x80000001)) == 0x8000);
  // NaNs stay NaN even when only low payload bits are set (truncation would make inf).
  for (std::uint32_t nan_bits : {0x7fc00000u, 0x7f800001u, 0xff800001u, 0x7fffffffu}) {
    const std::uint16_t h = float_to_half(from_bits(nan_bits));
    CHECK((h & 0x7c00) == 0x7c00);
    CHECK((h & 0x03ff) != 0);
    CHECK(((h & 0x8000) != 0) == ((nan_bits & 0x80000000u) != 0));
  }
}

TEST_CASE("bfloat16 conversions", "[half]") {
  using lsattn::bfloat16_to_float;
  using lsattn::float_to_bfloat16;
  CHECK(bfloat16_to_float(0x3f80) == 1.0f);
  CHECK(bfloat16_to_float(0xc040) == -3.0f);
  CHECK(bfloat16_to_float(0x7f80) == std::numeric_limits<float>::infinity());
  CHECK(std::isnan(bfloat16_to_float(0x7fc0)));
  CHECK(bfloat16_to_float(0x0001) == from_bits(0x00010000u));  // subnormal

  CHECK(float_to_bfloat16(1.0f) == 0x3f80);
  CHECK(float_to_bfloat16(1.0f + std::ldexp(1.0f, -8)) == 0x3f80);      // tie -> even (down)
  CHECK(float_to_bfloat16(1.0f + 3 * std::ldexp(1.0f, -8)) == 0x3f82);  // tie -> even (up)
  CHECK(float_to_bfloat16(1.0f + std::ldexp(1.0f, -8) + std::ldexp(1.0f, -20)) == 0x3f81);
  CHECK(float_to_bfloat16(1.0f + std::ldexp(1.0f, -9)) == 0x3f80);
  CHECK(float_to_bfloat16(-0.0f) == 0x8000);
  CHECK(float_to_bfloat16(std::numeric_limits<float>::max()) == 0x7f80);  // rounds up to inf
  CHECK(float_to_bfloat16(-std::numeric_limits<float>::infinity()) == 0xff80);
  CHECK(float_to_bfloat16(from_bits(0x00018000u)) == 0x0002);  // subnormal tie -> even
  CHECK(float_to_bfloat16(from_bits(0x00008000u)) == 0x0000);
  for (std::uint32_t nan_bits : {0x7fc00000u, 0x7f800001u, 0xff800001u, 0x7fffffffu}) {
    CHECK(std::isnan(bfloat16_to_float(float_to_bfloat16(from_bits(nan_bits)))));
  }

  int mismatches = 0;
  for (std::uint32_t b = 0; b < 0x10000; ++b) {
    const auto bits = static_cast<std::uint16_t>(b);
    const float value = bfloat16_to_float(bits);
    if (to_bits(value) != b << 16) ++mismatches;
    if (std::isnan(value)) {
      if (!std::isnan(bfloat16_to_float(float_to_bfloat16(value)))) ++mismatches;
    } else if (float_to_bfloat16(value) != bits) {
      ++mismatches;
    }
  }
  CHECK(mismatches == 0);
}

// ----------------------------------------------------------------------------------------------
// Round trips

TEST_CASE("dtype names and sizes", "[safetensors]") {
  using lsattn::io::dtype_name;
  using lsattn::io::dtype_size;
  CHECK(dtype_name(dtype::f32) == "F32");
  CHECK(dtype_name(dtype::f16) == "F16");
  CHECK(dtype_name(dtype::bf16) == "BF16");
  CHECK(dtype_name(dtype::i64) == "I64");
  CHECK(dtype_name(dtype::boolean) == "BOOL");
  CHECK(dtype_size(dtype::f32) == 4);
  CHECK(dtype_size(dtype::f16) == 2);
  CHECK(dtype_size(dtype::bf16) == 2);
  CHECK(dtype_size(dtype::i64) == 8);
  CHECK(dtype_size(dtype::boolean) == 1);
}

TEST_CASE("float tensors round-trip as F32, F16 and BF16 for ranks 0..4", "[safetensors]") {
  for (dtype stored : {dtype::f32, dtype::f16, dtype::bf16}) {
    for_all_test_shapes([&](const auto& shape) { check_float_round_trip(shape, stored); });
  }
}

TEST_CASE("int64 tensors round-trip for ranks 0..4", "[safetensors]") {
  for_all_test_shapes([](const auto& shape) { check_int64_round_trip(shape); });
}

TEST_CASE("16-bit storage rounds like the scalar conversions", "[safetensors]") {
  Tensor<float, 1> t({6}, std::vector<float>{0.1f, -1.0f / 3.0f, 70000.0f, 1e-8f, 3.14159f, -0.0f});
  for (dtype stored : {dtype::f16, dtype::bf16}) {
    SafeTensorsWriter writer;
    writer.add("t", t, stored);
    const auto loaded = SafeTensorsFile::parse(writer.to_bytes(), "x").load_float<1>("t");
    for (index_t i = 0; i < t.size(); ++i) {
      const float v = t.data()[i];
      const float expected = stored == dtype::f16 ? lsattn::half_to_float(lsattn::float_to_half(v))
                                                  : lsattn::bfloat16_to_float(lsattn::float_to_bfloat16(v));
      CHECK(to_bits(loaded.data()[i]) == to_bits(expected));
    }
  }
}

TEST_CASE("a mixed file keeps names, infos and metadata, and its layout is aligned", "[safetensors]") {
  const std::vector<std::uint8_t> bytes = sample_file();
  const SafeTensorsFile file = SafeTensorsFile::parse(bytes, "sample.safetensors");
  CHECK(file.source() == "sample.safetensors");
  CHECK(file.names() == std::vector<std::string>{"a", "b", "c", "d", "e", "s"});
  CHECK(file.contains("a"));
  CHECK_FALSE(file.contains("z"));
  CHECK(file.metadata() == std::map<std::string, std::string>{{"format", "pt"}});

  std::uint64_t header_size = 0;
  for (int i = 7; i >= 0; --i) header_size = (header_size << 8) | bytes[static_cast<std::size_t>(i)];
  CHECK(header_size % 8 == 0);
  CHECK(bytes[8] == '{');
  for (const std::string& name : file.names()) {
    const auto& info = file.info(name);
    CHECK(info.name == name);
    CHECK(info.data_begin % lsattn::io::dtype_size(info.type) == 0);
  }
  CHECK(file.info("b").type == dtype::f16);
  CHECK(file.info("c").type == dtype::bf16);
  CHECK(file.info("d").type == dtype::i64);
  CHECK(file.info("c").shape == std::vector<index_t>{2, 1, 3});
  CHECK(file.info("s").shape.empty());

  CHECK(file.load_float<0>("s")() == 42.0f);
  CHECK(file.load_float<2>("a", {3, 4})(2, 3) == 0.5f * 11 - 2.0f);
  CHECK(file.load_float<1>("b").values() == std::vector<float>(5, 1.25f));
  CHECK(file.load_float<3>("c").values() == std::vector<float>(6, -3.0f));
  CHECK(file.load_int64<1>("d").values() == std::vector<std::int64_t>{-7, 0, 1ll << 40});
  CHECK(file.load_float<2>("e", {0, 3}).size() == 0);
}

TEST_CASE("metadata round-trips, including unusual strings", "[safetensors]") {
  SafeTensorsWriter writer;
  writer.set_metadata("empty", "");
  writer.set_metadata("quotes", "say \"hi\"\n\t\\ and \xc3\xa9");
  writer.set_metadata("key", "first");
  writer.set_metadata("key", "second");  // replaces
  const SafeTensorsFile file = SafeTensorsFile::parse(writer.to_bytes(), "m");
  CHECK(file.names().empty());
  CHECK(file.metadata() == std::map<std::string, std::string>{
                               {"empty", ""}, {"quotes", "say \"hi\"\n\t\\ and \xc3\xa9"}, {"key", "second"}});

  SafeTensorsWriter no_metadata;
  no_metadata.add("x", Tensor<float, 1>({1}, 1.0f));
  CHECK(SafeTensorsFile::parse(no_metadata.to_bytes(), "m").metadata().empty());
}

TEST_CASE("BOOL tensors load as 0/1 and reject other bytes", "[safetensors]") {
  const auto bytes = make_file("{" + entry("mask", "BOOL", "[2, 2]", 0, 4) + "}", {1, 0, 0, 1});
  const SafeTensorsFile file = SafeTensorsFile::parse(bytes, kSource);
  CHECK(file.info("mask").type == dtype::boolean);
  CHECK(file.load_numeric<2>("mask").values() == std::vector<float>{1, 0, 0, 1});
  CHECK(file.load_int64<2>("mask").values() == std::vector<std::int64_t>{1, 0, 0, 1});

  const auto bad = SafeTensorsFile::parse(make_file("{" + entry("mask", "BOOL", "[3]", 0, 3) + "}", {0, 1, 2}), kSource);
  const std::string message = error_of([&] { bad.load_numeric<1>("mask"); });
  CHECK_THAT(message, Contains("'mask'") && Contains("byte 2") && Contains(kSource));
  CHECK_THROWS_AS(bad.load_int64<1>("mask"), lsattn::error);
}

TEST_CASE("load_float refuses I64 and BOOL, load_numeric converts any dtype", "[safetensors]") {
  // Weights and activations stored as integers are a broken export: a silent cast hid it.
  const auto bytes = make_file("{" + entry("ids", "I64", "[2]", 0, 16) + ", " + entry("mask", "BOOL", "[2]", 16, 18) +
                                   ", " + entry("half", "F16", "[1]", 18, 20) + "}",
                               {7, 0, 0, 0, 0, 0, 0, 0, 0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 1, 0, 0x00, 0x3c});
  const SafeTensorsFile file = SafeTensorsFile::parse(bytes, kSource);
  for (const char* name : {"ids", "mask"}) {
    const std::string type = name == std::string("ids") ? "I64" : "BOOL";
    for (const auto& message : {error_of([&] { file.load_float<1>(name); }),
                                error_of([&] { file.load_float<1>(name, Shape<1>{2}); })}) {
      CHECK_THAT(message, Contains(kSource) && Contains(std::string("'") + name + "'") && Contains("dtype " + type) &&
                              Contains("F32, F16 or BF16"));
    }
  }
  CHECK(file.load_numeric<1>("ids").values() == std::vector<float>{7, -2});
  CHECK(file.load_numeric<1>("mask").values() == std::vector<float>{1, 0});
  CHECK(file.load_numeric<1>("half").values() == std::vector<float>{1});
  CHECK(file.load_float<1>("half").values() == std::vector<float>{1});
  CHECK_THAT(error_of([&] { file.load_numeric<2>("ids"); }), Contains("'ids'") && Contains("expected rank 2"));
}

TEST_CASE("hand-written files with unpadded headers and no tensors parse", "[safetensors]") {
  CHECK(SafeTensorsFile::parse(make_file("{}"), kSource).names().empty());
  CHECK(SafeTensorsFile::parse(make_file("  {  }\n  "), kSource).names().empty());
  const auto bytes = make_file("{" + entry("x", "F32", "[]", 0, 4) + "}", {0, 0, 0x80, 0x3f});
  CHECK(SafeTensorsFile::parse(bytes, kSource).load_float<0>("x")() == 1.0f);
  // Unaligned tensors (odd header size, F16 before F32) still load correctly via memcpy.
  const auto odd = make_file("{" + entry("h", "F16", "[1]", 0, 2) + ", " + entry("f", "F32", "[1]", 2, 6) + "}",
                             {0x00, 0x3c, 0x00, 0x00, 0x00, 0xc0});
  const SafeTensorsFile file = SafeTensorsFile::parse(odd, kSource);
  CHECK(file.load_float<1>("h")(0) == 1.0f);
  CHECK(file.load_float<1>("f")(0) == -2.0f);
}

TEST_CASE("write and open through the file system", "[safetensors]") {
  const auto path = (std::filesystem::temp_directory_path() / "lsattn_test_safetensors.safetensors").string();
  SafeTensorsWriter writer;
  writer.add("w", counting_tensor(Shape<2>{4, 3}), dtype::bf16);
  writer.set_metadata("note", "disk");
  writer.write(path);
  const SafeTensorsFile file = SafeTensorsFile::open(path);
  CHECK(file.source() == path);
  CHECK(file.metadata().at("note") == "disk");
  CHECK(file.load_float<2>("w", {4, 3}).values() == counting_tensor(Shape<2>{4, 3}).values());
  std::filesystem::remove(path);

  CHECK_THAT(error_of([&] { SafeTensorsFile::open(path); }), Contains(path));
  const std::string bad_path = "/nonexistent-dir-lsattn/x.safetensors";
  CHECK_THAT(error_of([&] { writer.write(bad_path); }), Contains(bad_path));
  CHECK_THROWS_AS(SafeTensorsFile::open(std::filesystem::temp_directory_path().string()), lsattn::error);
}

// ----------------------------------------------------------------------------------------------
// Atomic writes

namespace {

namespace fs = std::filesystem;

// A fresh, empty directory for one test.
fs::path empty_directory(const std::string& name) {
  const fs::path directory = fs::temp_directory_path() / ("lsattn_test_safetensors_" + name);
  fs::remove_all(directory);
  fs::create_directories(directory);
  return directory;
}

std::vector<char> file_bytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::vector<std::string> directory_entries(const fs::path& directory) {
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(directory)) names.push_back(entry.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

SafeTensorsWriter writer_of(index_t elements, float value) {
  SafeTensorsWriter writer;
  writer.add("x", Tensor<float, 1>({elements}, value));
  return writer;
}

}  // namespace

TEST_CASE("a write that fails half-way leaves the previous file byte-identical and no temporary",
          "[safetensors][write]") {
  const fs::path directory = empty_directory("half_way");
  const fs::path path = directory / "out.safetensors";
  writer_of(16, 1.0f).write(path.string());
  const std::vector<char> previous = file_bytes(path);

  // In a child: a file size limit of 64 KiB (SIGXFSZ ignored, so write() fails with EFBIG)
  // under a 256 KiB file, so the write stops half-way; the error message comes back by a pipe.
  const SafeTensorsWriter large = writer_of(1 << 16, 2.0f);
  int message_pipe[2];
  REQUIRE(::pipe(message_pipe) == 0);
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    ::close(message_pipe[0]);
    ::signal(SIGXFSZ, SIG_IGN);
    const rlimit limit{64 << 10, 64 << 10};
    std::string message = "no error";
    if (::setrlimit(RLIMIT_FSIZE, &limit) != 0) {
      message = "setrlimit failed";
    } else {
      try {
        large.write(path.string());
      } catch (const lsattn::error& e) {
        message = e.what();
      }
    }
    const ssize_t written = ::write(message_pipe[1], message.data(), message.size());
    ::_exit(written == static_cast<ssize_t>(message.size()) ? 0 : 1);
  }
  ::close(message_pipe[1]);
  std::string message;
  char buffer[512];
  for (ssize_t n; (n = ::read(message_pipe[0], buffer, sizeof buffer)) > 0;) message.append(buffer, static_cast<std::size_t>(n));
  ::close(message_pipe[0]);
  int status = 0;
  REQUIRE(::waitpid(child, &status, 0) == child);
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);

  CHECK_THAT(message, Contains(path.string()) && Contains("File too large") && Contains("temporary file"));
  CHECK(file_bytes(path) == previous);
  CHECK(directory_entries(directory) == std::vector<std::string>{"out.safetensors"});
  // Without the limit the same write replaces the file completely.
  large.write(path.string());
  CHECK(SafeTensorsFile::open(path.string()).load_float<1>("x").values() == std::vector<float>(1 << 16, 2.0f));
  CHECK(directory_entries(directory) == std::vector<std::string>{"out.safetensors"});
}

TEST_CASE("write errors name the path and the reason, and leave nothing behind", "[safetensors][write]") {
  const SafeTensorsWriter writer = writer_of(4, 1.0f);
  const std::string missing_directory = "/nonexistent-dir-lsattn/sub/out.safetensors";
  CHECK_THAT(error_of([&] { writer.write(missing_directory); }),
             Contains("'" + missing_directory + "'") && Contains("'/nonexistent-dir-lsattn/sub'") &&
                 Contains("No such file or directory"));

  // A directory where the file should go: the rename fails, the directory and its content stay.
  const fs::path directory = empty_directory("target_is_directory");
  fs::create_directory(directory / "out.safetensors");
  std::ofstream(directory / "out.safetensors" / "keep.txt") << "keep";
  CHECK_THAT(error_of([&] { writer.write((directory / "out.safetensors").string()); }),
             Contains((directory / "out.safetensors").string()) && Contains("renaming"));
  CHECK(fs::is_directory(directory / "out.safetensors"));
  CHECK(directory_entries(directory) == std::vector<std::string>{"out.safetensors"});
  CHECK(directory_entries(directory / "out.safetensors") == std::vector<std::string>{"keep.txt"});
}

TEST_CASE("a written file has the mode of a plain create (0666 & ~umask), not 0600", "[safetensors][write]") {
  const fs::path directory = empty_directory("mode");
  for (const mode_t mask : {mode_t{022}, mode_t{027}, mode_t{002}}) {
    CAPTURE(mask);
    const mode_t previous_mask = ::umask(mask);
    const fs::path path = directory / ("out" + std::to_string(mask) + ".safetensors");
    writer_of(4, 1.0f).write(path.string());
    writer_of(4, 2.0f).write(path.string());  // replacing gives the same mode
    ::umask(previous_mask);
    struct stat status {};
    REQUIRE(::stat(path.c_str(), &status) == 0);
    CHECK((status.st_mode & 07777) == (0666 & ~mask));
  }
}

TEST_CASE("writing through a symbolic link replaces the file it points to", "[safetensors][write]") {
  const fs::path directory = empty_directory("symlink");
  fs::create_directory(directory / "store");
  writer_of(4, 1.0f).write((directory / "store" / "real.safetensors").string());
  fs::create_symlink("store/real.safetensors", directory / "link.safetensors");
  writer_of(3, 5.0f).write((directory / "link.safetensors").string());
  CHECK(fs::is_symlink(fs::symlink_status(directory / "link.safetensors")));
  CHECK(SafeTensorsFile::open((directory / "store" / "real.safetensors").string()).load_float<1>("x").values() ==
        std::vector<float>(3, 5.0f));
  CHECK(directory_entries(directory) == std::vector<std::string>{"link.safetensors", "store"});
  CHECK(directory_entries(directory / "store") == std::vector<std::string>{"real.safetensors"});
}

TEST_CASE("the exported LRA fixtures parse", "[safetensors]") {
  const std::string path = "test/data/lra/basic/input.safetensors";
  if (!std::filesystem::exists(path)) {
    WARN("run from the repository root to read " << path);
    return;
  }
  const SafeTensorsFile file = SafeTensorsFile::open(path);
  CHECK(file.names() == std::vector<std::string>{"input.mask", "input.x"});
  CHECK(file.load_float<3>("input.x", {2, 16, 16}).size() == 512);
}

TEST_CASE("writer rejects bad input", "[safetensors]") {
  SafeTensorsWriter writer;
  writer.add("x", Tensor<float, 1>({2}));
  CHECK_THAT(error_of([&] { writer.add("x", Tensor<float, 1>({2})); }), Contains("'x'") && Contains("already"));
  CHECK_THAT(error_of([&] { writer.add("__metadata__", Tensor<float, 1>({2})); }), Contains("reserved"));
  CHECK_THAT(error_of([&] { writer.add("y", Tensor<float, 1>({2}), dtype::i64); }), Contains("'y'") && Contains("I64"));
  Tensor<float, 1> broken({3});
  broken.values().pop_back();  // values no longer fill the shape
  CHECK_THAT(error_of([&] { writer.add("z", broken); }), Contains("'z'") && Contains("(3)"));
  SafeTensorsWriter bad_utf8;
  bad_utf8.add("\xff", Tensor<float, 1>({1}));
  CHECK_THAT(error_of([&] { bad_utf8.to_bytes(); }), Contains("UTF-8"));
}

// ----------------------------------------------------------------------------------------------
// Validation errors on hand-built files

TEST_CASE("files shorter than the length field", "[safetensors][validation]") {
  for (std::size_t n = 0; n < 8; ++n) {
    const std::string message = parse_error(zeros(n));
    CHECK_THAT(message, Contains(kSource) && Contains(std::to_string(n) + " bytes") && Contains("shorter"));
  }
}

TEST_CASE("header length larger than the file", "[safetensors][validation]") {
  auto bytes = make_file("{}");
  bytes[0] = 100;  // claims 100 header bytes, 2 follow
  CHECK_THAT(parse_error(bytes), Contains(kSource) && Contains("header length 100") && Contains(" 2 bytes"));
  // A length near 2^64 must not wrap around when added to 8.
  for (int i = 0; i < 8; ++i) bytes[static_cast<std::size_t>(i)] = 0xff;
  CHECK_THAT(parse_error(bytes), Contains("18446744073709551615"));
  std::fill(bytes.begin(), bytes.begin() + 8, 0);
  bytes[0] = 0xf8;
  bytes[7] = 0xff;  // 2^64 - 8 + ...: also must not wrap
  CHECK_THROWS_AS(SafeTensorsFile::parse(bytes, kSource), lsattn::error);
}

TEST_CASE("header that is not JSON or not an object", "[safetensors][validation]") {
  CHECK_THAT(parse_error(make_file("")), Contains(kSource) && Contains("not valid JSON"));
  CHECK_THAT(parse_error(make_file("{\"a\": ")), Contains("not valid JSON"));
  CHECK_THAT(parse_error(make_file("{} trailing")), Contains("not valid JSON"));
  CHECK_THAT(parse_error(make_file("{\"\xff\": 1}")), Contains("not valid JSON"));  // invalid UTF-8
  CHECK_THAT(parse_error(make_file(std::string("{\0}", 3))), Contains("not valid JSON"));
  CHECK_THAT(parse_error(make_file("[1, 2]")), Contains("array") && Contains("expected an object"));
  CHECK_THAT(parse_error(make_file("\"x\"")), Contains("string"));
  CHECK_THAT(parse_error(make_file("null")), Contains("null"));
  // Deep nesting neither overflows the stack nor hangs.
  const std::string deep = "{\"a\": " + std::string(100000, '[') + std::string(100000, ']') + "}";
  CHECK_THAT(parse_error(make_file(deep)), Contains("'a'") && Contains("must be an object"));
  CHECK_THROWS_AS(SafeTensorsFile::parse(make_file(std::string(100000, '[')), kSource), lsattn::error);
}

TEST_CASE("tensor entries that are not objects or miss fields", "[safetensors][validation]") {
  CHECK_THAT(parse_error(make_file("{\"w\": 5}")), Contains(kSource) && Contains("'w'") && Contains("must be an object"));
  CHECK_THAT(parse_error(make_file("{\"w\": [1, 2]}")), Contains("'w'") && Contains("[1, 2]"));
  CHECK_THAT(parse_error(make_file(R"({"w": {"shape": [1], "data_offsets": [0, 4]}})", zeros(4))),
             Contains("'w'") && Contains("\"dtype\""));
  CHECK_THAT(parse_error(make_file(R"({"w": {"dtype": "F32", "data_offsets": [0, 4]}})", zeros(4))),
             Contains("'w'") && Contains("\"shape\""));
  CHECK_THAT(parse_error(make_file(R"({"w": {"dtype": "F32", "shape": [1]}})", zeros(4))),
             Contains("'w'") && Contains("\"data_offsets\""));
  CHECK_THAT(parse_error(make_file(R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, "w": 1})", zeros(4))),
             Contains("'w'") && Contains("more than once"));
}

TEST_CASE("unknown or malformed dtype", "[safetensors][validation]") {
  const std::string message = parse_error(make_file("{" + entry("w", "F64", "[1]", 0, 8) + "}", zeros(8)));
  CHECK_THAT(message, Contains(kSource) && Contains("'w'") && Contains("\"F64\"") &&
                          Contains("F32, F16, BF16, I64, BOOL"));
  CHECK_THAT(parse_error(make_file("{" + entry("w", "f32", "[1]", 0, 4) + "}", zeros(4))), Contains("\"f32\""));
  CHECK_THAT(parse_error(make_file(R"({"w": {"dtype": 4, "shape": [1], "data_offsets": [0, 4]}})", zeros(4))),
             Contains("'w'") && Contains("\"dtype\" must be a string"));
}

TEST_CASE("shape that is not an array of non-negative integers", "[safetensors][validation]") {
  for (const std::string shape : {"5", "\"2\"", "[-1]", "[2.5]", "[2.0]", "[\"2\"]", "[[2]]", "[null]", "[1e30]",
                                  "[99999999999999999999999]", "{}"}) {
    CAPTURE(shape);
    const std::string message = parse_error(make_file("{" + entry("w", "F32", shape, 0, 4) + "}", zeros(4)));
    CHECK_THAT(message, Contains(kSource) && Contains("'w'") && Contains("\"shape\""));
  }
  CHECK_THAT(parse_error(make_file("{" + entry("w", "F32", "[2, -3]", 0, 4) + "}", zeros(4))), Contains("[2, -3]"));
}

TEST_CASE("shape products that overflow are caught, not wrapped", "[safetensors][validation]") {
  // 2^32 * 2^32 * 4 bytes wraps to 0 in 64 bits and would match data_offsets [0, 0].
  CHECK_THAT(parse_error(make_file("{" + entry("w", "F32", "[4294967296, 4294967296]", 0, 0) + "}")),
             Contains("'w'") && Contains("too many elements"));
  // 2^62 elements fit in index_t, but 2^62 * 4 bytes wraps to 0.
  CHECK_THAT(parse_error(make_file("{" + entry("w", "F32", "[4611686018427387904]", 0, 0) + "}")),
             Contains("'w'") && Contains("more bytes than fit"));
  // A zero extent makes the tensor empty, but the other extents must still not overflow index_t.
  CHECK_THAT(parse_error(make_file("{" + entry("w", "F32", "[4611686018427387904, 4, 0]", 0, 0) + "}")),
             Contains("too many elements"));
  CHECK_THAT(parse_error(make_file("{" + entry("w", "F32", "[9223372036854775808]", 0, 0) + "}")),
             Contains("too many elements"));
  // Empty with large-but-representable extents is fine.
  const auto file = SafeTensorsFile::parse(make_file("{" + entry("w", "F32", "[0, 4611686018427387904]", 0, 0) + "}"),
                                           kSource);
  CHECK(file.load_float<2>("w").size() == 0);
}

TEST_CASE("data_offsets that are malformed or out of range", "[safetensors][validation]") {
  for (const std::string offsets : {"4", "[]", "[0]", "[0, 4, 8]", "[-1, 4]", "[0, -4]", "[0.0, 4]", "[\"0\", 4]",
                                    "[0, 1e2]", "{\"a\": 0}", "null"}) {
    CAPTURE(offsets);
    const std::string header = R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": )" + offsets + "}}";
    CHECK_THAT(parse_error(make_file(header, zeros(4))), Contains(kSource) && Contains("'w'") && Contains("data_offsets"));
  }
  CHECK_THAT(parse_error(make_file("{" + entry("w", "F32", "[1]", 8, 4) + "}", zeros(8))),
             Contains("'w'") && Contains("[8, 4]") && Contains("begin > end"));
  CHECK_THAT(parse_error(make_file("{" + entry("w", "F32", "[2]", 0, 8) + "}", zeros(4))),
             Contains("'w'") && Contains("[0, 8]") && Contains("data section of 4 bytes"));
  CHECK_THAT(parse_error(make_file("{" + entry("w", "F32", "[1]", 0, 18446744073709551615ull) + "}", zeros(4))),
             Contains("18446744073709551615"));
}

TEST_CASE("byte length that does not match shape and dtype", "[safetensors][validation]") {
  CHECK_THAT(parse_error(make_file("{" + entry("w", "F32", "[2]", 0, 4) + "}", zeros(4))),
             Contains(kSource) && Contains("'w'") && Contains("4 bytes") && Contains("needs 8 bytes") && Contains("(2)"));
  CHECK_THAT(parse_error(make_file("{" + entry("w", "F16", "[2, 3]", 0, 8) + "}", zeros(8))),
             Contains("(2, 3)") && Contains("F16") && Contains("needs 12 bytes"));
  CHECK_THAT(parse_error(make_file("{" + entry("w", "I64", "[0]", 0, 8) + "}", zeros(8))), Contains("needs 0 bytes"));
}

TEST_CASE("overlapping tensors", "[safetensors][validation]") {
  const std::string message = parse_error(
      make_file("{" + entry("a", "F32", "[2]", 0, 8) + ", " + entry("b", "F32", "[2]", 4, 12) + "}", zeros(12)));
  CHECK_THAT(message, Contains(kSource) && Contains("'a'") && Contains("'b'") && Contains("overlap"));
  // The same bytes claimed twice.
  CHECK_THAT(parse_error(make_file("{" + entry("a", "F32", "[1]", 0, 4) + ", " + entry("b", "F32", "[1]", 0, 4) + "}",
                                   zeros(4))),
             Contains("overlap"));
  // An empty tensor placed inside another one.
  CHECK_THAT(parse_error(make_file("{" + entry("a", "F32", "[2]", 0, 8) + ", " + entry("z", "F32", "[0]", 4, 4) + "}",
                                   zeros(8))),
             Contains("'z'") && Contains("overlap"));
}

TEST_CASE("holes in the data section", "[safetensors][validation]") {
  CHECK_THAT(parse_error(make_file("{" + entry("a", "F32", "[1]", 0, 4) + ", " + entry("b", "F32", "[1]", 8, 12) + "}",
                                   zeros(12))),
             Contains(kSource) && Contains("[4, 8)") && Contains("'b'") && Contains("no tensor"));
  CHECK_THAT(parse_error(make_file("{" + entry("a", "F32", "[1]", 4, 8) + "}", zeros(8))), Contains("[0, 4)"));
  CHECK_THAT(parse_error(make_file("{" + entry("a", "F32", "[1]", 0, 4) + "}", zeros(6))),
             Contains("[4, 6)") && Contains("end of the data section"));
  CHECK_THAT(parse_error(make_file("{}", zeros(1))), Contains("[0, 1)"));
}

TEST_CASE("__metadata__ that is not an object of strings", "[safetensors][validation]") {
  CHECK_THAT(parse_error(make_file(R"({"__metadata__": 5})")), Contains(kSource) && Contains("__metadata__") && Contains("5"));
  CHECK_THAT(parse_error(make_file(R"({"__metadata__": ["a"]})")), Contains("__metadata__"));
  const std::string message = parse_error(make_file(R"({"__metadata__": {"ok": "x", "count": 3}})"));
  CHECK_THAT(message, Contains("__metadata__") && Contains("'count'") && Contains("3"));
  CHECK_THAT(parse_error(make_file(R"({"__metadata__": {"n": null}})")), Contains("'n'") && Contains("null"));
}

TEST_CASE("requesting a tensor that does not exist", "[safetensors][validation]") {
  const SafeTensorsFile file = SafeTensorsFile::parse(sample_file(), "sample.safetensors");
  for (const auto& message : {error_of([&] { file.info("missing"); }), error_of([&] { file.load_float<1>("missing"); }),
                              error_of([&] { file.load_int64<1>("missing"); }),
                              error_of([&] { file.load_float<2>("missing", {3, 4}); })}) {
    CHECK_THAT(message, Contains("'missing'") && Contains("sample.safetensors") && Contains("'a'"));
  }
}

TEST_CASE("load_float checks rank and shape, load_int64 checks dtype", "[safetensors][validation]") {
  const SafeTensorsFile file = SafeTensorsFile::parse(sample_file(), "sample.safetensors");
  CHECK_THAT(error_of([&] { file.load_float<3>("a"); }),
             Contains("sample.safetensors") && Contains("'a'") && Contains("rank 2") && Contains("expected rank 3") &&
                 Contains("(3, 4)"));
  CHECK_THAT(error_of([&] { file.load_float<1>("s"); }), Contains("'s'") && Contains("rank 0"));
  CHECK_THAT(error_of([&] { file.load_float<2>("a", {4, 3}); }),
             Contains("'a'") && Contains("shape (3, 4)") && Contains("expected (4, 3)"));
  CHECK_THAT(error_of([&] { file.load_int64<2>("a"); }), Contains("'a'") && Contains("F32"));
  CHECK_THAT(error_of([&] { file.load_int64<2>("d"); }), Contains("'d'") && Contains("rank 1"));
  CHECK(file.load_float<2>("a", {3, 4}).shape() == Shape<2>{3, 4});
}

// ----------------------------------------------------------------------------------------------
// Robustness

TEST_CASE("every truncation of a valid file is rejected", "[safetensors][fuzz]") {
  const std::vector<std::uint8_t> bytes = sample_file();
  REQUIRE_NOTHROW(SafeTensorsFile::parse(bytes, "full"));
  int accepted = 0;
  for (std::size_t length = 0; length < bytes.size(); ++length) {
    std::vector<std::uint8_t> prefix(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(length));
    try {
      SafeTensorsFile::parse(std::move(prefix), "truncated");
      ++accepted;
    } catch (const lsattn::error&) {
    }
  }
  CHECK(accepted == 0);
}

TEST_CASE("random mutations never crash: each file parses or throws lsattn::error", "[safetensors][fuzz]") {
  const std::vector<std::uint8_t> original = sample_file();
  std::uint64_t header_size = 0;
  for (int i = 7; i >= 0; --i) header_size = (header_size << 8) | original[static_cast<std::size_t>(i)];
  const std::string json_chars = "0123456789-+.eE,:[]{}\" \\ntfu";

  std::mt19937_64 rng(20240611);
  auto pick = [&](std::size_t n) { return static_cast<std::size_t>(rng() % n); };
  int parsed = 0, rejected = 0;
  for (int trial = 0; trial < 4000; ++trial) {
    std::vector<std::uint8_t> bytes = original;
    const std::size_t edits = 1 + pick(4);
    for (std::size_t e = 0; e < edits; ++e) {
      switch (pick(5)) {
        case 0: bytes[pick(bytes.size())] = static_cast<std::uint8_t>(rng()); break;  // any byte
        case 1: bytes[pick(bytes.size())] ^= static_cast<std::uint8_t>(1u << pick(8)); break;  // bit flip
        case 2: bytes[8 + pick(std::min<std::size_t>(header_size, bytes.size() - 8))] = static_cast<std::uint8_t>(json_chars[pick(json_chars.size())]); break;
        case 3: bytes[pick(8)] = static_cast<std::uint8_t>(rng()); break;  // header length
        case 4:                                                               // insert or drop a byte
          if (rng() & 1) bytes.insert(bytes.begin() + static_cast<std::ptrdiff_t>(pick(bytes.size())), static_cast<std::uint8_t>(rng()));
          else if (!bytes.empty()) bytes.erase(bytes.begin() + static_cast<std::ptrdiff_t>(pick(bytes.size())));
          break;
      }
      if (bytes.size() < 9) break;
    }
    try {
      const SafeTensorsFile file = SafeTensorsFile::parse(std::move(bytes), "mutated");
      load_everything(file);
      ++parsed;
    } catch (const lsattn::error&) {
      ++rejected;
    }
  }
  // Both outcomes occur, so the loop exercised the loaders as well as the validation.
  CHECK(parsed > 0);
  CHECK(rejected > 0);
  CHECK(parsed + rejected == 4000);
}
