// The bidirectional attention on CUDA: the query tiling and visibility of the tiled
// tensor-core kernel (host-side, everywhere), and both kernels against the CPU backend (GPU).
#include <catch2/catch.hpp>

#include <random>

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

// One configuration: the CPU backend on the inputs as rounded to T, and the CUDA backend in T.
template <class T>
void compare_bidirectional(const Case& c, std::mt19937_64& rng, double tolerance) {
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

  const auto dq = upload_as<T>(q), dk = upload_as<T>(k), dv = upload_as<T>(v), dl = upload_as<T>(logits);
  const auto dcq = upload_as<T>(cls_q), dck = upload_as<T>(cls_k), dcv = upload_as<T>(cls_v);
  const auto dm = upload_as<T>(mask);
  const auto dw = upload_as<T>(ln_w), db = upload_as<T>(ln_b);
  using Attention = lsattn::LongShortAttention<lsattn::cuda, T>;
  const Attention gpu(config);
  typename Attention::Inputs in{dq.view(), dk.view(), dv.view(), rank ? dl.view() : lsattn::DeviceView<const T, 3>{},
                                masked ? dm.view() : lsattn::DeviceView<const T, 2>{}};
  if (c.with_cls) in.cls_query = dcq.view(), in.cls_key = dck.view(), in.cls_value = dcv.view();
  lsattn::DeviceTensor<T, 3> context(want.shape());
  lsattn::DeviceTensor<unsigned char, 1> workspace(Shape<1>{static_cast<index_t>(gpu.workspace_bytes(in))});
  gpu(in, {{dw.view(), db.view()}, {dw.view(), db.view()}}, context.view(), cudaStream_t{}, workspace_of(workspace));
  INFO("nh=" << c.heads << " dh=" << c.head_dim << " w=" << c.window << " r=" << rank << " L=" << length
             << " cls=" << c.with_cls << " mask=" << masked);
  CHECK(relative_error(context, want) < tolerance);
}

}  // namespace

TEST_CASE("CUDA query tiles cover every query once, inside one window segment", "[cuda][tiled]") {
  std::mt19937_64 rng(3);
  for (int trial = 0; trial < 300; ++trial) {
    const index_t length = 1 + static_cast<index_t>(rng() % 700), segment = trial % 7 == 0 ? 0 : 1 + static_cast<index_t>(rng() % 260);
    const QueryTiling tiling{length, segment};
    const lsattn::SegmentVisibility visibility{lsattn::BidirectionalWindow::segments(segment)};
    INFO("L=" << length << " segment=" << segment);
    index_t next = 0;
    for (index_t i = 0; i < tiling.count(); ++i) {
      const IndexRange tile = tiling.tile(i);
      if (tile.size() == 0) continue;  // trailing tiles of a partial last segment
      REQUIRE(tile.begin == next);     // in order, no gap, no overlap
      REQUIRE(tile.size() <= lsattn::cuda_detail::tile_rows);
      next = tile.end;
      if (segment > 0) REQUIRE(tile.begin / segment == (tile.end - 1) / segment);
      const IndexRange needed = visibility.keys(tile.begin, tile.end, length);
      for (index_t t = tile.begin; t < tile.end; ++t) {
        const IndexRange seen = visibility.row_keys(t, length);
        // The window rule of the CPU backend, and inside what the tile loads.
        if (segment > 0) REQUIRE(seen == lsattn::BidirectionalWindow::segments(segment).keys(t / segment, length));
        else REQUIRE(seen.size() == 0);
        if (seen.size() > 0) REQUIRE((needed.begin <= seen.begin && seen.end <= needed.end));
      }
    }
    REQUIRE(next == length);
  }
}

TEST_CASE("CUDA tiled kernel: sliding and full visibility rows lie inside their tile's key range", "[cuda][tiled]") {
  for (index_t length : {1, 63, 64, 65, 300})
    for (index_t window : {1, 2, 17, 64, 129})
      for (bool causal : {false, true}) {
        const QueryTiling tiling{length, 0};
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

// Small segments (w < 16) and any head_dim go to the one-block-per-query kernel; segments of at
// least 16 queries with head_dim 16/32/64/128 in __half/__nv_bfloat16 to the tiled kernel.
TEMPLATE_TEST_CASE("CUDA bidirectional attention matches the CPU backend", "[cuda][gpu]", float, __half, __nv_bfloat16) {
  if (!lsattn::cuda_detail::device_available()) {
    WARN("no CUDA device: GPU comparison skipped (host-side CUDA tests still ran)");
    return;
  }
  std::mt19937_64 rng(5);
  const double tolerance = tolerance_for<TestType>(2e-2, 6e-2);
  SECTION("small windows, odd head sizes (one block per query)") {
    for (int trial = 0; trial < 20; ++trial) {
      const index_t heads = 1 + trial % 3, head_dim = 8 << (trial % 3);
      const index_t window = trial % 5 == 4 ? 0 : 1 + trial % 9, rank = trial % 4, length = 1 + (trial * 37) % 300;
      const bool with_cls = trial % 3 == 0, with_mask = trial % 2 == 1;
      if (window == 0 && rank == 0 && !with_cls) continue;
      compare_bidirectional<TestType>({heads, head_dim, window, rank, length, with_cls, with_mask}, rng, tolerance);
    }
  }
  SECTION("segments of 16 and more (tiled tensor-core kernel for 16-bit types)") {
    const Case cases[] = {
        {1, 16, 16, 0, 1, false, false},      {2, 32, 16, 3, 47, true, true},     {1, 64, 128, 64, 300, false, true},
        {2, 64, 128, 64, 1000, true, false},  {8, 64, 128, 64, 513, false, false}, {1, 128, 64, 8, 130, true, true},
        {2, 128, 200, 1, 401, false, true},   {3, 16, 0, 5, 77, true, false},     {1, 32, 24, 0, 100, false, true},
        {2, 64, 100, 2, 250, true, true},     {1, 64, 128, 4, 50, false, false},  {2, 64, 128, 64, 700, true, false, true},
        {1, 96, 32, 2, 90, false, true},  // head_dim 96: not tiled
    };
    for (const Case& c : cases) compare_bidirectional<TestType>(c, rng, tolerance);
  }
}
