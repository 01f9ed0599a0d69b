// The CPU's own float kernels and scratch: the packed fp32 product on every path this CPU can
// run (against a float64 product), the one interface over both precisions, and CpuWorkspace
// (frames, reuse, copies, overflow; layers with a workspace give the same bits as without).
#include <catch2/catch.hpp>

#include <array>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "lsattn/backend/cpu/block_matmul.hpp"
#include "lsattn/backend/cpu/layer_norm.hpp"
#include "lsattn/backend/cpu/sequence_projection.hpp"
#include "lsattn/backend/cpu/softmax.hpp"
#include "lsattn/backend/cpu/workspace.hpp"
#include "lsattn/lsattn.hpp"

namespace {

using lsattn::index_t;
using lsattn::Shape;
using lsattn::Tensor;
namespace cpu = lsattn::cpu_detail;

// The fp32 paths this CPU runs; a missing one is reported, and is a failure when
// LSATTN_REQUIRE_FP32_PATHS names it (or says "all").
std::vector<lsattn::Fp32Path> runnable_fp32_paths() {
  std::vector<lsattn::Fp32Path> paths;
  const char* required = std::getenv("LSATTN_REQUIRE_FP32_PATHS");
  for (auto path : {lsattn::Fp32Path::eigen, lsattn::Fp32Path::avx2, lsattn::Fp32Path::avx512}) {
    if (lsattn::fp32_path_available(path)) {
      paths.push_back(path);
      continue;
    }
    const std::string name = lsattn::fp32_path_name(path);
    const std::string list = required != nullptr ? std::string(",") + required + "," : std::string();
    if (required != nullptr && (std::string(required) == "all" || list.find("," + name + ",") != std::string::npos))
      FAIL("fp32 path " << name << " is required (LSATTN_REQUIRE_FP32_PATHS) but not available on this CPU");
    WARN("fp32 path " << name << " not available on this CPU: skipped");
  }
  return paths;
}

struct PathGuard {
  ~PathGuard() {
    lsattn::reset_fp32_path();
    lsattn::reset_bf16_path();
  }
};

std::vector<float> random_values(std::size_t count, std::mt19937& rng) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> values(count);
  for (float& v : values) v = normal(rng);
  return values;
}

// C = A·B in float64 with B given as B (k × n, ldb) or Bᵀ (n × k, ldb); returns C and Σ|a||b|.
void reference_product(const std::vector<float>& a, index_t lda, const std::vector<float>& b, index_t ldb, bool transposed,
                       index_t m, index_t n, index_t k, std::vector<double>& c, std::vector<double>& magnitude) {
  c.assign(static_cast<std::size_t>(m * n), 0.0);
  magnitude.assign(c.size(), 0.0);
  for (index_t i = 0; i < m; ++i)
    for (index_t j = 0; j < n; ++j)
      for (index_t p = 0; p < k; ++p) {
        const double x = a[i * lda + p], y = transposed ? b[j * ldb + p] : b[p * ldb + j];
        c[i * n + j] += x * y;
        magnitude[i * n + j] += std::abs(x * y);
      }
}

}  // namespace

TEST_CASE("the packed fp32 product matches a float64 product on awkward shapes", "[kernels][fp32]") {
  PathGuard guard;
  std::mt19937 rng(11);
  for (const auto path : runnable_fp32_paths()) {
    INFO("path " << lsattn::fp32_path_name(path));
    lsattn::set_fp32_path(path);
    for (int trial = 0; trial < 200; ++trial) {
      const index_t m = rng() % 20, n = rng() % 70, k = rng() % 40;
      const bool transposed = rng() % 2, accumulate = rng() % 2;
      const index_t lda = k + rng() % 3, ldb = (transposed ? k : n) + rng() % 3, ldc = n + rng() % 3;
      INFO("m " << m << " n " << n << " k " << k << " transposed " << transposed << " accumulate " << accumulate);
      const auto a = random_values(static_cast<std::size_t>(m * lda + 1), rng);
      const auto b = random_values(static_cast<std::size_t>((transposed ? n : k) * ldb + 1), rng);
      auto c = random_values(static_cast<std::size_t>(m * ldc + 1), rng);
      const auto before = c;
      cpu::PackedF32 packed;
      cpu::pack_b(b.data(), ldb, k, n, transposed, packed);
      cpu::matmul_f32(a.data(), lda, m, packed, c.data(), ldc, accumulate);
      std::vector<double> want, magnitude;
      reference_product(a, lda, b, ldb, transposed, m, n, k, want, magnitude);
      for (index_t i = 0; i < m; ++i)
        for (index_t j = 0; j < n; ++j) {
          const double expected = want[i * n + j] + (accumulate ? before[i * ldc + j] : 0.0);
          REQUIRE(std::abs(c[i * ldc + j] - expected) <= 1e-5 * (magnitude[i * n + j] + 1.0));
        }
      for (index_t i = 0; i < m; ++i)  // the padding between rows is never written
        for (index_t j = n; j < ldc; ++j) REQUIRE(c[i * ldc + j] == before[i * ldc + j]);
    }
  }
}

TEST_CASE("the transposed product of the dynamic projection matches a float64 product", "[kernels][fp32]") {
  // C = Aᵀ·B with A k × m and B k × n read in place: k spans several of the kernel's row blocks
  // (and none), m and n every tail of its row groups (6 rows avx2, 8 avx512) and column groups (16, 32).
  std::mt19937 rng(13);
  for (const auto path : runnable_fp32_paths()) {
    INFO("path " << lsattn::fp32_path_name(path));
    for (int trial = 0; trial < 120; ++trial) {
      const std::array<index_t, 8> depths{0, 1, 7, cpu::transposed_k_block - 1, cpu::transposed_k_block,
                                          cpu::transposed_k_block + 1, 3 * cpu::transposed_k_block + 5, 40};
      const index_t m = rng() % 20, n = rng() % 70, k = trial < 8 ? depths[trial] : rng() % 700;
      const index_t lda = m + rng() % 3, ldb = n + rng() % 3, ldc = n + rng() % 3;
      INFO("m " << m << " n " << n << " k " << k << " lda " << lda << " ldb " << ldb);
      // Exactly as long as the last row needs, so a read past it is a sanitizer error.
      const auto a = random_values(static_cast<std::size_t>(k > 0 ? (k - 1) * lda + m : 0), rng);
      const auto b = random_values(static_cast<std::size_t>(k > 0 ? (k - 1) * ldb + n : 0), rng);
      auto c = random_values(static_cast<std::size_t>(m * ldc), rng);
      const auto before = c;
      cpu::transposed_matmul_f32(a.data(), lda, m, b.data(), ldb, n, k, c.data(), ldc, path);
      for (index_t i = 0; i < m; ++i) {
        for (index_t j = 0; j < n; ++j) {
          double want = 0.0, magnitude = 0.0;
          for (index_t p = 0; p < k; ++p) {
            const double product = static_cast<double>(a[p * lda + i]) * b[p * ldb + j];
            want += product;
            magnitude += std::abs(product);
          }
          REQUIRE(std::abs(c[i * ldc + j] - want) <= 1e-5 * (magnitude + 1.0));
        }
        for (index_t j = n; j < ldc; ++j) REQUIRE(c[i * ldc + j] == before[i * ldc + j]);  // padding untouched
      }
    }
  }
}

TEST_CASE("the dynamic projection over a sequence matches float64, for every length regime", "[kernels][fp32]") {
  // K̄ = Pᵀ K with P the column softmax of the logits over the valid rows: lengths of one row,
  // one partial row block, several blocks of one chunk each (L <= 32·128) and blocks of several
  // chunks (L > 4096), with padding, nothing valid, and thread counts 1 and 2 giving one result.
  std::mt19937 rng(14);
  PathGuard guard;
  const index_t heads = 2, rank = 3, head_dim = 5, columns = heads * rank, width = heads * head_dim;
  struct Case {
    index_t length;
    int valid_percent;
  };
  for (const auto path : runnable_fp32_paths())
    for (const Case c : {Case{1, 100}, Case{2, 50}, Case{127, 100}, Case{129, 70}, Case{4097, 100}, Case{9001, 60},
                         Case{300, 0}}) {
      INFO("path " << lsattn::fp32_path_name(path) << " L " << c.length << " valid % " << c.valid_percent);
      lsattn::set_fp32_path(path);
      const index_t length = c.length;
      const auto logits = random_values(static_cast<std::size_t>(length * columns), rng);
      const auto key = random_values(static_cast<std::size_t>(length * width), rng);
      const auto value = random_values(static_cast<std::size_t>(length * width), rng);
      std::vector<char> valid(static_cast<std::size_t>(length));
      for (auto& v : valid) v = static_cast<int>(rng() % 100) < c.valid_percent;
      std::vector<float> compressed[2][2];  // [threads - 1][key, value]
      for (int threads : {1, 2}) {
        lsattn::CpuWorkspace scratch;
        auto& out = compressed[threads - 1];
        out[0].assign(static_cast<std::size_t>(rank * width), -1.0f);
        out[1].assign(static_cast<std::size_t>(rank * width), -1.0f);
        cpu::compress_sequence(logits.data(), valid, length, heads, rank, head_dim, key.data(), value.data(),
                               out[0].data(), out[1].data(), scratch, threads);
      }
      CHECK(compressed[0][0] == compressed[1][0]);
      CHECK(compressed[0][1] == compressed[1][1]);
      for (index_t h = 0; h < heads; ++h)
        for (index_t j = 0; j < rank; ++j) {
          const index_t column = h * rank + j;
          double maximum = -std::numeric_limits<double>::infinity(), sum = 0.0;
          for (index_t t = 0; t < length; ++t)
            if (valid[t]) maximum = std::max(maximum, static_cast<double>(logits[t * columns + column]));
          for (index_t t = 0; t < length; ++t)
            if (valid[t]) sum += std::exp(logits[t * columns + column] - maximum);
          for (index_t d = 0; d < head_dim; ++d)
            for (int which = 0; which < 2; ++which) {
              const auto& source = which == 0 ? key : value;
              double want = 0.0, magnitude = 0.0;
              for (index_t t = 0; t < length; ++t) {
                if (!valid[t]) continue;
                const double term = std::exp(logits[t * columns + column] - maximum) / sum * source[t * width + h * head_dim + d];
                want += term;
                magnitude += std::abs(term);
              }
              REQUIRE(std::abs(compressed[0][which][j * width + h * head_dim + d] - want) <= 1e-5 * (magnitude + 1e-3));
            }
        }
    }
}

TEST_CASE("LayerNorm rows match float64 on every path and width, in place or not", "[kernels][fp32][layernorm]") {
  // Widths across the AVX2 code's 16-wide body, 8-wide steps and masked tails; rows centred at
  // 100 (the two-pass variance must not lose them); width 1 has no variance (output = bias).
  std::mt19937 rng(15);
  PathGuard guard;
  for (const auto path : runnable_fp32_paths()) {
    lsattn::set_fp32_path(path);
    for (index_t width = 1; width <= 72; width += (width < 40 ? 1 : 7))
      for (bool in_place : {false, true}) {
        INFO("path " << lsattn::fp32_path_name(path) << " width " << width << " in place " << in_place);
        const index_t rows = 3;
        auto x = random_values(static_cast<std::size_t>(rows * width), rng);
        for (auto& v : x) v += 100.0f;
        const auto weight = random_values(static_cast<std::size_t>(width), rng);
        const auto bias = random_values(static_cast<std::size_t>(width), rng);
        const lsattn::LayerNormParams<float, lsattn::host_space> params{
            {weight.data(), Shape<1>{width}}, {bias.data(), Shape<1>{width}}, 1e-5};
        // One spare element each side: nothing outside the rows may be written.
        std::vector<float> out(static_cast<std::size_t>(rows * width + 2), -7.0f);
        std::vector<float> io = x;
        io.insert(io.begin(), -7.0f);
        io.push_back(-7.0f);
        float* result = in_place ? io.data() + 1 : out.data() + 1;
        cpu::layer_norm_rows(in_place ? io.data() + 1 : x.data(), result, rows, width, params);
        const auto& buffer = in_place ? io : out;
        CHECK(buffer.front() == -7.0f);
        CHECK(buffer.back() == -7.0f);
        for (index_t i = 0; i < rows; ++i) {
          double mean = 0.0, variance = 0.0;
          for (index_t j = 0; j < width; ++j) mean += x[i * width + j];
          mean /= static_cast<double>(width);
          for (index_t j = 0; j < width; ++j) variance += (x[i * width + j] - mean) * (x[i * width + j] - mean);
          variance /= static_cast<double>(width);
          // The mean and x − mean carry a few float roundings of |mean| (100), which the
          // division by the standard deviation magnifies when a row's spread is small.
          const double deviation_error = 8 * std::numeric_limits<float>::epsilon() * std::abs(mean);
          for (index_t j = 0; j < width; ++j) {
            const double want = (x[i * width + j] - mean) / std::sqrt(variance + 1e-5) * weight[j] + bias[j];
            const double bound = (std::abs(weight[j]) + 1.0) * (5e-5 + deviation_error / std::sqrt(variance + 1e-5));
            REQUIRE(std::abs(result[i * width + j] - want) <= bound);
          }
        }
      }
  }
}

TEST_CASE("slices of a packed operand multiply like the sub-matrix, in both precisions", "[kernels][fp32][bf16]") {
  PathGuard guard;
  std::mt19937 rng(12);
  const index_t k = 37, n = 100, m = 13;
  const auto b = random_values(static_cast<std::size_t>(k * n), rng);  // B, k × n
  const auto a = random_values(static_cast<std::size_t>(m * k), rng);
  // Every fp32 path this CPU runs (the bf16 precision takes its default path, with the fp32
  // path under it where that path uses one).
  for (const auto fp32_path : runnable_fp32_paths())
  for (const auto precision : {lsattn::Precision::fp32, lsattn::Precision::bf16}) {
    INFO("precision " << lsattn::precision_name(precision) << ", fp32 path " << lsattn::fp32_path_name(fp32_path));
    lsattn::set_fp32_path(fp32_path);
    cpu::PackedOperand packed;
    packed.pack(b.data(), n, k, n, /*transposed=*/false, precision);
    // Row starts even (bf16 pairs), column starts on a panel boundary.
    for (const auto [k_begin, k_count, n_begin, n_count] :
         {std::array<index_t, 4>{0, 37, 0, 100}, {2, 10, 32, 5}, {10, 27, 64, 36}, {36, 1, 96, 4}, {4, 0, 0, 33}}) {
      INFO("slice rows " << k_begin << "+" << k_count << " columns " << n_begin << "+" << n_count);
      std::vector<float> c(static_cast<std::size_t>(m * n_count), 0.0f);
      cpu::block_matmul(a.data() + k_begin, k, m, cpu::slice(packed, k_begin, k_count, n_begin, n_count), c.data(),
                        n_count, false);
      for (index_t i = 0; i < m; ++i)
        for (index_t j = 0; j < n_count; ++j) {
          double want = 0, magnitude = 0;
          for (index_t p = 0; p < k_count; ++p) {
            double x = a[i * k + k_begin + p], y = b[(k_begin + p) * n + n_begin + j];
            if (precision == lsattn::Precision::bf16) {
              x = lsattn::bfloat16_to_float(lsattn::float_to_bfloat16(static_cast<float>(x)));
              y = lsattn::bfloat16_to_float(lsattn::float_to_bfloat16(static_cast<float>(y)));
            }
            want += x * y;
            magnitude += std::abs(x * y);
          }
          REQUIRE(std::abs(c[i * n_count + j] - want) <= 1e-5 * (magnitude + 1.0));
        }
    }
  }
}

TEST_CASE("fp32 path selection: unknown or unavailable paths are errors", "[kernels][fp32]") {
  PathGuard guard;
  ::setenv("LSATTN_FP32_PATH", "sse9", 1);
  lsattn::reset_fp32_path();  // the variable is read once; a reset reads it again
  REQUIRE_THROWS_WITH(lsattn::active_fp32_path(), Catch::Contains("LSATTN_FP32_PATH") && Catch::Contains("sse9"));
  REQUIRE_THROWS_WITH(lsattn::active_fp32_path(), Catch::Contains("sse9"));  // an error is not cached
  ::setenv("LSATTN_FP32_PATH", "eigen", 1);
  REQUIRE(lsattn::active_fp32_path() == lsattn::Fp32Path::eigen);
  ::unsetenv("LSATTN_FP32_PATH");
  REQUIRE(lsattn::active_fp32_path() == lsattn::Fp32Path::eigen);  // resolved once: unset changes nothing
  lsattn::reset_fp32_path();
  // The default is the fastest available path: avx512, else avx2, else eigen.
  auto fastest = lsattn::Fp32Path::eigen;
  for (const auto path : {lsattn::Fp32Path::avx2, lsattn::Fp32Path::avx512}) {
    if (lsattn::fp32_path_available(path)) {
      fastest = path;
    } else {
      INFO("path " << lsattn::fp32_path_name(path));
      REQUIRE_THROWS_WITH(lsattn::set_fp32_path(path), Catch::Contains(lsattn::fp32_path_name(path)) &&
                                                           Catch::Contains("not available"));
    }
  }
  REQUIRE(lsattn::active_fp32_path() == fastest);
  if (lsattn::fp32_path_available(lsattn::Fp32Path::avx512)) {  // AVX-512F implies AVX2 and FMA
    REQUIRE(lsattn::fp32_path_available(lsattn::Fp32Path::avx2));
  }
  lsattn::set_fp32_path(lsattn::Fp32Path::eigen);
  REQUIRE(lsattn::active_fp32_path() == lsattn::Fp32Path::eigen);
}

TEST_CASE("workspace frames nest and hand the same memory back", "[kernels][workspace]") {
  lsattn::CpuWorkspace workspace;
  float* first = nullptr;
  double* second = nullptr;
  for (int call = 0; call < 3; ++call) {
    const lsattn::CpuWorkspace::Frame frame(workspace);
    float* a = workspace.take<float>(1000);
    double* b = workspace.take<double>(10);
    {
      const lsattn::CpuWorkspace::Frame inner(workspace);
      float* c = workspace.take<float>(5);
      REQUIRE(c != a);
      REQUIRE(static_cast<void*>(c) != static_cast<void*>(b));
    }
    if (call == 0) {
      first = a;
      second = b;
    }
    REQUIRE(a == first);
    REQUIRE(b == second);
    REQUIRE(reinterpret_cast<std::uintptr_t>(a) % 64 == 0);
  }
  const std::size_t held = workspace.bytes();
  REQUIRE(held >= 1000 * sizeof(float) + 10 * sizeof(double) + 5 * sizeof(float));
  {
    const lsattn::CpuWorkspace::Frame frame(workspace);
    REQUIRE(workspace.take<float>(0) != nullptr);
    REQUIRE_THROWS_WITH(workspace.take<double>(lsattn::max_elements), Catch::Contains("workspace elements"));
  }
  lsattn::CpuWorkspace copy = workspace;  // scratch is not state: a copy starts empty
  REQUIRE(copy.bytes() == 0);
  workspace.clear();
  REQUIRE(workspace.bytes() == 0);
}

TEST_CASE("layers give the same bits with a kept workspace as without one", "[kernels][workspace]") {
  namespace models = lsattn::models;
  std::mt19937 rng(13);
  auto random_tensor = [&](const Shape<3>& shape) {
    Tensor<float, 3> t(shape);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    for (float& v : t.values()) v = normal(rng);
    return t;
  };
  lsattn::CpuWorkspace workspace;  // shared by every layer and call below, shapes changing
  for (const auto precision : {lsattn::Precision::fp32, lsattn::Precision::bf16}) {
    INFO("precision " << lsattn::precision_name(precision));
    for (const index_t length : {37, 5, 64}) {
      INFO("length " << length);
      {
        models::lra::Config config{2, 16, 32, 8, 4, false, 0};
        config.precision = precision;
        const models::lra::AttentionLS<lsattn::cpu> layer(config, models::lra::Weights<float>::random(config, 1));
        const auto x = random_tensor(Shape<3>{2, length, 32});
        const auto fresh = layer.forward(x.view());
        REQUIRE(layer.forward(x.view(), {}, {}, workspace).values() == fresh.values());
        REQUIRE(layer.forward(x.view(), {}, {}, workspace).values() == fresh.values());
      }
      {
        models::ls_heads::Config config{32, 4, {0, 2}, 6, true, 0};
        config.precision = precision;
        const models::ls_heads::LsHeadsAttention<lsattn::cpu> layer(config,
                                                                     models::ls_heads::Weights<float>::random(config, 2));
        const auto x = random_tensor(Shape<3>{2, length, 32});
        REQUIRE(layer.forward(x.view(), {}, nullptr, workspace).values() == layer.forward(x.view()).values());
      }
      {
        models::causal::Config config{2, 32, 4, 1, 8, false, -1, -1, 0};
        config.precision = precision;
        const models::causal::ChunkedLSAttention<lsattn::cpu> layer(config,
                                                                    models::causal::Weights<float>::random(config, 3));
        const auto h = random_tensor(Shape<3>{1, length, 32}), cache = random_tensor(Shape<3>{1, 8, 32});
        REQUIRE(layer.forward(h.view(), cache.view(), workspace).values() == layer.forward(h.view(), cache.view()).values());
      }
      {
        const index_t side = length % 7 + 3;
        models::vision::Config config{24, 2, 3, 2, 1, true, true, 0};
        config.precision = precision;
        const models::vision::AttentionLS2D<lsattn::cpu> layer(config, models::vision::Weights<float>::random(config, 4));
        const auto x = random_tensor(Shape<3>{1, 1 + side * side, 24});
        REQUIRE(layer.forward(x.view(), side, side, workspace).values() == layer.forward(x.view(), side, side).values());
      }
    }
  }
}

namespace {

// The fp32 paths with their own softmax code (eigen uses Eigen's exp, checked by every oracle test).
std::vector<lsattn::Fp32Path> vector_softmax_paths() {
  std::vector<lsattn::Fp32Path> paths;
  for (const auto path : runnable_fp32_paths())
    if (path != lsattn::Fp32Path::eigen) paths.push_back(path);
  return paths;
}

// |got − exp(x)| within 4·10⁻⁷ relative (a few ulp) plus one denormal step; a result below the
// smallest normal float may also be flushed to 0; NaN stays NaN. x ≤ 88 (the kernels' domain).
bool close_to_exp(float got, double x) {
  if (std::isnan(x)) return std::isnan(got);
  const double want = std::exp(x);
  if (want < std::numeric_limits<float>::min() && got == 0.0f) return true;
  return std::abs(got - want) <= 4e-7 * want + 1.5e-45;
}

}  // namespace

TEST_CASE("the vector exp of the softmax kernels is accurate over its domain", "[kernels][fp32][softmax]") {
  PathGuard guard;
  // The domain is x ≤ 88 (the softmax passes x − max ≤ 0); below about −87.68 results are 0.
  std::vector<float> inputs;
  for (double x = -120.0; x <= 88.0; x += 0.01) inputs.push_back(static_cast<float>(x));
  for (float x : {0.0f, -0.0f, 1e-30f, -1e-30f, 88.0f, 87.99f, -87.33f, -87.34f, -87.6f, -87.7f, -88.0f, -88.1f, -103.9f,
                  -104.0f, -110.0f, -1e30f, -std::numeric_limits<float>::infinity(),
                  std::numeric_limits<float>::quiet_NaN()})
    inputs.push_back(x);
  for (const auto path : vector_softmax_paths()) {
    INFO("path " << lsattn::fp32_path_name(path));
    std::vector<float> values = inputs;
    cpu::exp_shifted(values.data(), static_cast<index_t>(values.size()), 0.0f, path);
    for (std::size_t i = 0; i < inputs.size(); ++i) {
      INFO("x = " << inputs[i] << ", got " << values[i] << ", exp " << std::exp(static_cast<double>(inputs[i])));
      REQUIRE(close_to_exp(values[i], inputs[i]));
      // The same value alone (the padded tail) as in the long row: position does not matter.
      float alone = inputs[i];
      cpu::exp_shifted(&alone, 1, 0.0f, path);
      REQUIRE(std::memcmp(&alone, &values[i], sizeof alone) == 0);
    }
    float minus_infinity = -std::numeric_limits<float>::infinity();
    cpu::exp_shifted(&minus_infinity, 1, 3.0f, path);
    REQUIRE(minus_infinity == 0.0f);  // masked scores give probability exactly 0
  }
}

TEST_CASE("softmax kernels: maximum, shifted exp and sum, division, on every length", "[kernels][fp32][softmax]") {
  PathGuard guard;
  std::mt19937 rng(13);
  for (const auto path : vector_softmax_paths()) {
    INFO("path " << lsattn::fp32_path_name(path));
    for (index_t n = 0; n <= 70; ++n) {
      INFO("n " << n);
      auto row = random_values(static_cast<std::size_t>(n) + 1, rng);
      for (auto& v : row) v *= 8.0f;
      if (n > 3) row[static_cast<std::size_t>(n / 2)] = -std::numeric_limits<float>::infinity();  // a masked key
      const float sentinel = row[static_cast<std::size_t>(n)];
      const std::vector<float> before = row;
      double want_max = -std::numeric_limits<double>::infinity();
      for (index_t i = 0; i < n; ++i) want_max = std::max(want_max, static_cast<double>(before[i]));
      REQUIRE(cpu::row_max(row.data(), n, path) == static_cast<float>(want_max));
      if (n == 0) continue;
      std::vector<double> want(static_cast<std::size_t>(n));
      double sum = 0;
      // x − max rounded to float as the kernel does; the rest in float64. Bound: the exp's few
      // ulp and the float sum of at most 70 terms.
      for (index_t i = 0; i < n; ++i)
        sum += want[i] = std::exp(static_cast<double>(before[i] - static_cast<float>(want_max)));
      cpu::softmax_row(row.data(), n, path);
      for (index_t i = 0; i < n; ++i) REQUIRE(std::abs(row[i] - want[i] / sum) <= 4e-6 * (want[i] / sum) + 1e-12);
      REQUIRE(row[static_cast<std::size_t>(n)] == sentinel);  // nothing past the row is written
      // exp(x − shift) against a shift row: the compression's column softmax.
      std::vector<float> shift(static_cast<std::size_t>(n)), out(static_cast<std::size_t>(n) + 1, 7.0f);
      for (auto& s : shift) s = static_cast<float>(want_max) + std::uniform_real_distribution<float>(0.0f, 3.0f)(rng);
      cpu::exp_difference(before.data(), shift.data(), out.data(), n, path);
      for (index_t i = 0; i < n; ++i)
        REQUIRE(close_to_exp(out[i], static_cast<double>(before[i] - shift[i])));
      REQUIRE(out[static_cast<std::size_t>(n)] == 7.0f);
    }
  }
}
