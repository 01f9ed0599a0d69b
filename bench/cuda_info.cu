// What a GPU run needs to know first: the device, whether the tiled tensor-core kernels can run
// here (sm_80 code loaded, shared memory), and their registers, shared memory and occupancy per
// SM for the benchmarked shapes. Exit status 1 when no device is visible or the tiled kernels
// cannot run (the GPU bundle stops there: every later figure would be of the fallback kernels).
#include <cstdio>

#include "lsattn/backend/cuda/tiled_attention.cuh"
#include "lsattn/cuda.cuh"

namespace {

using namespace lsattn::cuda_detail;
using Visibility = SameVisibility<lsattn::SegmentVisibility>;

template <class Kernel>
void describe(const char* name, Kernel* kernel, std::size_t shared_bytes) {
  cudaFuncAttributes attributes{};
  check(cudaFuncGetAttributes(&attributes, kernel), "cudaFuncGetAttributes");
  check(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(shared_bytes)),
        "cudaFuncSetAttribute");
  int blocks = 0;
  check(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&blocks, kernel, tile_threads, shared_bytes),
        "cudaOccupancyMaxActiveBlocksPerMultiprocessor");
  std::printf("  %-34s registers %3d, shared %6zu B, local %4zu B, blocks/SM %d (%d warps)\n", name, attributes.numRegs,
              shared_bytes, static_cast<std::size_t>(attributes.localSizeBytes), blocks, blocks * tile_threads / 32);
}

}  // namespace

int main() {
  if (!device_available()) {
    std::fprintf(stderr, "lsattn_cuda_info: no CUDA device visible (driver missing, or no GPU)\n");
    return 1;
  }
  try {
    int device = 0;
    check(cudaGetDevice(&device), "cudaGetDevice");
    cudaDeviceProp properties{};
    check(cudaGetDeviceProperties(&properties, device), "cudaGetDeviceProperties");
    int driver = 0, runtime = 0;
    check(cudaDriverGetVersion(&driver), "cudaDriverGetVersion");
    check(cudaRuntimeGetVersion(&runtime), "cudaRuntimeGetVersion");
    std::printf("device: %s, sm_%d%d, %d SMs, %.1f GiB, shared memory per block (opt-in) %zu B\n", properties.name,
                properties.major, properties.minor, properties.multiProcessorCount,
                static_cast<double>(properties.totalGlobalMem) / (1 << 30), properties.sharedMemPerBlockOptin);
    std::printf("driver CUDA %d.%d, runtime %d.%d\n", driver / 1000, driver % 1000 / 10, runtime / 1000, runtime % 1000 / 10);
    const TiledSupport support = TiledSupport::current();
    std::printf("tiled tensor-core kernels: %s\n", support.capable ? "yes" : "NO (sm_80+ device and code needed)");
    if (!support.capable) return 1;
    describe("mma_attention<bf16, 64>", &mma_attention<__nv_bfloat16, 64, Visibility>, MmaLayout<__nv_bfloat16, 64>::bytes);
    describe("mma_attention<bf16, 128>", &mma_attention<__nv_bfloat16, 128, Visibility>, MmaLayout<__nv_bfloat16, 128>::bytes);
    describe("mma_attention<fp16, 64>", &mma_attention<__half, 64, Visibility>, MmaLayout<__half, 64>::bytes);
    describe("tiled_attention (WMMA) <bf16, 64>", &tiled_attention<__nv_bfloat16, 64, Visibility>,
             TileLayout<__nv_bfloat16, 64>::bytes);
    describe("tiled_attention (WMMA) <bf16, 128>", &tiled_attention<__nv_bfloat16, 128, Visibility>,
             TileLayout<__nv_bfloat16, 128>::bytes);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "lsattn_cuda_info: %s\n", e.what());
    return 1;
  }
  return 0;
}
