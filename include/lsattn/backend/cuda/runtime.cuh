#pragma once
// CUDA runtime helpers: error checks that throw lsattn::error, device tensors, workspaces.
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <utility>
#include <vector>

#include "lsattn/core/error.hpp"
#include "lsattn/core/tensor.hpp"

namespace lsattn {

template <class T, std::size_t Rank>
using DeviceView = TensorView<T, Rank, device_space>;

namespace cuda_detail {

inline void check(cudaError_t status, const char* what) {
  if (status != cudaSuccess) throw error(detail::concat("lsattn: CUDA ", what, " failed: ", cudaGetErrorString(status)));
}

// Whether a usable CUDA device is present (for tests and examples that must skip without one).
inline bool device_available() {
  int count = 0;
  const cudaError_t status = cudaGetDeviceCount(&count);
  if (status != cudaSuccess) (void)cudaGetLastError();  // clear the sticky "no driver" error
  return status == cudaSuccess && count > 0;
}

// LSATTN_REQUIRE_GPU=1 (set by the GPU bundle): every place that would skip GPU work without a
// device — tests, benchmarks, the demo — fails instead, so a broken driver cannot look green.
inline bool gpu_required() {
  const char* value = std::getenv("LSATTN_REQUIRE_GPU");
  return value != nullptr && value[0] != '\0' && std::string(value) != "0";
}

}  // namespace cuda_detail

// Owning device tensor (cudaMalloc); views of it are device views, so they cannot be passed
// to the CPU backend, nor host views to the CUDA backend.
template <class T, std::size_t Rank>
class DeviceTensor {
 public:
  DeviceTensor() = default;
  explicit DeviceTensor(const Shape<Rank>& shape) : shape_(shape) {
    if (element_count(shape) > 0) {
      cuda_detail::check(cudaMalloc(reinterpret_cast<void**>(&data_), element_count(shape) * sizeof(T)), "cudaMalloc");
    }
  }
  DeviceTensor(const DeviceTensor&) = delete;
  DeviceTensor& operator=(const DeviceTensor&) = delete;
  DeviceTensor(DeviceTensor&& other) noexcept : data_(std::exchange(other.data_, nullptr)), shape_(other.shape_) {}
  DeviceTensor& operator=(DeviceTensor&& other) noexcept {
    std::swap(data_, other.data_);
    std::swap(shape_, other.shape_);
    return *this;
  }
  ~DeviceTensor() {
    if (data_ != nullptr) (void)cudaFree(data_);
  }

  DeviceView<T, Rank> view() { return {data_, shape_}; }
  DeviceView<const T, Rank> view() const { return {data_, shape_}; }
  const Shape<Rank>& shape() const { return shape_; }
  index_t size() const { return element_count(shape_); }

  // Synchronous copies (utilities for setting up inputs and reading results). They wait for the
  // whole device before and after: a plain cudaMemcpy is ordered only with the legacy default
  // stream, not with kernels the caller launched on a non-blocking stream.
  void copy_from(HostView<const T, Rank> host) {
    require(host.shape() == shape_, "DeviceTensor::copy_from: host shape ", to_string(host.shape()),
            " differs from the device shape ", to_string(shape_));
    cuda_detail::check(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
    cuda_detail::check(cudaMemcpy(data_, host.data(), size() * sizeof(T), cudaMemcpyHostToDevice), "cudaMemcpy");
    cuda_detail::check(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
  }
  void copy_to(HostView<T, Rank> host) const {
    require(host.shape() == shape_, "DeviceTensor::copy_to: host shape ", to_string(host.shape()),
            " differs from the device shape ", to_string(shape_));
    cuda_detail::check(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
    cuda_detail::check(cudaMemcpy(host.data(), data_, size() * sizeof(T), cudaMemcpyDeviceToHost), "cudaMemcpy");
  }

 private:
  T* data_ = nullptr;
  Shape<Rank> shape_{};
};

// A host tensor's elements converted to T and copied into a new device tensor of its shape
// (synchronous, as DeviceTensor::copy_from).
template <class T, std::size_t Rank>
DeviceTensor<T, Rank> to_device(HostView<const float, Rank> host) {
  const float* values = host.data();
  const std::vector<T> converted(values, values + element_count(host.shape()));
  DeviceTensor<T, Rank> device(host.shape());
  if (!converted.empty()) device.copy_from(HostView<const T, Rank>(converted.data(), host.shape()));
  return device;
}
template <class T, std::size_t Rank>
DeviceTensor<T, Rank> to_device(const Tensor<float, Rank>& host) {
  return to_device<T>(host.view());
}

// A device tensor read back (after waiting for the device), its elements converted to To.
template <class To, class T, std::size_t Rank>
Tensor<To, Rank> to_host(const DeviceTensor<T, Rank>& device) {
  Tensor<T, Rank> raw(device.shape());
  device.copy_to(raw.view());
  Tensor<To, Rank> out(device.shape());
  for (index_t i = 0; i < out.size(); ++i) out.values()[i] = static_cast<To>(raw.values()[i]);
  return out;
}

// Caller-owned scratch memory for one call; its size comes from workspace_bytes().
struct DeviceWorkspace {
  void* data = nullptr;
  std::size_t bytes = 0;
};

namespace cuda_detail {

// The DualLN parameters as kernel arguments: null weights mean "no LayerNorm" (PlainCombiner).
template <class T>
struct NormPointers {
  const T* local_weight = nullptr;
  const T* local_bias = nullptr;
  const T* global_weight = nullptr;
  const T* global_bias = nullptr;
  float local_eps = 1e-5f;
  float global_eps = 1e-5f;
};

template <class Combiner, class T, class Params>
NormPointers<T> norm_pointers([[maybe_unused]] const Params& norm) {
  NormPointers<T> pointers;
  if constexpr (Combiner::normalizes) {
    pointers = {norm.local.weight.data(),           norm.local.bias.data(),
                norm.global.weight.data(),          norm.global.bias.data(),
                static_cast<float>(norm.local.eps), static_cast<float>(norm.global.eps)};
  }
  return pointers;
}

// Workspaces must start at a multiple of this, as cudaMalloc memory does (the kernels read
// 16-byte vectors from them and WMMA stores need 32-byte aligned rows).
inline constexpr std::size_t workspace_alignment = 256;

// Hands out consecutive buffers from a workspace, each starting at a multiple of
// workspace_alignment. Sizing and carving use the same sequence of take() calls: with a null
// base it only counts, so workspace_bytes() and forward() cannot disagree.
class WorkspaceCursor {
 public:
  explicit WorkspaceCursor(void* base = nullptr) : base_(static_cast<unsigned char*>(base)) {}

  template <class U>
  U* take(index_t count) {
    offset_ = (offset_ + workspace_alignment - 1) / workspace_alignment * workspace_alignment;
    U* pointer = base_ == nullptr ? nullptr : reinterpret_cast<U*>(base_ + offset_);
    offset_ += sizeof(U) * static_cast<std::size_t>(count);
    return pointer;
  }
  // The rest of the workspace, aligned, as the workspace of a nested call needing `bytes`.
  DeviceWorkspace rest(std::size_t bytes) {
    unsigned char* start = take<unsigned char>(static_cast<index_t>(bytes));
    return {start, bytes};
  }
  std::size_t bytes() const { return offset_; }

 private:
  unsigned char* base_ = nullptr;
  std::size_t offset_ = 0;
};

// The one-block-per-query kernels keep a query's scores in dynamic shared memory beside 32
// floats of static reduction scratch, within the 48 KiB a block gets without opting in.
inline constexpr index_t max_scores_per_query = (48 * 1024 - 32 * 4) / 4;  // 12256

// A caller's workspace: at least `needed` bytes, aligned.
inline void require_workspace(const DeviceWorkspace& workspace, std::size_t needed) {
  require(workspace.bytes >= needed && (needed == 0 || workspace.data != nullptr), "workspace: needs ", needed,
          " bytes (workspace_bytes()), got ", workspace.bytes);
  require(reinterpret_cast<std::uintptr_t>(workspace.data) % workspace_alignment == 0, "workspace: must be ",
          workspace_alignment, "-byte aligned (cudaMalloc memory is), got address ", workspace.data);
}

// The checks every CUDA executor makes before launching.
inline void require_launchable(const DeviceWorkspace& workspace, std::size_t needed, index_t scores_per_query,
                               index_t head_dim, const char* scores_what) {
  require_workspace(workspace, needed);
  require(scores_per_query <= max_scores_per_query, scores_what, " = ", scores_per_query,
          " scores per query exceed the 48 KiB of shared memory of the CUDA kernel (at most ", max_scores_per_query, ")");
  require(head_dim <= 1024, "head_dim: the CUDA backend handles at most 1024, got ", head_dim);
}

}  // namespace cuda_detail

}  // namespace lsattn
