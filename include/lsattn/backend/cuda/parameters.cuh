#pragma once
// A layer's weights on the device, converted to T once, found by their state_dict names.
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "lsattn/backend/cuda/runtime.cuh"

namespace lsattn::cuda_detail {

// A host float tensor of any rank, flattened and converted to T on the device (empty stays empty).
template <class T, std::size_t Rank>
DeviceTensor<T, 1> upload_flat(const Tensor<float, Rank>& host) {
  return to_device<T>(HostView<const float, 1>(host.data(), Shape<1>{host.size()}));
}

template <class T>
class DeviceParameters {
 public:
  DeviceParameters() = default;
  // `weights.for_each(config, visit)` names every parameter (the layers' Weights<float>).
  template <class Weights, class Config>
  DeviceParameters(Weights weights, const Config& config) {
    weights.for_each(config, [&](const std::string& name, const auto& tensor, const auto&) {
      parameters_.emplace(name, upload_flat<T>(tensor));
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

}  // namespace lsattn::cuda_detail
