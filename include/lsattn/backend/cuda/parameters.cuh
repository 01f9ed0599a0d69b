#pragma once
// A layer's weights on the device, converted to T once, found by their state_dict names; and a
// cursor that carves typed, aligned buffers out of a caller's workspace.
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "lsattn/backend/cuda/runtime.cuh"

namespace lsattn::cuda_detail {

template <class T>
class DeviceParameters {
 public:
  DeviceParameters() = default;
  // `weights.for_each(config, visit)` names every parameter (the layers' Weights<float>).
  template <class Weights, class Config>
  DeviceParameters(Weights weights, const Config& config) {
    weights.for_each(config, [&](const std::string& name, const auto& tensor, const auto&) {
      const std::vector<T> converted(tensor.values().begin(), tensor.values().end());
      DeviceTensor<T, 1> device(Shape<1>{tensor.size()});
      if (tensor.size() > 0) {
        check(cudaMemcpy(device.view().data(), converted.data(), converted.size() * sizeof(T), cudaMemcpyHostToDevice),
              "cudaMemcpy");
      }
      parameters_.emplace(name, std::move(device));
    });
  }

  // The parameter `name`; null when the configuration has none of that name (an absent bias).
  const T* operator[](const std::string& name) const {
    const auto found = parameters_.find(name);
    return found == parameters_.end() ? nullptr : found->second.view().data();
  }

 private:
  std::map<std::string, DeviceTensor<T, 1>> parameters_;
};

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

}  // namespace lsattn::cuda_detail
