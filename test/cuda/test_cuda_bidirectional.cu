// The bidirectional attention on CUDA: the query tiling and visibility of the tiled
// tensor-core kernel (host-side, everywhere), and both kernels against the CPU backend (GPU).
#include <catch2/catch.hpp>

#include <algorithm>
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
};

// The CUDA backend in T on inputs made in float; returns the context read back as float.
template <class T>
Tensor<float, 3> run_gpu(const lsattn::AttentionConfig& config, const Case& c, const Tensor<float, 3>& q,
                         const Tensor<float, 3>& k, const Tensor<float, 3>& v, const Tensor<float, 3>& logits,
                         const Tensor<float, 3>& cls_q, const Tensor<float, 3>& cls_k, const Tensor<float, 3>& cls_v,
                         const Tensor<float, 2>& mask, bool masked, const Tensor<float, 1>& ln_w,
                         const Tensor<float, 1>& ln_b, const Shape<3>& out_shape) {
  const auto dq = upload_as<T>(q), dk = upload_as<T>(k), dv = upload_as<T>(v), dl = upload_as<T>(logits);
  const auto dcq = upload_as<T>(cls_q), dck = upload_as<T>(cls_k), dcv = upload_as<T>(cls_v);
  const auto dm = upload_as<T>(mask);
  const auto dw = upload_as<T>(ln_w), db = upload_as<T>(ln_b);
  using Attention = lsattn::LongShortAttention<lsattn::cuda, T>;
  const Attention gpu(config);
  typename Attention::Inputs in{dq.view(), dk.view(), dv.view(), c.rank ? dl.view() : lsattn::DeviceView<const T, 3>{},
                                masked ? dm.view() : lsattn::DeviceView<const T, 2>{}};
  if (c.with_cls) in.cls_query = dcq.view(), in.cls_key = dck.view(), in.cls_value = dcv.view();
  lsattn::DeviceTensor<T, 3> context(out_shape);
  lsattn::DeviceTensor<unsigned char, 1> workspace(Shape<1>{static_cast<index_t>(gpu.workspace_bytes(in))});
  gpu(in, {{dw.view(), db.view()}, {dw.view(), db.view()}}, context.view(), cudaStream_t{}, workspace_of(workspace));
  lsattn::cuda_detail::check(cudaDeviceSynchronize(), "synchronize");
  Tensor<T, 3> host(out_shape);
  context.copy_to(host.view());
  Tensor<float, 3> out(out_shape);
  for (index_t i = 0; i < out.size(); ++i) out.values()[i] = static_cast<float>(host.values()[i]);
  return out;
}

// max |got − want| / max |want| on the host (infinite for a NaN or infinity).
double host_relative_error(const Tensor<float, 3>& got, const Tensor<float, 3>& want) {
  double worst = 0, scale = 1e-3;
  for (float x : want.values()) scale = std::max(scale, static_cast<double>(std::abs(x)));
  for (index_t i = 0; i < got.size(); ++i) {
    const double difference = std::abs(static_cast<double>(got.values()[i]) - want.values()[i]);
    if (!std::isfinite(difference)) return HUGE_VAL;
    worst = std::max(worst, difference);
  }
  return worst / scale;
}

// One configuration: the CPU backend on the inputs as rounded to T against the CUDA backend in
// T. Where the tiled kernel takes the call it must have (on an sm_80+ device), and the
// one-block-per-query kernels on the same inputs must agree with it closely.
template <class T>
void compare_bidirectional(const Case& c, std::mt19937_64& rng, double tolerance, double kernel_tolerance) {
  const index_t width = c.heads * c.head_dim, rank = c.rank, length = c.length;
  const auto q = random_tensor<float>(Shape<3>{2, length, width}, rng), k = random_tensor<float>(q.shape(), rng),
             v = random_tensor<float>(q.shape(), rng);
  const auto logits = random_tensor<float>(Shape<3>{2, length, c.heads * rank}, rng);
  const auto cls_q = random_tensor<float>(Shape<3>{2, 1, width}, rng), cls_k = random_tensor<float>(cls_q.shape(), rng),
             cls_v = random_tensor<float>(cls_q.shape(), rng);
  Tensor<float, 2> mask(Shape<2>{2, length}, 1.0f);
  if (c.with_mask)
    for (auto& m : mask.values()) m = std::bernoulli_distribution(0.3)(rng) ? 0.0f : 1.0f;
  if (c.one_item_fully_padded)
    for (index_t t = 0; t < length; ++t) mask(1, t) = 0.0f;
  const bool masked = c.with_mask || c.one_item_fully_padded;
  Tensor<float, 1> ln_w(Shape<1>{width}, 1.0f), ln_b(Shape<1>{width}, 0.125f);  // exact in every dtype
  const lsattn::AttentionConfig config{c.heads, c.head_dim, c.window, rank};

  const auto qr = rounded_as<T>(q), kr = rounded_as<T>(k), vr = rounded_as<T>(v), lr = rounded_as<T>(logits);
  const auto cqr = rounded_as<T>(cls_q), ckr = rounded_as<T>(cls_k), cvr = rounded_as<T>(cls_v);
  Tensor<float, 3> want(Shape<3>{2, length + (c.with_cls ? 1 : 0), width});
  lsattn::AttentionInputs<float> cpu_in{qr.view(), kr.view(), vr.view(), rank ? lr.view() : lsattn::HostView<const float, 3>{},
                                        masked ? mask.view() : lsattn::HostView<const float, 2>{}};
  if (c.with_cls) cpu_in.cls_query = cqr.view(), cpu_in.cls_key = ckr.view(), cpu_in.cls_value = cvr.view();
  cpu_bidirectional(config, cpu_in, {{ln_w.view(), ln_b.view()}, {ln_w.view(), ln_b.view()}}, want.view());

  INFO("nh=" << c.heads << " dh=" << c.head_dim << " w=" << c.window << " r=" << rank << " L=" << length
             << " cls=" << c.with_cls << " mask=" << masked);
  auto run = [&] { return run_gpu<T>(config, c, q, k, v, logits, cls_q, cls_k, cls_v, mask, masked, ln_w, ln_b, want.shape()); };
  const Tensor<float, 3> got = run();
  CHECK(host_relative_error(got, want) < tolerance);

  // The dispatch: 16-bit types with head_dim 16/32/64/128 take the tiled kernel on sm_80+.
  const bool tiled_shape = lsattn::cuda_detail::tensor_core_type<T> &&
                           (c.head_dim == 16 || c.head_dim == 32 || c.head_dim == 64 || c.head_dim == 128);
  if (!tiled_shape) return;
  if (!lsattn::cuda_detail::TiledSupport::current().capable) {
    WARN("this device (or build) cannot run the tiled kernels: only the per-query kernels were tested");
    return;
  }
  const lsattn::DeviceTensor<T, 3> probe(Shape<3>{1, 1, width});
  REQUIRE(lsattn::cuda_detail::tiled_applies<T>(c.head_dim, probe.view().data(), width));
  const Tensor<float, 3> per_query = [&] {
    struct PerQueryKernels {  // the tiled kernels are back on even if run() throws
      PerQueryKernels() { lsattn::cuda_detail::tiled_kernel_enabled() = false; }
      ~PerQueryKernels() { lsattn::cuda_detail::tiled_kernel_enabled() = true; }
    } scope;
    return run();
  }();
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

TEST_CASE("CUDA tiled kernel: shared memory fits the sm_80 opt-in limit", "[cuda][tiled]") {
  using lsattn::cuda_detail::TileLayout;
  CHECK(TileLayout<__nv_bfloat16, 64>::bytes <= 99 * 1024);  // even sm_86/89 run head_dim 64 tiled
  CHECK(TileLayout<__half, 128>::bytes <= 163 * 1024);       // sm_80's opt-in maximum
}

// float and head sizes other than 16/32/64/128 run the one-block-per-query kernel; __half and
// __nv_bfloat16 with those head sizes the tiled kernel (on sm_80+), checked against both the CPU
// backend and the per-query kernel.
TEMPLATE_TEST_CASE("CUDA bidirectional attention matches the CPU backend", "[cuda][gpu]", float, __half, __nv_bfloat16) {
  if (!lsattn::cuda_detail::device_available()) {
    WARN("no CUDA device: GPU comparison skipped (host-side CUDA tests still ran)");
    return;
  }
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
    };
    for (const Case& c : cases) compare_bidirectional<TestType>(c, rng, tolerance, kernel_tolerance);
  }
}
