#pragma once
// The CPU's reduced-precision matrix product: C (m × n, float) = A (m × k) · B (k × n) with both
// operands rounded to bfloat16 (nearest, ties to even) and the products summed in float.
// Three paths compute the same rounded operands; which one runs is chosen at run time:
//  - avx512_bf16: AVX-512-BF16 dot products (vdpbf16ps: two bf16 products into one float lane),
//    register-blocked 8 × 32; compiled for that instruction set with a target attribute, so
//    one binary runs on any x86-64 and uses it only where CPUID reports it;
//  - emulated: the rounded operands widened back to float and multiplied by the fp32 product
//    (its active path: the avx2 or avx512 kernel, or Eigen); any CPU;
//  - amx: AMX tiles (32 × 32 blocks of C from 16-row A tiles and the avx512_bf16 packing of B),
//    on Linux with AMX-BF16; chosen only on request until it has run on an AMX machine.
// The environment variable LSATTN_BF16_PATH (emulated | avx512_bf16 | amx) or set_bf16_path()
// forces a path, so tests exercise every path the machine can run.
#include <algorithm>
#include <array>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "lsattn/backend/cpu/eigen.hpp"
#include "lsattn/backend/cpu/kernel_path.hpp"
#include "lsattn/backend/cpu/matmul_f32.hpp"
#include "lsattn/core/error.hpp"
#include "lsattn/core/half.hpp"
#include "lsattn/core/tensor.hpp"

#if LSATTN_HAS_X86_KERNELS
#define LSATTN_HAS_AVX512_BF16_KERNEL 1
#define LSATTN_AVX512_BF16_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))
#else
#define LSATTN_HAS_AVX512_BF16_KERNEL 0
#endif
// AMX tiles (Sapphire Rapids and later): Linux only, where the process must ask for the tile
// state (arch_prctl) before the first tile instruction.
#if LSATTN_HAS_X86_KERNELS && defined(__linux__)
#define LSATTN_HAS_AMX_KERNEL 1
// Only the tile instructions: the kernel's instantiation on emulated tiles (tests) then runs on
// any x86-64.
#define LSATTN_AMX_TARGET __attribute__((target("amx-tile,amx-bf16")))
#include <cpuid.h>
#include <sys/syscall.h>
#include <unistd.h>
#else
#define LSATTN_HAS_AMX_KERNEL 0
#endif

namespace lsattn {

// amx: AMX bf16 tiles (tdpbf16ps), on B packed as for avx512_bf16. Not chosen automatically
// until it has run on an AMX machine (none so far): LSATTN_BF16_PATH=amx or set_bf16_path.
enum class Bf16Path { emulated, avx512_bf16, amx };

namespace cpu_detail {

// Test aid: the amx path's kernel runs on a scalar model of the tile instructions
// (EmulatedAmxTiles) instead of the hardware, and the path counts as available wherever its
// packing (avx512_bf16) runs, so that the kernel's index rules are tested on CPUs without AMX.
inline std::atomic<bool>& amx_tiles_emulated() {
  static std::atomic<bool> emulated{false};
  return emulated;
}

// Whether this CPU has AMX tiles with bf16 and Linux lets this process use them (asked once).
inline bool amx_usable() {
#if LSATTN_HAS_AMX_KERNEL
  static const bool usable = [] {
    unsigned a = 0, b = 0, c = 0, d = 0;
    if (__get_cpuid_count(7, 0, &a, &b, &c, &d) == 0) return false;
    const bool tiles = ((d >> 24) & 1u) != 0 && ((d >> 22) & 1u) != 0;  // AMX-TILE, AMX-BF16
    constexpr long arch_req_xcomp_perm = 0x1023, xfeature_xtiledata = 18;
    return tiles && cpu_supports_avx512(/*with_bf16=*/true) &&
           syscall(SYS_arch_prctl, arch_req_xcomp_perm, xfeature_xtiledata) == 0;
  }();
  return usable;
#else
  return false;
#endif
}

template <>
struct PathTraits<Bf16Path> {
  static constexpr std::array<const char*, 3> names{"emulated", "avx512_bf16", "amx"};
  static constexpr const char* variable = "LSATTN_BF16_PATH";
  static constexpr const char* setter = "set_bf16_path";
  static bool available(Bf16Path path) {
    if (path == Bf16Path::amx) {
      return amx_usable() || (LSATTN_HAS_AMX_KERNEL && amx_tiles_emulated() && cpu_supports_avx512(/*with_bf16=*/true));
    }
    return path == Bf16Path::emulated || cpu_supports_avx512(/*with_bf16=*/true);
  }
  static bool automatic(Bf16Path path) { return path != Bf16Path::amx; }  // unverified: asked for only
};
}  // namespace cpu_detail

inline const char* bf16_path_name(Bf16Path path) { return cpu_detail::path_name(path); }

// Whether this CPU (and this build) can run `path`.
inline bool bf16_path_available(Bf16Path path) { return cpu_detail::PathTraits<Bf16Path>::available(path); }

// Forces `path` for every later bf16 product of this process; throws when this CPU cannot run it.
inline void set_bf16_path(Bf16Path path) { cpu_detail::force_path(path); }

// Back to the default: LSATTN_BF16_PATH if set (read again at the next product: the variable is
// read once, not per product), else the fastest available path.
inline void reset_bf16_path() { cpu_detail::reset_path_choice<Bf16Path>(); }

// The path bf16 products take now. A path named in LSATTN_BF16_PATH that this CPU cannot run
// is an error, not a silent fallback.
inline Bf16Path active_bf16_path() { return cpu_detail::active_path<Bf16Path>(); }

namespace cpu_detail {

inline constexpr index_t bf16_panel = 32;  // columns of B per packed panel (two 16-lane vectors)
inline constexpr index_t bf16_rows = 8;    // rows of A per micro-kernel call

inline float round_to_bf16(float x) { return bfloat16_to_float(float_to_bfloat16(x)); }

// B packed for one path. avx512_bf16: panels of 32 columns; in each, pair p of column j is the
// 32-bit word (B[2p][j], B[2p+1][j]) at words[(panel·pairs + p)·32 + j], zero beyond k and n.
// emulated: B rounded to bf16, widened back and packed for the fp32 product.
struct PackedB {
  Bf16Path path = Bf16Path::emulated;
  index_t k = 0, n = 0, pairs = 0, panels = 0;
  std::vector<std::uint32_t> words;
  PackedF32 rounded;
};

// Rows [k_begin, k_begin + k) and columns [n_begin, n_begin + n) of a packed B, for products
// with a block of keys out of a sequence packed once. On the avx512_bf16 path k_begin must be
// even and n_begin a multiple of bf16_panel; rows past k_begin + k up to the next even row are
// multiplied by A's zero padding.
struct PackedSlice {
  const PackedB* b = nullptr;
  index_t k_begin = 0, k = 0, n_begin = 0, n = 0;
};

inline PackedSlice whole(const PackedB& b) { return {&b, 0, b.k, 0, b.n}; }

inline PackedSlice slice(const PackedB& b, index_t k_begin, index_t k, index_t n_begin, index_t n) {
  if (b.path != Bf16Path::emulated) {
    require(k_begin % 2 == 0 && n_begin % bf16_panel == 0, "lsattn internal: unaligned bf16 slice (", k_begin, ", ",
            n_begin, ")");
  }
  return {&b, k_begin, k, n_begin, n};
}

// A's rows rounded to bf16, k padded to even with zero; row i at bits[i · 2·pairs] (the AMX
// tiles' layout).
struct RoundedA {
  index_t pairs = 0;
  std::vector<std::uint16_t> bits;
};

// A rounded to bf16 for the avx512_bf16 micro-kernel, k padded to even with zero, in groups of
// bf16_rows rows with the rows of a group interleaved: pair p of row r of group g is the 32-bit
// word at words[(g·pairs + p)·bf16_rows + r]; rows past m are zero. The kernel then reads one
// group's broadcasts from one 32-byte line at fixed offsets, instead of through bf16_rows row
// pointers (which the compiler kept in vector registers and on the stack, reloading them every
// step: the kernel ran at about 85% of the instruction's rate).
struct InterleavedA {
  index_t pairs = 0;
  std::vector<std::uint32_t> words;
};

#if LSATTN_HAS_AVX512_BF16_KERNEL
// Rounds 16 floats to bf16 (nearest even), as 16 bits each.
LSATTN_AVX512_BF16_TARGET inline __m256i bf16_of(__m512 x) { return (__m256i)_mm512_cvtneps_pbh(x); }

LSATTN_AVX512_BF16_TARGET inline void round_rows_avx512(const float* a, index_t lda, index_t m, index_t k,
                                                       std::uint16_t* out, index_t out_stride) {
  for (index_t i = 0; i < m; ++i) {
    const float* row = a + i * lda;
    std::uint16_t* target = out + i * out_stride;
    index_t c = 0;
    for (; c + 16 <= k; c += 16) _mm256_storeu_si256(reinterpret_cast<__m256i*>(target + c), bf16_of(_mm512_loadu_ps(row + c)));
    if (c < k) {
      const __mmask16 mask = static_cast<__mmask16>((1u << (k - c)) - 1u);
      _mm256_mask_storeu_epi16(target + c, mask, bf16_of(_mm512_maskz_loadu_ps(mask, row + c)));
    }
    if (k % 2 != 0) target[k] = 0;
  }
}

// Packs B given k × n (rows ldb apart): each pair of rows interleaves into 32-bit words.
LSATTN_AVX512_BF16_TARGET inline void pack_b_rows_avx512(const float* b, index_t ldb, PackedB& packed) {
  for (index_t panel = 0; panel < packed.panels; ++panel) {
    const index_t n0 = panel * bf16_panel;
    for (index_t half = 0; half < 2; ++half) {
      const index_t column = n0 + half * 16;
      const index_t live = std::clamp<index_t>(packed.n - column, 0, 16);
      const __mmask16 mask = live >= 16 ? static_cast<__mmask16>(0xffff) : static_cast<__mmask16>((1u << live) - 1u);
      for (index_t p = 0; p < packed.pairs; ++p) {
        const index_t r0 = 2 * p, r1 = 2 * p + 1;
        const __m512 even = live > 0 ? _mm512_maskz_loadu_ps(mask, b + r0 * ldb + column) : _mm512_setzero_ps();
        const __m512 odd = live > 0 && r1 < packed.k ? _mm512_maskz_loadu_ps(mask, b + r1 * ldb + column) : _mm512_setzero_ps();
        // maskz forms with every lane on: the unmasked ones trip GCC 12.2's -Wmaybe-uninitialized.
        const __m512i low = _mm512_maskz_cvtepu16_epi32(0xffff, bf16_of(even));
        const __m512i high = _mm512_maskz_slli_epi32(0xffff, _mm512_maskz_cvtepu16_epi32(0xffff, bf16_of(odd)), 16);
        _mm512_storeu_si512(packed.words.data() + (panel * packed.pairs + p) * bf16_panel + half * 16,
                            _mm512_or_si512(low, high));
      }
    }
  }
}

// Transposes 8 × 8 32-bit words: row j of the result is column j of the input.
LSATTN_AVX512_BF16_TARGET inline void transpose_words_8x8(__m256i (&rows)[8]) {
  __m256 r[8], t[8];
  LSATTN_UNROLL
  for (int i = 0; i < 8; ++i) r[i] = _mm256_castsi256_ps(rows[i]);
  LSATTN_UNROLL
  for (int i = 0; i < 4; ++i) {
    t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  LSATTN_UNROLL
  for (int i = 0; i < 2; ++i)
    LSATTN_UNROLL
    for (int h = 0; h < 2; ++h) {
      r[4 * i + 2 * h] = _mm256_shuffle_ps(t[4 * i + h], t[4 * i + h + 2], 0x44);
      r[4 * i + 2 * h + 1] = _mm256_shuffle_ps(t[4 * i + h], t[4 * i + h + 2], 0xee);
    }
  // r[j], j < 4: column j of rows 0-3 in the low half, column j + 4 in the high half; r[4 + j]:
  // the same of rows 4-7.
  LSATTN_UNROLL
  for (int i = 0; i < 4; ++i) {
    rows[i] = _mm256_castps_si256(_mm256_permute2f128_ps(r[i], r[i + 4], 0x20));
    rows[i + 4] = _mm256_castps_si256(_mm256_permute2f128_ps(r[i], r[i + 4], 0x31));
  }
}

// Sizes `out` for A of m × k (its groups are then filled by round_interleaved_group).
inline void prepare_interleaved(index_t m, index_t k, InterleavedA& out) {
  out.pairs = (k + 1) / 2;
  const index_t groups = (m + bf16_rows - 1) / bf16_rows;
  out.words.resize(static_cast<std::size_t>(groups * out.pairs * bf16_rows));
}

// Rounds group g of A (m × k, rows lda apart) into `out`, 8 rows × 16 columns at a time.
LSATTN_AVX512_BF16_TARGET inline void round_interleaved_group(const float* a, index_t lda, index_t m, index_t k,
                                                             index_t g, InterleavedA& out) {
  static_assert(bf16_rows == 8, "the rounding transposes 8 × 8 words");
  const index_t rows = std::min(bf16_rows, m - g * bf16_rows);
  std::uint32_t* group = out.words.data() + g * out.pairs * bf16_rows;
  for (index_t c = 0; c < k; c += 16) {
    const index_t live = std::min<index_t>(16, k - c), pairs = (live + 1) / 2;
    const __mmask16 mask = live >= 16 ? static_cast<__mmask16>(0xffff) : static_cast<__mmask16>((1u << live) - 1u);
    __m256i words[8];
    LSATTN_UNROLL
    for (index_t r = 0; r < 8; ++r)  // a masked-off lane reads as 0: the odd-k pad and the rows past m
      words[r] = r < rows ? bf16_of(_mm512_maskz_loadu_ps(mask, a + (g * bf16_rows + r) * lda + c))
                          : _mm256_setzero_si256();
    transpose_words_8x8(words);
    // The pairs' lines are contiguous: a whole chunk is 8 stores (a loop of `pairs` stores
    // compiled into a call to memmove: 3.6% of the LRA text layer's time).
    auto* line = reinterpret_cast<__m256i*>(group + (c / 2) * bf16_rows);  // one line of 8 words per pair
    if (pairs == 8) {
      LSATTN_UNROLL
      for (int p = 0; p < 8; ++p) _mm256_storeu_si256(line + p, words[p]);
    } else {
      for (index_t p = 0; p < pairs; ++p) _mm256_storeu_si256(line + p, words[p]);
    }
  }
}

// C[rows × cols] (+)= one interleaved group of A · one packed panel of B.
template <int Rows>
LSATTN_AVX512_BF16_TARGET inline void micro_kernel_avx512(index_t pairs, const std::uint32_t* group,
                                                         const std::uint32_t* panel, float* c, index_t ldc,
                                                         index_t cols, bool accumulate) {
  __m512 sum[Rows][2];
  LSATTN_UNROLL
  for (int i = 0; i < Rows; ++i) sum[i][0] = sum[i][1] = _mm512_setzero_ps();
  for (index_t p = 0; p < pairs; ++p) {
    const __m512bh b0 = (__m512bh)_mm512_loadu_si512(panel + p * bf16_panel);
    const __m512bh b1 = (__m512bh)_mm512_loadu_si512(panel + p * bf16_panel + 16);
    const std::uint32_t* words = group + p * bf16_rows;
    LSATTN_UNROLL
    for (int i = 0; i < Rows; ++i) {
      const __m512bh pair = (__m512bh)_mm512_set1_epi32(static_cast<int>(words[i]));
      sum[i][0] = _mm512_dpbf16_ps(sum[i][0], pair, b0);
      sum[i][1] = _mm512_dpbf16_ps(sum[i][1], pair, b1);
    }
  }
  store_tile<Rows>(sum, c, ldc, cols, accumulate);
}

template <int Rows = bf16_rows>
LSATTN_AVX512_BF16_TARGET inline void micro_kernel_rows(index_t rows, index_t pairs, const std::uint32_t* group,
                                                       const std::uint32_t* panel, float* c, index_t ldc, index_t cols,
                                                       bool accumulate) {
  if constexpr (Rows > 0) {
    if (rows == Rows) return micro_kernel_avx512<Rows>(pairs, group, panel, c, ldc, cols, accumulate);
    return micro_kernel_rows<Rows - 1>(rows, pairs, group, panel, c, ldc, cols, accumulate);
  }
}

// Row groups outside, panels inside: a group of A (bf16_rows · k bf16) stays in L1 while the
// packed B streams from L2, rather than all of A streaming from memory once per panel. The
// panels are taken bf16_panel_block at a time so that a block of B stays in L2 however wide B is.
inline constexpr index_t bf16_panel_block = 8;

// C (+)= A · B slice, A (m × k, rows lda apart) rounded into `rounded`. Products as wide as a
// block of panels (a Linear layer's row block) round A group by group as the first block of
// panels reaches it, and prefetch the next group's rows while a group's products run, a share
// before each panel: rounded all at once before the products, A came from memory with nothing
// to overlap it (BM_ProjectionGemm bf16 22.5 → 20.7 ms, best of 5). Narrower products (attention
// blocks, whose A was just written) round A first: there the prefetches cost 5–6%.
LSATTN_AVX512_BF16_TARGET inline void matmul_avx512(const float* a, index_t lda, index_t m, const PackedSlice& slice,
                                                   float* c, index_t ldc, bool accumulate, InterleavedA& rounded) {
  const PackedB& b = *slice.b;
  const index_t k = slice.k, first_panel = slice.n_begin / bf16_panel, panels = (slice.n + bf16_panel - 1) / bf16_panel;
  prepare_interleaved(m, k, rounded);
  const bool streamed = panels >= bf16_panel_block && m > bf16_rows;
  if (!streamed)
    for (index_t i = 0; i < m; i += bf16_rows) round_interleaved_group(a, lda, m, k, i / bf16_rows, rounded);
  const index_t lines_per_row = (k * index_t{sizeof(float)} + 63) / 64;
  for (index_t block = 0; block < panels; block += bf16_panel_block) {
    const index_t block_end = std::min(panels, block + bf16_panel_block), block_panels = block_end - block;
    for (index_t i = 0; i < m; i += bf16_rows) {
      const bool first_block = streamed && block == 0;
      if (first_block) round_interleaved_group(a, lda, m, k, i / bf16_rows, rounded);
      const index_t next_rows = first_block ? std::clamp<index_t>(m - i - bf16_rows, 0, bf16_rows) : 0;
      const index_t next_lines = next_rows * lines_per_row;
      const std::uint32_t* group = rounded.words.data() + i * rounded.pairs;  // (i / bf16_rows) · pairs · bf16_rows
      for (index_t q = block; q < block_end; ++q) {
        // This panel's share of the next group's lines (no division per line: they cost more
        // than the prefetches).
        if (next_lines > 0) {  // (k = 0 has no lines)
          const index_t share_begin = next_lines * (q - block) / block_panels;
          const index_t share_end = next_lines * (q - block + 1) / block_panels;
          index_t row = share_begin / lines_per_row, line = share_begin % lines_per_row;
          for (index_t l = share_begin; l < share_end; ++l) {
            _mm_prefetch(reinterpret_cast<const char*>(a + (i + bf16_rows + row) * lda) + line * 64, _MM_HINT_T0);
            if (++line == lines_per_row) line = 0, ++row;
          }
        }
        const index_t n0 = q * bf16_panel, cols = std::min(bf16_panel, slice.n - n0);
        const std::uint32_t* words = b.words.data() + ((first_panel + q) * b.pairs + slice.k_begin / 2) * bf16_panel;
        micro_kernel_rows(std::min(bf16_rows, m - i), rounded.pairs, group, words, c + i * ldc + n0, ldc, cols,
                          accumulate);
      }
    }
  }
}
#endif

#if LSATTN_HAS_AMX_KERNEL
inline constexpr index_t amx_pairs = 16;               // pair rows of a B tile (k = 32 per step)
inline constexpr index_t amx_tile_rows = 16;           // rows of an A or C tile
inline constexpr index_t amx_rows = 2 * amx_tile_rows;  // rows of A per block: two tiles

// The C tiles of the lower 16 rows start this far below the upper ones (rows `stride` bytes apart).
inline const float* amx_lower_rows(const float* c, index_t stride) { return c + amx_tile_rows * (stride / 4); }
inline float* amx_lower_rows(float* c, index_t stride) { return c + amx_tile_rows * (stride / 4); }

// The tile configuration: tiles 0-3 the 2 × 2 fp32 C blocks (16 × 16), 4-5 two A tiles (16 rows
// × 32 bf16), 6-7 two B tiles (16 pair rows × 16 columns); every tile 16 rows of 64 bytes.
struct alignas(64) AmxConfig {
  std::uint8_t palette = 1, start_row = 0;
  std::uint8_t reserved[14] = {};
  std::uint16_t bytes_per_row[16] = {};
  std::uint8_t rows[16] = {};
};

// The tile instructions as the kernel uses them, by role: tiles 0-3 the 2 × 2 C blocks (C[i][j]
// from A tile i and B tile j), 4-5 the A tiles, 6-7 the B tiles. `lower`: whether the lower 16
// rows (C tiles 2-3, A tile 5) take part; a block of at most 16 rows leaves them out. C tiles
// load from and store to a float matrix: tile 0 at `c`, 1 at c + 16 columns, 2 and 3 16 rows
// below them, rows `stride` bytes apart.
struct HardwareAmxTiles {
  LSATTN_AMX_TARGET static void configure(const AmxConfig& config) { _tile_loadconfig(&config); }
  LSATTN_AMX_TARGET static void zero_c() {
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
  }
  LSATTN_AMX_TARGET static void load_c(const float* c, index_t stride, bool lower) {
    _tile_loadd(0, c, stride);
    _tile_loadd(1, c + 16, stride);
    if (!lower) return;
    const float* below = amx_lower_rows(c, stride);
    _tile_loadd(2, below, stride);
    _tile_loadd(3, below + 16, stride);
  }
  LSATTN_AMX_TARGET static void store_c(float* c, index_t stride, bool lower) {
    _tile_stored(0, c, stride);
    _tile_stored(1, c + 16, stride);
    if (!lower) return;
    float* below = amx_lower_rows(c, stride);
    _tile_stored(2, below, stride);
    _tile_stored(3, below + 16, stride);
  }
  LSATTN_AMX_TARGET static void load_a(const void* a0, const void* a1, index_t stride, bool lower) {
    _tile_loadd(4, a0, stride);
    if (lower) _tile_loadd(5, a1, stride);
  }
  LSATTN_AMX_TARGET static void load_b(const void* b0, const void* b1, index_t stride) {
    _tile_loadd(6, b0, stride);
    _tile_loadd(7, b1, stride);
  }
  LSATTN_AMX_TARGET static void multiply(bool lower) {
    _tile_dpbf16ps(0, 4, 6);
    _tile_dpbf16ps(1, 4, 7);
    if (!lower) return;
    _tile_dpbf16ps(2, 5, 6);
    _tile_dpbf16ps(3, 5, 7);
  }
  LSATTN_AMX_TARGET static void release() { _tile_release(); }
};

// A scalar model of the same instructions (Intel SDM: LDTILECFG, TILEZERO, TILELOADD,
// TDPBF16PS, TILESTORED, TILERELEASE), per thread, with the configured tile shapes: a load reads
// only the configured rows and bytes, and a product whose tile shapes disagree, or a tile used
// unconfigured, is an error (on the hardware: #UD). TDPBF16PS as specified: per pair, the even
// product then the odd one added to the float accumulator, rounded to nearest even, bf16 inputs
// with denormals read as zero, denormal sums flushed to zero.
class EmulatedAmxTiles {
 public:
  static void configure(const AmxConfig& config) {
    State& s = state();
    require(config.palette == 1, "amx emulation: palette ", int{config.palette}, " (expected 1)");
    for (int t = 0; t < 8; ++t) {
      require(config.rows[t] <= 16 && config.bytes_per_row[t] <= 64 && config.bytes_per_row[t] % 4 == 0,
              "amx emulation: tile ", t, " configured as ", int{config.rows[t]}, " rows of ", config.bytes_per_row[t],
              " bytes");
      s.tiles[t] = Tile{config.rows[t], config.bytes_per_row[t], {}};
    }
    s.configured = true;
  }
  static void zero_c() {
    for (int t = 0; t < 4; ++t) tile(t).data = {};
  }
  static void load_c(const float* c, index_t stride, bool lower) {
    load(0, c, stride);
    load(1, c + 16, stride);
    if (!lower) return;
    load(2, amx_lower_rows(c, stride), stride);
    load(3, amx_lower_rows(c, stride) + 16, stride);
  }
  static void store_c(float* c, index_t stride, bool lower) {
    store(0, c, stride);
    store(1, c + 16, stride);
    if (!lower) return;
    store(2, amx_lower_rows(c, stride), stride);
    store(3, amx_lower_rows(c, stride) + 16, stride);
  }
  static void load_a(const void* a0, const void* a1, index_t stride, bool lower) {
    load(4, a0, stride);
    if (lower) load(5, a1, stride);
  }
  static void load_b(const void* b0, const void* b1, index_t stride) {
    load(6, b0, stride);
    load(7, b1, stride);
  }
  static void multiply(bool lower) {
    dot(0, 4, 6);
    dot(1, 4, 7);
    if (!lower) return;
    dot(2, 5, 6);
    dot(3, 5, 7);
  }
  static void release() { state() = State{}; }

 private:
  struct Tile {
    int rows = 0, bytes = 0;
    std::array<std::array<std::uint8_t, 64>, 16> data{};
  };
  struct State {
    bool configured = false;
    std::array<Tile, 8> tiles;
  };
  static State& state() {
    thread_local State s;
    return s;
  }
  static Tile& tile(int t) {
    State& s = state();
    require(s.configured && s.tiles[t].rows > 0 && s.tiles[t].bytes > 0, "amx emulation: tile ", t,
            " used without a configuration");
    return s.tiles[t];
  }
  static void load(int t, const void* base, index_t stride) {
    Tile& target = tile(t);
    target.data = {};
    for (int r = 0; r < target.rows; ++r)
      std::memcpy(target.data[r].data(), static_cast<const std::uint8_t*>(base) + r * stride, target.bytes);
  }
  static void store(int t, void* base, index_t stride) {
    const Tile& source = tile(t);
    for (int r = 0; r < source.rows; ++r)
      std::memcpy(static_cast<std::uint8_t*>(base) + r * stride, source.data[r].data(), source.bytes);
  }
  static float bf16_at(const Tile& t, int row, int element) {  // denormals read as zero
    std::uint16_t bits;
    std::memcpy(&bits, t.data[row].data() + 2 * element, sizeof bits);
    if ((bits & 0x7f80u) == 0) bits &= 0x8000u;
    return bfloat16_to_float(bits);
  }
  static float flushed(float x) { return std::fpclassify(x) == FP_SUBNORMAL ? std::copysign(0.0f, x) : x; }
  static void dot(int c, int a, int b) {
    Tile &sum = tile(c), &left = tile(a), &right = tile(b);
    require(sum.rows == left.rows && sum.bytes == right.bytes && left.bytes == 4 * right.rows,
            "amx emulation: tdpbf16ps tile shapes disagree (C ", sum.rows, " × ", sum.bytes, " B, A ", left.rows, " × ",
            left.bytes, " B, B ", right.rows, " × ", right.bytes, " B)");
    for (int m = 0; m < sum.rows; ++m)
      for (int n = 0; n < sum.bytes / 4; ++n) {
        float value;
        std::memcpy(&value, sum.data[m].data() + 4 * n, sizeof value);
        for (int k = 0; k < right.rows; ++k) {
          value = flushed(value + bf16_at(left, m, 2 * k) * bf16_at(right, k, 2 * n));
          value = flushed(value + bf16_at(left, m, 2 * k + 1) * bf16_at(right, k, 2 * n + 1));
        }
        std::memcpy(sum.data[m].data() + 4 * n, &value, sizeof value);
      }
  }
};

// C (+)= A · B slice on AMX tiles (HardwareAmxTiles, or EmulatedAmxTiles in tests), in blocks of
// 32 × 32 (two A tiles, two B tiles, four C tiles), a last block of at most 16 rows on one A
// tile. A: rows padded with zeros to a multiple of 16 and pairs to a multiple of 16 (a.pairs).
// B: the avx512_bf16 packing, whose words end with 16 zero pair rows, so that the last step of a
// slice may read past it (those rows meet A's zero padding). Whole tiles load from and store to
// C itself (accumulating onto C's values); a block with partial tiles goes through a buffer.
template <class Tiles>
LSATTN_AMX_TARGET void matmul_amx(const RoundedA& a, index_t m, const PackedSlice& slice, float* c, index_t ldc,
                                  bool accumulate) {
  AmxConfig config;
  for (int t = 0; t < 8; ++t) {
    config.bytes_per_row[t] = 64;
    config.rows[t] = 16;
  }
  Tiles::configure(config);
  const PackedB& b = *slice.b;
  const index_t a_stride = 2 * a.pairs, steps = a.pairs / amx_pairs, first_panel = slice.n_begin / bf16_panel;
  alignas(64) float buffer[amx_rows][bf16_panel];
  const index_t c_stride = ldc * index_t{sizeof(float)}, buffer_stride = bf16_panel * index_t{sizeof(float)};
  for (index_t n0 = 0; n0 < slice.n; n0 += bf16_panel) {
    const index_t cols = std::min(bf16_panel, slice.n - n0);
    const std::uint32_t* words = b.words.data() + ((first_panel + n0 / bf16_panel) * b.pairs + slice.k_begin / 2) * bf16_panel;
    for (index_t i = 0; i < m; i += amx_rows) {
      const index_t rows = std::min(amx_rows, m - i);
      const bool lower = rows > amx_tile_rows, whole_tiles = cols == bf16_panel && rows % amx_tile_rows == 0;
      const std::uint16_t* a0 = a.bits.data() + i * a_stride;
      const std::uint16_t* a1 = a0 + amx_tile_rows * a_stride;
      float* corner = c + i * ldc + n0;
      if (whole_tiles && accumulate) Tiles::load_c(corner, c_stride, lower);
      else Tiles::zero_c();
      for (index_t step = 0; step < steps; ++step) {
        const std::uint32_t* b_rows = words + step * amx_pairs * bf16_panel;
        Tiles::load_a(a0 + step * 2 * amx_pairs, a1 + step * 2 * amx_pairs, a_stride * 2, lower);
        Tiles::load_b(b_rows, b_rows + 16, bf16_panel * 4);
        Tiles::multiply(lower);
      }
      if (whole_tiles) {
        Tiles::store_c(corner, c_stride, lower);
        continue;
      }
      Tiles::store_c(&buffer[0][0], buffer_stride, lower);
      for (index_t r = 0; r < rows; ++r) {
        float* target = corner + r * ldc;
        for (index_t col = 0; col < cols; ++col) target[col] = accumulate ? target[col] + buffer[r][col] : buffer[r][col];
      }
    }
  }
  Tiles::release();
}
#endif

// Packs B for the active path; `transposed`: `b` holds Bᵀ, n × k (a Linear weight [out, in] or
// a block of keys), rows ldb apart; otherwise B itself, k × n.
inline void pack_b(const float* b, index_t ldb, index_t k, index_t n, bool transposed, PackedB& packed) {
  packed.path = active_bf16_path();
  packed.k = k;
  packed.n = n;
  packed.pairs = (k + 1) / 2;
  packed.panels = (n + bf16_panel - 1) / bf16_panel;
  if (packed.path == Bf16Path::emulated) {
    // B packed like a float B, each element rounded as it is placed.
    pack_b(b, ldb, k, n, transposed, packed.rounded, [](float x) { return round_to_bf16(x); });
    return;
  }
#if LSATTN_HAS_AVX512_BF16_KERNEL
  // amx: 16 more zero pair rows after the last panel (its last step may read past the slice).
  const index_t tail = packed.path == Bf16Path::amx ? 16 * bf16_panel : 0;
  packed.words.assign(static_cast<std::size_t>(packed.panels * packed.pairs * bf16_panel + tail), 0u);
  if (!transposed) return pack_b_rows_avx512(b, ldb, packed);
  if (packed.pairs == 0) return;  // k = 0: nothing to place (and `words` is empty, its data() null)
  // Bᵀ rows are B's columns: round each to bf16 pairs, then place its words down the panel.
  thread_local std::vector<std::uint16_t> column;
  column.assign(static_cast<std::size_t>(2 * packed.pairs), 0);
  for (index_t j = 0; j < n; ++j) {
    round_rows_avx512(b + j * ldb, ldb, 1, k, column.data(), 2 * packed.pairs);
    std::uint32_t* target = packed.words.data() + (j / bf16_panel) * packed.pairs * bf16_panel + j % bf16_panel;
    for (index_t p = 0; p < packed.pairs; ++p) {
      std::uint32_t word;
      __builtin_memcpy(&word, column.data() + 2 * p, sizeof word);
      target[p * bf16_panel] = word;
    }
  }
#else
  throw error("lsattn internal: the avx512_bf16 path in a build without that kernel");
#endif
}

// C (m × n, rows ldc apart) = A · B, or += when `accumulate`; A is m × k, rows lda apart. B was
// packed by pack_b for the path active then.
inline void matmul_bf16(const float* a, index_t lda, index_t m, const PackedSlice& b, float* c, index_t ldc,
                        bool accumulate) {
  if (m == 0 || b.n == 0) return;
  if (b.b->path == Bf16Path::emulated) {
    thread_local std::vector<float> rounded;
    rounded.resize(static_cast<std::size_t>(m * b.k));
    for (index_t i = 0; i < m; ++i)
      for (index_t col = 0; col < b.k; ++col) rounded[i * b.k + col] = round_to_bf16(a[i * lda + col]);
    matmul_f32(rounded.data(), b.k, m, slice(b.b->rounded, b.k_begin, b.k, b.n_begin, b.n), c, ldc, accumulate);
    return;
  }
#if LSATTN_HAS_AVX512_BF16_KERNEL
#if LSATTN_HAS_AMX_KERNEL
  if (b.b->path == Bf16Path::amx) {  // zeros to whole tiles: rows to 16, pairs to 16
    thread_local RoundedA rounded;
    rounded.pairs = (b.k + 2 * amx_pairs - 1) / (2 * amx_pairs) * amx_pairs;
    const index_t rows = (m + amx_tile_rows - 1) / amx_tile_rows * amx_tile_rows;
    rounded.bits.assign(static_cast<std::size_t>(rows * 2 * rounded.pairs), 0);
    round_rows_avx512(a, lda, m, b.k, rounded.bits.data(), 2 * rounded.pairs);
    // The hardware only where it is usable: a B packed for amx under emulation never reaches it.
    if (amx_usable() && !amx_tiles_emulated()) return matmul_amx<HardwareAmxTiles>(rounded, m, b, c, ldc, accumulate);
    return matmul_amx<EmulatedAmxTiles>(rounded, m, b, c, ldc, accumulate);
  }
#endif
  thread_local InterleavedA interleaved;
  matmul_avx512(a, lda, m, b, c, ldc, accumulate, interleaved);
#else
  throw error("lsattn internal: B packed for avx512_bf16 in a build without that kernel");
#endif
}

inline void matmul_bf16(const float* a, index_t lda, index_t m, const PackedB& b, float* c, index_t ldc,
                        bool accumulate) {
  matmul_bf16(a, lda, m, whole(b), c, ldc, accumulate);
}

}  // namespace cpu_detail
}  // namespace lsattn
