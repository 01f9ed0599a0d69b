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

// A host float tensor of any rank, flattened and converted to T on the device (empty stays empty).
template <class T, std::size_t Rank>
DeviceTensor<T, 1> upload_flat(const Tensor<float, Rank>& host) {
  const std::vector<T> converted(host.values().begin(), host.values().end());
  DeviceTensor<T, 1> device(Shape<1>{host.size()});
  if (host.size() > 0) device.copy_from(HostView<const T, 1>(converted.data(), Shape<1>{host.size()}));
  return device;
}

}  // namespace lsattn::cuda_detail
