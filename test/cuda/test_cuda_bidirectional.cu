// The bidirectional attention on CUDA: the query tiling and visibility of the tiled
// tensor-core kernel (host-side, everywhere), and both kernels against the CPU backend (GPU).
#include <catch2/catch.hpp>

#include <algorithm>
#include <array>
#include <cmath>
#include <cfloat>
#include <random>
#include <vector>

#include "cpu_reference.hpp"
#include "cuda_test_helpers.cuh"
#include "lsattn/backend/cuda/tiled_attention.cuh"

namespace {

using lsattn::index_t;
using lsattn::IndexRange;
using lsattn::Shape;
using lsattn::Tensor;
using lsattn::cuda_detail::QueryTiling;
using namespace lsattn_test;

struct Case {
  index_t heads, head_dim, window, rank, length;
  bool with_cls, with_mask, one_item_fully_padded = false;
  bool non_blocking_stream = false;  // launch on a cudaStreamNonBlocking stream, read back at once
  index_t batch = 2;                 // items, all in one launch of the tiled kernel
};

// A stream that does not synchronise with the legacy default stream.
struct NonBlockingStream {
  cudaStream_t stream{};
  NonBlockingStream() { lsattn::cuda_detail::check(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), "cudaStreamCreate"); }
  NonBlockingStream(const NonBlockingStream&) = delete;
  NonBlockingStream& operator=(const NonBlockingStream&) = delete;
  ~NonBlockingStream() { (void)cudaStreamDestroy(stream); }
};

// The CUDA backend in T on inputs made in float; returns the context read back as float.
template <class T>
Tensor<float, 3> run_gpu(const lsattn::AttentionConfig& config, const Case& c, const Tensor<float, 3>& q,
                         const Tensor<float, 3>& k, const Tensor<float, 3>& v, const Tensor<float, 3>& logits,
                         const Tensor<float, 3>& cls_q, const Tensor<float, 3>& cls_k, const Tensor<float, 3>& cls_v,
                         const Tensor<float, 2>& mask, bool masked, const Tensor<float, 1>& ln_w,
                         const Tensor<float, 1>& ln_b, const Shape<3>& out_shape) {
  const auto dq = lsattn::to_device<T>(q), dk = lsattn::to_device<T>(k), dv = lsattn::to_device<T>(v), dl = lsattn::to_device<T>(logits);
  const auto dcq = lsattn::to_device<T>(cls_q), dck = lsattn::to_device<T>(cls_k), dcv = lsattn::to_device<T>(cls_v);
  const auto dm = lsattn::to_device<T>(mask);
  const auto dw = lsattn::to_device<T>(ln_w), db = lsattn::to_device<T>(ln_b);
  using Attention = lsattn::LongShortAttention<lsattn::cuda, T>;
  const Attention gpu(config);
  typename Attention::Inputs in{dq.view(), dk.view(), dv.view(), c.rank ? dl.view() : lsattn::DeviceView<const T, 3>{},
                                masked ? dm.view() : lsattn::DeviceView<const T, 2>{}};
  if (c.with_cls) in.cls_query = dcq.view(), in.cls_key = dck.view(), in.cls_value = dcv.view();
  lsattn::DeviceTensor<T, 3> context(out_shape);
  lsattn::DeviceTensor<unsigned char, 1> workspace(Shape<1>{static_cast<index_t>(gpu.workspace_bytes(in))});
  if (c.non_blocking_stream) {
    // No synchronisation of our own: DeviceTensor::copy_to must wait for the stream's kernels.
    const NonBlockingStream stream;
    gpu(in, {{dw.view(), db.view()}, {dw.view(), db.view()}}, context.view(), stream.stream, workspace_of(workspace));
    return lsattn::to_host<float>(context);
  }
  gpu(in, {{dw.view(), db.view()}, {dw.view(), db.view()}}, context.view(), cudaStream_t{}, workspace_of(workspace));
  return lsattn::to_host<float>(context);  // waits for the device
}

// One configuration: the CPU backend on the inputs as rounded to T against the CUDA backend in
// T. Where the tiled kernel takes the call it must have (on an sm_80+ device), and the
// one-block-per-query kernels on the same inputs must agree with it closely.
template <class T>
void compare_bidirectional(const Case& c, std::mt19937_64& rng, double tolerance, double kernel_tolerance) {
  const index_t width = c.heads * c.head_dim, rank = c.rank, length = c.length;
  const auto q = random_tensor<float>(Shape<3>{c.batch, length, width}, rng), k = random_tensor<float>(q.shape(), rng),
             v = random_tensor<float>(q.shape(), rng);
  const auto logits = random_tensor<float>(Shape<3>{c.batch, length, c.heads * rank}, rng);
  const auto cls_q = random_tensor<float>(Shape<3>{c.batch, 1, width}, rng), cls_k = random_tensor<float>(cls_q.shape(), rng),
             cls_v = random_tensor<float>(cls_q.shape(), rng);
  Tensor<float, 2> mask(Shape<2>{c.batch, length}, 1.0f);
  if (c.with_mask)
    for (auto& m : mask.values()) m = std::bernoulli_distribution(0.3)(rng) ? 0.0f : 1.0f;
  if (c.one_item_fully_padded)
    for (index_t t = 0; t < length; ++t) mask(1, t) = 0.0f;
  const bool masked = c.with_mask || c.one_item_fully_padded;
  Tensor<float, 1> ln_w(Shape<1>{width}, 1.0f), ln_b(Shape<1>{width}, 0.125f);  // exact in every dtype
  const lsattn::AttentionConfig config{c.heads, c.head_dim, c.window, rank};

  const auto qr = rounded_as<T>(q), kr = rounded_as<T>(k), vr = rounded_as<T>(v), lr = rounded_as<T>(logits);
  const auto cqr = rounded_as<T>(cls_q), ckr = rounded_as<T>(cls_k), cvr = rounded_as<T>(cls_v);
  Tensor<float, 3> want(Shape<3>{c.batch, length + (c.with_cls ? 1 : 0), width});
  lsattn::AttentionInputs<float> cpu_in{qr.view(), kr.view(), vr.view(), rank ? lr.view() : lsattn::HostView<const float, 3>{},
                                        masked ? mask.view() : lsattn::HostView<const float, 2>{}};
  if (c.with_cls) cpu_in.cls_query = cqr.view(), cpu_in.cls_key = ckr.view(), cpu_in.cls_value = cvr.view();
  cpu_bidirectional(config, cpu_in, {{ln_w.view(), ln_b.view()}, {ln_w.view(), ln_b.view()}}, want.view());

  INFO("B=" << c.batch << " nh=" << c.heads << " dh=" << c.head_dim << " w=" << c.window << " r=" << rank << " L=" << length
             << " cls=" << c.with_cls << " mask=" << masked);
  auto run = [&] { return run_gpu<T>(config, c, q, k, v, logits, cls_q, cls_k, cls_v, mask, masked, ln_w, ln_b, want.shape()); };
  const Tensor<float, 3> got = run();
  CHECK(host_relative_error(got, want) < tolerance);

  // The dispatch: 16-bit types with head_dim 16/32/64/128 take the tiled kernel on sm_80+.
  const bool tiled_shape = lsattn::cuda_detail::tensor_core_type<T> &&
                           (c.head_dim == 16 || c.head_dim == 32 || c.head_dim == 64 || c.head_dim == 128);
  if (!tiled_shape) return;
  if (!tiled_kernels_present()) return;
  const lsattn::DeviceTensor<T, 3> probe(Shape<3>{1, 1, width});
  REQUIRE(lsattn::cuda_detail::tiled_applies<T>(c.head_dim, probe.view().data(), width));
  const Tensor<float, 3> per_query = [&] {
    const ScopedValue scope(lsattn::cuda_detail::tiled_kernel_enabled(), false);
    return run();
  }();
  const Tensor<float, 3> wmma = [&] {
    const ScopedValue scope(lsattn::cuda_detail::mma_kernel_enabled(), false);
    return run();
  }();
  INFO("the mma kernel against the WMMA kernel it replaced, same dtype and inputs");
  CHECK(host_relative_error(got, wmma) < kernel_tolerance);
  INFO("tiled kernels against the one-block-per-query kernels, same dtype and inputs");
  CHECK(host_relative_error(got, per_query) < kernel_tolerance);
}

}  // namespace

TEST_CASE("CUDA query tiles cover every query once, and the window's rows lie inside their tile's keys", "[cuda][tiled]") {
  std::mt19937_64 rng(3);
  for (int trial = 0; trial < 300; ++trial) {
    const index_t length = 1 + static_cast<index_t>(rng() % 700), segment = trial % 7 == 0 ? 0 : 1 + static_cast<index_t>(rng() % 260);
    const QueryTiling tiling{length};
    const lsattn::BidirectionalWindow window =
        trial % 11 == 0 ? lsattn::BidirectionalWindow::self_only() : lsattn::BidirectionalWindow::segments(segment);
    const lsattn::SegmentVisibility visibility{window};
    INFO("L=" << length << " w=" << window.block << " ext=" << window.extension);
    index_t next = 0;
    for (index_t i = 0; i < tiling.count(); ++i) {
      const IndexRange tile = tiling.tile(i);
      REQUIRE(tile.size() > 0);
      REQUIRE(tile.begin == next);  // in order, no gap, no overlap
      REQUIRE(tile.size() <= lsattn::cuda_detail::tile_rows);
      next = tile.end;
      const IndexRange needed = visibility.keys(tile.begin, tile.end, length);
      index_t lowest = length, highest = 0;
      for (index_t t = tile.begin; t < tile.end; ++t) {
        const IndexRange seen = visibility.row_keys(t, length);
        // The window rule of the CPU backend, and inside what the tile loads.
        if (window.enabled()) REQUIRE(seen == window.keys(t / window.block, length));
        else REQUIRE(seen.size() == 0);
        if (seen.size() > 0) {
          REQUIRE((needed.begin <= seen.begin && seen.end <= needed.end));
          lowest = std::min(lowest, seen.begin);
          highest = std::max(highest, seen.end);
        }
      }
      // ... and the tile loads nothing its rows do not see at either end.
      if (window.enabled()) REQUIRE((needed.begin == lowest && needed.end == highest));
    }
    REQUIRE(next == length);
  }
}

TEST_CASE("CUDA chunked projection statistics: merged summaries equal the direct max and sum", "[cuda][statistics]") {
  using lsattn::cuda_detail::LogitSummary;
  std::mt19937_64 rng(17);
  std::normal_distribution<float> normal(0.0f, 3.0f);
  for (int trial = 0; trial < 200; ++trial) {
    const index_t length = static_cast<index_t>(rng() % 1200), chunk = 1 + static_cast<index_t>(rng() % 300);
    std::vector<float> logits(static_cast<std::size_t>(length));
    std::vector<char> valid(static_cast<std::size_t>(length));
    for (index_t t = 0; t < length; ++t) {
      logits[t] = normal(rng) + (trial % 5 == 0 ? 40.0f : 0.0f);
      valid[t] = trial % 7 == 0 ? 0 : (rng() % 4 != 0);  // some trials have no valid token at all
    }
    LogitSummary merged;
    for (index_t first = 0; first < length; first += chunk) {
      LogitSummary part;
      for (index_t t = first; t < std::min(length, first + chunk); ++t)
        if (valid[t]) part.add(logits[t]);
      merged.merge(part);
    }
    double top = -HUGE_VAL, total = 0;
    for (index_t t = 0; t < length; ++t)
      if (valid[t]) top = std::max(top, static_cast<double>(logits[t]));
    for (index_t t = 0; t < length; ++t)
      if (valid[t]) total += std::exp(logits[t] - top);
    INFO("L=" << length << " chunk=" << chunk);
    if (total == 0) {
      CHECK(merged.total == 0);
      CHECK(merged.top == -FLT_MAX);
    } else {
      CHECK(merged.top == static_cast<float>(top));
      CHECK(std::abs(merged.total - total) <= 1e-5 * total);
    }
  }
}

TEST_CASE("CUDA tiled kernel: sliding and full visibility rows lie inside their tile's key range", "[cuda][tiled]") {
  for (index_t length : {1, 63, 64, 65, 300})
    for (index_t window : {1, 2, 17, 64, 129})
      for (bool causal : {false, true}) {
        const QueryTiling tiling{length};
        const lsattn::SlidingVisibility sliding{window, causal};
        const lsattn::FullVisibility full{causal};
        for (index_t i = 0; i < tiling.count(); ++i) {
          const IndexRange tile = tiling.tile(i), local = sliding.keys(tile.begin, tile.end, length),
                           everything = full.keys(tile.begin, tile.end, length);
          for (index_t t = tile.begin; t < tile.end; ++t) {
            const IndexRange row = sliding.row_keys(t, length), all = full.row_keys(t, length);
            CHECK((local.begin <= row.begin && row.end <= local.end));
            CHECK((everything.begin <= all.begin && all.end <= everything.end));
            CHECK(row.size() <= window);
          }
        }
      }
}

TEST_CASE("CUDA batch in grid z: each item's pointers move by their own stride, shared globals stay", "[cuda][tiled]") {
  using lsattn::cuda_detail::BatchStrides;
  using lsattn::cuda_detail::TiledKeys;
  // Addresses only (never dereferenced): one buffer large enough for every offset below.
  std::vector<__half> halves(4096);
  std::vector<float> floats(4096);
  const __half* base = halves.data();
  const float* global_base = floats.data();
  const BatchStrides strides{100, 7, 30, 120, 11};  // the bidirectional call with a cls row: context ≠ rows
  for (index_t item : {0, 1, 3}) {
    const __half* query = base;
    const __half* mask = base + 1;
    __half* context = halves.data() + 2;
    float* row_max = floats.data() + 3;
    TiledKeys<__half> keys{base + 4, base + 5, global_base + 6, global_base + 7, 2, 64};
    lsattn::cuda_detail::select_batch_item(item, strides, query, keys, mask, context, row_max);
    CHECK(query == base + 100 * item);
    CHECK(keys.key == base + 4 + 100 * item);
    CHECK(keys.value == base + 5 + 100 * item);
    CHECK(mask == base + 1 + 7 * item);
    CHECK(context == halves.data() + 2 + 120 * item);
    CHECK(row_max == floats.data() + 3 + 30 * item);
    CHECK(keys.global_key == global_base + 6 + 11 * item);
    CHECK(keys.global_value == global_base + 7 + 11 * item);
  }
  // No mask, no row maxima, no global rows: they stay null for every item.
  const __half* query = base;
  const __half* mask = nullptr;
  __half* context = halves.data();
  float* row_max = nullptr;
  TiledKeys<__half> keys{base, base, nullptr, nullptr, 0, 64};
  lsattn::cuda_detail::select_batch_item(index_t{2}, strides, query, keys, mask, context, row_max);
  CHECK(mask == nullptr);
  CHECK(row_max == nullptr);
  CHECK(keys.global_key == nullptr);
  CHECK(keys.global_value == nullptr);
}

TEST_CASE("CUDA tiled kernel: shared memory fits the sm_80 opt-in limit", "[cuda][tiled]") {
  using lsattn::cuda_detail::TileLayout;
  CHECK(TileLayout<__nv_bfloat16, 64>::bytes <= 99 * 1024);  // even sm_86/89 run head_dim 64 tiled
  CHECK(TileLayout<__half, 128>::bytes <= 163 * 1024);       // sm_80's opt-in maximum
}

// float and head sizes other than 16/32/64/128 run the one-block-per-query kernel; __half and
// __nv_bfloat16 with those head sizes the tiled kernel (on sm_80+), checked against both the CPU
// backend and the per-query kernel.
TEMPLATE_TEST_CASE("CUDA bidirectional attention matches the CPU backend", "[cuda][gpu]", float, __half, __nv_bfloat16) {
  if (!gpu_present()) return;
  std::mt19937_64 rng(5);
  // Relative to max |want|: bf16 keeps 8 bits, fp16 11; K, V after the LN and P are rounded to T.
  const double tolerance = tolerance_for<TestType>(5e-3, 2.5e-2), kernel_tolerance = tolerance_for<TestType>(3e-3, 1.5e-2);
  SECTION("small windows, odd head sizes") {
    for (int trial = 0; trial < 20; ++trial) {
      const index_t heads = 1 + trial % 3, head_dim = 8 << (trial % 3);
      const index_t window = trial % 5 == 4 ? 0 : 1 + trial % 9, rank = trial % 4, length = 1 + (trial * 37) % 300;
      const bool with_cls = trial % 3 == 0, with_mask = trial % 2 == 1;
      if (window == 0 && rank == 0 && !with_cls) continue;
      compare_bidirectional<TestType>({heads, head_dim, window, rank, length, with_cls, with_mask}, rng, tolerance,
                                      kernel_tolerance);
    }
  }
  SECTION("the published shapes and the awkward ones") {
    const Case cases[] = {
        {1, 16, 16, 0, 1, false, false},      {2, 32, 16, 3, 47, true, true},      {1, 64, 128, 64, 300, false, true},
        {2, 64, 128, 64, 1000, true, false},  {8, 64, 128, 64, 513, false, false}, {1, 128, 64, 8, 130, true, true},
        {2, 128, 200, 1, 401, false, true},   {3, 16, 0, 5, 77, true, false},      {1, 32, 24, 0, 100, false, true},
        {2, 64, 100, 2, 250, true, true},     {1, 64, 128, 4, 50, false, false},   {2, 64, 128, 64, 700, true, false, true},
        {1, 96, 32, 2, 90, false, true},      // head_dim 96: per-query kernel
        {2, 32, 8, 0, 200, false, true},      // LRA's w = 8: several segments per tile
        {1, 64, 16, 0, 64, false, false},     // 32 keys per row: one wrong key shows
        {2, 16, 1, 0, 70, false, true},       // w = 1: three keys per row
        {2, 16, 0, 0, 33, true, true},        // w ≤ 0, r = 0 with cls: each token sees itself
        {2, 64, 16, 40, 300, true, true},     // r = 40: a warp with padded landmarks
        {1, 32, 8, 17, 257, false, true},     // r = 17, L just past a compression chunk
        {2, 32, 8, 32, 130, true, true, false, false, 7},  // LRA-like batch: 7 items in grid z, cls, mask
        {1, 64, 16, 3, 65, false, false, false, false, 1},  // one item
    };
    for (const Case& c : cases) compare_bidirectional<TestType>(c, rng, tolerance, kernel_tolerance);
  }
}

// ---- The mma.sync kernel's fragment geometry, replayed on the host --------------------------
// An emulation of ldmatrix.x4 and mma.m16n8k16 written from the PTX ISA's fragment tables (not
// from the kernel's helpers): the helpers must route a warp's loads and products so that the
// results are Q·Kᵀ and P·V.
namespace {

using Register = std::array<double, 2>;  // two 16-bit lanes of a 32-bit register, low first
using WarpRegisters = std::array<std::array<Register, 4>, 32>;

// ldmatrix.x4: lanes 8j…8j+7 give the rows of 8×8 matrix j; lane l receives in register j
// row l/4, columns 2(l%4) and 2(l%4)+1 of matrix j (transposed: rows 2(l%4), 2(l%4)+1 of column l/4).
template <class At>
WarpRegisters emulate_ldmatrix_x4(At&& element_at_row_start, bool transposed) {
  WarpRegisters out{};
  for (int lane = 0; lane < 32; ++lane)
    for (int j = 0; j < 4; ++j)
      for (int half = 0; half < 2; ++half) {
        const int row = transposed ? 2 * (lane % 4) + half : lane / 4;
        const int col = transposed ? lane / 4 : 2 * (lane % 4) + half;
        out[lane][j][half] = element_at_row_start(8 * j + row, col);  // row of matrix j, given by lane 8j + row
      }
  return out;
}

// mma.m16n8k16 (row.col): A 16×16 in a0…a3, B 16×8 in b0, b1, C/D 16×8 in c0…c3 per lane.
std::array<std::array<double, 4>, 32> emulate_mma(const WarpRegisters& a, const std::array<std::array<Register, 2>, 32>& b,
                                                  std::array<std::array<double, 4>, 32> c) {
  double A[16][16], B[16][8];
  for (int lane = 0; lane < 32; ++lane) {
    const int g = lane / 4, t = lane % 4;
    for (int reg = 0; reg < 4; ++reg)
      for (int half = 0; half < 2; ++half) A[g + 8 * (reg % 2)][2 * t + half + 8 * (reg / 2)] = a[lane][reg][half];
    for (int reg = 0; reg < 2; ++reg)
      for (int half = 0; half < 2; ++half) B[2 * t + half + 8 * reg][g] = b[lane][reg][half];
  }
  for (int lane = 0; lane < 32; ++lane) {
    const int g = lane / 4, t = lane % 4;
    for (int i = 0; i < 4; ++i) {
      const int row = g + 8 * (i / 2), col = 2 * t + i % 2;
      for (int k = 0; k < 16; ++k) c[lane][i] += A[row][k] * B[k][col];
    }
  }
  return c;
}

}  // namespace

TEST_CASE("CUDA mma kernels: fragment geometry computes Q Kt, P V and the compression Pt K (host emulation of ldmatrix and mma)", "[cuda][mma]") {
  namespace geometry = lsattn::cuda_detail::mma_geometry;
  constexpr int head_dim = 32, keys = 64;
  std::mt19937_64 rng(41);
  std::uniform_int_distribution<int> small(-4, 4);  // exact in double and in 16 bits
  double Q[16][head_dim], K[keys][head_dim], V[keys][head_dim];
  for (auto& row : Q) for (double& x : row) x = small(rng);
  for (auto& row : K) for (double& x : row) x = small(rng);
  for (auto& row : V) for (double& x : row) x = small(rng);

  // The kernel's loads: lane `lane` hands the row starting at cell(lane) (+ the block's corner);
  // emulate_ldmatrix_x4 asks for (matrix row index = the addressing lane, column within 8).
  auto load = [](auto&& matrix, auto cell_of, int row0, int col0, bool transposed) {
    return emulate_ldmatrix_x4([&](int addressing_lane, int col) {
      const geometry::Cell cell = cell_of(addressing_lane);
      return matrix(row0 + cell.row, col0 + cell.col + col);
    }, transposed);
  };
  auto q_at = [&](int r, int c) { return Q[r][c]; };
  auto k_at = [&](int r, int c) { return K[r][c]; };
  auto v_at = [&](int r, int c) { return V[r][c]; };
  auto b_pair = [](const WarpRegisters& regs, int first) {
    std::array<std::array<Register, 2>, 32> b{};
    for (int lane = 0; lane < 32; ++lane) b[lane] = {regs[lane][first], regs[lane][first + 1]};
    return b;
  };

  std::array<std::array<std::array<double, 4>, 32>, keys / 8> s{};
  for (int kk = 0; kk < head_dim / 16; ++kk) {
    const WarpRegisters qa = load(q_at, geometry::a_load_cell, 0, kk * 16, false);
    // Where each half of each A register came from (the causal kernel adds its biases by column).
    for (int lane = 0; lane < 32; ++lane)
      for (int reg = 0; reg < 4; ++reg)
        for (int half = 0; half < 2; ++half) {
          const geometry::Cell cell = geometry::a_fragment_cell(lane, reg, half);
          REQUIRE(qa[lane][reg][half] == Q[cell.row][kk * 16 + cell.col]);
        }
    for (int pair = 0; pair < keys / 16; ++pair) {
      const WarpRegisters kb = load(k_at, geometry::key_load_cell, pair * 16, kk * 16, false);
      s[2 * pair] = emulate_mma(qa, b_pair(kb, 0), s[2 * pair]);
      s[2 * pair + 1] = emulate_mma(qa, b_pair(kb, 2), s[2 * pair + 1]);
    }
  }
  double S[16][keys];
  for (int nt = 0; nt < keys / 8; ++nt)
    for (int lane = 0; lane < 32; ++lane)
      for (int i = 0; i < 4; ++i) {
        const geometry::Cell cell = geometry::accumulator_cell(lane, i);
        S[cell.row][nt * 8 + cell.col] = s[nt][lane][i];
      }
  for (int r = 0; r < 16; ++r)
    for (int n = 0; n < keys; ++n) {
      double want = 0;
      for (int f = 0; f < head_dim; ++f) want += Q[r][f] * K[n][f];
      REQUIRE(S[r][n] == want);
    }

  // P = S (any values do): A fragments from the accumulators, V through ldmatrix.trans.
  std::array<std::array<std::array<double, 4>, 32>, head_dim / 8> o{};
  for (int kk = 0; kk < keys / 16; ++kk) {
    WarpRegisters pa{};
    for (int lane = 0; lane < 32; ++lane)
      for (int reg = 0; reg < 4; ++reg) {
        const geometry::PackedSource source = geometry::p_fragment_source(reg);
        const auto& from = s[2 * kk + source.tile_offset][lane];
        pa[lane][reg] = {from[source.first], from[source.first + 1]};
      }
    for (int pair = 0; pair < head_dim / 16; ++pair) {
      const WarpRegisters vb = load(v_at, geometry::value_load_cell, kk * 16, pair * 16, true);
      o[2 * pair] = emulate_mma(pa, b_pair(vb, 0), o[2 * pair]);
      o[2 * pair + 1] = emulate_mma(pa, b_pair(vb, 2), o[2 * pair + 1]);
    }
  }
  for (int nt = 0; nt < head_dim / 8; ++nt)
    for (int lane = 0; lane < 32; ++lane)
      for (int i = 0; i < 4; ++i) {
        const geometry::Cell cell = geometry::accumulator_cell(lane, i);
        double want = 0;
        for (int n = 0; n < keys; ++n) want += S[cell.row][n] * V[n][nt * 8 + cell.col];
        REQUIRE(o[nt][lane][i] == want);
      }

  // The compression's Pᵀ K: P token-major (64 tokens × 16 landmarks), A through ldmatrix.trans.
  double P[keys][16];
  for (auto& row : P) for (double& x : row) x = small(rng);
  auto p_at = [&](int r, int c) { return P[r][c]; };
  std::array<std::array<std::array<double, 4>, 32>, head_dim / 8> k_bar{};
  for (int kk = 0; kk < keys / 16; ++kk) {
    const WarpRegisters pa = load(p_at, geometry::key_load_cell, kk * 16, 0, true);
    for (int pair = 0; pair < head_dim / 16; ++pair) {
      const WarpRegisters kb = load(k_at, geometry::value_load_cell, kk * 16, pair * 16, true);
      k_bar[2 * pair] = emulate_mma(pa, b_pair(kb, 0), k_bar[2 * pair]);
      k_bar[2 * pair + 1] = emulate_mma(pa, b_pair(kb, 2), k_bar[2 * pair + 1]);
    }
  }
  for (int nt = 0; nt < head_dim / 8; ++nt)
    for (int lane = 0; lane < 32; ++lane)
      for (int i = 0; i < 4; ++i) {
        const geometry::Cell cell = geometry::accumulator_cell(lane, i);  // (landmark, feature)
        double want = 0;
        for (int n = 0; n < keys; ++n) want += P[n][cell.row] * K[n][nt * 8 + cell.col];
        REQUIRE(k_bar[nt][lane][i] == want);
      }
}

TEST_CASE("CUDA mma kernel: key tiles cover the globals and the tile's key range once, the range test is skipped exactly where every row sees the tile",
          "[cuda][mma]") {
  using lsattn::cuda_detail::KeyTileSpan;
  using lsattn::cuda_detail::KeyTiling;
  std::mt19937_64 rng(43);
  for (int trial = 0; trial < 400; ++trial) {
    const index_t length = 1 + static_cast<index_t>(rng() % 900), globals = static_cast<index_t>(rng() % 140);
    const index_t w = 1 + static_cast<index_t>(rng() % 300);
    const int kind = trial % 4;
    auto row_keys = [&](index_t t) {
      if (kind == 0) return lsattn::SegmentVisibility{lsattn::BidirectionalWindow::segments(w)}.row_keys(t, length);
      if (kind == 1) return lsattn::SlidingVisibility{w, true}.row_keys(t, length);
      if (kind == 2) return lsattn::SlidingVisibility{w, false}.row_keys(t, length);
      return lsattn::FullVisibility{true}.row_keys(t, length);
    };
    auto tile_keys = [&](index_t first, index_t last) {
      if (kind == 0) return lsattn::SegmentVisibility{lsattn::BidirectionalWindow::segments(w)}.keys(first, last, length);
      if (kind == 1) return lsattn::SlidingVisibility{w, true}.keys(first, last, length);
      if (kind == 2) return lsattn::SlidingVisibility{w, false}.keys(first, last, length);
      return lsattn::FullVisibility{true}.keys(first, last, length);
    };
    const lsattn::cuda_detail::QueryTiling queries{length};
    for (index_t qi = 0; qi < queries.count(); ++qi) {
      const IndexRange rows = queries.tile(qi);
      const KeyTiling tiling{globals, tile_keys(rows.begin, rows.end)};
      index_t highest_begin = 0, lowest_end = length;
      for (index_t t = rows.begin; t < rows.end; ++t) {
        highest_begin = std::max(highest_begin, row_keys(t).begin);
        lowest_end = std::min(lowest_end, row_keys(t).end);
      }
      INFO("kind=" << kind << " L=" << length << " w=" << w << " globals=" << globals << " tile=" << qi);
      index_t next_global = 0, next_local = tiling.local.begin;
      for (index_t j = 0; j < tiling.count(); ++j) {
        const KeyTileSpan span = tiling.tile(j);
        REQUIRE(span.end > span.begin);
        REQUIRE(span.end - span.begin <= lsattn::cuda_detail::tile_rows);
        index_t& next = span.global ? next_global : next_local;
        REQUIRE(span.begin == next);  // in order, no gap, no overlap
        next = span.end;
        const bool in_every_row = lsattn::cuda_detail::key_tile_in_every_row(span, highest_begin, lowest_end);
        bool seen_by_all = !span.global;  // what the kernel may skip testing, from the rows themselves
        for (index_t t = rows.begin; t < rows.end && seen_by_all; ++t)
          for (index_t key = span.begin; key < span.end; ++key) seen_by_all = seen_by_all && row_keys(t).contains(key);
        REQUIRE(in_every_row == seen_by_all);  // never skips a needed test, and skips every one it can
      }
      REQUIRE(next_global == globals);
      REQUIRE(next_local == std::max(tiling.local.begin, tiling.local.end));
    }
  }
}

// Issue 14's untested risks, on a GPU.
TEST_CASE("CUDA boundaries: 48 KiB per-query limit, L past 64K, a non-blocking stream, no stale probe error",
          "[cuda][gpu][boundaries]") {
  if (!gpu_present()) return;
  std::mt19937_64 rng(47);
  SECTION("the capability probe leaves no error behind") {
    (void)lsattn::cuda_detail::TiledSupport::current();
    CHECK(cudaGetLastError() == cudaSuccess);
  }
  SECTION("the per-query kernel with exactly max_scores_per_query scores, and one more refused") {
    const index_t limit = lsattn::cuda_detail::max_scores_per_query;  // 12256 = r + 2w (w even)
    const index_t window = 6000, rank = limit - 2 * window;
    compare_bidirectional<float>({1, 8, window, rank, 12100, false, true}, rng, 2e-4, 2e-4);
    const lsattn::AttentionConfig over{1, 8, window, rank + 1};
    const lsattn::LongShortAttention<lsattn::cuda, float> gpu(over);
    const lsattn::DeviceTensor<float, 3> x(Shape<3>{1, 100, 8}), logits(Shape<3>{1, 100, rank + 1});
    lsattn::DeviceTensor<float, 3> out(x.shape());
    const lsattn::DeviceTensor<float, 1> ones(Shape<1>{8});
    const lsattn::LongShortAttention<lsattn::cuda, float>::Inputs in{x.view(), x.view(), x.view(), logits.view()};
    lsattn::DeviceTensor<unsigned char, 1> workspace(Shape<1>{static_cast<index_t>(gpu.workspace_bytes(in))});
    CHECK_THROWS_WITH(gpu(in, {{ones.view(), ones.view()}, {ones.view(), ones.view()}}, out.view(), cudaStream_t{},
                          workspace_of(workspace)),
                      Catch::Matchers::Contains("rank + window keys") && Catch::Matchers::Contains("12257"));
  }
  SECTION("L = 64K + 77 in bf16 (tiled kernels) against the CPU backend") {
    compare_bidirectional<__nv_bfloat16>({2, 64, 128, 64, 65536 + 77, false, true}, rng, 2.5e-2, 1.5e-2);
  }
  SECTION("kernels on a non-blocking stream, read back by DeviceTensor::copy_to") {
    Case c{8, 64, 128, 64, 16384, false, false};
    c.non_blocking_stream = true;
    compare_bidirectional<__nv_bfloat16>(c, rng, 2.5e-2, 1.5e-2);
  }
}
