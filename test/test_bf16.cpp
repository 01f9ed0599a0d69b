// Precision::bf16 on the CPU: the bf16 matrix product on every path this CPU can run against a
// float64 product of the same rounded operands; every model and kernel that takes bf16 against
// its float64 oracle within a documented bound (docs/testing.md, "The bf16 tests"); results
// independent of the thread count; the paths agreeing with each other; path selection errors.
//
// Paths: every path the CPU runs is tested; LSATTN_BF16_PATH (emulated | avx512_bf16 | amx) restricts
// the run to that one. A path the CPU cannot run is a WARN line, or a failure when
// LSATTN_REQUIRE_BF16_PATHS (comma-separated path names, or "all") lists it.
#include <catch2/catch.hpp>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "lsattn/baseline/full_attention.hpp"
#include "lsattn/lsattn.hpp"
#include "oracle_conversions.hpp"

namespace {

using Catch::Matchers::Contains;
using lsattn::Bf16Path;
using lsattn::HostView;
using lsattn::index_t;
using lsattn::Precision;
using lsattn::Shape;
using lsattn::Tensor;
using test_helpers::cast_weights;
using test_helpers::flat;
using test_helpers::to_matrix;
using test_helpers::to_oracle;
namespace lra = lsattn::models::lra;
namespace ls = lsattn::models::ls_heads;
namespace causal = lsattn::models::causal;
namespace vision = lsattn::models::vision;
namespace cpu_detail = lsattn::cpu_detail;

constexpr Bf16Path every_path[] = {Bf16Path::emulated, Bf16Path::avx512_bf16, Bf16Path::amx};

// ---------------------------------------------------------------------------------------------
// Which paths run, and the environment switches

// Sets an environment variable for one scope and restores what was there (or its absence). The
// library reads its path variables once, so every change is followed by a reset of both choices.
class ScopedEnvironment {
 public:
  explicit ScopedEnvironment(std::string name) : name_(std::move(name)) {
    if (const char* value = std::getenv(name_.c_str())) saved_ = value;
  }
  ScopedEnvironment(const ScopedEnvironment&) = delete;
  ScopedEnvironment& operator=(const ScopedEnvironment&) = delete;
  ~ScopedEnvironment() {
    if (saved_) ::setenv(name_.c_str(), saved_->c_str(), 1);
    else ::unsetenv(name_.c_str());
    reread();
  }
  void set(const char* value) const {
    ::setenv(name_.c_str(), value, 1);
    reread();
  }
  void unset() const {
    ::unsetenv(name_.c_str());
    reread();
  }

 private:
  static void reread() {
    lsattn::reset_bf16_path();
    lsattn::reset_fp32_path();
  }
  std::string name_;
  std::optional<std::string> saved_;
};

// A path under test; amx with emulated_tiles: its kernel on the scalar model of the tile
// instructions (cpu_detail::EmulatedAmxTiles), on a CPU without AMX.
struct TestedPath {
  Bf16Path path = Bf16Path::emulated;
  bool emulated_tiles = false;
};

std::string name_of(TestedPath tested) {
  return std::string(lsattn::bf16_path_name(tested.path)) + (tested.emulated_tiles ? " (emulated tiles)" : "");
}

// Forces a path for one scope; back to the default (LSATTN_BF16_PATH or the fastest), and to
// the hardware tiles, after.
struct ForcedPath {
  explicit ForcedPath(TestedPath tested) {
    cpu_detail::amx_tiles_emulated() = tested.emulated_tiles;
    lsattn::set_bf16_path(tested.path);
  }
  explicit ForcedPath(Bf16Path path) : ForcedPath(TestedPath{path}) {}
  ForcedPath(const ForcedPath&) = delete;
  ForcedPath& operator=(const ForcedPath&) = delete;
  ~ForcedPath() {
    lsattn::reset_bf16_path();
    cpu_detail::amx_tiles_emulated() = false;
  }
};

// LSATTN_REQUIRE_BF16_PATHS: path names separated by commas (spaces ignored), or "all".
struct RequiredPaths {
  std::vector<Bf16Path> paths;
  std::vector<std::string> unknown;
  bool requires_path(Bf16Path path) const { return std::find(paths.begin(), paths.end(), path) != paths.end(); }
};

RequiredPaths parse_required_paths(std::string_view list) {
  RequiredPaths required;
  while (!list.empty()) {
    const std::size_t comma = std::min(list.find(','), list.size());
    std::string name(list.substr(0, comma));
    list.remove_prefix(std::min(comma + 1, list.size()));
    name.erase(std::remove(name.begin(), name.end(), ' '), name.end());
    if (name.empty()) continue;
    if (name == "all") {
      required.paths.assign(std::begin(every_path), std::end(every_path));
    } else if (name == "emulated" || name == "avx512_bf16" || name == "amx") {
      required.paths.push_back(name == "emulated" ? Bf16Path::emulated : name == "amx" ? Bf16Path::amx : Bf16Path::avx512_bf16);
    } else {
      required.unknown.push_back(name);
    }
  }
  return required;
}

const char* name_of(Bf16Path path) { return lsattn::bf16_path_name(path); }

// Whether the amx kernel can run on emulated tiles here (its packing needs avx512_bf16).
bool amx_emulation_available() {
  cpu_detail::amx_tiles_emulated() = true;
  const bool available = lsattn::bf16_path_available(Bf16Path::amx);
  cpu_detail::amx_tiles_emulated() = false;
  return available;
}

// The paths a test runs: every one this CPU can run, or only LSATTN_BF16_PATH's when it is set.
// Each path the CPU lacks is reported (WARN), or fails the test when it is required; amx, when
// not required, then runs on emulated tiles where it can.
std::vector<TestedPath> paths_under_test() {
  const char* list = std::getenv("LSATTN_REQUIRE_BF16_PATHS");
  const RequiredPaths required = parse_required_paths(list != nullptr ? list : "");
  for (const std::string& name : required.unknown)
    FAIL_CHECK("LSATTN_REQUIRE_BF16_PATHS: unknown path '" << name << "' (expected emulated, avx512_bf16, amx or all)");
  std::vector<TestedPath> paths;
  for (Bf16Path path : every_path) {
    if (lsattn::bf16_path_available(path)) {
      paths.push_back({path});
    } else if (required.requires_path(path)) {
      FAIL_CHECK("bf16 path " << name_of(path) << " not available on this CPU, but LSATTN_REQUIRE_BF16_PATHS ('"
                              << list << "') requires it");
    } else if (path == Bf16Path::amx && amx_emulation_available()) {
      WARN("bf16 path amx not available on this CPU: its kernel runs on emulated tiles");
      paths.push_back({path, /*emulated_tiles=*/true});
    } else {
      WARN("bf16 path " << name_of(path) << " not available on this CPU: skipped");
    }
  }
  const char* forced = std::getenv("LSATTN_BF16_PATH");
  if (forced != nullptr && *forced != '\0') {
    lsattn::reset_bf16_path();
    paths = {{lsattn::active_bf16_path()}};  // an unknown or unavailable name fails the test here
  }
  return paths;
}

bool measuring() { return std::getenv("LSATTN_BF16_MEASURE") != nullptr; }

// ---------------------------------------------------------------------------------------------
// matmul_bf16 against float64 products of the rounded operands

// bfloat16 rounding, written from the definition (not the library's): the float's top 16 bits,
// rounded to nearest on the 16 dropped bits, ties to even. Finite inputs only.
double bf16(float x) {
  std::uint32_t upper = std::bit_cast<std::uint32_t>(x) >> 16;
  const std::uint32_t dropped = std::bit_cast<std::uint32_t>(x) & 0xffffu;
  if (dropped > 0x8000u || (dropped == 0x8000u && (upper & 1u) != 0)) ++upper;
  return static_cast<double>(std::bit_cast<float>(upper << 16));
}

struct Product {
  index_t m = 0, k = 0, n = 0;
  index_t lda = 0, ldb = 0, ldc = 0;
  bool transposed = false, accumulate = false;
  // A (m × k, rows lda apart); B (k × n, rows ldb apart) or Bᵀ (n × k) when transposed.
  std::vector<float> a, b, c;
};

std::string describe(const Product& p) {
  std::ostringstream out;
  out << "m=" << p.m << " k=" << p.k << " n=" << p.n << " lda=" << p.lda << " ldb=" << p.ldb << " ldc=" << p.ldc
      << " transposed=" << p.transposed << " accumulate=" << p.accumulate;
  return out.str();
}

// Random operands of a few binary orders of magnitude. Padding beyond the widths is NaN in A and
// B, so that a product that reads it turns NaN, and a sentinel in C, which must stay untouched.
constexpr float c_padding = 12345.0f;

Product random_product(index_t m, index_t k, index_t n, index_t k_rows, bool transposed, bool accumulate,
                       std::mt19937_64& rng) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_int_distribution<int> exponent(-3, 3), pad(0, 5);
  Product p;
  p.m = m, p.k = k, p.n = n, p.transposed = transposed, p.accumulate = accumulate;
  p.lda = k + pad(rng), p.ldb = (transposed ? k_rows : n) + pad(rng), p.ldc = n + pad(rng);
  const float scale_a = std::ldexp(1.0f, exponent(rng)), scale_b = std::ldexp(1.0f, exponent(rng));
  const float nan = std::numeric_limits<float>::quiet_NaN();
  p.a.assign(static_cast<std::size_t>(m * p.lda), nan);
  for (index_t i = 0; i < m; ++i)
    for (index_t j = 0; j < k; ++j) p.a[i * p.lda + j] = scale_a * normal(rng);
  const index_t b_rows = transposed ? n : k_rows, b_cols = transposed ? k_rows : n;
  p.b.assign(static_cast<std::size_t>(b_rows * p.ldb), nan);
  for (index_t i = 0; i < b_rows; ++i)
    for (index_t j = 0; j < b_cols; ++j) p.b[i * p.ldb + j] = scale_b * normal(rng);
  p.c.assign(static_cast<std::size_t>(m * p.ldc), c_padding);
  for (index_t i = 0; i < m; ++i)
    for (index_t j = 0; j < n; ++j) p.c[i * p.ldc + j] = accumulate ? normal(rng) : std::nanf("");
  return p;
}

float b_at(const Product& p, index_t row, index_t col) {
  return p.transposed ? p.b[col * p.ldb + row] : p.b[row * p.ldb + col];
}

// Checks C (+)= A · B[k_begin.., n_begin..], against the float64 product of the rounded
// operands: |error| <= 1e-5 · (Σ|a||b| + |c₀|). Float sums of k <= 129 exact products stay
// below k · 2⁻²⁴ ≈ 8e-6 of that; one operand truncated instead of rounded would be ~1e-3.
void check_product(const Product& p, const std::vector<float>& c_before, const std::vector<float>& c_after,
                   index_t k_begin, index_t n_begin) {
  INFO(describe(p) << " k_begin=" << k_begin << " n_begin=" << n_begin);
  int failures = 0;
  for (index_t i = 0; i < p.m; ++i) {
    for (index_t j = 0; j < p.ldc; ++j) {
      const float got = c_after[i * p.ldc + j];
      if (j >= p.n) {
        if (got != c_padding && ++failures <= 3) FAIL_CHECK("C padding written at (" << i << ", " << j << ")");
        continue;
      }
      double want = p.accumulate ? c_before[i * p.ldc + j] : 0.0, magnitude = std::abs(want);
      for (index_t l = 0; l < p.k; ++l) {
        const double term = bf16(p.a[i * p.lda + l]) * bf16(b_at(p, k_begin + l, n_begin + j));
        want += term;
        magnitude += std::abs(term);
      }
      if (!(std::abs(got - want) <= 1e-5 * magnitude) && ++failures <= 3)
        FAIL_CHECK("C(" << i << ", " << j << ") = " << got << ", want " << want << " (scale " << magnitude << ")");
    }
  }
  CHECK(failures == 0);
}

// ---------------------------------------------------------------------------------------------
// Model comparisons: shared pieces

template <class Values>
double largest_magnitude(const Values& values) {
  double largest = 0;
  for (auto v : values) largest = std::max(largest, std::abs(static_cast<double>(v)));
  return largest;
}

// max |got − want| / max(1, max |want|): absolute for outputs of order one or less, relative above.
double model_error(const std::vector<float>& got, const std::vector<double>& want) {
  REQUIRE(got.size() == want.size());
  double worst = 0;
  for (std::size_t i = 0; i < got.size(); ++i) worst = std::max(worst, std::abs(got[i] - want[i]));
  return worst / std::max(1.0, largest_magnitude(want));
}

double model_difference(const std::vector<float>& got, const std::vector<float>& reference) {
  REQUIRE(got.size() == reference.size());
  double worst = 0;
  for (std::size_t i = 0; i < got.size(); ++i)
    worst = std::max(worst, std::abs(static_cast<double>(got[i]) - reference[i]));
  return worst / std::max(1.0, largest_magnitude(reference));
}

struct Picker {
  std::mt19937_64& rng;
  index_t operator()(std::initializer_list<int> options) const {
    return options.begin()[std::uniform_int_distribution<std::size_t>(0, options.size() - 1)(rng)];
  }
  bool coin() const { return (*this)({0, 1}) == 1; }
};

template <std::size_t Rank>
Tensor<float, Rank> normal_tensor(const Shape<Rank>& shape, std::mt19937_64& rng, double mean = 0.0, double sd = 1.0) {
  std::normal_distribution<double> normal(mean, sd);
  Tensor<float, Rank> t(shape);
  for (auto& v : t.values()) v = static_cast<float>(normal(rng));
  return t;
}

Tensor<float, 2> random_mask(index_t batch, index_t length, double drop, std::mt19937_64& rng) {
  Tensor<float, 2> mask(Shape<2>{batch, length}, 1.0f);
  std::bernoulli_distribution dropped(drop);
  for (auto& v : mask.values()) v = dropped(rng) ? 0.0f : 1.0f;
  return mask;
}

template <class T, std::size_t Rank>
HostView<const T, Rank> optional_view(const Tensor<T, Rank>& t) {
  return t.size() ? HostView<const T, Rank>(t.view()) : HostView<const T, Rank>{};
}

// Oracle rows of batch item b of a (B, L, D) tensor.
oracle::Matrix rows_of(const Tensor<float, 3>& t, index_t b) {
  oracle::Matrix m(t.extent(1), std::vector<double>(t.extent(2)));
  for (index_t i = 0; i < t.extent(1); ++i)
    for (index_t f = 0; f < t.extent(2); ++f) m[i][f] = t(b, i, f);
  return m;
}

void append(std::vector<double>& out, const oracle::Matrix& rows) {
  for (const auto& row : rows) out.insert(out.end(), row.begin(), row.end());
}

// ---------------------------------------------------------------------------------------------
// The variants. Each has cases() (awkward and random configurations), threads_cases() (large
// enough to split across threads), run(case, precision, threads) → the output values,
// oracle(case) → the float64 values, describe(case), and its bound on model_error.

// lra::AttentionLS: bf16 linears and bf16 block products of the bidirectional executor.
struct LraLayer {
  static constexpr double bound = 1.0 / 16;  // measured 0.0255: a LayerNorm over 4 features amplifies (see docs/testing.md)
  struct Case {
    lra::Config config;
    index_t batch = 1, length = 1;
    lra::Weights<float> weights;
    Tensor<float, 3> x, cls;
    Tensor<float, 2> mask;
  };

  static Case make(const lra::Config& config, index_t batch, index_t length, bool mask, bool cls_embed,
                   std::uint64_t seed) {
    std::mt19937_64 rng(seed);
    Case c{config, batch, length, lra::Weights<float>::random(config, seed), {}, {}, {}};
    c.x = normal_tensor(Shape<3>{batch, length, config.transformer_dim}, rng);
    if (cls_embed) c.cls = normal_tensor(Shape<3>{batch, 1, config.transformer_dim}, rng);
    if (mask) c.mask = random_mask(batch, length, 0.3, rng);
    return c;
  }

  static lra::Config config(index_t heads, index_t head_dim, index_t window, index_t rank, bool pooling = false) {
    return {.num_head = heads, .head_dim = head_dim, .transformer_dim = heads * head_dim, .window_size = window,
            .num_landmarks = rank, .cls_pooling = pooling};
  }

  static std::vector<Case> cases() {
    std::vector<Case> out;
    out.push_back(make(config(2, 4, 1, 2), 2, 9, true, false, 1));           // w = 1
    out.push_back(make(config(2, 4, 3, 2), 1, 10, true, true, 2));           // w does not divide L
    out.push_back(make(config(1, 8, 4, 0), 2, 13, true, false, 3));          // r = 0
    out.push_back(make(config(2, 4, 0, 3), 1, 20, true, false, 4));          // w = 0, r > 0
    out.push_back(make(config(2, 4, -1, 2), 1, 7, false, true, 5));          // w < 0, r > 0, cls
    out.push_back(make(config(2, 4, 4, 2), 2, 1, false, false, 6));          // one token
    out.push_back(make(config(2, 4, 4, 2, true), 2, 1 + 9, true, false, 7));  // cls pooling
    out.push_back(make(config(2, 4, 0, 0), 1, 6, true, true, 8));            // self-only, cls
    out.push_back(make(config(2, 16, 8, 8), 2, 200, true, true, 9));         // many blocks
    out.push_back(make(config(2, 32, 16, 32), 1, 257, true, false, 10));     // the published widths
    out.push_back(make(config(3, 40, 5, 3), 1, 70, true, false, 11));        // dh beyond one panel
    std::mt19937_64 rng(2026);
    const Picker pick{rng};
    while (out.size() < 50) {  // one draw per statement: the same cases with every compiler
      const index_t heads = pick({1, 2, 3}), head_dim = pick({1, 2, 4, 8});
      const index_t window = pick({-1, 0, 1, 2, 3, 4, 5, 7, 8, 16}), rank = pick({0, 1, 2, 3, 5});
      const bool pooling = pick({0, 0, 0, 1}) == 1;
      const bool cls_embed = !pooling && pick.coin();
      if (window <= 0 && rank == 0 && !cls_embed && !pooling) continue;
      const index_t length = pick({1, 2, 3, 5, 8, 9, 12, 16, 17, 23, 31, 40}) + (pooling ? 1 : 0);
      const index_t batch = pick({1, 2, 3});
      const bool mask = pick.coin();
      out.push_back(make(config(heads, head_dim, window, rank, pooling), batch, length, mask, cls_embed, 100 + out.size()));
    }
    return out;
  }

  static std::vector<Case> threads_cases() { return {make(config(4, 16, 16, 8), 3, 777, true, true, 21)}; }

  static std::vector<float> run(const Case& c, Precision precision, int threads) {
    lra::Config config = c.config;
    config.precision = precision;
    config.threads = threads;
    const lra::AttentionLS<lsattn::cpu, float> layer(config, c.weights);
    return layer.forward(c.x.view(), optional_view(c.mask), optional_view(c.cls)).values();
  }

  static std::vector<double> oracle(const Case& c) {
    const auto& cfg = c.config;
    const auto& w = c.weights;
    oracle::LraWeights ow{to_matrix(w.W_q_weight), to_matrix(w.W_k_weight), to_matrix(w.W_v_weight),
                          to_matrix(w.W_o_weight), {}, flat(w.W_q_bias), flat(w.W_k_bias), flat(w.W_v_bias),
                          flat(w.W_o_bias), {}, flat(w.dual_ln_s_weight), flat(w.dual_ln_s_bias),
                          flat(w.dual_ln_l_weight), flat(w.dual_ln_l_bias)};
    if (cfg.num_landmarks > 0) {
      ow.Wp = to_matrix(w.dconv_fc_weight);
      ow.bp = flat(w.dconv_fc_bias);
    }
    const oracle::LraConfig oc{int(cfg.num_head), int(cfg.head_dim), int(cfg.window_size), int(cfg.num_landmarks),
                               cfg.cls_pooling, true};
    std::vector<double> out;
    for (index_t b = 0; b < c.batch; ++b) {
      std::vector<bool> valid(c.length, true);
      for (index_t t = 0; t < c.length; ++t) valid[t] = c.mask.size() == 0 || c.mask(b, t) != 0;
      std::vector<double> cls;
      if (c.cls.size())
        for (index_t f = 0; f < cfg.transformer_dim; ++f) cls.push_back(c.cls(b, 0, f));
      append(out, oracle::lra_forward(oc, ow, rows_of(c.x, b), valid, c.cls.size() ? &cls : nullptr));
    }
    return out;
  }

  static std::string describe(const Case& c) {
    std::ostringstream out;
    out << "nh=" << c.config.num_head << " dh=" << c.config.head_dim << " w=" << c.config.window_size
        << " r=" << c.config.num_landmarks << " B=" << c.batch << " L=" << c.length << " mask=" << (c.mask.size() > 0)
        << " cls=" << (c.cls.size() > 0) << " pooling=" << c.config.cls_pooling;
    return out.str();
  }
};

// LongShortAttention<cpu, float> (the bidirectional functor) on its own projections: distinct
// queries, keys and values, so that a product with the wrong operand cannot pass.
struct BidirectionalFunctor {
  static constexpr double bound = 1.0 / 32;  // measured 0.0081
  struct Case {
    lsattn::AttentionConfig config;
    bool plain = false;  // PlainCombiner instead of DualLayerNorm
    index_t batch = 1, length = 1;
    Tensor<float, 3> query, key, value, logits, cls_query, cls_key, cls_value;
    Tensor<float, 2> mask;
    Tensor<float, 1> local_weight, local_bias, global_weight, global_bias;
  };

  static Case make(index_t heads, index_t head_dim, index_t window, index_t rank, bool plain, index_t batch,
                   index_t length, bool mask, bool cls, std::uint64_t seed) {
    std::mt19937_64 rng(seed);
    Case c;
    c.config.heads = heads;
    c.config.head_dim = head_dim;
    c.config.window_size = window;
    c.config.rank = rank;
    c.plain = plain, c.batch = batch, c.length = length;
    const index_t width = heads * head_dim;
    c.query = normal_tensor(Shape<3>{batch, length, width}, rng);
    c.key = normal_tensor(Shape<3>{batch, length, width}, rng);
    c.value = normal_tensor(Shape<3>{batch, length, width}, rng);
    if (rank > 0) c.logits = normal_tensor(Shape<3>{batch, length, heads * rank}, rng);
    if (cls) {
      c.cls_query = normal_tensor(Shape<3>{batch, 1, width}, rng);
      c.cls_key = normal_tensor(Shape<3>{batch, 1, width}, rng);
      c.cls_value = normal_tensor(Shape<3>{batch, 1, width}, rng);
    }
    if (mask) c.mask = random_mask(batch, length, 0.25, rng);
    c.local_weight = normal_tensor(Shape<1>{width}, rng, 1.0, 0.1);
    c.local_bias = normal_tensor(Shape<1>{width}, rng, 0.0, 0.1);
    c.global_weight = normal_tensor(Shape<1>{width}, rng, 1.0, 0.1);
    c.global_bias = normal_tensor(Shape<1>{width}, rng, 0.0, 0.1);
    return c;
  }

  static std::vector<Case> cases() {
    std::vector<Case> out;
    out.push_back(make(2, 4, 1, 2, false, 2, 9, true, false, 1));
    out.push_back(make(2, 4, 3, 0, false, 1, 10, true, true, 2));
    out.push_back(make(1, 8, 0, 3, true, 2, 20, true, false, 3));
    out.push_back(make(2, 4, -2, 2, false, 1, 7, false, true, 4));
    out.push_back(make(2, 4, 4, 2, true, 1, 1, false, false, 5));
    out.push_back(make(2, 4, 0, 0, false, 1, 6, true, true, 6));
    out.push_back(make(2, 32, 8, 16, false, 1, 300, true, true, 7));
    out.push_back(make(1, 40, 16, 4, true, 1, 130, true, false, 8));
    out.push_back(make(3, 33, 7, 5, false, 2, 64, true, true, 9));
    std::mt19937_64 rng(77);
    const Picker pick{rng};
    while (out.size() < 30) {
      const index_t window = pick({-1, 0, 1, 2, 3, 4, 5, 8, 16}), rank = pick({0, 1, 2, 5});
      const bool cls = pick.coin();
      if (window <= 0 && rank == 0 && !cls) continue;
      const index_t heads = pick({1, 2, 3}), head_dim = pick({1, 2, 4, 8});
      const bool plain = pick.coin();
      const index_t batch = pick({1, 2}), length = pick({1, 2, 5, 9, 16, 17, 31, 40});
      const bool mask = pick.coin();
      out.push_back(make(heads, head_dim, window, rank, plain, batch, length, mask, cls, 1000 + out.size()));
    }
    return out;
  }

  static std::vector<Case> threads_cases() { return {make(4, 16, 16, 8, false, 2, 600, true, true, 31)}; }

  static std::vector<float> run(const Case& c, Precision precision, int threads) {
    lsattn::AttentionConfig config = c.config;
    config.precision = precision;
    config.threads = threads;
    const lsattn::AttentionInputs<float> inputs{c.query.view(),       c.key.view(),
                                                c.value.view(),       optional_view(c.logits),
                                                optional_view(c.mask), optional_view(c.cls_query),
                                                optional_view(c.cls_key), optional_view(c.cls_value)};
    Tensor<float, 3> context(Shape<3>{c.batch, c.length + (c.cls_query.size() ? 1 : 0), config.width()});
    if (c.plain) {
      lsattn::LongShortAttention<lsattn::cpu, float, lsattn::BidirectionalWindow, lsattn::SequenceProjection,
                                 lsattn::PlainCombiner>
          attention(config);
      attention(inputs, {}, context.view());
    } else {
      lsattn::LongShortAttention<lsattn::cpu, float> attention(config);
      attention(inputs, {{c.local_weight.view(), c.local_bias.view()}, {c.global_weight.view(), c.global_bias.view()}},
                context.view());
    }
    return context.values();
  }

  // The LRA oracle on rows [q ‖ k ‖ v ‖ logits] with W_q, W_k, W_v and the projection selecting
  // their columns, identity W_o and zero biases.
  static std::vector<double> oracle(const Case& c) {
    const index_t heads = c.config.heads, head_dim = c.config.head_dim, rank = c.config.rank;
    const index_t width = heads * head_dim, logits = heads * rank, in = 3 * width + logits;
    auto selector = [&](index_t rows, index_t first) {
      oracle::Matrix m(rows, std::vector<double>(in, 0.0));
      for (index_t i = 0; i < rows; ++i) m[i][first + i] = 1.0;
      return m;
    };
    oracle::Matrix identity(width, std::vector<double>(width, 0.0));
    for (index_t i = 0; i < width; ++i) identity[i][i] = 1.0;
    const std::vector<double> zeros(width, 0.0);
    const oracle::LraWeights w{selector(width, 0), selector(width, width), selector(width, 2 * width), identity,
                               selector(logits, 3 * width), zeros, zeros, zeros, zeros,
                               std::vector<double>(logits, 0.0), flat(c.global_weight), flat(c.global_bias),
                               flat(c.local_weight), flat(c.local_bias)};
    const oracle::LraConfig oc{int(heads), int(head_dim), int(c.config.window_size), int(rank), false, !c.plain};
    auto row = [&](const Tensor<float, 3>& q, const Tensor<float, 3>& k, const Tensor<float, 3>& v, index_t b,
                   index_t t, bool with_logits) {
      std::vector<double> x;
      for (const Tensor<float, 3>* part : {&q, &k, &v})
        for (index_t f = 0; f < width; ++f) x.push_back((*part)(b, t, f));
      for (index_t f = 0; f < logits; ++f) x.push_back(with_logits ? c.logits(b, t, f) : 0.0);
      return x;
    };
    std::vector<double> out;
    for (index_t b = 0; b < c.batch; ++b) {
      oracle::Matrix x;
      std::vector<bool> valid(c.length, true);
      for (index_t t = 0; t < c.length; ++t) {
        x.push_back(row(c.query, c.key, c.value, b, t, true));
        valid[t] = c.mask.size() == 0 || c.mask(b, t) != 0;
      }
      std::vector<double> cls;
      if (c.cls_query.size()) cls = row(c.cls_query, c.cls_key, c.cls_value, b, 0, false);
      append(out, oracle::lra_forward(oc, w, x, valid, c.cls_query.size() ? &cls : nullptr));
    }
    return out;
  }

  static std::string describe(const Case& c) {
    std::ostringstream out;
    out << "nh=" << c.config.heads << " dh=" << c.config.head_dim << " w=" << c.config.window_size
        << " r=" << c.config.rank << " plain=" << c.plain << " B=" << c.batch << " L=" << c.length
        << " mask=" << (c.mask.size() > 0) << " cls=" << (c.cls_query.size() > 0);
    return out.str();
  }
};

// ls_heads::LsHeadsAttention: bf16 linears and the flash kernel's bf16 products.
struct LsHeads {
  static constexpr double bound = 1.0 / 32;  // measured 0.0087
  struct Case {
    ls::Config config;
    index_t batch = 1, length = 1;
    ls::Weights<float> weights;
    Tensor<float, 3> x;
    Tensor<float, 2> mask;
  };

  static Case make(ls::Config config, index_t batch, index_t length, bool mask, std::uint64_t seed) {
    std::mt19937_64 rng(seed);
    Case c{config, batch, length, ls::Weights<float>::random(config, seed), {}, {}};
    c.x = normal_tensor(Shape<3>{batch, length, config.dim}, rng);
    if (mask) c.mask = random_mask(batch, length, 0.2, rng);
    return c;
  }

  static std::vector<Case> cases() {
    std::vector<Case> out;
    out.push_back(make({.dim = 32, .num_heads = 2, .local_heads = {}, .window = 8, .causal = false}, 1, 600, true, 1));
    out.push_back(make({.dim = 32, .num_heads = 2, .local_heads = {}, .window = 8, .causal = true}, 1, 530, false, 2));
    out.push_back(make({.dim = 48, .num_heads = 3, .local_heads = {0, 2}, .window = 33, .causal = false}, 2, 300, true, 3));
    out.push_back(make({.dim = 16, .num_heads = 2, .local_heads = {1}, .window = 65, .causal = true}, 1, 300, true, 4));
    out.push_back(make({.dim = 8, .num_heads = 4, .local_heads = {0, 1, 2, 3}, .window = 1, .causal = false}, 2, 5, true, 5));
    std::mt19937_64 rng(31);
    const Picker pick{rng};
    while (out.size() < 35) {
      ls::Config c;
      c.num_heads = pick({1, 2, 4});
      c.dim = c.num_heads * pick({2, 8, 16});
      c.window = pick({1, 2, 3, 8, 33});
      c.causal = pick.coin();
      for (index_t h = 0; h < c.num_heads; ++h)
        if (pick.coin()) c.local_heads.push_back(h);
      const index_t batch = pick({1, 2}), length = pick({1, 5, 64, 65, 300});
      const bool mask = pick.coin();
      out.push_back(make(c, batch, length, mask, 100 + out.size()));
    }
    return out;
  }

  static std::vector<Case> threads_cases() {
    return {make({.dim = 64, .num_heads = 4, .local_heads = {1, 3}, .window = 40, .causal = false}, 2, 700, true, 41),
            make({.dim = 32, .num_heads = 2, .local_heads = {0}, .window = 16, .causal = true}, 1, 400, true, 42)};
  }

  static std::vector<float> run(const Case& c, Precision precision, int threads) {
    ls::Config config = c.config;
    config.precision = precision;
    config.threads = threads;
    return ls::LsHeadsAttention<lsattn::cpu, float>(config, c.weights).forward(c.x.view(), optional_view(c.mask)).values();
  }

  // Dense: per head, softmax over the keys it sees (local: a window of w keys, causal t−w+1…t or
  // centred t−(w−1)/2…t+w/2; global: all, or s <= t when causal) among the valid ones.
  static std::vector<double> oracle(const Case& c) {
    const auto& cfg = c.config;
    const int d = int(cfg.dim), heads = int(cfg.num_heads), head_dim = d / heads, length = int(c.length);
    const int w = int(cfg.window);
    const auto& wt = c.weights;
    std::vector<double> out;
    for (index_t b = 0; b < c.batch; ++b) {
      const oracle::Matrix x = rows_of(c.x, b);
      oracle::Matrix q(length), k(length), v(length), y(length, std::vector<double>(d, 0.0));
      for (int t = 0; t < length; ++t) {
        q[t] = oracle::linear(x[t], to_matrix(wt.W_q_weight), flat(wt.W_q_bias));
        k[t] = oracle::linear(x[t], to_matrix(wt.W_k_weight), flat(wt.W_k_bias));
        v[t] = oracle::linear(x[t], to_matrix(wt.W_v_weight), flat(wt.W_v_bias));
      }
      auto valid = [&](int s) { return c.mask.size() == 0 || c.mask(b, s) != 0; };
      for (int h = 0; h < heads; ++h) {
        const bool local = cfg.is_local(h);
        for (int t = 0; t < length; ++t) {
          if (!valid(t)) continue;  // padded queries: zero context
          std::vector<double> scores(length, -INFINITY);
          double top = -INFINITY;
          for (int s = 0; s < length; ++s) {
            const bool sees = local ? (cfg.causal ? s > t - w && s <= t : s >= t - (w - 1) / 2 && s <= t + w / 2)
                                    : (!cfg.causal || s <= t);
            if (!sees || !valid(s)) continue;
            scores[s] = oracle::dot_head(q[t], k[s], h, head_dim) / std::sqrt(double(head_dim));
            top = std::max(top, scores[s]);
          }
          if (top == -INFINITY) continue;
          double total = 0;
          for (double s : scores) total += std::exp(s - top);
          for (int s = 0; s < length; ++s) {
            if (scores[s] == -INFINITY) continue;
            const double p = std::exp(scores[s] - top) / total;
            for (int f = 0; f < head_dim; ++f) y[t][h * head_dim + f] += p * v[s][h * head_dim + f];
          }
        }
      }
      for (auto& row : y) row = oracle::linear(row, to_matrix(wt.W_o_weight), flat(wt.W_o_bias));
      append(out, y);
    }
    return out;
  }

  static std::string describe(const Case& c) {
    std::ostringstream out;
    out << "nh=" << c.config.num_heads << " dim=" << c.config.dim << " w=" << c.config.window
        << " causal=" << c.config.causal << " local=" << c.config.local_heads.size() << " B=" << c.batch
        << " L=" << c.length << " mask=" << (c.mask.size() > 0);
    return out.str();
  }
};

// baseline::full_attention: the flash kernel alone, bf16 scores and probability · value products.
struct FullAttention {
  static constexpr double bound = 1.0 / 64;  // measured 0.0064
  struct Case {
    index_t heads = 1, batch = 1, length = 1;
    bool causal = false;
    Tensor<float, 3> query, key, value;
    Tensor<float, 2> mask;
  };

  static Case make(index_t heads, index_t head_dim, index_t batch, index_t length, bool causal, bool mask,
                   std::uint64_t seed) {
    std::mt19937_64 rng(seed);
    const Shape<3> shape{batch, length, heads * head_dim};
    Case c{heads, batch, length, causal, normal_tensor(shape, rng), normal_tensor(shape, rng), normal_tensor(shape, rng), {}};
    if (mask) c.mask = random_mask(batch, length, 0.2, rng);
    return c;
  }

  static std::vector<Case> cases() {
    std::vector<Case> out;
    std::mt19937_64 rng(5);
    const Picker pick{rng};
    for (bool causal : {false, true})
      for (index_t length : {1, 2, 31, 64, 65, 257, 300, 530}) {
        const index_t heads = pick({1, 2, 4}), head_dim = pick({1, 8, 16, 33}), batch = pick({1, 2});
        const bool mask = pick.coin();
        out.push_back(make(heads, head_dim, batch, length, causal, mask, 10 + out.size()));
      }
    return out;
  }

  static std::vector<Case> threads_cases() { return {make(4, 16, 2, 600, false, true, 51), make(2, 32, 1, 700, true, false, 52)}; }

  static std::vector<float> run(const Case& c, Precision precision, int threads) {
    Tensor<float, 3> context(c.query.shape());
    lsattn::baseline::full_attention<float>(c.heads, c.query.view(), c.key.view(), c.value.view(), optional_view(c.mask),
                                            context.view(), threads, c.causal, precision);
    return context.values();
  }

  static std::vector<double> oracle(const Case& c) {
    const index_t width = c.query.extent(2), head_dim = width / c.heads;
    std::vector<double> out;
    for (index_t b = 0; b < c.batch; ++b) {
      const oracle::Matrix q = rows_of(c.query, b), k = rows_of(c.key, b), v = rows_of(c.value, b);
      oracle::Matrix y(c.length, std::vector<double>(width, 0.0));
      for (index_t h = 0; h < c.heads; ++h)
        for (index_t t = 0; t < c.length; ++t) {
          std::vector<double> scores(c.length, -INFINITY);
          double top = -INFINITY;
          for (index_t s = 0; s < c.length; ++s) {
            if ((c.causal && s > t) || (c.mask.size() && c.mask(b, s) == 0)) continue;
            scores[s] = oracle::dot_head(q[t], k[s], int(h), int(head_dim)) / std::sqrt(double(head_dim));
            top = std::max(top, scores[s]);
          }
          if (top == -INFINITY) continue;  // no visible key: zero context
          double total = 0;
          for (double s : scores) total += std::exp(s - top);
          for (index_t s = 0; s < c.length; ++s)
            for (index_t f = 0; f < head_dim; ++f)
              if (scores[s] != -INFINITY) y[t][h * head_dim + f] += std::exp(scores[s] - top) / total * v[s][h * head_dim + f];
        }
      append(out, y);
    }
    return out;
  }

  static std::string describe(const Case& c) {
    std::ostringstream out;
    out << "nh=" << c.heads << " width=" << c.query.extent(2) << " B=" << c.batch << " L=" << c.length
        << " causal=" << c.causal << " mask=" << (c.mask.size() > 0);
    return out.str();
  }
};


// causal::ChunkedLSAttention: bf16 linears and the causal executor's products.
struct CausalLayer {
  static constexpr double bound = 1.0 / 32;  // measured 0.0127
  struct Case {
    causal::Config config;
    index_t batch = 1, length = 1, cache = 0;
    causal::Weights<float> weights;
    Tensor<float, 3> h, h_cache;
  };

  static Case make(const causal::Config& config, index_t batch, index_t length, index_t cache, std::uint64_t seed) {
    std::mt19937_64 rng(seed);
    Case c{config, batch, length, cache, causal::Weights<float>::random(config, seed), {}, {}};
    c.h = normal_tensor(Shape<3>{batch, length, config.d_model}, rng);
    c.h_cache = normal_tensor(Shape<3>{batch, cache, config.d_model}, rng);
    return c;
  }

  static std::vector<Case> cases() {
    std::vector<Case> out;
    out.push_back(make({4, 32, 4, 1, 16, false, -1, -1}, 1, 70, 48, 1));  // the published LM shapes
    out.push_back(make({2, 16, 8, 2, 64, true, 20, 9}, 2, 150, 40, 2));
    std::mt19937_64 rng(424242);
    const Picker pick{rng};
    while (out.size() < 40) {
      causal::Config c;
      c.n_head = pick({1, 2, 3});
      c.d_model = c.n_head * pick({2, 4});
      c.chunk_size = pick({1, 2, 3, 4});
      c.chunk_rank = pick({1, 2});
      c.window_len = pick({1, 2, 3, 5, 8});
      c.use_bias = pick.coin();
      c.clamp_len = pick({-1, -1, 1, 3});
      c.cpos_clamp_len = pick({-1, -1, 2, 4});
      const index_t batch = pick({1, 2}), length = pick({1, 2, 3, 4, 7, 8, 12, 16, 19});
      const index_t cache = c.chunk_size * pick({0, 1, 2, 3, 5});
      out.push_back(make(c, batch, length, cache, 100 + out.size()));
    }
    return out;
  }

  static std::vector<Case> threads_cases() { return {make({4, 64, 8, 2, 32, false, -1, -1}, 2, 300, 64, 61)}; }

  static std::vector<float> run(const Case& c, Precision precision, int threads) {
    causal::Config config = c.config;
    config.precision = precision;
    config.threads = threads;
    return causal::ChunkedLSAttention<lsattn::cpu, float>(config, c.weights).forward(c.h.view(), c.h_cache.view()).values();
  }

  static std::vector<double> oracle(const Case& c) {
    const auto weights = to_oracle(c.weights, c.config);
    std::vector<double> out;
    for (index_t b = 0; b < c.batch; ++b)
      append(out, oracle::causal_forward(to_oracle(c.config), weights, rows_of(c.h_cache, b), rows_of(c.h, b)));
    return out;
  }

  static std::string describe(const Case& c) {
    std::ostringstream out;
    out << "nh=" << c.config.n_head << " D=" << c.config.d_model << " l=" << c.config.chunk_size
        << " r=" << c.config.chunk_rank << " w=" << c.config.window_len << " bias=" << c.config.use_bias
        << " B=" << c.batch << " L=" << c.length << " M=" << c.cache;
    return out.str();
  }
};

// causal::TransformerLSModel: every linear (attention projections, feed-forward, the tied output
// embedding) and the attention in bf16, over segments with the memory carried over.
struct LanguageModel {
  static constexpr double bound = 1.0 / 128;  // measured 0.0017
  struct Case {
    causal::LmConfig config;
    std::vector<index_t> segments;
    causal::LmWeights<float> weights;
    std::vector<Tensor<std::int64_t, 2>> tokens;  // per segment, (2, length)
  };

  static Case make(const causal::LmConfig& config, std::vector<index_t> segments, std::uint64_t seed) {
    std::mt19937_64 rng(seed);
    Case c{config, segments, causal::LmWeights<float>::random(config, seed), {}};
    for (index_t length : segments) {
      Tensor<std::int64_t, 2> t(Shape<2>{2, length});
      for (auto& id : t.values()) id = std::uniform_int_distribution<std::int64_t>(0, config.vocab_size - 1)(rng);
      c.tokens.push_back(t);
    }
    return c;
  }

  static std::vector<Case> cases() {
    return {make({11, 8, 2, 12, 2, 8, 4, 1, 8, true, true, false, -1, -1}, {8, 8, 5}, 40),  // pre-LN, GELU
            make({7, 8, 2, 16, 1, 4, 2, 2, 4, false, false, true, 3, 2}, {4, 6, 3}, 41),    // post-LN, ReLU, biases
            make({5, 6, 3, 10, 2, 6, 3, 1, 2, true, true, false, -1, -1}, {9, 1, 12}, 42),  // w < l, one token
            make({40, 32, 4, 64, 2, 32, 8, 2, 16, true, true, true, -1, -1}, {40, 33}, 43)};
  }

  static std::vector<Case> threads_cases() {
    return {make({64, 64, 4, 128, 2, 64, 16, 1, 32, true, true, false, -1, -1}, {200, 150}, 71)};
  }

  static std::vector<float> run(const Case& c, Precision precision, int threads) {
    causal::LmConfig config = c.config;
    config.precision = precision;
    config.threads = threads;
    const causal::TransformerLSModel<lsattn::cpu, float> model(config, c.weights);
    auto state = model.initial_state(2);
    std::vector<float> out;
    for (const auto& tokens : c.tokens) {
      const auto logprobs = model.forward(tokens.view(), state);
      out.insert(out.end(), logprobs.values().begin(), logprobs.values().end());
    }
    return out;
  }

  static std::vector<double> oracle(const Case& c) {
    const auto& config = c.config;
    oracle::Lm m = to_oracle(config, c.weights);
    std::vector<std::vector<oracle::Matrix>> caches(
        2, std::vector<oracle::Matrix>(config.n_layer,
                                       oracle::Matrix(config.mem_len, std::vector<double>(config.d_model, 0.0))));
    std::vector<double> out;
    for (const auto& tokens : c.tokens) {
      const index_t length = tokens.extent(1);
      for (index_t b = 0; b < 2; ++b) {
        std::vector<long> ids(tokens.values().begin() + b * length, tokens.values().begin() + (b + 1) * length);
        const auto logprobs = oracle::lm_forward(m, ids, caches[b]);
        for (index_t t = 0; t < length; ++t) out.insert(out.end(), logprobs[t].begin(), logprobs[t].end());
      }
    }
    return out;
  }

  static std::string describe(const Case& c) {
    std::ostringstream out;
    out << "vocab=" << c.config.vocab_size << " D=" << c.config.d_model << " layers=" << c.config.n_layer
        << " pre_ln=" << c.config.pre_ln << " segments=" << c.segments.size();
    return out.str();
  }
};

// vision::AttentionLS2D: bf16 linears and the 2D executor's products.
struct VisionLayer {
  static constexpr double bound = 1.0 / 16;  // measured 0.0309: a LayerNorm over 2 features amplifies
  struct Case {
    vision::Config config;
    index_t batch = 1, rows = 1, cols = 1;
    vision::Weights<float> weights;
    Tensor<float, 3> x;
  };

  static Case make(const vision::Config& config, index_t batch, index_t rows, index_t cols, std::uint64_t seed) {
    std::mt19937_64 rng(seed);
    Case c{config, batch, rows, cols, vision::Weights<float>::random(config, seed), {}};
    c.x = normal_tensor(Shape<3>{batch, config.nglo + rows * cols, config.dim}, rng);
    return c;
  }

  static std::vector<Case> cases() {
    std::vector<Case> out;
    out.push_back(make({12, 3, 0, 8, 1, false, true}, 2, 19, 23, 1));  // no window, beyond one tile
    out.push_back(make({12, 3, 7, 2, 1, true, true}, 1, 16, 13, 2));   // the published window
    out.push_back(make({12, 3, -3, 0, 2, false, true}, 1, 5, 7, 3));   // global tokens only
    std::mt19937_64 rng(2024);
    const Picker pick{rng};
    while (out.size() < 30) {
      vision::Config c;
      c.num_heads = pick({1, 2, 3});
      c.dim = c.num_heads * pick({2, 4});
      c.w = pick({-1, 0, 1, 2, 3, 4, 5});
      c.dp_rank = pick({0, 1, 3});
      c.nglo = pick({0, 1, 1, 2, 3});
      if (c.w <= 0 && c.dp_rank == 0 && c.nglo == 0) c.dp_rank = 2;
      c.rpe = c.w >= 2 && pick.coin();
      c.qkv_bias = pick.coin();
      const index_t batch = pick({1, 2}), rows = pick({1, 2, 3, 4, 6, 7, 9}), cols = pick({1, 2, 4, 5, 8});
      out.push_back(make(c, batch, rows, cols, 100 + out.size()));
    }
    return out;
  }

  static std::vector<Case> threads_cases() { return {make({24, 3, 7, 4, 1, true, true}, 2, 28, 28, 81)}; }

  static std::vector<float> run(const Case& c, Precision precision, int threads) {
    vision::Config config = c.config;
    config.precision = precision;
    config.threads = threads;
    return vision::AttentionLS2D<lsattn::cpu, float>(config, c.weights).forward(c.x.view(), c.rows, c.cols).values();
  }

  static std::vector<double> oracle(const Case& c) {
    const auto& cfg = c.config;
    const auto& w = c.weights;
    const oracle::VisionConfig oc = to_oracle(cfg);
    const oracle::VisionWeights ow = to_oracle(w);
    std::vector<double> out;
    for (index_t b = 0; b < c.batch; ++b)
      append(out, oracle::vision_forward(oc, ow, rows_of(c.x, b), int(c.rows), int(c.cols)));
    return out;
  }

  static std::string describe(const Case& c) {
    std::ostringstream out;
    out << "nh=" << c.config.num_heads << " C=" << c.config.dim << " w=" << c.config.w << " r=" << c.config.dp_rank
        << " nglo=" << c.config.nglo << " rpe=" << c.config.rpe << " grid " << c.rows << "x" << c.cols
        << " B=" << c.batch;
    return out.str();
  }
};

// How far the two paths may differ: they multiply the same rounded operands and differ only in
// the order of float additions; an intermediate result one float ulp apart can round to a
// different bf16 value downstream (one bf16 ulp, 2⁻⁸ of that element), hence not 1e-6.
constexpr double paths_agree_bound = 1.0 / 256;

}  // namespace

// ---------------------------------------------------------------------------------------------
// a. The product

TEST_CASE("bf16 path selection: the active path and the packed path", "[bf16][matmul]") {
  for (TestedPath path : paths_under_test()) {
    INFO("bf16 path " << name_of(path));
    const ForcedPath forced(path);
    CHECK(lsattn::active_bf16_path() == path.path);
    const std::vector<float> b(6, 1.0f);
    cpu_detail::PackedB packed;
    cpu_detail::pack_b(b.data(), 3, 2, 3, false, packed);
    CHECK(packed.path == path.path);
  }
}

TEST_CASE("bf16 products round operands to nearest even", "[bf16][matmul]") {
  // 1 + 2⁻⁸ lies halfway between bf16 1 and 1 + 2⁻⁷: ties go to the even 1. 1 + 3·2⁻⁸ lies
  // halfway between 1 + 2⁻⁷ and 1 + 2⁻⁶: to the even 1 + 2⁻⁶. Just above a tie rounds up.
  const float tie_down = 1.0f + std::ldexp(1.0f, -8), tie_up = 1.0f + 3 * std::ldexp(1.0f, -8);
  const float above = std::nextafter(tie_down, 2.0f), below = std::nextafter(tie_up, 0.0f);
  const std::vector<float> a{tie_down, tie_up, above, below, -tie_down, -tie_up};
  const std::vector<double> want{1.0, 1.0 + std::ldexp(1.0, -6), 1.0 + std::ldexp(1.0, -7), 1.0 + std::ldexp(1.0, -7),
                                 -1.0, -(1.0 + std::ldexp(1.0, -6))};
  const std::vector<float> one{1.0f};
  for (TestedPath path : paths_under_test()) {
    INFO("bf16 path " << name_of(path));
    const ForcedPath forced(path);
    for (bool a_side : {true, false}) {  // the value as A's element, then as B's
      cpu_detail::PackedB packed;
      std::vector<float> c(a.size());
      if (a_side) {
        cpu_detail::pack_b(one.data(), 1, 1, 1, false, packed);
        cpu_detail::matmul_bf16(a.data(), 1, static_cast<index_t>(a.size()), packed, c.data(), 1, false);
      } else {
        cpu_detail::pack_b(a.data(), static_cast<index_t>(a.size()), 1, static_cast<index_t>(a.size()), false, packed);
        cpu_detail::matmul_bf16(one.data(), 1, 1, packed, c.data(), static_cast<index_t>(a.size()), false);
      }
      for (std::size_t i = 0; i < a.size(); ++i) {
        INFO("value " << i << (a_side ? " in A" : " in B"));
        CHECK(c[i] == want[i]);
        CHECK(c[i] == bf16(a[i]));
      }
    }
  }
}

TEST_CASE("bf16 matmul matches a float64 product of the rounded operands on awkward shapes", "[bf16][matmul]") {
  for (TestedPath path : paths_under_test()) {
    INFO("bf16 path " << name_of(path));
    const ForcedPath forced(path);
    std::mt19937_64 rng(9);
    std::uniform_int_distribution<int> coin(0, 1);
    for (index_t m : {0, 1, 2, 7, 8, 9, 16, 17, 32, 48})
      for (index_t k : {0, 1, 2, 3, 7, 16, 33, 64, 129})
        for (index_t n : {0, 1, 5, 31, 32, 33, 70, 256, 300})
          for (bool transposed : {false, true}) {
            Product p = random_product(m, k, n, k, transposed, coin(rng) == 1, rng);
            cpu_detail::PackedB packed;
            cpu_detail::pack_b(p.b.data(), p.ldb, k, n, transposed, packed);
            const std::vector<float> before = p.c;
            cpu_detail::matmul_bf16(p.a.data(), p.lda, m, packed, p.c.data(), p.ldc, p.accumulate);
            check_product(p, before, p.c, 0, 0);
          }
  }
}

TEST_CASE("bf16 matmul with slices of a packed B", "[bf16][matmul]") {
  // B packed once (70 × 100, both layouts), then products with row ranges starting on even rows
  // and column ranges starting on panels of 32, odd lengths included: the row after an odd
  // slice is B's next (nonzero) row, which A's zero padding must cancel.
  const index_t k_total = 70, n_total = 100;
  for (TestedPath path : paths_under_test()) {
    INFO("bf16 path " << name_of(path));
    const ForcedPath forced(path);
    std::mt19937_64 rng(12);
    for (bool transposed : {false, true}) {
      const Product whole = random_product(0, 0, n_total, k_total, transposed, false, rng);
      cpu_detail::PackedB packed;
      cpu_detail::pack_b(whole.b.data(), whole.ldb, k_total, n_total, transposed, packed);
      for (int trial = 0; trial < 60; ++trial) {
        const index_t k_begin = 2 * std::uniform_int_distribution<index_t>(0, k_total / 2 - 1)(rng);
        const index_t k = std::uniform_int_distribution<index_t>(0, k_total - k_begin)(rng);
        const index_t n_begin = 32 * std::uniform_int_distribution<index_t>(0, (n_total - 1) / 32)(rng);
        const index_t n = std::uniform_int_distribution<index_t>(0, n_total - n_begin)(rng);
        const index_t m = std::uniform_int_distribution<index_t>(0, 19)(rng);
        Product p = random_product(m, k, n, k_total, transposed, trial % 2 == 1, rng);
        p.b = whole.b;
        p.ldb = whole.ldb;
        const std::vector<float> before = p.c;
        cpu_detail::matmul_bf16(p.a.data(), p.lda, m, cpu_detail::slice(packed, k_begin, k, n_begin, n), p.c.data(),
                                p.ldc, p.accumulate);
        check_product(p, before, p.c, k_begin, n_begin);
      }
    }
  }
}

#if LSATTN_HAS_AMX_KERNEL
// The scalar model of the tile instructions, which stands in for AMX on other CPUs, against the
// instruction's definition: C[m][n] += Σ A[m][k]·B[k][n] over bf16 operands, B in pair rows (row p
// holds B[2p][n] and B[2p+1][n] side by side); tiles of disagreeing shapes, or unconfigured, are
// refused as the hardware would (#UD).
TEST_CASE("the emulated AMX tiles compute tdpbf16ps and refuse what the hardware refuses", "[bf16][amx]") {
  using Tiles = cpu_detail::EmulatedAmxTiles;
  std::mt19937_64 rng(21);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  constexpr int size = 32;  // A: 32 × 32 bf16 (two 16-row tiles); B: 32 × 32 as 16 pair rows
  std::vector<std::uint16_t> a(size * size);
  std::vector<std::uint32_t> b(size / 2 * size);
  std::vector<double> a_value(a.size()), b_value(size * size);  // b_value[k · 32 + n]
  for (std::size_t i = 0; i < a.size(); ++i) {
    a[i] = lsattn::float_to_bfloat16(normal(rng));
    a_value[i] = lsattn::bfloat16_to_float(a[i]);
  }
  for (int p = 0; p < size / 2; ++p)
    for (int n = 0; n < size; ++n) {
      const std::uint16_t even = lsattn::float_to_bfloat16(normal(rng)), odd = lsattn::float_to_bfloat16(normal(rng));
      b[p * size + n] = std::uint32_t{even} | (std::uint32_t{odd} << 16);
      b_value[2 * p * size + n] = lsattn::bfloat16_to_float(even);
      b_value[(2 * p + 1) * size + n] = lsattn::bfloat16_to_float(odd);
    }
  cpu_detail::AmxConfig config;
  for (int t = 0; t < 8; ++t) config.rows[t] = 16, config.bytes_per_row[t] = 64;
  Tiles::configure(config);
  // C starts as 1 + its column (loaded, rows 40 floats apart), then A · B is added twice; with
  // `lower` off only the top 16 rows change, and the C tiles store only those.
  for (bool lower : {true, false}) {
    INFO("lower=" << lower);
    constexpr int ldc = 40;
    std::vector<float> c(size * ldc, -7.0f);
    for (int m = 0; m < size; ++m)
      for (int n = 0; n < size; ++n) c[m * ldc + n] = 1.0f + static_cast<float>(n);
    Tiles::zero_c();
    Tiles::load_c(c.data(), ldc * 4, true);
    Tiles::load_a(a.data(), a.data() + 16 * size, 2 * size, lower);
    Tiles::load_b(b.data(), b.data() + 16, 4 * size);
    Tiles::multiply(lower);
    Tiles::multiply(lower);
    Tiles::store_c(c.data(), ldc * 4, lower);
    for (int m = 0; m < size; ++m) {
      for (int n = 0; n < size; ++n) {
        double expected = 1.0 + n, magnitude = expected;
        for (int k = 0; k < size && (lower || m < 16); ++k) {
          expected += 2 * a_value[m * size + k] * b_value[k * size + n];
          magnitude += 2 * std::abs(a_value[m * size + k] * b_value[k * size + n]);
        }
        INFO("m=" << m << " n=" << n);
        CHECK(std::abs(c[m * ldc + n] - expected) <= 1e-5 * magnitude);
      }
      for (int n = size; n < ldc; ++n) CHECK(c[m * ldc + n] == -7.0f);  // between the rows: untouched
    }
  }
  config.rows[6] = 8;  // a B tile of 8 pair rows against A tiles of 16 pairs
  Tiles::configure(config);
  CHECK_THROWS_WITH(Tiles::multiply(false), Contains("tile shapes disagree"));
  Tiles::release();
  CHECK_THROWS_WITH(Tiles::zero_c(), Contains("without a configuration"));
}
#endif

TEST_CASE("a B packed on one path multiplies correctly after the path changes", "[bf16][matmul]") {
  const auto paths = paths_under_test();
  std::mt19937_64 rng(13);
  for (TestedPath pack_path : paths)
    for (TestedPath multiply_path : paths) {
      INFO("packed on " << name_of(pack_path) << ", multiplied with " << name_of(multiply_path) << " active");
      Product p = random_product(9, 37, 45, 37, true, false, rng);
      cpu_detail::PackedB packed;
      {
        const ForcedPath forced(pack_path);
        cpu_detail::pack_b(p.b.data(), p.ldb, p.k, p.n, true, packed);
      }
      const ForcedPath forced(multiply_path);
      const std::vector<float> before = p.c;
      cpu_detail::matmul_bf16(p.a.data(), p.lda, p.m, packed, p.c.data(), p.ldc, false);
      check_product(p, before, p.c, 0, 0);
    }
}

// ---------------------------------------------------------------------------------------------
// b. Every model and kernel against its float64 oracle

TEMPLATE_TEST_CASE("bf16 stays within its bound of the float64 oracle and fp32 is far closer", "[bf16][oracle]",
                   LraLayer, BidirectionalFunctor, LsHeads, FullAttention, CausalLayer, LanguageModel, VisionLayer) {
  const auto cases = TestType::cases();
  std::vector<std::vector<double>> oracles;
  double worst_fp32 = 0;
  for (const auto& c : cases) {
    oracles.push_back(TestType::oracle(c));
    const double error = model_error(TestType::run(c, Precision::fp32, 0), oracles.back());
    INFO(TestType::describe(c));
    CHECK(error < TestType::bound / 100);  // the bound is far above float rounding
    worst_fp32 = std::max(worst_fp32, error);
  }
  for (TestedPath path : paths_under_test()) {
    INFO("bf16 path " << name_of(path));
    const ForcedPath forced(path);
    double worst_bf16 = 0;
    std::string worst_case;
    for (std::size_t i = 0; i < cases.size(); ++i) {
      const double error = model_error(TestType::run(cases[i], Precision::bf16, 0), oracles[i]);
      INFO(TestType::describe(cases[i]));
      CHECK(error <= TestType::bound);
      if (error > worst_bf16) worst_bf16 = error, worst_case = TestType::describe(cases[i]);
    }
    // bf16 was in effect: its worst error is far above fp32's (measured: 14000 to 69000 times).
    CHECK(worst_bf16 > 100 * worst_fp32);
    if (measuring()) {
      WARN("measured on " << name_of(path) << ": worst bf16 error " << worst_bf16 << " (" << worst_case
                          << "), worst fp32 error " << worst_fp32 << ", bound " << TestType::bound << ", "
                          << cases.size() << " cases");
    }
  }
}

// ---------------------------------------------------------------------------------------------
// c. Thread counts, and the paths against each other

TEMPLATE_TEST_CASE("bf16 results do not depend on the thread count", "[bf16][threads]", LraLayer, BidirectionalFunctor,
                   LsHeads, FullAttention, CausalLayer, LanguageModel, VisionLayer) {
  const auto cases = TestType::threads_cases();
  for (TestedPath path : paths_under_test()) {
    INFO("bf16 path " << name_of(path));
    const ForcedPath forced(path);
    for (const auto& c : cases) {
      INFO(TestType::describe(c));
      const auto one = TestType::run(c, Precision::bf16, 1);
      CHECK(TestType::run(c, Precision::bf16, 2) == one);
      CHECK(TestType::run(c, Precision::bf16, 0) == one);
    }
  }
}

TEMPLATE_TEST_CASE("bf16 paths agree with each other", "[bf16][paths]", LraLayer, BidirectionalFunctor, LsHeads,
                   FullAttention, CausalLayer, LanguageModel, VisionLayer) {
  const auto paths = paths_under_test();
  if (paths.size() < 2) {
    WARN("fewer than two bf16 paths under test: nothing to compare");
    return;
  }
  auto cases = TestType::cases();
  for (auto& c : TestType::threads_cases()) cases.push_back(std::move(c));
  double worst = 0;
  for (const auto& c : cases) {
    std::vector<float> reference;
    {
      const ForcedPath forced(paths.front());
      reference = TestType::run(c, Precision::bf16, 0);
    }
    for (std::size_t p = 1; p < paths.size(); ++p) {
      const ForcedPath forced(paths[p]);
      const double difference = model_difference(TestType::run(c, Precision::bf16, 0), reference);
      INFO(TestType::describe(c) << ": " << name_of(paths[p]) << " against " << name_of(paths.front()));
      CHECK(difference <= paths_agree_bound);
      worst = std::max(worst, difference);
    }
  }
  if (measuring()) WARN("measured: worst difference between the paths " << worst << ", bound " << paths_agree_bound);
}

// ---------------------------------------------------------------------------------------------
// d. Path selection and other errors

TEST_CASE("an unavailable bf16 path is an error naming it", "[bf16][errors]") {
  for (Bf16Path path : every_path) {
    if (lsattn::bf16_path_available(path)) {
      CHECK_NOTHROW(lsattn::set_bf16_path(path));
      lsattn::reset_bf16_path();
      continue;
    }
    INFO("bf16 path " << name_of(path) << " (not available here)");
    CHECK_THROWS_WITH(lsattn::set_bf16_path(path), Contains(name_of(path)) && Contains("not available"));
    lsattn::reset_bf16_path();
    const ScopedEnvironment environment("LSATTN_BF16_PATH");
    environment.set(name_of(path));
    CHECK_THROWS_WITH(lsattn::active_bf16_path(), Contains(name_of(path)) && Contains("not available"));
  }
  CHECK(lsattn::bf16_path_available(Bf16Path::emulated));  // the fallback runs everywhere
}

TEST_CASE("LSATTN_BF16_PATH selects a path, and an unknown value is an error naming it", "[bf16][errors]") {
  lsattn::reset_bf16_path();
  const ScopedEnvironment environment("LSATTN_BF16_PATH");
  environment.unset();
  // The default: the fastest verified path (amx, not yet run on AMX hardware, only on request).
  const Bf16Path fastest = lsattn::bf16_path_available(Bf16Path::avx512_bf16) ? Bf16Path::avx512_bf16 : Bf16Path::emulated;
  CHECK(lsattn::active_bf16_path() == fastest);
  environment.set("");
  CHECK(lsattn::active_bf16_path() == fastest);
  environment.set("emulated");
  CHECK(lsattn::active_bf16_path() == Bf16Path::emulated);
  {  // set_bf16_path overrides the variable until reset
    const ForcedPath forced(fastest);
    CHECK(lsattn::active_bf16_path() == fastest);
  }
  CHECK(lsattn::active_bf16_path() == Bf16Path::emulated);

  environment.set("avx512");
  CHECK_THROWS_WITH(lsattn::active_bf16_path(), Contains("LSATTN_BF16_PATH") && Contains("'avx512'"));
  // Through a model: the error reaches the caller as lsattn::error, before any product.
  const auto c = LraLayer::make(LraLayer::config(2, 4, 4, 2), 1, 9, true, true, 3);
  CHECK_THROWS_AS(LraLayer::run(c, Precision::bf16, 0), lsattn::error);
  CHECK_THROWS_WITH(LraLayer::run(c, Precision::bf16, 0), Contains("LSATTN_BF16_PATH") && Contains("'avx512'"));
  const auto lm = LanguageModel::cases().front();
  CHECK_THROWS_WITH(LanguageModel::run(lm, Precision::bf16, 0), Contains("LSATTN_BF16_PATH") && Contains("'avx512'"));
  CHECK_NOTHROW(LraLayer::run(c, Precision::fp32, 0));  // fp32 never asks for a path
  environment.set("EMULATED");
  CHECK_THROWS_WITH(lsattn::active_bf16_path(), Contains("'EMULATED'"));
}

TEST_CASE("bf16 with double tensors is an error", "[bf16][errors]") {
  const auto message = Contains("bf16");
  {
    const auto c = LraLayer::make(LraLayer::config(2, 4, 4, 2), 1, 9, true, true, 3);
    lra::Config config = c.config;
    config.precision = Precision::bf16;
    const lra::AttentionLS<lsattn::cpu, double> layer(config, cast_weights<double>(c.weights, c.config));
    const Tensor<double, 3> x(c.x.shape(), flat(c.x));
    CHECK_THROWS_WITH(layer.forward(x.view()), message);
  }
  {
    lsattn::AttentionConfig config{2, 4, 4, 2};
    config.precision = Precision::bf16;
    const lsattn::LongShortAttention<lsattn::cpu, double> attention(config);
    const Tensor<double, 3> q(Shape<3>{1, 6, 8}, 0.5), logits(Shape<3>{1, 6, 4}, 0.1);
    Tensor<double, 3> context(Shape<3>{1, 6, 8});
    const Tensor<double, 1> ones(Shape<1>{8}, 1.0), zeros(Shape<1>{8}, 0.0);
    CHECK_THROWS_WITH(attention({q.view(), q.view(), q.view(), logits.view()},
                                {{ones.view(), zeros.view()}, {ones.view(), zeros.view()}}, context.view()),
                      message);
  }
  {
    const Tensor<double, 3> q(Shape<3>{1, 5, 8}, 0.5);
    Tensor<double, 3> context(q.shape());
    CHECK_THROWS_WITH(lsattn::baseline::full_attention<double>(2, q.view(), q.view(), q.view(), {}, context.view(), 0,
                                                               false, Precision::bf16),
                      message);
  }
  {
    ls::Config config{.dim = 8, .num_heads = 2, .local_heads = {0}, .window = 3};
    const auto weights = cast_weights<double>(ls::Weights<float>::random(config, 1), config);
    config.precision = Precision::bf16;
    const Tensor<double, 3> x(Shape<3>{1, 5, 8}, 0.5);
    CHECK_THROWS_WITH((ls::LsHeadsAttention<lsattn::cpu, double>(config, weights).forward(x.view())), message);
  }
  {
    causal::Config config{2, 8, 2, 1, 4, false, -1, -1};
    const auto weights = cast_weights<double>(causal::Weights<float>::random(config, 1), config);
    config.precision = Precision::bf16;
    const Tensor<double, 3> h(Shape<3>{1, 4, 8}, 0.5);
    CHECK_THROWS_WITH((causal::ChunkedLSAttention<lsattn::cpu, double>(config, weights).forward(h.view(), {})), message);
  }
  {
    vision::Config config{8, 2, 2, 1, 1, false, true};
    const auto weights = cast_weights<double>(vision::Weights<float>::random(config, 1), config);
    config.precision = Precision::bf16;
    const Tensor<double, 3> x(Shape<3>{1, 1 + 9, 8}, 0.5);
    CHECK_THROWS_WITH((vision::AttentionLS2D<lsattn::cpu, double>(config, weights).forward(x.view(), 3, 3)), message);
  }
}

// ---------------------------------------------------------------------------------------------
// e. The skip switch

TEST_CASE("LSATTN_REQUIRE_BF16_PATHS lists paths by name or all", "[bf16][skips]") {
  const auto all = parse_required_paths("all");
  CHECK(all.requires_path(Bf16Path::emulated));
  CHECK(all.requires_path(Bf16Path::avx512_bf16));
  CHECK(all.unknown.empty());
  const auto one = parse_required_paths(" avx512_bf16 ,");
  CHECK(one.requires_path(Bf16Path::avx512_bf16));
  CHECK_FALSE(one.requires_path(Bf16Path::emulated));
  const auto none = parse_required_paths("");
  CHECK(none.paths.empty());
  const auto typo = parse_required_paths("emulated,amx2");
  CHECK(typo.requires_path(Bf16Path::emulated));
  CHECK(typo.unknown == std::vector<std::string>{"amx2"});
  CHECK(parse_required_paths("amx").requires_path(Bf16Path::amx));
  // And here: every path this CPU lacks is warned about, or fails the run when required.
  const auto paths = paths_under_test();
  CHECK_FALSE(paths.empty());
  for (TestedPath tested : paths) {
    const ForcedPath forced(tested);  // emulated tiles make amx available
    CHECK(lsattn::bf16_path_available(tested.path));
  }
}
